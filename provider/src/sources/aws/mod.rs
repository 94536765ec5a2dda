//! Everything the AWS SDK serves: Amazon ECR private and ECR Public tokens,
//! and registry credentials kept in AWS Secrets Manager (`--aws-secret`).
//!
//! This module owns the ECR host grammar (partitions, FIPS and dual-stack
//! hosts), the per-pod role rules (KEP-4412: `eks.amazonaws.com/ecr-role-arn`,
//! optionally IRSA's `eks.amazonaws.com/role-arn`, else `--ecr-role-arn`), the
//! cache-key parts (one ECR token serves every registry of a region) and what
//! `doctor` says. A token with the `pods.eks.amazonaws.com` audience goes to
//! EKS Pod Identity first, or after a role annotation with `eksPodIdentity.prefer:
//! annotations` ([`pod_identity`] has the whole order). The SDK calls are in
//! [`sdk`]; a build without the `aws` feature gets `disabled.rs` in its place.

pub mod pod_identity;
#[cfg_attr(not(feature = "aws"), path = "disabled.rs")]
pub mod sdk;

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Credential, FetchContext, Fetched, Route, Source, SourceError, token_key};
use crate::image::ImageRef;
use crate::protocol::{AuthConfig, CacheKeyType};
use crate::secret::Secret;
use crate::settings::{Options, WorkloadSettings};
use crate::workload::{
    Identity, IdentityKind, PodRules, ServiceAccount, Workload, annotation, first_set,
};

pub use kubelet_config::sources::{AWS_ROLE_ANNOTATION, IRSA_ROLE_ANNOTATION};
pub const AWS_ROLE_ENV: &str = "AWS_ECR_ROLE_ARN";

/// STS's limit on `RoleSessionName`.
const MAX_SESSION_NAME: usize = 64;

/// Amazon ECR private registries, `<account>.dkr.ecr.<region>.<suffix>` and
/// the FIPS and dual-stack forms.
pub struct Ecr;

impl Source for Ecr {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        if image.port().is_some() {
            return None;
        }
        parse_ecr_host(image.host())
            .map(|r| Box::new(EcrRoute(r, AwsRules::new(opts))) as Box<dyn Route>)
    }
}

/// Amazon ECR Public, `public.ecr.aws` and `ecr-public.aws.com`.
pub struct EcrPublic;

impl Source for EcrPublic {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        (image.port().is_none() && ECR_PUBLIC_HOSTS.contains(&image.host()))
            .then(|| Box::new(EcrPublicRoute(AwsRules::new(opts))) as Box<dyn Route>)
    }
}

/// `--aws-secret KEY=SECRET_ID`: a registry credential kept in Secrets Manager.
pub struct SecretsManager;

impl Source for SecretsManager {
    fn route(&self, image: &ImageRef, opts: &Options) -> Option<Box<dyn Route>> {
        let name = image.name();
        opts.aws_secrets.iter().find_map(|(key, secret_id)| {
            let k = super::dockerconfig::normalize_key(key)?;
            kubelet_config::matching::auth_key_matches(&k, &name).then(|| {
                Box::new(SecretRoute {
                    key: k,
                    secret_id: secret_id.clone(),
                }) as Box<dyn Route>
            })
        })
    }

    fn path_scoped(&self, image: &ImageRef, opts: &Options) -> bool {
        opts.aws_secrets.iter().any(|(k, _)| {
            super::dockerconfig::normalize_key(k)
                .is_some_and(|k| super::dockerconfig::path_key_for_host(&k, image))
        })
    }
}

#[derive(Debug)]
struct EcrRoute(EcrRegistry, AwsRules);

impl Route for EcrRoute {
    fn id(&self) -> &'static str {
        "ecr"
    }

    fn describe(&self, _: &ImageRef) -> String {
        let r = &self.0;
        let mut s = format!(
            "Amazon ECR private, account {}, region {} (partition {})",
            r.account,
            r.region,
            r.partition.id()
        );
        if r.fips {
            s.push_str(", FIPS");
        }
        if r.dual_stack {
            s.push_str(", dual-stack");
        }
        s
    }

    fn node_identity(&self, _: &Options) -> String {
        identity_summary()
    }

    /// An ECR authorization token is good for every registry the identity
    /// may read in its region (`registryIds` is deprecated and does not
    /// scope it): keyed by partition, region, endpoint variant and identity,
    /// not by account. A pod author naming a hundred made-up accounts of one
    /// region then costs one upstream call, not a hundred.
    fn cache_parts(
        &self,
        _: &ImageRef,
        _: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let r = &self.0;
        token_key(
            "ecr",
            vec![("partition", r.partition.id().to_string())],
            workload,
            vec![
                ("region", r.region.clone()),
                ("fips", r.fips.to_string()),
                ("dual-stack", r.dual_stack.to_string()),
            ],
        )
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        Some(&self.1)
    }

    fn shares_token_across_hosts(&self) -> bool {
        true
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        sdk::fetch(Some(&self.0), ctx.workload, ctx.deadline).map(Credential::Token)
    }

    fn forbidden_hint(&self) -> Option<&'static str> {
        Some(
            "grant ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on the repository to the node's role (IAM policy and repository policy)",
        )
    }
}

#[derive(Debug)]
struct EcrPublicRoute(AwsRules);

impl Route for EcrPublicRoute {
    fn id(&self) -> &'static str {
        "ecr-public"
    }

    fn describe(&self, _: &ImageRef) -> String {
        "Amazon ECR Public (ecr-public API in us-east-1)".to_string()
    }

    fn node_identity(&self, _: &Options) -> String {
        identity_summary()
    }

    fn cache_parts(
        &self,
        image: &ImageRef,
        _: &Options,
        workload: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        token_key(
            "ecr-public",
            vec![("registry", image.registry.clone())],
            workload,
            Vec::new(),
        )
    }

    fn pod_rules(&self) -> Option<&dyn PodRules> {
        Some(&self.0)
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        sdk::fetch(None, ctx.workload, ctx.deadline).map(Credential::Token)
    }
}

#[derive(Debug)]
struct SecretRoute {
    key: String,
    secret_id: String,
}

impl Route for SecretRoute {
    fn id(&self) -> &'static str {
        "aws-secret"
    }

    fn describe(&self, _: &ImageRef) -> String {
        format!(
            "static credentials from AWS Secrets Manager secret {} (key {})",
            self.secret_id, self.key
        )
    }

    fn node_identity(&self, _: &Options) -> String {
        identity_summary()
    }

    fn cache_parts(
        &self,
        _: &ImageRef,
        _: &Options,
        _: Option<&Workload>,
    ) -> Vec<(&'static str, String)> {
        let mut parts = vec![
            ("source", "aws-secret".to_string()),
            ("key", self.key.clone()),
            ("secret", self.secret_id.clone()),
        ];
        parts.extend(super::aws_identity_parts());
        parts
    }

    fn fetch(&self, ctx: &FetchContext) -> Result<Credential, SourceError> {
        let (username, password) = sdk::fetch_secret(&self.secret_id, ctx.deadline)?;
        let creds = AuthConfig { username, password };
        super::registry_check::verify(
            &self.key,
            &creds,
            &format!("secret {}", self.secret_id),
            ctx.opts,
            ctx.deadline,
        )?;
        let key_type = if self.key.contains('/') {
            CacheKeyType::Image
        } else {
            CacheKeyType::Registry
        };
        Ok(Credential::Static {
            auth: [(self.key.clone(), creds)].into(),
            key_type,
        })
    }
}

/// The role a pod's service account asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsRole {
    pub role_arn: String,
    pub session_name: String,
    /// Where the role came from (an annotation, a flag), for messages.
    pub from: String,
}

impl Identity for AwsRole {
    fn describe(&self) -> String {
        format!("role {} (from {})", self.role_arn, self.from)
    }

    fn cache_parts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sa-aws-role", self.role_arn.clone()),
            ("sa-aws-session", self.session_name.clone()),
        ]
    }

    fn policy_value(&self) -> Option<(IdentityKind, String)> {
        Some((IdentityKind::IamRole, self.role_arn.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// ECR's per-pod rules: a role, assumed with the pod's token, or for a
/// token with the Pod Identity audience, the EKS Pod Identity association
/// ([`pod_identity`]).
#[derive(Debug)]
struct AwsRules {
    /// The config file's `eksPodIdentity`, if any.
    eks: Option<pod_identity::EksPodIdentity>,
}

impl AwsRules {
    fn new(opts: &Options) -> AwsRules {
        AwsRules {
            eks: opts.config.eks_pod_identity.clone(),
        }
    }

    /// A Pod Identity token's identity: the association, or the role an
    /// annotation names when the config prefers annotations.
    fn pod_identity(
        &self,
        account: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Arc<dyn Identity>, String> {
        let role = role(account, annotations, settings)?;
        let prefer = self.eks.as_ref().and_then(|e| e.prefer).unwrap_or_default();
        if prefer == pod_identity::Prefer::Annotations
            && self.naming_annotation(annotations, settings).is_some()
            && let Some(role) = role
        {
            return Ok(Arc::new(role));
        }
        let env = std::env::var(pod_identity::CLUSTER_ENV).ok();
        let at = pod_identity::locate(self.eks.as_ref(), env.as_deref(), |path| {
            crate::private_file::open_regular(
                path,
                crate::private_file::Limits::shared(pod_identity::NODEADM_MAX_BYTES),
            )
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| format!("{}: is not UTF-8", path.display()))
            })
        })?;
        Ok(Arc::new(pod_identity::PodIdentity {
            cluster: at.cluster,
            cluster_from: at.cluster_from,
            region: at.region,
            endpoint: std::env::var(pod_identity::ENDPOINT_ENV)
                .ok()
                .filter(|v| !v.is_empty()),
            fallback: role,
            fallback_to_node: settings.fallback_to_node,
        }))
    }
}

impl PodRules for AwsRules {
    fn naming_annotation(
        &self,
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Option<&'static str> {
        let keys: &[&'static str] = if settings.aws_accept_irsa {
            &[AWS_ROLE_ANNOTATION, IRSA_ROLE_ANNOTATION]
        } else {
            &[AWS_ROLE_ANNOTATION]
        };
        first_set(annotations, keys)
    }

    fn identity(
        &self,
        account: &ServiceAccount,
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        Ok(role(account, annotations, settings)?.map(|r| Arc::new(r) as Arc<dyn Identity>))
    }

    fn identity_for_audiences(
        &self,
        account: &ServiceAccount,
        audiences: &[String],
        annotations: &BTreeMap<String, String>,
        settings: &WorkloadSettings,
    ) -> Result<Option<Arc<dyn Identity>>, String> {
        if pod_identity::is_pod_identity_token(audiences) {
            return self.pod_identity(account, annotations, settings).map(Some);
        }
        self.identity(account, annotations, settings)
    }

    fn missing_hint(&self, settings: &WorkloadSettings) -> String {
        let irsa = if settings.aws_accept_irsa {
            format!(" or {IRSA_ROLE_ANNOTATION}")
        } else {
            String::new()
        };
        format!(
            "annotate it with {AWS_ROLE_ANNOTATION}{irsa}, or set a default role with --ecr-role-arn / {AWS_ROLE_ENV}"
        )
    }
}

fn role(
    account: &ServiceAccount,
    annotations: &BTreeMap<String, String>,
    settings: &WorkloadSettings,
) -> Result<Option<AwsRole>, String> {
    let mut found = annotation(annotations, AWS_ROLE_ANNOTATION)
        .map(|r| (r.to_string(), format!("annotation {AWS_ROLE_ANNOTATION}")));
    if found.is_none() && settings.aws_accept_irsa {
        found = annotation(annotations, IRSA_ROLE_ANNOTATION)
            .map(|r| (r.to_string(), format!("annotation {IRSA_ROLE_ANNOTATION}")));
    }
    if found.is_none() {
        found = settings
            .aws_default_role
            .as_ref()
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                (
                    r.trim().to_string(),
                    format!("--ecr-role-arn / {AWS_ROLE_ENV}"),
                )
            });
    }
    let Some((role_arn, from)) = found else {
        return Ok(None);
    };
    check_role_arn(&role_arn).map_err(|why| format!("{account}: {from}: {why}"))?;
    Ok(Some(AwsRole {
        session_name: session_name(&account.namespace, &account.name),
        role_arn,
        from,
    }))
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`.
pub fn check_role_arn(arn: &str) -> Result<(), String> {
    let shown: String = arn.chars().take(120).collect();
    let bad = || format!("{shown:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)");
    let mut p = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(acct), Some(res)) =
        (p.next(), p.next(), p.next(), p.next(), p.next(), p.next())
    else {
        return Err(bad());
    };
    let name = res.strip_prefix("role/").ok_or_else(bad)?;
    if !partition.starts_with("aws")
        || acct.len() != 12
        || !acct.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || name.len() > 512
        || arn.chars().any(char::is_whitespace)
    {
        return Err(bad());
    }
    Ok(())
}

/// `RoleSessionName` for a service account: `<namespace>.<name>` (a namespace
/// has no dots, so the first dot separates them), characters STS refuses
/// replaced with `-`, and over 64 characters cut to 55 plus `-` and 8 hex
/// digits of a hash of the whole, so distinct accounts stay distinct.
pub fn session_name(namespace: &str, name: &str) -> String {
    let full: String = format!("{namespace}.{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if full.len() <= MAX_SESSION_NAME {
        return full;
    }
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{tag}", &full[..MAX_SESSION_NAME - 9])
}

/// Which link of the AWS chain would answer, from the environment alone.
/// Access key ids are shown with their middle masked.
fn identity_summary() -> String {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(id) = var("AWS_ACCESS_KEY_ID") {
        let shown = if id.len() > 8 {
            format!("{}...{}", &id[..4], &id[id.len() - 4..])
        } else {
            "****".into()
        };
        return format!("AWS credentials from the environment (access key {shown})");
    }
    if let (Some(role), Some(file)) = (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        return format!("AWS web identity (IRSA): role {role}, token file {file}");
    }
    if let Some(p) = var("AWS_PROFILE") {
        return format!("AWS profile {p}");
    }
    if var("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
        || var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
    {
        return "AWS container credentials (EKS Pod Identity / ECS)".into();
    }
    "the AWS default chain: shared config files, then the instance profile via IMDSv2".into()
}

/// ECR's `authorizationToken` is base64 of `AWS:<password>`; `expires_at` is
/// unix seconds. Pure, so the fuzzer reaches it without the SDK.
pub fn decode_ecr_token(token: Option<&str>, expires_at: Option<i64>) -> Result<Fetched, String> {
    use base64::Engine;
    let token = token.ok_or("authorizationData has no authorizationToken")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "authorizationToken is not base64".to_string())?;
    let text = String::from_utf8(raw).map_err(|_| "authorizationToken is not UTF-8".to_string())?;
    let (user, pass) = text
        .split_once(':')
        .ok_or("authorizationToken is not user:password")?;
    if user.is_empty() || pass.is_empty() {
        return Err("authorizationToken has an empty user or password".into());
    }
    let expires_at = expires_at.ok_or("authorizationData has no expiresAt")?;
    Ok(Fetched {
        username: user.to_string(),
        password: Secret::new(pass),
        expires_at,
    })
}

// ---------------------------------------------------------------- hosts

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsUsGov,
    AwsCn,
    AwsEusc,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
}

impl Partition {
    pub fn id(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsCn => "aws-cn",
            Partition::AwsEusc => "aws-eusc",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
        }
    }

    fn of_region(region: &str) -> Partition {
        const PREFIXES: [(&str, Partition); 7] = [
            ("us-gov-", Partition::AwsUsGov),
            ("cn-", Partition::AwsCn),
            ("eusc-", Partition::AwsEusc),
            ("us-iso-", Partition::AwsIso),
            ("us-isob-", Partition::AwsIsoB),
            ("eu-isoe-", Partition::AwsIsoE),
            ("us-isof-", Partition::AwsIsoF),
        ];
        PREFIXES
            .iter()
            .find(|(p, _)| region.starts_with(p))
            .map_or(Partition::Aws, |(_, part)| *part)
    }
}

/// A private ECR registry: `<account>.dkr.ecr[-fips].<region>.<suffix>` or the
/// dual-stack `<account>.dkr-ecr[-fips].<region>.on.aws` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    pub account: String,
    pub region: String,
    pub partition: Partition,
    pub fips: bool,
    pub dual_stack: bool,
}

/// DNS suffixes of ECR registry hosts, the host style they use, and the
/// partitions whose regions may appear under them.
const ECR_SUFFIXES: [(&str, bool, &[Partition]); 9] = [
    (
        "amazonaws.com",
        false,
        &[Partition::Aws, Partition::AwsUsGov],
    ),
    ("amazonaws.com.cn", false, &[Partition::AwsCn]),
    ("amazonaws.eu", false, &[Partition::AwsEusc]),
    ("c2s.ic.gov", false, &[Partition::AwsIso]),
    ("sc2s.sgov.gov", false, &[Partition::AwsIsoB]),
    ("cloud.adc-e.uk", false, &[Partition::AwsIsoE]),
    ("csp.hci.ic.gov", false, &[Partition::AwsIsoF]),
    // dual-stack
    ("on.aws", true, &[Partition::Aws, Partition::AwsUsGov]),
    ("on.amazonwebservices.com.cn", true, &[Partition::AwsCn]),
];

pub const ECR_PUBLIC_HOSTS: [&str; 2] = ["public.ecr.aws", "ecr-public.aws.com"];

/// Matching is anchored on the whole host, so look-alikes
/// (`<ecr-host>.evil.io`, `evil.io/<ecr-host>/x`) get nothing. Hosts are
/// matched exactly as the kubelet sends them: lowercase, no trailing dot.
pub fn parse_ecr_host(host: &str) -> Option<EcrRegistry> {
    let (account, rest) = host.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (service, rest) = rest.split_once('.')?;
    let (dual_stack_style, fips) = match service {
        "dkr" => {
            // dotted style: dkr.ecr[-fips]
            let (svc, r) = rest.split_once('.')?;
            let fips = match svc {
                "ecr" => false,
                "ecr-fips" => true,
                _ => return None,
            };
            return finish(account, r, false, fips);
        }
        "dkr-ecr" => (true, false),
        "dkr-ecr-fips" => (true, true),
        _ => return None,
    };
    finish(account, rest, dual_stack_style, fips)
}

fn finish(account: &str, rest: &str, dual_stack: bool, fips: bool) -> Option<EcrRegistry> {
    let (region, suffix) = rest.split_once('.')?;
    if !valid_region(region) {
        return None;
    }
    let partition = Partition::of_region(region);
    let (_, _, allowed) = ECR_SUFFIXES
        .iter()
        .find(|(s, ds, _)| *s == suffix && *ds == dual_stack)?;
    if !allowed.contains(&partition) {
        return None;
    }
    Some(EcrRegistry {
        account: account.to_string(),
        region: region.to_string(),
        partition,
        fips,
        dual_stack,
    })
}

/// `us-west-2`, `us-gov-east-1`, `eu-isoe-west-1`, `eusc-de-east-1`: the
/// config file's region shape (lowercase words joined by `-`, ending in a
/// number), with a first word of 2 to 4 letters as every partition's
/// region names have.
fn valid_region(region: &str) -> bool {
    kubelet_config::pullcred::eks::valid_region(region)
        && region
            .split('-')
            .next()
            .is_some_and(|w| (2..=4).contains(&w.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors restated from cloud-provider-aws cmd/ecr-credential-provider
    // (main_test.go), via the project's tests/vectors/registry-hosts.json.
    const VECTORS: &str = include_str!("../../../../tests/vectors/registry-hosts.json");

    /// Which source the host-named sources route `image` to.
    fn route_id(image: &str) -> Option<&'static str> {
        let image = ImageRef::parse(image).ok()?;
        crate::sources::route_by_host(&image, &Options::default()).map(|r| r.id())
    }

    #[test]
    fn region_comes_from_the_host_in_every_vector() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for pair in v["ecr_region"].as_array().unwrap() {
            let host = pair[0].as_str().unwrap();
            let region = pair[1].as_str().unwrap();
            let r = parse_ecr_host(host).unwrap_or_else(|| panic!("{host} should be ECR"));
            assert_eq!(r.region, region, "{host}");
            assert_eq!(r.account, "123456789123");
        }
    }
    #[test]
    fn every_partition_and_host_style() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-west-2.amazonaws.com",
                Partition::Aws,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Partition::Aws,
                true,
                false,
            ),
            (
                "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
                Partition::AwsUsGov,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                Partition::AwsUsGov,
                true,
                false,
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Partition::AwsCn,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                Partition::AwsEusc,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
                Partition::AwsIso,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                Partition::AwsIsoB,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                Partition::AwsIsoE,
                false,
                false,
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                Partition::AwsIsoF,
                false,
                false,
            ),
            (
                "123456789012.dkr-ecr.us-west-2.on.aws",
                Partition::Aws,
                false,
                true,
            ),
            (
                "123456789012.dkr-ecr-fips.us-west-2.on.aws",
                Partition::Aws,
                true,
                true,
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                Partition::AwsCn,
                false,
                true,
            ),
        ];
        for (host, part, fips, ds) in cases {
            let r = parse_ecr_host(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(
                (r.partition, r.fips, r.dual_stack),
                (part, fips, ds),
                "{host}"
            );
        }
    }
    #[test]
    fn ecr_public_hosts() {
        for h in ["public.ecr.aws/nginx/nginx", "ecr-public.aws.com/foo/bar"] {
            assert_eq!(route_id(h), Some("ecr-public"));
        }
        // A private host with public.ecr.aws in its path is private (pull-through cache prefix).
        assert_eq!(
            route_id("123456789012.dkr.ecr.us-east-1.amazonaws.com/public.ecr.aws/nginx/nginx"),
            Some("ecr")
        );
        assert_eq!(route_id("public.ecr.aws:443/x"), None);
        assert_eq!(route_id("foo.public.ecr.aws/x"), None);
    }
    #[test]
    fn pull_through_cache_prefixes_use_the_same_host() {
        let image = ImageRef::parse(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx",
        )
        .unwrap();
        let r = parse_ecr_host(image.host()).unwrap();
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(route_id(&image.name()), Some("ecr"));
    }
    #[test]
    fn look_alikes_get_nothing() {
        for host in [
            "123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.io",
            "1234567890123.dkr.ecr.us-west-2.amazonaws.com", // 13-digit account
            "12345678901.dkr.ecr.us-west-2.amazonaws.com",   // 11-digit account
            "12345678901a.dkr.ecr.us-west-2.amazonaws.com",
            "123456789012.dkr.ecr.lala-land-1!.amazonaws.com",
            "123456789012.dkr.ecr.#lala-land-1.amazonaws.com",
            "123456789012.dkr.ecr.us-west-2.amazonaws.hacker.com",
            "123456789012.dkr.ecr.us-west-2.hacker.com",
            "123456789012.dkr.ecr.us-west-2.amazonaws.lol",
            "123456789012.dkr.ecr.us-west-2.amazonaws.gov",
            "123456789012.dog.ecr.us-west-2.amazonaws.com",
            "123456789012.dkr.cat.us-west-2.amazonaws.com",
            "123456789012.lala-land-1.amazonaws.com",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com.",
            "123456789012.DKR.ECR.us-west-2.amazonaws.com",
            "123456789012.dkr.ecr.US-WEST-2.amazonaws.com",
            "123456789012.dkr-ecr.us-west-2.amazonaws.com", // dual-stack style on the IPv4 suffix
            "123456789012.dkr.ecr.us-west-2.on.aws",        // dotted style on the dual-stack suffix
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com", // partition mismatch
            "123456789012.dkr.ecr.us-west-2.amazonaws.com.cn",
            "123456789012.dkr.ecr.us-west-2.c2s.ic.gov",
            "123456789012.dkr-ecr.us-west-2.api.aws",
            "dkr.ecr.us-west-2.amazonaws.com",
        ] {
            assert_eq!(parse_ecr_host(host), None, "{host} must not be ECR");
        }
        assert_eq!(
            route_id("evil.io/123456789012.dkr.ecr.us-west-2.amazonaws.com/x"),
            None
        );
        assert_eq!(
            route_id("123456789012.dkr.ecr.us-west-2.amazonaws.com:443/x"),
            None
        );
        assert_eq!(route_id("docker.io/library/nginx"), None);
    }
    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("default", "builder"), "default.builder");
        let long = session_name("a-very-long-namespace-name-indeed", &"x.".repeat(60));
        assert_eq!(long.len(), 64);
        assert_ne!(
            long,
            session_name("a-very-long-namespace-name-indeed", &"x.".repeat(61))
        );
        for n in [long, session_name("ns", "weird:name")] {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
                "{n}"
            );
        }
    }
    #[test]
    fn role_arns() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/pull").is_ok());
        assert!(check_role_arn("arn:aws-cn:iam::123456789012:role/path/pull").is_ok());
        assert!(check_role_arn("arn:aws:iam::123456789012:user/pull").is_err());
        assert!(check_role_arn("arn:aws:sts::123456789012:role/pull").is_err());
        assert!(check_role_arn("pull").is_err());
    }
}
