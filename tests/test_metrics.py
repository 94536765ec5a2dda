"""`--metrics-file`: Prometheus counters written after each exec.

pullcred lives for one request, so its counters live in the cache directory
(`<cache>/metrics/counters.json`, 0600) and every exec rewrites the metrics
file from them (0644, by rename) for node_exporter's textfile collector.

Every file is parsed with the Prometheus client library's own text parser
(prometheus_client.parser.text_string_to_metric_families), not by hand.
Upstreams are the ECR stand-in (tests/standins/ecr.py, fault modes) and the
STS stand-in (tests/standins/sts.py, which refuses untrusted service
accounts), all on 127.0.0.1.
"""

import fcntl
import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SECRETS, ecr_env, free_port, register_secret, request
from satoken import mint, sa_request, subject
from standins.sts import StsStandin

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
OTHER_ECR = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"  # another region: another token
IMAGE = f"{ECR}/team-private-path/app"
ROLE = "arn:aws:iam::123456789012:role/puller-x"
ECR_ROLE = "eks.amazonaws.com/ecr-role-arn"


# ------------------------------------------------------------------ helpers


def families(path):
    """name -> family, as the client library parses the file."""
    text = path.read_text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, family, sample=None, **labels):
    """The value of the sample `sample` (default: the family's own name for
    gauges, `<family>_total` for counters) with exactly `labels`; 0 if absent."""
    fam = fams[family]
    name = sample or (family + "_total" if fam.type == "counter" else family)
    for s in fam.samples:
        if s.name == name and s.labels == labels:
            return s.value
    return 0


def execs(fams, outcome):
    return value(fams, "pullcred_execs", outcome=outcome)


def calls(fams, source, result):
    return value(fams, "pullcred_upstream_calls", source=source, result=result)


def check_histogram(fams):
    """Cumulative buckets, +Inf == count; returns the count."""
    fam = fams["pullcred_exec_duration_seconds"]
    assert fam.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in fam.samples if s.name.endswith("_bucket")]
    count = value(fams, "pullcred_exec_duration_seconds", "pullcred_exec_duration_seconds_count")
    bounds = [float(le) for le, _ in buckets]
    assert bounds == sorted(bounds) and bounds[0] == 0.001 and bounds[-2] == 30 and bounds[-1] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are not cumulative"
    assert counts[-1] == count
    total = value(fams, "pullcred_exec_duration_seconds", "pullcred_exec_duration_seconds_sum")
    assert total >= 0
    return count


def total_execs(fams):
    return sum(execs(fams, o) for o in ("hit", "miss", "stale_served", "error"))


@pytest.fixture
def metrics(plugin, tmp_path):
    """The metrics file's path, set for every run of this plugin."""
    prom_dir = tmp_path / "textfile_collector"
    prom_dir.mkdir()
    path = prom_dir / "pullcred.prom"
    plugin.env["PULLCRED_METRICS_FILE"] = str(path)
    return path


def run(plugin, image=IMAGE, env=None, **kw):
    return plugin.run(request(image), env=env, **kw)


def age_entry(plugin, fetched_ago, expires_in):
    """Moves the one cache entry back in time (as test_fault_matrix does)."""
    [entry] = plugin.cache_dir.glob("*.json")
    data = json.loads(entry.read_text())
    now = int(time.time())
    data["fetchedAt"] = now - fetched_ago
    data["expiresAt"] = now + expires_in
    entry.write_text(json.dumps(data))


# ------------------------------------------------------------------ off


def test_metrics_off_reads_and_writes_nothing(plugin, standin, tmp_path):
    # Given no --metrics-file, when execs miss, hit and fail
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    assert run(plugin, env=env).code == 0
    standin.configure(mode="error500")
    assert run(plugin, OTHER_ECR + "/x", env=env).code == 1
    # then there is no metrics state in the cache, and no .prom anywhere
    assert not (plugin.cache_dir / "metrics").exists()
    assert not list(tmp_path.rglob("*.prom"))


# ------------------------------------------------------------------ outcomes


def test_outcomes_are_counted_across_execs(plugin, standin, metrics):
    env = ecr_env(standin.url)
    # a miss, then two hits
    for _ in range(3):
        assert run(plugin, env=env).code == 0
    fams = families(metrics)
    assert (execs(fams, "miss"), execs(fams, "hit")) == (1, 2)
    assert calls(fams, "ecr", "ok") == 1
    # the token's expiry is known (the stand-in's 12h), as seconds and as a time
    left = value(fams, "pullcred_token_expiry_seconds", source="ecr")
    assert 11.9 * 3600 < left <= 12 * 3600
    at = value(fams, "pullcred_token_expiry_timestamp_seconds", source="ecr")
    assert abs(at - (time.time() + left)) < 60
    # upstream down, the cached token past its refresh point but valid: stale served
    age_entry(plugin, fetched_ago=3000, expires_in=600)
    standin.configure(mode="error500")
    res = run(plugin, env=env)
    assert res.code == 0 and "serving the cached token" in res.stderr
    # upstream down, nothing cached for that registry: an error
    assert run(plugin, OTHER_ECR + "/x", env=env).code == 1
    fams = families(metrics)
    assert [execs(fams, o) for o in ("hit", "miss", "stale_served", "error")] == [2, 1, 1, 1]
    assert calls(fams, "ecr", "ok") == 1
    assert calls(fams, "ecr", "5xx") == 2
    err = [s for s in fams["pullcred_last_error_timestamp_seconds"].samples if s.labels.get("source") == "ecr"]
    assert [s.labels["class"] for s in err] == ["unavailable"]
    assert abs(err[0].value - time.time()) < 60
    assert check_histogram(fams) == 5
    assert value(fams, "pullcred_metrics_resets") == 0
    # the files' modes: the metrics file is for node_exporter, the counters are private
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644
    mdir = plugin.cache_dir / "metrics"
    assert stat.S_IMODE(mdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((mdir / "counters.json").stat().st_mode) == 0o600


def test_counters_survive_and_every_family_has_help_and_type(plugin, standin, metrics):
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    metrics.unlink()  # node_exporter's file is only a view: the counters are in the cache
    assert run(plugin, env=env).code == 0
    fams = families(metrics)
    assert (execs(fams, "miss"), execs(fams, "hit")) == (1, 1)
    text = metrics.read_text()
    for name in (
        "pullcred_execs_total",
        "pullcred_upstream_calls_total",
        "pullcred_exec_duration_seconds",
        "pullcred_token_expiry_seconds",
        "pullcred_token_expiry_timestamp_seconds",
        "pullcred_last_error_timestamp_seconds",
        "pullcred_metrics_resets_total",
        "pullcred_metrics_deferred_total",
    ):
        assert f"\n# HELP {name} " in "\n" + text, name
        assert f"\n# TYPE {name} " in "\n" + text, name


# ------------------------------------------------------------------ upstream classes


def test_upstream_result_classes(plugin, standin, metrics):
    # Given no credential cache (every exec fetches; the counters still live in the cache dir)
    env = dict(ecr_env(standin.url), PULLCRED_NO_CACHE="1", PULLCRED_TIMEOUT="6s")
    want = {}
    for mode, result, code in [
        ("ok", "ok", 0),
        ("denied", "refused", 1),  # 400 AccessDeniedException
        ("http429", "throttled", 1),  # 429 ThrottlingException
        ("throttle", "throttled", 1),  # ECR's ThrottlingException with HTTP 400
        ("error500", "5xx", 1),
    ]:
        standin.configure(mode=mode)
        res = run(plugin, env=env)
        assert res.code == code, (mode, res.stderr)
        want[result] = want.get(result, 0) + 1
    # a closed port: no HTTP answer at all
    res = run(plugin, env=dict(env, **ecr_env(f"http://127.0.0.1:{free_port()}")))
    assert res.code == 1 and "connection" in res.stderr.lower()
    want["network"] = 1
    fams = families(metrics)
    for result in ("ok", "refused", "throttled", "5xx", "network", "other", "config"):
        assert calls(fams, "ecr", result) == want.get(result, 0), result
    assert execs(fams, "error") == 5 and execs(fams, "miss") == 1
    assert check_histogram(fams) == 6
    classes = {s.labels["class"] for s in fams["pullcred_last_error_timestamp_seconds"].samples}
    assert classes == {"unavailable"}
    # nothing was stored in the (disabled) cache: no expiry to report
    assert not fams["pullcred_token_expiry_seconds"].samples


def test_a_refused_service_account_is_counted_as_refused(plugin, standin, metrics):
    sts = StsStandin(on_secret=register_secret)
    try:
        env = {"AWS_ENDPOINT_URL_STS": sts.url, **ecr_env(standin.url)}
        sts.trust(ROLE, subject("team-a", "puller"))
        good = mint("team-a", "puller")
        bad = mint("team-b", "intruder-sa")
        assert plugin.run(sa_request(IMAGE, good, {ECR_ROLE: ROLE}), env=env).code == 0
        res = plugin.run(sa_request(IMAGE, bad, {ECR_ROLE: ROLE}), env=env)
        assert res.code == 1
    finally:
        sts.close()
    fams = families(metrics)
    assert calls(fams, "ecr", "ok") == 1 and calls(fams, "ecr", "refused") == 1
    classes = {s.labels["class"] for s in fams["pullcred_last_error_timestamp_seconds"].samples}
    assert classes == {"refused"}
    assert_holds_nothing_private(plugin, metrics, ["team-a", "team-b", "puller", "intruder-sa", good, bad])


# ------------------------------------------------------------------ no secret, no name


def assert_holds_nothing_private(plugin, metrics, words):
    """Neither the metrics file nor the counters hold a secret the suite
    knows, an image path, a role, a service account or a namespace."""
    texts = {
        "metrics file": metrics.read_text(),
        "counters": (plugin.cache_dir / "metrics" / "counters.json").read_text(),
    }
    for what, text in texts.items():
        for s in [x for x in SECRETS if x]:
            assert s not in text, f"a secret is in the {what}"
        for w in [*words, "team-private-path", "/app", ECR, OTHER_ECR, ROLE, "123456789012", "127.0.0.1"]:
            assert w not in text, f"{w!r} is in the {what}"
    # and every label is a source id or a fixed class
    allowed = {
        "outcome": {"hit", "miss", "stale_served", "error"},
        "result": {"ok", "refused", "throttled", "5xx", "network", "other", "config"},
        "class": {"refused", "unavailable", "config"},
    }
    for fam in text_string_to_metric_families(texts["metrics file"]):
        for s in fam.samples:
            for k, v in s.labels.items():
                if k == "source":
                    assert v in {"ecr", "ecr-public", "aws-secret", "google", "acr", "static", "vault", "exchange", "namespaced"}, v
                elif k == "le":
                    float(v)
                else:
                    assert v in allowed[k], (k, v)


def test_no_secret_or_path_in_the_files(plugin, standin, metrics):
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    assert run(plugin, env=env).code == 0
    standin.configure(mode="denied")
    assert run(plugin, OTHER_ECR + "/team-private-path/app", env=env).code == 1
    assert standin.tokens, "the stand-in issued no token"
    assert_holds_nothing_private(plugin, metrics, list(standin.tokens))


# ------------------------------------------------------------------ concurrency


def test_twenty_parallel_execs_are_counted_exactly(plugin, standin, metrics):
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0  # the miss

    def one(_):
        return run(plugin, env=env).code

    with ThreadPoolExecutor(20) as pool:
        assert list(pool.map(one, range(20))) == [0] * 20
    # An exec that found the lock busy past its bound left a pending update;
    # the next exec adds it.
    assert run(plugin, env=env).code == 0
    fams = families(metrics)
    assert (execs(fams, "miss"), execs(fams, "hit")) == (1, 21)
    assert total_execs(fams) == 22
    assert check_histogram(fams) == 22
    assert calls(fams, "ecr", "ok") == 1
    assert not list((plugin.cache_dir / "metrics").glob("pending.*"))


def test_a_busy_lock_never_holds_the_answer(plugin, standin, metrics):
    """Given another process holding the counters lock, an exec answers at
    once, leaves its update pending, and the next exec adds it."""
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    before = metrics.read_text()
    lock = plugin.cache_dir / "metrics" / "lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        started = time.monotonic()
        res = run(plugin, env=env)
        took = time.monotonic() - started
        assert res.code == 0 and res.json["auth"]
        assert took < 2, took  # the bound is 20 ms; a loaded machine adds process start-up
        assert len(list(lock.parent.glob("pending.*.json"))) == 1
        assert metrics.read_text() == before  # only a lock holder writes
        fcntl.flock(f, fcntl.LOCK_UN)
    assert run(plugin, env=env).code == 0
    fams = families(metrics)
    assert (execs(fams, "miss"), execs(fams, "hit")) == (1, 2)
    assert value(fams, "pullcred_metrics_deferred") == 1
    assert not list(lock.parent.glob("pending.*"))


def test_readers_never_see_a_partial_file(plugin, standin, metrics):
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    stop = threading.Event()
    seen = {"reads": 0, "bad": []}

    def reader():
        while not stop.is_set():
            try:
                text = metrics.read_text()
            except FileNotFoundError:
                seen["bad"].append("missing")
                continue
            seen["reads"] += 1
            try:
                fams = {f.name: f for f in text_string_to_metric_families(text)}
                assert text.endswith("\n") and "pullcred_metrics_deferred_total" in text
                assert "pullcred_execs" in fams
            except Exception as e:  # noqa: BLE001 - any parse failure is a torn file
                seen["bad"].append(repr(e)[:200])

    t = threading.Thread(target=reader)
    t.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda _: run(plugin, env=env).code, range(24))) == {0}
    finally:
        stop.set()
        t.join()
    assert seen["reads"] > 50, seen["reads"]
    assert not seen["bad"], seen["bad"][:3]
    # no temporary file is left next to it for the textfile collector to trip on
    assert [p.name for p in metrics.parent.iterdir()] == ["pullcred.prom"]


# ------------------------------------------------------------------ corruption


@pytest.mark.parametrize("damage", ["garbage", "injected_label", "world_readable"])
def test_an_unusable_counters_file_is_reset_and_counted(plugin, standin, metrics, damage):
    env = ecr_env(standin.url)
    assert run(plugin, env=env).code == 0
    assert run(plugin, env=env).code == 0
    counters = plugin.cache_dir / "metrics" / "counters.json"
    if damage == "garbage":
        counters.write_text('{"format":1,"execs":{"hit"')
    elif damage == "injected_label":
        data = json.loads(counters.read_text())
        data["upstream"]['ecr",registry="secret'] = {"ok": 1}
        counters.write_text(json.dumps(data))
    else:
        os.chmod(counters, 0o644)
    res = run(plugin, env=env)
    assert res.code == 0
    assert "metrics" in res.stderr and "starting the counters again" in res.stderr
    fams = families(metrics)
    assert value(fams, "pullcred_metrics_resets") == 1
    assert total_execs(fams) == 1 and execs(fams, "hit") == 1
    assert "secret" not in metrics.read_text()
    assert stat.S_IMODE(counters.stat().st_mode) == 0o600
    # and the next exec counts on from there, without another reset
    res = run(plugin, env=env)
    assert res.stderr == ""
    fams = families(metrics)
    assert value(fams, "pullcred_metrics_resets") == 1 and execs(fams, "hit") == 2


def test_an_unwritable_metrics_directory_does_not_fail_the_pull(plugin, standin, tmp_path):
    env = ecr_env(standin.url)
    missing = tmp_path / "no-such-dir" / "pullcred.prom"
    res = run(plugin, env=dict(env, PULLCRED_METRICS_FILE=str(missing)))
    assert res.code == 0 and res.json["auth"]
    assert "metrics" in res.stderr and str(missing) in res.stderr
    # the counters still count
    assert (plugin.cache_dir / "metrics" / "counters.json").exists()
