//! The OAuth connect flow's state: authorisations an admin started and the CRM has not sent
//! back yet (`oauth_states`), and storing the refresh token the exchange brought.
//!
//! A pending authorisation is kept as the SHA-256 of its `state` (the state itself lives
//! only in the admin's browser and the CRM's redirect), with the PKCE `code_verifier`
//! sealed under the master key, bound to one tenant, connector and admin, and short-lived.
//! [`Store::take_oauth_state`] finds it by hash alone, since the callback carries no API
//! token (the one lookup here that does not start from a tenant, like authentication by
//! token hash), and deletes it in the same statement: a state is used once, whatever the
//! outcome.

use uuid::Uuid;

use super::crypto::secrets_aad;
use super::error::StoreError;
use super::types::{Actor, TenantId, UserId, now_ms};
use super::{BeginWrite, Store};

/// The secret the OAuth auth schemes read the refresh token from (the runtime's
/// `auth::REFRESH_TOKEN`; `store` does not depend on `runtime`, a test in `api` keeps the two equal).
pub const REFRESH_TOKEN_SECRET: &str = "refresh_token";

/// A pending authorisation to record.
#[derive(Debug, Clone, Copy)]
pub struct NewOAuthState<'a> {
    /// The connector being connected.
    pub connector_id: &'a str,
    /// The admin who started it.
    pub user: UserId,
    /// SHA-256 of the `state` sent to the CRM.
    pub state_hash: [u8; 32],
    /// The PKCE `code_verifier` (sealed before it is stored).
    pub verifier: &'a str,
    /// The `redirect_uri` sent (the exchange must send the same).
    pub redirect_uri: &'a str,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// A pending authorisation taken back by its state.
#[derive(Clone)]
pub struct PendingAuthorization {
    /// The tenant it is bound to.
    pub tenant_id: TenantId,
    /// The connector it is bound to.
    pub connector_id: String,
    /// The admin who started it.
    pub user: UserId,
    /// The PKCE `code_verifier`.
    pub verifier: String,
    /// The `redirect_uri` sent to the CRM.
    pub redirect_uri: String,
    /// When it expired or expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("tenant_id", &self.tenant_id)
            .field("connector_id", &self.connector_id)
            .field("verifier", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The associated data of a sealed verifier: bound to its state's hash.
fn verifier_aad(state_hash: &[u8]) -> Vec<u8> {
    let mut aad = b"oneup/oauth-verifier/v1/".to_vec();
    aad.extend_from_slice(state_hash);
    aad
}

type StateRow = (Uuid, String, Uuid, Vec<u8>, String, i64);

impl Store {
    /// Records a pending authorisation (and forgets the tenant's expired ones).
    pub async fn insert_oauth_state(&self, tenant: TenantId, new: &NewOAuthState<'_>) -> Result<(), StoreError> {
        let sealed = self.key.seal(&verifier_aad(&new.state_hash), new.verifier.as_bytes());
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM oauth_states WHERE tenant_id = $1 AND expires_at <= $2")
                .bind(tenant.as_uuid())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_states (tenant_id, state_hash, connector_id, user_id, verifier, redirect_uri, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(tenant.as_uuid())
            .bind(&new.state_hash[..])
            .bind(new.connector_id)
            .bind(new.user.as_uuid())
            .bind(&sealed)
            .bind(new.redirect_uri)
            .bind(now)
            .bind(new.expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(super::error::not_found_on_foreign_key("user"))?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes the pending authorisation of a state (by its SHA-256) and deletes it: `None`
    /// when there is none (never issued, used already, or its tenant offboarded). An
    /// expired one is returned (and deleted) too: the caller refuses it, saying why.
    pub async fn take_oauth_state(&self, state_hash: &[u8; 32]) -> Result<Option<PendingAuthorization>, StoreError> {
        let row: Option<StateRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "DELETE FROM oauth_states WHERE state_hash = $1 \
                 RETURNING tenant_id, connector_id, user_id, verifier, redirect_uri, expires_at",
            )
            .bind(&state_hash[..])
            .fetch_optional(pool)
            .await?
        });
        let Some((tenant, connector_id, user, sealed, redirect_uri, expires_at_ms)) = row else { return Ok(None) };
        let verifier = self.key.open(&verifier_aad(state_hash), &sealed)?;
        let verifier = String::from_utf8(verifier).map_err(|_| StoreError::Corrupt { what: "oauth verifier" })?;
        Ok(Some(PendingAuthorization {
            tenant_id: TenantId::from_uuid(tenant),
            connector_id,
            user: UserId::from_uuid(user),
            verifier,
            redirect_uri,
            expires_at_ms,
        }))
    }

    /// Stores the refresh token the connect flow obtained, sealed with the integration's
    /// other secrets exactly as a pasted one is: replaces any refresh token there, clears a
    /// `needs_reauthorization` mark and a refresh lock in flight (whose rotation would
    /// otherwise overwrite it), makes a run due now, and audits `integration.authorized`
    /// by `actor`, all in one transaction. [`StoreError::NotFound`] unless the integration
    /// is enabled.
    pub async fn store_authorized_refresh_token(
        &self,
        tenant: TenantId,
        connector_id: &str,
        refresh_token: &str,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let t = tenant.as_uuid();
        let aad = secrets_aad(t, connector_id);
        let lock = self.for_update();
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let sealed: Option<Option<Vec<u8>>> = sqlx::query_scalar(&format!(
                "SELECT secrets FROM integrations WHERE tenant_id = $1 AND connector_id = $2 AND enabled{lock}"
            ))
            .bind(t)
            .bind(connector_id)
            .fetch_optional(&mut *tx)
            .await?;
            let sealed = sealed.flatten().ok_or(StoreError::NotFound { what: "integration" })?;
            let plain = self.key.open(&aad, &sealed)?;
            let mut secrets: std::collections::BTreeMap<String, String> =
                serde_json::from_slice(&plain).map_err(|_| StoreError::Corrupt { what: "integration secrets" })?;
            secrets.insert(REFRESH_TOKEN_SECRET.to_owned(), refresh_token.to_owned());
            let plain = serde_json::to_vec(&secrets).expect("a map of strings serialises");
            let sealed = self.key.seal(&aad, &plain);
            sqlx::query(
                "UPDATE integrations SET secrets = $3, auth_status = NULL, auth_status_at = NULL, \
                 refresh_lease_holder = NULL, refresh_lease_until = NULL, next_sync_at = $4 \
                 WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(t)
            .bind(connector_id)
            .bind(&sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            audit_in_tx!(&self.key, tx, t, actor, "integration.authorized", connector_id);
            tx.commit().await?;
        });
        Ok(())
    }
}
