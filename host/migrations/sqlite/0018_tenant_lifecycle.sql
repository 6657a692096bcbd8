-- Tenant lifecycle (SQLite): offboarding a tenant in one transaction, the operator's own
-- audit trail, and the OAuth connect flow's pending authorisations. The same tables,
-- columns and meanings as migrations/postgres/0018_tenant_lifecycle.sql, which explains
-- each. This file is never edited once committed.

CREATE TABLE tenant_offboarding (
    tenant_id BLOB PRIMARY KEY CHECK (length(tenant_id) = 16)
) STRICT;

DROP TRIGGER audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM tenant_offboarding o WHERE o.tenant_id = OLD.tenant_id)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE operator_audit (
    seq     INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
) STRICT;

CREATE TRIGGER operator_audit_no_update BEFORE UPDATE ON operator_audit
BEGIN
    SELECT RAISE(ABORT, 'operator_audit is append-only');
END;

CREATE TRIGGER operator_audit_no_delete BEFORE DELETE ON operator_audit
BEGIN
    SELECT RAISE(ABORT, 'operator_audit is append-only');
END;

CREATE TABLE oauth_states (
    tenant_id    BLOB NOT NULL REFERENCES tenants (tenant_id),
    state_hash   BLOB NOT NULL CHECK (length(state_hash) = 32),
    connector_id TEXT NOT NULL,
    user_id      BLOB NOT NULL,
    verifier     BLOB NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX oauth_states_by_hash ON oauth_states (state_hash);
