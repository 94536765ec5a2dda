//! `pullcred prepull`: pull images into the container runtime at image-bake
//! time, through the CRI ImageService and with the credentials the kubelet
//! would use, so a node boots with its key images already present.
//!
//! ```text
//! pullcred prepull [IMAGE]... [--images-file FILE]... --config PATH --bin-dir DIR
//!     [--cri-socket PATH] [--timeout DURATION] [--pull-timeout DURATION]
//! ```
//!
//! For each image, in the kubelet's order (pkg/kubelet/images,
//! pkg/credentialprovider, pkg/kubelet/kuberuntime/kuberuntime_image.go):
//! 1. the repository the providers are asked about is the image normalised
//!    (`nginx:1` -> `docker.io/library/nginx`); the runtime gets the image
//!    with its default tag (`nginx` -> `nginx:latest`);
//! 2. every provider entry of the CredentialProviderConfig whose
//!    `matchImages` matches is exec'd as the kubelet execs it (any plugin,
//!    not only pullcred; `kubelet_config::exec`), and its answer is kept for
//!    the later images per `cacheKeyType` and `cacheDuration`, as the
//!    kubelet's in-memory cache does. A provider with `tokenAttributes` and
//!    `requireServiceAccount: true` is not run: there is no pod;
//! 3. the keyring rules pick the matching `auth` keys; each credential is
//!    tried in turn in `PullImage` (an `AuthConfig` with username and
//!    password only, as the kubelet builds it); with none, one anonymous
//!    `PullImage`;
//! 4. `ImageStatus` confirms the runtime has the image.
//!
//! stdout: `pulled IMAGE as IMAGE_REF`, one line per image pulled. stderr:
//! one line per image not pulled (`pullcred: prepull: IMAGE: ...`), and a
//! warning line when a provider failed but the pull went through anyway.
//! Exit codes: 0 every image pulled; 1 any image not pulled, the config
//! refused, or the runtime unreachable; 2 usage. No password is ever
//! printed: error text from the runtime has every password offered masked.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use kubelet_config::cli::{Verdict, provider_verdict};
use kubelet_config::config::CredentialProvider;
use kubelet_config::duration::GoDuration;
use kubelet_config::exec::{self, AuthConfig, CredentialProviderResponse};
use kubelet_config::matching::{normalize_auth_key, normalize_image, select_auth_keys};
use kubelet_config::validate::{self, Severity, ValidateOptions};

use crate::cri;

#[derive(Parser, Debug)]
#[command(
    name = "pullcred prepull",
    about = "Pull images into the container runtime through CRI, with the credentials the kubelet would use (for node image builds)"
)]
struct Args {
    /// Images as in a pod spec (tag or digest optional).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// A file of images, one per line; blank lines and lines starting with # are skipped (repeatable).
    #[arg(long, value_name = "FILE")]
    images_file: Vec<PathBuf>,
    /// The kubelet's --image-credential-provider-config (file or directory).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// The kubelet's --image-credential-provider-bin-dir.
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// The runtime's CRI socket (a unix:// prefix, as in the kubelet's
    /// --container-runtime-endpoint, is accepted).
    #[arg(long, value_name = "PATH", default_value = cri::DEFAULT_SOCKET)]
    cri_socket: String,
    /// Deadline for the whole run (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// Longest wait for one PullImage (Go duration; within --timeout).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pull_timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = GoDuration::parse(s).map_err(|e| e.to_string())?;
    if d.nanos() <= 0 {
        return Err("must be positive".into());
    }
    Ok(Duration::from_nanos(d.nanos().unsigned_abs()))
}

/// The image the runtime gets: with `:latest` when it has neither tag nor
/// digest (the kubelet's `applyDefaultImageTag`).
pub fn with_default_tag(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Images from the command line and the files, in order, each once.
fn image_list(args: &Args) -> Result<Vec<String>, String> {
    let mut images: Vec<String> = args.images.iter().map(|s| s.trim().to_string()).collect();
    for path in &args.images_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--images-file {}: {e}", path.display()))?;
        images.extend(parse_images_file(&text));
    }
    let mut seen = std::collections::HashSet::new();
    images.retain(|i| !i.is_empty() && seen.insert(i.clone()));
    if images.is_empty() {
        return Err("no images given (IMAGE arguments or --images-file)".into());
    }
    if let Some(bad) = images.iter().find(|i| i.chars().any(char::is_whitespace)) {
        return Err(format!("{bad:?} is not an image reference"));
    }
    Ok(images)
}

/// One image per line; blank lines and `#` comments skipped.
pub fn parse_images_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// One provider's answer: its name and its `auth` map.
pub type Answer = (String, BTreeMap<String, AuthConfig>);

/// One credential the kubelet would offer, in the order it offers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer<'a> {
    pub provider: &'a str,
    pub key: &'a str,
    pub auth: &'a AuthConfig,
}

/// The kubelet's keyring over the answers of every provider that ran
/// (keyring.go `Add`, `Lookup`): the matching keys in the order
/// [`select_auth_keys`] gives them (reverse lexical order of their
/// normalised form; the Docker Hub fallback key); the credentials of keys
/// with the same normalised form in the order the providers were added.
pub fn keyring_lookup<'a>(answers: &'a [Answer], repo: &str) -> Vec<Offer<'a>> {
    let mut raw: Vec<&'a str> = answers
        .iter()
        .flat_map(|(_, auth)| auth.keys().map(String::as_str))
        .collect();
    raw.sort_unstable();
    raw.dedup();
    let keys = select_auth_keys(raw, repo).keys;
    let mut out = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let norm = normalize_auth_key(keys[i]);
        let mut j = i + 1;
        while j < keys.len() && normalize_auth_key(keys[j]) == norm {
            j += 1;
        }
        for (provider, auth) in answers {
            for key in &keys[i..j] {
                if let Some((key, a)) = auth.get_key_value(*key) {
                    out.push(Offer {
                        provider,
                        key,
                        auth: a,
                    });
                }
            }
        }
        i = j;
    }
    out
}

/// The registry part of a normalised repository (the kubelet's `Registry` cache key).
fn registry_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// The kubelet's in-memory cache of one provider's answers: looked up by
/// image, then registry, then global, before an exec.
#[derive(Default)]
pub struct AnswerCache {
    entries: Vec<(String, Instant, BTreeMap<String, AuthConfig>)>,
}

impl AnswerCache {
    /// The cache key an answer is stored under, for `repo`.
    fn key(kind: &str, repo: &str) -> Option<String> {
        match kind {
            "Image" => Some(format!("image:{repo}")),
            "Registry" => Some(format!("registry:{}", registry_of(repo))),
            "Global" => Some("global".into()),
            _ => None,
        }
    }

    pub fn lookup(&self, repo: &str, now: Instant) -> Option<&BTreeMap<String, AuthConfig>> {
        for kind in ["Image", "Registry", "Global"] {
            let key = Self::key(kind, repo)?;
            if let Some((_, _, auth)) = self
                .entries
                .iter()
                .find(|(k, expires, _)| *k == key && *expires > now)
            {
                return Some(auth);
            }
        }
        None
    }

    /// Keeps an answer for `cacheDuration`, else the provider's
    /// `defaultCacheDuration`; a zero duration is not kept.
    pub fn store(
        &mut self,
        repo: &str,
        response: &CredentialProviderResponse,
        default_duration: Option<&str>,
        now: Instant,
    ) {
        let duration = response
            .cache_duration
            .as_deref()
            .or(default_duration)
            .and_then(|d| GoDuration::parse(d).ok())
            .filter(|d| d.nanos() > 0)
            .map(|d| Duration::from_nanos(d.nanos().unsigned_abs()));
        let (Some(duration), Some(key)) = (duration, Self::key(&response.cache_key_type, repo))
        else {
            return;
        };
        self.entries.retain(|(k, _, _)| *k != key);
        self.entries
            .push((key, now + duration, response.auth.clone()));
    }
}

/// Text from the runtime with every password offered masked.
pub fn redact(text: &str, offers: &[Offer<'_>]) -> String {
    let mut out = text.to_string();
    for o in offers {
        if !o.auth.password.is_empty() {
            out = out.replace(&o.auth.password, "****");
        }
    }
    out
}

/// The run's state: the config's providers, their caches, the runtime.
struct Prepull<'c> {
    providers: Vec<&'c CredentialProvider>,
    caches: Vec<AnswerCache>,
    bin_dir: PathBuf,
    client: cri::Client,
    end: Instant,
    pull_timeout: Duration,
}

/// What happened to one image.
struct Outcome {
    result: Result<String, String>,
    warnings: Vec<String>,
}

impl Prepull<'_> {
    fn left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// Every matching provider's answer for `repo`, from the cache or an exec;
    /// notes on the providers that gave nothing.
    fn answers(&mut self, repo: &str) -> (Vec<Answer>, Vec<String>) {
        let mut answers = Vec::new();
        let mut notes = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            if !matches!(provider_verdict(p, repo), Verdict::Runs { .. }) {
                continue;
            }
            if let Some(auth) = self.caches[i].lookup(repo, Instant::now()) {
                answers.push((p.name.clone(), auth.clone()));
                continue;
            }
            if p.token_attributes
                .as_ref()
                .is_some_and(|t| t.require_service_account == Some(true))
            {
                notes.push(format!(
                    "provider {:?} not run: it requires a pod's service account token (tokenAttributes.requireServiceAccount)",
                    p.name
                ));
                continue;
            }
            let timeout = exec::KUBELET_TIMEOUT.min(self.left());
            match exec::run_plugin(&self.bin_dir, p, repo, None, timeout) {
                Ok((response, _stderr)) => {
                    self.caches[i].store(
                        repo,
                        &response,
                        p.default_cache_duration.as_deref(),
                        Instant::now(),
                    );
                    answers.push((p.name.clone(), response.auth));
                }
                Err(e) => notes.push(format!("provider {:?} failed: {e}", p.name)),
            }
        }
        (answers, notes)
    }

    fn one(&mut self, image: &str) -> Outcome {
        let repo = normalize_image(image);
        let runtime_image = with_default_tag(image);
        let (answers, notes) = self.answers(&repo);
        let offers = keyring_lookup(&answers, &repo);
        let mut attempts: Vec<String> = Vec::new();
        let mut pulled = None;
        if offers.is_empty() {
            let why = if answers.is_empty() && notes.is_empty() {
                format!("no provider matches {repo}")
            } else if answers.is_empty() {
                "no provider answered".to_string()
            } else {
                format!("no auth key of the answers matches {repo}")
            };
            let timeout = self.pull_timeout.min(self.left());
            match self.client.pull_image(&runtime_image, None, timeout) {
                Ok(r) => pulled = Some(r),
                Err(e) => attempts.push(format!("with no credentials ({why}): {e}")),
            }
        }
        for o in &offers {
            if self.left().is_zero() {
                attempts.push("the --timeout deadline passed".into());
                break;
            }
            let timeout = self.pull_timeout.min(self.left());
            match self
                .client
                .pull_image(&runtime_image, Some(o.auth), timeout)
            {
                Ok(r) => {
                    pulled = Some(r);
                    break;
                }
                Err(e) => attempts.push(format!(
                    "with user {:?} of key {:?} from provider {:?}: {}",
                    o.auth.username,
                    o.key,
                    o.provider,
                    redact(&e.to_string(), &offers)
                )),
            }
        }
        let result = match pulled {
            None => {
                let mut parts = attempts;
                parts.extend(notes.iter().cloned());
                Err(format!("not pulled: {}", parts.join("; ")))
            }
            Some(image_ref) => {
                let timeout = Duration::from_secs(30).min(self.left());
                match self.client.image_status(&runtime_image, timeout) {
                    Ok(Some(_)) => Ok(image_ref),
                    Ok(None) => Err(format!(
                        "PullImage answered {image_ref:?} but ImageStatus does not show {runtime_image}"
                    )),
                    Err(e) => Err(format!("pulled as {image_ref}, then {e}")),
                }
            }
        };
        Outcome {
            result: result.map_err(|e| redact(&e, &offers)),
            warnings: notes,
        }
    }
}

fn socket_path(s: &str) -> PathBuf {
    PathBuf::from(s.strip_prefix("unix://").unwrap_or(s))
}

fn refused_config(path: &Path, report: &validate::Report) -> Option<String> {
    let first = report
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error)?;
    Some(format!(
        "{}: the kubelet would refuse this config ({} error(s)): {}",
        path.display(),
        report.errors(),
        cri::grpc::one_line(&first.to_string())
    ))
}

/// Runs `pullcred prepull`; `args` are the arguments after `prepull`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from("pullcred prepull")).chain(args);
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return crate::exit::parse_error(&e, "prepull: "),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = run(&args, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code)
}

fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let end = Instant::now() + args.timeout;
    let images = match image_list(args) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(err, "pullcred: prepull: {e}");
            return 2;
        }
    };
    let opts = ValidateOptions {
        service_account_token_gate: true,
        bin_dir: Some(args.bin_dir.clone()),
    };
    let report = validate::validate_path(&args.config, &opts);
    if let Some(e) = refused_config(&args.config, &report) {
        let _ = writeln!(err, "pullcred: prepull: {e}");
        return 1;
    }
    let socket = socket_path(&args.cri_socket);
    let client = match cri::Client::connect(
        &socket,
        Duration::from_secs(10).min(end.saturating_duration_since(Instant::now())),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "pullcred: prepull: {e}");
            return 1;
        }
    };
    let providers: Vec<&CredentialProvider> = report.providers().map(|(_, p)| p).collect();
    let mut state = Prepull {
        caches: providers.iter().map(|_| AnswerCache::default()).collect(),
        providers,
        bin_dir: args.bin_dir.clone(),
        client,
        end,
        pull_timeout: args.pull_timeout,
    };
    let mut failed = 0usize;
    for image in &images {
        if state.left().is_zero() {
            let _ = writeln!(
                err,
                "pullcred: prepull: {image}: not pulled: the {}s --timeout deadline passed",
                args.timeout.as_secs()
            );
            failed += 1;
            continue;
        }
        let outcome = state.one(image);
        match outcome.result {
            Ok(image_ref) => {
                for w in &outcome.warnings {
                    let _ = writeln!(
                        err,
                        "pullcred: prepull: {image}: warning: {}",
                        cri::grpc::one_line(w)
                    );
                }
                let _ = writeln!(out, "pulled {image} as {image_ref}");
                let _ = out.flush();
            }
            Err(e) => {
                let _ = writeln!(
                    err,
                    "pullcred: prepull: {image}: {}",
                    cri::grpc::one_line(&e)
                );
                failed += 1;
            }
        }
    }
    u8::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: &str, password: &str) -> AuthConfig {
        AuthConfig {
            username: user.into(),
            password: password.into(),
        }
    }

    fn answer(provider: &str, keys: &[(&str, &str)]) -> Answer {
        (
            provider.to_string(),
            keys.iter()
                .map(|(k, u)| (k.to_string(), auth(u, &format!("pw-{u}"))))
                .collect(),
        )
    }

    fn users(offers: &[Offer<'_>]) -> Vec<String> {
        offers
            .iter()
            .map(|o| format!("{}:{}", o.provider, o.auth.username))
            .collect()
    }

    #[test]
    fn the_runtime_gets_the_image_with_its_default_tag() {
        assert_eq!(with_default_tag("nginx"), "nginx:latest");
        assert_eq!(with_default_tag("nginx:1"), "nginx:1");
        assert_eq!(
            with_default_tag("localhost:5000/team/app"),
            "localhost:5000/team/app:latest"
        );
        assert_eq!(
            with_default_tag("r.io:443/app@sha256:abc"),
            "r.io:443/app@sha256:abc"
        );
        assert_eq!(with_default_tag("r.io/a/b:2"), "r.io/a/b:2");
    }

    #[test]
    fn images_files_skip_blank_lines_and_comments() {
        assert_eq!(
            parse_images_file("# key images\n\n  nginx:1  \nr.io/a:2\n   # indented comment\n"),
            vec!["nginx:1", "r.io/a:2"]
        );
    }

    #[test]
    fn keyring_most_specific_key_first_then_provider_order() {
        let answers = vec![
            answer("p1", &[("r.io", "host1"), ("r.io/team", "team1")]),
            answer("p2", &[("https://r.io", "host2"), ("other.io", "other")]),
        ];
        let offers = keyring_lookup(&answers, "r.io/team/app");
        // r.io/team sorts before r.io (reverse lexical); the two keys that
        // normalise to r.io give their credentials in provider order
        assert_eq!(users(&offers), ["p1:team1", "p1:host1", "p2:host2"]);
        assert_eq!(offers[2].key, "https://r.io");
        assert!(keyring_lookup(&answers, "nomatch.io/app").is_empty());
    }

    #[test]
    fn keyring_docker_hub_fallback_key() {
        let answers = vec![answer("p", &[("index.docker.io", "hub"), ("quay.io", "q")])];
        assert_eq!(
            users(&keyring_lookup(&answers, "docker.io/library/nginx")),
            ["p:hub"]
        );
    }

    #[test]
    fn the_cache_answers_by_image_then_registry_then_global() {
        let now = Instant::now();
        let resp = |kind: &str, d: Option<&str>, user: &str| CredentialProviderResponse {
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            kind: "CredentialProviderResponse".into(),
            cache_key_type: kind.into(),
            cache_duration: d.map(str::to_string),
            auth: [("r.io".to_string(), auth(user, "pw"))].into(),
        };
        let mut c = AnswerCache::default();
        c.store(
            "r.io/a",
            &resp("Registry", Some("1m"), "reg"),
            Some("5m"),
            now,
        );
        assert_eq!(c.lookup("r.io/b", now).unwrap()["r.io"].username, "reg");
        assert!(c.lookup("q.io/b", now).is_none());
        c.store("r.io/a", &resp("Image", None, "img"), Some("5m"), now);
        assert_eq!(c.lookup("r.io/a", now).unwrap()["r.io"].username, "img");
        assert_eq!(c.lookup("r.io/b", now).unwrap()["r.io"].username, "reg");
        // expired after cacheDuration (1m), the default (5m) for the image entry
        let later = now + Duration::from_secs(120);
        assert!(c.lookup("r.io/b", later).is_none());
        assert_eq!(c.lookup("r.io/a", later).unwrap()["r.io"].username, "img");
        // cacheDuration 0: not kept
        let mut z = AnswerCache::default();
        z.store("r.io/a", &resp("Global", Some("0s"), "g"), Some("5m"), now);
        assert!(z.lookup("x.io/y", now).is_none());
        z.store("r.io/a", &resp("Global", None, "g"), Some("5m"), now);
        assert_eq!(z.lookup("x.io/y", now).unwrap()["r.io"].username, "g");
    }

    #[test]
    fn runtime_errors_lose_the_passwords_offered() {
        let a = auth("AWS", "s3cr3t-token");
        let offers = [Offer {
            provider: "p",
            key: "k",
            auth: &a,
        }];
        assert_eq!(
            redact("failed with s3cr3t-token and s3cr3t-token", &offers),
            "failed with **** and ****"
        );
    }

    #[test]
    fn flags() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10").is_err());
        assert_eq!(
            socket_path("unix:///run/c.sock"),
            PathBuf::from("/run/c.sock")
        );
        assert_eq!(socket_path("/run/c.sock"), PathBuf::from("/run/c.sock"));
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
