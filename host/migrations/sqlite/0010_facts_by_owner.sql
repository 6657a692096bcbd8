-- One CRM owner's facts of a metric by time (SQLite), as in
-- migrations/postgres/0010_facts_by_owner.sql. This file is never edited once committed.

CREATE INDEX facts_by_owner ON facts (tenant_id, connector_id, owner_hash, metric, occurred_at);
