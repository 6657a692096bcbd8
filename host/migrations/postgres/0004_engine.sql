-- Composite metrics (Postgres): weighted sums of count metrics, defined per tenant by an
-- admin (`points = 10 × placements + 1 × calls`).
--
-- The conventions of 0001_initial.sql hold: `tenant_id` first in every key, instants as
-- BIGINT milliseconds since the Unix epoch. The same tables and columns are in
-- migrations/sqlite/0004_engine.sql. This file is never edited once committed.

-- A composite metric: `slug` is what KPIs, targets and contests name it by (the host
-- refuses a slug an installed connector declares); `name` an optional display name.
CREATE TABLE composite_metrics (
    tenant_id  UUID NOT NULL REFERENCES tenants (tenant_id),
    slug       TEXT NOT NULL,
    name       TEXT,
    created_by UUID NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, slug)
);

-- Its terms, in the order given: a connector count metric and its weight in millionths
-- (`1.5` is 1500000), never zero. Each metric at most once per composite.
CREATE TABLE composite_metric_terms (
    tenant_id     UUID NOT NULL,
    slug          TEXT NOT NULL,
    position      BIGINT NOT NULL,
    metric        TEXT NOT NULL,
    weight_micros BIGINT NOT NULL CHECK (weight_micros <> 0),
    PRIMARY KEY (tenant_id, slug, position),
    UNIQUE (tenant_id, slug, metric),
    FOREIGN KEY (tenant_id, slug) REFERENCES composite_metrics (tenant_id, slug) ON DELETE CASCADE
);
