-- The initial schema of the oneup store (SQLite, the embedded zero-setup store).
--
-- The same tables, columns and meanings as migrations/postgres/0001_initial.sql; read the
-- conventions there. Differences are only of dialect:
-- * UUIDs are 16-byte BLOBs (sqlx encodes `uuid::Uuid` that way), hashes and sealed
--   secrets are BLOBs, booleans are INTEGER 0/1.
-- * Tables are STRICT, so a value of the wrong type is refused as on Postgres.
-- * The append-only rule on audit_log is enforced by triggers.
-- This file is never edited once committed; changes go into a new numbered migration.

CREATE TABLE tenants (
    tenant_id     BLOB PRIMARY KEY CHECK (length(tenant_id) = 16),
    name          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    pseudonym_key BLOB NOT NULL,
    audit_seq     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    id         BLOB NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    email_norm TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'member')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_norm)
) STRICT;

CREATE TABLE api_tokens (
    tenant_id  BLOB NOT NULL,
    id         BLOB NOT NULL,
    user_id    BLOB NOT NULL,
    token_hash BLOB NOT NULL CHECK (length(token_hash) = 32),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX api_tokens_by_hash ON api_tokens (token_hash);

CREATE TABLE teams (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    id         BLOB NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;

CREATE TABLE team_members (
    tenant_id BLOB NOT NULL,
    team_id   BLOB NOT NULL,
    user_id   BLOB NOT NULL,
    PRIMARY KEY (tenant_id, team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE fx_rates (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    currency   TEXT NOT NULL CHECK (length(currency) = 3),
    rate       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, currency)
) STRICT;

CREATE TABLE integrations (
    tenant_id          BLOB NOT NULL REFERENCES tenants (tenant_id),
    connector_id       TEXT NOT NULL,
    enabled            INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    config             TEXT NOT NULL,
    secrets            BLOB,
    cursor             TEXT,
    sync_interval_secs INTEGER NOT NULL CHECK (sync_interval_secs > 0),
    metrics            TEXT NOT NULL,
    enabled_by         BLOB,
    enabled_at         INTEGER,
    disabled_at        INTEGER,
    next_sync_at       INTEGER,
    PRIMARY KEY (tenant_id, connector_id)
) STRICT;
CREATE INDEX integrations_due ON integrations (next_sync_at) WHERE enabled;

CREATE TABLE owner_mappings (
    tenant_id    BLOB NOT NULL,
    connector_id TEXT NOT NULL,
    owner_hash   BLOB NOT NULL CHECK (length(owner_hash) = 16),
    user_id      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, owner_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE facts (
    tenant_id            BLOB NOT NULL,
    connector_id         TEXT NOT NULL,
    metric               TEXT NOT NULL,
    source_hash          BLOB NOT NULL CHECK (length(source_hash) = 16),
    owner_hash           BLOB NOT NULL CHECK (length(owner_hash) = 16),
    occurred_at          INTEGER NOT NULL,
    kind                 TEXT NOT NULL,
    count                INTEGER CHECK (count >= 0),
    amount_micros        INTEGER,
    currency             TEXT CHECK (length(currency) = 3),
    amount_tenant_micros INTEGER,
    confirmed_at         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, metric, source_hash),
    CHECK (
        (kind = 'count' AND count IS NOT NULL AND amount_micros IS NULL AND currency IS NULL
            AND amount_tenant_micros IS NULL)
        OR (kind = 'money' AND count IS NULL AND amount_micros IS NOT NULL AND currency IS NOT NULL)
    )
) STRICT, WITHOUT ROWID;
CREATE INDEX facts_by_metric_time ON facts (tenant_id, metric, occurred_at);

CREATE TABLE sync_runs (
    tenant_id        BLOB NOT NULL,
    id               BLOB NOT NULL,
    connector_id     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    checkpoints      INTEGER NOT NULL DEFAULT 0,
    upserts          INTEGER NOT NULL DEFAULT 0,
    retractions      INTEGER NOT NULL DEFAULT 0,
    unmapped         INTEGER NOT NULL DEFAULT 0,
    waiting_rate     INTEGER NOT NULL DEFAULT 0,
    rejected         TEXT NOT NULL DEFAULT '{}',
    error_code       TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, connector_id) REFERENCES integrations (tenant_id, connector_id)
) STRICT;
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (tenant_id, connector_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_queue ON sync_runs (created_at) WHERE status IN ('queued', 'running');

CREATE TABLE audit_log (
    tenant_id BLOB NOT NULL REFERENCES tenants (tenant_id),
    seq       INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) STRICT;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
