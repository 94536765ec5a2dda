//! Which source serves a registry host. Matching is anchored on the whole host,
//! so look-alikes (`<ecr-host>.evil.io`, `evil.io/<ecr-host>/x`) get nothing.
//!
//! Hosts are matched exactly as the kubelet sends them: lowercase, no trailing
//! dot. The kubelet's own `matchImages` globs are case-sensitive, so an
//! uppercase or fully-qualified form would never reach us from a real kubelet;
//! we refuse rather than guess.

use crate::image::ImageRef;

/// What the resolved image asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    EcrPrivate(EcrRegistry),
    EcrPublic,
    Acr(AcrRegistry),
    /// Google Artifact Registry or Container Registry.
    Google(GoogleRegistry),
}

impl Target {
    /// Short name of the source, for errors and cache keys.
    pub fn source(&self) -> &'static str {
        match self {
            Target::EcrPrivate(_) => "ecr",
            Target::EcrPublic => "ecr-public",
            Target::Acr(_) => "acr",
            Target::Google(_) => "google",
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSource {
    pub registry: String,
}

impl std::fmt::Display for NoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no pullcred source serves registry {:?} (supported: Amazon ECR private and ECR Public hosts; Google gcr.io, *.gcr.io, <location>-docker.pkg.dev, docker.<region>.rep.pkg.dev, container.cloud.google.com; Azure Container Registry hosts and --mirror sources; --docker-config and --aws-secret keys); check the kubelet config's matchImages",
            self.registry
        )
    }
}

impl std::error::Error for NoSource {}

pub fn route(image: &ImageRef) -> Result<Target, NoSource> {
    route_with_mirrors(image, &[])
}

/// [`route`], with operator-given mirrors served by an ACR. A mirror is
/// matched on the whole registry (host and port) and wins over the host forms.
pub fn route_with_mirrors(image: &ImageRef, mirrors: &[AcrMirror]) -> Result<Target, NoSource> {
    let no = || NoSource {
        registry: image.registry.clone(),
    };
    if let Some(m) = mirrors.iter().find(|m| m.source == image.registry) {
        return Ok(Target::Acr(AcrRegistry {
            login_server: m.acr.clone(),
            mirror_of: Some(m.source.clone()),
        }));
    }
    if parse_acr_host(image.host()).is_some() {
        // ACR hosts keep their port: it is part of the login server.
        return Ok(Target::Acr(AcrRegistry {
            login_server: image.registry.clone(),
            mirror_of: None,
        }));
    }
    if image.port().is_some() {
        return Err(no());
    }
    let host = image.host();
    if ECR_PUBLIC_HOSTS.contains(&host) {
        return Ok(Target::EcrPublic);
    }
    if let Some(g) = parse_google_host(host) {
        return Ok(Target::Google(g));
    }
    parse_ecr_host(host).map(Target::EcrPrivate).ok_or_else(no)
}

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

/// A Google registry host. All of them take the same credential, an OAuth 2.0
/// access token for the node's Google identity; the kind is for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoogleRegistry {
    /// `gcr.io` and `<label>.gcr.io` (`us.gcr.io`, `eu.gcr.io`, `mirror.gcr.io`...).
    ContainerRegistry,
    /// `<location>-docker.pkg.dev`. Other `*.pkg.dev` formats (`-maven`,
    /// `-npm`, `-python`...) are not image registries and are refused.
    ArtifactRegistry,
    /// The regional endpoints `docker.<region>.rep.pkg.dev`.
    ArtifactRegistryRegional,
    /// `container.cloud.google.com` (GKE images, Marketplace).
    Marketplace,
}

/// Anchored on the whole host: `gcr.io.evil.com`, `xpkg.dev`,
/// `us-docker.pkg.dev.evil.io` and `evil.com/gcr.io/x` get nothing. A `*`
/// label is one DNS label, as in the kubelet's `matchImages` globs.
pub fn parse_google_host(host: &str) -> Option<GoogleRegistry> {
    if host == "gcr.io" {
        return Some(GoogleRegistry::ContainerRegistry);
    }
    if host == "container.cloud.google.com" {
        return Some(GoogleRegistry::Marketplace);
    }
    if let Some(label) = host.strip_suffix(".gcr.io") {
        return dns_label(label).then_some(GoogleRegistry::ContainerRegistry);
    }
    if let Some(rest) = host.strip_suffix(".rep.pkg.dev") {
        let region = rest.strip_prefix("docker.")?;
        return google_location(region).then_some(GoogleRegistry::ArtifactRegistryRegional);
    }
    let location = host.strip_suffix("-docker.pkg.dev")?;
    google_location(location).then_some(GoogleRegistry::ArtifactRegistry)
}

/// One lowercase DNS label: letters, digits, inner hyphens, at most 63 bytes.
fn dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A Google location (`us`, `europe`, `us-central1`, `northamerica-northeast2`):
/// a DNS label that starts with a letter and has no dots.
fn google_location(l: &str) -> bool {
    dns_label(l) && l.as_bytes()[0].is_ascii_lowercase()
}

/// `us-west-2`, `us-gov-east-1`, `eu-isoe-west-1`, `eusc-de-east-1`: letters
/// in dash-separated groups, then a number.
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((num, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && (2..=4).contains(&words[0].len())
        && words
            .iter()
            .all(|w| !w.is_empty() && w.len() <= 12 && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !num.is_empty()
        && num.len() <= 2
        && num.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Azure Container Registry

/// An Azure Container Registry the image is pulled from, or that serves a
/// mirrored registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrRegistry {
    /// The registry we authenticate against, `host[:port]`, e.g. `myreg.azurecr.io`.
    pub login_server: String,
    /// The image's own registry when it is a `--mirror` source served by this ACR.
    pub mirror_of: Option<String>,
}

/// `--mirror SOURCE=ACR`: images from `source` (`host[:port]`) get the
/// credentials of the ACR `acr` (`host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrMirror {
    pub source: String,
    pub acr: String,
}

/// ACR's DNS suffixes: public, China, US Government. Not `azurecr.de`:
/// Microsoft Cloud Germany was closed on 2021-10-29, and an Entra token must
/// not go to a suffix no live Azure cloud serves.
pub const ACR_SUFFIXES: [&str; 3] = ["azurecr.io", "azurecr.cn", "azurecr.us"];

/// The parts of an ACR host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrHost<'a> {
    /// The registry name, e.g. `myreg` of `myreg-abc123.azurecr.io`.
    pub name: &'a str,
    /// The domain-name-label hash of a hyphenated data-endpoint name.
    pub hash: Option<&'a str>,
    /// The region of a geo-replica host, `<reg>.<region>.geo.azurecr.io`.
    pub region: Option<&'a str>,
    pub suffix: &'static str,
}

/// Anchored ACR host grammar (lowercase, no port, no trailing dot):
///
/// - `<reg>.<suffix>` for each of [`ACR_SUFFIXES`];
/// - `<reg>.<region>.geo.azurecr.io` (geo-replica);
/// - `<reg>` may be `<name>-<hash>` (domain-name-label scope).
///
/// `<name>` is 1 to 50 letters and digits (Azure allows 5 to 50; the anchor's
/// vectors use `foo`), `<hash>` 1 to 32, `<region>` 1 to 40.
pub fn parse_acr_host(host: &str) -> Option<AcrHost<'_>> {
    let (label, rest) = host.split_once('.')?;
    let (name, hash) = match label.split_once('-') {
        Some((n, h)) => (n, Some(h)),
        None => (label, None),
    };
    if !alnum(name, 50) || !hash.is_none_or(|h| alnum(h, 32)) {
        return None;
    }
    if let Some(suffix) = ACR_SUFFIXES.iter().find(|s| **s == rest) {
        return Some(AcrHost {
            name,
            hash,
            region: None,
            suffix,
        });
    }
    let (region, geo) = rest.split_once('.')?;
    if geo != "geo.azurecr.io" || !alnum(region, 40) {
        return None;
    }
    Some(AcrHost {
        name,
        hash,
        region: Some(region),
        suffix: ACR_SUFFIXES[0],
    })
}

fn alnum(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Parses one `SOURCE=ACR` mirror mapping. Both sides are registries as
/// images name them (`host[:port]`); the right side must be an ACR host.
pub fn parse_acr_mirror(s: &str) -> Result<AcrMirror, String> {
    let (source, acr) = s.split_once('=').ok_or_else(|| {
        format!("mirror {s:?} is not SOURCE=ACR (e.g. mcr.microsoft.com=myreg.azurecr.io)")
    })?;
    let (source, acr) = (source.trim(), acr.trim());
    let as_registry = |r: &str| {
        ImageRef::parse(&format!("{r}/x"))
            .ok()
            .filter(|i| i.registry == r)
    };
    if as_registry(source).is_none() {
        return Err(format!(
            "mirror source {source:?} is not a registry host[:port]"
        ));
    }
    match as_registry(acr) {
        Some(i) if parse_acr_host(i.host()).is_some() => Ok(AcrMirror {
            source: source.to_string(),
            acr: acr.to_string(),
        }),
        _ => Err(format!(
            "mirror target {acr:?} is not an Azure Container Registry host (<reg>.azurecr.io and the like)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors restated from cloud-provider-aws cmd/ecr-credential-provider
    // (main_test.go), via the project's tests/vectors/registry-hosts.json.
    const VECTORS: &str = include_str!("../../tests/vectors/registry-hosts.json");

    fn target(image: &str) -> Result<Target, NoSource> {
        route(&ImageRef::parse(image).unwrap())
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
            assert_eq!(target(h), Ok(Target::EcrPublic));
        }
        // A private host with public.ecr.aws in its path is private (pull-through cache prefix).
        assert!(matches!(
            target("123456789012.dkr.ecr.us-east-1.amazonaws.com/public.ecr.aws/nginx/nginx"),
            Ok(Target::EcrPrivate(_))
        ));
        assert!(target("public.ecr.aws:443/x").is_err());
        assert!(target("foo.public.ecr.aws/x").is_err());
    }

    #[test]
    fn pull_through_cache_prefixes_use_the_same_host() {
        let r = target("123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx")
            .unwrap();
        assert!(
            matches!(r, Target::EcrPrivate(EcrRegistry { ref region, .. }) if region == "eu-west-1")
        );
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
        assert!(target("evil.io/123456789012.dkr.ecr.us-west-2.amazonaws.com/x").is_err());
        assert!(target("123456789012.dkr.ecr.us-west-2.amazonaws.com:443/x").is_err());
        assert!(target("docker.io/library/nginx").is_err());
    }

    #[test]
    fn google_hosts() {
        use GoogleRegistry::*;
        for (host, kind) in [
            ("gcr.io", ContainerRegistry),
            ("us.gcr.io", ContainerRegistry),
            ("eu.gcr.io", ContainerRegistry),
            ("asia.gcr.io", ContainerRegistry),
            ("mirror.gcr.io", ContainerRegistry),
            ("k8s.gcr.io", ContainerRegistry),
            ("us-docker.pkg.dev", ArtifactRegistry),
            ("us-central1-docker.pkg.dev", ArtifactRegistry),
            ("northamerica-northeast2-docker.pkg.dev", ArtifactRegistry),
            ("docker.us-central1.rep.pkg.dev", ArtifactRegistryRegional),
            ("docker.europe-west4.rep.pkg.dev", ArtifactRegistryRegional),
            ("container.cloud.google.com", Marketplace),
        ] {
            assert_eq!(parse_google_host(host), Some(kind), "{host}");
            let t = target(&format!("{host}/project/repo/image")).unwrap();
            assert_eq!(t, Target::Google(kind));
            assert_eq!(t.source(), "google");
        }
    }

    #[test]
    fn google_look_alikes_get_nothing() {
        for host in [
            "gcr.io.evil.com",
            "evilgcr.io",
            "a.b.gcr.io", // `*.gcr.io` is one label, as in the kubelet's globs
            ".gcr.io",
            "-x.gcr.io",
            "US.gcr.io",
            "gcr.io.",
            "pkg.dev",
            "xpkg.dev",
            "docker.pkg.dev",
            "-docker.pkg.dev",
            "foo.pkg.dev", // not a Docker repository host
            "us-maven.pkg.dev",
            "us-docker.pkg.dev.evil.io",
            "us.docker.pkg.dev",
            "1us-docker.pkg.dev",
            "docker.us-central1.rep.pkg.dev.evil",
            "docker.rep.pkg.dev",
            "docker..rep.pkg.dev",
            "maven.us-central1.rep.pkg.dev",
            "docker.a.b.rep.pkg.dev",
            "us-central1.rep.pkg.dev",
            "container.cloud.google.com.evil.io",
            "evil.container.cloud.google.com",
            "cloud.google.com",
        ] {
            assert_eq!(parse_google_host(host), None, "{host} must not be Google");
        }
        assert!(target("evil.com/gcr.io/x").is_err());
        assert!(target("evil.com/us-docker.pkg.dev/p/r/i").is_err());
        assert!(target("gcr.io:443/x").is_err());
    }

    #[test]
    fn no_source_error_names_the_registry() {
        let e = target("quay.io/foo/bar").unwrap_err();
        assert!(e.to_string().contains("\"quay.io\""), "{e}");
    }
}

#[cfg(test)]
mod acr_tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/vectors/registry-hosts.json");

    fn target(image: &str) -> Result<Target, NoSource> {
        route(&ImageRef::parse(image).unwrap())
    }

    fn login_server(t: Result<Target, NoSource>) -> Option<String> {
        match t {
            Ok(Target::Acr(r)) => Some(r.login_server),
            _ => None,
        }
    }

    // Vectors restated from kubernetes-sigs/cloud-provider-azure
    // pkg/credentialprovider (azure_credentials_test.go), via
    // tests/vectors/registry-hosts.json.
    #[test]
    fn every_match_vector_routes_to_its_login_server() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for pair in v["acr_match"].as_array().unwrap() {
            let (image, want) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if image.contains('/') {
                assert_eq!(
                    login_server(target(image)).as_deref(),
                    Some(want),
                    "{image}"
                );
            } else {
                // A bare `foo.azurecr.io` is, as an image, a Docker Hub
                // repository; as a host it is ACR.
                assert!(parse_acr_host(image).is_some(), "{image}");
            }
        }
    }

    #[test]
    fn every_not_vector_gets_nothing() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for s in v["acr_not"].as_array().unwrap() {
            let s = s.as_str().unwrap();
            if let Ok(image) = ImageRef::parse(s) {
                assert_eq!(login_server(route(&image)), None, "{s}");
            }
            assert_eq!(parse_acr_host(s), None, "{s}");
        }
    }

    #[test]
    fn geo_replicas_and_data_endpoint_names() {
        let h = parse_acr_host("myreg.westeurope.geo.azurecr.io").unwrap();
        assert_eq!(
            (h.name, h.region, h.hash),
            ("myreg", Some("westeurope"), None)
        );
        let h = parse_acr_host("myreg-e0cdbvd7abcdefgh.azurecr.io").unwrap();
        assert_eq!((h.name, h.hash), ("myreg", Some("e0cdbvd7abcdefgh")));
        let h = parse_acr_host("myreg-abc123.eastus.geo.azurecr.io").unwrap();
        assert_eq!((h.hash, h.region), (Some("abc123"), Some("eastus")));
        assert_eq!(
            parse_acr_host("myreg.azurecr.us").unwrap().suffix,
            "azurecr.us"
        );
        assert_eq!(
            login_server(target("myreg.eastus2.geo.azurecr.io/app/web")).as_deref(),
            Some("myreg.eastus2.geo.azurecr.io")
        );
    }

    #[test]
    fn ports_are_kept_in_the_login_server() {
        assert_eq!(
            login_server(target("myreg.azurecr.io:443/app")).as_deref(),
            Some("myreg.azurecr.io:443")
        );
        assert_eq!(
            login_server(target("myreg.westus.geo.azurecr.io:8443/app")).as_deref(),
            Some("myreg.westus.geo.azurecr.io:8443")
        );
    }

    #[test]
    fn acr_look_alikes_get_nothing() {
        for host in [
            "foo.azurecr.io.example",
            "foo.azurecr.io.azurecr.cn",
            "foo-azurecr-io.azurecr.cn",
            "azurecr.io",
            ".azurecr.io",
            "-abc.azurecr.io",
            "foo-.azurecr.io",
            "foo.bar.azurecr.io",
            "foo.azurecr.com",
            "foo.azurecr.io.",
            "FOO.azurecr.io",
            "foo.AZURECR.IO",
            "foo_bar.azurecr.io",
            "foo.westus.geo.azurecr.cn",
            "foo.west-us.geo.azurecr.io",
            "foo..geo.azurecr.io",
            "foo.a.b.geo.azurecr.io",
            "foo.westus.geo.azurecr.io.evil.io",
            "foo.westus.data.azurecr.io",
            &format!("{}.azurecr.io", "a".repeat(51)),
        ] {
            assert_eq!(parse_acr_host(host), None, "{host} must not be ACR");
        }
        assert!(target("docker/foo.azurecr.io/bar").is_err());
        assert!(target("evil.io/foo.azurecr.io/bar").is_err());
        assert!(target("foo.azurecr.io.example/bar").is_err());
    }

    #[test]
    fn mirrors_route_the_whole_registry_only() {
        let m = [
            parse_acr_mirror("mcr.microsoft.com=myreg.azurecr.io").unwrap(),
            parse_acr_mirror("registry.local:5000=other.azurecr.io:443").unwrap(),
        ];
        let r = |i: &str| route_with_mirrors(&ImageRef::parse(i).unwrap(), &m);
        assert_eq!(
            r("mcr.microsoft.com/dotnet/runtime"),
            Ok(Target::Acr(AcrRegistry {
                login_server: "myreg.azurecr.io".into(),
                mirror_of: Some("mcr.microsoft.com".into()),
            }))
        );
        assert_eq!(
            login_server(r("registry.local:5000/x")).as_deref(),
            Some("other.azurecr.io:443")
        );
        for not in [
            "mcr.microsoft.com.evil.io/x",
            "evil.io/mcr.microsoft.com/x",
            "mcr.microsoft.com:443/x",
            "registry.local/x",
        ] {
            assert!(r(not).is_err(), "{not}");
        }
    }

    #[test]
    fn mirror_syntax() {
        for bad in [
            "mcr.microsoft.com",
            "mcr.microsoft.com:myreg.azurecr.io",
            "mcr.microsoft.com=quay.io",
            "=myreg.azurecr.io",
            "mcr.microsoft.com/path=myreg.azurecr.io",
            "mcr.microsoft.com=myreg.azurecr.io/path",
        ] {
            assert!(parse_acr_mirror(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_acr_mirror(" docker.io = myreg.azurecr.cn ").unwrap(),
            AcrMirror {
                source: "docker.io".into(),
                acr: "myreg.azurecr.cn".into()
            }
        );
    }
}
