//! The exchange call: one POST to the token endpoint, over
//! [`crate::http::Client`] (HTTPS_PROXY/NO_PROXY honoured), to a URL
//! [`crate::endpoint`] accepts (https, or http to loopback), retried on
//! 5xx, 429 and connection failures inside the run's deadline.
//!
//! Failures, by what the pipeline does with them:
//! - a 4xx other than 404, 405, 408 and 429 (RFC 6749 §5.2's
//!   `invalid_grant`, `invalid_target`, `unauthorized_client`; 401; 403):
//!   the issuer said no to this token, [`Kind::Refused`] (a pod's cached
//!   credential is not served in its place);
//! - 404, 405 or a redirect: `tokenUrl` is wrong, [`Kind::Config`];
//! - 5xx, 429, connection, TLS, the deadline, an unreadable 2xx answer:
//!   [`Kind::Unavailable`] (a still-valid cached token is served).
//!
//! Error text holds the status and the answer's error fields
//! (`error`/`error_description`, JFrog's `errors[]`, Cloudsmith's
//! `detail`), never the body, the subject token or the issued token.

use kubelet_config::pullcred::exchange::Exchange as Config;

use super::wire::{self, Format, Issued};
use crate::deadline::Deadline;
use crate::error::{Kind, SourceError};
use crate::http::{self, Client, Response};
use crate::secret::Secret;

/// Attempts per exchange (the first and two retries), all inside the deadline.
const ATTEMPTS: u32 = 3;

/// Exchanges `subject` at `x`'s token endpoint.
pub fn exchange(x: &Config, subject: &Secret, deadline: &Deadline) -> Result<Issued, SourceError> {
    let req = wire::request(x);
    let what = format!("exchange {:?} tokenUrl", x.name);
    let dest = crate::endpoint::secret_destination(&req.url, &what)
        .map_err(|e| SourceError::config(format!("token exchange {}", x.name), e))?;
    let url = dest.url();
    let step = format!(
        "token exchange {} at {}{}",
        crate::logging::echo(&x.name),
        dest.origin(),
        dest.path()
    );
    let client = Client::new(deadline);
    let headers = [("Accept", "application/json")];
    let body = match req.format {
        Format::Json => {
            let mut m = serde_json::Map::new();
            for (k, v) in &req.fields {
                m.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            m.insert(
                req.subject_field.clone(),
                serde_json::Value::String(subject.expose().to_string()),
            );
            Some(Secret::new(serde_json::Value::Object(m).to_string()))
        }
        Format::Form => None,
    };
    tracing::debug!(exchange = %x.name, flavor = wire::Flavor::of(x).name(), "exchanging the subject token");
    let result = http::with_retries(deadline, ATTEMPTS, || match &body {
        Some(json) => client.post_json(&url, &headers, json.expose().as_bytes()),
        None => {
            let mut form: Vec<(&str, &str)> = req
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            form.push((req.subject_field.as_str(), subject.expose()));
            client.post_form(&url, &headers, &form)
        }
    });
    let resp = result.map_err(|e| SourceError::new(&step, http::describe_error(&e, deadline)))?;
    if !resp.is_success() {
        return Err(SourceError::new(&step, error_detail(&resp)).with_kind(error_kind(&resp)));
    }
    let issued = wire::read_answer(x, &resp.body, deadline.now_unix())
        .map_err(|e| SourceError::new(&step, format!("HTTP {}: {e}", resp.status)))?;
    tracing::debug!(
        exchange = %x.name,
        expires_in = issued.expires_at - deadline.now_unix(),
        expiry_from = ?issued.expiry_from,
        "token issued"
    );
    Ok(issued)
}

/// What a failed answer means for the pipeline.
pub fn error_kind(resp: &Response) -> Kind {
    match resp.status {
        300..=399 | 404 | 405 => Kind::Config,
        s if crate::error::is_refusal_status(s) => Kind::Refused,
        _ => Kind::Unavailable,
    }
}

/// `HTTP 400: invalid_grant: ...`, plus Cloudsmith's `detail` and a hint for
/// a redirect or a missing endpoint.
pub fn error_detail(resp: &Response) -> String {
    let mut out = http::status_detail(resp);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body)
        && let Some(d) = v.get("detail").and_then(|d| d.as_str())
    {
        let d: String = d.chars().take(300).collect();
        out.push_str(": ");
        out.push_str(&d.replace(['\n', '\r'], " "));
    }
    match resp.status {
        300..=399 => out.push_str(
            "; the token endpoint redirected, and pullcred sends no token after a redirect: set tokenUrl to the final URL",
        ),
        404 | 405 => out.push_str("; is tokenUrl the token endpoint (for flavor artifactory: the platform's base URL)?"),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn kinds() {
        for (s, k) in [
            (400, Kind::Refused),
            (401, Kind::Refused),
            (403, Kind::Refused),
            (404, Kind::Config),
            (302, Kind::Config),
            (408, Kind::Unavailable),
            (429, Kind::Unavailable),
            (500, Kind::Unavailable),
            (503, Kind::Unavailable),
        ] {
            assert_eq!(error_kind(&resp(s, "")), k, "{s}");
        }
    }

    #[test]
    fn details_name_the_oauth_error_never_the_body() {
        let r = resp(
            400,
            r#"{"error":"invalid_grant","error_description":"namespace not trusted","x":"sekrit"}"#,
        );
        assert_eq!(
            error_detail(&r),
            "HTTP 400: invalid_grant: namespace not trusted"
        );
        let r = resp(401, r#"{"detail":"OIDC token cannot be authenticated."}"#);
        assert_eq!(
            error_detail(&r),
            "HTTP 401: OIDC token cannot be authenticated."
        );
        let r = resp(
            403,
            r#"{"errors":[{"code":"FORBIDDEN","message":"no mapping"}]}"#,
        );
        assert_eq!(error_detail(&r), "HTTP 403: FORBIDDEN: no mapping");
        assert!(error_detail(&resp(500, "sekrit <html>")).starts_with("HTTP 500"));
        assert!(!error_detail(&resp(500, "sekrit <html>")).contains("sekrit"));
    }
}
