//! Azure Container Registry: an Entra token for the node's (or the pod's)
//! identity, traded for an ACR refresh token per registry.
//!
//! This module owns the ACR host grammar (`<reg>.azurecr.io` and the China
//! and US Government suffixes, geo-replicas, data-endpoint names), the
//! per-pod rules (KEP-4412:
//! `kubernetes.azure.com/acr-client-id` and `acr-tenant-id`), the cache-key
//! parts (per registry: refresh tokens are) and what `doctor` says. The
//! exchange is in [`azure`]; a build without the `azure` feature gets
//! `disabled.rs` in its place.

#[cfg_attr(not(feature = "azure"), path = "disabled.rs")]
pub mod azure;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Credential, FetchContext, Route, Source, SourceError, token_key};
use crate::image::ImageRef;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{
    Identity, IdentityKind, PodRules, ServiceAccount, Workload, annotation, first_set,
};

pub use kubelet_config::sources::{AZURE_CLIENT_ANNOTATION, AZURE_TENANT_ANNOTATION};

/// ACR hosts (a `--mirror` target among them: see `sources::mirror`).
pub struct Acr;

impl Source for Acr {
    fn route(&self, image: &ImageRef, _: &Options) -> Option<Box<dyn Route>> {
        registry(image).map(|r| Box::new(AcrRoute(r)) as Box<dyn Route>)
    }
}

/// The ACR that serves `image`; ACR hosts keep their port, which is part of
/// the login server.
fn registry(image: &ImageRef) -> Option<AcrRegistry> {
    parse_acr_host(image.host()).map(|_| AcrRegistry {
        login_server: image.registry.clone(),
    })
}

#[derive(Debug)]
struct AcrRoute(AcrRegistry);

impl Route for AcrRoute {
    fn id(&self) -> &'static str {
        "acr"
    }

    fn describe(&self, _: &ImageRef) -> String {
        format!("Azure Container Registry {}", self.0.login_server)
    }

    fn node_identity(&self, opts: &Options) -> String {
        azure::describe_identity(&opts.azure)
    }

    /// ACR refresh tokens are per registry: keyed by host.
    fn cache_parts(
        &self,
        image: &ImageRef,
        opts: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        token_key(
            "acr",
            vec![("registry", image.registry.clone())],
            workload,
            azure::cache_parts(&self.0, &opts.azure),
        )
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        Some(&AzureRules)
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        match ctx.workload {
            Some(w) => azure::fetch_for_workload(&self.0, &ctx.opts.azure, w, ctx.deadline),
            None => azure::fetch(&self.0, &ctx.opts.azure, ctx.deadline),
        }
        .map(Credential::Token)
    }

    /// The ACR's API as the fetch reaches it (`PULLCRED_ACR_ENDPOINTS`).
    #[cfg(feature = "static")]
    fn registry_api(&self, _: &ImageRef) -> Result<String, String> {
        azure::registry_api(&self.0.login_server).map_err(|e| e.to_string())
    }

    /// A realm gets the Entra-minted credentials under the ACR exchange's rule.
    #[cfg(feature = "static")]
    fn realm_url(&self, registry_api: &str, realm: &str) -> Result<String, String> {
        azure::realm_url(&self.0.login_server, registry_api, realm)
    }
}

/// The Azure client a pod's service account asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureClient {
    pub client_id: String,
    pub tenant: Option<String>,
}

impl Identity for AzureClient {
    fn describe(&self) -> String {
        match &self.tenant {
            Some(t) => format!("client {} in tenant {t}", self.client_id),
            None => format!("client {} in the node's tenant", self.client_id),
        }
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sa-azure-client", self.client_id.clone()),
            ("sa-azure-tenant", self.tenant.clone().unwrap_or_default()),
        ]
    }

    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        Some((IdentityKind::EntraClientId, self.client_id.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Azure's per-pod rules: the pod's token as the client assertion.
struct AzureRules;

impl PodRules for AzureRules {
    fn naming_annotation(
        &self,
        annotations: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Option<&'static str> {
        first_set(annotations, &[AZURE_CLIENT_ANNOTATION])
    }

    fn identity(
        &self,
        _: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        _: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(azure_client(annotations).map(|c| Arc::new(c) as Arc<dyn Identity>))
    }

    fn missing_hint(&self, _: &WorkloadSettings) -> String {
        format!(
            "annotate it with {AZURE_CLIENT_ANNOTATION} (and {AZURE_TENANT_ANNOTATION} unless the node's tenant applies)"
        )
    }
}

fn azure_client(annotations: &BTreeMap<String, String>) -> Option<AzureClient> {
    let client_id = annotation(annotations, AZURE_CLIENT_ANNOTATION)?.to_string();
    Some(AzureClient {
        client_id,
        tenant: annotation(annotations, AZURE_TENANT_ANNOTATION).map(str::to_string),
    })
}

// ---------------------------------------------------------------- hosts

/// An Azure Container Registry the image is pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrRegistry {
    /// The registry we authenticate against, `host[:port]`, e.g. `myreg.azurecr.io`.
    pub login_server: String,
}

/// ACR's DNS suffixes: public, China, US Government. Not `azurecr.de`:
/// Microsoft Cloud Germany was closed on 2021-10-29, and an Entra token must
/// not go to a suffix no live Azure cloud serves.
pub const ACR_SUFFIXES: [&str; 3] = kubelet_config::sources::ACR_SUFFIXES;

/// The parts of an ACR host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrHost<'a> {
    /// The registry name, e.g. `myreg` of `myreg-abc123.azurecr.io`.
    pub name: &'a str,
    /// The domain-name-label hash of a hyphenated data-endpoint name.
    pub hash: Option<&'a str>,
    /// The region of a geo-replica host, `<reg>.<region>.geo.azurecr.io`.
    pub region: Option<&'a str>,
    pub suffix: &'static str,
}

/// Anchored ACR host grammar (lowercase, no port, no trailing dot):
///
/// - `<reg>.<suffix>` for each of [`ACR_SUFFIXES`];
/// - `<reg>.<region>.geo.azurecr.io` (geo-replica);
/// - `<reg>` may be `<name>-<hash>` (domain-name-label scope).
///
/// `<name>` is 1 to 50 letters and digits (Azure allows 5 to 50; the anchor's
/// vectors use `foo`), `<hash>` 1 to 32, `<region>` 1 to 40.
pub fn parse_acr_host(host: &str) -> Option<AcrHost<'_>> {
    let (label, rest) = host.split_once('.')?;
    let (name, hash) = match label.split_once('-') {
        Some((n, h)) => (n, Some(h)),
        None => (label, None),
    };
    if !alnum(name, 50) || !hash.is_none_or(|h| alnum(h, 32)) {
        return None;
    }
    if let Some(suffix) = ACR_SUFFIXES.iter().find(|s| **s == rest) {
        return Some(AcrHost {
            name,
            hash,
            region: None,
            suffix,
        });
    }
    let (region, geo) = rest.split_once('.')?;
    if geo != "geo.azurecr.io" || !alnum(region, 40) {
        return None;
    }
    Some(AcrHost {
        name,
        hash,
        region: Some(region),
        suffix: ACR_SUFFIXES[0],
    })
}

fn alnum(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../../../tests/vectors/registry-hosts.json");

    fn target(image: &str) -> Option<AcrRegistry> {
        registry(&ImageRef::parse(image).unwrap())
    }

    fn login_server(t: Option<AcrRegistry>) -> Option<String> {
        t.map(|r| r.login_server)
    }

    // Vectors restated from kubernetes-sigs/cloud-provider-azure
    // pkg/credentialprovider (azure_credentials_test.go), via
    // tests/vectors/registry-hosts.json.
    #[test]
    fn every_match_vector_routes_to_its_login_server() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for pair in v["acr_match"].as_array().unwrap() {
            let (image, want) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if image.contains('/') {
                assert_eq!(
                    login_server(target(image)).as_deref(),
                    Some(want),
                    "{image}"
                );
            } else {
                // A bare `foo.azurecr.io` is, as an image, a Docker Hub
                // repository; as a host it is ACR.
                assert!(parse_acr_host(image).is_some(), "{image}");
            }
        }
    }

    #[test]
    fn every_not_vector_gets_nothing() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for s in v["acr_not"].as_array().unwrap() {
            let s = s.as_str().unwrap();
            if let Ok(image) = ImageRef::parse(s) {
                assert_eq!(login_server(registry(&image)), None, "{s}");
            }
            assert_eq!(parse_acr_host(s), None, "{s}");
        }
    }

    #[test]
    fn geo_replicas_and_data_endpoint_names() {
        let h = parse_acr_host("myreg.westeurope.geo.azurecr.io").unwrap();
        assert_eq!(
            (h.name, h.region, h.hash),
            ("myreg", Some("westeurope"), None)
        );
        let h = parse_acr_host("myreg-e0cdbvd7abcdefgh.azurecr.io").unwrap();
        assert_eq!((h.name, h.hash), ("myreg", Some("e0cdbvd7abcdefgh")));
        let h = parse_acr_host("myreg-abc123.eastus.geo.azurecr.io").unwrap();
        assert_eq!((h.hash, h.region), (Some("abc123"), Some("eastus")));
        assert_eq!(
            parse_acr_host("myreg.azurecr.us").unwrap().suffix,
            "azurecr.us"
        );
        assert_eq!(
            login_server(target("myreg.eastus2.geo.azurecr.io/app/web")).as_deref(),
            Some("myreg.eastus2.geo.azurecr.io")
        );
    }

    #[test]
    fn ports_are_kept_in_the_login_server() {
        assert_eq!(
            login_server(target("myreg.azurecr.io:443/app")).as_deref(),
            Some("myreg.azurecr.io:443")
        );
        assert_eq!(
            login_server(target("myreg.westus.geo.azurecr.io:8443/app")).as_deref(),
            Some("myreg.westus.geo.azurecr.io:8443")
        );
    }

    #[test]
    fn acr_look_alikes_get_nothing() {
        for host in [
            "foo.azurecr.io.example",
            "foo.azurecr.io.azurecr.cn",
            "foo-azurecr-io.azurecr.cn",
            "azurecr.io",
            ".azurecr.io",
            "-abc.azurecr.io",
            "foo-.azurecr.io",
            "foo.bar.azurecr.io",
            "foo.azurecr.com",
            "foo.azurecr.io.",
            "FOO.azurecr.io",
            "foo.AZURECR.IO",
            "foo_bar.azurecr.io",
            "foo.westus.geo.azurecr.cn",
            "foo.west-us.geo.azurecr.io",
            "foo..geo.azurecr.io",
            "foo.a.b.geo.azurecr.io",
            "foo.westus.geo.azurecr.io.evil.io",
            "foo.westus.data.azurecr.io",
            &format!("{}.azurecr.io", "a".repeat(51)),
        ] {
            assert_eq!(parse_acr_host(host), None, "{host} must not be ACR");
        }
        assert!(target("docker/foo.azurecr.io/bar").is_none());
        assert!(target("evil.io/foo.azurecr.io/bar").is_none());
        assert!(target("foo.azurecr.io.example/bar").is_none());
    }
}
