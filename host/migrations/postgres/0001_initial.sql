-- The initial schema of the oneup store (Postgres).
--
-- Conventions, shared with migrations/sqlite (same tables, same columns, same meaning):
-- * Every table carries `tenant_id` as the first column of its primary key and of every
--   unique key, so the schema can be distributed by tenant (for example with Citus:
--   `create_distributed_table(<table>, 'tenant_id')`, tenants included). The one lookup that
--   does not start from a tenant is authentication by token hash (see api_tokens); the
--   scheduler's queue scan over sync_runs is the other cross-tenant read.
-- * Ids are random (version 4) UUIDs made by the host: nothing to enumerate, no sequence to
--   share between nodes or shards.
-- * Instants are BIGINT milliseconds since the Unix epoch (UTC), the unit the connector
--   contract uses; money is BIGINT millionths of a currency unit ("micros").
-- * JSON documents the store never queries into (config, cursor, metric lists, rejection
--   counts) are TEXT; the host writes and reads them with serde.
-- * Nothing here holds a connector's free text: metric slugs and error codes come from the
--   connector's declared vocabulary, CRM ids only as 16-byte keyed hashes.
-- This file is never edited once committed; changes go into a new numbered migration.

-- A customer organisation. Its pseudonymisation key (the HMAC key behind every keyed hash of
-- its CRM ids) is sealed with the host's master key (XChaCha20-Poly1305).
CREATE TABLE tenants (
    tenant_id     UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    currency      CHAR(3) NOT NULL,
    pseudonym_key BYTEA NOT NULL,
    -- The last sequence number handed out in audit_log for this tenant. Incremented under
    -- the row lock, so audit sequence numbers are gap-free and never collide.
    audit_seq     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

-- The people of a tenant. `email_norm` is the lowercased address, unique within a tenant;
-- the same address may exist in other tenants.
CREATE TABLE users (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    id         UUID NOT NULL,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    email_norm TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'member')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_norm)
);

-- API bearer tokens, kept only as the SHA-256 of the token (which is shown once).
CREATE TABLE api_tokens (
    tenant_id  UUID NOT NULL,
    id         UUID NOT NULL,
    user_id    UUID NOT NULL,
    token_hash BYTEA NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
-- Authentication reads by token hash alone, before the tenant is known. The hash of 32
-- random bytes is unique across tenants in practice; the index is deliberately not UNIQUE
-- so that it stays a legal index on a table distributed by tenant.
CREATE INDEX api_tokens_by_hash ON api_tokens (token_hash);

CREATE TABLE teams (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    id         UUID NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE team_members (
    tenant_id UUID NOT NULL,
    team_id   UUID NOT NULL,
    user_id   UUID NOT NULL,
    PRIMARY KEY (tenant_id, team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- Exchange rates into the tenant currency: one unit of `currency` is worth `rate` units of
-- the tenant currency. `rate` is a canonical decimal string (at most 18 significant digits,
-- 12 after the point), cast to NUMERIC where SQL converts amounts.
CREATE TABLE fx_rates (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    currency   CHAR(3) NOT NULL,
    rate       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, currency)
);

-- A connector enabled (or once enabled) for a tenant: the opt-in. `secrets` is the sealed
-- JSON of the integration's credentials, NULL once disabled (destroyed, not just hidden).
-- `enabled_by`/`enabled_at`/`metrics` record the consent: who, when, which metrics.
CREATE TABLE integrations (
    tenant_id          UUID NOT NULL REFERENCES tenants (tenant_id),
    connector_id       TEXT NOT NULL,
    enabled            BOOLEAN NOT NULL,
    config             TEXT NOT NULL,
    secrets            BYTEA,
    cursor             TEXT,
    sync_interval_secs BIGINT NOT NULL CHECK (sync_interval_secs > 0),
    metrics            TEXT NOT NULL,
    enabled_by         UUID,
    enabled_at         BIGINT,
    disabled_at        BIGINT,
    -- When the scheduler should queue the next run; NULL while disabled.
    next_sync_at       BIGINT,
    PRIMARY KEY (tenant_id, connector_id)
);
CREATE INDEX integrations_due ON integrations (next_sync_at) WHERE enabled;

-- Which tenant user a CRM owner is: the keyed hash of the CRM user id (per connector) to
-- the user. Owners with no row here are "unmapped" and their facts wait under the hash.
CREATE TABLE owner_mappings (
    tenant_id    UUID NOT NULL,
    connector_id TEXT NOT NULL,
    owner_hash   BYTEA NOT NULL CHECK (octet_length(owner_hash) = 16),
    user_id      UUID NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, owner_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

-- The KPI facts: only numbers, keyed hashes and declared slugs. One row per (integration,
-- metric, source record); an upsert replaces it, a retraction deletes it. `kind` says which
-- value columns are set. `amount_tenant_micros` is NULL while the currency has no rate.
-- No foreign key to integrations: every write goes through Store::commit, which checks the
-- integration and the run under lock, and a foreign key would slow bulk ingestion.
CREATE TABLE facts (
    tenant_id            UUID NOT NULL,
    connector_id         TEXT NOT NULL,
    metric               TEXT NOT NULL,
    source_hash          BYTEA NOT NULL CHECK (octet_length(source_hash) = 16),
    owner_hash           BYTEA NOT NULL CHECK (octet_length(owner_hash) = 16),
    occurred_at          BIGINT NOT NULL,
    kind                 TEXT NOT NULL,
    count                BIGINT CHECK (count >= 0),
    amount_micros        BIGINT,
    currency             CHAR(3),
    amount_tenant_micros BIGINT,
    confirmed_at         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, metric, source_hash),
    CHECK (
        (kind = 'count' AND count IS NOT NULL AND amount_micros IS NULL AND currency IS NULL
            AND amount_tenant_micros IS NULL)
        OR (kind = 'money' AND count IS NULL AND amount_micros IS NOT NULL AND currency IS NOT NULL)
    )
);
-- KPI totals read one metric over a time range.
CREATE INDEX facts_by_metric_time ON facts (tenant_id, metric, occurred_at);

-- One sync of one integration. Counts are added in the same transaction as the facts they
-- count, so a failed run never hides a partial commit. `rejected` is a JSON object of
-- reason code to count. A running run is held by a lease (`lease_owner` until
-- `lease_expires_at`); an expired lease lets another node claim and resume it.
CREATE TABLE sync_runs (
    tenant_id        UUID NOT NULL,
    id               UUID NOT NULL,
    connector_id     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    checkpoints      BIGINT NOT NULL DEFAULT 0,
    upserts          BIGINT NOT NULL DEFAULT 0,
    retractions      BIGINT NOT NULL DEFAULT 0,
    unmapped         BIGINT NOT NULL DEFAULT 0,
    waiting_rate     BIGINT NOT NULL DEFAULT 0,
    rejected         TEXT NOT NULL DEFAULT '{}',
    error_code       TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, connector_id) REFERENCES integrations (tenant_id, connector_id)
);
-- At most one queued or running run per integration.
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs (tenant_id, connector_id)
    WHERE status IN ('queued', 'running');
-- The scheduler's queue: active runs, oldest first.
CREATE INDEX sync_runs_queue ON sync_runs (created_at) WHERE status IN ('queued', 'running');

-- The append-only audit trail. The host has no code path that updates or deletes a row,
-- and the trigger below refuses both.
CREATE TABLE audit_log (
    tenant_id UUID NOT NULL REFERENCES tenants (tenant_id),
    seq       BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
