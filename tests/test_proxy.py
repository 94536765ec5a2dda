"""Nodes behind an HTTP proxy: a real forwarding proxy (tinyproxy) on
loopback, and host names that resolve to 127.0.0.1 through a hosts file
bind-mounted over /etc/hosts in private mount namespaces (unshare -rm), for
pullcred and for the proxy alike: some clients never proxy loopback literals,
and the proxy must resolve the names it is asked to CONNECT to.

- the AWS SDK's calls (ECR here) go through HTTPS_PROXY, with credentials;
- NO_PROXY (domain suffixes, host:port, `*`) sends them direct;
- metadata servers (AWS IMDS for the SDK and for Google's aws1 source, the
  Google metadata server, Azure IMDS) are never sent to the proxy, whatever
  HTTP_PROXY/HTTPS_PROXY say and with NO_PROXY empty;
- a proxy scheme we do not support is one clear error line, not a silent
  direct connection.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import standins.ecr as ecr_module
from conftest import BIN, Result, free_port, register_secret, request
from standins.azure import AzureStandin, make_ca_and_server_cert
from standins.base import QuietHandler, start, tls_server_context
from standins.ecr import EcrStandin
from standins.gcp import AWS_TOKEN_TYPE

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
ECR_API = "api.ecr.us-west-2.amazonaws.com"
NAMES = [ECR_API, "imds.test", "gce-metadata.test", "azure-imds.test", "google-apis.test"]
PROXY_PASSWORD = "pr0xy-pass-do-not-print"
# the same, percent-encoded in part: pullcred must decode it
PROXY_PASSWORD_IN_URL = "pr0xy%2Dpass-do-not-print"


# ------------------------------------------------------------------ helpers


def in_namespace(hosts, argv):
    """`argv` in a private mount namespace whose /etc/hosts is `hosts`."""
    return ["unshare", "-rm", "bash", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "$@"', "ns", *argv]


class Tinyproxy:
    """tinyproxy on 127.0.0.1:<free port>, with its own config and log."""

    def __init__(self, directory, hosts, auth=None):
        assert shutil.which("tinyproxy"), "tinyproxy is missing: tests/run installs it"
        self.port = free_port()
        conf = directory / "tinyproxy.conf"
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "LogLevel Info", "MaxClients 50"]
        if auth:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        conf.write_text("\n".join(lines) + "\n")
        self.log_path = directory / "tinyproxy.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            in_namespace(hosts, ["tinyproxy", "-d", "-c", str(conf)]),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                assert self.proc.poll() is None, self.log_path.read_text()
                assert time.monotonic() < end, "tinyproxy did not come up"
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def requests(self):
        """The request lines the proxy received, e.g. `CONNECT host:443 HTTP/1.1`."""
        self.log_file.flush()
        return re.findall(r"Request \(file descriptor \d+\): (.*)", self.log_path.read_text())

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log_file.close()


@pytest.fixture
def hosts(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in NAMES))
    return path


@pytest.fixture
def proxy(tmp_path, hosts):
    d = tmp_path / "proxy"
    d.mkdir()
    p = Tinyproxy(d, hosts)
    yield p
    p.close()


@pytest.fixture
def tls_names(tmp_path):
    d = tmp_path / "tls-names"
    d.mkdir()
    return make_ca_and_server_cert(d, NAMES)


@pytest.fixture
def ecr(tls_names, monkeypatch):
    """The ECR stand-in, over TLS for the real API host name."""
    _, cert, key = tls_names
    ctx = tls_server_context(cert, key)
    monkeypatch.setattr(ecr_module, "start", lambda handler: start(handler, ctx))
    s = EcrStandin(on_token=register_secret)
    yield s
    s.close()


def run(plugin, hosts, env, image=f"{ECR}/app", timeout=65):
    """pullcred as the kubelet runs it, with `hosts` as its /etc/hosts."""
    e = dict(plugin.env)
    e.update(env)
    e = {k: v for k, v in e.items() if v is not None}
    started = time.monotonic()
    p = subprocess.run(
        in_namespace(hosts, [str(BIN)]),
        input=json.dumps(request(image)) + "\n",
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
    )
    res = Result(p.returncode, p.stdout, p.stderr, time.monotonic() - started)
    plugin.check(res)
    return res


def ecr_env(ecr, tls_names, **extra):
    env = {
        "AWS_ENDPOINT_URL_ECR": f"https://{ECR_API}:{ecr.port}",
        "SSL_CERT_FILE": str(tls_names[0]),
        "PULLCRED_NO_CACHE": "1",
        "PULLCRED_LOG": "debug",
    }
    env.update(extra)
    return env


def connects(proxy, host):
    return [r for r in proxy.requests() if r.startswith(f"CONNECT {host}:")]


class Ec2Imds:
    """IMDSv2 as the AWS SDK's credential provider reads it, on plain HTTP."""

    def __init__(self, creds):
        self.calls = []
        imds = self

        class H(QuietHandler):
            def do_PUT(self):
                imds.calls.append(("PUT", self.path))
                if self.path == "/latest/api/token":
                    return self.reply(200, "imds-session-for-proxy-test", "text/plain",
                                      {"x-aws-ec2-metadata-token-ttl-seconds": "21600"})
                self.reply(404, "", "text/plain")

            def do_GET(self):
                imds.calls.append(("GET", self.path))
                if self.headers.get("x-aws-ec2-metadata-token") != "imds-session-for-proxy-test":
                    return self.reply(401, "", "text/plain")
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self.reply(200, "node-role", "text/plain")
                if self.path == base + "node-role":
                    return self.reply(200, creds)
                self.reply(404, "", "text/plain")

        self.server = start(H)
        self.port = self.server.port

    def close(self):
        self.server.close()


# ------------------------------------------------------------------ AWS through the proxy


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy"])
def test_ecr_goes_through_the_https_proxy(plugin, hosts, proxy, ecr, tls_names, var):
    res = run(plugin, hosts, ecr_env(ecr, tls_names, **{var: proxy.url}))
    assert res.code == 0, res.stderr
    assert res.json["auth"][ECR]["password"]
    assert connects(proxy, ECR_API) == [f"CONNECT {ECR_API}:{ecr.port} HTTP/1.1"]
    assert ecr.call_count() == 1


def test_proxy_credentials_are_sent_and_never_printed(plugin, tmp_path, hosts, ecr, tls_names):
    """The password is percent-decoded from the URL, sent to the proxy, and
    printed nowhere, even at trace level."""
    register_secret(PROXY_PASSWORD)
    register_secret(PROXY_PASSWORD_IN_URL)
    d = tmp_path / "authproxy"
    d.mkdir()
    p = Tinyproxy(d, hosts, auth=("puller", PROXY_PASSWORD))
    try:
        url = f"http://puller:{PROXY_PASSWORD_IN_URL}@127.0.0.1:{p.port}"
        res = run(plugin, hosts, ecr_env(ecr, tls_names, HTTPS_PROXY=url, PULLCRED_LOG="trace"))
        assert res.code == 0, res.stderr
        assert connects(p, ECR_API)
        assert f"http://puller:***@127.0.0.1:{p.port}" in res.stderr
        # a wrong password: the proxy refuses (407), and nothing reaches ECR
        bad = "wrong-proxy-password-1"
        register_secret(bad)
        res = run(plugin, hosts, ecr_env(ecr, tls_names, HTTPS_PROXY=f"http://puller:{bad}@127.0.0.1:{p.port}"))
        assert res.code != 0
        assert ecr.call_count() == 1
    finally:
        p.close()


@pytest.mark.parametrize(
    "var,value",
    [
        ("NO_PROXY", ".amazonaws.com"),
        ("NO_PROXY", "amazonaws.com"),
        ("no_proxy", "*.us-west-2.amazonaws.com"),
        ("NO_PROXY", "example.com, {api}:{port}"),
        ("NO_PROXY", "*"),
    ],
)
def test_no_proxy_sends_aws_calls_direct(plugin, hosts, proxy, ecr, tls_names, var, value):
    env = ecr_env(ecr, tls_names, HTTPS_PROXY=proxy.url)
    res = run(plugin, hosts, env)
    assert res.code == 0, res.stderr
    assert len(connects(proxy, ECR_API)) == 1  # proxied without NO_PROXY...
    env[var] = value.format(api=ECR_API, port=ecr.port)
    res = run(plugin, hosts, env)
    assert res.code == 0, res.stderr
    assert len(connects(proxy, ECR_API)) == 1  # ...and direct with it
    assert ecr.call_count() == 2


def test_no_proxy_for_another_port_still_proxies(plugin, hosts, proxy, ecr, tls_names):
    env = ecr_env(ecr, tls_names, HTTPS_PROXY=proxy.url, NO_PROXY=f"{ECR_API}:{ecr.port + 1},10.0.0.0/8")
    res = run(plugin, hosts, env)
    assert res.code == 0, res.stderr
    assert len(connects(proxy, ECR_API)) == 1


@pytest.mark.parametrize("value", ["socks5://puller:{pw}@127.0.0.1:1080", "https://puller:{pw}@127.0.0.1:3129"])
def test_unsupported_proxy_scheme_is_one_clear_line(plugin, hosts, ecr, tls_names, value):
    register_secret(PROXY_PASSWORD)
    res = run(plugin, hosts, ecr_env(ecr, tls_names, HTTPS_PROXY=value.format(pw=PROXY_PASSWORD)))
    assert res.code != 0
    assert "HTTPS_PROXY names a" in res.stderr and "only http:// proxies are supported" in res.stderr
    assert ecr.call_count() == 0


# ------------------------------------------------------------------ metadata servers: never through the proxy


def proxy_everything(proxy):
    return {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}


def test_aws_imds_is_never_proxied(plugin, hosts, proxy, ecr, tls_names):
    creds = {
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAPROXYIMDSKEY0001",
        "SecretAccessKey": "proxy-imds-secret-do-not-print",
        "Token": "proxy-imds-token-do-not-print",
        "Expiration": "2099-01-01T00:00:00Z",
        "LastUpdated": "2024-01-01T00:00:00Z",
    }
    for s in (creds["SecretAccessKey"], creds["Token"]):
        register_secret(s)
    imds = Ec2Imds(creds)
    env = ecr_env(ecr, tls_names, **proxy_everything(proxy))
    env.update(
        {
            "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "AWS_EC2_METADATA_DISABLED": "false",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://imds.test:{imds.port}",
        }
    )
    try:
        res = run(plugin, hosts, env)
    finally:
        imds.close()
    assert res.code == 0, res.stderr
    assert ("PUT", "/latest/api/token") in imds.calls, "the IMDS stand-in was not asked"
    assert not [r for r in proxy.requests() if "imds.test" in r], proxy.requests()
    # ECR itself did go through the proxy, signed with IMDS's credentials
    assert len(connects(proxy, ECR_API)) == 1
    assert ecr.calls[0]["access_key_id"] == creds["AccessKeyId"]


def test_google_metadata_server_is_never_proxied(plugin, hosts, proxy, google):
    env = dict(proxy_everything(proxy), GCE_METADATA_HOST=f"gce-metadata.test:{google.port}")
    res = run(plugin, hosts, env, image="us-docker.pkg.dev/project/repo/app")
    assert res.code == 0, res.stderr
    assert res.json["auth"]["us-docker.pkg.dev"]["password"].startswith("ya29.standin-")
    assert [c for c in google.calls if c["kind"] == "metadata"]
    assert proxy.requests() == []


def test_google_aws1_source_asks_imds_directly(plugin, hosts, proxy, google):
    creds = {
        "AccessKeyId": "ASIAPROXYGOOGLE00001",
        "SecretAccessKey": "proxy-aws1-secret-do-not-print",
        "Token": "proxy-aws1-token-do-not-print",
        "Expiration": "2099-01-01T00:00:00Z",
    }
    for s in (creds["SecretAccessKey"], creds["Token"]):
        register_secret(s)
    audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws"
    google.configure(aws_secret_key=creds["SecretAccessKey"], imds_creds=creds, audience=audience)
    imds = f"http://imds.test:{google.port}"
    wif = plugin.home / "wif.json"
    wif.write_text(
        json.dumps(
            {
                "type": "external_account",
                "audience": audience,
                "subject_token_type": AWS_TOKEN_TYPE,
                "token_url": f"{google.url}/v1/token",
                "credential_source": {
                    "environment_id": "aws1",
                    "region_url": f"{imds}/latest/meta-data/placement/availability-zone",
                    "url": f"{imds}/latest/meta-data/iam/security-credentials",
                    "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
                    "imdsv2_session_token_url": f"{imds}/latest/api/token",
                },
            }
        )
    )
    os.chmod(wif, 0o600)
    env = dict(
        proxy_everything(proxy),
        GOOGLE_APPLICATION_CREDENTIALS=str(wif),
        AWS_ACCESS_KEY_ID=None,
        AWS_SECRET_ACCESS_KEY=None,
    )
    res = run(plugin, hosts, env, image="us-docker.pkg.dev/project/repo/app")
    assert res.code == 0, res.stderr
    assert [c for c in google.calls if c["kind"] == "imds"]
    assert not [r for r in proxy.requests() if "imds.test" in r], proxy.requests()


def test_azure_imds_is_never_proxied(plugin, hosts, proxy, tls):
    _, cert, key = tls
    azure = AzureStandin(cert, key, on_secret=register_secret)
    try:
        env = dict(
            proxy_everything(proxy),
            SSL_CERT_FILE=str(tls[0]),
            PULLCRED_AZURE_IMDS_ENDPOINT=f"http://azure-imds.test:{azure.http.port}",
            AZURE_AUTHORITY_HOST=azure.url,
            PULLCRED_ACR_ENDPOINTS=f"*={azure.url}",
            PULLCRED_AZURE_CONFIG="none",
        )
        res = run(plugin, hosts, env, image="myreg.azurecr.io/team/app")
        assert res.code == 0, res.stderr
        assert azure.calls_to("imds")
        assert not [r for r in proxy.requests() if "azure-imds.test" in r], proxy.requests()
    finally:
        azure.close()
