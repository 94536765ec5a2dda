"""Google Artifact Registry and Container Registry: the metadata server,
service-account key files, workload identity federation (file, URL and AWS
subject tokens, impersonation), the cache, and failures. Upstream is the
stand-in in standins/gcp.py, on loopback."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, SECRETS, register_secret, request
from standins.gcp import AWS_TOKEN_TYPE, CLOUD_PLATFORM

AR = "us-docker.pkg.dev"
IMAGE = f"{AR}/project/repo/app"
AUDIENCE = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov"
EMAIL = "puller@project.iam.gserviceaccount.com"


# ------------------------------------------------------------------ fixtures


def make_key(path):
    """A fresh RSA-2048 PKCS#8 key from openssl; returns (pem, (n, e))."""
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["openssl", "rsa", "-in", str(path), "-noout", "-modulus"], check=True, capture_output=True, text=True
    ).stdout
    n = int(out.strip().split("=", 1)[1], 16)
    pem = path.read_text()
    for line in pem.splitlines():
        if not line.startswith("-----") and len(line) >= 20:
            register_secret(line)
    return pem, (n, 65537)


@pytest.fixture(scope="session")
def test_key(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test key")
    return make_key(tmp_path_factory.mktemp("gcpkey") / "key.pem")


def write_private(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    os.chmod(path, 0o600)
    return path


def key_file(plugin, google, test_key, **over):
    pem, public = test_key
    google.configure(public_key=public, email=EMAIL)
    data = {
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1",
        "token_uri": f"{google.url}/token",
    }
    data.update(over)
    return write_private(plugin.home / "sa.json", data)


def external_file(plugin, google, source, **over):
    google.configure(audience=AUDIENCE)
    data = {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{google.url}/v1/token",
        "credential_source": source,
    }
    data.update(over)
    return write_private(plugin.home / "wif.json", data)


def md_env(google):
    return {"GCE_METADATA_HOST": google.host}


def entries(plugin):
    return sorted(plugin.cache_dir.glob("*.json"))


def assert_google_answer(res, registry=AR):
    assert res.code == 0, res.stderr
    body = res.json
    assert list(body["auth"]) == [registry]
    assert body["auth"][registry]["username"] == "oauth2accesstoken"
    assert body["auth"][registry]["password"].startswith("ya29.standin-")
    assert body["cacheKeyType"] == "Registry"
    return body


# ------------------------------------------------------------------ the stand-in speaks the API


def test_standin_metadata_server_requires_the_flavor_header(google):
    url = f"{google.url}/computeMetadata/v1/instance/service-accounts/default/"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "token", timeout=5)
    assert e.value.code == 403
    req = urllib.request.Request(url + "email", headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["Metadata-Flavor"] == "Google"
        assert r.read().decode() == EMAIL
    req = urllib.request.Request(url + "token", headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = json.loads(r.read())
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600


# ------------------------------------------------------------------ metadata server


@pytest.mark.parametrize(
    "image,registry",
    [
        ("us-docker.pkg.dev/p/r/app", "us-docker.pkg.dev"),
        ("europe-west1-docker.pkg.dev/p/r/app", "europe-west1-docker.pkg.dev"),
        ("docker.us-central1.rep.pkg.dev/p/r/app", "docker.us-central1.rep.pkg.dev"),
        ("gcr.io/p/app", "gcr.io"),
        ("eu.gcr.io/p/app", "eu.gcr.io"),
        ("container.cloud.google.com/p/app", "container.cloud.google.com"),
    ],
)
def test_metadata_server_token_for_every_host_kind(plugin, google, image, registry):
    res = plugin.run(request(image), env=md_env(google))
    body = assert_google_answer(res, registry)
    # an hour-long token: refreshed at 45 minutes
    assert body["cacheDuration"] in ("44m59s", "45m0s")
    [call] = google.calls
    assert call["path"] == "/computeMetadata/v1/instance/service-accounts/default/token"
    assert call["headers"]["metadata-flavor"] == "Google"
    assert "scopes" not in call["query"]  # the instance's own scopes
    assert res.stderr == ""


def test_configured_scopes_reach_the_metadata_server(plugin, google):
    env = md_env(google)
    env["PULLCRED_GOOGLE_SCOPES"] = "https://www.googleapis.com/auth/devstorage.read_only"
    assert_google_answer(plugin.run(request(IMAGE), env=env))
    assert google.calls[0]["query"]["scopes"] == ["https://www.googleapis.com/auth/devstorage.read_only"]


def test_cache_duration_follows_expires_in(plugin, google):
    google.configure(expires_in=1800)
    body = assert_google_answer(plugin.run(request(IMAGE), env=md_env(google)))
    # 30 minutes: margin max(7m30s, 5m) -> refresh at 22m30s
    assert body["cacheDuration"] in ("22m29s", "22m30s")


def test_token_inside_the_margin_is_served_once_and_not_cached(plugin, google):
    google.configure(expires_in=120)
    res = plugin.run(request(IMAGE), env=md_env(google))
    body = assert_google_answer(res)
    assert body["cacheDuration"] == "0s"
    assert "inside the refresh margin" in res.stderr
    assert not entries(plugin)
    assert_google_answer(plugin.run(request(IMAGE), env=md_env(google)))
    assert google.call_count() == 2


def test_expires_in_zero_is_not_cached(plugin, google):
    google.configure(expires_in=0)
    res = plugin.run(request(IMAGE), env=md_env(google))
    assert assert_google_answer(res)["cacheDuration"] == "0s"
    assert not entries(plugin)


def test_missing_expires_in_is_an_error(plugin, google):
    google.configure(mode="no_expiry")
    res = plugin.run(request(IMAGE), env=md_env(google))
    assert res.code == 1
    assert "no expires_in" in res.stderr


def test_request_without_flavor_header_answer_is_refused(plugin, google):
    google.configure(mode="no_flavor")
    res = plugin.run(request(IMAGE), env=md_env(google))
    assert res.code == 1
    assert "Metadata-Flavor" in res.stderr and "not from a metadata server" in res.stderr


def test_slow_metadata_server_times_out_within_the_deadline(plugin, google):
    google.configure(delay=30)
    res = plugin.run(request(IMAGE), env=md_env(google), args=["--timeout", "4s"])
    assert res.code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert f"registry {AR}: google metadata server token (http://{google.host}/computeMetadata" in line
    assert "timed out" in line
    assert res.elapsed < 6.5


def test_failing_metadata_server_is_retried_then_reported(plugin, google):
    google.configure(mode="error500")
    res = plugin.run(request(IMAGE), env=md_env(google), args=["--timeout", "10s"])
    assert res.code == 1
    assert "google metadata server token" in res.stderr and "HTTP 500" in res.stderr
    assert google.call_count("metadata") == 4


def test_transient_metadata_failure_recovers(plugin, google):
    google.configure(fail_first=2, fail_mode="error500")
    assert_google_answer(plugin.run(request(IMAGE), env=md_env(google)))
    assert google.call_count() == 3


def test_garbage_from_the_metadata_server(plugin, google):
    google.configure(mode="garbage")
    res = plugin.run(request(IMAGE), env=md_env(google))
    assert res.code == 1
    assert "unreadable token response" in res.stderr


def test_absent_metadata_server_is_one_clear_line(plugin, google):
    host = google.host
    google.close()
    res = plugin.run(request(IMAGE), env={"GCE_METADATA_HOST": host}, args=["--timeout", "5s"])
    assert res.code == 1
    assert f"google metadata server token (http://{host}/" in res.stderr
    assert "connection failed" in res.stderr
    assert res.elapsed < 7


# ------------------------------------------------------------------ cache


def test_second_exec_is_a_hit_with_no_upstream_call(plugin, google):
    env = md_env(google)
    first = plugin.run(request(f"{AR}/p/r/a"), env=env)
    assert_google_answer(first)
    google.close()  # a hit needs no network
    second = plugin.run(request(f"{AR}/p/r/b/c"), env=env)
    assert second.code == 0, second.stderr
    assert second.json["auth"] == first.json["auth"]
    assert second.stderr == ""


def test_single_flight_16_processes_one_upstream_call(plugin, google):
    google.configure(delay=0.5)
    env = md_env(google)
    started = time.monotonic()
    procs = [plugin.start(request(f"{AR}/p/r/app{i}"), env=env) for i in range(16)]
    results = [plugin.finish(p, d, started) for p, d in procs]
    assert all(r.code == 0 for r in results), [r.stderr for r in results if r.code]
    assert google.call_count() == 1
    assert len({r.json["auth"][AR]["password"] for r in results}) == 1


def test_each_identity_has_its_own_entry_shared_by_every_google_registry(plugin, google):
    """A Google access token is good for every Google registry: the entry is
    keyed by identity and scopes, not by host (#15: a pod author naming
    made-up hosts costs no upstream calls)."""
    env = md_env(google)
    assert plugin.run(request(IMAGE), env=env).code == 0
    res = plugin.run(request("gcr.io/p/app"), env=env)
    assert res.code == 0 and list(res.json["auth"]) == ["gcr.io"]
    env["PULLCRED_GOOGLE_SCOPES"] = CLOUD_PLATFORM
    assert plugin.run(request(IMAGE), env=env).code == 0
    assert google.call_count() == 2
    assert len(entries(plugin)) == 2


# ------------------------------------------------------------------ service-account key


def test_service_account_key_signs_a_jwt_the_endpoint_verifies(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    body = assert_google_answer(res)
    assert body["cacheDuration"] in ("44m59s", "45m0s")
    [call] = google.calls
    assert call["kind"] == "oauth" and call["verified"], call.get("why")
    assert res.stderr == ""


def test_key_file_comes_before_the_metadata_server(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    env = dict(md_env(google), GOOGLE_APPLICATION_CREDENTIALS=str(path))
    assert_google_answer(plugin.run(request(IMAGE), env=env))
    assert google.call_count("metadata") == 0


def test_wrong_key_is_refused_by_the_endpoint(plugin, google, test_key, tmp_path):
    other_pem, _ = make_key(tmp_path / "other.pem")
    path = key_file(plugin, google, test_key, private_key=other_pem)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert f"google token endpoint ({google.url}/token)" in res.stderr
    assert "HTTP 400: invalid_grant: Invalid JWT Signature." in res.stderr


def test_configured_scope_is_in_the_assertion(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    scope = "https://www.googleapis.com/auth/devstorage.read_only"
    google.configure(expected_scope=scope)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "PULLCRED_GOOGLE_SCOPES": scope}
    assert_google_answer(plugin.run(request(IMAGE), env=env))


def test_token_endpoint_error_names_the_endpoint(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    google.configure(mode="error500")
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)}, args=["--timeout", "10s"])
    assert res.code == 1
    assert f"google token endpoint ({google.url}/token)" in res.stderr and "HTTP 500" in res.stderr
    assert google.call_count() == 4


def test_rotated_key_file_is_a_new_cache_entry(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path)}
    assert plugin.run(request(IMAGE), env=env).code == 0
    assert plugin.run(request(IMAGE), env=env).code == 0
    assert google.call_count() == 1
    key_file(plugin, google, test_key, private_key_id="rotated")
    assert plugin.run(request(IMAGE), env=env).code == 0
    assert google.call_count() == 2


@pytest.mark.parametrize(
    "content,want",
    [
        ("{not json", "not JSON"),
        ({"type": "service_account", "client_email": EMAIL}, "no private_key"),
        ({"type": "service_account", "client_email": EMAIL, "private_key": "nope"}, "not a PEM"),
        ({"type": "authorized_user"}, "not supported"),
        ({"client_email": EMAIL}, "no \"type\""),
    ],
)
def test_malformed_credentials_file(plugin, google, content, want):
    path = write_private(plugin.home / "bad.json", content)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert f"google credentials file ({path})" in res.stderr
    assert want in res.stderr
    assert google.call_count() == 0


def test_unreadable_credentials_file(plugin, google):
    path = plugin.home / "missing.json"
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert f"google credentials file ({path}): cannot read" in res.stderr


def test_credentials_file_others_can_read_is_refused(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    os.chmod(path, 0o644)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert "refused" in res.stderr and "read" in res.stderr and str(path) in res.stderr
    os.chmod(path, 0o620)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1 and "write" in res.stderr
    assert google.call_count() == 0


def test_symlinked_credentials_file_is_refused(plugin, google, test_key):
    real = key_file(plugin, google, test_key)
    link = plugin.home / "link.json"
    link.symlink_to(real)
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(link)})
    assert res.code == 1
    assert "symlink" in res.stderr
    assert google.call_count() == 0


# ------------------------------------------------------------------ workload identity federation


def test_external_account_file_source(plugin, google, tmp_path):
    token_file = tmp_path / "subject-token"
    token_file.write_text("subject-jwt-from-file\n")
    register_secret("subject-jwt-from-file")
    google.configure(subject_token="subject-jwt-from-file")
    path = external_file(plugin, google, {"file": str(token_file)})
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert_google_answer(res)
    [call] = google.calls
    assert call["kind"] == "sts" and call["verified"], call.get("why")
    assert call["form"]["scope"] == CLOUD_PLATFORM
    assert call["form"]["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"


def test_external_account_json_file_source_with_impersonation(plugin, google, tmp_path):
    token_file = tmp_path / "subject.json"
    token_file.write_text(json.dumps({"id_token": "subject-from-json"}))
    register_secret("subject-from-json")
    google.configure(subject_token="subject-from-json", expires_in=7200)
    path = external_file(
        plugin,
        google,
        {"file": str(token_file), "format": {"type": "json", "subject_token_field_name": "id_token"}},
        service_account_impersonation_url=f"{google.url}/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken",
    )
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    body = assert_google_answer(res)
    assert [c["kind"] for c in google.calls] == ["sts", "iam"]
    assert google.calls[1]["body"] == {"scope": [CLOUD_PLATFORM], "lifetime": "3600s"}
    # the impersonated token's expireTime (2h) decides: refresh at 1h30m
    assert body["cacheDuration"] in ("1h29m59s", "1h30m0s")
    assert body["auth"][AR]["password"] not in google.sts_tokens


def test_external_account_url_source(plugin, google):
    google.configure(subject_token="subject-from-url", subject_body="subject-from-url")
    register_secret("subject-from-url")
    register_secret("x-test-auth-value")
    path = external_file(
        plugin, google, {"url": f"{google.url}/subject", "headers": {"X-Test-Auth": "x-test-auth-value"}}
    )
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert_google_answer(res)
    assert [c["kind"] for c in google.calls] == ["subject", "sts"]


def aws_source(google):
    return {
        "environment_id": "aws1",
        "region_url": f"{google.url}/latest/meta-data/placement/availability-zone",
        "url": f"{google.url}/latest/meta-data/iam/security-credentials",
        "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
        "imdsv2_session_token_url": f"{google.url}/latest/api/token",
    }


def test_external_account_aws_source_from_environment(plugin, google):
    """An EC2 node pulling from Artifact Registry with no Google key: the
    stand-in STS recomputes the SigV4 signature with the node's AWS secret."""
    google.configure(aws_secret_key=SECRET_KEY)
    path = external_file(plugin, google, aws_source(google), subject_token_type=AWS_TOKEN_TYPE)
    env = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(path),
        "AWS_REGION": "us-east-1",
        "AWS_SESSION_TOKEN": "aws-session-token-do-not-print",
    }
    register_secret(env["AWS_SESSION_TOKEN"])
    res = plugin.run(request(IMAGE), env=env)
    assert_google_answer(res)
    assert [c["kind"] for c in google.calls] == ["sts"]  # no IMDS: all from the environment
    assert google.calls[0]["verified"]


def test_external_account_aws_source_from_imdsv2(plugin, google):
    creds = {
        "AccessKeyId": "ASIAIMDSTESTKEY00001",
        "SecretAccessKey": "imds-secret-key-do-not-print",
        "Token": "imds-session-token-do-not-print",
        "Expiration": "2099-01-01T00:00:00Z",
    }
    for s in (creds["SecretAccessKey"], creds["Token"]):
        register_secret(s)
    google.configure(aws_secret_key=creds["SecretAccessKey"], imds_creds=creds)
    path = external_file(plugin, google, aws_source(google), subject_token_type=AWS_TOKEN_TYPE)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
    res = plugin.run(request(IMAGE), env=env)
    assert_google_answer(res)
    kinds = [(c["kind"], c["method"]) for c in google.calls]
    assert kinds[0] == ("imds", "PUT") and kinds[-1] == ("sts", "POST")
    assert google.calls[-1]["verified"]


def test_external_account_sts_rejection_names_the_endpoint(plugin, google, tmp_path):
    token_file = tmp_path / "subject-token"
    token_file.write_text("wrong-subject")
    google.configure(subject_token="the-right-one")
    path = external_file(plugin, google, {"file": str(token_file)})
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert f"google STS token exchange ({google.url}/v1/token)" in res.stderr
    assert "invalid_grant" in res.stderr


def test_external_account_missing_subject_file(plugin, google, tmp_path):
    missing = tmp_path / "nope"
    path = external_file(plugin, google, {"file": str(missing)})
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert f"google subject token file ({missing}): cannot read" in res.stderr


def test_executable_source_is_refused(plugin, google):
    path = external_file(plugin, google, {"executable": {"command": "/bin/echo hi"}})
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path)})
    assert res.code == 1
    assert "executable is not supported" in res.stderr


# ------------------------------------------------------------------ routing and secrets


@pytest.mark.parametrize(
    "image",
    [
        "gcr.io.evil.com/p/app",
        "evil.com/gcr.io/x",
        "xpkg.dev/p/r/app",
        "us-docker.pkg.dev.evil.io/p/r/app",
        "docker.us-central1.rep.pkg.dev.evil/p/r/app",
        "us-maven.pkg.dev/p/r/app",
        "a.b.gcr.io/p/app",
        "gcr.io:443/p/app",
    ],
)
def test_google_look_alikes_get_nothing(plugin, google, image):
    res = plugin.run(request(image), env=md_env(google))
    assert res.code == 1
    assert "no pullcred source serves registry" in res.stderr
    assert google.call_count() == 0


def test_trace_logging_never_prints_a_google_secret(plugin, google, test_key):
    path = key_file(plugin, google, test_key)
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "PULLCRED_LOG": "trace"}
    miss = plugin.run(request(IMAGE), env=env)
    assert miss.code == 0, miss.stderr
    assert "cache miss" in miss.stderr
    hit = plugin.run(request(IMAGE), env=env)
    assert "cache hit" in hit.stderr
    google.configure(mode="error500")
    # other scopes: a miss, against a failing endpoint
    failed_env = dict(env, PULLCRED_GOOGLE_SCOPES=CLOUD_PLATFORM)
    failed = plugin.run(request("gcr.io/p/app"), env=failed_env, args=["--timeout", "5s"])
    assert failed.code == 1
    pem_lines = [l for l in test_key[0].splitlines() if not l.startswith("-----") and len(l) >= 20]
    for res in (miss, hit, failed):
        for secret in (*google.tokens, *pem_lines, SECRET_KEY, ACCESS_KEY + "-not-secret"):
            assert secret not in res.stderr
        assert "eyJ" not in res.stderr  # no JWT (assertion) either
    assert SECRETS  # and conftest scanned every stderr for every registered secret


# ------------------------------------------------------------------ where tokens may go


@pytest.fixture
def tripwire():
    from standins.base import Tripwire

    t = Tripwire()
    yield t
    t.close()


@pytest.mark.parametrize(
    "kind,field,url",
    [
        ("key", "token_uri", "http://oauth2.example/token"),
        ("key", "token_uri", "https://oauth2.googleapis.com@127.0.0.1:9/token"),
        ("external", "token_url", "http://sts.example/v1/token"),
        ("external", "service_account_impersonation_url", "http://iam.example/v1/x:generateAccessToken"),
    ],
    ids=["key-http", "key-userinfo", "sts-http", "impersonation-http"],
)
def test_token_endpoints_in_clear_are_refused(plugin, google, test_key, tripwire, tmp_path, kind, field, url):
    """A signed assertion or a subject token never goes over plain http to a
    non-loopback host, nor to a URL with userinfo: refused with the field
    named, before any connection (a proxy would see any plain-http request)."""
    if kind == "key":
        path = key_file(plugin, google, test_key, **{field: url})
    else:
        token_file = tmp_path / "subject-token"
        token_file.write_text("subject-jwt-in-clear\n")
        register_secret("subject-jwt-in-clear")
        path = external_file(plugin, google, {"file": str(token_file)}, **{field: url})
    res = plugin.run(request(IMAGE), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path), **tripwire.proxy_env()})
    assert res.code == 1, res.stderr
    assert field in res.stderr and "refus" in res.stderr, res.stderr
    assert tripwire.hits == []
    assert google.calls == []


def test_sts_url_override_in_clear_is_refused(plugin, google, tripwire):
    """PULLCRED_GOOGLE_STS_URL receives a pod's service-account token."""
    from satoken import mint

    token = mint("team-a", "builder", audience=AUDIENCE)
    register_secret(token)
    req = request(IMAGE, serviceAccountToken=token,
                  serviceAccountAnnotations={"pullcred.dev/google-audience": AUDIENCE})
    env = {"PULLCRED_GOOGLE_STS_URL": "http://sts.example/v1/token", "GCE_METADATA_HOST": google.host,
           **tripwire.proxy_env()}
    res = plugin.run(req, env=env)
    assert res.code == 1, res.stderr
    assert "PULLCRED_GOOGLE_STS_URL" in res.stderr and "plain http" in res.stderr, res.stderr
    assert tripwire.hits == []
