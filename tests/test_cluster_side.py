"""The cluster side of KEP-4412 service-account-token pulls.

`pullcred config generate --token-audience AUD --rbac-out FILE` writes the
RBAC that lets the kubelets (group system:nodes) request tokens for AUD, the
rule ServiceAccountNodeAudienceRestriction checks (verb
request-serviceaccounts-token-audience, group "", resource the audience,
name the service account; kubernetes/website
content/en/docs/reference/access-authn-authz/node.md). `pullcred doctor
--kubeconfig` asks the API server (standins/kube_apiserver.py) whether the
node may, and reads the pod's service account for the annotations the
kubelet requires. The round trip: the generated RBAC, applied to the
stand-in's RBAC table, makes the review say allowed.
"""

import base64
import json
import subprocess

import pytest

from conftest import BIN, assert_no_secret, register_secret
from satoken import mint
from standins.kube_apiserver import Pki, kube_apiserver

AUDIENCE = "vault.example.com"
IMAGE = "registry.example.com/team/app:1.0"
NODE = "system:node:node-1"


@pytest.fixture
def cluster(tmp_path):
    pki = Pki(tmp_path)
    token = "kubeconfig-bearer-" + base64.b32encode(b"not a real token").decode().lower()
    register_secret(token)
    server = kube_apiserver(pki, tokens={token: (NODE, ["system:nodes"])})
    server.bearer = token
    server.pki = pki
    yield server
    server.close()


def kubelet_config(tmp_path, *extra):
    """A kubelet config for the image's registry through Vault with tokenAttributes."""
    path = tmp_path / "kubelet-credential-provider.yaml"
    p = subprocess.run(
        [str(BIN), "config", "generate", "--cloud", "vault", "--registry", "registry.example.com",
         "--token-audience", AUDIENCE, "-o", str(path), *extra],
        capture_output=True, text=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    return path


def kubeconfig(tmp_path, server, inline=False, cert=None, token=None, name="kubelet.conf"):
    """The kubelet's kubeconfig: CA, server, and a client certificate (files,
    as kubeadm writes kubelet.conf, or inline *-data) or a bearer token."""
    pki = server.pki
    if cert is None and token is None:
        cert = pki.client(NODE, ["system:nodes"], stem="kubelet-client")
    cluster = {"server": server.url}
    user = {}
    if inline:
        cluster["certificate-authority-data"] = base64.b64encode(pki.ca_path.read_bytes()).decode()
        if cert:
            user["client-certificate-data"] = base64.b64encode(cert[0].read_bytes()).decode()
            user["client-key-data"] = base64.b64encode(cert[1].read_bytes()).decode()
    else:
        cluster["certificate-authority"] = pki.ca_path.name  # relative to the kubeconfig
        if cert:
            user["client-certificate"] = str(cert[0])
            user["client-key"] = str(cert[1])
    if token:
        user["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "contexts": [{"name": "default-context", "context": {"cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
        "current-context": "default-context",
        "preferences": {},
        "users": [{"name": "default-auth", "user": user}],
    }
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    path.chmod(0o600)
    return path


def kubelet_config_flag():
    """The doctor's flag for the kubelet config: `--kubelet-config` where the
    binary has it (pullcred's own `--config` is the pullcred config), else
    `--config`."""
    p = subprocess.run([str(BIN), "doctor", "--help"], capture_output=True, text=True, timeout=30)
    return "--kubelet-config" if "--kubelet-config" in p.stdout else "--config"


def doctor(plugin, tmp_path, kube, config, token=None, *extra):
    args = [str(BIN), "doctor", IMAGE, kubelet_config_flag(), str(config), "--kubeconfig", str(kube), "--json",
            "--image-fs", str(tmp_path), "--containerd-certs-dir", str(tmp_path / "certs.d")]
    if token:
        tf = tmp_path / "sa-token"
        tf.write_text(token)
        args += ["--service-account-token", str(tf)]
    p = subprocess.run(args + list(extra), capture_output=True, text=True, env=plugin.env, timeout=60)
    assert_no_secret(p.stdout)
    assert_no_secret(p.stderr)
    report = json.loads(p.stdout)
    return {s["step"]: s for s in report["steps"]}, p


def generate_rbac(tmp_path, *extra):
    out = tmp_path / "rbac.yaml"
    p = subprocess.run(
        [str(BIN), "config", "generate", "--cloud", "vault", "--registry", "registry.example.com",
         "--token-audience", AUDIENCE, "--rbac-out", str(out), *extra],
        capture_output=True, text=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    return out.read_text()


def test_generated_rbac_round_trip(plugin, cluster, tmp_path):
    # Given the kubelet's kubeconfig and a config whose provider asks for AUDIENCE
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster)
    token = mint("team-a", "builder", audience=AUDIENCE)
    cluster.api.service_accounts[("team-a", "builder")] = {}
    # When no RBAC grants the audience, the doctor says denied, and its fix is the RBAC
    steps, _ = doctor(plugin, tmp_path, kube, config, token)
    rbac = steps["node-rbac"]
    assert rbac["status"] == "fail", rbac
    assert f"{NODE} (groups system:nodes; client certificate) may NOT request tokens for audience \"{AUDIENCE}\" for team-a/builder" in rbac["seen"]
    assert "request-serviceaccounts-token-audience" in rbac["fix"]
    # The review asked exactly what NodeRestriction checks
    review = cluster.api.reviews[-1]
    assert review["kind"] == "SubjectAccessReview"
    assert review["user"] == NODE and "system:nodes" in review["groups"]
    assert review["attrs"] == {"namespace": "team-a", "verb": "request-serviceaccounts-token-audience", "group": "",
                               "version": "v1", "resource": AUDIENCE, "name": "builder"}
    # Then the RBAC that generate writes, applied, makes it allowed
    cluster.api.apply(generate_rbac(tmp_path))
    steps, _ = doctor(plugin, tmp_path, kube, config, token)
    assert steps["node-rbac"]["status"] == "ok", steps["node-rbac"]
    assert "may request tokens" in steps["node-rbac"]["seen"]
    assert steps["svc-account"]["status"] == "ok", steps["svc-account"]


def test_the_doctors_own_fix_is_applicable(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster)
    steps, _ = doctor(plugin, tmp_path, kube, config)
    fix = steps["node-rbac"]["fix"]
    yaml_text = "\n".join(line[8:] for line in fix.splitlines()[1:])
    cluster.api.apply(yaml_text)
    steps, _ = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "ok", steps["node-rbac"]
    assert "for any service account" in steps["node-rbac"]["seen"]
    assert "svc-account" not in steps  # no token: no account to read


def test_rbac_limited_to_service_accounts(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster)
    cluster.api.apply(generate_rbac(tmp_path, "--rbac-service-account", "team-a/builder"))
    for ns, name in [("team-a", "builder"), ("team-a", "other"), ("team-b", "builder")]:
        cluster.api.service_accounts[(ns, name)] = {}
    ok, _ = doctor(plugin, tmp_path, kube, config, mint("team-a", "builder", audience=AUDIENCE))
    assert ok["node-rbac"]["status"] == "ok", ok["node-rbac"]
    for ns, name in [("team-a", "other"), ("team-b", "builder")]:
        no, _ = doctor(plugin, tmp_path, kube, config, mint(ns, name, audience=AUDIENCE))
        assert no["node-rbac"]["status"] == "fail", (ns, name, no["node-rbac"])


def test_missing_required_annotation_is_named(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path, "--required-annotation", "pullcred.dev/vault-role")
    kube = kubeconfig(tmp_path, cluster)
    cluster.api.apply(generate_rbac(tmp_path))
    cluster.api.service_accounts[("team-a", "builder")] = {"other.example.com/x": "y"}
    token = mint("team-a", "builder", audience=AUDIENCE)
    steps, p = doctor(plugin, tmp_path, kube, config, token)
    sa = steps["svc-account"]
    assert sa["status"] == "fail", sa
    assert '"pullcred.dev/vault-role"' in sa["seen"]
    assert "does not run the plugin" in sa["cause"]
    assert sa["fix"] == "kubectl annotate serviceaccount -n team-a builder pullcred.dev/vault-role=VALUE"
    assert p.returncode != 0
    # With the annotation, the step passes and says what reaches the plugin
    cluster.api.service_accounts[("team-a", "builder")] = {"pullcred.dev/vault-role": "ci"}
    steps, _ = doctor(plugin, tmp_path, kube, config, token)
    assert steps["svc-account"]["status"] == "ok", steps["svc-account"]
    assert '"pullcred.dev/vault-role"' in steps["svc-account"]["seen"]


def test_unknown_or_unreadable_service_account(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster)
    token = mint("team-a", "ghost", audience=AUDIENCE)
    steps, _ = doctor(plugin, tmp_path, kube, config, token)
    assert steps["svc-account"]["status"] == "fail"
    assert "does not exist" in steps["svc-account"]["cause"]
    cluster.api.node_may_read = False
    cluster.api.service_accounts[("team-a", "ghost")] = {}
    steps, _ = doctor(plugin, tmp_path, kube, config, token)
    assert steps["svc-account"]["status"] == "warn", steps["svc-account"]
    assert "Node authorizer" in steps["svc-account"]["cause"]


@pytest.mark.parametrize("inline", [False, True], ids=["files", "inline-data"])
def test_kubeconfig_client_certificate_files_and_inline(plugin, cluster, tmp_path, inline):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster, inline=inline)
    cluster.api.apply(generate_rbac(tmp_path))
    steps, _ = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "ok", steps["node-rbac"]
    assert cluster.api.auth_headers == []  # mTLS, no bearer token sent


def test_bearer_token_kubeconfig_never_printed(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster, token=cluster.bearer, inline=True)
    steps, p = doctor(plugin, tmp_path, kube, config)
    assert cluster.api.reviews, steps["node-rbac"]
    # The token's identity is the server's to know: a SelfSubjectAccessReview
    assert cluster.api.reviews[-1]["kind"] == "SelfSubjectAccessReview"
    assert steps["node-rbac"]["status"] == "fail"
    assert cluster.bearer not in p.stdout + p.stderr
    cluster.api.apply(generate_rbac(tmp_path))
    steps, p = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "ok", steps["node-rbac"]
    assert "bearer token" in steps["node-rbac"]["seen"]
    assert cluster.bearer not in p.stdout + p.stderr
    # A wrong token: 401, said in one line, the token not echoed
    wrong = "wrong-" + cluster.bearer
    register_secret(wrong)
    kube = kubeconfig(tmp_path, cluster, token=wrong, inline=True, name="wrong.conf")
    steps, p = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "fail"
    assert "HTTP 401" in steps["node-rbac"]["cause"]
    assert wrong not in p.stdout + p.stderr


def test_a_user_that_is_not_a_node_is_flagged(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    admin = cluster.pki.client("kubernetes-admin", ["system:masters"])
    cluster.api.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: admin}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: all}\n"
        "subjects: [{kind: Group, name: system:masters}]\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: all}\n"
        "rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n"
    )
    kube = kubeconfig(tmp_path, cluster, cert=admin)
    steps, _ = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "warn", steps["node-rbac"]
    assert "not a node" in steps["node-rbac"]["cause"]


def test_bad_kubeconfigs_fail_in_one_line(plugin, cluster, tmp_path):
    config = kubelet_config(tmp_path)
    kube = kubeconfig(tmp_path, cluster)
    text = json.loads(kube.read_text())
    cases = {
        "plain http": ("server", cluster.url.replace("https://", "http://").replace("127.0.0.1", "localhost.example")),
        "insecure": ("insecure-skip-tls-verify", True),
    }
    for what, (key, value) in cases.items():
        t = json.loads(json.dumps(text))
        t["clusters"][0]["cluster"][key] = value
        bad = tmp_path / f"bad-{key}.conf"
        bad.write_text(json.dumps(t))
        bad.chmod(0o600)
        steps, _ = doctor(plugin, tmp_path, bad, config)
        assert steps["node-rbac"]["status"] == "fail", what
        assert "\n" not in steps["node-rbac"]["cause"], what
    # group-readable: refused as a private file
    kube.chmod(0o644)
    steps, _ = doctor(plugin, tmp_path, kube, config)
    assert steps["node-rbac"]["status"] == "fail"
    assert "mode 0644" in steps["node-rbac"]["cause"]
