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
use crate::expiry::{self, Freshness, Schedule};
use crate::image::ImageRef;
use crate::protocol::{self, AuthConfig, CacheKeyType, Response};
use crate::registry::{self, Target};
use crate::sources::dockerconfig::{self, StaticPlan};
use crate::sources::{self, AWS_IDENTITY_ENV, AzureSettings, SourceError};
use crate::workload::{self, Resolution, Workload, WorkloadSettings};

/// Settings from flags and environment.
#[derive(Debug, Clone)]
pub struct Options {
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
    pub timeout: Duration,
    /// dockerconfigjson files with static credentials, in priority order.
    pub docker_configs: Vec<PathBuf>,
    /// (registry key, Secrets Manager secret id) pairs.
    pub aws_secrets: Vec<(String, String)>,
    /// How long static credentials are fresh before files are re-read and
    /// the registry check runs again.
    pub static_ttl: Duration,
    /// Check static credentials against the registry on a cache miss.
    pub registry_check: bool,
    pub azure: AzureSettings,
    /// Per-pod identities from service-account tokens.
    pub workload: WorkloadSettings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_dir: None,
            no_cache: false,
            timeout: crate::deadline::DEFAULT,
            docker_configs: Vec::new(),
            aws_secrets: Vec::new(),
            static_ttl: Duration::from_secs(300),
            registry_check: true,
            azure: AzureSettings::default(),
            workload: WorkloadSettings::default(),
        }
    }
}

/// Where the credential for one image comes from.
enum Plan {
    /// A cloud token source, chosen by the registry host.
    Token(Target),
    /// Entries of the node's dockerconfigjson files.
    Static(StaticPlan),
    /// A Secrets Manager secret mapped to a registry key.
    AwsSecret { key: String, secret_id: String },
}

/// What an upstream fetch produced, ready to answer and cache.
struct Answer {
    auth: BTreeMap<String, AuthConfig>,
    key_type: CacheKeyType,
    schedule: Schedule,
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

/// Set once the response is being written, so the watchdog never cuts it.
pub static RESPONDING: AtomicBool = AtomicBool::new(false);

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads the request from `input`, returns the response JSON.
pub fn get_credentials(opts: &Options, input: impl Read) -> Result<String, Failure> {
    get_credentials_until(opts, input, Deadline::after(opts.timeout))
}

/// [`get_credentials`] inside a deadline the caller started (the exec path
/// starts it before reading stdin). The watchdog runs from the first step:
/// a cache entry, key file or docker config that blocks (a FIFO, a stuck
/// network filesystem) cannot hold the kubelet's pull past the deadline.
pub fn get_credentials_until(
    opts: &Options,
    input: impl Read,
    deadline: Deadline,
) -> Result<String, Failure> {
    start_watchdog(deadline.remaining());
    let mut buf = Vec::with_capacity(1024);
    input
        .take(protocol::MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(None, "reading the request from stdin", e))?;
    let request =
        protocol::decode_request(&buf).map_err(|e| fail(None, "decoding the request", e))?;
    let image = ImageRef::parse(&request.image).map_err(|e| fail(None, "parsing the image", e))?;
    let reg = image.registry.clone();
    let (plan, path_scoped_host) = plan_for(opts, &image)?;
    let resolution = resolve_identity(
        &plan,
        &image,
        request.service_account_token.as_ref(),
        &request.service_account_annotations,
        opts,
    )?;
    let workload = resolution.workload();
    let key = plan_key(&image, &plan, workload, opts);
    // No answer for a pod outlives the token it came with, even from an entry
    // another pod of the same service account filled with a longer-lived one.
    let reply = Reply {
        api_version: &request.api_version,
        not_after: workload.map(|w| w.account.expires_at),
        image_only: path_scoped_host,
    };

    let cache = if opts.no_cache {
        None
    } else {
        let dir = opts.cache_dir.clone().unwrap_or_else(cache::default_dir);
        match Cache::open(&dir) {
            Ok(c) => Some(c),
            // A refused directory is the operator's to fix; the pull still
            // gets its answer, neither read from nor written to it.
            Err(e @ CacheError::Insecure { .. }) => {
                tracing::warn!("{e}; answering without the cache");
                None
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
        match lookup(c, &key, &reply, &image, &plan) {
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
                    match lookup(c, &key, &reply, &image, &plan) {
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
    tracing::debug!(registry = %reg, "cache miss; fetching");
    if let Resolution::NodeFallback { why } = &resolution {
        tracing::warn!(
            "registry {reg}: {why}; using the node's identity (--service-account-fallback=node)"
        );
    }
    match fetch(&plan, workload, &image, opts, &deadline) {
        // The kubelet would silently ignore a key that does not match: refuse to answer with one.
        Ok(answer) if !auth_matches(&answer.auth, &image) => Err(fail(
            Some(&reg),
            "building the response",
            format!(
                "internal error: an auth key does not match {} under the kubelet's rules",
                image.name()
            ),
        )),
        Ok(answer) => Ok(answer_fresh(cache.as_ref(), &key, &reply, &image, answer)),
        Err(err) => {
            let now = now_unix();
            if workload.is_some() && workload::was_refused() && fallback.is_some() {
                // The identity provider no longer accepts this service
                // account: its cached credential is not served in place of
                // that answer, as it would be through an outage.
                tracing::warn!(
                    "registry {reg}: the identity provider refused the service account's token; not serving its cached credential"
                );
                fallback = None;
            }
            if let Some(entry) = fallback {
                let s = entry.schedule();
                if now < s.expires_at {
                    tracing::warn!(
                        "registry {reg}: {err}; serving the cached token, valid for {}s more",
                        s.expires_at - now
                    );
                    let d = expiry::stale_serve_duration(&s, now);
                    return Ok(reply.answer(entry.cache_key_type, d, entry.auth, now));
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

/// How to answer this request.
struct Reply<'a> {
    api_version: &'a str,
    /// The service-account token's expiry: no `cacheDuration` reaches past it.
    not_after: Option<i64>,
    /// The host has a path-scoped static key: every answer for it is
    /// `Image`-scoped, since the kubelet consults its registry-wide entry
    /// before it asks us about the next image of that host.
    image_only: bool,
}

impl Reply<'_> {
    fn answer(
        &self,
        key_type: CacheKeyType,
        duration: Duration,
        auth: BTreeMap<String, AuthConfig>,
        now: i64,
    ) -> String {
        let duration = match self.not_after {
            Some(t) => duration.min(Duration::from_secs(t.saturating_sub(now).max(0) as u64)),
            None => duration,
        };
        let key_type = if self.image_only {
            CacheKeyType::Image
        } else {
            key_type
        };
        Response::new(self.api_version, key_type, duration, auth).to_json()
    }
}

fn lookup(cache: &Cache, key: &CacheKey, reply: &Reply, image: &ImageRef, plan: &Plan) -> Hit {
    let mut entry = match cache.read(key) {
        Ok(Some(e)) => e,
        Ok(None) => return Hit::Miss,
        Err(why) => {
            tracing::warn!("ignoring cache entry: {why}; it will be replaced");
            return Hit::Miss;
        }
    };
    if shares_token_across_hosts(plan) {
        entry.auth = for_this_host(entry.auth, image);
    }
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
            Hit::Fresh(reply.answer(entry.cache_key_type, cache_duration, entry.auth, now))
        }
        Freshness::Stale { .. } => Hit::Stale(entry),
        Freshness::Expired => Hit::Miss,
    }
}

fn answer_fresh(
    cache: Option<&Cache>,
    key: &CacheKey,
    reply: &Reply,
    image: &ImageRef,
    a: Answer,
) -> String {
    let now = now_unix();
    let s = a.schedule;
    let duration = match expiry::freshness(&s, now) {
        Freshness::Fresh { cache_duration } => {
            if let Some(c) = cache {
                let entry = Entry {
                    format: cache::FORMAT,
                    key: key.as_str().to_string(),
                    registry: image.registry.clone(),
                    cache_key_type: a.key_type,
                    auth: a.auth.clone(),
                    fetched_at: s.fetched_at,
                    expires_at: s.expires_at,
                    refresh_at: (s.refresh_at == s.expires_at).then_some(s.refresh_at),
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
                s.expires_at
            );
            Duration::ZERO
        }
    };
    reply.answer(a.key_type, duration, a.auth, now)
}

/// Static sources first (an operator's explicit files and secrets win), then
/// the cloud source the registry host names. The flag says whether any static
/// key for the image's host has a path (see [`Reply::image_only`]).
fn plan_for(opts: &Options, image: &ImageRef) -> Result<(Plan, bool), Failure> {
    let reg = image.registry.as_str();
    let mut refused: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for path in &opts.docker_configs {
        match dockerconfig::load(path) {
            Ok(f) => files.push(f),
            Err(e) => {
                tracing::warn!("{e}; skipping it");
                refused.push(e);
            }
        }
    }
    let path_scoped = dockerconfig::host_has_path_keys(&files, image)
        || opts.aws_secrets.iter().any(|(k, _)| {
            dockerconfig::normalize_key(k)
                .is_some_and(|k| dockerconfig::path_key_for_host(&k, image))
        });
    if let Some(p) = dockerconfig::resolve(&files, image) {
        return Ok((Plan::Static(p), path_scoped));
    }
    let name = image.name();
    for (key, secret_id) in &opts.aws_secrets {
        if let Some(k) = dockerconfig::normalize_key(key)
            && kubelet_config::matching::auth_key_matches(&k, &name)
        {
            return Ok((
                Plan::AwsSecret {
                    key: k,
                    secret_id: secret_id.clone(),
                },
                path_scoped,
            ));
        }
    }
    match registry::route_with_mirrors(image, &opts.azure.mirrors) {
        Ok(t) => Ok((Plan::Token(t), path_scoped)),
        Err(e) if refused.is_empty() => Err(fail(Some(reg), "choosing a source", e)),
        Err(e) => Err(fail(
            Some(reg),
            "choosing a source",
            format!("{e}; and {}", refused.join("; ")),
        )),
    }
}

fn fetch(
    plan: &Plan,
    workload: Option<&Workload>,
    image: &ImageRef,
    opts: &Options,
    deadline: &Deadline,
) -> Result<Answer, SourceError> {
    match plan {
        Plan::Token(target) => {
            let f = sources::fetch(target, &opts.azure, workload, deadline)?;
            let mut expires_at = f.expires_at;
            if let Some(w) = workload {
                // The kubelet's echo guard drops such an answer; never give one.
                if f.password.expose() == w.token.expose() {
                    return Err(SourceError {
                        step: format!("{} credential for {}", target.source(), w.account),
                        detail: "upstream returned the service-account token itself as the password; refusing to echo it".into(),
                    });
                }
                // A credential obtained with the pod's token is not cached
                // past that token's own expiry.
                if w.account.expires_at < expires_at {
                    tracing::debug!(
                        "{}: the token expires before the credential; cacheDuration follows the token",
                        w.account
                    );
                    expires_at = w.account.expires_at;
                }
            }
            let now = now_unix();
            let schedule = expiry::schedule(now, expires_at);
            if schedule.capped {
                tracing::warn!(
                    "registry {}: {} token claims to expire at {}, more than 12h away; treating it as 12h",
                    image.registry,
                    target.source(),
                    f.expires_at
                );
            }
            let mut auth = BTreeMap::new();
            auth.insert(
                image.registry.clone(),
                AuthConfig {
                    username: f.username,
                    password: f.password,
                },
            );
            Ok(Answer {
                auth,
                key_type: CacheKeyType::Registry,
                schedule,
            })
        }
        Plan::Static(p) => {
            for (key, creds) in &p.auth {
                let origin = p
                    .origins
                    .get(key)
                    .map(|o| o.display().to_string())
                    .unwrap_or_default();
                verify(
                    key,
                    creds,
                    &format!("docker config {origin}"),
                    opts,
                    deadline,
                )?;
            }
            Ok(Answer {
                auth: p.auth.clone(),
                key_type: p.cache_key_type,
                schedule: expiry::fixed(now_unix(), opts.static_ttl),
            })
        }
        Plan::AwsSecret { key, secret_id } => {
            let (username, password) = fetch_aws_secret(secret_id, deadline)?;
            let creds = AuthConfig { username, password };
            verify(key, &creds, &format!("secret {secret_id}"), opts, deadline)?;
            let mut auth = BTreeMap::new();
            auth.insert(key.clone(), creds);
            let key_type = if key.contains('/') {
                CacheKeyType::Image
            } else {
                CacheKeyType::Registry
            };
            Ok(Answer {
                auth,
                key_type,
                schedule: expiry::fixed(now_unix(), opts.static_ttl),
            })
        }
    }
}

#[cfg(feature = "aws")]
fn fetch_aws_secret(
    id: &str,
    deadline: &Deadline,
) -> Result<(String, crate::secret::Secret), SourceError> {
    sources::aws::fetch_secret(id, deadline)
}

#[cfg(not(feature = "aws"))]
fn fetch_aws_secret(
    id: &str,
    _: &Deadline,
) -> Result<(String, crate::secret::Secret), SourceError> {
    Err(SourceError {
        step: format!("secretsmanager GetSecretValue {id}"),
        detail: "this pullcred was built without the `aws` feature".into(),
    })
}

/// The registry check for static credentials (see `sources::registry_check`).
#[cfg(feature = "static")]
fn verify(
    key: &str,
    creds: &AuthConfig,
    origin: &str,
    opts: &Options,
    deadline: &Deadline,
) -> Result<(), SourceError> {
    use crate::sources::registry_check::{self, Outcome};
    if !opts.registry_check {
        return Ok(());
    }
    let registry = key.split('/').next().unwrap_or(key);
    match registry_check::check(registry, &creds.username, &creds.password, deadline) {
        Outcome::Accepted => Ok(()),
        Outcome::Rejected { endpoint, detail } => Err(SourceError {
            step: format!("checking the credentials for {key} from {origin} at {endpoint}"),
            detail,
        }),
        Outcome::Unreachable { endpoint, detail } => {
            tracing::warn!(
                "could not check the credentials for {key} from {origin} at {endpoint}: {detail}; serving them unchecked"
            );
            Ok(())
        }
    }
}

#[cfg(not(feature = "static"))]
fn verify(_: &str, _: &AuthConfig, _: &str, _: &Options, _: &Deadline) -> Result<(), SourceError> {
    Ok(())
}

/// Whose identity a cloud plan uses: the pod's, from its service-account
/// token, or the node's. Static credentials are the node's, whoever asks.
fn resolve_identity(
    plan: &Plan,
    image: &ImageRef,
    token: Option<&crate::secret::Secret>,
    annotations: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<Resolution, Failure> {
    match plan {
        Plan::Token(target) => {
            workload::resolve(target, token, annotations, &opts.workload, now_unix())
                .map_err(|e| fail(Some(&image.registry), "choosing the pod's identity", e))
        }
        _ => Ok(Resolution::Node),
    }
}

/// The cache key for an image's plan: the one derivation both the request
/// path and `doctor` use.
fn plan_key(
    image: &ImageRef,
    plan: &Plan,
    workload: Option<&Workload>,
    opts: &Options,
) -> CacheKey {
    match plan {
        Plan::Token(target) => cache_key(image, target, workload, &opts.azure),
        Plan::Static(p) => static_cache_key(image, p, opts),
        Plan::AwsSecret { key, secret_id } => {
            let mut parts = vec![
                ("source", "aws-secret".to_string()),
                ("key", key.clone()),
                ("secret", secret_id.clone()),
            ];
            parts.extend(aws_identity_parts());
            hash_parts(&parts)
        }
    }
}

fn static_cache_key(image: &ImageRef, p: &StaticPlan, opts: &Options) -> CacheKey {
    let mut parts: Vec<(&str, String)> = vec![
        ("source", "static".into()),
        ("registry", image.registry.clone()),
    ];
    for (path, digest) in opts.docker_configs.iter().zip(&p.digests) {
        parts.push(("file", path.display().to_string()));
        parts.push(("file-sha256", digest.clone()));
    }
    parts.push(("keys", p.auth.keys().cloned().collect::<Vec<_>>().join(",")));
    hash_parts(&parts)
}

fn hash_parts(parts: &[(&str, String)]) -> CacheKey {
    let borrowed: Vec<(&str, &str)> = parts.iter().map(|(k, v)| (*k, v.as_str())).collect();
    CacheKey::new(&borrowed)
}

fn aws_identity_parts() -> Vec<(&'static str, String)> {
    AWS_IDENTITY_ENV
        .iter()
        .filter_map(|name| {
            std::env::var_os(name).map(|v| (*name, v.to_string_lossy().into_owned()))
        })
        .collect()
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
    let (plan, _) = plan_for(opts, image)?;
    let no_annotations = BTreeMap::new();
    let resolution = resolve_identity(
        &plan,
        image,
        pod.map(|p| p.token),
        pod.map_or(&no_annotations, |p| p.annotations),
        opts,
    )?;
    let workload = resolution.workload();
    let (source, identity) = match &plan {
        Plan::Token(Target::EcrPrivate(r)) => {
            let mut s = format!(
                "Amazon ECR private, account {}, region {} (partition {})",
                r.account,
                r.region,
                r.partition.id()
            );
            if r.fips {
                s.push_str(", FIPS");
            }
            if r.dual_stack {
                s.push_str(", dual-stack");
            }
            (s, aws_identity_summary())
        }
        Plan::Token(Target::EcrPublic) => (
            "Amazon ECR Public (ecr-public API in us-east-1)".to_string(),
            aws_identity_summary(),
        ),
        Plan::Token(Target::Google(_)) => {
            let identity = match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
                .filter(|p| !p.is_empty())
            {
                Some(p) => format!(
                    "Google credentials file {} (GOOGLE_APPLICATION_CREDENTIALS)",
                    p.to_string_lossy()
                ),
                None => "the GCE/GKE metadata server's default service account".to_string(),
            };
            let source = format!(
                "Google Artifact Registry / Container Registry {}",
                image.registry
            );
            (source, identity)
        }
        Plan::Token(Target::Acr(r)) => {
            let source = match &r.mirror_of {
                Some(m) => format!(
                    "Azure Container Registry {} (mirror of {m})",
                    r.login_server
                ),
                None => format!("Azure Container Registry {}", r.login_server),
            };
            #[cfg(feature = "azure")]
            let identity = sources::azure::describe_identity(&opts.azure);
            #[cfg(not(feature = "azure"))]
            let identity = "none: this pullcred was built without the `azure` feature".to_string();
            (source, identity)
        }
        Plan::Static(p) => {
            let files: Vec<String> = p
                .auth
                .iter()
                .map(|(k, a)| {
                    let from = p
                        .origins
                        .get(k)
                        .map(|o| o.display().to_string())
                        .unwrap_or_default();
                    format!("key {k} from {from} (user {})", a.username)
                })
                .collect();
            (
                "static credentials (docker config)".to_string(),
                files.join("; "),
            )
        }
        Plan::AwsSecret { key, secret_id } => (
            format!("static credentials from AWS Secrets Manager secret {secret_id} (key {key})"),
            aws_identity_summary(),
        ),
    };
    let identity = match &resolution {
        Resolution::Workload(w) => format!("{}: {}", w.account, w.identity.describe()),
        Resolution::NodeFallback { why } => {
            format!("{why}; the node's identity (--service-account-fallback=node): {identity}")
        }
        Resolution::Node => identity,
    };
    let key = plan_key(image, &plan, workload, opts);
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

/// Which link of the AWS chain would answer, from the environment alone.
/// Access key ids are shown with their middle masked.
fn aws_identity_summary() -> String {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(id) = var("AWS_ACCESS_KEY_ID") {
        let shown = if id.len() > 8 {
            format!("{}...{}", &id[..4], &id[id.len() - 4..])
        } else {
            "****".into()
        };
        return format!("AWS credentials from the environment (access key {shown})");
    }
    if let (Some(role), Some(file)) = (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        return format!("AWS web identity (IRSA): role {role}, token file {file}");
    }
    if let Some(p) = var("AWS_PROFILE") {
        return format!("AWS profile {p}");
    }
    if var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
        || var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
    {
        return "AWS container credentials (EKS Pod Identity / ECS)".into();
    }
    "the AWS default chain: shared config files, then the instance profile via IMDSv2".into()
}

/// Every key we return must match the image under the kubelet's keyring rules.
fn auth_matches(auth: &BTreeMap<String, AuthConfig>, image: &ImageRef) -> bool {
    let name = image.name();
    !auth.is_empty()
        && auth
            .keys()
            .all(|k| kubelet_config::matching::auth_key_matches(k, &name))
}

/// Whether one cached token serves every registry host of its source, so that
/// the entry is keyed by identity and not by host (see [`cache_key`]).
fn shares_token_across_hosts(plan: &Plan) -> bool {
    matches!(
        plan,
        Plan::Token(Target::EcrPrivate(_)) | Plan::Token(Target::Google(_))
    )
}

/// A shared token's entry holds the key of the host that filled it; the
/// answer names the host asked about. Token answers hold one credential.
fn for_this_host(
    auth: BTreeMap<String, AuthConfig>,
    image: &ImageRef,
) -> BTreeMap<String, AuthConfig> {
    if auth.len() != 1 || auth.contains_key(&image.registry) {
        return auth;
    }
    auth.into_values()
        .map(|creds| (image.registry.clone(), creds))
        .collect()
}

/// The request and configuration facts that decide the credential.
///
/// An ECR authorization token is good for every registry the identity may
/// read in its region (`registryIds` is deprecated and does not scope it),
/// and a Google access token for every Google registry: those entries are
/// keyed by partition, region, endpoint variant and identity (ECR) or by
/// identity and scopes (Google), not by host. A pod author naming a hundred
/// made-up accounts of one region then costs one upstream call, not a
/// hundred. ACR refresh tokens are per registry and stay keyed by host.
fn cache_key(
    image: &ImageRef,
    target: &Target,
    workload: Option<&Workload>,
    azure: &AzureSettings,
) -> CacheKey {
    let mut parts: Vec<(&str, String)> = vec![("source", target.source().to_string())];
    match target {
        Target::EcrPrivate(r) => parts.push(("partition", r.partition.id().to_string())),
        Target::Google(_) => {}
        _ => parts.push(("registry", image.registry.clone())),
    }
    // Whose token and which identity: one service account's credential is
    // never another's entry.
    if let Some(w) = workload {
        parts.extend(w.cache_parts());
    }
    if let Target::EcrPrivate(r) = target {
        parts.push(("region", r.region.clone()));
        parts.push(("fips", r.fips.to_string()));
        parts.push(("dual-stack", r.dual_stack.to_string()));
    }
    #[cfg(feature = "azure")]
    if let Target::Acr(r) = target {
        parts.extend(sources::azure::cache_parts(r, azure));
    }
    #[cfg(feature = "gcp")]
    if let Target::Google(_) = target {
        parts.extend(sources::gcp::cache_parts());
    }
    #[cfg(not(feature = "azure"))]
    let _ = azure;
    parts.extend(aws_identity_parts());
    hash_parts(&parts)
}

/// Starts a thread that ends the process one second after `timeout`, so no
/// bug, blocking file, stuck DNS lookup or stopped lock holder can hang the
/// kubelet's pull. Started once per process, before anything can block.
pub fn start_watchdog(timeout: Duration) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
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
            workload::AWS_ROLE_ANNOTATION.to_string(),
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
        assert!(err.contains(workload::AWS_ROLE_ANNOTATION), "{err}");
        let fallback = Options {
            workload: WorkloadSettings {
                fallback_to_node: true,
                ..WorkloadSettings::default()
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
