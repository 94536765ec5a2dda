"""Static credentials (dockerconfigjson files, Secrets Manager) checked
against a real registry: Debian's docker-registry with htpasswd and TLS on
127.0.0.1, pulled from with skopeo using exactly what pullcred returned."""

import base64
import json
import os
import stat

import pytest

from conftest import SECRETS, register_secret, request
from registry import Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = Registry(tmp_path_factory.mktemp("registry"))
    for pw in r.users.values():
        register_secret(pw)
    yield r
    r.close()


def docker_config(path, auths, mode=0o600):
    doc = {"auths": {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for k, (u, p) in auths.items()}}
    path.write_text(json.dumps(doc))
    os.chmod(path, mode)
    return path


def env_for(registry, *files, **extra):
    e = {"SSL_CERT_FILE": str(registry.ca), "PULLCRED_DOCKER_CONFIG": ":".join(str(f) for f in files)}
    e.update(extra)
    return e


def user(registry, i=1):
    name = f"user{i}"
    return name, registry.users[name]


def test_pull_succeeds_with_exactly_the_returned_credentials(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 0, res.stderr
    body = res.json
    assert body["cacheKeyType"] == "Registry"
    assert body["cacheDuration"] == "5m0s"
    creds = body["auth"][registry.host]
    got = (creds["username"], creds["password"])
    assert got == user(registry)
    assert registry.skopeo_inspect(f"{registry.host}/team/app:1.0", got).returncode == 0
    pulled = registry.skopeo_pull(f"{registry.host}/team/app:1.0", got, tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "manifest.json").exists()


def test_without_or_with_wrong_credentials_the_pull_fails_401(registry):
    anon = registry.skopeo_inspect(f"{registry.host}/team/app:1.0")
    assert anon.returncode != 0 and ("401" in anon.stderr or "unauthorized" in anon.stderr.lower())
    wrong = registry.skopeo_inspect(f"{registry.host}/team/app:1.0", ("user1", "not-the-password"))
    assert wrong.returncode != 0 and ("401" in wrong.stderr or "unauthorized" in wrong.stderr.lower())


def test_a_wrong_file_fails_at_the_node_with_a_clear_error(plugin, registry, tmp_path):
    SECRETS.add("wrong-password-0001")
    cfg = docker_config(tmp_path / "config.json", {registry.host: ("user1", "wrong-password-0001")})
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 1
    assert f"registry {registry.host}" in res.stderr
    assert "refused these credentials" in res.stderr and "HTTP 401" in res.stderr
    assert str(cfg) in res.stderr


def test_check_can_be_turned_off(plugin, registry, tmp_path):
    SECRETS.add("wrong-password-0002")
    cfg = docker_config(tmp_path / "config.json", {registry.host: ("user1", "wrong-password-0002")})
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg), args=["--no-registry-check"])
    assert res.code == 0, res.stderr


def test_path_scoped_key_goes_only_to_its_project(plugin, registry, tmp_path):
    key = f"{registry.host}/team"
    cfg = docker_config(tmp_path / "config.json", {key: user(registry)})
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 0, res.stderr
    assert list(res.json["auth"]) == [key]
    assert res.json["cacheKeyType"] == "Image"
    other = plugin.run(request(f"{registry.host}/other/app"), env=env_for(registry, cfg))
    assert other.code == 1
    assert "no pullcred source serves" in other.stderr


def test_ports_must_match(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {"127.0.0.1": user(registry)})
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 1


def test_a_changed_file_is_picked_up_without_restarting(plugin, registry, tmp_path):
    cfg = tmp_path / "config.json"
    docker_config(cfg, {registry.host: user(registry, 1)})
    first = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert first.json["auth"][registry.host]["username"] == "user1"
    docker_config(cfg, {registry.host: user(registry, 2)})
    second = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert second.code == 0, second.stderr
    assert second.json["auth"][registry.host]["username"] == "user2"


def test_a_cache_hit_skips_the_check(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    env = env_for(registry, cfg)
    assert plugin.run(request(f"{registry.host}/team/app"), env=env).code == 0
    registry_env = dict(env, SSL_CERT_FILE=str(tmp_path / "no-ca.pem"))  # a check would now fail TLS
    res = plugin.run(request(f"{registry.host}/team/app"), env=registry_env)
    assert res.code == 0 and res.stderr == "", res.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o660, 0o606])
def test_files_other_users_can_read_or_write_are_refused(plugin, registry, tmp_path, mode):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)}, mode=mode)
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 1
    assert "refused" in res.stderr and str(cfg) in res.stderr


def test_symlinked_file_is_refused(plugin, registry, tmp_path):
    real = docker_config(tmp_path / "real.json", {registry.host: user(registry)})
    link = tmp_path / "link.json"
    link.symlink_to(real)
    res = plugin.run(request(f"{registry.host}/team/app"), env=env_for(registry, link))
    assert res.code == 1 and "symlink" in res.stderr


def test_unreachable_registry_still_serves_with_a_warning(plugin, registry, tmp_path):
    from conftest import free_port

    host = f"127.0.0.1:{free_port()}"
    cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
    res = plugin.run(request(f"{host}/team/app"), env=env_for(registry, cfg))
    assert res.code == 0, res.stderr
    assert "serving them unchecked" in res.stderr


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io"])
def test_docker_hub_keys_all_mean_docker_io(plugin, tmp_path, key):
    SECRETS.add("dckr_pat_test_0001")
    cfg = docker_config(tmp_path / "config.json", {key: ("hubuser", "dckr_pat_test_0001")})
    # no internet here: the check against registry-1.docker.io is turned off
    res = plugin.run(request("docker.io/library/nginx"), env={"PULLCRED_DOCKER_CONFIG": str(cfg)},
                     args=["--no-registry-check"])
    assert res.code == 0, res.stderr
    assert list(res.json["auth"]) == ["docker.io"]
    assert res.json["auth"]["docker.io"]["password"] == "dckr_pat_test_0001"


def test_secrets_manager_source_against_moto(plugin, registry, moto, tmp_path):
    import boto3

    sm = boto3.client("secretsmanager", endpoint_url=moto, region_name="us-east-1",
                      aws_access_key_id="AKIAPULLCREDTEST0001", aws_secret_access_key="x")
    name, pw = user(registry)
    arn = sm.create_secret(Name=f"pullcred/{tmp_path.name}",
                           SecretString=json.dumps({"username": name, "accessToken": pw}))["ARN"]
    env = {"SSL_CERT_FILE": str(registry.ca), "AWS_ENDPOINT_URL": moto}
    res = plugin.run(request(f"{registry.host}/team/app"), env=env, args=["--aws-secret", f"{registry.host}={arn}"])
    assert res.code == 0, res.stderr
    creds = res.json["auth"][registry.host]
    assert (creds["username"], creds["password"]) == (name, pw)
    assert registry.skopeo_inspect(f"{registry.host}/team/app:1.0", (name, pw)).returncode == 0
    missing = plugin.run(request(f"{registry.host}/team/app"), env=env,
                         args=["--no-cache", "--aws-secret", f"{registry.host}=arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"])
    assert missing.code == 1
    assert "secretsmanager GetSecretValue" in missing.stderr and "ResourceNotFound" in missing.stderr
    assert stat.S_IMODE(plugin.cache_dir.stat().st_mode) == 0o700


def token_service_standin(registry, status=200):
    """A STAND-IN for Docker Hub's registry and token service (no internet
    here): /v2/ answers 401 with a Bearer challenge naming /token on the same
    TLS server; /token checks Basic auth and answers with Docker Hub's
    rate-limit headers."""
    from http.server import BaseHTTPRequestHandler

    name, pw = user(registry)
    want = "Basic " + base64.b64encode(f"{name}:{pw}".encode()).decode()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            port = self.server.server_address[1]
            if self.path.startswith("/v2/"):
                self.send_response(401)
                self.send_header("WWW-Authenticate",
                                 f'Bearer realm="https://127.0.0.1:{port}/token",service="registry.docker.io"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            ok = self.headers.get("Authorization") == want and "service=registry.docker.io" in self.path
            body = b'{"token":"standin-bearer"}' if ok else b"{}"
            self.send_response(status if ok else 401)
            self.send_header("ratelimit-limit", "100;w=21600")
            self.send_header("ratelimit-remaining", "76;w=21600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return registry.serve_tls(H)


def test_token_service_check_logs_the_rate_limit(plugin, registry, tmp_path):
    srv = token_service_standin(registry)
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
        res = plugin.run(request(f"{host}/library/nginx"), env=env_for(registry, cfg, PULLCRED_LOG="info"))
        assert res.code == 0, res.stderr
        assert "76;w=21600 pulls remaining of 100;w=21600" in res.stderr
        SECRETS.add("wrong-password-0003")
        bad = docker_config(tmp_path / "bad.json", {host: ("user1", "wrong-password-0003")})
        res = plugin.run(request(f"{host}/library/nginx"), env=env_for(registry, bad))
        assert res.code == 1
        assert f"https://127.0.0.1:{srv.server_address[1]}/token" in res.stderr
    finally:
        srv.shutdown()


def plain_http_realm_standin(registry, realm):
    """A STAND-IN registry whose Bearer challenge names `realm`."""
    from http.server import BaseHTTPRequestHandler

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="registry.example"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

    return registry.serve_tls(H)


@pytest.fixture
def tripwire():
    from standins.base import Tripwire

    t = Tripwire()
    yield t
    t.close()


@pytest.mark.parametrize("realm", ["http://creds-thief.example/token", "https://registry.example@creds-thief.example/token"],
                         ids=["plain-http-other-host", "userinfo"])
def test_a_realm_that_would_expose_the_password_is_refused(plugin, registry, tmp_path, tripwire, realm):
    """The registry check sends the password to the token service the
    challenge names only over https (or to loopback): a plain-http realm on
    another host, or a realm with userinfo, is refused before any connection
    and the credentials are not served."""
    # Given a registry whose challenge names such a realm, and a proxy that
    # would see any plain-http request
    srv = plain_http_realm_standin(registry, realm)
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
        # When the kubelet asks for the registry's credentials
        res = plugin.run(request(f"{host}/team/app"), env=env_for(registry, cfg, **tripwire.proxy_env()))
        # Then pullcred refuses in one line and the password went nowhere
        assert res.code == 1, res.stderr
        assert "the registry's token realm" in res.stderr and "refusing" in res.stderr
        assert tripwire.hits == []
    finally:
        srv.shutdown()
