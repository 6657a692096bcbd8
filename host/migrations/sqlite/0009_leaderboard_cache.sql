-- Versions of what a leaderboard answer depends on (SQLite), so that the node may cache the
-- rendered answer and serve it until one of them changes (host/src/api/leaderboard_cache.rs,
-- Store::leaderboard_versions). Kept by triggers, as in
-- migrations/postgres/0009_leaderboard_cache.sql (which explains each). This file is never
-- edited once committed.

ALTER TABLE contests ADD COLUMN definition_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER contests_definition_version AFTER UPDATE ON contests
WHEN NEW.standing_version = OLD.standing_version AND NEW.definition_version = OLD.definition_version
BEGIN
    UPDATE contests SET definition_version = definition_version + 1
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;

CREATE TABLE leaderboard_inputs (
    tenant_id BLOB PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    version   INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO leaderboard_inputs (tenant_id) SELECT tenant_id FROM tenants;

CREATE TRIGGER tenants_leaderboard_inputs AFTER INSERT ON tenants
BEGIN
    INSERT OR IGNORE INTO leaderboard_inputs (tenant_id) VALUES (NEW.tenant_id);
END;

CREATE TRIGGER tenants_leaderboard_zone AFTER UPDATE OF timezone, currency ON tenants
WHEN OLD.timezone IS NOT NEW.timezone OR OLD.currency IS NOT NEW.currency
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER owner_mappings_leaderboard_insert AFTER INSERT ON owner_mappings
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER owner_mappings_leaderboard_update AFTER UPDATE ON owner_mappings
WHEN OLD.user_id IS NOT NEW.user_id OR OLD.connector_id IS NOT NEW.connector_id
    OR OLD.owner_hash IS NOT NEW.owner_hash
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER owner_mappings_leaderboard_delete AFTER DELETE ON owner_mappings
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER team_members_leaderboard_insert AFTER INSERT ON team_members
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER team_members_leaderboard_update AFTER UPDATE ON team_members
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER team_members_leaderboard_delete AFTER DELETE ON team_members
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER contest_participants_leaderboard_insert AFTER INSERT ON contest_participants
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER contest_participants_leaderboard_update AFTER UPDATE ON contest_participants
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER contest_participants_leaderboard_delete AFTER DELETE ON contest_participants
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER composite_metrics_leaderboard_insert AFTER INSERT ON composite_metrics
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER composite_metrics_leaderboard_update AFTER UPDATE ON composite_metrics
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER composite_metrics_leaderboard_delete AFTER DELETE ON composite_metrics
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER composite_metric_terms_leaderboard_insert AFTER INSERT ON composite_metric_terms
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER composite_metric_terms_leaderboard_update AFTER UPDATE ON composite_metric_terms
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER composite_metric_terms_leaderboard_delete AFTER DELETE ON composite_metric_terms
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER incentives_leaderboard_insert AFTER INSERT ON incentives
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER incentives_leaderboard_update AFTER UPDATE ON incentives
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER targets_leaderboard_insert AFTER INSERT ON targets
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER targets_leaderboard_update AFTER UPDATE ON targets
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER targets_leaderboard_delete AFTER DELETE ON targets
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER tenant_calendars_leaderboard_insert AFTER INSERT ON tenant_calendars
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER tenant_calendars_leaderboard_update AFTER UPDATE ON tenant_calendars
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
CREATE TRIGGER tenant_calendars_leaderboard_delete AFTER DELETE ON tenant_calendars
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = OLD.tenant_id;
END;

CREATE TRIGGER users_leaderboard_joined_on AFTER UPDATE OF joined_on ON users
WHEN OLD.joined_on IS NOT NEW.joined_on
BEGIN
    UPDATE leaderboard_inputs SET version = version + 1 WHERE tenant_id = NEW.tenant_id;
END;
