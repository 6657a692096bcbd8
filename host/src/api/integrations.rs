//! Installed connectors, integrations (the opt-in), sync runs and owner mapping.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, User};
use super::tenants::{audit, parse_id};
use crate::ingest::KeyedHash;
use crate::ingest::pseudonym::{Domain, keyed_hash};
use crate::ingest::validate::is_identifier;
use crate::runtime::manifest::{Grants, Manifest};
use crate::runtime::{IntegrationSetup, LoadedConnector, SyncError};
use crate::store::{
    Actor, EnableIntegration, Integration, MappingSource, Resync, Run, RunId, RunStatus, StoreError, UserId,
};

fn connector<'a>(state: &'a AppState, id: &str) -> Result<&'a LoadedConnector, ApiError> {
    state.registry.get(id).ok_or(ApiError::NotFound("connector"))
}

fn manifest_json(m: &Manifest) -> Value {
    json!({
        "id": m.id,
        "version": m.version,
        "contract": m.contract,
        "metrics": m.metrics,
        "config": m.config,
        "secrets": m.secrets.iter().map(|s| json!({"key": s.key, "required": s.required})).collect::<Vec<_>>(),
        "base_url_key": m.base_url_key,
        "allowed_hosts": m.allowed_hosts,
        "auth": m.auth,
        "default_sync_interval_secs": m.default_sync_interval.as_secs(),
    })
}

/// `GET /v1/connectors` (any user).
#[utoipa::path(get, path = "/v1/connectors", tag = "integrations", operation_id = "list_connectors",
    responses(
        (status = 200, description = "Installed connectors.", body = super::openapi::integration_schemas::ConnectorList),
    ))]
pub(super) async fn list_connectors(State(state): State<AppState>, _: User) -> impl IntoResponse {
    axum::Json(json!({"connectors": state.registry.iter().map(|c| manifest_json(c.manifest())).collect::<Vec<_>>()}))
}

/// The approval state of an integration against the installed component: its status and
/// what the installed component adds to the approved grants.
fn approval_json(state: &AppState, i: &Integration) -> (Option<String>, &'static str, Value) {
    let Some(installed) = state.registry.get(&i.connector_id) else {
        let status = if i.approval_digest.is_some() { "needs_approval" } else { "approved" };
        return (None, status, Value::Null);
    };
    let digest = installed.digest_hex();
    let approved = i.component_grants.as_deref().and_then(Grants::from_json);
    let changes = match (&approved, i.component_digest.as_deref() == Some(digest.as_str())) {
        (Some(approved), false) => Some(installed.manifest().grants().changes_from(approved)),
        _ => None,
    };
    let wider = changes.as_ref().is_some_and(|c| c.is_wider());
    let status = if i.approval_digest.is_some() || wider { "needs_approval" } else { "approved" };
    (Some(digest), status, changes.map_or(Value::Null, |c| json!(c)))
}

fn integration_json(state: &AppState, i: &Integration) -> Value {
    let (installed_digest, approval_status, grant_changes) = approval_json(state, i);
    json!({
        "connector": i.connector_id,
        "enabled": i.enabled,
        "config": i.config,
        "metrics": i.metrics,
        "sync_interval_secs": i.sync_interval_secs,
        "enabled_by": i.enabled_by,
        "enabled_at_ms": i.enabled_at_ms,
        "disabled_at_ms": i.disabled_at_ms,
        "next_sync_at_ms": i.next_sync_at_ms,
        "has_secrets": i.has_secrets,
        "auth_status": i.auth_status.as_str(),
        "auth_status_at_ms": i.auth_status_at_ms,
        "component_digest": i.component_digest,
        "installed_digest": installed_digest,
        "approval_status": approval_status,
        "grant_changes": grant_changes,
    })
}

/// `GET /v1/integrations` (admin).
#[utoipa::path(get, path = "/v1/integrations", tag = "integrations", operation_id = "list_integrations",
    responses(
        (status = 200, description = "The tenant's integrations.", body = super::openapi::integration_schemas::IntegrationList),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_integrations(
    State(state): State<AppState>,
    user: User,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let all = state.store.integrations(p.tenant_id).await?;
    Ok(axum::Json(json!({"integrations": all.iter().map(|i| integration_json(&state, i)).collect::<Vec<_>>()})))
}

/// `GET /v1/integrations/{connector}` (admin).
#[utoipa::path(get, path = "/v1/integrations/{connector}", tag = "integrations", operation_id = "get_integration",
    params(("connector" = String, Path, description = "The connector's id.")),
    responses(
        (status = 200, description = "The integration.", body = super::openapi::integration_schemas::IntegrationView),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn get_integration(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    Ok(axum::Json(integration_json(&state, &state.store.integration(p.tenant_id, &id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnableBody {
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    /// Seconds between scheduled syncs (default: the connector's).
    sync_interval_secs: Option<u64>,
    /// The metrics opted into (default: every metric the connector declares).
    metrics: Option<Vec<String>>,
}

/// `PUT /v1/integrations/{connector}` (admin): enables it with its settings (the opt-in,
/// recorded with who, when and which metrics). Nothing is written unless every setting is
/// valid. A connector that authenticates with OAuth (Salesforce, Bullhorn) may be enabled
/// without `refresh_token`: it then waits (`auth_status` `needs_reauthorization`) for the
/// connect flow (`GET /v1/integrations/{connector}/connect`) to bring one.
#[utoipa::path(put, path = "/v1/integrations/{connector}", tag = "integrations", operation_id = "enable_integration",
    params(("connector" = String, Path, description = "The connector's id.")),
    request_body = super::openapi::integration_schemas::EnableIntegrationBody,
    responses(
        (status = 200, description = "Enabled.", body = super::openapi::integration_schemas::IntegrationView),
        (status = 400, description = "Unknown or missing config or secret keys, an unknown metric, or a bad interval.", body = super::openapi::ErrorBody),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "No such connector installed.", body = super::openapi::ErrorBody),
        (status = 422, description = "Settings the connector refuses (`invalid_settings`).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn enable(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EnableBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let loaded = connector(&state, &id)?;
    let m = loaded.manifest();
    for key in body.config.keys() {
        if !m.config.iter().any(|s| &s.key == key) {
            return Err(ApiError::bad_request(
                "unknown_config_key",
                format!("`{key}` is not a config key of {}", m.id),
            ));
        }
    }
    for key in body.secrets.keys() {
        if !m.secrets.iter().any(|s| &s.key == key) {
            return Err(ApiError::bad_request(
                "unknown_secret_key",
                format!("`{key}` is not a secret key of {}", m.id),
            ));
        }
    }
    for spec in m.config.iter().filter(|s| s.required && s.default.is_none()) {
        if !body.config.contains_key(&spec.key) {
            return Err(ApiError::bad_request("missing_config", format!("config `{}` is required", spec.key)));
        }
    }
    // A connector that refreshes OAuth tokens may be enabled without a refresh token: the
    // connect flow (`GET …/connect`) brings it, and the integration waits for it.
    let oauth = matches!(
        m.auth,
        crate::runtime::manifest::AuthSpec::Oauth2Refresh { .. }
            | crate::runtime::manifest::AuthSpec::BullhornSession { .. }
    );
    let awaiting_authorization = oauth && !body.secrets.contains_key(crate::runtime::auth::REFRESH_TOKEN);
    for spec in m.secrets.iter().filter(|s| s.required) {
        if awaiting_authorization && spec.key == crate::runtime::auth::REFRESH_TOKEN {
            continue;
        }
        if body.secrets.get(&spec.key).is_none_or(|v| v.is_empty()) {
            return Err(ApiError::bad_request("missing_secret", format!("secret `{}` is required", spec.key)));
        }
    }
    let interval = body.sync_interval_secs.unwrap_or(m.default_sync_interval.as_secs());
    if !(60..=7 * 86_400).contains(&interval) {
        return Err(ApiError::bad_request("invalid_field", "`sync_interval_secs` must be between 60 and 604800"));
    }
    let tenant_key = state.store.tenant_key(p.tenant_id).await?;
    // Only the settings are checked here; the zone matters once the scheduler syncs.
    let mut checked_secrets = body.secrets.clone();
    if awaiting_authorization {
        // Only the shape is checked: a stand-in where the connect flow will put the token.
        checked_secrets.insert(crate::runtime::auth::REFRESH_TOKEN.to_owned(), "awaiting-authorization".to_owned());
    }
    let setup = IntegrationSetup {
        config: body.config.clone(),
        secrets: checked_secrets,
        tenant_key,
        debug: None,
        timezone: crate::runtime::TimeZone::UTC,
        vault: None,
    };
    if let Err(e) = state.runtime.check_setup(loaded, &setup) {
        let message = match e {
            SyncError::Setup(m) => m,
            other => other.to_string(),
        };
        return Err(ApiError::unprocessable("invalid_settings", message));
    }
    let metrics: Vec<String> = match &body.metrics {
        None => m.metrics.iter().map(|x| x.slug.clone()).collect(),
        Some(chosen) => {
            if let Some(unknown) = chosen.iter().find(|slug| !m.metrics.iter().any(|x| &x.slug == *slug)) {
                return Err(ApiError::bad_request(
                    "unknown_metric",
                    format!("`{unknown}` is not a metric of {}", m.id),
                ));
            }
            if chosen.is_empty() {
                return Err(ApiError::bad_request("invalid_field", "`metrics` must name at least one metric"));
            }
            // Declaration order, each once.
            m.metrics.iter().filter(|x| chosen.contains(&x.slug)).map(|x| x.slug.clone()).collect()
        }
    };
    let secrets = crate::store::Secrets::new(body.secrets);
    // The consent covers this component and its grants.
    let digest = loaded.digest_hex();
    let grants = m.grants().to_json();
    let enable = EnableIntegration {
        connector_id: &m.id,
        config: &body.config,
        secrets: &secrets,
        metrics: &metrics,
        sync_interval_secs: interval,
        enabled_by: p.user_id,
        component_digest: Some(&digest),
        component_grants: Some(&grants),
    };
    let integration = if awaiting_authorization {
        state.store.enable_integration_awaiting_authorization(p.tenant_id, &enable).await?
    } else {
        state.store.enable_integration(p.tenant_id, &enable).await?
    };
    audit(
        &state,
        p.tenant_id,
        Actor::User(p.user_id),
        "integration.enabled",
        &format!("{} metrics={} component={}", m.id, metrics.join(","), &digest[..16]),
    )
    .await?;
    state.scheduler.wake();
    Ok(axum::Json(integration_json(&state, &integration)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveBody {
    digest: String,
}

/// `POST /v1/integrations/{connector}/approve` (admin): approves the installed component,
/// whose digest the body names, with its grants: the consent covers it from now on (new
/// metrics are opted into), a paused integration resumes at once. Audited.
#[utoipa::path(post, path = "/v1/integrations/{connector}/approve", tag = "integrations", operation_id = "approve_integration",
    params(("connector" = String, Path, description = "The connector's id.")),
    request_body = super::openapi::integration_schemas::ApproveBody,
    responses(
        (status = 200, description = "Approved.", body = super::openapi::integration_schemas::IntegrationView),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant, or the connector is not installed.", body = super::openapi::ErrorBody),
        (status = 409, description = "The digest is not the installed component's (`digest_mismatch`).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn approve(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let integration = state.store.integration(p.tenant_id, &id).await?;
    if !integration.enabled {
        return Err(ApiError::NotFound("integration"));
    }
    let loaded = connector(&state, &id)?;
    let digest = loaded.digest_hex();
    if !body.digest.trim().eq_ignore_ascii_case(&digest) {
        return Err(ApiError::conflict(
            "digest_mismatch",
            "the digest is not the installed component's: review the installed one (`installed_digest`) and approve it",
        ));
    }
    let m = loaded.manifest();
    let grants = m.grants();
    // New metrics are opted into with the approval; ones the admin left out stay out.
    let before: Option<Grants> = integration.component_grants.as_deref().and_then(Grants::from_json);
    let mut metrics: Vec<String> =
        integration.metrics.iter().filter(|slug| grants.metrics.contains_key(*slug)).cloned().collect();
    for slug in grants.metrics.keys() {
        let new = before.as_ref().is_none_or(|b| !b.metrics.contains_key(slug));
        if new && !metrics.contains(slug) {
            metrics.push(slug.clone());
        }
    }
    let changes = before.as_ref().map(|b| grants.changes_from(b).summary()).unwrap_or_else(|| "first record".into());
    let approved = state.store.approve_component(p.tenant_id, &id, &digest, &grants.to_json(), &metrics).await?;
    audit(
        &state,
        p.tenant_id,
        Actor::User(p.user_id),
        "integration.component_approved",
        &format!("{id} component={} changes: {changes}", &digest[..16]),
    )
    .await?;
    state.scheduler.wake();
    Ok(axum::Json(integration_json(&state, &approved)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisableQuery {
    #[serde(default)]
    purge: bool,
}

/// `DELETE /v1/integrations/{connector}` (admin): disables it and destroys its secrets;
/// `?purge=true` also deletes its facts.
#[utoipa::path(delete, path = "/v1/integrations/{connector}", tag = "integrations", operation_id = "disable_integration",
    params(("connector" = String, Path, description = "The connector's id."), ("purge" = Option<bool>, Query, description = "Also delete its facts.")),
    responses(
        (status = 204, description = "Disabled; its secrets destroyed."),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn disable(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DisableQuery>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    let purged = state.store.disable_integration(p.tenant_id, &id, q.purge).await?;
    let action = if q.purge { "integration.disabled_purged" } else { "integration.disabled" };
    audit(&state, p.tenant_id, Actor::User(p.user_id), action, &format!("{id} facts_purged={purged}")).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncQuery {
    #[serde(default)]
    wait: bool,
}

fn run_json(run: &Run) -> Value {
    json!({
        "id": run.id,
        "connector": run.connector_id,
        "status": run.status,
        "reasons": run.reasons,
        "events_accepted": run.accepted(),
        "events_rejected": run.rejected_total(),
        "error": run.error_code,
        "upserts": run.upserts,
        "retractions": run.retractions,
        "rejected": run.rejected,
        "unmapped": run.unmapped,
        "waiting_for_rate": run.waiting_rate,
        "settled": run.settled,
        "checkpoints": run.checkpoints,
        "attempts": run.attempts,
        "created_at_ms": run.created_at_ms,
        "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
        "duration_ms": run.duration_ms(),
    })
}

fn finished(run: &Run) -> bool {
    matches!(run.status, RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed)
}

/// `POST /v1/integrations/{connector}/sync` (admin): queues a run now (or returns the one
/// already queued or running); `?wait=true` waits for it to finish.
#[utoipa::path(post, path = "/v1/integrations/{connector}/sync", tag = "integrations", operation_id = "sync_integration",
    params(("connector" = String, Path, description = "The connector's id."), ("wait" = Option<bool>, Query, description = "Wait for the run to finish.")),
    responses(
        (status = 202, description = "Queued (or, with `wait=true`, still running when the wait ran out).", body = super::openapi::integration_schemas::QueuedRun),
        (status = 200, description = "With `wait=true`: the finished run.", body = super::openapi::integration_schemas::RunView),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
        (status = 409, description = "The integration is disabled (`integration_disabled`).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn sync_now(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> Result<axum::response::Response, ApiError> {
    let p = user.require_admin()?;
    let run_id = state.store.queue_run(p.tenant_id, &id).await.map_err(|e| match e {
        StoreError::IntegrationDisabled => ApiError::conflict("integration_disabled", "the integration is disabled"),
        other => other.into(),
    })?;
    state.scheduler.wake();
    if !q.wait {
        return Ok((StatusCode::ACCEPTED, axum::Json(json!({"run_id": run_id}))).into_response());
    }
    let deadline = Instant::now() + state.sync_wait;
    loop {
        let run = state.store.run(p.tenant_id, run_id).await?;
        if finished(&run) {
            return Ok((StatusCode::OK, axum::Json(run_json(&run))).into_response());
        }
        if Instant::now() >= deadline {
            let mut body = run_json(&run);
            body["run_id"] = json!(run_id);
            return Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `POST /v1/integrations/{connector}/resync` (admin): resets the cursor so that the next
/// run reads everything (after a connector fix, say). Facts are keyed by their CRM record,
/// so what is read again replaces what was there; nothing is counted twice. With a run in
/// flight the reset waits for its end, then a full run is due at once.
#[utoipa::path(post, path = "/v1/integrations/{connector}/resync", tag = "integrations", operation_id = "resync_integration",
    params(("connector" = String, Path, description = "The connector's id.")),
    responses(
        (status = 202, description = "The cursor is reset now, or when the run in flight ends (`cursor_reset`).", body = super::openapi::integration_schemas::ResyncAnswer),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
        (status = 409, description = "The integration is disabled (`integration_disabled`).", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn resync(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let p = user.require_admin()?;
    let done = state.store.resync(p.tenant_id, &id).await.map_err(|e| match e {
        StoreError::IntegrationDisabled => ApiError::conflict("integration_disabled", "the integration is disabled"),
        other => other.into(),
    })?;
    let (when, run_id) = match done {
        Resync::Now(run) => ("now", run),
        Resync::AfterRunning(run) => ("after_running_run", run),
    };
    audit(&state, p.tenant_id, Actor::User(p.user_id), "integration.resync", &format!("{id} {when}")).await?;
    state.scheduler.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"cursor_reset": when, "run_id": run_id}))).into_response())
}

/// `GET /v1/integrations/{connector}/runs` (admin): the latest runs.
#[utoipa::path(get, path = "/v1/integrations/{connector}/runs", tag = "integrations", operation_id = "list_runs",
    params(("connector" = String, Path, description = "The connector's id.")),
    responses(
        (status = 200, description = "The latest runs.", body = super::openapi::integration_schemas::RunList),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn list_runs(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    state.store.integration(p.tenant_id, &id).await?;
    let runs = state.store.runs(p.tenant_id, &id, 50).await?;
    Ok(axum::Json(json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()})))
}

/// `GET /v1/integrations/{connector}/runs/{run_id}` (admin).
#[utoipa::path(get, path = "/v1/integrations/{connector}/runs/{run_id}", tag = "integrations", operation_id = "get_run",
    params(("connector" = String, Path, description = "The connector's id."), ("run_id" = uuid::Uuid, Path, description = "The run.")),
    responses(
        (status = 200, description = "The run.", body = super::openapi::integration_schemas::RunView),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "No such run.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn get_run(
    State(state): State<AppState>,
    user: User,
    Path((id, run)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let run_id: RunId = parse_id("run", &run)?;
    let run = state.store.run(p.tenant_id, run_id).await?;
    if run.connector_id != id {
        return Err(ApiError::NotFound("run"));
    }
    Ok(axum::Json(run_json(&run)))
}

/// `GET /v1/integrations/{connector}/owners` (admin): how many CRM owners and facts wait
/// for a mapping, by keyed hash, the mappings in place (with how each was made) and the
/// mappings waiting for an admin's confirmation.
#[utoipa::path(get, path = "/v1/integrations/{connector}/owners", tag = "integrations", operation_id = "list_owners",
    params(("connector" = String, Path, description = "The connector's id.")),
    responses(
        (status = 200, description = "Unmapped CRM owners (keyed hashes), the mappings and the pending ones.", body = super::openapi::integration_schemas::OwnersView),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled in this tenant.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn owners(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    state.store.integration(p.tenant_id, &id).await?;
    let unmapped = state.store.unmapped_owners(p.tenant_id, &id).await?;
    let mapped = state.store.owner_mapping_sources(p.tenant_id, &id).await?;
    let pending = state.store.owner_conflicts(p.tenant_id, &id).await?;
    Ok(axum::Json(json!({
        "unmapped_owners": unmapped.len(),
        "unmapped_facts": unmapped.iter().map(|u| u.facts).sum::<u64>(),
        "unmapped": unmapped.iter().map(|u| json!({"owner": u.owner.to_string(), "facts": u.facts})).collect::<Vec<_>>(),
        "mapped": mapped
            .iter()
            .map(|m| json!({"owner": m.owner.to_string(), "user_id": m.user_id, "source": m.source.as_str()}))
            .collect::<Vec<_>>(),
        "pending": pending
            .iter()
            .map(|c| json!({"owner": c.owner.to_string(), "user_id": c.user_id, "reason": c.reason.as_str(),
                "detected_at_ms": c.detected_at_ms}))
            .collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MapOwnerBody {
    crm_user_id: String,
    user_id: String,
}

/// `PUT /v1/integrations/{connector}/owners` (admin): maps a CRM owner, entered by its CRM
/// user id (hashed at once, never kept), to a user; its facts count for them, past ones
/// included. It replaces any earlier mapping of the owner and settles its pending one;
/// audited (`owner.mapped`, with the user it was mapped to before).
#[utoipa::path(put, path = "/v1/integrations/{connector}/owners", tag = "integrations", operation_id = "map_owner",
    params(("connector" = String, Path, description = "The connector's id.")),
    request_body = super::openapi::integration_schemas::MapOwnerBody,
    responses(
        (status = 204, description = "Mapped; its waiting facts count for the user."),
        (status = 400, description = "Not a CRM user id.", body = super::openapi::ErrorBody),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled, or no such user.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn map_owner(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MapOwnerBody>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    state.store.integration(p.tenant_id, &id).await?;
    let crm_id = body.crm_user_id.trim();
    if !is_identifier(crm_id) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "`crm_user_id` must be the CRM's user id (letters, digits, -_.:)",
        ));
    }
    let target: UserId = body.user_id.parse().map_err(|_| ApiError::NotFound("user"))?;
    state.store.user(p.tenant_id, target).await?;
    let key = state.store.tenant_key(p.tenant_id).await?;
    let owner = keyed_hash(&key, Domain::Owner, &id, crm_id);
    state
        .store
        .set_owner_mapping(p.tenant_id, &id, owner, target, MappingSource::Manual, Actor::User(p.user_id))
        .await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(StatusCode::NO_CONTENT)
}

/// The `{owner}` of a path: a keyed hash as listed by `GET …/owners`.
fn parse_owner(raw: &str) -> Result<KeyedHash, ApiError> {
    KeyedHash::from_hex(raw).ok_or(ApiError::NotFound("owner"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfirmOwnerBody {
    user_id: String,
}

/// `POST /v1/integrations/{connector}/owners/{owner}/confirm` (admin): makes a pending
/// mapping (listed under `pending` by `GET …/owners`) for the user it names; its facts count
/// for them from then on, past ones included. Audited (`owner.confirmed`).
#[utoipa::path(post, path = "/v1/integrations/{connector}/owners/{owner}/confirm", tag = "integrations", operation_id = "confirm_owner",
    params(("connector" = String, Path, description = "The connector's id."), ("owner" = String, Path, description = "The owner's keyed hash, as listed.")),
    request_body = super::openapi::integration_schemas::ConfirmOwnerBody,
    responses(
        (status = 204, description = "Mapped; the owner's facts count for the user."),
        (status = 400, description = "Bad body.", body = super::openapi::ErrorBody),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled, or no pending mapping of this owner to this user (`not_found`).", body = super::openapi::ErrorBody),
        (status = 413, description = "Body too large.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn confirm_owner(
    State(state): State<AppState>,
    user: User,
    Path((id, owner)): Path<(String, String)>,
    ApiJson(body): ApiJson<ConfirmOwnerBody>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    state.store.integration(p.tenant_id, &id).await?;
    let owner = parse_owner(&owner)?;
    let target: UserId = body.user_id.parse().map_err(|_| ApiError::NotFound("pending mapping"))?;
    state
        .store
        .set_owner_mapping(p.tenant_id, &id, owner, target, MappingSource::Confirmed, Actor::User(p.user_id))
        .await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/integrations/{connector}/owners/{owner}` (admin): removes a mapping; the
/// owner's facts wait under its hash again. Audited (`owner.unmapped`). The roster maps it
/// again only through an address an admin set, and only while it is not mapped.
#[utoipa::path(delete, path = "/v1/integrations/{connector}/owners/{owner}", tag = "integrations", operation_id = "unmap_owner",
    params(("connector" = String, Path, description = "The connector's id."), ("owner" = String, Path, description = "The owner's keyed hash, as listed.")),
    responses(
        (status = 204, description = "Unmapped."),
        (status = 403, description = "Not an admin.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not enabled, or the owner is not mapped.", body = super::openapi::ErrorBody),
    ))]
pub(super) async fn unmap_owner(
    State(state): State<AppState>,
    user: User,
    Path((id, owner)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    state.store.integration(p.tenant_id, &id).await?;
    let owner = parse_owner(&owner)?;
    state.store.remove_owner_mapping(p.tenant_id, &id, owner, Actor::User(p.user_id)).await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(StatusCode::NO_CONTENT)
}
