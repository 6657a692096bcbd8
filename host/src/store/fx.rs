//! Exchange rates and the one conversion rule, in exact integer arithmetic.
//!
//! A rate says how much of the tenant currency one unit of another currency is worth
//! (`"0.85"`: one EUR is worth 0.85 GBP for a GBP tenant). Converted amounts are rounded to
//! the nearest micro, halves away from zero, which is what Postgres' `round(numeric)` does,
//! so amounts converted in SQL and in Rust agree to the micro.

use std::fmt;
use std::str::FromStr;

use super::error::StoreError;

/// Most digits after the decimal point a rate may have.
pub const MAX_RATE_SCALE: u32 = 12;
/// Most significant digits a rate may have (so that `amount × rate` always fits an `i128`).
pub const MAX_RATE_DIGITS: usize = 18;

/// A positive exchange rate, an exact decimal: `mantissa / 10^scale`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FxRate {
    mantissa: u64,
    scale: u32,
}

impl FxRate {
    /// Parses a plain decimal such as `0.85` or `1` or `132.5` (no sign, no exponent; at most
    /// [`MAX_RATE_DIGITS`] significant digits, [`MAX_RATE_SCALE`] after the point; not zero).
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Invalid { what: "exchange rate" };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if s.contains('.') && frac.is_empty() {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > MAX_RATE_SCALE as usize {
            return Err(bad());
        }
        let digits: String = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() || digits.len() > MAX_RATE_DIGITS {
            return Err(bad());
        }
        let mantissa = digits.parse::<u64>().map_err(|_| bad())?;
        Ok(Self { mantissa, scale: frac.len() as u32 })
    }

    /// The rate 1 (the tenant currency itself).
    pub fn one() -> Self {
        Self { mantissa: 1, scale: 0 }
    }

    /// Converts an amount in micros of the rate's currency into micros of the tenant
    /// currency, rounding halves away from zero; `None` if the result does not fit an `i64`.
    pub fn convert(&self, micros: i64) -> Option<i64> {
        let product = i128::from(micros) * i128::from(self.mantissa);
        let divisor = 10i128.pow(self.scale);
        let quotient = product / divisor;
        let remainder = product % divisor;
        let rounded = if remainder.abs() * 2 >= divisor { quotient + product.signum() } else { quotient };
        i64::try_from(rounded).ok()
    }
}

impl fmt::Display for FxRate {
    /// The canonical form: no leading zeros, no trailing zeros after the point.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{int}.{frac}")
    }
}

impl fmt::Debug for FxRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FxRate({self})")
    }
}

impl FromStr for FxRate {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("0.85", "0.85"),
            ("1", "1"),
            ("1.000", "1"),
            ("007.50", "7.5"),
            ("0.000000000001", "0.000000000001"),
            ("123456789012345678", "123456789012345678"),
        ] {
            assert_eq!(FxRate::parse(input).unwrap().to_string(), canonical, "{input}");
        }
        for bad in
            ["", "0", "0.0", "-1", "+1", "1e3", ".5", "5.", "1,5", "0.0000000000001", "1234567890123456789", " 1"]
        {
            assert!(FxRate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn converts_exactly_with_halves_away_from_zero() {
        let r = FxRate::parse("0.85").unwrap();
        assert_eq!(r.convert(1_000_000), Some(850_000));
        assert_eq!(r.convert(-1_000_000), Some(-850_000));
        let half = FxRate::parse("0.5").unwrap();
        assert_eq!(half.convert(3), Some(2));
        assert_eq!(half.convert(-3), Some(-2));
        assert_eq!(half.convert(2), Some(1));
        assert_eq!(FxRate::parse("0.333").unwrap().convert(1), Some(0));
        assert_eq!(FxRate::one().convert(i64::MAX), Some(i64::MAX));
        assert_eq!(FxRate::parse("10").unwrap().convert(i64::MAX), None);
    }
}
