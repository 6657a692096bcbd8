-- A tamper-evident audit log (SQLite), as in migrations/postgres/0016_audit_chain.sql; read
-- the comments there. This file is never edited once committed.

ALTER TABLE audit_log ADD COLUMN chain BLOB CHECK (chain IS NULL OR length(chain) = 32);

DROP TRIGGER audit_log_no_update;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
WHEN NOT (OLD.chain IS NULL AND NEW.chain IS NOT NULL AND NEW.tenant_id = OLD.tenant_id
    AND NEW.seq = OLD.seq AND NEW.at = OLD.at AND NEW.actor = OLD.actor
    AND NEW.action = OLD.action AND NEW.subject = OLD.subject)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_chained BEFORE INSERT ON audit_log
WHEN NEW.chain IS NULL
BEGIN
    SELECT RAISE(ABORT, 'audit_log entries carry their chain hash');
END;
