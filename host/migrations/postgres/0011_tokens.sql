-- Tokens that expire, carry a scope and a label, and show when they were last used; one-time
-- stream tickets. This file is never edited once committed.
--
-- scope: 'full' acts with the user's role; 'display' only reads leaderboards and their
-- streams (office screens). Tokens issued before this migration are 'full' and never expire.
-- expires_at: NULL = never (milliseconds since the Unix epoch otherwise).
-- last_used_at: coarse, written at most once a minute per token.
-- expiry_audited: the expiry was recorded in the audit log (once, when the expired token
-- was first presented).
ALTER TABLE api_tokens ADD COLUMN label TEXT;
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'display'));
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN expiry_audited BOOLEAN NOT NULL DEFAULT FALSE;

-- One-time tickets for one leaderboard stream connection (`?ticket=`), kept as the SHA-256
-- of the ticket. Consumed by one atomic UPDATE, so two nodes cannot both accept one. Like
-- api_tokens they are looked up by hash before the tenant is known. A ticket acts as the
-- token that asked for it, which must still be valid when the ticket is used.
CREATE TABLE stream_tickets (
    tenant_id   UUID NOT NULL,
    ticket_hash BYTEA NOT NULL CHECK (octet_length(ticket_hash) = 32),
    token_id    UUID NOT NULL,
    contest_id  UUID NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at BIGINT,
    PRIMARY KEY (tenant_id, ticket_hash),
    FOREIGN KEY (tenant_id, token_id) REFERENCES api_tokens (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX stream_tickets_by_hash ON stream_tickets (ticket_hash);
