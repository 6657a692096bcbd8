//! Targets: a goal of one metric per period for a user or a team, and its progress.
//!
//! Periods are cut in the tenant's time zone ([`crate::engine::period`]); progress, pace,
//! status and the moment achieved follow [`crate::engine::progress`]. A team's value is the
//! sum of its current members' facts.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::contests::{instant, tenant_zone};
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::{Unit, resolve, resolve_stored, score_json};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::tenants::{audit, parse_id};
use crate::cli::output::{minor_units, money_to_decimal};
use crate::engine::period::local_date;
use crate::engine::{DatedValue, Period, PeriodKind, Progress};
use crate::store::engine::Visible;
use crate::store::types::now_ms;
use crate::store::{Actor, Assignee, NewTarget, Principal, Role, StoreError, Target, TargetId, TeamId, UserId};

/// A new target.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTargetBody {
    /// Whose target: one user, or a team (the sum of its members).
    assignee: AssigneeBody,
    /// The metric: a connector's or a composite one.
    metric: String,
    /// The period the goal is per.
    #[schema(value_type = super::openapi::PeriodSchema)]
    period: PeriodKind,
    /// The goal per period, above zero: a whole count, money in the tenant currency (at
    /// most its minor units), or points (at most six decimals).
    #[schema(value_type = super::openapi::AmountSchema)]
    goal: Value,
    /// A local date inside the first period (default: today in the tenant's zone).
    #[serde(default)]
    #[schema(format = Date, example = "2025-06-01")]
    starts_on: Option<String>,
    /// Whether it repeats every period from the first on (default false: that period only).
    #[serde(default)]
    recurring: bool,
}

/// `{"user_id":…}` or `{"team_id":…}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(super) enum AssigneeBody {
    /// A user of the tenant.
    UserId(String),
    /// A team of the tenant.
    TeamId(String),
}

/// Whose target it is.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AssigneeView {
    /// For a user's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<uuid::Uuid>,
    /// For a team's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    team_id: Option<uuid::Uuid>,
}

impl AssigneeView {
    fn of(assignee: Assignee) -> Self {
        match assignee {
            Assignee::User(u) => Self { user_id: Some(u.as_uuid()), team_id: None },
            Assignee::Team(t) => Self { user_id: None, team_id: Some(t.as_uuid()) },
        }
    }
}

/// A target's definition.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TargetView {
    /// Its id.
    id: uuid::Uuid,
    /// Whose.
    assignee: AssigneeView,
    /// The metric.
    metric: String,
    /// `count`, `money` or `score`; `null` if the metric is not available any more.
    #[schema(value_type = Option<super::metrics::UnitSchema>)]
    kind: Option<Unit>,
    /// The period.
    #[schema(value_type = super::openapi::PeriodSchema)]
    period: PeriodKind,
    /// The goal per period.
    #[schema(value_type = super::openapi::FigureSchema)]
    goal: Value,
    /// The local date it was set from.
    #[schema(format = Date)]
    starts_on: String,
    /// Whether it repeats every period.
    recurring: bool,
    /// When it was created.
    created_at: String,
}

/// A page of targets.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TargetList {
    /// Newest first.
    targets: Vec<TargetView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// What to change in a target.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetPatch {
    /// A new goal per period, above zero, in the metric's unit.
    #[schema(value_type = super::openapi::AmountSchema)]
    goal: Value,
}

/// Pace: what the assignee should have by now to be on track.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PaceView {
    /// The value expected by now (linear over the period).
    #[schema(value_type = super::openapi::FigureSchema)]
    expected: Value,
    /// How much of the period has passed, 0 to 1.
    elapsed: f64,
    /// Whether the value is at least the expected one (within the tolerance).
    on_track: bool,
}

/// The period progress is measured over.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PeriodView {
    /// Its kind.
    #[schema(value_type = super::openapi::PeriodSchema)]
    kind: PeriodKind,
    /// Its first instant.
    start: String,
    /// Its end (exclusive).
    end: String,
    /// Its first local date.
    first_day: String,
    /// Its last local date.
    last_day: String,
}

/// A target's progress over its period (or the current one, when it recurs).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ProgressView {
    id: uuid::Uuid,
    assignee: AssigneeView,
    metric: String,
    /// `count`, `money` or `score`.
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: String,
    /// The tenant currency.
    currency: String,
    recurring: bool,
    period: PeriodView,
    /// What the assignee has in the period.
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Value,
    /// The goal.
    #[schema(value_type = super::openapi::FigureSchema)]
    goal: Value,
    /// value / goal, four decimals.
    ratio: f64,
    pace: PaceView,
    /// `ahead`, `on_track`, `behind` or `achieved`.
    status: String,
    /// When the goal was reached, if it was.
    achieved_at: Option<String>,
}

/// A plain decimal (`-12.50`, `3`): sign, whole units, fraction digits.
fn split_decimal(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (units, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = !units.is_empty()
        && units.len() <= 30
        && all_digits(units)
        && all_digits(frac)
        && (frac.len() <= 30)
        && (!digits.contains('.') || !frac.is_empty());
    ok.then_some((negative, units, frac))
}

/// The goal in the metric's unit: a whole count, micros of the tenant currency (at most
/// its minor units of decimals), or micro-points (at most six decimals). Not a number:
/// 400; zero or negative: 422.
pub(super) fn parse_goal(goal: &Value, kind: Unit, currency: &str) -> Result<i64, ApiError> {
    let text = match goal {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(ApiError::bad_request("invalid_field", "`goal` must be a number or a decimal string")),
    };
    let (negative, units, frac) = split_decimal(&text).ok_or_else(|| {
        ApiError::bad_request("invalid_field", "`goal` must be a plain decimal number such as 12 or \"2500.00\"")
    })?;
    let frac = frac.trim_end_matches('0');
    let units: i128 = units.parse().map_err(|_| ApiError::bad_request("invalid_field", "`goal` is too large"))?;
    let magnitude = match kind {
        Unit::Count => {
            if !frac.is_empty() {
                return Err(ApiError::bad_request("invalid_field", "`goal` of a count must be a whole number"));
            }
            units
        }
        Unit::Money | Unit::Score => {
            let places = if kind == Unit::Money { minor_units(currency) as usize } else { 6 };
            if frac.len() > places {
                let unit = if kind == Unit::Money { currency } else { "a score" };
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("`goal` has more decimals than {unit} has ({places})"),
                ));
            }
            units * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap_or(0)
        }
    };
    if negative || magnitude == 0 {
        return Err(ApiError::unprocessable("goal_not_positive", "`goal` must be above zero"));
    }
    i64::try_from(magnitude).map_err(|_| ApiError::bad_request("invalid_field", "`goal` is too large"))
}

/// Sets a target (manager+).
///
/// A goal of one metric per period for a user or a team. One assignee has at most one
/// target per metric and period kind at any time.
#[utoipa::path(post, path = "/v1/targets", tag = "targets", operation_id = "create_target",
    request_body = NewTargetBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Malformed body, goal not a number, bad date or period.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "Unknown metric, or an assignee not in this tenant.", body = ErrorBody),
        (status = 409, description = "Overlaps another target of the assignee, metric and period (`target_overlaps`).", body = ErrorBody),
        (status = 422, description = "Goal not above zero (`goal_not_positive`).", body = ErrorBody),
    ))]
pub(super) async fn create_target(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewTargetBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let not_an_id = || ApiError::bad_request("invalid_field", "`assignee` must hold a user or team id");
    let assignee = match &body.assignee {
        AssigneeBody::UserId(id) => Assignee::User(id.parse::<UserId>().map_err(|_| not_an_id())?),
        AssigneeBody::TeamId(id) => Assignee::Team(id.parse::<TeamId>().map_err(|_| not_an_id())?),
    };
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let starts_on = match &body.starts_on {
        Some(text) => text
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request("invalid_field", "`starts_on` must be a date such as 2025-06-01"))?,
        None => local_date(now_ms(), &tz).map_err(|e| ApiError::Internal(e.into()))?,
    };
    let first = Period::containing(body.period, starts_on, &tz)
        .map_err(|_| ApiError::bad_request("invalid_field", "`starts_on` is out of range"))?;
    let metric = resolve(&state, p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    let goal = parse_goal(&body.goal, metric.unit, tenant.currency.as_str())?;
    let target = state
        .store
        .create_target(
            p.tenant_id,
            &NewTarget {
                assignee,
                metric: &body.metric,
                period: body.period,
                goal,
                starts_on,
                first_start_ms: first.start_ms,
                first_end_ms: first.end_ms,
                recurring: body.recurring,
                created_by: p.user_id,
            },
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => ApiError::conflict(
                "target_overlaps",
                "this assignee already has a target for this metric and period that covers the same time",
            ),
            other => other.into(),
        })?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "target.created", &target.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id: target.id.as_uuid() })))
}

/// Rounds to four decimals for the answer.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The users whose figures count for a target, after checking that `p` may see it
/// (managers and admins; a member if they are the assignee or in the assignee team).
async fn visible_target(state: &AppState, p: &Principal, target: &Target) -> Result<Vec<UserId>, ApiError> {
    let members: Vec<UserId> = match target.assignee {
        Assignee::User(u) => vec![u],
        Assignee::Team(t) => state.store.team_members(p.tenant_id, t).await?,
    };
    let allowed = match p.role {
        Role::Admin | Role::Manager => true,
        Role::Member => members.contains(&p.user_id),
    };
    if !allowed {
        return Err(ApiError::Forbidden("only managers and the target's assignee may see it"));
    }
    Ok(members)
}

/// A target's progress (manager+, the assignee, or a member of the assignee team).
///
/// Over the target's period, or the current period when it recurs (the first one until it
/// starts): value, goal, ratio, pace, status and the moment achieved.
#[utoipa::path(get, path = "/v1/targets/{id}/progress", tag = "targets", operation_id = "target_progress",
    params(("id" = uuid::Uuid, Path, description = "The target.")),
    responses(
        (status = 200, description = "The progress.", body = ProgressView),
        (status = 403, description = "A member who is not the assignee.", body = ErrorBody),
        (status = 404, description = "No such target in this tenant.", body = ErrorBody),
        (status = 422, description = "Its metric is not available any more (`metric_unavailable`).", body = ErrorBody),
    ))]
pub(super) async fn progress(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: TargetId = parse_id("target", &id)?;
    let target = state.store.target(p.tenant_id, id).await?;
    let members = visible_target(&state, &p, &target).await?;
    super::incentives::award_target(&state, p.tenant_id, &target).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let metric = resolve_stored(&state, p.tenant_id, &target.metric).await?;
    let kind = metric.unit;
    let now = now_ms();
    let internal = |e: crate::engine::PeriodError| ApiError::Internal(e.into());
    let first = Period::containing(target.period, target.starts_on, &tz).map_err(internal)?;
    let period = if target.recurring && now >= first.end_ms {
        Period::containing_instant(target.period, now, &tz).map_err(internal)?
    } else {
        first
    };
    let facts: Vec<DatedValue> = metric
        .dated(&state, p.tenant_id, period.start_ms, period.end_ms)
        .await?
        .into_iter()
        .filter(|f| members.contains(&f.user_id))
        .map(|f| DatedValue::new(f.at_ms, f.value))
        .collect();
    let progress = Progress::compute(i128::from(target.goal), &period, now, &facts);
    let expected = match kind {
        Unit::Count => json!(progress.pace.expected_scaled(progress.goal, 100) as f64 / 100.0),
        Unit::Money => json!(money_to_decimal(progress.expected(), currency)),
        Unit::Score => score_json(progress.expected()),
    };
    let assignee = AssigneeView::of(target.assignee);
    Ok(axum::Json(json!({
        "id": target.id,
        "assignee": assignee,
        "metric": target.metric,
        "kind": kind,
        "currency": currency,
        "recurring": target.recurring,
        "period": {
            "kind": period.kind,
            "start": instant(period.start_ms, &tz),
            "end": instant(period.end_ms, &tz),
            "first_day": period.first_day.to_string(),
            "last_day": period.last_day().to_string(),
        },
        "value": kind.figure(progress.value, currency),
        "goal": kind.figure(progress.goal, currency),
        "ratio": round4(progress.ratio()),
        "pace": {
            "expected": expected,
            "elapsed": round4(progress.pace.elapsed_fraction()),
            "on_track": progress.pace.on_track,
        },
        "status": progress.status.as_str(),
        "achieved_at": progress.achieved_at_ms.map(|at| instant(at, &tz)),
    })))
}

fn target_view(target: &Target, unit: Option<Unit>, currency: &str, tz: &TimeZone) -> TargetView {
    TargetView {
        id: target.id.as_uuid(),
        assignee: AssigneeView::of(target.assignee),
        metric: target.metric.clone(),
        kind: unit,
        period: target.period,
        goal: unit.map_or(json!(target.goal), |u| u.figure(i128::from(target.goal), currency)),
        starts_on: target.starts_on.to_string(),
        recurring: target.recurring,
        created_at: instant(target.created_at_ms, tz),
    }
}

/// Lists targets, newest first (any user; a member sees their own and their teams').
#[utoipa::path(get, path = "/v1/targets", tag = "targets", operation_id = "list_targets", params(PageQuery),
    responses(
        (status = 200, description = "A page of targets.", body = TargetList),
        (status = 400, description = "`limit` out of 1..=200, a bad cursor, or an unknown parameter.", body = ErrorBody),
    ))]
pub(super) async fn list_targets(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let (limit, after) = q.parse()?;
    let visible = Visible::to(&p);
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let rows = state.store.targets(p.tenant_id, visible, after, limit + 1).await?;
    let (rows, next_cursor) = finish(rows, limit, |t| (t.created_at_ms, t.id.as_uuid()));
    let mut units: HashMap<String, Option<Unit>> = HashMap::new();
    let mut targets = Vec::with_capacity(rows.len());
    for t in &rows {
        if !units.contains_key(&t.metric) {
            let unit = resolve(&state, p.tenant_id, &t.metric).await?.map(|m| m.unit);
            units.insert(t.metric.clone(), unit);
        }
        targets.push(target_view(t, units[&t.metric], tenant.currency.as_str(), &tz));
    }
    Ok(axum::Json(TargetList { targets, next_cursor }))
}

/// A target's definition (manager+, the assignee, or a member of the assignee team).
#[utoipa::path(get, path = "/v1/targets/{id}", tag = "targets", operation_id = "get_target",
    params(("id" = uuid::Uuid, Path, description = "The target.")),
    responses(
        (status = 200, description = "The target.", body = TargetView),
        (status = 403, description = "A member who is not the assignee.", body = ErrorBody),
        (status = 404, description = "No such target in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn get_target(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: TargetId = parse_id("target", &id)?;
    let target = state.store.target(p.tenant_id, id).await?;
    visible_target(&state, &p, &target).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let unit = resolve(&state, p.tenant_id, &target.metric).await?.map(|m| m.unit);
    Ok(axum::Json(target_view(&target, unit, tenant.currency.as_str(), &tz)))
}

/// Changes a target's goal (manager+).
#[utoipa::path(patch, path = "/v1/targets/{id}", tag = "targets", operation_id = "update_target",
    params(("id" = uuid::Uuid, Path, description = "The target.")),
    request_body = TargetPatch,
    responses(
        (status = 200, description = "The target now.", body = TargetView),
        (status = 400, description = "Malformed body, or a goal that is not a number.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such target in this tenant.", body = ErrorBody),
        (status = 422, description = "Goal not above zero (`goal_not_positive`), or its metric is gone (`metric_unavailable`).", body = ErrorBody),
    ))]
pub(super) async fn update_target(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TargetPatch>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let id: TargetId = parse_id("target", &id)?;
    let target = state.store.target(p.tenant_id, id).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let metric = resolve_stored(&state, p.tenant_id, &target.metric).await?;
    let goal = parse_goal(&body.goal, metric.unit, tenant.currency.as_str())?;
    state.store.update_target_goal(p.tenant_id, id, goal).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "target.updated", &id.to_string()).await?;
    let target = state.store.target(p.tenant_id, id).await?;
    Ok(axum::Json(target_view(&target, Some(metric.unit), tenant.currency.as_str(), &tz)))
}

/// Deletes a target (manager+).
#[utoipa::path(delete, path = "/v1/targets/{id}", tag = "targets", operation_id = "delete_target",
    params(("id" = uuid::Uuid, Path, description = "The target.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such target in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn delete_target(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_manager()?;
    let id: TargetId = parse_id("target", &id)?;
    state.store.delete_target(p.tenant_id, id).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "target.deleted", &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(v: Value, kind: Unit) -> Result<i64, u16> {
        parse_goal(&v, kind, "GBP").map_err(|e| e.status().as_u16())
    }

    #[test]
    fn goals_in_each_unit() {
        assert_eq!(goal(json!(12), Unit::Count), Ok(12));
        assert_eq!(goal(json!("12"), Unit::Count), Ok(12));
        assert_eq!(goal(json!(12.0), Unit::Count), Ok(12));
        assert_eq!(goal(json!(2.5), Unit::Count), Err(400));
        assert_eq!(goal(json!("2500.50"), Unit::Money), Ok(2_500_500_000));
        assert_eq!(goal(json!(2500.5), Unit::Money), Ok(2_500_500_000));
        assert_eq!(goal(json!("7"), Unit::Money), Ok(7_000_000));
        assert_eq!(goal(json!("0.001"), Unit::Money), Err(400));
        assert_eq!(parse_goal(&json!("12.345"), Unit::Money, "KWD").ok(), Some(12_345_000));
        assert_eq!(parse_goal(&json!("12.5"), Unit::Money, "JPY").ok(), None);
    }

    #[test]
    fn bad_goals() {
        for bad in [json!("abc"), json!(""), json!("1e3"), json!(".5"), json!("5."), json!("+5"), json!(null)] {
            assert_eq!(goal(bad.clone(), Unit::Money), Err(400), "{bad}");
        }
        assert_eq!(goal(json!(true), Unit::Count), Err(400));
        assert_eq!(goal(json!([1]), Unit::Count), Err(400));
        assert_eq!(goal(json!(1e300), Unit::Count), Err(400));
        assert_eq!(goal(json!("99999999999999999999"), Unit::Count), Err(400));
        for not_positive in [json!(0), json!(-5), json!("-0.50"), json!("0.00"), json!(-1.5)] {
            let kind = if not_positive == json!(-1.5) { Unit::Money } else { Unit::Count };
            let kind = if not_positive.is_string() { Unit::Money } else { kind };
            assert_eq!(goal(not_positive.clone(), kind), Err(422), "{not_positive}");
        }
    }
}
