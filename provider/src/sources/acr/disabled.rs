//! Stand-in for [`azure`](self) in a build without the `azure` feature: ACR
//! hosts (and `--mirror` sources mapped to them) are still recognised, and their fetch says
//! what is missing.

use super::AcrRegistry;
use crate::deadline::Deadline;
use crate::settings::AzureSettings;
use crate::sources::{Fetched, SourceError};
use crate::workload::Workload;

pub fn fetch(_: &AcrRegistry, _: &AzureSettings, _: &Deadline) -> Result<Fetched, SourceError> {
    Err(SourceError::not_built("ACR", "azure"))
}

pub fn fetch_for_workload(
    r: &AcrRegistry,
    s: &AzureSettings,
    _: &Workload,
    d: &Deadline,
) -> Result<Fetched, SourceError> {
    fetch(r, s, d)
}

/// No Azure client: nothing of its configuration decides the credential.
pub fn cache_parts(_: &AcrRegistry, _: &AzureSettings) -> Vec<(&'static str, String)> {
    Vec::new()
}

pub fn describe_identity(_: &AzureSettings) -> String {
    "none: this pullcred was built without the `azure` feature".to_string()
}

/// Without the exchange, the ACR is reached as any registry.
#[cfg(feature = "static")]
pub fn registry_api(login_server: &str) -> Result<String, SourceError> {
    Ok(crate::sources::registry_check::api_base(login_server))
}

#[cfg(feature = "static")]
pub fn realm_url(_: &str, registry_api: &str, realm: &str) -> Result<String, String> {
    crate::sources::registry_check::credential_realm(registry_api, realm).map(|r| r.url())
}
