//! Where credentials come from. Each source turns a resolved [`Target`] into a
//! [`Fetched`] credential; only this module and its children initialise cloud
//! SDKs or an async runtime, and only on a cache miss.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod dockerconfig;
#[cfg(feature = "gcp")]
pub mod gcp;
#[cfg(feature = "static")]
pub mod registry_check;

use std::path::PathBuf;

use crate::deadline::Deadline;
use crate::registry::{AcrMirror, Target};
use crate::secret::Secret;
use crate::workload::Workload;

/// Azure settings from flags and environment (the rest of Azure's identity
/// comes from the standard `AZURE_*` variables; see `sources::azure`).
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// `--mirror SOURCE=ACR`, `PULLCRED_ACR_MIRRORS`.
    pub mirrors: Vec<AcrMirror>,
    /// `--azure-config`, `PULLCRED_AZURE_CONFIG`: AKS's azure.json. `None`:
    /// `/etc/kubernetes/azure.json` when it exists; `none`: no file.
    pub config: Option<PathBuf>,
}

/// A credential fresh from upstream.
#[derive(Debug)]
pub struct Fetched {
    pub username: String,
    pub password: Secret,
    /// Unix seconds, as upstream stated it.
    pub expires_at: i64,
}

/// A failed fetch: which step, and what upstream or the transport said.
/// Never contains a secret.
#[derive(Debug)]
pub struct SourceError {
    pub step: String,
    pub detail: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

impl std::error::Error for SourceError {}

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

/// Fetches a credential for `target` within `deadline`: with the pod's own
/// identity when `workload` is given, else with the node's.
pub fn fetch(
    target: &Target,
    azure: &AzureSettings,
    workload: Option<&Workload>,
    deadline: &Deadline,
) -> Result<Fetched, SourceError> {
    match target {
        #[cfg(feature = "azure")]
        Target::Acr(reg) => match workload {
            Some(w) => azure::fetch_for_workload(reg, azure, w, deadline),
            None => azure::fetch(reg, azure, deadline),
        },
        #[cfg(not(feature = "azure"))]
        Target::Acr(_) => {
            let _ = (azure, deadline, workload);
            Err(SourceError {
                step: "ACR".into(),
                detail: "this pullcred was built without the `azure` feature".into(),
            })
        }
        #[cfg(feature = "aws")]
        Target::EcrPrivate(_) | Target::EcrPublic => aws::fetch(target, workload, deadline),
        #[cfg(not(feature = "aws"))]
        Target::EcrPrivate(_) | Target::EcrPublic => {
            let _ = (deadline, workload);
            Err(SourceError {
                step: "ECR".into(),
                detail: "this pullcred was built without the `aws` feature".into(),
            })
        }
        #[cfg(feature = "gcp")]
        Target::Google(_) => match workload {
            Some(w) => gcp::fetch_for_workload(w, deadline),
            None => gcp::fetch(deadline),
        },
        #[cfg(not(feature = "gcp"))]
        Target::Google(_) => Err(SourceError {
            step: "Google".into(),
            detail: "this pullcred was built without the `gcp` feature".into(),
        }),
    }
}

/// ECR's `authorizationToken` is base64 of `AWS:<password>`; `expires_at` is
/// unix seconds. Pure, so the fuzzer reaches it without the SDK.
pub fn decode_ecr_token(token: Option<&str>, expires_at: Option<i64>) -> Result<Fetched, String> {
    use base64::Engine;
    let token = token.ok_or("authorizationData has no authorizationToken")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "authorizationToken is not base64".to_string())?;
    let text = String::from_utf8(raw).map_err(|_| "authorizationToken is not UTF-8".to_string())?;
    let (user, pass) = text
        .split_once(':')
        .ok_or("authorizationToken is not user:password")?;
    if user.is_empty() || pass.is_empty() {
        return Err("authorizationToken has an empty user or password".into());
    }
    let expires_at = expires_at.ok_or("authorizationData has no expiresAt")?;
    Ok(Fetched {
        username: user.to_string(),
        password: Secret::new(pass),
        expires_at,
    })
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
