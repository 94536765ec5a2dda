//! `config generate`: a config covering every host form of the chosen
//! sources, rendered as commented YAML (or JSON).

use std::fmt;
use std::fmt::Write as _;

use crate::config::{
    CONFIG_API_VERSION, CONFIG_KIND, CredentialProvider, CredentialProviderConfig, ExecEnvVar,
    PROVIDER_API_V1, TokenAttributes,
};
use crate::duration::GoDuration;
use crate::sources::Cloud;
use crate::validate::check_qualified_name;

/// The provider entry's default name: pullcred's own binary.
pub const DEFAULT_NAME: &str = "pullcred";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    pub clouds: Vec<Cloud>,
    pub name: String,
    /// Generic registries: `HOST[/PATH]` globs.
    pub registries: Vec<String>,
    /// Generic: add `docker.io`.
    pub docker_hub: bool,
    /// Azure: `(source host glob, ACR host)` pairs.
    pub mirrors: Vec<(String, String)>,
    pub default_cache_duration: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub token: Option<TokenOptions>,
}

impl GenerateOptions {
    pub fn new(clouds: Vec<Cloud>) -> GenerateOptions {
        GenerateOptions {
            clouds,
            name: DEFAULT_NAME.to_string(),
            registries: Vec::new(),
            docker_hub: false,
            mirrors: Vec::new(),
            default_cache_duration: None,
            args: Vec::new(),
            env: Vec::new(),
            token: None,
        }
    }

    /// The command line that produces this config (for its header).
    pub fn command_line(&self) -> String {
        let mut c = String::from("pullcred config generate");
        let clouds: Vec<&str> = self.clouds.iter().map(|c| c.name()).collect();
        let _ = write!(c, " --cloud {}", clouds.join(","));
        if self.name != DEFAULT_NAME {
            let _ = write!(c, " --name {}", self.name);
        }
        for r in &self.registries {
            let _ = write!(c, " --registry {r}");
        }
        if self.docker_hub {
            c.push_str(" --docker-hub");
        }
        for (src, acr) in &self.mirrors {
            let _ = write!(c, " --mirror {src}={acr}");
        }
        if let Some(d) = &self.default_cache_duration {
            let _ = write!(c, " --default-cache-duration {d}");
        }
        for a in &self.args {
            let _ = write!(c, " --arg={a}");
        }
        for (k, v) in &self.env {
            let _ = write!(c, " --env {k}={v}");
        }
        if let Some(t) = &self.token {
            let _ = write!(c, " --token-audience {}", t.audience);
            if let Some(ct) = &t.cache_type {
                let _ = write!(c, " --token-cache-type {ct}");
            }
            if let Some(r) = t.require_service_account {
                let _ = write!(c, " --require-service-account={r}");
            }
            for k in &t.required_annotations {
                let _ = write!(c, " --required-annotation {k}");
            }
            for k in &t.optional_annotations {
                let _ = write!(c, " --optional-annotation {k}");
            }
        }
        c
    }
}

/// `tokenAttributes` wanted; unset parts take the chosen clouds' defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenOptions {
    pub audience: String,
    pub cache_type: Option<String>,
    pub require_service_account: Option<bool>,
    pub required_annotations: Vec<String>,
    pub optional_annotations: Vec<String>,
}

/// Why the options cannot make a valid config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerateError {
    NoCloud,
    NoGenericRegistry,
    NeedsCloud { flag: &'static str, cloud: Cloud },
    BadRegistry { registry: String, why: String },
    BadMirror { mirror: String, why: String },
    BadName(String),
    BadDuration { value: String, why: String },
    BadCacheType(String),
    BadAnnotation { key: String, why: String },
    EmptyAudience,
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::NoCloud => f.write_str("--cloud is required (aws, gcp, azure, generic)"),
            GenerateError::NoGenericRegistry => f.write_str(
                "--cloud generic needs at least one --registry HOST[/PATH] or --docker-hub",
            ),
            GenerateError::NeedsCloud { flag, cloud } => write!(f, "{flag} needs --cloud {cloud}"),
            GenerateError::BadRegistry { registry, why } => {
                write!(f, "--registry {registry:?}: {why}")
            }
            GenerateError::BadMirror { mirror, why } => write!(f, "--mirror {mirror:?}: {why}"),
            GenerateError::BadName(n) => {
                write!(
                    f,
                    "--name {n:?}: must be a plain file name (no '/', no spaces, not '.' or '..')"
                )
            }
            GenerateError::BadDuration { value, why } => {
                write!(f, "--default-cache-duration {value:?}: {why}")
            }
            GenerateError::BadCacheType(t) => write!(
                f,
                "--token-cache-type {t:?}: must be ServiceAccount or Token"
            ),
            GenerateError::BadAnnotation { key, why } => write!(f, "annotation key {key:?}: {why}"),
            GenerateError::EmptyAudience => f.write_str("--token-audience must not be empty"),
        }
    }
}

impl std::error::Error for GenerateError {}

fn push_unique(list: &mut Vec<String>, s: &str) {
    if !list.iter().any(|x| x == s) {
        list.push(s.to_string());
    }
}

/// Builds the config.
pub fn build(opts: &GenerateOptions) -> Result<CredentialProviderConfig, GenerateError> {
    if opts.clouds.is_empty() {
        return Err(GenerateError::NoCloud);
    }
    let has = |c: Cloud| opts.clouds.contains(&c);
    let name = &opts.name;
    if name.is_empty() || name.contains(['/', ' ']) || name == "." || name == ".." {
        return Err(GenerateError::BadName(name.clone()));
    }
    if !has(Cloud::Generic) {
        if !opts.registries.is_empty() {
            return Err(GenerateError::NeedsCloud {
                flag: "--registry",
                cloud: Cloud::Generic,
            });
        }
        if opts.docker_hub {
            return Err(GenerateError::NeedsCloud {
                flag: "--docker-hub",
                cloud: Cloud::Generic,
            });
        }
    } else if opts.registries.is_empty() && !opts.docker_hub {
        return Err(GenerateError::NoGenericRegistry);
    }

    let mut images = Vec::new();
    let mut args = Vec::new();
    for &cloud in &opts.clouds {
        match cloud {
            Cloud::Generic => {
                for r in &opts.registries {
                    check_glob(r).map_err(|why| GenerateError::BadRegistry {
                        registry: r.clone(),
                        why,
                    })?;
                    push_unique(&mut images, r);
                }
                if opts.docker_hub {
                    push_unique(&mut images, "docker.io");
                }
            }
            _ => {
                for g in cloud.source().globs {
                    push_unique(&mut images, g);
                }
            }
        }
    }
    // `--mirror SOURCE=TARGET[/PREFIX]`: the kubelet must send SOURCE's
    // images to pullcred, and TARGET must be a registry a chosen source
    // serves (a cloud's host, or with `generic` a static key's registry).
    for (src, target) in &opts.mirrors {
        let mirror = format!("{src}={target}");
        check_glob(src).map_err(|why| GenerateError::BadMirror {
            mirror: mirror.clone(),
            why,
        })?;
        let host = target.split('/').next().unwrap_or_default();
        let served = crate::sources::served_clouds(host);
        let ok = !host.is_empty()
            && !target.contains('*')
            && (served.iter().any(|c| has(*c)) || has(Cloud::Generic));
        if !ok {
            return Err(GenerateError::BadMirror {
                mirror,
                why: "the target must be a registry a chosen --cloud serves (an ACR such as myacr.azurecr.io, an ECR pull-through cache host, an Artifact Registry host), or with --cloud generic a static key's registry".into(),
            });
        }
        push_unique(&mut images, src);
        args.push(format!("--mirror={src}={target}"));
    }
    args.extend(opts.args.iter().cloned());

    let default_cache_duration = match &opts.default_cache_duration {
        Some(d) => {
            let parsed = GoDuration::parse(d).map_err(|e| GenerateError::BadDuration {
                value: d.clone(),
                why: e.to_string(),
            })?;
            if parsed.is_negative() {
                return Err(GenerateError::BadDuration {
                    value: d.clone(),
                    why: "must not be negative".into(),
                });
            }
            d.clone()
        }
        None => opts
            .clouds
            .iter()
            .map(|c| c.source().default_cache_duration)
            .min_by_key(|d| GoDuration::parse(d).unwrap_or(GoDuration::ZERO))
            .unwrap_or("5m")
            .to_string(),
    };

    let token_attributes = match &opts.token {
        None => None,
        Some(t) => Some(token_attributes(t, &opts.clouds)?),
    };

    Ok(CredentialProviderConfig {
        api_version: CONFIG_API_VERSION.to_string(),
        kind: CONFIG_KIND.to_string(),
        providers: vec![CredentialProvider {
            name: name.clone(),
            match_images: images,
            default_cache_duration: Some(default_cache_duration),
            api_version: PROVIDER_API_V1.to_string(),
            args,
            env: opts
                .env
                .iter()
                .map(|(k, v)| ExecEnvVar {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            token_attributes,
        }],
    })
}

fn check_glob(glob: &str) -> Result<(), String> {
    if glob.contains("://") {
        return Err("write the host without a scheme".into());
    }
    crate::matching::validate_glob(glob).map_err(|e| e.to_string())?;
    crate::matching::check_glob_patterns(glob).map_err(|e| e.to_string())
}

fn token_attributes(t: &TokenOptions, clouds: &[Cloud]) -> Result<TokenAttributes, GenerateError> {
    if t.audience.is_empty() {
        return Err(GenerateError::EmptyAudience);
    }
    let cache_type = t
        .cache_type
        .clone()
        .unwrap_or_else(|| "ServiceAccount".to_string());
    if cache_type != "ServiceAccount" && cache_type != "Token" {
        return Err(GenerateError::BadCacheType(cache_type));
    }
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for k in &t.required_annotations {
        push_unique(&mut required, k);
    }
    for k in &t.optional_annotations {
        if !required.contains(k) {
            push_unique(&mut optional, k);
        }
    }
    if t.required_annotations.is_empty() && t.optional_annotations.is_empty() {
        for c in clouds {
            for k in c.source().annotation_keys {
                push_unique(&mut optional, k);
            }
        }
    }
    for k in required.iter().chain(&optional) {
        check_qualified_name(k).map_err(|why| GenerateError::BadAnnotation {
            key: k.clone(),
            why,
        })?;
    }
    let require_service_account = t.require_service_account.unwrap_or(true) || !required.is_empty();
    Ok(TokenAttributes {
        service_account_token_audience: t.audience.clone(),
        cache_type,
        require_service_account: Some(require_service_account),
        required_service_account_annotation_keys: required,
        optional_service_account_annotation_keys: optional,
    })
}

fn q(s: &str) -> String {
    // A JSON string is a YAML double-quoted scalar.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Renders the config as commented YAML.
pub fn render_yaml(config: &CredentialProviderConfig, command_line: &str) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "# Generated by: {command_line}");
    y.push_str("# Regenerate instead of editing; check with: pullcred config validate FILE\n");
    let _ = writeln!(y, "apiVersion: {}", config.api_version);
    let _ = writeln!(y, "kind: {}", config.kind);
    y.push_str("providers:\n");
    for p in &config.providers {
        let _ = writeln!(y, "  - name: {}", q(&p.name));
        y.push_str("    matchImages:\n");
        for g in &p.match_images {
            let _ = writeln!(y, "      - {}", q(g));
        }
        if let Some(d) = &p.default_cache_duration {
            let _ = writeln!(y, "    defaultCacheDuration: {}", q(d));
        }
        let _ = writeln!(y, "    apiVersion: {}", p.api_version);
        if !p.args.is_empty() {
            y.push_str("    args:\n");
            for a in &p.args {
                let _ = writeln!(y, "      - {}", q(a));
            }
        }
        if !p.env.is_empty() {
            y.push_str("    env:\n");
            for e in &p.env {
                let _ = writeln!(
                    y,
                    "      - name: {}\n        value: {}",
                    q(&e.name),
                    q(&e.value)
                );
            }
        }
        if let Some(t) = &p.token_attributes {
            y.push_str("    tokenAttributes:\n");
            let _ = writeln!(
                y,
                "      serviceAccountTokenAudience: {}",
                q(&t.service_account_token_audience)
            );
            let _ = writeln!(y, "      cacheType: {}", q(&t.cache_type));
            if let Some(r) = t.require_service_account {
                let _ = writeln!(y, "      requireServiceAccount: {r}");
            }
            for (field, keys) in [
                (
                    "requiredServiceAccountAnnotationKeys",
                    &t.required_service_account_annotation_keys,
                ),
                (
                    "optionalServiceAccountAnnotationKeys",
                    &t.optional_service_account_annotation_keys,
                ),
            ] {
                if !keys.is_empty() {
                    let _ = writeln!(y, "      {field}:");
                    for k in keys {
                        let _ = writeln!(y, "        - {}", q(k));
                    }
                }
            }
        }
    }
    y
}

/// Renders the config as JSON (what the kubelet also reads).
pub fn render_json(config: &CredentialProviderConfig) -> String {
    let mut s = serde_json::to_string_pretty(config).unwrap_or_default();
    s.push('\n');
    s
}

/// The example configs shipped in `kubelet-config/examples/`: file name and
/// the options that produce it.
pub fn examples() -> Vec<(&'static str, GenerateOptions)> {
    let mut generic = GenerateOptions::new(vec![Cloud::Generic]);
    generic.registries = vec![
        "registry.example.com".into(),
        "*.registry.example.com:5000/team".into(),
    ];
    generic.docker_hub = true;
    let mut azure = GenerateOptions::new(vec![Cloud::Azure]);
    azure.mirrors = vec![("mcr.microsoft.com".into(), "myacr.azurecr.io".into())];
    let mut aws_sa = GenerateOptions::new(vec![Cloud::Aws]);
    aws_sa.token = Some(TokenOptions {
        audience: "sts.amazonaws.com".into(),
        ..TokenOptions::default()
    });
    // GKE: the Kubernetes service-account token's audience is the cluster's
    // workload pool, PROJECT.svc.id.goog.
    let mut gcp_sa = GenerateOptions::new(vec![Cloud::Gcp]);
    gcp_sa.token = Some(TokenOptions {
        audience: "my-project.svc.id.goog".into(),
        ..TokenOptions::default()
    });
    // Entra workload identity federation's fixed audience.
    let mut azure_sa = GenerateOptions::new(vec![Cloud::Azure]);
    azure_sa.token = Some(TokenOptions {
        audience: "api://AzureADTokenExchange".into(),
        ..TokenOptions::default()
    });
    let mut all = GenerateOptions::new(vec![Cloud::Aws, Cloud::Gcp, Cloud::Azure]);
    all.name = DEFAULT_NAME.into();
    vec![
        ("aws.yaml", GenerateOptions::new(vec![Cloud::Aws])),
        ("gcp.yaml", GenerateOptions::new(vec![Cloud::Gcp])),
        ("azure.yaml", azure),
        ("generic.yaml", generic),
        ("aws-service-account.yaml", aws_sa),
        ("gcp-service-account.yaml", gcp_sa),
        ("azure-service-account.yaml", azure_sa),
        ("all-clouds.yaml", all),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{ValidateOptions, validate_text};

    #[test]
    fn every_cloud_alone_and_together_validates_cleanly() {
        let mut all = Vec::new();
        for (name, opts) in examples() {
            all.push((name.to_string(), opts));
        }
        for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::Azure] {
            let mut o = GenerateOptions::new(vec![cloud]);
            o.token = Some(TokenOptions {
                audience: "aud".into(),
                ..TokenOptions::default()
            });
            all.push((format!("{cloud}+token"), o));
        }
        for (name, opts) in all {
            let config = build(&opts).unwrap();
            for text in [
                render_yaml(&config, &opts.command_line()),
                render_json(&config),
            ] {
                let (decoded, findings) = validate_text(&text, &ValidateOptions::default());
                assert!(findings.is_empty(), "{name}: {findings:#?}\n{text}");
                assert_eq!(decoded.as_ref(), Some(&config), "{name}");
            }
        }
    }

    #[test]
    fn defaults_per_cloud() {
        let c = build(&GenerateOptions::new(vec![Cloud::Aws, Cloud::Gcp])).unwrap();
        assert_eq!(
            c.providers[0].default_cache_duration.as_deref(),
            Some("45m")
        );
        let mut o = GenerateOptions::new(vec![Cloud::Gcp]);
        o.token = Some(TokenOptions {
            audience: "a".into(),
            ..TokenOptions::default()
        });
        let t = build(&o).unwrap().providers[0]
            .token_attributes
            .clone()
            .unwrap();
        assert_eq!(t.cache_type, "ServiceAccount");
        assert_eq!(t.require_service_account, Some(true));
        assert_eq!(
            t.optional_service_account_annotation_keys,
            vec![
                "iam.gke.io/enable-wi-image-pull",
                "iam.gke.io/gcp-service-account",
                "pullcred.dev/google-audience"
            ]
        );
        let mut o = GenerateOptions::new(vec![Cloud::Aws]);
        o.token = Some(TokenOptions {
            audience: "a".into(),
            require_service_account: Some(false),
            required_annotations: vec!["eks.amazonaws.com/ecr-role-arn".into()],
            ..TokenOptions::default()
        });
        let t = build(&o).unwrap().providers[0]
            .token_attributes
            .clone()
            .unwrap();
        // Required keys need requireServiceAccount: true.
        assert_eq!(t.require_service_account, Some(true));
        assert!(t.optional_service_account_annotation_keys.is_empty());
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert_eq!(
            build(&GenerateOptions::new(vec![])),
            Err(GenerateError::NoCloud)
        );
        assert_eq!(
            build(&GenerateOptions::new(vec![Cloud::Generic])),
            Err(GenerateError::NoGenericRegistry)
        );
        let mut o = GenerateOptions::new(vec![Cloud::Generic]);
        o.registries = vec!["https://x.io".into()];
        assert!(matches!(build(&o), Err(GenerateError::BadRegistry { .. })));
        o.registries = vec!["%zz".into()];
        assert!(matches!(build(&o), Err(GenerateError::BadRegistry { .. })));
        let mut o = GenerateOptions::new(vec![Cloud::Azure]);
        o.mirrors = vec![("docker.io".into(), "example.com".into())];
        assert!(matches!(build(&o), Err(GenerateError::BadMirror { .. })));
        // any cloud's registry is a target, with its path prefix
        let mut o = GenerateOptions::new(vec![Cloud::Aws]);
        o.mirrors = vec![(
            "docker.io".into(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub".into(),
        )];
        let built = build(&o).unwrap();
        let p = &built.providers[0];
        let want = "--mirror=docker.io=123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub";
        assert!(p.args.iter().any(|a| a == want), "{:?}", p.args);
        assert!(p.match_images.contains(&"docker.io".to_string()));
        // a target the chosen clouds do not serve
        o.mirrors = vec![("docker.io".into(), "myacr.azurecr.io".into())];
        assert!(matches!(build(&o), Err(GenerateError::BadMirror { .. })));
        let mut o = GenerateOptions::new(vec![Cloud::Aws]);
        o.token = Some(TokenOptions {
            audience: "a".into(),
            cache_type: Some("x".into()),
            ..TokenOptions::default()
        });
        assert!(matches!(build(&o), Err(GenerateError::BadCacheType(_))));
    }
}
