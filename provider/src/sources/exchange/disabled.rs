//! Stand-in for [`client`](self) in a build without the `http` feature:
//! exchanges still route, and their fetch says what is missing.

use kubelet_config::pullcred::exchange::Exchange as Config;

use super::wire::Issued;
use crate::deadline::Deadline;
use crate::error::SourceError;
use crate::secret::Secret;

pub fn exchange(x: &Config, _: &Secret, _: &Deadline) -> Result<Issued, SourceError> {
    Err(SourceError::not_built(
        format!("token exchange {}", x.name),
        "http",
    ))
}
