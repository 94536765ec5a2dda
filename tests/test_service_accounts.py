"""Per-pod identities from service-account tokens (KEP-4412).

With `tokenAttributes` in its kubelet config, the kubelet sends a v1
CredentialProviderRequest with the pod's service-account token
(`serviceAccountToken`) and its service account's annotations
(`serviceAccountAnnotations`); pullcred then fetches the registry credential
with that service account's cloud identity instead of the node's:

- AWS: sts:AssumeRoleWithWebIdentity (AWS STS API Reference) with the role
  the annotations name, then ecr:GetAuthorizationToken signed with the
  assumed session;
- Google: RFC 8693 token exchange at Google STS, then optionally IAM
  Credentials generateAccessToken (service-account impersonation);
- Azure: the token as the client assertion of Entra's client-credentials grant
  (Microsoft Entra workload identity federation), then the ACR exchange.

Upstreams are the stand-ins (an STS that enforces trust policies, the ECR,
Google and Entra/ACR stand-ins, all on 127.0.0.1) and moto. Tokens come from
satoken.py, signed by a key the stand-ins verify against, and are registered
with conftest's leak scan: a token on stderr fails the test that printed it.

The rules checked here, besides a working answer for each cloud:
1. a token with nothing naming an identity fails with one line naming the
   annotation, unless --service-account-fallback=node (then the node's
   identity, with a warning);
2. isolation: a credential fetched for one service account (issuer,
   namespace, name, UID) is never served to another, even for the same role;
3. the token is never cached, logged, or returned as the password;
4. cacheDuration never outlives the token;
5. expired, non-JWT and non-service-account tokens fail with one line, and
   so do annotations without a token;
6. v1beta1/v1alpha1 requests never carry these fields (ignored).
"""

import json
import os
import re
import stat
import time

import pytest

import satoken
from conftest import ACCESS_KEY, V1, ecr_env, free_port, register_secret
from satoken import mint, sa_request, subject
from standins.azure import ACR_SCOPE, AzureStandin
from standins.azure import JWT_BEARER as CLIENT_ASSERTION_TYPE
from standins.gcp import ACCESS_TOKEN_TYPE, CLOUD_PLATFORM, TOKEN_EXCHANGE, GoogleStandin
from standins.sts import StsStandin
from test_azure import standin_env

GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$")

# ------------------------------------------------------------------ AWS constants
ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{ECR}/team/app"
ROLE_X = "arn:aws:iam::123456789012:role/puller-x"
ROLE_Y = "arn:aws:iam::123456789012:role/puller-y"
ROLE_DEFAULT = "arn:aws:iam::123456789012:role/default-puller"
ECR_ROLE = "eks.amazonaws.com/ecr-role-arn"
IRSA_ROLE = "eks.amazonaws.com/role-arn"
STS_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)

# ------------------------------------------------------------------ Google constants
AR = "us-docker.pkg.dev"
GAR_IMAGE = f"{AR}/project/repo/app"
POOL = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov"
POOL_TOKEN_AUD = "https:" + POOL  # a provider's default allowed audience
EMAIL = "puller@project.iam.gserviceaccount.com"
PROJECT, LOCATION, CLUSTER = "my-proj", "us-central1", "prod"
GKE_TOKEN_AUD = f"{PROJECT}.svc.id.goog"
GKE_AUDIENCE = (
    f"identitynamespace:{PROJECT}.svc.id.goog:"
    f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}"
)
GKE_WI = "iam.gke.io/enable-wi-image-pull"
GKE_GSA = "iam.gke.io/gcp-service-account"
GOOGLE_AUD = "pullcred.dev/google-audience"

# ------------------------------------------------------------------ Azure constants
ACR = "myreg.azurecr.io"
ACR_USER = "00000000-0000-0000-0000-000000000000"
AZ_CLIENT = "kubernetes.azure.com/acr-client-id"
AZ_TENANT = "kubernetes.azure.com/acr-tenant-id"
CLIENT_A = "11111111-aaaa-4aaa-8aaa-111111111111"
TENANT_A = "22222222-bbbb-4bbb-8bbb-222222222222"
AZ_TOKEN_AUD = "api://AzureADTokenExchange"


# ================================================================== helpers


def seconds(d):
    m = GO_DURATION.match(d)
    assert m, f"not a Go duration: {d!r}"
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def expected_cache_duration(life):
    """pullcred's rule (provider/src/expiry.rs): refresh a quarter of the
    life early, the margin clamped to 5m..1h; 0s inside the margin."""
    margin = min(max(life / 4, 300), 3600)
    return max(life - margin, 0)


def ok(res, registry, *tokens):
    """A success for `registry`; the password is none of the given
    service-account tokens, nor contains one. Returns the auth entry."""
    assert res.code == 0, res.stderr
    body = res.json
    assert body["apiVersion"] == V1
    assert list(body["auth"]) == [registry]
    entry = body["auth"][registry]
    assert entry["password"]
    for t in tokens:
        assert entry["password"] != t, "the service-account token came back as the password"
        assert t not in entry["password"] and t.split(".")[-1] not in entry["password"]
    return entry


def fails(res, *words):
    """A failure; conftest already checked there is exactly one `pullcred:`
    line and nothing on stdout. Returns that line."""
    assert res.code == 1, res.stdout
    assert res.stdout == ""
    [line] = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    for w in words:
        assert w in line, line
    return line


def warned_about_node(res):
    return any("WARN" in l and re.search(r"\bnode\b", l, re.I) for l in res.stderr.splitlines())


def cache_files(plugin):
    return [p for p in plugin.cache_dir.rglob("*") if p.is_file()] if plugin.cache_dir.exists() else []


def assert_cache_holds_no_token(plugin, *tokens):
    """Rule 3: no cache file holds a token, nor its signature (the part that
    makes it a credential); the cache is 0700 with 0600 files."""
    files = cache_files(plugin)
    assert files, "nothing was cached"
    assert stat.S_IMODE(plugin.cache_dir.stat().st_mode) == 0o700
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        data = f.read_bytes()
        for t in tokens:
            assert t.encode() not in data, f"a service-account token is in {f.name}"
            assert t.split(".")[-1].encode() not in data, f"a service-account token's signature is in {f.name}"


def token_exp(token):
    return satoken.unverified_claims(token)["exp"]


# ================================================================== AWS fixtures


@pytest.fixture
def sts():
    s = StsStandin(on_secret=register_secret)
    yield s
    s.close()


@pytest.fixture
def ecr(standin):
    """conftest's ECR stand-in, by a clearer name."""
    return standin


@pytest.fixture
def aws(sts, ecr):
    """pullcred's environment: STS and ECR (private and public) at the stand-ins."""
    return {"AWS_ENDPOINT_URL_STS": sts.url, **ecr_env(ecr.url)}


# ================================================================== the stand-ins speak the documented formats


def test_standin_sts_answers_and_refuses_in_the_query_protocol(sts):
    """The STS stand-in's XML, read as an SDK reads it (AWS STS API
    Reference: AssumeRoleWithWebIdentity response and errors)."""
    import urllib.error
    import urllib.parse
    import urllib.request
    import xml.etree.ElementTree as ET

    ns = {"s": "https://sts.amazonaws.com/doc/2011-06-15/"}
    sts.trust(ROLE_X, subject("team-a", "puller"))

    def call(token):
        data = urllib.parse.urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": ROLE_X,
                                       "RoleSessionName": "team-a.puller", "WebIdentityToken": token}).encode()
        req = urllib.request.Request(sts.url + "/", data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, ET.fromstring(r.read())
        except urllib.error.HTTPError as e:
            return e.code, ET.fromstring(e.read())

    token = mint("team-a", "puller", ttl=1200)
    status, root = call(token)
    assert status == 200
    creds = root.find("s:AssumeRoleWithWebIdentityResult/s:Credentials", ns)
    akid = creds.find("s:AccessKeyId", ns).text
    assert akid.startswith("ASIA") and akid in sts.issued
    # a session never outlives the token here (1200s < the default 3600s)
    assert creds.find("s:Expiration", ns).text == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token_exp(token)))
    assert root.find("s:AssumeRoleWithWebIdentityResult/s:SubjectFromWebIdentityToken", ns).text == subject("team-a", "puller")
    for token, want in [
        (mint("team-b", "puller"), (403, "AccessDenied")),
        (mint("team-a", "puller", ttl=-1), (400, "ExpiredTokenException")),
        (mint("team-a", "puller", audience="x"), (400, "InvalidIdentityToken")),
        (mint("team-a", "puller", key=satoken.ROGUE), (400, "InvalidIdentityToken")),
    ]:
        status, root = call(token)
        assert (status, root.find("s:Error/s:Code", ns).text) == want
        assert root.find("s:Error/s:Type", ns).text == "Sender"


def test_standin_google_sts_and_entra_check_service_account_tokens(tls):
    """Google STS (RFC 8693) and Entra (workload identity federation) refuse
    what the real ones refuse, with their error shapes."""
    import json
    import ssl
    import urllib.error
    import urllib.parse
    import urllib.request

    def post(url, form, ctx=None):
        req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode())
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    g = GoogleStandin()
    try:
        g.configure(audience=POOL, k8s_trusted={subject("team-a", "puller")}, k8s_token_audience=POOL_TOKEN_AUD)

        def exchange(token, audience=POOL):
            return post(f"{g.url}/v1/token", {
                "grant_type": TOKEN_EXCHANGE, "audience": audience, "scope": CLOUD_PLATFORM,
                "requested_token_type": ACCESS_TOKEN_TYPE, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "subject_token": token})

        status, body = exchange(mint("team-a", "puller", audience=POOL_TOKEN_AUD))
        assert status == 200 and body["access_token"] in g.sts_tokens
        assert exchange(mint("team-b", "puller", audience=POOL_TOKEN_AUD)) == (400, {
            "error": "unauthorized_client", "error_description": "The given credential is rejected by the attribute condition."})
        assert exchange(mint("team-a", "puller", audience="x"))[1]["error"] == "invalid_grant"
        assert exchange(mint("team-a", "puller", audience=POOL_TOKEN_AUD, ttl=-1))[1]["error"] == "invalid_grant"
        assert exchange(mint("team-a", "puller", audience=POOL_TOKEN_AUD), audience="//x")[1]["error"] == "invalid_target"
    finally:
        g.close()

    ca, cert, key = tls
    a = AzureStandin(cert, key)
    try:
        a.configure(federated_credentials={CLIENT_A: [(satoken.ISSUER, subject("team-a", "puller"), AZ_TOKEN_AUD)]})
        ctx = ssl.create_default_context(cafile=str(ca))

        def entra(token):
            status, body = post(f"{a.url}/{TENANT_A}/oauth2/v2.0/token", {
                "grant_type": "client_credentials", "client_id": CLIENT_A, "scope": ACR_SCOPE,
                "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": token}, ctx)
            return status, body.get("error"), body.get("error_codes")

        assert entra(mint("team-a", "puller", audience=AZ_TOKEN_AUD))[0] == 200
        assert entra(mint("team-b", "puller", audience=AZ_TOKEN_AUD)) == (400, "invalid_client", [700213])
        assert entra(mint("team-a", "puller", audience="x")) == (400, "invalid_client", [700212])
        assert entra(mint("team-a", "puller", audience=AZ_TOKEN_AUD, issuer="https://other")) == (400, "invalid_client", [700211])
        assert entra(mint("team-a", "puller", audience=AZ_TOKEN_AUD, ttl=-1)) == (400, "invalid_client", [700024])
        assert entra(mint("team-a", "puller", audience=AZ_TOKEN_AUD, key=satoken.ROGUE)) == (400, "invalid_client", [50013])
    finally:
        a.close()


# ================================================================== AWS: the assumed role


def test_assumed_role_signs_the_ecr_call(plugin, sts, ecr, aws):
    """The whole AWS path: STS gets the token unsigned, as the SDK sends
    AssumeRoleWithWebIdentity, and ECR is called with the assumed session."""
    # Given a role that trusts team-a/puller
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    # When its pod pulls, the service account naming the role
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    # Then pullcred answers with the ECR token, not the service-account token
    entry = ok(res, ECR, token)
    assert entry["username"] == "AWS"
    assert entry["password"] in ecr.tokens
    # and STS saw one AssumeRoleWithWebIdentity for that role and subject
    [call] = sts.calls
    assert call["method"] == "POST" and call["outcome"] == "ok"
    assert call["action"] == "AssumeRoleWithWebIdentity" and call["version"] == "2011-06-15"
    assert call["content_type"].startswith("application/x-www-form-urlencoded")
    assert not call["signed"], "AssumeRoleWithWebIdentity is an unsigned call"
    assert call["role"] == ROLE_X
    assert call["subject"] == subject("team-a", "puller")
    assert call["session"] == "team-a.puller"
    # and ECR was signed with the assumed session, never with the node's keys
    [ecall] = ecr.calls
    issued = sts.issued[call["access_key_id"]]
    assert ecall["access_key_id"] == call["access_key_id"] != ACCESS_KEY
    assert ecall["session_token"] == issued["session_token"]
    assert ecall["region"] == "us-west-2" and ecall["service"] == "ecr"
    # and the answer lives no longer than the token (1h: refreshed 15m early)
    cd = seconds(res.json["cacheDuration"])
    assert 0 < cd <= 3600
    assert abs(cd - 45 * 60) <= 120, res.json["cacheDuration"]
    assert res.stderr == ""


def test_ecr_public_with_the_assumed_role(plugin, sts, ecr, aws):
    # Given a role trusting the service account
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    # When it pulls from ECR Public
    res = plugin.run(sa_request("public.ecr.aws/team/app", token, {ECR_ROLE: ROLE_X}), env=aws)
    # Then ecr-public is called with the assumed session, in us-east-1
    ok(res, "public.ecr.aws", token)
    [call] = sts.calls
    [ecall] = ecr.calls
    assert ecall["target"].startswith("SpencerFrontendService")
    assert ecall["access_key_id"] == call["access_key_id"] != ACCESS_KEY
    assert ecall["session_token"] == sts.issued[call["access_key_id"]]["session_token"]
    assert ecall["region"] == "us-east-1"


def test_against_moto(plugin, moto):
    """moto implements AssumeRoleWithWebIdentity (without checking the token
    or any trust policy) and ECR: a real-shaped round trip. moto's ECR tokens
    expire in 2015, so the answer is served with 0s and not cached."""
    # Given everything AWS at moto
    token = mint("team-a", "puller")
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    # When an annotated service account pulls
    res = plugin.run(sa_request(f"{host}/app", token, {ECR_ROLE: ROLE_X}), env={"AWS_ENDPOINT_URL": moto})
    # Then the answer works and lives no longer than the token
    entry = ok(res, host, token)
    assert entry["username"] == "AWS"
    assert seconds(res.json["cacheDuration"]) <= token_exp(token) - time.time() + 1


# ------------------------------------------------------------------ session names


@pytest.mark.parametrize(
    "ns,name,want",
    [
        ("team-a", "puller", "team-a.puller"),
        ("kube-system", "image.puller", "kube-system.image.puller"),
        ("n" * 30, "s" * 33, "n" * 30 + "." + "s" * 33),  # exactly 64: kept whole
        ("team-a", "svc~acct", "team-a.svc-acct"),  # outside [\w+=,.@-]: '-'
    ],
    ids=["plain", "dots", "exactly-64", "odd-char"],
)
def test_session_name_is_namespace_dot_name(plugin, sts, ecr, aws, ns, name, want):
    # Given a role trusting the service account
    sts.trust(ROLE_X, subject(ns, name))
    token = mint(ns, name)
    # When it pulls
    ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)
    # Then the session is named <namespace>.<name>, in STS's alphabet
    assert sts.calls[-1]["session"] == want


def test_long_session_names_are_cut_with_a_hash(plugin, sts, ecr, aws):
    """STS allows 64 characters: longer names keep 55, then '-' and 8 hex
    digits, so two long names with the same first 55 still differ."""
    # Given two service accounts whose <ns>.<name> share their first 65 characters
    ns = "n" * 63
    names = ["a" * 100 + "-x", "a" * 100 + "-y"]
    for name in names:
        sts.trust(ROLE_X, subject(ns, name))
    sessions = []
    for name in names:
        token = mint(ns, name)
        # When each pulls
        ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)
        sessions.append(sts.calls[-1]["session"])
    # Then both names are 64 valid characters: 55 of the name, '-', 8 hex digits
    for name, session in zip(names, sessions):
        full = f"{ns}.{name}"
        assert len(session) == 64 and STS_SESSION_NAME.match(session), session
        assert session[:55] == full[:55]
        assert session[55] == "-"
        assert re.fullmatch(r"[0-9a-f]{8}", session[56:]), session
    # and they differ
    assert sessions[0] != sessions[1]


def test_65_characters_are_cut(plugin, sts, ecr, aws):
    ns, name = "n" * 30, "s" * 34
    sts.trust(ROLE_X, subject(ns, name))
    token = mint(ns, name)
    ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)
    session = sts.calls[-1]["session"]
    assert len(session) == 64 and session[:55] == f"{ns}.{name}"[:55] and session[55] == "-"


# ------------------------------------------------------------------ isolation


def test_isolation_between_service_accounts(plugin, sts, ecr, aws):
    """THE isolation test. Role X trusts team-a/puller only. A's credential
    is cached; B, naming the same role, must make its own exchange, and STS,
    not pullcred's cache, decides: it refuses B."""
    sa_a, sa_b = subject("team-a", "puller"), subject("team-b", "puller")
    sts.trust(ROLE_X, sa_a)
    uid_a = "7f1c1c3e-0a5b-4a4e-9a53-5c1f3f0f0a01"
    ann = {ECR_ROLE: ROLE_X}

    # Given A's pull filled the cache with one exchange
    token_a = mint("team-a", "puller", uid=uid_a)
    first = plugin.run(sa_request(IMAGE, token_a, ann), env=aws)
    password_a = ok(first, ECR, token_a)["password"]
    assert sts.call_count() == 1 and ecr.call_count() == 1

    # When A pulls again, the same token or another pod's token of A
    again = plugin.run(sa_request(f"{ECR}/other/repo", token_a, ann), env=aws)
    token_a2 = mint("team-a", "puller", uid=uid_a, pod="app-7d9f8c6b5-zzzzz")
    other_pod = plugin.run(sa_request(IMAGE, token_a2, ann), env=aws)
    # Then both are cache hits: no new exchange, the same credential
    assert ok(again, ECR, token_a)["password"] == password_a
    assert ok(other_pod, ECR, token_a2)["password"] == password_a
    assert sts.call_count() == 1 and ecr.call_count() == 1

    # When B, untrusted, names the same role
    token_b = mint("team-b", "puller")
    denied = plugin.run(sa_request(IMAGE, token_b, ann), env=aws)
    # Then pullcred asked STS for B, and STS refused: B is not served A's entry
    line = fails(denied, "AccessDenied")
    assert password_a not in denied.stderr
    assert sts.call_count() == 2
    assert sts.calls[-1]["subject"] == sa_b and sts.calls[-1]["role"] == ROLE_X
    assert sts.calls[-1]["outcome"] == "AccessDenied"
    assert ecr.call_count() == 1
    assert "registry" in line

    # When A is deleted and re-created (same name, new UID)
    token_a3 = mint("team-a", "puller", uid="7f1c1c3e-0a5b-4a4e-9a53-5c1f3f0f0a02")
    recreated = plugin.run(sa_request(IMAGE, token_a3, ann), env=aws)
    # Then the old entry is not served: a new exchange, a new credential
    assert ok(recreated, ECR, token_a3)["password"] != password_a
    assert sts.call_count() == 3 and ecr.call_count() == 2
    assert sts.calls[-1]["subject"] == sa_a

    # and the cache holds no token, privately
    assert_cache_holds_no_token(plugin, token_a, token_a2, token_b, token_a3)


@pytest.mark.parametrize(
    "other",
    [
        dict(namespace="team-b", name="puller"),
        dict(namespace="team-a", name="builder"),
        dict(namespace="team-a", name="puller", uid="00000000-0000-4000-8000-0000000000bb"),
        dict(namespace="team-a", name="puller", issuer="https://oidc.eks.us-west-2.amazonaws.com/id/OTHERCLUSTER"),
    ],
    ids=["other-namespace", "other-name", "other-uid", "other-cluster"],
)
def test_trusted_others_still_get_their_own_exchange(plugin, sts, ecr, aws, other):
    """Even when the role trusts both, another service account (namespace,
    name, UID or issuer) never gets A's entry: it makes its own exchange."""
    # Given a role trusting both, and A's credential cached
    sts.trust(ROLE_X, subject("team-a", "puller"), subject(other["namespace"], other["name"]))
    ann = {ECR_ROLE: ROLE_X}
    token_a = mint("team-a", "puller", uid="00000000-0000-4000-8000-0000000000aa")
    password_a = ok(plugin.run(sa_request(IMAGE, token_a, ann), env=aws), ECR, token_a)["password"]
    # When the other pulls
    token_o = mint(uid=other.get("uid"), issuer=other.get("issuer", satoken.ISSUER),
                   namespace=other["namespace"], name=other["name"])
    res = plugin.run(sa_request(IMAGE, token_o, ann), env=aws)
    # Then it got its own exchange and its own credential
    assert ok(res, ECR, token_o)["password"] != password_a
    assert sts.call_count() == 2 and ecr.call_count() == 2
    assert sts.calls[-1]["subject"] == subject(other["namespace"], other["name"])
    assert len(cache_files(plugin)) >= 2


def test_concurrent_pulls_of_two_service_accounts_stay_apart(plugin, sts, ecr, aws):
    """Single flight is per service account: six pods of A (trusted) and six
    of B (not trusted) at once, STS slow. A's pods share one exchange; every
    B pod fails with STS's refusal and none gets A's credential."""
    # Given a slow STS and a role trusting A only
    sts.trust(ROLE_X, subject("team-a", "puller"))
    sts.configure(delay=0.5)
    ann = {ECR_ROLE: ROLE_X}
    tokens = {ns: mint(ns, "puller", uid=f"00000000-0000-4000-8000-00000000000{i}") for i, ns in enumerate(("team-a", "team-b"))}
    # When both pull at once
    started = time.monotonic()
    procs = [(ns, plugin.start(sa_request(IMAGE, tokens[ns], ann), env=aws)) for _ in range(6) for ns in tokens]
    results = [(ns, plugin.finish(p, d, started)) for ns, (p, d) in procs]
    # Then A: all served, one exchange, one credential
    a = [r for ns, r in results if ns == "team-a"]
    assert all(r.code == 0 for r in a), [r.stderr for r in a if r.code]
    assert len({ok(r, ECR, tokens["team-a"])["password"] for r in a}) == 1
    assert [c["subject"] for c in sts.calls].count(subject("team-a", "puller")) == 1
    # and B: every pod refused by STS, none served
    for ns, r in results:
        if ns == "team-b":
            fails(r, "AccessDenied")
    assert ecr.call_count() == 1


def test_the_identity_asked_for_is_part_of_the_key(plugin, sts, ecr, aws):
    # Given A trusted by two roles, with role X's credential cached
    sts.trust(ROLE_X, subject("team-a", "puller"))
    sts.trust(ROLE_Y, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    x = ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)["password"]
    # When A's annotation is changed to role Y
    y = ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_Y}), env=aws), ECR, token)["password"]
    # Then Y is a new exchange, not X's entry
    assert x != y
    assert [c["role"] for c in sts.calls] == [ROLE_X, ROLE_Y]


def test_service_account_and_node_entries_are_apart(plugin, sts, ecr, aws):
    """A node pull (no token) and a service account's pull of one registry
    are different entries both ways round."""
    sts.trust(ROLE_X, subject("team-a", "puller"))
    node = ok(plugin.run(sa_request(IMAGE), env=aws), ECR)["password"]
    token = mint("team-a", "puller")
    pod = ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)["password"]
    assert node != pod
    assert [c["access_key_id"] for c in ecr.calls][0] == ACCESS_KEY
    assert ecr.calls[1]["access_key_id"] != ACCESS_KEY
    # and the node's next pull is still the node's entry
    assert ok(plugin.run(sa_request(IMAGE), env=aws), ECR)["password"] == node


# ------------------------------------------------------------------ cacheDuration


@pytest.mark.parametrize(
    "ttl,ecr_life",
    [(600, 12 * 3600), (1200, 12 * 3600), (3600, 12 * 3600), (7200, 12 * 3600), (3600, 1800)],
    ids=["token-10m", "token-20m", "token-1h", "token-2h", "ecr-30m"],
)
def test_cache_duration_never_outlives_the_token(plugin, sts, ecr, aws, ttl, ecr_life):
    """cacheDuration <= min(ECR token, assumed session, service-account
    token) - now, and follows the quarter-early rule on that bound."""
    # Given a token of `ttl` seconds and ECR tokens of `ecr_life`
    sts.trust(ROLE_X, subject("team-a", "puller"))
    ecr.configure(expires_in=ecr_life)
    token = mint("team-a", "puller", ttl=ttl)
    # When the pod pulls
    started = time.time()
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    ok(res, ECR, token)
    # Then the answer's life is within the earliest expiry
    session_exp = sts.issued[sts.calls[-1]["access_key_id"]]["expiration"]
    bound = min(token_exp(token), session_exp, started + ecr_life) - started
    cd = seconds(res.json["cacheDuration"])
    assert cd <= bound + 1, (cd, bound)
    assert cd <= ttl
    assert abs(cd - expected_cache_duration(bound)) <= 90, (cd, expected_cache_duration(bound))


def test_a_hit_never_outlives_the_requests_token(plugin, sts, ecr, aws):
    """Rule 4 holds for hits too: the entry was filled with a 1h token; a
    later pod's token of the same service account lives 10 minutes. The
    cached credential may be served, but for no longer than that token."""
    # Given A's entry, filled with a one-hour token
    sts.trust(ROLE_X, subject("team-a", "puller"))
    uid = "5b0c6c1e-3a0f-4b43-8d6e-0000000000a1"
    ann = {ECR_ROLE: ROLE_X}
    token = mint("team-a", "puller", uid=uid, ttl=3600)
    ok(plugin.run(sa_request(IMAGE, token, ann), env=aws), ECR, token)
    # When another pod of A pulls with a token that lives 10 minutes
    short = mint("team-a", "puller", uid=uid, ttl=600)
    res = plugin.run(sa_request(IMAGE, short, ann), env=aws)
    # Then the answer lives no longer than that token
    ok(res, ECR, short)
    assert seconds(res.json["cacheDuration"]) <= 600, res.json["cacheDuration"]


def test_expired_token_fails_even_with_an_entry_cached(plugin, sts, ecr, aws):
    # Given A's entry cached
    sts.trust(ROLE_X, subject("team-a", "puller"))
    uid = "5b0c6c1e-3a0f-4b43-8d6e-0000000000a2"
    token = mint("team-a", "puller", uid=uid)
    ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws), ECR, token)
    # When A's pod sends an expired token
    res = plugin.run(sa_request(IMAGE, mint("team-a", "puller", uid=uid, ttl=-30), {ECR_ROLE: ROLE_X}), env=aws)
    # Then it fails: the entry is no proof of identity
    assert "expired" in fails(res).lower()


def test_token_about_to_expire_is_not_cached(plugin, sts, ecr, aws):
    # Given a token with four minutes left (less than the 5m margin)
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller", ttl=240)
    # When the pod pulls
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    # Then it is served for no longer than the token lives
    ok(res, ECR, token)
    assert seconds(res.json["cacheDuration"]) <= 240


# ------------------------------------------------------------------ where the role comes from


@pytest.mark.parametrize("how", ["env", "flag"])
def test_default_role_for_unannotated_service_accounts(plugin, sts, ecr, aws, how):
    # Given a default role, trusting the service account
    sts.trust(ROLE_DEFAULT, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    env, args = dict(aws), ()
    if how == "env":
        env["AWS_ECR_ROLE_ARN"] = ROLE_DEFAULT
    else:
        args = ("--ecr-role-arn", ROLE_DEFAULT)
    # When a service account without annotations pulls
    res = plugin.run(sa_request(IMAGE, token, {}), env=env, args=args)
    # Then the default role is assumed
    ok(res, ECR, token)
    assert sts.calls[-1]["role"] == ROLE_DEFAULT
    assert ecr.calls[-1]["access_key_id"] != ACCESS_KEY


def test_annotation_wins_over_the_default_role(plugin, sts, ecr, aws):
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=dict(aws, AWS_ECR_ROLE_ARN=ROLE_DEFAULT))
    ok(res, ECR, token)
    assert [c["role"] for c in sts.calls] == [ROLE_X]


def test_irsa_annotation_is_ignored_without_the_flag(plugin, sts, ecr, aws):
    """IRSA's eks.amazonaws.com/role-arn is for the pod's own AWS calls;
    pullcred reads it only when told to."""
    # Given a service account with only IRSA's annotation
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    # When it pulls, without --accept-irsa-role-annotation
    res = plugin.run(sa_request(IMAGE, token, {IRSA_ROLE: ROLE_X}), env=aws)
    # Then it fails, naming the annotation to set, and nothing was called
    fails(res, ECR_ROLE)
    assert sts.call_count() == 0 and ecr.call_count() == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_irsa_annotation_with_the_flag(plugin, sts, ecr, aws, how):
    # Given a service account with only IRSA's annotation, and the opt-in
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    env = dict(aws, PULLCRED_ACCEPT_IRSA_ROLE_ARN="true") if how == "env" else aws
    args = ("--accept-irsa-role-annotation",) if how == "flag" else ()
    # When it pulls
    res = plugin.run(sa_request(IMAGE, token, {IRSA_ROLE: ROLE_X}), env=env, args=args)
    # Then IRSA's role is assumed
    ok(res, ECR, token)
    assert sts.calls[-1]["role"] == ROLE_X


def test_ecr_role_annotation_wins_over_irsa(plugin, sts, ecr, aws):
    sts.trust(ROLE_X, subject("team-a", "puller"))
    sts.trust(ROLE_Y, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X, IRSA_ROLE: ROLE_Y}), env=aws,
                     args=("--accept-irsa-role-annotation",))
    ok(res, ECR, token)
    assert [c["role"] for c in sts.calls] == [ROLE_X]


def test_malformed_role_arn_is_one_line(plugin, sts, ecr, aws):
    token = mint("team-a", "puller")
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: "puller-x"}), env=aws)
    fails(res)
    assert ecr.call_count() == 0


# ------------------------------------------------------------------ no identity named: the fallback


def test_no_identity_named_fails_naming_the_annotation(plugin, sts, ecr, aws):
    # Given a token, no annotation, no default role, no fallback
    token = mint("team-a", "puller")
    # When the pod pulls
    res = plugin.run(sa_request(IMAGE, token, {"unrelated.example/key": "v"}), env=aws)
    # Then it fails with the annotation to set, and the node's identity was not used
    fails(res, ECR_ROLE)
    assert sts.call_count() == 0 and ecr.call_count() == 0


@pytest.mark.parametrize("how", ["flag", "flag-space", "env"])
def test_fallback_node_uses_the_node_identity_and_warns(plugin, sts, ecr, aws, how):
    # Given a token naming no identity, and the node fallback on
    token = mint("team-a", "puller")
    env, args = dict(aws), ()
    if how == "env":
        env["PULLCRED_SERVICE_ACCOUNT_FALLBACK"] = "node"
    elif how == "flag":
        args = ("--service-account-fallback=node",)
    else:
        args = ("--service-account-fallback", "node")
    # When the pod pulls
    res = plugin.run(sa_request(IMAGE, token, {}), env=env, args=args)
    # Then the node's keys signed the ECR call, STS was not asked, and a warning says so
    ok(res, ECR, token)
    assert sts.call_count() == 0
    [ecall] = ecr.calls
    assert ecall["access_key_id"] == ACCESS_KEY and ecall["session_token"] is None
    assert warned_about_node(res), res.stderr


def test_fallback_does_not_override_a_named_identity(plugin, sts, ecr, aws):
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller")
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws, args=("--service-account-fallback=node",))
    ok(res, ECR, token)
    assert sts.call_count() == 1 and ecr.calls[-1]["access_key_id"] != ACCESS_KEY
    assert not warned_about_node(res)


def test_fallback_does_not_rescue_a_refusal(plugin, sts, ecr, aws):
    """A role that refuses the service account is an error even with the
    node fallback: the fallback is for accounts that name nothing."""
    token = mint("team-b", "puller")
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws, args=("--service-account-fallback=node",))
    fails(res, "AccessDenied")
    assert ecr.call_count() == 0


def past_refresh_point(plugin):
    """Rewrite every entry (atomically, as pullcred does) so that it is past its
    refresh point but still valid for 10 minutes: the next exec must refresh,
    and may serve the entry only if upstream is down."""
    for f in plugin.cache_dir.glob("*.json"):
        data = json.loads(f.read_text())
        now = int(time.time())
        data["fetchedAt"], data["expiresAt"] = now - 3000, now + 600
        tmp = f.with_suffix(".test-tmp")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, f)


def test_a_revoked_trust_is_not_answered_from_the_cache(plugin, sts, ecr, aws):
    """A refusal is an answer, not an outage: once the role stops trusting A,
    A's still-valid cached credential is not served in its place."""
    # Given A's entry, due for refresh but still valid
    sts.trust(ROLE_X, subject("team-a", "puller"))
    uid = "5b0c6c1e-3a0f-4b43-8d6e-0000000000c1"
    ann = {ECR_ROLE: ROLE_X}
    ok(plugin.run(sa_request(IMAGE, mint("team-a", "puller", uid=uid), ann), env=aws), ECR)
    past_refresh_point(plugin)
    # When the role's trust policy no longer names A
    with sts.lock:
        sts.config["trust"][ROLE_X] = set()
    res = plugin.run(sa_request(IMAGE, mint("team-a", "puller", uid=uid), ann), env=aws)
    # Then the pull fails with STS's answer, and the warning says why
    fails(res, "AccessDenied")
    assert "not serving its cached credential" in res.stderr
    assert sts.calls[-1]["outcome"] == "AccessDenied"


def test_an_sts_outage_still_serves_the_valid_entry(plugin, sts, ecr, aws):
    """The same entry through an outage (STS answering 500): served, as the
    node's would be, with a short cacheDuration."""
    sts.trust(ROLE_X, subject("team-a", "puller"))
    uid = "5b0c6c1e-3a0f-4b43-8d6e-0000000000c2"
    ann = {ECR_ROLE: ROLE_X}
    token = mint("team-a", "puller", uid=uid)
    first = ok(plugin.run(sa_request(IMAGE, token, ann), env=aws), ECR, token)
    past_refresh_point(plugin)
    sts.configure(mode="error500")
    res = plugin.run(sa_request(IMAGE, mint("team-a", "puller", uid=uid), ann), env=aws)
    assert ok(res, ECR)["password"] == first["password"]
    assert seconds(res.json["cacheDuration"]) <= 60
    assert "serving the cached token" in res.stderr


# ------------------------------------------------------------------ bad tokens and requests


def test_expired_token_fails(plugin, sts, ecr, aws):
    # Given a token that expired a minute ago
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = mint("team-a", "puller", ttl=-60)
    # When it is sent
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    # Then one line says it expired, and nothing upstream was called
    line = fails(res)
    assert "expired" in line.lower()
    assert sts.call_count() == 0 and ecr.call_count() == 0


def opaque_token():
    t = "opaque-" + os.urandom(16).hex()
    register_secret(t)
    return t


def garbage_jwt():
    t = "eyJub3QiOiJqc29uIn0.bm90LWEtY2xhaW1zLXNldA." + os.urandom(16).hex()
    register_secret(t)
    return t


@pytest.mark.parametrize(
    "make",
    [
        opaque_token,
        garbage_jwt,
        lambda: satoken.mint_plain_jwt(
            {"iss": "https://accounts.example", "sub": "user@example.com", "aud": "sts.amazonaws.com",
             "exp": int(time.time()) + 3600, "iat": int(time.time())}),
        lambda: mint("team-a", "puller", drop=("kubernetes.io", "sub")),
    ],
    ids=["opaque", "undecodable-jwt", "not-a-service-account", "no-service-account-claims"],
)
def test_token_that_is_not_a_service_account_jwt_fails(plugin, sts, ecr, aws, make):
    token = make()
    sts.trust(ROLE_X, subject("team-a", "puller"))
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    fails(res)
    assert sts.call_count() == 0 and ecr.call_count() == 0


def test_annotations_without_a_token_fail(plugin, sts, ecr, aws):
    """A provider entry without tokenAttributes sends annotations but no
    token: that is a configuration error, never a silent node pull."""
    res = plugin.run(sa_request(IMAGE, None, {ECR_ROLE: ROLE_X}), env=aws)
    line = fails(res)
    assert "serviceAccountToken" in line or "tokenAttributes" in line, line
    assert sts.call_count() == 0 and ecr.call_count() == 0


@pytest.mark.parametrize("version", ["v1beta1", "v1alpha1"])
def test_older_api_versions_ignore_the_fields(plugin, sts, ecr, aws, version):
    # Given an older request that (wrongly) carries the KEP-4412 fields
    token = mint("team-b", "puller")
    api = f"credentialprovider.kubelet.k8s.io/{version}"
    # When it is sent
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}, api_version=api), env=aws)
    # Then it is a node pull, answered in that version
    assert res.code == 0, res.stderr
    assert res.json["apiVersion"] == api
    assert res.json["auth"][ECR]["password"] != token
    assert sts.call_count() == 0
    assert ecr.calls[-1]["access_key_id"] == ACCESS_KEY


@pytest.mark.parametrize(
    "setup,code",
    [
        ("untrusted", "AccessDenied"),
        ("wrong-audience", "InvalidIdentityToken"),
        ("sts-says-expired", "ExpiredTokenException"),
        ("forged", "InvalidIdentityToken"),
    ],
)
def test_sts_refusals_are_one_line_and_not_cached(plugin, sts, ecr, aws, setup, code):
    # Given an STS that will refuse the token
    sts.trust(ROLE_X, subject("team-a", "puller"))
    if setup == "untrusted":
        token = mint("team-z", "puller")
    elif setup == "wrong-audience":
        token = mint("team-a", "puller", audience="some-other-audience")
    elif setup == "forged":
        token = mint("team-a", "puller", key=satoken.ROGUE)
    else:
        token = mint("team-a", "puller")
        sts.configure(mode="expired")
    # When the pod pulls
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    # Then one line carries STS's error code; nothing reached ECR or the cache
    fails(res, code)
    assert ecr.call_count() == 0
    assert not list(plugin.cache_dir.glob("*.json"))


@pytest.mark.parametrize("fault", ["error500", "throttle", "garbage", "hang", "down"])
def test_an_sts_that_is_down_slow_or_broken_is_one_line_within_the_deadline(plugin, sts, ecr, aws, fault):
    """The identity exchange is an upstream like any other: 5xx and
    throttling are retried, then reported; garbage is reported; a hang ends
    at --timeout; a refused connection is named. Never a panic, never a
    fallback to the node, nothing cached."""
    # Given an STS in trouble (or no STS at all)
    sts.trust(ROLE_X, subject("team-a", "puller"))
    env = dict(aws)
    if fault == "down":
        env["AWS_ENDPOINT_URL_STS"] = f"http://127.0.0.1:{free_port()}"
    else:
        sts.configure(mode=fault)
    token = mint("team-a", "puller")
    # When the pod pulls, with a 3 s deadline
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=env, args=("--timeout", "3s"))
    # Then one line names the STS step; ECR was never called with any identity
    line = fails(res, "AssumeRoleWithWebIdentity")
    assert res.elapsed < 10, res.elapsed
    assert ecr.call_count() == 0
    assert not list(plugin.cache_dir.glob("*.json"))
    if fault in ("error500", "throttle"):
        assert sts.call_count() > 1, "a transient STS failure is retried"
    if fault == "hang":
        assert "timed out" in line


def test_trace_logging_never_prints_the_token(plugin, sts, ecr, aws):
    """At trace level, through a miss, a hit and a refusal, neither the
    token nor its signature reaches stderr (conftest scans for the whole
    token, and for the STS secrets, on every run)."""
    sts.trust(ROLE_X, subject("team-a", "puller"))
    env = dict(aws, PULLCRED_LOG="trace")
    token = mint("team-a", "puller")
    bad = mint("team-b", "puller")
    miss = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=env)
    ok(miss, ECR, token)
    assert "cache miss" in miss.stderr  # trace output is really on
    hit = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=env)
    assert "cache hit" in hit.stderr
    refused = plugin.run(sa_request(IMAGE, bad, {ECR_ROLE: ROLE_X}), env=env)
    assert refused.code == 1
    expired = plugin.run(sa_request(IMAGE, mint("team-a", "puller", ttl=-5), {ECR_ROLE: ROLE_X}), env=env)
    assert expired.code == 1
    secrets_ = [token, bad, *ecr.tokens]
    for i in sts.issued.values():
        secrets_ += [i["secret"], i["session_token"]]
    for res in (miss, hit, refused, expired):
        for s in secrets_:
            assert s not in res.stderr
        for t in (token, bad):
            assert t.split(".")[2] not in res.stderr


# ================================================================== Google


@pytest.fixture
def google():
    s = GoogleStandin(on_token=register_secret)
    # a workload identity pool whose provider is the cluster's issuer
    s.configure(audience=POOL, k8s_trusted=set(), k8s_token_audience=POOL_TOKEN_AUD, impersonators={})
    yield s
    s.close()


@pytest.fixture
def genv(google):
    return {
        "PULLCRED_GOOGLE_STS_URL": f"{google.url}/v1/token",
        "PULLCRED_GOOGLE_IAM_CREDENTIALS_URL": google.url,
        "GCE_METADATA_HOST": google.host,
    }


def gke(google):
    """The node is a GKE node: its metadata server names the cluster, and
    the cluster's workload pool trusts its own issuer."""
    google.configure(project_id=PROJECT, cluster_location=LOCATION, cluster_name=CLUSTER,
                     audience=GKE_AUDIENCE, k8s_token_audience=GKE_TOKEN_AUD)


def sts_calls(google):
    return [c for c in google.calls if c["kind"] == "sts"]


def node_token_calls(google):
    return [c for c in google.calls if c["path"].endswith("/service-accounts/default/token")]


def google_ok(res, *tokens):
    entry = ok(res, AR, *tokens)
    assert entry["username"] == "oauth2accesstoken"
    assert entry["password"].startswith("ya29.standin-")
    return entry


@pytest.mark.parametrize("how", ["flag", "env", "annotation"])
def test_google_exchange_with_a_configured_audience(plugin, google, genv, how):
    """RFC 8693 token exchange: the pool audience from --google-audience,
    PULLCRED_GOOGLE_AUDIENCE or the pullcred.dev/google-audience annotation
    (which also opts the service account in)."""
    # Given a pool admitting team-a/puller
    google.configure(k8s_trusted={subject("team-a", "puller")})
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    env, args, ann = dict(genv), (), {}
    if how == "flag":
        args = ("--google-audience", POOL)
    elif how == "env":
        env["PULLCRED_GOOGLE_AUDIENCE"] = POOL
    else:
        ann = {GOOGLE_AUD: POOL}
    # When the pod pulls from Artifact Registry
    res = plugin.run(sa_request(GAR_IMAGE, token, ann), env=env, args=args)
    # Then the federated token is the password (no impersonation asked)
    entry = google_ok(res, token)
    assert entry["password"] in google.sts_tokens
    # and STS got a well-formed exchange for that subject
    [call] = sts_calls(google)
    assert call["verified"]
    assert call["subject"] == subject("team-a", "puller")
    f = call["form"]
    assert f["grant_type"] == TOKEN_EXCHANGE
    assert f["audience"] == POOL
    assert f["scope"] == CLOUD_PLATFORM
    assert f["requested_token_type"] == ACCESS_TOKEN_TYPE
    assert f["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    # and the node's identity was not used
    assert node_token_calls(google) == []
    assert seconds(res.json["cacheDuration"]) <= 3600


def test_an_upstream_echoing_the_token_is_refused(plugin, google, genv):
    """The kubelet's echo guard drops an answer whose password is the
    service-account token; pullcred never gives one: an STS that hands the
    subject token back gets a one-line error, and nothing is cached."""
    # Given an STS that echoes the subject token as the access token
    google.configure(k8s_trusted={subject("team-a", "puller")}, mode="echo_subject")
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    # When a pod pulls
    res = plugin.run(sa_request(GAR_IMAGE, token, {GOOGLE_AUD: POOL}), env=genv)
    # Then it fails, naming the refusal, and the token is nowhere on disk
    fails(res, "refusing to echo")
    assert not list(plugin.cache_dir.glob("*.json"))


def test_annotation_audience_wins_over_the_flag(plugin, google, genv):
    google.configure(k8s_trusted={subject("team-a", "puller")})
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    res = plugin.run(sa_request(GAR_IMAGE, token, {GOOGLE_AUD: POOL}), env=genv,
                     args=("--google-audience", "//iam.googleapis.com/projects/9/locations/global/workloadIdentityPools/x/providers/y"))
    google_ok(res, token)
    assert sts_calls(google)[-1]["form"]["audience"] == POOL


def test_gke_pool_from_the_metadata_server(plugin, google, genv):
    """On GKE, iam.gke.io/enable-wi-image-pull with no audience configured:
    the audience is the cluster's workload pool, from the metadata server."""
    # Given a GKE node and a service account that opts in
    gke(google)
    google.configure(k8s_trusted={subject("team-a", "puller")})
    token = mint("team-a", "puller", audience=GKE_TOKEN_AUD)
    # When it pulls from gcr.io
    res = plugin.run(sa_request("gcr.io/my-proj/app", token, {GKE_WI: "true"}), env=genv)
    # Then the exchange names the cluster's identity namespace
    entry = ok(res, "gcr.io", token)
    assert entry["password"] in google.sts_tokens
    [call] = sts_calls(google)
    assert call["form"]["audience"] == GKE_AUDIENCE
    md = [c for c in google.calls if c["kind"] == "metadata"]
    assert {c["path"] for c in md} >= {
        "/computeMetadata/v1/project/project-id",
        "/computeMetadata/v1/instance/attributes/cluster-location",
        "/computeMetadata/v1/instance/attributes/cluster-name",
    }
    assert all(c["headers"].get("metadata-flavor") == "Google" for c in md)
    assert node_token_calls(google) == []


def test_gke_pool_without_cluster_metadata_fails(plugin, google, genv):
    # Given a node whose metadata server names no cluster
    gke(google)
    google.configure(cluster_name=None, k8s_trusted={subject("team-a", "puller")})
    token = mint("team-a", "puller", audience=GKE_TOKEN_AUD)
    # When a service account that opts in pulls
    res = plugin.run(sa_request(GAR_IMAGE, token, {GKE_WI: "true"}), env=genv, args=("--timeout", "10s"))
    # Then one line, and no exchange with a half-made audience
    fails(res)
    assert sts_calls(google) == [] and node_token_calls(google) == []


@pytest.mark.parametrize("how", ["annotation", "flag", "env"])
def test_google_impersonation(plugin, google, genv, how):
    # Given a pool admitting team-a/puller, who may impersonate EMAIL
    sa = subject("team-a", "puller")
    google.configure(k8s_trusted={sa}, impersonators={EMAIL: {sa}}, iam_expires_in=3600)
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    env, args, ann = dict(genv), ("--google-audience", POOL), {}
    if how == "annotation":
        ann = {GKE_GSA: EMAIL}
    elif how == "flag":
        args += ("--google-service-account", EMAIL)
    else:
        env["PULLCRED_GOOGLE_SERVICE_ACCOUNT"] = EMAIL
    # When the pod pulls
    res = plugin.run(sa_request(GAR_IMAGE, token, ann), env=env, args=args)
    # Then the password is the impersonated account's token, not the federated one
    entry = google_ok(res, token)
    assert entry["password"] not in google.sts_tokens
    assert [c["kind"] for c in google.calls if c["kind"] in ("sts", "iam")] == ["sts", "iam"]
    iam = [c for c in google.calls if c["kind"] == "iam"][0]
    assert iam["email"] == EMAIL and iam["subject"] == sa
    assert iam["body"]["scope"] == [CLOUD_PLATFORM]


def test_gke_impersonation_annotation_alone_opts_in(plugin, google, genv):
    """iam.gke.io/gcp-service-account on GKE, nothing else configured: the
    GKE pool from the metadata server, then impersonation."""
    gke(google)
    sa = subject("team-a", "puller")
    google.configure(k8s_trusted={sa}, impersonators={EMAIL: {sa}})
    token = mint("team-a", "puller", audience=GKE_TOKEN_AUD)
    res = plugin.run(sa_request(GAR_IMAGE, token, {GKE_GSA: EMAIL}), env=genv)
    entry = google_ok(res, token)
    assert entry["password"] not in google.sts_tokens
    assert sts_calls(google)[0]["form"]["audience"] == GKE_AUDIENCE
    assert [c for c in google.calls if c["kind"] == "iam"][0]["email"] == EMAIL


def test_google_impersonation_refused(plugin, google, genv):
    # Given a pool admitting team-a/puller, who may NOT impersonate EMAIL
    google.configure(k8s_trusted={subject("team-a", "puller")}, impersonators={EMAIL: set()})
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    # When it names EMAIL
    res = plugin.run(sa_request(GAR_IMAGE, token, {GKE_GSA: EMAIL}), env=genv, args=("--google-audience", POOL))
    # Then IAM's refusal is the one line
    line = fails(res)
    assert "403" in line or "PERMISSION_DENIED" in line, line
    assert [c for c in google.calls if c["kind"] == "iam"][0]["denied"]


def test_google_sts_refuses_an_untrusted_service_account(plugin, google, genv):
    # Given a pool admitting team-a/puller only, with A's credential cached
    google.configure(k8s_trusted={subject("team-a", "puller")})
    token_a = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    args = ("--google-audience", POOL)
    password_a = google_ok(plugin.run(sa_request(GAR_IMAGE, token_a, {}), env=genv, args=args), token_a)["password"]
    # When team-b/puller pulls
    token_b = mint("team-b", "puller", audience=POOL_TOKEN_AUD)
    res = plugin.run(sa_request(GAR_IMAGE, token_b, {}), env=genv, args=args)
    # Then STS saw B, refused it, and pullcred served nothing
    fails(res, "unauthorized_client")
    assert password_a not in res.stderr
    assert [c["subject"] for c in sts_calls(google)] == [subject("team-a", "puller"), subject("team-b", "puller")]
    assert_cache_holds_no_token(plugin, token_a, token_b)


def test_google_isolation_between_trusted_service_accounts(plugin, google, genv):
    a, b = subject("team-a", "puller"), subject("team-b", "puller")
    google.configure(k8s_trusted={a, b})
    args = ("--google-audience", POOL)
    token_a = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    first = google_ok(plugin.run(sa_request(GAR_IMAGE, token_a, {}), env=genv, args=args), token_a)["password"]
    # A again: a hit
    assert google_ok(plugin.run(sa_request(GAR_IMAGE, token_a, {}), env=genv, args=args), token_a)["password"] == first
    assert len(sts_calls(google)) == 1
    # B: its own exchange
    token_b = mint("team-b", "puller", audience=POOL_TOKEN_AUD)
    second = google_ok(plugin.run(sa_request(GAR_IMAGE, token_b, {}), env=genv, args=args), token_b)["password"]
    assert second != first
    assert [c["subject"] for c in sts_calls(google)] == [a, b]


def test_google_no_opt_in_fails_naming_the_annotation(plugin, google, genv):
    # Given a token, and nothing that opts the service account in
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    # When it pulls
    res = plugin.run(sa_request(GAR_IMAGE, token, {}), env=genv)
    # Then the line names the annotation, and neither STS nor the node token was asked
    fails(res, GKE_WI)
    assert sts_calls(google) == [] and node_token_calls(google) == []


def test_google_fallback_node(plugin, google, genv):
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    res = plugin.run(sa_request(GAR_IMAGE, token, {}), env=genv, args=("--service-account-fallback=node",))
    google_ok(res, token)
    assert sts_calls(google) == []
    assert len(node_token_calls(google)) == 1
    assert warned_about_node(res), res.stderr


def test_google_cache_duration_capped_by_the_token(plugin, google, genv):
    # Given a 20-minute token, and Google tokens of 1h (federated) and 2h (impersonated)
    sa = subject("team-a", "puller")
    google.configure(k8s_trusted={sa}, impersonators={EMAIL: {sa}}, expires_in=3600, iam_expires_in=7200)
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD, ttl=1200)
    # When it pulls with impersonation
    res = plugin.run(sa_request(GAR_IMAGE, token, {GKE_GSA: EMAIL}), env=genv, args=("--google-audience", POOL))
    # Then the token's 20 minutes bound the answer (refreshed 5m early)
    google_ok(res, token)
    cd = seconds(res.json["cacheDuration"])
    assert cd <= 1200
    assert abs(cd - expected_cache_duration(1200)) <= 90, res.json["cacheDuration"]


def test_google_trace_logging_never_prints_the_token(plugin, google, genv):
    sa = subject("team-a", "puller")
    google.configure(k8s_trusted={sa}, impersonators={EMAIL: {sa}})
    token = mint("team-a", "puller", audience=POOL_TOKEN_AUD)
    env = dict(genv, PULLCRED_LOG="trace")
    res = plugin.run(sa_request(GAR_IMAGE, token, {GKE_GSA: EMAIL}), env=env, args=("--google-audience", POOL))
    google_ok(res, token)
    assert "cache miss" in res.stderr
    for s in (token, token.split(".")[2], *google.tokens):
        assert s not in res.stderr


# ================================================================== Azure


@pytest.fixture
def azure(tls):
    _, cert, key = tls
    s = AzureStandin(cert, key, on_secret=register_secret)
    s.configure(federated_credentials={CLIENT_A: [(satoken.ISSUER, subject("team-a", "puller"), AZ_TOKEN_AUD)]})
    yield s
    s.close()


@pytest.fixture
def azenv(azure, tls):
    """Everything pointed at the stand-ins; no azure.json."""
    return standin_env(azure, tls)


def acr_ok(res, azure, *tokens):
    entry = ok(res, ACR, *tokens)
    assert entry["username"] == ACR_USER
    assert entry["password"] in azure.refresh_tokens
    return entry


def test_azure_workload_identity_from_annotations(plugin, azure, azenv):
    # Given an Entra app with a federated credential for team-a/puller
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    # When its pod pulls, the service account naming the app and tenant
    res = plugin.run(sa_request(f"{ACR}/team/app", token, {AZ_CLIENT: CLIENT_A, AZ_TENANT: TENANT_A}), env=azenv)
    # Then Entra got the token as the client assertion, and matched it
    acr_ok(res, azure, token)
    [entra] = azure.calls_to("entra")
    assert entra["federated"]
    assert entra["tenant"] == TENANT_A
    assert entra["client_id"] == CLIENT_A and entra["subject"] == subject("team-a", "puller")
    f = entra["form"]
    assert f["grant_type"] == "client_credentials"
    assert f["client_id"] == CLIENT_A
    assert f["scope"] == ACR_SCOPE
    assert f["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    # and the ACR exchange used that tenant; the node's managed identity was not asked
    [ex] = azure.calls_to("exchange")
    assert ex["access_token_known"] and ex["form"]["tenant"] == TENANT_A
    assert azure.calls_to("imds") == []
    assert seconds(res.json["cacheDuration"]) <= 3600


def test_azure_tenant_from_the_environment(plugin, azure, azenv):
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    res = plugin.run(sa_request(f"{ACR}/a", token, {AZ_CLIENT: CLIENT_A}), env=dict(azenv, AZURE_TENANT_ID=TENANT_A))
    acr_ok(res, azure, token)
    assert azure.calls_to("entra")[-1]["tenant"] == TENANT_A


def test_azure_refuses_a_service_account_without_a_federated_credential(plugin, azure, azenv):
    # Given A's credential cached for CLIENT_A
    ann = {AZ_CLIENT: CLIENT_A, AZ_TENANT: TENANT_A}
    token_a = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    password_a = acr_ok(plugin.run(sa_request(f"{ACR}/a", token_a, ann), env=azenv), azure, token_a)["password"]
    # When B names the same app, which has no federated credential for B
    token_b = mint("team-b", "puller", audience=AZ_TOKEN_AUD)
    res = plugin.run(sa_request(f"{ACR}/a", token_b, ann), env=azenv)
    # Then Entra refused B (AADSTS700213), and B got nothing
    fails(res, "AADSTS700213")
    assert password_a not in res.stderr
    assert azure.calls_to("entra")[-1]["subject"] == subject("team-b", "puller")
    assert len(azure.calls_to("exchange")) == 1
    assert_cache_holds_no_token(plugin, token_a, token_b)


def test_azure_isolation_between_federated_service_accounts(plugin, azure, azenv):
    a, b = subject("team-a", "puller"), subject("team-b", "puller")
    azure.configure(federated_credentials={CLIENT_A: [(satoken.ISSUER, a, AZ_TOKEN_AUD), (satoken.ISSUER, b, AZ_TOKEN_AUD)]})
    ann = {AZ_CLIENT: CLIENT_A, AZ_TENANT: TENANT_A}
    token_a = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    token_b = mint("team-b", "puller", audience=AZ_TOKEN_AUD)
    pa = acr_ok(plugin.run(sa_request(f"{ACR}/a", token_a, ann), env=azenv), azure, token_a)["password"]
    assert acr_ok(plugin.run(sa_request(f"{ACR}/a", token_a, ann), env=azenv), azure, token_a)["password"] == pa
    pb = acr_ok(plugin.run(sa_request(f"{ACR}/a", token_b, ann), env=azenv), azure, token_b)["password"]
    assert pa != pb
    assert [c["subject"] for c in azure.calls_to("entra")] == [a, b]


def test_azure_missing_client_annotation_fails_naming_it(plugin, azure, azenv):
    # Given a token and only the tenant annotation
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    # When it pulls
    res = plugin.run(sa_request(f"{ACR}/a", token, {AZ_TENANT: TENANT_A}), env=azenv)
    # Then the line names the client-id annotation; neither Entra nor IMDS was asked
    fails(res, AZ_CLIENT)
    assert azure.calls_to("entra") == [] and azure.calls_to("imds") == []


def test_azure_fallback_node(plugin, azure, azenv):
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    res = plugin.run(sa_request(f"{ACR}/a", token, {}), env=dict(azenv, PULLCRED_SERVICE_ACCOUNT_FALLBACK="node"))
    acr_ok(res, azure, token)
    assert azure.calls_to("entra") == []
    assert len(azure.calls_to("imds")) == 1
    assert warned_about_node(res), res.stderr


def test_azure_cache_duration_capped_by_the_token(plugin, azure, azenv):
    # Given a 30-minute token and ACR refresh tokens of 3h
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD, ttl=1800)
    res = plugin.run(sa_request(f"{ACR}/a", token, {AZ_CLIENT: CLIENT_A, AZ_TENANT: TENANT_A}), env=azenv)
    acr_ok(res, azure, token)
    cd = seconds(res.json["cacheDuration"])
    assert cd <= 1800
    assert abs(cd - expected_cache_duration(1800)) <= 90, res.json["cacheDuration"]


def test_azure_trace_logging_never_prints_the_token(plugin, azure, azenv):
    token = mint("team-a", "puller", audience=AZ_TOKEN_AUD)
    env = dict(azenv, PULLCRED_LOG="trace")
    ann = {AZ_CLIENT: CLIENT_A, AZ_TENANT: TENANT_A}
    miss = plugin.run(sa_request(f"{ACR}/a", token, ann), env=env)
    acr_ok(miss, azure, token)
    bad = mint("team-b", "puller", audience=AZ_TOKEN_AUD)
    refused = plugin.run(sa_request(f"{ACR}/a", bad, ann), env=env)
    assert refused.code == 1
    for res in (miss, refused):
        for s in (token, bad, token.split(".")[2], bad.split(".")[2], *azure.refresh_tokens, *azure.issued_access):
            assert s not in res.stderr
