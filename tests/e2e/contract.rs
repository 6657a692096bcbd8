//! The OpenAPI document says exactly what the server does: Schemathesis generates requests from
//! the document the service serves (valid and invalid ones) against a seeded `oneup serve` and
//! checks every answer against it, with every check on.
//!
//! Run on demand with `cargo xtask api-fuzz [--examples N]`, which installs Schemathesis into
//! `target/schemathesis` and passes its `st` in `ONEUP_SCHEMATHESIS`. It is not yet part of
//! `cargo xtask test`: the document does not state every rule the server enforces yet (name
//! lengths, date and decimal shapes, ISO 4217 codes, weekday names, non-empty lists...), and
//! Schemathesis reports each as a "schema-valid request rejected". The configuration, which
//! names the seeded objects, is `tests/contract/schemathesis.toml`.

use std::process::Command;
use std::time::Instant;

use oneup_tests::app::{self, OPERATOR_TOKEN, Service, ServiceOptions, TestDatabase, str_of};
use oneup_tests::*;
use serde_json::json;

const TOKEN: &str = "pd-contract-token-7c1e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "on demand: cargo xtask api-fuzz"]
async fn schemathesis_finds_nothing_over_a_seeded_service() {
    let st = std::env::var_os("ONEUP_SCHEMATHESIS")
        .expect("ONEUP_SCHEMATHESIS names Schemathesis' `st` (`cargo xtask api-fuzz` installs it and sets it)");
    let examples: u32 = std::env::var("ONEUP_ST_MAX_EXAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);

    let fake = fake_pipedrive(41, 3, 60, 60, TOKEN).await;
    let db = TestDatabase::sqlite();
    let options = ServiceOptions {
        // Schemathesis sends requests without credentials on purpose; the per-address limit on
        // failed authentications would turn its later answers into 429s.
        args: vec!["--auth-failures-per-minute".into(), "100000".into()],
        ..ServiceOptions::default()
    };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();

    // The seed: every kind of object a route with an id reads.
    let t = app::Tenant::create(&api, "Contract Co", "contract.example", "Europe/Berlin", "EUR").await;
    let crm_users: Vec<(String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.name.clone(), u.email.clone())).collect());
    let mut people = Vec::new();
    for (name, email) in &crm_users {
        people.push(t.add_user(name, email, "member").await.0);
    }
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    let run = t.sync_pipedrive().await;
    let run_id = str_of(&run["id"]);
    let owners = api.get("/v1/integrations/pipedrive/owners", &t.admin).await.expect(200).clone();
    let owner = owners["owners"][0]["owner"].clone();
    let owner = owner.as_str().map(str::to_owned).unwrap_or_else(|| owner.to_string());
    let team = t.team("Hunters", &[&people[0], &people[1]]).await;
    let metric =
        json!({"slug": "points", "terms": [{"metric": "deals_won", "weight": 10}, {"metric": "calls", "weight": 1}]});
    api.post("/v1/metrics", &t.admin, &metric).await.expect(201);
    let now = oneup_fake_crm::Timestamp::now_utc();
    let contest = json!({
        "name": "Spring push",
        "metric": "deals_won",
        "format": "leaderboard",
        "starts_at": now.plus_secs(-30 * 86_400).to_string(),
        "ends_at": now.plus_secs(30 * 86_400).to_string(),
        "participants": {"users": people},
    });
    let contest = str_of(&api.post("/v1/contests", &t.manager, &contest).await.expect(201)["id"]);
    let target = json!({"assignee": {"user_id": people[0]}, "metric": "deals_won", "period": "month", "goal": 3});
    let target = str_of(&api.post("/v1/targets", &t.manager, &target).await.expect(201)["id"]);
    api.post("/v1/incentives", &t.manager, &json!({"target_id": target, "points": 100, "label": "Goal bonus"}))
        .await
        .expect(201);
    let tokens = api.get(&format!("/v1/users/{}/tokens", t.member_id), &t.admin).await.expect(200).clone();
    let token_id = str_of(&tokens["tokens"][0]["id"]);

    let config = workspace_root().join("tests/contract/schemathesis.toml");
    let report = service.dir().join("schemathesis");
    let started = Instant::now();
    let output = Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", service.base_url))
        .args(["--checks", "all", "--workers", "2", "--max-examples", &examples.to_string()])
        .args(["--seed", "20261208", "--no-color"])
        .arg("--report-dir")
        .arg(&report)
        .args(["--report", "junit"])
        .env("ONEUP_ST_ADMIN", &t.admin)
        .env("ONEUP_ST_OPERATOR", OPERATOR_TOKEN)
        .env("ONEUP_ST_RUN", &run_id)
        .env("ONEUP_ST_METRIC", "points")
        .env("ONEUP_ST_OWNER", &owner)
        .env("ONEUP_ST_MEMBER", &t.member_id)
        .env("ONEUP_ST_TOKEN_ID", &token_id)
        .env("ONEUP_ST_CONTEST", &contest)
        .env("ONEUP_ST_TARGET", &target)
        .env("ONEUP_ST_TEAM", &team)
        .output()
        .expect("Schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("schemathesis ({} examples per operation) took {:?}:\n{stdout}\n{stderr}", examples, started.elapsed());
    assert!(
        output.status.success(),
        "Schemathesis found failures (the service's log is in {}):\n{stdout}\n{stderr}",
        service.dir().display()
    );
    // It really ran: operations were tested and requests were sent.
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!service.logs().contains("panicked"), "{}", service.logs());
}
