"""Namespace-scoped static credentials and the per-namespace policy (issue
#18 items 5 and 6), through pullcred's config file (`--config`).

`namespaceCredentials` gives a docker config's keys only to the pods of the
namespaces (or `namespace/serviceaccount`) it names, as an imagePullSecret
in those namespaces did; the namespace comes from the pod's service-account
token. `policy` decides, per namespace and registry, whether a pod that
names no identity falls back to the node's, and which identities a
namespace may name; a refusal names the rule.

No upstream is needed: the credentials are static (the registry check is
off here; tests/e2e checks them against a real registry), and the policy
refuses before any network call.
"""

import base64
import json
import subprocess
import threading

import pytest

from conftest import BIN, register_secret
from satoken import mint, sa_request

HARBOR = "harbor.example.com"


def docker_config(path, user, password, key=HARBOR):
    register_secret(password)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {key: {"auth": auth}}}))
    path.chmod(0o600)
    return path


def write_config(path, text):
    path.write_text("apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\n" + text)
    path.chmod(0o600)
    return path


@pytest.fixture
def teams(plugin, tmp_path):
    a = docker_config(tmp_path / "team-a.json", "robot-a", "pw-team-a-0001")
    b = docker_config(tmp_path / "team-b.json", "robot-b", "pw-team-b-0002")
    cfg = write_config(
        tmp_path / "pullcred.yaml",
        f"""namespaceCredentials:
  - namespaces: ["team-a"]
    dockerConfig: {a}
  - namespaces: ["team-b/builder", "team-b-*"]
    dockerConfig: {b}
""",
    )
    plugin.env.update({"PULLCRED_CONFIG": str(cfg), "PULLCRED_NO_REGISTRY_CHECK": "1"})
    return plugin


def user_of(res, registry=HARBOR):
    assert res.code == 0, res.stderr
    return res.json["auth"][registry]["username"]


def pull(plugin, ns, name, image=f"{HARBOR}/app:1", uid=None, annotations=None, env=None):
    return plugin.run(sa_request(image, mint(ns, name, uid=uid), annotations), env=env)


def test_each_namespace_gets_its_own_robot(teams):
    assert user_of(pull(teams, "team-a", "default")) == "robot-a"
    assert user_of(pull(teams, "team-b", "builder")) == "robot-b"
    assert user_of(pull(teams, "team-b-ci", "anyone")) == "robot-b"


def test_a_namespace_no_entry_names_is_refused_with_the_entries(teams):
    res = pull(teams, "team-c", "default")
    assert res.code == 1
    assert "team-c" in res.stderr and "namespaceCredentials[0]" in res.stderr, res.stderr
    # a service account of team-b other than the one named
    res = pull(teams, "team-b", "default")
    assert res.code == 1 and "namespaceCredentials" in res.stderr, res.stderr


def test_without_a_token_the_request_is_refused_when_the_node_has_nothing(teams):
    res = teams.run({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                     "kind": "CredentialProviderRequest", "image": f"{HARBOR}/app:1"})
    assert res.code == 1
    assert "tokenAttributes" in res.stderr and "no service-account token" in res.stderr, res.stderr


def test_node_credentials_serve_node_requests_and_fallback_pods(teams, tmp_path):
    node = docker_config(tmp_path / "node.json", "robot-node", "pw-node-0003")
    env = {"PULLCRED_DOCKER_CONFIG": str(node)}
    res = teams.run({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                     "kind": "CredentialProviderRequest", "image": f"{HARBOR}/app:1"}, env=env)
    assert user_of(res) == "robot-node"
    # team-c names nothing: refused, unless the fallback lets it use the node's
    assert pull(teams, "team-c", "default", env=env).code == 1
    fb = dict(env, PULLCRED_SERVICE_ACCOUNT_FALLBACK="node")
    assert user_of(pull(teams, "team-c", "default", env=fb)) == "robot-node"
    # ...and the namespaces that have their own still get theirs
    assert user_of(pull(teams, "team-a", "default", env=fb)) == "robot-a"


def test_concurrent_pulls_of_two_namespaces_never_cross(teams):
    """Isolation: team-a and team-b pull the same image at once, many times,
    through one cache directory; each only ever sees its own robot."""
    results = []
    lock = threading.Lock()
    uids = {"team-a": "uid-a", "team-b": "uid-b"}
    names = {"team-a": "default", "team-b": "builder"}

    def worker(ns):
        for _ in range(6):
            res = pull(teams, ns, names[ns], uid=uids[ns])
            with lock:
                results.append((ns, user_of(res)))

    threads = [threading.Thread(target=worker, args=(ns,)) for ns in ("team-a", "team-b") for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 24
    want = {"team-a": "robot-a", "team-b": "robot-b"}
    assert all(user == want[ns] for ns, user in results), results
    entries = [p for p in teams.cache_dir.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert len(entries) >= 2


def test_a_cached_answer_is_never_served_to_another_namespace(teams):
    assert user_of(pull(teams, "team-a", "default", uid="u-a")) == "robot-a"
    # team-c is refused even though team-a's answer for the same image is cached
    assert pull(teams, "team-c", "default").code == 1


def test_policy_fallback_per_namespace_names_the_rule(plugin, tmp_path):
    node = docker_config(tmp_path / "node.json", "robot-node", "pw-node-0004")
    team = docker_config(tmp_path / "team.json", "robot-a", "pw-team-a-0005")
    cfg = write_config(
        tmp_path / "pullcred.yaml",
        f"""namespaceCredentials:
  - namespaces: ["team-a"]
    dockerConfig: {team}
policy:
  - namespaces: ["prod-*"]
    fallback: deny
  - namespaces: ["*"]
    registries: ["{HARBOR}"]
    fallback: node
""",
    )
    env = {"PULLCRED_CONFIG": str(cfg), "PULLCRED_NO_REGISTRY_CHECK": "1", "PULLCRED_DOCKER_CONFIG": str(node)}
    # the global flag would allow it; the policy's first rule does not
    res = pull(plugin, "prod-1", "default", env=dict(env, PULLCRED_SERVICE_ACCOUNT_FALLBACK="node"))
    assert res.code == 1 and "policy[0]" in res.stderr, res.stderr
    assert user_of(pull(plugin, "dev", "default", env=env)) == "robot-node"


def test_policy_allow_lists_refuse_an_identity_and_name_the_rule(plugin, tmp_path):
    """A namespace may name only the Google service accounts the policy
    lists; the refusal comes before any network call."""
    cfg = write_config(
        tmp_path / "pullcred.yaml",
        """policy:
  - namespaces: ["team-a"]
    registries: ["*.pkg.dev"]
    allow:
      googleServiceAccounts: ["team-a-*@proj.iam.gserviceaccount.com"]
""",
    )
    env = {"PULLCRED_CONFIG": str(cfg), "PULLCRED_GOOGLE_AUDIENCE": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k"}
    image = "us-docker.pkg.dev/proj/repo/app:1"
    ann = {"iam.gke.io/gcp-service-account": "prod-deployer@proj.iam.gserviceaccount.com"}
    res = plugin.run(sa_request(image, mint("team-a", "default"), ann), env=env)
    assert res.code == 1
    assert "policy[0]" in res.stderr and "allow.googleServiceAccounts" in res.stderr, res.stderr
    assert "prod-deployer@proj.iam.gserviceaccount.com" in res.stderr


def test_config_file_must_be_private_and_valid(plugin, tmp_path):
    cfg = write_config(tmp_path / "pullcred.yaml", "policy: []\n")
    cfg.chmod(0o644)
    res = plugin.run(sa_request(f"{HARBOR}/app:1"), env={"PULLCRED_CONFIG": str(cfg)})
    assert res.code == 1 and "config file" in res.stderr and "0644" in res.stderr, res.stderr
    cfg.chmod(0o600)
    cfg.write_text("apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nnamespaceCredentials:\n  - namespaces: []\n")
    res = plugin.run(sa_request(f"{HARBOR}/app:1"), env={"PULLCRED_CONFIG": str(cfg)})
    assert res.code == 1 and "namespaceCredentials[0]" in res.stderr, res.stderr


def test_config_validate_reports_every_problem(tmp_path):
    cfg = write_config(
        tmp_path / "pullcred.yaml",
        """policy:
  - namespaces: ["x"]
    fallback: sometimes
""",
    )
    res = validate(cfg)
    assert res.returncode == 1
    assert "sometimes" in res.stdout and "line 5" in res.stdout, res.stdout
    cfg = write_config(
        tmp_path / "ok.yaml",
        """namespaceCredentials:
  - namespaces: ["team-a", "team-b/builder"]
    dockerConfig: /etc/pullcred/team-a.json
policy:
  - namespaces: ["prod-*"]
    fallback: deny
""",
    )
    res = validate(cfg)
    assert res.returncode == 0, res.stdout
    assert "0 error(s)" in res.stdout
    cfg = write_config(
        tmp_path / "bad.yaml",
        """namespaceCredentials:
  - namespaces: ["a/b/c"]
""",
    )
    res = validate(cfg)
    assert res.returncode == 1
    assert "namespaceCredentials[0].namespaces[0]" in res.stdout and "dockerConfig or awsSecrets" in res.stdout, res.stdout


def validate(path):
    return subprocess.run([str(BIN), "config", "validate", str(path)], capture_output=True, text=True, timeout=30)


def test_policy_allow_lists_iam_roles_per_registry(plugin, tmp_path):
    """prod-* may name only prod roles for ECR; another namespace is not
    restricted. Refused before any network call (no endpoint is set up)."""
    cfg = write_config(
        tmp_path / "pullcred.yaml",
        """policy:
  - namespaces: ["prod-*"]
    registries: ["*.dkr.ecr.*.amazonaws.com"]
    allow:
      awsRoles: ["arn:aws:iam::123456789012:role/prod-*"]
""",
    )
    image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/app:1"
    ann = {"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::123456789012:role/dev-pull"}
    res = plugin.run(sa_request(image, mint("prod-1", "default"), ann), env={"PULLCRED_CONFIG": str(cfg)})
    assert res.code == 1
    assert "policy[0] allow.awsRoles" in res.stderr and "role/dev-pull" in res.stderr, res.stderr


def test_the_node_docker_config_is_read_once_per_request(teams, tmp_path):
    """With namespace-scoped credentials, the node's docker configs are read
    once per request: the route and the namespaced source's fallback to the
    node share them (they were read twice, hit or miss)."""
    import shutil

    assert shutil.which("strace"), "strace is missing: tests/run installs it"
    node = docker_config(tmp_path / "node.json", "robot-node", "pw-node-0004")
    env = dict(teams.env, PULLCRED_DOCKER_CONFIG=str(node), PULLCRED_SERVICE_ACCOUNT_FALLBACK="node")
    req = json.dumps(sa_request(f"{HARBOR}/app:1", mint("team-c", "default"))) + "\n"
    for what in ("miss", "hit"):
        trace = tmp_path / f"trace-{what}"
        p = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=openat,open", str(BIN)],
                           input=req, capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["auth"][HARBOR]["username"] == "robot-node"
        opens = [l for l in trace.read_text().splitlines() if str(node) in l]
        assert len(opens) == 1, (what, opens)
