"""The on-node cache: hits, single flight across processes, corruption,
permissions, and serving a still-valid token when upstream fails."""

import json
import os
import stat
import time

import pytest

from conftest import ecr_env, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def entries(plugin):
    return sorted(plugin.cache_dir.glob("*.json"))


def test_second_exec_is_a_hit_with_no_upstream_call(plugin, standin):
    env = ecr_env(standin.url)
    first = plugin.run(request(f"{ECR}/a"), env=env)
    assert first.code == 0, first.stderr
    # another repository on the same registry shares the entry
    second = plugin.run(request(f"{ECR}/b/c"), env=env)
    assert second.code == 0, second.stderr
    assert standin.call_count() == 1
    assert second.json["auth"] == first.json["auth"]
    assert second.stderr == ""


def test_a_hit_needs_no_network(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    standin.close()  # upstream gone: a hit must not notice
    res = plugin.run(request(f"{ECR}/a"), env=env)
    assert res.code == 0, res.stderr


def test_cache_files_are_private(plugin, standin):
    assert plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url)).code == 0
    assert stat.S_IMODE(plugin.cache_dir.stat().st_mode) == 0o700
    files = list(plugin.cache_dir.iterdir())
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_single_flight_32_processes_one_upstream_call(plugin, standin):
    standin.configure(delay=0.5)
    env = ecr_env(standin.url)
    started = time.monotonic()
    procs = [plugin.start(request(f"{ECR}/app{i}"), env=env) for i in range(32)]
    results = [plugin.finish(p, d, started) for p, d in procs]
    assert all(r.code == 0 for r in results), [r.stderr for r in results if r.code]
    assert standin.call_count() == 1
    passwords = {r.json["auth"][ECR]["password"] for r in results}
    assert len(passwords) == 1


def test_identity_change_is_a_different_entry(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    env["AWS_ACCESS_KEY_ID"] = "AKIAOTHERIDENTITY001"
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    assert standin.call_count() == 2
    assert len(entries(plugin)) == 2


def test_corrupt_entry_is_a_miss_and_replaced(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    [entry] = entries(plugin)
    entry.write_text('{"format": 1, "key": "trunc')
    res = plugin.run(request(f"{ECR}/a"), env=env)
    assert res.code == 0, res.stderr
    assert "ignoring cache entry" in res.stderr
    assert standin.call_count() == 2
    json.loads(entry.read_text())  # replaced by a whole entry
    assert plugin.run(request(f"{ECR}/a"), env=env).stderr == ""


def test_older_format_is_a_miss(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    [entry] = entries(plugin)
    data = json.loads(entry.read_text())
    data["format"] = 0
    entry.write_text(json.dumps(data))
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    assert standin.call_count() == 2


def test_world_writable_cache_dir_is_refused_and_the_pull_answered(plugin, standin):
    plugin.cache_dir.mkdir(mode=0o700)
    os.chmod(plugin.cache_dir, 0o777)
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 0, res.stderr
    assert res.json["auth"][ECR]["password"]
    assert "refused" in res.stderr and "write" in res.stderr
    assert str(plugin.cache_dir) in res.stderr and "without the cache" in res.stderr
    assert list(plugin.cache_dir.iterdir()) == []
    assert standin.call_count() == 1


def test_symlinked_cache_dir_is_refused_and_the_pull_answered(plugin, standin, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    plugin.cache_dir.symlink_to(real)
    res = plugin.run(request(f"{ECR}/a"), env=ecr_env(standin.url))
    assert res.code == 0, res.stderr
    assert "symlink" in res.stderr and "without the cache" in res.stderr
    assert list(real.iterdir()) == []


def age_entry(plugin, fetched_ago, expires_in):
    [entry] = entries(plugin)
    data = json.loads(entry.read_text())
    now = int(time.time())
    data["fetchedAt"] = now - fetched_ago
    data["expiresAt"] = now + expires_in
    entry.write_text(json.dumps(data))


def test_upstream_failure_serves_a_still_valid_token_briefly(plugin, standin):
    env = ecr_env(standin.url)
    first = plugin.run(request(f"{ECR}/a"), env=env)
    assert first.code == 0
    # past the refresh point (11h of 12h), 30 minutes left
    age_entry(plugin, fetched_ago=11 * 3600 + 1800, expires_in=1800)
    standin.configure(mode="error500")
    res = plugin.run(request(f"{ECR}/a"), env=env)
    assert res.code == 0, res.stderr
    assert res.json["auth"] == first.json["auth"]
    assert res.json["cacheDuration"] == "1m0s"
    assert "serving the cached token" in res.stderr


def test_stale_entry_is_refreshed_when_upstream_is_up(plugin, standin):
    env = ecr_env(standin.url)
    first = plugin.run(request(f"{ECR}/a"), env=env)
    age_entry(plugin, fetched_ago=11 * 3600 + 1800, expires_in=1800)
    res = plugin.run(request(f"{ECR}/a"), env=env)
    assert res.code == 0
    assert res.json["auth"] != first.json["auth"]
    assert standin.call_count() == 2


def test_expired_entry_and_upstream_down_is_an_error(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    age_entry(plugin, fetched_ago=13 * 3600, expires_in=-3600)
    standin.configure(mode="error500")
    res = plugin.run(request(f"{ECR}/a"), env=env, args=["--timeout", "5s"])
    assert res.code == 1
    assert "ServerException" in res.stderr


def test_no_cache_flag(plugin, standin):
    env = ecr_env(standin.url)
    for _ in range(2):
        assert plugin.run(request(f"{ECR}/a"), env=env, args=["--no-cache"]).code == 0
    assert standin.call_count() == 2
    assert not plugin.cache_dir.exists()


@pytest.mark.parametrize("value,cached", [("1", False), ("true", False), ("yes", False), ("0", True), ("false", True)])
def test_no_cache_variable_takes_the_usual_boolean_spellings(plugin, standin, value, cached):
    """PULLCRED_NO_CACHE=1 (as kubelet config `env` entries are usually
    written) works like --no-cache; 0 and false leave the cache on."""
    env = dict(ecr_env(standin.url), PULLCRED_NO_CACHE=value)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    assert plugin.cache_dir.exists() == cached


def test_a_hit_touches_no_network_no_sdk_config_no_tls_roots(plugin, standin, tmp_path):
    """Under strace: a cache hit makes no socket at all, never reads the AWS
    config files (the SDK's loader would) and never loads TLS roots."""
    import shutil
    import subprocess

    assert shutil.which("strace"), "strace is missing: tests/run installs it"
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    trace = tmp_path / "trace"
    e = dict(plugin.env, **env)
    p = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=network,openat,open",
                        str(plugin_bin())], input=json.dumps(request(f"{ECR}/a")) + "\n",
                       capture_output=True, text=True, env=e, timeout=30)
    assert p.returncode == 0, p.stderr
    calls = trace.read_text()
    assert "socket(" not in calls and "connect(" not in calls, calls
    assert plugin.env["AWS_CONFIG_FILE"] not in calls
    assert "/etc/ssl" not in calls
    assert plugin.cache_dir.name in calls  # it did read the cache


def plugin_bin():
    from conftest import BIN

    return BIN
