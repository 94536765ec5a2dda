//! The counters kept between execs, and one exec's [`Observation`]: plain
//! data and pure functions (no file, no clock), so merging, pruning and
//! validation are unit-tested on literal values.
//!
//! Every label a counter can carry is a source id (`ecr`, `google`, ...:
//! the `Route::id` of the code, checked against [`is_source_id`] when read
//! back) or one of the fixed class names below. Nothing from a request, a
//! path, an identity or an upstream's text is ever stored here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bump when the layout changes: an older file is then reset (and counted
/// in `pullcred_metrics_resets_total`).
pub const FORMAT: u32 = 1;

/// Upper bounds of the exec-duration histogram buckets, in seconds (1 ms to
/// 30 s: a hit takes about a millisecond, a miss tens to hundreds, and the
/// deadline is at most 55 s).
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Expiries remembered per source, at most: the earliest are kept.
pub const MAX_EXPIRIES_PER_SOURCE: usize = 128;
/// Sources remembered, at most (the code has about ten).
pub const MAX_SOURCES: usize = 32;
/// How much of a cache key identifies it in the expiry record.
pub const KEY_PREFIX: usize = 16;

/// How an exec ended, for `pullcred_execs_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered from a fresh cache entry (also after waiting for another
    /// exec's refresh).
    Hit,
    /// Answered with a credential fetched upstream by this exec.
    Miss,
    /// Upstream failed; answered with a cached credential still valid.
    StaleServed,
    /// No answer: exit 1.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::StaleServed,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::StaleServed => "stale_served",
            Outcome::Error => "error",
        }
    }
}

/// The result class of one fetch from a source, for
/// `pullcred_upstream_calls_total{source,result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpstreamResult {
    #[serde(rename = "ok")]
    Ok,
    /// The upstream said no: a 4xx other than 408/429, or an identity
    /// provider refusing the pod's token.
    #[serde(rename = "refused")]
    Refused,
    /// 429, or a throttling error code in another status (ECR's
    /// `ThrottlingException` comes with HTTP 400).
    #[serde(rename = "throttled")]
    Throttled,
    /// An HTTP 5xx.
    #[serde(rename = "5xx")]
    ServerError,
    /// DNS, connect, TLS, a proxy, a timeout: no HTTP answer.
    #[serde(rename = "network")]
    Network,
    /// An answer that could not be used (unreadable, truncated, too large,
    /// empty), or anything unclassified.
    #[serde(rename = "other")]
    Other,
    /// The node's configuration stopped the fetch (a file, a setting).
    #[serde(rename = "config")]
    Config,
}

impl UpstreamResult {
    pub const ALL: [UpstreamResult; 7] = [
        UpstreamResult::Ok,
        UpstreamResult::Refused,
        UpstreamResult::Throttled,
        UpstreamResult::ServerError,
        UpstreamResult::Network,
        UpstreamResult::Other,
        UpstreamResult::Config,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpstreamResult::Ok => "ok",
            UpstreamResult::Refused => "refused",
            UpstreamResult::Throttled => "throttled",
            UpstreamResult::ServerError => "5xx",
            UpstreamResult::Network => "network",
            UpstreamResult::Other => "other",
            UpstreamResult::Config => "config",
        }
    }
}

/// The class of a failed fetch for `pullcred_last_error_timestamp_seconds`:
/// the [`crate::error::Kind`] the pipeline acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Refused,
    Unavailable,
    Config,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 3] = [
        ErrorClass::Refused,
        ErrorClass::Unavailable,
        ErrorClass::Config,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Config => "config",
        }
    }
}

/// One fetch from a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    pub source: String,
    pub result: UpstreamResult,
    /// Set when the fetch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorClass>,
}

/// A token stored in the cache: its key (a prefix of the SHA-256 cache key,
/// never a name) and expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub source: String,
    pub key: String,
    pub expires_at: i64,
}

/// What one exec saw; folded into [`Counters`] (or left as a pending file
/// when the counters' lock was busy, and folded in by a later exec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub outcome: Outcome,
    pub duration_secs: f64,
    /// Unix seconds when the exec ended.
    pub at: i64,
    #[serde(default)]
    pub fetches: Vec<Fetch>,
    #[serde(default)]
    pub stored: Vec<Stored>,
}

/// The exec-duration histogram: per-bucket counts (not cumulative), the
/// count and the sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS.len()],
            count: 0,
            sum: 0.0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] = self.buckets[i].saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum += secs;
    }

    /// Cumulative counts per bound, as the text format's `le` buckets.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0u64;
        self.buckets
            .iter()
            .map(|n| {
                acc = acc.saturating_add(*n);
                acc
            })
            .collect()
    }
}

/// The state kept in the cache directory between execs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub format: u32,
    /// outcome → execs.
    pub execs: BTreeMap<String, u64>,
    /// source → result → fetches.
    pub upstream: BTreeMap<String, BTreeMap<String, u64>>,
    pub duration: Histogram,
    /// source → key prefix → expiry (unix seconds) of the tokens stored and
    /// not yet expired.
    pub expiry: BTreeMap<String, BTreeMap<String, i64>>,
    /// source → error class → unix seconds of the last such failure.
    pub last_error: BTreeMap<String, BTreeMap<String, i64>>,
    /// Times the counters file was found unusable and started again.
    pub resets: u64,
    /// Execs whose update waited past the lock bound and was folded in later.
    pub deferred: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            format: FORMAT,
            execs: BTreeMap::new(),
            upstream: BTreeMap::new(),
            duration: Histogram::default(),
            expiry: BTreeMap::new(),
            last_error: BTreeMap::new(),
            resets: 0,
            deferred: 0,
        }
    }
}

/// A name the code gives a source: lower-case letters, digits and `-`, at
/// most 32 characters. Anything else read back from a file is not ours.
pub fn is_source_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_key_prefix(s: &str) -> bool {
    s.len() == KEY_PREFIX && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Counters {
    /// Adds one exec's observation.
    pub fn apply(&mut self, obs: &Observation) {
        bump(&mut self.execs, obs.outcome.name());
        self.duration.observe(obs.duration_secs);
        for f in &obs.fetches {
            if !is_source_id(&f.source) || !self.room_for(&f.source) {
                continue;
            }
            bump(
                self.upstream.entry(f.source.clone()).or_default(),
                f.result.name(),
            );
            if let Some(class) = f.error {
                let last = self
                    .last_error
                    .entry(f.source.clone())
                    .or_default()
                    .entry(class.name().to_string())
                    .or_insert(obs.at);
                *last = (*last).max(obs.at);
            }
        }
        for s in &obs.stored {
            if !is_source_id(&s.source) || !is_key_prefix(&s.key) || !self.room_for(&s.source) {
                continue;
            }
            self.expiry
                .entry(s.source.clone())
                .or_default()
                .insert(s.key.clone(), s.expires_at);
        }
    }

    /// Whether `source` is known or there is room for one more.
    fn room_for(&self, source: &str) -> bool {
        if self.upstream.contains_key(source)
            || self.expiry.contains_key(source)
            || self.last_error.contains_key(source)
        {
            return true;
        }
        let mut all: Vec<&String> = self.upstream.keys().collect();
        all.extend(self.expiry.keys());
        all.extend(self.last_error.keys());
        all.sort();
        all.dedup();
        all.len() < MAX_SOURCES
    }

    /// Forgets expired tokens, and keeps the earliest
    /// [`MAX_EXPIRIES_PER_SOURCE`] of each source.
    pub fn prune(&mut self, now: i64) {
        for keys in self.expiry.values_mut() {
            keys.retain(|_, at| *at > now);
            if keys.len() > MAX_EXPIRIES_PER_SOURCE {
                let mut all: Vec<(i64, String)> =
                    keys.iter().map(|(k, at)| (*at, k.clone())).collect();
                all.sort();
                *keys = all
                    .into_iter()
                    .take(MAX_EXPIRIES_PER_SOURCE)
                    .map(|(at, k)| (k, at))
                    .collect();
            }
        }
        self.expiry.retain(|_, keys| !keys.is_empty());
    }

    /// The earliest expiry per source.
    pub fn earliest_expiry(&self) -> BTreeMap<&str, i64> {
        self.expiry
            .iter()
            .filter_map(|(s, keys)| keys.values().min().map(|m| (s.as_str(), *m)))
            .collect()
    }

    /// Why a decoded file cannot be used as is; `None` when it can.
    pub fn invalid(&self) -> Option<&'static str> {
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
        let results: Vec<&str> = UpstreamResult::ALL.iter().map(|r| r.name()).collect();
        let classes: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.name()).collect();
        if self.format != FORMAT {
            return Some("from another format");
        }
        if self.execs.keys().any(|k| !outcomes.contains(&k.as_str())) {
            return Some("an unknown outcome");
        }
        let sources = self
            .upstream
            .keys()
            .chain(self.expiry.keys())
            .chain(self.last_error.keys());
        if sources.clone().any(|s| !is_source_id(s)) || sources.count() > 3 * MAX_SOURCES {
            return Some("an unknown source name");
        }
        if self
            .upstream
            .values()
            .flat_map(|m| m.keys())
            .any(|k| !results.contains(&k.as_str()))
        {
            return Some("an unknown result class");
        }
        if self
            .last_error
            .values()
            .flat_map(|m| m.keys())
            .any(|k| !classes.contains(&k.as_str()))
        {
            return Some("an unknown error class");
        }
        if self
            .expiry
            .values()
            .any(|m| m.len() > MAX_EXPIRIES_PER_SOURCE || m.keys().any(|k| !is_key_prefix(k)))
        {
            return Some("an unusable expiry record");
        }
        let h = &self.duration;
        let in_buckets = h.buckets.iter().try_fold(0u64, |a, n| a.checked_add(*n));
        if h.buckets.len() != BUCKETS.len()
            || !h.sum.is_finite()
            || h.sum < 0.0
            || in_buckets.is_none_or(|n| n > h.count)
        {
            return Some("an inconsistent duration histogram");
        }
        None
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    let n = map.entry(key.to_string()).or_insert(0);
    *n = n.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(outcome: Outcome, secs: f64) -> Observation {
        Observation {
            outcome,
            duration_secs: secs,
            at: 1_000,
            fetches: Vec::new(),
            stored: Vec::new(),
        }
    }

    #[test]
    fn counts_outcomes_fetches_and_last_errors() {
        let mut c = Counters::default();
        c.apply(&obs(Outcome::Hit, 0.0009));
        let mut o = obs(Outcome::StaleServed, 0.3);
        o.fetches.push(Fetch {
            source: "ecr".into(),
            result: UpstreamResult::ServerError,
            error: Some(ErrorClass::Unavailable),
        });
        c.apply(&o);
        o.at = 900; // an older observation folded late does not move the time back
        c.apply(&o);
        assert_eq!(c.execs["hit"], 1);
        assert_eq!(c.execs["stale_served"], 2);
        assert_eq!(c.upstream["ecr"]["5xx"], 2);
        assert_eq!(c.last_error["ecr"]["unavailable"], 1_000);
        assert_eq!(c.duration.count, 3);
        assert_eq!(c.duration.cumulative()[0], 1);
        assert_eq!(*c.duration.cumulative().last().unwrap(), 3);
        assert!(c.invalid().is_none());
    }

    #[test]
    fn histogram_puts_each_duration_under_its_first_bound() {
        let mut h = Histogram::default();
        for s in [0.0, 0.001, 0.0011, 29.9, 31.0, f64::NAN] {
            h.observe(s);
        }
        let cum = h.cumulative();
        assert_eq!(cum[0], 3); // 0, 0.001 and NaN (as 0)
        assert_eq!(cum[1], 4);
        assert_eq!(*cum.last().unwrap(), 5); // 31s is only in +Inf
        assert_eq!(h.count, 6);
    }

    #[test]
    fn expiries_keep_the_earliest_unexpired_per_source() {
        let mut c = Counters::default();
        let mut o = obs(Outcome::Miss, 0.1);
        for i in 0..(MAX_EXPIRIES_PER_SOURCE as i64 + 10) {
            o.stored.push(Stored {
                source: "google".into(),
                key: format!("{i:016x}"),
                expires_at: 2_000 + i,
            });
        }
        o.stored.push(Stored {
            source: "ecr".into(),
            key: "00000000000000aa".into(),
            expires_at: 500,
        });
        // neither a name nor a path is ever a key
        o.stored.push(Stored {
            source: "ecr".into(),
            key: "team-a/builder".into(),
            expires_at: 10,
        });
        c.apply(&o);
        c.prune(1_000);
        assert!(
            !c.expiry.contains_key("ecr"),
            "expired or foreign keys stay"
        );
        assert_eq!(c.expiry["google"].len(), MAX_EXPIRIES_PER_SOURCE);
        assert_eq!(c.earliest_expiry()["google"], 2_000);
        // a refresh replaces the key's expiry
        o.stored = vec![Stored {
            source: "google".into(),
            key: format!("{:016x}", 0),
            expires_at: 9_000,
        }];
        c.apply(&o);
        assert_eq!(c.earliest_expiry()["google"], 2_001);
    }

    #[test]
    fn a_tampered_file_is_invalid() {
        let good = Counters::default();
        assert!(good.invalid().is_none());
        let mut c = good.clone();
        c.execs.insert("hit\"} 1\nx".into(), 1);
        assert!(c.invalid().is_some());
        let mut c = good.clone();
        c.upstream.entry("Team A".into()).or_default();
        assert!(c.invalid().is_some());
        let mut c = good.clone();
        c.duration.buckets.pop();
        assert!(c.invalid().is_some());
        let mut c = good.clone();
        c.duration.buckets[0] = 5;
        assert!(c.invalid().is_some(), "more in buckets than counted");
        let mut c = good.clone();
        c.format = 0;
        assert!(c.invalid().is_some());
        let mut c = good;
        c.last_error
            .entry("ecr".into())
            .or_default()
            .insert("boom".into(), 1);
        assert!(c.invalid().is_some());
    }

    #[test]
    fn foreign_source_names_are_not_counted() {
        let mut c = Counters::default();
        let mut o = obs(Outcome::Miss, 0.1);
        o.fetches.push(Fetch {
            source: "registry.example/team".into(),
            result: UpstreamResult::Ok,
            error: None,
        });
        c.apply(&o);
        assert!(c.upstream.is_empty());
        assert!(is_source_id("ecr-public") && !is_source_id("") && !is_source_id("A"));
    }
}
