-- Connector approval (SQLite), as in migrations/postgres/0013_component_approval.sql.
-- This file is never edited once committed.

ALTER TABLE integrations ADD COLUMN component_digest TEXT;
ALTER TABLE integrations ADD COLUMN component_grants TEXT;
ALTER TABLE integrations ADD COLUMN approval_digest TEXT;
