//! Incentives and the points ledger.
//!
//! An incentive awards `points` (with an optional label the manager types) for achieving a
//! tier of a target (`tier_percent` of its goal, 100 by default) or for a final contest
//! placement (rank ≤ `places`, optionally with at least `min_value`, a value in the
//! metric's unit, also for a contest ranked by percent of own target).
//!
//! A target's tier is measured against the goal its progress shows for that period (the
//! effective goal: pro-rated by working days for a user who joined during the period,
//! [`crate::scoring::goals::effective_goal`]), not the goal as set; a period whose effective goal
//! is zero (the user joined after it ended) earns nothing.
//!
//! # When points are awarded
//! When the numbers change, never on a read (see [`crate::scoring::awards`]): after each
//! sync's commit, when an incentive is created or its target edited, when a contest is
//! frozen, after a remap or a change of team members, join dates, calendar or FX rates.
//! Reading points only reads the ledger. A retraction that takes a target period back
//! below its tier appends a `revoked` row; a contest's awards come from its frozen result
//! and are never revoked (later changes show as leaderboard flags).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::Figures;
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::shared::{instant, settled, tenant_zone};
use super::targets::parse_goal;
use super::tenants::{audit, check_name, parse_id};
use crate::store::engine::{IncentiveSource, LedgerEntry};
use crate::store::{Actor, ContestId, Principal, Role, StoreError, TargetId, UserId};

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
                        state.scoring.resolve(p.tenant_id, &found.metric).await?.ok_or(ApiError::NotFound("metric"))?;
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
    // What it rewards may be earned already: awarded now, not at someone's next read.
    settled(state.scoring.settle_incentive(p.tenant_id, &incentive).await);
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
                        match state.scoring.unit_of(p.tenant_id, &metric).await? {
                            Some(unit) => unit.figure(i128::from(min), tenant.currency.as_str()),
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
/// Reads the ledger only: points are awarded when the numbers change (see the module docs).
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
