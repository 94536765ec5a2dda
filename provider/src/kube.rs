//! A minimal Kubernetes API client for `pullcred doctor --kubeconfig`: two
//! questions about the cluster side of service-account-token pulls
//! (KEP-4412), asked with the node's own kubeconfig.
//!
//! 1. May the node request tokens for the provider's audience? A
//!    SubjectAccessReview (`POST /apis/authorization.k8s.io/v1/subjectaccessreviews`,
//!    kubernetes.io/docs/reference/kubernetes-api/authorization-resources/subject-access-review-v1/)
//!    for the attributes the NodeRestriction admission plugin checks
//!    (kubernetes/website `content/en/docs/reference/access-authn-authz/node.md`,
//!    "Allowing additional audiences with RBAC"): verb
//!    `request-serviceaccounts-token-audience`, group `""`, resource the
//!    audience, name and namespace the service account's. With a client
//!    certificate the user is its subject CN (`system:node:NAME`) and the
//!    groups its O values (plus `system:authenticated`), as the API server's
//!    x509 authenticator reads them; with a bearer token the identity is not
//!    known here, so a SelfSubjectAccessReview asks as whoever the token is.
//! 2. What annotations does the pod's service account carry? `GET
//!    /api/v1/namespaces/NS/serviceaccounts/NAME`
//!    (kubernetes.io/docs/reference/kubernetes-api/authentication-resources/service-account-v1/).
//!    The Node authorizer lets a node read the service accounts of pods
//!    bound to it.
//!
//! The kubeconfig's server must be https (checked by [`crate::endpoint`]);
//! the CA is the kubeconfig's, else the system's; proxies by
//! [`crate::proxy`]'s policy. Key and token files are read as private files;
//! the bearer token is a [`Secret`] and never printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kubelet_config::kubeconfig::{self, Credential, Material};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::deadline::Deadline;
use crate::endpoint::{self, Destination, Scheme};
use crate::private_file::{self, Limits};
use crate::secret::Secret;

/// Kubeconfigs, certificates and keys are small.
const MAX_FILE: u64 = 256 * 1024;
/// API answers read (a ServiceAccount, a review).
const MAX_BODY: u64 = 1 << 20;

/// Who the API server will take the node to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// From the client certificate's subject: CN and O values.
    Cert { user: String, groups: Vec<String> },
    /// A bearer token: the server knows whose.
    Token,
}

impl Identity {
    pub fn describe(&self) -> String {
        match self {
            Identity::Cert { user, groups } if groups.is_empty() => {
                format!("{user} (client certificate)")
            }
            Identity::Cert { user, groups } => {
                format!("{user} (groups {}; client certificate)", groups.join(", "))
            }
            Identity::Token => "the kubeconfig's bearer token".to_string(),
        }
    }

    /// A kubelet's identity: `system:node:NAME` in group `system:nodes`.
    pub fn is_node(&self) -> bool {
        match self {
            Identity::Cert { user, groups } => {
                user.starts_with("system:node:") && groups.iter().any(|g| g == "system:nodes")
            }
            Identity::Token => false,
        }
    }
}

/// A connection to the cluster's API server.
pub struct Kube {
    base: Destination,
    agent: ureq::Agent,
    token: Option<Secret>,
    pub identity: Identity,
    pub context: String,
    deadline: Deadline,
}

/// An access review's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub allowed: bool,
    /// The authorizer's reason (or evaluation error), if it gave one.
    pub reason: String,
}

/// What `GET serviceaccount` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(BTreeMap<String, String>),
    NotFound,
    /// 401/403: the server's reason.
    Forbidden(String),
}

fn read(path: &Path, private: bool, what: &str) -> Result<Vec<u8>, String> {
    let limits = if private {
        Limits::private(MAX_FILE)
    } else {
        Limits::shared(MAX_FILE)
    };
    private_file::open_regular(path, limits).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// PEM bytes of a kubeconfig material: a file (relative to the kubeconfig's
/// directory) or inline base64.
fn material(m: &Material, dir: &Path, private: bool, what: &str) -> Result<Vec<u8>, String> {
    match m {
        Material::File(p) => read(&dir.join(p), private, what),
        Material::Inline(b64) => {
            let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| format!("the kubeconfig's inline {what} is not base64"))
        }
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(_) => return Err(format!("the {what} is not valid PEM")),
        }
    }
    if out.is_empty() {
        return Err(format!("the {what} holds no PEM certificate"));
    }
    Ok(out)
}

fn key(pem: &[u8]) -> Result<PrivateKey<'static>, String> {
    // Never quote the key or the parser's view of it.
    PrivateKey::from_pem(pem).map_err(|_| "the client key holds no PEM private key".to_string())
}

impl Kube {
    /// Reads the kubeconfig at `path` and prepares a client for its current
    /// context. No request is made.
    pub fn connect(path: &Path, deadline: &Deadline) -> Result<Kube, String> {
        let text = read(path, true, "kubeconfig")?;
        let text = String::from_utf8(text)
            .map_err(|_| format!("kubeconfig {}: not UTF-8 text", path.display()))?;
        let resolved = kubeconfig::parse(&text)
            .and_then(|k| k.resolve())
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
        let dir: PathBuf = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = endpoint::secret_destination(&resolved.server, "the kubeconfig's server")?;
        if base.scheme != Scheme::Https {
            return Err(format!(
                "the kubeconfig's server {:?} is not https",
                base.origin()
            ));
        }
        let roots = match &resolved.ca {
            Some(m) => RootCerts::new_with_certs(&certs(
                &material(m, &dir, false, "certificate authority")?,
                "certificate authority",
            )?),
            None => RootCerts::PlatformVerifier,
        };
        let (client_cert, token, identity) = match &resolved.credential {
            Credential::ClientCert { cert, key: k } => {
                let chain = certs(
                    &material(cert, &dir, false, "client certificate")?,
                    "client certificate",
                )?;
                let identity = subject(chain[0].der())
                    .map(|(user, groups)| Identity::Cert { user, groups })
                    .ok_or("the client certificate's subject has no common name")?;
                let pk = key(&material(k, &dir, true, "client key")?)?;
                (Some(ClientCert::new_with_certs(&chain, pk)), None, identity)
            }
            Credential::Token(m) => {
                // `token` is the token itself (not base64); `tokenFile` a file.
                let raw = match m {
                    Material::Inline(t) => t.as_bytes().to_vec(),
                    Material::File(_) => material(m, &dir, true, "token file")?,
                };
                let t = String::from_utf8(raw)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty() && !s.contains(char::is_control))
                    .ok_or("the kubeconfig's token is empty or not text")?;
                (None, Some(Secret::new(t)), Identity::Token)
            }
        };
        if resolved.tls_server_name.is_some() {
            tracing::debug!(
                "kubeconfig tls-server-name is not used: the server URL's host is verified"
            );
        }
        let roots = match roots {
            RootCerts::PlatformVerifier => RootCerts::Specific(crate::http::system_roots()),
            r => r,
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .client_cert(client_cert)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let url = base.url();
        let proxy = match crate::proxy::global().proxy_for(&url)? {
            None => None,
            Some(p) => Some(
                ureq::Proxy::new(&p.url_with_credentials())
                    .map_err(|_| format!("{} ({}) is not a usable proxy URL", p, p.var))?,
            ),
        };
        let remaining = deadline.remaining().max(Duration::from_millis(1));
        let agent = crate::resolve::ureq_agent(
            ureq::Agent::config_builder()
                .tls_config(tls)
                .proxy(proxy)
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(remaining))
                .timeout_connect(Some(remaining.min(Duration::from_secs(5))))
                .user_agent(concat!("pullcred/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(Kube {
            base,
            agent,
            token,
            identity,
            context: resolved.context,
            deadline: *deadline,
        })
    }

    /// The API server, for messages.
    pub fn server(&self) -> String {
        self.base.origin()
    }

    fn url(&self, path: &str) -> String {
        let prefix = self.base.path().trim_end_matches('/');
        format!("{}{prefix}{path}", self.base.origin())
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        let url = self.url(path);
        let timeout = Some(self.deadline.remaining().max(Duration::from_millis(1)));
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Bearer {}", t.expose()));
        let result = match body {
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .config()
                    .timeout_global(timeout)
                    .build()
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(b)
            }
            None => {
                let mut r = self
                    .agent
                    .get(&url)
                    .config()
                    .timeout_global(timeout)
                    .build()
                    .header("Accept", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
        };
        let fail = |e: ureq::Error| {
            let detail = crate::proxy::scrub(&e.to_string().replace(['\n', '\r'], " "));
            match e {
                ureq::Error::Timeout(_) => {
                    format!("{method} {}: {}", self.server(), self.deadline.timed_out())
                }
                _ => format!("{method} {}{path}: {detail}", self.server()),
            }
        };
        let mut resp = result.map_err(fail)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(fail)?;
        Ok((status, bytes))
    }

    /// May this node request a token for `audience`, for the service
    /// account `namespace/name` (or any, when not given)?
    pub fn may_request_audience(
        &self,
        audience: &str,
        account: Option<(&str, &str)>,
    ) -> Result<Review, String> {
        let attrs = resource_attributes(audience, account);
        let (path, body) = match &self.identity {
            Identity::Cert { user, groups } => {
                let mut groups = groups.clone();
                if !groups.iter().any(|g| g == "system:authenticated") {
                    groups.push("system:authenticated".into());
                }
                (
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    serde_json::json!({
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SubjectAccessReview",
                        "spec": {"user": user, "groups": groups, "resourceAttributes": attrs},
                    }),
                )
            }
            Identity::Token => (
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                serde_json::json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attrs},
                }),
            ),
        };
        let (status, bytes) = self.call("POST", path, Some(body.to_string().as_bytes()))?;
        if !(200..300).contains(&status) {
            return Err(format!("POST {path}: {}", status_text(status, &bytes)));
        }
        parse_review(&bytes)
            .ok_or_else(|| format!("POST {path}: the answer is not an access review"))
    }

    /// The service account's annotations.
    pub fn service_account(&self, namespace: &str, name: &str) -> Result<Lookup, String> {
        let path = format!(
            "/api/v1/namespaces/{}/serviceaccounts/{}",
            crate::encode::percent_encode(namespace),
            crate::encode::percent_encode(name)
        );
        let (status, bytes) = self.call("GET", &path, None)?;
        match status {
            200..=299 => {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|_| format!("GET {path}: the answer is not JSON"))?;
                if v.get("kind").and_then(|k| k.as_str()) != Some("ServiceAccount") {
                    return Err(format!("GET {path}: the answer is not a ServiceAccount"));
                }
                let annotations = v
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.as_object())
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Lookup::Found(annotations))
            }
            404 => Ok(Lookup::NotFound),
            401 | 403 => Ok(Lookup::Forbidden(status_text(status, &bytes))),
            _ => Err(format!("GET {path}: {}", status_text(status, &bytes))),
        }
    }
}

/// The SubjectAccessReview `resourceAttributes` NodeRestriction checks.
fn resource_attributes(audience: &str, account: Option<(&str, &str)>) -> serde_json::Value {
    let (namespace, name) = account.unwrap_or(("", ""));
    serde_json::json!({
        "namespace": namespace,
        "verb": kubelet_config::generate::AUDIENCE_VERB,
        "group": "",
        "version": "v1",
        "resource": audience,
        "name": name,
    })
}

/// `status.allowed` and the reason of a (Self)SubjectAccessReview.
fn parse_review(bytes: &[u8]) -> Option<Review> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let status = v.get("status")?;
    let allowed = status.get("allowed")?.as_bool()?;
    let text = |k: &str| {
        status
            .get(k)
            .and_then(|s| s.as_str())
            .map(|s| {
                s.chars()
                    .take(300)
                    .collect::<String>()
                    .replace(['\n', '\r'], " ")
            })
            .filter(|s| !s.is_empty())
    };
    let reason = text("reason")
        .or_else(|| text("evaluationError"))
        .unwrap_or_default();
    Some(Review { allowed, reason })
}

/// `HTTP 403: <the Status message>`.
fn status_text(status: u16, bytes: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    match message {
        Some(m) => format!(
            "HTTP {status}: {}",
            m.chars()
                .take(300)
                .collect::<String>()
                .replace(['\n', '\r'], " ")
        ),
        None => format!("HTTP {status}"),
    }
}

/// One DER element: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject's common name and organisations (RFC 5280 section 4.1:
/// Certificate → tbsCertificate → [0] version, serial, signature, issuer,
/// validity, subject), as Kubernetes maps them to user and groups.
fn subject(cert: &[u8]) -> Option<(String, Vec<String>)> {
    let (0x30, body, _) = der(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = der(body)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    for _ in 0..4 {
        // serial, signature algorithm, issuer, validity
        rest = der(rest)?.2;
    }
    let (0x30, mut name, _) = der(rest)? else {
        return None;
    };
    let (mut cn, mut orgs) = (None, Vec::new());
    while !name.is_empty() {
        let (0x31, mut set, next) = der(name)? else {
            return None;
        };
        name = next;
        while !set.is_empty() {
            let (0x30, atv, next) = der(set)? else {
                return None;
            };
            set = next;
            let (0x06, oid, value) = der(atv)? else {
                return None;
            };
            let (_, text, _) = der(value)?;
            let text = String::from_utf8(text.to_vec()).ok()?;
            if oid == OID_CN {
                cn = Some(text);
            } else if oid == OID_O {
                orgs.push(text);
            }
        }
    }
    Some((cn?, orgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed EC P-256 certificate with the subject
    /// `O=system:nodes, CN=system:node:node-1`, made for this test.
    const NODE_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBVDCB+6ADAgECAgEBMAoGCCqGSM49BAMCMDQxFTATBgNVBAoMDHN5c3RlbTpu
b2RlczEbMBkGA1UEAwwSc3lzdGVtOm5vZGU6bm9kZS0xMB4XDTI1MDEwMTAwMDAw
MFoXDTM1MDEwMTAwMDAwMFowNDEVMBMGA1UECgwMc3lzdGVtOm5vZGVzMRswGQYD
VQQDDBJzeXN0ZW06bm9kZTpub2RlLTEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAQKlp/eHMg7ofk7qDEAs5ek7bu1VyqsTLqhDpy2ZG2H5Ni6Cozd936bxXrGKmNE
6YrK6uWExenmKxQuD2Kvq/ZsMAoGCCqGSM49BAMCA0gAMEUCIQCzUBgDPnpBNrvN
/32dWmXvw5xF/qmNSbYyvetU5VOxZAIgJwoLRG5UzqIm2CeU2bajYiTzxHX4CA8b
NktCHF+7idU=
-----END CERTIFICATE-----";

    #[test]
    fn subject_of_a_node_certificate() {
        let der_bytes = match ureq::tls::parse_pem(NODE_CERT.as_bytes()).next() {
            Some(Ok(PemItem::Certificate(c))) => c.der().to_vec(),
            _ => panic!("test certificate"),
        };
        assert_eq!(
            subject(&der_bytes),
            Some((
                "system:node:node-1".to_string(),
                vec!["system:nodes".to_string()]
            ))
        );
        assert_eq!(subject(&[0x30, 0x03, 0x02, 0x01, 0x01]), None);
        assert_eq!(subject(&[]), None);
    }

    #[test]
    fn reviews_and_statuses() {
        let r = parse_review(br#"{"status":{"allowed":false,"reason":"no RBAC policy matched"}}"#)
            .unwrap();
        assert_eq!(
            r,
            Review {
                allowed: false,
                reason: "no RBAC policy matched".into()
            }
        );
        assert_eq!(parse_review(br#"{"status":{}}"#), None);
        assert_eq!(
            status_text(403, br#"{"kind":"Status","message":"forbidden: no"}"#),
            "HTTP 403: forbidden: no"
        );
        assert_eq!(status_text(500, b"<html>"), "HTTP 500");
        let a = resource_attributes("aud", Some(("ns", "sa")));
        assert_eq!(a["verb"], "request-serviceaccounts-token-audience");
        assert_eq!(
            (a["group"].as_str(), a["resource"].as_str()),
            (Some(""), Some("aud"))
        );
        assert_eq!(
            (a["namespace"].as_str(), a["name"].as_str()),
            (Some("ns"), Some("sa"))
        );
    }
}
