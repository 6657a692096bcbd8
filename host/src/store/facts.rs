//! KPI facts: the ingestion commit, conversion into the tenant currency, and the totals the
//! engine reads.
//!
//! # The commit
//! [`Store::commit`] applies one batch of validated changes, and the cursor that follows
//! them, in one transaction that also checks the run's lease and that the integration is
//! still enabled, and adds the batch to the run's counts. Either all of it lands or none:
//! a crash anywhere leaves the previous checkpoint intact, and the connector resumes from
//! its cursor. Re-applying a batch is harmless: an upsert replaces the fact of the same
//! (integration, metric, source hash), a retraction of a missing fact deletes nothing.
//! Within a batch the last change per key wins. A fact re-sent unchanged is not rewritten
//! (its `confirmed_at` moves on at most daily), so re-syncing unchanged data is cheap.
//!
//! On Postgres the batch is set-based: one `DELETE … WHERE (metric, source_hash) IN
//! (SELECT * FROM UNNEST(…))` for the retractions and one `INSERT … SELECT FROM
//! UNNEST(…) ON CONFLICT DO UPDATE` per [`PG_CHUNK`] upserts, the columns sent as arrays,
//! so a batch costs a handful of round trips whatever its size. A batch of at least
//! [`PG_COPY_MIN`] upserts (a first sync's) is first tried as one `COPY … FROM STDIN`
//! (bulk insertion, several times cheaper per row than `INSERT … ON CONFLICT`) behind a
//! savepoint: if every key is new it lands as it is; if the primary key refuses one (a fact
//! is stored already) the `COPY` is rolled back to the savepoint and the batch upserted as
//! above. (Asking first which keys are stored was tried: with the statistics of a table a
//! first sync is filling, Postgres planned each lookup as a scan of the metric's facts.) On
//! SQLite one prepared statement is reused for every row inside the transaction (SQLite
//! runs in-process, so a statement costs no round trip).
//!
//! # Snapshots
//! [`Store::commit_with_snapshots`] also resolves the snapshot windows a connector completed
//! since its previous commit (contract 0.2, see [`crate::ingest::snapshot`]): after the
//! batch is applied, every fact of the integration of a window's metrics whose
//! `occurred_at` is in `[from, to)` and whose source hash the snapshot did not see is
//! deleted, in the same transaction as the batch and the cursor, and the deleted facts are
//! added to the run's retractions. The stored candidates are read by the
//! `facts_by_metric_time` index and compared with the sorted seen hashes in memory; the
//! unseen ones are deleted by key.
//!
//! # Contest standings
//! The same transaction keeps the tenant's contest totals ([`super::standings`]): when some
//! contest counts a metric of the batch, the stored rows of the batch's keys are read first
//! (one `UNNEST` lookup on Postgres), and the difference between what they counted and what
//! the written rows count (after retractions, upserts or `COPY`, and snapshot retractions)
//! is applied to `contest_totals` before the cursor moves. A tenant without contests pays
//! one read of its contest list.
//!
//! # Settled facts
//! Before anything is written, the commit reads the integration's sealed horizon
//! ([`super::retention`]): upserts dated before it and retractions of stored facts dated
//! before it are dropped from the batch and counted on the run as `settled`, and a
//! snapshot's window is cut at it (sealed facts are never candidates), so nothing a purge
//! sealed is changed, withdrawn or counted twice.
//!
//! # Money
//! An amount in the tenant currency is kept as it is; another currency is converted with
//! the tenant's rate (see [`super::fx`]) when committed. Without a rate the amount is kept
//! with `amount_tenant_micros` NULL, counted on the run as waiting, left out of totals, and
//! converted by [`Store::convert_waiting`] once the rate is set (which sums the tenant's
//! contest totals again, in its transaction, since the converted amounts now count).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use super::error::StoreError;
use super::fx::FxRate;
use super::integrations::{cursor_json, keyed_hash};
use super::runs::{Lease, merge_rejected};
use super::standings::{Counted, Deltas, StandingsTx};
use super::tenants::parse_currency;
use super::types::{TenantId, UserId, now_ms, to_i64, to_u64};
use super::{BeginWrite, Pool, Store};
use crate::ingest::{Change, Currency, Cursor, Fact, KeyedHash, Snapshot, Value};

/// How stale `confirmed_at` may get before an unchanged fact is rewritten to move it on
/// (one day; it must match the literal in the upsert statement).
pub const CONFIRM_EVERY_MS: i64 = 86_400_000;

/// Upserts per `INSERT … UNNEST` statement on Postgres.
pub const PG_CHUNK: usize = 10_000;

/// Upserts in a batch from which Postgres writes the new facts with `COPY` (below, all go
/// through `INSERT … ON CONFLICT`, which costs fewer round trips).
pub const PG_COPY_MIN: usize = 2_000;

/// What one commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// Upsert changes in the batch.
    pub upserts: u64,
    /// Retraction changes in the batch.
    pub retractions: u64,
    /// Facts that retractions actually deleted (a retraction of an unknown fact deletes none).
    pub deleted: u64,
    /// Facts that the committed snapshots deleted (stored in their window, not seen).
    pub snapshot_deleted: u64,
    /// Facts written whose CRM owner is not mapped to a user.
    pub unmapped: u64,
    /// Facts written whose amount waits for an exchange rate.
    pub waiting_rate: u64,
    /// Changes ignored because they concern settled facts: upserts dated before the
    /// tenant's settle horizon, retractions of stored facts dated before it (see
    /// [`super::retention`]).
    pub settled: u64,
}

/// A stored fact, as read back (tests, exports, operators' checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFact {
    /// The integration's connector.
    pub connector_id: String,
    /// The metric slug.
    pub metric: String,
    /// The keyed hash of the CRM record id.
    pub source: KeyedHash,
    /// The keyed hash of the CRM owner id.
    pub owner: KeyedHash,
    /// When it happened, in milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// The value as the connector reported it.
    pub value: Value,
    /// A money value in the tenant currency, in micros; `None` for counts and for amounts
    /// waiting for a rate.
    pub amount_tenant_micros: Option<i64>,
    /// When a sync last wrote or re-sent it, in milliseconds since the Unix epoch; re-sent
    /// unchanged, it moves on at most once per [`CONFIRM_EVERY_MS`].
    pub confirmed_at_ms: i64,
}

/// Whom a total belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A user of the tenant (through an owner mapping).
    User(UserId),
    /// A CRM owner not mapped to any user yet, by connector and keyed hash.
    Unmapped {
        /// The connector whose CRM the owner is in.
        connector_id: String,
        /// The keyed hash of the CRM user id.
        owner: KeyedHash,
    },
}

/// One owner's total of one metric over a time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiTotal {
    /// Whose total.
    pub owner: Owner,
    /// The sum: of counts, or of money in micros of the tenant currency.
    pub value: i128,
    /// How many facts went into it.
    pub facts: u64,
    /// Money facts left out because their currency has no rate yet.
    pub waiting_rate: u64,
}

/// CRM owners of one integration that no user is mapped to, and their facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedOwner {
    /// The keyed hash of the CRM user id.
    pub owner: KeyedHash,
    /// How many facts wait for the mapping.
    pub facts: u64,
}

/// A fact ready to be written: the columns of one row.
struct Row<'a> {
    metric: &'a str,
    source: [u8; 16],
    owner: [u8; 16],
    occurred_at: i64,
    kind: &'static str,
    count: Option<i64>,
    amount: Option<i64>,
    currency: Option<&'a str>,
    amount_tenant: Option<i64>,
}

impl Row<'_> {
    /// The value a contest counts: the count, or the amount in the tenant currency (`None`
    /// while it waits for a rate).
    fn counted_value(&self) -> Option<i64> {
        self.count.or(self.amount_tenant)
    }
}

/// A batch reduced to its effect: the last change per (metric, source), in key order.
struct Batch<'a> {
    upserts: Vec<&'a Fact>,
    retractions: Vec<(&'a str, [u8; 16])>,
    counts: CommitCounts,
}

impl<'a> Batch<'a> {
    fn new(changes: &'a [Change]) -> Self {
        let mut last: BTreeMap<(&'a str, [u8; 16]), Option<&'a Fact>> = BTreeMap::new();
        let mut counts = CommitCounts::default();
        for change in changes {
            match change {
                Change::Upsert(fact) => {
                    counts.upserts += 1;
                    last.insert((fact.metric.as_str(), fact.source.to_bytes()), Some(fact));
                }
                Change::Retract { metric, source } => {
                    counts.retractions += 1;
                    last.insert((metric.as_str(), source.to_bytes()), None);
                }
            }
        }
        let mut upserts = Vec::new();
        let mut retractions = Vec::new();
        for (key, fact) in last {
            match fact {
                Some(fact) => upserts.push(fact),
                None => retractions.push(key),
            }
        }
        Self { upserts, retractions, counts }
    }

    /// Drops the upserts dated before `horizon`: they concern settled facts (see
    /// [`super::retention`]) and are only counted.
    fn settle(&mut self, horizon: i64) {
        let before = self.upserts.len();
        self.upserts.retain(|f| f.occurred_at_ms >= horizon);
        let dropped = (before - self.upserts.len()) as u64;
        self.counts.upserts = self.counts.upserts.saturating_sub(dropped);
        self.counts.settled += dropped;
    }

    /// Drops the retractions of `settled` keys (stored facts dated before the horizon).
    fn keep_retractions_of_unsettled(&mut self, settled: &HashSet<(String, Vec<u8>)>) {
        if settled.is_empty() {
            return;
        }
        let before = self.retractions.len();
        self.retractions.retain(|(m, s)| !settled.contains(&((*m).to_owned(), s.to_vec())));
        let dropped = (before - self.retractions.len()) as u64;
        self.counts.retractions = self.counts.retractions.saturating_sub(dropped);
        self.counts.settled += dropped;
    }

    /// The keys of the batch (upserted or retracted) whose metric some contest counts.
    fn counted_keys(&self, counted: &Counted) -> Vec<(&'a str, [u8; 16])> {
        if counted.is_empty() {
            return Vec::new();
        }
        let upserts = self.upserts.iter().map(|f| (f.metric.as_str(), f.source.to_bytes()));
        upserts.chain(self.retractions.iter().copied()).filter(|(m, _)| counted.counts(m)).collect()
    }

    /// The rows to write, converted with the tenant's currency and rates; counts unmapped
    /// owners and amounts waiting for a rate.
    fn rows(&mut self, money: &MoneyContext, mapped: &HashSet<Vec<u8>>) -> Vec<Row<'a>> {
        let mut rows = Vec::with_capacity(self.upserts.len());
        for fact in &self.upserts {
            let owner = fact.owner.to_bytes();
            if !mapped.contains(&owner[..]) {
                self.counts.unmapped += 1;
            }
            let (kind, count, amount, currency, amount_tenant) = match &fact.value {
                Value::Count(n) => ("count", Some(*n), None, None, None),
                Value::Money { micros, currency } => {
                    let converted = money.convert(*micros, *currency);
                    if converted.is_none() {
                        self.counts.waiting_rate += 1;
                    }
                    ("money", None, Some(*micros), Some(currency.as_str()), converted)
                }
            };
            rows.push(Row {
                metric: &fact.metric,
                source: fact.source.to_bytes(),
                owner,
                occurred_at: fact.occurred_at_ms,
                kind,
                count,
                amount,
                currency,
                amount_tenant,
            });
        }
        rows
    }
}

/// The tenant currency and rates, for converting amounts.
struct MoneyContext {
    currency: Currency,
    rates: BTreeMap<Currency, FxRate>,
}

impl MoneyContext {
    fn from_rows(currency: &str, rates: Vec<(String, String)>) -> Result<Self, StoreError> {
        let rates = rates
            .into_iter()
            .map(|(currency, rate)| {
                let rate = FxRate::parse(&rate).map_err(|_| StoreError::Corrupt { what: "exchange rate" })?;
                Ok((parse_currency(&currency)?, rate))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { currency: parse_currency(currency)?, rates })
    }

    /// Micros of `currency` in micros of the tenant currency; `None` without a rate.
    fn convert(&self, micros: i64, currency: Currency) -> Option<i64> {
        if currency == self.currency { Some(micros) } else { self.rates.get(&currency)?.convert(micros) }
    }
}

/// A fact's value in the tenant currency (counts as they are), NULL while waiting for a rate.
pub(super) const FACT_VALUE: &str = "CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END";
const INSERT_FACT_COLUMNS: &str = "INSERT INTO facts (tenant_id, connector_id, metric, source_hash, owner_hash, \
     occurred_at, kind, count, amount_micros, currency, amount_tenant_micros, confirmed_at)";
/// Replaces a fact of the same key, unless nothing would change: a fact re-sent with the
/// same values is not rewritten (on Postgres a rewrite is a new row version and new index
/// entries, which would make re-syncs of unchanged data cost as much as the first sync),
/// except to move `confirmed_at` on once it is [`CONFIRM_EVERY_MS`] old.
const ON_CONFLICT_REPLACE: &str = "ON CONFLICT (tenant_id, connector_id, metric, source_hash) DO UPDATE SET \
     owner_hash = excluded.owner_hash, occurred_at = excluded.occurred_at, kind = excluded.kind, \
     count = excluded.count, amount_micros = excluded.amount_micros, currency = excluded.currency, \
     amount_tenant_micros = excluded.amount_tenant_micros, confirmed_at = excluded.confirmed_at \
     WHERE facts.owner_hash IS DISTINCT FROM excluded.owner_hash \
     OR facts.occurred_at IS DISTINCT FROM excluded.occurred_at OR facts.kind IS DISTINCT FROM excluded.kind \
     OR facts.count IS DISTINCT FROM excluded.count \
     OR facts.amount_micros IS DISTINCT FROM excluded.amount_micros \
     OR facts.currency IS DISTINCT FROM excluded.currency \
     OR facts.amount_tenant_micros IS DISTINCT FROM excluded.amount_tenant_micros \
     OR facts.confirmed_at < excluded.confirmed_at - 86400000";
const SELECT_LEASED_RUN: &str = "SELECT r.rejected, i.enabled FROM sync_runs r \
     JOIN integrations i ON i.tenant_id = r.tenant_id AND i.connector_id = r.connector_id \
     WHERE r.tenant_id = $1 AND r.id = $2 AND r.status = 'running' AND r.lease_owner = $3";
const UPDATE_RUN_COUNTS: &str = "UPDATE sync_runs SET checkpoints = checkpoints + 1, upserts = upserts + $3, \
     retractions = retractions + $4, unmapped = unmapped + $5, waiting_rate = waiting_rate + $6, rejected = $7, \
     settled = settled + $8 WHERE tenant_id = $1 AND id = $2";

impl Store {
    /// Commits one batch of a run: its changes, the cursor that follows them (if any) and
    /// the rejections the validator counted since the previous commit, in one transaction
    /// (see the module docs). [`StoreError::LeaseLost`] if the run is no longer held by
    /// `lease`, [`StoreError::IntegrationDisabled`] if the integration was disabled; in
    /// both cases, and on any error, nothing is written.
    pub async fn commit(
        &self,
        lease: &Lease,
        changes: &[Change],
        cursor: Option<&Cursor>,
        rejected: &BTreeMap<String, u64>,
    ) -> Result<CommitCounts, StoreError> {
        self.commit_with_snapshots(lease, changes, &[], cursor, rejected).await
    }

    /// Like [`Store::commit`], and resolves the completed `snapshots` in the same
    /// transaction, after the changes: the integration's stored facts of each snapshot's
    /// metrics in its window that it did not see are deleted (see the module docs).
    pub async fn commit_with_snapshots(
        &self,
        lease: &Lease,
        changes: &[Change],
        snapshots: &[Snapshot],
        cursor: Option<&Cursor>,
        rejected: &BTreeMap<String, u64>,
    ) -> Result<CommitCounts, StoreError> {
        let batch = Batch::new(changes);
        let cursor = cursor.map(cursor_json);
        match &self.pool {
            Pool::Postgres(pool) => commit_pg(pool, lease, batch, snapshots, cursor.as_deref(), rejected).await,
            Pool::Sqlite(pool) => commit_sqlite(pool, lease, batch, snapshots, cursor.as_deref(), rejected).await,
        }
    }

    /// Converts the tenant's amounts that wait for a rate, with the rates set now. Returns
    /// how many were converted.
    pub async fn convert_waiting(&self, tenant: TenantId) -> Result<u64, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                let same = sqlx::query(
                    "UPDATE facts f SET amount_tenant_micros = f.amount_micros FROM tenants t \
                     WHERE f.tenant_id = $1 AND t.tenant_id = f.tenant_id AND f.kind = 'money' \
                     AND f.amount_tenant_micros IS NULL AND f.currency = t.currency",
                )
                .bind(tenant.as_uuid())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // round(numeric) rounds halves away from zero, as FxRate::convert does;
                // results outside BIGINT stay waiting, as FxRate::convert's None does.
                let converted = sqlx::query(
                    "UPDATE facts f SET amount_tenant_micros = round(f.amount_micros * r.rate::numeric)::bigint \
                     FROM fx_rates r \
                     WHERE f.tenant_id = $1 AND r.tenant_id = f.tenant_id AND r.currency = f.currency \
                     AND f.kind = 'money' AND f.amount_tenant_micros IS NULL \
                     AND abs(round(f.amount_micros * r.rate::numeric)) <= 9223372036854775807",
                )
                .bind(tenant.as_uuid())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if same + converted > 0 {
                    // What the contests count changed: their totals are summed again.
                    tx.rebuild_standings(tenant.as_uuid(), None).await?;
                }
                tx.commit().await?;
                Ok(same + converted)
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                let money = load_money_context(&mut tx, tenant.as_uuid()).await?;
                let waiting: Vec<(String, String, Vec<u8>, i64, String)> = sqlx::query_as(
                    "SELECT connector_id, metric, source_hash, amount_micros, currency FROM facts \
                     WHERE tenant_id = $1 AND kind = 'money' AND amount_tenant_micros IS NULL",
                )
                .bind(tenant.as_uuid())
                .fetch_all(&mut *tx)
                .await?;
                let mut converted = 0;
                for (connector_id, metric, source, micros, currency) in waiting {
                    let Some(amount) = money.convert(micros, parse_currency(&currency)?) else { continue };
                    sqlx::query(
                        "UPDATE facts SET amount_tenant_micros = $5 \
                         WHERE tenant_id = $1 AND connector_id = $2 AND metric = $3 AND source_hash = $4",
                    )
                    .bind(tenant.as_uuid())
                    .bind(&connector_id)
                    .bind(&metric)
                    .bind(&source)
                    .bind(amount)
                    .execute(&mut *tx)
                    .await?;
                    converted += 1;
                }
                if converted > 0 {
                    tx.rebuild_standings(tenant.as_uuid(), None).await?;
                }
                tx.commit().await?;
                Ok(converted)
            }
        }
    }

    /// How many of the tenant's amounts wait for a rate, by currency.
    pub async fn waiting_for_rate(&self, tenant: TenantId) -> Result<BTreeMap<Currency, u64>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT currency, COUNT(*) FROM facts \
                 WHERE tenant_id = $1 AND kind = 'money' AND amount_tenant_micros IS NULL GROUP BY currency",
            )
            .bind(tenant.as_uuid())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|(currency, n)| Ok((parse_currency(&currency)?, to_u64(n)))).collect()
    }

    /// Totals of one metric per owner over `[from_ms, to_ms)`: counts summed, money summed
    /// in micros of the tenant currency (amounts waiting for a rate left out and counted).
    /// Facts of mapped CRM owners go to their user; the others are listed per CRM owner.
    /// Ordered by owner.
    pub async fn kpi_totals(
        &self,
        tenant: TenantId,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<KpiTotal>, StoreError> {
        // The sum is taken in two parts, millions and the rest, each of which fits a BIGINT
        // far longer than the whole would (SQLite's SUM fails on overflow); the parts are
        // added up in i128. Division and remainder truncate the same way on both backends.
        type TotalRow = (Option<Uuid>, Option<String>, Option<Vec<u8>>, Option<i64>, Option<i64>, i64, i64);
        let rows: Vec<TotalRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT m.user_id, \
                 CASE WHEN m.user_id IS NULL THEN f.connector_id END, \
                 CASE WHEN m.user_id IS NULL THEN f.owner_hash END, \
                 CAST(SUM({FACT_VALUE} / 1000000) AS BIGINT), CAST(SUM({FACT_VALUE} % 1000000) AS BIGINT), \
                 COUNT(*), \
                 SUM(CASE WHEN f.kind = 'money' AND f.amount_tenant_micros IS NULL THEN 1 ELSE 0 END) \
                 FROM facts f \
                 LEFT JOIN owner_mappings m ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id \
                 AND m.owner_hash = f.owner_hash \
                 WHERE f.tenant_id = $1 AND f.metric = $2 AND f.occurred_at >= $3 AND f.occurred_at < $4 \
                 GROUP BY 1, 2, 3"
            ))
            .bind(tenant.as_uuid())
            .bind(metric)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?
        });
        let mut totals = rows
            .into_iter()
            .map(|(user, connector_id, owner, millions, rest, facts, waiting)| {
                let owner = match (user, connector_id, owner) {
                    (Some(user), _, _) => Owner::User(UserId::from_uuid(user)),
                    (None, Some(connector_id), Some(owner)) => {
                        Owner::Unmapped { connector_id, owner: keyed_hash(&owner)? }
                    }
                    _ => return Err(StoreError::Corrupt { what: "kpi owner" }),
                };
                let value = i128::from(millions.unwrap_or(0)) * 1_000_000 + i128::from(rest.unwrap_or(0));
                Ok(KpiTotal { owner, value, facts: to_u64(facts), waiting_rate: to_u64(waiting) })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        totals.sort_by(|a, b| a.owner.cmp(&b.owner));
        Ok(totals)
    }

    /// Every fact of one integration of the tenant, by metric and source hash.
    pub async fn facts(&self, tenant: TenantId, connector_id: &str) -> Result<Vec<StoredFact>, StoreError> {
        type FactRow =
            (String, Vec<u8>, Vec<u8>, i64, String, Option<i64>, Option<i64>, Option<String>, Option<i64>, i64);
        let rows: Vec<FactRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT metric, source_hash, owner_hash, occurred_at, kind, count, amount_micros, currency, \
                 amount_tenant_micros, confirmed_at FROM facts WHERE tenant_id = $1 AND connector_id = $2 \
                 ORDER BY metric, source_hash",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(metric, source, owner, occurred_at, kind, count, amount, currency, amount_tenant, confirmed_at)| {
                let value = match (kind.as_str(), count, amount, currency) {
                    ("count", Some(n), None, None) => Value::Count(n),
                    ("money", None, Some(micros), Some(currency)) => {
                        Value::Money { micros, currency: parse_currency(&currency)? }
                    }
                    _ => return Err(StoreError::Corrupt { what: "fact value" }),
                };
                Ok(StoredFact {
                    connector_id: connector_id.to_owned(),
                    metric,
                    source: keyed_hash(&source)?,
                    owner: keyed_hash(&owner)?,
                    occurred_at_ms: occurred_at,
                    value,
                    amount_tenant_micros: amount_tenant,
                    confirmed_at_ms: confirmed_at,
                })
            })
            .collect()
    }

    /// The CRM owners of one integration of the tenant that have facts but no mapping to a
    /// user, with how many facts wait for each.
    pub async fn unmapped_owners(
        &self,
        tenant: TenantId,
        connector_id: &str,
    ) -> Result<Vec<UnmappedOwner>, StoreError> {
        let rows: Vec<(Vec<u8>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT f.owner_hash, COUNT(*) FROM facts f \
                 LEFT JOIN owner_mappings m ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id \
                 AND m.owner_hash = f.owner_hash \
                 WHERE f.tenant_id = $1 AND f.connector_id = $2 AND m.user_id IS NULL \
                 GROUP BY f.owner_hash ORDER BY f.owner_hash",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|(owner, n)| Ok(UnmappedOwner { owner: keyed_hash(&owner)?, facts: to_u64(n) })).collect()
    }
}

/// Reads the tenant currency and rates inside a transaction.
async fn load_money_context<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: Uuid,
) -> Result<MoneyContext, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    (String,): for<'r> sqlx::FromRow<'r, DB::Row>,
    (String, String): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let currency: Option<(String,)> = sqlx::query_as("SELECT currency FROM tenants WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?;
    let (currency,) = currency.ok_or(StoreError::NotFound { what: "tenant" })?;
    let rates: Vec<(String, String)> = sqlx::query_as("SELECT currency, rate FROM fx_rates WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await?;
    MoneyContext::from_rows(&currency, rates)
}

/// The owner hashes of one integration that are mapped to a user.
async fn load_mapped<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: Uuid,
    connector_id: &str,
) -> Result<HashSet<Vec<u8>>, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Vec<u8>,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT owner_hash FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2")
            .bind(tenant)
            .bind(connector_id)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().map(|(hash,)| hash).collect())
}

/// A stored fact of a snapshot's window as read: source, owner, instant, counted value.
type UnseenRow = (Vec<u8>, Vec<u8>, i64, Option<i64>);

/// A stored fact a snapshot did not see: its key and what it counted for.
struct Unseen {
    source: [u8; 16],
    owner: [u8; 16],
    at: i64,
    value: Option<i64>,
}

/// The integration's stored facts of `metric` in the snapshot's window that the snapshot
/// did not see.
async fn unseen_sources<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: Uuid,
    connector_id: &str,
    snapshot: &Snapshot,
    metric: &str,
    horizon: i64,
) -> Result<Vec<Unseen>, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Vec<u8>, Vec<u8>, i64, Option<i64>): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let stored: Vec<UnseenRow> = sqlx::query_as(&format!(
        "SELECT f.source_hash, f.owner_hash, f.occurred_at, {FACT_VALUE} FROM facts f WHERE f.tenant_id = $1 \
         AND f.connector_id = $2 AND f.metric = $3 AND f.occurred_at >= $4 AND f.occurred_at < $5 \
         AND f.sealed_at IS NULL",
    ))
    .bind(tenant)
    .bind(connector_id)
    .bind(metric)
    // Reconciliation never reaches past the settle horizon (see `super::retention`).
    .bind(snapshot.window.from_ms().max(horizon))
    .bind(snapshot.window.to_ms())
    .fetch_all(&mut **tx)
    .await?;
    let mut unseen = Vec::new();
    for (source, owner, at, value) in stored {
        let source = keyed_hash(&source)?;
        if !snapshot.saw(metric, &source) {
            unseen.push(Unseen { source: source.to_bytes(), owner: keyed_hash(&owner)?.to_bytes(), at, value });
        }
    }
    Ok(unseen)
}

/// Deletes what the snapshots did not see (after the batch); returns how many facts.
async fn resolve_snapshots_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: Uuid,
    connector_id: &str,
    snapshots: &[Snapshot],
    counted: &Counted,
    deltas: &mut Deltas,
    horizon: i64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for snapshot in snapshots {
        for metric in snapshot.window.metrics() {
            let unseen = unseen_sources(tx, tenant, connector_id, snapshot, metric, horizon).await?;
            for u in &unseen {
                deltas.add(counted, metric, u.owner, u.at, u.value, -1);
            }
            let unseen: Vec<[u8; 16]> = unseen.iter().map(|u| u.source).collect();
            for chunk in unseen.chunks(PG_CHUNK) {
                deleted += sqlx::query(
                    "DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2 AND metric = $3 \
                     AND source_hash = ANY($4::bytea[])",
                )
                .bind(tenant)
                .bind(connector_id)
                .bind(metric)
                .bind(chunk)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
        }
    }
    Ok(deleted)
}

/// Deletes what the snapshots did not see (after the batch); returns how many facts.
async fn resolve_snapshots_sqlite(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    tenant: Uuid,
    connector_id: &str,
    snapshots: &[Snapshot],
    counted: &Counted,
    deltas: &mut Deltas,
    horizon: i64,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for snapshot in snapshots {
        for metric in snapshot.window.metrics() {
            for unseen in unseen_sources(tx, tenant, connector_id, snapshot, metric, horizon).await? {
                deltas.add(counted, metric, unseen.owner, unseen.at, unseen.value, -1);
                let source = unseen.source;
                deleted += sqlx::query(
                    "DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2 AND metric = $3 \
                     AND source_hash = $4",
                )
                .bind(tenant)
                .bind(connector_id)
                .bind(metric.as_str())
                .bind(&source[..])
                .execute(&mut **tx)
                .await?
                .rows_affected();
            }
        }
    }
    Ok(deleted)
}

/// Adds the rows written by a commit to its standings deltas (after erased owners were
/// shielded: the owner stored is the one counted).
fn add_new_rows(counted: &Counted, deltas: &mut Deltas, rows: &[Row<'_>]) {
    if counted.is_empty() {
        return;
    }
    for row in rows.iter().filter(|r| counted.counts(r.metric)) {
        deltas.add(counted, row.metric, row.owner, row.occurred_at, row.counted_value(), 1);
    }
}

/// A stored fact as a contest counted it before a commit changes it.
struct OldFact {
    metric: String,
    owner: [u8; 16],
    at: i64,
    value: Option<i64>,
}

/// The stored facts of `keys` of one integration (those that exist), read in one statement.
async fn old_facts_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: Uuid,
    connector: &str,
    keys: &[(&str, [u8; 16])],
) -> Result<Vec<OldFact>, StoreError> {
    let mut out = Vec::new();
    for chunk in keys.chunks(PG_CHUNK) {
        let metrics: Vec<&str> = chunk.iter().map(|(m, _)| *m).collect();
        let sources: Vec<[u8; 16]> = chunk.iter().map(|(_, s)| *s).collect();
        let rows: Vec<(String, Vec<u8>, i64, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT f.metric, f.owner_hash, f.occurred_at, {FACT_VALUE} FROM facts f \
             WHERE f.tenant_id = $1 AND f.connector_id = $2 \
             AND (f.metric, f.source_hash) IN (SELECT * FROM UNNEST($3::text[], $4::bytea[]))"
        ))
        .bind(tenant)
        .bind(connector)
        .bind(&metrics)
        .bind(&sources)
        .fetch_all(&mut **tx)
        .await?;
        for (metric, owner, at, value) in rows {
            out.push(OldFact { metric, owner: keyed_hash(&owner)?.to_bytes(), at, value });
        }
    }
    Ok(out)
}

/// Checks the lease and the integration under lock; returns the stored rejection counts.
fn check_leased(row: Option<(String, bool)>) -> Result<String, StoreError> {
    match row {
        None => Err(StoreError::LeaseLost),
        Some((_, false)) => Err(StoreError::IntegrationDisabled),
        Some((rejected, true)) => Ok(rejected),
    }
}

async fn commit_pg(
    pool: &PgPool,
    lease: &Lease,
    mut batch: Batch<'_>,
    snapshots: &[Snapshot],
    cursor: Option<&str>,
    rejected: &BTreeMap<String, u64>,
) -> Result<CommitCounts, StoreError> {
    let tenant = lease.tenant_id.as_uuid();
    let connector = lease.connector_id.as_str();
    let mut tx = pool.begin().await?;
    // Lock the integration, then the run: commits of a run are serialised, a concurrent
    // disable (which updates the integration row) waits for this commit or makes it fail,
    // and every transaction that takes both locks takes them in this order (see `runs.rs`),
    // so none can deadlock with the scheduler's tick.
    sqlx::query("SELECT 1 FROM integrations WHERE tenant_id = $1 AND connector_id = $2 FOR UPDATE")
        .bind(tenant)
        .bind(connector)
        .execute(&mut *tx)
        .await?;
    let row: Option<(String, bool)> = sqlx::query_as(&format!("{SELECT_LEASED_RUN} FOR UPDATE"))
        .bind(tenant)
        .bind(lease.run_id.as_uuid())
        .bind(&lease.owner)
        .fetch_optional(&mut *tx)
        .await?;
    let stored_rejected = check_leased(row)?;
    let money = load_money_context(&mut tx, tenant).await?;
    let mapped = load_mapped(&mut tx, tenant, connector).await?;
    let now = now_ms();
    // Settled facts are not touched again (see retention.rs).
    let horizon = super::retention::settle_horizon(&mut tx, tenant, connector).await?;
    batch.settle(horizon);
    if !batch.retractions.is_empty() {
        let metrics: Vec<&str> = batch.retractions.iter().map(|(m, _)| *m).collect();
        let sources: Vec<[u8; 16]> = batch.retractions.iter().map(|(_, s)| *s).collect();
        let settled: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT metric, source_hash FROM facts WHERE tenant_id = $1 AND connector_id = $2 \
             AND occurred_at < $3 AND (metric, source_hash) IN (SELECT * FROM UNNEST($4::text[], $5::bytea[]))",
        )
        .bind(tenant)
        .bind(connector)
        .bind(horizon)
        .bind(&metrics)
        .bind(&sources)
        .fetch_all(&mut *tx)
        .await?;
        batch.keep_retractions_of_unsettled(&settled.into_iter().collect());
    }
    // Stored standings (see standings.rs): the old values of the keys a contest counts.
    let counted = tx.counted(tenant).await?;
    let mut deltas = Deltas::default();
    let keys = batch.counted_keys(&counted);
    if !keys.is_empty() {
        for old in old_facts_pg(&mut tx, tenant, connector, &keys).await? {
            deltas.add(&counted, &old.metric, old.owner, old.at, old.value, -1);
        }
    }

    if !batch.retractions.is_empty() {
        let metrics: Vec<&str> = batch.retractions.iter().map(|(m, _)| *m).collect();
        let sources: Vec<[u8; 16]> = batch.retractions.iter().map(|(_, s)| *s).collect();
        batch.counts.deleted = sqlx::query(
            "DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2 \
             AND (metric, source_hash) IN (SELECT * FROM UNNEST($3::text[], $4::bytea[]))",
        )
        .bind(tenant)
        .bind(connector)
        .bind(&metrics)
        .bind(&sources)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }

    let mut rows = batch.rows(&money, &mapped);
    // Erased CRM owners are never stored under their hash again (see erasure.rs).
    let mut owners: Vec<_> = rows.iter_mut().map(|r| (r.metric, r.source, &mut r.owner)).collect();
    super::erasure::shield_erased(&mut tx, tenant, connector, &mut owners).await?;
    if rows.len() < PG_COPY_MIN || !copy_new_facts_pg(&mut tx, tenant, connector, now, &rows).await? {
        upsert_pg(&mut tx, tenant, connector, now, &rows).await?;
    }
    add_new_rows(&counted, &mut deltas, &rows);

    batch.counts.snapshot_deleted =
        resolve_snapshots_pg(&mut tx, tenant, connector, snapshots, &counted, &mut deltas, horizon).await?;
    tx.apply_deltas(tenant, connector, &counted, deltas).await?;
    finish_commit_pg(&mut tx, lease, &batch.counts, cursor, &stored_rejected, rejected).await?;
    tx.commit().await?;
    Ok(batch.counts)
}

/// Upserts `rows` with `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE`, in chunks.
async fn upsert_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: Uuid,
    connector: &str,
    now: i64,
    rows: &[Row<'_>],
) -> Result<(), StoreError> {
    let insert = format!(
        "{INSERT_FACT_COLUMNS} SELECT $1, $2, u.metric, u.source_hash, u.owner_hash, u.occurred_at, u.kind, \
         u.count, u.amount_micros, u.currency, u.amount_tenant_micros, $3 \
         FROM UNNEST($4::text[], $5::bytea[], $6::bytea[], $7::bigint[], $8::text[], $9::bigint[], \
         $10::bigint[], $11::text[], $12::bigint[]) \
         AS u(metric, source_hash, owner_hash, occurred_at, kind, count, amount_micros, currency, \
         amount_tenant_micros) {ON_CONFLICT_REPLACE}"
    );
    for chunk in rows.chunks(PG_CHUNK) {
        let metric: Vec<&str> = chunk.iter().map(|r| r.metric).collect();
        let source: Vec<[u8; 16]> = chunk.iter().map(|r| r.source).collect();
        let owner: Vec<[u8; 16]> = chunk.iter().map(|r| r.owner).collect();
        let occurred_at: Vec<i64> = chunk.iter().map(|r| r.occurred_at).collect();
        let kind: Vec<&str> = chunk.iter().map(|r| r.kind).collect();
        let count: Vec<Option<i64>> = chunk.iter().map(|r| r.count).collect();
        let amount: Vec<Option<i64>> = chunk.iter().map(|r| r.amount).collect();
        let currency: Vec<Option<&str>> = chunk.iter().map(|r| r.currency).collect();
        let amount_tenant: Vec<Option<i64>> = chunk.iter().map(|r| r.amount_tenant).collect();
        sqlx::query(&insert)
            .bind(tenant)
            .bind(connector)
            .bind(now)
            .bind(&metric)
            .bind(&source)
            .bind(&owner)
            .bind(&occurred_at)
            .bind(&kind)
            .bind(&count)
            .bind(&amount)
            .bind(&currency)
            .bind(&amount_tenant)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writes `rows` with one `COPY … FROM STDIN` (text format) if none of their keys is
/// stored; returns false, having written nothing, if one is (the primary key refuses it
/// and the `COPY` is rolled back to a savepoint).
async fn copy_new_facts_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: Uuid,
    connector: &str,
    now: i64,
    rows: &[Row<'_>],
) -> Result<bool, StoreError> {
    let mut prefix = format!("{tenant}\t");
    copy_text(&mut prefix, connector);
    let mut data = Vec::with_capacity(rows.len() * (prefix.len() + 140));
    let mut line = String::with_capacity(256);
    for row in rows {
        line.clear();
        line.push_str(&prefix);
        line.push('\t');
        copy_text(&mut line, row.metric);
        line.push_str("\t\\\\x");
        line.push_str(&hex::encode(row.source));
        line.push_str("\t\\\\x");
        line.push_str(&hex::encode(row.owner));
        let _ = write!(line, "\t{}\t{}\t", row.occurred_at, row.kind);
        copy_opt(&mut line, row.count);
        line.push('\t');
        copy_opt(&mut line, row.amount);
        line.push('\t');
        match row.currency {
            Some(c) => copy_text(&mut line, c),
            None => line.push_str("\\N"),
        }
        line.push('\t');
        copy_opt(&mut line, row.amount_tenant);
        let _ = writeln!(line, "\t{now}");
        data.extend_from_slice(line.as_bytes());
    }
    sqlx::query("SAVEPOINT copy_facts").execute(&mut **tx).await?;
    let mut copy = tx
        .copy_in_raw(
            "COPY facts (tenant_id, connector_id, metric, source_hash, owner_hash, occurred_at, kind, count, \
             amount_micros, currency, amount_tenant_micros, confirmed_at) FROM STDIN",
        )
        .await?;
    let copied = match copy.send(data).await {
        Ok(_) => copy.finish().await,
        Err(e) => {
            // Ends the COPY on the server too, so the connection stays usable.
            let _ = copy.abort("the COPY data could not be sent").await;
            Err(e)
        }
    };
    match copied {
        Ok(written) if written == rows.len() as u64 => {
            sqlx::query("RELEASE SAVEPOINT copy_facts").execute(&mut **tx).await?;
            Ok(true)
        }
        Ok(_) => Err(StoreError::Corrupt { what: "COPY row count" }),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            // A key is stored already: nothing of the COPY stays; the caller upserts.
            sqlx::query("ROLLBACK TO SAVEPOINT copy_facts").execute(&mut **tx).await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// `text` as a field of `COPY`'s text format (backslash, tab and line breaks escaped).
fn copy_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A nullable integer as a field of `COPY`'s text format.
fn copy_opt(out: &mut String, value: Option<i64>) {
    match value {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("\\N"),
    }
}

async fn finish_commit_pg(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    lease: &Lease,
    counts: &CommitCounts,
    cursor: Option<&str>,
    stored_rejected: &str,
    rejected: &BTreeMap<String, u64>,
) -> Result<(), StoreError> {
    if let Some(cursor) = cursor {
        sqlx::query("UPDATE integrations SET cursor = $3 WHERE tenant_id = $1 AND connector_id = $2")
            .bind(lease.tenant_id.as_uuid())
            .bind(&lease.connector_id)
            .bind(cursor)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(UPDATE_RUN_COUNTS)
        .bind(lease.tenant_id.as_uuid())
        .bind(lease.run_id.as_uuid())
        .bind(to_i64(counts.upserts))
        .bind(to_i64(counts.retractions + counts.snapshot_deleted))
        .bind(to_i64(counts.unmapped))
        .bind(to_i64(counts.waiting_rate))
        .bind(merge_rejected(stored_rejected, rejected)?)
        .bind(to_i64(counts.settled))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn commit_sqlite(
    pool: &SqlitePool,
    lease: &Lease,
    mut batch: Batch<'_>,
    snapshots: &[Snapshot],
    cursor: Option<&str>,
    rejected: &BTreeMap<String, u64>,
) -> Result<CommitCounts, StoreError> {
    let tenant = lease.tenant_id.as_uuid();
    let connector = lease.connector_id.as_str();
    // BEGIN IMMEDIATE: this transaction holds SQLite's one write lock from here on.
    let mut tx = pool.begin_write().await?;
    let row: Option<(String, bool)> = sqlx::query_as(SELECT_LEASED_RUN)
        .bind(tenant)
        .bind(lease.run_id.as_uuid())
        .bind(&lease.owner)
        .fetch_optional(&mut *tx)
        .await?;
    let stored_rejected = check_leased(row)?;
    let money = load_money_context(&mut tx, tenant).await?;
    let mapped = load_mapped(&mut tx, tenant, connector).await?;
    let now = now_ms();
    // Settled facts are not touched again (see retention.rs).
    let horizon = super::retention::settle_horizon(&mut tx, tenant, connector).await?;
    batch.settle(horizon);
    let mut settled = HashSet::new();
    for (metric, source) in &batch.retractions {
        let old: Option<i64> = sqlx::query_scalar(
            "SELECT occurred_at FROM facts WHERE tenant_id = $1 AND connector_id = $2 AND metric = $3 \
             AND source_hash = $4",
        )
        .bind(tenant)
        .bind(connector)
        .bind(*metric)
        .bind(&source[..])
        .fetch_optional(&mut *tx)
        .await?;
        if old.is_some_and(|at| at < horizon) {
            settled.insert(((*metric).to_owned(), source.to_vec()));
        }
    }
    batch.keep_retractions_of_unsettled(&settled);
    // Stored standings (see standings.rs): the old values of the keys a contest counts.
    let counted = tx.counted(tenant).await?;
    let mut deltas = Deltas::default();
    for (metric, source) in batch.counted_keys(&counted) {
        let old: Option<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT f.owner_hash, f.occurred_at, {FACT_VALUE} FROM facts f WHERE f.tenant_id = $1 \
             AND f.connector_id = $2 AND f.metric = $3 AND f.source_hash = $4"
        ))
        .bind(tenant)
        .bind(connector)
        .bind(metric)
        .bind(&source[..])
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((owner, at, value)) = old {
            deltas.add(&counted, metric, keyed_hash(&owner)?.to_bytes(), at, value, -1);
        }
    }

    let tenant_bytes = tenant.as_bytes().to_vec();
    for (metric, source) in &batch.retractions {
        batch.counts.deleted += sqlx::query(
            "DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2 AND metric = $3 AND source_hash = $4",
        )
        .bind(&tenant_bytes)
        .bind(connector)
        .bind(*metric)
        .bind(&source[..])
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }

    let mut rows = batch.rows(&money, &mapped);
    // Erased CRM owners are never stored under their hash again (see erasure.rs).
    let mut owners: Vec<_> = rows.iter_mut().map(|r| (r.metric, r.source, &mut r.owner)).collect();
    super::erasure::shield_erased(&mut tx, tenant, connector, &mut owners).await?;
    let insert = format!(
        "{INSERT_FACT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) {ON_CONFLICT_REPLACE}"
    );
    for row in &rows {
        sqlx::query(&insert)
            .bind(&tenant_bytes)
            .bind(connector)
            .bind(row.metric)
            .bind(&row.source[..])
            .bind(&row.owner[..])
            .bind(row.occurred_at)
            .bind(row.kind)
            .bind(row.count)
            .bind(row.amount)
            .bind(row.currency)
            .bind(row.amount_tenant)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    add_new_rows(&counted, &mut deltas, &rows);
    batch.counts.snapshot_deleted =
        resolve_snapshots_sqlite(&mut tx, tenant, connector, snapshots, &counted, &mut deltas, horizon).await?;
    tx.apply_deltas(tenant, connector, &counted, deltas).await?;

    if let Some(cursor) = cursor {
        sqlx::query("UPDATE integrations SET cursor = $3 WHERE tenant_id = $1 AND connector_id = $2")
            .bind(tenant)
            .bind(connector)
            .bind(cursor)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(UPDATE_RUN_COUNTS)
        .bind(tenant)
        .bind(lease.run_id.as_uuid())
        .bind(to_i64(batch.counts.upserts))
        .bind(to_i64(batch.counts.retractions + batch.counts.snapshot_deleted))
        .bind(to_i64(batch.counts.unmapped))
        .bind(to_i64(batch.counts.waiting_rate))
        .bind(merge_rejected(&stored_rejected, rejected)?)
        .bind(to_i64(batch.counts.settled))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(batch.counts)
}
