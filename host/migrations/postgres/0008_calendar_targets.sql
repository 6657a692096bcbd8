-- Tenant calendars, custom and tiered targets, join dates (Postgres).
--
-- The conventions of 0001_initial.sql hold: `tenant_id` first in every key, instants as
-- BIGINT milliseconds since the Unix epoch, values as BIGINT in the metric's unit, JSON the
-- store never queries into as TEXT, local dates as TEXT `YYYY-MM-DD`. The same tables and
-- columns are in migrations/sqlite/0008_calendar_targets.sql. This file is never edited
-- once committed.

-- A tenant's working calendar (host/src/engine/calendar.rs). No row: the defaults, weeks
-- from Monday (ISO), Monday to Friday worked, no holidays. `working_days` is a JSON array
-- of weekday names (at least one), `holidays` a JSON array of local dates, ascending.
CREATE TABLE tenant_calendars (
    tenant_id    UUID NOT NULL REFERENCES tenants (tenant_id),
    week_start   TEXT NOT NULL
                 CHECK (week_start IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday')),
    working_days TEXT NOT NULL,
    holidays     TEXT NOT NULL,
    updated_by   UUID NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- Targets gain:
-- * `custom` periods: the local days `starts_on..=ends_on`, never recurring;
-- * `week_start`: the day a weekly target's weeks start on, fixed when it is created from
--   the tenant calendar (NULL: Monday, as for every target created before this migration),
--   so a later change of the calendar never moves an existing target's periods;
-- * `tiers`: stretch goals above `goal`, a JSON array of `{"goal", "label"}`, ascending
--   (NULL: none).
ALTER TABLE targets DROP CONSTRAINT targets_period_check;
ALTER TABLE targets ADD CONSTRAINT targets_period_check
    CHECK (period IN ('day', 'week', 'month', 'quarter', 'year', 'custom'));
ALTER TABLE targets ADD COLUMN ends_on TEXT;
ALTER TABLE targets ADD COLUMN week_start TEXT
    CHECK (week_start IN ('monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'));
ALTER TABLE targets ADD COLUMN tiers TEXT;
ALTER TABLE targets ADD CONSTRAINT targets_custom_range
    CHECK ((period = 'custom') = (ends_on IS NOT NULL) AND (period <> 'custom' OR NOT recurring));

-- The local date a user joined (NULL: not known, treated as before any period). A target's
-- goal is pro-rated by working days for a user who joined after its period started.
-- Deliberately not the account's `created_at`: accounts are often created in bulk long
-- after (or before) people start.
ALTER TABLE users ADD COLUMN joined_on TEXT;
