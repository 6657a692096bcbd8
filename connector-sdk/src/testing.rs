//! Run a connector natively, against canned CRM answers, and see exactly what it would do.
//!
//! [`FakeHost`] plays the host: it serves canned answers by path and query (or from a
//! closure), records every request, collects the emitted changes, checkpoints, logs and
//! debug output, holds the config and a fixed clock, and checks what the connector does
//! against the contract the way the real host does (undeclared metrics, wrong kinds,
//! identifiers that are not identifier-shaped, undeclared cursor keys, log and error codes).
//! [`run_sync`] and [`run_roster`] run a connector over it.
//!
//! ```
//! use oneup_connector_sdk::testing::{FakeHost, run_sync};
//! use oneup_connector_sdk::{
//!     Connector, ConnectorError, Ctx, Cursor, Descriptor, KpiChange, MetricKind, Setting, SyncOutcome,
//! };
//!
//! struct Calls;
//!
//! impl Connector for Calls {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("calls", "0.1.0")
//!             .with_config(Setting::required("base_url"))
//!             .with_metric("calls", MetricKind::Count)
//!     }
//!
//!     fn sync(ctx: &mut Ctx<'_>, _since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
//!         let ids: Vec<u64> = ctx.get_json("/calls", &[("done", "true")])?;
//!         for id in ids {
//!             ctx.push(KpiChange::count("calls", "u-7", id, 1_750_000_000_000, 1))?;
//!         }
//!         Ok(SyncOutcome::Complete)
//!     }
//! }
//!
//! let mut host = FakeHost::new().with_config("base_url", "https://crm.example.com");
//! host.respond_json("/calls", &[("done", "true")], "[41, 42]");
//! assert_eq!(run_sync(Calls, &mut host, None), Ok(SyncOutcome::Complete));
//! assert!(host.violations().is_empty(), "{:?}", host.violations());
//! assert_eq!(host.count_total("calls"), 2);
//! for change in host.changes() {
//!     println!("{change}"); // upsert calls source=41 owner=u-7 at=2025-06-15T15:06:40Z 1
//! }
//! ```
//!
//! Canned bodies are held once, as shared bytes, and every answer hands out a reference to
//! them, so serving a large recorded body costs no copy.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::connector::{Connector, drive_roster, drive_sync};
use crate::host::Host;
use crate::http::{HttpError, HttpRequest, HttpResponse};
use crate::types::{
    Amount, ConnectorError, Cursor, Descriptor, EmitError, KpiChange, KpiUpsert, LogLevel, OccurredAt, RosterEntry,
    SnapshotWindow, SyncOutcome,
};

/// The clock of a new [`FakeHost`]: 2025-06-15T12:00:00Z.
pub const DEFAULT_NOW_MS: i64 = 1_749_988_800_000;

/// The most changes a new [`FakeHost`] accepts in one batch.
pub const DEFAULT_MAX_BATCH: usize = 10_000;

/// The earliest time the host accepts on a change: 2000-01-01T00:00:00Z.
const EARLIEST_MS: i64 = 946_684_800_000;

/// How far past the clock the host accepts a change's time: a year.
const LATEST_AHEAD_MS: i64 = 366 * 86_400_000;

/// A canned answer's key: the path and the sorted query parameters.
type RouteKey = (String, Vec<(String, String)>);

/// A closure that may answer a request.
type Handler = Box<dyn FnMut(&HttpRequest) -> Option<Result<HttpResponse, HttpError>>>;

/// The most upserts the host tracks inside one snapshot.
pub const MAX_SNAPSHOT_UPSERTS: usize = 1_000_000;

/// What became of one snapshot the connector declared and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The window it declared.
    pub window: SnapshotWindow,
    /// Upserts of the window's metrics seen between begin and end.
    pub upserts_seen: u64,
    /// The facts (metric, source id) it retracted when it was committed; empty until then.
    pub retracted: Vec<(String, String)>,
    /// Whether the commit that resolves it has been made (a checkpoint, or the end of a
    /// successful sync).
    pub committed: bool,
}

/// A structured log event the connector sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// Its severity.
    pub level: LogLevel,
    /// Its code.
    pub code: String,
    /// Its numeric fields.
    pub fields: Vec<(String, i64)>,
}

/// A fake host for running a connector natively in tests and benchmarks.
pub struct FakeHost {
    config: HashMap<String, String>,
    now_ms: i64,
    routes: HashMap<RouteKey, Result<HttpResponse, HttpError>>,
    handlers: Vec<Handler>,
    descriptor: Option<Descriptor>,
    record_changes: bool,
    max_batch: usize,
    requests: Vec<HttpRequest>,
    unmatched: Vec<HttpRequest>,
    changes: Vec<KpiChange>,
    change_count: u64,
    batch_sizes: Vec<usize>,
    checkpoints: Vec<Cursor>,
    logs: Vec<LogEvent>,
    debug: Vec<String>,
    violations: Vec<String>,
    dropped: Vec<(&'static str, KpiChange)>,
    open_snapshot: Option<(SnapshotWindow, HashSet<(String, String)>)>,
    closed_snapshots: Vec<HashSet<(String, String)>>,
    snapshots: Vec<SnapshotRecord>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl FakeHost {
    /// A host with no config, no canned answers, the clock at [`DEFAULT_NOW_MS`], and no
    /// descriptor yet ([`run_sync`] sets the connector's).
    pub fn new() -> Self {
        FakeHost {
            config: HashMap::new(),
            now_ms: DEFAULT_NOW_MS,
            routes: HashMap::new(),
            handlers: Vec::new(),
            descriptor: None,
            record_changes: true,
            max_batch: DEFAULT_MAX_BATCH,
            requests: Vec::new(),
            unmatched: Vec::new(),
            changes: Vec::new(),
            change_count: 0,
            batch_sizes: Vec::new(),
            checkpoints: Vec::new(),
            logs: Vec::new(),
            debug: Vec::new(),
            violations: Vec::new(),
            dropped: Vec::new(),
            open_snapshot: None,
            closed_snapshots: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    /// Every snapshot the connector closed, in order, with what it retracted once
    /// committed. Dates count as midnight UTC here (the real host uses the tenant's zone).
    pub fn snapshots(&self) -> &[SnapshotRecord] {
        &self.snapshots
    }

    /// Whether a snapshot is open (begun and not ended).
    pub fn snapshot_open(&self) -> bool {
        self.open_snapshot.is_some()
    }

    /// Resolves the closed snapshots as the host does at a commit: every fact of a window's
    /// metrics inside the window that was not upserted during the snapshot is retracted.
    fn commit_snapshots(&mut self) {
        let pending: Vec<usize> = (0..self.snapshots.len()).filter(|&i| !self.snapshots[i].committed).collect();
        let seen_sets = std::mem::take(&mut self.closed_snapshots);
        for (index, seen) in pending.into_iter().zip(seen_sets) {
            let window = self.snapshots[index].window.clone();
            let mut retracted = Vec::new();
            for ((metric, source), fact) in self.facts() {
                let inside = instant_ms(fact.occurred_at).is_some_and(|at| at >= window.from && at < window.to);
                if inside
                    && window.metrics.iter().any(|m| m.as_ref() == metric)
                    && !seen.contains(&(metric.clone(), source.clone()))
                {
                    retracted.push((metric, source));
                }
            }
            for (metric, source) in &retracted {
                self.changes.push(KpiChange::retract(metric.clone(), source.as_str()));
            }
            let record = &mut self.snapshots[index];
            record.retracted = retracted;
            record.committed = true;
        }
    }

    /// Sets a config value, in a chain.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.set_config(key, value);
        self
    }

    /// Sets a config value.
    pub fn set_config(&mut self, key: &str, value: &str) {
        self.config.insert(key.to_owned(), value.to_owned());
    }

    /// Sets the clock, in a chain.
    pub fn with_now(mut self, epoch_ms: i64) -> Self {
        self.now_ms = epoch_ms;
        self
    }

    /// Sets the clock.
    pub fn set_now(&mut self, epoch_ms: i64) {
        self.now_ms = epoch_ms;
    }

    /// Checks what the connector does against this descriptor from now on (config defaults,
    /// metrics, cursor keys, codes). [`run_sync`] and [`run_roster`] set the connector's own
    /// when none is set.
    pub fn set_descriptor(&mut self, descriptor: Descriptor) {
        for problem in descriptor.problems() {
            self.violations.push(format!("descriptor: {problem}"));
        }
        self.descriptor = Some(descriptor);
    }

    /// Sets the most changes the host accepts in one batch.
    pub fn set_max_batch(&mut self, max: usize) {
        self.max_batch = max;
    }

    /// Whether emitted changes are kept for [`FakeHost::changes`] (the default) or only
    /// counted, for benchmarks that emit millions.
    pub fn record_changes(&mut self, keep: bool) {
        self.record_changes = keep;
    }

    /// Answers the GET of `path` with exactly these query parameters (in any order) with
    /// `response`. The body is held once and shared by every answer.
    pub fn respond(&mut self, path: &str, query: &[(&str, &str)], response: HttpResponse) {
        let response = HttpResponse { body: response.body.into_shared(), ..response };
        self.routes.insert(route_key(path, query), Ok(response));
    }

    /// Answers the GET of `path` with exactly these query parameters with status 200 and
    /// `body`.
    pub fn respond_json(&mut self, path: &str, query: &[(&str, &str)], body: &str) {
        self.respond(path, query, HttpResponse::new(200, body));
    }

    /// Fails the GET of `path` with exactly these query parameters with `error`, as the host
    /// does when it denies a request or gives up on the CRM.
    pub fn fail(&mut self, path: &str, query: &[(&str, &str)], error: HttpError) {
        self.routes.insert(route_key(path, query), Err(error));
    }

    /// Lets `handler` answer requests that no canned answer matches; it returns `None` to
    /// pass a request on to the next handler. Handlers are asked in the order they were
    /// added. A request nobody answers gets a 404 and is listed in
    /// [`FakeHost::unmatched_requests`].
    pub fn respond_with<F>(&mut self, handler: F)
    where
        F: FnMut(&HttpRequest) -> Option<Result<HttpResponse, HttpError>> + 'static,
    {
        self.handlers.push(Box::new(handler));
    }

    /// Every request the connector made, in order.
    pub fn requests(&self) -> &[HttpRequest] {
        &self.requests
    }

    /// The requests that no canned answer or handler answered.
    pub fn unmatched_requests(&self) -> &[HttpRequest] {
        &self.unmatched
    }

    /// Forgets the requests made so far (for looking at a second sync's alone).
    pub fn clear_requests(&mut self) {
        self.requests.clear();
        self.unmatched.clear();
    }

    /// Every change the host accepted, in order (empty if [`FakeHost::record_changes`] was
    /// turned off).
    pub fn changes(&self) -> &[KpiChange] {
        &self.changes
    }

    /// How many changes the host accepted.
    pub fn change_count(&self) -> u64 {
        self.change_count
    }

    /// The size of every batch the host accepted, in order.
    pub fn batch_sizes(&self) -> &[usize] {
        &self.batch_sizes
    }

    /// Every checkpoint the host accepted, in order.
    pub fn checkpoints(&self) -> &[Cursor] {
        &self.checkpoints
    }

    /// The last checkpoint: where the next sync would resume.
    pub fn last_checkpoint(&self) -> Option<&Cursor> {
        self.checkpoints.last()
    }

    /// Every structured log event, in order.
    pub fn logs(&self) -> &[LogEvent] {
        &self.logs
    }

    /// Every free-text debug message, in order.
    pub fn debug_output(&self) -> &[String] {
        &self.debug
    }

    /// Every rule of the contract the connector broke, described in a sentence each. The
    /// real host refuses the batch or checkpoint, or drops and counts the log event.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Changes the host accepted in a batch but then dropped one by one, with the reason
    /// the real host counts them under (`out_of_range`).
    pub fn dropped(&self) -> &[(&'static str, KpiChange)] {
        &self.dropped
    }

    /// The facts the accepted changes leave, keyed by metric and source id: every upsert
    /// replaces the fact before it and every retract removes it.
    pub fn facts(&self) -> BTreeMap<(String, String), KpiUpsert> {
        let mut facts = BTreeMap::new();
        for change in &self.changes {
            let key = (change.metric().to_owned(), change.source_id().as_str().to_owned());
            match change {
                KpiChange::Upsert(upsert) => {
                    facts.insert(key, upsert.clone());
                }
                KpiChange::Retract(_) => {
                    facts.remove(&key);
                }
            }
        }
        facts
    }

    /// The sum of a count metric over [`FakeHost::facts`].
    pub fn count_total(&self, metric: &str) -> i64 {
        self.facts()
            .values()
            .filter(|f| f.metric == metric)
            .map(|f| match f.value {
                Amount::Count(n) => n,
                Amount::Money(_) => 0,
            })
            .sum()
    }

    /// The sums of a money metric over [`FakeHost::facts`], in micros per currency.
    pub fn money_totals(&self, metric: &str) -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for fact in self.facts().values().filter(|f| f.metric == metric) {
            if let Amount::Money(money) = fact.value {
                *totals.entry(money.currency.as_str().to_owned()).or_default() += money.micros;
            }
        }
        totals
    }

    fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    /// The host's checks of one change: `Err` refuses the whole batch, `Ok(Some(reason))`
    /// drops the change alone.
    fn check_change(
        &self,
        descriptor: &Descriptor,
        change: &KpiChange,
    ) -> Result<Option<&'static str>, (EmitError, String)> {
        let metric = change.metric();
        let Some(kind) = descriptor.metric_kind(metric) else {
            return Err((EmitError::UndeclaredMetric, format!("metric {metric:?} is not declared")));
        };
        if !change.source_id().is_identifier_shaped() {
            return Err((
                EmitError::BadIdentifier,
                format!(
                    "source id {:?} is not 1 to 64 ASCII letters, digits and `-_.:`",
                    shorten(change.source_id().as_str())
                ),
            ));
        }
        let KpiChange::Upsert(upsert) = change else {
            return Ok(None);
        };
        if !upsert.owner.is_identifier_shaped() {
            return Err((
                EmitError::BadIdentifier,
                format!("owner {:?} is not 1 to 64 ASCII letters, digits and `-_.:`", shorten(upsert.owner.as_str())),
            ));
        }
        if upsert.value.kind() != kind {
            return Err((
                EmitError::WrongKind,
                format!("metric {metric:?} is {kind:?} but the value is {:?}", upsert.value.kind()),
            ));
        }
        match instant_ms(upsert.occurred_at) {
            Some(at) if (EARLIEST_MS..=self.now_ms + LATEST_AHEAD_MS).contains(&at) => {}
            _ => return Ok(Some("out_of_range")),
        }
        Ok(None)
    }
}

/// The instant of an occurred-at; a date is midnight UTC here. `None` for a date the host
/// would refuse (impossible, or a year outside 1900 to 9999).
fn instant_ms(at: OccurredAt) -> Option<i64> {
    match at {
        OccurredAt::Instant(ms) => Some(ms),
        OccurredAt::Date(d) => {
            let valid = (1900..=9999).contains(&d.year)
                && (1..=12).contains(&d.month)
                && d.day >= 1
                && d.day <= crate::time::days_in_month(d.year, d.month);
            valid.then(|| {
                crate::time::days_from_civil(i64::from(d.year), u32::from(d.month), u32::from(d.day)) * 86_400_000
            })
        }
    }
}

/// At most 80 characters of a string, for messages about values that may be huge.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn route_key(path: &str, query: &[(&str, &str)]) -> RouteKey {
    let mut query: Vec<(String, String)> = query.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    query.sort();
    (path.to_owned(), query)
}

impl Host for FakeHost {
    fn config(&mut self, key: &str) -> Option<String> {
        if let Some(value) = self.config.get(key) {
            return Some(value.clone());
        }
        let descriptor = self.descriptor.as_ref()?;
        descriptor.config.iter().find(|s| s.key == key).and_then(|s| s.default_value.clone())
    }

    fn now(&mut self) -> i64 {
        self.now_ms
    }

    fn http_get(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.push(request.clone());
        let mut query = request.query.clone();
        query.sort();
        if let Some(answer) = self.routes.get(&(request.path.clone(), query)) {
            return answer.clone();
        }
        for handler in &mut self.handlers {
            if let Some(answer) = handler(request) {
                return answer;
            }
        }
        self.unmatched.push(request.clone());
        Ok(HttpResponse::new(404, "no canned answer for this request"))
    }

    fn emit(&mut self, changes: &[KpiChange]) -> Result<(), EmitError> {
        if changes.len() > self.max_batch {
            self.violation(format!(
                "emit refused: a batch of {} changes is more than the {} allowed",
                changes.len(),
                self.max_batch
            ));
            return Err(EmitError::BatchTooLarge);
        }
        let mut drops = Vec::new();
        if let Some(descriptor) = &self.descriptor {
            for (at, change) in changes.iter().enumerate() {
                match self.check_change(descriptor, change) {
                    Ok(None) => {}
                    Ok(Some(reason)) => drops.push((at, reason)),
                    Err((error, why)) => {
                        self.violations.push(format!("emit refused: change {at}: {why}"));
                        return Err(error);
                    }
                }
            }
        }
        self.batch_sizes.push(changes.len());
        self.change_count += changes.len() as u64;
        for (at, reason) in &drops {
            self.dropped.push((reason, changes[*at].clone()));
        }
        if let Some((window, seen)) = self.open_snapshot.as_mut() {
            let mut dropped = drops.iter().map(|(at, _)| *at).peekable();
            for (at, change) in changes.iter().enumerate() {
                if dropped.peek() == Some(&at) {
                    dropped.next();
                    continue;
                }
                if let KpiChange::Upsert(u) = change
                    && window.metrics.contains(&u.metric)
                {
                    seen.insert((u.metric.to_string(), u.source_id.as_str().to_owned()));
                }
            }
            if seen.len() > MAX_SNAPSHOT_UPSERTS {
                self.violations.push(format!("snapshot refused: more than {MAX_SNAPSHOT_UPSERTS} upserts"));
                return Err(EmitError::BadSnapshot);
            }
        }
        if self.record_changes {
            let mut drops = drops.iter().map(|(at, _)| *at).peekable();
            for (at, change) in changes.iter().enumerate() {
                if drops.peek() == Some(&at) {
                    drops.next();
                    continue;
                }
                self.changes.push(change.clone());
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, cursor: &Cursor) -> Result<(), EmitError> {
        if let Some(descriptor) = &self.descriptor {
            let undeclared: Vec<String> = cursor
                .iter()
                .filter(|(key, _)| !descriptor.declares_cursor_key(key))
                .map(|(key, _)| shorten(key))
                .collect();
            if !undeclared.is_empty() || cursor.len() > descriptor.cursor_keys.len() {
                self.violations.push(format!("checkpoint refused: undeclared cursor keys {undeclared:?}"));
                return Err(EmitError::BadCursor);
            }
        }
        self.checkpoints.push(cursor.clone());
        self.commit_snapshots();
        Ok(())
    }

    fn snapshot_begin(&mut self, window: &SnapshotWindow) -> Result<(), EmitError> {
        let mut problems = Vec::new();
        if self.open_snapshot.is_some() {
            problems.push("a snapshot is already open".to_owned());
        }
        if window.metrics.is_empty() || window.metrics.len() > 16 {
            problems.push(format!("{} metrics (1 to 16 allowed)", window.metrics.len()));
        }
        if window.from >= window.to {
            problems.push("the window ends before it starts".to_owned());
        }
        if let Some(descriptor) = &self.descriptor {
            for metric in &window.metrics {
                if descriptor.metric_kind(metric).is_none() {
                    problems.push(format!("metric {:?} is not declared", shorten(metric)));
                }
            }
        }
        if !problems.is_empty() {
            self.violations.push(format!("snapshot refused: {}", problems.join("; ")));
            return Err(EmitError::BadSnapshot);
        }
        self.open_snapshot = Some((window.clone(), HashSet::new()));
        Ok(())
    }

    fn snapshot_end(&mut self) -> Result<(), EmitError> {
        let Some((window, seen)) = self.open_snapshot.take() else {
            self.violations.push("snapshot refused: snapshot_end with no snapshot open".to_owned());
            return Err(EmitError::BadSnapshot);
        };
        self.snapshots.push(SnapshotRecord {
            window,
            upserts_seen: seen.len() as u64,
            retracted: Vec::new(),
            committed: false,
        });
        self.closed_snapshots.push(seen);
        Ok(())
    }

    fn log(&mut self, level: LogLevel, code: &str, fields: &[(&str, i64)]) {
        if let Some(descriptor) = &self.descriptor {
            let mut problems = Vec::new();
            if !descriptor.declares_code(code) {
                problems.push(format!("log event dropped: code {:?} is not declared", shorten(code)));
            }
            for (name, _) in fields {
                if !descriptor.declares_code(name) {
                    problems.push(format!("log field dropped: name {:?} is not a declared code", shorten(name)));
                }
            }
            self.violations.extend(problems);
        }
        self.logs.push(LogEvent {
            level,
            code: code.to_owned(),
            fields: fields.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
        });
    }

    fn debug(&mut self, message: &str) {
        self.debug.push(message.to_owned());
    }
}

/// Runs one sync of `connector` over `host` from `since`, as the sandbox would, and
/// returns its outcome.
///
/// It gives the host the connector's descriptor (unless one is set), and records as a
/// violation an error whose code the connector did not declare.
pub fn run_sync<C: Connector>(
    connector: C,
    host: &mut FakeHost,
    since: Option<Cursor>,
) -> Result<SyncOutcome, ConnectorError> {
    let _ = connector;
    if host.descriptor.is_none() {
        host.set_descriptor(C::describe());
    }
    let result = drive_sync::<C>(host, since);
    // A snapshot does not outlive the sync: one still open is dropped, and closed ones are
    // resolved only by the final commit of a successful sync.
    host.open_snapshot = None;
    if result.is_ok() {
        host.commit_snapshots();
    } else {
        host.closed_snapshots.clear();
        host.snapshots.retain(|s| s.committed);
    }
    check_error_code(host, result.as_ref().err());
    result
}

/// Reads the roster of `connector` over `host`, as the sandbox would.
pub fn run_roster<C: Connector>(connector: C, host: &mut FakeHost) -> Result<Vec<RosterEntry>, ConnectorError> {
    let _ = connector;
    if host.descriptor.is_none() {
        host.set_descriptor(C::describe());
    }
    let result = drive_roster::<C>(host);
    check_error_code(host, result.as_ref().err());
    result
}

fn check_error_code(host: &mut FakeHost, error: Option<&ConnectorError>) {
    let Some(error) = error else {
        return;
    };
    let declared = host.descriptor.as_ref().is_none_or(|d| d.declares_code(&error.code));
    if !declared {
        let code = shorten(&error.code);
        host.violation(format!("error code {code:?} is not declared"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ctx, MetricKind, Money, Setting, codes};

    struct Probe;

    impl Connector for Probe {
        fn describe() -> Descriptor {
            Descriptor::new("probe", "0.1.0")
                .with_config(Setting::required("base_url"))
                .with_config(Setting::with_default("mode", "fine"))
                .with_metric("deals_won", MetricKind::Count)
                .with_metric("revenue", MetricKind::Money)
                .with_cursor_keys(&["page"])
                .with_log_codes(&["rows"])
        }

        fn sync(ctx: &mut Ctx<'_>, _: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
            let mode = ctx.config("mode").unwrap_or_default();
            let mut pages = 0;
            ctx.get_cursor_paged("/things", &[("limit", "2")], |ctx, response| {
                pages += 1;
                let page: crate::json::CursorPage<i64> = response.json()?;
                for id in &page.data {
                    ctx.push(KpiChange::count("deals_won", 7i64, *id, DEFAULT_NOW_MS, 1))?;
                }
                let next = page.next_cursor().map(str::to_owned);
                ctx.checkpoint(&Cursor::new().with("page", pages))?;
                Ok(next)
            })?;
            ctx.log(LogLevel::Info, "rows", &[("rows", pages)]);
            match mode.as_str() {
                "bad-metric" => ctx.push(KpiChange::count("nope", 1i64, 1i64, DEFAULT_NOW_MS, 1))?,
                "bad-owner" => ctx.push(KpiChange::count("deals_won", "a b", 1i64, 0, 1))?,
                "old" => ctx.push(KpiChange::count("deals_won", 1i64, 99i64, 0, 1))?,
                "money" => ctx.push(KpiChange::money(
                    "revenue",
                    1i64,
                    1i64,
                    DEFAULT_NOW_MS,
                    Money::parse("1.5", "EUR").unwrap(),
                ))?,
                "bad-code" => return Err(ConnectorError::new("made_up")),
                _ => {}
            }
            Ok(SyncOutcome::Complete)
        }
    }

    /// Emits the ids listed in config `ids` as deals won inside a snapshot of the day
    /// before the clock, plus a date-stamped one; `fail` makes the sync fail after
    /// `snapshot_end` and before any commit; `open` leaves the snapshot open.
    struct Snapshotter;

    impl Connector for Snapshotter {
        fn describe() -> Descriptor {
            Probe::describe().with_config(Setting::optional("ids")).with_config(Setting::optional("how"))
        }

        fn sync(ctx: &mut Ctx<'_>, _: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
            let ids = ctx.config("ids").unwrap_or_default();
            let how = ctx.config("how").unwrap_or_default();
            let day = 86_400_000;
            ctx.snapshot_begin(&SnapshotWindow::new(&["deals_won"], DEFAULT_NOW_MS - day, DEFAULT_NOW_MS))?;
            for id in ids.split(',').filter(|s| !s.is_empty()) {
                ctx.push(KpiChange::count("deals_won", 7i64, id, DEFAULT_NOW_MS - 1000, 1))?;
            }
            // Outside the window: never retracted by it.
            let date = crate::CalendarDate::parse("2025-01-02").unwrap();
            ctx.push(KpiChange::count("deals_won", 7i64, "dated", date, 1))?;
            if how == "open" {
                return Ok(SyncOutcome::Complete);
            }
            ctx.snapshot_end()?;
            if how == "fail" {
                return Err(ConnectorError::new(codes::HTTP_UNAVAILABLE));
            }
            ctx.checkpoint(&Cursor::new().with("page", 1))?;
            Ok(SyncOutcome::Complete)
        }
    }

    #[test]
    fn a_snapshot_retracts_what_it_did_not_see_once_committed() {
        let mut host = FakeHost::new().with_config("base_url", "https://x.example.com").with_config("ids", "a,b,c");
        assert_eq!(run_sync(Snapshotter, &mut host, None), Ok(SyncOutcome::Complete));
        assert!(host.violations().is_empty(), "{:?}", host.violations());
        assert_eq!(host.count_total("deals_won"), 4);
        assert_eq!(host.snapshots()[0].upserts_seen, 4);
        assert!(host.snapshots()[0].retracted.is_empty());

        // `b` was hard-deleted in the CRM: the next full read of the window misses it.
        host.set_config("ids", "a,c");
        assert_eq!(run_sync(Snapshotter, &mut host, None), Ok(SyncOutcome::Complete));
        assert_eq!(host.snapshots()[1].retracted, [("deals_won".to_owned(), "b".to_owned())]);
        assert_eq!(host.count_total("deals_won"), 3, "`dated` lies outside the window and stays");

        // A failed sync or a snapshot left open retracts nothing.
        for how in ["fail", "open"] {
            host.set_config("ids", "");
            host.set_config("how", how);
            let _ = run_sync(Snapshotter, &mut host, None);
            assert_eq!(host.count_total("deals_won"), 3, "{how}");
            assert_eq!(host.snapshots().len(), 2, "{how}");
        }
    }

    #[test]
    fn broken_snapshot_rules_are_refused() {
        let mut host = FakeHost::new();
        host.set_descriptor(Probe::describe());
        let mut ctx = Ctx::new(&mut host);
        assert!(ctx.snapshot_end().is_err());
        assert!(ctx.snapshot_begin(&SnapshotWindow::new(&["nope"], 0, 1)).is_err());
        assert!(ctx.snapshot_begin(&SnapshotWindow::new(&["deals_won"], 5, 5)).is_err());
        assert!(ctx.snapshot_begin(&SnapshotWindow::new(&[], 0, 1)).is_err());
        assert!(ctx.snapshot_begin(&SnapshotWindow::new(&["deals_won"], 0, 1)).is_ok());
        assert!(ctx.snapshot_begin(&SnapshotWindow::new(&["deals_won"], 0, 1)).is_err());
        assert_eq!(host.violations().len(), 5, "{:?}", host.violations());
    }

    #[test]
    fn dates_are_checked_like_instants() {
        let mut host = FakeHost::new();
        host.set_descriptor(Probe::describe());
        let ok = crate::CalendarDate::parse("2025-06-12").unwrap();
        let ancient = crate::CalendarDate { year: 1899, month: 12, day: 31 };
        let impossible = crate::CalendarDate { year: 2025, month: 2, day: 30 };
        let changes = [
            KpiChange::count("deals_won", 1i64, 1i64, ok, 1),
            KpiChange::count("deals_won", 1i64, 2i64, ancient, 1),
            KpiChange::count("deals_won", 1i64, 3i64, impossible, 1),
        ];
        host.emit(&changes).unwrap();
        assert_eq!(host.count_total("deals_won"), 1);
        assert_eq!(host.dropped().len(), 2);
        assert_eq!(crate::CalendarDate::parse("2025-02-30"), None);
        assert_eq!(changes[0].to_string(), "upsert deals_won source=1 owner=1 at=2025-06-12 1");
    }

    fn host() -> FakeHost {
        let mut host = FakeHost::new().with_config("base_url", "https://x.example.com");
        host.respond_json("/things", &[("limit", "2")], r#"{"data":[1,2],"additional_data":{"next_cursor":"c2"}}"#);
        host.respond_json(
            "/things",
            &[("cursor", "c2"), ("limit", "2")],
            r#"{"data":[3],"additional_data":{"next_cursor":null}}"#,
        );
        host
    }

    #[test]
    fn a_sync_is_served_recorded_and_checked() {
        let mut host = host();
        assert_eq!(run_sync(Probe, &mut host, None), Ok(SyncOutcome::Complete));
        assert!(host.violations().is_empty(), "{:?}", host.violations());
        assert_eq!(host.requests().len(), 2);
        assert_eq!(host.requests()[1].query_value("cursor"), Some("c2"));
        assert_eq!(host.count_total("deals_won"), 3);
        assert_eq!(host.checkpoints().len(), 2);
        assert_eq!(host.last_checkpoint().unwrap().get("page"), Some(2));
        assert_eq!(host.batch_sizes(), [2, 1]);
        assert_eq!(host.logs()[0].fields, [("rows".to_owned(), 2)]);
    }

    #[test]
    fn broken_rules_are_refused_and_described() {
        for (mode, code) in [("bad-metric", codes::EMIT_REFUSED), ("bad-owner", codes::EMIT_REFUSED)] {
            let mut host = host().with_config("mode", mode);
            let error = run_sync(Probe, &mut host, None).unwrap_err();
            assert_eq!(error.code, code);
            assert_eq!(host.violations().len(), 1, "{:?}", host.violations());
        }
        let mut host = host().with_config("mode", "bad-code");
        assert!(run_sync(Probe, &mut host, None).is_err());
        assert!(host.violations()[0].contains("made_up"));
    }

    #[test]
    fn out_of_range_times_are_dropped_alone() {
        let mut host = host().with_config("mode", "old");
        assert_eq!(run_sync(Probe, &mut host, None), Ok(SyncOutcome::Complete));
        assert_eq!(host.dropped().len(), 1);
        assert_eq!(host.change_count(), 4);
        assert_eq!(host.changes().len(), 3);
    }

    #[test]
    fn money_totals_add_up_per_currency() {
        let mut host = host().with_config("mode", "money");
        run_sync(Probe, &mut host, None).unwrap();
        assert_eq!(host.money_totals("revenue")["EUR"], 1_500_000);
        assert_eq!(
            host.changes().last().unwrap().to_string(),
            "upsert revenue source=1 owner=1 at=2025-06-15T12:00:00Z 1.5 EUR"
        );
    }

    #[test]
    fn unmatched_requests_get_a_404_and_are_listed() {
        let mut host = FakeHost::new();
        let error = run_sync(Probe, &mut host, None).unwrap_err();
        assert_eq!(error, ConnectorError::with_status(codes::HTTP_STATUS, 404));
        assert_eq!(host.unmatched_requests().len(), 1);
    }

    #[test]
    fn handlers_answer_what_routes_do_not() {
        let mut host = FakeHost::new();
        host.respond_with(|request| {
            (request.path == "/things")
                .then(|| Ok(HttpResponse::new(200, r#"{"data":[5],"additional_data":{"next_cursor":null}}"#)))
        });
        assert_eq!(run_sync(Probe, &mut host, None), Ok(SyncOutcome::Complete));
        assert_eq!(host.count_total("deals_won"), 1);
        let mut denied = FakeHost::new();
        denied.fail("/things", &[("limit", "2")], HttpError::Denied);
        let error = run_sync(Probe, &mut denied, None).unwrap_err();
        assert_eq!(error.code, codes::HTTP_DENIED);
    }
}
