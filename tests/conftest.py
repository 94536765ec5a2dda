"""The stdin JSON harness: runs the built `pullcred` exactly as the kubelet does.

- one CredentialProviderRequest on stdin, followed by a newline;
- a clean environment (only what a test gives, plus PATH), a fresh HOME and
  cache directory per test;
- stdout decoded as JSON before any comparison.

Every stderr the suite captures is scanned for every secret the suite has
minted or used (tokens from stand-ins and moto, AWS secret keys): a secret on
stderr fails the test that printed it. Every captured stderr (and the stdout
of failed runs) is also kept, and at the end of the session scanned again
against every secret registered during the whole session, so a token a
stand-in mints after the run that printed it is caught too; a leak there fails
the session and names the test, never the secret.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from standins.ecr import EcrStandin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("PULLCRED_BIN", ROOT / "target" / "debug" / "pullcred"))
V1 = "credentialprovider.kubelet.k8s.io/v1"

ACCESS_KEY = "AKIAPULLCREDTEST0001"
SECRET_KEY = "pullcred-test-secret-key-do-not-print-0001"
SECRETS = {SECRET_KEY}
# (test node id, what, text) of every captured stderr and failed-run stdout
CAPTURED = []


def register_secret(s):
    if s:
        SECRETS.add(s)


def request(image, api_version=V1, **extra):
    r = {"apiVersion": api_version, "kind": "CredentialProviderRequest", "image": image}
    r.update(extra)
    return r


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def json(self):
        return json.loads(self.stdout)


def assert_no_secret(text):
    for s in SECRETS:
        assert s not in text, "a secret reached stderr"


def base_env(home):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(Path(home) / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "aws-credentials"),
        # The contract's exact figures (refresh at 3/4 of a token's life);
        # tests/test_jitter.py covers the spread refresh points.
        "PULLCRED_REFRESH_JITTER": "0",
    }


class Plugin:
    """Runs the binary for one test, with that test's environment."""

    def __init__(self, tmp_path):
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.cache_dir = tmp_path / "cache"
        self.env = base_env(self.home)
        # empty AWS config files: the host's ~/.aws never leaks into a test
        for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            Path(self.env[name]).write_text("")
        self.env["PULLCRED_CACHE_DIR"] = str(self.cache_dir)

    def start(self, req, env=None, args=(), stdin=None):
        e = dict(self.env)
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        p = subprocess.Popen(
            [str(BIN), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=e,
            text=True,
        )
        data = stdin if stdin is not None else json.dumps(req) + "\n"
        return p, data

    def finish(self, p, data, started, timeout=65):
        try:
            out, err = p.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"pullcred hung past {timeout}s; stderr: {err}")
        res = Result(p.returncode, out, err, time.monotonic() - started)
        self.check(res)
        return res

    def run(self, req=None, env=None, args=(), stdin=None, timeout=65):
        started = time.monotonic()
        p, data = self.start(req, env, args, stdin)
        return self.finish(p, data, started, timeout)

    @staticmethod
    def check(res):
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
        CAPTURED.append((test, "stderr", res.stderr))
        if res.code != 0:
            CAPTURED.append((test, "stdout", res.stdout))
        # The contract's invariants, on every single run.
        if res.code == 0:
            body = res.json
            for a in body.get("auth", {}).values():
                register_secret(a.get("password"))
        else:
            assert res.stdout == "", "a failed run printed on stdout"
            lines = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
            assert len(lines) == 1, f"want one error line, got: {res.stderr!r}"
            assert "panicked" not in res.stderr
        assert_no_secret(res.stderr)


def pytest_sessionfinish(session, exitstatus):
    """The suite-wide leak scan: all captured texts against all secrets."""
    secrets_ = [s for s in SECRETS if s]
    leaks = sorted({(test, what) for test, what, text in CAPTURED if any(s in text for s in secrets_)})
    if not leaks:
        return
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"SECRET LEAK: a secret registered during this session appears in {len(leaks)} captured output(s):"]
    lines += [f"  {test}: {what}" for test, what in leaks]
    if tr:
        tr.write("\n")
    for line in lines:
        if tr:
            tr.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    session.exitstatus = 1


@pytest.fixture
def plugin(tmp_path):
    assert BIN.exists(), f"{BIN} is missing: build it first (tests/run does)"
    return Plugin(tmp_path)


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """A test CA and a server certificate for 127.0.0.1 and localhost signed
    by it, (ca, cert, key), for the stand-ins that speak TLS."""
    from standins.azure import make_ca_and_server_cert

    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def standin():
    s = EcrStandin(on_token=register_secret)
    yield s
    s.close()


@pytest.fixture
def google():
    """The Google stand-in (metadata server, OAuth, STS, IAM credentials);
    standins/gcp.py."""
    from standins.gcp import GoogleStandin

    s = GoogleStandin(on_token=register_secret)
    yield s
    s.close()


def ecr_env(url):
    return {"AWS_ENDPOINT_URL_ECR": url, "AWS_ENDPOINT_URL_ECR_PUBLIC": url}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=30):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="session")
def moto():
    """moto in server mode: from PULLCRED_TEST_MOTO_URL (.ci/run starts one),
    else started here, on loopback."""
    url = os.environ.get("PULLCRED_TEST_MOTO_URL")
    if url:
        wait_http(url + "/moto-api/")
        yield url
        return
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    assert exe, "moto_server not found: tests/run installs it into .venv"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/moto-api/")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
