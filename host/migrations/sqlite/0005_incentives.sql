-- Contest formats and incentives (SQLite): the same tables, columns and meanings as
-- migrations/postgres/0005_incentives.sql; read the comments there. Differences are only of
-- dialect: UUIDs are 16-byte BLOBs, tables STRICT.
-- This file is never edited once committed; changes go into a new numbered migration.

ALTER TABLE contests ADD COLUMN goal INTEGER CHECK (goal IS NULL OR goal > 0);

CREATE TABLE incentives (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    id           BLOB NOT NULL,
    target_id    BLOB,
    tier_percent INTEGER CHECK (tier_percent > 0),
    contest_id   BLOB,
    places       INTEGER CHECK (places > 0),
    min_value    INTEGER CHECK (min_value > 0),
    points       INTEGER NOT NULL CHECK (points > 0),
    label        TEXT,
    created_by   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((target_id IS NULL) <> (contest_id IS NULL)),
    FOREIGN KEY (tenant_id, target_id) REFERENCES targets (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX incentives_by_target ON incentives (tenant_id, target_id) WHERE target_id IS NOT NULL;
CREATE INDEX incentives_by_contest ON incentives (tenant_id, contest_id) WHERE contest_id IS NOT NULL;

CREATE TABLE points_ledger (
    tenant_id    BLOB NOT NULL,
    id           BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    incentive_id BLOB NOT NULL,
    award_key    INTEGER NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 0),
    points       INTEGER NOT NULL,
    reason       TEXT NOT NULL CHECK (reason IN ('awarded', 'revoked')),
    label        TEXT,
    target_id    BLOB,
    contest_id   BLOB,
    at           INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, incentive_id, user_id, award_key, seq),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX points_ledger_by_user ON points_ledger (tenant_id, user_id, at);
