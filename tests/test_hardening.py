"""Crash safety and disk trouble: killed processes, a stopped lock holder, a
full or read-only cache filesystem, a cache directory removed under us."""

import json
import os
import random
import shutil
import signal
import subprocess
import time

from conftest import BIN, ecr_env, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
REQ = json.dumps(request(f"{ECR}/app")) + "\n"


def spawn(plugin, env):
    e = dict(plugin.env, **env)
    p = subprocess.Popen([str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, text=True)
    p.stdin.write(REQ)
    p.stdin.close()
    p.stdin = None  # so that communicate() only reads
    return p


def make_stale(plugin):
    """Rewrite the entry (atomically, as pullcred does) so that it is past its
    refresh point: the next execs must all refresh it."""
    for f in plugin.cache_dir.glob("*.json"):
        data = json.loads(f.read_text())
        now = int(time.time())
        data["fetchedAt"], data["expiresAt"] = now - 11 * 3600 - 600, now + 3000
        tmp = f.with_suffix(".test-tmp")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, f)


def test_sigkill_200_times_during_concurrent_refreshes(plugin, standin):
    rng = random.Random(4412)
    env = ecr_env(standin.url)
    kills = survivors = 0
    stderrs = []
    while kills < 200:
        make_stale(plugin)
        standin.configure(delay=rng.choice([0.0, 0.005, 0.02]))
        procs = [spawn(plugin, env) for _ in range(6)]
        time.sleep(rng.uniform(0.0, 0.04))
        victims = rng.sample(procs, 2)
        for v in victims:
            v.send_signal(signal.SIGKILL)
        kills += len(victims)
        for p in procs:
            out, err = p.communicate(timeout=30)
            stderrs.append(err)
            if p in victims and p.returncode == -signal.SIGKILL:
                continue
            survivors += 1
            assert p.returncode == 0, err
            body = json.loads(out)
            pw = body["auth"][ECR]["password"]
            assert pw in standin.tokens, "an answer that upstream never issued"
    # every later exec answers correctly
    standin.configure(delay=0.0)
    res = plugin.run(request(f"{ECR}/app"), env=env)
    assert res.code == 0, res.stderr
    for err in stderrs + [res.stderr]:
        assert "corrupt" not in err and "another format" not in err, err
    [entry] = plugin.cache_dir.glob("*.json")
    assert json.loads(entry.read_text())["auth"][ECR]["password"] in standin.tokens
    print(f"kills={kills} survivors={survivors} upstream_calls={standin.call_count()}")


def test_stopped_lock_holder_does_not_block_others(plugin, standin):
    env = ecr_env(standin.url)
    standin.configure(delay=2.0)
    holder = spawn(plugin, env)
    try:
        end = time.monotonic() + 10
        while standin.call_count() == 0 and time.monotonic() < end:
            time.sleep(0.01)
        assert standin.call_count() == 1
        holder.send_signal(signal.SIGSTOP)
        res = plugin.run(request(f"{ECR}/app"), env=env, args=["--timeout", "8s"])
        assert res.code == 0, res.stderr
        assert "held the cache lock" in res.stderr
        assert res.elapsed < 8
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.communicate(timeout=30)
    assert holder.returncode == 0


def in_mount_namespace(plugin, env, setup, args=()):
    """Runs pullcred in a private mount namespace (unshare -rm) whose cache
    directory sits on a tiny tmpfs prepared by `setup` (shell)."""
    mnt = plugin.cache_dir.parent / "mnt"
    mnt.mkdir()
    cache = mnt / "cache"
    script = f"""
set -e
mount -t tmpfs -o size=16k,mode=0700 tmpfs {mnt}
mkdir -m 0700 {cache}
{setup}
exec {BIN} {' '.join(args)}
"""
    e = dict(plugin.env, **env)
    e["PULLCRED_CACHE_DIR"] = str(cache)
    p = subprocess.run(["unshare", "-rm", "bash", "-c", script.replace("$MNT", str(mnt))],
                       input=REQ, capture_output=True, text=True, env=e, timeout=60)
    return p


def test_full_cache_filesystem_still_answers(plugin, standin):
    fill = "dd if=/dev/zero of=$MNT/fill bs=1k count=64 2>/dev/null || true"
    p = in_mount_namespace(plugin, ecr_env(standin.url), fill)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["auth"][ECR]["password"]
    assert "without caching" in p.stderr or "without" in p.stderr, p.stderr


def test_read_only_cache_directory_still_answers(plugin, standin):
    p = in_mount_namespace(plugin, ecr_env(standin.url), "mount -o remount,ro $MNT")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["auth"][ECR]["password"]
    assert "WARN" in p.stderr


def test_cache_directory_removed_between_execs(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/app"), env=env).code == 0
    shutil.rmtree(plugin.cache_dir)
    res = plugin.run(request(f"{ECR}/app"), env=env)
    assert res.code == 0, res.stderr
    assert res.stderr == ""
    assert plugin.cache_dir.is_dir() and standin.call_count() == 2
