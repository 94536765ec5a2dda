//! `--metrics-file PATH` (`PULLCRED_METRICS_FILE`): Prometheus counters for
//! a process that lives for one request, with no daemon.
//!
//! Each exec notes what happened where it happens (the flow calls
//! [`note_fetch`], [`note_stored`], [`note_stale_served`]); after the answer
//! is written, [`record_exec`] adds the exec to counters kept in the cache
//! directory (`<cache dir>/metrics/counters.json`, so they survive restarts)
//! and rewrites the metrics file from them, in the text format node_exporter's
//! textfile collector reads (`/var/lib/node_exporter/textfile_collector/pullcred.prom`).
//! See [`store`] for the locking and the atomic writes, [`render`] for the
//! metrics.
//!
//! - Off (no path): nothing is read or written; the notes are a few bytes
//!   in memory, dropped with the process.
//! - On a cache hit: one flock, one small read, two writes by rename; no
//!   network, no runtime. The lock is waited for at most [`store::LOCK_WAIT`];
//!   past that the exec leaves its update as a pending file that the next
//!   exec adds.
//! - What an "upstream call" is: one fetch from a source (`Route::fetch`),
//!   with the retries that source makes inside it. Its class comes from the
//!   [`SourceError`] the fetch ended with ([`classify`]): the kind, then the
//!   HTTP status or the transport failure its detail names (the last
//!   attempt's). Attempts within a fetch are not counted one by one.
//! - Labels: the source id and fixed class names only. No registry path,
//!   image, namespace, service account, URL, error text or secret.

pub mod counters;
pub mod render;
pub mod store;

use std::cell::RefCell;

use crate::cache::{CacheKey, Entry};
use crate::deadline::Deadline;
use crate::error::{Kind, SourceError};
use crate::settings::Options;
use counters::{ErrorClass, Fetch, Observation, Outcome, Stored, UpstreamResult};

/// What the flow noted during this exec.
#[derive(Debug, Default)]
struct Notes {
    fetches: Vec<Fetch>,
    stored: Vec<Stored>,
    stale_served: bool,
}

// The flow is one thread; the notes live as long as the exec and cost
// nothing when metrics are off.
thread_local! {
    static NOTES: RefCell<Notes> = RefCell::new(Notes::default());
}

/// A fetch from `source` ended: `error` is `None` on success.
pub fn note_fetch(source: &'static str, error: Option<&SourceError>) {
    let fetch = Fetch {
        source: source.to_string(),
        result: error.map_or(UpstreamResult::Ok, classify),
        error: error.map(|e| match e.kind {
            Kind::Refused => ErrorClass::Refused,
            Kind::Unavailable => ErrorClass::Unavailable,
            Kind::Config => ErrorClass::Config,
        }),
    };
    NOTES.with(|n| n.borrow_mut().fetches.push(fetch));
}

/// A token from `source` was stored under `key`. Credentials with a fixed
/// freshness window (static ones) have no token expiry and are not noted.
pub fn note_stored(source: &'static str, key: &CacheKey, entry: &Entry) {
    if entry.refresh_at.is_some() {
        return;
    }
    let stored = Stored {
        source: source.to_string(),
        key: key.as_str().chars().take(counters::KEY_PREFIX).collect(),
        expires_at: entry.expires_at,
    };
    NOTES.with(|n| n.borrow_mut().stored.push(stored));
}

/// Upstream failed and a cached credential still valid was served.
pub fn note_stale_served() {
    NOTES.with(|n| n.borrow_mut().stale_served = true);
}

/// After the answer (or the error) is written: counts the exec, when
/// `--metrics-file` is set; `answered` is whether it exited 0. The counters
/// are in the cache directory (also with `--no-cache`, which concerns
/// credentials). Waits for the counters lock at most [`store::LOCK_WAIT`],
/// and never past `deadline`.
pub fn record_exec(opts: &Options, deadline: &Deadline, answered: bool) {
    let notes = NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()));
    let Some(file) = &opts.metrics_file else {
        return;
    };
    let outcome = if !answered {
        Outcome::Error
    } else if notes.stale_served {
        Outcome::StaleServed
    } else if notes.fetches.is_empty() {
        Outcome::Hit
    } else {
        Outcome::Miss
    };
    let obs = Observation {
        outcome,
        duration_secs: deadline.elapsed().as_secs_f64(),
        at: crate::time::now_unix(),
        fetches: notes.fetches,
        stored: notes.stored,
    };
    let dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(crate::cache::default_dir);
    let wait = store::LOCK_WAIT.min(deadline.remaining());
    store::record(&dir, file, &obs, wait);
}

/// The result class of a failed fetch, from its kind and, for an outage,
/// what its detail names: a throttling code or 429, a status, a transport
/// failure. Sources write `HTTP <status>` in their details (`http::status_detail`,
/// the AWS SDK's `(HTTP <status>)`), and `connection failed`, `DNS lookup
/// failed`, `TLS handshake failed`, `timed out` for transport failures
/// (`http::describe_error`, the SDK's dispatch failures).
pub fn classify(e: &SourceError) -> UpstreamResult {
    match e.kind {
        Kind::Refused => return UpstreamResult::Refused,
        Kind::Config => return UpstreamResult::Config,
        Kind::Unavailable => {}
    }
    let d = e.detail.to_ascii_lowercase();
    let status = http_status(&d);
    if status == Some(429)
        || [
            "throttl",
            "too many requests",
            "rate exceeded",
            "slowdown",
            "rate_limit",
        ]
        .iter()
        .any(|w| d.contains(w))
    {
        return UpstreamResult::Throttled;
    }
    match status {
        Some(500..=599) => return UpstreamResult::ServerError,
        Some(408) => return UpstreamResult::Network,
        Some(s) if crate::error::is_refusal_status(s) => return UpstreamResult::Refused,
        Some(_) => return UpstreamResult::Other,
        None => {}
    }
    if [
        "timed out",
        "timeout",
        "deadline",
        "connection",
        "dns",
        "tls handshake",
        "certificate",
        "proxy",
        "dispatch failure",
        "os error",
    ]
    .iter()
    .any(|w| d.contains(w))
    {
        return UpstreamResult::Network;
    }
    UpstreamResult::Other
}

/// The first `http NNN` in a lower-cased detail.
fn http_status(d: &str) -> Option<u16> {
    let mut rest = d;
    while let Some(i) = rest.find("http ") {
        let after = &rest[i + 5..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if digits.len() == 3 {
            return digits.parse().ok();
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(detail: &str) -> SourceError {
        SourceError::new("ecr GetAuthorizationToken (region us-west-2)", detail)
    }

    /// The details the sources really print (taken from runs against the
    /// stand-ins), each in its class.
    #[test]
    fn classifies_the_sources_details() {
        use UpstreamResult::*;
        for (detail, want) in [
            ("ServerException: internal failure (HTTP 500)", ServerError),
            ("ThrottlingException: Rate exceeded (HTTP 400)", Throttled),
            ("ThrottlingException: Rate exceeded (HTTP 429)", Throttled),
            (
                "HTTP 429: rate_limit_exceeded: Too Many Requests",
                Throttled,
            ),
            ("HTTP 503: backend error", ServerError),
            (
                "AccessDeniedException: not authorized to perform ecr:GetAuthorizationToken (HTTP 400)",
                Refused,
            ),
            ("HTTP 401: UNAUTHORIZED: authentication required", Refused),
            (
                "unreadable response (HTTP 200): service error: unhandled error: Error at offset 0",
                Other,
            ),
            (
                "unreadable token response (syntax error at line 1 column 1)",
                Other,
            ),
            ("timed out waiting for the API (--timeout)", Network),
            (
                "timed out: no answer within the 4s deadline (--timeout)",
                Network,
            ),
            (
                "connection failed: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)",
                Network,
            ),
            (
                "connection failed: io: Connection refused (os error 111)",
                Network,
            ),
            ("DNS lookup failed: no-such-host.invalid", Network),
            ("TLS handshake failed: invalid peer certificate", Network),
        ] {
            assert_eq!(classify(&unavailable(detail)), want, "{detail}");
        }
        assert_eq!(
            classify(&SourceError::refused("s", "HTTP 500 but refused")),
            Refused
        );
        assert_eq!(classify(&SourceError::config("s", "no file")), Config);
    }

    #[test]
    fn finds_the_first_status() {
        assert_eq!(http_status("unreadable (http 200): x"), Some(200));
        assert_eq!(http_status("see http://x then http 503"), Some(503));
        assert_eq!(http_status("http 12"), None);
    }

    #[test]
    fn notes_become_one_observation_and_are_cleared() {
        note_fetch("ecr", Some(&unavailable("HTTP 500")));
        note_stale_served();
        let notes = NOTES.with(|n| std::mem::take(&mut *n.borrow_mut()));
        assert_eq!(notes.fetches.len(), 1);
        assert_eq!(notes.fetches[0].error, Some(ErrorClass::Unavailable));
        assert!(notes.stale_served);
        // off: the notes are dropped, nothing is written anywhere
        note_fetch("ecr", None);
        let opts = Options {
            cache_dir: Some("/nonexistent/pullcred".into()),
            ..Options::default()
        };
        record_exec(
            &opts,
            &Deadline::after(std::time::Duration::from_secs(1)),
            true,
        );
        assert!(NOTES.with(|n| n.borrow().fetches.is_empty()));
    }
}
