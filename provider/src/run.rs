//! `get-credentials`: one CredentialProviderRequest in, one response out.
//!
//! The order of work keeps the cache hit cheap: decode, parse, route, derive the
//! cache key, read the entry; only a miss locks, starts a runtime and an SDK.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::cache::{self, Cache, CacheError, CacheKey, Entry, Lock};
use crate::deadline::Deadline;
use crate::expiry::{self, Freshness};
use crate::image::ImageRef;
use crate::protocol::{self, AuthConfig, CacheKeyType, Request, Response};
use crate::registry::{self, Target};
use crate::sources::{self, AWS_IDENTITY_ENV, Fetched};

/// Settings from flags and environment.
#[derive(Debug, Clone)]
pub struct Options {
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
    pub timeout: Duration,
}

/// Why a run failed: one line naming the registry (when known), the step and
/// what was seen. Never holds a secret.
#[derive(Debug)]
pub struct Failure {
    pub registry: Option<String>,
    pub step: String,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = match &self.registry {
            Some(r) => format!("registry {r}: {}: {}", self.step, self.detail),
            None => format!("{}: {}", self.step, self.detail),
        };
        f.write_str(&line.replace(['\n', '\r'], " "))
    }
}

fn fail(registry: Option<&str>, step: &str, detail: impl std::fmt::Display) -> Failure {
    Failure {
        registry: registry.map(str::to_string),
        step: step.to_string(),
        detail: detail.to_string(),
    }
}

/// Set once the response is being written, so the watchdog never cuts it.
pub static RESPONDING: AtomicBool = AtomicBool::new(false);

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads the request from `input`, returns the response JSON.
pub fn get_credentials(opts: &Options, input: impl Read) -> Result<String, Failure> {
    let deadline = Deadline::after(opts.timeout);
    let mut buf = Vec::with_capacity(1024);
    input
        .take(protocol::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(None, "reading the request from stdin", e))?;
    let request =
        protocol::decode_request(&buf).map_err(|e| fail(None, "decoding the request", e))?;
    let image = ImageRef::parse(&request.image).map_err(|e| fail(None, "parsing the image", e))?;
    let reg = image.registry.clone();
    let target = registry::route(&image).map_err(|e| fail(Some(&reg), "choosing a source", e))?;
    let key = cache_key(&image, &target);

    let cache = if opts.no_cache {
        None
    } else {
        let dir = opts.cache_dir.clone().unwrap_or_else(cache::default_dir);
        match Cache::open(&dir) {
            Ok(c) => Some(c),
            Err(e @ CacheError::Insecure { .. }) => {
                return Err(fail(Some(&reg), "opening the cache", e));
            }
            Err(e) => {
                tracing::warn!("{e}; answering without the cache");
                None
            }
        }
    };

    // 1. The cheap path: a fresh entry.
    let mut fallback: Option<Entry> = None;
    if let Some(c) = &cache {
        match lookup(c, &key, &request, &image) {
            Hit::Fresh(resp) => return Ok(resp),
            Hit::Stale(e) => fallback = Some(e),
            Hit::Miss => {}
        }
    }

    // 2. A miss: one process refreshes, the others wait and read its entry.
    let _lock = match &cache {
        Some(c) => {
            let wait = (deadline.remaining() / 2).min(Duration::from_secs(10));
            match c.lock(&key, wait) {
                Ok(Lock::Held(f)) => {
                    match lookup(c, &key, &request, &image) {
                        Hit::Fresh(resp) => return Ok(resp),
                        Hit::Stale(e) => fallback = Some(e),
                        Hit::Miss => {}
                    }
                    Some(f)
                }
                Ok(Lock::TimedOut) => {
                    tracing::warn!(
                        "another pullcred held the cache lock for {}s; fetching without it",
                        wait.as_secs_f32()
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!("{e}; fetching without single flight");
                    None
                }
            }
        }
        None => None,
    };

    // 3. Upstream.
    tracing::debug!(registry = %reg, source = target.source(), "cache miss; fetching");
    match sources::fetch(&target, &deadline) {
        Ok(fetched) => Ok(answer_fresh(
            cache.as_ref(),
            &key,
            &request,
            &image,
            &target,
            fetched,
        )),
        Err(err) => {
            let now = now_unix();
            if let Some(entry) = fallback {
                let s = entry.schedule();
                if now < s.expires_at {
                    tracing::warn!(
                        "registry {reg}: {err}; serving the cached token, valid for {}s more",
                        s.expires_at - now
                    );
                    let d = expiry::stale_serve_duration(&s, now);
                    return Ok(Response::new(
                        &request.api_version,
                        entry.cache_key_type,
                        d,
                        entry.auth,
                    )
                    .to_json());
                }
            }
            Err(fail(Some(&reg), &err.step, err.detail))
        }
    }
}

enum Hit {
    Fresh(String),
    Stale(Entry),
    Miss,
}

fn lookup(cache: &Cache, key: &CacheKey, request: &Request, image: &ImageRef) -> Hit {
    let entry = match cache.read(key) {
        Ok(Some(e)) => e,
        Ok(None) => return Hit::Miss,
        Err(why) => {
            tracing::warn!("ignoring cache entry: {why}; it will be replaced");
            return Hit::Miss;
        }
    };
    if !auth_matches(&entry.auth, image) {
        tracing::warn!(
            "ignoring cache entry whose auth keys do not match {}",
            image.name()
        );
        return Hit::Miss;
    }
    let now = now_unix();
    let s = entry.schedule();
    if entry.fetched_at > now + 300 {
        tracing::warn!("ignoring cache entry fetched in the future (clock moved back?)");
        return Hit::Miss;
    }
    match expiry::freshness(&s, now) {
        Freshness::Fresh { cache_duration } => {
            tracing::debug!(registry = %entry.registry, "cache hit");
            Hit::Fresh(
                Response::new(
                    &request.api_version,
                    entry.cache_key_type,
                    cache_duration,
                    entry.auth,
                )
                .to_json(),
            )
        }
        Freshness::Stale { .. } => Hit::Stale(entry),
        Freshness::Expired => Hit::Miss,
    }
}

fn answer_fresh(
    cache: Option<&Cache>,
    key: &CacheKey,
    request: &Request,
    image: &ImageRef,
    target: &Target,
    fetched: Fetched,
) -> String {
    let now = now_unix();
    let mut auth = BTreeMap::new();
    auth.insert(
        image.registry.clone(),
        AuthConfig {
            username: fetched.username,
            password: fetched.password,
        },
    );
    debug_assert!(auth_matches(&auth, image));
    let s = expiry::schedule(now, fetched.expires_at);
    if s.capped {
        tracing::warn!(
            "registry {}: {} token claims to expire at {}, more than 12h away; treating it as 12h",
            image.registry,
            target.source(),
            fetched.expires_at
        );
    }
    let key_type = CacheKeyType::Registry;
    let duration = match expiry::freshness(&s, now) {
        Freshness::Fresh { cache_duration } => {
            if let Some(c) = cache {
                let entry = Entry {
                    format: cache::FORMAT,
                    key: key.as_str().to_string(),
                    registry: image.registry.clone(),
                    cache_key_type: key_type,
                    auth: auth.clone(),
                    fetched_at: s.fetched_at,
                    expires_at: s.expires_at,
                };
                if let Err(e) = c.write(key, &entry) {
                    tracing::warn!("{e}; answering without caching");
                }
            }
            cache_duration
        }
        Freshness::Stale { remaining } => {
            tracing::warn!(
                "registry {}: the new token expires in {}s, inside the refresh margin; answering with cacheDuration 0s and not caching it",
                image.registry,
                remaining.as_secs()
            );
            Duration::ZERO
        }
        Freshness::Expired => {
            tracing::warn!(
                "registry {}: the new token's expiry ({}) is already past (clock skew?); answering with cacheDuration 0s and not caching it",
                image.registry,
                fetched.expires_at
            );
            Duration::ZERO
        }
    };
    Response::new(&request.api_version, key_type, duration, auth).to_json()
}

/// Every key we return must match the image under the kubelet's keyring rules.
fn auth_matches(auth: &BTreeMap<String, AuthConfig>, image: &ImageRef) -> bool {
    let name = image.name();
    !auth.is_empty()
        && auth
            .keys()
            .all(|k| kubelet_config::matching::auth_key_matches(k, &name))
}

/// The request and configuration facts that decide the credential.
fn cache_key(image: &ImageRef, target: &Target) -> CacheKey {
    let mut parts: Vec<(&str, String)> = vec![
        ("source", target.source().to_string()),
        ("registry", image.registry.clone()),
    ];
    if let Target::EcrPrivate(r) = target {
        parts.push(("region", r.region.clone()));
        parts.push(("fips", r.fips.to_string()));
        parts.push(("dual-stack", r.dual_stack.to_string()));
    }
    #[cfg(feature = "gcp")]
    if let Target::Google(_) = target {
        parts.extend(sources::gcp::cache_parts());
    }
    for name in AWS_IDENTITY_ENV {
        if let Some(v) = std::env::var_os(name) {
            parts.push((name, v.to_string_lossy().into_owned()));
        }
    }
    let borrowed: Vec<(&str, &str)> = parts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    CacheKey::new(&borrowed)
}

/// Starts a thread that ends the process one second past the deadline, so no
/// bug, stuck read or stopped lock holder can hang the kubelet's pull.
pub fn start_watchdog(timeout: Duration) {
    let budget = timeout.min(crate::deadline::MAX) + Duration::from_secs(1);
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(budget);
            if !RESPONDING.load(Ordering::SeqCst) {
                eprintln!(
                    "pullcred: deadline of {}s exceeded; giving up",
                    budget.as_secs()
                );
                std::process::exit(1);
            }
        });
    if let Err(e) = spawned {
        tracing::debug!("no watchdog thread: {e}");
    }
}
