//! Section 4: end to end into Postgres, beside raw `COPY` of the same rows.
//!
//! * **Postgres.** The server of `DATABASE_URL`; a fresh database is created with the
//!   store's own `create_postgres_database` (migrations applied by `Store::connect`) and
//!   dropped at the end, also when something fails. If the server does not answer, the
//!   section says why and is skipped; the other sections are not affected.
//! * **The service's path.** Everything is set up through the store's API as the service
//!   does it: a tenant (EUR, with rates for the fake's other currencies), users matching
//!   two of the fake CRM's users (the roster maps them, the others stay unmapped), the
//!   Pipedrive integration enabled with the fake's loopback base URL and a sealed API
//!   token, then a run queued and claimed for its `Lease`. The sync runs in a `Runtime`
//!   that allows loopback HTTP, over the production `ReqwestTransport` (wrapped only to
//!   time it), into the scheduler's `StoreSink` (wrapped only to time it), under the
//!   service's default commit policy (`SandboxLimits`: checkpoints coalesced into commits
//!   of at least `commit_changes` changes or one per `commit_interval`, each commit in a
//!   task beside the reading): every commit writes its facts, the latest cursor and the
//!   run's counts in one transaction.
//! * **The fake CRM.** `FakePipedrive` on loopback, sized so that its first sync emits
//!   about `--e2e-events` changes, half from won deals (two changes each) and half from
//!   done calls and meetings (one each); the rates per record are measured on a small
//!   sample of the same generator first. The real count is printed.
//! * **Where the time goes.** The sync's wall time split into HTTP (the fake rendering its
//!   JSON in this process, loopback, reqwest), Postgres commits, and the rest (the sandbox:
//!   instantiation, guest parsing, lifting, validation and HMAC, glue); and the CPU time
//!   this process used meanwhile, since Postgres and the fake share the same few CPUs.
//! * **Memory.** A thread samples `VmRSS` every 100 ms during the sync, with the number of
//!   events committed at that moment; after the first 10 % of the events the resident set
//!   may grow by at most 8 MB. A last sample once the sync has returned shows how much of
//!   the growth lived in the sandbox instance (freed with it).
//! * **Raw `COPY`.** The rows the sync wrote are read back as `COPY` text in the order they
//!   were written, the table is truncated (its primary key, index and checks stay), and the
//!   same rows go back in with one `COPY facts (…) FROM STDIN` on one connection. A
//!   `CHECKPOINT` precedes each timed phase so neither pays for the other's dirty pages.
//! * **Before and after, in the same run** (unless `--e2e-skip-before`): the same sync
//!   again into the truncated table under the commit policies the service had before
//!   (`SandboxLimits::commit_changes` 0: a commit at every checkpoint, the connector
//!   waiting for it) and between (commits coalesced, not overlapped with the reading),
//!   each beside the same raw `COPY` rate; then a summary of the three.
//!
//! One run of each: a million events take tens of seconds per side on these machines.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use oneup::ingest::{Change, Currency, Cursor, Snapshot};
use oneup::runtime::http::{Fetched, HttpFailure, ReqwestTransport, Transport};
use oneup::runtime::{
    BoxFuture, IntegrationSetup, LoadedConnector, Runtime, RuntimeConfig, SandboxLimits, SyncOutcome, SyncSink,
    SyncStats,
};
use oneup::scheduler::StoreSink;
use oneup::store::admin::{create_postgres_database, drop_postgres_database, unique_database_name};
use oneup::store::tenants::normalize_email;
use oneup::store::{
    EnableIntegration, FxRate, Lease, MasterKey, NewTenant, NewUser, Role, Run, Secrets, Store, TenantId,
};
use oneup_fake_crm::pipedrive::{Crm, Dataset, FakePipedrive};
use reqwest::header::HeaderMap;
use sqlx::{Connection, PgConnection};
use url::Url;

use crate::crm::TOKEN;
use crate::proc::{RssSampler, Sample, cpu_time, mib, rss_kb};
use crate::stats::{median, ms, percentile};
use crate::verdict;

/// The goal: end-to-end events per second at least this share of raw `COPY` rows per second.
const COPY_SHARE_GOAL: f64 = 0.5;
/// The connector under test.
const CONNECTOR: &str = "pipedrive";
/// How long to wait for Postgres to answer before skipping the section.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the resident set is sampled during the sync.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The share of the run's events after which memory must stay flat.
const WARM_UP_SHARE: f64 = 0.10;
/// How much the resident set may grow after the warm-up and still count as flat: allocator
/// noise is a few MB; growth of 10 bytes per event over 900k events exceeds it.
const FLAT_TOLERANCE_MIB: f64 = 8.0;
/// Deals and activities in the sample that measures how many changes each record makes.
const CALIBRATION_RECORDS: usize = 20_000;
/// Bytes per `CopyData` message of the raw `COPY`.
const COPY_CHUNK: usize = 1 << 20;
/// The columns of `facts`, as both the read-back and the raw `COPY` name them.
const FACT_COLUMNS: &str = "tenant_id, connector_id, metric, source_hash, owner_hash, occurred_at, kind, count, \
     amount_micros, currency, amount_tenant_micros, confirmed_at";

/// What section 4 needs from the command line.
pub struct Options<'a> {
    /// The Pipedrive component.
    pub wasm: &'a [u8],
    /// The compile cache shared with the other sections.
    pub cache_dir: &'a Path,
    /// An administrative Postgres URL (its user may create databases).
    pub database_url: &'a str,
    /// Changes the fake CRM's first sync should emit, about.
    pub events: u64,
    /// Also runs the sync under the earlier commit policies, for before/after figures.
    pub before: bool,
    /// Seed of the fake dataset.
    pub seed: u64,
    /// CRM users the records are spread over.
    pub users: usize,
}

/// Runs section 4 and prints it; skips it (printing why) when Postgres does not answer.
pub async fn section(opts: &Options<'_>) -> anyhow::Result<()> {
    println!();
    println!(
        "4. End to end: fake Pipedrive over loopback HTTP -> sandbox -> Postgres, beside raw COPY of the same rows"
    );
    let shown = redact(opts.database_url);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(opts.database_url)).await {
        Err(_) => {
            println!(
                "   skipped: Postgres at {shown} did not answer within {} s (set DATABASE_URL to a server whose user may create databases)",
                CONNECT_TIMEOUT.as_secs()
            );
            return Ok(());
        }
        Ok(Err(e)) => {
            println!(
                "   skipped: cannot connect to Postgres at {shown}: {e} (set DATABASE_URL to a server whose user may create databases)"
            );
            return Ok(());
        }
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
    }
    let name = unique_database_name("oneup_bench");
    let url = match create_postgres_database(opts.database_url, &name).await {
        Ok(url) => url,
        Err(e) => {
            println!("   skipped: cannot create a database on {shown}: {e}");
            return Ok(());
        }
    };
    let result = match Store::connect(&url, MasterKey::random()).await {
        Ok(store) => {
            let result = measure(opts, &store, &url, &name, &shown).await;
            store.close().await;
            result
        }
        Err(e) => Err(anyhow::Error::new(e).context("connecting the store to the bench database failed")),
    };
    match drop_postgres_database(opts.database_url, &name).await {
        Ok(()) => println!("   (database {name} dropped)"),
        Err(e) => eprintln!("warning: could not drop the bench database {name}: {e}"),
    }
    result
}

async fn measure(opts: &Options<'_>, store: &Store, url: &str, name: &str, shown: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(url).await.context("connecting to the bench database failed")?;
    let (version, shared_buffers, synchronous_commit, max_wal_size): (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('shared_buffers'), \
             current_setting('synchronous_commit'), current_setting('max_wal_size')",
    )
    .fetch_one(&mut admin)
    .await?;
    println!(
        "   Postgres {version} at {shown}, fresh database {name}; shared_buffers {shared_buffers}, synchronous_commit {synchronous_commit}, max_wal_size {max_wal_size}"
    );

    // ---- the fake CRM ------------------------------------------------------------------
    let plan = Plan::for_events(opts.events, opts.seed, opts.users);
    let rss_before_crm = rss_kb().unwrap_or(0);
    let started = Instant::now();
    let dataset = Dataset::generate(opts.seed, opts.users, plan.deals, plan.activities);
    let generated = started.elapsed();
    let started = Instant::now();
    let fake = FakePipedrive::start(dataset, TOKEN).await.context("starting the fake Pipedrive failed")?;
    let indexed = started.elapsed();
    let crm_kb = rss_kb().unwrap_or(0).saturating_sub(rss_before_crm);
    let (expected, crm_users) = fake.with(|crm| {
        let users: Vec<String> = crm.users().iter().map(|u| u.email.clone()).collect();
        (Expected::of(crm), users)
    });
    println!(
        "   fake Pipedrive on {}: {} deals, {} activities, {} users; generated in {:.1} s, indexed and serving in {:.1} s; it holds ~{:.0} MB (RSS growth)",
        fake.base_url(),
        group(plan.deals as u64),
        group(plan.activities as u64),
        crm_users.len(),
        generated.as_secs_f64(),
        indexed.as_secs_f64(),
        mib(crm_kb)
    );
    println!(
        "   its first sync emits {} changes: {} won deals x 2 + {} calls + {} meetings (asked for --e2e-events {})",
        group(expected.events()),
        group(expected.won),
        group(expected.calls),
        group(expected.meetings),
        group(opts.events)
    );

    // ---- the service's setup, through the store ------------------------------------------
    let transport = Arc::new(TimedTransport::new(ReqwestTransport::new(RuntimeConfig::default().http.timeout)?));
    let config = RuntimeConfig {
        cache_dir: Some(opts.cache_dir.to_owned()),
        allow_loopback_http: true,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_transport(config, transport.clone())?;
    let connector = runtime.load(opts.wasm).await.context("loading the component failed")?;
    let setup = Setup::create(store, &connector, &fake.base_url(), &crm_users).await?;
    let mapped = setup.map_owners(store, &runtime, &connector).await?;
    let lease = setup.claim(store).await?;
    println!(
        "   store: tenant in EUR with USD/GBP/SEK rates, {} users, Pipedrive enabled (base_url, sealed api_token), run queued and claimed (lease {}); roster mapped {} of {} CRM owners",
        setup.users,
        lease.owner,
        mapped,
        crm_users.len()
    );

    // ---- end to end ----------------------------------------------------------------------
    let ctx = SyncContext { store, transport: &transport, setup: &setup };
    let e2e = ctx.run(&mut admin, &lease, &runtime, &connector, expected.events()).await?;
    let rows = e2e.events;
    let limits = &runtime.config().limits;
    let policy = format!(
        "a commit once >= {} changes wait at a checkpoint or {:.0} s have passed, {}",
        group(limits.commit_changes as u64),
        limits.commit_interval.as_secs_f64(),
        if limits.overlap_commits { "each in a task beside the reading" } else { "the connector waiting for it" }
    );
    e2e.print(&format!("end to end, the service's defaults ({policy})"));
    println!(
        "     run recorded: {} checkpoints, {} upserts, {} unmapped, {} waiting for a rate",
        group(e2e.run.checkpoints),
        group(e2e.run.upserts),
        group(e2e.run.unmapped),
        group(e2e.run.waiting_rate)
    );
    report_memory(&e2e.samples, e2e.events, e2e.rss_before_kb);

    // ---- raw COPY ------------------------------------------------------------------------
    let copy = raw_copy(&mut admin, rows).await?;
    let copy_rate = rows as f64 / copy.elapsed.as_secs_f64();
    println!(
        "   raw COPY of the same {} rows ({:.0} MB of COPY text read back in the order the sync wrote them; table truncated, same primary key, index and checks), one COPY FROM STDIN on one connection: {:.1} s = {} rows/s",
        group(rows),
        copy.bytes as f64 / 1e6,
        copy.elapsed.as_secs_f64(),
        group(copy_rate as u64)
    );
    let e2e_rate = e2e.rate();
    let ratio = e2e_rate / copy_rate;
    println!(
        "   end to end / raw COPY: {ratio:.2} ({} events/s vs {} rows/s)",
        group(e2e_rate as u64),
        group(copy_rate as u64)
    );
    println!(
        "   goal: end to end at least {COPY_SHARE_GOAL} of raw COPY -> {}",
        verdict(ratio >= COPY_SHARE_GOAL, &format!("{ratio:.2}"))
    );
    if ratio < COPY_SHARE_GOAL {
        let target = rows as f64 / (copy_rate * COPY_SHARE_GOAL);
        let wall = e2e.wall.as_secs_f64();
        println!(
            "         the sync would have to take at most {target:.1} s ({:.1} s less); its Postgres commits alone took {:.1} s ({:.2} of raw COPY on their own)",
            wall - target,
            e2e.sink_s,
            rows as f64 / e2e.sink_s / copy_rate
        );
    }
    println!(
        "   (one run of each side{}; both start from an empty table and a CHECKPOINT)",
        if e2e.checkpointed && copy.checkpointed {
            ""
        } else {
            "; CHECKPOINT was refused, so dirty pages may carry over"
        }
    );

    // ---- before and after ------------------------------------------------------------------
    let mut summary = vec![(format!("after: {policy} (the service's defaults)"), e2e.rate())];
    if opts.before {
        let defaults = SandboxLimits::default();
        let variants = [
            (
                "before: a commit at every checkpoint, the connector waiting for it".to_owned(),
                SandboxLimits { commit_changes: 0, overlap_commits: false, ..defaults.clone() },
            ),
            (
                "between: commits coalesced as after, the connector waiting for each (no overlap)".to_owned(),
                SandboxLimits { overlap_commits: false, ..defaults.clone() },
            ),
        ];
        for (title, limits) in variants {
            sqlx::query("TRUNCATE facts").execute(&mut admin).await?;
            let config = RuntimeConfig { limits, ..runtime.config().clone() };
            let other = Runtime::with_transport(config, transport.clone())?;
            let connector = other.load(opts.wasm).await.context("loading the component failed")?;
            let lease = setup.claim(store).await?;
            let run = ctx.run(&mut admin, &lease, &other, &connector, expected.events()).await?;
            run.print(&title);
            println!(
                "     / raw COPY: {:.2} ({} events/s vs {} rows/s)",
                run.rate() / copy_rate,
                group(run.rate() as u64),
                group(copy_rate as u64)
            );
            summary.insert(summary.len() - 1, (title, run.rate()));
        }
    }
    println!(
        "   summary, events/s end to end and the share of raw COPY ({} rows/s), this run:",
        group(copy_rate as u64)
    );
    for (title, rate) in &summary {
        println!("     {:>9} events/s  {:.2}  {title}", group(*rate as u64), rate / copy_rate);
    }
    drop(runtime);
    fake.shutdown().await;
    Ok(())
}

/// What one sync needs.
struct SyncContext<'a> {
    store: &'a Store,
    transport: &'a TimedTransport,
    setup: &'a Setup,
}

/// One timed sync into the store.
struct SyncRun {
    events: u64,
    wall: Duration,
    /// This process's CPU time during the sync.
    cpu: Option<Duration>,
    checkpoints: u64,
    /// Each commit's duration, in milliseconds.
    commits: Vec<f64>,
    /// Seconds spent in commits.
    sink_s: f64,
    served: Served,
    samples: Vec<Sample>,
    rss_before_kb: u64,
    run: Run,
    checkpointed: bool,
    /// Whether the commits ran beside the reading.
    overlap: bool,
}

impl SyncContext<'_> {
    /// Runs a first sync under `lease` into an empty `facts` (after a `CHECKPOINT`) in
    /// `runtime` (whose limits set the commit policy), sampling memory; finishes the run
    /// and checks that `expected` facts were written.
    async fn run(
        &self,
        admin: &mut PgConnection,
        lease: &Lease,
        runtime: &Runtime,
        connector: &LoadedConnector,
        expected: u64,
    ) -> anyhow::Result<SyncRun> {
        let checkpointed = checkpoint(admin).await;
        let progress = Arc::new(Progress::default());
        let (sink, committed) = StoreSink::new(self.store.clone(), lease.clone());
        let sink: Box<dyn SyncSink> = Box::new(TimedSink { inner: sink, progress: progress.clone() });
        let overlap = runtime.config().limits.overlap_commits;
        self.transport.take();
        let rss_before_kb = rss_kb().unwrap_or(0);
        let sampler = RssSampler::start(SAMPLE_EVERY, progress.events.clone())?;
        let cpu_before = cpu_time();
        let started = Instant::now();
        let report = runtime.sync(connector, self.setup.integration(), None, sink).await;
        let wall = started.elapsed();
        let cpu = cpu_time().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
        let samples = sampler.stop();
        let served = self.transport.take();
        let stats = report.stats;
        match report.result {
            Ok(SyncOutcome::Complete) => {}
            Ok(other) => bail!("the sync stopped early: {other:?}"),
            Err(e) => bail!("the sync failed: {} ({e})", e.code()),
        }
        self.store.finish_run(lease, None, &committed.uncommitted(&stats)).await.context("finishing the run failed")?;
        let run = self.store.run(self.setup.tenant, lease.run_id).await?;
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM facts").fetch_one(&mut *admin).await?;
        let rows = u64::try_from(rows).unwrap_or(0);
        ensure!(stats.rejected.is_empty(), "the validator rejected changes: {:?}", stats.rejected);
        ensure!(
            stats.committed == expected && run.upserts == expected && rows == expected,
            "expected {expected} changes; the sync committed {}, the run recorded {} upserts, facts holds {rows} rows",
            stats.committed,
            run.upserts
        );
        Ok(SyncRun {
            events: stats.committed,
            wall,
            cpu,
            checkpoints: stats.checkpoints,
            commits: progress.commits_ms(),
            sink_s: progress.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            served,
            samples,
            rss_before_kb,
            run,
            checkpointed,
            overlap,
        })
    }
}

impl SyncRun {
    /// Events committed per second of the whole sync.
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    /// The rate and where the time went.
    fn print(&self, title: &str) {
        let wall = self.wall.as_secs_f64();
        let http_s = self.served.nanos as f64 / 1e9;
        // Commits beside the reading overlap the rest; otherwise the connector waits for them.
        let waited_s = if self.overlap { 0.0 } else { self.sink_s };
        let rest_s = (wall - waited_s - http_s).max(0.0);
        let share = |s: f64| s / wall * 100.0;
        println!(
            "   {title}: {} changes committed in {wall:.1} s = {} events/s; {} commits for {} checkpoints (and the end), {:.0} changes per commit",
            group(self.events),
            group(self.rate() as u64),
            group(self.commits.len() as u64),
            group(self.checkpoints),
            self.events as f64 / self.commits.len().max(1) as f64
        );
        println!(
            "     HTTP over loopback (the fake rendering JSON, reqwest): {} requests, {:.0} MB of JSON  {:>6.1} s  {:>4.1}%",
            group(self.served.requests),
            self.served.bytes as f64 / 1e6,
            http_s,
            share(http_s)
        );
        println!(
            "     Postgres commits (Store::commit through StoreSink)                      {:>6.1} s  {:>4.1}%   median {:.1} ms, p99 {:.1} ms per commit; {} events/s on their own{}",
            self.sink_s,
            share(self.sink_s),
            median(&self.commits),
            percentile(&self.commits, 99.0),
            group((self.events as f64 / self.sink_s) as u64),
            if self.overlap { "; in a task beside the reading, overlapping the rows above and below" } else { "" }
        );
        println!(
            "     the rest (instantiation, guest parsing, lift, validation + HMAC, glue{})  {:>6.1} s  {:>4.1}%",
            if self.overlap { ", waiting for a commit to land" } else { "" },
            rest_s,
            share(rest_s)
        );
        if let Some(cpu) = self.cpu {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            println!(
                "     this process used {:.1} s of CPU in those {wall:.1} s ({:.2} of {cpus} CPUs, the fake CRM's rendering included; Postgres runs on the same CPUs)",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() / wall
            );
        }
    }
}

/// Prints the resident set during the sync and whether it stayed flat.
fn report_memory(samples: &[Sample], events: u64, before_kb: u64) {
    // The sampler's last sample is taken once the sync has returned (its instance freed).
    let Some((after, during)) = samples.split_last() else {
        println!("   memory: no samples");
        return;
    };
    let low = during.iter().map(|s| s.rss_kb).min().unwrap_or(after.rss_kb);
    let high = during.iter().map(|s| s.rss_kb).max().unwrap_or(after.rss_kb);
    println!(
        "   memory (VmRSS every {} ms, {} samples during the sync): {:.0} MB before it (the fake CRM included); during it min {:.0} MB, max {:.0} MB; {:.0} MB once it returned",
        SAMPLE_EVERY.as_millis(),
        during.len(),
        mib(before_kb),
        mib(low),
        mib(high),
        mib(after.rss_kb)
    );
    let warm = (events as f64 * WARM_UP_SHARE).ceil() as u64;
    let window: Vec<&Sample> = during.iter().filter(|s| s.progress >= warm).collect();
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        println!("     too few samples after the first {:.0}% of the events to judge", WARM_UP_SHARE * 100.0);
        return;
    };
    let w_min = window.iter().map(|s| s.rss_kb).min().unwrap_or(0);
    let w_max = window.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let growth = mib(w_max.saturating_sub(first.rss_kb));
    let span = last.progress.saturating_sub(first.progress).max(1);
    println!(
        "     after the first {:.0}% of the events ({} samples, {:.1} s, {} events): first {:.1} MB, last {:.1} MB, min {:.1} MB, max {:.1} MB; growth (max - first) {:.1} MB = {:.1} bytes per event",
        WARM_UP_SHARE * 100.0,
        window.len(),
        last.at.saturating_sub(first.at).as_secs_f64(),
        group(span),
        mib(first.rss_kb),
        mib(last.rss_kb),
        mib(w_min),
        mib(w_max),
        growth,
        growth * 1024.0 * 1024.0 / span as f64
    );
    let by_tenth: Vec<String> = (1..=10)
        .map(|tenth| {
            let mark = events * tenth / 10;
            let rss = during.iter().find(|s| s.progress >= mark).or(during.last()).map_or(0, |s| s.rss_kb);
            format!("{}% {:.0}", tenth * 10, mib(rss))
        })
        .collect();
    println!("     MB by events committed: {}", by_tenth.join(", "));
    println!(
        "     once the sync returned and its instance was freed: {:+.1} MB against the first sample after {:.0}% (growth that lived in the sandbox instance, i.e. the guest's linear memory, is given back here)",
        mib(after.rss_kb) - mib(first.rss_kb),
        WARM_UP_SHARE * 100.0
    );
    println!(
        "   goal: memory flat while the run streams (growth after the first {:.0}% under {FLAT_TOLERANCE_MIB:.0} MB) -> {}",
        WARM_UP_SHARE * 100.0,
        verdict(
            growth <= FLAT_TOLERANCE_MIB,
            &format!("+{growth:.1} MB, {:.1} bytes per event", growth * 1024.0 * 1024.0 / span as f64)
        )
    );
}

/// How many deals and activities make about the requested number of events.
struct Plan {
    deals: usize,
    activities: usize,
}

impl Plan {
    /// Half the events from won deals, half from done calls and meetings, at the rates a
    /// sample of the same generator shows.
    fn for_events(events: u64, seed: u64, users: usize) -> Self {
        let n = CALIBRATION_RECORDS;
        let sample = Expected::of(&Crm::new(Dataset::generate(seed, users, n, n), TOKEN));
        let per_deal = (2 * sample.won).max(1) as f64 / n as f64;
        let per_activity = (sample.calls + sample.meetings).max(1) as f64 / n as f64;
        let half = events as f64 / 2.0;
        Plan { deals: (half / per_deal).ceil() as usize, activities: (half / per_activity).ceil() as usize }
    }
}

/// What a correct first sync of a fake CRM emits.
struct Expected {
    won: u64,
    calls: u64,
    meetings: u64,
}

impl Expected {
    fn of(crm: &Crm) -> Self {
        let totals = crm.expected_totals();
        Expected {
            won: totals.values().map(|t| t.deals_won).sum(),
            calls: totals.values().map(|t| t.calls).sum(),
            meetings: totals.values().map(|t| t.meetings).sum(),
        }
    }

    /// `deals_won` and `revenue` per won deal, one fact per done call or meeting.
    fn events(&self) -> u64 {
        2 * self.won + self.calls + self.meetings
    }
}

/// The tenant, its integration and the claimed run.
struct Setup {
    tenant: TenantId,
    users: usize,
    config: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    tenant_key: oneup::ingest::TenantKey,
}

impl Setup {
    /// Creates the tenant (its admin has the e-mail of the first CRM user, a member that of
    /// the second) and enables Pipedrive against `base_url`.
    async fn create(
        store: &Store,
        connector: &LoadedConnector,
        base_url: &str,
        crm_users: &[String],
    ) -> anyhow::Result<Self> {
        let eur = Currency::parse("EUR").context("EUR")?;
        let admin_email = crm_users.first().map_or("bench-admin@example.com", String::as_str);
        let created = store
            .create_tenant(&NewTenant {
                name: "Bench Sales",
                timezone: "UTC",
                currency: eur,
                admin_name: "Bench Admin",
                admin_email,
            })
            .await?;
        let tenant = created.tenant.id;
        let mut users = 1;
        if let Some(email) = crm_users.get(1) {
            store.create_user(tenant, &NewUser { name: "Bench Member", email, role: Role::Member }).await?;
            users += 1;
        }
        let mut rates = Vec::new();
        for (code, rate) in [("USD", "0.92"), ("GBP", "1.17"), ("SEK", "0.087")] {
            rates.push((Currency::parse(code).context("currency")?, FxRate::parse(rate)?));
        }
        store.set_fx_rates(tenant, &rates).await?;

        let config = BTreeMap::from([("base_url".to_owned(), base_url.to_owned())]);
        let secrets = Secrets::new(BTreeMap::from([("api_token".to_owned(), TOKEN.to_owned())]));
        let metrics: Vec<String> = connector.manifest().metrics.iter().map(|m| m.slug.clone()).collect();
        store
            .enable_integration(
                tenant,
                &EnableIntegration {
                    connector_id: CONNECTOR,
                    config: &config,
                    secrets: &secrets,
                    metrics: &metrics,
                    sync_interval_secs: 3600,
                    enabled_by: created.admin.id,
                    component_digest: None,
                    component_grants: None,
                },
            )
            .await?;

        // Read back what the scheduler would read: the stored config, the sealed secrets, the key.
        let integration = store.integration(tenant, CONNECTOR).await?;
        let secrets = store.integration_secrets(tenant, CONNECTOR).await?.into_inner();
        let tenant_key = store.tenant_key(tenant).await?;
        Ok(Setup { tenant, users, config: integration.config, secrets, tenant_key })
    }

    /// Queues a run of the integration and claims it, for its lease.
    async fn claim(&self, store: &Store) -> anyhow::Result<Lease> {
        let run = store.queue_run(self.tenant, CONNECTOR).await?;
        let lease = store
            .claim_run("oneup-bench", Duration::from_secs(3600))
            .await?
            .context("the queued run could not be claimed")?;
        ensure!(lease.run_id == run, "claimed another run than the one queued");
        Ok(lease)
    }

    /// The integration as the runtime takes it.
    fn integration(&self) -> IntegrationSetup {
        IntegrationSetup {
            config: self.config.clone(),
            secrets: self.secrets.clone(),
            tenant_key: self.tenant_key.clone(),
            debug: None,
            vault: None,
            timezone: oneup::runtime::TimeZone::UTC,
        }
    }

    /// Maps CRM owners to users by e-mail from the connector's roster, as the scheduler
    /// does before a sync; returns how many were mapped.
    async fn map_owners(&self, store: &Store, runtime: &Runtime, connector: &LoadedConnector) -> anyhow::Result<usize> {
        let roster =
            runtime.roster(connector, self.integration()).await.map_err(|e| anyhow::anyhow!("roster failed: {e}"))?;
        let users = store.users(self.tenant).await?;
        let by_email: BTreeMap<String, _> = users.iter().map(|u| (normalize_email(&u.email), u.id)).collect();
        let mappings: Vec<_> = roster.iter().filter_map(|r| by_email.get(&r.email).map(|u| (r.owner, *u))).collect();
        if !mappings.is_empty() {
            store.map_owners(self.tenant, CONNECTOR, &mappings).await?;
        }
        Ok(mappings.len())
    }
}

/// What the timed sink saw, shared with the memory sampler.
#[derive(Default)]
struct Progress {
    /// Events committed so far.
    events: Arc<AtomicU64>,
    /// Nanoseconds spent committing.
    nanos: AtomicU64,
    /// Each commit's duration, in milliseconds.
    commits: Mutex<Vec<f64>>,
}

impl Progress {
    fn commits_ms(&self) -> Vec<f64> {
        self.commits.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The scheduler's `StoreSink`, timed.
struct TimedSink {
    inner: StoreSink,
    progress: Arc<Progress>,
}

impl SyncSink for TimedSink {
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        snapshots: Vec<Snapshot>,
        cursor: Option<&'a Cursor>,
        stats: &'a SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let n = changes.len() as u64;
            let started = Instant::now();
            self.inner.commit(changes, snapshots, cursor, stats).await?;
            let elapsed = started.elapsed();
            self.progress.nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
            self.progress.events.fetch_add(n, Ordering::Relaxed);
            if let Ok(mut commits) = self.progress.commits.lock() {
                commits.push(ms(elapsed));
            }
            Ok(())
        })
    }
}

/// Requests, bytes and time a transport served since the last `take`.
#[derive(Debug, Clone, Copy, Default)]
struct Served {
    requests: u64,
    bytes: u64,
    nanos: u64,
}

/// The production transport, timed.
struct TimedTransport {
    inner: ReqwestTransport,
    requests: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl TimedTransport {
    fn new(inner: ReqwestTransport) -> Self {
        TimedTransport { inner, requests: AtomicU64::new(0), bytes: AtomicU64::new(0), nanos: AtomicU64::new(0) }
    }

    fn take(&self) -> Served {
        Served {
            requests: self.requests.swap(0, Ordering::Relaxed),
            bytes: self.bytes.swap(0, Ordering::Relaxed),
            nanos: self.nanos.swap(0, Ordering::Relaxed),
        }
    }
}

impl Transport for TimedTransport {
    fn send<'a>(
        &'a self,
        url: &'a Url,
        headers: &'a HeaderMap,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(async move {
            let started = Instant::now();
            let fetched = self.inner.send(url, headers, max_body).await;
            self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.requests.fetch_add(1, Ordering::Relaxed);
            if let Ok(f) = &fetched {
                self.bytes.fetch_add(f.body.len() as u64, Ordering::Relaxed);
            }
            fetched
        })
    }
}

/// The timed raw `COPY`.
struct RawCopy {
    elapsed: Duration,
    bytes: usize,
    checkpointed: bool,
}

/// Reads `facts` back as `COPY` text, truncates it, and times `COPY … FROM STDIN` of the
/// same text on one connection (autocommit: the time includes the commit).
async fn raw_copy(conn: &mut PgConnection, rows: u64) -> anyhow::Result<RawCopy> {
    let mut data = Vec::new();
    {
        let mut stream = conn.copy_out_raw(&format!("COPY (SELECT {FACT_COLUMNS} FROM facts) TO STDOUT")).await?;
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?);
        }
    }
    sqlx::query("TRUNCATE facts").execute(&mut *conn).await?;
    let checkpointed = checkpoint(conn).await;

    let started = Instant::now();
    let mut copy = conn.copy_in_raw(&format!("COPY facts ({FACT_COLUMNS}) FROM STDIN")).await?;
    for chunk in data.chunks(COPY_CHUNK) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    let elapsed = started.elapsed();
    ensure!(copied == rows, "COPY wrote {copied} rows, expected {rows}");
    Ok(RawCopy { elapsed, bytes: data.len(), checkpointed })
}

/// `CHECKPOINT`, so that a timed phase does not pay for the previous one's dirty pages;
/// false if the server refused (the user is not a superuser).
async fn checkpoint(conn: &mut PgConnection) -> bool {
    sqlx::query("CHECKPOINT").execute(conn).await.is_ok()
}

/// The URL with its password hidden.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable database url>".to_owned(),
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands_and_hides_passwords() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }
}
