//! A serde deserializer for large CRM pages that does as little as it can for the fields a
//! connector does not read.
//!
//! A Pipedrive deal has about thirty fields and a connector reads nine. `serde_json` reads
//! every one of them as a token, including the ones the connector's struct ignores. This
//! deserializer reads the same documents into the same `#[derive(Deserialize)]` types, with
//! the same answers, but:
//!
//! * a field the type ignores is skipped by a checker that only validates it (strings are
//!   scanned eight bytes at a time for a quote, a backslash or a control byte; numbers,
//!   literals and nested values are checked for shape without being converted), and a
//!   struct's visitor never sees it: keys are compared with the struct's field names (serde
//!   passes them, aliases included) as they are read;
//! * strings without escapes are lent from the body, keys included, so reading a record
//!   allocates nothing unless the type owns something;
//! * it scans with explicit 64-bit words, so it does the same work per byte compiled for
//!   `wasm32` (whose `usize` is 32 bits) as natively.
//!
//! It accepts exactly the JSON that `serde_json::from_str` accepts (RFC 8259: no trailing
//! commas, no comments, no control bytes in strings, escapes and surrogate pairs checked,
//! numbers in the JSON grammar, nesting up to 128 levels, only whitespace after the value),
//! skipped fields included. What it does not do: map keys are read as strings only (use it
//! for structs and string-keyed maps); numbers are visited as `u64`, `i64` or `f64` as
//! `serde_json` does without its `arbitrary_precision` feature; and since unknown fields
//! never reach a struct's visitor, `#[serde(deny_unknown_fields)]` has no effect here.
//! [`crate::Decimal`] reads its number's own text here as it does with `serde_json`.
//!
//! Use it through [`crate::HttpResponse::skim_json`] or [`from_str`].

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer as _, Visitor};

/// The most nested arrays and objects a document may have (as `serde_json`).
const MAX_DEPTH: u32 = 128;

/// The name under which [`crate::Decimal`] asks for a number's own text (see
/// `Decimal::deserialize`); any other deserializer sees an ordinary newtype struct.
pub(crate) const DECIMAL_TOKEN: &str = "$oneup_connector_sdk::Decimal";

/// Why a document did not decode. Connectors report it as [`crate::codes::BAD_JSON`]; the
/// message is for tests and debugging.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skim::Error({})", self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Decodes `text` as one JSON value into `T`, which may borrow strings from `text`.
pub fn from_str<'a, T: de::Deserialize<'a>>(text: &'a str) -> Result<T> {
    let mut de = Skim { text, bytes: text.as_bytes(), pos: 0, depth: 0 };
    let value = T::deserialize(&mut de)?;
    match de.peek() {
        None => Ok(value),
        Some(_) => Err(de.fail("trailing characters")),
    }
}

/// The deserializer: a position in a document known to be UTF-8.
struct Skim<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

/// A string read from the document: lent when it has no escapes.
enum Str<'a> {
    Lent(&'a str),
    Owned(String),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Where the first byte at or after `at` is a quote, a backslash or a control byte (or
/// `bytes.len()`), eight bytes at a time.
#[inline]
fn find_string_stop(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = bytes.get(at..at + 8) {
        let w = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // Each term has the high bit of a byte set where that byte is zero (or below 0x20);
        // a borrow can only mark bytes after a real hit, so the lowest mark is exact.
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let hits = hits & HIGH;
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

fn hex_value(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some(u16::from(b - b'0')),
        b'a'..=b'f' => Some(u16::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u16::from(b - b'A' + 10)),
        _ => None,
    }
}

impl<'a> Skim<'a> {
    fn fail(&self, what: &str) -> Error {
        Error(format!("{what} at byte {}", self.pos))
    }

    /// The next byte that is not whitespace, not consumed.
    ///
    /// Every byte that can start or end a token is above the space character and every
    /// whitespace byte is at or below it: one comparison settles the common case (pages are
    /// usually sent without whitespace), without the jump table a `match` compiles to.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) if b > b' ' => Some(b),
            _ => self.peek_past_whitespace(),
        }
    }

    fn peek_past_whitespace(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b' ' | b'\n' | b'\t' | b'\r' => self.pos += 1,
                _ => return Some(b),
            }
        }
        None
    }

    /// Consumes `byte` after optional whitespace.
    #[inline]
    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(what))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.fail("invalid literal"))
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(self.fail("recursion limit exceeded")) } else { Ok(()) }
    }

    /// Reads the four hex digits of a `\u` escape (positioned after the `u`).
    fn hex4(&mut self) -> Result<u16> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or_else(|| self.fail("EOF in escape"))?;
        let mut value = 0u16;
        for &d in digits {
            value = value * 16 + hex_value(d).ok_or_else(|| self.fail("invalid escape"))?;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Reads a string, positioned at its opening quote.
    #[inline]
    fn read_str(&mut self) -> Result<Str<'a>> {
        let start = self.pos + 1;
        let stop = find_string_stop(self.bytes, start);
        match self.bytes.get(stop) {
            Some(b'"') => {
                self.pos = stop + 1;
                Ok(Str::Lent(&self.text[start..stop]))
            }
            Some(b'\\') => {
                self.pos = stop;
                self.read_escaped(start).map(Str::Owned)
            }
            Some(_) => {
                self.pos = stop;
                Err(self.fail("control character in string"))
            }
            None => {
                self.pos = stop;
                Err(self.fail("EOF in string"))
            }
        }
    }

    /// Reads an object's key, positioned at its opening quote: where its text is when it has
    /// no escapes (`start..stop`, not yet checked as `str` slicing would), else the
    /// unescaped text.
    #[inline]
    fn read_key(&mut self) -> Result<std::result::Result<(usize, usize), String>> {
        let start = self.pos + 1;
        let stop = find_string_stop(self.bytes, start);
        if self.bytes.get(stop) == Some(&b'"') {
            self.pos = stop + 1;
            return Ok(Ok((start, stop)));
        }
        // An escape (or a broken string, refused by `read_str`).
        match self.read_str()? {
            Str::Owned(key) => Ok(Err(key)),
            Str::Lent(key) => Ok(Err(key.to_owned())),
        }
    }

    /// The rest of a string with escapes, positioned at its first backslash.
    #[cold]
    fn read_escaped(&mut self, start: usize) -> Result<String> {
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = *self.bytes.get(self.pos).ok_or_else(|| self.fail("EOF in escape"))?;
                    self.pos += 1;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.fail("invalid escape")),
                    };
                    out.push(c);
                }
                Some(_) => {
                    let stop = find_string_stop(self.bytes, self.pos);
                    if stop == self.pos {
                        return Err(self.fail("control character in string"));
                    }
                    out.push_str(&self.text[self.pos..stop]);
                    self.pos = stop;
                }
                None => return Err(self.fail("EOF in string")),
            }
        }
    }

    /// A `\uXXXX` escape (and its low surrogate, if it is a high one), after the `u`.
    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.fail("lone leading surrogate in hex escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.fail("lone leading surrogate in hex escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.fail("lone trailing surrogate in hex escape")),
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| self.fail("invalid unicode escape"))
    }

    /// Skips a string, positioned at its opening quote, checking it as [`Skim::read_str`] does.
    #[inline]
    fn skip_str(&mut self) -> Result<()> {
        let mut at = self.pos + 1;
        loop {
            let stop = find_string_stop(self.bytes, at);
            match self.bytes.get(stop) {
                Some(b'"') => {
                    self.pos = stop + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos = stop + 1;
                    match self.bytes.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                        Some(b'u') => {
                            // Four hex digits; as in `serde_json`, a skipped string may hold
                            // a lone surrogate.
                            self.pos += 1;
                            self.hex4()?;
                        }
                        _ => return Err(self.fail("invalid escape")),
                    }
                    at = self.pos;
                }
                Some(_) => {
                    self.pos = stop;
                    return Err(self.fail("control character in string"));
                }
                None => {
                    self.pos = stop;
                    return Err(self.fail("EOF in string"));
                }
            }
        }
    }

    /// Consumes ASCII digits; how many.
    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Scans a number in the JSON grammar, positioned at its first byte; whether it has a
    /// fraction or an exponent.
    #[inline]
    fn scan_number(&mut self) -> Result<bool> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("invalid number")),
        }
        let mut float = false;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            float = true;
            if self.digits() == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            float = true;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        Ok(float)
    }

    /// Skips one value, checking it; positioned anywhere before it.
    fn skip_value(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"') => self.skip_str(),
            Some(b'-' | b'0'..=b'9') => self.scan_number().map(drop),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_value()?;
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.fail("expected `,` or `]`")),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        if self.peek() != Some(b'"') {
                            return Err(self.fail("key must be a string"));
                        }
                        self.skip_str()?;
                        self.expect(b':', "expected `:`")?;
                        self.skip_value()?;
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.fail("expected `,` or `}`")),
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(_) => Err(self.fail("expected value")),
            None => Err(self.fail("EOF while parsing a value")),
        }
    }

    /// Reads a number, positioned at its first byte, and visits it as `serde_json` does:
    /// `u64` if it is a non-negative integer that fits, `i64` if a negative one fits, `f64`
    /// otherwise (`-0` included). Floats are rounded correctly, as `serde_json` does with its
    /// `float_roundtrip` feature, which this crate turns on.
    fn visit_number<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value> {
        let start = self.pos;
        let float = self.scan_number()?;
        let text = &self.text[start..self.pos];
        if !float {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let mut value: u64 = 0;
            let mut fits = true;
            if digits.len() < 20 {
                // Nineteen digits always fit in a u64: plain arithmetic (a checked multiply
                // compiled for wasm32 is a 128-bit multiply, a call).
                for d in digits.bytes() {
                    value = value * 10 + u64::from(d - b'0');
                }
            } else {
                for d in digits.bytes() {
                    match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))) {
                        Some(v) => value = v,
                        None => {
                            fits = false;
                            break;
                        }
                    }
                }
            }
            if fits {
                if !negative {
                    return visitor.visit_u64(value);
                }
                // `-0` is a float for `serde_json` (it reads negative integers as `i64` only
                // below zero), so a field of an integer type refuses it.
                if value == 0 {
                    return visitor.visit_f64(-0.0);
                }
                if value <= i64::MAX as u64 + 1 {
                    return visitor.visit_i64((value as i64).wrapping_neg());
                }
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => visitor.visit_f64(f),
            _ => Err(self.fail("number out of range")),
        }
    }

    /// The text of a number, or the contents of a string (escapes as they are), for
    /// [`crate::Decimal`].
    fn raw_amount(&mut self) -> Result<&'a str> {
        match self.peek() {
            Some(b'"') => {
                let start = self.pos + 1;
                self.skip_str()?;
                Ok(&self.text[start..self.pos - 1])
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.scan_number()?;
                Ok(&self.text[start..self.pos])
            }
            _ => {
                self.skip_value()?;
                Err(self.fail("expected a decimal amount"))
            }
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Skim<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Strings and numbers first, by comparison; the rest through a `match`.
        let next = self.peek();
        if next == Some(b'"') {
            return match self.read_str()? {
                Str::Lent(s) => visitor.visit_borrowed_str(s),
                Str::Owned(s) => visitor.visit_string(s),
            };
        }
        if next.is_some_and(|b| b.is_ascii_digit() || b == b'-') {
            return self.visit_number(visitor);
        }
        match next {
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                let value = visitor.visit_seq(Seq { de: &mut *self, first: true })?;
                self.expect(b']', "trailing elements in array")?;
                self.depth -= 1;
                Ok(value)
            }
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let value = visitor.visit_map(Map { de: &mut *self, first: true })?;
                self.expect(b'}', "trailing entries in object")?;
                self.depth -= 1;
                Ok(value)
            }
            Some(_) => Err(self.fail("expected value")),
            None => Err(self.fail("EOF while parsing a value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Most skipped fields are strings and numbers: those are skipped here, in line;
        // the rest (literals, nested values) by the general skipper.
        match self.peek() {
            Some(b'"') => self.skip_str()?,
            Some(b) if b.is_ascii_digit() || b == b'-' => {
                self.scan_number()?;
            }
            _ => self.skip_value()?,
        }
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value> {
        if name == DECIMAL_TOKEN {
            let raw = self.raw_amount()?;
            return visitor.visit_borrowed_str(raw);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => match self.read_str()? {
                Str::Lent(s) => visitor.visit_enum(de::value::BorrowedStrDeserializer::new(s)),
                Str::Owned(s) => visitor.visit_enum(de::value::StringDeserializer::new(s)),
            },
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let value = visitor.visit_enum(Variant { de: &mut *self })?;
                self.expect(b'}', "expected `}` after an enum variant")?;
                self.depth -= 1;
                Ok(value)
            }
            _ => Err(self.fail("expected an enum as a string or a one-key object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.peek() != Some(b'{') {
            return self.deserialize_any(visitor);
        }
        self.enter()?;
        self.pos += 1;
        let lengths = fields.iter().fold(0u64, |mask, f| mask | 1u64.checked_shl(f.len() as u32).unwrap_or(0));
        let value = visitor.visit_map(StructMap { de: &mut *self, first: true, fields, lengths })?;
        self.expect(b'}', "trailing entries in object")?;
        self.depth -= 1;
        Ok(value)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

/// The entries of an object read as a struct: only the keys the struct names (its fields
/// and their aliases, serde's `FIELDS`) reach its visitor; the others are skipped here, with
/// their values, without a round trip through the visitor.
struct StructMap<'s, 'a> {
    de: &'s mut Skim<'a>,
    first: bool,
    fields: &'static [&'static str],
    /// Bit `n` set when some field name is `n` bytes long (names of 64 bytes or more are
    /// always compared).
    lengths: u64,
}

impl StructMap<'_, '_> {
    /// Whether `key` is one of the struct's field names.
    #[inline]
    fn wanted(&self, key: &[u8]) -> bool {
        let len = key.len();
        if len < 64 && self.lengths & (1u64 << len) == 0 {
            return false;
        }
        let first = key.first();
        self.fields.iter().any(|f| f.len() == len && f.as_bytes().first() == first && f.as_bytes() == key)
    }
}

impl<'de> de::MapAccess<'de> for StructMap<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        loop {
            let next = self.de.peek();
            if next == Some(b',') && !self.first {
                self.de.pos += 1;
                if self.de.peek() != Some(b'"') {
                    return Err(self.de.fail("key must be a string"));
                }
            } else if next == Some(b'}') {
                return Ok(None);
            } else if next != Some(b'"') || !self.first {
                return Err(self.de.fail("expected a key, `,` or `}`"));
            }
            self.first = false;
            let key = self.de.read_key()?;
            self.de.expect(b':', "expected `:`")?;
            let key = match key {
                // Only a wanted key becomes a `str` (its ends are quotes, so char boundaries).
                Ok((start, stop)) if self.wanted(&self.de.bytes[start..stop]) => {
                    seed.deserialize(de::value::BorrowedStrDeserializer::new(&self.de.text[start..stop]))
                }
                Err(k) if self.wanted(k.as_bytes()) => seed.deserialize(de::value::StringDeserializer::new(k)),
                _ => {
                    // Not a field: skipped, strings and numbers in line.
                    match self.de.peek() {
                        Some(b'"') => self.de.skip_str()?,
                        Some(b) if b.is_ascii_digit() || b == b'-' => {
                            self.de.scan_number()?;
                        }
                        _ => self.de.skip_value()?,
                    }
                    continue;
                }
            };
            return key.map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

/// The elements of an array.
struct Seq<'s, 'a> {
    de: &'s mut Skim<'a>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Seq<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let next = self.de.peek();
        if next == Some(b',') && !self.first {
            self.de.pos += 1;
        } else if next == Some(b']') {
            return Ok(None);
        } else if next.is_none() || !self.first {
            return Err(self.de.fail("expected `,` or `]`"));
        }
        self.first = false;
        seed.deserialize(&mut *self.de).map(Some)
    }
}

/// The entries of an object.
struct Map<'s, 'a> {
    de: &'s mut Skim<'a>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        // Comparisons in order of likelihood rather than a `match` (a jump table).
        let next = self.de.peek();
        if next == Some(b',') && !self.first {
            self.de.pos += 1;
            if self.de.peek() != Some(b'"') {
                return Err(self.de.fail("key must be a string"));
            }
        } else if next == Some(b'}') {
            return Ok(None);
        } else if next != Some(b'"') || !self.first {
            return Err(self.de.fail("expected a key, `,` or `}`"));
        }
        self.first = false;
        let key = seed.deserialize(Key { de: &mut *self.de })?;
        self.de.expect(b':', "expected `:`")?;
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

/// An object's key, positioned at its opening quote: always a string.
struct Key<'s, 'a> {
    de: &'s mut Skim<'a>,
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = Error;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.de.read_str()? {
            Str::Lent(s) => visitor.visit_borrowed_str(s),
            Str::Owned(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.skip_str()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// An enum written as a one-key object `{"variant": value}`, positioned after the `{`.
struct Variant<'s, 'a> {
    de: &'s mut Skim<'a>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        if self.de.peek() != Some(b'"') {
            return Err(self.de.fail("key must be a string"));
        }
        let variant = seed.deserialize(Key { de: &mut *self.de })?;
        self.de.expect(b':', "expected `:`")?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.de.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        self.de.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::json::{CursorPage, Text};
    use crate::money::Decimal;

    /// Both deserializers agree on `text`: the same value, or both refuse it.
    fn agree<'a, T>(text: &'a str)
    where
        T: Deserialize<'a> + PartialEq + fmt::Debug,
    {
        let ours = from_str::<T>(text);
        let theirs = serde_json::from_str::<T>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(_), Err(_)) => {}
            _ => panic!("skim {ours:?} vs serde_json {theirs:?} on {text}"),
        }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Deal<'a> {
        id: i64,
        owner_id: Option<i64>,
        value: Option<Decimal>,
        #[serde(borrow)]
        currency: Option<Text<'a>>,
        is_deleted: Option<bool>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Aliased {
        #[serde(alias = "identifier")]
        id: u32,
        #[serde(rename = "a_name_of_more_than_sixty_four_bytes_which_no_length_bit_can_stand_for")]
        long: Option<u32>,
        #[serde(skip)]
        skipped: u32,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Shape {
        Dot,
        Line(u32),
        Box { w: u32, h: u32 },
    }

    #[test]
    fn reads_what_serde_json_reads() {
        agree::<CursorPage<Deal<'_>>>(
            r#"{"success":true,"data":[{"id":1,"title":"Caf\u00e9 \"x\"","owner_id":7,"value":12750.5,
               "currency":"EUR","label_ids":[1,[2,{"a":null}]],"custom_fields":{},"probability":-1.5e-3,
               "is_deleted":false,"arr":null,"type":"call"},
               {"id":2,"owner_id":null,"value":"0.30","currency":"U\u0053D","is_deleted":true}],
               "additional_data":{"next_cursor":"abc"}}"#,
        );
        agree::<Vec<Deal<'_>>>(r#" [ { "id" : -9223372036854775808 , "owner_id" : 0 } ] "#);
        agree::<Vec<Aliased>>(
            r#"[{"identifier":1,"skipped":5},{"id":2,
               "a_name_of_more_than_sixty_four_bytes_which_no_length_bit_can_stand_for":3,
               "a_name_of_more_than_sixty_four_bytes_which_no_length_bit_can_stand_fox":4},[3,null],{"i\u0064":4}]"#,
        );
        agree::<Vec<Shape>>(r#"["Dot",{"Line":3},{"Box":{"w":1,"h":2}}]"#);
        agree::<Vec<u64>>("[9999999999999999999,18446744073709551615,0]");
        agree::<Vec<f64>>("[18446744073709551616,-9223372036854775809,99999999999999999999]");
        agree::<BTreeMap<String, f64>>(r#"{"a":1,"b":-0.5,"c":1e300,"d\n":18446744073709551616}"#);
        agree::<serde_json::Value>(r#"{"a":[1,-2,3.5,"x\ud83d\ude00",true,false,null,{}]}"#);
        agree::<Deal<'_>>(r#"{"id":1,"x":"\ud800","y":"\udc00"}"#);
        agree::<(u8, i32, String)>(r#"[255,-2147483648,"\/\b\f\n\r\t"]"#);
        // Found by the differential fuzzer (connector-sdk/tests/skim_differential.rs): `-0`
        // is the float -0.0, and floats are rounded correctly by both.
        agree::<serde_json::Value>("[-0,0,-0.0,-52905888081E-197,2068.954E-230]");
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let bad = [
            r#"{"id":1,}"#,
            r#"{"id":1 "owner_id":2}"#,
            r#"{"id":1,"x":01}"#,
            r#"{"id":1,"x":1.}"#,
            r#"{"id":1,"x":-}"#,
            r#"{"id":1,"x":1e}"#,
            r#"{"id":1,"x":tru}"#,
            r#"{"id":1,"x":"a\qb"}"#,
            "{\"id\":1,\"x\":\"a\tb\"}",
            r#"{"id":1,"x":"\u12"}"#,
            r#"{"id":1,"currency":"\ud800"}"#,
            r#"{"id":1,"currency":"\udc00x"}"#,
            r#"{"id":1,"currency":"\ud800\u0041"}"#,
            r#"{"id":1,"x":[1,2}"#,
            r#"{"id":1,"x":{"a"}}"#,
            r#"{"id":1,"x":{1:2}}"#,
            r#"{"id":1,"x":"open"#,
            r#"{"id":1} x"#,
            r#"{"id":1,"id":2}"#,
            r#"{"id":1,"\u0069d":2}"#,
            r#"{"id":1,"x":2,}"#,
            r#"{"id":1,,"x":2}"#,
            r#"{"id":1,"x" 2}"#,
            r#"{"id":1,"x":}"#,
            r#"{,"id":1}"#,
            r#"{"owner_id":1}"#,
            r#"{"id":"1"}"#,
            r#"{"id":1.5}"#,
            r#"{"id":-0}"#,
            r#"{"id":9223372036854775808}"#,
            r#"{"id":1,"value":true}"#,
            r#"{"id":1,"value":"12,5"}"#,
            r#"{"id":1,"currency":7}"#,
            "",
            "[",
        ];
        for text in bad {
            assert!(serde_json::from_str::<Deal<'_>>(text).is_err(), "serde_json accepts {text}");
            assert!(from_str::<Deal<'_>>(text).is_err(), "skim accepts {text}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(from_str::<serde_json::Value>(&deep).is_err());
        assert!(from_str::<serde::de::IgnoredAny>(&deep).is_err());
    }

    #[test]
    fn strings_are_lent_unless_escaped() {
        #[derive(Deserialize)]
        struct Row<'a> {
            #[serde(borrow)]
            a: Text<'a>,
            #[serde(borrow)]
            b: Text<'a>,
        }
        let row: Row<'_> = from_str(r#"{"a":"a fairly long plain string","b":"t\u00e9st"}"#).unwrap();
        assert!(matches!(row.a.0, std::borrow::Cow::Borrowed("a fairly long plain string")));
        assert_eq!(row.b.as_str(), "tést");
    }

    #[test]
    fn the_stop_finder_sees_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for stop in [b'"', b'\\', 0x1f, 0] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    assert_eq!(find_string_stop(&bytes, 0), at);
                }
            }
            assert_eq!(find_string_stop(&vec![0xc3; len], 0), len);
        }
    }
}
