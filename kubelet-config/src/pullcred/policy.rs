//! `policy`: per namespace and registry, whether a pod whose service
//! account names no identity falls back to the node's, and which
//! identities a namespace may name at all. Rules are read in order; the
//! first whose `namespaces` and `registries` both match decides. No rule
//! matching: the global `--service-account-fallback` and no restriction.
//! A refusal names the rule (`policy[2]`).

use serde::{Deserialize, Serialize};

use super::{Problem, check_registry_key, check_selectors, selector_matches};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyRule {
    /// `namespace` or `namespace/serviceaccount` selectors (globs).
    pub namespaces: Vec<String>,
    /// Registry keys; empty: every registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registries: Vec<String>,
    /// `node` or `deny`: what a pod that names no identity gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Which identities the namespace may name (globs); a list left out
    /// allows any, an empty list allows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Allowed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Fallback {
    Node,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Allowed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_service_accounts: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_client_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_roles: Option<Vec<String>>,
}

/// The kinds of identity a policy can restrict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// An IAM role ARN.
    IamRole,
    /// A Google service account's email.
    GoogleServiceAccount,
    /// An Entra application (client) ID.
    EntraClientId,
    /// A Vault auth method's role.
    VaultAuthRole,
}

impl IdentityKind {
    pub fn field(self) -> &'static str {
        match self {
            IdentityKind::IamRole => "allow.awsRoles",
            IdentityKind::GoogleServiceAccount => "allow.googleServiceAccounts",
            IdentityKind::EntraClientId => "allow.azureClientIds",
            IdentityKind::VaultAuthRole => "allow.vaultRoles",
        }
    }
}

impl Allowed {
    /// The allow list for `kind`; `None`: not restricted.
    pub fn list(&self, kind: IdentityKind) -> Option<&[String]> {
        match kind {
            IdentityKind::IamRole => self.aws_roles.as_deref(),
            IdentityKind::GoogleServiceAccount => self.google_service_accounts.as_deref(),
            IdentityKind::EntraClientId => self.azure_client_ids.as_deref(),
            IdentityKind::VaultAuthRole => self.vault_roles.as_deref(),
        }
    }
}

impl PolicyRule {
    pub fn check(&self, at: &str, out: &mut Vec<Problem>) {
        check_selectors(
            &format!("{at}.namespaces"),
            &self.namespaces,
            "names no namespace",
            out,
        );
        for (i, r) in self.registries.iter().enumerate() {
            check_registry_key(&format!("{at}.registries[{i}]"), r, out);
        }
        if self.fallback.is_none() && self.allow.is_none() {
            out.push(Problem::warning(at, "sets neither fallback nor allow: it decides nothing, but stops later rules from matching"));
        }
        if let Some(a) = &self.allow {
            for kind in [
                IdentityKind::IamRole,
                IdentityKind::GoogleServiceAccount,
                IdentityKind::EntraClientId,
                IdentityKind::VaultAuthRole,
            ] {
                for (i, g) in a.list(kind).unwrap_or_default().iter().enumerate() {
                    if crate::matching::path_match(g.as_bytes(), b"").is_err() {
                        out.push(Problem::error(
                            format!("{at}.{}[{i}]", kind.field()),
                            format!("{g:?}: malformed glob"),
                        ));
                    }
                }
            }
        }
    }

    /// Whether the rule applies to `namespace/name` pulling `image` (a
    /// normalised image name, `host/path`).
    pub fn applies(&self, namespace: &str, name: &str, image: &str) -> bool {
        self.namespaces
            .iter()
            .any(|s| selector_matches(s, namespace, name))
            && (self.registries.is_empty()
                || self
                    .registries
                    .iter()
                    .any(|k| crate::matching::auth_key_matches(k, image)))
    }
}

/// The first rule that applies, with its index (for `policy[i]` in errors).
pub fn rule_for<'a>(
    rules: &'a [PolicyRule],
    namespace: &str,
    name: &str,
    image: &str,
) -> Option<(usize, &'a PolicyRule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.applies(namespace, name, image))
}

/// Whether `value` is allowed by the first applicable rule for `kind`:
/// `Err(rule index)` when that rule restricts `kind` and no glob matches.
pub fn allows(
    rules: &[PolicyRule],
    namespace: &str,
    name: &str,
    image: &str,
    kind: IdentityKind,
    value: &str,
) -> Result<(), usize> {
    let Some((i, rule)) = rule_for(rules, namespace, name, image) else {
        return Ok(());
    };
    match rule.allow.as_ref().and_then(|a| a.list(kind)) {
        None => Ok(()),
        Some(globs) => {
            if globs
                .iter()
                .any(|g| crate::matching::path_match(g.as_bytes(), value.as_bytes()) == Ok(true))
            {
                Ok(())
            } else {
                Err(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        ns: &[&str],
        reg: &[&str],
        fallback: Option<Fallback>,
        roles: Option<&[&str]>,
    ) -> PolicyRule {
        PolicyRule {
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            registries: reg.iter().map(|s| s.to_string()).collect(),
            fallback,
            allow: roles.map(|r| Allowed {
                aws_roles: Some(r.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let ecr = "123456789012.dkr.ecr.us-west-2.amazonaws.com/app";
        let rules = [
            rule(
                &["prod-*"],
                &["*.dkr.ecr.*.amazonaws.com"],
                Some(Fallback::Deny),
                Some(&["arn:aws:iam::123456789012:role/prod-*"]),
            ),
            rule(&["*"], &[], Some(Fallback::Node), None),
        ];
        assert_eq!(rule_for(&rules, "prod-a", "sa", ecr).unwrap().0, 0);
        assert_eq!(rule_for(&rules, "dev", "sa", ecr).unwrap().0, 1);
        assert_eq!(rule_for(&rules, "prod-a", "sa", "quay.io/x").unwrap().0, 1);
        let role = |r: &str| allows(&rules, "prod-a", "sa", ecr, IdentityKind::IamRole, r);
        assert_eq!(role("arn:aws:iam::123456789012:role/prod-pull"), Ok(()));
        assert_eq!(role("arn:aws:iam::123456789012:role/dev-pull"), Err(0));
        assert_eq!(
            allows(&rules, "dev", "sa", ecr, IdentityKind::IamRole, "anything"),
            Ok(())
        );
    }
}
