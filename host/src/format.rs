//! Rendering numbers and instants for people: decimal amounts, money in a currency's minor
//! units, RFC 3339 instants (UTC, or with a tenant's offset). Shared by the API, the
//! scoring rules (frozen standings) and the CLI; depends on nothing of theirs.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Formats integer micro-units as a decimal string with at least two decimals.
pub fn micros_to_decimal(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let units = abs / 1_000_000;
    let frac = format!("{:06}", abs % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 { format!("{frac:0<2}") } else { frac.to_owned() };
    format!("{sign}{units}.{frac}")
}

/// The number of decimals (ISO 4217 minor units) a currency is shown with.
pub fn minor_units(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Formats micro-units rounded (half away from zero) to the currency's minor units:
/// `12_750_504_999` GBP is `"12750.50"`, in JPY `"12751"`.
pub fn money_to_decimal(micros: i128, currency: &str) -> String {
    let places = minor_units(currency);
    let step = 10i128.pow(6 - places);
    let half = step / 2;
    let rounded = if micros >= 0 { (micros + half) / step } else { (micros - half) / step };
    let sign = if rounded < 0 { "-" } else { "" };
    let abs = rounded.unsigned_abs();
    if places == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u128.pow(places);
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = places as usize)
}

/// A plain decimal (`-12.50`, `3`) as micro-units: sign, whole units and at most six
/// fraction digits; `None` for anything else (exponents, a leading `+` or `.`, more than
/// six decimals, more than 30 digits of units).
pub fn decimal_to_micros(text: &str) -> Option<i128> {
    let (negative, units, frac) = split_decimal(text)?;
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 {
        return None;
    }
    let units: i128 = units.parse().ok()?;
    let micros = units.checked_mul(1_000_000)?.checked_add(format!("{frac:0<6}").parse::<i128>().ok()?)?;
    Some(if negative { -micros } else { micros })
}

/// A plain decimal (`-12.50`, `3`): its sign, whole units and fraction digits.
pub fn split_decimal(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = !units.is_empty()
        && units.len() <= 30
        && all_digits(units)
        && all_digits(frac)
        && (frac.len() <= 30)
        && (!digits.contains('.') || !frac.is_empty());
    ok.then_some((negative, units, frac))
}

/// Epoch milliseconds as a timestamp, clamped to the range a timestamp can hold.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2025-06-02T10:01:55Z`, with `.mmm` when
/// the milliseconds are not zero).
pub fn rfc3339_ms(ms: i64) -> String {
    let ts = timestamp(ms);
    if ms.rem_euclid(1000) == 0 { format!("{ts:.0}") } else { format!("{ts:.3}") }
}

/// An instant as RFC 3339 with a zone's UTC offset at that instant
/// (`2025-06-01T00:00:00+01:00`).
pub fn instant_in(ms: i64, tz: &TimeZone) -> String {
    let ts = timestamp(ms);
    ts.display_with_offset(tz.to_offset(ts)).to_string()
}

/// Parses an RFC 3339 instant (with an offset) into epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|ts| ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_times() {
        assert_eq!(micros_to_decimal(48_000_000_000), "48000.00");
        assert_eq!(micros_to_decimal(12_750_500_000), "12750.50");
        assert_eq!(micros_to_decimal(1_234_567), "1.234567");
        assert_eq!(micros_to_decimal(-5_000_000), "-5.00");
        assert_eq!(money_to_decimal(12_750_504_999, "GBP"), "12750.50");
        assert_eq!(money_to_decimal(12_750_505_000, "GBP"), "12750.51");
        assert_eq!(money_to_decimal(-5_000, "GBP"), "-0.01");
        assert_eq!(money_to_decimal(12_750_500_000, "JPY"), "12751");
        assert_eq!(money_to_decimal(1_234_567, "KWD"), "1.235");
        assert_eq!(money_to_decimal(0, "EUR"), "0.00");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_748_858_515_000), "2025-06-02T10:01:55Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_100), "2000-02-29T00:00:00.100Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339_ms("2025-06-02T11:01:55+01:00"), Some(1_748_858_515_000));
        let london = TimeZone::get("Europe/London").expect("a zone");
        assert_eq!(instant_in(1_748_858_515_000, &london), "2025-06-02T11:01:55+01:00");
    }

    #[test]
    fn decimals_parse_back() {
        assert_eq!(decimal_to_micros("12750.50"), Some(12_750_500_000));
        assert_eq!(decimal_to_micros("-0.25"), Some(-250_000));
        assert_eq!(decimal_to_micros("7"), Some(7_000_000));
        assert_eq!(decimal_to_micros("1.2345678"), None);
        for bad in ["", "+5", ".5", "5.", "1e3", "abc"] {
            assert_eq!(decimal_to_micros(bad), None, "{bad}");
        }
        for micros in [0, 1, -1, 12_345_678, 1_500_000, -250_000] {
            assert_eq!(decimal_to_micros(&micros_to_decimal(micros)), Some(micros));
        }
    }
}
