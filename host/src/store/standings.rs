//! Stored contest standings: per contest and CRM owner, the running total of the facts that
//! count for the contest and the instant it last changed (`contest_totals`, migration 0007).
//!
//! # Why stored
//! A leaderboard of 10 000 participants over 10 million facts cannot be summed from the facts
//! at every read. The totals are kept by the writes that change facts, in their own
//! transactions, so a reader sees the totals of exactly the facts committed:
//!
//! * the ingestion commit ([`super::facts`]) applies deltas: for every fact it writes,
//!   replaces or deletes (retractions and snapshot retractions included), the new value
//!   minus the old one of the same key, per contest whose metric and window the fact is in
//!   (a composite metric's term contributes `weight × value`; an amount waiting for an
//!   exchange rate counts 0). The old rows of the batch's keys are read only when the tenant
//!   has a contest counting one of the batch's metrics, so a tenant without contests pays
//!   one indexed read of its (empty) contest list per commit;
//! * writes that change what a contest counts rebuild its totals from the facts
//!   ([`StandingsTx::rebuild_standings`]): contest creation, a moved window, the conversion
//!   of amounts that waited for a rate, a person's erasure. On Postgres one pass per term
//!   hashing by owner (no grouping by instant: an owner whose contributions all have one
//!   sign reached their value at their latest non-zero fact), then sums per instant only
//!   for the owners with contributions of both signs; on SQLite one aggregate query.
//!   Purging an integration's facts drops that integration's rows (the totals are keyed by
//!   integration).
//!
//! Totals are keyed by CRM owner, not by user, so mapping an owner to a user, or changing a
//! team's members, rewrites nothing: the reader joins `owner_mappings` (and the teams) and
//! sums. Every change of a contest's totals bumps `contests.standing_version`, which
//! readers use to cache what they derive from them; with the versions of the other inputs
//! kept by triggers (migration 0009, [`LeaderboardVersions`]) it keys each node's cache of
//! rendered leaderboards.
//!
//! # The reaching instant
//! [`crate::engine::ranking`] breaks ties by when a participant reached their value: the
//! last instant at which their running total changed, i.e. the latest instant `t` whose
//! facts sum to a non-zero `S(t)`. Per owner this is kept exactly, incrementally: let `r` be
//! the stored instant and `t*` the latest instant a commit changes by a non-zero net delta.
//! If `t* > r` (or nothing was reached), `S(t*)` was 0 and is now the delta: the new instant
//! is `t*`. If `t* < r`, `S(r)` is untouched: it stays `r`. Only when `t* = r` may `S(r)`
//! have become 0; then that one owner's latest non-zero instant at or before `r` is looked
//! up in the facts ([`last_change`], newest first, by the `facts_by_owner` index of migration
//! 0010). A user's (or team's) instant is the
//! latest of their owners' — exact unless facts of two of their owners cancel out at the
//! very same millisecond, where the sum of several owners' histories would see no change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::Store;
use super::error::StoreError;
use super::facts::FACT_VALUE;
use super::types::{ContestId, TeamId, TenantId, UserId, to_i64};

/// One term a contest counts: facts of `metric` in `[start, end)`, times `weight`.
#[derive(Debug, Clone)]
struct Term {
    contest: Uuid,
    metric: String,
    weight: i128,
    start: i64,
    end: i64,
}

/// The tenant's contests as the commit maintains them (every contest, final ones included:
/// their totals feed the flags of changes after the freeze). Empty for a tenant without
/// contests.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    terms: Vec<Term>,
}

impl Counted {
    /// No contest: nothing to maintain.
    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether some contest counts facts of `metric` (in some window).
    pub(crate) fn counts(&self, metric: &str) -> bool {
        self.terms.iter().any(|t| t.metric == metric)
    }

    fn of_contest(&self, contest: Uuid) -> Vec<&Term> {
        self.terms.iter().filter(|t| t.contest == contest).collect()
    }
}

/// Net changes of one commit, per (contest, owner) and instant, weighted.
#[derive(Debug, Default)]
pub(crate) struct Deltas {
    by_owner: BTreeMap<(Uuid, [u8; 16]), BTreeMap<i64, i128>>,
}

impl Deltas {
    /// Adds `sign × value` of a fact of `metric` by `owner` at `at` to every contest that
    /// counts it. `value` is `None` for an amount waiting for a rate (it counts 0).
    pub(crate) fn add(
        &mut self,
        counted: &Counted,
        metric: &str,
        owner: [u8; 16],
        at: i64,
        value: Option<i64>,
        sign: i128,
    ) {
        let Some(value) = value.filter(|v| *v != 0) else { return };
        for term in counted.terms.iter().filter(|t| t.metric == metric && at >= t.start && at < t.end) {
            *self.by_owner.entry((term.contest, owner)).or_default().entry(at).or_default() +=
                sign * term.weight * i128::from(value);
        }
    }
}

/// A stored value as its two BIGINT parts.
fn split(value: i128) -> Result<(i64, i64), StoreError> {
    let millions = i64::try_from(value / 1_000_000).map_err(|_| StoreError::Corrupt { what: "contest total range" })?;
    Ok((millions, to_i64_rest(value % 1_000_000)))
}

fn to_i64_rest(rest: i128) -> i64 {
    // |rest| < 1 000 000 always fits.
    i64::try_from(rest).unwrap_or(0)
}

fn join(millions: i64, rest: i64) -> i128 {
    i128::from(millions) * 1_000_000 + i128::from(rest)
}

/// One owner's total as a Postgres rebuild accumulates it over the contest's terms.
#[derive(Debug, Default)]
struct Rebuilt {
    value: i128,
    reached: Option<i64>,
    /// Some weighted contribution is positive / negative.
    positive: bool,
    negative: bool,
}

/// A stored row: contest, owner hash, value parts, reaching instant.
type StoredRow = (Uuid, Vec<u8>, i64, i64, Option<i64>);

/// Stored (value, reaching instant) per (contest, owner).
type StoredMap = HashMap<(Uuid, [u8; 16]), (i128, Option<i64>)>;

/// What a commit writes for one (contest, owner).
struct Planned {
    contest: Uuid,
    owner: [u8; 16],
    value: i128,
    reached: Option<i64>,
    /// `t* = r`: the reaching instant must be looked up at or before this instant.
    recompute_up_to: Option<i64>,
}

/// The new rows from the stored ones and the deltas (see the module docs).
fn plan(deltas: Deltas, stored: &StoredMap) -> Vec<Planned> {
    let mut out = Vec::new();
    for ((contest, owner), instants) in deltas.by_owner {
        let changed: Vec<(i64, i128)> = instants.into_iter().filter(|(_, d)| *d != 0).collect();
        let Some(&(latest, _)) = changed.last() else { continue };
        let sum: i128 = changed.iter().map(|(_, d)| d).sum();
        let (value, reached) = stored.get(&(contest, owner)).copied().unwrap_or((0, None));
        let (reached, recompute_up_to) = match reached {
            Some(r) if latest < r => (Some(r), None),
            Some(r) if latest == r => (Some(r), Some(r)),
            _ => (Some(latest), None),
        };
        out.push(Planned { contest, owner, value: value + sum, reached, recompute_up_to });
    }
    out
}

const SELECT_COUNTED: &str = "SELECT c.id, COALESCE(t.metric, c.metric), COALESCE(t.weight_micros, 1), c.starts_at, \
     c.ends_at FROM contests c LEFT JOIN composite_metric_terms t ON t.tenant_id = c.tenant_id AND t.slug = c.metric \
     WHERE c.tenant_id = $1";

/// The fast path of a Postgres rebuild, once per term of the contest: per CRM owner, the
/// sum of the term's facts in the window (binds: tenant, metric, start, end), the latest
/// instant with a non-zero value, and whether some values are positive, some negative. One
/// pass of hashing by owner, no grouping by instant: when an owner's weighted
/// contributions all have one sign (counts, money without refunds), the sum at an instant is
/// non-zero exactly when one of its facts is, so that latest instant is the reaching
/// instant. The other owners' are taken by [`REBUILD_PG_EXACT`]. Filtering on the columns
/// of `facts_by_metric_time`, so the planner estimates it well (a join with the contest's
/// terms made it sort 10 million rows).
fn term_totals_pg() -> String {
    format!(
        "SELECT f.connector_id, f.owner_hash, div(SUM({FACT_VALUE}), 1000000)::bigint, \
         mod(SUM({FACT_VALUE}), 1000000)::bigint, MAX(f.occurred_at) FILTER (WHERE {FACT_VALUE} <> 0), \
         COALESCE(bool_or({FACT_VALUE} > 0), false), COALESCE(bool_or({FACT_VALUE} < 0), false) FROM facts f \
         WHERE f.tenant_id = $1 AND f.metric = $2 AND f.occurred_at >= $3 AND f.occurred_at < $4 \
         AND {FACT_VALUE} IS NOT NULL GROUP BY f.connector_id, f.owner_hash"
    )
}

/// The reaching instants of the owners [`term_totals_pg`] could not settle (contributions
/// of both signs), by sums per instant: binds tenant, then the owners as arrays of contest,
/// connector and owner hash.
const REBUILD_PG_EXACT: &str = "SELECT g.contest_id, g.connector_id, g.owner_hash, \
     MAX(g.occurred_at) FILTER (WHERE g.s <> 0) FROM ( \
     SELECT c.id AS contest_id, f.connector_id, f.owner_hash, f.occurred_at, \
     SUM(COALESCE(t.weight_micros, 1)::numeric * (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END)) AS s \
     FROM UNNEST($2::uuid[], $3::text[], $4::bytea[]) AS o(contest_id, connector_id, owner_hash) \
     JOIN contests c ON c.tenant_id = $1 AND c.id = o.contest_id \
     LEFT JOIN composite_metric_terms t ON t.tenant_id = c.tenant_id AND t.slug = c.metric \
     JOIN facts f ON f.tenant_id = c.tenant_id AND f.metric = COALESCE(t.metric, c.metric) \
     AND f.connector_id = o.connector_id AND f.owner_hash = o.owner_hash \
     AND f.occurred_at >= c.starts_at AND f.occurred_at < c.ends_at \
     WHERE (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END) IS NOT NULL \
     GROUP BY 1, 2, 3, 4) g GROUP BY 1, 2, 3";

/// Rebuilds the totals of one contest (`$2`) or of every contest of the tenant (`$2` NULL)
/// from the facts in one aggregate statement, on SQLite (integer sums: one owner's facts at
/// one instant never reach 2^63 micros). Postgres takes [`term_totals_pg`] (one pass per term, no
/// grouping by instant) and [`REBUILD_PG_EXACT`] for the few owners it cannot settle.
const REBUILD_SQLITE: &str = "INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, \
     value_millions, value_rest, reached_at) \
     SELECT g.tenant_id, g.contest_id, g.connector_id, g.owner_hash, SUM(g.s) / 1000000, SUM(g.s) % 1000000, \
     MAX(CASE WHEN g.s <> 0 THEN g.occurred_at END) FROM ( \
     SELECT c.tenant_id, c.id AS contest_id, f.connector_id, f.owner_hash, f.occurred_at, \
     SUM(COALESCE(t.weight_micros, 1) * (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END)) AS s \
     FROM contests c LEFT JOIN composite_metric_terms t ON t.tenant_id = c.tenant_id AND t.slug = c.metric \
     JOIN facts f ON f.tenant_id = c.tenant_id AND f.metric = COALESCE(t.metric, c.metric) \
     AND f.occurred_at >= c.starts_at AND f.occurred_at < c.ends_at \
     WHERE c.tenant_id = $1 AND ($2 IS NULL OR c.id = $2) \
     AND (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END) IS NOT NULL \
     GROUP BY 1, 2, 3, 4, 5) g GROUP BY g.tenant_id, g.contest_id, g.connector_id, g.owner_hash";

/// The writes of stored standings inside a transaction of either backend.
pub(crate) trait StandingsTx {
    /// The tenant's contests and the metrics they count.
    async fn counted(&mut self, tenant: Uuid) -> Result<Counted, StoreError>;

    /// Replaces the totals of `contest` (every contest of the tenant when `None`) by ones
    /// summed from the facts, and bumps their standing versions.
    async fn rebuild_standings(&mut self, tenant: Uuid, contest: Option<Uuid>) -> Result<(), StoreError>;

    /// Applies one commit's deltas of the integration `connector` (after its facts are
    /// written) and bumps the standing version of every contest they change.
    async fn apply_deltas(
        &mut self,
        tenant: Uuid,
        connector: &str,
        counted: &Counted,
        deltas: Deltas,
    ) -> Result<(), StoreError>;

    /// Drops the totals of one integration (its facts were purged), bumping the versions.
    async fn drop_standings_of(&mut self, tenant: Uuid, connector: &str) -> Result<(), StoreError>;
}

/// The latest instant in `[start, up_to]` at which the owner's weighted facts of the
/// contest's `terms` sum to non-zero, or `None`. Read newest first by pages, so an owner
/// whose previous change is recent costs a short backward walk.
macro_rules! last_change {
    ($tx:expr, $tenant:expr, $connector:expr, $owner:expr, $terms:expr, $up_to:expr) => {{
        let tenant: Uuid = $tenant;
        let connector: &str = $connector;
        let owner: [u8; 16] = $owner;
        let terms: &[&Term] = $terms;
        let mut up_to: i64 = $up_to;
        let start = terms.iter().map(|t| t.start).min().unwrap_or(i64::MIN);
        const PAGE: i64 = 256;
        let mut found: Option<i64> = None;
        'pages: loop {
            // Per term, the newest PAGE instants at or before `up_to`; an instant is complete
            // only at or after the oldest instant every full page reached.
            let mut sums: BTreeMap<i64, i128> = BTreeMap::new();
            let mut floor = start;
            for term in terms {
                let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
                    "SELECT f.occurred_at, CAST(SUM({FACT_VALUE} / 1000000) AS BIGINT), \
                     CAST(SUM({FACT_VALUE} % 1000000) AS BIGINT) FROM facts f \
                     WHERE f.tenant_id = $1 AND f.metric = $2 AND f.connector_id = $3 AND f.owner_hash = $4 \
                     AND f.occurred_at >= $5 AND f.occurred_at <= $6 AND {FACT_VALUE} IS NOT NULL \
                     GROUP BY f.occurred_at ORDER BY f.occurred_at DESC LIMIT {PAGE}"
                ))
                .bind(tenant)
                .bind(term.metric.as_str())
                .bind(connector)
                .bind(&owner[..])
                .bind(term.start)
                .bind(up_to.min(term.end - 1))
                .fetch_all(&mut **$tx)
                .await?;
                if rows.len() as i64 == PAGE {
                    floor = floor.max(rows.last().map_or(start, |r| r.0));
                }
                for (at, millions, rest) in rows {
                    *sums.entry(at).or_default() += term.weight * join(millions, rest);
                }
            }
            for (&at, &sum) in sums.iter().rev() {
                if at < floor {
                    break;
                }
                if sum != 0 {
                    found = Some(at);
                    break 'pages;
                }
            }
            if floor <= start {
                break;
            }
            up_to = floor - 1;
        }
        found
    }};
}

/// Bumps one contest's standing version.
macro_rules! bump_body {
    ($tx:expr, $tenant:expr, $contest:expr) => {
        sqlx::query("UPDATE contests SET standing_version = standing_version + 1 WHERE tenant_id = $1 AND id = $2")
            .bind($tenant)
            .bind($contest)
            .execute(&mut **$tx)
            .await
            .map(drop)
    };
}

macro_rules! common_standings {
    () => {
        async fn counted(&mut self, tenant: Uuid) -> Result<Counted, StoreError> {
            let rows: Vec<(Uuid, String, i64, i64, i64)> =
                sqlx::query_as(SELECT_COUNTED).bind(tenant).fetch_all(&mut **self).await?;
            Ok(Counted {
                terms: rows
                    .into_iter()
                    .map(|(contest, metric, weight, start, end)| Term {
                        contest,
                        metric,
                        weight: i128::from(weight),
                        start,
                        end,
                    })
                    .collect(),
            })
        }

        async fn drop_standings_of(&mut self, tenant: Uuid, connector: &str) -> Result<(), StoreError> {
            let contests: Vec<(Uuid,)> = sqlx::query_as(
                "SELECT DISTINCT contest_id FROM contest_totals WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant)
            .bind(connector)
            .fetch_all(&mut **self)
            .await?;
            sqlx::query("DELETE FROM contest_totals WHERE tenant_id = $1 AND connector_id = $2")
                .bind(tenant)
                .bind(connector)
                .execute(&mut **self)
                .await?;
            for (contest,) in contests {
                bump_body!(self, tenant, contest)?;
            }
            Ok(())
        }
    };
}

impl StandingsTx for sqlx::Transaction<'static, sqlx::Postgres> {
    common_standings!();

    async fn rebuild_standings(&mut self, tenant: Uuid, contest: Option<Uuid>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM contest_totals WHERE tenant_id = $1 AND ($2::uuid IS NULL OR contest_id = $2)")
            .bind(tenant)
            .bind(contest)
            .execute(&mut **self)
            .await?;
        let counted = self.counted(tenant).await?;
        let mut owners: HashMap<(Uuid, String, Vec<u8>), Rebuilt> = HashMap::new();
        for term in counted.terms.iter().filter(|t| contest.is_none_or(|c| c == t.contest)) {
            type TermRow = (String, Vec<u8>, i64, i64, Option<i64>, bool, bool);
            let rows: Vec<TermRow> = sqlx::query_as(&term_totals_pg())
                .bind(tenant)
                .bind(term.metric.as_str())
                .bind(term.start)
                .bind(term.end)
                .fetch_all(&mut **self)
                .await?;
            for (connector, owner, millions, rest, at, positive, negative) in rows {
                let o = owners.entry((term.contest, connector, owner)).or_default();
                o.value += term.weight * join(millions, rest);
                o.reached = o.reached.max(at);
                let (positive, negative) = if term.weight > 0 { (positive, negative) } else { (negative, positive) };
                o.positive |= positive;
                o.negative |= negative;
            }
        }
        let unsettled: Vec<(Uuid, String, Vec<u8>)> =
            owners.iter().filter(|(_, o)| o.positive && o.negative).map(|(k, _)| k.clone()).collect();
        if !unsettled.is_empty() {
            let contests: Vec<Uuid> = unsettled.iter().map(|k| k.0).collect();
            let connectors: Vec<String> = unsettled.iter().map(|k| k.1.clone()).collect();
            let hashes: Vec<Vec<u8>> = unsettled.iter().map(|k| k.2.clone()).collect();
            let exact: Vec<(Uuid, String, Vec<u8>, Option<i64>)> = sqlx::query_as(REBUILD_PG_EXACT)
                .bind(tenant)
                .bind(&contests)
                .bind(&connectors)
                .bind(&hashes)
                .fetch_all(&mut **self)
                .await?;
            for key in &unsettled {
                if let Some(entry) = owners.get_mut(key) {
                    entry.reached = None;
                }
            }
            for (c, k, o, at) in exact {
                if let Some(entry) = owners.get_mut(&(c, k, o)) {
                    entry.reached = at;
                }
            }
        }
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((c, k, o), rebuilt) in owners {
            let (millions, rest) = split(rebuilt.value)?;
            columns.0.push(c);
            columns.1.push(k);
            columns.2.push(o);
            columns.3.push(millions);
            columns.4.push(rest);
            columns.5.push(rebuilt.reached);
        }
        sqlx::query(
            "INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, value_millions, \
             value_rest, reached_at) SELECT $1, u.c, u.k, u.o, u.m, u.r, u.a \
             FROM UNNEST($2::uuid[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[]) \
             AS u(c, k, o, m, r, a)",
        )
        .bind(tenant)
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .bind(&columns.5)
        .execute(&mut **self)
        .await?;
        sqlx::query(
            "UPDATE contests SET standing_version = standing_version + 1 \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id = $2)",
        )
        .bind(tenant)
        .bind(contest)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn apply_deltas(
        &mut self,
        tenant: Uuid,
        connector: &str,
        counted: &Counted,
        deltas: Deltas,
    ) -> Result<(), StoreError> {
        if deltas.by_owner.is_empty() {
            return Ok(());
        }
        let (contests, owners): (Vec<Uuid>, Vec<[u8; 16]>) = deltas.by_owner.keys().copied().unzip();
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT t.contest_id, t.owner_hash, t.value_millions, t.value_rest, t.reached_at FROM contest_totals t \
             WHERE t.tenant_id = $1 AND t.connector_id = $2 \
             AND (t.contest_id, t.owner_hash) IN (SELECT * FROM UNNEST($3::uuid[], $4::bytea[]))",
        )
        .bind(tenant)
        .bind(connector)
        .bind(&contests)
        .bind(&owners)
        .fetch_all(&mut **self)
        .await?;
        let stored = stored_map(rows)?;
        let mut planned = plan(deltas, &stored);
        for p in planned.iter_mut() {
            if let Some(up_to) = p.recompute_up_to {
                let terms = counted.of_contest(p.contest);
                p.reached = last_change!(self, tenant, connector, p.owner, &terms, up_to);
            }
        }
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in &planned {
            let (millions, rest) = split(p.value)?;
            columns.0.push(p.contest);
            columns.1.push(p.owner);
            columns.2.push(millions);
            columns.3.push(rest);
            columns.4.push(p.reached);
        }
        sqlx::query(
            "INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, value_millions, \
             value_rest, reached_at) SELECT $1, u.c, $2, u.o, u.m, u.r, u.a \
             FROM UNNEST($3::uuid[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[]) AS u(c, o, m, r, a) \
             ON CONFLICT (tenant_id, contest_id, connector_id, owner_hash) DO UPDATE SET \
             value_millions = excluded.value_millions, value_rest = excluded.value_rest, \
             reached_at = excluded.reached_at",
        )
        .bind(tenant)
        .bind(connector)
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .bind(&columns.4)
        .execute(&mut **self)
        .await?;
        let changed: Vec<Uuid> = planned.iter().map(|p| p.contest).collect::<BTreeSet<_>>().into_iter().collect();
        sqlx::query(
            "UPDATE contests SET standing_version = standing_version + 1 WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
        )
        .bind(tenant)
        .bind(&changed)
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}

impl StandingsTx for sqlx::Transaction<'static, sqlx::Sqlite> {
    common_standings!();

    async fn rebuild_standings(&mut self, tenant: Uuid, contest: Option<Uuid>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM contest_totals WHERE tenant_id = $1 AND ($2 IS NULL OR contest_id = $2)")
            .bind(tenant)
            .bind(contest)
            .execute(&mut **self)
            .await?;
        sqlx::query(REBUILD_SQLITE).bind(tenant).bind(contest).execute(&mut **self).await?;
        sqlx::query(
            "UPDATE contests SET standing_version = standing_version + 1 WHERE tenant_id = $1 AND ($2 IS NULL OR id = $2)",
        )
        .bind(tenant)
        .bind(contest)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn apply_deltas(
        &mut self,
        tenant: Uuid,
        connector: &str,
        counted: &Counted,
        deltas: Deltas,
    ) -> Result<(), StoreError> {
        if deltas.by_owner.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::new();
        for (contest, owner) in deltas.by_owner.keys() {
            let row: Option<StoredRow> = sqlx::query_as(
                "SELECT contest_id, owner_hash, value_millions, value_rest, reached_at FROM contest_totals \
                 WHERE tenant_id = $1 AND contest_id = $2 AND connector_id = $3 AND owner_hash = $4",
            )
            .bind(tenant)
            .bind(*contest)
            .bind(connector)
            .bind(&owner[..])
            .fetch_optional(&mut **self)
            .await?;
            rows.extend(row);
        }
        let stored = stored_map(rows)?;
        let mut planned = plan(deltas, &stored);
        for p in planned.iter_mut() {
            if let Some(up_to) = p.recompute_up_to {
                let terms = counted.of_contest(p.contest);
                p.reached = last_change!(self, tenant, connector, p.owner, &terms, up_to);
            }
        }
        for p in &planned {
            let (millions, rest) = split(p.value)?;
            sqlx::query(
                "INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, value_millions, \
                 value_rest, reached_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id, contest_id, connector_id, owner_hash) DO UPDATE SET \
                 value_millions = excluded.value_millions, value_rest = excluded.value_rest, \
                 reached_at = excluded.reached_at",
            )
            .bind(tenant)
            .bind(p.contest)
            .bind(connector)
            .bind(&p.owner[..])
            .bind(millions)
            .bind(rest)
            .bind(p.reached)
            .execute(&mut **self)
            .await?;
        }
        for contest in planned.iter().map(|p| p.contest).collect::<BTreeSet<_>>() {
            bump_body!(self, tenant, contest)?;
        }
        Ok(())
    }
}

fn stored_map(rows: Vec<StoredRow>) -> Result<StoredMap, StoreError> {
    rows.into_iter()
        .map(|(contest, owner, millions, rest, reached)| {
            let owner: [u8; 16] = owner.try_into().map_err(|_| StoreError::Corrupt { what: "keyed hash" })?;
            Ok(((contest, owner), (join(millions, rest), reached)))
        })
        .collect()
}

/// One owner's stored total in a contest, with the user it is mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTotal {
    /// The user the CRM owner is mapped to.
    pub user_id: UserId,
    /// The integration.
    pub connector_id: String,
    /// The keyed hash of the CRM owner.
    pub owner: [u8; 16],
    /// The weighted sum of its facts in the window.
    pub value: i128,
    /// The last instant its running total changed.
    pub reached_at_ms: Option<i64>,
}

/// A contest's stored totals, as of one standing version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStanding {
    /// The contest's standing version when read (same transaction as the rows).
    pub version: i64,
    /// The totals of mapped owners (owners mapped to no user count for nobody).
    pub owners: Vec<OwnerTotal>,
    /// For a teams contest: every (team, member) of its teams.
    pub members: Vec<(TeamId, UserId)>,
}

/// Everything a contest's leaderboard answer depends on, as versions read in one statement
/// (migration 0009): a node caches the rendered answer by them
/// (`api::leaderboard_cache`), so a read between two changes costs this one indexed row.
///
/// * `standing`: the contest's totals (bumped by every commit or rebuild that changes them);
/// * `definition`: the contest row itself (name, window, goal, frozen result), bumped by a
///   trigger on every update that leaves `standing_version` alone;
/// * `inputs`: the tenant's other leaderboard inputs, bumped (at most once per transaction)
///   by triggers on `tenants` (zone, currency), `owner_mappings` (roster mapping, erasure),
///   `team_members`, `contest_participants`, `composite_metrics`, `composite_metric_terms`
///   and `incentives`.
///
/// With the window and the frozen state, from which the reader derives the time-based
/// status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderboardVersions {
    /// `contests.standing_version`.
    pub standing: i64,
    /// `contests.definition_version`.
    pub definition: i64,
    /// `leaderboard_inputs.version` of the tenant (`None` without its row: nothing to cache by).
    pub inputs: Option<i64>,
    /// The contest's first instant counted.
    pub starts_at_ms: i64,
    /// The contest's end (exclusive).
    pub ends_at_ms: i64,
    /// Whether its result is frozen.
    pub frozen: bool,
    /// Its format.
    pub format: String,
}

impl Store {
    /// A contest's stored totals per mapped CRM owner, with its teams' members and its
    /// standing version, read in one transaction (see the module docs). No fact is read.
    pub async fn stored_standing(&self, tenant: TenantId, contest: ContestId) -> Result<StoredStanding, StoreError> {
        type Row = (Uuid, String, Vec<u8>, i64, i64, Option<i64>);
        let (version, rows, members): (Option<i64>, Vec<Row>, Vec<(Uuid, Uuid)>) = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let version = sqlx::query_scalar("SELECT standing_version FROM contests WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(contest.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            let rows = sqlx::query_as(
                "SELECT m.user_id, t.connector_id, t.owner_hash, t.value_millions, t.value_rest, t.reached_at \
                 FROM contest_totals t JOIN owner_mappings m ON m.tenant_id = t.tenant_id \
                 AND m.connector_id = t.connector_id AND m.owner_hash = t.owner_hash \
                 WHERE t.tenant_id = $1 AND t.contest_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            let members = sqlx::query_as(
                "SELECT m.team_id, m.user_id FROM contest_participants p JOIN team_members m \
                 ON m.tenant_id = p.tenant_id AND m.team_id = p.team_id \
                 WHERE p.tenant_id = $1 AND p.contest_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (version, rows, members)
        });
        let version = version.ok_or(StoreError::NotFound { what: "contest" })?;
        let owners = rows
            .into_iter()
            .map(|(user, connector_id, owner, millions, rest, reached)| {
                Ok(OwnerTotal {
                    user_id: UserId::from_uuid(user),
                    connector_id,
                    owner: owner.try_into().map_err(|_| StoreError::Corrupt { what: "keyed hash" })?,
                    value: join(millions, rest),
                    reached_at_ms: reached,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let members = members.into_iter().map(|(t, u)| (TeamId::from_uuid(t), UserId::from_uuid(u))).collect();
        Ok(StoredStanding { version, owners, members })
    }

    /// The versions of what a contest's leaderboard depends on ([`LeaderboardVersions`]), in
    /// one statement by primary keys. [`StoreError::NotFound`] if there is no such contest.
    pub async fn leaderboard_versions(
        &self,
        tenant: TenantId,
        contest: ContestId,
    ) -> Result<LeaderboardVersions, StoreError> {
        type Row = (i64, i64, Option<i64>, i64, i64, Option<i64>, String);
        let row: Option<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT c.standing_version, c.definition_version, v.version, c.starts_at, c.ends_at, c.frozen_at, \
                 c.format \
                 FROM contests c LEFT JOIN leaderboard_inputs v ON v.tenant_id = c.tenant_id \
                 WHERE c.tenant_id = $1 AND c.id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        let (standing, definition, inputs, starts_at_ms, ends_at_ms, frozen_at, format) =
            row.ok_or(StoreError::NotFound { what: "contest" })?;
        Ok(LeaderboardVersions {
            standing,
            definition,
            inputs,
            starts_at_ms,
            ends_at_ms,
            frozen: frozen_at.is_some(),
            format,
        })
    }

    /// Contests of any tenant whose end has passed (`ends_at <= now_ms`) and whose result
    /// is not frozen yet, at most `limit`: the freezing tick's work. One of the documented
    /// cross-tenant reads (like the scheduler's queue), by the `contests_to_freeze` index.
    pub async fn contests_to_freeze(&self, now_ms: i64, limit: u32) -> Result<Vec<(TenantId, ContestId)>, StoreError> {
        let rows: Vec<(Uuid, Uuid)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant_id, id FROM contests WHERE frozen_at IS NULL AND ends_at <= $1 ORDER BY ends_at LIMIT $2",
            )
            .bind(now_ms)
            .bind(to_i64(u64::from(limit)))
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(t, c)| (TenantId::from_uuid(t), ContestId::from_uuid(c))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deltas(entries: &[(i64, i128)]) -> Deltas {
        let mut d = Deltas::default();
        for &(at, v) in entries {
            *d.by_owner.entry((Uuid::nil(), [0; 16])).or_default().entry(at).or_default() += v;
        }
        d
    }

    fn one(stored: Option<(i128, Option<i64>)>, entries: &[(i64, i128)]) -> Option<(i128, Option<i64>, Option<i64>)> {
        let map: HashMap<_, _> = stored.into_iter().map(|s| ((Uuid::nil(), [0; 16]), s)).collect();
        plan(deltas(entries), &map).into_iter().next().map(|p| (p.value, p.reached, p.recompute_up_to))
    }

    #[test]
    fn the_reaching_instant_moves_only_when_it_must() {
        // A first fact: reached at its instant.
        assert_eq!(one(None, &[(10, 5)]), Some((5, Some(10), None)));
        // Later than the stored instant: that one.
        assert_eq!(one(Some((5, Some(10))), &[(20, -5)]), Some((0, Some(20), None)));
        // Earlier: unchanged.
        assert_eq!(one(Some((5, Some(10))), &[(5, 3)]), Some((8, Some(10), None)));
        // At the stored instant: looked up again.
        assert_eq!(one(Some((5, Some(10))), &[(10, -5), (3, 1)]), Some((1, Some(10), Some(10))));
        // Changes that cancel out within the commit change nothing.
        assert_eq!(one(Some((5, Some(10))), &[(30, 4), (30, -4)]), None);
    }

    #[test]
    fn values_split_into_two_parts_and_back() {
        for v in [0_i128, 1, -1, 999_999, -999_999, 1_000_000, -1_234_567_891, i128::from(i64::MAX) * 1_000] {
            let (m, r) = split(v).unwrap();
            assert_eq!(join(m, r), v);
            assert!(r.abs() < 1_000_000);
        }
    }
}
