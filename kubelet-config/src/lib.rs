//! The kubelet's `CredentialProviderConfig`: its types, the rules the kubelet
//! applies to it, and the image matching rules it uses to pick a provider.
//!
//! # Layout
//! - [`matching`]: `matchImages` globs, response `auth` keys, Docker Hub test.
pub mod matching;
pub mod cli;
