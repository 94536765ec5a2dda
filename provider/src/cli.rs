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
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{deadline, logging, registry, run, sources};

#[derive(Parser, Debug)]
#[command(
    name = "pullcred",
    version,
    about = "kubelet image credential provider for ECR, ECR Public and Azure Container Registry, with an on-node token cache",
    long_about = None,
    after_help = "Run by the kubelet (--image-credential-provider-config). Reads a CredentialProviderRequest on stdin.\nOther tools: `pullcred config validate|generate ...`, `pullcred match IMAGE --config FILE`.\nLogs: PULLCRED_LOG=debug (stderr; secrets are never logged)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Cache directory [default: /run/pullcred as root, else ~/.cache/pullcred]
    #[arg(long, global = true, env = "PULLCRED_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not read or write the on-node cache.
    #[arg(long, global = true, env = "PULLCRED_NO_CACHE")]
    no_cache: bool,

    /// Deadline for the whole run, at most 55s (the kubelet kills at 60s).
    #[arg(long, global = true, env = "PULLCRED_TIMEOUT", default_value = "20s", value_parser = parse_timeout, value_name = "DURATION")]
    timeout: Duration,

    /// Serve images from SOURCE with the credentials of the Azure Container
    /// Registry ACR (repeatable; the variable takes a comma-separated list).
    #[arg(long = "mirror", global = true, env = "PULLCRED_ACR_MIRRORS", value_delimiter = ',', value_parser = parse_mirror, value_name = "SOURCE=ACR")]
    mirrors: Vec<Mirror>,

    /// AKS's azure.json [default: /etc/kubernetes/azure.json when present; "none" for no file]
    #[arg(
        long,
        global = true,
        env = "PULLCRED_AZURE_CONFIG",
        value_name = "FILE"
    )]
    azure_config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Answer one CredentialProviderRequest from stdin (the default).
    GetCredentials,
}

/// One `--mirror` value; empty items of the comma-separated list are skipped.
#[derive(Debug, Clone)]
struct Mirror(Option<registry::AcrMirror>);

fn parse_mirror(s: &str) -> Result<Mirror, String> {
    if s.trim().is_empty() {
        return Ok(Mirror(None));
    }
    registry::parse_acr_mirror(s).map(|m| Mirror(Some(m)))
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
    if let Some(first) = args.get(1).and_then(|a| a.to_str())
        && (first == "config" || first == "match")
    {
        logging::init();
        let code = kubelet_config::cli::run(args[1..].to_vec());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other error: the kubelet logs it as is.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("pullcred: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    logging::init();
    match cli.command {
        None | Some(Command::GetCredentials) => get_credentials(cli),
    }
}

fn get_credentials(cli: Cli) -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "pullcred: expects a CredentialProviderRequest (JSON) on stdin, as the kubelet sends it; see `pullcred --help`"
        );
        return ExitCode::from(2);
    }
    run::start_watchdog(cli.timeout);
    let opts = run::Options {
        cache_dir: cli.cache_dir,
        no_cache: cli.no_cache,
        timeout: cli.timeout,
        azure: sources::AzureSettings {
            mirrors: cli.mirrors.into_iter().filter_map(|m| m.0).collect(),
            config: cli.azure_config,
        },
    };
    match run::get_credentials(&opts, stdin.lock()) {
        Ok(json) => {
            run::RESPONDING.store(true, Ordering::SeqCst);
            let mut out = std::io::stdout().lock();
            match out
                .write_all(json.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pullcred: writing the response to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(f) => {
            eprintln!("pullcred: {f}");
            ExitCode::FAILURE
        }
    }
}
