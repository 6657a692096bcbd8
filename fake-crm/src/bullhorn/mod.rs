//! A fake Bullhorn corporation: recruiters, placements, job submissions, candidates, client
//! contacts and corporations, served the way Bullhorn's REST API documents them, from memory.
//!
//! [`Crm`] is the pure core: a deterministic [`Dataset`], a logical clock in epoch
//! milliseconds, the OAuth and REST-session state, mutations for tests, the expected KPI
//! totals, the personal-data canaries, injected faults and a request log. [`Crm::respond`]
//! answers one HTTP request without IO; [`FakeBullhorn`] serves it on loopback.
//!
//! One server plays every Bullhorn host (shapes from `shared/crm-fixtures/bullhorn/`,
//! `shared/crm-apis.md` section 3):
//!
//! | request | answer |
//! |---|---|
//! | `GET /rest-services/loginInfo?username=` | `{"oauthUrl": "<base>/oauth", "restUrl": "<base>/rest-services"}` |
//! | `POST /oauth/token?grant_type=refresh_token&refresh_token=&client_id=&client_secret=` | a new access token (valid 10 minutes) and a new refresh token; the one spent is dead (`400 invalid_grant`) |
//! | `GET /oauth/authorize?response_type=code&client_id=&redirect_uri=&state=&code_challenge=&code_challenge_method=S256` | consents at once: `302` to `redirect_uri` with `code` and `state` (PKCE S256 required) |
//! | `POST /oauth/token?grant_type=authorization_code&code=&redirect_uri=&code_verifier=&client_id=&client_secret=` | the code (single-use, its PKCE verifier checked) for an access token and a new refresh token, which replaces the integration's |
//! | `GET\|POST /rest-services/login?version=*&access_token=` | `{"BhRestToken", "restUrl": "<base>/rest-services/<corpToken>/"}` |
//! | `GET <restUrl>ping` | `{"sessionExpires"}` |
//! | `GET <restUrl>search/{Entity}?query=&fields=&sort=&start=&count=` | Lucene subset; `total` always |
//! | `GET <restUrl>query/{Entity}?where=&fields=&orderBy=&start=&count=&showTotalMatched=` | JPQL subset; `total` only with `showTotalMatched=true` |
//!
//! REST calls need the `BhRestToken` header (or query parameter): none is a 412, an unknown or
//! expired one a 401 `errors.authentication.invalidRestToken`. A field in `fields` that does
//! not exist is a 404 (as documented), other bad parameters a 400. `count` is capped at 500
//! (default 20); search sorts with `sort` (or `orderBy`), query with `orderBy`.
//! Placements are hard-deleted ([`Crm::delete_placement`]); submissions are soft-deleted
//! (`isDeleted: true`, [`Crm::delete_submission`]). See `lang` for the query subsets.

mod api;
mod lang;
mod model;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use model::{
    Candidate, ClientContact, ClientCorporation, CorporateUser, Dataset, DatasetSpec, JobOrder, JobSubmission,
    Placement,
};

use crate::server::FakeServer;
use crate::time::Timestamp;
use model::{DAY_MS, FIRST_PLACEMENT_ID, FIRST_SUBMISSION_ID};

/// A fake Bullhorn served on loopback: see [`FakeServer`] for `base_url()`, `lock()`,
/// `with(..)` and `shutdown()`.
pub type FakeBullhorn = FakeServer<Crm>;

impl FakeServer<Crm> {
    /// Serves `dataset` on `127.0.0.1` on a free port, for an API client with these
    /// credentials.
    pub async fn start(dataset: Dataset, credentials: Credentials) -> anyhow::Result<Self> {
        Self::serve(Crm::new(dataset, credentials)).await
    }

    /// The integration's `auth_url`: `http://127.0.0.1:PORT/oauth`.
    pub fn auth_url(&self) -> String {
        format!("{}/oauth", self.base_url())
    }

    /// The authorisation endpoint, `http://127.0.0.1:PORT/oauth/authorize`: it consents at
    /// once and redirects back with a code (PKCE S256 required).
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.base_url())
    }

    /// The integration's `login_url`: `http://127.0.0.1:PORT/rest-services`.
    pub fn login_url(&self) -> String {
        format!("{}/rest-services", self.base_url())
    }
}

/// The API client's credentials: the client id and secret, and the first refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The refresh token the integration starts with (single-use).
    pub refresh_token: String,
}

impl Credentials {
    /// Credentials from their three parts.
    pub fn new(client_id: &str, client_secret: &str, refresh_token: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: refresh_token.to_owned(),
        }
    }
}

/// A fault to inject into the next authenticated REST calls (not the token endpoint or the
/// login).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with the body of `error_429_rate_limited.json` and no headers, as documented.
    RateLimited,
    /// The session ends: this call and every later one with the same `BhRestToken` get 401
    /// `errors.authentication.invalidRestToken`, until the client logs in again.
    SessionExpired,
    /// A server error with this status (500, 503, ...).
    ServerError(u16),
    /// Answer normally, but only after this long.
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
    /// Whether it was a REST call with a live `BhRestToken`.
    pub session_ok: bool,
    /// The status answered.
    pub status: u16,
}

/// Why a mutation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrmError {
    /// No placement with this id.
    UnknownPlacement(u64),
    /// No submission with this id.
    UnknownSubmission(u64),
    /// No active user with this id.
    UnknownUser(u64),
    /// A negative amount.
    InvalidAmount(i64),
}

impl fmt::Display for CrmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrmError::UnknownPlacement(id) => write!(f, "no placement {id}"),
            CrmError::UnknownSubmission(id) => write!(f, "no job submission {id}"),
            CrmError::UnknownUser(id) => write!(f, "no active corporate user {id}"),
            CrmError::InvalidAmount(n) => write!(f, "invalid amount {n}"),
        }
    }
}

impl std::error::Error for CrmError {}

/// The money fields of a placement, in exact units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fee {
    /// Yearly salary in cents.
    pub salary_cents: i64,
    /// The fee as a fraction of the salary, in ten-thousandths (`2250` = 0.225 = 22.5 %).
    pub fee_e4: i64,
    /// A flat fee in cents; above zero it replaces `fee × salary`.
    pub flat_fee_cents: i64,
}

impl Fee {
    /// A perm fee: `fee_e4` ten-thousandths of `salary_cents`.
    pub fn percentage(salary_cents: i64, fee_e4: i64) -> Self {
        Self { salary_cents, fee_e4, flat_fee_cents: 0 }
    }

    /// A flat fee.
    pub fn flat(flat_fee_cents: i64) -> Self {
        Self { salary_cents: 0, fee_e4: 0, flat_fee_cents }
    }

    /// No fee (a contract placement).
    pub fn none() -> Self {
        Self::default()
    }
}

/// A placement to add with [`Crm::add_placement`].
#[derive(Clone, Debug)]
pub struct NewPlacement {
    /// The recruiter credited.
    pub owner_id: u64,
    /// Created (default: the fake's clock), epoch ms.
    pub date_added: Option<i64>,
    /// Its money fields.
    pub fee: Fee,
}

/// What a correct connector credits to one recruiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerTotals {
    /// Placements (every existing one).
    pub placements: u64,
    /// Their fees (`flatFee` above zero, else `fee × salary`, when positive), in micros of the
    /// dataset's currency.
    pub placement_fee_micros: i64,
    /// Job submissions that are not deleted.
    pub submissions: u64,
}

impl OwnerTotals {
    /// The fees as a decimal string (`"13725.1125"`, `"0"`).
    pub fn placement_fees(&self) -> String {
        format_micros(self.placement_fee_micros)
    }
}

/// Micros as the shortest exact decimal: `13725112500` → `"13725.1125"`.
pub fn format_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (units, frac) = (abs / 1_000_000, abs % 1_000_000);
    if frac == 0 {
        format!("{sign}{units}")
    } else {
        let digits = format!("{frac:06}");
        format!("{sign}{units}.{}", digits.trim_end_matches('0'))
    }
}

/// Access tokens live 10 minutes, as Bullhorn documents.
const ACCESS_TTL: Duration = Duration::from_secs(600);
/// REST sessions live 10 minutes without a `ttl` (Bullhorn's default).
const SESSION_TTL: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Control {
    client_id: String,
    client_secret: String,
    refresh_token: String,
    spent_refresh_tokens: HashSet<String>,
    access_tokens: HashMap<String, Instant>,
    sessions: HashMap<String, Instant>,
    access_ttl: Duration,
    session_ttl: Duration,
    token_seq: u64,
    refreshes: u64,
    logins: u64,
    faults: VecDeque<Fault>,
    codes: crate::oauth::CodeBook,
    rate_limit_every: Option<u64>,
    rest_calls: u64,
    requests: u64,
    log: Vec<RequestRecord>,
}

/// The fake Bullhorn corporation: data, clock, sessions, faults and request log.
#[derive(Debug)]
pub struct Crm {
    corporation: String,
    corp_token: String,
    currency: String,
    users: Vec<CorporateUser>,
    corporations: Vec<ClientCorporation>,
    contacts: Vec<ClientContact>,
    candidates: Vec<Candidate>,
    job_orders: Vec<JobOrder>,
    placements: BTreeMap<u64, Placement>,
    submissions: BTreeMap<u64, JobSubmission>,
    next_placement_id: u64,
    next_submission_id: u64,
    now_ms: i64,
    control: Mutex<Control>,
}

impl Crm {
    /// Indexes `dataset` for serving, for an API client with `credentials`.
    pub fn new(dataset: Dataset, credentials: Credentials) -> Self {
        let latest = dataset
            .placements
            .iter()
            .map(|p| p.date_last_modified)
            .chain(dataset.submissions.iter().map(|s| s.date_last_modified))
            .max();
        let now_ms = latest.map_or(dataset.now_ms, |t| dataset.now_ms.max(t + 1));
        let next_placement_id = dataset.placements.iter().map(|p| p.id + 1).max().unwrap_or(FIRST_PLACEMENT_ID);
        let next_submission_id = dataset.submissions.iter().map(|s| s.id + 1).max().unwrap_or(FIRST_SUBMISSION_ID);
        let corp_token = corp_token(&dataset.corporation);
        Self {
            corporation: dataset.corporation,
            corp_token,
            currency: dataset.currency,
            users: dataset.users,
            corporations: dataset.corporations,
            contacts: dataset.contacts,
            candidates: dataset.candidates,
            job_orders: dataset.job_orders,
            placements: dataset.placements.into_iter().map(|p| (p.id, p)).collect(),
            submissions: dataset.submissions.into_iter().map(|s| (s.id, s)).collect(),
            next_placement_id,
            next_submission_id,
            now_ms,
            control: Mutex::new(Control {
                client_id: credentials.client_id,
                client_secret: credentials.client_secret,
                refresh_token: credentials.refresh_token,
                spent_refresh_tokens: HashSet::new(),
                access_tokens: HashMap::new(),
                sessions: HashMap::new(),
                access_ttl: ACCESS_TTL,
                session_ttl: SESSION_TTL,
                token_seq: 0,
                refreshes: 0,
                logins: 0,
                faults: VecDeque::new(),
                codes: crate::oauth::CodeBook::default(),
                rate_limit_every: None,
                rest_calls: 0,
                requests: 0,
                log: Vec::new(),
            }),
        }
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ----- clock -----------------------------------------------------------------------

    /// The fake's logical clock, epoch ms: later than every generated time; each mutation
    /// moves it one millisecond on and stamps the changed record's `dateLastModified`.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Moves the clock forward to `at` (never backward). A demo or test whose data ends at
    /// the wall clock calls it with [`Timestamp::now_utc`] before mutating, so that new
    /// modification times are not in the future.
    pub fn set_clock(&mut self, at: Timestamp) {
        self.now_ms = self.now_ms.max(at.unix() * 1000);
    }

    /// Moves the clock forward.
    pub fn advance_clock(&mut self, by: Duration) {
        self.now_ms += by.as_millis() as i64;
    }

    fn tick(&mut self) -> i64 {
        self.now_ms += 1;
        self.now_ms
    }

    // ----- credentials and sessions ----------------------------------------------------

    /// The refresh token that works now (each refresh replaces it).
    pub fn current_refresh_token(&self) -> String {
        self.control().refresh_token.clone()
    }

    /// How many refreshes succeeded.
    pub fn refresh_count(&self) -> u64 {
        self.control().refreshes
    }

    /// How many REST logins succeeded.
    pub fn login_count(&self) -> u64 {
        self.control().logins
    }

    /// Ends every REST session: the next call with any `BhRestToken` gets a 401.
    pub fn expire_sessions(&self) {
        self.control().sessions.clear();
    }

    /// Expires every access token: the next login with one gets a 401.
    pub fn expire_access_tokens(&self) {
        self.control().access_tokens.clear();
    }

    /// Revokes the current refresh token (a user disconnected the app): the next refresh
    /// gets `400 invalid_grant`, and no refresh token works any more.
    pub fn revoke_refresh_token(&self) {
        let mut control = self.control();
        let spent = std::mem::take(&mut control.refresh_token);
        control.spent_refresh_tokens.insert(spent);
    }

    /// How long new access tokens live (default 10 minutes).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.control().access_ttl = ttl;
    }

    /// How long new REST sessions live (default 10 minutes).
    pub fn set_session_ttl(&self, ttl: Duration) {
        self.control().session_ttl = ttl;
    }

    /// The corporation's token, the last segment of its `restUrl` path.
    pub fn corp_token(&self) -> &str {
        &self.corp_token
    }

    // ----- faults and the request log --------------------------------------------------

    /// Makes the next `n` authenticated REST calls fail with `fault` (queued after faults
    /// already pending).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.control().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Answers every `n`th authenticated REST call with a 429 (`None` stops it).
    pub fn rate_limit_every(&self, n: Option<u64>) {
        self.control().rate_limit_every = n.filter(|n| *n > 0);
    }

    /// Drops pending faults and the periodic rate limit.
    pub fn clear_faults(&self) {
        let mut control = self.control();
        control.faults.clear();
        control.rate_limit_every = None;
    }

    /// Every request so far (since the last [`Crm::clear_request_log`]).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.control().log.clone()
    }

    /// How many requests were answered in total.
    pub fn request_count(&self) -> u64 {
        self.control().requests
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.control().log.clear();
    }

    // ----- reading the data ------------------------------------------------------------

    /// The corporation's name stem.
    pub fn corporation(&self) -> &str {
        &self.corporation
    }

    /// The currency every placement is in.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Recruiters, by id (the last one soft-deleted).
    pub fn users(&self) -> &[CorporateUser] {
        &self.users
    }

    /// Recruiters that are not deleted.
    pub fn active_users(&self) -> impl Iterator<Item = &CorporateUser> {
        self.users.iter().filter(|u| !u.is_deleted)
    }

    /// One recruiter.
    pub fn user(&self, id: u64) -> Option<&CorporateUser> {
        self.users.iter().find(|u| u.id == id)
    }

    /// Every placement, by id.
    pub fn placements(&self) -> impl Iterator<Item = &Placement> {
        self.placements.values()
    }

    /// One placement.
    pub fn placement(&self, id: u64) -> Option<&Placement> {
        self.placements.get(&id)
    }

    /// Every submission, deleted ones included, by id.
    pub fn submissions(&self) -> impl Iterator<Item = &JobSubmission> {
        self.submissions.values()
    }

    /// One submission.
    pub fn submission(&self, id: u64) -> Option<&JobSubmission> {
        self.submissions.get(&id)
    }

    /// Candidates.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Client contacts.
    pub fn contacts(&self) -> &[ClientContact] {
        &self.contacts
    }

    /// Client corporations.
    pub fn corporations(&self) -> &[ClientCorporation] {
        &self.corporations
    }

    /// Job orders.
    pub fn job_orders(&self) -> &[JobOrder] {
        &self.job_orders
    }

    // ----- expected results ------------------------------------------------------------

    /// What a correct connector credits to each active recruiter over all time (see
    /// [`Crm::expected_totals_between`]); every active recruiter appears, zeros included.
    pub fn expected_totals(&self) -> BTreeMap<u64, OwnerTotals> {
        self.expected_totals_between(None, None)
    }

    /// What a correct connector credits for events in `[from, to)` (epoch ms): per existing
    /// placement at `dateAdded`, `placements` 1 and its fee (`flatFee` when above zero, else
    /// `fee × salary`, when positive) to `owner`; per job submission not deleted, at
    /// `dateAdded`, `submissions` 1 to `sendingUser`.
    pub fn expected_totals_between(&self, from: Option<i64>, to: Option<i64>) -> BTreeMap<u64, OwnerTotals> {
        let within = |t: i64| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e);
        let mut totals: BTreeMap<u64, OwnerTotals> =
            self.active_users().map(|u| (u.id, OwnerTotals::default())).collect();
        for p in self.placements.values().filter(|p| within(p.date_added)) {
            let t = totals.entry(p.owner_id).or_default();
            t.placements += 1;
            t.placement_fee_micros += p.fee_micros().unwrap_or(0);
        }
        for s in self.submissions.values().filter(|s| !s.is_deleted && within(s.date_added)) {
            totals.entry(s.sending_user_id).or_default().submissions += 1;
        }
        totals
    }

    /// [`Crm::expected_totals`] keyed by the recruiters' e-mails, lowercase.
    pub fn expected_totals_by_email(&self) -> BTreeMap<String, OwnerTotals> {
        let totals = self.expected_totals();
        self.active_users()
            .map(|u| (u.email.to_ascii_lowercase(), totals.get(&u.id).cloned().unwrap_or_default()))
            .collect()
    }

    // ----- personal data ---------------------------------------------------------------

    /// Every personal-data string the fake serves: recruiters' names and e-mails, candidates'
    /// and contacts' names, e-mails and phone numbers, client corporations' names and stems.
    /// Free text (termination reasons) is built from these. Sorted, without duplicates, each
    /// at least 7 characters.
    pub fn canaries(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.user_canaries().into_iter().collect();
        all.extend(self.contact_canaries());
        all.into_iter().collect()
    }

    /// The recruiters' names and e-mails only (a tenant may register its own recruiters
    /// under these e-mails).
    pub fn user_canaries(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.users.iter().flat_map(|u| [u.name(), u.email.clone()]).collect();
        set.into_iter().collect()
    }

    /// Personal data of third parties (candidates, contacts, their companies), which must
    /// never reach the product's storage or logs.
    pub fn contact_canaries(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for c in &self.candidates {
            set.extend([format!("{} {}", c.first_name, c.last_name), c.last_name.clone(), c.email.clone()]);
            set.insert(c.mobile.clone());
        }
        for c in &self.contacts {
            set.extend([format!("{} {}", c.first_name, c.last_name), c.last_name.clone(), c.email.clone()]);
            set.insert(c.phone.clone());
        }
        for c in &self.corporations {
            set.extend([c.name.clone(), c.stem.clone()]);
        }
        set.into_iter().filter(|s| s.len() >= 7).collect()
    }

    // ----- mutations -------------------------------------------------------------------

    fn check_user(&self, id: u64) -> Result<(), CrmError> {
        match self.user(id) {
            Some(u) if !u.is_deleted => Ok(()),
            _ => Err(CrmError::UnknownUser(id)),
        }
    }

    fn change_placement(&mut self, id: u64, change: impl FnOnce(&mut Placement)) -> Result<(), CrmError> {
        if !self.placements.contains_key(&id) {
            return Err(CrmError::UnknownPlacement(id));
        }
        let now = self.tick();
        let placement = self.placements.get_mut(&id).ok_or(CrmError::UnknownPlacement(id))?;
        change(placement);
        placement.date_last_modified = now;
        Ok(())
    }

    /// Adds a placement (created now unless `date_added` says otherwise) and returns its id.
    pub fn add_placement(&mut self, new: NewPlacement) -> Result<u64, CrmError> {
        self.check_user(new.owner_id)?;
        check_fee(new.fee)?;
        let now = self.tick();
        let id = self.next_placement_id;
        self.next_placement_id += 1;
        let job = &self.job_orders[id as usize % self.job_orders.len().max(1)];
        let candidate = &self.candidates[id as usize % self.candidates.len().max(1)];
        let date_added = new.date_added.unwrap_or(now);
        self.placements.insert(
            id,
            Placement {
                id,
                candidate_id: candidate.id,
                job_order_id: job.id,
                owner_id: new.owner_id,
                date_added,
                date_begin: date_added + 14 * DAY_MS,
                date_end: None,
                status: "Placed".to_owned(),
                employment_type: if new.fee == Fee::none() { "Contract" } else { "Direct Hire" }.to_owned(),
                salary_cents: new.fee.salary_cents,
                fee_e4: new.fee.fee_e4,
                flat_fee_cents: new.fee.flat_fee_cents,
                termination_reason: None,
                date_last_modified: now,
            },
        );
        Ok(id)
    }

    /// Changes a placement's salary, fee and flat fee.
    pub fn set_placement_fee(&mut self, id: u64, fee: Fee) -> Result<(), CrmError> {
        check_fee(fee)?;
        self.change_placement(id, |p| {
            p.salary_cents = fee.salary_cents;
            p.fee_e4 = fee.fee_e4;
            p.flat_fee_cents = fee.flat_fee_cents;
        })
    }

    /// Gives a placement to another recruiter.
    pub fn reassign_placement(&mut self, id: u64, owner_id: u64) -> Result<(), CrmError> {
        self.check_user(owner_id)?;
        self.change_placement(id, |p| p.owner_id = owner_id)
    }

    /// Terminates a placement (a status change; it still counts), with a reason quoting the
    /// candidate.
    pub fn terminate_placement(&mut self, id: u64) -> Result<(), CrmError> {
        let reason = self
            .placement(id)
            .and_then(|p| self.candidates.iter().find(|c| c.id == p.candidate_id))
            .map(|c| format!("{} {} withdrew before start", c.first_name, c.last_name));
        self.change_placement(id, |p| {
            p.status = "Terminated".to_owned();
            p.termination_reason = reason;
        })
    }

    /// Deletes a placement for good: Bullhorn has no `isDeleted` on placements, so it simply
    /// disappears from every answer.
    pub fn delete_placement(&mut self, id: u64) -> Result<Placement, CrmError> {
        self.tick();
        self.placements.remove(&id).ok_or(CrmError::UnknownPlacement(id))
    }

    /// Adds a job submission (created now unless `date_added` says otherwise) and returns its
    /// id.
    pub fn add_submission(&mut self, sending_user_id: u64, date_added: Option<i64>) -> Result<u64, CrmError> {
        self.check_user(sending_user_id)?;
        let now = self.tick();
        let id = self.next_submission_id;
        self.next_submission_id += 1;
        let job = &self.job_orders[id as usize % self.job_orders.len().max(1)];
        let candidate = &self.candidates[id as usize % self.candidates.len().max(1)];
        let date_added = date_added.unwrap_or(now);
        self.submissions.insert(
            id,
            JobSubmission {
                id,
                candidate_id: candidate.id,
                job_order_id: job.id,
                sending_user_id,
                status: "Submitted".to_owned(),
                source: "Web".to_owned(),
                date_added,
                date_web_response: Some(date_added),
                is_deleted: false,
                salary_cents: 0,
                date_last_modified: now,
            },
        );
        Ok(id)
    }

    /// Soft-deletes a job submission (`isDeleted: true`; it stays listed).
    pub fn delete_submission(&mut self, id: u64) -> Result<(), CrmError> {
        if !self.submissions.contains_key(&id) {
            return Err(CrmError::UnknownSubmission(id));
        }
        let now = self.tick();
        let s = self.submissions.get_mut(&id).ok_or(CrmError::UnknownSubmission(id))?;
        s.is_deleted = true;
        s.date_last_modified = now;
        Ok(())
    }
}

fn check_fee(fee: Fee) -> Result<(), CrmError> {
    for n in [fee.salary_cents, fee.fee_e4, fee.flat_fee_cents] {
        if n < 0 {
            return Err(CrmError::InvalidAmount(n));
        }
    }
    Ok(())
}

/// A six-character corporation token derived from its name (`7xq9zc` in the fixtures).
fn corp_token(corporation: &str) -> String {
    let seed =
        corporation.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut rng = crate::rng::Rng::new(seed);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6).map(|_| char::from(*rng.pick(ALPHABET))).collect()
}
