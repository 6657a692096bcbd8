//! A tenant's lifecycle as the operator sees it: the list of tenants, changing a tenant's
//! name, zone or currency, and offboarding (every row of the tenant destroyed in one
//! transaction, with only the fact that it happened kept in the operator's audit).
//!
//! Listing tenants and the operator's audit read across tenants: they answer the operator
//! only, never a tenant's user.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::engine::PageAfter;
use super::error::StoreError;
use super::standings::StandingsTx;
use super::tenants::{Tenant, parse_currency};
use super::types::{Actor, TenantId, now_ms, to_u64};
use super::{BeginWrite, Pool, Store};
use crate::ingest::Currency;

/// A change to a tenant; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantUpdate<'a> {
    /// A new display name.
    pub name: Option<&'a str>,
    /// A new IANA time zone, already checked by the caller.
    pub timezone: Option<&'a str>,
    /// A new tenant currency.
    pub currency: Option<Currency>,
}

/// What changing a tenant did besides the tenant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantUpdated {
    /// The tenant now.
    pub tenant: Tenant,
    /// Whether the zone changed.
    pub zone_changed: bool,
    /// Whether the currency changed: the exchange rates (into the old currency) were then
    /// deleted, every amount converted again (amounts in the new currency count as they
    /// are, the others wait for a rate) and every contest's totals summed again.
    pub currency_changed: bool,
    /// How many exchange rates were deleted.
    pub fx_rates_deleted: u64,
    /// How many amounts now wait for a rate.
    pub amounts_waiting: u64,
}

/// What offboarding a tenant removed: rows per table (tables without any included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffboardReport {
    /// The tenant that was removed.
    pub tenant_id: TenantId,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Table name → rows deleted.
    pub removed: BTreeMap<String, u64>,
}

/// An entry of the operator's audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorAuditRecord {
    /// Its number, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What was done (`tenant.offboarded`).
    pub action: String,
    /// To what (`tenant <id>`).
    pub subject: String,
    /// A JSON document of counts (rows removed per table).
    pub detail: String,
}

/// The marker table that lets the offboarding transaction delete audit entries; never
/// offboarded itself.
const MARKER: &str = "tenant_offboarding";

/// Whether `name` is safe to splice into a statement as a table name.
fn plain_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The order in which to empty `tables` (each holding a `tenant_id`) so that no foreign key
/// is broken on the way: a table goes only once no remaining table refers to it. `edges` are
/// (referencing table, referenced table). `tenants` comes last.
fn deletion_order(tables: &BTreeSet<String>, edges: &[(String, String)]) -> Result<Vec<String>, StoreError> {
    let mut left: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let next = left
            .iter()
            .copied()
            .find(|t| !edges.iter().any(|(child, parent)| parent == t && child != t && left.contains(child.as_str())))
            .ok_or(StoreError::Invalid { what: "schema (a cycle of foreign keys between tenant tables)" })?;
        left.remove(next);
        order.push(next.to_owned());
    }
    Ok(order)
}

type TenantRow = (Uuid, String, String, String, i64);

fn tenant_from_row((id, name, timezone, currency, created_at): TenantRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::from_uuid(id),
        name,
        timezone,
        currency: parse_currency(&currency)?,
        created_at_ms: created_at,
    })
}

impl Store {
    /// A page of every tenant, newest first: at most `limit` after `after`. Reads across
    /// tenants: for the operator only.
    pub async fn tenants_page(&self, after: Option<PageAfter>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let (at, id) = after.map_or((i64::MAX, Uuid::max()), |a| (a.created_at_ms, a.id));
        let rows: Vec<TenantRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant_id, name, timezone, currency, created_at FROM tenants \
                 WHERE created_at < $1 OR (created_at = $1 AND tenant_id < $2) \
                 ORDER BY created_at DESC, tenant_id DESC LIMIT $3",
            )
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(tenant_from_row).collect()
    }

    /// Changes a tenant's name, zone or currency in one transaction, audited in the
    /// tenant's log as done by `actor` (the fields changed, never their values).
    ///
    /// A new currency makes every figure what it would be in a tenant created with it: the
    /// rates into the old currency are deleted, amounts in the new currency count as they
    /// are and the others wait for a rate (`PUT /v1/fx-rates` converts them), and every
    /// contest's stored totals are summed again. Periods are cut in the tenant's zone when
    /// read, so a new zone needs nothing here; leaderboard caches notice both through
    /// `leaderboard_inputs` (a trigger on the tenant row).
    pub async fn update_tenant(
        &self,
        tenant: TenantId,
        update: &TenantUpdate<'_>,
        actor: Actor,
    ) -> Result<TenantUpdated, StoreError> {
        let before = self.tenant(tenant).await?;
        let zone_changed = update.timezone.is_some_and(|z| z != before.timezone);
        let currency_changed = update.currency.is_some_and(|c| c != before.currency);
        let name_changed = update.name.is_some_and(|n| n != before.name);
        let mut fields = Vec::new();
        for (changed, field) in [(name_changed, "name"), (zone_changed, "timezone"), (currency_changed, "currency")] {
            if changed {
                fields.push(field);
            }
        }
        let t = tenant.as_uuid();
        let lock = self.for_update();
        let (fx_rates_deleted, amounts_waiting) = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<Uuid> =
                sqlx::query_scalar(&format!("SELECT tenant_id FROM tenants WHERE tenant_id = $1{lock}"))
                    .bind(t)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(StoreError::NotFound { what: "tenant" });
            }
            sqlx::query(
                "UPDATE tenants SET name = COALESCE($2, name), timezone = COALESCE($3, timezone), \
                 currency = COALESCE($4, currency) WHERE tenant_id = $1",
            )
            .bind(t)
            .bind(update.name)
            .bind(update.timezone)
            .bind(update.currency.map(|c| c.as_str().to_owned()))
            .execute(&mut *tx)
            .await?;
            let mut deleted = 0;
            let mut waiting = 0;
            if let Some(currency) = update.currency.filter(|_| currency_changed) {
                deleted = sqlx::query("DELETE FROM fx_rates WHERE tenant_id = $1")
                    .bind(t)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(
                    "UPDATE facts SET amount_tenant_micros = CASE WHEN currency = $2 THEN amount_micros ELSE NULL END \
                     WHERE tenant_id = $1 AND kind = 'money'",
                )
                .bind(t)
                .bind(currency.as_str())
                .execute(&mut *tx)
                .await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM facts WHERE tenant_id = $1 AND kind = 'money' AND amount_tenant_micros IS NULL",
                )
                .bind(t)
                .fetch_one(&mut *tx)
                .await?;
                waiting = to_u64(n);
                tx.rebuild_standings(t, None).await?;
            }
            if !fields.is_empty() {
                let subject = format!("{tenant} {}", fields.join(","));
                audit_in_tx!(&self.key, tx, t, actor, "tenant.updated", &subject);
            }
            tx.commit().await?;
            (deleted, waiting)
        });
        Ok(TenantUpdated {
            tenant: self.tenant(tenant).await?,
            zone_changed,
            currency_changed,
            fx_rates_deleted,
            amounts_waiting,
        })
    }

    /// Offboards a tenant: deletes every row of every table that holds a `tenant_id` for
    /// this tenant (its users, tokens, sealed integration secrets, facts, runs, audit log,
    /// the tenant row with its sealed hashing key: found from the schema, so a table added
    /// later is included), in one transaction, and appends to the operator's audit only that
    /// it happened: the tenant id, the time and the rows removed per table.
    ///
    /// A sync of the tenant running meanwhile is fenced: its next commit finds neither its
    /// integration nor its run (the integrations are locked first, in the order commits
    /// lock them, so a commit in flight ends before and one after finds nothing), and fails
    /// with [`StoreError::LeaseLost`]. [`StoreError::NotFound`] if there is no such tenant
    /// (offboarded already, say).
    pub async fn offboard_tenant(&self, tenant: TenantId) -> Result<OffboardReport, StoreError> {
        let t = tenant.as_uuid();
        let lock = self.for_update();
        let at = now_ms();
        let removed = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Commits lock the integration first (see facts.rs), then the run.
            sqlx::query(&format!("SELECT connector_id FROM integrations WHERE tenant_id = $1 ORDER BY connector_id{lock}"))
                .bind(t)
                .fetch_all(&mut *tx)
                .await?;
            let found: Option<Uuid> =
                sqlx::query_scalar(&format!("SELECT tenant_id FROM tenants WHERE tenant_id = $1{lock}"))
                    .bind(t)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(StoreError::NotFound { what: "tenant" });
            }
            let (tables, edges) = match self.backend() {
                super::Backend::Postgres => {
                    let tables: Vec<String> = sqlx::query_scalar(
                        "SELECT c.relname::text FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         JOIN pg_attribute a ON a.attrelid = c.oid \
                         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
                         AND a.attname = 'tenant_id' AND NOT a.attisdropped",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    let edges: Vec<(String, String)> = sqlx::query_as(
                        "SELECT ch.relname::text, pa.relname::text FROM pg_constraint k \
                         JOIN pg_class ch ON ch.oid = k.conrelid \
                         JOIN pg_class pa ON pa.oid = k.confrelid \
                         JOIN pg_namespace n ON n.oid = ch.relnamespace \
                         WHERE k.contype = 'f' AND n.nspname = current_schema()",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    (tables, edges)
                }
                super::Backend::Sqlite => {
                    let tables: Vec<String> = sqlx::query_scalar(
                        "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                         WHERE m.type = 'table' AND p.name = 'tenant_id'",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    let edges: Vec<(String, String)> = sqlx::query_as(
                        "SELECT m.name, f.\"table\" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
                         WHERE m.type = 'table'",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                    (tables, edges)
                }
            };
            let tables: BTreeSet<String> = tables.into_iter().filter(|name| name != MARKER).collect();
            if !tables.contains("tenants") || !tables.iter().all(|name| plain_identifier(name)) {
                return Err(StoreError::Invalid { what: "schema (table names)" });
            }
            let order = deletion_order(&tables, &edges)?;
            // Lets this transaction, and only it, delete the tenant's audit entries.
            sqlx::query(&format!("INSERT INTO {MARKER} (tenant_id) VALUES ($1)")).bind(t).execute(&mut *tx).await?;
            let mut removed = BTreeMap::new();
            for table in order {
                let n = sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                    .bind(t)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                removed.insert(table, n);
            }
            sqlx::query(&format!("DELETE FROM {MARKER} WHERE tenant_id = $1")).bind(t).execute(&mut *tx).await?;
            let detail = serde_json::to_string(&removed).map_err(|_| StoreError::Invalid { what: "report" })?;
            sqlx::query("INSERT INTO operator_audit (at, action, subject, detail) VALUES ($1, $2, $3, $4)")
                .bind(at)
                .bind("tenant.offboarded")
                .bind(format!("tenant {tenant}"))
                .bind(&detail)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            removed
        });
        if let Pool::Sqlite(pool) = &self.pool {
            // Deleted rows keep their bytes in free pages and the log until overwritten:
            // rewrite the file without them (as an erasure does).
            if let Err(e) = super::erasure::scrub_sqlite(pool).await {
                tracing::warn!(code = e.code(), "scrubbing the SQLite file after offboarding failed");
            }
        }
        Ok(OffboardReport { tenant_id: tenant, at_ms: at, removed })
    }

    /// The operator's audit after entry `after` (0 for the start), oldest first, at most
    /// `limit`.
    pub async fn operator_audit(&self, after: u64, limit: u32) -> Result<Vec<OperatorAuditRecord>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, at, action, subject, detail FROM operator_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, at, action, subject, detail)| OperatorAuditRecord {
                seq: to_u64(seq),
                at_ms: at,
                action,
                subject,
                detail,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_emptied_children_first() {
        let tables: BTreeSet<String> = ["tenants", "users", "api_tokens", "teams", "team_members", "facts"]
            .into_iter()
            .map(String::from)
            .collect();
        let edges: Vec<(String, String)> = [
            ("users", "tenants"),
            ("api_tokens", "users"),
            ("teams", "tenants"),
            ("team_members", "teams"),
            ("team_members", "users"),
            ("stream_tickets", "api_tokens"),
            ("users", "users"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        let order = deletion_order(&tables, &edges).unwrap();
        let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
        assert_eq!(order.len(), 6);
        assert_eq!(order.last().map(String::as_str), Some("tenants"));
        assert!(pos("api_tokens") < pos("users"));
        assert!(pos("team_members") < pos("users") && pos("team_members") < pos("teams"));
        let cycle = vec![("a".to_owned(), "b".to_owned()), ("b".to_owned(), "a".to_owned())];
        let both: BTreeSet<String> = ["a", "b"].into_iter().map(String::from).collect();
        assert!(deletion_order(&both, &cycle).is_err());
        assert!(plain_identifier("contest_totals") && !plain_identifier("x; drop") && !plain_identifier(""));
    }
}
