//! Per-pod identity from the pod's service-account token (KEP-4412).
//!
//! Since Kubernetes 1.33 a v1 `CredentialProviderRequest` may carry the pod's
//! service-account token and the annotations of its service account (those the
//! kubelet config's `tokenAttributes` lists). This module decides, from plain
//! values and without any I/O, which identity a request asks for:
//!
//! - AWS: the role in `eks.amazonaws.com/ecr-role-arn`; else, when enabled,
//!   IRSA's `eks.amazonaws.com/role-arn`; else the configured default role
//!   (`--ecr-role-arn`, `AWS_ECR_ROLE_ARN`). The token is exchanged with
//!   `sts:AssumeRoleWithWebIdentity` under a session name built from the
//!   namespace and service account ([`session_name`]).
//! - Google: a service account opts in with `iam.gke.io/enable-wi-image-pull:
//!   "true"` (GKE's convention), by naming a Google service account to
//!   impersonate (`iam.gke.io/gcp-service-account`) or a pool audience
//!   (`pullcred.dev/google-audience`); a configured audience
//!   (`--google-audience`) opts every service account in. The token is
//!   exchanged at Google STS (RFC 8693).
//! - Azure: `kubernetes.azure.com/acr-client-id` (and `acr-tenant-id`, else the
//!   node's tenant): the token is the client assertion to Entra.
//!
//! When nothing names an identity: the node's own identity if the operator
//! allowed it (`--service-account-fallback=node`, logged), else an error that
//! names the annotation to set.
//!
//! **Isolation.** Whose token it is comes from the token's claims (issuer,
//! namespace, service account name and UID). They are read, not verified: the
//! kubelet is the only writer of our stdin, and the cloud's identity provider
//! verifies the token on every exchange. The cache key of every per-pod
//! credential includes those claims and the identity asked for, so one
//! service account's credential is never served to another, even when both
//! name the same role. The token itself is never logged, cached or returned.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::registry::Target;
use crate::secret::Secret;

pub const AWS_ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
pub const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
pub const AWS_ROLE_ENV: &str = "AWS_ECR_ROLE_ARN";
pub const GKE_ENABLE_ANNOTATION: &str = "iam.gke.io/enable-wi-image-pull";
pub const GKE_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
pub const GOOGLE_AUDIENCE_ANNOTATION: &str = "pullcred.dev/google-audience";
pub const AZURE_CLIENT_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";
pub const AZURE_TENANT_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";

/// Set when the cloud's identity provider explicitly refused this run's
/// service-account token (a trust policy, a federated credential or an
/// attribute condition said no). A refusal is an answer, not an outage: the
/// run then serves no cached credential of that service account in its place.
/// One process answers one request, so a process-wide flag is this run's.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Records that the identity provider refused the pod's token.
pub fn mark_refused() {
    REFUSED.store(true, Ordering::SeqCst);
}

pub fn was_refused() -> bool {
    REFUSED.load(Ordering::SeqCst)
}

/// An HTTP status that is the identity provider saying no (not an outage,
/// not throttling).
pub fn is_refusal_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// STS's limit on `RoleSessionName`.
const MAX_SESSION_NAME: usize = 64;

/// Settings from flags and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// `--service-account-fallback=node`: a service account that names no
    /// identity gets the node's.
    pub fallback_to_node: bool,
    /// `--ecr-role-arn`, `AWS_ECR_ROLE_ARN`.
    pub aws_default_role: Option<String>,
    /// `--accept-irsa-role-annotation`: also read `eks.amazonaws.com/role-arn`.
    pub aws_accept_irsa: bool,
    /// `--google-audience`, `PULLCRED_GOOGLE_AUDIENCE`.
    pub google_audience: Option<String>,
    /// `--google-service-account`, `PULLCRED_GOOGLE_SERVICE_ACCOUNT`.
    pub google_service_account: Option<String>,
}

/// Whose token it is, from its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub issuer: String,
    pub namespace: String,
    pub name: String,
    /// The service account's UID: a deleted and re-created account with the
    /// same name is another identity.
    pub uid: String,
    /// The token's `exp`, unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ns, name) = (&self.namespace, &self.name);
        let (ns, name) = (crate::logging::echo(ns), crate::logging::echo(name));
        write!(f, "service account {ns}/{name}")
    }
}

/// The Google audience: given, or GKE's, read from the metadata server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Given(String),
    GkeMetadata,
}

/// The cloud identity a service account asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Aws {
        role_arn: String,
        session_name: String,
        /// Where the role came from (an annotation, a flag), for messages.
        from: String,
    },
    Google {
        audience: Audience,
        impersonate: Option<String>,
    },
    Azure {
        client_id: String,
        tenant: Option<String>,
    },
}

impl Identity {
    /// In a user's words, with request text clipped (see [`crate::logging::echo`]).
    pub fn describe(&self) -> String {
        let line = self.describe_full();
        crate::logging::clip(&line, 3 * crate::logging::MAX_ECHO).into_owned()
    }

    fn describe_full(&self) -> String {
        match self {
            Identity::Aws { role_arn, from, .. } => format!("role {role_arn} (from {from})"),
            Identity::Google {
                audience,
                impersonate,
            } => {
                let aud = match audience {
                    Audience::Given(a) => a.clone(),
                    Audience::GkeMetadata => "the GKE cluster's workload pool".into(),
                };
                match impersonate {
                    Some(sa) => format!("audience {aud}, impersonating {sa}"),
                    None => format!("audience {aud}"),
                }
            }
            Identity::Azure { client_id, tenant } => match tenant {
                Some(t) => format!("client {client_id} in tenant {t}"),
                None => format!("client {client_id} in the node's tenant"),
            },
        }
    }
}

/// A request's per-pod identity, resolved.
#[derive(Debug, Clone)]
pub struct Workload {
    pub account: ServiceAccount,
    pub identity: Identity,
    pub token: Secret,
}

impl Workload {
    /// The cache key's parts: whose token, and which identity it asks for.
    pub fn cache_parts(&self) -> Vec<(&'static str, String)> {
        let a = &self.account;
        let mut parts = vec![
            ("sa-issuer", a.issuer.clone()),
            ("sa-namespace", a.namespace.clone()),
            ("sa-name", a.name.clone()),
            ("sa-uid", a.uid.clone()),
        ];
        match &self.identity {
            Identity::Aws {
                role_arn,
                session_name,
                ..
            } => {
                parts.push(("sa-aws-role", role_arn.clone()));
                parts.push(("sa-aws-session", session_name.clone()));
            }
            Identity::Google {
                audience,
                impersonate,
            } => {
                let aud = match audience {
                    Audience::Given(a) => a.clone(),
                    Audience::GkeMetadata => "gke-metadata".into(),
                };
                parts.push(("sa-google-audience", aud));
                parts.push((
                    "sa-google-impersonate",
                    impersonate.clone().unwrap_or_default(),
                ));
            }
            Identity::Azure { client_id, tenant } => {
                parts.push(("sa-azure-client", client_id.clone()));
                parts.push(("sa-azure-tenant", tenant.clone().unwrap_or_default()));
            }
        }
        parts
    }
}

/// What a request resolves to.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// No token: the node's identity, as always.
    Node,
    /// A token, but nothing names an identity, and the fallback is on.
    NodeFallback {
        why: String,
    },
    Workload(Box<Workload>),
}

impl Resolution {
    /// The pod's identity, when it is used.
    pub fn workload(&self) -> Option<&Workload> {
        match self {
            Resolution::Workload(w) => Some(w),
            _ => None,
        }
    }
}

/// Decides the identity for `target` from the request's token and annotations.
/// Errors are one line and never contain the token.
pub fn resolve(
    target: &Target,
    token: Option<&Secret>,
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
    now: i64,
) -> Result<Resolution, String> {
    let Some(token) = token else {
        // Annotations come only with tokenAttributes, and then with a token:
        // one without the other is a misconfiguration worth naming.
        if let Some(key) = naming_annotation(target, annotations, settings) {
            return Err(format!(
                "the service account's {key} annotation asks for its own identity, but the request carries no serviceAccountToken; add tokenAttributes to this provider in the kubelet's credential provider config (Kubernetes 1.33+)"
            ));
        }
        return Ok(Resolution::Node);
    };
    let account = read_claims(token.expose())?;
    if account.expires_at <= now {
        return Err(format!(
            "the {account} token expired {}s ago (exp {}); the kubelet should send a fresh one",
            now - account.expires_at,
            account.expires_at
        ));
    }
    let identity = match target {
        Target::EcrPrivate(_) | Target::EcrPublic => aws_identity(&account, annotations, settings)?,
        Target::Google(_) => google_identity(annotations, settings)?,
        Target::Acr(_) => azure_identity(annotations),
    };
    match identity {
        Some(identity) => Ok(Resolution::Workload(Box::new(Workload {
            account,
            identity,
            token: token.clone(),
        }))),
        None => {
            let missing = missing_hint(target, settings);
            if settings.fallback_to_node {
                Ok(Resolution::NodeFallback {
                    why: format!("{account} names no identity ({missing})"),
                })
            } else {
                Err(format!(
                    "{account} names no identity for this registry: {missing}; or let such pods use the node's identity with --service-account-fallback=node"
                ))
            }
        }
    }
}

/// The annotation that names an identity for `target`, if any.
fn naming_annotation(
    target: &Target,
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Option<&'static str> {
    let has = |k: &str| annotations.get(k).is_some_and(|v| !v.trim().is_empty());
    let keys: &[&'static str] = match target {
        Target::EcrPrivate(_) | Target::EcrPublic => {
            if settings.aws_accept_irsa {
                &[AWS_ROLE_ANNOTATION, IRSA_ROLE_ANNOTATION]
            } else {
                &[AWS_ROLE_ANNOTATION]
            }
        }
        Target::Google(_) => {
            if annotations
                .get(GKE_ENABLE_ANNOTATION)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            {
                return Some(GKE_ENABLE_ANNOTATION);
            }
            &[GKE_SERVICE_ACCOUNT_ANNOTATION, GOOGLE_AUDIENCE_ANNOTATION]
        }
        Target::Acr(_) => &[AZURE_CLIENT_ANNOTATION],
    };
    keys.iter().copied().find(|k| has(k))
}

fn missing_hint(target: &Target, settings: &WorkloadSettings) -> String {
    match target {
        Target::EcrPrivate(_) | Target::EcrPublic => {
            let irsa = if settings.aws_accept_irsa {
                format!(" or {IRSA_ROLE_ANNOTATION}")
            } else {
                String::new()
            };
            format!(
                "annotate it with {AWS_ROLE_ANNOTATION}{irsa}, or set a default role with --ecr-role-arn / {AWS_ROLE_ENV}"
            )
        }
        Target::Google(_) => format!(
            "annotate it with {GKE_ENABLE_ANNOTATION}: \"true\", {GKE_SERVICE_ACCOUNT_ANNOTATION} or {GOOGLE_AUDIENCE_ANNOTATION}, or set --google-audience"
        ),
        Target::Acr(_) => format!(
            "annotate it with {AZURE_CLIENT_ANNOTATION} (and {AZURE_TENANT_ANNOTATION} unless the node's tenant applies)"
        ),
    }
}

fn annotation<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

fn aws_identity(
    account: &ServiceAccount,
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Result<Option<Identity>, String> {
    let mut found = annotation(annotations, AWS_ROLE_ANNOTATION)
        .map(|r| (r.to_string(), format!("annotation {AWS_ROLE_ANNOTATION}")));
    if found.is_none() && settings.aws_accept_irsa {
        found = annotation(annotations, IRSA_ROLE_ANNOTATION)
            .map(|r| (r.to_string(), format!("annotation {IRSA_ROLE_ANNOTATION}")));
    }
    if found.is_none() {
        found = settings
            .aws_default_role
            .as_ref()
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                (
                    r.trim().to_string(),
                    format!("--ecr-role-arn / {AWS_ROLE_ENV}"),
                )
            });
    }
    let Some((role_arn, from)) = found else {
        return Ok(None);
    };
    check_role_arn(&role_arn).map_err(|why| format!("{account}: {from}: {why}"))?;
    Ok(Some(Identity::Aws {
        session_name: session_name(&account.namespace, &account.name),
        role_arn,
        from,
    }))
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let shown: String = arn.chars().take(120).collect();
    let bad = || format!("{shown:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)");
    let mut p = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(acct), Some(res)) =
        (p.next(), p.next(), p.next(), p.next(), p.next(), p.next())
    else {
        return Err(bad());
    };
    let name = res.strip_prefix("role/").ok_or_else(bad)?;
    if !partition.starts_with("aws")
        || acct.len() != 12
        || !acct.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || name.len() > 512
        || arn.chars().any(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(())
}

fn google_identity(
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Result<Option<Identity>, String> {
    let enabled = annotations
        .get(GKE_ENABLE_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let impersonate = annotation(annotations, GKE_SERVICE_ACCOUNT_ANNOTATION)
        .map(str::to_string)
        .or_else(|| {
            settings
                .google_service_account
                .clone()
                .filter(|s| !s.trim().is_empty())
        });
    let audience_annotation = annotation(annotations, GOOGLE_AUDIENCE_ANNOTATION);
    let opted_in = enabled
        || annotation(annotations, GKE_SERVICE_ACCOUNT_ANNOTATION).is_some()
        || audience_annotation.is_some()
        || settings.google_audience.is_some();
    if !opted_in {
        return Ok(None);
    }
    if let Some(sa) = &impersonate
        && (!sa.contains('@') || sa.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        let shown: String = sa.chars().take(120).collect();
        return Err(format!(
            "{GKE_SERVICE_ACCOUNT_ANNOTATION} {shown:?} is not a service account email"
        ));
    }
    let audience = match audience_annotation
        .map(str::to_string)
        .or_else(|| settings.google_audience.clone())
    {
        Some(a) => Audience::Given(a),
        None => Audience::GkeMetadata,
    };
    Ok(Some(Identity::Google {
        audience,
        impersonate,
    }))
}

fn azure_identity(annotations: &BTreeMap<String, String>) -> Option<Identity> {
    let client_id = annotation(annotations, AZURE_CLIENT_ANNOTATION)?.to_string();
    Some(Identity::Azure {
        client_id,
        tenant: annotation(annotations, AZURE_TENANT_ANNOTATION).map(str::to_string),
    })
}

/// `RoleSessionName` for a service account: `<namespace>.<name>` (a namespace
/// has no dots, so the first dot separates them), characters STS refuses
/// replaced with `-`, and over 64 characters cut to 55 plus `-` and 8 hex
/// digits of a hash of the whole, so distinct accounts stay distinct.
pub fn session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("{namespace}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= MAX_SESSION_NAME {
        return full;
    }
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{tag}", &full[..MAX_SESSION_NAME - 9])
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<serde_json::Value>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
    serviceaccount: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
    uid: Option<String>,
}

/// Reads whose token it is. Errors say what is missing, never what is there.
pub fn read_claims(token: &str) -> Result<ServiceAccount, String> {
    const NOT_JWT: &str = "the serviceAccountToken is not a JWT (want header.payload.signature)";
    let mut parts = token.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NOT_JWT.into());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| NOT_JWT.to_string())?;
    let c: Claims = serde_json::from_slice(&bytes).map_err(|_| {
        "the serviceAccountToken's payload is not a JSON object of claims".to_string()
    })?;
    let (sub_ns, sub_name) = match c
        .sub
        .as_deref()
        .and_then(|s| s.strip_prefix("system:serviceaccount:"))
    {
        Some(rest) => match rest.split_once(':') {
            Some((ns, name)) => (Some(ns.to_string()), Some(name.to_string())),
            None => (None, None),
        },
        None => (None, None),
    };
    let k = c.kubernetes.as_ref();
    let namespace = k.and_then(|k| k.namespace.clone()).or(sub_ns);
    let sa = k.and_then(|k| k.serviceaccount.as_ref());
    let name = sa.and_then(|s| s.name.clone()).or(sub_name);
    let uid = sa.and_then(|s| s.uid.clone());
    let (Some(namespace), Some(name), Some(uid)) = (namespace, name, uid) else {
        return Err(
            "the serviceAccountToken carries no service account identity (kubernetes.io namespace, serviceaccount name and uid claims); is it a Kubernetes service account token?"
                .into(),
        );
    };
    if [&namespace, &name, &uid]
        .iter()
        .any(|s| s.is_empty() || s.len() > 253 || s.chars().any(char::is_control))
    {
        return Err("the serviceAccountToken's service account claims are malformed".into());
    }
    let expires_at = match &c.exp {
        Some(serde_json::Value::Number(n)) => {
            n.as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or("the serviceAccountToken's exp claim is not a number")?
        }
        _ => return Err("the serviceAccountToken has no exp claim".into()),
    };
    Ok(ServiceAccount {
        issuer: c.iss.unwrap_or_default(),
        namespace,
        name,
        uid,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::route;

    fn jwt(claims: serde_json::Value) -> String {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            e(br#"{"alg":"RS256","kid":"k"}"#),
            e(claims.to_string().as_bytes()),
            e(b"sig")
        )
    }

    fn token(ns: &str, name: &str, uid: &str, exp: i64) -> Secret {
        Secret::new(jwt(serde_json::json!({
            "iss": "https://kubernetes.default.svc",
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "aud": ["sts.amazonaws.com"],
            "exp": exp,
            "kubernetes.io": {
                "namespace": ns,
                "serviceaccount": {"name": name, "uid": uid},
                "pod": {"name": "p", "uid": "pod-uid"}
            }
        })))
    }

    fn target(image: &str) -> Target {
        route(&crate::image::ImageRef::parse(image).unwrap()).unwrap()
    }

    const ECR: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com/app";
    const NOW: i64 = 1_800_000_000;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The identity a request with token `t` and `pairs` asks for, or the error.
    fn identity_of(
        image: &str,
        t: &Secret,
        pairs: &[(&str, &str)],
        s: &WorkloadSettings,
    ) -> Result<Identity, String> {
        match resolve(&target(image), Some(t), &ann(pairs), s, NOW)? {
            Resolution::Workload(w) => Ok(w.identity),
            other => Err(format!("not a workload: {other:?}")),
        }
    }

    #[test]
    fn reads_service_account_claims() {
        let t = token("team-a", "builder", "u-1", NOW + 3600);
        let a = read_claims(t.expose()).unwrap();
        assert_eq!(
            (a.namespace.as_str(), a.name.as_str(), a.uid.as_str()),
            ("team-a", "builder", "u-1")
        );
        assert_eq!(a.expires_at, NOW + 3600);
        assert!(read_claims("not-a-jwt").unwrap_err().contains("not a JWT"));
        assert!(read_claims("a.b.c.d").is_err());
        let no_uid = jwt(serde_json::json!({"sub": "system:serviceaccount:a:b", "exp": NOW}));
        assert!(read_claims(&no_uid).unwrap_err().contains("uid"));
        let no_exp = jwt(
            serde_json::json!({"kubernetes.io": {"namespace": "a", "serviceaccount": {"name": "b", "uid": "c"}}}),
        );
        assert!(read_claims(&no_exp).unwrap_err().contains("exp"));
    }

    #[test]
    fn errors_never_hold_the_token() {
        let secretish = "eyJsecret-looking-value";
        for t in [secretish.to_string(), format!("{secretish}.{secretish}.x")] {
            let e = read_claims(&t).unwrap_err();
            assert!(!e.contains("secret-looking"), "{e}");
        }
    }

    #[test]
    fn aws_role_from_annotation_irsa_flag_and_default() {
        let t = token("ns", "sa", "u", NOW + 600);
        let s = WorkloadSettings::default();
        let role = "arn:aws:iam::123456789012:role/pull";
        assert_eq!(
            identity_of(ECR, &t, &[(AWS_ROLE_ANNOTATION, role)], &s).unwrap(),
            Identity::Aws {
                role_arn: role.into(),
                session_name: "ns.sa".into(),
                from: format!("annotation {AWS_ROLE_ANNOTATION}")
            }
        );
        // IRSA's annotation only with the flag
        let irsa = ann(&[(IRSA_ROLE_ANNOTATION, role)]);
        let e = resolve(&target(ECR), Some(&t), &irsa, &s, NOW).unwrap_err();
        assert!(
            e.contains(AWS_ROLE_ANNOTATION) && e.contains("--service-account-fallback"),
            "{e}"
        );
        let with_flag = WorkloadSettings {
            aws_accept_irsa: true,
            ..s.clone()
        };
        assert!(matches!(
            resolve(&target(ECR), Some(&t), &irsa, &with_flag, NOW).unwrap(),
            Resolution::Workload(_)
        ));
        let default = WorkloadSettings {
            aws_default_role: Some(role.into()),
            ..s.clone()
        };
        assert!(matches!(
            resolve(&target(ECR), Some(&t), &ann(&[]), &default, NOW).unwrap(),
            Resolution::Workload(_)
        ));
        let fallback = WorkloadSettings {
            fallback_to_node: true,
            ..s.clone()
        };
        assert!(matches!(
            resolve(&target(ECR), Some(&t), &ann(&[]), &fallback, NOW).unwrap(),
            Resolution::NodeFallback { .. }
        ));
        let bad = ann(&[(AWS_ROLE_ANNOTATION, "arn:aws:iam::12:role/x")]);
        assert!(
            resolve(&target(ECR), Some(&t), &bad, &s, NOW)
                .unwrap_err()
                .contains("not an IAM role ARN")
        );
    }

    #[test]
    fn expired_tokens_and_annotations_without_token_are_errors() {
        let t = token("ns", "sa", "u", NOW - 1);
        let role = ann(&[(AWS_ROLE_ANNOTATION, "arn:aws:iam::123456789012:role/pull")]);
        let s = WorkloadSettings::default();
        assert!(
            resolve(&target(ECR), Some(&t), &role, &s, NOW)
                .unwrap_err()
                .contains("expired")
        );
        let e = resolve(&target(ECR), None, &role, &s, NOW).unwrap_err();
        assert!(
            e.contains("serviceAccountToken") && e.contains("tokenAttributes"),
            "{e}"
        );
        assert!(matches!(
            resolve(&target(ECR), None, &ann(&[]), &s, NOW).unwrap(),
            Resolution::Node
        ));
    }

    #[test]
    fn google_and_azure_identities() {
        let t = token("ns", "sa", "u", NOW + 600);
        let s = WorkloadSettings::default();
        let gar = "us-docker.pkg.dev/p/r/i";
        let e = identity_of(gar, &t, &[], &s).unwrap_err();
        assert!(e.contains(GKE_ENABLE_ANNOTATION), "{e}");
        assert_eq!(
            identity_of(gar, &t, &[(GKE_ENABLE_ANNOTATION, "true")], &s).unwrap(),
            Identity::Google {
                audience: Audience::GkeMetadata,
                impersonate: None
            }
        );
        let a = [(
            GKE_SERVICE_ACCOUNT_ANNOTATION,
            "puller@p.iam.gserviceaccount.com",
        )];
        let with_aud = WorkloadSettings {
            google_audience: Some("//iam/pool".into()),
            ..s.clone()
        };
        assert_eq!(
            identity_of(gar, &t, &a, &with_aud).unwrap(),
            Identity::Google {
                audience: Audience::Given("//iam/pool".into()),
                impersonate: Some("puller@p.iam.gserviceaccount.com".into())
            }
        );
        let acr = "example.azurecr.io/app";
        let e = identity_of(acr, &t, &[(AZURE_TENANT_ANNOTATION, "t")], &s).unwrap_err();
        assert!(e.contains(AZURE_CLIENT_ANNOTATION), "{e}");
        assert_eq!(
            identity_of(acr, &t, &[(AZURE_CLIENT_ANNOTATION, "c")], &s).unwrap(),
            Identity::Azure {
                client_id: "c".into(),
                tenant: None
            }
        );
    }

    #[test]
    fn cache_parts_separate_accounts_sharing_a_role() {
        let role = ann(&[(AWS_ROLE_ANNOTATION, "arn:aws:iam::123456789012:role/pull")]);
        let s = WorkloadSettings::default();
        let parts = |t: Secret| match resolve(&target(ECR), Some(&t), &role, &s, NOW).unwrap() {
            Resolution::Workload(w) => w.cache_parts(),
            _ => panic!(),
        };
        let a = parts(token("ns", "a", "u1", NOW + 600));
        assert_ne!(a, parts(token("ns", "b", "u2", NOW + 600)));
        assert_ne!(
            a,
            parts(token("ns", "a", "u3", NOW + 600)),
            "a re-created account"
        );
        assert_eq!(
            a,
            parts(token("ns", "a", "u1", NOW + 900)),
            "another token of the same account"
        );
    }

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("default", "builder"), "default.builder");
        let long = session_name("a-very-long-namespace-name-indeed", &"x.".repeat(60));
        assert_eq!(long.len(), 64);
        assert_ne!(
            long,
            session_name("a-very-long-namespace-name-indeed", &"x.".repeat(61))
        );
        for n in [long, session_name("ns", "weird:name")] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
                "{n}"
            );
        }
    }

    #[test]
    fn role_arns() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/pull").is_ok());
        assert!(check_role_arn("arn:aws-cn:iam::123456789012:role/path/pull").is_ok());
        assert!(check_role_arn("arn:aws:iam::123456789012:user/pull").is_err());
        assert!(check_role_arn("arn:aws:sts::123456789012:role/pull").is_err());
        assert!(check_role_arn("pull").is_err());
    }
}
