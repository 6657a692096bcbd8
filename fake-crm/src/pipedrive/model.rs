//! Pipedrive's records as the fake holds them, and the deterministic dataset generator.
//!
//! The records keep what the API serves (in typed form: money in cents, times as
//! [`Timestamp`]s); rendering to the v1/v2 JSON shapes lives in the `api` module. The generator
//! fills them with invented personal data from [`crate::names`]: deal titles name the customer
//! organisation and sometimes the contact, activity notes carry phone numbers and names, lost
//! reasons quote people, meetings list attendees with e-mails.

use serde::Serialize;

use crate::names::{self, Country};
use crate::rng::Rng;
use crate::time::{DAY, Date, HOUR, MINUTE, Timestamp};

/// First id of each record type (as in the fixtures, with ranges far apart so that a person or
/// organisation id can never pass for a user id).
pub(crate) const FIRST_USER_ID: u64 = 9101;
pub(crate) const FIRST_ORG_ID: u64 = 30_001;
pub(crate) const FIRST_PERSON_ID: u64 = 50_001;
pub(crate) const FIRST_DEAL_ID: u64 = 1001;
pub(crate) const FIRST_ACTIVITY_ID: u64 = 88_001;

/// The currencies deals come in.
pub const CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "SEK"];

/// The status of a deal that is not deleted (deletion is [`Deal::deleted_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DealStatus {
    /// In progress.
    Open,
    /// Closed and won.
    Won,
    /// Closed and lost.
    Lost,
}

impl DealStatus {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DealStatus::Open => "open",
            DealStatus::Won => "won",
            DealStatus::Lost => "lost",
        }
    }
}

/// The Pipedrive company (account) the API token belongs to: the tenant's own sales team.
#[derive(Clone, Debug)]
pub struct Company {
    /// Company id.
    pub id: u64,
    /// e.g. `Brindlemoor Sales`.
    pub name: String,
    /// Sub-domain, e.g. `brindlemoor-sales` (as in `brindlemoor-sales.pipedrive.com`); users'
    /// e-mails are at `<domain>.example`.
    pub domain: String,
}

/// A CRM user (a salesperson), served by `GET /v1/users`.
#[derive(Clone, Debug)]
pub struct User {
    /// User id; deals and activities name it as `owner_id`.
    pub id: u64,
    /// Full name (personal data).
    pub name: String,
    /// E-mail (personal data); the host matches it to tenant users.
    pub email: String,
    /// Whether the user is a company admin (the first user is).
    pub is_admin: bool,
    /// ISO 4217 code.
    pub default_currency: String,
    /// e.g. `en_US`.
    pub locale: &'static str,
    /// IANA zone name.
    pub timezone_name: &'static str,
    /// e.g. `+02:00`.
    pub timezone_offset: &'static str,
    /// When the user was created.
    pub created: Timestamp,
    /// When the user was last modified.
    pub modified: Timestamp,
    /// Last login.
    pub last_login: Timestamp,
    /// `active_flag`.
    pub active: bool,
}

/// A postal address in Pipedrive's v2 shape (organisation `address`, activity `location`).
#[derive(Clone, Debug, Serialize)]
pub struct Address {
    /// The full address (personal data for a contact's place of work).
    pub value: String,
    /// Country name.
    pub country: String,
    /// State or region.
    pub admin_area_level_1: Option<String>,
    /// County.
    pub admin_area_level_2: Option<String>,
    /// City.
    pub locality: Option<String>,
    /// Neighbourhood.
    pub sublocality: Option<String>,
    /// Street.
    pub route: Option<String>,
    /// House number.
    pub street_number: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
}

/// A customer organisation, served by `GET /api/v2/organizations`.
#[derive(Clone, Debug)]
pub struct Organization {
    /// Organisation id.
    pub id: u64,
    /// e.g. `Quibblewick Logistics GmbH` (personal data for this product's purposes).
    pub name: String,
    /// Owning user.
    pub owner_id: u64,
    /// Created.
    pub add_time: Timestamp,
    /// Last changed.
    pub update_time: Timestamp,
    /// Where it is.
    pub address: Address,
    /// Label ids.
    pub label_ids: Vec<u32>,
    /// The invented proper noun of the name, e.g. `Quibblewick` (a canary of its own).
    pub(crate) stem: String,
    /// E-mail domain of its people, e.g. `quibblewick-logistics.example`.
    pub(crate) domain: String,
    /// Where its phone numbers come from.
    pub(crate) country: Country,
}

/// An e-mail address or phone number of a person: `{"value","primary","label"}`.
#[derive(Clone, Debug, Serialize)]
pub struct ContactDetail {
    /// The address or number (personal data).
    pub value: String,
    /// Whether it is the primary one.
    pub primary: bool,
    /// `work`, `mobile`, `home`, ...
    pub label: &'static str,
}

/// A contact person at a customer, served by `GET /api/v2/persons`.
#[derive(Clone, Debug)]
pub struct Person {
    /// Person id.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Owning user.
    pub owner_id: u64,
    /// Their organisation.
    pub org_id: Option<u64>,
    /// Created.
    pub add_time: Timestamp,
    /// Last changed.
    pub update_time: Timestamp,
    /// E-mail addresses.
    pub emails: Vec<ContactDetail>,
    /// Phone numbers.
    pub phones: Vec<ContactDetail>,
    /// Label ids.
    pub label_ids: Vec<u32>,
}

/// A deal, served by `GET /api/v2/deals`.
#[derive(Clone, Debug)]
pub struct Deal {
    /// Deal id.
    pub id: u64,
    /// Title; names the customer organisation and sometimes the contact.
    pub title: String,
    /// The user credited with it.
    pub owner_id: u64,
    /// Contact person.
    pub person_id: Option<u64>,
    /// Customer organisation.
    pub org_id: Option<u64>,
    /// Pipeline.
    pub pipeline_id: u32,
    /// Stage within the pipeline.
    pub stage_id: u32,
    /// Value in minor units (cents) of `currency`.
    pub value_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Created.
    pub add_time: Timestamp,
    /// Last changed (every mutation moves it to the fake's clock).
    pub update_time: Timestamp,
    /// Last stage change.
    pub stage_change_time: Option<Timestamp>,
    /// Open, won or lost.
    pub status: DealStatus,
    /// When it was deleted; deleted deals are served only under `status=deleted`, for 30 days.
    pub deleted_at: Option<Timestamp>,
    /// Win probability in percent.
    pub probability: Option<u32>,
    /// Free text, often naming people.
    pub lost_reason: Option<String>,
    /// Won or lost time.
    pub close_time: Option<Timestamp>,
    /// When it was won.
    pub won_time: Option<Timestamp>,
    /// When it was lost.
    pub lost_time: Option<Timestamp>,
    /// Expected close date.
    pub expected_close_date: Option<Date>,
    /// Label ids.
    pub label_ids: Vec<u32>,
    /// Archived: since 2025-07-15 Pipedrive serves archived deals only under
    /// `GET /api/v2/deals/archived`, never in `/api/v2/deals`. Archiving does not change a
    /// deal's status: an archived won deal is still won.
    pub archived: bool,
}

impl Deal {
    /// Whether the deal is (soft-)deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// A person taking part in a meeting: `{"email","name","status","is_organizer","person_id","user_id"}`.
#[derive(Clone, Debug, Serialize)]
pub struct Attendee {
    /// E-mail (personal data).
    pub email: String,
    /// Name (personal data).
    pub name: String,
    /// `accepted`, `tentative`, `declined`, `noreply`.
    pub status: &'static str,
    /// Whether this attendee organised the meeting.
    pub is_organizer: bool,
    /// Set for contacts.
    pub person_id: Option<u64>,
    /// Set for CRM users.
    pub user_id: Option<u64>,
}

/// An activity (call, meeting, task, ...), served by `GET /api/v2/activities`.
#[derive(Clone, Debug)]
pub struct Activity {
    /// Activity id.
    pub id: u64,
    /// Subject; names people and organisations.
    pub subject: String,
    /// The activity type key: `call`, `meeting`, `task`, `email`, `lunch`, `deadline`.
    pub kind: String,
    /// The user credited with it.
    pub owner_id: u64,
    /// Who created it.
    pub creator_user_id: u64,
    /// Whether it is deleted (deleted activities are still listed, with `is_deleted: true`).
    pub deleted: bool,
    /// Created.
    pub add_time: Timestamp,
    /// Last changed.
    pub update_time: Timestamp,
    /// Related deal.
    pub deal_id: Option<u64>,
    /// Related person.
    pub person_id: Option<u64>,
    /// Related organisation.
    pub org_id: Option<u64>,
    /// Due date.
    pub due_date: Date,
    /// Due time of day, `HH:MM`.
    pub due_time: Option<String>,
    /// Duration, `HH:MM`.
    pub duration: Option<String>,
    /// Whether it blocks the calendar.
    pub busy: bool,
    /// Whether it is done.
    pub done: bool,
    /// When it was marked done.
    pub marked_as_done_time: Option<Timestamp>,
    /// Where it takes place.
    pub location: Option<Address>,
    /// Contact persons taking part (the first is primary).
    pub participants: Vec<u64>,
    /// Meeting attendees with names and e-mails.
    pub attendees: Vec<Attendee>,
    /// Free-text note, often with phone numbers and names.
    pub note: Option<String>,
}

/// Everything one fake Pipedrive company holds, before it is indexed for serving.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The account.
    pub company: Company,
    /// CRM users; the first is the token's owner (`/v1/users/me`) and an admin.
    pub users: Vec<User>,
    /// Customer organisations.
    pub organizations: Vec<Organization>,
    /// Contact persons.
    pub persons: Vec<Person>,
    /// Deals.
    pub deals: Vec<Deal>,
    /// Activities.
    pub activities: Vec<Activity>,
    /// The fake's clock starts here; every generated time is earlier.
    pub now: Timestamp,
}

/// What to generate: sizes, seed and time window.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Same seed and sizes, same data.
    pub seed: u64,
    /// Number of CRM users (at least 1).
    pub users: usize,
    /// Number of deals.
    pub deals: usize,
    /// Number of activities.
    pub activities: usize,
    /// Every generated time is before this instant, and the fake's clock starts at it.
    pub end: Timestamp,
    /// How many days before `end` the deals and activities spread over (at least 7).
    pub span_days: u32,
}

impl DatasetSpec {
    /// Sizes and seed with the default window: the 180 days before 2025-06-15T00:00:00Z.
    pub fn new(seed: u64, users: usize, deals: usize, activities: usize) -> Self {
        Self { seed, users, deals, activities, end: DEFAULT_END, span_days: 180 }
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
}

/// 2025-06-15T00:00:00Z, near the fixtures' dates.
const DEFAULT_END: Timestamp = Timestamp::from_unix(1_749_945_600);

const INVITE_STATUSES: [&str; 3] = ["accepted", "tentative", "noreply"];

const PRODUCTS: &[&str] = &[
    "fleet telematics 40 seats",
    "annual platform licence",
    "pilot",
    "Nordic expansion",
    "services add-on",
    "enterprise rollout",
    "renewal",
    "onboarding package",
    "data migration",
    "support upgrade",
    "regional roll-out 12 sites",
    "analytics module",
];

impl Dataset {
    /// Generates a dataset with the default time window (see [`DatasetSpec::new`]).
    pub fn generate(seed: u64, users: usize, deals: usize, activities: usize) -> Self {
        Self::generate_with(&DatasetSpec::new(seed, users, deals, activities))
    }

    /// Generates a dataset from a full spec. Deterministic: same spec, same data.
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
    owner_weights: Vec<u64>,
}

impl<'s> Generator<'s> {
    fn new(spec: &'s DatasetSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let end = spec.end.unix();
        let start = end - i64::from(spec.span_days.max(7)) * DAY;
        let name_offset = rng.index(1 << 20);
        Self { spec, rng, end, start, name_offset, owner_weights: Vec::new() }
    }

    fn run(mut self) -> Dataset {
        let company = self.company();
        let users = self.users(&company);
        self.owner_weights = users.iter().map(|_| 1 + self.rng.below(6)).collect();
        let organizations = self.organizations();
        let persons = self.persons(&organizations);
        let deals = self.deals(&organizations, &persons);
        let activities = self.activities(&users, &organizations, &persons, &deals);
        Dataset { company, users, organizations, persons, deals, activities, now: Timestamp::from_unix(self.end) }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_unix(secs)
    }

    fn owner(&mut self) -> u64 {
        let total: u64 = self.owner_weights.iter().sum();
        let mut roll = self.rng.below(total);
        for (i, &w) in self.owner_weights.iter().enumerate() {
            if roll < w {
                return FIRST_USER_ID + i as u64;
            }
            roll -= w;
        }
        FIRST_USER_ID
    }

    fn company(&mut self) -> Company {
        let stem = names::company_stem(self.rng.index(64));
        Company {
            id: 4_100_000 + self.rng.below(800_000),
            name: format!("{stem} Sales"),
            domain: format!("{}-sales", stem.to_lowercase()),
        }
    }

    fn users(&mut self, company: &Company) -> Vec<User> {
        (0..self.spec.users.max(1))
            .map(|i| {
                let name = names::user_name(i, self.name_offset);
                let created = self.start - self.rng.range(150, 400) * DAY;
                User {
                    id: FIRST_USER_ID + i as u64,
                    email: format!("{}@{}.example", name.email_local(), company.domain),
                    name: name.full(),
                    is_admin: i == 0,
                    default_currency: "USD".to_owned(),
                    locale: "en_US",
                    timezone_name: "Europe/Berlin",
                    timezone_offset: "+02:00",
                    created: Self::ts(created),
                    modified: Self::ts(self.rng.range(created, self.start)),
                    last_login: Self::ts(self.end - self.rng.range(HOUR, 3 * DAY)),
                    active: true,
                }
            })
            .collect()
    }

    fn organizations(&mut self) -> Vec<Organization> {
        let persons = (self.spec.deals / 3).clamp(3, 5000);
        let count = (persons / 2).clamp(2, 2500).min(names::org_name_capacity());
        let mut orgs: Vec<Organization> = (0..count)
            .map(|j| {
                let name = names::org_name(j, self.name_offset);
                let (city, region) = name.country.city();
                let number = self.rng.range(1, 240).to_string();
                let route = names::street(self.rng.index(360));
                let postal = name.country.postal_code(self.rng.below(1 << 30));
                let country = name.country.name();
                let add = self.start - self.rng.range(DAY, 240 * DAY);
                let update = self.rng.range(add, self.end - 1);
                Organization {
                    id: 0,
                    name: name.full(),
                    owner_id: self.owner(),
                    add_time: Self::ts(add),
                    update_time: Self::ts(update),
                    address: Address {
                        value: format!("{number} {route}, {postal} {city}, {country}"),
                        country: country.to_owned(),
                        admin_area_level_1: Some(region.to_owned()),
                        admin_area_level_2: None,
                        locality: Some(city.to_owned()),
                        sublocality: None,
                        route: Some(route),
                        street_number: Some(number),
                        postal_code: Some(postal),
                    },
                    label_ids: self.labels(),
                    stem: name.stem.clone(),
                    domain: name.domain(),
                    country: name.country,
                }
            })
            .collect();
        orgs.sort_by_key(|o| o.add_time);
        for (i, org) in orgs.iter_mut().enumerate() {
            org.id = FIRST_ORG_ID + i as u64;
        }
        orgs
    }

    fn labels(&mut self) -> Vec<u32> {
        if self.rng.percent(20) { vec![1 + self.rng.below(6) as u32] } else { Vec::new() }
    }

    fn persons(&mut self, orgs: &[Organization]) -> Vec<Person> {
        let count = (self.spec.deals / 3).clamp(3, 5000);
        let mut phone_counters = [0usize; Country::ALL.len()];
        let mut next_phone = |country: Country| {
            let counter = &mut phone_counters[country.index()];
            *counter += 1;
            country.phone(*counter - 1)
        };
        let mut persons: Vec<Person> = (0..count)
            .map(|p| {
                let org = &orgs[p % orgs.len()];
                let name = names::contact_name(p, self.name_offset);
                let add = (org.add_time.unix() + self.rng.range(0, 60 * DAY)).min(self.start);
                let update = self.rng.range(add, self.end - 1);
                let mut phones = vec![ContactDetail {
                    value: next_phone(org.country),
                    primary: true,
                    label: if self.rng.percent(60) { "mobile" } else { "work" },
                }];
                if self.rng.percent(20) {
                    phones.push(ContactDetail { value: next_phone(org.country), primary: false, label: "work" });
                }
                Person {
                    id: 0,
                    first_name: name.first.clone(),
                    last_name: name.last.clone(),
                    name: name.full(),
                    owner_id: if self.rng.percent(80) { org.owner_id } else { self.owner() },
                    org_id: Some(org.id),
                    add_time: Self::ts(add),
                    update_time: Self::ts(update),
                    emails: vec![ContactDetail {
                        value: format!("{}@{}", name.email_local(), org.domain),
                        primary: true,
                        label: "work",
                    }],
                    phones,
                    label_ids: self.labels(),
                }
            })
            .collect();
        persons.sort_by_key(|p| p.add_time);
        for (i, person) in persons.iter_mut().enumerate() {
            person.id = FIRST_PERSON_ID + i as u64;
        }
        persons
    }

    fn amount_cents(&mut self, currency: &str) -> i64 {
        let hundreds = match currency {
            "SEK" => self.rng.range(50, 15_000),
            "GBP" => self.rng.range(4, 1_200),
            _ => self.rng.range(5, 1_500),
        };
        let mut cents = hundreds * 100 * 100;
        match self.rng.below(100) {
            0..15 => cents += 50,
            15..25 => cents += self.rng.range(1, 99),
            _ => {}
        }
        cents
    }

    fn deals(&mut self, orgs: &[Organization], persons: &[Person]) -> Vec<Deal> {
        let (start, end) = (self.start, self.end);
        let mut deals: Vec<Deal> = (0..self.spec.deals)
            .map(|_| {
                let person = self.rng.pick(persons);
                let org = org_of(orgs, person);
                let currency = match self.rng.below(100) {
                    0..40 => "USD",
                    40..65 => "EUR",
                    65..85 => "GBP",
                    _ => "SEK",
                };
                let product = self.rng.pick(PRODUCTS);
                let title = if self.rng.percent(25) {
                    format!("{} - {product} ({})", org.name, person.name)
                } else {
                    format!("{} - {product}", org.name)
                };
                let add = start + self.rng.range(0, end - start - 2 * DAY);
                let mut deal = Deal {
                    id: 0,
                    title,
                    owner_id: self.owner(),
                    person_id: Some(person.id),
                    org_id: Some(org.id),
                    pipeline_id: 1,
                    stage_id: 1 + self.rng.below(4) as u32,
                    value_cents: self.amount_cents(currency),
                    currency: currency.to_owned(),
                    add_time: Self::ts(add),
                    update_time: Self::ts(add),
                    stage_change_time: Some(Self::ts(add)),
                    status: DealStatus::Open,
                    deleted_at: None,
                    probability: None,
                    lost_reason: None,
                    close_time: None,
                    won_time: None,
                    lost_time: None,
                    expected_close_date: self
                        .rng
                        .percent(90)
                        .then(|| Self::ts(add + self.rng.range(7, 90) * DAY).date()),
                    label_ids: self.labels(),
                    archived: false,
                };
                let roll = self.rng.below(100);
                let close = (add + self.rng.range(HOUR, 75 * DAY)).min(end - HOUR);
                let update = match roll {
                    // 30 % won, 18 % lost, the rest open.
                    0..30 => {
                        deal.status = DealStatus::Won;
                        deal.stage_id = 5;
                        deal.won_time = Some(Self::ts(close));
                        deal.close_time = Some(Self::ts(close));
                        close + self.rng.range(0, 3 * DAY)
                    }
                    30..48 => {
                        deal.status = DealStatus::Lost;
                        deal.lost_time = Some(Self::ts(close));
                        deal.close_time = Some(Self::ts(close));
                        deal.lost_reason = Some(self.lost_reason(org, person));
                        close + self.rng.range(0, 3 * DAY)
                    }
                    _ => self.rng.range(add, end - 1),
                };
                let mut update = update.min(end - 1);
                if self.rng.percent(5) {
                    // Deleted within the last 25 days, so still listed under status=deleted.
                    let deleted = self.rng.range(update.max(end - 25 * DAY), end - 1);
                    deal.deleted_at = Some(Self::ts(deleted));
                    update = deleted;
                }
                deal.update_time = Self::ts(update);
                deal
            })
            .collect();
        deals.sort_by_key(|d| d.add_time);
        for (i, deal) in deals.iter_mut().enumerate() {
            deal.id = FIRST_DEAL_ID + i as u64;
        }
        deals
    }

    fn lost_reason(&mut self, org: &Organization, person: &Person) -> String {
        match self.rng.below(5) {
            0 => format!("Chose competitor - {} cited price", person.name),
            1 => format!("Budget frozen at {}", org.name),
            2 => format!("No answer from {} since the demo; tried {}", person.name, person.phones[0].value),
            3 => format!("{} left {}", person.name, org.name),
            _ => "Went with an in-house build".to_owned(),
        }
    }

    fn activities(
        &mut self,
        users: &[User],
        orgs: &[Organization],
        persons: &[Person],
        deals: &[Deal],
    ) -> Vec<Activity> {
        let (start, end) = (self.start, self.end);
        let mut activities: Vec<Activity> = (0..self.spec.activities)
            .map(|_| {
                let deal = (!deals.is_empty() && self.rng.percent(85)).then(|| &deals[self.rng.index(deals.len())]);
                let person = match deal.and_then(|d| d.person_id) {
                    Some(id) => &persons[(id - FIRST_PERSON_ID) as usize],
                    None => self.rng.pick(persons),
                };
                let org = org_of(orgs, person);
                let owner_id = match deal {
                    Some(d) if self.rng.percent(80) => d.owner_id,
                    _ => self.owner(),
                };
                let owner = &users[(owner_id - FIRST_USER_ID) as usize];
                let kind = match self.rng.below(100) {
                    0..40 => "call",
                    40..65 => "meeting",
                    65..75 => "task",
                    75..85 => "email",
                    85..90 => "lunch",
                    _ => "deadline",
                };
                let add = start + self.rng.range(0, end - start - DAY);
                let due_day = Self::ts(add + self.rng.range(0, 14 * DAY)).date();
                let timed = matches!(kind, "call" | "meeting" | "lunch");
                let due_secs = if timed { self.rng.range(8 * 4, 18 * 4) * 15 * MINUTE } else { 17 * HOUR };
                let due_at = due_day.start().unix() + due_secs;
                let done = due_at < end - HOUR && self.rng.percent(72);
                let marked = done.then(|| (due_at + self.rng.range(0, 2 * HOUR)).max(add).min(end - 1));
                let mut update = (marked.unwrap_or(add) + self.rng.range(0, HOUR)).min(end - 1);
                let deleted = self.rng.percent(3);
                if deleted {
                    update = self.rng.range(update.max(end - 20 * DAY), end - 1);
                }
                let (subject, note) = self.activity_text(kind, org, person);
                let invite_status = *self.rng.pick(&INVITE_STATUSES);
                let meeting = kind == "meeting";
                Activity {
                    id: 0,
                    subject,
                    kind: kind.to_owned(),
                    owner_id,
                    creator_user_id: owner_id,
                    deleted,
                    add_time: Self::ts(add),
                    update_time: Self::ts(update),
                    deal_id: deal.map(|d| d.id),
                    person_id: Some(person.id),
                    org_id: person.org_id,
                    due_date: due_day,
                    due_time: timed.then(|| format!("{:02}:{:02}", due_secs / HOUR, due_secs % HOUR / MINUTE)),
                    duration: match kind {
                        "call" => Some(self.rng.pick(&["00:15", "00:20", "00:30"]).to_string()),
                        "meeting" => Some(self.rng.pick(&["00:45", "01:00", "01:30"]).to_string()),
                        "lunch" => Some("01:30".to_owned()),
                        _ => None,
                    },
                    busy: meeting || kind == "lunch",
                    done,
                    marked_as_done_time: marked.map(Self::ts),
                    location: (meeting && self.rng.percent(50)).then(|| org.address.clone()),
                    participants: vec![person.id],
                    attendees: if meeting {
                        vec![
                            Attendee {
                                email: person.emails[0].value.clone(),
                                name: person.name.clone(),
                                status: invite_status,
                                is_organizer: false,
                                person_id: Some(person.id),
                                user_id: None,
                            },
                            Attendee {
                                email: owner.email.clone(),
                                name: owner.name.clone(),
                                status: "accepted",
                                is_organizer: true,
                                person_id: None,
                                user_id: Some(owner.id),
                            },
                        ]
                    } else {
                        Vec::new()
                    },
                    note,
                }
            })
            .collect();
        activities.sort_by_key(|a| a.add_time);
        for (i, activity) in activities.iter_mut().enumerate() {
            activity.id = FIRST_ACTIVITY_ID + i as u64;
        }
        activities
    }

    fn activity_text(&mut self, kind: &str, org: &Organization, person: &Person) -> (String, Option<String>) {
        let phone = &person.phones[0].value;
        let email = &person.emails[0].value;
        let pick = self.rng.below(3);
        match kind {
            "call" => (
                if pick == 0 {
                    format!("Discovery call with {}", person.name)
                } else {
                    format!("Follow-up call {}", person.name)
                },
                match pick {
                    0 => Some(format!("Call back on {phone} re: seat count")),
                    1 => Some(format!("{} asked for a quote; direct line {phone}", person.first_name)),
                    _ => None,
                },
            ),
            "meeting" => (
                if pick == 0 {
                    format!("Demo for {}", person.name)
                } else {
                    format!("Contract review meeting - {}", org.name)
                },
                (pick == 1).then(|| format!("Agenda sent to {email}; {} will join", person.name)),
            ),
            "task" => (format!("Prepare proposal for {}", org.name), None),
            "email" => (format!("Email {} the quote", person.name), Some(format!("Send to {email}"))),
            "lunch" => (format!("Lunch - {}", org.name), None),
            _ => (format!("Proposal deadline - {}", org.name), None),
        }
    }
}

/// The organisation of a generated person (persons always have one).
fn org_of<'a>(orgs: &'a [Organization], person: &Person) -> &'a Organization {
    let id = person.org_id.unwrap_or(FIRST_ORG_ID);
    &orgs[(id - FIRST_ORG_ID) as usize]
}
