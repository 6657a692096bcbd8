//! Operating the service, through the real `oneup serve`: the probes (`/livez`, `/readyz`
//! and its 503 while draining after SIGTERM or with the schema behind), request ids (echoed,
//! in the logs, the correlation code of a 500), the access log by route template,
//! Prometheus metrics after a real sync against a CRM that answers a 429 once (exact
//! counts, nothing personal), the tokenless `--metrics-addr` listener, and HTTPS with a
//! certificate made by the test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oneup_fake_crm::pipedrive::Fault;
use oneup_tests::app::str_of;
use oneup_tests::*;
use serde_json::{Value as Json, json};

use super::service::{TOKEN, Tenant};

on_both_stores!(
    probes_answer_and_readyz_turns_503_while_draining_after_sigterm,
    readyz_is_503_while_the_schema_is_behind,
    request_ids_are_echoed_logged_and_quoted_in_500_bodies,
    metrics_count_a_real_sync_with_a_429_exactly_and_name_nobody,
);

const LONG: Duration = Duration::from_secs(180);

/// A plain client that shows headers (the suite's `Api` checks bodies, not headers).
fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("a client")
}

/// The JSON log lines of a service.
fn log_lines(service: &Service) -> Vec<Json> {
    service.logs().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A string field of a JSON log line, looked up in the event's fields, then its spans.
fn log_field(line: &Json, key: &str) -> Option<String> {
    let text = |v: &Json| v.as_str().map(str::to_owned).or_else(|| v.as_number().map(|n| n.to_string()));
    if let Some(v) = line["fields"].get(key).and_then(text) {
        return Some(v);
    }
    if let Some(v) = line["span"].get(key).and_then(text) {
        return Some(v);
    }
    line["spans"].as_array()?.iter().find_map(|s| s.get(key).and_then(text))
}

/// Probes: `/livez` and `/readyz` answer 200. On SIGTERM with a drain period, the node
/// keeps answering but `/readyz` turns 503 `draining` at once (a load balancer takes it
/// out) while `/livez` stays 200; after the drain the listener closes and the process
/// exits cleanly.
async fn probes_answer_and_readyz_turns_503_while_draining_after_sigterm(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let options = ServiceOptions { args: vec!["--drain-secs".into(), "4".into()], ..Default::default() };
    let mut service = Service::start(&db.url, &options).await;
    let api = service.api();
    assert_eq!(api.send("GET", "/livez", None, None).await.expect(200), &json!({"status": "ok"}));
    assert_eq!(api.send("GET", "/readyz", None, None).await.expect(200), &json!({"status": "ok"}));
    // The container health check (`oneup probe`) agrees.
    let readyz = format!("{}/readyz", service.base_url);
    let probe = || std::process::Command::new(oneup_bin()).args(["probe", &readyz]).output().expect("oneup runs");
    let ready = probe();
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stdout));

    service.terminate();
    let signalled = Instant::now();
    let draining = eventually("/readyz to say draining", Duration::from_secs(3), || async {
        let answer = api.send("GET", "/readyz", None, None).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(draining.expect_error(503), "draining", "{}", draining.text);
    assert!(
        draining.json["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "a 5xx carries its correlation code: {}",
        draining.text
    );
    let draining_probe = probe();
    assert!(!draining_probe.status.success(), "the health check fails while draining");
    assert!(String::from_utf8_lossy(&draining_probe.stdout).contains("503"));
    // Still serving while draining: the process is alive and answers.
    assert_eq!(api.send("GET", "/livez", None, None).await.expect(200)["status"], "ok");
    assert!(service.is_running(), "the node waits for its drain period");
    let status = service.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "a clean exit after draining: {status}");
    assert!(signalled.elapsed() >= Duration::from_secs(4), "it drained for --drain-secs: {:?}", signalled.elapsed());
    // The listener is closed now.
    assert!(client().get(format!("{}/livez", service.base_url)).send().await.is_err(), "nothing listens after exit");
}

/// A database whose newest migration is not applied (restored from an older backup, say)
/// makes the node not ready, naming the fix; liveness is unaffected.
async fn readyz_is_503_while_the_schema_is_behind(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    api.send("GET", "/readyz", None, None).await.expect(200);
    let newest = db.scalar_i64("SELECT MAX(version) FROM _sqlx_migrations").await;
    db.execute(&format!("DELETE FROM _sqlx_migrations WHERE version = {newest}")).await;
    let answer = api.send("GET", "/readyz", None, None).await;
    assert_eq!(answer.expect_error(503), "schema_outdated", "{}", answer.text);
    let message = str_of(&answer.json["error"]["message"]);
    assert!(message.contains("oneup migrate") && message.contains(&newest.to_string()), "{message}");
    api.send("GET", "/livez", None, None).await.expect(200);
}

/// Request ids: a sane caller's id is echoed and is a field of the request's log lines
/// (the access line names the route template, never the path with its ids); an id that is
/// too long or has odd characters is replaced by a new one; a request without one gets
/// one. A 500 (the database broken under the node) carries the id in its body, and the
/// server's error line for it carries the same id.
async fn request_ids_are_echoed_logged_and_quoted_in_500_bodies(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let t = app::Tenant::create(&service.api(), "Ids Co", "ids.example", "Europe/Paris", "EUR").await;
    let http = client();
    let get = |path: &str, id: Option<&str>| {
        let mut req = http.get(format!("{}{path}", service.base_url)).bearer_auth(&t.admin);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    let echoed = |r: &reqwest::Response| {
        r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).expect("an x-request-id answer header").to_owned()
    };

    let user_path = format!("/v1/users/{}", t.member_id);
    let mine = get(&user_path, Some("e2e-req.42:a_b")).await.unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(echoed(&mine), "e2e-req.42:a_b");

    for insane in ["x".repeat(65), "has space".into(), "quote\"d".into(), "semi;colon".into()] {
        let r = get("/v1/me", Some(&insane)).await.unwrap();
        let id = echoed(&r);
        assert_ne!(id, insane);
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a fresh id: {id}");
    }
    let a = echoed(&get("/v1/me", None).await.unwrap());
    let b = echoed(&get("/v1/me", None).await.unwrap());
    assert!(a.len() == 32 && b.len() == 32 && a != b, "{a} {b}");

    // The access line of the request: its id, method, route template, status, duration.
    let access = eventually("the access log line", Duration::from_secs(10), || async {
        log_lines(&service)
            .into_iter()
            .find(|l| l["target"] == "oneup::access" && log_field(l, "request_id").as_deref() == Some("e2e-req.42:a_b"))
    })
    .await;
    assert_eq!(access["level"], "INFO", "{access}");
    assert_eq!(log_field(&access, "method").as_deref(), Some("GET"), "{access}");
    assert_eq!(log_field(&access, "route").as_deref(), Some("/v1/users/{id}"), "{access}");
    assert_eq!(log_field(&access, "status").as_deref(), Some("200"), "{access}");
    assert!(access["fields"]["duration_ms"].is_number(), "{access}");
    // No access line carries a path with an id.
    for line in log_lines(&service).iter().filter(|l| l["target"] == "oneup::access") {
        assert!(!line.to_string().contains(&t.member_id), "an id in an access line: {line}");
    }

    // Fault: a table disappears under the running node. The answer is a generic 500 whose
    // body quotes the request id; the detail is in the log under that id only.
    db.execute("DROP TABLE fx_rates").await;
    let broken = get("/v1/fx-rates", Some("e2e-broken-1")).await.unwrap();
    assert_eq!(broken.status(), 500);
    assert_eq!(echoed(&broken), "e2e-broken-1");
    let body: Json = serde_json::from_str(&broken.text().await.unwrap()).expect("a JSON body");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert_eq!(body["error"]["request_id"], "e2e-broken-1", "{body}");
    assert!(!body.to_string().contains("fx_rates"), "no internal detail in the answer: {body}");
    let logged = eventually("the error line of the 500", Duration::from_secs(10), || async {
        log_lines(&service)
            .into_iter()
            .find(|l| l["level"] == "ERROR" && log_field(l, "request_id").as_deref() == Some("e2e-broken-1"))
    })
    .await;
    assert!(logged.to_string().contains("fx_rates"), "the detail is in the log: {logged}");
}

/// Parses a Prometheus text exposition into `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &BTreeMap<String, f64>, key: &str) -> f64 {
    all.get(key).copied().unwrap_or(0.0)
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Metrics after a real sync against a fake Pipedrive that answers its first request with
/// a 429: every CRM request is counted by status exactly as the CRM saw them (the 429
/// included), one succeeded run with its duration, the changes accepted as the run
/// reports them, the gauges read from the database; the exposition names no tenant, user,
/// e-mail or CRM person. `/metrics` takes the operator's token (401 without, 403 with a
/// tenant's); `--metrics-addr` serves the same without a token and nothing else.
async fn metrics_count_a_real_sync_with_a_429_exactly_and_name_nobody(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let port = free_port();
    let options =
        ServiceOptions { args: vec!["--metrics-addr".into(), format!("127.0.0.1:{port}")], ..Default::default() };
    let fake = fake_pipedrive(1299, 3, 40, 40, TOKEN).await;
    fake.with(|crm| crm.fail_next(1, Fault::RateLimited { retry_after_secs: 1 }));
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Metrics Co", "metrics.example").await;
    t.add_crm_users(&fake, &[]).await;
    t.set_rates().await;
    t.enable(&fake).await.expect(200);
    let run = eventually("the first run", LONG, || async {
        let runs = t.runs().await;
        let run = runs.first()?;
        matches!(run["status"].as_str(), Some("succeeded" | "partial" | "failed")).then(|| run.clone())
    })
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");

    // Who may scrape.
    assert_eq!(api.send("GET", "/metrics", None, None).await.expect_error(401), "unauthorized");
    assert_eq!(api.send("GET", "/metrics", Some(&t.admin), None).await.expect_error(403), "forbidden");
    let scrape = || async { api.send("GET", "/metrics", Some(OPERATOR_TOKEN), None).await };
    // The run's end is counted right after it is recorded.
    let text = eventually("the run in the metrics", Duration::from_secs(10), || async {
        let answer = scrape().await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let all = samples(&answer.text);
        (sample(&all, r#"oneup_sync_runs_total{connector="pipedrive",status="succeeded"}"#) >= 1.0)
            .then_some(answer.text)
    })
    .await;
    let all = samples(&text);

    // CRM requests by status: exactly what the CRM saw.
    let mut seen: BTreeMap<u16, f64> = BTreeMap::new();
    for r in fake.with(|crm| crm.request_log()) {
        *seen.entry(r.status).or_default() += 1.0;
    }
    assert_eq!(seen.get(&429), Some(&1.0), "the fake answered one 429: {seen:?}");
    for (status, n) in &seen {
        let key = format!(r#"oneup_crm_requests_total{{connector="pipedrive",status="{status}"}}"#);
        assert_eq!(sample(&all, &key), *n, "{key}\n{text}");
    }
    let counted: f64 = all.iter().filter(|(k, _)| k.starts_with("oneup_crm_requests_total{")).map(|(_, v)| v).sum();
    assert_eq!(counted, seen.values().sum::<f64>(), "no other CRM request counted\n{text}");

    // One run, succeeded, timed; nothing partial, failed or lost.
    assert_eq!(sample(&all, r#"oneup_sync_runs_total{connector="pipedrive",status="succeeded"}"#), 1.0, "{text}");
    assert_eq!(
        sample(&all, r#"oneup_sync_run_duration_seconds_count{connector="pipedrive",status="succeeded"}"#),
        1.0,
        "{text}"
    );
    for status in ["partial", "failed", "lease_lost", "handed_back"] {
        let key = format!(r#"oneup_sync_runs_total{{connector="pipedrive",status="{status}"}}"#);
        assert_eq!(sample(&all, &key), 0.0, "{key}");
    }
    assert_eq!(sample(&all, "oneup_lease_losses_total"), 0.0);
    // The changes accepted, as the run reports them.
    let accepted = run["events_accepted"].as_f64().expect("events_accepted");
    assert!(accepted > 0.0, "{run}");
    assert_eq!(sample(&all, r#"oneup_events_accepted_total{connector="pipedrive"}"#), accepted, "{text}");
    let rejected: f64 = all.iter().filter(|(k, _)| k.starts_with("oneup_events_rejected_total{")).map(|(_, v)| v).sum();
    let run_rejected: f64 =
        run["rejected"].as_object().map(|m| m.values().filter_map(Json::as_f64).sum()).unwrap_or(0.0);
    assert_eq!(rejected, run_rejected, "{run}\n{text}");
    // From the database and the node.
    assert_eq!(sample(&all, "oneup_tenants"), 1.0);
    assert_eq!(sample(&all, "oneup_sync_queue_depth"), 0.0);
    assert_eq!(sample(&all, r#"oneup_integrations_waiting{state="needs_reauthorization"}"#), 0.0);
    assert_eq!(sample(&all, r#"oneup_integrations_waiting{state="needs_approval"}"#), 0.0);
    assert_eq!(sample(&all, "oneup_connectors_installed"), 3.0);
    assert_eq!(sample(&all, "oneup_syncs_running"), 0.0);
    assert_eq!(sample(&all, "oneup_sse_viewers"), 0.0);
    assert!(sample(&all, r#"oneup_db_pool_connections{state="idle"}"#) >= 1.0, "{text}");
    // HTTP requests by route template: the tenant's creation is there, no raw path is.
    let created = r#"oneup_http_request_duration_seconds_count{method="POST",route="/v1/tenants",status="201"}"#;
    assert_eq!(sample(&all, created), 1.0, "{text}");
    assert!(text.contains(r#"route="/v1/users/{id}/tokens""#), "{text}");

    // Nothing personal: no tenant or user id, no e-mail, no CRM person's name.
    for id in [&t.id, &t.admin_id, &t.manager_id, &t.member_id] {
        assert!(!text.contains(id.as_str()), "an id in the metrics: {id}");
    }
    assert!(!text.contains('@'), "an e-mail in the metrics");
    let canaries = fake.with(|crm| crm.canaries());
    assert!(!canaries.is_empty());
    for canary in &canaries {
        assert!(!text.contains(canary.as_str()), "the CRM's personal data in the metrics: {canary}");
    }

    // The tokenless listener: the same exposition, the probes, and nothing else.
    let side = format!("http://127.0.0.1:{port}");
    let open = client().get(format!("{side}/metrics")).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(
        open.text().await.unwrap().contains(r#"oneup_sync_runs_total{connector="pipedrive",status="succeeded"} 1"#)
    );
    assert_eq!(client().get(format!("{side}/readyz")).send().await.unwrap().status(), 200);
    let me = client().get(format!("{side}/v1/me")).bearer_auth(&t.admin).send().await.unwrap();
    assert_eq!(me.status(), 404, "the API is not on the metrics listener");
}

/// HTTPS: `serve --tls-cert --tls-key` with a self-signed certificate the test makes. A
/// client trusting it reaches the API (a tenant is created over TLS); plain HTTP to the
/// same port and a client that does not trust the certificate get no answer. A key that
/// does not go with the certificate stops `serve` before it writes anything, naming the
/// problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_a_self_signed_certificate() {
    let scratch = Scratch::new("oneup-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let cert = scratch.path().join("cert.pem");
    let key = scratch.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let db = TestDatabase::sqlite();
    let args = vec!["--tls-cert".into(), cert.display().to_string(), "--tls-key".into(), key.display().to_string()];
    let service = Service::start(&db.url, &ServiceOptions { args, ..Default::default() }).await;
    assert!(service.base_url.starts_with("https://127.0.0.1:"), "{}", service.base_url);

    let trusted = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let live = trusted.get(format!("{}/livez", service.base_url)).send().await.expect("an HTTPS answer");
    assert_eq!(live.status(), 200);
    assert!(live.headers().contains_key("x-request-id"));
    let created = trusted
        .post(format!("{}/v1/tenants", service.base_url))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(
            json!({"name": "Tls Co", "timezone": "UTC", "currency": "EUR",
                "admin": {"name": "Admin", "email": "admin@tls.example"}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body: Json = serde_json::from_str(&created.text().await.unwrap()).expect("a JSON body");
    let admin = str_of(&body["admin"]["token"]);
    let me = trusted.get(format!("{}/v1/me", service.base_url)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(me.status(), 200);

    let plain = service.base_url.replace("https://", "http://");
    let answer = client().get(format!("{plain}/livez")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| r.status() != 200), "plain HTTP is not served on the TLS port");
    assert!(
        client().get(format!("{}/livez", service.base_url)).send().await.is_err(),
        "an untrusted certificate fails"
    );
    // The node still serves after those failed handshakes.
    assert_eq!(trusted.get(format!("{}/readyz", service.base_url)).send().await.unwrap().status(), 200);

    // A key of another certificate: a clear error, and no database was created.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let wrong_key = scratch.path().join("wrong-key.pem");
    std::fs::write(&wrong_key, other.signing_key.serialize_pem()).unwrap();
    let fresh = scratch.path().join("never.sqlite");
    let out = std::process::Command::new(oneup_bin())
        .current_dir(scratch.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&wrong_key)
        .env("DATABASE_URL", format!("sqlite://{}", fresh.display()))
        .env("ONEUP_MASTER_KEY", MASTER_KEY_HEX)
        .env_remove("ONEUP_TLS_CERT")
        .env_remove("ONEUP_TLS_KEY")
        .output()
        .expect("oneup runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TLS certificate") && stderr.contains("do not go together"), "{stderr}");
    assert!(!fresh.exists(), "nothing was written");
    assert!(!scratch.path().join("oneup.key").exists(), "no key file was made");
}
