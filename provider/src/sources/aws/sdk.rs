//! Amazon ECR private and ECR Public through the AWS SDK.
//!
//! The SDK is configured in one place ([`sdk_config`]): the region comes from
//! the registry host, credentials from the standard chain (environment,
//! profile, web identity/IRSA, container credentials, IMDSv2), endpoints from
//! the SDK's own settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`, profile
//! `endpoint_url`), TLS from rustls with ring, proxies from [`crate::proxy`]'s
//! policy request by request ([`ProxyRouting`]: ECR, STS and Secrets Manager
//! through the proxy unless `NO_PROXY` says otherwise; IMDS and the container
//! and Pod Identity credential endpoints never). Throttling and 5xx are retried by
//! the SDK's standard mode (exponential backoff with jitter); every attempt and
//! the whole operation are bounded by the run's deadline.
//!
//! For a pod's service account (KEP-4412, see [`crate::workload`]) the
//! service-account token is first exchanged with `sts:AssumeRoleWithWebIdentity`
//! (an unsigned call, in the registry's region) and the ECR call is signed with
//! the session's credentials, held in memory only. The ECR token is then not
//! used past that session's expiry.
//!
//! A token with the EKS Pod Identity audience is exchanged instead with the
//! EKS Auth API's `AssumeRoleForPodIdentity` (signed with the node's
//! credentials, in the cluster's region; see [`super::pod_identity`]), and the
//! ECR call is signed with the session it returns, exactly as above.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::DateTime;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::service_config::ServiceConfigKey;

use aws_sdk_ecr::config::Credentials;

use super::pod_identity::{self, EksAuthOutcome, PodIdentity};
use super::{AwsRole, EcrRegistry};
use crate::deadline::Deadline;
use crate::error::{Detail, Kind};
use crate::proxy::{self, ProxyUrl};
use crate::resolve::SdkResolver;
use crate::secret::Secret;
use crate::sources::{Fetched, SourceError, error_chain};
use crate::workload::{Identity, ServiceAccount, Workload};

/// ECR Public's API lives in us-east-1 only.
const ECR_PUBLIC_REGION: &str = "us-east-1";

/// Fetches an ECR token, with the node's credentials or, for a pod's
/// service account, with a role assumed by `AssumeRoleWithWebIdentity` or
/// the session of its EKS Pod Identity association.
pub fn fetch(
    registry: Option<&EcrRegistry>,
    workload: Option<&Workload>,
    deadline: &Deadline,
) -> Result<Fetched, SourceError> {
    let step = match registry {
        Some(r) => private_step(r),
        None => format!("ecr-public GetAuthorizationToken (region {ECR_PUBLIC_REGION})"),
    };
    let region = match registry {
        Some(r) => r.region.as_str(),
        None => ECR_PUBLIC_REGION,
    };
    let fips = registry.is_some_and(|r| r.fips);
    let creds = match workload {
        Some(w) => pod_session(w, region, fips, deadline)?,
        None => None,
    };
    let mut fetched = block_on(
        step,
        deadline,
        fetch_async(registry, creds.as_ref(), deadline),
    )?;
    // The ECR token is not used past the session that signed for it.
    if let Some(exp) = creds.as_ref().and_then(|c| c.expiry()) {
        let secs = exp
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        fetched.expires_at = fetched.expires_at.min(secs);
    }
    Ok(fetched)
}

/// The session that signs the ECR call for a pod: an assumed role's, or its
/// Pod Identity association's (then, without an association, the fallbacks
/// of [`super::pod_identity`]). `None`: the node's own credentials.
fn pod_session(
    w: &Workload,
    region: &str,
    fips: bool,
    deadline: &Deadline,
) -> Result<Option<Credentials>, SourceError> {
    if let Some(role) = w.identity.as_any().downcast_ref::<AwsRole>() {
        return web_identity(w, role, region, fips, deadline).map(Some);
    }
    let Some(pi) = w.identity.as_any().downcast_ref::<PodIdentity>() else {
        return Err(SourceError::new(
            "ECR",
            format!("{} names no AWS role", w.account),
        ));
    };
    let step = format!(
        "eks-auth AssumeRoleForPodIdentity for {} (cluster {}, region {})",
        w.account,
        pi.cluster,
        pi.region.as_deref().unwrap_or("from the AWS region chain")
    );
    let answer = block_on(
        step.clone(),
        deadline,
        assume_role_for_pod_identity(pi, &w.account, &w.token, deadline),
    )?;
    let upstream = match answer {
        Ok(creds) => return Ok(Some(creds)),
        Err(upstream) => upstream,
    };
    match &pi.fallback {
        Some(role) => {
            tracing::info!(
                "{}: no EKS Pod Identity association in cluster {}; using {}",
                w.account,
                pi.cluster,
                role.describe()
            );
            web_identity(w, role, region, fips, deadline).map(Some)
        }
        None if pi.fallback_to_node => {
            tracing::warn!(
                "{}: no EKS Pod Identity association in cluster {} and no role annotation; using the node's identity (--service-account-fallback=node)",
                w.account,
                pi.cluster
            );
            Ok(None)
        }
        None => Err(SourceError::refused(
            step,
            pod_identity::no_association(pi, &w.account, &upstream),
        )),
    }
}

/// `sts:AssumeRoleWithWebIdentity` for `role` with the pod's token.
fn web_identity(
    w: &Workload,
    role: &AwsRole,
    region: &str,
    fips: bool,
    deadline: &Deadline,
) -> Result<Credentials, SourceError> {
    let web = WebIdentity {
        account: w.account.to_string(),
        subject: format!(
            "system:serviceaccount:{}:{}",
            w.account.namespace, w.account.name
        ),
        role_arn: &role.role_arn,
        session_name: &role.session_name,
        token: &w.token,
    };
    let sts_step = format!(
        "sts AssumeRoleWithWebIdentity for {} (role {}, session {}, region {region})",
        web.account, web.role_arn, web.session_name
    );
    block_on(
        sts_step,
        deadline,
        assume_role(&web, region, fips, deadline),
    )
}

/// EKS Auth `AssumeRoleForPodIdentity`, signed with the node's credentials.
/// `Ok(Err(text))`: EKS Auth knows no association for the service account
/// (its words, for the message); other failures are typed errors. The
/// session is kept in memory only.
async fn assume_role_for_pod_identity(
    pi: &PodIdentity,
    account: &ServiceAccount,
    token: &Secret,
    deadline: &Deadline,
) -> Result<Result<Credentials, String>, Detail> {
    let conf = sdk_config(pi.region.as_deref(), deadline).await;
    if conf.region().is_none() {
        return Err(Detail {
            kind: Kind::Config,
            text: "no AWS region for EKS Auth: set eksPodIdentity.region in the pullcred config, or AWS_REGION".into(),
        });
    }
    let client = aws_sdk_eksauth::Client::from_conf(
        aws_sdk_eksauth::config::Builder::from(&conf)
            .interceptor(BoundedBody)
            .interceptor(HttpsOnly)
            .build(),
    );
    tracing::debug!(cluster = %pi.cluster, region = ?conf.region(), "calling eks-auth:AssumeRoleForPodIdentity");
    let out = match client
        .assume_role_for_pod_identity()
        .cluster_name(&pi.cluster)
        .token(token.expose())
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let code = e.as_service_error().and_then(|s| s.code());
            let status = e.raw_response().map_or(0, |r| r.status().as_u16());
            let mut text = describe(&e);
            return match pod_identity::classify(code, status) {
                EksAuthOutcome::NoAssociation => Ok(Err(text)),
                EksAuthOutcome::Refused => {
                    if let Some(hint) = code.and_then(|c| pod_identity::refusal_hint(c, account)) {
                        text.push_str("; ");
                        text.push_str(&hint);
                    }
                    Err(Detail {
                        kind: Kind::Refused,
                        text,
                    })
                }
                EksAuthOutcome::Unavailable => Err(text.into()),
            };
        }
    };
    let c = out
        .credentials()
        .ok_or("EKS Auth answered with no credentials")?;
    if c.access_key_id().is_empty()
        || c.secret_access_key().is_empty()
        || c.session_token().is_empty()
    {
        return Err("EKS Auth answered with empty credentials".into());
    }
    let expiry = std::time::SystemTime::try_from(*c.expiration())
        .map_err(|_| "EKS Auth answered with an unreadable expiration".to_string())?;
    // The association is the service account's: an answer for another one
    // is not used, whatever it holds.
    if let Some(s) = out.subject()
        && (s.namespace() != account.namespace || s.service_account() != account.name)
    {
        return Err(format!(
            "EKS Auth answered for service account {}/{}, not for the token's {account}; not using it",
            crate::logging::echo(s.namespace()),
            crate::logging::echo(s.service_account())
        )
        .into());
    }
    tracing::debug!(
        role = out.assumed_role_user().map(|u| u.arn()),
        association = out.pod_identity_association().map(|a| a.association_id()),
        "EKS Pod Identity session"
    );
    Ok(Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        Some(expiry),
        "pullcred-eks-pod-identity",
    )))
}

/// A pod's request to assume a role with its service-account token.
struct WebIdentity<'a> {
    account: String,
    /// The token's `sub`, as trust policies name it.
    subject: String,
    role_arn: &'a str,
    session_name: &'a str,
    token: &'a Secret,
}

/// `sts:AssumeRoleWithWebIdentity`: an unsigned call; the token is the proof.
/// The answer is kept in memory only.
async fn assume_role(
    w: &WebIdentity<'_>,
    region: &str,
    fips: bool,
    deadline: &Deadline,
) -> Result<Credentials, Detail> {
    let conf = sdk_config(Some(region), deadline).await;
    let mut b = aws_sdk_sts::config::Builder::from(&conf);
    if fips && !has_custom_endpoint(&conf, "STS") {
        b = b.use_fips(true);
    }
    let client =
        aws_sdk_sts::Client::from_conf(b.interceptor(BoundedBody).interceptor(HttpsOnly).build());
    tracing::debug!(role = w.role_arn, session = w.session_name, %region, "calling sts:AssumeRoleWithWebIdentity");
    let out = client
        .assume_role_with_web_identity()
        .role_arn(w.role_arn)
        .role_session_name(w.session_name)
        .web_identity_token(w.token.expose())
        .send()
        .await
        .map_err(|e| {
            let mut d = describe(&e);
            let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
            let kind = if matches!(
                code,
                "AccessDenied" | "InvalidIdentityToken" | "ExpiredTokenException" | "IDPRejectedClaim"
            ) {
                Kind::Refused
            } else {
                Kind::Unavailable
            };
            if code == "AccessDenied" {
                d.push_str(&format!(
                    "; the role's trust policy must allow sts:AssumeRoleWithWebIdentity from the cluster's OIDC provider for sub {} and the token's audience",
                    w.subject
                ));
            } else if code == "InvalidIdentityToken" {
                d.push_str("; is the cluster's OIDC issuer registered as an IAM identity provider, and the kubelet's tokenAttributes audience one it accepts (sts.amazonaws.com)?");
            }
            Detail { kind, text: d }
        })?;
    let c = out
        .credentials()
        .ok_or("STS answered with no Credentials")?;
    let expiry = std::time::SystemTime::try_from(*c.expiration())
        .map_err(|_| "STS answered with an unreadable Expiration".to_string())?;
    if c.access_key_id().is_empty() || c.secret_access_key().is_empty() {
        return Err("STS answered with empty credentials".into());
    }
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        Some(expiry),
        "pullcred-web-identity",
    ))
}

/// Reads a registry credential from AWS Secrets Manager, in the JSON shape
/// that ECR pull-through cache rules use: `{"username": .., "accessToken": ..}`.
/// The region comes from the secret's ARN, else from the SDK's region chain.
pub fn fetch_secret(secret_id: &str, deadline: &Deadline) -> Result<(String, Secret), SourceError> {
    let region = arn_region(secret_id);
    let step = match region {
        Some(r) => format!("secretsmanager GetSecretValue {secret_id} (region {r})"),
        None => format!("secretsmanager GetSecretValue {secret_id}"),
    };
    block_on(step, deadline, async {
        let conf = sdk_config(region, deadline).await;
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&conf)
                .interceptor(BoundedBody)
                .interceptor(HttpsOnly)
                .build(),
        );
        tracing::debug!(secret = secret_id, "calling secretsmanager:GetSecretValue");
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let text = out
            .secret_string()
            .ok_or("the secret has no SecretString")?;
        parse_registry_secret(text)
    })
}

/// `arn:aws:secretsmanager:us-east-1:123456789012:secret:name` → `us-east-1`.
fn arn_region(id: &str) -> Option<&str> {
    let mut parts = id.split(':');
    (parts.next()? == "arn").then_some(())?;
    let _partition = parts.next()?;
    (parts.next()? == "secretsmanager").then_some(())?;
    parts.next().filter(|r| !r.is_empty())
}

fn parse_registry_secret(text: &str) -> Result<(String, Secret), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        username: Option<String>,
        access_token: Option<Secret>,
    }
    let s: Shape = serde_json::from_str(text).map_err(|_| {
        "the secret is not JSON of the form {\"username\": .., \"accessToken\": ..}".to_string()
    })?;
    match (s.username, s.access_token) {
        (Some(u), Some(t)) if !u.is_empty() && !t.is_empty() => Ok((u, t)),
        _ => Err("the secret lacks a non-empty \"username\" or \"accessToken\"".into()),
    }
}

/// Runs one SDK call on a current-thread runtime built for it, bounded by the
/// deadline. Only a cache miss gets here.
fn block_on<T, E: Into<Detail>>(
    step: String,
    deadline: &Deadline,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SourceError> {
    let fail = SourceError::at(&step);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
    let budget = deadline.remaining();
    let result = rt.block_on(async {
        match tokio::time::timeout(budget, work).await {
            Ok(r) => r.map_err(|e| e.into().at(&step)),
            Err(_) => Err(fail(deadline.timed_out())),
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

async fn fetch_async(
    registry: Option<&EcrRegistry>,
    creds: Option<&Credentials>,
    deadline: &Deadline,
) -> Result<Fetched, String> {
    match registry {
        Some(reg) => {
            let conf = sdk_config(Some(&reg.region), deadline).await;
            let mut b = aws_sdk_ecr::config::Builder::from(&conf);
            if let Some(c) = creds {
                b = b.credentials_provider(c.clone());
            }
            if has_custom_endpoint(&conf, "ECR") {
                // The SDK rejects FIPS/dual-stack together with a custom
                // endpoint; an operator's endpoint wins.
                tracing::debug!(
                    "custom ECR endpoint configured; FIPS/dual-stack host routing not applied"
                );
            } else {
                b = b.use_fips(reg.fips).use_dual_stack(reg.dual_stack);
            }
            let client = aws_sdk_ecr::Client::from_conf(
                b.interceptor(BoundedBody).interceptor(HttpsOnly).build(),
            );
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
            super::decode_ecr_token(
                data.authorization_token(),
                data.expires_at().map(DateTime::secs),
            )
        }
        None => {
            let conf = sdk_config(Some(ECR_PUBLIC_REGION), deadline).await;
            let mut b = aws_sdk_ecrpublic::config::Builder::from(&conf);
            if let Some(c) = creds {
                b = b.credentials_provider(c.clone());
            }
            let client = aws_sdk_ecrpublic::Client::from_conf(
                b.interceptor(BoundedBody).interceptor(HttpsOnly).build(),
            );
            tracing::debug!("calling ecr-public:GetAuthorizationToken");
            let out = client
                .get_authorization_token()
                .send()
                .await
                .map_err(|e| describe(&e))?;
            let data = out
                .authorization_data()
                .ok_or("ECR Public answered with no authorizationData")?;
            super::decode_ecr_token(
                data.authorization_token(),
                data.expires_at().map(DateTime::secs),
            )
        }
    }
}

/// The one place the SDK is configured. `None` leaves the region to the SDK's
/// own chain (AWS_REGION, profile, IMDS).
async fn sdk_config(region: Option<&str>, deadline: &Deadline) -> SdkConfig {
    let remaining = deadline.remaining();
    // Leave the SDK a little less than our deadline so that its error, which
    // says more, arrives before our own timeout fires.
    let operation = remaining
        .saturating_sub(Duration::from_millis(300))
        .max(Duration::from_millis(100));
    let http = ProxyRouting::client(proxy::global(), deadline);
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader
        .retry_config(
            // The SDK's standard 3 attempts: the fleet simulation
            // (bench/fleet_sim.py) showed 5 attempts per exec turning an
            // outage into a storm of failed calls; a transient 5xx or
            // throttle still gets two retries within the deadline.
            RetryConfig::standard()
                .with_max_attempts(3)
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

fn rustls_ring() -> tls::Provider {
    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)
}

/// The SDK's HTTP client, routed by [`crate::proxy`]'s policy request by
/// request: a direct client (the SDK's own), and for each configured proxy a
/// client with the SDK's own proxy support (CONNECT tunnels for https), told
/// to send everything it is given through that proxy. The credential chain's
/// IMDS and container providers share this client, and the policy never sends
/// their hosts to a proxy.
#[derive(Debug)]
struct ProxyRouting {
    direct: SharedHttpClient,
    proxied: Vec<(ProxyUrl, SharedHttpClient)>,
    policy: &'static proxy::Policy,
}

impl ProxyRouting {
    fn client(policy: &'static proxy::Policy, deadline: &Deadline) -> SharedHttpClient {
        // Names through pullcred's own resolver, never getaddrinfo.
        let dns = SdkResolver {
            deadline: *deadline,
        };
        let direct = aws_smithy_http_client::Builder::new()
            .tls_provider(rustls_ring())
            .build_with_resolver(dns);
        if policy.is_empty() {
            return direct;
        }
        let proxied = policy
            .proxies()
            .into_iter()
            .filter_map(|p| {
                // Credentials go in percent-encoded; the SDK decodes them.
                match ProxyConfig::all(p.url_with_credentials()) {
                    Ok(config) => Some((
                        p.clone(),
                        SharedHttpClient::new(ViaProxy {
                            config,
                            dns,
                            connectors: Default::default(),
                        }),
                    )),
                    Err(_) => {
                        tracing::warn!("{p} ({}) is not a usable proxy URL", p.var);
                        None
                    }
                }
            })
            .collect();
        SharedHttpClient::new(ProxyRouting {
            direct,
            proxied,
            policy,
        })
    }
}

impl HttpClient for ProxyRouting {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RoutedConnector {
            direct: self.direct.http_connector(settings, components),
            proxied: self.proxied.clone(),
            policy: self.policy,
            settings: settings.clone(),
            components: components.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.direct.validate_base_client_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.direct.connector_metadata()
    }
}

struct RoutedConnector {
    direct: SharedHttpConnector,
    proxied: Vec<(ProxyUrl, SharedHttpClient)>,
    policy: &'static proxy::Policy,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
}

impl std::fmt::Debug for RoutedConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedConnector")
            .field("proxies", &self.proxied.len())
            .finish()
    }
}

impl HttpConnector for RoutedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let via = match self.policy.proxy_for(request.uri()) {
            Ok(None) => return self.direct.call(request),
            Ok(Some(p)) => p,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        match self.proxied.iter().find(|(p, _)| p == via) {
            Some((p, client)) => {
                tracing::debug!(proxy = %p, "through the proxy from {}", p.var);
                client
                    .http_connector(&self.settings, &self.components)
                    .call(request)
            }
            None => HttpConnectorFuture::ready(Err(ConnectorError::user(
                format!("{via} ({}) is not a usable proxy URL", via.var).into(),
            ))),
        }
    }
}

/// The SDK's client with one proxy for every request it is given; a
/// connector per timeout settings, as the SDK's own client keeps.
struct ViaProxy {
    config: ProxyConfig,
    /// The proxy's own name is resolved here.
    dns: SdkResolver,
    connectors: std::sync::Mutex<Vec<(ConnectorKey, SharedHttpConnector)>>,
}

type ConnectorKey = (Option<Duration>, Option<Duration>);

impl std::fmt::Debug for ViaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the proxy's credentials: not printed.
        f.write_str("ViaProxy")
    }
}

impl HttpClient for ViaProxy {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut cache = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let mut b = Connector::builder();
        b.set_connector_settings(Some(settings.clone()));
        b.set_sleep_impl(components.sleep_impl());
        let c = SharedHttpConnector::new(
            b.proxy_config(self.config.clone())
                .tls_provider(rustls_ring())
                .build_with_resolver(self.dns),
        );
        cache.push((key, c.clone()));
        c
    }
}

/// Token responses are a few hundred bytes; refuse to read a body announced
/// as larger than this, so a broken or hostile endpoint cannot eat the node's
/// memory.
const MAX_BODY: u64 = 1 << 20;

#[derive(Debug)]
struct BoundedBody;

impl Intercept for BoundedBody {
    fn name(&self) -> &'static str {
        "pullcred::BoundedBody"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let len = context
            .response()
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        match len {
            Some(n) if n > MAX_BODY => {
                Err(format!("response body of {n} bytes is over the {MAX_BODY}-byte limit").into())
            }
            _ => Ok(()),
        }
    }
}

/// Every call carries a secret (a pod's token to STS) or brings one back (an
/// ECR token, a Secrets Manager secret): an endpoint override
/// (`AWS_ENDPOINT_URL*`, a profile's `endpoint_url`) must be https, or plain
/// http to loopback only ([`crate::endpoint`]). Checked before signing, so
/// nothing is sent.
#[derive(Debug)]
struct HttpsOnly;

impl Intercept for HttpsOnly {
    fn name(&self) -> &'static str {
        "pullcred::HttpsOnly"
    }

    fn read_before_signing(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        crate::endpoint::secret_destination(
            context.request().uri(),
            "the AWS endpoint (AWS_ENDPOINT_URL*, profile endpoint_url)",
        )
        .map(|_| ())
        .map_err(Into::into)
    }
}

/// What the SDK's deserializer said about an unreadable answer, cut before
/// any `Debug` dump of the parsed input (which quotes the response) and to
/// at most 160 characters.
fn parse_error(e: &(dyn std::error::Error + 'static)) -> String {
    let chain = error_chain(e);
    // `Name { field: ... }`: where a Debug dump of parsed input begins.
    let cut = chain.split(" { ").next().unwrap_or("").trim_end();
    let short: String = cut.chars().take(160).collect();
    if short.len() < cut.len() || cut.len() < chain.len() {
        format!("{short}...")
    } else {
        short
    }
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
                return format!("unreadable response (HTTP {status}): {}", parse_error(e));
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
            parse_error(e)
        ),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                "timed out connecting"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request failed"
            };
            format!("{kind}: {}", proxy::scrub(&error_chain(e)))
        }
        _ => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS and dual-stack registry hosts must call the matching API
    /// endpoints: resolve them with the SDK's own rules (no network).
    #[test]
    fn fips_and_dual_stack_hosts_resolve_to_matching_api_endpoints() {
        use aws_sdk_ecr::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        let resolve = |host: &str| {
            let r = crate::sources::aws::parse_ecr_host(host).unwrap();
            let params = Params::builder()
                .region(r.region.clone())
                .use_fips(r.fips)
                .use_dual_stack(r.dual_stack)
                .build()
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(DefaultResolver::new().resolve_endpoint(&params))
                .unwrap()
                .url()
                .to_string()
        };
        let cases = [
            (
                "123456789012.dkr.ecr.us-west-2.amazonaws.com",
                "https://api.ecr.us-west-2.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                "https://api.ecr-fips.us-east-1.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                "https://api.ecr-fips.us-gov-west-1.amazonaws.com",
            ),
            (
                "123456789012.dkr-ecr.us-west-2.on.aws",
                "https://ecr.us-west-2.api.aws",
            ),
            (
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                "https://ecr-fips.us-west-2.api.aws",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "https://api.ecr.cn-north-1.amazonaws.com.cn",
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                "https://ecr.cn-north-1.api.amazonwebservices.com.cn",
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                "https://api.ecr.us-iso-east-1.c2s.ic.gov",
            ),
        ];
        for (host, want) in cases {
            assert_eq!(resolve(host), want, "{host}");
        }
    }

    /// EKS Auth lives on each partition's dual-stack suffix (the SDK's
    /// endpoint rules, as aws-sdk-go-v2 `service/eksauth/endpoints.go`).
    #[test]
    fn eks_auth_endpoints_per_partition() {
        use aws_sdk_eksauth::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        let resolve = |region: &str, fips: bool| {
            let params = Params::builder()
                .region(region.to_string())
                .use_fips(fips)
                .build()
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(DefaultResolver::new().resolve_endpoint(&params))
                .unwrap()
                .url()
                .to_string()
        };
        for (region, fips, want) in [
            ("us-west-2", false, "https://eks-auth.us-west-2.api.aws"),
            ("us-west-2", true, "https://eks-auth-fips.us-west-2.api.aws"),
            (
                "us-gov-west-1",
                false,
                "https://eks-auth.us-gov-west-1.api.aws",
            ),
            (
                "cn-north-1",
                false,
                "https://eks-auth.cn-north-1.api.amazonwebservices.com.cn",
            ),
        ] {
            assert_eq!(resolve(region, fips), want, "{region} fips={fips}");
        }
    }

    #[test]
    fn parse_errors_stop_before_debug_dumps() {
        let e = std::io::Error::other(
            "error parsing XML: invalid root, expected X got StartEl { name: Name { local: \"html\" } }",
        );
        assert_eq!(
            parse_error(&e),
            "error parsing XML: invalid root, expected X got StartEl..."
        );
        let plain = std::io::Error::other("unexpected token '<'. Expected one of '{', '['");
        assert_eq!(
            parse_error(&plain),
            "unexpected token '<'. Expected one of '{', '['"
        );
    }

    #[test]
    fn reads_secret_regions_and_shapes() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("my-secret"), None);
        assert_eq!(arn_region("arn:aws:s3:::bucket"), None);
        let (u, t) = parse_registry_secret(r#"{"username":"robot","accessToken":"tok"}"#).unwrap();
        assert_eq!((u.as_str(), t.expose()), ("robot", "tok"));
        assert!(parse_registry_secret(r#"{"username":"robot"}"#).is_err());
        let e = parse_registry_secret("secret-text-not-json").unwrap_err();
        assert!(!e.contains("secret-text"));
    }

    use crate::sources::aws::decode_ecr_token as decode;
    use base64::Engine;

    #[test]
    fn decodes_ecr_tokens() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("AWS:pass:with:colons");
        let f = decode(Some(&b64), Some(1_900_000_000)).unwrap();
        assert_eq!(f.username, "AWS");
        assert_eq!(f.password.expose(), "pass:with:colons");
        assert_eq!(f.expires_at, 1_900_000_000);
        assert!(decode(None, None).is_err());
        assert!(decode(Some("!!"), Some(0)).is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert!(decode(Some(&no_colon), Some(0)).is_err());
        assert!(decode(Some(&b64), None).is_err());
    }
}
