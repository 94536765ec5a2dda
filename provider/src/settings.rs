//! Start-up settings: flags and environment, resolved once by `cli` and
//! read by the flow and the sources. Plain data; nothing here decides.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use kubelet_config::pullcred::PullcredConfig;

/// Settings from flags and environment.
#[derive(Debug, Clone)]
pub struct Options {
    pub cache_dir: Option<PathBuf>,
    pub no_cache: bool,
    pub timeout: Duration,
    /// dockerconfigjson files with static credentials, in priority order.
    pub docker_configs: Vec<PathBuf>,
    /// (registry key, Secrets Manager secret id) pairs.
    pub aws_secrets: Vec<(String, String)>,
    /// How long static credentials are fresh before files are re-read and
    /// the registry check runs again.
    pub static_ttl: Duration,
    /// Check static credentials against the registry on a cache miss.
    pub registry_check: bool,
    /// `--mirror SOURCE=TARGET[/PREFIX]`, `PULLCRED_MIRRORS` (and
    /// `PULLCRED_ACR_MIRRORS`): see `sources::mirror`.
    pub mirrors: Vec<Mirror>,
    pub azure: AzureSettings,
    /// Per-pod identities from service-account tokens.
    pub workload: WorkloadSettings,
    /// `--refresh-jitter`, `PULLCRED_REFRESH_JITTER`: how much of a token's
    /// refresh window (0 to 1) a node's stable offset may use; 0 refreshes
    /// every token at the same point of its life.
    pub refresh_jitter: f64,
    /// `--config`, `PULLCRED_CONFIG`: pullcred's config file (keyless
    /// sources, namespace-scoped credentials, policy); empty when unset.
    pub config: Arc<PullcredConfig>,
    /// `--metrics-file`, `PULLCRED_METRICS_FILE`: Prometheus text file
    /// rewritten after each exec (see `metrics`); `None`: no metrics, and
    /// nothing read or written for them.
    pub metrics_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_dir: None,
            no_cache: false,
            timeout: crate::deadline::DEFAULT,
            docker_configs: Vec::new(),
            aws_secrets: Vec::new(),
            static_ttl: Duration::from_secs(300),
            registry_check: true,
            mirrors: Vec::new(),
            azure: AzureSettings::default(),
            workload: WorkloadSettings::default(),
            config: Arc::default(),
            refresh_jitter: 1.0,
            metrics_file: None,
        }
    }
}

/// Settings from flags and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// `--service-account-fallback=node`: a service account that names no
    /// identity gets the node's.
    pub fallback_to_node: bool,
    /// `--ecr-role-arn`, `AWS_ECR_ROLE_ARN`.
    pub aws_default_role: Option<String>,
    /// `--accept-irsa-role-annotation`: also read `eks.amazonaws.com/role-arn`.
    pub aws_accept_irsa: bool,
    /// `--google-audience`, `PULLCRED_GOOGLE_AUDIENCE`.
    pub google_audience: Option<String>,
    /// `--google-service-account`, `PULLCRED_GOOGLE_SERVICE_ACCOUNT`.
    pub google_service_account: Option<String>,
    /// The config file's `policy` rules, in order.
    pub policy: Vec<kubelet_config::pullcred::policy::PolicyRule>,
}

/// Azure settings from flags and environment (the rest of Azure's identity
/// comes from the standard `AZURE_*` variables; see `sources::azure`).
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// `--azure-config`, `PULLCRED_AZURE_CONFIG`: AKS's azure.json. `None`:
    /// `/etc/kubernetes/azure.json` when it exists; `none`: no file.
    pub config: Option<PathBuf>,
}

/// `--mirror SOURCE=TARGET[/PREFIX]`: images of `source` (`host[:port]`,
/// matched exactly) are answered, keyed `source`, with the credentials of
/// `target/prefix/<repository>` (`target` is `host[:port]`; `prefix` has no
/// leading or trailing `/` and may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub source: String,
    pub target: String,
    pub prefix: String,
}
