//! Contests: creating them and reading their leaderboards.
//!
//! A contest ranks its participants (users, or teams as the sum of their members) by one
//! metric over the instants `[starts_at, ends_at)`. The ranking rules, tie-break included,
//! are [`crate::engine::ranking`]'s: standard competition ranks, and on equal values the
//! participant who reached the value earlier (their last counting fact in the window is
//! older) ranks higher. Every participant is listed, zeros included.
//!
//! Results are frozen at the end: the first read after `ends_at` stores the final standing
//! and every later read serves that stored standing, whatever the CRM says afterwards.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::{Resolved, resolve, resolve_stored};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::tenants::{audit, check_name, parse_id};
use crate::engine::{Contender, DatedValue, rank};
use crate::store::engine::{ContestSummary, Visible};
use crate::store::types::now_ms;
use crate::store::{
    Actor, Contest, ContestId, DatedFact, NewContest, Participants, Principal, Role, StoreError, TeamId, Tenant, UserId,
};

/// The formats this version runs.
const FORMATS: [&str; 1] = ["leaderboard"];

/// The most participants one contest may have.
pub(super) const MAX_PARTICIPANTS: usize = 10_000;

/// A new contest.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewContestBody {
    /// Display name, 1 to 200 characters.
    name: String,
    /// The metric it ranks by: a connector's or a composite one.
    metric: String,
    /// `leaderboard` (the default; the only format so far).
    #[serde(default = "default_format")]
    format: String,
    /// The first instant counted, RFC 3339 with an offset.
    #[schema(example = "2025-06-01T00:00:00+01:00")]
    starts_at: String,
    /// The first instant no longer counted (exclusive), RFC 3339 with an offset.
    #[schema(example = "2025-07-01T00:00:00+01:00")]
    ends_at: String,
    /// Users or teams of the tenant, each once (1 to 10 000).
    participants: ParticipantsBody,
}

fn default_format() -> String {
    FORMATS[0].to_owned()
}

/// `{"users":[…]}` or `{"teams":[…]}`.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(super) enum ParticipantsBody {
    /// User ids: each ranked on their own figures.
    Users(Vec<String>),
    /// Team ids: each ranked on the sum of its members' figures.
    Teams(Vec<String>),
}

/// A contest's definition.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ContestView {
    /// Its id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// The metric it ranks by.
    metric: String,
    /// Its format.
    format: String,
    /// The first instant counted (RFC 3339, in the tenant's offset then).
    starts_at: String,
    /// The first instant no longer counted.
    ends_at: String,
    /// Who takes part, in the order given.
    participants: ParticipantsBody,
    /// `scheduled`, `running`, `ended` (past its end, result not frozen yet) or `final`.
    status: &'static str,
    /// When it was created.
    created_at: String,
    /// When its result was frozen, once it is.
    frozen_at: Option<String>,
}

/// A contest as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ContestListItem {
    /// Its id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// The metric it ranks by.
    metric: String,
    /// Its format.
    format: String,
    /// The first instant counted.
    starts_at: String,
    /// The first instant no longer counted.
    ends_at: String,
    /// `users` or `teams`.
    participants: String,
    /// How many participants.
    participant_count: i64,
    /// `scheduled`, `running`, `ended` or `final`.
    status: &'static str,
    /// When it was created.
    created_at: String,
    /// When its result was frozen, once it is.
    frozen_at: Option<String>,
}

/// A page of contests.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ContestList {
    /// Newest first.
    contests: Vec<ContestListItem>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// What to change in a contest; at least one field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ContestPatch {
    /// A new display name.
    name: Option<String>,
    /// A new first instant (RFC 3339).
    starts_at: Option<String>,
    /// A new end (RFC 3339, exclusive).
    ends_at: Option<String>,
}

/// One row of a leaderboard.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardEntry {
    /// Standard competition rank (1, 2, 2, 4); equal values are ordered by who reached the
    /// value earlier.
    rank: u64,
    /// In a users contest.
    user_id: Option<uuid::Uuid>,
    /// In a teams contest.
    team_id: Option<uuid::Uuid>,
    /// The participant's figure.
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Value,
}

/// The contest a leaderboard belongs to.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardContest {
    id: uuid::Uuid,
    name: String,
    metric: String,
    format: String,
    starts_at: String,
    ends_at: String,
    /// `users` or `teams`.
    participants: String,
}

/// A contest's standing.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Leaderboard {
    /// The contest.
    contest: LeaderboardContest,
    /// `scheduled`, `running` or `final`.
    status: String,
    /// When the final standing was frozen (the first read after the end).
    frozen_at: Option<String>,
    /// `count`, `money` or `score`.
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: String,
    /// The tenant currency.
    currency: String,
    /// Every participant, zeros included, best first.
    entries: Vec<LeaderboardEntry>,
}

/// The tenant and its time zone.
pub(super) async fn tenant_zone(state: &AppState, p: &Principal) -> Result<(Tenant, TimeZone), ApiError> {
    let tenant = state.store.tenant(p.tenant_id).await?;
    let tz = TimeZone::get(&tenant.timezone).map_err(|e| ApiError::Internal(anyhow::anyhow!("tenant zone: {e}")))?;
    Ok((tenant, tz))
}

/// An instant as RFC 3339 with the tenant's UTC offset at that instant
/// (`2025-06-01T00:00:00+01:00`).
pub(super) fn instant(ms: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.display_with_offset(tz.to_offset(ts)).to_string(),
        Err(_) => crate::cli::output::rfc3339_ms(ms),
    }
}

/// Parses an RFC 3339 instant into milliseconds since the Unix epoch.
pub(super) fn parse_instant(field: &'static str, text: &str) -> Result<i64, ApiError> {
    let ts: jiff::Timestamp = text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_field",
            format!("`{field}` must be an RFC 3339 instant with an offset, such as 2025-06-01T00:00:00Z"),
        )
    })?;
    Ok(ts.as_millisecond())
}

/// Parses listed ids: each a UUID (400 otherwise), none twice (400).
fn parse_ids<T: std::str::FromStr + Ord + Copy>(what: &str, raw: &[String]) -> Result<Vec<T>, ApiError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for id in raw {
        let id: T = id.parse().map_err(|_| {
            ApiError::bad_request("invalid_field", format!("`participants.{what}` holds something that is not an id"))
        })?;
        if !seen.insert(id) {
            return Err(ApiError::bad_request("invalid_field", format!("`participants.{what}` lists an id twice")));
        }
        out.push(id);
    }
    Ok(out)
}

/// Creates a contest (manager+).
///
/// Ranks its participants by one metric over `[starts_at, ends_at)`.
#[utoipa::path(post, path = "/v1/contests", tag = "contests", operation_id = "create_contest",
    request_body = NewContestBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Malformed body, instant, id, or an id listed twice.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "Unknown metric, or a participant not in this tenant.", body = ErrorBody),
        (status = 422, description = "Empty window (`empty_window`), no participants (`no_participants`), too many, or a format not supported (`format_not_supported`).", body = ErrorBody),
    ))]
pub(super) async fn create_contest(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewContestBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let name = check_name("name", &body.name)?;
    let starts_at = parse_instant("starts_at", &body.starts_at)?;
    let ends_at = parse_instant("ends_at", &body.ends_at)?;
    let participants = match &body.participants {
        ParticipantsBody::Users(ids) => Participants::Users(parse_ids::<UserId>("users", ids)?),
        ParticipantsBody::Teams(ids) => Participants::Teams(parse_ids::<TeamId>("teams", ids)?),
    };
    resolve(&state, p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    if !FORMATS.contains(&body.format.as_str()) {
        return Err(ApiError::unprocessable(
            "format_not_supported",
            format!("this contest format is not supported yet; supported: {}", FORMATS.join(", ")),
        ));
    }
    if ends_at <= starts_at {
        return Err(ApiError::unprocessable(
            "empty_window",
            "`ends_at` must be after `starts_at` (`ends_at` is exclusive)",
        ));
    }
    if participants.is_empty() {
        return Err(ApiError::unprocessable("no_participants", "a contest needs at least one participant"));
    }
    if participants.len() > MAX_PARTICIPANTS {
        return Err(ApiError::unprocessable(
            "too_many_participants",
            format!("a contest has at most {MAX_PARTICIPANTS} participants"),
        ));
    }
    let contest = state
        .store
        .create_contest(
            p.tenant_id,
            &NewContest {
                name: &name,
                metric: &body.metric,
                format: &body.format,
                starts_at_ms: starts_at,
                ends_at_ms: ends_at,
                participants: &participants,
                created_by: p.user_id,
            },
        )
        .await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "contest.created", &contest.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id: contest.id.as_uuid() })))
}

/// Managers and admins see every contest; a member only those they take part in (as a
/// user, or as a member of a participating team).
async fn may_see(state: &AppState, p: &Principal, contest: &Contest) -> Result<(), ApiError> {
    let allowed = match (p.role, &contest.participants) {
        (Role::Admin | Role::Manager, _) => true,
        (Role::Member, Participants::Users(users)) => users.contains(&p.user_id),
        (Role::Member, Participants::Teams(teams)) => {
            state.store.teams_of(p.tenant_id, p.user_id).await?.iter().any(|t| teams.contains(t))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only the contest's participants and managers may see its leaderboard"))
    }
}

/// The standing now, as the answer's `entries`.
async fn standing(
    state: &AppState,
    p: &Principal,
    contest: &Contest,
    metric: &Resolved,
    currency: &str,
) -> Result<Vec<Value>, ApiError> {
    let facts = metric.dated(state, p.tenant_id, contest.starts_at_ms, contest.ends_at_ms).await?;
    let mut by_user: HashMap<UserId, Vec<DatedValue>> = HashMap::new();
    for DatedFact { user_id, at_ms, value } in facts {
        by_user.entry(user_id).or_default().push(DatedValue::new(at_ms, value));
    }
    let (key, contenders): (&str, Vec<Contender<String>>) = match &contest.participants {
        Participants::Users(users) => (
            "user_id",
            users
                .iter()
                .map(|u| Contender::from_facts(u.to_string(), by_user.get(u).map_or(&[][..], Vec::as_slice)))
                .collect(),
        ),
        Participants::Teams(teams) => {
            let mut contenders = Vec::with_capacity(teams.len());
            for team in teams {
                let members = state.store.team_members(p.tenant_id, *team).await?;
                let facts: Vec<DatedValue> = members.iter().filter_map(|m| by_user.get(m)).flatten().copied().collect();
                contenders.push(Contender::from_facts(team.to_string(), &facts));
            }
            ("team_id", contenders)
        }
    };
    Ok(rank(contenders)
        .into_iter()
        .map(|s| json!({"rank": s.rank, key: s.key, "value": metric.unit.figure(s.value, currency)}))
        .collect())
}

/// A contest's leaderboard (its participants, manager+).
///
/// Every participant, zeros included, best first, with standard competition ranks; on equal
/// values the one who reached the value earlier ranks higher. The first read after the end
/// freezes the standing: later reads serve it unchanged.
#[utoipa::path(get, path = "/v1/contests/{id}/leaderboard", tag = "contests", operation_id = "contest_leaderboard",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    responses(
        (status = 200, description = "The standing.", body = Leaderboard),
        (status = 403, description = "A member who does not take part.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
        (status = 422, description = "Its metric is not available any more (`metric_unavailable`).", body = ErrorBody),
    ))]
pub(super) async fn leaderboard(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    may_see(&state, &p, &contest).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let now = now_ms();
    let (entries, frozen_at): (Value, Option<i64>) = match (&contest.frozen, contest.frozen_at_ms) {
        (Some(frozen), Some(at)) => (parse_frozen(frozen)?, Some(at)),
        _ => {
            let metric = resolve_stored(&state, p.tenant_id, &contest.metric).await?;
            let entries = standing(&state, &p, &contest, &metric, currency).await?;
            if now >= contest.ends_at_ms {
                let (frozen, at) =
                    state.store.freeze_contest(p.tenant_id, contest.id, &Value::Array(entries).to_string()).await?;
                (parse_frozen(&frozen)?, Some(at))
            } else {
                (Value::Array(entries), None)
            }
        }
    };
    let status = if frozen_at.is_some() {
        "final"
    } else if now < contest.starts_at_ms {
        "scheduled"
    } else {
        "running"
    };
    let participants = match contest.participants {
        Participants::Users(_) => "users",
        Participants::Teams(_) => "teams",
    };
    Ok(axum::Json(json!({
        "contest": {
            "id": contest.id,
            "name": contest.name,
            "metric": contest.metric,
            "format": contest.format,
            "starts_at": instant(contest.starts_at_ms, &tz),
            "ends_at": instant(contest.ends_at_ms, &tz),
            "participants": participants,
        },
        "status": status,
        "frozen_at": frozen_at.map(|at| instant(at, &tz)),
        "kind": resolve(&state, p.tenant_id, &contest.metric).await?.map(|m| m.unit),
        "currency": currency,
        "entries": entries,
    })))
}

fn parse_frozen(frozen: &str) -> Result<Value, ApiError> {
    serde_json::from_str(frozen).map_err(|e| ApiError::Internal(anyhow::anyhow!("a frozen standing is malformed: {e}")))
}

/// `scheduled`, `running`, `ended` (past the end, not frozen yet) or `final`.
fn status_of(starts_at_ms: i64, ends_at_ms: i64, frozen: bool, now: i64) -> &'static str {
    if frozen {
        "final"
    } else if now < starts_at_ms {
        "scheduled"
    } else if now < ends_at_ms {
        "running"
    } else {
        "ended"
    }
}

fn participants_view(participants: &Participants) -> ParticipantsBody {
    match participants {
        Participants::Users(u) => ParticipantsBody::Users(u.iter().map(ToString::to_string).collect()),
        Participants::Teams(t) => ParticipantsBody::Teams(t.iter().map(ToString::to_string).collect()),
    }
}

fn contest_view(contest: &Contest, tz: &TimeZone) -> ContestView {
    ContestView {
        id: contest.id.as_uuid(),
        name: contest.name.clone(),
        metric: contest.metric.clone(),
        format: contest.format.clone(),
        starts_at: instant(contest.starts_at_ms, tz),
        ends_at: instant(contest.ends_at_ms, tz),
        participants: participants_view(&contest.participants),
        status: status_of(contest.starts_at_ms, contest.ends_at_ms, contest.frozen_at_ms.is_some(), now_ms()),
        created_at: instant(contest.created_at_ms, tz),
        frozen_at: contest.frozen_at_ms.map(|at| instant(at, tz)),
    }
}

fn list_item(c: ContestSummary, tz: &TimeZone, now: i64) -> ContestListItem {
    ContestListItem {
        id: c.id.as_uuid(),
        status: status_of(c.starts_at_ms, c.ends_at_ms, c.frozen_at_ms.is_some(), now),
        starts_at: instant(c.starts_at_ms, tz),
        ends_at: instant(c.ends_at_ms, tz),
        created_at: instant(c.created_at_ms, tz),
        frozen_at: c.frozen_at_ms.map(|at| instant(at, tz)),
        name: c.name,
        metric: c.metric,
        format: c.format,
        participants: c.participants_kind,
        participant_count: c.participant_count,
    }
}

/// Lists contests, newest first (any user; a member sees those they take part in).
#[utoipa::path(get, path = "/v1/contests", tag = "contests", operation_id = "list_contests", params(PageQuery),
    responses(
        (status = 200, description = "A page of contests.", body = ContestList),
        (status = 400, description = "`limit` out of 1..=200, a bad cursor, or an unknown parameter.", body = ErrorBody),
    ))]
pub(super) async fn list_contests(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let (limit, after) = q.parse()?;
    let visible = match p.role {
        Role::Admin | Role::Manager => Visible::All,
        Role::Member => Visible::Concerning(p.user_id),
    };
    let (_, tz) = tenant_zone(&state, &p).await?;
    let rows = state.store.contests(p.tenant_id, visible, after, limit + 1).await?;
    let (rows, next_cursor) = finish(rows, limit, |c| (c.created_at_ms, c.id.as_uuid()));
    let now = now_ms();
    Ok(axum::Json(ContestList { contests: rows.into_iter().map(|c| list_item(c, &tz, now)).collect(), next_cursor }))
}

/// A contest's definition (its participants, manager+).
#[utoipa::path(get, path = "/v1/contests/{id}", tag = "contests", operation_id = "get_contest",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    responses(
        (status = 200, description = "The contest.", body = ContestView),
        (status = 403, description = "A member who does not take part.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn get_contest(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    may_see(&state, &p, &contest).await?;
    let (_, tz) = tenant_zone(&state, &p).await?;
    Ok(axum::Json(contest_view(&contest, &tz)))
}

/// Renames a contest or moves its window (manager+).
///
/// Not once its result is final. The window must stay non-empty.
#[utoipa::path(patch, path = "/v1/contests/{id}", tag = "contests", operation_id = "update_contest",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    request_body = ContestPatch,
    responses(
        (status = 200, description = "The contest now.", body = ContestView),
        (status = 400, description = "Malformed body or instant, or nothing to change.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
        (status = 409, description = "Its result is final (`contest_final`).", body = ErrorBody),
        (status = 422, description = "The window would be empty (`empty_window`).", body = ErrorBody),
    ))]
pub(super) async fn update_contest(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ContestPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let id: ContestId = parse_id("contest", &id)?;
    if body.name.is_none() && body.starts_at.is_none() && body.ends_at.is_none() {
        return Err(ApiError::bad_request("invalid_body", "nothing to change: give `name`, `starts_at` or `ends_at`"));
    }
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let starts_at = body.starts_at.as_deref().map(|t| parse_instant("starts_at", t)).transpose()?;
    let ends_at = body.ends_at.as_deref().map(|t| parse_instant("ends_at", t)).transpose()?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    let starts_at = starts_at.unwrap_or(contest.starts_at_ms);
    let ends_at = ends_at.unwrap_or(contest.ends_at_ms);
    if ends_at <= starts_at {
        return Err(ApiError::unprocessable(
            "empty_window",
            "`ends_at` must be after `starts_at` (`ends_at` is exclusive)",
        ));
    }
    let name = name.unwrap_or_else(|| contest.name.clone());
    state.store.update_contest(p.tenant_id, id, &name, starts_at, ends_at).await.map_err(|e| match e {
        StoreError::Conflict { .. } => {
            ApiError::conflict("contest_final", "the contest's result is final; it cannot change any more")
        }
        other => other.into(),
    })?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "contest.updated", &id.to_string()).await?;
    let (_, tz) = tenant_zone(&state, &p).await?;
    Ok(axum::Json(contest_view(&state.store.contest(p.tenant_id, id).await?, &tz)))
}

/// Deletes a contest with its standing (manager+).
#[utoipa::path(delete, path = "/v1/contests/{id}", tag = "contests", operation_id = "delete_contest",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn delete_contest(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_manager()?;
    let id: ContestId = parse_id("contest", &id)?;
    state.store.delete_contest(p.tenant_id, id).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "contest.deleted", &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}
