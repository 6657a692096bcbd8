//! The store: every table of the service behind one interface, on Postgres (production) or
//! SQLite (the embedded zero-setup default). This is the only module that knows SQL.
//!
//! # Shape
//! [`Store`] is a cheap-to-clone handle over a connection pool of either backend. Each
//! method is one unit of work, usually one transaction, and takes the [`TenantId`] it works
//! in: every table carries `tenant_id` first in its keys and every query filters by it, so
//! no method reads across tenants. The deliberate exceptions are documented where they
//! are: [`Store::authenticate`] and stream-ticket consumption (a secret names its tenant
//! only through its hash), the OAuth callback's state (likewise), the scheduler's queue
//! ([`Store::claim_run`], [`Store::enqueue_due_runs`]), the freezing tick
//! ([`Store::contests_to_freeze`]), the retention tick's due tenants, `oneup audit
//! verify`'s tenant list, the operator's tenant list, and the counts of `/metrics`
//! ([`Store::ops_counts`]: numbers only, never an id).
//!
//! * [`tenants`]: tenants, users, API tokens, teams, exchange rates.
//! * [`integrations`]: the opt-in, sealed secrets, cursors, owner mappings.
//! * [`runs`]: sync runs and the leases that let several nodes share them.
//! * [`facts`]: the ingestion commit, currency conversion, KPI totals.
//! * [`engine`]: contests, targets and the dated facts they are measured by.
//! * [`calendar`]: a tenant's working calendar and its users' join dates.
//! * [`standings`]: contests' running totals, kept by the writes that change facts.
//! * [`audit`]: the append-only, hash-chained audit log.
//! * [`lifecycle`]: listing, changing and offboarding tenants; the operator's audit.
//! * [`oauth`]: the OAuth connect flow's pending authorisations.
//! * [`retention`]: privacy settings and the purge (settled facts sealed, unmatched owners'
//!   facts discarded, old runs folded into daily counts).
//! * [`crypto`]: the master key and sealing of secrets at rest.
//! * [`fx`]: exact exchange-rate arithmetic.
//! * [`ops`]: readiness (the schema applied) and the counts `/metrics` shows.
//! * [`admin`]: creating and dropping whole Postgres databases (tests, `TestApp`).
//!
//! # Decisions
//! * **Plain `sqlx::query` with `bind`, no `query!` macros.** The compile-time checked
//!   macros need a live database or committed `.sqlx/` offline data at build time, and
//!   they check one backend's dialect per query; with two backends that would mean two
//!   sets of offline data kept in sync by hand and a database to build the host at all.
//!   Instead the SQL is checked at run time by the conformance suite
//!   (`tests/e2e/store.rs`), which runs every behaviour on both backends.
//! * **One body, two backends.** Most statements are written once in the common subset of
//!   both dialects (`$1` placeholders work on SQLite too) and the private `on_pool!` macro
//!   expands the same Rust code once per pool type, so each expansion is type-checked against
//!   its backend. Where the dialects differ (the bulk commit, locking, NUMERIC arithmetic)
//!   each backend has its own function.
//! * **Postgres ingestion is set-based:** a batch becomes a few array parameters and one
//!   `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO UPDATE` (see [`facts`]).
//! * **SQLite write transactions start with `BEGIN IMMEDIATE`**, so a transaction that
//!   reads before it writes waits for the write lock (busy timeout) instead of failing with
//!   `SQLITE_BUSY` when another connection wrote in between. WAL mode, foreign keys on.
//! * **Ids are random UUIDs** made by the host, one newtype per table ([`types`]).
//!   **Instants are `i64` milliseconds** since the Unix epoch, the connector contract's unit.
//! * Migrations live in `host/migrations/{postgres,sqlite}/`, one folder per backend since
//!   the DDL differs, are embedded in the binary (see `migrations.rs`) and applied at
//!   [`Store::connect`]; committed migrations are never edited.
//!
//! # Errors
//! One [`StoreError`]; see [`error`] for the policy.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`'s backend. The body is
/// expanded (and type-checked) once per backend, so it must be valid SQL for both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::Sqlite($pool) => $body,
        }
    };
}

/// Appends an audit entry inside the open transaction `$tx` (numbered
/// under the tenant row's lock and chained to the previous entry with the tenant key as
/// unsealed by the master key `$key`, see [`audit`]), so that a
/// change and its audit entry commit together. Evaluates to the entry's sequence number.
macro_rules! audit_in_tx {
    ($key:expr, $tx:expr, $tenant:expr, $actor:expr, $action:expr, $subject:expr) => {{
        let tenant: uuid::Uuid = $tenant;
        let numbered: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "UPDATE tenants SET audit_seq = audit_seq + 1 WHERE tenant_id = $1 RETURNING audit_seq, pseudonym_key",
        )
        .bind(tenant)
        .fetch_optional(&mut *$tx)
        .await?;
        let (seq, sealed) = numbered.ok_or($crate::store::StoreError::NotFound { what: "tenant" })?;
        let prev: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT chain FROM audit_log WHERE tenant_id = $1 AND seq = $2")
                .bind(tenant)
                .bind(seq - 1)
                .fetch_optional(&mut *$tx)
                .await?;
        let prev = $crate::store::audit::stored_chain(prev.flatten()).unwrap_or($crate::store::audit::GENESIS);
        let key = $crate::store::audit::chain_key($key, tenant, &sealed)?;
        let at = $crate::store::types::now_ms();
        let actor = $actor.to_stored();
        let action: &str = $action;
        let subject: &str = $subject;
        let chain = $crate::store::audit::link(&key, &prev, seq, at, &actor, action, subject);
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, seq, at, actor, action, subject, chain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant)
        .bind(seq)
        .bind(at)
        .bind(&actor)
        .bind(action)
        .bind(subject)
        .bind(&chain[..])
        .execute(&mut *$tx)
        .await?;
        seq
    }};
}

pub mod admin;
pub mod audit;
pub mod calendar;
pub mod crypto;
pub mod engine;
pub mod erasure;
pub mod error;
pub mod facts;
pub mod fx;
pub mod integrations;
pub mod keys;
pub mod lifecycle;
mod migrations;
pub mod oauth;
pub mod ops;
pub mod retention;
pub mod runs;
pub mod standings;
pub mod tenants;
pub mod tokens;
pub mod types;

pub use self::audit::{AuditEntry, AuditRecord, AuditVerification, BrokenEntry, ChainBreak};
pub use self::crypto::MasterKey;
pub use self::engine::{Assignee, Contest, DatedFact, NewContest, NewTarget, Participants, Target};
pub use self::error::StoreError;
pub use self::facts::{CommitCounts, KpiTotal, Owner, StoredFact, UnmappedOwner};
pub use self::fx::FxRate;
pub use self::integrations::{
    ConflictReason, EnableIntegration, Integration, LeaseRefusal, MappingSource, OwnerConflict, OwnerMapping,
    RefreshLease, RosterMapping, Secrets,
};
pub use self::ops::{OpsCounts, SchemaState};
pub use self::retention::{PrivacySettings, RetentionKind, RetentionReport, RetentionRun, RetentionState};
pub use self::runs::{Lease, Resync, Run, RunReason, RunStatus};
pub use self::tenants::{CreatedTenant, IssuedToken, NewTenant, NewUser, Principal, Team, Tenant, User, UserUpdate};
pub use self::tokens::{NewToken, Scope, TokenInfo};
pub use self::types::{Actor, ContestId, Role, RunId, TargetId, TeamId, TenantId, TokenId, UserId};

/// Connections in a Postgres pool.
const PG_MAX_CONNECTIONS: u32 = 8;
/// Connections in an SQLite pool (one writer at a time anyway; WAL lets readers go on).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// How long SQLite waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Postgres (production).
    Postgres,
    /// SQLite (the embedded default).
    Sqlite,
}

/// The connection pool of one backend.
#[derive(Clone)]
pub(crate) enum Pool {
    /// A Postgres pool.
    Postgres(PgPool),
    /// An SQLite pool.
    Sqlite(SqlitePool),
}

/// The store: a cheap-to-clone handle on the database and the master key.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) key: Arc<MasterKey>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Creates the SQLite file `path` readable and writable by its owner only (0600) when it is
/// missing, and narrows an existing one that others could read (with its WAL and
/// shared-memory files): it holds sealed secrets, keyed hashes and everyone's figures.
fn create_owner_only(path: &std::path::Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mut name = path.as_os_str().to_owned();
        let base = name.clone();
        for suffix in ["", "-wal", "-shm"] {
            name.clone_from(&base);
            name.push(suffix);
            let file = std::path::Path::new(&name);
            let Ok(meta) = std::fs::metadata(file) else { continue };
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
                tracing::warn!(path = %file.display(), "the SQLite file was readable by others; narrowed to owner-only");
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io(e)),
        }
    }
}

impl Store {
    /// A key derived from the master key for `purpose` (see [`MasterKey::derive`]).
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.key.derive(purpose)
    }

    /// Connects to `url` and applies the embedded migrations.
    ///
    /// `postgres://…` (or `postgresql://…`) opens a Postgres pool; `sqlite:…` an SQLite one,
    /// for example `sqlite://oneup.sqlite` (created owner-only if missing) or `sqlite::memory:`
    /// (one connection, gone when the store is dropped). `master_key` seals secrets at rest.
    pub async fn connect(url: &str, master_key: MasterKey) -> Result<Self, StoreError> {
        let store = Self::open(url, master_key).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to `url` without applying migrations (see [`Store::connect`] for the URLs).
    pub async fn open(url: &str, master_key: MasterKey) -> Result<Self, StoreError> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(PG_MAX_CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            if !memory && !url.contains("mode=ro") {
                // A missing file is created, owner-only, before SQLite opens it: SQLite gives
                // its WAL and shared-memory files the database file's mode.
                create_owner_only(options.get_filename())?;
                options = options.create_if_missing(true);
            }
            let pool = if memory {
                // Every connection to `:memory:` is its own database: keep exactly one.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?
            } else {
                SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?
            };
            Pool::Sqlite(pool)
        } else {
            return Err(StoreError::Invalid { what: "database url (expected postgres://… or sqlite:…)" });
        };
        Ok(Self { pool, key: Arc::new(master_key) })
    }

    /// Applies the embedded migrations that are not applied yet (what `oneup migrate` does).
    /// Harmless to run again; on Postgres concurrent callers serialise on an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => migrations::postgres().await?.run(pool).await?,
            Pool::Sqlite(pool) => migrations::sqlite().await?.run(pool).await?,
        }
        // Entries written before the audit chain existed get theirs (migration 0016).
        self.chain_audit_backlog().await
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// ` FOR UPDATE` on Postgres, nothing on SQLite (whose write transactions hold the one
    /// write lock from their start).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => " FOR UPDATE",
            Pool::Sqlite(_) => "",
        }
    }

    /// Checks that the database answers (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Starts a write transaction: `BEGIN` on Postgres, `BEGIN IMMEDIATE` on SQLite.
pub(crate) trait BeginWrite {
    /// The backend.
    type Db: sqlx::Database;

    /// Takes a connection from the pool and starts a write transaction on it.
    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;

    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send {
        self.begin()
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;

    fn begin_write(&self) -> impl Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Currency;

    #[tokio::test]
    async fn in_memory_store_works_and_unknown_urls_are_refused() {
        let store = Store::connect("sqlite::memory:", MasterKey::random()).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let created = store
            .create_tenant(&NewTenant {
                name: "t",
                timezone: "UTC",
                currency: Currency::parse("EUR").unwrap(),
                admin_name: "a",
                admin_email: "a@example.com",
            })
            .await
            .unwrap();
        // One connection, so the tenant is visible to the next query.
        assert_eq!(store.tenant(created.tenant.id).await.unwrap(), created.tenant);
        assert!(format!("{store:?}").contains("Sqlite"));
        let err = Store::connect("mysql://localhost/x", MasterKey::random()).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    }
}
