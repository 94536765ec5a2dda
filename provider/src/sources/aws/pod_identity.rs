//! EKS Pod Identity for image pulls: a service-account token whose audience
//! is `pods.eks.amazonaws.com` is exchanged with the EKS Auth API
//! (`AssumeRoleForPodIdentity`), and the session it returns signs the ECR
//! (or ECR Public) `GetAuthorizationToken` call, as an assumed role's does.
//!
//! The exchange, as the EKS API Reference documents it (Amazon EKS Auth,
//! "AssumeRoleForPodIdentity") and aws-sdk-go-v2 `service/eksauth` builds it:
//!
//! ```text
//! POST https://eks-auth.<region>.api.aws/clusters/<clusterName>/assume-role-for-pod-identity
//!      (eks-auth-fips.<region>.api.aws with FIPS; the partition's dual-stack
//!      suffix: api.amazonwebservices.com.cn in China, api.aws in GovCloud)
//!      Content-Type: application/json, signed with SigV4 (service eks-auth)
//!      by the NODE's credentials: the node role needs
//!      eks-auth:AssumeRoleForPodIdentity (AmazonEKSWorkerNodeMinimalPolicy)
//!      {"token": "<service-account token>"}
//! 200  {"credentials": {"accessKeyId", "secretAccessKey", "sessionToken",
//!       "expiration": <epoch seconds>}, "assumedRoleUser": {"arn", "assumeRoleId"},
//!       "podIdentityAssociation": {"associationArn", "associationId"},
//!       "subject": {"namespace", "serviceAccount"}, "audience"}
//! 4xx/5xx  x-amzn-ErrorType: <Code>, {"message": ..}: ResourceNotFoundException
//!       (no association for the service account), AccessDeniedException,
//!       InvalidTokenException, ExpiredTokenException, InvalidParameterException,
//!       InvalidRequestException, ThrottlingException, InternalServerException,
//!       ServiceUnavailableException
//! ```
//!
//! The call goes through the AWS SDK (`aws-sdk-eksauth`, see [`super::sdk`]):
//! it is SigV4-signed with the node's credential chain, which the SDK already
//! resolves for ECR, and the SDK brings the partition endpoints, retries and
//! `AWS_ENDPOINT_URL_EKS_AUTH` (checked by the same https-only rule as every
//! AWS endpoint override).
//!
//! **Which identity a request gets** (ECR and ECR Public; a token without
//! the Pod Identity audience keeps the role rules of [`super`]):
//!
//! - `prefer: podIdentity` (the default): the association. When EKS Auth
//!   answers `ResourceNotFoundException` (no association), the role the
//!   annotations name (`eks.amazonaws.com/ecr-role-arn`, IRSA's
//!   `eks.amazonaws.com/role-arn` with `--accept-irsa-role-annotation`),
//!   else the `--ecr-role-arn` default, assumed with the same token by
//!   `AssumeRoleWithWebIdentity` (the IAM OIDC provider must then accept the
//!   `pods.eks.amazonaws.com` audience); else the node's identity with
//!   `--service-account-fallback=node`; else a refusal naming
//!   `aws eks create-pod-identity-association`.
//! - `prefer: annotations`: an annotation naming a role wins (that role,
//!   as above); the association serves the rest, then the default role, the
//!   node fallback or the refusal, as above.
//!
//! **Cluster and region.** The cluster name comes from `eksPodIdentity.clusterName`,
//! else `PULLCRED_EKS_CLUSTER_NAME`, else the node's nodeadm NodeConfig
//! (`spec.cluster.name`; see `kubelet_config::pullcred::eks`). EKS Auth is
//! called in the cluster's region: `eksPodIdentity.region`, else the
//! NodeConfig's `status.instance.region`, else the SDK's region chain
//! (`AWS_REGION`, profile, instance metadata). Not the registry's region: a
//! pod may pull from a registry of another region, and EKS Auth knows the
//! cluster only in its own.
//!
//! **Cache key.** The association decides the role, so the entry is keyed by
//! the workload (issuer, namespace, name, UID), the cluster, the EKS Auth
//! region and endpoint, the role that would serve without an association,
//! and `pod-identity`: never the node's entry, never an annotation role's.
//! The ECR token is not used past the session's `expiration`.

use std::path::Path;

use super::AwsRole;
use crate::workload::{Identity, IdentityKind, ServiceAccount};
pub use kubelet_config::pullcred::eks::{
    EksPodIdentity, NODEADM_CONFIG, NODEADM_MAX_BYTES, POD_IDENTITY_AUDIENCE, Prefer,
};

/// `PULLCRED_EKS_CLUSTER_NAME`: the cluster's name, when the config file does not say.
pub const CLUSTER_ENV: &str = "PULLCRED_EKS_CLUSTER_NAME";
/// The SDK's endpoint override for EKS Auth.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_EKS_AUTH";

/// Whether the token was minted for EKS Pod Identity (its `aud`).
pub fn is_pod_identity_token(audiences: &[String]) -> bool {
    audiences.iter().any(|a| a == POD_IDENTITY_AUDIENCE)
}

/// A service account's EKS Pod Identity: the association in `cluster`
/// decides the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub cluster: String,
    /// Where the cluster name came from, for messages.
    pub cluster_from: String,
    /// The cluster's region; `None`: the SDK's region chain.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_EKS_AUTH`, when set (it decides who answers).
    pub endpoint: Option<String>,
    /// The role for a service account without an association.
    pub fallback: Option<AwsRole>,
    /// `--service-account-fallback=node`: the node's identity when there is
    /// neither an association nor a role.
    pub fallback_to_node: bool,
}

impl Identity for PodIdentity {
    fn describe(&self) -> String {
        let region = self.region.as_deref().unwrap_or("of the AWS region chain");
        let then = match (&self.fallback, self.fallback_to_node) {
            (Some(r), _) => format!("without an association, {}", r.describe()),
            (None, true) => {
                "without an association, the node's identity (--service-account-fallback=node)"
                    .to_string()
            }
            (None, false) => "an association is required".to_string(),
        };
        format!(
            "EKS Pod Identity: the pod identity association in cluster {} (from {}), via EKS Auth AssumeRoleForPodIdentity in region {region}; {then}",
            self.cluster, self.cluster_from
        )
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        let mut parts = vec![
            ("aws-path", "pod-identity".to_string()),
            ("eks-cluster", self.cluster.clone()),
            (
                "eks-auth-region",
                self.region.clone().unwrap_or_else(|| "(chain)".into()),
            ),
            (
                "eks-auth-endpoint",
                self.endpoint.clone().unwrap_or_default(),
            ),
            ("fallback-node", self.fallback_to_node.to_string()),
        ];
        if let Some(r) = &self.fallback {
            parts.push(("fallback-role", r.role_arn.clone()));
            parts.push(("fallback-session", r.session_name.clone()));
        }
        parts
    }

    /// The association's role is known only after the exchange (and EKS
    /// decides it); the role a pod would fall back to is the pod's choice.
    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        self.fallback
            .as_ref()
            .map(|r| (IdentityKind::IamRole, r.role_arn.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Where EKS Auth is asked: the cluster and its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub cluster: String,
    pub cluster_from: String,
    pub region: Option<String>,
}

/// Finds the cluster name and region (see the module doc for the order).
/// `env` is `PULLCRED_EKS_CLUSTER_NAME`; `read` reads the NodeConfig, only
/// when something is still missing. A missing name is an error saying
/// where to set it.
pub fn locate(
    config: Option<&EksPodIdentity>,
    env: Option<&str>,
    read: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<Location, String> {
    let configured_path = config.and_then(|c| c.nodeadm_config.as_deref());
    let path = configured_path.unwrap_or(NODEADM_CONFIG);
    let mut cluster = config
        .and_then(|c| c.cluster_name.clone())
        .map(|n| (n, "eksPodIdentity.clusterName".to_string()));
    if cluster.is_none()
        && let Some(n) = env.map(str::trim).filter(|n| !n.is_empty())
    {
        kubelet_config::pullcred::eks::check_cluster_name(n)
            .map_err(|why| format!("{CLUSTER_ENV}: {why}"))?;
        cluster = Some((n.to_string(), CLUSTER_ENV.to_string()));
    }
    let mut region = config.and_then(|c| c.region.clone());
    if cluster.is_none() || region.is_none() {
        match read(Path::new(path)).and_then(|text| {
            kubelet_config::pullcred::eks::read_nodeadm(&text).map_err(|e| format!("{path} {e}"))
        }) {
            Ok(facts) => {
                if cluster.is_none() {
                    cluster = facts.cluster_name.map(|n| (n, path.to_string()));
                }
                if region.is_none() {
                    region = facts.region;
                }
            }
            // The NodeConfig was only wanted for the region: the SDK's
            // region chain will do.
            Err(why) if cluster.is_some() => {
                tracing::debug!("nodeadm NodeConfig not used for the region: {why}");
            }
            Err(why) => return Err(no_cluster(&why)),
        }
    }
    let Some((cluster, cluster_from)) = cluster else {
        return Err(no_cluster(&format!("{path} has no spec.cluster.name")));
    };
    Ok(Location {
        cluster,
        cluster_from,
        region,
    })
}

fn no_cluster(why: &str) -> String {
    format!(
        "EKS Pod Identity needs the cluster's name and none was found ({why}); set eksPodIdentity.clusterName in the pullcred config (--config), or {CLUSTER_ENV}"
    )
}

/// How pullcred takes an answer of EKS Auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EksAuthOutcome {
    /// `ResourceNotFoundException`: no association for the service account
    /// (or no such cluster in that region): the fallbacks may serve.
    NoAssociation,
    /// The token, or the node's right to exchange it, was refused.
    Refused,
    /// Throttling, 5xx, an unreadable answer: an outage.
    Unavailable,
}

/// Classifies an EKS Auth error by its code (`x-amzn-ErrorType`) and status.
pub fn classify(code: Option<&str>, status: u16) -> EksAuthOutcome {
    match code {
        Some("ResourceNotFoundException") => EksAuthOutcome::NoAssociation,
        Some(
            "AccessDeniedException"
            | "InvalidTokenException"
            | "ExpiredTokenException"
            | "InvalidParameterException"
            | "InvalidRequestException",
        ) => EksAuthOutcome::Refused,
        Some("ThrottlingException" | "InternalServerException" | "ServiceUnavailableException") => {
            EksAuthOutcome::Unavailable
        }
        _ if crate::error::is_refusal_status(status) => EksAuthOutcome::Refused,
        _ => EksAuthOutcome::Unavailable,
    }
}

/// What to add to EKS Auth's own message for a refusal, by code.
pub fn refusal_hint(code: &str, account: &ServiceAccount) -> Option<String> {
    match code {
        "AccessDeniedException" => Some(
            "the node's IAM role needs eks-auth:AssumeRoleForPodIdentity (AmazonEKSWorkerNodeMinimalPolicy), and the association's role must trust pods.eks.amazonaws.com with sts:AssumeRole and sts:TagSession"
                .into(),
        ),
        "InvalidTokenException" => Some(format!(
            "is the kubelet's tokenAttributes.serviceAccountTokenAudience {POD_IDENTITY_AUDIENCE}, and the token from this cluster? ({account})"
        )),
        "ExpiredTokenException" => Some("the kubelet should send a fresh token".into()),
        _ => None,
    }
}

/// The refusal when the service account has no association and nothing
/// else names an identity.
pub fn no_association(pi: &PodIdentity, account: &ServiceAccount, upstream: &str) -> String {
    let (ns, name) = (
        crate::logging::echo(&account.namespace),
        crate::logging::echo(&account.name),
    );
    format!(
        "{upstream}; {account} has no EKS Pod Identity association in cluster {}: create one with `aws eks create-pod-identity-association --cluster-name {} --namespace {ns} --service-account {name} --role-arn ROLE_ARN`, or annotate the service account with {}",
        pi.cluster,
        pi.cluster,
        super::AWS_ROLE_ANNOTATION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: Option<&str>, region: Option<&str>) -> EksPodIdentity {
        EksPodIdentity {
            cluster_name: name.map(Into::into),
            region: region.map(Into::into),
            ..Default::default()
        }
    }

    const NODEADM: &str = r#"{"kind":"NodeConfig","spec":{"cluster":{"name":"from-file"}},"status":{"instance":{"region":"eu-west-1"}}}"#;

    fn file(text: &'static str) -> impl FnOnce(&Path) -> Result<String, String> {
        move |_| Ok(text.to_string())
    }

    fn missing(p: &Path) -> Result<String, String> {
        Err(format!("{}: cannot read: no such file", p.display()))
    }

    #[test]
    fn cluster_from_config_then_env_then_nodeadm() {
        let l = locate(
            Some(&cfg(Some("cfg"), Some("us-east-2"))),
            Some("env"),
            |_| panic!("not read when all is configured"),
        )
        .unwrap();
        assert_eq!(
            (l.cluster.as_str(), l.region.as_deref()),
            ("cfg", Some("us-east-2"))
        );
        // the config's name, the file's region
        let l = locate(Some(&cfg(Some("cfg"), None)), None, file(NODEADM)).unwrap();
        assert_eq!(
            (l.cluster.as_str(), l.region.as_deref()),
            ("cfg", Some("eu-west-1"))
        );
        // no file: the SDK's region chain
        let l = locate(Some(&cfg(Some("cfg"), None)), None, missing).unwrap();
        assert_eq!(l.region, None);
        let l = locate(None, Some("env-name"), missing).unwrap();
        assert_eq!(
            (l.cluster.as_str(), l.cluster_from.as_str()),
            ("env-name", CLUSTER_ENV)
        );
        let l = locate(None, None, file(NODEADM)).unwrap();
        assert_eq!(
            (l.cluster.as_str(), l.cluster_from.as_str()),
            ("from-file", NODEADM_CONFIG)
        );
        let custom = EksPodIdentity {
            nodeadm_config: Some("/etc/eks/nodeadm.d/node.yaml".into()),
            ..Default::default()
        };
        let l = locate(Some(&custom), None, |p| {
            assert_eq!(p, Path::new("/etc/eks/nodeadm.d/node.yaml"));
            Ok("spec:\n  cluster:\n    name: yaml-one\n".into())
        })
        .unwrap();
        assert_eq!(l.cluster, "yaml-one");
    }

    #[test]
    fn a_missing_cluster_name_says_where_to_set_it() {
        for e in [
            locate(None, None, missing).unwrap_err(),
            locate(None, Some("  "), file("spec: {}\n")).unwrap_err(),
            locate(None, None, file("[1, 2]")).unwrap_err(),
        ] {
            assert!(
                e.contains("eksPodIdentity.clusterName") && e.contains(CLUSTER_ENV),
                "{e}"
            );
        }
        assert!(
            locate(None, Some("bad name"), missing)
                .unwrap_err()
                .contains(CLUSTER_ENV)
        );
    }

    #[test]
    fn error_codes() {
        use EksAuthOutcome::*;
        assert_eq!(
            classify(Some("ResourceNotFoundException"), 404),
            NoAssociation
        );
        for c in [
            "AccessDeniedException",
            "InvalidTokenException",
            "ExpiredTokenException",
        ] {
            assert_eq!(classify(Some(c), 400), Refused, "{c}");
        }
        assert_eq!(classify(Some("ThrottlingException"), 429), Unavailable);
        assert_eq!(classify(Some("ThrottlingException"), 400), Unavailable);
        assert_eq!(classify(Some("InternalServerException"), 500), Unavailable);
        assert_eq!(classify(None, 503), Unavailable);
        assert_eq!(classify(None, 403), Refused);
        assert_eq!(classify(None, 429), Unavailable);
    }

    #[test]
    fn cache_parts_name_the_path_and_the_fallback() {
        let pi = PodIdentity {
            cluster: "c".into(),
            cluster_from: "x".into(),
            region: None,
            endpoint: None,
            fallback: None,
            fallback_to_node: false,
        };
        let parts = pi.cache_parts();
        assert!(parts.contains(&("aws-path", "pod-identity".into())));
        let with_role = PodIdentity {
            fallback: Some(AwsRole {
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                session_name: "ns.sa".into(),
                from: "annotation".into(),
            }),
            ..pi.clone()
        };
        assert_ne!(parts, with_role.cache_parts());
        let other_cluster = PodIdentity {
            cluster: "d".into(),
            ..pi.clone()
        };
        assert_ne!(parts, other_cluster.cache_parts());
        assert!(pi.describe().contains("an association is required"));
    }
}
