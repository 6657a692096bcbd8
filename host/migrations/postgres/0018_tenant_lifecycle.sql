-- Tenant lifecycle (Postgres): offboarding a tenant in one transaction, the operator's own
-- audit trail, and the OAuth connect flow's pending authorisations.
--
-- The conventions of 0001_initial.sql hold. The same tables, columns and triggers are in
-- migrations/sqlite/0018_tenant_lifecycle.sql. This file is never edited once committed.

-- A tenant being offboarded: a row lives only inside the offboarding transaction (inserted
-- first, deleted before it commits), and lets that transaction, and nothing else, delete the
-- tenant's audit entries.
CREATE TABLE tenant_offboarding (
    tenant_id UUID PRIMARY KEY
);

CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM tenant_offboarding o WHERE o.tenant_id = OLD.tenant_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

-- What the operator did that outlives a tenant: `tenant.offboarded` with the tenant's id in
-- `subject` and the rows removed per table (a JSON object) in `detail`. Never names, e-mails
-- or anything else of the tenant. Not a tenant's table: it has no `tenant_id`. Append-only.
CREATE TABLE operator_audit (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);

CREATE FUNCTION operator_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_audit is append-only';
END;
$$;

CREATE TRIGGER operator_audit_append_only
    BEFORE UPDATE OR DELETE ON operator_audit
    FOR EACH ROW EXECUTE FUNCTION operator_audit_is_append_only();

-- An OAuth authorisation an admin started (`GET /v1/integrations/{connector}/connect`) and
-- the CRM has not yet sent back: the SHA-256 of its `state` (the state itself is only in the
-- admin's browser), the PKCE `code_verifier` sealed with the master key, and when it
-- expires. Used once: the callback deletes the row whatever the outcome. The callback finds
-- it by hash alone (it carries no API token), as authentication finds a token.
CREATE TABLE oauth_states (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    state_hash   BYTEA NOT NULL CHECK (octet_length(state_hash) = 32),
    connector_id TEXT NOT NULL,
    user_id      UUID NOT NULL,
    verifier     BYTEA NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, state_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX oauth_states_by_hash ON oauth_states (state_hash);
