//! Progress: a target's over its period, and a team's over a calendar period or a custom
//! range (computed by [`crate::scoring::progress`]), rendered.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, User};
use super::metrics::{Figures, Unit, score_json};
use super::openapi::ErrorBody;
use super::shared::{instant, tenant_zone};
use super::targets::{AssigneeView, check_range, parse_date};
use super::tenants::parse_id;
use crate::engine::{Period, PeriodKind};
use crate::format::money_to_decimal;
use crate::scoring::Scoring;
use crate::scoring::progress::{Asked, GoalSource, PeriodProgress};
use crate::store::{TargetId, TeamId};

/// Pace: what the assignee should have by now to be on track.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PaceView {
    /// The value expected by now (linear over the period's working days).
    #[schema(value_type = super::openapi::FigureSchema)]
    expected: Value,
    /// How much of the period has passed, 0 to 1 (of its working days, see `basis`).
    elapsed: f64,
    /// Whether the value is at least the expected one (within the tolerance).
    on_track: bool,
    /// `working_days` (the tenant's working week minus holidays), or `calendar` for a
    /// period without a single working day.
    basis: String,
}

/// A stretch tier's progress.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TierProgressView {
    /// Its goal (pro-rated like the target's).
    #[schema(value_type = super::openapi::FigureSchema)]
    goal: Value,
    /// Its label, if it has one.
    label: Option<String>,
    /// Whether the value is at least its goal.
    reached: bool,
    /// When the running total first reached it, if it is reached.
    achieved_at: Option<String>,
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
    /// The effective goal: the target's, pro-rated for a user who joined during the period.
    #[schema(value_type = super::openapi::FigureSchema)]
    goal: Value,
    /// The target's goal as set.
    #[schema(value_type = super::openapi::FigureSchema)]
    original_goal: Value,
    /// The date the assignee joined, when the goal is pro-rated for it; else `null`.
    #[schema(format = Date)]
    joined_on: Option<String>,
    /// value / goal, four decimals.
    ratio: f64,
    pace: PaceView,
    /// `ahead`, `on_track`, `behind` or `achieved`.
    status: String,
    /// When the goal was reached, if it was.
    achieved_at: Option<String>,
    /// The stretch tiers, ascending.
    tiers: Vec<TierProgressView>,
}

/// One member's part of a team's progress.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct MemberPartView {
    user_id: uuid::Uuid,
    /// Their target for the metric and period kind covering the period, if any.
    target_id: Option<uuid::Uuid>,
    /// Their effective (pro-rated) goal; `null` without a target.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Value,
    /// Their target's goal as set; `null` without a target.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    original_goal: Value,
    /// Their value in the period.
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Value,
}

/// A team's progress for one metric and period kind.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TeamProgressView {
    team_id: uuid::Uuid,
    metric: String,
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: String,
    currency: String,
    /// `target`: the team's own target sets the goal; `members`: the sum of the members'
    /// (pro-rated) targets does.
    goal_source: String,
    /// The team's own target, when `goal_source` is `target`.
    target_id: Option<uuid::Uuid>,
    period: PeriodView,
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Value,
    #[schema(value_type = super::openapi::FigureSchema)]
    goal: Value,
    ratio: f64,
    pace: PaceView,
    status: String,
    achieved_at: Option<String>,
    /// The team target's stretch tiers (none for a sum of members).
    tiers: Vec<TierProgressView>,
    /// Every current member, with their target and value.
    members: Vec<MemberPartView>,
}

/// Rounds to four decimals for the answer.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// What a progress answer needs besides the numbers: the tenant's unit, currency and zone.
struct Render<'a> {
    kind: Unit,
    currency: &'a str,
    tz: &'a TimeZone,
}

impl Render<'_> {
    fn figure(&self, v: i128) -> Value {
        self.kind.figure(v, self.currency)
    }

    fn period(&self, period: &Period) -> Value {
        json!({
            "kind": period.kind,
            "start": instant(period.start_ms, self.tz),
            "end": instant(period.end_ms, self.tz),
            "first_day": period.first_day.to_string(),
            "last_day": period.last_day().to_string(),
        })
    }

    /// period, value, goal, ratio, pace, status, achieved_at and tiers, as a JSON object.
    fn progress(&self, of: &PeriodProgress) -> serde_json::Map<String, Value> {
        let progress = &of.progress;
        let expected = match self.kind {
            Unit::Count => json!(progress.pace.expected_scaled(progress.goal, 100) as f64 / 100.0),
            Unit::Money => json!(money_to_decimal(progress.expected(), self.currency)),
            Unit::Score => score_json(progress.expected()),
        };
        let tiers: Vec<Value> = of
            .tiers
            .iter()
            .map(|tier| {
                json!({
                    "goal": self.figure(tier.goal),
                    "label": tier.label,
                    "reached": tier.achieved_at_ms.is_some(),
                    "achieved_at": tier.achieved_at_ms.map(|at| instant(at, self.tz)),
                })
            })
            .collect();
        let answer = json!({
            "period": self.period(&of.period),
            "value": self.figure(progress.value),
            "goal": self.figure(progress.goal),
            "ratio": round4(progress.ratio()),
            "pace": {
                "expected": expected,
                "elapsed": round4(progress.pace.elapsed_fraction()),
                "on_track": progress.pace.on_track,
                "basis": if progress.pace.working_days { "working_days" } else { "calendar" },
            },
            "status": progress.status.as_str(),
            "achieved_at": progress.achieved_at_ms.map(|at| instant(at, self.tz)),
            "tiers": tiers,
        });
        match answer {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// A target's progress (manager+, the assignee, or a member of the assignee team).
///
/// Over the target's period, or the current period when it recurs (the first one until it
/// starts): value, the effective goal (pro-rated for a user who joined during the period)
/// and the original one, ratio, pace (by working days), status, the moment achieved and
/// each stretch tier.
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
    let members = state.scoring.visible_target(&p, &target).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let shown = state.scoring.target_progress(p.tenant_id, target, &members).await?;
    let (target, of) = (&shown.target, &shown.of);
    let render = Render { kind: of.unit, currency, tz: &tz };
    let mut answer = serde_json::Map::new();
    answer.insert("id".into(), json!(target.id));
    answer.insert("assignee".into(), json!(AssigneeView::of(target.assignee)));
    answer.insert("metric".into(), json!(target.metric));
    answer.insert("kind".into(), json!(of.unit));
    answer.insert("currency".into(), json!(currency));
    answer.insert("recurring".into(), json!(target.recurring));
    answer.extend(render.progress(of));
    answer.insert("original_goal".into(), render.figure(i128::from(target.goal)));
    answer.insert("joined_on".into(), json!(shown.joined_on.map(|d| d.to_string())));
    Ok(axum::Json(Value::Object(answer)))
}

/// Which team, metric and period a team's progress is asked for.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TeamProgressQuery {
    /// The metric.
    metric: String,
    /// `day`, `week`, `month`, `quarter`, `year` or `custom`.
    period: String,
    /// A calendar kind only: a local date inside the period (default: today in the
    /// tenant's zone).
    #[param(format = Date)]
    on: Option<String>,
    /// `custom` only (and required there): the range's first local day.
    #[param(format = Date)]
    starts_on: Option<String>,
    /// `custom` only (and required there): the range's last local day (inclusive).
    #[param(format = Date)]
    ends_on: Option<String>,
}

/// A team's progress for a metric and period kind (manager+, or a member of the team).
///
/// The team's own target for that metric and kind sets the goal when it covers the period
/// (`goal_source: "target"`); otherwise the goal is the sum of the current members' targets
/// for the same metric and kind that cover the day asked about, each pro-rated for a member
/// who joined during its period (`goal_source: "members"`). The value is the sum of the
/// members' facts either way; `members` breaks both down. Weeks start on the tenant
/// calendar's week start (or the team target's own).
///
/// A custom range is asked for as a target's is set: `period=custom&starts_on=…&ends_on=…`
/// (first and last local day, inclusive; at most 3660 days), and counts the custom
/// targets (the team's, else its members') whose range is exactly that one.
#[utoipa::path(get, path = "/v1/teams/{id}/progress", tag = "targets", operation_id = "team_progress",
    params(("id" = uuid::Uuid, Path, description = "The team."), TeamProgressQuery),
    responses(
        (status = 200, description = "The progress.", body = TeamProgressView),
        (status = 400, description = "A missing or unknown parameter, a bad period or date.", body = ErrorBody),
        (status = 403, description = "A member not in the team.", body = ErrorBody),
        (status = 404, description = "No such team or metric, or neither the team nor any member has a target for it (`not_found`).", body = ErrorBody),
        (status = 422, description = "A custom period without `starts_on`/`ends_on` (`range_required`), ending before it starts (`range_ends_before_start`) or longer than ten years (`range_too_long`); `on` with a custom period, or `starts_on`/`ends_on` with a calendar one (`field_not_allowed`).", body = ErrorBody),
    ))]
pub(super) async fn team_progress(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TeamProgressQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let team: TeamId = parse_id("team", &id)?;
    let kind = PeriodKind::parse(&q.period).ok_or_else(|| {
        ApiError::bad_request("invalid_field", "`period` must be one of day, week, month, quarter, year, custom")
    })?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let date = |field: &'static str, text: &Option<String>| text.as_deref().map(|t| parse_date(field, t)).transpose();
    let (on, starts_on, ends_on) = (date("on", &q.on)?, date("starts_on", &q.starts_on)?, date("ends_on", &q.ends_on)?);
    // The day asked about, or for a custom period its range.
    let asked = if kind == PeriodKind::Custom {
        if on.is_some() {
            return Err(ApiError::unprocessable("field_not_allowed", "`on` goes with a calendar period, not `custom`"));
        }
        let (first, last) = check_range(starts_on, ends_on)?;
        let range = Period::custom(first, last, &tz)
            .map_err(|_| ApiError::bad_request("invalid_field", "`starts_on` or `ends_on` is out of range"))?;
        Asked::Range(range)
    } else {
        if starts_on.is_some() || ends_on.is_some() {
            return Err(ApiError::unprocessable(
                "field_not_allowed",
                "`starts_on` and `ends_on` go with a custom period; give `on` for a calendar one",
            ));
        }
        Asked::Day(match on {
            Some(day) => day,
            None => Scoring::today(&tz)?,
        })
    };
    let shown = state.scoring.team_progress(&p, team, &q.metric, kind, asked).await?;
    let currency = tenant.currency.as_str();
    let render = Render { kind: shown.of.unit, currency, tz: &tz };
    let figure = |v: Option<i128>| v.map_or(Value::Null, |v| render.figure(v));
    let parts: Vec<Value> = shown
        .members
        .iter()
        .map(|m| {
            json!({
                "user_id": m.user,
                "target_id": m.target.map(|(id, _, _)| id.as_uuid()),
                "goal": figure(m.target.map(|(_, goal, _)| goal)),
                "original_goal": figure(m.target.map(|(_, _, original)| i128::from(original))),
                "value": render.figure(m.value),
            })
        })
        .collect();
    let (source, target_id) = match shown.source {
        GoalSource::Target(id) => ("target", Some(id.as_uuid())),
        GoalSource::Members => ("members", None),
    };
    let mut answer = serde_json::Map::new();
    answer.insert("team_id".into(), json!(team));
    answer.insert("metric".into(), json!(q.metric));
    answer.insert("kind".into(), json!(shown.of.unit));
    answer.insert("currency".into(), json!(currency));
    answer.insert("goal_source".into(), json!(source));
    answer.insert("target_id".into(), json!(target_id));
    answer.extend(render.progress(&shown.of));
    answer.insert("members".into(), Value::Array(parts));
    Ok(axum::Json(Value::Object(answer)))
}
