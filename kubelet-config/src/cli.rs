//! `pullcred config ...` and `pullcred match ...`.
//!
//! ```text
//! pullcred config validate PATH [--bin-dir DIR] [--feature-gates GATES] [--strict] [--format text|json]
//! pullcred config generate --cloud aws|gcp|azure|generic|vault|exchange[,...] [--name NAME] [--registry HOST[/PATH]]...
//!     [--docker-hub] [--mirror SRC=TARGET[/PREFIX]]... [--default-cache-duration D] [--arg ARG]... [--env NAME=VALUE]...
//!     [--token-audience AUD [--token-cache-type ServiceAccount|Token] [--require-service-account[=BOOL]]
//!      [--required-annotation KEY]... [--optional-annotation KEY]...
//!      [--rbac-out FILE [--rbac-service-account NAMESPACE/NAME]...]] [--pullcred-config-out FILE]
//!     [--format yaml|json] [--output FILE]
//! pullcred match IMAGE --config PATH [--bin-dir DIR] [--feature-gates GATES] [--fetch]
//!     [--service-account-token-file FILE] [--service-account-annotation KEY=VALUE]...
//! ```
//!
//! Reports go to stdout, errors to stderr. Exit codes: 0 ok (warnings alone
//! included, unless `--strict`); 1 error-level findings, no provider for the
//! image, or a failed fetch; 2 usage.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::CredentialProvider;
use crate::exec::{self, ServiceAccount};
use crate::generate::{self, GenerateOptions, TokenOptions};
use crate::matching::{self, glob_matches, normalize_image};
use crate::sources::Cloud;
use crate::validate::{self, Severity, ValidateOptions};

/// The service account token feature gate's name.
pub const SA_TOKEN_GATE: &str = "KubeletServiceAccountTokenForCredentialProviders";

#[derive(Parser, Debug)]
#[command(
    name = "pullcred",
    about = "Check, write and try kubelet image credential provider configs"
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Top {
    /// Work with the kubelet's CredentialProviderConfig.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Say which provider entry the kubelet would run for an image, and why.
    Match(MatchArgs),
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Apply the kubelet's rules (and pullcred's warnings) to a file or directory.
    Validate(ValidateArgs),
    /// Write a config covering every host form of the chosen sources.
    Generate(GenerateArgs),
}

#[derive(Args, Debug)]
struct GateArgs {
    /// Feature gates, as the kubelet's flag: KubeletServiceAccountTokenForCredentialProviders=true|false
    /// (default on, as since Kubernetes 1.34).
    #[arg(long, value_name = "GATES")]
    feature_gates: Option<String>,
    /// The kubelet's --image-credential-provider-bin-dir.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ValidateArgs {
    /// A config file, or a directory of *.json, *.yaml and *.yml files.
    path: PathBuf,
    #[command(flatten)]
    gates: GateArgs,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    strict: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Same as --format json.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ConfigFormat {
    Yaml,
    Json,
}

/// A `--cloud` value: a cloud, or a keyless source of the pullcred config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloudArg {
    Cloud(Cloud),
    Keyless(generate::Keyless),
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Sources to cover (comma-separated or repeated): aws, gcp, azure,
    /// generic, and the keyless sources vault and exchange (their --registry
    /// hosts, served through pullcred's config file; need --token-audience).
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_cloud_arg)]
    cloud: Vec<CloudArg>,
    /// The provider entry's name (the plugin binary's file name).
    #[arg(long, default_value = generate::DEFAULT_NAME)]
    name: String,
    /// generic: a registry host glob, with an optional path (repeatable).
    #[arg(long, value_name = "HOST[/PATH]")]
    registry: Vec<String>,
    /// generic: add docker.io.
    #[arg(long)]
    docker_hub: bool,
    /// Answer for images of SRC with TARGET's credentials (`pullcred --mirror`;
    /// TARGET a registry a chosen cloud serves; repeatable).
    #[arg(long, value_name = "SRC=ACR", value_parser = parse_pair)]
    mirror: Vec<(String, String)>,
    /// Override the cloud's default defaultCacheDuration (Go duration).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    default_cache_duration: Option<String>,
    /// An argument for the plugin (repeatable).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable for the plugin (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// Write tokenAttributes with this service account token audience.
    #[arg(long, value_name = "AUD")]
    token_audience: Option<String>,
    #[arg(long, value_name = "ServiceAccount|Token", requires = "token_audience")]
    token_cache_type: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", requires = "token_audience")]
    require_service_account: Option<bool>,
    #[arg(long, value_name = "KEY", requires = "token_audience")]
    required_annotation: Vec<String>,
    #[arg(long, value_name = "KEY", requires = "token_audience")]
    optional_annotation: Vec<String>,
    /// Also write the RBAC (ClusterRole and ClusterRoleBinding to group
    /// system:nodes) that lets the kubelets request tokens for the audience.
    #[arg(long, value_name = "FILE", requires = "token_audience")]
    rbac_out: Option<PathBuf>,
    /// Grant the audience only for this service account (repeatable): the
    /// RBAC becomes a Role and RoleBinding per namespace with resourceNames.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "rbac_out")]
    rbac_service_account: Vec<String>,
    /// Write a starting pullcred config file (for vault, exchange, or aws
    /// with the EKS Pod Identity audience), mode 0600.
    #[arg(long, value_name = "FILE")]
    pullcred_config_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ConfigFormat::Yaml)]
    format: ConfigFormat,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct MatchArgs {
    /// The image, as in a pod spec (tag and digest are dropped, as the kubelet does).
    image: String,
    /// The config file or directory.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    #[command(flatten)]
    gates: GateArgs,
    /// Run the matching plugins as the kubelet would and show the auth key it would use.
    #[arg(long)]
    fetch: bool,
    /// A service account token to send to tokenAttributes providers.
    #[arg(long, value_name = "FILE")]
    service_account_token_file: Option<PathBuf>,
    /// An annotation of the pod's service account (repeatable). As with the
    /// kubelet, only the keys tokenAttributes lists reach the plugin, and a
    /// missing required key means the plugin is not run.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair)]
    service_account_annotation: Vec<(String, String)>,
    /// Exec timeout in seconds (the kubelet's is 60).
    #[arg(long, default_value_t = 60, hide = true)]
    timeout_secs: u64,
}

fn parse_cloud_arg(s: &str) -> Result<CloudArg, String> {
    if let Some(c) = Cloud::parse(s) {
        return Ok(CloudArg::Cloud(c));
    }
    generate::Keyless::parse(s)
        .map(CloudArg::Keyless)
        .ok_or_else(|| format!("unknown cloud {s:?} (aws, gcp, azure, generic, vault, exchange)"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_gates(gates: Option<&str>, err: &mut dyn Write) -> Result<bool, String> {
    let mut on = true;
    for item in gates
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("--feature-gates: {item:?} is not NAME=BOOL"))?;
        let value: bool = match value.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "--feature-gates: {name}: {other:?} is not true or false"
                ));
            }
        };
        if name.trim() == SA_TOKEN_GATE {
            on = value;
        } else {
            let _ = writeln!(
                err,
                "pullcred: note: feature gate {name} does not affect credential provider config; ignored"
            );
        }
    }
    Ok(on)
}

/// Runs `config ...` or `match ...`; `args` are everything after the program
/// name. Prints reports to stdout and errors to stderr; returns the exit code
/// (0 ok, 1 findings or errors, 2 usage).
pub fn run(args: Vec<OsString>) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(args, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run`] with the output streams given (for tests).
pub fn run_with(args: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once(OsString::from("pullcred")).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{text}");
                return 2;
            }
            let _ = write!(out, "{text}");
            return 0;
        }
    };
    let code = match cli.command {
        Top::Config {
            command: ConfigCommand::Validate(a),
        } => validate_cmd(a, out, err),
        Top::Config {
            command: ConfigCommand::Generate(a),
        } => generate_cmd(a, out, err),
        Top::Match(a) => match_cmd(a, out, err),
    };
    let _ = out.flush();
    code
}

fn options(gates: &GateArgs, err: &mut dyn Write) -> Result<ValidateOptions, String> {
    Ok(ValidateOptions {
        service_account_token_gate: parse_gates(gates.feature_gates.as_deref(), err)?,
        bin_dir: gates.bin_dir.clone(),
    })
}

fn validate_cmd(a: ValidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let opts = match options(&a.gates, err) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "pullcred: {e}");
            return 2;
        }
    };
    if let Some(text) = pullcred_config_text(&a.path) {
        return validate_pullcred(&a, &text, out);
    }
    let report = validate::validate_path(&a.path, &opts);
    if a.json || a.format == ReportFormat::Json {
        let findings: Vec<serde_json::Value> = report
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "severity": f.severity.as_str(),
                    "file": f.file.as_ref().map(|p| p.display().to_string()),
                    "line": f.line,
                    "provider": f.provider.as_ref().map(|p| p.name.clone()),
                    "providerIndex": f.provider.as_ref().map(|p| p.index),
                    "field": f.field,
                    "why": f.why,
                    "message": f.to_string(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "path": a.path.display().to_string(),
            "files": report.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
            "errors": report.errors(),
            "warnings": report.warnings(),
            "findings": findings,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        for f in &report.findings {
            let _ = writeln!(out, "{f}");
        }
        let providers = report.providers().count();
        let _ = writeln!(
            out,
            "{}: {} file(s), {providers} provider(s): {} error(s), {} warning(s)",
            a.path.display(),
            report.files.len(),
            report.errors(),
            report.warnings()
        );
    }
    i32::from(report.errors() > 0 || (a.strict && report.warnings() > 0))
}

/// The file's text when `path` is a pullcred config file (its `kind` says
/// so) rather than a kubelet config.
fn pullcred_config_text(path: &std::path::Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > crate::pullcred::MAX_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    crate::pullcred::looks_like(&text).then_some(text)
}

/// `config validate FILE` for pullcred's own config file: the provider's
/// decoding and checks, and the file's ownership and mode as the provider
/// will check them.
fn validate_pullcred(a: &ValidateArgs, text: &str, out: &mut dyn Write) -> i32 {
    use crate::pullcred::{self, Problem};
    let mut problems = match pullcred::parse(text) {
        Ok(c) => pullcred::check(&c),
        Err(e) => vec![Problem::error("file", e)],
    };
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&a.path) {
        use std::os::unix::fs::MetadataExt;
        if meta.mode() & 0o077 != 0 {
            problems.push(Problem::error(
                "file",
                format!(
                    "mode {:04o}: pullcred reads its config only when group and others have no access (chmod 600): it decides where pods' tokens are sent",
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    let errors = problems.iter().filter(|p| !p.warning).count();
    let warnings = problems.len() - errors;
    if a.json || a.format == ReportFormat::Json {
        let findings: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "severity": if p.warning { "warning" } else { "error" },
                    "file": a.path.display().to_string(),
                    "field": p.at,
                    "why": p.what,
                    "message": format!("{}: {p}", a.path.display()),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "path": a.path.display().to_string(),
            "kind": pullcred::KIND,
            "errors": errors,
            "warnings": warnings,
            "findings": findings,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        for p in &problems {
            let sev = if p.warning { "warning" } else { "error" };
            let _ = writeln!(out, "{sev}: {}: {p}", a.path.display());
        }
        let _ = writeln!(
            out,
            "{}: pullcred config: {errors} error(s), {warnings} warning(s)",
            a.path.display()
        );
    }
    i32::from(errors > 0 || (a.strict && warnings > 0))
}

fn generate_cmd(a: GenerateArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut clouds = Vec::new();
    let mut keyless = Vec::new();
    for c in a.cloud {
        match c {
            CloudArg::Cloud(c) if !clouds.contains(&c) => clouds.push(c),
            CloudArg::Keyless(k) if !keyless.contains(&k) => keyless.push(k),
            _ => {}
        }
    }
    if keyless.len() > 1 {
        let _ = writeln!(
            err,
            "pullcred: config generate: --registry hosts would belong to both vault and exchange: generate one of them at a time"
        );
        return 2;
    }
    let mut opts = GenerateOptions::new(clouds);
    opts.keyless = keyless.first().copied();
    opts.name = a.name;
    opts.registries = a.registry;
    opts.docker_hub = a.docker_hub;
    opts.mirrors = a.mirror;
    opts.default_cache_duration = a.default_cache_duration;
    opts.args = a.args;
    opts.env = a.env;
    opts.token = a.token_audience.map(|audience| TokenOptions {
        audience,
        cache_type: a.token_cache_type,
        require_service_account: a.require_service_account,
        required_annotations: a.required_annotation,
        optional_annotations: a.optional_annotation,
    });
    let config = match generate::build(&opts) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "pullcred: config generate: {e}");
            return 2;
        }
    };
    // Everything is rendered before anything is written.
    let rbac = match (&opts.token, &a.rbac_out) {
        (Some(t), Some(_)) => {
            let accounts: Result<Vec<_>, _> = a
                .rbac_service_account
                .iter()
                .map(|s| generate::parse_service_account(s))
                .collect();
            match accounts
                .and_then(|sa| generate::rbac_yaml(&t.audience, &sa, &opts.command_line()))
            {
                Ok(y) => Some(y),
                Err(e) => {
                    let _ = writeln!(err, "pullcred: config generate: {e}");
                    return 2;
                }
            }
        }
        _ => None,
    };
    let skeleton = generate::pullcred_config_skeleton(&opts);
    if a.pullcred_config_out.is_some() && skeleton.is_none() {
        let _ = writeln!(
            err,
            "pullcred: config generate: --pullcred-config-out: the chosen sources need no pullcred config (it is for vault, exchange, or aws with --token-audience {})",
            crate::pullcred::eks::POD_IDENTITY_AUDIENCE
        );
        return 2;
    }
    let text = match a.format {
        ConfigFormat::Yaml => generate::render_yaml(&config, &opts.command_line()),
        ConfigFormat::Json => generate::render_json(&config),
    };
    if let (Some(path), Some(y)) = (&a.rbac_out, &rbac)
        && let Err(e) = std::fs::write(path, y)
    {
        let _ = writeln!(err, "pullcred: config generate: {}: {e}", path.display());
        return 1;
    }
    if let (Some(path), Some(y)) = (&a.pullcred_config_out, &skeleton)
        && let Err(e) = write_private(path, y)
    {
        let _ = writeln!(err, "pullcred: config generate: {}: {e}", path.display());
        return 1;
    }
    match a.output {
        None => {
            let _ = out.write_all(text.as_bytes());
        }
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                let _ = writeln!(err, "pullcred: config generate: {}: {e}", path.display());
                return 1;
            }
        }
    }
    // What the operator still has to do, on stderr (stdout is the config).
    if let (Some(t), None) = (&opts.token, &a.rbac_out) {
        let _ = writeln!(
            err,
            "pullcred: note: the kubelets need RBAC to request tokens for the audience {:?} (verb {}); write it with --rbac-out FILE and kubectl apply -f FILE",
            t.audience,
            generate::AUDIENCE_VERB
        );
    }
    if skeleton.is_some() && a.pullcred_config_out.is_none() {
        let _ = writeln!(
            err,
            "pullcred: note: this provider entry reads {}; write a starting file with --pullcred-config-out FILE",
            generate::PULLCRED_CONFIG_PATH
        );
    }
    0
}

/// Writes a file only its owner may read (a pullcred config: the provider
/// refuses one that group or others can read).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let mut f = o.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        o.open(path)?.write_all(text.as_bytes())
    }
}

/// Why a provider entry is or is not run for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run: this glob matched.
    Runs { glob: String },
    /// Not run: no glob matched (glob errors included).
    Skipped { errors: Vec<String> },
}

/// The kubelet's choice for a (normalised) image: every provider entry whose
/// globs match is run, in config order.
pub fn provider_verdict(provider: &CredentialProvider, image: &str) -> Verdict {
    let mut errors = Vec::new();
    for glob in &provider.match_images {
        match glob_matches(glob, image) {
            Ok(true) => return Verdict::Runs { glob: glob.clone() },
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    Verdict::Skipped { errors }
}

fn match_cmd(a: MatchArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let opts = match options(&a.gates, err) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "pullcred: {e}");
            return 2;
        }
    };
    let report = validate::validate_path(&a.config, &opts);
    if report.errors() > 0 {
        for f in report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
        {
            let _ = writeln!(err, "{f}");
        }
        let _ = writeln!(
            err,
            "pullcred: match: the kubelet would refuse this config ({} error(s))",
            report.errors()
        );
        return 1;
    }
    let image = normalize_image(&a.image);
    let _ = writeln!(
        out,
        "image: {image}{}",
        if image == a.image {
            String::new()
        } else {
            format!(" (from {:?})", a.image)
        }
    );
    let mut running: Vec<(&Path, &CredentialProvider)> = Vec::new();
    for (file, p) in report.providers() {
        match provider_verdict(p, &image) {
            Verdict::Runs { glob } => {
                let _ = writeln!(
                    out,
                    "provider {:?} ({}): runs: matchImages {glob:?} matches {image}",
                    p.name,
                    file.display()
                );
                running.push((file, p));
            }
            Verdict::Skipped { errors } => {
                let mut why = format!(
                    "no matchImages glob matches (tried {})",
                    p.match_images.len()
                );
                if !errors.is_empty() {
                    why.push_str(&format!("; {}", errors.join("; ")));
                }
                let _ = writeln!(
                    out,
                    "provider {:?} ({}): skipped: {why}",
                    p.name,
                    file.display()
                );
            }
        }
    }
    if running.is_empty() {
        let _ = writeln!(
            out,
            "no provider runs for {image}: the kubelet pulls it without plugin credentials"
        );
        return 1;
    }
    if !a.fetch {
        return 0;
    }
    let Some(bin_dir) = opts.bin_dir.clone() else {
        let _ = writeln!(
            err,
            "pullcred: match --fetch needs --bin-dir (the kubelet's --image-credential-provider-bin-dir)"
        );
        return 2;
    };
    let sa = match &a.service_account_token_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => Some(ServiceAccount {
                token: t.trim_end().to_string(),
                annotations: a
                    .service_account_annotation
                    .iter()
                    .cloned()
                    .collect::<BTreeMap<_, _>>(),
            }),
            Err(e) => {
                let _ = writeln!(err, "pullcred: {}: {e}", path.display());
                return 2;
            }
        },
    };
    let mut failed = false;
    for (_, p) in running {
        let uses_token = p.token_attributes.is_some() && opts.service_account_token_gate;
        if uses_token && sa.is_none() {
            let _ = writeln!(
                out,
                "provider {:?}: not fetched: it gets a service account token from the kubelet; pass --service-account-token-file",
                p.name
            );
            failed = true;
            continue;
        }
        // Only the annotations tokenAttributes lists reach the plugin, and
        // a missing required one means the kubelet does not run it.
        let sa_for = match (&p.token_attributes, &sa) {
            (Some(t), Some(sa)) if uses_token => {
                match exec::service_account_annotations(t, &sa.annotations) {
                    Err(missing) => {
                        let _ = writeln!(
                            out,
                            "provider {:?}: not run: the service account lacks required annotation(s) {}; \
                             the kubelet does not run the plugin and uses no credentials from it",
                            p.name,
                            missing
                                .iter()
                                .map(|k| format!("{k:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        failed = true;
                        continue;
                    }
                    Ok(passed) => {
                        let dropped: Vec<String> = sa
                            .annotations
                            .keys()
                            .filter(|k| !passed.contains_key(*k))
                            .map(|k| format!("{k:?}"))
                            .collect();
                        if !dropped.is_empty() {
                            let _ = writeln!(
                                out,
                                "provider {:?}: not passed to the plugin (not listed in tokenAttributes): {}",
                                p.name,
                                dropped.join(", ")
                            );
                        }
                        Some(ServiceAccount {
                            token: sa.token.clone(),
                            annotations: passed,
                        })
                    }
                }
            }
            _ => None,
        };
        match exec::run_plugin(
            &bin_dir,
            p,
            &image,
            sa_for.as_ref(),
            Duration::from_secs(a.timeout_secs),
        ) {
            Err(e) => {
                let _ = writeln!(err, "pullcred: provider {:?}: {e}", p.name);
                let _ = writeln!(
                    out,
                    "provider {:?}: fetch failed: the kubelet uses no credentials from it",
                    p.name
                );
                failed = true;
            }
            Ok((response, stderr)) => {
                if !stderr.trim().is_empty() {
                    for line in stderr.lines() {
                        let _ = writeln!(err, "pullcred: plugin {:?} stderr: {line}", p.name);
                    }
                }
                let duration = match &response.cache_duration {
                    Some(d) => d.clone(),
                    None => format!(
                        "(none: defaultCacheDuration {})",
                        p.default_cache_duration.as_deref().unwrap_or("?")
                    ),
                };
                let _ = writeln!(
                    out,
                    "provider {:?}: response: cacheKeyType {}, cacheDuration {duration}, {} auth key(s)",
                    p.name,
                    response.cache_key_type,
                    response.auth.len()
                );
                for (key, auth) in &response.auth {
                    let _ = writeln!(
                        out,
                        "  auth {key:?}: username {:?}, password {}",
                        auth.username,
                        exec::mask(&auth.password)
                    );
                }
                let selection =
                    matching::select_auth_keys(response.auth.keys().map(String::as_str), &image);
                match selection.keys.first() {
                    None => {
                        let _ = writeln!(out, "  kubelet uses: none of these keys matches {image}");
                        failed = true;
                    }
                    Some(first) => {
                        let how = if selection.docker_hub_fallback {
                            format!(
                                "Docker Hub fallback key {}",
                                matching::DOCKER_HUB_FALLBACK_KEY
                            )
                        } else {
                            "first of the matching keys in reverse lexical order".to_string()
                        };
                        let _ = writeln!(out, "  kubelet uses: {first:?} ({how})");
                        if selection.keys.len() > 1 {
                            let rest: Vec<String> = selection.keys[1..]
                                .iter()
                                .map(|k| format!("{k:?}"))
                                .collect();
                            let _ = writeln!(out, "  then tries: {}", rest.join(", "));
                        }
                    }
                }
            }
        }
    }
    i32::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates() {
        let mut sink = Vec::new();
        assert_eq!(parse_gates(None, &mut sink), Ok(true));
        assert_eq!(
            parse_gates(
                Some("KubeletServiceAccountTokenForCredentialProviders=false"),
                &mut sink
            ),
            Ok(false)
        );
        assert_eq!(
            parse_gates(
                Some("Other=true, KubeletServiceAccountTokenForCredentialProviders=true"),
                &mut sink
            ),
            Ok(true)
        );
        assert!(
            parse_gates(
                Some("KubeletServiceAccountTokenForCredentialProviders=maybe"),
                &mut sink
            )
            .is_err()
        );
        assert!(parse_gates(Some("nonsense"), &mut sink).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
