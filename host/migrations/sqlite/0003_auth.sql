-- Refreshing credentials (OAuth 2.0 refresh tokens, Bullhorn sessions) per integration;
-- see the Postgres migration of the same number for what each column means.
ALTER TABLE integrations ADD COLUMN auth_status TEXT CHECK (auth_status IN ('needs_reauthorization'));
ALTER TABLE integrations ADD COLUMN auth_status_at INTEGER;
ALTER TABLE integrations ADD COLUMN refresh_lease_holder TEXT;
ALTER TABLE integrations ADD COLUMN refresh_lease_until INTEGER;
