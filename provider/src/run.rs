//! `get-credentials`: one CredentialProviderRequest in, one response out.
//!
//! The order of work keeps the cache hit cheap: decode, parse, route, derive the
//! cache key, read the entry; only a miss locks, starts a runtime and an SDK.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::cache::{self, Cache, CacheKey, Entry, Lock};
use crate::deadline::Deadline;
use crate::expiry;
use crate::image::ImageRef;
use crate::pipeline::{self, AfterFetch, Answer, Lookup, Miss, OddToken, Reply};
use crate::protocol::{self, AuthConfig, CacheKeyType, Response};
pub use crate::settings::Options;
use crate::sources::{self, Credential, FetchContext, Route, Routed, SourceError};
use crate::time::now_unix;
use crate::workload::{self, Resolution, Workload};

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
            Some(r) => format!(
                "registry {}: {}: {}",
                crate::logging::echo(r),
                self.step,
                self.detail
            ),
            None => format!("{}: {}", self.step, self.detail),
        };
        // Whatever a step put in it, one bounded line.
        let line = line.replace(['\n', '\r'], " ");
        f.write_str(&crate::logging::clip(&line, crate::logging::MAX_LINE))
    }
}

fn fail(registry: Option<&str>, step: &str, detail: impl std::fmt::Display) -> Failure {
    Failure {
        registry: registry.map(str::to_string),
        step: step.to_string(),
        detail: detail.to_string(),
    }
}

/// Reads the request from `input`, returns the response JSON.
pub fn get_credentials(opts: &Options, input: impl Read) -> Result<String, Failure> {
    get_credentials_until(opts, input, Deadline::after(opts.timeout))
}

/// [`get_credentials`] inside a deadline the caller started (the exec path
/// starts it before reading stdin).
pub fn get_credentials_until(
    opts: &Options,
    input: impl Read,
    deadline: Deadline,
) -> Result<String, Failure> {
    let mut buf = Vec::with_capacity(1024);
    input
        .take(protocol::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(None, "reading the request from stdin", e))?;
    let request =
        protocol::decode_request(&buf).map_err(|e| fail(None, "decoding the request", e))?;
    serve(opts, &request, &deadline).map(|r| r.to_json())
}

/// The flow for a decoded request: route, choose the identity, read the
/// cache, lock, fetch, write; the decisions are [`pipeline`]'s.
pub fn serve(
    opts: &Options,
    request: &protocol::Request,
    deadline: &Deadline,
) -> Result<Response, Failure> {
    let image = ImageRef::parse(&request.image).map_err(|e| fail(None, "parsing the image", e))?;
    let reg = image.registry.clone();
    let Routed { route, path_scoped } = route_for(opts, &image)?;
    let route = route.as_ref();
    let resolution = resolve_identity(
        route,
        &image,
        request.service_account_token.as_ref(),
        &request.service_account_annotations,
        opts,
    )?;
    let workload = resolution.workload();
    let key = hash_parts(&route.cache_parts(&image, opts, workload));
    let req = pipeline::Request {
        image: &image,
        reply: Reply {
            api_version: &request.api_version,
            // No answer for a pod outlives the token it came with, even from
            // an entry another pod of the same service account filled with a
            // longer-lived one.
            not_after: workload.map(|w| w.account.expires_at),
            image_only: path_scoped,
        },
        shares_token_across_hosts: route.shares_token_across_hosts(),
        per_pod: workload.is_some(),
    };

    let cache = if opts.no_cache {
        None
    } else {
        let dir = opts.cache_dir.clone().unwrap_or_else(cache::default_dir);
        match Cache::open(&dir) {
            Ok(c) => Some(c),
            // A refused directory is the operator's to fix; the pull still
            // gets its answer, neither read from nor written to it.
            Err(e) => {
                tracing::warn!("{e}; answering without the cache");
                None
            }
        }
    };

    // 1. The cheap path: a fresh entry.
    let mut fallback: Option<Entry> = None;
    if let Some(c) = &cache {
        match lookup(c, &key, &req) {
            Lookup::Hit(resp) => return Ok(resp),
            Lookup::Stale(e) => fallback = Some(e),
            Lookup::Miss(_) => {}
        }
    }

    // 2. A miss: one process refreshes, the others wait and read its entry.
    // From the first wait on (the lock, the network) a watchdog ends the run
    // one second past the deadline whatever is stuck. The hit path above
    // cannot block: stdin was polled within the deadline, and every file is
    // opened non-blocking and refused unless it is a regular file, so a hit
    // pays for no thread (about 0.5 MiB of RSS, measured).
    crate::exit::start_watchdog(deadline.remaining());
    let _lock = match &cache {
        Some(c) => {
            let wait = (deadline.remaining() / 2).min(Duration::from_secs(10));
            match c.lock(&key, wait) {
                Ok(Lock::Held(f)) => {
                    match lookup(c, &key, &req) {
                        Lookup::Hit(resp) => return Ok(resp),
                        Lookup::Stale(e) => fallback = Some(e),
                        Lookup::Miss(_) => {}
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
    tracing::debug!(registry = %reg, "cache miss; fetching");
    if let Resolution::NodeFallback { why } = &resolution {
        tracing::warn!(
            "registry {reg}: {why}; using the node's identity (--service-account-fallback=node)"
        );
    }
    let outcome = fetch(route, workload, &image, opts, deadline, &key);
    crate::metrics::note_fetch(route.id(), outcome.as_ref().err());
    match pipeline::after_fetch(outcome, fallback, &key, &req, now_unix()) {
        AfterFetch::Store { entry, response } => {
            if let Some(c) = &cache {
                match c.write(&key, &entry) {
                    Ok(()) => crate::metrics::note_stored(route.id(), &key, &entry),
                    Err(e) => tracing::warn!("{e}; answering without caching"),
                }
            }
            Ok(response)
        }
        AfterFetch::Once { response, odd } => {
            match odd {
                OddToken::InsideMargin { remaining } => tracing::warn!(
                    "registry {reg}: the new token expires in {}s, inside the refresh margin; answering with cacheDuration 0s and not caching it",
                    remaining.as_secs()
                ),
                OddToken::AlreadyExpired { expires_at } => tracing::warn!(
                    "registry {reg}: the new token's expiry ({expires_at}) is already past (clock skew?); answering with cacheDuration 0s and not caching it"
                ),
            }
            Ok(response)
        }
        AfterFetch::ServeThroughOutage {
            response,
            error,
            valid_for,
        } => {
            tracing::warn!(
                "registry {reg}: {error}; serving the cached token, valid for {valid_for}s more"
            );
            crate::metrics::note_stale_served();
            Ok(response)
        }
        AfterFetch::Refuse {
            error,
            dropped_stale,
        } => {
            if dropped_stale {
                tracing::warn!(
                    "registry {reg}: the identity provider refused the service account's token; not serving its cached credential"
                );
            }
            Err(fail(Some(&reg), &error.step, error.detail))
        }
    }
}

/// Reads the entry for `key` (the I/O) and lets [`pipeline::lookup`] decide.
fn lookup(cache: &Cache, key: &CacheKey, req: &pipeline::Request) -> Lookup {
    let entry = match cache.read(key) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!("ignoring cache entry: {why}; it will be replaced");
            None
        }
    };
    let found = pipeline::lookup(entry, req, now_unix());
    match &found {
        Lookup::Hit(_) => tracing::debug!(registry = %req.image.registry, "cache hit"),
        Lookup::Miss(Miss::KeysDoNotMatch) => tracing::warn!(
            "ignoring cache entry whose auth keys do not match {}",
            req.image.name()
        ),
        Lookup::Miss(Miss::FromTheFuture) => {
            tracing::warn!("ignoring cache entry fetched in the future (clock moved back?)")
        }
        _ => {}
    }
    found
}

/// The route for the image: static sources first, then the cloud source the
/// registry host names (see [`sources::route`]).
fn route_for(opts: &Options, image: &ImageRef) -> Result<Routed, Failure> {
    sources::route(image, opts).map_err(|e| fail(Some(&image.registry), "choosing a source", e))
}

fn fetch(
    route: &dyn Route,
    workload: Option<&Workload>,
    image: &ImageRef,
    opts: &Options,
    deadline: &Deadline,
    key: &CacheKey,
) -> Result<Answer, SourceError> {
    let ctx = FetchContext {
        image,
        opts,
        workload,
        deadline,
    };
    match route.fetch(&ctx)? {
        Credential::Token(f) => {
            if let Some(w) = workload {
                // The kubelet's echo guard drops such an answer; never give one.
                if f.password.expose() == w.token.expose() {
                    return Err(SourceError::new(
                        format!("{} credential for {}", route.id(), w.account),
                        "upstream returned the service-account token itself as the password; refusing to echo it",
                    ));
                }
                if w.account.expires_at < f.expires_at {
                    tracing::debug!(
                        "{}: the token expires before the credential; cacheDuration follows the token",
                        w.account
                    );
                }
            }
            // A credential obtained with the pod's token is not cached past
            // that token's own expiry.
            let schedule = pipeline::token_schedule(
                now_unix(),
                f.expires_at,
                workload.map(|w| w.account.expires_at),
                opts.refresh_jitter * jitter_fraction(key),
            );
            if schedule.capped {
                tracing::warn!(
                    "registry {}: {} token claims to expire at {}, more than 12h away; treating it as 12h",
                    image.registry,
                    route.id(),
                    f.expires_at
                );
            }
            let auth = [(
                image.registry.clone(),
                AuthConfig {
                    username: f.username,
                    password: f.password,
                },
            )]
            .into();
            Ok(Answer {
                auth,
                key_type: CacheKeyType::Registry,
                schedule,
            })
        }
        Credential::Static { auth, key_type } => Ok(Answer {
            auth,
            key_type,
            schedule: expiry::fixed(now_unix(), opts.static_ttl),
        }),
    }
}

/// Whose identity a route uses: the pod's, from its service-account token,
/// under the route's rules, or the node's. Static credentials are the node's,
/// whoever asks.
fn resolve_identity(
    route: &dyn Route,
    image: &ImageRef,
    token: Option<&crate::secret::Secret>,
    annotations: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<Resolution, Failure> {
    match route.pod_rules() {
        Some(rules) => workload::resolve(
            rules,
            token,
            annotations,
            &opts.workload,
            &image.name(),
            now_unix(),
        )
        .map_err(|e| fail(Some(&image.registry), "choosing the pod's identity", e)),
        None => Ok(Resolution::Node),
    }
}

/// A stable fraction in [0, 1) for this node and cache entry: the same on
/// every exec of one node, spread across nodes (see [`expiry::jittered`]).
/// The node is `PULLCRED_NODE_ID`, else `/etc/machine-id` (systemd's
/// per-machine ID), else the hostname. Read on a cache miss only.
fn jitter_fraction(key: &CacheKey) -> f64 {
    use sha2::{Digest, Sha256};
    let read = |path: &str| {
        crate::private_file::open_regular(
            std::path::Path::new(path),
            crate::private_file::Limits::shared(256),
        )
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty())
    };
    let node = std::env::var("PULLCRED_NODE_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| read("/etc/machine-id"))
        .or_else(|| read("/proc/sys/kernel/hostname"))
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(b"pullcred refresh jitter\0");
    h.update(node.as_bytes());
    h.update(b"\0");
    h.update(key.as_str().as_bytes());
    let d = h.finalize();
    let n = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
    (n >> 11) as f64 / (1u64 << 53) as f64
}

fn hash_parts(parts: &[(&str, String)]) -> CacheKey {
    let borrowed: Vec<(&str, &str)> = parts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    CacheKey::new(&borrowed)
}

/// What `pullcred doctor` shows about the source for an image, without
/// fetching anything.
#[derive(Debug)]
pub struct Explained {
    /// Which source serves the image, in a user's words.
    pub source: String,
    /// Which identity or file it would use.
    pub identity: String,
    /// The cached entry for this image, if any.
    pub cached: Option<Entry>,
    pub cache_dir: Option<PathBuf>,
}

/// A pod's service-account token and annotations, for `doctor`.
pub struct PodIdentity<'a> {
    pub token: &'a crate::secret::Secret,
    pub annotations: &'a BTreeMap<String, String>,
}

pub fn explain(
    opts: &Options,
    image: &ImageRef,
    pod: Option<&PodIdentity>,
) -> Result<Explained, Failure> {
    let Routed { route, .. } = route_for(opts, image)?;
    let route = route.as_ref();
    let no_annotations = BTreeMap::new();
    let resolution = resolve_identity(
        route,
        image,
        pod.map(|p| p.token),
        pod.map_or(&no_annotations, |p| p.annotations),
        opts,
    )?;
    let workload = resolution.workload();
    let source = route.describe(image);
    let identity = route.node_identity(opts);
    let identity = match &resolution {
        Resolution::Workload(w) => format!("{}: {}", w.account, w.describe_identity()),
        Resolution::NodeFallback { why } => {
            format!("{why}; the node's identity (--service-account-fallback=node): {identity}")
        }
        Resolution::Node => identity,
    };
    let key = hash_parts(&route.cache_parts(image, opts, workload));
    let dir = (!opts.no_cache).then(|| opts.cache_dir.clone().unwrap_or_else(cache::default_dir));
    let cached = dir
        .as_ref()
        .and_then(|d| Cache::open(d).ok())
        .and_then(|c| c.read(&key).ok().flatten());
    Ok(Explained {
        source,
        identity,
        cached,
        cache_dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use base64::Engine;

    fn token(ns: &str, name: &str) -> Secret {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims = serde_json::json!({
            "iss": "https://kubernetes.default.svc",
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "exp": now_unix() + 3600,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": "u-1"}}
        });
        Secret::new(format!(
            "{}.{}.{}",
            e(b"{\"alg\":\"RS256\"}"),
            e(claims.to_string().as_bytes()),
            e(b"sig")
        ))
    }

    /// `doctor --service-account-token` explains the pod's identity, not the
    /// node's, and names the missing annotation, all without the network.
    #[test]
    fn explain_shows_the_pods_identity() {
        let opts = Options {
            no_cache: true,
            ..Options::default()
        };
        let image = ImageRef::parse("123456789012.dkr.ecr.us-west-2.amazonaws.com/app").unwrap();
        let t = token("team-a", "builder");
        let annotations: BTreeMap<String, String> = [(
            crate::sources::aws::AWS_ROLE_ANNOTATION.to_string(),
            "arn:aws:iam::123456789012:role/pull".to_string(),
        )]
        .into();
        let pod = PodIdentity {
            token: &t,
            annotations: &annotations,
        };
        let ex = explain(&opts, &image, Some(&pod)).unwrap();
        assert!(
            ex.identity.starts_with(
                "service account team-a/builder: role arn:aws:iam::123456789012:role/pull"
            ),
            "{}",
            ex.identity
        );
        let none = BTreeMap::new();
        let bare = PodIdentity {
            token: &t,
            annotations: &none,
        };
        let err = explain(&opts, &image, Some(&bare)).unwrap_err().to_string();
        assert!(
            err.contains(crate::sources::aws::AWS_ROLE_ANNOTATION),
            "{err}"
        );
        let fallback = Options {
            workload: crate::settings::WorkloadSettings {
                fallback_to_node: true,
                ..crate::settings::WorkloadSettings::default()
            },
            ..opts.clone()
        };
        let ex = explain(&fallback, &image, Some(&bare)).unwrap();
        assert!(
            ex.identity.contains("--service-account-fallback=node"),
            "{}",
            ex.identity
        );
    }
}
