//! `namespaceCredentials`: static credentials that go only to pods of the
//! namespaces (or service accounts) named, as an `imagePullSecret` in those
//! namespaces did. The namespace comes from the pod's service-account token,
//! so the kubelet config must send one (`tokenAttributes`, with
//! `cacheType: ServiceAccount`).

use serde::{Deserialize, Serialize};

use super::{Problem, check_registry_key, check_selectors};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceCredential {
    /// `namespace` or `namespace/serviceaccount` selectors (globs).
    pub namespaces: Vec<String>,
    /// A dockerconfigjson file (0600) whose keys these namespaces get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_config: Option<String>,
    /// AWS Secrets Manager secrets (`{"username","accessToken"}`) by registry key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aws_secrets: Vec<AwsSecret>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsSecret {
    pub registry: String,
    pub secret: String,
}

impl NamespaceCredential {
    pub fn check(&self, at: &str, out: &mut Vec<Problem>) {
        check_selectors(
            &format!("{at}.namespaces"),
            &self.namespaces,
            "names no namespace",
            out,
        );
        if self.docker_config.is_none() && self.aws_secrets.is_empty() {
            out.push(Problem::error(at, "needs dockerConfig or awsSecrets"));
        }
        for (i, s) in self.aws_secrets.iter().enumerate() {
            check_registry_key(&format!("{at}.awsSecrets[{i}].registry"), &s.registry, out);
            if s.secret.trim().is_empty() {
                out.push(Problem::error(
                    format!("{at}.awsSecrets[{i}].secret"),
                    "must not be empty",
                ));
            }
        }
    }
}
