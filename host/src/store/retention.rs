//! Retention: a tenant's privacy settings and the purge that keeps data only as long as
//! it is required.
//!
//! # Settled facts
//! A fact whose `occurred_at` is older than the tenant's settle window (`settle_days`,
//! default 400) is *settled*: the CRM record behind it is past verification. The purge
//! *seals* it: its source hash (the keyed hash of the CRM record id, the one link from the
//! fact back to the record) is replaced by 16 random bytes linked to nothing, and
//! `sealed_at` set. Its metric, owner, instant and value stay, so every total, target and
//! standing reads as before; contest totals are keyed by owner and do not change.
//!
//! The purge seals every fact that occurred before `now - settle_days` and records that
//! horizon on each integration with facts (`integrations.sealed_before`; it never moves
//! back, so a longer window set later does not reopen what was sealed). Every ingestion
//! commit applies its integration's horizon (see [`super::facts`]): an upsert dated before
//! it, or a retraction of a stored fact dated before it, is not applied and is counted on
//! the run as `settled`; a snapshot's window is cut at it and never retracts a sealed fact.
//! So a later change to a sealed record is ignored and never counted twice, while a first
//! import (an integration with nothing sealed) takes the whole history, sealed at the next
//! purge. Limits: a record created in the CRM with a date before the horizon is settled
//! too, and a change that moves a sealed record's date from before the horizon to after it
//! arrives as a new record (nothing links it to the sealed fact) and counts again.
//!
//! # Unmatched owners
//! Each purge notes the CRM owners with facts and no user (`unmatched_owners`, since when);
//! a mapping removes the note. Once an owner has been unmatched for `unmatched_days`
//! (default 30), its facts are discarded, at that purge and every later one (facts a sync
//! brings back for it go too), and the contests' totals are summed again.
//!
//! # Runs
//! Finished sync runs older than `runs_days` (default 90) are replaced by their counts per
//! integration and local day (`run_days`).
//!
//! # The purge
//! One transaction per tenant, holding the locks of the tenant's integrations on Postgres
//! (a commit takes its integration's first; SQLite serialises writers), so a sync committing
//! at the same time lands entirely before or after it. At most one purge per tenant runs at
//! once across nodes: a lease in `privacy_settings` ([`StoreError::Conflict`] for a second).
//! Each purge is recorded with its report (`retention_runs`) and audited
//! (`retention.purged`).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::error::StoreError;
use super::standings::StandingsTx;
use super::types::{Actor, TenantId, now_ms, to_u64};
use super::{BeginWrite, Pool, Store};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The settle window's bounds and default, in days.
pub const SETTLE_DAYS: (u32, u32, u32) = (30, 3650, 400);
/// The unmatched owners' window's bounds and default, in days.
pub const UNMATCHED_DAYS: (u32, u32, u32) = (1, 3650, 30);
/// How long finished runs are kept: bounds and default, in days.
pub const RUNS_DAYS: (u32, u32, u32) = (1, 3650, 90);
/// The longest `dpo_contact`, in characters.
pub const DPO_CONTACT_MAX: usize = 300;
/// How long a purge's lease lasts (a purge that outlives it may be run again by another).
pub const RETENTION_LEASE_MS: i64 = 15 * 60 * 1000;

/// A tenant's privacy settings (every default until an admin sets them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacySettings {
    /// How to reach the tenant's data protection officer, as the register shows it.
    pub dpo_contact: Option<String>,
    /// Facts that occurred longer ago than this are settled and sealed.
    pub settle_days: u32,
    /// Facts of a CRM owner unmatched for this long are discarded.
    pub unmatched_days: u32,
    /// Finished runs are kept this long, then only their daily counts.
    pub runs_days: u32,
    /// Whether the support messenger is switched on (a processor in the register).
    pub support_messenger: bool,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            dpo_contact: None,
            settle_days: SETTLE_DAYS.2,
            unmatched_days: UNMATCHED_DAYS.2,
            runs_days: RUNS_DAYS.2,
            support_messenger: false,
        }
    }
}

/// What started a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionKind {
    /// The scheduler's daily purge.
    Scheduled,
    /// An admin (`POST /v1/privacy/retention/run`).
    Manual,
}

impl RetentionKind {
    fn to_stored(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }

    fn parse_stored(s: &str) -> Result<Self, StoreError> {
        match s {
            "scheduled" => Ok(Self::Scheduled),
            "manual" => Ok(Self::Manual),
            _ => Err(StoreError::Corrupt { what: "retention run kind" }),
        }
    }
}

/// What one purge did, per category.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionReport {
    /// Facts that occurred before this instant (ms since the Unix epoch) are settled.
    pub settled_before_ms: i64,
    /// Performance figures: facts sealed by this purge (their source hash dropped).
    pub facts_sealed: u64,
    /// Performance figures: CRM owners unmatched past their window whose facts were
    /// discarded by this purge.
    pub unmatched_owners_discarded: u64,
    /// Performance figures: the facts of those owners, discarded.
    pub unmatched_facts_discarded: u64,
    /// CRM owners unmatched but still within their window (their facts wait for a mapping).
    pub unmatched_owners_waiting: u64,
    /// Sync runs: finished runs past their window, dropped and kept only as daily counts.
    pub runs_summarised: u64,
}

/// One recorded purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRun {
    /// Its id.
    pub id: Uuid,
    /// What started it.
    pub kind: RetentionKind,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When it finished.
    pub finished_at_ms: i64,
    /// What it did.
    pub report: RetentionReport,
}

/// A tenant's retention settings and the state of its purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionState {
    /// The settings.
    pub settings: PrivacySettings,
    /// When an admin last changed them (`None`: never; the defaults apply).
    pub updated_at_ms: Option<i64>,
    /// The current settle horizon: facts that occurred before it are settled.
    pub settled_before_ms: i64,
    /// When the scheduler purges next (`None`: at its next tick).
    pub next_run_at_ms: Option<i64>,
    /// Whether a purge is running now.
    pub running: bool,
    /// The latest purge.
    pub last_run: Option<RetentionRun>,
}

/// Facts that occurred before this instant are settled at `now` (the purge's horizon).
fn horizon(now: i64, settle_days: i64) -> i64 {
    now.saturating_sub(settle_days.saturating_mul(DAY_MS))
}

/// The integration's sealed horizon, read inside a transaction (the ingestion commit):
/// changes dated before it are settled (`i64::MIN` while nothing is sealed).
pub(crate) async fn settle_horizon<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: Uuid,
    connector: &str,
) -> Result<i64, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Option<i64>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT sealed_before FROM integrations WHERE tenant_id = $1 AND connector_id = $2")
            .bind(tenant)
            .bind(connector)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.and_then(|(at,)| at).unwrap_or(i64::MIN))
}

/// `privacy_settings` as read: dpo, settle, unmatched, runs, messenger, updated, lease
/// until, next run.
type SettingsRow = (Option<String>, i64, i64, i64, bool, Option<i64>, Option<i64>, Option<i64>);

const SELECT_SETTINGS: &str = "SELECT dpo_contact, settle_days, unmatched_days, runs_days, support_messenger, \
     updated_at, retention_lease_until, next_retention_at FROM privacy_settings WHERE tenant_id = $1";

fn days(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn settings_from(row: &SettingsRow) -> PrivacySettings {
    PrivacySettings {
        dpo_contact: row.0.clone(),
        settle_days: days(row.1),
        unmatched_days: days(row.2),
        runs_days: days(row.3),
        support_messenger: row.4,
    }
}

/// A recorded purge as read: id, kind, started, finished, report.
type StoredRun = (Uuid, String, i64, i64, String);

/// The counts of finished runs folded into one day.
#[derive(Default)]
struct DayCounts {
    runs: i64,
    succeeded: i64,
    partial: i64,
    failed: i64,
    upserts: i64,
    retractions: i64,
    settled: i64,
}

/// A finished run as the purge reads it: id, connector, status, finished at, upserts,
/// retractions, settled.
type OldRun = (Uuid, String, String, i64, i64, i64, i64);

impl Store {
    /// The tenant's privacy settings (the defaults if never set).
    pub async fn privacy_settings(&self, tenant: TenantId) -> Result<PrivacySettings, StoreError> {
        Ok(self.retention_state(tenant).await?.settings)
    }

    /// Replaces the tenant's privacy settings, audited (`privacy.settings_changed`; the
    /// subject holds the windows and switches, not the contact). The windows must be within
    /// their bounds ([`StoreError::Invalid`] otherwise; the API checks first).
    pub async fn set_privacy_settings(
        &self,
        tenant: TenantId,
        settings: &PrivacySettings,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let within = |v: u32, (lo, hi, _): (u32, u32, u32)| (lo..=hi).contains(&v);
        if !within(settings.settle_days, SETTLE_DAYS)
            || !within(settings.unmatched_days, UNMATCHED_DAYS)
            || !within(settings.runs_days, RUNS_DAYS)
        {
            return Err(StoreError::Invalid { what: "retention window" });
        }
        let t = tenant.as_uuid();
        let subject = format!(
            "settle_days={} unmatched_days={} runs_days={} support_messenger={} dpo_contact={}",
            settings.settle_days,
            settings.unmatched_days,
            settings.runs_days,
            settings.support_messenger,
            if settings.dpo_contact.is_some() { "set" } else { "none" },
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO privacy_settings (tenant_id, dpo_contact, settle_days, unmatched_days, runs_days, \
                 support_messenger, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id) DO UPDATE SET dpo_contact = excluded.dpo_contact, \
                 settle_days = excluded.settle_days, unmatched_days = excluded.unmatched_days, \
                 runs_days = excluded.runs_days, support_messenger = excluded.support_messenger, \
                 updated_at = excluded.updated_at",
            )
            .bind(t)
            .bind(settings.dpo_contact.as_deref())
            .bind(i64::from(settings.settle_days))
            .bind(i64::from(settings.unmatched_days))
            .bind(i64::from(settings.runs_days))
            .bind(settings.support_messenger)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound { what: "tenant" },
                _ => StoreError::Database(e),
            })?;
            audit_in_tx!(&self.key, tx, t, actor, "privacy.settings_changed", &subject);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The tenant's retention settings, current horizon, purge state and latest purge.
    pub async fn retention_state(&self, tenant: TenantId) -> Result<RetentionState, StoreError> {
        let t = tenant.as_uuid();
        let (row, last): (Option<SettingsRow>, Option<StoredRun>) = on_pool!(self, pool => {
            let row = sqlx::query_as(SELECT_SETTINGS).bind(t).fetch_optional(pool).await?;
            let last = sqlx::query_as(
                "SELECT id, kind, started_at, finished_at, report FROM retention_runs WHERE tenant_id = $1 \
                 ORDER BY finished_at DESC, id LIMIT 1",
            )
            .bind(t)
            .fetch_optional(pool)
            .await?;
            (row, last)
        });
        let now = now_ms();
        let last_run = last
            .map(|(id, kind, started, finished, report)| {
                Ok::<_, StoreError>(RetentionRun {
                    id,
                    kind: RetentionKind::parse_stored(&kind)?,
                    started_at_ms: started,
                    finished_at_ms: finished,
                    report: serde_json::from_str(&report)
                        .map_err(|_| StoreError::Corrupt { what: "retention report" })?,
                })
            })
            .transpose()?;
        Ok(match row {
            Some(row) => RetentionState {
                settings: settings_from(&row),
                updated_at_ms: row.5,
                settled_before_ms: horizon(now, row.1),
                next_run_at_ms: row.7,
                running: row.6.is_some_and(|until| until > now),
                last_run,
            },
            None => RetentionState {
                settings: PrivacySettings::default(),
                updated_at_ms: None,
                settled_before_ms: horizon(now, i64::from(SETTLE_DAYS.2)),
                next_run_at_ms: None,
                running: false,
                last_run,
            },
        })
    }

    /// Tenants whose daily purge is due at `now`, at most `limit`: a day after the last
    /// scheduled one, the first a day after the tenant was created (the scheduler's
    /// retention tick: a read across tenants, like the sync queue's).
    pub async fn tenants_due_for_retention(&self, now: i64, limit: u32) -> Result<Vec<TenantId>, StoreError> {
        let ids: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT t.tenant_id FROM tenants t LEFT JOIN privacy_settings p ON p.tenant_id = t.tenant_id \
                 WHERE COALESCE(p.next_retention_at, t.created_at + $3) <= $1 ORDER BY t.tenant_id LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .bind(DAY_MS)
            .fetch_all(pool)
            .await?
        });
        Ok(ids.into_iter().map(TenantId::from_uuid).collect())
    }

    /// Runs the tenant's purge now (see the module docs) and returns it as recorded.
    /// [`StoreError::Conflict`] (`retention run`) if another purge of the tenant is running.
    /// `holder` names this node on the lease.
    pub async fn run_retention(
        &self,
        tenant: TenantId,
        kind: RetentionKind,
        actor: Actor,
        holder: &str,
    ) -> Result<RetentionRun, StoreError> {
        let t = tenant.as_uuid();
        let started = now_ms();
        // The lease: one purge per tenant at a time, across nodes.
        let claimed = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("INSERT INTO privacy_settings (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING")
                .bind(t)
                .execute(&mut *tx)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound { what: "tenant" },
                    _ => StoreError::Database(e),
                })?;
            let claimed = sqlx::query(
                "UPDATE privacy_settings SET retention_lease_holder = $2, retention_lease_until = $3 \
                 WHERE tenant_id = $1 AND (retention_lease_until IS NULL OR retention_lease_until <= $4)",
            )
            .bind(t)
            .bind(holder)
            .bind(started + RETENTION_LEASE_MS)
            .bind(started)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            claimed == 1
        });
        if !claimed {
            return Err(StoreError::Conflict { what: "retention run" });
        }
        let purged = self.purge(tenant, kind, actor, holder, started).await;
        if purged.is_err() {
            // Give the lease back so that the next attempt need not wait for it.
            let released: Result<(), StoreError> = on_pool!(self, pool => {
                sqlx::query(
                    "UPDATE privacy_settings SET retention_lease_holder = NULL, retention_lease_until = NULL \
                     WHERE tenant_id = $1 AND retention_lease_holder = $2",
                )
                .bind(t)
                .bind(holder)
                .execute(pool)
                .await
                .map(drop)
                .map_err(StoreError::from)
            });
            if let Err(e) = released {
                tracing::warn!(code = e.code(), "could not release the retention lease");
            }
        }
        purged
    }

    /// The purge itself, under the lease: one transaction.
    async fn purge(
        &self,
        tenant: TenantId,
        kind: RetentionKind,
        actor: Actor,
        holder: &str,
        started: i64,
    ) -> Result<RetentionRun, StoreError> {
        let t = tenant.as_uuid();
        let id = super::types::random_uuid();
        let run = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Commits lock their integration first: taking every integration of the tenant
            // (in one order) makes a commit land wholly before or after this purge.
            sqlx::query(&format!(
                "SELECT connector_id FROM integrations WHERE tenant_id = $1 ORDER BY connector_id{}",
                self.for_update()
            ))
            .bind(t)
            .fetch_all(&mut *tx)
            .await?;
            let row: Option<SettingsRow> = sqlx::query_as(SELECT_SETTINGS).bind(t).fetch_optional(&mut *tx).await?;
            let row = row.ok_or(StoreError::NotFound { what: "privacy settings" })?;
            let settings = settings_from(&row);
            let now = now_ms();
            let mut report = RetentionReport { settled_before_ms: horizon(now, row.1), ..Default::default() };

            // Settled facts: the source hash goes, the fact stays.
            let random = match self.pool {
                Pool::Postgres(_) => "uuid_send(gen_random_uuid())",
                Pool::Sqlite(_) => "randomblob(16)",
            };
            report.facts_sealed = sqlx::query(&format!(
                "UPDATE facts SET source_hash = {random}, sealed_at = $3 \
                 WHERE tenant_id = $1 AND occurred_at < $2 AND sealed_at IS NULL"
            ))
            .bind(t)
            .bind(report.settled_before_ms)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Integrations with facts: nothing before the horizon changes again. (One without
            // facts has nothing sealed: its first import takes the whole history.)
            sqlx::query(
                "UPDATE integrations SET sealed_before = $2 WHERE tenant_id = $1 \
                 AND (sealed_before IS NULL OR sealed_before < $2) AND EXISTS (SELECT 1 FROM facts f \
                 WHERE f.tenant_id = integrations.tenant_id AND f.connector_id = integrations.connector_id)",
            )
            .bind(t)
            .bind(report.settled_before_ms)
            .execute(&mut *tx)
            .await?;

            // Unmatched owners: noted, forgotten once mapped, discarded once expired.
            sqlx::query(
                "DELETE FROM unmatched_owners WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM owner_mappings m \
                 WHERE m.tenant_id = unmatched_owners.tenant_id AND m.connector_id = unmatched_owners.connector_id \
                 AND m.owner_hash = unmatched_owners.owner_hash)",
            )
            .bind(t)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO unmatched_owners (tenant_id, connector_id, owner_hash, first_seen_at) \
                 SELECT DISTINCT f.tenant_id, f.connector_id, f.owner_hash, $2 FROM facts f \
                 WHERE f.tenant_id = $1 AND NOT EXISTS (SELECT 1 FROM owner_mappings m \
                 WHERE m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id AND m.owner_hash = f.owner_hash) \
                 ON CONFLICT (tenant_id, connector_id, owner_hash) DO NOTHING",
            )
            .bind(t)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let expired_before = now.saturating_sub(i64::from(settings.unmatched_days) * DAY_MS);
            let unmatched: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
                "SELECT connector_id, owner_hash, first_seen_at FROM unmatched_owners WHERE tenant_id = $1 \
                 ORDER BY connector_id, owner_hash",
            )
            .bind(t)
            .fetch_all(&mut *tx)
            .await?;
            for (connector, owner, first_seen) in unmatched {
                if first_seen > expired_before {
                    report.unmatched_owners_waiting += 1;
                    continue;
                }
                let discarded = sqlx::query(
                    "DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3",
                )
                .bind(t)
                .bind(&connector)
                .bind(&owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if discarded > 0 {
                    report.unmatched_owners_discarded += 1;
                    report.unmatched_facts_discarded += discarded;
                }
            }
            if report.unmatched_facts_discarded > 0 {
                // What the contests count changed: their totals are summed again.
                tx.rebuild_standings(t, None).await?;
            }

            // Finished runs past their window: only daily counts stay.
            let zone: String = sqlx::query_scalar("SELECT timezone FROM tenants WHERE tenant_id = $1")
                .bind(t)
                .fetch_one(&mut *tx)
                .await?;
            let zone = jiff::tz::TimeZone::get(&zone).map_err(|_| StoreError::Corrupt { what: "tenant timezone" })?;
            let old: Vec<OldRun> = sqlx::query_as(
                "SELECT id, connector_id, status, finished_at, upserts, retractions, settled FROM sync_runs \
                 WHERE tenant_id = $1 AND status IN ('succeeded', 'partial', 'failed') AND finished_at < $2",
            )
            .bind(t)
            .bind(now.saturating_sub(i64::from(settings.runs_days) * DAY_MS))
            .fetch_all(&mut *tx)
            .await?;
            let mut by_day: BTreeMap<(String, String), DayCounts> = BTreeMap::new();
            for (run_id, connector, status, finished, upserts, retractions, settled) in &old {
                let day = crate::engine::period::local_date(*finished, &zone)
                    .map_err(|_| StoreError::Corrupt { what: "run end" })?
                    .to_string();
                let c = by_day.entry((connector.clone(), day)).or_default();
                c.runs += 1;
                match status.as_str() {
                    "succeeded" => c.succeeded += 1,
                    "partial" => c.partial += 1,
                    _ => c.failed += 1,
                }
                c.upserts += upserts;
                c.retractions += retractions;
                c.settled += settled;
                sqlx::query("DELETE FROM sync_runs WHERE tenant_id = $1 AND id = $2")
                    .bind(t)
                    .bind(*run_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for ((connector, day), c) in &by_day {
                sqlx::query(
                    "INSERT INTO run_days (tenant_id, connector_id, day, runs, succeeded, partial, failed, upserts, \
                     retractions, settled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (tenant_id, connector_id, day) DO UPDATE SET runs = run_days.runs + excluded.runs, \
                     succeeded = run_days.succeeded + excluded.succeeded, partial = run_days.partial + excluded.partial, \
                     failed = run_days.failed + excluded.failed, upserts = run_days.upserts + excluded.upserts, \
                     retractions = run_days.retractions + excluded.retractions, \
                     settled = run_days.settled + excluded.settled",
                )
                .bind(t)
                .bind(connector)
                .bind(day)
                .bind(c.runs)
                .bind(c.succeeded)
                .bind(c.partial)
                .bind(c.failed)
                .bind(c.upserts)
                .bind(c.retractions)
                .bind(c.settled)
                .execute(&mut *tx)
                .await?;
            }
            report.runs_summarised = old.len() as u64;

            // The record, the audit entry, the lease given back.
            let finished = now_ms();
            let report_json =
                serde_json::to_string(&report).map_err(|_| StoreError::Corrupt { what: "retention report" })?;
            sqlx::query(
                "INSERT INTO retention_runs (tenant_id, id, kind, started_at, finished_at, report) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(t)
            .bind(id)
            .bind(kind.to_stored())
            .bind(started)
            .bind(finished)
            .bind(&report_json)
            .execute(&mut *tx)
            .await?;
            let subject = format!(
                "{} sealed={} unmatched_owners={} unmatched_facts={} runs={}",
                kind.to_stored(),
                report.facts_sealed,
                report.unmatched_owners_discarded,
                report.unmatched_facts_discarded,
                report.runs_summarised,
            );
            audit_in_tx!(&self.key, tx, t, actor, "retention.purged", &subject);
            // A scheduled purge is due again in a day (a failed one at the next tick).
            let next = match kind {
                RetentionKind::Scheduled => Some(finished + DAY_MS),
                RetentionKind::Manual => None,
            };
            sqlx::query(
                "UPDATE privacy_settings SET retention_lease_holder = NULL, retention_lease_until = NULL, \
                 next_retention_at = COALESCE($3, next_retention_at) WHERE tenant_id = $1 AND retention_lease_holder = $2",
            )
            .bind(t)
            .bind(holder)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            RetentionRun { id, kind, started_at_ms: started, finished_at_ms: finished, report }
        });
        Ok(run)
    }

    /// The tenant's finished runs folded into daily counts, per integration and local day:
    /// `(connector, day, runs, upserts + retractions)`; for operators and tests.
    pub async fn run_days(&self, tenant: TenantId) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT connector_id, day, runs, upserts, retractions FROM run_days WHERE tenant_id = $1 \
                 ORDER BY connector_id, day",
            )
            .bind(tenant.as_uuid())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(c, d, runs, u, r)| (c, d, to_u64(runs), to_u64(u) + to_u64(r))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_is_the_window_back_from_now() {
        let now = 1_000 * DAY_MS;
        assert_eq!(horizon(now, 400), 600 * DAY_MS);
        assert_eq!(horizon(now, 30), 970 * DAY_MS);
        assert_eq!(horizon(i64::MIN + 1, 3650), i64::MIN);
    }
}
