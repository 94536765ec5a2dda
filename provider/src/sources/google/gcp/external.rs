//! Workload identity federation (`"type": "external_account"`): a subject
//! token from the node's other identity is exchanged at Google STS (RFC 8693
//! token exchange), then, when the file names a service account to
//! impersonate, for that account's access token (IAM Credentials
//! `generateAccessToken`).
//!
//! Subject token sources: `credential_source.file`, `credential_source.url`
//! (each `text` or `json` with `subject_token_field_name`), and
//! `environment_id: aws1` (a signed AWS STS `GetCallerIdentity` request, see
//! [`super::sigv4`]). `executable` sources are refused: running programs
//! named in a file is not something a kubelet plugin should do.

use serde::Deserialize;

pub use super::credential_source::{CredentialSource, Format};
use super::{parse_token_response, post_ok, sigv4};
use crate::deadline::Deadline;
use crate::http::{self, Client};
use crate::secret::Secret;
use crate::sources::SourceError;
use crate::time::parse_rfc3339;

pub const DEFAULT_STS_URL: &str = "https://sts.googleapis.com/v1/token";
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const DEFAULT_IMPERSONATION_LIFETIME: i64 = 3600;

#[derive(Debug, Deserialize)]
pub struct ExternalAccount {
    pub audience: String,
    pub subject_token_type: String,
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(default)]
    pub service_account_impersonation_url: Option<String>,
    #[serde(default)]
    pub service_account_impersonation: Option<ImpersonationOptions>,
    #[serde(default)]
    pub workforce_pool_user_project: Option<String>,
    pub credential_source: CredentialSource,
}

#[derive(Debug, Deserialize)]
pub struct ImpersonationOptions {
    #[serde(default)]
    pub token_lifetime_seconds: Option<i64>,
}

/// Where the subject token comes from, checked once at parse time.
#[derive(Debug, PartialEq, Eq)]
pub enum Source<'a> {
    File(&'a str),
    Url(&'a str),
    Aws,
}

impl ExternalAccount {
    pub fn parse(bytes: &[u8]) -> Result<ExternalAccount, String> {
        let a: ExternalAccount = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "malformed external account file ({})",
                crate::error::json_position(&e)
            )
        })?;
        if a.audience.is_empty() {
            return Err("external account has an empty audience".into());
        }
        a.source()?;
        if let Some(f) = &a.credential_source.format {
            match f.kind.as_str() {
                "text" => {}
                "json"
                    if f.subject_token_field_name
                        .as_deref()
                        .is_some_and(|n| !n.is_empty()) => {}
                "json" => {
                    return Err(
                        "credential_source.format json needs subject_token_field_name".into(),
                    );
                }
                other => {
                    return Err(format!(
                        "credential_source.format type {other:?} is not text or json"
                    ));
                }
            }
        }
        // Both receive tokens: https, or http to loopback only.
        for (field, u) in [
            ("token_url", &a.token_url),
            (
                "service_account_impersonation_url",
                &a.service_account_impersonation_url,
            ),
        ] {
            if let Some(u) = u.as_deref().filter(|u| !u.is_empty()) {
                crate::endpoint::secret_destination(u, field)?;
            }
        }
        Ok(a)
    }

    pub fn source(&self) -> Result<Source<'_>, String> {
        let c = &self.credential_source;
        if c.executable.is_some() {
            return Err("credential_source.executable is not supported (pullcred runs no programs named in credentials files); use a file or url source".into());
        }
        match (
            c.environment_id.as_deref(),
            c.file.as_deref(),
            c.url.as_deref(),
        ) {
            (Some(env), _, _) if env.starts_with("aws") => {
                if env != "aws1" {
                    return Err(format!(
                        "credential_source.environment_id {env:?} is not supported (want aws1)"
                    ));
                }
                if c.regional_cred_verification_url
                    .as_deref()
                    .is_none_or(str::is_empty)
                {
                    return Err(
                        "aws1 credential_source has no regional_cred_verification_url".into(),
                    );
                }
                Ok(Source::Aws)
            }
            (Some(env), _, _) => Err(format!(
                "credential_source.environment_id {env:?} is not supported (want aws1)"
            )),
            (None, Some(f), None) if !f.is_empty() => Ok(Source::File(f)),
            (None, None, Some(u)) if !u.is_empty() => Ok(Source::Url(u)),
            (None, Some(_), Some(_)) => Err("credential_source has both file and url".into()),
            _ => Err("credential_source has no file, url or environment_id".into()),
        }
    }

    fn sts_url(&self) -> &str {
        self.token_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_STS_URL)
    }

    pub fn fetch(
        &self,
        scopes: &[String],
        deadline: &Deadline,
    ) -> Result<(Secret, i64), SourceError> {
        let subject = self.subject_token(deadline)?;
        self.exchange(&subject, scopes, deadline)
    }

    /// An account for a subject token the caller already holds (a pod's
    /// service-account token): no credential source.
    pub fn for_subject(
        audience: String,
        subject_token_type: &str,
        token_url: String,
        service_account_impersonation_url: Option<String>,
    ) -> ExternalAccount {
        ExternalAccount {
            audience,
            subject_token_type: subject_token_type.to_string(),
            token_url: Some(token_url),
            service_account_impersonation_url,
            service_account_impersonation: None,
            workforce_pool_user_project: None,
            credential_source: CredentialSource::default(),
        }
    }

    /// Trades `subject` at STS (RFC 8693), then impersonates if configured.
    pub fn exchange(
        &self,
        subject: &Secret,
        scopes: &[String],
        deadline: &Deadline,
    ) -> Result<(Secret, i64), SourceError> {
        let sts_step = format!("google STS token exchange ({})", self.sts_url());
        // With impersonation the federated token only has to call IAM.
        let sts_scopes = if self.service_account_impersonation_url.is_some() {
            super::DEFAULT_SCOPE.to_string()
        } else {
            scopes.join(" ")
        };
        let options = self
            .workforce_pool_user_project
            .as_ref()
            .map(|p| serde_json::json!({"userProject": p}).to_string());
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("audience", &self.audience),
            ("scope", &sts_scopes),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token_type", &self.subject_token_type),
            ("subject_token", subject.expose()),
        ];
        if let Some(o) = &options {
            form.push(("options", o));
        }
        tracing::debug!(url = %self.sts_url(), "exchanging a subject token at Google STS");
        let client = Client::new(deadline);
        let resp = post_ok(deadline, &sts_step, || {
            client.post_form(self.sts_url(), &[], &form)
        })?;
        let (federated, expires_at) = parse_token_response(&resp.body, deadline.now_unix())
            .map_err(|detail| SourceError::new(sts_step.clone(), detail))?;
        match &self.service_account_impersonation_url {
            None => Ok((federated, expires_at)),
            Some(url) => self.impersonate(url, &federated, scopes, deadline),
        }
    }

    fn impersonate(
        &self,
        url: &str,
        federated: &Secret,
        scopes: &[String],
        deadline: &Deadline,
    ) -> Result<(Secret, i64), SourceError> {
        let step = format!("google service account impersonation ({url})");
        let fail = SourceError::at(&step);
        let lifetime = self
            .service_account_impersonation
            .as_ref()
            .and_then(|o| o.token_lifetime_seconds)
            .unwrap_or(DEFAULT_IMPERSONATION_LIFETIME);
        let body =
            serde_json::json!({"scope": scopes, "lifetime": format!("{lifetime}s")}).to_string();
        let bearer = Secret::new(format!("Bearer {}", federated.expose()));
        let client = Client::new(deadline);
        tracing::debug!(url = %url, "impersonating a service account");
        let resp = post_ok(deadline, &step, || {
            client.post_json(url, &[("Authorization", bearer.expose())], body.as_bytes())
        })?;
        parse_impersonation(&resp.body).map_err(fail)
    }

    fn subject_token(&self, deadline: &Deadline) -> Result<Secret, SourceError> {
        let source = self
            .source()
            .map_err(|detail| SourceError::new("google external account", detail))?;
        match source {
            Source::File(path) => {
                let step = format!("google subject token file ({path})");
                let fail = SourceError::at(&step);
                let bytes = super::read_limited(std::path::Path::new(path)).map_err(fail)?;
                self.extract(&bytes).map_err(fail)
            }
            Source::Url(url) => {
                let step = format!("google subject token URL ({url})");
                let fail = SourceError::at(&step);
                let headers: Vec<(&str, &str)> = self
                    .credential_source
                    .headers
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.expose()))
                    .collect();
                let client = Client::new(deadline);
                let resp = http::with_retries(deadline, 3, || client.get(url, &headers))
                    .map_err(|e| fail(http::describe_error(&e, deadline)))?;
                if !resp.is_success() {
                    return Err(fail(http::status_detail(&resp)));
                }
                self.extract(&resp.body).map_err(fail)
            }
            Source::Aws => {
                sigv4::aws_subject_token(&self.credential_source, &self.audience, deadline)
            }
        }
    }

    /// The subject token from a file's or URL's content, by `format`.
    pub fn extract(&self, bytes: &[u8]) -> Result<Secret, String> {
        let field = match &self.credential_source.format {
            Some(Format {
                kind,
                subject_token_field_name: Some(f),
            }) if kind == "json" => Some(f),
            _ => None,
        };
        let token = match field {
            None => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| "subject token is not UTF-8".to_string())?;
                Secret::new(text.trim())
            }
            Some(name) => {
                let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
                    format!(
                        "subject token is not JSON ({})",
                        crate::error::json_position(&e)
                    )
                })?;
                match v.get(name.as_str()) {
                    Some(serde_json::Value::String(s)) => Secret::new(s.trim()),
                    _ => return Err(format!("subject token JSON has no string field {name:?}")),
                }
            }
        };
        if token.is_empty() {
            return Err("subject token is empty".into());
        }
        Ok(token)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Impersonated {
    access_token: Option<Secret>,
    expire_time: Option<String>,
}

/// `{"accessToken", "expireTime": RFC 3339}` from `generateAccessToken`.
pub fn parse_impersonation(body: &[u8]) -> Result<(Secret, i64), String> {
    let r: Impersonated = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable generateAccessToken response ({})",
            crate::error::json_position(&e)
        )
    })?;
    let token = r
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the generateAccessToken response has no accessToken")?;
    let when = r
        .expire_time
        .ok_or("the generateAccessToken response has no expireTime")?;
    let at = parse_rfc3339(&when).ok_or_else(|| format!("expireTime {when:?} is not RFC 3339"))?;
    Ok((token, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(source: &str) -> Result<ExternalAccount, String> {
        let body = format!(
            r#"{{"type":"external_account","audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x","subject_token_type":"urn:ietf:params:oauth:token-type:jwt","token_url":"https://sts.googleapis.com/v1/token","credential_source":{source}}}"#
        );
        ExternalAccount::parse(body.as_bytes())
    }

    #[test]
    fn sources() {
        assert_eq!(
            account(r#"{"file":"/t"}"#).unwrap().source(),
            Ok(Source::File("/t"))
        );
        assert_eq!(
            account(r#"{"url":"http://x/t"}"#).unwrap().source(),
            Ok(Source::Url("http://x/t"))
        );
        let aws = r#"{"environment_id":"aws1","region_url":"http://169.254.169.254/latest/meta-data/placement/availability-zone","url":"http://169.254.169.254/latest/meta-data/iam/security-credentials","regional_cred_verification_url":"https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}"#;
        assert_eq!(account(aws).unwrap().source(), Ok(Source::Aws));
        for (src, want) in [
            (r#"{}"#, "no file, url"),
            (r#"{"file":"/a","url":"http://b"}"#, "both"),
            (
                r#"{"environment_id":"aws2","regional_cred_verification_url":"x"}"#,
                "aws2",
            ),
            (
                r#"{"environment_id":"aws1"}"#,
                "regional_cred_verification_url",
            ),
            (r#"{"environment_id":"azure1"}"#, "not supported"),
            (r#"{"executable":{"command":"/bin/x"}}"#, "executable"),
            (
                r#"{"file":"/t","format":{"type":"json"}}"#,
                "subject_token_field_name",
            ),
            (
                r#"{"file":"/t","format":{"type":"yaml"}}"#,
                "not text or json",
            ),
            (r#""nope""#, "malformed"),
        ] {
            let e = account(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn token_endpoints_must_be_https_or_loopback() {
        let with = |field: &str, url: &str| {
            let body = format!(
                r#"{{"type":"external_account","audience":"a","subject_token_type":"t","{field}":"{url}","credential_source":{{"file":"/t"}}}}"#
            );
            ExternalAccount::parse(body.as_bytes())
        };
        for field in ["token_url", "service_account_impersonation_url"] {
            assert!(with(field, "https://sts.googleapis.com/v1/token").is_ok());
            assert!(with(field, "http://127.0.0.1:9/v1/token").is_ok());
            for bad in [
                "http://sts.googleapis.com/v1/token",
                "https://sts.googleapis.com@evil.example/v1/token",
                "ftp://sts.googleapis.com/",
            ] {
                let e = with(field, bad).unwrap_err();
                assert!(e.starts_with(field), "{bad}: {e}");
            }
        }
    }

    #[test]
    fn extracts_text_and_json_subject_tokens() {
        let a = account(r#"{"file":"/t"}"#).unwrap();
        assert_eq!(a.extract(b"  tok\n").unwrap().expose(), "tok");
        assert!(a.extract(b" \n").unwrap_err().contains("empty"));
        let a = account(
            r#"{"file":"/t","format":{"type":"json","subject_token_field_name":"id_token"}}"#,
        )
        .unwrap();
        assert_eq!(a.extract(br#"{"id_token":"tok"}"#).unwrap().expose(), "tok");
        let e = a.extract(br#"{"other":"tok"}"#).unwrap_err();
        assert!(e.contains("\"id_token\"") && !e.contains("tok\""), "{e}");
        assert!(a.extract(b"tok").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn impersonation_response() {
        let (t, at) =
            parse_impersonation(br#"{"accessToken":"ya29.i","expireTime":"2014-10-02T15:01:23Z"}"#)
                .unwrap();
        assert_eq!((t.expose(), at), ("ya29.i", 1_412_262_083));
        assert!(
            parse_impersonation(br#"{"accessToken":"a"}"#)
                .unwrap_err()
                .contains("no expireTime")
        );
        assert!(
            parse_impersonation(br#"{"accessToken":"a","expireTime":"soon"}"#)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(
            parse_impersonation(br#"{"expireTime":"2014-10-02T15:01:23Z"}"#)
                .unwrap_err()
                .contains("no accessToken")
        );
    }
}
