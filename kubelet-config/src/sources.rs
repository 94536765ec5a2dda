//! The registries pullcred serves, and the host forms each uses.
//!
//! Used by `config generate` (which globs to write) and by `config validate`
//! (a glob that claims a cloud's domain but can match none of its hosts, and a
//! `defaultCacheDuration` longer than the cloud's token lives).

use std::fmt;

use crate::duration::GoDuration;
use crate::matching::{glob_matches, path_match};

/// A kind of registry source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cloud {
    /// Amazon ECR (every partition) and ECR Public.
    Aws,
    /// Google Container Registry and Artifact Registry.
    Gcp,
    /// Azure Container Registry.
    Azure,
    /// Static credentials for registries the operator names.
    Generic,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::Generic];

    pub fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.name() == s)
    }

    pub fn source(self) -> &'static Source {
        match self {
            Cloud::Aws => &AWS,
            Cloud::Gcp => &GCP,
            Cloud::Azure => &AZURE,
            Cloud::Generic => &GENERIC,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The service-account annotation naming the role a pod's ECR pulls assume.
pub const AWS_ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
/// IRSA's role annotation, read for ECR pulls with `--accept-irsa-role-annotation`.
pub const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// GKE's opt-in to workload identity image pulls.
pub const GKE_ENABLE_ANNOTATION: &str = "iam.gke.io/enable-wi-image-pull";
/// The Google service account a pod's pulls impersonate.
pub const GKE_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// A workload identity pool audience for a pod's Google pulls.
pub const GOOGLE_AUDIENCE_ANNOTATION: &str = "pullcred.dev/google-audience";
/// The Entra client a pod's ACR pulls use.
pub const AZURE_CLIENT_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";
/// The Entra tenant of that client (else the node's).
pub const AZURE_TENANT_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";
/// ACR's DNS suffixes: public, China, US Government. Not `azurecr.de`:
/// Microsoft Cloud Germany was closed on 2021-10-29.
pub const ACR_SUFFIXES: [&str; 3] = ["azurecr.io", "azurecr.cn", "azurecr.us"];

/// What pullcred knows about a source.
#[derive(Debug)]
pub struct Source {
    pub cloud: Cloud,
    /// `matchImages` globs covering every host form.
    pub globs: &'static [&'static str],
    /// Real-looking hosts, one or more per host form.
    pub example_hosts: &'static [&'static str],
    /// Domains that only this source's registries use: a glob ending in one
    /// of them claims the source.
    pub domains: &'static [&'static str],
    /// How long a credential from this source lives, when it expires.
    pub token_life_secs: Option<i64>,
    /// The `defaultCacheDuration` written by `generate`.
    pub default_cache_duration: &'static str,
    /// Service account annotations the source reads (KEP-4412 mode).
    pub annotation_keys: &'static [&'static str],
}

impl Source {
    pub fn token_life(&self) -> Option<GoDuration> {
        self.token_life_secs.map(GoDuration::from_secs)
    }
}

pub static AWS: Source = Source {
    cloud: Cloud::Aws,
    globs: &[
        "*.dkr.ecr.*.amazonaws.com",
        "*.dkr.ecr-fips.*.amazonaws.com",
        "*.dkr.ecr.*.amazonaws.com.cn",
        "*.dkr.ecr.*.amazonaws.eu",
        "*.dkr.ecr.*.c2s.ic.gov",
        "*.dkr.ecr.*.sc2s.sgov.gov",
        "*.dkr.ecr.*.cloud.adc-e.uk",
        "*.dkr.ecr.*.csp.hci.ic.gov",
        "*.dkr-ecr.*.on.aws",
        "*.dkr-ecr-fips.*.on.aws",
        "*.dkr-ecr.*.on.amazonwebservices.com.cn",
        "public.ecr.aws",
        "ecr-public.aws.com",
    ],
    example_hosts: &[
        "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "123456789012.dkr.ecr.us-gov-east-1.amazonaws.com",
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
        "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
        "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
        "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
        "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
        "123456789012.dkr.ecr.us-isof-east-1.csp.hci.ic.gov",
        "123456789012.dkr-ecr.us-west-2.on.aws",
        "123456789012.dkr-ecr-fips.us-west-2.on.aws",
        "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
        "public.ecr.aws",
        "ecr-public.aws.com",
    ],
    domains: &[
        "amazonaws.com",
        "amazonaws.com.cn",
        "amazonaws.eu",
        "c2s.ic.gov",
        "sc2s.sgov.gov",
        "cloud.adc-e.uk",
        "csp.hci.ic.gov",
        "on.aws",
        "on.amazonwebservices.com.cn",
        "ecr.aws",
        "aws.com",
    ],
    token_life_secs: Some(12 * 3600),
    default_cache_duration: "11h",
    annotation_keys: &[AWS_ROLE_ANNOTATION],
};

pub static GCP: Source = Source {
    cloud: Cloud::Gcp,
    globs: &[
        "gcr.io",
        "*.gcr.io",
        "*.pkg.dev",
        "docker.*.rep.pkg.dev",
        "container.cloud.google.com",
    ],
    example_hosts: &[
        "gcr.io",
        "us.gcr.io",
        "eu.gcr.io",
        "asia.gcr.io",
        "us-docker.pkg.dev",
        "us-central1-docker.pkg.dev",
        "europe-west1-docker.pkg.dev",
        "docker.us-central1.rep.pkg.dev",
        "container.cloud.google.com",
    ],
    domains: &["gcr.io", "pkg.dev", "container.cloud.google.com"],
    token_life_secs: Some(3600),
    default_cache_duration: "45m",
    annotation_keys: &[
        GKE_ENABLE_ANNOTATION,
        GKE_SERVICE_ACCOUNT_ANNOTATION,
        GOOGLE_AUDIENCE_ANNOTATION,
    ],
};

pub static AZURE: Source = Source {
    cloud: Cloud::Azure,
    globs: &[
        "*.azurecr.io",
        "*.azurecr.cn",
        "*.azurecr.us",
        "*.*.geo.azurecr.io",
    ],
    example_hosts: &[
        "myregistry.azurecr.io",
        "myregistry.azurecr.cn",
        "myregistry.azurecr.us",
        "myregistry.westeurope.geo.azurecr.io",
    ],
    domains: &ACR_SUFFIXES,
    token_life_secs: Some(3 * 3600),
    default_cache_duration: "2h30m",
    annotation_keys: &[AZURE_CLIENT_ANNOTATION, AZURE_TENANT_ANNOTATION],
};

pub static GENERIC: Source = Source {
    cloud: Cloud::Generic,
    globs: &[],
    example_hosts: &[],
    domains: &[],
    token_life_secs: None,
    default_cache_duration: "5m",
    annotation_keys: &[],
};

/// The host part of a glob (no path, no port), as written.
fn glob_host(glob: &str) -> &str {
    let host = glob.split('/').next().unwrap_or(glob);
    match host.rfind(':') {
        Some(i) if !host.starts_with('[') => &host[..i],
        _ => host,
    }
}

fn has_meta(label: &str) -> bool {
    label.contains(['*', '?', '[', '\\'])
}

/// Could some label be matched by both patterns? Exact for a literal side;
/// two wildcard labels are assumed to overlap.
fn labels_overlap(a: &str, b: &str) -> bool {
    match (has_meta(a), has_meta(b)) {
        (false, false) => a == b,
        (true, false) => path_match(a.as_bytes(), b.as_bytes()).unwrap_or(false),
        (false, true) => path_match(b.as_bytes(), a.as_bytes()).unwrap_or(false),
        (true, true) => true,
    }
}

fn hosts_overlap(glob: &str, form: &str) -> bool {
    let a: Vec<&str> = glob.split('.').collect();
    let b: Vec<&str> = form.split('.').collect();
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| labels_overlap(x, y))
}

/// The sources whose domain the glob's host ends with.
pub fn claimed_clouds(glob: &str) -> Vec<Cloud> {
    let host = glob_host(glob);
    let labels: Vec<&str> = host.split('.').collect();
    Cloud::ALL
        .into_iter()
        .filter(|c| {
            c.source().domains.iter().any(|d| {
                let dl: Vec<&str> = d.split('.').collect();
                labels.len() >= dl.len()
                    && labels[labels.len() - dl.len()..]
                        .iter()
                        .zip(&dl)
                        .all(|(g, l)| path_match(g.as_bytes(), l.as_bytes()).unwrap_or(false))
            })
        })
        .collect()
}

/// Can the glob match a real host of this source? First against the
/// example hosts, then against the source's host forms.
pub fn can_match_source(glob: &str, cloud: Cloud) -> bool {
    let host = glob_host(glob);
    let source = cloud.source();
    source
        .example_hosts
        .iter()
        .any(|h| glob_matches(host, h).unwrap_or(false))
        || source.globs.iter().any(|form| hosts_overlap(host, form))
}

/// The sources a glob really serves: claimed, and able to match.
pub fn served_clouds(glob: &str) -> Vec<Cloud> {
    claimed_clouds(glob)
        .into_iter()
        .filter(|&c| can_match_source(glob, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_host_is_covered_by_exactly_its_source_globs() {
        for cloud in Cloud::ALL {
            let s = cloud.source();
            for host in s.example_hosts {
                assert!(
                    s.globs.iter().any(|g| glob_matches(g, host) == Ok(true)),
                    "{cloud}: no glob matches {host}"
                );
                assert!(
                    claimed_clouds(host).contains(&cloud),
                    "{host} does not claim {cloud}"
                );
            }
            for glob in s.globs {
                assert!(
                    s.example_hosts
                        .iter()
                        .any(|h| glob_matches(glob, h) == Ok(true)),
                    "{cloud}: glob {glob} has no example host"
                );
                assert_eq!(served_clouds(glob), vec![cloud], "{glob}");
            }
            assert!(GoDuration::parse(s.default_cache_duration).is_ok());
        }
    }

    #[test]
    fn regional_artifact_registry_needs_its_own_glob() {
        assert_eq!(
            glob_matches("*.pkg.dev", "docker.us-central1.rep.pkg.dev"),
            Ok(false)
        );
    }

    #[test]
    fn globs_that_can_never_match() {
        // Too few labels for ECR private.
        assert_eq!(claimed_clouds("*.ecr.*.amazonaws.com"), vec![Cloud::Aws]);
        assert!(!can_match_source("*.ecr.*.amazonaws.com", Cloud::Aws));
        assert!(!can_match_source("*.dkr.ecr.amazonaws.com", Cloud::Aws));
        assert!(claimed_clouds("*.azurecr.io.cn").is_empty());
        assert!(!can_match_source("azurecr.io", Cloud::Azure));
        assert!(!can_match_source("*.geo.azurecr.io", Cloud::Azure));
        // Specific registries and wider globs are fine.
        assert!(can_match_source("myacr.azurecr.io", Cloud::Azure));
        assert!(can_match_source(
            "123456789012.dkr.ecr.*.amazonaws.com/team",
            Cloud::Aws
        ));
        assert!(can_match_source(
            "*.dkr.ecr.*.amazonaws.com:443",
            Cloud::Aws
        ));
        // Generic registries claim nothing.
        assert!(claimed_clouds("registry.example.com").is_empty());
        assert!(claimed_clouds("docker.io").is_empty());
    }
}
