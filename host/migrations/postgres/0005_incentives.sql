-- Contest formats and incentives (Postgres).
--
-- The conventions of 0001_initial.sql hold: `tenant_id` first in every key, instants as
-- BIGINT milliseconds since the Unix epoch, values as BIGINT in the metric's unit (a count,
-- or micros of the tenant currency). The same tables and columns are in
-- migrations/sqlite/0005_incentives.sql. This file is never edited once committed.

-- A race's goal: the value whose first reaching wins (formats other than `race` leave it
-- NULL; the host checks which formats need it).
ALTER TABLE contests ADD COLUMN goal BIGINT CHECK (goal IS NULL OR goal > 0);

-- An incentive: `points` (above zero) and an optional `label` (the manager's text) for
-- achieving a target's tier (`target_id`; achieved when value × 100 ≥ goal × `tier_percent`)
-- or for a contest placement (`contest_id`; a final rank ≤ `places`, and a value at least
-- `min_value` when set, in the metric's unit). Exactly one of the two sources.
CREATE TABLE incentives (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    id           UUID NOT NULL,
    target_id    UUID,
    tier_percent BIGINT CHECK (tier_percent > 0),
    contest_id   UUID,
    places       BIGINT CHECK (places > 0),
    min_value    BIGINT CHECK (min_value > 0),
    points       BIGINT NOT NULL CHECK (points > 0),
    label        TEXT,
    created_by   UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CHECK ((target_id IS NULL) <> (contest_id IS NULL)),
    FOREIGN KEY (tenant_id, target_id) REFERENCES targets (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX incentives_by_target ON incentives (tenant_id, target_id) WHERE target_id IS NOT NULL;
CREATE INDEX incentives_by_contest ON incentives (tenant_id, contest_id) WHERE contest_id IS NOT NULL;

-- The points ledger: append-only. One row per award (`awarded`, +points) or revocation
-- (`revoked`, -points) of one incentive to one user for one `award_key` (the period start of
-- a target, 0 for a contest); `seq` numbers the rows of that triple, and the unique key makes
-- awarding idempotent under races (a second writer of the same `seq` fails and is ignored).
-- No foreign key to `incentives`: the history outlives a deleted contest or target.
CREATE TABLE points_ledger (
    tenant_id    UUID NOT NULL,
    id           UUID NOT NULL,
    user_id      UUID NOT NULL,
    incentive_id UUID NOT NULL,
    award_key    BIGINT NOT NULL,
    seq          BIGINT NOT NULL CHECK (seq >= 0),
    points       BIGINT NOT NULL,
    reason       TEXT NOT NULL CHECK (reason IN ('awarded', 'revoked')),
    label        TEXT,
    target_id    UUID,
    contest_id   UUID,
    at           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, incentive_id, user_id, award_key, seq),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX points_ledger_by_user ON points_ledger (tenant_id, user_id, at);
