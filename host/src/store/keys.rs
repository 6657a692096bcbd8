//! The master key and the database agree: a fingerprint of the key every sealed value is
//! sealed under is recorded at first start ([`Store::record_master_key`]), a node with
//! another key is refused before it writes anything ([`Store::check_master_key`]), and
//! [`Store::rotate_master_key`] re-seals everything under a new key in one transaction.

use uuid::Uuid;

use super::crypto::{MasterKey, secrets_aad, tenant_key_aad};
use super::error::StoreError;
use super::types::{Actor, now_ms};
use super::{BeginWrite, Pool, Store};

/// What [`Store::rotate_master_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// Everything was re-sealed under the new key.
    Rotated {
        /// Tenant pseudonymisation keys re-sealed.
        tenant_keys: u64,
        /// Integration secrets re-sealed.
        secrets: u64,
    },
    /// The database is sealed under the new key already (a second run): nothing changed.
    AlreadyRotated,
}

/// A tenant id and its sealed pseudonymisation key.
type SealedTenantKey = (Uuid, Vec<u8>);
/// A tenant id, a connector id and the integration's sealed secrets.
type SealedSecrets = (Uuid, String, Vec<u8>);

/// The first hex digits of a fingerprint, for messages.
fn short(fingerprint: &[u8]) -> String {
    hex::encode(&fingerprint[..fingerprint.len().min(6)])
}

fn mismatch(recorded: Option<&[u8]>, key: &MasterKey) -> StoreError {
    StoreError::MasterKeyMismatch {
        recorded: recorded.map_or_else(|| "none".to_owned(), short),
        given: short(&key.fingerprint()),
    }
}

impl Store {
    /// The recorded fingerprint, if the table exists and has one (reads only: usable
    /// before the migrations are applied).
    async fn recorded_fingerprint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let exists: bool = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_scalar("SELECT to_regclass('master_key') IS NOT NULL").fetch_one(pool).await?
            }
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'master_key'",
                )
                .fetch_one(pool)
                .await?
            }
        };
        if !exists {
            return Ok(None);
        }
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar("SELECT fingerprint FROM master_key WHERE id = 1").fetch_optional(pool).await?
        }))
    }

    /// Whether the sealed values opened for a check (one tenant key and one integration's
    /// secrets, if there are any) open under this store's key.
    async fn sample_opens(&self) -> Result<bool, StoreError> {
        let tables: i64 =
            match &self.pool {
                Pool::Postgres(pool) => {
                    sqlx::query_scalar(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_name IN ('tenants', 'integrations')",
                    )
                    .fetch_one(pool)
                    .await?
                }
                Pool::Sqlite(pool) => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('tenants', 'integrations')",
                )
                .fetch_one(pool)
                .await?,
            };
        if tables < 2 {
            return Ok(true);
        }
        let (tenant, secrets): (Option<SealedTenantKey>, Option<SealedSecrets>) = on_pool!(self, pool => {
            let tenant = sqlx::query_as("SELECT tenant_id, pseudonym_key FROM tenants LIMIT 1")
                .fetch_optional(pool)
                .await?;
            let secrets = sqlx::query_as(
                "SELECT tenant_id, connector_id, secrets FROM integrations WHERE secrets IS NOT NULL LIMIT 1",
            )
            .fetch_optional(pool)
            .await?;
            (tenant, secrets)
        });
        let tenant_ok = tenant.is_none_or(|(t, sealed)| self.key.open(&tenant_key_aad(t), &sealed).is_ok());
        let secrets_ok = secrets.is_none_or(|(t, c, sealed)| self.key.open(&secrets_aad(t, &c), &sealed).is_ok());
        Ok(tenant_ok && secrets_ok)
    }

    /// Checks, without writing anything, that this store's master key is the database's:
    /// its fingerprint is the recorded one, or (none recorded yet: a database from before
    /// fingerprints, or a new one) the sealed values there open under it.
    /// [`StoreError::MasterKeyMismatch`] otherwise.
    pub async fn check_master_key(&self) -> Result<(), StoreError> {
        match self.recorded_fingerprint().await? {
            Some(recorded) if recorded[..] == self.key.fingerprint()[..] => Ok(()),
            Some(recorded) => Err(mismatch(Some(&recorded), &self.key)),
            None if self.sample_opens().await? => Ok(()),
            None => Err(mismatch(None, &self.key)),
        }
    }

    /// Records this store's key fingerprint if none is recorded yet (first start), then
    /// checks it like [`Store::check_master_key`] (two first nodes racing: one wins, the
    /// other is refused). Needs the migrations applied.
    pub async fn record_master_key(&self) -> Result<(), StoreError> {
        self.check_master_key().await?;
        let fingerprint = self.key.fingerprint();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO master_key (id, fingerprint, recorded_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&fingerprint[..])
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        self.check_master_key().await
    }

    /// Re-seals every tenant key and integration secret, sealed under this store's key
    /// (the old one), under `new`, records `new`'s fingerprint and appends
    /// `master_key.rotated` to every tenant's audit log, all in one transaction: a crash
    /// leaves everything under the old key, and running it again is safe (after success it
    /// answers [`Rotation::AlreadyRotated`]). [`StoreError::MasterKeyMismatch`] if the
    /// recorded fingerprint is neither key's; [`StoreError::Decrypt`] if a value does not
    /// open under the old key (nothing is changed then).
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<Rotation, StoreError> {
        let old = &self.key;
        let new_fingerprint = new.fingerprint();
        let lock = self.for_update();
        let rotation = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let recorded: Option<Vec<u8>> =
                sqlx::query_scalar(&format!("SELECT fingerprint FROM master_key WHERE id = 1{lock}"))
                    .fetch_optional(&mut *tx)
                    .await?;
            match recorded.as_deref() {
                Some(r) if r == new_fingerprint => return Ok(Rotation::AlreadyRotated),
                Some(r) if r != old.fingerprint() => return Err(mismatch(Some(r), old)),
                _ => {}
            }
            let tenants: Vec<SealedTenantKey> =
                sqlx::query_as(&format!("SELECT tenant_id, pseudonym_key FROM tenants ORDER BY tenant_id{lock}"))
                    .fetch_all(&mut *tx)
                    .await?;
            let mut per_tenant: std::collections::BTreeMap<Uuid, u64> = std::collections::BTreeMap::new();
            for (tenant, sealed) in &tenants {
                let aad = tenant_key_aad(*tenant);
                let resealed = new.seal(&aad, &old.open(&aad, sealed)?);
                sqlx::query("UPDATE tenants SET pseudonym_key = $2 WHERE tenant_id = $1")
                    .bind(tenant)
                    .bind(&resealed)
                    .execute(&mut *tx)
                    .await?;
                per_tenant.insert(*tenant, 0);
            }
            let secrets: Vec<SealedSecrets> = sqlx::query_as(&format!(
                "SELECT tenant_id, connector_id, secrets FROM integrations WHERE secrets IS NOT NULL \
                 ORDER BY tenant_id, connector_id{lock}"
            ))
            .fetch_all(&mut *tx)
            .await?;
            for (tenant, connector, sealed) in &secrets {
                let aad = secrets_aad(*tenant, connector);
                let resealed = new.seal(&aad, &old.open(&aad, sealed)?);
                sqlx::query("UPDATE integrations SET secrets = $3 WHERE tenant_id = $1 AND connector_id = $2")
                    .bind(tenant)
                    .bind(connector)
                    .bind(&resealed)
                    .execute(&mut *tx)
                    .await?;
                *per_tenant.entry(*tenant).or_default() += 1;
            }
            sqlx::query(
                "INSERT INTO master_key (id, fingerprint, recorded_at) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at",
            )
            .bind(&new_fingerprint[..])
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            for (tenant, count) in &per_tenant {
                let subject = format!("key={} secrets={count}", short(&new_fingerprint));
                audit_in_tx!(new, tx, *tenant, Actor::Operator, "master_key.rotated", &subject);
            }
            tx.commit().await?;
            Rotation::Rotated { tenant_keys: tenants.len() as u64, secrets: secrets.len() as u64 }
        });
        Ok(rotation)
    }
}
