//! Go duration strings (`time.ParseDuration`), as used by `defaultCacheDuration`
//! and a response's `cacheDuration`: `"1h30m"`, `"90s"`, `"1.5h"`, `"-1m"`, `"0"`.

use std::fmt;

/// A signed duration in nanoseconds, the range of Go's `time.Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration {
    nanos: i64,
}

/// Why a string is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// Empty, or a number or unit is missing or malformed.
    Invalid(String),
    /// A unit Go does not know (`d`, `w`, ...).
    UnknownUnit { input: String, unit: String },
    /// Beyond about 292 years.
    Overflow(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Invalid(s) => write!(f, "invalid duration {s:?}"),
            DurationError::UnknownUnit { input, unit } => {
                write!(
                    f,
                    "unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m, h)"
                )
            }
            DurationError::Overflow(s) => write!(f, "invalid duration {s:?}: out of range"),
        }
    }
}

impl std::error::Error for DurationError {}

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration { nanos: 0 };

    pub const fn from_nanos(nanos: i64) -> GoDuration {
        GoDuration { nanos }
    }
    pub const fn from_secs(secs: i64) -> GoDuration {
        GoDuration {
            nanos: secs * 1_000_000_000,
        }
    }
    pub const fn nanos(self) -> i64 {
        self.nanos
    }
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// Parses a Go duration string.
    pub fn parse(input: &str) -> Result<GoDuration, DurationError> {
        let invalid = || DurationError::Invalid(input.to_string());
        let (negative, mut rest) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        if rest == "0" {
            return Ok(GoDuration::ZERO);
        }
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            // Whole part, then an optional fraction.
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let int_digits = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_digits = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                frac_digits = &after_dot[..n];
                rest = &after_dot[n..];
                if int_len == 0 && n == 0 {
                    return Err(invalid());
                }
            } else if int_len == 0 {
                return Err(invalid());
            }
            let unit_len = rest
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_text = &rest[..unit_len];
            rest = &rest[unit_len..];
            let unit = match unit_text {
                "" => return Err(invalid()),
                "ns" => NS,
                "us" | "\u{b5}s" | "\u{3bc}s" => US,
                "ms" => MS,
                "s" => S,
                "m" => M,
                "h" => H,
                other => {
                    return Err(DurationError::UnknownUnit {
                        input: input.to_string(),
                        unit: other.to_string(),
                    });
                }
            };
            let overflow = || DurationError::Overflow(input.to_string());
            let mut whole: u128 = 0;
            for d in int_digits.bytes() {
                whole = whole
                    .checked_mul(10)
                    .and_then(|w| w.checked_add(u128::from(d - b'0')))
                    .filter(|&w| w <= 1 << 63)
                    .ok_or_else(overflow)?;
            }
            let mut value = whole.checked_mul(unit).ok_or_else(overflow)?;
            // The fraction, computed as Go does: digits as an integer (while
            // it fits), then scaled in floating point.
            let mut f: u64 = 0;
            let mut scale: f64 = 1.0;
            let mut frac_overflow = false;
            for d in frac_digits.bytes() {
                if frac_overflow {
                    continue;
                }
                if f > (i64::MAX as u64) / 10 {
                    frac_overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(d - b'0');
                if y > 1 << 63 {
                    frac_overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            if f > 0 {
                // Truncation toward zero, like Go's conversion to an integer.
                value = value
                    .checked_add((f as f64 * (unit as f64 / scale)) as u128)
                    .ok_or_else(overflow)?;
            }
            total = total.checked_add(value).ok_or_else(overflow)?;
            if total > 1 << 63 {
                return Err(overflow());
            }
        }
        let nanos = if negative {
            -(i128::try_from(total).map_err(|_| DurationError::Overflow(input.to_string()))?)
        } else {
            i128::try_from(total).map_err(|_| DurationError::Overflow(input.to_string()))?
        };
        i64::try_from(nanos)
            .map(GoDuration::from_nanos)
            .map_err(|_| DurationError::Overflow(input.to_string()))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<GoDuration, DurationError> {
        GoDuration::parse(s)
    }
}

/// Go's `Duration.String()`: `"6h0m0s"`, `"1m30s"`, `"1.5s"`, `"500ms"`, `"0s"`.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let n = u128::from(self.nanos.unsigned_abs());
        if n == 0 {
            return f.write_str("0s");
        }
        let frac = |value: u128, unit: u128| -> String {
            let whole = value / unit;
            let rem = value % unit;
            if rem == 0 {
                return whole.to_string();
            }
            let width = unit.ilog10() as usize;
            let digits = format!("{rem:0width$}");
            format!("{whole}.{}", digits.trim_end_matches('0'))
        };
        if n < US {
            return write!(f, "{sign}{n}ns");
        }
        if n < MS {
            return write!(f, "{sign}{}\u{b5}s", frac(n, US));
        }
        if n < S {
            return write!(f, "{sign}{}ms", frac(n, MS));
        }
        let h = n / H;
        let m = (n % H) / M;
        let s = frac(n % M, S);
        if h > 0 {
            write!(f, "{sign}{h}h{m}m{s}s")
        } else if m > 0 {
            write!(f, "{sign}{m}m{s}s")
        } else {
            write!(f, "{sign}{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("5s", 5_000_000_000),
            ("30s", 30_000_000_000),
            ("1478s", 1_478_000_000_000),
            ("-5s", -5_000_000_000),
            ("+5s", 5_000_000_000),
            ("5.0s", 5_000_000_000),
            ("5.6s", 5_600_000_000),
            ("5.s", 5_000_000_000),
            (".5s", 500_000_000),
            ("1.004s", 1_004_000_000),
            ("100.00100s", 100_001_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12\u{b5}s", 12_000),
            ("12\u{3bc}s", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14_000_000_000),
            ("15m", 900_000_000_000),
            ("16h", 57_600_000_000_000),
            ("3h30m", 12_600_000_000_000),
            ("10.5s4m", 250_500_000_000),
            ("-2m3.4s", -123_400_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("39h9m14.425s", 140_954_425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 1_200_000_000_000),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("1m", 60_000_000_000),
            ("-1m", -60_000_000_000),
        ];
        for (s, want) in cases {
            assert_eq!(
                GoDuration::parse(s).map(GoDuration::nanos),
                Ok(*want),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for s in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "1.5.3s",
            "9223372036854775808ns",
            "3000000h",
            "1 h",
            "1H",
        ] {
            assert!(GoDuration::parse(s).is_err(), "{s:?}");
        }
        assert!(matches!(
            GoDuration::parse("2d"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (240_000_000_000, "4m0s"),
            (301_000_000_000, "5m1s"),
            (21_600_000_000_000, "6h0m0s"),
            (-60_000_000_000, "-1m0s"),
            (39_600_000_000_000, "11h0m0s"),
        ];
        for (n, want) in cases {
            assert_eq!(GoDuration::from_nanos(*n).to_string(), *want);
        }
    }
}
