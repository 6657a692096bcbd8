-- A tamper-evident audit log (Postgres): every entry carries `chain`, a keyed hash over the
-- previous entry's `chain` and its own fields (host/src/store/audit.rs says exactly what is
-- hashed and with which key), so that editing, deleting or reordering an entry underneath
-- the service breaks the chain from that entry on (`oneup audit verify`,
-- `GET /v1/audit/verify`).
--
-- Entries written before this migration get their `chain` once, from the host, right after
-- the migrations run (Store::migrate): the append-only trigger lets an update set a NULL
-- `chain` and change nothing else, and nothing else. New entries must carry one.
--
-- The conventions of 0001_initial.sql hold. The same change is in
-- migrations/sqlite/0016_audit_chain.sql. This file is never edited once committed.

ALTER TABLE audit_log ADD COLUMN chain BYTEA CHECK (chain IS NULL OR octet_length(chain) = 32);

CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.chain IS NULL AND NEW.chain IS NOT NULL
        AND NEW.tenant_id = OLD.tenant_id AND NEW.seq = OLD.seq AND NEW.at = OLD.at
        AND NEW.actor = OLD.actor AND NEW.action = OLD.action AND NEW.subject = OLD.subject THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE FUNCTION audit_log_requires_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log entries carry their chain hash';
END;
$$;

CREATE TRIGGER audit_log_chained
    BEFORE INSERT ON audit_log
    FOR EACH ROW WHEN (NEW.chain IS NULL) EXECUTE FUNCTION audit_log_requires_chain();
