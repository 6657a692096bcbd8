//! The running service, end to end: the real `oneup serve` binary started on port 0, the real
//! Pipedrive component, fake Pipedrive companies on loopback, plain HTTP to the API, on both
//! stores (SQLite in a file of its own, Postgres in a database of its own; the Postgres half
//! is skipped only with `ONEUP_TEST_NO_POSTGRES=1`).
//!
//! What users rely on is asserted through the API (and, for "nothing written" and privacy,
//! through a dump of every table): every total is compared with what the fake says a correct
//! connector credits (`expected_totals()`), through the mapping CRM user → tenant user that
//! the test set up by e-mail. Nothing is hard-coded but the test's own choices.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oneup_fake_crm::pipedrive::{DealStatus, FakePipedrive, Fault, NewDeal, OwnerTotals};
use oneup_fake_crm::{Date, Timestamp};
use oneup_tests::app;
use oneup_tests::*;
use serde_json::{Value as Json, json};

pub(crate) const TOKEN: &str = "pd-service-token-5b2e91";

/// The tenants' zone: a fixed +05:30 all year, so the test can compute local midnights.
const TIMEZONE: &str = "Asia/Kolkata";
const TZ_OFFSET_SECS: i64 = 5 * 3600 + 30 * 60;
/// The tenants' currency, one of the fake's currencies (its amounts need no rate).
const TENANT_CURRENCY: &str = "GBP";
/// Rates for the fake's other currencies. At most four decimals, so that converting whole
/// cents gives whole micros and the expected totals are exact.
const RATES: [(&str, &str); 3] = [("EUR", "0.8512"), ("SEK", "0.0731"), ("USD", "0.7913")];

/// A range holding every generated event.
const ALL_TIME: (&str, &str) = ("2000-01-01", "2100-01-01");
const METRICS: [&str; 4] = ["deals_won", "revenue", "calls", "meetings"];

const LONG: Duration = Duration::from_secs(180);

on_both_stores!(
    sync_resync_fx_and_crm_edits,
    bad_input_is_refused_and_nothing_is_written,
    unmapped_owners_wait_until_mapped_by_crm_id,
    disabling_destroys_secrets_and_purge_drops_the_facts,
    kill_9_mid_sync_then_restart_resumes_without_loss_or_double_count,
    sigterm_mid_sync_stops_gracefully_without_loss_or_double_count,
    a_failed_run_reports_its_error_and_partial_commit_then_the_next_sync_recovers,
    privacy_sweep_of_database_and_logs,
);

// ----- a tenant, through the API ---------------------------------------------------------

/// A tenant as its admin set it up: the admin, a manager, a member and (once added) a user
/// per CRM user, with their tokens.
pub(crate) struct Tenant {
    base: app::Tenant,
    /// CRM user id → tenant user id.
    crm: BTreeMap<u64, String>,
}

impl std::ops::Deref for Tenant {
    type Target = app::Tenant;

    fn deref(&self) -> &app::Tenant {
        &self.base
    }
}

impl std::ops::DerefMut for Tenant {
    fn deref_mut(&mut self) -> &mut app::Tenant {
        &mut self.base
    }
}

impl Tenant {
    /// The operator creates the tenant; its admin adds a manager and a member.
    pub(crate) async fn create(api: &Api, name: &str, domain: &str) -> Self {
        let base = app::Tenant::create(api, name, domain, TIMEZONE, TENANT_CURRENCY).await;
        let me = api.get("/v1/me", &base.member).await;
        assert_eq!(me.expect(200)["tenant"]["id"], base.id.as_str(), "{}", me.text);
        Tenant { base, crm: BTreeMap::new() }
    }

    /// The admin registers the CRM's salespeople under their CRM names and e-mails (every
    /// other one in upper case: matching is case-insensitive), except those in `skip`.
    pub(crate) async fn add_crm_users(&mut self, fake: &FakePipedrive, skip: &[u64]) {
        let users: Vec<(u64, String, String)> =
            fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
        for (i, (crm_id, name, email)) in users.into_iter().enumerate() {
            if skip.contains(&crm_id) {
                continue;
            }
            let email = if i % 2 == 1 { email.to_uppercase() } else { email };
            let (id, _) = self.add_user(&name, &email, "member").await;
            self.crm.insert(crm_id, id);
        }
    }

    /// Every user id of the tenant.
    async fn user_ids(&self) -> BTreeSet<String> {
        let users = self.api.get("/v1/users", &self.manager).await;
        users.expect(200)["users"].as_array().expect("users").iter().map(|u| str_of(&u["id"])).collect()
    }

    /// The admin enables Pipedrive against `fake`.
    pub(crate) async fn enable(&self, fake: &FakePipedrive) -> Answer {
        self.enable_pipedrive(&fake.base_url(), TOKEN).await
    }

    /// The admin sets the exchange rates of [`RATES`].
    pub(crate) async fn set_rates(&self) -> Json {
        let rates: serde_json::Map<String, Json> = RATES.iter().map(|(c, r)| (c.to_string(), json!(r))).collect();
        self.api.put("/v1/fx-rates", &self.admin, &json!({"rates": rates})).await.expect(200).clone()
    }

    /// `POST …/sync?wait=true`: the finished run, which must have succeeded.
    async fn sync(&self) -> Json {
        self.sync_pipedrive().await
    }

    /// The runs of the Pipedrive integration, oldest first.
    pub(crate) async fn runs(&self) -> Vec<Json> {
        let answer = self.api.get("/v1/integrations/pipedrive/runs", &self.admin).await;
        let mut runs = answer.expect(200)["runs"].as_array().expect("runs").clone();
        runs.reverse();
        runs
    }

    pub(crate) async fn run(&self, id: &str) -> Json {
        self.api.get(&format!("/v1/integrations/pipedrive/runs/{id}"), &self.admin).await.expect(200).clone()
    }

    /// Waits until the run has finished and returns it.
    async fn wait_finished(&self, id: &str) -> Json {
        eventually(&format!("run {id} to finish"), LONG, || async move {
            let run = self.run(id).await;
            matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then_some(run)
        })
        .await
    }

    /// `GET /v1/kpis` as the manager.
    async fn kpis(&self, metric: &str, range: (&str, &str)) -> Kpis {
        let path = format!("/v1/kpis?metric={metric}&from={}&to={}", range.0, range.1);
        Kpis::parse(self.api.get(&path, &self.manager).await.expect(200))
    }

    /// The audit log, oldest first.
    async fn audit(&self) -> Vec<Json> {
        let answer = self.api.get("/v1/audit?limit=1000", &self.admin).await;
        answer.expect(200)["entries"].as_array().expect("entries").clone()
    }

    /// Per tenant user, what `totals` (by CRM user) credit them under `metric`, in the
    /// answer's unit (counts, or micros of the tenant currency); every user present.
    async fn expected(
        &self,
        totals: &BTreeMap<u64, OwnerTotals>,
        metric: &str,
        rates: &Rates,
    ) -> BTreeMap<String, i128> {
        let mut out: BTreeMap<String, i128> = self.user_ids().await.into_iter().map(|id| (id, 0)).collect();
        for (crm_id, user) in &self.crm {
            let t = totals.get(crm_id).cloned().unwrap_or_default();
            *out.get_mut(user).expect("a tenant user") = shown(metric, value_of(&t, metric, rates));
        }
        out
    }

    /// Asserts that the KPIs of every metric over all time are what `totals` credit.
    pub(crate) async fn assert_totals(&self, totals: &BTreeMap<u64, OwnerTotals>, rates: &Rates) {
        for metric in METRICS {
            let kpis = self.kpis(metric, ALL_TIME).await;
            assert_eq!(kpis.rows, self.expected(totals, metric, rates).await, "{metric} per user");
            assert_eq!(kpis.unattributed, 0, "{metric}: nothing unattributed");
            assert_eq!(kpis.currency, TENANT_CURRENCY);
            assert_eq!(kpis.kind, if metric == "revenue" { "money" } else { "count" });
        }
    }
}

/// Exchange rates known to the test: currency → (mantissa, scale).
pub(crate) type Rates = BTreeMap<String, (i128, u32)>;

fn no_rates() -> Rates {
    BTreeMap::new()
}

pub(crate) fn all_rates() -> Rates {
    RATES
        .iter()
        .map(|(c, r)| {
            let (int, frac) = r.split_once('.').unwrap_or((r, ""));
            (c.to_string(), (format!("{int}{frac}").parse().expect("a rate"), frac.len() as u32))
        })
        .collect()
}

/// What one CRM user's totals are worth under `metric`: counts as they are; revenue in
/// micros of the tenant currency, amounts in currencies without a rate left out.
fn value_of(t: &OwnerTotals, metric: &str, rates: &Rates) -> i128 {
    match metric {
        "deals_won" => i128::from(t.deals_won),
        "calls" => i128::from(t.calls),
        "meetings" => i128::from(t.meetings),
        "revenue" => t
            .revenue_cents
            .iter()
            .map(|(currency, cents)| {
                let micros = i128::from(*cents) * 10_000;
                if currency == TENANT_CURRENCY {
                    return micros;
                }
                let Some((mantissa, scale)) = rates.get(currency) else { return 0 };
                let product = micros * mantissa;
                let divisor = 10i128.pow(*scale);
                assert_eq!(product % divisor, 0, "the test's rates convert whole cents exactly");
                product / divisor
            })
            .sum(),
        other => panic!("unknown metric {other}"),
    }
}

/// A value as the API shows it: money sums (exact in micros) rounded to the tenant
/// currency's minor units (GBP: cents), halves away from zero; counts as they are.
fn shown(metric: &str, value: i128) -> i128 {
    if metric != "revenue" {
        return value;
    }
    let step = 10_000;
    let rounded = if value >= 0 { (value + step / 2) / step } else { (value - step / 2) / step };
    rounded * step
}

/// A KPI answer: values per user id (counts, or money in micros), unattributed value and
/// amounts waiting for a rate.
#[derive(Debug, PartialEq, Eq)]
struct Kpis {
    kind: String,
    currency: String,
    rows: BTreeMap<String, i128>,
    unattributed: i128,
    waiting_for_rate: u64,
}

impl Kpis {
    fn parse(body: &Json) -> Self {
        let kind = str_of(&body["kind"]);
        let value = |v: &Json| -> i128 {
            match kind.as_str() {
                "count" => i128::from(v.as_i64().unwrap_or_else(|| panic!("a count is an integer: {v}"))),
                "money" => micros(v.as_str().unwrap_or_else(|| panic!("money is a decimal string: {v}"))),
                other => panic!("unknown kind {other}"),
            }
        };
        let mut rows = BTreeMap::new();
        for row in body["rows"].as_array().expect("rows") {
            let previous = rows.insert(str_of(&row["user_id"]), value(&row["value"]));
            assert!(previous.is_none(), "one row per user: {body}");
        }
        // Best first.
        let values: Vec<i128> = body["rows"].as_array().unwrap().iter().map(|r| value(&r["value"])).collect();
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "rows best first: {body}");
        Kpis {
            currency: str_of(&body["currency"]),
            unattributed: value(&body["unattributed"]),
            waiting_for_rate: body["waiting_for_rate"].as_u64().expect("waiting_for_rate"),
            rows,
            kind,
        }
    }
}

/// `"-12.5"` → -12_500_000 micros (at most six decimals).
fn micros(decimal: &str) -> i128 {
    let (sign, digits) = decimal.strip_prefix('-').map_or((1, decimal), |d| (-1, d));
    let (units, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        !units.is_empty() && frac.len() <= 6 && (units.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()),
        "not a plain decimal: {decimal}"
    );
    sign * (units.parse::<i128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap())
}

fn str_of(v: &Json) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

/// Facts a correct store holds for these totals: two per won deal, one per call or meeting.
fn fact_count(totals: &BTreeMap<u64, OwnerTotals>) -> i64 {
    totals.values().map(|t| (2 * t.deals_won + t.calls + t.meetings) as i64).sum()
}

pub(crate) fn expected(fake: &FakePipedrive) -> BTreeMap<u64, OwnerTotals> {
    fake.with(|crm| crm.expected_totals())
}

/// Won, not deleted deals per currency other than the tenant's: the amounts that wait for
/// a rate until one is set.
fn waiting_by_currency(fake: &FakePipedrive) -> BTreeMap<String, u64> {
    fake.with(|crm| {
        let mut out = BTreeMap::new();
        for d in crm.deals() {
            if d.status == DealStatus::Won && !d.is_deleted() && d.currency != TENANT_CURRENCY {
                *out.entry(d.currency.clone()).or_default() += 1;
            }
        }
        out
    })
}

/// The local date (in [`TIMEZONE`]) of an instant, and the instant its local day starts.
fn local_day(at: Timestamp) -> (Date, Timestamp) {
    let date = at.plus_secs(TZ_OFFSET_SECS).date();
    (date, date.start().plus_secs(-TZ_OFFSET_SECS))
}

/// Edits in the CRM of the kinds users make: an amount changed, a deal given to another
/// salesperson, a won deal lost, one deleted, a new deal won, a call deleted and a meeting
/// marked not done.
fn edit_crm(fake: &FakePipedrive) {
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let won: Vec<(u64, u64)> = crm
            .deals()
            .iter()
            .filter(|d| d.status == DealStatus::Won && !d.is_deleted())
            .map(|d| (d.id, d.owner_id))
            .collect();
        assert!(won.len() >= 4, "the fake has enough won deals to edit");
        let users: Vec<u64> = crm.users().iter().map(|u| u.id).collect();
        crm.set_deal_value(won[0].0, 4321.25).expect("amount edited");
        let other = *users.iter().find(|u| **u != won[1].1).expect("another user");
        crm.reassign_deal(won[1].0, other).expect("deal reassigned");
        crm.mark_deal_lost(won[2].0).expect("deal lost");
        crm.delete_deal(won[3].0).expect("deal deleted");
        let now = crm.now();
        crm.add_deal(NewDeal::won(users[0], 999.99, "EUR", now)).expect("deal added");
        let call = crm.activities().iter().find(|a| a.kind == "call" && a.done && !a.deleted).map(|a| a.id);
        crm.delete_activity(call.expect("a done call")).expect("call deleted");
        let meeting = crm.activities().iter().find(|a| a.kind == "meeting" && a.done && !a.deleted).map(|a| a.id);
        crm.set_activity_done(meeting.expect("a done meeting"), false).expect("meeting undone");
    });
}

// ----- 1. the happy path -----------------------------------------------------------------

async fn sync_resync_fx_and_crm_edits(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(301, 4, 240, 300, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    assert_eq!(api.send("GET", "/healthz", None, None).await.expect(200)["status"], "ok");

    let mut t = Tenant::create(&api, "Acme Sales", "acme.example").await;
    t.add_crm_users(&fake, &[]).await;

    // The connector as installed: its metrics are what the consent covers.
    let connectors = api.get("/v1/connectors", &t.member).await;
    let pipedrive = connectors.expect(200)["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["id"] == "pipedrive")
        .expect("pipedrive is installed")
        .clone();
    let metrics: Vec<String> = pipedrive["metrics"].as_array().unwrap().iter().map(|m| str_of(&m["slug"])).collect();
    assert_eq!(metrics.iter().map(String::as_str).collect::<BTreeSet<_>>(), BTreeSet::from(METRICS));

    // The first run starts as soon as the integration is enabled; slow down its first request
    // so that the sync asked for next is that same run.
    fake.with(|crm| crm.fail_next(1, Fault::Delay(Duration::from_secs(2))));
    let enabled = t.enable(&fake).await;
    let body = enabled.expect(200);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["has_secrets"], true);
    assert_eq!(body["config"]["base_url"], fake.base_url());
    assert_eq!(body["enabled_by"], t.admin_id.as_str());
    assert!(!enabled.text.contains(TOKEN), "the API never returns a secret: {}", enabled.text);

    // The consent is in the audit log: who, when, which metrics.
    let audit = t.audit().await;
    let consent = audit.iter().find(|e| e["action"] == "integration.enabled").expect("the consent is audited");
    assert_eq!(consent["actor"], format!("user:{}", t.admin_id));
    assert!(consent["at_ms"].as_i64().unwrap() > 0);
    let subject = str_of(&consent["subject"]);
    assert!(subject.contains("pipedrive"), "{subject}");
    for m in &metrics {
        assert!(subject.contains(m.as_str()), "the consent names {m}: {subject}");
    }

    let run = t.sync().await;
    assert!(run["events_accepted"].as_u64().unwrap() > 0, "{run}");

    let totals = expected(&fake);
    assert!(totals.values().filter(|t| t.deals_won > 0).count() >= 3, "several owners have won deals");
    let waiting = waiting_by_currency(&fake);
    let waiting_total: u64 = waiting.values().sum();
    assert!(waiting.len() >= 2, "amounts in several foreign currencies: {waiting:?}");

    // The first run took everything in once.
    let runs = t.runs().await;
    let first = &runs[0];
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["upserts"].as_i64().unwrap(), fact_count(&totals), "{first}");
    assert_eq!(first["retractions"], 0, "{first}");
    assert_eq!(first["events_rejected"], 0, "{first}");
    assert_eq!(first["unmapped"], 0, "every CRM user matched by e-mail: {first}");
    assert_eq!(first["waiting_for_rate"].as_u64().unwrap(), waiting_total, "{first}");
    assert!(first["checkpoints"].as_u64().unwrap() >= 1, "{first}");
    assert!(first["duration_ms"].as_i64().is_some(), "{first}");

    // Before the rates are set, the amounts in other currencies wait and are reported.
    let fx = api.get("/v1/fx-rates", &t.manager).await;
    let fx = fx.expect(200);
    let reported: BTreeMap<String, u64> =
        fx["waiting_for_rate"].as_object().unwrap().iter().map(|(c, n)| (c.clone(), n.as_u64().unwrap())).collect();
    assert_eq!(reported, waiting);
    t.assert_totals(&totals, &no_rates()).await;
    assert_eq!(t.kpis("revenue", ALL_TIME).await.waiting_for_rate, waiting_total);

    // Setting the rates converts what waited.
    let set = t.set_rates().await;
    assert_eq!(set["converted"].as_u64(), Some(waiting_total), "{set}");
    for (currency, rate) in RATES {
        assert_eq!(set["rates"][currency], rate, "{set}");
    }
    let fx = api.get("/v1/fx-rates", &t.manager).await;
    assert_eq!(fx.expect(200)["waiting_for_rate"], json!({}));
    let rates = all_rates();
    t.assert_totals(&totals, &rates).await;
    assert_eq!(t.kpis("revenue", ALL_TIME).await.waiting_for_rate, 0);
    assert!(t.audit().await.iter().any(|e| e["action"] == "fx_rates.set"));

    // A window in the tenant's time zone: the last 30 local days, `to` exclusive.
    let now = Timestamp::now_utc();
    let (from_date, from_ts) = local_day(now.plus_secs(-30 * 86_400));
    let (to_date, to_ts) = local_day(now.plus_secs(86_400));
    let window = fake.with(|crm| crm.expected_totals_between(Some(from_ts), Some(to_ts)));
    let (from_s, to_s) = (from_date.to_string(), to_date.to_string());
    for metric in METRICS {
        let kpis = t.kpis(metric, (&from_s, &to_s)).await;
        assert_eq!(kpis.rows, t.expected(&window, metric, &rates).await, "{metric} from {from_s} to {to_s}");
    }
    assert_ne!(window, totals, "the window leaves some events out");

    // Syncing again changes nothing.
    let mut before = Vec::new();
    for metric in METRICS {
        before.push(t.kpis(metric, ALL_TIME).await);
    }
    let facts_before = db.scalar_i64("SELECT COUNT(*) FROM facts").await;
    assert_eq!(facts_before, fact_count(&totals));
    t.sync().await;
    for (metric, before) in METRICS.iter().zip(&before) {
        assert_eq!(&t.kpis(metric, ALL_TIME).await, before, "{metric} after a re-sync");
    }
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts_before);

    // Edits in the CRM: after a sync the totals follow.
    edit_crm(&fake);
    let edited = expected(&fake);
    assert_ne!(edited, totals);
    let run = t.sync().await;
    assert!(run["retractions"].as_u64().unwrap() > 0, "{run}");
    t.assert_totals(&edited, &rates).await;
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, fact_count(&edited));
    for run in t.runs().await {
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["attempts"], 1, "{run}");
    }
}

// ----- 2. bad input ----------------------------------------------------------------------

/// Sends a request that must be refused with `status` and change nothing in the database.
struct Refusals<'a> {
    db: &'a TestDatabase,
    api: Api,
    snapshot: BTreeMap<String, Vec<String>>,
}

impl Refusals<'_> {
    async fn refresh(&mut self) {
        self.snapshot = self.db.dump().await;
    }

    /// Asserts the error answer, then that the database is exactly as in the snapshot.
    async fn check_unchanged(&self, what: &str, answer: Answer, status: u16) -> String {
        assert_eq!(answer.status, status, "{what}: answered {}", answer.text);
        let code = answer.expect_error(status);
        let now = self.db.dump().await;
        for (table, rows) in &now {
            assert_eq!(Some(rows), self.snapshot.get(table), "{what}: nothing is written, yet `{table}` changed");
        }
        assert_eq!(now.len(), self.snapshot.len(), "{what}: no table appears or disappears");
        code
    }

    async fn refused(
        &self,
        what: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        status: u16,
    ) -> String {
        let answer = self.api.send(method, path, token, body).await;
        assert_eq!(answer.status, status, "{what}: {method} {path} answered {}", answer.text);
        self.check_unchanged(what, answer, status).await
    }
}

async fn bad_input_is_refused_and_nothing_is_written(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake_a = fake_pipedrive(401, 3, 60, 60, TOKEN).await;
    let fake_b = fake_pipedrive(402, 3, 60, 60, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut a = Tenant::create(&api, "Tenant A", "a.example").await;
    a.add_crm_users(&fake_a, &[]).await;
    let mut b = Tenant::create(&api, "Tenant B", "b.example").await;
    b.add_crm_users(&fake_b, &[]).await;
    a.enable(&fake_a).await.expect(200);
    b.enable(&fake_b).await.expect(200);
    a.sync().await;
    let b_run = str_of(&b.sync().await["id"]);
    let a_team = str_of(&api.post("/v1/teams", &a.admin, &json!({"name": "Closers"})).await.expect(201)["id"]);
    let b_team = str_of(&api.post("/v1/teams", &b.admin, &json!({"name": "Closers"})).await.expect(201)["id"]);
    let b_user = b.member_id.clone();

    let mut r = Refusals { db: &db, api: api.clone(), snapshot: BTreeMap::new() };
    r.refresh().await;
    // One run, or two when the scheduler synced the newly enabled integration before the
    // admin's sync was queued; either way, no bad request below adds one.
    let runs_before = a.runs().await.len();
    assert!((1..=2).contains(&runs_before), "{runs_before} runs");
    let new_user = json!({"name": "New Person", "email": "new.person@a.example", "role": "member"}).to_string();
    let new_tenant = |tz: &str, currency: &str| {
        json!({"name": "T", "timezone": tz, "currency": currency, "admin": {"name": "A", "email": "a@t.example"}})
            .to_string()
    };
    let good_tenant = new_tenant(TIMEZONE, "EUR");

    // 401: no token, a bad token, a token of another scheme.
    r.refused("no token", "POST", "/v1/users", None, Some(&new_user), 401).await;
    r.refused("no token", "GET", "/v1/kpis?metric=deals_won&from=2025-01-01&to=2025-02-01", None, None, 401).await;
    r.refused("no token", "POST", "/v1/tenants", None, Some(&good_tenant), 401).await;
    r.refused("bad token", "POST", "/v1/users", Some("nope"), Some(&new_user), 401).await;
    r.refused("bad token", "POST", "/v1/users", Some("oneup_0123456789abcdef"), Some(&new_user), 401).await;
    r.refused("bad operator token", "POST", "/v1/tenants", Some("operator-guess"), Some(&good_tenant), 401).await;
    let basic = api.send_raw("GET", "/v1/users", &[("authorization", &format!("Basic {}", a.admin))], None).await;
    r.check_unchanged("another auth scheme", basic, 401).await;

    // 403: a valid token of the wrong role. A tenant user's token on the operator's route
    // is such a token (contract: 401 is for no or bad tokens, 403 for a wrong role); so is
    // the operator's token on a tenant route.
    r.refused("admin on operator route", "POST", "/v1/tenants", Some(&a.admin), Some(&good_tenant), 403).await;
    r.refused("member on operator route", "POST", "/v1/tenants", Some(&a.member), Some(&good_tenant), 403).await;
    r.refused("operator on tenant route", "POST", "/v1/users", Some(OPERATOR_TOKEN), Some(&new_user), 403).await;
    let kpis = "/v1/kpis?metric=deals_won&from=2025-01-01&to=2025-02-01";
    r.refused("member on manager route", "GET", kpis, Some(&a.member), None, 403).await;
    r.refused("member reading rates", "GET", "/v1/fx-rates", Some(&a.member), None, 403).await;
    r.refused("manager on admin route", "POST", "/v1/users", Some(&a.manager), Some(&new_user), 403).await;
    let enable_a = json!({"config": {"base_url": fake_a.base_url()}, "secrets": {"api_token": TOKEN}}).to_string();
    r.refused("manager enabling", "PUT", "/v1/integrations/pipedrive", Some(&a.manager), Some(&enable_a), 403).await;
    r.refused("member syncing", "POST", "/v1/integrations/pipedrive/sync", Some(&a.member), None, 403).await;
    r.refused("member disabling", "DELETE", "/v1/integrations/pipedrive?purge=true", Some(&a.member), None, 403).await;
    r.refused("member reading audit", "GET", "/v1/audit", Some(&a.member), None, 403).await;
    let rates = json!({"rates": {"EUR": "2"}}).to_string();
    r.refused("manager setting rates", "PUT", "/v1/fx-rates", Some(&a.manager), Some(&rates), 403).await;
    let token_path = format!("/v1/users/{}/tokens", a.manager_id);
    r.refused("member minting another's token", "POST", &token_path, Some(&a.member), None, 403).await;
    let erase = format!("/v1/users/{}", a.manager_id);
    r.refused("member erasing another user", "DELETE", &erase, Some(&a.member), None, 403).await;

    // 400: malformed JSON, unknown fields, wrong types, bad values.
    let admin = Some(a.admin.as_str());
    r.refused("malformed JSON", "POST", "/v1/users", admin, Some(r#"{"name": "x", "email""#), 400).await;
    r.refused("not an object", "POST", "/v1/users", admin, Some("[1, 2]"), 400).await;
    let unknown = json!({"name": "X", "email": "x@a.example", "role": "member", "is_root": true}).to_string();
    r.refused("unknown field", "POST", "/v1/users", admin, Some(&unknown), 400).await;
    let wrong_type = json!({"name": 5, "email": "x@a.example", "role": "member"}).to_string();
    r.refused("wrong type", "POST", "/v1/users", admin, Some(&wrong_type), 400).await;
    let bad_role = json!({"name": "X", "email": "x@a.example", "role": "owner"}).to_string();
    r.refused("unknown role", "POST", "/v1/users", admin, Some(&bad_role), 400).await;
    let missing = json!({"name": "X", "role": "member"}).to_string();
    r.refused("missing field", "POST", "/v1/users", admin, Some(&missing), 400).await;
    let bad_email = json!({"name": "X", "email": "not an e-mail", "role": "member"}).to_string();
    r.refused("bad e-mail", "POST", "/v1/users", admin, Some(&bad_email), 400).await;
    let auth = format!("Bearer {}", a.admin);
    let headers = [("authorization", auth.as_str()), ("content-type", "text/plain")];
    let no_type = api.send_raw("POST", "/v1/users", &headers, Some(&new_user)).await;
    r.check_unchanged("body without a JSON content type", no_type, 400).await;
    let op = Some(OPERATOR_TOKEN);
    r.refused("bad timezone", "POST", "/v1/tenants", op, Some(&new_tenant("Mars/Olympus_Mons", "EUR")), 400).await;
    r.refused("bad currency", "POST", "/v1/tenants", op, Some(&new_tenant(TIMEZONE, "XYZ")), 400).await;
    r.refused("lower-case currency", "POST", "/v1/tenants", op, Some(&new_tenant(TIMEZONE, "eur")), 400).await;
    let tenant_extra = json!({"name": "T", "timezone": TIMEZONE, "currency": "EUR",
        "admin": {"name": "A", "email": "a@t.example", "role": "admin"}})
    .to_string();
    r.refused("unknown nested field", "POST", "/v1/tenants", op, Some(&tenant_extra), 400).await;
    for (what, body) in [
        ("negative rate", json!({"rates": {"EUR": "-1"}})),
        ("zero rate", json!({"rates": {"EUR": "0"}})),
        ("rate as a number", json!({"rates": {"EUR": 0.85}})),
        ("unknown currency", json!({"rates": {"XYZ": "1.1"}})),
        ("no rates", json!({"rates": {}})),
    ] {
        r.refused(what, "PUT", "/v1/fx-rates", admin, Some(&body.to_string()), 400).await;
    }
    let manager = Some(a.manager.as_str());
    r.refused("bad date", "GET", "/v1/kpis?metric=deals_won&from=2025-13-01&to=2026-01-01", manager, None, 400).await;
    r.refused("missing range", "GET", "/v1/kpis?metric=deals_won", manager, None, 400).await;
    r.refused("bad group_by", "GET", &format!("{kpis}&group_by=planet"), manager, None, 400).await;
    r.refused("empty range", "GET", "/v1/kpis?metric=deals_won&from=2025-02-01&to=2025-01-01", manager, None, 422)
        .await;
    r.refused("unknown metric", "GET", "/v1/kpis?metric=karma&from=2025-01-01&to=2025-02-01", manager, None, 404).await;
    r.refused("bad purge flag", "DELETE", "/v1/integrations/pipedrive?purge=maybe", admin, None, 400).await;

    // 409: an e-mail taken in the tenant, whatever its case; the same address in another
    // tenant is fine.
    let taken = json!({"name": "Twin", "email": "MANAGER@A.EXAMPLE", "role": "member"}).to_string();
    let code = r.refused("duplicate e-mail", "POST", "/v1/users", admin, Some(&taken), 409).await;
    assert_eq!(code, "email_taken");
    let twin = json!({"name": "Twin", "email": "manager@a.example", "role": "member"});
    api.post("/v1/users", &b.admin, &twin).await.expect(201);
    r.refresh().await;

    // Integrations: unknown connector 404; undeclared keys, missing settings 400; a base
    // URL outside the connector's declared hosts 422. The enabled integration is untouched.
    let path = "/v1/integrations/pipedrive";
    let settings = |config: Json, secrets: Json| json!({"config": config, "secrets": secrets}).to_string();
    let url = fake_a.base_url();
    let good = settings(json!({"base_url": url}), json!({"api_token": TOKEN}));
    r.refused("unknown connector", "PUT", "/v1/integrations/hubspot", admin, Some(&good), 404).await;
    r.refused("unknown connector sync", "POST", "/v1/integrations/nosuch/sync", admin, None, 404).await;
    r.refused("unknown connector runs", "GET", "/v1/integrations/nosuch/runs", admin, None, 404).await;
    r.refused("unknown connector disable", "DELETE", "/v1/integrations/nosuch", admin, None, 404).await;
    let extra_config = settings(json!({"base_url": url, "region": "eu"}), json!({"api_token": TOKEN}));
    r.refused("undeclared config key", "PUT", path, admin, Some(&extra_config), 400).await;
    let extra_secret = settings(json!({"base_url": url}), json!({"api_token": TOKEN, "password": "hunter2"}));
    r.refused("undeclared secret key", "PUT", path, admin, Some(&extra_secret), 400).await;
    let no_secret = settings(json!({"base_url": url}), json!({}));
    r.refused("missing secret", "PUT", path, admin, Some(&no_secret), 400).await;
    let empty_secret = settings(json!({"base_url": url}), json!({"api_token": ""}));
    r.refused("empty secret", "PUT", path, admin, Some(&empty_secret), 400).await;
    let no_config = settings(json!({}), json!({"api_token": TOKEN}));
    r.refused("missing config", "PUT", path, admin, Some(&no_config), 400).await;
    let secret_number = json!({"config": {"base_url": url}, "secrets": {"api_token": 42}}).to_string();
    r.refused("secret of the wrong type", "PUT", path, admin, Some(&secret_number), 400).await;
    let too_often = json!({"config": {"base_url": url}, "secrets": {"api_token": TOKEN}, "sync_interval_secs": 1});
    r.refused("sync interval too short", "PUT", path, admin, Some(&too_often.to_string()), 400).await;
    for base in [
        "https://evil.example",
        "http://evil.example",
        "https://acme.pipedrive.com.evil.example",
        "ftp://acme.pipedrive.com",
        "not a url",
    ] {
        let body = settings(json!({"base_url": base}), json!({"api_token": TOKEN}));
        r.refused(&format!("base URL {base}"), "PUT", path, admin, Some(&body), 422).await;
    }

    // 404: another tenant's ids are unknown ids, whoever asks.
    let b_token_path = format!("/v1/users/{b_user}/tokens");
    r.refused("another tenant's user (token)", "POST", &b_token_path, admin, None, 404).await;
    r.refused("another tenant's user (token, member)", "POST", &b_token_path, Some(&a.member), None, 404).await;
    r.refused("another tenant's user (erase)", "DELETE", &format!("/v1/users/{b_user}"), admin, None, 404).await;
    let b_run_path = format!("/v1/integrations/pipedrive/runs/{b_run}");
    r.refused("another tenant's run", "GET", &b_run_path, admin, None, 404).await;
    r.refused(
        "a run under another connector",
        "GET",
        &format!("/v1/integrations/nosuch/runs/{b_run}"),
        Some(&b.admin),
        None,
        404,
    )
    .await;
    r.refused("not an id", "GET", "/v1/integrations/pipedrive/runs/not-a-uuid", admin, None, 404).await;
    let member_path = format!("/v1/teams/{a_team}/members/{b_user}");
    r.refused("another tenant's user in a team", "PUT", &member_path, admin, None, 404).await;
    let team_path = format!("/v1/teams/{b_team}/members/{}", a.member_id);
    r.refused("another tenant's team", "PUT", &team_path, admin, None, 404).await;
    let map = json!({"crm_user_id": "1", "user_id": b_user}).to_string();
    r.refused("mapping to another tenant's user", "PUT", "/v1/integrations/pipedrive/owners", admin, Some(&map), 404)
        .await;
    let bad_crm_id = json!({"crm_user_id": "", "user_id": a.member_id}).to_string();
    r.refused("empty CRM user id", "PUT", "/v1/integrations/pipedrive/owners", admin, Some(&bad_crm_id), 400).await;

    // 404: unknown routes, with the same error body.
    r.refused("unknown route", "GET", "/v1/nope", admin, None, 404).await;
    r.refused("unknown route without a token", "GET", "/nope", None, None, 404).await;
    r.refused("unknown version", "GET", "/v2/users", admin, None, 404).await;

    // A method a route does not have: refused with the same kind of error body.
    let wrong_method = api.send("DELETE", "/v1/kpis", admin, None).await;
    r.check_unchanged("wrong method", wrong_method, 405).await;
    let wrong_method = api.send("PATCH", "/healthz", None, None).await;
    r.check_unchanged("wrong method outside /v1", wrong_method, 405).await;

    // A body over the size limit: refused before it is read, with the same error body.
    let huge = format!(r#"{{"name": "{}", "email": "x@a.example", "role": "member"}}"#, "x".repeat(2 << 20));
    r.refused("body too large", "POST", "/v1/users", admin, Some(&huge), 413).await;

    // The tenant's data is still what it was (checked through the API too).
    assert_eq!(a.user_ids().await.len(), 3 + 3, "admin, manager, member and the CRM users");
    assert_eq!(a.runs().await.len(), runs_before);
}

// ----- 3. owner mapping ------------------------------------------------------------------

async fn unmapped_owners_wait_until_mapped_by_crm_id(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(501, 4, 160, 160, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Mapping Co", "mapping.example").await;
    let totals = expected(&fake);
    // The CRM user with most won deals has no account whose e-mail matches.
    let (&stray, stray_totals) = totals.iter().max_by_key(|(id, t)| (t.deals_won, *id)).expect("a CRM user");
    assert!(stray_totals.deals_won > 0);
    let stray_facts = fact_count(&BTreeMap::from([(stray, stray_totals.clone())]));
    t.add_crm_users(&fake, &[stray]).await;
    t.enable(&fake).await.expect(200);
    t.set_rates().await;
    let rates = all_rates();
    t.sync().await;
    let first = &t.runs().await[0];
    assert_eq!(first["unmapped"].as_i64(), Some(stray_facts), "{first}");

    // The stray owner's facts wait: listed by keyed hash, counted nowhere.
    let owners = api.get("/v1/integrations/pipedrive/owners", &t.admin).await;
    let owners = owners.expect(200);
    assert_eq!(owners["unmapped_owners"], 1, "{owners}");
    assert_eq!(owners["unmapped_facts"].as_i64(), Some(stray_facts), "{owners}");
    assert!(!owners.to_string().contains(&format!("\"{stray}\"")), "the raw CRM id is not shown: {owners}");
    for metric in METRICS {
        let kpis = t.kpis(metric, ALL_TIME).await;
        assert_eq!(kpis.rows, t.expected(&totals, metric, &rates).await, "{metric}: mapped users only");
        let stray_value = shown(metric, value_of(stray_totals, metric, &rates));
        assert_eq!(kpis.unattributed, stray_value, "{metric}: the stray's facts wait");
    }

    // The admin maps the owner by entering its CRM user id: the waiting facts count at once.
    let (sam, _) = t.add_user("Sam Elsewhere", "sam@elsewhere.example", "member").await;
    let mapped = api
        .put("/v1/integrations/pipedrive/owners", &t.admin, &json!({"crm_user_id": stray.to_string(), "user_id": sam}))
        .await;
    assert_eq!(mapped.status, 204, "{}", mapped.text);
    t.crm.insert(stray, sam.clone());
    let owners = api.get("/v1/integrations/pipedrive/owners", &t.admin).await;
    let owners = owners.expect(200);
    assert_eq!(owners["unmapped_owners"], 0, "{owners}");
    assert_eq!(owners["unmapped_facts"], 0, "{owners}");
    assert!(owners["mapped"].as_array().unwrap().iter().any(|m| m["user_id"] == sam.as_str()), "{owners}");
    t.assert_totals(&totals, &rates).await;
    let audit = t.audit().await;
    let entry = audit.iter().find(|e| e["action"] == "owner.mapped").expect("the mapping is audited");
    assert_eq!(entry["actor"], format!("user:{}", t.admin_id));

    // A later sync keeps the mapping, and new deals of that owner count for the user.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let now = crm.now();
        crm.add_deal(NewDeal::won(stray, 100.0, TENANT_CURRENCY, now)).expect("deal added");
    });
    let run = t.sync().await;
    assert_eq!(run["unmapped"], 0, "{run}");
    t.assert_totals(&expected(&fake), &rates).await;
}

// ----- 4. disabling ----------------------------------------------------------------------

async fn disabling_destroys_secrets_and_purge_drops_the_facts(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(601, 3, 120, 120, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Leaving Ltd", "leaving.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.enable(&fake).await.expect(200);
    t.set_rates().await;
    let rates = all_rates();
    t.sync().await;
    let totals = expected(&fake);
    t.assert_totals(&totals, &rates).await;

    // Disabling destroys the credentials; the facts stay unless a purge is asked for.
    let disabled = api.delete("/v1/integrations/pipedrive", &t.admin).await;
    assert_eq!(disabled.status, 204, "{}", disabled.text);
    let integration = api.get("/v1/integrations/pipedrive", &t.admin).await;
    let integration = integration.expect(200);
    assert_eq!(integration["enabled"], false, "{integration}");
    assert_eq!(integration["has_secrets"], false, "{integration}");
    assert_eq!(integration["next_sync_at_ms"], Json::Null, "{integration}");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM integrations WHERE secrets IS NOT NULL").await, 0);
    let requests = fake.with(|crm| crm.request_count());
    for path in ["/v1/integrations/pipedrive/sync", "/v1/integrations/pipedrive/sync?wait=true"] {
        let answer = api.post_empty(path, &t.admin).await;
        assert_eq!(answer.expect_error(409), "integration_disabled");
    }
    t.assert_totals(&totals, &rates).await;
    assert_eq!(fake.with(|crm| crm.request_count()), requests, "a disabled integration reads nothing");
    assert!(t.audit().await.iter().any(|e| e["action"] == "integration.disabled"));

    // With a purge its facts go: every total drops to zero.
    let purged = api.delete("/v1/integrations/pipedrive?purge=true", &t.admin).await;
    assert_eq!(purged.status, 204, "{}", purged.text);
    for metric in METRICS {
        let kpis = t.kpis(metric, ALL_TIME).await;
        assert!(kpis.rows.values().all(|v| *v == 0), "{metric} after the purge: {kpis:?}");
        assert_eq!(kpis.unattributed, 0);
    }
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, 0);
    assert!(t.audit().await.iter().any(|e| e["action"] == "integration.disabled_purged"));

    // Enabled again, it starts over and gets everything back.
    let enabled = t.enable(&fake).await;
    assert_eq!(enabled.expect(200)["has_secrets"], true);
    t.sync().await;
    t.assert_totals(&totals, &rates).await;
}

// ----- 5. kill -9 in the middle of a sync ------------------------------------------------

async fn kill_9_mid_sync_then_restart_resumes_without_loss_or_double_count(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    // 1600 deals: four pages of 500, then the deleted deals and the activities.
    let fake = fake_pipedrive(701, 4, 1600, 300, TOKEN).await;
    let options = ServiceOptions { lease_secs: 3, ..ServiceOptions::default() };
    let mut first = Service::start(&db.url, &options).await;
    let api = first.api();
    let mut t = Tenant::create(&api, "Crash Test", "crash.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.set_rates().await;
    let rates = all_rates();
    let totals = expected(&fake);
    let total_facts = fact_count(&totals);

    // Every CRM request takes a second: the sync is slow enough to be killed in the middle.
    fake.with(|crm| crm.fail_next(1000, Fault::Delay(Duration::from_secs(1))));
    t.enable(&fake).await.expect(200);
    let queued = api.post_empty("/v1/integrations/pipedrive/sync", &t.admin).await;
    let run_id = str_of(&queued.expect(202)["run_id"]);
    let (tenant, id) = (&t, run_id.as_str());
    let checkpoints = eventually("the run's first checkpoint", LONG, || async move {
        let run = tenant.run(id).await;
        assert_ne!(run["status"], "succeeded", "the sync ended before it could be killed: {run}");
        let n = run["checkpoints"].as_u64().unwrap();
        (run["status"] == "running" && n > 0).then_some(n)
    })
    .await;
    first.kill();
    fake.with(|crm| crm.clear_faults());

    // Killed mid-sync: part of the data is in, the run still looks running.
    let partial = db.scalar_i64("SELECT COUNT(*) FROM facts").await;
    assert!(partial > 0 && partial < total_facts, "a partial commit: {partial} of {total_facts} facts");
    eprintln!("killed after {checkpoints} checkpoints with {partial} of {total_facts} facts committed");

    // A new process on the same database takes the run over once its lease expires and
    // finishes it from the last checkpoint.
    let second = Service::start(&db.url, &options).await;
    let mut t = t;
    t.api = second.api();
    let run = t.wait_finished(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["attempts"].as_u64().unwrap() >= 2, "the run was resumed: {run}");
    assert!(run["checkpoints"].as_u64().unwrap() > checkpoints, "{run}");
    assert_eq!(t.runs().await.len(), 1, "the run was resumed, not replaced");
    t.assert_totals(&totals, &rates).await;
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, total_facts, "no loss, no double count");

    // And the resumed integration keeps syncing normally.
    edit_crm(&fake);
    t.sync().await;
    t.assert_totals(&expected(&fake), &rates).await;
}

/// SIGTERM in the middle of a slow sync: the service stops claiming, lets the running sync
/// finish or leaves it at its last checkpoint, and exits cleanly; nothing is lost or
/// counted twice, whichever process completes the run.
async fn sigterm_mid_sync_stops_gracefully_without_loss_or_double_count(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(711, 4, 1600, 300, TOKEN).await;
    let options = ServiceOptions { lease_secs: 3, ..ServiceOptions::default() };
    let mut first = Service::start(&db.url, &options).await;
    let api = first.api();
    let mut t = Tenant::create(&api, "Graceful Stop", "graceful.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.set_rates().await;
    let rates = all_rates();
    let totals = expected(&fake);

    fake.with(|crm| crm.fail_next(1000, Fault::Delay(Duration::from_millis(700))));
    t.enable(&fake).await.expect(200);
    let queued = api.post_empty("/v1/integrations/pipedrive/sync", &t.admin).await;
    let run_id = str_of(&queued.expect(202)["run_id"]);
    let (tenant, id) = (&t, run_id.as_str());
    eventually("the run's first checkpoint", LONG, || async move {
        let run = tenant.run(id).await;
        (run["status"] == "running" && run["checkpoints"].as_u64().unwrap() > 0).then_some(())
    })
    .await;
    first.terminate();
    let status = first.wait_exit(Duration::from_secs(90)).await;
    assert!(status.success(), "a graceful stop exits 0: {status}; logs:\n{}", first.logs());
    fake.with(|crm| crm.clear_faults());

    // Whatever the stopped process left is finished by the next one.
    let second = Service::start(&db.url, &options).await;
    let mut t = t;
    t.api = second.api();
    let run = t.wait_finished(&run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(t.runs().await.len(), 1, "one run, finished once");
    t.assert_totals(&totals, &rates).await;
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, fact_count(&totals), "no loss, no double count");
}

/// A sync that breaks after its first pages (the CRM starts refusing the token): the run
/// says it failed and why, keeps the counts of what it committed, and the next sync resumes
/// from the checkpoint to the right totals.
async fn a_failed_run_reports_its_error_and_partial_commit_then_the_next_sync_recovers(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(721, 3, 1100, 100, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Flaky Crm", "flaky.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.set_rates().await;
    let rates = all_rates();
    let totals = expected(&fake);

    // Request 1 is the roster (slowed down so that the sync asked for next is the first
    // run), request 2 the first page of deals; from request 3 on the token is refused.
    fake.with(|crm| {
        crm.fail_next(1, Fault::Delay(Duration::from_secs(2)));
        crm.fail_next(1, Fault::Delay(Duration::ZERO));
        crm.fail_next(1000, Fault::Unauthorized);
    });
    t.enable(&fake).await.expect(200);
    let answer = api.post_empty("/v1/integrations/pipedrive/sync?wait=true", &t.admin).await;
    let run = answer.expect(200).clone();
    assert_eq!(run["status"], "failed", "{run}");
    let code = str_of(&run["error"]);
    assert!(!code.is_empty() && !code.contains(TOKEN), "a typed error code: {code}");
    let upserts = run["upserts"].as_i64().unwrap();
    assert!(run["checkpoints"].as_u64().unwrap() >= 1 && upserts > 0, "the partial commit is counted: {run}");
    assert!(run["duration_ms"].as_i64().is_some(), "{run}");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, upserts, "the counts match what was committed");
    assert_eq!(t.run(&str_of(&run["id"])).await, run, "GET …/runs/{{id}} shows the same run");

    fake.with(|crm| crm.clear_faults());
    let next = t.sync().await;
    assert_ne!(next["id"], run["id"]);
    t.assert_totals(&totals, &rates).await;
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, fact_count(&totals), "no loss, no double count");
}

// ----- 6. two processes on one Postgres --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_run_every_sync_exactly_once() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let options = |node: &str| ServiceOptions { node_name: Some(node.to_owned()), ..ServiceOptions::default() };
    let nodes = [Service::start(&db.url, &options("node-a")).await, Service::start(&db.url, &options("node-b")).await];
    let apis: Vec<Api> = nodes.iter().map(Service::api).collect();
    let rates = all_rates();

    let mut fakes = Vec::new();
    let mut tenants = Vec::new();
    for i in 0..3u64 {
        let fake = fake_pipedrive(800 + i, 3, 200, 150, TOKEN).await;
        let api = &apis[i as usize % 2];
        let mut t = Tenant::create(api, &format!("Race {i}"), &format!("race{i}.example")).await;
        t.add_crm_users(&fake, &[]).await;
        t.set_rates().await;
        // Enabled through one node, synced through the other.
        t.enable(&fake).await.expect(200);
        t.api = apis[(i as usize + 1) % 2].clone();
        fakes.push(fake);
        tenants.push(t);
    }

    let mut run_ids = BTreeSet::new();
    for round in 0..3 {
        if round > 0 {
            fakes.iter().for_each(edit_crm);
        }
        // Every tenant asks both nodes for a sync at once.
        let mut asks = Vec::new();
        for t in &tenants {
            for api in &apis {
                let (api, token) = (api.clone(), t.admin.clone());
                asks.push(tokio::spawn(async move { api.post_empty("/v1/integrations/pipedrive/sync", &token).await }));
            }
        }
        for ask in asks {
            let answer = ask.await.expect("the request completes");
            run_ids.insert(str_of(&answer.expect(202)["run_id"]));
        }
        for t in &tenants {
            for run in t.runs().await {
                t.wait_finished(&str_of(&run["id"])).await;
            }
        }
    }

    // Every run succeeded at its first and only claim, and every total is right.
    let mut all_runs = BTreeSet::new();
    for (t, fake) in tenants.iter().zip(&fakes) {
        for run in t.runs().await {
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(run["attempts"], 1, "claimed once: {run}");
            all_runs.insert(str_of(&run["id"]));
        }
        t.assert_totals(&expected(fake), &rates).await;
    }
    assert!(run_ids.is_subset(&all_runs));
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM sync_runs").await as usize, all_runs.len());

    // Across both nodes' logs, each run finished exactly once, and no node lost a lease.
    let mut finished: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, node) in nodes.iter().enumerate() {
        for line in node.logs().lines() {
            let Ok(entry) = serde_json::from_str::<Json>(line) else { continue };
            let message = entry["fields"]["message"].as_str().unwrap_or_default();
            assert!(!message.contains("lost its lease"), "node {n}: {line}");
            if message == "run succeeded" {
                finished.entry(str_of(&entry["fields"]["run"])).or_default().push(n);
            }
        }
    }
    assert_eq!(finished.keys().cloned().collect::<BTreeSet<_>>(), all_runs, "every run is logged as finished");
    for (run, by) in &finished {
        assert_eq!(by.len(), 1, "run {run} finished once, not by nodes {by:?}");
    }
    let per_node: Vec<usize> = (0..2).map(|n| finished.values().filter(|by| by[0] == n).count()).collect();
    eprintln!("runs per node: {per_node:?}");
    // Both nodes took work: the runs were shared through the database, not all taken by one.
    assert!(per_node.iter().all(|&n| n > 0), "both nodes ran syncs: {per_node:?}");
}

// ----- 7. the privacy sweep --------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `haystack` (lower-cased) holds `needle` in any case, as text or as hex bytes.
fn holds(haystack: &str, needle: &str) -> bool {
    haystack.contains(&needle.to_lowercase()) || haystack.contains(&hex(needle.as_bytes()))
}

async fn privacy_sweep_of_database_and_logs(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(901, 4, 200, 250, TOKEN).await;
    // The most talkative logs the service has.
    let options = ServiceOptions { log: Some("debug,oneup=trace".to_owned()), ..ServiceOptions::default() };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Privacy Partners", "privacy.example").await;
    let last = fake.with(|crm| crm.users().last().map(|u| u.id).expect("a CRM user"));
    t.add_crm_users(&fake, &[last]).await;
    t.enable(&fake).await.expect(200);
    t.set_rates().await;
    t.sync().await;
    let (sam, _) = t.add_user("Sam Elsewhere", "sam@elsewhere.example", "member").await;
    api.put("/v1/integrations/pipedrive/owners", &t.admin, &json!({"crm_user_id": last.to_string(), "user_id": sam}))
        .await
        .expect(204);
    t.crm.insert(last, sam);
    edit_crm(&fake);
    fake.with(|crm| {
        // A deal whose title and contact are full of personal data.
        let person = crm.persons()[0].id;
        let now = crm.now();
        let mut deal = NewDeal::won(last, 1234.5, "SEK", now);
        deal.person_id = Some(person);
        crm.add_deal(deal).expect("deal added");
    });
    t.sync().await;
    t.assert_totals(&expected(&fake), &all_rates()).await;
    for path in ["/v1/integrations/pipedrive/owners", "/v1/integrations/pipedrive/runs", "/v1/audit", "/v1/users"] {
        api.get(path, &t.admin).await.expect(200);
    }

    let contacts = fake.with(|crm| crm.contact_canaries());
    let users = fake.with(|crm| crm.user_canaries());
    // The tenant registered every CRM user but the last under their CRM name and e-mail.
    let registered: BTreeSet<String> = fake.with(|crm| {
        crm.users().iter().filter(|u| u.id != last).flat_map(|u| [u.name.clone(), u.email.clone()]).collect()
    });
    assert!(contacts.len() > 50 && users.len() >= 8, "the fake served personal data to look for");
    let dump: BTreeMap<String, String> =
        db.dump().await.into_iter().map(|(table, rows)| (table, rows.join("\n").to_lowercase())).collect();
    assert!(dump.contains_key("facts") && dump.contains_key("users") && dump.contains_key("audit_log"));
    let logs = service.logs().to_lowercase();
    assert!(logs.contains("run succeeded"), "the logs were captured");
    eprintln!(
        "sweeping {} tables ({} bytes) and {} bytes of logs for {} contact and {} CRM user strings",
        dump.len(),
        dump.values().map(String::len).sum::<usize>(),
        logs.len(),
        contacts.len(),
        users.len()
    );
    // Below SQL: the SQLite file, or every relation file of the Postgres database. The
    // control: the tenant's own accounts are found there.
    let raw = String::from_utf8_lossy(&db.stored_bytes().await).to_lowercase();
    let seen = registered.iter().filter(|c| c.contains('@')).all(|c| raw.contains(&c.to_lowercase()));
    assert!(seen, "the sweep of the stored bytes ({backend:?}) sees the tenant's own accounts");

    // Third parties' data: nowhere.
    for canary in &contacts {
        for (table, text) in &dump {
            assert!(!holds(text, canary), "contact data {canary:?} in table {table}");
        }
        assert!(!holds(&logs, canary), "contact data {canary:?} in the logs");
        assert!(!raw.contains(&canary.to_lowercase()), "contact data {canary:?} in the stored bytes");
    }
    // The CRM users' names and e-mails: only as the tenant's own accounts.
    for canary in &users {
        for (table, text) in &dump {
            if table == "users" {
                assert_eq!(holds(text, canary), registered.contains(canary), "{canary:?} in `users`");
            } else {
                assert!(!holds(text, canary), "CRM user data {canary:?} in table {table}");
            }
        }
        assert!(!holds(&logs, canary), "CRM user data {canary:?} in the logs");
    }
    // Credentials: the CRM token is sealed, bearer tokens are kept as hashes, none is logged.
    for secret in [TOKEN, OPERATOR_TOKEN, t.admin.as_str(), t.manager.as_str()] {
        for (table, text) in &dump {
            assert!(!holds(text, secret), "a credential in table {table}");
        }
        assert!(!holds(&logs, secret), "a credential in the logs");
        assert!(!raw.contains(&secret.to_lowercase()), "a credential in the stored bytes");
    }
}
