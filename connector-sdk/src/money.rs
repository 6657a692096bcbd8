//! Money as the contract carries it: integer millionths ("micros") of a unit of an ISO 4217
//! currency, parsed from decimal text without ever passing through a float.
//!
//! CRMs send amounts as JSON numbers (`12750.5`) or strings (`"12750.50"`). [`Decimal`]
//! deserializes either from the JSON text itself, so `0.1` is exactly 100 000 micros and not
//! the nearest binary float.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::value::RawValue;

/// Why a value from the CRM could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueError {
    /// The text is not in the expected format.
    Syntax,
    /// The value is well-formed but does not fit (too large, too precise, or an impossible
    /// date).
    OutOfRange,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueError::Syntax => "the value is not in the expected format",
            ValueError::OutOfRange => "the value is out of range",
        })
    }
}

impl std::error::Error for ValueError {}

/// A currency code that looks like ISO 4217: three uppercase ASCII letters.
///
/// Whether the code really is in ISO 4217 is the host's check; an unknown code is dropped
/// and counted per change, it does not refuse the batch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Reads a code; surrounding whitespace is ignored, lowercase letters are refused.
    pub fn parse(code: &str) -> Result<Currency, ValueError> {
        match trim(code).as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(ValueError::Syntax),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money: integer micros of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// Millionths of a unit of `currency`.
    pub micros: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// An amount from micros and a currency.
    pub fn new(micros: i64, currency: Currency) -> Self {
        Money { micros, currency }
    }

    /// Reads an amount from decimal text (`"12750.5"`, `"-3"`, `"1.5e3"`) and a currency code.
    pub fn parse(amount: &str, currency: &str) -> Result<Money, ValueError> {
        Ok(Money { micros: parse_micros(amount)?, currency: Currency::parse(currency)? })
    }

    /// An amount from a deserialized [`Decimal`] and a currency code.
    pub fn from_decimal(amount: Decimal, currency: &str) -> Result<Money, ValueError> {
        Ok(Money { micros: amount.micros(), currency: Currency::parse(currency)? })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        let units = abs / 1_000_000;
        let frac = abs % 1_000_000;
        if frac == 0 {
            write!(f, "{sign}{units} {}", self.currency)
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{sign}{units}.{} {}", digits.trim_end_matches('0'), self.currency)
        }
    }
}

/// `text.trim()`, skipping the call when `text` neither starts nor ends with whitespace
/// (CRM values almost never do): `str::trim` decodes characters from both ends, which is
/// not free per field of a large page.
#[inline]
pub(crate) fn trim(text: &str) -> &str {
    match text.as_bytes() {
        [first, .., last] if (b'!'..0x80).contains(first) && (b'!'..0x80).contains(last) => text,
        [only] if (b'!'..0x80).contains(only) => text,
        _ => text.trim(),
    }
}

/// The most significant digits a decimal may have; beyond this it is refused as out of range.
const MAX_DIGITS: u32 = 36;

/// Reads decimal text into integer micros, exactly.
///
/// Accepts an optional sign, digits with an optional fraction, and an optional exponent
/// (`12750.5`, `-0.25`, `+3`, `1.5E3`, `.5`); surrounding whitespace is ignored. Digits beyond
/// the sixth decimal place are rounded half away from zero. Values beyond the range of `i64`
/// micros (about ±9.2 trillion units) are [`ValueError::OutOfRange`].
pub fn parse_micros(text: &str) -> Result<i64, ValueError> {
    let bytes = trim(text).as_bytes();
    match plain_micros(bytes) {
        Some(micros) => Ok(micros),
        None => general_micros(bytes),
    }
}

/// [`parse_micros`] for any accepted shape, in 128-bit arithmetic.
fn general_micros(bytes: &[u8]) -> Result<i64, ValueError> {
    let mut at = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        _ => false,
    };
    let mut mantissa: i128 = 0;
    let mut significant: u32 = 0;
    let mut fraction_digits: i64 = 0;
    let mut any_digit = false;
    let mut push = |digit: u8, mantissa: &mut i128| -> Result<(), ValueError> {
        if *mantissa == 0 && digit == 0 {
            return Ok(());
        }
        significant += 1;
        if significant > MAX_DIGITS {
            return Err(ValueError::OutOfRange);
        }
        *mantissa = *mantissa * 10 + i128::from(digit);
        Ok(())
    };
    while let Some(&b) = bytes.get(at) {
        if !b.is_ascii_digit() {
            break;
        }
        push(b - b'0', &mut mantissa)?;
        any_digit = true;
        at += 1;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        while let Some(&b) = bytes.get(at) {
            if !b.is_ascii_digit() {
                break;
            }
            push(b - b'0', &mut mantissa)?;
            fraction_digits += 1;
            any_digit = true;
            at += 1;
        }
    }
    if !any_digit {
        return Err(ValueError::Syntax);
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        let exp_negative = match bytes.get(at) {
            Some(b'-') => {
                at += 1;
                true
            }
            Some(b'+') => {
                at += 1;
                false
            }
            _ => false,
        };
        let start = at;
        while let Some(&b) = bytes.get(at) {
            if !b.is_ascii_digit() {
                break;
            }
            exponent = (exponent * 10 + i64::from(b - b'0')).min(10_000);
            at += 1;
        }
        if at == start {
            return Err(ValueError::Syntax);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if at != bytes.len() {
        return Err(ValueError::Syntax);
    }
    // The value is mantissa × 10^(exponent − fraction_digits); micros scale it by 10^6.
    let shift = exponent - fraction_digits + 6;
    let micros = if mantissa == 0 {
        0
    } else if shift >= 0 {
        let factor = u32::try_from(shift).ok().and_then(|s| 10i128.checked_pow(s)).ok_or(ValueError::OutOfRange)?;
        mantissa.checked_mul(factor).ok_or(ValueError::OutOfRange)?
    } else {
        match u32::try_from(-shift).ok().and_then(|s| 10i128.checked_pow(s)) {
            Some(divisor) => {
                let quotient = mantissa / divisor;
                let remainder = mantissa % divisor;
                if remainder * 2 >= divisor { quotient + 1 } else { quotient }
            }
            None => 0,
        }
    };
    let micros = if negative { -micros } else { micros };
    i64::try_from(micros).map_err(|_| ValueError::OutOfRange)
}

/// The common case of [`parse_micros`] in 64-bit arithmetic: optional `-`, 1 to 12 integer
/// digits, optionally `.` and 1 to 6 fraction digits, nothing else. `None` for anything
/// else, which the general (128-bit) path then reads. The general path multiplies in
/// `i128`, which compiled for `wasm32` is a call per digit.
fn plain_micros(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let (units, fraction) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    if units.is_empty() || units.len() > 12 || fraction.len() > 6 || (fraction.is_empty() && units.len() < digits.len())
    {
        return None;
    }
    let mut micros: i64 = 0;
    for &b in units.iter().chain(fraction) {
        if !b.is_ascii_digit() {
            return None;
        }
        micros = micros * 10 + i64::from(b - b'0');
    }
    for _ in fraction.len()..6 {
        micros *= 10;
    }
    Some(if negative { -micros } else { micros })
}

/// A decimal amount read exactly from JSON, as integer micros.
///
/// It deserializes from a JSON number (`12750.5`, using the number's own text) or from a
/// string holding a decimal (`"12750.50"`). It needs a deserializer that can lend its input,
/// such as `serde_json::from_slice` or `serde_json::from_str` (which every helper of the SDK
/// uses); a JSON `null` is refused, so use `Option<Decimal>` where the CRM may send one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Decimal(i64);

impl Decimal {
    /// A decimal of the given micros.
    pub fn from_micros(micros: i64) -> Self {
        Decimal(micros)
    }

    /// Reads decimal text (see [`parse_micros`]).
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        parse_micros(text).map(Decimal)
    }

    /// The value in micros.
    pub fn micros(self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the number's own text: `serde_json` lends it as a `RawValue` inside the
        /// newtype struct, [`crate::json::skim`] answers the SDK's own name with the text.
        struct DecimalVisitor;

        impl<'de> Visitor<'de> for DecimalVisitor {
            type Value = Decimal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount")
            }

            fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Decimal, D::Error> {
                let raw = <&'de RawValue>::deserialize(deserializer)?;
                let text = raw.get();
                let text = match text.strip_prefix('"') {
                    Some(quoted) => quoted.strip_suffix('"').unwrap_or(quoted),
                    None => text,
                };
                decimal_from_text(text)
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Decimal, E> {
                decimal_from_text(text)
            }
        }

        deserializer.deserialize_newtype_struct(crate::json::skim::DECIMAL_TOKEN, DecimalVisitor)
    }
}

/// A decimal from the text of a JSON number or the contents of a JSON string.
fn decimal_from_text<E: serde::de::Error>(text: &str) -> Result<Decimal, E> {
    parse_micros(text).map(Decimal).map_err(|e| E::custom(format_args!("expected a decimal amount: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_becomes_exact_micros() {
        let cases = [
            ("12750.5", 12_750_500_000),
            ("48000", 48_000_000_000),
            ("0.1", 100_000),
            ("-0.25", -250_000),
            ("+3", 3_000_000),
            (".5", 500_000),
            ("5.", 5_000_000),
            ("1.5e3", 1_500_000_000),
            ("1.5E-3", 1_500),
            ("0.0000005", 1),
            ("0.0000004", 0),
            ("-0.0000005", -1),
            ("0.1234565", 123_457),
            ("000012.000", 12_000_000),
            ("0e999999", 0),
            ("1e-400", 0),
            (" 7 ", 7_000_000),
            ("9223372036854.775807", i64::MAX),
        ];
        for (text, micros) in cases {
            assert_eq!(parse_micros(text), Ok(micros), "{text}");
        }
    }

    #[test]
    fn the_plain_path_agrees_with_the_general_one() {
        let texts = [
            "0",
            "7",
            "-7",
            "-0",
            "12750.5",
            "12750.50",
            "0.000001",
            "-0.25",
            "999999999999.999999",
            "1000000000000",
            "1.2345678",
            "5.",
            ".5",
            "-",
            "-.5",
            "1e3",
            "00012.000",
            "1.-2",
            "--1",
            "1..2",
            "",
            "1.5.",
        ];
        let mut plain = 0;
        for text in texts {
            if let Some(micros) = plain_micros(text.as_bytes()) {
                assert_eq!(Ok(micros), general_micros(text.as_bytes()), "{text}");
                plain += 1;
            }
        }
        assert_eq!(plain, 10);
    }

    #[test]
    fn trim_is_str_trim() {
        for text in ["", " ", "a", " a", "a ", "\u{a0}a", "a\u{3000}", "\ta\n", "\u{1f}a", "ab", "é", "12:00Z"] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn bad_decimal_text_is_refused() {
        for text in ["", "-", ".", "1.2.3", "1e", "abc", "1,5", "0x10", "NaN", "1e+"] {
            assert_eq!(parse_micros(text), Err(ValueError::Syntax), "{text}");
        }
        for text in ["9223372036854.775808", "1e30", &"1".repeat(40)] {
            assert_eq!(parse_micros(text), Err(ValueError::OutOfRange), "{text}");
        }
    }

    #[test]
    fn decimals_deserialize_from_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        struct Row {
            a: Decimal,
            b: Decimal,
            c: Option<Decimal>,
            d: Option<Decimal>,
        }
        let row: Row = serde_json::from_str(r#"{"a": 12750.5, "b": "0.30", "c": null, "d": 1e2}"#).unwrap();
        assert_eq!(row.a.micros(), 12_750_500_000);
        assert_eq!(row.b.micros(), 300_000);
        assert_eq!(row.c, None);
        assert_eq!(row.d, Some(Decimal::from_micros(100_000_000)));
        assert!(serde_json::from_str::<Decimal>("true").is_err());
        let slice: Decimal = serde_json::from_slice(b"0.7").unwrap();
        assert_eq!(slice.micros(), 700_000);
    }

    #[test]
    fn currencies_look_like_iso_codes() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert_eq!(Currency::parse("XYZ").unwrap().as_str(), "XYZ");
        for code in ["eur", "EURO", "EU", "", "E1R", "€"] {
            assert!(Currency::parse(code).is_err(), "{code}");
        }
    }

    #[test]
    fn money_displays_as_a_decimal() {
        let m = Money::parse("12750.5", "GBP").unwrap();
        assert_eq!(m.to_string(), "12750.5 GBP");
        assert_eq!(Money::parse("-3", "USD").unwrap().to_string(), "-3 USD");
    }
}
