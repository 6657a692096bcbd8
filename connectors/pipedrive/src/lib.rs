//! The Pipedrive connector: won deals, revenue, calls and meetings, read from Pipedrive's
//! API v2 (users from v1), as anonymised KPI changes.
//!
//! What it counts (see `contract.md`):
//!
//! * for each deal with `status = won`: `deals_won` 1 and `revenue` (`value` in `currency`)
//!   at `won_time`, credited to `owner_id`, both under the deal id as source id; a deal that
//!   stops being won (lost, reopened, deleted) retracts both;
//! * for each activity with `done = true` and `type` `call` or `meeting`: `calls` or
//!   `meetings` 1 at `marked_as_done_time`, credited to `owner_id`, under the activity id; an
//!   activity deleted, undone or changed to another type retracts it.
//!
//! How it reads: `/api/v2/deals` (every status but deleted, so a won deal that became lost
//! is seen), `/api/v2/deals/archived` (since 2025-07-15 archived deals are listed only there;
//! an archived won deal is still won; a server without that route answers 404, read as "no
//! archived deals"), `/api/v2/deals?status=deleted` (Pipedrive keeps deleted deals for
//! about 30 days) and `/api/v2/activities`, each sorted by `update_time` ascending, 500 to a page,
//! from `updated_since` (inclusive) of its own watermark in the cursor. The first sync reads
//! everything. After every page it checkpoints the cursor with the largest `update_time`
//! seen, so a sync that stops resumes where it was; the overlap it re-reads is harmless
//! because upserts replace. The roster comes from `/v1/users`.
//!
//! Only ids, numbers, times and currency codes leave the connector: titles, names, notes
//! and e-mails of records are never read into a change (the roster's e-mails go to the host
//! to be compared, never kept).

#![warn(missing_docs)]

use std::collections::BTreeSet;

use roaring::RoaringBitmap;

use oneup_connector_sdk::json::{CursorPage, OffsetPage, Text};
use oneup_connector_sdk::time::{format_rfc3339, parse_timestamp};
use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Cursor, Decimal, Descriptor, HttpResponse, KpiChange, LogLevel,
    MetricKind, Money, RosterEntry, Setting, SyncOutcome, codes,
};
use serde::Deserialize;

/// The connector.
pub struct Pipedrive;

oneup_connector_sdk::export_connector!(Pipedrive);

/// Metric: deals won, one per deal.
pub const DEALS_WON: &str = "deals_won";
/// Metric: the value of won deals, in their currency.
pub const REVENUE: &str = "revenue";
/// Metric: calls done.
pub const CALLS: &str = "calls";
/// Metric: meetings done.
pub const MEETINGS: &str = "meetings";

/// Cursor key: the largest `update_time` of the deals read, in epoch milliseconds.
pub const DEALS_SINCE: &str = "deals_since_ms";
/// Cursor key: the largest `update_time` of the archived deals read, in epoch milliseconds.
pub const ARCHIVED_SINCE: &str = "archived_since_ms";
/// Cursor key: the largest `update_time` of the deleted deals read, in epoch milliseconds.
pub const DELETED_SINCE: &str = "deleted_since_ms";
/// Cursor key: the largest `update_time` of the activities read, in epoch milliseconds.
pub const ACTIVITIES_SINCE: &str = "activities_since_ms";

/// Log code: the summary of a sync, with the counts below as fields.
pub const SYNC_SUMMARY: &str = "sync_summary";
/// Log code and field: deals read.
pub const DEALS_READ: &str = "deals_read";
/// Log code and field: archived deals read.
pub const ARCHIVED_READ: &str = "archived_read";
/// Log code: the server has no archived-deals route (404); only non-archived deals were read.
pub const ARCHIVED_UNAVAILABLE: &str = "archived_unavailable";
/// Log code and field: deleted deals read.
pub const DELETED_READ: &str = "deleted_read";
/// Log code and field: activities read.
pub const ACTIVITIES_READ: &str = "activities_read";
/// Log code and field: records that could not be counted (a won deal without an owner, a
/// time or an amount that does not parse); their facts are retracted.
pub const RECORDS_SKIPPED: &str = "records_skipped";
/// Log code: Pipedrive's request budget ran out; the next sync resumes from the cursor.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// The v2 deals list.
const DEALS_PATH: &str = "/api/v2/deals";
/// The v2 archived deals list.
const ARCHIVED_PATH: &str = "/api/v2/deals/archived";
/// The v2 activities list.
const ACTIVITIES_PATH: &str = "/api/v2/activities";

/// Records per page, Pipedrive's maximum.
const PAGE_LIMIT: &str = "500";

/// How far before the first sync's start deleted deals are first looked for, to allow for
/// the host's clock and Pipedrive's differing.
const CLOCK_MARGIN_MS: i64 = 3_600_000;

impl Connector for Pipedrive {
    fn describe() -> Descriptor {
        Descriptor::new("pipedrive", env!("CARGO_PKG_VERSION"))
            .with_config(Setting::required("base_url"))
            .with_secret(Setting::required("api_token"))
            .with_base_url_key("base_url")
            .with_allowed_host("*.pipedrive.com")
            .with_allowed_host("api.pipedrive.com")
            .with_auth(AuthScheme::api_key_header("x-api-token", "api_token"))
            .with_metric(DEALS_WON, MetricKind::Count)
            .with_metric(REVENUE, MetricKind::Money)
            .with_metric(CALLS, MetricKind::Count)
            .with_metric(MEETINGS, MetricKind::Count)
            .with_cursor_keys(&[DEALS_SINCE, ARCHIVED_SINCE, DELETED_SINCE, ACTIVITIES_SINCE])
            .with_log_codes(&[
                SYNC_SUMMARY,
                DEALS_READ,
                ARCHIVED_READ,
                ARCHIVED_UNAVAILABLE,
                DELETED_READ,
                ACTIVITIES_READ,
                RECORDS_SKIPPED,
                BUDGET_EXHAUSTED,
            ])
            .with_sync_interval_secs(900)
    }

    fn sync(ctx: &mut Ctx<'_>, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        let mut run = Run::new(ctx.now(), since);
        let outcome = match run.read_all(ctx) {
            Ok(()) => SyncOutcome::Complete,
            Err(error) if error.is(codes::HTTP_RATE_LIMITED) => {
                ctx.log(LogLevel::Warn, BUDGET_EXHAUSTED, &[]);
                // The daily budget resets at the start of the next day in Pipedrive's own zone, which
                // the API does not name: the host's back-off decides when to resume.
                SyncOutcome::BudgetExhausted { resume_at: None }
            }
            Err(error) => return Err(error),
        };
        ctx.log(
            LogLevel::Info,
            SYNC_SUMMARY,
            &[
                (DEALS_READ, run.deals_read),
                (ARCHIVED_READ, run.archived_read),
                (DELETED_READ, run.deleted_read),
                (ACTIVITIES_READ, run.activities_read),
                (RECORDS_SKIPPED, run.skipped),
            ],
        );
        Ok(outcome)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        let mut roster = Vec::new();
        ctx.get_offset_paged("/v1/users", &[], 500, |_, response| {
            let page: OffsetPage<User<'_>> = response.json()?;
            for user in &page.data {
                if let Some(email) = user.email.as_deref().map(str::trim)
                    && !email.is_empty()
                {
                    roster.push(RosterEntry::new(user.id, email));
                }
            }
            Ok(page.next_start())
        })?;
        Ok(roster)
    }
}

/// The fields of a v2 deal the connector reads; the rest (titles, names, notes) are only
/// checked for syntax and never read (pages are decoded with `HttpResponse::skim_json`).
#[derive(Deserialize)]
struct Deal<'a> {
    id: i64,
    owner_id: Option<i64>,
    value: Option<Decimal>,
    #[serde(borrow)]
    currency: Option<Text<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    is_deleted: Option<bool>,
    #[serde(borrow)]
    update_time: Option<Text<'a>>,
    #[serde(borrow)]
    won_time: Option<Text<'a>>,
    #[serde(borrow)]
    close_time: Option<Text<'a>>,
}

/// The fields of a v2 activity the connector reads.
#[derive(Deserialize)]
struct Activity<'a> {
    id: i64,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    owner_id: Option<i64>,
    done: Option<bool>,
    is_deleted: Option<bool>,
    #[serde(borrow)]
    marked_as_done_time: Option<Text<'a>>,
    #[serde(borrow)]
    update_time: Option<Text<'a>>,
}

/// The fields of a v1 user the roster reads.
#[derive(Deserialize)]
struct User<'a> {
    id: i64,
    #[serde(borrow)]
    email: Option<Text<'a>>,
}

/// A time field as epoch milliseconds, if present and well-formed.
fn time_of(field: &Option<Text<'_>>) -> Option<i64> {
    field.as_deref().and_then(|t| parse_timestamp(t).ok())
}

/// A set of record ids that costs a few bits per id when ids are dense, as CRM ids are:
/// ids that fit in 32 bits go into a compressed bitmap, any others into a plain set.
#[derive(Default)]
struct IdSet {
    small: RoaringBitmap,
    large: BTreeSet<i64>,
}

impl IdSet {
    fn insert(&mut self, id: i64) {
        match u32::try_from(id) {
            Ok(small) => {
                self.small.insert(small);
            }
            Err(_) => {
                self.large.insert(id);
            }
        }
    }

    fn contains(&self, id: &i64) -> bool {
        match u32::try_from(*id) {
            Ok(small) => self.small.contains(small),
            Err(_) => self.large.contains(id),
        }
    }

    fn remove(&mut self, id: &i64) -> bool {
        match u32::try_from(*id) {
            Ok(small) => self.small.remove(small),
            Err(_) => self.large.remove(id),
        }
    }
}

/// The state of one sync.
struct Run {
    /// The cursor as it advances; checkpointed after every page.
    cursor: Cursor,
    /// Whether this is the first sync, when no fact of this integration exists yet.
    first_run: bool,
    /// On the first sync, the deals upserted so far: only they can need a retract.
    won_deals: IdSet,
    /// On the first sync, the activities upserted so far.
    done_activities: IdSet,
    deals_read: i64,
    archived_read: i64,
    deleted_read: i64,
    activities_read: i64,
    skipped: i64,
}

impl Run {
    fn new(now: i64, since: Option<Cursor>) -> Self {
        let first_run = since.is_none();
        let mut cursor = since.unwrap_or_default();
        if cursor.get(DELETED_SINCE).is_none() {
            cursor.set(DELETED_SINCE, now - CLOCK_MARGIN_MS);
        }
        Run {
            cursor,
            first_run,
            won_deals: IdSet::default(),
            done_activities: IdSet::default(),
            deals_read: 0,
            archived_read: 0,
            deleted_read: 0,
            activities_read: 0,
            skipped: 0,
        }
    }

    /// Reads the deals, the archived deals, the deleted deals and the activities, in that
    /// order.
    fn read_all(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        self.deals(ctx)?;
        self.archived(ctx)?;
        self.deleted(ctx)?;
        self.activities(ctx)
    }

    /// Reads one paged list sorted by `update_time` from the watermark under `key`, hands
    /// each page to `on_page` and checkpoints after it.
    fn read_pages<F>(
        &mut self,
        ctx: &mut Ctx<'_>,
        path: &str,
        status: Option<&str>,
        key: &str,
        mut on_page: F,
    ) -> Result<(), ConnectorError>
    where
        F: FnMut(&mut Self, &mut Ctx<'_>, &HttpResponse) -> Result<Option<String>, ConnectorError>,
    {
        let since = self.cursor.get(key).map(format_rfc3339);
        let mut query = vec![("limit", PAGE_LIMIT), ("sort_by", "update_time"), ("sort_direction", "asc")];
        if let Some(status) = status {
            query.push(("status", status));
        }
        if let Some(since) = &since {
            query.push(("updated_since", since));
        }
        ctx.get_cursor_paged(path, &query, |ctx, response| {
            let next = on_page(self, ctx, response)?;
            ctx.checkpoint(&self.cursor)?;
            Ok(next)
        })
    }

    /// Reads every deal changed since the watermark, in every status but deleted.
    fn deals(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        self.read_pages(ctx, DEALS_PATH, None, DEALS_SINCE, |run, ctx, response| {
            let page: CursorPage<Deal<'_>> = response.skim_json()?;
            for deal in &page.data {
                run.deals_read += 1;
                if let Some(updated) = time_of(&deal.update_time) {
                    run.cursor.advance(DEALS_SINCE, updated);
                }
                run.deal(ctx, deal)?;
            }
            Ok(page.next_cursor().map(str::to_owned))
        })
    }

    /// Reads the archived deals changed since the watermark: each counts as in `deals` (an
    /// archived won deal stays won). A 404 on the first page means the server has no such
    /// route (an older or partial API): logged, and the sync goes on without archived deals.
    fn archived(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        let mut pages = 0;
        let read = self.read_pages(ctx, ARCHIVED_PATH, None, ARCHIVED_SINCE, |run, ctx, response| {
            pages += 1;
            let page: CursorPage<Deal<'_>> = response.skim_json()?;
            for deal in &page.data {
                run.archived_read += 1;
                if let Some(updated) = time_of(&deal.update_time) {
                    run.cursor.advance(ARCHIVED_SINCE, updated);
                }
                run.deal(ctx, deal)?;
            }
            Ok(page.next_cursor().map(str::to_owned))
        });
        match read {
            Err(error) if pages == 0 && error.http_status == Some(404) => {
                ctx.log(LogLevel::Warn, ARCHIVED_UNAVAILABLE, &[]);
                Ok(())
            }
            other => other,
        }
    }

    /// Reads the deals deleted since the watermark.
    fn deleted(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        let status = Some("deleted");
        self.read_pages(ctx, DEALS_PATH, status, DELETED_SINCE, |run, ctx, response| {
            let page: CursorPage<Deal<'_>> = response.skim_json()?;
            for deal in &page.data {
                run.deleted_read += 1;
                if let Some(updated) = time_of(&deal.update_time) {
                    run.cursor.advance(DELETED_SINCE, updated);
                }
                if deal.is_deleted == Some(true) {
                    run.deal(ctx, deal)?;
                }
            }
            Ok(page.next_cursor().map(str::to_owned))
        })
    }

    /// Reads every activity changed since the watermark.
    fn activities(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        self.read_pages(ctx, ACTIVITIES_PATH, None, ACTIVITIES_SINCE, |run, ctx, response| {
            let page: CursorPage<Activity<'_>> = response.skim_json()?;
            for activity in &page.data {
                run.activities_read += 1;
                if let Some(updated) = time_of(&activity.update_time) {
                    run.cursor.advance(ACTIVITIES_SINCE, updated);
                }
                run.activity(ctx, activity)?;
            }
            Ok(page.next_cursor().map(str::to_owned))
        })
    }

    /// The changes one deal makes: both facts while it is won, retracts once it is not.
    fn deal(&mut self, ctx: &mut Ctx<'_>, deal: &Deal<'_>) -> Result<(), ConnectorError> {
        let won = deal.is_deleted != Some(true) && deal.status.as_deref() == Some("won");
        let credit = if won {
            let at = time_of(&deal.won_time).or_else(|| time_of(&deal.close_time));
            deal.owner_id.zip(at)
        } else {
            None
        };
        let Some((owner, at)) = credit else {
            if won {
                self.skipped += 1;
            }
            if !self.first_run || self.won_deals.remove(&deal.id) {
                ctx.push(KpiChange::retract(DEALS_WON, deal.id))?;
                ctx.push(KpiChange::retract(REVENUE, deal.id))?;
            }
            return Ok(());
        };
        ctx.push(KpiChange::count(DEALS_WON, owner, deal.id, at, 1))?;
        let revenue = match (deal.value, &deal.currency) {
            (Some(value), Some(currency)) => Money::from_decimal(value, currency).ok(),
            _ => None,
        };
        match revenue {
            Some(money) => ctx.push(KpiChange::money(REVENUE, owner, deal.id, at, money))?,
            None => {
                self.skipped += 1;
                if !self.first_run || self.won_deals.contains(&deal.id) {
                    ctx.push(KpiChange::retract(REVENUE, deal.id))?;
                }
            }
        }
        if self.first_run {
            self.won_deals.insert(deal.id);
        }
        Ok(())
    }

    /// The changes one activity makes: its fact while it is a done call or meeting,
    /// retracts once it is not.
    fn activity(&mut self, ctx: &mut Ctx<'_>, activity: &Activity<'_>) -> Result<(), ConnectorError> {
        let counted = activity.done == Some(true) && activity.is_deleted != Some(true);
        let metric = match activity.kind.as_deref() {
            Some("call") if counted => Some(CALLS),
            Some("meeting") if counted => Some(MEETINGS),
            _ => None,
        };
        let credit =
            metric.and_then(|metric| Some((metric, activity.owner_id?, time_of(&activity.marked_as_done_time)?)));
        let may_exist = !self.first_run || self.done_activities.contains(&activity.id);
        let Some((metric, owner, at)) = credit else {
            if metric.is_some() {
                self.skipped += 1;
            }
            if may_exist {
                ctx.push(KpiChange::retract(CALLS, activity.id))?;
                ctx.push(KpiChange::retract(MEETINGS, activity.id))?;
                self.done_activities.remove(&activity.id);
            }
            return Ok(());
        };
        ctx.push(KpiChange::count(metric, owner, activity.id, at, 1))?;
        if may_exist {
            let other = if metric == CALLS { MEETINGS } else { CALLS };
            ctx.push(KpiChange::retract(other, activity.id))?;
        }
        if self.first_run {
            self.done_activities.insert(activity.id);
        }
        Ok(())
    }
}
