//! A tenant's lifecycle as the operator drives it, end to end on both stores through the
//! real service: listing tenants page by page, changing a tenant's name, zone and currency
//! (every figure then what a tenant created with those settings shows), and offboarding
//! (every row of the tenant gone in one call, the other tenant untouched, a sync in flight
//! fenced).

use std::collections::BTreeMap;
use std::time::Duration;

use oneup_fake_crm::pipedrive::{FakePipedrive, Fault};
use oneup_fake_crm::salesforce::{Dataset, DatasetSpec, FakeSalesforce};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

on_both_stores!(
    the_operator_lists_reads_and_changes_tenants,
    a_new_zone_and_currency_give_the_figures_of_a_tenant_created_with_them,
    offboarding_removes_every_row_of_the_tenant_and_nothing_else,
    offboarding_while_a_sync_runs_fences_it,
);

const LONG: Duration = Duration::from_secs(120);
const PD_TOKEN: &str = "pd-lifecycle-token-51c7";
const ALL_TIME: (&str, &str) = ("2000-01-01", "2100-01-01");

/// `POST /v1/tenants` as the operator: the tenant's id.
async fn create_tenant(api: &Api, name: &str, timezone: &str, currency: &str) -> String {
    let body = json!({"name": name, "timezone": timezone, "currency": currency,
        "admin": {"name": "First Admin", "email": format!("admin@{}.example", name.to_lowercase().replace(' ', "-"))}});
    str_of(&api.post("/v1/tenants", OPERATOR_TOKEN, &body).await.expect(201)["id"])
}

/// Asserts the error code of an answer and that its message names `field`.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: &str, field: &str) {
    assert_eq!(answer.expect_error(status), code, "{}", answer.text);
    let message = answer.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("`{field}`")), "the message names `{field}`: {message}");
}

async fn the_operator_lists_reads_and_changes_tenants(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut ids = Vec::new();
    for name in ["Alpha Ltd", "Beta Ltd", "Gamma Ltd", "Delta Ltd", "Epsilon Ltd"] {
        ids.push(create_tenant(&api, name, "Europe/London", "GBP").await);
    }

    // Pages of two, newest first, neither skipping nor repeating, even with a tenant added
    // between two pages.
    let first = api.get("/v1/tenants?limit=2", OPERATOR_TOKEN).await.expect(200).clone();
    let page: Vec<String> = first["tenants"].as_array().unwrap().iter().map(|t| str_of(&t["id"])).collect();
    assert_eq!(page, vec![ids[4].clone(), ids[3].clone()], "{first}");
    let cursor = str_of(&first["next_cursor"]);
    let late = create_tenant(&api, "Zeta Ltd", "UTC", "EUR").await;
    let mut seen = page;
    let mut cursor = Some(cursor);
    while let Some(c) = cursor {
        let next = api.get(&format!("/v1/tenants?limit=2&cursor={c}"), OPERATOR_TOKEN).await.expect(200).clone();
        seen.extend(next["tenants"].as_array().unwrap().iter().map(|t| str_of(&t["id"])));
        cursor = next["next_cursor"].as_str().map(str::to_owned);
    }
    let mut oldest_first = ids.clone();
    oldest_first.reverse();
    assert_eq!(seen, oldest_first, "every tenant once, the one added meanwhile on the first page only");
    let all = api.get("/v1/tenants", OPERATOR_TOKEN).await.expect(200).clone();
    assert_eq!(all["tenants"].as_array().unwrap().len(), 6);
    assert_eq!(str_of(&all["tenants"][0]["id"]), late);
    assert_eq!(all["next_cursor"], Json::Null);
    let one = &all["tenants"][1];
    assert_eq!(
        (one["name"].as_str(), one["timezone"].as_str(), one["currency"].as_str()),
        (Some("Epsilon Ltd"), Some("Europe/London"), Some("GBP"))
    );
    assert!(str_of(&one["created_at"]).ends_with('Z'), "{one}");

    // Bad paging, the wrong token, no token.
    assert_eq!(api.get("/v1/tenants?limit=0", OPERATOR_TOKEN).await.expect_error(400), "invalid_query");
    assert_eq!(api.get("/v1/tenants?limit=201", OPERATOR_TOKEN).await.expect_error(400), "invalid_query");
    assert_eq!(api.get("/v1/tenants?cursor=zz-nope", OPERATOR_TOKEN).await.expect_error(400), "invalid_cursor");
    assert_eq!(api.get("/v1/tenants?page=2", OPERATOR_TOKEN).await.expect_error(400), "invalid_query");
    let t = app::Tenant::create(&api, "Own Co", "own.example", "UTC", "USD").await;
    assert_eq!(api.get("/v1/tenants", &t.admin).await.expect_error(403), "forbidden");
    assert_eq!(api.send("GET", "/v1/tenants", None, None).await.expect_error(401), "unauthorized");

    // One tenant; unknown ids are 404.
    let got = api.get(&format!("/v1/tenants/{}", ids[0]), OPERATOR_TOKEN).await.expect(200).clone();
    assert_eq!(got["name"], "Alpha Ltd");
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(api.get(&format!("/v1/tenants/{unknown}"), OPERATOR_TOKEN).await.expect_error(404), "not_found");
    assert_eq!(api.get("/v1/tenants/not-an-id", OPERATOR_TOKEN).await.expect_error(404), "not_found");
    assert_eq!(api.get(&format!("/v1/tenants/{}", t.id), &t.admin).await.expect_error(403), "forbidden");

    // Changes: each bad field is named, and nothing is changed by a refused request.
    let path = format!("/v1/tenants/{}", ids[0]);
    let before = db.dump().await;
    refused(
        &api.patch(&path, OPERATOR_TOKEN, &json!({"timezone": "Mars/Olympus_Mons"})).await,
        400,
        "invalid_field",
        "timezone",
    );
    refused(&api.patch(&path, OPERATOR_TOKEN, &json!({"currency": "EURO"})).await, 400, "invalid_field", "currency");
    refused(&api.patch(&path, OPERATOR_TOKEN, &json!({"name": "  "})).await, 400, "invalid_field", "name");
    refused(
        &api.patch(&path, OPERATOR_TOKEN, &json!({"name": "Ok", "currency": "XX1"})).await,
        400,
        "invalid_field",
        "currency",
    );
    assert_eq!(api.patch(&path, OPERATOR_TOKEN, &json!({})).await.expect_error(400), "invalid_body");
    assert_eq!(api.patch(&path, OPERATOR_TOKEN, &json!({"colour": "red"})).await.expect_error(400), "invalid_body");
    assert_eq!(api.patch(&path, &t.admin, &json!({"name": "Mine"})).await.expect_error(403), "forbidden");
    assert_eq!(
        api.patch(&format!("/v1/tenants/{unknown}"), OPERATOR_TOKEN, &json!({"name": "X"})).await.expect_error(404),
        "not_found"
    );
    assert_eq!(db.dump().await, before, "refused changes write nothing");

    let changed = api.patch(&path, OPERATOR_TOKEN, &json!({"name": "Alpha Group"})).await.expect(200).clone();
    assert_eq!(changed["tenant"]["name"], "Alpha Group", "{changed}");
    assert_eq!(changed["tenant"]["currency"], "GBP");
    assert_eq!(changed["resync"], json!([]));
    let got = api.get(&path, OPERATOR_TOKEN).await.expect(200).clone();
    assert_eq!(got["name"], "Alpha Group");
    // The tenant's own users see it, and its audit says what changed (never the values).
    let own = format!("/v1/tenants/{}", t.id);
    api.patch(&own, OPERATOR_TOKEN, &json!({"name": "Own Group", "timezone": "Asia/Tokyo"})).await.expect(200);
    let me = api.get("/v1/me", &t.member).await.expect(200).clone();
    assert_eq!(
        (me["tenant"]["name"].as_str(), me["tenant"]["timezone"].as_str()),
        (Some("Own Group"), Some("Asia/Tokyo"))
    );
    let audit = api.get("/v1/audit?limit=1000", &t.admin).await.expect(200).clone();
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "tenant.updated").expect("audited");
    assert_eq!(entry["actor"], "operator");
    assert_eq!(str_of(&entry["subject"]), format!("{} name,timezone", t.id));
}

/// The fake Salesforce org both tenants read: the same data from the same seed, one fake
/// each (refresh tokens are single-use).
const SF_CLIENT_ID: &str = "sf-lifecycle-client";
const SF_CLIENT_SECRET: &str = "sf-lifecycle-secret-0a9d";

async fn fake_org() -> FakeSalesforce {
    FakeSalesforce::start(
        Dataset::generate_with(&DatasetSpec::new(1801, 3, 160, 80, 30)),
        SF_CLIENT_ID,
        SF_CLIENT_SECRET,
    )
    .await
    .expect("the fake Salesforce starts")
}

/// A tenant with a user per CRM user (by e-mail) and Salesforce enabled and synced.
struct SfTenant {
    t: app::Tenant,
    /// Tenant user id → CRM e-mail.
    emails: BTreeMap<String, String>,
}

impl SfTenant {
    async fn start(api: &Api, fake: &FakeSalesforce, name: &str, timezone: &str, currency: &str) -> Self {
        let domain = format!("{}.example", name.to_lowercase().replace(' ', "-"));
        let t = app::Tenant::create(api, name, &domain, timezone, currency).await;
        let crm: Vec<String> =
            fake.with(|crm| crm.users().iter().filter(|u| u.is_active).map(|u| u.email.clone()).collect());
        let mut emails = BTreeMap::new();
        for (id, role) in [(&t.admin_id, "admin"), (&t.manager_id, "manager"), (&t.member_id, "member")] {
            emails.insert(id.clone(), format!("{role}@tenant"));
        }
        for (i, email) in crm.into_iter().enumerate() {
            let (id, _) = t.add_user(&format!("Rep {i}"), &email, "member").await;
            emails.insert(id, email.to_ascii_lowercase());
        }
        let body = json!({
            "config": {"instance_url": fake.base_url(), "token_url": fake.token_url()},
            "secrets": {"client_id": SF_CLIENT_ID, "client_secret": SF_CLIENT_SECRET, "refresh_token": fake.refresh_token()},
        });
        t.api.put("/v1/integrations/salesforce", &t.admin, &body).await.expect(200);
        let this = SfTenant { t, emails };
        this.wait_for_runs(1).await;
        this
    }

    /// Waits until `n` runs exist and all have ended `succeeded`.
    async fn wait_for_runs(&self, n: usize) {
        eventually("the Salesforce runs to succeed", LONG, || async {
            let runs = self.t.api.get("/v1/integrations/salesforce/runs", &self.t.admin).await.expect(200).clone();
            let runs = runs["runs"].as_array().unwrap().clone();
            if runs.iter().any(|r| r["status"] == "failed" || r["status"] == "partial") {
                panic!("a run did not succeed: {runs:?}");
            }
            (runs.len() >= n && runs.iter().all(|r| r["status"] == "succeeded")).then_some(())
        })
        .await;
    }

    /// KPI rows of `metric` grouped by `group_by` over all time as the manager, keyed by
    /// CRM e-mail (users) or date (days), with the unattributed and waiting figures.
    async fn kpis(&self, metric: &str, group_by: &str, user: Option<&str>) -> Json {
        let mut path = format!("/v1/kpis?metric={metric}&from={}&to={}&group_by={group_by}", ALL_TIME.0, ALL_TIME.1);
        if group_by == "day" {
            path = format!("/v1/kpis?metric={metric}&from=2024-12-01&to=2025-07-01&group_by=day");
        }
        if let Some(u) = user {
            path.push_str(&format!("&user_id={u}"));
        }
        let mut body = self.t.api.get(&path, &self.t.manager).await.expect(200).clone();
        for row in body["rows"].as_array_mut().unwrap() {
            if let Some(id) = row.get("user_id").and_then(Json::as_str).map(str::to_owned) {
                let email = self.emails.get(&id).cloned().unwrap_or_else(|| format!("non-crm:{id}"));
                row["user_id"] = json!(email.split('@').next().unwrap().to_owned());
            }
        }
        // Ties are listed in id order, and ids differ between tenants: order by name.
        if group_by == "user" {
            body["rows"].as_array_mut().unwrap().sort_by_key(|r| r["user_id"].to_string());
        }
        body
    }

    /// Every figure the test compares: per metric, by user and by day, and a contest's
    /// leaderboard.
    async fn figures(&self, contest: &str) -> Json {
        let mut out = serde_json::Map::new();
        for metric in ["deals_won", "revenue", "calls"] {
            out.insert(format!("{metric} by user"), self.kpis(metric, "user", None).await);
            out.insert(format!("{metric} by day"), self.kpis(metric, "day", None).await);
        }
        let mut board =
            self.t.api.get(&format!("/v1/contests/{contest}/leaderboard"), &self.t.manager).await.expect(200).clone();
        for e in board["entries"].as_array_mut().unwrap() {
            let id = str_of(&e["user_id"]);
            e["user_id"] = json!(self.emails.get(&id).cloned().unwrap_or(id));
        }
        board["entries"].as_array_mut().unwrap().sort_by_key(|e| (e["rank"].as_u64(), e["user_id"].to_string()));
        board["contest"]["id"] = Json::Null;
        out.insert("leaderboard".to_owned(), board);
        Json::Object(out)
    }

    async fn contest(&self, metric: &str) -> String {
        let users: Vec<&String> =
            self.emails.iter().filter(|(_, e)| !e.ends_with("@tenant")).map(|(id, _)| id).collect();
        // Running (a final result keeps the figures it was frozen with).
        let body = json!({"name": "Season", "metric": metric, "starts_at": "2025-01-01T00:00:00Z",
            "ends_at": "2100-01-01T00:00:00Z", "participants": {"users": users}});
        str_of(&self.t.api.post("/v1/contests", &self.t.manager, &body).await.expect(201)["id"])
    }

    async fn set_rates(&self, rates: &[(&str, &str)]) {
        let rates: serde_json::Map<String, Json> = rates.iter().map(|(c, r)| (c.to_string(), json!(r))).collect();
        self.t.api.put("/v1/fx-rates", &self.t.admin, &json!({"rates": rates})).await.expect(200);
    }
}

/// Asserts two sets of figures are equal, naming the first figures that differ and how.
#[track_caller]
fn same_figures(a: &Json, b: &Json, what: &str) {
    for (key, x) in a.as_object().unwrap() {
        let y = &b[key];
        if x == y {
            continue;
        }
        let rows =
            |v: &Json| v["rows"].as_array().cloned().or_else(|| v["entries"].as_array().cloned()).unwrap_or_default();
        let (rx, ry) = (rows(x), rows(y));
        let differing: Vec<String> =
            rx.iter().zip(ry.iter()).filter(|(p, q)| p != q).take(5).map(|(p, q)| format!("{p} vs {q}")).collect();
        let mut xs = x.clone();
        let mut ys = y.clone();
        for v in [&mut xs, &mut ys] {
            if let Some(o) = v.as_object_mut() {
                o.remove("rows");
                o.remove("entries");
            }
        }
        panic!(
            "{what}: `{key}` differs: {xs} vs {ys}; rows {} vs {}; first differing rows: {differing:?}",
            rx.len(),
            ry.len()
        );
    }
    assert_eq!(a.as_object().unwrap().len(), b.as_object().unwrap().len());
}

/// A tenant created in New York with US dollars, then moved to Auckland and euros: every
/// figure (KPIs by user and by local day, a revenue leaderboard) equals that of a tenant
/// created in Auckland with euros reading the same org; and differs from before.
async fn a_new_zone_and_currency_give_the_figures_of_a_tenant_created_with_them(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let (org_a, org_b) = (fake_org().await, fake_org().await);

    let moved = SfTenant::start(&api, &org_a, "Moved Co", "America/New_York", "USD").await;
    moved.set_rates(&[("GBP", "1.25"), ("EUR", "1.08"), ("JPY", "0.0067")]).await;
    let contest = moved.contest("revenue").await;
    let before = moved.figures(&contest).await;
    assert_eq!(before["revenue by user"]["waiting_for_rate"], 0, "{}", before["revenue by user"]);

    let path = format!("/v1/tenants/{}", moved.t.id);
    let answer = api
        .patch(&path, OPERATOR_TOKEN, &json!({"timezone": "Pacific/Auckland", "currency": "EUR"}))
        .await
        .expect(200)
        .clone();
    assert_eq!(answer["tenant"]["currency"], "EUR", "{answer}");
    assert_eq!(answer["fx_rates_deleted"], 3, "{answer}");
    assert!(answer["amounts_waiting_for_rate"].as_u64().unwrap() > 0, "{answer}");
    assert_eq!(answer["resync"], json!(["salesforce"]), "{answer}");
    // The rates converted into dollars: gone.
    let rates = api.get("/v1/fx-rates", &moved.t.admin).await.expect(200).clone();
    assert_eq!(rates["rates"], json!({}), "{rates}");
    moved.wait_for_runs(2).await;

    let fresh = SfTenant::start(&api, &org_b, "Fresh Co", "Pacific/Auckland", "EUR").await;
    let fresh_contest = fresh.contest("revenue").await;
    let after = moved.figures(&contest).await;
    same_figures(&after, &fresh.figures(&fresh_contest).await, "as if created in Auckland with euros");
    assert_ne!(after["revenue by user"], before["revenue by user"]);
    assert_ne!(after["deals_won by day"], before["deals_won by day"], "close dates are Auckland's days now");
    assert_eq!(after["deals_won by user"]["rows"], before["deals_won by user"]["rows"], "counts do not move");

    // Rates into euros, the same on both: still the same figures, nothing waiting.
    let rates = [("USD", "0.92"), ("GBP", "1.17"), ("JPY", "0.0062")];
    moved.set_rates(&rates).await;
    fresh.set_rates(&rates).await;
    let after = moved.figures(&contest).await;
    assert_eq!(after["revenue by user"]["waiting_for_rate"], 0);
    same_figures(&after, &fresh.figures(&fresh_contest).await, "with the same rates");
}

/// A tenant with everything a tenant can have: users, teams, tokens, Pipedrive with its
/// sealed token and facts, a contest, a target, exchange rates, audit entries.
struct Full {
    t: app::Tenant,
    fake: FakePipedrive,
    /// Names and e-mails of its people, and its own name.
    words: Vec<String>,
}

impl Full {
    async fn start(api: &Api, seed: u64, name: &str, domain: &str) -> Self {
        let fake = fake_pipedrive(seed, 4, 40, 40, PD_TOKEN).await;
        let t = app::Tenant::create(api, name, domain, "Europe/Berlin", "EUR").await;
        let mut words = vec![name.to_owned(), format!("admin@{domain}"), format!("manager@{domain}")];
        let people: Vec<(String, String)> =
            fake.with(|crm| crm.users().iter().map(|u| (u.name.clone(), u.email.clone())).collect());
        let mut ids = Vec::new();
        for (n, email) in &people {
            let (id, _) = t.add_user(n, email, "member").await;
            ids.push(id);
            words.push(n.clone());
            words.push(email.clone());
        }
        t.team(&format!("{name} Closers"), &[&ids[0], &ids[1]]).await;
        t.api.put("/v1/fx-rates", &t.admin, &json!({"rates": {"USD": "0.9", "GBP": "1.15"}})).await.expect(200);
        t.enable_pipedrive(&fake.base_url(), PD_TOKEN).await.expect(200);
        t.sync_pipedrive().await;
        let body = json!({"name": format!("{name} Sprint"), "metric": "deals_won", "starts_at": "2000-01-01T00:00:00Z",
            "ends_at": "2100-01-01T00:00:00Z", "participants": {"users": ids}});
        let contest = str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"]);
        t.api.get(&format!("/v1/contests/{contest}/leaderboard"), &t.manager).await.expect(200);
        let target = json!({"metric": "deals_won", "period": "month", "goal": 5, "assignee": {"user_id": ids[0]},
            "starts_on": "2025-01-01"});
        let answer = t.api.post("/v1/targets", &t.admin, &target).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        Full { t, fake, words }
    }

    /// Every KPI figure of the tenant, as its manager sees them.
    async fn kpis(&self) -> Json {
        let mut out = serde_json::Map::new();
        for metric in ["deals_won", "revenue", "calls"] {
            let path = format!("/v1/kpis?metric={metric}&from={}&to={}", ALL_TIME.0, ALL_TIME.1);
            out.insert(metric.to_owned(), self.t.api.get(&path, &self.t.manager).await.expect(200).clone());
        }
        Json::Object(out)
    }
}

/// How a tenant id shows in a dump: hyphenated on Postgres, `X'…'` hex on SQLite.
fn id_forms(id: &str) -> [String; 2] {
    [id.to_owned(), format!("X'{}'", id.replace('-', "").to_uppercase())]
}

fn mentions(row: &str, forms: &[String; 2]) -> bool {
    forms.iter().any(|f| row.contains(f.as_str()))
}

/// Offboarding one of two tenants: 200 with counts per table; its tokens die at once; a
/// second call is 404; every table then holds exactly what it held before minus the rows
/// of the tenant (its names, e-mails and ids nowhere, the SQLite file and the logs
/// included), plus the operator's one audit entry (id, time, counts); the other tenant's
/// figures are unchanged and it syncs on.
async fn offboarding_removes_every_row_of_the_tenant_and_nothing_else(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let gone = Full::start(&api, 1811, "Gone Widgets", "gone-widgets.example").await;
    let kept = Full::start(&api, 1812, "Kept Gadgets", "kept-gadgets.example").await;
    let kept_before = kept.kpis().await;
    let (g, k) = (id_forms(&gone.t.id), id_forms(&kept.t.id));
    let before = db.dump().await;
    assert!(before["facts"].iter().any(|r| mentions(r, &g)) && before["audit_log"].iter().any(|r| mentions(r, &g)));
    assert!(before["integrations"].iter().any(|r| mentions(r, &g)), "sealed secrets are there");
    if backend == Backend::Sqlite {
        let raw = String::from_utf8_lossy(&db.raw_bytes()).to_lowercase();
        assert!(raw.contains(&gone.words[3].to_lowercase()), "the sweep of the file sees the tenant's people");
    }

    // Only the operator.
    let path = format!("/v1/tenants/{}", gone.t.id);
    assert_eq!(api.delete(&path, &gone.t.admin).await.expect_error(403), "forbidden");
    assert_eq!(api.delete(&path, &kept.t.admin).await.expect_error(403), "forbidden");
    assert_eq!(
        api.delete("/v1/tenants/00000000-0000-4000-8000-000000000000", OPERATOR_TOKEN).await.expect_error(404),
        "not_found"
    );
    assert_eq!(db.dump().await, before, "refused offboardings remove nothing");

    let report = api.delete(&path, OPERATOR_TOKEN).await.expect(200).clone();
    assert_eq!(str_of(&report["tenant_id"]), gone.t.id);
    let removed = report["removed"].as_object().unwrap();
    for (table, rows) in &before {
        let n = rows.iter().filter(|r| mentions(r, &g)).count() as u64;
        if n > 0 {
            assert_eq!(removed.get(table).and_then(Json::as_u64), Some(n), "{table}: {report}");
        }
    }
    assert_eq!(removed["tenants"], 1);
    assert_eq!(report["total"], removed.values().map(|v| v.as_u64().unwrap()).sum::<u64>());

    // Its tokens die at once; the second call is 404; the tenant is unknown.
    for token in [&gone.t.admin, &gone.t.manager, &gone.t.member] {
        assert_eq!(api.get("/v1/me", token).await.expect_error(401), "unauthorized");
    }
    assert_eq!(api.delete(&path, OPERATOR_TOKEN).await.expect_error(404), "not_found");
    assert_eq!(api.get(&path, OPERATOR_TOKEN).await.expect_error(404), "not_found");
    let listed = api.get("/v1/tenants", OPERATOR_TOKEN).await.expect(200).clone();
    let listed: Vec<String> = listed["tenants"].as_array().unwrap().iter().map(|t| str_of(&t["id"])).collect();
    assert_eq!(listed, vec![kept.t.id.clone()]);

    // Every table: what it held minus the tenant's rows. The operator's audit gains one
    // entry (the id, the time, counts); the kept tenant's tokens only their last use.
    let after = db.dump().await;
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    for (table, rows) in &after {
        let expected: Vec<&String> = before[table].iter().filter(|r| !mentions(r, &g)).collect();
        match table.as_str() {
            "operator_audit" => {
                assert_eq!(rows.len(), expected.len() + 1, "{rows:?}");
                let entry = rows.iter().find(|r| mentions(r, &g)).expect("the offboarding is in the operator's audit");
                assert!(entry.contains("tenant.offboarded"), "{entry}");
            }
            "api_tokens" => {
                assert_eq!(rows.len(), expected.len());
                assert!(rows.iter().all(|r| mentions(r, &k)));
            }
            _ => assert_eq!(rows.iter().collect::<Vec<_>>(), expected, "table {table}"),
        }
    }
    let audit = api.get("/v1/operator/audit", OPERATOR_TOKEN).await.expect(200).clone();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "tenant.offboarded");
    assert_eq!(str_of(&entries[0]["subject"]), format!("tenant {}", gone.t.id));
    assert_eq!(&entries[0]["detail"], &report["removed"]);
    assert_eq!(api.get("/v1/operator/audit", &kept.t.admin).await.expect_error(403), "forbidden");

    // Names, e-mails, the tenant's name: nowhere (tables, the SQLite file, the logs).
    let raw = String::from_utf8_lossy(&db.raw_bytes()).to_lowercase();
    let logs = service.logs().to_lowercase();
    for word in &gone.words {
        let word = word.to_lowercase();
        for (table, rows) in &after {
            assert!(!rows.iter().any(|r| r.to_lowercase().contains(&word)), "{word:?} in {table}");
        }
        assert!(!raw.contains(&word), "{word:?} in the SQLite file");
        assert!(!logs.contains(&word), "{word:?} in the logs");
    }
    for (table, rows) in &after {
        if table != "operator_audit" {
            assert!(!rows.iter().any(|r| mentions(r, &g)), "the tenant's id in {table}");
        }
    }

    // The other tenant: the same figures, and it syncs on.
    assert_eq!(kept.kpis().await, kept_before);
    kept.t.sync_pipedrive().await;
    assert_eq!(kept.kpis().await, kept_before);
    drop(gone.fake);
}

/// Offboarding while a sync of the tenant runs: the answer is 200 at once, the sync ends
/// without committing anything (its commit finds neither its integration nor its run), and
/// nothing of the tenant re-appears afterwards.
async fn offboarding_while_a_sync_runs_fences_it(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let fake = fake_pipedrive(1821, 3, 60, 60, PD_TOKEN).await;
    let t = app::Tenant::create(&api, "Busy Co", "busy.example", "UTC", "EUR").await;
    let kept = app::Tenant::create(&api, "Calm Co", "calm.example", "UTC", "EUR").await;
    // The first run is slow: its first requests take a while each.
    fake.with(|crm| crm.fail_next(6, Fault::Delay(Duration::from_millis(800))));
    t.enable_pipedrive(&fake.base_url(), PD_TOKEN).await.expect(200);
    eventually("the slow run to run", LONG, || async {
        let runs = api.get("/v1/integrations/pipedrive/runs", &t.admin).await.expect(200).clone();
        (runs["runs"][0]["status"] == "running").then_some(())
    })
    .await;
    let report = api.delete(&format!("/v1/tenants/{}", t.id), OPERATOR_TOKEN).await.expect(200).clone();
    assert_eq!(report["removed"]["tenants"], 1, "{report}");

    // The run ends (the fake stops being asked), and nothing of the tenant is written.
    eventually("the fenced run to stop reading", LONG, || async {
        let n = fake.with(|crm| crm.request_count());
        tokio::time::sleep(Duration::from_secs(3)).await;
        (fake.with(|crm| crm.request_count()) == n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forms = id_forms(&t.id);
    for (table, rows) in db.dump().await {
        if table != "operator_audit" {
            assert!(
                !rows.iter().any(|r| mentions(r, &forms)),
                "the offboarded tenant re-appeared in {table}: {rows:?}"
            );
        }
    }
    let logs = service.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    // The service goes on: another tenant syncs.
    kept.enable_pipedrive(&fake.base_url(), PD_TOKEN).await.expect(200);
    kept.sync_pipedrive().await;
}
