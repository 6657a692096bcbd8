-- Erasure (Postgres): what `DELETE /v1/users/{id}` leaves behind, and nothing more.
--
-- The conventions of 0001_initial.sql hold. The same tables and columns are in
-- migrations/sqlite/0006_privacy.sql. This file is never edited once committed.
-- The whole procedure is described in host/src/store/erasure.rs.

-- A former member: the anonymous stand-in an erasure leaves in the erased person's place so
-- that their teams' totals stay as they were. It has a fresh random id (not the person's),
-- no name and no e-mail (`name` and `email` empty, `email_norm` a unique placeholder that is
-- not an address), role `member`, `created_at` the moment of the erasure, no token, and it
-- is hidden from every list and lookup of users; its team memberships and the owner
-- mapping of its facts (under random owner hashes) are all that is kept.
ALTER TABLE users ADD COLUMN former BOOLEAN NOT NULL DEFAULT FALSE;

-- The keyed hashes of CRM owners whose person was erased, per connector: a one-way marker,
-- linked to nothing (not to the former member, not to any fact). The ingestion commit
-- consults it: a fact of such an owner is never stored under that hash again (it stays
-- with the former member if it already was theirs, else goes to the anonymous "erased
-- owner" hash of all zero bytes, mapped to nobody), so no later sync or mapping can
-- re-attach the erased person's records to anyone.
CREATE TABLE erased_owners (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    connector_id TEXT NOT NULL,
    owner_hash   BYTEA NOT NULL CHECK (octet_length(owner_hash) = 16),
    PRIMARY KEY (tenant_id, connector_id, owner_hash)
);
