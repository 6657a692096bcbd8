-- Stored contest standings (Postgres): running totals kept by the ingestion commit, so a
-- leaderboard is read from a few thousand rows instead of a contest's facts.
--
-- The conventions of 0001_initial.sql hold. The same tables and columns are in
-- migrations/sqlite/0007_standings.sql. This file is never edited once committed.

-- Bumped in every transaction that changes a contest's totals (an ingestion commit whose
-- facts count for it, a rebuild); readers cache what they derive from the totals by it.
ALTER TABLE contests ADD COLUMN standing_version BIGINT NOT NULL DEFAULT 0;

-- One row per contest and CRM owner (integration and keyed owner hash) with facts counting
-- for it: the sum of those facts in the contest's window, weighted for a composite metric
-- (counts, micros of the tenant currency, or micro-points), as `value_millions * 1000000 +
-- value_rest` (two BIGINTs: the sum of 10 million money facts can exceed one); and
-- `reached_at`, the last instant in the window at which the owner's running total changed
-- (NULL if it never did), for the contest tie-break. Keyed by owner, not user, so mapping
-- an owner to a user or changing a team's members rewrites nothing: readers join
-- owner_mappings and team_members. Amounts waiting for an exchange rate count 0 until
-- converted.
CREATE TABLE contest_totals (
    tenant_id      UUID NOT NULL,
    contest_id     UUID NOT NULL,
    connector_id   TEXT NOT NULL,
    owner_hash     BYTEA NOT NULL CHECK (octet_length(owner_hash) = 16),
    value_millions BIGINT NOT NULL,
    value_rest     BIGINT NOT NULL CHECK (value_rest > -1000000 AND value_rest < 1000000),
    reached_at     BIGINT,
    PRIMARY KEY (tenant_id, contest_id, connector_id, owner_hash),
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE
);

-- The freezing tick: contests past their end and not frozen yet (across tenants).
CREATE INDEX contests_to_freeze ON contests (ends_at) WHERE frozen_at IS NULL;

-- The totals of the contests that exist already.
INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, value_millions, value_rest, reached_at)
SELECT g.tenant_id, g.contest_id, g.connector_id, g.owner_hash,
       div(SUM(g.s), 1000000)::bigint, mod(SUM(g.s), 1000000)::bigint,
       MAX(g.occurred_at) FILTER (WHERE g.s <> 0)
FROM (
    SELECT c.tenant_id, c.id AS contest_id, f.connector_id, f.owner_hash, f.occurred_at,
           SUM(COALESCE(t.weight_micros, 1)::numeric
               * (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END)) AS s
    FROM contests c
    LEFT JOIN composite_metric_terms t ON t.tenant_id = c.tenant_id AND t.slug = c.metric
    JOIN facts f ON f.tenant_id = c.tenant_id AND f.metric = COALESCE(t.metric, c.metric)
        AND f.occurred_at >= c.starts_at AND f.occurred_at < c.ends_at
    WHERE (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END) IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
) g
GROUP BY g.tenant_id, g.contest_id, g.connector_id, g.owner_hash;
