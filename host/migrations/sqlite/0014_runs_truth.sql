-- Runs that tell the truth, patience with a CRM's rate limits, and resync (SQLite), as in
-- migrations/postgres/0014_runs_truth.sql. SQLite cannot change a CHECK constraint, so
-- sync_runs is rebuilt (nothing references it) with its indexes.
-- This file is never edited once committed.

CREATE TABLE sync_runs_new (
    tenant_id        BLOB NOT NULL,
    id               BLOB NOT NULL,
    connector_id     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed')),
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
    reasons          TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, connector_id) REFERENCES integrations (tenant_id, connector_id)
) STRICT;
INSERT INTO sync_runs_new (tenant_id, id, connector_id, status, created_at, started_at, finished_at,
        attempts, checkpoints, upserts, retractions, unmapped, waiting_rate, rejected, error_code,
        lease_owner, lease_expires_at, reasons)
    SELECT tenant_id, id, connector_id,
        CASE WHEN status = 'succeeded' AND error_code = 'budget_exhausted' THEN 'partial' ELSE status END,
        created_at, started_at, finished_at, attempts, checkpoints, upserts, retractions, unmapped,
        waiting_rate, rejected,
        CASE WHEN status = 'succeeded' AND error_code = 'budget_exhausted' THEN NULL ELSE error_code END,
        lease_owner, lease_expires_at,
        CASE WHEN status = 'succeeded' AND error_code = 'budget_exhausted' THEN '["budget_exhausted"]' ELSE '[]' END
    FROM sync_runs;
DROP TABLE sync_runs;
ALTER TABLE sync_runs_new RENAME TO sync_runs;
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (tenant_id, connector_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX sync_runs_queue ON sync_runs (created_at) WHERE status IN ('queued', 'running');

ALTER TABLE integrations ADD COLUMN crm_not_before INTEGER;
ALTER TABLE integrations ADD COLUMN resync_pending INTEGER NOT NULL DEFAULT 0;
