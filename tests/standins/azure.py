"""STAND-INS for Azure's identity endpoints and an Azure Container Registry.

Why stand-ins: no Azure emulator covers IMDS, Entra's token endpoint and ACR's
token exchange, and the tests must run offline on 127.0.0.1. These speak the
documented wire formats, check what pullcred sends, count calls, and can be
told to fail, delay or hang.

Wire formats:
  IMDS (plain HTTP, as on a VM):
    GET /metadata/identity/oauth2/token?api-version=2018-02-01
        &resource=https://containerregistry.azure.net[&client_id=..|&msi_res_id=..]
        header Metadata: true
    200 {"access_token", "expires_in", "expires_on", "resource", "token_type"}
    400 {"error": "invalid_request", "error_description": "Identity not found"}
  Entra v2 token endpoint (HTTPS):
    POST /<tenant>/oauth2/v2.0/token  form grant_type=client_credentials,
        client_id, scope=https://containerregistry.azure.net/.default, and
        client_secret, or client_assertion_type=...jwt-bearer + client_assertion
        (a federated token, or an RS256 JWT with x5t signed by the certificate)
        A Kubernetes service-account token as the assertion (workload identity
        federation; Microsoft Entra "Workload identity federation" docs): when
        the test configured `federated_credentials` = {client_id: [(issuer,
        subject, audience), ..]} (the app's federated identity credentials),
        the token is verified with tests/satoken.py's key (the issuer's JWKS)
        and matched against the client's credentials, case-sensitively, as
        Entra does: issuer (else AADSTS700211), subject (AADSTS700213),
        audience, normally "api://AzureADTokenExchange" (AADSTS700212);
        signature AADSTS50013; lifetime AADSTS700024; all 400 invalid_client.
    200 {"token_type": "Bearer", "expires_in", "access_token"}
    4xx {"error", "error_description": "AADSTS...", "error_codes", "trace_id"}
  ACR (HTTPS):
    GET /v2/  ->  401, WWW-Authenticate: Bearer realm="https://<reg>/oauth2/token",service="<reg>"
    POST /oauth2/exchange form grant_type=access_token, service, tenant, access_token
    200 {"refresh_token": <JWT with exp>};  401/404 {"errors": [{"code", "message"}]}

Access tokens are unsigned JWT-shaped strings with `tid` and `aud`; refresh
tokens carry `exp` (default three hours, as ACR's do).
"""

import datetime
import hashlib
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .base import QuietHandler, b64url, b64url_decode, start, tls_server_context

ACR_RESOURCE = "https://containerregistry.azure.net"
ACR_SCOPE = ACR_RESOURCE + "/.default"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TENANT = "72f988bf-0000-4000-8000-standintenant"


def fake_jwt(claims):
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{head}.{b64url(json.dumps(claims).encode())}.{b64url(secrets.token_bytes(32))}"


# --- certificates -----------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_server_cert(directory, names=(), ips=()):
    """A test CA and a server certificate for 127.0.0.1 and localhost, plus
    the DNS `names` and IP addresses `ips` given. The key file is 0600.
    Returns (ca_pem_path, cert_path, key_path)."""
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pullcred test CA"))
        .issuer_name(_name("pullcred test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans = [x509.DNSName(n) for n in names] + [x509.DNSName("localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted({"127.0.0.1", *ips})]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0] if names else "127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


def make_client_cert(pkcs1=False):
    """A self-signed service-principal certificate: (pem text with cert and
    key, certificate object)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("pullcred-sp"))
        .issuer_name(_name("pullcred-sp"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    )
    return pem.decode(), cert


# --- servers ----------------------------------------------------------------


class _Handler(QuietHandler):
    standin = None

    def do_GET(self):
        self.standin.dispatch(self, "GET", b"")

    def do_POST(self):
        self.standin.dispatch(self, "POST", self.read_body())


class AzureStandin:
    """IMDS on plain HTTP, Entra and ACR on HTTPS (test CA), on 127.0.0.1."""

    def __init__(self, tls_cert, tls_key, on_secret=None):
        self.lock = threading.Lock()
        self.on_secret = on_secret or (lambda s: None)
        self.calls = []
        self.issued_access = set()
        self.refresh_tokens = []
        self.config = {
            "registry": "myreg.azurecr.io",
            "imds": "ok",  # ok | not_found | error500 | hang
            "entra": "ok",  # ok | invalid_client | error500
            "challenge": None,  # None: the standard Bearer challenge; else the header value
            "challenge_status": 401,
            "exchange": "ok",  # ok | 401 | 404 | no_exp | garbage | error500 | throttle | truncated | huge | hang
            "exchange_fail_first": 0,  # the first N exchanges answer in exchange_fail_mode
            "exchange_fail_mode": "error500",
            "refresh_life": 3 * 3600,
            "delay": 0.0,  # seconds, on the exchange
            "client_secret": None,  # the secret Entra accepts
            "federated_token": None,  # the assertion Entra accepts
            "client_cert": None,  # the certificate whose assertions Entra accepts
            "tenant": TENANT,
            "federated_credentials": None,  # {client_id: [(issuer, subject, audience)]}
        }
        standin = self

        class H(_Handler):
            pass

        H.standin = standin
        self.http = start(H)
        self.https = start(H, tls_server_context(tls_cert, tls_key))
        self.imds_url = self.http.url
        self.url = self.https.url

    def configure(self, **kw):
        with self.lock:
            self.config.update(kw)

    def close(self):
        self.http.close()
        self.https.close()

    def calls_to(self, kind):
        with self.lock:
            return [c for c in self.calls if c["kind"] == kind]

    # --- dispatch -----------------------------------------------------------

    def dispatch(self, h, method, raw):
        url = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()} if raw else {}
        with self.lock:
            cfg = dict(self.config)
        if method == "GET" and url.path == "/metadata/identity/oauth2/token":
            return self.imds(h, cfg, query)
        if method == "POST" and url.path.endswith("/oauth2/v2.0/token"):
            return self.entra(h, cfg, url.path.split("/")[1], form)
        if method == "GET" and url.path == "/v2/":
            return self.challenge(h, cfg)
        if method == "POST" and url.path == "/oauth2/exchange":
            return self.exchange(h, cfg, form)
        h.reply(404, {"error": "not found"})

    def record(self, kind, **kw):
        call = dict(kind=kind, time=time.time(), **kw)
        with self.lock:
            self.calls.append(call)
        return call

    def access_token(self, cfg, **claims):
        token = fake_jwt({"aud": ACR_RESOURCE, "tid": cfg["tenant"], "exp": int(time.time()) + 3600, **claims})
        with self.lock:
            self.issued_access.add(token)
        self.on_secret(token)
        return token

    def imds(self, h, cfg, query):
        self.record("imds", query=query, metadata=h.headers.get("Metadata"))
        if h.headers.get("Metadata") != "true":
            return h.reply(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
        if query.get("api-version") != "2018-02-01" or query.get("resource") != ACR_RESOURCE:
            return h.reply(400, {"error": "invalid_request", "error_description": "bad api-version or resource"})
        mode = cfg["imds"]
        if mode == "hang":
            time.sleep(120)
            return
        if mode == "error500":
            return h.reply(500, {"error": "unknown", "error_description": "Internal error"})
        if mode == "not_found":
            return h.reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
        token = self.access_token(cfg, oid="mi", xms_mirid=query.get("msi_res_id") or query.get("client_id") or "system")
        now = int(time.time())
        h.reply(
            200,
            {
                "access_token": token,
                "client_id": query.get("client_id", "system"),
                "expires_in": "86399",
                "expires_on": str(now + 86399),
                "ext_expires_in": "86399",
                "not_before": str(now),
                "resource": ACR_RESOURCE,
                "token_type": "Bearer",
            },
        )

    def entra_error(self, h, status, code, desc, codes=(7000215,)):
        h.reply(
            status,
            {
                "error": code,
                "error_description": f"{desc}\r\nTrace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2025-01-01 00:00:00Z",
                "error_codes": list(codes),
                "trace_id": "0000",
            },
        )

    def entra(self, h, cfg, tenant, form):
        call = self.record("entra", tenant=tenant,
                           form={k: v for k, v in form.items() if k not in ("client_secret", "client_assertion")},
                           assertion=form.get("client_assertion"), path=h.path)
        if cfg["entra"] == "error500":
            return h.reply(500, {"error": "temporarily_unavailable", "error_description": "AADSTS90033: try again"})
        if cfg["entra"] == "invalid_client":
            return self.entra_error(h, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("grant_type") != "client_credentials" or form.get("scope") != ACR_SCOPE:
            return self.entra_error(h, 400, "invalid_request", "AADSTS900144: bad grant_type or scope")
        if "client_secret" in form:
            if form["client_secret"] != cfg["client_secret"]:
                return self.entra_error(h, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif form.get("client_assertion_type") == JWT_BEARER:
            assertion = form.get("client_assertion", "")
            if cfg["federated_token"] is not None and assertion == cfg["federated_token"]:
                pass
            elif cfg["federated_credentials"] is not None and self.is_k8s_assertion(assertion, cfg):
                refusal = self.check_federated(assertion, form.get("client_id"), cfg, call)
                if refusal:
                    return self.entra_error(h, 400, "invalid_client", refusal[1], codes=(refusal[0],))
            elif cfg["client_cert"] is not None:
                why = self.check_assertion(assertion, cfg["client_cert"], form.get("client_id"), self.url + h.path)
                if why:
                    return self.entra_error(h, 401, "invalid_client", f"AADSTS700027: {why}")
            else:
                return self.entra_error(h, 401, "invalid_client", "AADSTS700213: No matching federated identity record found")
        else:
            return self.entra_error(h, 401, "invalid_client", "AADSTS7000216: client_assertion or client_secret required")
        h.reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                      "access_token": self.access_token(cfg, appid=form.get("client_id"))})

    @staticmethod
    def is_k8s_assertion(assertion, cfg):
        """A Kubernetes service-account token, or a JWT from an issuer some
        federated credential names."""
        try:
            body = json.loads(b64url_decode(assertion.split(".")[1]))
        except (IndexError, ValueError):
            return False
        issuers = {c[0] for creds in cfg["federated_credentials"].values() for c in creds}
        return "kubernetes.io" in body or body.get("iss") in issuers

    @staticmethod
    def check_federated(assertion, client_id, cfg, call):
        """Entra's federated identity credential match. Returns None when the
        assertion is accepted, else (AADSTS code, description)."""
        import satoken  # tests/satoken.py: only tests that configure this path need it

        claims = satoken.unverified_claims(assertion)
        iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        call["client_id"] = client_id
        call["subject"] = sub
        call["issuer"] = iss
        creds = cfg["federated_credentials"].get(client_id, [])
        if not any(c[0] == iss for c in creds):
            return 700211, f"AADSTS700211: No matching federated identity record found for presented assertion issuer '{iss}'."
        try:
            satoken.verify(assertion)
        except satoken.InvalidToken as e:
            if str(e) == "expired":
                return 700024, "AADSTS700024: Client assertion is not within its valid time range."
            return 50013, f"AADSTS50013: Assertion failed signature validation. [Reason - {e}]"
        if not any(c[0] == iss and c[1] == sub for c in creds):
            return 700213, (f"AADSTS700213: No matching federated identity record found for presented assertion subject "
                            f"'{sub}'. Check your federated identity credential Subject, Audience and Issuer against "
                            "the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation")
        if not any(c[0] == iss and c[1] == sub and c[2] in auds for c in creds):
            return 700212, f"AADSTS700212: No matching federated identity record found for presented assertion audience '{auds[0]}'."
        call["federated"] = True
        return None

    @staticmethod
    def check_assertion(assertion, cert, client_id, audience):
        """Verifies an RS256 client assertion as Entra does: signature by the
        certificate's key, x5t thumbprint, aud, iss, sub, lifetime."""
        try:
            head_b, body_b, sig_b = assertion.split(".")
            head = json.loads(b64url_decode(head_b))
            body = json.loads(b64url_decode(body_b))
            cert.public_key().verify(
                b64url_decode(sig_b), f"{head_b}.{body_b}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception as e:  # noqa: BLE001
            return f"bad assertion signature or shape ({type(e).__name__})"
        thumb = b64url(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
        now = time.time()
        if head.get("alg") != "RS256" or head.get("x5t") != thumb:
            return "wrong alg or x5t"
        if body.get("aud") != audience:
            return f"wrong aud {body.get('aud')!r}, want {audience!r}"
        if body.get("iss") != client_id or body.get("sub") != client_id:
            return "iss/sub are not the client id"
        if not (body.get("nbf", now + 1) <= now + 5 and now < body.get("exp", 0) <= now + 3600) or not body.get("jti"):
            return "bad lifetime or no jti"
        return None

    def challenge(self, h, cfg):
        self.record("challenge", host=h.headers.get("Host"))
        reg = cfg["registry"]
        header = cfg["challenge"]
        if header is None:
            header = f'Bearer realm="https://{reg}/oauth2/token",service="{reg}"'
        status = cfg["challenge_status"]
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]}
        h.reply(status, body, headers={"WWW-Authenticate": header} if header else {})

    def exchange(self, h, cfg, form):
        self.record("exchange", form={k: v for k, v in form.items() if k != "access_token"},
                    access_token_known=form.get("access_token") in self.issued_access)
        if cfg["delay"]:
            time.sleep(cfg["delay"])
        mode = cfg["exchange"]
        if len(self.calls_to("exchange")) <= cfg["exchange_fail_first"]:
            mode = cfg["exchange_fail_mode"]
        if mode == "hang":
            time.sleep(120)
            return
        if mode == "error500":
            return h.reply(500, {"errors": [{"code": "INTERNAL", "message": "stand-in server error"}]})
        if mode == "throttle":
            return h.reply(429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]})
        if mode == "truncated":
            return h.reply(200, b'{"refresh_token": "eyJhbGciOi', "application/json")
        if mode == "huge":
            return h.send_huge()
        if mode in ("401", "404"):
            return h.reply(int(mode), {"errors": [{"code": "UNAUTHORIZED" if mode == "401" else "NOT_FOUND",
                                                    "message": "exchange refused by the stand-in"}]})
        if form.get("grant_type") != "access_token" or form.get("service") != cfg["registry"]:
            return h.reply(400, {"errors": [{"code": "BAD_REQUEST", "message": "grant_type or service"}]})
        if form.get("access_token") not in self.issued_access:
            return h.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "unknown AAD access token"}]})
        if mode == "garbage":
            return h.reply(200, b"<html>not json</html>", "text/html")
        claims = {"jti": secrets.token_hex(8), "sub": "node", "iss": "Azure Container Registry",
                  "aud": cfg["registry"], "grant_type": "refresh_token", "tenant": form.get("tenant"),
                  "iat": int(time.time())}
        if mode != "no_exp":
            claims["exp"] = int(time.time() + cfg["refresh_life"])
        token = fake_jwt(claims)
        with self.lock:
            self.refresh_tokens.append(token)
        self.on_secret(token)
        h.reply(200, {"refresh_token": token})
