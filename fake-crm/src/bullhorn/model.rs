//! Bullhorn's records as the fake holds them, and the deterministic dataset generator.
//!
//! Records keep typed values (money in cents, fee fractions in ten-thousandths, times in epoch
//! milliseconds as Bullhorn's REST API serves every timestamp); rendering to JSON with field
//! selection lives in the `api` module. The generator fills them with invented personal data
//! from [`crate::names`]: candidates and client contacts with names, e-mails and mobile
//! numbers, client corporations, termination reasons that quote the candidate.

use crate::names::{self, Country};
use crate::rng::Rng;
use crate::time::{DAY, HOUR, Timestamp};

/// First id of each record type (as in `shared/crm-fixtures/bullhorn/`).
pub(crate) const FIRST_USER_ID: u64 = 3101;
pub(crate) const FIRST_CORPORATION_ID: u64 = 2201;
pub(crate) const FIRST_CONTACT_ID: u64 = 4401;
pub(crate) const FIRST_CANDIDATE_ID: u64 = 64_001;
pub(crate) const FIRST_JOB_ORDER_ID: u64 = 51_001;
pub(crate) const FIRST_PLACEMENT_ID: u64 = 9001;
pub(crate) const FIRST_SUBMISSION_ID: u64 = 77_001;

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = DAY * 1000;

/// A CRM user (a recruiter): `CorporateUser`.
#[derive(Clone, Debug)]
pub struct CorporateUser {
    /// User id; placements name it as `owner`, submissions as `sendingUser`.
    pub id: u64,
    /// First name (personal data).
    pub first_name: String,
    /// Last name (personal data).
    pub last_name: String,
    /// E-mail (personal data); the host matches it to tenant users.
    pub email: String,
    /// Whether the user may log in.
    pub enabled: bool,
    /// Soft-deleted users stay readable with `isDeleted: true`.
    pub is_deleted: bool,
    /// Last change, epoch ms.
    pub date_last_modified: i64,
}

impl CorporateUser {
    /// `First Last`.
    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }
}

/// A customer company: `ClientCorporation`.
#[derive(Clone, Debug)]
pub struct ClientCorporation {
    /// Id.
    pub id: u64,
    /// e.g. `Quibblewick Logistics GmbH` (personal data for this product's purposes).
    pub name: String,
    /// The invented proper noun of the name (a canary of its own).
    pub(crate) stem: String,
    /// E-mail domain of its contacts.
    pub(crate) domain: String,
    /// Where its contacts' phone numbers come from.
    pub(crate) country: Country,
}

/// A hiring manager at a customer: `ClientContact`.
#[derive(Clone, Debug)]
pub struct ClientContact {
    /// Id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Their company.
    pub corporation_id: u64,
}

/// A person placed in jobs: `Candidate`.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Id.
    pub id: u64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail.
    pub email: String,
    /// Mobile number.
    pub mobile: String,
}

/// An open position at a customer: `JobOrder`.
#[derive(Clone, Debug)]
pub struct JobOrder {
    /// Id.
    pub id: u64,
    /// Job title.
    pub title: String,
    /// The customer.
    pub corporation_id: u64,
    /// The hiring manager.
    pub contact_id: u64,
    /// The recruiter owning the job (the default owner of its placements).
    pub owner_id: u64,
}

/// A candidate placed in a job: `Placement`. Bullhorn hard-deletes placements (no
/// `isDeleted`).
#[derive(Clone, Debug)]
pub struct Placement {
    /// Id.
    pub id: u64,
    /// The candidate placed.
    pub candidate_id: u64,
    /// The job filled.
    pub job_order_id: u64,
    /// The recruiter credited (`owner`).
    pub owner_id: u64,
    /// Created, epoch ms: when the placement counts.
    pub date_added: i64,
    /// Start of work, epoch ms.
    pub date_begin: i64,
    /// End of work (none for permanent jobs), epoch ms.
    pub date_end: Option<i64>,
    /// e.g. `Placed`, `Approved`, `Terminated`.
    pub status: String,
    /// e.g. `Direct Hire`, `Contract`.
    pub employment_type: String,
    /// Yearly salary in cents (0 when not set).
    pub salary_cents: i64,
    /// The perm fee as a fraction of the salary, in ten-thousandths (`2250` = 0.225).
    pub fee_e4: i64,
    /// A flat fee in cents that replaces `fee × salary` when above zero.
    pub flat_fee_cents: i64,
    /// Free text; quotes the candidate when the placement was terminated.
    pub termination_reason: Option<String>,
    /// Last change, epoch ms.
    pub date_last_modified: i64,
}

impl Placement {
    /// The fee the contract counts, in micros (millionths of a unit): `flatFee` when above
    /// zero, else `fee × salary` (exact: cents × ten-thousandths are micros), else none.
    pub fn fee_micros(&self) -> Option<i64> {
        if self.flat_fee_cents > 0 {
            return Some(self.flat_fee_cents * 10_000);
        }
        let product = self.salary_cents * self.fee_e4;
        (product > 0).then_some(product)
    }
}

/// A candidate sent to a job: `JobSubmission` (soft-deleted with `isDeleted`).
#[derive(Clone, Debug)]
pub struct JobSubmission {
    /// Id.
    pub id: u64,
    /// The candidate.
    pub candidate_id: u64,
    /// The job.
    pub job_order_id: u64,
    /// The recruiter credited (`sendingUser`).
    pub sending_user_id: u64,
    /// e.g. `Submitted`, `Interview Scheduled`, `New Lead`.
    pub status: String,
    /// e.g. `Web`, `LinkedIn`.
    pub source: String,
    /// Created, epoch ms: when the submission counts.
    pub date_added: i64,
    /// When the candidate answered on the web, epoch ms.
    pub date_web_response: Option<i64>,
    /// Soft deletion.
    pub is_deleted: bool,
    /// Salary asked, cents.
    pub salary_cents: i64,
    /// Last change, epoch ms.
    pub date_last_modified: i64,
}

/// Everything a fake Bullhorn corporation holds.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The corporation's name stem, e.g. `Brindlemoor` (its users' e-mails are at
    /// `<stem>-staffing.example`).
    pub corporation: String,
    /// The currency of every placement (Bullhorn records none; the integration's `currency`
    /// setting must name this one).
    pub currency: String,
    /// Recruiters, the last one soft-deleted and owning nothing.
    pub users: Vec<CorporateUser>,
    /// Customers.
    pub corporations: Vec<ClientCorporation>,
    /// Hiring managers.
    pub contacts: Vec<ClientContact>,
    /// Candidates.
    pub candidates: Vec<Candidate>,
    /// Jobs.
    pub job_orders: Vec<JobOrder>,
    /// Placements.
    pub placements: Vec<Placement>,
    /// Submissions, some soft-deleted.
    pub submissions: Vec<JobSubmission>,
    /// The end of the generated window, epoch ms: every time is before it.
    pub now_ms: i64,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Seed: the same spec gives the same data.
    pub seed: u64,
    /// Active recruiters (at least 1).
    pub users: usize,
    /// Placements.
    pub placements: usize,
    /// Job submissions.
    pub submissions: usize,
    /// The currency of placements.
    pub currency: String,
    /// The end of the window.
    pub end: Timestamp,
    /// How many days before `end` the window starts.
    pub span_days: u32,
}

/// 2025-06-15T00:00:00Z, near the fixtures' dates.
const DEFAULT_END: Timestamp = Timestamp::from_unix(1_749_945_600);

impl DatasetSpec {
    /// Sizes and seed, in GBP, over the 180 days before 2025-06-15T00:00:00Z.
    pub fn new(seed: u64, users: usize, placements: usize, submissions: usize) -> Self {
        Self { seed, users, placements, submissions, currency: "GBP".to_owned(), end: DEFAULT_END, span_days: 180 }
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

    /// Sets the currency of placements (an ISO 4217 code).
    pub fn in_currency(mut self, currency: &str) -> Self {
        self.currency = currency.to_owned();
        self
    }
}

impl Dataset {
    /// Generates a dataset with the default window and currency (see [`DatasetSpec::new`]).
    pub fn generate(seed: u64, users: usize, placements: usize, submissions: usize) -> Self {
        Self::generate_with(&DatasetSpec::new(seed, users, placements, submissions))
    }

    /// Generates a dataset from a full spec. Deterministic: same spec, same data.
    pub fn generate_with(spec: &DatasetSpec) -> Self {
        Generator::new(spec).run()
    }
}

const JOB_TITLES: &[&str] = &[
    "Senior Logistics Planner",
    "Practice Manager",
    "Avionics Engineer",
    "Payroll Specialist",
    "Site Reliability Engineer",
    "Clinical Lead",
    "Procurement Analyst",
    "Warehouse Supervisor",
    "Tax Manager",
    "Data Engineer",
    "Quality Inspector",
    "Account Director",
];

const PLACEMENT_STATUSES: &[&str] = &["Placed", "Approved", "Submitted", "Completed"];
const SUBMISSION_STATUSES: &[&str] =
    &["Submitted", "Interview Scheduled", "Client Rejected", "Offer Extended", "Placed", "New Lead"];
const SOURCES: &[&str] = &["Web", "LinkedIn", "Referral", "Job Board"];
const CANDIDATE_COUNTRIES: [Country; 3] = [Country::UnitedKingdom, Country::UnitedStates, Country::Netherlands];

struct Generator<'s> {
    spec: &'s DatasetSpec,
    rng: Rng,
    start_ms: i64,
    end_ms: i64,
    name_offset: usize,
    phones: [usize; Country::ALL.len()],
}

impl<'s> Generator<'s> {
    fn new(spec: &'s DatasetSpec) -> Self {
        let mut rng = Rng::new(spec.seed ^ 0xB011_4024);
        let end_ms = spec.end.unix() * 1000;
        let start_ms = end_ms - i64::from(spec.span_days.max(7)) * DAY_MS;
        let name_offset = rng.index(1 << 20);
        Self { spec, rng, start_ms, end_ms, name_offset, phones: [0; Country::ALL.len()] }
    }

    fn phone(&mut self, country: Country) -> String {
        let counter = &mut self.phones[country.index()];
        *counter += 1;
        country.phone(*counter - 1)
    }

    /// A time in `[lo, hi)`, whole seconds (as Bullhorn's UI stamps them) plus a few ms.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        let secs = self.rng.range(lo / 1000, (hi - 1).max(lo) / 1000);
        (secs * 1000 + self.rng.range(0, 999)).clamp(lo, (hi - 1).max(lo))
    }

    fn run(mut self) -> Dataset {
        let corporation = names::company_stem(self.rng.index(64)).to_owned();
        let users = self.users(&corporation);
        let active = users.iter().filter(|u| !u.is_deleted).count();
        let weights: Vec<u64> = (0..active).map(|_| 1 + self.rng.below(5)).collect();
        let corporations = self.corporations();
        let contacts = self.contacts(&corporations);
        let candidates = self.candidates();
        let job_orders = self.job_orders(&corporations, &contacts, &weights);
        let placements = self.placements(&job_orders, &candidates, &weights);
        let submissions = self.submissions(&job_orders, &candidates, &weights);
        Dataset {
            corporation,
            currency: self.spec.currency.clone(),
            users,
            corporations,
            contacts,
            candidates,
            job_orders,
            placements,
            submissions,
            now_ms: self.end_ms,
        }
    }

    fn weighted(&mut self, weights: &[u64]) -> u64 {
        let total: u64 = weights.iter().sum();
        let mut roll = self.rng.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if roll < w {
                return FIRST_USER_ID + i as u64;
            }
            roll -= w;
        }
        FIRST_USER_ID
    }

    fn users(&mut self, corporation: &str) -> Vec<CorporateUser> {
        let active = self.spec.users.max(1);
        (0..=active)
            .map(|i| {
                let name = names::user_name(i, self.name_offset);
                let deleted = i == active;
                CorporateUser {
                    id: FIRST_USER_ID + i as u64,
                    email: format!("{}@{}-staffing.example", name.email_local(), corporation.to_lowercase()),
                    first_name: name.first,
                    last_name: name.last,
                    enabled: !deleted,
                    is_deleted: deleted,
                    date_last_modified: self.between(self.start_ms - 200 * DAY_MS, self.start_ms),
                }
            })
            .collect()
    }

    fn corporations(&mut self) -> Vec<ClientCorporation> {
        let count = (self.spec.placements / 4).clamp(2, 400).min(names::org_name_capacity());
        (0..count)
            .map(|j| {
                let name = names::org_name(j, self.name_offset);
                ClientCorporation {
                    id: FIRST_CORPORATION_ID + j as u64,
                    name: name.full(),
                    stem: name.stem.clone(),
                    domain: name.domain(),
                    country: name.country,
                }
            })
            .collect()
    }

    fn contacts(&mut self, corporations: &[ClientCorporation]) -> Vec<ClientContact> {
        (0..corporations.len() * 2)
            .map(|k| {
                let corporation = &corporations[k % corporations.len()];
                let name = names::contact_name(k, self.name_offset);
                let email = format!("{}@{}", name.email_local(), corporation.domain);
                let phone = self.phone(corporation.country);
                ClientContact {
                    id: FIRST_CONTACT_ID + k as u64,
                    first_name: name.first,
                    last_name: name.last,
                    email,
                    phone,
                    corporation_id: corporation.id,
                }
            })
            .collect()
    }

    fn candidates(&mut self) -> Vec<Candidate> {
        let count = ((self.spec.placements + self.spec.submissions) / 2).clamp(3, 20_000);
        let first_name = (self.spec.placements / 4).clamp(2, 400) * 2;
        (0..count)
            .map(|k| {
                // After the contacts' names, so no candidate shares a contact's name.
                let name = names::contact_name(first_name + k, self.name_offset);
                let country = CANDIDATE_COUNTRIES[k % CANDIDATE_COUNTRIES.len()];
                let mobile = self.phone(country);
                Candidate {
                    id: FIRST_CANDIDATE_ID + k as u64,
                    email: format!("{}@inbox-{}.example", name.email_local(), k % 7),
                    first_name: name.first,
                    last_name: name.last,
                    mobile,
                }
            })
            .collect()
    }

    fn job_orders(
        &mut self,
        corporations: &[ClientCorporation],
        contacts: &[ClientContact],
        weights: &[u64],
    ) -> Vec<JobOrder> {
        (0..corporations.len() * 2)
            .map(|k| {
                let corporation = &corporations[k % corporations.len()];
                let contact = contacts.iter().find(|c| c.corporation_id == corporation.id).map_or(0, |c| c.id);
                JobOrder {
                    id: FIRST_JOB_ORDER_ID + k as u64,
                    title: (*self.rng.pick(JOB_TITLES)).to_owned(),
                    corporation_id: corporation.id,
                    contact_id: contact,
                    owner_id: self.weighted(weights),
                }
            })
            .collect()
    }

    fn placements(&mut self, jobs: &[JobOrder], candidates: &[Candidate], weights: &[u64]) -> Vec<Placement> {
        let mut placements: Vec<Placement> = (0..self.spec.placements)
            .map(|_| {
                let job = &jobs[self.rng.index(jobs.len())];
                let candidate = &candidates[self.rng.index(candidates.len())];
                let owner_id = if self.rng.percent(80) { job.owner_id } else { self.weighted(weights) };
                let date_added = self.between(self.start_ms, self.end_ms - HOUR * 1000);
                let date_last_modified = self.between(date_added, self.end_ms);
                let date_begin = date_added + self.rng.range(7, 60) * DAY_MS;
                let roll = self.rng.below(100);
                // Perm with fee × salary; flat fee (sometimes beside a salary and fee, which it
                // overrides); contract with no fee at all.
                let (employment, salary_cents, fee_e4, flat_fee_cents) = if roll < 70 {
                    let salary = self.rng.range(300, 1800) * 10_000 + self.cents();
                    ("Direct Hire", salary, self.rng.range(24, 60) * 50, 0)
                } else if roll < 88 {
                    let flat = self.rng.range(40, 400) * 5_000 + self.cents();
                    let (salary, fee) = if self.rng.percent(50) {
                        (self.rng.range(300, 1200) * 10_000, self.rng.range(24, 60) * 50)
                    } else {
                        (0, 0)
                    };
                    ("Direct Hire", salary, fee, flat)
                } else {
                    ("Contract", 0, 0, 0)
                };
                let terminated = self.rng.percent(8);
                let (status, termination_reason, date_end) = if terminated {
                    let reason = format!("{} {} withdrew before start", candidate.first_name, candidate.last_name);
                    ("Terminated".to_owned(), Some(reason), Some(date_begin + self.rng.range(1, 20) * DAY_MS))
                } else {
                    let end = (employment == "Contract").then(|| date_begin + self.rng.range(30, 180) * DAY_MS);
                    ((*self.rng.pick(PLACEMENT_STATUSES)).to_owned(), None, end)
                };
                Placement {
                    id: 0,
                    candidate_id: candidate.id,
                    job_order_id: job.id,
                    owner_id,
                    date_added,
                    date_begin,
                    date_end,
                    status,
                    employment_type: employment.to_owned(),
                    salary_cents,
                    fee_e4,
                    flat_fee_cents,
                    termination_reason,
                    date_last_modified,
                }
            })
            .collect();
        placements.sort_by_key(|p| p.date_added);
        for (i, p) in placements.iter_mut().enumerate() {
            p.id = FIRST_PLACEMENT_ID + i as u64;
        }
        placements
    }

    /// Cents that are zero most of the time.
    fn cents(&mut self) -> i64 {
        if self.rng.percent(25) { self.rng.range(1, 99) } else { 0 }
    }

    fn submissions(&mut self, jobs: &[JobOrder], candidates: &[Candidate], weights: &[u64]) -> Vec<JobSubmission> {
        let mut submissions: Vec<JobSubmission> = (0..self.spec.submissions)
            .map(|_| {
                let job = &jobs[self.rng.index(jobs.len())];
                let candidate = &candidates[self.rng.index(candidates.len())];
                let date_added = self.between(self.start_ms, self.end_ms - HOUR * 1000);
                let source = (*self.rng.pick(SOURCES)).to_owned();
                JobSubmission {
                    id: 0,
                    candidate_id: candidate.id,
                    job_order_id: job.id,
                    sending_user_id: self.weighted(weights),
                    status: (*self.rng.pick(SUBMISSION_STATUSES)).to_owned(),
                    date_web_response: (source == "Web").then_some(date_added),
                    source,
                    date_added,
                    is_deleted: self.rng.percent(8),
                    salary_cents: 0,
                    date_last_modified: self.between(date_added, self.end_ms),
                }
            })
            .collect();
        submissions.sort_by_key(|s| s.date_added);
        for (i, s) in submissions.iter_mut().enumerate() {
            s.id = FIRST_SUBMISSION_ID + i as u64;
        }
        submissions
    }
}
