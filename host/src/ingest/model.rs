//! The values of ingestion, before and after the host has checked them.
//!
//! `Raw*` types mirror what a connector hands over through the WIT contract, strings and
//! all; they exist only between the sandbox and the validator and are never stored or
//! logged. Everything else here is the validated form: declared slugs, ISO 4217 currencies
//! and keyed hashes in place of CRM ids. Only validated values go on to the engine and the
//! store, so the types themselves say which side of the boundary a value is on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::currency;

/// The most metrics a connector may declare.
pub const MAX_METRICS: usize = 256;
/// The most log codes a connector may declare.
pub const MAX_LOG_CODES: usize = 256;
/// The most cursor keys a connector may declare, and the most marks a cursor may hold.
pub const MAX_CURSOR_MARKS: usize = 32;
/// The longest slug, log code or cursor key, in bytes.
pub const MAX_SLUG_LEN: usize = 48;

/// Whether `s` is shaped like a slug, log code or cursor key: `^[a-z][a-z0-9_]{0,47}$`.
pub fn is_slug(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            bytes.len() <= MAX_SLUG_LEN
                && first.is_ascii_lowercase()
                && rest.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }
        None => false,
    }
}

/// How a metric's values add up (the WIT `metric-kind`); serialised as `count` or `money`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Each event counts a whole number of things.
    Count,
    /// Each event carries an amount of money in some currency.
    Money,
}

/// Why a connector's declared vocabulary was refused at install.
///
/// Indexes point into the list the entry came from; the entries themselves are not quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VocabularyError {
    /// A metric slug is not slug-shaped.
    #[error("metric {index} does not have a valid slug")]
    BadMetricSlug {
        /// The position of the metric in the declared list.
        index: usize,
    },
    /// A metric slug is declared twice.
    #[error("metric {index} repeats an earlier slug")]
    DuplicateMetric {
        /// The position of the repeated metric in the declared list.
        index: usize,
    },
    /// A log code is not slug-shaped.
    #[error("log code {index} is not a valid code")]
    BadLogCode {
        /// The position of the code in the declared list.
        index: usize,
    },
    /// A cursor key is not slug-shaped.
    #[error("cursor key {index} is not a valid key")]
    BadCursorKey {
        /// The position of the key in the declared list.
        index: usize,
    },
    /// A list is longer than its cap.
    #[error("too many {what}: {len}, at most {max}")]
    TooMany {
        /// Which list (`metrics`, `log_codes` or `cursor_keys`).
        what: &'static str,
        /// How many entries were declared.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// A connector's closed vocabulary: the only connector strings the host ever keeps or logs.
///
/// Reviewed by the operator at install. Every entry is slug-shaped (`^[a-z][a-z0-9_]{0,47}$`).
/// Repeated log codes or cursor keys are harmless and collapse; a repeated metric slug is
/// refused, because two declarations could disagree on the kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vocabulary {
    /// Declared metric slugs and their kinds.
    metrics: BTreeMap<String, MetricKind>,
    /// Declared log and error codes.
    log_codes: BTreeSet<String>,
    /// Declared cursor keys.
    cursor_keys: BTreeSet<String>,
}

impl Vocabulary {
    /// Checks and collects a connector's declarations.
    pub fn new(
        metrics: impl IntoIterator<Item = (String, MetricKind)>,
        log_codes: impl IntoIterator<Item = String>,
        cursor_keys: impl IntoIterator<Item = String>,
    ) -> Result<Self, VocabularyError> {
        let mut vocab = Self::default();
        for (index, (slug, kind)) in metrics.into_iter().enumerate() {
            if index >= MAX_METRICS {
                return Err(too_many("metrics", index + 1, MAX_METRICS));
            }
            if !is_slug(&slug) {
                return Err(VocabularyError::BadMetricSlug { index });
            }
            if vocab.metrics.insert(slug, kind).is_some() {
                return Err(VocabularyError::DuplicateMetric { index });
            }
        }
        for (index, code) in log_codes.into_iter().enumerate() {
            if index >= MAX_LOG_CODES {
                return Err(too_many("log_codes", index + 1, MAX_LOG_CODES));
            }
            if !is_slug(&code) {
                return Err(VocabularyError::BadLogCode { index });
            }
            vocab.log_codes.insert(code);
        }
        for (index, key) in cursor_keys.into_iter().enumerate() {
            if index >= MAX_CURSOR_MARKS {
                return Err(too_many("cursor_keys", index + 1, MAX_CURSOR_MARKS));
            }
            if !is_slug(&key) {
                return Err(VocabularyError::BadCursorKey { index });
            }
            vocab.cursor_keys.insert(key);
        }
        Ok(vocab)
    }

    /// The kind of a declared metric, or `None` if `slug` is not declared.
    pub fn metric_kind(&self, slug: &str) -> Option<MetricKind> {
        self.metrics.get(slug).copied()
    }

    /// The declared metrics and their kinds.
    pub fn metrics(&self) -> &BTreeMap<String, MetricKind> {
        &self.metrics
    }

    /// Whether `code` is a declared log or error code (safe to log verbatim if so).
    pub fn has_log_code(&self, code: &str) -> bool {
        self.log_codes.contains(code)
    }

    /// The declared log and error codes.
    pub fn log_codes(&self) -> &BTreeSet<String> {
        &self.log_codes
    }

    /// Whether `key` is a declared cursor key.
    pub fn has_cursor_key(&self, key: &str) -> bool {
        self.cursor_keys.contains(key)
    }

    /// The declared cursor keys.
    pub fn cursor_keys(&self) -> &BTreeSet<String> {
        &self.cursor_keys
    }
}

/// Builds the error for an over-long declared list. It reports at least `len` entries: the
/// check stops reading at the first one over the cap.
fn too_many(what: &'static str, len: usize, max: usize) -> VocabularyError {
    VocabularyError::TooMany { what, len, max }
}

/// A value as a connector sent it (the WIT `amount`). Never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    /// A count.
    Count(i64),
    /// An amount of money in millionths of a unit of `currency`, a code the connector chose.
    Money {
        /// Millionths of a currency unit.
        micros: i64,
        /// The currency code as sent, not yet checked.
        currency: String,
    },
}

/// A change as a connector sent it (the WIT `kpi-change`). Never stored or logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawChange {
    /// A fact created or replaced.
    Upsert {
        /// The metric slug as sent.
        metric: String,
        /// The CRM owner id as sent.
        owner: String,
        /// The CRM record id as sent.
        source_id: String,
        /// When it happened, as sent.
        occurred_at: RawOccurredAt,
        /// The value as sent.
        value: RawValue,
    },
    /// A fact withdrawn.
    Retract {
        /// The metric slug as sent.
        metric: String,
        /// The CRM record id as sent.
        source_id: String,
    },
}

/// When a change happened, as a connector sent it (the WIT `occurred-at`): an instant, or
/// a calendar day that the validator places at the start of that day in the tenant's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawOccurredAt {
    /// Milliseconds since the Unix epoch.
    Instant(i64),
    /// A day of the proleptic Gregorian calendar, not yet checked (`2025-02-30` may arrive).
    Date {
        /// The year as sent.
        year: i32,
        /// The month as sent (1 to 12 when valid).
        month: u8,
        /// The day as sent (1 to the month's length when valid).
        day: u8,
    },
}

impl From<i64> for RawOccurredAt {
    fn from(ms: i64) -> Self {
        Self::Instant(ms)
    }
}

/// A snapshot window as a connector declared it (the WIT `snapshot-window`), unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshotWindow {
    /// The metric slugs as sent.
    pub metrics: Vec<String>,
    /// Start of the window, inclusive, in milliseconds since the Unix epoch.
    pub from_ms: i64,
    /// End of the window, exclusive.
    pub to_ms: i64,
}

/// A checked snapshot window: 1 to 16 declared metrics (no repeats, in slug order) and
/// `from_ms < to_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWindow {
    pub(crate) metrics: Vec<String>,
    pub(crate) from_ms: i64,
    pub(crate) to_ms: i64,
}

impl SnapshotWindow {
    /// The declared metric slugs it covers, in slug order.
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// Start of the window, inclusive, in milliseconds since the Unix epoch.
    pub fn from_ms(&self) -> i64 {
        self.from_ms
    }

    /// End of the window, exclusive.
    pub fn to_ms(&self) -> i64 {
        self.to_ms
    }

    /// Whether the instant `at_ms` falls in `[from, to)`.
    pub fn contains(&self, at_ms: i64) -> bool {
        (self.from_ms..self.to_ms).contains(&at_ms)
    }
}

/// A completed snapshot: the window and, per metric of it, the source hashes upserted since
/// it began (sorted, no repeats). Committing it retracts every stored fact of the
/// integration of those metrics in the window whose source hash is not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The window.
    pub window: SnapshotWindow,
    /// Per metric of the window, in slug order: the sources seen, sorted and distinct (made
    /// only by [`super::snapshot::SnapshotTracker`], which keeps that order).
    pub(crate) seen: Vec<(String, Vec<KeyedHash>)>,
}

impl Snapshot {
    /// Whether an upsert of `metric` from `source` was seen.
    pub fn saw(&self, metric: &str, source: &KeyedHash) -> bool {
        self.seen_of(metric).binary_search(source).is_ok()
    }

    /// The sources seen for `metric` (sorted; empty for a metric outside the window).
    pub fn seen_of(&self, metric: &str) -> &[KeyedHash] {
        self.seen.iter().find(|(m, _)| m == metric).map(|(_, s)| s.as_slice()).unwrap_or(&[])
    }

    /// How many distinct (metric, source) upserts were seen.
    pub fn upserts(&self) -> usize {
        self.seen.iter().map(|(_, s)| s.len()).sum()
    }
}

/// An active ISO 4217 alphabetic currency code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The currency for `code` if it is exactly an active ISO 4217 code (`EUR`, not `eur`).
    pub fn parse(code: &str) -> Option<Self> {
        let bytes = <[u8; 3]>::try_from(code.as_bytes()).ok()?;
        currency::is_active_code(&bytes).then_some(Self(bytes))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only active codes, which are uppercase ASCII, are ever constructed.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// The code's three bytes.
    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// A keyed hash standing in for a CRM id: the first 16 bytes of an HMAC-SHA-256 under the
/// tenant's key (see [`super::pseudonym`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyedHash([u8; 16]);

impl KeyedHash {
    /// Wraps bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The hash's bytes, for storage.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The hash's bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the 32-digit hexadecimal form written by `Display`.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Display for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedHash({self})")
    }
}

/// A validated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A count, never negative.
    Count(i64),
    /// An amount of money, within the configured range.
    Money {
        /// Millionths of a currency unit.
        micros: i64,
        /// The currency.
        currency: Currency,
    },
}

/// A validated KPI fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// A declared metric slug.
    pub metric: String,
    /// The keyed hash of the CRM owner id.
    pub owner: KeyedHash,
    /// The keyed hash of the CRM record id.
    pub source: KeyedHash,
    /// When it happened, in milliseconds since the Unix epoch, within the configured range.
    pub occurred_at_ms: i64,
    /// The value, of the metric's kind.
    pub value: Value,
}

/// A validated change to the KPI facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A fact created or replaced (keyed by metric and source).
    Upsert(Fact),
    /// A fact withdrawn.
    Retract {
        /// A declared metric slug.
        metric: String,
        /// The keyed hash of the CRM record id.
        source: KeyedHash,
    },
}

/// A cursor as a connector sent it: keys and numbers, unchecked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawCursor(pub Vec<(String, i64)>);

/// A validated cursor: at most [`MAX_CURSOR_MARKS`] marks, each under a declared key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor(BTreeMap<String, i64>);

impl Cursor {
    /// Wraps marks that were checked by the validator.
    pub(crate) fn from_checked(marks: BTreeMap<String, i64>) -> Self {
        Self(marks)
    }

    /// The value of the mark under `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.0.get(key).copied()
    }

    /// The marks as key and value, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(key, value)| (key.as_str(), *value))
    }

    /// The marks, ordered by key.
    pub fn marks(&self) -> &BTreeMap<String, i64> {
        &self.0
    }

    /// The marks, by value.
    pub fn into_marks(self) -> BTreeMap<String, i64> {
        self.0
    }

    /// The number of marks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the cursor has no marks.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn slug_shape() {
        for ok in ["a", "deals_won", "revenue2", &"a".repeat(48)] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", "Deals", "_a", "1a", "deals-won", "deals won", "é", &"a".repeat(49)] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    #[test]
    fn vocabulary_accepts_declarations() {
        let vocab = Vocabulary::new(
            [(s("deals_won"), MetricKind::Count), (s("revenue"), MetricKind::Money)],
            [s("http_failed"), s("http_failed")],
            [s("deals_since")],
        )
        .unwrap();
        assert_eq!(vocab.metric_kind("deals_won"), Some(MetricKind::Count));
        assert_eq!(vocab.metric_kind("revenue"), Some(MetricKind::Money));
        assert_eq!(vocab.metric_kind("other"), None);
        assert!(vocab.has_log_code("http_failed"));
        assert_eq!(vocab.log_codes().len(), 1);
        assert!(vocab.has_cursor_key("deals_since"));
        assert!(!vocab.has_cursor_key("other"));
        assert_eq!(vocab.metrics().len(), 2);
        assert_eq!(vocab.cursor_keys().len(), 1);
    }

    #[test]
    fn vocabulary_refuses_bad_entries() {
        let none = Vec::<String>::new;
        assert_eq!(
            Vocabulary::new([(s("ok"), MetricKind::Count), (s("Bad"), MetricKind::Count)], none(), none()),
            Err(VocabularyError::BadMetricSlug { index: 1 })
        );
        assert_eq!(
            Vocabulary::new([(s("ok"), MetricKind::Count), (s("ok"), MetricKind::Money)], none(), none()),
            Err(VocabularyError::DuplicateMetric { index: 1 })
        );
        assert_eq!(
            Vocabulary::new([], [s("fine"), s("not fine")], none()),
            Err(VocabularyError::BadLogCode { index: 1 })
        );
        assert_eq!(Vocabulary::new([], none(), [s("since-ms")]), Err(VocabularyError::BadCursorKey { index: 0 }));
        let keys = (0..=MAX_CURSOR_MARKS).map(|i| format!("k{i}"));
        assert_eq!(
            Vocabulary::new([], none(), keys),
            Err(VocabularyError::TooMany { what: "cursor_keys", len: MAX_CURSOR_MARKS + 1, max: MAX_CURSOR_MARKS })
        );
    }

    #[test]
    fn currency_parses_only_active_codes() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(eur.as_str(), "EUR");
        assert_eq!(eur.to_string(), "EUR");
        assert_eq!(format!("{eur:?}"), "Currency(EUR)");
        assert_eq!(eur.as_bytes(), b"EUR");
        for bad in ["eur", "EU", "EURO", "XYZ", ""] {
            assert_eq!(Currency::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keyed_hash_round_trips() {
        let bytes = [0xab; 16];
        let hash = KeyedHash::from_bytes(bytes);
        assert_eq!(hash.to_bytes(), bytes);
        assert_eq!(hash.as_bytes(), &bytes);
        let hex = hash.to_string();
        assert_eq!(hex, "ab".repeat(16));
        assert_eq!(KeyedHash::from_hex(&hex), Some(hash));
        assert_eq!(format!("{hash:?}"), format!("KeyedHash({hex})"));
        assert_eq!(KeyedHash::from_hex("abc"), None);
        assert_eq!(KeyedHash::from_hex(&"zz".repeat(16)), None);
    }

    #[test]
    fn cursor_accessors() {
        let cursor = Cursor::from_checked(BTreeMap::from([(s("since"), 42)]));
        assert_eq!(cursor.get("since"), Some(42));
        assert_eq!(cursor.get("other"), None);
        assert_eq!(cursor.len(), 1);
        assert_eq!(cursor.iter().collect::<Vec<_>>(), vec![("since", 42)]);
        assert!(!cursor.is_empty());
        assert!(Cursor::default().is_empty());
        assert_eq!(cursor.into_marks().len(), 1);
    }
}
