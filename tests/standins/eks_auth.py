"""A STAND-IN for the Amazon EKS Auth API, AssumeRoleForPodIdentity (EKS Pod Identity).

Why a stand-in: moto has no EKS Auth, and the isolation tests need an
identity provider that verifies the service-account token and knows which
service accounts have an association, as EKS Auth does.

Wire format (Amazon EKS API Reference, "Amazon EKS Auth" >
"AssumeRoleForPodIdentity"; aws-sdk-go-v2 service/eksauth, restJson1):

  POST /clusters/<clusterName>/assume-role-for-pod-identity
       Content-Type: application/json
       Authorization: AWS4-HMAC-SHA256 Credential=<AKID>/<date>/<region>/eks-auth/aws4_request, ...
         (SigV4 with the NODE's credentials: the caller needs
          eks-auth:AssumeRoleForPodIdentity; the token is not a credential of
          the caller, it is the subject)
       {"token": "<service-account token>"}
  200  {"assumedRoleUser": {"arn", "assumeRoleId"}, "audience": "pods.eks.amazonaws.com",
        "credentials": {"accessKeyId", "secretAccessKey", "sessionToken",
                        "expiration": <epoch seconds>},
        "podIdentityAssociation": {"associationArn", "associationId"},
        "subject": {"namespace", "serviceAccount"}}
  errors: x-amzn-ErrorType: <Code> and {"message": "..."}:
    400 InvalidTokenException       bad signature, unknown key, wrong audience, not a JWT
    400 ExpiredTokenException       exp <= now
    400 InvalidParameterException   malformed cluster name or body
    401 AccessDeniedException       unsigned request (or mode "denied": the node
                                    role lacks eks-auth:AssumeRoleForPodIdentity)
    404 ResourceNotFoundException   no association for (cluster, namespace, service account),
                                    or no such cluster
    429 ThrottlingException
    500 InternalServerException

The token is verified with tests/satoken.py's public key (the cluster's
signing key), and its audience must be pods.eks.amazonaws.com. Credentials
are random (ASIA...) and accepted by moto and the ECR stand-in alike; their
expiration is min(now + `session_life`, 6 h) as EKS Auth's sessions are
(the agent caches them for up to 6 hours).

Control (tests only): associate(cluster, namespace, service_account, role_arn),
configure(mode = ok | error500 | throttle | garbage | hang | denied | other_subject,
delay, session_life), calls, issued.
"""

import json
import re
import secrets
import string
import threading
import time
import uuid

import satoken

from .base import QuietHandler, start

AUDIENCE = "pods.eks.amazonaws.com"
PATH = re.compile(r"^/clusters/([^/?]+)/assume-role-for-pod-identity$")
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+$")
SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


class EksAuthStandin:
    """Runs on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, on_secret=None):
        self.lock = threading.Lock()
        self.on_secret = on_secret or (lambda s: None)
        self.config = {"mode": "ok", "delay": 0.0, "session_life": 6 * 3600}
        # (cluster, namespace, service account) -> role ARN
        self.associations = {}
        self.calls = []
        # AccessKeyId -> {"secret", "session_token", "role", "namespace", "service_account", "expiration"}
        self.issued = {}
        standin = self

        class Handler(QuietHandler):
            def do_POST(self):
                standin.handle(self, self.read_body())

            def do_GET(self):
                self.reply(404, {"message": "not found"}, headers={"x-amzn-ErrorType": "ResourceNotFoundException"})

        self.server = start(Handler)
        self.port = self.server.port
        self.url = self.server.url

    # ------------------------------------------------------------ control
    def configure(self, **kw):
        with self.lock:
            self.config.update(kw)

    def associate(self, cluster, namespace, service_account, role_arn):
        """`aws eks create-pod-identity-association`."""
        with self.lock:
            self.associations[(cluster, namespace, service_account)] = role_arn

    def call_count(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.server.close()

    # ------------------------------------------------------------ API
    def handle(self, h, raw):
        auth = h.headers.get("Authorization", "")
        scope = SCOPE.search(auth)
        m = PATH.match(h.path)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        token = body.get("token", "") if isinstance(body, dict) else ""
        try:
            claims = satoken.unverified_claims(token)
        except satoken.InvalidToken:
            claims = {}
        k8s = claims.get("kubernetes.io", {}) if isinstance(claims, dict) else {}
        call = {
            "path": h.path,
            "cluster": m.group(1) if m else None,
            "content_type": h.headers.get("Content-Type"),
            "signed": auth.startswith("AWS4-HMAC-SHA256"),
            "access_key_id": scope.group(1) if scope else None,
            "region": scope.group(2) if scope else None,
            "service": scope.group(3) if scope else None,
            "session_token": h.headers.get("X-Amz-Security-Token"),
            "namespace": k8s.get("namespace"),
            "service_account": (k8s.get("serviceaccount") or {}).get("name"),
            "time": time.time(),
        }
        with self.lock:
            cfg = dict(self.config)
            self.calls.append(call)
        if cfg["delay"]:
            time.sleep(cfg["delay"])

        def error(status, code, message):
            call["outcome"] = code
            h.reply(status, {"message": message}, headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())})

        mode = cfg["mode"]
        if mode == "hang":
            time.sleep(300)
            return
        if mode == "error500":
            return error(500, "InternalServerException", "stand-in failure")
        if mode == "throttle":
            return error(429, "ThrottlingException", "Rate exceeded")
        if mode == "garbage":
            call["outcome"] = "garbage"
            return h.reply(200, "<html>this is not an EKS Auth answer</html>", "text/html")
        if not m:
            return error(404, "UnknownOperationException", "unknown operation")
        if not call["signed"] or call["service"] != "eks-auth":
            return error(401, "AccessDeniedException", "Missing Authentication Token")
        if mode == "denied":
            return error(403, "AccessDeniedException",
                         "User is not authorized to perform: eks-auth:AssumeRoleForPodIdentity")
        cluster = call["cluster"]
        if not CLUSTER_NAME.match(cluster) or not isinstance(body, dict) or not TOKEN_PATTERN.match(token):
            return error(400, "InvalidParameterException", "invalid cluster name or token")
        try:
            claims = satoken.verify(token)
        except satoken.InvalidToken as e:
            if str(e) == "expired":
                return error(400, "ExpiredTokenException", "Service account token has expired")
            return error(400, "InvalidTokenException", f"Failed to validate the service account token: {e}")
        auds = claims["aud"] if isinstance(claims.get("aud"), list) else [claims.get("aud")]
        if AUDIENCE not in auds:
            return error(400, "InvalidTokenException", "Service account token audience is not pods.eks.amazonaws.com")
        ns = claims["kubernetes.io"]["namespace"]
        sa = claims["kubernetes.io"]["serviceaccount"]["name"]
        with self.lock:
            role = self.associations.get((cluster, ns, sa))
        if role is None:
            return error(404, "ResourceNotFoundException",
                         f"No Pod Identity Association found for service account {sa} in namespace {ns} in cluster {cluster}")

        now = time.time()
        expiration = int(now + min(float(cfg["session_life"]), 6 * 3600))
        akid = "ASIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        secret = "eks-auth-standin-secret-" + secrets.token_urlsafe(24)
        session_token = "eks-auth-standin-session-" + secrets.token_urlsafe(96)
        for s in (secret, session_token):
            self.on_secret(s)
        account = role.split(":")[4]
        role_name = role.rsplit("/", 1)[-1]
        association_id = "a-" + secrets.token_hex(8)
        with self.lock:
            self.issued[akid] = {"secret": secret, "session_token": session_token, "role": role,
                                 "namespace": ns, "service_account": sa, "expiration": expiration}
        call["outcome"] = "ok"
        call["access_key_id_issued"] = akid
        subject = {"namespace": ns, "serviceAccount": sa}
        if mode == "other_subject":
            subject = {"namespace": ns, "serviceAccount": sa + "-other"}
        h.reply(200, {
            "assumedRoleUser": {
                "arn": f"arn:aws:sts::{account}:assumed-role/{role_name}/eks-{cluster}-{uuid.uuid4().hex[:8]}",
                "assumeRoleId": f"AROA{secrets.token_hex(8).upper()}:eks-{cluster}",
            },
            "audience": AUDIENCE,
            "credentials": {
                "accessKeyId": akid,
                "secretAccessKey": secret,
                "sessionToken": session_token,
                "expiration": expiration,
            },
            "podIdentityAssociation": {
                "associationArn": f"arn:aws:eks:us-west-2:{account}:podidentityassociation/{cluster}/{association_id}",
                "associationId": association_id,
            },
            "subject": subject,
        }, headers={"x-amzn-RequestId": str(uuid.uuid4())})
