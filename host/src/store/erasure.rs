//! The data rights of a user: erasure (`DELETE /v1/users/{id}`) and the personal export
//! (`GET /v1/me/export`).
//!
//! # Erasure
//! The product promises that erasure "leaves team totals intact and no trace of the
//! person". [`Store::erase_user`] does it in one write transaction (which first locks every
//! integration of the tenant, so no ingestion commit runs half before and half after it):
//!
//! 1. **A former member takes the person's place in the numbers.** If the user had owner
//!    mappings (so possibly facts), a new `users` row is made: a fresh random id (nothing
//!    links it to the person's id), no name, no e-mail, role `member`, `former` set, created
//!    at the moment of the erasure, no token. It joins the person's teams, so team totals
//!    (`GET /v1/kpis?group_by=team`, team targets, team contests) stay exactly as they
//!    were. Former members are hidden from every user list and lookup (`GET /v1/users`,
//!    `GET /v1/kpis?group_by=user`, tokens, owner mapping); in tenant figures their values
//!    count as `unattributed`, so the tenant total is unchanged too.
//! 2. **The facts leave the CRM identity.** For each connector, the person's facts are
//!    moved from the keyed hashes of their CRM owner ids to one random 16-byte owner hash
//!    (made for this erasure, the HMAC of nothing), which is mapped to the former member.
//!    The facts' source hashes stay, so a later edit or retraction in the CRM still
//!    corrects the totals. No CRM id an admin could enter hashes to the new owner hash.
//! 3. **The CRM identity is remembered only as "erased".** The keyed hashes of the person's
//!    CRM owner ids go into `erased_owners`, linked to nothing. The ingestion commit calls
//!    [`shield_erased`] (see `facts.rs`): a change of such an owner is never stored under
//!    that hash again. An existing fact that belongs to a former member stays theirs (an
//!    amount edited in the CRM updates their team's total, nothing is counted twice); any
//!    other fact goes to [`ERASED_OWNER`], the all-zero owner hash, which no mapping can
//!    reach. So no sync, roster match or admin mapping can re-attach the erased person's
//!    records to anyone.
//! 4. **The person is deleted:** the `users` row, and with it (by cascade) tokens, team
//!    memberships, owner mappings, individual contest participations and targets.
//! 5. **The erasure is audited** in the same transaction: `user.erased` with the old user
//!    id as subject. The audit log is append-only and only ever held ids, never names or
//!    e-mails; after the erasure the old id refers to nothing that is stored, so the entries
//!    about the person (`user.created`, `team.member_added`, `owner.mapped`, …) are
//!    anonymous by construction. Contest standings frozen before the erasure keep the old
//!    id for the same reason: it names nobody any more.
//!
//! On SQLite the deleted rows would stay readable in free pages of the file and in the
//! write-ahead log until overwritten, so after the transaction the store runs `VACUUM`
//! (the file is rewritten without them) and `PRAGMA wal_checkpoint(TRUNCATE)` (the log is
//! emptied). `PRAGMA secure_delete` would zero the deleted cells but not stale copies of
//! them left in free space by earlier page splits or in the log, hence the full rewrite;
//! the embedded store is small and erasures are rare. On Postgres deleted tuples are dead
//! and reclaimed by (auto)vacuum; their bytes stay on disk until the page is reused, like
//! any database's deleted rows, which the host does not reach into (use encrypted
//! storage).
//!
//! # Export
//! [`Store::personal_export`] reads everything held about one user apart from their
//! facts, which [`Store::user_facts_page`] pages through (the API streams them).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::audit::AuditRecord;
use super::error::StoreError;
use super::standings::StandingsTx;
use super::tenants::{User, admins_sql, is_only_admin, parse_currency};
use super::types::{Actor, TeamId, TenantId, TokenId, UserId, now_ms, random_bytes, to_u64};
use super::{BeginWrite, Pool, Store};
use crate::ingest::Value;

/// The owner hash of facts whose CRM owner was erased and that no former member holds:
/// sixteen zero bytes, which no keyed hash of a CRM id is, so it is never mapped.
pub const ERASED_OWNER: [u8; 16] = [0; 16];

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// The former member now holding the person's facts and team places (none if the
    /// person had no owner mapping).
    pub former: Option<UserId>,
    /// Facts moved to the former member.
    pub facts: u64,
    /// CRM identities (per connector) marked erased.
    pub owners: u64,
    /// Teams the former member stands in.
    pub teams: u64,
    /// The audit sequence number of the erasure.
    pub audit_seq: u64,
}

/// One of a user's API tokens, as exported: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id.
    pub id: TokenId,
    /// When it was issued.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// A target that concerns a user (theirs, or one of their teams').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Its id.
    pub id: Uuid,
    /// Assigned to the user (`None`) or to this team of theirs.
    pub team: Option<TeamId>,
    /// The metric slug.
    pub metric: String,
    /// `day`, `week`, `month`, `quarter` or `year`.
    pub period: String,
    /// The goal: a count, or micros of the tenant currency.
    pub goal: i64,
    /// The local date it starts from.
    pub starts_on: String,
    /// Whether it repeats every period.
    pub recurring: bool,
}

/// A contest a user takes part in (themselves, or through one of their teams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContestInfo {
    /// Its id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The metric slug.
    pub metric: String,
    /// Its format.
    pub format: String,
    /// The first instant counted.
    pub starts_at_ms: i64,
    /// The first instant no longer counted.
    pub ends_at_ms: i64,
    /// Through this team (`None`: the user takes part themselves).
    pub team: Option<TeamId>,
}

/// One row of a user's points ledger (awards and revocations of incentives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsEntry {
    /// The incentive.
    pub incentive_id: Uuid,
    /// Points: positive when awarded, negative when revoked.
    pub points: i64,
    /// `awarded` or `revoked`.
    pub reason: String,
    /// The incentive's label, if it has one.
    pub label: Option<String>,
    /// The target it was for, if any.
    pub target_id: Option<Uuid>,
    /// The contest it was for, if any.
    pub contest_id: Option<Uuid>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// Everything held about a user but their facts.
#[derive(Debug, Clone)]
pub struct PersonalData {
    /// The account.
    pub user: User,
    /// Their teams: id and name.
    pub teams: Vec<(TeamId, String)>,
    /// Their tokens.
    pub tokens: Vec<TokenInfo>,
    /// How many CRM identities are mapped to them, per connector (the CRM ids themselves
    /// are not held, only keyed hashes).
    pub crm_identities: BTreeMap<String, u64>,
    /// The targets that concern them.
    pub targets: Vec<TargetInfo>,
    /// The contests they take part in.
    pub contests: Vec<ContestInfo>,
    /// Their points ledger, oldest first.
    pub points: Vec<PointsEntry>,
    /// The audit entries they made or that name them.
    pub audit: Vec<AuditRecord>,
}

/// One of a user's facts, as exported, with the key it is paged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFact {
    /// The connector.
    pub connector_id: String,
    /// The metric slug.
    pub metric: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// The value as the CRM reported it.
    pub value: Value,
    /// Money in micros of the tenant currency (`None` for counts and amounts waiting for a
    /// rate).
    pub amount_tenant_micros: Option<i64>,
    /// Where the next page starts (opaque: connector, metric, keyed source hash).
    pub key: FactKey,
}

/// The paging key of a user's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactKey {
    connector_id: String,
    metric: String,
    source: Vec<u8>,
}

type FactRow = (String, String, Vec<u8>, i64, String, Option<i64>, Option<i64>, Option<String>, Option<i64>);

const SELECT_USER_FACTS: &str = "SELECT f.connector_id, f.metric, f.source_hash, f.occurred_at, f.kind, f.count, \
     f.amount_micros, f.currency, f.amount_tenant_micros FROM facts f \
     JOIN owner_mappings m ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id \
     AND m.owner_hash = f.owner_hash \
     WHERE f.tenant_id = $1 AND m.user_id = $2";

impl Store {
    /// Erases a user of the tenant (see the module docs): their facts and team places go to
    /// an anonymous former member, their CRM identities are marked erased, the user with
    /// tokens, mappings, participations and targets is deleted, and `actor`'s erasure is
    /// audited, in one transaction. [`StoreError::NotFound`] for an unknown (or already
    /// erased) user, [`StoreError::LastAdmin`] for the tenant's only admin (nothing is
    /// changed: another user must be made admin first, so the tenant stays manageable).
    pub async fn erase_user(&self, tenant: TenantId, user: UserId, actor: Actor) -> Result<Erasure, StoreError> {
        let lock = self.for_update();
        let now = now_ms();
        let erasure = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Integrations first (the order of the ingestion commit), then the user.
            let _: Vec<(String,)> = sqlx::query_as(&format!(
                "SELECT connector_id FROM integrations WHERE tenant_id = $1 ORDER BY connector_id{lock}"
            ))
            .bind(tenant.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            let found: Option<(bool,)> =
                sqlx::query_as(&format!("SELECT former FROM users WHERE tenant_id = $1 AND id = $2{lock}"))
                    .bind(tenant.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            if !matches!(found, Some((false,))) {
                return Err(StoreError::NotFound { what: "user" });
            }
            let admins: Vec<(Uuid,)> =
                sqlx::query_as(&admins_sql(lock)).bind(tenant.as_uuid()).fetch_all(&mut *tx).await?;
            if is_only_admin(&admins, user) {
                return Err(StoreError::LastAdmin);
            }
            let mappings: Vec<(String, Vec<u8>)> = sqlx::query_as(
                "SELECT connector_id, owner_hash FROM owner_mappings WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY connector_id, owner_hash",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .fetch_all(&mut *tx)
            .await?;
            let teams: Vec<(Uuid,)> =
                sqlx::query_as("SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2")
                    .bind(tenant.as_uuid())
                    .bind(user.as_uuid())
                    .fetch_all(&mut *tx)
                    .await?;

            let mut erasure = Erasure { former: None, facts: 0, owners: 0, teams: 0, audit_seq: 0 };
            if !mappings.is_empty() {
                let former = UserId::new();
                sqlx::query(
                    "INSERT INTO users (tenant_id, id, name, email, email_norm, role, created_at, former) \
                     VALUES ($1, $2, '', '', $3, 'member', $4, TRUE)",
                )
                .bind(tenant.as_uuid())
                .bind(former.as_uuid())
                .bind(format!("former:{former}"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // One random owner hash per connector for this erasure.
                let mut anonymous: BTreeMap<&str, [u8; 16]> = BTreeMap::new();
                for (connector, _) in &mappings {
                    anonymous.entry(connector.as_str()).or_insert_with(fresh_owner_hash);
                }
                for (connector, owner) in &mappings {
                    erasure.facts += sqlx::query(
                        "UPDATE facts SET owner_hash = $4 WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3",
                    )
                    .bind(tenant.as_uuid())
                    .bind(connector.as_str())
                    .bind(&owner[..])
                    .bind(&anonymous[connector.as_str()][..])
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    sqlx::query(
                        "INSERT INTO erased_owners (tenant_id, connector_id, owner_hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant_id, connector_id, owner_hash) DO NOTHING",
                    )
                    .bind(tenant.as_uuid())
                    .bind(connector.as_str())
                    .bind(&owner[..])
                    .execute(&mut *tx)
                    .await?;
                    erasure.owners += 1;
                }
                for (connector, hash) in &anonymous {
                    sqlx::query(
                        "INSERT INTO owner_mappings (tenant_id, connector_id, owner_hash, user_id) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(tenant.as_uuid())
                    .bind(*connector)
                    .bind(&hash[..])
                    .bind(former.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                }
                for (team,) in &teams {
                    sqlx::query("INSERT INTO team_members (tenant_id, team_id, user_id) VALUES ($1, $2, $3)")
                        .bind(tenant.as_uuid())
                        .bind(team)
                        .bind(former.as_uuid())
                        .execute(&mut *tx)
                        .await?;
                    erasure.teams += 1;
                }
                erasure.former = Some(former);
            }
            // Tokens, memberships, mappings, participations and targets go with the row.
            sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await?;
            if !mappings.is_empty() {
                // Contest totals are keyed by owner hash: summed again under the anonymous
                // ones, so no erased hash stays in them.
                tx.rebuild_standings(tenant.as_uuid(), None).await?;
            }
            let subject = user.to_string();
            let seq = audit_in_tx!(&self.key, tx, tenant.as_uuid(), actor, "user.erased", &subject);
            erasure.audit_seq = to_u64(seq);
            tx.commit().await?;
            erasure
        });
        if let Pool::Sqlite(pool) = &self.pool {
            // The erasure is committed whatever happens here: a failure is logged (by code)
            // and the bytes go at the next erasure's rewrite.
            if let Err(e) = scrub_sqlite(pool).await {
                tracing::error!(code = e.code(), "erased rows may remain in free pages of the SQLite file");
            }
        }
        Ok(erasure)
    }

    /// The former members of the tenant: the anonymous stand-ins of erased users.
    pub async fn former_members(&self, tenant: TenantId) -> Result<BTreeSet<UserId>, StoreError> {
        let rows: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM users WHERE tenant_id = $1 AND former")
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(UserId::from_uuid).collect())
    }

    /// Everything held about a user of the tenant but their facts (see
    /// [`Store::user_facts_page`]). [`StoreError::NotFound`] for an unknown user.
    pub async fn personal_export(&self, tenant: TenantId, user: UserId) -> Result<PersonalData, StoreError> {
        let account = self.user(tenant, user).await?;
        let t = tenant.as_uuid();
        let u = user.as_uuid();
        let actor = Actor::User(user).to_stored();
        let pattern = format!("%{user}%");
        type TargetRow = (Uuid, Option<Uuid>, String, String, i64, String, bool);
        type ContestRow = (Uuid, String, String, String, i64, i64, Option<Uuid>);
        type PointsRow = (Uuid, i64, String, Option<String>, Option<Uuid>, Option<Uuid>, i64);
        let (teams, tokens, identities, targets, contests, points, audit) = on_pool!(self, pool => {
            let teams: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT t.id, t.name FROM teams t JOIN team_members m ON m.tenant_id = t.tenant_id AND m.team_id = t.id \
                 WHERE t.tenant_id = $1 AND m.user_id = $2 ORDER BY t.created_at, t.id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let tokens: Vec<(Uuid, i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, created_at, revoked_at FROM api_tokens WHERE tenant_id = $1 AND user_id = $2 \
                 ORDER BY created_at, id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let identities: Vec<(String, i64)> = sqlx::query_as(
                "SELECT connector_id, COUNT(*) FROM owner_mappings WHERE tenant_id = $1 AND user_id = $2 \
                 GROUP BY connector_id ORDER BY connector_id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let targets: Vec<TargetRow> = sqlx::query_as(
                "SELECT id, team_id, metric, period, goal, starts_on, recurring FROM targets \
                 WHERE tenant_id = $1 AND (user_id = $2 OR team_id IN \
                 (SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2)) \
                 ORDER BY created_at, id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let contests: Vec<ContestRow> = sqlx::query_as(
                "SELECT c.id, c.name, c.metric, c.format, c.starts_at, c.ends_at, p.team_id FROM contests c \
                 JOIN contest_participants p ON p.tenant_id = c.tenant_id AND p.contest_id = c.id \
                 WHERE c.tenant_id = $1 AND (p.user_id = $2 OR p.team_id IN \
                 (SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2)) \
                 ORDER BY c.starts_at, c.id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let points: Vec<PointsRow> = sqlx::query_as(
                "SELECT incentive_id, points, reason, label, target_id, contest_id, at FROM points_ledger \
                 WHERE tenant_id = $1 AND user_id = $2 ORDER BY at, id",
            )
            .bind(t)
            .bind(u)
            .fetch_all(pool)
            .await?;
            let audit: Vec<(i64, i64, String, String, String)> = sqlx::query_as(
                "SELECT seq, at, actor, action, subject FROM audit_log \
                 WHERE tenant_id = $1 AND (actor = $2 OR subject LIKE $3) ORDER BY seq",
            )
            .bind(t)
            .bind(&actor)
            .bind(&pattern)
            .fetch_all(pool)
            .await?;
            (teams, tokens, identities, targets, contests, points, audit)
        });
        Ok(PersonalData {
            user: account,
            teams: teams.into_iter().map(|(id, name)| (TeamId::from_uuid(id), name)).collect(),
            tokens: tokens
                .into_iter()
                .map(|(id, created, revoked)| TokenInfo {
                    id: TokenId::from_uuid(id),
                    created_at_ms: created,
                    revoked_at_ms: revoked,
                })
                .collect(),
            crm_identities: identities.into_iter().map(|(c, n)| (c, to_u64(n))).collect(),
            targets: targets
                .into_iter()
                .map(|(id, team, metric, period, goal, starts_on, recurring)| TargetInfo {
                    id,
                    team: team.map(TeamId::from_uuid),
                    metric,
                    period,
                    goal,
                    starts_on,
                    recurring,
                })
                .collect(),
            contests: contests
                .into_iter()
                .map(|(id, name, metric, format, starts, ends, team)| ContestInfo {
                    id,
                    name,
                    metric,
                    format,
                    starts_at_ms: starts,
                    ends_at_ms: ends,
                    team: team.map(TeamId::from_uuid),
                })
                .collect(),
            points: points
                .into_iter()
                .map(|(incentive_id, points, reason, label, target_id, contest_id, at)| PointsEntry {
                    incentive_id,
                    points,
                    reason,
                    label,
                    target_id,
                    contest_id,
                    at_ms: at,
                })
                .collect(),
            audit: audit
                .into_iter()
                .map(|(seq, at, actor, action, subject)| {
                    Ok(AuditRecord {
                        seq: to_u64(seq),
                        at_ms: at,
                        actor: Actor::parse_stored(&actor)?,
                        action,
                        subject,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }

    /// A page of the facts attributed to a user of the tenant, at most `limit`, after
    /// `after` (the previous page's last [`UserFact::key`]), by connector, metric and
    /// source hash.
    pub async fn user_facts_page(
        &self,
        tenant: TenantId,
        user: UserId,
        after: Option<&FactKey>,
        limit: u32,
    ) -> Result<Vec<UserFact>, StoreError> {
        let order = " ORDER BY f.connector_id, f.metric, f.source_hash LIMIT $3";
        let rows: Vec<FactRow> = on_pool!(self, pool => {
            match after {
                None => sqlx::query_as(&format!("{SELECT_USER_FACTS}{order}"))
                    .bind(tenant.as_uuid())
                    .bind(user.as_uuid())
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?,
                Some(key) => sqlx::query_as(&format!(
                    "{SELECT_USER_FACTS} AND (f.connector_id, f.metric, f.source_hash) > ($4, $5, $6){order}"
                ))
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .bind(i64::from(limit))
                .bind(&key.connector_id)
                .bind(&key.metric)
                .bind(&key.source)
                .fetch_all(pool)
                .await?,
            }
        });
        rows.into_iter()
            .map(|(connector_id, metric, source, occurred_at, kind, count, amount, currency, amount_tenant)| {
                let value = match (kind.as_str(), count, amount, currency) {
                    ("count", Some(n), None, None) => Value::Count(n),
                    ("money", None, Some(micros), Some(currency)) => {
                        Value::Money { micros, currency: parse_currency(&currency)? }
                    }
                    _ => return Err(StoreError::Corrupt { what: "fact value" }),
                };
                let key = FactKey { connector_id: connector_id.clone(), metric: metric.clone(), source };
                Ok(UserFact {
                    connector_id,
                    metric,
                    occurred_at_ms: occurred_at,
                    value,
                    amount_tenant_micros: amount_tenant,
                    key,
                })
            })
            .collect()
    }
}

/// Rewrites the SQLite file without the bytes of deleted rows (`VACUUM`), then copies the
/// write-ahead log into it and truncates the log to nothing, retrying while readers hold it.
pub(super) async fn scrub_sqlite(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    sqlx::query("VACUUM").execute(pool).await?;
    for _ in 0..50 {
        // (busy, frames in the log, frames checkpointed); busy = 1: a reader held the log.
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(pool).await?;
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(StoreError::Invalid { what: "write-ahead log busy" })
}

/// A random owner hash for a former member: never [`ERASED_OWNER`].
fn fresh_owner_hash() -> [u8; 16] {
    loop {
        let hash = random_bytes::<16>();
        if hash != ERASED_OWNER {
            return hash;
        }
    }
}

/// The ingestion commit's hook (called by `facts.rs` inside its transaction, after the
/// batch's rows are built and before they are written): every upsert whose CRM owner is
/// marked erased for this integration gets another owner hash, the one of the stored fact
/// of the same key if a former member holds it, else [`ERASED_OWNER`]. One indexed read per
/// commit when nothing of the integration was ever erased.
pub(super) async fn shield_erased<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    tenant: Uuid,
    connector_id: &str,
    rows: &mut [(&str, [u8; 16], &mut [u8; 16])],
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q [u8]: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (Vec<u8>,): for<'x> sqlx::FromRow<'x, DB::Row>,
{
    let erased: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT owner_hash FROM erased_owners WHERE tenant_id = $1 AND connector_id = $2")
            .bind(tenant)
            .bind(connector_id)
            .fetch_all(&mut **tx)
            .await?;
    if erased.is_empty() {
        return Ok(());
    }
    let erased: BTreeSet<Vec<u8>> = erased.into_iter().map(|(hash,)| hash).collect();
    for (metric, source, owner) in rows.iter_mut() {
        if !erased.contains(&owner[..]) {
            continue;
        }
        let held: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT f.owner_hash FROM facts f \
             JOIN owner_mappings m ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id \
             AND m.owner_hash = f.owner_hash \
             JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id \
             WHERE f.tenant_id = $1 AND f.connector_id = $2 AND f.metric = $3 AND f.source_hash = $4 AND u.former",
        )
        .bind(tenant)
        .bind(connector_id)
        .bind(*metric)
        .bind(&source[..])
        .fetch_optional(&mut **tx)
        .await?;
        **owner = match held {
            Some((hash,)) => {
                <[u8; 16]>::try_from(hash.as_slice()).map_err(|_| StoreError::Corrupt { what: "keyed hash" })?
            }
            None => ERASED_OWNER,
        };
    }
    Ok(())
}
