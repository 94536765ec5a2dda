//! The kubelet's wire format: `CredentialProviderRequest` in, `CredentialProviderResponse` out.
//!
//! Decoding is a pure function on bytes. The rules, from the kubelet's side of
//! the contract:
//! - `apiVersion` is one of `credentialprovider.kubelet.k8s.io/{v1,v1beta1,v1alpha1}`
//!   and the response repeats it exactly;
//! - `kind` is `CredentialProviderRequest`;
//! - `image` is set and not empty;
//! - unknown request fields are tolerated (newer kubelets add fields);
//! - `serviceAccountToken` and `serviceAccountAnnotations` exist only in v1.
//!
//! The response is encoded with exactly the fields the kubelet's strict decoder
//! knows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub const GROUP: &str = "credentialprovider.kubelet.k8s.io";
pub const API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// Read at most this much of stdin; a request is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub api_version: String,
    pub image: String,
    pub service_account_token: Option<Secret>,
    pub service_account_annotations: BTreeMap<String, String>,
}

#[derive(Debug)]
pub enum DecodeError {
    Empty,
    TooLarge,
    Json(String),
    Kind(String),
    ApiVersion(String),
    MissingImage,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => {
                f.write_str("stdin was empty; expected a CredentialProviderRequest JSON object")
            }
            DecodeError::TooLarge => write!(
                f,
                "stdin exceeds {MAX_REQUEST_BYTES} bytes; not a CredentialProviderRequest"
            ),
            DecodeError::Json(why) => write!(f, "request is not valid JSON: {why}"),
            DecodeError::Kind(k) => write!(
                f,
                "request kind is {k:?}, expected \"CredentialProviderRequest\""
            ),
            DecodeError::ApiVersion(v) => write!(
                f,
                "request apiVersion {v:?} is not supported (supported: {})",
                API_VERSIONS.join(", ")
            ),
            DecodeError::MissingImage => f.write_str("request has no image"),
        }
    }
}

impl std::error::Error for DecodeError {}

// Only the fields we read; serde ignores the rest, as newer kubelets add fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    api_version: Option<String>,
    kind: Option<String>,
    image: Option<String>,
    service_account_token: Option<Secret>,
    service_account_annotations: Option<BTreeMap<String, String>>,
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(DecodeError::TooLarge);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let raw: RawRequest = serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's messages quote no input beyond a type name, so they are
        // safe to show; keep them on one line.
        DecodeError::Json(e.to_string().replace('\n', " "))
    })?;
    let kind = raw.kind.unwrap_or_default();
    if kind != "CredentialProviderRequest" {
        return Err(DecodeError::Kind(truncate(&kind)));
    }
    let api_version = raw.api_version.unwrap_or_default();
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(DecodeError::ApiVersion(truncate(&api_version)));
    }
    let image = raw.image.unwrap_or_default();
    if image.is_empty() {
        return Err(DecodeError::MissingImage);
    }
    let is_v1 = api_version == API_VERSIONS[0];
    Ok(Request {
        image,
        service_account_token: if is_v1 {
            raw.service_account_token.filter(|t| !t.is_empty())
        } else {
            None
        },
        service_account_annotations: if is_v1 {
            raw.service_account_annotations.unwrap_or_default()
        } else {
            BTreeMap::new()
        },
        api_version,
    })
}

/// Quote at most 100 chars of untrusted input in an error message.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub api_version: String,
    pub kind: &'static str,
    pub cache_key_type: CacheKeyType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    pub auth: BTreeMap<String, AuthConfig>,
}

impl Response {
    pub fn new(
        api_version: &str,
        cache_key_type: CacheKeyType,
        cache_duration: Duration,
        auth: BTreeMap<String, AuthConfig>,
    ) -> Self {
        Response {
            api_version: api_version.to_string(),
            kind: "CredentialProviderResponse",
            cache_key_type,
            cache_duration: Some(go_duration(cache_duration)),
            auth,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("response serialises")
    }
}

/// Formats whole seconds the way Go's `time.Duration.String` does:
/// `0s`, `45s`, `1m30s`, `11h0m0s`.
pub fn go_duration(d: Duration) -> String {
    // Whole seconds, as Go prints them (`kubelet_config::duration` owns the format).
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 1_000_000_000);
    kubelet_config::duration::GoDuration::from_secs(secs).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<Request, DecodeError> {
        decode_request(json.as_bytes())
    }

    #[test]
    fn accepts_every_supported_api_version() {
        for v in API_VERSIONS {
            let r = req(&format!(
                r#"{{"apiVersion":"{v}","kind":"CredentialProviderRequest","image":"docker.io/library/nginx"}}"#
            ))
            .unwrap();
            assert_eq!(r.api_version, v);
            assert_eq!(r.image, "docker.io/library/nginx");
        }
    }

    #[test]
    fn tolerates_unknown_fields_and_trailing_newline() {
        let r = req(concat!(
            r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","#,
            r#""image":"a.io/b","someFutureField":{"x":[1,2]}}"#,
            "\n"
        ))
        .unwrap();
        assert_eq!(r.image, "a.io/b");
    }

    #[test]
    fn service_account_fields_only_in_v1() {
        let body = |v: &str| {
            format!(
                r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/{v}","kind":"CredentialProviderRequest","image":"a.io/b","serviceAccountToken":"tok","serviceAccountAnnotations":{{"k":"v"}}}}"#
            )
        };
        let v1 = req(&body("v1")).unwrap();
        assert_eq!(v1.service_account_token.unwrap().expose(), "tok");
        assert_eq!(v1.service_account_annotations["k"], "v");
        let beta = req(&body("v1beta1")).unwrap();
        assert!(beta.service_account_token.is_none());
        assert!(beta.service_account_annotations.is_empty());
    }

    #[test]
    fn rejects_bad_requests() {
        assert!(matches!(req(""), Err(DecodeError::Empty)));
        assert!(matches!(req(" \n"), Err(DecodeError::Empty)));
        assert!(matches!(req("{"), Err(DecodeError::Json(_))));
        assert!(matches!(req("[]"), Err(DecodeError::Json(_))));
        assert!(matches!(
            req(
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"Pod","image":"a.io/b"}"#
            ),
            Err(DecodeError::Kind(_))
        ));
        assert!(matches!(
            req(
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v2","kind":"CredentialProviderRequest","image":"a.io/b"}"#
            ),
            Err(DecodeError::ApiVersion(_))
        ));
        assert!(matches!(
            req(r#"{"kind":"CredentialProviderRequest","image":"a.io/b"}"#),
            Err(DecodeError::ApiVersion(_))
        ));
        assert!(matches!(
            req(
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":""}"#
            ),
            Err(DecodeError::MissingImage)
        ));
        assert!(matches!(
            req(
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#
            ),
            Err(DecodeError::MissingImage)
        ));
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(decode_request(&huge), Err(DecodeError::TooLarge)));
    }

    #[test]
    fn errors_do_not_echo_long_input() {
        let long_kind = "k".repeat(5000);
        let e = req(&format!(
            r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"{long_kind}","image":"a"}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().len() < 300);
    }

    #[test]
    fn go_duration_matches_go_formatting() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(11 * 3600 + 61)), "11h1m1s");
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }

    #[test]
    fn response_has_exactly_the_kubelet_fields() {
        let mut auth = BTreeMap::new();
        auth.insert(
            "r.io".to_string(),
            AuthConfig {
                username: "AWS".into(),
                password: Secret::new("pw"),
            },
        );
        let r = Response::new(
            API_VERSIONS[1],
            CacheKeyType::Registry,
            Duration::from_secs(90),
            auth,
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1beta1",
                "kind": "CredentialProviderResponse",
                "cacheKeyType": "Registry",
                "cacheDuration": "1m30s",
                "auth": {"r.io": {"username": "AWS", "password": "pw"}}
            })
        );
    }
}
