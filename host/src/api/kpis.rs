//! KPI totals by user, team or day over a date range in the tenant's time zone.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, User};
use super::metrics::{Figure, Figures, Unit};
use super::openapi::ErrorBody;
use super::shared::tenant_zone;
use crate::engine::period::local_date;
use crate::store::{Owner, TeamId, UserId};

/// The longest range `group_by=day` answers, in days.
pub(super) const MAX_DAYS: i64 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct KpiQuery {
    /// A metric slug: a connector's (`deals_won`, `revenue`, …) or a composite one.
    metric: String,
    /// The first local date counted (inclusive), such as `2025-06-01`.
    from: String,
    /// The first local date no longer counted (exclusive).
    to: String,
    /// Rows per user (default), per team, or per local date.
    #[serde(default)]
    #[param(inline)]
    group_by: GroupBy,
    /// With `group_by=day`: only this user's figures (a member always gets only their own).
    user_id: Option<String>,
    /// With `group_by=day`: only this team's members' figures.
    team_id: Option<String>,
}

/// How KPI rows are grouped.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum GroupBy {
    /// One row per user (a member sees only their own row).
    #[default]
    User,
    /// One row per team: the sum of its current members (managers and admins only).
    Team,
    /// One row per local date of the range, oldest first.
    Day,
}

/// KPI figures of one metric over a range.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct KpiAnswer {
    /// The metric slug.
    metric: String,
    /// `count`, `money` or `score` (composite metrics).
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: Unit,
    /// The tenant currency (money figures are in it).
    currency: String,
    /// The range's first date (inclusive).
    from: String,
    /// The range's end date (exclusive).
    to: String,
    /// Users or teams best first (zeros included), or dates oldest first.
    rows: Vec<KpiRow>,
    /// What CRM owners mapped to nobody did in the range (managers and admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    unattributed: Option<Figure>,
    /// Money facts left out because their currency has no rate yet (managers and admins
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for_rate: Option<u64>,
}

/// One row: exactly one of `user_id`, `team_id` or `date`, and the value.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct KpiRow {
    /// With `group_by=user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<uuid::Uuid>,
    /// With `group_by=team`.
    #[serde(skip_serializing_if = "Option::is_none")]
    team_id: Option<uuid::Uuid>,
    /// With `group_by=day`: the local date.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Date)]
    date: Option<String>,
    /// The total.
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Figure,
}

/// Midnight at the start of `date` in `tz`, in epoch milliseconds.
pub(super) fn start_of_day_ms(field: &'static str, date: &str, tz: &jiff::tz::TimeZone) -> Result<i64, ApiError> {
    let day: jiff::civil::Date = date
        .parse()
        .map_err(|_| ApiError::bad_request("invalid_query", format!("`{field}` must be a date such as 2025-06-01")))?;
    let zoned = day
        .to_zoned_datetime(tz.clone())
        .map_err(|_| ApiError::bad_request("invalid_query", format!("`{field}` is out of range")))?;
    Ok(zoned.timestamp().as_millisecond())
}

/// KPI totals of a metric (manager+).
///
/// `from` inclusive, `to` exclusive, both dates in the tenant's time zone. Money is a
/// decimal string in the tenant currency, counts are integers, composite scores numbers.
/// `group_by=user` (default): every user, zeros included, best first. `group_by=team`:
/// every team as the sum of its current members. `group_by=day`: every local date of the
/// range (at most 1000), oldest first, over every user's figures, or one user's
/// (`user_id`) or team's (`team_id`). Members read their own figures at `GET /v1/me/kpis`.
#[utoipa::path(get, path = "/v1/kpis", tag = "kpis", operation_id = "kpis", params(KpiQuery),
    responses(
        (status = 200, description = "The figures.", body = KpiAnswer),
        (status = 400, description = "A missing or malformed parameter.", body = ErrorBody),
        (status = 403, description = "A member (see `GET /v1/me/kpis`).", body = ErrorBody),
        (status = 404, description = "Unknown metric, or a `user_id`/`team_id` not in this tenant.", body = ErrorBody),
        (status = 422, description = "`to` not after `from` (`empty_range`), or over 1000 days by day (`range_too_long`).", body = ErrorBody),
    ))]
pub(super) async fn kpis(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<KpiQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    Ok(axum::Json(answer(&state, p, &q, true).await?))
}

/// The caller's own KPI figures (any user).
///
/// As `GET /v1/kpis`, over the caller's own figures only: `group_by=user` gives their one
/// row, `group_by=day` their days; `group_by=team`, `user_id` of someone else and `team_id`
/// answer 403. Nothing about unmapped CRM owners is shown.
#[utoipa::path(get, path = "/v1/me/kpis", tag = "kpis", operation_id = "my_kpis", params(KpiQuery),
    responses(
        (status = 200, description = "The caller's figures.", body = KpiAnswer),
        (status = 400, description = "A missing or malformed parameter.", body = ErrorBody),
        (status = 403, description = "Team figures, or another user's.", body = ErrorBody),
        (status = 404, description = "Unknown metric.", body = ErrorBody),
        (status = 422, description = "`to` not after `from` (`empty_range`), or over 1000 days by day (`range_too_long`).", body = ErrorBody),
    ))]
pub(super) async fn my_kpis(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<KpiQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(axum::Json(answer(&state, user.0, &q, false).await?))
}

/// The figures of `q`: everyone's when `manager`, else only `p`'s own.
async fn answer(
    state: &AppState,
    p: crate::store::Principal,
    q: &KpiQuery,
    manager: bool,
) -> Result<KpiAnswer, ApiError> {
    let metric = state.scoring.resolve(p.tenant_id, &q.metric).await?.ok_or(ApiError::NotFound("metric"))?;
    let (tenant, tz) = tenant_zone(state, &p).await?;
    let currency = tenant.currency.as_str();
    let from = start_of_day_ms("from", &q.from, &tz)?;
    let to = start_of_day_ms("to", &q.to, &tz)?;
    if to <= from {
        return Err(ApiError::unprocessable("empty_range", "`to` must be after `from` (`to` is exclusive)"));
    }
    if q.group_by != GroupBy::Day && (q.user_id.is_some() || q.team_id.is_some()) {
        return Err(ApiError::bad_request("invalid_query", "`user_id` and `team_id` go with `group_by=day` only"));
    }
    let render = |v: i128| metric.unit.figure(v, currency);
    let mut out = KpiAnswer {
        metric: q.metric.clone(),
        kind: metric.unit,
        currency: currency.to_owned(),
        from: q.from.clone(),
        to: q.to.clone(),
        rows: Vec::new(),
        unattributed: None,
        waiting_for_rate: None,
    };
    match q.group_by {
        GroupBy::User | GroupBy::Team => {
            if q.group_by == GroupBy::Team && !manager {
                return Err(ApiError::Forbidden("team figures need the manager or admin role"));
            }
            let totals = metric.totals(&state.store, p.tenant_id, from, to).await?;
            let mut per_user: BTreeMap<UserId, i128> = BTreeMap::new();
            let mut unattributed: i128 = 0;
            let mut waiting_rate: u64 = 0;
            for t in &totals {
                waiting_rate += t.waiting_rate;
                match &t.owner {
                    Owner::User(u) => *per_user.entry(*u).or_default() += t.value,
                    Owner::Unmapped { .. } => unattributed += t.value,
                }
            }
            let mut rows: Vec<(uuid::Uuid, i128)> = if q.group_by == GroupBy::User {
                let users: Vec<UserId> = if manager {
                    state.store.users(p.tenant_id).await?.iter().map(|u| u.id).collect()
                } else {
                    vec![p.user_id]
                };
                users.iter().map(|u| (u.as_uuid(), per_user.get(u).copied().unwrap_or(0))).collect()
            } else {
                let mut rows = Vec::new();
                for team in state.store.teams(p.tenant_id).await? {
                    let members = state.store.team_members(p.tenant_id, team.id).await?;
                    let value = members.iter().map(|m| per_user.get(m).copied().unwrap_or(0)).sum();
                    rows.push((team.id.as_uuid(), value));
                }
                rows
            };
            rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let by_user = q.group_by == GroupBy::User;
            out.rows = rows
                .into_iter()
                .map(|(id, v)| KpiRow {
                    user_id: by_user.then_some(id),
                    team_id: (!by_user).then_some(id),
                    date: None,
                    value: render(v),
                })
                .collect();
            if manager {
                // Former members (anonymous stand-ins of erased users) count for their
                // teams, and in the tenant's figures as unattributed (store/erasure.rs).
                let former = state.store.former_members(p.tenant_id).await?;
                unattributed += former.iter().filter_map(|u| per_user.get(u)).sum::<i128>();
                out.unattributed = Some(render(unattributed));
                out.waiting_for_rate = Some(waiting_rate);
            }
        }
        GroupBy::Day => {
            let first = local_date(from, &tz).map_err(|e| ApiError::Internal(e.into()))?;
            let last = local_date(to - 1, &tz).map_err(|e| ApiError::Internal(e.into()))?;
            let days = (last - first).get_days() as i64 + 1;
            if days > MAX_DAYS {
                return Err(ApiError::unprocessable(
                    "range_too_long",
                    format!("`group_by=day` covers at most {MAX_DAYS} days"),
                ));
            }
            let only: Option<Vec<UserId>> = match (&q.user_id, &q.team_id) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request("invalid_query", "give `user_id` or `team_id`, not both"));
                }
                (Some(raw), None) => {
                    let id: UserId = raw.parse().map_err(|_| ApiError::NotFound("user"))?;
                    state.store.user(p.tenant_id, id).await?;
                    if !manager && id != p.user_id {
                        return Err(ApiError::Forbidden("a member sees only their own figures"));
                    }
                    Some(vec![id])
                }
                (None, Some(raw)) => {
                    let id: TeamId = raw.parse().map_err(|_| ApiError::NotFound("team"))?;
                    if !state.store.team_exists(p.tenant_id, id).await? {
                        return Err(ApiError::NotFound("team"));
                    }
                    let members = state.store.team_members(p.tenant_id, id).await?;
                    if !manager {
                        return Err(ApiError::Forbidden("team figures need the manager or admin role"));
                    }
                    Some(members)
                }
                (None, None) if manager => None,
                (None, None) => Some(vec![p.user_id]),
            };
            let facts = metric.dated(&state.store, p.tenant_id, from, to).await?;
            let mut per_day: BTreeMap<jiff::civil::Date, i128> = BTreeMap::new();
            for f in facts {
                if only.as_ref().is_none_or(|users| users.contains(&f.user_id)) {
                    let day = local_date(f.at_ms, &tz).map_err(|e| ApiError::Internal(e.into()))?;
                    *per_day.entry(day).or_default() += f.value;
                }
            }
            let mut day = first;
            for _ in 0..days {
                out.rows.push(KpiRow {
                    user_id: None,
                    team_id: None,
                    date: Some(day.to_string()),
                    value: render(per_day.get(&day).copied().unwrap_or(0)),
                });
                day = day.tomorrow().map_err(|e| ApiError::Internal(e.into()))?;
            }
        }
    }
    Ok(out)
}
