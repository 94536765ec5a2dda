"""The keyless sources of issue #18, each proven by a real pull: the kubelet
driver (service-account mode: the pod's token for the provider's audience,
the cache per service account) -> pullcred with a config file -> containerd's
CRI PullImage -> the real registry `registry.example.com` (docker-registry
with an htpasswd file, TLS at :443 under its name).

The registry alone decides: every credential below is a robot account (or
an issued token) that is ALSO a user in the registry's htpasswd file, so a
pull succeeds only when pullcred answered with exactly what the registry
accepts, and a refused pod's pull (pullcred failed: no credentials) gets the
registry's 401 as containerd reports it.

1. `namespaceCredentials`: team-a's docker config reaches team-a's pods
   only; team-b's pod is refused by pullcred (the entry does not select its
   namespace), and its anonymous pull by the registry.
2. `vault:` (tests/standins/vault.py over https with the test CA): the
   robot's password lives in KV v2 at `registry/{namespace}`; a pod of the
   bound service account logs in with its token and pulls; another service
   account of the same namespace (same secret path) is refused by Vault's
   kubernetes auth (the binding).
3. `exchanges:` (RFC 8693; tests/standins/exchange.py over https): the
   stand-in's issued token is, at the moment it is minted, set as the
   htpasswd password of `oauth2accesstoken` (the username pullcred answers
   with), the way the ECR stand-in's tokens are (tests/e2e/conftest.py).
   The harness's Bearer registries accept only the JWTs their own token
   services sign from Basic credentials, so an exchanged token reaching an
   htpasswd registry as a password is the honest equivalent of a registry
   that takes the exchanged token: the registry still checks it, byte for
   byte. A service account the issuer does not trust is refused by the
   issuer.
4. EKS Pod Identity (`eksPodIdentity:`; tests/standins/eks_auth.py): as
   test_sources.py covers ECR, the registry is the session's ECR registry,
   which accepts `AWS:<token>` for each token the ECR stand-in issued; the
   ECR call is signed with the session EKS Auth issued for the association,
   never with the node's keys. A service account without an association is
   refused, naming `aws eks create-pod-identity-association`.
"""

import json
import os

import grpc
import pytest

from common import STATIC, docker_config, env_for, kubelet_config
from conftest import register_secret
from driver import KubeletDriver, Pod
from standins.base import tls_server_context
from standins.eks_auth import AUDIENCE as EKS_AUDIENCE
from standins.eks_auth import EksAuthStandin
from standins.exchange import SUBJECT_AUDIENCE, ExchangeStandin
from standins.vault import VaultStandin
from test_sources import REFUSED, assert_pulled, assert_refused

VAULT_ROLE_ANNOTATION = "pullcred.dev/vault-role"


def token_attributes(audience, optional=()):
    """The kubelet config's tokenAttributes for a per-pod source."""
    ta = {"serviceAccountTokenAudience": audience, "cacheType": "ServiceAccount", "requireServiceAccount": True}
    if optional:
        ta["optionalServiceAccountAnnotationKeys"] = list(optional)
    return ta


def pullcred_config(path, **sections):
    """A pullcred config file (0600, as pullcred requires)."""
    doc = {"apiVersion": "pullcred.dev/v1alpha1", "kind": "PullcredConfig", **sections}
    path.write_text(json.dumps(doc, indent=1))
    os.chmod(path, 0o600)
    return path


def robot(w, name):
    """A new robot account of the registry (htpasswd), its password secret."""
    user = (name, f"{name}-" + os.urandom(12).hex())
    register_secret(user[1])
    w.static_registry.allow(*user)
    return user


def node_for(plugin, w, cfg, audience, optional=(), **env):
    return KubeletDriver(plugin, kubelet_config(token_attributes=token_attributes(audience, optional)), w.cri,
                         env=env_for(w, PULLCRED_CONFIG=str(cfg), **env))


def refused_by_pullcred(node, pull, *words):
    """pullcred ran, failed with one line naming `words`; the kubelet then
    pulled with no credentials and the registry refused that."""
    assert pull.execs == 1 and pull.offered == [], (pull.offered, node.exec_log)
    _, code, stderr = node.exec_log[-1]
    assert code != 0, stderr
    for word in words:
        assert word in stderr, stderr


def assert_registry_checks(w, image, user):
    """The registry checks the password: the right user with another one is
    refused (so a pull that worked was the registry accepting pullcred's)."""
    with pytest.raises(grpc.RpcError) as err:
        w.cri.pull(image, w.cri.pb2.AuthConfig(username=user, password="not-the-" + user + "-password"))
    assert any(r in err.value.details() for r in REFUSED), err.value.details()
    assert w.cri.status(image) is None


@pytest.fixture
def pki_tls(world):
    return tls_server_context(world.pki.cert, world.pki.key)


# ------------------------------------------------------------------ namespaceCredentials


def test_namespace_credentials_reach_only_their_namespaces_pods(plugin, world, tmp_path):
    """team-a's docker config holds the registry's team-a robot; only team-a's
    pod pulls with it."""
    w = world
    image = w.image["static"]
    team_a_robot = robot(w, "team-a-robot")
    team_a = docker_config(tmp_path / "team-a.json", {STATIC: team_a_robot})
    cfg = pullcred_config(tmp_path / "pullcred.json",
                          namespaceCredentials=[{"namespaces": ["team-a"], "dockerConfig": str(team_a)}])
    node = node_for(plugin, w, cfg, "pullcred")

    # team-a's pod: pullcred answers with team-a's robot, the registry accepts it
    ok = node.pull(image, Pod("team-a", "app", "uid-team-a"))
    assert ok.user == team_a_robot[0], (ok.offered, ok.error, node.exec_log)
    assert_pulled(w, ok)

    # team-b's pod: pullcred refuses (no entry selects team-b), the registry 401s
    denied = node.pull(image, Pod("team-b", "app", "uid-team-b"))
    refused_by_pullcred(node, denied, "team-b", "namespaceCredentials[0]")
    assert_refused(w, denied)

    assert_registry_checks(w, image, team_a_robot[0])


# ------------------------------------------------------------------ Vault


@pytest.fixture
def vault(pki_tls):
    s = VaultStandin(on_token=register_secret, tls_context=pki_tls)
    yield s
    s.close()


def test_vault_serves_the_bound_service_account_only(plugin, world, vault, tmp_path):
    """The registry robot's password is in Vault (KV v2); the role `team`
    binds service account `app` of team-a (audience `vault`)."""
    w = world
    image = w.image["static"]
    user, password = robot(w, "vault-robot")
    vault.kube_role("team", names=["app"], namespaces=["team-a"], audience="vault", policies=["pull"])
    vault.policy("pull", "secret/data/registry/*")
    vault.put("registry/team-a", {"username": user, "password": password})
    cfg = pullcred_config(tmp_path / "pullcred.json", vault=[{
        "name": "corp",
        "registries": [STATIC],
        "address": vault.url,
        "pod": {"roles": [{"namespaces": ["team-*"], "role": "team"}]},
        "secret": {"path": "registry/{namespace}"},
    }])
    node = node_for(plugin, w, cfg, "vault", optional=[VAULT_ROLE_ANNOTATION])
    bound = Pod("team-a", "app", "uid-vault-app")

    ok = node.pull(image, bound)
    assert ok.user == user, (ok.offered, ok.error, node.exec_log)
    assert_pulled(w, ok)
    assert vault.logins[-1][1:] == ("team", "team-a/app"), vault.logins

    # same namespace, same secret path, but not a bound service account:
    # Vault's kubernetes auth refuses the login, the registry the anonymous pull
    denied = node.pull(image, Pod("team-a", "intruder", "uid-vault-intruder"))
    refused_by_pullcred(node, denied, 'vault "corp"', "service account name not authorized")
    assert_refused(w, denied)
    assert vault.refusals and vault.refusals[-1][2] == "team-a/intruder", vault.refusals

    # the bound pod pulls again from the kubelet's cache for its service account
    again = node.pull(image, bound)
    assert again.execs == 0 and again.user == user, (again.offered, again.error)
    assert_pulled(w, again)
    assert_registry_checks(w, image, user)


# ------------------------------------------------------------------ token exchange


@pytest.fixture
def exchange(world, pki_tls):
    def issued(token):
        # the registry accepts what the issuer issues, from the moment it does
        register_secret(token)
        world.static_registry.allow("oauth2accesstoken", token)

    s = ExchangeStandin(on_token=issued, tls_context=pki_tls)
    s.configure(trust=["system:serviceaccount:team-a:*"])
    yield s
    s.close()


def test_exchanged_token_is_what_the_registry_accepts(plugin, world, exchange, tmp_path):
    """team-a's token is exchanged (RFC 8693) for a registry token; team-b's
    is refused by the issuer's trust rule."""
    w = world
    image = w.image["static"]
    cfg = pullcred_config(tmp_path / "pullcred.json", exchanges=[{
        "name": "sts",
        "registries": [STATIC],
        "tokenUrl": f"{exchange.url}/token",
        "subjectToken": "pod",
        "audience": STATIC,
        "scope": "pull",
    }])
    node = node_for(plugin, w, cfg, SUBJECT_AUDIENCE)

    ok = node.pull(image, Pod("team-a", "builder", "uid-x-builder"))
    assert ok.user == "oauth2accesstoken", (ok.offered, ok.error, node.exec_log)
    assert_pulled(w, ok)
    [call] = exchange.calls
    assert call["subject"] == "system:serviceaccount:team-a:builder"
    assert call["fields"]["audience"] == STATIC
    assert list(exchange.issued.values()) == ["system:serviceaccount:team-a:builder"]

    denied = node.pull(image, Pod("team-b", "builder", "uid-x-b-builder"))
    refused_by_pullcred(node, denied, "token exchange sts", "no trust rule")
    assert_refused(w, denied)
    assert len(exchange.issued) == 1, "the issuer issued nothing for team-b"

    assert_registry_checks(w, image, "oauth2accesstoken")


# ------------------------------------------------------------------ EKS Pod Identity


@pytest.fixture
def eks_auth():
    s = EksAuthStandin(on_secret=register_secret)
    yield s
    s.close()


def test_eks_pod_identity_serves_the_associated_service_account_only(plugin, world, eks_auth, tmp_path):
    """Of two service accounts, only team-a/puller has a pod identity
    association; only its pod gets the ECR image, with no annotation."""
    w = world
    cluster, role = "e2e-cluster", "arn:aws:iam::123456789012:role/e2e-pod-identity"
    eks_auth.associate(cluster, "team-a", "puller", role)
    cfg = pullcred_config(tmp_path / "pullcred.json", eksPodIdentity={"clusterName": cluster, "region": "us-west-2"})
    node = node_for(plugin, w, cfg, EKS_AUDIENCE, AWS_ENDPOINT_URL_EKS_AUTH=eks_auth.url)
    ecr_calls, sts_calls = len(w.ecr.calls), len(w.sts.calls)
    image = w.image["ecr"]
    trusted = Pod("team-a", "puller", "uid-pi-a")

    ok = node.pull(image, trusted)
    assert ok.user == "AWS", (ok.offered, ok.error, node.exec_log)
    assert_pulled(w, ok)
    [call] = eks_auth.calls
    assert (call["cluster"], call["namespace"], call["service_account"], call["outcome"]) == (
        cluster, "team-a", "puller", "ok")
    # ECR was signed with the association's session, not the node's keys
    [ecall] = w.ecr.calls[ecr_calls:]
    issued = eks_auth.issued[ecall["access_key_id"]]
    assert issued["role"] == role and ecall["session_token"] == issued["session_token"]

    denied = node.pull(image, Pod("team-b", "puller", "uid-pi-b"))
    refused_by_pullcred(node, denied, "aws eks create-pod-identity-association", "--namespace team-b")
    assert_refused(w, denied)
    assert eks_auth.calls[-1]["outcome"] == "ResourceNotFoundException"
    assert len(w.ecr.calls) == ecr_calls + 1 and len(w.sts.calls) == sts_calls

    # the trusted pod pulls again from the kubelet's cache for its service account
    again = node.pull(image, trusted)
    assert again.execs == 0 and again.user == "AWS", (again.offered, again.error)
    assert_pulled(w, again)
