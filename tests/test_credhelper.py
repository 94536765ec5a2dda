"""`docker-credential-pullcred`: the docker credential-helper protocol
(docker/docker-credential-helpers: `get` reads the server URL on stdin with
no newline and prints {"ServerURL","Username","Secret"}; "not found" is the
exact stdout text `credentials not found in native keychain`; `list` prints
a JSON object), served from the kubelet path's sources and on-node cache.

The binary runs as a client runs it: through a symlink named
docker-credential-pullcred (and as `pullcred credential-helper ACTION`),
and for real under skopeo with a containers-auth.json `credHelpers` entry,
against Debian's docker-registry (tests/registry.py)."""

import json
import os
import subprocess
import time

import pytest

from conftest import BIN, CAPTURED, SECRETS, Result, assert_no_secret, ecr_env, register_secret, request
from registry import Registry
from test_static import docker_config, env_for, user

NOT_FOUND = "credentials not found in native keychain"
ECR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("registry"))
    for pw in r.users.values():
        register_secret(pw)
    yield r
    r.close()


@pytest.fixture
def link_dir(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "docker-credential-pullcred").symlink_to(BIN.resolve())
    return d


class Helper:
    """Runs the credential helper as a client does: `ACTION` as the only
    argument, the server URL on stdin without a newline, stdout read."""

    def __init__(self, plugin, link_dir):
        self.plugin = plugin
        self.link = link_dir / "docker-credential-pullcred"

    def run(self, action, stdin="", env=None, via="symlink", args=()):
        e = dict(self.plugin.env)
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        if via == "symlink":
            argv = [str(self.link), action, *args]
        else:
            argv = [str(BIN), *args, "credential-helper", action]
        started = time.monotonic()
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=e, timeout=65)
        res = Result(p.returncode, p.stdout, p.stderr, time.monotonic() - started)
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
        CAPTURED.append((test, "stderr", res.stderr))
        if res.code == 0 and action == "get":
            register_secret(res.json["Secret"])
        else:
            CAPTURED.append((test, "stdout", res.stdout))
        assert "panicked" not in res.stderr
        assert_no_secret(res.stderr)
        return res


@pytest.fixture
def helper(plugin, link_dir):
    return Helper(plugin, link_dir)


# --- the protocol ---------------------------------------------------------


@pytest.mark.parametrize("via", ["symlink", "subcommand"])
def test_get_answers_a_static_registry(helper, registry, tmp_path, via):
    # Given a docker config for the registry
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    # When a client asks for the host, no newline after it
    res = helper.run("get", registry.host, env=env_for(registry, cfg), via=via)
    # Then the helper JSON, and nothing on stderr
    assert res.code == 0, res.stderr
    assert res.stdout.endswith("\n")
    assert res.json == {"ServerURL": registry.host, "Username": "user1", "Secret": registry.users["user1"]}
    assert res.stderr == ""


@pytest.mark.parametrize("form", ["https://{h}", "https://{h}/", "https://{h}/v2/", "{h}\n", "  {h}  "])
def test_server_url_forms_name_the_same_registry(helper, registry, tmp_path, form):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    url = form.format(h=registry.host)
    res = helper.run("get", url, env=env_for(registry, cfg))
    assert res.code == 0, res.stderr
    assert res.json["ServerURL"] == url.strip()
    assert (res.json["Username"], res.json["Secret"]) == user(registry)


@pytest.mark.parametrize("via", ["symlink", "subcommand"])
def test_no_source_is_the_exact_not_found_message(helper, via):
    res = helper.run("get", "registry.example.com", via=via)
    assert res.code == 1
    assert res.stdout == NOT_FOUND + "\n"
    assert res.stderr == ""


def test_a_skipped_docker_config_is_named_on_stderr(helper, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)}, mode=0o644)
    res = helper.run("get", registry.host, env=env_for(registry, cfg))
    assert res.code == 1
    assert res.stdout == NOT_FOUND + "\n"
    assert str(cfg) in res.stderr and "warning" in res.stderr


def test_an_empty_server_url_is_the_protocols_message(helper):
    res = helper.run("get", "")
    assert res.code == 1
    assert res.stdout == "no credentials server URL\n"


@pytest.mark.parametrize("url", ["ftp://registry.example.com", "user:pw-0001@registry.example.com", "nginx"])
def test_what_is_not_a_registry_fails_in_one_line(helper, url):
    SECRETS.add("pw-0001")
    res = helper.run("get", url)
    assert res.code == 1
    lines = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    assert len(lines) == 1, res.stderr
    assert res.stdout.strip() == lines[0]
    assert "pw-0001" not in res.stdout


@pytest.mark.parametrize("action", ["store", "erase"])
@pytest.mark.parametrize("via", ["symlink", "subcommand"])
def test_store_and_erase_are_refused(helper, action, via):
    stdin = json.dumps({"ServerURL": "r.example.com", "Username": "u", "Secret": "s"}) if action == "store" else "r.example.com"
    res = helper.run(action, stdin, via=via)
    assert res.code == 1
    assert res.stderr.count("\n") == 1
    assert f"{action} is not supported" in res.stderr
    assert "node's identity and configuration" in res.stderr
    assert f"nothing to {action}" in res.stderr
    assert res.stdout == res.stderr


@pytest.mark.parametrize("via", ["symlink", "subcommand"])
def test_list_is_an_empty_object(helper, registry, tmp_path, via):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    res = helper.run("list", "unused", env=env_for(registry, cfg), via=via)
    assert res.code == 0, res.stderr
    assert res.json == {}


def test_version_and_unknown_actions(helper):
    v = helper.run("version")
    assert v.code == 0 and v.stdout.startswith("docker-credential-pullcred (pullcred) ")
    bad = helper.run("frobnicate")
    assert bad.code == 1 and "unknown credential helper action" in bad.stderr


def test_no_action_is_a_usage_line(helper):
    p = subprocess.run([str(helper.link)], capture_output=True, text=True, env=helper.plugin.env, timeout=30)
    assert p.returncode == 1
    assert "usage: docker-credential-pullcred <get|list|store|erase|version>" in p.stderr


# --- one cache with the kubelet path ---------------------------------------


def test_ecr_after_a_kubelet_request_is_a_cache_hit(plugin, helper, standin):
    env = ecr_env(standin.url)
    # Given the kubelet's request filled the cache
    kubelet = plugin.run(request(f"{ECR_HOST}/team/app"), env=env)
    assert kubelet.code == 0, kubelet.stderr
    assert standin.call_count() == 1
    # When skopeo (say) asks the helper for the registry
    res = helper.run("get", f"https://{ECR_HOST}", env=env)
    # Then the same token, and ECR was not asked again
    assert res.code == 0, res.stderr
    assert res.json == {
        "ServerURL": f"https://{ECR_HOST}",
        "Username": "AWS",
        "Secret": kubelet.json["auth"][ECR_HOST]["password"],
    }
    assert standin.call_count() == 1


def test_ecr_from_the_helper_then_the_kubelet_is_a_cache_hit(plugin, helper, standin):
    env = ecr_env(standin.url)
    res = helper.run("get", ECR_HOST, env=env, via="subcommand")
    assert res.code == 0, res.stderr
    assert standin.call_count() == 1
    call = standin.calls[-1]
    assert call["region"] == "us-west-2" and call["service"] == "ecr"
    kubelet = plugin.run(request(f"{ECR_HOST}/other/app"), env=env)
    assert kubelet.code == 0, kubelet.stderr
    assert kubelet.json["auth"][ECR_HOST]["password"] == res.json["Secret"]
    assert standin.call_count() == 1


def test_an_ecr_failure_is_one_line_on_stderr_and_stdout(helper, standin):
    standin.configure(mode="denied")
    res = helper.run("get", ECR_HOST, env=ecr_env(standin.url), args=["--timeout", "5s"])
    assert res.code == 1
    lines = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    assert len(lines) == 1, res.stderr
    assert f"registry {ECR_HOST}" in lines[0]
    assert res.stdout.strip() == lines[0]
    assert NOT_FOUND not in res.stdout


def test_static_after_a_kubelet_request_is_a_cache_hit(plugin, helper, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    env = env_for(registry, cfg)
    assert plugin.run(request(f"{registry.host}/team/app"), env=env).code == 0
    # A cache miss would check the credentials against the registry, and
    # that would now fail TLS: a clean answer is the kubelet path's entry.
    no_ca = dict(env, SSL_CERT_FILE=str(tmp_path / "no-ca.pem"))
    res = helper.run("get", registry.host, env=no_ca)
    assert res.code == 0 and res.stderr == "", res.stderr
    assert (res.json["Username"], res.json["Secret"]) == user(registry)


# --- the real thing: skopeo with credHelpers --------------------------------


def skopeo_env(plugin, link_dir, auth_file, extra):
    e = dict(plugin.env)
    e.update(extra)
    e["PATH"] = f"{link_dir}:{e['PATH']}"
    e["REGISTRY_AUTH_FILE"] = str(auth_file)
    e["XDG_RUNTIME_DIR"] = str(plugin.home)
    return e


def cred_helpers(path, registry_host):
    path.write_text(json.dumps({"credHelpers": {registry_host: "pullcred"}}))
    return path


def skopeo_copy(registry, image, dest, env):
    p = subprocess.run(
        ["skopeo", "copy", "--src-cert-dir", str(registry.cert_dir), f"docker://{image}", f"dir:{dest}"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]
    CAPTURED.append((test, "skopeo stderr", p.stderr))
    return p


def test_skopeo_pulls_through_the_credential_helper(plugin, link_dir, registry, tmp_path):
    # Given the node's docker config and skopeo's auth file naming pullcred
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    auth = cred_helpers(tmp_path / "auth.json", registry.host)
    env = skopeo_env(plugin, link_dir, auth, env_for(registry, cfg))
    # When skopeo copies the image with no credentials of its own
    p = skopeo_copy(registry, f"{registry.host}/team/app:1.0", tmp_path / "pulled", env)
    # Then it pulled, through pullcred, and filled the kubelet path's cache
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "pulled" / "manifest.json").exists()
    assert_no_secret(p.stderr)
    assert any(plugin.cache_dir.iterdir())
    hit = plugin.run(request(f"{registry.host}/team/app"), env=dict(env_for(registry, cfg), SSL_CERT_FILE=str(tmp_path / "no-ca.pem")))
    assert hit.code == 0 and hit.stderr == "", hit.stderr


def test_without_the_helper_skopeo_is_refused(plugin, link_dir, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    env = skopeo_env(plugin, link_dir, auth, env_for(registry, cfg))
    p = skopeo_copy(registry, f"{registry.host}/team/app:1.0", tmp_path / "pulled", env)
    assert p.returncode != 0
    assert "401" in p.stderr or "unauthorized" in p.stderr.lower()


def test_a_wrong_password_fails_skopeo_with_pullcreds_error(plugin, link_dir, registry, tmp_path):
    SECRETS.add("wrong-password-cred-0001")
    cfg = docker_config(tmp_path / "config.json", {registry.host: ("user1", "wrong-password-cred-0001")})
    auth = cred_helpers(tmp_path / "auth.json", registry.host)
    env = skopeo_env(plugin, link_dir, auth, env_for(registry, cfg))
    p = skopeo_copy(registry, f"{registry.host}/team/app:1.0", tmp_path / "pulled", env)
    assert p.returncode != 0
    # skopeo quotes the helper's stdout line; the helper's stderr passes through
    assert "error getting credentials" in p.stderr, p.stderr
    assert f"registry {registry.host}" in p.stderr
    assert "refused these credentials" in p.stderr and "HTTP 401" in p.stderr
    assert "wrong-password-cred-0001" not in p.stderr


def test_a_host_pullcred_does_not_serve_falls_back_to_anonymous(plugin, link_dir, registry, tmp_path):
    # No docker config: the helper says "not found", skopeo goes on without
    # credentials and the registry itself answers 401.
    auth = cred_helpers(tmp_path / "auth.json", registry.host)
    env = skopeo_env(plugin, link_dir, auth, {"SSL_CERT_FILE": str(registry.ca)})
    p = skopeo_copy(registry, f"{registry.host}/team/app:1.0", tmp_path / "pulled", env)
    assert p.returncode != 0
    assert "error getting credentials" not in p.stderr, p.stderr
    assert "401" in p.stderr or "unauthorized" in p.stderr.lower()


# --- the kubelet's settings: --kubelet-config ------------------------------


def kubelet_config(path, args=(), env=None, name="pullcred"):
    """A CredentialProviderConfig with one entry, as the kubelet reads it."""
    entry = {
        "name": name,
        "matchImages": ["127.0.0.1:*", "*.dkr.ecr.*.amazonaws.com"],
        "defaultCacheDuration": "5m",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "args": list(args),
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    path.write_text(json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [entry],
    }))
    return path


def test_the_kubelet_entrys_args_and_env_are_used(helper, registry, tmp_path):
    # Given the docker config and the cache directory only in the kubelet's entry
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    cache = tmp_path / "kubelet-cache"
    kc = kubelet_config(tmp_path / "providers.json", args=["--cache-dir", str(cache)],
                        env={"PULLCRED_DOCKER_CONFIG": str(cfg)})
    env = {"SSL_CERT_FILE": str(registry.ca), "PULLCRED_KUBELET_CONFIG": str(kc)}
    # When the helper runs with nothing else
    res = helper.run("get", registry.host, env=env)
    # Then it answered as the kubelet's pullcred, into the kubelet's cache
    assert res.code == 0, res.stderr
    assert (res.json["Username"], res.json["Secret"]) == user(registry)
    assert any(cache.iterdir())
    assert not helper.plugin.cache_dir.exists() or not any(helper.plugin.cache_dir.iterdir())
    # and without it, pullcred knows of no source for the host
    assert helper.run("get", registry.host, env={"SSL_CERT_FILE": str(registry.ca)}).stdout == NOT_FOUND + "\n"


def test_the_flag_form_and_a_named_entry(helper, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    kc = kubelet_config(tmp_path / "providers.json", env={"PULLCRED_DOCKER_CONFIG": str(cfg)}, name="ecr-credential-provider")
    argv = [str(BIN), "credential-helper", "get", "--kubelet-config", str(kc), "--kubelet-provider", "ecr-credential-provider"]
    p = subprocess.run(argv, input=registry.host, capture_output=True, text=True, timeout=60,
                       env=dict(helper.plugin.env, SSL_CERT_FILE=str(registry.ca)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Username"] == "user1"


def test_a_missing_entry_is_one_line(helper, tmp_path):
    kc = kubelet_config(tmp_path / "providers.json", name="something-else")
    res = helper.run("get", "registry.example.com", env={"PULLCRED_KUBELET_CONFIG": str(kc)})
    assert res.code == 1
    assert res.stderr.count("\n") == 1
    assert f"--kubelet-config {kc}: no provider entry is named \"pullcred\"" in res.stderr
    missing = helper.run("get", "registry.example.com", env={"PULLCRED_KUBELET_CONFIG": str(tmp_path / "nope.yaml")})
    assert missing.code == 1 and "cannot read" in missing.stderr


def test_store_is_refused_whatever_the_kubelet_config(helper, tmp_path):
    kc = kubelet_config(tmp_path / "providers.json")
    res = helper.run("store", "{}", env={"PULLCRED_KUBELET_CONFIG": str(kc)})
    assert res.code == 1 and "store is not supported" in res.stderr


def test_skopeo_with_only_the_kubelet_config(plugin, link_dir, registry, tmp_path):
    # The node's setup: the kubelet's provider config names the docker
    # config; skopeo's environment carries only where that config is.
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    kc = kubelet_config(tmp_path / "providers.json", env={"PULLCRED_DOCKER_CONFIG": str(cfg)})
    auth = cred_helpers(tmp_path / "auth.json", registry.host)
    env = skopeo_env(plugin, link_dir, auth, {"SSL_CERT_FILE": str(registry.ca), "PULLCRED_KUBELET_CONFIG": str(kc)})
    p = skopeo_copy(registry, f"{registry.host}/team/app:1.0", tmp_path / "pulled", env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "pulled" / "manifest.json").exists()
