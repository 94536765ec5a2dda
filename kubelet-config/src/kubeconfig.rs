//! A kubeconfig file (`clientcmd/api/v1` `Config`), read for `pullcred
//! doctor --kubeconfig` (the kubelet's own, `/etc/kubernetes/kubelet.conf`):
//! the current context's server, CA, and client certificate, key or bearer
//! token. Decoding is a pure function on text; reading the files it names is
//! the caller's job (paths are relative to the kubeconfig's directory, as
//! kubectl resolves them).
//!
//! Field names as in k8s.io/client-go `tools/clientcmd/api/v1/types.go`:
//! `clusters[].cluster.{server, certificate-authority,
//! certificate-authority-data, insecure-skip-tls-verify, tls-server-name}`,
//! `users[].user.{client-certificate, client-certificate-data, client-key,
//! client-key-data, token, tokenFile, exec, auth-provider}`,
//! `contexts[].context.{cluster, user}`, `current-context`.

use serde::Deserialize;

/// The parts of a kubeconfig that decide where requests go and as whom.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubeConfig {
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub users: Vec<NamedUser>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(default)]
    pub current_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default)]
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub certificate_authority: Option<String>,
    #[serde(default)]
    pub certificate_authority_data: Option<String>,
    #[serde(default)]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
}

/// A kubeconfig user. `Debug` hides the token.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub client_certificate_data: Option<String>,
    #[serde(default)]
    pub client_key: Option<String>,
    #[serde(default)]
    pub client_key_data: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    pub token_file: Option<String>,
    #[serde(default)]
    pub exec: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub auth_provider: Option<serde::de::IgnoredAny>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("client_certificate", &self.client_certificate)
            .field(
                "client_certificate_data",
                &self.client_certificate_data.as_ref().map(|_| "..."),
            )
            .field("client_key", &self.client_key)
            .field(
                "client_key_data",
                &self.client_key_data.as_ref().map(|_| "<hidden>"),
            )
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default)]
    pub context: Context,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub user: String,
}

/// Material: a file path, or inline text (`*-data` base64 PEM; for `token`,
/// the token itself).
#[derive(Clone, PartialEq, Eq)]
pub enum Material {
    File(String),
    /// The base64 text as written (decoded by the caller).
    Inline(String),
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Material::File(p) => write!(f, "File({p:?})"),
            Material::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate and its key (they may be the same file, as in
    /// the kubelet's rotated `kubelet-client-current.pem`).
    ClientCert { cert: Material, key: Material },
    /// A bearer token, inline or from a file.
    Token(Material),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ClientCert { cert, key } => {
                write!(f, "ClientCert {{ cert: {cert:?}, key: {key:?} }}")
            }
            Credential::Token(Material::File(p)) => write!(f, "Token(File({p:?}))"),
            Credential::Token(Material::Inline(_)) => f.write_str("Token(<hidden>)"),
        }
    }
}

/// The current context, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub context: String,
    pub user_name: String,
    pub server: String,
    pub ca: Option<Material>,
    pub tls_server_name: Option<String>,
    pub credential: Credential,
}

/// Decodes a kubeconfig (YAML or JSON).
pub fn parse(text: &str) -> Result<KubeConfig, String> {
    let opts = serde_saphyr::options! { with_snippet: false };
    let c: Option<KubeConfig> = serde_saphyr::from_str_with_options(text, opts)
        .map_err(|e| format!("not a kubeconfig: {}", one_line(&e.to_string())))?;
    c.ok_or_else(|| "not a kubeconfig: the file is empty".to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl KubeConfig {
    /// The current context's cluster and user (or the only ones, when the
    /// file names no context, as some hand-written files do).
    pub fn resolve(&self) -> Result<Resolved, String> {
        let (context, cluster_name, user_name) = match some(&self.current_context) {
            Some(name) => {
                let c = self
                    .contexts
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| format!("current-context {name:?} is not in contexts"))?;
                (
                    name.to_string(),
                    c.context.cluster.clone(),
                    c.context.user.clone(),
                )
            }
            None => match (&self.contexts[..], &self.clusters[..], &self.users[..]) {
                ([c], _, _) => (
                    c.name.clone(),
                    c.context.cluster.clone(),
                    c.context.user.clone(),
                ),
                ([], [c], [u]) => (String::new(), c.name.clone(), u.name.clone()),
                _ => return Err("no current-context".into()),
            },
        };
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .ok_or_else(|| format!("cluster {cluster_name:?} is not in clusters"))?
            .cluster;
        let user = &self
            .users
            .iter()
            .find(|u| u.name == user_name)
            .ok_or_else(|| format!("user {user_name:?} is not in users"))?
            .user;
        if cluster.server.trim().is_empty() {
            return Err(format!("cluster {cluster_name:?} has no server"));
        }
        if cluster.insecure_skip_tls_verify == Some(true) {
            return Err(format!(
                "cluster {cluster_name:?} sets insecure-skip-tls-verify: refusing to send the node's credentials to an unverified server"
            ));
        }
        let ca = match (
            some(&cluster.certificate_authority_data),
            some(&cluster.certificate_authority),
        ) {
            (Some(d), _) => Some(Material::Inline(d.to_string())),
            (None, Some(p)) => Some(Material::File(p.to_string())),
            (None, None) => None,
        };
        let pick = |data: &Option<String>, file: &Option<String>| match (some(data), some(file)) {
            (Some(d), _) => Some(Material::Inline(d.to_string())),
            (None, Some(p)) => Some(Material::File(p.to_string())),
            (None, None) => None,
        };
        let cert = pick(&user.client_certificate_data, &user.client_certificate);
        let key = pick(&user.client_key_data, &user.client_key);
        let credential = match (cert, key) {
            (Some(cert), Some(key)) => Credential::ClientCert { cert, key },
            (Some(_), None) | (None, Some(_)) => {
                return Err(format!(
                    "user {user_name:?} has a client certificate without its key, or a key without its certificate"
                ));
            }
            (None, None) => match (some(&user.token), some(&user.token_file)) {
                (Some(t), _) => Credential::Token(Material::Inline(t.to_string())),
                (None, Some(p)) => Credential::Token(Material::File(p.to_string())),
                (None, None) if user.exec.is_some() || user.auth_provider.is_some() => {
                    return Err(format!(
                        "user {user_name:?} uses an exec or auth-provider plugin, which pullcred does not run: use the kubelet's kubeconfig (client certificate) or a token"
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "user {user_name:?} has no client certificate and no token"
                    ));
                }
            },
        };
        Ok(Resolved {
            context,
            user_name,
            server: cluster.server.trim().to_string(),
            ca,
            tls_server_name: some(&cluster.tls_server_name).map(str::to_string),
            credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_CONF: &str = r#"
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tQ0E=
    server: https://10.0.0.1:6443
  name: default-cluster
contexts:
- context:
    cluster: default-cluster
    namespace: default
    user: default-auth
  name: default-context
current-context: default-context
preferences: {}
users:
- name: default-auth
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
"#;

    #[test]
    fn the_kubelets_own_kubeconfig() {
        let r = parse(KUBELET_CONF).unwrap().resolve().unwrap();
        assert_eq!(r.server, "https://10.0.0.1:6443");
        assert_eq!(r.ca, Some(Material::Inline("LS0tQ0E=".into())));
        let pem = Material::File("/var/lib/kubelet/pki/kubelet-client-current.pem".into());
        assert_eq!(
            r.credential,
            Credential::ClientCert {
                cert: pem.clone(),
                key: pem
            }
        );
    }

    #[test]
    fn tokens_and_refusals() {
        let t = KUBELET_CONF.replace(
            "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
            "    token: s3cret-token\n",
        );
        let r = parse(&t).unwrap().resolve().unwrap();
        assert_eq!(
            r.credential,
            Credential::Token(Material::Inline("s3cret-token".into()))
        );
        assert!(!format!("{r:?}").contains("s3cret"));
        let insecure = KUBELET_CONF.replace(
            "    server:",
            "    insecure-skip-tls-verify: true\n    server:",
        );
        assert!(
            parse(&insecure)
                .unwrap()
                .resolve()
                .unwrap_err()
                .contains("insecure")
        );
        let exec = KUBELET_CONF.replace(
            "    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
            "    exec:\n      command: aws\n      args: [eks, get-token]\n",
        );
        assert!(
            parse(&exec)
                .unwrap()
                .resolve()
                .unwrap_err()
                .contains("exec")
        );
        let lost =
            KUBELET_CONF.replace("current-context: default-context", "current-context: other");
        assert!(
            parse(&lost)
                .unwrap()
                .resolve()
                .unwrap_err()
                .contains("other")
        );
        assert!(parse("").is_err());
        assert!(parse("clusters: 3").is_err());
    }
}
