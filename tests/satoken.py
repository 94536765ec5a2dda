"""Kubernetes service-account tokens for the tests (KEP-4412 requests).

The kubelet hands a credential provider the pod's service-account token: a
bound token the API server minted through the TokenRequest API. Its shape,
as the API server writes it (k8s.io/kubernetes pkg/serviceaccount/claims.go,
"Service account token" in the Kubernetes reference docs):

  header  {"alg": "RS256", "kid": <key id>}
  claims  iss, sub = "system:serviceaccount:<namespace>:<name>", aud = [..],
          exp, iat, nbf, jti,
          "kubernetes.io": {"namespace", "serviceaccount": {"name", "uid"},
                            "pod": {"name", "uid"}, "node": {"name", "uid"}}

Here one RSA-2048 key, made at import, plays the cluster's service-account
signing key. The stand-ins for the clouds' identity providers (STS, Google
STS, Entra) verify tokens with its public half, as the real ones verify
against the cluster's JWKS (its OIDC discovery document), so a forged or
altered token is refused by the stand-in, never by luck.

Every token `mint` returns is registered with conftest's leak scan: a token
that reaches pullcred's stderr fails the test, and the session.
"""

import hashlib
import json
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import V1, register_secret
from standins.base import b64url, b64url_decode

ISSUER = "https://kubernetes.default.svc.cluster.local"
# The audience a kubelet config asks for unless a test says otherwise
# (tokenAttributes.serviceAccountTokenAudience).
DEFAULT_AUDIENCE = "sts.amazonaws.com"


class SigningKey:
    """An RSA key that signs tokens as one cluster's API server would."""

    def __init__(self):
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self.private.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        # the API server's kid: base64url(sha256(DER public key))
        self.kid = b64url(hashlib.sha256(der).digest())
        nums = self.public.public_numbers()
        self.n, self.e = nums.n, nums.e

    def jwk(self):
        """The public key as the cluster's JWKS lists it (RFC 7517)."""
        size = (self.n.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": b64url(self.n.to_bytes(size, "big")),
            "e": b64url(self.e.to_bytes(3, "big").lstrip(b"\0")),
        }

    def sign(self, header, claims):
        head = b64url(json.dumps(header, separators=(",", ":")).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = self.private.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(sig)}"


# The cluster's key: tokens minted with it verify. ROGUE is another cluster's
# (or an attacker's) key with the same issuer name: its tokens do not.
KEY = SigningKey()
ROGUE = SigningKey()
PUBLIC_NUMBERS = (KEY.n, KEY.e)
KID = KEY.kid


def jwks():
    return {"keys": [KEY.jwk()]}


def subject(namespace, name):
    return f"system:serviceaccount:{namespace}:{name}"


def mint(
    namespace,
    name,
    uid=None,
    audience=DEFAULT_AUDIENCE,
    ttl=3600,
    issuer=ISSUER,
    key=None,
    pod="app-7d9f8c6b5-x2x4q",
    node="node-1",
    extra=None,
    drop=(),
    register=True,
):
    """A service-account token for <namespace>/<name>, valid for `ttl`
    seconds from now (negative: already expired). `audience` is a string or
    a list. `extra` adds or overrides claims; `drop` removes top-level claims
    by name. The token is registered as a secret unless register=False."""
    now = int(time.time())
    uid = uid or str(uuid.uuid4())
    claims = {
        "aud": audience if isinstance(audience, list) else [audience],
        "exp": now + ttl,
        "iat": now,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": node, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, node))},
            "pod": {"name": pod, "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": name, "uid": uid},
        },
        "nbf": now,
        "sub": subject(namespace, name),
    }
    if ttl <= 0:
        # an expired token was still issued in the past, with a sane lifetime
        claims["iat"] = claims["nbf"] = claims["exp"] - 600
    claims.update(extra or {})
    for c in drop:
        claims.pop(c, None)
    k = key or KEY
    token = k.sign({"alg": "RS256", "kid": k.kid}, claims)
    if register:
        register_secret(token)
    return token


def mint_plain_jwt(claims, register=True):
    """A well-signed JWT that is not a service-account token (no
    kubernetes.io claims): e.g. some other OIDC provider's ID token."""
    token = KEY.sign({"alg": "RS256", "kid": KEY.kid}, claims)
    if register:
        register_secret(token)
    return token


class InvalidToken(Exception):
    """Why a token does not verify (the identity provider's refusal)."""


def unverified_claims(token):
    """The claims, unchecked (what a relying party reads to route)."""
    try:
        return json.loads(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError) as e:
        raise InvalidToken("not a JWT") from e


def verify(token, audience=None, now=None, leeway=0):
    """Verifies a token as an OIDC relying party does: RS256 signature by the
    cluster's key (kid), exp and nbf, and `audience` among aud when given.
    Returns the claims or raises InvalidToken(reason)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise InvalidToken("not a JWT (want three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except ValueError as e:
        raise InvalidToken("undecodable JWT") from e
    if header.get("alg") != "RS256":
        raise InvalidToken(f"alg {header.get('alg')!r} is not RS256")
    if header.get("kid") != KEY.kid:
        raise InvalidToken("unknown kid: no key of the issuer's JWKS signed this token")
    try:
        KEY.public.verify(sig, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception as e:  # noqa: BLE001 - cryptography's InvalidSignature
        raise InvalidToken("signature does not verify") from e
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int):
        raise InvalidToken("no exp")
    if exp <= now - leeway:
        raise InvalidToken("expired")
    if isinstance(nbf, int) and nbf > now + leeway + 60:
        raise InvalidToken("not yet valid")
    if audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise InvalidToken(f"audience {auds!r} does not contain {audience!r}")
    return claims


def sa_request(image, token=None, annotations=None, api_version=V1):
    """A CredentialProviderRequest as a KEP-4412 kubelet sends it: the pod's
    token and its service account's annotations (v1 only; older versions
    never carry them, but a test may send them to prove they are ignored)."""
    r = {"apiVersion": api_version, "kind": "CredentialProviderRequest", "image": image}
    if token is not None:
        r["serviceAccountToken"] = token
    if annotations is not None:
        r["serviceAccountAnnotations"] = dict(annotations)
    return r
