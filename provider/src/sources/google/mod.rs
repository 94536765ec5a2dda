//! Google Artifact Registry and Container Registry: one OAuth 2.0 access
//! token for the node's (or the pod's) Google identity serves every Google
//! registry host.
//!
//! This module owns the Google host grammar, the per-pod rules (KEP-4412:
//! `iam.gke.io/enable-wi-image-pull`, `iam.gke.io/gcp-service-account`,
//! `pullcred.dev/google-audience`, `--google-audience`), the cache-key parts
//! (identity and scopes, not the host) and what `doctor` says. The token
//! calls are in [`gcp`]; a build without the `gcp` feature gets
//! `disabled.rs` in its place.

#[cfg_attr(not(feature = "gcp"), path = "disabled.rs")]
pub mod gcp;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Credential, FetchContext, Route, Source, SourceError, token_key};
use crate::image::ImageRef;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{
    Identity, IdentityKind, PodRules, ServiceAccount, Workload, annotation, first_set,
};

pub use kubelet_config::sources::{
    GKE_ENABLE_ANNOTATION, GKE_SERVICE_ACCOUNT_ANNOTATION, GOOGLE_AUDIENCE_ANNOTATION,
};

/// Every Google registry host.
pub struct Google;

impl Source for Google {
    fn route(&self, image: &ImageRef, _: &Options) -> Option<Box<dyn Route>> {
        if image.port().is_some() {
            return None;
        }
        parse_google_host(image.host()).map(|g| Box::new(GoogleRoute(g)) as Box<dyn Route>)
    }
}

#[derive(Debug)]
struct GoogleRoute(#[allow(dead_code)] GoogleRegistry);

impl Route for GoogleRoute {
    fn id(&self) -> &'static str {
        "google"
    }

    fn describe(&self, image: &ImageRef) -> String {
        format!(
            "Google Artifact Registry / Container Registry {}",
            image.registry
        )
    }

    fn node_identity(&self, _: &Options) -> String {
        match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
            Some(p) => format!(
                "Google credentials file {} (GOOGLE_APPLICATION_CREDENTIALS)",
                p.to_string_lossy()
            ),
            None => "the GCE/GKE metadata server's default service account".to_string(),
        }
    }

    /// A Google access token serves every Google registry: keyed by
    /// identity and scopes, not by host.
    fn cache_parts(
        &self,
        _: &ImageRef,
        _: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        token_key("google", Vec::new(), workload, gcp::cache_parts())
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        Some(&GoogleRules)
    }

    fn shares_token_across_hosts(&self) -> bool {
        true
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        match ctx.workload {
            Some(w) => gcp::fetch_for_workload(w, ctx.deadline),
            None => gcp::fetch(ctx.deadline),
        }
        .map(Credential::Token)
    }
}

/// The Google audience: given, or GKE's, read from the metadata server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Given(String),
    GkeMetadata,
}

/// The Google identity a pod's service account asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleIdentity {
    pub audience: Audience,
    pub impersonate: Option<String>,
}

impl Identity for GoogleIdentity {
    fn describe(&self) -> String {
        let aud = match &self.audience {
            Audience::Given(a) => a.clone(),
            Audience::GkeMetadata => "the GKE cluster's workload pool".into(),
        };
        match &self.impersonate {
            Some(sa) => format!("audience {aud}, impersonating {sa}"),
            None => format!("audience {aud}"),
        }
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        let aud = match &self.audience {
            Audience::Given(a) => a.clone(),
            Audience::GkeMetadata => "gke-metadata".into(),
        };
        vec![
            ("sa-google-audience", aud),
            (
                "sa-google-impersonate",
                self.impersonate.clone().unwrap_or_default(),
            ),
        ]
    }

    /// A pod that impersonates no Google service account uses its own
    /// federated principal: nothing for an allow list of service accounts.
    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        self.impersonate
            .clone()
            .map(|sa| (IdentityKind::GoogleServiceAccount, sa))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Google's per-pod rules: the pod's token exchanged at Google STS.
struct GoogleRules;

impl PodRules for GoogleRules {
    fn naming_annotation(
        &self,
        annotations: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Option<&'static str> {
        if annotations
            .get(GKE_ENABLE_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Some(GKE_ENABLE_ANNOTATION);
        }
        first_set(
            annotations,
            &[GKE_SERVICE_ACCOUNT_ANNOTATION, GOOGLE_AUDIENCE_ANNOTATION],
        )
    }

    fn identity(
        &self,
        _: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(google_identity(annotations, settings)?.map(|g| Arc::new(g) as Arc<dyn Identity>))
    }

    fn missing_hint(&self, _: &WorkloadSettings) -> String {
        format!(
            "annotate it with {GKE_ENABLE_ANNOTATION}: \"true\", {GKE_SERVICE_ACCOUNT_ANNOTATION} or {GOOGLE_AUDIENCE_ANNOTATION}, or set --google-audience"
        )
    }
}

fn google_identity(
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Result<Option<GoogleIdentity>, String> {
    let enabled = annotations
        .get(GKE_ENABLE_ANNOTATION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let impersonate = annotation(annotations, GKE_SERVICE_ACCOUNT_ANNOTATION)
        .map(str::to_string)
        .or_else(|| {
            settings
                .google_service_account
                .clone()
                .filter(|s| !s.trim().is_empty())
        });
    let audience_annotation = annotation(annotations, GOOGLE_AUDIENCE_ANNOTATION);
    let opted_in = enabled
        || annotation(annotations, GKE_SERVICE_ACCOUNT_ANNOTATION).is_some()
        || audience_annotation.is_some()
        || settings.google_audience.is_some();
    if !opted_in {
        return Ok(None);
    }
    if let Some(sa) = &impersonate
        && (!sa.contains('@') || sa.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        let shown: String = sa.chars().take(120).collect();
        return Err(format!(
            "{GKE_SERVICE_ACCOUNT_ANNOTATION} {shown:?} is not a service account email"
        ));
    }
    let audience = match audience_annotation
        .map(str::to_string)
        .or_else(|| settings.google_audience.clone())
    {
        Some(a) => Audience::Given(a),
        None => Audience::GkeMetadata,
    };
    Ok(Some(GoogleIdentity {
        audience,
        impersonate,
    }))
}

// ---------------------------------------------------------------- hosts

/// A Google registry host. All of them take the same credential, an OAuth 2.0
/// access token for the node's Google identity; the kind is for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleRegistry {
    /// `gcr.io` and `<label>.gcr.io` (`us.gcr.io`, `eu.gcr.io`, `mirror.gcr.io`...).
    ContainerRegistry,
    /// `<location>-docker.pkg.dev`. Other `*.pkg.dev` formats (`-maven`,
    /// `-npm`, `-python`...) are not image registries and are refused.
    ArtifactRegistry,
    /// The regional endpoints `docker.<region>.rep.pkg.dev`.
    ArtifactRegistryRegional,
    /// `container.cloud.google.com` (GKE images, Marketplace).
    Marketplace,
}

/// Anchored on the whole host: `gcr.io.evil.com`, `xpkg.dev`,
/// `us-docker.pkg.dev.evil.io` and `evil.com/gcr.io/x` get nothing. A `*`
/// label is one DNS label, as in the kubelet's `matchImages` globs.
pub fn parse_google_host(host: &str) -> Option<GoogleRegistry> {
    if host == "gcr.io" {
        return Some(GoogleRegistry::ContainerRegistry);
    }
    if host == "container.cloud.google.com" {
        return Some(GoogleRegistry::Marketplace);
    }
    if let Some(label) = host.strip_suffix(".gcr.io") {
        return dns_label(label).then_some(GoogleRegistry::ContainerRegistry);
    }
    if let Some(rest) = host.strip_suffix(".rep.pkg.dev") {
        let region = rest.strip_prefix("docker.")?;
        return google_location(region).then_some(GoogleRegistry::ArtifactRegistryRegional);
    }
    let location = host.strip_suffix("-docker.pkg.dev")?;
    google_location(location).then_some(GoogleRegistry::ArtifactRegistry)
}

/// One lowercase DNS label: letters, digits, inner hyphens, at most 63 bytes.
fn dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A Google location (`us`, `europe`, `us-central1`, `northamerica-northeast2`):
/// a DNS label that starts with a letter and has no dots.
fn google_location(l: &str) -> bool {
    dns_label(l) && l.as_bytes()[0].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which source the host-named sources route `image` to.
    fn route_id(image: &str) -> Option<&'static str> {
        let image = ImageRef::parse(image).ok()?;
        crate::sources::route_by_host(&image, &Options::default()).map(|r| r.id())
    }

    #[test]
    fn google_hosts() {
        use GoogleRegistry::*;
        for (host, kind) in [
            ("gcr.io", ContainerRegistry),
            ("us.gcr.io", ContainerRegistry),
            ("eu.gcr.io", ContainerRegistry),
            ("asia.gcr.io", ContainerRegistry),
            ("mirror.gcr.io", ContainerRegistry),
            ("k8s.gcr.io", ContainerRegistry),
            ("us-docker.pkg.dev", ArtifactRegistry),
            ("us-central1-docker.pkg.dev", ArtifactRegistry),
            ("northamerica-northeast2-docker.pkg.dev", ArtifactRegistry),
            ("docker.us-central1.rep.pkg.dev", ArtifactRegistryRegional),
            ("docker.europe-west4.rep.pkg.dev", ArtifactRegistryRegional),
            ("container.cloud.google.com", Marketplace),
        ] {
            assert_eq!(parse_google_host(host), Some(kind), "{host}");
            assert_eq!(
                route_id(&format!("{host}/project/repo/image")),
                Some("google")
            );
        }
    }
    #[test]
    fn google_look_alikes_get_nothing() {
        for host in [
            "gcr.io.evil.com",
            "evilgcr.io",
            "a.b.gcr.io", // `*.gcr.io` is one label, as in the kubelet's globs
            ".gcr.io",
            "-x.gcr.io",
            "US.gcr.io",
            "gcr.io.",
            "pkg.dev",
            "xpkg.dev",
            "docker.pkg.dev",
            "-docker.pkg.dev",
            "foo.pkg.dev", // not a Docker repository host
            "us-maven.pkg.dev",
            "us-docker.pkg.dev.evil.io",
            "us.docker.pkg.dev",
            "1us-docker.pkg.dev",
            "docker.us-central1.rep.pkg.dev.evil",
            "docker.rep.pkg.dev",
            "docker..rep.pkg.dev",
            "maven.us-central1.rep.pkg.dev",
            "docker.a.b.rep.pkg.dev",
            "us-central1.rep.pkg.dev",
            "container.cloud.google.com.evil.io",
            "evil.container.cloud.google.com",
            "cloud.google.com",
        ] {
            assert_eq!(parse_google_host(host), None, "{host} must not be Google");
        }
        assert_eq!(route_id("evil.com/gcr.io/x"), None);
        assert_eq!(route_id("evil.com/us-docker.pkg.dev/p/r/i"), None);
        assert_eq!(route_id("gcr.io:443/x"), None);
    }
}
