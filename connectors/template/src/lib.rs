//! A complete minimal oneup connector, meant to be copied.
//!
//! It reads an imaginary but typical CRM, "Example CRM", whose API is:
//!
//! * `GET /api/v1/deals?modified_since=<epoch ms>&page=<n>&per_page=200`, answering
//!   `{"items": [{"id", "owner_id", "stage", "amount", "currency", "closed_at",
//!   "modified_at", "title", …}], "next_page": <n> | null}`, sorted by `modified_at`
//!   ascending; `modified_since` is inclusive;
//! * `GET /api/v1/users?page=<n>`, answering `{"items": [{"id", "email", "name"}],
//!   "next_page": …}`;
//! * authentication by the header `x-api-key`; 429 when rate-limited.
//!
//! What it emits: for each deal in stage `won`, `deals_won` 1 and `revenue` (`amount` in
//! `currency`) at `closed_at`, credited to `owner_id`; a deal that leaves `won` retracts
//! both. That is the whole pattern of every oneup connector: read what changed since a
//! watermark, turn each record into upserts or retractions keyed by the record's id,
//! checkpoint the watermark after each page.
//!
//! Copy it with `cp -r connectors/template connectors/<yours>`, then follow
//! `docs/writing-a-connector.md`.

// Every public item documented: the descriptor is what an operator reviews.
#![warn(missing_docs)]

use oneup_connector_sdk::time::parse_timestamp;
use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Cursor, Decimal, Descriptor, KpiChange, LogLevel, MetricKind, Money,
    RosterEntry, Setting, SyncOutcome, codes,
};
use serde::Deserialize;

/// The connector. It holds no state: the host creates a fresh instance for every sync, and
/// everything that must survive to the next sync goes into the cursor.
pub struct Template;

// Wires `Template` to the component's exports (`describe`, `sync`, `roster`). On native
// targets (tests) it expands to nothing.
oneup_connector_sdk::export_connector!(Template);

/// Metric: deals won, one per deal.
pub const DEALS_WON: &str = "deals_won";
/// Metric: the amount of won deals, in the deal's currency (the host converts).
pub const REVENUE: &str = "revenue";
/// Cursor key: the largest `modified_at` seen, epoch milliseconds. Cursors hold only
/// numbers under keys declared in the descriptor.
pub const MODIFIED_SINCE: &str = "modified_since_ms";
/// Log code: the summary of a sync; also a field name of it.
pub const DEALS_READ: &str = "deals_read";
/// Log code (and field): records that could not be counted (no owner, no date).
pub const SKIPPED: &str = "records_skipped";
/// Log code: the CRM's rate limit outlasted the host's retries.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// How many deals to ask for per page.
const PER_PAGE: &str = "200";

impl Connector for Template {
    fn describe() -> Descriptor {
        // `Descriptor::new` already declares the SDK's standard error codes.
        Descriptor::new("template", "0.1.0")
            // Non-secret settings; the base URL is one, and every request is relative to it.
            .with_config(Setting::required("base_url"))
            // Secrets are read by the host only; the connector names them and never sees them.
            .with_secret(Setting::required("api_key"))
            // The host sends the secret `api_key` in the header `x-api-key`.
            .with_auth(AuthScheme::api_key_header("x-api-key", "api_key"))
            // The hosts the base URL may name; the host refuses any other (https only).
            .with_allowed_host("*.example-crm.com")
            // Every metric this connector may emit, with its kind.
            .with_metric(DEALS_WON, MetricKind::Count)
            .with_metric(REVENUE, MetricKind::Money)
            // The closed vocabulary of log codes (and numeric field names) and cursor keys.
            .with_log_codes(&[DEALS_READ, SKIPPED, BUDGET_EXHAUSTED])
            .with_cursor_keys(&[MODIFIED_SINCE])
            // A default the operator can override per integration.
            .with_sync_interval_secs(900)
    }

    fn sync(ctx: &mut Ctx<'_>, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        // The first sync has no cursor and reads everything.
        let mut cursor = since.unwrap_or_default();
        let first_sync = cursor.get(MODIFIED_SINCE).is_none();
        let mut read = 0;
        let mut skipped = 0;
        // The read is one paged query from the watermark the sync started with; the cursor
        // advances as pages are done, so a sync that stops resumes from its last page.
        let watermark = cursor.get(MODIFIED_SINCE).unwrap_or(0).to_string();
        let mut page = 1u32;
        let outcome = loop {
            let page_number = page.to_string();
            let query = [("modified_since", watermark.as_str()), ("page", &page_number), ("per_page", PER_PAGE)];
            // A typed GET: a non-2xx answer or a body that is not this JSON is an error
            // whose code the SDK declared for us.
            let answer: Page<Deal> = match ctx.get_json("/api/v1/deals", &query) {
                Ok(answer) => answer,
                // The host already retried 429s with back-off; still limited means the
                // CRM's budget is spent: stop here, keep what was checkpointed.
                Err(error) if error.is(codes::HTTP_RATE_LIMITED) => {
                    ctx.log(LogLevel::Warn, BUDGET_EXHAUSTED, &[]);
                    break SyncOutcome::BudgetExhausted { resume_at: None };
                }
                Err(error) => return Err(error),
            };
            for deal in &answer.items {
                read += 1;
                if !deal_changes(ctx, deal, first_sync)? {
                    skipped += 1;
                }
                cursor.advance(MODIFIED_SINCE, deal.modified_at);
            }
            // Everything pushed so far is committed together with this cursor: a sync that
            // stops later resumes from here with nothing counted twice.
            ctx.checkpoint(&cursor)?;
            match answer.next_page {
                Some(next) if next > page => page = next,
                Some(_) => return Err(ConnectorError::new(codes::BAD_JSON)),
                None => break SyncOutcome::Complete,
            }
        };
        // Logs carry a declared code and numbers only, never text from the CRM.
        ctx.log(LogLevel::Info, DEALS_READ, &[(DEALS_READ, read), (SKIPPED, skipped)]);
        Ok(outcome)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        // The host compares these e-mails with the tenant's users and keeps none of them.
        let mut roster = Vec::new();
        let mut page = 1u32;
        loop {
            let page_number = page.to_string();
            let answer: Page<User> = ctx.get_json("/api/v1/users", &[("page", &page_number)])?;
            roster.extend(answer.items.into_iter().filter_map(|u| Some(RosterEntry::new(u.id, u.email?))));
            match answer.next_page {
                Some(next) if next > page => page = next,
                Some(_) => return Err(ConnectorError::new(codes::BAD_JSON)),
                None => return Ok(roster),
            }
        }
    }
}

/// Pushes the changes one deal makes; `false` when a won deal could not be counted.
fn deal_changes(ctx: &mut Ctx<'_>, deal: &Deal, first_sync: bool) -> Result<bool, ConnectorError> {
    let closed_at = deal.closed_at.as_deref().and_then(|t| parse_timestamp(t).ok());
    // A won deal with an owner and a date counts; anything else is not (or no longer) won.
    let credit = match (deal.stage.as_str(), deal.owner_id, closed_at) {
        ("won", Some(owner), Some(at)) => Some((owner, at)),
        _ => None,
    };
    let Some((owner, at)) = credit else {
        // A first sync has nothing to retract; later, a deal that left `won` retracts both
        // facts (retracting a fact that does not exist is harmless).
        if !first_sync {
            ctx.push(KpiChange::retract(DEALS_WON, deal.id))?;
            ctx.push(KpiChange::retract(REVENUE, deal.id))?;
        }
        return Ok(deal.stage != "won");
    };
    // Source ids and owners are the CRM's ids; the host replaces them by keyed hashes.
    ctx.push(KpiChange::count(DEALS_WON, owner, deal.id, at, 1))?;
    // Money is exact: a decimal string (or JSON number) to integer micro-units.
    match (&deal.amount, &deal.currency) {
        (Some(amount), Some(currency)) => match Money::from_decimal(*amount, currency) {
            Ok(money) => ctx.push(KpiChange::money(REVENUE, owner, deal.id, at, money))?,
            Err(_) => {
                ctx.push(KpiChange::retract(REVENUE, deal.id))?;
                return Ok(false);
            }
        },
        _ => ctx.push(KpiChange::retract(REVENUE, deal.id))?,
    }
    Ok(true)
}

/// One page of any list of Example CRM.
#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next_page: Option<u32>,
}

/// The fields of a deal the connector reads. Serde ignores every other field (titles,
/// notes, contacts…), so they never even become Rust strings.
#[derive(Deserialize)]
struct Deal {
    id: u64,
    owner_id: Option<u64>,
    stage: String,
    amount: Option<Decimal>,
    currency: Option<String>,
    closed_at: Option<String>,
    modified_at: i64,
}

/// A CRM user, for the roster.
#[derive(Deserialize)]
struct User {
    id: u64,
    email: Option<String>,
}
