//! The data rights of a team member, end to end on both stores: the personal export
//! (`GET /v1/me/export`) and erasure (`DELETE /v1/users/{id}`), through the real service,
//! the real Pipedrive component and a fake Pipedrive on loopback.
//!
//! What the product promises and these tests hold it to: the export holds every fact of the
//! caller (checked against what the fake CRM says a correct connector credits them) and
//! nothing of anyone else; erasure leaves every team total and the tenant total exactly as
//! they were, leaves the person's name and e-mail nowhere (every table, the raw SQLite file,
//! the logs), and later syncs neither re-attach the erased records to anyone nor count
//! anything twice, while edits and retractions in the CRM still correct the totals.

use std::collections::BTreeMap;

use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{DealStatus, FakePipedrive, NewDeal, OwnerTotals};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-privacy-token-7c19e4";
const CURRENCY: &str = "GBP";
const ALL_TIME: (&str, &str) = ("2000-01-01", "2100-01-01");
const METRICS: [&str; 4] = ["deals_won", "revenue", "calls", "meetings"];

on_both_stores!(
    export_is_complete_and_only_the_callers,
    erasure_keeps_totals_and_leaves_no_trace,
    the_register_says_what_is_kept_why_and_for_how_long,
    roles_change_and_the_tenant_always_keeps_an_admin,
);

/// A tenant whose admin registered the fake CRM's salespeople (by CRM name and e-mail).
struct Setup {
    t: app::Tenant,
    /// CRM user id → (tenant user id, token, name, e-mail).
    people: BTreeMap<u64, (String, String, String, String)>,
    /// The first sync's run.
    run: Json,
}

impl Setup {
    /// Creates the tenant, registers every CRM user but those in `skip`, enables Pipedrive
    /// against `fake` and syncs.
    async fn new(api: &Api, name: &str, domain: &str, fake: &FakePipedrive, skip: &[u64]) -> Self {
        let t = app::Tenant::create(api, name, domain, "UTC", CURRENCY).await;
        let crm: Vec<(u64, String, String)> =
            fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
        let mut people = BTreeMap::new();
        for (crm_id, name, email) in crm {
            if skip.contains(&crm_id) {
                continue;
            }
            let (id, token) = t.add_user(&name, &email, "member").await;
            people.insert(crm_id, (id, token, name, email));
        }
        t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
        let run = t.sync_pipedrive().await;
        Setup { t, people, run }
    }
}

/// A figure as an integer: counts as they are, money (a decimal string) in cents.
fn number(v: &Json) -> i128 {
    match v {
        Json::Number(n) => i128::from(n.as_i64().expect("an integer")),
        Json::String(s) => cents(s),
        other => panic!("not a figure: {other}"),
    }
}

/// A decimal string with at most two places, in hundredths.
fn cents(s: &str) -> i128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 2 || frac[2..].chars().all(|c| c == '0'), "more than cents: {s}");
    let frac = format!("{:0<2}", &frac[..frac.len().min(2)]);
    let sign = if int.starts_with('-') { -1 } else { 1 };
    let whole: i128 = int.trim_start_matches('-').parse().expect("a decimal");
    sign * (whole * 100 + frac.parse::<i128>().expect("a decimal"))
}

/// `GET /v1/kpis` over all time as the manager: values by user or team id, and the
/// unattributed figure.
async fn figures(t: &app::Tenant, metric: &str, group_by: &str) -> (BTreeMap<String, i128>, i128) {
    let path = format!("/v1/kpis?metric={metric}&from={}&to={}&group_by={group_by}", ALL_TIME.0, ALL_TIME.1);
    let answer = t.api.get(&path, &t.manager).await;
    let body = answer.expect(200);
    let key = if group_by == "team" { "team_id" } else { "user_id" };
    let rows = body["rows"].as_array().expect("rows").iter().map(|r| (str_of(&r[key]), number(&r["value"]))).collect();
    (rows, number(&body["unattributed"]))
}

/// Every figure that must survive an erasure: per metric, the teams' totals, the users'
/// rows and the tenant total (every row plus what is unattributed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    teams: BTreeMap<String, BTreeMap<String, i128>>,
    users: BTreeMap<String, BTreeMap<String, i128>>,
    tenant: BTreeMap<String, i128>,
}

async fn snapshot(t: &app::Tenant) -> Snapshot {
    let mut s = Snapshot { teams: BTreeMap::new(), users: BTreeMap::new(), tenant: BTreeMap::new() };
    for metric in METRICS {
        let (teams, _) = figures(t, metric, "team").await;
        let (users, unattributed) = figures(t, metric, "user").await;
        s.tenant.insert(metric.to_owned(), users.values().sum::<i128>() + unattributed);
        s.teams.insert(metric.to_owned(), teams);
        s.users.insert(metric.to_owned(), users);
    }
    s
}

/// `GET /v1/me/export` with `token` (plain HTTP, to see the headers): status, the
/// `Content-Disposition` header, the body.
async fn export(base: &str, token: &str, query: &str) -> (u16, String, String) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/me/export{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the service answers");
    let status = resp.status().as_u16();
    let disposition =
        resp.headers().get("content-disposition").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default();
    (status, disposition, resp.text().await.expect("a body"))
}

/// What a correct connector credits a CRM user with, as the facts an export lists: per
/// metric, how many facts; for revenue, the cents per currency.
fn expected_facts(t: &OwnerTotals) -> (BTreeMap<String, u64>, BTreeMap<String, i128>) {
    let counts = BTreeMap::from([
        ("deals_won".to_owned(), t.deals_won),
        ("revenue".to_owned(), t.deals_won),
        ("calls".to_owned(), t.calls),
        ("meetings".to_owned(), t.meetings),
    ]);
    let revenue = t.revenue_cents.iter().map(|(c, v)| (c.clone(), i128::from(*v))).collect();
    (counts.into_iter().filter(|(_, n)| *n > 0).collect(), revenue)
}

/// The facts of an export, as [`expected_facts`] sees them.
fn exported_facts(export: &Json) -> (BTreeMap<String, u64>, BTreeMap<String, i128>) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut revenue: BTreeMap<String, i128> = BTreeMap::new();
    for f in export["facts"].as_array().expect("facts") {
        assert_eq!(f["connector"], "pipedrive", "{f}");
        assert!(f["occurred_at"].as_str().is_some_and(|s| s.ends_with('Z')), "{f}");
        let metric = str_of(&f["metric"]);
        *counts.entry(metric.clone()).or_default() += 1;
        match metric.as_str() {
            "revenue" => *revenue.entry(str_of(&f["currency"])).or_default() += cents(&str_of(&f["value"])),
            _ => assert_eq!(f["value"], 1, "{f}"),
        }
    }
    (counts, revenue)
}

// ----- the processing register ----------------------------------------------------------

/// Every user may read the processing register; it names every category the service keeps
/// (the engine's targets, contests and points among them), each with its purpose and
/// retention, no processor until the tenant switches the support messenger on (see
/// `retention.rs`), and what is never kept. Without a token: 401.
async fn the_register_says_what_is_kept_why_and_for_how_long(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Register Co", "register.example", "UTC", CURRENCY).await;

    let anonymous = api.send("GET", "/v1/privacy/register", None, None).await;
    assert_eq!(anonymous.expect_error(401), "unauthorized");
    let register = api.get("/v1/privacy/register", &t.member).await;
    let body = register.expect(200);
    let categories = body["categories"].as_array().expect("a list of categories");
    let names: Vec<&str> = categories.iter().map(|c| c["category"].as_str().expect("a name")).collect();
    for expected in
        ["account data", "performance figures", "targets, contests and rewards", "integration credentials", "audit log"]
    {
        assert!(names.contains(&expected), "{expected} is missing from {names:?}");
    }
    for c in categories {
        for field in ["data", "purpose", "retention"] {
            assert!(!c[field].is_null(), "{} lacks {field}", c["category"]);
        }
    }
    let figures = categories.iter().find(|c| c["category"] == "performance figures").expect("figures");
    let not_kept: Vec<&str> = figures["not_kept"].as_array().expect("a list").iter().filter_map(Json::as_str).collect();
    assert!(not_kept.contains(&"raw CRM ids"), "{not_kept:?}");
    let processors = body["processors"].as_array().expect("a list of processors");
    assert!(processors.is_empty(), "the support messenger is off until the tenant switches it on: {processors:?}");
    // The manager and the admin read the same register.
    assert_eq!(api.get("/v1/privacy/register", &t.admin).await.expect(200), body);
}

// ----- export ----------------------------------------------------------------------------

async fn export_is_complete_and_only_the_callers(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(7301, 4, 200, 200, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let totals = fake.with(|crm| crm.expected_totals());
    let (&seller, seller_totals) = totals.iter().max_by_key(|(id, t)| (t.deals_won, *id)).expect("a CRM user");
    assert!(seller_totals.deals_won > 0 && seller_totals.calls + seller_totals.meetings > 0);
    let a = Setup::new(&api, "Export Co", "export.example", &fake, &[]).await;
    // Another tenant reads the same CRM: its facts of the same salespeople are its own.
    let b = Setup::new(&api, "Other Co", "other.example", &fake, &[]).await;
    let (seller_id, seller_token, seller_name, seller_email) = a.people[&seller].clone();
    let team = a.t.team("Closers", &[&seller_id]).await;
    // The date they joined (for pro-rated targets) is theirs too.
    let joined = json!({"joined_on": "2024-03-04"});
    a.t.api.put(&format!("/v1/users/{seller_id}/joined-on"), &a.t.manager, &joined).await.expect(200);

    let (status, disposition, text) = export(&service.base_url, &seller_token, "").await;
    assert_eq!(status, 200, "{text}");
    assert!(disposition.starts_with("attachment") && disposition.contains(".json"), "{disposition}");
    let body: Json = serde_json::from_str(&text).expect("the export is one JSON document");
    assert_eq!(body["format"], "oneup-personal-export/1");
    assert_eq!(body["tenant"]["id"], a.t.id.as_str());
    assert_eq!(body["account"]["id"], seller_id.as_str());
    assert_eq!(body["account"]["name"], seller_name.as_str());
    assert_eq!(body["account"]["email"], seller_email.as_str());
    assert_eq!(body["account"]["joined_on"], "2024-03-04");
    assert_eq!(body["account"]["role"], "member");
    assert_eq!(body["teams"], json!([{"id": team, "name": "Closers"}]));
    assert_eq!(body["crm_identities"], json!([{"connector": "pipedrive", "mapped": 1}]));
    // Tokens by id and time only: never the token, never its hash.
    let tokens = body["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 1, "{body}");
    assert!(!text.contains(&seller_token) && !text.contains(&seller_token["oneup_".len()..]));
    assert!(
        tokens[0]
            .as_object()
            .is_some_and(|o| o.keys().all(|k| ["id", "created_at", "revoked_at"].contains(&k.as_str())))
    );
    // The audit entries about them: their creation, token and team place, by id.
    let actions: Vec<String> = body["audit"].as_array().expect("audit").iter().map(|e| str_of(&e["action"])).collect();
    for action in ["user.created", "token.created", "team.member_added"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    // Every fact the CRM credits them with, and nothing else (not another user's, not the
    // other tenant's copy of their own).
    assert_eq!(exported_facts(&body), expected_facts(seller_totals), "the seller's facts");
    let listed = body["facts"].as_array().unwrap().len() as u64;
    assert_eq!(listed, 2 * seller_totals.deals_won + seller_totals.calls + seller_totals.meetings);
    let (_, b_token, _, _) = &b.people[&seller];
    let (_, _, b_text) = export(&service.base_url, b_token, "").await;
    let b_body: Json = serde_json::from_str(&b_text).expect("JSON");
    assert_eq!(b_body["tenant"]["id"], b.t.id.as_str());
    assert_eq!(exported_facts(&b_body), expected_facts(seller_totals), "the other tenant's copy is its own");
    // The export's facts add up to what the manager sees for the seller.
    for metric in ["deals_won", "calls", "meetings"] {
        let (rows, _) = figures(&a.t, metric, "user").await;
        assert_eq!(rows[&seller_id], i128::from(exported_facts(&body).0.get(metric).copied().unwrap_or(0)), "{metric}");
    }

    // Large exports are read page by page: small pages give the same facts, each once.
    let store = oneup::store::Store::open(&db.url, oneup::store::MasterKey::random()).await.expect("the store opens");
    let (tenant, user) = (a.t.id.parse().expect("a tenant id"), seller_id.parse().expect("a user id"));
    let whole = store.user_facts_page(tenant, user, None, 100_000).await.expect("one page");
    assert_eq!(whole.len() as u64, listed);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.user_facts_page(tenant, user, after.as_ref(), 7).await.expect("a page");
        assert!(page.len() <= 7);
        after = page.last().map(|f| f.key.clone());
        let last = page.len() < 7;
        paged.extend(page);
        if last {
            break;
        }
    }
    assert_eq!(paged, whole, "paging neither skips nor repeats a fact");
    store.close().await;

    // A member with no CRM identity: their account, no facts, nothing of the seller.
    let (status, _, text) = export(&service.base_url, &a.t.member, "").await;
    assert_eq!(status, 200, "{text}");
    let mine: Json = serde_json::from_str(&text).expect("JSON");
    assert_eq!(mine["account"]["id"], a.t.member_id.as_str());
    assert_eq!(mine["facts"], json!([]));
    assert_eq!(mine["teams"], json!([]));
    assert_eq!(mine["points"], json!([]));
    assert!(!text.contains(&seller_id) && !text.to_lowercase().contains(&seller_email.to_lowercase()), "{text}");
    // Nobody can ask for someone else's export.
    let (status, _, text) = export(&service.base_url, &a.t.member, &format!("?user_id={seller_id}")).await;
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains(&seller_email), "{text}");
    let other = api.get(&format!("/v1/users/{seller_id}/export"), &a.t.admin).await;
    // No such route: an export is only ever one's own.
    assert_eq!(other.expect_error(404), "not_found");
    assert!(!other.text.contains(&seller_email));
    let unauthenticated = api.send("GET", "/v1/me/export", None, None).await;
    unauthenticated.expect_error(401);
}

// ----- erasure ---------------------------------------------------------------------------

/// Won, not deleted deals of `owner` in the tenant currency: (deal id, cents).
fn won_in_tenant_currency(fake: &FakePipedrive, owner: u64) -> Vec<(u64, i64)> {
    fake.with(|crm| {
        crm.deals()
            .iter()
            .filter(|d| d.owner_id == owner && d.status == DealStatus::Won && !d.is_deleted() && d.currency == CURRENCY)
            .map(|d| (d.id, d.value_cents))
            .collect()
    })
}

/// Asserts that `needles` (any case) are in no table, not in the raw SQLite file and not in
/// the logs. The control of the log sweep: the id of `run`, a sync of this service that
/// logs it, is found there by the same check. Postgres keeps a deleted row's bytes in its
/// relation files until the space is reused (documented in `store/erasure.rs`), so only the
/// SQLite file, which the erasure rewrites, is swept below SQL here.
async fn assert_nowhere(db: &TestDatabase, service: &Service, run: &Json, needles: &[&str], when: &str) {
    let dump = db.dump().await;
    assert!(dump.contains_key("users") && dump.contains_key("audit_log") && dump.contains_key("facts"));
    let raw = String::from_utf8_lossy(&db.raw_bytes()).to_lowercase();
    let logs = service.logs().to_lowercase();
    let run_id = run["id"].as_str().expect("a run id").to_uppercase();
    assert!(logs.contains(&run_id.to_lowercase()), "{when}: the log sweep finds the run {run_id} the service logged");
    for needle in needles {
        let needle = needle.to_lowercase();
        for (table, rows) in &dump {
            assert!(!rows.iter().any(|r| r.to_lowercase().contains(&needle)), "{when}: {needle:?} in table {table}");
        }
        assert!(!raw.contains(&needle), "{when}: {needle:?} in the SQLite file");
        assert!(!logs.contains(&needle), "{when}: {needle:?} in the logs");
    }
}

async fn erasure_keeps_totals_and_leaves_no_trace(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(7302, 4, 240, 200, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    // The CRM user with the most won deals in the tenant currency is erased.
    let crm_users: Vec<u64> = fake.with(|crm| crm.users().iter().map(|u| u.id).collect());
    let victim = *crm_users.iter().max_by_key(|u| (won_in_tenant_currency(&fake, **u).len(), **u)).unwrap();
    let won = won_in_tenant_currency(&fake, victim);
    assert!(won.len() >= 2, "the victim has won deals in {CURRENCY} to edit: {won:?}");
    let a = Setup::new(&api, "Erasure Co", "erasure.example", &fake, &[]).await;
    // Another tenant, which never knew the victim.
    let b = Setup::new(&api, "Other Co", "other-erasure.example", &fake, &[victim]).await;
    let (victim_id, victim_token, victim_name, victim_email) = a.people[&victim].clone();
    let others: Vec<String> = crm_users.iter().filter(|u| **u != victim).map(|u| a.people[u].0.clone()).collect();
    let alpha = a.t.team("Alpha", &[&victim_id, &others[0]]).await;
    let beta = a.t.team("Beta", &[&victim_id, &others[1], &others[2]]).await;
    let before = snapshot(&a.t).await;
    assert!(before.users["deals_won"][&victim_id] > 0 && before.teams["deals_won"][&alpha] > 0);
    // The controls of the sweeps `assert_nowhere` makes: before the erasure the person is
    // found, by the same checks, in a table and in the stored bytes (the SQLite file, or
    // every relation file of the Postgres database).
    let dump = db.dump().await;
    assert!(dump["users"].iter().any(|r| r.to_lowercase().contains(&victim_email.to_lowercase())), "in `users`");
    let raw = String::from_utf8_lossy(&db.stored_bytes().await).to_lowercase();
    assert!(raw.contains(&victim_email.to_lowercase()), "the sweep of the stored bytes ({backend:?}) sees accounts");

    // Only an admin or the person may erase; then it is done once.
    api.delete(&format!("/v1/users/{victim_id}"), &a.t.member).await.expect_error(403);
    api.delete(&format!("/v1/users/{victim_id}"), &a.t.admin).await.expect(204);
    api.delete(&format!("/v1/users/{victim_id}"), &a.t.admin).await.expect_error(404);
    api.get("/v1/me", &victim_token).await.expect_error(401);
    // Another tenant's user is unknown here, and stays.
    let (b_user, _, _, _) = &b.people[&crm_users.iter().find(|u| **u != victim).copied().unwrap()];
    api.delete(&format!("/v1/users/{b_user}"), &a.t.admin).await.expect_error(404);
    let b_users = api.get("/v1/users", &b.t.admin).await;
    assert!(b_users.expect(200)["users"].as_array().unwrap().iter().any(|u| u["id"] == b_user.as_str()));

    // Every team total and the tenant total are as they were; the person's row is gone.
    let after = snapshot(&a.t).await;
    assert_eq!(after.teams, before.teams, "team totals");
    assert_eq!(after.tenant, before.tenant, "tenant totals");
    let mut expected_users = before.users.clone();
    for rows in expected_users.values_mut() {
        rows.remove(&victim_id);
    }
    assert_eq!(after.users, expected_users, "the other users' figures");
    let users = api.get("/v1/users", &a.t.admin).await;
    assert!(!users.text.contains(&victim_id), "{}", users.text);
    let teams = api.get("/v1/teams", &a.t.admin).await;
    for team in teams.expect(200)["teams"].as_array().unwrap() {
        assert!(!team["members"].as_array().unwrap().iter().any(|m| m == victim_id.as_str()), "{team}");
        assert_eq!(team["former_members"], 1, "{team}");
    }
    // The erasure is audited, by id and by whom.
    let audit = api.get("/v1/audit?limit=1000", &a.t.admin).await;
    let audit = audit.expect(200).clone();
    assert!(
        audit["entries"].as_array().expect("entries").iter().any(|e| e["action"] == "user.erased"
            && e["subject"] == victim_id.as_str()
            && e["actor"] == format!("user:{}", a.t.admin_id)),
        "{audit}"
    );
    // The person's name and e-mail: nowhere.
    assert_nowhere(&db, &service, &a.run, &[&victim_name, &victim_email], "after the erasure").await;

    // The CRM goes on: an erased deal's amount edited, another lost (a retraction), a new
    // deal won by the erased CRM user.
    let (edited, old_cents) = won[0];
    let (lost, lost_cents) = won[1];
    let new_cents: i64 = 777_777;
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        crm.set_deal_value(edited, (old_cents + 12_345) as f64 / 100.0).expect("amount edited");
        crm.mark_deal_lost(lost).expect("deal lost");
        let now = crm.now();
        crm.add_deal(NewDeal::won(victim, new_cents as f64 / 100.0, CURRENCY, now)).expect("deal added");
    });
    a.t.sync_pipedrive().await;
    let resynced = snapshot(&a.t).await;
    for team in [&alpha, &beta] {
        assert_eq!(resynced.teams["deals_won"][team], before.teams["deals_won"][team] - 1, "the lost deal leaves");
        assert_eq!(
            resynced.teams["revenue"][team],
            before.teams["revenue"][team] - i128::from(lost_cents) + 12_345,
            "the edit counts once, the lost deal leaves, the new deal is nobody's"
        );
    }
    assert_eq!(resynced.tenant["deals_won"], before.tenant["deals_won"], "one lost, one won");
    assert_eq!(
        resynced.tenant["revenue"],
        before.tenant["revenue"] - i128::from(lost_cents) + 12_345 + i128::from(new_cents),
        "tenant revenue, nothing counted twice"
    );
    assert_eq!(resynced.users, expected_users, "nobody was credited with the erased person's records");

    // Even an admin who maps the erased CRM id to someone re-attaches nothing, now or later.
    let mapped = api
        .put(
            "/v1/integrations/pipedrive/owners",
            &a.t.admin,
            &json!({"crm_user_id": victim.to_string(), "user_id": a.t.manager_id}),
        )
        .await;
    assert_eq!(mapped.status, 204, "{}", mapped.text);
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let now = crm.now();
        crm.add_deal(NewDeal::won(victim, 10.0, CURRENCY, now)).expect("deal added");
    });
    a.t.sync_pipedrive().await;
    let remapped = snapshot(&a.t).await;
    assert_eq!(remapped.users, expected_users, "the mapping credits nobody with the erased records");
    assert_eq!(remapped.teams, resynced.teams);
    assert_eq!(remapped.tenant["deals_won"], resynced.tenant["deals_won"] + 1);

    // A full re-read of the CRM (new config, so the cursor starts over) re-sends every
    // record: nothing moves, nothing is counted twice.
    let body = json!({"config": {"base_url": format!("{}/", fake.base_url())}, "secrets": {"api_token": TOKEN}});
    api.put("/v1/integrations/pipedrive", &a.t.admin, &body).await.expect(200);
    let run = a.t.sync_pipedrive().await;
    assert!(run["events_accepted"].as_i64().unwrap_or(0) > 0, "a full re-read: {run}");
    assert_eq!(snapshot(&a.t).await, remapped, "a full re-sync changes nothing");
    assert_nowhere(&db, &service, &run, &[&victim_name, &victim_email], "after later syncs").await;
}

// ----- roles -----------------------------------------------------------------------------

/// An admin changes roles (`PATCH /v1/users/{id}`), which apply from the next request of
/// the user's existing token; the tenant's only admin can neither be demoted nor erased
/// (409 `last_admin`, nothing changed) until another user is admin. Members read only
/// themselves; another tenant's user is 404 whoever asks.
async fn roles_change_and_the_tenant_always_keeps_an_admin(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Roles Co", "roles.example", "UTC", CURRENCY).await;
    let other = app::Tenant::create(&api, "Other Co", "other-roles.example", "UTC", CURRENCY).await;
    let user = |id: &str| format!("/v1/users/{id}");

    // Reading one user: manager+ anyone, a member only themselves.
    let read = api.get(&user(&t.member_id), &t.manager).await;
    assert_eq!(read.expect(200)["email"], "member@roles.example");
    assert_eq!(api.get(&user(&t.member_id), &t.member).await.expect(200)["role"], "member");
    assert_eq!(api.get(&user(&t.manager_id), &t.member).await.expect_error(403), "forbidden");
    assert_eq!(api.get(&user(&other.member_id), &t.admin).await.expect_error(404), "not_found");

    // Only an admin changes roles; bad input changes nothing.
    let promote = json!({"role": "manager"});
    assert_eq!(api.patch(&user(&t.member_id), &t.manager, &promote).await.expect_error(403), "forbidden");
    assert_eq!(api.patch(&user(&other.member_id), &t.admin, &promote).await.expect_error(404), "not_found");
    assert_eq!(api.patch(&user(&t.member_id), &t.admin, &json!({})).await.expect_error(400), "invalid_body");
    let bad_role = api.patch(&user(&t.member_id), &t.admin, &json!({"role": "owner"})).await;
    assert_eq!(bad_role.expect_error(400), "invalid_body");
    let taken = api.patch(&user(&t.member_id), &t.admin, &json!({"email": "MANAGER@roles.example"})).await;
    assert_eq!(taken.expect_error(409), "email_taken");
    assert_eq!(api.get(&user(&t.member_id), &t.admin).await.expect(200)["email"], "member@roles.example");
    assert_eq!(api.get("/v1/users", &t.member).await.expect_error(403), "forbidden");

    // The member becomes a manager: their existing token may now list users.
    let promoted = api.patch(&user(&t.member_id), &t.admin, &promote).await;
    assert_eq!(promoted.expect(200)["role"], "manager");
    api.get("/v1/users", &t.member).await.expect(200);

    // The only admin keeps the role and cannot be erased, by themselves or anyone.
    let demote = json!({"role": "member"});
    assert_eq!(api.patch(&user(&t.admin_id), &t.admin, &demote).await.expect_error(409), "last_admin");
    assert_eq!(api.delete(&user(&t.admin_id), &t.admin).await.expect_error(409), "last_admin");
    let admin = api.get(&user(&t.admin_id), &t.admin).await;
    assert_eq!(admin.expect(200)["role"], "admin", "nothing changed");
    assert_eq!(api.get("/v1/me", &t.admin).await.expect(200)["role"], "admin");

    // With a second admin, the first may step down, and then the second is the last one.
    let crowned = api.patch(&user(&t.manager_id), &t.admin, &json!({"role": "admin", "name": "Second Admin"})).await;
    assert_eq!(crowned.expect(200)["name"], "Second Admin");
    assert_eq!(api.patch(&user(&t.admin_id), &t.admin, &demote).await.expect(200)["role"], "member");
    assert_eq!(api.patch(&user(&t.member_id), &t.admin, &promote).await.expect_error(403), "forbidden");
    assert_eq!(api.delete(&user(&t.manager_id), &t.manager).await.expect_error(409), "last_admin");
    // A former admin, now a member, may still erase themselves.
    assert_eq!(api.delete(&user(&t.admin_id), &t.admin).await.status, 204);
    assert_eq!(api.get(&user(&t.admin_id), &t.manager).await.expect_error(404), "not_found");

    let audit = api.get("/v1/audit", &t.manager).await;
    let entries = audit.expect(200)["entries"].as_array().expect("entries").clone();
    let updates = entries.iter().filter(|e| e["action"] == "user.updated").count();
    assert_eq!(updates, 3, "each accepted change is audited, no refused one: {entries:?}");
}
