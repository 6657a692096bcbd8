//! The host side of the boundary rule, applied to every change a connector emits.
//!
//! A batch from `host.emit` is either refused whole, when the connector broke the contract
//! (an undeclared metric, a value of the wrong kind, an id that is not identifier-shaped, a
//! batch too large, a bad cursor), or accepted with each change turned into its validated
//! form: the metric slug checked against the declared vocabulary, the currency against
//! ISO 4217, times and amounts against sane ranges, and the owner and source ids replaced by
//! keyed hashes. A change whose *data* is unusable (an unknown currency, a time or amount out
//! of range) is dropped and counted by reason, and the rest of the batch goes on: that is a
//! problem of the CRM's records, not of the connector.
//!
//! No error or counter here carries a connector string, not even a declared one: errors hold
//! the change's index in the batch, which field was wrong and lengths. That way they can be
//! logged and stored freely.
//!
//! This runs for every event of every sync, so it is written for the hot path: hand-written
//! byte checks instead of regular expressions, no allocation per change beyond the output
//! (the validated fact reuses the connector's metric string), and HMAC states that are keyed
//! once and cloned per id.
//!
//! Times: an `occurred-at` that is a calendar date (contract 0.2) becomes the first instant
//! of that day in the tenant's time zone (given with [`Validator::with_time_zone`], UTC by
//! default; where local midnight does not exist, the first instant after the gap). An
//! impossible date, or a year outside [`MIN_DATE_YEAR`]..=[`MAX_DATE_YEAR`], is a data
//! problem counted as `out_of_range`, like an instant out of range. Then both kinds of time
//! go through the same range check.
//!
//! Snapshot windows (`host.snapshot-begin`) are checked here too
//! ([`Validator::validate_window`]); what happens while one is open is in
//! [`super::snapshot`].
//!
//! Reason codes and the WIT `emit-error` cases they map to (the WIT name is the code with
//! `_` replaced by `-`):
//!
//! | Rust                                   | `code()`            | WIT `emit-error`      |
//! |----------------------------------------|---------------------|-----------------------|
//! | `ContractViolation::UndeclaredMetric`  | `undeclared_metric` | `undeclared-metric`   |
//! | `ContractViolation::WrongKind`         | `wrong_kind`        | `wrong-kind`          |
//! | `ContractViolation::BadIdentifier`     | `bad_identifier`    | `bad-identifier`      |
//! | `ContractViolation::BatchTooLarge`     | `batch_too_large`   | `batch-too-large`     |
//! | `ContractViolation::BadCursor`         | `bad_cursor`        | `bad-cursor`          |
//! | `ContractViolation::BadSnapshot`       | `bad_snapshot`      | `bad-snapshot` (0.2)  |
//! | `RejectReason::UnknownCurrency`        | `unknown_currency`  | (counted, not raised) |
//! | `RejectReason::OutOfRange`             | `out_of_range`      | (counted, not raised) |

use std::collections::BTreeMap;
use std::fmt;

use jiff::tz::TimeZone;

use super::model::{
    Change, Currency, Cursor, Fact, KeyedHash, MAX_CURSOR_MARKS, MetricKind, RawChange, RawCursor, RawOccurredAt,
    RawSnapshotWindow, RawValue, SnapshotWindow, Value, Vocabulary,
};
use super::pseudonym::{Pseudonymizer, TenantKey};

/// 2000-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const YEAR_2000_MS: i64 = 946_684_800_000;
/// 366 days in milliseconds: "a year from now", leap years included.
pub const ONE_YEAR_MS: i64 = 366 * 24 * 60 * 60 * 1000;
/// The earliest year a calendar-date `occurred-at` may have (the contract's bound).
pub const MIN_DATE_YEAR: i32 = 1900;
/// The latest year a calendar-date `occurred-at` may have (the contract's bound).
pub const MAX_DATE_YEAR: i32 = 9999;
/// The most metrics one snapshot window may cover.
pub const MAX_SNAPSHOT_METRICS: usize = 16;
/// The most distinct upserts the host tracks inside one snapshot.
pub const MAX_SNAPSHOT_UPSERTS: usize = 1_000_000;

/// The ranges and sizes the validator enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most changes in one batch (default 10 000).
    pub max_batch: usize,
    /// The longest owner or source id, in bytes (default 64, as the WIT contract says).
    pub max_id_len: usize,
    /// The earliest acceptable `occurred_at`, in milliseconds (default 2000-01-01).
    pub min_time_ms: i64,
    /// How far after `now` an `occurred_at` may be, in milliseconds (default 366 days).
    pub max_future_ms: i64,
    /// The largest acceptable absolute money amount, in micros (default 10^17 micros, that
    /// is 10^11 units; even 90 of them still sum within an `i64`).
    pub max_abs_micros: u64,
    /// The largest acceptable count in one event (default 10^9). Counts are never negative.
    pub max_count: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 10_000,
            max_id_len: 64,
            min_time_ms: YEAR_2000_MS,
            max_future_ms: ONE_YEAR_MS,
            max_abs_micros: 100_000_000_000_000_000,
            max_count: 1_000_000_000,
        }
    }
}

/// Which id of a change was not identifier-shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdField {
    /// The CRM owner id.
    Owner,
    /// The CRM source record id.
    Source,
}

impl fmt::Display for IdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Owner => "owner",
            Self::Source => "source_id",
        })
    }
}

/// What is wrong with a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CursorProblem {
    /// The mark at `index` uses a key that was not declared.
    UndeclaredKey {
        /// The position of the mark.
        index: usize,
    },
    /// The mark at `index` repeats an earlier key.
    DuplicateKey {
        /// The position of the mark.
        index: usize,
    },
    /// The cursor has more than [`MAX_CURSOR_MARKS`] marks.
    TooManyMarks {
        /// How many marks it has.
        len: usize,
        /// The cap.
        max: usize,
    },
}

impl fmt::Display for CursorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UndeclaredKey { index } => write!(f, "mark {index} has an undeclared key"),
            Self::DuplicateKey { index } => write!(f, "mark {index} repeats a key"),
            Self::TooManyMarks { len, max } => write!(f, "{len} marks, at most {max}"),
        }
    }
}

/// What is wrong with a snapshot (`host.snapshot-begin` / `host.snapshot-end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotProblem {
    /// The window's metric at `index` is not declared.
    UndeclaredMetric {
        /// The position of the metric in the window's list.
        index: usize,
    },
    /// The window names no metric, or more than [`MAX_SNAPSHOT_METRICS`].
    MetricCount {
        /// How many it names.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// `from` is not before `to`.
    EmptyWindow,
    /// `snapshot-begin` while a snapshot is open.
    AlreadyOpen,
    /// `snapshot-end` with no snapshot open.
    NoneOpen,
    /// More distinct upserts inside one snapshot than the host tracks.
    TooManyUpserts {
        /// The cap.
        max: usize,
    },
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UndeclaredMetric { index } => write!(f, "window metric {index} is not declared"),
            Self::MetricCount { len, max } => write!(f, "the window names {len} metrics, 1 to {max} allowed"),
            Self::EmptyWindow => f.write_str("the window is empty or reversed"),
            Self::AlreadyOpen => f.write_str("a snapshot is already open"),
            Self::NoneOpen => f.write_str("no snapshot is open"),
            Self::TooManyUpserts { max } => write!(f, "more than {max} upserts in one snapshot"),
        }
    }
}

/// The connector broke the contract: the whole batch (or checkpoint) is refused.
///
/// Indexes are positions in the batch. No variant carries a connector string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ContractViolation {
    /// A change names a metric that is not in the descriptor.
    #[error("change {index} names an undeclared metric")]
    UndeclaredMetric {
        /// The position of the change.
        index: usize,
    },
    /// A change's value is not of its metric's kind.
    #[error("change {index} has a value of the wrong kind for its metric")]
    WrongKind {
        /// The position of the change.
        index: usize,
    },
    /// An owner or source id is not identifier-shaped.
    #[error("change {index} has a {field} that is not identifier-shaped ({len} bytes)")]
    BadIdentifier {
        /// The position of the change.
        index: usize,
        /// Which id.
        field: IdField,
        /// The id's length, in bytes.
        len: usize,
    },
    /// The batch holds more changes than allowed.
    #[error("the batch has {len} changes, at most {max}")]
    BatchTooLarge {
        /// How many changes the batch has.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The cursor is not made of declared keys.
    #[error("bad cursor: {problem}")]
    BadCursor {
        /// What is wrong.
        problem: CursorProblem,
    },
    /// A snapshot broke the rules of `host.snapshot-begin`.
    #[error("bad snapshot: {problem}")]
    BadSnapshot {
        /// What is wrong.
        problem: SnapshotProblem,
    },
}

impl ContractViolation {
    /// A stable snake_case code; the WIT `emit-error` name is the same with `-` for `_`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UndeclaredMetric { .. } => "undeclared_metric",
            Self::WrongKind { .. } => "wrong_kind",
            Self::BadIdentifier { .. } => "bad_identifier",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::BadCursor { .. } => "bad_cursor",
            Self::BadSnapshot { .. } => "bad_snapshot",
        }
    }
}

/// Why one change was dropped while the rest of its batch was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The currency is not an active ISO 4217 code.
    UnknownCurrency,
    /// The time, the count or the amount is out of range.
    OutOfRange,
}

impl RejectReason {
    /// A stable snake_case code; the WIT `emit-error` name is the same with `-` for `_`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownCurrency => "unknown_currency",
            Self::OutOfRange => "out_of_range",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The outcome of an accepted batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    /// The validated changes, in the order they were emitted.
    pub changes: Vec<Change>,
    /// How many changes were dropped, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl Accepted {
    /// How many changes were dropped in all.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// The longest owner or source id the WIT contract allows, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Whether `s` is identifier-shaped as the WIT contract says:
/// `^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`. Use it for roster user ids too.
pub fn is_identifier(s: &str) -> bool {
    is_identifier_within(s, MAX_ID_LEN)
}

/// Whether `s` is identifier-shaped and at most `max_len` bytes long.
pub fn is_identifier_within(s: &str, max_len: usize) -> bool {
    let bytes = s.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            bytes.len() <= max_len
                && first.is_ascii_alphanumeric()
                && rest.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        }
        None => false,
    }
}

impl Cursor {
    /// Validates a cursor from `host.checkpoint` (or one read back from storage): at most
    /// [`MAX_CURSOR_MARKS`] marks, each under a key declared in `vocab`, no key twice.
    pub fn validate(raw: RawCursor, vocab: &Vocabulary) -> Result<Self, ContractViolation> {
        let marks = raw.0;
        if marks.len() > MAX_CURSOR_MARKS {
            return Err(ContractViolation::BadCursor {
                problem: CursorProblem::TooManyMarks { len: marks.len(), max: MAX_CURSOR_MARKS },
            });
        }
        let mut out = BTreeMap::new();
        for (index, (key, value)) in marks.into_iter().enumerate() {
            if !vocab.has_cursor_key(&key) {
                return Err(ContractViolation::BadCursor { problem: CursorProblem::UndeclaredKey { index } });
            }
            if out.insert(key, value).is_some() {
                return Err(ContractViolation::BadCursor { problem: CursorProblem::DuplicateKey { index } });
            }
        }
        Ok(Self::from_checked(out))
    }
}

/// Validates and pseudonymises what one connector emits for one tenant.
///
/// Built once per sync (or per integration) and shared by reference; validation needs only
/// `&self`.
#[derive(Clone)]
pub struct Validator {
    /// The connector's declared vocabulary.
    vocab: Vocabulary,
    /// The keyed hashing states for this tenant and connector.
    pseudonyms: Pseudonymizer,
    /// The limits in force.
    limits: Limits,
    /// The tenant's time zone, where calendar dates are placed.
    tz: TimeZone,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("vocab", &self.vocab)
            .field("limits", &self.limits)
            .field("tz", &self.tz.iana_name())
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// Prepares validation for `connector_id`'s vocabulary under the tenant's `key`.
    ///
    /// `connector_id` is part of every keyed hash (see [`super::pseudonym`]); pass the same
    /// value on every sync of an integration, or stored hashes stop matching. The key is
    /// consumed: only the keyed hashing states derived from it are kept.
    pub fn new(vocab: Vocabulary, key: TenantKey, connector_id: &str, limits: Limits) -> Self {
        Self { vocab, pseudonyms: Pseudonymizer::new(&key, connector_id), limits, tz: TimeZone::UTC }
    }

    /// Places calendar dates in `tz` (the tenant's zone) instead of UTC.
    pub fn with_time_zone(mut self, tz: TimeZone) -> Self {
        self.tz = tz;
        self
    }

    /// The time zone calendar dates are placed in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The connector's declared vocabulary.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The keyed hash of a CRM user id (from the roster), or `None` if it is not
    /// identifier-shaped. Equal to the `owner` hash of facts credited to that user.
    pub fn owner_hash(&self, crm_user_id: &str) -> Option<KeyedHash> {
        is_identifier_within(crm_user_id, self.limits.max_id_len).then(|| self.pseudonyms.owner(crm_user_id))
    }

    /// Validates one emitted batch at host time `now_ms`.
    ///
    /// Returns the validated changes and the count of dropped ones by reason, or the first
    /// contract violation, in which case nothing of the batch may be kept.
    pub fn validate_batch(&self, batch: Vec<RawChange>, now_ms: i64) -> Result<Accepted, ContractViolation> {
        if batch.len() > self.limits.max_batch {
            return Err(ContractViolation::BatchTooLarge { len: batch.len(), max: self.limits.max_batch });
        }
        let mut accepted = Accepted { changes: Vec::with_capacity(batch.len()), rejected: BTreeMap::new() };
        // Hashing is the costly part of a change. A batch credits few owners many times,
        // and a record's changes come together (a won deal's count and amount), so a few
        // recent owners and the last source are remembered for the batch.
        let mut owners = HashCache::default();
        let mut sources = HashCache::default();
        for (index, raw) in batch.into_iter().enumerate() {
            match raw {
                RawChange::Upsert { metric, owner, source_id, occurred_at, value } => {
                    let kind = self.vocab.metric_kind(&metric).ok_or(ContractViolation::UndeclaredMetric { index })?;
                    match (kind, &value) {
                        (MetricKind::Count, RawValue::Count(_)) | (MetricKind::Money, RawValue::Money { .. }) => {}
                        _ => return Err(ContractViolation::WrongKind { index }),
                    }
                    self.check_id(index, IdField::Owner, &owner)?;
                    self.check_id(index, IdField::Source, &source_id)?;
                    match self.check_data(occurred_at, &value, now_ms) {
                        Ok((value, occurred_at_ms)) => accepted.changes.push(Change::Upsert(Fact {
                            // The slug is a declared one, so the connector's string is kept.
                            metric,
                            owner: owners.get_or(owner, |o| self.pseudonyms.owner(o)),
                            source: sources.get_or(source_id, |s| self.pseudonyms.source(s)),
                            occurred_at_ms,
                            value,
                        })),
                        Err(reason) => *accepted.rejected.entry(reason).or_insert(0) += 1,
                    }
                }
                RawChange::Retract { metric, source_id } => {
                    if self.vocab.metric_kind(&metric).is_none() {
                        return Err(ContractViolation::UndeclaredMetric { index });
                    }
                    self.check_id(index, IdField::Source, &source_id)?;
                    let source = sources.get_or(source_id, |s| self.pseudonyms.source(s));
                    accepted.changes.push(Change::Retract { metric, source });
                }
            }
        }
        Ok(accepted)
    }

    /// Checks a snapshot window from `host.snapshot-begin`: 1 to [`MAX_SNAPSHOT_METRICS`]
    /// declared metrics (a repeated one counts once) and `from < to`.
    pub fn validate_window(&self, raw: RawSnapshotWindow) -> Result<SnapshotWindow, ContractViolation> {
        let bad = |problem| ContractViolation::BadSnapshot { problem };
        let len = raw.metrics.len();
        if len == 0 || len > MAX_SNAPSHOT_METRICS {
            return Err(bad(SnapshotProblem::MetricCount { len, max: MAX_SNAPSHOT_METRICS }));
        }
        if let Some(index) = raw.metrics.iter().position(|m| self.vocab.metric_kind(m).is_none()) {
            return Err(bad(SnapshotProblem::UndeclaredMetric { index }));
        }
        if raw.from_ms >= raw.to_ms {
            return Err(bad(SnapshotProblem::EmptyWindow));
        }
        let mut metrics = raw.metrics;
        metrics.sort_unstable();
        metrics.dedup();
        Ok(SnapshotWindow { metrics, from_ms: raw.from_ms, to_ms: raw.to_ms })
    }

    /// The instant of an `occurred-at`: an instant as it is, a calendar date as the first
    /// instant of that day in the tenant's zone. Impossible dates and years outside
    /// [`MIN_DATE_YEAR`]..=[`MAX_DATE_YEAR`] are out of range.
    pub fn instant_of(&self, at: RawOccurredAt) -> Result<i64, RejectReason> {
        match at {
            RawOccurredAt::Instant(ms) => Ok(ms),
            RawOccurredAt::Date { year, month, day } => {
                if !(MIN_DATE_YEAR..=MAX_DATE_YEAR).contains(&year)
                    || !(1..=12).contains(&month)
                    || !(1..=31).contains(&day)
                {
                    return Err(RejectReason::OutOfRange);
                }
                // In range now, so the casts cannot wrap. `Date::new` refuses day 31 of a
                // 30-day month, 29 February of a common year and so on.
                let date = jiff::civil::Date::new(year as i16, month as i8, day as i8)
                    .map_err(|_| RejectReason::OutOfRange)?;
                crate::engine::period::start_of_day_ms(date, &self.tz).map_err(|_| RejectReason::OutOfRange)
            }
        }
    }

    /// Validates a checkpoint's cursor against the declared cursor keys (see
    /// [`Cursor::validate`]).
    pub fn validate_cursor(&self, raw: RawCursor) -> Result<Cursor, ContractViolation> {
        Cursor::validate(raw, &self.vocab)
    }

    /// Refuses an id that is not identifier-shaped.
    fn check_id(&self, index: usize, field: IdField, id: &str) -> Result<(), ContractViolation> {
        if is_identifier_within(id, self.limits.max_id_len) {
            Ok(())
        } else {
            Err(ContractViolation::BadIdentifier { index, field, len: id.len() })
        }
    }

    /// Checks the data of an upsert whose kind already matches its metric; returns the
    /// validated value and the instant it happened.
    fn check_data(&self, at: RawOccurredAt, value: &RawValue, now_ms: i64) -> Result<(Value, i64), RejectReason> {
        let value = match value {
            RawValue::Count(n) => {
                if !(0..=self.limits.max_count).contains(n) {
                    return Err(RejectReason::OutOfRange);
                }
                Value::Count(*n)
            }
            RawValue::Money { micros, currency } => {
                let currency = Currency::parse(currency).ok_or(RejectReason::UnknownCurrency)?;
                if micros.unsigned_abs() > self.limits.max_abs_micros {
                    return Err(RejectReason::OutOfRange);
                }
                Value::Money { micros: *micros, currency }
            }
        };
        let occurred_at_ms = self.instant_of(at)?;
        let latest = now_ms.saturating_add(self.limits.max_future_ms);
        if occurred_at_ms < self.limits.min_time_ms || occurred_at_ms > latest {
            return Err(RejectReason::OutOfRange);
        }
        Ok((value, occurred_at_ms))
    }
}

/// The few most recent raw ids of a batch and their hashes.
#[derive(Default)]
struct HashCache {
    entries: Vec<(String, KeyedHash)>,
    next: usize,
}

impl HashCache {
    const SIZE: usize = 8;

    /// The hash of `raw`, computed by `hash` unless it was seen recently.
    fn get_or(&mut self, raw: String, hash: impl FnOnce(&str) -> KeyedHash) -> KeyedHash {
        if let Some((_, h)) = self.entries.iter().find(|(r, _)| *r == raw) {
            return *h;
        }
        let h = hash(&raw);
        if self.entries.len() < Self::SIZE {
            self.entries.push((raw, h));
        } else {
            self.entries[self.next] = (raw, h);
            self.next = (self.next + 1) % Self::SIZE;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pseudonym::{Domain, keyed_hash};

    /// 2026-01-01T00:00:00Z.
    const NOW: i64 = 1_767_225_600_000;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn key() -> TenantKey {
        TenantKey::from_bytes([9; 32])
    }

    fn validator() -> Validator {
        validator_with(Limits::default())
    }

    fn validator_with(limits: Limits) -> Validator {
        let vocab = Vocabulary::new(
            [(s("deals_won"), MetricKind::Count), (s("revenue"), MetricKind::Money)],
            [s("http_failed")],
            [s("deals_since"), s("users_since")],
        )
        .unwrap();
        Validator::new(vocab, key(), "pipedrive", limits)
    }

    fn count(owner: &str, source: &str, at: i64, n: i64) -> RawChange {
        RawChange::Upsert {
            metric: s("deals_won"),
            owner: s(owner),
            source_id: s(source),
            occurred_at: RawOccurredAt::Instant(at),
            value: RawValue::Count(n),
        }
    }

    fn money(micros: i64, currency: &str) -> RawChange {
        money_at(micros, currency, NOW)
    }

    fn money_at(micros: i64, currency: &str, at: i64) -> RawChange {
        RawChange::Upsert {
            metric: s("revenue"),
            owner: s("9101"),
            source_id: s("deal-1"),
            occurred_at: RawOccurredAt::Instant(at),
            value: RawValue::Money { micros, currency: s(currency) },
        }
    }

    fn retract(metric: &str, source: &str) -> RawChange {
        RawChange::Retract { metric: s(metric), source_id: s(source) }
    }

    fn one(change: RawChange) -> Result<Accepted, ContractViolation> {
        validator().validate_batch(vec![change], NOW)
    }

    fn rejected_as(change: RawChange, reason: RejectReason) {
        let accepted = one(change).unwrap();
        assert!(accepted.changes.is_empty());
        assert_eq!(accepted.rejected, BTreeMap::from([(reason, 1)]));
    }

    #[test]
    fn accepts_and_pseudonymises() {
        let batch =
            vec![count("9101", "deal-1", NOW - 1000, 1), money(1_000_000_000_000, "GBP"), retract("revenue", "deal-1")];
        let accepted = validator().validate_batch(batch, NOW).unwrap();
        assert!(accepted.rejected.is_empty());
        assert_eq!(accepted.rejected_total(), 0);
        let owner = keyed_hash(&key(), Domain::Owner, "pipedrive", "9101");
        let source = keyed_hash(&key(), Domain::Source, "pipedrive", "deal-1");
        assert_eq!(
            accepted.changes,
            vec![
                Change::Upsert(Fact {
                    metric: s("deals_won"),
                    owner,
                    source,
                    occurred_at_ms: NOW - 1000,
                    value: Value::Count(1),
                }),
                Change::Upsert(Fact {
                    metric: s("revenue"),
                    owner,
                    source,
                    occurred_at_ms: NOW,
                    value: Value::Money { micros: 1_000_000_000_000, currency: Currency::parse("GBP").unwrap() },
                }),
                // A retraction's hash finds the fact it withdraws.
                Change::Retract { metric: s("revenue"), source },
            ]
        );
        assert_eq!(validator().owner_hash("9101"), Some(owner));
        assert_eq!(validator().owner_hash("john@example.com"), None);
    }

    #[test]
    fn accepts_an_empty_batch() {
        assert_eq!(validator().validate_batch(vec![], NOW).unwrap(), Accepted::default());
    }

    // Contract violations.

    #[test]
    fn undeclared_metric_refuses_the_batch() {
        let mut change = count("1", "2", NOW, 1);
        if let RawChange::Upsert { metric, .. } = &mut change {
            *metric = s("John Smith");
        }
        let batch = vec![count("1", "2", NOW, 1), change];
        assert_eq!(validator().validate_batch(batch, NOW), Err(ContractViolation::UndeclaredMetric { index: 1 }));
        assert_eq!(one(retract("deals_lost", "2")), Err(ContractViolation::UndeclaredMetric { index: 0 }));
    }

    #[test]
    fn wrong_kind_refuses_the_batch() {
        let mut count_as_money = money(1, "EUR");
        if let RawChange::Upsert { metric, .. } = &mut count_as_money {
            *metric = s("deals_won");
        }
        assert_eq!(one(count_as_money), Err(ContractViolation::WrongKind { index: 0 }));
        let mut money_as_count = count("1", "2", NOW, 1);
        if let RawChange::Upsert { metric, .. } = &mut money_as_count {
            *metric = s("revenue");
        }
        assert_eq!(one(money_as_count), Err(ContractViolation::WrongKind { index: 0 }));
    }

    #[test]
    fn identifier_shape() {
        let max = "a".repeat(64);
        for ok in ["9101", "deal-1", "0r8Hs00000FixtAAA", "a.b_c:d-e", "A", &max] {
            assert!(is_identifier(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "john@example.com", "John Smith", ".hidden", "-1", "_1", ":1", "a/b", "é", "a\n", &long] {
            assert!(!is_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_owner_refuses_the_batch() {
        assert_eq!(
            one(count("john@example.com", "deal-1", NOW, 1)),
            Err(ContractViolation::BadIdentifier { index: 0, field: IdField::Owner, len: 16 })
        );
    }

    #[test]
    fn bad_source_refuses_the_batch() {
        assert_eq!(
            one(count("9101", "Tom at SuperBigCorp", NOW, 1)),
            Err(ContractViolation::BadIdentifier { index: 0, field: IdField::Source, len: 19 })
        );
        let long = "a".repeat(65);
        assert_eq!(
            one(retract("revenue", &long)),
            Err(ContractViolation::BadIdentifier { index: 0, field: IdField::Source, len: 65 })
        );
    }

    #[test]
    fn batch_too_large_is_refused() {
        let limits = Limits { max_batch: 2, ..Limits::default() };
        let batch = vec![count("1", "2", NOW, 1); 3];
        assert_eq!(
            validator_with(limits).validate_batch(batch, NOW),
            Err(ContractViolation::BatchTooLarge { len: 3, max: 2 })
        );
    }

    #[test]
    fn a_late_violation_refuses_changes_already_checked() {
        let batch = vec![count("1", "2", NOW, 1), money(1, "XYZ"), count("1", "bad id", NOW, 1)];
        assert!(matches!(
            validator().validate_batch(batch, NOW),
            Err(ContractViolation::BadIdentifier { index: 2, .. })
        ));
    }

    #[test]
    fn violations_never_quote_connector_strings() {
        let results = [one(count("John.Smith", "Tom SuperBigCorp", NOW, 1)), one(retract("superbigcorp_deal", "1"))];
        for result in results {
            let err = result.unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("Smith"), "{shown}");
            assert!(!shown.contains("SuperBigCorp"), "{shown}");
            assert!(!shown.contains("superbigcorp"), "{shown}");
        }
    }

    // Data problems.

    #[test]
    fn active_currencies_pass() {
        for code in ["EUR", "GBP", "USD", "SEK", "JPY"] {
            let accepted = one(money(5_000_000, code)).unwrap();
            assert_eq!(accepted.changes.len(), 1, "{code}");
        }
    }

    #[test]
    fn unknown_currencies_are_dropped_and_counted() {
        for code in ["XYZ", "eur", "EU", "EURO", ""] {
            rejected_as(money(5_000_000, code), RejectReason::UnknownCurrency);
        }
    }

    #[test]
    fn times_out_of_range_are_dropped() {
        rejected_as(count("1", "2", YEAR_2000_MS - 1, 1), RejectReason::OutOfRange);
        rejected_as(count("1", "2", i64::MIN, 1), RejectReason::OutOfRange);
        rejected_as(count("1", "2", NOW + ONE_YEAR_MS + 1, 1), RejectReason::OutOfRange);
        rejected_as(count("1", "2", i64::MAX, 1), RejectReason::OutOfRange);
        assert_eq!(one(count("1", "2", YEAR_2000_MS, 1)).unwrap().changes.len(), 1);
        assert_eq!(one(count("1", "2", NOW + ONE_YEAR_MS, 1)).unwrap().changes.len(), 1);
    }

    #[test]
    fn counts_out_of_range_are_dropped() {
        rejected_as(count("1", "2", NOW, -1), RejectReason::OutOfRange);
        rejected_as(count("1", "2", NOW, i64::MIN), RejectReason::OutOfRange);
        rejected_as(count("1", "2", NOW, 1_000_000_001), RejectReason::OutOfRange);
        assert_eq!(one(count("1", "2", NOW, 0)).unwrap().changes.len(), 1);
    }

    #[test]
    fn amounts_out_of_range_are_dropped() {
        let max = 100_000_000_000_000_000;
        rejected_as(money(max + 1, "USD"), RejectReason::OutOfRange);
        rejected_as(money(-max - 1, "USD"), RejectReason::OutOfRange);
        rejected_as(money(i64::MIN, "USD"), RejectReason::OutOfRange);
        rejected_as(money(i64::MAX, "USD"), RejectReason::OutOfRange);
        // Negative amounts (refunds, credit notes) within range are fine.
        assert_eq!(one(money(-max, "USD")).unwrap().changes.len(), 1);
        assert_eq!(one(money(max, "USD")).unwrap().changes.len(), 1);
    }

    #[test]
    fn currency_is_checked_before_range() {
        rejected_as(money_at(i64::MAX, "XYZ", i64::MIN), RejectReason::UnknownCurrency);
    }

    #[test]
    fn mixed_batch_keeps_the_good_changes() {
        let batch = vec![
            money(1, "EUR"),
            money(1, "XYZ"),
            money(1, "eur"),
            count("1", "2", NOW, -5),
            retract("deals_won", "2"),
        ];
        let accepted = validator().validate_batch(batch, NOW).unwrap();
        assert_eq!(accepted.changes.len(), 2);
        assert_eq!(
            accepted.rejected,
            BTreeMap::from([(RejectReason::UnknownCurrency, 2), (RejectReason::OutOfRange, 1)])
        );
        assert_eq!(accepted.rejected_total(), 3);
    }

    // Calendar dates.

    fn dated(year: i32, month: u8, day: u8) -> RawChange {
        RawChange::Upsert {
            metric: s("deals_won"),
            owner: s("9101"),
            source_id: s("deal-1"),
            occurred_at: RawOccurredAt::Date { year, month, day },
            value: RawValue::Count(1),
        }
    }

    fn instant_in(zone: &str, change: RawChange) -> Result<i64, BTreeMap<RejectReason, u64>> {
        let v = validator().with_time_zone(TimeZone::get(zone).unwrap());
        let accepted = v.validate_batch(vec![change], NOW).unwrap();
        match accepted.changes.as_slice() {
            [Change::Upsert(fact)] => Ok(fact.occurred_at_ms),
            _ => Err(accepted.rejected),
        }
    }

    #[test]
    fn a_date_starts_at_midnight_in_the_tenant_zone() {
        // 2025-06-12T00:00:00Z.
        let utc_midnight = 1_749_686_400_000;
        assert_eq!(instant_in("UTC", dated(2025, 6, 12)), Ok(utc_midnight));
        assert_eq!(validator().time_zone().iana_name(), Some("UTC"), "UTC unless told");
        assert_eq!(instant_in("Europe/Berlin", dated(2025, 6, 12)), Ok(utc_midnight - 2 * 3_600_000));
        assert_eq!(instant_in("America/New_York", dated(2025, 6, 12)), Ok(utc_midnight + 4 * 3_600_000));
        // 2025-03-30, the day Berlin springs forward (at 02:00): midnight is still +01:00.
        assert_eq!(instant_in("Europe/Berlin", dated(2025, 3, 30)), Ok(1_743_289_200_000));
        // Where midnight does not exist (Santiago springs forward at 00:00 on 2024-09-08),
        // the day starts when the clocks show 01:00 (-03:00).
        assert_eq!(instant_in("America/Santiago", dated(2024, 9, 8)), Ok(1_725_768_000_000));
        // 29 February of a leap year exists.
        assert!(instant_in("UTC", dated(2024, 2, 29)).is_ok());
    }

    #[test]
    fn impossible_dates_and_far_years_are_dropped_and_counted() {
        let out = Err(BTreeMap::from([(RejectReason::OutOfRange, 1)]));
        for (y, m, d) in [
            (2025, 2, 29),
            (2025, 2, 30),
            (2025, 4, 31),
            (2025, 13, 1),
            (2025, 0, 1),
            (2025, 1, 0),
            (2025, 1, 32),
            (2025, 1, 255),
            (2025, 200, 1),
            (1899, 12, 31),
            (10_000, 1, 1),
            (i32::MIN, 1, 1),
            (i32::MAX, 1, 1),
        ] {
            assert_eq!(instant_in("Europe/Berlin", dated(y, m, d)), out, "{y}-{m}-{d}");
        }
        // In the contract's years but outside the validator's range: out of range too.
        assert_eq!(instant_in("UTC", dated(1900, 1, 1)), out);
        assert_eq!(instant_in("UTC", dated(9999, 12, 31)), out);
        assert_eq!(
            validator().instant_of(RawOccurredAt::Date { year: 1900, month: 1, day: 1 }),
            Ok(-2_208_988_800_000)
        );
        // jiff's instants end late on 9999-12-30 (UTC), so the very last day is refused too.
        assert!(validator().instant_of(RawOccurredAt::Date { year: 9999, month: 12, day: 30 }).is_ok());
        assert_eq!(
            validator().instant_of(RawOccurredAt::Date { year: 9999, month: 12, day: 31 }),
            Err(RejectReason::OutOfRange)
        );
    }

    // Cursors.

    fn cursor(marks: &[(&str, i64)]) -> RawCursor {
        RawCursor(marks.iter().map(|(k, v)| (s(k), *v)).collect())
    }

    #[test]
    fn declared_cursor_passes() {
        let c = validator().validate_cursor(cursor(&[("users_since", 7), ("deals_since", -1)])).unwrap();
        assert_eq!(c.get("deals_since"), Some(-1));
        assert_eq!(c.get("users_since"), Some(7));
        assert!(validator().validate_cursor(RawCursor::default()).unwrap().is_empty());
    }

    #[test]
    fn undeclared_cursor_key_is_refused() {
        assert_eq!(
            validator().validate_cursor(cursor(&[("deals_since", 1), ("John", 2)])),
            Err(ContractViolation::BadCursor { problem: CursorProblem::UndeclaredKey { index: 1 } })
        );
    }

    #[test]
    fn duplicate_cursor_key_is_refused() {
        assert_eq!(
            validator().validate_cursor(cursor(&[("deals_since", 1), ("deals_since", 2)])),
            Err(ContractViolation::BadCursor { problem: CursorProblem::DuplicateKey { index: 1 } })
        );
    }

    #[test]
    fn too_many_cursor_marks_are_refused() {
        let marks = vec![("deals_since", 1); MAX_CURSOR_MARKS + 1];
        assert_eq!(
            validator().validate_cursor(cursor(&marks)),
            Err(ContractViolation::BadCursor {
                problem: CursorProblem::TooManyMarks { len: MAX_CURSOR_MARKS + 1, max: MAX_CURSOR_MARKS }
            })
        );
    }

    // Codes.

    #[test]
    fn codes_match_the_wit_emit_error_names() {
        const WIT: [&str; 8] = [
            "undeclared-metric",
            "wrong-kind",
            "bad-identifier",
            "unknown-currency",
            "out-of-range",
            "batch-too-large",
            "bad-cursor",
            "bad-snapshot",
        ];
        let violations = [
            ContractViolation::UndeclaredMetric { index: 0 },
            ContractViolation::WrongKind { index: 0 },
            ContractViolation::BadIdentifier { index: 0, field: IdField::Owner, len: 0 },
            ContractViolation::BatchTooLarge { len: 0, max: 0 },
            ContractViolation::BadCursor { problem: CursorProblem::TooManyMarks { len: 0, max: 0 } },
            ContractViolation::BadSnapshot { problem: SnapshotProblem::NoneOpen },
        ];
        let codes = violations
            .iter()
            .map(ContractViolation::code)
            .chain([RejectReason::UnknownCurrency, RejectReason::OutOfRange].map(|r| r.code()));
        for code in codes {
            assert!(WIT.contains(&code.replace('_', "-").as_str()), "{code}");
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let shown = format!("{:?}", validator());
        assert!(!shown.contains("0909"), "{shown}");
        assert!(shown.contains("Validator"));
    }
}
