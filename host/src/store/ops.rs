//! What an operator watches: readiness (the schema this binary expects is applied) and the
//! figures of `/metrics` that live in the database. Reads only.
//!
//! [`Store::ops_counts`] reads across tenants by design, like the scheduler's queue: it
//! returns counts only (integrations waiting for an admin, runs queued, the oldest due
//! sync's wait, tenants), never an id.

use super::error::StoreError;
use super::types::now_ms;
use super::{Pool, Store};

/// Figures of the whole database for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpsCounts {
    /// Enabled integrations whose credentials were refused (`needs_reauthorization`).
    pub needs_reauthorization: i64,
    /// Enabled integrations whose installed component asks for more than was approved.
    pub needs_approval: i64,
    /// Runs queued, not yet claimed by any node.
    pub queued_runs: i64,
    /// How long the oldest due sync has waited for a node, in seconds: a queued run since it
    /// was queued, or an integration past its next sync time (0: none waits).
    pub oldest_due_secs: f64,
    /// Tenants.
    pub tenants: i64,
}

/// Where the schema stands against this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// The newest migration applied successfully (0: none).
    pub applied: i64,
    /// The newest migration this binary embeds.
    pub expected: i64,
}

impl SchemaState {
    /// Whether every migration this binary knows is applied (a newer node may have applied
    /// more: that schema is still this one's).
    pub fn is_current(&self) -> bool {
        self.applied >= self.expected
    }
}

impl Store {
    /// Connections of this node's pool: `(in use, idle)`.
    pub fn pool_connections(&self) -> (u32, u32) {
        let (size, idle) = match &self.pool {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        (size.saturating_sub(idle), idle)
    }

    /// The newest migration applied and the newest this binary embeds.
    pub async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        let applied: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        let expected = match &self.pool {
            Pool::Postgres(_) => super::migrations::latest_postgres(),
            Pool::Sqlite(_) => super::migrations::latest_sqlite(),
        };
        Ok(SchemaState { applied: applied.unwrap_or(0), expected })
    }

    /// The database's figures for `/metrics` (counts only, across tenants).
    pub async fn ops_counts(&self) -> Result<OpsCounts, StoreError> {
        let now = now_ms();
        let (reauth, approval, tenants, due_since): (i64, i64, i64, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT \
                   (SELECT COUNT(*) FROM integrations WHERE enabled AND auth_status = 'needs_reauthorization'), \
                   (SELECT COUNT(*) FROM integrations WHERE enabled AND approval_digest IS NOT NULL), \
                   (SELECT COUNT(*) FROM tenants), \
                   (SELECT MIN(next_sync_at) FROM integrations \
                     WHERE enabled AND next_sync_at <= $1 AND auth_status IS NULL AND approval_digest IS NULL)",
            )
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        let (queued, queued_since): (i64, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM sync_runs WHERE status = 'queued'")
                .fetch_one(pool)
                .await?
        });
        let oldest = [due_since, queued_since].into_iter().flatten().min();
        let oldest_due_secs = oldest.map(|at| (now - at).max(0) as f64 / 1000.0).unwrap_or(0.0);
        Ok(OpsCounts {
            needs_reauthorization: reauth,
            needs_approval: approval,
            queued_runs: queued,
            oldest_due_secs,
            tenants,
        })
    }
}
