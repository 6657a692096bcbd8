-- Retention (SQLite), as in migrations/postgres/0017_retention.sql; read the comments
-- there. This file is never edited once committed.

CREATE TABLE privacy_settings (
    tenant_id              BLOB PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    dpo_contact            TEXT,
    settle_days            INTEGER NOT NULL DEFAULT 400 CHECK (settle_days BETWEEN 30 AND 3650),
    unmatched_days         INTEGER NOT NULL DEFAULT 30 CHECK (unmatched_days BETWEEN 1 AND 3650),
    runs_days              INTEGER NOT NULL DEFAULT 90 CHECK (runs_days BETWEEN 1 AND 3650),
    support_messenger      INTEGER NOT NULL DEFAULT 0 CHECK (support_messenger IN (0, 1)),
    updated_at             INTEGER,
    retention_lease_holder TEXT,
    retention_lease_until  INTEGER,
    next_retention_at      INTEGER
) STRICT;

ALTER TABLE facts ADD COLUMN sealed_at INTEGER;

ALTER TABLE integrations ADD COLUMN sealed_before INTEGER;

ALTER TABLE sync_runs ADD COLUMN settled INTEGER NOT NULL DEFAULT 0;

CREATE TABLE unmatched_owners (
    tenant_id     BLOB NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    connector_id  TEXT NOT NULL,
    owner_hash    BLOB NOT NULL CHECK (length(owner_hash) = 16),
    first_seen_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, owner_hash)
) STRICT;

CREATE TABLE run_days (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    connector_id TEXT NOT NULL,
    day          TEXT NOT NULL,
    runs         INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,
    partial      INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    upserts      INTEGER NOT NULL,
    retractions  INTEGER NOT NULL,
    settled      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, day)
) STRICT;

CREATE TABLE retention_runs (
    tenant_id   BLOB NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id          BLOB NOT NULL CHECK (length(id) = 16),
    kind        TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    report      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX retention_runs_latest ON retention_runs (tenant_id, finished_at);
