//! Google Artifact Registry and Container Registry: an OAuth 2.0 access token
//! for the node's Google identity, user name `oauth2accesstoken`.
//!
//! Credentials are found in Google's Application Default Credentials order:
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS` names a JSON file:
//!    - `service_account`: a key file. A JWT signed with its RSA key (RS256) is
//!      exchanged at the file's `token_uri` ([`jwt`]);
//!    - `external_account`: workload identity federation. A subject token from
//!      a file, a URL or AWS (a signed `GetCallerIdentity` request) is
//!      exchanged at Google STS, then optionally for a service account's token
//!      ([`external`], [`sigv4`]).
//!
//!    The file must be ours, not a symlink, and closed to other users: it may
//!    hold a private key.
//! 2. Otherwise the metadata server (GCE, GKE): `GCE_METADATA_HOST` overrides
//!    `metadata.google.internal`, as Google's own libraries allow.
//!
//! The answer's real expiry (`expires_in`, or `expireTime` for impersonation)
//! becomes [`Fetched::expires_at`]; the cache and `cacheDuration` follow from it.
//!
//! For a pod's own identity (KEP-4412) see [`fetch_for_workload`]: the pod's
//! service-account token is the STS subject token.
//!
//! Every call is plain HTTP(S) through [`crate::http`]: no async runtime. No
//! error or log line holds a token, a key, an assertion or a response body;
//! upstream errors are reduced to their OAuth `error` / `error_description`.

mod credential_source;
mod external;
mod jwt;
mod sigv4;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Audience, GOOGLE_AUDIENCE_ANNOTATION, GoogleIdentity};
use crate::deadline::Deadline;
use crate::encode::{hex, percent_encode};
use crate::http::{self, Client, HttpError, HttpErrorKind, Response};
use crate::private_file::{self, Limits};
use crate::secret::Secret;
use crate::sources::{Fetched, SourceError};
use crate::workload::Workload;

/// Google's documented user name for access tokens on registries.
pub const USERNAME: &str = "oauth2accesstoken";
pub const CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";
/// Comma- or space-separated OAuth scopes; replaces [`DEFAULT_SCOPE`] for key
/// files and federation, and is passed to the metadata server (which otherwise
/// uses the instance's own scopes).
pub const SCOPES_ENV: &str = "PULLCRED_GOOGLE_SCOPES";
pub const DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const METADATA_DEFAULT_HOST: &str = "metadata.google.internal";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Each metadata server attempt gets this long: it answers in milliseconds
/// when it is there at all.
const METADATA_ATTEMPT: Duration = Duration::from_secs(3);
const METADATA_ATTEMPTS: u32 = 4;
/// Attempts at token endpoints (retried on 5xx, 429 and connection failures).
const TOKEN_ATTEMPTS: u32 = 4;
/// Credentials files are small; anything bigger is not one.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Fetches an access token within `deadline`.
pub fn fetch(deadline: &Deadline) -> Result<Fetched, SourceError> {
    let scopes = scopes();
    let (password, expires_at) = match std::env::var_os(CREDENTIALS_ENV) {
        Some(p) if !p.is_empty() => from_file(Path::new(&p), &scopes, deadline)?,
        _ => metadata_token(deadline)?,
    };
    if password.is_empty() {
        return Err(SourceError::new(
            "google access token",
            "upstream answered with an empty access token",
        ));
    }
    Ok(Fetched {
        username: USERNAME.to_string(),
        password,
        expires_at,
    })
}

/// Where Google STS is (default `https://sts.googleapis.com/v1/token`).
pub const STS_URL_ENV: &str = "PULLCRED_GOOGLE_STS_URL";
/// Where IAM Credentials is (default `https://iamcredentials.googleapis.com`).
pub const IAM_CREDENTIALS_URL_ENV: &str = "PULLCRED_GOOGLE_IAM_CREDENTIALS_URL";
const DEFAULT_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";
/// RFC 8693's type for a JWT subject token (a Kubernetes service-account token).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A pod's own Google identity (KEP-4412): its service-account token is
/// exchanged at Google STS for a federated access token of the workload
/// identity pool's audience, then, when a Google service account is named,
/// for that account's token (`generateAccessToken`). On GKE the audience is
/// the cluster's workload pool, read from the metadata server.
pub fn fetch_for_workload(w: &Workload, deadline: &Deadline) -> Result<Fetched, SourceError> {
    let Some(GoogleIdentity {
        audience,
        impersonate,
    }) = w.identity.as_any().downcast_ref::<GoogleIdentity>()
    else {
        return Err(SourceError::new(
            "Google",
            format!("{} names no Google identity", w.account),
        ));
    };
    let audience = match audience {
        Audience::Given(a) => a.clone(),
        Audience::GkeMetadata => gke_audience(deadline)?,
    };
    let sts = env_url(STS_URL_ENV)?.unwrap_or_else(|| external::DEFAULT_STS_URL.to_string());
    let iam = env_url(IAM_CREDENTIALS_URL_ENV)?.unwrap_or_else(|| DEFAULT_IAM_CREDENTIALS.into());
    let impersonation = impersonate.as_ref().map(|sa| {
        format!(
            "{}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
            iam.trim_end_matches('/')
        )
    });
    tracing::debug!(account = %w.account, %audience, "exchanging a service-account token at Google STS");
    let account =
        external::ExternalAccount::for_subject(audience, JWT_TOKEN_TYPE, sts, impersonation);
    let (password, expires_at) =
        account
            .exchange(&w.token, &scopes(), deadline)
            .map_err(|mut e| {
                e.step = format!("{} for {}", e.step, w.account);
                e
            })?;
    if password.is_empty() {
        return Err(SourceError::new(
            format!("google access token for {}", w.account),
            "upstream answered with an empty access token",
        ));
    }
    Ok(Fetched {
        username: USERNAME.to_string(),
        password,
        expires_at,
    })
}

/// An endpoint override from the environment; it receives the pod's token
/// or a federated token, so https, or http to loopback only.
fn env_url(name: &str) -> Result<Option<String>, SourceError> {
    let Some(v) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let v = v.trim().to_string();
    crate::endpoint::secret_destination(&v, name)
        .map_err(|detail| SourceError::new(format!("reading {name}"), detail))?;
    Ok(Some(v))
}

/// GKE's workload pool audience, from the metadata server:
/// `identitynamespace:<project>.svc.id.goog:https://container.googleapis.com/v1/projects/<project>/locations/<location>/clusters/<cluster>`.
fn gke_audience(deadline: &Deadline) -> Result<String, SourceError> {
    let project = metadata_value("project/project-id", deadline)?;
    let location = metadata_value("instance/attributes/cluster-location", deadline)?;
    let cluster = metadata_value("instance/attributes/cluster-name", deadline)?;
    Ok(format!(
        "identitynamespace:{project}.svc.id.goog:https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{cluster}"
    ))
}

/// One plain-text metadata value (`/computeMetadata/v1/<path>`).
fn metadata_value(path: &str, deadline: &Deadline) -> Result<String, SourceError> {
    let url = format!("{}/computeMetadata/v1/{path}", metadata_base());
    let step = format!("google metadata server {path} ({url}), for the GKE workload pool audience");
    let fail = |detail: String| {
        SourceError::new(
            step.clone(),
            format!(
                "{detail}; not on GKE? set --google-audience or the {} annotation",
                GOOGLE_AUDIENCE_ANNOTATION
            ),
        )
    };
    let resp =
        metadata_get(&url, deadline).map_err(|e| fail(http::describe_error(&e, deadline)))?;
    metadata_answered(&resp).map_err(fail)?;
    let v = String::from_utf8_lossy(&resp.body).trim().to_string();
    if v.is_empty() || v.len() > 256 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("an empty or malformed value".into()));
    }
    Ok(v)
}

/// The facts that decide which Google identity answers, for the cache key:
/// the credentials file's path and a SHA-256 of its content (a rotated key
/// is a new entry), the metadata server address and the scopes.
pub fn cache_parts() -> Vec<(&'static str, String)> {
    let mut parts = Vec::new();
    if let Some(p) = std::env::var_os(CREDENTIALS_ENV).filter(|p| !p.is_empty()) {
        let digest = match read_private(Path::new(&p)) {
            Ok(bytes) => hex(&Sha256::digest(&bytes)),
            Err(_) => "unreadable".to_string(),
        };
        parts.push((CREDENTIALS_ENV, p.to_string_lossy().into_owned()));
        parts.push(("google-credentials-sha256", digest));
    }
    for name in [METADATA_HOST_ENV, STS_URL_ENV, IAM_CREDENTIALS_URL_ENV] {
        if let Some(h) = std::env::var_os(name) {
            parts.push((name, h.to_string_lossy().into_owned()));
        }
    }
    // As configured, not as defaulted: the metadata server's default is the
    // instance's scopes, which an explicit list may differ from.
    parts.push(("google-scopes", configured_scopes().join(" ")));
    parts
}

/// Scopes from [`SCOPES_ENV`], or none (the default applies).
fn configured_scopes() -> Vec<String> {
    std::env::var(SCOPES_ENV)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn scopes() -> Vec<String> {
    let s = configured_scopes();
    if s.is_empty() {
        vec![DEFAULT_SCOPE.to_string()]
    } else {
        s
    }
}

// ---------------------------------------------------------------- metadata

pub fn metadata_url() -> String {
    format!("{}{METADATA_TOKEN_PATH}", metadata_base())
}

fn metadata_base() -> String {
    let host = std::env::var(METADATA_HOST_ENV)
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| METADATA_DEFAULT_HOST.to_string());
    format!("http://{}", host.trim())
}

fn metadata_token(deadline: &Deadline) -> Result<(Secret, i64), SourceError> {
    let base = metadata_url();
    let step = format!("google metadata server token ({base})");
    let fail = SourceError::at(&step);
    let scopes = configured_scopes();
    let url = if scopes.is_empty() {
        base.clone()
    } else {
        format!("{base}?scopes={}", percent_encode(&scopes.join(",")))
    };
    tracing::debug!(url = %base, "asking the metadata server for a token");
    let resp = metadata_get(&url, deadline).map_err(|e| {
        let mut d = http::describe_error(&e, deadline);
        if std::env::var_os(METADATA_HOST_ENV).is_none() && e.kind != HttpErrorKind::Timeout {
            d.push_str(&format!(
                " (not a GCE or GKE node? set {CREDENTIALS_ENV} to a key or workload identity federation file)"
            ));
        }
        fail(d)
    })?;
    metadata_answered(&resp).map_err(fail)?;
    parse_token_response(&resp.body, deadline.now_unix()).map_err(fail)
}

/// A GET of the metadata server, with its header, retried as it needs.
/// Never through a proxy: a proxy must not see, or answer, a token request.
fn metadata_get(url: &str, deadline: &Deadline) -> Result<Response, HttpError> {
    // Each attempt has its own short deadline (inside the run's), and one
    // that times out is tried again: a metadata server that stalls once is
    // common.
    http::retry_each(
        deadline,
        METADATA_ATTEMPTS,
        Some(METADATA_ATTEMPT),
        |attempt_deadline| {
            Client::direct(attempt_deadline).get(url, &[("Metadata-Flavor", "Google")])
        },
    )
}

/// A 2xx from a metadata server (`Metadata-Flavor: Google`), or why not.
fn metadata_answered(resp: &Response) -> Result<(), String> {
    if !resp.is_success() {
        return Err(http::status_detail(resp));
    }
    if resp.header("metadata-flavor") != Some("Google") {
        return Err(format!(
            "HTTP {}: the answer lacks the `Metadata-Flavor: Google` header, so it is not from a metadata server",
            resp.status
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- the file

#[derive(Deserialize)]
struct FileType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn from_file(
    path: &Path,
    scopes: &[String],
    deadline: &Deadline,
) -> Result<(Secret, i64), SourceError> {
    let file_step = format!("google credentials file ({})", path.display());
    let fail = SourceError::at(&file_step);
    let bytes = read_private(path).map_err(fail)?;
    let kind: FileType = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("not JSON ({})", crate::error::json_position(&e))))?;
    match kind.kind.as_deref() {
        Some("service_account") => {
            let key = jwt::ServiceAccountKey::parse(&bytes).map_err(fail)?;
            key.fetch(scopes, deadline)
        }
        Some("external_account") => {
            let account = external::ExternalAccount::parse(&bytes).map_err(fail)?;
            account.fetch(scopes, deadline)
        }
        Some(other) => Err(fail(format!(
            "credentials of type {other:?} are not supported (want service_account or external_account)"
        ))),
        None => Err(fail("has no \"type\" field".into())),
    }
}

/// Reads a credentials file that may hold a private key through one handle:
/// a regular file, not a symlink, owned by the user running pullcred, closed
/// to other users (see [`crate::private_file`]).
fn read_private(path: &Path) -> Result<Vec<u8>, String> {
    private_file::open_regular(path, Limits::private(MAX_FILE_BYTES)).map_err(|e| e.to_string())
}

/// Reads a subject token file of at most [`MAX_FILE_BYTES`]: a regular file,
/// through one handle; symlinks are followed, as a projected token is one.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    private_file::open_regular(path, Limits::shared(MAX_FILE_BYTES)).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------- answers

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Secret>,
    expires_in: Option<serde_json::Value>,
}

/// `{"access_token", "expires_in", "token_type"}` from the metadata server,
/// the OAuth token endpoint or STS. `expires_in` decides the cache:
/// missing, negative or unreadable is an error (the token's life would be a
/// guess); `0` gives an already-expired token, served once and not cached;
/// a huge value saturates (the cache caps it at 12h).
pub fn parse_token_response(body: &[u8], now: i64) -> Result<(Secret, i64), String> {
    let r: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable token response ({})",
            crate::error::json_position(&e)
        )
    })?;
    let token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token response has no access_token")?;
    let secs = expires_in(r.expires_in.as_ref())?;
    Ok((token, now.saturating_add(secs)))
}

fn expires_in(v: Option<&serde_json::Value>) -> Result<i64, String> {
    use serde_json::Value;
    let n = match v {
        None | Some(Value::Null) => {
            return Err("the token response has no expires_in".into());
        }
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                i
            } else if n.as_u64().is_some() {
                i64::MAX
            } else {
                // a float; `as` saturates
                n.as_f64().map_or(0, |f| f as i64)
            }
        }
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expires_in {s:?} is not a number of seconds"))?,
        Some(_) => return Err("expires_in is not a number".into()),
    };
    if n < 0 {
        return Err(format!("expires_in {n} is negative"));
    }
    Ok(n)
}

/// POSTs with retries and returns a 2xx response, or the step's error.
fn post_ok(
    deadline: &Deadline,
    step: &str,
    call: impl FnMut() -> Result<Response, HttpError>,
) -> Result<Response, SourceError> {
    let fail = SourceError::at(step);
    let resp = http::with_retries(deadline, TOKEN_ATTEMPTS, call)
        .map_err(|e| fail(http::describe_error(&e, deadline)))?;
    if !resp.is_success() {
        // STS or IAM said no. Only a pod's run acts on this (no stale
        // credential served in place of a refusal); see `workload`.
        let e = fail(http::status_detail(&resp));
        if crate::error::is_refusal_status(resp.status) {
            return Err(e.with_kind(crate::error::Kind::Refused));
        }
        return Err(e);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn token_response_expiry() {
        let (t, exp) = parse_token_response(
            br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!((t.expose(), exp), ("ya29.x", NOW + 3599));
        // zero: already expired, the caller serves it once and does not cache it
        let (_, exp) =
            parse_token_response(br#"{"access_token":"a","expires_in":0}"#, NOW).unwrap();
        assert_eq!(exp, NOW);
        // a string of digits (some STS deployments)
        let (_, exp) =
            parse_token_response(br#"{"access_token":"a","expires_in":"60"}"#, NOW).unwrap();
        assert_eq!(exp, NOW + 60);
        // huge values saturate; the cache caps them at 12h
        for huge in ["18446744073709551615", "1e300", "9223372036854775807"] {
            let body = format!(r#"{{"access_token":"a","expires_in":{huge}}}"#);
            let (_, exp) = parse_token_response(body.as_bytes(), NOW).unwrap();
            assert_eq!(exp, i64::MAX, "{huge}");
        }
        for (body, want) in [
            (r#"{"access_token":"a"}"#, "no expires_in"),
            (r#"{"access_token":"a","expires_in":null}"#, "no expires_in"),
            (r#"{"access_token":"a","expires_in":-5}"#, "negative"),
            (
                r#"{"access_token":"a","expires_in":"soon"}"#,
                "not a number",
            ),
            (r#"{"access_token":"a","expires_in":[1]}"#, "not a number"),
            (r#"{"expires_in":3600}"#, "no access_token"),
            (
                r#"{"access_token":"","expires_in":3600}"#,
                "no access_token",
            ),
            ("<html>", "unreadable"),
        ] {
            let e = parse_token_response(body.as_bytes(), NOW).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn errors_never_quote_the_body() {
        let e = parse_token_response(br#"{"access_token":"ya29.secret","expires_in":"x"#, NOW)
            .unwrap_err();
        assert!(!e.contains("ya29.secret"), "{e}");
        let resp = Response {
            status: 400,
            headers: vec![],
            body: br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature.","access_token":"ya29.no"}"#.to_vec(),
        };
        assert_eq!(
            http::status_detail(&resp),
            "HTTP 400: invalid_grant: Invalid JWT Signature."
        );
        let resp = Response {
            status: 403,
            headers: vec![],
            body: br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#.to_vec(),
        };
        assert_eq!(
            http::status_detail(&resp),
            "HTTP 403: PERMISSION_DENIED: Permission denied"
        );
        let resp = Response {
            status: 502,
            headers: vec![],
            body: b"<html>ya29.no</html>".to_vec(),
        };
        assert_eq!(http::status_detail(&resp), "HTTP 502");
    }
}
