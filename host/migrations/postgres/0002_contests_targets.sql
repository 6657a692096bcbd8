-- Contests and targets (Postgres): the engine's own tables.
--
-- The conventions of 0001_initial.sql hold: `tenant_id` first in every key, random UUIDs,
-- instants as BIGINT milliseconds since the Unix epoch, money as BIGINT micros of the tenant
-- currency, JSON the store never queries into as TEXT. The same tables and columns are in
-- migrations/sqlite/0002_contests_targets.sql.
--
-- Assignees and participants are users or teams: one nullable column for each, exactly one
-- set (a CHECK), each with its own foreign key, so erasing a user or deleting a team takes
-- their participations and targets with it (ON DELETE CASCADE). `created_by` has no
-- foreign key: the record outlives the manager who made it, like the audit log's actors.
-- This file is never edited once committed; changes go into a new numbered migration.

-- A contest: a ranking of users or teams by one metric over the instants [starts_at,
-- ends_at). `format` is checked by the host (only `leaderboard` so far), so new formats need
-- no schema change. `participants` says whether the participants are users or teams, which
-- holds even if every participant has been erased. `frozen` is the final standing, as
-- JSON, written by the first read after the end and served from then on; `frozen_at` is
-- when it was written. Both NULL until then.
CREATE TABLE contests (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    id           UUID NOT NULL,
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    format       TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT NOT NULL,
    participants TEXT NOT NULL CHECK (participants IN ('users', 'teams')),
    created_by   UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    frozen       TEXT,
    frozen_at    BIGINT,
    PRIMARY KEY (tenant_id, id),
    CHECK (ends_at > starts_at),
    CHECK ((frozen IS NULL) = (frozen_at IS NULL))
);

-- Who takes part in a contest, in the order given at creation (`position`). Users of a
-- `users` contest, or teams of a `teams` contest: a team's value is the sum of its members'.
CREATE TABLE contest_participants (
    tenant_id  UUID NOT NULL,
    contest_id UUID NOT NULL,
    position   BIGINT NOT NULL,
    user_id    UUID,
    team_id    UUID,
    PRIMARY KEY (tenant_id, contest_id, position),
    UNIQUE (tenant_id, contest_id, user_id),
    UNIQUE (tenant_id, contest_id, team_id),
    CHECK ((user_id IS NULL) <> (team_id IS NULL)),
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE
);
-- The contests a user or team takes part in (and the cascades of an erasure).
CREATE INDEX contest_participants_by_user ON contest_participants (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX contest_participants_by_team ON contest_participants (tenant_id, team_id) WHERE team_id IS NOT NULL;

-- A target: `goal` of `metric` per `period` (day, week, month, quarter, year in the tenant's
-- zone) for a user or a team. `goal` is a count, or micros of the tenant currency for money.
-- `starts_on` is the local date (YYYY-MM-DD) it was set from; `first_start`/`first_end` are
-- the instants of the period containing it. A one-off target covers that period only; a
-- recurring one every period from it on. The host refuses a target whose covered instants
-- overlap another's of the same assignee, metric and period (checked under a lock on the
-- assignee's row).
CREATE TABLE targets (
    tenant_id   UUID NOT NULL REFERENCES tenants (tenant_id),
    id          UUID NOT NULL,
    user_id     UUID,
    team_id     UUID,
    metric      TEXT NOT NULL,
    period      TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'quarter', 'year')),
    goal        BIGINT NOT NULL CHECK (goal > 0),
    starts_on   TEXT NOT NULL,
    first_start BIGINT NOT NULL,
    first_end   BIGINT NOT NULL,
    recurring   BOOLEAN NOT NULL,
    created_by  UUID NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((user_id IS NULL) <> (team_id IS NULL)),
    CHECK (first_end > first_start),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id) ON DELETE CASCADE
);
-- The overlap check and "targets of this assignee".
CREATE INDEX targets_by_user ON targets (tenant_id, user_id, metric, period) WHERE user_id IS NOT NULL;
CREATE INDEX targets_by_team ON targets (tenant_id, team_id, metric, period) WHERE team_id IS NOT NULL;
