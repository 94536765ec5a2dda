"""Azure Container Registry: every host form and look-alike, each identity
(managed, workload, service principal, AKS azure.json), the mirror, cache and
single flight, failures, and the secret-leak check, against the stand-ins in
standins/azure.py (IMDS over HTTP, Entra and ACR over TLS with a test CA)."""

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import SECRETS, free_port, register_secret, request
from standins.azure import AzureStandin, make_client_cert

ACR = "myreg.azurecr.io"
GUID = "00000000-0000-0000-0000-000000000000"
GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$")


def seconds(d):
    h, m, s = (int(x or 0) for x in GO_DURATION.match(d).groups())
    return h * 3600 + m * 60 + s


@pytest.fixture
def azure(tls):
    _, cert, key = tls
    s = AzureStandin(cert, key, on_secret=register_secret)
    yield s
    s.close()


def standin_env(azure, tls):
    """Everything pointed at the stand-ins; no azure.json."""
    return {
        "SSL_CERT_FILE": str(tls[0]),
        "PULLCRED_AZURE_IMDS_ENDPOINT": azure.imds_url,
        "AZURE_AUTHORITY_HOST": azure.url,
        "PULLCRED_ACR_ENDPOINTS": f"*={azure.url}",
        "PULLCRED_AZURE_CONFIG": "none",
    }


@pytest.fixture
def env(azure, tls):
    return standin_env(azure, tls)


def private_file(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def ok(res, key=ACR):
    assert res.code == 0, res.stderr
    auth = res.json["auth"]
    assert list(auth) == [key]
    assert auth[key]["username"] == GUID
    assert auth[key]["password"]
    return auth[key]["password"]


# --- identities ---------------------------------------------------------------


def test_system_assigned_managed_identity(plugin, azure, env):
    res = plugin.run(request(f"{ACR}/team/app"), env=env)
    password = ok(res)
    assert password in azure.refresh_tokens
    body = res.json
    assert body["cacheKeyType"] == "Registry"
    # a 3h refresh token: refreshed 45 minutes early
    assert abs(seconds(body["cacheDuration"]) - (2 * 3600 + 15 * 60)) <= 60
    [imds] = azure.calls_to("imds")
    assert imds["metadata"] == "true"
    assert "client_id" not in imds["query"] and "msi_res_id" not in imds["query"]
    [ex] = azure.calls_to("exchange")
    assert ex["access_token_known"]
    assert ex["form"]["grant_type"] == "access_token"
    assert ex["form"]["service"] == ACR
    # no tenant configured: taken from the access token's tid
    assert ex["form"]["tenant"] == azure.config["tenant"]
    assert res.stderr == ""


def test_user_assigned_by_client_id_and_resource_id(plugin, azure, env):
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, AZURE_CLIENT_ID="11111111-2222-3333-4444-555555555555"))
    ok(res)
    assert azure.calls_to("imds")[-1]["query"]["client_id"] == "11111111-2222-3333-4444-555555555555"
    rid = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet"
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, AZURE_CLIENT_ID=rid))
    ok(res)
    q = azure.calls_to("imds")[-1]["query"]
    assert q["msi_res_id"] == rid and "client_id" not in q


def test_workload_identity(plugin, azure, env, tmp_path):
    token = "federated-" + os.urandom(12).hex()
    SECRETS.add(token)
    azure.configure(federated_token=token)
    f = tmp_path / "azure-identity-token"
    f.write_text(token + "\n")
    e = dict(env, AZURE_FEDERATED_TOKEN_FILE=str(f), AZURE_CLIENT_ID="wi-client", AZURE_TENANT_ID="wi-tenant")
    ok(plugin.run(request(f"{ACR}/a"), env=e))
    [call] = azure.calls_to("entra")
    assert call["tenant"] == "wi-tenant"
    assert call["form"]["client_id"] == "wi-client"
    assert call["assertion"] == token
    assert azure.calls_to("imds") == []
    assert azure.calls_to("exchange")[-1]["form"]["tenant"] == "wi-tenant"


def test_service_principal_secret_from_the_environment(plugin, azure, env):
    secret = "sp-secret-" + os.urandom(12).hex()
    SECRETS.add(secret)
    azure.configure(client_secret=secret)
    e = dict(env, AZURE_CLIENT_ID="sp-client", AZURE_TENANT_ID="sp-tenant", AZURE_CLIENT_SECRET=secret)
    ok(plugin.run(request(f"{ACR}/a"), env=e))
    assert azure.calls_to("entra")[-1]["path"] == "/sp-tenant/oauth2/v2.0/token"


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8", "pkcs1"])
def test_service_principal_certificate_from_azure_json(plugin, azure, env, tmp_path, pkcs1):
    pem, cert = make_client_cert(pkcs1=pkcs1)
    azure.configure(client_cert=cert)
    pem_file = private_file(tmp_path / "sp.pem", pem)
    cfg = private_file(
        tmp_path / "azure.json",
        json.dumps({"cloud": "AzurePublicCloud", "tenantId": "cert-tenant", "aadClientId": "cert-client",
                    "aadClientCertPath": str(pem_file)}),
    )
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_AZURE_CONFIG=str(cfg)))
    ok(res)  # the stand-in verified the RS256 signature, x5t, aud, iss and sub
    assert azure.calls_to("entra")[-1]["form"]["client_assertion_type"].endswith("jwt-bearer")


def test_aks_azure_json_drop_in(plugin, azure, env, tmp_path):
    """The file AKS writes on every node: the kubelet identity as a
    user-assigned managed identity."""
    cfg = private_file(
        tmp_path / "azure.json",
        json.dumps({"cloud": "AzurePublicCloud", "tenantId": "aks-tenant", "subscriptionId": "sub",
                    "aadClientId": "msi", "aadClientSecret": "msi", "resourceGroup": "MC_rg",
                    "location": "westeurope", "useManagedIdentityExtension": True,
                    "userAssignedIdentityID": "kubelet-client-id"}),
    )
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_AZURE_CONFIG=str(cfg)))
    ok(res)
    assert azure.calls_to("imds")[-1]["query"]["client_id"] == "kubelet-client-id"
    assert azure.calls_to("exchange")[-1]["form"]["tenant"] == "aks-tenant"
    # the --azure-config flag says the same
    res = plugin.run(request(f"{ACR}/b"), env=dict(env, PULLCRED_AZURE_CONFIG=None), args=["--azure-config", str(cfg), "--no-cache"])
    ok(res)


@pytest.mark.parametrize("how", ["world-readable", "group-writable", "symlink"])
def test_unsafe_credential_files_are_refused(plugin, azure, env, tmp_path, how):
    real = private_file(tmp_path / "real.json", json.dumps({"useManagedIdentityExtension": True}))
    path = real
    if how == "world-readable":
        os.chmod(real, 0o644)
    elif how == "group-writable":
        os.chmod(real, 0o620)
    else:
        path = tmp_path / "azure.json"
        path.symlink_to(real)
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_AZURE_CONFIG=str(path)))
    assert res.code == 1
    assert "refused" in res.stderr and str(path) in res.stderr
    assert azure.calls == []


def test_missing_explicit_azure_json_is_an_error(plugin, azure, env, tmp_path):
    res = plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_AZURE_CONFIG=str(tmp_path / "nope.json")))
    assert res.code == 1
    assert "reading the Azure config" in res.stderr
    assert azure.calls == []


# --- hosts --------------------------------------------------------------------

HOSTS = [
    "myreg.azurecr.io",
    "myreg.azurecr.cn",
    "myreg.azurecr.us",
    "myreg.westeurope.geo.azurecr.io",
    "myreg-e0cdbvd7abcdefgh.azurecr.io",
    "myreg-abc123.eastus2.geo.azurecr.io",
    "myreg.azurecr.io:443",
    "myreg.westus.geo.azurecr.io:8443",
]


@pytest.mark.parametrize("host", HOSTS)
def test_every_host_form(plugin, azure, env, host):
    azure.configure(registry=host.split(":")[0])
    res = plugin.run(request(f"{host}/team/app"), env=env)
    ok(res, key=host)
    assert len(azure.calls_to("challenge")) == 1


ACR_LOOK_ALIKES = [
    "foo.azurecr.io.example/bar/image",
    "docker/foo.azurecr.io/bar/image",
    "evil.io/myreg.azurecr.io/app",
    "foo.azurecr.io.azurecr.cn/x",
    "foo-azurecr-io.azurecr.cn/x",
    "foo.bar.azurecr.io/x",
    "foo.azurecr.com/x",
    "foo.westus.geo.azurecr.cn/x",
    "foo.westus.data.azurecr.io/x",
    "azurecr.io/x",
    "mcr.microsoft.com/dotnet/runtime",
    # Microsoft Cloud Germany was closed on 2021-10-29: no live ACR there
    "myreg.azurecr.de/team/app",
]


@pytest.mark.parametrize("image", ACR_LOOK_ALIKES)
def test_look_alikes_get_nothing(plugin, azure, env, image):
    res = plugin.run(request(image), env=env)
    assert res.code == 1
    assert "no pullcred source serves registry" in res.stderr
    assert azure.calls == []


# --- mirrors ------------------------------------------------------------------


def test_mirror_flag_answers_for_the_mirrored_host(plugin, azure, env):
    res = plugin.run(request("mcr.microsoft.com/dotnet/runtime"), env=env,
                     args=["--mirror", "mcr.microsoft.com=myreg.azurecr.io", "--mirror", "registry.local:5000=other.azurecr.io"])
    ok(res, key="mcr.microsoft.com")
    assert azure.calls_to("exchange")[-1]["form"]["service"] == ACR


def test_mirror_env_with_ports(plugin, azure, env):
    azure.configure(registry="other.azurecr.io")
    e = dict(env, PULLCRED_ACR_MIRRORS="mcr.microsoft.com=myreg.azurecr.io, registry.local:5000=other.azurecr.io:443")
    res = plugin.run(request("registry.local:5000/team/app"), env=e)
    ok(res, key="registry.local:5000")
    # the ACR itself still works, and is a different cache entry
    azure.configure(registry=ACR)
    ok(plugin.run(request(f"{ACR}/a"), env=e))
    assert len(azure.calls_to("exchange")) == 2


def test_bad_mirror_is_a_usage_error(plugin, env):
    res = plugin.run(request(f"{ACR}/a"), env=env, args=["--mirror", "mcr.microsoft.com:myreg.azurecr.io"])
    assert res.code == 2
    assert "SOURCE=ACR" in res.stderr or "mirror" in res.stderr


# --- cache --------------------------------------------------------------------


def test_second_exec_is_a_hit(plugin, azure, env):
    first = plugin.run(request(f"{ACR}/a"), env=env)
    ok(first)
    second = plugin.run(request(f"{ACR}/b/c"), env=env)
    assert second.json["auth"] == first.json["auth"]
    assert len(azure.calls_to("exchange")) == 1
    assert second.stderr == ""
    azure.close()  # a hit needs no network
    ok(plugin.run(request(f"{ACR}/a"), env=env))


def test_identity_change_is_another_entry(plugin, azure, env):
    ok(plugin.run(request(f"{ACR}/a"), env=env))
    ok(plugin.run(request(f"{ACR}/a"), env=dict(env, AZURE_CLIENT_ID="other-identity")))
    assert len(azure.calls_to("exchange")) == 2


def test_single_flight_24_processes_one_exchange(plugin, azure, env):
    azure.configure(delay=0.5)
    started = time.monotonic()
    procs = [plugin.start(request(f"{ACR}/app{i}"), env=env) for i in range(24)]
    results = [plugin.finish(p, d, started) for p, d in procs]
    assert all(r.code == 0 for r in results), [r.stderr for r in results if r.code]
    assert len(azure.calls_to("exchange")) == 1
    assert len({r.json["auth"][ACR]["password"] for r in results}) == 1


def test_cache_duration_follows_the_refresh_tokens_exp(plugin, azure, env):
    azure.configure(refresh_life=3600)
    res = plugin.run(request(f"{ACR}/a"), env=env)
    ok(res)
    assert abs(seconds(res.json["cacheDuration"]) - 45 * 60) <= 60


def test_refresh_token_without_exp_assumes_three_hours(plugin, azure, env):
    azure.configure(exchange="no_exp")
    res = plugin.run(request(f"{ACR}/a"), env=env)
    ok(res)
    assert abs(seconds(res.json["cacheDuration"]) - (2 * 3600 + 15 * 60)) <= 60
    assert "no readable exp" in res.stderr


# --- failures -----------------------------------------------------------------


def fails(res, *words):
    assert res.code == 1
    assert res.stdout == ""
    for w in words:
        assert w in res.stderr, res.stderr
    return res.stderr


def test_imds_absent(plugin, azure, env):
    e = dict(env, PULLCRED_AZURE_IMDS_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    err = fails(plugin.run(request(f"{ACR}/a"), env=e, args=["--timeout", "5s"]), "registry myreg.azurecr.io", "IMDS", "connection failed")
    assert "managed identity" in err


def test_imds_slow_ends_at_the_deadline(plugin, azure, env):
    azure.configure(imds="hang")
    res = plugin.run(request(f"{ACR}/a"), env=env, args=["--timeout", "2s"])
    fails(res, "IMDS", "timed out")
    assert res.elapsed < 4


def test_imds_unknown_identity(plugin, azure, env):
    azure.configure(imds="not_found")
    fails(plugin.run(request(f"{ACR}/a"), env=dict(env, AZURE_CLIENT_ID="nobody")), "IMDS", "HTTP 400", "Identity not found")


def test_entra_rejects_the_client(plugin, azure, env):
    azure.configure(client_secret="the-right-one")
    e = dict(env, AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET="pullcred-wrong-secret-0001")
    SECRETS.add("pullcred-wrong-secret-0001")
    err = fails(plugin.run(request(f"{ACR}/a"), env=e), "Entra token", "HTTP 401", "invalid_client", "AADSTS7000215")
    assert "Trace ID" not in err
    assert azure.calls_to("challenge") == []


def test_entra_5xx_is_retried_then_reported(plugin, azure, env):
    azure.configure(entra="error500", client_secret="s")
    e = dict(env, AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET="s")
    fails(plugin.run(request(f"{ACR}/a"), env=e), "Entra token", "HTTP 500")
    assert len(azure.calls_to("entra")) == 3


@pytest.mark.parametrize(
    "header,status,want",
    [
        ('Basic realm="Registry Realm"', 401, "no Bearer challenge"),
        ("", 401, "without a WWW-Authenticate"),
        ('Bearer service="myreg.azurecr.io"', 401, "has no realm"),
        ('Bearer realm="https://myreg.azurecr.io/oauth2/token"', 401, "has no service"),
        ('Bearer realm="https://evil.example/oauth2/token",service="myreg.azurecr.io"', 401, "refusing to send it a token"),
        ('Bearer realm="http://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io"', 401, "is not https"),
        (None, 200, "expected HTTP 401"),
    ],
    ids=["basic", "no-header", "no-realm", "no-service", "foreign-realm", "plain-http-realm", "anonymous"],
)
def test_bad_challenges(plugin, azure, env, header, status, want):
    azure.configure(challenge=header, challenge_status=status)
    fails(plugin.run(request(f"{ACR}/a"), env=env), "ACR challenge", want)
    assert azure.calls_to("exchange") == []


def test_unquoted_challenge_values_work(plugin, azure, env):
    azure.configure(challenge="Bearer realm=https://myreg.azurecr.io/oauth2/token,service=myreg.azurecr.io")
    ok(plugin.run(request(f"{ACR}/a"), env=env))


@pytest.mark.parametrize("mode,code", [("401", "UNAUTHORIZED"), ("404", "NOT_FOUND")])
def test_exchange_refused(plugin, azure, env, mode, code):
    azure.configure(exchange=mode)
    err = fails(plugin.run(request(f"{ACR}/a"), env=env), "ACR token exchange", "/oauth2/exchange", f"HTTP {mode}", code)
    assert err.startswith("pullcred: registry myreg.azurecr.io: ACR token exchange (")
    assert not list(plugin.cache_dir.glob("*.json"))


def test_exchange_garbage(plugin, azure, env):
    azure.configure(exchange="garbage")
    fails(plugin.run(request(f"{ACR}/a"), env=env), "ACR token exchange", "unreadable")


def test_untrusted_tls_is_refused(plugin, azure, env):
    e = dict(env, SSL_CERT_FILE=None)
    fails(plugin.run(request(f"{ACR}/a"), env=e, args=["--timeout", "5s"]), "ACR challenge")
    assert azure.calls_to("exchange") == []


# --- secrets ------------------------------------------------------------------


def test_trace_logging_never_prints_an_azure_secret(plugin, azure, env, tmp_path):
    secret = "sp-secret-trace-" + os.urandom(8).hex()
    SECRETS.add(secret)
    azure.configure(client_secret=secret)
    e = dict(env, PULLCRED_LOG="trace", AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET=secret)
    miss = plugin.run(request(f"{ACR}/a"), env=e)
    ok(miss)
    assert "cache miss" in miss.stderr
    hit = plugin.run(request(f"{ACR}/a"), env=e)
    assert "cache hit" in hit.stderr
    azure.configure(exchange="401")
    failed = plugin.run(request(f"{ACR}/a"), env=dict(e, AZURE_CLIENT_ID="c2"))
    assert failed.code == 1
    # workload identity at trace level too
    token = "federated-trace-" + os.urandom(8).hex()
    SECRETS.add(token)
    f = tmp_path / "tok"
    f.write_text(token)
    azure.configure(exchange="ok", federated_token=token)
    wi = plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_LOG="trace", AZURE_FEDERATED_TOKEN_FILE=str(f),
                                                  AZURE_CLIENT_ID="wi", AZURE_TENANT_ID="t"))
    ok(wi)
    for res in (miss, hit, failed, wi):
        for s in (secret, token, *azure.refresh_tokens, *azure.issued_access):
            assert s not in res.stderr
def test_empty_mirror_list_is_fine(plugin, azure, env):
    ok(plugin.run(request(f"{ACR}/a"), env=dict(env, PULLCRED_ACR_MIRRORS="")))


# --- where tokens may go ------------------------------------------------------


@pytest.fixture
def tripwire():
    from standins.base import Tripwire

    t = Tripwire()
    yield t
    t.close()


def test_a_realm_with_userinfo_gets_no_token(plugin, azure, env, tripwire):
    """`https://other.azurecr.io:443@HOST/...` names HOST, not an ACR: the
    Entra token must not be sent there (nor anywhere), whatever the text
    before the `@` says."""
    # Given an ACR whose challenge names a realm with userinfo, on a listener
    # that records every connection
    azure.configure(challenge=f'Bearer realm="https://other.azurecr.io:443@{tripwire.host}/oauth2/token",service="{ACR}"')
    e = dict(env, PULLCRED_ACR_ENDPOINTS=f"{ACR}={azure.url}")
    # When the kubelet asks
    res = plugin.run(request(f"{ACR}/a"), env=e)
    # Then pullcred fails in one line, naming the userinfo, and nothing was sent
    fails(res, "ACR challenge", "userinfo", "refusing to send it a token")
    assert tripwire.hits == []
    assert azure.calls_to("exchange") == []


@pytest.mark.parametrize(
    "var,value",
    [
        ("AZURE_AUTHORITY_HOST", "http://login.example"),
        ("PULLCRED_ACR_ENDPOINTS", "*=http://acr.example"),
        ("PULLCRED_ACR_ENDPOINTS", f"{ACR}=http://acr.example:8080"),
    ],
    ids=["authority", "endpoints-star", "endpoints-host"],
)
def test_plain_http_endpoints_that_receive_secrets_are_refused(plugin, azure, env, tripwire, var, value):
    """A client secret or an Entra token never goes over plain http to a
    non-loopback host: refused before any connection (a proxy would see
    every plain-http request)."""
    secret = "sp-secret-http-" + os.urandom(8).hex()
    SECRETS.add(secret)
    azure.configure(client_secret=secret)
    e = dict(env, AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET=secret, **tripwire.proxy_env())
    e[var] = value
    res = plugin.run(request(f"{ACR}/a"), env=e)
    fails(res, var, "plain http", "refusing")
    assert tripwire.hits == []
    assert azure.calls_to("entra") == [] and azure.calls_to("exchange") == []


def test_loopback_http_endpoints_still_work(plugin, azure, env):
    """Plain http to loopback stays allowed (tests, local agents): the
    stand-in's plain-http listener serves Entra and the ACR too."""
    secret = "sp-secret-loopback-" + os.urandom(8).hex()
    SECRETS.add(secret)
    azure.configure(client_secret=secret)
    plain = azure.imds_url.replace("127.0.0.1", "localhost")
    e = dict(env, PULLCRED_ACR_ENDPOINTS=f"*={plain}", AZURE_AUTHORITY_HOST=azure.imds_url,
             AZURE_CLIENT_ID="c", AZURE_TENANT_ID="t", AZURE_CLIENT_SECRET=secret)
    ok(plugin.run(request(f"{ACR}/a"), env=e))
    assert len(azure.calls_to("entra")) == 1 and len(azure.calls_to("exchange")) == 1


def test_doctor_checks_a_mirror_at_its_acr_not_at_the_source(plugin, azure, env, tripwire):
    """With --mirror SOURCE=ACR the kubelet gets the ACR's refresh token for
    SOURCE's images; `pullcred doctor` checks the pull at the ACR and never
    sends that token to SOURCE."""
    import subprocess

    from conftest import BIN

    # Given a mirror whose source is a listener that must never be contacted
    source = tripwire.host
    image = f"{source}/team/app:1.0"
    # When the operator runs the doctor for an image of the source
    p = subprocess.run([str(BIN), "doctor", image, "--json", "--mirror", f"{source}={ACR}",
                        "--image-fs", str(plugin.cache_dir.parent)],
                       capture_output=True, text=True, env=dict(plugin.env, **env), timeout=60)
    # Then the source got nothing, and the registry step asked the ACR
    assert tripwire.hits == [], p.stdout
    report = json.loads(p.stdout)
    [reg] = [s for s in report["steps"] if s["step"] == "registry"]
    assert source not in reg["seen"], reg
    assert azure.url in reg["seen"], reg
    # one challenge for the fetch, one for the doctor's own check
    assert len(azure.calls_to("challenge")) == 2
    for s in (*azure.refresh_tokens, *azure.issued_access):
        assert s not in p.stdout + p.stderr
