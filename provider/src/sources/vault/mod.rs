//! HashiCorp Vault and OpenBao (`vault:` in the config file): registry
//! credentials kept in a KV version 2 secret, read with a Vault token that
//! pullcred gets by logging in, per pod or as the node.
//!
//! - Per pod (KEP-4412, the request carries a service-account token): the
//!   token is the `jwt` of a `kubernetes` (or `jwt`) auth method login, as a
//!   Vault role: the service account's `pullcred.dev/vault-role`
//!   annotation, else the first `pod.roles` mapping whose namespace selector
//!   matches, else `pod.defaultRole`. Vault verifies the token and the role's
//!   bindings (service account names, namespaces, audience); a refusal is
//!   [`Kind::Refused`](crate::error::Kind::Refused), never served from the
//!   stale cache.
//! - Per node (no token, or the policy's fallback): `node.method` `approle`
//!   (role ID and secret ID from private files) or `jwt` (a role and a token
//!   file, e.g. a projected token).
//!
//! Then `GET /v1/<mount>/data/<path>` reads the secret; two of its fields
//! are the user name and the password. `{namespace}` and `{serviceAccount}`
//! in the path are the pod's. The answer is cached until the earliest of
//! `ttl` (default 1h), the Vault token's lease and the secret's lease.
//!
//! This module owns the routing (docker config key semantics), the per-pod
//! rules, the cache-key parts and what `doctor` says. The Vault calls are in
//! [`api`]; a build without the `http` feature gets `disabled.rs` in its place.
//!
//! Wire formats: <https://developer.hashicorp.com/vault/api-docs/auth/kubernetes>,
//! <https://developer.hashicorp.com/vault/api-docs/auth/jwt>,
//! <https://developer.hashicorp.com/vault/api-docs/auth/approle>,
//! <https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2>.
//! OpenBao serves the same API (<https://openbao.org/api-docs/>).

#[cfg_attr(not(feature = "http"), path = "disabled.rs")]
pub mod api;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kubelet_config::pullcred::selector_matches;
use kubelet_config::pullcred::vault::VaultSource;

use super::{Credential, FetchContext, Route, Source, SourceError, token_key};
use crate::image::ImageRef;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{
    Identity, IdentityKind, PodRules, ServiceAccount, Workload, annotation, first_set,
};

pub use kubelet_config::pullcred::vault::VAULT_ROLE_ANNOTATION;

/// Cache life of a credential when the config gives no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Placeholders a secret path may hold.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";
pub const SERVICE_ACCOUNT_PLACEHOLDER: &str = "{serviceAccount}";

/// The config file's `vault` entries, as a source.
pub struct Vault;

impl Source for Vault {
    /// The first entry, in file order, with a registry key that matches the
    /// image as a docker config key would.
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        let name = image.name();
        opts.config.vault.iter().find_map(|entry| {
            entry.registries.iter().find_map(|key| {
                let k = super::dockerconfig::normalize_key(key)?;
                kubelet_config::matching::auth_key_matches(&k, &name).then(|| {
                    Box::new(VaultRoute {
                        key: k,
                        rules: VaultRules(Arc::new(entry.clone())),
                    }) as Box<dyn Route>
                })
            })
        })
    }

    fn path_scoped(&self, image: &ImageRef, opts: &Options) -> bool {
        opts.config.vault.iter().any(|entry| {
            entry.registries.iter().any(|k| {
                super::dockerconfig::normalize_key(k)
                    .is_some_and(|k| super::dockerconfig::path_key_for_host(&k, image))
            })
        })
    }
}

/// One `vault` entry serving one image.
struct VaultRoute {
    /// The registry key that matched, normalised.
    key: String,
    rules: VaultRules,
}

impl VaultRoute {
    fn entry(&self) -> &VaultSource {
        &self.rules.0
    }
}

impl Route for VaultRoute {
    fn id(&self) -> &'static str {
        "vault"
    }

    fn describe(&self, _: &ImageRef) -> String {
        let e = self.entry();
        let mut s = format!("Vault {:?} at {}", e.name, e.address);
        if let Some(ns) = nonblank(&e.namespace) {
            s.push_str(&format!(" (namespace {ns})"));
        }
        s.push_str(&format!(
            ": KV v2 secret {}/data/{}, fields {:?} and {:?} (key {})",
            kv_mount(e),
            e.secret.path.trim_matches('/'),
            username_field(e),
            password_field(e),
            self.key
        ));
        s
    }

    fn node_identity(&self, _: &Options) -> String {
        let e = self.entry();
        let node = match &e.node {
            Some(n) => match n.method.as_str() {
                "approle" => format!(
                    "the node's AppRole login at auth/{}/login (role ID file {}, secret ID file {})",
                    node_mount(e),
                    n.role_id_file.as_deref().unwrap_or_default(),
                    n.secret_id_file.as_deref().unwrap_or_default()
                ),
                _ => format!(
                    "the node's JWT login at auth/{}/login as role {} (token file {})",
                    node_mount(e),
                    n.role.as_deref().unwrap_or_default(),
                    n.token_file.as_deref().unwrap_or_default()
                ),
            },
            None => "no node login (requests without a service-account token fail)".to_string(),
        };
        match &e.pod {
            Some(p) => {
                let mut roles = vec![format!("annotation {VAULT_ROLE_ANNOTATION}")];
                roles.extend(
                    p.roles
                        .iter()
                        .map(|m| format!("{} for {}", m.role, m.namespaces.join(","))),
                );
                if let Some(d) = nonblank(&p.default_role) {
                    roles.push(format!("default {d}"));
                }
                format!(
                    "pods: their service-account token, {} login at auth/{}/login (role: {}); requests without a token: {node}",
                    pod_method(e),
                    pod_mount(e),
                    roles.join("; ")
                )
            }
            None => node,
        }
    }

    fn cache_parts(
        &self,
        image: &ImageRef,
        _: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let e = self.entry();
        let scope = vec![
            ("registry", image.registry.clone()),
            ("vault", e.name.clone()),
            ("vault-address", e.address.trim_end_matches('/').to_string()),
            (
                "vault-namespace",
                nonblank(&e.namespace).unwrap_or_default().to_string(),
            ),
        ];
        let mut facts = vec![
            ("vault-kv-mount", kv_mount(e).to_string()),
            ("vault-path", e.secret.path.clone()),
            ("vault-username-field", username_field(e).to_string()),
            ("vault-password-field", password_field(e).to_string()),
            ("vault-ttl", e.ttl.clone().unwrap_or_default()),
            ("vault-ca-file", e.ca_file.clone().unwrap_or_default()),
        ];
        match (workload, &e.node) {
            (Some(_), _) => {
                facts.push(("vault-auth", pod_method(e).to_string()));
                facts.push(("vault-auth-mount", pod_mount(e).to_string()));
            }
            (None, Some(n)) => {
                facts.push(("vault-auth", format!("node-{}", n.method)));
                facts.push(("vault-auth-mount", node_mount(e).to_string()));
                for (k, v) in [
                    ("vault-node-role", &n.role),
                    ("vault-role-id-file", &n.role_id_file),
                    ("vault-token-file", &n.token_file),
                ] {
                    facts.push((k, v.clone().unwrap_or_default()));
                }
            }
            (None, None) => facts.push(("vault-auth", "none".to_string())),
        }
        token_key("vault", scope, workload, facts)
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        self.entry()
            .pod
            .is_some()
            .then_some(&self.rules as &dyn PodRules)
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        let e = self.entry();
        let login = match ctx.workload {
            Some(w) => {
                let role = w
                    .identity
                    .as_any()
                    .downcast_ref::<VaultIdentity>()
                    .ok_or_else(|| {
                        SourceError::config(
                            format!("vault {:?}", e.name),
                            "the pod's identity is not a Vault role",
                        )
                    })?;
                api::Login::Pod {
                    role,
                    token: &w.token,
                    account: &w.account,
                }
            }
            None => {
                let Some(n) = &e.node else {
                    let hint = if e.pod.is_some() {
                        "the request carries no serviceAccountToken: add tokenAttributes (with the audience the Vault role expects) to this provider in the kubelet's credential provider config (Kubernetes 1.33+), or configure node: (approle or jwt) for the node's own login"
                    } else {
                        "configure pod: or node:"
                    };
                    return Err(SourceError::config(
                        format!("vault {:?}", e.name),
                        format!("no node login is configured; {hint}"),
                    ));
                };
                let path = secret_path(&e.secret.path, None).map_err(|d| {
                    SourceError::config(format!("vault {:?} secret.path", e.name), d)
                })?;
                api::Login::Node { auth: n, path }
            }
        };
        api::fetch(e, login, ctx.deadline).map(Credential::Token)
    }

    fn forbidden_hint(&self) -> Option<&'static str> {
        Some(
            "the registry refuses the credentials kept in Vault: update the secret's fields (vault kv put) or the account's pull permission",
        )
    }
}

/// The Vault role a pod's service account logs in as, and the secret path
/// it reads (placeholders filled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultIdentity {
    /// The config entry's name.
    pub vault: String,
    pub role: String,
    /// Where the role came from, for messages.
    pub from: String,
    /// The secret's path under its mount, for this service account.
    pub path: String,
}

impl Identity for VaultIdentity {
    fn describe(&self) -> String {
        format!(
            "Vault {:?} role {} (from {}), secret {}",
            self.vault, self.role, self.from, self.path
        )
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sa-vault-role", self.role.clone()),
            ("sa-vault-path", self.path.clone()),
        ]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        Some((IdentityKind::VaultAuthRole, self.role.clone()))
    }
}

/// One entry's per-pod rules.
struct VaultRules(Arc<VaultSource>);

impl PodRules for VaultRules {
    fn naming_annotation(
        &self,
        annotations: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Option<&'static str> {
        first_set(annotations, &[VAULT_ROLE_ANNOTATION])
    }

    fn identity(
        &self,
        account: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(vault_role(&self.0, account, annotations)?.map(|r| Arc::new(r) as Arc<dyn Identity>))
    }

    fn missing_hint(&self, _: &WorkloadSettings) -> String {
        format!(
            "annotate it with {VAULT_ROLE_ANNOTATION}, or give vault {:?} a pod.roles mapping for its namespace or a pod.defaultRole in the pullcred config",
            self.0.name
        )
    }
}

/// The role a service account logs in as: its annotation, else the first
/// mapping whose selector matches, else the default; and the secret path
/// for it.
pub fn vault_role(
    entry: &VaultSource,
    account: &ServiceAccount,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<VaultIdentity>, String> {
    let Some(pod) = &entry.pod else {
        return Ok(None);
    };
    let found = annotation(annotations, VAULT_ROLE_ANNOTATION)
        .map(|r| (r.to_string(), format!("annotation {VAULT_ROLE_ANNOTATION}")))
        .or_else(|| {
            pod.roles.iter().enumerate().find_map(|(i, m)| {
                m.namespaces
                    .iter()
                    .any(|s| selector_matches(s, &account.namespace, &account.name))
                    .then(|| (m.role.trim().to_string(), format!("pod.roles[{i}]")))
            })
        })
        .or_else(|| nonblank(&pod.default_role).map(|r| (r.to_string(), "pod.defaultRole".into())));
    let Some((role, from)) = found else {
        return Ok(None);
    };
    check_role(&role).map_err(|why| format!("{account}: {from}: {why}"))?;
    let path = secret_path(&entry.secret.path, Some(account))
        .map_err(|why| format!("{account}: vault {:?} secret.path: {why}", entry.name))?;
    Ok(Some(VaultIdentity {
        vault: entry.name.clone(),
        role,
        from,
        path,
    }))
}

/// A role name: what Vault accepts in `auth/<mount>/role/<name>`, bounded.
pub fn check_role(role: &str) -> Result<(), String> {
    let shown = crate::logging::echo(role);
    if role.is_empty()
        || role.len() > 128
        || !role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(format!(
            "{shown:?} is not a Vault role name (letters, digits, - _ . @; at most 128)"
        ));
    }
    Ok(())
}

/// The secret's path under its mount: `template` with `{namespace}` and
/// `{serviceAccount}` replaced by `account`'s (whose values must be one
/// path segment: no `/`, no `..`), slashes at the ends trimmed. Without an
/// account, a template with placeholders is an error.
pub fn secret_path(template: &str, account: Option<&ServiceAccount>) -> Result<String, String> {
    let mut path = template.trim().trim_matches('/').to_string();
    for (placeholder, value) in [
        (NAMESPACE_PLACEHOLDER, account.map(|a| a.namespace.as_str())),
        (
            SERVICE_ACCOUNT_PLACEHOLDER,
            account.map(|a| a.name.as_str()),
        ),
    ] {
        if !path.contains(placeholder) {
            continue;
        }
        let Some(value) = value else {
            return Err(format!(
                "{template:?} uses {placeholder}, which only a pod's own login fills, not the node's"
            ));
        };
        if value.is_empty() || value.contains('/') || value.contains("..") || !safe_segment(value) {
            return Err(format!(
                "the service account's {} {:?} cannot be a secret path segment",
                &placeholder[1..placeholder.len() - 1],
                crate::logging::echo(value)
            ));
        }
        path = path.replace(placeholder, value);
    }
    check_path(&path)?;
    Ok(path)
}

/// A mount or secret path as it goes into a URL: segments of letters,
/// digits and `-_.@+=,~:`, none empty, `.` or `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    let shown = crate::logging::echo(path);
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || !safe_segment(seg) {
            return Err(format!(
                "{shown:?} is not a plain Vault path (segments of letters, digits and -_.@+=,~: ; no empty, . or .. segment)"
            ));
        }
    }
    Ok(())
}

fn safe_segment(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.@+=,~:".contains(&b))
}

/// A set, non-blank option, trimmed.
fn nonblank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub fn kv_mount(e: &VaultSource) -> &str {
    nonblank(&e.secret.mount).map_or("secret", |m| m.trim_matches('/'))
}

pub fn username_field(e: &VaultSource) -> &str {
    nonblank(&e.secret.username_field).unwrap_or("username")
}

pub fn password_field(e: &VaultSource) -> &str {
    nonblank(&e.secret.password_field).unwrap_or("password")
}

pub fn pod_method(e: &VaultSource) -> &str {
    e.pod
        .as_ref()
        .and_then(|p| nonblank(&p.method))
        .unwrap_or("kubernetes")
}

pub fn pod_mount(e: &VaultSource) -> &str {
    e.pod
        .as_ref()
        .and_then(|p| nonblank(&p.mount))
        .map_or_else(|| pod_method(e), |m| m.trim_matches('/'))
}

pub fn node_mount(e: &VaultSource) -> &str {
    match &e.node {
        Some(n) => nonblank(&n.mount).map_or(n.method.as_str(), |m| m.trim_matches('/')),
        None => "",
    }
}

/// The configured `ttl`, or [`DEFAULT_TTL`]; a bad or non-positive one is
/// the default too (`config validate` refuses it).
pub fn ttl(e: &VaultSource) -> Duration {
    nonblank(&e.ttl)
        .and_then(|t| t.parse::<kubelet_config::duration::GoDuration>().ok())
        .filter(|d| d.nanos() > 0)
        .map_or(DEFAULT_TTL, |d| Duration::from_nanos(d.nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_config::pullcred::vault::{NodeAuth, PodAuth, RoleMapping, SecretRef};
    use kubelet_config::pullcred::{API_VERSION, KIND, PullcredConfig};

    fn entry() -> VaultSource {
        VaultSource {
            name: "main".into(),
            registries: vec!["registry.example.com".into(), "*.corp.example/team".into()],
            address: "https://vault.example.com:8200".into(),
            pod: Some(PodAuth {
                roles: vec![
                    RoleMapping {
                        namespaces: vec!["team-*".into()],
                        role: "team".into(),
                    },
                    RoleMapping {
                        namespaces: vec!["ci/builder".into()],
                        role: "ci".into(),
                    },
                ],
                default_role: Some("fallback".into()),
                ..Default::default()
            }),
            secret: SecretRef {
                path: "registry/{namespace}".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn opts(e: VaultSource) -> Options {
        Options {
            config: Arc::new(PullcredConfig {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                vault: vec![e],
                ..Default::default()
            }),
            ..Options::default()
        }
    }

    fn account(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            issuer: "https://k".into(),
            namespace: ns.into(),
            name: name.into(),
            uid: "u".into(),
            expires_at: 0,
        }
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn routed(image: &str, o: &Options) -> Option<String> {
        let image = ImageRef::parse(image).unwrap();
        Vault.route(&image, o).map(|r| r.describe(&image))
    }

    #[test]
    fn routes_by_docker_config_keys() {
        let o = opts(entry());
        assert!(routed("registry.example.com/app", &o).is_some());
        assert!(routed("a.corp.example/team/app", &o).is_some());
        assert!(routed("a.corp.example/other/app", &o).is_none());
        assert!(routed("registry.example.com.evil/app", &o).is_none());
        assert!(routed("quay.io/app", &o).is_none());
        assert!(routed("quay.io/app", &Options::default()).is_none());
        let host = |i: &str| ImageRef::parse(i).unwrap();
        assert!(Vault.path_scoped(&host("a.corp.example/other/app"), &o));
        assert!(!Vault.path_scoped(&host("registry.example.com/app"), &o));
    }

    #[test]
    fn the_vault_entry_wins_over_the_cloud_source() {
        let mut e = entry();
        e.registries = vec!["myreg.azurecr.io".into()];
        let image = ImageRef::parse("myreg.azurecr.io/app").unwrap();
        let r = crate::sources::route(&image, &opts(e)).unwrap();
        assert_eq!(r.route.id(), "vault");
    }

    #[test]
    fn role_precedence_annotation_mapping_default() {
        let e = entry();
        let a = account("team-a", "app");
        let r = vault_role(&e, &a, &ann(&[(VAULT_ROLE_ANNOTATION, " own ")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.role.as_str(), r.path.as_str()),
            ("own", "registry/team-a")
        );
        assert!(r.from.contains("annotation"));
        let r = vault_role(&e, &a, &ann(&[])).unwrap().unwrap();
        assert_eq!((r.role.as_str(), r.from.as_str()), ("team", "pod.roles[0]"));
        let r = vault_role(&e, &account("ci", "builder"), &ann(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(r.role, "ci");
        let r = vault_role(&e, &account("ci", "other"), &ann(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.role.as_str(), r.from.as_str()),
            ("fallback", "pod.defaultRole")
        );
        let mut no_default = e.clone();
        no_default.pod.as_mut().unwrap().default_role = None;
        assert_eq!(
            vault_role(&no_default, &account("ci", "other"), &ann(&[])).unwrap(),
            None
        );
        // a blank annotation names nothing
        let r = vault_role(&e, &a, &ann(&[(VAULT_ROLE_ANNOTATION, " ")]))
            .unwrap()
            .unwrap();
        assert_eq!(r.role, "team");
        let bad = vault_role(&e, &a, &ann(&[(VAULT_ROLE_ANNOTATION, "a/../b")])).unwrap_err();
        assert!(bad.contains("not a Vault role name"), "{bad}");
    }

    #[test]
    fn path_templates() {
        let a = account("team-a", "app");
        assert_eq!(
            secret_path("/registry/{namespace}/{serviceAccount}/", Some(&a)).unwrap(),
            "registry/team-a/app"
        );
        assert_eq!(secret_path("registry/pull", None).unwrap(), "registry/pull");
        assert!(
            secret_path("registry/{namespace}", None)
                .unwrap_err()
                .contains("{namespace}")
        );
        for (ns, name) in [
            ("a/b", "x"),
            ("..", "x"),
            ("a", "x/.."),
            ("a", "x y"),
            ("a", ""),
        ] {
            assert!(
                secret_path("r/{namespace}/{serviceAccount}", Some(&account(ns, name))).is_err(),
                "{ns}/{name}"
            );
        }
        for bad in ["", "a//b", "a/../b", "a/./b", "a b", "a?b", "a#b", "a%2fb"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_parts_separate_entries_roles_and_accounts() {
        let o = opts(entry());
        let image = ImageRef::parse("registry.example.com/app").unwrap();
        let route = Vault.route(&image, &o).unwrap();
        let node = route.cache_parts(&image, &o, None);
        assert!(node.iter().any(|(k, v)| *k == "vault" && v == "main"));
        assert!(node.iter().any(|(k, _)| *k == "vault-address"));
        let pod = |ns: &str, name: &str, role: &str| {
            let account = account(ns, name);
            let identity = vault_role(
                o.config.vault.first().unwrap(),
                &account,
                &ann(&[(VAULT_ROLE_ANNOTATION, role)]),
            )
            .unwrap()
            .unwrap();
            let w = Workload {
                account,
                identity: Arc::new(identity),
                token: crate::secret::Secret::new("t"),
            };
            route.cache_parts(&image, &o, Some(&w))
        };
        let a = pod("team-a", "app", "r1");
        assert_ne!(a, node);
        assert_ne!(a, pod("team-a", "app", "r2"));
        assert_ne!(a, pod("team-a", "other", "r1"));
        assert_ne!(a, pod("team-b", "app", "r1"));
        assert_eq!(a, pod("team-a", "app", "r1"));
        assert!(
            a.iter()
                .any(|(k, v)| *k == "sa-vault-path" && v == "registry/team-a")
        );
    }

    #[test]
    fn pod_rules_only_with_pod_auth_and_ttl_defaults() {
        let mut e = entry();
        let image = ImageRef::parse("registry.example.com/app").unwrap();
        assert!(
            Vault
                .route(&image, &opts(e.clone()))
                .unwrap()
                .pod_rules()
                .is_some()
        );
        e.pod = None;
        e.node = Some(NodeAuth {
            method: "approle".into(),
            ..Default::default()
        });
        let o = opts(e.clone());
        let r = Vault.route(&image, &o).unwrap();
        assert!(r.pod_rules().is_none());
        assert!(r.node_identity(&o).contains("AppRole"));
        assert_eq!(ttl(&e), DEFAULT_TTL);
        e.ttl = Some("90s".into());
        assert_eq!(ttl(&e), Duration::from_secs(90));
        e.ttl = Some("-5m".into());
        assert_eq!(ttl(&e), DEFAULT_TTL);
    }
}
