"""A STAND-IN for AWS STS AssumeRoleWithWebIdentity, with a trust policy.

Why a stand-in when moto exists: moto implements AssumeRoleWithWebIdentity,
but checks neither the token (signature, audience, expiry) nor the role's
trust policy: it hands any caller credentials for any role. The isolation
tests need an identity provider that refuses a service account the role does
not trust, as IAM does, so that "pullcred served B a credential" can only
mean pullcred got it for B, never that STS was lax. Tests that only need a
real-shaped answer use moto (conftest.moto).

Wire format (AWS STS API Reference, "AssumeRoleWithWebIdentity"; the AWS
query protocol, as the SDKs send it): an UNSIGNED request (the operation
takes no AWS credentials; the token is the proof)

  POST /  Content-Type: application/x-www-form-urlencoded
          Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=..
          &RoleSessionName=..&WebIdentityToken=..[&DurationSeconds=..]
  200 text/xml
    <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <AssumeRoleWithWebIdentityResult>
        <Credentials><AccessKeyId/><SecretAccessKey/><SessionToken/><Expiration/></Credentials>
        <SubjectFromWebIdentityToken/><AssumedRoleUser><Arn/><AssumedRoleId/></AssumedRoleUser>
        <Audience/><Provider/>
      </AssumeRoleWithWebIdentityResult>
      <ResponseMetadata><RequestId/></ResponseMetadata>
    </AssumeRoleWithWebIdentityResponse>
  errors: <ErrorResponse xmlns=..><Error><Type>Sender</Type><Code/><Message/></Error>
          <RequestId/></ErrorResponse>
    403 AccessDenied            the role's trust policy does not name the subject
    400 InvalidIdentityToken    bad signature, unknown key, wrong audience, not a JWT
    400 ExpiredTokenException   exp <= now
    400 ValidationError         RoleSessionName not 2-64 of [\\w+=,.@-], bad RoleArn,
                                DurationSeconds outside 900..43200

Expiration is min(now + DurationSeconds (default 3600), the token's exp)
here; real STS does not cut the session at the token's exp, but pullcred
must not rely on it outliving the token either way.

The token is verified with tests/satoken.py's public key (the cluster's
JWKS) and `audience` (what the cluster's OIDC provider in IAM lists as its
client ID: "sts.amazonaws.com" on EKS).

Control (tests only): configure(trust={role_arn: {subject, ..}}, audience,
mode = ok | error500 | throttle | garbage | expired | hang), calls, issued.
"""

import re
import secrets
import string
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from xml.sax.saxutils import escape

import satoken

from .base import QuietHandler, start

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$", re.ASCII)


def iso8601(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StsStandin:
    """Runs on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, on_secret=None, audience=satoken.DEFAULT_AUDIENCE):
        self.lock = threading.Lock()
        self.on_secret = on_secret or (lambda s: None)
        self.config = {"mode": "ok", "trust": {}, "audience": audience, "delay": 0.0}
        self.calls = []
        # AccessKeyId -> {"secret", "session_token", "role", "subject", "session", "expiration"}
        self.issued = {}
        standin = self

        class Handler(QuietHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                standin.handle(self, "GET", dict(urllib.parse.parse_qsl(url.query)))

            def do_POST(self):
                raw = self.read_body()
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                params.update(urllib.parse.parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
                standin.handle(self, "POST", params)

            def reply(self, status, body, ctype="text/xml", headers=None):
                super().reply(status, body, ctype, {"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})})

        self.server = start(Handler)
        self.port = self.server.port
        self.url = self.server.url

    # ------------------------------------------------------------ control
    def configure(self, **kw):
        with self.lock:
            self.config.update(kw)

    def trust(self, role_arn, *subjects):
        """Adds subjects ("system:serviceaccount:ns:name") to the role's trust
        policy (the role's sub condition on the cluster's OIDC provider)."""
        with self.lock:
            self.config["trust"].setdefault(role_arn, set()).update(subjects)

    def call_count(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.server.close()

    # ------------------------------------------------------------ API
    def handle(self, h, method, params):
        with self.lock:
            cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.config.items()}
        token = params.get("WebIdentityToken", "")
        try:
            claims = satoken.unverified_claims(token)
        except satoken.InvalidToken:
            claims = {}
        call = {
            "method": method,
            "action": params.get("Action"),
            "version": params.get("Version"),
            "role": params.get("RoleArn"),
            "session": params.get("RoleSessionName"),
            "duration": params.get("DurationSeconds"),
            "subject": claims.get("sub"),
            "content_type": h.headers.get("Content-Type"),
            "signed": bool(h.headers.get("Authorization")),
            "time": time.time(),
        }
        with self.lock:
            self.calls.append(call)
        if cfg["delay"]:
            time.sleep(cfg["delay"])

        def error(status, code, message):
            call["outcome"] = code
            body = (
                f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
            h.reply(status, body)

        mode = cfg["mode"]
        if mode == "hang":
            time.sleep(300)
            return
        if mode == "error500":
            call["outcome"] = "InternalFailure"
            return h.reply(500, f'<ErrorResponse xmlns="{NS}"><Error><Type>Receiver</Type><Code>InternalFailure</Code>'
                                f"<Message>stand-in failure</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        if mode == "throttle":
            return error(400, "Throttling", "Rate exceeded")
        if mode == "garbage":
            call["outcome"] = "garbage"
            return h.reply(200, "<html>this is not an STS answer</html>")
        if call["action"] != "AssumeRoleWithWebIdentity":
            return error(400, "InvalidAction", f"Could not find operation {call['action']} for version {call['version']}")
        if call["version"] != "2011-06-15":
            return error(400, "InvalidParameterValue", "unsupported Version")
        role = call["role"] or ""
        m = ROLE_ARN.match(role)
        if not m:
            return error(400, "ValidationError", f"{role!r} is not a valid role ARN")
        session = call["session"] or ""
        if not SESSION_NAME.match(session):
            return error(400, "ValidationError",
                         "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: "
                         "Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64")
        duration = int(call["duration"] or 3600)
        if not 900 <= duration <= 43200:
            return error(400, "ValidationError", "DurationSeconds must be between 900 and 43200")
        if mode == "expired":
            return error(400, "ExpiredTokenException", "Token expired: current date/time must be before the expiration date/time")
        try:
            claims = satoken.verify(token)
        except satoken.InvalidToken as e:
            if str(e) == "expired":
                return error(400, "ExpiredTokenException", "Token expired: current date/time must be before the expiration date/time")
            return error(400, "InvalidIdentityToken", f"Couldn't verify the token: {e}")
        auds = claims["aud"] if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if cfg["audience"] not in auds:
            return error(400, "InvalidIdentityToken", "Incorrect token audience")
        sub = claims.get("sub")
        if sub not in cfg["trust"].get(role, set()):
            return error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")

        now = time.time()
        expiration = int(min(now + duration, claims["exp"]))
        akid = "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        secret = "sts-standin-secret-" + secrets.token_urlsafe(24)
        session_token = "sts-standin-session-" + secrets.token_urlsafe(96)
        self.on_secret(secret)
        self.on_secret(session_token)
        with self.lock:
            self.issued[akid] = {
                "secret": secret,
                "session_token": session_token,
                "role": role,
                "subject": sub,
                "session": session,
                "expiration": expiration,
            }
        call["outcome"] = "ok"
        call["access_key_id"] = akid
        account, role_name = m.group(1), m.group(2)
        body = (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}">'
            "<AssumeRoleWithWebIdentityResult>"
            "<Credentials>"
            f"<AccessKeyId>{akid}</AccessKeyId>"
            f"<SecretAccessKey>{escape(secret)}</SecretAccessKey>"
            f"<SessionToken>{escape(session_token)}</SessionToken>"
            f"<Expiration>{iso8601(expiration)}</Expiration>"
            "</Credentials>"
            f"<SubjectFromWebIdentityToken>{escape(sub)}</SubjectFromWebIdentityToken>"
            "<AssumedRoleUser>"
            f"<Arn>arn:aws:sts::{account}:assumed-role/{escape(role_name)}/{escape(session)}</Arn>"
            f"<AssumedRoleId>AROA{secrets.token_hex(8).upper()}:{escape(session)}</AssumedRoleId>"
            "</AssumedRoleUser>"
            f"<Audience>{escape(cfg['audience'])}</Audience>"
            f"<Provider>{escape(str(claims.get('iss', '')).removeprefix('https://'))}</Provider>"
            "</AssumeRoleWithWebIdentityResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )
        h.reply(200, body)
