//! The append-only audit log: who did what to which subject, per tenant, numbered.
//!
//! There is no code path that updates or deletes an entry, and the schema refuses both
//! (a trigger on each backend). Sequence numbers are per tenant, start at 1 and have no
//! gaps: they are handed out under the tenant row's lock in the appending transaction.
//! Subjects hold ids, connector ids, metric slugs and codes, never personal data.

use super::error::StoreError;
use super::types::{Actor, TenantId, now_ms, to_u64};
use super::{BeginWrite, Store};

/// An entry to append.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    /// Who did it.
    pub actor: Actor,
    /// What was done, a dotted code such as `integration.enabled`.
    pub action: &'a str,
    /// What it was done to: ids, a connector id, metric slugs; no personal data.
    pub subject: &'a str,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its number within the tenant, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: String,
    /// To what.
    pub subject: String,
}

impl Store {
    /// Appends an entry to the tenant's audit log and returns its sequence number.
    pub async fn append_audit(&self, tenant: TenantId, entry: &AuditEntry<'_>) -> Result<u64, StoreError> {
        let actor = entry.actor.to_stored();
        let seq = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE tenants SET audit_seq = audit_seq + 1 WHERE tenant_id = $1 RETURNING audit_seq",
            )
            .bind(tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let seq = seq.ok_or(StoreError::NotFound { what: "tenant" })?;
            sqlx::query(
                "INSERT INTO audit_log (tenant_id, seq, at, actor, action, subject) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.as_uuid())
            .bind(seq)
            .bind(now_ms())
            .bind(&actor)
            .bind(entry.action)
            .bind(entry.subject)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            seq
        });
        Ok(to_u64(seq))
    }

    /// The tenant's audit entries after sequence number `after` (0 for the start), oldest
    /// first, at most `limit`.
    pub async fn audit_log(&self, tenant: TenantId, after: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, at, actor, action, subject FROM audit_log \
                 WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(tenant.as_uuid())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(seq, at, actor, action, subject)| {
                Ok(AuditRecord { seq: to_u64(seq), at_ms: at, actor: Actor::parse_stored(&actor)?, action, subject })
            })
            .collect()
    }
}
