//! Incentives and the points ledger.
//!
//! An incentive awards `points` (with an optional label the manager types) for achieving a
//! tier of a target (`tier_percent` of its goal, 100 by default) or for a final contest
//! placement (rank ≤ `places`, optionally with at least `min_value`, a value in the
//! metric's unit, also for a contest ranked by percent of own target).
//!
//! A target's tier is measured against the goal its progress shows for that period (the
//! effective goal: pro-rated by working days for a user who joined during the period,
//! [`super::targets::effective_goal`]), not the goal as set; a period whose effective goal
//! is zero (the user joined after it ended) earns nothing.
//!
//! # When points are awarded
//! Lazily and idempotently: [`award_due`] runs on `GET …/points`, the incentives of one
//! target when its progress is read, and those of one contest when its leaderboard is read.
//! No scheduler tick is needed, and a reward is never missed by a read that comes late: the
//! ledger reflects the facts as of the last read. Every award is a ledger row keyed by
//! (incentive, user, period start for a target or 0 for a contest, sequence number) under a
//! unique constraint, so two readers racing write it once.
//!
//! # Retractions
//! * **Targets**: the periods evaluated (a one-off target's period; for a recurring one the
//!   current and the previous period) are re-evaluated at each read. When a retracted fact
//!   takes a period back below the tier, a `revoked` row of minus the points is appended;
//!   reaching it again awards it again.
//! * **Contests**: awarded from the frozen final standing only, and never revoked: a fact
//!   retracted after the freeze does not change the result, it shows as a flag on the
//!   leaderboard (`flags`). Before the freeze nothing is awarded, so nothing needs revoking.
//! * A team's award goes to each of its members at the time of the read.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::contests::{instant, standing, tenant_zone};
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::{Unit, resolve};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::targets::parse_goal;
use super::tenants::{audit, check_name, parse_id};
use crate::store::engine::{Incentive, IncentiveSource, LedgerEntry};
use crate::store::types::now_ms;
use crate::store::{
    Actor, Assignee, Contest, ContestId, Participants, Principal, Role, StoreError, Target, TargetId, TenantId, UserId,
};

/// The largest tier, in percent of the goal.
const MAX_TIER_PERCENT: i64 = 10_000;

/// A new incentive: a target (`target_id`, optional `tier_percent`) or a contest
/// (`contest_id`, optional `places` and `min_value`), never both.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIncentiveBody {
    /// The target whose achievement is rewarded.
    target_id: Option<String>,
    /// With a target: the share of its goal to reach, in percent (1 to 10 000; default 100),
    /// of the effective goal its progress shows for each period (pro-rated for a joiner).
    tier_percent: Option<i64>,
    /// The contest whose placements are rewarded.
    contest_id: Option<String>,
    /// With a contest: the last rewarded rank (default 1, at most the participant count).
    places: Option<i64>,
    /// With a contest: the least value rewarded, above zero, in the metric's unit.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    min_value: Option<Value>,
    /// Points awarded to each rewarded user, above zero.
    points: i64,
    /// A label for the reward (1 to 200 characters), as the manager words it.
    label: Option<String>,
}

/// One row of a points ledger.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct PointsEntry {
    /// Its id.
    id: uuid::Uuid,
    /// Points added (awarded) or taken back (revoked, negative).
    points: i64,
    /// `awarded` or `revoked`.
    reason: String,
    /// The incentive's label.
    label: Option<String>,
    /// The incentive.
    incentive_id: uuid::Uuid,
    /// The rewarded target, for a target award.
    target_id: Option<uuid::Uuid>,
    /// The start of the target's period it is for.
    period_start: Option<String>,
    /// The rewarded contest, for a contest award.
    contest_id: Option<uuid::Uuid>,
    /// When it was written.
    at: String,
}

/// A user's points: balance and a page of history.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Points {
    /// Whose.
    user_id: uuid::Uuid,
    /// The sum of every entry.
    balance: i64,
    /// Newest first.
    entries: Vec<PointsEntry>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

fn invalid(code: &'static str, message: &str) -> ApiError {
    ApiError::unprocessable(code, message.to_owned())
}

/// Creates an incentive (manager+).
#[utoipa::path(post, path = "/v1/incentives", tag = "incentives", operation_id = "create_incentive",
    request_body = NewIncentiveBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Malformed body, or a blank or too long label.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such target or contest in this tenant.", body = ErrorBody),
        (status = 422, description = "Neither or both of `target_id` and `contest_id` (`one_source`), a field of the other source (`field_not_allowed`), points not above zero (`points_not_positive`), a tier out of 1..=10000 (`tier_out_of_range`), places out of 1..=participants (`places_out_of_range`), a minimum not above zero (`goal_not_positive`).", body = ErrorBody),
    ))]
pub(super) async fn create_incentive(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewIncentiveBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let label = body.label.as_deref().map(|l| check_name("label", l)).transpose()?;
    if body.points <= 0 {
        return Err(invalid("points_not_positive", "`points` must be above zero"));
    }
    let source = match (&body.target_id, &body.contest_id) {
        (Some(target), None) => {
            if body.places.is_some() || body.min_value.is_some() {
                return Err(invalid("field_not_allowed", "`places` and `min_value` go with a `contest_id`"));
            }
            let tier = body.tier_percent.unwrap_or(100);
            if !(1..=MAX_TIER_PERCENT).contains(&tier) {
                return Err(invalid("tier_out_of_range", "`tier_percent` must be between 1 and 10000"));
            }
            let target: TargetId = parse_id("target", target)?;
            state.store.target(p.tenant_id, target).await?;
            IncentiveSource::Target { target, tier_percent: tier }
        }
        (None, Some(contest)) => {
            if body.tier_percent.is_some() {
                return Err(invalid("field_not_allowed", "`tier_percent` goes with a `target_id`"));
            }
            let contest: ContestId = parse_id("contest", contest)?;
            let found = state.store.contest(p.tenant_id, contest).await?;
            let places = body.places.unwrap_or(1);
            if places < 1 || places as usize > found.participants.len() {
                return Err(invalid("places_out_of_range", "`places` must be between 1 and the participant count"));
            }
            let min_value = match &body.min_value {
                None => None,
                Some(v) => {
                    let unit =
                        resolve(&state, p.tenant_id, &found.metric).await?.ok_or(ApiError::NotFound("metric"))?;
                    let currency = state.store.tenant(p.tenant_id).await?.currency;
                    Some(parse_goal(v, unit.unit, currency.as_str())?)
                }
            };
            IncentiveSource::Contest { contest, places, min_value }
        }
        _ => return Err(invalid("one_source", "give exactly one of `target_id` and `contest_id`")),
    };
    let incentive =
        state.store.create_incentive(p.tenant_id, source, body.points, label.as_deref(), p.user_id).await.map_err(
            |e| match e {
                StoreError::NotFound { what } => ApiError::NotFound(what),
                other => other.into(),
            },
        )?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "incentive.created", &incentive.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id: incentive.id })))
}

/// An incentive as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct IncentiveView {
    /// Its id.
    id: uuid::Uuid,
    /// The rewarded target, for a target incentive.
    target_id: Option<uuid::Uuid>,
    /// The share of the target's goal to reach, in percent.
    tier_percent: Option<i64>,
    /// The rewarded contest, for a placement incentive.
    contest_id: Option<uuid::Uuid>,
    /// The last rewarded rank.
    places: Option<i64>,
    /// The least value rewarded, in the contest metric's unit.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    min_value: Value,
    /// Points per rewarded user.
    points: i64,
    /// The manager's label.
    label: Option<String>,
    /// When it was created.
    created_at: String,
}

/// A page of incentives.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct IncentiveList {
    /// Newest first.
    incentives: Vec<IncentiveView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// Lists incentives, newest first (manager+).
#[utoipa::path(get, path = "/v1/incentives", tag = "incentives", operation_id = "list_incentives", params(PageQuery),
    responses(
        (status = 200, description = "A page of incentives.", body = IncentiveList),
        (status = 400, description = "`limit` out of 1..=200, a bad cursor, or an unknown parameter.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
    ))]
pub(super) async fn list_incentives(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let (limit, after) = q.parse()?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let rows = state.store.incentives_page(p.tenant_id, after, limit + 1).await?;
    let (rows, next_cursor) = finish(rows, limit, |i| (i.created_at_ms, i.id));
    let mut incentives = Vec::with_capacity(rows.len());
    for i in rows {
        let (target_id, tier_percent, contest_id, places, min_value) = match i.source {
            IncentiveSource::Target { target, tier_percent } => {
                (Some(target.as_uuid()), Some(tier_percent), None, None, Value::Null)
            }
            IncentiveSource::Contest { contest, places, min_value } => {
                let min_value = match min_value {
                    None => Value::Null,
                    Some(min) => {
                        let metric = state.store.contest(p.tenant_id, contest).await?.metric;
                        match resolve(&state, p.tenant_id, &metric).await? {
                            Some(m) => m.unit.figure(i128::from(min), tenant.currency.as_str()),
                            None => serde_json::json!(min),
                        }
                    }
                };
                (None, None, Some(contest.as_uuid()), Some(places), min_value)
            }
        };
        incentives.push(IncentiveView {
            id: i.id,
            target_id,
            tier_percent,
            contest_id,
            places,
            min_value,
            points: i.points,
            label: i.label,
            created_at: instant(i.created_at_ms, &tz),
        });
    }
    Ok(axum::Json(IncentiveList { incentives, next_cursor }))
}

/// Brings one user's award of one incentive for one key in line: awarded when `earned`
/// and not currently held, revoked when held and no longer earned (only if `revocable`).
async fn settle(
    state: &AppState,
    tenant: TenantId,
    incentive: &Incentive,
    user: UserId,
    key: i64,
    earned: bool,
    revocable: bool,
) -> Result<(), ApiError> {
    let (count, net) = state.store.ledger_state(tenant, incentive.id, user, key).await?;
    if earned && net <= 0 {
        state.store.append_ledger(tenant, incentive, user, key, count, incentive.points, "awarded").await?;
    } else if !earned && revocable && net > 0 {
        state.store.append_ledger(tenant, incentive, user, key, count, -net, "revoked").await?;
    }
    Ok(())
}

/// Awards (or revokes) the incentives of one target over its evaluated periods: a one-off
/// target's period; a recurring target's current and previous periods.
pub(super) async fn award_target(state: &AppState, tenant: TenantId, target: &Target) -> Result<(), ApiError> {
    let incentives = state.store.incentives(tenant, None, Some(target.id)).await?;
    if incentives.is_empty() {
        return Ok(());
    }
    let Some(metric) = resolve(state, tenant, &target.metric).await? else { return Ok(()) };
    let tz = zone(state, tenant).await?;
    let internal = |e: crate::engine::PeriodError| ApiError::Internal(e.into());
    let now = now_ms();
    // The target's period now and, for a recurring one, the period before (awarded or
    // revoked late when facts arrive after it ended). Custom ranges and week starts come
    // from the target itself.
    let first = super::targets::first_period(target, &tz).map_err(internal)?;
    let current = super::targets::current_period(target, now, &tz).map_err(internal)?;
    let mut periods = vec![];
    if current.start_ms > first.start_ms {
        periods.push(current.previous(&tz).map_err(internal)?);
    }
    periods.push(current);
    let members: Vec<UserId> = match target.assignee {
        Assignee::User(u) => vec![u],
        Assignee::Team(t) => state.store.team_members(tenant, t).await?,
    };
    let calendar = state.store.calendar(tenant).await?.calendar;
    let joined = state.store.joined_on(tenant).await?;
    for period in periods {
        // The goal progress shows for this period (pro-rated for a joiner); a period owed
        // nothing (joined after it ended) earns nothing.
        let goal = super::targets::effective_goal(target.goal, target.assignee, &period, &calendar, &joined);
        let value: i128 = metric
            .dated(state, tenant, period.start_ms, period.end_ms)
            .await?
            .into_iter()
            .filter(|f| members.contains(&f.user_id))
            .map(|f| f.value)
            .sum();
        for incentive in &incentives {
            let IncentiveSource::Target { tier_percent, .. } = incentive.source else { continue };
            let earned = goal > 0 && value * 100 >= goal * i128::from(tier_percent);
            for &user in &members {
                settle(state, tenant, incentive, user, period.start_ms, earned, true).await?;
            }
        }
    }
    Ok(())
}

/// Awards the placement incentives of a final contest from its frozen `entries`. Never
/// revokes: the frozen result stands (later changes show as leaderboard flags).
pub(super) async fn award_contest(
    state: &AppState,
    tenant: TenantId,
    contest: &Contest,
    entries: &[Value],
) -> Result<(), ApiError> {
    let incentives = state.store.incentives(tenant, Some(contest.id), None).await?;
    if incentives.is_empty() {
        return Ok(());
    }
    let unit: Option<Unit> = resolve(state, tenant, &contest.metric).await?.map(|m| m.unit);
    let currency = state.store.tenant(tenant).await?.currency;
    let key = match contest.participants {
        Participants::Users(_) => "user_id",
        Participants::Teams(_) => "team_id",
    };
    for incentive in &incentives {
        let IncentiveSource::Contest { places, min_value, .. } = incentive.source else { continue };
        for entry in entries {
            let rank = entry["rank"].as_i64().unwrap_or(i64::MAX);
            if rank > places {
                continue;
            }
            if let Some(min) = min_value {
                // A value at or below zero does not parse as a positive amount: below any
                // minimum.
                let reached =
                    unit.and_then(|u| parse_goal(&entry["value"], u, currency.as_str()).ok()).is_some_and(|v| v >= min);
                if !reached {
                    continue;
                }
            }
            let Some(id) = entry[key].as_str() else { continue };
            let users: Vec<UserId> = match contest.participants {
                Participants::Users(_) => id.parse().into_iter().collect(),
                Participants::Teams(_) => match id.parse() {
                    Ok(team) => state.store.team_members(tenant, team).await?,
                    Err(_) => vec![],
                },
            };
            for user in users {
                settle(state, tenant, incentive, user, 0, true, false).await?;
            }
        }
    }
    Ok(())
}

/// Awards everything due in the tenant: reads (and so freezes and awards) every ended
/// contest that has incentives, and settles every target incentive.
pub(super) async fn award_due(state: &AppState, tenant: TenantId) -> Result<(), ApiError> {
    let now = now_ms();
    let mut contests_done = std::collections::BTreeSet::new();
    let mut targets_done = std::collections::BTreeSet::new();
    for incentive in state.store.incentives(tenant, None, None).await? {
        match incentive.source {
            IncentiveSource::Contest { contest, .. } => {
                if contests_done.insert(contest) {
                    let found = state.store.contest(tenant, contest).await?;
                    if let Some(frozen) = &found.frozen {
                        // Final already: award from the stored result, no recomputation.
                        let entries: Vec<Value> = serde_json::from_str(frozen)
                            .map_err(|e| ApiError::Internal(anyhow::anyhow!("a frozen standing is malformed: {e}")))?;
                        award_contest(state, tenant, &found, &entries).await?;
                    } else if now >= found.ends_at_ms {
                        // Reading the standing freezes the result and awards its incentives;
                        // a contest whose metric is gone cannot be frozen, and awards nothing.
                        match standing(state, tenant, contest).await {
                            Err(ApiError::Unprocessable { .. }) => {}
                            other => {
                                other?;
                            }
                        }
                    }
                }
            }
            IncentiveSource::Target { target, .. } => {
                if targets_done.insert(target) {
                    let found = state.store.target(tenant, target).await?;
                    award_target(state, tenant, &found).await?;
                }
            }
        }
    }
    Ok(())
}

async fn zone(state: &AppState, tenant: TenantId) -> Result<TimeZone, ApiError> {
    let tenant = state.store.tenant(tenant).await?;
    TimeZone::get(&tenant.timezone).map_err(|e| ApiError::Internal(anyhow::anyhow!("tenant zone: {e}")))
}

fn entry_view(e: LedgerEntry, tz: &TimeZone) -> PointsEntry {
    PointsEntry {
        id: e.id,
        points: e.points,
        reason: e.reason,
        label: e.label,
        incentive_id: e.incentive_id,
        target_id: e.target_id.map(|t| t.as_uuid()),
        period_start: e.target_id.map(|_| instant(e.award_key, tz)),
        contest_id: e.contest_id.map(|c| c.as_uuid()),
        at: instant(e.at_ms, tz),
    }
}

async fn points_of(state: &AppState, p: &Principal, user: UserId, q: &PageQuery) -> Result<Points, ApiError> {
    let (limit, after) = q.parse()?;
    state.store.user(p.tenant_id, user).await?;
    award_due(state, p.tenant_id).await?;
    let (_, tz) = tenant_zone(state, p).await?;
    let balance = state.store.points_balance(p.tenant_id, user).await?;
    let rows = state.store.points_history(p.tenant_id, user, after, limit + 1).await?;
    let (rows, next_cursor) = finish(rows, limit, |e| (e.at_ms, e.id));
    Ok(Points {
        user_id: user.as_uuid(),
        balance,
        entries: rows.into_iter().map(|e| entry_view(e, &tz)).collect(),
        next_cursor,
    })
}

/// A user's points: balance and history, newest first (that user, or manager+).
///
/// Awards what is due first (see the module docs: awarding is lazy and idempotent).
#[utoipa::path(get, path = "/v1/users/{id}/points", tag = "incentives", operation_id = "user_points",
    params(("id" = uuid::Uuid, Path, description = "The user."), PageQuery),
    responses(
        (status = 200, description = "Balance and a page of history.", body = Points),
        (status = 400, description = "`limit` out of 1..=200, a bad cursor, or an unknown parameter.", body = ErrorBody),
        (status = 403, description = "A member asking for someone else's points.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn user_points(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: UserId = parse_id("user", &id)?;
    if p.role == Role::Member && id != p.user_id {
        // Unknown ids answer 404 for everyone, as everywhere.
        state.store.user(p.tenant_id, id).await?;
        return Err(ApiError::Forbidden("members see their own points only"));
    }
    Ok(axum::Json(points_of(&state, &p, id, &q).await?))
}

/// The caller's points: balance and history, newest first.
#[utoipa::path(get, path = "/v1/me/points", tag = "incentives", operation_id = "my_points", params(PageQuery),
    responses(
        (status = 200, description = "Balance and a page of history.", body = Points),
        (status = 400, description = "`limit` out of 1..=200, a bad cursor, or an unknown parameter.", body = ErrorBody),
    ))]
pub(super) async fn my_points(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    Ok(axum::Json(points_of(&state, &p, p.user_id, &q).await?))
}
