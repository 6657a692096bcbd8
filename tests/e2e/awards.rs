//! Points are awarded when the numbers change, never when someone reads.
//!
//! The ledger is read straight from the database here, so that nothing in the test reads
//! progress, points or a leaderboard before the awards must already be there: an incentive
//! created over numbers that already earn it awards at once, a sync that reaches a target
//! awards after its commit, an ended contest is frozen and awarded by the freezing tick, a
//! retraction revokes. Reading every answer that shows points or standings then leaves the
//! whole database as it was.

use std::collections::BTreeMap;
use std::time::Duration;

use oneup_fake_crm::pipedrive::NewDeal;
use oneup_fake_crm::{Date, Timestamp};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::json;

const TOKEN: &str = "pd-awards-token-5b2e91";
const DAY: i64 = 86_400;

on_both_stores!(points_are_awarded_when_the_numbers_change_and_reads_never_write);

/// The ledger's row count and sum of points.
async fn ledger(db: &TestDatabase) -> (i64, i64) {
    let rows = db.scalar_i64("SELECT COUNT(*) FROM points_ledger").await;
    let sum = db.scalar_i64("SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM points_ledger").await;
    (rows, sum)
}

/// Waits (without reading anything through the API) until the ledger holds `want`.
async fn ledger_becomes(db: &TestDatabase, what: &str, want: (i64, i64)) {
    eventually(what, Duration::from_secs(20), || async {
        let now = ledger(db).await;
        (now == want).then_some(())
    })
    .await;
    // Exactly once: nothing more comes later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ledger(db).await, want, "{what}: written once");
}

/// Every read that shows points, progress or standings, as the manager and the users.
async fn read_everything(t: &app::Tenant, users: &[(String, String)], contest: &str, targets: &[String], team: &str) {
    let api = &t.api;
    for (id, token) in users {
        api.get(&format!("/v1/users/{id}/points"), &t.manager).await.expect(200);
        api.get("/v1/me/points", token).await.expect(200);
    }
    for target in targets {
        api.get(&format!("/v1/targets/{target}/progress"), &t.manager).await.expect(200);
    }
    let path = format!("/v1/teams/{team}/progress?metric=deals_won&period=month&on=2000-01-01");
    // No target covers that day: 404, and still nothing written.
    api.get(&path, &t.manager).await.expect_error(404);
    api.get(&format!("/v1/contests/{contest}/leaderboard"), &t.manager).await.expect(200);
    api.get(&format!("/v1/contests/{contest}"), &t.manager).await.expect(200);
    api.get("/v1/contests", &t.manager).await.expect(200);
    api.get("/v1/targets", &t.manager).await.expect(200);
    api.get("/v1/incentives", &t.manager).await.expect(200);
}

/// The tables that differ between two dumps.
fn differing(a: &BTreeMap<String, Vec<String>>, b: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

async fn points_are_awarded_when_the_numbers_change_and_reads_never_write(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(4242, 2, 20, 5, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Award Co", "awards.example", "UTC", "GBP").await;
    let crm: Vec<(u64, String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    let mut users = Vec::new();
    for (_, name, email) in &crm {
        users.push(t.add_user(name, email, "member").await);
    }
    let (u0, u1) = (crm[0].0, crm[1].0);
    let (id0, id1) = (users[0].0.clone(), users[1].0.clone());

    // Thirteen months back, where the generated data never reaches: u0 wins 3 deals, u1 1.
    let today = Timestamp::now_utc().date().to_string();
    let (y, m) = (today[..4].parse::<i32>().unwrap(), today[5..7].parse::<i32>().unwrap());
    let index = y * 12 + (m - 1) - 13;
    let first = Date::from_ymd(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1).expect("a month");
    let t0 = first.start();
    fake.with(|crm| {
        for (owner, at) in [(u0, DAY), (u0, 2 * DAY), (u0, 3 * DAY), (u1, 4 * DAY)] {
            crm.add_deal(NewDeal::won(owner, 100.0, "GBP", t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;

    // An ended contest, a target each (u0 reaches 3, u1 has 1 of 2), their incentives.
    let contest = json!({"name": "Last year's month", "metric": "deals_won", "format": "leaderboard",
        "starts_at": t0.to_string(), "ends_at": t0.plus_secs(28 * DAY).to_string(),
        "participants": {"users": [id0, id1]}});
    let contest = str_of(&api.post("/v1/contests", &t.manager, &contest).await.expect(201)["id"]);
    let target = |user: &str, goal: i64| {
        json!({"assignee": {"user_id": user}, "metric": "deals_won", "period": "month", "goal": goal,
            "starts_on": first.to_string()})
    };
    let target0 = str_of(&api.post("/v1/targets", &t.manager, &target(&id0, 3)).await.expect(201)["id"]);
    let target1 = str_of(&api.post("/v1/targets", &t.manager, &target(&id1, 2)).await.expect(201)["id"]);
    let team = t.team("Both", &[&id0, &id1]).await;
    assert_eq!(ledger(&db).await, (0, 0), "no incentive yet");
    for body in [
        json!({"contest_id": contest, "places": 1, "points": 50}),
        json!({"target_id": target0, "points": 100}),
        json!({"target_id": target1, "points": 20}),
    ] {
        api.post("/v1/incentives", &t.manager, &body).await.expect(201);
    }

    // Nobody has read anything: u0's target award and the contest's first place (frozen by
    // the tick) are in the ledger already; u1 has earned nothing.
    ledger_becomes(&db, "the awards of the incentives just created", (2, 150)).await;

    // Reading every answer that shows them writes nothing at all.
    let before = db.dump().await;
    let targets = [target0.clone(), target1.clone()];
    read_everything(&t, &users, &contest, &targets, &team).await;
    read_everything(&t, &users, &contest, &targets, &team).await;
    let after = db.dump().await;
    assert!(before == after, "reads wrote to {:?}", differing(&before, &after));
    let balance = |id: String| {
        let api = api.clone();
        let token = t.manager.clone();
        async move { api.get(&format!("/v1/users/{id}/points"), &token).await.expect(200)["balance"].clone() }
    };
    assert_eq!((balance(id0.clone()).await, balance(id1.clone()).await), (json!(150), json!(0)));

    // A sync that takes u1 to the goal awards after its commit, without a read.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        crm.add_deal(NewDeal::won(u1, 100.0, "GBP", t0.plus_secs(5 * DAY))).expect("a deal is added");
    });
    t.sync_pipedrive().await;
    ledger_becomes(&db, "u1's award after the sync", (3, 170)).await;

    // A retraction revokes u0's target award (the frozen contest result stands).
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let deal = crm
            .deals()
            .iter()
            .find(|d| d.owner_id == u0 && d.won_time == Some(t0.plus_secs(DAY)))
            .map(|d| d.id)
            .expect("u0's first deal");
        crm.mark_deal_lost(deal).expect("the deal is lost");
    });
    t.sync_pipedrive().await;
    ledger_becomes(&db, "the revocation after the retraction", (4, 70)).await;

    // Reads still write nothing, and show the ledger as it is.
    let before = db.dump().await;
    read_everything(&t, &users, &contest, &targets, &team).await;
    let after = db.dump().await;
    assert!(before == after, "reads wrote to {:?}", differing(&before, &after));
    assert_eq!((balance(id0).await, balance(id1).await), (json!(50), json!(20)));
}
