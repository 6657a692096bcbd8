//! An in-memory fact table for the local tools: applies changes the way the store does
//! (an upsert replaces the fact of the same metric and source, a retraction removes it, a
//! completed snapshot removes the facts of its window it did not see) and sums what is
//! left.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::ingest::model::{Change, Cursor, Fact, KeyedHash, Snapshot, Value};
use crate::runtime::{BoxFuture, SyncSink, SyncStats};

/// Totals of one owner for one metric: a count, or money per currency in micro-units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Total {
    /// Number of facts.
    pub facts: u64,
    /// Sum of counts.
    pub count: i64,
    /// Sum of amounts per ISO 4217 code, in micro-units.
    pub money: BTreeMap<String, i128>,
}

/// Facts keyed by (metric, source hash).
#[derive(Debug, Default)]
pub struct FactTable {
    facts: HashMap<(String, KeyedHash), Fact>,
    /// The last committed cursor.
    pub cursor: Option<Cursor>,
}

impl FactTable {
    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Upsert(fact) => {
                self.facts.insert((fact.metric.clone(), fact.source), fact);
            }
            Change::Retract { metric, source } => {
                self.facts.remove(&(metric, source));
            }
        }
    }

    /// Applies a completed snapshot: removes the facts of its metrics in its window that it
    /// did not see. Returns how many were removed.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> u64 {
        let before = self.facts.len();
        self.facts.retain(|(metric, source), fact| {
            !(snapshot.window.metrics().contains(metric)
                && snapshot.window.contains(fact.occurred_at_ms)
                && !snapshot.saw(metric, source))
        });
        (before - self.facts.len()) as u64
    }

    /// Number of facts held.
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    /// Whether no fact is held.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Every fact held.
    pub fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.facts.values()
    }

    /// Totals per owner and metric.
    pub fn totals(&self) -> BTreeMap<(KeyedHash, String), Total> {
        let mut out: BTreeMap<(KeyedHash, String), Total> = BTreeMap::new();
        for fact in self.facts.values() {
            let total = out.entry((fact.owner, fact.metric.clone())).or_default();
            total.facts += 1;
            match &fact.value {
                Value::Count(n) => total.count += n,
                Value::Money { micros, currency } => {
                    *total.money.entry(currency.as_str().to_owned()).or_default() += i128::from(*micros);
                }
            }
        }
        out
    }
}

/// Called for every committed change.
pub type ChangeHook = Box<dyn FnMut(&Change) + Send>;

/// Called for every committed snapshot, with how many facts it removed from the table.
pub type SnapshotHook = Box<dyn FnMut(&Snapshot, u64) + Send>;

/// A sink that applies committed changes and snapshots to a shared `FactTable`, optionally
/// calling a function for each (the check tool prints them).
pub struct TableSink {
    /// The table changes are applied to.
    pub table: Arc<Mutex<FactTable>>,
    /// Called for every committed change, before it is applied.
    pub on_change: Option<ChangeHook>,
    /// Called for every committed snapshot, after it is applied.
    pub on_snapshot: Option<SnapshotHook>,
}

impl SyncSink for TableSink {
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        snapshots: Vec<Snapshot>,
        cursor: Option<&'a Cursor>,
        _stats: &'a SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut table = self.table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?;
            for change in changes {
                if let Some(f) = self.on_change.as_mut() {
                    f(&change);
                }
                table.apply(change);
            }
            for snapshot in &snapshots {
                let removed = table.apply_snapshot(snapshot);
                if let Some(f) = self.on_snapshot.as_mut() {
                    f(snapshot, removed);
                }
            }
            if let Some(c) = cursor {
                table.cursor = Some(c.clone());
            }
            Ok(())
        })
    }
}
