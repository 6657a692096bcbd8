//! Timestamps as the contract carries them: milliseconds since the Unix epoch, UTC.
//!
//! CRMs write times in a handful of shapes; this module reads the common ones without a
//! calendar crate:
//!
//! * RFC 3339 with `Z` or an offset (`2025-06-02T10:01:55Z`, `2025-06-02T12:01:55.250+02:00`;
//!   offsets without a colon, `+0200`, are accepted too);
//! * `YYYY-MM-DD HH:MM:SS`, taken as UTC (Pipedrive v1);
//! * `YYYY-MM-DD`, a date, taken as midnight UTC;
//! * epoch milliseconds, as a number or as digits in a string.
//!
//! It also writes RFC 3339, for "modified since" query parameters, and reads a bare date as
//! a [`CalendarDate`] for events the CRM records only by day.

use crate::money::ValueError;
use crate::types::CalendarDate;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Reads a time in any of the shapes the module documents, to epoch milliseconds: digits
/// alone are epoch milliseconds, a date alone is midnight UTC, and a date and time without a
/// zone is UTC.
pub fn parse_timestamp(text: &str) -> Result<i64, ValueError> {
    let text = crate::money::trim(text);
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        return text.parse::<i64>().map_err(|_| ValueError::OutOfRange);
    }
    if bytes.len() == 10 {
        return parse_date(text);
    }
    let (ms, zone) = date_time_ms(bytes)?;
    if zone.is_empty() { Ok(ms) } else { Ok(ms - zone_offset_ms(zone)?) }
}

/// Reads a date `YYYY-MM-DD` as midnight UTC, in epoch milliseconds.
pub fn parse_date(text: &str) -> Result<i64, ValueError> {
    let bytes = crate::money::trim(text).as_bytes();
    if bytes.len() != 10 {
        return Err(ValueError::Syntax);
    }
    let days = date_days(bytes)?;
    Ok(days * DAY_MS)
}

/// Reads `YYYY-MM-DD HH:MM:SS` (or with `T` between date and time, and an optional
/// fraction), taken as UTC, in epoch milliseconds.
pub fn parse_datetime_utc(text: &str) -> Result<i64, ValueError> {
    let bytes = crate::money::trim(text).as_bytes();
    let (ms, rest) = date_time_ms(bytes)?;
    if !rest.is_empty() {
        return Err(ValueError::Syntax);
    }
    Ok(ms)
}

/// Reads an RFC 3339 time with `Z` or a numeric offset, in epoch milliseconds.
///
/// A space may stand for the `T`, lowercase `t` and `z` are accepted, digits of a fraction
/// beyond milliseconds are dropped, and a time without any zone is refused (use
/// [`parse_datetime_utc`] for those).
pub fn parse_rfc3339(text: &str) -> Result<i64, ValueError> {
    let bytes = crate::money::trim(text).as_bytes();
    let (ms, zone) = date_time_ms(bytes)?;
    Ok(ms - zone_offset_ms(zone)?)
}

/// The offset from UTC of a zone suffix (`Z`, `+02:00`, `-0500`), in milliseconds.
fn zone_offset_ms(zone: &[u8]) -> Result<i64, ValueError> {
    let minutes = match zone {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let hours = two_digits(*h1, *h2)?;
            let minutes = two_digits(*m1, *m2)?;
            if hours > 23 || minutes > 59 {
                return Err(ValueError::OutOfRange);
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' { -total } else { total }
        }
        _ => return Err(ValueError::Syntax),
    };
    Ok(minutes * 60_000)
}

/// Writes epoch milliseconds as RFC 3339 in UTC: `2025-06-02T10:01:55Z`, with a
/// millisecond fraction only when it is not zero (`2025-06-02T10:01:55.250Z`).
pub fn format_rfc3339(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(DAY_MS);
    let in_day = epoch_ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let secs = in_day / 1000;
    let millis = in_day % 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if millis == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let month = i64::from(month);
    let day = i64::from(day);
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The number of days of a month (1 to 12) of the proleptic Gregorian calendar; 0 for a
/// month out of range.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(i64::from(year)) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Reads a date `YYYY-MM-DD` as a [`CalendarDate`] (no time zone attached), for
/// [`crate::OccurredAt::Date`].
pub fn parse_calendar_date(text: &str) -> Result<CalendarDate, ValueError> {
    let bytes = crate::money::trim(text).as_bytes();
    if bytes.len() != 10 {
        return Err(ValueError::Syntax);
    }
    let (year, month, day) = civil_from_days(date_days(bytes)?);
    let year = i32::try_from(year).map_err(|_| ValueError::OutOfRange)?;
    Ok(CalendarDate { year, month: month as u8, day: day as u8 })
}

/// Whether `year` is a leap year of the Gregorian calendar.
fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn digit(b: u8) -> Result<i64, ValueError> {
    if b.is_ascii_digit() { Ok(i64::from(b - b'0')) } else { Err(ValueError::Syntax) }
}

fn two_digits(a: u8, b: u8) -> Result<i64, ValueError> {
    Ok(digit(a)? * 10 + digit(b)?)
}

/// Days since the epoch of the date in the first 10 bytes (`YYYY-MM-DD`).
fn date_days(bytes: &[u8]) -> Result<i64, ValueError> {
    let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2, ..] = *bytes else {
        return Err(ValueError::Syntax);
    };
    let year = two_digits(y1, y2)? * 100 + two_digits(y3, y4)?;
    let month = two_digits(m1, m2)?;
    let day = two_digits(d1, d2)?;
    if !(1..=12).contains(&month) {
        return Err(ValueError::OutOfRange);
    }
    if day < 1 || day > i64::from(days_in_month(year as i32, month as u8)) {
        return Err(ValueError::OutOfRange);
    }
    Ok(days_from_civil(year, month as u32, day as u32))
}

/// Reads `YYYY-MM-DD?HH:MM:SS[.fff…]` and returns its epoch milliseconds taken as UTC, with
/// the bytes that follow (the zone, if any).
fn date_time_ms(bytes: &[u8]) -> Result<(i64, &[u8]), ValueError> {
    if bytes.len() < 19 {
        return Err(ValueError::Syntax);
    }
    let days = date_days(bytes)?;
    let [b'T' | b't' | b' ', h1, h2, b':', mi1, mi2, b':', s1, s2] = bytes[10..19] else {
        return Err(ValueError::Syntax);
    };
    let hour = two_digits(h1, h2)?;
    let minute = two_digits(mi1, mi2)?;
    let second = two_digits(s1, s2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(ValueError::OutOfRange);
    }
    let mut rest = &bytes[19..];
    let mut millis = 0;
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(ValueError::Syntax);
        }
        for (i, b) in fraction[..len.min(3)].iter().enumerate() {
            millis += digit(*b)? * [100, 10, 1][i];
        }
        rest = &fraction[len..];
    }
    let ms = days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    Ok((ms, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_zone() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2025-06-02T10:01:55Z"), Ok(1_748_858_515_000));
        assert_eq!(parse_rfc3339("2025-06-02T12:01:55.250+02:00"), Ok(1_748_858_515_250));
        assert_eq!(parse_rfc3339("2025-06-02T05:01:55.2509-0500"), Ok(1_748_858_515_250));
        assert_eq!(parse_rfc3339("2025-06-02 10:01:55z"), Ok(1_748_858_515_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Ok(-1));
    }

    #[test]
    fn bad_rfc3339_is_refused() {
        for text in [
            "2025-06-02T10:01:55",
            "2025-06-02T10:01Z",
            "2025-06-02T10:01:55+2:00",
            "2025-06-02T10:01:55.Z",
            "2025/06/02T10:01:55Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(text), Err(ValueError::Syntax), "{text}");
        }
        for text in
            ["2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "2025-06-02T24:00:00Z", "2025-06-02T10:01:55+24:00"]
        {
            assert_eq!(parse_rfc3339(text), Err(ValueError::OutOfRange), "{text}");
        }
    }

    #[test]
    fn the_other_shapes() {
        assert_eq!(parse_datetime_utc("2025-06-02 10:01:55"), Ok(1_748_858_515_000));
        assert_eq!(parse_date("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_timestamp("2025-06-02T10:01:55Z"), Ok(1_748_858_515_000));
        assert_eq!(parse_timestamp("2025-06-02 10:01:55"), Ok(1_748_858_515_000));
        assert_eq!(parse_timestamp("2025-06-02T12:01:55+02:00"), Ok(1_748_858_515_000));
        assert_eq!(parse_timestamp("2025-06-02T10:01:55 UTC"), Err(ValueError::Syntax));
        assert_eq!(parse_timestamp("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_timestamp("1749513600000"), Ok(1_749_513_600_000));
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, 1_748_858_515_000, 1_748_858_515_250, -1, 253_402_300_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms), "{ms}");
        }
        assert_eq!(format_rfc3339(1_748_858_515_000), "2025-06-02T10:01:55Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn civil_days_agree_both_ways() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
