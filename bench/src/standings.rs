//! Section 5: contest standings, read and pushed, over 10 million facts on Postgres.
//!
//! The goal: a leaderboard contest of 10 000 participants over 10 million facts,
//! read in under 10 ms (p99), and one ingested batch shown in the live standing in under
//! 1 s from its commit to the server-sent event. Everything is reached the way a client
//! reaches it, over loopback HTTP, so the figures hold whatever the service does inside
//! (recompute per read, or stored standings maintained at ingestion).
//!
//! * **The service.** The real `oneup serve` binary (`--oneup-bin`, default: the `oneup`
//!   next to this executable, which `cargo xtask bench` builds in release), started on a
//!   free loopback port against a fresh Postgres database of `DATABASE_URL`, with the
//!   Pipedrive component in its connectors folder, loopback HTTP allowed
//!   (`ONEUP_DEV_ALLOW_LOOPBACK=1`) and the bench's compile cache. Its log goes to a
//!   scratch folder; the last lines are printed if the section fails. It is stopped
//!   (SIGTERM, then SIGKILL) and the database dropped at the end, also on failure.
//! * **The tenant, through the API.** `POST /v1/tenants`, 10 000 members by
//!   `POST /v1/users` (the API has no bulk route; eight requests in flight), exchange rates,
//!   and `PUT /v1/integrations/pipedrive` against a fake Pipedrive in this process whose
//!   roster holds the same 10 000 e-mails and a few thousand deals. One real sync
//!   (`POST …/sync?wait=true`) maps the 10 000 CRM owners to the users, as in production.
//! * **10 million facts by raw `COPY`.** `deals_won` facts of the mapped owners (their
//!   `owner_hash` read back from `owner_mappings`, one drawn at random per fact), distinct
//!   random source hashes, `occurred_at` spread over the contest's window, straight into
//!   `facts` with `COPY … FROM STDIN` before the contest exists; then `VACUUM ANALYZE`.
//!   The rows go in ascending order of source hash and time (each hash is random within its
//!   own slot), so both of the table's indexes are appended to: the load is then bounded by
//!   Postgres's parsing, not by random index pages, and takes a minute or two, not ten.
//!   Nothing of the service sees these rows arrive: standings kept at ingestion must be
//!   built from the facts when the contest is created, which is what the creation time shows.
//! * **Reads.** `POST /v1/contests` (timed) with the 10 000 users over the window, a check
//!   that the standing's values add up to the facts in the window (a standing that is fast
//!   but wrong is reported as such), then `GET /v1/contests/{id}/leaderboard` one after
//!   another on one keep-alive connection: a warm-up, then `--standings-reads` timed reads
//!   (to the last body byte), within a time budget so that a slow service still finishes.
//! * **Commit to push.** The live stream (`…/leaderboard/stream`, bearer token) is opened and
//!   its first `standing` awaited. Then, repeatedly: one deal of one participant is marked
//!   won (or lost again) in the fake Pipedrive, and `POST …/sync?wait=true` makes the real
//!   incremental sync; the time is taken from the commit of that sync's facts to the arrival
//!   of the first `standing` event whose entry for that participant shows the new value.
//!   The commit instant is observed, not guessed: a statement trigger on `facts`, added to
//!   the bench database for this phase only, calls `pg_notify`, which Postgres delivers to
//!   this process's `LISTEN` connection when the transaction commits (one notification per
//!   transaction). The first commit after the trigger is taken, which can only make the
//!   figure larger. Trigger to push (the CRM edit and the whole sync included) is printed
//!   as an upper bound, with the sync's own response time.
//! * **Cost.** The service's peak resident set (`VmHWM` of its process), this process's,
//!   the database's size and the section's wall time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use oneup::store::admin::{create_postgres_database, drop_postgres_database, unique_database_name};
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{Crm, Dataset, DatasetSpec, FakePipedrive, NewDeal};
use serde_json::{Value, json};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::crm::TOKEN;
use crate::e2e::group;
use crate::proc::{mib, peak_rss_kb};
use crate::stats::{median, ms, percentile};
use crate::verdict;

/// The read goal: p99 of `GET …/leaderboard` under this many milliseconds.
const READ_GOAL_MS: f64 = 10.0;
/// The push goal: from the commit to the `standing` event in under this many milliseconds.
const PUSH_GOAL_MS: f64 = 1000.0;
/// Participants of the contest (the API's maximum), users of the tenant and of the CRM.
const PARTICIPANTS: usize = 10_000;
/// Deals in the fake Pipedrive (its first sync is a real one, not a token one).
const CRM_DEALS: usize = 5_000;
/// The metric the contest ranks by, and the one the loaded facts are of.
const METRIC: &str = "deals_won";
/// The connector under test.
const CONNECTOR: &str = "pipedrive";
/// The contest's window: from this many days ago to one day ahead.
const WINDOW_DAYS: i64 = 30;
/// `POST /v1/users` requests in flight while the tenant is filled.
const USER_WORKERS: usize = 8;
/// Bytes per `CopyData` message of the load.
const COPY_CHUNK: usize = 1 << 20;
/// The channel the bench's trigger on `facts` notifies at every committed write.
const NOTIFY_CHANNEL: &str = "oneup_bench_facts_committed";
/// How long the service may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for Postgres to answer before skipping the section.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `POST …/sync?wait=true` may wait inside the service (its `--sync-wait-secs`),
/// and, with a margin, the request.
const SYNC_WAIT_SECS: u64 = 600;
/// Any other request (a read of a standing recomputed from ten million facts included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Warm-up reads: this many, or as many as fit in [`WARM_UP_BUDGET`] (at least one).
const WARM_UP_READS: usize = 20;
const WARM_UP_BUDGET: Duration = Duration::from_secs(15);
/// Timed reads stop at `--standings-reads` or when this budget is spent (at least
/// [`MIN_READS`] are made), so that a service taking seconds per read still finishes.
const READ_BUDGET: Duration = Duration::from_secs(120);
const MIN_READS: usize = 5;
/// How long the stream may take to deliver its first standing.
const FIRST_STANDING_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one edit may take to show in the stream, from its trigger.
const PUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Edits stop at `--standings-pushes` or when this budget is spent (at least
/// [`MIN_PUSHES`] are made).
const PUSH_BUDGET: Duration = Duration::from_secs(300);
const MIN_PUSHES: usize = 3;
/// A pause between two edits, so that one edit's coalesced recompute is over before the next.
const PUSH_PAUSE: Duration = Duration::from_millis(500);

/// What section 5 needs from the command line.
pub struct Options<'a> {
    /// The Pipedrive component, copied into the service's connectors folder.
    pub wasm: &'a [u8],
    /// The compile cache shared with the other sections (the service's `ONEUP_CACHE_DIR`).
    pub cache_dir: &'a Path,
    /// An administrative Postgres URL (its user may create databases).
    pub database_url: &'a str,
    /// The `oneup` binary to serve with.
    pub oneup_bin: &'a Path,
    /// Facts loaded by raw `COPY` before the contest is created.
    pub facts: u64,
    /// Timed leaderboard reads (at most; see [`READ_BUDGET`]).
    pub reads: usize,
    /// Edits timed from commit to push (at most; see [`PUSH_BUDGET`]).
    pub pushes: usize,
    /// Seed of the fake CRM and of the loaded facts.
    pub seed: u64,
}

/// Runs section 5 and prints it; skips it (printing why) when Postgres does not answer or
/// the `oneup` binary is missing.
pub async fn section(opts: &Options<'_>) -> anyhow::Result<()> {
    println!();
    println!(
        "5. Contest standings: {} participants over {} facts on Postgres, through `oneup serve` over loopback HTTP",
        group(PARTICIPANTS as u64),
        group(opts.facts)
    );
    let started = Instant::now();
    if !opts.oneup_bin.is_file() {
        println!(
            "   skipped: no oneup binary at {} (`cargo build --release -p oneup --bin oneup`, or pass --oneup-bin)",
            opts.oneup_bin.display()
        );
        return Ok(());
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(opts.database_url)).await {
        Err(_) => {
            println!(
                "   skipped: Postgres did not answer within {} s (set DATABASE_URL to a server whose user may create databases)",
                CONNECT_TIMEOUT.as_secs()
            );
            return Ok(());
        }
        Ok(Err(e)) => {
            println!(
                "   skipped: cannot connect to Postgres: {e} (set DATABASE_URL to a server whose user may create databases)"
            );
            return Ok(());
        }
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
    }
    let name = unique_database_name("oneup_bench_standings");
    let url = match create_postgres_database(opts.database_url, &name).await {
        Ok(url) => url,
        Err(e) => {
            println!("   skipped: cannot create a database: {e}");
            return Ok(());
        }
    };
    let scratch = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let result = with_service(opts, &url, &name, &scratch, started).await;
    let _ = std::fs::remove_dir_all(&scratch);
    match drop_postgres_database(opts.database_url, &name).await {
        Ok(()) => println!("   (database {name} dropped)"),
        Err(e) => eprintln!("warning: could not drop the bench database {name}: {e}"),
    }
    result
}

/// Starts the service on the fresh database, measures, and stops it (printing the end of
/// its log if something failed).
async fn with_service(
    opts: &Options<'_>,
    url: &str,
    name: &str,
    scratch: &Path,
    started: Instant,
) -> anyhow::Result<()> {
    let connectors = scratch.join("connectors");
    std::fs::create_dir_all(&connectors).with_context(|| format!("cannot create {}", connectors.display()))?;
    std::fs::write(connectors.join(format!("{CONNECTOR}.wasm")), opts.wasm).context("cannot write the component")?;
    let operator_token = hex::encode(oneup::ingest::TenantKey::random().expose_bytes());
    let master_key = hex::encode(oneup::ingest::TenantKey::random().expose_bytes());
    let mut service =
        Service::start(opts.oneup_bin, scratch, url, opts.cache_dir, &operator_token, &master_key).await?;
    let result = measure(opts, &service, url, name, &operator_token, started).await;
    if result.is_err() {
        eprintln!(
            "--- the last lines of the service's log ({}) ---\n{}",
            service.stderr.display(),
            service.log_tail(30)
        );
    }
    service.stop().await;
    result
}

async fn measure(
    opts: &Options<'_>,
    service: &Service,
    url: &str,
    name: &str,
    operator_token: &str,
    started: Instant,
) -> anyhow::Result<()> {
    let mut admin_db = PgConnection::connect(url).await.context("connecting to the bench database failed")?;
    let (version, shared_buffers): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version'), current_setting('shared_buffers')")
            .fetch_one(&mut admin_db)
            .await?;
    println!(
        "   Postgres {version} (shared_buffers {shared_buffers}), fresh database {name}; oneup serve (pid {}) on {}",
        service.pid(),
        service.base
    );
    let api = Api::new(&service.base)?;

    // ---- the fake CRM and the tenant -----------------------------------------------------
    let phase = Instant::now();
    let now = Timestamp::now_utc();
    let starts_at = now.plus_secs(-WINDOW_DAYS * 86_400);
    let ends_at = now.plus_secs(86_400);
    let mut dataset = Dataset::generate_with(
        &DatasetSpec::new(opts.seed, PARTICIPANTS, CRM_DEALS, 0).ending_at(now).spanning_days(60),
    );
    // The generated names repeat past a few hundred users; these are unique, and plainly fake.
    for (i, user) in dataset.users.iter_mut().enumerate() {
        user.name = format!("Bench Rep {i:05}");
        user.email = format!("rep{i:05}@standings.bench.example");
    }
    let fake = FakePipedrive::start(dataset, TOKEN).await.context("starting the fake Pipedrive failed")?;
    let crm_users: Vec<(u64, String)> =
        fake.with(|crm: &mut Crm| crm.users().iter().map(|u| (u.id, u.email.clone())).collect());
    // The deal the commit-to-push phase toggles between won and lost: open for now.
    let watched_crm_user = crm_users[crm_users.len() / 2].clone();
    let watched_deal = fake
        .with(|crm: &mut Crm| crm.add_deal(NewDeal::open(watched_crm_user.0, 1000.0, "EUR")))
        .context("adding the watched deal failed")?;

    let tenant = api
        .ok(
            "POST",
            "/v1/tenants",
            operator_token,
            Some(json!({
                "name": "Standings Bench",
                "timezone": "UTC",
                "currency": "EUR",
                "admin": {"name": "Bench Admin", "email": "admin@standings.bench.example"},
            })),
        )
        .await?;
    let tenant_id = tenant["id"].as_str().context("no tenant id")?.to_owned();
    let admin = tenant["admin"]["token"].as_str().context("no admin token")?.to_owned();
    let users_started = Instant::now();
    let emails: Vec<String> = crm_users.iter().map(|(_, e)| e.clone()).collect();
    let user_ids = create_users(&api, &admin, emails).await?;
    let users_took = users_started.elapsed();
    let by_email: BTreeMap<&str, &str> =
        crm_users.iter().map(|(_, e)| e.as_str()).zip(user_ids.iter().map(String::as_str)).collect();
    let watched_user = by_email.get(watched_crm_user.1.as_str()).context("the watched owner has no user")?.to_string();
    api.ok("PUT", "/v1/fx-rates", &admin, Some(json!({"rates": {"USD": "0.92", "GBP": "1.17", "SEK": "0.087"}})))
        .await?;
    api.ok(
        "PUT",
        &format!("/v1/integrations/{CONNECTOR}"),
        &admin,
        // The longest interval: no scheduled sync runs into the timed ones.
        Some(json!({
            "config": {"base_url": fake.base_url()},
            "secrets": {"api_token": TOKEN},
            "sync_interval_secs": 604_800,
        })),
    )
    .await?;
    let sync_started = Instant::now();
    let run = sync(&api, &admin).await?;
    let sync_took = sync_started.elapsed();
    let owners: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT owner_hash FROM owner_mappings WHERE tenant_id = $1::uuid AND connector_id = $2 ORDER BY owner_hash",
    )
    .bind(&tenant_id)
    .bind(CONNECTOR)
    .fetch_all(&mut admin_db)
    .await?;
    ensure!(
        owners.len() == PARTICIPANTS,
        "the sync mapped {} CRM owners, expected {PARTICIPANTS} (roster e-mails = user e-mails)",
        owners.len()
    );
    println!(
        "   tenant: {} users by POST /v1/users in {:.1} s ({:.0}/s, {USER_WORKERS} in flight); fake Pipedrive on {} with their e-mails and {} deals",
        group(user_ids.len() as u64),
        users_took.as_secs_f64(),
        user_ids.len() as f64 / users_took.as_secs_f64(),
        fake.base_url(),
        group(CRM_DEALS as u64 + 1)
    );
    println!(
        "   first sync: {} upserts in {:.1} s (run {} ms); {} CRM owners mapped to users by the roster (setup {:.1} s in all)",
        group(run["upserts"].as_u64().unwrap_or(0)),
        sync_took.as_secs_f64(),
        run["duration_ms"],
        group(owners.len() as u64),
        phase.elapsed().as_secs_f64()
    );

    // ---- ten million facts -----------------------------------------------------------------
    let window_ms = (starts_at.unix() * 1000, ends_at.unix() * 1000);
    let loaded =
        load_facts(&mut admin_db, &tenant_id, &owners, opts.facts, (window_ms.0, now.unix() * 1000), opts.seed).await?;
    let (facts_total, table_size): (i64, String) =
        sqlx::query_as("SELECT count(*), pg_size_pretty(pg_total_relation_size('facts')) FROM facts")
            .fetch_one(&mut admin_db)
            .await?;
    println!(
        "   loaded {} facts by raw COPY in {:.1} s ({} rows/s, {:.0} MB of COPY text), VACUUM ANALYZE {:.1} s; facts now holds {} rows, {} with indexes",
        group(opts.facts),
        loaded.copy.as_secs_f64(),
        group((opts.facts as f64 / loaded.copy.as_secs_f64()) as u64),
        loaded.bytes as f64 / 1e6,
        loaded.vacuum.as_secs_f64(),
        group(facts_total as u64),
        table_size
    );

    // ---- the contest and its reads ------------------------------------------------------------
    let created_at = Instant::now();
    let contest = api
        .ok(
            "POST",
            "/v1/contests",
            &admin,
            Some(json!({
                "name": "Standings bench: deals won",
                "metric": METRIC,
                "format": "leaderboard",
                "starts_at": starts_at.to_string(),
                "ends_at": ends_at.to_string(),
                "participants": {"users": user_ids},
            })),
        )
        .await?;
    let create_took = created_at.elapsed();
    let contest_id = contest["id"].as_str().context("no contest id")?.to_owned();
    println!(
        "   POST /v1/contests ({} participants, {METRIC}, {starts_at} .. {ends_at}): {:.1} ms",
        group(PARTICIPANTS as u64),
        ms(create_took)
    );

    let board_path = format!("/v1/contests/{contest_id}/leaderboard");
    let first_read = Instant::now();
    let (body, size) = api.get_bytes(&board_path, &admin).await?;
    let first_took = first_read.elapsed();
    let board: Value = serde_json::from_slice(&body).context("the leaderboard is not JSON")?;
    let entries = board["entries"].as_array().context("no entries in the leaderboard")?;
    let sum: i64 = entries.iter().filter_map(|e| e["value"].as_i64()).sum();
    let expected: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(f.count), 0)::bigint FROM facts f JOIN owner_mappings m \
         ON m.tenant_id = f.tenant_id AND m.connector_id = f.connector_id AND m.owner_hash = f.owner_hash \
         WHERE f.tenant_id = $1::uuid AND f.metric = $2 AND f.occurred_at >= $3 AND f.occurred_at < $4",
    )
    .bind(&tenant_id)
    .bind(METRIC)
    .bind(window_ms.0)
    .bind(window_ms.1)
    .fetch_one(&mut admin_db)
    .await?;
    let check_ok = entries.len() == PARTICIPANTS && sum == expected;
    println!(
        "   first read: {:.1} ms; {} entries, values summing to {} ({} `{METRIC}` facts of the participants in the window) -> {}",
        ms(first_took),
        group(entries.len() as u64),
        group(sum.max(0) as u64),
        group(expected.max(0) as u64),
        if check_ok { "check passed" } else { "CHECK FAILED: the standing does not match the facts" }
    );

    let reads = time_reads(&api, &board_path, &admin, opts.reads).await?;
    let p50 = median(&reads.timed);
    let p99 = percentile(&reads.timed, 99.0);
    let max = percentile(&reads.timed, 100.0);
    println!(
        "   GET {{id}}/leaderboard x {} after {} warm-up reads (one at a time, one keep-alive connection, to the last byte){}:",
        reads.timed.len(),
        reads.warm_up,
        if reads.cut { format!("; stopped at the {} s budget", READ_BUDGET.as_secs()) } else { String::new() }
    );
    println!(
        "     p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; response {:.0} KB of JSON ({} bytes/entry){}",
        size as f64 / 1024.0,
        size / PARTICIPANTS.max(1),
        if reads.timed.len() < 100 { "; fewer than 100 reads: p99 is the slowest" } else { "" }
    );
    println!(
        "   goal: leaderboard read p99 under {READ_GOAL_MS:.0} ms -> {}",
        verdict(
            p99 < READ_GOAL_MS && check_ok,
            &format!("{p99:.2} ms{}", if check_ok { "" } else { ", wrong standing" })
        )
    );

    // ---- commit to push ----------------------------------------------------------------------
    let pushes =
        time_pushes(&api, service, url, &mut admin_db, &admin, &contest_id, &fake, watched_deal, &watched_user, opts)
            .await?;
    let commit_push: Vec<f64> = pushes.samples.iter().map(|s| s.commit_to_push).collect();
    let trigger_push: Vec<f64> = pushes.samples.iter().map(|s| s.trigger_to_push).collect();
    let responses: Vec<f64> = pushes.samples.iter().map(|s| s.sync_response).collect();
    let commits: Vec<f64> = pushes.samples.iter().map(|s| s.commits as f64).collect();
    println!(
        "   live stream: first standing {:.1} ms after opening; then {} edits (a deal of one participant won, then lost again, ...){}:",
        ms(pushes.first_standing),
        pushes.samples.len(),
        if pushes.cut { format!("; stopped at the {} s budget", PUSH_BUDGET.as_secs()) } else { String::new() }
    );
    for (i, s) in pushes.samples.iter().enumerate() {
        println!(
            "     {:>2}. value {:>6}: commit -> push {:>8.1} ms   trigger -> push {:>8.1} ms   sync?wait=true answered after {:>8.1} ms ({} commit{})",
            i + 1,
            s.value,
            s.commit_to_push,
            s.trigger_to_push,
            s.sync_response,
            s.commits,
            if s.commits == 1 { "" } else { "s" }
        );
    }
    let push_max = percentile(&commit_push, 100.0);
    println!(
        "     commit -> push: p50 {:.1} ms, max {:.1} ms; trigger -> push (upper bound: the CRM edit and the whole sync): p50 {:.1} ms, max {:.1} ms; sync response p50 {:.1} ms; commits per sync {:.0}",
        median(&commit_push),
        push_max,
        median(&trigger_push),
        percentile(&trigger_push, 100.0),
        median(&responses),
        median(&commits)
    );
    println!(
        "   goal: commit to SSE push under {PUSH_GOAL_MS:.0} ms (the slowest of {}) -> {}",
        commit_push.len(),
        verdict(push_max < PUSH_GOAL_MS, &format!("{push_max:.1} ms"))
    );

    // ---- cost ----------------------------------------------------------------------------------
    let db_size: String = sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
        .fetch_one(&mut admin_db)
        .await?;
    let _ = admin_db.close().await;
    println!(
        "   memory: the service's peak RSS {}, this process's {}; database {db_size}; section {:.1} s",
        service.peak_rss_kb().map_or("unavailable".to_owned(), |kb| format!("{:.0} MB", mib(kb))),
        peak_rss_kb().map_or("unavailable".to_owned(), |kb| format!("{:.0} MB", mib(kb))),
        started.elapsed().as_secs_f64()
    );
    fake.shutdown().await;
    Ok(())
}

/// Creates one member per e-mail, [`USER_WORKERS`] requests in flight; their ids in order.
async fn create_users(api: &Api, admin: &str, emails: Vec<String>) -> anyhow::Result<Vec<String>> {
    let emails = Arc::new(emails);
    let mut workers = Vec::with_capacity(USER_WORKERS);
    for worker in 0..USER_WORKERS {
        let (api, admin, emails) = (api.clone(), admin.to_owned(), emails.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (worker..emails.len()).step_by(USER_WORKERS) {
                let body = json!({"name": format!("Bench Rep {i:05}"), "email": emails[i], "role": "member"});
                let created = api.ok("POST", "/v1/users", &admin, Some(body)).await?;
                out.push((i, created["id"].as_str().context("no user id")?.to_owned()));
            }
            anyhow::Ok(out)
        }));
    }
    let mut ids = vec![String::new(); emails.len()];
    for worker in workers {
        for (i, id) in worker.await.context("a user worker panicked")?? {
            ids[i] = id;
        }
    }
    Ok(ids)
}

/// `POST /v1/integrations/pipedrive/sync?wait=true`; the finished run, which must have succeeded.
async fn sync(api: &Api, admin: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/integrations/{CONNECTOR}/sync?wait=true");
    let (status, run) = api
        .send("POST", &path, admin, None, Duration::from_secs(SYNC_WAIT_SECS + 60))
        .await
        .context("the sync request failed")?;
    ensure!(status == 200, "the sync did not finish within {SYNC_WAIT_SECS} s (answer {status}: {run})");
    ensure!(run["status"] == "succeeded", "the sync did not succeed: {run}");
    Ok(run)
}

/// Time spent on the load.
struct Loaded {
    copy: Duration,
    vacuum: Duration,
    bytes: u64,
}

/// `COPY`s `n` `deals_won` facts into `facts`, spread over the `owners` at random and over
/// `[from_ms, to_ms)`, showing progress; then `VACUUM ANALYZE`.
async fn load_facts(
    conn: &mut PgConnection,
    tenant_id: &str,
    owners: &[Vec<u8>],
    n: u64,
    (from_ms, to_ms): (i64, i64),
    seed: u64,
) -> anyhow::Result<Loaded> {
    ensure!(!owners.is_empty() && to_ms > from_ms, "nothing to load facts for");
    let owners_hex: Vec<String> = owners.iter().map(hex::encode).collect();
    let confirmed = Timestamp::now_utc().unix() * 1000;
    let span = (to_ms - from_ms) as u128;
    // Each fact gets its own slot of the hash space and of the window, and a random place in it.
    let hash_slot = ((1u128 << 64) / u128::from(n.max(1))).max(1);
    let mut rng = SplitMix64(seed ^ 0x5eed_57a2_d1e6_0001);
    let step = (n / 10).max(1);
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut copy = conn
        .copy_in_raw(
            "COPY facts (tenant_id, connector_id, metric, source_hash, owner_hash, occurred_at, kind, count, \
             amount_micros, currency, amount_tenant_micros, confirmed_at) FROM STDIN",
        )
        .await?;
    let mut chunk = String::with_capacity(COPY_CHUNK + 512);
    for i in 0..n {
        let hi = (u128::from(i) * hash_slot + u128::from(rng.next()) % hash_slot) as u64;
        let lo = rng.next();
        let at = from_ms + ((u128::from(i) * span + u128::from(rng.next()) % span) / u128::from(n)) as i64;
        let owner = &owners_hex[(rng.next() % owners_hex.len() as u64) as usize];
        use std::fmt::Write as _;
        let _ = writeln!(
            chunk,
            "{tenant_id}\t{CONNECTOR}\t{METRIC}\t\\\\x{hi:016x}{lo:016x}\t\\\\x{owner}\t{at}\tcount\t1\t\\N\t\\N\t\\N\t{confirmed}"
        );
        if chunk.len() >= COPY_CHUNK {
            bytes += chunk.len() as u64;
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
        }
        if (i + 1) % step == 0 && i + 1 < n {
            let done = i + 1;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "     ... {:>3}%: {} facts sent in {secs:.0} s ({} rows/s)",
                done * 100 / n,
                group(done),
                group((done as f64 / secs) as u64)
            );
        }
    }
    bytes += chunk.len() as u64;
    if !chunk.is_empty() {
        copy.send(chunk.as_bytes()).await?;
    }
    let copied = copy.finish().await?;
    let copy_took = started.elapsed();
    ensure!(copied == n, "COPY wrote {copied} rows, expected {n}");
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) facts").execute(&mut *conn).await?;
    Ok(Loaded { copy: copy_took, vacuum: started.elapsed(), bytes })
}

/// The timed reads.
struct Reads {
    warm_up: usize,
    /// Milliseconds.
    timed: Vec<f64>,
    /// Stopped by the budget before `--standings-reads`.
    cut: bool,
}

async fn time_reads(api: &Api, path: &str, token: &str, wanted: usize) -> anyhow::Result<Reads> {
    let started = Instant::now();
    let mut warm_up = 0;
    while warm_up < WARM_UP_READS && (warm_up == 0 || started.elapsed() < WARM_UP_BUDGET) {
        api.get_bytes(path, token).await?;
        warm_up += 1;
    }
    let started = Instant::now();
    let mut timed = Vec::with_capacity(wanted);
    let mut cut = false;
    while timed.len() < wanted.max(1) {
        if timed.len() >= MIN_READS && started.elapsed() >= READ_BUDGET {
            cut = true;
            break;
        }
        let read = Instant::now();
        api.get_bytes(path, token).await?;
        timed.push(ms(read.elapsed()));
    }
    Ok(Reads { warm_up, timed, cut })
}

/// One edit, from its trigger to the standing showing it.
struct Push {
    /// The participant's value the standing had to show.
    value: i64,
    commit_to_push: f64,
    trigger_to_push: f64,
    sync_response: f64,
    /// Commits (transactions writing `facts`) seen between the trigger and the push.
    commits: usize,
}

struct Pushes {
    first_standing: Duration,
    samples: Vec<Push>,
    cut: bool,
}

/// Opens the live stream, then edits, syncs and waits for each edit's standing.
#[allow(clippy::too_many_arguments)]
async fn time_pushes(
    api: &Api,
    service: &Service,
    url: &str,
    admin_db: &mut PgConnection,
    admin: &str,
    contest_id: &str,
    fake: &FakePipedrive,
    deal: u64,
    watched_user: &str,
    opts: &Options<'_>,
) -> anyhow::Result<Pushes> {
    // Every transaction that writes `facts` notifies at its commit (once per transaction).
    sqlx::query(&format!(
        "CREATE FUNCTION oneup_bench_notify() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$"
    ))
    .execute(&mut *admin_db)
    .await?;
    sqlx::query(
        "CREATE TRIGGER oneup_bench_notify AFTER INSERT OR UPDATE OR DELETE ON facts \
         FOR EACH STATEMENT EXECUTE FUNCTION oneup_bench_notify()",
    )
    .execute(&mut *admin_db)
    .await?;
    let mut listener = PgListener::connect(url).await.context("the LISTEN connection failed")?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let (commit_tx, mut commits) = mpsc::unbounded_channel::<Instant>();
    let listening = tokio::spawn(async move {
        while listener.recv().await.is_ok() {
            if commit_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });

    let opened = Instant::now();
    let (event_tx, mut events) = mpsc::unbounded_channel::<SseEvent>();
    let stream = api.open_stream(&format!("/v1/contests/{contest_id}/leaderboard/stream"), admin).await?;
    let reading = tokio::spawn(read_events(stream, event_tx));
    let result = async {
        let first = next_standing(&mut events, opened + FIRST_STANDING_TIMEOUT, watched_user, None)
            .await
            .context("waiting for the first standing")?;
        let first_standing = first.at - opened;
        let base = first.value;
        let mut samples = Vec::new();
        let budget = Instant::now();
        let mut cut = false;
        for i in 0..opts.pushes.max(1) {
            if samples.len() >= MIN_PUSHES && budget.elapsed() >= PUSH_BUDGET {
                cut = true;
                break;
            }
            tokio::time::sleep(PUSH_PAUSE).await;
            while events.try_recv().is_ok() {}
            while commits.try_recv().is_ok() {}
            let win = i % 2 == 0;
            let value = if win { base + 1 } else { base };
            let trigger = Instant::now();
            fake.with(|crm: &mut Crm| {
                crm.set_clock(Timestamp::now_utc());
                if win {
                    crm.mark_deal_won(deal, Timestamp::now_utc().plus_secs(-60))
                } else {
                    crm.mark_deal_lost(deal)
                }
            })
            .context("editing the watched deal failed")?;
            sync(api, admin).await?;
            let answered = Instant::now();
            let pushed =
                next_standing(&mut events, trigger + PUSH_TIMEOUT, watched_user, Some(value)).await.with_context(
                    || format!("waiting for the standing to show value {value} for the edited participant"),
                )?;
            let mut seen = Vec::new();
            while let Ok(at) = commits.try_recv() {
                if at >= trigger && at <= pushed.at {
                    seen.push(at);
                }
            }
            let commit = *seen.first().with_context(|| {
                format!(
                    "no commit of `facts` was notified between the edit and the push (service pid {})",
                    service.pid()
                )
            })?;
            samples.push(Push {
                value,
                commit_to_push: ms(pushed.at.saturating_duration_since(commit)),
                trigger_to_push: ms(pushed.at - trigger),
                sync_response: ms(answered - trigger),
                commits: seen.len(),
            });
        }
        anyhow::Ok(Pushes { first_standing, samples, cut })
    }
    .await;
    reading.abort();
    listening.abort();
    result
}

/// A `standing` event that arrived, and the watched participant's value in it.
struct Standing {
    at: Instant,
    value: i64,
}

/// Waits until `deadline` for a `standing` event (one showing `want` for `user`, if given);
/// earlier ones are skipped. Any other event than `standing` or `names` is an error.
async fn next_standing(
    events: &mut mpsc::UnboundedReceiver<SseEvent>,
    deadline: Instant,
    user: &str,
    want: Option<i64>,
) -> anyhow::Result<Standing> {
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left, events.recv()).await {
            Err(_) => bail!(
                "none arrived in time (the watched participant's last value seen: {})",
                last.map_or("none".to_owned(), |v: i64| v.to_string())
            ),
            Ok(None) => bail!("the stream ended (last value seen: {last:?})"),
            Ok(Some(event)) => event,
        };
        match event.name.as_str() {
            "standing" => {
                let body: Value = serde_json::from_str(&event.data).context("a standing event that is not JSON")?;
                let value = body["entries"]
                    .as_array()
                    .and_then(|entries| entries.iter().find(|e| e["user_id"] == user))
                    .and_then(|e| e["value"].as_i64())
                    .context("the standing has no entry for the watched participant")?;
                last = Some(value);
                if want.is_none_or(|w| w == value) {
                    return Ok(Standing { at: event.at, value });
                }
            }
            "names" => {}
            other => bail!("the stream sent `{other}`: {}", event.data.chars().take(300).collect::<String>()),
        }
    }
}

/// One server-sent event, stamped when its last byte arrived.
struct SseEvent {
    at: Instant,
    name: String,
    data: String,
}

/// Reads `text/event-stream` chunks, splits them into events, and sends each with its
/// arrival time (taken before anything is parsed). Comments and `retry:` are dropped.
async fn read_events(mut response: reqwest::Response, tx: mpsc::UnboundedSender<SseEvent>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let at = Instant::now();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = find_blank_line(&buffer) {
            let block: Vec<u8> = buffer.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&block[..end.0]);
            if let Some(event) = parse_event(&text, at)
                && tx.send(event).is_err()
            {
                return;
            }
        }
    }
}

/// The end of the first event block in `buffer`: (where its text ends, where the next starts).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One event block's `event:` name (default `message`) and `data:` lines joined by `\n`;
/// `None` for a block of comments only.
fn parse_event(block: &str, at: Instant) -> Option<SseEvent> {
    let mut name = None;
    let mut data: Option<String> = None;
    for line in block.lines() {
        let line = line.trim_end_matches('\r');
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    let data = data?;
    Some(SseEvent { at, name: name.unwrap_or_else(|| "message".to_owned()), data })
}

/// A small client of the service's API.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(Api { http, base: base.trim_end_matches('/').to_owned() })
    }

    /// `method path` with a bearer token and an optional JSON body: the status and the JSON
    /// answer (`Null` when empty).
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req =
            self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(token).timeout(timeout);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(serde_json::to_vec(&body)?);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path} failed"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.with_context(|| format!("reading the answer to {method} {path} failed"))?;
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, value))
    }

    /// Like [`Api::send`], but a status other than 2xx is an error.
    async fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.send(method, path, token, body, REQUEST_TIMEOUT).await?;
        ensure!((200..300).contains(&status), "{method} {path} answered {status}: {value}");
        Ok(value)
    }

    /// `GET path`, read to its last byte: the body and its size; a status other than 200 is
    /// an error.
    async fn get_bytes(&self, path: &str, token: &str) -> anyhow::Result<(Vec<u8>, usize)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("GET {path} failed"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.with_context(|| format!("reading GET {path} failed"))?;
        ensure!(status == 200, "GET {path} answered {status}: {}", String::from_utf8_lossy(&bytes));
        let size = bytes.len();
        Ok((bytes.to_vec(), size))
    }

    /// Opens an event stream (no overall timeout: it lasts; its first bytes are awaited by
    /// the caller with a deadline).
    async fn open_stream(&self, path: &str, token: &str) -> anyhow::Result<reqwest::Response> {
        let send = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send();
        let resp = tokio::time::timeout(FIRST_STANDING_TIMEOUT, send)
            .await
            .with_context(|| format!("GET {path} did not answer within {} s", FIRST_STANDING_TIMEOUT.as_secs()))?
            .with_context(|| format!("GET {path} failed"))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            bail!("GET {path} answered {status}: {text}");
        }
        Ok(resp)
    }
}

/// A running `oneup serve`, killed when dropped.
struct Service {
    child: Option<Child>,
    base: String,
    stderr: PathBuf,
}

impl Service {
    /// Starts `oneup serve` on a free loopback port and waits until it prints its address.
    async fn start(
        bin: &Path,
        dir: &Path,
        database_url: &str,
        cache_dir: &Path,
        operator_token: &str,
        master_key: &str,
    ) -> anyhow::Result<Self> {
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .arg("--connectors")
            .arg(dir.join("connectors"))
            .args(["--sync-wait-secs", &SYNC_WAIT_SECS.to_string()]);
        for var in [
            "ONEUP_BIND",
            "ONEUP_CONNECTORS_DIR",
            "ONEUP_NODE_NAME",
            "ONEUP_MAX_SYNCS",
            "ONEUP_LEASE_SECS",
            "ONEUP_POLL_SECS",
            "ONEUP_MASTER_KEY_FILE",
            "ONEUP_LOG",
            "ONEUP_LOG_FORMAT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("DATABASE_URL", database_url)
            .env("ONEUP_OPERATOR_TOKEN", operator_token)
            .env("ONEUP_MASTER_KEY", master_key)
            .env("ONEUP_DEV_ALLOW_LOOPBACK", "1")
            .env("ONEUP_CACHE_DIR", cache_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        let child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        let mut service = Service { child: Some(child), base: String::new(), stderr };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = std::fs::read_to_string(&stdout).unwrap_or_default();
            if let Some(line) = out.lines().find_map(|l| l.strip_prefix("oneup listening on ")) {
                service.base = line.trim().to_owned();
                return Ok(service);
            }
            if let Some(child) = service.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("oneup serve exited with {status} before listening:\n{}", service.log_tail(30));
            }
            if Instant::now() > deadline {
                bail!(
                    "oneup serve did not print its address within {} s:\n{}",
                    START_TIMEOUT.as_secs(),
                    service.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The service's peak resident set, in KiB (`VmHWM` of its process).
    fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The last `n` lines of its log.
    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, up to 15 s to exit, then SIGKILL.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("warning: oneup serve did not stop within 15 s of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small, fast generator for the loaded facts (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_server_sent_events() {
        let at = Instant::now();
        let event = parse_event("retry: 3000\nevent: standing\ndata: {\"a\":1}", at).expect("an event");
        assert_eq!((event.name.as_str(), event.data.as_str()), ("standing", "{\"a\":1}"));
        let event = parse_event("data: one\ndata: two", at).expect("an event");
        assert_eq!((event.name.as_str(), event.data.as_str()), ("message", "one\ntwo"));
        assert!(parse_event(": keep-alive", at).is_none());
        assert_eq!(find_blank_line(b"event: a\ndata: 1\n\nevent: b"), Some((16, 18)));
        assert_eq!(find_blank_line(b"data: 1\r\n\r\n"), Some((7, 11)));
        assert_eq!(find_blank_line(b"data: 1\n"), None);
    }
}
