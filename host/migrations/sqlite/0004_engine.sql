-- Composite metrics (SQLite): the same tables, columns and meanings as
-- migrations/postgres/0004_engine.sql; read the comments there. Differences are only of
-- dialect: UUIDs are 16-byte BLOBs, tables STRICT.
-- This file is never edited once committed; changes go into a new numbered migration.

CREATE TABLE composite_metrics (
    tenant_id  BLOB NOT NULL REFERENCES tenants (tenant_id),
    slug       TEXT NOT NULL,
    name       TEXT,
    created_by BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, slug)
) STRICT;

CREATE TABLE composite_metric_terms (
    tenant_id     BLOB NOT NULL,
    slug          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    metric        TEXT NOT NULL,
    weight_micros INTEGER NOT NULL CHECK (weight_micros <> 0),
    PRIMARY KEY (tenant_id, slug, position),
    UNIQUE (tenant_id, slug, metric),
    FOREIGN KEY (tenant_id, slug) REFERENCES composite_metrics (tenant_id, slug) ON DELETE CASCADE
) STRICT;
