//! pullcred: a kubelet image credential provider.
//!
//! The kubelet execs `pullcred` with a `CredentialProviderRequest` on stdin and
//! reads a `CredentialProviderResponse` from stdout (see `protocol`). pullcred
//! answers from a file-locked on-node cache when it can, and otherwise fetches a
//! short-lived token from the registry's cloud with the node's identity.
//!
//! # Layout
//! - [`cli`]: flags and environment become [`settings::Options`]; [`exit`]
//!   owns the exit codes, the watchdog and the one write of the response.
//! - [`run`]: the get-credentials flow only: decode, route, cache I/O, fetch.
//! - [`pipeline`]: the cache decision (hit, stale, lock-and-fetch,
//!   serve-through-outage, refuse), pure functions of the entry, `now` and
//!   the fetch outcome.
//! - [`sources`]: one directory per source behind the `Source`/`Route`
//!   traits (`aws`: ECR, ECR Public, EKS Pod Identity, Secrets Manager;
//!   `google`; `acr`; `dockerconfig`; from the config file: `namespaced`,
//!   `vault`, `exchange`), and `registry_check`, the registry v2 auth walk shared
//!   with `doctor`. A compiled-out source is its directory's `disabled.rs`.
//! - [`workload`]: per-pod identities from service-account tokens (KEP-4412):
//!   the claims, and the `PodRules`/`Identity` traits sources implement.
//! - [`error`]: `SourceError` and the [`error::Kind`] the pipeline acts on.
//! - [`settings`]: start-up settings, plain data.
//! - [`protocol`]: the kubelet's wire types, decoded and encoded as pure functions.
//! - [`image`]: image references, normalised as the kubelet does.
//! - [`challenge`]: `WWW-Authenticate` challenge parsing.
//! - [`cache`]: the on-disk cache: private directory, atomic entries, single flight.
//! - [`private_file`]: reading a credential or cache file: no FIFO, no swap, no symlink.
//! - [`expiry`]: refresh points and `cacheDuration` from a token's real expiry.
//! - [`time`]: the wall clock, read in one place, and date formats; [`encode`]:
//!   percent-encoding and hex.
//! - `credhelper`: `docker-credential-pullcred` / `pullcred credential-helper`: the
//!   docker credential-helper protocol over `run::serve` (same sources, cache, deadline).
//! - [`deadline`]: one deadline for the whole run.
//! - `doctor`: `pullcred doctor IMAGE`, explaining an ImagePullBackOff from the node;
//!   `kube`: its Kubernetes API client (`--kubeconfig`).
//! - `http`: a small blocking HTTPS client with classified errors, the one
//!   retry loop and HTTP error text (feature `http`).
//! - [`metrics`]: `--metrics-file`: counters kept in the cache directory,
//!   written after each exec as a Prometheus text file.
//! - `resolve`: host names to addresses from /etc/hosts and DNS, pullcred's
//!   own stub resolver (never getaddrinfo/NSS), for ureq and the AWS SDK.
//! - [`install`]: `pullcred install`, installing pullcred on a running node
//!   (binary, kubelet config and flags per distribution; the DaemonSet's program).
//! - [`secret`]: a string type that cannot be printed.
//! - [`logging`]: stderr logging from `PULLCRED_LOG`; third-party crates are silenced.

pub mod cache;
pub mod challenge;
pub mod cli;
pub mod credhelper;
#[cfg(feature = "cri")]
pub mod cri;
pub mod deadline;
#[cfg(feature = "static")]
pub mod doctor;
pub mod encode;
#[cfg(any(feature = "http", feature = "aws"))]
pub mod endpoint;
pub mod error;
pub mod exit;
pub mod expiry;
#[cfg(feature = "http")]
pub mod http;
pub mod image;
// installer (issue #19 item 2): `pullcred install`
pub mod install;
#[cfg(feature = "static")]
pub mod kube;
pub mod logging;
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "cri")]
pub mod prepull;
pub mod private_file;
pub mod protocol;
#[cfg(any(feature = "http", feature = "aws"))]
pub mod proxy;
#[cfg(any(feature = "http", feature = "aws"))]
pub mod resolve;
pub mod run;
pub mod secret;
pub mod settings;
pub mod sources;
pub mod time;
pub mod workload;
