//! Azure Container Registry: an Entra token for the node's identity, traded
//! for an ACR refresh token, as cloud-provider-azure's acr-credential-provider
//! does, with the refresh token's own `exp` deciding how long it is cached.
//!
//! 1. Identity ([`config`]): workload identity, a service principal (secret or
//!    PEM certificate), AKS's azure.json, or the VM's managed identity; or,
//!    for a pod (KEP-4412, [`fetch_for_workload`]), its service-account token
//!    as the client assertion for the client its annotations name.
//! 2. An Entra access token for `https://containerregistry.azure.net/.default`:
//!    from IMDS (`GET /metadata/identity/oauth2/token`, `Metadata: true`) or
//!    the v2 token endpoint `{authority}/{tenant}/oauth2/v2.0/token`.
//! 3. `GET https://<registry>/v2/`: a 401 whose `WWW-Authenticate` Bearer
//!    challenge ([`crate::challenge`]) names the realm and service.
//! 4. `POST <realm host>/oauth2/exchange` (`grant_type=access_token`, `service`,
//!    `tenant`, `access_token`) returns the refresh token; the kubelet gets it
//!    as the password of user `00000000-0000-0000-0000-000000000000`.
//!
//! The Entra token goes only to an https realm on the registry's own host
//! and port, or another ACR host on 443, never to whatever host a challenge
//! names. Realms are parsed with [`crate::endpoint`] (no userinfo, exact host
//! and port) and the exchange URL is rebuilt from the parsed parts.
//!
//! Endpoints, for tests and private networks:
//! - `PULLCRED_AZURE_IMDS_ENDPOINT` (default `http://169.254.169.254`);
//! - `AZURE_AUTHORITY_HOST` (Entra; default from azure.json's `cloud`);
//! - `PULLCRED_ACR_ENDPOINTS`: `host[:port]=URL,...` (`*` for every host):
//!   where to reach a registry or realm host instead of `https://host[:port]`.
//!
//! `AZURE_AUTHORITY_HOST` and `PULLCRED_ACR_ENDPOINTS` receive secrets: they
//! must be https, or plain http to loopback only.

use crate::challenge;
mod config;
pub mod jwt;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{AZURE_TENANT_ANNOTATION, AcrRegistry, AzureClient, parse_acr_host};
use crate::deadline::Deadline;
use crate::encode::percent_encode;
use crate::endpoint::{self, Destination, Scheme};
use crate::http::{self, Client, HttpErrorKind, Response};
use crate::private_file::{self, Limits};
use crate::secret::Secret;
use crate::settings::AzureSettings;
use crate::sources::{Fetched, SourceError};
use crate::workload::Workload;
use config::{AzureJson, Credential, UserAssigned};

/// The resource (IMDS) and scope (Entra v2) of ACR's data plane.
pub const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The user name ACR expects with a refresh token.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
pub const DEFAULT_CONFIG: &str = "/etc/kubernetes/azure.json";
pub const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// ACR's documented refresh-token life, assumed when a token has no `exp`.
pub const FALLBACK_LIFE_SECS: i64 = 3 * 3600;
const ATTEMPTS: u32 = 3;
const MAX_FILE: u64 = 1 << 20;

/// Environment facts that decide the Azure identity and endpoints, for the
/// cache key. Identifiers and paths only: never a secret.
pub const IDENTITY_ENV: [&str; 7] = [
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "PULLCRED_AZURE_IMDS_ENDPOINT",
    "PULLCRED_ACR_ENDPOINTS",
];

/// The cache key's Azure parts: the login server, identity
/// variables, and azure.json's path and the SHA-256 of its content.
pub fn cache_parts(reg: &AcrRegistry, settings: &AzureSettings) -> Vec<(&'static str, String)> {
    let mut parts = vec![("acr-login-server", reg.login_server.clone())];
    for name in IDENTITY_ENV {
        if let Some(v) = std::env::var_os(name) {
            parts.push((name, v.to_string_lossy().into_owned()));
        }
    }
    if let Some(path) = config_path(settings) {
        parts.push(("azure-config", path.display().to_string()));
        let digest = read_private(&path)
            .map(|b| format!("{:x}", Sha256::digest(&b)))
            .unwrap_or_else(|_| "unreadable".into());
        parts.push(("azure-config-sha256", digest));
    }
    parts
}

/// Which identity a fetch would use, for `pullcred doctor`; no network.
pub fn describe_identity(settings: &AzureSettings) -> String {
    match identity(settings) {
        Ok(i) => i.describe(),
        Err(e) => format!("no usable Azure identity: {e}"),
    }
}

pub fn fetch(
    reg: &AcrRegistry,
    settings: &AzureSettings,
    deadline: &Deadline,
) -> Result<Fetched, SourceError> {
    let identity = identity(settings)?;
    fetch_as(reg, &identity, deadline)
}

/// A pod's own identity: its service-account token is the client assertion
/// for the client named by `kubernetes.azure.com/acr-client-id`, in the tenant
/// of `kubernetes.azure.com/acr-tenant-id` or else the node's.
pub fn fetch_for_workload(
    reg: &AcrRegistry,
    settings: &AzureSettings,
    w: &Workload,
    deadline: &Deadline,
) -> Result<Fetched, SourceError> {
    let Some(AzureClient { client_id, tenant }) = w.identity.as_any().downcast_ref::<AzureClient>()
    else {
        return Err(SourceError::new(
            "ACR",
            format!("{} names no Azure client", w.account),
        ));
    };
    let step = || format!("choosing the Azure identity of {}", w.account);
    let json = read_config(settings)?;
    let env = |k: &str| std::env::var(k).ok();
    let (authority, node_tenant) =
        config::authority_and_tenant(&env, json.as_ref().map(|(p, j)| (p.as_path(), j)))
            .map_err(|detail| SourceError::new(step(), detail))?;
    let tenant = tenant.clone().or(node_tenant).ok_or_else(|| SourceError::new(step(), format!(
            "no tenant: annotate the service account with {AZURE_TENANT_ANNOTATION}, or configure the node's (AZURE_TENANT_ID, azure.json tenantId)"
        )))?;
    let identity = config::Identity {
        credential: Credential::ServiceAccount {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            token: w.token.clone(),
        },
        authority,
        tenant: Some(tenant),
        origin: format!("the annotations of {}", w.account),
    };
    fetch_as(reg, &identity, deadline)
}

fn fetch_as(
    reg: &AcrRegistry,
    identity: &config::Identity,
    deadline: &Deadline,
) -> Result<Fetched, SourceError> {
    tracing::debug!(identity = %identity.describe(), acr = %reg.login_server, "ACR: getting an Entra token");
    let endpoints = Endpoints::from_env()?;
    let client = Client::new(deadline);
    let access = entra_token(&client, deadline, identity)?;
    let tenant = identity
        .tenant
        .clone()
        .or_else(|| jwt::string_claim(access.expose(), "tid"));
    let bearer = challenge(&client, deadline, &endpoints, &reg.login_server)?;
    let refresh = exchange(
        &client,
        deadline,
        &endpoints,
        &reg.login_server,
        &bearer,
        tenant.as_deref(),
        &access,
    )?;
    let expires_at = match jwt::expiry(refresh.expose()) {
        Some(exp) => exp,
        None => {
            tracing::warn!(
                "ACR {}: the refresh token carries no readable exp claim; assuming ACR's documented {}h life",
                reg.login_server,
                FALLBACK_LIFE_SECS / 3600
            );
            deadline.now_unix() + FALLBACK_LIFE_SECS
        }
    };
    Ok(Fetched {
        username: ACR_USERNAME.into(),
        password: refresh,
        expires_at,
    })
}

// ---------------------------------------------------------------------------
// identity and files

fn config_path(settings: &AzureSettings) -> Option<PathBuf> {
    match &settings.config {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG);
            std::fs::symlink_metadata(&p).is_ok().then_some(p)
        }
    }
}

fn identity(settings: &AzureSettings) -> Result<config::Identity, SourceError> {
    let json = read_config(settings)?;
    let env = |k: &str| std::env::var(k).ok();
    config::resolve(&env, json.as_ref().map(|(p, j)| (p.as_path(), j)))
        .map_err(|detail| SourceError::new("choosing the Azure identity", detail))
}

/// azure.json, when one applies: its path and content.
fn read_config(settings: &AzureSettings) -> Result<Option<(PathBuf, AzureJson)>, SourceError> {
    Ok(match config_path(settings) {
        Some(path) => {
            let step = || format!("reading the Azure config {}", path.display());
            let bytes = read_private(&path).map_err(|detail| SourceError::new(step(), detail))?;
            let parsed =
                AzureJson::parse(&bytes).map_err(|detail| SourceError::new(step(), detail))?;
            Some((path, parsed))
        }
        None => None,
    })
}

/// Reads a file that holds a credential (azure.json, a client certificate)
/// through one handle: a regular file, not a symlink, ours and closed to
/// other users (see [`crate::private_file`]).
fn read_private(path: &Path) -> Result<Vec<u8>, String> {
    private_file::open_regular(path, Limits::private(MAX_FILE)).map_err(|e| e.to_string())
}

/// Reads a token file (the federated token): a regular file, through one
/// handle; symlinks are followed, as a projected token is one.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    private_file::open_regular(path, Limits::shared(MAX_FILE)).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Entra

fn entra_token(
    client: &Client,
    deadline: &Deadline,
    identity: &config::Identity,
) -> Result<Secret, SourceError> {
    let (tenant, client_id) = match &identity.credential {
        Credential::ManagedIdentity(id) => return imds_token(deadline, id.as_ref()),
        Credential::Workload {
            tenant, client_id, ..
        }
        | Credential::Secret {
            tenant, client_id, ..
        }
        | Credential::Certificate {
            tenant, client_id, ..
        }
        | Credential::ServiceAccount {
            tenant, client_id, ..
        } => (tenant, client_id),
    };
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        identity.authority,
        percent_encode(tenant)
    );
    let step = format!("Entra token for {} ({url})", identity.describe());
    let fail = SourceError::at(&step);
    const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let assertion: Secret;
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", ACR_SCOPE),
    ];
    match &identity.credential {
        Credential::Secret { secret, .. } => form.push(("client_secret", secret.expose())),
        Credential::Workload { token_file, .. } => {
            let bytes = read_limited(token_file).map_err(|e| {
                SourceError::new(
                    format!("reading the federated token file {}", token_file.display()),
                    e,
                )
            })?;
            assertion = Secret::new(String::from_utf8_lossy(&bytes).trim());
            if assertion.is_empty() {
                return Err(SourceError::new(
                    format!("reading the federated token file {}", token_file.display()),
                    "the file is empty",
                ));
            }
            form.push(("client_assertion_type", JWT_BEARER));
            form.push(("client_assertion", assertion.expose()));
        }
        Credential::Certificate { pem_file, .. } => {
            let read_step = format!("reading the client certificate {}", pem_file.display());
            let pem = read_private(pem_file)
                .map_err(|detail| SourceError::new(read_step.clone(), detail))?;
            let key = jwt::CertificateKey::from_pem(&pem)
                .map_err(|detail| SourceError::new(read_step.clone(), detail))?;
            tracing::debug!(x5t = key.thumbprint(), "signing a client assertion");
            assertion = Secret::new(
                key.assertion(client_id, &url, deadline.now_unix())
                    .map_err(|e| fail(e.to_string()))?,
            );
            form.push(("client_assertion_type", JWT_BEARER));
            form.push(("client_assertion", assertion.expose()));
        }
        Credential::ServiceAccount { token, .. } => {
            form.push(("client_assertion_type", JWT_BEARER));
            form.push(("client_assertion", token.expose()));
        }
        Credential::ManagedIdentity(_) => unreachable!("handled above"),
    }
    let resp = http::with_retries(deadline, ATTEMPTS, || client.post_form(&url, &[], &form))
        .map_err(|e| fail(http::describe_error(&e, deadline)))?;
    // Entra refusing the pod's token is an answer, not an outage.
    let kind = if matches!(identity.credential, Credential::ServiceAccount { .. })
        && crate::error::is_refusal_status(resp.status)
    {
        crate::error::Kind::Refused
    } else {
        crate::error::Kind::Unavailable
    };
    access_token(&resp).map_err(|d| fail(d).with_kind(kind))
}

/// IMDS is asked directly, never through a proxy: a proxy must not see, or
/// answer, a token request.
fn imds_token(deadline: &Deadline, id: Option<&UserAssigned>) -> Result<Secret, SourceError> {
    let client = Client::direct(deadline);
    let base = std::env::var("PULLCRED_AZURE_IMDS_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| IMDS_DEFAULT.into());
    let base = base.trim_end_matches('/');
    let mut url = format!(
        "{base}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
        percent_encode(ACR_RESOURCE)
    );
    let who = match id {
        None => "the system-assigned managed identity".to_string(),
        Some(UserAssigned::ClientId(c)) => {
            url.push_str(&format!("&client_id={}", percent_encode(c)));
            format!("managed identity {c} (client ID)")
        }
        Some(UserAssigned::ResourceId(r)) => {
            url.push_str(&format!("&msi_res_id={}", percent_encode(r)));
            format!("managed identity {r}")
        }
    };
    let step = format!("Entra token from IMDS for {who} ({base})");
    let fail = SourceError::at(&step);
    let resp = http::with_retries(deadline, ATTEMPTS, || {
        client.get(&url, &[("Metadata", "true")])
    })
    .map_err(|e| {
        let mut d = http::describe_error(&e, deadline);
        if matches!(e.kind, HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Dns) {
            d.push_str(" (is this an Azure VM with a managed identity? otherwise configure workload identity, a service principal or azure.json)");
        }
        fail(d)
    })?;
    access_token(&resp).map_err(fail)
}

fn access_token(resp: &Response) -> Result<Secret, String> {
    if !resp.is_success() {
        return Err(http::status_detail(resp));
    }
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: Secret,
    }
    let t: Token = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "HTTP {} with an unreadable token response: {e}",
            resp.status
        )
    })?;
    if t.access_token.is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    Ok(t.access_token)
}

// ---------------------------------------------------------------------------
// ACR

/// `PULLCRED_ACR_ENDPOINTS`: where to reach a registry host.
#[derive(Debug)]
struct Endpoints(Vec<(String, String)>);

impl Endpoints {
    fn from_env() -> Result<Endpoints, SourceError> {
        let raw = std::env::var("PULLCRED_ACR_ENDPOINTS").unwrap_or_default();
        Endpoints::parse(&raw)
            .map_err(|detail| SourceError::new("reading PULLCRED_ACR_ENDPOINTS", detail))
    }

    /// Each URL receives Entra tokens: https, or http to loopback only
    /// ([`endpoint::secret_destination`]); kept as its rebuilt origin.
    fn parse(raw: &str) -> Result<Endpoints, String> {
        let mut out = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, url) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not host=URL"))?;
            let d = endpoint::secret_destination(url.trim(), "PULLCRED_ACR_ENDPOINTS URL")?;
            if d.path_and_query != "/" {
                return Err(format!(
                    "{:?} must be scheme://host[:port], no path",
                    url.trim()
                ));
            }
            out.push((host.trim().to_ascii_lowercase(), d.origin()));
        }
        Ok(Endpoints(out))
    }

    /// `scheme://authority` to reach `authority` (`host[:port]`).
    fn base(&self, authority: &str) -> String {
        let host = authority.split(':').next().unwrap_or(authority);
        for key in [authority, host, "*"] {
            if let Some((_, url)) = self.0.iter().find(|(k, _)| k == key) {
                return url.clone();
            }
        }
        format!("https://{authority}")
    }
}

/// The `/v2/` API base of an ACR login server as pullcred reaches it
/// (`PULLCRED_ACR_ENDPOINTS` applied), for `pullcred doctor`.
pub fn registry_api(login_server: &str) -> Result<String, SourceError> {
    Ok(format!("{}/v2/", Endpoints::from_env()?.base(login_server)))
}

fn challenge(
    client: &Client,
    deadline: &Deadline,
    endpoints: &Endpoints,
    login_server: &str,
) -> Result<challenge::Bearer, SourceError> {
    let url = format!("{}/v2/", endpoints.base(login_server));
    let step = format!("ACR challenge ({url})");
    let fail = SourceError::at(&step);
    let resp = http::with_retries(deadline, ATTEMPTS, || client.get(&url, &[]))
        .map_err(|e| fail(http::describe_error(&e, deadline)))?;
    if resp.status != 401 {
        return Err(fail(format!(
            "expected HTTP 401 with a Bearer challenge, got {}",
            http::status_detail(&resp)
        )));
    }
    let header = resp
        .header("www-authenticate")
        .ok_or_else(|| fail("HTTP 401 without a WWW-Authenticate header".into()))?;
    let bearer = challenge::bearer(header).map_err(fail)?;
    tracing::debug!(realm = %bearer.realm, service = %bearer.service, "ACR challenge");
    Ok(bearer)
}

/// The `/oauth2/exchange` URL on the realm's host, if the realm is one we
/// may send an Entra token to: https, no userinfo, and on the login server's
/// own host and port or on another ACR host at port 443. The URL is rebuilt
/// from the parsed realm, never cut out of its text.
fn exchange_url(endpoints: &Endpoints, login_server: &str, realm: &str) -> Result<String, String> {
    let r = acr_realm(login_server, realm)?;
    let url = format!("{}/oauth2/exchange", endpoints.base(&r.authority()));
    // Endpoints were checked when read; a fallback is the realm's https origin.
    endpoint::secret_destination(&url, "the ACR token exchange URL").map(|d| d.url())
}

/// The realm, parsed, if it may receive a token for `login_server` (see
/// [`exchange_url`]).
fn acr_realm(login_server: &str, realm: &str) -> Result<Destination, String> {
    const WHAT: &str = "the challenge's realm";
    let refuse = |why: &str| {
        Err(format!(
            "{WHAT} {:?} {why}; refusing to send it a token",
            realm.chars().take(200).collect::<String>()
        ))
    };
    let r = match endpoint::parse(realm, WHAT) {
        Ok(r) => r,
        Err(e) => return Err(format!("{e}; refusing to send it a token")),
    };
    if r.scheme != Scheme::Https {
        return refuse("is not https");
    }
    let login: Destination =
        endpoint::parse(&format!("https://{login_server}/"), "the login server")?;
    let own = r.same_host_and_port(&login);
    let other_acr = parse_acr_host(&r.host).is_some() && r.port == Scheme::Https.default_port();
    if !own && !other_acr {
        return refuse(&format!(
            "is neither on {} nor an ACR host on port 443",
            login.authority()
        ));
    }
    Ok(r)
}

/// The token service URL of an ACR challenge's realm as pullcred reaches it
/// (`PULLCRED_ACR_ENDPOINTS` applied), under the exchange's rule, for
/// `pullcred doctor`.
pub fn realm_url(login_server: &str, _registry_api: &str, realm: &str) -> Result<String, String> {
    let endpoints = Endpoints::from_env().map_err(|e| e.to_string())?;
    let r = acr_realm(login_server, realm)?;
    let url = format!("{}{}", endpoints.base(&r.authority()), r.path_and_query);
    endpoint::secret_destination(&url, "the ACR token service URL").map(|d| d.url())
}

fn exchange(
    client: &Client,
    deadline: &Deadline,
    endpoints: &Endpoints,
    login_server: &str,
    bearer: &challenge::Bearer,
    tenant: Option<&str>,
    access: &Secret,
) -> Result<Secret, SourceError> {
    let url = exchange_url(endpoints, login_server, &bearer.realm)
        .map_err(|detail| SourceError::new(format!("ACR challenge ({login_server})"), detail))?;
    let step = format!("ACR token exchange ({url})");
    let fail = SourceError::at(&step);
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", bearer.service.as_str()),
        ("access_token", access.expose()),
    ];
    if let Some(t) = tenant {
        form.push(("tenant", t));
    }
    let resp = http::with_retries(deadline, ATTEMPTS, || client.post_form(&url, &[], &form))
        .map_err(|e| fail(http::describe_error(&e, deadline)))?;
    if !resp.is_success() {
        return Err(fail(http::status_detail(&resp)));
    }
    #[derive(serde::Deserialize)]
    struct Exchanged {
        refresh_token: Option<Secret>,
    }
    let e: Exchanged = serde_json::from_slice(&resp.body)
        .map_err(|e| fail(format!("HTTP {} with an unreadable body: {e}", resp.status)))?;
    match e.refresh_token {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(fail("the response has no refresh_token".into())),
    }
}

// ---------------------------------------------------------------------------
// helpers

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_map_hosts_ports_and_star() {
        let e = Endpoints::parse(
            "a.azurecr.io=https://127.0.0.1:1, b.azurecr.io:8443=http://127.0.0.1:2/ ,*=https://X:3",
        )
        .unwrap();
        assert_eq!(e.base("a.azurecr.io"), "https://127.0.0.1:1");
        assert_eq!(e.base("a.azurecr.io:443"), "https://127.0.0.1:1");
        assert_eq!(e.base("b.azurecr.io:8443"), "http://127.0.0.1:2");
        assert_eq!(e.base("c.azurecr.io"), "https://x:3");
        let none = Endpoints::parse("").unwrap();
        assert_eq!(none.base("r.azurecr.io:5000"), "https://r.azurecr.io:5000");
        for bad in [
            "a",
            "a=ftp://x",
            "a=https://x/path",
            "a=https://",
            "a=https://u@x",
            "a=http://h:2",
            "a=http://10.0.0.1",
        ] {
            assert!(Endpoints::parse(bad).is_err(), "{bad}");
        }
        let e = Endpoints::parse("a=http://acr.internal:8080").unwrap_err();
        assert!(
            e.contains("PULLCRED_ACR_ENDPOINTS") && e.contains("plain http"),
            "{e}"
        );
    }

    #[test]
    fn the_token_goes_only_to_https_acr_realms() {
        let e = Endpoints::parse("").unwrap();
        assert_eq!(
            exchange_url(&e, "r.azurecr.io", "https://r.azurecr.io/oauth2/token").unwrap(),
            "https://r.azurecr.io/oauth2/exchange"
        );
        assert_eq!(
            exchange_url(
                &e,
                "r.azurecr.io:443",
                "https://r.azurecr.io:443/oauth2/token?x=1"
            )
            .unwrap(),
            "https://r.azurecr.io:443/oauth2/exchange"
        );
        // a geo-replica's realm on the home registry
        assert_eq!(
            exchange_url(
                &e,
                "r.westus.geo.azurecr.io",
                "https://r.azurecr.io/oauth2/token"
            )
            .unwrap(),
            "https://r.azurecr.io/oauth2/exchange"
        );
        // another ACR host, on 443 only
        assert_eq!(
            exchange_url(&e, "r.azurecr.io", "https://o.azurecr.io:443/oauth2/token").unwrap(),
            "https://o.azurecr.io:443/oauth2/exchange"
        );
        // the login server's own port
        assert_eq!(
            exchange_url(
                &e,
                "r.azurecr.io:8443",
                "https://R.AZURECR.IO:8443/oauth2/token"
            )
            .unwrap(),
            "https://r.azurecr.io:8443/oauth2/exchange"
        );
        for bad in [
            "http://r.azurecr.io/oauth2/token",
            "https://evil.io/oauth2/token",
            "https://r.azurecr.io.evil.io/oauth2/token",
            "https://evil.io#r.azurecr.io",
            "r.azurecr.io/oauth2/token",
            // userinfo: the host is evil.example
            "https://other.azurecr.io:443@evil.example/oauth2/token",
            "https://r.azurecr.io@evil.example/oauth2/token",
            "https://r.azurecr.io:443@127.0.0.1:9/oauth2/token",
            "https://r.azurecr.io\\@evil.example/oauth2/token",
            "https://r.azurecr.io%40evil.example/oauth2/token",
            // ports: another ACR host elsewhere than 443, the login server on another port
            "https://o.azurecr.io:8443/oauth2/token",
            "https://r.azurecr.io:8443/oauth2/token",
            "https://r.azurecr.io./oauth2/token",
            "https://[::1]/oauth2/token",
        ] {
            let err = exchange_url(&e, "r.azurecr.io", bad).unwrap_err();
            assert!(err.contains("refusing to send it a token"), "{bad}: {err}");
        }
        // an endpoint map cannot be bypassed by a userinfo realm either
        let mapped = Endpoints::parse("r.azurecr.io=https://127.0.0.1:1").unwrap();
        assert!(
            exchange_url(
                &mapped,
                "r.azurecr.io",
                "https://r.azurecr.io:443@127.0.0.1:2/oauth2/token"
            )
            .is_err()
        );
    }

    #[test]
    fn error_bodies_become_short_lines() {
        let r = |status, body: &str| Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            http::status_detail(&r(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#
            )),
            "HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(
            http::status_detail(&r(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
            )),
            "HTTP 401: UNAUTHORIZED: authentication required"
        );
        assert_eq!(
            http::status_detail(&r(404, "<html>secret-ish</html>")),
            "HTTP 404"
        );
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(
            percent_encode("https://containerregistry.azure.net"),
            "https%3A%2F%2Fcontainerregistry.azure.net"
        );
        assert_eq!(
            percent_encode("/subscriptions/a b"),
            "%2Fsubscriptions%2Fa%20b"
        );
    }
}
