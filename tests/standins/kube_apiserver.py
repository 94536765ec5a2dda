"""Stand-in for a Kubernetes API server: just what `pullcred doctor
--kubeconfig` asks of one. It is a stand-in, not Kubernetes: a test fixture
that speaks the documented wire format.

- HTTPS with a test CA (`make_cluster_pki`), client certificates verified
  against that CA (mTLS): the user is the certificate's subject CN and the
  groups its O values, as the API server's x509 authenticator maps them
  (kubernetes.io/docs/reference/access-authn-authz/authentication/#x509-client-certificates);
  or a bearer token from `tokens` (static token file semantics). Anything
  else: 401 with a metav1 Status.
- POST /apis/authorization.k8s.io/v1/subjectaccessreviews and
  .../selfsubjectaccessreviews
  (kubernetes.io/docs/reference/kubernetes-api/authorization-resources/subject-access-review-v1/,
  .../self-subject-access-review-v1/): answered from an RBAC table of
  ClusterRoles/Roles and their bindings, evaluated as the RBAC authorizer
  does (kubernetes.io/docs/reference/access-authn-authz/rbac/): a rule
  matches on apiGroups, resources, verbs ("*" wildcards) and resourceNames
  (empty: any name); ClusterRoleBindings apply everywhere, RoleBindings in
  their namespace; subjects are Users or Groups. Creating a
  SubjectAccessReview needs the caller to be allowed `create` on
  subjectaccessreviews (group authorization.k8s.io), as a node is by the
  Node authorizer; that grant is in the table by default.
- GET /api/v1/namespaces/NS/serviceaccounts/NAME
  (kubernetes.io/docs/reference/kubernetes-api/authentication-resources/service-account-v1/):
  from `service_accounts`; 403 unless the caller is allowed `get` on
  serviceaccounts (the Node authorizer grants a node its pods' accounts:
  `node_may_read` plays that).

`apply(yaml_text)` loads ClusterRole, ClusterRoleBinding, Role and
RoleBinding documents, as `kubectl apply -f` would.
"""

import datetime
import json
import re
import ssl

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from standins.base import QuietHandler, start


def _name(cn, orgs=()):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class Pki:
    """A cluster CA that signs the API server's certificate and clients'."""

    def __init__(self, directory):
        self.dir = directory
        now = datetime.datetime.now(datetime.timezone.utc)
        self.now = now
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(_name("kubernetes test CA"))
            .issuer_name(_name("kubernetes test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = self.ca.public_bytes(serialization.Encoding.PEM)
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(self.ca_pem)
        self.server_cert, self.server_key = self._issue("kube-apiserver", (), ExtendedKeyUsageOID.SERVER_AUTH, "server")

    def _issue(self, cn, orgs, usage, stem, ec_key=False):
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1()) if ec_key else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(hours=1))
            .not_valid_after(self.now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = b.sign(self.key, hashes.SHA256())
        cert_path = self.dir / f"{stem}.crt"
        key_path = self.dir / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    def client(self, cn, orgs=(), stem=None):
        """A client certificate and EC key (as the kubelet's rotated
        kubelet-client-current.pem): (cert_path, key_path)."""
        return self._issue(cn, orgs, ExtendedKeyUsageOID.CLIENT_AUTH, stem or re.sub(r"\W", "_", cn), ec_key=True)


def _match(values, want):
    return "*" in values or want in values


class ApiServer:
    """The RBAC table, the service accounts, and the calls seen."""

    def __init__(self, pki, tokens=None):
        self.pki = pki
        self.tokens = dict(tokens or {})  # bearer token -> (user, groups)
        self.cluster_roles = {
            # what the Node authorizer grants a node, reduced to what is asked here
            "stand-in:node-delegation": [{"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}],
            "stand-in:basic-user": [{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]}],
        }
        self.cluster_bindings = {
            "stand-in:node-delegation": ("stand-in:node-delegation", [{"kind": "Group", "name": "system:nodes"}]),
            "stand-in:basic-user": ("stand-in:basic-user", [{"kind": "Group", "name": "system:authenticated"}]),
        }
        self.roles = {}  # (ns, name) -> rules
        self.role_bindings = {}  # (ns, name) -> (role kind, role name, subjects)
        self.service_accounts = {}  # (ns, name) -> annotations
        self.node_may_read = True
        self.reviews = []  # the spec of every review asked
        self.auth_headers = []

    def apply(self, text):
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kind, meta = doc["kind"], doc["metadata"]
            assert doc["apiVersion"] == "rbac.authorization.k8s.io/v1", doc
            if kind == "ClusterRole":
                self.cluster_roles[meta["name"]] = doc["rules"]
            elif kind == "ClusterRoleBinding":
                assert doc["roleRef"]["kind"] == "ClusterRole"
                self.cluster_bindings[meta["name"]] = (doc["roleRef"]["name"], doc["subjects"])
            elif kind == "Role":
                self.roles[(meta["namespace"], meta["name"])] = doc["rules"]
            elif kind == "RoleBinding":
                ref = doc["roleRef"]
                self.role_bindings[(meta["namespace"], meta["name"])] = (ref["kind"], ref["name"], doc["subjects"])
            else:
                raise AssertionError(f"unexpected kind {kind}")

    def allowed(self, user, groups, attrs):
        def subject_matches(subjects):
            for s in subjects:
                if s["kind"] == "User" and s["name"] == user:
                    return True
                if s["kind"] == "Group" and s["name"] in groups:
                    return True
            return False

        def rule_matches(rule):
            if not _match(rule.get("apiGroups", []), attrs.get("group", "")):
                return False
            if not _match(rule.get("resources", []), attrs.get("resource", "")):
                return False
            if not _match(rule.get("verbs", []), attrs.get("verb", "")):
                return False
            names = rule.get("resourceNames") or []
            return not names or attrs.get("name", "") in names

        for role, subjects in self.cluster_bindings.values():
            if subject_matches(subjects) and any(rule_matches(r) for r in self.cluster_roles.get(role, [])):
                return True
        ns = attrs.get("namespace", "")
        for (bns, _), (kind, role, subjects) in self.role_bindings.items():
            if bns != ns or not subject_matches(subjects):
                continue
            rules = self.cluster_roles.get(role, []) if kind == "ClusterRole" else self.roles.get((ns, role), [])
            if any(rule_matches(r) for r in rules):
                return True
        return False


def _status(code, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


def kube_apiserver(pki, tokens=None):
    """Starts the stand-in on 127.0.0.1 (HTTPS, client certificates
    optional and verified). Returns the server; `.api` is its ApiServer."""
    api = ApiServer(pki, tokens)

    class Handler(QuietHandler):
        def identity(self):
            self_cert = self.connection.getpeercert()
            if self_cert:
                cn, orgs = None, []
                for rdn in self_cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
                        elif k == "organizationName":
                            orgs.append(v)
                return cn, orgs + ["system:authenticated"]
            auth = self.headers.get("Authorization", "")
            api.auth_headers.append(auth)
            if auth.startswith("Bearer ") and auth[7:] in api.tokens:
                user, groups = api.tokens[auth[7:]]
                return user, list(groups) + ["system:authenticated"]
            return None, None

        def do_POST(self):
            user, groups = self.identity()
            body = self.read_body()
            if user is None:
                return self.reply(401, _status(401, "Unauthorized"))
            try:
                review = json.loads(body)
            except ValueError:
                return self.reply(400, _status(400, "not JSON"))
            if self.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
                if not api.allowed(user, groups, {"group": "authorization.k8s.io", "resource": "subjectaccessreviews", "verb": "create"}):
                    return self.reply(403, _status(403, f'subjectaccessreviews.authorization.k8s.io is forbidden: User "{user}" cannot create resource'))
                if review.get("kind") != "SubjectAccessReview":
                    return self.reply(400, _status(400, "want a SubjectAccessReview"))
                spec = review["spec"]
                asked_user, asked_groups = spec.get("user", ""), spec.get("groups", [])
            elif self.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
                if review.get("kind") != "SelfSubjectAccessReview":
                    return self.reply(400, _status(400, "want a SelfSubjectAccessReview"))
                spec = review["spec"]
                asked_user, asked_groups = user, groups
            else:
                return self.reply(404, _status(404, "not found"))
            attrs = spec.get("resourceAttributes") or {}
            api.reviews.append({"kind": review["kind"], "user": asked_user, "groups": asked_groups, "attrs": attrs})
            ok = api.allowed(asked_user, asked_groups, attrs)
            status = {"allowed": ok}
            if not ok:
                status["reason"] = "no RBAC policy matched"
            review["status"] = status
            return self.reply(201, review)

        def do_GET(self):
            user, groups = self.identity()
            if user is None:
                return self.reply(401, _status(401, "Unauthorized"))
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)", self.path)
            if not m:
                return self.reply(404, _status(404, "not found"))
            ns, name = m.groups()
            is_node = user.startswith("system:node:") and "system:nodes" in groups
            if not (api.node_may_read and is_node) and not api.allowed(
                user, groups, {"group": "", "resource": "serviceaccounts", "verb": "get", "namespace": ns, "name": name}
            ):
                return self.reply(403, _status(403, f'serviceaccounts "{name}" is forbidden: User "{user}" cannot get resource "serviceaccounts" in the namespace "{ns}"'))
            if (ns, name) not in api.service_accounts:
                return self.reply(404, _status(404, f'serviceaccounts "{name}" not found'))
            return self.reply(
                200,
                {
                    "kind": "ServiceAccount",
                    "apiVersion": "v1",
                    "metadata": {"name": name, "namespace": ns, "uid": "0b6c2f9e-sa", "annotations": api.service_accounts[(ns, name)]},
                },
            )

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ctx.load_verify_locations(cafile=str(pki.ca_path))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server = start(Handler, ctx)
    server.api = api
    return server
