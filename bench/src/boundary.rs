//! The host's own work at the boundary, measured natively: building the raw changes a
//! sync lifts out of the sandbox (three `String`s per upsert, as the canonical ABI lift
//! allocates them), then validating and pseudonymising them with the host's
//! [`Validator`] (declared metrics and kinds, identifier shapes, ranges, two HMAC-SHA-256
//! keyed hashes per upsert, one per retract).
//!
//! The batches are exactly the ones the native connector emitted, so the figures are the
//! host's share of one sandboxed sync, without the sandbox.

use std::time::{Duration, Instant};

use oneup::ingest::{Limits, RawChange, RawOccurredAt, RawValue, TenantKey, Validator, Vocabulary};
use oneup_connector_sdk::{Amount, KpiChange, OccurredAt};

/// The emitted changes of one sync, in the batches the connector handed over.
pub struct Batches(Vec<Vec<KpiChange>>);

impl Batches {
    /// Splits `changes` by `sizes` (the host's record of every batch).
    pub fn new(changes: &[KpiChange], sizes: &[usize]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            sizes.iter().sum::<usize>() == changes.len(),
            "the batch sizes do not add up to the changes recorded"
        );
        let mut rest = changes;
        let mut batches = Vec::with_capacity(sizes.len());
        for &size in sizes {
            let (batch, tail) = rest.split_at(size);
            batches.push(batch.to_vec());
            rest = tail;
        }
        Ok(Batches(batches))
    }

    /// How many changes in all.
    pub fn changes(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }
}

/// One measurement of the boundary's work over a sync's batches.
#[derive(Debug, Clone, Copy)]
pub struct BoundaryTiming {
    /// Building the `RawChange`s (the allocations a lift makes).
    pub lift: Duration,
    /// `Validator::validate_batch` over every batch, dropping the result.
    pub validate: Duration,
    /// Changes accepted by the validator.
    pub accepted: usize,
}

/// Times the host's boundary work over `batches` once.
pub fn time_boundary(batches: &Batches, vocabulary: &Vocabulary, connector_id: &str) -> BoundaryTiming {
    let validator =
        Validator::new(vocabulary.clone(), TenantKey::from_bytes([0x5a; 32]), connector_id, Limits::default());
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);

    let started = Instant::now();
    let raw: Vec<Vec<RawChange>> = batches.0.iter().map(|batch| batch.iter().map(raw_change).collect()).collect();
    let lift = started.elapsed();

    let started = Instant::now();
    let mut accepted = 0;
    for batch in raw {
        match validator.validate_batch(batch, now_ms) {
            Ok(ok) => accepted += ok.changes.len(),
            Err(violation) => panic!("the host's validator refused a batch: {}", violation.code()),
        }
    }
    let validate = started.elapsed();
    BoundaryTiming { lift, validate, accepted }
}

/// A change as the host's runtime builds it from the lifted WIT value.
fn raw_change(change: &KpiChange) -> RawChange {
    match change {
        KpiChange::Upsert(u) => RawChange::Upsert {
            metric: u.metric.to_string(),
            owner: u.owner.as_str().to_owned(),
            source_id: u.source_id.as_str().to_owned(),
            occurred_at: match u.occurred_at {
                OccurredAt::Instant(ms) => RawOccurredAt::Instant(ms),
                OccurredAt::Date(d) => RawOccurredAt::Date { year: d.year, month: d.month, day: d.day },
            },
            value: match &u.value {
                Amount::Count(n) => RawValue::Count(*n),
                Amount::Money(m) => RawValue::Money { micros: m.micros, currency: m.currency.as_str().to_owned() },
            },
        },
        KpiChange::Retract(r) => {
            RawChange::Retract { metric: r.metric.to_string(), source_id: r.source_id.as_str().to_owned() }
        }
    }
}
