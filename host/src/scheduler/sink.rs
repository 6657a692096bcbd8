//! The sink that commits a sync's changes to the store, each batch with its cursor, the
//! snapshots completed since the previous commit (their unseen facts retracted) and the
//! rejections counted since the previous commit, in one transaction under the run's lease.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::ingest::model::{Change, Cursor, Snapshot};
use crate::runtime::{BoxFuture, SyncSink, SyncStats};
use crate::store::{Lease, Store};

/// Commits to the store under a lease.
pub struct StoreSink {
    store: Store,
    lease: Lease,
    /// Rejections already committed with earlier batches, shared with the caller.
    committed: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl StoreSink {
    /// A sink for the run `lease` holds, and a handle on the rejections it has committed.
    pub fn new(store: Store, lease: Lease) -> (Self, Committed) {
        let committed = Arc::new(Mutex::new(BTreeMap::new()));
        (Self { store, lease, committed: committed.clone() }, Committed(committed))
    }
}

/// What a `StoreSink` has committed of a run's rejection counts.
pub struct Committed(Arc<Mutex<BTreeMap<String, u64>>>);

impl Committed {
    /// The rejections in `stats` that no commit recorded yet (counted after the last
    /// checkpoint, or in a sync that failed).
    pub fn uncommitted(&self, stats: &SyncStats) -> BTreeMap<String, u64> {
        let committed = self.0.lock().map(|c| c.clone()).unwrap_or_default();
        delta(&stats.rejected, &committed)
    }
}

/// The rejections counted since `committed`, per reason.
fn delta(total: &BTreeMap<String, u64>, committed: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    total
        .iter()
        .filter_map(|(code, n)| {
            let new = n.saturating_sub(committed.get(code).copied().unwrap_or(0));
            (new > 0).then(|| (code.clone(), new))
        })
        .collect()
}

impl SyncSink for StoreSink {
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        snapshots: Vec<Snapshot>,
        cursor: Option<&'a Cursor>,
        stats: &'a SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let before = self.committed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
            let rejected = delta(&stats.rejected, &before);
            let counts = self.store.commit_with_snapshots(&self.lease, &changes, &snapshots, cursor, &rejected).await?;
            if !snapshots.is_empty() {
                tracing::info!(
                    snapshots = snapshots.len(),
                    retracted = counts.snapshot_deleted,
                    "snapshots committed; facts they did not see were retracted"
                );
            }
            *self.committed.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = stats.rejected.clone();
            Ok(())
        })
    }
}
