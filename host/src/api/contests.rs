//! Contests: creating them and reading their leaderboards.
//!
//! A contest ranks its participants (users, or teams as the sum of their members) by one
//! metric over the instants `[starts_at, ends_at)`. The ranking rules, tie-break included,
//! are [`crate::engine::ranking`]'s: standard competition ranks, and on equal values the
//! participant who reached the value earlier (their last counting fact in the window is
//! older) ranks higher. Every participant is listed, zeros included.
//!
//! Formats: `leaderboard`, `race` (first to reach `goal` wins), `head_to_head` (exactly two
//! users or teams), `team_vs_team` (two or more teams) and `percent_of_target` (a
//! leaderboard ranked by percent of each participant's own target); see [`FORMATS`].
//!
//! # Ranked by percent of own target
//! A `percent_of_target` contest ranks users or teams by their value over the window (as
//! every format counts it) divided by their own goal, with the rules of
//! [`crate::engine::ranking::rank_by_percent`]; each entry also carries `goal` and
//! `percent`. The goal ([`super::targets::GoalBook`]):
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
//! # Where a standing comes from
//! Never from the facts at read time: the store keeps every contest's running totals per CRM
//! owner, updated inside each ingestion commit and rebuilt by the few writes that change
//! what a contest counts ([`crate::store::standings`]). A read joins them with the owner
//! mappings (and teams) and ranks ([`compute_entries`]): a few thousand rows for 10 000
//! participants, whatever the number of facts. A race also needs when each participant
//! first reached the goal; that is read from the facts only for participants who can have
//! reached it, and cached by the contest's standing version ([`race_finishes`]).
//!
//! # Frozen at the end
//! When a contest's end passes, its final standing is stored (frozen) from the totals as
//! they are then: by the freezing tick every node runs ([`start_freezing`], every
//! [`FREEZE_TICK`]), or by a read (leaderboard, live stream, points) that comes first. Every
//! later read serves that stored standing, whatever the CRM says afterwards. A change after
//! the freeze is not hidden: each read of a final contest ranks the current totals too and
//! lists in `flags` the participants whose value differs from the frozen one
//! (`changed_after_freeze`) — a retraction, an edit or a late sync, since the totals keep
//! following the facts after the freeze.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, DisplayOrUser, User};
use super::metrics::{Resolved, Unit, resolve, resolve_stored};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::targets::{GoalBook, parse_goal};
use super::tenants::{audit, check_name, parse_id};
use crate::engine::{Contender, DatedValue, first_reaching, rank, rank_by_percent, rank_race};
use crate::store::engine::{ContestSummary, Visible};
use crate::store::standings::StoredStanding;
use crate::store::types::now_ms;
use crate::store::{
    Actor, Assignee, Contest, ContestId, DatedFact, NewContest, Participants, Principal, Role, StoreError, TeamId,
    Tenant, TenantId, UserId,
};

/// The formats this version runs:
///
/// * `leaderboard`: users or teams ranked by value;
/// * `race`: first to reach `goal` wins; ranked by when each reached it, then by value;
/// * `head_to_head`: exactly two participants (users or teams), ranked by value;
/// * `team_vs_team`: two or more teams, each the sum of its members, ranked by value;
/// * `percent_of_target`: users or teams ranked by value as a percent of their own goal
///   (see the module docs for which target and goal).
const FORMATS: [&str; 5] = ["leaderboard", "race", "head_to_head", "team_vs_team", PERCENT_OF_TARGET];

/// The format ranked by percent of each participant's own target.
const PERCENT_OF_TARGET: &str = "percent_of_target";

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
    /// Races only: when the participant reached the goal, `null` while they have not.
    reached_goal_at: Option<String>,
    /// `percent_of_target` only: the participant's own goal (the effective goal of their
    /// target's period, a team's own or its members' sum), in the metric's unit; `null`
    /// without one.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Option<Value>,
    /// `percent_of_target` only: `value` as a percent of `goal`, two decimals (ranks compare
    /// the exact ratios); `null` without a goal.
    #[schema(example = 62.5)]
    percent: Option<f64>,
}

/// A participant whose value changed after the result was frozen.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardFlag {
    /// In a users contest.
    user_id: Option<uuid::Uuid>,
    /// In a teams contest.
    team_id: Option<uuid::Uuid>,
    /// The value in the frozen standing.
    #[schema(value_type = super::openapi::FigureSchema)]
    frozen_value: Value,
    /// The value computed from the facts now.
    #[schema(value_type = super::openapi::FigureSchema)]
    current_value: Value,
    /// `changed_after_freeze`.
    reason: String,
}

/// The contest a leaderboard belongs to.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardContest {
    id: uuid::Uuid,
    name: String,
    metric: String,
    format: String,
    /// A race's goal; `null` for other formats.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Value,
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
    /// When the final standing was frozen (at the end, by the freezing tick or an earlier read).
    frozen_at: Option<String>,
    /// `count`, `money` or `score`.
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: String,
    /// The tenant currency.
    currency: String,
    /// The winner's user or team id: in a race, the participant ranked first once they
    /// reached the goal; otherwise the participant ranked first once the result is final.
    /// `null` while undecided or when several share first place.
    winner: Option<uuid::Uuid>,
    /// Every participant, zeros included, best first.
    entries: Vec<LeaderboardEntry>,
    /// Once final: participants whose value computed now differs from the frozen one (a fact
    /// retracted, changed or synced after the freeze). The frozen standing does not change.
    flags: Vec<LeaderboardFlag>,
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
    let metric = resolve(&state, p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
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
    let goal = check_format(&state, &p, &body, &participants, metric.unit, (starts_at, ends_at)).await?;
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
    body: &NewContestBody,
    participants: &Participants,
    unit: Unit,
    window: (i64, i64),
) -> Result<Option<i64>, ApiError> {
    let goal = match (body.format.as_str(), &body.goal) {
        ("race", None) => {
            return Err(ApiError::unprocessable("goal_required", "a race needs a `goal` above zero"));
        }
        ("race", Some(goal)) => {
            let currency = state.store.tenant(p.tenant_id).await?.currency;
            Some(parse_goal(goal, unit, currency.as_str())?)
        }
        (_, Some(_)) => {
            return Err(ApiError::unprocessable("goal_not_allowed", "only a race has a `goal`"));
        }
        (_, None) => None,
    };
    match (body.format.as_str(), participants) {
        ("head_to_head", _) if participants.len() != 2 => Err(ApiError::unprocessable(
            "wrong_participant_count",
            "a head to head has exactly two participants (users or teams)",
        )),
        ("team_vs_team", Participants::Users(_)) => {
            Err(ApiError::unprocessable("teams_required", "the participants of a team vs team are teams"))
        }
        ("team_vs_team", _) if participants.len() < 2 => {
            Err(ApiError::unprocessable("wrong_participant_count", "a team vs team needs at least two teams"))
        }
        (PERCENT_OF_TARGET, _) => {
            check_targets(state, p, &body.metric, participants, window).await?;
            Ok(goal)
        }
        _ => Ok(goal),
    }
}

/// A `percent_of_target` contest needs someone to measure: at least one participant (or a
/// member of a participating team) with a goal by the rule the standing uses (422
/// `no_targets`). An unknown participant answers 404 first, as for every format.
async fn check_targets(
    state: &AppState,
    p: &Principal,
    metric: &str,
    participants: &Participants,
    window: (i64, i64),
) -> Result<(), ApiError> {
    let (_, tz) = tenant_zone(state, p).await?;
    let book = GoalBook::load(state, p.tenant_id, metric, window, &tz).await?;
    match participants {
        Participants::Users(users) => {
            for &user in users {
                if book.own_goal(Assignee::User(user), &tz)?.is_some() {
                    return Ok(());
                }
            }
            for &user in users {
                state.store.user(p.tenant_id, user).await?;
            }
        }
        Participants::Teams(teams) => {
            for &team in teams {
                if !state.store.team_exists(p.tenant_id, team).await? {
                    return Err(ApiError::NotFound("team"));
                }
                let members = state.store.team_members(p.tenant_id, team).await?;
                if book.team_goal(team, &members, &tz)?.is_some() {
                    return Ok(());
                }
            }
        }
    }
    Err(ApiError::unprocessable(
        "no_targets",
        "no participant has a target of this metric whose period contains the contest's first day; \
         set targets first, or choose another format",
    ))
}

/// Managers and admins see every contest; a member only those they take part in (as a
/// user, or as a member of a participating team).
async fn may_see(state: &AppState, p: &Principal, contest: &Contest) -> Result<(), ApiError> {
    may_see_participants(state, p, &contest.participants).await
}

/// Who may see a contest with these participants: managers and admins, and the members
/// taking part (in person or through a team). Shared with the live stream.
pub(crate) async fn may_see_participants(
    state: &AppState,
    p: &Principal,
    participants: &Participants,
) -> Result<(), ApiError> {
    let allowed = match (p.role, participants) {
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

/// A contest's standing now, as the answer's `entries`, best first: from its stored totals
/// ([`crate::store::standings`]), summed per user over their CRM owners (and per team over
/// its members), never from the facts. A user's reaching instant is the latest of their
/// owners'; a team's the latest of its members'.
async fn compute_entries(
    state: &AppState,
    tenant: TenantId,
    contest: &Contest,
    metric: &Resolved,
    currency: &str,
    tz: &TimeZone,
) -> Result<Vec<Value>, ApiError> {
    let stored = state.store.stored_standing(tenant, contest.id).await?;
    let mut by_user: HashMap<UserId, (i128, Option<i64>)> = HashMap::new();
    for owner in &stored.owners {
        let entry = by_user.entry(owner.user_id).or_insert((0, None));
        entry.0 += owner.value;
        entry.1 = entry.1.max(owner.reached_at_ms);
    }
    // Every participant with the users whose totals are theirs.
    let (key, participants): (&str, Vec<(String, Vec<UserId>)>) = match &contest.participants {
        Participants::Users(users) => ("user_id", users.iter().map(|u| (u.to_string(), vec![*u])).collect()),
        Participants::Teams(teams) => {
            let mut members: HashMap<TeamId, Vec<UserId>> = HashMap::new();
            for (team, user) in &stored.members {
                members.entry(*team).or_default().push(*user);
            }
            ("team_id", teams.iter().map(|t| (t.to_string(), members.remove(t).unwrap_or_default())).collect())
        }
    };
    let contender = |key: &String, users: &[UserId]| {
        let (value, reached_at_ms) =
            users.iter().filter_map(|u| by_user.get(u)).fold((0_i128, None), |(v, r), (uv, ur)| (v + uv, r.max(*ur)));
        Contender { key: key.clone(), value, reached_at_ms }
    };
    let figure = |v: i128| metric.unit.figure(v, currency);
    Ok(match (contest.format.as_str(), contest.goal) {
        ("race", Some(goal)) => {
            let goal = i128::from(goal);
            let contenders: Vec<Contender<String>> =
                participants.iter().map(|(k, users)| contender(k, users)).collect();
            let finishes =
                race_finishes(state, tenant, contest, metric, &stored, &participants, &contenders, goal).await?;
            let contenders = contenders
                .into_iter()
                .map(|c| {
                    let finished = finishes.get(&c.key).copied().flatten();
                    (c, finished)
                })
                .collect();
            rank_race(contenders)
                .into_iter()
                .map(|r| {
                    json!({"rank": r.standing.rank, key: r.standing.key, "value": figure(r.standing.value),
                        "reached_goal_at": r.finished_at_ms.map(|at| instant(at, tz))})
                })
                .collect()
        }
        (PERCENT_OF_TARGET, _) => {
            let window = (contest.starts_at_ms, contest.ends_at_ms);
            let book = GoalBook::load(state, tenant, &contest.metric, window, tz).await?;
            let mut contenders = Vec::with_capacity(participants.len());
            for (k, users) in &participants {
                let goal = match &contest.participants {
                    Participants::Users(_) => match users.as_slice() {
                        [user] => book.own_goal(Assignee::User(*user), tz)?,
                        _ => None,
                    },
                    Participants::Teams(_) => match k.parse::<TeamId>() {
                        Ok(team) => book.team_goal(team, users, tz)?,
                        Err(_) => None,
                    },
                };
                contenders.push((contender(k, users), goal));
            }
            rank_by_percent(contenders)
                .into_iter()
                .map(|s| {
                    let percent = s.percent_hundredths().map(|h| h as f64 / 100.0);
                    json!({"rank": s.standing.rank, key: s.standing.key, "value": figure(s.standing.value),
                        "goal": s.goal.map(figure), "percent": percent})
                })
                .collect()
        }
        _ => rank(participants.iter().map(|(k, users)| contender(k, users)).collect())
            .into_iter()
            .map(|s| json!({"rank": s.rank, key: s.key, "value": figure(s.value)}))
            .collect(),
    })
}

/// The instants at which a race's participants first reached the goal, cached per contest.
struct RaceCache {
    /// The contest's standing version and who the candidates were (with their CRM owners).
    signature: u64,
    /// Participant key → instant (`None`: not reached).
    finishes: HashMap<String, Option<i64>>,
}

static RACE_CACHE: LazyLock<Mutex<HashMap<ContestId, RaceCache>>> = LazyLock::new(Default::default);

/// When each participant of a race first reached its goal.
///
/// The totals tell who can have reached it: with a metric that only grows (counts, and
/// composites of positive weights), exactly those at or above the goal now; otherwise (money
/// may be negative) anyone whose total ever changed. Only when there is such a candidate are
/// the facts read ([`Resolved::dated`] over the window), and the result is cached by the
/// contest's standing version and the candidates' CRM owners, so a read between two commits
/// that change the race reads no fact. The instants come from the facts because a total
/// does not say when it crossed the goal (a fact synced late may lie before the others).
#[allow(clippy::too_many_arguments)]
async fn race_finishes(
    state: &AppState,
    tenant: TenantId,
    contest: &Contest,
    metric: &Resolved,
    stored: &StoredStanding,
    participants: &[(String, Vec<UserId>)],
    contenders: &[Contender<String>],
    goal: i128,
) -> Result<HashMap<String, Option<i64>>, ApiError> {
    let monotone = match metric.unit {
        Unit::Count => true,
        Unit::Score => metric.terms.iter().all(|t| t.weight_micros > 0),
        Unit::Money => false,
    };
    let candidates: Vec<&(String, Vec<UserId>)> = participants
        .iter()
        .zip(contenders)
        .filter(|(_, c)| if monotone { c.value >= goal } else { c.reached_at_ms.is_some() })
        .map(|(p, _)| p)
        .collect();
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let signature = {
        let mut owners: HashMap<UserId, Vec<(&str, [u8; 16])>> = HashMap::new();
        for o in &stored.owners {
            owners.entry(o.user_id).or_default().push((o.connector_id.as_str(), o.owner));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stored.version.hash(&mut hasher);
        for (key, users) in &candidates {
            key.hash(&mut hasher);
            for user in users {
                let mut mine = owners.get(user).cloned().unwrap_or_default();
                mine.sort_unstable();
                (user, mine).hash(&mut hasher);
            }
        }
        hasher.finish()
    };
    if let Some(cached) = RACE_CACHE.lock().unwrap_or_else(PoisonError::into_inner).get(&contest.id)
        && cached.signature == signature
    {
        return Ok(cached.finishes.clone());
    }
    let facts = metric.dated(state, tenant, contest.starts_at_ms, contest.ends_at_ms).await?;
    let mut by_user: HashMap<UserId, Vec<DatedValue>> = HashMap::new();
    for DatedFact { user_id, at_ms, value } in facts {
        by_user.entry(user_id).or_default().push(DatedValue::new(at_ms, value));
    }
    let finishes: HashMap<String, Option<i64>> = candidates
        .iter()
        .map(|(key, users)| {
            let facts: Vec<DatedValue> = users.iter().filter_map(|u| by_user.get(u)).flatten().copied().collect();
            (key.clone(), first_reaching(&facts, goal))
        })
        .collect();
    RACE_CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(contest.id, RaceCache { signature, finishes: finishes.clone() });
    Ok(finishes)
}

/// The winner shown with a standing: in a race, the one participant ranked first who
/// reached the goal (as soon as they did); in the other formats, the one participant
/// ranked first once the result is final. `None` while undecided or when several share
/// first place.
fn winner_of(format: &str, entries: &[Value], key: &str, is_final: bool) -> Option<Value> {
    let first: Vec<&Value> = entries.iter().filter(|e| e["rank"] == 1).collect();
    let [only] = first.as_slice() else { return None };
    let decided = if format == "race" { !only["reached_goal_at"].is_null() } else { is_final };
    decided.then(|| only[key].clone())
}

/// The participants whose value now differs from their frozen value: a fact of theirs was
/// retracted, changed or arrived late after the freeze. The frozen standing is not changed;
/// these are shown beside it.
fn flags_of(frozen: &[Value], current: &[Value], key: &str) -> Vec<Value> {
    let now: HashMap<&Value, &Value> = current.iter().map(|e| (&e[key], &e["value"])).collect();
    frozen
        .iter()
        .filter_map(|e| {
            let current = now.get(&e[key]).copied().unwrap_or(&Value::Null);
            (current != &e["value"]).then(|| {
                json!({key: e[key], "frozen_value": e["value"], "current_value": current,
                    "reason": "changed_after_freeze"})
            })
        })
        .collect()
}

/// How often each node looks for contests whose end has passed, to freeze their results.
pub const FREEZE_TICK: Duration = Duration::from_secs(1);

/// The most contests one tick freezes (the rest wait for the next tick).
const FREEZE_BATCH: u32 = 100;

/// Starts this node's freezing tick: every [`FREEZE_TICK`], every contest (of any tenant)
/// past its end and not frozen yet gets its final standing stored, from its stored totals,
/// without waiting for anyone to read it (and its contest incentives are awarded). Several
/// nodes may tick at once: the freeze is a conditional update (`frozen IS NULL`), so the
/// first writer's standing is the one every reader sees. Ends when the node stops claiming
/// work (shutdown). Call inside the tokio runtime.
pub fn start_freezing(state: &AppState) {
    let state = state.clone();
    let mut stopping = state.scheduler.stopping();
    tokio::spawn(async move {
        loop {
            if *stopping.borrow() {
                return;
            }
            match state.store.contests_to_freeze(now_ms(), FREEZE_BATCH).await {
                Ok(due) => {
                    for (tenant, contest) in due {
                        if let Err(e) = standing(&state, tenant, contest).await {
                            // Retried at every tick (a contest whose metric is gone stays
                            // unfrozen until a read reports why).
                            tracing::debug!(%tenant, %contest, error = %e, "could not freeze a contest's result");
                        }
                    }
                }
                Err(e) => tracing::warn!(code = e.code(), "could not look for contests to freeze"),
            }
            tokio::select! {
                _ = tokio::time::sleep(FREEZE_TICK) => {}
                _ = stopping.changed() => {}
            }
        }
    });
}

/// A contest's current standing: what `GET /v1/contests/{id}/leaderboard` answers, for a
/// contest of `tenant` (no check of who asks: callers check that). Freezes the result at
/// its end if the freezing tick has not yet. Used by the leaderboard route, the live stream
/// and the freezing tick.
pub(crate) async fn standing(state: &AppState, tenant: TenantId, contest: ContestId) -> Result<Value, ApiError> {
    let contest = state.store.contest(tenant, contest).await?;
    leaderboard_body(state, tenant, &contest).await
}

/// [`standing`] of a contest already read: what the node's leaderboard cache computes on a
/// miss ([`super::leaderboard_cache`]).
pub(super) async fn standing_of(state: &AppState, tenant: TenantId, contest: &Contest) -> Result<Value, ApiError> {
    leaderboard_body(state, tenant, contest).await
}

/// The leaderboard answer of a stored contest (see [`standing`]).
///
/// While the contest runs, the standing is ranked from the stored totals at every read. At
/// or after its end, the final standing is the frozen one (stored now if the freezing tick
/// has not stored it yet), served unchanged, together with `flags`: the participants whose
/// value in the current totals differs from the frozen one.
async fn leaderboard_body(state: &AppState, tenant_id: TenantId, contest: &Contest) -> Result<Value, ApiError> {
    let tenant = state.store.tenant(tenant_id).await?;
    let tz = TimeZone::get(&tenant.timezone).map_err(|e| ApiError::Internal(anyhow::anyhow!("tenant zone: {e}")))?;
    let currency = tenant.currency.as_str();
    let now = now_ms();
    let key = match contest.participants {
        Participants::Users(_) => "user_id",
        Participants::Teams(_) => "team_id",
    };
    let metric = resolve(state, tenant_id, &contest.metric).await?;
    let (entries, frozen_at, flags): (Value, Option<i64>, Vec<Value>) = match (&contest.frozen, contest.frozen_at_ms) {
        (Some(frozen), Some(at)) => {
            let frozen = parse_frozen(frozen)?;
            let flags = match &metric {
                Some(metric) => {
                    let current = compute_entries(state, tenant_id, contest, metric, currency, &tz).await?;
                    flags_of(frozen.as_array().map_or(&[][..], Vec::as_slice), &current, key)
                }
                // The metric is gone: nothing to compare with.
                None => Vec::new(),
            };
            (frozen, Some(at), flags)
        }
        _ => {
            let metric = resolve_stored(state, tenant_id, &contest.metric).await?;
            let entries = compute_entries(state, tenant_id, contest, &metric, currency, &tz).await?;
            if now >= contest.ends_at_ms {
                let (frozen, at) =
                    state.store.freeze_contest(tenant_id, contest.id, &Value::Array(entries).to_string()).await?;
                (parse_frozen(&frozen)?, Some(at), Vec::new())
            } else {
                (Value::Array(entries), None, Vec::new())
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
    if frozen_at.is_some() {
        super::incentives::award_contest(state, tenant_id, contest, entries.as_array().map_or(&[][..], Vec::as_slice))
            .await?;
    }
    let unit = metric.as_ref().map(|m| m.unit);
    let winner =
        winner_of(&contest.format, entries.as_array().map_or(&[][..], Vec::as_slice), key, frozen_at.is_some());
    Ok(json!({
        "contest": {
            "id": contest.id,
            "name": contest.name,
            "metric": contest.metric,
            "format": contest.format,
            "goal": goal_figure(contest.goal, unit, currency),
            "starts_at": instant(contest.starts_at_ms, &tz),
            "ends_at": instant(contest.ends_at_ms, &tz),
            "participants": contest.participants.kind(),
        },
        "status": status,
        "frozen_at": frozen_at.map(|at| instant(at, &tz)),
        "kind": unit,
        "currency": currency,
        "winner": winner,
        "entries": entries,
        "flags": flags,
    }))
}

/// A race's goal as a figure of the metric's unit (the raw number if the metric is gone).
fn goal_figure(goal: Option<i64>, unit: Option<Unit>, currency: &str) -> Value {
    match (goal, unit) {
        (None, _) => Value::Null,
        (Some(g), Some(unit)) => unit.figure(i128::from(g), currency),
        (Some(g), None) => json!(g),
    }
}

/// A contest's leaderboard (its participants, manager+; `display` tokens too).
///
/// Every participant, zeros included, best first, with standard competition ranks; on equal
/// values the one who reached the value earlier ranks higher. A race ranks first those who
/// reached its goal, the earliest first, then by value. The standing is frozen when the end
/// passes (within about a second, without waiting for a read): later reads serve it
/// unchanged, with `flags` listing participants whose value has changed since (retracted or
/// late facts), never silently changing it. Read from stored totals, never from the facts.
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
    user: DisplayOrUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    // The node's cached answer while none of its inputs changed (see `leaderboard_cache`).
    Ok(super::leaderboard_cache::rendered(&state, p.tenant_id, id, Some(&p)).await?.response())
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

/// A contest's definition in the tenant's offset, its goal in its metric's unit.
async fn view(state: &AppState, p: &Principal, contest: &Contest) -> Result<ContestView, ApiError> {
    let (tenant, tz) = tenant_zone(state, p).await?;
    let unit = resolve(state, p.tenant_id, &contest.metric).await?.map(|m| m.unit);
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
                let unit = resolve(&state, p.tenant_id, &c.metric).await?.map(|m| m.unit);
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
    may_see(&state, &p, &contest).await?;
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
