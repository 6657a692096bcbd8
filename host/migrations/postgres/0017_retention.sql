-- Retention (Postgres): what is kept only as long as required, and a tenant's own privacy
-- settings for the processing register. host/src/store/retention.rs describes the purge.
--
-- The conventions of 0001_initial.sql hold. The same tables and columns are in
-- migrations/sqlite/0017_retention.sql. This file is never edited once committed.

-- A tenant's privacy settings (no row: every default) and the state of its purge.
-- settle_days: facts that occurred longer ago are settled: sealed (their source hash
-- replaced by random bytes linked to nothing), still counted everywhere, and no change
-- from the CRM touches them again. unmatched_days: facts of a CRM owner that matched no
-- user for that long are discarded. runs_days: finished sync runs are kept that long,
-- then only their daily counts (run_days). dpo_contact: the data protection officer, as
-- the register shows it. support_messenger: whether the tenant switched the support
-- messenger on (the register lists it as a processor only then).
-- retention_lease_*: the purge in flight (one at a time per tenant, across nodes);
-- next_retention_at: when the scheduler purges next.
CREATE TABLE privacy_settings (
    tenant_id              UUID PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    dpo_contact            TEXT,
    settle_days            BIGINT NOT NULL DEFAULT 400 CHECK (settle_days BETWEEN 30 AND 3650),
    unmatched_days         BIGINT NOT NULL DEFAULT 30 CHECK (unmatched_days BETWEEN 1 AND 3650),
    runs_days              BIGINT NOT NULL DEFAULT 90 CHECK (runs_days BETWEEN 1 AND 3650),
    support_messenger      BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at             BIGINT,
    retention_lease_holder TEXT,
    retention_lease_until  BIGINT,
    next_retention_at      BIGINT
);

-- When a fact was sealed (NULL: not sealed; its source hash is the record's keyed hash).
ALTER TABLE facts ADD COLUMN sealed_at BIGINT;

-- The horizon up to which a purge sealed the integration's facts (NULL: none sealed; a
-- purge of the integration's facts resets it). Commits apply no change dated before it
-- (counted `settled`), so a sealed fact is never changed or counted twice, even if
-- settle_days grows later; a first import is never cut short.
ALTER TABLE integrations ADD COLUMN sealed_before BIGINT;

-- Changes a run ignored because they concern settled facts.
ALTER TABLE sync_runs ADD COLUMN settled BIGINT NOT NULL DEFAULT 0;

-- CRM owners seen by a purge with facts but no user: since when. A mapping removes the row;
-- once older than unmatched_days, the owner's facts are discarded at each purge.
CREATE TABLE unmatched_owners (
    tenant_id     UUID NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    connector_id  TEXT NOT NULL,
    owner_hash    BYTEA NOT NULL CHECK (octet_length(owner_hash) = 16),
    first_seen_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, owner_hash)
);

-- What is left of finished runs older than runs_days: counts per integration and local day
-- (YYYY-MM-DD in the tenant's zone, of the run's end).
CREATE TABLE run_days (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    connector_id TEXT NOT NULL,
    day          TEXT NOT NULL,
    runs         BIGINT NOT NULL,
    succeeded    BIGINT NOT NULL,
    partial      BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    upserts      BIGINT NOT NULL,
    retractions  BIGINT NOT NULL,
    settled      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, day)
);

-- Each purge and its report (JSON: what was sealed, discarded and dropped, per category).
CREATE TABLE retention_runs (
    tenant_id   UUID NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    id          UUID NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual')),
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    report      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX retention_runs_latest ON retention_runs (tenant_id, finished_at);
