-- Stored contest standings (SQLite): the same columns, tables and meanings as
-- migrations/postgres/0007_standings.sql; read the comments there. Differences are only of
-- dialect: UUIDs are 16-byte BLOBs, tables STRICT.
-- This file is never edited once committed; changes go into a new numbered migration.

ALTER TABLE contests ADD COLUMN standing_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE contest_totals (
    tenant_id      BLOB NOT NULL,
    contest_id     BLOB NOT NULL,
    connector_id   TEXT NOT NULL,
    owner_hash     BLOB NOT NULL CHECK (length(owner_hash) = 16),
    value_millions INTEGER NOT NULL,
    value_rest     INTEGER NOT NULL CHECK (value_rest > -1000000 AND value_rest < 1000000),
    reached_at     INTEGER,
    PRIMARY KEY (tenant_id, contest_id, connector_id, owner_hash),
    FOREIGN KEY (tenant_id, contest_id) REFERENCES contests (tenant_id, id) ON DELETE CASCADE
) STRICT;

CREATE INDEX contests_to_freeze ON contests (ends_at) WHERE frozen_at IS NULL;

INSERT INTO contest_totals (tenant_id, contest_id, connector_id, owner_hash, value_millions, value_rest, reached_at)
SELECT g.tenant_id, g.contest_id, g.connector_id, g.owner_hash,
       SUM(g.s) / 1000000, SUM(g.s) % 1000000,
       MAX(CASE WHEN g.s <> 0 THEN g.occurred_at END)
FROM (
    SELECT c.tenant_id, c.id AS contest_id, f.connector_id, f.owner_hash, f.occurred_at,
           SUM(COALESCE(t.weight_micros, 1)
               * (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END)) AS s
    FROM contests c
    LEFT JOIN composite_metric_terms t ON t.tenant_id = c.tenant_id AND t.slug = c.metric
    JOIN facts f ON f.tenant_id = c.tenant_id AND f.metric = COALESCE(t.metric, c.metric)
        AND f.occurred_at >= c.starts_at AND f.occurred_at < c.ends_at
    WHERE (CASE WHEN f.kind = 'count' THEN f.count ELSE f.amount_tenant_micros END) IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
) g
GROUP BY g.tenant_id, g.contest_id, g.connector_id, g.owner_hash;
