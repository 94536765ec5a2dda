//! `pullcred install`: install pullcred on a running node, from a
//! DaemonSet (installer/manifests, installer/chart) or by hand.
//!
//! ```text
//! pullcred install --host-root DIR --profile kubeadm|eks-al2023|k3s|rke2
//!     --cloud LIST [--token-audience AUD] [--registry HOST]... [--generate-arg ARG]...
//!     [--binary PATH] [--merge] [--service UNIT] [--no-restart] [--dry-run]
//!     [--kubelet-healthz URL|none] [--health-timeout D] [--restart-timeout D] [--keep-running]
//! pullcred install --host-root DIR --profile P --uninstall [--no-restart]
//! pullcred install --profile talos|bottlerocket --cloud LIST --output DIR
//! ```
//!
//! On a node whose root is mounted at `--host-root` it:
//! 1. generates the kubelet's CredentialProviderConfig with `pullcred config
//!    generate` (same flags), and refuses the node when the kubelet already
//!    has an `--image-credential-provider-config` this would replace, unless
//!    `--merge`: then the existing providers are kept first and ours added
//!    (`kubelet_config::merge`), overlaps reported;
//! 2. checks the result as `pullcred config validate --strict` would (any
//!    finding refuses), and that every other provider's binary is in the bin dir;
//! 3. writes the binary, the config and the profile's flag files (see
//!    installer/profiles/), each only when its bytes differ, and records
//!    them in /etc/pullcred/install-state.json; a replaced file that was
//!    not the installer's own is first kept as `FILE.pullcred-prev`;
//! 4. validates the config as installed (`pullcred config validate --strict
//!    --bin-dir`); on failure every file goes back as it was;
//! 5. only if the config or a flag file changed: `systemctl daemon-reload`
//!    (when a unit drop-in changed) and `systemctl restart UNIT` in PID 1's
//!    namespaces, then waits for the kubelet's /healthz; if that fails,
//!    the files go back, the kubelet is restarted again, and it exits 1.
//!
//! A second run with the same input changes nothing and restarts nothing.
//! `--uninstall` puts back every `.pullcred-prev` file, removes the others
//! it wrote, and restarts. Talos and Bottlerocket nodes cannot be changed
//! from a pod: `--output DIR` writes what can be done there instead.
//!
//! stdout: the plan, with `--dry-run`; nothing otherwise. stderr: one line
//! per action, `pullcred: install: ...`. Exit codes: 0 done (changed or
//! not), 1 refused or failed (nothing left half-changed), 2 usage.

mod hostfs;
mod profile;
mod restart;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kubelet_config::config::{CredentialProviderConfig, decode_strict};
use kubelet_config::generate::render_yaml;
use kubelet_config::merge::merge;
use kubelet_config::validate::{ValidateOptions, validate_path, validate_text};
use serde::{Deserialize, Serialize};

use hostfs::{HostRoot, Previous, Put};
use profile::{BACKUP_SUFFIX, Flag, Profile};

const DEFAULT_HEALTHZ: &str = "http://127.0.0.1:10248/healthz";

#[derive(Parser, Debug)]
#[command(
    name = "pullcred install",
    about = "Install pullcred on a running node: binary, kubelet config and flags; restarts the kubelet only when something changed"
)]
struct Args {
    /// Where the node's root file system is mounted (/host in the DaemonSet; / on the node itself).
    #[arg(long, value_name = "DIR")]
    host_root: Option<PathBuf>,
    /// kubeadm, eks-al2023, k3s, rke2 (changed in place); talos, bottlerocket (--output only).
    #[arg(long, value_parser = Profile::parse)]
    profile: Profile,
    /// Sources to cover, as `pullcred config generate --cloud`.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    cloud: Vec<String>,
    /// As `pullcred config generate --token-audience`.
    #[arg(long, value_name = "AUD")]
    token_audience: Option<String>,
    /// As `pullcred config generate --registry` (repeatable).
    #[arg(long, value_name = "HOST[/PATH]")]
    registry: Vec<String>,
    /// Any other `pullcred config generate` argument (repeatable).
    #[arg(long = "generate-arg", value_name = "ARG", allow_hyphen_values = true)]
    generate_args: Vec<String>,
    /// The binary to install [default: this executable].
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Merge with the kubelet's existing credential provider config instead of refusing.
    #[arg(long)]
    merge: bool,
    /// The systemd unit that runs the kubelet [default: the profile's, detected].
    #[arg(long, value_name = "UNIT")]
    service: Option<String>,
    /// Write the files but do not restart the kubelet.
    #[arg(long)]
    no_restart: bool,
    /// Print what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Put back what the installer replaced and remove what it added.
    #[arg(long)]
    uninstall: bool,
    /// The kubelet's health endpoint after a restart (loopback http), or none.
    #[arg(long, value_name = "URL", default_value = DEFAULT_HEALTHZ)]
    kubelet_healthz: String,
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    health_timeout: Duration,
    /// Longest wait for one systemctl command.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    restart_timeout: Duration,
    /// talos, bottlerocket: write what can be done there into DIR.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// After a successful run, stay running (a DaemonSet's container must).
    #[arg(long)]
    keep_running: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = kubelet_config::duration::GoDuration::parse(s).map_err(|e| e.to_string())?;
    if d.nanos() <= 0 {
        return Err("must be positive".into());
    }
    Ok(Duration::from_nanos(d.nanos().unsigned_abs()))
}

/// `pullcred install ARGS` (`args` without the subcommand's name).
pub fn main(args: Vec<OsString>) -> ExitCode {
    if args.first().is_some_and(|a| a == "--chroot-exec") {
        // the restart child (see restart.rs): --chroot-exec ROOT -- CMD...
        let root = args.get(1).map(PathBuf::from).unwrap_or_default();
        let argv: Vec<String> = args
            .iter()
            .skip(3)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("pullcred: install: {}", restart::chroot_exec(&root, &argv));
        return ExitCode::from(127);
    }
    let argv = std::iter::once(OsString::from("pullcred install")).chain(args);
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => return crate::exit::parse_error(&e, "install: "),
    };
    let stdout = std::io::stdout();
    let code = run(&args, &mut stdout.lock());
    if code == 0 && args.keep_running {
        say("staying up (--keep-running); the work is done");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    ExitCode::from(code)
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("pullcred: install: {msg}");
}

/// A refusal or failure: the message, and the exit code.
struct Stop(u8, String);

fn usage(msg: impl Into<String>) -> Stop {
    Stop(2, msg.into())
}
fn fail(msg: impl Into<String>) -> Stop {
    Stop(1, msg.into())
}

fn run(args: &Args, out: &mut dyn Write) -> u8 {
    let result = if args.profile.writes_host() {
        host_install(args, out)
    } else {
        other_output(args)
    };
    match result {
        Ok(()) => 0,
        Err(Stop(code, msg)) => {
            say(if code == 2 {
                format!("usage error: {msg}")
            } else {
                format!("error: {msg}")
            });
            code
        }
    }
}

// ------------------------------------------------------------------ state

/// What a file is to the kubelet: a change to `Config` or `Flags` needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Binary,
    Config,
    Flags,
    Unit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StateFile {
    path: String,
    kind: Kind,
    /// The file that was there before, kept as PATH.pullcred-prev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    profile: String,
    service: String,
    files: Vec<StateFile>,
}

fn read_state(host: &HostRoot) -> Result<Option<State>, Stop> {
    match host.read(profile::STATE) {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| fail(format!("{}: {e} (remove it to start over)", profile::STATE))),
    }
}

// ------------------------------------------------------------------ plan

struct Planned {
    path: String,
    bytes: Vec<u8>,
    mode: u32,
    kind: Kind,
}

/// The generated config (text and decoded) from `pullcred config generate`.
fn generate(args: &Args) -> Result<(String, CredentialProviderConfig), Stop> {
    if args.cloud.is_empty() {
        return Err(usage(
            "--cloud LIST is required (as for pullcred config generate)",
        ));
    }
    let mut g: Vec<OsString> = vec![
        "config".into(),
        "generate".into(),
        "--cloud".into(),
        args.cloud.join(",").into(),
    ];
    if let Some(a) = &args.token_audience {
        g.push("--token-audience".into());
        g.push(a.into());
    }
    for r in &args.registry {
        g.push("--registry".into());
        g.push(r.into());
    }
    g.extend(args.generate_args.iter().map(OsString::from));
    if g.iter()
        .any(|a| a == "-o" || a == "--output" || a.to_string_lossy().starts_with("--output="))
    {
        return Err(usage(
            "--generate-arg: --output is the installer's to choose",
        ));
    }
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = kubelet_config::cli::run_with(g, &mut o, &mut e);
    let err = String::from_utf8_lossy(&e);
    if code != 0 {
        let why = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim();
        return Err(Stop(
            if code == 2 { 2 } else { 1 },
            format!("pullcred config generate: {why}"),
        ));
    }
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        say(line.trim_start_matches("pullcred: "));
    }
    let text = String::from_utf8_lossy(&o).into_owned();
    let config = decode_strict(&text)
        .map_err(|e| fail(format!("the generated config does not decode: {e}")))?;
    Ok((text, config))
}

/// Refuses a config with any finding (as `config validate --strict`).
fn check_strict(text: &str, what: &str) -> Result<CredentialProviderConfig, Stop> {
    let (config, findings) = validate_text(text, &ValidateOptions::default());
    if !findings.is_empty() || config.is_none() {
        for f in &findings {
            say(format!("{what}: {f}"));
        }
        return Err(fail(format!(
            "{what} does not pass pullcred config validate --strict ({} finding(s))",
            findings.len()
        )));
    }
    Ok(config.unwrap_or_default())
}

fn binary_bytes(args: &Args) -> Result<Vec<u8>, Stop> {
    let path = match &args.binary {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().map_err(|e| fail(format!("finding this executable: {e}")))?
        }
    };
    std::fs::read(&path).map_err(|e| fail(format!("--binary {}: {e}", path.display())))
}

fn dropin_text(profile: Profile, exec: &str, config: &str, bin_dir: &str) -> String {
    format!(
        "# Installed by `pullcred install --profile {p}`; regenerate instead of editing.\n\
         # The kubelet's own command line again, with the credential provider\n\
         # flags appended (for a single-value flag the last one wins); other\n\
         # drop-ins and KUBELET_EXTRA_ARGS are left as they are.\n\
         [Service]\n\
         Environment=\"PULLCRED_KUBELET_ARGS=--image-credential-provider-config={config} --image-credential-provider-bin-dir={bin_dir}\"\n\
         ExecStart=\n\
         ExecStart={exec} $PULLCRED_KUBELET_ARGS\n",
        p = profile.name()
    )
}

fn nodeconfig_text(config: &str, bin_dir: &str) -> String {
    format!(
        "# Installed by `pullcred install --profile eks-al2023`; regenerate instead of editing.\n\
         # nodeadm-run.service merges every NodeConfig in /etc/eks/nodeadm.d/ with the\n\
         # user data's at boot and appends kubelet.flags after its own, so these win\n\
         # over its --image-credential-provider-config (config.json stays untouched).\n\
         apiVersion: node.eks.aws/v1alpha1\n\
         kind: NodeConfig\n\
         spec:\n  kubelet:\n    flags:\n\
         \x20     - --image-credential-provider-config={config}\n\
         \x20     - --image-credential-provider-bin-dir={bin_dir}\n"
    )
}

/// Distinct values, in order.
fn distinct(found: &[profile::Found]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    found
        .iter()
        .filter(|f| seen.insert(f.value.clone()))
        .map(|f| f.value.clone())
        .collect()
}

fn where_set(found: &[profile::Found], value: &str) -> String {
    found
        .iter()
        .filter(|f| f.value == value)
        .map(|f| f.source.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

fn host_install(args: &Args, out: &mut dyn Write) -> Result<(), Stop> {
    let Some(root) = &args.host_root else {
        return Err(usage(
            "--host-root DIR is required (/host in the DaemonSet, / on the node)",
        ));
    };
    if args.output.is_some() {
        return Err(usage("--output is for --profile talos or bottlerocket"));
    }
    let host = HostRoot::new(root).map_err(usage)?;
    let healthz = match args.kubelet_healthz.as_str() {
        "none" | "" => None,
        u => Some(restart::Healthz::parse(u).map_err(usage)?),
    };
    let old = read_state(&host)?;
    if args.uninstall {
        return uninstall(args, &host, old, healthz.as_ref(), out);
    }
    let p = args.profile;
    if let Some(o) = &old
        && o.profile != p.name()
    {
        return Err(fail(format!(
            "{} says this node was installed with --profile {}: run --uninstall with that profile first",
            profile::STATE,
            o.profile
        )));
    }
    let unit = profile::detect_unit(&host, p, args.service.as_deref()).map_err(fail)?;
    let owned: BTreeSet<String> = old
        .iter()
        .flat_map(|s| s.files.iter().map(|f| f.path.clone()))
        .collect();
    let old_backup = |path: &str| {
        old.iter()
            .flat_map(|s| s.files.iter())
            .find(|f| f.path == path)
            .and_then(|f| f.backup.clone())
    };

    // 1. Our config, and the kubelet's current one.
    let (generated, ours) = generate(args)?;
    let sources = profile::flag_sources(&host, p, Some(&unit));
    let configs = profile::found_flags(&host, &sources, Flag::Config);
    let bin_dirs = profile::found_flags(&host, &sources, Flag::BinDir);
    let mut config_path = p.config().to_string();
    let mut bin_dir = p.bin_dir().to_string();
    // The config whose providers are merged with ours (a host path).
    let mut existing: Option<String> = None;
    match p {
        Profile::Kubeadm | Profile::EksAl2023 => {
            let foreign: Vec<profile::Found> = configs
                .iter()
                .filter(|f| {
                    f.value != profile::CONFIG
                        && !(p == Profile::EksAl2023 && f.value == profile::NODEADM_CONFIG)
                })
                .cloned()
                .collect();
            let values = distinct(&foreign);
            if values.len() > 1 {
                return Err(fail(format!(
                    "the kubelet's --image-credential-provider-config is set to {} in different places ({}): settle on one first",
                    values.join(" and "),
                    foreign
                        .iter()
                        .map(|f| f.source.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if let Some(v) = values.first() {
                if !args.merge {
                    return Err(fail(format!(
                        "the kubelet already has --image-credential-provider-config={v} (set in {}): installing would replace it; \
                         pass --merge to keep its providers and add pullcred's, or remove the flag",
                        where_set(&foreign, v)
                    )));
                }
                existing = Some(v.clone());
                let dirs: Vec<String> = distinct(&bin_dirs)
                    .into_iter()
                    .filter(|d| d != p.bin_dir())
                    .collect();
                if let Some(d) = dirs.last() {
                    // one bin dir for every provider: keep the one the others live in
                    bin_dir = d.clone();
                }
            } else if p == Profile::EksAl2023 && args.merge && host.exists(profile::NODEADM_CONFIG)
            {
                existing = Some(profile::NODEADM_CONFIG.to_string());
            }
        }
        Profile::K3s | Profile::Rke2 => {
            if let Some(v) = distinct(&configs).last() {
                config_path = v.clone();
            }
            if let Some(v) = distinct(&bin_dirs).last() {
                bin_dir = v.clone();
            }
            if owned.contains(&config_path) {
                // ours already: merge again with the original, if there was one
                if let Some(b) = old_backup(&config_path) {
                    if !args.merge {
                        return Err(fail(format!(
                            "{config_path} was merged with the node's own config (kept as {b}): pass --merge again, or --uninstall first"
                        )));
                    }
                    existing = Some(b);
                }
            } else if host.exists(&config_path) {
                if !args.merge {
                    return Err(fail(format!(
                        "{config_path} already exists ({unit} passes it to the kubelet): installing would replace it; \
                         pass --merge to keep its providers and add pullcred's"
                    )));
                }
                existing = Some(config_path.clone());
            }
        }
        Profile::Talos | Profile::Bottlerocket => unreachable!("handled by other_output"),
    }

    // 2. The config to write.
    let text = match &existing {
        None => generated,
        Some(e) => {
            let local = host.open_path(e).map_err(fail)?;
            let report = validate_path(&local, &ValidateOptions::default());
            if report.errors() > 0 {
                let first = report
                    .findings
                    .iter()
                    .find(|f| f.severity == kubelet_config::validate::Severity::Error)
                    .map(|f| f.to_string())
                    .unwrap_or_default();
                return Err(fail(format!(
                    "the existing config {e} does not validate, so it cannot be merged: {first}"
                )));
            }
            let theirs: Vec<_> = report.providers().map(|(_, p)| p.clone()).collect();
            let merged = merge(&theirs, &ours.providers)
                .map_err(|er| fail(format!("merging with {e}: {er}")))?;
            for n in &merged.notes {
                say(format!("note: {n}"));
            }
            say(format!(
                "merging {} provider(s) of {e} with pullcred's",
                theirs.len()
            ));
            render_yaml(
                &merged.config,
                &format!(
                    "pullcred install --profile {} --merge (the node's own providers first, then pullcred's)",
                    p.name()
                ),
            )
        }
    };
    let final_config = check_strict(&text, "the kubelet config to install")?;
    if p == Profile::EksAl2023 && existing.is_none() {
        let globs: BTreeSet<&str> = final_config
            .providers
            .iter()
            .flat_map(|x| x.match_images.iter().map(String::as_str))
            .collect();
        let missing: Vec<&str> = profile::NODEADM_ECR_GLOBS
            .iter()
            .copied()
            .filter(|g| !globs.contains(g))
            .collect();
        if !missing.is_empty() {
            return Err(fail(format!(
                "the config for --cloud {} drops ECR images nodeadm's config covers: {} (include aws in --cloud, or --merge to keep ecr-credential-provider)",
                args.cloud.join(","),
                missing.join(" ")
            )));
        }
    }
    let our_names: BTreeSet<&str> = ours.providers.iter().map(|x| x.name.as_str()).collect();
    for x in &final_config.providers {
        if our_names.contains(x.name.as_str()) {
            continue;
        }
        let path = format!("{bin_dir}/{}", x.name);
        let ok = host
            .open_path(&path)
            .ok()
            .and_then(|l| std::fs::metadata(l).ok())
            .is_some_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            });
        if !ok {
            return Err(fail(format!(
                "provider {:?} of the merged config has no executable {path}: the kubelet would register no provider",
                x.name
            )));
        }
    }

    // 3. The files.
    let binary = binary_bytes(args)?;
    let mut plan: Vec<Planned> = our_names
        .iter()
        .map(|n| Planned {
            path: format!("{bin_dir}/{n}"),
            bytes: binary.clone(),
            mode: 0o755,
            kind: Kind::Binary,
        })
        .collect();
    plan.push(Planned {
        path: config_path.clone(),
        bytes: text.into_bytes(),
        mode: 0o644,
        kind: Kind::Config,
    });
    if matches!(p, Profile::Kubeadm | Profile::EksAl2023) {
        let (exec, after) = profile::effective_exec_start(&host, profile::KUBELET_DROPIN);
        if !after.is_empty() {
            return Err(fail(format!(
                "{} sets ExecStart after {}: the flags would be lost; merge it first",
                after.join(", "),
                profile::KUBELET_DROPIN
            )));
        }
        let exec = match (exec, p) {
            (Some(e), _) => e,
            (None, Profile::Kubeadm) => profile::KUBEADM_EXECSTART.to_string(),
            (None, _) => {
                return Err(fail(
                    "no kubelet.service ExecStart on the node: is this an EKS AL2023 node? (--profile eks-al2023)",
                ));
            }
        };
        if exec.contains("PULLCRED_KUBELET_ARGS") {
            return Err(fail(
                "the kubelet's ExecStart already mentions PULLCRED_KUBELET_ARGS; refusing to guess",
            ));
        }
        plan.push(Planned {
            path: profile::KUBELET_DROPIN.to_string(),
            bytes: dropin_text(p, &exec, &config_path, &bin_dir).into_bytes(),
            mode: 0o644,
            kind: Kind::Unit,
        });
        if p == Profile::EksAl2023 {
            plan.push(Planned {
                path: profile::NODEADM_DROPIN.to_string(),
                bytes: nodeconfig_text(&config_path, &bin_dir).into_bytes(),
                mode: 0o644,
                kind: Kind::Flags,
            });
        }
    }
    // Files of an earlier install that this one no longer writes.
    let stale: Vec<StateFile> = old
        .iter()
        .flat_map(|s| s.files.iter())
        .filter(|f| !plan.iter().any(|x| x.path == f.path))
        .cloned()
        .collect();

    if args.dry_run {
        return dry_run(&host, &plan, &stale, &unit, args, out);
    }

    // 4. Apply, keeping what each change replaced.
    let mut tx = Tx::default();
    let mut files = Vec::new();
    for x in &plan {
        let mut backup = old_backup(&x.path);
        if !owned.contains(&x.path) && backup.is_none() {
            match host.previous(&x.path) {
                Ok(Some(_)) => {
                    let b = format!("{}{BACKUP_SUFFIX}", x.path);
                    if !host.exists(&b) {
                        if let Err(e) = host.copy(&x.path, &b) {
                            return Err(tx.undo(&host, fail(e)));
                        }
                        tx.created.push(b.clone());
                        say(format!("kept the former {} as {b}", x.path));
                    }
                    backup = Some(b);
                }
                Ok(None) => {}
                Err(e) => return Err(tx.undo(&host, fail(e))),
            }
        }
        match host.put(&x.path, &x.bytes, x.mode) {
            Ok(Put::Unchanged) => say(format!("unchanged {}", x.path)),
            Ok(Put::FixedMeta) => say(format!("fixed owner/mode of {}", x.path)),
            Ok(Put::Written(prev)) => {
                say(format!(
                    "installed {} (mode {:04o}, root:root)",
                    x.path, x.mode
                ));
                tx.changed.push((x.path.clone(), x.kind, prev));
            }
            Err(e) => return Err(tx.undo(&host, fail(e))),
        }
        files.push(StateFile {
            path: x.path.clone(),
            kind: x.kind,
            backup,
        });
    }
    for f in &stale {
        match put_back(&host, f) {
            Ok(prev) => {
                say(format!(
                    "removed {} (no longer part of the install)",
                    f.path
                ));
                tx.changed.push((f.path.clone(), f.kind, prev));
            }
            Err(e) => return Err(tx.undo(&host, fail(e))),
        }
    }
    let state = State {
        profile: p.name().to_string(),
        service: unit.clone(),
        files,
    };
    let mut state_json = serde_json::to_vec_pretty(&state).unwrap_or_default();
    state_json.push(b'\n');
    match host.put(profile::STATE, &state_json, 0o600) {
        Ok(Put::Written(prev)) => tx
            .changed
            .push((profile::STATE.to_string(), Kind::Binary, prev)),
        Ok(_) => {}
        Err(e) => return Err(tx.undo(&host, fail(e))),
    }

    // 5. The config as installed, as the kubelet will read it.
    if let Err(e) = validate_installed(&host, &config_path, &bin_dir) {
        return Err(tx.undo(&host, fail(e)));
    }

    // 6. Restart only for a change the kubelet reads at start.
    let restart = tx
        .changed
        .iter()
        .any(|(_, k, _)| matches!(k, Kind::Config | Kind::Flags | Kind::Unit));
    let reload = tx.changed.iter().any(|(_, k, _)| *k == Kind::Unit);
    if !restart {
        say(format!(
            "done: {} file(s) changed, the kubelet's config and flags unchanged: no restart",
            tx.changed.len()
        ));
        return Ok(());
    }
    if args.no_restart {
        say(format!("done: restart {unit} to apply (--no-restart)"));
        return Ok(());
    }
    if let Err(e) = restart_kubelet(args, &host, &unit, reload, healthz.as_ref()) {
        say(format!("error: {e}; putting the former files back"));
        let stop = tx.undo(&host, fail(format!("{e}; the former files are back")));
        if let Err(e2) = restart_kubelet(args, &host, &unit, reload, None) {
            say(format!(
                "error: restarting {unit} with the former files: {e2}"
            ));
        }
        return Err(stop);
    }
    say(format!("done: {unit} restarted with pullcred"));
    Ok(())
}

/// The changes of one run, undone in reverse order on failure.
#[derive(Default)]
struct Tx {
    changed: Vec<(String, Kind, Option<Previous>)>,
    created: Vec<String>,
}

impl Tx {
    fn undo(&mut self, host: &HostRoot, stop: Stop) -> Stop {
        for (path, _, prev) in self.changed.drain(..).rev() {
            if let Err(e) = host.restore(&path, prev.as_ref()) {
                say(format!("error: rolling back {path}: {e}"));
            } else {
                say(format!("rolled back {path}"));
            }
        }
        for b in self.created.drain(..).rev() {
            let _ = host.restore(&b, None);
        }
        stop
    }
}

fn validate_installed(host: &HostRoot, config: &str, bin_dir: &str) -> Result<(), String> {
    let c = host.open_path(config)?;
    let d = host.open_path(bin_dir)?;
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = kubelet_config::cli::run_with(
        vec![
            "config".into(),
            "validate".into(),
            c.into_os_string(),
            "--bin-dir".into(),
            d.into_os_string(),
            "--strict".into(),
        ],
        &mut o,
        &mut e,
    );
    if code == 0 {
        return Ok(());
    }
    for line in String::from_utf8_lossy(&o)
        .lines()
        .chain(String::from_utf8_lossy(&e).lines())
    {
        say(format!("validate: {line}"));
    }
    Err(format!(
        "the installed {config} does not pass pullcred config validate --strict --bin-dir {bin_dir}"
    ))
}

fn restart_kubelet(
    args: &Args,
    host: &HostRoot,
    unit: &str,
    reload: bool,
    healthz: Option<&restart::Healthz>,
) -> Result<(), String> {
    if reload {
        restart::run_on_host(
            host.dir(),
            &restart::in_init(&["systemctl", "daemon-reload"]),
            args.restart_timeout,
        )?;
    }
    restart::run_on_host(
        host.dir(),
        &restart::in_init(&["systemctl", "restart", unit]),
        args.restart_timeout,
    )?;
    say(format!("restarted {unit}"));
    if let Some(h) = healthz {
        h.wait(args.health_timeout)?;
        say("the kubelet answers /healthz ok");
    }
    Ok(())
}

/// Puts a recorded file back: its backup, or nothing. Returns what was there.
fn put_back(host: &HostRoot, f: &StateFile) -> Result<Option<Previous>, String> {
    let prev = host.previous(&f.path)?;
    match &f.backup {
        Some(b) if host.exists(b) => host.rename(b, &f.path)?,
        _ => host.restore(&f.path, None)?,
    }
    Ok(prev)
}

fn uninstall(
    args: &Args,
    host: &HostRoot,
    old: Option<State>,
    healthz: Option<&restart::Healthz>,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let Some(state) = old else {
        say(format!("nothing to uninstall: no {}", profile::STATE));
        return Ok(());
    };
    if state.profile != args.profile.name() {
        return Err(fail(format!(
            "{} says --profile {}, not {}",
            profile::STATE,
            state.profile,
            args.profile.name()
        )));
    }
    if args.dry_run {
        for f in state.files.iter().rev() {
            match &f.backup {
                Some(b) => writeln!(out, "would restore {} from {b}", f.path).ok(),
                None => writeln!(out, "would remove {}", f.path).ok(),
            };
        }
        return Ok(());
    }
    let mut restart = false;
    let mut reload = false;
    for f in state.files.iter().rev() {
        put_back(host, f).map_err(fail)?;
        match &f.backup {
            Some(b) => say(format!("restored {} from {b}", f.path)),
            None => say(format!("removed {}", f.path)),
        }
        restart |= matches!(f.kind, Kind::Config | Kind::Flags | Kind::Unit);
        reload |= f.kind == Kind::Unit;
    }
    host.restore(profile::STATE, None).map_err(fail)?;
    say(format!("removed {}", profile::STATE));
    if restart && !args.no_restart {
        restart_kubelet(args, host, &state.service, reload, healthz).map_err(fail)?;
    }
    say("uninstalled");
    Ok(())
}

fn dry_run(
    host: &HostRoot,
    plan: &[Planned],
    stale: &[StateFile],
    unit: &str,
    args: &Args,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let mut restart = false;
    for x in plan {
        host.write_path(&x.path).map_err(fail)?;
        let prev = host.previous(&x.path).map_err(fail)?;
        let what = match &prev {
            Some(p) if p.bytes == x.bytes && (p.mode, p.uid, p.gid) == (x.mode, 0, 0) => {
                "unchanged"
            }
            Some(p) if p.bytes == x.bytes => "fix owner/mode",
            Some(_) => "replace",
            None => "create",
        };
        if matches!(what, "replace" | "create") && x.kind != Kind::Binary {
            restart = true;
        }
        let _ = writeln!(
            out,
            "{what} {} (mode {:04o}, {} bytes)",
            x.path,
            x.mode,
            x.bytes.len()
        );
    }
    for f in stale {
        let _ = writeln!(out, "remove {}", f.path);
        restart |= f.kind != Kind::Binary;
    }
    let _ = writeln!(
        out,
        "{}",
        match (restart, args.no_restart) {
            (false, _) => "no restart".to_string(),
            (true, true) => format!("restart {unit} needed (--no-restart)"),
            (true, false) => format!("restart {unit}"),
        }
    );
    Ok(())
}

// ------------------------------------------------------- talos, bottlerocket

fn write_out(dir: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), Stop> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(&p, bytes).map_err(|e| fail(format!("{}: {e}", p.display())))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail(format!("{}: {e}", p.display())))?;
    say(format!("wrote {}", p.display()));
    Ok(())
}

/// The config's YAML lines (comments dropped), indented.
fn indented(yaml: &str, by: usize) -> String {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

fn other_output(args: &Args) -> Result<(), Stop> {
    let p = args.profile;
    let Some(dir) = &args.output else {
        return Err(match p {
            Profile::Talos => usage(
                "talos: the root file system is read-only and there is no shell or systemd to restart; \
                 pass --output DIR for a system extension layout and a machine config patch",
            ),
            _ => usage(
                "bottlerocket: a binary cannot be added to the host (the root file system is read-only and \
                 verified; only the built-in ecr-credential-provider can be enabled, through settings); \
                 pass --output DIR for those settings",
            ),
        });
    };
    if args.host_root.is_some() || args.merge || args.uninstall {
        return Err(usage(format!(
            "--profile {} takes --output DIR only",
            p.name()
        )));
    }
    let (text, config) = generate(args)?;
    check_strict(&text, "the generated kubelet config")?;
    match p {
        Profile::Talos => {
            let binary = binary_bytes(args)?;
            let names: BTreeSet<&str> = config.providers.iter().map(|x| x.name.as_str()).collect();
            for n in &names {
                write_out(
                    dir,
                    &format!("pullcred-extension/rootfs{}/{n}", profile::TALOS_BIN_DIR),
                    &binary,
                    0o755,
                )?;
            }
            let manifest = format!(
                "# A Talos system extension (siderolabs/extensions layout: manifest.yaml and\n\
                 # rootfs/); build it into an image with installer/build-image.sh --talos-extension.\n\
                 version: v1alpha1\n\
                 metadata:\n  name: pullcred\n  version: \"{v}\"\n  author: pullcred\n  description: |\n    \
                 pullcred, a kubelet image credential provider, in {bin}.\n  \
                 compatibility:\n    talos:\n      version: \">= v1.6.0\"\n",
                v = env!("CARGO_PKG_VERSION"),
                bin = profile::TALOS_BIN_DIR
            );
            write_out(
                dir,
                "pullcred-extension/manifest.yaml",
                manifest.as_bytes(),
                0o644,
            )?;
            let body = indented(&text, 6);
            let patch = format!(
                "# Talos machine config patch (talosctl patch mc --patch @talos-machine-patch.yaml).\n\
                 # With a credentialProviderConfig, Talos itself runs the kubelet with\n\
                 # --image-credential-provider-bin-dir={bin} and\n\
                 # --image-credential-provider-config={cfg}.\n\
                 machine:\n  kubelet:\n    credentialProviderConfig:\n{body}",
                bin = profile::TALOS_BIN_DIR,
                cfg = profile::TALOS_CONFIG
            );
            write_out(dir, "talos-machine-patch.yaml", patch.as_bytes(), 0o644)?;
            let doc = format!(
                "# The same config as a KubeCredentialProviderConfig document (newer Talos\n\
                 # releases; use it instead of machine.kubelet.credentialProviderConfig).\n\
                 apiVersion: v1alpha1\nkind: KubeCredentialProviderConfig\nconfiguration:\n{}",
                indented(&text, 2)
            );
            write_out(
                dir,
                "talos-kube-credential-provider-config.yaml",
                doc.as_bytes(),
                0o644,
            )?;
            say(
                "talos: the node cannot be changed from a pod; install the extension and apply the patch (see installer/profiles/talos.md)",
            );
        }
        _ => {
            let globs: Vec<String> = profile::NODEADM_ECR_GLOBS
                .iter()
                .map(|g| format!("  \"{g}\",\n"))
                .collect();
            let toml = format!(
                "# Bottlerocket: pullcred cannot be installed (read-only, dm-verity root; the\n\
                 # kubelet's plugin directory is part of the image). What Bottlerocket can do is\n\
                 # its built-in ecr-credential-provider, for ECR images only: apply with\n\
                 # `apiclient apply < bottlerocket-settings.toml` or put it in the user data.\n\
                 # For GAR, ACR, static registries, Vault or per-pod identities,\n\
                 # a custom Bottlerocket variant that ships pullcred is the only way.\n\
                 [settings.kubernetes.credential-providers.ecr-credential-provider]\n\
                 enabled = true\n\
                 cache-duration = \"12h\"\n\
                 image-patterns = [\n{}]\n",
                globs.concat()
            );
            write_out(dir, "bottlerocket-settings.toml", toml.as_bytes(), 0o644)?;
            say(
                "bottlerocket: only the built-in ecr-credential-provider can be enabled (see installer/profiles/bottlerocket.md)",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_appends_our_variable_last() {
        let t = dropin_text(
            Profile::Kubeadm,
            profile::KUBEADM_EXECSTART,
            profile::CONFIG,
            "/bin-dir",
        );
        let starts: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect();
        assert_eq!(
            starts,
            [
                "",
                &format!("{} $PULLCRED_KUBELET_ARGS", profile::KUBEADM_EXECSTART)
            ]
        );
        assert!(t.contains("--image-credential-provider-bin-dir=/bin-dir\""));
    }

    #[test]
    fn talos_patch_nests_the_config() {
        let y = "# c\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n  - name: pullcred\n";
        assert_eq!(
            indented(y, 6),
            "      apiVersion: kubelet.config.k8s.io/v1\n      providers:\n        - name: pullcred\n"
        );
    }

    #[test]
    fn args_are_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
