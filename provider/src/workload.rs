//! Per-pod identity from the pod's service-account token (KEP-4412).
//!
//! Since Kubernetes 1.33 a v1 `CredentialProviderRequest` may carry the pod's
//! service-account token and the annotations of its service account (those the
//! kubelet config's `tokenAttributes` lists). This module decides, from plain
//! values and without any I/O, which identity a request asks for. The rules
//! of each cloud live with its source (`sources::aws`, `sources::google`,
//! `sources::acr`, as [`PodRules`]); this module holds what they share:
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
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::secret::Secret;
pub use crate::settings::WorkloadSettings;
pub use kubelet_config::pullcred::policy::IdentityKind;
use kubelet_config::pullcred::policy::{self, Fallback};

/// A cloud's per-pod identity rules: which annotations name an identity,
/// what identity they name, and what to tell an operator when none does.
pub trait PodRules {
    /// The annotation that names an identity, if any is set; `None` for
    /// rules no annotation steers (an exchange, namespace-scoped credentials).
    fn naming_annotation(
        &self,
        _annotations: &BTreeMap<String, String>,
        _settings: &WorkloadSettings,
    ) -> Option<&'static str> {
        None
    }
    /// The identity the service account asks for; `None` when nothing names one.
    fn identity(
        &self,
        account: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String>;
    /// [`identity`](Self::identity), for rules that also depend on the
    /// token's audiences (`aud`, read unverified as the other claims are):
    /// AWS sends a `pods.eks.amazonaws.com` token to EKS Pod Identity.
    fn identity_for_audiences(
        &self,
        account: &ServiceAccount,
        _audiences: &[String],
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        self.identity(account, annotations, settings)
    }
    /// How to name an identity, for the error when nothing does.
    fn missing_hint(&self, settings: &WorkloadSettings) -> String;
}

/// The cloud identity a service account asks for, owned by its source.
pub trait Identity: std::fmt::Debug + Send + Sync {
    /// In a user's words (request text may be long: the caller clips).
    fn describe(&self) -> String;
    /// The cache key's parts: which identity.
    fn cache_parts(&self) -> Vec<(&'static str, String)>;
    /// For the source's own fetch, to get its type back.
    fn as_any(&self) -> &dyn std::any::Any;
    /// What the config file's `policy` `allow` lists restrict: the kind of
    /// identity and its name (a role ARN, an email, a client ID). `None`:
    /// not restricted by policy.
    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        None
    }
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

/// A request's per-pod identity, resolved.
#[derive(Debug, Clone)]
pub struct Workload {
    pub account: ServiceAccount,
    pub identity: Arc<dyn Identity>,
    pub token: Secret,
}

impl Workload {
    /// The identity in a user's words, with request text clipped (see
    /// [`crate::logging::echo`]).
    pub fn describe_identity(&self) -> String {
        let line = self.identity.describe();
        crate::logging::clip(&line, 3 * crate::logging::MAX_ECHO).into_owned()
    }

    /// The cache key's parts: whose token, and which identity it asks for.
    pub fn cache_parts(&self) -> Vec<(&'static str, String)> {
        let a = &self.account;
        let mut parts = vec![
            ("sa-issuer", a.issuer.clone()),
            ("sa-namespace", a.namespace.clone()),
            ("sa-name", a.name.clone()),
            ("sa-uid", a.uid.clone()),
        ];
        parts.extend(self.identity.cache_parts());
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

/// Decides the identity a route's `rules` give the request's token and
/// annotations for `image` (its normalised name, for the policy's registry
/// keys). Errors are one line and never contain the token.
///
/// The policy (config file `policy`, first applicable rule) can forbid the
/// identity the service account names (`allow`), and decides what a pod
/// that names none gets (`fallback`); with no applicable rule, the global
/// `--service-account-fallback` decides. Refusals name the rule.
pub fn resolve(
    rules: &dyn PodRules,
    token: Option<&Secret>,
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
    image: &str,
    now: i64,
) -> Result<Resolution, String> {
    let Some(token) = token else {
        // Annotations come only with tokenAttributes, and then with a token:
        // one without the other is a misconfiguration worth naming.
        if let Some(key) = rules.naming_annotation(annotations, settings) {
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
    let (ns, sa) = (account.namespace.as_str(), account.name.as_str());
    let rule = policy::rule_for(&settings.policy, ns, sa, image);
    // The rule's fallback replaces the global flag for this request, also
    // for a source that decides the fallback itself later (EKS Pod
    // Identity falls back to the node only when no association exists).
    let effective;
    let settings = match rule.and_then(|(_, r)| r.fallback) {
        Some(f) => {
            effective = WorkloadSettings {
                fallback_to_node: f == Fallback::Node,
                ..settings.clone()
            };
            &effective
        }
        None => settings,
    };
    let audiences = read_audiences(token.expose());
    let identity = rules.identity_for_audiences(&account, &audiences, annotations, settings)?;
    match identity {
        Some(identity) => {
            if let Some((kind, value)) = identity.policy_value()
                && let Err(i) = policy::allows(&settings.policy, ns, sa, image, kind, &value)
            {
                return Err(format!(
                    "{account} may not use {} {}: policy[{i}] {} does not allow it",
                    kind_words(kind),
                    crate::logging::echo(&value),
                    kind.field()
                ));
            }
            Ok(Resolution::Workload(Box::new(Workload {
                account,
                identity,
                token: token.clone(),
            })))
        }
        None => {
            let missing = rules.missing_hint(settings);
            let by_rule = rule.and_then(|(i, r)| r.fallback.map(|f| (i, f)));
            match by_rule {
                Some((i, Fallback::Node)) => Ok(Resolution::NodeFallback {
                    why: format!(
                        "{account} names no identity ({missing}); policy[{i}] gives it the node's"
                    ),
                }),
                Some((i, Fallback::Deny)) => Err(format!(
                    "{account} names no identity for this registry: {missing}; policy[{i}] does not let it use the node's identity"
                )),
                None if settings.fallback_to_node => Ok(Resolution::NodeFallback {
                    why: format!("{account} names no identity ({missing})"),
                }),
                None => Err(format!(
                    "{account} names no identity for this registry: {missing}; or let such pods use the node's identity with --service-account-fallback=node (or a policy rule with fallback: node)"
                )),
            }
        }
    }
}

/// An identity kind in a user's words.
fn kind_words(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::IamRole => "IAM role",
        IdentityKind::GoogleServiceAccount => "Google service account",
        IdentityKind::EntraClientId => "Entra client ID",
        IdentityKind::VaultAuthRole => "Vault role",
    }
}

/// The first of `keys` the annotations set (not blank), if any.
pub fn first_set(
    annotations: &BTreeMap<String, String>,
    keys: &[&'static str],
) -> Option<&'static str> {
    keys.iter()
        .copied()
        .find(|k| annotation(annotations, k).is_some())
}

/// An annotation's value, trimmed; `None` when absent or blank.
pub fn annotation<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
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

/// The token's `aud` claim (a string or a list), unverified; empty when
/// absent or unreadable ([`read_claims`] has already judged the token).
pub fn read_audiences(token: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Aud {
        aud: Option<serde_json::Value>,
    }
    let Some(payload) = token.trim().split('.').nth(1) else {
        return Vec::new();
    };
    let aud = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<Aud>(&b).ok())
        .and_then(|a| a.aud);
    match aud {
        Some(serde_json::Value::String(a)) => vec![a],
        Some(serde_json::Value::Array(list)) => list
            .into_iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
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
    use crate::sources::acr::{AZURE_CLIENT_ANNOTATION, AZURE_TENANT_ANNOTATION, AzureClient};
    use crate::sources::aws::{AWS_ROLE_ANNOTATION, AwsRole, IRSA_ROLE_ANNOTATION};
    use crate::sources::google::{
        Audience, GKE_ENABLE_ANNOTATION, GKE_SERVICE_ACCOUNT_ANNOTATION, GoogleIdentity,
    };

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

    /// The per-pod rules of the source that serves `image`.
    fn target(image: &str) -> &'static dyn PodRules {
        let image = crate::image::ImageRef::parse(image).unwrap();
        let route = crate::sources::route_by_host(&image, &Default::default()).unwrap();
        Box::leak(route).pod_rules().unwrap()
    }

    /// What an identity shows of itself: its description and cache parts.
    type Seen = (String, Vec<(&'static str, String)>);

    fn seen(i: impl Identity) -> Seen {
        (i.describe(), i.cache_parts())
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
    ) -> Result<Seen, String> {
        match resolve(target(image), Some(t), &ann(pairs), s, image, NOW)? {
            Resolution::Workload(w) => Ok((w.identity.describe(), w.identity.cache_parts())),
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
        assert_eq!(read_audiences(t.expose()), ["sts.amazonaws.com"]);
        let one = jwt(serde_json::json!({"aud": "pods.eks.amazonaws.com"}));
        assert_eq!(read_audiences(&one), ["pods.eks.amazonaws.com"]);
        assert!(read_audiences("not-a-jwt").is_empty());
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
            seen(AwsRole {
                role_arn: role.into(),
                session_name: "ns.sa".into(),
                from: format!("annotation {AWS_ROLE_ANNOTATION}")
            })
        );
        // IRSA's annotation only with the flag
        let irsa = ann(&[(IRSA_ROLE_ANNOTATION, role)]);
        let e = resolve(target(ECR), Some(&t), &irsa, &s, ECR, NOW).unwrap_err();
        assert!(
            e.contains(AWS_ROLE_ANNOTATION) && e.contains("--service-account-fallback"),
            "{e}"
        );
        let with_flag = WorkloadSettings {
            aws_accept_irsa: true,
            ..s.clone()
        };
        assert!(matches!(
            resolve(target(ECR), Some(&t), &irsa, &with_flag, ECR, NOW).unwrap(),
            Resolution::Workload(_)
        ));
        let default = WorkloadSettings {
            aws_default_role: Some(role.into()),
            ..s.clone()
        };
        assert!(matches!(
            resolve(target(ECR), Some(&t), &ann(&[]), &default, ECR, NOW).unwrap(),
            Resolution::Workload(_)
        ));
        let fallback = WorkloadSettings {
            fallback_to_node: true,
            ..s.clone()
        };
        assert!(matches!(
            resolve(target(ECR), Some(&t), &ann(&[]), &fallback, ECR, NOW).unwrap(),
            Resolution::NodeFallback { .. }
        ));
        let bad = ann(&[(AWS_ROLE_ANNOTATION, "arn:aws:iam::12:role/x")]);
        assert!(
            resolve(target(ECR), Some(&t), &bad, &s, ECR, NOW)
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
            resolve(target(ECR), Some(&t), &role, &s, ECR, NOW)
                .unwrap_err()
                .contains("expired")
        );
        let e = resolve(target(ECR), None, &role, &s, ECR, NOW).unwrap_err();
        assert!(
            e.contains("serviceAccountToken") && e.contains("tokenAttributes"),
            "{e}"
        );
        assert!(matches!(
            resolve(target(ECR), None, &ann(&[]), &s, ECR, NOW).unwrap(),
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
            seen(GoogleIdentity {
                audience: Audience::GkeMetadata,
                impersonate: None
            })
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
            seen(GoogleIdentity {
                audience: Audience::Given("//iam/pool".into()),
                impersonate: Some("puller@p.iam.gserviceaccount.com".into())
            })
        );
        let acr = "example.azurecr.io/app";
        let e = identity_of(acr, &t, &[(AZURE_TENANT_ANNOTATION, "t")], &s).unwrap_err();
        assert!(e.contains(AZURE_CLIENT_ANNOTATION), "{e}");
        assert_eq!(
            identity_of(acr, &t, &[(AZURE_CLIENT_ANNOTATION, "c")], &s).unwrap(),
            seen(AzureClient {
                client_id: "c".into(),
                tenant: None
            })
        );
    }

    #[test]
    fn cache_parts_separate_accounts_sharing_a_role() {
        let role = ann(&[(AWS_ROLE_ANNOTATION, "arn:aws:iam::123456789012:role/pull")]);
        let s = WorkloadSettings::default();
        let parts = |t: Secret| match resolve(target(ECR), Some(&t), &role, &s, ECR, NOW).unwrap() {
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
}
