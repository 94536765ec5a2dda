//! `eksPodIdentity`: EKS Pod Identity for ECR and ECR Public. A request
//! whose service-account token has the Pod Identity audience is exchanged
//! with the EKS Auth API `AssumeRoleForPodIdentity`; the pod identity
//! association decides the role, no annotation is needed.
//!
//! ```yaml
//! eksPodIdentity:
//!   clusterName: prod            # else PULLCRED_EKS_CLUSTER_NAME, else nodeadm
//!   region: us-west-2            # the cluster's region; else nodeadm, else the SDK chain
//!   nodeadmConfig: /run/eks/nodeadm/config.json
//!   prefer: podIdentity          # or annotations
//! ```
//!
//! On EKS AL2023 nodes, `nodeadm-config.service` runs `nodeadm init --skip run
//! --config-source imds://user-data --config-cache /run/eks/nodeadm/config.json`
//! (awslabs/amazon-eks-ami, `templates/al2023/runtime/rootfs/etc/systemd/system/`):
//! the resolved NodeConfig, JSON, with `spec.cluster.name` and
//! `status.instance.region` (nodeadm `internal/api/types.go`). A NodeConfig
//! written by hand (YAML, as in user data) has the same `spec.cluster.name`.

use serde::{Deserialize, Serialize};

use super::Problem;

/// The audience EKS Pod Identity tokens carry.
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// Where nodeadm caches the NodeConfig it resolved (EKS AL2023 nodes).
pub const NODEADM_CONFIG: &str = "/run/eks/nodeadm/config.json";
/// Largest NodeConfig read.
pub const NODEADM_MAX_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EksPodIdentity {
    /// The EKS cluster's name. Else `PULLCRED_EKS_CLUSTER_NAME`, else the
    /// node's nodeadm NodeConfig (`spec.cluster.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The cluster's region, where EKS Auth is called. Else the NodeConfig's
    /// `status.instance.region`, else the AWS SDK's region chain
    /// (`AWS_REGION`, profile, instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The nodeadm NodeConfig to read the cluster name from
    /// (default [`NODEADM_CONFIG`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodeadm_config: Option<String>,
    /// Which wins when a token could use both: `podIdentity` (default: the
    /// association, then the role annotations) or `annotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer: Option<Prefer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Prefer {
    /// The association first; the role annotations when EKS Auth says the
    /// service account has none.
    #[default]
    PodIdentity,
    /// A role annotation wins; the association serves the others.
    Annotations,
}

impl EksPodIdentity {
    pub fn check(&self, at: &str, out: &mut Vec<Problem>) {
        if let Some(name) = &self.cluster_name
            && let Err(why) = check_cluster_name(name)
        {
            out.push(Problem::error(format!("{at}.clusterName"), why));
        }
        if let Some(region) = &self.region
            && !valid_region(region)
        {
            out.push(Problem::error(
                format!("{at}.region"),
                format!("{region:?} is not an AWS region (us-west-2)"),
            ));
        }
        if let Some(path) = &self.nodeadm_config
            && !path.starts_with('/')
        {
            out.push(Problem::error(
                format!("{at}.nodeadmConfig"),
                format!("{path:?} is not an absolute path"),
            ));
        }
    }
}

/// EKS: 1-100 characters, letters, digits, hyphens and underscores,
/// starting with a letter or digit (EKS API Reference, CreateCluster `name`;
/// AssumeRoleForPodIdentity `clusterName`).
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(120).collect();
        Err(format!(
            "{shown:?} is not an EKS cluster name (1-100 letters, digits, '-' or '_')"
        ))
    }
}

/// `us-west-2`, `us-gov-east-1`, `cn-north-1`, `eu-isoe-west-1`: lowercase
/// words joined by `-`, ending in a number.
pub fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((num, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.len() <= 12 && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !num.is_empty()
        && num.len() <= 2
        && num.bytes().all(|b| b.is_ascii_digit())
}

/// What pullcred reads from a nodeadm NodeConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeadmFacts {
    /// `spec.cluster.name`.
    pub cluster_name: Option<String>,
    /// `status.instance.region` (nodeadm's cached config only).
    pub region: Option<String>,
}

#[derive(Deserialize)]
struct NodeConfig {
    kind: Option<String>,
    spec: Option<Spec>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Spec {
    cluster: Option<Cluster>,
}

#[derive(Deserialize)]
struct Cluster {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    instance: Option<Instance>,
}

#[derive(Deserialize)]
struct Instance {
    region: Option<String>,
}

/// Reads a NodeConfig (nodeadm's JSON cache, or YAML): the cluster name and
/// the instance's region. Errors say what is wrong, never quote the file.
pub fn read_nodeadm(text: &str) -> Result<NodeadmFacts, String> {
    let opts = serde_saphyr::options! { with_snippet: false };
    let c: NodeConfig = serde_saphyr::from_str_with_options(text, opts).map_err(|_| {
        "is not a nodeadm NodeConfig (YAML or JSON with spec.cluster.name)".to_string()
    })?;
    if let Some(kind) = &c.kind
        && kind != "NodeConfig"
    {
        return Err(format!(
            "has kind {:?}, not NodeConfig",
            kind.chars().take(40).collect::<String>()
        ));
    }
    let cluster_name = c
        .spec
        .and_then(|s| s.cluster)
        .and_then(|c| c.name)
        .filter(|n| !n.is_empty());
    if let Some(n) = &cluster_name {
        check_cluster_name(n).map_err(|why| format!("spec.cluster.name: {why}"))?;
    }
    let region = c
        .status
        .and_then(|s| s.instance)
        .and_then(|i| i.region)
        .filter(|r| valid_region(r));
    Ok(NodeadmFacts {
        cluster_name,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nodeadms_json_cache_and_yaml() {
        // The shape nodeadm caches (internal NodeConfig, JSON).
        let cached = r#"{"kind":"NodeConfig","apiVersion":"node.eks.aws/v1alpha1","metadata":{"creationTimestamp":null},
            "spec":{"cluster":{"apiServerEndpoint":"https://example.com","certificateAuthority":"Y2E=","cidr":"10.100.0.0/16","name":"my-cluster"},
            "containerd":{},"instance":{"localStorage":{},"network":{}},"kubelet":{}},
            "status":{"instance":{"id":"i-1234567890abcdef0","region":"us-west-2","type":"m5.large"},"default":{"sandboxImage":"x"},"kubeletVersion":"v1.33.0"}}"#;
        assert_eq!(
            read_nodeadm(cached).unwrap(),
            NodeadmFacts {
                cluster_name: Some("my-cluster".into()),
                region: Some("us-west-2".into())
            }
        );
        let yaml = "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: prod_1\n    apiServerEndpoint: https://example.com\n";
        assert_eq!(
            read_nodeadm(yaml).unwrap(),
            NodeadmFacts {
                cluster_name: Some("prod_1".into()),
                region: None
            }
        );
        assert_eq!(read_nodeadm("spec: {}\n").unwrap(), NodeadmFacts::default());
        assert!(read_nodeadm("kind: Other\n").unwrap_err().contains("Other"));
        assert!(read_nodeadm("spec:\n  cluster:\n    name: 'bad name'\n").is_err());
        let e = read_nodeadm("[not, a, map, secret-ish]").unwrap_err();
        assert!(!e.contains("secret-ish"), "{e}");
    }

    #[test]
    fn check_names_fields() {
        let bad = EksPodIdentity {
            cluster_name: Some("-x".into()),
            region: Some("Mars-1".into()),
            nodeadm_config: Some("relative.json".into()),
            prefer: None,
        };
        let mut out = Vec::new();
        bad.check("eksPodIdentity", &mut out);
        let at: Vec<&str> = out.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            at,
            [
                "eksPodIdentity.clusterName",
                "eksPodIdentity.region",
                "eksPodIdentity.nodeadmConfig"
            ]
        );
        let good = EksPodIdentity {
            cluster_name: Some("prod-1_a".into()),
            region: Some("us-gov-west-1".into()),
            nodeadm_config: Some(NODEADM_CONFIG.into()),
            prefer: Some(Prefer::Annotations),
        };
        let mut out = Vec::new();
        good.check("e", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn parses_in_a_pullcred_config() {
        let c = super::super::parse(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\neksPodIdentity:\n  clusterName: prod\n  prefer: annotations\n",
        )
        .unwrap();
        let e = c.eks_pod_identity.unwrap();
        assert_eq!(e.cluster_name.as_deref(), Some("prod"));
        assert_eq!(e.prefer, Some(Prefer::Annotations));
        assert!(
            super::super::parse(
                "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\neksPodIdentity:\n  prefer: nodes\n"
            )
            .is_err()
        );
    }
}
