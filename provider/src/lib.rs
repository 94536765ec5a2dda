//! pullcred: a kubelet image credential provider.
//!
//! The kubelet execs `pullcred` with a `CredentialProviderRequest` on stdin and
//! reads a `CredentialProviderResponse` from stdout (see `protocol`). pullcred
//! answers from a file-locked on-node cache when it can, and otherwise fetches a
//! short-lived token from the registry's cloud with the node's identity.
//!
//! # Layout
//! - [`cli`]: flags and environment; the only place that decides exit codes.
//! - [`run`]: the get-credentials flow: decode, route, cache, fetch, answer.
//! - [`protocol`]: the kubelet's wire types, decoded and encoded as pure functions.
//! - [`image`]: image references, normalised as the kubelet does.
//! - [`registry`]: which source serves a registry host (anchored host matching).
//! - [`challenge`]: `WWW-Authenticate` challenge parsing.
//! - [`cache`]: the on-disk cache: private directory, atomic entries, single flight.
//! - [`private_file`]: reading a credential or cache file: no FIFO, no swap, no symlink.
//! - [`expiry`]: refresh points and `cacheDuration` from a token's real expiry.
//! - [`deadline`]: one deadline for the whole run.
//! - `doctor`: `pullcred doctor IMAGE`, explaining an ImagePullBackOff from the node.
//! - `http`: a small blocking HTTPS client with classified errors (feature `http`).
//! - [`sources`]: upstream fetchers (AWS SDK behind `aws`; Azure Container Registry
//!   behind `azure`; dockerconfigjson files and the registry check behind `static`).
//! - [`workload`]: per-pod identities from service-account tokens (KEP-4412).
//! - [`secret`]: a string type that cannot be printed.
//! - [`logging`]: stderr logging from `PULLCRED_LOG`; third-party crates are silenced.

pub mod cache;
pub mod challenge;
pub mod cli;
pub mod deadline;
#[cfg(feature = "static")]
pub mod doctor;
#[cfg(any(feature = "http", feature = "aws"))]
pub mod endpoint;
pub mod expiry;
#[cfg(feature = "http")]
pub mod http;
pub mod image;
pub mod logging;
pub mod private_file;
pub mod protocol;
#[cfg(any(feature = "http", feature = "aws"))]
pub mod proxy;
pub mod registry;
pub mod run;
pub mod secret;
pub mod sources;
pub mod workload;
