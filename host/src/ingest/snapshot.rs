//! Snapshot windows: a connector's declaration that what it emits between
//! `host.snapshot-begin` and `host.snapshot-end` is *every* fact of some metrics over a time
//! window, so that the facts of the window it did not emit can be retracted (CRMs that
//! hard-delete records without telling anyone).
//!
//! [`SnapshotTracker`] holds one sync's snapshots. While one is open it records the source
//! hash of every accepted upsert of the window's metrics whose time falls in the window.
//! `snapshot-end` moves it to the ended list, where it goes on recording until the next
//! commit takes it (the contract retracts what was "not upserted since `snapshot-begin`",
//! so a fact re-sent after the end but before the commit is not lost). The commit then
//! receives it as a [`Snapshot`] and resolves it in the same transaction as its facts. A
//! snapshot still open when the sync ends, or one ended in a sync that fails before the
//! commit, is dropped with the tracker: deletions are never inferred from a partial read.
//!
//! What is recorded is compact: 16-byte keyed hashes per metric, sorted and de-duplicated
//! when the count passes the cap, so a million upserts cost about 16 MB.
//!
//! Rules (each broken one is [`ContractViolation::BadSnapshot`]): the window is checked by
//! [`super::validate::Validator::validate_window`]; one snapshot open at a time;
//! `snapshot-end` needs an open one; at most [`MAX_SNAPSHOT_UPSERTS`] distinct upserts per
//! snapshot.

use super::model::{Change, KeyedHash, Snapshot, SnapshotWindow};
use super::validate::{ContractViolation, MAX_SNAPSHOT_UPSERTS, SnapshotProblem};

/// One snapshot being recorded.
#[derive(Debug)]
struct Tracking {
    window: SnapshotWindow,
    /// Per metric of the window (same order), the sources seen; may hold repeats until
    /// compacted.
    seen: Vec<Vec<KeyedHash>>,
    /// Entries in `seen`, repeats included.
    len: usize,
}

impl Tracking {
    fn new(window: SnapshotWindow) -> Self {
        let seen = vec![Vec::new(); window.metrics().len()];
        Self { window, seen, len: 0 }
    }

    /// Records the upserts of `changes` that belong to the window. Fails when the distinct
    /// count passes `max`.
    fn record(&mut self, changes: &[Change], max: usize) -> Result<(), ContractViolation> {
        for change in changes {
            let Change::Upsert(fact) = change else { continue };
            if !self.window.contains(fact.occurred_at_ms) {
                continue;
            }
            if let Ok(i) = self.window.metrics().binary_search(&fact.metric) {
                self.seen[i].push(fact.source);
                self.len += 1;
            }
        }
        if self.len > max {
            self.compact();
            if self.len > max {
                return Err(ContractViolation::BadSnapshot { problem: SnapshotProblem::TooManyUpserts { max } });
            }
        }
        Ok(())
    }

    fn compact(&mut self) {
        for sources in &mut self.seen {
            sources.sort_unstable();
            sources.dedup();
        }
        self.len = self.seen.iter().map(Vec::len).sum();
    }

    fn finish(mut self) -> Snapshot {
        self.compact();
        let seen = self.window.metrics().iter().cloned().zip(self.seen).collect();
        Snapshot { window: self.window, seen }
    }
}

/// The snapshots of one sync: at most one open, and those ended since the last commit.
#[derive(Debug)]
pub struct SnapshotTracker {
    open: Option<Tracking>,
    ended: Vec<Tracking>,
    max_upserts: usize,
}

impl Default for SnapshotTracker {
    fn default() -> Self {
        Self::new(MAX_SNAPSHOT_UPSERTS)
    }
}

impl SnapshotTracker {
    /// A tracker allowing `max_upserts` distinct upserts per snapshot.
    pub fn new(max_upserts: usize) -> Self {
        Self { open: None, ended: Vec::new(), max_upserts }
    }

    /// Opens a snapshot over a checked window; refused while one is open.
    pub fn begin(&mut self, window: SnapshotWindow) -> Result<(), ContractViolation> {
        if self.open.is_some() {
            return Err(ContractViolation::BadSnapshot { problem: SnapshotProblem::AlreadyOpen });
        }
        self.open = Some(Tracking::new(window));
        Ok(())
    }

    /// Closes the open snapshot; it is handed to the next commit. Refused with none open.
    pub fn end(&mut self) -> Result<(), ContractViolation> {
        let open = self.open.take().ok_or(ContractViolation::BadSnapshot { problem: SnapshotProblem::NoneOpen })?;
        self.ended.push(open);
        Ok(())
    }

    /// Records a batch of accepted changes in the open snapshot and in those ended but not
    /// yet committed.
    pub fn record(&mut self, changes: &[Change]) -> Result<(), ContractViolation> {
        for tracking in self.open.iter_mut().chain(self.ended.iter_mut()) {
            tracking.record(changes, self.max_upserts)?;
        }
        Ok(())
    }

    /// Whether a snapshot is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The snapshots ended since the last call, for the commit being made now.
    pub fn take_completed(&mut self) -> Vec<Snapshot> {
        self.ended.drain(..).map(Tracking::finish).collect()
    }

    /// Forgets every snapshot, open or ended (after a contract violation).
    pub fn clear(&mut self) {
        self.open = None;
        self.ended.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::model::{Fact, MetricKind, RawSnapshotWindow, Value, Vocabulary};
    use crate::ingest::pseudonym::TenantKey;
    use crate::ingest::validate::{Limits, Validator};

    fn validator() -> Validator {
        let vocab = Vocabulary::new(
            [("a".to_owned(), MetricKind::Count), ("b".to_owned(), MetricKind::Count)],
            Vec::<String>::new(),
            Vec::<String>::new(),
        )
        .unwrap();
        Validator::new(vocab, TenantKey::from_bytes([1; 32]), "c", Limits::default())
    }

    fn window(metrics: &[&str], from_ms: i64, to_ms: i64) -> SnapshotWindow {
        let raw = RawSnapshotWindow { metrics: metrics.iter().map(|m| m.to_string()).collect(), from_ms, to_ms };
        validator().validate_window(raw).unwrap()
    }

    fn hash(n: u8) -> KeyedHash {
        KeyedHash::from_bytes([n; 16])
    }

    fn upsert(metric: &str, source: u8, at: i64) -> Change {
        Change::Upsert(Fact {
            metric: metric.to_owned(),
            owner: hash(0),
            source: hash(source),
            occurred_at_ms: at,
            value: Value::Count(1),
        })
    }

    fn bad(problem: SnapshotProblem) -> Result<(), ContractViolation> {
        Err(ContractViolation::BadSnapshot { problem })
    }

    #[test]
    fn records_upserts_of_its_metrics_inside_its_window() {
        let mut t = SnapshotTracker::default();
        t.record(&[upsert("a", 1, 5)]).unwrap();
        t.begin(window(&["a"], 0, 10)).unwrap();
        assert!(t.is_open());
        t.record(&[upsert("a", 2, 5), upsert("a", 3, 10), upsert("b", 4, 5), upsert("a", 2, 6)]).unwrap();
        assert!(t.take_completed().is_empty(), "an open snapshot is not handed over");
        t.end().unwrap();
        assert!(!t.is_open());
        // After the end and before the commit it goes on recording.
        t.record(&[upsert("a", 5, 0), Change::Retract { metric: "a".into(), source: hash(6) }]).unwrap();
        let done = t.take_completed();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].seen_of("a"), [hash(2), hash(5)]);
        assert!(done[0].seen_of("b").is_empty());
        assert!(done[0].saw("a", &hash(2)) && !done[0].saw("a", &hash(1)) && !done[0].saw("a", &hash(3)));
        assert_eq!(done[0].upserts(), 2);
        // Committed: it records nothing more.
        t.record(&[upsert("a", 7, 1)]).unwrap();
        assert!(t.take_completed().is_empty());
    }

    #[test]
    fn rules_of_begin_and_end() {
        let mut t = SnapshotTracker::default();
        assert_eq!(t.end(), bad(SnapshotProblem::NoneOpen));
        t.begin(window(&["a", "b"], 0, 10)).unwrap();
        assert_eq!(t.begin(window(&["b"], 0, 10)), bad(SnapshotProblem::AlreadyOpen));
        t.end().unwrap();
        assert_eq!(t.end(), bad(SnapshotProblem::NoneOpen));
        t.begin(window(&["b"], 20, 30)).unwrap();
        t.end().unwrap();
        assert_eq!(t.take_completed().len(), 2);
        t.begin(window(&["b"], 20, 30)).unwrap();
        t.clear();
        assert!(!t.is_open());
        assert!(t.take_completed().is_empty());
    }

    #[test]
    fn repeats_count_once_against_the_cap() {
        let mut t = SnapshotTracker::new(3);
        t.begin(window(&["a", "b"], 0, 10)).unwrap();
        for _ in 0..5 {
            t.record(&[upsert("a", 1, 1), upsert("b", 1, 1), upsert("a", 2, 1)]).unwrap();
        }
        assert_eq!(t.record(&[upsert("b", 9, 1)]), bad(SnapshotProblem::TooManyUpserts { max: 3 }));
    }

    #[test]
    fn windows_are_checked() {
        let v = validator();
        let raw = |metrics: &[&str], from_ms, to_ms| RawSnapshotWindow {
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
            from_ms,
            to_ms,
        };
        let err = |problem| Err(ContractViolation::BadSnapshot { problem });
        assert_eq!(v.validate_window(raw(&[], 0, 1)), err(SnapshotProblem::MetricCount { len: 0, max: 16 }));
        assert_eq!(v.validate_window(raw(&["a"; 17], 0, 1)), err(SnapshotProblem::MetricCount { len: 17, max: 16 }));
        assert_eq!(v.validate_window(raw(&["a", "secret"], 0, 1)), err(SnapshotProblem::UndeclaredMetric { index: 1 }));
        assert_eq!(v.validate_window(raw(&["a"], 1, 1)), err(SnapshotProblem::EmptyWindow));
        assert_eq!(v.validate_window(raw(&["a"], 2, 1)), err(SnapshotProblem::EmptyWindow));
        let ok = v.validate_window(raw(&["b", "a", "b"], -5, 1)).unwrap();
        assert_eq!(ok.metrics(), ["a", "b"]);
        assert_eq!((ok.from_ms(), ok.to_ms()), (-5, 1));
        assert!(ok.contains(-5) && ok.contains(0) && !ok.contains(1));
    }
}
