"""Test 1 of issue #16: for each source, a pod's pull through the kubelet
driver, pullcred and containerd's CRI succeeds with pullcred's answer, and
the same pull with no plugin answer, or a wrong one, fails with the
registry's 401 as containerd reports it. Also per-pod identity: of two
service accounts naming the same role, only the trusted one's pull
succeeds.

The registries are real (docker-registry); they accept exactly what the
stand-ins issued: `AWS:<ECR token>`, `oauth2accesstoken:<Google token>`, a
refresh token that ACR's token endpoint exchanges, a robot's password, or
Docker Hub credentials held in Secrets Manager (moto).
"""

import json

import pytest

import satoken
from common import ACR_USER, STATIC, docker_config, env_for, kubelet_config
from driver import KubeletDriver, Pod

UNAUTHORIZED = "401 Unauthorized"
# containerd's words for a registry's 401: the status line (Basic auth, or a
# token endpoint refusing the credentials), or, when a token registry's 401
# carries distribution's insufficient_scope error, ErrDenied's message.
REFUSED = (UNAUTHORIZED, "pull access denied, repository does not exist or may require authorization")


def assert_pulled(w, pull):
    assert pull.ok, pull.error
    img = w.cri.status(pull.image)
    assert img is not None and img.id == pull.ref, f"ImageStatus does not show {pull.image}"
    assert any(pull.ref == i.id for i in w.cri.list())
    w.cri.remove(pull.image)
    assert w.cri.status(pull.image) is None


def assert_refused(w, pull):
    assert not pull.ok, f"{pull.image} was pulled without valid credentials"
    assert any(r in pull.error for r in REFUSED), pull.error
    assert w.cri.status(pull.image) is None


class Source:
    def __init__(self, name, image, user, env=None, args=None, setup=None):
        self.name, self.image, self.user = name, image, user
        self.env, self.args, self.setup = env or {}, args or [], setup


def secrets_manager(w, moto, tmp_path):
    import boto3

    sm = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="AKIAPULLCREDTEST0001", aws_secret_access_key="x")
    arn = sm.create_secret(Name=f"pullcred/e2e/{tmp_path.name}",
                           SecretString=json.dumps({"username": w.hub_user[0], "accessToken": w.hub_user[1]}))["ARN"]
    return {"AWS_ENDPOINT_URL": moto}, ["--aws-secret", f"docker.io={arn}"]


def source(name, w, tmp_path, moto=None):
    """(kubelet env, provider args, image, username pullcred must answer)."""
    if name == "ecr":
        return env_for(w), [], w.image["ecr"], "AWS"
    if name == "ecr-public":
        return env_for(w), [], w.image["ecr_public"], "AWS"
    if name == "google":
        return env_for(w), [], w.image["gar"], "oauth2accesstoken"
    if name == "acr":
        return env_for(w), [], w.image["acr"], ACR_USER
    if name == "static":
        cfg = docker_config(tmp_path / "config.json", {STATIC: w.static_user})
        return env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg)), [], w.image["static"], w.static_user[0]
    if name == "secrets-manager":
        env, args = secrets_manager(w, moto, tmp_path)
        return env_for(w, **env), args, w.image["hub"], w.hub_user[0]
    raise AssertionError(name)


SOURCES = ["ecr", "ecr-public", "google", "acr", "static", "secrets-manager"]


def driver_with_args(plugin, w, env, args):
    cfg = kubelet_config()
    if args:
        import yaml

        doc = yaml.safe_load(cfg)
        doc["providers"][0]["args"] = args
        cfg = yaml.safe_dump(doc)
    return KubeletDriver(plugin, cfg, w.cri, env=env)


@pytest.mark.parametrize("name", SOURCES)
def test_a_pull_through_containerd_works_with_pullcreds_answer_only(plugin, world, moto, tmp_path, name):
    w = world
    env, args, image, user = source(name, w, tmp_path, moto)
    node = driver_with_args(plugin, w, env, args)

    # With pullcred's answer: pulled, and containerd shows the image
    pull = node.pull(image)
    assert node.execs == 1
    assert pull.user == user, (pull.offered, pull.error, node.exec_log)
    assert_pulled(w, pull)

    # No plugin answer (pullcred fails: nothing matches its sources): the
    # kubelet pulls with no credentials, and the registry says 401
    dead = "http://127.0.0.1:9"
    broken = driver_with_args(plugin, w, env_for(
        w, AWS_ENDPOINT_URL_ECR=dead, AWS_ENDPOINT_URL_ECR_PUBLIC=dead, AWS_ENDPOINT_URL_STS=dead,
        GCE_METADATA_HOST="127.0.0.1:9", PULLCRED_AZURE_IMDS_ENDPOINT=dead, PULLCRED_NO_CACHE="1"), [])
    none = broken.pull(image)
    assert broken.execs == 1 and none.offered == []
    assert_refused(w, none)

    # A wrong answer (the right user, another password): 401 again
    wrong = node.cri.pb2.AuthConfig(username=user, password="not-" + user + "-password")
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        w.cri.pull(pull.image, wrong)
    assert any(r in err.value.details() for r in REFUSED), err.value.details()
    assert w.cri.status(pull.image) is None


def test_acr_containerd_exchanges_the_refresh_token_pullcred_returned(plugin, world):
    """containerd, given user 00000000-... and the refresh token, asks ACR's
    /oauth2/token for an access token: the stand-in sees which grant."""
    w = world
    w.acr_tokens.calls.clear()
    node = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w))
    pull = node.must_pull(w.image["acr"])
    assert pull.user == ACR_USER
    served = [c for c in w.acr_tokens.calls if c["outcome"] == 200]
    assert served, w.acr_tokens.calls
    # the token was granted on the refresh token pullcred returned
    assert all(c["user"] in (ACR_USER, None) for c in served)
    w.acr_grants_seen = [(c["method"], c["grant"], c["outcome"]) for c in w.acr_tokens.calls]
    print("ACR token endpoint calls by containerd:", w.acr_grants_seen)


def test_only_the_trusted_service_accounts_pull_succeeds(plugin, world):
    """Per-pod identity (KEP-4412): two service accounts name the same role;
    the role trusts team-a/puller only. Through the kubelet's
    service-account mode, only team-a's pod gets the image."""
    w = world
    role = "arn:aws:iam::123456789012:role/e2e-puller"
    w.sts.trust(role, satoken.subject("team-a", "puller"))
    cfg = kubelet_config(token_attributes={
        "serviceAccountTokenAudience": "sts.amazonaws.com", "cacheType": "ServiceAccount",
        "requireServiceAccount": True, "optionalServiceAccountAnnotationKeys": ["eks.amazonaws.com/ecr-role-arn"]})
    node = KubeletDriver(plugin, cfg, w.cri, env=env_for(w))
    ann = {"eks.amazonaws.com/ecr-role-arn": role}
    trusted = Pod("team-a", "puller", "uid-a", satoken.mint("team-a", "puller", uid="uid-a"), ann)
    untrusted = Pod("team-b", "puller", "uid-b", satoken.mint("team-b", "puller", uid="uid-b"), ann)

    ok = node.pull(w.image["ecr"], trusted)
    assert ok.user == "AWS", ok.error
    assert_pulled(w, ok)
    denied = node.pull(w.image["ecr"], untrusted)
    assert denied.offered == []
    assert_refused(w, denied)
    # STS, not a cache, refused team-b
    assert w.sts.calls[-1]["subject"] == satoken.subject("team-b", "puller")
    assert w.sts.calls[-1]["outcome"] == "AccessDenied"
    # the trusted pod pulls again from the kubelet's cache for its service account
    again = node.pull(w.image["ecr"], trusted)
    assert again.ok and again.execs == 0
