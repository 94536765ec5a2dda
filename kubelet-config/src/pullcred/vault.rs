//! `vault`: registry credentials kept in HashiCorp Vault or OpenBao.
//! pullcred logs in (per pod with the pod's service-account token, through
//! the `kubernetes` or `jwt` auth method; per node with AppRole or a node
//! JWT), reads a KV v2 secret and answers with two of its fields. The Vault
//! token lives in memory for one exec only.

use serde::{Deserialize, Serialize};

use super::{Problem, check_named_source, check_secret_url, check_selectors};

/// The annotation that names the Vault role a service account logs in as.
pub const VAULT_ROLE_ANNOTATION: &str = "pullcred.dev/vault-role";

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultSource {
    /// A name for errors, logs and cache keys.
    pub name: String,
    /// Registry keys this Vault serves.
    pub registries: Vec<String>,
    /// `https://vault.example.com:8200`.
    pub address: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PEM CA bundle for the Vault server (else the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Per-pod login with the pod's service-account token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodAuth>,
    /// The node's own login, for requests without a token (or, with the
    /// policy's fallback, for pods that name no role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeAuth>,
    /// Where the credentials are.
    pub secret: SecretRef,
    /// Longest cache duration (Go duration) when the secret has no lease
    /// (KV v2 never has one); default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodAuth {
    /// `kubernetes` (default) or `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The auth method's mount path (default: the method's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// Roles by namespace selector, first match wins; the service account's
    /// `pullcred.dev/vault-role` annotation overrides (when the policy allows it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleMapping>,
    /// The role for pods no mapping or annotation names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleMapping {
    pub namespaces: Vec<String>,
    pub role: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAuth {
    /// `approle` or `jwt`.
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// AppRole: files holding the role ID and the secret ID (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id_file: Option<String>,
    /// jwt: the role, and the file holding the node's JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRef {
    /// The KV v2 mount (default `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The secret's path under the mount; `{namespace}` and
    /// `{serviceAccount}` are replaced by the pod's.
    pub path: String,
    /// Field holding the username (default `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_field: Option<String>,
    /// Field holding the password or token (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_field: Option<String>,
}

impl VaultSource {
    pub fn check(&self, at: &str, out: &mut Vec<Problem>) {
        check_named_source(at, &self.name, &self.registries, out);
        check_secret_url(&format!("{at}.address"), &self.address, out);
        if self.address.contains(['?', '#']) {
            out.push(Problem::error(
                format!("{at}.address"),
                "want https://HOST[:PORT][/PREFIX], no query or fragment",
            ));
        }
        if let Some(ns) = &self.namespace
            && (ns.trim().is_empty() || ns.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            out.push(Problem::error(
                format!("{at}.namespace"),
                "want a Vault namespace path (no spaces)",
            ));
        }
        if let Some(f) = &self.ca_file {
            check_file(&format!("{at}.caFile"), f, out);
        }
        if self.pod.is_none() && self.node.is_none() {
            out.push(Problem::error(
                at,
                "needs pod (per-pod login) or node (node login), or both",
            ));
        }
        if let Some(p) = &self.pod {
            if !matches!(p.method.as_deref(), None | Some("kubernetes" | "jwt")) {
                out.push(Problem::error(
                    format!("{at}.pod.method"),
                    "want kubernetes or jwt",
                ));
            }
            if let Some(m) = &p.mount {
                check_mount(&format!("{at}.pod.mount"), m, out);
            }
            for (i, m) in p.roles.iter().enumerate() {
                check_selectors(
                    &format!("{at}.pod.roles[{i}].namespaces"),
                    &m.namespaces,
                    "lists no namespace selector",
                    out,
                );
                check_role(&format!("{at}.pod.roles[{i}].role"), &m.role, out);
            }
            if let Some(r) = &p.default_role {
                check_role(&format!("{at}.pod.defaultRole"), r, out);
            }
        }
        if let Some(n) = &self.node {
            let need = |field: &str, v: &Option<String>, out: &mut Vec<Problem>| {
                if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    out.push(Problem::error(
                        format!("{at}.node.{field}"),
                        format!("required with method {}", n.method),
                    ));
                }
            };
            let unused = |field: &str, v: &Option<String>, out: &mut Vec<Problem>| {
                if v.is_some() {
                    out.push(Problem::error(
                        format!("{at}.node.{field}"),
                        format!("is not used by method {}", n.method),
                    ));
                }
            };
            match n.method.as_str() {
                "approle" => {
                    need("roleIdFile", &n.role_id_file, out);
                    need("secretIdFile", &n.secret_id_file, out);
                    unused("role", &n.role, out);
                    unused("tokenFile", &n.token_file, out);
                }
                "jwt" => {
                    need("role", &n.role, out);
                    need("tokenFile", &n.token_file, out);
                    unused("roleIdFile", &n.role_id_file, out);
                    unused("secretIdFile", &n.secret_id_file, out);
                    if let Some(r) = &n.role {
                        check_role(&format!("{at}.node.role"), r, out);
                    }
                }
                other => out.push(Problem::error(
                    format!("{at}.node.method"),
                    format!("{other:?}: want approle or jwt"),
                )),
            }
            for (field, v) in [
                ("roleIdFile", &n.role_id_file),
                ("secretIdFile", &n.secret_id_file),
                ("tokenFile", &n.token_file),
            ] {
                if let Some(f) = v.as_deref().filter(|f| !f.trim().is_empty()) {
                    check_file(&format!("{at}.node.{field}"), f, out);
                }
            }
            if let Some(m) = &n.mount {
                check_mount(&format!("{at}.node.mount"), m, out);
            }
            if PLACEHOLDERS.iter().any(|p| self.secret.path.contains(p)) {
                out.push(Problem::error(
                    format!("{at}.secret.path"),
                    "uses {namespace} or {serviceAccount}, which only a pod's login fills; the node's login (node:) cannot read it: use a separate entry for the node",
                ));
            }
        }
        if let Some(m) = &self.secret.mount {
            check_mount(&format!("{at}.secret.mount"), m, out);
        }
        check_secret_path(&format!("{at}.secret.path"), &self.secret.path, out);
        for (field, v) in [
            ("usernameField", &self.secret.username_field),
            ("passwordField", &self.secret.password_field),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push(Problem::error(
                    format!("{at}.secret.{field}"),
                    "must not be empty",
                ));
            }
        }
        if let Some(t) = &self.ttl {
            match t.parse::<crate::duration::GoDuration>() {
                Err(e) => out.push(Problem::error(format!("{at}.ttl"), format!("{t:?}: {e}"))),
                Ok(d) if d.nanos() <= 0 => {
                    out.push(Problem::error(
                        format!("{at}.ttl"),
                        format!("{t:?}: want a positive duration"),
                    ));
                }
                Ok(_) => {}
            }
        }
    }
}

/// What a secret path may hold in place of a segment (or part of one).
pub const PLACEHOLDERS: [&str; 2] = ["{namespace}", "{serviceAccount}"];

/// A path segment as it goes into a Vault URL.
fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+=,~:".contains(&b))
}

fn check_vault_path(at: &str, what: &str, path: &str, out: &mut Vec<Problem>) {
    let p = path.trim().trim_matches('/');
    if p.is_empty() || !p.split('/').all(safe_segment) {
        out.push(Problem::error(
            at,
            format!("{path:?} is not a plain {what} (segments of letters, digits and -_.@+=,~: ; no empty, . or .. segment)"),
        ));
    }
}

fn check_mount(at: &str, mount: &str, out: &mut Vec<Problem>) {
    check_vault_path(at, "Vault mount path", mount, out);
}

/// A secret path: plain segments, and the placeholders.
fn check_secret_path(at: &str, path: &str, out: &mut Vec<Problem>) {
    if path.trim().is_empty() {
        out.push(Problem::error(at, "must not be empty"));
        return;
    }
    let mut filled = path.to_string();
    for p in PLACEHOLDERS {
        filled = filled.replace(p, "x");
    }
    if filled.contains(['{', '}']) {
        out.push(Problem::error(
            at,
            format!("{path:?}: the only placeholders are {{namespace}} and {{serviceAccount}}"),
        ));
        return;
    }
    check_vault_path(at, "Vault secret path", &filled, out);
}

/// A Vault role name.
fn check_role(at: &str, role: &str, out: &mut Vec<Problem>) {
    let r = role.trim();
    if r.is_empty()
        || r.len() > 128
        || !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        out.push(Problem::error(
            at,
            format!("{role:?} is not a Vault role name (letters, digits, - _ . @; at most 128)"),
        ));
    }
}

/// A file the provider reads: an absolute path (the kubelet's working
/// directory is no place to count on).
fn check_file(at: &str, path: &str, out: &mut Vec<Problem>) {
    if !path.starts_with('/') {
        out.push(Problem::error(
            at,
            format!("{path:?}: want an absolute path"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> VaultSource {
        VaultSource {
            name: "main".into(),
            registries: vec!["registry.example.com".into()],
            address: "https://vault.example.com:8200".into(),
            pod: Some(PodAuth {
                default_role: Some("pull".into()),
                ..Default::default()
            }),
            secret: SecretRef {
                path: "registry/{namespace}".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn problems(v: &VaultSource) -> Vec<String> {
        let mut out = Vec::new();
        v.check("vault[0]", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_entry_checks_clean() {
        assert!(problems(&base()).is_empty(), "{:?}", problems(&base()));
        let mut node = base();
        node.pod = None;
        node.secret.path = "registry/pull".into();
        node.node = Some(NodeAuth {
            method: "approle".into(),
            role_id_file: Some("/etc/pullcred/role-id".into()),
            secret_id_file: Some("/etc/pullcred/secret-id".into()),
            ..Default::default()
        });
        assert!(problems(&node).is_empty(), "{:?}", problems(&node));
    }

    #[test]
    fn problems_name_the_field() {
        type Change = Box<dyn Fn(&mut VaultSource)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|v| v.address = "http://vault.example.com".into()),
                "vault[0].address",
            ),
            (
                Box::new(|v| v.address = "https://v/?x=1".into()),
                "vault[0].address",
            ),
            (
                Box::new(|v| v.secret.path = "a/../b".into()),
                "vault[0].secret.path",
            ),
            (
                Box::new(|v| v.secret.path = "a/{pod}".into()),
                "vault[0].secret.path",
            ),
            (
                Box::new(|v| v.secret.path = "".into()),
                "vault[0].secret.path",
            ),
            (
                Box::new(|v| v.secret.mount = Some("kv v2".into())),
                "vault[0].secret.mount",
            ),
            (
                Box::new(|v| v.secret.password_field = Some(" ".into())),
                "vault[0].secret.passwordField",
            ),
            (Box::new(|v| v.ttl = Some("0s".into())), "vault[0].ttl"),
            (Box::new(|v| v.ttl = Some("1d".into())), "vault[0].ttl"),
            (
                Box::new(|v| v.ca_file = Some("ca.pem".into())),
                "vault[0].caFile",
            ),
            (Box::new(|v| v.pod = None), "vault[0]: needs pod"),
            (
                Box::new(|v| v.pod.as_mut().unwrap().default_role = Some("a b".into())),
                "vault[0].pod.defaultRole",
            ),
            (
                Box::new(|v| v.pod.as_mut().unwrap().method = Some("oidc".into())),
                "vault[0].pod.method",
            ),
            (
                Box::new(|v| {
                    v.node = Some(NodeAuth {
                        method: "jwt".into(),
                        ..Default::default()
                    });
                }),
                "vault[0].node.tokenFile",
            ),
            (
                Box::new(|v| {
                    v.node = Some(NodeAuth {
                        method: "approle".into(),
                        role_id_file: Some("/r".into()),
                        secret_id_file: Some("/s".into()),
                        ..Default::default()
                    });
                }),
                "vault[0].secret.path: uses {namespace}",
            ),
        ];
        for (i, (change, want)) in cases.iter().enumerate() {
            let mut v = base();
            change(&mut v);
            let p = problems(&v);
            assert!(
                p.iter().any(|p| p.starts_with(want)),
                "case {i}: want {want}: {p:?}"
            );
        }
    }
}
