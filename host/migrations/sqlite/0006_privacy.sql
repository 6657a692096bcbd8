-- Erasure (SQLite): the same columns, tables and meanings as
-- migrations/postgres/0006_privacy.sql; read the comments there. Differences are only of
-- dialect: UUIDs are 16-byte BLOBs, booleans 0/1, tables STRICT.
-- This file is never edited once committed; changes go into a new numbered migration.

ALTER TABLE users ADD COLUMN former INTEGER NOT NULL DEFAULT 0 CHECK (former IN (0, 1));

CREATE TABLE erased_owners (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    connector_id TEXT NOT NULL,
    owner_hash   BLOB NOT NULL CHECK (length(owner_hash) = 16),
    PRIMARY KEY (tenant_id, connector_id, owner_hash)
) STRICT;
