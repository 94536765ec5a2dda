//! pullcred's own config file (`pullcred --config FILE`, `PULLCRED_CONFIG`):
//! the settings that outgrew flags. Mappings from registry keys to keyless
//! sources (Vault, token exchange, Artifactory), EKS Pod Identity, static
//! credentials scoped by namespace, and the per-namespace identity policy.
//!
//! The types here are the file's schema; the provider imports them and
//! `pullcred config validate FILE` checks a file against them ([`check`]),
//! so what validates is exactly what the provider reads.
//!
//! ```yaml
//! apiVersion: pullcred.dev/v1alpha1
//! kind: PullcredConfig
//! vault: [...]
//! exchanges: [...]
//! eksPodIdentity: {...}
//! namespaceCredentials: [...]
//! policy: [...]
//! ```
//!
//! Registry keys (`registries:`) are written as docker config keys are:
//! `host[:port][/path]`, with `*.` globs in the host, matched as the kubelet
//! matches them (`matching::auth_key_matches`).
//!
//! Namespace selectors (`namespaces:`) are `namespace` or
//! `namespace/serviceaccount`, each part a shell glob (`team-*`, `*`).

pub mod eks;
pub mod exchange;
pub mod namespaces;
pub mod policy;
pub mod vault;

use serde::{Deserialize, Serialize};

/// `apiVersion` of this schema.
pub const API_VERSION: &str = "pullcred.dev/v1alpha1";
/// `kind` of this schema.
pub const KIND: &str = "PullcredConfig";
/// Largest config file read.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullcredConfig {
    pub api_version: String,
    pub kind: String,
    /// EKS Pod Identity for ECR and ECR Public (`pods.eks.amazonaws.com` tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_pod_identity: Option<eks::EksPodIdentity>,
    /// Registry keys served from HashiCorp Vault or OpenBao.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vault: Vec<vault::VaultSource>,
    /// Registry keys served by an OAuth 2.0 token exchange (RFC 8693,
    /// Artifactory's flavour included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<exchange::Exchange>,
    /// Static credentials given only to pods of some namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_credentials: Vec<namespaces::NamespaceCredential>,
    /// Per namespace and registry: fallback to the node, and which
    /// identities a namespace may name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<policy::PolicyRule>,
}

/// One problem in a config file: where (a dotted path such as
/// `vault[0].address`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub what: String,
    /// A warning does not stop the provider from using the file.
    pub warning: bool,
}

impl Problem {
    pub fn error(at: impl Into<String>, what: impl Into<String>) -> Problem {
        Problem {
            at: at.into(),
            what: what.into(),
            warning: false,
        }
    }

    pub fn warning(at: impl Into<String>, what: impl Into<String>) -> Problem {
        Problem {
            at: at.into(),
            what: what.into(),
            warning: true,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// Decodes a file (YAML or JSON) strictly: unknown fields, duplicate keys
/// and a wrong `apiVersion`/`kind` are errors. Semantic checks are [`check`].
pub fn parse(text: &str) -> Result<PullcredConfig, String> {
    let opts = serde_saphyr::options! { with_snippet: false };
    let c: PullcredConfig =
        serde_saphyr::from_str_with_options(text, opts).map_err(|e| one_line(&e.to_string()))?;
    if c.api_version != API_VERSION {
        return Err(format!(
            "apiVersion is {:?}; want {API_VERSION:?}",
            c.api_version
        ));
    }
    if c.kind != KIND {
        return Err(format!("kind is {:?}; want {KIND:?}", c.kind));
    }
    Ok(c)
}

/// Whether `text` declares itself a pullcred config (its `kind`), so that
/// `config validate` can tell it from a kubelet config.
pub fn looks_like(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim().trim_start_matches('{').trim();
        (l.starts_with("kind:") || l.starts_with("\"kind\"")) && l.contains(KIND)
    })
}

/// Every problem the provider would meet using `c`: what [`parse`] cannot
/// see (URLs, globs, references between sections).
pub fn check(c: &PullcredConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(e) = &c.eks_pod_identity {
        e.check("eksPodIdentity", &mut out);
    }
    for (i, v) in c.vault.iter().enumerate() {
        v.check(&format!("vault[{i}]"), &mut out);
    }
    for (i, x) in c.exchanges.iter().enumerate() {
        x.check(&format!("exchanges[{i}]"), &mut out);
    }
    for (i, n) in c.namespace_credentials.iter().enumerate() {
        n.check(&format!("namespaceCredentials[{i}]"), &mut out);
    }
    for (i, p) in c.policy.iter().enumerate() {
        p.check(&format!("policy[{i}]"), &mut out);
    }
    // Names key caches and errors: one name, one entry, per section.
    for (section, names) in [
        (
            "vault",
            c.vault.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ),
        (
            "exchanges",
            c.exchanges.iter().map(|x| x.name.as_str()).collect(),
        ),
    ] {
        for (i, n) in names.iter().enumerate() {
            if let Some(first) = names[..i].iter().position(|m| m == n) {
                out.push(Problem::error(
                    format!("{section}[{i}].name"),
                    format!("{n:?} is also {section}[{first}]'s name"),
                ));
            }
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks what every keyed source entry has: a `name` and the registry keys
/// it serves.
pub fn check_named_source(at: &str, name: &str, registries: &[String], out: &mut Vec<Problem>) {
    if name.trim().is_empty() {
        out.push(Problem::error(format!("{at}.name"), "must not be empty"));
    }
    if registries.is_empty() {
        out.push(Problem::error(
            format!("{at}.registries"),
            "lists no registry key",
        ));
    }
    for (i, r) in registries.iter().enumerate() {
        check_registry_key(&format!("{at}.registries[{i}]"), r, out);
    }
}

/// Checks a registry key as written in `registries:` lists.
pub fn check_registry_key(at: &str, key: &str, out: &mut Vec<Problem>) {
    if crate::matching::normalize_auth_key(key).is_none() {
        out.push(Problem::error(
            at,
            format!("{key:?} is not a registry key (host[:port][/path], `*.` globs in the host)"),
        ));
    }
}

/// Checks a `namespaces:` list (`at` is its path): not empty (else
/// `empty`), and each entry a selector ([`check_selector`]).
pub fn check_selectors(at: &str, selectors: &[String], empty: &str, out: &mut Vec<Problem>) {
    if selectors.is_empty() {
        out.push(Problem::error(at, empty));
    }
    for (i, s) in selectors.iter().enumerate() {
        check_selector(&format!("{at}[{i}]"), s, out);
    }
}

/// Checks a `namespaces:` selector: `namespace` or `namespace/serviceaccount`,
/// each a glob.
pub fn check_selector(at: &str, sel: &str, out: &mut Vec<Problem>) {
    let bad = |what: &str| Problem::error(at, format!("{sel:?}: {what}"));
    let (ns, sa) = match sel.split_once('/') {
        Some((ns, sa)) => (ns, Some(sa)),
        None => (sel, None),
    };
    for part in std::iter::once(ns).chain(sa) {
        if part.is_empty() || part.contains('/') {
            out.push(bad(
                "want NAMESPACE or NAMESPACE/SERVICEACCOUNT, each a glob",
            ));
            return;
        }
        if crate::matching::path_match(part.as_bytes(), b"").is_err() {
            out.push(bad("malformed glob"));
            return;
        }
    }
}

/// Whether `selector` (`ns` or `ns/sa`, globs) selects the service account
/// `namespace/name`.
pub fn selector_matches(selector: &str, namespace: &str, name: &str) -> bool {
    let glob =
        |p: &str, s: &str| crate::matching::path_match(p.as_bytes(), s.as_bytes()) == Ok(true);
    match selector.split_once('/') {
        Some((ns, sa)) => glob(ns, namespace) && glob(sa, name),
        None => glob(selector, namespace),
    }
}

/// Checks a URL that credentials are sent to: https, or http to loopback.
pub fn check_secret_url(at: &str, url: &str, out: &mut Vec<Problem>) {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("https://") {
        r
    } else if let Some(r) = lower.strip_prefix("http://") {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            out.push(Problem::error(
                at,
                format!("{url:?}: credentials go only over https (http only to loopback)"),
            ));
            return;
        }
        r
    } else {
        out.push(Problem::error(at, format!("{url:?} is not an https URL")));
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        out.push(Problem::error(
            at,
            format!("{url:?}: want https://HOST[:PORT]/PATH, no user info"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_parses_and_checks_clean() {
        let c = parse("apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\n").unwrap();
        assert_eq!(
            c,
            PullcredConfig {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                ..Default::default()
            }
        );
        assert!(check(&c).is_empty());
        assert!(looks_like(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\n"
        ));
        assert!(looks_like(r#"{"kind": "PullcredConfig"}"#));
        assert!(!looks_like("kind: CredentialProviderConfig\n"));
    }

    #[test]
    fn strict_decoding() {
        let e = parse("apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nvaults: []\n")
            .unwrap_err();
        assert!(e.contains("vaults"), "{e}");
        assert!(
            parse("apiVersion: v1\nkind: PullcredConfig\n")
                .unwrap_err()
                .contains("apiVersion")
        );
        assert!(
            parse("apiVersion: pullcred.dev/v1alpha1\nkind: Other\n")
                .unwrap_err()
                .contains("kind")
        );
    }

    #[test]
    fn names_are_unique_per_section() {
        let c = parse(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nexchanges:\n- {name: a, registries: [r.example], tokenUrl: https://t.example, subjectToken: pod}\n- {name: a, registries: [s.example], tokenUrl: https://t.example, subjectToken: pod}\n",
        )
        .unwrap();
        let p = check(&c);
        assert!(p.iter().any(|p| p.at == "exchanges[1].name"), "{p:?}");
    }

    #[test]
    fn selectors() {
        assert!(selector_matches("team-*", "team-a", "x"));
        assert!(!selector_matches("team-*", "prod", "x"));
        assert!(selector_matches("team-a/builder", "team-a", "builder"));
        assert!(!selector_matches("team-a/builder", "team-a", "default"));
        assert!(selector_matches("*/ci-*", "x", "ci-runner"));
        let mut out = Vec::new();
        check_selector("s", "a/b/c", &mut out);
        check_selector("s", "", &mut out);
        check_selector("s", "[", &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
    }

    #[test]
    fn secret_urls() {
        let mut out = Vec::new();
        for ok in [
            "https://vault.example.com:8200",
            "http://127.0.0.1:8200/x",
            "https://a/b",
        ] {
            check_secret_url("u", ok, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        for bad in [
            "http://vault.example.com",
            "https://user@host/",
            "ftp://x",
            "https://",
        ] {
            check_secret_url("u", bad, &mut out);
        }
        assert_eq!(out.len(), 4, "{out:?}");
    }
}
