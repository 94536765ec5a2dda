"""The e2e session's test CA, one server certificate for every registry host
name the session serves, and the key a token service signs registry JWTs
with (distribution's `auth: token` checks them against `rootcertbundle`)."""

import base64
import datetime
import ipaddress
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from standins.base import b64url


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class Pki:
    """ca.pem, server.pem/server.key (SANs: every name given, 127.0.0.1 and
    the hosts' loopback addresses), signing.pem/signing.key (a self-signed
    certificate for registry tokens) under `directory`."""

    def __init__(self, directory, names, ips=()):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("pullcred e2e test CA"))
            .issuer_name(_name("pullcred e2e test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sans = [x509.DNSName(n) for n in names] + [x509.DNSName("localhost")]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in {"127.0.0.1", *ips}]
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("pullcred e2e registries"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(_pem_key(key))
        self.key.chmod(0o600)
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
