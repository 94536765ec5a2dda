"""A STAND-IN for token-exchange endpoints: a generic RFC 8693 security
token service, JFrog Artifactory's OIDC token exchange and Cloudsmith's
OpenID endpoint. Not any vendor's code; it speaks their documented wire
formats so that pullcred's `exchanges:` source can be tested on loopback.

Generic RFC 8693 (OAuth 2.0 Token Exchange, section 2):

  POST /token   application/x-www-form-urlencoded (section 2.1), or
                application/json (the JSON-request variant some services take)
    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    subject_token=<JWT>  subject_token_type=urn:ietf:params:oauth:token-type:jwt
    [audience, scope, resource, requested_token_type, ...]
  200 {"access_token", "issued_token_type", "token_type": "Bearer",
       "expires_in"}                                   (section 2.2.1)
  400 {"error", "error_description"}                  (section 2.2.2 and RFC
      6749 section 5.2): invalid_request for a missing parameter and, as
      section 2.2.2 prescribes, for a subject token that is invalid or that
      policy does not accept; unsupported_grant_type; invalid_target for an
      unknown audience.

JFrog Platform, "OIDC Token Exchange" (JFrog REST APIs,
https://jfrog.com/help/r/jfrog-rest-apis/oidc-token-exchange):

  POST /access/api/v1/oidc/token   application/json
    {"grant_type": <as above>, "subject_token_type":
     "urn:ietf:params:oauth:token-type:id_token", "subject_token",
     "provider_name", ["project_key", "identity_mapping_name", "audience"]}
  200 {"access_token", "expires_in", "scope", "token_type",
       "issued_token_type", "username"}  (jfrog-client-go
       auth.OidcTokenResponseData); the access token is a JWT whose `sub` is
       "jfac@<id>/users/<username>". `omit_username` drops `username`, as
       older platforms do.
  errors: {"errors": [{"code", "message"}]}, 400 / 401 / 403.

Cloudsmith, "Openid Create" (https://docs.cloudsmith.com/api/openid/create;
the path as Cloudsmith's own kubelet credential provider calls it):

  POST /openid/<org>/   application/json {"oidc_token", "service_slug"}
  201 {"token": <JWT with exp>}
  400 / 401 {"detail": ...}
  Stricter than the docs: any other request key is a 400, so a test proves
  pullcred sends exactly that shape.

Every endpoint VERIFIES the subject token as a relying party does: RS256
signature by the cluster's key (tests/satoken.py), issuer, audience (the
`subject_audience` the issuer was registered with), expiry; then applies
the trust rule: `trust` is a list of fnmatch patterns over the token's
`sub` ("system:serviceaccount:team-a:*"); a subject no pattern matches is
refused. Issued tokens are registered with the leak scan (`on_token`).

Control (tests only): configure(mode = ok | error500 | throttle | garbage |
no_token | hang | invalid_grant, trust, expires_in (None: left out),
expires_at ("rfc3339" | "unix" | None), jwt_ttl (issue JWT access tokens
with this exp), omit_username, delay, provider_name, org, service_slug);
calls (each: endpoint, content type, the fields but the subject token, the
subject's `sub`); call_count(endpoint=None).
"""

import fnmatch
import json
import secrets
import threading
import time
import urllib.parse
from datetime import datetime, timezone

import satoken

from .base import QuietHandler, start

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ARTIFACTORY_PATH = "/access/api/v1/oidc/token"
SUBJECT_AUDIENCE = "pullcred-exchange"


class ExchangeStandin:
    """Runs on 127.0.0.1:<free port> in a background thread (https with
    `tls_context`)."""

    def __init__(self, on_token=None, tls_context=None):
        self.lock = threading.Lock()
        self.on_token = on_token or (lambda s: None)
        self.config = {
            "mode": "ok",
            "trust": ["system:serviceaccount:*:*"],
            "subject_audience": SUBJECT_AUDIENCE,
            "audiences": None,  # accepted `audience` values (None: any)
            "expires_in": 3600,
            "expires_at": None,
            "jwt_ttl": None,
            "omit_username": False,
            "delay": 0.0,
            "provider_name": "k8s-oidc",
            "org": "acme",
            "service_slug": "puller-x1y2",
        }
        self.calls = []
        self.issued = {}  # access token -> subject
        standin = self

        class Handler(QuietHandler):
            def do_POST(self):
                standin._post(self)

        self.server = start(Handler, tls_context)
        self.port, self.host, self.url = self.server.port, self.server.host, self.server.url

    def configure(self, **kw):
        with self.lock:
            unknown = set(kw) - set(self.config)
            assert not unknown, f"unknown settings {unknown}"
            self.config.update(kw)

    def call_count(self, endpoint=None):
        with self.lock:
            return sum(1 for c in self.calls if endpoint is None or c["endpoint"] == endpoint)

    def close(self):
        self.server.close()

    # ------------------------------------------------------------ plumbing

    def _post(self, h):
        with self.lock:
            cfg = dict(self.config)
        raw = h.read_body()
        ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        path = urllib.parse.urlsplit(h.path).path
        if path == "/token":
            endpoint = "rfc8693"
        elif path == ARTIFACTORY_PATH:
            endpoint = "artifactory"
        elif path == f"/openid/{cfg['org']}/":
            endpoint = "cloudsmith"
        else:
            return h.reply(404, {"error": "not_found"})
        fields = self._fields(raw, ctype)
        subject_field = "oidc_token" if endpoint == "cloudsmith" else "subject_token"
        token = fields.get(subject_field) if isinstance(fields, dict) else None
        try:
            sub = satoken.unverified_claims(token).get("sub") if isinstance(token, str) else None
        except satoken.InvalidToken:
            sub = None
        with self.lock:
            self.calls.append({
                "endpoint": endpoint,
                "content_type": ctype,
                "fields": {k: v for k, v in fields.items() if k != subject_field} if isinstance(fields, dict) else None,
                "subject": sub,
                "has_subject_token": isinstance(token, str) and bool(token),
            })
        if cfg["delay"]:
            time.sleep(cfg["delay"])
        mode = cfg["mode"]
        if mode == "hang":
            time.sleep(60)
            return
        if mode == "error500":
            return h.reply(500, "<html>internal error</html>", "text/html")
        if mode == "throttle":
            return h.reply(429, {"error": "slow_down"}, headers={"Retry-After": "0"})
        if mode == "garbage":
            return h.reply(200, "<html>this is a login page, not a token</html>", "text/html")
        if mode == "invalid_grant":
            return h.reply(400, {"error": "invalid_grant", "error_description": "the subject token was revoked"})
        handler = {"rfc8693": self._rfc8693, "artifactory": self._artifactory, "cloudsmith": self._cloudsmith}
        handler[endpoint](h, cfg, fields, ctype, token)

    @staticmethod
    def _fields(raw, ctype):
        if ctype == "application/json":
            try:
                v = json.loads(raw)
            except ValueError:
                return None
            return v if isinstance(v, dict) else None
        if ctype == "application/x-www-form-urlencoded":
            pairs = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True)
            out = {}
            for k, v in pairs:
                if k in out:
                    return None  # a repeated parameter is malformed (RFC 6749 section 3.2)
                out[k] = v
            return out
        return None

    def _check_subject(self, cfg, token):
        """The subject's claims, or why it is refused."""
        try:
            claims = satoken.verify(token, audience=cfg["subject_audience"])
        except satoken.InvalidToken as e:
            return None, str(e)
        if claims.get("iss") != satoken.ISSUER:
            return None, "untrusted issuer"
        sub = claims.get("sub") or ""
        if not any(fnmatch.fnmatchcase(sub, p) for p in cfg["trust"]):
            return None, f"no trust rule admits {sub}"
        return claims, None

    def _mint(self, cfg, sub, jwt_sub=None):
        now = int(time.time())
        if cfg["jwt_ttl"] is not None or jwt_sub is not None:
            claims = {"iss": "exchange-standin", "sub": jwt_sub or sub, "iat": now,
                      "exp": now + (cfg["jwt_ttl"] if cfg["jwt_ttl"] is not None else 3600),
                      "jti": secrets.token_hex(8)}
            token = satoken.ROGUE.sign({"alg": "RS256", "typ": "JWT"}, claims)
        else:
            token = "xt-" + secrets.token_urlsafe(24)
        self.on_token(token)
        with self.lock:
            self.issued[token] = sub
        return token

    def _expiry_fields(self, cfg):
        out = {}
        if cfg["expires_in"] is not None:
            out["expires_in"] = cfg["expires_in"]
        if cfg["expires_at"] is not None:
            at = int(time.time()) + 2400
            out["expires_at"] = (datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                                 if cfg["expires_at"] == "rfc3339" else at)
        return out

    # ------------------------------------------------------------ endpoints

    def _rfc8693(self, h, cfg, f, ctype, token):
        def err(code, desc, status=400):
            return h.reply(status, {"error": code, "error_description": desc})

        if f is None:
            return err("invalid_request", "want a form-encoded (or JSON) body")
        if f.get("grant_type") != GRANT:
            return err("unsupported_grant_type", "want the token-exchange grant")
        if not token or f.get("subject_token_type") != JWT_TYPE:
            return err("invalid_request", "subject_token and subject_token_type (jwt) are required")
        if cfg["audiences"] is not None and f.get("audience") not in cfg["audiences"]:
            return err("invalid_target", "unknown audience")
        claims, why = self._check_subject(cfg, token)
        if why:
            return err("invalid_request", f"subject token refused: {why}")
        access = self._mint(cfg, claims["sub"])
        body = {"access_token": access, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer"}
        body.update(self._expiry_fields(cfg))
        h.reply(200, body)

    def _artifactory(self, h, cfg, f, ctype, token):
        def err(status, code, msg):
            return h.reply(status, {"errors": [{"code": code, "message": msg}]})

        if ctype != "application/json" or f is None:
            return err(400, "BAD_REQUEST", "expected a JSON body")
        if f.get("grant_type") != GRANT or f.get("subject_token_type") != ID_TOKEN_TYPE or not token:
            return err(400, "BAD_REQUEST", "grant_type, subject_token_type (id_token) and subject_token are required")
        if f.get("provider_name") != cfg["provider_name"]:
            return err(400, "BAD_REQUEST", "unknown provider")
        claims, why = self._check_subject(cfg, token)
        if why:
            return err(401, "UNAUTHORIZED", f"OIDC token refused: {why}")
        ns = claims.get("kubernetes.io", {}).get("namespace", "node")
        user = f"k8s-{ns}"
        access = self._mint(cfg, claims["sub"], jwt_sub=f"jfac@01hqstandin/users/{user}")
        body = {"access_token": access, "scope": "applied-permissions/groups:readers", "token_type": "Bearer",
                "issued_token_type": ACCESS_TOKEN_TYPE, "username": user}
        body.update(self._expiry_fields(cfg))
        if cfg["omit_username"]:
            body.pop("username")
        h.reply(200, body)

    def _cloudsmith(self, h, cfg, f, ctype, token):
        if ctype != "application/json" or f is None:
            return h.reply(400, {"detail": "Missing or invalid parameters."})
        if set(f) != {"oidc_token", "service_slug"}:
            return h.reply(400, {"detail": f"unexpected fields: {sorted(set(f) - {'oidc_token', 'service_slug'})}"})
        if f["service_slug"] != cfg["service_slug"]:
            return h.reply(400, {"detail": "Missing or invalid parameters (service_slug)."})
        claims, why = self._check_subject(cfg, token)
        if why:
            return h.reply(401, {"detail": "OIDC token cannot be authenticated."})
        ttl = cfg["jwt_ttl"] if cfg["jwt_ttl"] is not None else 5400
        now = int(time.time())
        claims_out = {"iss": "cloudsmith-standin", "sub": cfg["service_slug"], "iat": now, "exp": now + ttl}
        access = satoken.ROGUE.sign({"alg": "RS256", "typ": "JWT"}, claims_out)
        self.on_token(access)
        with self.lock:
            self.issued[access] = claims["sub"]
        h.reply(201, {"token": access})
