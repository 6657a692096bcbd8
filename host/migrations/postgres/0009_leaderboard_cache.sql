-- Versions of what a leaderboard answer depends on (Postgres), so that every node may cache
-- the rendered answer and serve it until one of them changes (host/src/api/leaderboard_cache.rs,
-- Store::leaderboard_versions). The versions are kept by triggers, so no write path can
-- forget one; the totals keep their own `contests.standing_version` (0007).
--
-- The conventions of 0001_initial.sql hold. The same tables, columns and triggers are in
-- migrations/sqlite/0009_leaderboard_cache.sql. This file is never edited once committed.

-- The contest row itself (name, window, goal, frozen result): bumped by every update that
-- does not bump `standing_version` (the totals' own bumps leave it alone).
ALTER TABLE contests ADD COLUMN definition_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION contests_bump_definition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.standing_version = OLD.standing_version THEN
        NEW.definition_version := OLD.definition_version + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER contests_definition_version
    BEFORE UPDATE ON contests
    FOR EACH ROW EXECUTE FUNCTION contests_bump_definition();

-- Per tenant: the other inputs of its leaderboards (zone and currency, owner mappings, team
-- members, contest participants, composite metrics, incentives; and targets, the working
-- calendar and join dates, for formats ranked against targets). Bumped at most once per
-- transaction (`xact`), so a roster mapping 10 000 owners updates the row once.
CREATE TABLE leaderboard_inputs (
    tenant_id UUID PRIMARY KEY REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    version   BIGINT NOT NULL DEFAULT 0,
    xact      BIGINT
);

INSERT INTO leaderboard_inputs (tenant_id) SELECT tenant_id FROM tenants;

CREATE FUNCTION leaderboard_inputs_create() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO leaderboard_inputs (tenant_id) VALUES (NEW.tenant_id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tenants_leaderboard_inputs
    AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_create();

CREATE FUNCTION leaderboard_inputs_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant UUID;
BEGIN
    IF TG_OP = 'DELETE' THEN
        tenant := OLD.tenant_id;
    ELSE
        tenant := NEW.tenant_id;
    END IF;
    UPDATE leaderboard_inputs SET version = version + 1, xact = txid_current()
        WHERE tenant_id = tenant AND xact IS DISTINCT FROM txid_current();
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_leaderboard_zone
    AFTER UPDATE OF timezone, currency ON tenants
    FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone OR OLD.currency IS DISTINCT FROM NEW.currency)
    EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER owner_mappings_leaderboard_inputs
    AFTER INSERT OR DELETE ON owner_mappings
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();
CREATE TRIGGER owner_mappings_leaderboard_inputs_update
    AFTER UPDATE ON owner_mappings
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER team_members_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER contest_participants_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON contest_participants
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER composite_metrics_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON composite_metrics
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER composite_metric_terms_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON composite_metric_terms
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

-- A contest incentive created after the freeze is awarded by the next read of the result.
CREATE TRIGGER incentives_leaderboard_inputs
    AFTER INSERT OR UPDATE ON incentives
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

-- Inputs of formats ranked against each participant's own target.
CREATE TRIGGER targets_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON targets
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER tenant_calendars_leaderboard_inputs
    AFTER INSERT OR UPDATE OR DELETE ON tenant_calendars
    FOR EACH ROW EXECUTE FUNCTION leaderboard_inputs_bump();

CREATE TRIGGER users_leaderboard_joined_on
    AFTER UPDATE OF joined_on ON users
    FOR EACH ROW WHEN (OLD.joined_on IS DISTINCT FROM NEW.joined_on)
    EXECUTE FUNCTION leaderboard_inputs_bump();
