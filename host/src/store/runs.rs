//! Sync runs, and the leases through which several host nodes share them.
//!
//! A run is `queued` (by [`Store::queue_run`] or the scheduler's
//! [`Store::enqueue_due_runs`]), then `running` under a lease once a node claims it
//! ([`Store::claim_run`]), then `succeeded`, `partial` (it did not do everything it set
//! out to do: its `reasons` say what is missing, [`Store::finish_run_partial`]) or `failed`
//! ([`Store::finish_run`]). Every
//! commit of the run checks the lease in its transaction, so a node whose lease expired
//! and whose run was claimed elsewhere cannot commit anything more: it gets
//! [`StoreError::LeaseLost`]. A run whose node died is claimed again once its lease
//! expires and resumes from the integration's last committed cursor. At most one run per
//! integration is queued or running at a time (a partial unique index).
//!
//! Claiming is the scheduler's queue and reads across tenants by design: on Postgres with
//! `FOR UPDATE SKIP LOCKED`, so concurrent nodes never claim the same run; on SQLite
//! as a single `UPDATE … RETURNING` statement (SQLite has one writer at a time). Claims go
//! round-robin across tenants: the run of the tenant with the fewest running syncs first,
//! then the oldest; a node passes the tenants it already runs its share of
//! ([`Store::claim_run_fair`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use super::error::StoreError;
use super::types::{RunId, TenantId, now_ms, random_bytes, to_u64};
use super::{BeginWrite, Pool, Store};

/// Where a sync run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a node to claim it.
    Queued,
    /// Held by a node's lease.
    Running,
    /// Finished, having done everything it set out to do.
    Succeeded,
    /// Finished without error but without doing everything it set out to do (its reasons
    /// say what); a prompt retry is scheduled.
    Partial,
    /// Finished with an error (its code is on the run).
    Failed,
}

impl RunStatus {
    /// The stored and serialised name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }

    fn parse_stored(s: &str) -> Result<Self, StoreError> {
        match s {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "partial" => Ok(Self::Partial),
            "failed" => Ok(Self::Failed),
            _ => Err(StoreError::Corrupt { what: "run status" }),
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sync run and what it did so far. Counts include every committed batch, also of a run
/// that failed later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    /// The integration's connector.
    pub connector_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// When a node first claimed it.
    pub started_at_ms: Option<i64>,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
    /// How many times it was claimed (more than one: resumed after a lost node).
    pub attempts: u64,
    /// Batches committed.
    pub checkpoints: u64,
    /// Upserts committed.
    pub upserts: u64,
    /// Retractions committed.
    pub retractions: u64,
    /// Upserted facts whose CRM owner was not mapped to a user when committed.
    pub unmapped: u64,
    /// Upserted amounts whose currency had no rate when committed.
    pub waiting_rate: u64,
    /// Changes ignored because they concern settled facts (see [`super::retention`]).
    pub settled: u64,
    /// Changes rejected by the validator, by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// The error code of a failed run (a host code or one the connector declared).
    pub error_code: Option<String>,
    /// Why a `partial` run is partial (see [`RunReason`]); empty otherwise.
    pub reasons: Vec<String>,
}

impl Run {
    /// Changes accepted and committed: upserts and retractions.
    pub fn accepted(&self) -> u64 {
        self.upserts + self.retractions
    }

    /// Changes rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// How long it ran, once finished.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at_ms? - self.started_at_ms?)
    }
}

/// A node's claim on a running sync run. Pass it to every commit of the run; it is what
/// fences off a node that lost the run.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    /// The run's tenant.
    pub tenant_id: TenantId,
    /// The run.
    pub run_id: RunId,
    /// The integration's connector.
    pub connector_id: String,
    /// The claim's unique token: the node's name and a random suffix.
    pub owner: String,
    /// When the lease runs out unless renewed, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
    /// Which claim of the run this is (1 for the first; more means resumed).
    pub attempt: u64,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("tenant_id", &self.tenant_id)
            .field("run_id", &self.run_id)
            .field("connector_id", &self.connector_id)
            .field("owner", &self.owner)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("attempt", &self.attempt)
            .finish()
    }
}

const SELECT_RUN: &str = "SELECT id, connector_id, status, created_at, started_at, finished_at, attempts, \
     checkpoints, upserts, retractions, unmapped, waiting_rate, rejected, error_code, reasons, settled FROM sync_runs";

type RunRow = (
    Uuid,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    String,
    i64,
);

fn run_from_row(row: RunRow) -> Result<Run, StoreError> {
    let (
        id,
        connector_id,
        status,
        created,
        started,
        finished,
        attempts,
        checkpoints,
        upserts,
        retractions,
        unmapped,
        waiting,
        rejected,
        error_code,
        reasons,
        settled,
    ) = row;
    Ok(Run {
        id: RunId::from_uuid(id),
        connector_id,
        status: RunStatus::parse_stored(&status)?,
        created_at_ms: created,
        started_at_ms: started,
        finished_at_ms: finished,
        attempts: to_u64(attempts),
        checkpoints: to_u64(checkpoints),
        upserts: to_u64(upserts),
        retractions: to_u64(retractions),
        unmapped: to_u64(unmapped),
        waiting_rate: to_u64(waiting),
        settled: to_u64(settled),
        rejected: parse_rejected(&rejected)?,
        error_code,
        reasons: serde_json::from_str(&reasons).map_err(|_| StoreError::Corrupt { what: "run reasons" })?,
    })
}

/// Reads stored rejection counts.
pub(crate) fn parse_rejected(json: &str) -> Result<BTreeMap<String, u64>, StoreError> {
    serde_json::from_str(json).map_err(|_| StoreError::Corrupt { what: "rejection counts" })
}

/// Adds rejection counts to stored ones and returns the new stored form.
pub(crate) fn merge_rejected(stored: &str, add: &BTreeMap<String, u64>) -> Result<String, StoreError> {
    let mut counts = parse_rejected(stored)?;
    for (code, n) in add {
        *counts.entry(code.clone()).or_default() += n;
    }
    Ok(serde_json::to_string(&counts).expect("a map of strings to integers serialises"))
}

/// Why a run is `partial`: what it set out to do and did not. Stored and shown as codes
/// (`roster_failed:http_rate_limited`, `owners_unmapped:3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunReason {
    /// The roster read failed with this code: owners kept their mapping, new ones wait.
    RosterFailed(String),
    /// CRM owners of the integration still waiting for a mapping after a failed roster.
    OwnersUnmapped(u64),
    /// The CRM's request budget ran out (the connector said so); the rest is read later.
    BudgetExhausted,
    /// The host's patience with the CRM's rate limits (the wait budget of the run, or its
    /// deadline) ran out before the CRM answered.
    RateLimitWait,
    /// A snapshot was still open when the sync ended: nothing it did not see was retracted.
    SnapshotSkipped,
}

impl RunReason {
    /// The stored and shown code.
    pub fn code(&self) -> String {
        match self {
            Self::RosterFailed(code) => format!("roster_failed:{code}"),
            Self::OwnersUnmapped(n) => format!("owners_unmapped:{n}"),
            Self::BudgetExhausted => BUDGET_EXHAUSTED.to_owned(),
            Self::RateLimitWait => "rate_limit_wait_exhausted".to_owned(),
            Self::SnapshotSkipped => "snapshot_skipped".to_owned(),
        }
    }
}

/// The reason of a partial run that stopped because the CRM's request budget ran out.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// What `POST …/resync` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// The cursor is reset; this run (queued now, or already queued) reads everything.
    Now(RunId),
    /// A run is in flight: the cursor is reset when it ends, and a run that reads
    /// everything is due at once then.
    AfterRunning(RunId),
}

/// A duration in milliseconds, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Queues a run of an enabled integration now and returns its id; if one is already
    /// queued or running, returns that one instead (a sync is never queued twice). A new
    /// run moves the integration's next scheduled sync one interval on.
    /// [`StoreError::NotFound`] for an unknown integration, [`StoreError::IntegrationDisabled`]
    /// for a disabled one.
    pub async fn queue_run(&self, tenant: TenantId, connector_id: &str) -> Result<RunId, StoreError> {
        let id = RunId::new();
        let now = now_ms();
        let run = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The integration row is locked first, in the same order as the scheduler's tick
            // (integration, then run), so that the two cannot deadlock.
            let enabled: Option<bool> = sqlx::query_scalar(&format!(
                "SELECT enabled FROM integrations WHERE tenant_id = $1 AND connector_id = $2{}",
                self.for_update()
            ))
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_optional(&mut *tx)
            .await?;
            match enabled {
                None => return Err(StoreError::NotFound { what: "integration" }),
                Some(false) => return Err(StoreError::IntegrationDisabled),
                Some(true) => {}
            }
            let inserted = sqlx::query(
                "INSERT INTO sync_runs (tenant_id, id, connector_id, status, created_at) \
                 VALUES ($1, $2, $3, 'queued', $4) \
                 ON CONFLICT (tenant_id, connector_id) WHERE status IN ('queued', 'running') DO NOTHING",
            )
            .bind(tenant.as_uuid())
            .bind(id.as_uuid())
            .bind(connector_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let run = if inserted == 1 {
                // A run queued by hand stands in for the scheduled one: the next scheduled
                // sync is one interval from now, not a second run right after this one.
                sqlx::query(
                    "UPDATE integrations SET next_sync_at = $3 + sync_interval_secs * 1000 \
                     WHERE tenant_id = $1 AND connector_id = $2",
                )
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                id
            } else {
                let existing: Uuid = sqlx::query_scalar(
                    "SELECT id FROM sync_runs WHERE tenant_id = $1 AND connector_id = $2 \
                     AND status IN ('queued', 'running')",
                )
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .fetch_one(&mut *tx)
                .await?;
                RunId::from_uuid(existing)
            };
            tx.commit().await?;
            run
        });
        Ok(run)
    }

    /// Queues a run for every enabled integration, of any tenant, whose next sync is due,
    /// at most `limit` of them, and moves their next sync one interval on. Integrations that
    /// already have an active run are skipped. Returns the runs queued. (The scheduler's
    /// tick; safe to call from several nodes at once.)
    pub async fn enqueue_due_runs(&self, limit: u32) -> Result<Vec<(TenantId, RunId)>, StoreError> {
        let now = now_ms();
        let due: Vec<(Uuid, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant_id, connector_id, sync_interval_secs FROM integrations \
                 WHERE enabled AND next_sync_at <= $1 AND auth_status IS NULL AND approval_digest IS NULL ORDER BY next_sync_at LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        let mut queued = Vec::new();
        for (tenant, connector_id, interval) in due {
            let id = RunId::new();
            let next = now.saturating_add(interval.saturating_mul(1000));
            let inserted = on_pool!(self, pool => {
                let mut tx = pool.begin_write().await?;
                let moved = sqlx::query(
                    "UPDATE integrations SET next_sync_at = $3 \
                     WHERE tenant_id = $1 AND connector_id = $2 AND enabled AND next_sync_at <= $4",
                )
                .bind(tenant)
                .bind(&connector_id)
                .bind(next)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let mut inserted = 0;
                if moved == 1 {
                    inserted = sqlx::query(
                        "INSERT INTO sync_runs (tenant_id, id, connector_id, status, created_at) \
                         VALUES ($1, $2, $3, 'queued', $4) \
                         ON CONFLICT (tenant_id, connector_id) WHERE status IN ('queued', 'running') DO NOTHING",
                    )
                    .bind(tenant)
                    .bind(id.as_uuid())
                    .bind(&connector_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                inserted
            });
            if inserted == 1 {
                queued.push((TenantId::from_uuid(tenant), id));
            }
        }
        Ok(queued)
    }

    /// Claims the oldest queued run of any tenant, or a running one whose lease expired,
    /// for `lease_for`. `node` names the claiming node (for operators); the lease's owner
    /// token adds a random suffix so that every claim is distinct. `None` if nothing waits.
    pub async fn claim_run(&self, node: &str, lease_for: Duration) -> Result<Option<Lease>, StoreError> {
        self.claim_run_fair(node, lease_for, &[]).await
    }

    /// Like [`Store::claim_run`], round-robin across tenants and never for a tenant of
    /// `skip_tenants` (those this node already runs its share of): the claimable run of
    /// the tenant with the fewest running syncs goes first, the oldest among equals. A
    /// tenant with many due runs thus takes one turn, then every other tenant with a due
    /// run takes theirs.
    pub async fn claim_run_fair(
        &self,
        node: &str,
        lease_for: Duration,
        skip_tenants: &[TenantId],
    ) -> Result<Option<Lease>, StoreError> {
        let now = now_ms();
        let owner = format!("{node}#{}", hex::encode(random_bytes::<8>()));
        let expires = now.saturating_add(millis(lease_for));
        let skip = if skip_tenants.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = (0..skip_tenants.len()).map(|i| format!("${}", i + 4)).collect();
            format!("AND r.tenant_id NOT IN ({}) ", list.join(", "))
        };
        let pick = format!(
            "SELECT r.tenant_id, r.id FROM sync_runs r \
             WHERE (r.status = 'queued' OR (r.status = 'running' AND r.lease_expires_at < $2)) {skip}\
             ORDER BY (SELECT COUNT(*) FROM sync_runs a WHERE a.tenant_id = r.tenant_id \
                 AND a.status = 'running' AND a.lease_expires_at >= $2), r.created_at LIMIT 1{}",
            if matches!(self.pool, Pool::Postgres(_)) { " FOR UPDATE OF r SKIP LOCKED" } else { "" }
        );
        let sql = format!(
            "UPDATE sync_runs SET status = 'running', lease_owner = $1, lease_expires_at = $3, \
             started_at = COALESCE(started_at, $2), attempts = attempts + 1 \
             WHERE (tenant_id, id) = ({pick}) \
             RETURNING tenant_id, id, connector_id, attempts"
        );
        let row: Option<(Uuid, Uuid, String, i64)> = on_pool!(self, pool => {
            let mut query = sqlx::query_as(&sql).bind(&owner).bind(now).bind(expires);
            for tenant in skip_tenants {
                query = query.bind(tenant.as_uuid());
            }
            query.fetch_optional(pool).await?
        });
        Ok(row.map(|(tenant, id, connector_id, attempts)| Lease {
            tenant_id: TenantId::from_uuid(tenant),
            run_id: RunId::from_uuid(id),
            connector_id,
            owner,
            expires_at_ms: expires,
            attempt: to_u64(attempts),
        }))
    }

    /// Extends a lease to `lease_for` from now. [`StoreError::LeaseLost`] if the run is no
    /// longer held by it.
    pub async fn renew_lease(&self, lease: &mut Lease, lease_for: Duration) -> Result<(), StoreError> {
        let expires = now_ms().saturating_add(millis(lease_for));
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE sync_runs SET lease_expires_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND lease_owner = $3",
            )
            .bind(lease.tenant_id.as_uuid())
            .bind(lease.run_id.as_uuid())
            .bind(&lease.owner)
            .bind(expires)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::LeaseLost);
        }
        lease.expires_at_ms = expires;
        Ok(())
    }

    /// Finishes a run: `succeeded` without `error_code`, `failed` with it. `rejected` adds
    /// the rejections since the last commit. The integration's next scheduled sync is one
    /// interval from now. [`StoreError::LeaseLost`] if the run is no longer held by `lease`.
    pub async fn finish_run(
        &self,
        lease: &Lease,
        error_code: Option<&str>,
        rejected: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        let status = if error_code.is_some() { RunStatus::Failed } else { RunStatus::Succeeded };
        self.end_run(lease, status, error_code, &[], rejected, None).await
    }

    /// Finishes a run that did not do everything it set out to do: `partial`, with its
    /// `reasons` (not empty), and the integration's next sync at `next_sync_at_ms` (the
    /// prompt retry) instead of one interval from now. Otherwise as [`Store::finish_run`].
    pub async fn finish_run_partial(
        &self,
        lease: &Lease,
        reasons: &[RunReason],
        rejected: &BTreeMap<String, u64>,
        next_sync_at_ms: i64,
    ) -> Result<(), StoreError> {
        let codes: Vec<String> = reasons.iter().map(RunReason::code).collect();
        self.end_run(lease, RunStatus::Partial, None, &codes, rejected, Some(next_sync_at_ms)).await
    }

    /// Finishes a run that failed, with its next sync at `next_sync_at_ms` (a prompt retry
    /// after the CRM's rate limits wore out the host's patience) instead of one interval on.
    pub async fn finish_run_failed_retry_at(
        &self,
        lease: &Lease,
        error_code: &str,
        rejected: &BTreeMap<String, u64>,
        next_sync_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.end_run(lease, RunStatus::Failed, Some(error_code), &[], rejected, Some(next_sync_at_ms)).await
    }

    /// Records the end of a run; the next scheduled sync is at `next_sync_at_ms`, or one
    /// interval from now. A resync asked for while the run was in flight applies now: the
    /// cursor is reset and the next sync is due at once.
    async fn end_run(
        &self,
        lease: &Lease,
        status: RunStatus,
        error_code: Option<&str>,
        reasons: &[String],
        rejected: &BTreeMap<String, u64>,
        next_sync_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The integration first, then the run: the lock order of every transaction that
            // takes both (the tick, queueing, commits), so that none can deadlock.
            sqlx::query(&format!(
                "SELECT 1 FROM integrations WHERE tenant_id = $1 AND connector_id = $2{}",
                self.for_update()
            ))
            .bind(lease.tenant_id.as_uuid())
            .bind(&lease.connector_id)
            .execute(&mut *tx)
            .await?;
            let stored: Option<String> = sqlx::query_scalar(&format!(
                "SELECT rejected FROM sync_runs \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND lease_owner = $3{}",
                self.for_update()
            ))
            .bind(lease.tenant_id.as_uuid())
            .bind(lease.run_id.as_uuid())
            .bind(&lease.owner)
            .fetch_optional(&mut *tx)
            .await?;
            let stored = stored.ok_or(StoreError::LeaseLost)?;
            let merged = merge_rejected(&stored, rejected)?;
            let reasons = serde_json::to_string(reasons).expect("a list of strings serialises");
            sqlx::query(
                "UPDATE sync_runs SET status = $3, finished_at = $4, error_code = $5, rejected = $6, \
                 reasons = $7, lease_owner = NULL, lease_expires_at = NULL WHERE tenant_id = $1 AND id = $2",
            )
            .bind(lease.tenant_id.as_uuid())
            .bind(lease.run_id.as_uuid())
            .bind(status.as_str())
            .bind(now)
            .bind(error_code)
            .bind(&merged)
            .bind(&reasons)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE integrations SET \
                 next_sync_at = CASE WHEN resync_pending THEN $3 \
                     ELSE COALESCE($4, $3 + sync_interval_secs * 1000) END, \
                 cursor = CASE WHEN resync_pending THEN NULL ELSE cursor END, \
                 resync_pending = FALSE \
                 WHERE tenant_id = $1 AND connector_id = $2 AND enabled",
            )
            .bind(lease.tenant_id.as_uuid())
            .bind(&lease.connector_id)
            .bind(now)
            .bind(next_sync_at_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives a run back to the queue (graceful shutdown after its last checkpoint): another
    /// node, or this one after a restart, resumes it from the committed cursor.
    pub async fn release_run(&self, lease: &Lease) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE sync_runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'running' AND lease_owner = $3",
            )
            .bind(lease.tenant_id.as_uuid())
            .bind(lease.run_id.as_uuid())
            .bind(&lease.owner)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }

    /// Resets an integration's cursor so that its next run reads everything (what an
    /// operator needs after a connector fix). Facts are keyed by source record, so reading
    /// them again replaces them, never counts them twice. With no run in flight the cursor
    /// is reset at once and a run is queued (or the queued one kept):
    /// [`Resync::Now`]. With a run in flight, resetting under it would let its next commit
    /// write its own cursor back; the reset waits for its end instead (see
    /// [`Store::finish_run`]), and a full run is due right then: [`Resync::AfterRunning`].
    /// [`StoreError::NotFound`] for an unknown integration,
    /// [`StoreError::IntegrationDisabled`] for a disabled one.
    pub async fn resync(&self, tenant: TenantId, connector_id: &str) -> Result<Resync, StoreError> {
        let id = RunId::new();
        let now = now_ms();
        let answer = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let enabled: Option<bool> = sqlx::query_scalar(&format!(
                "SELECT enabled FROM integrations WHERE tenant_id = $1 AND connector_id = $2{}",
                self.for_update()
            ))
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_optional(&mut *tx)
            .await?;
            match enabled {
                None => return Err(StoreError::NotFound { what: "integration" }),
                Some(false) => return Err(StoreError::IntegrationDisabled),
                Some(true) => {}
            }
            // The active run's row is locked too, so that no node claims it meanwhile.
            let active: Option<(Uuid, String)> = sqlx::query_as(&format!(
                "SELECT id, status FROM sync_runs WHERE tenant_id = $1 AND connector_id = $2 \
                 AND status IN ('queued', 'running'){}",
                self.for_update()
            ))
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_optional(&mut *tx)
            .await?;
            let answer = match active {
                Some((run, status)) if status == "running" => {
                    sqlx::query(
                        "UPDATE integrations SET resync_pending = TRUE WHERE tenant_id = $1 AND connector_id = $2",
                    )
                    .bind(tenant.as_uuid())
                    .bind(connector_id)
                    .execute(&mut *tx)
                    .await?;
                    Resync::AfterRunning(RunId::from_uuid(run))
                }
                active => {
                    let run = match active {
                        Some((run, _)) => RunId::from_uuid(run),
                        None => {
                            sqlx::query(
                                "INSERT INTO sync_runs (tenant_id, id, connector_id, status, created_at) \
                                 VALUES ($1, $2, $3, 'queued', $4)",
                            )
                            .bind(tenant.as_uuid())
                            .bind(id.as_uuid())
                            .bind(connector_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            id
                        }
                    };
                    sqlx::query(
                        "UPDATE integrations SET cursor = NULL, resync_pending = FALSE, \
                         next_sync_at = $3 + sync_interval_secs * 1000 \
                         WHERE tenant_id = $1 AND connector_id = $2",
                    )
                    .bind(tenant.as_uuid())
                    .bind(connector_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Resync::Now(run)
                }
            };
            tx.commit().await?;
            answer
        });
        Ok(answer)
    }

    /// The instant (milliseconds since the Unix epoch) before which the integration's CRM
    /// asked not to be called, as the last run on any node learnt it; `None` if none.
    pub async fn crm_not_before(&self, tenant: TenantId, connector_id: &str) -> Result<Option<i64>, StoreError> {
        let at: Option<Option<i64>> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT crm_not_before FROM integrations WHERE tenant_id = $1 AND connector_id = $2")
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(at.flatten())
    }

    /// Records that the integration's CRM asked not to be called before `not_before_ms`
    /// (a later instant already recorded is kept), for whichever node syncs it next.
    pub async fn note_crm_not_before(
        &self,
        tenant: TenantId,
        connector_id: &str,
        not_before_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE integrations SET crm_not_before = $3 WHERE tenant_id = $1 AND connector_id = $2 \
                 AND (crm_not_before IS NULL OR crm_not_before < $3)",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(not_before_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A run of the tenant.
    pub async fn run(&self, tenant: TenantId, run: RunId) -> Result<Run, StoreError> {
        let row: Option<RunRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_RUN} WHERE tenant_id = $1 AND id = $2"))
                .bind(tenant.as_uuid())
                .bind(run.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        run_from_row(row.ok_or(StoreError::NotFound { what: "run" })?)
    }

    /// The latest runs of one integration of the tenant, newest first, at most `limit`.
    pub async fn runs(&self, tenant: TenantId, connector_id: &str, limit: u32) -> Result<Vec<Run>, StoreError> {
        let rows: Vec<RunRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "{SELECT_RUN} WHERE tenant_id = $1 AND connector_id = $2 ORDER BY created_at DESC, id LIMIT $3"
            ))
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(run_from_row).collect()
    }
}
