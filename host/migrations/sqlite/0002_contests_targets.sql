-- Contests and targets (SQLite): the engine's own tables.
--
-- The same tables, columns and meanings as migrations/postgres/0002_contests_targets.sql;
-- read the comments there. Differences are only of dialect: UUIDs are 16-byte BLOBs,
-- booleans INTEGER 0/1, tables STRICT.
-- This file is never edited once committed; changes go into a new numbered migration.

CREATE TABLE contests (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    id           BLOB NOT NULL,
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    format       TEXT NOT NULL,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL,
    participants TEXT NOT NULL CHECK (participants IN ('users', 'teams')),
    created_by   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    frozen       TEXT,
    frozen_at    INTEGER,
    PRIMARY KEY (tenant_id, id),
    CHECK (ends_at > starts_at),
    CHECK ((frozen IS NULL) = (frozen_at IS NULL))
) STRICT;

CREATE TABLE contest_participants (
    tenant_id  BLOB NOT NULL,
    contest_id BLOB NOT NULL,
    position   INTEGER NOT NULL,
    user_id    BLOB,
    team_id    BLOB,
    PRIMARY KEY (tenant_id, contest_id, position),
    UNIQUE (tenant_id, contest_id, user_id),
    UNIQUE (tenant_id, contest_id, team_id),
    CHECK ((user_id IS NULL) <> (team_id IS NULL)),
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX contest_participants_by_user ON contest_participants (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX contest_participants_by_team ON contest_participants (tenant_id, team_id) WHERE team_id IS NOT NULL;

CREATE TABLE targets (
    tenant_id   BLOB NOT NULL REFERENCES tenants (tenant_id),
    id          BLOB NOT NULL,
    user_id     BLOB,
    team_id     BLOB,
    metric      TEXT NOT NULL,
    period      TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'quarter', 'year')),
    goal        INTEGER NOT NULL CHECK (goal > 0),
    starts_on   TEXT NOT NULL,
    first_start INTEGER NOT NULL,
    first_end   INTEGER NOT NULL,
    recurring   INTEGER NOT NULL CHECK (recurring IN (0, 1)),
    created_by  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((user_id IS NULL) <> (team_id IS NULL)),
    CHECK (first_end > first_start),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX targets_by_user ON targets (tenant_id, user_id, metric, period) WHERE user_id IS NOT NULL;
CREATE INDEX targets_by_team ON targets (tenant_id, team_id, metric, period) WHERE team_id IS NOT NULL;
