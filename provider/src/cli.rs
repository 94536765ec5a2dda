//! Command line: flags and environment become [`run::Options`]; `main` turns
//! the result into an exit code and one line on stderr.
//!
//! - `pullcred` and `pullcred get-credentials` read one CredentialProviderRequest
//!   on stdin and write one CredentialProviderResponse on stdout; exit 0.
//! - On failure: nothing on stdout, one line on stderr
//!   (`pullcred: registry R: STEP: WHAT`), exit 1. Usage errors exit 2.
//! - `pullcred config ...` and `pullcred match ...` are the kubelet-config
//!   tools (validate, generate, dry-run matching).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

use crate::{deadline, logging, run};

#[derive(Parser, Debug)]
#[command(
    name = "pullcred",
    version,
    about = "kubelet image credential provider for Amazon ECR and ECR Public, Google Artifact Registry, Azure Container Registry and any registry with static credentials, with an on-node token cache",
    long_about = None,
    after_help = "Run by the kubelet (--image-credential-provider-config). Reads a CredentialProviderRequest on stdin.\nOther tools: `pullcred doctor IMAGE`, `pullcred config validate|generate ...`, `pullcred match IMAGE --config FILE`.\nLogs: PULLCRED_LOG=debug (stderr; secrets are never logged)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    globals: Globals,
}

/// Flags every mode shares (`global`, so they may follow a subcommand).
#[derive(Args, Debug)]
struct Globals {
    /// Cache directory [default: /run/pullcred as root, else ~/.cache/pullcred]
    #[arg(long, global = true, env = "PULLCRED_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the on-node cache.
    #[arg(long, global = true, env = "PULLCRED_NO_CACHE", value_parser = BoolishValueParser::new())]
    no_cache: bool,

    /// dockerconfigjson file with static registry credentials (repeatable; env: ':'-separated).
    /// Must be a 0600 file owned by the user running pullcred.
    #[arg(
        long = "docker-config",
        global = true,
        env = "PULLCRED_DOCKER_CONFIG",
        value_delimiter = ':',
        value_name = "FILE"
    )]
    docker_configs: Vec<PathBuf>,

    /// Registry key served from an AWS Secrets Manager secret holding
    /// {"username","accessToken"} (repeatable; env: ','-separated).
    #[arg(long = "aws-secret", global = true, env = "PULLCRED_AWS_SECRETS", value_delimiter = ',', value_parser = parse_mapping, value_name = "REGISTRY=SECRET")]
    aws_secrets: Vec<(String, String)>,

    /// How long static credentials are fresh (cacheDuration), so an edited file is picked up.
    #[arg(long, global = true, env = "PULLCRED_STATIC_CACHE_DURATION", default_value = "5m", value_parser = parse_static_ttl, value_name = "DURATION")]
    static_cache_duration: Duration,

    /// Do not check static credentials against the registry on a cache miss.
    #[arg(long, global = true, env = "PULLCRED_NO_REGISTRY_CHECK", value_parser = BoolishValueParser::new())]
    no_registry_check: bool,

    /// Deadline for the whole run, at most 55s (the kubelet kills at 60s).
    #[arg(long, global = true, env = "PULLCRED_TIMEOUT", default_value = "20s", value_parser = parse_timeout, value_name = "DURATION")]
    timeout: Duration,

    /// Answer for images of SOURCE (host[:port]) with the credentials of
    /// TARGET/PREFIX/<repository>: an ECR pull-through cache, an Artifact
    /// Registry remote repository, an ACR, or a static key's registry
    /// (repeatable; the variable takes a comma-separated list).
    #[arg(long = "mirror", global = true, env = "PULLCRED_MIRRORS", value_delimiter = ',', value_parser = parse_mirror, value_name = "SOURCE=TARGET[/PREFIX]")]
    mirrors: Vec<Mirror>,

    /// PULLCRED_ACR_MIRRORS: the former name of PULLCRED_MIRRORS, still read.
    #[arg(long = "acr-mirror", global = true, hide = true, env = "PULLCRED_ACR_MIRRORS", value_delimiter = ',', value_parser = parse_mirror, value_name = "SOURCE=TARGET[/PREFIX]")]
    acr_mirrors: Vec<Mirror>,

    /// AKS's azure.json [default: /etc/kubernetes/azure.json when present; "none" for no file]
    #[arg(
        long,
        global = true,
        env = "PULLCRED_AZURE_CONFIG",
        value_name = "FILE"
    )]
    azure_config: Option<PathBuf>,

    /// When a pod's service account names no identity for the registry:
    /// `none` fails the pull with an error naming the annotation; `node`
    /// uses the node's identity (logged).
    #[arg(long, global = true, env = "PULLCRED_SERVICE_ACCOUNT_FALLBACK", default_value = "none", value_parser = ["none", "node"], value_name = "none|node")]
    service_account_fallback: String,

    /// Default IAM role for pods whose service account has no
    /// eks.amazonaws.com/ecr-role-arn annotation.
    #[arg(long, global = true, env = "AWS_ECR_ROLE_ARN", value_parser = parse_role_arn, value_name = "ARN")]
    ecr_role_arn: Option<String>,

    /// Also read IRSA's eks.amazonaws.com/role-arn annotation as the pod's ECR role.
    #[arg(long, global = true, env = "PULLCRED_ACCEPT_IRSA_ROLE_ARN", value_parser = BoolishValueParser::new())]
    accept_irsa_role_annotation: bool,

    /// Workload identity pool audience for pods' Google identities
    /// (//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/P).
    #[arg(
        long,
        global = true,
        env = "PULLCRED_GOOGLE_AUDIENCE",
        value_name = "AUDIENCE"
    )]
    google_audience: Option<String>,

    /// Google service account for pods to impersonate when their service
    /// account has no iam.gke.io/gcp-service-account annotation.
    #[arg(
        long,
        global = true,
        env = "PULLCRED_GOOGLE_SERVICE_ACCOUNT",
        value_name = "EMAIL"
    )]
    google_service_account: Option<String>,

    /// Spread token refreshes: each node refreshes each token a stable
    /// fraction of its refresh window early, up to this share of the window
    /// (0 to 1; 0 turns it off).
    #[arg(long, global = true, env = "PULLCRED_REFRESH_JITTER", default_value = "1", value_parser = parse_jitter, value_name = "FRACTION")]
    refresh_jitter: f64,

    /// pullcred's config file: Vault, token exchanges, EKS Pod Identity,
    /// namespace-scoped credentials and the per-namespace policy (0600,
    /// owned by the user running pullcred; check it with `pullcred config validate FILE`).
    #[arg(
        long = "config",
        global = true,
        env = "PULLCRED_CONFIG",
        value_name = "FILE"
    )]
    config_file: Option<PathBuf>,

    /// Prometheus metrics, rewritten after each exec for node_exporter's
    /// textfile collector (e.g. /var/lib/node_exporter/textfile_collector/pullcred.prom);
    /// the counters live in the cache directory. Off when unset.
    #[arg(
        long,
        global = true,
        env = "PULLCRED_METRICS_FILE",
        value_name = "FILE"
    )]
    metrics_file: Option<PathBuf>,
}

#[cfg(feature = "static")]
fn parse_annotation(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A service-account token file for `doctor`: read once, at most 64 KiB.
#[cfg(feature = "static")]
fn read_token_file(path: &std::path::Path) -> Result<crate::secret::Secret, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = String::new();
    f.take(64 * 1024 + 1)
        .read_to_string(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let t = buf.trim();
    if t.is_empty() || buf.len() > 64 * 1024 {
        return Err(format!(
            "{}: not a service-account token (empty, or over 64 KiB)",
            path.display()
        ));
    }
    Ok(crate::secret::Secret::new(t))
}

fn parse_role_arn(s: &str) -> Result<String, String> {
    crate::sources::aws::check_role_arn(s.trim())?;
    Ok(s.trim().to_string())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Answer one CredentialProviderRequest from stdin (the default).
    GetCredentials,
    // credential-helper mode (issue #19; see credhelper.rs) -- begin
    /// Speak the docker credential-helper protocol (get|list|store|erase|version)
    /// with the kubelet path's sources and cache; also run as `docker-credential-pullcred ACTION`.
    CredentialHelper {
        /// get, list, store, erase or version.
        action: Option<String>,
        /// Run with the args and env of the kubelet's provider entry for
        /// pullcred, from this CredentialProviderConfig (file or directory).
        #[arg(
            long = "kubelet-config",
            env = "PULLCRED_KUBELET_CONFIG",
            value_name = "FILE|DIR"
        )]
        kubelet_config: Option<PathBuf>,
        /// The name of that entry (the binary's name in the kubelet's bin dir).
        #[arg(
            long = "kubelet-provider",
            env = "PULLCRED_KUBELET_PROVIDER",
            default_value = "pullcred",
            value_name = "NAME"
        )]
        kubelet_provider: String,
    },
    // credential-helper mode -- end
    /// Explain an ImagePullBackOff from the node: credentials, registry, digest, disk, clock.
    #[cfg(feature = "static")]
    Doctor {
        /// The image as in the pod spec: [registry/]repository[:tag][@digest].
        image: String,
        /// The kubelet's --image-credential-provider-config (file or directory).
        #[arg(long = "kubelet-config", value_name = "FILE|DIR")]
        config: Option<PathBuf>,
        /// The container runtime's image store [default: /var/lib/containerd, ...].
        #[arg(long, value_name = "DIR")]
        image_fs: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Check a pod's own identity: a file holding its service-account
        /// token (`kubectl create token SA -n NS --audience AUD > FILE`).
        #[arg(long, value_name = "FILE")]
        service_account_token: Option<PathBuf>,
        /// An annotation of that service account, as the kubelet passes it (repeatable).
        #[arg(long = "annotation", value_parser = parse_annotation, value_name = "KEY=VALUE")]
        annotations: Vec<(String, String)>,
        /// containerd's registry hosts directory (its `config_path`), read for
        /// the registry's `hosts.toml` mirrors.
        #[arg(long, value_name = "DIR", default_value = crate::doctor::CERTS_D)]
        containerd_certs_dir: PathBuf,
        /// The kubelet's kubeconfig (/etc/kubernetes/kubelet.conf): check that the node may
        /// request tokens for the provider's audience, and the service account's annotations.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
    },
}

/// The kubelet's invocation, parsed without clap: global flags only, in
/// their plain forms. Building clap's description of every command and
/// flag was a third of a cache hit's page faults and most of its heap.
///
/// It accepts a subset of what [`Cli`] accepts and must then agree with it
/// exactly; anything else (a subcommand, `--help`, an unknown or repeated
/// flag, an empty value, a value the flag's parser refuses, a value that
/// starts with `-`) returns `None`, and clap parses the arguments as it
/// always has and reports in its words. Both use the same value parsers and
/// defaults; `provider/tests/cli_fast_path.rs` checks that they agree and
/// that the table below names exactly clap's global flags.
mod fast {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::Globals;

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Kind {
        /// A switch: `--flag`, or the variable as a boolean word.
        Bool,
        /// One value.
        One,
        /// Values split at this delimiter, repeatable on the command line.
        List(char),
    }

    /// (long name, variable, kind), in the order of [`Globals`]' fields.
    pub const FLAGS: &[(&str, &str, Kind)] = &[
        ("cache-dir", "PULLCRED_CACHE_DIR", Kind::One),
        ("no-cache", "PULLCRED_NO_CACHE", Kind::Bool),
        ("docker-config", "PULLCRED_DOCKER_CONFIG", Kind::List(':')),
        ("aws-secret", "PULLCRED_AWS_SECRETS", Kind::List(',')),
        (
            "static-cache-duration",
            "PULLCRED_STATIC_CACHE_DURATION",
            Kind::One,
        ),
        (
            "no-registry-check",
            "PULLCRED_NO_REGISTRY_CHECK",
            Kind::Bool,
        ),
        ("timeout", "PULLCRED_TIMEOUT", Kind::One),
        ("mirror", "PULLCRED_MIRRORS", Kind::List(',')),
        ("acr-mirror", "PULLCRED_ACR_MIRRORS", Kind::List(',')),
        ("azure-config", "PULLCRED_AZURE_CONFIG", Kind::One),
        (
            "service-account-fallback",
            "PULLCRED_SERVICE_ACCOUNT_FALLBACK",
            Kind::One,
        ),
        ("ecr-role-arn", "AWS_ECR_ROLE_ARN", Kind::One),
        (
            "accept-irsa-role-annotation",
            "PULLCRED_ACCEPT_IRSA_ROLE_ARN",
            Kind::Bool,
        ),
        ("google-audience", "PULLCRED_GOOGLE_AUDIENCE", Kind::One),
        (
            "google-service-account",
            "PULLCRED_GOOGLE_SERVICE_ACCOUNT",
            Kind::One,
        ),
        ("refresh-jitter", "PULLCRED_REFRESH_JITTER", Kind::One),
        ("config", "PULLCRED_CONFIG", Kind::One),
        ("metrics-file", "PULLCRED_METRICS_FILE", Kind::One),
    ];

    /// clap's `BoolishValueParser` words.
    fn boolish(s: &str) -> Option<bool> {
        match s.to_ascii_lowercase().as_str() {
            "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
            "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
            _ => None,
        }
    }

    /// The raw values of each flag (command line first, else its variable).
    type Raw = Vec<Option<Vec<String>>>;

    fn collect(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Raw> {
        let mut raw: Raw = vec![None; FLAGS.len()];
        let mut it = args.iter().skip(1);
        while let Some(arg) = it.next() {
            let body = arg.to_str()?.strip_prefix("--")?;
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let i = FLAGS.iter().position(|f| f.0 == name)?;
            let kind = FLAGS[i].2;
            if kind == Kind::Bool {
                if inline.is_some() || raw[i].is_some() {
                    return None;
                }
                raw[i] = Some(vec!["true".into()]);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it.next()?.to_str()?,
            };
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            match kind {
                Kind::List(d) => raw[i]
                    .get_or_insert_with(Vec::new)
                    .extend(value.split(d).map(String::from)),
                _ if raw[i].is_some() => return None,
                _ => raw[i] = Some(vec![value.to_string()]),
            }
        }
        for (i, (_, var, kind)) in FLAGS.iter().enumerate() {
            if raw[i].is_some() {
                continue;
            }
            let Some(v) = env(var) else { continue };
            let v = v.into_string().ok()?;
            if v.is_empty() {
                return None;
            }
            raw[i] = Some(match kind {
                Kind::Bool => vec![boolish(&v)?.to_string()],
                Kind::One => vec![v],
                Kind::List(d) => v.split(*d).map(String::from).collect(),
            });
        }
        Some(raw)
    }

    pub fn globals(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Globals> {
        let mut raw = collect(args, env)?.into_iter();
        let mut next = || raw.next().flatten();
        let one = |v: Option<Vec<String>>| v.and_then(|mut v| v.pop());
        let flag = |v: Option<Vec<String>>| one(v).is_some_and(|s| s == "true");
        let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
        let list = |v: Option<Vec<String>>| v.unwrap_or_default();
        Some(Globals {
            cache_dir: one(next()).map(PathBuf::from),
            no_cache: flag(next()),
            docker_configs: list(next()).into_iter().map(path).collect::<Option<_>>()?,
            aws_secrets: list(next())
                .iter()
                .map(|s| super::parse_mapping(s).ok())
                .collect::<Option<_>>()?,
            // Defaults as values: clap parses its default strings ("5m",
            // "20s", "1") to these, which the test checks; parsing a float
            // costs a hit a page of dec2flt tables.
            static_cache_duration: match one(next()) {
                Some(s) => super::parse_static_ttl(&s).ok()?,
                None => Duration::from_secs(300),
            },
            no_registry_check: flag(next()),
            timeout: match one(next()) {
                Some(s) => super::parse_timeout(&s).ok()?,
                None => Duration::from_secs(20),
            },
            mirrors: list(next())
                .iter()
                .map(|s| super::parse_mirror(s).ok())
                .collect::<Option<_>>()?,
            acr_mirrors: list(next())
                .iter()
                .map(|s| super::parse_mirror(s).ok())
                .collect::<Option<_>>()?,
            azure_config: one(next()).map(PathBuf::from),
            service_account_fallback: match one(next()).as_deref() {
                None | Some("none") => "none".into(),
                Some("node") => "node".into(),
                Some(_) => return None,
            },
            ecr_role_arn: match one(next()) {
                Some(s) => Some(super::parse_role_arn(&s).ok()?),
                None => None,
            },
            accept_irsa_role_annotation: flag(next()),
            google_audience: one(next()),
            google_service_account: one(next()),
            refresh_jitter: match one(next()) {
                Some(s) => super::parse_jitter(&s).ok()?,
                None => 1.0,
            },
            config_file: one(next()).map(PathBuf::from),
            metrics_file: one(next()).map(PathBuf::from),
        })
    }
}

/// For `provider/tests/cli_fast_path.rs`: the kubelet-path parse and clap's
/// parse of the same arguments (with the process environment), as `Debug`
/// text; and the fast path's flag table next to clap's global flags as
/// `(long, env, kind)` with kind `bool`, `one` or `list:D`.
#[doc(hidden)]
pub fn fast_path_check(args: &[OsString]) -> (Option<String>, Result<String, String>) {
    let fast = fast::globals(args, |k| std::env::var_os(k)).map(|g| format!("{g:?}"));
    let clap = Cli::try_parse_from(args)
        .map(|c| format!("{:?}", c.globals))
        .map_err(|e| e.to_string());
    (fast, clap)
}

/// `(long, env, kind)` of one global flag.
#[doc(hidden)]
pub type FlagRow = (String, String, String);

#[doc(hidden)]
pub fn fast_path_tables() -> (Vec<FlagRow>, Vec<FlagRow>) {
    let kind = |k: fast::Kind| match k {
        fast::Kind::Bool => "bool".to_string(),
        fast::Kind::One => "one".to_string(),
        fast::Kind::List(d) => format!("list:{d}"),
    };
    let ours = fast::FLAGS
        .iter()
        .map(|(l, e, k)| (l.to_string(), e.to_string(), kind(*k)))
        .collect();
    let cmd = <Globals as Args>::augment_args(clap::Command::new("pullcred"));
    let theirs = cmd
        .get_arguments()
        .map(|a| {
            let k = match (a.get_action().takes_values(), a.get_value_delimiter()) {
                (false, _) => "bool".to_string(),
                (true, Some(d)) => format!("list:{d}"),
                (true, None) => "one".to_string(),
            };
            let env = a
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            (a.get_long().unwrap_or_default().to_string(), env, k)
        })
        .collect();
    (ours, theirs)
}

fn parse_jitter(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

fn parse_mapping(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not REGISTRY=SECRET")),
    }
}

fn parse_static_ttl(s: &str) -> Result<Duration, String> {
    let d = deadline::parse_duration(s)?;
    if d.is_zero() || d > Duration::from_secs(12 * 3600) {
        return Err("must be between 1s and 12h".into());
    }
    Ok(d)
}

/// One `--mirror` value; empty items of the comma-separated list are skipped.
#[derive(Debug, Clone)]
struct Mirror(Option<crate::settings::Mirror>);

fn parse_mirror(s: &str) -> Result<Mirror, String> {
    if s.trim().is_empty() {
        return Ok(Mirror(None));
    }
    crate::sources::mirror::parse_mirror(s).map(|m| Mirror(Some(m)))
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = deadline::parse_duration(s)?;
    if d.is_zero() || d > deadline::MAX {
        return Err(format!(
            "must be between 1ms and {}s",
            deadline::MAX.as_secs()
        ));
    }
    Ok(d)
}

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // credential-helper mode (issue #19): `docker-credential-pullcred ACTION`
    // is `pullcred credential-helper ACTION`.
    let args = crate::credhelper::as_subcommand(args);
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && (first == "config" || first == "match")
    {
        logging::init();
        let code = kubelet_config::cli::run(args[1..].to_vec());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    #[cfg(feature = "cri")]
    if args.get(1).is_some_and(|a| a == "prepull") {
        logging::init();
        return crate::prepull::main(args[2..].to_vec());
    }
    // installer (issue #19 item 2)
    if args.get(1).is_some_and(|a| a == "install") {
        logging::init();
        return crate::install::main(args[2..].to_vec());
    }
    let cli = match fast::globals(&args, |k| std::env::var_os(k)) {
        Some(globals) => Cli {
            command: None,
            globals,
        },
        None => match Cli::try_parse_from(&args) {
            Ok(c) => c,
            Err(e) => return crate::exit::parse_error(&e, ""),
        },
    };
    logging::init();
    let opts = match options(&cli.globals) {
        Ok(o) => o,
        Err(e) => return crate::exit::fail(e),
    };
    // A mirror TARGET no source serves is a usage error, before any work.
    if let Err(e) = crate::sources::mirror::check_targets(&opts) {
        eprintln!("pullcred: {e}");
        return ExitCode::from(2);
    }
    if matches!(cli.command, None | Some(Command::GetCredentials)) {
        let code = get_credentials(&opts);
        // The process ends here: freeing the settings and arguments block
        // by block was a tenth of a cache hit's own work.
        std::mem::forget((opts, cli, args));
        return code;
    }
    match cli.command {
        None | Some(Command::GetCredentials) => get_credentials(&opts),
        // credential-helper mode (issue #19)
        Some(Command::CredentialHelper {
            ref action,
            kubelet_config: ref kubelet_file,
            ref kubelet_provider,
        }) => {
            let kubelet = kubelet_file
                .as_deref()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, kubelet_provider.as_str()));
            crate::credhelper::main(&opts, action.as_deref(), kubelet, |t| {
                read_request(rustix::stdio::stdin(), t)
            })
        }
        #[cfg(feature = "static")]
        Some(Command::Doctor {
            ref image,
            ref config,
            ref image_fs,
            json,
            ref service_account_token,
            ref annotations,
            ref containerd_certs_dir,
            ref kubeconfig,
        }) => {
            let token = match service_account_token.as_deref().map(read_token_file) {
                Some(Err(e)) => {
                    eprintln!("pullcred: --service-account-token {e}");
                    return ExitCode::from(2);
                }
                Some(Ok(t)) => Some(t),
                None => None,
            };
            let doc = crate::doctor::DoctorOptions {
                config: config.clone(),
                image_fs: image_fs.clone(),
                service_account_token: token,
                annotations: annotations.iter().cloned().collect(),
                certs_dir: containerd_certs_dir.clone(),
            };
            let report = crate::doctor::run_with_cluster(image, &opts, &doc, kubeconfig.as_deref());
            let text = if json {
                crate::doctor::render_json(&report)
            } else {
                crate::doctor::render_text(&report)
            };
            println!("{}", text.trim_end());
            if report.would_pull {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Reads stdin to EOF, at most one byte past the request limit (the decoder
/// reports the overflow), waiting at most `timeout` in all.
fn read_request(stdin: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> std::io::Result<Vec<u8>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let end = std::time::Instant::now() + timeout;
    // Read from the descriptor straight into one heap buffer: `Stdin`'s own
    // 8 KiB buffer, or a stack chunk, cost a cache hit two page faults.
    let mut buf = Vec::with_capacity(2048);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no end of input within the {}s deadline",
                    timeout.as_secs_f32()
                ),
            ));
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => continue, // timed out: the loop reports it
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        // Into the spare capacity: no zeroing, the length grows by what was read.
        match rustix::io::read(stdin, rustix::buffer::spare_capacity(&mut buf)) {
            Ok(0) => return Ok(buf),
            Ok(_) | Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
        if buf.len() > crate::protocol::MAX_REQUEST_BYTES {
            return Ok(buf);
        }
    }
}

/// pullcred's config file, read as a private file (it decides where pods'
/// tokens are sent) and checked as `pullcred config validate` checks it.
fn load_config(path: &std::path::Path) -> Result<crate::settings::PullcredConfig, String> {
    use kubelet_config::pullcred;
    let at = |e: &dyn std::fmt::Display| format!("config file {}: {e}", path.display());
    let bytes = crate::private_file::open_regular(
        path,
        crate::private_file::Limits::private(pullcred::MAX_BYTES),
    )
    .map_err(|e| at(&e))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| at(&"not UTF-8"))?;
    let config = pullcred::parse(text).map_err(|e| at(&e))?;
    let problems = pullcred::check(&config);
    if let Some(p) = problems.iter().find(|p| !p.warning) {
        let more = problems.iter().filter(|p| !p.warning).count() - 1;
        let more = if more > 0 {
            format!(" (and {more} more; run `pullcred config validate`)")
        } else {
            String::new()
        };
        return Err(at(&format_args!("{p}{more}")));
    }
    Ok(config)
}

fn options(cli: &Globals) -> Result<run::Options, String> {
    let config = match &cli.config_file {
        Some(p) if !p.as_os_str().is_empty() => std::sync::Arc::new(load_config(p)?),
        _ => Default::default(),
    };
    let policy = config.policy.clone();
    Ok(run::Options {
        config,
        refresh_jitter: cli.refresh_jitter,
        metrics_file: cli
            .metrics_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty()),
        cache_dir: cli.cache_dir.clone(),
        no_cache: cli.no_cache,
        timeout: cli.timeout,
        docker_configs: cli.docker_configs.clone(),
        aws_secrets: cli.aws_secrets.clone(),
        static_ttl: cli.static_cache_duration,
        registry_check: !cli.no_registry_check,
        mirrors: cli
            .mirrors
            .iter()
            .chain(&cli.acr_mirrors)
            .filter_map(|m| m.0.clone())
            .collect(),
        azure: crate::settings::AzureSettings {
            config: cli.azure_config.clone(),
        },
        workload: crate::settings::WorkloadSettings {
            fallback_to_node: cli.service_account_fallback == "node",
            aws_default_role: cli.ecr_role_arn.clone(),
            aws_accept_irsa: cli.accept_irsa_role_annotation,
            google_audience: cli.google_audience.clone().filter(|a| !a.trim().is_empty()),
            google_service_account: cli
                .google_service_account
                .clone()
                .filter(|a| !a.trim().is_empty()),
            policy,
        },
    })
}

fn get_credentials(opts: &run::Options) -> ExitCode {
    // The descriptor, not `std::io::stdin()`, which allocates an 8 KiB
    // buffer the moment it is first called.
    let stdin = rustix::stdio::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "pullcred: expects a CredentialProviderRequest (JSON) on stdin, as the kubelet sends it; see `pullcred --help`"
        );
        return ExitCode::from(2);
    }
    // One deadline from the first step: reading stdin, the cache, the files
    // and the network all fit inside it. Nothing before the first wait can
    // block (stdin is polled, files are opened non-blocking and must be
    // regular); the watchdog starts before that wait (see `run::serve`).
    let deadline = crate::deadline::Deadline::after(opts.timeout);
    // The kubelet writes the request and closes stdin; a writer that never
    // does must not hang us: read with the run's deadline.
    let (code, answered) = match read_request(stdin, deadline.remaining()) {
        Err(e) => (
            crate::exit::fail(format_args!("reading the request from stdin: {e}")),
            false,
        ),
        Ok(input) => match run::get_credentials_until(opts, input.as_slice(), deadline) {
            Ok(json) => (crate::exit::respond(&json), true),
            Err(f) => (crate::exit::fail(f), false),
        },
    };
    // After the answer is written: counting the exec cannot change it, and
    // waits a few milliseconds at most (see `metrics`).
    crate::metrics::record_exec(opts, &deadline, answered && code == ExitCode::SUCCESS);
    code
}
