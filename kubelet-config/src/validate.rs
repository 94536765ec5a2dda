//! The rules the kubelet applies to a `CredentialProviderConfig`, plus
//! pullcred's own warnings, reported as [`Finding`]s: every one, not the
//! first.
//!
//! Kubelet rules (errors): strict decoding (see [`crate::config`]); at least
//! one provider; per provider: a `name` that is not empty, has no `/` or
//! space, is not `.` or `..` and is not repeated (across files in directory
//! mode too); at least one `matchImages` entry, each parsing as
//! URL("https://" + glob); `defaultCacheDuration` present and not negative;
//! `apiVersion` one of the exec protocol versions; `tokenAttributes` only with
//! the service account token feature gate on and exec protocol v1, with an
//! audience, a `cacheType` of `ServiceAccount` or `Token`,
//! `requireServiceAccount` set (and true when required annotation keys are
//! listed), annotation keys that are qualified names, none repeated within a
//! list, none both required and optional.
//!
//! pullcred's warnings: the plugin binary is missing from `--bin-dir` (or not
//! executable); a glob claims a cloud's registry domain but can match none of
//! its hosts; a glob's host label is a malformed pattern; a glob carries a
//! scheme; `defaultCacheDuration` outlives the tokens of the clouds the
//! provider serves.

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
        if let Some(dir) = &opts.bin_dir {
            check_binary(p, dir, &mut push);
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
            if let Err(why) = check_qualified_name(key) {
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

fn check_binary(p: &CredentialProvider, dir: &Path, push: &mut Push<'_>) {
    if p.name.is_empty() || p.name.contains('/') || p.name == "." || p.name == ".." {
        return;
    }
    let path = dir.join(&p.name);
    match std::fs::metadata(&path) {
        Err(e) => push(
            Severity::Warning,
            "providers.name",
            format!("plugin {} is missing: {e}", path.display()),
        ),
        Ok(m) if !m.is_file() => push(
            Severity::Warning,
            "providers.name",
            format!("plugin {} is not a regular file", path.display()),
        ),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o111 == 0 {
                    push(
                        Severity::Warning,
                        "providers.name",
                        format!("plugin {} is not executable", path.display()),
                    );
                }
            }
            #[cfg(not(unix))]
            let _ = m;
        }
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Kubernetes qualified name (an annotation key): an optional DNS-1123
/// subdomain prefix of at most 253 characters and `/`, then a name of at most
/// 63 characters, alphanumeric at both ends with `-`, `_`, `.` inside.
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
        if prefix.len() > 253 || !prefix.split('.').all(is_dns1123_label) {
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
