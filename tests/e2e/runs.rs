//! Runs that tell the truth, through the real `oneup serve`: patience with a CRM's rate
//! limits (`Retry-After` within a wait budget, the CRM's instant kept in the database),
//! `partial` runs with their reasons and a prompt retry, resync, coalesced sync requests,
//! the development-only loopback flag, and the SQLite file created owner-only.

use std::time::Duration;

use oneup_fake_crm::pipedrive::{FakePipedrive, Fault};
use oneup_tests::app;
use oneup_tests::app::str_of;
use oneup_tests::*;
use serde_json::Value as Json;

use super::service::{TOKEN, Tenant, all_rates, expected};

on_both_stores!(
    a_burst_of_429_on_the_roster_is_waited_out_and_every_owner_is_mapped,
    a_failed_roster_makes_the_run_partial_and_the_retry_comes_promptly,
    the_wait_budget_ends_a_held_off_run_and_the_crms_instant_is_kept,
    resync_reads_everything_again_and_totals_stay_exact,
    a_resync_while_a_run_is_in_flight_applies_when_it_ends,
    repeated_sync_requests_coalesce_into_one_run,
);

const LONG: Duration = Duration::from_secs(180);

/// A service, a fake Pipedrive of 3 salespeople (with `faults` pending), and a tenant whose
/// users are those salespeople by e-mail, with the exchange rates set and Pipedrive
/// enabled; enabling makes a sync due at once, whose finished run is returned.
async fn setup(
    db: &TestDatabase,
    options: &ServiceOptions,
    seed: u64,
    faults: &[(usize, Fault)],
) -> (Service, FakePipedrive, Tenant, Json) {
    let fake = fake_pipedrive(seed, 3, 60, 60, TOKEN).await;
    for (n, fault) in faults {
        fake.with(|crm| crm.fail_next(*n, fault.clone()));
    }
    let service = Service::start(&db.url, options).await;
    let mut t = Tenant::create(&service.api(), "Runs Co", "runs.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.set_rates().await;
    t.enable(&fake).await.expect(200);
    let first = eventually("the first run", LONG, || async {
        let runs = t.runs().await;
        let run = runs.first()?;
        matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then(|| run.clone())
    })
    .await;
    (service, fake, t, first)
}

/// `POST …/sync?wait=true`: the finished run, whatever its status.
async fn sync_wait(t: &Tenant) -> Json {
    let answer = t.api.post_empty("/v1/integrations/pipedrive/sync?wait=true", &t.admin).await;
    answer.expect(200).clone()
}

async fn integration(t: &Tenant) -> Json {
    t.api.get("/v1/integrations/pipedrive", &t.admin).await.expect(200).clone()
}

async fn owners(t: &Tenant) -> Json {
    t.api.get("/v1/integrations/pipedrive/owners", &t.admin).await.expect(200).clone()
}

/// Attack: the CRM answers the roster read with a burst of six 429s (`Retry-After: 1`).
/// Before, the roster gave up after 5 attempts, the run said `succeeded` and every owner
/// stayed unmapped (everyone's KPIs read 0). Now the host waits as asked, within the run's
/// wait budget: the run succeeds for real, every owner mapped, every total exact.
async fn a_burst_of_429_on_the_roster_is_waited_out_and_every_owner_is_mapped(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let faults = [(6, Fault::RateLimited { retry_after_secs: 1 })];
    let (_service, fake, t, run) = setup(&db, &ServiceOptions::default(), 1201, &faults).await;
    assert_eq!(fake.with(|crm| crm.pending_faults()), 0, "every 429 was met");
    let limited = fake.with(|crm| crm.request_log().iter().filter(|r| r.status == 429).count());
    assert_eq!(limited, 6);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["reasons"], serde_json::json!([]), "{run}");
    assert_eq!(run["unmapped"], 0, "{run}");
    assert_eq!(owners(&t).await["unmapped_owners"], 0);
    t.assert_totals(&expected(&fake), &all_rates()).await;
}

/// A roster that cannot be read (the CRM fails it five times over) no longer hides behind
/// `succeeded`: the run is `partial`, says why and how many owners wait, and its retry is
/// due within a minute, not one interval (an hour) later. The retry maps everyone.
async fn a_failed_roster_makes_the_run_partial_and_the_retry_comes_promptly(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let faults = [(5, Fault::ServerError(503))];
    let (_service, fake, t, run) = setup(&db, &ServiceOptions::default(), 1202, &faults).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["error"], Json::Null, "{run}");
    let unmapped = owners(&t).await["unmapped_owners"].as_u64().expect("a count");
    assert!(unmapped > 0, "the owners wait for a mapping");
    assert_eq!(
        run["reasons"],
        serde_json::json!(["roster_failed:http_unavailable", format!("owners_unmapped:{unmapped}")]),
        "{run}"
    );
    let finished = run["finished_at_ms"].as_i64().expect("finished");
    let next = integration(&t).await["next_sync_at_ms"].as_i64().expect("a next sync");
    assert!((finished + 59_000..=finished + 61_000).contains(&next), "retry after 60 s: {next} vs {finished}");

    // The retry (asked for now rather than waited for) reads the roster: everyone mapped.
    let retry = sync_wait(&t).await;
    assert_eq!((&retry["status"], &retry["reasons"]), (&Json::from("succeeded"), &serde_json::json!([])), "{retry}");
    assert_eq!(owners(&t).await["unmapped_owners"], 0);
    t.assert_totals(&expected(&fake), &all_rates()).await;
}

/// A CRM that asks for 30 s while the run may wait 1 s in all: the run's requests stop
/// (nothing hammered: the roster fails, the connector ends its sync as budget exhausted),
/// the run is `partial` and says so, the CRM's instant is kept in the database for any
/// node, and the next sync is due right after it, not an interval later.
async fn the_wait_budget_ends_a_held_off_run_and_the_crms_instant_is_kept(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let options = ServiceOptions { args: vec!["--rate-wait-budget-secs".into(), "1".into()], ..Default::default() };
    let before = now_ms();
    let faults = [(1, Fault::RateLimited { retry_after_secs: 30 })];
    let (_service, fake, t, run) = setup(&db, &options, 1203, &faults).await;
    assert_eq!(run["status"], "partial", "{run}");
    assert_eq!(run["reasons"], serde_json::json!(["roster_failed:http_rate_limited", "budget_exhausted"]), "{run}");
    assert_eq!(run["error"], Json::Null, "{run}");
    // One request reached the CRM: the 429. Nothing else was sent while it held off.
    assert_eq!(fake.with(|crm| crm.request_log().len()), 1);
    let kept = db.scalar_i64("SELECT crm_not_before FROM integrations").await;
    assert!((before + 29_000..=now_ms() + 31_000).contains(&kept), "the CRM's instant: {kept}");
    let next = integration(&t).await["next_sync_at_ms"].as_i64().expect("a next sync");
    assert!(next >= kept && next <= kept + 61_000, "the retry waits for the CRM, not an interval: {next} vs {kept}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// How many deal reads started from the beginning (no `updated_since`).
fn full_deal_reads(fake: &FakePipedrive) -> usize {
    fake.with(|crm| {
        crm.request_log()
            .iter()
            .filter(|r| r.path == "/api/v2/deals" && r.status == 200 && !r.query.contains("updated_since"))
            .filter(|r| !r.query.contains("cursor="))
            .count()
    })
}

/// `POST …/resync` resets the cursor: the next run reads every deal again, and since facts
/// are keyed by their CRM record nothing is counted twice. Bad input: unknown connector
/// 404, a member 403, a disabled integration 409, and nothing was queued by them.
async fn resync_reads_everything_again_and_totals_stay_exact(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let (service, fake, t, first) = setup(&db, &ServiceOptions::default(), 1204, &[]).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let api = service.api();
    t.sync_pipedrive().await;
    let totals = expected(&fake);
    t.assert_totals(&totals, &all_rates()).await;
    let full_before = full_deal_reads(&fake);
    assert_eq!(full_before, 1, "only the first sync read every deal");

    let refused = api.post_empty("/v1/integrations/nope/resync", &t.admin).await;
    assert_eq!(refused.expect_error(404), "not_found");
    let refused = api.post_empty("/v1/integrations/pipedrive/resync", &t.member).await;
    assert_eq!(refused.expect_error(403), "forbidden");
    assert_eq!(t.runs().await.len(), 2, "nothing queued by refused calls");

    let answer = api.post_empty("/v1/integrations/pipedrive/resync", &t.admin).await;
    let body = answer.expect(202).clone();
    assert_eq!(body["cursor_reset"], "now", "{body}");
    let run_id = str_of(&body["run_id"]);
    let run = eventually("the resync run", LONG, || async {
        let run = t.run(&run_id).await;
        matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then_some(run)
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(full_deal_reads(&fake), full_before + 1, "the resync read every deal again");
    assert!(run["upserts"].as_u64().unwrap() > 0, "{run}");
    t.assert_totals(&totals, &all_rates()).await;
    let audit = api.get("/v1/audit?limit=1000", &t.admin).await;
    assert!(audit.text.contains("integration.resync"), "the resync is audited");

    api.delete("/v1/integrations/pipedrive", &t.admin).await.expect(204);
    let refused = api.post_empty("/v1/integrations/pipedrive/resync", &t.admin).await;
    assert_eq!(refused.expect_error(409), "integration_disabled");
}

/// A resync asked for while a run is in flight: resetting under it would let its next
/// commit write its cursor back. The answer says the reset applies when that run ends;
/// then a run that reads everything is due at once, and the totals stay exact.
async fn a_resync_while_a_run_is_in_flight_applies_when_it_ends(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let (service, fake, t, first) = setup(&db, &ServiceOptions::default(), 1205, &[]).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let api = service.api();
    assert_eq!(full_deal_reads(&fake), 1);
    // The next run is slow: its first requests take a while each.
    fake.with(|crm| crm.fail_next(4, Fault::Delay(Duration::from_millis(700))));
    let queued = api.post_empty("/v1/integrations/pipedrive/sync", &t.admin).await;
    let slow = str_of(&queued.expect(202)["run_id"]);
    eventually("the slow run to run", LONG, || async { (t.run(&slow).await["status"] == "running").then_some(()) })
        .await;
    let answer = api.post_empty("/v1/integrations/pipedrive/resync", &t.admin).await;
    let body = answer.expect(202).clone();
    assert_eq!(body["cursor_reset"], "after_running_run", "{body}");
    assert_eq!(str_of(&body["run_id"]), slow, "{body}");

    let runs = eventually("a full run after the slow one", LONG, || async {
        let runs = t.runs().await;
        let done = runs.len() == 3 && runs.iter().all(|r| r["status"] == "succeeded");
        done.then_some(runs)
    })
    .await;
    assert_eq!(str_of(&runs[1]["id"]), slow);
    assert_eq!(full_deal_reads(&fake), 2, "the run after the slow one read everything");
    t.assert_totals(&expected(&fake), &all_rates()).await;
}

/// Five sync requests in a row while a run waits or runs: one run, the same id each time.
async fn repeated_sync_requests_coalesce_into_one_run(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let (service, fake, t, first) = setup(&db, &ServiceOptions::default(), 1206, &[]).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let api = service.api();
    fake.with(|crm| crm.fail_next(3, Fault::Delay(Duration::from_millis(700))));
    let mut ids = Vec::new();
    for _ in 0..5 {
        let answer = api.post_empty("/v1/integrations/pipedrive/sync", &t.admin).await;
        ids.push(str_of(&answer.expect(202)["run_id"]));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let run = eventually("the run", LONG, || async {
        let run = t.run(&ids[0]).await;
        (run["status"] == "succeeded").then_some(run)
    })
    .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(t.runs().await.len(), 2, "the first run, then one run for five requests");
}

/// `serve` ignores `ONEUP_ALLOW_LOOPBACK_HTTP`: enabling an integration against a loopback
/// CRM is refused with a clear error, and `/healthz` says loopback is not allowed. With
/// `--dev-allow-loopback` (`ONEUP_DEV_ALLOW_LOOPBACK=1`) it is accepted, shown on
/// `/healthz` and warned about in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_needs_the_dev_flag_for_loopback_crms() {
    let db = TestDatabase::sqlite();
    let fake = fake_pipedrive(1207, 2, 10, 10, TOKEN).await;
    let options = ServiceOptions { dev_allow_loopback: false, json_logs: false, ..Default::default() };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let health = api.send("GET", "/healthz", None, None).await;
    assert_eq!(health.expect(200)["dev_allow_loopback"], false);
    let t = app::Tenant::create(&api, "Loop Co", "loop.example", "UTC", "EUR").await;
    let refused = t.enable_pipedrive(&fake.base_url(), TOKEN).await;
    assert_eq!(refused.expect_error(422), "invalid_settings");
    assert!(refused.text.contains("loopback"), "{}", refused.text);
    let none = api.get("/v1/integrations", &t.admin).await;
    assert_eq!(none.expect(200)["integrations"], serde_json::json!([]), "nothing was written");
    let logs = service.logs();
    assert!(logs.contains("ONEUP_ALLOW_LOOPBACK_HTTP is ignored by serve") && logs.contains("--dev-allow-loopback"));
    drop(service);

    let db = TestDatabase::sqlite();
    let options = ServiceOptions { json_logs: false, ..Default::default() };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let health = api.send("GET", "/healthz", None, None).await;
    assert_eq!(health.expect(200)["dev_allow_loopback"], true);
    let t = app::Tenant::create(&api, "Loop Co", "loop.example", "UTC", "EUR").await;
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    assert!(service.logs().contains("--dev-allow-loopback: integrations may point at plain-http loopback"));
}

/// `serve --database-url sqlite://FILE` creates a missing file, owner-only (0600), and
/// SQLite's WAL and shared-memory files follow it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sqlite_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = app::Scratch::new("oneup-sqlite-mode");
    let file = scratch.path().join("fresh.sqlite");
    let service = Service::start(&format!("sqlite://{}", file.display()), &ServiceOptions::default()).await;
    let api = service.api();
    // A write, so that the WAL holds something.
    app::Tenant::create(&api, "Mode Co", "mode.example", "UTC", "EUR").await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", file.display());
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
}
