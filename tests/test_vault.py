"""HashiCorp Vault / OpenBao as a credential source (`vault:` in the pullcred
config file).

Upstream is the Vault stand-in (standins/vault.py) on 127.0.0.1: it verifies
the pod's service-account token (RS256 against satoken's cluster key, issuer,
expiry, audience) and the role's bindings (service account names and
namespaces) as Vault's kubernetes auth method does, checks each token's
policies on every KV v2 read, and counts calls.

What is checked:
1. per pod: the role (annotation, then the first namespace mapping, then the
   default) logs in with the pod's token; the secret's two fields are the
   answer; cacheDuration follows the earliest of ttl, the Vault token's
   lease and the service-account token; a second pull is a cache hit;
2. per node: AppRole (role ID and secret ID from 0600 files) and a JWT
   from a (symlinked, projected-style) token file;
3. isolation: a service account the role does not trust is refused (Vault's
   error, with a hint), concurrently with a trusted one, and never gets the
   trusted one's credential from the cache;
4. `{namespace}` in the secret path: each namespace reads its own secret;
   claims that cannot be a path segment are refused before any call;
5. no token, password, secret ID or Vault token on stderr, at debug level;
6. faults: Vault down, 500, sealed, past the deadline, garbage, 403, a
   missing secret, a missing field: one line, non-zero, nothing on stdout;
7. config errors: `pullcred config validate FILE` and `--config` at exec.
"""

import json
import os
import threading

import pytest

from conftest import free_port, register_secret
from satoken import mint, sa_request
from standins.base import tls_server_context
from standins.vault import VaultStandin

REGISTRY = "registry.corp.example"
IMAGE = f"{REGISTRY}/team/app"
AUDIENCE = "vault"
ROLE_ANNOTATION = "pullcred.dev/vault-role"
PASSWORD_A = "team-a-registry-password-0001"
PASSWORD_B = "team-b-registry-password-0002"
NODE_PASSWORD = "node-registry-password-0003"
SECRET_ID = "approle-secret-id-do-not-print-0004"
for _s in (PASSWORD_A, PASSWORD_B, NODE_PASSWORD, SECRET_ID):
    register_secret(_s)


@pytest.fixture
def vault():
    s = VaultStandin(on_token=register_secret)
    yield s
    s.close()


def seconds(go):
    """`1h2m3s` / `45m0s` / `300s` as seconds."""
    total, num = 0.0, ""
    for c in go:
        if c.isdigit() or c == ".":
            num += c
        else:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}[c]
            num = ""
    return total


def entry(vault, **over):
    e = {
        "name": "corp",
        "registries": [REGISTRY],
        "address": vault.url,
        "pod": {"roles": [{"namespaces": ["team-*"], "role": "team"}]},
        "secret": {"path": "registry/{namespace}"},
    }
    e.update(over)
    return e


def write_config(plugin, *entries, name="pullcred.json", mode=0o600, **top):
    c = {"apiVersion": "pullcred.dev/v1alpha1", "kind": "PullcredConfig", "vault": list(entries), **top}
    p = plugin.home / name
    p.write_text(json.dumps(c, indent=2))
    os.chmod(p, mode)
    return p


def standard(vault, ttl=3600):
    """Role `team` trusts team-a/app and team-b/app with audience `vault`;
    its policy reads registry/* ; each namespace has its secret."""
    vault.kube_role("team", names=["app"], namespaces=["team-a", "team-b"], audience=AUDIENCE, policies=["pull"], ttl=ttl)
    vault.policy("pull", "secret/data/registry/*")
    vault.put("registry/team-a", {"username": "robot-a", "password": PASSWORD_A})
    vault.put("registry/team-b", {"username": "robot-b", "password": PASSWORD_B})


def pull(plugin, config, token=None, annotations=None, env=None, args=(), image=IMAGE):
    e = {"PULLCRED_CONFIG": str(config)}
    e.update(env or {})
    return plugin.run(sa_request(image, token=token, annotations=annotations), env=e, args=args)


def one_error(res):
    assert res.code != 0, res.stdout
    line = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    assert len(line) == 1, res.stderr
    return line[0]


# ------------------------------------------------------------------ per pod


def test_pod_login_reads_the_namespace_secret(plugin, vault):
    standard(vault)
    cfg = write_config(plugin, entry(vault, ttl="30m"))
    token = mint("team-a", "app", audience=AUDIENCE)
    res = pull(plugin, cfg, token)
    assert res.code == 0, res.stderr
    body = res.json
    assert body["auth"] == {REGISTRY: {"username": "robot-a", "password": PASSWORD_A}}
    assert body["cacheKeyType"] == "Registry"
    # ttl 30m: refreshed a quarter before (7m30s), so 22m30s
    assert 1340 <= seconds(body["cacheDuration"]) <= 1350, body["cacheDuration"]
    assert vault.login_roles() == ["team"]
    assert vault.logins[0][2] == "team-a/app"
    # the password is never the token, and a second pull is a cache hit
    assert token not in res.stdout
    again = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE, uid=_uid(token)))
    assert again.code == 0 and again.json["auth"] == body["auth"]
    assert vault.count() == 2, vault.calls


def _uid(token):
    from satoken import unverified_claims

    return unverified_claims(token)["kubernetes.io"]["serviceaccount"]["uid"]


def test_cache_duration_follows_the_vault_token_and_secret_leases(plugin, vault):
    standard(vault, ttl=900)
    cfg = write_config(plugin, entry(vault))
    res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE))
    assert res.code == 0, res.stderr
    # Vault token lease 15m (not the 1h default ttl): refreshed 5m before
    assert 595 <= seconds(res.json["cacheDuration"]) <= 600, res.json["cacheDuration"]
    vault.put("registry/team-b", {"username": "robot-b", "password": PASSWORD_B}, lease_duration=720)
    res = pull(plugin, cfg, mint("team-b", "app", audience=AUDIENCE))
    assert res.code == 0, res.stderr
    assert 415 <= seconds(res.json["cacheDuration"]) <= 420, res.json["cacheDuration"]


def test_https_vault_with_the_systems_roots(plugin, tls):
    ca, cert, key = tls
    v = VaultStandin(on_token=register_secret, tls_context=tls_server_context(cert, key))
    try:
        standard(v)
        cfg = write_config(plugin, entry(v))
        res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE), env={"SSL_CERT_FILE": str(ca)})
        assert res.code == 0, res.stderr
        assert res.json["auth"][REGISTRY]["password"] == PASSWORD_A
        # without the CA: a TLS error, no credential
        res = pull(plugin, cfg, mint("team-b", "app", audience=AUDIENCE))
        assert "TLS" in one_error(res)
    finally:
        v.close()


def test_ca_file_is_trusted_besides_the_systems_roots(plugin, tls):
    ca, cert, key = tls
    v = VaultStandin(on_token=register_secret, tls_context=tls_server_context(cert, key))
    try:
        standard(v)
        cfg = write_config(plugin, entry(v, caFile=str(ca)))
        res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE))
        assert res.code == 0, res.stderr
        assert res.json["auth"][REGISTRY]["password"] == PASSWORD_A
    finally:
        v.close()


def test_a_ca_file_that_is_not_pem_is_a_config_error(plugin, vault, tmp_path):
    standard(vault)
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    cfg = write_config(plugin, entry(vault, caFile=str(bad)))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert "caFile" in line and str(bad) in line, line
    assert vault.count() == 0


def test_vault_namespace_header_and_custom_mounts(plugin, vault):
    vault.namespace = "ops/registry"
    vault.kube_role("team", names=["*"], namespaces=["team-a"], audience=AUDIENCE, policies=["p"], mount="k8s/prod")
    vault.policy("p", "kv/data/pull/*")
    vault.put("pull/creds", {"user": "robot", "token": PASSWORD_A}, mount="kv")
    e = entry(
        vault,
        namespace="ops/registry",
        pod={"mount": "k8s/prod", "defaultRole": "team"},
        secret={"mount": "kv", "path": "pull/creds", "usernameField": "user", "passwordField": "token"},
    )
    res = pull(plugin, write_config(plugin, e), mint("team-a", "app", audience=AUDIENCE))
    assert res.code == 0, res.stderr
    assert res.json["auth"][REGISTRY] == {"username": "robot", "password": PASSWORD_A}
    # the wrong namespace: Vault knows no such role there
    e["namespace"] = "ops/other"
    res = pull(plugin, write_config(plugin, e, name="other.json"), mint("team-a", "app", audience=AUDIENCE))
    line = one_error(res)
    assert 'invalid role name \\"team\\"' in line or 'invalid role name "team"' in line, line


def test_role_precedence_annotation_mapping_default(plugin, vault):
    for role in ("from-annotation", "from-mapping", "from-default"):
        vault.kube_role(role, names=["*"], namespaces=["*"], audience=AUDIENCE, policies=["pull"])
    vault.policy("pull", "secret/data/registry/*")
    for ns in ("team-a", "ops"):
        vault.put(f"registry/{ns}", {"username": f"robot-{ns}", "password": PASSWORD_A})
    e = entry(vault, pod={"roles": [{"namespaces": ["team-*"], "role": "from-mapping"}], "defaultRole": "from-default"})
    cfg = write_config(plugin, e)
    res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE), annotations={ROLE_ANNOTATION: "from-annotation"})
    assert res.code == 0, res.stderr
    res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE))
    assert res.code == 0, res.stderr
    res = pull(plugin, cfg, mint("ops", "app", audience=AUDIENCE))
    assert res.code == 0, res.stderr
    assert vault.login_roles() == ["from-annotation", "from-mapping", "from-default"]
    # no mapping and no default: refused before any call, naming the annotation
    e["pod"] = {"roles": [{"namespaces": ["team-*"], "role": "from-mapping"}]}
    cfg = write_config(plugin, e, name="nodefault.json")
    before = vault.count()
    line = one_error(pull(plugin, cfg, mint("ops", "app", audience=AUDIENCE)))
    assert ROLE_ANNOTATION in line and "service-account-fallback" in line, line
    assert vault.count() == before


def test_policy_allow_list_restricts_the_roles_a_namespace_may_name(plugin, vault):
    standard(vault)
    vault.kube_role("admin", names=["*"], namespaces=["*"], audience=AUDIENCE, policies=["pull"])
    policy = [{"namespaces": ["team-*"], "allow": {"vaultRoles": ["team"]}}]
    cfg = write_config(plugin, entry(vault), policy=policy)
    ok = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE), annotations={ROLE_ANNOTATION: "team"})
    assert ok.code == 0, ok.stderr
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE), annotations={ROLE_ANNOTATION: "admin"}))
    assert "Vault role admin" in line and "policy[0]" in line and "allow.vaultRoles" in line, line
    assert vault.login_roles() == ["team"]


def test_no_role_falls_back_to_the_node_login_when_allowed(plugin, vault, tmp_path):
    vault.kube_role("team", names=["*"], namespaces=["team-a"], audience=AUDIENCE, policies=["pull"])
    vault.approle("node-role-id", SECRET_ID, policies=["pull"])
    vault.policy("pull", "secret/data/registry/*")
    vault.put("registry/shared", {"username": "node-robot", "password": NODE_PASSWORD})
    node = approle_node(tmp_path)
    e = entry(vault, pod={"roles": [{"namespaces": ["team-*"], "role": "team"}]}, node=node, secret={"path": "registry/shared"})
    cfg = write_config(plugin, e)
    res = pull(plugin, cfg, mint("ops", "app", audience=AUDIENCE), args=["--service-account-fallback=node"])
    assert res.code == 0, res.stderr
    assert res.json["auth"][REGISTRY]["password"] == NODE_PASSWORD
    assert vault.login_roles() == ["approle"]


def test_annotation_without_token_asks_for_token_attributes(plugin, vault):
    standard(vault)
    cfg = write_config(plugin, entry(vault))
    line = one_error(pull(plugin, cfg, None, annotations={ROLE_ANNOTATION: "team"}))
    assert "tokenAttributes" in line, line
    line = one_error(pull(plugin, cfg, None))
    assert "serviceAccountToken" in line and "node:" in line, line
    assert vault.count() == 0


# ------------------------------------------------------------------ isolation


def test_untrusted_service_account_is_refused_concurrently_and_never_served_from_cache(plugin, vault):
    # the role trusts team-a/app only; team-a/intruder names the same role
    vault.kube_role("team", names=["app"], namespaces=["team-a"], audience=AUDIENCE, policies=["pull"])
    vault.policy("pull", "secret/data/registry/*")
    vault.put("registry/team-a", {"username": "robot-a", "password": PASSWORD_A})
    cfg = write_config(plugin, entry(vault))
    good = mint("team-a", "app", audience=AUDIENCE)
    bad = mint("team-a", "intruder", audience=AUDIENCE)
    results = {"good": [], "bad": []}

    def worker(kind, token):
        for _ in range(3):
            r = pull(plugin, cfg, token, annotations={ROLE_ANNOTATION: "team"})
            results[kind].append(r)

    threads = [threading.Thread(target=worker, args=(k, t)) for k, t in [("good", good), ("bad", bad)] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results["good"]) == len(results["bad"]) == 9
    for r in results["good"]:
        assert r.code == 0, r.stderr
        assert r.json["auth"][REGISTRY]["password"] == PASSWORD_A
    for r in results["bad"]:
        line = one_error(r)
        assert "service account name not authorized" in line, line
        assert "bound_service_account_names" in line, line
        assert PASSWORD_A not in r.stdout + r.stderr
    # every refusal was Vault's own answer to that pull: no login was issued
    # to the intruder, and none of its pulls was answered from the cache
    assert not [w for _, _, w in vault.logins if w == "team-a/intruder"]
    assert [w for _, _, w in vault.refusals] == ["team-a/intruder"] * 9
    # and afterwards, with the good account's entry warm, still refused by Vault
    r = pull(plugin, cfg, bad, annotations={ROLE_ANNOTATION: "team"})
    assert "service account name not authorized" in one_error(r)
    assert len(vault.refusals) == 10


def test_namespace_placeholder_keeps_namespaces_apart(plugin, vault):
    vault.kube_role("team", names=["app"], namespaces=["team-a", "team-b"], audience=AUDIENCE, policies=["pull"])
    vault.policy("pull", "secret/data/registry/*")
    vault.put("registry/team-a", {"username": "robot-a", "password": PASSWORD_A})
    vault.put("registry/team-b", {"username": "robot-b", "password": PASSWORD_B})
    cfg = write_config(plugin, entry(vault))
    a = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE))
    b = pull(plugin, cfg, mint("team-b", "app", audience=AUDIENCE))
    assert a.json["auth"][REGISTRY]["password"] == PASSWORD_A
    assert b.json["auth"][REGISTRY]["password"] == PASSWORD_B
    reads = [p for m, p, _ in vault.calls if m == "GET"]
    assert reads == ["/v1/secret/data/registry/team-a", "/v1/secret/data/registry/team-b"]


def test_claims_that_are_not_a_path_segment_are_refused_before_any_call(plugin, vault):
    standard(vault)
    cfg = write_config(plugin, entry(vault, pod={"defaultRole": "team"}))
    for ns in ("..", "team-a/../team-b"):
        token = mint(ns, "app", audience=AUDIENCE)
        line = one_error(pull(plugin, cfg, token))
        assert "secret path" in line, line
    assert vault.count() == 0


def test_a_namespace_the_role_does_not_bind_is_refused(plugin, vault):
    standard(vault)
    vault.put("registry/team-c", {"username": "robot-c", "password": PASSWORD_B})
    cfg = write_config(plugin, entry(vault))
    line = one_error(pull(plugin, cfg, mint("team-c", "app", audience=AUDIENCE)))
    assert "namespace not authorized" in line, line


def test_wrong_audience_and_foreign_signature_are_refused(plugin, vault):
    import satoken

    standard(vault)
    cfg = write_config(plugin, entry(vault))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience="sts.amazonaws.com")))
    assert "invalid audience" in line and "serviceAccountTokenAudience" in line, line
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE, key=satoken.ROGUE)))
    assert "permission denied" in line, line


# ------------------------------------------------------------------ per node


def approle_node(tmp_path, mode=0o600):
    rid, sid = tmp_path / "role-id", tmp_path / "secret-id"
    rid.write_text("node-role-id\n")
    sid.write_text(SECRET_ID + "\n")
    os.chmod(rid, 0o600)
    os.chmod(sid, mode)
    return {"method": "approle", "roleIdFile": str(rid), "secretIdFile": str(sid)}


def test_node_approle_login(plugin, vault, tmp_path):
    vault.approle("node-role-id", SECRET_ID, policies=["node"], ttl=7200)
    vault.policy("node", "secret/data/registry/node")
    vault.put("registry/node", {"username": "node-robot", "password": NODE_PASSWORD})
    cfg = write_config(plugin, entry(vault, pod=None, node=approle_node(tmp_path), secret={"path": "registry/node"}))
    res = pull(plugin, cfg)
    assert res.code == 0, res.stderr
    assert res.json["auth"][REGISTRY] == {"username": "node-robot", "password": NODE_PASSWORD}
    # default ttl 1h (the token's 2h lease is longer): 45m
    assert 2690 <= seconds(res.json["cacheDuration"]) <= 2700
    # a pod's token changes nothing without pod: it is the node's credential
    res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE))
    assert res.code == 0 and vault.count(prefix="/v1/auth/") == 1


def test_node_approle_secret_id_file_must_be_private(plugin, vault, tmp_path):
    vault.approle("node-role-id", SECRET_ID, policies=["node"])
    cfg = write_config(plugin, entry(vault, pod=None, node=approle_node(tmp_path, mode=0o644), secret={"path": "x"}))
    line = one_error(pull(plugin, cfg))
    assert "secretIdFile" in line and "mode" in line, line
    assert vault.count() == 0


def test_node_approle_wrong_secret_id(plugin, vault, tmp_path):
    vault.approle("node-role-id", "another-secret-id", policies=["node"])
    cfg = write_config(plugin, entry(vault, pod=None, node=approle_node(tmp_path), secret={"path": "x"}))
    line = one_error(pull(plugin, cfg))
    assert "invalid role or secret ID" in line and "secret ID" in line, line


def test_node_jwt_login_from_a_symlinked_token_file(plugin, vault, tmp_path):
    node_token = mint("kube-system", "node-puller", audience="vault-node")
    data = tmp_path / "..data"
    data.mkdir()
    (data / "token").write_text(node_token)
    os.chmod(data / "token", 0o644)
    (tmp_path / "token").symlink_to(data / "token")
    vault.jwt_role("node", bound_audiences=["vault-node"], bound_subject="system:serviceaccount:kube-system:node-puller", policies=["node"])
    vault.policy("node", "secret/data/registry/node")
    vault.put("registry/node", {"username": "node-robot", "password": NODE_PASSWORD})
    node = {"method": "jwt", "role": "node", "tokenFile": str(tmp_path / "token")}
    cfg = write_config(plugin, entry(vault, pod=None, node=node, secret={"path": "registry/node"}))
    res = pull(plugin, cfg)
    assert res.code == 0, res.stderr
    assert res.json["auth"][REGISTRY]["password"] == NODE_PASSWORD
    assert vault.logins[0][:2] == ("jwt", "node")


# ------------------------------------------------------------------ secrets


def test_no_secret_on_stderr_at_debug(plugin, vault, tmp_path):
    standard(vault)
    vault.approle("node-role-id", SECRET_ID, policies=["pull"])
    vault.put("registry/node", {"username": "n", "password": NODE_PASSWORD})
    node = entry(
        vault, name="node", registries=["node.corp.example"], pod=None, node=approle_node(tmp_path), secret={"path": "registry/node"}
    )
    cfg = write_config(plugin, entry(vault), node)
    env = {"PULLCRED_LOG": "debug"}
    good = mint("team-a", "app", audience=AUDIENCE)
    bad = mint("team-a", "intruder", audience=AUDIENCE)
    outs = [
        pull(plugin, cfg, good, env=env),
        pull(plugin, cfg, bad, env=env),
        pull(plugin, cfg, env=env, image="node.corp.example/app"),
    ]
    assert outs[0].code == 0 and outs[2].code == 0, [o.stderr for o in outs]
    assert outs[1].code != 0
    issued = list(vault.tokens)
    assert len(issued) == 2
    for o in outs:
        assert o.stderr.strip(), "debug logging says something"
        for s in [good, bad, PASSWORD_A, NODE_PASSWORD, SECRET_ID, *issued]:
            assert s not in o.stderr
    # the Vault token is not in the cache either
    for f in plugin.cache_dir.rglob("*"):
        if f.is_file():
            text = f.read_bytes().decode(errors="replace")
            for s in [good, SECRET_ID, *issued]:
                assert s not in text, f


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    "mode, want",
    [
        ("error500", "HTTP 500: 1 error occurred: * internal error"),
        ("sealed", "HTTP 503: Vault is sealed"),
        ("garbage", "unreadable login answer"),
        ("deny", "HTTP 403: permission denied"),
    ],
)
def test_vault_faults(plugin, vault, mode, want):
    standard(vault)
    vault.mode = mode
    cfg = write_config(plugin, entry(vault))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert want in line, line
    assert 'vault "corp"' in line and "auth/kubernetes" in line, line
    if mode in ("error500", "sealed"):
        assert vault.count() == 3, "5xx is retried (3 attempts)"
    else:
        assert vault.count() == 1


def test_vault_down(plugin, vault):
    cfg = write_config(plugin, entry(vault, address=f"http://127.0.0.1:{free_port()}"))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert "connection failed" in line, line


def test_vault_slow_past_the_deadline(plugin, vault):
    standard(vault)
    vault.mode = "hang"
    vault.hang_seconds = 10
    cfg = write_config(plugin, entry(vault))
    res = pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE), args=["--timeout", "2s"])
    line = one_error(res)
    assert "timed out" in line and "deadline" in line, line
    assert res.elapsed < 6, res.elapsed


def test_missing_secret_and_missing_field(plugin, vault):
    standard(vault)
    vault.policy("pull", "secret/data/*")
    cfg = write_config(plugin, entry(vault, secret={"path": "nowhere/{namespace}"}))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert "HTTP 404" in line and '"nowhere/team-a"' in line and 'mount "secret"' in line, line
    cfg = write_config(plugin, entry(vault, secret={"path": "registry/{namespace}", "passwordField": "token"}), name="f.json")
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert 'no field "token"' in line and "secret.passwordField" in line, line
    assert PASSWORD_A not in line and "robot-a" not in line


def test_policy_forbids_the_path(plugin, vault):
    standard(vault)
    vault.policy("pull", "secret/data/registry/team-b")
    cfg = write_config(plugin, entry(vault))
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert "HTTP 403" in line and "permission denied" in line and "secret/data/registry/team-a" in line, line


# ------------------------------------------------------------------ config


def validate(plugin, path):
    """`pullcred config validate FILE`: (exit code, stdout + stderr)."""
    import subprocess

    from conftest import BIN, assert_no_secret

    p = subprocess.run([str(BIN), "config", "validate", str(path)], capture_output=True, text=True, env=plugin.env, timeout=30)
    assert_no_secret(p.stdout + p.stderr)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize(
    "change, want",
    [
        (lambda e: e.update(address="http://vault.corp.example:8200"), "vault[0].address"),
        (lambda e: e.pop("secret"), "secret"),
        (lambda e: e.pop("pod"), "vault[0]: needs pod"),
        (lambda e: e.update(node={"method": "approle"}), "vault[0].node.roleIdFile"),
        (lambda e: e.update(secret={"path": "registry/../other"}), "vault[0].secret.path"),
        (lambda e: e.update(ttl="1d"), "vault[0].ttl"),
    ],
)
def test_config_errors(plugin, vault, change, want):
    e = entry(vault)
    change(e)
    cfg = write_config(plugin, e)
    code, out = validate(plugin, cfg)
    assert code != 0
    assert want in out, out
    # and the provider refuses the file at exec, before any call
    line = one_error(pull(plugin, cfg, mint("team-a", "app", audience=AUDIENCE)))
    assert "config file" in line and want.split(":")[0].split(".")[-1] in line, line
    assert vault.count() == 0


def test_a_good_config_validates(plugin, vault, tmp_path):
    e = entry(vault, node=None)
    e.pop("node")
    cfg = write_config(plugin, e)
    code, out = validate(plugin, cfg)
    assert code == 0, out
