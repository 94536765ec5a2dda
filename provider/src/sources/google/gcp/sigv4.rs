//! The AWS subject token for workload identity federation (`aws1`), as
//! Google documents it (AIP-4117): a `GetCallerIdentity` request to AWS STS,
//! signed with AWS Signature Version 4 but not sent; Google STS sends it and
//! learns the caller's AWS identity. The token is the URL-encoded JSON
//! `{"url", "method": "POST", "headers": [{"key", "value"}...], "body": ""}`,
//! and the signature covers `x-goog-cloud-target-resource` (the audience).
//!
//! AWS credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
//! `AWS_SESSION_TOKEN`, else the EC2 instance metadata service at the file's
//! `url` (IMDSv2 when `imdsv2_session_token_url` is given). Region:
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, else the file's `region_url`.
//!
//! SigV4 is written here (HMAC-SHA256 from ring) rather than taken from the
//! `aws-sigv4` crate, so that the `gcp` feature does not need the AWS SDK
//! crates: one fixed request shape, about sixty lines, tested against AWS's
//! published example.

use ring::hmac;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::credential_source::CredentialSource;
use crate::deadline::Deadline;
use crate::encode::{hex, percent_encode};
use crate::http::{self, Client};
use crate::secret::Secret;
use crate::sources::SourceError;
use crate::time::amz_dates;

pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// A request to sign: method POST, empty body.
pub struct Signed {
    pub url: String,
    /// (name, value) in the order they are serialised; includes Authorization.
    pub headers: Vec<(String, Secret)>,
}

/// Signs `POST url` (no body) for `service` in `region` at `unix` time, with
/// `extra` headers (lowercase names) signed too.
pub fn sign_post(
    url: &str,
    region: &str,
    service: &str,
    creds: &AwsCredentials,
    extra: &[(&str, &str)],
    unix: i64,
) -> Result<Signed, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let path = if path.is_empty() { "/" } else { path };
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_unstable();
    let canonical_query = params.join("&");

    let (date, stamp) = amz_dates(unix);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), authority.to_string()),
        ("x-amz-date".into(), stamp.clone()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token".into(), t.expose().to_string()));
    }
    for (k, v) in extra {
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    headers.sort();
    let signed_names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed_names = signed_names.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!(
        "POST\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_names}\n{}",
        hex(&Sha256::digest(b""))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mac = |key: &[u8], msg: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
            .as_ref()
            .to_vec()
    };
    let k = mac(
        format!("AWS4{}", creds.secret_access_key.expose()).as_bytes(),
        &date,
    );
    let k = mac(&k, region);
    let k = mac(&k, service);
    let k = mac(&k, "aws4_request");
    let signature = hex(&mac(&k, &to_sign));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
        creds.access_key_id
    );
    let mut out = vec![("Authorization".to_string(), Secret::new(authorization))];
    out.extend(headers.into_iter().map(|(k, v)| (k, Secret::new(v))));
    Ok(Signed {
        url: url.to_string(),
        headers: out,
    })
}

/// The URL-encoded JSON subject token for a signed request.
pub fn serialize(signed: &Signed) -> Secret {
    let headers: Vec<serde_json::Value> = signed
        .headers
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": v.expose()}))
        .collect();
    let doc = serde_json::json!({
        "url": signed.url,
        "method": "POST",
        "headers": headers,
        "body": "",
    });
    Secret::new(percent_encode(&doc.to_string()))
}

pub fn aws_subject_token(
    cs: &CredentialSource,
    audience: &str,
    deadline: &Deadline,
) -> Result<Secret, SourceError> {
    let mut imds = Imds::new(cs, deadline);
    let region = match env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION")) {
        Some(r) => r,
        None => {
            let url = cs
                .region_url
                .as_deref()
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    SourceError::new(
                        "AWS region for google workload identity federation",
                        "AWS_REGION is not set and the credential_source has no region_url",
                    )
                })?;
            let zone = imds.get(url, "AWS region for google workload identity federation")?;
            let zone = zone.expose().trim();
            // an availability zone: the region plus one letter
            let mut r = zone.to_string();
            r.pop();
            if r.is_empty() {
                return Err(SourceError::new(
                    format!("AWS region for google workload identity federation ({url})"),
                    "empty availability zone",
                ));
            }
            r
        }
    };
    let creds = match (
        env_nonempty("AWS_ACCESS_KEY_ID"),
        env_nonempty("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => AwsCredentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: env_nonempty("AWS_SESSION_TOKEN").map(Secret::new),
        },
        _ => imds.credentials()?,
    };
    let template = cs
        .regional_cred_verification_url
        .as_deref()
        .unwrap_or_default();
    let url = template.replace("{region}", &region);
    let signed = sign_post(
        &url,
        &region,
        "sts",
        &creds,
        &[("x-goog-cloud-target-resource", audience)],
        deadline.now_unix(),
    )
    .map_err(|detail| {
        SourceError::new(
            "signing the AWS GetCallerIdentity request for google workload identity federation",
            detail,
        )
    })?;
    tracing::debug!(region = %region, "signed an AWS GetCallerIdentity request as the subject token");
    Ok(serialize(&signed))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The EC2 instance metadata service, as the credentials file points at it.
struct Imds<'a> {
    cs: &'a CredentialSource,
    deadline: &'a Deadline,
    client: Client,
    session: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImdsCredentials {
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    token: Option<Secret>,
}

impl<'a> Imds<'a> {
    fn new(cs: &'a CredentialSource, deadline: &'a Deadline) -> Imds<'a> {
        Imds {
            cs,
            deadline,
            // IMDS: never through a proxy.
            client: Client::direct(deadline),
            session: None,
        }
    }

    fn get(&mut self, url: &str, what: &str) -> Result<Secret, SourceError> {
        if self.session.is_none()
            && let Some(token_url) = self
                .cs
                .imdsv2_session_token_url
                .as_deref()
                .filter(|u| !u.is_empty())
        {
            let step = format!("AWS IMDSv2 session token ({token_url})");
            let resp = http::with_retries(self.deadline, 3, || {
                self.client.put(
                    token_url,
                    &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
                )
            })
            .map_err(|e| SourceError::new(step.clone(), http::describe_error(&e, self.deadline)))?;
            if !resp.is_success() {
                return Err(SourceError::new(step, http::status_detail(&resp)));
            }
            self.session = Some(Secret::new(String::from_utf8_lossy(&resp.body).trim()));
        }
        let step = format!("{what} ({url})");
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = &self.session {
            headers.push(("X-aws-ec2-metadata-token", s.expose()));
        }
        let resp = http::with_retries(self.deadline, 3, || self.client.get(url, &headers))
            .map_err(|e| SourceError::new(step.clone(), http::describe_error(&e, self.deadline)))?;
        if !resp.is_success() {
            return Err(SourceError::new(step, http::status_detail(&resp)));
        }
        Ok(Secret::new(
            String::from_utf8_lossy(&resp.body).into_owned(),
        ))
    }

    fn credentials(&mut self) -> Result<AwsCredentials, SourceError> {
        let what = "AWS credentials for google workload identity federation";
        let base = self.cs.url.as_deref().filter(|u| !u.is_empty()).ok_or_else(|| SourceError::new(what, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and the credential_source has no url"))?;
        let role = self.get(base, what)?;
        let role = role
            .expose()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        if role.is_empty() || role.contains('/') {
            return Err(SourceError::new(
                format!("{what} ({base})"),
                "the instance has no IAM role",
            ));
        }
        let url = format!("{}/{role}", base.trim_end_matches('/'));
        let body = self.get(&url, what)?;
        let c: ImdsCredentials = serde_json::from_str(body.expose()).map_err(|e| {
            SourceError::new(
                format!("{what} ({url})"),
                format!("unreadable answer ({})", crate::error::json_position(&e)),
            )
        })?;
        match (c.access_key_id, c.secret_access_key) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(AwsCredentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: c.token.filter(|t| !t.is_empty()),
                })
            }
            _ => Err(SourceError::new(
                format!("{what} ({url})"),
                "the answer has no AccessKeyId/SecretAccessKey",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
        }
    }

    #[test]
    fn matches_the_aws_signature_v4_test_suite() {
        // AWS's SigV4 test suite "post-vanilla-query": POST /?Param1=value1,
        // host example.amazonaws.com, 20150830T123600Z, us-east-1, service.
        let s = sign_post(
            "https://example.amazonaws.com/?Param1=value1",
            "us-east-1",
            "service",
            &creds(None),
            &[],
            1_440_938_160,
        )
        .unwrap();
        assert_eq!(
            s.headers[0].1.expose(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"
        );
    }

    #[test]
    fn subject_token_shape() {
        let s = sign_post(
            "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "us-east-1",
            "sts",
            &creds(Some("sess")),
            &[("x-goog-cloud-target-resource", "//iam.googleapis.com/x")],
            1_440_938_160,
        )
        .unwrap();
        let names: Vec<&str> = s.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        assert!(s.headers[0].1.expose().contains(
            "SignedHeaders=host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource,"
        ));
        assert_eq!(s.headers[1].1.expose(), "sts.us-east-1.amazonaws.com");
        let token = serialize(&s);
        assert!(!token.expose().contains('{'));
        let decoded = percent_decode(token.expose());
        let v: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["body"], "");
        assert_eq!(
            v["url"],
            "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        assert_eq!(v["headers"][4]["value"], "//iam.googleapis.com/x");
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
