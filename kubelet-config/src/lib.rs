//! The kubelet's `CredentialProviderConfig`: its types, the rules the kubelet
//! applies to it, the image matching rules it uses to pick a provider, and
//! the `pullcred config ...` / `pullcred match ...` commands built on them.
//!
//! # Layout
//! - [`matching`]: `matchImages` globs (Go `url.Parse` + `filepath.Match`
//!   semantics), response `auth` keys, the Docker Hub test.
//! - [`config`]: the config types and strict decoding of YAML and JSON.
//! - [`duration`]: Go duration strings.
//! - [`load`]: one file or a directory, as the kubelet reads them.
//! - [`validate`]: the kubelet's rules and pullcred's warnings, as findings.
//! - [`sources`]: the registries of each cloud and their host forms.
//! - [`generate`]: configs covering those host forms.
//! - [`pullcred`]: pullcred's own config file (`--config`): its schema and checks.
//! - [`kubeconfig`]: a kubeconfig's current context (for `doctor --kubeconfig`).
//! - [`merge`]: merging provider entries into an existing config (`pullcred install --merge`).
//! - [`exec`]: running a plugin as the kubelet does.
//! - [`cli`]: the subcommands; the only place that prints or picks exit codes.

pub mod cli;
pub mod config;
pub mod duration;
pub mod exec;
pub mod generate;
pub mod kubeconfig;
pub mod load;
pub mod matching;
// installer (issue #19 item 2): `pullcred install --merge`
pub mod merge;
pub mod pullcred;
pub mod sources;
pub mod validate;
