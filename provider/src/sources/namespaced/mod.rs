//! Static credentials scoped by namespace (config file
//! `namespaceCredentials`): team-a's robot account goes only to team-a's
//! pods, as an `imagePullSecret` in team-a did before the credentials moved
//! to the node.
//!
//! An entry names namespace selectors (`ns` or `ns/serviceaccount`, globs)
//! and a docker config file and/or Secrets Manager secrets by registry key.
//! The namespace and service account come from the pod's service-account
//! token (its claims; the kubelet config must send one, with
//! `cacheType: ServiceAccount` so that the kubelet keeps answers apart too).
//!
//! For an image some entry has a key for:
//! - a pod whose namespace an entry selects gets that entry's credentials
//!   (the first such entry that has a key for the image); the cache entry is
//!   keyed by the service account, so no answer crosses namespaces;
//! - a pod no entry selects is refused, unless the policy (or
//!   `--service-account-fallback=node`) gives it the node's identity: then
//!   the image is served as if no namespace credentials existed (the node's
//!   docker configs, secrets, keyless sources or cloud);
//! - a request without a token is served as the node's, the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Credential, FetchContext, Route, Source, SourceError};
use crate::image::ImageRef;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{Identity, PodRules, ServiceAccount, Workload};
use kubelet_config::pullcred::{namespaces::NamespaceCredential, selector_matches};

/// The config file's `namespaceCredentials`, as a source, holding the node's
/// docker configs as the request already read them (for the node's route,
/// which pods the entries do not serve fall back to).
pub struct Namespaced<'a>(pub &'a dyn Source);

impl Source for Namespaced<'_> {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        let entries = &opts.config.namespace_credentials;
        if entries.is_empty() {
            return None;
        }
        let grants: Vec<Grant> = entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| Grant::for_image(index, entry, image, opts))
            .collect();
        if grants.is_empty() {
            return None;
        }
        Some(Box::new(NamespacedRoute {
            grants,
            node: super::route_for_node(image, opts, self.0).map(|r| r.route),
        }))
    }

    fn path_scoped(&self, image: &ImageRef, opts: &Options) -> bool {
        opts.config
            .namespace_credentials
            .iter()
            .any(|entry| super::statics_path_scoped(image, &entry_options(entry, opts)))
    }
}

/// The options under which an entry's own files and secrets are read: the
/// node's settings with the entry's credentials in place of the node's.
fn entry_options(entry: &NamespaceCredential, opts: &Options) -> Options {
    Options {
        docker_configs: entry.docker_config.iter().map(Into::into).collect(),
        aws_secrets: entry
            .aws_secrets
            .iter()
            .map(|s| (s.registry.clone(), s.secret.clone()))
            .collect(),
        ..opts.clone()
    }
}

/// One entry that has a key for the image: who may have it, and the route
/// to its credentials.
struct Grant {
    index: usize,
    selectors: Vec<String>,
    opts: Options,
    route: Box<dyn Route>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "namespaceCredentials[{}]", self.index)
    }
}

impl Grant {
    fn for_image(
        index: usize,
        entry: &NamespaceCredential,
        image: &ImageRef,
        opts: &Options,
    ) -> Option<Grant> {
        let opts = entry_options(entry, opts);
        let route = super::route_statics(image, &opts)?;
        Some(Grant {
            index,
            selectors: entry.namespaces.clone(),
            opts,
            route,
        })
    }

    fn selects(&self, account: &ServiceAccount) -> bool {
        self.selectors
            .iter()
            .any(|s| selector_matches(s, &account.namespace, &account.name))
    }
}

struct NamespacedRoute {
    grants: Vec<Grant>,
    /// The route the image gets without namespace credentials.
    node: Option<Box<dyn Route>>,
}

impl NamespacedRoute {
    /// The grant a pod's identity chose.
    fn grant(&self, workload: Option<&Workload>) -> Option<&Grant> {
        let chosen = workload?.identity.as_any().downcast_ref::<Chosen>()?;
        self.grants.get(chosen.position)
    }

    fn node(&self, image: &ImageRef) -> Result<&dyn Route, SourceError> {
        self.node.as_deref().ok_or_else(|| {
            SourceError::refused(
                "choosing credentials",
                format!(
                    "registry {}'s credentials are given only to some namespaces (config file {}), and the request carries no service-account token to tell which; add tokenAttributes (serviceAccountTokenAudience, cacheType: ServiceAccount) to this provider in the kubelet config",
                    image.registry,
                    self.where_()
                ),
            )
        })
    }

    fn where_(&self) -> String {
        let at: Vec<String> = self.grants.iter().map(|g| format!("{g:?}")).collect();
        at.join(", ")
    }
}

impl Route for NamespacedRoute {
    fn id(&self) -> &'static str {
        "namespaced"
    }

    fn describe(&self, image: &ImageRef) -> String {
        let who: Vec<String> = self
            .grants
            .iter()
            .map(|g| format!("{g:?} for {}", g.selectors.join(", ")))
            .collect();
        let first = self.grants.first().map(|g| g.route.describe(image));
        format!(
            "namespace-scoped {} ({})",
            first.unwrap_or_default(),
            who.join("; ")
        )
    }

    fn node_identity(&self, opts: &Options) -> String {
        let grants: Vec<String> = self
            .grants
            .iter()
            .map(|g| format!("{g:?}: {}", g.route.node_identity(&g.opts)))
            .collect();
        let node = match &self.node {
            Some(r) => format!("other pods and node requests: {}", r.node_identity(opts)),
            None => "other pods: refused".into(),
        };
        format!("{}; {node}", grants.join("; "))
    }

    fn cache_parts(
        &self,
        image: &ImageRef,
        opts: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        match (self.grant(workload), workload) {
            (Some(g), Some(w)) => {
                let mut parts = vec![("source", "namespaced".to_string())];
                parts.push(("entry", g.index.to_string()));
                parts.extend(w.cache_parts());
                parts.extend(g.route.cache_parts(image, &g.opts, None));
                parts
            }
            _ => match &self.node {
                Some(r) => r.cache_parts(image, opts, None),
                None => vec![
                    ("source", "namespaced".to_string()),
                    ("refused", image.registry.clone()),
                ],
            },
        }
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        Some(self)
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        match self.grant(ctx.workload) {
            Some(g) => g.route.fetch(&FetchContext {
                opts: &g.opts,
                workload: None,
                ..*ctx
            }),
            None => self.node(ctx.image)?.fetch(&FetchContext {
                workload: None,
                ..*ctx
            }),
        }
    }
}

/// The entry a pod's namespace selects, as its "identity".
#[derive(Debug)]
struct Chosen {
    /// Index into the route's grants.
    position: usize,
    /// Index into `namespaceCredentials`.
    index: usize,
}

impl Identity for Chosen {
    fn describe(&self) -> String {
        format!(
            "namespace-scoped credentials namespaceCredentials[{}]",
            self.index
        )
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        vec![("sa-namespace-entry", self.index.to_string())]
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl PodRules for NamespacedRoute {
    // No annotation names namespace-scoped credentials: the namespace does.
    fn identity(
        &self,
        account: &ServiceAccount,
        _: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(self
            .grants
            .iter()
            .position(|g| g.selects(account))
            .map(|position| {
                Arc::new(Chosen {
                    position,
                    index: self.grants[position].index,
                }) as Arc<dyn Identity>
            }))
    }

    fn missing_hint(&self, _: &WorkloadSettings) -> String {
        let who: Vec<String> = self
            .grants
            .iter()
            .map(|g| format!("{g:?} serves {}", g.selectors.join(", ")))
            .collect();
        format!(
            "its namespace is not among those this registry's credentials are given to ({})",
            who.join("; ")
        )
    }
}
