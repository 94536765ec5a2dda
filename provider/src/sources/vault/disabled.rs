//! Stand-in for [`api`](self) in a build without the `http` feature: the
//! `vault` entries still route, and their fetch says what is missing.

use super::VaultIdentity;
use crate::deadline::Deadline;
use crate::secret::Secret;
use crate::sources::{Fetched, SourceError};
use crate::workload::ServiceAccount;
use kubelet_config::pullcred::vault::{NodeAuth, VaultSource};

/// How pullcred would log in.
#[allow(dead_code)]
pub enum Login<'a> {
    Pod {
        role: &'a VaultIdentity,
        token: &'a Secret,
        account: &'a ServiceAccount,
    },
    Node {
        auth: &'a NodeAuth,
        path: String,
    },
}

pub fn fetch(e: &VaultSource, _: Login, _: &Deadline) -> Result<Fetched, SourceError> {
    Err(SourceError::not_built(
        format!("vault {:?}", e.name),
        "http",
    ))
}
