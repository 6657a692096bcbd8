//! The node's background scoring work: the freezing tick and the award pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::scoring::Scoring;
use crate::store::TenantId;

/// How often each node looks for contests whose end has passed, to freeze their results.
pub const FREEZE_TICK: Duration = Duration::from_secs(1);

/// The most contests one tick freezes (the rest wait for the next tick).
pub const FREEZE_BATCH: u32 = 100;

/// Every [`FREEZE_TICK`], every contest (of any tenant) past its end and not frozen yet gets
/// its final standing stored, from its stored totals, without waiting for anyone to read
/// it, and its placement incentives are awarded ([`Scoring::freeze_due`]). Ends when the
/// node stops claiming work.
pub(super) async fn freezing_tick(scoring: Scoring, mut stopping: watch::Receiver<bool>) {
    loop {
        if *stopping.borrow() {
            return;
        }
        if let Err(e) = scoring.freeze_due(FREEZE_BATCH).await {
            tracing::warn!(error = %e, "could not look for contests to freeze");
        }
        tokio::select! {
            _ = tokio::time::sleep(FREEZE_TICK) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// After each commit, settles the target incentives of the metrics it touched
/// ([`Scoring::settle_metrics`]); after a roster mapped an owner (queued without metrics),
/// every incentive of the tenant ([`Scoring::settle_tenant`]). Commits queued meanwhile
/// are taken together, one pass per tenant over the union of their metrics. Ends when the node stops claiming work and the
/// queue is empty, or when the scheduler is gone.
pub(super) async fn award_pass(
    scoring: Scoring,
    mut queued: mpsc::UnboundedReceiver<(TenantId, Arc<[String]>)>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            next = queued.recv() => next,
            _ = stopping.wait_for(|s| *s) => queued.try_recv().ok(),
        };
        let Some(first) = first else { return };
        // `None`: the whole tenant.
        let mut by_tenant: BTreeMap<TenantId, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut add = |(tenant, metrics): (TenantId, Arc<[String]>)| {
            let entry = by_tenant.entry(tenant).or_insert_with(|| Some(BTreeSet::new()));
            match entry {
                Some(set) if !metrics.is_empty() => set.extend(metrics.iter().cloned()),
                _ => *entry = None,
            }
        };
        add(first);
        while let Ok(more) = queued.try_recv() {
            add(more);
        }
        for (tenant, metrics) in by_tenant {
            let settled = match metrics {
                Some(metrics) => scoring.settle_metrics(tenant, &metrics.into_iter().collect::<Vec<_>>()).await,
                None => scoring.settle_tenant(tenant).await,
            };
            if let Err(e) = settled {
                tracing::warn!(%tenant, error = %e, "could not settle the awards of a commit");
            }
        }
    }
}
