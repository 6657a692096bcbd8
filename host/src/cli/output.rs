//! Rendering validated changes for people: JSON lines, decimal amounts, RFC 3339 times.

use serde_json::{Value as Json, json};

use crate::ingest::model::{Change, Value};

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

/// Formats epoch milliseconds as RFC 3339 UTC (`2025-06-02T10:01:55Z`, with `.mmm` when
/// the milliseconds are not zero).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One validated change as a JSON object.
pub fn change_json(change: &Change) -> Json {
    match change {
        Change::Upsert(f) => {
            let mut obj = json!({
                "op": "upsert",
                "metric": f.metric,
                "owner": f.owner.to_string(),
                "source": f.source.to_string(),
                "occurred_at": rfc3339_ms(f.occurred_at_ms),
            });
            match &f.value {
                Value::Count(n) => obj["count"] = json!(n),
                Value::Money { micros, currency } => {
                    obj["amount"] = json!(micros_to_decimal(i128::from(*micros)));
                    obj["currency"] = json!(currency.as_str());
                }
            }
            obj
        }
        Change::Retract { metric, source } => json!({
            "op": "retract",
            "metric": metric,
            "source": source.to_string(),
        }),
    }
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
    }
}
