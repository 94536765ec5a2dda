"""Golden cases: each file in cases/ is a request (or raw stdin), an
environment, and the expected response shape. The binary runs as the kubelet
runs it; JSON is decoded before comparing.

Shape placeholders: "<secret>" a non-empty string; "<nonzero-duration>" a Go
duration other than 0s; "<about:11h0m0s>" that duration, give or take a minute.
"""

import json
import re
from pathlib import Path

import pytest

from conftest import ecr_env

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))
GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$")


def seconds(d):
    m = GO_DURATION.match(d)
    assert m, f"{d!r} is not a Go duration"
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def match_shape(want, got, path="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: want object, got {got!r}"
        assert set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            match_shape(want[k], got[k], f"{path}.{k}")
    elif want == "<secret>":
        assert isinstance(got, str) and got, f"{path}: want a non-empty string"
    elif want == "<nonzero-duration>":
        assert seconds(got) > 0, f"{path}: {got}"
    elif isinstance(want, str) and want.startswith("<about:"):
        assert abs(seconds(got) - seconds(want[7:-1])) <= 60, f"{path}: {got} not about {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_case(case, plugin, standin):
    c = json.loads(case.read_text())
    env = dict(c.get("env", {}))
    if c.get("upstream") == "standin":
        env.update(ecr_env(standin.url))
        standin.configure(**c.get("standin", {}))
    res = plugin.run(c.get("request"), env=env, args=c.get("args", []), stdin=c.get("stdin"))
    want = c["expect"]
    assert res.code == want["exit"], res.stderr
    if "response" in want:
        match_shape(want["response"], res.json)
    for s in want.get("stderr", []):
        assert s in res.stderr, f"{s!r} not in stderr: {res.stderr!r}"
    if want.get("stderr_empty"):
        assert res.stderr == ""
    if "upstream_calls" in want:
        assert standin.call_count() == want["upstream_calls"]
    if "upstream_region" in want:
        assert standin.calls[-1]["region"] == want["upstream_region"]
    if "cache_files" in want:
        entries = list(plugin.cache_dir.glob("*.json")) if plugin.cache_dir.exists() else []
        assert len(entries) == want["cache_files"]
