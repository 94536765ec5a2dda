"""The e2e session's test CA, one server certificate for every registry host
name the session serves, and the key a token service signs registry JWTs
with (distribution's `auth: token` checks them against `rootcertbundle`)."""

import base64
import datetime
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from standins.azure import make_ca_and_server_cert
from standins.base import b64url


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Pki:
    """ca.pem, server.pem/server.key (SANs: every name given, 127.0.0.1 and
    the hosts' loopback addresses), signing.pem/signing.key (a self-signed
    certificate for registry tokens) under `directory`."""

    def __init__(self, directory, names, ips=()):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca, self.cert, self.key = make_ca_and_server_cert(directory, list(names), ips)
        # the token signer: self-signed, so the leaf in x5c is its own root
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing = (
            x509.CertificateBuilder()
            .subject_name(_name("pullcred e2e token signer"))
            .issuer_name(_name("pullcred e2e token signer"))
            .public_key(self.signing_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.signing_key, hashes.SHA256())
        )
        self.signing_cert = directory / "signing.pem"
        self.signing_cert.write_bytes(signing.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(signing.public_bytes(serialization.Encoding.DER)).decode()

    def sign_jwt(self, claims):
        """An RS256 JWT with the signer's certificate in `x5c` (RFC 7515
        4.1.6), the form distribution 2.8's token verifier accepts."""
        head = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}, separators=(",", ":")).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = self.signing_key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(sig)}"
