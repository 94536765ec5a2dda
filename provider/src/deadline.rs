//! One deadline for the whole run. The kubelet kills a provider after one
//! minute; everything we do (stdin, lock waits, every network attempt and
//! retry) fits inside this.
//!
//! The deadline also carries the run's wall clock ([`Deadline::now_unix`]):
//! sources turn an upstream's `expires_in` into an instant with it, so the
//! clock is passed in with the deadline rather than read where it is used,
//! and a test can hand a source a fixed one ([`Deadline::with_clock`]).

use std::time::{Duration, Instant};

pub const DEFAULT: Duration = Duration::from_secs(20);
/// Always below the kubelet's one minute, leaving it time to log our error.
pub const MAX: Duration = Duration::from_secs(55);

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    at: Instant,
    clock: fn() -> i64,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline::with_clock(budget, crate::time::now_unix)
    }

    /// A deadline whose wall clock is `clock` (unix seconds).
    pub fn with_clock(budget: Duration, clock: fn() -> i64) -> Deadline {
        let start = Instant::now();
        Deadline {
            start,
            at: start + budget.min(MAX),
            clock,
        }
    }

    /// The run's wall clock, in unix seconds.
    pub fn now_unix(&self) -> i64 {
        (self.clock)()
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn budget(&self) -> Duration {
        self.at - self.start
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// What a step that ran out of this deadline says, in one place.
    pub fn timed_out(&self) -> String {
        format!(
            "timed out: no answer within the {}s deadline (--timeout)",
            self.budget().as_secs_f32()
        )
    }
}

/// Parses `20s`, `1500ms`, `1m`, `1m30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (examples: 20s, 1500ms, 1m)");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("20").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        for bad in ["", "s", "1h", "-1s", "1.5s", "20 s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_clock_comes_with_the_deadline() {
        let d = Deadline::with_clock(Duration::from_secs(1), || 1_700_000_000);
        assert_eq!(d.now_unix(), 1_700_000_000);
        let real = Deadline::after(Duration::from_secs(1)).now_unix();
        assert!((real - crate::time::now_unix()).abs() <= 1);
    }

    #[test]
    fn deadline_is_capped_below_the_kubelet_minute() {
        assert_eq!(Deadline::after(Duration::from_secs(600)).budget(), MAX);
    }
}
