//! KPI totals by user or team over a date range in the tenant's time zone.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, User};
use crate::cli::output::money_to_decimal;
use crate::ingest::MetricKind;
use crate::store::{Owner, UserId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KpiQuery {
    metric: String,
    from: String,
    to: String,
    #[serde(default)]
    group_by: GroupBy,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum GroupBy {
    #[default]
    User,
    Team,
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

/// The kind of a metric, from the installed connectors that declare it.
pub(super) fn metric_kind(state: &AppState, metric: &str) -> Option<MetricKind> {
    state.registry.iter().find_map(|c| c.manifest().metrics.iter().find(|m| m.slug == metric).map(|m| m.kind))
}

/// Counts as integers; money as a decimal string in the tenant currency, rounded to its
/// minor units (the sums are kept exact in micro-units until here).
pub(super) fn render(kind: MetricKind, value: i128, currency: &str) -> Value {
    match kind {
        MetricKind::Count => json!(value),
        MetricKind::Money => json!(money_to_decimal(value, currency)),
    }
}

/// `GET /v1/kpis?metric=&from=&to=&group_by=user|team` (manager+): `from` inclusive, `to`
/// exclusive, both dates in the tenant's time zone. Every user (or team) has a row, zeros
/// included, best first.
pub(super) async fn kpis(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<KpiQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let kind = metric_kind(&state, &q.metric).ok_or(ApiError::NotFound("metric"))?;
    let tenant = state.store.tenant(p.tenant_id).await?;
    let tz = jiff::tz::TimeZone::get(&tenant.timezone)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("tenant zone: {e}")))?;
    let from = start_of_day_ms("from", &q.from, &tz)?;
    let to = start_of_day_ms("to", &q.to, &tz)?;
    if to <= from {
        return Err(ApiError::unprocessable("empty_range", "`to` must be after `from` (`to` is exclusive)"));
    }
    let totals = state.store.kpi_totals(p.tenant_id, &q.metric, from, to).await?;
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
    let mut rows: Vec<(String, &'static str, i128)> = match q.group_by {
        GroupBy::User => state
            .store
            .users(p.tenant_id)
            .await?
            .iter()
            .map(|u| (u.id.to_string(), "user_id", per_user.get(&u.id).copied().unwrap_or(0)))
            .collect(),
        GroupBy::Team => {
            let mut rows = Vec::new();
            for team in state.store.teams(p.tenant_id).await? {
                let members = state.store.team_members(p.tenant_id, team.id).await?;
                let value = members.iter().map(|m| per_user.get(m).copied().unwrap_or(0)).sum();
                rows.push((team.id.to_string(), "team_id", value));
            }
            rows
        }
    };
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    Ok(axum::Json(json!({
        "metric": q.metric,
        "kind": kind,
        "currency": tenant.currency.as_str(),
        "from": q.from,
        "to": q.to,
        "rows": rows.iter().map(|(id, key, v)| json!({ *key: id, "value": render(kind, *v, tenant.currency.as_str()) })).collect::<Vec<_>>(),
        "unattributed": render(kind, unattributed, tenant.currency.as_str()),
        "waiting_for_rate": waiting_rate,
    })))
}
