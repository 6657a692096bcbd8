//! A fake Pipedrive company: users, deals, activities, persons and organisations served the way
//! Pipedrive's API documents them (v2 cursor-paged lists, v1 users), from memory.
//!
//! [`Crm`] is the pure core: a deterministic [`Dataset`] indexed for paging, a logical clock,
//! mutations for tests, the expected KPI totals, the personal-data canaries, injected faults and
//! a request log. [`Crm::respond`] answers one HTTP request without doing any IO, so the
//! benchmark can call it directly; [`FakePipedrive`] serves it on loopback.
//!
//! Shapes follow `shared/crm-fixtures/pipedrive/` and `shared/crm-apis.md` section 1, including
//! the parts a careless connector would trip over: `updated_since` is inclusive and
//! `updated_until` exclusive, deleted deals appear only under `status=deleted` (for 30 days),
//! deleted activities stay in the list with `is_deleted: true`, `next_cursor` is `null` on the
//! last page, `limit` above 500 is a 400, and a won deal can later be lost, reopened or deleted.

mod api;
mod model;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use model::{
    Activity, Address, Attendee, CURRENCIES, Company, ContactDetail, Dataset, DatasetSpec, Deal, DealStatus,
    Organization, Person, User,
};

use crate::server::FakeServer;
use crate::time::Timestamp;
use model::{FIRST_ACTIVITY_ID, FIRST_DEAL_ID};
use table::Table;

/// Pipedrive's 30-day window for listing deleted deals, in seconds.
const DELETED_VISIBLE_SECS: i64 = 30 * crate::time::DAY;

/// A fake Pipedrive served on loopback: see [`FakeServer`] for `base_url()`, `lock()`,
/// `with(..)` and `shutdown()`.
pub type FakePipedrive = FakeServer<Crm>;

impl FakeServer<Crm> {
    /// Serves `dataset` on `127.0.0.1` on a free port, accepting `x-api-token: <token>`.
    pub async fn start(dataset: Dataset, token: impl Into<String>) -> anyhow::Result<Self> {
        Self::serve(Crm::new(dataset, token)).await
    }
}

/// A fault to inject into the next requests (those that carry the right token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with the burst-limit headers of `error_429_rate_limited.md` (`retry-after` and
    /// `x-ratelimit-reset` set to this many seconds, daily budget left non-zero).
    RateLimited {
        /// Seconds to wait, as sent in `retry-after` and `x-ratelimit-reset`.
        retry_after_secs: u64,
    },
    /// 429 with `x-daily-ratelimit-token-remaining: 0`: the daily budget is spent and retrying
    /// today is pointless.
    DailyBudgetExhausted,
    /// A server error with this status (500, 502, 503, ...), with the error envelope.
    ServerError(u16),
    /// 401 with the fixture body even though the token is right (an expired or revoked token).
    Unauthorized,
    /// Answer normally, but only after this long (the server sleeps; [`Crm::respond`] reports
    /// it in [`crate::Response::delay`]).
    Delay(Duration),
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// 1 for the first request, then 2, 3, ...
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Whether `x-api-token` carried the configured token.
    pub token_ok: bool,
    /// The status answered.
    pub status: u16,
}

/// Why a mutation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrmError {
    /// No deal with this id.
    UnknownDeal(u64),
    /// The deal is deleted (only [`Crm::restore_deal`] applies).
    DealDeleted(u64),
    /// No activity with this id.
    UnknownActivity(u64),
    /// The activity is deleted.
    ActivityDeleted(u64),
    /// No user with this id.
    UnknownUser(u64),
    /// No person with this id.
    UnknownPerson(u64),
    /// No organisation with this id.
    UnknownOrganization(u64),
    /// Not a finite, non-negative amount.
    InvalidValue(String),
    /// Not a three-letter upper-case currency code.
    InvalidCurrency(String),
}

impl fmt::Display for CrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrmError::UnknownDeal(id) => write!(f, "no deal {id}"),
            CrmError::DealDeleted(id) => write!(f, "deal {id} is deleted"),
            CrmError::UnknownActivity(id) => write!(f, "no activity {id}"),
            CrmError::ActivityDeleted(id) => write!(f, "activity {id} is deleted"),
            CrmError::UnknownUser(id) => write!(f, "no user {id}"),
            CrmError::UnknownPerson(id) => write!(f, "no person {id}"),
            CrmError::UnknownOrganization(id) => write!(f, "no organization {id}"),
            CrmError::InvalidValue(v) => write!(f, "invalid deal value {v}"),
            CrmError::InvalidCurrency(c) => write!(f, "invalid currency {c:?}"),
        }
    }
}

impl std::error::Error for CrmError {}

/// A deal to add with [`Crm::add_deal`].
#[derive(Clone, Debug)]
pub struct NewDeal {
    /// The user credited with it.
    pub owner_id: u64,
    /// Value in major units (e.g. `12750.5`); kept to the cent.
    pub value: f64,
    /// ISO 4217 code.
    pub currency: String,
    /// Open, won or lost.
    pub status: DealStatus,
    /// For a won deal: when it was won (default: the fake's clock).
    pub won_time: Option<Timestamp>,
    /// Contact person (default: one of the organisation's, or any).
    pub person_id: Option<u64>,
    /// Customer organisation (default: the person's).
    pub org_id: Option<u64>,
    /// Title (default: organisation, product and contact name).
    pub title: Option<String>,
}

impl NewDeal {
    /// An open deal.
    pub fn open(owner_id: u64, value: f64, currency: &str) -> Self {
        Self {
            owner_id,
            value,
            currency: currency.to_owned(),
            status: DealStatus::Open,
            won_time: None,
            person_id: None,
            org_id: None,
            title: None,
        }
    }

    /// A deal won at `won_time`.
    pub fn won(owner_id: u64, value: f64, currency: &str, won_time: Timestamp) -> Self {
        Self { status: DealStatus::Won, won_time: Some(won_time), ..Self::open(owner_id, value, currency) }
    }
}

/// An activity to add with [`Crm::add_activity`].
#[derive(Clone, Debug)]
pub struct NewActivity {
    /// The user credited with it.
    pub owner_id: u64,
    /// Type key: `call`, `meeting`, `task`, ...
    pub kind: String,
    /// Whether it is done.
    pub done: bool,
    /// When it was marked done (default for a done activity: the fake's clock).
    pub marked_as_done_time: Option<Timestamp>,
    /// Related deal.
    pub deal_id: Option<u64>,
    /// Contact person (default: the deal's, or any).
    pub person_id: Option<u64>,
}

impl NewActivity {
    /// An activity of type `kind`, not done.
    pub fn new(owner_id: u64, kind: &str) -> Self {
        Self { owner_id, kind: kind.to_owned(), done: false, marked_as_done_time: None, deal_id: None, person_id: None }
    }

    /// A call, not done.
    pub fn call(owner_id: u64) -> Self {
        Self::new(owner_id, "call")
    }

    /// A meeting, not done.
    pub fn meeting(owner_id: u64) -> Self {
        Self::new(owner_id, "meeting")
    }

    /// Marks it done at `at`.
    pub fn done_at(mut self, at: Timestamp) -> Self {
        self.done = true;
        self.marked_as_done_time = Some(at);
        self
    }
}

/// What the connector should credit to one owner, computed from the fake's current data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerTotals {
    /// Won, not deleted deals.
    pub deals_won: u64,
    /// Their values by currency, in cents.
    pub revenue_cents: BTreeMap<String, i64>,
    /// Done, not deleted activities of type `call`.
    pub calls: u64,
    /// Done, not deleted activities of type `meeting`.
    pub meetings: u64,
}

impl OwnerTotals {
    /// Revenue in `currency` as a decimal string with two places, e.g. `"12750.50"`.
    pub fn revenue(&self, currency: &str) -> String {
        format_cents(self.revenue_cents.get(currency).copied().unwrap_or(0))
    }
}

/// Cents as a decimal string with two places: `1275050` → `"12750.50"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[derive(Debug, Default)]
struct Control {
    faults: VecDeque<Fault>,
    log: Vec<RequestRecord>,
    requests: u64,
}

/// The fake Pipedrive company: data, clock, faults and request log.
#[derive(Debug)]
pub struct Crm {
    token: String,
    company: Company,
    users: Vec<User>,
    organizations: Table<Organization>,
    persons: Table<Person>,
    deals: Table<Deal>,
    activities: Table<Activity>,
    now: Timestamp,
    control: Mutex<Control>,
}

impl Crm {
    /// Indexes `dataset` for serving; requests must carry `x-api-token: <token>`.
    pub fn new(dataset: Dataset, token: impl Into<String>) -> Self {
        let mut users = dataset.users;
        users.sort_by_key(|u| u.id);
        let latest = [
            dataset.deals.iter().map(|d| d.update_time).max(),
            dataset.activities.iter().map(|a| a.update_time).max(),
            dataset.persons.iter().map(|p| p.update_time).max(),
            dataset.organizations.iter().map(|o| o.update_time).max(),
        ]
        .into_iter()
        .flatten()
        .max();
        // The clock must be later than every generated time, even in a hand-edited dataset.
        let now = latest.map_or(dataset.now, |t| dataset.now.max(t.plus_secs(1)));
        Self {
            token: token.into(),
            company: dataset.company,
            users,
            organizations: Table::new(dataset.organizations),
            persons: Table::new(dataset.persons),
            deals: Table::new(dataset.deals),
            activities: Table::new(dataset.activities),
            now,
            control: Mutex::new(Control::default()),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- token and clock -------------------------------------------------------------

    /// The API token requests must carry.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Replaces the token (the old one then gets 401), e.g. to simulate a revoked token.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.token = token.into();
    }

    /// The fake's logical clock: later than every generated time; each mutation moves it one
    /// second on and stamps the changed record's `update_time` with it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Moves the clock forward (e.g. past the 30 days a deleted deal stays listed).
    pub fn advance_clock(&mut self, by: Duration) {
        self.now = self.now.plus_secs(by.as_secs() as i64);
    }

    /// Moves the clock forward to `at` (never backward). A demo whose data ends at the wall
    /// clock can call it with [`Timestamp::now_utc`] before mutating, so that new update times
    /// are not in the future.
    pub fn set_clock(&mut self, at: Timestamp) {
        self.now = self.now.max(at);
    }

    fn tick(&mut self) -> Timestamp {
        self.now = self.now.plus_secs(1);
        self.now
    }

    // ----- reading the data ------------------------------------------------------------

    /// The account.
    pub fn company(&self) -> &Company {
        &self.company
    }

    /// CRM users, by id.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// One user.
    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.binary_search_by_key(&id, |u| u.id).ok().map(|i| &self.users[i])
    }

    /// Every deal, deleted ones included, by id.
    pub fn deals(&self) -> &[Deal] {
        self.deals.rows()
    }

    /// One deal.
    pub fn deal(&self, id: u64) -> Option<&Deal> {
        self.deals.get(id)
    }

    /// Every activity, deleted ones included, by id.
    pub fn activities(&self) -> &[Activity] {
        self.activities.rows()
    }

    /// One activity.
    pub fn activity(&self, id: u64) -> Option<&Activity> {
        self.activities.get(id)
    }

    /// Every person, by id.
    pub fn persons(&self) -> &[Person] {
        self.persons.rows()
    }

    /// One person.
    pub fn person(&self, id: u64) -> Option<&Person> {
        self.persons.get(id)
    }

    /// Every organisation, by id.
    pub fn organizations(&self) -> &[Organization] {
        self.organizations.rows()
    }

    /// One organisation.
    pub fn organization(&self, id: u64) -> Option<&Organization> {
        self.organizations.get(id)
    }

    /// Whether a deleted deal is still listed under `status=deleted` (deleted < 30 days ago).
    fn deleted_visible(&self, deal: &Deal) -> bool {
        deal.deleted_at.is_some_and(|at| at.unix() >= self.now.unix() - DELETED_VISIBLE_SECS)
    }

    // ----- expected results ------------------------------------------------------------

    /// What a correct connector credits to each user over all time: see
    /// [`Crm::expected_totals_between`]. Every user appears, with zeros where nothing counts.
    pub fn expected_totals(&self) -> BTreeMap<u64, OwnerTotals> {
        self.expected_totals_between(None, None)
    }

    /// What a correct connector credits to each user for events in `[from, to)`: won, not
    /// deleted deals at `won_time` (`deals_won` 1, `revenue` value in currency), done, not
    /// deleted calls and meetings at `marked_as_done_time`, all by `owner_id`.
    pub fn expected_totals_between(
        &self,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> BTreeMap<u64, OwnerTotals> {
        let within = |t: Option<Timestamp>| t.is_some_and(|t| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e));
        let mut totals: BTreeMap<u64, OwnerTotals> =
            self.users.iter().map(|u| (u.id, OwnerTotals::default())).collect();
        for deal in self.deals.rows() {
            if deal.status == DealStatus::Won && !deal.is_deleted() && within(deal.won_time) {
                let t = totals.entry(deal.owner_id).or_default();
                t.deals_won += 1;
                *t.revenue_cents.entry(deal.currency.clone()).or_default() += deal.value_cents;
            }
        }
        for activity in self.activities.rows() {
            if activity.done && !activity.deleted && within(activity.marked_as_done_time) {
                let t = totals.entry(activity.owner_id).or_default();
                match activity.kind.as_str() {
                    "call" => t.calls += 1,
                    "meeting" => t.meetings += 1,
                    _ => {}
                }
            }
        }
        totals
    }

    // ----- personal data ---------------------------------------------------------------

    /// Every personal-data string the fake serves: user and contact names, first and last
    /// names of contacts, e-mails, phone numbers, organisation names and their invented stems,
    /// street addresses. Free text (titles, notes, lost reasons, subjects) is built only from
    /// these. Sorted, without duplicates; each at least 7 characters and distinctive, so a
    /// sweep of a database dump or a log has no false positives.
    pub fn canaries(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.user_canaries().into_iter().collect();
        all.extend(self.contact_canaries());
        all.into_iter().collect()
    }

    /// The CRM users' names and e-mails only. A tenant may legitimately register its own
    /// salespeople under these e-mails, so a sweep may need to treat them apart.
    pub fn user_canaries(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.users.iter().flat_map(|u| [u.name.clone(), u.email.clone()]).collect();
        set.into_iter().collect()
    }

    /// Personal data of third parties (contacts and their organisations), which must never
    /// reach the product's storage or logs.
    pub fn contact_canaries(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for p in self.persons.rows() {
            set.extend([p.name.clone(), p.first_name.clone(), p.last_name.clone()]);
            set.extend(p.emails.iter().chain(&p.phones).map(|c| c.value.clone()));
        }
        for o in self.organizations.rows() {
            set.extend([o.name.clone(), o.stem.clone(), o.address.value.clone()]);
            set.extend(o.address.route.clone());
        }
        set.into_iter().collect()
    }

    // ----- faults and the request log --------------------------------------------------

    /// Makes the next `n` requests that carry the right token fail with `fault` (queued after
    /// faults already pending).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.control().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        self.control().faults.clear();
    }

    /// How many injected faults are still pending.
    pub fn pending_faults(&self) -> usize {
        self.control().faults.len()
    }

    /// Every request so far (since the last [`Crm::clear_request_log`]).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.control().log.clone()
    }

    /// How many requests were answered in total (the log may have been cleared since).
    pub fn request_count(&self) -> u64 {
        self.control().requests
    }

    /// Empties the request log (the counter keeps counting).
    pub fn clear_request_log(&self) {
        self.control().log.clear();
    }

    // ----- mutations -------------------------------------------------------------------

    fn change_deal(&mut self, id: u64, change: impl FnOnce(&mut Deal, Timestamp)) -> Result<(), CrmError> {
        match self.deals.get(id) {
            None => return Err(CrmError::UnknownDeal(id)),
            Some(d) if d.is_deleted() => return Err(CrmError::DealDeleted(id)),
            Some(_) => {}
        }
        let now = self.tick();
        self.deals.update(id, |deal| {
            change(deal, now);
            deal.update_time = now;
        });
        Ok(())
    }

    fn change_activity(&mut self, id: u64, change: impl FnOnce(&mut Activity, Timestamp)) -> Result<(), CrmError> {
        match self.activities.get(id) {
            None => return Err(CrmError::UnknownActivity(id)),
            Some(a) if a.deleted => return Err(CrmError::ActivityDeleted(id)),
            Some(_) => {}
        }
        let now = self.tick();
        self.activities.update(id, |activity| {
            change(activity, now);
            activity.update_time = now;
        });
        Ok(())
    }

    fn check_user(&self, id: u64) -> Result<(), CrmError> {
        self.user(id).map(|_| ()).ok_or(CrmError::UnknownUser(id))
    }

    /// Changes a deal's value (in major units, kept to the cent).
    pub fn set_deal_value(&mut self, id: u64, value: f64) -> Result<(), CrmError> {
        let cents = to_cents(value)?;
        self.change_deal(id, |d, _| d.value_cents = cents)
    }

    /// Changes a deal's currency.
    pub fn set_deal_currency(&mut self, id: u64, currency: &str) -> Result<(), CrmError> {
        check_currency(currency)?;
        self.change_deal(id, |d, _| d.currency = currency.to_owned())
    }

    /// Gives a deal to another user.
    pub fn reassign_deal(&mut self, id: u64, owner_id: u64) -> Result<(), CrmError> {
        self.check_user(owner_id)?;
        self.change_deal(id, |d, _| d.owner_id = owner_id)
    }

    /// Marks a deal lost now (a won deal stops being won), with a lost reason naming its
    /// contact.
    pub fn mark_deal_lost(&mut self, id: u64) -> Result<(), CrmError> {
        let reason = self.lost_reason_for(id);
        self.change_deal(id, |d, now| {
            d.status = DealStatus::Lost;
            d.won_time = None;
            d.lost_time = Some(now);
            d.close_time = Some(now);
            d.lost_reason = Some(reason);
        })
    }

    /// Reopens a won or lost deal.
    pub fn reopen_deal(&mut self, id: u64) -> Result<(), CrmError> {
        self.change_deal(id, |d, now| {
            d.status = DealStatus::Open;
            d.stage_id = 4;
            d.stage_change_time = Some(now);
            d.won_time = None;
            d.lost_time = None;
            d.close_time = None;
            d.lost_reason = None;
        })
    }

    /// Marks a deal won at `at` (which may be in the past, to land in a given period).
    pub fn mark_deal_won(&mut self, id: u64, at: Timestamp) -> Result<(), CrmError> {
        self.change_deal(id, |d, now| {
            d.status = DealStatus::Won;
            d.stage_id = 5;
            d.stage_change_time = Some(now);
            d.won_time = Some(at);
            d.close_time = Some(at);
            d.lost_time = None;
            d.lost_reason = None;
        })
    }

    /// Deletes a deal (softly: it is listed under `status=deleted` with `is_deleted: true`
    /// for 30 days of the fake's clock, and nowhere else).
    pub fn delete_deal(&mut self, id: u64) -> Result<(), CrmError> {
        self.change_deal(id, |d, now| d.deleted_at = Some(now))
    }

    /// Archives a deal now: from then on it is listed only under `/api/v2/deals/archived`
    /// (with `is_archived: true`), its status unchanged.
    pub fn archive_deal(&mut self, id: u64) -> Result<(), CrmError> {
        self.change_deal(id, |d, _| d.archived = true)
    }

    /// Undoes [`Crm::archive_deal`]: the deal is back in `/api/v2/deals`.
    pub fn unarchive_deal(&mut self, id: u64) -> Result<(), CrmError> {
        self.change_deal(id, |d, _| d.archived = false)
    }

    /// Undoes [`Crm::delete_deal`].
    pub fn restore_deal(&mut self, id: u64) -> Result<(), CrmError> {
        match self.deals.get(id) {
            None => return Err(CrmError::UnknownDeal(id)),
            Some(d) if !d.is_deleted() => return Ok(()),
            Some(_) => {}
        }
        let now = self.tick();
        self.deals.update(id, |d| {
            d.deleted_at = None;
            d.update_time = now;
        });
        Ok(())
    }

    /// Adds a deal created now and returns its id.
    pub fn add_deal(&mut self, new: NewDeal) -> Result<u64, CrmError> {
        self.check_user(new.owner_id)?;
        check_currency(&new.currency)?;
        let value_cents = to_cents(new.value)?;
        let id = self.deals.last_id().map_or(FIRST_DEAL_ID, |last| last + 1);
        let person = match (new.person_id, new.org_id) {
            (Some(pid), _) => Some(self.person(pid).ok_or(CrmError::UnknownPerson(pid))?),
            (None, Some(oid)) => {
                self.organization(oid).ok_or(CrmError::UnknownOrganization(oid))?;
                self.persons.rows().iter().find(|p| p.org_id == Some(oid))
            }
            (None, None) => self.persons.rows().get(id as usize % self.persons.len().max(1)),
        };
        let org_id = new.org_id.or(person.and_then(|p| p.org_id));
        let org = org_id.and_then(|oid| self.organization(oid));
        let title = new.title.clone().unwrap_or_else(|| {
            let org = org.map_or("Unnamed organisation", |o| o.name.as_str());
            match person {
                Some(p) => format!("{org} - additional seats ({})", p.name),
                None => format!("{org} - additional seats"),
            }
        });
        let person_id = person.map(|p| p.id);
        let reason = match new.status {
            DealStatus::Lost => Some(match person {
                Some(p) => format!("Lost after a call with {}", p.name),
                None => "Lost on price".to_owned(),
            }),
            _ => None,
        };
        let now = self.tick();
        let closed = match new.status {
            DealStatus::Open => None,
            DealStatus::Won => Some(new.won_time.unwrap_or(now)),
            DealStatus::Lost => Some(now),
        };
        self.deals.push(Deal {
            id,
            title,
            owner_id: new.owner_id,
            person_id,
            org_id,
            pipeline_id: 1,
            stage_id: if new.status == DealStatus::Open { 1 } else { 5 },
            value_cents,
            currency: new.currency,
            add_time: now,
            update_time: now,
            stage_change_time: Some(now),
            status: new.status,
            deleted_at: None,
            probability: None,
            lost_reason: reason,
            close_time: closed,
            won_time: closed.filter(|_| new.status == DealStatus::Won),
            lost_time: closed.filter(|_| new.status == DealStatus::Lost),
            expected_close_date: Some(now.plus_secs(30 * crate::time::DAY).date()),
            label_ids: Vec::new(),
            archived: false,
        });
        Ok(id)
    }

    fn lost_reason_for(&self, deal_id: u64) -> String {
        match self.deal(deal_id).and_then(|d| d.person_id).and_then(|p| self.person(p)) {
            Some(p) => format!("Chose competitor - {} cited price", p.name),
            None => "Chose competitor".to_owned(),
        }
    }

    /// Marks an activity done now (keeping an earlier done time) or not done.
    pub fn set_activity_done(&mut self, id: u64, done: bool) -> Result<(), CrmError> {
        self.change_activity(id, |a, now| {
            if done {
                a.marked_as_done_time = a.marked_as_done_time.or(Some(now));
            } else {
                a.marked_as_done_time = None;
            }
            a.done = done;
        })
    }

    /// Deletes an activity (it stays listed, with `is_deleted: true`).
    pub fn delete_activity(&mut self, id: u64) -> Result<(), CrmError> {
        self.change_activity(id, |a, _| a.deleted = true)
    }

    /// Reassigns an activity to another user.
    pub fn reassign_activity(&mut self, id: u64, owner_id: u64) -> Result<(), CrmError> {
        self.check_user(owner_id)?;
        self.change_activity(id, |a, _| a.owner_id = owner_id)
    }

    /// Adds an activity created now and returns its id.
    pub fn add_activity(&mut self, new: NewActivity) -> Result<u64, CrmError> {
        self.check_user(new.owner_id)?;
        let deal = match new.deal_id {
            Some(id) => Some(self.deal(id).ok_or(CrmError::UnknownDeal(id))?),
            None => None,
        };
        let id = self.activities.last_id().map_or(FIRST_ACTIVITY_ID, |last| last + 1);
        let person = match new.person_id.or(deal.and_then(|d| d.person_id)) {
            Some(pid) => Some(self.person(pid).ok_or(CrmError::UnknownPerson(pid))?),
            None => self.persons.rows().get(id as usize % self.persons.len().max(1)),
        };
        let person_name = person.map_or("a contact", |p| p.name.as_str());
        let subject = match new.kind.as_str() {
            "call" => format!("Call with {person_name}"),
            "meeting" => format!("Meeting with {person_name}"),
            other => format!("{other} - {person_name}"),
        };
        let note = person.and_then(|p| p.phones.first()).map(|phone| format!("Reached on {}", phone.value));
        let attendees = match (new.kind.as_str(), person) {
            ("meeting", Some(p)) => vec![Attendee {
                email: p.emails.first().map(|e| e.value.clone()).unwrap_or_default(),
                name: p.name.clone(),
                status: "accepted",
                is_organizer: false,
                person_id: Some(p.id),
                user_id: None,
            }],
            _ => Vec::new(),
        };
        let (person_id, org_id) = (person.map(|p| p.id), person.and_then(|p| p.org_id));
        let deal_id = deal.map(|d| d.id);
        let now = self.tick();
        let marked = new.done.then(|| new.marked_as_done_time.unwrap_or(now));
        self.activities.push(Activity {
            id,
            subject,
            busy: new.kind == "meeting",
            kind: new.kind,
            owner_id: new.owner_id,
            creator_user_id: new.owner_id,
            deleted: false,
            add_time: now,
            update_time: now,
            deal_id,
            person_id,
            org_id,
            due_date: marked.unwrap_or(now).date(),
            due_time: None,
            duration: None,
            done: new.done,
            marked_as_done_time: marked,
            location: None,
            participants: person_id.into_iter().collect(),
            attendees,
            note,
        });
        Ok(id)
    }
}

fn to_cents(value: f64) -> Result<i64, CrmError> {
    if !value.is_finite() || !(0.0..=1e15).contains(&value) {
        return Err(CrmError::InvalidValue(value.to_string()));
    }
    Ok((value * 100.0).round() as i64)
}

fn check_currency(code: &str) -> Result<(), CrmError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(CrmError::InvalidCurrency(code.to_owned()))
    }
}
