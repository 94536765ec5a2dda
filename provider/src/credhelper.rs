//! `docker-credential-pullcred`: pullcred as a docker credential helper, so
//! the tools on a node that are not the kubelet (crictl, nerdctl, podman,
//! skopeo, buildah, docker, kubeadm's image pre-pull through crictl) pull
//! with the credentials the kubelet gets, from the same sources and the
//! same on-node cache: no second cache, no second login.
//!
//! Invoked as `docker-credential-pullcred ACTION` (a symlink to the
//! `pullcred` binary: the program name decides) or as
//! `pullcred [FLAGS] credential-helper ACTION`. Flags and `PULLCRED_*`
//! variables are the kubelet path's, so a helper run sees the same docker
//! configs, config file, mirrors, cache directory and deadline.
//!
//! # The protocol
//!
//! From docker/docker-credential-helpers (`credentials/credentials.go`,
//! `credentials/error.go`, `client/client.go`, `client/command.go`), the
//! contract every client follows (docker/cli's `nativeStore`,
//! containers/image's `getCredsFromCredHelper`):
//!
//! - the action is the only argument: `get`, `list`, `store`, `erase`,
//!   `version`;
//! - `get`: stdin holds the server URL, written without a trailing newline
//!   (`client.Get` writes the bare string; `credentials.Get` reads to EOF
//!   and trims spaces). stdout: one JSON object
//!   `{"ServerURL","Username","Secret"}` and a newline, exit 0. A username
//!   of `<token>` would make clients use the secret as an identity token;
//!   no pullcred source answers with that username;
//! - errors: exit non-zero with the message on stdout (`credentials.Serve`
//!   prints the error there; clients read it with `cmd.Output()` and quote
//!   it, trimmed, in their own error; the helper's stderr is passed through
//!   to the client's stderr, `createProgramCmdRedirectErr`);
//! - "not found" is the exact stdout text
//!   `credentials not found in native keychain`: clients compare the
//!   trimmed output with it (`IsErrCredentialsNotFoundMessage`) and then go
//!   on without credentials (anonymous), where any other failure fails the
//!   pull. An empty server URL is `no credentials server URL`;
//! - `list`: stdin holds `unused`; stdout is a JSON object server URL to
//!   username.
//!
//! # What pullcred does
//!
//! - `get`: the server URL (`registry.example.com`, `host:port`,
//!   `https://host`, `https://host/v2/`, Docker Hub's
//!   `https://index.docker.io/v1/`, or `host/path` for a path-scoped key)
//!   becomes the image `HOST/pullcred-credential-helper` (or `HOST/PATH`),
//!   and pullcred's normal flow answers for it ([`crate::run::serve`]):
//!   mirrors, static sources, then the cloud the host names; the node's
//!   identity (there is no pod, so no service-account token); the on-node
//!   cache, with the same keys as the kubelet's requests, so a token the
//!   kubelet path fetched is a hit here and the other way round; the same
//!   deadline (`--timeout`). Of the answer's `auth` keys, the one the
//!   kubelet's keyring would try first for that image is printed. No
//!   source serves the host: the not-found text on stdout, exit 1 (a
//!   docker config pullcred had to skip is named in a warning on stderr).
//!   Any other failure: the one `pullcred: ...` line on stderr, and the
//!   same line on stdout for the client to quote; exit 1. The secret is
//!   only ever in the stdout JSON.
//! - `list`: `{}`. pullcred holds no list of logins: its cloud sources
//!   answer for any host of their grammar (every ECR account and region,
//!   every Artifact Registry location, every `*.azurecr.io`) with a token
//!   minted on demand. Clients call `list` only for a default
//!   `credsStore` (docker/cli `GetAllCredentials` lists the default
//!   store, then calls `get` for each `credHelpers` entry), so configure
//!   pullcred under `credHelpers`, per registry.
//! - `store`, `erase`: refused, exit 1: pullcred's credentials come from
//!   the node's identity and configuration; there is nothing to store.
//! - `version`: `docker-credential-pullcred (pullcred) VERSION`, exit 0.
//!
//! # The kubelet's settings
//!
//! A client runs the helper with its own environment, not the kubelet's.
//! With `--kubelet-config FILE|DIR` (`PULLCRED_KUBELET_CONFIG`), `get`
//! runs pullcred as the kubelet runs it: the `args` and `env` of the
//! CredentialProviderConfig's entry named `pullcred` (`--kubelet-provider`)
//! are applied to a fresh `pullcred ARGS credential-helper ACTION`, whose
//! stdin, stdout, stderr and exit code are the helper's. One config for
//! both paths, so the sources and the cache directory cannot drift apart.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::deadline::Deadline;
use crate::image::ImageRef;
use crate::protocol::{self, AuthConfig};
use crate::run::{self, Options};
use crate::secret::Secret;

/// The program name that selects this mode (a symlink to `pullcred`).
pub const PROGRAM: &str = "docker-credential-pullcred";
/// The subcommand that selects this mode.
pub const SUBCOMMAND: &str = "credential-helper";
/// The exact text clients test for (docker-credential-helpers
/// `credentials/error.go`, `errCredentialsNotFoundMessage`).
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The exact text for an empty server URL (`errCredentialsMissingServerURLMessage`).
pub const MISSING_SERVER_URL: &str = "no credentials server URL";
/// The repository asked about when the server URL names only a host.
pub const HELPER_REPOSITORY: &str = "pullcred-credential-helper";
/// Longest server URL read from stdin.
const MAX_SERVER_URL: usize = 4096;

/// `docker-credential-pullcred ACTION...` becomes
/// `docker-credential-pullcred credential-helper ACTION...`, so the one
/// command line parser (and its `PULLCRED_*` variables) serves both forms.
/// Any other program name is left as it is.
pub fn as_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let invoked_as_helper = args
        .first()
        .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|n| n == PROGRAM));
    if invoked_as_helper {
        args.insert(1.min(args.len()), SUBCOMMAND.into());
    }
    args
}

/// A credential-helper action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Get,
    List,
    Store,
    Erase,
    Version,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "get" => Action::Get,
            "list" => Action::List,
            "store" => Action::Store,
            "erase" => Action::Erase,
            "version" => Action::Version,
            _ => return None,
        })
    }
}

/// What `get` prints: docker-credential-helpers' `Credentials`.
#[derive(Serialize)]
struct HelperCredentials<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a Secret,
}

/// The `get` answer's JSON (without the newline): the server URL as the
/// client gave it, trimmed, as `credentials.Get` echoes it.
pub fn encode(server_url: &str, creds: &AuthConfig) -> String {
    serde_json::to_string(&HelperCredentials {
        server_url,
        username: &creds.username,
        secret: &creds.password,
    })
    .expect("credentials serialise")
}

/// The image pullcred answers for when a client asks about `server_url`:
/// `HOST/pullcred-credential-helper`, or `HOST/PATH` when the URL has a
/// path other than the API's `/v1/` or `/v2/`. Docker Hub's names
/// (`https://index.docker.io/v1/`, `registry-1.docker.io`, ...) are
/// `docker.io`. The URL is parsed as the kubelet parses `auth` keys
/// (`kubelet_config::matching::normalize_auth_key`); it is never
/// contacted.
pub fn image_for(server_url: &str) -> Result<ImageRef, String> {
    // Userinfo could hold a password: refuse it without quoting the URL.
    if server_url.contains('@') {
        return Err("the server URL has a user part ('@'); give the registry host only".into());
    }
    let shown = crate::logging::echo(server_url);
    if let Some((scheme, _)) = server_url.split_once("://")
        && !scheme.eq_ignore_ascii_case("https")
        && !scheme.eq_ignore_ascii_case("http")
    {
        return Err(format!(
            "server URL {shown:?}: the scheme is not https or http"
        ));
    }
    let lowered_scheme = match server_url.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => server_url.to_string(),
    };
    let key = kubelet_config::matching::normalize_auth_key(&lowered_scheme)
        .ok_or_else(|| format!("server URL {shown:?} is not a registry host or URL"))?;
    let (host, path) = match key.split_once('/') {
        Some((h, p)) => (h.to_ascii_lowercase(), p.trim_matches('/').to_string()),
        None => (key.to_ascii_lowercase(), String::new()),
    };
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    };
    let image = if path.is_empty() {
        format!("{host}/{HELPER_REPOSITORY}")
    } else {
        format!("{host}/{path}")
    };
    let parsed = ImageRef::parse(&image)
        .map_err(|e| format!("server URL {shown:?} does not name a registry: {}", e.why))?;
    // `ImageRef` reads a first component without `.` or `:` as a Docker
    // Hub repository; a helper's server URL always names its host.
    if parsed.registry != host {
        return Err(format!(
            "server URL {shown:?} does not name a registry host (want host, host:port or https://host)"
        ));
    }
    Ok(parsed)
}

/// The `auth` entry the kubelet's keyring would try first for `image`
/// (`kubelet_config::matching::select_auth_keys`).
pub fn pick<'a>(
    auth: &'a BTreeMap<String, AuthConfig>,
    image: &ImageRef,
) -> Option<(&'a str, &'a AuthConfig)> {
    let chosen =
        kubelet_config::matching::select_auth_keys(auth.keys().map(String::as_str), &image.name());
    let key = chosen.keys.first()?;
    auth.get(*key).map(|a| (*key, a))
}

/// What `get` came to.
#[derive(Debug)]
pub enum Outcome {
    /// The JSON to print.
    Found(String),
    /// No source serves the host; the docker configs pullcred had to skip.
    NotFound { skipped: Vec<String> },
    /// One line, never a secret.
    Failed(String),
}

/// `get` for `server_url`: pullcred's flow for the image the URL names,
/// with the node's identity, the on-node cache and `deadline`.
pub fn get(opts: &Options, server_url: &str, deadline: &Deadline) -> Outcome {
    let image = match image_for(server_url) {
        Ok(i) => i,
        Err(e) => return Outcome::Failed(e),
    };
    // Routing is pure (files, no network): ask it first, so "no source"
    // is told apart from a source that failed. `serve` routes again, the
    // same way.
    if let Err(none) = crate::sources::route(&image, opts) {
        return Outcome::NotFound {
            skipped: none.skipped,
        };
    }
    let request = protocol::Request {
        api_version: protocol::API_VERSIONS[0].to_string(),
        image: image.name(),
        service_account_token: None,
        service_account_annotations: BTreeMap::new(),
    };
    match run::serve(opts, &request, deadline) {
        Ok(response) => match pick(&response.auth, &image) {
            Some((key, creds)) => {
                tracing::debug!(registry = %image.registry, key, "credential helper answered");
                Outcome::Found(encode(server_url, creds))
            }
            None => Outcome::Failed(format!(
                "registry {}: the answer has no auth key for {}",
                crate::logging::echo(&image.registry),
                image.name()
            )),
        },
        Err(f) => Outcome::Failed(f.to_string()),
    }
}

/// What the kubelet execs a provider entry with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletEntry {
    pub args: Vec<String>,
    /// Added to the kubelet's own environment (these win).
    pub env: Vec<(String, String)>,
}

/// The kubelet's provider entry named `name` in the CredentialProviderConfig
/// at `path` (a file, or a directory read in the kubelet's order): its
/// `args` and `env`, the first such entry found.
pub fn kubelet_entry(path: &Path, name: &str) -> Result<KubeletEntry, String> {
    let at = |what: &dyn std::fmt::Display| format!("--kubelet-config {}: {what}", path.display());
    let (_, files) = kubelet_config::load::config_files(path).map_err(|e| at(&e.reason()))?;
    let (configs, problems) = kubelet_config::load::decode_each(&files);
    for (_, config) in &configs {
        if let Some(p) = config.providers.iter().find(|p| p.name == name) {
            let env = p
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect();
            return Ok(KubeletEntry {
                args: p.args.clone(),
                env,
            });
        }
    }
    let why = if problems.is_empty() {
        format!(
            "no provider entry is named {:?}",
            crate::logging::echo(name)
        )
    } else {
        format!(
            "no provider entry named {:?} in what could be read ({})",
            crate::logging::echo(name),
            problems.join("; ")
        )
    };
    Err(at(&why))
}

/// Runs `pullcred ARGS credential-helper ACTION` with the entry's `env`
/// added to ours, as the kubelet execs a provider: stdin, stdout and stderr
/// are this process's, and its exit code is ours.
fn exec_as_kubelet_entry(path: &Path, name: &str, action: &str) -> ExitCode {
    let KubeletEntry { args, env } = match kubelet_entry(path, name) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format_args!("finding pullcred's own binary: {e}")),
    };
    tracing::debug!(
        "running as the kubelet's {name:?} entry from {}",
        path.display()
    );
    let status = std::process::Command::new(exe)
        .args(&args)
        .arg(SUBCOMMAND)
        .arg(action)
        .envs(env)
        .env_remove("PULLCRED_KUBELET_CONFIG")
        .status();
    match status {
        Ok(s) => ExitCode::from(s.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1)),
        Err(e) => fail(format_args!(
            "running pullcred as the kubelet's {name:?} entry: {e}"
        )),
    }
}

/// Runs one action. `read_stdin` reads stdin to EOF within the time given.
/// With `kubelet` (`--kubelet-config`, the entry's name), `get` runs as
/// that entry of the kubelet's config (its args and env).
pub fn main(
    opts: &Options,
    action: Option<&str>,
    kubelet: Option<(&Path, &str)>,
    read_stdin: impl FnOnce(Duration) -> std::io::Result<Vec<u8>>,
) -> ExitCode {
    let Some(action) = action else {
        return fail(format_args!(
            "usage: {PROGRAM} <get|list|store|erase|version> (or pullcred {SUBCOMMAND} ACTION)"
        ));
    };
    if let (Some((path, name)), Some(Action::Get)) = (kubelet, Action::parse(action)) {
        return exec_as_kubelet_entry(path, name, action);
    }
    match Action::parse(action) {
        Some(Action::Get) => {}
        Some(Action::List) => return crate::exit::respond("{}"),
        Some(Action::Store | Action::Erase) => {
            return fail(format_args!(
                "{action} is not supported: pullcred's credentials come from the node's identity and configuration; there is nothing to {action}"
            ));
        }
        Some(Action::Version) => {
            return crate::exit::respond(&format!(
                "{PROGRAM} (pullcred) {}",
                env!("CARGO_PKG_VERSION")
            ));
        }
        None => {
            return fail(format_args!(
                "unknown credential helper action {:?} (get, list, store, erase, version)",
                crate::logging::echo(action)
            ));
        }
    }
    // One deadline from the first step, as for the kubelet's requests.
    let deadline = Deadline::after(opts.timeout);
    let input = match read_stdin(deadline.remaining()) {
        Ok(b) => b,
        Err(e) => return fail(format_args!("reading the server URL from stdin: {e}")),
    };
    if input.len() > MAX_SERVER_URL {
        return fail(format_args!(
            "stdin holds more than {MAX_SERVER_URL} bytes; expected a registry server URL"
        ));
    }
    let Ok(text) = std::str::from_utf8(&input) else {
        return fail("the server URL on stdin is not UTF-8");
    };
    let server_url = text.trim();
    if server_url.is_empty() {
        return protocol_error(MISSING_SERVER_URL);
    }
    match get(opts, server_url, &deadline) {
        Outcome::Found(json) => crate::exit::respond(&json),
        Outcome::NotFound { skipped } => {
            if !skipped.is_empty() {
                eprintln!(
                    "pullcred: warning: no credentials for {}; and {}",
                    crate::logging::echo(server_url),
                    skipped.join("; ")
                );
            }
            tracing::debug!("no pullcred source serves {server_url}");
            protocol_error(NOT_FOUND)
        }
        Outcome::Failed(line) => fail(line),
    }
}

/// One of the protocol's fixed messages, alone on stdout; exit 1.
fn protocol_error(message: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{message}").and_then(|()| out.flush());
    ExitCode::FAILURE
}

/// One `pullcred: ...` line on stderr, as every pullcred failure, and the
/// same line on stdout, where credential-helper clients read the reason
/// they quote; exit 1. The line never holds a secret.
fn fail(line: impl std::fmt::Display) -> ExitCode {
    let line = format!("pullcred: {line}");
    let line = line.replace(['\n', '\r'], " ");
    let line = crate::logging::clip(&line, crate::logging::MAX_LINE);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    eprintln!("{line}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(url: &str) -> String {
        image_for(url).map(|i| i.name()).unwrap_or_else(|e| e)
    }

    #[test]
    fn server_urls_name_a_registry_host() {
        let h = |h: &str| format!("{h}/{HELPER_REPOSITORY}");
        assert_eq!(image("registry.example.com"), h("registry.example.com"));
        assert_eq!(
            image("https://registry.example.com"),
            h("registry.example.com")
        );
        assert_eq!(
            image("HTTPS://Registry.Example.com/"),
            h("registry.example.com")
        );
        assert_eq!(
            image("https://registry.example.com/v2/"),
            h("registry.example.com")
        );
        assert_eq!(image("127.0.0.1:5000"), h("127.0.0.1:5000"));
        assert_eq!(image("http://127.0.0.1:5000"), h("127.0.0.1:5000"));
        assert_eq!(image("localhost:5000"), h("localhost:5000"));
        assert_eq!(
            image("123456789012.dkr.ecr.us-west-2.amazonaws.com"),
            h("123456789012.dkr.ecr.us-west-2.amazonaws.com")
        );
        assert_eq!(
            image("registry.example.com/team"),
            "registry.example.com/team"
        );
        assert_eq!(
            image("https://registry.example.com/team/app/"),
            "registry.example.com/team/app"
        );
    }

    #[test]
    fn docker_hub_names_are_docker_io() {
        let hub = format!("docker.io/library/{HELPER_REPOSITORY}");
        for url in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            assert_eq!(image(url), hub, "{url}");
        }
    }

    #[test]
    fn what_is_not_a_registry_is_refused() {
        for url in [
            "unix:///run/containerd.sock",
            "ftp://registry.example.com",
            "a registry",
            "https://",
            "nginx",
            "user:pw@registry.example.com",
            "https://registry.example.com/Team",
        ] {
            assert!(image_for(url).is_err(), "{url}: {:?}", image_for(url));
        }
    }

    #[test]
    fn the_program_name_selects_the_mode() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            as_subcommand(args(&["/usr/local/bin/docker-credential-pullcred", "get"])),
            args(&[
                "/usr/local/bin/docker-credential-pullcred",
                SUBCOMMAND,
                "get"
            ])
        );
        assert_eq!(
            as_subcommand(args(&["docker-credential-pullcred"])),
            args(&["docker-credential-pullcred", SUBCOMMAND])
        );
        assert_eq!(
            as_subcommand(args(&["/usr/bin/pullcred", "get-credentials"])),
            args(&["/usr/bin/pullcred", "get-credentials"])
        );
        assert_eq!(as_subcommand(Vec::new()), Vec::<OsString>::new());
    }

    #[test]
    fn the_answer_is_the_helper_json() {
        let creds = AuthConfig {
            username: "AWS".into(),
            password: Secret::new("tok"),
        };
        let v: serde_json::Value =
            serde_json::from_str(&encode("https://r.example.com", &creds)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ServerURL": "https://r.example.com", "Username": "AWS", "Secret": "tok"})
        );
    }

    #[test]
    fn the_key_the_kubelet_would_try_first_is_picked() {
        let a = |u: &str| AuthConfig {
            username: u.into(),
            password: Secret::new("x"),
        };
        let auth: BTreeMap<String, AuthConfig> = [
            ("r.example.com".to_string(), a("host")),
            ("r.example.com/team".to_string(), a("team")),
            ("other.example.com".to_string(), a("other")),
        ]
        .into();
        let host = image_for("r.example.com").unwrap();
        assert_eq!(pick(&auth, &host).unwrap().1.username, "host");
        let team = image_for("r.example.com/team").unwrap();
        assert_eq!(pick(&auth, &team).unwrap().1.username, "team");
        let none = image_for("third.example.com").unwrap();
        assert!(pick(&auth, &none).is_none());
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("get"), Some(Action::Get));
        assert_eq!(Action::parse("list"), Some(Action::List));
        assert_eq!(Action::parse("store"), Some(Action::Store));
        assert_eq!(Action::parse("erase"), Some(Action::Erase));
        assert_eq!(Action::parse("version"), Some(Action::Version));
        assert_eq!(Action::parse("GET"), None);
    }
}
