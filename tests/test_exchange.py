"""OAuth 2.0 token exchange (RFC 8693) and JFrog Artifactory's OIDC token
exchange: the config file's `exchanges:` entries (issue #18 items 3 and 4).

pullcred posts a subject token (the pod's service-account token from a
KEP-4412 request, or the node's token from a file) to the entry's token
endpoint and answers with the token it gets back, cached until shortly
before that token expires. Upstream is tests/standins/exchange.py: a
generic RFC 8693 endpoint, Artifactory's `/access/api/v1/oidc/token` and
Cloudsmith's `/openid/<org>/`, each verifying the subject token's RS256
signature, issuer and audience and applying a trust rule, on 127.0.0.1.

Every token minted or issued here is registered with conftest's leak scan.
"""

import json
import os
import threading
import time

import pytest

import satoken
from conftest import free_port, register_secret
from satoken import mint, sa_request, subject
from standins.exchange import ARTIFACTORY_PATH, GRANT, ID_TOKEN_TYPE, JWT_TYPE, SUBJECT_AUDIENCE, ExchangeStandin
from test_service_accounts import expected_cache_duration, fails, ok, seconds

REGISTRY = "registry.example.com"
IMAGE = f"{REGISTRY}/team/app"
JFROG = "acme.jfrog.io"


@pytest.fixture
def ex():
    s = ExchangeStandin(on_token=register_secret)
    yield s
    s.close()


def config_env(plugin, *exchanges):
    """Writes a pullcred config file (0600) with these `exchanges:` and
    returns the environment that points pullcred at it."""
    path = plugin.home / "pullcred.yaml"
    doc = {"apiVersion": "pullcred.dev/v1alpha1", "kind": "PullcredConfig", "exchanges": list(exchanges)}
    path.write_text(json.dumps(doc, indent=1))
    os.chmod(path, 0o600)
    return {"PULLCRED_CONFIG": str(path)}


def generic(ex, **over):
    x = {
        "name": "sts",
        "registries": [REGISTRY],
        "tokenUrl": f"{ex.url}/token",
        "subjectToken": "pod",
        "audience": REGISTRY,
    }
    x.update(over)
    return x


def artifactory(ex, **over):
    x = {
        "name": "jfrog",
        "registries": [JFROG],
        "flavor": "artifactory",
        "tokenUrl": ex.url,
        "providerName": "k8s-oidc",
        "subjectToken": "pod",
        "parameters": {"project_key": "app"},
    }
    x.update(over)
    return x


def pod_token(ns="team-a", name="builder", **kw):
    return mint(ns, name, audience=SUBJECT_AUDIENCE, **kw)


def near(duration, want, slack=3):
    got = seconds(duration)
    assert want - slack <= got <= want, f"cacheDuration {duration}, want about {want}s"


# ------------------------------------------------------------------ happy paths


def test_pod_token_is_exchanged_per_rfc8693_and_cached(plugin, ex):
    # Given an exchange for the registry and a pod's token
    env = config_env(plugin, generic(ex, scope="pull"))
    token = pod_token()
    # When the kubelet asks
    res = plugin.run(sa_request(IMAGE, token), env=env)
    # Then the issued token is the password, under RFC 8693's request
    entry = ok(res, REGISTRY, token)
    assert entry["username"] == "oauth2accesstoken"
    assert ex.issued[entry["password"]] == subject("team-a", "builder")
    [call] = ex.calls
    assert call["content_type"] == "application/x-www-form-urlencoded"
    assert call["fields"] == {"grant_type": GRANT, "subject_token_type": JWT_TYPE, "audience": REGISTRY, "scope": "pull"}
    assert call["subject"] == subject("team-a", "builder")
    near(res.json["cacheDuration"], expected_cache_duration(3600))
    assert res.json["cacheKeyType"] == "Registry"
    # and the next pull of that service account is a cache hit
    again = plugin.run(sa_request(f"{REGISTRY}/team/other", token), env=env)
    assert ok(again, REGISTRY, token)["password"] == entry["password"]
    assert ex.call_count() == 1


def test_json_request_variant(plugin, ex):
    env = config_env(plugin, generic(ex, requestFormat="json", parameters={"client_id": "pullcred"}))
    token = pod_token()
    ok(plugin.run(sa_request(IMAGE, token), env=env), REGISTRY, token)
    [call] = ex.calls
    assert call["content_type"] == "application/json"
    assert call["fields"] == {"grant_type": GRANT, "subject_token_type": JWT_TYPE, "audience": REGISTRY,
                              "client_id": "pullcred"}


def test_a_request_without_a_token_names_token_attributes(plugin, ex):
    res = plugin.run(sa_request(IMAGE), env=config_env(plugin, generic(ex)))
    fails(res, "tokenAttributes", "serviceAccountToken")
    assert ex.call_count() == 0


def test_node_token_file_is_read_on_every_miss(plugin, ex, tmp_path):
    # Given a node token projected through a symlink, as the kubelet does
    ex.configure(trust=["system:node:*"])
    data = tmp_path / "..data"
    data.mkdir()
    now = int(time.time())
    claims = {"iss": satoken.ISSUER, "sub": "system:node:node-1", "aud": [SUBJECT_AUDIENCE], "exp": now + 3600, "nbf": now}
    (data / "token").write_text(satoken.mint_plain_jwt(claims) + "\n")
    link = tmp_path / "token"
    link.symlink_to(data / "token")
    env = config_env(plugin, generic(ex, subjectToken="file", subjectTokenFile=str(link)))
    # When a pod without a token pulls
    entry = ok(plugin.run(sa_request(IMAGE), env=env), REGISTRY)
    assert ex.issued[entry["password"]] == "system:node:node-1"
    # Then a rotated (here: expired) token is what the next miss sends
    claims.update(exp=now - 10, nbf=now - 600)
    (data / "token").write_text(satoken.mint_plain_jwt(claims))
    fails(plugin.run(sa_request(IMAGE), env=env, args=["--no-cache"]), "HTTP 400", "invalid_request", "expired")
    assert ex.call_count() == 2


def test_missing_node_token_file_is_one_line(plugin, ex, tmp_path):
    env = config_env(plugin, generic(ex, subjectToken="file", subjectTokenFile=str(tmp_path / "absent")))
    fails(plugin.run(sa_request(IMAGE), env=env), "subjectTokenFile", "no such file")
    assert ex.call_count() == 0


def test_artifactory_flavor(plugin, ex):
    env = config_env(plugin, artifactory(ex))
    token = pod_token()
    entry = ok(plugin.run(sa_request(f"{JFROG}/docker-local/app", token), env=env), JFROG, token)
    # the username JFrog answered, and the JSON body of its doc
    assert entry["username"] == "k8s-team-a"
    [call] = ex.calls
    assert call["endpoint"] == "artifactory" and call["content_type"] == "application/json"
    assert call["fields"] == {"grant_type": GRANT, "subject_token_type": ID_TOKEN_TYPE,
                              "provider_name": "k8s-oidc", "project_key": "app"}


def test_artifactory_without_username_takes_the_tokens_subject(plugin, ex):
    ex.configure(omit_username=True)
    env = config_env(plugin, artifactory(ex, tokenUrl=ex.url + ARTIFACTORY_PATH))
    token = pod_token(ns="team-b")
    entry = ok(plugin.run(sa_request(f"{JFROG}/docker-local/app", token), env=env), JFROG, token)
    assert entry["username"] == "k8s-team-b"


def test_artifactory_refusal_is_refused_with_jfrogs_message(plugin, ex):
    ex.configure(trust=["system:serviceaccount:prod:*"])
    env = config_env(plugin, artifactory(ex))
    fails(plugin.run(sa_request(f"{JFROG}/docker-local/app", pod_token()), env=env), "HTTP 401", "UNAUTHORIZED")


def test_cloudsmith_shape(plugin, ex):
    """Cloudsmith's OIDC endpoint (not RFC 8693): exactly
    {"oidc_token", "service_slug"} in, {"token"} out, a JWT whose exp sets
    the cache; docker login takes it with the username `token`."""
    env = config_env(plugin, {
        "name": "cloudsmith",
        "registries": ["docker.cloudsmith.io"],
        "tokenUrl": f"{ex.url}/openid/acme/",
        "subjectToken": "pod",
        "requestFormat": "json",
        "subjectTokenField": "oidc_token",
        "parameters": {"service_slug": "puller-x1y2"},
        "tokenField": "token",
        "username": "token",
    })
    token = pod_token(ttl=7200)
    res = plugin.run(sa_request("docker.cloudsmith.io/acme/repo/app", token), env=env)
    entry = ok(res, "docker.cloudsmith.io", token)
    assert entry["username"] == "token"
    assert ex.calls[0]["fields"] == {"service_slug": "puller-x1y2"}
    near(res.json["cacheDuration"], expected_cache_duration(5400))


# ------------------------------------------------------------------ cacheDuration


@pytest.mark.parametrize("settings,fields,life", [
    ({"expires_in": 1800}, {}, 1800),
    ({"expires_in": None, "expires_at": "rfc3339"}, {"expiresAtField": "expires_at"}, 2400),
    ({"expires_in": None, "expires_at": "unix"}, {"expiresAtField": "expires_at"}, 2400),
    ({"expires_in": None, "jwt_ttl": 1200}, {}, 1200),
    ({"expires_in": None}, {}, 600),
], ids=["expires_in", "expires_at-rfc3339", "expires_at-unix", "jwt-exp", "nothing-assumed-10m"])
def test_cache_duration_follows_the_tokens_expiry(plugin, ex, settings, fields, life):
    ex.configure(**settings)
    env = config_env(plugin, generic(ex, **fields))
    token = pod_token()
    res = plugin.run(sa_request(IMAGE, token), env=env)
    ok(res, REGISTRY, token)
    near(res.json["cacheDuration"], expected_cache_duration(life))


def test_cache_duration_never_outlives_the_pod_token(plugin, ex):
    ex.configure(expires_in=7200)
    token = pod_token(ttl=1500)
    res = plugin.run(sa_request(IMAGE, token), env=config_env(plugin, generic(ex)))
    ok(res, REGISTRY, token)
    near(res.json["cacheDuration"], expected_cache_duration(1500))


# ------------------------------------------------------------------ isolation


def test_concurrent_pulls_of_trusted_and_untrusted_accounts_stay_apart(plugin, ex):
    # Given an issuer that trusts team-a only, and is slow
    ex.configure(trust=["system:serviceaccount:team-a:*"], delay=0.3)
    env = config_env(plugin, generic(ex))
    tokens = {"team-a": pod_token("team-a", "builder"), "team-b": pod_token("team-b", "intruder")}
    results = []
    lock = threading.Lock()

    def pull(ns):
        r = plugin.run(sa_request(IMAGE, tokens[ns]), env=env)
        with lock:
            results.append((ns, r))

    # When six pods of each pull at once
    threads = [threading.Thread(target=pull, args=(ns,)) for _ in range(6) for ns in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(results) == 12
    # Then team-a's pods share one exchange and one token, issued for team-a
    a = {ok(r, REGISTRY, tokens["team-a"])["password"] for ns, r in results if ns == "team-a"}
    assert len(a) == 1 and ex.issued[a.pop()] == subject("team-a", "builder")
    assert [c["subject"] for c in ex.calls].count(subject("team-a", "builder")) == 1
    # and every team-b pod is refused by the issuer, never served team-a's token
    for ns, r in results:
        if ns == "team-b":
            fails(r, "HTTP 400", "invalid_request", "no trust rule")
    assert set(ex.issued.values()) == {subject("team-a", "builder")}


def test_debug_log_holds_neither_token(plugin, ex):
    env = config_env(plugin, generic(ex))
    env["PULLCRED_LOG"] = "debug"
    token = pod_token()
    res = plugin.run(sa_request(IMAGE, token), env=env)
    entry = ok(res, REGISTRY, token)
    assert "token issued" in res.stderr  # the debug log ran
    assert token not in res.stderr and token.split(".")[2] not in res.stderr
    assert entry["password"] not in res.stderr


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("mode,words", [
    ("error500", ["HTTP 500"]),
    ("throttle", ["HTTP 429", "slow_down"]),
    ("garbage", ["HTTP 200", "not JSON"]),
    ("invalid_grant", ["HTTP 400", "invalid_grant", "the subject token was revoked"]),
])
def test_upstream_faults_are_one_line(plugin, ex, mode, words):
    ex.configure(mode=mode)
    res = plugin.run(sa_request(IMAGE, pod_token()), env=config_env(plugin, generic(ex)), args=["--timeout", "8s"])
    line = fails(res, f"registry {REGISTRY}: token exchange sts at {ex.url}/token", *words)
    assert "<html>" not in line
    # 5xx and 429 are retried, the others are answers
    assert ex.call_count() == (3 if mode in ("error500", "throttle") else 1)


def test_exchange_down_is_one_line(plugin, ex):
    url = f"http://127.0.0.1:{free_port()}"
    env = config_env(plugin, generic(ex, tokenUrl=f"{url}/token"))
    res = plugin.run(sa_request(IMAGE, pod_token()), env=env, args=["--timeout", "5s"])
    fails(res, "token exchange sts", "connection failed")
    assert res.elapsed < 7


def test_slow_exchange_times_out_within_the_deadline(plugin, ex):
    ex.configure(mode="hang")
    res = plugin.run(sa_request(IMAGE, pod_token()), env=config_env(plugin, generic(ex)), args=["--timeout", "3s"])
    fails(res, "token exchange sts", "timed out")
    assert res.elapsed < 5


def test_missing_access_token_is_one_line(plugin, ex):
    env = config_env(plugin, generic(ex, tokenField="data.token"))
    fails(plugin.run(sa_request(IMAGE, pod_token()), env=env), "no \"data.token\"", "tokenField")


def test_stale_token_is_served_through_an_outage_but_not_through_a_refusal(plugin, ex):
    # Given team-a's token cached and past its refresh point (life 301s:
    # refresh 1s after the fetch), but still valid
    ex.configure(expires_in=301)
    token = pod_token()
    env = config_env(plugin, generic(ex))
    first = ok(plugin.run(sa_request(IMAGE, token), env=env), REGISTRY, token)["password"]
    time.sleep(2.1)
    # When the issuer is down, the cached token is served
    ex.configure(mode="error500")
    res = plugin.run(sa_request(IMAGE, token), env=env, args=["--timeout", "5s"])
    assert ok(res, REGISTRY, token)["password"] == first
    assert "serving the cached token" in res.stderr
    # but when it refuses team-a, the cached token is not
    ex.configure(mode="ok", trust=[])
    fails(plugin.run(sa_request(IMAGE, token), env=env), "no trust rule")


# ------------------------------------------------------------------ config


def test_plain_http_token_url_is_refused_at_config_load(plugin, ex):
    env = config_env(plugin, generic(ex, tokenUrl="http://sts.example.com/token"))
    res = plugin.run(sa_request(IMAGE, pod_token()), env=env)
    assert res.code != 0 and res.stdout == ""
    assert "exchanges[0].tokenUrl" in res.stderr and "https" in res.stderr
    assert ex.call_count() == 0


@pytest.mark.parametrize("over,words", [
    ({"flavor": "artifactory"}, ["providerName", "required"]),
    ({"subjectToken": "file"}, ["subjectTokenFile", "required"]),
    ({"parameters": {"subject_token": "x"}}, ["parameters.subject_token"]),
    ({"flavor": "artifactory", "providerName": "p", "requestFormat": "form"}, ["JSON only"]),
])
def test_config_mistakes_are_named(plugin, ex, over, words):
    res = plugin.run(sa_request(IMAGE, pod_token()), env=config_env(plugin, generic(ex, **over)))
    assert res.code != 0 and res.stdout == ""
    for w in words:
        assert w in res.stderr, res.stderr
