//! Integrations (a connector enabled for a tenant: the opt-in), their sealed secrets and
//! cursors, the mapping of CRM owners to tenant users, and the refresh lock and
//! re-authorisation status of integrations whose credentials refresh (OAuth 2.0, Bullhorn;
//! see [`IntegrationVault`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use super::crypto::secrets_aad;
use super::error::{StoreError, not_found_on_foreign_key};
use super::standings::StandingsTx;
use super::types::{TenantId, UserId, now_ms, to_i64, to_u64};
use super::{BeginWrite, Store};
use crate::ingest::{Cursor, KeyedHash};

/// An integration's credentials by declared secret key. Sealed at rest; `Debug` shows
/// the keys only, so a stray log line cannot leak a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    /// Wraps credentials by key.
    pub fn new(secrets: BTreeMap<String, String>) -> Self {
        Self(secrets)
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The credentials by key.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The credentials by key, by value.
    pub fn into_inner(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl From<BTreeMap<String, String>> for Secrets {
    fn from(secrets: BTreeMap<String, String>) -> Self {
        Self(secrets)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
    }
}

/// A connector enabled (or once enabled) for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    /// The connector's id (`pipedrive`).
    pub connector_id: String,
    /// Whether it is enabled now.
    pub enabled: bool,
    /// Its configuration by declared config key.
    pub config: BTreeMap<String, String>,
    /// The metrics the admin consented to when enabling it.
    pub metrics: Vec<String>,
    /// The last committed cursor, if any.
    pub cursor: Option<Cursor>,
    /// How often the scheduler syncs it, in seconds.
    pub sync_interval_secs: u64,
    /// Who enabled it (the consent).
    pub enabled_by: Option<UserId>,
    /// When it was last enabled, in milliseconds since the Unix epoch.
    pub enabled_at_ms: Option<i64>,
    /// When it was last disabled, in milliseconds since the Unix epoch.
    pub disabled_at_ms: Option<i64>,
    /// When the scheduler queues its next run; `None` while disabled.
    pub next_sync_at_ms: Option<i64>,
    /// Whether sealed secrets are held (false once disabled: they are destroyed).
    pub has_secrets: bool,
    /// Whether its credentials work, as far as the host knows.
    pub auth_status: AuthStatus,
    /// When the status last became what it is, if it is not `ok`.
    pub auth_status_at_ms: Option<i64>,
    /// SHA-256 (hex) of the connector component the consent covers (none: enabled before
    /// components were recorded; the first sync records the installed one).
    pub component_digest: Option<String>,
    /// The grants of that component (JSON, as the runtime writes them).
    pub component_grants: Option<String>,
    /// Set while the installed component (this digest) asks for more than was approved:
    /// nothing is queued until an admin approves it.
    pub approval_digest: Option<String>,
}

/// Whether an integration's credentials work, as far as the host knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    /// Nothing says otherwise.
    Ok,
    /// The CRM's authorisation server refused the refresh token for good (`invalid_grant`,
    /// a 400 or 401 from the token endpoint). The scheduler queues no run until an admin
    /// enables the integration again with new secrets.
    NeedsReauthorization,
}

impl AuthStatus {
    /// The stable snake_case name (also the run error code of a refused grant).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStatus::Ok => "ok",
            AuthStatus::NeedsReauthorization => "needs_reauthorization",
        }
    }
}

/// What enabling an integration records.
#[derive(Debug, Clone, Copy)]
pub struct EnableIntegration<'a> {
    /// The connector's id.
    pub connector_id: &'a str,
    /// Its configuration, already checked against the connector's declared keys.
    pub config: &'a BTreeMap<String, String>,
    /// Its credentials, sealed before they are written.
    pub secrets: &'a Secrets,
    /// The metrics consented to.
    pub metrics: &'a [String],
    /// How often to sync, in seconds (at least 1).
    pub sync_interval_secs: u64,
    /// The admin giving the consent.
    pub enabled_by: UserId,
    /// SHA-256 (hex) of the component consented to (none: the first sync records the
    /// installed one).
    pub component_digest: Option<&'a str>,
    /// Its grants (JSON).
    pub component_grants: Option<&'a str>,
}

const SELECT_INTEGRATION: &str = "SELECT connector_id, enabled, config, metrics, cursor, sync_interval_secs, \
     enabled_by, enabled_at, disabled_at, next_sync_at, secrets IS NOT NULL, auth_status, auth_status_at, \
     component_digest, component_grants, approval_digest FROM integrations";

type IntegrationRow = (
    String,
    bool,
    String,
    String,
    Option<String>,
    i64,
    Option<Uuid>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn integration_from_row(row: IntegrationRow) -> Result<Integration, StoreError> {
    let (
        connector_id,
        enabled,
        config,
        metrics,
        cursor,
        interval,
        enabled_by,
        enabled_at,
        disabled_at,
        next,
        secrets,
        auth_status,
        auth_status_at,
        component_digest,
        component_grants,
        approval_digest,
    ) = row;
    let auth_status = match auth_status.as_deref() {
        None => AuthStatus::Ok,
        Some("needs_reauthorization") => AuthStatus::NeedsReauthorization,
        Some(_) => return Err(StoreError::Corrupt { what: "integration auth status" }),
    };
    Ok(Integration {
        connector_id,
        enabled,
        config: serde_json::from_str(&config).map_err(|_| StoreError::Corrupt { what: "integration config" })?,
        metrics: serde_json::from_str(&metrics).map_err(|_| StoreError::Corrupt { what: "integration metrics" })?,
        cursor: cursor.as_deref().map(parse_cursor).transpose()?,
        sync_interval_secs: to_u64(interval),
        enabled_by: enabled_by.map(UserId::from_uuid),
        enabled_at_ms: enabled_at,
        disabled_at_ms: disabled_at,
        next_sync_at_ms: next,
        has_secrets: secrets,
        auth_status,
        auth_status_at_ms: auth_status_at,
        component_digest,
        component_grants,
        approval_digest,
    })
}

/// Reads a stored cursor (a JSON object of declared keys to numbers, checked when written).
pub(crate) fn parse_cursor(json: &str) -> Result<Cursor, StoreError> {
    let marks: BTreeMap<String, i64> =
        serde_json::from_str(json).map_err(|_| StoreError::Corrupt { what: "integration cursor" })?;
    Ok(Cursor::from_checked(marks))
}

/// The stored form of a cursor.
pub(crate) fn cursor_json(cursor: &Cursor) -> String {
    serde_json::to_string(cursor.marks()).expect("a map of strings to integers serialises")
}

impl Store {
    /// Enables an integration (the opt-in), recording the consent: who, when, which metrics.
    ///
    /// Enabling again replaces config, secrets and consent, and clears a
    /// `needs_reauthorization` status (the admin brought new credentials). The cursor is
    /// kept when the config is unchanged and starts over otherwise (another CRM account,
    /// say). The scheduler will queue a first run at once.
    pub async fn enable_integration(
        &self,
        tenant: TenantId,
        enable: &EnableIntegration<'_>,
    ) -> Result<Integration, StoreError> {
        self.enable_integration_with(tenant, enable, false).await
    }

    /// [`Store::enable_integration`] for an integration whose refresh token the OAuth
    /// connect flow is to bring (`GET /v1/integrations/{connector}/connect`): it waits,
    /// marked `needs_reauthorization` from the same statement on (the scheduler queues no
    /// run for it), until [`Store::store_authorized_refresh_token`] stores one.
    pub async fn enable_integration_awaiting_authorization(
        &self,
        tenant: TenantId,
        enable: &EnableIntegration<'_>,
    ) -> Result<Integration, StoreError> {
        self.enable_integration_with(tenant, enable, true).await
    }

    async fn enable_integration_with(
        &self,
        tenant: TenantId,
        enable: &EnableIntegration<'_>,
        awaiting_authorization: bool,
    ) -> Result<Integration, StoreError> {
        if enable.sync_interval_secs == 0 {
            return Err(StoreError::Invalid { what: "sync interval" });
        }
        let config = serde_json::to_string(enable.config).expect("a map of strings serialises");
        let metrics = serde_json::to_string(enable.metrics).expect("a list of strings serialises");
        let secrets = serde_json::to_vec(&enable.secrets.0).expect("a map of strings serialises");
        let sealed = self.key.seal(&secrets_aad(tenant.as_uuid(), enable.connector_id), &secrets);
        let now = now_ms();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO integrations (tenant_id, connector_id, enabled, config, secrets, cursor, \
                 sync_interval_secs, metrics, enabled_by, enabled_at, disabled_at, next_sync_at, \
                 component_digest, component_grants, approval_digest, auth_status, auth_status_at) \
                 VALUES ($1, $2, TRUE, $3, $4, NULL, $5, $6, $7, $8, NULL, $8, $9, $10, NULL, $11, $12) \
                 ON CONFLICT (tenant_id, connector_id) DO UPDATE SET enabled = TRUE, config = excluded.config, \
                 secrets = excluded.secrets, \
                 cursor = CASE WHEN integrations.config = excluded.config THEN integrations.cursor ELSE NULL END, \
                 sync_interval_secs = excluded.sync_interval_secs, metrics = excluded.metrics, \
                 enabled_by = excluded.enabled_by, enabled_at = excluded.enabled_at, disabled_at = NULL, \
                 next_sync_at = excluded.next_sync_at, auth_status = excluded.auth_status, \
                 auth_status_at = excluded.auth_status_at, \
                 component_digest = excluded.component_digest, component_grants = excluded.component_grants, \
                 approval_digest = NULL",
            )
            .bind(tenant.as_uuid())
            .bind(enable.connector_id)
            .bind(&config)
            .bind(&sealed)
            .bind(to_i64(enable.sync_interval_secs))
            .bind(&metrics)
            .bind(enable.enabled_by.as_uuid())
            .bind(now)
            .bind(enable.component_digest)
            .bind(enable.component_grants)
            .bind(awaiting_authorization.then_some("needs_reauthorization"))
            .bind(awaiting_authorization.then_some(now))
            .execute(pool)
            .await
            .map_err(not_found_on_foreign_key("tenant"))?;
        });
        self.integration(tenant, enable.connector_id).await
    }

    /// Records the component an integration's consent now covers: the installed one when
    /// its grants are no wider than the approved ones (or none were recorded yet). Clears a
    /// pending approval.
    pub async fn record_component(
        &self,
        tenant: TenantId,
        connector_id: &str,
        digest: &str,
        grants: &str,
    ) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE integrations SET component_digest = $3, component_grants = $4, approval_digest = NULL \
                 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(digest)
            .bind(grants)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound { what: "integration" });
        }
        Ok(())
    }

    /// Pauses an integration until an admin approves the installed component `digest`,
    /// which asks for more than was approved: the scheduler queues nothing for it, and its
    /// queued runs fail with `needs_approval`.
    pub async fn mark_needs_approval(
        &self,
        tenant: TenantId,
        connector_id: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE integrations SET approval_digest = $3 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound { what: "integration" });
            }
            sqlx::query(
                "UPDATE sync_runs SET status = 'failed', error_code = 'needs_approval', finished_at = $3 \
                 WHERE tenant_id = $1 AND connector_id = $2 AND status = 'queued'",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// An admin approves the installed component `digest` with its `grants` and the
    /// metrics now consented to: the consent covers it from now on, the pause ends and a
    /// sync is due at once. [`StoreError::NotFound`] unless the integration is enabled.
    pub async fn approve_component(
        &self,
        tenant: TenantId,
        connector_id: &str,
        digest: &str,
        grants: &str,
        metrics: &[String],
    ) -> Result<Integration, StoreError> {
        let metrics = serde_json::to_string(metrics).expect("a list of strings serialises");
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE integrations SET component_digest = $3, component_grants = $4, metrics = $5, \
                 approval_digest = NULL, next_sync_at = $6 WHERE tenant_id = $1 AND connector_id = $2 AND enabled",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(digest)
            .bind(grants)
            .bind(&metrics)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound { what: "integration" });
        }
        self.integration(tenant, connector_id).await
    }

    /// Disables an integration: its secrets are destroyed (the column set to NULL, not just
    /// hidden), queued runs fail with `integration_disabled`, and a running run's next
    /// commit is refused. With `purge`, its facts, owner mappings and cursor are deleted
    /// too. Returns how many facts were purged.
    pub async fn disable_integration(
        &self,
        tenant: TenantId,
        connector_id: &str,
        purge: bool,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let purged = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE integrations SET enabled = FALSE, secrets = NULL, next_sync_at = NULL, \
                 disabled_at = $3, cursor = CASE WHEN $4 THEN NULL ELSE cursor END, \
                 sealed_before = CASE WHEN $4 THEN NULL ELSE sealed_before END \
                 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(now)
            .bind(purge)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound { what: "integration" });
            }
            sqlx::query(
                "UPDATE sync_runs SET status = 'failed', error_code = 'integration_disabled', finished_at = $3 \
                 WHERE tenant_id = $1 AND connector_id = $2 AND status = 'queued'",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let mut purged = 0;
            if purge {
                purged = sqlx::query("DELETE FROM facts WHERE tenant_id = $1 AND connector_id = $2")
                    .bind(tenant.as_uuid())
                    .bind(connector_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2")
                    .bind(tenant.as_uuid())
                    .bind(connector_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM owner_conflicts WHERE tenant_id = $1 AND connector_id = $2")
                    .bind(tenant.as_uuid())
                    .bind(connector_id)
                    .execute(&mut *tx)
                    .await?;
                // Contest totals are kept per integration: its rows go with its facts.
                tx.drop_standings_of(tenant.as_uuid(), connector_id).await?;
            }
            tx.commit().await?;
            purged
        });
        Ok(purged)
    }

    /// An integration of the tenant, enabled or not.
    pub async fn integration(&self, tenant: TenantId, connector_id: &str) -> Result<Integration, StoreError> {
        let row: Option<IntegrationRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_INTEGRATION} WHERE tenant_id = $1 AND connector_id = $2"))
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .fetch_optional(pool)
                .await?
        });
        integration_from_row(row.ok_or(StoreError::NotFound { what: "integration" })?)
    }

    /// Every integration of the tenant, by connector id.
    pub async fn integrations(&self, tenant: TenantId) -> Result<Vec<Integration>, StoreError> {
        let rows: Vec<IntegrationRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_INTEGRATION} WHERE tenant_id = $1 ORDER BY connector_id"))
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(integration_from_row).collect()
    }

    /// The unsealed secrets of an enabled integration: for the runtime's credential
    /// injection only. [`StoreError::NotFound`] once disabled.
    pub async fn integration_secrets(&self, tenant: TenantId, connector_id: &str) -> Result<Secrets, StoreError> {
        let sealed: Option<Option<Vec<u8>>> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT secrets FROM integrations WHERE tenant_id = $1 AND connector_id = $2 AND enabled",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_optional(pool)
            .await?
        });
        let sealed = sealed.flatten().ok_or(StoreError::NotFound { what: "integration secrets" })?;
        let plain = self.key.open(&secrets_aad(tenant.as_uuid(), connector_id), &sealed)?;
        serde_json::from_slice(&plain).map(Secrets).map_err(|_| StoreError::Corrupt { what: "integration secrets" })
    }

    /// Replaces the secrets of an enabled integration (a rotated refresh token, say).
    pub async fn replace_secrets(
        &self,
        tenant: TenantId,
        connector_id: &str,
        secrets: &Secrets,
    ) -> Result<(), StoreError> {
        let plain = serde_json::to_vec(&secrets.0).expect("a map of strings serialises");
        let sealed = self.key.seal(&secrets_aad(tenant.as_uuid(), connector_id), &plain);
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE integrations SET secrets = $3 WHERE tenant_id = $1 AND connector_id = $2 AND enabled",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(&sealed)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound { what: "integration" });
        }
        Ok(())
    }

    /// The last committed cursor of an integration (`None` before the first checkpoint).
    pub async fn cursor(&self, tenant: TenantId, connector_id: &str) -> Result<Option<Cursor>, StoreError> {
        let row: Option<Option<String>> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT cursor FROM integrations WHERE tenant_id = $1 AND connector_id = $2")
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .fetch_optional(pool)
                .await?
        });
        let cursor = row.ok_or(StoreError::NotFound { what: "integration" })?;
        cursor.as_deref().map(parse_cursor).transpose()
    }

    /// Maps CRM owners (keyed hashes of their CRM user ids under this connector) to users of
    /// the tenant, replacing earlier mappings of the same owners, in one transaction. Their
    /// facts are attributed to the users from then on, past facts included.
    /// [`StoreError::NotFound`] if a user is not in the tenant.
    pub async fn map_owners(
        &self,
        tenant: TenantId,
        connector_id: &str,
        mappings: &[(KeyedHash, UserId)],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for (owner, user) in mappings {
                sqlx::query(
                    "INSERT INTO owner_mappings (tenant_id, connector_id, owner_hash, user_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, connector_id, owner_hash) DO UPDATE SET user_id = excluded.user_id",
                )
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .bind(&owner.as_bytes()[..])
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(not_found_on_foreign_key("user"))?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes the mapping of a CRM owner; its facts wait under the hash again.
    pub async fn unmap_owner(&self, tenant: TenantId, connector_id: &str, owner: KeyedHash) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3")
                .bind(tenant.as_uuid())
                .bind(connector_id)
                .bind(&owner.as_bytes()[..])
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The owner mappings of one integration of the tenant, by hash.
    pub async fn owner_mappings(
        &self,
        tenant: TenantId,
        connector_id: &str,
    ) -> Result<Vec<(KeyedHash, UserId)>, StoreError> {
        let rows: Vec<(Vec<u8>, Uuid)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT owner_hash, user_id FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2 \
                 ORDER BY owner_hash",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(|(hash, user)| Ok((keyed_hash(&hash)?, UserId::from_uuid(user)))).collect()
    }
}

/// How a CRM owner came to be mapped to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MappingSource {
    /// By the roster: the owner's e-mail is an admin-set address of the user.
    Auto,
    /// By an admin entering the owner's CRM id.
    Manual,
    /// By an admin confirming a mapping the roster proposed (a pending conflict).
    Confirmed,
}

impl MappingSource {
    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Manual => "manual",
            Self::Confirmed => "confirmed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "auto" => Ok(Self::Auto),
            "manual" => Ok(Self::Manual),
            "confirmed" => Ok(Self::Confirmed),
            _ => Err(StoreError::Corrupt { what: "owner mapping source" }),
        }
    }
}

/// A CRM owner mapped to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMapping {
    /// The owner (a keyed hash of their CRM id).
    pub owner: KeyedHash,
    /// The user their facts count for.
    pub user_id: UserId,
    /// How the mapping was made.
    pub source: MappingSource,
}

/// Why the roster did not make a mapping by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictReason {
    /// The user's matching address was set by the user (`PATCH /v1/me`), not by an admin.
    SelfServiceEmail,
    /// The owner is already mapped to another user (automatically or by an admin).
    MappedToOther,
}

impl ConflictReason {
    /// The stored (and shown) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfServiceEmail => "self_service_email",
            Self::MappedToOther => "mapped_to_other",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "self_service_email" => Ok(Self::SelfServiceEmail),
            "mapped_to_other" => Ok(Self::MappedToOther),
            _ => Err(StoreError::Corrupt { what: "owner conflict reason" }),
        }
    }
}

/// A mapping the roster proposes and waits for an admin to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerConflict {
    /// The owner.
    pub owner: KeyedHash,
    /// The user whose e-mail matches the owner's.
    pub user_id: UserId,
    /// Why it waits.
    pub reason: ConflictReason,
    /// When the last roster run found it, in milliseconds since the Unix epoch.
    pub detected_at_ms: i64,
}

/// What one roster run did to the owner mappings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RosterMapping {
    /// New automatic mappings.
    pub mapped: u64,
    /// Proposed mappings waiting for an admin (pending conflicts now).
    pub pending: u64,
}

/// The audit subject of an owner mapping: connector, keyed hash, user ids; no CRM id, no
/// e-mail.
fn mapping_subject(connector_id: &str, owner: KeyedHash, user: Option<UserId>, previous: Option<UserId>) -> String {
    let show = |u: Option<UserId>| u.map_or_else(|| "-".to_owned(), |u| u.to_string());
    format!("{connector_id} {owner} {} was={}", show(user), show(previous))
}

impl Store {
    /// Maps the owners of a roster run (keyed hash, normalised e-mail: compared here, never
    /// kept) to the tenant's users with that address, in one transaction, audited. A
    /// mapping is made automatically only when the owner is not mapped yet and the user's
    /// address was set by an admin; an owner already mapped to someone else (by the roster
    /// or by an admin) keeps that mapping, and a match through an address the user set
    /// themselves is never made alone: both are recorded as pending conflicts (the
    /// integration's list is replaced by this run's) until an admin confirms or maps.
    pub async fn map_roster(
        &self,
        tenant: TenantId,
        connector_id: &str,
        roster: &[(KeyedHash, String)],
    ) -> Result<RosterMapping, StoreError> {
        let now = now_ms();
        let t = tenant.as_uuid();
        let report = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let users: Vec<(Uuid, String, bool)> = sqlx::query_as(
                "SELECT id, email_norm, email_self_set FROM users WHERE tenant_id = $1 AND NOT former",
            )
            .bind(t)
            .fetch_all(&mut *tx)
            .await?;
            let by_email: BTreeMap<String, (Uuid, bool)> =
                users.into_iter().map(|(id, email, self_set)| (email, (id, self_set))).collect();
            let mapped: Vec<(Vec<u8>, Uuid)> = sqlx::query_as(
                "SELECT owner_hash, user_id FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(t)
            .bind(connector_id)
            .fetch_all(&mut *tx)
            .await?;
            let mapped: BTreeMap<Vec<u8>, Uuid> = mapped.into_iter().collect();
            let before: Vec<(Vec<u8>, Uuid, String)> = sqlx::query_as(
                "SELECT owner_hash, user_id, reason FROM owner_conflicts WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(t)
            .bind(connector_id)
            .fetch_all(&mut *tx)
            .await?;
            let before: std::collections::BTreeSet<(Vec<u8>, Uuid, String)> = before.into_iter().collect();
            sqlx::query("DELETE FROM owner_conflicts WHERE tenant_id = $1 AND connector_id = $2")
                .bind(t)
                .bind(connector_id)
                .execute(&mut *tx)
                .await?;
            let mut report = RosterMapping::default();
            let mut seen = std::collections::BTreeSet::new();
            for (owner, email) in roster {
                let Some(&(user, self_set)) = by_email.get(email) else { continue };
                let hash = owner.as_bytes().to_vec();
                if !seen.insert(hash.clone()) {
                    continue;
                }
                let reason = match mapped.get(&hash) {
                    Some(current) if *current == user => continue,
                    Some(_) => ConflictReason::MappedToOther,
                    None if self_set => ConflictReason::SelfServiceEmail,
                    None => {
                        sqlx::query(
                            "INSERT INTO owner_mappings (tenant_id, connector_id, owner_hash, user_id, source) \
                             VALUES ($1, $2, $3, $4, 'auto')",
                        )
                        .bind(t)
                        .bind(connector_id)
                        .bind(&hash)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                        let subject = mapping_subject(connector_id, *owner, Some(UserId::from_uuid(user)), None);
                        audit_in_tx!(&self.key, tx, t, super::types::Actor::System, "owner.mapped_auto", &subject);
                        report.mapped += 1;
                        continue;
                    }
                };
                sqlx::query(
                    "INSERT INTO owner_conflicts (tenant_id, connector_id, owner_hash, user_id, reason, detected_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(t)
                .bind(connector_id)
                .bind(&hash)
                .bind(user)
                .bind(reason.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                report.pending += 1;
                let current = mapped.get(&hash).copied().map(UserId::from_uuid);
                if !before.contains(&(hash, user, reason.as_str().to_owned())) {
                    // A new pending conflict (not one already listed): audited once.
                    let subject = mapping_subject(connector_id, *owner, Some(UserId::from_uuid(user)), current);
                    let subject = format!("{subject} reason={}", reason.as_str());
                    audit_in_tx!(&self.key, tx, t, super::types::Actor::System, "owner.mapping_pending", &subject);
                }
            }
            tx.commit().await?;
            report
        });
        Ok(report)
    }

    /// An admin's mapping of a CRM owner to a user (`Manual`, or `Confirmed` for a pending
    /// conflict): it replaces any earlier mapping of the owner and clears its pending
    /// conflict, audited (`owner.mapped` or `owner.confirmed`) in the same transaction. With
    /// `Confirmed`, the owner must have a pending conflict naming this user
    /// ([`StoreError::NotFound`] `pending mapping` otherwise). Returns the user the owner
    /// was mapped to before, if any. [`StoreError::NotFound`] `user` if the user is not in
    /// the tenant.
    pub async fn set_owner_mapping(
        &self,
        tenant: TenantId,
        connector_id: &str,
        owner: KeyedHash,
        user: UserId,
        source: MappingSource,
        actor: super::types::Actor,
    ) -> Result<Option<UserId>, StoreError> {
        let t = tenant.as_uuid();
        let hash = owner.as_bytes().to_vec();
        let previous = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let pending = sqlx::query(
                "DELETE FROM owner_conflicts WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3 \
                 AND user_id = $4",
            )
            .bind(t)
            .bind(connector_id)
            .bind(&hash)
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if source == MappingSource::Confirmed && pending == 0 {
                return Err(StoreError::NotFound { what: "pending mapping" });
            }
            sqlx::query("DELETE FROM owner_conflicts WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3")
                .bind(t)
                .bind(connector_id)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            let previous: Option<Uuid> = sqlx::query_scalar(
                "SELECT user_id FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3",
            )
            .bind(t)
            .bind(connector_id)
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO owner_mappings (tenant_id, connector_id, owner_hash, user_id, source) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, connector_id, owner_hash) DO UPDATE SET user_id = excluded.user_id, \
                 source = excluded.source",
            )
            .bind(t)
            .bind(connector_id)
            .bind(&hash)
            .bind(user.as_uuid())
            .bind(source.as_str())
            .execute(&mut *tx)
            .await
            .map_err(not_found_on_foreign_key("user"))?;
            let previous = previous.map(UserId::from_uuid);
            let action = if source == MappingSource::Confirmed { "owner.confirmed" } else { "owner.mapped" };
            let subject = mapping_subject(connector_id, owner, Some(user), previous);
            audit_in_tx!(&self.key, tx, t, actor, action, &subject);
            tx.commit().await?;
            previous
        });
        Ok(previous)
    }

    /// An admin removes the mapping of a CRM owner, audited (`owner.unmapped`): its facts
    /// wait under the hash again. Returns the user it was mapped to;
    /// [`StoreError::NotFound`] `owner mapping` if it was not mapped.
    pub async fn remove_owner_mapping(
        &self,
        tenant: TenantId,
        connector_id: &str,
        owner: KeyedHash,
        actor: super::types::Actor,
    ) -> Result<UserId, StoreError> {
        let t = tenant.as_uuid();
        let hash = owner.as_bytes().to_vec();
        let previous = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let previous: Option<Uuid> = sqlx::query_scalar(
                "DELETE FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2 AND owner_hash = $3 \
                 RETURNING user_id",
            )
            .bind(t)
            .bind(connector_id)
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?;
            let previous = UserId::from_uuid(previous.ok_or(StoreError::NotFound { what: "owner mapping" })?);
            let subject = mapping_subject(connector_id, owner, None, Some(previous));
            audit_in_tx!(&self.key, tx, t, actor, "owner.unmapped", &subject);
            tx.commit().await?;
            previous
        });
        Ok(previous)
    }

    /// The owner mappings of one integration with how each was made, by hash.
    pub async fn owner_mapping_sources(
        &self,
        tenant: TenantId,
        connector_id: &str,
    ) -> Result<Vec<OwnerMapping>, StoreError> {
        let rows: Vec<(Vec<u8>, Uuid, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT owner_hash, user_id, source FROM owner_mappings WHERE tenant_id = $1 AND connector_id = $2 \
                 ORDER BY owner_hash",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(hash, user, source)| {
                Ok(OwnerMapping {
                    owner: keyed_hash(&hash)?,
                    user_id: UserId::from_uuid(user),
                    source: MappingSource::parse(&source)?,
                })
            })
            .collect()
    }

    /// The pending conflicts of one integration (mappings waiting for an admin), by hash.
    pub async fn owner_conflicts(
        &self,
        tenant: TenantId,
        connector_id: &str,
    ) -> Result<Vec<OwnerConflict>, StoreError> {
        let rows: Vec<(Vec<u8>, Uuid, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT owner_hash, user_id, reason, detected_at FROM owner_conflicts \
                 WHERE tenant_id = $1 AND connector_id = $2 ORDER BY owner_hash",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(hash, user, reason, at)| {
                Ok(OwnerConflict {
                    owner: keyed_hash(&hash)?,
                    user_id: UserId::from_uuid(user),
                    reason: ConflictReason::parse(&reason)?,
                    detected_at_ms: at,
                })
            })
            .collect()
    }
}

/// Reads a stored 16-byte keyed hash.
pub(crate) fn keyed_hash(bytes: &[u8]) -> Result<KeyedHash, StoreError> {
    <[u8; 16]>::try_from(bytes).map(KeyedHash::from_bytes).map_err(|_| StoreError::Corrupt { what: "keyed hash" })
}

/// How long a refresh may hold an integration's refresh lease before another node may take
/// it over (a refresh takes a few token calls of at most 15 seconds each).
const REFRESH_LEASE: Duration = Duration::from_secs(120);

/// A held refresh lease on an integration row (`refresh_lease_holder`,
/// `refresh_lease_until`): one refresh of its credentials at a time, across every node of
/// the database. Every write under it is fenced by the holder and by the sealed secrets it
/// read, so a lease that expired and was taken over, or secrets an admin replaced
/// meanwhile, make the write a no-op (`false`). The scheduler's token vault is built on it.
#[derive(Debug, Clone)]
pub struct RefreshLease {
    /// The tenant.
    pub tenant: TenantId,
    /// The integration's connector.
    pub connector_id: String,
    /// Who holds it (random per refresh).
    pub holder: String,
    /// The sealed secrets as read when the lease was taken (or last written under it).
    pub sealed: Vec<u8>,
}

/// Why a refresh lease could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// Another refresh holds it: wait.
    Held,
    /// The integration is gone, disabled or without secrets.
    Gone,
    /// Its grant was refused: it needs re-authorisation.
    NeedsReauthorization,
}

const STORE_ROTATED: &str = "UPDATE integrations SET secrets = $5 \
     WHERE tenant_id = $1 AND connector_id = $2 AND refresh_lease_holder = $3 AND secrets = $4";
const MARK_REFUSED: &str = "UPDATE integrations SET auth_status = 'needs_reauthorization', auth_status_at = $5, \
     refresh_lease_holder = NULL, refresh_lease_until = NULL \
     WHERE tenant_id = $1 AND connector_id = $2 AND refresh_lease_holder = $3 AND secrets = $4";
const RELEASE: &str = "UPDATE integrations SET refresh_lease_holder = NULL, refresh_lease_until = NULL \
     WHERE tenant_id = $1 AND connector_id = $2 AND refresh_lease_holder = $3 AND secrets = $4";

impl Store {
    /// Marks an integration as needing re-authorisation (what a refused refresh does
    /// through its vault). Enabling it again clears the mark.
    pub async fn mark_needs_reauthorization(&self, tenant: TenantId, connector_id: &str) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE integrations SET auth_status = 'needs_reauthorization', auth_status_at = $3 \
                 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound { what: "integration" });
        }
        Ok(())
    }

    /// Takes the refresh lease of an integration for `holder` if it is free.
    pub async fn take_refresh_lease(
        &self,
        tenant: TenantId,
        connector_id: &str,
        holder: &str,
    ) -> Result<Option<RefreshLease>, StoreError> {
        let now = now_ms();
        let until = now.saturating_add(REFRESH_LEASE.as_millis() as i64);
        let sealed: Option<Option<Vec<u8>>> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "UPDATE integrations SET refresh_lease_holder = $3, refresh_lease_until = $4 \
                 WHERE tenant_id = $1 AND connector_id = $2 AND enabled AND secrets IS NOT NULL \
                 AND auth_status IS NULL AND (refresh_lease_until IS NULL OR refresh_lease_until < $5) \
                 RETURNING secrets",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .bind(holder)
            .bind(until)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(sealed.flatten().map(|sealed| RefreshLease {
            tenant,
            connector_id: connector_id.to_owned(),
            holder: holder.to_owned(),
            sealed,
        }))
    }

    /// Why the refresh lease could not be taken.
    pub async fn refresh_lease_refusal(
        &self,
        tenant: TenantId,
        connector_id: &str,
    ) -> Result<LeaseRefusal, StoreError> {
        let row: Option<(bool, bool, Option<String>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT enabled, secrets IS NOT NULL, auth_status FROM integrations \
                 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_uuid())
            .bind(connector_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            None | Some((false, _, _)) | Some((_, false, _)) => LeaseRefusal::Gone,
            Some((_, _, Some(_))) => LeaseRefusal::NeedsReauthorization,
            Some((true, true, None)) => LeaseRefusal::Held,
        })
    }

    /// The secrets sealed under a lease.
    pub fn open_leased_secrets(&self, lease: &RefreshLease) -> Result<BTreeMap<String, String>, StoreError> {
        let aad = secrets_aad(lease.tenant.as_uuid(), &lease.connector_id);
        let plain = self.key.open(&aad, &lease.sealed)?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt { what: "integration secrets" })
    }

    /// Replaces the secrets under a held lease (a rotated refresh token); `false` if the
    /// lease was lost (then nothing is written). The lease then fences on the new secrets.
    pub async fn store_leased_secrets(
        &self,
        lease: &mut RefreshLease,
        secrets: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let plain = serde_json::to_vec(secrets).map_err(|_| StoreError::Corrupt { what: "integration secrets" })?;
        let sealed = self.key.seal(&secrets_aad(lease.tenant.as_uuid(), &lease.connector_id), &plain);
        let done = self.fenced_update(STORE_ROTATED, lease, Some(Fifth::Sealed(&sealed))).await?;
        if done {
            lease.sealed = sealed;
        }
        Ok(done)
    }

    /// Marks the integration as needing re-authorisation and frees the lease; `false` if
    /// the lease was lost.
    pub async fn refuse_under_lease(&self, lease: &RefreshLease) -> Result<bool, StoreError> {
        self.fenced_update(MARK_REFUSED, lease, Some(Fifth::Now)).await
    }

    /// Frees a refresh lease; `false` if it was lost already.
    pub async fn release_refresh_lease(&self, lease: &RefreshLease) -> Result<bool, StoreError> {
        self.fenced_update(RELEASE, lease, None).await
    }

    /// Runs one `UPDATE` of the row fenced by the lease holder and the sealed secrets it
    /// read; whether it matched. `$1` tenant, `$2` connector, `$3` holder, `$4` sealed
    /// secrets read, `$5` the new sealed secrets or the time, as `sql` uses them.
    async fn fenced_update(
        &self,
        sql: &str,
        lock: &RefreshLease,
        fifth: Option<Fifth<'_>>,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => {
            let query = sqlx::query(sql)
                .bind(lock.tenant.as_uuid())
                .bind(&lock.connector_id)
                .bind(&lock.holder)
                .bind(&lock.sealed);
            let query = match fifth {
                Some(Fifth::Sealed(sealed)) => query.bind(sealed),
                Some(Fifth::Now) => query.bind(now_ms()),
                None => query,
            };
            query.execute(pool).await?.rows_affected()
        });
        Ok(done == 1)
    }
}

/// The fifth parameter of a fenced update.
#[derive(Clone, Copy)]
enum Fifth<'a> {
    Sealed(&'a [u8]),
    Now,
}
