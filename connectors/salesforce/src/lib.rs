//! The Salesforce connector: won opportunities, revenue, calls and meetings, read with SOQL
//! over Salesforce's REST API (v62.0), as anonymised KPI changes.
//!
//! What it counts (see `contract.md`):
//!
//! * for each `Opportunity` with `IsWon = true`: `deals_won` 1 and `revenue` (`Amount` in its
//!   `CurrencyIsoCode` in a multi-currency org, else in the org's default currency) on its
//!   `CloseDate` (a calendar date, which the host places in the tenant's time zone), credited
//!   to `OwnerId`, both under the opportunity id; an opportunity that stops being won (lost,
//!   reopened) or is deleted retracts both; a won one without an amount counts as won and
//!   retracts its revenue;
//! * for each `Task` with `TaskSubtype = 'Call'` and `IsClosed = true`: `calls` 1 at
//!   `CompletedDateTime` (else on its `ActivityDate`), credited to `OwnerId`; a task that stops
//!   being a closed call, or is deleted, retracts it;
//! * for each `Event`: `meetings` 1 at `StartDateTime`, credited to `OwnerId`; deleted retracts.
//!
//! How it reads: first `sobjects/Opportunity/describe`, to learn whether the org is
//! multi-currency (it has a `CurrencyIsoCode` field) or not (then `SELECT
//! DefaultCurrencyIsoCode FROM Organization`). Then, per object, `query` with `WHERE
//! SystemModstamp > <watermark> ORDER BY SystemModstamp ASC` for what changed, and `queryAll`
//! with `WHERE IsDeleted = true AND SystemModstamp > <watermark>` for what was deleted, each
//! with its own watermark in the cursor, following `nextRecordsUrl` until `done`. A first read
//! of an object asks only for what counts (won opportunities, closed calls) and retracts
//! nothing; its deletion watermark then starts where that read ended. After every page the
//! cursor is checkpointed at the last `SystemModstamp` all of whose records have been read, so
//! a sync that stops resumes without a gap. A query locator that expired
//! (`INVALID_QUERY_LOCATOR`) restarts its query from that watermark.
//!
//! Deleted records stay in the recycle bin, where `queryAll` sees them, for 15 days only. So
//! the cursor also keeps, per object, when its deletions were last read completely (host
//! time); when that was longer ago than [`TRUSTED_BIN_MS`] (or is unknown), a deletion may have
//! left the bin unseen, and the object is read again in full inside a snapshot over all time:
//! every record that counts is re-emitted and the host retracts the facts of that object
//! that were not (the documented "full resync" when the deletion feed has a gap).
//!
//! Errors come as a JSON array of `{"message","errorCode"}`: `REQUEST_LIMIT_EXCEEDED` (a 403)
//! ends the sync as budget exhausted at the last checkpoint; `INVALID_FIELD`, `MALFORMED_QUERY`
//! and `INVALID_TYPE` fail it with a code of their own. Messages are never read into a log: they
//! may quote the query.
//!
//! Only ids, numbers, dates, times and currency codes leave the connector: names, subjects,
//! descriptions and e-mails of records are never selected (the roster's e-mails go to the host
//! to be compared, never kept).

#![warn(missing_docs)]

use oneup_connector_sdk::json::Text;
use oneup_connector_sdk::time::{format_rfc3339, parse_timestamp};
use oneup_connector_sdk::{
    AuthScheme, CalendarDate, Connector, ConnectorError, Ctx, Cursor, Decimal, Descriptor, HttpRequest, HttpResponse,
    KpiChange, LogLevel, MetricKind, Money, OccurredAt, RosterEntry, Setting, SnapshotWindow, SyncOutcome, codes,
};
use serde::Deserialize;

/// The connector.
pub struct Salesforce;

oneup_connector_sdk::export_connector!(Salesforce);

/// Metric: opportunities won, one per opportunity.
pub const DEALS_WON: &str = "deals_won";
/// Metric: the amount of won opportunities, in their currency.
pub const REVENUE: &str = "revenue";
/// Metric: closed call tasks.
pub const CALLS: &str = "calls";
/// Metric: events.
pub const MEETINGS: &str = "meetings";

/// Cursor key: the `SystemModstamp` (epoch ms) up to which opportunities are read.
pub const OPPORTUNITIES_SINCE: &str = "opportunities_since_ms";
/// Cursor key: the `SystemModstamp` up to which deleted opportunities are read.
pub const OPPORTUNITIES_DELETED_SINCE: &str = "opportunities_deleted_since_ms";
/// Cursor key: the `SystemModstamp` up to which tasks are read.
pub const TASKS_SINCE: &str = "tasks_since_ms";
/// Cursor key: the `SystemModstamp` up to which deleted tasks are read.
pub const TASKS_DELETED_SINCE: &str = "tasks_deleted_since_ms";
/// Cursor key: the `SystemModstamp` up to which events are read.
pub const EVENTS_SINCE: &str = "events_since_ms";
/// Cursor key: the `SystemModstamp` up to which deleted events are read.
pub const EVENTS_DELETED_SINCE: &str = "events_deleted_since_ms";
/// Cursor key: when (host time) deleted opportunities were last read completely.
pub const OPPORTUNITIES_BIN_READ_AT: &str = "opportunities_bin_read_at_ms";
/// Cursor key: when (host time) deleted tasks were last read completely.
pub const TASKS_BIN_READ_AT: &str = "tasks_bin_read_at_ms";
/// Cursor key: when (host time) deleted events were last read completely.
pub const EVENTS_BIN_READ_AT: &str = "events_bin_read_at_ms";

/// How long after a complete read of the deletions the next one is trusted to see every
/// deletion since: the recycle bin keeps deleted records 15 days; one day is kept in hand
/// for clock differences and a purge that runs early.
pub const TRUSTED_BIN_MS: i64 = 14 * DAY_MS;
const DAY_MS: i64 = 86_400_000;

/// Log code: the summary of a sync, with the counts below as fields.
pub const SYNC_SUMMARY: &str = "sync_summary";
/// Log code and field: opportunities read.
pub const OPPORTUNITIES_READ: &str = "opportunities_read";
/// Log code and field: tasks read.
pub const TASKS_READ: &str = "tasks_read";
/// Log code and field: events read.
pub const EVENTS_READ: &str = "events_read";
/// Log code and field: deleted records read.
pub const DELETED_READ: &str = "deleted_read";
/// Log code and field: records that could not be counted (no owner, a date or amount that
/// does not parse); their facts are retracted.
pub const RECORDS_SKIPPED: &str = "records_skipped";
/// Log code and field: queries restarted after their locator expired.
pub const QUERIES_RESTARTED: &str = "queries_restarted";
/// Log code and field: objects read again in full because their deletions were last read
/// longer ago than the recycle bin keeps them.
pub const FULL_RESYNCS: &str = "full_resyncs";
/// Log code: the org's API request allocation ran out (403 `REQUEST_LIMIT_EXCEEDED`); the next
/// sync resumes from the cursor.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// Error code: Salesforce refused a field of a query (`INVALID_FIELD`), for example one the
/// integration user may not see.
pub const INVALID_FIELD: &str = "invalid_field";
/// Error code: Salesforce could not parse a query (`MALFORMED_QUERY`).
pub const MALFORMED_QUERY: &str = "malformed_query";
/// Error code: an object the integration user may not query (`INVALID_TYPE`).
pub const INVALID_TYPE: &str = "invalid_type";
/// Error code: a query's locator kept expiring (`INVALID_QUERY_LOCATOR`) after restarts.
pub const QUERY_LOCATOR_LOST: &str = "query_locator_lost";
/// Error code: a single-currency org whose default currency could not be read.
pub const NO_ORG_CURRENCY: &str = "no_org_currency";

/// The API version the connector speaks.
const API: &str = "/services/data/v62.0";
/// The page size asked for (Salesforce's maximum).
const QUERY_OPTIONS: &str = "batchSize=2000";
/// How often one query is restarted after its locator expired before the sync gives up.
const MAX_RESTARTS: i64 = 3;

impl Connector for Salesforce {
    fn describe() -> Descriptor {
        Descriptor::new("salesforce", env!("CARGO_PKG_VERSION"))
            .with_config(Setting::required("instance_url"))
            .with_config(Setting::with_default("token_url", "https://login.salesforce.com/services/oauth2/token"))
            .with_secret(Setting::required("client_id"))
            .with_secret(Setting::required("client_secret"))
            .with_secret(Setting::required("refresh_token"))
            .with_base_url_key("instance_url")
            .with_allowed_host("*.salesforce.com")
            .with_allowed_host("*.my.salesforce.com")
            // My Domain names of sandboxes, Developer Edition and scratch orgs.
            .with_allowed_host("*.sandbox.my.salesforce.com")
            .with_allowed_host("*.develop.my.salesforce.com")
            .with_allowed_host("*.scratch.my.salesforce.com")
            .with_allowed_host("login.salesforce.com")
            .with_allowed_host("test.salesforce.com")
            .with_auth(AuthScheme::oauth2_refresh("token_url"))
            .with_metric(DEALS_WON, MetricKind::Count)
            .with_metric(REVENUE, MetricKind::Money)
            .with_metric(CALLS, MetricKind::Count)
            .with_metric(MEETINGS, MetricKind::Count)
            .with_cursor_keys(&[
                OPPORTUNITIES_SINCE,
                OPPORTUNITIES_DELETED_SINCE,
                TASKS_SINCE,
                TASKS_DELETED_SINCE,
                EVENTS_SINCE,
                EVENTS_DELETED_SINCE,
                OPPORTUNITIES_BIN_READ_AT,
                TASKS_BIN_READ_AT,
                EVENTS_BIN_READ_AT,
            ])
            .with_log_codes(&[
                SYNC_SUMMARY,
                OPPORTUNITIES_READ,
                TASKS_READ,
                EVENTS_READ,
                DELETED_READ,
                RECORDS_SKIPPED,
                QUERIES_RESTARTED,
                FULL_RESYNCS,
                BUDGET_EXHAUSTED,
                INVALID_FIELD,
                MALFORMED_QUERY,
                INVALID_TYPE,
                QUERY_LOCATOR_LOST,
                NO_ORG_CURRENCY,
            ])
            .with_sync_interval_secs(900)
    }

    fn sync(ctx: &mut Ctx<'_>, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        let mut run = Run::new(since);
        let outcome = match run.read_all(ctx) {
            Ok(()) => SyncOutcome::Complete,
            Err(error) if error.is(BUDGET_EXHAUSTED) || error.is(codes::HTTP_RATE_LIMITED) => {
                ctx.log(LogLevel::Warn, BUDGET_EXHAUSTED, &[]);
                // The allocation rolls over within 24 hours and Salesforce says no more: the
                // host's back-off decides when to try again.
                SyncOutcome::BudgetExhausted { resume_at: None }
            }
            Err(error) => return Err(error),
        };
        ctx.log(
            LogLevel::Info,
            SYNC_SUMMARY,
            &[
                (OPPORTUNITIES_READ, run.opportunities_read),
                (TASKS_READ, run.tasks_read),
                (EVENTS_READ, run.events_read),
                (DELETED_READ, run.deleted_read),
                (RECORDS_SKIPPED, run.skipped),
                (QUERIES_RESTARTED, run.restarts),
                (FULL_RESYNCS, run.resyncs),
            ],
        );
        Ok(outcome)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        let soql = "SELECT Id, Email FROM User WHERE IsActive = true ORDER BY Id ASC";
        let mut restarts = 0;
        'restart: loop {
            let mut roster = Vec::new();
            let mut response = first_page(ctx, "query", soql)?;
            loop {
                let page: QueryPage<'_, User<'_>> = response.json()?;
                for user in &page.records {
                    if let Some(email) = user.email.as_deref().map(str::trim)
                        && !email.is_empty()
                    {
                        roster.push(RosterEntry::new(user.id.as_str(), email));
                    }
                }
                let Some(next) = page.next_records_url() else {
                    return Ok(roster);
                };
                response = match next_page(ctx, next?) {
                    Err(error) if error.is(INVALID_QUERY_LOCATOR) && restarts < MAX_RESTARTS => {
                        restarts += 1;
                        continue 'restart;
                    }
                    other => other?,
                };
            }
        }
    }
}

/// Internal code of an expired query locator; restarted, never reported.
const INVALID_QUERY_LOCATOR: &str = "invalid_query_locator";

/// One Salesforce error: the body of a failed request is a list of them.
#[derive(Deserialize)]
struct ApiError<'a> {
    #[serde(rename = "errorCode", borrow)]
    error_code: Option<Text<'a>>,
}

/// The answer if it is a success, else the error it stands for: Salesforce's error codes
/// where the connector acts on them, the SDK's standard codes otherwise.
fn check(response: HttpResponse) -> Result<HttpResponse, ConnectorError> {
    let Some(standard) = response.status_error() else {
        return Ok(response);
    };
    let errors: Vec<ApiError<'_>> = response.json().unwrap_or_default();
    let code = errors.iter().find_map(|e| e.error_code.as_deref()).unwrap_or_default();
    let mapped = match (response.status, code) {
        (403, "REQUEST_LIMIT_EXCEEDED") => BUDGET_EXHAUSTED,
        (400, "INVALID_QUERY_LOCATOR") => INVALID_QUERY_LOCATOR,
        (400, "INVALID_FIELD") => INVALID_FIELD,
        (400, "MALFORMED_QUERY") => MALFORMED_QUERY,
        (400, "INVALID_TYPE") => INVALID_TYPE,
        _ => return Err(standard),
    };
    Err(ConnectorError::with_status(mapped, response.status))
}

/// The first page of a SOQL query on `endpoint` (`query` or `queryAll`).
fn first_page(ctx: &mut Ctx<'_>, endpoint: &str, soql: &str) -> Result<HttpResponse, ConnectorError> {
    let request =
        HttpRequest::get(&format!("{API}/{endpoint}")).query("q", soql).header("sforce-query-options", QUERY_OPTIONS);
    check(ctx.http_get(&request)?)
}

/// The page at a `nextRecordsUrl`, which must be a path of the REST API.
fn next_page(ctx: &mut Ctx<'_>, url: &str) -> Result<HttpResponse, ConnectorError> {
    if !url.starts_with("/services/data/") || url.contains(['?', '#']) {
        return Err(ConnectorError::new(codes::BAD_JSON));
    }
    let request = HttpRequest::get(url).header("sforce-query-options", QUERY_OPTIONS);
    check(ctx.http_get(&request)?)
}

/// One page of a query: `{"totalSize","done","nextRecordsUrl"?,"records":[…]}`.
#[derive(Deserialize)]
struct QueryPage<'a, T> {
    done: bool,
    #[serde(rename = "nextRecordsUrl", borrow, default)]
    next_records_url: Option<Text<'a>>,
    records: Vec<T>,
}

impl<T> QueryPage<'_, T> {
    /// The next page's path, `None` when done; a page that is not done but names no next page
    /// is bad JSON (it would end the read early without saying so).
    fn next_records_url(&self) -> Option<Result<&str, ConnectorError>> {
        match (&self.next_records_url, self.done) {
            (_, true) => None,
            (Some(url), false) => Some(Ok(url.as_str())),
            (None, false) => Some(Err(ConnectorError::new(codes::BAD_JSON))),
        }
    }
}

/// The fields of an opportunity the connector selects; serde ignores `attributes`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Opportunity<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    owner_id: Option<Text<'a>>,
    #[serde(default)]
    is_won: Option<bool>,
    #[serde(default)]
    is_deleted: Option<bool>,
    #[serde(default)]
    amount: Option<Decimal>,
    #[serde(borrow, default)]
    currency_iso_code: Option<Text<'a>>,
    #[serde(borrow, default)]
    close_date: Option<Text<'a>>,
    #[serde(borrow, default)]
    system_modstamp: Option<Text<'a>>,
}

/// The fields of a task the connector selects.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Task<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    owner_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    task_subtype: Option<Text<'a>>,
    #[serde(default)]
    is_closed: Option<bool>,
    #[serde(default)]
    is_deleted: Option<bool>,
    #[serde(borrow, default)]
    completed_date_time: Option<Text<'a>>,
    #[serde(borrow, default)]
    activity_date: Option<Text<'a>>,
    #[serde(borrow, default)]
    system_modstamp: Option<Text<'a>>,
}

/// The fields of an event the connector selects.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    owner_id: Option<Text<'a>>,
    #[serde(default)]
    is_deleted: Option<bool>,
    #[serde(borrow, default)]
    start_date_time: Option<Text<'a>>,
    #[serde(borrow, default)]
    activity_date: Option<Text<'a>>,
    #[serde(borrow, default)]
    system_modstamp: Option<Text<'a>>,
}

/// A deleted record: its id and when it was deleted.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deleted<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(default)]
    is_deleted: Option<bool>,
    #[serde(borrow, default)]
    system_modstamp: Option<Text<'a>>,
}

/// A user of the roster.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct User<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    email: Option<Text<'a>>,
}

/// The field names of `sobjects/Opportunity/describe`; everything else is skipped.
#[derive(Deserialize)]
struct Describe<'a> {
    #[serde(borrow)]
    fields: Vec<FieldName<'a>>,
}

#[derive(Deserialize)]
struct FieldName<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

/// `SELECT DefaultCurrencyIsoCode FROM Organization`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Org<'a> {
    #[serde(borrow, default)]
    default_currency_iso_code: Option<Text<'a>>,
}

/// A time field (`2025-06-02T11:04:12.000+0000`) as epoch milliseconds, if present and valid.
fn time_of(field: &Option<Text<'_>>) -> Option<i64> {
    field.as_deref().and_then(|t| parse_timestamp(t).ok())
}

/// A date field (`2025-06-02`), if present and valid.
fn date_of(field: &Option<Text<'_>>) -> Option<CalendarDate> {
    field.as_deref().and_then(CalendarDate::parse)
}

/// An owner id, if present and not blank.
fn owner_of<'t>(field: &'t Option<Text<'_>>) -> Option<&'t str> {
    field.as_deref().filter(|o| !o.trim().is_empty())
}

/// A watermark as a SOQL datetime literal: whole seconds, UTC, unquoted
/// (`2025-06-01T00:00:00Z`). Flooring re-reads at most the rest of one second.
fn soql_datetime(epoch_ms: i64) -> String {
    format_rfc3339(epoch_ms - epoch_ms.rem_euclid(1000))
}

/// One object's reads: its SOQL pieces and cursor keys.
#[derive(Clone, Copy)]
struct Object {
    name: &'static str,
    since: &'static str,
    deleted_since: &'static str,
    /// When its deletions were last read completely (host time).
    bin_read_at: &'static str,
    /// What a first read asks for: only records that count.
    counted: &'static str,
    /// The metrics its records count for.
    metrics: &'static [&'static str],
}

const OPPORTUNITY: Object = Object {
    name: "Opportunity",
    since: OPPORTUNITIES_SINCE,
    deleted_since: OPPORTUNITIES_DELETED_SINCE,
    bin_read_at: OPPORTUNITIES_BIN_READ_AT,
    counted: "IsWon = true",
    metrics: &[DEALS_WON, REVENUE],
};
const TASK: Object = Object {
    name: "Task",
    since: TASKS_SINCE,
    deleted_since: TASKS_DELETED_SINCE,
    bin_read_at: TASKS_BIN_READ_AT,
    counted: "TaskSubtype = 'Call' AND IsClosed = true",
    metrics: &[CALLS],
};
const EVENT: Object = Object {
    name: "Event",
    since: EVENTS_SINCE,
    deleted_since: EVENTS_DELETED_SINCE,
    bin_read_at: EVENTS_BIN_READ_AT,
    counted: "",
    metrics: &[MEETINGS],
};

/// Which read a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Changed,
    Deleted,
}

/// Follows the `SystemModstamp`s of an ordered read: `safe` is the largest stamp all of whose
/// records have been seen, which is where a resumed read may start with `>`.
#[derive(Default)]
struct Tracker {
    last: Option<i64>,
    safe: Option<i64>,
}

impl Tracker {
    fn see(&mut self, stamp: Option<i64>) {
        let Some(stamp) = stamp else { return };
        match self.last {
            Some(last) if stamp > last => {
                self.safe = Some(last);
                self.last = Some(stamp);
            }
            None => self.last = Some(stamp),
            Some(_) => {}
        }
    }

    /// At the end of the read every record has been seen.
    fn finish(&mut self) {
        if self.last.is_some() {
            self.safe = self.last;
        }
    }
}

/// The state of one sync.
struct Run {
    /// The cursor as it advances; checkpointed after every page.
    cursor: Cursor,
    /// The currency of every amount in a single-currency org; `None` in a multi-currency org,
    /// where each record carries its own.
    org_currency: Option<String>,
    opportunities_read: i64,
    tasks_read: i64,
    events_read: i64,
    deleted_read: i64,
    skipped: i64,
    restarts: i64,
    resyncs: i64,
}

impl Run {
    fn new(since: Option<Cursor>) -> Self {
        Run {
            cursor: since.unwrap_or_default(),
            org_currency: None,
            opportunities_read: 0,
            tasks_read: 0,
            events_read: 0,
            deleted_read: 0,
            skipped: 0,
            restarts: 0,
            resyncs: 0,
        }
    }

    fn read_all(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        self.learn_currency(ctx)?;
        for object in [OPPORTUNITY, TASK, EVENT] {
            // Taken before reading: a deletion made during the read is still in the bin
            // [`TRUSTED_BIN_MS`] after this instant.
            let now = ctx.now();
            let first = self.cursor.get(object.since).is_none();
            if first {
                self.read(ctx, object, Read::Changed, true)?;
                // Nothing was counted before this read, so deletions matter from where it
                // ended (if it saw anything; else the next read is a first read again).
                if let Some(mark) = self.cursor.get(object.since)
                    && self.cursor.get(object.deleted_since).is_none()
                {
                    self.cursor.set(object.deleted_since, mark);
                }
            } else if self.bin_gap(object, now) {
                self.resync(ctx, object)?;
            } else {
                self.read(ctx, object, Read::Changed, false)?;
                self.read(ctx, object, Read::Deleted, false)?;
            }
            self.cursor.set(object.bin_read_at, now);
            ctx.checkpoint(&self.cursor)?;
        }
        Ok(())
    }

    /// Whether deletions of `object` may have left the recycle bin unread: its deletions were
    /// last read completely more than [`TRUSTED_BIN_MS`] ago, or when is unknown (a cursor
    /// kept before this was recorded). A first read that stopped midway has read no
    /// deletions yet and reads the whole bin when it resumes: no gap.
    fn bin_gap(&self, object: Object, now: i64) -> bool {
        match (self.cursor.get(object.bin_read_at), self.cursor.get(object.deleted_since)) {
            (Some(at), _) => now.saturating_sub(at) > TRUSTED_BIN_MS,
            (None, Some(_)) => true,
            (None, None) => false,
        }
    }

    /// Reads every record of `object` that counts inside a snapshot over all time, so the
    /// host retracts the object's facts that were not seen again: deletions that left the
    /// recycle bin unread are caught this way. Deletions are then read from where the read
    /// ended. A read that stops midway retracts nothing (the snapshot stays open) and the
    /// next sync starts the resync again.
    fn resync(&mut self, ctx: &mut Ctx<'_>, object: Object) -> Result<(), ConnectorError> {
        self.resyncs += 1;
        ctx.snapshot_begin(&SnapshotWindow::new(object.metrics, i64::MIN, i64::MAX))?;
        self.cursor.remove(object.since);
        self.read(ctx, object, Read::Changed, true)?;
        ctx.snapshot_end()?;
        match self.cursor.get(object.since) {
            Some(mark) => self.cursor.set(object.deleted_since, mark),
            // Nothing counts any more: the next sync starts as a first read.
            None => {
                self.cursor.remove(object.deleted_since);
            }
        }
        Ok(())
    }

    /// Multi-currency orgs have `Opportunity.CurrencyIsoCode`; single-currency orgs state
    /// their one currency on the organisation.
    fn learn_currency(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        let response = check(ctx.http_get(&HttpRequest::get(&format!("{API}/sobjects/Opportunity/describe")))?)?;
        let describe: Describe<'_> = response.json()?;
        if describe.fields.iter().any(|f| f.name == "CurrencyIsoCode") {
            self.org_currency = None;
            return Ok(());
        }
        let response = first_page(ctx, "query", "SELECT DefaultCurrencyIsoCode FROM Organization")?;
        let page: QueryPage<'_, Org<'_>> = response.json()?;
        let code = page.records.first().and_then(|o| o.default_currency_iso_code.as_deref());
        match code {
            Some(code) if Money::parse("0", code).is_ok() => {
                self.org_currency = Some(code.to_owned());
                Ok(())
            }
            _ => Err(ConnectorError::new(NO_ORG_CURRENCY)),
        }
    }

    /// The SOQL of one read from the watermark `since`.
    fn soql(&self, object: Object, read: Read, first: bool, since: Option<i64>) -> String {
        let fields = match (object.name, read) {
            (_, Read::Deleted) => "Id, IsDeleted, SystemModstamp",
            ("Opportunity", _) if self.org_currency.is_none() => {
                "Id, OwnerId, IsWon, Amount, CurrencyIsoCode, CloseDate, SystemModstamp"
            }
            ("Opportunity", _) => "Id, OwnerId, IsWon, Amount, CloseDate, SystemModstamp",
            ("Task", _) => "Id, OwnerId, TaskSubtype, IsClosed, CompletedDateTime, ActivityDate, SystemModstamp",
            _ => "Id, OwnerId, StartDateTime, ActivityDate, SystemModstamp",
        };
        let mut conditions = Vec::new();
        if read == Read::Deleted {
            conditions.push("IsDeleted = true".to_owned());
        } else if first && !object.counted.is_empty() {
            conditions.push(object.counted.to_owned());
        }
        if let Some(since) = since {
            conditions.push(format!("SystemModstamp > {}", soql_datetime(since)));
        }
        let mut soql = format!("SELECT {fields} FROM {}", object.name);
        if !conditions.is_empty() {
            soql.push_str(" WHERE ");
            soql.push_str(&conditions.join(" AND "));
        }
        soql.push_str(" ORDER BY SystemModstamp ASC");
        soql
    }

    /// Reads one object's changes or deletions from its watermark, page by page, checkpointing
    /// after each; restarts the query from the watermark when its locator expired.
    fn read(&mut self, ctx: &mut Ctx<'_>, object: Object, read: Read, first: bool) -> Result<(), ConnectorError> {
        let (endpoint, key) = match read {
            Read::Changed => ("query", object.since),
            Read::Deleted => ("queryAll", object.deleted_since),
        };
        let mut restarts = 0;
        let mut tracker = Tracker::default();
        'restart: loop {
            let soql = self.soql(object, read, first, self.cursor.get(key));
            let mut response = first_page(ctx, endpoint, &soql)?;
            loop {
                let next = self.page(ctx, object, read, first, &response, &mut tracker)?;
                if next.is_none() {
                    tracker.finish();
                }
                if let Some(safe) = tracker.safe {
                    self.cursor.advance(key, safe);
                }
                ctx.checkpoint(&self.cursor)?;
                let Some(next) = next else {
                    return Ok(());
                };
                response = match next_page(ctx, &next) {
                    Err(error) if error.is(INVALID_QUERY_LOCATOR) => {
                        if restarts == MAX_RESTARTS {
                            return Err(ConnectorError::with_status(QUERY_LOCATOR_LOST, 400));
                        }
                        restarts += 1;
                        self.restarts += 1;
                        continue 'restart;
                    }
                    other => other?,
                };
            }
        }
    }

    /// Handles one page and returns the next page's path.
    fn page(
        &mut self,
        ctx: &mut Ctx<'_>,
        object: Object,
        read: Read,
        first: bool,
        response: &HttpResponse,
        tracker: &mut Tracker,
    ) -> Result<Option<String>, ConnectorError> {
        match (object.name, read) {
            (_, Read::Deleted) => {
                let page: QueryPage<'_, Deleted<'_>> = response.skim_json()?;
                for record in &page.records {
                    self.deleted_read += 1;
                    tracker.see(time_of(&record.system_modstamp));
                    if record.is_deleted != Some(true) {
                        // Only what the recycle bin holds is retracted, whatever else comes.
                        continue;
                    }
                    for metric in object.metrics {
                        ctx.push(KpiChange::retract(*metric, record.id.as_str()))?;
                    }
                }
                next_of(&page)
            }
            ("Opportunity", _) => {
                let page: QueryPage<'_, Opportunity<'_>> = response.skim_json()?;
                for record in &page.records {
                    self.opportunities_read += 1;
                    tracker.see(time_of(&record.system_modstamp));
                    self.opportunity(ctx, record, first)?;
                }
                next_of(&page)
            }
            ("Task", _) => {
                let page: QueryPage<'_, Task<'_>> = response.skim_json()?;
                for record in &page.records {
                    self.tasks_read += 1;
                    tracker.see(time_of(&record.system_modstamp));
                    self.task(ctx, record, first)?;
                }
                next_of(&page)
            }
            _ => {
                let page: QueryPage<'_, Event<'_>> = response.skim_json()?;
                for record in &page.records {
                    self.events_read += 1;
                    tracker.see(time_of(&record.system_modstamp));
                    self.event(ctx, record, first)?;
                }
                next_of(&page)
            }
        }
    }

    /// Both facts of a won opportunity, or their retraction once it is not won.
    fn opportunity(&mut self, ctx: &mut Ctx<'_>, o: &Opportunity<'_>, first: bool) -> Result<(), ConnectorError> {
        let id = o.id.as_str();
        let won = o.is_won == Some(true) && o.is_deleted != Some(true);
        let credit = if won { owner_of(&o.owner_id).zip(date_of(&o.close_date)) } else { None };
        let Some((owner, closed)) = credit else {
            if won {
                self.skipped += 1;
            }
            if !first {
                ctx.push(KpiChange::retract(DEALS_WON, id))?;
                ctx.push(KpiChange::retract(REVENUE, id))?;
            }
            return Ok(());
        };
        let at = OccurredAt::Date(closed);
        ctx.push(KpiChange::count(DEALS_WON, owner, id, at, 1))?;
        let currency = self.org_currency.as_deref().or(o.currency_iso_code.as_deref());
        let revenue = match (o.amount, currency) {
            (Some(amount), Some(currency)) => match Money::from_decimal(amount, currency) {
                Ok(money) => Some(money),
                Err(_) => {
                    self.skipped += 1;
                    None
                }
            },
            // No amount: won, but no revenue to count.
            (None, _) => None,
            (Some(_), None) => {
                self.skipped += 1;
                None
            }
        };
        match revenue {
            Some(money) => ctx.push(KpiChange::money(REVENUE, owner, id, at, money)),
            None if !first => ctx.push(KpiChange::retract(REVENUE, id)),
            None => Ok(()),
        }
    }

    /// The fact of a closed call, or its retraction once it is not one.
    fn task(&mut self, ctx: &mut Ctx<'_>, t: &Task<'_>, first: bool) -> Result<(), ConnectorError> {
        let id = t.id.as_str();
        let counted =
            t.task_subtype.as_deref() == Some("Call") && t.is_closed == Some(true) && t.is_deleted != Some(true);
        let at = time_of(&t.completed_date_time)
            .map(OccurredAt::Instant)
            .or_else(|| date_of(&t.activity_date).map(OccurredAt::Date));
        match (counted, owner_of(&t.owner_id), at) {
            (true, Some(owner), Some(at)) => ctx.push(KpiChange::count(CALLS, owner, id, at, 1)),
            (counted, _, _) => {
                if counted {
                    self.skipped += 1;
                }
                if first { Ok(()) } else { ctx.push(KpiChange::retract(CALLS, id)) }
            }
        }
    }

    /// The fact of an event, or its retraction once it is deleted.
    fn event(&mut self, ctx: &mut Ctx<'_>, e: &Event<'_>, first: bool) -> Result<(), ConnectorError> {
        let id = e.id.as_str();
        let at = time_of(&e.start_date_time)
            .map(OccurredAt::Instant)
            .or_else(|| date_of(&e.activity_date).map(OccurredAt::Date));
        match (e.is_deleted != Some(true), owner_of(&e.owner_id), at) {
            (true, Some(owner), Some(at)) => ctx.push(KpiChange::count(MEETINGS, owner, id, at, 1)),
            (live, _, _) => {
                if live {
                    self.skipped += 1;
                }
                if first { Ok(()) } else { ctx.push(KpiChange::retract(MEETINGS, id)) }
            }
        }
    }
}

/// The next page's path of a page, owned.
fn next_of<T>(page: &QueryPage<'_, T>) -> Result<Option<String>, ConnectorError> {
    page.next_records_url().transpose().map(|next| next.map(str::to_owned))
}
