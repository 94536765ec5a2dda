"""Real registries for the e2e session, under their real host names.

Every registry is Debian's `docker-registry` (the CNCF distribution server,
2.8): it alone decides whether a request is authorised. Around it:

- `Distribution`: one `docker-registry serve` process, either on its own
  loopback address at :443 with TLS (the htpasswd registries), or on
  127.0.0.1:<port> in plain HTTP behind a `Front`.
- `Front`: a TLS server at <address>:443 for a registry whose token service
  lives on the registry's own host (ACR's `/oauth2/*`, Harbor's
  `/service/token`): those paths go to the stand-in, everything else is
  relayed byte for byte to the distribution process behind it. It also
  records the Authorization scheme (and Basic user names) each request
  carried, for the mirror evidence.
- `TokenService`: a STAND-IN token server following distribution's "Token
  Authentication Specification" (docs/spec/auth/token.md: GET with Basic
  credentials) and "OAuth2 Token Authentication" (docs/spec/auth/oauth.md:
  POST with grant_type=password or refresh_token). It issues RS256 JWTs with
  the signer's certificate in x5c, which distribution verifies against its
  `rootcertbundle`; a policy function decides which user may pull which
  repository, so a wrong credential really fails at the registry.

Images are small OCI images written here (one layer with a distinct file per
image) and pushed with skopeo.
"""

import base64
import hashlib
import http.client
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from registry import oci_layout
from standins.base import tls_server_context

ADMIN = ("e2e-admin", "e2e-admin-" + secrets.token_hex(12))


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def wait_port(host, port, seconds=20):
    import socket

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port}")


class Distribution:
    """One docker-registry process. `auth` is the config's `auth:` mapping
    (None: open)."""

    def __init__(self, root: Path, listen, tls=None, auth=None, public_url=None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.listen = listen
        host, port = listen.rsplit(":", 1)
        self.addr = (host, int(port))
        http_cfg = {"addr": listen, "secret": secrets.token_hex(16)}
        if tls:
            http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        if public_url:
            http_cfg["host"] = public_url
        cfg = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": http_cfg,
        }
        if auth:
            cfg["auth"] = auth
        self.config = root / "config.yml"
        self.config.write_text(json.dumps(cfg))  # YAML is a superset of JSON
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "registry.log", "ab"))
        wait_port(*self.addr)

    def restart(self):
        self.stop()
        self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class HtpasswdRegistry:
    """A registry with Basic auth from an htpasswd file, TLS at ip:443.

    distribution 2.8 reads the htpasswd file once, at start-up: `allow()`
    rewrites it and restarts the process, so the registry accepts exactly
    the users allowed so far (the admin that pushes, plus e.g. `AWS:<token>`
    for every token the ECR stand-in issued)."""

    def __init__(self, root, name, ip, pki):
        self.name, self.ip = name, ip
        self.lock = threading.Lock()
        self.users = {ADMIN[0]: ADMIN[1]}
        root.mkdir(parents=True, exist_ok=True)
        self.htpasswd = root / "htpasswd"
        self._write()
        self.restarts = 0
        self.restart_seconds = 0.0
        self.dist = Distribution(root, f"{ip}:443", tls=(pki.cert, pki.key),
                                 auth={"htpasswd": {"realm": name, "path": str(self.htpasswd)}})

    def _write(self):
        lines = [sh("htpasswd", "-nbB", "-C", "4", u, p).stdout.strip() for u, p in self.users.items()]
        self.htpasswd.write_text("\n".join(lines) + "\n")

    def allow(self, user, password):
        with self.lock:
            if self.users.get(user) == password:
                return
            started = time.monotonic()
            self.users[user] = password
            self._write()
            self.dist.restart()
            self.restarts += 1
            self.restart_seconds += time.monotonic() - started

    def close(self):
        self.dist.stop()


# ------------------------------------------------------------------ token service


def _basic(header):
    if not header or not header.startswith("Basic "):
        return None
    try:
        user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
    except Exception:
        return None
    return user, pw


class TokenService:
    """A STAND-IN token server (see the module docstring).

    `check(user, password)` -> True when the credentials are valid;
    `policy(user, repository)` -> the actions granted ([] or ["pull"], or
    ["pull", "push"] for the admin). `refresh` is an optional
    `check_refresh(token) -> user or None` for ACR-style refresh tokens (the
    password of user 00000000-0000-0000-0000-000000000000, or a POST
    grant_type=refresh_token). `password_grant`: whether POST
    grant_type=password is served (else 400 unsupported_grant_type, what
    containerd's resolver comments say ACR answers). Records every call
    (method, grant, user, scope, outcome) in `calls`, never a secret."""

    def __init__(self, pki, service, issuer, check, policy, refresh=None, password_grant=True, on_token=None):
        self.pki, self.service, self.issuer = pki, service, issuer
        self.check, self.policy, self.refresh = check, policy, refresh
        self.password_grant = password_grant
        self.on_token = on_token or (lambda t: None)
        self.lock = threading.Lock()
        self.calls = []

    def record(self, **kw):
        with self.lock:
            self.calls.append(kw)

    def _scopes(self, scope_values):
        out = []
        for s in scope_values:
            for one in s.split(" "):
                parts = one.split(":")
                if len(parts) >= 3 and parts[0] == "repository":
                    out.append((":".join(parts[1:-1]), parts[-1].split(",")))
        return out

    def _token(self, user, scopes):
        now = int(time.time())
        access = []
        for repo, actions in scopes:
            granted = [a for a in actions if a in self.policy(user, repo)]
            if granted:
                access.append({"type": "repository", "name": repo, "actions": granted})
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 600, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        token = self.pki.sign_jwt(claims)
        self.on_token(token)
        return token, access

    def _user_for(self, user, password):
        if self.refresh and user == "00000000-0000-0000-0000-000000000000":
            return self.refresh(password)
        return user if self.check(user, password) else None

    def handle(self, h, method, body):
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        if method == "GET":
            basic = _basic(h.headers.get("Authorization"))
            scopes = self._scopes(query.get("scope", []))
            user = self._user_for(*basic) if basic else ""
            call = {"method": "GET", "grant": "basic" if basic else "anonymous",
                    "user": basic[0] if basic else None, "scopes": [r for r, _ in scopes]}
            if basic and user is None:
                self.record(**call, outcome=401)
                return h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            token, access = self._token(user or "", scopes)
            self.record(**call, outcome=200, granted=[a["name"] for a in access])
            return h.reply(200, {"token": token, "access_token": token, "expires_in": 600,
                                 "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type")
        scopes = self._scopes([form.get("scope", "")])
        call = {"method": "POST", "grant": grant, "user": form.get("username"), "scopes": [r for r, _ in scopes],
                "client_id": form.get("client_id")}
        if grant == "password" and self.password_grant:
            user = self._user_for(form.get("username", ""), form.get("password", ""))
        elif grant == "refresh_token" and self.refresh:
            user = self.refresh(form.get("refresh_token", ""))
        else:
            self.record(**call, outcome=400)
            return h.reply(400, {"error": "unsupported_grant_type"})
        if user is None:
            self.record(**call, outcome=401)
            return h.reply(401, {"error": "invalid_grant"})
        token, access = self._token(user, scopes)
        self.record(**call, outcome=200, granted=[a["name"] for a in access])
        h.reply(200, {"access_token": token, "expires_in": 600, "scope": form.get("scope", ""),
                      "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def auth_config(self, realm):
        return {"token": {"realm": realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.pki.signing_cert)}}


# ------------------------------------------------------------------ TLS servers at <ip>:443


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_obj = None

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.server_obj.dispatch(self, "GET", b"")

    def do_HEAD(self):
        self.server_obj.dispatch(self, "HEAD", b"")

    def do_POST(self):
        self.server_obj.dispatch(self, "POST", self._body())

    def do_PUT(self):
        self.server_obj.dispatch(self, "PUT", self._body())

    def do_PATCH(self):
        self.server_obj.dispatch(self, "PATCH", self._body())

    def do_DELETE(self):
        self.server_obj.dispatch(self, "DELETE", b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


class Front:
    """A TLS server at ip:443: `routes` {path prefix: handler(h, method,
    body)}; anything else relayed to `upstream` (host, port) over plain
    HTTP. `seen` records (method, path, auth scheme, Basic user) per
    request."""

    def __init__(self, ip, pki, routes=None, upstream=None):
        self.routes = routes or {}
        self.upstream = upstream
        self.lock = threading.Lock()
        self.seen = []
        # {user: password}: when set, requests without those Basic
        # credentials get 401 with a Basic challenge (a private cache)
        self.require_basic = None
        front = self

        class H(_Handler):
            server_obj = front

        self.server = _Server((ip, 443), H)
        self.server.socket = tls_server_context(pki.cert, pki.key).wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def dispatch(self, h, method, body):
        auth = h.headers.get("Authorization") or ""
        basic = _basic(auth)
        with self.lock:
            self.seen.append({"method": method, "path": h.path.split("?")[0], "scheme": auth.split(" ")[0] or None,
                              "user": basic[0] if basic else None, "basic": basic})
        if self.require_basic is not None and (not basic or self.require_basic.get(basic[0]) != basic[1]):
            return h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                           headers={"WWW-Authenticate": 'Basic realm="private-cache"'})
        for prefix, handler in self.routes.items():
            if h.path.startswith(prefix):
                return handler(h, method, body)
        if self.upstream is None:
            return h.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        self.relay(h, method, body)

    def relay(self, h, method, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        headers["Host"] = h.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = "https"
        try:
            conn.request(method, h.path, body=body if method in ("POST", "PUT", "PATCH") else None, headers=headers)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        h.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                h.send_header(k, v)
        length = r.getheader("Content-Length") if method == "HEAD" else None
        h.send_header("Content-Length", length or str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def basic_seen(self):
        with self.lock:
            return [s["basic"] for s in self.seen if s["basic"]]

    def clear(self):
        with self.lock:
            self.seen.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ images


def push(work: Path, cert_dir: Path, ref: str, creds=ADMIN):
    """Pushes a small image, distinct per `ref`, to docker://`ref` (with a
    tag) with skopeo."""
    layout = work / hashlib.sha256(ref.encode()).hexdigest()[:16]
    if not layout.exists():
        layout.mkdir(parents=True)
        oci_layout(layout, f"pullcred e2e image {ref}\n".encode())
    sh("skopeo", "copy", "--quiet", "--dest-cert-dir", str(cert_dir), "--dest-creds", f"{creds[0]}:{creds[1]}",
       f"oci:{layout}:1.0", f"docker://{ref}")
