//! Targets: a goal of one metric per period for a user or a team, and its progress.
//!
//! Periods are cut in the tenant's time zone ([`crate::engine::period`]): a calendar kind
//! (day, week, month, quarter, year; one-off or recurring) or a custom range of local
//! days (never recurring). Weeks start on the tenant calendar's week start as it was when
//! the target was created: a later change of the calendar moves no existing target's
//! periods. Progress, pace, status and the moment achieved follow
//! [`crate::engine::progress`]; the pace counts the tenant's working days
//! ([`crate::engine::calendar`]). A user's goal is pro-rated by working days when they
//! joined after the period started (`joined_on`); the answer carries the effective `goal`
//! and the target's `original_goal`. Stretch tiers (up to [`MAX_TIERS`], ascending above
//! the goal) report when each was reached. A team's value is the sum of its current
//! members' facts; a team without a target of its own has the sum of its members'
//! (pro-rated) targets as its goal ([`team_progress`], for a calendar period or a custom
//! range). The rules live in [`crate::scoring::progress`] and [`crate::scoring::goals`]
//! (the one rule for the goal owed over a period); this module parses, calls them and
//! renders.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::metrics::{Figures, Unit};
use super::openapi::{Created, ErrorBody};
use super::paging::{PageQuery, finish};
use super::shared::{instant, tenant_zone};
use super::tenants::{audit, parse_id};
use crate::engine::period::days_between;
use crate::engine::{Period, PeriodKind};
use crate::format::{minor_units, split_decimal};
use crate::scoring::Scoring;
use crate::store::engine::{Tier, Visible};
use crate::store::{Actor, Assignee, NewTarget, StoreError, Target, TargetId, TeamId, UserId};

/// The most stretch tiers a target may have.
pub const MAX_TIERS: usize = 5;
/// The longest custom range, in days (ten years).
pub const MAX_CUSTOM_DAYS: i64 = 3660;
/// The longest tier label, in characters.
const MAX_LABEL_CHARS: usize = 100;

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
    /// A local date inside the first period (default: today in the tenant's zone); for a
    /// `custom` period, its first day (required).
    #[serde(default)]
    #[schema(format = Date, example = "2025-06-01")]
    starts_on: Option<String>,
    /// The last day (inclusive) of a `custom` period (required there, refused elsewhere).
    #[serde(default)]
    #[schema(format = Date, example = "2025-06-20")]
    ends_on: Option<String>,
    /// Whether it repeats every period from the first on (default false: that period only;
    /// a `custom` period never repeats).
    #[serde(default)]
    recurring: bool,
    /// Stretch tiers: at most five, goals ascending and above `goal`.
    #[serde(default)]
    tiers: Option<Vec<TierBody>>,
}

/// A stretch tier.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TierBody {
    /// Its goal, in the metric's unit, above the target's goal and the tiers before it.
    #[schema(value_type = super::openapi::AmountSchema)]
    goal: Value,
    /// Its name (1 to 100 characters), such as "Gold".
    #[serde(default)]
    label: Option<String>,
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
    /// Whose it is.
    pub(super) fn of(assignee: Assignee) -> Self {
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
    /// The local date it was set from (a custom period's first day).
    #[schema(format = Date)]
    starts_on: String,
    /// A custom period's last day; `null` for the calendar kinds.
    #[schema(format = Date)]
    ends_on: Option<String>,
    /// The day its weeks start on (`monday` … `sunday`), fixed when it was created.
    week_start: String,
    /// Whether it repeats every period.
    recurring: bool,
    /// Its stretch tiers, ascending.
    tiers: Vec<TierBody>,
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

/// What to change in a target (at least one field).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetPatch {
    /// A new goal per period, above zero, in the metric's unit.
    #[serde(default)]
    #[schema(value_type = Option<super::openapi::AmountSchema>)]
    goal: Option<Value>,
    /// New stretch tiers (replacing the old; `[]` for none), ascending above the goal.
    #[serde(default)]
    tiers: Option<Vec<TierBody>>,
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

/// A local date of the request, or 400 naming the field.
pub(super) fn parse_date(field: &'static str, text: &str) -> Result<jiff::civil::Date, ApiError> {
    text.parse::<jiff::civil::Date>()
        .map_err(|_| ApiError::bad_request("invalid_field", format!("`{field}` must be a date such as 2025-06-01")))
}

/// Checks tiers against the goal: at most [`MAX_TIERS`], each goal a valid amount above
/// the goal and the tier before (422 `too_many_tiers`, `tier_not_above_goal`,
/// `tiers_not_ascending`), labels of 1 to 100 characters (400).
fn parse_tiers(tiers: &[TierBody], goal: i64, kind: Unit, currency: &str) -> Result<Vec<Tier>, ApiError> {
    if tiers.len() > MAX_TIERS {
        return Err(ApiError::unprocessable("too_many_tiers", format!("a target has at most {MAX_TIERS} tiers")));
    }
    let mut out: Vec<Tier> = Vec::with_capacity(tiers.len());
    for tier in tiers {
        let tier_goal = parse_goal(&tier.goal, kind, currency)?;
        if let Some(label) = &tier.label {
            let chars = label.chars().count();
            if chars == 0 || chars > MAX_LABEL_CHARS || label.trim().is_empty() {
                return Err(ApiError::bad_request("invalid_field", "a tier `label` has 1 to 100 characters"));
            }
        }
        if tier_goal <= goal {
            return Err(ApiError::unprocessable(
                "tier_not_above_goal",
                "every tier's goal must be above the target's goal",
            ));
        }
        if out.last().is_some_and(|before| tier_goal <= before.goal) {
            return Err(ApiError::unprocessable("tiers_not_ascending", "tier goals must be in ascending order"));
        }
        out.push(Tier { goal: tier_goal, label: tier.label.clone() });
    }
    Ok(out)
}

/// A custom range's days checked as a target's are: both given (422 `range_required`),
/// the last not before the first (422 `range_ends_before_start`), at most
/// [`MAX_CUSTOM_DAYS`] long (422 `range_too_long`).
pub(super) fn check_range(
    first: Option<jiff::civil::Date>,
    last: Option<jiff::civil::Date>,
) -> Result<(jiff::civil::Date, jiff::civil::Date), ApiError> {
    let (Some(first_day), Some(last_day)) = (first, last) else {
        return Err(ApiError::unprocessable("range_required", "a custom period needs `starts_on` and `ends_on`"));
    };
    if last_day < first_day {
        return Err(ApiError::unprocessable("range_ends_before_start", "`ends_on` is before `starts_on`"));
    }
    if days_between(first_day, last_day) >= MAX_CUSTOM_DAYS {
        return Err(ApiError::unprocessable("range_too_long", "a custom period is at most 3660 days long"));
    }
    Ok((first_day, last_day))
}

/// Sets a target (manager+).
///
/// A goal of one metric per period for a user or a team. One assignee has at most one
/// target per metric and period kind at any time. Weekly targets take the tenant
/// calendar's week start at creation and keep it.
#[utoipa::path(post, path = "/v1/targets", tag = "targets", operation_id = "create_target",
    request_body = NewTargetBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Malformed body, goal not a number, bad date or period, bad tier label.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "Unknown metric, or an assignee not in this tenant.", body = ErrorBody),
        (status = 409, description = "Overlaps another target of the assignee, metric and period (`target_overlaps`).", body = ErrorBody),
        (status = 422, description = "Goal not above zero (`goal_not_positive`); a custom period without `starts_on`/`ends_on` (`range_required`), ending before it starts (`range_ends_before_start`), longer than ten years (`range_too_long`) or recurring (`custom_not_recurring`); `ends_on` on a calendar period (`field_not_allowed`); more than five tiers (`too_many_tiers`), a tier not above the goal (`tier_not_above_goal`) or tiers not ascending (`tiers_not_ascending`).", body = ErrorBody),
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
        Some(text) => Some(parse_date("starts_on", text)?),
        None => None,
    };
    let ends_on = match &body.ends_on {
        Some(text) => Some(parse_date("ends_on", text)?),
        None => None,
    };
    let calendar = state.store.calendar(p.tenant_id).await?.calendar;
    let out_of_range = |_| ApiError::bad_request("invalid_field", "`starts_on` or `ends_on` is out of range");
    let (starts_on, first) = if body.period == PeriodKind::Custom {
        let (first_day, last_day) = check_range(starts_on, ends_on)?;
        if body.recurring {
            return Err(ApiError::unprocessable("custom_not_recurring", "a custom period does not recur"));
        }
        (first_day, Period::custom(first_day, last_day, &tz).map_err(out_of_range)?)
    } else {
        if ends_on.is_some() {
            return Err(ApiError::unprocessable("field_not_allowed", "`ends_on` goes with a custom period"));
        }
        let day = match starts_on {
            Some(day) => day,
            None => Scoring::today(&tz)?,
        };
        (day, Period::containing_with(body.period, day, calendar.week_start, &tz).map_err(out_of_range)?)
    };
    let metric = state.scoring.resolve(p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    let goal = parse_goal(&body.goal, metric.unit, tenant.currency.as_str())?;
    let tiers = parse_tiers(body.tiers.as_deref().unwrap_or_default(), goal, metric.unit, tenant.currency.as_str())?;
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
                ends_on: (body.period == PeriodKind::Custom).then_some(first.last_day()),
                week_start: calendar.week_start,
                tiers: &tiers,
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

fn target_view(target: &Target, unit: Option<Unit>, currency: &str, tz: &TimeZone) -> TargetView {
    let figure = |v: i64| unit.map_or(json!(v), |u| u.figure(i128::from(v), currency));
    TargetView {
        id: target.id.as_uuid(),
        assignee: AssigneeView::of(target.assignee),
        metric: target.metric.clone(),
        kind: unit,
        period: target.period,
        goal: figure(target.goal),
        starts_on: target.starts_on.to_string(),
        ends_on: target.ends_on.map(|d| d.to_string()),
        week_start: crate::engine::calendar::weekday_name(target.week_start).to_owned(),
        recurring: target.recurring,
        tiers: target.tiers.iter().map(|t| TierBody { goal: figure(t.goal), label: t.label.clone() }).collect(),
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
            let unit = state.scoring.unit_of(p.tenant_id, &t.metric).await?;
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
    state.scoring.visible_target(&p, &target).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let unit = state.scoring.unit_of(p.tenant_id, &target.metric).await?;
    Ok(axum::Json(target_view(&target, unit, tenant.currency.as_str(), &tz)))
}

/// Changes a target's goal and/or tiers (manager+).
///
/// Tiers left out stay as they were and must still be above the new goal.
#[utoipa::path(patch, path = "/v1/targets/{id}", tag = "targets", operation_id = "update_target",
    params(("id" = uuid::Uuid, Path, description = "The target.")),
    request_body = TargetPatch,
    responses(
        (status = 200, description = "The target now.", body = TargetView),
        (status = 400, description = "Malformed or empty body, a goal that is not a number, a bad tier label.", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such target in this tenant.", body = ErrorBody),
        (status = 422, description = "Goal not above zero (`goal_not_positive`), its metric is gone (`metric_unavailable`), or tiers that break the rules of `POST /v1/targets`.", body = ErrorBody),
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
    if body.goal.is_none() && body.tiers.is_none() {
        return Err(ApiError::bad_request("invalid_field", "give a `goal`, `tiers` or both"));
    }
    let metric = state.scoring.resolve_stored(p.tenant_id, &target.metric).await?;
    let currency = tenant.currency.as_str();
    let goal = match &body.goal {
        Some(goal) => parse_goal(goal, metric.unit, currency)?,
        None => target.goal,
    };
    let tiers = match &body.tiers {
        Some(tiers) => parse_tiers(tiers, goal, metric.unit, currency)?,
        None => {
            if target.tiers.first().is_some_and(|t| t.goal <= goal) {
                return Err(ApiError::unprocessable(
                    "tier_not_above_goal",
                    "every tier's goal must be above the target's goal",
                ));
            }
            target.tiers.clone()
        }
    };
    state.store.update_target(p.tenant_id, id, goal, &tiers).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "target.updated", &id.to_string()).await?;
    let target = state.store.target(p.tenant_id, id).await?;
    // A new goal may award or revoke its incentives now.
    super::shared::settled(state.scoring.settle_target(p.tenant_id, &target).await);
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
