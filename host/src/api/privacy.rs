//! The tenant's privacy: the living processing register, its settings (data protection
//! officer, retention windows, the support messenger) and the retention purge.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, User};
use super::openapi::ErrorBody;
use crate::store::retention::{DPO_CONTACT_MAX, RUNS_DAYS, SETTLE_DAYS, UNMATCHED_DAYS};
use crate::store::{Actor, PrivacySettings, RetentionKind, RetentionRun, StoreError};

/// A tenant's privacy settings.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct PrivacySettingsView {
    /// How to reach the tenant's data protection officer (`null`: not set).
    dpo_contact: Option<String>,
    /// Facts that occurred longer ago than this many days are settled: their link to the
    /// CRM record is dropped, they keep counting, and the CRM no longer changes them.
    settle_days: u32,
    /// Facts of a CRM owner matched to no user for this many days are discarded.
    unmatched_days: u32,
    /// Finished sync runs are kept this many days, then only their daily counts.
    runs_days: u32,
    /// Whether the support messenger is switched on (then it is a processor).
    support_messenger: bool,
}

impl From<&PrivacySettings> for PrivacySettingsView {
    fn from(s: &PrivacySettings) -> Self {
        Self {
            dpo_contact: s.dpo_contact.clone(),
            settle_days: s.settle_days,
            unmatched_days: s.unmatched_days,
            runs_days: s.runs_days,
            support_messenger: s.support_messenger,
        }
    }
}

/// `PUT /v1/privacy/settings`' body: the fields to change (the others keep their value).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PrivacySettingsBody {
    /// How to reach the data protection officer (at most 300 characters); `""` clears it.
    dpo_contact: Option<String>,
    /// 30 to 3650 (default 400).
    settle_days: Option<i64>,
    /// 1 to 3650 (default 30).
    unmatched_days: Option<i64>,
    /// 1 to 3650 (default 90).
    runs_days: Option<i64>,
    /// Switches the support messenger on or off (default off).
    support_messenger: Option<bool>,
}

/// A window in days from the body, within `(lo, hi, _)`, or the 422 naming the field.
fn window(field: &str, value: Option<i64>, current: u32, (lo, hi, _): (u32, u32, u32)) -> Result<u32, ApiError> {
    let Some(value) = value else { return Ok(current) };
    match u32::try_from(value) {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(ApiError::unprocessable("out_of_range", format!("`{field}` must be between {lo} and {hi} days"))),
    }
}

/// The settings a body asks for, from the current ones.
fn apply(body: PrivacySettingsBody, current: PrivacySettings) -> Result<PrivacySettings, ApiError> {
    let dpo_contact = match body.dpo_contact {
        None => current.dpo_contact,
        Some(text) if text.trim().is_empty() => None,
        Some(text) => {
            if text.chars().count() > DPO_CONTACT_MAX || text.chars().any(char::is_control) {
                return Err(ApiError::unprocessable(
                    "invalid_dpo_contact",
                    format!("`dpo_contact` takes at most {DPO_CONTACT_MAX} characters and no control characters"),
                ));
            }
            Some(text.trim().to_owned())
        }
    };
    Ok(PrivacySettings {
        dpo_contact,
        settle_days: window("settle_days", body.settle_days, current.settle_days, SETTLE_DAYS)?,
        unmatched_days: window("unmatched_days", body.unmatched_days, current.unmatched_days, UNMATCHED_DAYS)?,
        runs_days: window("runs_days", body.runs_days, current.runs_days, RUNS_DAYS)?,
        support_messenger: body.support_messenger.unwrap_or(current.support_messenger),
    })
}

/// Changes the tenant's privacy settings (admin).
///
/// The data protection officer's contact, the retention windows and the support messenger
/// switch, as the processing register shows them. Fields left out keep their value. A
/// shorter settle window seals more at the next purge; a longer one does not reopen what a
/// purge sealed. Audited (`privacy.settings_changed`).
#[utoipa::path(put, path = "/v1/privacy/settings", tag = "privacy", operation_id = "set_privacy_settings",
    request_body = PrivacySettingsBody,
    responses(
        (status = 200, description = "The settings now.", body = PrivacySettingsView),
        (status = 400, description = "Malformed body or an unknown field.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 422, description = "A window out of range (`out_of_range`, naming the field) or a contact too long (`invalid_dpo_contact`).", body = ErrorBody),
    ))]
pub(super) async fn set_settings(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<PrivacySettingsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let current = state.store.privacy_settings(p.tenant_id).await?;
    let settings = apply(body, current)?;
    state.store.set_privacy_settings(p.tenant_id, &settings, Actor::User(p.user_id)).await?;
    Ok(axum::Json(PrivacySettingsView::from(&settings)))
}

/// What one purge did, per category.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RetentionReportView {
    /// Facts that occurred before this instant (ms since the Unix epoch) are settled.
    settled_before_ms: i64,
    /// Performance figures: facts sealed (their link to the CRM record dropped; they still
    /// count).
    facts_sealed: u64,
    /// Performance figures: CRM owners matched to no user past their window, whose facts
    /// were discarded.
    unmatched_owners_discarded: u64,
    /// Performance figures: the facts of those owners, discarded.
    unmatched_facts_discarded: u64,
    /// CRM owners matched to no user yet, still within their window.
    unmatched_owners_waiting: u64,
    /// Sync runs past their window, dropped (their daily counts stay).
    runs_summarised: u64,
}

/// One purge.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RetentionRunView {
    /// Its id.
    id: uuid::Uuid,
    /// `scheduled` (the daily purge) or `manual`.
    kind: String,
    /// When it started, in milliseconds since the Unix epoch.
    started_at_ms: i64,
    /// When it finished.
    finished_at_ms: i64,
    /// What it did.
    report: RetentionReportView,
}

impl From<&RetentionRun> for RetentionRunView {
    fn from(run: &RetentionRun) -> Self {
        let r = &run.report;
        Self {
            id: run.id,
            kind: match run.kind {
                RetentionKind::Scheduled => "scheduled",
                RetentionKind::Manual => "manual",
            }
            .to_owned(),
            started_at_ms: run.started_at_ms,
            finished_at_ms: run.finished_at_ms,
            report: RetentionReportView {
                settled_before_ms: r.settled_before_ms,
                facts_sealed: r.facts_sealed,
                unmatched_owners_discarded: r.unmatched_owners_discarded,
                unmatched_facts_discarded: r.unmatched_facts_discarded,
                unmatched_owners_waiting: r.unmatched_owners_waiting,
                runs_summarised: r.runs_summarised,
            },
        }
    }
}

/// `GET /v1/privacy/retention`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RetentionView {
    /// The settings.
    settings: PrivacySettingsView,
    /// Facts that occurred before this instant are settled now.
    settled_before_ms: i64,
    /// When the daily purge runs next (`null`: at the scheduler's next tick).
    next_run_at_ms: Option<i64>,
    /// Whether a purge is running now.
    running: bool,
    /// The latest purge and its report (`null`: none yet).
    last_run: Option<RetentionRunView>,
}

/// The tenant's retention: settings, the last purge and its report (admin).
#[utoipa::path(get, path = "/v1/privacy/retention", tag = "privacy", operation_id = "get_retention",
    responses(
        (status = 200, description = "Settings, state and the latest purge.", body = RetentionView),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ))]
pub(super) async fn retention(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let s = state.store.retention_state(p.tenant_id).await?;
    Ok(axum::Json(RetentionView {
        settings: PrivacySettingsView::from(&s.settings),
        settled_before_ms: s.settled_before_ms,
        next_run_at_ms: s.next_run_at_ms,
        running: s.running,
        last_run: s.last_run.as_ref().map(RetentionRunView::from),
    }))
}

/// Runs the tenant's purge now (admin).
///
/// Seals settled facts (drops their link to the CRM record; they keep counting), discards
/// the facts of CRM owners matched to no user past their window, folds old sync runs into
/// daily counts. The scheduler does the same daily. Audited (`retention.purged`).
#[utoipa::path(post, path = "/v1/privacy/retention/run", tag = "privacy", operation_id = "run_retention",
    responses(
        (status = 200, description = "The purge and its report.", body = RetentionRunView),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 409, description = "A purge of this tenant is running (`retention_running`).", body = ErrorBody),
    ))]
pub(super) async fn run_retention(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let holder = format!("api-{}", hex::encode(crate::store::types::random_bytes::<8>()));
    let run =
        state.store.run_retention(p.tenant_id, RetentionKind::Manual, Actor::User(p.user_id), &holder).await.map_err(
            |e| match e {
                StoreError::Conflict { .. } => {
                    ApiError::conflict("retention_running", "a purge of this tenant is running; try again when it ends")
                }
                e => e.into(),
            },
        )?;
    Ok(axum::Json(RetentionRunView::from(&run)))
}

/// One category of personal data in the register.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RegisterCategory {
    /// Its name.
    category: &'static str,
    /// The data.
    data: Vec<&'static str>,
    /// Whose data it is.
    subjects: &'static str,
    /// Why it is processed.
    purpose: &'static str,
    /// The legal basis.
    legal_basis: &'static str,
    /// How long it is kept, with this tenant's settings.
    retention: String,
    /// Where it comes from (`null`: from the users and admins themselves).
    source: Option<&'static str>,
    /// What is never kept (`null`: nothing to add).
    not_kept: Option<Vec<&'static str>>,
    /// Who sees it (`null`: the tenant's admins).
    visible_to: Option<&'static str>,
}

/// A consent record: an integration the tenant enabled.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ConsentRecord {
    /// The connector.
    connector: String,
    /// Whether it is enabled now (a disabled one keeps its record: its facts may remain).
    enabled: bool,
    /// Who consented (the admin's user id).
    enabled_by: Option<uuid::Uuid>,
    /// When, in milliseconds since the Unix epoch.
    enabled_at_ms: Option<i64>,
    /// When it was disabled, if it was.
    disabled_at_ms: Option<i64>,
    /// The metrics consented to.
    metrics: Vec<String>,
    /// SHA-256 (hex) of the connector component the consent covers.
    component_digest: Option<String>,
}

/// A processor personal data goes to.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RegisterProcessor {
    /// Who.
    name: &'static str,
    /// What goes there.
    data: Vec<&'static str>,
    /// Why.
    purpose: &'static str,
    /// Which way it flows.
    direction: &'static str,
}

/// The processing register of a tenant.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct PrivacyRegister {
    /// The tenant's id.
    tenant_id: uuid::Uuid,
    /// The service's role towards the tenant's data.
    controller_role: &'static str,
    /// How to reach the tenant's data protection officer (`null`: not set).
    dpo_contact: Option<String>,
    /// The retention settings in force.
    retention: PrivacySettingsView,
    /// Every integration enabled in the tenant, with its consent record.
    integrations: Vec<ConsentRecord>,
    /// The categories of personal data, their purpose, basis and retention.
    categories: Vec<RegisterCategory>,
    /// The processors switched on (none: no personal data leaves the platform).
    processors: Vec<RegisterProcessor>,
    /// Who the data is shared with.
    sharing: &'static str,
    /// How the CRMs are read.
    crm_access: &'static str,
}

/// The tenant's processing register (any user).
///
/// Machine-readable and per tenant: the data protection officer, the retention settings in
/// force, every integration with its consent record (who, when, which metrics, which
/// component), the categories of personal data with their purposes, legal bases and
/// retention, and the processors actually switched on.
#[utoipa::path(get, path = "/v1/privacy/register", tag = "privacy", operation_id = "privacy_register",
    responses((status = 200, description = "The register.", body = PrivacyRegister)))]
pub(super) async fn register(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let tenant = user.0.tenant_id;
    let settings = state.store.privacy_settings(tenant).await?;
    let integrations = state
        .store
        .integrations(tenant)
        .await?
        .into_iter()
        .filter(|i| i.enabled_at_ms.is_some())
        .map(|i| ConsentRecord {
            connector: i.connector_id,
            enabled: i.enabled,
            enabled_by: i.enabled_by.map(|u| u.as_uuid()),
            enabled_at_ms: i.enabled_at_ms,
            disabled_at_ms: i.disabled_at_ms,
            metrics: i.metrics,
            component_digest: i.component_digest,
        })
        .collect();
    let mut processors = Vec::new();
    if settings.support_messenger {
        processors.push(RegisterProcessor {
            name: "Intercom (customer messaging)",
            data: vec!["name", "e-mail address"],
            purpose: "support conversations with the user",
            direction: "outbound: the one flow of personal data out of the platform",
        });
    }
    Ok(axum::Json(PrivacyRegister {
        tenant_id: tenant.as_uuid(),
        controller_role: "processor for the tenant",
        dpo_contact: settings.dpo_contact.clone(),
        retention: PrivacySettingsView::from(&settings),
        integrations,
        categories: categories(&settings),
        processors,
        sharing: "performance data is visible inside the tenant only, to the roles the tenant allows; never sold or shared",
        crm_access: "opt-in per integration; data flows from the CRM to oneup only; nothing is ever written to a CRM",
    }))
}

/// The categories of personal data, with the tenant's retention settings.
fn categories(s: &PrivacySettings) -> Vec<RegisterCategory> {
    let management = "legitimate interest of the tenant (operational performance management)";
    vec![
        RegisterCategory {
            category: "account data",
            data: vec!["name", "work e-mail", "role", "team memberships", "date joined (for pro-rated targets)", "API token hashes"],
            subjects: "the tenant's users",
            purpose: "sign-in, attributing performance figures to the user, navigating the platform",
            legal_basis: "contract",
            retention: "as long as the account exists; erased with it (DELETE /v1/users/{id})".to_owned(),
            source: None,
            not_kept: None,
            visible_to: Some("the user; the tenant's admins and managers"),
        },
        RegisterCategory {
            category: "performance figures",
            data: vec!["metric", "value (count or money)", "time", "keyed hash of the CRM owner id", "keyed hash of the CRM record id (until settled)"],
            subjects: "the tenant's users",
            purpose: "KPIs, targets, contests and incentives inside the tenant",
            legal_basis: management,
            retention: format!(
                "the keyed hash of the CRM record id is kept only while the record can still change: \
                 {} days after the fact occurred it is dropped and the fact is settled (it keeps counting; the CRM \
                 no longer changes it); facts of a CRM user matched to no user of the tenant are discarded after \
                 {} days; the rest while the integration exists, purged on request \
                 (DELETE /v1/integrations/{{id}}?purge=true); on erasure of the user, kept for their teams' totals \
                 under an anonymous former member with random hashes, never linked to the person or their CRM id again",
                s.settle_days, s.unmatched_days
            ),
            source: Some("the tenant's CRM, opt-in per integration, read-only"),
            not_kept: Some(vec!["names, e-mails or details of customers or contacts", "deal titles, notes, free text", "raw CRM ids", "CRM users' e-mails (compared, then dropped)"]),
            visible_to: Some("members see their own figures and the contests they take part in; managers and admins see the tenant's"),
        },
        RegisterCategory {
            category: "targets, contests and rewards",
            data: vec!["targets assigned to the user or their teams", "contest participations and standings (rank, value)", "points ledger (awards and revocations, with the target or contest they were for)"],
            subjects: "the tenant's users",
            purpose: "motivation and recognition inside the tenant",
            legal_basis: management,
            retention: "while the target, contest or account exists; a person's own targets, participations and points are deleted with their account; final contest standings keep only the erased user's old id, which names nobody".to_owned(),
            source: None,
            not_kept: None,
            visible_to: Some("members see their own figures and the contests they take part in; managers and admins see the tenant's"),
        },
        RegisterCategory {
            category: "sync runs",
            data: vec!["when each sync ran, its outcome and counts of changes (no CRM data)"],
            subjects: "none directly (the integration's operation)",
            purpose: "operating and troubleshooting the integrations",
            legal_basis: management,
            retention: format!("{} days, then only daily counts per integration", s.runs_days),
            source: None,
            not_kept: None,
            visible_to: None,
        },
        RegisterCategory {
            category: "integration credentials",
            data: vec!["CRM API tokens or OAuth refresh tokens"],
            subjects: "none (credentials of the tenant's CRM account)",
            purpose: "reading the tenant's CRM",
            legal_basis: "contract",
            retention: "encrypted at rest; destroyed when the integration is disabled".to_owned(),
            source: None,
            not_kept: None,
            visible_to: Some("nobody: never shown, never handed to connector code"),
        },
        RegisterCategory {
            category: "audit log",
            data: vec!["who (user id), what, when, to which ids"],
            subjects: "the tenant's users and admins",
            purpose: "accountability for consent and administration",
            legal_basis: "legal obligation and legitimate interest (accountability)",
            retention: "append-only and tamper-evident (hash-chained, GET /v1/audit/verify), for the life of the tenant".to_owned(),
            source: None,
            not_kept: None,
            visible_to: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> PrivacySettingsBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn windows_out_of_range_name_their_field_and_absent_fields_keep_their_value() {
        let current = PrivacySettings::default();
        for (json, field) in [
            (r#"{"settle_days": 29}"#, "settle_days"),
            (r#"{"settle_days": 3651}"#, "settle_days"),
            (r#"{"settle_days": -1}"#, "settle_days"),
            (r#"{"unmatched_days": 0}"#, "unmatched_days"),
            (r#"{"runs_days": 99999999999}"#, "runs_days"),
        ] {
            let err = apply(body(json), current.clone()).unwrap_err();
            assert_eq!(err.code(), "out_of_range");
            assert!(err.to_string().contains(field), "{err} names {field}");
        }
        let s = apply(body(r#"{"settle_days": 30, "dpo_contact": " dpo@example.com "}"#), current.clone()).unwrap();
        assert_eq!(s.settle_days, 30);
        assert_eq!(s.unmatched_days, 30);
        assert_eq!(s.dpo_contact.as_deref(), Some("dpo@example.com"));
        let cleared = apply(body(r#"{"dpo_contact": ""}"#), s).unwrap();
        assert_eq!(cleared.dpo_contact, None);
        assert_eq!(cleared.settle_days, 30);
        let long = format!(r#"{{"dpo_contact": "{}"}}"#, "x".repeat(301));
        assert_eq!(apply(body(&long), current).unwrap_err().code(), "invalid_dpo_contact");
    }
}
