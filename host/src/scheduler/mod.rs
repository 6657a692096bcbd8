//! Sync jobs: which integration syncs when, on which node, exactly once.
//!
//! Work is shared through the database, never through a home-made cluster: every node ticks
//! `Store::enqueue_due_runs` (safe from several nodes at once), then claims queued runs (or
//! running ones whose lease expired) with `Store::claim_run`, which uses
//! `FOR UPDATE SKIP LOCKED` on Postgres. A claimed run holds a lease that a background task
//! renews; every commit of the run presents the lease, so a node that lost its run (it
//! paused too long, its lease expired, another node took over) can no longer write. A node
//! that dies mid-run leaves the lease to expire, and the run resumes elsewhere from its last
//! committed checkpoint.
//!
//! A sync runs with the tenant's time zone (calendar dates land on the tenant's days).
//!
//! A run tells the truth: `succeeded` only when it did everything it set out to do (map
//! owners from the roster, read every change since its cursor, resolve the snapshots it
//! began); otherwise, without an error, `partial` with its reasons (`roster_failed:<code>`
//! and `owners_unmapped:<n>`, `budget_exhausted`, `snapshot_skipped`), and a prompt retry:
//! after a spent CRM budget when the connector said the budget is back (at least
//! [`MIN_BUDGET_BACKOFF`] and at most [`MAX_BUDGET_BACKOFF`] ahead, or
//! [`DEFAULT_BUDGET_BACKOFF`] when it did not say), otherwise after [`RETRY_BACKOFF`]
//! doubled for each partial run before it, at most one interval. A run whose requests ran
//! out of patience with the CRM's rate limits ([`RateGate`]: `Retry-After` and pacing within
//! the run's wait budget) fails with its code and is retried the same way, never before the
//! instant the CRM asked for (kept in the database for whichever node runs it).
//!
//! Fairness: a node runs at most [`SchedulerConfig::max_per_tenant`] syncs of one tenant at
//! once, and claims round-robin across tenants (`Store::claim_run_fair`).
//!
//! The node's other background work lives here too ([`background`]): the freezing tick
//! (contests past their end get their final standing stored and their placements awarded,
//! every [`FREEZE_TICK`]) and the award pass (after each commit, the target incentives of
//! the metrics it touched are settled), both through the node's [`Scoring`].

mod background;
mod retention;
mod sink;
mod vault;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tracing::Instrument;

pub use self::background::{FREEZE_BATCH, FREEZE_TICK};
pub use self::sink::StoreSink;
pub use self::vault::IntegrationVault;
use crate::ingest::model::{Change, Cursor, Snapshot};
use crate::runtime::http::{PaceLedger, RateGate};
use crate::runtime::registry::Registry;
use crate::runtime::{
    BoxFuture, IntegrationSetup, Runtime, SyncError, SyncOutcome, SyncScope, SyncSink, SyncStats, TimeZone,
};
use crate::scoring::Scoring;
use crate::store::{Lease, RunReason, Store, StoreError, TenantId};

/// How long after a budget-exhausted sync the next one is due when the connector gave no
/// resume time.
pub const DEFAULT_BUDGET_BACKOFF: Duration = Duration::from_secs(3600);
/// The furthest ahead a connector's resume time may put the next sync.
pub const MAX_BUDGET_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// The soonest a budget-exhausted sync is retried, whatever the resume time (a time in the
/// past must not make the integration sync in a tight loop).
pub const MIN_BUDGET_BACKOFF: Duration = Duration::from_secs(60);

/// The first prompt retry after a partial run (or one that ran out of patience with the
/// CRM's rate limits); doubled for each such run in a row, at most one interval.
pub const RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// When a partial run's part that failed is retried, from `now_ms`: [`RETRY_BACKOFF`]
/// doubled `streak` times (the partial runs just before), at most `interval_secs`, never
/// before `not_before_ms` (the CRM's own word).
pub fn retry_at(now_ms: i64, streak: u32, interval_secs: u64, not_before_ms: Option<i64>) -> i64 {
    let backoff = RETRY_BACKOFF.saturating_mul(1u32 << streak.min(16)).min(Duration::from_secs(interval_secs.max(1)));
    let at = now_ms.saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX));
    at.max(not_before_ms.unwrap_or(i64::MIN))
}

/// When the next sync is due after a budget-exhausted one ended at `now_ms`: the
/// connector's `resume_at_ms` clamped to between [`MIN_BUDGET_BACKOFF`] and
/// [`MAX_BUDGET_BACKOFF`] from now, or [`DEFAULT_BUDGET_BACKOFF`] from now without one.
pub fn budget_resume_at(now_ms: i64, resume_at_ms: Option<i64>) -> i64 {
    let after = |d: Duration| now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match resume_at_ms {
        None => after(DEFAULT_BUDGET_BACKOFF),
        Some(at) => at.clamp(after(MIN_BUDGET_BACKOFF), after(MAX_BUDGET_BACKOFF)),
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This node's name, recorded on the runs it claims.
    pub node: String,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// How often the node looks for due and queued runs when nothing wakes it.
    pub poll: Duration,
    /// Syncs this node runs at once.
    pub max_concurrent: usize,
    /// Syncs of one tenant this node runs at once.
    pub max_per_tenant: usize,
    /// How long shutdown waits for running syncs before leaving them to be resumed.
    pub grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            node: default_node_name(),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            max_concurrent: 4,
            max_per_tenant: 1,
            grace: Duration::from_secs(30),
        }
    }
}

/// `hostname-pid`, for operators reading run records.
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "node".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

struct Inner {
    store: Store,
    runtime: Arc<Runtime>,
    registry: Arc<Registry>,
    config: SchedulerConfig,
    wake: Notify,
    running: AtomicUsize,
    /// Syncs running on this node, per tenant.
    by_tenant: Mutex<BTreeMap<TenantId, usize>>,
    idle: Notify,
    stop: watch::Sender<bool>,
    /// Where each successful commit is announced (see [`FactsCommitted`]).
    changes: broadcast::Sender<FactsCommitted>,
    /// The scoring rules of this node (freezing, awards).
    scoring: Scoring,
    /// The award pass's queue: a tenant and the metrics one commit touched (none: every
    /// incentive of the tenant, after the roster mapped an owner).
    awards: tokio::sync::mpsc::UnboundedSender<(TenantId, Arc<[String]>)>,
}

/// Facts of a tenant changed: one successful commit of a sync (a checkpoint, or its end)
/// on this node, with the metric slugs it touched (upserted, retracted, or covered by a
/// completed snapshot). Only this node's commits are announced: readers that must also
/// see other nodes' commits poll as well (see `api/live.rs`).
#[derive(Debug, Clone)]
pub struct FactsCommitted {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The connector that synced.
    pub connector_id: String,
    /// The metric slugs touched, sorted and distinct.
    pub metrics: Arc<[String]>,
}

/// How many announcements wait for slow readers before they lag (and must assume that
/// everything changed).
const CHANGE_FEED_CAPACITY: usize = 1024;

/// A handle on the scheduler loop of this node.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// Starts the loop, the freezing tick and the award pass on the current tokio runtime,
    /// with the node's [`Scoring`] over `store` and the metrics of `registry`'s connectors.
    pub fn start(store: Store, runtime: Arc<Runtime>, registry: Arc<Registry>, config: SchedulerConfig) -> Self {
        let (stop, _) = watch::channel(false);
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        let metrics: Vec<(String, crate::ingest::MetricKind)> = registry
            .iter()
            .flat_map(|c| c.manifest().metrics.iter().map(|m| (m.slug.clone(), m.kind)).collect::<Vec<_>>())
            .collect();
        let scoring = Scoring::new(store.clone(), metrics);
        let (awards, queued) = tokio::sync::mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            store,
            runtime,
            registry,
            config,
            wake: Notify::new(),
            running: AtomicUsize::new(0),
            by_tenant: Mutex::new(BTreeMap::new()),
            idle: Notify::new(),
            stop,
            changes,
            scoring,
            awards,
        });
        tokio::spawn(run_loop(inner.clone()));
        // The daily retention purge, a separate tick.
        tokio::spawn(retention::run_daily(inner.store.clone(), inner.config.node.clone(), inner.stop.subscribe()));
        tokio::spawn(background::freezing_tick(inner.scoring.clone(), inner.stop.subscribe()));
        tokio::spawn(background::award_pass(inner.scoring.clone(), queued, inner.stop.subscribe()));
        Scheduler { inner }
    }

    /// The node's scoring rules (shared with the API).
    pub fn scoring(&self) -> &Scoring {
        &self.inner.scoring
    }

    /// The change feed: every successful commit of this node's syncs, announced right after
    /// it (subscribe on the returned sender).
    pub fn changes(&self) -> broadcast::Sender<FactsCommitted> {
        self.inner.changes.clone()
    }

    /// Turns `true` when the node starts shutting down ([`Scheduler::stop_claiming`]).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Looks for work now (after a run was queued).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops claiming new runs (the first step of a shutdown); running syncs go on.
    pub fn stop_claiming(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.wake.notify_one();
    }

    /// Stops claiming and gives running syncs the grace period to finish. A sync still
    /// running then is stopped and handed back to the queue: its committed checkpoints
    /// stay, and any node resumes it from the last one at once (no lease to wait out).
    pub async fn shutdown(&self) {
        self.stop_claiming();
        let wait = async {
            while self.inner.running.load(Ordering::SeqCst) > 0 {
                let notified = self.inner.idle.notified();
                if self.inner.running.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        // Each sync hands itself back after the grace period; allow a little more for that.
        if tokio::time::timeout(self.inner.config.grace + Duration::from_secs(10), wait).await.is_err() {
            tracing::warn!(running = self.inner.running.load(Ordering::SeqCst), "shutdown left syncs to their leases");
        }
    }
}

async fn run_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = inner.store.enqueue_due_runs(64).await {
            tracing::warn!(code = e.code(), error = %e, "could not queue due runs");
        }
        while inner.running.load(Ordering::SeqCst) < inner.config.max_concurrent && !*stop.borrow() {
            let full: Vec<TenantId> = tenant_counts(&inner)
                .iter()
                .filter(|(_, n)| **n >= inner.config.max_per_tenant.max(1))
                .map(|(t, _)| *t)
                .collect();
            match inner.store.claim_run_fair(&inner.config.node, inner.config.lease, &full).await {
                Ok(Some(lease)) => {
                    inner.running.fetch_add(1, Ordering::SeqCst);
                    crate::telemetry::metrics().syncs_running.inc();
                    *tenant_counts(&inner).entry(lease.tenant_id).or_default() += 1;
                    let inner = inner.clone();
                    let span = tracing::info_span!(
                        "sync",
                        tenant = %lease.tenant_id,
                        connector = %lease.connector_id,
                        run = %lease.run_id,
                        attempt = lease.attempt
                    );
                    tokio::spawn(async move {
                        let tenant = lease.tenant_id;
                        execute(&inner, lease).instrument(span).await;
                        {
                            let mut counts = tenant_counts(&inner);
                            if let Some(n) = counts.get_mut(&tenant) {
                                *n = n.saturating_sub(1);
                                if *n == 0 {
                                    counts.remove(&tenant);
                                }
                            }
                        }
                        inner.running.fetch_sub(1, Ordering::SeqCst);
                        crate::telemetry::metrics().syncs_running.dec();
                        inner.idle.notify_waiters();
                        inner.wake.notify_one();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(code = e.code(), error = %e, "could not claim a run");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.poll) => {}
            _ = inner.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

fn tenant_counts(inner: &Inner) -> std::sync::MutexGuard<'_, BTreeMap<TenantId, usize>> {
    inner.by_tenant.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one claimed sync to its end and records the result.
async fn execute(inner: &Inner, lease: Lease) {
    let started = std::time::Instant::now();
    let metrics = crate::telemetry::metrics();
    let tenant = lease.tenant_id;
    let connector_id = lease.connector_id.clone();
    let span =
        tracing::info_span!("sync", %tenant, connector = %connector_id, run = %lease.run_id, attempt = lease.attempt);
    let _enter = span.enter();
    drop(_enter);

    // Keep the lease alive while the sync runs; a lost lease makes every later commit fail.
    let renewing = {
        let store = inner.store.clone();
        let mut lease = lease.clone();
        let period = inner.config.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = store.renew_lease(&mut lease, period * 3).await {
                    tracing::warn!(code = e.code(), "stopped renewing a lease");
                    return;
                }
            }
        })
    };
    // On shutdown the sync gets the grace period; after that it is dropped (a commit in
    // flight rolls back whole) and the run goes back to the queue.
    let mut stop = inner.stop.subscribe();
    let grace = inner.config.grace;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    let outcome = tokio::select! {
        outcome = sync_once(inner, &lease) => Some(outcome),
        _ = stopped => None,
    };
    renewing.abort();
    let Some(outcome) = outcome else {
        metrics.sync_run(&connector_id, "handed_back", started.elapsed(), &[]);
        match inner.store.release_run(&lease).await {
            Ok(()) => {
                tracing::info!(%tenant, connector = %connector_id, run = %lease.run_id, "shutting down: run handed back to the queue")
            }
            Err(e) => {
                tracing::warn!(code = e.code(), "shutting down: could not hand the run back; its lease will expire")
            }
        }
        return;
    };
    let now = crate::store::types::now_ms();
    let Ended { result, rejected, mut reasons, not_before, rate_limited } = outcome;
    let (error, finished) = match result {
        Ok(SyncOutcome::BudgetExhausted(resume_at)) => {
            let mut next = budget_resume_at(now, resume_at);
            reasons.push(RunReason::BudgetExhausted);
            if reasons.len() > 1 {
                // Another part failed too: retry it promptly, never before the budget is back.
                next = next
                    .min(prompt_retry(inner, &lease, now, not_before).await)
                    .max(now.saturating_add(millis(MIN_BUDGET_BACKOFF)));
            }
            tracing::info!(next_sync_at_ms = next, "the CRM's request budget ran out; the next sync resumes then");
            (None, inner.store.finish_run_partial(&lease, &reasons, &rejected, next).await)
        }
        Ok(SyncOutcome::Complete) if reasons.is_empty() => {
            (None, inner.store.finish_run(&lease, None, &rejected).await)
        }
        Ok(SyncOutcome::Complete) => {
            let next = prompt_retry(inner, &lease, now, not_before).await;
            (None, inner.store.finish_run_partial(&lease, &reasons, &rejected, next).await)
        }
        Err(code) if rate_limited => {
            let next = prompt_retry(inner, &lease, now, not_before).await;
            tracing::info!(next_sync_at_ms = next, "the CRM's rate limits outlasted the run's patience; retrying then");
            (Some(code.clone()), inner.store.finish_run_failed_retry_at(&lease, &code, &rejected, next).await)
        }
        Err(code) => {
            let finished = inner.store.finish_run(&lease, Some(&code), &rejected).await;
            (Some(code), finished)
        }
    };
    let status = match (&finished, &error) {
        (Err(StoreError::LeaseLost), _) => "lease_lost",
        (_, Some(_)) => "failed",
        (_, None) if reasons.is_empty() => "succeeded",
        (_, None) => "partial",
    };
    let reason_codes: Vec<String> = reasons.iter().map(RunReason::code).collect();
    metrics.sync_run(&connector_id, status, started.elapsed(), &reason_codes);
    if status == "lease_lost" {
        metrics.lease_losses.inc();
    }
    match finished {
        Ok(()) => match &error {
            None if reasons.is_empty() => {
                tracing::info!(%tenant, connector = %connector_id, run = %lease.run_id, "run succeeded")
            }
            None => {
                let reasons: Vec<String> = reasons.iter().map(RunReason::code).collect();
                tracing::warn!(%tenant, connector = %connector_id, run = %lease.run_id, reasons = %reasons.join(","), "run partial")
            }
            Some(code) => tracing::warn!(%tenant, connector = %connector_id, run = %lease.run_id, code, "run failed"),
        },
        Err(StoreError::LeaseLost) => {
            tracing::warn!(%tenant, connector = %connector_id, run = %lease.run_id, "run lost its lease; another node has it")
        }
        Err(e) => tracing::error!(code = e.code(), error = %e, "could not record the end of a run"),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// When the part of a run that failed is retried (see [`retry_at`]).
async fn prompt_retry(inner: &Inner, lease: &Lease, now: i64, not_before: Option<i64>) -> i64 {
    let streak = partial_streak(inner, lease).await;
    let interval = inner.store.integration(lease.tenant_id, &lease.connector_id).await.map(|i| i.sync_interval_secs);
    retry_at(now, streak, interval.unwrap_or(3600), not_before)
}

/// How many runs of the integration just before this one ended partial (or failed on the
/// CRM's rate limits and were retried promptly), for the retry's back-off.
async fn partial_streak(inner: &Inner, lease: &Lease) -> u32 {
    let Ok(runs) = inner.store.runs(lease.tenant_id, &lease.connector_id, 12).await else { return 0 };
    runs.iter()
        .filter(|r| r.id != lease.run_id)
        .take_while(|r| matches!(r.status, crate::store::RunStatus::Partial | crate::store::RunStatus::Failed))
        .count()
        .try_into()
        .unwrap_or(u32::MAX)
}

type Rejected = BTreeMap<String, u64>;

/// How a sync ended: its outcome or error code, the rejections not yet committed, what it
/// did not do, and what the CRM's rate limits did to it.
struct Ended {
    result: Result<SyncOutcome, String>,
    rejected: Rejected,
    reasons: Vec<RunReason>,
    /// The instant the CRM asked not to be called before, if one is known.
    not_before: Option<i64>,
    /// Whether a request ended because the run's patience with the rate limits ran out.
    rate_limited: bool,
}

/// Records the CRM's "not before" instants of a run's requests in the database.
struct StoreLedger {
    store: Store,
    tenant: TenantId,
    connector_id: String,
}

impl PaceLedger for StoreLedger {
    fn record(&self, not_before_ms: i64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.note_crm_not_before(self.tenant, &self.connector_id, not_before_ms).await {
                tracing::warn!(code = e.code(), "could not record the CRM's rate-limit instant");
            }
        })
    }
}

/// The sync itself, with the run's roster: how it ended.
async fn sync_once(inner: &Inner, lease: &Lease) -> Ended {
    let mut reasons = Vec::new();
    let gate = {
        let limits = &inner.runtime.config();
        let deadline = std::time::Instant::now() + limits.limits.wall_time;
        let ledger = StoreLedger {
            store: inner.store.clone(),
            tenant: lease.tenant_id,
            connector_id: lease.connector_id.clone(),
        };
        let not_before = inner.store.crm_not_before(lease.tenant_id, &lease.connector_id).await.unwrap_or(None);
        Arc::new(
            RateGate::new(limits.http.rate_wait_budget, Some(deadline))
                .with_ledger(Arc::new(ledger))
                .not_before_ms(not_before),
        )
    };
    let result = sync_with(inner, lease, &gate, &mut reasons).await;
    let not_before = inner.store.crm_not_before(lease.tenant_id, &lease.connector_id).await.unwrap_or(None);
    let (result, rejected) = match result {
        Ok((outcome, rejected)) => (Ok(outcome), rejected),
        Err((code, rejected)) => (Err(code), rejected),
    };
    // A connector that ended budget-exhausted already says why (the gate's refusal is how it
    // learnt it): one reason is enough.
    if matches!(result, Ok(SyncOutcome::Complete)) && gate.gave_up() && reasons.is_empty() {
        reasons.push(RunReason::RateLimitWait);
    }
    Ended { rate_limited: result.is_err() && gate.gave_up(), result, rejected, reasons, not_before }
}

/// The sync itself. Returns how it ended and the rejections not yet committed, or the
/// error code and those rejections; adds to `reasons` what it did not do.
async fn sync_with(
    inner: &Inner,
    lease: &Lease,
    gate: &Arc<RateGate>,
    reasons: &mut Vec<RunReason>,
) -> Result<(SyncOutcome, Rejected), (String, Rejected)> {
    let fail = |code: &str| (code.to_owned(), Rejected::new());
    let store = &inner.store;
    let tenant = lease.tenant_id;
    let integration = store.integration(tenant, &lease.connector_id).await.map_err(|e| fail(e.code()))?;
    if !integration.enabled {
        return Err(fail("integration_disabled"));
    }
    let Some(connector) = inner.registry.get(&lease.connector_id) else {
        return Err(fail("connector_not_installed"));
    };
    if !component_approved(store, tenant, &integration, connector).await.map_err(|e| fail(e.code()))? {
        return Err(fail("needs_approval"));
    }
    let secrets = store.integration_secrets(tenant, &lease.connector_id).await.map_err(|e| fail(e.code()))?;
    let tenant_key = store.tenant_key(tenant).await.map_err(|e| fail(e.code()))?;
    let zone = store.tenant(tenant).await.map_err(|e| fail(e.code()))?.timezone;
    // The API checks the zone when the tenant is created; the bundled database has it.
    let timezone = TimeZone::get(&zone).map_err(|_| fail("invalid_timezone"))?;
    // The refresh token and refresh lock of OAuth-style credentials; roster and sync share it.
    let vault: Arc<dyn crate::runtime::auth::TokenVault> =
        Arc::new(IntegrationVault::new(store.clone(), tenant, &lease.connector_id));
    let setup = || IntegrationSetup {
        config: integration.config.clone(),
        secrets: secrets.expose().clone(),
        tenant_key: tenant_key.clone(),
        debug: None,
        timezone: timezone.clone(),
        vault: Some(vault.clone()),
    };

    // Owner mapping: the roster's e-mails are compared with the tenant's users, then
    // dropped; the store never overrides a mapping nor maps through a self-set address.
    match inner.runtime.roster_paced(connector, setup(), Some(gate.clone())).await {
        Ok(roster) => {
            let roster: Vec<_> = roster.into_iter().map(|r| (r.owner, r.email)).collect();
            let mapped = store.map_roster(tenant, &lease.connector_id, &roster).await.map_err(|e| fail(e.code()))?;
            tracing::info!(mapped = mapped.mapped, pending = mapped.pending, "roster compared");
            if mapped.mapped > 0 {
                // Facts waiting under an owner now count for someone: settle the whole tenant.
                let _ = inner.awards.send((tenant, Arc::from(Vec::new())));
            }
        }
        Err(e) => {
            tracing::warn!(code = %e.code(), "roster failed; owners keep their current mapping");
            reasons.push(RunReason::RosterFailed(e.code()));
        }
    }

    let (sink, committed) = StoreSink::new(store.clone(), lease.clone());
    let sink = Announcing {
        sink,
        changes: inner.changes.clone(),
        awards: inner.awards.clone(),
        tenant,
        connector_id: lease.connector_id.clone(),
    };
    // Only the metrics the integration opted into are kept.
    let scope = SyncScope { gate: Some(gate), opted_in: Some(&integration.metrics) };
    let report = inner.runtime.sync_with(connector, setup(), integration.cursor.as_ref(), Box::new(sink), scope).await;
    crate::telemetry::metrics().events(&lease.connector_id, report.stats.accepted(), &report.stats.rejected);
    let uncommitted = committed.uncommitted(&report.stats);
    if report.snapshot_skipped {
        reasons.push(RunReason::SnapshotSkipped);
    }
    if matches!(reasons.first(), Some(RunReason::RosterFailed(_))) {
        // Whose figures wait for a mapping because of it.
        if let Ok(unmapped) = store.unmapped_owners(tenant, &lease.connector_id).await
            && !unmapped.is_empty()
        {
            reasons.push(RunReason::OwnersUnmapped(unmapped.len() as u64));
        }
    }
    match report.result {
        Ok(outcome) => Ok((outcome, uncommitted)),
        Err(SyncError::Commit(_)) => Err(("commit_failed".to_owned(), uncommitted)),
        Err(e) => Err((e.code(), uncommitted)),
    }
}

/// Whether the installed component is covered by the integration's consent, recording it
/// when it is: the approved one; or another whose grants are no wider (the change is
/// audited); or the first one seen by an integration enabled before components were
/// recorded. A component asking for more (a new host pattern, metric, secret key or
/// scheme) pauses the integration until an admin approves it (audited).
async fn component_approved(
    store: &Store,
    tenant: TenantId,
    integration: &crate::store::Integration,
    connector: &crate::runtime::LoadedConnector,
) -> Result<bool, StoreError> {
    let installed = connector.digest_hex();
    let id = &integration.connector_id;
    if integration.component_digest.as_deref() == Some(installed.as_str()) && integration.approval_digest.is_none() {
        return Ok(true);
    }
    let grants = connector.manifest().grants();
    let approved = integration.component_grants.as_deref().and_then(crate::runtime::manifest::Grants::from_json);
    let audit = |action: &'static str, subject: String| async move {
        let entry = crate::store::AuditEntry { actor: crate::store::Actor::System, action, subject: &subject };
        store.append_audit(tenant, &entry).await
    };
    let short = |d: Option<&str>| d.map(|d| d.chars().take(16).collect::<String>()).unwrap_or_else(|| "none".into());
    let from = short(integration.component_digest.as_deref());
    let to = short(Some(&installed));
    let changes = approved.as_ref().map(|a| grants.changes_from(a));
    if changes.as_ref().is_some_and(|c| c.is_wider()) {
        let changes = changes.expect("checked");
        if integration.approval_digest.as_deref() != Some(installed.as_str()) {
            store.mark_needs_approval(tenant, id, &installed).await?;
            audit("integration.needs_approval", format!("{id} {from}->{to} wider: {}", changes.summary())).await?;
            tracing::warn!(connector = %id, wider = %changes.summary(), "the installed component asks for more than was approved; the integration waits for an admin's approval");
        }
        return Ok(false);
    }
    store.record_component(tenant, id, &installed, &grants.to_json()).await?;
    let action = if approved.is_none() { "integration.component_recorded" } else { "integration.component_changed" };
    let summary = changes.map(|c| c.summary()).unwrap_or_else(|| "first record".into());
    audit(action, format!("{id} {from}->{to} changes: {summary}")).await?;
    tracing::info!(connector = %id, "the installed component changed within the approved grants");
    Ok(true)
}

/// A [`StoreSink`] that announces each successful commit on the change feed and queues
/// it for the award pass.
struct Announcing {
    sink: StoreSink,
    changes: broadcast::Sender<FactsCommitted>,
    awards: tokio::sync::mpsc::UnboundedSender<(TenantId, Arc<[String]>)>,
    tenant: TenantId,
    connector_id: String,
}

impl SyncSink for Announcing {
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        snapshots: Vec<Snapshot>,
        cursor: Option<&'a Cursor>,
        stats: &'a SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let mut metrics = std::collections::BTreeSet::new();
        for change in &changes {
            metrics.insert(match change {
                Change::Upsert(fact) => fact.metric.clone(),
                Change::Retract { metric, .. } => metric.clone(),
            });
        }
        for snapshot in &snapshots {
            metrics.extend(snapshot.window.metrics().iter().cloned());
        }
        Box::pin(async move {
            self.sink.commit(changes, snapshots, cursor, stats).await?;
            if !metrics.is_empty() {
                let metrics: Arc<[String]> = metrics.into_iter().collect();
                // The award pass ends only with the node.
                let _ = self.awards.send((self.tenant, metrics.clone()));
                // No subscriber (no open stream) is not an error.
                let _ = self.changes.send(FactsCommitted {
                    tenant_id: self.tenant,
                    connector_id: self.connector_id.clone(),
                    metrics,
                });
            }
            Ok(())
        })
    }
}
