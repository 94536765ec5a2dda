//! Stand-in for [`sdk`](self) in a build without the `aws` feature: ECR
//! hosts are still recognised, and their fetch says what is missing.

use super::EcrRegistry;
use crate::deadline::Deadline;
use crate::secret::Secret;
use crate::sources::{Fetched, SourceError};
use crate::workload::Workload;

pub fn fetch(
    _: Option<&EcrRegistry>,
    _: Option<&Workload>,
    _: &Deadline,
) -> Result<Fetched, SourceError> {
    Err(SourceError::not_built("ECR", "aws"))
}

pub fn fetch_secret(id: &str, _: &Deadline) -> Result<(String, Secret), SourceError> {
    Err(SourceError::not_built(
        format!("secretsmanager GetSecretValue {id}"),
        "aws",
    ))
}
