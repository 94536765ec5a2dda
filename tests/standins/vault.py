"""A STAND-IN for HashiCorp Vault (and OpenBao, which serves the same API):
the kubernetes, jwt and approle auth methods and a KV version 2 mount, with
policies. Not Vault: only what pullcred calls, with Vault's wire format and
Vault's refusals, so that a test passing means pullcred logged in as the
right role and read what that role may read.

Wire format:
- kubernetes login (https://developer.hashicorp.com/vault/api-docs/auth/kubernetes):
    POST /v1/auth/<mount>/login  {"role": ROLE, "jwt": SA_TOKEN}
  the role's config as Vault's: bound_service_account_names,
  bound_service_account_namespaces (lists; "*" matches any), audience
  (optional), token_ttl, token_policies. The JWT is verified here (RS256
  against the configured public key, iss, exp, aud), as Vault does with
  pem_keys / the issuer's keys; then the SA name and namespace bindings.
- jwt login (https://developer.hashicorp.com/vault/api-docs/auth/jwt):
    POST /v1/auth/<mount>/login  {"role": ROLE, "jwt": JWT}
  role config: bound_audiences (required by Vault for a JWT with aud),
  bound_subject (optional), token_ttl, token_policies.
- approle login (https://developer.hashicorp.com/vault/api-docs/auth/approle):
    POST /v1/auth/<mount>/login  {"role_id": ..., "secret_id": ...}
- every login answers 200
    {"auth": {"client_token", "accessor", "policies", "token_policies",
              "lease_duration", "renewable", "metadata", "entity_id",
              "token_type": "service", "orphan": true}, ...}
- KV v2 read (https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2):
    GET /v1/<mount>/data/<path>  X-Vault-Token: TOKEN
    200 {"data": {"data": {...}, "metadata": {...}}, "lease_duration": 0, ...}
  the token's policies must allow the path (a list of globs per policy,
  capability "read" implied), else 403 {"errors": ["permission denied"]};
  no secret: 404 {"errors": []}.
- X-Vault-Namespace (Enterprise, OpenBao): when `namespace` is set, a
  request without that header sees no roles and no secrets (Vault answers
  as if the mount had no such role or path).
- errors: {"errors": ["..."]} with Vault's texts: login with a bad role
  400 "invalid role name \\"x\\"", a bad token 403 "permission denied",
  a name not bound 403 "service account name not authorized", a namespace
  not bound 403 "namespace not authorized", an audience 403 "invalid
  audience (aud) claim: audience claim does not match any expected
  audience"; approle 400 "invalid role or secret ID".

Control (tests only): kube_role(), jwt_role(), approle(), policy(), put();
mode = ok | error500 | sealed | garbage | hang | deny (every login 403);
calls (method, path, role-or-None), logins (mount, role, ns/sa or None),
refusals (path, status, ns/sa or None),
tokens issued (each passed to on_token, to be registered as a secret).
"""

import fnmatch
import json
import secrets
import threading
import time
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

import satoken

from .base import QuietHandler, b64url_decode, start


class Refusal(Exception):
    def __init__(self, status, message, who=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.who = who


class VaultStandin:
    def __init__(self, on_token=None, tls_context=None, public_key=None, issuer=satoken.ISSUER):
        self.on_token = on_token or (lambda t: None)
        self.public_key = public_key or satoken.KEY.public
        self.issuer = issuer
        self.namespace = None
        self.mode = "ok"
        self.hang_seconds = 30
        self.roles = {}  # (mount, role) -> config
        self.approles = {}  # (mount, role_id) -> config
        self.policies = {}  # name -> [path globs]
        self.kv = {}  # (mount, path) -> (data, lease_duration)
        self.tokens = {}  # client token -> {"policies", "expires", "role"}
        self.calls = []
        self.logins = []
        self.refusals = []  # (path, status, ns/sa or None)
        self.lock = threading.Lock()
        standin = self

        class Handler(QuietHandler):
            def do_POST(self):
                standin._handle(self, "POST")

            def do_GET(self):
                standin._handle(self, "GET")

        self.server = start(Handler, tls_context)
        self.url = self.server.url

    def close(self):
        self.server.close()

    # ------------------------------------------------------------ configuration

    def kube_role(self, name, names, namespaces, audience=None, policies=(), ttl=3600, mount="kubernetes"):
        self.roles[(mount, name)] = {
            "type": "kubernetes",
            "bound_service_account_names": list(names),
            "bound_service_account_namespaces": list(namespaces),
            "audience": audience,
            "token_policies": list(policies),
            "token_ttl": ttl,
        }

    def jwt_role(self, name, bound_audiences, bound_subject=None, policies=(), ttl=3600, mount="jwt"):
        self.roles[(mount, name)] = {
            "type": "jwt",
            "bound_audiences": list(bound_audiences),
            "bound_subject": bound_subject,
            "token_policies": list(policies),
            "token_ttl": ttl,
        }

    def approle(self, role_id, secret_id, policies=(), ttl=3600, mount="approle"):
        self.approles[(mount, role_id)] = {"secret_id": secret_id, "token_policies": list(policies), "token_ttl": ttl}

    def policy(self, name, *paths):
        """A policy granting read on `paths` (globs over MOUNT/data/PATH)."""
        self.policies[name] = list(paths)

    def put(self, path, data, mount="secret", lease_duration=0):
        self.kv[(mount, path.strip("/"))] = (dict(data), lease_duration)

    def count(self, method=None, prefix=""):
        with self.lock:
            return sum(1 for m, p, _ in self.calls if (method is None or m == method) and p.startswith(prefix))

    def login_roles(self):
        with self.lock:
            return [role for _, role, _ in self.logins]

    # ------------------------------------------------------------ serving

    def _handle(self, h, method):
        path = h.path.split("?", 1)[0]
        body = h.read_body() if method == "POST" else b""
        role = None
        try:
            role = json.loads(body).get("role") if body else None
        except (ValueError, AttributeError):
            pass
        with self.lock:
            self.calls.append((method, path, role if isinstance(role, str) else None))
        mode = self.mode
        if mode == "hang":
            time.sleep(self.hang_seconds)
            return
        if mode == "error500":
            return h.reply(500, {"errors": ["1 error occurred:\n\t* internal error\n\n"]})
        if mode == "sealed":
            return h.reply(503, {"errors": ["Vault is sealed"]})
        if mode == "garbage":
            return h.reply(200, "<html>upstream proxy error</html>", ctype="text/html")
        in_namespace = self.namespace is None or (h.headers.get("X-Vault-Namespace") or "").strip("/") == self.namespace
        try:
            if method == "POST" and path.startswith("/v1/auth/") and path.endswith("/login"):
                mount = path[len("/v1/auth/") : -len("/login")]
                if mode == "deny":
                    raise Refusal(403, "permission denied")
                answer = self._login(mount, body, in_namespace)
                return h.reply(200, answer)
            if method == "GET" and path.startswith("/v1/") and "/data/" in path:
                mount, secret = path[len("/v1/") :].split("/data/", 1)
                return h.reply(200, self._read(mount, secret, h.headers.get("X-Vault-Token"), in_namespace))
            raise Refusal(404, f"no handler for route \"{path.lstrip('/')}\". route entry not found.")
        except Refusal as r:
            with self.lock:
                self.refusals.append((path, r.status, r.who))
            return h.reply(r.status, {"errors": [r.message] if r.message else []})

    def _login(self, mount, body, in_namespace):
        try:
            req = json.loads(body)
        except ValueError:
            raise Refusal(400, "error parsing JSON")
        if not isinstance(req, dict):
            raise Refusal(400, "error parsing JSON")
        if "role_id" in req or "secret_id" in req:
            cfg = self.approles.get((mount, req.get("role_id"))) if in_namespace else None
            if cfg is None or not secrets.compare_digest(str(req.get("secret_id", "")), cfg["secret_id"]):
                raise Refusal(400, "invalid role or secret ID")
            return self._issue(mount, "approle", cfg, None)
        role, jwt = req.get("role"), req.get("jwt")
        if not role:
            raise Refusal(400, "missing role")
        if not jwt:
            raise Refusal(400, "missing jwt")
        cfg = self.roles.get((mount, role)) if in_namespace else None
        if cfg is None:
            raise Refusal(400, f'invalid role name "{role}"')
        claims = self._verify(jwt)
        auds = claims.get("aud")
        auds = auds if isinstance(auds, list) else [auds]
        if cfg["type"] == "kubernetes":
            if cfg["audience"] and cfg["audience"] not in auds:
                raise Refusal(403, "invalid audience (aud) claim: audience claim does not match any expected audience")
            k = claims.get("kubernetes.io") or {}
            ns = k.get("namespace")
            sa = (k.get("serviceaccount") or {}).get("name")
            who = f"{ns}/{sa}"
            if not _bound(cfg["bound_service_account_names"], sa):
                raise Refusal(403, "service account name not authorized", who)
            if not _bound(cfg["bound_service_account_namespaces"], ns):
                raise Refusal(403, "namespace not authorized", who)
        else:
            if not any(a in auds for a in cfg["bound_audiences"]):
                raise Refusal(403, "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience")
            if cfg["bound_subject"] and claims.get("sub") != cfg["bound_subject"]:
                raise Refusal(403, "error validating claims: sub claim does not match bound subject")
            who = claims.get("sub")
        return self._issue(mount, role, cfg, who)

    def _verify(self, jwt):
        parts = jwt.split(".") if isinstance(jwt, str) else []
        if len(parts) != 3:
            raise Refusal(403, "permission denied")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except ValueError:
            raise Refusal(403, "permission denied")
        if header.get("alg") != "RS256":
            raise Refusal(403, "permission denied")
        try:
            self.public_key.verify(sig, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001 - cryptography's InvalidSignature
            raise Refusal(403, "permission denied")
        if claims.get("iss") != self.issuer:
            raise Refusal(403, "permission denied")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= time.time():
            raise Refusal(403, "permission denied")
        return claims

    def _issue(self, mount, role, cfg, who):
        token = "hvs." + secrets.token_urlsafe(24)
        self.on_token(token)
        with self.lock:
            self.tokens[token] = {
                "policies": cfg["token_policies"],
                "expires": time.time() + cfg["token_ttl"],
                "role": role,
            }
            self.logins.append((mount, role, who))
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": None,
            "wrap_info": None,
            "warnings": None,
            "auth": {
                "client_token": token,
                "accessor": secrets.token_urlsafe(12),
                "policies": ["default", *cfg["token_policies"]],
                "token_policies": ["default", *cfg["token_policies"]],
                "metadata": {"role": role} if who is None else {"role": role, "subject": who},
                "lease_duration": cfg["token_ttl"],
                "renewable": True,
                "entity_id": str(uuid.uuid4()),
                "token_type": "service",
                "orphan": True,
            },
        }

    def _read(self, mount, secret, token, in_namespace):
        with self.lock:
            t = self.tokens.get(token or "")
        if t is None or t["expires"] <= time.time():
            raise Refusal(403, "permission denied")
        full = f"{mount}/data/{secret}"
        allowed = any(fnmatch.fnmatchcase(full, g) for p in t["policies"] for g in self.policies.get(p, []))
        if not allowed:
            raise Refusal(403, "1 error occurred:\n\t* permission denied\n\n")
        found = self.kv.get((mount, secret)) if in_namespace else None
        if found is None:
            raise Refusal(404, "")
        data, lease = found
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": lease,
            "data": {
                "data": data,
                "metadata": {
                    "created_time": "2024-01-01T00:00:00Z",
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": 1,
                },
            },
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }


def _bound(allowed, value):
    return isinstance(value, str) and any(a == "*" or fnmatch.fnmatchcase(value, a) for a in allowed)
