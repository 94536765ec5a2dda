//! When to refresh a token and what `cacheDuration` to give the kubelet.
//!
//! Pure functions of plain values (unix seconds); the caller passes `now`, so
//! tests are exact.
//!
//! - A token is refreshed ahead of its expiry by a safety margin: a quarter of
//!   its life, at least 5 minutes and at most 1 hour (ECR 12h: refresh at 11h;
//!   Google 1h: at 45m; ACR 3h: at 2h15m).
//! - `cacheDuration` is the time until that refresh point, so the kubelet comes
//!   back exactly when a fresh token is due.
//! - A token with less than the margin left is served once with `0s` and not
//!   cached; an already-expired one the same, with a warning from the caller.
//! - A claimed life beyond 12 hours (a clock or upstream bug) is capped at 12h.
//! - **Jitter** ([`jittered`]): nodes booted together would otherwise refresh
//!   together forever, at the same fraction of every token's life. Each node
//!   and cache entry moves its refresh point earlier by a stable fraction of
//!   the margin (at most half the time to the unjittered point), so the
//!   refreshes of a fleet spread over the margin; never later, so never past
//!   expiry, and `cacheDuration` follows the jittered point.

use std::time::Duration;

pub const MIN_MARGIN: i64 = 5 * 60;
pub const MAX_MARGIN: i64 = 60 * 60;
pub const MAX_LIFETIME: i64 = 12 * 60 * 60;
/// When upstream fails but a cached token is still valid, the kubelet is asked
/// to come back this soon (or sooner, if the token expires first).
pub const STALE_SERVE_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub fetched_at: i64,
    /// Effective expiry, capped at `fetched_at + MAX_LIFETIME`.
    pub expires_at: i64,
    pub refresh_at: i64,
    /// The claimed expiry was beyond the cap.
    pub capped: bool,
}

pub fn schedule(fetched_at: i64, claimed_expiry: i64) -> Schedule {
    let cap = fetched_at.saturating_add(MAX_LIFETIME);
    let expires_at = claimed_expiry.min(cap);
    let life = expires_at.saturating_sub(fetched_at).max(0);
    let margin = (life / 4).clamp(MIN_MARGIN, MAX_MARGIN);
    Schedule {
        fetched_at,
        expires_at,
        refresh_at: expires_at.saturating_sub(margin),
        capped: claimed_expiry > cap,
    }
}

/// `s` with its refresh point moved earlier by `fraction` (0 to 1) of the
/// jitter window: the margin, but at most half the time from the fetch to
/// the unjittered refresh point (a short-lived token keeps at least half
/// its cache time). The caller derives `fraction` from the node and the
/// entry, so that it is stable across execs of one node and spread across
/// nodes.
pub fn jittered(s: Schedule, fraction: f64) -> Schedule {
    let margin = s.expires_at - s.refresh_at;
    let window = margin.min((s.refresh_at - s.fetched_at) / 2).max(0);
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let shift = ((window as f64) * fraction) as i64;
    Schedule {
        refresh_at: s.refresh_at - shift.clamp(0, window),
        ..s
    }
}

/// Credentials with no expiry of their own (static files, Secrets Manager):
/// fresh for `ttl`, then read and checked again. Their "expiry" is the end of
/// that window; there is no margin, since nothing upstream expires.
pub fn fixed(fetched_at: i64, ttl: Duration) -> Schedule {
    let end = fetched_at.saturating_add(ttl.as_secs().min(MAX_LIFETIME as u64) as i64);
    Schedule {
        fetched_at,
        expires_at: end,
        refresh_at: end,
        capped: false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before the refresh point: serve, cacheDuration until the refresh point.
    Fresh {
        cache_duration: Duration,
    },
    /// Past the refresh point but not expired: refresh; serve only as a fallback.
    Stale {
        remaining: Duration,
    },
    Expired,
}

pub fn freshness(s: &Schedule, now: i64) -> Freshness {
    if now >= s.expires_at {
        Freshness::Expired
    } else if now < s.refresh_at {
        Freshness::Fresh {
            cache_duration: secs(s.refresh_at - now),
        }
    } else {
        Freshness::Stale {
            remaining: secs(s.expires_at - now),
        }
    }
}

/// cacheDuration for a still-valid token served because upstream failed.
pub fn stale_serve_duration(s: &Schedule, now: i64) -> Duration {
    secs((s.expires_at - now).clamp(0, STALE_SERVE_SECS))
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_moves_the_refresh_point_earlier_within_the_margin() {
        let s = schedule(T0, T0 + 12 * H);
        assert_eq!(jittered(s, 0.0), s);
        assert_eq!(jittered(s, 1.0).refresh_at, T0 + 10 * H);
        assert_eq!(jittered(s, 0.5).refresh_at, T0 + 10 * H + H / 2);
        assert_eq!(jittered(s, 7.0).refresh_at, T0 + 10 * H, "clamped");
        assert_eq!(jittered(s, f64::NAN), s);
        // a 10-minute token (margin 5m, refresh at 5m) keeps at least 2m30s
        let short = schedule(T0, T0 + 600);
        assert_eq!(jittered(short, 1.0).refresh_at, T0 + 150);
        // never later than unjittered (so never past expiry); never moved
        // before the fetch (a token inside its margin already is: unmoved)
        for f in [0.0, 0.3, 0.99, 1.0] {
            for life in [60, 300, 3600, 12 * H, 48 * H] {
                let s = schedule(T0, T0 + life);
                let j = jittered(s, f);
                assert!(j.refresh_at <= s.refresh_at, "{life} {f}");
                assert!(j.refresh_at >= T0.min(s.refresh_at), "{life} {f}");
            }
        }
    }

    const H: i64 = 3600;
    const T0: i64 = 1_800_000_000;

    #[test]
    fn ecr_twelve_hours_refreshes_at_eleven() {
        let s = schedule(T0, T0 + 12 * H);
        assert_eq!(s.refresh_at, T0 + 11 * H);
        assert_eq!(
            freshness(&s, T0),
            Freshness::Fresh {
                cache_duration: Duration::from_secs(11 * 3600)
            }
        );
        assert_eq!(
            freshness(&s, T0 + 10 * H),
            Freshness::Fresh {
                cache_duration: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            freshness(&s, T0 + 11 * H),
            Freshness::Stale {
                remaining: Duration::from_secs(3600)
            }
        );
        assert_eq!(freshness(&s, T0 + 12 * H), Freshness::Expired);
        assert!(!s.capped);
    }

    #[test]
    fn google_hour_refreshes_at_forty_five_minutes() {
        let s = schedule(T0, T0 + H);
        assert_eq!(s.refresh_at, T0 + 45 * 60);
    }

    #[test]
    fn short_tokens_keep_at_least_five_minutes() {
        let s = schedule(T0, T0 + 10 * 60);
        assert_eq!(s.refresh_at, T0 + 5 * 60);
        // less than the margin left: never fresh
        let s = schedule(T0, T0 + 4 * 60);
        assert!(matches!(freshness(&s, T0), Freshness::Stale { .. }));
    }

    #[test]
    fn past_expiry_is_expired_at_once() {
        // moto's ECR tokens expire in 2015
        let s = schedule(T0, 1_430_000_000);
        assert_eq!(freshness(&s, T0), Freshness::Expired);
    }

    #[test]
    fn decades_away_is_capped() {
        let s = schedule(T0, T0 + 30 * 365 * 24 * H);
        assert!(s.capped);
        assert_eq!(s.expires_at, T0 + 12 * H);
        assert_eq!(s.refresh_at, T0 + 11 * H);
        let s = schedule(T0, i64::MAX);
        assert_eq!(s.expires_at, T0 + 12 * H);
    }

    #[test]
    fn fixed_windows_have_no_margin() {
        let s = fixed(T0, Duration::from_secs(300));
        assert_eq!(
            freshness(&s, T0),
            Freshness::Fresh {
                cache_duration: Duration::from_secs(300)
            }
        );
        assert_eq!(freshness(&s, T0 + 300), Freshness::Expired);
        assert_eq!(
            fixed(T0, Duration::from_secs(u64::MAX)).expires_at,
            T0 + 12 * H
        );
    }

    #[test]
    fn stale_serve_is_short_and_never_past_expiry() {
        let s = schedule(T0, T0 + 12 * H);
        assert_eq!(
            stale_serve_duration(&s, T0 + 11 * H),
            Duration::from_secs(60)
        );
        assert_eq!(
            stale_serve_duration(&s, T0 + 12 * H - 20),
            Duration::from_secs(20)
        );
        assert_eq!(stale_serve_duration(&s, T0 + 13 * H), Duration::ZERO);
    }
}
