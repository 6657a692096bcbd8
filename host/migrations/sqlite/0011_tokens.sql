-- Tokens that expire, carry a scope and a label, and show when they were last used; one-time
-- stream tickets (SQLite), as in migrations/postgres/0011_tokens.sql. This file is never
-- edited once committed.
ALTER TABLE api_tokens ADD COLUMN label TEXT;
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'display'));
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN expiry_audited INTEGER NOT NULL DEFAULT 0 CHECK (expiry_audited IN (0, 1));

CREATE TABLE stream_tickets (
    tenant_id   BLOB NOT NULL,
    ticket_hash BLOB NOT NULL CHECK (length(ticket_hash) = 32),
    token_id    BLOB NOT NULL,
    contest_id  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER,
    PRIMARY KEY (tenant_id, ticket_hash),
    FOREIGN KEY (tenant_id, token_id) REFERENCES api_tokens (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX stream_tickets_by_hash ON stream_tickets (ticket_hash);
