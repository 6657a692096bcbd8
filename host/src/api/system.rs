//! Liveness and readiness probes, metrics, the audit log and its verification, and the 404 and 405 fallbacks.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Operator, User};
use super::openapi::ErrorBody;

/// `GET /healthz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// `ok`.
    status: &'static str,
    /// Whether integrations may point at plain-http loopback addresses
    /// (`--dev-allow-loopback`): development only, never in production.
    dev_allow_loopback: bool,
}

/// Liveness: the process and its database answer.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "healthz",
    responses((status = 200, description = "Up.", body = Health)))]
pub(super) async fn healthz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(Health { status: "ok", dev_allow_loopback: state.runtime.config().allow_loopback_http }))
}

/// The OpenAPI document of this API.
///
/// This very document: every route, its parameters, bodies, answers and security.
#[utoipa::path(get, path = "/openapi.json", tag = "system", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json")))]
pub(super) async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(super::openapi::document_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], text)
}

/// `GET /livez`'s and `GET /readyz`'s answer when all is well.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Probe {
    /// `ok`.
    status: &'static str,
}

/// Liveness: the process answers (nothing else is checked).
///
/// For a process manager's liveness probe: restart the node when this does not answer.
#[utoipa::path(get, path = "/livez", tag = "system", operation_id = "livez",
    responses((status = 200, description = "The process is up.", body = Probe)))]
pub(super) async fn livez() -> impl IntoResponse {
    axum::Json(Probe { status: "ok" })
}

/// Readiness: send this node traffic or not.
///
/// Ready when the database answers, every migration this binary knows is applied, and the
/// node is not draining (after SIGTERM it answers 503 `draining` for `--drain-secs` before
/// it closes its listener). For a load balancer's or orchestrator's readiness probe.
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = Probe),
        (status = 503, description = "Not ready, with the reason as the code: `draining` (shutting down), \
            `database_unavailable` (the database does not answer) or `schema_outdated` (migrations missing).",
            body = ErrorBody),
    ))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if *state.scheduler.stopping().borrow() {
        return Err(ApiError::unavailable("draining", "this node is shutting down; send requests to another node"));
    }
    let schema = match tokio::time::timeout(std::time::Duration::from_secs(5), state.store.schema_state()).await {
        Ok(Ok(schema)) => schema,
        Ok(Err(e)) => {
            tracing::warn!(code = e.code(), error = %e, "readiness: the database does not answer");
            return Err(ApiError::unavailable("database_unavailable", "the database does not answer"));
        }
        Err(_) => return Err(ApiError::unavailable("database_unavailable", "the database did not answer within 5 s")),
    };
    if !schema.is_current() {
        return Err(ApiError::unavailable(
            "schema_outdated",
            format!(
                "the database schema is at migration {} and this node needs {}: run `oneup migrate`",
                schema.applied, schema.expected
            ),
        ));
    }
    Ok(axum::Json(Probe { status: "ok" }))
}

/// Prometheus metrics of this node (operator).
///
/// In Prometheus' text format 0.0.4: CRM requests by connector and status, sync runs by
/// connector and status with their durations and reasons, changes accepted and rejected,
/// lease losses, HTTP requests by route template and status with their durations, syncs
/// running, leaderboard streams open, database connections, and, from the database,
/// integrations waiting for an admin, the queue's depth and oldest wait, and the number of
/// tenants. Label values are connector ids, codes and route templates only: never a tenant
/// id or anything personal. Takes the operator's token; `serve --metrics-addr` also serves
/// it without a token on a separate (private) listener.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "prometheus_metrics",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain"),
        (status = 401, description = "No token, or a token that is not valid (`unauthorized`).", body = ErrorBody),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address.", body = ErrorBody),
    ))]
pub(super) async fn metrics(State(state): State<AppState>, _: Operator) -> impl IntoResponse {
    metrics_open(State(state)).await
}

/// `GET /metrics` of the `--metrics-addr` listener: [`metrics`] without a token.
pub(super) async fn metrics_open(State(state): State<AppState>) -> impl IntoResponse {
    let (in_use, idle) = state.store.pool_connections();
    let database = match tokio::time::timeout(std::time::Duration::from_secs(5), state.store.ops_counts()).await {
        Ok(Ok(counts)) => Some(counts),
        Ok(Err(e)) => {
            tracing::warn!(code = e.code(), error = %e, "metrics: the database's figures could not be read");
            None
        }
        Err(_) => None,
    };
    let scraped = crate::telemetry::Scraped {
        pool_in_use: i64::from(in_use),
        pool_idle: i64::from(idle),
        sse_viewers: i64::try_from(state.security.open_streams()).unwrap_or(i64::MAX),
        connectors_installed: i64::try_from(state.registry.len()).unwrap_or(i64::MAX),
        database,
    };
    state.metrics.set_scraped(&scraped);
    ([(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)], state.metrics.render())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Entries after this sequence number (default 0: from the first).
    #[serde(default)]
    after: u64,
    /// At most this many entries, 1 to 1000 (default 100).
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 1000)]
    limit: u32,
}

/// `GET /v1/audit`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct AuditLog {
    /// Oldest first.
    entries: Vec<AuditLogEntry>,
}

/// One audit entry.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct AuditLogEntry {
    /// Its sequence number; pass the last one as `after` for the next page.
    seq: u64,
    /// When, in milliseconds since the Unix epoch.
    at_ms: i64,
    /// Who: `operator`, `system` or `user:<id>`.
    actor: String,
    /// What (`tenant.created`, `integration.enabled`, …).
    action: String,
    /// To which ids.
    subject: String,
}

fn default_limit() -> u32 {
    100
}

/// The tenant's audit log (admin).
///
/// Append-only, oldest first: who did what to which ids, and when.
#[utoipa::path(get, path = "/v1/audit", tag = "system", operation_id = "audit_log", params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries.", body = AuditLog),
        (status = 400, description = "`limit` or `after` out of range, or an unknown parameter.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ))]
pub(super) async fn audit(
    State(state): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    if !(1..=1000).contains(&q.limit) {
        return Err(ApiError::bad_request("invalid_query", "`limit` must be between 1 and 1000"));
    }
    if i64::try_from(q.after).is_err() {
        return Err(ApiError::bad_request("invalid_query", "`after` must be a sequence number (at most 2^63 - 1)"));
    }
    let entries = state.store.audit_log(p.tenant_id, q.after, q.limit).await?;
    Ok(axum::Json(AuditLog {
        entries: entries
            .iter()
            .map(|e| AuditLogEntry {
                seq: e.seq,
                at_ms: e.at_ms,
                actor: e.actor.to_stored(),
                action: e.action.clone(),
                subject: e.subject.clone(),
            })
            .collect(),
    }))
}

/// `GET /v1/audit/verify`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct AuditVerifyView {
    /// Whether every entry verifies.
    verified: bool,
    /// Entries read.
    entries: u64,
    /// The chain hash of the newest entry (64 hex digits; zeros for an empty log). Keep it
    /// outside the service to detect, later, the removal of the newest entries.
    head: String,
    /// The first entry that does not verify, if any.
    first_broken: Option<BrokenEntryView>,
}

/// The first entry of the audit log that does not verify.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct BrokenEntryView {
    /// Its sequence number (for `truncated`: the first missing one).
    seq: u64,
    /// `mismatch` (its chain hash is not what its fields and the previous entry give: it
    /// was edited, or one before it was removed or reordered), `unchained` (no chain hash),
    /// `gap` (entries before it are missing), `truncated` (the newest entries are missing).
    #[schema(value_type = String)]
    reason: crate::store::ChainBreak,
}

/// Verifies the tenant's audit chain (admin).
///
/// Recomputes the keyed hash chain over every entry, oldest first, and names the first
/// entry that does not verify: an entry edited, removed or inserted underneath the service.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "system", operation_id = "audit_verify",
    responses(
        (status = 200, description = "The verdict.", body = AuditVerifyView),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ))]
pub(super) async fn audit_verify(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let v = state.store.verify_audit(p.tenant_id).await?;
    Ok(axum::Json(AuditVerifyView {
        verified: v.first_broken.is_none(),
        entries: v.entries,
        head: v.head,
        first_broken: v.first_broken.map(|b| BrokenEntryView { seq: b.seq, reason: b.reason }),
    }))
}

/// Any other path.
pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// A route that exists, asked with a method it does not take: 405 with the usual error body
/// (axum's own answer has an empty body).
pub(super) async fn method_not_allowed() -> impl IntoResponse {
    let body = json!({"error": {"code": "method_not_allowed", "message": "this route does not take this method"}});
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body))
}
