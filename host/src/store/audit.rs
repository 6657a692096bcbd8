//! The append-only, tamper-evident audit log: who did what to which subject, per tenant,
//! numbered and chained.
//!
//! There is no code path that updates or deletes an entry, and the schema refuses both
//! (a trigger on each backend). Sequence numbers are per tenant, start at 1 and have no
//! gaps: they are handed out under the tenant row's lock in the appending transaction.
//! Subjects hold ids, connector ids, metric slugs and codes, never personal data.
//!
//! # The chain
//! Each entry carries `chain`, a keyed hash linking it to the previous entry of its tenant:
//!
//! ```text
//! key     = HMAC-SHA-256(tenant key, "oneup/audit-chain/v1")
//! chain_n = HMAC-SHA-256(key, "oneup/audit/v1" 0x00 chain_{n-1} <seq as i64 BE> <at as i64 BE>
//!                              <len(actor) u32 BE> actor <len(action) u32 BE> action
//!                              <len(subject) u32 BE> subject)
//! chain_0 = 32 zero bytes
//! ```
//!
//! The key comes from the tenant's pseudonymisation key, which is sealed under the master
//! key: someone who can write to the database but does not hold the master key can edit,
//! delete or insert an entry but cannot make a chain that verifies. (A master key rotation
//! re-seals the same tenant key, so the chain survives it.) [`Store::verify_audit`]
//! recomputes the chain and names the first entry that does not verify. What it cannot see
//! on its own is the removal of the newest entries together with the tenant's counter:
//! keep the `head` it reports somewhere else to catch that too.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::crypto::tenant_key_aad;
use super::error::StoreError;
use super::types::{Actor, TenantId, to_u64};
use super::{BeginWrite, MasterKey, Store};

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

/// HMAC-SHA-256.
type HmacSha256 = Hmac<Sha256>;

/// The chain value before a tenant's first entry.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// The key a tenant's chain is made with (see the module docs), from its sealed
/// pseudonymisation key as stored in `tenants.pseudonym_key`.
pub(crate) fn chain_key(master: &MasterKey, tenant: Uuid, sealed_tenant_key: &[u8]) -> Result<[u8; 32], StoreError> {
    let tenant_key = master.open(&tenant_key_aad(tenant), sealed_tenant_key)?;
    let mut mac = HmacSha256::new_from_slice(&tenant_key).expect("HMAC takes any key length");
    mac.update(b"oneup/audit-chain/v1");
    Ok(mac.finalize().into_bytes().into())
}

/// One link of the chain: the `chain` of the entry with these fields after `prev`.
pub(crate) fn link(
    key: &[u8; 32],
    prev: &[u8; 32],
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"oneup/audit/v1\0");
    mac.update(prev);
    mac.update(&seq.to_be_bytes());
    mac.update(&at.to_be_bytes());
    for field in [actor, action, subject] {
        mac.update(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// A stored `chain` value as 32 bytes (`None`: missing or malformed).
pub(crate) fn stored_chain(chain: Option<Vec<u8>>) -> Option<[u8; 32]> {
    chain.and_then(|c| <[u8; 32]>::try_from(c.as_slice()).ok())
}

/// Why an entry does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainBreak {
    /// Its chain hash is not what its fields and the previous entry's give: it, or the
    /// entry before it, was edited, or an entry was inserted or reordered.
    Mismatch,
    /// It has no chain hash.
    Unchained,
    /// Entries before it are missing (its number is not the previous one plus 1).
    Gap,
    /// The tenant handed out more numbers than there are entries: the newest were removed.
    Truncated,
}

impl ChainBreak {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Mismatch => "mismatch",
            Self::Unchained => "unchained",
            Self::Gap => "gap",
            Self::Truncated => "truncated",
        }
    }
}

/// The first entry of a tenant's audit log that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenEntry {
    /// Its sequence number (for [`ChainBreak::Truncated`]: the first missing number).
    pub seq: u64,
    /// Why.
    pub reason: ChainBreak,
}

/// What [`Store::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Entries read.
    pub entries: u64,
    /// The chain hash of the newest entry (hex; 64 zeros for an empty log): record it
    /// elsewhere to detect the removal of the newest entries later.
    pub head: String,
    /// The first entry that does not verify; `None`: the whole log verifies.
    pub first_broken: Option<BrokenEntry>,
}

/// An entry as the chain reads it: seq, at, actor, action, subject, chain.
type ChainRow = (i64, i64, String, String, String, Option<Vec<u8>>);

/// Entries read per page while verifying.
const VERIFY_PAGE: i64 = 5_000;

impl Store {
    /// Appends an entry to the tenant's audit log and returns its sequence number.
    pub async fn append_audit(&self, tenant: TenantId, entry: &AuditEntry<'_>) -> Result<u64, StoreError> {
        let seq = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let seq = audit_in_tx!(&self.key, tx, tenant.as_uuid(), entry.actor, entry.action, entry.subject);
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

    /// Recomputes the tenant's audit chain from its first entry and names the first entry
    /// that does not verify (see the module docs). Reads only.
    pub async fn verify_audit(&self, tenant: TenantId) -> Result<AuditVerification, StoreError> {
        let t = tenant.as_uuid();
        let found: Option<(Vec<u8>, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT pseudonym_key, audit_seq FROM tenants WHERE tenant_id = $1")
                .bind(t)
                .fetch_optional(pool)
                .await?
        });
        let (sealed, handed_out) = found.ok_or(StoreError::NotFound { what: "tenant" })?;
        let key = chain_key(&self.key, t, &sealed)?;
        let mut prev = GENESIS;
        let mut expected_seq = 1_i64;
        let mut entries = 0_u64;
        let mut first_broken = None;
        'pages: loop {
            let rows: Vec<ChainRow> = on_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT seq, at, actor, action, subject, chain FROM audit_log \
                     WHERE tenant_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                )
                .bind(t)
                .bind(expected_seq)
                .bind(VERIFY_PAGE)
                .fetch_all(pool)
                .await?
            });
            let last_page = (rows.len() as i64) < VERIFY_PAGE;
            for (seq, at, actor, action, subject, chain) in rows {
                entries += 1;
                let broken = |reason| Some(BrokenEntry { seq: to_u64(seq), reason });
                if seq != expected_seq {
                    first_broken = Some(BrokenEntry { seq: to_u64(expected_seq), reason: ChainBreak::Gap });
                    break 'pages;
                }
                let Some(stored) = stored_chain(chain) else {
                    first_broken = broken(ChainBreak::Unchained);
                    break 'pages;
                };
                if link(&key, &prev, seq, at, &actor, &action, &subject) != stored {
                    first_broken = broken(ChainBreak::Mismatch);
                    break 'pages;
                }
                prev = stored;
                expected_seq = seq + 1;
            }
            if last_page {
                break;
            }
        }
        if first_broken.is_none() && handed_out >= expected_seq {
            first_broken = Some(BrokenEntry { seq: to_u64(expected_seq), reason: ChainBreak::Truncated });
        }
        Ok(AuditVerification { entries, head: hex::encode(prev), first_broken })
    }

    /// Every tenant, for the operator's `oneup audit verify` (a read across tenants, for the
    /// command line only; no route calls it).
    pub async fn audit_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let ids: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT tenant_id FROM tenants ORDER BY tenant_id").fetch_all(pool).await?
        });
        Ok(ids.into_iter().map(TenantId::from_uuid).collect())
    }

    /// Gives every entry written before the chain existed (migration 0016) its chain hash,
    /// tenant by tenant, each under its tenant row's lock. Run by [`Store::migrate`];
    /// nothing to do once done.
    pub(crate) async fn chain_audit_backlog(&self) -> Result<(), StoreError> {
        let tenants: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT DISTINCT tenant_id FROM audit_log WHERE chain IS NULL")
                .fetch_all(pool)
                .await?
        });
        for t in tenants {
            on_pool!(self, pool => {
                let mut tx = pool.begin_write().await?;
                let sealed: Vec<u8> = sqlx::query_scalar(
                    "UPDATE tenants SET audit_seq = audit_seq WHERE tenant_id = $1 RETURNING pseudonym_key",
                )
                .bind(t)
                .fetch_one(&mut *tx)
                .await?;
                let key = chain_key(&self.key, t, &sealed)?;
                let rows: Vec<ChainRow> = sqlx::query_as(
                    "SELECT seq, at, actor, action, subject, chain FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                )
                .bind(t)
                .fetch_all(&mut *tx)
                .await?;
                let mut prev = GENESIS;
                for (seq, at, actor, action, subject, chain) in rows {
                    prev = match stored_chain(chain) {
                        Some(stored) => stored,
                        None => {
                            let chain = link(&key, &prev, seq, at, &actor, &action, &subject);
                            sqlx::query("UPDATE audit_log SET chain = $3 WHERE tenant_id = $1 AND seq = $2")
                                .bind(t)
                                .bind(seq)
                                .bind(&chain[..])
                                .execute(&mut *tx)
                                .await?;
                            chain
                        }
                    };
                }
                tx.commit().await?;
            });
        }
        Ok(())
    }
}
