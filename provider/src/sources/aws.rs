//! Amazon ECR private and ECR Public through the AWS SDK.
//!
//! The SDK is configured in one place ([`sdk_config`]): the region comes from
//! the registry host, credentials from the standard chain (environment,
//! profile, web identity/IRSA, container credentials, IMDSv2), endpoints from
//! the SDK's own settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`, profile
//! `endpoint_url`), TLS from rustls with ring. Throttling and 5xx are retried by
//! the SDK's standard mode (exponential backoff with jitter); every attempt and
//! the whole operation are bounded by the run's deadline.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::DateTime;
use aws_types::service_config::ServiceConfigKey;
use base64::Engine;

use super::{Fetched, SourceError, error_chain};
use crate::deadline::Deadline;
use crate::registry::{EcrRegistry, Target};
use crate::secret::Secret;

/// ECR Public's API lives in us-east-1 only.
const ECR_PUBLIC_REGION: &str = "us-east-1";

pub fn fetch(target: &Target, deadline: &Deadline) -> Result<Fetched, SourceError> {
    let step = match target {
        Target::EcrPrivate(r) => private_step(r),
        Target::EcrPublic => {
            format!("ecr-public GetAuthorizationToken (region {ECR_PUBLIC_REGION})")
        }
        other => {
            return Err(SourceError {
                step: "ECR".into(),
                detail: format!("{} is not an ECR registry", other.source()),
            });
        }
    };
    let fail = |detail: String| SourceError {
        step: step.clone(),
        detail,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
    let budget = deadline.remaining();
    let result = rt.block_on(async {
        match tokio::time::timeout(budget, fetch_async(target, deadline)).await {
            Ok(r) => r.map_err(fail),
            Err(_) => Err(fail(format!(
                "timed out: no answer within the {}s deadline (--timeout)",
                deadline.budget().as_secs_f32()
            ))),
        }
    });
    // Do not wait for stuck DNS lookups or idle connections.
    rt.shutdown_background();
    result
}

fn private_step(r: &EcrRegistry) -> String {
    let mut flags = String::new();
    if r.fips {
        flags.push_str(", FIPS");
    }
    if r.dual_stack {
        flags.push_str(", dual-stack");
    }
    format!("ecr GetAuthorizationToken (region {}{flags})", r.region)
}

async fn fetch_async(target: &Target, deadline: &Deadline) -> Result<Fetched, String> {
    match target {
        Target::EcrPrivate(reg) => {
            let conf = sdk_config(&reg.region, deadline).await;
            let mut b = aws_sdk_ecr::config::Builder::from(&conf);
            if has_custom_endpoint(&conf, "ECR") {
                // The SDK rejects FIPS/dual-stack together with a custom
                // endpoint; an operator's endpoint wins.
                tracing::debug!(
                    "custom ECR endpoint configured; FIPS/dual-stack host routing not applied"
                );
            } else {
                b = b.use_fips(reg.fips).use_dual_stack(reg.dual_stack);
            }
            let client = aws_sdk_ecr::Client::from_conf(b.build());
            tracing::debug!(region = %reg.region, fips = reg.fips, dual_stack = reg.dual_stack, "calling ecr:GetAuthorizationToken");
            let out = client
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let data = out
                .authorization_data()
                .first()
                .ok_or("ECR answered with no authorizationData")?;
            decode(data.authorization_token(), data.expires_at())
        }
        Target::EcrPublic => {
            let conf = sdk_config(ECR_PUBLIC_REGION, deadline).await;
            let client = aws_sdk_ecrpublic::Client::new(&conf);
            tracing::debug!("calling ecr-public:GetAuthorizationToken");
            let out = client
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let data = out
                .authorization_data()
                .ok_or("ECR Public answered with no authorizationData")?;
            decode(data.authorization_token(), data.expires_at())
        }
        other => Err(format!("{} is not an ECR registry", other.source())),
    }
}

/// The one place the SDK is configured.
async fn sdk_config(region: &str, deadline: &Deadline) -> SdkConfig {
    let remaining = deadline.remaining();
    // Leave the SDK a little less than our deadline so that its error, which
    // says more, arrives before our own timeout fires.
    let operation = remaining
        .saturating_sub(Duration::from_millis(300))
        .max(Duration::from_millis(100));
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(5)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(4)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3).min(operation))
                .operation_attempt_timeout(Duration::from_secs(5).min(operation))
                .operation_timeout(operation)
                .build(),
        )
        .load()
        .await
}

fn has_custom_endpoint(conf: &SdkConfig, service_id: &str) -> bool {
    if conf.endpoint_url().is_some() {
        return true;
    }
    let Ok(key) = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
    else {
        return false;
    };
    conf.service_config()
        .and_then(|c| c.load_config(key))
        .is_some()
}

/// `authorizationToken` is base64 of `AWS:<password>`.
fn decode(token: Option<&str>, expires_at: Option<&DateTime>) -> Result<Fetched, String> {
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
    let expires_at = expires_at
        .ok_or("authorizationData has no expiresAt")?
        .secs();
    Ok(Fetched {
        username: user.to_string(),
        password: Secret::new(pass),
        expires_at,
    })
}

/// One line saying what went wrong, without the request or response bodies.
fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let Some(code) = se.err().code() else {
                return format!("unreadable response (HTTP {status}): {}", error_chain(e));
            };
            match se.err().message() {
                Some(m) => format!("{code}: {} (HTTP {status})", m.replace(['\n', '\r'], " ")),
                None => format!("{code} (HTTP {status})"),
            }
        }
        SdkError::TimeoutError(_) => "timed out waiting for the API (--timeout)".to_string(),
        SdkError::ResponseError(r) => format!(
            "unreadable response (HTTP {}): {}",
            r.raw().status().as_u16(),
            error_chain(e)
        ),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                "timed out connecting"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request failed"
            };
            format!("{kind}: {}", error_chain(e))
        }
        _ => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ecr_tokens() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("AWS:pass:with:colons");
        let f = decode(Some(&b64), Some(&DateTime::from_secs(1_900_000_000))).unwrap();
        assert_eq!(f.username, "AWS");
        assert_eq!(f.password.expose(), "pass:with:colons");
        assert_eq!(f.expires_at, 1_900_000_000);
        assert!(decode(None, None).is_err());
        assert!(decode(Some("!!"), Some(&DateTime::from_secs(0))).is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert!(decode(Some(&no_colon), Some(&DateTime::from_secs(0))).is_err());
        assert!(decode(Some(&b64), None).is_err());
    }
}
