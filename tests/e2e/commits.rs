//! Coalesced commits, on both stores: the Pipedrive component in the real runtime reads the
//! fake Pipedrive over loopback and commits through the scheduler's `StoreSink`, as the
//! service does. The host may commit a later cursor with everything before it, so a sync
//! of many small checkpoints makes few commits (the run's `checkpoints` counter counts
//! commits) and writes exactly the facts a commit per checkpoint writes; a sync that fails
//! still commits everything up to its last checkpoint, and the next one resumes from there
//! to exact totals.

use std::collections::BTreeMap;
use std::time::Duration;

use oneup::ingest::Currency;
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, SandboxLimits, SyncError, SyncReport, TimeZone};
use oneup::scheduler::StoreSink;
use oneup::store::facts::PG_COPY_MIN;
use oneup::store::{CreatedTenant, EnableIntegration, MasterKey, NewTenant, Run, Secrets, Store, StoredFact};
use oneup_fake_crm::pipedrive::{FakePipedrive, Fault, OwnerTotals};
use oneup_tests::*;

const TOKEN: &str = "pd-commits-token-3b9e";
const CONNECTOR: &str = "pipedrive";
const LEASE: Duration = Duration::from_secs(60);

on_both_stores!(
    many_small_checkpoints_share_few_commits_and_write_what_a_commit_per_checkpoint_writes,
    a_failed_sync_commits_to_its_last_checkpoint_and_the_next_resumes_to_exact_totals,
);

/// A tenant with Pipedrive enabled against a fake, on a database of its own.
struct Ingest {
    store: Store,
    tenant: CreatedTenant,
    fake: FakePipedrive,
    config: BTreeMap<String, String>,
    _db: TestDatabase,
}

impl Ingest {
    async fn start(backend: Backend, seed: u64, deals: usize, activities: usize) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let store = Store::connect(&db.url, MasterKey::from_bytes([7; 32])).await.expect("the store opens");
        let tenant = store
            .create_tenant(&NewTenant {
                name: "Commit Counting",
                timezone: "UTC",
                currency: Currency::parse("EUR").unwrap(),
                admin_name: "Admin",
                admin_email: "admin@commits.example",
            })
            .await
            .expect("tenant");
        let fake = fake_pipedrive(seed, 3, deals, activities, TOKEN).await;
        let config = BTreeMap::from([("base_url".to_owned(), fake.base_url())]);
        let this = Self { store, tenant, fake, config, _db: db };
        this.enable().await;
        Some(this)
    }

    async fn enable(&self) {
        let secrets = Secrets::new(BTreeMap::from([("api_token".to_owned(), TOKEN.to_owned())]));
        let metrics: Vec<String> = ["deals_won", "revenue", "calls", "meetings"].map(String::from).to_vec();
        self.store
            .enable_integration(
                self.tenant.tenant.id,
                &EnableIntegration {
                    connector_id: CONNECTOR,
                    config: &self.config,
                    secrets: &secrets,
                    metrics: &metrics,
                    sync_interval_secs: 3600,
                    enabled_by: self.tenant.admin.id,
                    component_digest: None,
                    component_grants: None,
                },
            )
            .await
            .expect("enabled");
    }

    /// Deletes the integration's facts and cursor (disable with purge, then enable again).
    async fn purge(&self) {
        self.store.disable_integration(self.tenant.tenant.id, CONNECTOR, true).await.expect("disabled");
        self.enable().await;
        assert!(self.facts().await.is_empty());
    }

    /// One run as the scheduler makes it: queued, claimed, synced from the committed
    /// cursor (or, `from_start`, from none) into a `StoreSink` under the lease, finished
    /// with its result.
    async fn sync(&self, runtime: &Runtime, connector: &LoadedConnector, from_start: bool) -> (SyncReport, Run) {
        let tenant = self.tenant.tenant.id;
        let run = self.store.queue_run(tenant, CONNECTOR).await.expect("queued");
        let lease = self.store.claim_run("node-a", LEASE).await.expect("claim").expect("a run to claim");
        assert_eq!(lease.run_id, run);
        let since = if from_start { None } else { self.store.cursor(tenant, CONNECTOR).await.expect("cursor") };
        let setup = IntegrationSetup {
            config: self.config.clone(),
            secrets: BTreeMap::from([("api_token".to_owned(), TOKEN.to_owned())]),
            tenant_key: self.store.tenant_key(tenant).await.expect("tenant key"),
            debug: None,
            vault: None,
            timezone: TimeZone::UTC,
        };
        let (sink, committed) = StoreSink::new(self.store.clone(), lease.clone());
        let report = runtime.sync(connector, setup, since.as_ref(), Box::new(sink)).await;
        let code = report.result.as_ref().err().map(SyncError::code);
        self.store.finish_run(&lease, code.as_deref(), &committed.uncommitted(&report.stats)).await.expect("finished");
        let run = self.store.run(tenant, run).await.expect("the run");
        (report, run)
    }

    /// The facts held, without the time they were last confirmed.
    async fn facts(&self) -> Vec<StoredFact> {
        let mut facts = self.store.facts(self.tenant.tenant.id, CONNECTOR).await.expect("facts");
        for f in &mut facts {
            f.confirmed_at_ms = 0;
        }
        facts.sort_by(|a, b| (&a.metric, a.source).cmp(&(&b.metric, b.source)));
        facts
    }

    fn expected(&self) -> BTreeMap<u64, OwnerTotals> {
        self.fake.with(|crm| crm.expected_totals())
    }
}

/// Facts a correct first sync writes: two per won deal (`deals_won`, `revenue`), one per
/// done call or meeting.
fn fact_count(totals: &BTreeMap<u64, OwnerTotals>) -> u64 {
    totals.values().map(|t| 2 * t.deals_won + t.calls + t.meetings).sum()
}

/// The default commit policy, with the time trigger out of reach so that only the count
/// decides (the sync is fast, but a loaded machine must not change the figures).
fn policy(commit_changes: usize, overlap_commits: bool) -> SandboxLimits {
    SandboxLimits {
        cpu_time: Duration::from_secs(60),
        wall_time: Duration::from_secs(120),
        commit_changes,
        commit_interval: Duration::from_secs(3600),
        overlap_commits,
        ..SandboxLimits::default()
    }
}

async fn many_small_checkpoints_share_few_commits_and_write_what_a_commit_per_checkpoint_writes(backend: Backend) {
    // 1,800 deals and 2,600 activities: pages of 500, a checkpoint after each.
    let Some(ingest) = Ingest::start(backend, 801, 1800, 2600).await else { return };
    let total = fact_count(&ingest.expected());
    // A commit this large goes through Postgres' `COPY` path when its keys are new.
    assert!(total >= PG_COPY_MIN as u64, "{total}");
    let mut reference: Option<(u64, Vec<StoredFact>)> = None;
    // (commit at every checkpoint), (coalesced into one), (coalesced by 1,000), each
    // from an empty integration.
    for (limits, label) in [
        (policy(0, false), "a commit per checkpoint"),
        (policy(10_000, true), "coalesced, overlapped"),
        (policy(1_000, true), "coalesced by 1,000"),
    ] {
        ingest.purge().await;
        let runtime = runtime_with(limits.clone());
        let connector = runtime.load(&component(PIPEDRIVE)).await.expect("the Pipedrive connector loads");
        let (report, run) = ingest.sync(&runtime, &connector, false).await;
        let stats = &report.stats;
        assert!(report.result.is_ok(), "{label}: {:?}", report.result);
        assert!(stats.checkpoints >= 10, "{label}: many small checkpoints: {stats:?}");
        // The run's `checkpoints` counts commits: the host's and the store's figures agree.
        assert_eq!(run.checkpoints, stats.commits, "{label}: {run:?}");
        assert_eq!((stats.committed, run.upserts), (total, total), "{label}: {stats:?} {run:?}");
        match limits.commit_changes {
            // One commit per checkpoint, and one at the end.
            0 => assert_eq!(stats.commits, stats.checkpoints + 1, "{label}: {stats:?}"),
            // Under 10,000 changes: everything in the commit at the end.
            10_000 => assert_eq!(stats.commits, 1, "{label}: {stats:?}"),
            // Each commit but the last holds at least 1,000 changes.
            n => {
                assert!(stats.commits > 1 && stats.commits < stats.checkpoints, "{label}: {stats:?}");
                assert!(stats.commits <= total / n as u64 + 1, "{label}: {stats:?}");
            }
        }
        let facts = ingest.facts().await;
        assert_eq!(facts.len() as u64, total, "{label}");
        match &reference {
            None => reference = Some((stats.checkpoints, facts)),
            Some((checkpoints, first)) => {
                assert_eq!(stats.checkpoints, *checkpoints, "{label}: the connector made the same checkpoints");
                assert!(facts == *first, "{label}: the same facts as with a commit per checkpoint");
            }
        }
        assert!(ingest.store.cursor(ingest.tenant.tenant.id, CONNECTOR).await.unwrap().is_some(), "{label}");
    }

    // Read again from the start into the facts already held: one commit of keys that are
    // all stored (on Postgres the `COPY` is refused and the batch upserted), nothing changes.
    let runtime = runtime_with(policy(10_000, true));
    let connector = runtime.load(&component(PIPEDRIVE)).await.expect("the Pipedrive connector loads");
    let (report, run) = ingest.sync(&runtime, &connector, true).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    assert_eq!((report.stats.commits, run.checkpoints, run.upserts), (1, 1, total), "{run:?}");
    let (_, first) = reference.expect("the first sync's facts");
    assert!(ingest.facts().await == first, "a re-read of the same data changes nothing");
}

async fn a_failed_sync_commits_to_its_last_checkpoint_and_the_next_resumes_to_exact_totals(backend: Backend) {
    // Requests 1-4: the deals (500, 500, 500, 300), 5: deleted deals, 6: the first page of
    // activities, answered 401.
    let Some(ingest) = Ingest::start(backend, 802, 1800, 1400).await else { return };
    let expected = ingest.expected();
    let won: u64 = expected.values().map(|t| t.deals_won).sum();
    ingest.fake.with(|crm| {
        crm.fail_next(5, Fault::Delay(Duration::ZERO));
        crm.fail_next(1, Fault::Unauthorized);
    });
    // Commits only by count: nothing is committed before the failure.
    let runtime = runtime_with(policy(10_000, true));
    let connector = runtime.load(&component(PIPEDRIVE)).await.expect("the Pipedrive connector loads");
    let (report, run) = ingest.sync(&runtime, &connector, false).await;
    assert_eq!(report.result, Err(SyncError::Connector { code: "http_unauthorized".into(), http_status: Some(401) }));
    let stats = &report.stats;
    assert!(stats.checkpoints >= 4, "every page of deals was checkpointed: {stats:?}");
    assert_eq!(stats.commits, 1, "one commit, made after the failure: {stats:?}");
    // Every deal page precedes the last checkpoint: all of them are in, and counted.
    let facts = ingest.facts().await;
    assert_eq!(facts.len() as u64, 2 * won, "the won deals, two facts each, and nothing else");
    assert!(facts.iter().all(|f| f.metric == "deals_won" || f.metric == "revenue"));
    assert_eq!((run.checkpoints, run.upserts, stats.committed), (1, 2 * won, 2 * won), "{run:?}");
    assert_eq!(run.error_code.as_deref(), Some("http_unauthorized"), "{run:?}");

    // The next run resumes from that checkpoint: nothing lost, nothing counted twice.
    ingest.fake.with(|crm| crm.clear_faults());
    let (report, run) = ingest.sync(&runtime, &connector, false).await;
    assert!(report.result.is_ok(), "{:?}", report.result);
    assert!(run.upserts < fact_count(&expected), "resumed, not read again from the start: {run:?}");
    let facts = ingest.facts().await;
    assert_eq!(facts.len() as u64, fact_count(&expected));
    let per_metric = |metric: &str| facts.iter().filter(|f| f.metric == metric).count() as u64;
    assert_eq!(per_metric("deals_won"), won);
    assert_eq!(per_metric("revenue"), won);
    assert_eq!(per_metric("calls"), expected.values().map(|t| t.calls).sum::<u64>());
    assert_eq!(per_metric("meetings"), expected.values().map(|t| t.meetings).sum::<u64>());
}
