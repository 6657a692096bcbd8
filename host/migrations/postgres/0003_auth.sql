-- Refreshing credentials (OAuth 2.0 refresh tokens, Bullhorn sessions) per integration.
--
-- auth_status: NULL while nothing says the credentials fail; 'needs_reauthorization' once
-- the CRM's token endpoint refused the refresh token for good. The scheduler queues no run
-- for such an integration; enabling it again (new secrets) clears the status.
-- refresh_lease_holder / refresh_lease_until: the lease one refresh holds so that two nodes
-- never refresh one integration at once (milliseconds since the Unix epoch). The rotated
-- refresh token itself is written into the sealed `secrets`.
ALTER TABLE integrations ADD COLUMN auth_status TEXT CHECK (auth_status IN ('needs_reauthorization'));
ALTER TABLE integrations ADD COLUMN auth_status_at BIGINT;
ALTER TABLE integrations ADD COLUMN refresh_lease_holder TEXT;
ALTER TABLE integrations ADD COLUMN refresh_lease_until BIGINT;
