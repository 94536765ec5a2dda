//! Merging provider entries into a node's existing CredentialProviderConfig
//! (`pullcred install --merge`): a pure function on decoded configs.
//!
//! The kubelet's rules it keeps (kubelet.config.k8s.io/v1 reference,
//! <https://kubernetes.io/docs/reference/config-api/kubelet-config.v1/>):
//! - `name` is "required to be unique across all providers": an existing
//!   entry with the name of one of ours is replaced by ours (it is an older
//!   install of the same plugin), and a config that already repeats a name
//!   is refused (the kubelet refuses it too);
//! - "multiple providers may match against a single image ... if providers
//!   return overlapping auth keys, the value from the provider earlier in
//!   this list is attempted first": the existing entries stay first, in
//!   their order, and ours follow; every glob pair that can match the same
//!   image is reported, so the operator sees which plugin's answer the
//!   kubelet tries first.
//!
//! The result is `kubelet.config.k8s.io/v1`: its provider fields are a
//! superset of v1beta1's and v1alpha1's, and `tokenAttributes` exists only there.

use std::collections::BTreeSet;

use crate::config::{CONFIG_API_V1, CONFIG_KIND, CredentialProvider, CredentialProviderConfig};
use crate::matching::glob_matches;

/// A merged config and what the operator should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub config: CredentialProviderConfig,
    /// One line each: replaced entries and overlapping `matchImages`.
    pub notes: Vec<String>,
}

/// Why two configs cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// The existing config names a provider twice: the kubelet would refuse it.
    DuplicateExisting(String),
    /// Our own entries repeat a name.
    DuplicateOurs(String),
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::DuplicateExisting(n) => write!(
                f,
                "the existing config names provider {n:?} more than once (the kubelet refuses it); fix it first"
            ),
            MergeError::DuplicateOurs(n) => write!(f, "provider {n:?} is given more than once"),
        }
    }
}

impl std::error::Error for MergeError {}

/// Whether two `matchImages` globs can select the same image: equal, or one
/// matches the other read as an image name (a `*` there is a literal
/// character, so `*.dkr.ecr.*.amazonaws.com` matches itself and
/// `123.dkr.ecr.us-east-1.amazonaws.com` matches it).
pub fn globs_overlap(a: &str, b: &str) -> bool {
    a == b || glob_matches(a, b).unwrap_or(false) || glob_matches(b, a).unwrap_or(false)
}

/// `existing`'s providers, then `ours`; see the module doc for the rules.
pub fn merge(
    existing: &[CredentialProvider],
    ours: &[CredentialProvider],
) -> Result<Merged, MergeError> {
    let mut seen = BTreeSet::new();
    for p in existing {
        if !seen.insert(p.name.as_str()) {
            return Err(MergeError::DuplicateExisting(p.name.clone()));
        }
    }
    let mut our_names = BTreeSet::new();
    for p in ours {
        if !our_names.insert(p.name.as_str()) {
            return Err(MergeError::DuplicateOurs(p.name.clone()));
        }
    }
    let mut notes = Vec::new();
    let mut providers: Vec<CredentialProvider> = Vec::new();
    for p in existing {
        if our_names.contains(p.name.as_str()) {
            notes.push(format!(
                "the existing provider {:?} is replaced by the new entry of the same name",
                p.name
            ));
            continue;
        }
        providers.push(p.clone());
    }
    for o in ours {
        for e in &providers {
            let pairs: Vec<String> = e
                .match_images
                .iter()
                .flat_map(|g| {
                    o.match_images
                        .iter()
                        .filter(move |h| globs_overlap(g, h))
                        .map(move |h| {
                            if g == h {
                                format!("{g:?}")
                            } else {
                                format!("{g:?}/{h:?}")
                            }
                        })
                })
                .collect();
            if !pairs.is_empty() {
                notes.push(format!(
                    "matchImages overlap: providers {:?} and {:?} both match {}; the kubelet runs both for such images and tries {:?}'s credentials first",
                    e.name,
                    o.name,
                    pairs.join(", "),
                    e.name
                ));
            }
        }
    }
    providers.extend(ours.iter().cloned());
    Ok(Merged {
        config: CredentialProviderConfig {
            api_version: CONFIG_API_V1.to_string(),
            kind: CONFIG_KIND.to_string(),
            providers,
        },
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, globs: &[&str]) -> CredentialProvider {
        CredentialProvider {
            name: name.into(),
            match_images: globs.iter().map(|s| s.to_string()).collect(),
            default_cache_duration: Some("12h".into()),
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn keeps_existing_first_and_reports_overlaps() {
        // Given nodeadm's ECR entry and a pullcred entry covering ECR and GAR
        let ecr = provider("ecr-credential-provider", &["*.dkr.ecr.*.amazonaws.com"]);
        let ours = provider(
            "pullcred",
            &["*.dkr.ecr.*.amazonaws.com", "*-docker.pkg.dev"],
        );
        // When merged
        let m = merge(std::slice::from_ref(&ecr), std::slice::from_ref(&ours)).unwrap();
        // Then the existing entry stays first and the overlap is named
        let names: Vec<&str> = m.config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ecr-credential-provider", "pullcred"]);
        assert_eq!(m.config.api_version, CONFIG_API_V1);
        assert_eq!(m.config.kind, CONFIG_KIND);
        assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
        assert!(
            m.notes[0].contains("\"*.dkr.ecr.*.amazonaws.com\""),
            "{}",
            m.notes[0]
        );
        assert!(m.notes[0].contains("tries \"ecr-credential-provider\"'s credentials first"));
    }

    #[test]
    fn replaces_an_entry_of_the_same_name() {
        let old = provider("pullcred", &["old.example.com"]);
        let other = provider("other", &["registry.example.org"]);
        let ours = provider("pullcred", &["*.dkr.ecr.*.amazonaws.com"]);
        let m = merge(&[old, other], std::slice::from_ref(&ours)).unwrap();
        assert_eq!(
            m.config.providers,
            vec![provider("other", &["registry.example.org"]), ours]
        );
        assert_eq!(m.notes.len(), 1);
        assert!(m.notes[0].contains("replaced"));
    }

    #[test]
    fn refuses_duplicate_names() {
        let a = provider("a", &["x.example.com"]);
        assert_eq!(
            merge(&[a.clone(), a.clone()], &[]),
            Err(MergeError::DuplicateExisting("a".into()))
        );
        assert_eq!(
            merge(&[], &[a.clone(), a]),
            Err(MergeError::DuplicateOurs("a".into()))
        );
    }

    #[test]
    fn overlap_rules() {
        assert!(globs_overlap(
            "*.dkr.ecr.*.amazonaws.com",
            "*.dkr.ecr.*.amazonaws.com"
        ));
        assert!(globs_overlap(
            "*.dkr.ecr.*.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert!(globs_overlap("registry.example.com", "*.example.com"));
        assert!(!globs_overlap("*.azurecr.io", "*.dkr.ecr.*.amazonaws.com"));
        assert!(!globs_overlap("docker.io", "quay.io"));
    }
}
