//! Contract 0.2 where the store is involved, on both stores: snapshot windows resolved in
//! the commit (only the unseen facts of that integration, those metrics and that window;
//! nothing when the commit fails), and the scheduler running the hostile connector in
//! process: calendar dates in the tenant's zone, snapshots through `StoreSink`, and
//! budget-exhausted runs that succeed and move the next sync to the resume time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use oneup::ingest::{
    Change, Fact, KeyedHash, MetricKind, RawSnapshotWindow, Snapshot, SnapshotTracker, TenantKey, Validator, Value,
    Vocabulary,
};
use oneup::runtime::registry::Registry;
use oneup::scheduler::{Scheduler, SchedulerConfig};
use oneup::store::runs::BUDGET_EXHAUSTED;
use oneup::store::{
    CreatedTenant, EnableIntegration, Lease, MasterKey, NewTenant, Run, RunStatus, Secrets, Store, StoreError, TenantId,
};
use oneup_tests::*;

on_both_stores!(
    a_snapshot_deletes_only_the_unseen_facts_of_its_integration_metrics_and_window,
    a_snapshot_in_a_refused_commit_deletes_nothing,
    the_scheduler_places_dates_in_the_tenant_zone_and_resolves_snapshots,
    a_budget_exhausted_run_is_partial_and_the_next_sync_waits_for_the_resume_time,
);

/// 2025-06-01T00:00:00Z and 2025-07-01T00:00:00Z: the window of the store scenarios (and of
/// the hostile connector's snapshots).
const FROM: i64 = 1_748_736_000_000;
const TO: i64 = 1_751_328_000_000;
const IN: i64 = FROM + 86_400_000;

async fn store_on(backend: Backend) -> Option<(Store, TestDatabase)> {
    let db = TestDatabase::new(backend).await?;
    let store = Store::connect(&db.url, MasterKey::from_bytes([3; 32])).await.expect("the store opens and migrates");
    Some((store, db))
}

async fn tenant(store: &Store, name: &str, timezone: &str) -> CreatedTenant {
    store
        .create_tenant(&NewTenant {
            name,
            timezone,
            currency: oneup::ingest::Currency::parse("EUR").unwrap(),
            admin_name: "Admin",
            admin_email: &format!("admin@{name}.example"),
        })
        .await
        .expect("tenant created")
}

async fn enable(store: &Store, t: &CreatedTenant, connector: &str, config: &[(&str, &str)]) {
    let config: BTreeMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    store
        .enable_integration(
            t.tenant.id,
            &EnableIntegration {
                connector_id: connector,
                config: &config,
                secrets: &Secrets::new(BTreeMap::new()),
                metrics: &["deals_won".to_owned(), "revenue".to_owned()],
                sync_interval_secs: 900,
                enabled_by: t.admin.id,
                component_digest: None,
                component_grants: None,
            },
        )
        .await
        .expect("integration enabled");
}

async fn lease(store: &Store, tenant: TenantId, connector: &str) -> Lease {
    let run = store.queue_run(tenant, connector).await.expect("run queued");
    let lease = store.claim_run("node-a", Duration::from_secs(60)).await.unwrap().expect("a run to claim");
    assert_eq!(lease.run_id, run);
    lease
}

fn h(n: u8) -> KeyedHash {
    KeyedHash::from_bytes([n; 16])
}

fn won(source: u8, at: i64) -> Change {
    Change::Upsert(Fact {
        metric: "deals_won".into(),
        owner: h(200),
        source: h(source),
        occurred_at_ms: at,
        value: Value::Count(1),
    })
}

fn revenue(source: u8, at: i64) -> Change {
    Change::Upsert(Fact {
        metric: "revenue".into(),
        owner: h(200),
        source: h(source),
        occurred_at_ms: at,
        value: Value::Money { micros: 1_000_000, currency: oneup::ingest::Currency::parse("EUR").unwrap() },
    })
}

/// A completed snapshot of `deals_won` over `[FROM, TO)` that saw `seen`, made the way the
/// runtime makes it.
fn snapshot(seen: &[Change]) -> Snapshot {
    let vocab = Vocabulary::new(
        [("deals_won".to_owned(), MetricKind::Count), ("revenue".to_owned(), MetricKind::Money)],
        Vec::<String>::new(),
        Vec::<String>::new(),
    )
    .unwrap();
    let validator = Validator::new(vocab, TenantKey::from_bytes([1; 32]), "hostile", Default::default());
    let window = validator
        .validate_window(RawSnapshotWindow { metrics: vec!["deals_won".into()], from_ms: FROM, to_ms: TO })
        .unwrap();
    let mut tracker = SnapshotTracker::default();
    tracker.begin(window).unwrap();
    tracker.record(seen).unwrap();
    tracker.end().unwrap();
    tracker.take_completed().pop().unwrap()
}

fn keys(facts: &[oneup::store::StoredFact]) -> BTreeSet<(String, KeyedHash)> {
    facts.iter().map(|f| (f.metric.clone(), f.source)).collect()
}

fn keyset(list: &[(&str, u8)]) -> BTreeSet<(String, KeyedHash)> {
    list.iter().map(|(m, s)| (m.to_string(), h(*s))).collect()
}

async fn a_snapshot_deletes_only_the_unseen_facts_of_its_integration_metrics_and_window(backend: Backend) {
    let Some((store, _db)) = store_on(backend).await else { return };
    let a = tenant(&store, "acme", "UTC").await;
    let b = tenant(&store, "brightco", "UTC").await;
    let base = [("base_url", "https://crm.example.com")];
    enable(&store, &a, "hostile", &base).await;
    enable(&store, &a, "other", &base).await;
    enable(&store, &b, "hostile", &base).await;

    // The same keys everywhere: 1 to 3 inside the window, 4 at its first instant, 5 at its
    // end (outside: exclusive), 6 before it; revenue 1 and 2 inside it.
    let seed = [
        won(1, IN),
        won(2, IN),
        won(3, IN),
        won(4, FROM),
        won(5, TO),
        won(6, FROM - 1),
        revenue(1, IN),
        revenue(2, IN),
    ];
    for (t, connector) in [(&a, "hostile"), (&a, "other"), (&b, "hostile")] {
        let l = lease(&store, t.tenant.id, connector).await;
        store.commit(&l, &seed, None, &BTreeMap::new()).await.unwrap();
        store.finish_run(&l, None, &BTreeMap::new()).await.unwrap();
    }

    // A's hostile integration: a snapshot that saw 1 (committed earlier) and 7 (new, in this
    // very commit), committed with 7 and a retraction of 3.
    let l = lease(&store, a.tenant.id, "hostile").await;
    let batch = [won(7, IN), Change::Retract { metric: "deals_won".into(), source: h(3) }];
    let snap = snapshot(&[won(1, IN), won(7, IN)]);
    let counts = store.commit_with_snapshots(&l, &batch, &[snap], None, &BTreeMap::new()).await.unwrap();
    assert_eq!(counts.deleted, 1, "the retraction of 3");
    assert_eq!(counts.snapshot_deleted, 2, "2 and 4 were not seen");
    store.finish_run(&l, None, &BTreeMap::new()).await.unwrap();
    let run = store.run(a.tenant.id, l.run_id).await.unwrap();
    assert_eq!(run.retractions, 3, "one retraction and two facts the snapshot retracted");
    assert_eq!(run.upserts, 1);

    let after = store.facts(a.tenant.id, "hostile").await.unwrap();
    assert_eq!(
        keys(&after),
        keyset(&[
            ("deals_won", 1),
            ("deals_won", 5),
            ("deals_won", 6),
            ("deals_won", 7),
            ("revenue", 1),
            ("revenue", 2)
        ])
    );
    // Other integrations of the tenant, and the other tenant, are untouched.
    let all_seeded = keys(&store.facts(b.tenant.id, "hostile").await.unwrap());
    assert_eq!(all_seeded.len(), 8);
    assert_eq!(keys(&store.facts(a.tenant.id, "other").await.unwrap()), all_seeded);
}

async fn a_snapshot_in_a_refused_commit_deletes_nothing(backend: Backend) {
    let Some((store, _db)) = store_on(backend).await else { return };
    let a = tenant(&store, "acme", "UTC").await;
    enable(&store, &a, "hostile", &[("base_url", "https://crm.example.com")]).await;
    let l = lease(&store, a.tenant.id, "hostile").await;
    store.commit(&l, &[won(1, IN), won(2, IN)], None, &BTreeMap::new()).await.unwrap();
    store.finish_run(&l, None, &BTreeMap::new()).await.unwrap();
    let before = store.facts(a.tenant.id, "hostile").await.unwrap();

    // The run's lease is gone (finished): the commit is refused whole.
    let refused = store.commit_with_snapshots(&l, &[won(3, IN)], &[snapshot(&[])], None, &BTreeMap::new()).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert_eq!(store.facts(a.tenant.id, "hostile").await.unwrap(), before);
}

// ----- the scheduler, in process ---------------------------------------------------------

struct Harness {
    store: Store,
    scheduler: Scheduler,
    server: CountingServer,
    _db: TestDatabase,
}

impl Harness {
    async fn start(backend: Backend) -> Option<Self> {
        let (store, db) = store_on(backend).await?;
        let runtime = Arc::new(runtime());
        let mut registry = Registry::default();
        registry.insert(runtime.load(&component("oneup-hostile-connector")).await.expect("loads")).unwrap();
        let config = SchedulerConfig {
            node: "test-node".into(),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            max_concurrent: 2,
            max_per_tenant: 1,
            grace: Duration::from_secs(5),
        };
        let scheduler = Scheduler::start(store.clone(), runtime, Arc::new(registry), config);
        Some(Self { store, scheduler, server: CountingServer::start().await, _db: db })
    }

    /// Enables (again) the tenant's hostile integration in `mode`, which makes it due now,
    /// and waits for the run the scheduler then makes to finish.
    async fn sync(&self, t: &CreatedTenant, mode: &str) -> Run {
        let id = t.tenant.id;
        let done = self.store.runs(id, "hostile", 100).await.unwrap().len();
        enable(&self.store, t, "hostile", &[("base_url", &self.server.base_url), ("mode", mode)]).await;
        self.scheduler.wake();
        eventually(&format!("the `{mode}` run finishes"), Duration::from_secs(60), || async {
            let runs = self.store.runs(id, "hostile", 100).await.unwrap();
            let finished = matches!(
                runs.first().map(|r| r.status),
                Some(RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed)
            );
            (runs.len() > done && finished).then(|| runs[0].clone())
        })
        .await
    }

    /// The facts of the tenant's hostile integration, by source id.
    async fn facts(&self, t: &CreatedTenant, ids: &[&str]) -> BTreeMap<(String, String), i64> {
        let key = self.store.tenant_key(t.tenant.id).await.unwrap();
        let name = |hash: &KeyedHash| {
            ids.iter()
                .find(|id| oneup::ingest::keyed_hash(&key, oneup::ingest::Domain::Source, "hostile", id) == *hash)
                .map_or_else(|| format!("unknown {hash}"), |id| id.to_string())
        };
        let facts = self.store.facts(t.tenant.id, "hostile").await.unwrap();
        facts.iter().map(|f| ((f.metric.clone(), name(&f.source)), f.occurred_at_ms)).collect()
    }
}

const IDS: [&str; 11] = [
    "date-spring",
    "date-autumn",
    "date-summer",
    "date-impossible",
    "date-ancient",
    "s-1",
    "s-2",
    "s-from",
    "s-to",
    "s-out",
    "s-new",
];

fn key(metric: &str, id: &str) -> (String, String) {
    (metric.to_owned(), id.to_owned())
}

async fn the_scheduler_places_dates_in_the_tenant_zone_and_resolves_snapshots(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let berlin = tenant(&h.store, "berlin", "Europe/Berlin").await;
    let other = tenant(&h.store, "other", "UTC").await;

    let run = h.sync(&berlin, "dates").await;
    assert_eq!((run.status, run.error_code.as_deref()), (RunStatus::Succeeded, None));
    assert_eq!(run.rejected, BTreeMap::from([("out_of_range".to_owned(), 2)]));
    let facts = h.facts(&berlin, &IDS).await;
    assert_eq!(facts.get(&key("deals_won", "date-spring")), Some(&1_743_289_200_000), "2025-03-30 00:00 +01:00");
    assert_eq!(facts.get(&key("deals_won", "date-autumn")), Some(&1_761_429_600_000), "2025-10-26 00:00 +02:00");
    assert_eq!(facts.get(&key("revenue", "date-summer")), Some(&1_748_815_200_000), "2025-06-02 00:00 +02:00");
    assert_eq!(facts.len(), 3);

    // Both tenants seed the window; only Berlin snapshots it.
    for t in [&berlin, &other] {
        assert_eq!(h.sync(t, "snap-seed").await.status, RunStatus::Succeeded);
    }
    let other_before = h.facts(&other, &IDS).await;
    assert_eq!(other_before.len(), 6);
    let run = h.sync(&berlin, "snap").await;
    assert_eq!((run.status, run.error_code.as_deref()), (RunStatus::Succeeded, None));
    assert_eq!(run.retractions, 2, "s-2 and s-from");
    let held: BTreeSet<_> = h.facts(&berlin, &IDS).await.into_keys().collect();
    let expected: BTreeSet<_> = [
        key("deals_won", "date-spring"),
        key("deals_won", "date-autumn"),
        key("revenue", "date-summer"),
        key("deals_won", "s-1"),
        key("deals_won", "s-new"),
        key("deals_won", "s-to"),
        key("deals_won", "s-out"),
        key("revenue", "s-1"),
    ]
    .into();
    assert_eq!(held, expected);
    assert_eq!(h.facts(&other, &IDS).await, other_before, "another tenant's facts are untouched");

    // A sync that traps after ending a snapshot retracts nothing.
    let before = h.facts(&other, &IDS).await;
    let run = h.sync(&other, "snap-end-then-trap").await;
    assert_eq!((run.status, run.error_code.as_deref()), (RunStatus::Failed, Some("trap")));
    assert_eq!(h.facts(&other, &IDS).await, before);
    // A rule broken fails the run with its code, and commits nothing.
    let run = h.sync(&other, "bad-snapshot:twice").await;
    assert_eq!((run.status, run.error_code.as_deref()), (RunStatus::Failed, Some("bad_snapshot")));
    assert_eq!(run.upserts, 0);
    assert_eq!(h.facts(&other, &IDS).await, before);
    h.scheduler.shutdown().await;
}

async fn a_budget_exhausted_run_is_partial_and_the_next_sync_waits_for_the_resume_time(backend: Backend) {
    let Some(h) = Harness::start(backend).await else { return };
    let t = tenant(&h.store, "acme", "UTC").await;
    const MIN: i64 = 60_000;
    // (mode, how far after the sync the next one is due): the resume time as given, at
    // most a day ahead, an hour without one, a minute for a time already past.
    let cases = [
        ("budget-in:120", 120 * MIN),
        ("budget-in:100000", 24 * 60 * MIN),
        ("budget", 60 * MIN),
        ("budget-in:-30", MIN),
    ];
    for (mode, ahead) in cases {
        let run = h.sync(&t, mode).await;
        assert_eq!(run.status, RunStatus::Partial, "{mode}");
        assert_eq!(run.error_code, None, "{mode}");
        assert_eq!(run.reasons, [BUDGET_EXHAUSTED], "{mode}");
        assert_eq!(run.upserts, 1, "{mode}: what it read is committed");
        let next = h.store.integration(t.tenant.id, "hostile").await.unwrap().next_sync_at_ms.expect("scheduled");
        let (started, finished) = (run.started_at_ms.unwrap(), run.finished_at_ms.unwrap());
        assert!(
            (started + ahead..=finished + ahead).contains(&next),
            "{mode}: next sync at {next}, run {started}..{finished}"
        );
    }
    // A complete sync goes back to the interval.
    let run = h.sync(&t, "ok").await;
    assert_eq!((run.status, run.error_code.as_deref()), (RunStatus::Succeeded, None));
    let next = h.store.integration(t.tenant.id, "hostile").await.unwrap().next_sync_at_ms.unwrap();
    assert!((run.finished_at_ms.unwrap() + 900_000 - 5_000..=run.finished_at_ms.unwrap() + 900_000).contains(&next));
    h.scheduler.shutdown().await;
}
