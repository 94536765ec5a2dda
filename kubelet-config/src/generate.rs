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
    /// A keyless source served from pullcred's own config file
    /// (`--cloud vault` or `--cloud exchange`): `registries` are its hosts.
    pub keyless: Option<Keyless>,
}

/// A source whose registries and settings live in pullcred's config file
/// (`kubelet-config/src/pullcred/`), reached with the pod's service-account
/// token: the provider entry gets `tokenAttributes` and `--config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Keyless {
    /// HashiCorp Vault or OpenBao (`vault:` in the pullcred config).
    Vault,
    /// An OAuth 2.0 token exchange, RFC 8693 or Artifactory (`exchanges:`).
    Exchange,
}

impl Keyless {
    pub const ALL: [Keyless; 2] = [Keyless::Vault, Keyless::Exchange];

    pub fn name(self) -> &'static str {
        match self {
            Keyless::Vault => "vault",
            Keyless::Exchange => "exchange",
        }
    }

    pub fn parse(s: &str) -> Option<Keyless> {
        Keyless::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Service account annotations the source reads.
    pub fn annotation_keys(self) -> &'static [&'static str] {
        match self {
            Keyless::Vault => &[crate::pullcred::vault::VAULT_ROLE_ANNOTATION],
            Keyless::Exchange => &[],
        }
    }
}

impl fmt::Display for Keyless {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the generated provider entry tells pullcred to read its config
/// file (`args: [--config, PATH]`).
pub const PULLCRED_CONFIG_PATH: &str = "/etc/pullcred/config.yaml";

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
            keyless: None,
        }
    }

    /// Whether the provider entry reads pullcred's config file: a keyless
    /// source, or ECR through EKS Pod Identity (its audience).
    pub fn uses_pullcred_config(&self) -> bool {
        self.keyless.is_some() || self.eks_pod_identity()
    }

    /// ECR with the EKS Pod Identity audience: the pullcred config's
    /// `eksPodIdentity` section serves it.
    pub fn eks_pod_identity(&self) -> bool {
        self.clouds.contains(&Cloud::Aws)
            && self
                .token
                .as_ref()
                .is_some_and(|t| t.audience == crate::pullcred::eks::POD_IDENTITY_AUDIENCE)
    }

    /// The command line that produces this config (for its header).
    pub fn command_line(&self) -> String {
        let mut c = String::from("pullcred config generate");
        let mut clouds: Vec<&str> = self.clouds.iter().map(|c| c.name()).collect();
        clouds.extend(self.keyless.map(Keyless::name));
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
    NeedsCloud {
        flag: &'static str,
        cloud: Cloud,
    },
    BadRegistry {
        registry: String,
        why: String,
    },
    BadMirror {
        mirror: String,
        why: String,
    },
    BadName(String),
    BadDuration {
        value: String,
        why: String,
    },
    BadCacheType(String),
    BadAnnotation {
        key: String,
        why: String,
    },
    EmptyAudience,
    /// `--cloud vault|exchange` without `--token-audience`.
    KeylessNeedsAudience(Keyless),
    /// `--cloud vault|exchange` without a `--registry`.
    KeylessNeedsRegistry(Keyless),
    /// Two sources would share the `--registry` hosts.
    AmbiguousRegistries(String),
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::NoCloud => {
                f.write_str("--cloud is required (aws, gcp, azure, generic, vault, exchange)")
            }
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
            GenerateError::KeylessNeedsAudience(k) => write!(
                f,
                "--cloud {k} needs --token-audience AUD: pullcred reaches {k} with the pod's service-account token for that audience"
            ),
            GenerateError::KeylessNeedsRegistry(k) => write!(
                f,
                "--cloud {k} needs at least one --registry HOST[/PATH] (the registries {k} serves) or --docker-hub"
            ),
            GenerateError::AmbiguousRegistries(what) => write!(
                f,
                "--registry hosts would belong to both {what}: generate one of them at a time"
            ),
        }
    }
}

impl std::error::Error for GenerateError {}

fn push_unique(list: &mut Vec<String>, s: &str) {
    if !list.iter().any(|x| x == s) {
        list.push(s.to_string());
    }
}

/// `--registry` globs (each checked) and `--docker-hub`: the images of the
/// sources that name no registry of their own (generic, keyless).
fn push_registries(images: &mut Vec<String>, opts: &GenerateOptions) -> Result<(), GenerateError> {
    for r in &opts.registries {
        check_glob(r).map_err(|why| GenerateError::BadRegistry {
            registry: r.clone(),
            why,
        })?;
        push_unique(images, r);
    }
    if opts.docker_hub {
        push_unique(images, "docker.io");
    }
    Ok(())
}

/// Builds the config.
pub fn build(opts: &GenerateOptions) -> Result<CredentialProviderConfig, GenerateError> {
    if opts.clouds.is_empty() && opts.keyless.is_none() {
        return Err(GenerateError::NoCloud);
    }
    let has = |c: Cloud| opts.clouds.contains(&c);
    let name = &opts.name;
    if name.is_empty() || name.contains(['/', ' ']) || name == "." || name == ".." {
        return Err(GenerateError::BadName(name.clone()));
    }
    if let Some(k) = opts.keyless {
        if has(Cloud::Generic) {
            return Err(GenerateError::AmbiguousRegistries(format!(
                "generic and {k}"
            )));
        }
        if opts.registries.is_empty() && !opts.docker_hub {
            return Err(GenerateError::KeylessNeedsRegistry(k));
        }
        if opts.token.is_none() {
            return Err(GenerateError::KeylessNeedsAudience(k));
        }
    } else if !has(Cloud::Generic) {
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
    if opts.uses_pullcred_config() && !opts.args.iter().any(|a| a.starts_with("--config")) {
        args.push("--config".to_string());
        args.push(PULLCRED_CONFIG_PATH.to_string());
    }
    if opts.keyless.is_some() {
        push_registries(&mut images, opts)?;
    }
    for &cloud in &opts.clouds {
        match cloud {
            Cloud::Generic => push_registries(&mut images, opts)?,
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
            && (served.iter().any(|c| has(*c)) || has(Cloud::Generic) || opts.keyless.is_some());
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
            // A keyless source's answers carry their own cacheDuration;
            // this is the fallback.
            .chain(opts.keyless.map(|_| KEYLESS_DEFAULT_CACHE_DURATION))
            .min_by_key(|d| GoDuration::parse(d).unwrap_or(GoDuration::ZERO))
            .unwrap_or("5m")
            .to_string(),
    };

    let token_attributes = match &opts.token {
        None => None,
        Some(t) => Some(token_attributes(t, &opts.clouds, opts.keyless)?),
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

/// `defaultCacheDuration` for a keyless source (its answers say how long).
pub const KEYLESS_DEFAULT_CACHE_DURATION: &str = "5m";

fn token_attributes(
    t: &TokenOptions,
    clouds: &[Cloud],
    keyless: Option<Keyless>,
) -> Result<TokenAttributes, GenerateError> {
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
        for k in keyless.iter().flat_map(|k| k.annotation_keys()) {
            push_unique(&mut optional, k);
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

/// The RBAC verb the API server checks when a node asks for a service
/// account token with an audience no pod on it references
/// (ServiceAccountNodeAudienceRestriction, in the NodeRestriction admission
/// plugin). The check's attributes, as kubernetes/website
/// `content/en/docs/reference/access-authn-authz/node.md` ("Allowing
/// additional audiences with RBAC") lists them: verb this, API group `""`,
/// resource the audience, name the service account's name, namespace its
/// namespace. kubernetes/kubernetes `test/integration/auth/node_test.go`
/// grants it with exactly such a rule (`resourceNames` the account).
pub const AUDIENCE_VERB: &str = "request-serviceaccounts-token-audience";
/// The group every kubelet's credential is in.
pub const NODES_GROUP: &str = "system:nodes";

/// Why the RBAC cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacError {
    EmptyAudience,
    /// `--rbac-service-account` is not `NAMESPACE/NAME`.
    BadServiceAccount(String),
}

impl fmt::Display for RbacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RbacError::EmptyAudience => f.write_str("the token audience must not be empty"),
            RbacError::BadServiceAccount(s) => write!(
                f,
                "--rbac-service-account {s:?}: want NAMESPACE/NAME (a namespace and a service account name, lower-case DNS labels/subdomains)"
            ),
        }
    }
}

impl std::error::Error for RbacError {}

/// Parses `NAMESPACE/NAME` for `--rbac-service-account`.
pub fn parse_service_account(s: &str) -> Result<(String, String), RbacError> {
    let bad = || RbacError::BadServiceAccount(s.to_string());
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    let dns = |v: &str, max: usize| {
        !v.is_empty()
            && v.len() <= max
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric()
    };
    if !dns(ns, 63) || ns.contains('.') || !dns(name, 253) {
        return Err(bad());
    }
    Ok((ns.to_string(), name.to_string()))
}

/// FNV-1a, 32 bits: a stable short tag for a name (not for security).
fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The RBAC objects' name for an audience: `pullcred-audience-SLUG-HASH`, a
/// valid object name whatever the audience holds (`api://...`, URLs), and
/// distinct for distinct audiences.
pub fn rbac_name(audience: &str) -> String {
    let mut slug = String::new();
    for c in audience.to_ascii_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push(c);
        }
    }
    let slug: String = slug.chars().take(40).collect();
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("pullcred-audience-{:08x}", fnv32(audience))
    } else {
        format!("pullcred-audience-{slug}-{:08x}", fnv32(audience))
    }
}

/// The RBAC that lets the kubelets (group `system:nodes`) request service
/// account tokens for `audience`, as YAML documents for `kubectl apply -f`.
///
/// No `service_accounts`: a ClusterRole and a ClusterRoleBinding, for every
/// service account. With `NAMESPACE/NAME` pairs: per namespace, a Role
/// whose `resourceNames` are those accounts and a RoleBinding (the check
/// is made in the service account's namespace), so nodes get tokens for
/// that audience for those accounts only. Sorted: the same input gives the
/// same bytes.
pub fn rbac_yaml(
    audience: &str,
    service_accounts: &[(String, String)],
    command_line: &str,
) -> Result<String, RbacError> {
    if audience.is_empty() {
        return Err(RbacError::EmptyAudience);
    }
    let name = rbac_name(audience);
    let mut y = String::new();
    let _ = writeln!(y, "# Generated by: {command_line}");
    let _ = writeln!(
        y,
        "# Lets the kubelets (group {NODES_GROUP}) request service account tokens for the audience {}",
        q(audience)
    );
    y.push_str("# (the API server's ServiceAccountNodeAudienceRestriction). Apply with: kubectl apply -f FILE\n");
    let rule = |y: &mut String, names: &[&str]| {
        y.push_str("rules:\n");
        y.push_str("  - apiGroups: [\"\"]\n");
        let _ = writeln!(y, "    resources: [{}]", q(audience));
        let _ = writeln!(y, "    verbs: [{}]", q(AUDIENCE_VERB));
        if !names.is_empty() {
            let list: Vec<String> = names.iter().map(|n| q(n)).collect();
            let _ = writeln!(y, "    resourceNames: [{}]", list.join(", "));
        }
    };
    let binding = |y: &mut String, role_kind: &str| {
        y.push_str("roleRef:\n");
        y.push_str("  apiGroup: rbac.authorization.k8s.io\n");
        let _ = writeln!(y, "  kind: {role_kind}");
        let _ = writeln!(y, "  name: {}", q(&name));
        y.push_str("subjects:\n");
        y.push_str("  - apiGroup: rbac.authorization.k8s.io\n");
        y.push_str("    kind: Group\n");
        let _ = writeln!(y, "    name: {}", q(NODES_GROUP));
    };
    let labels = |y: &mut String| {
        y.push_str("  labels:\n");
        y.push_str("    app.kubernetes.io/managed-by: pullcred\n");
    };
    if service_accounts.is_empty() {
        y.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n");
        let _ = writeln!(y, "  name: {}", q(&name));
        labels(&mut y);
        rule(&mut y, &[]);
        y.push_str(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n",
        );
        let _ = writeln!(y, "  name: {}", q(&name));
        labels(&mut y);
        binding(&mut y, "ClusterRole");
        return Ok(y);
    }
    let mut by_ns: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (ns, sa) in service_accounts {
        let names = by_ns.entry(ns.as_str()).or_default();
        if !names.contains(&sa.as_str()) {
            names.push(sa.as_str());
        }
    }
    for (ns, mut names) in by_ns {
        names.sort_unstable();
        y.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n");
        let _ = writeln!(y, "  name: {}\n  namespace: {}", q(&name), q(ns));
        labels(&mut y);
        rule(&mut y, &names);
        y.push_str("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n");
        let _ = writeln!(y, "  name: {}\n  namespace: {}", q(&name), q(ns));
        labels(&mut y);
        binding(&mut y, "Role");
    }
    Ok(y)
}

/// A starting pullcred config file (`--config`) for the keyless source or
/// EKS Pod Identity that `opts` chose, with placeholders to fill in; `None`
/// when the provider entry needs no pullcred config. `pullcred config
/// validate` accepts it as written.
pub fn pullcred_config_skeleton(opts: &GenerateOptions) -> Option<String> {
    if !opts.uses_pullcred_config() {
        return None;
    }
    let mut registries: Vec<String> = opts.registries.clone();
    if opts.docker_hub {
        push_unique(&mut registries, "docker.io");
    }
    let audience = opts
        .token
        .as_ref()
        .map(|t| t.audience.as_str())
        .unwrap_or("");
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# pullcred config, generated by: {}",
        opts.command_line()
    );
    let _ = writeln!(
        y,
        "# Install as {PULLCRED_CONFIG_PATH} (owned by the kubelet's user, chmod 600); replace the"
    );
    y.push_str(
        "# example values (*.example.com, roles, paths), then: pullcred config validate FILE\n",
    );
    let _ = writeln!(y, "apiVersion: {}", crate::pullcred::API_VERSION);
    let _ = writeln!(y, "kind: {}", crate::pullcred::KIND);
    if opts.eks_pod_identity() {
        y.push_str(
            "# ECR through EKS Pod Identity: the pod identity association decides the role.\n",
        );
        y.push_str(
            "# The cluster's name comes from clusterName, else PULLCRED_EKS_CLUSTER_NAME,\n",
        );
        y.push_str("# else the node's nodeadm NodeConfig.\n");
        y.push_str("eksPodIdentity: {}\n");
    }
    let list = |y: &mut String| {
        y.push_str("    registries:\n");
        for r in &registries {
            let _ = writeln!(y, "      - {}", q(r));
        }
    };
    match opts.keyless {
        None => {}
        Some(Keyless::Vault) => {
            y.push_str("vault:\n  - name: \"vault\"\n");
            list(&mut y);
            y.push_str("    # Your Vault or OpenBao server.\n");
            y.push_str("    address: \"https://vault.example.com:8200\"\n");
            let _ = writeln!(
                y,
                "    # Per-pod login with the pod's service-account token (audience {}) through\n    # Vault's kubernetes auth method: the role is the service account's\n    # {} annotation, else defaultRole. Bind the role to the\n    # service accounts that may pull, with that audience.",
                q(audience),
                crate::pullcred::vault::VAULT_ROLE_ANNOTATION
            );
            y.push_str("    pod:\n      method: \"kubernetes\"\n      defaultRole: \"pullcred\"\n");
            y.push_str("    # A KV v2 secret with the fields username and password.\n");
            y.push_str("    secret:\n      mount: \"secret\"\n      path: \"registries/{namespace}/{serviceAccount}\"\n");
        }
        Some(Keyless::Exchange) => {
            y.push_str("exchanges:\n  - name: \"exchange\"\n");
            list(&mut y);
            let _ = writeln!(
                y,
                "    # The token endpoint (RFC 8693) that trusts the cluster's service account\n    # issuer for the audience {}. For JFrog Artifactory: flavor: artifactory,\n    # tokenUrl: https://EXAMPLE.jfrog.io and providerName.",
                q(audience)
            );
            y.push_str("    tokenUrl: \"https://sts.example.com/oauth2/token\"\n");
            y.push_str("    # The pod's service-account token goes in.\n");
            y.push_str("    subjectToken: \"pod\"\n");
        }
    }
    Some(y)
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

    #[test]
    fn rbac_names_are_object_names_and_distinct() {
        for aud in [
            "sts.amazonaws.com",
            "api://AzureADTokenExchange",
            "https://x.example/a?b",
            "---",
            "",
        ] {
            let n = rbac_name(aud);
            assert!(n.len() <= 253, "{n}");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n}"
            );
            assert!(
                !n.ends_with('-') && n.starts_with("pullcred-audience-"),
                "{n}"
            );
        }
        assert_ne!(rbac_name("A.example"), rbac_name("a.example"));
        assert_eq!(rbac_name("a"), rbac_name("a"));
        assert_eq!(rbac_yaml("", &[], "x"), Err(RbacError::EmptyAudience));
        let y = rbac_yaml("aud", &[], "x").unwrap();
        assert!(y.contains("verbs: [\"request-serviceaccounts-token-audience\"]"));
        assert!(y.contains("resources: [\"aud\"]") && y.contains("apiGroups: [\"\"]"));
        assert!(!y.contains("resourceNames"));
    }

    #[test]
    fn service_account_arguments() {
        assert_eq!(
            parse_service_account("team-a/builder"),
            Ok(("team-a".into(), "builder".into()))
        );
        for bad in ["builder", "a/b/c", "A/b", "a.b/c", "a/-b", "/b", "a/"] {
            assert!(parse_service_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keyless_entries_validate_and_have_skeletons() {
        for k in Keyless::ALL {
            let mut o = GenerateOptions::new(vec![]);
            o.keyless = Some(k);
            o.registries = vec!["registry.example.com".into()];
            o.token = Some(TokenOptions {
                audience: "aud".into(),
                ..TokenOptions::default()
            });
            let c = build(&o).unwrap();
            let (_, findings) = validate_text(
                &render_yaml(&c, &o.command_line()),
                &ValidateOptions::default(),
            );
            assert!(findings.is_empty(), "{k}: {findings:#?}");
            let p = &c.providers[0];
            assert_eq!(p.args, ["--config", PULLCRED_CONFIG_PATH]);
            let t = p.token_attributes.as_ref().unwrap();
            assert_eq!(
                (t.cache_type.as_str(), t.require_service_account),
                ("ServiceAccount", Some(true))
            );
            let skeleton = pullcred_config_skeleton(&o).unwrap();
            let parsed = crate::pullcred::parse(&skeleton).unwrap();
            assert!(crate::pullcred::check(&parsed).is_empty(), "{k}");
        }
        assert!(pullcred_config_skeleton(&GenerateOptions::new(vec![Cloud::Aws])).is_none());
        // --config given by the operator is not doubled
        let mut o = GenerateOptions::new(vec![]);
        o.keyless = Some(Keyless::Vault);
        o.registries = vec!["r.example.com".into()];
        o.args = vec!["--config=/etc/other.yaml".into()];
        o.token = Some(TokenOptions {
            audience: "a".into(),
            ..TokenOptions::default()
        });
        assert_eq!(
            build(&o).unwrap().providers[0].args,
            ["--config=/etc/other.yaml"]
        );
    }
}
