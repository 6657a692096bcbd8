//! A fake Salesforce org: users, accounts, contacts, opportunities, tasks and events served
//! the way the REST API documents them (API v62.0), from memory.
//!
//! [`Crm`] is the pure core: a deterministic [`Dataset`], a logical clock, SOQL over `query`
//! and `queryAll` with `nextRecordsUrl` paging, `describe`, the `deleted` feed, the org's API
//! request allocation, mutations for tests, the expected KPI totals, the personal-data
//! canaries, injected faults and a request log. Sessions are the access tokens of a shared
//! [`TokenAuthority`] (the refresh-token grant of [`crate::oauth`], Salesforce's flavour: a
//! form body, no `expires_in`, the refresh token kept). [`Crm::respond_with_body`] answers one
//! HTTP request without IO; [`FakeSalesforce`] serves the API and the token endpoint on
//! loopback.
//!
//! Shapes follow `shared/crm-fixtures/salesforce/` and `shared/crm-apis.md` section 2,
//! including what a careless connector trips over: errors are JSON arrays of
//! `{"message","errorCode"}`; `query` never returns deleted rows and `queryAll` returns them
//! for 15 days; `CurrencyIsoCode` exists only in a multi-currency org (selecting it elsewhere is
//! `INVALID_FIELD`); datetime literals must be unquoted; an expired bearer is 401
//! `INVALID_SESSION_ID`; the daily allocation running out is 403 `REQUEST_LIMIT_EXCEEDED`, not
//! 429, with `Sforce-Limit-Info` on every answer; query locators expire.

mod api;
mod model;
mod soql;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use model::{Account, CURRENCIES, Contact, Dataset, DatasetSpec, Event, Opportunity, Organization, Task, User};

use crate::oauth::{FakeTokenServer, OAuthSettings, TokenAuthority};
use crate::server::FakeServer;
use crate::time::{DAY, Date, Timestamp};
use model::sf_id;

/// The API version the fake documents itself with (others from v31.0 are served too).
pub const API_VERSION: &str = "v62.0";

/// The token endpoint's path on the login host.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// How long deleted records stay in the recycle bin (visible to `queryAll` and `deleted`).
const RECYCLE_BIN_SECS: i64 = 15 * DAY;

/// The default daily API request allocation.
pub const DEFAULT_API_LIMIT: u64 = 100_000;

/// A fake Salesforce on loopback: the instance (REST API) on one port and the login host's
/// token endpoint on another, sharing one [`TokenAuthority`].
pub struct FakeSalesforce {
    api: FakeServer<Crm>,
    login: FakeTokenServer,
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl FakeSalesforce {
    /// Serves `dataset` on `127.0.0.1` on free ports, for a connected app with this client id
    /// and secret; a refresh token is issued at once (what the admin's consent would give).
    pub async fn start(dataset: Dataset, client_id: &str, client_secret: &str) -> anyhow::Result<Self> {
        let api = FakeServer::serve(Crm::new(dataset, TokenAuthority::new(OAuthSettings::salesforce("", "")))).await?;
        let org_id = api.with(|crm| crm.org.id.clone());
        let user_id = api.with(|crm| crm.users.first().map(|u| u.id.clone()).unwrap_or_default());
        let settings = OAuthSettings::salesforce(client_id, client_secret)
            .with_extra_field("instance_url", serde_json::Value::String(api.base_url()))
            .with_extra_field(
                "id",
                serde_json::Value::String(format!("https://login.salesforce.com/id/{org_id}/{user_id}")),
            );
        let authority = TokenAuthority::new(settings);
        let refresh_token = authority.issue_refresh_token();
        api.with(|crm| crm.authority = authority.clone());
        let login = FakeTokenServer::start(authority, TOKEN_PATH).await?;
        Ok(Self { api, login, client_id: client_id.to_owned(), client_secret: client_secret.to_owned(), refresh_token })
    }

    /// The instance URL, `http://127.0.0.1:PORT` (the `instance_url` to configure).
    pub fn base_url(&self) -> String {
        self.api.base_url()
    }

    /// The token endpoint, `http://127.0.0.1:PORT/services/oauth2/token` (the `token_url`).
    pub fn token_url(&self) -> String {
        self.login.url()
    }

    /// The authorisation endpoint beside the token endpoint,
    /// `http://127.0.0.1:PORT/services/oauth2/authorize`: it consents at once and redirects
    /// back with a code (PKCE S256 required).
    pub fn authorize_url(&self) -> String {
        format!("{}/services/oauth2/authorize", self.login.base_url())
    }

    /// The connected app's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The connected app's client secret.
    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The refresh token issued at start.
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// The authorisation server: expire or revoke tokens, inject token-endpoint faults, count
    /// refreshes.
    pub fn authority(&self) -> &TokenAuthority {
        self.login.authority()
    }

    /// Locks the org's state. Do not hold the guard across an `.await` that waits for the
    /// server.
    pub fn lock(&self) -> MutexGuard<'_, Crm> {
        self.api.lock()
    }

    /// Runs `f` with the org's state locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut Crm) -> R) -> R {
        self.api.with(f)
    }

    /// Stops both servers and waits for the API server.
    pub async fn shutdown(self) {
        drop(self.login);
        self.api.shutdown().await;
    }
}

impl fmt::Debug for FakeSalesforce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSalesforce").field("api", &self.api).field("login", &self.login).finish_non_exhaustive()
    }
}

/// A fault to inject into the next API requests that carry a valid session (faults of the
/// token endpoint are the [`TokenAuthority`]'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 403 `REQUEST_LIMIT_EXCEEDED` (the concurrency flavour: the allocation is not used up).
    RequestLimitExceeded,
    /// Every access token issued so far expires: this request and later ones with those
    /// tokens get 401 `INVALID_SESSION_ID` until a new token is fetched.
    SessionExpired,
    /// A server error with this status (500, 503, …).
    ServerError(u16),
    /// Answer normally, but only after this long.
    Delay(Duration),
}

/// One request as the fake saw it. Token-endpoint requests keep no query (it may carry
/// secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// 1 for the first request, then 2, 3, …
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`); empty for the token endpoint.
    pub query: String,
    /// The decoded SOQL of a `query`/`queryAll` request.
    pub soql: Option<String>,
    /// The `Sforce-Query-Options` header, if sent.
    pub query_options: Option<String>,
    /// Whether the request carried a valid session.
    pub session_ok: bool,
    /// The status answered.
    pub status: u16,
}

/// Why a mutation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrmError {
    /// No record with this id.
    UnknownRecord(String),
    /// The record is in the recycle bin.
    Deleted(String),
    /// No user with this id.
    UnknownUser(String),
    /// Not a finite, non-negative amount.
    InvalidAmount(String),
    /// Not a currency of the org.
    InvalidCurrency(String),
}

impl fmt::Display for CrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrmError::UnknownRecord(id) => write!(f, "no record {id}"),
            CrmError::Deleted(id) => write!(f, "record {id} is deleted"),
            CrmError::UnknownUser(id) => write!(f, "no user {id}"),
            CrmError::InvalidAmount(v) => write!(f, "invalid amount {v}"),
            CrmError::InvalidCurrency(c) => write!(f, "currency {c:?} is not one of the org's"),
        }
    }
}

impl std::error::Error for CrmError {}

/// An opportunity to add with [`Crm::add_opportunity`].
#[derive(Clone, Debug)]
pub struct NewOpportunity {
    /// The user credited with it.
    pub owner_id: String,
    /// Amount in major units (kept to the cent); `None` for no amount.
    pub amount: Option<f64>,
    /// ISO 4217 code (ignored in a single-currency org).
    pub currency: String,
    /// Won (closed), lost (closed) or open.
    pub won: Option<bool>,
    /// Close date (default: the clock's date).
    pub close_date: Option<Date>,
}

impl NewOpportunity {
    /// A won opportunity closed on `close_date`.
    pub fn won(owner_id: &str, amount: Option<f64>, currency: &str, close_date: Date) -> Self {
        Self {
            owner_id: owner_id.to_owned(),
            amount,
            currency: currency.to_owned(),
            won: Some(true),
            close_date: Some(close_date),
        }
    }

    /// An open opportunity.
    pub fn open(owner_id: &str, amount: Option<f64>, currency: &str) -> Self {
        Self { owner_id: owner_id.to_owned(), amount, currency: currency.to_owned(), won: None, close_date: None }
    }
}

/// A task to add with [`Crm::add_task`].
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The user credited with it.
    pub owner_id: String,
    /// `Call`, `Email` or `Task`.
    pub subtype: String,
    /// Completed.
    pub closed: bool,
    /// When it was completed (closed tasks; `None` leaves `CompletedDateTime` empty).
    pub completed: Option<Timestamp>,
    /// Due date (default: the completion's date, or the clock's).
    pub activity_date: Option<Date>,
}

impl NewTask {
    /// A call completed at `at`.
    pub fn call_completed(owner_id: &str, at: Timestamp) -> Self {
        Self {
            owner_id: owner_id.to_owned(),
            subtype: "Call".to_owned(),
            closed: true,
            completed: Some(at),
            activity_date: Some(at.date()),
        }
    }
}

/// What the connector should credit to one owner, computed from the fake's current data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerTotals {
    /// Won, not deleted opportunities.
    pub deals_won: u64,
    /// Their amounts by currency, in hundredths of the unit (yen too), amounts not set left out.
    pub revenue_cents: BTreeMap<String, i64>,
    /// Closed, not deleted tasks of subtype `Call`.
    pub calls: u64,
    /// Not deleted events.
    pub meetings: u64,
}

/// When a counted event happened: an instant, or a day (placed in the tenant's zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occurred {
    /// An instant.
    At(Timestamp),
    /// A whole day.
    On(Date),
}

/// One fact a correct connector holds (see [`Crm::expected_facts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedFact {
    /// The user credited.
    pub owner_id: String,
    /// `deals_won`, `revenue`, `calls` or `meetings`.
    pub metric: &'static str,
    /// The record behind it.
    pub source_id: String,
    /// When it happened.
    pub occurred: Occurred,
    /// For `revenue`: the currency and the amount in hundredths of its unit.
    pub revenue: Option<(String, i64)>,
}

#[derive(Debug)]
struct Locator {
    object: api::ObjectKind,
    fields: Vec<api::FieldRef>,
    rows: Vec<usize>,
    batch: usize,
}

#[derive(Debug, Default)]
struct Control {
    faults: VecDeque<Fault>,
    log: Vec<RequestRecord>,
    requests: u64,
    api_used: u64,
    /// API requests served since sessions last expired (for the session budget).
    since_expiry: u64,
    locators: BTreeMap<u64, Locator>,
    locators_issued: u64,
}

/// The fake Salesforce org: data, clock, sessions, limits, faults and request log.
#[derive(Debug)]
pub struct Crm {
    authority: TokenAuthority,
    org: Organization,
    users: Vec<User>,
    accounts: Vec<Account>,
    contacts: Vec<Contact>,
    opportunities: Vec<Opportunity>,
    tasks: Vec<Task>,
    events: Vec<Event>,
    now: Timestamp,
    /// The largest page served, whatever `batchSize` asks (Salesforce may send fewer).
    page_cap: usize,
    api_limit: u64,
    /// API requests after which every session expires; `None`: sessions last.
    session_budget: Option<u64>,
    control: Mutex<Control>,
}

impl Crm {
    /// Serves `dataset`, accepting the access tokens of `authority`.
    pub fn new(dataset: Dataset, authority: TokenAuthority) -> Self {
        let latest = [
            dataset.opportunities.iter().map(|o| o.system_modstamp).max(),
            dataset.tasks.iter().map(|t| t.system_modstamp).max(),
            dataset.events.iter().map(|e| e.system_modstamp).max(),
        ]
        .into_iter()
        .flatten()
        .max();
        let now = latest.map_or(dataset.now, |t| dataset.now.max(t.plus_secs(1)));
        let mut opportunities = dataset.opportunities;
        opportunities.sort_by(|a, b| a.id.cmp(&b.id));
        Self {
            authority,
            org: dataset.org,
            users: dataset.users,
            accounts: dataset.accounts,
            contacts: dataset.contacts,
            opportunities,
            tasks: dataset.tasks,
            events: dataset.events,
            now,
            page_cap: api::MAX_BATCH,
            api_limit: DEFAULT_API_LIMIT,
            session_budget: None,
            control: Mutex::new(Control::default()),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- sessions, limits and clock ----------------------------------------------------

    /// The authorisation server whose access tokens are accepted.
    pub fn authority(&self) -> &TokenAuthority {
        &self.authority
    }

    /// Issues an access token directly (for tests that call the API without the OAuth dance).
    pub fn issue_access_token(&self) -> String {
        self.authority.issue_access_token()
    }

    /// Ends every session: their tokens get 401 `INVALID_SESSION_ID`.
    pub fn expire_sessions(&self) {
        self.authority.expire_access_tokens();
    }

    /// Makes every session expire each time `requests` API requests have been served since
    /// the last expiry (`None`: sessions last until [`Crm::expire_sessions`]). A long sync
    /// then meets an expired token in the middle, as one does when the org's session timeout
    /// passes.
    pub fn set_session_budget(&mut self, requests: Option<u64>) {
        self.session_budget = requests;
        self.control().since_expiry = 0;
    }

    /// Sets the daily API request allocation; requests beyond it get 403
    /// `REQUEST_LIMIT_EXCEEDED`.
    pub fn set_api_limit(&mut self, limit: u64) {
        self.api_limit = limit;
    }

    /// API requests counted against the allocation so far.
    pub fn api_usage(&self) -> u64 {
        self.control().api_used
    }

    /// Starts a new day of the allocation: the usage goes back to zero.
    pub fn reset_api_usage(&self) {
        self.control().api_used = 0;
    }

    /// Serves at most `rows` records per page whatever `batchSize` asks (at least 1), so small
    /// datasets page too.
    pub fn set_page_cap(&mut self, rows: usize) {
        self.page_cap = rows.max(1);
    }

    /// Forgets every open query locator: the next `nextRecordsUrl` gets 400
    /// `INVALID_QUERY_LOCATOR`, as after 15 minutes of inactivity.
    pub fn expire_query_locators(&self) {
        self.control().locators.clear();
    }

    /// The fake's logical clock: later than every generated time; each mutation moves it one
    /// second on and stamps the changed record's `SystemModstamp` with it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Moves the clock forward.
    pub fn advance_clock(&mut self, by: Duration) {
        self.now = self.now.plus_secs(by.as_secs() as i64);
    }

    /// Moves the clock forward to `at` (never backward).
    pub fn set_clock(&mut self, at: Timestamp) {
        self.now = self.now.max(at);
    }

    fn tick(&mut self) -> Timestamp {
        self.now = self.now.plus_secs(1);
        self.now
    }

    // ----- reading the data ----------------------------------------------------------------

    /// The org.
    pub fn org(&self) -> &Organization {
        &self.org
    }

    /// Users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// Opportunities, deleted ones included, by id.
    pub fn opportunities(&self) -> &[Opportunity] {
        &self.opportunities
    }

    /// One opportunity.
    pub fn opportunity(&self, id: &str) -> Option<&Opportunity> {
        self.opportunities.iter().find(|o| o.id == id)
    }

    /// Tasks, deleted ones included.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Events, deleted ones included.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Contacts.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    /// Accounts.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Whether a deleted record is still in the recycle bin (visible to `queryAll`).
    fn in_recycle_bin(&self, deleted_at: Option<Timestamp>) -> bool {
        deleted_at.is_some_and(|at| at.unix() >= self.now.unix() - RECYCLE_BIN_SECS)
    }

    // ----- expected results ----------------------------------------------------------------

    /// What a correct connector credits to each user (by user id) over all time. Every user
    /// appears, with zeros where nothing counts.
    pub fn expected_totals(&self) -> BTreeMap<String, OwnerTotals> {
        let mut totals: BTreeMap<String, OwnerTotals> =
            self.users.iter().map(|u| (u.id.clone(), OwnerTotals::default())).collect();
        for fact in self.expected_facts() {
            let t = totals.entry(fact.owner_id).or_default();
            match (fact.metric, fact.revenue) {
                ("deals_won", _) => t.deals_won += 1,
                ("revenue", Some((currency, cents))) => *t.revenue_cents.entry(currency).or_default() += cents,
                ("calls", _) => t.calls += 1,
                ("meetings", _) => t.meetings += 1,
                _ => {}
            }
        }
        totals
    }

    /// [`Crm::expected_totals`] keyed by the users' e-mail addresses, lower-cased.
    pub fn expected_totals_by_email(&self) -> BTreeMap<String, OwnerTotals> {
        let mut by_id = self.expected_totals();
        self.users.iter().map(|u| (u.email.to_ascii_lowercase(), by_id.remove(&u.id).unwrap_or_default())).collect()
    }

    /// Every fact a correct connector holds: per won, not deleted opportunity `deals_won` on
    /// its `CloseDate` and, when it has an amount, `revenue` in its currency; per closed, not
    /// deleted call `calls` at `CompletedDateTime` (else on its `ActivityDate`); per not
    /// deleted event `meetings` at `StartDateTime`.
    pub fn expected_facts(&self) -> Vec<ExpectedFact> {
        let fact = |owner: &str, metric, source: &str, occurred, revenue| ExpectedFact {
            owner_id: owner.to_owned(),
            metric,
            source_id: source.to_owned(),
            occurred,
            revenue,
        };
        let mut facts = Vec::new();
        for o in self.opportunities.iter().filter(|o| o.is_won && o.deleted_at.is_none()) {
            let at = Occurred::On(o.close_date);
            facts.push(fact(&o.owner_id, "deals_won", &o.id, at, None));
            if let Some(cents) = o.amount_cents {
                facts.push(fact(&o.owner_id, "revenue", &o.id, at, Some((o.currency.clone(), cents))));
            }
        }
        for t in self.tasks.iter().filter(|t| t.is_closed_call()) {
            let at = match (t.completed, t.activity_date) {
                (Some(at), _) => Occurred::At(at),
                (None, Some(day)) => Occurred::On(day),
                (None, None) => continue,
            };
            facts.push(fact(&t.owner_id, "calls", &t.id, at, None));
        }
        for e in self.events.iter().filter(|e| e.deleted_at.is_none()) {
            facts.push(fact(&e.owner_id, "meetings", &e.id, Occurred::At(e.start), None));
        }
        facts
    }

    // ----- personal data -------------------------------------------------------------------

    /// Every personal-data string the fake serves: users' names and e-mails, contacts' names,
    /// e-mails and phones, account names, their invented stems and street addresses. Names,
    /// subjects, descriptions and locations are built only from these. Sorted, no duplicates.
    pub fn canaries(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.user_canaries().into_iter().collect();
        all.extend(self.contact_canaries());
        all.into_iter().collect()
    }

    /// The users' names and e-mails only (a tenant may register its salespeople under them).
    pub fn user_canaries(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.users.iter().flat_map(|u| [u.name(), u.email.clone()]).collect();
        set.into_iter().collect()
    }

    /// Personal data of third parties (contacts and accounts).
    pub fn contact_canaries(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for c in &self.contacts {
            set.extend([c.name(), c.first_name.clone(), c.last_name.clone(), c.email.clone(), c.phone.clone()]);
        }
        for a in &self.accounts {
            set.extend([a.name.clone(), a.stem.clone(), a.billing_street.clone()]);
        }
        set.into_iter().collect()
    }

    // ----- faults and the request log ------------------------------------------------------

    /// Makes the next `n` API requests with a valid session fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.control().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        self.control().faults.clear();
    }

    /// Every request so far (since the last [`Crm::clear_request_log`]).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.control().log.clone()
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.control().log.clear();
    }

    // ----- mutations -----------------------------------------------------------------------

    fn opportunity_index(&self, id: &str) -> Result<usize, CrmError> {
        let i = self.opportunities.iter().position(|o| o.id == id).ok_or_else(|| CrmError::UnknownRecord(id.into()))?;
        if self.opportunities[i].deleted_at.is_some() {
            return Err(CrmError::Deleted(id.to_owned()));
        }
        Ok(i)
    }

    fn change_opportunity(&mut self, id: &str, change: impl FnOnce(&mut Opportunity)) -> Result<(), CrmError> {
        let i = self.opportunity_index(id)?;
        let now = self.tick();
        let o = &mut self.opportunities[i];
        change(o);
        o.last_modified = now;
        o.system_modstamp = now;
        Ok(())
    }

    fn check_user(&self, id: &str) -> Result<(), CrmError> {
        self.users.iter().any(|u| u.id == id).then_some(()).ok_or_else(|| CrmError::UnknownUser(id.to_owned()))
    }

    fn check_currency(&self, code: &str) -> Result<(), CrmError> {
        let ok = if self.org.multi_currency { CURRENCIES.contains(&code) } else { code == self.org.default_currency };
        ok.then_some(()).ok_or_else(|| CrmError::InvalidCurrency(code.to_owned()))
    }

    /// Marks an opportunity `Closed Won` on `close_date`.
    pub fn mark_won(&mut self, id: &str, close_date: Date) -> Result<(), CrmError> {
        self.change_opportunity(id, |o| {
            o.stage_name = "Closed Won".to_owned();
            o.is_closed = true;
            o.is_won = true;
            o.close_date = close_date;
        })
    }

    /// Marks an opportunity `Closed Lost` today (a won one stops being won).
    pub fn mark_lost(&mut self, id: &str) -> Result<(), CrmError> {
        let today = self.now.date();
        self.change_opportunity(id, |o| {
            o.stage_name = "Closed Lost".to_owned();
            o.is_closed = true;
            o.is_won = false;
            o.close_date = today;
        })
    }

    /// Reopens an opportunity (stage `Negotiation/Review`).
    pub fn reopen(&mut self, id: &str) -> Result<(), CrmError> {
        self.change_opportunity(id, |o| {
            o.stage_name = "Negotiation/Review".to_owned();
            o.is_closed = false;
            o.is_won = false;
        })
    }

    /// Sets an opportunity's amount in major units (`None` clears it).
    pub fn set_amount(&mut self, id: &str, amount: Option<f64>) -> Result<(), CrmError> {
        let cents = amount.map(to_cents).transpose()?;
        self.change_opportunity(id, |o| o.amount_cents = cents)
    }

    /// Sets an opportunity's currency (one of [`CURRENCIES`] in a multi-currency org).
    pub fn set_currency(&mut self, id: &str, currency: &str) -> Result<(), CrmError> {
        self.check_currency(currency)?;
        self.change_opportunity(id, |o| o.currency = currency.to_owned())
    }

    /// Gives an opportunity to another user.
    pub fn reassign_opportunity(&mut self, id: &str, owner_id: &str) -> Result<(), CrmError> {
        self.check_user(owner_id)?;
        self.change_opportunity(id, |o| o.owner_id = owner_id.to_owned())
    }

    /// Deletes an opportunity: it leaves `query` and stays in `queryAll` (with
    /// `IsDeleted = true`) and the `deleted` feed for 15 days of the fake's clock.
    pub fn delete_opportunity(&mut self, id: &str) -> Result<(), CrmError> {
        let i = self.opportunity_index(id)?;
        let now = self.tick();
        let o = &mut self.opportunities[i];
        o.deleted_at = Some(now);
        o.system_modstamp = now;
        Ok(())
    }

    /// Restores a deleted opportunity from the recycle bin.
    pub fn undelete_opportunity(&mut self, id: &str) -> Result<(), CrmError> {
        let i = self.opportunities.iter().position(|o| o.id == id).ok_or_else(|| CrmError::UnknownRecord(id.into()))?;
        let now = self.tick();
        let o = &mut self.opportunities[i];
        o.deleted_at = None;
        o.system_modstamp = now;
        Ok(())
    }

    /// Adds an opportunity created now and returns its id.
    pub fn add_opportunity(&mut self, new: NewOpportunity) -> Result<String, CrmError> {
        self.check_user(&new.owner_id)?;
        let currency = if self.org.multi_currency { new.currency.clone() } else { self.org.default_currency.clone() };
        self.check_currency(&currency)?;
        let amount_cents = new.amount.map(to_cents).transpose()?;
        let n = 100_001 + self.opportunities.len() as u64;
        let contact = &self.contacts[self.opportunities.len() % self.contacts.len()];
        let account = self.accounts.iter().find(|a| a.id == contact.account_id).unwrap_or(&self.accounts[0]);
        let (name, account_id, contact_id) =
            (format!("{} - expansion ({})", account.name, contact.name()), account.id.clone(), contact.id.clone());
        let now = self.tick();
        let (stage, is_closed, is_won) = match new.won {
            Some(true) => ("Closed Won", true, true),
            Some(false) => ("Closed Lost", true, false),
            None => ("Prospecting", false, false),
        };
        let id = sf_id("006", n);
        self.opportunities.push(Opportunity {
            id: id.clone(),
            name,
            description: None,
            account_id,
            contact_id,
            amount_cents,
            currency,
            close_date: new.close_date.unwrap_or(now.date()),
            stage_name: stage.to_owned(),
            is_closed,
            is_won,
            owner_id: new.owner_id,
            created: now,
            last_modified: now,
            system_modstamp: now,
            deleted_at: None,
        });
        Ok(id)
    }

    fn task_index(&self, id: &str) -> Result<usize, CrmError> {
        let i = self.tasks.iter().position(|t| t.id == id).ok_or_else(|| CrmError::UnknownRecord(id.into()))?;
        if self.tasks[i].deleted_at.is_some() {
            return Err(CrmError::Deleted(id.to_owned()));
        }
        Ok(i)
    }

    /// Adds a task created now and returns its id.
    pub fn add_task(&mut self, new: NewTask) -> Result<String, CrmError> {
        self.check_user(&new.owner_id)?;
        let contact = &self.contacts[self.tasks.len() % self.contacts.len()];
        let subject = format!("{} with {}", new.subtype, contact.name());
        let description = Some(format!("Dialled {}.", contact.phone));
        let who = contact.id.clone();
        let now = self.tick();
        let id = sf_id("00T", 200_001 + self.tasks.len() as u64);
        self.tasks.push(Task {
            id: id.clone(),
            subject,
            status: if new.closed { "Completed" } else { "Not Started" }.to_owned(),
            is_closed: new.closed,
            activity_date: new.activity_date.or(new.completed.map(Timestamp::date)).or(Some(now.date())),
            completed: new.completed.filter(|_| new.closed),
            call_type: (new.subtype == "Call").then(|| "Outbound".to_owned()),
            call_duration_secs: None,
            subtype: new.subtype,
            description,
            owner_id: new.owner_id,
            who_id: Some(who),
            what_id: None,
            created: now,
            system_modstamp: now,
            deleted_at: None,
        });
        Ok(id)
    }

    /// Closes a task now (keeping an earlier completion time) or reopens it.
    pub fn set_task_closed(&mut self, id: &str, closed: bool) -> Result<(), CrmError> {
        let i = self.task_index(id)?;
        let now = self.tick();
        let t = &mut self.tasks[i];
        t.is_closed = closed;
        t.status = if closed { "Completed" } else { "In Progress" }.to_owned();
        t.completed = if closed { t.completed.or(Some(now)) } else { None };
        t.system_modstamp = now;
        Ok(())
    }

    /// Changes a task's subtype (`Call`, `Email`, `Task`).
    pub fn set_task_subtype(&mut self, id: &str, subtype: &str) -> Result<(), CrmError> {
        let i = self.task_index(id)?;
        let now = self.tick();
        let t = &mut self.tasks[i];
        t.subtype = subtype.to_owned();
        t.system_modstamp = now;
        Ok(())
    }

    /// Deletes a task (to the recycle bin).
    pub fn delete_task(&mut self, id: &str) -> Result<(), CrmError> {
        let i = self.task_index(id)?;
        let now = self.tick();
        let t = &mut self.tasks[i];
        t.deleted_at = Some(now);
        t.system_modstamp = now;
        Ok(())
    }

    /// Adds an event starting at `start` and returns its id.
    pub fn add_event(&mut self, owner_id: &str, start: Timestamp) -> Result<String, CrmError> {
        self.check_user(owner_id)?;
        let contact = &self.contacts[self.events.len() % self.contacts.len()];
        let account = self.accounts.iter().find(|a| a.id == contact.account_id).unwrap_or(&self.accounts[0]);
        let (subject, location, who) =
            (format!("Workshop - {}", account.name), Some(account.billing_street.clone()), contact.id.clone());
        let now = self.tick();
        let id = sf_id("00U", 300_001 + self.events.len() as u64);
        self.events.push(Event {
            id: id.clone(),
            subject,
            location,
            start,
            duration_minutes: 60,
            owner_id: owner_id.to_owned(),
            who_id: Some(who),
            what_id: None,
            created: now,
            system_modstamp: now,
            deleted_at: None,
        });
        Ok(id)
    }

    /// Deletes an event (to the recycle bin).
    pub fn delete_event(&mut self, id: &str) -> Result<(), CrmError> {
        let i = self.events.iter().position(|e| e.id == id).ok_or_else(|| CrmError::UnknownRecord(id.into()))?;
        if self.events[i].deleted_at.is_some() {
            return Err(CrmError::Deleted(id.to_owned()));
        }
        let now = self.tick();
        let e = &mut self.events[i];
        e.deleted_at = Some(now);
        e.system_modstamp = now;
        Ok(())
    }

    /// Activates or deactivates a user (inactive users are not in the roster's query).
    pub fn set_user_active(&mut self, id: &str, active: bool) -> Result<(), CrmError> {
        let now = self.tick();
        let user = self.users.iter_mut().find(|u| u.id == id).ok_or_else(|| CrmError::UnknownUser(id.to_owned()))?;
        user.is_active = active;
        user.system_modstamp = now;
        Ok(())
    }
}

fn to_cents(value: f64) -> Result<i64, CrmError> {
    if !value.is_finite() || !(0.0..=1e15).contains(&value) {
        return Err(CrmError::InvalidAmount(value.to_string()));
    }
    Ok((value * 100.0).round() as i64)
}
