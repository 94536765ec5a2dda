//! The exchange's wire formats as pure functions: the request an
//! `exchanges:` entry sends (without the subject token, which the caller
//! adds at the last moment) and what an answer means. No I/O, no clock.
//!
//! - RFC 8693 §2.1 (OAuth 2.0 Token Exchange, "Request"): a POST to the
//!   token endpoint, `application/x-www-form-urlencoded`, with `grant_type`
//!   `urn:ietf:params:oauth:grant-type:token-exchange`, `subject_token`,
//!   `subject_token_type` and optionally `resource`, `audience`, `scope`,
//!   `requested_token_type`. §2.2.1: the answer is a JSON object with
//!   `access_token`, `issued_token_type`, `token_type` and, RECOMMENDED,
//!   `expires_in` (seconds). §2.2.2: errors are RFC 6749 §5.2's
//!   `{"error", "error_description"}`, `invalid_request` or
//!   `invalid_target` among them (`invalid_grant` for a refused token).
//! - JFrog Platform, "OIDC Token Exchange" (JFrog REST APIs,
//!   https://jfrog.com/help/r/jfrog-rest-apis/oidc-token-exchange): `POST
//!   /access/api/v1/oidc/token`, JSON, with `grant_type` as above,
//!   `subject_token_type` `urn:ietf:params:oauth:token-type:id_token`,
//!   `subject_token`, `provider_name` (mandatory) and optionally
//!   `identity_mapping_name`, `project_key`, `audience` (informational).
//!   The answer (jfrog-client-go `auth.OidcTokenResponseData`) holds
//!   `access_token`, `expires_in`, `scope`, `token_type`,
//!   `issued_token_type` and `username`; older platforms leave `username`
//!   out, and JFrog's own GitHub Action (`jfrog/setup-jfrog-cli`,
//!   `src/oidc-utils.ts`, `extractTokenUser`) then takes the user from the
//!   access token's `sub` claim: the part after the last `/` when `sub`
//!   starts with `jfrt@` or holds `/users/`, else `sub` itself. That user
//!   and the access token are what `docker login` takes.
//! - Other shapes (Cloudsmith's `POST /openid/{org}/` with
//!   `{"oidc_token", "service_slug"}` answering `{"token"}`) are written
//!   with `requestFormat: json`, `subjectTokenField`, `parameters`,
//!   `tokenField` and `username`.

use kubelet_config::pullcred::exchange::Exchange as Config;
use serde_json::Value;

use crate::secret::Secret;

/// RFC 8693 §2.1's `grant_type`.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: a JWT, the default `subject_token_type`.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693 §3: an OpenID Connect ID token, what Artifactory asks for.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Artifactory's token endpoint, below the platform's base URL.
pub const ARTIFACTORY_PATH: &str = "/access/api/v1/oidc/token";
/// The username answered for an RFC 8693 token when neither the config nor
/// the answer names one: the registry convention for "the password is an
/// OAuth 2.0 access token" (Google's registries, Harbor's and Quay's robot
/// flows accept any name). Set `username` when a registry wants another.
pub const DEFAULT_USERNAME: &str = "oauth2accesstoken";
/// The lifetime assumed for a token whose answer states none and that is
/// not a JWT with `exp`: ten minutes, so that after the five-minute refresh
/// margin (`expiry::MIN_MARGIN`) the kubelet caches it for five.
pub const ASSUMED_LIFETIME: i64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Rfc8693,
    Artifactory,
}

impl Flavor {
    pub fn of(x: &Config) -> Flavor {
        match x.flavor.as_deref() {
            Some("artifactory") => Flavor::Artifactory,
            _ => Flavor::Rfc8693,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavor::Rfc8693 => "rfc8693",
            Flavor::Artifactory => "artifactory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Form,
    Json,
}

/// The request an exchange sends, but for the subject token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The token endpoint, as configured (the caller checks it).
    pub url: String,
    pub format: Format,
    /// Every field but the subject token, in the order sent.
    pub fields: Vec<(String, String)>,
    /// The name the subject token goes under.
    pub subject_field: String,
}

/// The token endpoint: `tokenUrl`, or for Artifactory the platform's base
/// URL with [`ARTIFACTORY_PATH`] (a `tokenUrl` already ending in it is kept).
pub fn token_url(x: &Config) -> String {
    let url = x.token_url.trim();
    match Flavor::of(x) {
        Flavor::Rfc8693 => url.to_string(),
        Flavor::Artifactory => {
            let base = url.trim_end_matches('/');
            if base.ends_with(ARTIFACTORY_PATH) {
                base.to_string()
            } else {
                format!("{base}{ARTIFACTORY_PATH}")
            }
        }
    }
}

/// The request `x` sends.
pub fn request(x: &Config) -> Request {
    let flavor = Flavor::of(x);
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            fields.push((k.to_string(), v.to_string()));
        }
    };
    let custom = x.subject_token_field.is_some();
    if !custom {
        put("grant_type", Some(TOKEN_EXCHANGE_GRANT));
    }
    let default_type = match (flavor, custom) {
        (_, true) => None,
        (Flavor::Rfc8693, false) => Some(JWT_TOKEN_TYPE),
        (Flavor::Artifactory, false) => Some(ID_TOKEN_TYPE),
    };
    put(
        "subject_token_type",
        x.subject_token_type.as_deref().or(default_type),
    );
    if flavor == Flavor::Artifactory {
        put("provider_name", x.provider_name.as_deref());
    }
    put("audience", x.audience.as_deref());
    put("scope", x.scope.as_deref());
    put("resource", x.resource.as_deref());
    put("requested_token_type", x.requested_token_type.as_deref());
    for (k, v) in &x.parameters {
        fields.push((k.clone(), v.clone()));
    }
    let format = match (flavor, x.request_format.as_deref()) {
        (Flavor::Artifactory, _) | (_, Some("json")) => Format::Json,
        _ => Format::Form,
    };
    Request {
        url: token_url(x),
        format,
        fields,
        subject_field: x
            .subject_token_field
            .clone()
            .unwrap_or_else(|| "subject_token".to_string()),
    }
}

/// Where the answer's expiry came from (`doctor`, debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryFrom {
    /// The answer's `expires_in` or `expiresAtField`.
    Answer,
    /// The access token's own `exp` claim (read, not verified).
    JwtExp,
    /// Nothing said: [`ASSUMED_LIFETIME`].
    Assumed,
}

/// A successful exchange, read.
#[derive(Debug)]
pub struct Issued {
    pub username: String,
    pub password: Secret,
    /// Unix seconds.
    pub expires_at: i64,
    pub expiry_from: ExpiryFrom,
}

/// Reads a 2xx answer at `now`. Errors are one line and name fields, never
/// values.
pub fn read_answer(x: &Config, body: &[u8], now: i64) -> Result<Issued, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the answer is not JSON (want an object with the token)".to_string())?;
    if !v.is_object() {
        return Err("the answer is not a JSON object".into());
    }
    let token_field = x.token_field.as_deref().unwrap_or("access_token");
    let token = match lookup(&v, token_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(format!("the answer's {token_field:?} is empty")),
        Some(_) => return Err(format!("the answer's {token_field:?} is not a string")),
        None => {
            return Err(format!(
                "the answer has no {token_field:?} (fields: {}); set tokenField",
                field_names(&v)
            ));
        }
    };
    let claims = jwt_claims(&token);
    let (expires_at, expiry_from) = expiry(x, &v, claims.as_ref(), now)?;
    let username = username(x, &v, claims.as_ref())?;
    Ok(Issued {
        username,
        password: Secret::new(token),
        expires_at,
        expiry_from,
    })
}

fn expiry(
    x: &Config,
    v: &Value,
    claims: Option<&Value>,
    now: i64,
) -> Result<(i64, ExpiryFrom), String> {
    if let Some(field) = x.expires_at_field.as_deref() {
        let at = match lookup(v, field) {
            Some(Value::String(s)) => {
                crate::time::parse_rfc3339(s.trim()).or_else(|| s.trim().parse::<i64>().ok())
            }
            Some(Value::Number(n)) => number(n),
            Some(_) => None,
            None => return Err(format!("the answer has no {field:?} (expiresAtField)")),
        };
        let at = at.ok_or_else(|| {
            format!("the answer's {field:?} is neither an RFC 3339 time nor unix seconds")
        })?;
        return Ok((at, ExpiryFrom::Answer));
    }
    let field = x.expires_in_field.as_deref().unwrap_or("expires_in");
    let seconds = match lookup(v, field) {
        Some(Value::Number(n)) => Some(number(n)),
        // Artifactory's token API has shown `"expires_in": "<seconds>"`.
        Some(Value::String(s)) => Some(s.trim().parse::<i64>().ok()),
        Some(Value::Null) | None => None,
        Some(_) => Some(None),
    };
    match seconds {
        Some(Some(s)) if s > 0 => return Ok((now.saturating_add(s), ExpiryFrom::Answer)),
        Some(_) => {
            return Err(format!(
                "the answer's {field:?} is not a positive number of seconds"
            ));
        }
        None if x.expires_in_field.is_some() => {
            return Err(format!("the answer has no {field:?} (expiresInField)"));
        }
        None => {}
    }
    if let Some(exp) = claims.and_then(|c| c.get("exp")).and_then(|e| match e {
        Value::Number(n) => number(n),
        _ => None,
    }) {
        return Ok((exp, ExpiryFrom::JwtExp));
    }
    Ok((now + ASSUMED_LIFETIME, ExpiryFrom::Assumed))
}

fn username(x: &Config, v: &Value, claims: Option<&Value>) -> Result<String, String> {
    if let Some(u) = &x.username {
        return Ok(u.clone());
    }
    if let Some(field) = x.username_field.as_deref() {
        return match lookup(v, field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(_) => Err(format!(
                "the answer's {field:?} is not a non-empty string (usernameField)"
            )),
            None => Err(format!("the answer has no {field:?} (usernameField)")),
        };
    }
    let answered = match v.get("username") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    };
    match Flavor::of(x) {
        Flavor::Rfc8693 => Ok(answered.unwrap_or_else(|| DEFAULT_USERNAME.to_string())),
        Flavor::Artifactory => answered
            .or_else(|| {
                claims
                    .and_then(|c| c.get("sub"))
                    .and_then(Value::as_str)
                    .map(artifactory_user)
            })
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                "the answer has no \"username\" and its access token no \"sub\" claim; set username"
                    .to_string()
            }),
    }
}

/// The user of a JFrog access token's `sub` (`jfac@<id>/users/<user>`,
/// `jfrt@<id>/users/<user>`), as `jfrog/setup-jfrog-cli` reads it.
pub fn artifactory_user(sub: &str) -> String {
    if sub.starts_with("jfrt@") || sub.contains("/users/") {
        sub.rsplit('/').next().unwrap_or(sub).to_string()
    } else {
        sub.to_string()
    }
}

/// `a.b.c` in nested objects; a key that itself holds dots is found first.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(found) = v.get(path) {
        return Some(found);
    }
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

fn number(n: &serde_json::Number) -> Option<i64> {
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// The top-level field names of an answer, for an error (never values).
fn field_names(v: &Value) -> String {
    let names: Vec<String> = v
        .as_object()
        .map(|o| {
            o.keys()
                .take(12)
                .map(|k| crate::logging::echo(k).into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A JWT's claims, unverified (`None` when the token is not a JWT): for its
/// `exp` and, at Artifactory, `sub`. The issuer verifies its own tokens;
/// these only tune the cache and the username.
fn jwt_claims(token: &str) -> Option<Value> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const NOW: i64 = 1_800_000_000;

    fn config(yaml: &str) -> Config {
        let text = format!(
            "apiVersion: pullcred.dev/v1alpha1\nkind: PullcredConfig\nexchanges:\n- name: x\n  registries: [r.example.com]\n  subjectToken: pod\n{yaml}"
        );
        let c = kubelet_config::pullcred::parse(&text).unwrap();
        let problems = kubelet_config::pullcred::check(&c);
        assert!(problems.is_empty(), "{problems:?}");
        c.exchanges[0].clone()
    }

    fn jwt(claims: serde_json::Value) -> String {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            e(b"{\"alg\":\"RS256\"}"),
            e(claims.to_string().as_bytes()),
            e(b"s")
        )
    }

    fn pairs(r: &Request) -> Vec<(&str, &str)> {
        r.fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn rfc8693_request_is_the_rfcs() {
        let x = config(
            "  tokenUrl: https://sts.example.com/token\n  audience: registry\n  scope: pull\n  parameters: {client_id: pullcred}\n",
        );
        let r = request(&x);
        assert_eq!(r.url, "https://sts.example.com/token");
        assert_eq!(r.format, Format::Form);
        assert_eq!(r.subject_field, "subject_token");
        assert_eq!(
            pairs(&r),
            [
                ("grant_type", TOKEN_EXCHANGE_GRANT),
                ("subject_token_type", JWT_TOKEN_TYPE),
                ("audience", "registry"),
                ("scope", "pull"),
                ("client_id", "pullcred"),
            ]
        );
    }

    #[test]
    fn artifactory_request_is_jfrogs() {
        for url in [
            "https://acme.jfrog.io",
            "https://acme.jfrog.io/",
            "https://acme.jfrog.io/access/api/v1/oidc/token",
        ] {
            let x = config(&format!(
                "  flavor: artifactory\n  tokenUrl: {url}\n  providerName: k8s\n  parameters: {{project_key: app}}\n"
            ));
            let r = request(&x);
            assert_eq!(r.url, "https://acme.jfrog.io/access/api/v1/oidc/token");
            assert_eq!(r.format, Format::Json);
            assert_eq!(
                pairs(&r),
                [
                    ("grant_type", TOKEN_EXCHANGE_GRANT),
                    ("subject_token_type", ID_TOKEN_TYPE),
                    ("provider_name", "k8s"),
                    ("project_key", "app"),
                ]
            );
        }
    }

    #[test]
    fn cloudsmith_shape() {
        let x = config(
            "  tokenUrl: https://api.cloudsmith.io/openid/acme/\n  requestFormat: json\n  subjectTokenField: oidc_token\n  parameters: {service_slug: puller-abcd}\n  tokenField: token\n  username: token\n",
        );
        let r = request(&x);
        assert_eq!(r.format, Format::Json);
        assert_eq!(r.subject_field, "oidc_token");
        assert_eq!(pairs(&r), [("service_slug", "puller-abcd")]);
        let t = jwt(serde_json::json!({"exp": NOW + 5400}));
        let a = read_answer(&x, format!("{{\"token\":\"{t}\"}}").as_bytes(), NOW).unwrap();
        assert_eq!(a.username, "token");
        assert_eq!(a.password.expose(), t);
        assert_eq!(
            (a.expires_at, a.expiry_from),
            (NOW + 5400, ExpiryFrom::JwtExp)
        );
    }

    #[test]
    fn expiry_from_expires_in_expires_at_jwt_or_assumed() {
        let x = config("  tokenUrl: https://s/t\n");
        let read = |body: &str| read_answer(&x, body.as_bytes(), NOW);
        let a = read(r#"{"access_token":"opaque","expires_in":1800}"#).unwrap();
        assert_eq!(
            (a.expires_at, a.expiry_from),
            (NOW + 1800, ExpiryFrom::Answer)
        );
        assert_eq!(a.username, DEFAULT_USERNAME);
        assert_eq!(
            read(r#"{"access_token":"o","expires_in":"90"}"#)
                .unwrap()
                .expires_at,
            NOW + 90
        );
        let a = read(r#"{"access_token":"opaque"}"#).unwrap();
        assert_eq!(
            (a.expires_at, a.expiry_from),
            (NOW + ASSUMED_LIFETIME, ExpiryFrom::Assumed)
        );
        let t = jwt(serde_json::json!({"exp": NOW + 700}));
        let a = read(&format!(r#"{{"access_token":"{t}"}}"#)).unwrap();
        assert_eq!(
            (a.expires_at, a.expiry_from),
            (NOW + 700, ExpiryFrom::JwtExp)
        );
        for bad in [
            r#"{"access_token":"o","expires_in":0}"#,
            r#"{"access_token":"o","expires_in":"soon"}"#,
        ] {
            assert!(read(bad).unwrap_err().contains("expires_in"), "{bad}");
        }
        let at = config("  tokenUrl: https://s/t\n  expiresAtField: data.expiry\n");
        let read = |body: &str| read_answer(&at, body.as_bytes(), NOW);
        assert_eq!(
            read(r#"{"access_token":"o","data":{"expiry":"2027-01-15T08:00:00Z"}}"#)
                .unwrap()
                .expires_at,
            crate::time::parse_rfc3339("2027-01-15T08:00:00Z").unwrap()
        );
        assert_eq!(
            read(r#"{"access_token":"o","data":{"expiry":1800000900}}"#)
                .unwrap()
                .expires_at,
            1_800_000_900
        );
        assert!(
            read(r#"{"access_token":"o"}"#)
                .unwrap_err()
                .contains("expiresAtField")
        );
    }

    #[test]
    fn token_and_username_fields() {
        let x = config(
            "  tokenUrl: https://s/t\n  tokenField: data.token\n  usernameField: data.user\n",
        );
        let a = read_answer(&x, br#"{"data":{"token":"t","user":"robot$ci"}}"#, NOW).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.expose()),
            ("robot$ci", "t")
        );
        assert!(
            read_answer(&x, br#"{"data":{"token":"t"}}"#, NOW)
                .unwrap_err()
                .contains("usernameField")
        );
        let plain = config("  tokenUrl: https://s/t\n");
        let a = read_answer(&plain, br#"{"access_token":"t","username":"svc"}"#, NOW).unwrap();
        assert_eq!(a.username, "svc");
    }

    #[test]
    fn artifactory_username_from_answer_or_sub() {
        let x = config(
            "  flavor: artifactory\n  tokenUrl: https://acme.jfrog.io\n  providerName: k8s\n",
        );
        let a = read_answer(
            &x,
            br#"{"access_token":"t","expires_in":300,"username":"k8s-puller"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(a.username, "k8s-puller");
        let t = jwt(serde_json::json!({"sub": "jfac@01abc/users/k8s-puller", "exp": NOW + 60}));
        let a = read_answer(&x, format!(r#"{{"access_token":"{t}"}}"#).as_bytes(), NOW).unwrap();
        assert_eq!(a.username, "k8s-puller");
        assert_eq!(artifactory_user("jfrt@01abc/users/u"), "u");
        assert_eq!(artifactory_user("plain"), "plain");
        assert!(
            read_answer(&x, br#"{"access_token":"opaque"}"#, NOW)
                .unwrap_err()
                .contains("username")
        );
    }

    #[test]
    fn garbage_answers_are_one_line_without_values() {
        let x = config("  tokenUrl: https://s/t\n");
        for (body, want) in [
            ("<html>oops</html>", "not JSON"),
            ("[1]", "not a JSON object"),
            (
                r#"{"token":"sekrit-value"}"#,
                "no \"access_token\" (fields: token)",
            ),
            (r#"{"access_token":5}"#, "not a string"),
            (r#"{"access_token":"  "}"#, "empty"),
        ] {
            let e = read_answer(&x, body.as_bytes(), NOW).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
            assert!(!e.contains("sekrit") && !e.contains('\n'), "{e}");
        }
    }
}
