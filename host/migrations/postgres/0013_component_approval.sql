-- Connector approval (Postgres): the component an integration's consent covers.
-- component_digest: SHA-256 (hex) of the component approved when the integration was
-- enabled or last re-approved; component_grants: its grants (JSON: hosts, metrics, keys,
-- scheme, log codes, cursor keys, contract). approval_digest: set while a newer installed
-- component asks for more than was approved; the scheduler queues nothing until an admin
-- approves that digest. This file is never edited once committed.

ALTER TABLE integrations ADD COLUMN component_digest TEXT;
ALTER TABLE integrations ADD COLUMN component_grants TEXT;
ALTER TABLE integrations ADD COLUMN approval_digest TEXT;
