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
//! range). [`effective_goal`] is the one rule for the goal owed over a period (progress,
//! incentives, contests ranked by percent of own target); [`GoalBook`] picks the target a
//! contest measures each participant against.

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
use crate::engine::period::{days_between, local_date};
use crate::engine::{DatedValue, Period, PeriodError, PeriodKind, Progress, WorkCalendar};
use crate::store::engine::{Tier, Visible};
use crate::store::types::now_ms;
use crate::store::{Actor, Assignee, NewTarget, Principal, Role, StoreError, Target, TargetId, TeamId, UserId};

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

/// A local date of the request, or 400 naming the field.
fn parse_date(field: &'static str, text: &str) -> Result<jiff::civil::Date, ApiError> {
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

/// A target's first period: its custom range, or the period of its kind containing
/// `starts_on` (weeks from its own week start).
pub(super) fn first_period(target: &Target, tz: &TimeZone) -> Result<Period, PeriodError> {
    match (target.period, target.ends_on) {
        (PeriodKind::Custom, Some(last)) => Period::custom(target.starts_on, last, tz),
        (PeriodKind::Custom, None) => Err(PeriodError),
        (kind, _) => Period::containing_with(kind, target.starts_on, target.week_start, tz),
    }
}

/// The period a target's progress is measured over at `now_ms`: its only one, or, when
/// it recurs, the current one (the first until that has ended).
pub(super) fn current_period(target: &Target, now_ms: i64, tz: &TimeZone) -> Result<Period, PeriodError> {
    let first = first_period(target, tz)?;
    if target.recurring && now_ms >= first.end_ms {
        Period::containing_instant_with(target.period, now_ms, target.week_start, tz)
    } else {
        Ok(first)
    }
}

/// The period of `target` that contains the local day `day`, if it covers that day.
fn period_covering(target: &Target, day: jiff::civil::Date, tz: &TimeZone) -> Result<Option<Period>, PeriodError> {
    let first = first_period(target, tz)?;
    if day < first.first_day {
        return Ok(None);
    }
    if day < first.end_day {
        return Ok(Some(first));
    }
    if target.recurring {
        return Period::containing_with(target.period, day, target.week_start, tz).map(Some);
    }
    Ok(None)
}

/// The goal a target's assignee owes over `period`, as its progress shows it (`goal`): a
/// user who joined after the period started owes a working-day share of it
/// ([`WorkCalendar::prorate`]; nothing if they joined after it ended); a team the goal as
/// set. Progress, team progress, target incentives and contests ranked by percent of own
/// target all take their goal from here.
pub(super) fn effective_goal(
    goal: i64,
    assignee: Assignee,
    period: &Period,
    calendar: &WorkCalendar,
    joined: &HashMap<UserId, jiff::civil::Date>,
) -> i128 {
    match assignee {
        Assignee::User(user) => match joined.get(&user) {
            Some(day) => calendar.prorate(i128::from(goal), period, *day),
            None => i128::from(goal),
        },
        Assignee::Team(_) => i128::from(goal),
    }
}

/// A custom range's days checked as a target's are: both given (422 `range_required`),
/// the last not before the first (422 `range_ends_before_start`), at most
/// [`MAX_CUSTOM_DAYS`] long (422 `range_too_long`).
fn check_range(
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

/// What the goals of a contest ranked by percent of own target are read from: every
/// target of its metric in the tenant, the join dates and the working calendar (three
/// reads, whatever the number of participants).
pub(super) struct GoalBook {
    targets: HashMap<Assignee, Vec<Target>>,
    joined: HashMap<UserId, jiff::civil::Date>,
    calendar: WorkCalendar,
    /// The contest's window `[start, end)` and its first local day.
    window: (i64, i64),
    first_day: jiff::civil::Date,
}

impl GoalBook {
    /// The targets of `metric` for a contest over `[start_ms, end_ms)`.
    pub(super) async fn load(
        state: &AppState,
        tenant: crate::store::TenantId,
        metric: &str,
        (start_ms, end_ms): (i64, i64),
        tz: &TimeZone,
    ) -> Result<Self, ApiError> {
        let mut targets: HashMap<Assignee, Vec<Target>> = HashMap::new();
        for t in state.store.targets_of_metric(tenant, metric).await? {
            targets.entry(t.assignee).or_default().push(t);
        }
        Ok(Self {
            targets,
            joined: state.store.joined_on(tenant).await?,
            calendar: state.store.calendar(tenant).await?.calendar,
            window: (start_ms, end_ms),
            first_day: local_date(start_ms, tz).map_err(|e| ApiError::Internal(e.into()))?,
        })
    }

    /// The effective goal of `assignee`'s own target that the contest uses: among their
    /// targets of the metric, those with a period containing the contest's first local day
    /// (a recurring target's period then), the one whose period is closest to the window
    /// ([`crate::engine::closest_period`]); its goal as its progress shows it for that
    /// period ([`effective_goal`]). `None` without such a target.
    pub(super) fn own_goal(&self, assignee: Assignee, tz: &TimeZone) -> Result<Option<i128>, ApiError> {
        let Some(targets) = self.targets.get(&assignee) else { return Ok(None) };
        let mut candidates = Vec::with_capacity(targets.len());
        for t in targets {
            if let Some(period) = period_covering(t, self.first_day, tz).map_err(|e| ApiError::Internal(e.into()))? {
                candidates.push((t, period));
            }
        }
        Ok(crate::engine::closest_period(self.window.0, self.window.1, candidates)
            .map(|(t, period)| effective_goal(t.goal, t.assignee, &period, &self.calendar, &self.joined)))
    }

    /// A team's goal, as `GET /v1/teams/{id}/progress` picks its `goal_source`: its own
    /// target ([`GoalBook::own_goal`]), or failing that the sum of its `members`' own goals
    /// (each as they would have as a user participant); `None` when neither the team nor
    /// any member has one.
    pub(super) fn team_goal(&self, team: TeamId, members: &[UserId], tz: &TimeZone) -> Result<Option<i128>, ApiError> {
        if let Some(goal) = self.own_goal(Assignee::Team(team), tz)? {
            return Ok(Some(goal));
        }
        let mut sum: Option<i128> = None;
        for &member in members {
            if let Some(goal) = self.own_goal(Assignee::User(member), tz)? {
                sum = Some(sum.unwrap_or(0).saturating_add(goal));
            }
        }
        Ok(sum)
    }
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
            None => local_date(now_ms(), &tz).map_err(|e| ApiError::Internal(e.into()))?,
        };
        (day, Period::containing_with(body.period, day, calendar.week_start, &tz).map_err(out_of_range)?)
    };
    let metric = resolve(&state, p.tenant_id, &body.metric).await?.ok_or(ApiError::NotFound("metric"))?;
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

    /// value, goal, ratio, pace, status, achieved_at and tiers, as a JSON object.
    fn progress(
        &self,
        progress: &Progress,
        period: &Period,
        facts: &[DatedValue],
        tiers: &[(i128, Option<String>)],
    ) -> serde_json::Map<String, Value> {
        let expected = match self.kind {
            Unit::Count => json!(progress.pace.expected_scaled(progress.goal, 100) as f64 / 100.0),
            Unit::Money => json!(money_to_decimal(progress.expected(), self.currency)),
            Unit::Score => score_json(progress.expected()),
        };
        let tiers: Vec<Value> = tiers
            .iter()
            .map(|(goal, label)| {
                let at = Progress::tier(period, facts, *goal);
                json!({
                    "goal": self.figure(*goal),
                    "label": label,
                    "reached": at.is_some(),
                    "achieved_at": at.map(|at| instant(at, self.tz)),
                })
            })
            .collect();
        let answer = json!({
            "period": self.period(period),
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

/// The progress of `goal` over `period` at `now_ms`, paced by the tenant's working days.
fn compute(
    goal: i128,
    period: &Period,
    now_ms: i64,
    facts: &[DatedValue],
    calendar: &WorkCalendar,
    tz: &TimeZone,
) -> Result<Progress, ApiError> {
    let clock = calendar.pace_clock(period, now_ms, tz).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Progress::compute_paced(goal, period, clock, facts))
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
    let members = visible_target(&state, &p, &target).await?;
    super::incentives::award_target(&state, p.tenant_id, &target).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let metric = resolve_stored(&state, p.tenant_id, &target.metric).await?;
    let calendar = state.store.calendar(p.tenant_id).await?.calendar;
    let now = now_ms();
    let period = current_period(&target, now, &tz).map_err(|e| ApiError::Internal(e.into()))?;
    let facts: Vec<DatedValue> = metric
        .dated(&state, p.tenant_id, period.start_ms, period.end_ms)
        .await?
        .into_iter()
        .filter(|f| members.contains(&f.user_id))
        .map(|f| DatedValue::new(f.at_ms, f.value))
        .collect();
    // A user who joined after the period started owes a working-day share of the goal.
    let joined = state.store.joined_on(p.tenant_id).await?;
    let joined_on = match target.assignee {
        Assignee::User(u) => joined.get(&u).copied().filter(|d| *d > period.first_day),
        Assignee::Team(_) => None,
    };
    let share = |goal: i64| effective_goal(goal, target.assignee, &period, &calendar, &joined);
    let progress = compute(share(target.goal), &period, now, &facts, &calendar, &tz)?;
    let tiers: Vec<(i128, Option<String>)> = target.tiers.iter().map(|t| (share(t.goal), t.label.clone())).collect();
    let render = Render { kind: metric.unit, currency, tz: &tz };
    let mut answer = serde_json::Map::new();
    answer.insert("id".into(), json!(target.id));
    answer.insert("assignee".into(), json!(AssigneeView::of(target.assignee)));
    answer.insert("metric".into(), json!(target.metric));
    answer.insert("kind".into(), json!(metric.unit));
    answer.insert("currency".into(), json!(currency));
    answer.insert("recurring".into(), json!(target.recurring));
    answer.extend(render.progress(&progress, &period, &facts, &tiers));
    answer.insert("original_goal".into(), render.figure(i128::from(target.goal)));
    answer.insert("joined_on".into(), json!(joined_on.map(|d| d.to_string())));
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

/// What a team's progress is asked about: a day inside a calendar period, or a custom range.
enum Asked {
    Day(jiff::civil::Date),
    Range(Period),
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
            None => local_date(now_ms(), &tz).map_err(|e| ApiError::Internal(e.into()))?,
        })
    };
    if !state.store.team_exists(p.tenant_id, team).await? {
        return Err(ApiError::NotFound("team"));
    }
    let members = state.store.team_members(p.tenant_id, team).await?;
    if p.role == Role::Member && !members.contains(&p.user_id) {
        return Err(ApiError::Forbidden("only managers and the team's members may see its progress"));
    }
    let metric = resolve(&state, p.tenant_id, &q.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    let currency = tenant.currency.as_str();
    let calendar = state.store.calendar(p.tenant_id).await?.calendar;
    let internal = |e: PeriodError| ApiError::Internal(e.into());
    let now = now_ms();
    // The period of `t` that counts: the one covering the day asked about, or for a custom
    // range, its own range if it is exactly the one asked.
    let counted = |t: &Target| -> Result<Option<Period>, ApiError> {
        match &asked {
            Asked::Day(day) => period_covering(t, *day, &tz).map_err(internal),
            Asked::Range(range) => {
                let own = first_period(t, &tz).map_err(internal)?;
                Ok((own.start_ms == range.start_ms && own.end_ms == range.end_ms).then_some(own))
            }
        }
    };

    // The team's own target, if one covers the day (or is the range).
    let mut own: Option<(Target, Period)> = None;
    for t in state.store.targets_of(p.tenant_id, Assignee::Team(team), &q.metric, kind).await? {
        if let Some(period) = counted(&t)? {
            own = Some((t, period));
        }
    }
    let period = match (&own, &asked) {
        (Some((_, period)), _) => *period,
        (None, Asked::Day(day)) => Period::containing_with(kind, *day, calendar.week_start, &tz).map_err(internal)?,
        (None, Asked::Range(range)) => *range,
    };
    let all_facts = metric.dated(&state, p.tenant_id, period.start_ms, period.end_ms).await?;
    let facts: Vec<DatedValue> =
        all_facts.iter().filter(|f| members.contains(&f.user_id)).map(|f| DatedValue::new(f.at_ms, f.value)).collect();
    let joined = state.store.joined_on(p.tenant_id).await?;
    let render = Render { kind: metric.unit, currency, tz: &tz };
    let mut parts = Vec::with_capacity(members.len());
    let mut members_goal: i128 = 0;
    let mut any_member_target = false;
    for &member in &members {
        let value: i128 = all_facts.iter().filter(|f| f.user_id == member).map(|f| f.value).sum();
        let mut found: Option<(Target, Period)> = None;
        for t in state.store.targets_of(p.tenant_id, Assignee::User(member), &q.metric, kind).await? {
            if let Some(their) = counted(&t)? {
                found = Some((t, their));
            }
        }
        let (target_id, goal, original) = match &found {
            Some((t, their)) => {
                let effective = effective_goal(t.goal, t.assignee, their, &calendar, &joined);
                any_member_target = true;
                members_goal += effective;
                (Some(t.id.as_uuid()), render.figure(effective), render.figure(i128::from(t.goal)))
            }
            None => (None, Value::Null, Value::Null),
        };
        parts.push(json!({
            "user_id": member,
            "target_id": target_id,
            "goal": goal,
            "original_goal": original,
            "value": render.figure(value),
        }));
    }
    let (source, target_id, goal, tiers) = match &own {
        Some((t, _)) => (
            "target",
            Some(t.id.as_uuid()),
            i128::from(t.goal),
            t.tiers.iter().map(|tier| (i128::from(tier.goal), tier.label.clone())).collect(),
        ),
        None if any_member_target => ("members", None, members_goal, Vec::new()),
        None => return Err(ApiError::NotFound("target")),
    };
    let progress = compute(goal, &period, now, &facts, &calendar, &tz)?;
    let mut answer = serde_json::Map::new();
    answer.insert("team_id".into(), json!(team));
    answer.insert("metric".into(), json!(q.metric));
    answer.insert("kind".into(), json!(metric.unit));
    answer.insert("currency".into(), json!(currency));
    answer.insert("goal_source".into(), json!(source));
    answer.insert("target_id".into(), json!(target_id));
    answer.extend(render.progress(&progress, &period, &facts, &tiers));
    answer.insert("members".into(), Value::Array(parts));
    Ok(axum::Json(Value::Object(answer)))
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
    let metric = resolve_stored(&state, p.tenant_id, &target.metric).await?;
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
