//! Time: the wall clock, read in one place, and the date formats pullcred
//! reads or writes (RFC 3339, HTTP dates, SigV4 stamps), on one civil-date
//! algorithm (Howard Hinnant's `days_from_civil`). Everything but
//! [`now_unix`] is a pure function of its input.

use std::time::SystemTime;

/// The wall clock, unix seconds. Decision code takes `now` as an argument;
/// the flow and the sources' callers read it here.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds to `(YYYYMMDD, YYYYMMDDTHHMMSSZ)`, as SigV4 wants them.
pub fn amz_dates(unix: i64) -> (String, String) {
    let (y, mo, d) = civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    let date = format!("{y:04}{mo:02}{d:02}");
    let stamp = format!("{date}T{:02}{:02}{:02}Z", s / 3600, s % 3600 / 60, s % 60);
    (date, stamp)
}

/// RFC 3339 (`2014-10-02T15:01:23Z`, `...23.045123456Z`, `...+02:00`) to unix
/// seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest[1..].split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate) to unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == mon)? as u32
        + 1;
    let (d, y): (u32, i64) = (day.parse().ok()?, year.parse().ok()?);
    let t: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = t.as_slice() else {
        return None;
    };
    Some(days_from_civil(y, month, d) * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(
            amz_dates(1_582_848_000 + 3600 + 62),
            ("20200228".into(), "20200228T010102Z".into())
        );
        assert_eq!(
            amz_dates(951_782_400),
            ("20000229".into(), "20000229T000000Z".into())
        );
        for unix in [0, 951_782_400, 1_800_000_000, 4_102_444_800, -86_400] {
            let days = i64::div_euclid(unix, 86_400);
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2014-10-02T15:01:23Z"), Some(1_412_262_083));
        assert_eq!(
            parse_rfc3339("2014-10-02T15:01:23.045123456Z"),
            Some(1_412_262_083)
        );
        assert_eq!(
            parse_rfc3339("2014-10-02T17:01:23+02:00"),
            Some(1_412_262_083)
        );
        assert_eq!(
            parse_rfc3339("2014-10-02T14:01:23-01:00"),
            Some(1_412_262_083)
        );
        for bad in [
            "",
            "2014-10-02",
            "2014-10-02T15:01:23",
            "2014-13-02T15:01:23Z",
            "2014-10-02T25:01:23Z",
            "2014-10-02T15:01:23.Z",
            "2014-10-02T15:01:23+0200",
            "20x4-10-02T15:01:23Z",
            "+014-10-02T15:01:23Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
    }
}
