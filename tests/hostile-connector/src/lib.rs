//! A connector that breaks the rules on purpose, for the sandbox tests.
//!
//! Its config key `mode` chooses what one sync does:
//!
//! | mode | what the sync does |
//! |---|---|
//! | `ok` | emits 3 valid `deals_won` upserts (`ok-1`..`ok-3`) in one batch, checkpoints, completes |
//! | `loop` | spins forever |
//! | `alloc` | grows its memory without bound |
//! | `batch:<n>` | emits `<n>` valid changes (`b-0`..) in one batch, checkpoints, completes |
//! | `pending:<n>` | emits `<n>` valid changes (`p-0`..) in batches of [`PENDING_BATCH`] (the last one smaller) without a checkpoint, then checkpoints and completes |
//! | `cursor-marks:<n>` | checkpoints a cursor of `<n>` marks: `position`, then the undeclared `k1`.. |
//! | `late-emit` | GETs `/slow`, then (whatever the answer) emits `late-1`, checkpoints, completes |
//! | `huge-event` | emits one upsert whose owner id is a 10 MiB string |
//! | `undeclared-metric` | emits an upsert of the undeclared metric `secret_metric` |
//! | `email-owner` | emits an upsert whose owner is `jane.doe@acme.example` |
//! | `sentence-source-id` | emits an upsert whose source id is `Deal with Tom at SuperBigCorp` |
//! | `bad-currency` | emits, in one batch, a valid revenue upsert (`bc-ok`, 100 USD) and one in `XYZ` (`bc-bad`) |
//! | `path:<p>` | GETs the path `<p>`; a denial becomes the error code `denied`, an answer one upsert (`path-ok`) |
//! | `host-header` | GETs `/ok` with the header `host: evil.example`; denial and answer as for `path:` |
//! | `trap` | panics |
//! | `emit-then-trap` | emits 2 valid upserts (`ett-1`, `ett-2`), then panics without a checkpoint |
//! | `checkpoint-then-trap` | emits 2 valid upserts (`ctt-1`, `ctt-2`), checkpoints, emits `ctt-3`, panics |
//! | `undeclared-log-code` | logs under the undeclared code `sneaky_free_text_code`, then completes |
//! | `bad-cursor` | checkpoints under the undeclared key `sneaky_key` |
//! | `debug` | writes the debug text `secret debug Jane Doe`, then completes |
//! | `dates` | emits, in one batch, `deals_won` upserts dated (calendar dates, no time) 2025-03-30 (`date-spring`, the day Europe/Berlin springs forward), 2025-10-26 (`date-autumn`, it falls back), 2025-02-30 (`date-impossible`) and 1899-12-31 (`date-ancient`), and a `revenue` upsert of 100 EUR dated 2025-06-02 (`date-summer`); checkpoints |
//! | `snap-seed` | emits `deals_won` `s-1`, `s-2` (at [`IN_WINDOW_MS`]), `s-from` (at [`WINDOW_FROM_MS`]), `s-to` (at [`WINDOW_TO_MS`]), `s-out` (at [`OUTSIDE_WINDOW_MS`]) and `revenue` 5 EUR `s-1` (at [`IN_WINDOW_MS`]); checkpoints |
//! | `snap` | opens a snapshot of `deals_won` over `[WINDOW_FROM_MS, WINDOW_TO_MS)`, emits `s-1`, checkpoints, emits `s-new` (at [`LATER_IN_WINDOW_MS`]), ends the snapshot, checkpoints |
//! | `snap-final` | as `snap` without either checkpoint: the end of the sync commits |
//! | `snap-open` | opens the snapshot, emits `s-1`, checkpoints and completes with the snapshot open |
//! | `snap-end-then-trap` | opens the snapshot, emits `s-1`, ends it, panics before any commit |
//! | `bad-snapshot:<rule>` | emits `bs-1`, then breaks a snapshot rule: `undeclared` (metric `secret_metric`), `no-metrics`, `seventeen-metrics`, `empty-window` (from = to), `reversed-window`, `twice` (a second begin while one is open), `end-without-begin` |
//! | `budget` | emits `bu-1`, checkpoints, ends `budget-exhausted` without a resume time |
//! | `budget-in:<minutes>` | as `budget`, with the resume time the host clock plus `<minutes>` (may be negative) |
//! | `log-flood` | logs [`FLOOD_EVENTS`] events under the code `flood`, each with 12 declared fields `n0`..`n11` (numbers spelling a name), then emits `lf-1`, checkpoints, completes |
//! | `socket:<port>` | tries WASI sockets: a TCP connect to `127.0.0.1:<port>`, a UDP bind, a name lookup of `localhost`; if any works it emits `socket-open` and completes, else fails with `denied` |
//! | `handle-flood` | asks WASI for a new stdin stream and a pollable on it, 1,000,000 times, never dropping one |
//! | `refused-emits` | emits an undeclared metric 10,000 times (each refused), then completes |
//!
//! Built with the feature `wider` (the crate `oneup-hostile-connector-wider`), the same
//! connector declares one more allowed host ([`WIDER_HOST`]) and metric (`extra_metric`):
//! a swapped binary asking for more than was approved.
//!
//! An unknown mode fails with the code `bad_config`. The roster, whatever the mode, is one
//! entry: CRM user `u-1` with e-mail `hostile.user@example.com`.
//!
//! Every valid upsert is a `deals_won` count of 1 (or `revenue` where said) credited to owner
//! `u-1` at 2025-06-02T10:00:00Z.

#![warn(missing_docs)]

use oneup_connector_sdk::{
    AuthScheme, CalendarDate, Connector, ConnectorError, Ctx, Cursor, Descriptor, HttpError, HttpRequest, KpiChange,
    LogLevel, MetricKind, Money, OccurredAt, RosterEntry, Setting, SnapshotWindow, SyncOutcome, codes,
};

/// The connector.
pub struct Hostile;

oneup_connector_sdk::export_connector!(Hostile);

/// When every valid upsert happened: 2025-06-02T10:00:00Z.
pub const OCCURRED_AT_MS: i64 = 1_748_858_400_000;

/// The owner every valid upsert credits.
pub const OWNER: &str = "u-1";

/// The code a sync fails with when the host denies its request.
pub const DENIED: &str = "denied";

/// How many log events `log-flood` writes.
pub const FLOOD_EVENTS: u32 = 5_000;

/// The batch size of `pending:<n>`.
pub const PENDING_BATCH: u64 = 1_000;

/// The extra host pattern of the `wider` build.
pub const WIDER_HOST: &str = "*.wider.example";

/// The log field names it declares (as log codes), for `log-flood`.
const FIELDS: [&str; 12] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11"];

/// The one cursor key it declares.
pub const CURSOR_KEY: &str = "position";

/// The snapshot window's start, inclusive: 2025-06-01T00:00:00Z.
pub const WINDOW_FROM_MS: i64 = 1_748_736_000_000;
/// The snapshot window's end, exclusive: 2025-07-01T00:00:00Z.
pub const WINDOW_TO_MS: i64 = 1_751_328_000_000;
/// Inside the window: 2025-06-02T10:00:00Z (the time of every valid upsert).
pub const IN_WINDOW_MS: i64 = OCCURRED_AT_MS;
/// Later inside the window: 2025-06-10T10:00:00Z.
pub const LATER_IN_WINDOW_MS: i64 = 1_749_549_600_000;
/// After the window: 2025-07-15T10:00:00Z.
pub const OUTSIDE_WINDOW_MS: i64 = 1_752_573_600_000;

fn won_at(source_id: &str, at: impl Into<OccurredAt>) -> KpiChange {
    KpiChange::count("deals_won", OWNER, source_id, at, 1)
}

fn window() -> SnapshotWindow {
    SnapshotWindow::new(&["deals_won"], WINDOW_FROM_MS, WINDOW_TO_MS)
}

fn eur(amount: &str) -> Result<Money, ConnectorError> {
    Money::parse(amount, "EUR").map_err(|_| ConnectorError::new(codes::BAD_CONFIG))
}

/// Breaks the snapshot rule `rule` (after emitting `bs-1`).
fn bad_snapshot(ctx: &mut Ctx<'_>, rule: &str) -> Result<(), ConnectorError> {
    ctx.emit(&[won("bs-1")])?;
    let bad = |metrics: &[&'static str], from, to| SnapshotWindow::new(metrics, from, to);
    match rule {
        "undeclared" => ctx.snapshot_begin(&bad(&["deals_won", "secret_metric"], WINDOW_FROM_MS, WINDOW_TO_MS)),
        "no-metrics" => ctx.snapshot_begin(&bad(&[], WINDOW_FROM_MS, WINDOW_TO_MS)),
        "seventeen-metrics" => ctx.snapshot_begin(&bad(&["deals_won"; 17], WINDOW_FROM_MS, WINDOW_TO_MS)),
        "empty-window" => ctx.snapshot_begin(&bad(&["deals_won"], WINDOW_FROM_MS, WINDOW_FROM_MS)),
        "reversed-window" => ctx.snapshot_begin(&bad(&["deals_won"], WINDOW_TO_MS, WINDOW_FROM_MS)),
        "twice" => {
            ctx.snapshot_begin(&window())?;
            ctx.snapshot_begin(&window())
        }
        "end-without-begin" => ctx.snapshot_end(),
        _ => Err(ConnectorError::new(codes::BAD_CONFIG)),
    }
}

fn won(source_id: &str) -> KpiChange {
    KpiChange::count("deals_won", OWNER, source_id, OCCURRED_AT_MS, 1)
}

/// GETs `request`: a denial is the error `denied`; an answer emits one upsert.
fn probe(ctx: &mut Ctx<'_>, request: &HttpRequest) -> Result<SyncOutcome, ConnectorError> {
    match ctx.http_get(request) {
        Err(HttpError::Denied) => Err(ConnectorError::new(DENIED)),
        Err(error) => Err(error.into()),
        Ok(_) => {
            ctx.emit(&[won("path-ok")])?;
            Ok(SyncOutcome::Complete)
        }
    }
}

/// Tries every way out through WASI sockets; true if any worked.
fn sockets_work(port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").is_ok();
    let lookup = ("localhost", port).to_socket_addrs().is_ok_and(|mut a| a.next().is_some());
    tcp || udp || lookup
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi:cli/stdin@0.2.0")]
unsafe extern "C" {
    /// `get-stdin: func() -> input-stream`: a new handle on every call.
    #[link_name = "get-stdin"]
    fn get_stdin() -> i32;
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "wasi:io/streams@0.2.0")]
unsafe extern "C" {
    /// `[method]input-stream.subscribe: func(self: borrow<input-stream>) -> pollable`.
    #[link_name = "[method]input-stream.subscribe"]
    fn subscribe(stream: i32) -> i32;
}

/// Creates handles (streams and pollables) in a loop and never drops them.
fn handle_flood() {
    #[cfg(target_arch = "wasm32")]
    for _ in 0..1_000_000u32 {
        // SAFETY: plain WASI calls with a handle the host just gave.
        unsafe {
            let stream = get_stdin();
            std::hint::black_box(subscribe(stream));
        }
    }
}

impl Connector for Hostile {
    fn describe() -> Descriptor {
        let mut codes = vec![DENIED, "flood"];
        codes.extend(FIELDS);
        let d = Descriptor::new("hostile", env!("CARGO_PKG_VERSION"))
            .with_config(Setting::required("base_url"))
            .with_config(Setting::with_default("mode", "ok"))
            .with_allowed_host("*.example.com")
            .with_auth(AuthScheme::None)
            .with_metric("deals_won", MetricKind::Count)
            .with_metric("revenue", MetricKind::Money)
            .with_cursor_keys(&[CURSOR_KEY])
            .with_log_codes(&codes);
        #[cfg(feature = "wider")]
        let d = d.with_allowed_host(WIDER_HOST).with_metric("extra_metric", MetricKind::Count);
        d
    }

    fn sync(ctx: &mut Ctx<'_>, _since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        let mode = ctx.config("mode").unwrap_or_default();
        let done = Cursor::new().with(CURSOR_KEY, 1);
        match mode.as_str() {
            "ok" => {
                ctx.emit(&[won("ok-1"), won("ok-2"), won("ok-3")])?;
                ctx.checkpoint(&done)?;
            }
            "loop" => {
                let mut spins = 0u64;
                loop {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let chunk = vec![1u8; 1 << 20];
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "late-emit" => {
                // The answer does not matter: what counts is whether anything runs after it.
                let _ = ctx.http_get(&HttpRequest::get("/slow"));
                ctx.emit(&[won("late-1")])?;
                ctx.checkpoint(&done)?;
            }
            "huge-event" => {
                let owner = "a".repeat(10 * 1024 * 1024);
                ctx.emit(&[KpiChange::count("deals_won", owner, "huge-1", OCCURRED_AT_MS, 1)])?;
            }
            "undeclared-metric" => {
                ctx.emit(&[KpiChange::count("secret_metric", OWNER, "um-1", OCCURRED_AT_MS, 1)])?;
            }
            "email-owner" => {
                ctx.emit(&[KpiChange::count("deals_won", "jane.doe@acme.example", "eo-1", OCCURRED_AT_MS, 1)])?;
            }
            "sentence-source-id" => {
                ctx.emit(&[KpiChange::count("deals_won", OWNER, "Deal with Tom at SuperBigCorp", OCCURRED_AT_MS, 1)])?;
            }
            "bad-currency" => {
                let usd = Money::parse("100", "USD").map_err(|_| ConnectorError::new(codes::BAD_CONFIG))?;
                let xyz = Money::parse("100", "XYZ").map_err(|_| ConnectorError::new(codes::BAD_CONFIG))?;
                ctx.emit(&[
                    KpiChange::money("revenue", OWNER, "bc-ok", OCCURRED_AT_MS, usd),
                    KpiChange::money("revenue", OWNER, "bc-bad", OCCURRED_AT_MS, xyz),
                ])?;
            }
            "host-header" => {
                return probe(ctx, &HttpRequest::get("/ok").header("host", "evil.example"));
            }
            "trap" => panic!("the hostile connector traps on purpose"),
            "emit-then-trap" => {
                ctx.emit(&[won("ett-1"), won("ett-2")])?;
                panic!("the hostile connector traps on purpose after emitting");
            }
            "checkpoint-then-trap" => {
                ctx.emit(&[won("ctt-1"), won("ctt-2")])?;
                ctx.checkpoint(&done)?;
                ctx.emit(&[won("ctt-3")])?;
                panic!("the hostile connector traps on purpose after a checkpoint");
            }
            "undeclared-log-code" => {
                ctx.log(LogLevel::Info, "sneaky_free_text_code", &[]);
            }
            "bad-cursor" => {
                ctx.checkpoint(&Cursor::new().with("sneaky_key", 1))?;
            }
            "debug" => {
                ctx.debug("secret debug Jane Doe");
            }
            "dates" => {
                let date = |year, month, day| CalendarDate { year, month, day };
                ctx.emit(&[
                    won_at("date-spring", date(2025, 3, 30)),
                    won_at("date-autumn", date(2025, 10, 26)),
                    won_at("date-impossible", date(2025, 2, 30)),
                    won_at("date-ancient", date(1899, 12, 31)),
                    KpiChange::money("revenue", OWNER, "date-summer", date(2025, 6, 2), eur("100")?),
                ])?;
                ctx.checkpoint(&done)?;
            }
            "snap-seed" => {
                ctx.emit(&[
                    won_at("s-1", IN_WINDOW_MS),
                    won_at("s-2", IN_WINDOW_MS),
                    won_at("s-from", WINDOW_FROM_MS),
                    won_at("s-to", WINDOW_TO_MS),
                    won_at("s-out", OUTSIDE_WINDOW_MS),
                    KpiChange::money("revenue", OWNER, "s-1", IN_WINDOW_MS, eur("5")?),
                ])?;
                ctx.checkpoint(&done)?;
            }
            "snap" => {
                ctx.snapshot_begin(&window())?;
                ctx.emit(&[won_at("s-1", IN_WINDOW_MS)])?;
                ctx.checkpoint(&done)?;
                ctx.emit(&[won_at("s-new", LATER_IN_WINDOW_MS)])?;
                ctx.snapshot_end()?;
                ctx.checkpoint(&done)?;
            }
            "snap-final" => {
                ctx.snapshot_begin(&window())?;
                ctx.emit(&[won_at("s-1", IN_WINDOW_MS), won_at("s-new", LATER_IN_WINDOW_MS)])?;
                ctx.snapshot_end()?;
            }
            "snap-open" => {
                ctx.snapshot_begin(&window())?;
                ctx.emit(&[won_at("s-1", IN_WINDOW_MS)])?;
                ctx.checkpoint(&done)?;
            }
            "snap-end-then-trap" => {
                ctx.snapshot_begin(&window())?;
                ctx.emit(&[won_at("s-1", IN_WINDOW_MS)])?;
                ctx.snapshot_end()?;
                panic!("the hostile connector traps on purpose after ending a snapshot");
            }
            "log-flood" => {
                // "Jane Doe" in bytes, again and again: numbers can carry text.
                let spelled: Vec<i64> = b"Jane Doe, 12 Elm St".iter().map(|b| i64::from(*b)).collect();
                for i in 0..FLOOD_EVENTS {
                    let fields: Vec<(&str, i64)> = FIELDS
                        .iter()
                        .enumerate()
                        .map(|(j, f)| (*f, spelled[(i as usize + j) % spelled.len()]))
                        .collect();
                    ctx.log(LogLevel::Warn, "flood", &fields);
                }
                ctx.emit(&[won("lf-1")])?;
                ctx.checkpoint(&done)?;
            }
            "handle-flood" => handle_flood(),
            "refused-emits" => {
                for i in 0..10_000u32 {
                    let _ = ctx.emit(&[KpiChange::count("secret_metric", OWNER, i, OCCURRED_AT_MS, 1)]);
                }
            }
            "budget" => {
                ctx.emit(&[won("bu-1")])?;
                ctx.checkpoint(&done)?;
                return Ok(SyncOutcome::BudgetExhausted { resume_at: None });
            }
            other => {
                if let Some(port) = other.strip_prefix("socket:").and_then(|p| p.parse::<u16>().ok()) {
                    if sockets_work(port) {
                        ctx.emit(&[won("socket-open")])?;
                        return Ok(SyncOutcome::Complete);
                    }
                    return Err(ConnectorError::new(DENIED));
                }
                if let Some(n) = other.strip_prefix("batch:").and_then(|n| n.parse::<u64>().ok()) {
                    // Only the batch lives in guest memory: a few hundred bytes per change.
                    let batch: Vec<KpiChange> = (0..n).map(|i| won(&format!("b-{i}"))).collect();
                    ctx.emit(&batch)?;
                    ctx.checkpoint(&done)?;
                    return Ok(SyncOutcome::Complete);
                }
                if let Some(n) = other.strip_prefix("pending:").and_then(|n| n.parse::<u64>().ok()) {
                    // Small batches, one at a time: guest memory stays small, the host holds them all.
                    let mut next = 0u64;
                    while next < n {
                        let end = (next + PENDING_BATCH).min(n);
                        let batch: Vec<KpiChange> = (next..end).map(|i| won(&format!("p-{i}"))).collect();
                        ctx.emit(&batch)?;
                        next = end;
                    }
                    ctx.checkpoint(&done)?;
                    return Ok(SyncOutcome::Complete);
                }
                if let Some(n) = other.strip_prefix("cursor-marks:").and_then(|n| n.parse::<u32>().ok()) {
                    let mut cursor = Cursor::new().with(CURSOR_KEY, 1);
                    for i in 1..n {
                        cursor.set(&format!("k{i}"), i64::from(i));
                    }
                    ctx.emit(&[won("cm-1")])?;
                    ctx.checkpoint(&cursor)?;
                    return Ok(SyncOutcome::Complete);
                }
                if let Some(path) = other.strip_prefix("path:") {
                    return probe(ctx, &HttpRequest::get(path));
                }
                if let Some(rule) = other.strip_prefix("bad-snapshot:") {
                    bad_snapshot(ctx, rule)?;
                    return Ok(SyncOutcome::Complete);
                }
                if let Some(minutes) = other.strip_prefix("budget-in:").and_then(|m| m.parse::<i64>().ok()) {
                    ctx.emit(&[won("bu-1")])?;
                    ctx.checkpoint(&done)?;
                    let resume_at = ctx.now() + minutes * 60_000;
                    return Ok(SyncOutcome::BudgetExhausted { resume_at: Some(resume_at) });
                }
                return Err(ConnectorError::new(codes::BAD_CONFIG));
            }
        }
        Ok(SyncOutcome::Complete)
    }

    fn roster(_ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        Ok(vec![RosterEntry::new(OWNER, "hostile.user@example.com")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneup_connector_sdk::testing::{FakeHost, run_roster, run_sync};

    fn run(mode: &str) -> (FakeHost, Result<SyncOutcome, ConnectorError>) {
        let mut host = FakeHost::new().with_config("base_url", "https://crm.example.com").with_config("mode", mode);
        let result = run_sync(Hostile, &mut host, None);
        (host, result)
    }

    #[test]
    fn ok_emits_three_in_one_batch_and_checkpoints() {
        let (host, result) = run("ok");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert!(host.violations().is_empty(), "{:?}", host.violations());
        assert_eq!(host.batch_sizes(), [3]);
        assert_eq!(host.checkpoints().len(), 1);
    }

    #[test]
    fn rule_breaking_modes_are_refused_by_a_host_that_checks() {
        for mode in ["undeclared-metric", "email-owner", "sentence-source-id", "bad-cursor"] {
            let (host, result) = run(mode);
            assert_eq!(result.map_err(|e| e.code), Err(codes::EMIT_REFUSED.into()), "{mode}");
            assert_eq!(host.violations().len(), 1, "{mode}");
        }
        let (host, result) = run("undeclared-log-code");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.violations().len(), 1);
    }

    #[test]
    fn denied_requests_become_the_denied_code() {
        let mut host = FakeHost::new().with_config("mode", "path://evil.example/");
        host.fail("//evil.example/", &[], HttpError::Denied);
        let result = run_sync(Hostile, &mut host, None);
        assert_eq!(result, Err(ConnectorError::new(DENIED)));
        assert!(host.violations().is_empty(), "{:?}", host.violations());
        // A host that answers instead of denying gets the tell-tale upsert.
        let (host, result) = run("host-header");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.requests()[0].headers, [("host".into(), "evil.example".into())]);
        assert_eq!(host.changes().len(), 1);
    }

    #[test]
    fn contract_0_2_modes_do_what_the_table_says() {
        let (host, result) = run("snap");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert!(host.violations().is_empty(), "{:?}", host.violations());
        assert_eq!(host.snapshots().len(), 1);
        assert_eq!(host.checkpoints().len(), 2);
        let (host, result) = run("snap-open");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert!(host.snapshots().is_empty(), "never closed");
        let (host, result) = run("dates");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.batch_sizes(), [5]);
        for rule in ["undeclared", "no-metrics", "seventeen-metrics", "empty-window", "twice", "end-without-begin"] {
            let (host, result) = run(&format!("bad-snapshot:{rule}"));
            assert_eq!(result.map_err(|e| e.code), Err(codes::EMIT_REFUSED.into()), "{rule}");
            assert_eq!(host.violations().len(), 1, "{rule}");
        }
        let (_, result) = run("budget");
        assert_eq!(result, Ok(SyncOutcome::BudgetExhausted { resume_at: None }));
        let mut host = FakeHost::new().with_config("mode", "budget-in:60").with_now(OCCURRED_AT_MS);
        let result = run_sync(Hostile, &mut host, None);
        assert_eq!(result, Ok(SyncOutcome::BudgetExhausted { resume_at: Some(OCCURRED_AT_MS + 3_600_000) }));
    }

    #[test]
    fn debug_and_bad_currency_and_roster() {
        let (host, result) = run("debug");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.debug_output(), ["secret debug Jane Doe"]);
        let (host, result) = run("bad-currency");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.batch_sizes(), [2]);
        let mut host = FakeHost::new();
        assert_eq!(run_roster(Hostile, &mut host).unwrap().len(), 1);
        let (host, result) = run("batch:10000");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.batch_sizes(), [10_000]);
        let (host, result) = run("batch:10001");
        assert_eq!(result.map_err(|e| e.code), Err(codes::EMIT_REFUSED.into()), "the fake host caps batches too");
        assert!(host.batch_sizes().is_empty());
        let (host, result) = run("pending:2500");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.batch_sizes(), [1_000, 1_000, 500]);
        assert_eq!(host.checkpoints().len(), 1);
        let (host, result) = run("cursor-marks:33");
        assert_eq!(result.map_err(|e| e.code), Err(codes::EMIT_REFUSED.into()));
        assert!(host.checkpoints().is_empty(), "the fake host refuses undeclared keys");
        let (_, result) = run("nonsense");
        assert_eq!(result, Err(ConnectorError::new(codes::BAD_CONFIG)));
    }
}
