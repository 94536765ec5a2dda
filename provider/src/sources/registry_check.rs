//! Checks static credentials against the registry once, on a cache miss, the
//! way `docker login` does: `GET /v2/`, then, as the challenge says, Basic
//! auth on `/v2/` or the token service with Basic auth.
//!
//! A revoked or mistyped token then fails at the node with a clear error
//! instead of as an opaque 401 in a pod event. If the registry cannot be
//! reached, the credentials are still served, with a warning.

use base64::Engine;

use crate::challenge;
use crate::deadline::Deadline;
use crate::http::{self, Client, Response};
use crate::secret::Secret;

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

pub fn check(registry: &str, username: &str, password: &Secret, deadline: &Deadline) -> Outcome {
    let client = Client::new(deadline);
    let base = api_base(registry);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", password.expose()))
    );
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
    match first.status {
        200..=299 => return Outcome::Accepted,
        401 => {}
        s => {
            return Outcome::Unreachable {
                endpoint: base,
                detail: format!("unexpected HTTP {s}"),
            };
        }
    }
    let challenges = first
        .header("www-authenticate")
        .and_then(|h| challenge::parse(h).ok())
        .unwrap_or_default();
    let (endpoint, resp) = if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
        let Some(realm) = bearer
            .param("realm")
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
        else {
            return Outcome::Unreachable {
                endpoint: base,
                detail: "Bearer challenge without a usable realm".into(),
            };
        };
        let mut url = realm.to_string();
        if let Some(service) = bearer.param("service") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("service=");
            url.push_str(&percent_encode(service));
        }
        let r = http::with_retries(deadline, 3, || {
            client.get(&url, &[("Authorization", basic.as_str())])
        });
        (realm.to_string(), r)
    } else {
        // Basic, or an unnamed scheme: try Basic on /v2/ itself.
        let r = http::with_retries(deadline, 3, || {
            client.get(&base, &[("Authorization", basic.as_str())])
        });
        (base.clone(), r)
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

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
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
    fn encodes_query_values() {
        assert_eq!(percent_encode("registry.docker.io"), "registry.docker.io");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
