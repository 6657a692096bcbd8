-- One CRM owner's facts of a metric by time (Postgres): the ingestion commit's walk back to
-- an owner's previous reaching instant (host/src/store/standings.rs, `last_change`) when a
-- commit cancels the facts at its current one (a deal won then lost again). Without it that
-- walk scanned the metric's facts of every owner back in time: seconds over 10 million
-- facts, inside the commit.
--
-- The conventions of 0001_initial.sql hold. The same index is in
-- migrations/sqlite/0010_facts_by_owner.sql. This file is never edited once committed.

CREATE INDEX facts_by_owner ON facts (tenant_id, connector_id, owner_hash, metric, occurred_at);
