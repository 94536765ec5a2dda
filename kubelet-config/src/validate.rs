//! The rules the kubelet applies to a `CredentialProviderConfig`, plus
//! pullcred's own warnings, reported as [`Finding`]s: every one, not the
//! first.
//!
//! Kubelet rules (errors): strict decoding (see [`crate::config`]; this
//! includes `tokenAttributes` being an unknown field in a `v1beta1` or
//! `v1alpha1` file); at least one provider; per provider: a `name` that is not
//! empty, has no `/` or space, is not `.` or `..` and is not repeated (across
//! files in directory mode too); at least one `matchImages` entry, each
//! parsing as URL("https://" + glob); `defaultCacheDuration` present and not
//! negative; `apiVersion` one of the exec protocol versions; `tokenAttributes`
//! only with the service account token feature gate on and exec protocol v1,
//! with an audience, a `cacheType` of `ServiceAccount` or `Token`,
//! `requireServiceAccount` set (and true when required annotation keys are
//! listed), annotation keys that are qualified names once lower-cased, none
//! repeated within a list, none both required and optional. With `--bin-dir`,
//! the registration checks too: the directory exists, and each plugin is
//! there, not a directory, and executable.
//!
//! pullcred's warnings: a glob claims a cloud's registry domain but can match
//! none of its hosts; a glob's host label is a malformed pattern; a glob
//! carries a scheme; `defaultCacheDuration` outlives the tokens of the clouds
//! the provider serves; a YAML file holds a second document (the kubelet
//! ignores it); a `--docker-config` file has a path-scoped key that does not
//! end at a `/` (a plain string prefix to the kubelet).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{
    self, CredentialProvider, CredentialProviderConfig, PROVIDER_API_V1, PROVIDER_API_VERSIONS,
};
use crate::duration::GoDuration;
use crate::load::{self, LoadError, Mode};
use crate::matching::{check_glob_patterns, validate_glob};
use crate::sources::{self, Cloud};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The kubelet would refuse the config.
    Error,
    /// The kubelet accepts it, but it will not work as meant.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Which provider entry a finding is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRef {
    /// Position in its file, from 0.
    pub index: usize,
    pub name: String,
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "provider #{} (unnamed)", self.index + 1)
        } else {
            write!(f, "provider {:?}", self.name)
        }
    }
}

/// One problem: where, which provider and field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub line: Option<u64>,
    pub provider: Option<ProviderRef>,
    /// Field path in the kubelet's style (`providers.matchImages`), or empty.
    pub field: String,
    pub why: String,
}

/// One line: `FILE[:LINE]: provider "NAME": FIELD: [warning: ]why`.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match (&self.file, self.line) {
            (Some(file), Some(line)) => parts.push(format!("{}:{line}", file.display())),
            (Some(file), None) => parts.push(file.display().to_string()),
            (None, Some(line)) => parts.push(format!("line {line}")),
            (None, None) => {}
        }
        if let Some(p) = &self.provider {
            parts.push(p.to_string());
        }
        if !self.field.is_empty() {
            parts.push(self.field.clone());
        }
        let why = match self.severity {
            Severity::Error => self.why.clone(),
            Severity::Warning => format!("warning: {}", self.why),
        };
        parts.push(why.replace(['\n', '\r'], " "));
        f.write_str(&parts.join(": "))
    }
}

/// Settings that change the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Feature gate KubeletServiceAccountTokenForCredentialProviders (on by
    /// default since Kubernetes 1.34).
    pub service_account_token_gate: bool,
    /// The kubelet's `--image-credential-provider-bin-dir`, to check plugins.
    pub bin_dir: Option<PathBuf>,
}

impl Default for ValidateOptions {
    fn default() -> ValidateOptions {
        ValidateOptions {
            service_account_token_gate: true,
            bin_dir: None,
        }
    }
}

/// A file that decoded (perhaps with problems).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub config: CredentialProviderConfig,
}

/// Everything learned about a config path.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub mode: Option<Mode>,
    pub files: Vec<LoadedFile>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count()
    }
    /// Every provider entry, in the order the kubelet registers them.
    pub fn providers(&self) -> impl Iterator<Item = (&Path, &CredentialProvider)> {
        self.files.iter().flat_map(|f| {
            f.config
                .providers
                .iter()
                .map(move |p| (f.path.as_path(), p))
        })
    }
}

fn finding(severity: Severity, provider: Option<ProviderRef>, field: &str, why: String) -> Finding {
    Finding {
        severity,
        file: None,
        line: None,
        provider,
        field: field.to_string(),
        why,
    }
}

/// Validates a config file or directory.
pub fn validate_path(path: &Path, opts: &ValidateOptions) -> Report {
    let mut report = Report::default();
    let (mode, files) = match load::config_files(path) {
        Ok(x) => x,
        Err(e) => {
            report.findings.push(load_finding(&e));
            return report;
        }
    };
    report.mode = Some(mode);
    // The kubelet looks at the bin dir before anything else; when it is
    // unusable, say so once rather than once per provider.
    let mut file_opts = opts.clone();
    if let Some(dir) = &opts.bin_dir
        && let Err(why) = check_bin_dir(dir)
    {
        report.findings.push(finding(
            Severity::Error,
            None,
            "",
            format!("--bin-dir: {why}"),
        ));
        file_opts.bin_dir = None;
    }
    let opts = &file_opts;
    // name -> first file that has it (directory mode duplicates).
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let text = match load::read_text(&file) {
            Ok(t) => t,
            Err(e) => {
                report.findings.push(load_finding(&e));
                continue;
            }
        };
        let (config, mut findings) = validate_text(&text, opts);
        for f in &mut findings {
            f.file = Some(file.clone());
        }
        report.findings.append(&mut findings);
        let Some(config) = config else { continue };
        if mode == Mode::Directory {
            let mut here = BTreeSet::new();
            for (index, p) in config.providers.iter().enumerate() {
                if p.name.is_empty() || !here.insert(p.name.clone()) {
                    continue;
                }
                match seen.get(&p.name) {
                    Some(first) => report.findings.push(Finding {
                        file: Some(file.clone()),
                        ..finding(
                            Severity::Error,
                            Some(ProviderRef {
                                index,
                                name: p.name.clone(),
                            }),
                            "providers.name",
                            format!(
                                "Duplicate value: {:?} (also in {})",
                                p.name,
                                first.display()
                            ),
                        )
                    }),
                    None => {
                        seen.insert(p.name.clone(), file.clone());
                    }
                }
            }
        }
        report.files.push(LoadedFile { path: file, config });
    }
    report
}

fn load_finding(e: &LoadError) -> Finding {
    Finding {
        file: Some(e.path().to_path_buf()),
        ..finding(Severity::Error, None, "", e.reason())
    }
}

/// Validates one file's text: the decoded config (unless it is not YAML/JSON
/// at all) and every finding (without a file name).
pub fn validate_text(
    text: &str,
    opts: &ValidateOptions,
) -> (Option<CredentialProviderConfig>, Vec<Finding>) {
    let decoded = match config::decode(text) {
        Ok(d) => d,
        Err(e) => {
            let f = Finding {
                line: e.line,
                ..finding(Severity::Error, None, "", e.to_string())
            };
            return (None, vec![f]);
        }
    };
    let mut findings: Vec<Finding> = decoded
        .problems
        .iter()
        .map(|p| Finding {
            line: p.line,
            ..finding(
                Severity::Error,
                p.provider.map(|index| ProviderRef {
                    index,
                    name: decoded
                        .config
                        .providers
                        .get(index)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                }),
                &p.field,
                p.kind.to_string(),
            )
        })
        .collect();
    if let Some(line) = decoded.ignored_document_line {
        findings.push(Finding {
            line: Some(line),
            ..finding(
                Severity::Warning,
                None,
                "",
                "a second YAML document starts here; the kubelet reads only the first document of a file \
                 and ignores the rest (in directory mode, give each config its own file)"
                    .into(),
            )
        });
    }
    findings.extend(validate_config(&decoded.config, opts));
    (Some(decoded.config), findings)
}

/// Applies the kubelet's rules and pullcred's warnings to a decoded config.
pub fn validate_config(config: &CredentialProviderConfig, opts: &ValidateOptions) -> Vec<Finding> {
    let mut out = Vec::new();
    if config.providers.is_empty() {
        out.push(finding(
            Severity::Error,
            None,
            "providers",
            "at least 1 item in plugins is required".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (index, p) in config.providers.iter().enumerate() {
        let who = ProviderRef {
            index,
            name: p.name.clone(),
        };
        let mut push =
            |sev, field: &str, why: String| out.push(finding(sev, Some(who.clone()), field, why));
        check_name(p, &mut names, &mut push);
        check_match_images(p, &mut push);
        check_cache_duration(p, &mut push);
        check_api_version(p, &mut push);
        check_token_attributes(p, opts, &mut push);
        check_env(p, &mut push);
        check_docker_config_keys(p, &mut push);
        if let Some(dir) = &opts.bin_dir {
            match check_bin_dir(dir) {
                Ok(()) => check_binary(p, dir, &mut push),
                Err(why) => push(Severity::Error, "providers.name", why),
            }
        }
    }
    out
}

type Push<'a> = dyn FnMut(Severity, &str, String) + 'a;

fn check_name(p: &CredentialProvider, names: &mut BTreeSet<String>, push: &mut Push<'_>) {
    const F: &str = "providers.name";
    let name = &p.name;
    if name.is_empty() {
        push(
            Severity::Error,
            F,
            "Required value: name is required".into(),
        );
        return;
    }
    if name.contains('/') {
        push(
            Severity::Error,
            F,
            format!("Invalid value: {name:?}: provider name cannot contain '/'"),
        );
    }
    if name.contains(' ') {
        push(
            Severity::Error,
            F,
            format!("Invalid value: {name:?}: provider name cannot contain spaces"),
        );
    }
    if name == "." || name == ".." {
        push(
            Severity::Error,
            F,
            format!("Invalid value: {name:?}: provider name cannot be '{name}'"),
        );
    }
    if !names.insert(name.clone()) {
        push(Severity::Error, F, format!("Duplicate value: {name:?}"));
    }
}

fn check_match_images(p: &CredentialProvider, push: &mut Push<'_>) {
    const F: &str = "providers.matchImages";
    if p.match_images.is_empty() {
        push(
            Severity::Error,
            F,
            "Required value: at least 1 item in matchImages is required".into(),
        );
    }
    for glob in &p.match_images {
        if let Err(e) = validate_glob(glob) {
            push(
                Severity::Error,
                F,
                format!("Invalid value: {glob:?}: match image is invalid: {e}"),
            );
            continue;
        }
        if glob.contains("://") {
            push(
                Severity::Warning,
                F,
                format!(
                    "{glob:?} has a scheme; matchImages entries are written without one and this never matches"
                ),
            );
            continue;
        }
        if let Err(e) = check_glob_patterns(glob) {
            push(
                Severity::Warning,
                F,
                format!("{e}; every image reaching it fails to match"),
            );
            continue;
        }
        let claimed = sources::claimed_clouds(glob);
        if !claimed.is_empty() && sources::served_clouds(glob).is_empty() {
            let clouds: Vec<&str> = claimed.iter().map(|c| c.name()).collect();
            let example = claimed[0]
                .source()
                .example_hosts
                .first()
                .copied()
                .unwrap_or("");
            push(
                Severity::Warning,
                F,
                format!(
                    "{glob:?} is in a {} registry domain but can never match one of its registry hosts (e.g. {example}); \
                     globs compare label by label",
                    clouds.join("/")
                ),
            );
        }
    }
}

/// The clouds a provider really serves, through any of its globs.
pub fn provider_clouds(p: &CredentialProvider) -> BTreeSet<Cloud> {
    p.match_images
        .iter()
        .filter(|g| validate_glob(g).is_ok())
        .flat_map(|g| sources::served_clouds(g))
        .collect()
}

fn check_cache_duration(p: &CredentialProvider, push: &mut Push<'_>) {
    const F: &str = "providers.defaultCacheDuration";
    let Some(text) = &p.default_cache_duration else {
        push(
            Severity::Error,
            F,
            "Required value: defaultCacheDuration is required".into(),
        );
        return;
    };
    let d = match GoDuration::parse(text) {
        Ok(d) => d,
        Err(e) => {
            push(Severity::Error, F, format!("Invalid value: {e}"));
            return;
        }
    };
    if d.is_negative() {
        push(
            Severity::Error,
            F,
            format!("Invalid value: {text:?}: must be greater than or equal to 0"),
        );
        return;
    }
    let shortest = provider_clouds(p)
        .into_iter()
        .filter_map(|c| c.source().token_life().map(|life| (life, c)))
        .min();
    if let Some((life, cloud)) = shortest
        && d > life
    {
        push(
            Severity::Warning,
            F,
            format!(
                "{text:?} ({d}) exceeds the {life} life of a {cloud} token; when a plugin's response has no \
                 cacheDuration the kubelet would keep serving an expired credential (suggested: {})",
                cloud.source().default_cache_duration
            ),
        );
    }
}

fn check_api_version(p: &CredentialProvider, push: &mut Push<'_>) {
    const F: &str = "providers.apiVersion";
    if p.api_version.is_empty() {
        push(
            Severity::Error,
            F,
            "Required value: apiVersion is required".into(),
        );
    } else if !PROVIDER_API_VERSIONS.contains(&p.api_version.as_str()) {
        push(
            Severity::Error,
            F,
            format!(
                "Unsupported value: {:?}: supported values: {}",
                p.api_version,
                PROVIDER_API_VERSIONS.map(|v| format!("{v:?}")).join(", ")
            ),
        );
    }
}

fn check_token_attributes(p: &CredentialProvider, opts: &ValidateOptions, push: &mut Push<'_>) {
    const F: &str = "providers.tokenAttributes";
    let Some(t) = &p.token_attributes else { return };
    if !opts.service_account_token_gate {
        push(
            Severity::Error,
            F,
            "Forbidden: tokenAttributes is not supported when KubeletServiceAccountTokenForCredentialProviders \
             feature gate is disabled"
                .into(),
        );
        return;
    }
    if p.api_version != PROVIDER_API_V1 {
        push(
            Severity::Error,
            F,
            format!(
                "Forbidden: tokenAttributes is only supported for {PROVIDER_API_V1} API version"
            ),
        );
    }
    if t.service_account_token_audience.is_empty() {
        push(
            Severity::Error,
            &format!("{F}.serviceAccountTokenAudience"),
            "Required value".into(),
        );
    }
    match t.cache_type.as_str() {
        "ServiceAccount" | "Token" => {}
        "" => push(
            Severity::Error,
            &format!("{F}.cacheType"),
            "Required value: cacheType is required (ServiceAccount or Token)".into(),
        ),
        other => push(
            Severity::Error,
            &format!("{F}.cacheType"),
            format!(
                "Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"Token\""
            ),
        ),
    }
    match t.require_service_account {
        None => push(Severity::Error, &format!("{F}.requireServiceAccount"), "Required value".into()),
        Some(false) if !t.required_service_account_annotation_keys.is_empty() => push(
            Severity::Error,
            &format!("{F}.requiredServiceAccountAnnotationKeys"),
            "Forbidden: requireServiceAccount must be true when requiredServiceAccountAnnotationKeys is set".into(),
        ),
        Some(_) => {}
    }
    for (list, keys) in [
        (
            "requiredServiceAccountAnnotationKeys",
            &t.required_service_account_annotation_keys,
        ),
        (
            "optionalServiceAccountAnnotationKeys",
            &t.optional_service_account_annotation_keys,
        ),
    ] {
        let field = format!("{F}.{list}");
        let mut seen = BTreeSet::new();
        for key in keys {
            if let Err(why) = check_annotation_key(key) {
                push(
                    Severity::Error,
                    &field,
                    format!("Invalid value: {key:?}: {why}"),
                );
            }
            if !seen.insert(key) {
                push(Severity::Error, &field, format!("Duplicate value: {key:?}"));
            }
        }
    }
    check_identity_annotations(p, t, push);
    let required: BTreeSet<&String> = t.required_service_account_annotation_keys.iter().collect();
    let both: Vec<&String> = t
        .optional_service_account_annotation_keys
        .iter()
        .filter(|k| required.contains(k))
        .collect();
    if !both.is_empty() {
        push(
            Severity::Error,
            F,
            format!(
                "Invalid value: {both:?}: annotation keys cannot be both required and optional"
            ),
        );
    }
}

/// The kubelet passes a plugin only the annotations `tokenAttributes` lists.
/// A cloud whose identity annotations are all missing from both lists can
/// never see a pod name its identity: every such pod gets an error (or the
/// node's identity), unless a default identity is configured in the entry's
/// args or env.
fn check_identity_annotations(
    p: &CredentialProvider,
    t: &crate::config::TokenAttributes,
    push: &mut Push<'_>,
) {
    let listed: BTreeSet<&str> = t
        .required_service_account_annotation_keys
        .iter()
        .chain(&t.optional_service_account_annotation_keys)
        .map(String::as_str)
        .collect();
    let configured = |flags: &[&str], vars: &[&str]| {
        p.args.iter().any(|a| {
            flags
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
        }) || p.env.iter().any(|e| vars.contains(&e.name.as_str()))
    };
    for cloud in provider_clouds(p) {
        let keys = cloud.source().annotation_keys;
        if keys.is_empty() || keys.iter().any(|k| listed.contains(k)) {
            continue;
        }
        let default = match cloud {
            Cloud::Aws => configured(&["--ecr-role-arn"], &["AWS_ECR_ROLE_ARN"]),
            Cloud::Gcp => configured(&["--google-audience"], &["PULLCRED_GOOGLE_AUDIENCE"]),
            _ => false,
        };
        if !default {
            push(
                Severity::Warning,
                "providers.tokenAttributes.optionalServiceAccountAnnotationKeys",
                format!(
                    "lists none of the {cloud} identity annotations ({}); the kubelet passes only listed annotations, so no pod can name its {cloud} identity",
                    keys.join(", ")
                ),
            );
        }
    }
}

/// The docker config files a pullcred entry reads: every `--docker-config`
/// in `args` (`--docker-config F` or `--docker-config=F`), else the entry's
/// `PULLCRED_DOCKER_CONFIG` (`:`-separated), as pullcred's own flag parsing.
pub fn docker_config_paths(p: &CredentialProvider) -> Vec<PathBuf> {
    const FLAG: &str = "--docker-config";
    let mut out = Vec::new();
    let mut args = p.args.iter();
    while let Some(a) = args.next() {
        if a == "--" {
            break;
        }
        if a == FLAG {
            if let Some(v) = args.next() {
                out.push(PathBuf::from(v));
            }
        } else if let Some(v) = a.strip_prefix(FLAG).and_then(|r| r.strip_prefix('=')) {
            out.push(PathBuf::from(v));
        }
    }
    if out.is_empty()
        && let Some(var) = p
            .env
            .iter()
            .rev()
            .find(|e| e.name == "PULLCRED_DOCKER_CONFIG")
    {
        out.extend(
            var.value
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    out
}

/// The registry keys of a dockerconfigjson document (`auths`, or the older
/// `.dockercfg` map), without touching the credentials; `None` when it is not
/// such a document.
pub fn docker_config_keys(bytes: &[u8]) -> Option<Vec<String>> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let map = doc.as_object()?;
    let keys = match map.get("auths") {
        Some(auths) => auths.as_object()?.keys().cloned().collect(),
        None => map
            .iter()
            .filter(|(_, v)| v.is_object())
            .map(|(k, _)| k.clone())
            .collect(),
    };
    Some(keys)
}

/// A path-scoped docker config key without a trailing `/` is a plain string
/// prefix to the kubelet (see [`crate::matching::path_key_prefix_warning`]).
/// Files that cannot be read here (another user's, or absent on this
/// machine) are skipped: pullcred checks them itself when it runs.
fn check_docker_config_keys(p: &CredentialProvider, push: &mut Push<'_>) {
    use std::io::Read;
    for path in docker_config_paths(p) {
        // Never open a FIFO or device (opening one can block).
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let mut open = std::fs::OpenOptions::new();
        open.read(true);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            const O_NONBLOCK: i32 = 0o4000;
            open.custom_flags(O_NONBLOCK);
        }
        let Ok(file) = open.open(&path) else {
            continue;
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let mut bytes = Vec::new();
        if file
            .take(load::MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .is_err()
        {
            continue;
        }
        let Some(keys) = docker_config_keys(&bytes) else {
            continue;
        };
        for key in keys {
            if let Some(why) = crate::matching::path_key_prefix_warning(&key) {
                push(
                    Severity::Warning,
                    "providers.args",
                    format!("docker config {}: {why}", path.display()),
                );
            }
        }
    }
}

fn check_env(p: &CredentialProvider, push: &mut Push<'_>) {
    for var in &p.env {
        if var.name.is_empty() {
            push(
                Severity::Warning,
                "providers.env.name",
                "an env entry has no name".into(),
            );
        }
    }
}

/// The kubelet's first registration step (`RegisterCredentialProviderPlugins`
/// in pkg/credentialprovider/plugin/plugin.go): the bin dir must exist. A
/// path that is not a directory passes `os.Stat` there but then fails every
/// plugin's look-up, so it is refused here at once.
pub fn check_bin_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "plugin binary directory {} is not a directory; the kubelet registers no credential provider",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "plugin binary directory {} did not exist; the kubelet registers no credential provider",
            dir.display()
        )),
        Err(e) => Err(format!(
            "error inspecting binary directory {}: {e}; the kubelet registers no credential provider",
            dir.display()
        )),
    }
}

/// The kubelet's per-provider registration step: `exec.LookPath` of
/// `<bin-dir>/<name>`, which fails for a missing file, a directory, or a
/// file without execute permission; any failure stops the registration.
fn check_binary(p: &CredentialProvider, dir: &Path, push: &mut Push<'_>) {
    const F: &str = "providers.name";
    if p.name.is_empty() || p.name.contains('/') || p.name == "." || p.name == ".." {
        return;
    }
    let path = dir.join(&p.name);
    let refused = "; the kubelet fails to register the credential providers";
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => push(
            Severity::Error,
            F,
            format!(
                "plugin binary executable {} did not exist{refused}",
                path.display()
            ),
        ),
        Err(e) => push(
            Severity::Error,
            F,
            format!(
                "error inspecting binary executable {}: {e}{refused}",
                path.display()
            ),
        ),
        Ok(m) if m.is_dir() => push(
            Severity::Error,
            F,
            format!(
                "plugin binary executable {} is a directory{refused}",
                path.display()
            ),
        ),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 == 0 {
                    push(
                        Severity::Error,
                        F,
                        format!(
                            "plugin binary executable {} is not executable (no execute permission){refused}",
                            path.display()
                        ),
                    );
                    return;
                }
            }
            if !m.is_file() {
                push(
                    Severity::Warning,
                    F,
                    format!(
                        "plugin {} is not a regular file: the kubelet registers it, but running it fails",
                        path.display()
                    ),
                );
            }
        }
    }
}

/// apimachinery's `IsDNS1123Subdomain`: at most 253 characters, labels of
/// lower-case alphanumerics and `-` (alphanumeric at both ends) joined by
/// `.`. There is no per-label length limit here: the regular expression
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*` has none.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Go's `strings.ToLower`: each character to its simple lower-case mapping
/// (one character, where Rust's full mapping may give two, as for `İ`).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// An annotation key in `tokenAttributes`, as the kubelet checks it
/// (`validateServiceAccountAnnotationKeys` in
/// pkg/credentialprovider/plugin/config.go): a qualified name after
/// lower-casing, so `Example.COM/Role-Arn` is valid.
pub fn check_annotation_key(key: &str) -> Result<(), String> {
    check_qualified_name(&go_to_lower(key))
}

/// Kubernetes qualified name (apimachinery's `IsQualifiedName`, now
/// `content.IsLabelKey`): an optional DNS-1123 subdomain prefix of at most
/// 253 characters and `/`, then a name of at most 63 characters,
/// alphanumeric at both ends with `-`, `_`, `.` inside. Case-sensitive: the
/// prefix must be lower case (see [`check_annotation_key`]).
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    const NAME_RULE: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', \
                             and must start and end with an alphanumeric character";
    let (prefix, name) = match key.split_once('/') {
        None => (None, key),
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(format!(
                    "not a qualified name: {NAME_RULE} with an optional DNS subdomain prefix and '/'"
                ));
            }
            (Some(prefix), name)
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("not a qualified name: prefix part must be non-empty".into());
        }
        if prefix.len() > 253 {
            return Err(
                "not a qualified name: prefix part must be no more than 253 characters".into(),
            );
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(
                "not a qualified name: prefix part must be a lowercase RFC 1123 subdomain".into(),
            );
        }
    }
    if name.is_empty() {
        return Err("not a qualified name: name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("not a qualified name: name part must be no more than 63 characters".into());
    }
    let b = name.as_bytes();
    let inner_ok = b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !inner_ok || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(format!("not a qualified name: {NAME_RULE}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in [
            "simple",
            "now-with-dashes/simple",
            "a.b/c_d.e",
            "x",
            "eks.amazonaws.com/ecr-role-arn",
            "A9",
        ] {
            assert!(check_qualified_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(64);
        let long_prefix = format!("{}/x", "a".repeat(254));
        for bad in [
            "cantendwithadash-",
            "-x",
            "",
            "/x",
            "x/",
            "a/b/c",
            "UPPER.com/x",
            long.as_str(),
            long_prefix.as_str(),
            "a b",
        ] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn annotation_keys_are_lower_cased_first_like_go() {
        for ok in [
            "Example.COM/Role-Arn",
            "EKS.AMAZONAWS.COM/ECR-ROLE-ARN",
            // Go's simple mapping: U+0130 lower-cases to a plain `i`.
            "\u{130}am.gke.io/x",
            // U+212A KELVIN SIGN lower-cases to `k`.
            "\u{212a}8s.io/x",
        ] {
            assert!(check_annotation_key(ok).is_ok(), "{ok}");
        }
        assert!(check_qualified_name("Example.COM/Role-Arn").is_err());
        // No per-label limit in the prefix, only the 253 total.
        let label = "a".repeat(200);
        assert!(check_annotation_key(&format!("{label}.io/x")).is_ok());
        assert!(check_annotation_key(&format!("{}.io/x", "a".repeat(251))).is_err());
        for bad in [
            "\u{e9}xample.com/x",
            "example.com/caf\u{e9}",
            "a..b/x",
            "a./x",
        ] {
            assert!(check_annotation_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_attributes_without_identity_annotations_warn() {
        let config = |keys: &str, extra: &str| {
            format!(
                r#"apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: pullcred
    matchImages: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: "11h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
{extra}    tokenAttributes:
      serviceAccountTokenAudience: sts.amazonaws.com
      cacheType: ServiceAccount
      requireServiceAccount: true
      optionalServiceAccountAnnotationKeys: [{keys}]
"#
            )
        };
        let warnings = |text: String| {
            let (_, findings) = validate_text(&text, &ValidateOptions::default());
            findings
                .into_iter()
                .filter(|f| f.why.contains("identity annotations"))
                .count()
        };
        assert_eq!(warnings(config("example.com/other", "")), 1);
        assert_eq!(warnings(config("eks.amazonaws.com/ecr-role-arn", "")), 0);
        let with_default = "    env:\n      - name: AWS_ECR_ROLE_ARN\n        value: arn:aws:iam::123456789012:role/pull\n";
        assert_eq!(warnings(config("example.com/other", with_default)), 0);
        let with_flag = "    args: [\"--ecr-role-arn=arn:aws:iam::123456789012:role/pull\"]\n";
        assert_eq!(warnings(config("example.com/other", with_flag)), 0);
    }

    #[test]
    fn finding_renders_on_one_line() {
        let f = Finding {
            severity: Severity::Warning,
            file: Some("/etc/x.yaml".into()),
            line: Some(4),
            provider: Some(ProviderRef {
                index: 0,
                name: "pullcred".into(),
            }),
            field: "providers.matchImages".into(),
            why: "two\nlines".into(),
        };
        assert_eq!(
            f.to_string(),
            "/etc/x.yaml:4: provider \"pullcred\": providers.matchImages: warning: two lines"
        );
    }
}
