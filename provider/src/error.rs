//! Why a fetch failed, typed: the [`Kind`] is what the pipeline acts on, the
//! step and detail are what the operator reads (one line, never a secret).
//!
//! As cargo's credential providers do (`UrlNotSupported`/`NotFound` mean "try
//! the next provider"), the variant carries the policy: a [`Kind::Refused`]
//! per-pod identity is not served from the stale cache, an outage is. No flag
//! elsewhere in the process says so.

use std::fmt;

/// What kind of failure, for the pipeline's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Upstream or the transport failed (a timeout, throttling, a 5xx, an
    /// unreadable answer): a still-valid cached credential is served.
    #[default]
    Unavailable,
    /// The cloud's identity provider explicitly said no to the pod's
    /// service-account token (a trust policy, a federated credential, an
    /// attribute condition). A refusal is an answer, not an outage: the run
    /// serves no cached credential of that service account in its place.
    Refused,
    /// The node's own configuration is wrong (a file, a setting, a feature
    /// this build lacks).
    Config,
}

/// A failed fetch: which step, and what upstream or the transport said.
/// Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub kind: Kind,
    pub step: String,
    pub detail: String,
}

impl SourceError {
    /// An [`Kind::Unavailable`] failure of `step`.
    pub fn new(step: impl Into<String>, detail: impl Into<String>) -> SourceError {
        SourceError {
            kind: Kind::Unavailable,
            step: step.into(),
            detail: detail.into(),
        }
    }

    /// A failure of `step` the node's configuration causes.
    pub fn config(step: impl Into<String>, detail: impl Into<String>) -> SourceError {
        SourceError::new(step, detail).with_kind(Kind::Config)
    }

    /// The identity provider refused the pod's token at `step`.
    pub fn refused(step: impl Into<String>, detail: impl Into<String>) -> SourceError {
        SourceError::new(step, detail).with_kind(Kind::Refused)
    }

    /// A constructor for the failures of one step: `.map_err(SourceError::at(&step))`.
    pub fn at(step: &str) -> impl Fn(String) -> SourceError + Copy + '_ {
        move |detail| SourceError::new(step, detail)
    }

    pub fn with_kind(mut self, kind: Kind) -> SourceError {
        self.kind = kind;
        self
    }

    /// A build without the feature a source needs: one text for every stub.
    pub fn not_built(step: impl Into<String>, feature: &str) -> SourceError {
        SourceError::config(
            step,
            format!("this pullcred was built without the `{feature}` feature"),
        )
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.detail)
    }
}

impl std::error::Error for SourceError {}

/// A step's failure before the step is named: its kind and text. Plain
/// strings convert to an [`Kind::Unavailable`] one, so `?` works on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub kind: Kind,
    pub text: String,
}

impl From<String> for Detail {
    fn from(text: String) -> Detail {
        Detail {
            kind: Kind::Unavailable,
            text,
        }
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Detail {
        Detail::from(text.to_string())
    }
}

impl Detail {
    /// This failure as `step`'s error.
    pub fn at(self, step: impl Into<String>) -> SourceError {
        SourceError::new(step, self.text).with_kind(self.kind)
    }
}

/// An HTTP status that is the identity provider saying no (not an outage,
/// not throttling).
pub fn is_refusal_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// Where a JSON error is, without quoting the input (it may hold a key or
/// a token): `syntax error at line 1 column 7`.
pub fn json_position(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
    .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_statuses_are_client_errors_but_not_timeouts_or_throttling() {
        for s in [400, 401, 403, 404] {
            assert!(is_refusal_status(s), "{s}");
        }
        for s in [200, 408, 429, 500, 503] {
            assert!(!is_refusal_status(s), "{s}");
        }
    }

    #[test]
    fn at_builds_one_steps_errors() {
        let fail = SourceError::at("ECR GetAuthorizationToken");
        let e = fail("throttled".into());
        assert_eq!(e.kind, Kind::Unavailable);
        assert_eq!(e.to_string(), "ECR GetAuthorizationToken: throttled");
        assert_eq!(SourceError::refused("s", "d").kind, Kind::Refused);
    }
}
