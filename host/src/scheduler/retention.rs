//! The daily retention purge: a tick of its own beside the sync loop. Every
//! [`RETENTION_TICK`] the node asks the store which tenants are due (their last scheduled
//! purge is a day old, or they never had one) and purges each; another node purging the
//! same tenant at that moment wins and this one moves on. See `store/retention.rs` for
//! what a purge does.

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Actor, RetentionKind, Store, StoreError};

/// How often the node looks for tenants due for their purge.
pub const RETENTION_TICK: Duration = Duration::from_secs(60);
/// Tenants purged per tick at most (the rest at the next ones).
const TENANTS_PER_TICK: u32 = 16;

/// Runs until `stop` turns true.
pub(super) async fn run_daily(store: Store, node: String, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        tick(&store, &node).await;
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_TICK) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Purges the tenants that are due.
async fn tick(store: &Store, node: &str) {
    let due = match store.tenants_due_for_retention(crate::store::types::now_ms(), TENANTS_PER_TICK).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "could not list the tenants due for their purge");
            return;
        }
    };
    for tenant in due {
        match store.run_retention(tenant, RetentionKind::Scheduled, Actor::System, node).await {
            Ok(run) => tracing::info!(
                %tenant,
                sealed = run.report.facts_sealed,
                discarded = run.report.unmatched_facts_discarded,
                runs = run.report.runs_summarised,
                "retention purge"
            ),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => tracing::warn!(%tenant, code = e.code(), error = %e, "retention purge failed"),
        }
    }
}
