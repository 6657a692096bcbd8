//! Only as long as required, end to end on both stores: the tamper-evident audit log, the
//! tenant's privacy settings and living processing register, and the retention purge
//! (settled facts sealed, unmatched owners' facts discarded) through the real service, the
//! real Pipedrive component and a fake Pipedrive on loopback.
//!
//! What the promise says and these tests hold it to: an edited audit row is caught and
//! named; the register is the tenant's own (settings, consents, processors switched on);
//! after a purge every KPI, target and leaderboard reads the same while the source hashes of
//! settled facts are gone from the database; a later change to a settled record changes
//! nothing and is counted `settled`; facts of a CRM user who matched nobody vanish after
//! their window, unless an admin maps them first.

use std::collections::BTreeMap;
use std::process::Command;

use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{DatasetSpec, DealStatus, FakePipedrive};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-retention-token-4b1e";
const CURRENCY: &str = "GBP";
const ALL_TIME: (&str, &str) = ("2000-01-01", "2100-01-01");
const METRICS: [&str; 4] = ["deals_won", "revenue", "calls", "meetings"];
const DAY_SECS: i64 = 86_400;

on_both_stores!(
    the_audit_chain_verifies_and_names_an_edited_row,
    settings_are_checked_and_the_register_is_the_tenants_own,
    settled_facts_are_sealed_and_every_figure_reads_the_same,
    unmatched_owners_facts_vanish_after_their_window,
    a_purge_while_a_sync_commits_loses_nothing,
);

/// A fake Pipedrive whose data spans the last 180 days.
async fn fake(seed: u64, users: usize) -> FakePipedrive {
    use oneup_fake_crm::pipedrive::Dataset;
    let spec = DatasetSpec::new(seed, users, 160, 160).ending_at(Timestamp::now_utc()).spanning_days(180);
    FakePipedrive::start(Dataset::generate_with(&spec), TOKEN).await.expect("the fake Pipedrive starts")
}

/// Adds a tenant user for every CRM user but those in `skip`: CRM id → user id.
async fn add_crm_users(t: &app::Tenant, fake: &FakePipedrive, skip: &[u64]) -> BTreeMap<u64, String> {
    let crm: Vec<(u64, String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    let mut out = BTreeMap::new();
    for (id, name, email) in crm {
        if !skip.contains(&id) {
            out.insert(id, t.add_user(&name, &email, "member").await.0);
        }
    }
    out
}

/// `GET /v1/kpis` over all time by user as the manager, for every metric: the rows and the
/// unattributed figure, as the service answers them.
async fn kpis(t: &app::Tenant) -> BTreeMap<&'static str, (Json, Json)> {
    let mut out = BTreeMap::new();
    for metric in METRICS {
        let path = format!("/v1/kpis?metric={metric}&from={}&to={}&group_by=user", ALL_TIME.0, ALL_TIME.1);
        let body = t.api.get(&path, &t.manager).await.expect(200).clone();
        out.insert(metric, (body["rows"].clone(), body["unattributed"].clone()));
    }
    out
}

/// Every figure a purge must leave as it was: the KPIs, a leaderboard's entries, a
/// target's value and status.
async fn figures(t: &app::Tenant, contest: &str, target: &str) -> (BTreeMap<&'static str, (Json, Json)>, Json, Json) {
    let board = t.api.get(&format!("/v1/contests/{contest}/leaderboard"), &t.manager).await.expect(200).clone();
    let progress = t.api.get(&format!("/v1/targets/{target}/progress"), &t.manager).await.expect(200).clone();
    (
        kpis(t).await,
        board["entries"].clone(),
        json!({"value": progress["value"], "status": progress["status"], "achieved_at": progress["achieved_at"]}),
    )
}

/// The hex source hashes of the stored facts that occurred before `before_ms`.
async fn source_hashes(db: &TestDatabase, before_ms: i64) -> Vec<String> {
    let sql = match db.backend {
        Backend::Postgres => format!("SELECT encode(source_hash, 'hex') FROM facts WHERE occurred_at < {before_ms}"),
        Backend::Sqlite => format!("SELECT lower(hex(source_hash)) FROM facts WHERE occurred_at < {before_ms}"),
    };
    let mut rows = db.strings(&sql).await;
    rows.sort();
    rows
}

/// `oneup audit verify` against the test database: exit code and stdout.
fn audit_verify_cli(db: &TestDatabase) -> (i32, String) {
    let out = Command::new(oneup_bin())
        .args(["audit", "verify"])
        .env("DATABASE_URL", &db.url)
        .env("ONEUP_MASTER_KEY", MASTER_KEY_HEX)
        .env_remove("ONEUP_MASTER_KEY_FILE")
        .output()
        .expect("oneup runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

// ----- the audit chain ------------------------------------------------------------------

/// Every entry is chained: `GET /v1/audit/verify` and `oneup audit verify` say the log
/// verifies; someone with write access to the database (the append-only trigger disabled,
/// as an attacker who owns the tables can) edits one entry's subject: both name that entry.
/// Removing another tenant's newest entry is caught as truncation. Members may not ask.
async fn the_audit_chain_verifies_and_names_an_edited_row(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Chain Co", "chain.example", "UTC", CURRENCY).await;
    let other = app::Tenant::create(&api, "Other Co", "other.example", "UTC", CURRENCY).await;

    assert_eq!(api.get("/v1/audit/verify", &t.member).await.expect_error(403), "forbidden");
    let verdict = api.get("/v1/audit/verify", &t.admin).await.expect(200).clone();
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["first_broken"], Json::Null, "{verdict}");
    let entries = verdict["entries"].as_u64().expect("a count");
    assert!(entries >= 4, "tenant, users and tokens are audited: {verdict}");
    assert_eq!(str_of(&verdict["head"]).len(), 64, "{verdict}");
    let (code, out) = audit_verify_cli(&db);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("entries verify").count(), 2, "both tenants verify: {out}");

    // The append-only rule holds against the service's own connection.
    let tenant_filter = |id: &str| match backend {
        Backend::Postgres => format!("tenant_id = '{id}'"),
        Backend::Sqlite => format!("tenant_id = X'{}'", id.replace('-', "")),
    };
    let edit = format!("UPDATE audit_log SET subject = 'nothing happened' WHERE {} AND seq = 2", tenant_filter(&t.id));
    let disable = match backend {
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
    };
    db.execute(&format!("{disable}; {edit}")).await;
    let last = db.scalar_i64(&format!("SELECT MAX(seq) FROM audit_log WHERE {}", tenant_filter(&other.id))).await;
    db.execute(&format!("DELETE FROM audit_log WHERE {} AND seq = {last}", tenant_filter(&other.id))).await;

    let verdict = api.get("/v1/audit/verify", &t.admin).await.expect(200).clone();
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert_eq!(verdict["first_broken"], json!({"seq": 2, "reason": "mismatch"}), "{verdict}");
    let verdict = api.get("/v1/audit/verify", &other.admin).await.expect(200).clone();
    assert_eq!(verdict["first_broken"], json!({"seq": last, "reason": "truncated"}), "{verdict}");
    let (code, out) = audit_verify_cli(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("tenant {}: BROKEN at entry 2 (mismatch)", t.id)), "{out}");
    assert!(out.contains(&format!("BROKEN at entry {last} (truncated)")), "{out}");
}

// ----- settings and the register ---------------------------------------------------------

/// `PUT /v1/privacy/settings`: a member 403, windows out of range 422 naming the field,
/// and none of them changes anything; an admin's settings show in the tenant's register
/// (its own data protection officer, windows, the messenger as a processor only once
/// switched on) with the consent record of its integration (who, when, which metrics,
/// which component), and in no other tenant's.
async fn settings_are_checked_and_the_register_is_the_tenants_own(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake(9151, 3).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Register Co", "register.example", "UTC", CURRENCY).await;
    let other = app::Tenant::create(&api, "Other Co", "other.example", "UTC", CURRENCY).await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    // The first sync ends before the "nothing written" checks below.
    t.sync_pipedrive().await;

    let register = api.get("/v1/privacy/register", &t.member).await.expect(200).clone();
    assert_eq!(register["dpo_contact"], Json::Null, "{register}");
    assert_eq!(register["retention"]["settle_days"], 400, "{register}");
    assert_eq!(register["retention"]["unmatched_days"], 30, "{register}");
    assert_eq!(register["processors"], json!([]), "the messenger is off: {register}");
    let consents = register["integrations"].as_array().expect("consents");
    assert_eq!(consents.len(), 1, "{register}");
    let consent = &consents[0];
    assert_eq!(consent["connector"], "pipedrive");
    assert_eq!(consent["enabled"], true);
    assert_eq!(consent["enabled_by"], json!(t.admin_id), "who consented: {consent}");
    assert!(consent["enabled_at_ms"].as_i64().is_some(), "when: {consent}");
    assert_eq!(consent["metrics"], json!(["deals_won", "revenue", "calls", "meetings"]), "{consent}");
    assert!(consent["component_digest"].as_str().is_some_and(|d| d.len() == 64), "which component: {consent}");
    let figures = register["categories"].as_array().unwrap().iter().find(|c| c["category"] == "performance figures");
    assert!(str_of(&figures.expect("figures")["retention"]).contains("400 days"), "{register}");

    let before = db.dump().await;
    let refused = api.put("/v1/privacy/settings", &t.member, &json!({"settle_days": 60})).await;
    assert_eq!(refused.expect_error(403), "forbidden");
    for (body, field) in [
        (json!({"settle_days": 29}), "settle_days"),
        (json!({"settle_days": 3651}), "settle_days"),
        (json!({"unmatched_days": 0, "settle_days": 60}), "unmatched_days"),
        (json!({"runs_days": -5}), "runs_days"),
    ] {
        let refused = api.put("/v1/privacy/settings", &t.admin, &body).await;
        assert_eq!(refused.expect_error(422), "out_of_range", "{body}");
        assert!(refused.text.contains(field), "the error names `{field}`: {}", refused.text);
    }
    let refused = api.put("/v1/privacy/settings", &t.admin, &json!({"settle_dayz": 60})).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(db.dump().await, before, "refused settings wrote nothing");

    let body =
        json!({"dpo_contact": "Dana Protect, dpo@register.example", "settle_days": 120, "support_messenger": true});
    let set = api.put("/v1/privacy/settings", &t.admin, &body).await.expect(200).clone();
    assert_eq!(set["settle_days"], 120);
    assert_eq!(set["unmatched_days"], 30, "left out, kept");
    let register = api.get("/v1/privacy/register", &t.member).await.expect(200).clone();
    assert_eq!(register["dpo_contact"], "Dana Protect, dpo@register.example");
    assert_eq!(register["retention"]["settle_days"], 120);
    assert_eq!(register["processors"].as_array().map(Vec::len), Some(1), "the messenger is on: {register}");
    let figures = register["categories"].as_array().unwrap().iter().find(|c| c["category"] == "performance figures");
    assert!(str_of(&figures.unwrap()["retention"]).contains("120 days"), "{register}");
    let audit = api.get("/v1/audit?limit=1000", &t.admin).await;
    assert!(audit.text.contains("privacy.settings_changed"), "audited");
    assert!(!audit.text.contains("Dana"), "the contact is not in the audit log");

    // Another tenant's register is its own.
    let theirs = api.get("/v1/privacy/register", &other.admin).await.expect(200).clone();
    assert_eq!(theirs["dpo_contact"], Json::Null);
    assert_eq!(theirs["retention"]["settle_days"], 400);
    assert_eq!(theirs["integrations"], json!([]));
    assert_eq!(theirs["processors"], json!([]));
}

// ----- settled facts ----------------------------------------------------------------------

/// A tenant with 180 days of CRM data sets a 30-day settle window and purges: every KPI,
/// the leaderboard and the target read the same; the facts older than the window keep
/// their values but none of their source hashes is in the database any more. A second
/// purge at once answers 409. An edit in the CRM to a settled deal, synced, changes nothing
/// and is counted `settled`; so does a full resync.
async fn settled_facts_are_sealed_and_every_figure_reads_the_same(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake(9152, 4).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Settle Co", "settle.example", "UTC", CURRENCY).await;
    let users = add_crm_users(&t, &fake, &[]).await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;

    let now = Timestamp::now_utc();
    let window = (now.plus_secs(-200 * DAY_SECS), now.plus_secs(DAY_SECS));
    let body = json!({"name": "All season", "metric": "revenue", "format": "leaderboard",
        "starts_at": window.0.to_string(), "ends_at": window.1.to_string(),
        "participants": {"users": users.values().collect::<Vec<_>>()}});
    let contest = str_of(&api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"]);
    let top_user = users.values().next().expect("a CRM user");
    let body = json!({"assignee": {"user_id": top_user}, "metric": "deals_won", "period": "year", "goal": 5,
        "starts_on": now.plus_secs(-100 * DAY_SECS).date().to_string()});
    let target = str_of(&api.post("/v1/targets", &t.manager, &body).await.expect(201)["id"]);
    let before = figures(&t, &contest, &target).await;

    let settle_ms = (now.unix() - 30 * DAY_SECS) * 1000;
    let old_hashes = source_hashes(&db, settle_ms).await;
    assert!(old_hashes.len() > 50, "the data reaches past the window: {}", old_hashes.len());
    let facts = db.scalar_i64("SELECT COUNT(*) FROM facts").await;

    assert_eq!(api.post_empty("/v1/privacy/retention/run", &t.member).await.expect_error(403), "forbidden");
    api.put("/v1/privacy/settings", &t.admin, &json!({"settle_days": 30})).await.expect(200);
    let run = api.post_empty("/v1/privacy/retention/run", &t.admin).await.expect(200).clone();
    let sealed = run["report"]["facts_sealed"].as_u64().expect("a count");
    assert!(sealed as usize >= old_hashes.len(), "{run}");
    assert_eq!(run["kind"], "manual");

    assert_eq!(figures(&t, &contest, &target).await, before, "every figure reads the same after the purge");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts, "no fact was lost");
    let after = source_hashes(&db, settle_ms).await;
    assert_eq!(after.len(), old_hashes.len());
    assert!(after.iter().all(|h| old_hashes.binary_search(h).is_err()), "no settled source hash is left");
    assert_eq!(
        db.scalar_i64(&format!("SELECT COUNT(*) FROM facts WHERE occurred_at < {settle_ms} AND sealed_at IS NULL"))
            .await,
        0
    );
    let state = api.get("/v1/privacy/retention", &t.admin).await.expect(200).clone();
    assert_eq!(state["last_run"], run, "{state}");
    assert_eq!(state["settings"]["settle_days"], 30);
    assert_eq!(state["running"], false);
    let audit = api.get("/v1/audit?limit=1000", &t.admin).await;
    assert!(audit.text.contains("retention.purged"), "the purge is audited");

    // A purge already running (on another node): the second answers 409, nothing changes.
    let lease = format!(
        "UPDATE privacy_settings SET retention_lease_holder = 'other-node', retention_lease_until = {}",
        (now.unix() + 3600) * 1000
    );
    db.execute(&lease).await;
    let refused = api.post_empty("/v1/privacy/retention/run", &t.admin).await;
    assert_eq!(refused.expect_error(409), "retention_running");
    assert_eq!(api.get("/v1/privacy/retention", &t.admin).await.expect(200)["running"], true);
    db.execute("UPDATE privacy_settings SET retention_lease_holder = NULL, retention_lease_until = NULL").await;

    // The CRM changes a settled deal of the top seller: the sync ignores it and says so.
    let old_deal = fake.with(|crm| {
        crm.deals()
            .iter()
            .filter(|d| d.status == DealStatus::Won && !d.is_deleted() && !d.archived)
            .find(|d| d.won_time.is_some_and(|w| w.unix() * 1000 < settle_ms - DAY_SECS * 1000))
            .map(|d| d.id)
            .expect("a deal won before the window")
    });
    fake.with(|crm| crm.set_deal_value(old_deal, 987_654.0)).expect("the deal exists");
    let run = t.sync_pipedrive().await;
    assert!(run["settled"].as_u64().unwrap() >= 1, "the change to a settled deal is counted: {run}");
    assert_eq!(figures(&t, &contest, &target).await, before, "nothing changed");

    let answer = api.post_empty("/v1/integrations/pipedrive/resync", &t.admin).await;
    let run_id = str_of(&answer.expect(202)["run_id"]);
    let run = finished_run(&api, &t.admin, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["settled"].as_u64().unwrap() as usize >= old_hashes.len(), "every settled record: {run}");
    assert_eq!(figures(&t, &contest, &target).await, before, "a full re-read counts nothing twice");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts);
}

// ----- unmatched owners ------------------------------------------------------------------

/// Two CRM users match nobody. A purge notes them; an admin maps one before its window
/// ends; when the window has passed (the test moves the note back in time, as days would),
/// the next purge discards the other's facts, counted in the report, and keeps the mapped
/// one's, which now count for its user.
async fn unmatched_owners_facts_vanish_after_their_window(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake(9153, 4).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Unmatched Co", "unmatched.example", "UTC", CURRENCY).await;
    let crm_ids: Vec<u64> = fake.with(|crm| crm.users().iter().map(|u| u.id).collect());
    let (gone, kept) = (crm_ids[0], crm_ids[1]);
    add_crm_users(&t, &fake, &[gone, kept]).await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;
    let totals = fake.with(|crm| crm.expected_totals());
    let facts_of = |id: u64| {
        let o = &totals[&id];
        (2 * o.deals_won + o.calls + o.meetings) as i64
    };
    assert!(facts_of(gone) > 0 && facts_of(kept) > 0, "both have facts");
    let facts = db.scalar_i64("SELECT COUNT(*) FROM facts").await;

    api.put("/v1/privacy/settings", &t.admin, &json!({"unmatched_days": 1})).await.expect(200);
    let run = api.post_empty("/v1/privacy/retention/run", &t.admin).await.expect(200).clone();
    assert_eq!(run["report"]["unmatched_owners_waiting"], 2, "{run}");
    assert_eq!(run["report"]["unmatched_facts_discarded"], 0, "{run}");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts);

    let (kept_user, _) = t.add_user("Kept Seller", "kept.seller@elsewhere.example", "member").await;
    let body = json!({"crm_user_id": kept.to_string(), "user_id": kept_user});
    api.put("/v1/integrations/pipedrive/owners", &t.admin, &body).await.expect(204);
    db.execute("UPDATE unmatched_owners SET first_seen_at = first_seen_at - 2 * 86400000").await;

    let run = api.post_empty("/v1/privacy/retention/run", &t.admin).await.expect(200).clone();
    assert_eq!(run["report"]["unmatched_owners_discarded"], 1, "{run}");
    assert_eq!(run["report"]["unmatched_facts_discarded"], facts_of(gone), "{run}");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts - facts_of(gone));
    let figures = kpis(&t).await;
    for (metric, (_, unattributed)) in &figures {
        assert!(
            unattributed == &json!(0) || unattributed == &json!("0.00"),
            "{metric}: nothing unattributed is left: {unattributed}"
        );
    }
    let calls = &figures["calls"].0;
    let kept_row = calls.as_array().unwrap().iter().find(|r| r["user_id"] == json!(kept_user));
    assert_eq!(kept_row.map(|r| r["value"].clone()), Some(json!(totals[&kept].calls)), "the mapped owner's facts stay");
}

// ----- a purge during a sync ---------------------------------------------------------------

/// A finished run of `run_id`, polled.
async fn finished_run(api: &Api, admin: &str, run_id: &str) -> Json {
    eventually("the run", std::time::Duration::from_secs(60), || async {
        let run = api.get(&format!("/v1/integrations/pipedrive/runs/{run_id}"), admin).await.expect(200).clone();
        matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then_some(run)
    })
    .await
}

/// A purge started while a sync commits: both finish and the totals are exactly the CRM's.
/// Then, with a 30-day window, a purge sealing facts while a full resync commits them
/// again: both finish, every figure is as it was and no fact is counted twice.
async fn a_purge_while_a_sync_commits_loses_nothing(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake(9154, 4).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Busy Co", "busy.example", "UTC", CURRENCY).await;
    let users = add_crm_users(&t, &fake, &[]).await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    let (sync, purge) = tokio::join!(
        api.post_empty("/v1/integrations/pipedrive/sync?wait=true", &t.admin),
        api.post_empty("/v1/privacy/retention/run", &t.admin),
    );
    assert_eq!(sync.expect(200)["status"], "succeeded", "{}", sync.text);
    purge.expect(200);

    let expected = fake.with(|crm| crm.expected_totals());
    let figures = kpis(&t).await;
    for (metric, pick) in [("calls", 0), ("deals_won", 1)] {
        let rows = figures[metric].0.as_array().expect("rows");
        for (crm_id, user) in &users {
            let got = rows.iter().find(|r| r["user_id"] == json!(user)).map(|r| r["value"].as_u64().unwrap());
            let want = if pick == 0 { expected[crm_id].calls } else { expected[crm_id].deals_won };
            assert_eq!(got.unwrap_or(0), want, "{metric} of CRM user {crm_id}");
        }
    }

    api.put("/v1/privacy/settings", &t.admin, &json!({"settle_days": 30})).await.expect(200);
    let facts = db.scalar_i64("SELECT COUNT(*) FROM facts").await;
    let answer = api.post_empty("/v1/integrations/pipedrive/resync", &t.admin).await;
    let run_id = str_of(&answer.expect(202)["run_id"]);
    let purge = api.post_empty("/v1/privacy/retention/run", &t.admin).await.expect(200).clone();
    let run = finished_run(&api, &t.admin, &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(purge["report"]["facts_sealed"].as_u64().unwrap() > 0, "{purge}");
    assert_eq!(kpis(&t).await, figures, "every figure as it was");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts").await, facts, "nothing counted twice");
}
