//! An external account's `credential_source`: where the subject token comes
//! from. Its own file, as both `external` (files, URLs) and `sigv4` (AWS)
//! read it and neither owns the other.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
pub struct CredentialSource {
    #[serde(default)]
    pub file: Option<String>,
    /// The subject token URL, or for `aws1` the security-credentials URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Values are not printed: they may carry a bearer token.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Secret>>,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub region_url: Option<String>,
    #[serde(default)]
    pub regional_cred_verification_url: Option<String>,
    #[serde(default)]
    pub imdsv2_session_token_url: Option<String>,
    #[serde(default)]
    pub executable: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Format {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub subject_token_field_name: Option<String>,
}
