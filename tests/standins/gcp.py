"""STAND-INS for Google's credential endpoints, on 127.0.0.1.

Why stand-ins: no real implementation of these services runs offline (there
is no moto for Google), and the tests need to count calls, delay, fail and
check what pullcred sends. Each speaks the documented wire format:

Metadata server (https://cloud.google.com/compute/docs/metadata/querying-metadata)
  GET /computeMetadata/v1/instance/service-accounts/default/token[?scopes=a,b]
  GET /computeMetadata/v1/instance/service-accounts/default/email
      `Metadata-Flavor: Google` is required: without it, 403. Every answer
      carries `Metadata-Flavor: Google`.
      200 {"access_token", "expires_in", "token_type": "Bearer"}
  GET /computeMetadata/v1/project/project-id
  GET /computeMetadata/v1/instance/attributes/cluster-location
  GET /computeMetadata/v1/instance/attributes/cluster-name
      plain text (what a GKE node's metadata server answers); 404 when the
      test configured no value (not a GKE node).

OAuth 2.0 token endpoint, JWT bearer grant (RFC 7523; Google's
"Using OAuth 2.0 for server to server applications")
  POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>
      The JWT's RS256 signature is checked against the test key's public half
      (n, e), and its claims: iss, aud (this URL), scope, iat (now, +-60s),
      exp (iat + at most 3600). Errors: 400 {"error", "error_description"}.

Security Token Service (RFC 8693 token exchange; sts.googleapis.com/v1/token)
  POST /v1/token  grant_type=urn:ietf:params:oauth:grant-type:token-exchange,
      audience, scope, requested_token_type, subject_token_type, subject_token.
      For aws4_request subject tokens the SigV4 signature of the serialized
      GetCallerIdentity request is recomputed with the test AWS secret key.
      Kubernetes service-account tokens (subject_token_type ...:jwt, when the
      test configured `k8s_trusted`, a workload identity pool whose provider
      is the cluster's issuer): the form's audience must be the pool
      provider's (`audience`; else 400 invalid_target), the token must verify
      with tests/satoken.py's key and carry `k8s_token_audience` in its aud
      (else 400 invalid_grant), and its sub must be in `k8s_trusted` (the
      provider's attribute condition; else 400 unauthorized_client "The given
      credential is rejected by the attribute condition.", as Google answers).
      The federated token's expires_in is `expires_in`, not cut at the
      subject token's exp: capping the cache is pullcred's job.

IAM Credentials generateAccessToken
  POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken
      Authorization: Bearer <STS token>; {"scope": [...], "lifetime": "3600s"}
      200 {"accessToken", "expireTime": RFC 3339}
      The bearer must be a federated token this STS minted (else 401). With
      `impersonators` = {email: {subject, ..}} configured, a token federated
      from a service-account token may impersonate only the emails whose set
      names its subject (roles/iam.workloadIdentityUser); else 403
      PERMISSION_DENIED, as IAM answers.

A subject-token URL (GET /subject, header `X-Test-Auth` required) and the
EC2 instance metadata service (IMDSv2: PUT /latest/api/token, then GETs with
X-aws-ec2-metadata-token) for the aws1 credential source.

Control (tests only): configure(**kw); calls; tokens.
"""

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from datetime import datetime, timezone

from .base import QuietHandler, b64url_decode, start

METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"
METADATA_EMAIL = "/computeMetadata/v1/instance/service-accounts/default/email"
METADATA_ATTRIBUTES = {
    "/computeMetadata/v1/project/project-id": "project_id",
    "/computeMetadata/v1/instance/attributes/cluster-location": "cluster_location",
    "/computeMetadata/v1/instance/attributes/cluster-name": "cluster_name",
}
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AWS_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rsa_pkcs1_sha256_verify(n, e, message, signature):
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.2), in plain Python."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    m = pow(int.from_bytes(signature, "big"), e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(m, expected)


def sigv4_check(token, secret_key, audience):
    """Recomputes the SigV4 signature of a serialized GetCallerIdentity
    request (AIP-4117). Returns None when it verifies, else why not."""
    req = json.loads(urllib.parse.unquote(token))
    if req.get("method") != "POST" or req.get("body", "") != "":
        return "not an empty POST"
    headers = {h["key"].lower(): h["value"] for h in req["headers"]}
    auth = headers.pop("authorization", "")
    if headers.get("x-goog-cloud-target-resource") != audience:
        return "x-goog-cloud-target-resource is not the audience"
    parts = dict(p.strip().split("=", 1) for p in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
    access_key, date, region, service, _ = parts["Credential"].split("/")
    signed = parts["SignedHeaders"].split(";")
    if sorted(signed) != sorted(headers):
        return "not every header is signed"
    url = urllib.parse.urlsplit(req["url"])
    if service != "sts" or url.netloc != headers["host"] or f"sts.{region}." not in url.netloc:
        return "wrong service, host or region"
    query = "&".join(sorted(p for p in url.query.split("&") if p))
    canonical = "\n".join(
        [
            "POST",
            url.path or "/",
            query,
            "".join(f"{h}:{headers[h].strip()}\n" for h in signed),
            ";".join(signed),
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", headers["x-amz-date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )

    def mac(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = mac(("AWS4" + secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        k = mac(k, part)
    if not hmac.compare_digest(hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest(), parts["Signature"]):
        return "SigV4 signature does not verify"
    return None


class GoogleStandin:
    """All the endpoints above on one 127.0.0.1 port, in a background thread."""

    def __init__(self, on_token=None):
        self.lock = threading.Lock()
        self.config = {
            "mode": "ok",  # ok | error500 | throttle | garbage | truncated | huge | no_flavor | hang | no_expiry | echo_subject (STS answers with the subject token)
            "expires_in": 3600,
            "delay": 0.0,
            "fail_first": 0,
            "email": "puller@project.iam.gserviceaccount.com",
            # service-account key checks
            "public_key": None,  # (n, e)
            "expected_scope": CLOUD_PLATFORM,
            # STS checks
            "audience": None,
            "subject_token": None,  # expected subject token (file/url sources)
            "aws_secret_key": None,  # for aws4_request subject tokens
            "subject_header": "x-test-auth-value",
            "subject_body": "",
            "imds_role": "node-role",
            "imds_creds": None,
            # GKE node metadata (None: 404)
            "project_id": None,
            "cluster_location": None,
            "cluster_name": None,
            # Kubernetes service-account tokens at STS (None: that path is off)
            "k8s_trusted": None,  # set of "system:serviceaccount:ns:name" the provider admits
            "k8s_token_audience": None,  # the aud the service-account token must carry
            "impersonators": None,  # {email: set of subjects} allowed to generateAccessToken
            "iam_expires_in": None,  # lifetime of generateAccessToken answers (None: expires_in)
        }
        self.calls = []
        self.tokens = []
        self.sts_tokens = set()
        self.federated = {}  # federated token -> service-account subject it came from
        self.on_token = on_token
        standin = self

        class Handler(QuietHandler):
            def do_GET(self):
                standin.handle(self, "GET", b"")

            def do_PUT(self):
                standin.handle(self, "PUT", self.read_body())

            def do_POST(self):
                standin.handle(self, "POST", self.read_body())

        self.server = start(Handler)
        self.port = self.server.port
        self.host = self.server.host
        self.url = self.server.url
        self.thread = self.server.thread

    # ------------------------------------------------------------ control
    def configure(self, **kw):
        with self.lock:
            self.config.update(kw)

    def call_count(self, kind=None):
        with self.lock:
            return len([c for c in self.calls if kind is None or c["kind"] == kind])

    def close(self):
        self.server.close()

    def mint(self, prefix="ya29.standin-"):
        token = prefix + secrets.token_hex(24)
        with self.lock:
            self.tokens.append(token)
        if self.on_token:
            self.on_token(token)
        return token

    # ------------------------------------------------------------ dispatch
    def handle(self, h, method, raw):
        url = urllib.parse.urlsplit(h.path)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        if path.startswith("/computeMetadata/"):
            kind = "metadata"
        elif path == "/token":
            kind = "oauth"
        elif path == "/v1/token":
            kind = "sts"
        elif path.endswith(":generateAccessToken"):
            kind = "iam"
        elif path == "/subject":
            kind = "subject"
        elif path.startswith("/latest/"):
            kind = "imds"
        else:
            return h.reply(404, {"error": "not_found"})
        with self.lock:
            cfg = dict(self.config)
            n = len([c for c in self.calls if c["kind"] == kind])
            call = {
                "kind": kind,
                "method": method,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in h.headers.items()},
                "time": time.time(),
            }
            self.calls.append(call)
        mode = cfg["mode"]
        if n < cfg.get("fail_first", 0):
            mode = cfg.get("fail_mode", "error500")
        if cfg["delay"] and kind in ("metadata", "oauth", "sts"):
            time.sleep(cfg["delay"])
        getattr(self, kind)(h, method, path, query, raw, cfg, mode, call)

    def common_faults(self, h, mode, headers=None):
        if mode == "hang":
            time.sleep(300)
            return True
        if mode == "error500":
            h.reply(500, {"error": "internal_failure", "error_description": "backend error"}, headers=headers)
            return True
        if mode == "throttle":
            h.reply(429, {"error": "rate_limit_exceeded", "error_description": "Too Many Requests"}, headers=headers)
            return True
        if mode == "garbage":
            h.reply(200, "<html>this is not json</html>", "text/html", headers=headers)
            return True
        if mode == "truncated":
            h.reply(200, '{"access_token": "ya29.trunc', headers=headers)
            return True
        if mode == "huge":
            h.send_huge(headers=headers)
            return True
        return False

    def token_body(self, cfg, mode):
        body = {"access_token": self.mint(), "token_type": "Bearer"}
        if mode != "no_expiry":
            body["expires_in"] = cfg["expires_in"]
        return body

    # ------------------------------------------------------------ metadata
    def metadata(self, h, method, path, query, raw, cfg, mode, call):
        flavor = {"Metadata-Flavor": "Google"}
        if h.headers.get("Metadata-Flavor") != "Google":
            call["refused"] = True
            return h.reply(403, "Missing required header: Metadata-Flavor: Google", "text/plain", flavor)
        if method != "GET":
            return h.reply(405, "", "text/plain", flavor)
        if self.common_faults(h, mode, flavor):
            return
        if path == METADATA_EMAIL:
            return h.reply(200, cfg["email"], "text/plain", flavor)
        if path in METADATA_ATTRIBUTES:
            value = cfg[METADATA_ATTRIBUTES[path]]
            if value is None:
                return h.reply(404, "Not Found", "text/plain", flavor)
            return h.reply(200, value, "text/plain", flavor)
        if path != METADATA_TOKEN:
            return h.reply(404, "Not Found", "text/plain", flavor)
        body = self.token_body(cfg, mode)
        if mode == "no_flavor":
            return h.reply(200, body)
        h.reply(200, body, headers=flavor)

    # ------------------------------------------------------------ OAuth (JWT bearer)
    def oauth(self, h, method, path, query, raw, cfg, mode, call):
        if self.common_faults(h, mode):
            return
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        if form.get("grant_type") != JWT_BEARER:
            return h.reply(400, {"error": "unsupported_grant_type", "error_description": "want jwt-bearer"})
        assertion = form.get("assertion", "")
        if self.on_token:
            self.on_token(assertion)
        why = self.check_jwt(assertion, cfg, f"{self.url}/token")
        call["verified"] = why is None
        if why:
            call["why"] = why
            return h.reply(400, {"error": "invalid_grant", "error_description": why})
        h.reply(200, self.token_body(cfg, mode))

    def check_jwt(self, jwt, cfg, aud):
        parts = jwt.split(".")
        if len(parts) != 3:
            return "Invalid JWT: not three parts."
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except ValueError:
            return "Invalid JWT: undecodable."
        if header.get("alg") != "RS256":
            return "Invalid JWT: alg is not RS256."
        n, e = cfg["public_key"]
        if not rsa_pkcs1_sha256_verify(n, e, f"{parts[0]}.{parts[1]}".encode(), sig):
            return "Invalid JWT Signature."
        now = time.time()
        if claims.get("iss") != cfg["email"]:
            return "Invalid JWT: iss is not the service account."
        if claims.get("aud") != aud:
            return "Invalid JWT: aud is not this token endpoint."
        if claims.get("scope") != cfg["expected_scope"]:
            return "Invalid JWT: unexpected scope."
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return "Invalid JWT: iat/exp are not integers."
        if abs(iat - now) > 60:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        if not (iat < exp <= iat + 3600):
            return "Invalid JWT: exp must be after iat and at most one hour later."
        return None

    # ------------------------------------------------------------ STS
    def sts(self, h, method, path, query, raw, cfg, mode, call):
        if self.common_faults(h, mode):
            return
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        call["form"] = {k: v for k, v in form.items() if k != "subject_token"}
        if self.on_token and form.get("subject_token"):
            self.on_token(form["subject_token"])

        def bad(why):
            call["why"] = why
            return h.reply(400, {"error": "invalid_request", "error_description": why})

        if form.get("grant_type") != TOKEN_EXCHANGE:
            return bad("grant_type must be token-exchange")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return bad("requested_token_type must be access_token")
        if cfg["k8s_trusted"] is not None and form.get("subject_token_type") == JWT_TOKEN_TYPE:
            return self.sts_k8s(h, form, cfg, mode, call, bad)
        if form.get("audience") != cfg["audience"]:
            return bad("audience does not match the provider")
        if not form.get("scope"):
            return bad("scope is required")
        subject = form.get("subject_token", "")
        if form.get("subject_token_type") == AWS_TOKEN_TYPE:
            why = sigv4_check(subject, cfg["aws_secret_key"], cfg["audience"])
            if why:
                return bad(why)
        elif subject != cfg["subject_token"]:
            return h.reply(400, {"error": "invalid_grant", "error_description": "subject token rejected"})
        call["verified"] = True
        body = self.token_body(cfg, mode)
        body["issued_token_type"] = ACCESS_TOKEN_TYPE
        if mode == "echo_subject":
            # A broken or hostile upstream handing the subject token back as
            # the access token: pullcred must not pass it on as a password.
            body["access_token"] = form.get("subject_token", "")
        with self.lock:
            self.sts_tokens.add(body["access_token"])
        h.reply(200, body)

    def sts_k8s(self, h, form, cfg, mode, call, bad):
        """A Kubernetes service-account token exchanged at a workload identity
        pool whose provider is the cluster's OIDC issuer (GKE's own pool, or
        a pool set up for any cluster)."""
        import satoken  # tests/satoken.py: only tests that configure this path need it

        if form.get("subject_token_type") != JWT_TOKEN_TYPE:
            return bad("subject_token_type must be jwt")
        if form.get("audience") != cfg["audience"]:
            call["why"] = "audience"
            return h.reply(400, {"error": "invalid_target", "error_description":
                                 'The target service indicated by the "audience" parameters is invalid. This might '
                                 "either be because the pool or provider is disabled or deleted or because it doesn't exist."})
        if not form.get("scope"):
            return bad("scope is required")
        try:
            call["subject"] = satoken.unverified_claims(form.get("subject_token", "")).get("sub")
        except satoken.InvalidToken:
            call["subject"] = None
        try:
            claims = satoken.verify(form.get("subject_token", ""), audience=cfg["k8s_token_audience"])
        except satoken.InvalidToken as e:
            call["why"] = str(e)
            return h.reply(400, {"error": "invalid_grant", "error_description": f"The subject token is invalid: {e}."})
        if claims.get("sub") not in cfg["k8s_trusted"]:
            call["why"] = "attribute condition"
            return h.reply(400, {"error": "unauthorized_client",
                                 "error_description": "The given credential is rejected by the attribute condition."})
        call["verified"] = True
        body = self.token_body(cfg, mode)
        body["issued_token_type"] = ACCESS_TOKEN_TYPE
        if mode == "echo_subject":
            # A broken or hostile upstream handing the subject token back as
            # the access token: pullcred must not pass it on as a password.
            body["access_token"] = form.get("subject_token", "")
        with self.lock:
            self.sts_tokens.add(body["access_token"])
            self.federated[body["access_token"]] = claims["sub"]
        h.reply(200, body)

    # ------------------------------------------------------------ IAM
    def iam(self, h, method, path, query, raw, cfg, mode, call):
        auth = h.headers.get("Authorization", "")
        bearer = auth.removeprefix("Bearer ")
        with self.lock:
            known = bearer in self.sts_tokens
            subject = self.federated.get(bearer)
        call["email"] = urllib.parse.unquote(path.rsplit("/", 1)[-1].removesuffix(":generateAccessToken"))
        call["subject"] = subject
        if not known:
            return h.reply(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}})
        if subject is not None and cfg["impersonators"] is not None:
            if subject not in cfg["impersonators"].get(call["email"], set()):
                call["denied"] = True
                return h.reply(403, {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' "
                                               "denied on resource (or it may not exist).", "status": "PERMISSION_DENIED"}})
        req = json.loads(raw or b"{}")
        call["body"] = req
        if not isinstance(req.get("scope"), list) or not req["scope"]:
            return h.reply(400, {"error": {"code": 400, "message": "scope is required", "status": "INVALID_ARGUMENT"}})
        life = cfg["iam_expires_in"] if cfg["iam_expires_in"] is not None else cfg["expires_in"]
        expire = datetime.fromtimestamp(time.time() + life, timezone.utc)
        h.reply(200, {"accessToken": self.mint(), "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")})

    # ------------------------------------------------------------ subject token URL
    def subject(self, h, method, path, query, raw, cfg, mode, call):
        if h.headers.get("X-Test-Auth") != cfg["subject_header"]:
            return h.reply(401, {"error": "unauthorized"})
        h.reply(200, cfg["subject_body"])

    # ------------------------------------------------------------ EC2 IMDSv2
    def imds(self, h, method, path, query, raw, cfg, mode, call):
        if method == "PUT" and path == "/latest/api/token":
            if not h.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return h.reply(400, "", "text/plain")
            with self.lock:
                self.imds_session = "imds-session-" + secrets.token_hex(8)
            if self.on_token:
                self.on_token(self.imds_session)
            return h.reply(200, self.imds_session, "text/plain")
        with self.lock:
            session = getattr(self, "imds_session", None)
        if not session or h.headers.get("X-aws-ec2-metadata-token") != session:
            return h.reply(401, "", "text/plain")
        if path == "/latest/meta-data/placement/availability-zone":
            return h.reply(200, "us-east-2b", "text/plain")
        base = "/latest/meta-data/iam/security-credentials"
        if path in (base, base + "/"):
            return h.reply(200, cfg["imds_role"], "text/plain")
        if path == f"{base}/{cfg['imds_role']}":
            return h.reply(200, cfg["imds_creds"])
        h.reply(404, "", "text/plain")
