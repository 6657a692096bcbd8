-- Tenant calendars, custom and tiered targets, join dates (SQLite): the same tables,
-- columns and meanings as migrations/postgres/0008_calendar_targets.sql; read the comments
-- there. UUIDs are 16-byte BLOBs, tables STRICT.
--
-- SQLite cannot change a CHECK constraint, so `targets` is rebuilt: a new table with the
-- new columns and checks, the rows copied, the old table dropped and the new one renamed.
-- Dropping `targets` deletes its rows first, which cascades to the incentives of targets;
-- those are copied aside beforehand and put back once the new `targets` has the name their
-- foreign key refers to (whatever columns `incentives` has by then). All of it runs in the
-- migration's one transaction, with foreign keys enforced throughout.
-- This file is never edited once committed; changes go into a new numbered migration.

CREATE TABLE tenant_calendars (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    week_start   TEXT NOT NULL
                 CHECK (week_start IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')),
    working_days TEXT NOT NULL,
    holidays     TEXT NOT NULL,
    updated_by   BLOB NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id)
) STRICT;

CREATE TABLE targets_rebuilt (
    tenant_id   BLOB NOT NULL REFERENCES tenants (tenant_id),
    id          BLOB NOT NULL,
    user_id     BLOB,
    team_id     BLOB,
    metric      TEXT NOT NULL,
    period      TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'quarter', 'year', 'custom')),
    goal        INTEGER NOT NULL CHECK (goal > 0),
    starts_on   TEXT NOT NULL,
    first_start INTEGER NOT NULL,
    first_end   INTEGER NOT NULL,
    recurring   INTEGER NOT NULL CHECK (recurring IN (0, 1)),
    created_by  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    ends_on     TEXT,
    week_start  TEXT
                CHECK (week_start IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')),
    tiers       TEXT,
    PRIMARY KEY (tenant_id, id),
    CHECK ((user_id IS NULL) <> (team_id IS NULL)),
    CHECK (first_end > first_start),
    CHECK ((period = 'custom') = (ends_on IS NOT NULL) AND (period <> 'custom' OR NOT recurring)),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE
) STRICT;
INSERT INTO targets_rebuilt (tenant_id, id, user_id, team_id, metric, period, goal, starts_on, first_start,
    first_end, recurring, created_by, created_at)
SELECT tenant_id, id, user_id, team_id, metric, period, goal, starts_on, first_start, first_end, recurring,
    created_by, created_at FROM targets;

CREATE TABLE incentives_of_targets AS SELECT * FROM incentives WHERE target_id IS NOT NULL;
DROP TABLE targets;
ALTER TABLE targets_rebuilt RENAME TO targets;
INSERT INTO incentives SELECT * FROM incentives_of_targets;
DROP TABLE incentives_of_targets;
CREATE INDEX targets_by_user ON targets (tenant_id, user_id, metric, period) WHERE user_id IS NOT NULL;
CREATE INDEX targets_by_team ON targets (tenant_id, team_id, metric, period) WHERE team_id IS NOT NULL;

ALTER TABLE users ADD COLUMN joined_on TEXT;
