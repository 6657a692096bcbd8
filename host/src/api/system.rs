//! Liveness, metrics, the processing register, the audit log, and the 404 and 405 fallbacks.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, User};
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

/// Prometheus metrics of this node.
///
/// Requests answered by status class and connectors installed, in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "prometheus_metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    out.push_str("# HELP oneup_http_requests_total HTTP requests answered, by status class.\n");
    out.push_str("# TYPE oneup_http_requests_total counter\n");
    for (class, n) in state.metrics.requests() {
        out.push_str(&format!("oneup_http_requests_total{{class=\"{class}\"}} {n}\n"));
    }
    out.push_str("# HELP oneup_connectors_installed Connector components installed on this node.\n");
    out.push_str("# TYPE oneup_connectors_installed gauge\n");
    out.push_str(&format!("oneup_connectors_installed {}\n", state.registry.len()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// The processing register (any user).
///
/// Machine-readable: the categories of personal data processed, their purposes, legal
/// bases, retention and the processors they go to.
#[utoipa::path(get, path = "/v1/privacy/register", tag = "system", operation_id = "privacy_register",
    responses((status = 200, description = "The register.", body = Object)))]
pub(super) async fn privacy_register(_: User) -> impl IntoResponse {
    axum::Json(json!({
        "controller_role": "processor for each tenant",
        "categories": [
            {
                "category": "account data",
                "data": ["name", "work e-mail", "role", "team memberships", "date joined (for pro-rated targets)", "API token hashes"],
                "subjects": "the tenant's users",
                "purpose": "sign-in, attributing performance figures to the user, navigating the platform",
                "legal_basis": "contract",
                "retention": "as long as the account exists; erased with it (DELETE /v1/users/{id})",
            },
            {
                "category": "performance figures",
                "data": ["metric", "value (count or money)", "time", "keyed hash of the CRM owner id", "keyed hash of the CRM record id"],
                "subjects": "the tenant's users",
                "purpose": "KPIs, targets, contests and incentives inside the tenant",
                "legal_basis": "legitimate interest of the tenant (operational performance management)",
                "retention": "while the integration exists; purged on request (DELETE /v1/integrations/{id}?purge=true); on erasure of the user, kept for their teams' totals under an anonymous former member with random hashes, never linked to the person or their CRM id again",
                "source": "the tenant's CRM, opt-in per integration, read-only",
                "not_kept": ["names, e-mails or details of customers or contacts", "deal titles, notes, free text", "raw CRM ids", "CRM users' e-mails (compared, then dropped)"],
            },
            {
                "category": "targets, contests and rewards",
                "data": ["targets assigned to the user or their teams", "contest participations and standings (rank, value)", "points ledger (awards and revocations, with the target or contest they were for)"],
                "subjects": "the tenant's users",
                "purpose": "motivation and recognition inside the tenant",
                "legal_basis": "legitimate interest of the tenant (operational performance management)",
                "retention": "while the target, contest or account exists; a person's own targets, participations and points are deleted with their account; final contest standings keep only the erased user's old id, which names nobody",
                "visible_to": "members see their own figures and the contests they take part in; managers and admins see the tenant's",
            },
            {
                "category": "integration credentials",
                "data": ["CRM API tokens or OAuth refresh tokens"],
                "purpose": "reading the tenant's CRM",
                "retention": "encrypted at rest; destroyed when the integration is disabled",
            },
            {
                "category": "audit log",
                "data": ["who (user id), what, when, to which ids"],
                "purpose": "accountability for consent and administration",
                "retention": "append-only, for the life of the tenant",
            },
        ],
        "processors": [
            {
                "name": "Intercom (customer messaging)",
                "data": ["name", "e-mail address"],
                "purpose": "support conversations with the user",
                "direction": "outbound: the one flow of personal data out of the platform",
            }
        ],
        "sharing": "performance data is visible inside the tenant only, to the roles the tenant allows; never sold or shared",
        "integrations": "opt-in; data flows from the CRM to oneup only; nothing is ever written to a CRM",
    }))
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
