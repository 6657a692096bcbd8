-- Identity claims (a CRM identity is never claimed by a self-service e-mail change) and the
-- master key fingerprint (nodes with different keys cannot silently split the secrets).

-- Whether the user's e-mail address was last set by the user themselves (`PATCH /v1/me`)
-- rather than by an admin: mapping a CRM owner through such an address waits for an
-- admin's confirmation.
ALTER TABLE users ADD COLUMN email_self_set INTEGER NOT NULL DEFAULT 0 CHECK (email_self_set IN (0, 1));

-- How a CRM owner was mapped: by the roster's e-mails (`auto`), by an admin entering the
-- CRM id (`manual`), or by an admin confirming a pending mapping (`confirmed`).
ALTER TABLE owner_mappings ADD COLUMN source TEXT NOT NULL DEFAULT 'auto'
    CHECK (source IN ('auto', 'manual', 'confirmed'));

-- Mappings the roster proposes but may not make alone, until an admin decides: the owner's
-- e-mail matches a user whose address was set by self-service, or the owner is already
-- mapped to another person. Rewritten per integration at each roster run.
CREATE TABLE owner_conflicts (
    tenant_id    BLOB NOT NULL,
    connector_id TEXT NOT NULL,
    owner_hash   BLOB NOT NULL CHECK (length(owner_hash) = 16),
    user_id      BLOB NOT NULL,
    reason       TEXT NOT NULL CHECK (reason IN ('self_service_email', 'mapped_to_other')),
    detected_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, connector_id, owner_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;

-- One row: a fingerprint of the master key every sealed value is sealed under
-- (HMAC-SHA-256 of a fixed label under the key; not the key). Recorded at first start.
CREATE TABLE master_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint BLOB NOT NULL CHECK (length(fingerprint) = 32),
    recorded_at INTEGER NOT NULL
) STRICT;
