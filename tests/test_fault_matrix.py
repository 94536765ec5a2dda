"""The upstream fault matrix: every source × every fault kind.

Each (source, fault) either ends in one clear error line within the deadline
(conftest checks: exit 1, empty stdout, exactly one `pullcred:` line, no
panic, no secret), or, for static credentials whose registry check cannot be
made, serves the credentials with a warning as documented; never an expired
credential, a hang or a panic. Token expiries in the past are answered with
cacheDuration 0s and not cached; decades away are capped (cacheDuration <= 11h).

Sources and their upstreams (all on 127.0.0.1):
  ecr     standins/ecr.py (GetAuthorizationToken)
  gcp     standins/gcp.py metadata server (TLS: an external-account STS URL)
  azure   standins/azure.py IMDS, Entra, ACR challenge and token exchange
  static  dockerconfigjson checked against the real registry (tests/registry.py)
          through standins/registry_front.py, which relays or fails on demand

tests/fault_figures.py counts these cases by fault kind for the README.
"""

import json
import os
import re
import time

import pytest

from conftest import ecr_env, free_port, register_secret, request
from registry import Registry
from standins.azure import AzureStandin, make_ca_and_server_cert
from standins.ecr import EcrStandin
from standins.gcp import GoogleStandin
from standins.registry_front import RegistryFront

TIMEOUT = 4  # seconds, --timeout for every run here
SLACK = 1.5  # process start, the watchdog's second, a loaded CI machine
DNS_HOST = "no-such-host.invalid:1"  # RFC 6761: never resolves
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
GCP_IMAGE = "us-docker.pkg.dev/project/repo/app"
ACR = "myreg.azurecr.io"
FAR_FUTURE = 50 * 365 * 86400  # decades

SOURCES = ["ecr", "gcp", "azure", "static"]
FAULTS = [
    "refused",
    "dns",
    "tls",
    "5xx",
    "throttle",
    "hang",
    "truncated",
    "garbage",
    "huge",
    "expired",
    "far_future",
]
# Combinations that cannot happen, and why (not run, counted as n/a):
NOT_APPLICABLE = {
    # Static credentials carry no expiry of their own: their cache window is a
    # fixed --static-cache-duration (5m), so no upstream can send a past or a
    # decades-away expiry.
    ("static", "expired"): "static credentials have no token expiry",
    ("static", "far_future"): "static credentials have no token expiry",
}
CASES = [(s, f) for s in SOURCES for f in FAULTS if (s, f) not in NOT_APPLICABLE]

# "upstream down, still-valid cached token": token sources only. Static entries
# have no refresh window before their end (refresh point == end of the 5m
# window), and an unreachable registry serves the file's credentials anyway.
STALE_SOURCES = ["ecr", "gcp", "azure"]

# Words the one error line must carry, per fault kind (any of them).
MESSAGE = {
    "refused": ["refused"],
    "dns": ["dns"],
    "tls": ["tls handshake failed"],
    "5xx": ["http 500", "http 503"],
    "throttle": ["429"],
    "hang": ["timed out"],
    "truncated": ["unreadable", "eof", "end of stream", "disconnected"],
    "garbage": ["unreadable", "parse"],
    "huge": ["limit"],
}

GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$")


def seconds(d):
    h, m, s = (int(x or 0) for x in GO_DURATION.match(d).groups())
    return h * 3600 + m * 60 + s


def private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that signed nothing any server here presents."""
    ca, _, _ = make_ca_and_server_cert(tmp_path_factory.mktemp("other-ca"))
    return ca


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("registry"))
    for pw in r.users.values():
        register_secret(pw)
    yield r
    r.close()


# ------------------------------------------------------------------ one harness per source
#
# fault(kind) puts the upstream into that fault and returns (image, env);
# clear() ends it; calls() counts upstream calls on the faulty step;
# expire(seconds) makes the next token expire that far from now.


class Ecr:
    def __init__(self, tmp_path, fx):
        self.s = EcrStandin(on_token=register_secret)
        self.image = f"{ECR}/a"
        self.registry = ECR

    def env(self):
        return ecr_env(self.s.url)

    def fault(self, kind):
        if kind == "refused":
            return self.image, ecr_env(f"http://127.0.0.1:{free_port()}")
        if kind == "dns":
            return self.image, ecr_env(f"https://{DNS_HOST}")  # https: plain http is refused off loopback
        if kind == "tls":  # the stand-in speaks plain HTTP: https to it fails the handshake
            return self.image, ecr_env(f"https://127.0.0.1:{self.s.port}")
        modes = {"5xx": "error500", "throttle": "http429", "hang": "hang", "truncated": "truncated",
                 "garbage": "garbage", "huge": "huge"}
        self.s.configure(mode=modes[kind])
        return self.image, self.env()

    def clear(self):
        self.s.configure(mode="ok")

    def calls(self):
        return self.s.call_count()

    def expire(self, secs):
        self.s.configure(expires_in=secs)

    def close(self):
        self.s.close()


class Gcp:
    def __init__(self, tmp_path, fx):
        self.tmp = tmp_path
        self.s = GoogleStandin(on_token=register_secret)
        self.image = GCP_IMAGE
        self.registry = "us-docker.pkg.dev"

    def env(self):
        return {"GCE_METADATA_HOST": self.s.host}

    def fault(self, kind):
        if kind == "refused":
            return self.image, {"GCE_METADATA_HOST": f"127.0.0.1:{free_port()}"}
        if kind == "dns":
            return self.image, {"GCE_METADATA_HOST": DNS_HOST}
        if kind == "tls":
            # The metadata server is plain HTTP by design; Google's TLS
            # endpoints are the token URLs of credential files. An
            # external-account file whose STS URL is https on the stand-in's
            # plain-HTTP port fails the handshake.
            subject = "subject-" + os.urandom(8).hex()
            register_secret(subject)
            (self.tmp / "subject").write_text(subject)
            cfg = private(self.tmp / "wif.json", json.dumps({
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/p",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": f"https://{self.s.host}/v1/token",
                "credential_source": {"file": str(self.tmp / "subject")},
            }))
            return self.image, {"GOOGLE_APPLICATION_CREDENTIALS": str(cfg)}
        modes = {"5xx": "error500", "throttle": "throttle", "hang": "hang", "truncated": "truncated",
                 "garbage": "garbage", "huge": "huge"}
        self.s.configure(mode=modes[kind])
        return self.image, self.env()

    def clear(self):
        self.s.configure(mode="ok")

    def calls(self):
        return self.s.call_count("metadata")

    def expire(self, secs):
        # expires_in is relative: "now" (0) is the most past it can say; a
        # negative one is refused as malformed.
        self.s.configure(expires_in=max(secs, 0))

    def close(self):
        self.s.close()


class Azure:
    def __init__(self, tmp_path, fx):
        self.ca, cert, key = fx("tls")
        self.other_ca = fx("other_ca")
        self.s = AzureStandin(cert, key, on_secret=register_secret)
        self.image = f"{ACR}/team/app"
        self.registry = ACR

    def env(self, acr=None):
        return {
            "SSL_CERT_FILE": str(self.ca),
            "PULLCRED_AZURE_IMDS_ENDPOINT": self.s.imds_url,
            "AZURE_AUTHORITY_HOST": self.s.url,
            "PULLCRED_ACR_ENDPOINTS": f"*={acr or self.s.url}",
            "PULLCRED_AZURE_CONFIG": "none",
        }

    def fault(self, kind):
        if kind == "refused":
            return self.image, self.env(f"https://127.0.0.1:{free_port()}")
        if kind == "dns":
            return self.image, self.env(f"https://{DNS_HOST}")
        if kind == "tls":  # ACR's certificate is signed by a CA not in SSL_CERT_FILE
            return self.image, dict(self.env(), SSL_CERT_FILE=str(self.other_ca))
        modes = {"5xx": "error500", "throttle": "throttle", "hang": "hang", "truncated": "truncated",
                 "garbage": "garbage", "huge": "huge"}
        self.s.configure(exchange=modes[kind])
        return self.image, self.env()

    def clear(self):
        self.s.configure(exchange="ok")

    def calls(self):
        return len(self.s.calls_to("exchange"))

    def expire(self, secs):
        self.s.configure(refresh_life=secs)

    def close(self):
        self.s.close()


class Static:
    def __init__(self, tmp_path, fx):
        self.tmp = tmp_path
        self.reg = fx("registry")
        self.other_ca = fx("other_ca")
        self.front = RegistryFront(self.reg)
        self.user, self.password = "user1", self.reg.users["user1"]
        self.registry = self.front.host
        self.image = f"{self.front.host}/team/app"

    def config(self, host):
        import base64

        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return private(self.tmp / "config.json", json.dumps({"auths": {host: {"auth": auth}}}))

    def env(self, host=None):
        host = host or self.front.host
        return {"SSL_CERT_FILE": str(self.reg.ca), "PULLCRED_DOCKER_CONFIG": str(self.config(host))}

    def fault(self, kind):
        if kind in ("refused", "dns"):
            host = f"127.0.0.1:{free_port()}" if kind == "refused" else DNS_HOST
            self.registry = host
            return f"{host}/team/app", self.env(host)
        if kind == "tls":  # the registry's certificate is signed by a CA not in SSL_CERT_FILE
            return self.image, dict(self.env(), SSL_CERT_FILE=str(self.other_ca))
        modes = {"5xx": "error503", "throttle": "throttle", "hang": "hang", "truncated": "truncated",
                 "garbage": "garbage", "huge": "huge"}
        self.front.configure(modes[kind])
        return self.image, self.env()

    def clear(self):
        self.front.configure("ok")

    def calls(self):
        return self.front.call_count()

    def close(self):
        self.front.close()


HARNESS = {"ecr": Ecr, "gcp": Gcp, "azure": Azure, "static": Static}


@pytest.fixture
def make_source(tmp_path, request):
    made = []

    def make(name):
        h = HARNESS[name](tmp_path, request.getfixturevalue)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def run(plugin, image, env, *args):
    return plugin.run(request(image), env=env, args=["--timeout", f"{TIMEOUT}s", *args], timeout=TIMEOUT + 30)


def assert_clear_failure(res, src, kind):
    """Either the one-line error (static: or the unchecked credentials with a
    warning, as documented), within the deadline."""
    assert res.elapsed < TIMEOUT + SLACK, f"took {res.elapsed:.1f}s: {res.stderr!r}"
    if isinstance(src, Static) and res.code == 0:
        creds = res.json["auth"][src.registry]
        assert (creds["username"], creds["password"]) == (src.user, src.password)
        assert "serving them unchecked" in res.stderr, res.stderr
        assert seconds(res.json["cacheDuration"]) <= 300
        text = res.stderr
    else:
        assert res.code == 1, res.stdout
        [text] = [line for line in res.stderr.splitlines() if line.startswith("pullcred:")]
        assert f"registry {src.registry}" in text, text
    low = text.lower()
    assert any(w in low for w in MESSAGE[kind]), f"{kind}: {text!r}"


# ------------------------------------------------------------------ the matrix


@pytest.mark.parametrize("source,fault", CASES)
def test_upstream_fault(plugin, make_source, source, fault):
    src = make_source(source)

    if fault in ("expired", "far_future"):
        src.expire(-3600 if fault == "expired" else FAR_FUTURE)
        res = run(plugin, src.image, src.env())
        assert res.code == 0, res.stderr
        d = seconds(res.json["cacheDuration"])
        if fault == "expired":
            assert d == 0
            assert "cacheDuration 0s and not caching" in res.stderr, res.stderr
            assert list(plugin.cache_dir.glob("*.json")) == []
        else:
            assert 0 < d <= 11 * 3600
        return

    image, env = src.fault(fault)
    res = run(plugin, image, env)
    assert_clear_failure(res, src, fault)

    if fault == "huge":  # bounded read: failed at the limit, not after 64 MiB
        assert res.elapsed < TIMEOUT - 1, res.elapsed
    if fault == "hang":
        assert res.elapsed > TIMEOUT - 2  # it did wait for the upstream, up to the deadline
    if fault == "throttle":
        assert src.calls() > 1, "throttling was not retried"
        src.clear()
        again = run(plugin, src.image, src.env())
        assert again.code == 0, again.stderr
        assert "unchecked" not in again.stderr
        assert list(again.json["auth"]) == [src.registry]


def age_entry(plugin, fetched_ago, expires_in):
    [entry] = plugin.cache_dir.glob("*.json")
    data = json.loads(entry.read_text())
    now = int(time.time())
    data["fetchedAt"] = now - fetched_ago
    data["expiresAt"] = now + expires_in
    entry.write_text(json.dumps(data))


@pytest.mark.parametrize("source", STALE_SOURCES)
def test_upstream_down_serves_a_still_valid_cached_token(plugin, make_source, source):
    src = make_source(source)
    first = run(plugin, src.image, src.env())
    assert first.code == 0, first.stderr
    # a 1h token fetched 50 minutes ago, 10 minutes left: past its refresh point
    age_entry(plugin, fetched_ago=3000, expires_in=600)
    env = src.env()
    src.close()  # upstream down: the port now refuses connections
    res = run(plugin, src.image, env)
    assert res.code == 0, res.stderr
    assert res.json["auth"] == first.json["auth"]
    assert 0 < seconds(res.json["cacheDuration"]) <= 60
    assert "serving the cached token" in res.stderr
    assert res.elapsed < TIMEOUT + SLACK
