//! The Bullhorn connector end to end: the real component in the real runtime, the host doing
//! the OAuth refresh (single-use refresh tokens kept in a vault across syncs) and the REST
//! login, reading the fake Bullhorn over loopback HTTP. Every total is compared with what the
//! fake says a correct connector credits (`expected_totals()`), owners mapped from keyed
//! hashes to recruiters through the roster (hash → e-mail) and the fake's users (e-mail → id).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneup::cli::FactTable;
use oneup::ingest::{Fact, KeyedHash, Value};
use oneup::runtime::auth::{MemoryVault, TokenVault};
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, SyncOutcome, SyncReport};
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::bullhorn::{
    Credentials, Dataset, DatasetSpec, FakeBullhorn, Fault, Fee, NewPlacement, OwnerTotals, RequestRecord,
};
use oneup_tests::*;

const BULLHORN: &str = "oneup-connector-bullhorn";
const CLIENT_ID: &str = "bh-e2e-client-3f1a";
const CLIENT_SECRET: &str = "bh-e2e-secret-8d2c7e";
const FIRST_REFRESH_TOKEN: &str = "42:bh-e2e-refresh-0001";
const DAY_MS: i64 = 86_400_000;

/// One integration: the fake, a runtime, the loaded connector, the refresh-token vault
/// (what the service's store does across syncs) and the facts committed so far.
struct Bullhorn {
    fake: FakeBullhorn,
    runtime: Runtime,
    connector: LoadedConnector,
    vault: Arc<MemoryVault>,
    table: Arc<Mutex<FactTable>>,
    /// Owner hash (from the roster) → the fake's user id (through the e-mail).
    owners: BTreeMap<KeyedHash, u64>,
}

impl Bullhorn {
    /// Starts a fake corporation whose data ends now and reads the roster.
    async fn start(seed: u64, users: usize, placements: usize, submissions: usize) -> Self {
        let spec =
            DatasetSpec::new(seed, users, placements, submissions).in_currency("EUR").ending_at(Timestamp::now_utc());
        let credentials = Credentials::new(CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN);
        let fake = FakeBullhorn::start(Dataset::generate_with(&spec), credentials).await.expect("the fake starts");
        let runtime = runtime();
        let connector = runtime.load(&component(BULLHORN)).await.expect("the Bullhorn connector loads");
        let vault = Arc::new(MemoryVault::new(FIRST_REFRESH_TOKEN));
        let mut this = Self { fake, runtime, connector, vault, table: table(), owners: BTreeMap::new() };
        this.owners = this.roster().await;
        this.fake.with(|crm| crm.clear_request_log());
        this
    }

    fn setup(&self) -> IntegrationSetup {
        let currency = self.fake.with(|crm| crm.currency().to_owned());
        let mut setup = setup(
            &[("auth_url", &self.fake.auth_url()), ("login_url", &self.fake.login_url()), ("currency", &currency)],
            &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", FIRST_REFRESH_TOKEN)],
        );
        setup.vault = Some(self.vault.clone() as Arc<dyn TokenVault>);
        setup
    }

    /// Maps every roster entry to a recruiter by e-mail; every active recruiter is in it.
    async fn roster(&self) -> BTreeMap<KeyedHash, u64> {
        let roster = self.runtime.roster(&self.connector, self.setup()).await.expect("the roster is read");
        let by_email: BTreeMap<String, u64> =
            self.fake.with(|crm| crm.active_users().map(|u| (u.email.to_ascii_lowercase(), u.id)).collect());
        let owners: BTreeMap<KeyedHash, u64> = roster
            .iter()
            .map(|r| (r.owner, *by_email.get(&r.email).expect("roster e-mails are active recruiters'")))
            .collect();
        assert_eq!(owners.len(), by_email.len(), "every active recruiter is in the roster, once");
        owners
    }

    async fn sync(&self) -> SyncReport {
        sync_into(&self.runtime, &self.connector, self.setup(), &self.table).await
    }

    fn expected(&self) -> BTreeMap<u64, OwnerTotals> {
        self.fake.with(|crm| crm.expected_totals())
    }

    fn totals(&self) -> BTreeMap<u64, OwnerTotals> {
        let currency = self.fake.with(|crm| crm.currency().to_owned());
        owner_totals(self.table.lock().unwrap().facts(), &self.owners, &currency, |_| true)
    }

    fn totals_between(&self, from: i64, to: i64) -> BTreeMap<u64, OwnerTotals> {
        let currency = self.fake.with(|crm| crm.currency().to_owned());
        let table = self.table.lock().unwrap();
        owner_totals(table.facts(), &self.owners, &currency, |f| f.occurred_at_ms >= from && f.occurred_at_ms < to)
    }

    fn requests(&self) -> Vec<RequestRecord> {
        self.fake.with(|crm| crm.request_log())
    }
}

/// Sums facts into the fake's shape: every active recruiter present, counts of 1 per fact,
/// fees in micros of the one configured currency.
fn owner_totals<'a>(
    facts: impl Iterator<Item = &'a Fact>,
    owners: &BTreeMap<KeyedHash, u64>,
    currency: &str,
    keep: impl Fn(&Fact) -> bool,
) -> BTreeMap<u64, OwnerTotals> {
    let mut out: BTreeMap<u64, OwnerTotals> = owners.values().map(|id| (*id, OwnerTotals::default())).collect();
    for fact in facts.filter(|f| keep(f)) {
        let id = owners.get(&fact.owner).expect("a fact credited to an owner outside the roster");
        let t = out.get_mut(id).expect("every owner has a row");
        match (fact.metric.as_str(), &fact.value) {
            ("placements", Value::Count(1)) => t.placements += 1,
            ("submissions", Value::Count(1)) => t.submissions += 1,
            ("placement_fees", Value::Money { micros, currency: c }) => {
                assert_eq!(c.as_str(), currency, "fees are in the configured currency");
                assert!(*micros > 0, "only positive fees are facts");
                t.placement_fee_micros += micros;
            }
            (metric, value) => panic!("unexpected fact {metric} {value:?}"),
        }
    }
    out
}

/// The decoded value of `key` in a raw query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    let raw = query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == key)?.1;
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("an escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8(out).expect("utf-8"))
}

/// The REST reads (query and search) of a request log.
fn reads(log: &[RequestRecord]) -> Vec<&RequestRecord> {
    log.iter().filter(|r| r.path.contains("/query/") || r.path.contains("/search/")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_credits_every_recruiter_exactly_what_bullhorn_holds() {
    let bh = Bullhorn::start(201, 4, 260, 420).await;
    let report = bh.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);
    assert_eq!(report.stats.snapshots, 1, "the placements window was declared and committed");

    let expected = bh.expected();
    assert!(expected.values().filter(|t| t.placements > 0 && t.submissions > 0).count() >= 3);
    assert_eq!(bh.totals(), expected);

    // Each event is dated at its dateAdded: the totals of any period match.
    let now = Timestamp::now_utc().unix() * 1000;
    for (from, to) in [(now - 30 * DAY_MS, now), (now - 120 * DAY_MS, now - 60 * DAY_MS)] {
        assert_eq!(bh.totals_between(from, to), bh.fake.with(|crm| crm.expected_totals_between(Some(from), Some(to))));
    }

    // The connector read with query/ only, asked only for ids, times and money fields, and
    // paged 500 at a time; every REST call carried a live session.
    let log = bh.requests();
    let reads = reads(&log);
    assert!(reads.len() >= 3);
    for r in &reads {
        assert!(r.session_ok && r.status == 200, "{} {}", r.path, r.status);
        let fields = query_value(&r.query, "fields").expect("fields are always named");
        assert!(
            fields == "id,dateAdded,dateLastModified,salary,fee,flatFee,owner(id)"
                || fields == "id,dateAdded,dateLastModified,isDeleted,sendingUser(id)",
            "{fields}"
        );
        assert_eq!(query_value(&r.query, "count").as_deref(), Some("500"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_hard_deletes_and_soft_deletes_reach_the_facts_and_refresh_tokens_rotate() {
    let bh = Bullhorn::start(202, 3, 200, 300).await;
    assert_eq!(bh.sync().await.result, Ok(SyncOutcome::Complete));
    assert_eq!(bh.totals(), bh.expected());
    let after_first = bh.fake.with(|crm| crm.refresh_count());
    assert!(after_first >= 1);
    assert_ne!(bh.fake.with(|crm| crm.current_refresh_token()), FIRST_REFRESH_TOKEN, "the first token is spent");

    let now = Timestamp::now_utc().unix() * 1000;
    let (deleted, old, moved, sub) = bh.fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let fees = |p: &&oneup_fake_crm::bullhorn::Placement| p.fee_micros().is_some();
        // A placement of the last 80 days is deleted outright: only the snapshot can tell.
        let deleted = crm.placements().filter(fees).find(|p| p.date_added > now - 80 * DAY_MS).unwrap().id;
        // One older than the snapshot window gets a flat fee: the incremental read sees it.
        let old = crm.placements().find(|p| p.date_added < now - 100 * DAY_MS).unwrap().id;
        let moved = crm.placements().filter(fees).find(|p| p.id != deleted && p.owner_id != 3101).unwrap().id;
        let sub = crm.submissions().find(|s| !s.is_deleted).unwrap().id;
        crm.delete_placement(deleted).unwrap();
        crm.set_placement_fee(old, Fee::flat(1_234_550)).unwrap();
        crm.reassign_placement(moved, 3101).unwrap();
        crm.delete_submission(sub).unwrap();
        crm.add_placement(NewPlacement { owner_id: 3102, date_added: None, fee: Fee::percentage(6_100_050, 2250) })
            .unwrap();
        crm.add_submission(3103, None).unwrap();
        // Time passes: the access token and the session of the first sync expire, so the next
        // sync must refresh, with the token the first refresh left in the vault.
        crm.expire_access_tokens();
        crm.expire_sessions();
        (deleted, old, moved, sub)
    });
    // Let the wall clock pass the fake's modification stamps: a sync reads changes made
    // before it started.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = bh.totals();
    let report = bh.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty());
    let expected = bh.expected();
    assert_ne!(before, expected, "the changes matter");
    assert_eq!(bh.totals(), expected, "deleted {deleted}, edited {old}, moved {moved}, soft-deleted {sub}");

    // The second sync refreshed with the token the first one left in the vault.
    let refreshes = bh.fake.with(|crm| crm.refresh_count());
    assert!(refreshes > after_first);
    assert_eq!(bh.vault.rotations(), refreshes, "every rotated token was stored");

    // A third sync from the committed cursor changes nothing.
    let third = bh.sync().await;
    assert_eq!(third.result, Ok(SyncOutcome::Complete));
    assert_eq!(bh.totals(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_and_rate_limits_mid_sync_are_survived() {
    let bh = Bullhorn::start(203, 3, 1200, 700).await;
    let logins = bh.fake.with(|crm| crm.login_count());
    bh.fake.with(|crm| {
        // The session ends at the third REST call; every fifth call is rate-limited.
        crm.fail_next(2, Fault::Delay(Duration::ZERO));
        crm.fail_next(1, Fault::SessionExpired);
        crm.rate_limit_every(Some(5));
    });
    let report = bh.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(bh.totals(), bh.expected());
    let log = bh.requests();
    assert!(log.iter().any(|r| r.status == 401), "the session did expire");
    assert!(log.iter().any(|r| r.status == 429), "the rate limit did bite");
    assert!(bh.fake.with(|crm| crm.login_count()) > logins, "the host logged in again");
    assert!(reads(&log).iter().filter(|r| query_value(&r.query, "start").as_deref() == Some("500")).count() >= 1);

    // Rate-limited for good: the sync ends early, keeps what it checkpointed, and asks to
    // resume later instead of failing.
    bh.fake.with(|crm| crm.rate_limit_every(Some(1)));
    let report = bh.sync().await;
    match report.result {
        Ok(SyncOutcome::BudgetExhausted(Some(resume_at))) => {
            assert!(resume_at > Timestamp::now_utc().unix() * 1000, "resumes in the future");
        }
        other => panic!("expected budget exhausted, got {other:?}"),
    }
    bh.fake.with(|crm| crm.clear_faults());
    assert_eq!(bh.totals(), bh.expected(), "nothing was lost or inferred");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_data_reaches_the_facts_or_the_logs() {
    let logs = capture_logs();
    let bh = Bullhorn::start(204, 3, 150, 200).await;
    assert_eq!(bh.sync().await.result, Ok(SyncOutcome::Complete));
    let canaries = bh.fake.with(|crm| crm.canaries());
    assert!(canaries.len() > 100);
    let facts = format!("{:?}", bh.table.lock().unwrap().facts().collect::<Vec<_>>());
    let text = logs.text();
    for canary in &canaries {
        assert!(!facts.contains(canary.as_str()), "a fact holds personal data");
        assert!(!text.contains(canary.as_str()), "the log holds personal data");
    }
    for secret in [CLIENT_SECRET, FIRST_REFRESH_TOKEN] {
        assert!(!text.contains(secret), "the log holds a secret");
    }
}

// ----- through the service ------------------------------------------------------------------

const TENANT_CURRENCY: &str = "USD";
/// One EUR is worth 2 USD: conversions stay exact, so the expected totals are too.
const EUR_RATE: i64 = 2;
const ALL_TIME: &str = "from=2000-01-01&to=2100-01-01";

/// A tenant admin's view of the service: the admin's token and the recruiters' user ids.
struct Agency {
    api: Api,
    admin: String,
    /// Bullhorn user id → tenant user id.
    users: BTreeMap<u64, String>,
}

impl Agency {
    /// The operator creates the tenant; its admin registers every active recruiter by the
    /// e-mail Bullhorn has for them (every other one upper-cased), sets the EUR rate and
    /// enables Bullhorn (the opt-in).
    async fn create(api: Api, fake: &FakeBullhorn) -> Self {
        let created = api
            .post(
                "/v1/tenants",
                OPERATOR_TOKEN,
                &serde_json::json!({"name": "Brindle Recruiting", "timezone": "UTC", "currency": TENANT_CURRENCY,
                                    "admin": {"name": "Agency Admin", "email": "admin@agency.example"}}),
            )
            .await;
        let admin = created.expect(201)["admin"]["token"].as_str().expect("a token").to_owned();
        let mut agency = Self { api, admin, users: BTreeMap::new() };
        let recruiters: Vec<(u64, String, String)> =
            fake.with(|crm| crm.active_users().map(|u| (u.id, u.name(), u.email.clone())).collect());
        for (i, (crm_id, name, email)) in recruiters.into_iter().enumerate() {
            let email = if i % 2 == 1 { email.to_uppercase() } else { email };
            let body = serde_json::json!({"name": name, "email": email, "role": "member"});
            let created = agency.api.post("/v1/users", &agency.admin, &body).await;
            agency.users.insert(crm_id, created.expect(201)["id"].as_str().expect("an id").to_owned());
        }
        let rates = serde_json::json!({"rates": {"EUR": EUR_RATE.to_string()}});
        agency.api.put("/v1/fx-rates", &agency.admin, &rates).await.expect(200);
        let enable = serde_json::json!({
            "config": {"auth_url": fake.auth_url(), "login_url": fake.login_url(), "currency": "EUR"},
            "secrets": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": FIRST_REFRESH_TOKEN},
        });
        let enabled = agency.api.put("/v1/integrations/bullhorn", &agency.admin, &enable).await;
        enabled.expect(200);
        assert!(!enabled.text.contains(CLIENT_SECRET) && !enabled.text.contains(FIRST_REFRESH_TOKEN));
        agency
    }

    /// `POST …/sync?wait=true`, which must succeed.
    async fn sync(&self) {
        let run = self.api.post_empty("/v1/integrations/bullhorn/sync?wait=true", &self.admin).await;
        let run = run.expect(200);
        assert_eq!(run["status"], "succeeded", "{run}");
    }

    /// Per tenant user, the value of `metric` over all time: counts, or micros of USD.
    async fn kpis(&self, metric: &str) -> BTreeMap<String, i128> {
        let answer = self.api.get(&format!("/v1/kpis?metric={metric}&{ALL_TIME}"), &self.admin).await;
        let body = answer.expect(200);
        assert_eq!(body["currency"], TENANT_CURRENCY);
        body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|row| self.users.values().any(|u| row["user_id"] == u.as_str()))
            .map(|row| {
                let value = match &row["value"] {
                    serde_json::Value::String(decimal) => decimal_micros(decimal),
                    other => i128::from(other.as_i64().expect("a count")),
                };
                (row["user_id"].as_str().unwrap().to_owned(), value)
            })
            .collect()
    }

    /// Asserts every metric per recruiter against the fake's expected totals, fees
    /// converted at the EUR rate and shown to the cent.
    async fn assert_totals(&self, fake: &FakeBullhorn) {
        let expected = fake.with(|crm| crm.expected_totals());
        for metric in ["placements", "placement_fees", "submissions"] {
            let want: BTreeMap<String, i128> = self
                .users
                .iter()
                .map(|(crm_id, user)| {
                    let t = expected.get(crm_id).cloned().unwrap_or_default();
                    let value = match metric {
                        "placements" => i128::from(t.placements),
                        "submissions" => i128::from(t.submissions),
                        _ => round_to_cents(i128::from(t.placement_fee_micros) * i128::from(EUR_RATE)),
                    };
                    (user.clone(), value)
                })
                .collect();
            assert_eq!(self.kpis(metric).await, want, "{metric} per recruiter");
        }
    }
}

/// Micros rounded to whole cents, halves away from zero.
fn round_to_cents(micros: i128) -> i128 {
    let step = 10_000;
    let rounded = if micros >= 0 { (micros + step / 2) / step } else { (micros - step / 2) / step };
    rounded * step
}

/// `"12345.67"` → micros.
fn decimal_micros(text: &str) -> i128 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 6, "{text}");
    let micros = int.parse::<i128>().expect("digits") * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap();
    if negative { -micros } else { micros }
}

async fn service_syncs_deletes_rotates_tokens_and_keeps_no_personal_data(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let spec = DatasetSpec::new(301, 3, 220, 320).in_currency("EUR").ending_at(Timestamp::now_utc());
    let credentials = Credentials::new(CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN);
    let fake = FakeBullhorn::start(Dataset::generate_with(&spec), credentials).await.expect("the fake starts");
    let options = ServiceOptions { log: Some("debug,oneup=trace".to_owned()), ..ServiceOptions::default() };
    let service = Service::start(&db.url, &options).await;
    let agency = Agency::create(service.api(), &fake).await;
    agency.sync().await;
    agency.assert_totals(&fake).await;
    let refreshes = fake.with(|crm| crm.refresh_count());
    assert!(refreshes >= 1);

    // Bullhorn deletes a recent placement outright, soft-deletes a submission, and the
    // session of the next sync expires halfway.
    let now = Timestamp::now_utc().unix() * 1000;
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let recent = crm.placements().find(|p| p.fee_micros().is_some() && p.date_added > now - 60 * DAY_MS);
        crm.delete_placement(recent.expect("a recent placement").id).unwrap();
        let live = crm.submissions().find(|s| !s.is_deleted).expect("a live submission").id;
        crm.delete_submission(live).unwrap();
        crm.fail_next(1, Fault::Delay(Duration::ZERO));
        crm.fail_next(1, Fault::SessionExpired);
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The second sync refreshes with the token the first one stored (the one given at the
    // opt-in is spent: Bullhorn would refuse it).
    agency.sync().await;
    agency.assert_totals(&fake).await;
    assert!(fake.with(|crm| crm.refresh_count()) > refreshes);
    assert!(fake.with(|crm| crm.request_log()).iter().any(|r| r.status == 401), "the session did expire");

    // The sweep: no third party's data in any table or log, no secret in the clear.
    let contacts = fake.with(|crm| crm.contact_canaries());
    assert!(contacts.len() > 50);
    let dump = db.dump().await;
    let logs = service.logs().to_lowercase();
    let current_refresh = fake.with(|crm| crm.current_refresh_token());
    for (table, rows) in &dump {
        let text = rows.join("\n").to_lowercase();
        for canary in &contacts {
            assert!(!text.contains(&canary.to_lowercase()), "contact data {canary:?} in table {table}");
        }
        for secret in [CLIENT_SECRET, FIRST_REFRESH_TOKEN, current_refresh.as_str()] {
            assert!(!text.contains(&secret.to_lowercase()), "a secret in the clear in table {table}");
        }
    }
    for canary in &contacts {
        assert!(!logs.contains(&canary.to_lowercase()), "contact data {canary:?} in the logs");
    }
    for secret in [CLIENT_SECRET, FIRST_REFRESH_TOKEN, current_refresh.as_str()] {
        assert!(!logs.contains(&secret.to_lowercase()), "a secret in the logs");
    }
}

on_both_stores!(service_syncs_deletes_rotates_tokens_and_keeps_no_personal_data);
