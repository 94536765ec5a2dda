"""Upstream faults: each ends in one clear line within the deadline, or a
retried success; never a hang, a panic or output on stdout."""

import socket

from conftest import ecr_env, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def test_5xx_is_retried_then_reported(plugin, standin):
    standin.configure(mode="error500")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url), args=["--timeout", "10s"])
    assert res.code == 1
    assert "ServerException" in res.stderr and "HTTP 500" in res.stderr
    assert standin.call_count() == 3  # the SDK's standard retry: 3 attempts


def test_transient_5xx_recovers(plugin, standin):
    standin.configure(fail_first=2, fail_mode="error500")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 0, res.stderr
    assert standin.call_count() == 3


def test_throttling_is_retried_with_backoff(plugin, standin):
    standin.configure(fail_first=2, fail_mode="throttle")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 0, res.stderr
    calls = standin.calls
    assert len(calls) == 3
    # Backed off: the SDK's standard mode sleeps rand() * 100 ms * 2^n (full
    # jitter), so two pauses sum to under 50 ms about one run in 16 (this
    # flaked); under 5 ms one in 1,600. Back-to-back retries take ~1 ms.
    assert calls[2]["time"] - calls[0]["time"] > 0.005


def test_persistent_throttling_is_reported(plugin, standin):
    standin.configure(mode="throttle")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url), args=["--timeout", "10s"])
    assert res.code == 1
    assert "ThrottlingException" in res.stderr


def test_hang_ends_at_the_deadline(plugin, standin):
    standin.configure(mode="hang")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url), args=["--timeout", "3s"])
    assert res.code == 1
    assert "timed out" in res.stderr
    assert res.elapsed < 5


def test_garbage_body(plugin, standin):
    standin.configure(mode="garbage")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 1
    assert "unreadable response" in res.stderr


def test_truncated_body(plugin, standin):
    standin.configure(mode="truncated")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 1
    assert "registry " + ECR in res.stderr


def test_huge_body_is_not_read(plugin, standin):
    standin.configure(mode="huge")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 1
    assert "over the 1048576-byte limit" in res.stderr


def test_no_authorization_data(plugin, standin):
    standin.configure(mode="empty")
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 1
    assert "no authorizationData" in res.stderr


def test_refused_connection(plugin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(f"http://127.0.0.1:{port}"), args=["--timeout", "10s"])
    assert res.code == 1
    assert "connection" in res.stderr.lower() or "dispatch" in res.stderr.lower()
    assert res.elapsed < 11


def test_stdin_that_never_closes_ends_at_the_deadline(plugin):
    p, _ = plugin.start(None, args=["--timeout", "3s"])
    p.stdin.write('{"apiVersion": "credentialprovider.kubelet.k8s.io/v1",')
    p.stdin.flush()
    # keep stdin open: the watchdog must end the run
    out, err = None, None
    try:
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    out, err = p.stdout.read(), p.stderr.read()
    p.stdin.close()
    assert p.returncode == 1
    assert out == ""
    assert "deadline" in err


def test_bad_timeout_flag_is_a_usage_error(plugin):
    res = plugin.run(request(f"{ECR}/a"), args=["--timeout", "90s"])
    assert res.code == 2
    assert res.stdout == ""
