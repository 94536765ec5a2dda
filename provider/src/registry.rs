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
    /// Google Artifact Registry or Container Registry.
    Google(GoogleRegistry),
}

impl Target {
    /// Short name of the source, for errors and cache keys.
    pub fn source(&self) -> &'static str {
        match self {
            Target::EcrPrivate(_) => "ecr",
            Target::EcrPublic => "ecr-public",
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
            "no pullcred source serves registry {:?} (supported: Amazon ECR private and ECR Public hosts; Google gcr.io, *.gcr.io, <location>-docker.pkg.dev, docker.<region>.rep.pkg.dev, container.cloud.google.com); check the kubelet config's matchImages",
            self.registry
        )
    }
}

impl std::error::Error for NoSource {}

pub fn route(image: &ImageRef) -> Result<Target, NoSource> {
    let no = || NoSource {
        registry: image.registry.clone(),
    };
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
