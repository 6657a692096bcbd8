//! Time values as the fake CRMs hold and serve them.
//!
//! Everything is whole seconds in UTC. Formatting and parsing are written here (a few civil
//! calendar formulas) so that the fakes need no date library: RFC 3339 with `Z` for API v2,
//! Pipedrive's v1 `YYYY-MM-DD HH:MM:SS`, and plain `YYYY-MM-DD` dates.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Seconds in a minute.
pub const MINUTE: i64 = 60;
/// Seconds in an hour.
pub const HOUR: i64 = 60 * MINUTE;
/// Seconds in a day.
pub const DAY: i64 = 24 * HOUR;

/// An instant, in whole seconds since the Unix epoch (UTC).
///
/// `Display` and `Serialize` give RFC 3339 with a `Z` suffix, e.g. `2025-06-02T10:01:55Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `secs` seconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix(secs: i64) -> Self {
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// The wall clock, truncated to whole seconds. The fakes never call it themselves; it is
    /// here for callers that want a dataset anchored at the present (e.g. the demo).
    pub fn now_utc() -> Self {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        Self(secs)
    }

    /// A calendar date and time of day in UTC, or `None` if any part is out of range.
    pub fn from_ymd_hms(year: i32, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<Self> {
        let date = Date::from_ymd(year, month, day)?;
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        Some(Self(date.0 as i64 * DAY + h as i64 * HOUR + m as i64 * MINUTE + s as i64))
    }

    /// Parses an RFC 3339 date-time (`2025-06-01T00:00:00Z`, `…+02:00`, optional fraction).
    /// A fraction of a second is dropped.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        parse_rfc3339_parts(text).map(|(secs, _)| Self(secs))
    }

    /// Parses like [`Timestamp::parse_rfc3339`] but rounds a fraction of a second up, which is
    /// what a comparison against whole-second times needs (`t >= 10:00:00.5` is `t >= 10:00:01`).
    pub(crate) fn parse_rfc3339_ceil(text: &str) -> Option<Self> {
        parse_rfc3339_parts(text).map(|(secs, frac)| Self(secs + i64::from(frac)))
    }

    /// This instant moved by `secs` seconds.
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0 + secs)
    }

    /// The UTC calendar date of this instant.
    pub const fn date(self) -> Date {
        Date(self.0.div_euclid(DAY) as i32)
    }

    /// Pipedrive's v1 format, `YYYY-MM-DD HH:MM:SS` (UTC).
    pub fn v1(self) -> String {
        let secs = self.0.rem_euclid(DAY);
        format!("{} {:02}:{:02}:{:02}", self.date(), secs / HOUR, secs % HOUR / MINUTE, secs % MINUTE)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.rem_euclid(DAY);
        write!(f, "{}T{:02}:{:02}:{:02}Z", self.date(), secs / HOUR, secs % HOUR / MINUTE, secs % MINUTE)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A calendar date, in days since 1970-01-01. `Display` and `Serialize` give `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

impl Date {
    /// The date `days` days after 1970-01-01.
    pub const fn from_days(days: i32) -> Self {
        Self(days)
    }

    /// Days since 1970-01-01.
    pub const fn days(self) -> i32 {
        self.0
    }

    /// A calendar date, or `None` if it does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self(days_from_civil(year as i64, month, day) as i32))
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        Self::from_ymd(digits(&b[0..4])? as i32, digits(&b[5..7])?, digits(&b[8..10])?)
    }

    /// Midnight UTC at the start of this date.
    pub const fn start(self) -> Timestamp {
        Timestamp(self.0 as i64 * DAY)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0 as i64);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// Whole seconds of an RFC 3339 date-time, and whether it had a non-zero fraction.
fn parse_rfc3339_parts(text: &str) -> Option<(i64, bool)> {
    let b = text.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = Date::parse(&text[..10])?;
    let (h, m, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut frac = false;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let n = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        frac = after_dot[..n].iter().any(|&c| c != b'0');
        rest = &after_dot[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh @ .., b':', m1, m2] if oh.len() == 2 => {
            let (oh, om) = (digits(oh)?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 3600 + om * 60) as i64;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = date.start().unix() + (h * 3600 + m * 60 + s) as i64 - offset;
    Some((secs, frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = Timestamp::from_ymd_hms(2025, 6, 2, 10, 1, 55).unwrap();
        assert_eq!(t.to_string(), "2025-06-02T10:01:55Z");
        assert_eq!(t.v1(), "2025-06-02 10:01:55");
        assert_eq!(t.date().to_string(), "2025-06-02");
        assert_eq!(Timestamp::parse_rfc3339("2025-06-02T10:01:55Z"), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("2025-06-02T12:01:55+02:00"), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("2025-06-02T10:01:55.250Z"), Some(t));
        assert_eq!(Timestamp::parse_rfc3339_ceil("2025-06-02T10:01:55.250Z"), Some(t.plus_secs(1)));
        assert_eq!(Timestamp::parse_rfc3339_ceil("2025-06-02T10:01:55.000Z"), Some(t));
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2025-06-02",
            "2025-06-02T10:01:55",
            "2025-13-02T10:01:55Z",
            "2025-02-30T10:01:55Z",
            "2025-06-02T24:00:00Z",
            "2025-06-02 10:01:55Z",
            "2025-06-02T10:01:55.Z",
            "2025-06-02T10:01:55+0200",
            "garbage-and-more-garbage",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
