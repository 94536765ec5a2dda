"""Files pullcred reads before it answers: cache entries, key files, azure.json,
token files, docker configs, and the cache directory itself.

- A FIFO (or any file that is not a regular file) where such a file should be
  is refused at once, in one line naming it: pullcred never waits on it, and
  never leans on the watchdog to get out.
- A docker config swapped for a FIFO between pullcred's check and its read
  cannot stall a run either: the file is checked through the handle it is
  read from.
- A cache directory that is refused (another user can write it, a symlink)
  means answering without the cache, with a warning.
- Expired entries and stale lock files are swept by later misses, so made-up
  hosts cannot grow the cache without bound.
"""

import ctypes
import ctypes.util
import json
import os
import threading
import time

import pytest

from conftest import ecr_env, free_port, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
GOOGLE = "us-docker.pkg.dev/project/repo/app"
ACR = "myreg.azurecr.io"
TIMEOUT = 4  # --timeout, seconds
# The watchdog ends a run at TIMEOUT + 1s whatever blocks it; a run that
# refuses the file itself ends long before that.
QUICK = TIMEOUT - 1


def fifo(path):
    os.mkfifo(path, 0o600)
    os.chmod(path, 0o600)
    return path


def run_bounded(plugin, req, env, args=()):
    """One run that must end on its own: the harness kills it (and fails the
    test) past --timeout + 1s and a little slack for process start."""
    return plugin.run(req, env=env, args=["--timeout", f"{TIMEOUT}s", *args], timeout=TIMEOUT + 2)


def refused_at_once(res, path):
    assert res.code == 1, res.stderr
    assert res.elapsed < QUICK, f"took {res.elapsed:.1f}s: waited on the file"
    [line] = res.stderr.strip().splitlines()
    assert str(path) in line and "FIFO" in line, line


def unreachable():
    return f"https://127.0.0.1:{free_port()}"


# --- a FIFO where a file should be ------------------------------------------------


def test_fifo_as_a_cache_entry_is_a_miss_and_replaced(plugin, standin):
    env = ecr_env(standin.url)
    assert plugin.run(request(f"{ECR}/a"), env=env).code == 0
    [entry] = plugin.cache_dir.glob("*.json")
    entry.unlink()
    fifo(entry)
    res = run_bounded(plugin, request(f"{ECR}/a"), env)
    assert res.code == 0, res.stderr
    assert res.elapsed < QUICK
    assert "ignoring cache entry" in res.stderr and "FIFO" in res.stderr
    assert standin.call_count() == 2
    # replaced by a whole entry, and the next run is a quiet hit
    assert entry.is_file() and json.loads(entry.read_text())["auth"]
    again = run_bounded(plugin, request(f"{ECR}/a"), env)
    assert again.code == 0 and again.stderr == ""
    assert standin.call_count() == 2


def test_fifo_as_google_application_credentials(plugin, tmp_path):
    path = fifo(tmp_path / "key.json")
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}"}
    refused_at_once(run_bounded(plugin, request(GOOGLE), env), path)


def test_fifo_as_a_google_subject_token_file(plugin, tmp_path):
    token = fifo(tmp_path / "subject-token")
    cfg = tmp_path / "wif.json"
    cfg.write_text(json.dumps({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{unreachable()}/v1/token",
        "credential_source": {"file": str(token)},
    }))
    os.chmod(cfg, 0o600)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(cfg)}
    refused_at_once(run_bounded(plugin, request(GOOGLE), env), token)


def azure_env(**extra):
    e = {
        "PULLCRED_AZURE_IMDS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "AZURE_AUTHORITY_HOST": unreachable(),
        "PULLCRED_ACR_ENDPOINTS": f"*={unreachable()}",
        "PULLCRED_AZURE_CONFIG": "none",
    }
    e.update(extra)
    return e


def test_fifo_as_azure_json(plugin, tmp_path):
    path = fifo(tmp_path / "azure.json")
    env = azure_env(PULLCRED_AZURE_CONFIG=str(path))
    refused_at_once(run_bounded(plugin, request(f"{ACR}/a"), env), path)


def test_fifo_as_the_azure_federated_token_file(plugin, tmp_path):
    path = fifo(tmp_path / "azure-identity-token")
    env = azure_env(AZURE_FEDERATED_TOKEN_FILE=str(path), AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t")
    refused_at_once(run_bounded(plugin, request(f"{ACR}/a"), env), path)


def test_fifo_as_the_azure_client_certificate(plugin, tmp_path):
    path = fifo(tmp_path / "client.pem")
    env = azure_env(AZURE_CLIENT_CERTIFICATE_PATH=str(path), AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t")
    refused_at_once(run_bounded(plugin, request(f"{ACR}/a"), env), path)


def test_fifo_as_a_docker_config(plugin, tmp_path):
    path = fifo(tmp_path / "config.json")
    res = run_bounded(plugin, request("registry.example.com/app"), {}, args=["--docker-config", str(path)])
    assert res.code == 1 and res.elapsed < QUICK
    assert str(path) in res.stderr and "FIFO" in res.stderr


def test_dev_zero_as_a_google_key_file(plugin):
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "/dev/zero", "GCE_METADATA_HOST": f"127.0.0.1:{free_port()}"}
    res = run_bounded(plugin, request(GOOGLE), env)
    assert res.code == 1 and res.elapsed < QUICK
    assert "/dev/zero" in res.stderr and "character device" in res.stderr


# --- a docker config swapped between check and read ------------------------------

RENAME_EXCHANGE = 2


def exchanger(a, b):
    """A function that swaps two names atomically (renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    AT_FDCWD = -100
    a, b = os.fsencode(a), os.fsencode(b)

    def swap():
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")

    return swap


def test_docker_config_swapped_for_a_fifo_never_stalls_a_run(plugin, tmp_path):
    """Given a user who swaps a node's docker config with a FIFO as fast as
    the kernel allows, when pullcred runs again and again, then every run
    ends on its own (with the file's credentials, or refusing the FIFO),
    never waiting on the FIFO. Today's check-by-path-then-open loses this
    race within a few runs."""
    path = tmp_path / "config.json"
    auth = {"auths": {"registry.example.com": {"username": "u", "password": "pw-not-secret"}}}
    path.write_text(json.dumps(auth))
    os.chmod(path, 0o600)
    other = fifo(tmp_path / "other")
    swap = exchanger(path, other)
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            swap()

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    answered = refused = 0
    try:
        for _ in range(60):
            res = run_bounded(plugin, request("registry.example.com/app"), {"PULLCRED_NO_CACHE": "1"},
                              args=["--docker-config", str(path), "--no-registry-check"])
            assert res.elapsed < QUICK, f"run {answered + refused + 1} waited {res.elapsed:.1f}s on the FIFO"
            if res.code == 0:
                assert res.json["auth"]["registry.example.com"]["password"] == "pw-not-secret"
                answered += 1
            else:
                assert "not a regular file" in res.stderr, res.stderr
                refused += 1
    finally:
        stop.set()
        t.join()
    print(f"answered={answered} refused={refused}")


# --- the cache directory -----------------------------------------------------------


def test_refused_cache_dir_answers_uncached_with_a_warning(plugin, standin, tmp_path):
    plugin.cache_dir.mkdir(mode=0o700)
    os.chmod(plugin.cache_dir, 0o770)
    env = ecr_env(standin.url)
    for _ in range(2):
        res = plugin.run(request(f"{ECR}/a"), env=env)
        assert res.code == 0, res.stderr
        assert res.json["auth"][ECR]["password"]
        assert "refused" in res.stderr and str(plugin.cache_dir) in res.stderr
        assert "without the cache" in res.stderr
    assert list(plugin.cache_dir.iterdir()) == []
    assert standin.call_count() == 2


# --- a bounded cache ---------------------------------------------------------------


def test_expired_entries_and_stale_locks_are_swept_by_misses(plugin, standin):
    """Given 200 expired entries of made-up hosts, each with a lock file, when
    a few runs miss, then all of them are gone, and live entries are not."""
    d = plugin.cache_dir
    d.mkdir(mode=0o700)
    now = int(time.time())
    old = time.time() - 3600
    fake = []
    for i in range(200):
        key = os.urandom(32).hex()
        e = d / f"{key}.json"
        e.write_text(json.dumps({"format": 1, "key": key, "registry": f"{i:012d}.dkr.ecr.us-east-1.amazonaws.com",
                                 "cacheKeyType": "Registry", "auth": {}, "fetchedAt": now - 86400,
                                 "expiresAt": now - 43200}))
        os.chmod(e, 0o600)
        lock = d / f"{key}.lock"
        lock.touch(mode=0o600)
        os.utime(lock, (old, old))
        fake += [e, lock]
    env = ecr_env(standin.url)
    for i in range(3):
        # another identity each time: a miss, and one more live entry
        res = plugin.run(request(f"{ECR}/a"), env=dict(env, AWS_ACCESS_KEY_ID=f"AKIAPULLCREDSWEEP{i:03d}"))
        assert res.code == 0, res.stderr
        assert res.elapsed < 10
    left = [f.name for f in fake if f.exists()]
    assert left == [], f"{len(left)} expired files left after 3 misses"
    live = sorted(d.glob("*.json"))
    assert len(live) == 3
    # and every live entry still answers as a hit
    for i in range(3):
        res = plugin.run(request(f"{ECR}/a"), env=dict(env, AWS_ACCESS_KEY_ID=f"AKIAPULLCREDSWEEP{i:03d}"))
        assert res.code == 0 and res.stderr == ""
    assert standin.call_count() == 3
