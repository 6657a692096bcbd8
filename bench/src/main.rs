//! `oneup-bench`: the speed figures of issues 2 and 3, measured side by side in one run.
//!
//! Run it through `cargo xtask bench`, which builds the connector component and calls
//! `cargo run --release -p oneup-bench -- --wasm <oneup_connector_pipedrive.wasm> --deals N`.
//!
//! 1. **Instantiation.** The one-off `Runtime::load` (compile, then a compile-cache hit), then
//!    many `Runtime::probe` calls: a fresh `Store` and `WasiCtx` and an instance from the
//!    component's `InstancePre` with the pooling allocator, the per-sync fixed cost. Median
//!    and p99 against the 50 µs goal.
//! 2. **Throughput.** A fake Pipedrive with `--deals` deals is rendered once into memory
//!    (see [`crm`]), then the same connector code parses it natively (`testing::run_sync`
//!    over a `FakeHost`) and inside the sandbox (`Runtime::sync` over an in-memory
//!    `Transport`, into a sink that counts and discards), in interleaved repetitions. Events
//!    per second on each side, the sandbox/native ratio against the 1.5× goal, and the host's
//!    own boundary work (lifting, validation, HMAC; see [`boundary`]) timed natively beside
//!    it, so the reader can see how much of the sandbox's time is the boundary's.
//! 3. **Memory.** The process's peak RSS.
//! 4. **End to end into Postgres** (see [`e2e`]). A fake Pipedrive serving about
//!    `--e2e-events` changes over loopback HTTP, synced through the sandbox into Postgres
//!    (`DATABASE_URL`, a fresh database) by the scheduler's `StoreSink` under a claimed
//!    run's lease, beside raw `COPY` of the same rows into the same table: events per
//!    second, the ratio against the 0.5 goal, and the resident set sampled during the
//!    sync. Skipped, saying why, when Postgres does not answer. Sections 1 to 3 run on a
//!    current-thread Tokio runtime, section 4 on a multi-threaded one, as `oneup serve`.
//!
//! 5. **Contest standings** (see [`standings`]). The real `oneup serve` on a fresh Postgres
//!    database, a tenant of 10 000 users mapped by a real sync from a fake Pipedrive, then
//!    `--standings-facts` facts by raw `COPY`: a leaderboard contest of the 10 000 is
//!    created, its leaderboard read over loopback HTTP (p50, p99 against 10 ms), and the
//!    time from an ingested commit to the live stream's `standing` event measured (against
//!    1 s). Skipped like section 4 without Postgres, or without the `oneup` binary.
//!
//! The machines are shared and noisy: every figure is a median over repetitions, and the
//! ratios are taken within the same run.

mod boundary;
mod crm;
mod e2e;
mod proc;
mod standings;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use oneup::ingest::{Change, Cursor};
use oneup::runtime::{BoxFuture, IntegrationSetup, LoadedConnector, Runtime, RuntimeConfig, SyncOutcome, SyncSink};
use oneup_connector_pipedrive::{DEALS_READ, Pipedrive, SYNC_SUMMARY};
use oneup_connector_sdk::testing::run_sync;
use oneup_fake_crm::pipedrive::{Crm, Dataset};

use crate::boundary::{Batches, time_boundary};
use crate::crm::{BASE_URL, MemoryTransport, Recording, RecordingSummary, TOKEN};
use crate::stats::{mean, median, min, ms, percentile, us};

/// The instantiation goal: a fresh instance per sync in under this many microseconds.
const INSTANTIATION_GOAL_US: f64 = 50.0;

/// The throughput goal: the sandbox at most this many times slower than native.
const RATIO_GOAL: f64 = 1.5;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Times sandbox instantiation and the Pipedrive connector, sandboxed versus native")]
struct Args {
    /// The Pipedrive connector component (`oneup_connector_pipedrive.wasm`).
    #[arg(long)]
    wasm: PathBuf,
    /// Deals in the fake Pipedrive.
    #[arg(long, default_value_t = 100_000)]
    deals: usize,
    /// CRM users the deals are spread over.
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Timed repetitions of each throughput side (interleaved, after one warm-up each).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Timed `probe` calls (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 2000)]
    probes: usize,
    /// Seed of the fake dataset.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Runs only this side of the throughput comparison, `--reps` times, and prints its
    /// timings: for profiling one side with `perf record`.
    #[arg(long, value_enum)]
    only: Option<Side>,
    /// Keeps compiled components in this directory (default: a temporary one, removed at
    /// the end), e.g. so that `perf report` can still read the compiled guest code.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Changes the fake CRM's first sync emits, about, in the end-to-end section (the real
    /// count is printed); 0 skips that section.
    #[arg(long, default_value_t = 1_000_000)]
    e2e_events: u64,
    /// Skips the end-to-end runs under the earlier commit policies (a commit at every
    /// checkpoint; coalesced commits without overlap) that give the before/after figures.
    #[arg(long)]
    e2e_skip_before: bool,
    /// Runs only the end-to-end section.
    #[arg(long, conflicts_with = "only")]
    e2e_only: bool,
    /// Facts loaded by raw `COPY` before the contest of the standings section is created;
    /// 0 skips that section.
    #[arg(long, default_value_t = 10_000_000)]
    standings_facts: u64,
    /// Timed leaderboard reads in the standings section (fewer if they take over 2 minutes).
    #[arg(long, default_value_t = 300)]
    standings_reads: usize,
    /// Edits timed from commit to push in the standings section (fewer past 5 minutes).
    #[arg(long, default_value_t = 10)]
    standings_pushes: usize,
    /// Runs only the standings section.
    #[arg(long, conflicts_with_all = ["only", "e2e_only"])]
    standings_only: bool,
    /// The `oneup` binary the standings section serves with (default: the `oneup` next to
    /// this executable, which `cargo xtask bench` builds).
    #[arg(long)]
    oneup_bin: Option<PathBuf>,
    /// The Postgres server of the end-to-end and standings sections; its user must be
    /// allowed to create databases (a fresh one is created and dropped).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
}

/// One side of the throughput comparison.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The connector compiled natively, over `FakeHost`.
    Native,
    /// The connector component in the host's sandbox.
    Sandbox,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.reps > 0 && args.probes > 0, "--reps and --probes must be at least 1");
    let wasm = std::fs::read(&args.wasm).with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let temporary = args.cache_dir.is_none();
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("oneup-bench-{}", std::process::id())));
    let result = run_sections(&args, &wasm, &cache_dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&cache_dir);
    }
    result
}

/// Sections 1 to 3 (or one side alone with `--only`) on a current-thread runtime, then
/// sections 4 and 5 on a multi-threaded one.
fn run_sections(args: &Args, wasm: &[u8], cache_dir: &Path) -> anyhow::Result<()> {
    if !args.e2e_only && !args.standings_only {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        tokio.block_on(run(args, wasm, cache_dir))?;
    }
    if args.only.is_some() {
        return Ok(());
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if !args.standings_only {
        if args.e2e_events == 0 {
            println!();
            println!("4. End to end into Postgres: skipped (--e2e-events 0)");
        } else {
            tokio.block_on(e2e::section(&e2e::Options {
                wasm,
                cache_dir,
                database_url: &args.database_url,
                events: args.e2e_events,
                before: !args.e2e_skip_before,
                seed: args.seed,
                users: args.users,
            }))?;
        }
    }
    if args.e2e_only {
        return Ok(());
    }
    if args.standings_facts == 0 {
        println!();
        println!("5. Contest standings: skipped (--standings-facts 0)");
        return Ok(());
    }
    let oneup_bin = match &args.oneup_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot locate this executable")?
            .with_file_name(format!("oneup{}", std::env::consts::EXE_SUFFIX)),
    };
    tokio.block_on(standings::section(&standings::Options {
        wasm,
        cache_dir,
        database_url: &args.database_url,
        oneup_bin: &oneup_bin,
        facts: args.standings_facts,
        reads: args.standings_reads,
        pushes: args.standings_pushes,
        seed: args.seed,
    }))
}

async fn run(args: &Args, wasm: &[u8], cache_dir: &Path) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("oneup bench: Pipedrive connector, sandbox (wasmtime) vs native, in one run");
    println!(
        "  component {} ({:.1} KB); {} CPUs available; medians over {} interleaved repetitions",
        args.wasm.display(),
        wasm.len() as f64 / 1024.0,
        cpus,
        args.reps
    );

    // The fake CRM, rendered once: both sides then read the same bytes from memory.
    let started = Instant::now();
    let dataset = Dataset::generate(args.seed, args.users, args.deals, 0);
    let generated = started.elapsed();
    let started = Instant::now();
    let (recording, recorded) = Recording::record(Crm::new(dataset, TOKEN))?;
    let rendered = started.elapsed();

    let transport = Arc::new(MemoryTransport::new(recording.clone()));
    let config = RuntimeConfig { cache_dir: Some(cache_dir.to_owned()), ..RuntimeConfig::default() };
    let runtime = Runtime::with_transport(config, transport.clone())?;
    let fixture = Fixture { runtime, recording, transport, generated, rendered, recorded };
    match args.only {
        None => measure(args, wasm, &fixture).await,
        Some(side) => profile(args, wasm, &fixture, side).await,
    }
}

/// The fake CRM, recorded, and the runtime that serves it to the sandbox.
struct Fixture {
    runtime: Runtime,
    recording: Arc<Recording>,
    transport: Arc<MemoryTransport>,
    /// Time to generate the dataset.
    generated: Duration,
    /// Time to render and record every answer once.
    rendered: Duration,
    recorded: RecordingSummary,
}

async fn measure(args: &Args, wasm: &[u8], fixture: &Fixture) -> anyhow::Result<()> {
    let Fixture { runtime, recording, transport, generated, rendered, recorded } = fixture;
    let (generated, rendered) = (*generated, *rendered);
    // ---- 1. instantiation -------------------------------------------------------------
    println!();
    println!("1. Instantiation per sync (fresh Store + WasiCtx + instance from InstancePre, pooling allocator)");
    let started = Instant::now();
    runtime.load(wasm).await.context("loading the component (compile) failed")?;
    let compile = started.elapsed();
    let started = Instant::now();
    let connector = runtime.load(wasm).await.context("loading the component (cache hit) failed")?;
    let cache_hit = started.elapsed();
    println!(
        "   one-off load: {:.1} ms compiling (+ describe, cache write), {:.2} ms from the compile cache",
        ms(compile),
        ms(cache_hit)
    );

    for _ in 0..(args.probes / 10).max(10) {
        runtime.probe(&connector).await.map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
    }
    let mut probes = Vec::with_capacity(args.probes);
    for _ in 0..args.probes {
        let started = Instant::now();
        runtime.probe(&connector).await.map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
        probes.push(us(started.elapsed()));
    }
    let probe_median = median(&probes);
    println!(
        "   probe x {}: median {:.1} µs, p99 {:.1} µs (min {:.1}, mean {:.1})",
        args.probes,
        probe_median,
        percentile(&probes, 99.0),
        min(&probes),
        mean(&probes)
    );
    println!(
        "   goal: under {INSTANTIATION_GOAL_US:.0} µs per instantiation (median) -> {}",
        verdict(probe_median < INSTANTIATION_GOAL_US, &format!("{probe_median:.1} µs"))
    );

    // ---- 2. throughput ----------------------------------------------------------------
    println!();
    println!("2. Throughput: the Pipedrive connector parsing deals from memory, sandbox vs native");
    println!(
        "   fake Pipedrive: {} deals, {} users, 0 activities; generated in {:.0} ms, rendered once in {:.0} ms",
        args.deals,
        args.users,
        ms(generated),
        ms(rendered)
    );
    println!(
        "   recorded: {} requests, {:.1} MB of JSON (largest page {:.0} KB); both sides serve these bytes",
        recorded.requests,
        recorded.body_bytes as f64 / 1e6,
        recorded.largest_body as f64 / 1024.0
    );

    let (shape, batches) = sync_shape_and_batches(recording)?;
    println!(
        "   one sync: {} requests, {} deals read, {} changes emitted in {} batches, {} checkpoints (one per page)",
        shape.requests, shape.deals_read, shape.changes, shape.batches, shape.checkpoints
    );

    // Warm-up, then interleaved repetitions (alternating which side goes first).
    native_sync(recording, &shape)?;
    sandbox_sync(runtime, &connector, sandbox_setup(), transport, &shape).await?;
    recording.take_misses();

    let mut native = Vec::with_capacity(args.reps);
    let mut sandbox: Vec<SandboxRun> = Vec::with_capacity(args.reps);
    let mut native_misses = 0;
    let mut sandbox_misses = 0;
    for rep in 0..args.reps {
        if rep % 2 == 0 {
            native.push(native_sync(recording, &shape)?);
            native_misses += recording.take_misses();
            sandbox.push(sandbox_sync(runtime, &connector, sandbox_setup(), transport, &shape).await?);
            sandbox_misses += recording.take_misses();
        } else {
            sandbox.push(sandbox_sync(runtime, &connector, sandbox_setup(), transport, &shape).await?);
            sandbox_misses += recording.take_misses();
            native.push(native_sync(recording, &shape)?);
            native_misses += recording.take_misses();
        }
    }

    // The host's boundary work over the same batches, natively.
    let mut boundary = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let timing = time_boundary(&batches, connector.manifest().vocabulary(), &connector.manifest().id);
        ensure!(
            timing.accepted == batches.changes(),
            "the validator accepted {} of {} changes",
            timing.accepted,
            batches.changes()
        );
        boundary.push(timing);
    }

    println!("   rep   native ms   sandbox ms   ratio   (sandbox: in transport ms, in sink ms)");
    let native_ms: Vec<f64> = native.iter().map(|d| ms(*d)).collect();
    let sandbox_ms: Vec<f64> = sandbox.iter().map(|r| ms(r.total)).collect();
    let ratios: Vec<f64> = native_ms.iter().zip(&sandbox_ms).map(|(n, s)| s / n).collect();
    for rep in 0..args.reps {
        println!(
            "   {:>3}   {:>9.1}   {:>10.1}   {:>4.2}x   ({:.1}, {:.1})",
            rep + 1,
            native_ms[rep],
            sandbox_ms[rep],
            ratios[rep],
            sandbox[rep].transport_ms,
            sandbox[rep].sink_ms
        );
    }
    let native_med = median(&native_ms);
    let sandbox_med = median(&sandbox_ms);
    let ratio = median(&ratios);
    let rate = |ms: f64, n: u64| n as f64 / (ms / 1e3);
    println!(
        "   native : median {:>7.1} ms = {:>9.0} events/s, {:>9.0} deals/s, {:>6.1} MB/s of JSON",
        native_med,
        rate(native_med, shape.changes),
        rate(native_med, shape.deals_read),
        recorded.body_bytes as f64 / 1e6 / (native_med / 1e3)
    );
    println!(
        "   sandbox: median {:>7.1} ms = {:>9.0} events/s, {:>9.0} deals/s, {:>6.1} MB/s of JSON",
        sandbox_med,
        rate(sandbox_med, shape.changes),
        rate(sandbox_med, shape.deals_read),
        recorded.body_bytes as f64 / 1e6 / (sandbox_med / 1e3)
    );
    println!(
        "   sandbox/native: {:.2}x (median of the paired ratios; ratio of the medians {:.2}x)",
        ratio,
        sandbox_med / native_med
    );
    println!(
        "   goal: sandbox within {RATIO_GOAL}x of native -> {}",
        verdict(ratio <= RATIO_GOAL, &format!("{ratio:.2}x"))
    );
    if ratio > RATIO_GOAL {
        let target = native_med * RATIO_GOAL;
        println!(
            "         {:.0}% over the goal: the sandbox needs {:.1} ms per sync, {:.1} ms less than now",
            (ratio / RATIO_GOAL - 1.0) * 100.0,
            target,
            sandbox_med - target
        );
    }

    let lift_med = median(&boundary.iter().map(|b| ms(b.lift)).collect::<Vec<_>>());
    let validate_med = median(&boundary.iter().map(|b| ms(b.validate)).collect::<Vec<_>>());
    let transport_med = median(&sandbox.iter().map(|r| r.transport_ms).collect::<Vec<_>>());
    let sink_med = median(&sandbox.iter().map(|r| r.sink_ms).collect::<Vec<_>>());
    let host_work = lift_med + validate_med + transport_med + sink_med;
    let share = |x: f64| x / sandbox_med * 100.0;
    println!("   of the sandbox's median, the host's own work at the boundary (natively timed, medians):");
    println!(
        "     building {} raw changes (lift allocations)       {:>6.1} ms  {:>4.1}%",
        batches.changes(),
        lift_med,
        share(lift_med)
    );
    println!(
        "     validate + HMAC (Validator::validate_batch)       {:>6.1} ms  {:>4.1}%   {:.0} events/s",
        validate_med,
        share(validate_med),
        rate(validate_med, shape.changes)
    );
    println!(
        "     transport: {:.1} MB of bodies copied out of memory    {:>6.1} ms  {:>4.1}%",
        sandbox.first().map_or(0, |r| r.transport_bytes) as f64 / 1e6,
        transport_med,
        share(transport_med)
    );
    println!(
        "     sink: {} commits, changes dropped                  {:>6.1} ms  {:>4.1}%",
        sandbox.first().map_or(0, |r| r.commits),
        sink_med,
        share(sink_med)
    );
    println!(
        "     without that work the sandbox would take ~{:.1} ms: ~{:.2}x native (guest code, copies into and out of linear memory, instantiation, async plumbing)",
        sandbox_med - host_work,
        (sandbox_med - host_work) / native_med
    );
    println!(
        "   (native counts the same changes through FakeHost's own contract checks, which neither hash nor allocate; requests not in the recording, rendered live: native {native_misses}, sandbox {sandbox_misses})"
    );

    // ---- 3. memory --------------------------------------------------------------------
    println!();
    match proc::peak_rss_kb() {
        Some(kb) => println!(
            "3. Peak RSS of this process (VmHWM): {:.1} MB (the fake CRM's dataset and {:.1} MB of recorded JSON included)",
            kb as f64 / 1024.0,
            recorded.body_bytes as f64 / 1e6
        ),
        None => println!("3. Peak RSS: unavailable (no /proc/self/status)"),
    }
    Ok(())
}

/// Runs one side alone `--reps` times (after a warm-up) and prints each sync's time.
async fn profile(args: &Args, wasm: &[u8], fixture: &Fixture, side: Side) -> anyhow::Result<()> {
    let Fixture { runtime, recording, transport, .. } = fixture;
    let connector = runtime.load(wasm).await.context("loading the component failed")?;
    let shape = sync_shape(recording)?;
    let mut times = Vec::with_capacity(args.reps);
    for rep in 0..=args.reps {
        let elapsed = match side {
            Side::Native => native_sync(recording, &shape)?,
            Side::Sandbox => sandbox_sync(runtime, &connector, sandbox_setup(), transport, &shape).await?.total,
        };
        if rep > 0 {
            times.push(ms(elapsed));
        }
    }
    println!(
        "{side:?} only, {} syncs of {} changes: median {:.1} ms ({times:.1?})",
        args.reps,
        shape.changes,
        median(&times)
    );
    Ok(())
}

/// The integration the sandboxed syncs run as.
fn sandbox_setup() -> IntegrationSetup {
    IntegrationSetup {
        config: BTreeMap::from([("base_url".to_owned(), BASE_URL.to_owned())]),
        secrets: BTreeMap::from([("api_token".to_owned(), TOKEN.to_owned())]),
        tenant_key: oneup::ingest::TenantKey::from_bytes([0x5a; 32]),
        debug: None,
        timezone: oneup::runtime::TimeZone::UTC,
        vault: None,
    }
}

/// What one sync looks like, from the reference native run; every timed run must match it.
struct Shape {
    deals_read: u64,
    changes: u64,
    batches: usize,
    checkpoints: usize,
    requests: usize,
}

/// The shape of one sync, from a native run that keeps its changes.
fn sync_shape(recording: &Arc<Recording>) -> anyhow::Result<Shape> {
    sync_shape_and_batches(recording).map(|(shape, _)| shape)
}

/// The shape of one sync and the batches it emitted, from a native run that keeps them.
fn sync_shape_and_batches(recording: &Arc<Recording>) -> anyhow::Result<(Shape, Batches)> {
    let mut host = recording.fake_host(true);
    let outcome = run_sync(Pipedrive, &mut host, None);
    ensure!(outcome == Ok(oneup_connector_sdk::SyncOutcome::Complete), "the native sync failed: {outcome:?}");
    ensure!(host.dropped().is_empty(), "the native host dropped {} changes", host.dropped().len());
    let batches = Batches::new(host.changes(), host.batch_sizes())?;
    let deals_read = host
        .logs()
        .iter()
        .filter(|l| l.code == SYNC_SUMMARY)
        .flat_map(|l| l.fields.iter())
        .find(|(name, _)| name == DEALS_READ)
        .map(|(_, n)| *n as u64)
        .context("the connector logged no deals_read")?;
    let shape = Shape {
        deals_read,
        changes: host.change_count(),
        batches: host.batch_sizes().len(),
        checkpoints: host.checkpoints().len(),
        requests: host.requests().len(),
    };
    drop(host);
    recording.take_misses();
    Ok((shape, batches))
}

/// One native sync over the recording, timed.
fn native_sync(recording: &Arc<Recording>, shape: &Shape) -> anyhow::Result<Duration> {
    let mut host = recording.fake_host(false);
    let started = Instant::now();
    let outcome = run_sync(Pipedrive, &mut host, None);
    let elapsed = started.elapsed();
    ensure!(outcome == Ok(oneup_connector_sdk::SyncOutcome::Complete), "the native sync failed: {outcome:?}");
    ensure!(host.violations().is_empty(), "the native sync broke the contract: {:?}", host.violations());
    ensure!(
        host.change_count() == shape.changes,
        "the native sync emitted {} changes, expected {}",
        host.change_count(),
        shape.changes
    );
    Ok(elapsed)
}

/// One sandboxed sync and what the host spent outside the guest.
struct SandboxRun {
    total: Duration,
    transport_ms: f64,
    sink_ms: f64,
    commits: u64,
    /// Body bytes the transport copied out.
    transport_bytes: u64,
}

/// One sandboxed sync over the recording, timed; it must emit what the native run emitted.
async fn sandbox_sync(
    runtime: &Runtime,
    connector: &LoadedConnector,
    setup: IntegrationSetup,
    transport: &MemoryTransport,
    shape: &Shape,
) -> anyhow::Result<SandboxRun> {
    let counters = Arc::new(SinkCounters::default());
    let sink = Box::new(CountingSink(counters.clone()));
    transport.take();
    let started = Instant::now();
    let report = runtime.sync(connector, setup, None, sink).await;
    let total = started.elapsed();
    let served = transport.take();
    match report.result {
        Ok(SyncOutcome::Complete) => {}
        other => bail!("the sandboxed sync did not complete: {other:?}"),
    }
    let stats = report.stats;
    let emitted = stats.accepted() + stats.rejected_total();
    if emitted != shape.changes || stats.committed != shape.changes {
        bail!(
            "the sandbox and native runs disagree: native emitted {} changes, the sandbox {} ({} committed, rejected {:?})",
            shape.changes,
            emitted,
            stats.committed,
            stats.rejected
        );
    }
    let committed = counters.changes.load(Ordering::Relaxed);
    ensure!(committed == shape.changes, "the sink received {committed} changes, expected {}", shape.changes);
    ensure!(
        served.requests as usize == shape.requests,
        "the sandbox made {} requests, native {}",
        served.requests,
        shape.requests
    );
    Ok(SandboxRun {
        total,
        transport_ms: served.nanos as f64 / 1e6,
        sink_ms: counters.nanos.load(Ordering::Relaxed) as f64 / 1e6,
        commits: counters.commits.load(Ordering::Relaxed),
        transport_bytes: served.bytes,
    })
}

/// What the counting sink saw.
#[derive(Default)]
struct SinkCounters {
    changes: AtomicU64,
    commits: AtomicU64,
    nanos: AtomicU64,
}

/// A sink that counts the validated changes and discards them.
struct CountingSink(Arc<SinkCounters>);

impl SyncSink for CountingSink {
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        _snapshots: Vec<oneup::ingest::Snapshot>,
        _cursor: Option<&'a Cursor>,
        _stats: &'a oneup::runtime::SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let started = Instant::now();
        let n = changes.len() as u64;
        drop(changes);
        self.0.changes.fetch_add(n, Ordering::Relaxed);
        self.0.commits.fetch_add(1, Ordering::Relaxed);
        self.0.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

/// "MET" or "MISSED", with the figure.
fn verdict(met: bool, figure: &str) -> String {
    if met { format!("MET ({figure})") } else { format!("MISSED ({figure})") }
}
