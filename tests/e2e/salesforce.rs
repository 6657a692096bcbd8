//! The Salesforce connector end to end: the real component in the real runtime, which does
//! the OAuth refresh against the fake's token endpoint and reads the fake org over loopback
//! HTTP. Every total is compared with what the fake says a correct connector credits
//! (`expected_totals()`), owners mapped from keyed hashes to CRM users through the roster
//! (hash → e-mail) and the fake's users (e-mail → id).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use oneup::cli::FactTable;
use oneup::ingest::{Fact, KeyedHash, Value};
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, SyncOutcome, SyncReport};
use oneup_fake_crm::salesforce::{
    DEFAULT_API_LIMIT, Dataset, DatasetSpec, FakeSalesforce, Fault, NewTask, OwnerTotals,
};
use oneup_tests::*;

const SALESFORCE: &str = "oneup-connector-salesforce";
const CLIENT_ID: &str = "sf-e2e-client";
const CLIENT_SECRET: &str = "sf-e2e-secret-5d1e";

/// One integration: the fake org, a runtime, the loaded connector and the facts so far.
struct Org {
    fake: FakeSalesforce,
    runtime: Runtime,
    connector: LoadedConnector,
    table: Arc<Mutex<FactTable>>,
    /// Owner hash (from the roster) → the fake's user id (through the e-mail).
    owners: BTreeMap<KeyedHash, String>,
}

impl Org {
    async fn start(spec: DatasetSpec) -> Self {
        let fake = FakeSalesforce::start(Dataset::generate_with(&spec), CLIENT_ID, CLIENT_SECRET)
            .await
            .expect("the fake Salesforce starts");
        let runtime = runtime();
        let connector = runtime.load(&component(SALESFORCE)).await.expect("the Salesforce connector loads");
        let mut this = Self { fake, runtime, connector, table: table(), owners: BTreeMap::new() };
        this.owners = this.roster().await;
        this.fake.with(|crm| crm.clear_request_log());
        this
    }

    fn setup(&self) -> IntegrationSetup {
        setup(
            &[("instance_url", &self.fake.base_url()), ("token_url", &self.fake.token_url())],
            &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", self.fake.refresh_token())],
        )
    }

    async fn roster(&self) -> BTreeMap<KeyedHash, String> {
        let roster = self.runtime.roster(&self.connector, self.setup()).await.expect("the roster is read");
        let by_email: BTreeMap<String, String> =
            self.fake.with(|crm| crm.users().iter().map(|u| (u.email.to_ascii_lowercase(), u.id.clone())).collect());
        let owners: BTreeMap<KeyedHash, String> = roster
            .iter()
            .map(|r| (r.owner, by_email.get(&r.email).expect("a roster e-mail of a CRM user").clone()))
            .collect();
        assert_eq!(owners.len(), by_email.len(), "every active CRM user is in the roster, once");
        owners
    }

    async fn sync(&self) -> SyncReport {
        sync_into(&self.runtime, &self.connector, self.setup(), &self.table).await
    }

    fn expected(&self) -> BTreeMap<String, OwnerTotals> {
        self.fake.with(|crm| crm.expected_totals())
    }

    fn totals(&self) -> BTreeMap<String, OwnerTotals> {
        let table = self.table.lock().unwrap();
        owner_totals(table.facts(), &self.owners)
    }

    fn facts(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

/// Sums facts into the fake's shape: every CRM user present, money from micros to hundredths.
fn owner_totals<'a>(
    facts: impl Iterator<Item = &'a Fact>,
    owners: &BTreeMap<KeyedHash, String>,
) -> BTreeMap<String, OwnerTotals> {
    let mut out: BTreeMap<String, OwnerTotals> =
        owners.values().map(|id| (id.clone(), OwnerTotals::default())).collect();
    for fact in facts {
        let id = owners.get(&fact.owner).expect("a fact credited to an owner outside the roster");
        let t = out.get_mut(id).expect("every owner has a row");
        match (fact.metric.as_str(), &fact.value) {
            ("deals_won", Value::Count(1)) => t.deals_won += 1,
            ("calls", Value::Count(1)) => t.calls += 1,
            ("meetings", Value::Count(1)) => t.meetings += 1,
            ("revenue", Value::Money { micros, currency }) => {
                assert_eq!(micros % 10_000, 0, "amounts are whole hundredths, got {micros} micros");
                *t.revenue_cents.entry(currency.as_str().to_owned()).or_default() += micros / 10_000;
            }
            (metric, value) => panic!("unexpected fact {metric} {value:?}"),
        }
    }
    out
}

/// Facts of counts a correct table holds for these totals (revenue facts are counted apart).
fn count_facts(totals: &BTreeMap<String, OwnerTotals>) -> usize {
    totals.values().map(|t| (t.deals_won + t.calls + t.meetings) as usize).sum()
}

#[tokio::test]
async fn a_first_sync_credits_every_owner_exactly_what_the_org_holds() {
    let org = Org::start(DatasetSpec::new(201, 4, 300, 360, 120)).await;
    org.fake.with(|crm| crm.set_page_cap(100));
    let report = org.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);
    let expected = org.expected();
    assert!(expected.values().filter(|t| t.deals_won > 0).count() >= 3);
    let currencies: std::collections::BTreeSet<&String> =
        expected.values().flat_map(|t| t.revenue_cents.keys()).collect();
    assert_eq!(currencies.len(), 4, "USD, GBP, JPY and EUR: {currencies:?}");
    assert_eq!(org.totals(), expected);
    // One fact per won deal, per amount, per call, per meeting; nothing retracted.
    let amounts = org.fake.with(|crm| crm.expected_facts().iter().filter(|f| f.metric == "revenue").count());
    assert_eq!(org.facts(), count_facts(&expected) + amounts);
    assert_eq!(report.stats.retractions, 0);
    // Paged: the first opportunity query needed several pages.
    let log = org.fake.with(|crm| crm.request_log());
    assert!(log.iter().filter(|r| r.path.starts_with("/services/data/v62.0/query/")).count() >= 2);
    assert!(log.iter().all(|r| r.status == 200), "{:?}", log.iter().find(|r| r.status != 200));
    assert!(org.fake.authority().stats().granted >= 1);
}

#[tokio::test]
async fn edits_in_the_org_are_corrected_by_the_next_sync() {
    let org = Org::start(DatasetSpec::new(202, 3, 160, 200, 60)).await;
    assert_eq!(org.sync().await.result, Ok(SyncOutcome::Complete));
    org.fake.with(|crm| crm.clear_request_log());
    let (lost, changed, deleted) = org.fake.with(|crm| {
        let mut won = crm.opportunities().iter().filter(|o| o.is_won && o.amount_cents.is_some()).map(|o| o.id.clone());
        (won.next().unwrap(), won.next().unwrap(), won.next().unwrap())
    });
    let owner = org.fake.with(|crm| crm.users()[1].id.clone());
    org.fake.with(|crm| {
        crm.advance_clock(std::time::Duration::from_secs(60));
        crm.mark_lost(&lost).unwrap();
        crm.set_amount(&changed, Some(4321.09)).unwrap();
        crm.delete_opportunity(&deleted).unwrap();
        let call = crm.tasks().iter().find(|t| t.is_closed_call()).unwrap().id.clone();
        crm.set_task_subtype(&call, "Email").unwrap();
        let event = crm.events()[0].id.clone();
        crm.delete_event(&event).unwrap();
        let now = crm.now();
        crm.add_task(NewTask::call_completed(&owner, now)).unwrap();
        crm.add_event(&owner, now).unwrap();
    });
    let report = org.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);
    assert!(report.stats.retractions >= 6, "lost, deleted, un-called and deleted event: {}", report.stats.retractions);
    assert_eq!(org.totals(), org.expected());
    // The queries were incremental: every one after the first sync has a watermark.
    let log = org.fake.with(|crm| crm.request_log());
    for soql in log.iter().filter_map(|r| r.soql.as_deref()).filter(|q| !q.contains("Organization")) {
        assert!(soql.contains("SystemModstamp > "), "{soql}");
    }
    // A third sync with nothing changed changes nothing.
    let before = org.facts();
    let again = org.sync().await;
    assert_eq!((again.stats.upserts, org.facts()), (0, before));
}

#[tokio::test]
async fn an_expired_session_in_the_middle_of_a_sync_is_refreshed_and_survived() {
    let org = Org::start(DatasetSpec::new(203, 3, 400, 200, 80)).await;
    org.fake.with(|crm| {
        crm.set_page_cap(50);
        crm.set_session_budget(Some(3));
    });
    let report = org.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(org.totals(), org.expected());
    let log = org.fake.with(|crm| crm.request_log());
    assert!(log.iter().any(|r| r.status == 401), "a session expired mid-sync");
    assert!(org.fake.authority().stats().granted >= 3, "{:?}", org.fake.authority().stats());

    // A fault that ends every session at once is survived too.
    org.fake.with(|crm| {
        crm.set_session_budget(None);
        crm.mark_lost(&crm.opportunities().iter().find(|o| o.is_won).unwrap().id.clone()).unwrap();
        crm.fail_next(1, Fault::SessionExpired);
    });
    assert_eq!(org.sync().await.result, Ok(SyncOutcome::Complete));
    assert_eq!(org.totals(), org.expected());
}

#[tokio::test]
async fn a_spent_request_allocation_ends_the_run_and_the_next_one_resumes() {
    let org = Org::start(DatasetSpec::new(204, 3, 300, 150, 50)).await;
    org.fake.with(|crm| {
        crm.set_page_cap(60);
        let used = crm.api_usage();
        crm.set_api_limit(used + 4);
    });
    let report = org.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::BudgetExhausted(None)));
    let cut = org.facts();
    assert!(cut > 0 && org.totals() != org.expected(), "part of the org was read");
    let log = org.fake.with(|crm| crm.request_log());
    let refused: Vec<_> = log.iter().filter(|r| r.status == 403).collect();
    // Paced from `Sforce-Limit-Info`: with the allocation nearly spent, the host stops before
    // the org has to refuse (a 403 `REQUEST_LIMIT_EXCEEDED`).
    assert_eq!(refused.len(), 0, "no request past the allocation");

    // The next day: the allocation is back.
    org.fake.with(|crm| {
        crm.reset_api_usage();
        crm.set_api_limit(DEFAULT_API_LIMIT);
        crm.clear_request_log();
    });
    let report = org.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(org.totals(), org.expected());
    // It resumed from the checkpoint instead of starting over.
    let log = org.fake.with(|crm| crm.request_log());
    let first = log.iter().filter_map(|r| r.soql.as_deref()).find(|q| q.contains("FROM Opportunity")).unwrap();
    assert!(first.contains("SystemModstamp > "), "{first}");
}

#[tokio::test]
async fn a_single_currency_org_is_counted_in_its_corporate_currency() {
    let org = Org::start(DatasetSpec::new(205, 3, 120, 60, 20).single_currency("GBP")).await;
    assert_eq!(org.sync().await.result, Ok(SyncOutcome::Complete));
    let expected = org.expected();
    assert!(expected.values().any(|t| t.revenue_cents.contains_key("GBP")));
    assert_eq!(org.totals(), expected);
    let log = org.fake.with(|crm| crm.request_log());
    assert!(
        log.iter().filter_map(|r| r.soql.as_deref()).any(|q| q == "SELECT DefaultCurrencyIsoCode FROM Organization")
    );
}

#[tokio::test]
async fn no_personal_data_of_the_org_reaches_the_facts_or_the_logs() {
    let logs = capture_logs();
    let org = Org::start(DatasetSpec::new(206, 3, 120, 120, 40)).await;
    assert_eq!(org.sync().await.result, Ok(SyncOutcome::Complete));
    let facts = format!("{:?}", org.table.lock().unwrap().facts().collect::<Vec<_>>());
    let text = logs.text();
    let canaries = org.fake.with(|crm| crm.canaries());
    assert!(canaries.len() > 50);
    for canary in &canaries {
        assert!(!facts.contains(canary.as_str()), "{canary} in the facts");
        assert!(!text.contains(canary.as_str()), "{canary} in the logs");
    }
    // The connector never asked for free text.
    let log = org.fake.with(|crm| crm.request_log());
    for soql in log.iter().filter_map(|r| r.soql.as_deref()) {
        for field in ["Name", "Subject", "Description", "Location"] {
            assert!(!soql.split([' ', ',']).any(|w| w == field), "{soql}");
        }
    }
}

// ----- through the service ------------------------------------------------------------------

/// Salesforce through the real `oneup serve` binary and its HTTP API, on both stores: a tenant
/// in New York counting in USD registers the org's salespeople by their CRM e-mails, enables
/// Salesforce (the fake's token endpoint and instance) and syncs. Every figure the API shows
/// is compared with what the fake says a correct connector credits (`expected_totals_by_email`
/// for totals, `expected_facts` for single days), converted here with the test's own rates in
/// exact integer arithmetic.
mod service {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use oneup_fake_crm::salesforce::{
        DEFAULT_API_LIMIT, Dataset, DatasetSpec, FakeSalesforce, Fault, NewOpportunity, NewTask, Occurred, OwnerTotals,
    };
    use oneup_fake_crm::{Date, Timestamp};
    use oneup_tests::app::{self, str_of};
    use oneup_tests::*;
    use serde_json::{Value as Json, json};

    const CLIENT_ID: &str = "sf-svc-client-7c41e2";
    const CLIENT_SECRET: &str = "sf-svc-secret-b93d0f6a";
    /// The tenant's zone: close dates must land on its days, not on UTC's.
    const TIMEZONE: &str = "America/New_York";
    const TENANT_CURRENCY: &str = "USD";
    /// Rates for the org's other currencies, at most four decimals: a whole number of cents
    /// converts to a whole number of micros, so the expectation is exact.
    const RATES: [(&str, &str); 3] = [("GBP", "1.2734"), ("EUR", "1.0825"), ("JPY", "0.0067")];
    const ALL_TIME: (&str, &str) = ("2000-01-01", "2100-01-01");
    const METRICS: [&str; 4] = ["deals_won", "revenue", "calls", "meetings"];
    /// Prefixes of every access and refresh token the fake's authority issues.
    const TOKEN_PREFIXES: [&str; 2] = ["fake-at-", "fake-rt-"];

    /// One tenant with Salesforce, its service and its database. Fields drop in order: the
    /// service stops before its database is dropped.
    struct Sales {
        service: Service,
        fake: FakeSalesforce,
        tenant: app::Tenant,
        /// The CRM user's e-mail, lower-cased → the tenant user registered under it.
        users: BTreeMap<String, String>,
        db: TestDatabase,
    }

    impl Sales {
        /// A fake org of `spec`, a service on `backend`, the tenant, a user per active CRM
        /// user (neutral names, the CRM e-mail, every other one upper-cased) and the rates.
        /// Salesforce is not enabled yet: see [`Sales::enable_and_sync`].
        async fn start(backend: Backend, spec: DatasetSpec) -> Option<Self> {
            let db = TestDatabase::new(backend).await?;
            let fake = FakeSalesforce::start(Dataset::generate_with(&spec), CLIENT_ID, CLIENT_SECRET)
                .await
                .expect("the fake Salesforce starts");
            // The most talkative logs the service has: the sweep reads them.
            let options = ServiceOptions { log: Some("debug,oneup=trace".to_owned()), ..ServiceOptions::default() };
            let service = Service::start(&db.url, &options).await;
            let api = service.api();
            let tenant = app::Tenant::create(&api, "Harbor Sales", "harbor.example", TIMEZONE, TENANT_CURRENCY).await;
            let crm_users: Vec<String> =
                fake.with(|crm| crm.users().iter().filter(|u| u.is_active).map(|u| u.email.clone()).collect());
            assert!(crm_users.len() >= 3, "an org with salespeople");
            let mut users = BTreeMap::new();
            for (i, email) in crm_users.into_iter().enumerate() {
                let registered = if i % 2 == 1 { email.to_uppercase() } else { email.clone() };
                let (id, _) = tenant.add_user(&format!("Rep {}", i + 1), &registered, "member").await;
                users.insert(email.to_ascii_lowercase(), id);
            }
            let rates: serde_json::Map<String, Json> = RATES.iter().map(|(c, r)| (c.to_string(), json!(r))).collect();
            api.put("/v1/fx-rates", &tenant.admin, &json!({"rates": rates})).await.expect(200);
            Some(Self { service, fake, tenant, users, db })
        }

        fn api(&self) -> &Api {
            &self.tenant.api
        }

        /// `PUT /v1/integrations/salesforce` with the fake's URLs and this refresh token.
        async fn enable(&self, refresh_token: &str) -> Answer {
            let body = json!({
                "config": {"instance_url": self.fake.base_url(), "token_url": self.fake.token_url()},
                "secrets": {"client_id": self.fake.client_id(), "client_secret": self.fake.client_secret(),
                            "refresh_token": refresh_token},
            });
            let answer = self.api().put("/v1/integrations/salesforce", &self.tenant.admin, &body).await;
            for secret in [CLIENT_ID, CLIENT_SECRET, refresh_token] {
                assert!(!answer.text.contains(secret), "the answer shows a secret: {}", answer.text);
            }
            answer
        }

        /// Enables Salesforce (which queues a first run at once) and waits for that first
        /// run: its first CRM request is slowed down, so the run `POST …/sync` answers is the
        /// one the opt-in queued, not a second one. The finished run.
        async fn enable_and_sync(&self) -> Json {
            self.fake.with(|crm| crm.fail_next(1, Fault::Delay(Duration::from_secs(1))));
            let enabled = self.enable(self.fake.refresh_token()).await;
            let enabled = enabled.expect(200);
            assert_eq!(enabled["auth_status"], "ok", "{enabled}");
            assert_eq!(enabled["has_secrets"], true, "{enabled}");
            self.sync_run().await
        }

        /// `POST /v1/integrations/salesforce/sync?wait=true`: the finished run, as it is.
        async fn sync_run(&self) -> Json {
            let answer = self.api().post_empty("/v1/integrations/salesforce/sync?wait=true", &self.tenant.admin).await;
            let run = answer.expect(200).clone();
            assert!(
                matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")),
                "a finished run: {run}"
            );
            run
        }

        /// A sync that must succeed without any error code.
        async fn sync(&self) -> Json {
            let run = self.sync_run().await;
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(run["error"], Json::Null, "{run}");
            assert_eq!(run["events_rejected"], 0, "{run}");
            run
        }

        async fn run(&self, id: &Json) -> Json {
            let id = id.as_str().expect("a run id");
            self.api()
                .get(&format!("/v1/integrations/salesforce/runs/{id}"), &self.tenant.admin)
                .await
                .expect(200)
                .clone()
        }

        async fn runs(&self) -> Vec<Json> {
            let answer = self.api().get("/v1/integrations/salesforce/runs", &self.tenant.admin).await;
            answer.expect(200)["runs"].as_array().expect("runs").clone()
        }

        async fn integration(&self) -> Json {
            self.api().get("/v1/integrations/salesforce", &self.tenant.admin).await.expect(200).clone()
        }

        async fn fact_rows(&self) -> i64 {
            self.db.scalar_i64("SELECT COUNT(*) FROM facts").await
        }

        /// Every tenant user's figure of `metric` over `[from, to)` (local dates) as the
        /// manager sees it: counts, or micros of USD. Asserts the answer's unit and that
        /// nothing is unattributed or waiting for a rate.
        async fn kpis(&self, metric: &str, (from, to): (&str, &str)) -> BTreeMap<String, i128> {
            let path = format!("/v1/kpis?metric={metric}&from={from}&to={to}");
            let answer = self.api().get(&path, &self.tenant.manager).await;
            let body = answer.expect(200);
            let money = metric == "revenue";
            assert_eq!(body["kind"], if money { "money" } else { "count" }, "{body}");
            assert_eq!(body["currency"], TENANT_CURRENCY, "{body}");
            assert_eq!(value(&body["unattributed"]), 0, "{metric}: every owner is mapped: {body}");
            assert_eq!(body["waiting_for_rate"], 0, "{metric}: every currency has a rate: {body}");
            let mut rows = BTreeMap::new();
            for row in body["rows"].as_array().expect("rows") {
                if money {
                    let text = row["value"].as_str().expect("money is a decimal string");
                    assert_eq!(text.split_once('.').map(|(_, f)| f.len()), Some(2), "shown in cents: {text}");
                }
                let previous = rows.insert(str_of(&row["user_id"]), value(&row["value"]));
                assert!(previous.is_none(), "one row per user: {body}");
            }
            rows
        }

        /// What every tenant user should see under `metric` over all time, from the fake's
        /// expected totals: zero for the users who are no CRM user.
        async fn expected(&self, metric: &str) -> BTreeMap<String, i128> {
            let totals = self.fake.with(|crm| crm.expected_totals_by_email());
            let mut out = self.zeros().await;
            for (email, t) in &totals {
                let user = self.users.get(email).unwrap_or_else(|| panic!("a CRM user the tenant registered"));
                out.insert(user.clone(), shown(metric, value_of(t, metric)));
            }
            out
        }

        /// Every tenant user with a zero.
        async fn zeros(&self) -> BTreeMap<String, i128> {
            let users = self.api().get("/v1/users", &self.tenant.manager).await;
            users.expect(200)["users"].as_array().expect("users").iter().map(|u| (str_of(&u["id"]), 0)).collect()
        }

        /// Every metric per user over all time is what the org holds, and the store holds
        /// exactly one fact per expected fact (nothing lost, nothing counted twice).
        async fn assert_totals(&self) {
            for metric in METRICS {
                assert_eq!(self.kpis(metric, ALL_TIME).await, self.expected(metric).await, "{metric} per user");
            }
            let facts = self.fake.with(|crm| crm.expected_facts().len()) as i64;
            assert_eq!(self.fact_rows().await, facts, "one stored fact per expected fact");
        }

        /// Won deals per close date and tenant user: the count and the revenue in micros of
        /// USD (converted fact by fact, exactly).
        fn won_by_close_date(&self) -> BTreeMap<Date, BTreeMap<String, (i128, i128)>> {
            let (facts, emails) = self.fake.with(|crm| {
                let emails: BTreeMap<String, String> =
                    crm.users().iter().map(|u| (u.id.clone(), u.email.to_ascii_lowercase())).collect();
                (crm.expected_facts(), emails)
            });
            let mut out: BTreeMap<Date, BTreeMap<String, (i128, i128)>> = BTreeMap::new();
            for fact in facts {
                let Occurred::On(day) = fact.occurred else { continue };
                let user = self.users[&emails[&fact.owner_id]].clone();
                let entry = out.entry(day).or_default().entry(user).or_default();
                match (fact.metric, fact.revenue) {
                    ("deals_won", _) => entry.0 += 1,
                    ("revenue", Some((currency, cents))) => entry.1 += to_usd_micros(&currency, cents),
                    _ => {}
                }
            }
            out
        }

        /// A KPI query of exactly one close date (in the tenant's zone) counts exactly the
        /// deals closed that day. The day is chosen so that its neighbours differ from it: a
        /// date placed at UTC midnight (the evening before in New York) would fail.
        async fn assert_close_dates_land_on_tenant_days(&self) {
            let by_day = self.won_by_close_date();
            let counts = |day: Date| -> BTreeMap<String, i128> {
                by_day
                    .get(&day)
                    .map(|m| m.iter().map(|(u, v)| (u.clone(), v.0)).filter(|(_, n)| *n > 0).collect())
                    .unwrap_or_default()
            };
            let mut days: Vec<Date> = by_day.keys().copied().collect();
            days.sort_by_key(|d| std::cmp::Reverse(counts(*d).values().sum::<i128>()));
            let day = days
                .into_iter()
                .find(|d| {
                    let (before, after) = (Date::from_days(d.days() - 1), Date::from_days(d.days() + 1));
                    counts(*d) != counts(before) && counts(*d) != counts(after)
                })
                .expect("a close date whose neighbours differ");
            let next = Date::from_days(day.days() + 1);
            let range = (day.to_string(), next.to_string());
            let range = (range.0.as_str(), range.1.as_str());
            let mut want_deals = self.zeros().await;
            let mut want_revenue = want_deals.clone();
            for (user, (deals, micros)) in &by_day[&day] {
                want_deals.insert(user.clone(), *deals);
                want_revenue.insert(user.clone(), shown("revenue", *micros));
            }
            assert!(want_deals.values().sum::<i128>() >= 2, "a day with several deals: {day}");
            assert_eq!(self.kpis("deals_won", range).await, want_deals, "deals won on {day}");
            assert_eq!(self.kpis("revenue", range).await, want_revenue, "revenue closed on {day}");
        }

        /// The privacy sweep over every table and the service's logs: no third party's data
        /// anywhere; the CRM users' names nowhere (the tenant registered neutral names) and
        /// their e-mails only as the tenant's own accounts; no secret or token in the clear.
        async fn sweep(&self, refresh_tokens: &[&str]) {
            let (contacts, users) = self.fake.with(|crm| (crm.contact_canaries(), crm.user_canaries()));
            assert!(contacts.len() > 50 && users.len() >= 6, "the fake served personal data to look for");
            let dump: BTreeMap<String, String> =
                self.db.dump().await.into_iter().map(|(t, rows)| (t, rows.join("\n").to_lowercase())).collect();
            assert!(
                ["facts", "users", "integrations", "sync_runs"].iter().all(|t| dump.contains_key(*t)),
                "{:?}",
                dump.keys()
            );
            let logs = self.service.logs().to_lowercase();
            assert!(logs.contains("run succeeded"), "the logs were captured");
            // Below SQL: the SQLite file, or every relation file of the Postgres database;
            // the control: the tenant's own accounts (the CRM users' e-mails) are found there.
            let raw = String::from_utf8_lossy(&self.db.stored_bytes().await).to_lowercase();
            let own = users.iter().filter(|c| c.contains('@')).collect::<Vec<_>>();
            assert!(
                !own.is_empty() && own.iter().all(|c| raw.contains(&c.to_lowercase())),
                "the raw sweep sees accounts"
            );
            for canary in &contacts {
                for (table, text) in &dump {
                    assert!(!holds(text, canary), "contact data {canary:?} in table {table}");
                }
                assert!(!holds(&logs, canary), "contact data {canary:?} in the logs");
                assert!(!raw.contains(&canary.to_lowercase()), "contact data {canary:?} in the stored bytes");
            }
            for canary in &users {
                let email = canary.contains('@');
                for (table, text) in &dump {
                    if table == "users" && email {
                        assert!(holds(text, canary), "the tenant's own account {canary:?} is in `users`");
                    } else {
                        assert!(!holds(text, canary), "CRM user data {canary:?} in table {table}");
                    }
                }
                assert!(!holds(&logs, canary), "CRM user data {canary:?} in the logs");
                if !email {
                    assert!(!raw.contains(&canary.to_lowercase()), "a CRM user's name {canary:?} in the stored bytes");
                }
            }
            let mut secrets = vec![CLIENT_ID, CLIENT_SECRET, OPERATOR_TOKEN, self.tenant.admin.as_str()];
            secrets.extend(TOKEN_PREFIXES);
            secrets.extend(refresh_tokens);
            for secret in secrets {
                for (table, text) in &dump {
                    assert!(!holds(text, secret), "a secret or token in the clear in table {table}");
                }
                assert!(!holds(&logs, secret), "a secret or token in the logs");
                assert!(!raw.contains(&secret.to_lowercase()), "a secret or token in the stored bytes");
            }
        }
    }

    /// A JSON figure: a count, or a money decimal string as micros.
    fn value(v: &Json) -> i128 {
        match v {
            Json::String(decimal) => micros(decimal),
            other => i128::from(other.as_i64().unwrap_or_else(|| panic!("a count: {other}"))),
        }
    }

    /// `"-12.5"` → -12_500_000 micros (a plain decimal, at most six places).
    fn micros(decimal: &str) -> i128 {
        let (sign, digits) = decimal.strip_prefix('-').map_or((1, decimal), |d| (-1, d));
        let (units, frac) = digits.split_once('.').unwrap_or((digits, ""));
        assert!(
            !units.is_empty() && frac.len() <= 6 && units.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()),
            "not a plain decimal: {decimal}"
        );
        sign * (units.parse::<i128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap())
    }

    /// An amount in hundredths of `currency` as micros of USD, with the test's rates.
    fn to_usd_micros(currency: &str, cents: i64) -> i128 {
        let micros = i128::from(cents) * 10_000;
        if currency == TENANT_CURRENCY {
            return micros;
        }
        let rate = RATES.iter().find(|(c, _)| *c == currency).unwrap_or_else(|| panic!("a rate for {currency}")).1;
        let (int, frac) = rate.split_once('.').unwrap_or((rate, ""));
        let mantissa: i128 = format!("{int}{frac}").parse().expect("a rate");
        let divisor = 10i128.pow(frac.len() as u32);
        let product = micros * mantissa;
        assert_eq!(product % divisor, 0, "the test's rates convert whole cents exactly");
        product / divisor
    }

    /// One CRM user's totals under `metric`: counts, or revenue in micros of USD.
    fn value_of(t: &OwnerTotals, metric: &str) -> i128 {
        match metric {
            "deals_won" => i128::from(t.deals_won),
            "calls" => i128::from(t.calls),
            "meetings" => i128::from(t.meetings),
            "revenue" => t.revenue_cents.iter().map(|(currency, cents)| to_usd_micros(currency, *cents)).sum(),
            other => panic!("unknown metric {other}"),
        }
    }

    /// As the API shows it: money rounded to cents (halves away from zero), counts as they are.
    fn shown(metric: &str, value: i128) -> i128 {
        if metric != "revenue" {
            return value;
        }
        let step = 10_000;
        let rounded = if value >= 0 { (value + step / 2) / step } else { (value - step / 2) / step };
        rounded * step
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `haystack` (lower-cased) holds `needle` in any case, as text or as hex bytes.
    fn holds(haystack: &str, needle: &str) -> bool {
        haystack.contains(&needle.to_lowercase()) || haystack.contains(&hex(needle.as_bytes()))
    }

    fn count_status(fake: &FakeSalesforce, status: u16) -> usize {
        fake.with(|crm| crm.request_log().iter().filter(|r| r.status == status).count())
    }

    on_both_stores!(
        one_tenants_syncs_take_turns_and_never_starve_another,
        totals_days_edits_and_expired_sessions_through_the_api,
        a_spent_request_allocation_is_partial_as_budget_exhausted_and_the_next_sync_completes,
        a_refused_grant_needs_reauthorization_until_the_admin_enables_again,
    );

    /// The instants a finished run started and finished.
    fn span(run: &Json) -> (i64, i64) {
        (run["started_at_ms"].as_i64().expect("started"), run["finished_at_ms"].as_i64().expect("finished"))
    }

    /// Fairness through the real service (one node, the default of one running sync per
    /// tenant): tenant A has a slow Pipedrive sync and a Salesforce sync due at once; tenant
    /// B's Pipedrive sync becomes due after both. A's two runs never overlap, and B does not
    /// wait behind A's queue: its run starts before A's second one.
    async fn one_tenants_syncs_take_turns_and_never_starve_another(backend: Backend) {
        const PD_TOKEN: &str = "fair-pipedrive-token-0b1c";
        let Some(sales) = Sales::start(backend, DatasetSpec::new(512, 3, 40, 40, 20)).await else { return };
        let slow = fake_pipedrive(5120, 3, 30, 30, PD_TOKEN).await;
        // Each of A's Pipedrive requests waits a while: its run holds A's turn for seconds.
        slow.with(|crm| crm.fail_next(4, oneup_fake_crm::pipedrive::Fault::Delay(Duration::from_millis(900))));
        let other = fake_pipedrive(5121, 3, 30, 30, PD_TOKEN).await;
        let api = sales.api().clone();
        let b = app::Tenant::create(&api, "Other Co", "other.example", TIMEZONE, TENANT_CURRENCY).await;

        sales.tenant.enable_pipedrive(&slow.base_url(), PD_TOKEN).await.expect(200);
        sales.enable(sales.fake.refresh_token()).await.expect(200);
        eventually("A's Pipedrive run to start", Duration::from_secs(60), || async {
            let runs = api.get("/v1/integrations/pipedrive/runs", &sales.tenant.admin).await.expect(200).clone();
            (runs["runs"][0]["status"] == "running").then_some(())
        })
        .await;
        b.enable_pipedrive(&other.base_url(), PD_TOKEN).await.expect(200);

        let finished = |token: String, connector: &'static str| {
            let api = api.clone();
            async move {
                let answer = api.get(&format!("/v1/integrations/{connector}/runs"), &token).await;
                let run = answer.expect(200)["runs"][0].clone();
                matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then_some(run)
            }
        };
        let a_pipedrive = eventually("A's Pipedrive run", Duration::from_secs(120), || {
            finished(sales.tenant.admin.clone(), "pipedrive")
        })
        .await;
        let a_salesforce = eventually("A's Salesforce run", Duration::from_secs(120), || {
            finished(sales.tenant.admin.clone(), "salesforce")
        })
        .await;
        let b_pipedrive =
            eventually("B's Pipedrive run", Duration::from_secs(120), || finished(b.admin.clone(), "pipedrive")).await;
        for run in [&a_pipedrive, &a_salesforce, &b_pipedrive] {
            assert_eq!(run["status"], "succeeded", "{run}");
        }
        let (a1, a2, b1) = (span(&a_pipedrive), span(&a_salesforce), span(&b_pipedrive));
        assert!(a2.0 >= a1.1, "A's second sync waited for its first: {a1:?} then {a2:?}");
        assert!(b1.0 < a2.0, "B's sync ({b1:?}) went before A's second ({a2:?}), not behind A's queue");
    }

    /// 1–3 and 6: the first sync's totals and close dates, edits corrected by the next sync
    /// whose sessions expire every few requests, a bounded number of refreshes, the sweep.
    async fn totals_days_edits_and_expired_sessions_through_the_api(backend: Backend) {
        let Some(sales) = Sales::start(backend, DatasetSpec::new(501, 4, 300, 360, 120)).await else { return };
        sales.fake.with(|crm| crm.set_page_cap(100));
        let first = sales.enable_and_sync().await;
        assert_eq!(first["status"], "succeeded", "{first}");
        assert_eq!(first["error"], Json::Null, "{first}");
        let currencies: BTreeSet<String> = sales
            .fake
            .with(|crm| crm.expected_totals().into_values().flat_map(|t| t.revenue_cents.into_keys()).collect());
        assert_eq!(currencies.len(), 4, "USD, GBP, JPY and EUR amounts: {currencies:?}");
        sales.assert_totals().await;
        sales.assert_close_dates_land_on_tenant_days().await;

        // Edits of every kind, then a sync whose sessions expire every three requests.
        let owners: Vec<String> = sales.fake.with(|crm| crm.users().iter().map(|u| u.id.clone()).collect());
        let before = sales.fake.with(|crm| crm.expected_totals_by_email());
        sales.fake.with(|crm| {
            crm.advance_clock(Duration::from_secs(60));
            let mut won = crm
                .opportunities()
                .iter()
                .filter(|o| o.is_won && o.deleted_at.is_none() && o.amount_cents.is_some())
                .map(|o| (o.id.clone(), o.owner_id.clone()))
                .collect::<Vec<_>>()
                .into_iter();
            let (lost, _) = won.next().unwrap();
            let (changed, _) = won.next().unwrap();
            let (deleted, _) = won.next().unwrap();
            let (moved, from) = won.next().unwrap();
            crm.mark_lost(&lost).unwrap();
            crm.set_amount(&changed, Some(4321.09)).unwrap();
            crm.set_currency(&changed, "JPY").unwrap();
            crm.delete_opportunity(&deleted).unwrap();
            let to = owners.iter().find(|o| **o != from).unwrap();
            crm.reassign_opportunity(&moved, to).unwrap();
            let close = crm.now().date();
            crm.add_opportunity(NewOpportunity::won(&owners[2], Some(987.65), "GBP", close)).unwrap();
            let mut calls = crm.tasks().iter().filter(|t| t.is_closed_call()).map(|t| t.id.clone()).collect::<Vec<_>>();
            let reopened = calls.remove(0);
            crm.set_task_closed(&reopened, false).unwrap();
            crm.delete_task(&calls.remove(0)).unwrap();
            let event = crm.events().iter().find(|e| e.deleted_at.is_none()).unwrap().id.clone();
            crm.delete_event(&event).unwrap();
            // Enough new activity that the incremental reads page.
            for i in 0..90 {
                let at = crm.now();
                crm.add_task(NewTask::call_completed(&owners[i % owners.len()], at)).unwrap();
                crm.add_event(&owners[(i + 1) % owners.len()], at).unwrap();
            }
            crm.set_page_cap(40);
            crm.set_session_budget(Some(3));
            crm.clear_request_log();
        });
        assert_ne!(sales.fake.with(|crm| crm.expected_totals_by_email()), before, "the edits matter");
        let refreshes = sales.fake.authority().stats();
        let runs_before = sales.runs().await.len();
        let second = sales.sync().await;
        assert!(
            second["retractions"].as_i64().unwrap() >= 5,
            "lost, deleted, un-closed, deleted call and event: {second}"
        );
        sales.assert_totals().await;
        sales.assert_close_dates_land_on_tenant_days().await;

        // The sessions did expire mid-sync, and refreshes stay bounded: one per run (its
        // roster and sync share the grant) plus one per refused request, no storm.
        let unauthorized = count_status(&sales.fake, 401);
        assert!(unauthorized >= 2, "sessions expired mid-sync: {unauthorized} refusals");
        let runs = sales.runs().await.len() - runs_before;
        assert_eq!(runs, 1);
        let after = sales.fake.authority().stats();
        let calls = after.refresh_calls - refreshes.refresh_calls;
        assert_eq!(calls, (runs + unauthorized) as u64, "{calls} refreshes for {runs} run and {unauthorized} expiries");
        assert_eq!(after.refused, 0);

        // A third sync with nothing changed changes nothing.
        sales.fake.with(|crm| crm.set_session_budget(None));
        let third = sales.sync().await;
        assert_eq!((third["upserts"].as_i64(), third["retractions"].as_i64()), (Some(0), Some(0)), "{third}");
        sales.assert_totals().await;

        sales.sweep(&[sales.fake.refresh_token()]).await;
    }

    /// 4: the org's daily API allocation runs out in the middle of the first sync: the run
    /// is `partial` with the reason `budget_exhausted`, keeps what it checkpointed and puts the next
    /// scheduled sync off; once the allocation is back, a manual sync completes the totals
    /// from the checkpoint, exactly.
    async fn a_spent_request_allocation_is_partial_as_budget_exhausted_and_the_next_sync_completes(backend: Backend) {
        let Some(sales) = Sales::start(backend, DatasetSpec::new(502, 3, 300, 150, 50)).await else { return };
        let won = sales.fake.with(|crm| crm.opportunities().iter().filter(|o| o.is_won).count());
        assert!(won > 60, "the won opportunities take several pages: {won}");
        // Three requests: the roster, the describe, the first page of won opportunities.
        sales.fake.with(|crm| {
            crm.set_page_cap(60);
            crm.set_api_limit(crm.api_usage() + 3);
        });
        let cut = sales.enable_and_sync().await;
        assert_eq!(cut["status"], "partial", "{cut}");
        assert_eq!(cut["reasons"], serde_json::json!(["budget_exhausted"]), "{cut}");
        assert_eq!(cut["error"], Json::Null, "{cut}");
        assert_eq!(sales.run(&cut["id"]).await, cut, "GET …/runs/{{id}} shows the same run");
        let upserts = cut["upserts"].as_i64().unwrap();
        assert!(upserts > 0 && cut["checkpoints"].as_i64().unwrap() >= 1, "a checkpointed page: {cut}");
        assert_eq!(sales.fact_rows().await, upserts, "what was committed is kept");
        assert_eq!(sales.runs().await.len(), 1, "one run");
        // Paced from `Sforce-Limit-Info`: with the allocation nearly spent, the host stopped
        // before the org had to refuse (a 403 `REQUEST_LIMIT_EXCEEDED`).
        assert_eq!(count_status(&sales.fake, 403), 0, "no request past the allocation");
        let deals = sales.kpis("deals_won", ALL_TIME).await;
        let total: i128 = deals.values().sum();
        assert!(total > 0 && total < won as i128, "part of the org was read: {total} of {won}");
        // The next scheduled sync waits for the allocation to come back.
        let now_ms = Timestamp::now_utc().unix() * 1000;
        let next = sales.integration().await["next_sync_at_ms"].as_i64().expect("a next sync");
        assert!(next > now_ms + 30 * 60 * 1000, "the next sync is put off: {next} vs {now_ms}");

        // The next day: the allocation is back.
        sales.fake.with(|crm| {
            crm.reset_api_usage();
            crm.set_api_limit(DEFAULT_API_LIMIT);
            crm.clear_request_log();
        });
        let resumed = sales.sync().await;
        assert_ne!(resumed["id"], cut["id"]);
        sales.assert_totals().await;
        // It resumed from the checkpoint instead of starting over.
        let log = sales.fake.with(|crm| crm.request_log());
        let first = log.iter().filter_map(|r| r.soql.as_deref()).find(|q| q.contains("FROM Opportunity")).unwrap();
        assert!(first.contains("SystemModstamp > "), "{first}");
    }

    /// 5 and 6: the org revokes the refresh token: the run fails with
    /// `needs_reauthorization`, the integration says so, a manual sync does not hammer the
    /// token endpoint, nothing counted is lost; enabling again with a new token clears it
    /// and the next sync catches up exactly.
    async fn a_refused_grant_needs_reauthorization_until_the_admin_enables_again(backend: Backend) {
        let Some(sales) = Sales::start(backend, DatasetSpec::new(503, 3, 150, 120, 40)).await else { return };
        let first = sales.enable_and_sync().await;
        assert_eq!(first["status"], "succeeded", "{first}");
        sales.assert_totals().await;
        let counted = sales.kpis("deals_won", ALL_TIME).await;

        sales.fake.authority().revoke_refresh_tokens();
        sales.fake.with(|crm| {
            crm.advance_clock(Duration::from_secs(60));
            let won = crm.opportunities().iter().find(|o| o.is_won).unwrap().id.clone();
            crm.mark_lost(&won).unwrap();
        });
        let calls = sales.fake.authority().stats().refresh_calls;
        let failed = sales.sync_run().await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["error"], "needs_reauthorization", "{failed}");
        assert_eq!(sales.run(&failed["id"]).await, failed);
        let integration = sales.integration().await;
        assert_eq!(integration["auth_status"], "needs_reauthorization", "{integration}");
        assert!(integration["auth_status_at_ms"].as_i64().is_some(), "{integration}");
        assert_eq!(sales.fake.authority().stats().refresh_calls, calls + 1, "a refusal is final: no retry");
        assert_eq!(sales.kpis("deals_won", ALL_TIME).await, counted, "nothing counted is lost");

        // Asked again by hand: the host does not present the refused grant again.
        let again = sales.sync_run().await;
        assert_eq!(
            (again["status"].as_str(), again["error"].as_str()),
            (Some("failed"), Some("needs_reauthorization"))
        );
        assert_eq!(sales.fake.authority().stats().refresh_calls, calls + 1, "the token endpoint is left alone");

        // The admin connects the org again: a new refresh token.
        let renewed = sales.fake.authority().issue_refresh_token();
        let enabled = sales.enable(&renewed).await;
        assert_eq!(enabled.expect(200)["auth_status"], "ok", "{}", enabled.text);
        assert_eq!(sales.integration().await["auth_status"], "ok");
        sales.sync().await;
        sales.assert_totals().await;
        assert_ne!(sales.kpis("deals_won", ALL_TIME).await, counted, "the lost deal is retracted");

        sales.sweep(&[sales.fake.refresh_token(), renewed.as_str()]).await;
    }
}
