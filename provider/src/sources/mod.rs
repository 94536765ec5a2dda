//! Where credentials come from: one directory per source, each owning its
//! host grammar, its per-pod identity rules, its cache-key parts, what
//! `doctor` says about it and its fetch. Routing asks [`route`]'s list in
//! order; nothing outside a source's directory knows which source it is.
//!
//! - [`dockerconfig`]: dockerconfigjson files on the node (static).
//! - [`aws`]: AWS Secrets Manager mappings (static), Amazon ECR Public and
//!   ECR private, through the AWS SDK (feature `aws`).
//! - [`acr`]: Azure Container Registry hosts (`azure`).
//! - [`google`]: Artifact Registry and Container Registry (`gcp`).
//! - [`namespaced`]: static credentials given only to some namespaces'
//!   pods (config file `namespaceCredentials`).
//! - [`vault`]: HashiCorp Vault / OpenBao KV secrets (config file `vault`).
//! - [`exchange`]: RFC 8693 token exchange and Artifactory (config file
//!   `exchanges`).
//! - [`mirror`]: `--mirror SOURCE=TARGET[/PREFIX]`, asked first: SOURCE's
//!   images get the credentials of TARGET, whichever source serves it.
//!
//! A source whose feature is off is still routed (its hosts are recognised)
//! and its fetch says "this pullcred was built without the `X` feature": its
//! directory holds a `disabled.rs` stand-in for the feature's module, chosen
//! with `#[cfg_attr(not(feature = "X"), path = "disabled.rs")]`.
//!
//! Only this module's children initialise cloud SDKs or an async runtime,
//! and only on a cache miss ([`Route::fetch`]).

pub mod acr;
pub mod aws;
pub mod dockerconfig;
pub mod exchange;
pub mod google;
pub mod mirror;
pub mod namespaced;
#[cfg_attr(not(feature = "static"), path = "registry_check_disabled.rs")]
pub mod registry_check;
pub mod vault;

use std::collections::BTreeMap;

use crate::deadline::Deadline;
pub use crate::error::{Kind, SourceError};
use crate::image::ImageRef;
use crate::protocol::{AuthConfig, CacheKeyType};
use crate::secret::Secret;
use crate::settings::Options;
use crate::workload::{PodRules, Workload};

/// A source of credentials: asked, in [`route`]'s order, whether it serves
/// an image.
pub trait Source {
    /// The route for `image` when this source serves it.
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>>;
    /// Whether this source holds a path-scoped key for the image's host: the
    /// answer for every image of that host is then `Image`-scoped (see
    /// `pipeline::Reply::image_only`), whichever source serves it.
    fn path_scoped(&self, _image: &ImageRef, _opts: &Options) -> bool {
        false
    }
    /// What this source could not use (a refused file), for the error when
    /// no source serves the image.
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }
}

/// One image's way to its credential, resolved by a [`Source`].
pub trait Route {
    /// Short name of the source, for errors and cache keys (`ecr`, `acr`...).
    fn id(&self) -> &'static str;
    /// Which source serves the image, in a user's words (`doctor`).
    fn describe(&self, image: &ImageRef) -> String;
    /// Which node identity or file a fetch would use (`doctor`); no network.
    fn node_identity(&self, opts: &Options) -> String;
    /// The request and configuration facts that decide the credential, in
    /// order, for the cache key. Never a secret; no network.
    fn cache_parts(
        &self,
        image: &ImageRef,
        opts: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)>;
    /// The per-pod identity rules (KEP-4412), for cloud token sources;
    /// `None`: static credentials are the node's, whoever asks.
    fn pod_rules(&self) -> Option<&dyn PodRules> {
        None
    }
    /// Whether one token serves every registry host of the source, so that
    /// the entry is keyed by identity and not by host.
    fn shares_token_across_hosts(&self) -> bool {
        false
    }
    /// Fetches the credential (a cache miss).
    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError>;
    /// `doctor`: the registry API base that answers with these credentials.
    #[cfg(feature = "static")]
    fn registry_api(&self, image: &ImageRef) -> Result<String, String> {
        Ok(registry_check::api_base(&image.registry))
    }
    /// `doctor`: where a Bearer challenge's `realm` may receive them.
    #[cfg(feature = "static")]
    fn realm_url(&self, registry_api: &str, realm: &str) -> Result<String, String> {
        registry_check::credential_realm(registry_api, realm).map(|r| r.url())
    }
    /// `doctor`: what to do about a 403 from the registry, when the source
    /// knows better than "give the account pull permission".
    fn forbidden_hint(&self) -> Option<&'static str> {
        None
    }
    /// `doctor`: the image as the registry that answers with these
    /// credentials names it, when that is not the image itself (a
    /// `--mirror` SOURCE's image at TARGET/PREFIX).
    fn target(&self, _image: &ImageRef) -> Option<ImageRef> {
        None
    }
}

/// What a fetch gets to work with.
pub struct FetchContext<'a> {
    pub image: &'a ImageRef,
    pub opts: &'a Options,
    /// The pod's identity, when the request uses it.
    pub workload: Option<&'a Workload>,
    pub deadline: &'a Deadline,
}

/// What a source answers.
#[derive(Debug)]
pub enum Credential {
    /// A short-lived token for the image's registry, expiring when upstream said.
    Token(Fetched),
    /// Credentials with no expiry of their own, keyed as the operator wrote
    /// them; fresh for `--static-ttl`.
    Static {
        auth: BTreeMap<String, AuthConfig>,
        key_type: CacheKeyType,
    },
}

/// A credential fresh from upstream.
#[derive(Debug)]
pub struct Fetched {
    pub username: String,
    pub password: Secret,
    /// Unix seconds, as upstream stated it.
    pub expires_at: i64,
}

/// An image routed: the way to its credential, and whether its host has a
/// path-scoped static key.
pub struct Routed {
    pub route: Box<dyn Route>,
    pub path_scoped: bool,
}

/// The sources that a registry host names, in the order they are asked
/// (after the operator's static credentials, which win). Adding a registry
/// is one directory under `sources/` and one line here.
fn by_host() -> [&'static dyn Source; 4] {
    [&acr::Acr, &aws::EcrPublic, &google::Google, &aws::Ecr]
}

/// The `--mirror` map first (a mirror decides where pulls go, and routes
/// the rewritten image through [`route_direct`]), then [`route_direct`].
pub fn route(image: &ImageRef, opts: &Options) -> Result<Routed, NoSource> {
    // The docker configs are read once per request, for the mirror's target,
    // for the image itself and for namespace-scoped credentials' node route.
    let files = node_files(opts);
    if let Some(route) = mirror::Mirrors(&files).route(image, opts) {
        let path_scoped = statics(&namespaced::Namespaced(&files))
            .iter()
            .any(|s| s.path_scoped(image, opts));
        return Ok(Routed { route, path_scoped });
    }
    route_direct_with(image, opts, &files)
}

/// Static sources first (an operator's explicit files and secrets win), then
/// the cloud source the registry host names; no mirror.
pub fn route_direct(image: &ImageRef, opts: &Options) -> Result<Routed, NoSource> {
    route_direct_with(image, opts, &node_files(opts))
}

/// [`route_direct`] with the docker configs already read (`files`).
fn route_direct_with(
    image: &ImageRef,
    opts: &Options,
    files: &dyn Source,
) -> Result<Routed, NoSource> {
    route_from(image, opts, &statics(&namespaced::Namespaced(files)))
}

/// The node's docker configs (`--docker-config`), read once per request.
fn node_files(opts: &Options) -> impl Source {
    dockerconfig::load_all(&opts.docker_configs)
}

/// The sources an operator configured, in the order they are asked:
/// namespace-scoped credentials first (the narrowest grant), then
/// [`node_sources`] (with the node's docker configs that `namespaced`
/// holds). All of them win over the host's cloud ([`by_host`]).
fn statics<'a>(namespaced: &'a namespaced::Namespaced<'a>) -> Vec<&'a dyn Source> {
    let mut all: Vec<&dyn Source> = vec![namespaced];
    all.extend(node_sources(namespaced.0));
    all
}

/// Every operator-configured source but namespace-scoped credentials: the
/// node's files and secrets ([`node_statics`]), then the config file's
/// keyless sources.
fn node_sources(files: &dyn Source) -> [&dyn Source; 4] {
    let [files, secrets] = node_statics(files);
    [files, secrets, &vault::Vault, &exchange::Exchange]
}

/// Static credentials as files and secrets: the docker configs in
/// `files`, then `--aws-secret` keys (a namespace-scoped entry's own, or
/// the node's).
fn node_statics(files: &dyn Source) -> [&dyn Source; 2] {
    [files, &aws::SecretsManager]
}

/// The first of `statics`, then of [`by_host`], that serves the image.
fn route_from(
    image: &ImageRef,
    opts: &Options,
    statics: &[&dyn Source],
) -> Result<Routed, NoSource> {
    let path_scoped = statics.iter().any(|s| s.path_scoped(image, opts));
    for s in statics.iter().copied().chain(by_host()) {
        if let Some(route) = s.route(image, opts) {
            return Ok(Routed { route, path_scoped });
        }
    }
    Err(NoSource {
        registry: image.registry.clone(),
        skipped: statics.iter().flat_map(|s| s.skipped()).collect(),
    })
}

/// The route an image gets when namespace-scoped credentials do not apply
/// (a pod they are not given to, falling back to the node; a request
/// without a token): every other source, in the usual order, with the
/// node's docker configs as already read (`files`).
pub fn route_for_node(image: &ImageRef, opts: &Options, files: &dyn Source) -> Option<Routed> {
    route_from(image, opts, &node_sources(files)).ok()
}

/// Only the operator's static credentials in `opts` (docker configs, then
/// Secrets Manager keys): the sources a namespace-scoped entry holds.
pub fn route_statics(image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
    let files = node_files(opts);
    node_statics(&files)
        .into_iter()
        .find_map(|s| s.route(image, opts))
}

/// Whether the static credentials in `opts` hold a path-scoped key for the
/// image's host (see [`Source::path_scoped`]).
pub fn statics_path_scoped(image: &ImageRef, opts: &Options) -> bool {
    let files = node_files(opts);
    node_statics(&files)
        .iter()
        .any(|s| s.path_scoped(image, opts))
}

/// The cloud source a registry host names, ignoring static credentials
/// (`doctor`'s registry step reaches the registry as the cloud would); a
/// `--mirror` SOURCE's image goes to its TARGET's route, never to SOURCE.
pub fn route_by_host(image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
    if let Some(route) = mirror::Mirrors(&node_files(opts)).route(image, opts) {
        return Some(route);
    }
    by_host().into_iter().find_map(|s| s.route(image, opts))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSource {
    pub registry: String,
    /// Static sources that could not be used, and why.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for NoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no pullcred source serves registry {:?} (supported: Amazon ECR private and ECR Public hosts; Google gcr.io, *.gcr.io, <location>-docker.pkg.dev, docker.<region>.rep.pkg.dev, container.cloud.google.com; Azure Container Registry hosts and --mirror sources; --docker-config and --aws-secret keys; the config file's vault, exchanges and namespaceCredentials registry keys); check the kubelet config's matchImages",
            self.registry
        )?;
        if !self.skipped.is_empty() {
            write!(f, "; and {}", self.skipped.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for NoSource {}

/// Environment facts that decide which AWS identity answers, for the cache
/// key. Identifiers only: never the secret key or the session token.
pub const AWS_IDENTITY_ENV: [&str; 14] = [
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_ECR_PUBLIC",
    "AWS_ENDPOINT_URL_STS",
];

/// The set [`AWS_IDENTITY_ENV`] variables, as cache-key parts.
pub fn aws_identity_parts() -> Vec<(&'static str, String)> {
    AWS_IDENTITY_ENV
        .iter()
        .filter_map(|name| {
            std::env::var_os(name).map(|v| (*name, v.to_string_lossy().into_owned()))
        })
        .collect()
}

/// A cloud token's cache-key parts, in the one order every token source
/// uses: the source, its scope (partition, registry), whose token and which
/// identity (a pod's), the source's own facts, then the AWS identity
/// environment.
pub fn token_key(
    id: &'static str,
    scope: Vec<(&'static str, String)>,
    workload: Option<&Workload>,
    facts: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    let mut parts = vec![("source", id.to_string())];
    parts.extend(scope);
    // Whose token and which identity: one service account's credential is
    // never another's entry.
    if let Some(w) = workload {
        parts.extend(w.cache_parts());
    }
    parts.extend(facts);
    parts.extend(aws_identity_parts());
    parts
}

/// Flattens an error and its sources into one line, dropping repeats.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let msg = err.to_string().replace(['\n', '\r'], " ");
        if !msg.is_empty() && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(image: &str, opts: &Options) -> Result<&'static str, NoSource> {
        route(&ImageRef::parse(image).unwrap(), opts).map(|r| r.route.id())
    }

    #[test]
    fn no_source_error_names_the_registry() {
        let e = routed("quay.io/foo/bar", &Options::default()).unwrap_err();
        assert!(e.to_string().contains("\"quay.io\""), "{e}");
        assert!(!e.to_string().contains("; and "), "{e}");
    }

    /// Each host form reaches its source, whatever features are built: a
    /// compiled-out source still routes (its fetch says what is missing).
    #[test]
    fn the_list_routes_every_cloud_host() {
        let opts = Options::default();
        for (image, id) in [
            ("123456789012.dkr.ecr.us-west-2.amazonaws.com/app", "ecr"),
            ("public.ecr.aws/nginx/nginx", "ecr-public"),
            ("us-docker.pkg.dev/p/r/i", "google"),
            ("myreg.azurecr.io/app", "acr"),
        ] {
            assert_eq!(routed(image, &opts), Ok(id), "{image}");
        }
    }

    /// Static credentials win over the host's cloud source.
    #[test]
    fn a_secrets_manager_key_wins_over_the_cloud_source() {
        let opts = Options {
            aws_secrets: vec![("myreg.azurecr.io".into(), "arn:secret".into())],
            ..Options::default()
        };
        assert_eq!(routed("myreg.azurecr.io/app", &opts), Ok("aws-secret"));
    }
}
