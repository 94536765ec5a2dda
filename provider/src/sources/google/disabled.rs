//! Stand-in for [`gcp`](self) in a build without the `gcp` feature: Google
//! hosts are still recognised, and their fetch says what is missing.

use crate::deadline::Deadline;
use crate::sources::{Fetched, SourceError};
use crate::workload::Workload;

pub fn fetch(_: &Deadline) -> Result<Fetched, SourceError> {
    Err(SourceError::not_built("Google", "gcp"))
}

pub fn fetch_for_workload(_: &Workload, _: &Deadline) -> Result<Fetched, SourceError> {
    fetch(&Deadline::after(std::time::Duration::ZERO))
}

/// No Google client: nothing of its configuration decides the credential.
pub fn cache_parts() -> Vec<(&'static str, String)> {
    Vec::new()
}
