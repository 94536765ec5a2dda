"""EKS Pod Identity for image pulls (issue #18 item 1).

With `tokenAttributes.serviceAccountTokenAudience: pods.eks.amazonaws.com`
in the kubelet config, the pod's service-account token carries that
audience; pullcred exchanges it with the EKS Auth API
(AssumeRoleForPodIdentity, signed with the node's credentials) and signs the
ECR / ECR Public GetAuthorizationToken call with the session it returns. The
pod identity association decides the role; no annotation is needed.

Upstreams are stand-ins on 127.0.0.1: EKS Auth (standins/eks_auth.py, which
verifies the token and holds the association table), STS (for the
annotation-role fallback) and ECR (which records who signed each call).
Tokens come from satoken.py; every token and every issued secret is
registered with conftest's leak scan.

The rules checked here:
1. a Pod Identity token goes to EKS Auth; the ECR call is signed with its
   session, never with the node's keys;
2. the cluster name comes from the config file, else PULLCRED_EKS_CLUSTER_NAME,
   else nodeadm's NodeConfig; EKS Auth is called in the cluster's region;
3. `prefer: podIdentity` (default): the association first, the annotation
   role when there is none; `prefer: annotations`: an annotation wins;
4. no association and nothing else: one line naming
   `aws eks create-pod-identity-association` (or the node, with the fallback);
5. isolation: one service account's credential is never another's, and the
   Pod Identity entry is neither the node's nor an annotation role's;
6. faults: EKS Auth down, 500, throttling, slow, garbage, refusals: one line,
   within the deadline, nothing cached, ECR never called.
"""

import json
from pathlib import Path
import os
import time

import pytest

import satoken
from conftest import ACCESS_KEY, BIN, SECRET_KEY, V1, ecr_env, free_port, register_secret
from satoken import mint, sa_request, subject
from standins.eks_auth import AUDIENCE, EksAuthStandin
from standins.sts import StsStandin

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
IMAGE = f"{ECR}/team/app"
PUBLIC = "public.ecr.aws"
CLUSTER = "prod-cluster"
ROLE_PI = "arn:aws:iam::123456789012:role/pod-identity-puller"
ROLE_X = "arn:aws:iam::123456789012:role/annotated-puller"
ROLE_DEFAULT = "arn:aws:iam::123456789012:role/default-puller"
ECR_ROLE = "eks.amazonaws.com/ecr-role-arn"


# ================================================================== helpers


def pi_token(namespace="team-a", name="puller", **kw):
    """A token as the kubelet mints it with the Pod Identity audience."""
    return mint(namespace, name, audience=AUDIENCE, **kw)


def ok(res, registry, *tokens):
    assert res.code == 0, res.stderr
    body = res.json
    assert body["apiVersion"] == V1 and list(body["auth"]) == [registry]
    entry = body["auth"][registry]
    for t in tokens:
        assert t not in entry["password"]
    return entry


def fails(res, *words):
    assert res.code == 1, res.stdout
    assert res.stdout == ""
    [line] = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    for w in words:
        assert w in line, line
    return line


def seconds(d):
    import re

    m = re.match(r"^(?:(\d+)h)?(?:(\d+)m)?(\d+)s$", d)
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def cache_entries(plugin):
    return sorted(plugin.cache_dir.glob("*.json")) if plugin.cache_dir.exists() else []


def write_config(plugin, eks=None):
    """A pullcred config (0600) with `eksPodIdentity: eks`; the environment
    that points pullcred at it."""
    path = plugin.home / "pullcred.yaml"
    doc = {"apiVersion": "pullcred.dev/v1alpha1", "kind": "PullcredConfig"}
    if eks is not None:
        doc["eksPodIdentity"] = eks
    path.write_text(json.dumps(doc, indent=1))
    os.chmod(path, 0o600)
    return {"PULLCRED_CONFIG": str(path)}


def nodeadm_cache(path, cluster=CLUSTER, region="us-west-2"):
    """The NodeConfig nodeadm caches at /run/eks/nodeadm/config.json (JSON)."""
    doc = {
        "kind": "NodeConfig",
        "apiVersion": "node.eks.aws/v1alpha1",
        "metadata": {"creationTimestamp": None},
        "spec": {
            "cluster": {"name": cluster, "apiServerEndpoint": "https://example.invalid",
                        "certificateAuthority": "Y2E=", "cidr": "10.100.0.0/16"},
            "containerd": {}, "instance": {"localStorage": {}, "network": {}}, "kubelet": {},
        },
        "status": {"instance": {"id": "i-0123456789abcdef0", "region": region, "type": "m5.large"},
                   "default": {"sandboxImage": "localhost/kubernetes/pause"}, "kubeletVersion": "v1.33.0"},
    }
    path.write_text(json.dumps(doc))
    return path


# ================================================================== fixtures


@pytest.fixture
def eks():
    s = EksAuthStandin(on_secret=register_secret)
    yield s
    s.close()


@pytest.fixture
def sts():
    # the IAM OIDC provider accepts the Pod Identity audience, so that an
    # annotation role can serve a Pod Identity token (the fallback)
    s = StsStandin(on_secret=register_secret, audience=AUDIENCE)
    yield s
    s.close()


@pytest.fixture
def ecr(standin):
    return standin


@pytest.fixture
def aws(plugin, eks, sts, ecr):
    """Everything AWS at the stand-ins, and a config naming the cluster and its region."""
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, "AWS_ENDPOINT_URL_STS": sts.url, **ecr_env(ecr.url)}
    env.update(write_config(plugin, {"clusterName": CLUSTER, "region": "us-west-2"}))
    return env


def signed_by_session(ecall, eks):
    """The ECR call was signed with a session EKS Auth issued; returns it."""
    assert ecall["access_key_id"] != ACCESS_KEY
    issued = eks.issued[ecall["access_key_id"]]
    assert ecall["session_token"] == issued["session_token"]
    return issued


# ================================================================== the stand-in speaks the documented format


def test_standin_eks_auth_answers_and_refuses_in_rest_json(eks):
    """The EKS Auth stand-in's wire format, read as an SDK reads it: the
    documented path and body, SigV4 required, errors in x-amzn-ErrorType."""
    import urllib.error
    import urllib.request

    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)

    def call(token, cluster=CLUSTER, signed=True):
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20250101/us-west-2/eks-auth/aws4_request, "
                                        "SignedHeaders=host;x-amz-date, Signature=00")
        req = urllib.request.Request(f"{eks.url}/clusters/{cluster}/assume-role-for-pod-identity",
                                     data=json.dumps({"token": token}).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers.get("x-amzn-ErrorType"), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("x-amzn-ErrorType"), json.loads(e.read())

    token = pi_token()
    status, _, body = call(token)
    assert status == 200
    c = body["credentials"]
    assert c["accessKeyId"].startswith("ASIA") and c["accessKeyId"] in eks.issued
    assert isinstance(c["expiration"], int) and c["sessionToken"] and c["secretAccessKey"]
    assert body["subject"] == {"namespace": "team-a", "serviceAccount": "puller"}
    assert body["audience"] == AUDIENCE
    assert body["assumedRoleUser"]["arn"].startswith("arn:aws:sts::123456789012:assumed-role/pod-identity-puller/")
    assert set(body["podIdentityAssociation"]) == {"associationArn", "associationId"}
    for args, want in [
        ((token,), None),
        ((pi_token("team-b"),), (404, "ResourceNotFoundException")),
        ((token, "other-cluster"), (404, "ResourceNotFoundException")),
        ((mint("team-a", "puller"),), (400, "InvalidTokenException")),  # sts.amazonaws.com audience
        ((pi_token(key=satoken.ROGUE),), (400, "InvalidTokenException")),
        ((pi_token(ttl=-5),), (400, "ExpiredTokenException")),
        ((token, CLUSTER, False), (401, "AccessDeniedException")),
    ]:
        if want is None:
            continue
        status, code, body = call(*args)
        assert (status, code) == want, args
        assert "message" in body


# ================================================================== the happy paths


def test_pod_identity_signs_the_ecr_call(plugin, eks, sts, ecr, aws):
    """The whole path: EKS Auth gets the token in a request the NODE signed
    (service eks-auth, the cluster's region), and ECR is called with the
    association's session, never with the node's keys."""
    # Given an association for team-a/puller
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    token = pi_token()
    # When its pod pulls, with no annotation at all
    res = plugin.run(sa_request(IMAGE, token, {}), env=aws)
    # Then the answer is the ECR token
    entry = ok(res, ECR, token)
    assert entry["username"] == "AWS" and entry["password"] in ecr.tokens
    # and EKS Auth saw one documented call, signed by the node, for the cluster
    [call] = eks.calls
    assert call["outcome"] == "ok"
    assert call["path"] == f"/clusters/{CLUSTER}/assume-role-for-pod-identity"
    assert call["content_type"].startswith("application/json")
    assert call["signed"] and call["access_key_id"] == ACCESS_KEY and call["session_token"] is None
    assert (call["service"], call["region"]) == ("eks-auth", "us-west-2")
    assert (call["namespace"], call["service_account"]) == ("team-a", "puller")
    # and ECR was signed with the session EKS Auth issued for the association's role
    [ecall] = ecr.calls
    issued = signed_by_session(ecall, eks)
    assert issued["role"] == ROLE_PI
    assert (ecall["service"], ecall["region"]) == ("ecr", "us-west-2")
    # and STS was never asked; nothing on stderr
    assert sts.call_count() == 0
    assert res.stderr == ""
    # and the answer lives no longer than the token (1h, refreshed 15m early)
    assert 0 < seconds(res.json["cacheDuration"]) <= 45 * 60


def test_ecr_public_with_pod_identity(plugin, eks, sts, ecr, aws):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    token = pi_token()
    res = plugin.run(sa_request(f"{PUBLIC}/team/app", token, {}), env=aws)
    ok(res, PUBLIC, token)
    [call] = eks.calls
    assert call["region"] == "us-west-2", "EKS Auth is asked in the cluster's region"
    [ecall] = ecr.calls
    assert ecall["target"].startswith("SpencerFrontendService") and ecall["region"] == "us-east-1"
    signed_by_session(ecall, eks)


def test_expiry_is_the_sooner_of_the_ecr_token_and_the_session(plugin, eks, ecr, aws):
    # Given a session that ends in 20 minutes and a token for an hour
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    eks.configure(session_life=1200)
    token = pi_token(ttl=3600)
    res = plugin.run(sa_request(IMAGE, token, {}), env=aws)
    # Then cacheDuration follows the session (20m life: refreshed 5m early)
    ok(res, ECR, token)
    assert abs(seconds(res.json["cacheDuration"]) - 15 * 60) <= 60, res.json["cacheDuration"]


# ================================================================== the cluster and its region


def test_cluster_name_from_the_environment(plugin, eks, ecr):
    eks.associate("env-cluster", "team-a", "puller", ROLE_PI)
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url),
           "PULLCRED_EKS_CLUSTER_NAME": "env-cluster", "AWS_REGION": "eu-central-1"}
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=env)
    ok(res, ECR)
    [call] = eks.calls
    assert call["cluster"] == "env-cluster"
    # no config and no NodeConfig: the SDK's region chain (AWS_REGION), not the registry's
    assert call["region"] == "eu-central-1"


def test_the_config_wins_over_the_environment(plugin, eks, ecr):
    eks.associate("cfg-cluster", "team-a", "puller", ROLE_PI)
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url), "PULLCRED_EKS_CLUSTER_NAME": "env-cluster"}
    env.update(write_config(plugin, {"clusterName": "cfg-cluster", "region": "us-west-2"}))
    ok(plugin.run(sa_request(IMAGE, pi_token(), {}), env=env), ECR)
    assert [c["cluster"] for c in eks.calls] == ["cfg-cluster"]


def test_cluster_and_region_from_nodeadms_config(plugin, eks, ecr, tmp_path):
    """On AL2023, nodeadm caches the NodeConfig at /run/eks/nodeadm/config.json:
    spec.cluster.name, and status.instance.region (the cluster's region, here
    not the registry's)."""
    cfg = nodeadm_cache(tmp_path / "config.json", cluster="from-nodeadm", region="eu-west-1")
    eks.associate("from-nodeadm", "team-a", "puller", ROLE_PI)
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url)}
    env.update(write_config(plugin, {"nodeadmConfig": str(cfg)}))
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=env)
    ok(res, ECR)
    [call] = eks.calls
    assert (call["cluster"], call["region"]) == ("from-nodeadm", "eu-west-1")
    assert ecr.calls[-1]["region"] == "us-west-2", "ECR itself is still called in the registry's region"


def test_a_yaml_nodeconfig_works_too(plugin, eks, ecr, tmp_path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: yaml-cluster\n")
    eks.associate("yaml-cluster", "team-a", "puller", ROLE_PI)
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url), "AWS_REGION": "us-west-2"}
    env.update(write_config(plugin, {"nodeadmConfig": str(cfg)}))
    ok(plugin.run(sa_request(IMAGE, pi_token(), {}), env=env), ECR)
    assert eks.calls[-1]["cluster"] == "yaml-cluster"


@pytest.mark.parametrize("nodeadm", ["absent", "no-name", "garbage"])
def test_no_cluster_name_is_one_line_saying_where_to_set_it(plugin, eks, ecr, tmp_path, nodeadm):
    path = tmp_path / "config.json"
    if nodeadm == "no-name":
        path.write_text('{"kind": "NodeConfig", "spec": {}}')
    elif nodeadm == "garbage":
        path.write_text("\x00\x01 not yaml: [")
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url), "AWS_REGION": "us-west-2"}
    env.update(write_config(plugin, {"nodeadmConfig": str(path)}))
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=env)
    fails(res, "eksPodIdentity.clusterName", "PULLCRED_EKS_CLUSTER_NAME")
    assert eks.call_count() == 0 and ecr.call_count() == 0


def test_no_region_anywhere_is_one_line(plugin, eks, ecr):
    env = {"AWS_ENDPOINT_URL_EKS_AUTH": eks.url, **ecr_env(ecr.url), "PULLCRED_EKS_CLUSTER_NAME": CLUSTER}
    env.update(write_config(plugin, {"nodeadmConfig": str(plugin.home / "absent.json")}))
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=env)
    fails(res, "eksPodIdentity.region")
    assert eks.call_count() == 0 and ecr.call_count() == 0


def test_a_bad_config_is_refused_by_config_validate(plugin):
    env = write_config(plugin, {"clusterName": "not a name", "prefer": "podIdentity"})
    import subprocess

    p = subprocess.run([str(BIN), "config", "validate", env["PULLCRED_CONFIG"]],
                       capture_output=True, text=True, env=plugin.env, timeout=30)
    assert p.returncode != 0
    assert "eksPodIdentity.clusterName" in p.stdout + p.stderr


# ================================================================== which identity wins


def test_by_default_the_association_wins_over_an_annotation(plugin, eks, sts, ecr, aws):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    sts.trust(ROLE_X, subject("team-a", "puller"))
    res = plugin.run(sa_request(IMAGE, pi_token(), {ECR_ROLE: ROLE_X}), env=aws)
    ok(res, ECR)
    assert eks.call_count() == 1 and sts.call_count() == 0
    assert signed_by_session(ecr.calls[-1], eks)["role"] == ROLE_PI


def test_without_an_association_the_annotation_role_serves(plugin, eks, sts, ecr, aws):
    """prefer podIdentity, no association: EKS Auth says ResourceNotFound,
    then the annotation's role is assumed with the same token."""
    sts.trust(ROLE_X, subject("team-a", "puller"))
    token = pi_token()
    res = plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=aws)
    ok(res, ECR, token)
    assert [c["outcome"] for c in eks.calls] == ["ResourceNotFoundException"]
    [scall] = sts.calls
    assert scall["role"] == ROLE_X and scall["outcome"] == "ok"
    assert ecr.calls[-1]["access_key_id"] == scall["access_key_id"]


def test_without_an_association_the_default_role_serves(plugin, eks, sts, ecr, aws):
    sts.trust(ROLE_DEFAULT, subject("team-a", "puller"))
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws, args=("--ecr-role-arn", ROLE_DEFAULT))
    ok(res, ECR)
    assert eks.call_count() == 1
    assert [c["role"] for c in sts.calls] == [ROLE_DEFAULT]


def test_prefer_annotations_an_annotation_wins(plugin, eks, sts, ecr, aws):
    aws = {**aws, **write_config(plugin, {"clusterName": CLUSTER, "region": "us-west-2", "prefer": "annotations"})}
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    sts.trust(ROLE_X, subject("team-a", "puller"))
    ok(plugin.run(sa_request(IMAGE, pi_token(), {ECR_ROLE: ROLE_X}), env=aws), ECR)
    assert eks.call_count() == 0 and [c["role"] for c in sts.calls] == [ROLE_X]


def test_prefer_annotations_the_association_serves_the_rest(plugin, eks, sts, ecr, aws):
    aws = {**aws, **write_config(plugin, {"clusterName": CLUSTER, "region": "us-west-2", "prefer": "annotations"})}
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    # the default role is not "an annotation": the association wins over it
    ok(plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws, args=("--ecr-role-arn", ROLE_DEFAULT)), ECR)
    assert eks.call_count() == 1 and sts.call_count() == 0


def test_no_association_and_nothing_else_names_the_fix(plugin, eks, sts, ecr, aws):
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws)
    line = fails(res, "aws eks create-pod-identity-association", "ResourceNotFoundException", "team-a/puller")
    assert f"--cluster-name {CLUSTER}" in line and "--namespace team-a --service-account puller" in line
    assert ecr.call_count() == 0 and sts.call_count() == 0
    assert not cache_entries(plugin)


def test_no_association_with_the_node_fallback_uses_the_node(plugin, eks, sts, ecr, aws):
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws, args=("--service-account-fallback=node",))
    ok(res, ECR)
    [ecall] = ecr.calls
    assert ecall["access_key_id"] == ACCESS_KEY and ecall["session_token"] is None
    assert any("WARN" in l and "node" in l for l in res.stderr.splitlines()), res.stderr


def test_a_policy_deny_wins_over_the_global_node_fallback(plugin, eks, sts, ecr, aws):
    """The policy's `fallback: deny` for the namespace decides, not the global
    --service-account-fallback=node: no association, so the pull fails and
    the node's credentials are never used."""
    path = Path(aws["PULLCRED_CONFIG"])
    doc = json.loads(path.read_text())
    doc["policy"] = [{"namespaces": ["team-a"], "fallback": "deny"}]
    path.write_text(json.dumps(doc))
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws, args=("--service-account-fallback=node",))
    fails(res, "aws eks create-pod-identity-association", "team-a/puller")
    assert ecr.call_count() == 0


def test_a_token_without_the_pod_identity_audience_keeps_the_role_rules(plugin, eks, sts, ecr, aws):
    # Given a plain IRSA-style token (sts.amazonaws.com) of an account with an association
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    plain = StsStandin(on_secret=register_secret)  # audience sts.amazonaws.com
    try:
        plain.trust(ROLE_X, subject("team-a", "puller"))
        env = {**aws, "AWS_ENDPOINT_URL_STS": plain.url}
        token = mint("team-a", "puller")
        # When it names a role, the role is assumed; EKS Auth is never asked
        ok(plugin.run(sa_request(IMAGE, token, {ECR_ROLE: ROLE_X}), env=env), ECR)
        assert eks.call_count() == 0 and plain.call_count() == 1
        # and naming nothing is today's error, naming the annotation
        fails(plugin.run(sa_request(IMAGE, mint("team-a", "other"), {}), env=env), ECR_ROLE)
        assert eks.call_count() == 0
    finally:
        plain.close()


# ================================================================== isolation


def test_isolation_between_service_accounts(plugin, eks, sts, ecr, aws):
    """A has an association, B has none. A's entry is never B's: B makes its
    own exchange and EKS Auth refuses it; A's other pods hit the cache."""
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    uid_a = "7f1c1c3e-0a5b-4a4e-9a53-5c1f3f0f0a01"
    token_a = pi_token(uid=uid_a)
    password_a = ok(plugin.run(sa_request(IMAGE, token_a, {}), env=aws), ECR)["password"]
    # another pod of A: a hit
    token_a2 = pi_token(uid=uid_a, pod="app-zzzz")
    assert ok(plugin.run(sa_request(f"{ECR}/other/repo", token_a2, {}), env=aws), ECR)["password"] == password_a
    assert eks.call_count() == 1 and ecr.call_count() == 1
    # B, same namespace, other name: its own call, refused
    token_b = pi_token("team-a", "intruder")
    denied = plugin.run(sa_request(IMAGE, token_b, {}), env=aws)
    fails(denied, "create-pod-identity-association")
    assert password_a not in denied.stderr
    assert eks.calls[-1]["service_account"] == "intruder" and eks.calls[-1]["outcome"] == "ResourceNotFoundException"
    # A re-created (new UID): a new exchange
    token_a3 = pi_token(uid="7f1c1c3e-0a5b-4a4e-9a53-5c1f3f0f0a02")
    assert ok(plugin.run(sa_request(IMAGE, token_a3, {}), env=aws), ECR)["password"] != password_a
    assert eks.call_count() == 3
    for f in cache_entries(plugin):
        data = f.read_bytes()
        for t in (token_a, token_a2, token_b, token_a3):
            assert t.encode() not in data and t.split(".")[2].encode() not in data


def test_concurrent_pulls_of_two_service_accounts_stay_apart(plugin, eks, ecr, aws):
    """Six pods of A (associated) and six of B (not), at once, EKS Auth slow:
    A's pods share one exchange; every B pod is refused; none gets A's."""
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    eks.configure(delay=0.5)
    tokens = {"team-a": pi_token("team-a", uid="00000000-0000-4000-8000-00000000000a"),
              "team-b": pi_token("team-b", uid="00000000-0000-4000-8000-00000000000b")}
    started = time.monotonic()
    procs = [(ns, plugin.start(sa_request(IMAGE, tokens[ns], {}), env=aws)) for _ in range(6) for ns in tokens]
    results = [(ns, plugin.finish(p, d, started)) for ns, (p, d) in procs]
    a = [r for ns, r in results if ns == "team-a"]
    assert len({ok(r, ECR)["password"] for r in a}) == 1
    assert [c["namespace"] for c in eks.calls].count("team-a") == 1
    for ns, r in results:
        if ns == "team-b":
            fails(r, "create-pod-identity-association")
    assert ecr.call_count() == 1
    assert len(cache_entries(plugin)) == 1


def test_pod_identity_node_and_annotation_entries_are_apart(plugin, eks, sts, ecr, aws):
    """The same registry through three identities: the node's, an annotation
    role's (a plain token) and the association's are three entries."""
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    plain = StsStandin(on_secret=register_secret)
    try:
        plain.trust(ROLE_X, subject("team-a", "puller"))
        env = {**aws, "AWS_ENDPOINT_URL_STS": plain.url}
        uid = "00000000-0000-4000-8000-0000000000cc"
        node = ok(plugin.run({"apiVersion": V1, "kind": "CredentialProviderRequest", "image": IMAGE}, env=env), ECR)
        role = ok(plugin.run(sa_request(IMAGE, mint("team-a", "puller", uid=uid), {ECR_ROLE: ROLE_X}), env=env), ECR)
        pod = ok(plugin.run(sa_request(IMAGE, pi_token(uid=uid), {ECR_ROLE: ROLE_X}), env=env), ECR)
        assert len({node["password"], role["password"], pod["password"]}) == 3
        assert ecr.call_count() == 3 and eks.call_count() == 1 and plain.call_count() == 1
        assert len(cache_entries(plugin)) == 3
    finally:
        plain.close()


def test_an_answer_for_another_service_account_is_not_used(plugin, eks, ecr, aws):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    eks.configure(mode="other_subject")
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=aws)
    fails(res, "not for the token's")
    assert ecr.call_count() == 0


# ================================================================== secrets


def test_trace_logging_never_prints_a_token_or_a_key(plugin, eks, ecr, aws):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    env = {**aws, "PULLCRED_LOG": "trace"}
    token = pi_token()
    miss = plugin.run(sa_request(IMAGE, token, {}), env=env)
    ok(miss, ECR, token)
    assert "cache miss" in miss.stderr
    hit = plugin.run(sa_request(IMAGE, token, {}), env=env)
    assert "cache hit" in hit.stderr
    refused = plugin.run(sa_request(IMAGE, pi_token("team-z"), {}), env=env)
    assert refused.code == 1
    secrets_ = [token, SECRET_KEY, *ecr.tokens]
    for i in eks.issued.values():
        secrets_ += [i["secret"], i["session_token"]]
    for res in (miss, hit, refused):
        for s in secrets_:
            assert s not in res.stderr
        assert token.split(".")[2] not in res.stderr


# ================================================================== faults


@pytest.mark.parametrize("fault", ["down", "error500", "throttle", "hang", "garbage"])
def test_an_eks_auth_outage_is_one_line_within_the_deadline(plugin, eks, ecr, aws, fault):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    env = dict(aws)
    if fault == "down":
        env["AWS_ENDPOINT_URL_EKS_AUTH"] = f"http://127.0.0.1:{free_port()}"
    else:
        eks.configure(mode=fault)
    res = plugin.run(sa_request(IMAGE, pi_token(), {}), env=env, args=("--timeout", "3s"))
    line = fails(res, "AssumeRoleForPodIdentity")
    assert res.elapsed < 10, res.elapsed
    assert ecr.call_count() == 0
    assert not cache_entries(plugin)
    if fault in ("error500", "throttle"):
        assert eks.call_count() > 1, "a transient EKS Auth failure is retried"
    if fault == "throttle":
        assert "ThrottlingException" in line
    if fault == "hang":
        assert "timed out" in line


@pytest.mark.parametrize("setup,code", [
    ("denied", "AccessDeniedException"),
    ("forged", "InvalidTokenException"),
])
def test_eks_auth_refusals_are_one_line(plugin, eks, ecr, aws, setup, code):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    token = pi_token()
    if setup == "denied":
        eks.configure(mode="denied")
    else:
        token = pi_token(key=satoken.ROGUE)
    res = plugin.run(sa_request(IMAGE, token, {}), env=aws, args=("--service-account-fallback=node",))
    line = fails(res, code, "AssumeRoleForPodIdentity")
    if setup == "denied":
        assert "eks-auth:AssumeRoleForPodIdentity" in line
    assert ecr.call_count() == 0, "a refusal is not rescued by the node fallback"
    assert eks.call_count() == 1, "a refusal is not retried"


def past_refresh_point(plugin):
    for f in cache_entries(plugin):
        data = json.loads(f.read_text())
        now = int(time.time())
        data["fetchedAt"], data["expiresAt"] = now - 3000, now + 600
        tmp = f.with_suffix(".test-tmp")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        os.replace(tmp, f)


def test_an_outage_serves_the_valid_entry_and_a_refusal_does_not(plugin, eks, ecr, aws):
    eks.associate(CLUSTER, "team-a", "puller", ROLE_PI)
    uid = "5b0c6c1e-3a0f-4b43-8d6e-0000000000c3"
    first = ok(plugin.run(sa_request(IMAGE, pi_token(uid=uid), {}), env=aws), ECR)
    # an outage: the still-valid entry is served
    past_refresh_point(plugin)
    eks.configure(mode="error500")
    res = plugin.run(sa_request(IMAGE, pi_token(uid=uid), {}), env=aws)
    assert ok(res, ECR)["password"] == first["password"]
    assert "serving the cached token" in res.stderr
    # a refusal (the association deleted): not served from the cache
    past_refresh_point(plugin)
    eks.configure(mode="ok")
    with eks.lock:
        eks.associations.clear()
    res = plugin.run(sa_request(IMAGE, pi_token(uid=uid), {}), env=aws)
    fails(res, "create-pod-identity-association")
    assert "not serving its cached credential" in res.stderr


# ================================================================== doctor


def test_doctor_says_the_pod_identity_path_is_used(plugin, eks, ecr, aws, tmp_path):
    import subprocess

    f = tmp_path / "token"
    token = pi_token()
    f.write_text(token + "\n")
    p = subprocess.run([str(BIN), "doctor", f"{IMAGE}:1", "--json", "--service-account-token", str(f)],
                       capture_output=True, text=True, env={**plugin.env, **aws}, timeout=60)
    report = json.loads(p.stdout)
    [source] = [s for s in report["steps"] if s["step"] == "source"]
    assert source["status"] == "ok", source
    text = json.dumps(source)
    assert "EKS Pod Identity" in text and CLUSTER in text and "team-a/puller" in text
    assert token not in p.stdout + p.stderr
