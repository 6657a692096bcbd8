//! The Bullhorn connector: placements, placement fees and job submissions, read from
//! Bullhorn's REST API, as anonymised KPI changes.
//!
//! What it counts (see `contract.md`):
//!
//! * for each `Placement`: `placements` 1 and `placement_fees` at `dateAdded`, credited to
//!   `owner.id`, both under the placement id. The fee is `flatFee` where it is above zero,
//!   else `fee × salary` (`fee` is a fraction: 0.22 is 22 %), computed exactly in decimal, in
//!   the integration's `currency` setting (Bullhorn records no currency on a placement). A
//!   placement with neither a positive flat fee nor a positive `fee × salary` counts as a
//!   placement without a fee: its `placement_fees` fact is retracted.
//! * for each `JobSubmission`: `submissions` 1 at `dateAdded`, credited to `sendingUser.id`,
//!   whatever its status; `isDeleted = true` retracts it.
//!
//! How it reads: the host does the OAuth refresh and the REST login, and sends every request
//! to the session's `restUrl` with its `BhRestToken` (logging in again on a 401). The
//! connector asks only for the fields it needs (never candidates, contacts or names):
//!
//! 1. `query/Placement` and `query/JobSubmission` (JPQL, where timestamps are epoch ms) with
//!    `where=dateLastModified>=<watermark − 5 min> AND dateLastModified<<sync start>`, sorted
//!    by `dateLastModified`, 500 to a page, `start += count` until `start >= total` or an
//!    empty page. The first sync reads everything before its start. The fixed upper bound
//!    keeps the paged set still while records change during the read (they are read next
//!    time); the five-minute overlap catches records whose change committed late. After every
//!    page the cursor keeps the largest `dateLastModified` seen per entity and is
//!    checkpointed; re-reading the overlap is harmless because upserts replace.
//! 2. Hard deletes: Bullhorn deletes placements outright and the API has no delete feed for
//!    them (only event subscriptions, which would need a subscription created with write
//!    rights). So every sync ends with a *snapshot*: it declares to the host that what follows
//!    is every `placements` and `placement_fees` fact whose `dateAdded` lies in
//!    `[now − snapshot_days, now + 1 day)` (`snapshot_days` defaults to 90), reads every
//!    placement added in that window (`where=dateAdded>=… AND dateAdded<… AND id>…`, keyset
//!    paging by id, so a deletion during the read cannot shift a record out of sight),
//!    upserts each one, closes the snapshot and checkpoints. The host then retracts the facts
//!    of that window it did not see. Running it on every sync is the simplest correct
//!    choice: the window is a few pages for any agency. A placement deleted after it left
//!    the window keeps its facts.
//!
//! When Bullhorn keeps answering 429 after the host's retries (it documents "wait 1 second
//! then retry"), the sync ends as *budget exhausted*: everything up to the last checkpoint is
//! kept, an open snapshot retracts nothing, and the next sync resumes from the cursor, not
//! before five minutes from now.
//!
//! Only ids, numbers, times and the configured currency leave the connector; the roster's
//! e-mails go to the host to be compared, never kept.

#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use oneup_connector_sdk::json::Text;
use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Currency, Cursor, Decimal, Descriptor, HttpResponse, KpiChange,
    LogLevel, MetricKind, Money, RosterEntry, Setting, SnapshotWindow, SyncOutcome, codes,
};
use serde::Deserialize;

/// The connector.
pub struct Bullhorn;

oneup_connector_sdk::export_connector!(Bullhorn);

/// Metric: placements, one per placement.
pub const PLACEMENTS: &str = "placements";
/// Metric: placement fees, in the configured currency.
pub const PLACEMENT_FEES: &str = "placement_fees";
/// Metric: job submissions.
pub const SUBMISSIONS: &str = "submissions";

/// Cursor key: the largest `dateLastModified` of the placements read, epoch ms.
pub const PLACEMENTS_SINCE: &str = "placements_since_ms";
/// Cursor key: the largest `dateLastModified` of the job submissions read, epoch ms.
pub const SUBMISSIONS_SINCE: &str = "submissions_since_ms";

/// Log code: the summary of a sync, with the counts below as fields.
pub const SYNC_SUMMARY: &str = "sync_summary";
/// Log code and field: placements read by the incremental read.
pub const PLACEMENTS_READ: &str = "placements_read";
/// Log code and field: job submissions read.
pub const SUBMISSIONS_READ: &str = "submissions_read";
/// Log code and field: placements read for the snapshot window.
pub const SNAPSHOT_READ: &str = "snapshot_read";
/// Log code and field: records that could not be counted (no owner or no `dateAdded`);
/// their facts are retracted.
pub const RECORDS_SKIPPED: &str = "records_skipped";
/// Log code: Bullhorn kept rate-limiting; the next sync resumes from the cursor.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// Config key: the OAuth server (the host refreshes tokens at `<auth_url>/token`).
pub const AUTH_URL: &str = "auth_url";
/// Config key: the REST login server (the host logs in at `<login_url>/login`).
pub const LOGIN_URL: &str = "login_url";
/// Config key: the ISO 4217 currency of placement fees.
pub const CURRENCY: &str = "currency";
/// Config key: how many days back the snapshot of placements reaches (default 90).
pub const SNAPSHOT_DAYS: &str = "snapshot_days";

/// Bullhorn's largest page.
const PAGE: u64 = 500;
/// How far before the watermark an incremental read starts again.
const OVERLAP_MS: i64 = 5 * 60_000;
/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// The longest snapshot window accepted, in days.
const MAX_SNAPSHOT_DAYS: i64 = 3650;
/// How long after a rate-limited sync the next may start.
const RATE_LIMIT_PAUSE_MS: i64 = 5 * 60_000;

/// The fields of a placement the connector reads.
const PLACEMENT_FIELDS: &str = "id,dateAdded,dateLastModified,salary,fee,flatFee,owner(id)";
/// The fields of a job submission the connector reads.
const SUBMISSION_FIELDS: &str = "id,dateAdded,dateLastModified,isDeleted,sendingUser(id)";

impl Connector for Bullhorn {
    fn describe() -> Descriptor {
        Descriptor::new("bullhorn", env!("CARGO_PKG_VERSION"))
            .with_config(Setting::with_default(AUTH_URL, "https://auth.bullhornstaffing.com/oauth"))
            .with_config(Setting::with_default(LOGIN_URL, "https://rest.bullhornstaffing.com/rest-services"))
            .with_config(Setting::required(CURRENCY))
            .with_config(Setting::with_default(SNAPSHOT_DAYS, "90"))
            .with_secret(Setting::required("client_id"))
            .with_secret(Setting::required("client_secret"))
            .with_secret(Setting::required("refresh_token"))
            .with_base_url_key(LOGIN_URL)
            .with_allowed_host("*.bullhornstaffing.com")
            .with_auth(AuthScheme::bullhorn_session(AUTH_URL, LOGIN_URL))
            .with_metric(PLACEMENTS, MetricKind::Count)
            .with_metric(PLACEMENT_FEES, MetricKind::Money)
            .with_metric(SUBMISSIONS, MetricKind::Count)
            .with_cursor_keys(&[PLACEMENTS_SINCE, SUBMISSIONS_SINCE])
            .with_log_codes(&[
                SYNC_SUMMARY,
                PLACEMENTS_READ,
                SUBMISSIONS_READ,
                SNAPSHOT_READ,
                RECORDS_SKIPPED,
                BUDGET_EXHAUSTED,
            ])
            .with_sync_interval_secs(900)
    }

    fn sync(ctx: &mut Ctx<'_>, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        let currency = currency(ctx)?;
        let snapshot_days = snapshot_days(ctx)?;
        let now = ctx.now();
        let mut run = Run::new(now, since, currency);
        let read = run
            .placements(ctx)
            .and_then(|()| run.submissions(ctx))
            .and_then(|()| run.snapshot(ctx, now - snapshot_days * DAY_MS, now + DAY_MS));
        let outcome = match read {
            Ok(()) => SyncOutcome::Complete,
            Err(error) if error.is(codes::HTTP_RATE_LIMITED) => {
                ctx.log(LogLevel::Warn, BUDGET_EXHAUSTED, &[]);
                SyncOutcome::BudgetExhausted { resume_at: Some(now + RATE_LIMIT_PAUSE_MS) }
            }
            Err(error) => return Err(error),
        };
        ctx.log(
            LogLevel::Info,
            SYNC_SUMMARY,
            &[
                (PLACEMENTS_READ, run.placements_read),
                (SUBMISSIONS_READ, run.submissions_read),
                (SNAPSHOT_READ, run.snapshot_read),
                (RECORDS_SKIPPED, run.skipped.len() as i64),
            ],
        );
        Ok(outcome)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        let mut roster = Vec::new();
        let mut start = 0u64;
        loop {
            let start_text = start.to_string();
            let response = ctx.get(
                "/query/CorporateUser",
                &[
                    ("where", "isDeleted=false"),
                    ("fields", "id,email"),
                    ("orderBy", "id"),
                    ("start", &start_text),
                    ("count", "500"),
                    ("showTotalMatched", "true"),
                ],
            )?;
            let page: Page<User<'_>> = response.json()?;
            for user in &page.data {
                if let Some(email) = user.email.as_deref().map(str::trim)
                    && !email.is_empty()
                {
                    roster.push(RosterEntry::new(user.id, email));
                }
            }
            match page.next_start(start) {
                Some(next) => start = next,
                None => return Ok(roster),
            }
        }
    }
}

/// The configured currency, upper-cased; not three letters is [`codes::BAD_CONFIG`].
fn currency(ctx: &mut Ctx<'_>) -> Result<Currency, ConnectorError> {
    let text = ctx.require_config(CURRENCY)?;
    Currency::parse(&text.trim().to_ascii_uppercase()).map_err(|_| ConnectorError::new(codes::BAD_CONFIG))
}

/// The snapshot window's length in days: 1 to 3650, else [`codes::BAD_CONFIG`].
fn snapshot_days(ctx: &mut Ctx<'_>) -> Result<i64, ConnectorError> {
    let text = ctx.config(SNAPSHOT_DAYS).unwrap_or_else(|| "90".to_owned());
    match text.trim().parse::<i64>() {
        Ok(days @ 1..=MAX_SNAPSHOT_DAYS) => Ok(days),
        _ => Err(ConnectorError::new(codes::BAD_CONFIG)),
    }
}

/// One page of a `query` answer: `{"total", "start", "count", "data"}` (`total` only with
/// `showTotalMatched=true`).
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Page<T> {
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

impl<T> Page<T> {
    /// Where the next page starts after this one (fetched at `start`), or `None` at the end:
    /// after an empty page, or once `start + count` reaches `total` (or, without a total, a
    /// short page).
    fn next_start(&self, start: u64) -> Option<u64> {
        let count = self.count.unwrap_or(self.data.len() as u64);
        if count == 0 {
            return None;
        }
        let next = start + count;
        match self.total {
            Some(total) if next >= total => None,
            None if count < PAGE => None,
            _ => Some(next),
        }
    }
}

/// A to-one association as the connector asks for it: `{"id": …}`.
#[derive(Deserialize)]
struct Ref {
    id: Option<i64>,
}

/// The fields of a placement the connector reads; serde skips anything else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placement {
    id: i64,
    date_added: Option<i64>,
    date_last_modified: Option<i64>,
    salary: Option<Decimal>,
    fee: Option<Decimal>,
    flat_fee: Option<Decimal>,
    owner: Option<Ref>,
}

impl Placement {
    /// The fee in micros: `flatFee` above zero, else `fee × salary` when positive.
    fn fee_micros(&self) -> Option<i64> {
        if let Some(flat) = self.flat_fee
            && flat.micros() > 0
        {
            return Some(flat.micros());
        }
        let product = i128::from(self.salary?.micros()) * i128::from(self.fee?.micros());
        // Micros × micros are 10⁻¹² units: back to micros, rounding half away from zero.
        let micros = (product + 500_000 * product.signum()) / 1_000_000;
        i64::try_from(micros).ok().filter(|m| *m > 0)
    }
}

/// The fields of a job submission the connector reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Submission {
    id: i64,
    date_added: Option<i64>,
    date_last_modified: Option<i64>,
    is_deleted: Option<bool>,
    sending_user: Option<Ref>,
}

/// The fields of a corporate user the roster reads.
#[derive(Deserialize)]
struct User<'a> {
    id: i64,
    #[serde(borrow)]
    email: Option<Text<'a>>,
}

/// The state of one sync.
struct Run {
    cursor: Cursor,
    /// Whether this is the first sync, when no fact of this integration exists yet.
    first_run: bool,
    currency: Currency,
    /// The sync's start: incremental reads stop before it.
    until: i64,
    /// On the first sync, what was upserted so far: only that can need a retract.
    upserted_placements: BTreeSet<i64>,
    upserted_fees: BTreeSet<i64>,
    upserted_submissions: BTreeSet<i64>,
    /// Per entity, the `dateLastModified` of each record handled in this read (dedupes the
    /// same version of a record seen twice while paging).
    handled: BTreeMap<(&'static str, i64), i64>,
    placements_read: i64,
    submissions_read: i64,
    snapshot_read: i64,
    /// The records that could not be counted, by entity and id.
    skipped: BTreeSet<(&'static str, i64)>,
}

impl Run {
    fn new(now: i64, since: Option<Cursor>, currency: Currency) -> Self {
        Run {
            first_run: since.is_none(),
            cursor: since.unwrap_or_default(),
            currency,
            until: now,
            upserted_placements: BTreeSet::new(),
            upserted_fees: BTreeSet::new(),
            upserted_submissions: BTreeSet::new(),
            handled: BTreeMap::new(),
            placements_read: 0,
            submissions_read: 0,
            snapshot_read: 0,
            skipped: BTreeSet::new(),
        }
    }

    /// The `where` of an incremental read from the watermark under `key`.
    fn changed_since(&self, key: &str) -> String {
        match self.cursor.get(key) {
            Some(mark) => format!("dateLastModified>={} AND dateLastModified<{}", mark - OVERLAP_MS, self.until),
            None => format!("dateLastModified<{}", self.until),
        }
    }

    /// Reads every page of `query/{entity}` for `where_` with `start`/`count` paging, hands
    /// each answer and its `start` to `on_page`, which returns where the next page starts
    /// (see [`Page::next_start`]), and checkpoints after each page.
    fn read_changed<F>(
        &mut self,
        ctx: &mut Ctx<'_>,
        entity: &str,
        where_: &str,
        fields: &str,
        mut on_page: F,
    ) -> Result<(), ConnectorError>
    where
        F: FnMut(&mut Self, &mut Ctx<'_>, &HttpResponse, u64) -> Result<Option<u64>, ConnectorError>,
    {
        let path = format!("/query/{entity}");
        let mut start = 0u64;
        loop {
            let start_text = start.to_string();
            let response = ctx.get(
                &path,
                &[
                    ("where", where_),
                    ("fields", fields),
                    ("orderBy", "dateLastModified"),
                    ("start", &start_text),
                    ("count", "500"),
                    ("showTotalMatched", "true"),
                ],
            )?;
            let next = on_page(self, ctx, &response, start)?;
            ctx.checkpoint(&self.cursor)?;
            match next {
                Some(next) => start = next,
                None => return Ok(()),
            }
        }
    }

    /// Reads every placement changed since the watermark.
    fn placements(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        let where_ = self.changed_since(PLACEMENTS_SINCE);
        self.read_changed(ctx, "Placement", &where_, PLACEMENT_FIELDS, |run, ctx, response, start| {
            let page: Page<Placement> = response.skim_json()?;
            for placement in &page.data {
                run.placements_read += 1;
                if let Some(modified) = placement.date_last_modified {
                    run.cursor.advance(PLACEMENTS_SINCE, modified);
                    if run.handled.insert(("Placement", placement.id), modified) == Some(modified) {
                        continue;
                    }
                }
                run.placement(ctx, placement)?;
            }
            Ok(page.next_start(start))
        })
    }

    /// Reads every job submission changed since the watermark.
    fn submissions(&mut self, ctx: &mut Ctx<'_>) -> Result<(), ConnectorError> {
        let where_ = self.changed_since(SUBMISSIONS_SINCE);
        self.read_changed(ctx, "JobSubmission", &where_, SUBMISSION_FIELDS, |run, ctx, response, start| {
            let page: Page<Submission> = response.skim_json()?;
            for submission in &page.data {
                run.submissions_read += 1;
                if let Some(modified) = submission.date_last_modified {
                    run.cursor.advance(SUBMISSIONS_SINCE, modified);
                    if run.handled.insert(("JobSubmission", submission.id), modified) == Some(modified) {
                        continue;
                    }
                }
                run.submission(ctx, submission)?;
            }
            Ok(page.next_start(start))
        })
    }

    /// Declares a snapshot of the placements added in `[from, to)`, reads and upserts every
    /// one of them, closes the snapshot and checkpoints, so that the host retracts the facts
    /// of deleted placements in the window.
    fn snapshot(&mut self, ctx: &mut Ctx<'_>, from: i64, to: i64) -> Result<(), ConnectorError> {
        ctx.snapshot_begin(&SnapshotWindow::new(&[PLACEMENTS, PLACEMENT_FEES], from, to))?;
        let mut after = 0i64;
        loop {
            let where_ = format!("dateAdded>={from} AND dateAdded<{to} AND id>{after}");
            let response = ctx.get(
                "/query/Placement",
                &[
                    ("where", &where_),
                    ("fields", PLACEMENT_FIELDS),
                    ("orderBy", "id"),
                    ("start", "0"),
                    ("count", "500"),
                    ("showTotalMatched", "true"),
                ],
            )?;
            let page: Page<Placement> = response.skim_json()?;
            for placement in &page.data {
                self.snapshot_read += 1;
                if placement.id <= after {
                    // Not sorted by id as asked: keyset paging would loop.
                    return Err(ConnectorError::with_status(codes::BAD_JSON, response.status));
                }
                after = placement.id;
                self.placement(ctx, placement)?;
            }
            if page.next_start(0).is_none() {
                break;
            }
        }
        ctx.snapshot_end()?;
        ctx.checkpoint(&self.cursor)
    }

    /// The changes one placement makes: both facts (or the count alone, without a fee), or
    /// retracts when it cannot be credited.
    fn placement(&mut self, ctx: &mut Ctx<'_>, placement: &Placement) -> Result<(), ConnectorError> {
        let may_exist = !self.first_run || self.upserted_placements.contains(&placement.id);
        let owner = placement.owner.as_ref().and_then(|o| o.id);
        let Some((owner, at)) = owner.zip(placement.date_added) else {
            self.skipped.insert(("Placement", placement.id));
            if may_exist {
                ctx.push(KpiChange::retract(PLACEMENTS, placement.id))?;
                ctx.push(KpiChange::retract(PLACEMENT_FEES, placement.id))?;
                self.upserted_placements.remove(&placement.id);
                self.upserted_fees.remove(&placement.id);
            }
            return Ok(());
        };
        ctx.push(KpiChange::count(PLACEMENTS, owner, placement.id, at, 1))?;
        match placement.fee_micros() {
            Some(micros) => {
                let fee = Money::new(micros, self.currency);
                ctx.push(KpiChange::money(PLACEMENT_FEES, owner, placement.id, at, fee))?;
                if self.first_run {
                    self.upserted_fees.insert(placement.id);
                }
            }
            None if !self.first_run || self.upserted_fees.remove(&placement.id) => {
                ctx.push(KpiChange::retract(PLACEMENT_FEES, placement.id))?;
            }
            None => {}
        }
        if self.first_run {
            self.upserted_placements.insert(placement.id);
        }
        Ok(())
    }

    /// The change one job submission makes: its fact while it is not deleted.
    fn submission(&mut self, ctx: &mut Ctx<'_>, submission: &Submission) -> Result<(), ConnectorError> {
        let may_exist = !self.first_run || self.upserted_submissions.contains(&submission.id);
        let sender = submission.sending_user.as_ref().and_then(|u| u.id);
        let credit = sender.zip(submission.date_added).filter(|_| submission.is_deleted != Some(true));
        let Some((sender, at)) = credit else {
            if submission.is_deleted != Some(true) {
                self.skipped.insert(("JobSubmission", submission.id));
            }
            if may_exist {
                ctx.push(KpiChange::retract(SUBMISSIONS, submission.id))?;
                self.upserted_submissions.remove(&submission.id);
            }
            return Ok(());
        };
        ctx.push(KpiChange::count(SUBMISSIONS, sender, submission.id, at, 1))?;
        if self.first_run {
            self.upserted_submissions.insert(submission.id);
        }
        Ok(())
    }
}
