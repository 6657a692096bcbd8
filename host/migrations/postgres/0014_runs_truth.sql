-- Runs that tell the truth, patience with a CRM's rate limits, and resync (Postgres).
--
-- * A run that did not do everything it set out to do ends `partial`, with its `reasons`
--   (a JSON array of codes such as `roster_failed:http_rate_limited`, `budget_exhausted`,
--   `owners_unmapped:3`, `snapshot_skipped`). Runs that ended `succeeded` with the code
--   `budget_exhausted` before this migration become what they were: `partial`.
-- * `integrations.crm_not_before`: the instant before which the CRM asked not to be called
--   (its `Retry-After`, or its rate headers saying the window is spent), so that whichever
--   node runs the next sync waits for it.
-- * `integrations.resync_pending`: a resync asked for while a run was in flight; the cursor
--   is reset when that run ends.
--
-- The conventions of 0001_initial.sql hold. The same change is in
-- migrations/sqlite/0014_runs_truth.sql. This file is never edited once committed.

ALTER TABLE sync_runs DROP CONSTRAINT sync_runs_status_check;
ALTER TABLE sync_runs ADD CONSTRAINT sync_runs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'partial', 'failed'));
ALTER TABLE sync_runs ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
UPDATE sync_runs SET status = 'partial', reasons = '["budget_exhausted"]', error_code = NULL
    WHERE status = 'succeeded' AND error_code = 'budget_exhausted';

ALTER TABLE integrations ADD COLUMN crm_not_before BIGINT;
ALTER TABLE integrations ADD COLUMN resync_pending BOOLEAN NOT NULL DEFAULT FALSE;
