//! Salesforce records as the fake holds them, and the deterministic dataset generator.
//!
//! Records keep what the REST API serves in typed form (amounts in hundredths of the currency
//! unit, times as [`Timestamp`]s, dates as [`Date`]s); the SOQL field access and the JSON
//! shapes live in the `api` module. The generator fills Names, Subjects and Descriptions with
//! invented personal data from [`crate::names`]: opportunity names quote the customer account
//! and sometimes the contact, task subjects name contacts and quote their e-mail addresses,
//! descriptions carry phone numbers, events give the customer's site as their location.

use crate::names::{self, Country};
use crate::rng::Rng;
use crate::time::{DAY, Date, HOUR, MINUTE, Timestamp};

/// The currencies opportunities come in (multi-currency orgs).
pub const CURRENCIES: [&str; 4] = ["USD", "GBP", "JPY", "EUR"];

/// 2025-06-15T00:00:00Z, near the fixtures' dates.
const DEFAULT_END: Timestamp = Timestamp::from_unix(1_749_945_600);

/// An 18-character Salesforce-shaped id: the object's 3-character key prefix, the fake's pod
/// letters, a 10-digit number and a fixed suffix (`006Fk0000001001AAA`).
pub(crate) fn sf_id(prefix: &str, n: u64) -> String {
    format!("{prefix}Fk{n:010}AAA")
}

/// The org (the tenant's own Salesforce account).
#[derive(Clone, Debug)]
pub struct Organization {
    /// `00D…`.
    pub id: String,
    /// e.g. `Brindlemoor Sales`.
    pub name: String,
    /// The corporate currency: every amount's currency in a single-currency org.
    pub default_currency: String,
    /// Whether records carry `CurrencyIsoCode` (a multi-currency org).
    pub multi_currency: bool,
    /// Users' e-mails are at `<domain>.example`.
    pub domain: String,
}

/// A Salesforce user (a salesperson).
#[derive(Clone, Debug)]
pub struct User {
    /// `005…`; records name it as `OwnerId`.
    pub id: String,
    /// First name (personal data).
    pub first_name: String,
    /// Last name (personal data).
    pub last_name: String,
    /// E-mail (personal data); the host matches it to tenant users.
    pub email: String,
    /// Whether the user can log in; the roster lists active users only.
    pub is_active: bool,
    /// Last change.
    pub system_modstamp: Timestamp,
}

impl User {
    /// `First Last`.
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// A customer account (a company the team sells to).
#[derive(Clone, Debug)]
pub struct Account {
    /// `001…`.
    pub id: String,
    /// e.g. `Quibblewick Logistics GmbH` (personal data for this product's purposes).
    pub name: String,
    /// The invented proper noun of the name (a canary of its own).
    pub stem: String,
    /// Street address (personal data).
    pub billing_street: String,
    /// Owning user.
    pub owner_id: String,
    pub(crate) domain: String,
    pub(crate) country: Country,
}

/// A contact at a customer account.
#[derive(Clone, Debug)]
pub struct Contact {
    /// `003…`.
    pub id: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Their account.
    pub account_id: String,
    /// Owning user.
    pub owner_id: String,
}

impl Contact {
    /// `First Last`.
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// An opportunity (a deal).
#[derive(Clone, Debug)]
pub struct Opportunity {
    /// `006…`.
    pub id: String,
    /// Names the account and sometimes the contact.
    pub name: String,
    /// Free text naming people.
    pub description: Option<String>,
    /// The customer.
    pub account_id: String,
    /// The contact it was sold to (for generating text and activities).
    pub contact_id: String,
    /// In hundredths of the currency unit; `None` when no amount is set.
    pub amount_cents: Option<i64>,
    /// ISO 4217 code (in a single-currency org, the org's default currency).
    pub currency: String,
    /// The (expected or actual) close date.
    pub close_date: Date,
    /// `Prospecting`, …, `Closed Won`, `Closed Lost`.
    pub stage_name: String,
    /// Closed (won or lost).
    pub is_closed: bool,
    /// Closed and won.
    pub is_won: bool,
    /// The user credited with it.
    pub owner_id: String,
    /// Created.
    pub created: Timestamp,
    /// Last change by a user.
    pub last_modified: Timestamp,
    /// Last change of any kind (every mutation and the deletion move it).
    pub system_modstamp: Timestamp,
    /// When it went to the recycle bin, if it did.
    pub deleted_at: Option<Timestamp>,
}

/// A task (calls, e-mails, to-dos).
#[derive(Clone, Debug)]
pub struct Task {
    /// `00T…`.
    pub id: String,
    /// Names the contact, or quotes their e-mail address.
    pub subject: String,
    /// `Call`, `Email` or `Task`.
    pub subtype: String,
    /// `Not Started`, `In Progress` or `Completed`.
    pub status: String,
    /// Completed.
    pub is_closed: bool,
    /// The due date.
    pub activity_date: Option<Date>,
    /// When it was completed; absent on older records and on tasks closed without it.
    pub completed: Option<Timestamp>,
    /// For calls: `Outbound` or `Inbound`.
    pub call_type: Option<String>,
    /// For calls.
    pub call_duration_secs: Option<i64>,
    /// Free text with phone numbers.
    pub description: Option<String>,
    /// The user credited with it.
    pub owner_id: String,
    /// The contact.
    pub who_id: Option<String>,
    /// The opportunity.
    pub what_id: Option<String>,
    /// Created.
    pub created: Timestamp,
    /// Last change of any kind.
    pub system_modstamp: Timestamp,
    /// When it went to the recycle bin, if it did.
    pub deleted_at: Option<Timestamp>,
}

impl Task {
    /// A closed call: what `calls` counts.
    pub fn is_closed_call(&self) -> bool {
        self.subtype == "Call" && self.is_closed && self.deleted_at.is_none()
    }
}

/// A calendar event (a meeting).
#[derive(Clone, Debug)]
pub struct Event {
    /// `00U…`.
    pub id: String,
    /// Names the account.
    pub subject: String,
    /// The customer's site (personal data).
    pub location: Option<String>,
    /// Starts.
    pub start: Timestamp,
    /// Minutes.
    pub duration_minutes: i64,
    /// The user credited with it.
    pub owner_id: String,
    /// The contact.
    pub who_id: Option<String>,
    /// The opportunity.
    pub what_id: Option<String>,
    /// Created.
    pub created: Timestamp,
    /// Last change of any kind.
    pub system_modstamp: Timestamp,
    /// When it went to the recycle bin, if it did.
    pub deleted_at: Option<Timestamp>,
}

/// Everything one fake org holds, before it is served.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The org.
    pub org: Organization,
    /// Users, all active (see `Crm::set_user_active`).
    pub users: Vec<User>,
    /// Customer accounts.
    pub accounts: Vec<Account>,
    /// Contacts.
    pub contacts: Vec<Contact>,
    /// Opportunities.
    pub opportunities: Vec<Opportunity>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// Events.
    pub events: Vec<Event>,
    /// The fake's clock starts here; every generated time is earlier.
    pub now: Timestamp,
}

/// What to generate: sizes, seed, time window and currency mode.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Same spec, same data.
    pub seed: u64,
    /// Users (at least 1).
    pub users: usize,
    /// Opportunities.
    pub opportunities: usize,
    /// Tasks.
    pub tasks: usize,
    /// Events.
    pub events: usize,
    /// Every generated time is before this instant, and the fake's clock starts at it.
    pub end: Timestamp,
    /// How many days before `end` the records spread over (at least 7).
    pub span_days: u32,
    /// `None`: a multi-currency org ([`CURRENCIES`]); `Some(code)`: a single-currency org whose
    /// records have no `CurrencyIsoCode`.
    pub single_currency: Option<String>,
}

impl DatasetSpec {
    /// Sizes and seed, a multi-currency org, the 180 days before 2025-06-15T00:00:00Z.
    pub fn new(seed: u64, users: usize, opportunities: usize, tasks: usize, events: usize) -> Self {
        Self { seed, users, opportunities, tasks, events, end: DEFAULT_END, span_days: 180, single_currency: None }
    }

    /// Moves the window so that it ends at `end` (e.g. [`Timestamp::now_utc`] for a demo).
    pub fn ending_at(mut self, end: Timestamp) -> Self {
        self.end = end;
        self
    }

    /// Sets how many days the window spans.
    pub fn spanning_days(mut self, days: u32) -> Self {
        self.span_days = days;
        self
    }

    /// Makes it a single-currency org whose corporate currency is `code`.
    pub fn single_currency(mut self, code: &str) -> Self {
        self.single_currency = Some(code.to_owned());
        self
    }
}

const PRODUCTS: &[&str] = &[
    "LIMS rollout",
    "safety analytics",
    "port scheduling",
    "second site",
    "support renewal",
    "platform licence",
    "pilot",
    "fleet telematics",
    "data migration",
    "analytics module",
];

const OPEN_STAGES: &[&str] =
    &["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote", "Negotiation/Review"];

impl Dataset {
    /// Generates a multi-currency org with the default window (see [`DatasetSpec::new`]).
    pub fn generate(seed: u64, users: usize, opportunities: usize, tasks: usize, events: usize) -> Self {
        Self::generate_with(&DatasetSpec::new(seed, users, opportunities, tasks, events))
    }

    /// Generates the dataset `spec` describes.
    pub fn generate_with(spec: &DatasetSpec) -> Self {
        Generator::new(spec).run()
    }
}

struct Generator<'s> {
    spec: &'s DatasetSpec,
    rng: Rng,
    end: i64,
    start: i64,
    name_offset: usize,
}

impl<'s> Generator<'s> {
    fn new(spec: &'s DatasetSpec) -> Self {
        let mut rng = Rng::new(spec.seed ^ 0x5a1e_5f0c);
        let end = spec.end.unix();
        let start = end - i64::from(spec.span_days.max(7)) * DAY;
        let name_offset = rng.index(1 << 20);
        Self { spec, rng, end, start, name_offset }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    fn run(mut self) -> Dataset {
        let org = self.org();
        let users = self.users(&org);
        let accounts = self.accounts(&users);
        let contacts = self.contacts(&accounts, &users);
        let opportunities = self.opportunities(&org, &users, &accounts, &contacts);
        let tasks = self.tasks(&users, &contacts, &opportunities);
        let events = self.events(&users, &accounts, &contacts, &opportunities);
        Dataset { org, users, accounts, contacts, opportunities, tasks, events, now: Self::ts(self.end) }
    }

    fn org(&mut self) -> Organization {
        let stem = names::company_stem(self.rng.index(64));
        Organization {
            id: sf_id("00D", 1 + self.rng.below(9000)),
            name: format!("{stem} Sales"),
            default_currency: self.spec.single_currency.clone().unwrap_or_else(|| "USD".to_owned()),
            multi_currency: self.spec.single_currency.is_none(),
            domain: format!("{}-sales", stem.to_lowercase()),
        }
    }

    fn users(&mut self, org: &Organization) -> Vec<User> {
        let count = self.spec.users.max(1);
        (0..count)
            .map(|i| {
                let name = names::user_name(i, self.name_offset);
                User {
                    id: sf_id("005", 1001 + i as u64),
                    email: format!("{}@{}.example", name.email_local(), org.domain),
                    first_name: name.first,
                    last_name: name.last,
                    is_active: true,
                    system_modstamp: Self::ts(self.start - self.rng.range(DAY, 90 * DAY)),
                }
            })
            .collect()
    }

    fn owner<'u>(&mut self, users: &'u [User]) -> &'u str {
        // The first users sell more, so totals differ between owners.
        let weights: u64 = (1..=users.len() as u64).sum();
        let mut roll = self.rng.below(weights);
        for (i, user) in users.iter().enumerate() {
            let w = (users.len() - i) as u64;
            if roll < w {
                return &user.id;
            }
            roll -= w;
        }
        &users[0].id
    }

    fn accounts(&mut self, users: &[User]) -> Vec<Account> {
        let count = (self.spec.opportunities / 4).clamp(2, 2000).min(names::org_name_capacity());
        (0..count)
            .map(|j| {
                let name = names::org_name(j, self.name_offset);
                let (city, _) = name.country.city();
                let street = format!("{} {}", self.rng.range(1, 240), names::street(self.rng.index(360)));
                Account {
                    id: sf_id("001", 2001 + j as u64),
                    name: name.full(),
                    stem: name.stem.clone(),
                    billing_street: format!("{street}, {city}"),
                    owner_id: self.owner(users).to_owned(),
                    domain: name.domain(),
                    country: name.country,
                }
            })
            .collect()
    }

    fn contacts(&mut self, accounts: &[Account], users: &[User]) -> Vec<Contact> {
        let count = (accounts.len() * 2).max(3);
        let mut phone_counters = [0usize; Country::ALL.len()];
        (0..count)
            .map(|p| {
                let account = &accounts[p % accounts.len()];
                let name = names::contact_name(p, self.name_offset);
                let counter = &mut phone_counters[account.country.index()];
                *counter += 1;
                Contact {
                    id: sf_id("003", 3001 + p as u64),
                    email: format!("{}@{}", name.email_local(), account.domain),
                    phone: account.country.phone(*counter - 1),
                    first_name: name.first,
                    last_name: name.last,
                    account_id: account.id.clone(),
                    owner_id: if self.rng.percent(80) {
                        account.owner_id.clone()
                    } else {
                        self.owner(users).to_owned()
                    },
                }
            })
            .collect()
    }

    fn amount_cents(&mut self, currency: &str) -> i64 {
        match currency {
            // Whole yen, in hundreds of thousands.
            "JPY" => self.rng.range(5, 400) * 100_000 * 100,
            _ => {
                let units = self.rng.range(20, 2_500) * 100;
                let cents = if self.rng.percent(30) { self.rng.range(1, 9_999) } else { 0 };
                units * 100 + cents
            }
        }
    }

    fn opportunities(
        &mut self,
        org: &Organization,
        users: &[User],
        accounts: &[Account],
        contacts: &[Contact],
    ) -> Vec<Opportunity> {
        let mut out: Vec<Opportunity> = (0..self.spec.opportunities)
            .map(|n| {
                let contact = &contacts[self.rng.index(contacts.len())];
                let account = accounts.iter().find(|a| a.id == contact.account_id).unwrap_or(&accounts[0]);
                let product = *self.rng.pick(PRODUCTS);
                let currency = if org.multi_currency {
                    (*self.rng.pick(&CURRENCIES)).to_owned()
                } else {
                    org.default_currency.clone()
                };
                let amount_cents = if self.rng.percent(4) { None } else { Some(self.amount_cents(&currency)) };
                let created = self.rng.range(self.start - 60 * DAY, self.end - 2 * DAY);
                let roll = self.rng.below(100);
                let (stage, is_closed, is_won) = match roll {
                    0..45 => ("Closed Won", true, true),
                    45..70 => ("Closed Lost", true, false),
                    _ => (*self.rng.pick(OPEN_STAGES), false, false),
                };
                let (close_date, modified) = if is_closed {
                    let closed = self.rng.range(created.max(self.start) + HOUR, self.end - MINUTE);
                    (Self::ts(closed).date(), closed)
                } else {
                    let expected = self.end + self.rng.range(5, 90) * DAY;
                    (Self::ts(expected).date(), self.rng.range(created, self.end - MINUTE))
                };
                let name = if self.rng.percent(40) {
                    format!("{} - {product} ({})", account.name, contact.name())
                } else {
                    format!("{} - {product}", account.name)
                };
                let description = self.rng.percent(50).then(|| {
                    format!("Champion {} ({}), reachable on {}.", contact.name(), contact.email, contact.phone)
                });
                Opportunity {
                    id: sf_id("006", 100_001 + n as u64),
                    name,
                    description,
                    account_id: account.id.clone(),
                    contact_id: contact.id.clone(),
                    amount_cents,
                    currency,
                    close_date,
                    stage_name: stage.to_owned(),
                    is_closed,
                    is_won,
                    owner_id: self.owner(users).to_owned(),
                    created: Self::ts(created),
                    last_modified: Self::ts(modified),
                    system_modstamp: Self::ts(modified),
                    deleted_at: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn tasks(&mut self, users: &[User], contacts: &[Contact], opportunities: &[Opportunity]) -> Vec<Task> {
        (0..self.spec.tasks)
            .map(|n| {
                let contact = &contacts[self.rng.index(contacts.len())];
                let what = (!opportunities.is_empty() && self.rng.percent(70))
                    .then(|| opportunities[self.rng.index(opportunities.len())].id.clone());
                let created = self.rng.range(self.start, self.end - HOUR);
                let roll = self.rng.below(100);
                let subtype = match roll {
                    0..55 => "Call",
                    55..80 => "Email",
                    _ => "Task",
                };
                let is_closed = self.rng.percent(80);
                let done_at = self.rng.range(created, self.end - MINUTE);
                // Most closed tasks record when they were completed; some (older integrations,
                // tasks closed in bulk) only have their due date.
                let completed = (is_closed && self.rng.percent(85)).then(|| Self::ts(done_at));
                let activity_date = Some(Self::ts(if is_closed { done_at } else { created + 3 * DAY }).date());
                let (subject, description, call_type, duration) = match subtype {
                    "Call" => (
                        format!("Call with {}", contact.name()),
                        self.rng.percent(60).then(|| format!("Reached on {}; follow-up agreed.", contact.phone)),
                        Some(if self.rng.percent(70) { "Outbound" } else { "Inbound" }.to_owned()),
                        is_closed.then(|| self.rng.range(30, 3600)),
                    ),
                    "Email" => (format!("Email: pricing to {}", contact.email), None, None, None),
                    _ => (format!("Send contract to {}", contact.name()), None, None, None),
                };
                Task {
                    id: sf_id("00T", 200_001 + n as u64),
                    subject,
                    subtype: subtype.to_owned(),
                    status: if is_closed { "Completed" } else { "Not Started" }.to_owned(),
                    is_closed,
                    activity_date,
                    completed,
                    call_type,
                    call_duration_secs: duration,
                    description,
                    owner_id: self.owner(users).to_owned(),
                    who_id: Some(contact.id.clone()),
                    what_id: what,
                    created: Self::ts(created),
                    system_modstamp: Self::ts(if is_closed { done_at } else { created }),
                    deleted_at: None,
                }
            })
            .collect()
    }

    fn events(
        &mut self,
        users: &[User],
        accounts: &[Account],
        contacts: &[Contact],
        opportunities: &[Opportunity],
    ) -> Vec<Event> {
        (0..self.spec.events)
            .map(|n| {
                let contact = &contacts[self.rng.index(contacts.len())];
                let account = accounts.iter().find(|a| a.id == contact.account_id).unwrap_or(&accounts[0]);
                let created = self.rng.range(self.start, self.end - 2 * HOUR);
                // On the hour or half hour, before the clock.
                let start = (self.rng.range(created, self.end - HOUR) / (30 * MINUTE)) * 30 * MINUTE;
                let what = (!opportunities.is_empty() && self.rng.percent(60))
                    .then(|| opportunities[self.rng.index(opportunities.len())].id.clone());
                Event {
                    id: sf_id("00U", 300_001 + n as u64),
                    subject: format!("On-site demo - {}", account.name),
                    location: self.rng.percent(70).then(|| account.billing_street.clone()),
                    start: Self::ts(start),
                    duration_minutes: *self.rng.pick(&[30, 60, 90]),
                    owner_id: self.owner(users).to_owned(),
                    who_id: Some(contact.id.clone()),
                    what_id: what,
                    created: Self::ts(created.min(start)),
                    system_modstamp: Self::ts(self.rng.range(created.min(start), self.end - MINUTE)),
                    deleted_at: None,
                }
            })
            .collect()
    }
}
