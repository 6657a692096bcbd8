//! `oneup connector check --validate`: the conformance suite. One line per check on stdout,
//! `PASS`, `FAIL` or `SKIP` (not applicable, or depends on a check that failed), then a
//! count; the exit code is 1 if any check failed.
//!
//! The suite makes one roster call and up to four syncs, every one from a fresh instance
//! with the same tenant key (so the same CRM ids hash alike), through the toolkit's
//! transport — live (`--config`/`--secret`) or offline (`--replay`):
//!
//! | check | what passes |
//! |---|---|
//! | `describe` | the component loads and its descriptor passes the host's validation |
//! | `completes` | the roster call and a first sync end without error |
//! | `contract` | every emitted metric declared, no contract violation, log and error codes declared |
//! | `personal-data` | no owner, source or roster user id that is not identifier-shaped crossed (the host refuses e-mail-, phone- and sentence-shaped ids: `@`, `+`, spaces, …) |
//! | `paging-terminates` | the first sync ends by itself before its deadline and CPU budget, within `--max-requests` requests, no identical request answered more than [`MAX_REPEATS`] times |
//! | `rerun-from-cursor` | a second sync from the committed cursor leaves the facts exactly as they were (by metric, source, value and time): re-emitting identical facts and retracting absent ones is allowed |
//! | `survives-429` | a fresh sync whose middle request is answered once `429` with `Retry-After: 0` ends with the same facts: the host's retry makes it invisible |
//! | `survives-401` | refreshable auth (`oauth2-refresh`, `bullhorn-session`): a fresh sync whose middle request is answered once `401` renews the grant, retries and ends with the same facts. Api-key (or no) auth cannot renew anything: the sync must end with a typed error (a declared code) and keep only facts committed at checkpoints, all equal to the first sync's — or complete with the same facts |

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::{Guard, Plan, RunLog, Toolkit};
use crate::cli::facts::{FactTable, TableSink};
use crate::ingest::model::{KeyedHash, Value};
use crate::ingest::validate::ContractViolation;
use crate::runtime::manifest::{AuthSpec, Manifest};
use crate::runtime::{IntegrationSetup, LoadedConnector, Runtime, SyncError, SyncOutcome, SyncReport};

/// Check names, as printed.
pub const DESCRIBE: &str = "describe";
/// See [`DESCRIBE`].
pub const COMPLETES: &str = "completes";
/// See [`DESCRIBE`].
pub const CONTRACT: &str = "contract";
/// See [`DESCRIBE`].
pub const PERSONAL_DATA: &str = "personal-data";
/// See [`DESCRIBE`].
pub const PAGING: &str = "paging-terminates";
/// See [`DESCRIBE`].
pub const RERUN: &str = "rerun-from-cursor";
/// See [`DESCRIBE`].
pub const SURVIVES_429: &str = "survives-429";
/// See [`DESCRIBE`].
pub const SURVIVES_401: &str = "survives-401";

/// How often one identical request may be answered (2xx) in one sync.
pub const MAX_REPEATS: u32 = 3;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// Not applicable, or it depends on a check that failed.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The check.
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// Why, in a sentence (codes, counts and lengths; never CRM text).
    pub detail: String,
}

impl Verdict {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self { name, status, detail: detail.into() }
    }

    /// A passed check.
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Pass, detail)
    }

    /// A failed check.
    pub fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Fail, detail)
    }

    /// A skipped check.
    pub fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail)
    }
}

/// Prints `PASS name: detail` on stdout.
pub fn print_line(verdict: &Verdict) {
    let status = match verdict.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Skip => "SKIP",
    };
    println!("{status} {}: {}", verdict.name, verdict.detail);
}

/// Facts by (metric, source): (occurred at, value).
type Facts = HashMap<(String, KeyedHash), (i64, Value)>;

fn facts_of(table: &Arc<Mutex<FactTable>>) -> Facts {
    let table = table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    table.facts().map(|f| ((f.metric.clone(), f.source), (f.occurred_at_ms, f.value))).collect()
}

/// How `after` differs from `before`: (new, changed, removed).
fn diff(before: &Facts, after: &Facts) -> (usize, usize, usize) {
    let new = after.keys().filter(|k| !before.contains_key(*k)).count();
    let changed = after.iter().filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v)).count();
    let removed = before.keys().filter(|k| !after.contains_key(*k)).count();
    (new, changed, removed)
}

/// A sync into `table`, from `table`'s cursor when `resume`, counted by the toolkit.
async fn sync(
    env: &Env<'_>,
    table: &Arc<Mutex<FactTable>>,
    resume: bool,
    plan: Plan,
    debug: bool,
) -> (SyncReport, RunLog) {
    let since =
        if resume { table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cursor.clone() } else { None };
    let sink = TableSink { table: table.clone(), on_change: None, on_snapshot: None };
    env.toolkit.begin(plan);
    let report = env.runtime.sync(env.connector, (env.setup)(debug), since.as_ref(), Box::new(sink)).await;
    (report, env.toolkit.end())
}

struct Env<'a> {
    toolkit: &'a Toolkit,
    runtime: &'a Runtime,
    connector: &'a LoadedConnector,
    setup: &'a dyn Fn(bool) -> IntegrationSetup,
}

fn error_text(e: &SyncError) -> String {
    format!("{} ({e})", e.code())
}

fn outcome_text(outcome: &SyncOutcome) -> &'static str {
    match outcome {
        SyncOutcome::Complete => "complete",
        SyncOutcome::BudgetExhausted(_) => "budget exhausted",
    }
}

fn describe(manifest: &Manifest) -> Verdict {
    let auth = match &manifest.auth {
        AuthSpec::None => "none".to_owned(),
        AuthSpec::ApiKeyHeader { header, .. } => format!("api-key header `{header}`"),
        AuthSpec::Oauth2Refresh { .. } => "oauth2-refresh".to_owned(),
        AuthSpec::BullhornSession { .. } => "bullhorn-session".to_owned(),
    };
    Verdict::pass(
        DESCRIBE,
        format!(
            "{} {} (contract {}): {} metrics, {} log codes, {} cursor keys, auth {auth}, hosts {}",
            manifest.id,
            manifest.version,
            manifest.contract,
            manifest.metrics.len(),
            manifest.log_codes.len(),
            manifest.cursor_keys.len(),
            manifest.allowed_hosts.join(" ")
        ),
    )
}

/// Runs the suite after the component loaded and its settings were checked.
pub async fn run(
    toolkit: &Toolkit,
    runtime: &Runtime,
    connector: &LoadedConnector,
    setup: &dyn Fn(bool) -> IntegrationSetup,
) -> anyhow::Result<ExitCode> {
    let env = Env { toolkit, runtime, connector, setup };
    let manifest = connector.manifest();
    let guard = Guard { max_requests: toolkit.max_requests(), max_repeats: MAX_REPEATS };
    let guarded = Plan { fault: None, guard: Some(guard) };
    let mut verdicts = vec![describe(manifest)];

    toolkit.begin(guarded.clone());
    let roster = runtime.roster(connector, setup(false)).await;
    let roster_log = toolkit.end();
    eprintln!(
        "validate: roster: {} ({} requests)",
        match &roster {
            Ok(users) => format!("{} users", users.len()),
            Err(e) => error_text(e),
        },
        roster_log.connector_requests
    );

    let baseline = Arc::new(Mutex::new(FactTable::default()));
    let (first, first_log) = sync(&env, &baseline, false, guarded.clone(), true).await;
    eprintln!(
        "validate: first sync: {} ({} requests, {} host auth calls, {} upserts, {} retractions, {} checkpoints)",
        match &first.result {
            Ok(o) => outcome_text(o).to_owned(),
            Err(e) => error_text(e),
        },
        first_log.connector_requests,
        first_log.host_requests,
        first.stats.upserts,
        first.stats.retractions,
        first.stats.checkpoints
    );
    let first_facts = facts_of(&baseline);

    verdicts.push(completes(&roster, &roster_log, &first, &first_log, first_facts.len()));
    verdicts.push(contract(manifest, &first, &baseline));
    verdicts.push(personal_data(&roster, &first));
    verdicts.push(paging(&first, &first_log, guard));

    let base_ok = first.result.is_ok() && first_log.unmatched == 0;
    if !base_ok {
        for name in [RERUN, SURVIVES_429, SURVIVES_401] {
            verdicts.push(Verdict::skip(name, "needs a first sync that completes"));
        }
    } else {
        verdicts.push(rerun(&env, &baseline, &first_facts, guarded.clone()).await);
        let n = first_log.connector_requests;
        let k = n.div_ceil(2);
        if n == 0 {
            verdicts.push(Verdict::skip(SURVIVES_429, "the sync made no HTTP request"));
            verdicts.push(Verdict::skip(SURVIVES_401, "the sync made no HTTP request"));
        } else {
            let plan = Plan { fault: Some((k, 429)), guard: Some(guard) };
            verdicts.push(survives_429(&env, plan, k, n, &first, &first_facts).await);
            let plan = Plan { fault: Some((k, 401)), guard: Some(guard) };
            verdicts.push(survives_401(&env, plan, k, n, &first_facts).await);
        }
    }

    for verdict in &verdicts {
        print_line(verdict);
    }
    let count = |s: Status| verdicts.iter().filter(|v| v.status == s).count();
    let (passed, failed, skipped) = (count(Status::Pass), count(Status::Fail), count(Status::Skip));
    println!("validate: {passed} passed, {failed} failed, {skipped} skipped");
    toolkit.finish()?;
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn completes(
    roster: &Result<Vec<crate::runtime::RosterUser>, SyncError>,
    roster_log: &RunLog,
    first: &SyncReport,
    log: &RunLog,
    facts: usize,
) -> Verdict {
    if let Err(e) = roster {
        return Verdict::fail(COMPLETES, format!("the roster call failed: {}", error_text(e)));
    }
    let unmatched = roster_log.unmatched + log.unmatched;
    if unmatched > 0 {
        return Verdict::fail(
            COMPLETES,
            format!(
                "{unmatched} requests are not in the recording (answered 404): record again with --record --validate"
            ),
        );
    }
    match &first.result {
        Err(e) => Verdict::fail(COMPLETES, format!("the first sync failed: {}", error_text(e))),
        Ok(outcome) => Verdict::pass(
            COMPLETES,
            format!(
                "roster and first sync {} in {} ms: {} upserts, {} retractions, {} checkpoints, {facts} facts held",
                outcome_text(outcome),
                first.duration.as_millis(),
                first.stats.upserts,
                first.stats.retractions,
                first.stats.checkpoints
            ),
        ),
    }
}

fn contract(manifest: &Manifest, first: &SyncReport, table: &Arc<Mutex<FactTable>>) -> Verdict {
    if let Err(SyncError::Contract(v)) = &first.result
        && !matches!(v, ContractViolation::BadIdentifier { .. })
    {
        return Verdict::fail(CONTRACT, format!("the host refused the connector's output: {} ({v})", v.code()));
    }
    if let Err(SyncError::Connector { code, .. }) = &first.result
        && code == "undeclared_code"
    {
        return Verdict::fail(CONTRACT, "the sync failed with an error code the descriptor does not declare");
    }
    if first.stats.logs_dropped > 0 {
        return Verdict::fail(
            CONTRACT,
            format!("{} log events used codes the descriptor does not declare (dropped)", first.stats.logs_dropped),
        );
    }
    let mut emitted: Vec<String> = {
        let table = table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        table.facts().map(|f| f.metric.clone()).collect()
    };
    emitted.sort();
    emitted.dedup();
    let declared: Vec<&str> = manifest.metrics.iter().map(|m| m.slug.as_str()).collect();
    // `rejected` counts refused batches too; only these two are problems of the data.
    let parts: Vec<String> = first
        .stats
        .rejected
        .iter()
        .filter(|(code, _)| matches!(code.as_str(), "unknown_currency" | "out_of_range"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let dropped = if parts.is_empty() {
        String::new()
    } else {
        format!("; changes dropped as data problems: {}", parts.join(", "))
    };
    Verdict::pass(
        CONTRACT,
        format!(
            "emitted [{}] of the declared [{}]; no contract violation; every log code declared{dropped}",
            emitted.join(", "),
            declared.join(", ")
        ),
    )
}

fn personal_data(roster: &Result<Vec<crate::runtime::RosterUser>, SyncError>, first: &SyncReport) -> Verdict {
    const WHY: &str = "ids must be identifier-shaped (letters, digits, `.` `_` `:` `-`, at most 64 bytes): \
                       e-mail-, phone- and sentence-shaped values are personal data and never cross";
    if let Err(SyncError::Contract(ContractViolation::BadIdentifier { index, field, len })) = roster {
        return Verdict::fail(
            PERSONAL_DATA,
            format!("roster entry {index}: the CRM user id ({field}, {len} bytes) is not identifier-shaped; {WHY}"),
        );
    }
    if let Err(SyncError::Contract(ContractViolation::BadIdentifier { index, field, len })) = &first.result {
        return Verdict::fail(
            PERSONAL_DATA,
            format!("change {index} of a batch: its {field} ({len} bytes) is not identifier-shaped; {WHY}"),
        );
    }
    let users = roster.as_ref().map(Vec::len).unwrap_or(0);
    Verdict::pass(
        PERSONAL_DATA,
        format!(
            "every owner and source id identifier-shaped; roster: {users} entries of an id and an e-mail, ids identifier-shaped"
        ),
    )
}

fn paging(first: &SyncReport, log: &RunLog, guard: Guard) -> Verdict {
    match &first.result {
        Err(SyncError::Deadline) => {
            return Verdict::fail(PAGING, "the sync did not finish before its deadline (--deadline-secs)");
        }
        Err(SyncError::CpuLimit) => {
            return Verdict::fail(PAGING, "the sync used up its CPU time (--cpu-secs): does it loop?");
        }
        _ => {}
    }
    if let Some(reason) = &log.stopped {
        return Verdict::fail(PAGING, format!("stopped: {reason} (a page that never ends?)"));
    }
    let repeated = match &log.most_repeated {
        Some((_, n)) => format!("no request answered more than {n} times"),
        None => "no request answered".to_owned(),
    };
    Verdict::pass(
        PAGING,
        format!(
            "ended by itself after {} requests (at most {} allowed); {repeated} (at most {})",
            log.connector_requests, guard.max_requests, guard.max_repeats
        ),
    )
}

async fn rerun(env: &Env<'_>, table: &Arc<Mutex<FactTable>>, before: &Facts, plan: Plan) -> Verdict {
    let cursor = table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).cursor.clone();
    let shown = match &cursor {
        Some(c) => c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
        None => "none: the first sync never checkpointed".to_owned(),
    };
    let (report, log) = sync(env, table, true, plan, false).await;
    if log.unmatched > 0 {
        return Verdict::fail(
            RERUN,
            format!(
                "the second sync (cursor {shown}) asked for {} requests that are not in the recording: record with --record --validate",
                log.unmatched
            ),
        );
    }
    if let Err(e) = &report.result {
        return Verdict::fail(RERUN, format!("the second sync from cursor {shown} failed: {}", error_text(e)));
    }
    let after = facts_of(table);
    let (new, changed, removed) = diff(before, &after);
    if new + changed + removed > 0 {
        return Verdict::fail(
            RERUN,
            format!(
                "the second sync from cursor {shown} changed the facts: {new} new, {changed} changed, {removed} removed \
                 (compared by metric, source, value and time)"
            ),
        );
    }
    Verdict::pass(
        RERUN,
        format!(
            "the second sync from cursor {shown} made {} requests and re-emitted {} upserts and {} retractions, none changing a fact",
            log.connector_requests, report.stats.upserts, report.stats.retractions
        ),
    )
}

async fn survives_429(env: &Env<'_>, plan: Plan, k: u64, n: u64, first: &SyncReport, before: &Facts) -> Verdict {
    let table = Arc::new(Mutex::new(FactTable::default()));
    let (report, log) = sync(env, &table, false, plan, false).await;
    if !log.injected {
        return Verdict::fail(
            SURVIVES_429,
            format!(
                "the sync stopped after {} requests, before request {k} (the first made {n})",
                log.connector_requests
            ),
        );
    }
    let after = facts_of(&table);
    match (&report.result, &first.result) {
        (Ok(outcome), Ok(expected)) if outcome == expected && after == *before => Verdict::pass(
            SURVIVES_429,
            format!(
                "request {k} of {n} answered 429 (Retry-After: 0) once: the host retried, the sync ended {} with the same {} facts",
                outcome_text(outcome),
                after.len()
            ),
        ),
        (Err(e), _) => Verdict::fail(
            SURVIVES_429,
            format!("request {k} of {n} answered 429 once and the sync failed: {}", error_text(e)),
        ),
        _ => {
            let (new, changed, removed) = diff(before, &after);
            Verdict::fail(
                SURVIVES_429,
                format!(
                    "request {k} of {n} answered 429 once and the facts differ from the first sync's: {new} new, {changed} changed, {removed} missing"
                ),
            )
        }
    }
}

async fn survives_401(env: &Env<'_>, plan: Plan, k: u64, n: u64, before: &Facts) -> Verdict {
    let refreshable =
        matches!(env.connector.manifest().auth, AuthSpec::Oauth2Refresh { .. } | AuthSpec::BullhornSession { .. });
    let table = Arc::new(Mutex::new(FactTable::default()));
    let (report, log) = sync(env, &table, false, plan, false).await;
    if !log.injected {
        return Verdict::fail(
            SURVIVES_401,
            format!(
                "the sync stopped after {} requests, before request {k} (the first made {n})",
                log.connector_requests
            ),
        );
    }
    let after = facts_of(&table);
    let same = after == *before;
    if refreshable {
        return match &report.result {
            Ok(outcome) if same => Verdict::pass(
                SURVIVES_401,
                format!(
                    "request {k} of {n} answered 401 once: the host renewed the grant ({} token/login calls) and retried; \
                     the sync ended {} with the same {} facts",
                    log.host_requests,
                    outcome_text(outcome),
                    after.len()
                ),
            ),
            Ok(_) => {
                let (new, changed, removed) = diff(before, &after);
                Verdict::fail(
                    SURVIVES_401,
                    format!(
                        "after a 401 the facts differ from the first sync's: {new} new, {changed} changed, {removed} missing"
                    ),
                )
            }
            Err(e) => Verdict::fail(
                SURVIVES_401,
                format!("request {k} of {n} answered 401 once and the sync failed: {}", error_text(e)),
            ),
        };
    }
    // Api-key (or no) auth: nothing to renew. A clean typed error with only checkpointed,
    // correct facts kept; or a complete sync with the same facts.
    let consistent = after.iter().all(|(key, value)| before.get(key) == Some(value));
    match &report.result {
        Ok(_) if same => Verdict::pass(
            SURVIVES_401,
            format!("request {k} of {n} answered 401 once: the sync still ended with the same {} facts", after.len()),
        ),
        Ok(_) => Verdict::fail(
            SURVIVES_401,
            format!(
                "request {k} of {n} answered 401 once and the sync completed with other facts ({} instead of {}): \
                 a 401 must end the sync with an error, not be skipped",
                after.len(),
                before.len()
            ),
        ),
        Err(SyncError::Connector { code, http_status }) if code != "undeclared_code" && consistent => Verdict::pass(
            SURVIVES_401,
            format!(
                "api-key auth cannot be renewed: request {k} of {n} answered 401 ended the sync with the typed error `{code}`{}; \
                 {} facts committed up to the last checkpoint, all as in the first sync, {} changes after it discarded",
                http_status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
                after.len(),
                report.stats.accepted().saturating_sub(report.stats.committed)
            ),
        ),
        Err(SyncError::Connector { code, .. }) if code != "undeclared_code" => Verdict::fail(
            SURVIVES_401,
            format!("after a 401 the sync failed with `{code}` but committed facts that differ from the first sync's"),
        ),
        Err(e) => Verdict::fail(
            SURVIVES_401,
            format!(
                "request {k} of {n} answered 401 once: the sync did not end with a declared error code but {}",
                error_text(e)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_count_new_changed_and_removed_facts() {
        let key = |s: &str| {
            let k = crate::ingest::pseudonym::TenantKey::from_bytes([1; 32]);
            crate::ingest::pseudonym::keyed_hash(&k, crate::ingest::pseudonym::Domain::Source, "t", s)
        };
        let before: Facts = [
            (("deals_won".to_owned(), key("1")), (10, Value::Count(1))),
            (("deals_won".to_owned(), key("2")), (10, Value::Count(1))),
        ]
        .into();
        let mut after = before.clone();
        assert_eq!(diff(&before, &after), (0, 0, 0));
        after.insert(("deals_won".to_owned(), key("2")), (11, Value::Count(1)));
        after.insert(("deals_won".to_owned(), key("3")), (10, Value::Count(1)));
        after.remove(&("deals_won".to_owned(), key("1")));
        assert_eq!(diff(&before, &after), (1, 1, 1));
    }
}
