//! A connector that breaks the rules on purpose, for the sandbox tests.
//!
//! Its config key `mode` chooses what one sync does:
//!
//! | mode | what the sync does |
//! |---|---|
//! | `ok` | emits 3 valid `deals_won` upserts (`ok-1`..`ok-3`) in one batch, checkpoints, completes |
//! | `loop` | spins forever |
//! | `alloc` | grows its memory without bound |
//! | `huge-batch` | emits 1,000,000 valid changes in one batch |
//! | `huge-event` | emits one upsert whose owner id is a 10 MB string |
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
//!
//! An unknown mode fails with the code `bad_config`. The roster, whatever the mode, is one
//! entry: CRM user `u-1` with e-mail `hostile.user@example.com`.
//!
//! Every valid upsert is a `deals_won` count of 1 (or `revenue` where said) credited to owner
//! `u-1` at 2025-06-02T10:00:00Z.

#![warn(missing_docs)]

use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Cursor, Descriptor, HttpError, HttpRequest, KpiChange, LogLevel,
    MetricKind, Money, RosterEntry, Setting, SyncOutcome, codes,
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

/// The one cursor key it declares.
pub const CURSOR_KEY: &str = "position";

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

impl Connector for Hostile {
    fn describe() -> Descriptor {
        Descriptor::new("hostile", env!("CARGO_PKG_VERSION"))
            .with_config(Setting::required("base_url"))
            .with_config(Setting::with_default("mode", "ok"))
            .with_allowed_host("*.example.com")
            .with_auth(AuthScheme::None)
            .with_metric("deals_won", MetricKind::Count)
            .with_metric("revenue", MetricKind::Money)
            .with_cursor_keys(&[CURSOR_KEY])
            .with_log_codes(&[DENIED])
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
            "huge-batch" => {
                let batch: Vec<KpiChange> =
                    (0..1_000_000u64).map(|i| KpiChange::count("deals_won", OWNER, i, OCCURRED_AT_MS, 1)).collect();
                ctx.emit(&batch)?;
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
            other => match other.strip_prefix("path:") {
                Some(path) => return probe(ctx, &HttpRequest::get(path)),
                None => return Err(ConnectorError::new(codes::BAD_CONFIG)),
            },
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
    fn debug_and_bad_currency_and_roster() {
        let (host, result) = run("debug");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.debug_output(), ["secret debug Jane Doe"]);
        let (host, result) = run("bad-currency");
        assert_eq!(result, Ok(SyncOutcome::Complete));
        assert_eq!(host.batch_sizes(), [2]);
        let mut host = FakeHost::new();
        assert_eq!(run_roster(Hostile, &mut host).unwrap().len(), 1);
        let (_, result) = run("nonsense");
        assert_eq!(result, Err(ConnectorError::new(codes::BAD_CONFIG)));
    }
}
