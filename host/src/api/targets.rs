//! Targets: a goal of one metric per period for a user or a team, and its progress.
//!
//! Periods are cut in the tenant's time zone ([`crate::engine::period`]); progress, pace,
//! status and the moment achieved follow [`crate::engine::progress`]. A team's value is the
//! sum of its current members' facts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::contests::{instant, stored_metric_kind, tenant_zone};
use super::error::ApiError;
use super::extract::{ApiJson, User};
use super::kpis::{metric_kind, render};
use super::tenants::{audit, parse_id};
use crate::cli::output::{minor_units, money_to_decimal};
use crate::engine::period::local_date;
use crate::engine::{DatedValue, Period, PeriodKind, Progress};
use crate::ingest::MetricKind;
use crate::store::types::now_ms;
use crate::store::{Actor, Assignee, NewTarget, Role, StoreError, TargetId, TeamId, UserId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTargetBody {
    assignee: AssigneeBody,
    metric: String,
    period: PeriodKind,
    goal: Value,
    #[serde(default)]
    starts_on: Option<String>,
    #[serde(default)]
    recurring: bool,
}

/// `{"user_id":…}` or `{"team_id":…}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum AssigneeBody {
    UserId(String),
    TeamId(String),
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

/// The goal in the metric's unit: a whole count, or micros of the tenant currency (at most
/// its minor units of decimals). Not a number: 400; zero or negative: 422.
fn parse_goal(goal: &Value, kind: MetricKind, currency: &str) -> Result<i64, ApiError> {
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
        MetricKind::Count => {
            if !frac.is_empty() {
                return Err(ApiError::bad_request("invalid_field", "`goal` of a count must be a whole number"));
            }
            units
        }
        MetricKind::Money => {
            let places = minor_units(currency) as usize;
            if frac.len() > places {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("`goal` has more decimals than {currency} has ({places})"),
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

/// `POST /v1/targets` (manager+): `{"assignee":{"user_id"}|{"team_id"},"metric","period",
/// "goal","starts_on","recurring"}` → 201 `{"id"}`.
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
    let kind = metric_kind(&state, &body.metric).ok_or(ApiError::NotFound("metric"))?;
    let goal = parse_goal(&body.goal, kind, tenant.currency.as_str())?;
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
    Ok((StatusCode::CREATED, axum::Json(json!({"id": target.id}))))
}

/// Rounds to four decimals for the answer.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `GET /v1/targets/{id}/progress` (manager+, the assignee, or a member of the assignee
/// team): the progress over the target's period, or the current period when it recurs
/// (the first one until it starts).
pub(super) async fn progress(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: TargetId = parse_id("target", &id)?;
    let target = state.store.target(p.tenant_id, id).await?;
    let members: Vec<UserId> = match target.assignee {
        Assignee::User(u) => vec![u],
        Assignee::Team(t) => state.store.team_members(p.tenant_id, t).await?,
    };
    let allowed = match p.role {
        Role::Admin | Role::Manager => true,
        Role::Member => members.contains(&p.user_id),
    };
    if !allowed {
        return Err(ApiError::Forbidden("only managers and the target's assignee may see its progress"));
    }
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let kind = stored_metric_kind(&state, &target.metric)?;
    let now = now_ms();
    let internal = |e: crate::engine::PeriodError| ApiError::Internal(e.into());
    let first = Period::containing(target.period, target.starts_on, &tz).map_err(internal)?;
    let period = if target.recurring && now >= first.end_ms {
        Period::containing_instant(target.period, now, &tz).map_err(internal)?
    } else {
        first
    };
    let facts: Vec<DatedValue> = state
        .store
        .dated_facts(p.tenant_id, &target.metric, period.start_ms, period.end_ms)
        .await?
        .into_iter()
        .filter(|f| members.contains(&f.user_id))
        .map(|f| DatedValue::new(f.at_ms, f.value))
        .collect();
    let progress = Progress::compute(i128::from(target.goal), &period, now, &facts);
    let expected = match kind {
        MetricKind::Count => json!(progress.pace.expected_scaled(progress.goal, 100) as f64 / 100.0),
        MetricKind::Money => json!(money_to_decimal(progress.expected(), currency)),
    };
    let assignee = match target.assignee {
        Assignee::User(u) => json!({"user_id": u}),
        Assignee::Team(t) => json!({"team_id": t}),
    };
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
        "value": render(kind, progress.value, currency),
        "goal": render(kind, progress.goal, currency),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(v: Value, kind: MetricKind) -> Result<i64, u16> {
        parse_goal(&v, kind, "GBP").map_err(|e| e.status().as_u16())
    }

    #[test]
    fn goals_in_each_unit() {
        assert_eq!(goal(json!(12), MetricKind::Count), Ok(12));
        assert_eq!(goal(json!("12"), MetricKind::Count), Ok(12));
        assert_eq!(goal(json!(12.0), MetricKind::Count), Ok(12));
        assert_eq!(goal(json!(2.5), MetricKind::Count), Err(400));
        assert_eq!(goal(json!("2500.50"), MetricKind::Money), Ok(2_500_500_000));
        assert_eq!(goal(json!(2500.5), MetricKind::Money), Ok(2_500_500_000));
        assert_eq!(goal(json!("7"), MetricKind::Money), Ok(7_000_000));
        assert_eq!(goal(json!("0.001"), MetricKind::Money), Err(400));
        assert_eq!(parse_goal(&json!("12.345"), MetricKind::Money, "KWD").ok(), Some(12_345_000));
        assert_eq!(parse_goal(&json!("12.5"), MetricKind::Money, "JPY").ok(), None);
    }

    #[test]
    fn bad_goals() {
        for bad in [json!("abc"), json!(""), json!("1e3"), json!(".5"), json!("5."), json!("+5"), json!(null)] {
            assert_eq!(goal(bad.clone(), MetricKind::Money), Err(400), "{bad}");
        }
        assert_eq!(goal(json!(true), MetricKind::Count), Err(400));
        assert_eq!(goal(json!([1]), MetricKind::Count), Err(400));
        assert_eq!(goal(json!(1e300), MetricKind::Count), Err(400));
        assert_eq!(goal(json!("99999999999999999999"), MetricKind::Count), Err(400));
        for not_positive in [json!(0), json!(-5), json!("-0.50"), json!("0.00"), json!(-1.5)] {
            let kind = if not_positive == json!(-1.5) { MetricKind::Money } else { MetricKind::Count };
            let kind = if not_positive.is_string() { MetricKind::Money } else { kind };
            assert_eq!(goal(not_positive.clone(), kind), Err(422), "{not_positive}");
        }
    }
}
