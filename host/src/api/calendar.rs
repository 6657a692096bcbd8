//! The tenant's working calendar (week start, working week, holidays) and users' join
//! dates: the settings behind week boundaries, pace by working days and pro-rated goals
//! (rules in [`crate::engine::calendar`]).
//!
//! A new week start applies to weekly targets created afterwards; existing targets keep
//! the week start (and so the periods) they were created with. Working days and holidays
//! apply to every progress computed after the change, past periods included: the pace and
//! pro-rating always use the calendar as it is now.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, User};
use super::openapi::ErrorBody;
use super::shared::{instant, tenant_zone};
use super::tenants::{audit, parse_id};
use crate::engine::WorkCalendar;
use crate::engine::calendar::{WEEKDAYS, parse_weekday, weekday_name};
use crate::store::calendar::StoredCalendar;
use crate::store::{Actor, UserId};

/// The most holidays a calendar holds.
pub const MAX_HOLIDAYS: usize = 1000;

/// A tenant's calendar.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct CalendarView {
    /// The day weeks start on: `monday` (ISO, the default) … `sunday`.
    week_start: String,
    /// The worked weekdays, Monday first (default Monday to Friday).
    working_days: Vec<String>,
    /// Local dates nobody works, ascending.
    holidays: Vec<String>,
    /// When an admin last set it; `null` while the defaults apply.
    updated_at: Option<String>,
}

/// A new calendar: it replaces the old one; fields left out take their defaults.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CalendarBody {
    /// `monday` … `sunday` (default `monday`).
    #[serde(default)]
    week_start: Option<String>,
    /// Worked weekdays, at least one, each once (default Monday to Friday).
    #[serde(default)]
    working_days: Option<Vec<String>>,
    /// Local dates (`2025-12-25`), each once, at most 1000 (default none).
    #[serde(default)]
    holidays: Option<Vec<String>>,
}

fn view(stored: &StoredCalendar, tz: &jiff::tz::TimeZone) -> CalendarView {
    let cal = &stored.calendar;
    CalendarView {
        week_start: weekday_name(cal.week_start).to_owned(),
        working_days: WEEKDAYS.into_iter().filter(|d| cal.works_on(*d)).map(|d| weekday_name(d).to_owned()).collect(),
        holidays: cal.holidays.iter().map(Date::to_string).collect(),
        updated_at: stored.updated_at_ms.map(|at| instant(at, tz)),
    }
}

/// The calendar a body asks for, or the error that refuses it.
fn parse_calendar(body: &CalendarBody) -> Result<WorkCalendar, ApiError> {
    let defaults = WorkCalendar::default();
    let weekday = |field: &str, name: &str| {
        parse_weekday(name).ok_or_else(|| {
            ApiError::bad_request("invalid_field", format!("`{field}` takes weekday names: monday, tuesday, … sunday"))
        })
    };
    let week_start = match &body.week_start {
        Some(name) => weekday("week_start", name)?,
        None => defaults.week_start,
    };
    let working_week = match &body.working_days {
        None => defaults.working_week,
        Some(names) => {
            let mut week = [false; 7];
            for name in names {
                let slot = &mut week[weekday("working_days", name)?.to_monday_zero_offset() as usize];
                if *slot {
                    return Err(ApiError::unprocessable(
                        "duplicate_day",
                        "a weekday is listed twice in `working_days`",
                    ));
                }
                *slot = true;
            }
            if !week.contains(&true) {
                return Err(ApiError::unprocessable("no_working_days", "`working_days` needs at least one day"));
            }
            week
        }
    };
    let mut holidays = BTreeSet::new();
    let listed = body.holidays.as_deref().unwrap_or_default();
    if listed.len() > MAX_HOLIDAYS {
        return Err(ApiError::unprocessable("too_many_holidays", format!("at most {MAX_HOLIDAYS} holidays")));
    }
    for text in listed {
        let day: Date = text
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_field", "`holidays` takes local dates such as 2025-12-25"))?;
        if !holidays.insert(day) {
            return Err(ApiError::unprocessable("duplicate_day", "a date is listed twice in `holidays`"));
        }
    }
    Ok(WorkCalendar { week_start, working_week, holidays })
}

/// The tenant's calendar (any user).
#[utoipa::path(get, path = "/v1/calendar", tag = "targets", operation_id = "get_calendar",
    responses((status = 200, description = "The calendar (the defaults until an admin sets one).", body = CalendarView)))]
pub(super) async fn get_calendar(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let (_, tz) = tenant_zone(&state, &p).await?;
    let stored = state.store.calendar(p.tenant_id).await?;
    Ok(axum::Json(view(&stored, &tz)))
}

/// Sets the tenant's calendar (admin; audited as `calendar.updated`).
///
/// Replaces it whole. A new week start applies to weekly targets created from now on;
/// working days and holidays to every progress from now on.
#[utoipa::path(put, path = "/v1/calendar", tag = "targets", operation_id = "set_calendar",
    request_body = CalendarBody,
    responses(
        (status = 200, description = "The calendar now.", body = CalendarView),
        (status = 400, description = "Malformed body, an unknown weekday or a bad date (`invalid_field`).", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 422, description = "No working day (`no_working_days`), a day listed twice (`duplicate_day`), more than 1000 holidays (`too_many_holidays`).", body = ErrorBody),
    ))]
pub(super) async fn set_calendar(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<CalendarBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let calendar = parse_calendar(&body)?;
    let (_, tz) = tenant_zone(&state, &p).await?;
    let stored = state.store.set_calendar(p.tenant_id, &calendar, p.user_id).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "calendar.updated", "calendar").await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(axum::Json(view(&stored, &tz)))
}

/// When a user joined.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinedOnBody {
    /// A local date, or `null` to clear it (no pro-rating).
    #[schema(format = Date, example = "2025-06-16")]
    joined_on: Option<String>,
}

/// Sets the date a user joined (manager+; audited as `user.joined_on_set`).
///
/// A user's targets are pro-rated by working days for periods that started before it.
#[utoipa::path(put, path = "/v1/users/{id}/joined-on", tag = "targets", operation_id = "set_joined_on",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    request_body = JoinedOnBody,
    responses(
        (status = 200, description = "Set.", body = JoinedOnBody),
        (status = 400, description = "Malformed body or a bad date (`invalid_field`).", body = ErrorBody),
        (status = 403, description = "A member.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn set_joined_on(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<JoinedOnBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let id: UserId = parse_id("user", &id)?;
    let joined_on = match &body.joined_on {
        Some(text) => Some(text.parse::<Date>().map_err(|_| {
            ApiError::bad_request("invalid_field", "`joined_on` must be a date such as 2025-06-16, or null")
        })?),
        None => None,
    };
    state.store.set_joined_on(p.tenant_id, id, joined_on).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "user.joined_on_set", &id.to_string()).await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(axum::Json(JoinedOnBody { joined_on: joined_on.map(|d| d.to_string()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> Result<WorkCalendar, (u16, String)> {
        let body: CalendarBody = serde_json::from_value(json).unwrap();
        parse_calendar(&body).map_err(|e| {
            let code = match &e {
                ApiError::BadRequest { code, .. } | ApiError::Unprocessable { code, .. } => (*code).to_owned(),
                _ => String::new(),
            };
            (e.status().as_u16(), code)
        })
    }

    #[test]
    fn calendar_bodies() {
        assert_eq!(body(serde_json::json!({})).unwrap(), WorkCalendar::default());
        let cal = body(serde_json::json!({"week_start": "sunday", "working_days": ["sunday", "monday"],
            "holidays": ["2025-12-26", "2025-12-25"]}))
        .unwrap();
        assert_eq!(cal.week_start, jiff::civil::Weekday::Sunday);
        assert_eq!(cal.working_week, [true, false, false, false, false, false, true]);
        assert_eq!(cal.holidays.len(), 2);
        let err = |j| body(j).unwrap_err();
        assert_eq!(err(serde_json::json!({"week_start": "Sunday"})), (400, "invalid_field".into()));
        assert_eq!(err(serde_json::json!({"working_days": []})), (422, "no_working_days".into()));
        assert_eq!(err(serde_json::json!({"working_days": ["monday", "monday"]})), (422, "duplicate_day".into()));
        assert_eq!(err(serde_json::json!({"working_days": ["funday"]})), (400, "invalid_field".into()));
        assert_eq!(err(serde_json::json!({"holidays": ["2025-02-30"]})), (400, "invalid_field".into()));
        assert_eq!(err(serde_json::json!({"holidays": ["2025-12-25", "2025-12-25"]})), (422, "duplicate_day".into()));
        let many: Vec<String> = (0..1001).map(|i| format!("{}-01-01", 3000 + i)).collect();
        assert_eq!(err(serde_json::json!({"holidays": many})), (422, "too_many_holidays".into()));
    }
}
