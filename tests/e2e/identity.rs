//! Nobody claims someone else's CRM identity (issue 11, section 2), through the real service
//! on both stores: a member who sets their own e-mail to a top seller's CRM address is not
//! credited with the seller's deals, KPIs or contest standing until an admin confirms; the
//! roster never overrides an existing mapping (automatic or manual); every remap is
//! audited without the CRM id or the e-mail; points awarded on remapped facts are revoked.

use std::collections::BTreeMap;

use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::NewDeal;
use oneup_tests::app;
use oneup_tests::app::str_of;
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-identity-token-83c1f0";
const OWNERS: &str = "/v1/integrations/pipedrive/owners";

on_both_stores!(
    a_member_cannot_claim_a_top_sellers_crm_identity,
    the_roster_never_overrides_a_mapping_and_a_remap_revokes_points,
);

/// `deals_won` over all time per user id, and the unattributed count.
async fn deals(t: &app::Tenant) -> (BTreeMap<String, i64>, i64) {
    let answer = t.api.get("/v1/kpis?metric=deals_won&from=2000-01-01&to=2100-01-01", &t.manager).await;
    let body = answer.expect(200);
    let rows = body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (str_of(&r["user_id"]), r["value"].as_i64().expect("a count")))
        .collect();
    (rows, body["unattributed"].as_i64().expect("a count"))
}

async fn leaderboard(t: &app::Tenant, contest: &str) -> BTreeMap<String, i64> {
    let board = t.api.get(&format!("/v1/contests/{contest}/leaderboard"), &t.manager).await;
    board.expect(200)["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (str_of(&e["user_id"]), e["value"].as_i64().expect("a count")))
        .collect()
}

async fn owners(t: &app::Tenant) -> Json {
    t.api.get(OWNERS, &t.admin).await.expect(200).clone()
}

async fn audit(t: &app::Tenant) -> Vec<Json> {
    t.api.get("/v1/audit?limit=1000", &t.admin).await.expect(200)["entries"].as_array().expect("entries").clone()
}

async fn contest(t: &app::Tenant, users: &[&str]) -> String {
    let body = json!({"name": "All time", "metric": "deals_won", "format": "leaderboard",
        "starts_at": "2000-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z", "participants": {"users": users}});
    str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"])
}

/// The pending entries as (owner, user, reason).
fn pending(owners: &Json) -> Vec<(String, String, String)> {
    owners["pending"]
        .as_array()
        .expect("pending")
        .iter()
        .map(|p| (str_of(&p["owner"]), str_of(&p["user_id"]), str_of(&p["reason"])))
        .collect()
}

/// The mappings as owner → (user, source).
fn mapped(owners: &Json) -> BTreeMap<String, (String, String)> {
    owners["mapped"]
        .as_array()
        .expect("mapped")
        .iter()
        .map(|m| (str_of(&m["owner"]), (str_of(&m["user_id"]), str_of(&m["source"]))))
        .collect()
}

async fn a_member_cannot_claim_a_top_sellers_crm_identity(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(1101, 3, 90, 30, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Claims Co", "claims.example", "UTC", "GBP").await;
    let users: Vec<(u64, String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    let totals = fake.with(|crm| crm.expected_totals());
    let (&top, top_totals) = totals.iter().max_by_key(|(id, t)| (t.deals_won, *id)).expect("a CRM user");
    let top_deals = top_totals.deals_won as i64;
    assert!(top_deals > 0);
    let top_email = users.iter().find(|u| u.0 == top).expect("the top seller").2.clone();
    // The other salespeople have accounts an admin made; the top seller has none.
    for (id, name, email) in &users {
        if *id != top {
            t.add_user(name, email, "member").await;
        }
    }
    let contest = contest(&t, &[&t.member_id]).await;

    // The attack: the member sets their own e-mail to the top seller's CRM address.
    let claimed = api.patch("/v1/me", &t.member, &json!({"email": top_email.to_uppercase()})).await;
    claimed.expect(200);
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;

    // Nothing is credited to the member: the seller's deals wait, unattributed.
    let (rows, unattributed) = deals(&t).await;
    assert_eq!(rows[&t.member_id], 0, "{rows:?}");
    assert_eq!(unattributed, top_deals);
    assert_eq!(leaderboard(&t, &contest).await[&t.member_id], 0);
    // The proposed mapping is listed as pending, for an admin to decide.
    let listed = owners(&t).await;
    let pending_now = pending(&listed);
    assert_eq!(pending_now.len(), 1, "{listed}");
    let (owner, user, reason) = pending_now[0].clone();
    assert_eq!((user.as_str(), reason.as_str()), (t.member_id.as_str(), "self_service_email"), "{listed}");
    assert!(mapped(&listed).values().all(|(u, _)| *u != t.member_id), "{listed}");
    assert_eq!(listed["unmapped_owners"], 1, "{listed}");
    assert!(listed["pending"][0]["detected_at_ms"].as_i64().is_some(), "{listed}");
    let entries = audit(&t).await;
    let flagged: Vec<&Json> = entries.iter().filter(|e| e["action"] == "owner.mapping_pending").collect();
    assert_eq!(flagged.len(), 1, "{entries:?}");
    assert!(str_of(&flagged[0]["subject"]).contains(&owner), "{flagged:?}");
    assert!(!entries.iter().any(|e| e.to_string().to_lowercase().contains(&top_email)), "no e-mail in the audit");

    // The next sync changes nothing, and audits the same pending mapping only once.
    t.sync_pipedrive().await;
    assert_eq!(deals(&t).await.0[&t.member_id], 0);
    assert_eq!(pending(&owners(&t).await), pending_now);
    assert_eq!(audit(&t).await.iter().filter(|e| e["action"] == "owner.mapping_pending").count(), 1);

    // Confirmations that do not match a pending mapping are refused, and write nothing.
    let before = db.dump().await;
    let confirm = |owner: &str, user: &str| {
        let api = api.clone();
        let (path, token) = (format!("{OWNERS}/{owner}/confirm"), t.admin.clone());
        let body = json!({"user_id": user});
        async move { api.post(&path, &token, &body).await }
    };
    assert_eq!(confirm(&owner, &t.admin_id).await.expect_error(404), "not_found", "another user");
    assert_eq!(confirm(&"0".repeat(32), &t.member_id).await.expect_error(404), "not_found", "unknown owner");
    assert_eq!(confirm("not-a-hash", &t.member_id).await.expect_error(404), "not_found", "malformed owner");
    let bad = api.send("POST", &format!("{OWNERS}/{owner}/confirm"), Some(&t.admin), Some("{}")).await;
    assert_eq!(bad.expect_error(400), "invalid_body");
    let as_member = api.post(&format!("{OWNERS}/{owner}/confirm"), &t.member, &json!({"user_id": t.member_id})).await;
    assert_eq!(as_member.expect_error(403), "forbidden");
    assert_eq!(db.dump().await, before, "nothing written");

    // An admin confirms: from then on the seller's deals count for the member, audited.
    let confirmed = confirm(&owner, &t.member_id).await;
    assert_eq!(confirmed.status, 204, "{}", confirmed.text);
    let (rows, unattributed) = deals(&t).await;
    assert_eq!((rows[&t.member_id], unattributed), (top_deals, 0));
    assert_eq!(leaderboard(&t, &contest).await[&t.member_id], top_deals);
    let listed = owners(&t).await;
    assert!(pending(&listed).is_empty(), "{listed}");
    assert_eq!(mapped(&listed)[&owner], (t.member_id.clone(), "confirmed".to_owned()));
    let entries = audit(&t).await;
    let entry = entries.iter().find(|e| e["action"] == "owner.confirmed").expect("the confirmation is audited");
    assert_eq!(entry["actor"], format!("user:{}", t.admin_id));
    assert!(str_of(&entry["subject"]).contains(&owner) && str_of(&entry["subject"]).contains(&t.member_id));
    assert_eq!(confirm(&owner, &t.member_id).await.expect_error(404), "not_found", "confirmed once");
    // The next sync keeps it.
    t.sync_pipedrive().await;
    assert_eq!(deals(&t).await.0[&t.member_id], top_deals);
}

async fn the_roster_never_overrides_a_mapping_and_a_remap_revokes_points(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(1202, 3, 60, 20, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Remap Ltd", "remap.example", "UTC", "GBP").await;
    let users: Vec<(u64, String)> = fake.with(|crm| crm.users().iter().map(|u| (u.id, u.email.clone())).collect());
    let ((a, a_email), (b, b_email)) = (users[0].clone(), users[1].clone());
    // A deal won today, so that this year's target is reached.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let now = crm.now();
        crm.add_deal(NewDeal::won(a, 100.0, "GBP", now)).expect("deal added");
    });
    let totals = fake.with(|crm| crm.expected_totals());
    let (a_deals, b_deals) = (totals[&a].deals_won as i64, totals[&b].deals_won as i64);

    // Ann's address (set by an admin) maps CRM user `a` to her automatically.
    let (ann, _) = t.add_user("Ann", &a_email, "member").await;
    let (bob, _) = t.add_user("Bob", "bob@elsewhere.example", "member").await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;
    let listed = owners(&t).await;
    let by_user = |listed: &Json, user: &str| -> String {
        mapped(listed).into_iter().find(|(_, (u, _))| u == user).map(|(o, _)| o).expect("a mapping of the user")
    };
    let owner_a = by_user(&listed, &ann);
    assert_eq!(mapped(&listed)[&owner_a].1, "auto");
    let entries = audit(&t).await;
    let auto = entries.iter().find(|e| e["action"] == "owner.mapped_auto").expect("the automatic mapping is audited");
    assert_eq!(auto["actor"], "system");
    assert!(str_of(&auto["subject"]).contains(&owner_a));
    // An admin maps `b` to Bob by its CRM id.
    let manual = api.put(OWNERS, &t.admin, &json!({"crm_user_id": b.to_string(), "user_id": bob})).await;
    assert_eq!(manual.status, 204, "{}", manual.text);
    let owner_b = by_user(&owners(&t).await, &bob);
    assert_eq!(mapped(&owners(&t).await)[&owner_b].1, "manual");

    // Ann earns points on her target; the contest shows her deals.
    let today = Timestamp::now_utc().date().to_string();
    let target = t
        .api
        .post(
            "/v1/targets",
            &t.manager,
            &json!({"assignee": {"user_id": ann}, "metric": "deals_won", "period": "year", "goal": 1,
                "starts_on": today}),
        )
        .await;
    let target = str_of(&target.expect(201)["id"]);
    api.post("/v1/incentives", &t.manager, &json!({"target_id": target, "points": 10})).await.expect(201);
    let points = |user: String| {
        let api = api.clone();
        let token = t.manager.clone();
        async move { api.get(&format!("/v1/users/{user}/points"), &token).await.expect(200).clone() }
    };
    assert_eq!(points(ann.clone()).await["balance"], 10);
    let (carl, _) = t.add_user("Carl", &b_email, "member").await;
    let contest = contest(&t, &[&ann, &bob, &carl]).await;
    assert_eq!(leaderboard(&t, &contest).await[&ann], a_deals);

    // Ann's address changes (by an admin), and Dora gets `a`'s address; Carl has `b`'s.
    // The roster proposes both, overrides neither.
    api.patch(&format!("/v1/users/{ann}"), &t.admin, &json!({"email": "ann@elsewhere.example"})).await.expect(200);
    let (dora, _) = t.add_user("Dora", &a_email, "member").await;
    t.sync_pipedrive().await;
    let listed = owners(&t).await;
    let mut expected = vec![
        (owner_a.clone(), dora.clone(), "mapped_to_other".to_owned()),
        (owner_b.clone(), carl.clone(), "mapped_to_other".to_owned()),
    ];
    expected.sort();
    assert_eq!(pending(&listed), expected, "{listed}");
    assert_eq!(mapped(&listed)[&owner_a], (ann.clone(), "auto".to_owned()));
    assert_eq!(mapped(&listed)[&owner_b], (bob.clone(), "manual".to_owned()));
    let (rows, _) = deals(&t).await;
    assert_eq!((rows[&ann], rows[&bob], rows[&carl], rows[&dora]), (a_deals, b_deals, 0, 0));

    // The admin confirms Dora: Ann's facts are Dora's, Ann's points are revoked, the
    // contest (cached before) shows it at once; the remap is audited with who had it.
    let path = format!("{OWNERS}/{owner_a}/confirm");
    let confirmed = api.post(&path, &t.admin, &json!({"user_id": dora})).await;
    assert_eq!(confirmed.status, 204, "{}", confirmed.text);
    let (rows, _) = deals(&t).await;
    assert_eq!((rows[&ann], rows[&dora]), (0, a_deals));
    let ann_points = points(ann.clone()).await;
    assert_eq!(ann_points["balance"], 0, "{ann_points}");
    assert_eq!(ann_points["entries"][0]["reason"], "revoked", "{ann_points}");
    assert_eq!(ann_points["entries"][0]["points"], -10, "{ann_points}");
    assert_eq!(leaderboard(&t, &contest).await[&ann], 0);
    let entries = audit(&t).await;
    let entry = entries.iter().find(|e| e["action"] == "owner.confirmed").expect("audited");
    let subject = str_of(&entry["subject"]);
    assert!(subject.contains(&owner_a) && subject.contains(&dora) && subject.contains(&format!("was={ann}")));

    // Unmapping is audited; the owner's facts wait again, and the roster maps the owner
    // once it is free, through Carl's admin-set address.
    let (_, waiting) = deals(&t).await;
    let unmapped = api.delete(&format!("{OWNERS}/{owner_b}"), &t.admin).await;
    assert_eq!(unmapped.status, 204, "{}", unmapped.text);
    let (rows, unattributed) = deals(&t).await;
    assert_eq!((rows[&bob], unattributed), (0, waiting + b_deals));
    assert_eq!(api.delete(&format!("{OWNERS}/{owner_b}"), &t.admin).await.expect_error(404), "not_found");
    let entries = audit(&t).await;
    let entry = entries.iter().find(|e| e["action"] == "owner.unmapped").expect("audited");
    assert!(str_of(&entry["subject"]).contains(&format!("was={bob}")));
    t.sync_pipedrive().await;
    let listed = owners(&t).await;
    assert_eq!(mapped(&listed)[&owner_b], (carl.clone(), "auto".to_owned()));
    assert!(pending(&listed).is_empty(), "{listed}");
    assert_eq!(leaderboard(&t, &contest).await[&carl], b_deals);
    // No CRM id or e-mail in any audit subject.
    for e in audit(&t).await {
        let subject = str_of(&e["subject"]).to_lowercase();
        assert!(!subject.contains(&a_email) && !subject.contains(&b_email), "{subject}");
    }
    drop(db);
}
