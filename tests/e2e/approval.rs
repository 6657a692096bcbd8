//! Connectors are approved, pinned and shown like permissions: `oneup connector describe`,
//! the component digest and grants recorded with an integration's consent, a swapped
//! component with wider grants pausing the integration until an admin approves it, the
//! opted-in metrics enforced at ingest; and the hostile gallery's floods (logs, refused
//! emits, sockets, handles) through the real service, with its logs counted.

use std::process::Command;
use std::time::Duration;

use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const HOSTILE: &str = "oneup-hostile-connector";
const WIDER: &str = "oneup-hostile-connector-wider";

/// The component's bytes with a custom section appended: another digest, the same code
/// and grants (what a rebuild that changes nothing the consent covers looks like).
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    let name = b"oneup-test-rebuild";
    let payload = b"2";
    let size = 1 + name.len() + payload.len();
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(size).expect("small"));
    bytes.push(u8::try_from(name.len()).expect("small"));
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// SHA-256 of a component as the host computes it.
async fn digest(bytes: &[u8]) -> String {
    runtime().load(bytes).await.expect("the component loads").digest_hex()
}

/// The service with the hostile connector installed from `bytes`.
async fn service(db: &TestDatabase, bytes: &[u8]) -> Service {
    let options = ServiceOptions {
        extra_connectors: vec![("hostile.wasm".to_owned(), bytes.to_vec())],
        ..ServiceOptions::default()
    };
    Service::start(&db.url, &options).await
}

async fn audit(t: &app::Tenant) -> Vec<Json> {
    t.api.get("/v1/audit?limit=1000", &t.admin).await.expect(200)["entries"].as_array().expect("entries").clone()
}

fn actions(entries: &[Json]) -> Vec<String> {
    entries.iter().map(|e| str_of(&e["action"])).collect()
}

async fn sync(t: &app::Tenant) -> Json {
    t.api.post_empty("/v1/integrations/hostile/sync?wait=true", &t.admin).await.expect(200).clone()
}

async fn enable_hostile(t: &app::Tenant, base_url: &str, mode: &str, metrics: Option<&[&str]>) -> Json {
    let mut body = json!({"config": {"base_url": base_url, "mode": mode}});
    if let Some(metrics) = metrics {
        body["metrics"] = json!(metrics);
    }
    t.api.put("/v1/integrations/hostile", &t.admin, &body).await.expect(200).clone()
}

on_both_stores!(a_swapped_component_is_approved_like_a_permission, ingest_keeps_only_the_opted_in_metrics);

/// The attack: the operator's connectors folder gets a hostile binary for an installed id
/// that asks for another host and another metric. The integration must stop until an admin
/// has seen and approved exactly that component; a rebuild within the approved grants just
/// runs (and is audited).
async fn a_swapped_component_is_approved_like_a_permission(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let crm = CountingServer::start().await;
    let original = component(HOSTILE);
    let rebuilt = with_custom_section(original.clone());
    let wider = component(WIDER);
    let (original_digest, rebuilt_digest, wider_digest) =
        (digest(&original).await, digest(&rebuilt).await, digest(&wider).await);
    assert_ne!(original_digest, rebuilt_digest);

    // Enabling records the component and its grants with the consent.
    let s = service(&db, &original).await;
    let t = app::Tenant::create(&s.api(), "Approvals", "approvals.example", "UTC", "EUR").await;
    let enabled = enable_hostile(&t, &crm.base_url, "path:/ok", None).await;
    assert_eq!(enabled["component_digest"], original_digest.as_str());
    assert_eq!(enabled["installed_digest"], original_digest.as_str());
    assert_eq!(enabled["approval_status"], "approved");
    assert_eq!(enabled["grant_changes"], Json::Null);
    let run = sync(&t).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let hits = crm.hits();
    assert_eq!(hits, 1, "the connector reached its CRM");
    drop(s);

    // Same grants, another digest: it runs, the change is audited and recorded.
    let s = service(&db, &rebuilt).await;
    let t = app::Tenant { api: s.api(), ..t };
    let view = t.api.get("/v1/integrations/hostile", &t.admin).await.expect(200).clone();
    assert_eq!(view["approval_status"], "approved", "{view}");
    assert_eq!(view["grant_changes"]["added_hosts"], json!([]), "{view}");
    let run = sync(&t).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(crm.hits(), hits + 1);
    let entries = audit(&t).await;
    let changed = entries.iter().find(|e| e["action"] == "integration.component_changed").expect("audited");
    assert_eq!(changed["actor"], "system");
    assert!(str_of(&changed["subject"]).contains(&rebuilt_digest[..16]), "{changed}");
    let view = t.api.get("/v1/integrations/hostile", &t.admin).await.expect(200).clone();
    assert_eq!(view["component_digest"], rebuilt_digest.as_str());
    assert_eq!(view["grant_changes"], Json::Null);
    drop(s);

    // Wider grants: paused before anything runs, the difference shown, nothing reaches
    // any host, the scheduler queues nothing more. The integration is due at the start.
    let due = "UPDATE integrations SET next_sync_at = 0 RETURNING CAST(1 AS BIGINT)";
    assert_eq!(db.scalar_i64(due).await, 1);
    let s = service(&db, &wider).await;
    let t = app::Tenant { api: s.api(), ..t };
    let hits = crm.hits();
    let view = t.api.get("/v1/integrations/hostile", &t.admin).await.expect(200).clone();
    assert_eq!(view["approval_status"], "needs_approval", "{view}");
    assert_eq!(view["installed_digest"], wider_digest.as_str());
    assert_eq!(view["component_digest"], rebuilt_digest.as_str());
    assert_eq!(view["grant_changes"]["added_hosts"], json!(["*.wider.example"]), "{view}");
    assert_eq!(view["grant_changes"]["added_metrics"], json!(["extra_metric"]), "{view}");
    let refused =
        |runs: &Json| runs["runs"].as_array().unwrap().iter().filter(|r| r["error"] == "needs_approval").count();
    eventually("the scheduler's run to be refused", Duration::from_secs(30), || async {
        let runs = t.api.get("/v1/integrations/hostile/runs", &t.admin).await.expect(200).clone();
        (refused(&runs) == 1).then_some(())
    })
    .await;
    let run = sync(&t).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"], "needs_approval", "{run}");
    // Due again: the scheduler must skip it now.
    assert_eq!(db.scalar_i64(due).await, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = t.api.get("/v1/integrations/hostile/runs", &t.admin).await.expect(200).clone();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 4, "two syncs before, two refused since: {runs}");
    assert_eq!(refused(&runs), 2, "{runs}");
    assert_eq!(crm.hits(), hits, "no request reached any host");
    let entries = audit(&t).await;
    let paused = entries.iter().find(|e| e["action"] == "integration.needs_approval").expect("audited");
    assert!(str_of(&paused["subject"]).contains("hosts+1 metrics+1"), "{paused}");
    let view = t.api.get("/v1/integrations/hostile", &t.admin).await.expect(200).clone();
    assert_eq!(view["approval_status"], "needs_approval");

    // Only an admin approves, and only the component they reviewed.
    let approve = |digest: &str| json!({"digest": digest});
    let refused = t.api.post("/v1/integrations/hostile/approve", &t.member, &approve(&wider_digest)).await;
    refused.expect_error(403);
    let refused = t.api.post("/v1/integrations/hostile/approve", &t.admin, &approve(&original_digest)).await;
    assert_eq!(refused.expect_error(409), "digest_mismatch");
    assert_eq!(t.api.get("/v1/integrations/hostile", &t.admin).await.expect(200)["approval_status"], "needs_approval");
    let refused = t.api.post("/v1/integrations/hostile/approve", &t.admin, &json!({"sha": wider_digest})).await;
    assert_eq!(refused.expect_error(400), "invalid_body");
    let approved = t.api.post("/v1/integrations/hostile/approve", &t.admin, &approve(&wider_digest)).await;
    let approved = approved.expect(200).clone();
    assert_eq!(approved["approval_status"], "approved", "{approved}");
    assert_eq!(approved["component_digest"], wider_digest.as_str());
    assert_eq!(approved["metrics"], json!(["deals_won", "revenue", "extra_metric"]));
    assert!(actions(&audit(&t).await).contains(&"integration.component_approved".to_owned()));
    let run = sync(&t).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(crm.hits(), hits + 1, "approved: it runs again");
}

/// The integration's `metrics` is the consent: a connector writing another declared metric
/// has those changes dropped at ingest and counted on the run.
async fn ingest_keeps_only_the_opted_in_metrics(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let s = service(&db, &component(HOSTILE)).await;
    let t = app::Tenant::create(&s.api(), "Opt-in", "optin.example", "UTC", "EUR").await;
    let bad = t
        .api
        .put(
            "/v1/integrations/hostile",
            &t.admin,
            &json!({"config": {"base_url": "http://127.0.0.1:9", "mode": "snap-seed"}, "metrics": ["secret_metric"]}),
        )
        .await;
    assert_eq!(bad.expect_error(400), "unknown_metric");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM integrations").await, 0, "nothing was written");

    // `snap-seed` writes five deals_won and one revenue change.
    let enabled = enable_hostile(&t, "http://127.0.0.1:9", "snap-seed", Some(&["deals_won"])).await;
    assert_eq!(enabled["metrics"], json!(["deals_won"]));
    let run = sync(&t).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["upserts"], 5, "{run}");
    assert_eq!(run["rejected"], json!({"metric_not_opted_in": 1}), "{run}");
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts WHERE metric = 'revenue'").await, 0);
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM facts WHERE metric = 'deals_won'").await, 5);
}

/// Lines of the service log carrying `needle`.
fn lines_with(logs: &str, needle: &str) -> Vec<String> {
    logs.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// The hostile gallery's floods through the real service: the log stays bounded and each
/// sync ends as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_logs_warnings_sockets_and_handles_stay_bounded() {
    let db = TestDatabase::sqlite();
    let s = service(&db, &component(HOSTILE)).await;
    let t = app::Tenant::create(&s.api(), "Floods", "floods.example", "UTC", "EUR").await;
    let crm = CountingServer::start().await;

    // 5,000 log events of 12 fields each, spelling a name in numbers: 1,000 reach the log,
    // each with 8 fields; the rest is one summary line.
    enable_hostile(&t, &crm.base_url, "log-flood", None).await;
    let run = sync(&t).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["upserts"], 1, "{run}");
    let logs = s.logs();
    let events = lines_with(&logs, "connector log");
    assert_eq!(events.len(), 1_000, "the per-sync cap");
    let fields: Json = serde_json::from_str(&events[0]).expect("a JSON log line");
    let kept: Json = serde_json::from_str(fields["fields"]["fields"].as_str().expect("fields")).expect("JSON");
    assert_eq!(kept.as_object().expect("an object").len(), 8, "the per-event cap: {kept}");
    let summary = lines_with(&logs, "over the per-sync caps");
    assert_eq!(summary.len(), 1, "{summary:?}");
    let summary: Json = serde_json::from_str(&summary[0]).unwrap();
    assert_eq!(summary["fields"]["logs_capped"], 4_000, "{summary}");
    assert_eq!(summary["fields"]["log_fields_dropped"], 4_000, "{summary}");

    // 10,000 refused emits: 20 warnings, the rest counted; the sync fails for the contract.
    enable_hostile(&t, &crm.base_url, "refused-emits", None).await;
    let run = sync(&t).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"], "undeclared_metric", "{run}");
    let logs = s.logs();
    assert_eq!(lines_with(&logs, "connector broke the contract").len(), 20);
    let summary = lines_with(&logs, "over the per-sync caps");
    let last: Json = serde_json::from_str(summary.last().unwrap()).unwrap();
    assert_eq!(last["fields"]["warnings_suppressed"], 9_980, "{last}");

    // Sockets: TCP to the CRM's own port, UDP, a name lookup: all denied, nothing connects.
    let port = crm.base_url.rsplit(':').next().unwrap().to_owned();
    enable_hostile(&t, &crm.base_url, &format!("socket:{port}"), None).await;
    let run = sync(&t).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"], "denied", "every socket was refused: {run}");
    assert_eq!(crm.hits(), 0, "no connection reached the port");

    // Handles: a million streams and pollables asked for; the table stops at its cap and
    // the sync fails with a clear code, the service stays up.
    enable_hostile(&t, &crm.base_url, "handle-flood", None).await;
    let run = sync(&t).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"], "handle_limit", "{run}");
    enable_hostile(&t, &crm.base_url, "ok", None).await;
    assert_eq!(sync(&t).await["status"], "succeeded");
}

/// `oneup connector describe` on the real Pipedrive component, as text and as JSON; a file
/// that is not a component is refused clearly.
#[tokio::test]
async fn describe_prints_the_grants_and_the_sha256() {
    let file = component_path(PIPEDRIVE);
    let sha = digest(&std::fs::read(&file).unwrap()).await;
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(oneup_bin()).args(["connector", "describe"]).args(args).output().expect("oneup runs")
        })
    };
    let out = run(vec![file.display().to_string()]).await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("sha256       {sha}")), "{text}");
    for needle in ["connector pipedrive", "*.pipedrive.com", "deals_won (count)", "api_token", "api_key_header"] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }

    let out = run(vec![file.display().to_string(), "--json".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let described: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(described["sha256"], sha.as_str());
    assert_eq!(described["id"], "pipedrive");
    assert_eq!(described["contract"], "0.2.0");
    assert_eq!(described["allowed_hosts"], json!(["*.pipedrive.com", "api.pipedrive.com"]));
    assert!(
        described["metrics"].as_array().unwrap().iter().any(|m| m == &json!({"slug": "deals_won", "kind": "count"}))
    );
    assert_eq!(described["secrets"], json!([{"key": "api_token", "required": true}]));
    assert_eq!(described["auth"]["scheme"], "api_key_header");
    assert_eq!(described["limits"]["log_events_per_sync"], 1_000);

    let bad = std::env::temp_dir().join(format!("oneup-not-a-component-{}.wasm", std::process::id()));
    std::fs::write(&bad, b"this is not webassembly").unwrap();
    let out = run(vec![bad.display().to_string()]).await.unwrap();
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly file"), "{out:?}");
}
