//! Contests, targets, and the dated facts the engine ranks and measures them by.
//!
//! The rules live in [`crate::engine`]; this module only keeps the definitions and reads
//! facts. Participants and assignees are users or teams of the same tenant, enforced by
//! foreign keys that start with `tenant_id`: another tenant's id fails the insert as an
//! unknown one would ([`StoreError::NotFound`]), and nothing of the request is written.

use jiff::civil::{Date, Weekday};
use uuid::Uuid;

use super::error::{StoreError, not_found_on_foreign_key};
use super::facts::FACT_VALUE;
use super::standings::StandingsTx;
use super::types::{ContestId, TargetId, TeamId, TenantId, UserId, now_ms, random_uuid};
use super::{BeginWrite, Principal, Role, Store};
use crate::engine::PeriodKind;

/// Who takes part in a contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Participants {
    /// Users, each ranked on their own facts.
    Users(Vec<UserId>),
    /// Teams, each ranked on the sum of its members' facts.
    Teams(Vec<TeamId>),
}

impl Participants {
    /// `users` or `teams`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Participants::Users(_) => "users",
            Participants::Teams(_) => "teams",
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Participants::Users(u) => u.len(),
            Participants::Teams(t) => t.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What it takes to create a contest (checked by the caller: a known metric and format,
/// `ends_at_ms > starts_at_ms`, participants listed once).
#[derive(Debug, Clone, Copy)]
pub struct NewContest<'a> {
    /// Display name.
    pub name: &'a str,
    /// The metric slug it ranks by.
    pub metric: &'a str,
    /// The format (`leaderboard`, `race`, `head_to_head`, `team_vs_team`,
    /// `percent_of_target`).
    pub format: &'a str,
    /// A race's goal, above zero, in the metric's unit; `None` for other formats.
    pub goal: Option<i64>,
    /// The first instant counted, in milliseconds since the Unix epoch.
    pub starts_at_ms: i64,
    /// The first instant no longer counted (exclusive).
    pub ends_at_ms: i64,
    /// Who takes part.
    pub participants: &'a Participants,
    /// The manager who created it.
    pub created_by: UserId,
}

/// A stored contest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contest {
    /// Its id.
    pub id: ContestId,
    /// Display name.
    pub name: String,
    /// The metric slug it ranks by.
    pub metric: String,
    /// The format.
    pub format: String,
    /// A race's goal in the metric's unit.
    pub goal: Option<i64>,
    /// The first instant counted, in milliseconds since the Unix epoch.
    pub starts_at_ms: i64,
    /// The first instant no longer counted.
    pub ends_at_ms: i64,
    /// Who takes part, in the order given at creation (erased users and deleted teams gone).
    pub participants: Participants,
    /// Who created it.
    pub created_by: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The final standing as JSON, once frozen.
    pub frozen: Option<String>,
    /// When it was frozen.
    pub frozen_at_ms: Option<i64>,
}

/// Whose target it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignee {
    /// One user.
    User(UserId),
    /// A team: the sum of its members.
    Team(TeamId),
}

/// A stretch tier of a target: a goal above the target's own, with an optional label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tier {
    /// The tier's goal, in the metric's unit (above the target's goal and the tiers before).
    pub goal: i64,
    /// The manager's name for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// What it takes to create a target (checked by the caller: a known metric, a positive
/// goal, ascending tiers above it, the first period computed in the tenant's zone).
#[derive(Debug, Clone, Copy)]
pub struct NewTarget<'a> {
    /// Whose.
    pub assignee: Assignee,
    /// The metric slug.
    pub metric: &'a str,
    /// The period.
    pub period: PeriodKind,
    /// The goal per period: a count, or micros of the tenant currency.
    pub goal: i64,
    /// The local date it was set from.
    pub starts_on: Date,
    /// The first instant of the first period.
    pub first_start_ms: i64,
    /// The end (exclusive) of the first period.
    pub first_end_ms: i64,
    /// Whether it repeats every period from the first on.
    pub recurring: bool,
    /// The manager who created it.
    pub created_by: UserId,
    /// The last local day of a custom period (`None` for the calendar kinds).
    pub ends_on: Option<Date>,
    /// The day its weeks start on (the tenant calendar's when it was created).
    pub week_start: Weekday,
    /// Its stretch tiers, ascending.
    pub tiers: &'a [Tier],
}

/// A stored target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its id.
    pub id: TargetId,
    /// Whose.
    pub assignee: Assignee,
    /// The metric slug.
    pub metric: String,
    /// The period.
    pub period: PeriodKind,
    /// The goal per period: a count, or micros of the tenant currency.
    pub goal: i64,
    /// The local date it was set from.
    pub starts_on: Date,
    /// The first instant of the first period.
    pub first_start_ms: i64,
    /// The end (exclusive) of the first period.
    pub first_end_ms: i64,
    /// Whether it repeats every period from the first on.
    pub recurring: bool,
    /// Who created it.
    pub created_by: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The last local day of a custom period.
    pub ends_on: Option<Date>,
    /// The day its weeks start on (Monday for targets made before calendars existed).
    pub week_start: Weekday,
    /// Its stretch tiers, ascending.
    pub tiers: Vec<Tier>,
}

/// The facts of one user at one instant, summed: a count, or micros of the tenant
/// currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DatedFact {
    /// The user the CRM owner is mapped to.
    pub user_id: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The sum of that user's facts at that instant.
    pub value: i128,
}

/// A participant as stored: `(user_id, team_id)`, exactly one set.
type ParticipantRow = (Option<Uuid>, Option<Uuid>);
type ContestRow = (Uuid, String, String, String, i64, i64, String, Uuid, i64, Option<String>, Option<i64>, Option<i64>);
type TargetRow = (
    Uuid,
    Option<Uuid>,
    Option<Uuid>,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    bool,
    Uuid,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

const SELECT_TARGET: &str = "SELECT id, user_id, team_id, metric, period, goal, starts_on, first_start, first_end, \
     recurring, created_by, created_at, ends_on, week_start, tiers FROM targets";

/// Tiers as stored: a JSON array, or NULL for none.
fn tiers_column(tiers: &[Tier]) -> Option<String> {
    (!tiers.is_empty()).then(|| serde_json::json!(tiers).to_string())
}

fn target_from_row(row: TargetRow) -> Result<Target, StoreError> {
    let (
        id,
        user,
        team,
        metric,
        period,
        goal,
        starts_on,
        first_start,
        first_end,
        recurring,
        created_by,
        created_at,
        ends_on,
        week_start,
        tiers,
    ) = row;
    let assignee = match (user, team) {
        (Some(user), None) => Assignee::User(UserId::from_uuid(user)),
        (None, Some(team)) => Assignee::Team(TeamId::from_uuid(team)),
        _ => return Err(StoreError::Corrupt { what: "target assignee" }),
    };
    Ok(Target {
        id: TargetId::from_uuid(id),
        assignee,
        metric,
        period: PeriodKind::parse(&period).ok_or(StoreError::Corrupt { what: "target period" })?,
        goal,
        starts_on: starts_on.parse().map_err(|_| StoreError::Corrupt { what: "target start date" })?,
        first_start_ms: first_start,
        first_end_ms: first_end,
        recurring,
        created_by: UserId::from_uuid(created_by),
        created_at_ms: created_at,
        ends_on: ends_on.map(|d| d.parse()).transpose().map_err(|_| StoreError::Corrupt { what: "target end date" })?,
        week_start: match week_start {
            None => Weekday::Monday,
            Some(name) => crate::engine::calendar::parse_weekday(&name)
                .ok_or(StoreError::Corrupt { what: "target week start" })?,
        },
        tiers: match tiers {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|_| StoreError::Corrupt { what: "target tiers" })?,
        },
    })
}

impl Store {
    /// Creates a contest and its participants in one transaction. [`StoreError::NotFound`]
    /// (`user` or `team`) if a participant is not in the tenant, [`StoreError::Conflict`]
    /// if one is listed twice; in both cases nothing is written.
    pub async fn create_contest(&self, tenant: TenantId, new: &NewContest<'_>) -> Result<Contest, StoreError> {
        let contest = Contest {
            id: ContestId::new(),
            name: new.name.to_owned(),
            metric: new.metric.to_owned(),
            format: new.format.to_owned(),
            goal: new.goal,
            starts_at_ms: new.starts_at_ms,
            ends_at_ms: new.ends_at_ms,
            participants: new.participants.clone(),
            created_by: new.created_by,
            created_at_ms: now_ms(),
            frozen: None,
            frozen_at_ms: None,
        };
        let (what, ids): (&'static str, Vec<ParticipantRow>) = match new.participants {
            Participants::Users(users) => ("user", users.iter().map(|u| (Some(u.as_uuid()), None)).collect()),
            Participants::Teams(teams) => ("team", teams.iter().map(|t| (None, Some(t.as_uuid()))).collect()),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO contests (tenant_id, id, name, metric, format, starts_at, ends_at, participants, \
                 created_by, created_at, goal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(tenant.as_uuid())
            .bind(contest.id.as_uuid())
            .bind(&contest.name)
            .bind(&contest.metric)
            .bind(&contest.format)
            .bind(contest.starts_at_ms)
            .bind(contest.ends_at_ms)
            .bind(new.participants.kind())
            .bind(contest.created_by.as_uuid())
            .bind(contest.created_at_ms)
            .bind(contest.goal)
            .execute(&mut *tx)
            .await
            .map_err(not_found_on_foreign_key("tenant"))?;
            for (position, (user, team)) in ids.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO contest_participants (tenant_id, contest_id, position, user_id, team_id) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant.as_uuid())
                .bind(contest.id.as_uuid())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(*user)
                .bind(*team)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    if StoreError::is_unique_violation(&err) {
                        StoreError::Conflict { what: "contest participant" }
                    } else {
                        not_found_on_foreign_key(what)(err)
                    }
                })?;
            }
            // Its stored totals, summed once from the facts already there.
            tx.rebuild_standings(tenant.as_uuid(), Some(contest.id.as_uuid())).await?;
            tx.commit().await?;
        });
        Ok(contest)
    }

    /// A contest of the tenant with its participants.
    pub async fn contest(&self, tenant: TenantId, contest: ContestId) -> Result<Contest, StoreError> {
        let (row, participants): (Option<ContestRow>, Vec<ParticipantRow>) = on_pool!(self, pool => {
            let row = sqlx::query_as(
                "SELECT id, name, metric, format, starts_at, ends_at, participants, created_by, created_at, \
                 frozen, frozen_at, goal FROM contests WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .fetch_optional(pool)
            .await?;
            let participants = sqlx::query_as(
                "SELECT user_id, team_id FROM contest_participants WHERE tenant_id = $1 AND contest_id = $2 \
                 ORDER BY position",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .fetch_all(pool)
            .await?;
            (row, participants)
        });
        let (id, name, metric, format, starts_at, ends_at, kind, created_by, created_at, frozen, frozen_at, goal) =
            row.ok_or(StoreError::NotFound { what: "contest" })?;
        let corrupt = || StoreError::Corrupt { what: "contest participant" };
        let participants = match kind.as_str() {
            "users" => Participants::Users(
                participants
                    .into_iter()
                    .map(|(u, _)| u.map(UserId::from_uuid).ok_or_else(corrupt))
                    .collect::<Result<_, _>>()?,
            ),
            "teams" => Participants::Teams(
                participants
                    .into_iter()
                    .map(|(_, t)| t.map(TeamId::from_uuid).ok_or_else(corrupt))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(StoreError::Corrupt { what: "contest participants kind" }),
        };
        Ok(Contest {
            id: ContestId::from_uuid(id),
            name,
            metric,
            format,
            goal,
            starts_at_ms: starts_at,
            ends_at_ms: ends_at,
            participants,
            created_by: UserId::from_uuid(created_by),
            created_at_ms: created_at,
            frozen,
            frozen_at_ms: frozen_at,
        })
    }

    /// Freezes a contest's final standing: stores `standing` (JSON) unless one is stored
    /// already, and returns the one stored now with when it was frozen. The first writer
    /// wins, so every reader serves the same final standing.
    pub async fn freeze_contest(
        &self,
        tenant: TenantId,
        contest: ContestId,
        standing: &str,
    ) -> Result<(String, i64), StoreError> {
        let row: Option<(Option<String>, Option<i64>)> = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE contests SET frozen = $3, frozen_at = $4 WHERE tenant_id = $1 AND id = $2 AND frozen IS NULL",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .bind(standing)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as("SELECT frozen, frozen_at FROM contests WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(contest.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            row
        });
        match row {
            None => Err(StoreError::NotFound { what: "contest" }),
            Some((Some(frozen), Some(at))) => Ok((frozen, at)),
            Some(_) => Err(StoreError::Corrupt { what: "frozen contest" }),
        }
    }

    /// Creates a target. [`StoreError::NotFound`] (`user` or `team`) if the assignee is not
    /// in the tenant; [`StoreError::Conflict`] (`target`) if the instants it covers overlap
    /// those of another target of the same assignee, metric and period (a one-off target
    /// covers its first period, a recurring one everything from its first period on). The
    /// check and the insert are one transaction holding a lock on the assignee's row (on
    /// SQLite, the write lock), so two racing requests cannot both pass it.
    pub async fn create_target(&self, tenant: TenantId, new: &NewTarget<'_>) -> Result<Target, StoreError> {
        let target = Target {
            id: TargetId::new(),
            assignee: new.assignee,
            metric: new.metric.to_owned(),
            period: new.period,
            goal: new.goal,
            starts_on: new.starts_on,
            first_start_ms: new.first_start_ms,
            first_end_ms: new.first_end_ms,
            recurring: new.recurring,
            created_by: new.created_by,
            created_at_ms: now_ms(),
            ends_on: new.ends_on,
            week_start: new.week_start,
            tiers: new.tiers.to_vec(),
        };
        let (table, column, what, assignee, user, team) = match new.assignee {
            Assignee::User(u) => ("users", "user_id", "user", u.as_uuid(), Some(u.as_uuid()), None),
            Assignee::Team(t) => ("teams", "team_id", "team", t.as_uuid(), None, Some(t.as_uuid())),
        };
        // The instants the new target covers: [first_start, covered_end).
        let covered_end = if new.recurring { i64::MAX } else { new.first_end_ms };
        // A row lock that serialises target creation per assignee without blocking the
        // foreign-key checks of other inserts that reference the row (Postgres); SQLite's
        // write transaction holds the one write lock already.
        let for_update = match self.backend() {
            super::Backend::Postgres => " FOR NO KEY UPDATE",
            super::Backend::Sqlite => "",
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let exists: Option<Uuid> =
                sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE tenant_id = $1 AND id = $2{for_update}"))
                    .bind(tenant.as_uuid())
                    .bind(assignee)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound { what });
            }
            let overlapping: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM targets WHERE tenant_id = $1 AND {column} = $2 AND metric = $3 \
                 AND period = $4 AND first_start < $5 AND (recurring OR first_end > $6)"
            ))
            .bind(tenant.as_uuid())
            .bind(assignee)
            .bind(new.metric)
            .bind(new.period.as_str())
            .bind(covered_end)
            .bind(new.first_start_ms)
            .fetch_one(&mut *tx)
            .await?;
            if overlapping > 0 {
                return Err(StoreError::Conflict { what: "target" });
            }
            sqlx::query(
                "INSERT INTO targets (tenant_id, id, user_id, team_id, metric, period, goal, starts_on, first_start, \
                 first_end, recurring, created_by, created_at, ends_on, week_start, tiers) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(tenant.as_uuid())
            .bind(target.id.as_uuid())
            .bind(user)
            .bind(team)
            .bind(&target.metric)
            .bind(target.period.as_str())
            .bind(target.goal)
            .bind(target.starts_on.to_string())
            .bind(target.first_start_ms)
            .bind(target.first_end_ms)
            .bind(target.recurring)
            .bind(target.created_by.as_uuid())
            .bind(target.created_at_ms)
            .bind(target.ends_on.map(|d| d.to_string()))
            .bind(super::calendar::week_start_name(target.week_start))
            .bind(tiers_column(&target.tiers))
            .execute(&mut *tx)
            .await
            .map_err(not_found_on_foreign_key(what))?;
            tx.commit().await?;
        });
        Ok(target)
    }

    /// A target of the tenant.
    pub async fn target(&self, tenant: TenantId, target: TargetId) -> Result<Target, StoreError> {
        let row: Option<TargetRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_TARGET} WHERE tenant_id = $1 AND id = $2"))
                .bind(tenant.as_uuid())
                .bind(target.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        target_from_row(row.ok_or(StoreError::NotFound { what: "target" })?)
    }

    /// The teams of the tenant a user is a member of.
    pub async fn teams_of(&self, tenant: TenantId, user: UserId) -> Result<Vec<TeamId>, StoreError> {
        let rows: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2 ORDER BY team_id",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(TeamId::from_uuid).collect())
    }

    /// The facts of one metric in `[from_ms, to_ms)` whose CRM owner is mapped to a user,
    /// summed per user and instant (counts, or micros of the tenant currency; amounts
    /// waiting for an exchange rate left out). What the engine needs for the moment a
    /// target was achieved and for the contest tie-break. Ordered by user, then instant.
    pub async fn dated_facts(
        &self,
        tenant: TenantId,
        metric: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DatedFact>, StoreError> {
        // Summed in two parts, as in `kpi_totals`, so no BIGINT sum can overflow.
        let rows: Vec<(Uuid, i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT m.user_id, f.occurred_at, \
                 CAST(SUM({FACT_VALUE} / 1000000) AS BIGINT), CAST(SUM({FACT_VALUE} % 1000000) AS BIGINT) \
                 FROM facts f \
                 JOIN owner_mappings m ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id \
                 AND m.owner_hash = f.owner_hash \
                 WHERE f.tenant_id = $1 AND f.metric = $2 AND f.occurred_at >= $3 AND f.occurred_at < $4 \
                 AND {FACT_VALUE} IS NOT NULL \
                 GROUP BY m.user_id, f.occurred_at ORDER BY m.user_id, f.occurred_at"
            ))
            .bind(tenant.as_uuid())
            .bind(metric)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(user, at, millions, rest)| DatedFact {
                user_id: UserId::from_uuid(user),
                at_ms: at,
                value: i128::from(millions) * 1_000_000 + i128::from(rest),
            })
            .collect())
    }
}

/// A composite metric: a weighted sum of connector count metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeMetric {
    /// What KPIs, targets and contests name it by.
    pub slug: String,
    /// An optional display name.
    pub name: Option<String>,
    /// Its terms, in the order given (at least one, each metric once).
    pub terms: Vec<CompositeTerm>,
    /// The admin who defined it.
    pub created_by: UserId,
    /// When, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// One term of a composite metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeTerm {
    /// A connector count metric's slug.
    pub metric: String,
    /// Its weight in millionths (`1.5` is 1 500 000), never zero.
    pub weight_micros: i64,
}

/// A contest as listed: its definition without the participants, with how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContestSummary {
    /// Its id.
    pub id: ContestId,
    /// Display name.
    pub name: String,
    /// The metric slug.
    pub metric: String,
    /// The format.
    pub format: String,
    /// The first instant counted.
    pub starts_at_ms: i64,
    /// The first instant no longer counted.
    pub ends_at_ms: i64,
    /// `users` or `teams`.
    pub participants_kind: String,
    /// How many participants.
    pub participant_count: i64,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it was frozen, if it was.
    pub frozen_at_ms: Option<i64>,
    /// A race's goal in the metric's unit; `None` for other formats.
    pub goal: Option<i64>,
}

/// Where a page of a list starts: after the item created at `created_at_ms` with `id`
/// (lists run newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAfter {
    /// The last listed item's creation time.
    pub created_at_ms: i64,
    /// The last listed item's id.
    pub id: Uuid,
}

/// Whose items a member may list: their own, and their teams'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Everything of the tenant (managers, admins).
    All,
    /// What concerns this user (members).
    Concerning(UserId),
}

impl Visible {
    /// What a principal may list: everything for managers and admins, what concerns them
    /// for members.
    pub fn to(p: &Principal) -> Self {
        match p.role {
            Role::Admin | Role::Manager => Visible::All,
            Role::Member => Visible::Concerning(p.user_id),
        }
    }
}

/// The SQL condition for "visible to a member": `$3` is the user. `{who}` names the
/// column holding a user id, `{team}` the one holding a team id.
fn concerning(user_col: &str, team_col: &str) -> String {
    format!(
        "({user_col} = $3 OR {team_col} IN (SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $3))"
    )
}

type SummaryRow = (Uuid, String, String, String, i64, i64, String, i64, i64, Option<i64>, Option<i64>);

impl Store {
    /// Whether the team exists in the tenant.
    pub async fn team_exists(&self, tenant: TenantId, team: TeamId) -> Result<bool, StoreError> {
        let row: Option<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM teams WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(team.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some())
    }

    /// A page of the tenant's contests, newest first: at most `limit` after `after`, only
    /// those `visible` (a member's: those they or one of their teams take part in).
    pub async fn contests(
        &self,
        tenant: TenantId,
        visible: Visible,
        after: Option<PageAfter>,
        limit: u32,
    ) -> Result<Vec<ContestSummary>, StoreError> {
        let member = match visible {
            Visible::All => String::new(),
            Visible::Concerning(_) => format!(
                " AND EXISTS (SELECT 1 FROM contest_participants p WHERE p.tenant_id = c.tenant_id \
                 AND p.contest_id = c.id AND {})",
                concerning("p.user_id", "p.team_id")
            ),
        };
        let user = match visible {
            Visible::All => None,
            Visible::Concerning(u) => Some(u.as_uuid()),
        };
        let (at, id) = after.map_or((i64::MAX, Uuid::max()), |a| (a.created_at_ms, a.id));
        let sql = format!(
            "SELECT c.id, c.name, c.metric, c.format, c.starts_at, c.ends_at, c.participants, \
             (SELECT COUNT(*) FROM contest_participants q WHERE q.tenant_id = c.tenant_id AND q.contest_id = c.id), \
             c.created_at, c.frozen_at, c.goal FROM contests c \
             WHERE c.tenant_id = $1 AND ($3 IS NULL OR $3 IS NOT NULL){member} \
             AND (c.created_at < $4 OR (c.created_at = $4 AND c.id < $5)) \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $2"
        );
        let rows: Vec<SummaryRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(tenant.as_uuid())
                .bind(i64::from(limit))
                .bind(user)
                .bind(at)
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, metric, format, starts, ends, kind, count, created, frozen, goal)| ContestSummary {
                id: ContestId::from_uuid(id),
                name,
                metric,
                format,
                starts_at_ms: starts,
                ends_at_ms: ends,
                participants_kind: kind,
                participant_count: count,
                created_at_ms: created,
                frozen_at_ms: frozen,
                goal,
            })
            .collect())
    }

    /// Changes a contest's name and window. [`StoreError::NotFound`] if it is not in the
    /// tenant; [`StoreError::Conflict`] (`final contest`) if it is frozen already.
    pub async fn update_contest(
        &self,
        tenant: TenantId,
        contest: ContestId,
        name: &str,
        starts_at_ms: i64,
        ends_at_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(Option<i64>, i64, i64)> =
                sqlx::query_as("SELECT frozen_at, starts_at, ends_at FROM contests WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_uuid())
                    .bind(contest.as_uuid())
                    .fetch_optional(&mut *tx)
                    .await?;
            let moved = match found {
                None => return Err(StoreError::NotFound { what: "contest" }),
                Some((Some(_), _, _)) => return Err(StoreError::Conflict { what: "final contest" }),
                Some((None, starts, ends)) => (starts, ends) != (starts_at_ms, ends_at_ms),
            };
            sqlx::query(
                "UPDATE contests SET name = $3, starts_at = $4, ends_at = $5 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(contest.as_uuid())
            .bind(name)
            .bind(starts_at_ms)
            .bind(ends_at_ms)
            .execute(&mut *tx)
            .await?;
            if moved {
                // Another window counts other facts: the totals are summed again.
                tx.rebuild_standings(tenant.as_uuid(), Some(contest.as_uuid())).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Deletes a contest with its participants. [`StoreError::NotFound`] if it is not in
    /// the tenant.
    pub async fn delete_contest(&self, tenant: TenantId, contest: ContestId) -> Result<(), StoreError> {
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM contests WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(contest.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted == 0 { Err(StoreError::NotFound { what: "contest" }) } else { Ok(()) }
    }

    /// A page of the tenant's targets, newest first: at most `limit` after `after`, only
    /// those `visible` (a member's: their own and their teams').
    pub async fn targets(
        &self,
        tenant: TenantId,
        visible: Visible,
        after: Option<PageAfter>,
        limit: u32,
    ) -> Result<Vec<Target>, StoreError> {
        let member = match visible {
            Visible::All => String::new(),
            Visible::Concerning(_) => format!(" AND {}", concerning("user_id", "team_id")),
        };
        let user = match visible {
            Visible::All => None,
            Visible::Concerning(u) => Some(u.as_uuid()),
        };
        let (at, id) = after.map_or((i64::MAX, Uuid::max()), |a| (a.created_at_ms, a.id));
        let sql = format!(
            "{SELECT_TARGET} WHERE tenant_id = $1 AND ($3 IS NULL OR $3 IS NOT NULL){member} \
             AND (created_at < $4 OR (created_at = $4 AND id < $5)) ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows: Vec<TargetRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(tenant.as_uuid())
                .bind(i64::from(limit))
                .bind(user)
                .bind(at)
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(target_from_row).collect()
    }

    /// The targets of one assignee for one metric and period kind, oldest first.
    pub async fn targets_of(
        &self,
        tenant: TenantId,
        assignee: Assignee,
        metric: &str,
        period: PeriodKind,
    ) -> Result<Vec<Target>, StoreError> {
        let (column, id) = match assignee {
            Assignee::User(u) => ("user_id", u.as_uuid()),
            Assignee::Team(t) => ("team_id", t.as_uuid()),
        };
        let rows: Vec<TargetRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "{SELECT_TARGET} WHERE tenant_id = $1 AND {column} = $2 AND metric = $3 AND period = $4 \
                 ORDER BY first_start, id"
            ))
            .bind(tenant.as_uuid())
            .bind(id)
            .bind(metric)
            .bind(period.as_str())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(target_from_row).collect()
    }

    /// Every target of one metric in the tenant (users' and teams'), oldest first: what a
    /// contest ranked by percent of own target reads its goals from, in one query.
    pub async fn targets_of_metric(&self, tenant: TenantId, metric: &str) -> Result<Vec<Target>, StoreError> {
        let rows: Vec<TargetRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_TARGET} WHERE tenant_id = $1 AND metric = $2 ORDER BY first_start, id"))
                .bind(tenant.as_uuid())
                .bind(metric)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(target_from_row).collect()
    }

    /// Changes a target's goal and tiers (checked by the caller: tiers ascending above the
    /// goal). [`StoreError::NotFound`] if it is not in the tenant.
    pub async fn update_target(
        &self,
        tenant: TenantId,
        target: TargetId,
        goal: i64,
        tiers: &[Tier],
    ) -> Result<(), StoreError> {
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE targets SET goal = $3, tiers = $4 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(target.as_uuid())
                .bind(goal)
                .bind(tiers_column(tiers))
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 { Err(StoreError::NotFound { what: "target" }) } else { Ok(()) }
    }

    /// Deletes a target. [`StoreError::NotFound`] if it is not in the tenant.
    pub async fn delete_target(&self, tenant: TenantId, target: TargetId) -> Result<(), StoreError> {
        let deleted = on_pool!(self, pool => {
            sqlx::query("DELETE FROM targets WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_uuid())
                .bind(target.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted == 0 { Err(StoreError::NotFound { what: "target" }) } else { Ok(()) }
    }

    /// Defines a composite metric with its terms in one transaction.
    /// [`StoreError::Conflict`] (`metric`) if the slug is taken in the tenant; nothing is
    /// written then.
    pub async fn create_composite_metric(&self, tenant: TenantId, metric: &CompositeMetric) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO composite_metrics (tenant_id, slug, name, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.as_uuid())
            .bind(&metric.slug)
            .bind(&metric.name)
            .bind(metric.created_by.as_uuid())
            .bind(metric.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(|err| {
                if StoreError::is_unique_violation(&err) {
                    StoreError::Conflict { what: "metric" }
                } else {
                    not_found_on_foreign_key("tenant")(err)
                }
            })?;
            for (position, term) in metric.terms.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO composite_metric_terms (tenant_id, slug, position, metric, weight_micros) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(tenant.as_uuid())
                .bind(&metric.slug)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(&term.metric)
                .bind(term.weight_micros)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    if StoreError::is_unique_violation(&err) {
                        StoreError::Conflict { what: "metric term" }
                    } else {
                        StoreError::from(err)
                    }
                })?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A composite metric of the tenant, if there is one with that slug.
    pub async fn composite_metric(&self, tenant: TenantId, slug: &str) -> Result<Option<CompositeMetric>, StoreError> {
        Ok(self.composite_metrics_where(tenant, Some(slug)).await?.into_iter().next())
    }

    /// Every composite metric of the tenant, by slug.
    pub async fn composite_metrics(&self, tenant: TenantId) -> Result<Vec<CompositeMetric>, StoreError> {
        self.composite_metrics_where(tenant, None).await
    }

    async fn composite_metrics_where(
        &self,
        tenant: TenantId,
        slug: Option<&str>,
    ) -> Result<Vec<CompositeMetric>, StoreError> {
        type Row = (String, Option<String>, Uuid, i64);
        let (metrics, terms): (Vec<Row>, Vec<(String, String, i64)>) = on_pool!(self, pool => {
            let metrics = sqlx::query_as(
                "SELECT slug, name, created_by, created_at FROM composite_metrics \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR slug = $2) ORDER BY slug",
            )
            .bind(tenant.as_uuid())
            .bind(slug)
            .fetch_all(pool)
            .await?;
            let terms = sqlx::query_as(
                "SELECT slug, metric, weight_micros FROM composite_metric_terms \
                 WHERE tenant_id = $1 AND ($2 IS NULL OR slug = $2) ORDER BY slug, position",
            )
            .bind(tenant.as_uuid())
            .bind(slug)
            .fetch_all(pool)
            .await?;
            (metrics, terms)
        });
        Ok(metrics
            .into_iter()
            .map(|(slug, name, created_by, created_at)| CompositeMetric {
                terms: terms
                    .iter()
                    .filter(|(s, _, _)| *s == slug)
                    .map(|(_, metric, weight)| CompositeTerm { metric: metric.clone(), weight_micros: *weight })
                    .collect(),
                slug,
                name,
                created_by: UserId::from_uuid(created_by),
                created_at_ms: created_at,
            })
            .collect())
    }

    /// Deletes a composite metric. [`StoreError::NotFound`] if there is none with that
    /// slug; [`StoreError::Conflict`] (`metric in use`) if a contest or target measures by
    /// it (nothing is deleted then).
    pub async fn delete_composite_metric(&self, tenant: TenantId, slug: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let exists: Option<String> =
                sqlx::query_scalar("SELECT slug FROM composite_metrics WHERE tenant_id = $1 AND slug = $2")
                    .bind(tenant.as_uuid())
                    .bind(slug)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound { what: "metric" });
            }
            let used: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM contests WHERE tenant_id = $1 AND metric = $2) \
                 + (SELECT COUNT(*) FROM targets WHERE tenant_id = $1 AND metric = $2)",
            )
            .bind(tenant.as_uuid())
            .bind(slug)
            .fetch_one(&mut *tx)
            .await?;
            if used > 0 {
                return Err(StoreError::Conflict { what: "metric in use" });
            }
            sqlx::query("DELETE FROM composite_metrics WHERE tenant_id = $1 AND slug = $2")
                .bind(tenant.as_uuid())
                .bind(slug)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// Where an incentive's reward comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncentiveSource {
    /// Achieving `tier_percent` % of a target's goal in a period.
    Target {
        /// The target.
        target: TargetId,
        /// The share of the goal to reach, in percent (100: the goal itself).
        tier_percent: i64,
    },
    /// A final contest rank of `places` or better, with at least `min_value` when set.
    Contest {
        /// The contest.
        contest: ContestId,
        /// The last rewarded rank.
        places: i64,
        /// The least value rewarded, in the metric's unit.
        min_value: Option<i64>,
    },
}

/// A stored incentive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incentive {
    /// Its id.
    pub id: Uuid,
    /// What earns it.
    pub source: IncentiveSource,
    /// The points it awards, above zero.
    pub points: i64,
    /// The manager's label, if any.
    pub label: Option<String>,
    /// Who created it.
    pub created_by: UserId,
    /// When.
    pub created_at_ms: i64,
}

/// One row of a user's points ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Its id.
    pub id: Uuid,
    /// The incentive.
    pub incentive_id: Uuid,
    /// The period start of a target award; 0 for a contest.
    pub award_key: i64,
    /// +points (awarded) or -points (revoked).
    pub points: i64,
    /// `awarded` or `revoked`.
    pub reason: String,
    /// The incentive's label then.
    pub label: Option<String>,
    /// The target, for a target award.
    pub target_id: Option<TargetId>,
    /// The contest, for a contest award.
    pub contest_id: Option<ContestId>,
    /// When it was written.
    pub at_ms: i64,
}

type IncentiveRow =
    (Uuid, Option<Uuid>, Option<i64>, Option<Uuid>, Option<i64>, Option<i64>, i64, Option<String>, Uuid, i64);
type LedgerRow = (Uuid, Uuid, i64, i64, String, Option<String>, Option<Uuid>, Option<Uuid>, i64);

fn incentive_from_row(row: IncentiveRow) -> Result<Incentive, StoreError> {
    let (id, target, tier, contest, places, min_value, points, label, created_by, created_at) = row;
    let source = match (target, contest) {
        (Some(t), None) => {
            IncentiveSource::Target { target: TargetId::from_uuid(t), tier_percent: tier.unwrap_or(100) }
        }
        (None, Some(c)) => {
            IncentiveSource::Contest { contest: ContestId::from_uuid(c), places: places.unwrap_or(1), min_value }
        }
        _ => return Err(StoreError::Corrupt { what: "incentive source" }),
    };
    Ok(Incentive { id, source, points, label, created_by: UserId::from_uuid(created_by), created_at_ms: created_at })
}

const INCENTIVE_COLUMNS: &str =
    "id, target_id, tier_percent, contest_id, places, min_value, points, label, created_by, created_at";

impl Store {
    /// Creates an incentive. [`StoreError::NotFound`] (`target` or `contest`) if its source
    /// is not in the tenant; nothing is written then.
    pub async fn create_incentive(
        &self,
        tenant: TenantId,
        source: IncentiveSource,
        points: i64,
        label: Option<&str>,
        created_by: UserId,
    ) -> Result<Incentive, StoreError> {
        let incentive = Incentive {
            id: random_uuid(),
            source,
            points,
            label: label.map(str::to_owned),
            created_by,
            created_at_ms: now_ms(),
        };
        let (target, tier, contest, places, min_value, what) = match source {
            IncentiveSource::Target { target, tier_percent } => {
                (Some(target.as_uuid()), Some(tier_percent), None, None, None, "target")
            }
            IncentiveSource::Contest { contest, places, min_value } => {
                (None, None, Some(contest.as_uuid()), Some(places), min_value, "contest")
            }
        };
        on_pool!(self, pool => {
            sqlx::query(&format!(
                "INSERT INTO incentives (tenant_id, {INCENTIVE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(tenant.as_uuid())
            .bind(incentive.id)
            .bind(target)
            .bind(tier)
            .bind(contest)
            .bind(places)
            .bind(min_value)
            .bind(points)
            .bind(label)
            .bind(created_by.as_uuid())
            .bind(incentive.created_at_ms)
            .execute(pool)
            .await
            .map_err(not_found_on_foreign_key(what))?;
        });
        Ok(incentive)
    }

    /// The tenant's incentives, oldest first; only those of one contest or target when
    /// given.
    pub async fn incentives(
        &self,
        tenant: TenantId,
        contest: Option<ContestId>,
        target: Option<TargetId>,
    ) -> Result<Vec<Incentive>, StoreError> {
        let rows: Vec<IncentiveRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {INCENTIVE_COLUMNS} FROM incentives WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR contest_id = $2) AND ($3 IS NULL OR target_id = $3) \
                 ORDER BY created_at, id"
            ))
            .bind(tenant.as_uuid())
            .bind(contest.map(|c| c.as_uuid()))
            .bind(target.map(|t| t.as_uuid()))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(incentive_from_row).collect()
    }

    /// A page of the tenant's incentives, newest first.
    pub async fn incentives_page(
        &self,
        tenant: TenantId,
        after: Option<PageAfter>,
        limit: u32,
    ) -> Result<Vec<Incentive>, StoreError> {
        let (at, id) = after.map_or((i64::MAX, Uuid::max()), |a| (a.created_at_ms, a.id));
        let rows: Vec<IncentiveRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {INCENTIVE_COLUMNS} FROM incentives WHERE tenant_id = $1 \
                 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(tenant.as_uuid())
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(incentive_from_row).collect()
    }

    /// How many ledger rows one incentive has for one user and key, and their net points.
    pub async fn ledger_state(
        &self,
        tenant: TenantId,
        incentive: Uuid,
        user: UserId,
        award_key: i64,
    ) -> Result<(i64, i64), StoreError> {
        let (count, net): (i64, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*), CAST(SUM(points) AS BIGINT) FROM points_ledger WHERE tenant_id = $1 \
                 AND incentive_id = $2 AND user_id = $3 AND award_key = $4",
            )
            .bind(tenant.as_uuid())
            .bind(incentive)
            .bind(user.as_uuid())
            .bind(award_key)
            .fetch_one(pool)
            .await?
        });
        Ok((count, net.unwrap_or(0)))
    }

    /// Appends a ledger row numbered `seq` for (incentive, user, key). `false` if a row of
    /// that number exists already (another reader wrote it first) or the user is gone:
    /// nothing is written then.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_ledger(
        &self,
        tenant: TenantId,
        incentive: &Incentive,
        user: UserId,
        award_key: i64,
        seq: i64,
        points: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (target, contest) = match incentive.source {
            IncentiveSource::Target { target, .. } => (Some(target.as_uuid()), None),
            IncentiveSource::Contest { contest, .. } => (None, Some(contest.as_uuid())),
        };
        let result = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO points_ledger (tenant_id, id, user_id, incentive_id, award_key, seq, points, reason, \
                 label, target_id, contest_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(tenant.as_uuid())
            .bind(random_uuid())
            .bind(user.as_uuid())
            .bind(incentive.id)
            .bind(award_key)
            .bind(seq)
            .bind(points)
            .bind(reason)
            .bind(incentive.label.as_deref())
            .bind(target)
            .bind(contest)
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|_| ())
        });
        match result {
            Ok(()) => Ok(true),
            Err(err) if StoreError::is_unique_violation(&err) => Ok(false),
            Err(err) if err.as_database_error().is_some_and(|e| e.is_foreign_key_violation()) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// A user's points balance: the sum of their ledger.
    pub async fn points_balance(&self, tenant: TenantId, user: UserId) -> Result<i64, StoreError> {
        let sum: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT CAST(SUM(points) AS BIGINT) FROM points_ledger WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .fetch_one(pool)
            .await?
        });
        Ok(sum.unwrap_or(0))
    }

    /// A page of a user's ledger, newest first (by `at`, then id).
    pub async fn points_history(
        &self,
        tenant: TenantId,
        user: UserId,
        after: Option<PageAfter>,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let (at, id) = after.map_or((i64::MAX, Uuid::max()), |a| (a.created_at_ms, a.id));
        let rows: Vec<LedgerRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, incentive_id, award_key, points, reason, label, target_id, contest_id, at \
                 FROM points_ledger WHERE tenant_id = $1 AND user_id = $2 \
                 AND (at < $3 OR (at = $3 AND id < $4)) ORDER BY at DESC, id DESC LIMIT $5",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, incentive_id, award_key, points, reason, label, target, contest, at)| LedgerEntry {
                id,
                incentive_id,
                award_key,
                points,
                reason,
                label,
                target_id: target.map(TargetId::from_uuid),
                contest_id: contest.map(ContestId::from_uuid),
                at_ms: at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Currency;
    use crate::store::{MasterKey, NewTenant};

    #[tokio::test]
    async fn ledger_rows_are_written_once_per_number_and_paged_newest_first() {
        let (store, tenant, admin, other, other_admin) = store_with_tenants().await;
        let participants = Participants::Users(vec![admin]);
        let new = june_contest(&participants, admin);
        let contest = store.create_contest(tenant, &new).await.unwrap();
        let source = IncentiveSource::Contest { contest: contest.id, places: 1, min_value: None };
        // Another tenant's contest is unknown, and nothing is written.
        let err = store.create_incentive(other, source, 5, None, other_admin).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { what: "contest" }), "{err:?}");
        assert!(store.incentives(other, None, None).await.unwrap().is_empty());
        let incentive = store.create_incentive(tenant, source, 5, Some("Lunch"), admin).await.unwrap();
        assert_eq!(store.incentives(tenant, Some(contest.id), None).await.unwrap(), vec![incentive.clone()]);
        // Row 0 once: a second writer of the same number writes nothing.
        assert!(store.append_ledger(tenant, &incentive, admin, 0, 0, 5, "awarded").await.unwrap());
        assert!(!store.append_ledger(tenant, &incentive, admin, 0, 0, 5, "awarded").await.unwrap());
        assert_eq!(store.ledger_state(tenant, incentive.id, admin, 0).await.unwrap(), (1, 5));
        assert!(store.append_ledger(tenant, &incentive, admin, 0, 1, -5, "revoked").await.unwrap());
        assert!(store.append_ledger(tenant, &incentive, admin, 7, 0, 5, "awarded").await.unwrap());
        assert_eq!(store.ledger_state(tenant, incentive.id, admin, 0).await.unwrap(), (2, 0));
        assert_eq!(store.points_balance(tenant, admin).await.unwrap(), 5);
        assert_eq!(store.points_balance(other, other_admin).await.unwrap(), 0);
        // Paged newest first, each row once.
        let first = store.points_history(tenant, admin, None, 2).await.unwrap();
        assert_eq!(first.len(), 2);
        let last = &first[1];
        let after = PageAfter { created_at_ms: last.at_ms, id: last.id };
        let rest = store.points_history(tenant, admin, Some(after), 2).await.unwrap();
        assert_eq!(rest.len(), 1);
        let mut all: Vec<(i64, String, i64)> =
            first.iter().chain(&rest).map(|e| (e.points, e.reason.clone(), e.award_key)).collect();
        all.sort();
        assert_eq!(all, vec![(-5, "revoked".into(), 0), (5, "awarded".into(), 0), (5, "awarded".into(), 7)]);
        assert!(
            first.iter().chain(&rest).all(|e| e.label.as_deref() == Some("Lunch") && e.contest_id == Some(contest.id))
        );
    }

    async fn store_with_tenants() -> (Store, TenantId, UserId, TenantId, UserId) {
        let store = Store::connect("sqlite::memory:", MasterKey::random()).await.unwrap();
        let mut made = Vec::new();
        for name in ["a", "b"] {
            let created = store
                .create_tenant(&NewTenant {
                    name,
                    timezone: "UTC",
                    currency: Currency::parse("EUR").unwrap(),
                    admin_name: "Admin",
                    admin_email: "admin@example.com",
                })
                .await
                .unwrap();
            made.push((created.tenant.id, created.admin.id));
        }
        (store, made[0].0, made[0].1, made[1].0, made[1].1)
    }

    /// A leaderboard of deals won over the first second of the epoch, made by `by`.
    fn june_contest(participants: &Participants, by: UserId) -> NewContest<'_> {
        NewContest {
            name: "June",
            metric: "deals_won",
            format: "leaderboard",
            goal: None,
            starts_at_ms: 0,
            ends_at_ms: 1000,
            participants,
            created_by: by,
        }
    }

    fn month_target(user: UserId, day: &str, recurring: bool) -> NewTarget<'static> {
        let starts_on: Date = day.parse().unwrap();
        let period = crate::engine::Period::containing(PeriodKind::Month, starts_on, &jiff::tz::TimeZone::UTC).unwrap();
        NewTarget {
            assignee: Assignee::User(user),
            metric: "deals_won",
            period: PeriodKind::Month,
            goal: 5,
            starts_on,
            first_start_ms: period.start_ms,
            first_end_ms: period.end_ms,
            recurring,
            created_by: user,
            ends_on: None,
            week_start: Weekday::Monday,
            tiers: &[],
        }
    }

    #[tokio::test]
    async fn contests_keep_their_participants_and_freeze_once() {
        let (store, tenant, admin, other, other_admin) = store_with_tenants().await;
        let participants = Participants::Users(vec![admin]);
        let new = june_contest(&participants, admin);
        let contest = store.create_contest(tenant, &new).await.unwrap();
        assert_eq!(store.contest(tenant, contest.id).await.unwrap(), contest);
        // A race keeps its goal.
        let race = NewContest { format: "race", goal: Some(7), ..new };
        let race = store.create_contest(tenant, &race).await.unwrap();
        assert_eq!(store.contest(tenant, race.id).await.unwrap().goal, Some(7));
        assert!(matches!(store.contest(other, contest.id).await, Err(StoreError::NotFound { .. })));
        // The first frozen standing wins.
        let (first, at) = store.freeze_contest(tenant, contest.id, "[1]").await.unwrap();
        assert_eq!(first, "[1]");
        assert_eq!(store.freeze_contest(tenant, contest.id, "[2]").await.unwrap(), ("[1]".to_owned(), at));
        assert!(matches!(store.freeze_contest(other, contest.id, "[3]").await, Err(StoreError::NotFound { .. })));
        // Another tenant's user is unknown, and nothing of the contest is written.
        let theirs = Participants::Users(vec![admin, other_admin]);
        let err = store.create_contest(tenant, &NewContest { participants: &theirs, ..new }).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { what: "user" }), "{err:?}");
        let teams = Participants::Teams(vec![TeamId::new()]);
        let err = store.create_contest(tenant, &NewContest { participants: &teams, ..new }).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { what: "team" }), "{err:?}");
        let count: i64 =
            on_pool!(store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM contests").fetch_one(pool).await.unwrap());
        assert_eq!(count, 2, "the contest and the race");
    }

    #[tokio::test]
    async fn targets_of_one_assignee_metric_and_period_never_overlap() {
        let (store, tenant, admin, other, other_admin) = store_with_tenants().await;
        let june = store.create_target(tenant, &month_target(admin, "2025-06-10", false)).await.unwrap();
        assert_eq!(store.target(tenant, june.id).await.unwrap(), june);
        assert!(matches!(store.target(other, june.id).await, Err(StoreError::NotFound { .. })));
        let conflict = |r: Result<Target, StoreError>| matches!(r, Err(StoreError::Conflict { what: "target" }));
        assert!(conflict(store.create_target(tenant, &month_target(admin, "2025-06-30", false)).await));
        assert!(conflict(store.create_target(tenant, &month_target(admin, "2025-02-01", true)).await));
        store.create_target(tenant, &month_target(admin, "2025-07-01", false)).await.unwrap();
        store.create_target(tenant, &month_target(admin, "2025-08-01", true)).await.unwrap();
        assert!(conflict(store.create_target(tenant, &month_target(admin, "2030-01-01", false)).await));
        // Another period kind is another target.
        let week = NewTarget { period: PeriodKind::Week, ..month_target(admin, "2025-06-10", false) };
        store.create_target(tenant, &week).await.unwrap();
        // Another tenant's user is unknown.
        let err = store.create_target(tenant, &month_target(other_admin, "2025-06-10", false)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { what: "user" }), "{err:?}");
        // Custom ranges overlap by their instants, and keep their end, week start and tiers.
        let tiers = [Tier { goal: 8, label: Some("Gold".into()) }, Tier { goal: 10, label: None }];
        let range = |from: &str, to: &str| {
            let (first, last): (Date, Date) = (from.parse().unwrap(), to.parse().unwrap());
            let p = crate::engine::Period::custom(first, last, &jiff::tz::TimeZone::UTC).unwrap();
            NewTarget {
                period: PeriodKind::Custom,
                starts_on: first,
                first_start_ms: p.start_ms,
                first_end_ms: p.end_ms,
                ends_on: Some(last),
                week_start: Weekday::Sunday,
                tiers: &tiers,
                ..month_target(admin, from, false)
            }
        };
        let custom = store.create_target(tenant, &range("2025-06-05", "2025-06-20")).await.unwrap();
        assert_eq!(store.target(tenant, custom.id).await.unwrap(), custom);
        assert_eq!((custom.tiers.len(), custom.week_start), (2, Weekday::Sunday));
        assert!(conflict(store.create_target(tenant, &range("2025-06-20", "2025-06-25")).await));
        store.create_target(tenant, &range("2025-06-21", "2025-06-25")).await.unwrap();
        let mine = store.targets_of(tenant, Assignee::User(admin), "deals_won", PeriodKind::Custom).await.unwrap();
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[0], custom);
        store.update_target(tenant, custom.id, 6, &[]).await.unwrap();
        let edited = store.target(tenant, custom.id).await.unwrap();
        assert_eq!((edited.goal, edited.tiers.len()), (6, 0));
    }
}
