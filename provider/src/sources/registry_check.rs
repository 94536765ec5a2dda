//! Checks static credentials against the registry once, on a cache miss, the
//! way `docker login` does: `GET /v2/`, then, as the challenge says, Basic
//! auth on `/v2/` or the token service with Basic auth.
//!
//! A revoked or mistyped token then fails at the node with a clear error
//! instead of as an opaque 401 in a pod event. If the registry cannot be
//! reached, the credentials are still served, with a warning.
//!
//! The token service a Bearer challenge names gets the password only under
//! [`credential_realm`]'s rule: https (any host: Docker Hub's is
//! `auth.docker.io`), or plain http to loopback or to the plain-http
//! registry's own host. Anything else is refused before any connection,
//! and the credentials are not served.

use base64::Engine;

use crate::challenge;
use crate::deadline::Deadline;
use crate::encode::percent_encode;
use crate::endpoint::{self, Destination, Scheme};
use crate::http::{self, Client, Response};
use crate::protocol::AuthConfig;
use crate::secret::Secret;
use crate::settings::Options;
use crate::sources::SourceError;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The registry accepted the credentials (or needs none).
    Accepted,
    /// The registry refused them: (endpoint, what it said).
    Rejected { endpoint: String, detail: String },
    /// The check could not be made: (endpoint, why).
    Unreachable { endpoint: String, detail: String },
}

/// Docker Hub's API host; every other registry serves its API on its own name.
pub fn api_base(registry: &str) -> String {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    format!("https://{host}/v2/")
}

/// Where a registry's Bearer challenge realm may receive the registry's
/// credentials. `registry_api` is the registry's API base ([`api_base`]).
/// Parsed with [`endpoint::parse`] (no userinfo); https anywhere; plain http
/// only to loopback, or when the registry itself is plain http and the
/// realm is on its host. Returns the realm, to be rebuilt from its parts.
pub fn credential_realm(registry_api: &str, realm: &str) -> Result<Destination, String> {
    const WHAT: &str = "the registry's token realm";
    let r = endpoint::parse(realm, WHAT)?;
    if r.scheme == Scheme::Https || r.is_loopback() {
        return Ok(r);
    }
    let registry = endpoint::parse(registry_api, "the registry")?;
    if registry.scheme == Scheme::Http && registry.host == r.host {
        return Ok(r);
    }
    Err(format!(
        "{WHAT} {:?} is plain http on another host than the registry {}; refusing to send it the credentials in clear",
        r.origin(),
        registry.authority()
    ))
}

/// `realm` with `name=value` appended to its query, percent-encoded.
pub fn with_query(realm: &Destination, name: &str, value: &str) -> String {
    let mut url = realm.url();
    url.push(if realm.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    });
    url.push_str(name);
    url.push('=');
    url.push_str(&percent_encode(value));
    url
}

pub fn check(registry: &str, username: &str, password: &Secret, deadline: &Deadline) -> Outcome {
    let client = Client::new(deadline);
    let base = api_base(registry);
    let basic = basic_auth(username, password);
    let first = match http::with_retries(deadline, 3, || client.get(&base, &[])) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Unreachable {
                endpoint: base,
                detail: e.to_string(),
            };
        }
    };
    log_rate_limit(&first);
    let (endpoint, resp) = match asks(&first) {
        Asks::Nothing => return Outcome::Accepted,
        Asks::Status(s) => {
            return Outcome::Unreachable {
                endpoint: base,
                detail: format!("unexpected HTTP {s}"),
            };
        }
        Asks::Bearer { realm, service } => {
            match bearer(&client, &base, realm, service, &basic, deadline) {
                Ok(answer) => answer,
                Err(outcome) => return outcome,
            }
        }
        // Basic, or an unnamed scheme: try Basic on /v2/ itself.
        Asks::Basic => {
            let r = http::with_retries(deadline, 3, || {
                client.get(&base, &[("Authorization", basic.as_str())])
            });
            (base.clone(), r)
        }
    };
    match resp {
        Err(e) => Outcome::Unreachable {
            endpoint,
            detail: e.to_string(),
        },
        Ok(r) => {
            log_rate_limit(&r);
            match r.status {
                200..=299 => Outcome::Accepted,
                401 | 403 => Outcome::Rejected {
                    endpoint,
                    detail: format!(
                        "HTTP {}: the registry refused these credentials (revoked, expired or mistyped?)",
                        r.status
                    ),
                },
                s => Outcome::Unreachable {
                    endpoint,
                    detail: format!("unexpected HTTP {s}"),
                },
            }
        }
    }
}

/// The token service a Bearer challenge names, asked with Basic auth.
fn bearer(
    client: &Client,
    base: &str,
    realm: Option<String>,
    service: Option<String>,
    basic: &str,
    deadline: &Deadline,
) -> Result<(String, Result<Response, http::HttpError>), Outcome> {
    let Some(raw) = realm.filter(|r| !r.is_empty()) else {
        return Err(Outcome::Unreachable {
            endpoint: base.to_string(),
            detail: "Bearer challenge without a usable realm".into(),
        });
    };
    let realm = credential_realm(base, &raw).map_err(|detail| Outcome::Rejected {
        endpoint: base.to_string(),
        detail,
    })?;
    let url = match service {
        Some(service) => with_query(&realm, "service", &service),
        None => realm.url(),
    };
    let r = http::with_retries(deadline, 3, || {
        client.get(&url, &[("Authorization", basic)])
    });
    Ok((realm.url(), r))
}

/// `Basic base64(user:password)`, for an `Authorization` header.
pub fn basic_auth(username: &str, password: &Secret) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose()))
    )
}

/// What a registry's answer to `GET /v2/` asks of a client: the first step
/// of the registry v2 auth walk, shared by the check and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asks {
    /// 2xx: nothing.
    Nothing,
    /// 401 with a Bearer challenge: a token from `realm` (as sent,
    /// unchecked) for `service`.
    Bearer {
        realm: Option<String>,
        service: Option<String>,
    },
    /// 401 with Basic or an unnamed scheme: Basic auth on `/v2/` itself.
    Basic,
    /// Any other status.
    Status(u16),
}

pub fn asks(first: &Response) -> Asks {
    match first.status {
        200..=299 => return Asks::Nothing,
        401 => {}
        s => return Asks::Status(s),
    }
    let challenges = first
        .header("www-authenticate")
        .and_then(|h| challenge::parse(h).ok())
        .unwrap_or_default();
    match challenges.iter().find(|c| c.scheme == "bearer") {
        Some(b) => Asks::Bearer {
            realm: b.param("realm").map(str::to_string),
            service: b.param("service").map(str::to_string),
        },
        None => Asks::Basic,
    }
}

/// Docker Hub's `ratelimit-remaining: 96;w=21600` and friends.
fn log_rate_limit(r: &Response) {
    if let Some(rem) = r.header("ratelimit-remaining") {
        let limit = r.header("ratelimit-limit").unwrap_or("?");
        tracing::info!(
            "registry rate limit: {} pulls remaining of {}",
            rem.trim(),
            limit.trim()
        );
    }
}

/// The registry check for static credentials from `origin`: a rejection
/// fails the fetch; an unreachable registry serves them, with a warning.
pub fn verify(
    key: &str,
    creds: &AuthConfig,
    origin: &str,
    opts: &Options,
    deadline: &Deadline,
) -> Result<(), SourceError> {
    if !opts.registry_check {
        return Ok(());
    }
    let registry = key.split('/').next().unwrap_or(key);
    match check(registry, &creds.username, &creds.password, deadline) {
        Outcome::Accepted => Ok(()),
        Outcome::Rejected { endpoint, detail } => Err(SourceError::new(
            format!("checking the credentials for {key} from {origin} at {endpoint}"),
            detail,
        )),
        Outcome::Unreachable { endpoint, detail } => {
            tracing::warn!(
                "could not check the credentials for {key} from {origin} at {endpoint}: {detail}; serving them unchecked"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_base("docker.io"), "https://registry-1.docker.io/v2/");
        assert_eq!(api_base("127.0.0.1:5000"), "https://127.0.0.1:5000/v2/");
    }

    #[test]
    fn the_password_goes_only_to_a_safe_realm() {
        let hub = api_base("docker.io");
        let ok = |reg: &str, realm: &str| credential_realm(reg, realm).map(|r| r.url());
        assert_eq!(
            ok(&hub, "https://auth.docker.io/token").unwrap(),
            "https://auth.docker.io/token"
        );
        assert_eq!(
            ok(&hub, "http://127.0.0.1:5/token").unwrap(),
            "http://127.0.0.1:5/token"
        );
        // a plain-http registry's realm on its own host (any port)
        assert!(
            ok(
                "http://reg.internal:5000/v2/",
                "http://reg.internal:5001/token"
            )
            .is_ok()
        );
        for (reg, realm) in [
            (hub.as_str(), "http://auth.docker.io/token"),
            (hub.as_str(), "http://evil.example/token"),
            ("http://reg.internal:5000/v2/", "http://evil.example/token"),
            ("https://reg.internal/v2/", "http://reg.internal/token"),
            (hub.as_str(), "https://auth.docker.io@evil.example/token"),
            (hub.as_str(), "https://auth.docker.io#@evil.example/token"),
            (hub.as_str(), "/token"),
            (hub.as_str(), "ftp://auth.docker.io/token"),
        ] {
            let e = ok(reg, realm).unwrap_err();
            assert!(e.contains("the registry's token realm"), "{realm}: {e}");
        }
        let e = ok(&hub, "http://evil.example/token").unwrap_err();
        assert!(
            e.contains("plain http") && e.contains("registry-1.docker.io"),
            "{e}"
        );
    }

    #[test]
    fn query_values_are_appended_to_the_rebuilt_realm() {
        let r =
            credential_realm(&api_base("docker.io"), "https://Auth.Docker.IO/token?a=1").unwrap();
        assert_eq!(
            with_query(&r, "service", "registry docker.io"),
            "https://auth.docker.io/token?a=1&service=registry%20docker.io"
        );
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(percent_encode("registry.docker.io"), "registry.docker.io");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
