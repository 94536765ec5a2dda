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

mod external;
mod jwt;
mod sigv4;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Fetched, SourceError};
use crate::deadline::Deadline;
use crate::http::{self, Client, HttpError, HttpErrorKind, Response};
use crate::private_file::{self, Limits};
use crate::secret::Secret;
use crate::workload::{Audience, Identity, Workload};

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
        return Err(SourceError {
            step: "google access token".into(),
            detail: "upstream answered with an empty access token".into(),
        });
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
    let Identity::Google {
        audience,
        impersonate,
    } = &w.identity
    else {
        return Err(SourceError {
            step: "Google".into(),
            detail: format!("{} names no Google identity", w.account),
        });
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
        return Err(SourceError {
            step: format!("google access token for {}", w.account),
            detail: "upstream answered with an empty access token".into(),
        });
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
    crate::endpoint::secret_destination(&v, name).map_err(|detail| SourceError {
        step: format!("reading {name}"),
        detail,
    })?;
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
    let fail = |detail: String| SourceError {
        step: step.clone(),
        detail: format!(
            "{detail}; not on GKE? set --google-audience or the {} annotation",
            crate::workload::GOOGLE_AUDIENCE_ANNOTATION
        ),
    };
    let resp = metadata_get(&url, deadline).map_err(|e| fail(describe_http(&e, deadline)))?;
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
    let fail = |detail: String| SourceError {
        step: step.clone(),
        detail,
    };
    let scopes = configured_scopes();
    let url = if scopes.is_empty() {
        base.clone()
    } else {
        format!("{base}?scopes={}", percent_encode(&scopes.join(",")))
    };
    tracing::debug!(url = %base, "asking the metadata server for a token");
    let resp = metadata_get(&url, deadline).map_err(|e| {
        let mut d = describe_http(&e, deadline);
        if std::env::var_os(METADATA_HOST_ENV).is_none() && e.kind != HttpErrorKind::Timeout {
            d.push_str(&format!(
                " (not a GCE or GKE node? set {CREDENTIALS_ENV} to a key or workload identity federation file)"
            ));
        }
        fail(d)
    })?;
    metadata_answered(&resp).map_err(fail)?;
    parse_token_response(&resp.body, crate::run::now_unix()).map_err(fail)
}

/// A GET of the metadata server, with its header, retried as it needs.
/// Never through a proxy: a proxy must not see, or answer, a token request.
fn metadata_get(url: &str, deadline: &Deadline) -> Result<Response, HttpError> {
    retry_with_timeouts(deadline, METADATA_ATTEMPTS, |attempt_deadline| {
        Client::direct(attempt_deadline).get(url, &[("Metadata-Flavor", "Google")])
    })
}

/// A 2xx from a metadata server (`Metadata-Flavor: Google`), or why not.
fn metadata_answered(resp: &Response) -> Result<(), String> {
    if !resp.is_success() {
        return Err(describe_status(resp));
    }
    if resp.header("metadata-flavor") != Some("Google") {
        return Err(format!(
            "HTTP {}: the answer lacks the `Metadata-Flavor: Google` header, so it is not from a metadata server",
            resp.status
        ));
    }
    Ok(())
}

/// Like [`http::with_retries`], but each attempt has its own short deadline
/// (inside the run's), and an attempt that times out is tried again while
/// the run's deadline allows: a metadata server that stalls once is common.
fn retry_with_timeouts(
    deadline: &Deadline,
    max_attempts: u32,
    mut attempt: impl FnMut(&Deadline) -> Result<Response, HttpError>,
) -> Result<Response, HttpError> {
    let mut n = 0;
    loop {
        let per = Deadline::after(deadline.remaining().min(METADATA_ATTEMPT));
        let r = attempt(&per);
        n += 1;
        let timed_out = matches!(&r, Err(e) if e.kind == HttpErrorKind::Timeout);
        if n >= max_attempts || !(timed_out || http::retryable(&r)) {
            return r;
        }
        let pause = Duration::from_millis(100u64 << n.min(5));
        if pause + Duration::from_millis(200) >= deadline.remaining() {
            return r;
        }
        tracing::debug!(attempt = n, "retrying the metadata server");
        std::thread::sleep(pause);
    }
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
    let fail = |detail: String| SourceError {
        step: file_step.clone(),
        detail,
    };
    let bytes = read_private(path).map_err(fail)?;
    let kind: FileType = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("not JSON ({})", json_position(&e))))?;
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

/// Where a JSON error is, without quoting the input (it may hold a key).
fn json_position(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
    .to_lowercase()
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
    let r: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| format!("unreadable token response ({})", json_position(&e)))?;
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

/// One line about a failed HTTP call, naming the deadline on a timeout.
fn describe_http(e: &HttpError, deadline: &Deadline) -> String {
    if e.kind == HttpErrorKind::Timeout {
        format!(
            "timed out ({:.1}s of the {}s deadline used; --timeout)",
            deadline.elapsed().as_secs_f32(),
            deadline.budget().as_secs()
        )
    } else {
        e.to_string()
    }
}

/// `HTTP 400: invalid_grant: Invalid JWT Signature.`: the status and the
/// OAuth or Google API error fields, never the raw body.
pub fn describe_status(resp: &Response) -> String {
    let mut out = format!("HTTP {}", resp.status);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body) {
        let mut push = |s: Option<&str>| {
            if let Some(s) = s.filter(|s| !s.is_empty()) {
                let s: String = s.chars().take(200).collect();
                out.push_str(": ");
                out.push_str(&s.replace(['\n', '\r'], " "));
            }
        };
        match v.get("error") {
            Some(serde_json::Value::String(code)) => {
                push(Some(code));
                push(v.get("error_description").and_then(|d| d.as_str()));
            }
            Some(obj @ serde_json::Value::Object(_)) => {
                push(obj.get("status").and_then(|d| d.as_str()));
                push(obj.get("message").and_then(|d| d.as_str()));
            }
            _ => {}
        }
    }
    out
}

/// POSTs with retries and returns a 2xx response, or the step's error.
fn post_ok(
    deadline: &Deadline,
    step: &str,
    call: impl FnMut() -> Result<Response, HttpError>,
) -> Result<Response, SourceError> {
    let fail = |detail: String| SourceError {
        step: step.to_string(),
        detail,
    };
    let resp = http::with_retries(deadline, TOKEN_ATTEMPTS, call)
        .map_err(|e| fail(describe_http(&e, deadline)))?;
    if !resp.is_success() {
        // STS or IAM said no. Only a pod's run acts on this (no stale
        // credential served in place of a refusal); see `workload`.
        if crate::workload::is_refusal_status(resp.status) {
            crate::workload::mark_refused();
        }
        return Err(fail(describe_status(&resp)));
    }
    Ok(resp)
}

// ---------------------------------------------------------------- encodings

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds to `(YYYYMMDD, YYYYMMDDTHHMMSSZ)`, as SigV4 wants them.
pub fn amz_dates(unix: i64) -> (String, String) {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    let date = format!("{y:04}{mo:02}{d:02}");
    let stamp = format!("{date}T{:02}{:02}{:02}Z", s / 3600, s % 3600 / 60, s % 60);
    (date, stamp)
}

/// RFC 3339 (`2014-10-02T15:01:23Z`, `...23.045123456Z`, `...+02:00`) to unix
/// seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
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
            describe_status(&resp),
            "HTTP 400: invalid_grant: Invalid JWT Signature."
        );
        let resp = Response {
            status: 403,
            headers: vec![],
            body: br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#.to_vec(),
        };
        assert_eq!(
            describe_status(&resp),
            "HTTP 403: PERMISSION_DENIED: Permission denied"
        );
        let resp = Response {
            status: 502,
            headers: vec![],
            body: b"<html>ya29.no</html>".to_vec(),
        };
        assert_eq!(describe_status(&resp), "HTTP 502");
    }

    #[test]
    fn dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(
            amz_dates(1_582_848_000 + 3600 + 62),
            ("20200228".into(), "20200228T010102Z".into())
        );
        assert_eq!(
            amz_dates(951_782_400),
            ("20000229".into(), "20000229T000000Z".into())
        );
        for unix in [0, 951_782_400, 1_800_000_000, 4_102_444_800, -86_400] {
            let days = i64::div_euclid(unix, 86_400);
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2014-10-02T15:01:23Z"), Some(1_412_262_083));
        assert_eq!(
            parse_rfc3339("2014-10-02T15:01:23.045123456Z"),
            Some(1_412_262_083)
        );
        assert_eq!(
            parse_rfc3339("2014-10-02T17:01:23+02:00"),
            Some(1_412_262_083)
        );
        assert_eq!(
            parse_rfc3339("2014-10-02T14:01:23-01:00"),
            Some(1_412_262_083)
        );
        for bad in [
            "",
            "2014-10-02",
            "2014-10-02T15:01:23",
            "2014-13-02T15:01:23Z",
            "2014-10-02T25:01:23Z",
            "2014-10-02T15:01:23.Z",
            "2014-10-02T15:01:23+0200",
            "20x4-10-02T15:01:23Z",
            "+014-10-02T15:01:23Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("a b/{\"}"), "a%20b%2F%7B%22%7D");
    }
}
