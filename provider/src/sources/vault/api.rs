//! The Vault (and OpenBao) HTTP API calls: one login, one KV v2 read.
//!
//! - Login, `POST /v1/auth/<mount>/login`:
//!   `kubernetes` and `jwt` take `{"role", "jwt"}`
//!   (<https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#login>,
//!   <https://developer.hashicorp.com/vault/api-docs/auth/jwt#jwt-login>),
//!   `approle` takes `{"role_id", "secret_id"}`
//!   (<https://developer.hashicorp.com/vault/api-docs/auth/approle#login-with-approle>);
//!   the answer's `auth.client_token` is the Vault token and
//!   `auth.lease_duration` its life in seconds.
//! - Read, `GET /v1/<mount>/data/<path>` with `X-Vault-Token`
//!   (<https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2#read-secret-version>):
//!   the secret's fields are `data.data`.
//! - `X-Vault-Namespace` on both when the entry names a namespace
//!   (<https://developer.hashicorp.com/vault/docs/enterprise/namespaces>).
//! - Errors are `{"errors": ["..."]}`
//!   (<https://developer.hashicorp.com/vault/api-docs#error-response>).
//!
//! The Vault token, the pod's token, the AppRole secret ID and the secret's
//! values live in [`Secret`]s, only in memory; error text carries Vault's
//! error strings (with any of those values scrubbed), never a body.

use std::path::Path;

use serde::Deserialize;

use super::{VaultIdentity, kv_mount, node_mount, password_field, pod_method, pod_mount, ttl};
use super::{check_path, username_field};
use crate::deadline::Deadline;
use crate::endpoint;
use crate::error::{Kind, is_refusal_status};
use crate::http::{self, Client, HttpError, Response};
use crate::private_file::{self, Limits};
use crate::secret::Secret;
use crate::sources::{Fetched, SourceError};
use crate::workload::ServiceAccount;
use kubelet_config::pullcred::vault::{NodeAuth, VaultSource};

/// Attempts per call (5xx, 429 and connection failures are retried).
const ATTEMPTS: u32 = 3;
/// Role ID, secret ID and JWT files are small.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// A CA bundle.
const MAX_CA_BYTES: u64 = 1024 * 1024;
/// Vault's error strings shown, at most.
const MAX_ERRORS: usize = 3;

/// How pullcred logs in.
pub enum Login<'a> {
    /// With the pod's service-account token, as a role.
    Pod {
        role: &'a VaultIdentity,
        token: &'a Secret,
        account: &'a ServiceAccount,
    },
    /// As the node; `path` is the secret's path (no placeholders).
    Node { auth: &'a NodeAuth, path: String },
}

/// Logs in, reads the secret, and answers with its two fields.
pub fn fetch(e: &VaultSource, login: Login, deadline: &Deadline) -> Result<Fetched, SourceError> {
    let name = crate::logging::echo(&e.name).into_owned();
    let entry = format!("vault {name:?}");
    let base = endpoint::secret_destination(&e.address, &format!("{entry} address"))
        .map_err(|d| SourceError::config(&entry, d))?;
    let base = base.url().trim_end_matches('/').to_string();
    let namespace = super::nonblank(&e.namespace)
        .map(|ns| {
            if ns.chars().any(|c| c.is_control() || c.is_whitespace()) || ns.len() > 256 {
                Err(SourceError::config(
                    &entry,
                    "namespace is not a Vault namespace path",
                ))
            } else {
                Ok(ns.trim_matches('/'))
            }
        })
        .transpose()?;
    let client = client(e, &entry, deadline)?;
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(ns) = namespace {
        headers.push(("X-Vault-Namespace", ns));
    }

    let now = deadline.now_unix();
    let (token, token_lease, path, who) = match login {
        Login::Pod {
            role,
            token,
            account,
        } => {
            let method = pod_method(e);
            let mount = pod_mount(e);
            let step = format!(
                "{entry} {method} login at auth/{mount} as role {} for {account}",
                role.role
            );
            let bindings = if method == "jwt" {
                "bound_subject, bound_claims"
            } else {
                "bound_service_account_names, bound_service_account_namespaces"
            };
            let audience = if method == "jwt" {
                "bound_audiences"
            } else {
                "audience"
            };
            let hint = format!(
                "is Vault role {:?} bound to this service account ({bindings}), and does the role's {audience} match the token's audience (tokenAttributes.serviceAccountTokenAudience in the kubelet's credential provider config)?",
                role.role
            );
            let body = Secret::new(
                serde_json::json!({"role": role.role, "jwt": token.expose()}).to_string(),
            );
            let (t, lease) = login_call(
                &client,
                &base,
                mount,
                &headers,
                &body,
                &[token.expose()],
                &step,
                &hint,
                deadline,
            )?;
            (t, lease, role.path.clone(), format!("role {}", role.role))
        }
        Login::Node { auth, path } => {
            let mount = node_mount(e);
            let (body, scrub, step, hint, who) = node_body(&entry, auth, mount)?;
            let scrub: Vec<&str> = scrub.iter().map(|s| s.expose()).collect();
            let (t, lease) = login_call(
                &client, &base, mount, &headers, &body, &scrub, &step, &hint, deadline,
            )?;
            (t, lease, path, who)
        }
    };

    let mount = kv_mount(e);
    check_path(mount).map_err(|d| SourceError::config(format!("{entry} secret.mount"), d))?;
    check_path(&path).map_err(|d| SourceError::config(format!("{entry} secret.path"), d))?;
    let step = format!("{entry} read of KV v2 secret {mount}/data/{path} as {who}");
    let url = format!("{base}/v1/{mount}/data/{path}");
    let mut read_headers = headers.clone();
    read_headers.push(("X-Vault-Token", token.expose()));
    tracing::debug!(url = %url, "reading the Vault secret");
    let resp = call(deadline, &step, || client.get(&url, &read_headers))?;
    let scrub = [token.expose()];
    if !resp.is_success() {
        let detail = vault_errors(&resp, &scrub);
        return Err(match resp.status {
            404 => SourceError::config(
                &step,
                format!(
                    "{detail}: no secret at path {path:?} of mount {mount:?}; is {mount:?} a KV version 2 mount, and was the secret written (vault kv put -mount={mount} {path} {}=... {}=...) and its latest version not deleted?",
                    username_field(e),
                    password_field(e)
                ),
            ),
            s if is_refusal_status(s) => SourceError::refused(
                &step,
                format!(
                    "{detail}: do the policies of {who} allow \"read\" on {mount}/data/{path}?"
                ),
            ),
            _ => SourceError::new(&step, detail),
        });
    }
    let (username, password, secret_lease) =
        parse_secret(&resp.body, username_field(e), password_field(e)).map_err(|d| d.at(&step))?;
    drop(token);

    let mut expires_at = now.saturating_add(ttl(e).as_secs() as i64);
    for lease in [token_lease, secret_lease] {
        if lease > 0 {
            expires_at = expires_at.min(now.saturating_add(lease));
        }
    }
    Ok(Fetched {
        username,
        password,
        expires_at,
    })
}

/// The login body for the node's method, the values to scrub from errors,
/// the step, the refusal hint and who logs in.
fn node_body(
    entry: &str,
    auth: &NodeAuth,
    mount: &str,
) -> Result<(Secret, Vec<Secret>, String, String, String), SourceError> {
    match auth.method.as_str() {
        "approle" => {
            let role_id = read_file(entry, "roleIdFile", &auth.role_id_file, true)?;
            let secret_id = read_file(entry, "secretIdFile", &auth.secret_id_file, true)?;
            let body = Secret::new(
                serde_json::json!({"role_id": role_id.expose(), "secret_id": secret_id.expose()})
                    .to_string(),
            );
            Ok((
                body,
                vec![role_id, secret_id],
                format!("{entry} node approle login at auth/{mount}"),
                "are the role ID and secret ID current (a secret ID expires, or runs out of uses: secret_id_ttl, secret_id_num_uses), and does the role's secret_id_bound_cidrs / token_bound_cidrs admit this node?".to_string(),
                "the node's AppRole".to_string(),
            ))
        }
        "jwt" => {
            let role = super::nonblank(&auth.role).unwrap_or_default();
            super::check_role(role)
                .map_err(|d| SourceError::config(format!("{entry} node.role"), d))?;
            let jwt = read_file(entry, "tokenFile", &auth.token_file, false)?;
            let body =
                Secret::new(serde_json::json!({"role": role, "jwt": jwt.expose()}).to_string());
            Ok((
                body,
                vec![jwt],
                format!("{entry} node jwt login at auth/{mount} as role {role}"),
                format!(
                    "does Vault role {role:?} accept the token in node.tokenFile (bound_audiences, bound_subject, bound_claims, and the method's issuer and keys), and is it still valid?"
                ),
                format!("role {role}"),
            ))
        }
        other => Err(SourceError::config(
            format!("{entry} node.method"),
            format!("{:?}: want approle or jwt", crate::logging::echo(other)),
        )),
    }
}

/// Reads one of the node's login files, trimmed: private (0600, ours, not
/// a symlink) for AppRole's IDs, shared (a projected token may be a
/// symlink) for a JWT.
fn read_file(
    entry: &str,
    field: &str,
    path: &Option<String>,
    private: bool,
) -> Result<Secret, SourceError> {
    let Some(path) = super::nonblank(path) else {
        return Err(SourceError::config(
            format!("{entry} node.{field}"),
            "is required",
        ));
    };
    let step = format!("{entry} node.{field} ({path})");
    let limits = if private {
        Limits::private(MAX_FILE_BYTES)
    } else {
        Limits::shared(MAX_FILE_BYTES)
    };
    let bytes = private_file::open_regular(Path::new(path), limits)
        .map_err(|e| SourceError::config(&step, e.to_string()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| SourceError::config(&step, "is not UTF-8 text"))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SourceError::config(&step, "is empty"));
    }
    Ok(Secret::new(value))
}

/// The HTTP client, trusting `caFile` in addition to the system's roots.
fn client(e: &VaultSource, entry: &str, deadline: &Deadline) -> Result<Client, SourceError> {
    let client = Client::new(deadline);
    let Some(path) = super::nonblank(&e.ca_file) else {
        return Ok(client);
    };
    let step = format!("{entry} caFile ({path})");
    let pem = private_file::open_regular(Path::new(path), Limits::shared(MAX_CA_BYTES))
        .map_err(|e| SourceError::config(&step, e.to_string()))?;
    with_ca(client, &pem).map_err(|d| SourceError::config(&step, d))
}

/// `client` trusting the PEM certificates in `pem` too.
// Becomes `client.with_ca_pem(pem)` once `http::Client` takes extra roots.
fn with_ca(client: Client, pem: &[u8]) -> Result<Client, String> {
    client.with_ca_pem(pem)
}

/// One login call: the Vault token and its lease (seconds; 0: none).
#[allow(clippy::too_many_arguments)]
fn login_call(
    client: &Client,
    base: &str,
    mount: &str,
    headers: &[(&str, &str)],
    body: &Secret,
    scrub: &[&str],
    step: &str,
    hint: &str,
    deadline: &Deadline,
) -> Result<(Secret, i64), SourceError> {
    check_path(mount).map_err(|d| SourceError::config(format!("{step}: mount"), d))?;
    let url = format!("{base}/v1/auth/{mount}/login");
    tracing::debug!(url = %url, "logging in to Vault");
    let resp = call(deadline, step, || {
        client.post_json(&url, headers, body.expose().as_bytes())
    })?;
    if !resp.is_success() {
        let detail = vault_errors(&resp, scrub);
        if is_refusal_status(resp.status) {
            return Err(SourceError::refused(step, format!("{detail}; {hint}")));
        }
        return Err(SourceError::new(step, detail));
    }
    parse_login(&resp.body).map_err(|d| d.at(step))
}

/// A call with retries; a transport failure is the step's error.
fn call(
    deadline: &Deadline,
    step: &str,
    attempt: impl FnMut() -> Result<Response, HttpError>,
) -> Result<Response, SourceError> {
    http::with_retries(deadline, ATTEMPTS, attempt)
        .map_err(|e| SourceError::new(step, http::describe_error(&e, deadline)))
}

#[derive(Deserialize)]
struct LoginAnswer {
    auth: Option<Auth>,
}

#[derive(Deserialize)]
struct Auth {
    client_token: Option<Secret>,
    lease_duration: Option<serde_json::Number>,
}

/// `auth.client_token` and `auth.lease_duration` of a login answer.
pub fn parse_login(body: &[u8]) -> Result<(Secret, i64), crate::error::Detail> {
    let a: LoginAnswer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable login answer ({})",
            crate::error::json_position(&e)
        )
    })?;
    let auth = a.auth.ok_or(
        "the login answer has no auth (a response-wrapped or MFA-pending login is not supported)",
    )?;
    let token = auth
        .client_token
        .filter(|t| !t.is_empty())
        .ok_or("the login answer has no auth.client_token")?;
    Ok((token, seconds(auth.lease_duration.as_ref())))
}

#[derive(Deserialize)]
struct KvAnswer {
    data: Option<KvData>,
    lease_duration: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct KvData {
    data: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The user name and password fields of a KV v2 read, and its lease.
/// Errors name fields, never values.
pub fn parse_secret(
    body: &[u8],
    username_field: &str,
    password_field: &str,
) -> Result<(String, Secret, i64), crate::error::Detail> {
    let a: KvAnswer = serde_json::from_slice(body).map_err(|e| {
        format!(
            "unreadable secret answer ({})",
            crate::error::json_position(&e)
        )
    })?;
    let lease = seconds(a.lease_duration.as_ref());
    let Some(fields) = a.data.and_then(|d| d.data) else {
        return Err(crate::error::Detail {
            kind: Kind::Config,
            text: "the answer has no data.data: not a KV version 2 secret, or its latest version was deleted or destroyed".into(),
        });
    };
    let field = |name: &str, setting: &str| -> Result<String, crate::error::Detail> {
        match fields.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::String(_)) => Err(config(format!(
                "the secret's field {name:?} ({setting}) is empty"
            ))),
            Some(_) => Err(config(format!(
                "the secret's field {name:?} ({setting}) is not a string"
            ))),
            None => {
                let mut names: Vec<String> = fields
                    .keys()
                    .take(10)
                    .map(|k| format!("{:?}", crate::logging::clip(k, 40)))
                    .collect();
                if names.is_empty() {
                    names.push("none".into());
                }
                Err(config(format!(
                    "the secret has no field {name:?} ({setting}); it has {}",
                    names.join(", ")
                )))
            }
        }
    };
    let username = field(username_field, "secret.usernameField")?;
    let password = Secret::new(field(password_field, "secret.passwordField")?);
    Ok((username, password, lease))
}

fn config(text: String) -> crate::error::Detail {
    crate::error::Detail {
        kind: Kind::Config,
        text,
    }
}

/// A lease in whole seconds; absent, negative or unreadable: 0 (none).
fn seconds(n: Option<&serde_json::Number>) -> i64 {
    n.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .unwrap_or(0)
        .max(0)
}

/// `HTTP 403: permission denied; ...`: the status and Vault's `errors`
/// strings (each clipped, one line, with `scrub`'s values redacted); never
/// the body otherwise.
pub fn vault_errors(resp: &Response, scrub: &[&str]) -> String {
    let mut out = format!("HTTP {}", resp.status);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body) else {
        return out;
    };
    let Some(errors) = v.get("errors").and_then(|e| e.as_array()) else {
        return out;
    };
    let mut shown: Vec<String> = Vec::new();
    for e in errors.iter().filter_map(|e| e.as_str()).take(MAX_ERRORS) {
        let mut s = e.replace(['\n', '\r', '\t'], " ");
        for secret in scrub.iter().filter(|s| s.len() >= 4) {
            s = s.replace(secret, "[redacted]");
        }
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if !s.is_empty() {
            shown.push(crate::logging::clip(&s, 300).into_owned());
        }
    }
    if !shown.is_empty() {
        out.push_str(": ");
        out.push_str(&shown.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn login_answers() {
        let (t, lease) = parse_login(
            br#"{"auth":{"client_token":"hvs.abc","accessor":"x","policies":["p"],"lease_duration":2764800,"renewable":true}}"#,
        )
        .unwrap();
        assert_eq!((t.expose(), lease), ("hvs.abc", 2764800));
        let (_, lease) = parse_login(br#"{"auth":{"client_token":"s.x"}}"#).unwrap();
        assert_eq!(lease, 0);
        for (body, want) in [
            (r#"{"auth":null,"wrap_info":{}}"#, "no auth"),
            (r#"{"auth":{"client_token":""}}"#, "client_token"),
            (r#"{"auth":{}}"#, "client_token"),
            ("<html>hvs.secret</html>", "unreadable"),
            (
                r#"{"auth":{"client_token":"hvs.secret","lease_duration":"x"}}"#,
                "unreadable",
            ),
        ] {
            let e = parse_login(body.as_bytes()).unwrap_err().text;
            assert!(e.contains(want), "{body}: {e}");
            assert!(!e.contains("hvs.secret"), "{e}");
        }
    }

    #[test]
    fn secret_answers() {
        let body = br#"{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":{"username":"robot","password":"p4ss","token":"t0k"},"metadata":{"version":2}}}"#;
        let (u, p, lease) = parse_secret(body, "username", "password").unwrap();
        assert_eq!((u.as_str(), p.expose(), lease), ("robot", "p4ss", 0));
        let (u, p, _) = parse_secret(body, "username", "token").unwrap();
        assert_eq!((u.as_str(), p.expose()), ("robot", "t0k"));
        let e = parse_secret(body, "user", "password").unwrap_err();
        assert_eq!(e.kind, Kind::Config);
        assert!(
            e.text.contains("\"user\"") && e.text.contains("secret.usernameField"),
            "{}",
            e.text
        );
        assert!(
            !e.text.contains("p4ss") && !e.text.contains("robot"),
            "{}",
            e.text
        );
        let e = parse_secret(
            br#"{"data":{"data":{"username":"u","password":7}}}"#,
            "username",
            "password",
        )
        .unwrap_err();
        assert!(e.text.contains("not a string"), "{}", e.text);
        let e = parse_secret(br#"{"data":{"data":null}}"#, "username", "password").unwrap_err();
        assert!(e.text.contains("data.data"), "{}", e.text);
        let e = parse_secret(
            br#"{"data":{"data":{"username":"u","password":"p4ss"}"#,
            "u",
            "p",
        )
        .unwrap_err();
        assert!(e.text.contains("unreadable") && !e.text.contains("p4ss"));
        let (_, _, lease) = parse_secret(
            br#"{"lease_duration":600,"data":{"data":{"username":"u","password":"p"}}}"#,
            "username",
            "password",
        )
        .unwrap();
        assert_eq!(lease, 600);
    }

    #[test]
    fn errors_are_vaults_strings_scrubbed() {
        let r = resp(
            403,
            r#"{"errors":["permission denied","jwt eyJhbGciOi.secret was refused\nsecond line"]}"#,
        );
        let d = vault_errors(&r, &["eyJhbGciOi.secret"]);
        assert_eq!(
            d,
            "HTTP 403: permission denied; jwt [redacted] was refused second line"
        );
        assert_eq!(vault_errors(&resp(500, "<html>x</html>"), &[]), "HTTP 500");
        assert_eq!(
            vault_errors(&resp(404, r#"{"errors":[]}"#), &[]),
            "HTTP 404"
        );
        let long = format!(r#"{{"errors":["{}"]}}"#, "x".repeat(5000));
        assert!(vault_errors(&resp(400, &long), &[]).len() < 400);
    }
}
