//! The operator's view of tenants: listing them, changing a tenant's name, zone or
//! currency, offboarding one, and the operator's own audit.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Operator};
use super::openapi::ErrorBody;
use super::paging::{self, PageQuery};
use super::tenants::{check_name, parse_id, utc};
use crate::ingest::Currency;
use crate::store::lifecycle::TenantUpdate;
use crate::store::{Actor, Resync, Tenant, TenantId};

/// A tenant as the operator sees it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TenantInfo {
    /// Its id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// IANA time zone, in which its periods are cut and its CRM dates placed.
    #[schema(example = "Europe/London")]
    timezone: String,
    /// ISO 4217 code of the tenant currency.
    #[schema(example = "GBP")]
    currency: String,
    /// When it was created (RFC 3339, UTC).
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&Tenant> for TenantInfo {
    fn from(t: &Tenant) -> Self {
        TenantInfo {
            id: t.id.as_uuid(),
            name: t.name.clone(),
            timezone: t.timezone.clone(),
            currency: t.currency.as_str().to_owned(),
            created_at: utc(t.created_at_ms),
        }
    }
}

/// `GET /v1/tenants`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TenantPage {
    /// Newest first.
    tenants: Vec<TenantInfo>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// Lists every tenant, newest first (operator).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", operation_id = "list_tenants", params(PageQuery),
    responses(
        (status = 200, description = "A page of tenants.", body = TenantPage),
        (status = 400, description = "`limit` out of range (`invalid_query`) or a cursor this API did not give (`invalid_cursor`).", body = ErrorBody),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
    ))]
pub(super) async fn list_tenants(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (limit, after) = q.parse()?;
    let tenants = state.store.tenants_page(after, limit + 1).await?;
    let (tenants, next_cursor) = paging::finish(tenants, limit, |t| (t.created_at_ms, t.id.as_uuid()));
    Ok(axum::Json(TenantPage { tenants: tenants.iter().map(TenantInfo::from).collect(), next_cursor }))
}

/// One tenant (operator).
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "get_tenant",
    params(("id" = uuid::Uuid, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The tenant.", body = TenantInfo),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
        (status = 404, description = "No such tenant (offboarded ones included).", body = ErrorBody),
    ))]
pub(super) async fn get_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant: TenantId = parse_id("tenant", &id)?;
    let tenant = state.store.tenant(tenant).await?;
    Ok(axum::Json(TenantInfo::from(&tenant)))
}

/// What to change; at least one field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateTenantBody {
    /// A new display name, 1 to 200 characters.
    name: Option<String>,
    /// A new IANA time zone.
    #[schema(example = "Europe/Paris")]
    timezone: Option<String>,
    /// A new ISO 4217 tenant currency.
    #[schema(example = "EUR")]
    currency: Option<String>,
}

/// `PATCH /v1/tenants/{id}`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TenantUpdatedView {
    /// The tenant now.
    tenant: TenantInfo,
    /// How many exchange rates were deleted: they converted into the old currency (a new
    /// currency deletes them all; set rates into the new one with `PUT /v1/fx-rates`).
    fx_rates_deleted: u64,
    /// How many amounts now wait for an exchange rate into the tenant currency.
    amounts_waiting_for_rate: u64,
    /// The integrations whose next run reads everything again (a new zone: dates the CRM
    /// gives as calendar days are placed in it), by connector id.
    resync: Vec<String>,
}

/// Changes a tenant's name, time zone or currency (operator).
///
/// Every figure becomes what it would be in a tenant created with the new settings.
/// Periods (days, weeks, months… of KPIs, targets, incentives) are cut in the tenant's zone
/// whenever they are read, so they follow a new zone at once; amounts the CRM dates by
/// calendar day are placed at the start of that day in the zone when they are synced, so
/// a new zone also resyncs every enabled integration (`resync` in the answer: the next run
/// reads everything again and reconciles). A new currency deletes the exchange rates (they
/// converted into the old one), converts every amount again (those in the new currency
/// count as they are, the others wait for a rate: `PUT /v1/fx-rates` converts them) and sums
/// every contest's totals again. Leaderboards and their caches follow at once. Goals and
/// thresholds are stated in the tenant currency and are not converted. Audited in the
/// tenant's log (`tenant.updated`, naming the fields changed).
#[utoipa::path(patch, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "update_tenant",
    params(("id" = uuid::Uuid, Path, description = "The tenant.")),
    request_body = UpdateTenantBody,
    responses(
        (status = 200, description = "Changed.", body = TenantUpdatedView),
        (status = 400, description = "Nothing to change (`invalid_body`), or a field that is not valid (`invalid_field`, the message names it).", body = ErrorBody),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
        (status = 404, description = "No such tenant.", body = ErrorBody),
    ))]
pub(super) async fn update_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateTenantBody>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant: TenantId = parse_id("tenant", &id)?;
    if body.name.is_none() && body.timezone.is_none() && body.currency.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "nothing to change: give `name`, `timezone` and/or `currency`",
        ));
    }
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let timezone = body.timezone.as_deref().map(check_zone).transpose()?;
    let currency = body
        .currency
        .as_deref()
        .map(|c| {
            Currency::parse(c)
                .ok_or_else(|| ApiError::bad_request("invalid_field", "`currency` is not an ISO 4217 code (e.g. GBP)"))
        })
        .transpose()?;
    let update = TenantUpdate { name: name.as_deref(), timezone: timezone.as_deref(), currency };
    let updated = state.store.update_tenant(tenant, &update, Actor::Operator).await?;
    let mut resync = Vec::new();
    if updated.zone_changed {
        for integration in state.store.integrations(tenant).await? {
            if !integration.enabled {
                continue;
            }
            let when = match state.store.resync(tenant, &integration.connector_id).await {
                Ok(Resync::Now(_)) => "now",
                Ok(Resync::AfterRunning(_)) => "after_running_run",
                // Disabled meanwhile: nothing to read again.
                Err(crate::store::StoreError::IntegrationDisabled) => continue,
                Err(e) => return Err(e.into()),
            };
            let subject = format!("{} {when} timezone", integration.connector_id);
            state
                .store
                .append_audit(
                    tenant,
                    &crate::store::AuditEntry {
                        actor: Actor::Operator,
                        action: "integration.resync",
                        subject: &subject,
                    },
                )
                .await?;
            resync.push(integration.connector_id);
        }
        state.scheduler.wake();
    }
    Ok(axum::Json(TenantUpdatedView {
        tenant: TenantInfo::from(&updated.tenant),
        fx_rates_deleted: updated.fx_rates_deleted,
        amounts_waiting_for_rate: updated.amounts_waiting,
        resync,
    }))
}

/// Checks an IANA zone name.
fn check_zone(zone: &str) -> Result<String, ApiError> {
    let zone = zone.trim();
    if zone.is_empty() || jiff::tz::TimeZone::get(zone).is_err() {
        return Err(ApiError::bad_request("invalid_field", "`timezone` is not an IANA time zone (e.g. Europe/London)"));
    }
    Ok(zone.to_owned())
}

/// `DELETE /v1/tenants/{id}`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct OffboardedView {
    /// The tenant that was removed.
    tenant_id: uuid::Uuid,
    /// When (RFC 3339, UTC).
    #[schema(format = DateTime)]
    offboarded_at: String,
    /// Rows deleted per table (every table holding tenant data is listed, zeros included).
    #[schema(example = json!({"users": 12, "facts": 40312, "tenants": 1}))]
    removed: BTreeMap<String, u64>,
    /// Rows deleted in all.
    total: u64,
}

/// Offboards a tenant (operator).
///
/// Destroys every row of the tenant in one transaction: users, API tokens (they stop
/// working at once: 401), teams, integrations with their sealed credentials, pending OAuth
/// authorisations, every KPI fact and run, contests, targets, incentives, the audit log,
/// and the tenant itself with its hashing key (the key behind every keyed hash of its CRM
/// ids: without it nothing left anywhere, backups aside, can be linked to a CRM record
/// again). A sync of the tenant running meanwhile ends without committing anything more.
/// The operator's audit (`GET /v1/operator/audit`) keeps only that it happened: the
/// tenant's id, the time and the rows removed per table. Irreversible; a second call is 404.
#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "offboard_tenant",
    params(("id" = uuid::Uuid, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "Removed, with what was removed.", body = OffboardedView),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
        (status = 404, description = "No such tenant (offboarded already, say).", body = ErrorBody),
    ))]
pub(super) async fn offboard_tenant(
    State(state): State<AppState>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant: TenantId = parse_id("tenant", &id)?;
    let report = state.store.offboard_tenant(tenant).await?;
    state.scoring.leaderboards().forget_tenant(tenant);
    tracing::info!(%tenant, rows = report.removed.values().sum::<u64>(), "tenant offboarded");
    Ok(axum::Json(OffboardedView {
        tenant_id: tenant.as_uuid(),
        offboarded_at: utc(report.at_ms),
        total: report.removed.values().sum(),
        removed: report.removed,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OperatorAuditQuery {
    /// Entries after this sequence number (default 0: from the first).
    #[serde(default)]
    after: u64,
    /// At most this many entries, 1 to 1000 (default 100).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `GET /v1/operator/audit`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct OperatorAudit {
    /// Oldest first.
    entries: Vec<OperatorAuditEntry>,
}

/// One entry of the operator's audit.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct OperatorAuditEntry {
    /// Its sequence number; pass the last one as `after` for the next page.
    seq: u64,
    /// When (RFC 3339, UTC).
    #[schema(format = DateTime)]
    at: String,
    /// What: `tenant.offboarded`.
    action: String,
    /// To what: `tenant <id>`.
    subject: String,
    /// Counts: for `tenant.offboarded`, rows removed per table.
    #[schema(value_type = Object)]
    detail: serde_json::Value,
}

/// The operator's audit (operator).
///
/// What outlives a tenant: each offboarding, with the tenant's id, the time and the rows
/// removed per table; nothing else of the tenant. Append-only, oldest first.
#[utoipa::path(get, path = "/v1/operator/audit", tag = "system", operation_id = "operator_audit",
    params(OperatorAuditQuery),
    responses(
        (status = 200, description = "A page of entries.", body = OperatorAudit),
        (status = 400, description = "`limit` or `after` out of range, or an unknown parameter.", body = ErrorBody),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
    ))]
pub(super) async fn operator_audit(
    State(state): State<AppState>,
    _: Operator,
    ApiQuery(q): ApiQuery<OperatorAuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if !(1..=1000).contains(&q.limit) {
        return Err(ApiError::bad_request("invalid_query", "`limit` must be between 1 and 1000"));
    }
    if i64::try_from(q.after).is_err() {
        return Err(ApiError::bad_request("invalid_query", "`after` must be a sequence number (at most 2^63 - 1)"));
    }
    let entries = state.store.operator_audit(q.after, q.limit).await?;
    Ok(axum::Json(OperatorAudit {
        entries: entries
            .into_iter()
            .map(|e| OperatorAuditEntry {
                seq: e.seq,
                at: utc(e.at_ms),
                action: e.action,
                subject: e.subject,
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
    }))
}
