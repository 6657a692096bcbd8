//! One test per sandbox guarantee, driven by the hostile connector: every rule it breaks
//! is stopped or refused with a typed error, the host stays up, and nothing it emitted
//! after its last checkpoint is committed.

use std::time::Duration;

use oneup::ingest::ContractViolation;
use oneup::runtime::{LoadError, SandboxLimits, SyncError, SyncOutcome, SyncReport};
use oneup_tests::*;

const HOSTILE: &str = "oneup-hostile-connector";

async fn hostile(mode: &str) -> (SyncReport, usize) {
    let server = CountingServer::start().await;
    let runtime = runtime();
    let connector = runtime.load(&component(HOSTILE)).await.expect("hostile connector loads");
    let table = table();
    let report =
        sync_into(&runtime, &connector, setup(&[("base_url", &server.base_url), ("mode", mode)], &[]), &table).await;
    let committed = table.lock().unwrap().len();
    (report, committed)
}

#[tokio::test]
async fn a_well_behaved_sync_commits_its_changes() {
    let (report, committed) = hostile("ok").await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(committed, 3);
    assert_eq!(report.stats.upserts, 3);
    assert_eq!(report.stats.checkpoints, 1);
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_cpu_budget_and_the_host_stays_up() {
    let (report, committed) = hostile("loop").await;
    assert_eq!(report.result, Err(SyncError::CpuLimit));
    assert_eq!(committed, 0);
    // The same host keeps serving other syncs.
    let (again, _) = hostile("ok").await;
    assert_eq!(again.result, Ok(SyncOutcome::Complete));
}

#[tokio::test]
async fn a_sync_past_its_wall_clock_deadline_is_stopped() {
    let server = CountingServer::start().await;
    let runtime = runtime_with(SandboxLimits {
        cpu_time: Duration::from_secs(600),
        wall_time: Duration::from_millis(500),
        ..Default::default()
    });
    let connector = runtime.load(&component(HOSTILE)).await.unwrap();
    let report =
        sync_into(&runtime, &connector, setup(&[("base_url", &server.base_url), ("mode", "loop")], &[]), &table())
            .await;
    assert_eq!(report.result, Err(SyncError::Deadline));
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let (report, committed) = hostile("alloc").await;
    assert_eq!(report.result, Err(SyncError::MemoryLimit));
    assert_eq!(committed, 0);
}

#[tokio::test]
async fn a_batch_of_a_million_events_is_refused() {
    let (report, committed) = hostile("huge-batch").await;
    match report.result {
        Err(SyncError::Contract(ContractViolation::BatchTooLarge { .. })) | Err(SyncError::MemoryLimit) => {}
        other => panic!("expected a refused batch, got {other:?}"),
    }
    assert_eq!(committed, 0);
}

#[tokio::test]
async fn an_enormous_event_is_refused() {
    let (report, committed) = hostile("huge-event").await;
    match report.result {
        Err(SyncError::Contract(ContractViolation::BadIdentifier { .. })) | Err(SyncError::MemoryLimit) => {}
        other => panic!("expected a refused event, got {other:?}"),
    }
    assert_eq!(committed, 0);
}

#[tokio::test]
async fn an_undeclared_metric_fails_the_sync() {
    let (report, committed) = hostile("undeclared-metric").await;
    assert!(
        matches!(report.result, Err(SyncError::Contract(ContractViolation::UndeclaredMetric { .. }))),
        "{:?}",
        report.result
    );
    assert_eq!(report.result.as_ref().unwrap_err().code(), "undeclared_metric");
    assert_eq!(committed, 0);
}

#[tokio::test]
async fn ids_shaped_like_personal_data_are_refused_and_never_logged() {
    let logs = capture_logs();
    for mode in ["email-owner", "sentence-source-id"] {
        let (report, committed) = hostile(mode).await;
        assert!(
            matches!(report.result, Err(SyncError::Contract(ContractViolation::BadIdentifier { .. }))),
            "{mode}: {:?}",
            report.result
        );
        assert_eq!(committed, 0, "{mode}");
    }
    let text = logs.text();
    for needle in ["jane.doe", "acme.example", "SuperBigCorp", "Deal with Tom"] {
        assert!(!text.contains(needle), "`{needle}` reached the logs");
    }
}

#[tokio::test]
async fn an_unknown_currency_drops_that_change_and_counts_it() {
    let (report, committed) = hostile("bad-currency").await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(rejected(&report).get("unknown_currency"), Some(&1));
    assert_eq!(committed, 1, "the valid change of the same batch is kept");
}

#[tokio::test]
async fn paths_that_escape_the_base_url_are_denied_before_anything_is_sent() {
    for path in [
        "//evil.example/",
        "/@evil.example",
        "/../x",
        "http://evil.example/",
        "/%2e%2e/x",
        "/a/%2F%2Fevil",
        "/a/..%2fb",
        "evil.example/x",
        "/a\\..\\b",
    ] {
        let server = CountingServer::start().await;
        let runtime = runtime();
        let connector = runtime.load(&component(HOSTILE)).await.unwrap();
        let mode = format!("path:{path}");
        let report =
            sync_into(&runtime, &connector, setup(&[("base_url", &server.base_url), ("mode", &mode)], &[]), &table())
                .await;
        assert_eq!(
            report.result,
            Err(SyncError::Connector { code: "denied".into(), http_status: None }),
            "path {path:?} was not denied"
        );
        assert_eq!(report.stats.http_denied, 1, "{path:?}");
        assert_eq!(server.hits(), 0, "path {path:?} reached the network");
    }
}

#[tokio::test]
async fn a_host_header_is_denied() {
    let server = CountingServer::start().await;
    let runtime = runtime();
    let connector = runtime.load(&component(HOSTILE)).await.unwrap();
    let report = sync_into(
        &runtime,
        &connector,
        setup(&[("base_url", &server.base_url), ("mode", "host-header")], &[]),
        &table(),
    )
    .await;
    assert_eq!(report.result, Err(SyncError::Connector { code: "denied".into(), http_status: None }));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn a_base_url_outside_the_declared_hosts_is_refused_at_setup() {
    let runtime = oneup::runtime::Runtime::new(oneup::runtime::RuntimeConfig::default()).unwrap();
    let connector = runtime.load(&component(HOSTILE)).await.unwrap();
    for base in ["https://evil.example/", "http://127.0.0.1:9/", "https://user@api.example.com/"] {
        let report = sync_into(&runtime, &connector, setup(&[("base_url", base), ("mode", "ok")], &[]), &table()).await;
        assert!(matches!(report.result, Err(SyncError::Setup(_))), "{base}: {:?}", report.result);
    }
}

#[tokio::test]
async fn a_trap_fails_the_sync_and_commits_nothing_since_the_last_checkpoint() {
    let (report, committed) = hostile("trap").await;
    assert!(matches!(report.result, Err(SyncError::Trap(_))), "{:?}", report.result);
    assert_eq!(committed, 0);

    let (report, committed) = hostile("emit-then-trap").await;
    assert!(matches!(report.result, Err(SyncError::Trap(_))), "{:?}", report.result);
    assert_eq!(report.stats.upserts, 2, "the changes were accepted…");
    assert_eq!(committed, 0, "…but never committed without a checkpoint");

    let (report, committed) = hostile("checkpoint-then-trap").await;
    assert!(matches!(report.result, Err(SyncError::Trap(_))), "{:?}", report.result);
    assert_eq!(committed, 2, "what was checkpointed stays; what came after does not");
    assert_eq!(report.stats.committed, 2);
}

#[tokio::test]
async fn undeclared_log_codes_are_dropped_and_counted() {
    let logs = capture_logs();
    let (report, _) = hostile("undeclared-log-code").await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(report.stats.logs_dropped, 1);
    assert!(!logs.text().contains("sneaky_free_text_code"));
}

#[tokio::test]
async fn an_undeclared_cursor_key_fails_the_sync() {
    let (report, committed) = hostile("bad-cursor").await;
    assert!(
        matches!(report.result, Err(SyncError::Contract(ContractViolation::BadCursor { .. }))),
        "{:?}",
        report.result
    );
    assert_eq!(committed, 0);
}

#[tokio::test]
async fn debug_output_reaches_only_a_debug_sink() {
    let logs = capture_logs();
    let (report, _) = hostile("debug").await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(report.stats.debug_dropped, 1);
    assert!(!logs.text().contains("Jane Doe"));

    let server = CountingServer::start().await;
    let runtime = runtime();
    let connector = runtime.load(&component(HOSTILE)).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut with_debug = setup(&[("base_url", &server.base_url), ("mode", "debug")], &[]);
    let into = seen.clone();
    with_debug.debug = Some(Box::new(move |m: &str| into.lock().unwrap().push(m.to_owned())));
    let report = sync_into(&runtime, &connector, with_debug, &table()).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(seen.lock().unwrap().as_slice(), ["secret debug Jane Doe"]);
}

#[tokio::test]
async fn files_that_are_not_connectors_are_refused_at_load() {
    let runtime = runtime();
    assert!(matches!(runtime.load(b"definitely not wasm").await, Err(LoadError::NotWasm)));
    // A valid, empty core module.
    assert!(matches!(runtime.load(b"\0asm\x01\0\0\0").await, Err(LoadError::NotAComponent)));
    // A valid, empty component: it implements no world at all.
    assert!(matches!(runtime.load(b"\0asm\x0d\0\x01\0").await, Err(LoadError::WrongWorld(_))));
    // A component built against another major version of the contract.
    match runtime.load(&component("oneup-wrong-version-connector")).await {
        Err(LoadError::UnsupportedVersion { found, .. }) => assert_eq!(found, "1.0.0"),
        Err(other) => panic!("expected UnsupportedVersion, got {other}"),
        Ok(_) => panic!("a 1.0.0 component was accepted"),
    }
    // A truncated component.
    let mut truncated = component(HOSTILE);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(runtime.load(&truncated).await, Err(LoadError::Invalid(_))));
}
