//! A fake "Example CRM": the small imaginary CRM that `connectors/template` reads, served the
//! way the top of `connectors/template/src/lib.rs` documents it, for recording the template's
//! fixtures (`oneup connector check --record`) and trying the toolkit by hand
//! (`oneup fake-crm example`).
//!
//! The API:
//! - `GET /api/v1/deals?modified_since=<epoch ms>&page=<n>&per_page=<k>`: `{"items": [deal…],
//!   "next_page": <n> | null}`, deals with `modified_at >= modified_since` (inclusive) sorted
//!   by `modified_at` then `id`; `per_page` is capped at [`ExampleCrm::page_size`] (10 by
//!   default) so that even the template's `per_page=200` pages;
//! - `GET /api/v1/users?page=<n>`: `{"items": [{"id", "email", "name"}], "next_page": …}`,
//!   two users a page;
//! - the header `x-api-key` must carry the key (else `401`); [`ExampleCrm::rate_limit_next`]
//!   answers the next data requests `429` with `Retry-After: 0`; unknown paths `404`, other
//!   methods `405`.
//!
//! A deal: `id`, `owner_id` (or null), `stage` (`open`, `won`, `lost`), `amount` (a decimal
//! string), `currency`, `closed_at` (RFC 3339, or null), `modified_at` (epoch ms), and the
//! personal data a real CRM holds and a connector must never pass on: `title`, `contact`
//! (`name`, `email`, `phone`) and `notes`. Everything is invented and listed by
//! [`ExampleCrm::canaries`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde_json::json;

use crate::http::{Query, Responder, Response};

/// 2025-06-01T00:00:00Z, the first `modified_at`.
const MODIFIED_FROM_MS: i64 = 1_748_736_000_000;
/// One hour.
const HOUR_MS: i64 = 3_600_000;

/// A CRM user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The id.
    pub id: u64,
    /// The work e-mail.
    pub email: String,
    /// The name (personal data).
    pub name: String,
}

/// A deal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deal {
    /// The id.
    pub id: u64,
    /// The owner, if any.
    pub owner_id: Option<u64>,
    /// `open`, `won` or `lost`.
    pub stage: &'static str,
    /// The amount as a decimal string.
    pub amount: String,
    /// ISO 4217.
    pub currency: &'static str,
    /// When it was won, RFC 3339.
    pub closed_at: Option<String>,
    /// Last modification, epoch ms.
    pub modified_at: i64,
    /// Personal data: the title.
    pub title: String,
    /// Personal data: the contact's name.
    pub contact_name: String,
    /// Personal data: the contact's e-mail.
    pub contact_email: String,
    /// Personal data: the contact's phone.
    pub contact_phone: String,
}

/// What a correct connector credits one owner with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExampleTotals {
    /// Won deals.
    pub deals_won: u64,
    /// Revenue of won deals per currency, in cents.
    pub revenue_cents: BTreeMap<String, i64>,
}

/// The fake's state: see the module docs.
#[derive(Debug)]
pub struct ExampleCrm {
    api_key: String,
    users: Vec<User>,
    deals: Vec<Deal>,
    page_size: usize,
    requests: AtomicU64,
    rate_limited: AtomicU32,
}

const USERS: [(u64, &str, &str); 4] = [
    (11, "Ada Marlowe-Quist", "ada.marlowe-quist@example-crm.test"),
    (12, "Bruno Castellane", "bruno.castellane@example-crm.test"),
    (13, "Chiara Okonkwo-Lind", "chiara.okonkwo-lind@example-crm.test"),
    (14, "Dmitri Vasquez-Holm", "dmitri.vasquez-holm@example-crm.test"),
];

const CONTACTS: [(&str, &str); 5] = [
    ("Ingrid Pallesen", "+45 31 55 01 23"),
    ("Tobiah Ferreira-Nkemelu", "+351 912 000 444"),
    ("Margit Szalay", "+36 30 555 0199"),
    ("Olusegun Brandvold", "+47 400 12 345"),
    ("Perpetua Lindqvist", "+46 70 123 45 67"),
];

impl ExampleCrm {
    /// The standard data set: four users (three owning deals), 36 deals over 36 hours
    /// from 2025-06-01, won, open and lost, in EUR and USD, one won deal without an owner.
    pub fn new(api_key: impl Into<String>) -> Self {
        let users = USERS
            .iter()
            .map(|(id, name, email)| User { id: *id, email: (*email).to_owned(), name: (*name).to_owned() })
            .collect();
        let deals = (0..36u64)
            .map(|i| {
                let stage = match i % 4 {
                    0 | 1 => "won",
                    2 => "open",
                    _ => "lost",
                };
                let owner_id = if i == 21 { None } else { Some(11 + i % 3) };
                let currency = if i % 5 == 0 { "USD" } else { "EUR" };
                let (contact_name, contact_phone) = CONTACTS[(i % 5) as usize];
                let slug: String = contact_name.to_ascii_lowercase().replace(' ', ".");
                Deal {
                    id: 5001 + i,
                    owner_id,
                    stage,
                    amount: format!("{}.{:02}", 800 + 125 * i, (i * 37) % 100),
                    currency,
                    closed_at: (stage == "won").then(|| format!("2025-05-{:02}T{:02}:30:00Z", 1 + i % 28, 8 + i % 9)),
                    modified_at: MODIFIED_FROM_MS + i as i64 * HOUR_MS,
                    title: format!("Fleet renewal for {contact_name}"),
                    contact_name: contact_name.to_owned(),
                    contact_email: format!("{slug}@customer-example.test"),
                    contact_phone: contact_phone.to_owned(),
                }
            })
            .collect();
        Self {
            api_key: api_key.into(),
            users,
            deals,
            page_size: 10,
            requests: AtomicU64::new(0),
            rate_limited: AtomicU32::new(0),
        }
    }

    /// Caps `per_page` at `size` (at least 1).
    pub fn with_page_size(mut self, size: usize) -> Self {
        self.page_size = size.max(1);
        self
    }

    /// The largest page served.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The deals.
    pub fn deals(&self) -> &[Deal] {
        &self.deals
    }

    /// Requests answered so far (all of them, refused ones too).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Answers the next `n` data requests `429` with `Retry-After: 0`.
    pub fn rate_limit_next(&self, n: u32) {
        self.rate_limited.store(n, Ordering::SeqCst);
    }

    /// Moves deal `id` to `stage` now (its `modified_at` becomes the latest).
    pub fn set_stage(&mut self, id: u64, stage: &'static str) {
        let latest = self.deals.iter().map(|d| d.modified_at).max().unwrap_or(MODIFIED_FROM_MS);
        if let Some(deal) = self.deals.iter_mut().find(|d| d.id == id) {
            deal.stage = stage;
            deal.modified_at = latest + HOUR_MS;
            if stage == "won" && deal.closed_at.is_none() {
                deal.closed_at = Some("2025-06-03T09:00:00Z".to_owned());
            }
        }
    }

    /// What a correct connector credits each owner with (owners of no won deal left out):
    /// won deals with an owner and a close date, and their amounts per currency.
    pub fn expected_totals(&self) -> BTreeMap<u64, ExampleTotals> {
        let mut out: BTreeMap<u64, ExampleTotals> = BTreeMap::new();
        for deal in self.deals.iter().filter(|d| d.stage == "won" && d.closed_at.is_some()) {
            let Some(owner) = deal.owner_id else { continue };
            let totals = out.entry(owner).or_default();
            totals.deals_won += 1;
            let (units, cents) = deal.amount.split_once('.').unwrap_or((&deal.amount, "0"));
            let cents =
                units.parse::<i64>().unwrap_or(0) * 100 + format!("{cents:0<2}")[..2].parse::<i64>().unwrap_or(0);
            *totals.revenue_cents.entry(deal.currency.to_owned()).or_default() += cents;
        }
        out
    }

    /// Every piece of invented personal data it serves: user names, deal titles, contact
    /// names, e-mails and phones. None may appear in anything oneup keeps or prints.
    pub fn canaries(&self) -> Vec<String> {
        let mut out: Vec<String> = self.users.iter().map(|u| u.name.clone()).collect();
        for deal in &self.deals {
            for value in [&deal.title, &deal.contact_name, &deal.contact_email, &deal.contact_phone] {
                if !out.contains(value) {
                    out.push(value.clone());
                }
            }
        }
        out
    }

    fn deals_page(&self, query: &Query<'_>) -> Response {
        let since = match query.get("modified_since").map(str::parse::<i64>) {
            None => 0,
            Some(Ok(ms)) => ms,
            Some(Err(_)) => return error(400, "modified_since must be epoch milliseconds"),
        };
        let (page, per_page) = match (page_of(query), query.get("per_page").map(str::parse::<usize>)) {
            (Some(page), None) => (page, self.page_size),
            (Some(page), Some(Ok(n))) if n > 0 => (page, n.min(self.page_size)),
            _ => return error(400, "page and per_page must be positive integers"),
        };
        let mut matching: Vec<&Deal> = self.deals.iter().filter(|d| d.modified_at >= since).collect();
        matching.sort_by_key(|d| (d.modified_at, d.id));
        let items: Vec<serde_json::Value> =
            matching.iter().skip((page - 1) * per_page).take(per_page).map(|d| deal_json(d)).collect();
        let next = (page * per_page < matching.len()).then_some(page + 1);
        Response::json(200, serde_json::to_vec(&json!({"items": items, "next_page": next})).unwrap_or_default())
    }

    fn users_page(&self, query: &Query<'_>) -> Response {
        const PER_PAGE: usize = 2;
        let Some(page) = page_of(query) else {
            return error(400, "page must be a positive integer");
        };
        let items: Vec<serde_json::Value> = self
            .users
            .iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE)
            .map(|u| json!({"id": u.id, "email": u.email, "name": u.name}))
            .collect();
        let next = (page * PER_PAGE < self.users.len()).then_some(page + 1);
        Response::json(200, serde_json::to_vec(&json!({"items": items, "next_page": next})).unwrap_or_default())
    }

    fn answer(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if method != "GET" {
            return error(405, "only GET is served");
        }
        let key = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-api-key")).map(|(_, v)| *v);
        if key != Some(self.api_key.as_str()) {
            return error(401, "missing or wrong x-api-key");
        }
        if !matches!(path, "/api/v1/deals" | "/api/v1/users") {
            return error(404, "no such endpoint");
        }
        if self.rate_limited.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let mut answer = error(429, "rate limited");
            answer.headers.push(("retry-after", "0".to_owned()));
            return answer;
        }
        let query = Query::parse(query);
        if path == "/api/v1/deals" { self.deals_page(&query) } else { self.users_page(&query) }
    }
}

fn page_of(query: &Query<'_>) -> Option<usize> {
    match query.get("page").map(str::parse::<usize>) {
        None => Some(1),
        Some(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

fn deal_json(d: &Deal) -> serde_json::Value {
    json!({
        "id": d.id,
        "owner_id": d.owner_id,
        "stage": d.stage,
        "amount": d.amount,
        "currency": d.currency,
        "closed_at": d.closed_at,
        "modified_at": d.modified_at,
        "title": d.title,
        "contact": {"name": d.contact_name, "email": d.contact_email, "phone": d.contact_phone},
        "notes": format!("Call {} on {} before the renewal.", d.contact_name, d.contact_phone),
    })
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, serde_json::to_vec(&json!({"error": message})).unwrap_or_default())
}

impl Responder for ExampleCrm {
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        self.answer(method, path, query, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[(&str, &str)] = &[("x-api-key", "k")];

    fn body(r: &Response) -> serde_json::Value {
        r.body_json()
    }

    #[test]
    fn deals_page_inclusively_from_the_watermark_capped_at_the_page_size() {
        let crm = ExampleCrm::new("k");
        let first = crm.respond("GET", "/api/v1/deals", "modified_since=0&page=1&per_page=200", KEY);
        assert_eq!(first.status, 200);
        let json = body(&first);
        assert_eq!(json["items"].as_array().unwrap().len(), 10);
        assert_eq!(json["next_page"], 2);
        let last = body(&crm.respond("GET", "/api/v1/deals", "modified_since=0&page=4&per_page=200", KEY));
        assert_eq!(last["items"].as_array().unwrap().len(), 6);
        assert!(last["next_page"].is_null());
        let latest = crm.deals().iter().map(|d| d.modified_at).max().unwrap();
        let tail = body(&crm.respond("GET", "/api/v1/deals", &format!("modified_since={latest}"), KEY));
        assert_eq!(tail["items"].as_array().unwrap().len(), 1, "inclusive");
        assert_eq!(crm.respond("GET", "/api/v1/deals", "page=0", KEY).status, 400);
    }

    #[test]
    fn auth_rate_limits_and_users() {
        let crm = ExampleCrm::new("k");
        assert_eq!(crm.respond("GET", "/api/v1/users", "", &[("x-api-key", "wrong")]).status, 401);
        assert_eq!(crm.respond("GET", "/api/v1/users", "", &[]).status, 401);
        assert_eq!(crm.respond("POST", "/api/v1/users", "", KEY).status, 405);
        assert_eq!(crm.respond("GET", "/api/v2/users", "", KEY).status, 404);
        crm.rate_limit_next(1);
        let limited = crm.respond("GET", "/api/v1/users", "page=1", KEY);
        assert_eq!((limited.status, limited.header("retry-after")), (429, Some("0")));
        let users = body(&crm.respond("GET", "/api/v1/users", "page=2", KEY));
        assert_eq!(users["items"].as_array().unwrap().len(), 2);
        assert!(users["next_page"].is_null());
        assert_eq!(crm.request_count(), 6);
    }

    #[test]
    fn expected_totals_count_owned_won_deals() {
        let mut crm = ExampleCrm::new("k");
        let totals = crm.expected_totals();
        let won: u64 = totals.values().map(|t| t.deals_won).sum();
        assert_eq!(won, 17, "18 won deals, one without an owner");
        assert!(!totals.contains_key(&14), "Dmitri owns nothing");
        assert!(totals.values().any(|t| t.revenue_cents.contains_key("USD")));
        crm.set_stage(5001, "lost");
        assert_eq!(crm.expected_totals().values().map(|t| t.deals_won).sum::<u64>(), 16);
        let canaries = crm.canaries();
        assert!(canaries.iter().any(|c| c.contains('@')) && canaries.iter().any(|c| c.starts_with('+')));
    }
}
