"""PULLCRED_LOG through the binary: pullcred's own subscriber (logging.rs)
reads tracing's EnvFilter directives, prints `LEVEL target: message
key=value` lines on stderr, and never prints a third-party event."""

import re

from conftest import ecr_env, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
LINE = re.compile(r"^ ?(ERROR| WARN| INFO|DEBUG|TRACE) (\S+): (.*)$")


def lines(stderr):
    return [l for l in stderr.splitlines() if l.strip()]


def test_default_level_prints_nothing_on_a_healthy_exec(plugin, standin):
    env = ecr_env(standin.url)
    for _ in range(2):  # a miss, then a hit
        res = plugin.run(request(f"{ECR}/a"), env=env)
        assert res.code == 0, res.stderr
        assert res.stderr == ""


def test_debug_lines_have_the_fmt_layout_and_only_our_targets(plugin, standin):
    env = dict(ecr_env(standin.url), PULLCRED_LOG="debug")
    miss = plugin.run(request(f"{ECR}/a"), env=env)
    assert miss.code == 0, miss.stderr
    got = lines(miss.stderr)
    assert got, "debug logging printed nothing"
    for l in got:
        m = LINE.match(l)
        assert m, f"not a log line: {l!r}"
        # The AWS SDK, hyper and rustls log at debug too: never printed.
        assert m.group(2).startswith(("pullcred", "kubelet_config")), l
    assert any("cache miss; fetching" in l and f'registry={ECR}' in l for l in got), got


def test_target_directives_choose_by_the_longest_module_prefix(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0  # warm
    hit = plugin.run(request(f"{ECR}/a"), env=dict(env, PULLCRED_LOG="warn,pullcred::run=debug"))
    assert any("cache hit" in l for l in lines(hit.stderr)), hit.stderr
    quiet = plugin.run(request(f"{ECR}/a"), env=dict(env, PULLCRED_LOG="pullcred=debug,pullcred::run=warn"))
    assert quiet.code == 0
    assert not any("cache hit" in l for l in lines(quiet.stderr)), quiet.stderr
    off = plugin.run(request(f"{ECR}/a"), env=dict(env, PULLCRED_LOG="off"))
    assert off.code == 0 and off.stderr == ""


def test_a_bad_filter_is_reported_once_and_the_pull_still_answers(plugin, standin):
    env = dict(ecr_env(standin.url), PULLCRED_LOG="pullcred=loud")
    res = plugin.run(request(f"{ECR}/a"), env=env)
    assert res.code == 0, res.stderr
    got = lines(res.stderr)
    assert len(got) == 1, got
    assert LINE.match(got[0]) and "WARN" in got[0]
    assert 'PULLCRED_LOG="pullcred=loud" is not a valid filter; using "warn"' in got[0]
