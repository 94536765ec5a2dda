"""`pullcred doctor` against the real registry (Debian docker-registry with
htpasswd and TLS on 127.0.0.1, an image pushed with skopeo), plus stand-ins for
a rate-limiting token service and a registry that answers 403."""

import json
import re
import subprocess
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from conftest import BIN, SECRETS, assert_no_secret, free_port
from test_static import docker_config, registry, token_service_standin, tripwire, user  # noqa: F401  (fixture)

GOLDEN = Path(__file__).parent / "golden"


def doctor(plugin, registry, image, cfg, *extra, env=None):
    e = dict(plugin.env, SSL_CERT_FILE=str(registry.ca), PULLCRED_DOCKER_CONFIG=str(cfg))
    e.update(env or {})
    kube = plugin.cache_dir.parent / "kubelet-credential-provider.yaml"
    if not kube.exists():
        host = image.split("/")[0]
        subprocess.run([str(BIN), "config", "generate", "--cloud", "generic", "--registry", host, "-o", str(kube)],
                       check=True, capture_output=True)
    certs = plugin.cache_dir.parent / "certs.d"
    p = subprocess.run([str(BIN), "doctor", image, "--kubelet-config", str(kube), "--image-fs", str(plugin.cache_dir.parent),
                        "--containerd-certs-dir", str(certs), *extra],
                       capture_output=True, text=True, env=e, timeout=60)
    assert_no_secret(p.stdout)
    assert_no_secret(p.stderr)
    for pw in registry.users.values():
        assert pw not in p.stdout
    return p


def mask(text, registry_root):
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:DIGEST", text)
    text = re.sub(r"/tmp/\S+?/(cache|config\.json|kubelet-credential-provider\.yaml|certs\.d)", r"TMP/\1", text)
    text = re.sub(r"/tmp/[^\s:;]+", "TMP", text)
    text = re.sub(r"\d+(\.\d+)? (GiB|MiB) free of \d+(\.\d+)? (GiB|MiB) \(\d+%\)", "N free of N (N%)", text)
    # the machine's free space decides ok/warn/FAIL on that line: not golden
    text = re.sub(r"^(ok  |warn|FAIL)  image-fs .*\n(      .*\n)*", "....  image-fs (masked: depends on this machine's disk)\n", text, flags=re.M)
    text = re.sub(r"node clock is \d+s (ahead of|behind)", "node clock is Ns ahead of", text)
    text = re.sub(r"\d+h\d+m\d+s|\d+m\d+s|\b\d+s\b", "DURATION", text)
    return text


def check_golden(name, text):
    """Golden human output, volatile fields masked. UPDATE_GOLDEN=1 rewrites."""
    import os

    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"golden {name} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"golden {name} differs; UPDATE_GOLDEN=1 regenerates it"


def test_ok_reports_every_step_and_the_digest(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "=> the image would pull" in p.stdout
    assert re.search(rf"pin it: {re.escape(registry.host)}/team/app@sha256:[0-9a-f]{{64}}", p.stdout)
    assert "password **** (" in p.stdout
    check_golden("doctor-ok.txt", mask(p.stdout, registry.root))


def test_json_report(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg, "--json")
    assert p.returncode == 0
    r = json.loads(p.stdout)
    assert r["wouldPull"] is True
    assert r["pinned"].startswith(f"{registry.host}/team/app@sha256:")
    assert [s["step"] for s in r["steps"]] == ["parse", "provider", "source", "credentials", "registry", "containerd", "digest", "image-fs", "clock"]
    assert {s["status"] for s in r["steps"]} <= {"ok", "skip", "warn"}


def test_wrong_password_is_a_401_with_cause_and_fix(plugin, registry, tmp_path):
    SECRETS.add("doctor-wrong-password")
    cfg = docker_config(tmp_path / "config.json", {registry.host: ("user1", "doctor-wrong-password")})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg)
    assert p.returncode == 1
    assert "401 Unauthorized: the credentials are wrong or expired" in p.stdout
    assert "doctor-wrong-password" not in p.stdout
    check_golden("doctor-401.txt", mask(p.stdout, registry.root))


def test_missing_tag_is_a_404_with_nearby_tags(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.1", cfg)
    assert p.returncode == 1
    assert "404 Not Found" in p.stdout
    assert "tags nearby: 1.0" in p.stdout
    check_golden("doctor-404.txt", mask(p.stdout, registry.root))


def test_registry_down(plugin, registry, tmp_path):
    host = f"127.0.0.1:{free_port()}"
    cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
    p = doctor(plugin, registry, f"{host}/team/app:1.0", cfg)
    assert p.returncode == 1
    assert "the registry is down or unreachable" in p.stdout


def test_rate_limited_token_service(plugin, registry, tmp_path):
    srv = token_service_standin(registry, status=429)
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
        p = doctor(plugin, registry, f"{host}/library/nginx:1.27", cfg)
        assert p.returncode == 1
        assert "429 Too Many Requests" in p.stdout
        assert "76 pulls remaining of 100 per 6h0m0s window" in p.stdout
    finally:
        srv.shutdown()


def forbidding_registry(registry):
    """A STAND-IN registry that authenticates (Basic) but forbids the pull."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self):
            if self.headers.get("Authorization") is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="standin"')
            else:
                self.send_response(200 if self.path == "/v2/" else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = _answer
        do_HEAD = _answer

    return registry.serve_tls(H)


def test_forbidden_is_a_403(plugin, registry, tmp_path):
    srv = forbidding_registry(registry)
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
        p = doctor(plugin, registry, f"{host}/team/app:1.0", cfg)
        assert p.returncode == 1
        assert "403 Forbidden: authenticated, but not allowed to pull" in p.stdout
    finally:
        srv.shutdown()


def test_no_provider_entry_matches(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    kube = tmp_path / "other.yaml"
    subprocess.run([str(BIN), "config", "generate", "--cloud", "aws", "-o", str(kube)], check=True)
    e = dict(plugin.env, SSL_CERT_FILE=str(registry.ca), PULLCRED_DOCKER_CONFIG=str(cfg))
    p = subprocess.run([str(BIN), "doctor", f"{registry.host}/team/app:1.0", "--kubelet-config", str(kube)],
                       capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 1
    assert "the kubelet would run no provider" in p.stdout


def test_unparseable_image(plugin):
    p = subprocess.run([str(BIN), "doctor", "Not/An/IMAGE"], capture_output=True, text=True, env=plugin.env)
    assert p.returncode == 1
    assert "FAIL  parse" in p.stdout


def test_a_pods_identity_that_names_nothing_fails_at_the_source_step(plugin, tmp_path):
    """`doctor --service-account-token` checks the pod's identity as the
    kubelet would ask for it (tokenAttributes): a service account that names
    no Google identity is reported at the source step, naming the
    annotation, before any network call; the token is never printed."""
    from satoken import mint

    # Given a pod's token (kubectl create token ...) and no annotations
    token = mint("team-a", "builder", audience="my-project.svc.id.goog")
    f = tmp_path / "token"
    f.write_text(token + "\n")
    # When the operator asks the doctor about the pod's image
    p = subprocess.run([str(BIN), "doctor", "us-docker.pkg.dev/p/r/app:1", "--json",
                        "--service-account-token", str(f)],
                       capture_output=True, text=True, env=plugin.env, timeout=60)
    # Then the source step fails, naming the service account and the annotation
    assert p.returncode == 1, p.stderr
    report = json.loads(p.stdout)
    [source] = [s for s in report["steps"] if s["step"] == "source"]
    assert source["status"] == "fail"
    assert "team-a/builder" in source["cause"] and "iam.gke.io/enable-wi-image-pull" in source["cause"]
    assert not any(s["step"] == "credentials" for s in report["steps"])
    assert token not in p.stdout + p.stderr


def test_an_unreadable_token_file_is_a_usage_error(plugin, tmp_path):
    p = subprocess.run([str(BIN), "doctor", "us-docker.pkg.dev/p/r/app:1",
                        "--service-account-token", str(tmp_path / "absent")],
                       capture_output=True, text=True, env=plugin.env, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "--service-account-token" in p.stderr


def test_a_plain_http_realm_on_another_host_gets_no_password(plugin, registry, tmp_path):
    """doctor asks the token service with the password only under the
    registry check's rule: a plain-http realm on another host is reported,
    and nothing is sent (a proxy would see any plain-http request)."""
    from standins.base import Tripwire
    from test_static import plain_http_realm_standin

    trip = Tripwire()
    srv = plain_http_realm_standin(registry, "http://creds-thief.example/token")
    try:
        host = f"127.0.0.1:{srv.server_address[1]}"
        cfg = docker_config(tmp_path / "config.json", {host: user(registry)})
        p = doctor(plugin, registry, f"{host}/team/app:1.0", cfg, "--json", env=trip.proxy_env())
        assert p.returncode == 1, p.stdout + p.stderr
        [reg] = [s for s in json.loads(p.stdout)["steps"] if s["step"] == "registry"]
        assert reg["status"] == "fail" and "plain http" in reg["cause"], reg
        assert trip.hits == []
    finally:
        srv.shutdown()
        trip.close()


def test_a_path_key_without_a_trailing_slash_is_warned_about(plugin, registry, tmp_path):
    """The kubelet matches a docker-config key's path as a plain string
    prefix: `host/team` also matches `host/team-other/...`. doctor says so."""
    cfg = docker_config(tmp_path / "config.json", {f"{registry.host}/team": user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg, "--json")
    steps = json.loads(p.stdout)["steps"]
    [warn] = [s for s in steps if s["step"] == "auth-key"]
    assert warn["status"] == "warn"
    assert f"{registry.host}/team" in warn["seen"] and "prefix" in warn["seen"]
    # a key without a path matches by host: no warning
    cfg = docker_config(tmp_path / "config2.json", {registry.host: user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg, "--json", env={"PULLCRED_NO_CACHE": "1"})
    assert not [s for s in json.loads(p.stdout)["steps"] if s["step"] == "auth-key"]


# --- containerd hosts.toml mirrors ------------------------------------------------


def hosts_toml(plugin, registry_name, text):
    d = plugin.cache_dir.parent / "certs.d" / registry_name
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)


def test_a_hosts_toml_mirror_with_a_fallback_is_explained(plugin, registry, tmp_path):
    """containerd's hosts.toml lists a mirror for the registry and still
    falls back to `server`: doctor names the hosts in the order containerd
    tries them, says the one credential goes to each, and warns that the
    mirror's (or the upstream's) credentials reach the other host."""
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    hosts_toml(plugin, registry.host, f"""# a private cache in front of the registry
server = "https://{registry.host}"

[host."https://cache.example:5000/v2/proxy"]
  capabilities = ["pull", "resolve"]
  override_path = true
  ca = "/etc/ca.pem"

[host."https://push-only.example"]
  capabilities = ["push"]
""")
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg)
    assert p.returncode == 0, p.stdout + p.stderr
    [line] = [l for l in p.stdout.splitlines() if l.startswith("warn  containerd")]
    assert "tries, in order: https://cache.example:5000/v2/proxy (override_path), " \
           f"https://{registry.host} (server)" in line, line
    assert "push-only" not in line
    assert "the kubelet sets no server_address" in line
    assert "no --mirror for" in line
    check_golden("doctor-hosts-toml.txt", mask(p.stdout, registry.root))


def test_a_mirror_map_matching_hosts_toml_is_checked_at_its_target(plugin, registry, tmp_path, tripwire):
    """--mirror SOURCE=TARGET/PREFIX with a hosts.toml that sends SOURCE's
    pulls to TARGET only (server and mirror both TARGET, as an ECR
    pull-through cache needs): doctor checks the pull at TARGET, never
    contacts SOURCE, and says the map points at the first mirror host."""
    source = tripwire.host
    cfg = docker_config(tmp_path / "config.json", {f"{registry.host}/team/": user(registry)})
    hosts_toml(plugin, source, f"""server = "https://{registry.host}"
[host."https://{registry.host}/v2/team"]
  capabilities = ["pull", "resolve"]
  override_path = true
""")
    p = doctor(plugin, registry, f"{source}/app:1.0", cfg, "--mirror", f"{source}={registry.host}/team")
    assert p.returncode == 0, p.stdout + p.stderr
    assert tripwire.hits == []
    assert f"HEAD https://{registry.host}/v2/team/app/manifests/1.0: HTTP 200" in p.stdout
    assert f"pin it: {source}/app@sha256:" in p.stdout
    [line] = [l for l in p.stdout.splitlines() if " containerd " in l]
    assert line.startswith("ok    containerd"), line
    assert f"--mirror {source}={registry.host}/team points at the first mirror host" in line
    check_golden("doctor-mirror-map.txt", mask(p.stdout, registry.root))


def test_a_mirror_map_that_containerd_does_not_ask_first_is_a_warning(plugin, registry, tmp_path, tripwire):
    source = tripwire.host
    cfg = docker_config(tmp_path / "config.json", {f"{registry.host}/team/": user(registry)})
    hosts_toml(plugin, source, f"""server = "https://{registry.host}"
[host."https://cache.example"]
""")
    p = doctor(plugin, registry, f"{source}/app:1.0", cfg, "--json", "--mirror", f"{source}={registry.host}/team")
    [c] = [s for s in json.loads(p.stdout)["steps"] if s["step"] == "containerd"]
    assert c["status"] == "warn", c
    assert "containerd asks cache.example first" in c["cause"], c
    assert tripwire.hits == []


def test_no_hosts_toml_is_a_skip_naming_the_file(plugin, registry, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {registry.host: user(registry)})
    p = doctor(plugin, registry, f"{registry.host}/team/app:1.0", cfg, "--json")
    [c] = [s for s in json.loads(p.stdout)["steps"] if s["step"] == "containerd"]
    assert c["status"] == "skip"
    assert f"certs.d/{registry.host}/hosts.toml: containerd pulls from https://{registry.host} directly" in c["seen"]
