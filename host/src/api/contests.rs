//! Contests: creating them and reading their leaderboards.
//!
//! A contest ranks its participants (users, or teams as the sum of their members) by one
//! metric over the instants `[starts_at, ends_at)`. The ranking rules, tie-break included,
//! are [`crate::engine::ranking`]'s: standard competition ranks, and on equal values the
//! participant who reached the value earlier (their last counting fact in the window is
//! older) ranks higher. Every participant is listed, zeros included.
//!
//! Formats ([`Format`]): `leaderboard`, `race` (first to reach `goal` wins),
//! `head_to_head` (exactly two users or teams), `team_vs_team` (two or more teams) and
//! `percent_of_target` (a leaderboard ranked by percent of each participant's own target).
//!
//! # Ranked by percent of own target
//! A `percent_of_target` contest ranks users or teams by their value over the window divided
//! by their own goal, with the rules of [`crate::engine::ranking::rank_by_percent`]; each
//! entry also carries `goal` and `percent`. The goal ([`crate::scoring::goals::GoalBook`]):
//!
//! * **which target**: the participant's targets of the contest's metric whose period (a
//!   recurring target's period then) contains the contest's first local day (`starts_at`
//!   in the tenant's zone); of several (another period kind), the one whose period
//!   overlaps the contest's window the most, then the shorter period
//!   ([`crate::engine::closest_period`]): a month's target for a month's contest;
//! * **which goal**: the effective goal of that period as `GET /v1/targets/{id}/progress`
//!   shows it (pro-rated by working days for a user who joined during it);
//! * **a team**: its own target, or failing that the sum of its current members' goals,
//!   each picked as above (the `goal_source` rule of `GET /v1/teams/{id}/progress`);
//! * **no target** (or nothing owed: joined after the period): `goal` and `percent` are
//!   `null` and the participant ranks after everyone with a goal, by value.
//!
//! Goals are read at each read while the contest runs (a target edited meanwhile counts)
//! and frozen with the result at the end. Creating one needs at least one participant
//! (or, for teams, a member) with such a target (422 `no_targets`), so a contest over a
//! metric without targets is refused rather than ranked on nothing.
//!
//! # Where a standing comes from, and its freeze
//! From the stored totals, never from the facts at read time, and frozen at the end by the
//! scheduler's freezing tick (or a read that comes first): see
//! [`crate::scoring::standings`]. Every later read serves the frozen standing, with `flags`
//! for the participants whose value changed since. This module parses, calls
//! [`crate::scoring`] and renders.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::{Unit, goal_figure};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::shared::{instant, parse_instant, tenant_zone};
use super::targets::parse_goal;
use super::tenants::{audit, check_name, parse_id};
use crate::scoring::standings::Format;
use crate::store::engine::{ContestSummary, Visible};
use crate::store::types::now_ms;
use crate::store::{Actor, Contest, ContestId, NewContest, Participants, Principal, StoreError, TeamId, UserId};

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
    /// `leaderboard` (the default: ranked by value), `race`, `head_to_head`,
    /// `team_vs_team` or `percent_of_target` (ranked by percent of each participant's own
    /// target of the metric: the one whose period contains the contest's first local day,
    /// closest to the contest's window; needs at least one participant with one).
    #[serde(default = "default_format")]
    format: String,
    /// A race's goal (races only, and required there): above zero, in the metric's unit (a
    /// whole count, or a decimal string of the tenant currency such as `"2500.00"`).
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Option<Value>,
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
    Format::ALL[0].as_str().to_owned()
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
    /// A race's goal, in the metric's unit; `null` for other formats.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Value,
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
    /// A race's goal, in the metric's unit; `null` for other formats.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Value,
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
///
/// `percent_of_target` ranks by value ÷ each participant's own goal (exact ratios, best
/// first; ties by who reached their value earlier), and each leaderboard entry adds `goal`
/// and `percent`. The goal: the participant's target of the metric whose period contains
/// the contest's first local day (of several, the period overlapping the window most, then
/// the shorter), at its effective (pro-rated) goal as its progress shows it; a team's own
/// target, else the sum of its members' goals. Participants without one rank after the
/// rest with `goal` and `percent` `null`. At least one must have one (`no_targets`).
#[utoipa::path(post, path = "/v1/contests", tag = "contests", operation_id = "create_contest",
    request_body = NewContestBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Malformed body, instant, id, or an id listed twice.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "Unknown metric, or a participant not in this tenant.", body = ErrorBody),
        (status = 422, description = "Empty window (`empty_window`), no participants (`no_participants`), too many, a format not supported (`format_not_supported`), a race without a goal (`goal_required`) or a goal not above zero (`goal_not_positive`), a goal outside a race (`goal_not_allowed`), other than two participants in a head to head (`wrong_participant_count`), users in a team vs team (`teams_required`), a `percent_of_target` contest where no participant (nor any member of a participating team) has a target of the metric whose period contains the contest's first day (`no_targets`).", body = ErrorBody),
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
    let metric = state.scoring.resolve(p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    let format = Format::parse(&body.format).ok_or_else(|| {
        ApiError::unprocessable(
            "format_not_supported",
            format!("this contest format is not supported yet; supported: {}", Format::names()),
        )
    })?;
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
    let goal = check_format(&state, &p, format, &body, &participants, metric.unit, (starts_at, ends_at)).await?;
    let contest = state
        .store
        .create_contest(
            p.tenant_id,
            &NewContest {
                name: &name,
                metric: &body.metric,
                format: &body.format,
                goal,
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

/// The rules of each format for its participants and goal; the race's goal on success.
async fn check_format(
    state: &AppState,
    p: &Principal,
    format: Format,
    body: &NewContestBody,
    participants: &Participants,
    unit: Unit,
    window: (i64, i64),
) -> Result<Option<i64>, ApiError> {
    let goal = match (format, &body.goal) {
        (Format::Race, None) => {
            return Err(ApiError::unprocessable("goal_required", "a race needs a `goal` above zero"));
        }
        (Format::Race, Some(goal)) => {
            let currency = state.store.tenant(p.tenant_id).await?.currency;
            Some(parse_goal(goal, unit, currency.as_str())?)
        }
        (_, Some(_)) => {
            return Err(ApiError::unprocessable("goal_not_allowed", "only a race has a `goal`"));
        }
        (_, None) => None,
    };
    match (format, participants) {
        (Format::HeadToHead, _) if participants.len() != 2 => Err(ApiError::unprocessable(
            "wrong_participant_count",
            "a head to head has exactly two participants (users or teams)",
        )),
        (Format::TeamVsTeam, Participants::Users(_)) => {
            Err(ApiError::unprocessable("teams_required", "the participants of a team vs team are teams"))
        }
        (Format::TeamVsTeam, _) if participants.len() < 2 => {
            Err(ApiError::unprocessable("wrong_participant_count", "a team vs team needs at least two teams"))
        }
        (Format::PercentOfTarget, _) => {
            state.scoring.check_percent_targets(p.tenant_id, &body.metric, participants, window).await?;
            Ok(goal)
        }
        _ => Ok(goal),
    }
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

/// A contest's definition in the tenant's offset, its goal in its metric's unit.
async fn view(state: &AppState, p: &Principal, contest: &Contest) -> Result<ContestView, ApiError> {
    let (tenant, tz) = tenant_zone(state, p).await?;
    let unit = state.scoring.unit_of(p.tenant_id, &contest.metric).await?;
    Ok(contest_view(contest, &tz, unit, tenant.currency.as_str()))
}

fn contest_view(contest: &Contest, tz: &TimeZone, unit: Option<Unit>, currency: &str) -> ContestView {
    ContestView {
        id: contest.id.as_uuid(),
        name: contest.name.clone(),
        metric: contest.metric.clone(),
        format: contest.format.clone(),
        goal: goal_figure(contest.goal, unit, currency),
        starts_at: instant(contest.starts_at_ms, tz),
        ends_at: instant(contest.ends_at_ms, tz),
        participants: participants_view(&contest.participants),
        status: status_of(contest.starts_at_ms, contest.ends_at_ms, contest.frozen_at_ms.is_some(), now_ms()),
        created_at: instant(contest.created_at_ms, tz),
        frozen_at: contest.frozen_at_ms.map(|at| instant(at, tz)),
    }
}

fn list_item(c: ContestSummary, tz: &TimeZone, now: i64, unit: Option<Unit>, currency: &str) -> ContestListItem {
    ContestListItem {
        id: c.id.as_uuid(),
        goal: goal_figure(c.goal, unit, currency),
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
    let visible = Visible::to(&p);
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let rows = state.store.contests(p.tenant_id, visible, after, limit + 1).await?;
    let (rows, next_cursor) = finish(rows, limit, |c| (c.created_at_ms, c.id.as_uuid()));
    let now = now_ms();
    // A race's goal is shown in its metric's unit: each metric of the page resolved once.
    let mut units: HashMap<String, Option<Unit>> = HashMap::new();
    let mut contests = Vec::with_capacity(rows.len());
    for c in rows {
        let unit = match (c.goal, units.get(&c.metric)) {
            (None, _) => None,
            (Some(_), Some(unit)) => *unit,
            (Some(_), None) => {
                let unit = state.scoring.unit_of(p.tenant_id, &c.metric).await?;
                units.insert(c.metric.clone(), unit);
                unit
            }
        };
        contests.push(list_item(c, &tz, now, unit, tenant.currency.as_str()));
    }
    Ok(axum::Json(ContestList { contests, next_cursor }))
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
    state.scoring.may_see(&p, &contest.participants).await?;
    Ok(axum::Json(view(&state, &p, &contest).await?))
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
    super::shared::settled(state.scoring.settle_contest(p.tenant_id, id).await);
    Ok(axum::Json(view(&state, &p, &state.store.contest(p.tenant_id, id).await?).await?))
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
