//! The per-sync state of one sandbox instance and the host side of the WIT imports.
//!
//! A `SyncState` lives in a fresh wasmtime `Store` for exactly one call into a connector.
//! It owns the WASI context (no files, no sockets, no environment), the memory limiter, the
//! CPU budget, and the `Session`: what this one sync may do and what it has done so far.
//!
//! The logic of every import is here once, on `Session`, in host types (`RawChange`,
//! `RawCursor`, `RawSnapshotWindow`, `ContractViolation`, `HttpFailure`). Each contract
//! version's bindings (`bindings::v0_1`, `bindings::v0_2`) only convert its WIT values into
//! these and the answers back, so a 0.1 connector gets exactly the 0.2 rules minus what 0.1
//! cannot express (dates, snapshots).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::BoxFuture;
use super::egress::{EgressPolicy, check_request_headers};
use super::http::{Credentials, HttpAnswer, HttpClient, HttpFailure};
use super::manifest::Manifest;
use crate::ingest::model::{Change, Cursor, RawChange, RawCursor, RawSnapshotWindow, Snapshot};
use crate::ingest::snapshot::SnapshotTracker;
use crate::ingest::validate::{ContractViolation, Validator};

/// Where validated changes go: printed by `oneup connector check`, summed by the demo,
/// committed to the store by ingestion.
///
/// Called at a checkpoint of the connector when enough is pending (see [`CommitPolicy`]):
/// with everything emitted since the previous commit, which may span several checkpoints,
/// and the latest checkpoint's cursor. Called once more at the end of a successful sync
/// with the rest (and the latest cursor not committed yet, or none), or after a failed one
/// with what preceded its last checkpoint. One commit at a time, in order; after a failed
/// commit no other is made. A commit may run in a task of its own while the connector
/// goes on reading, so a sink is `'static` and `Send`.
pub trait SyncSink: Send {
    /// Takes the changes since the last commit, the snapshots completed since then (each
    /// retracts the facts of its window it did not see, applied after the changes and in
    /// the same commit), the cursor that follows them, and the sync's counts so far
    /// (rejections included, for sinks that record them with the batch).
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
        snapshots: Vec<Snapshot>,
        cursor: Option<&'a Cursor>,
        stats: &'a SyncStats,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Receives a connector's free-text debug output: only the local developer tool has one.
pub type DebugSink = Box<dyn FnMut(&str) + Send>;

/// What one sync did, counted. Only numbers and declared codes.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SyncStats {
    /// HTTP requests the connector made (retries by the host not counted).
    pub http_requests: u64,
    /// Requests the egress guard refused.
    pub http_denied: u64,
    /// Upserts accepted (committed if the sync or a later checkpoint succeeded).
    pub upserts: u64,
    /// Retractions accepted.
    pub retractions: u64,
    /// Changes refused, by reason code (both per-change data problems and whole batches
    /// refused for breaking the contract).
    pub rejected: BTreeMap<String, u64>,
    /// Checkpoints the connector made and the host accepted (each commit carries the
    /// latest one; several may share a commit).
    pub checkpoints: u64,
    /// Commits the sink completed.
    pub commits: u64,
    /// Changes committed to the sink.
    pub committed: u64,
    /// Completed snapshots committed to the sink (contract 0.2).
    pub snapshots: u64,
    /// Log events dropped for an undeclared code.
    pub logs_dropped: u64,
    /// Debug messages dropped (production has no debug sink).
    pub debug_dropped: u64,
    /// Log events past the per-sync cap ([`MAX_LOG_EVENTS`]): counted, not logged.
    pub logs_capped: u64,
    /// Fields dropped from log events past the per-event cap ([`MAX_LOG_FIELDS`]).
    pub log_fields_dropped: u64,
    /// Per-request warnings (denied requests, refused emits) past the per-sync cap
    /// ([`MAX_WARNINGS`]): counted, not logged.
    pub warnings_suppressed: u64,
}

/// Most log events of a connector one sync writes to the host's log; the rest are counted.
pub const MAX_LOG_EVENTS: u64 = 1_000;
/// Most fields one log event keeps (the first ones declared); the rest are dropped and
/// counted.
pub const MAX_LOG_FIELDS: usize = 8;
/// Most per-request warnings (a denied request, a refused emit) one sync writes to the
/// host's log; the rest are counted.
pub const MAX_WARNINGS: u64 = 20;

/// The rejection code of a change to a metric the integration did not opt into.
pub const NOT_OPTED_IN: &str = "metric_not_opted_in";

impl SyncStats {
    /// Changes accepted, upserts and retractions.
    pub fn accepted(&self) -> u64 {
        self.upserts + self.retractions
    }

    /// Changes rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// A limit error raised by the memory limiter; downcast from the call's error.
#[derive(Debug, thiserror::Error)]
#[error("the connector exceeded its memory limit")]
pub struct MemoryLimitExceeded;

/// A limit error raised by the epoch callback; downcast from the call's error.
#[derive(Debug, thiserror::Error)]
#[error("the connector exceeded its CPU time")]
pub struct CpuLimitExceeded;

/// A failure of the sink, carried out of a host import as a trap.
#[derive(Debug, thiserror::Error)]
#[error("committing the connector's changes failed: {0}")]
pub struct SinkFailed(pub String);

/// Caps linear memory (and table and instance counts) of one instance.
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

/// When the host commits: at a checkpoint of the connector, once at least `changes`
/// changes wait (0: at every checkpoint) or `interval` has passed since the previous
/// commit; with `overlap`, the commit runs in a task of its own while the connector goes on
/// reading (the next commit waits for it). From [`super::SandboxLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitPolicy {
    pub(crate) changes: usize,
    pub(crate) interval: Duration,
    pub(crate) overlap: bool,
}

/// What a commit task hands back.
struct Landed {
    sink: Box<dyn SyncSink>,
    result: anyhow::Result<()>,
    changes: u64,
    snapshots: u64,
}

/// The sink and the one commit that may be in flight.
///
/// Commits are made one at a time, in order: a commit is handed over only once the
/// previous one has landed, and after a failed commit none is made (a later cursor must
/// never land without the changes before it). Waiting for a commit is cancellation-safe:
/// the task stays here until it has been awaited to its end, so a sync stopped at its
/// deadline can still wait for it and then commit up to its last checkpoint. Dropping the
/// committer (the sync itself dropped, e.g. at shutdown) aborts a commit in flight, which
/// then rolls back whole.
pub(crate) struct Committer {
    /// None while a commit is in flight (the task holds it), or while describing.
    sink: Option<Box<dyn SyncSink>>,
    in_flight: Option<tokio::task::JoinHandle<Landed>>,
    failed: Option<String>,
    /// When the previous commit was handed over (or the sync started).
    last: Instant,
    policy: CommitPolicy,
}

impl Committer {
    pub(crate) fn new(sink: Option<Box<dyn SyncSink>>, policy: CommitPolicy) -> Self {
        Self { sink, in_flight: None, failed: None, last: Instant::now(), policy }
    }

    /// Gives the committer its sink (before the sync starts).
    pub(crate) fn set_sink(&mut self, sink: Box<dyn SyncSink>) {
        self.sink = Some(sink);
        self.last = Instant::now();
    }

    /// Takes the sink back once every commit has landed (`settle` called).
    pub(crate) fn take_sink(&mut self) -> Option<Box<dyn SyncSink>> {
        self.sink.take()
    }

    /// Whether a checkpoint with `pending` changes waiting should commit now: enough
    /// changes, or enough time and the previous commit has landed (while it is still
    /// running, waiting for it would only stop the connector; the batch grows instead).
    fn due(&self, pending: usize) -> bool {
        pending >= self.policy.changes
            || (self.last.elapsed() >= self.policy.interval
                && self.in_flight.as_ref().is_none_or(tokio::task::JoinHandle::is_finished))
    }

    /// Waits for the commit in flight, if any, and counts it. Fails if it (or an earlier
    /// one) failed; a panic of the sink is resumed here.
    async fn settle(&mut self, stats: &mut SyncStats) -> Result<(), String> {
        if let Some(task) = self.in_flight.as_mut() {
            let joined = task.await;
            self.in_flight = None;
            match joined {
                Ok(landed) => {
                    self.sink = Some(landed.sink);
                    match landed.result {
                        Ok(()) => {
                            stats.commits += 1;
                            stats.committed += landed.changes;
                            stats.snapshots += landed.snapshots;
                        }
                        Err(e) => self.failed = Some(format!("{e:#}")),
                    }
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => self.failed = Some("the commit was cancelled".to_owned()),
            }
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Hands a commit to the sink, in a task of its own; the caller has settled the
    /// previous one. Without a sink (describing) nothing is committed.
    fn hand_over(&mut self, changes: Vec<Change>, snapshots: Vec<Snapshot>, cursor: Option<Cursor>, stats: &SyncStats) {
        debug_assert!(self.in_flight.is_none() && self.failed.is_none());
        let Some(mut sink) = self.sink.take() else { return };
        let counts = (changes.len() as u64, snapshots.len() as u64);
        let stats = stats.clone();
        self.last = Instant::now();
        let commit = async move {
            let result = sink.commit(changes, snapshots, cursor.as_ref(), &stats).await;
            Landed { sink, result, changes: counts.0, snapshots: counts.1 }
        };
        self.in_flight = Some(tokio::spawn(commit.in_current_span()));
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        if let Some(task) = self.in_flight.take() {
            task.abort();
        }
    }
}

/// What was accepted since the last commit, and the latest checkpoint among it.
///
/// Memory: `changes` holds what was checkpointed but not committed yet (fewer than the
/// policy's `changes` after any checkpoint, since reaching it commits) plus what was
/// emitted since the last checkpoint (at most `max_pending`, the contract's limit: more is
/// a violation); one more commit of at most the same size may be in flight.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    changes: Vec<Change>,
    /// `changes[..checkpointed]` precede `cursor`.
    checkpointed: usize,
    /// The latest checkpoint's cursor, if one was made since the last commit.
    cursor: Option<Cursor>,
    /// Snapshots ended since the last commit (the tracker holds them) ...
    ended: usize,
    /// ... of which the first `ended_checkpointed` ended before `cursor`.
    ended_checkpointed: usize,
}

impl Pending {
    /// Changes emitted since the last checkpoint.
    fn since_checkpoint(&self) -> usize {
        self.changes.len() - self.checkpointed
    }

    /// Drops what was emitted after the last checkpoint (a broken rule or a failed sync).
    fn drop_unchecked(&mut self) {
        self.changes.truncate(self.checkpointed);
    }
}

/// Everything that is not WASI plumbing: what this sync may do and what it did.
pub(crate) struct Session {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) config: BTreeMap<String, String>,
    /// None while describing: no requests at all.
    pub(crate) egress: Option<EgressPolicy>,
    pub(crate) credentials: Credentials,
    pub(crate) http: HttpClient,
    pub(crate) validator: Option<Arc<Validator>>,
    /// The sink, and when to commit to it.
    pub(crate) commits: Committer,
    /// Accepted and not committed yet.
    pub(crate) pending: Pending,
    /// Most changes held between two checkpoints of the connector.
    pub(crate) max_pending: usize,
    /// Snapshot windows open or ended since the last commit.
    pub(crate) snapshots: SnapshotTracker,
    pub(crate) stats: SyncStats,
    /// The first contract violation; once set, nothing more is accepted or committed.
    pub(crate) violation: Option<ContractViolation>,
    pub(crate) debug: Option<DebugSink>,
    /// The metrics the integration opted into; changes to others are dropped and counted.
    /// None: every declared metric (the check tool).
    pub(crate) opted_in: Option<Arc<std::collections::BTreeSet<String>>>,
    /// Log events and per-request warnings written so far (see the caps above).
    pub(crate) logged: u64,
    pub(crate) warned: u64,
}

/// The data of one sandbox `Store`.
pub(crate) struct SyncState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) cpu_ticks_left: u64,
    pub(crate) session: Session,
}

impl WasiView for SyncState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl Session {
    /// Whether one more per-request warning may be logged in this sync; counts it if not.
    fn may_warn(&mut self) -> bool {
        if self.warned < MAX_WARNINGS {
            self.warned += 1;
            true
        } else {
            self.stats.warnings_suppressed += 1;
            false
        }
    }

    fn refuse(&mut self, violation: ContractViolation, changes: u64) -> ContractViolation {
        *self.stats.rejected.entry(violation.code().to_owned()).or_default() += changes.max(1);
        if self.may_warn() {
            tracing::warn!(connector = %self.manifest.id, code = violation.code(), changes, "connector broke the contract");
        }
        if self.violation.is_none() {
            self.violation = Some(violation);
        }
        // Nothing emitted since the last checkpoint may be committed, and no snapshot ended
        // after it may retract anything; what preceded it is committed when the sync ends
        // (`abandon`), as it would have been at the checkpoint itself.
        self.pending.drop_unchecked();
        violation
    }

    /// Commits what precedes the latest checkpoint, with its cursor and the snapshots that
    /// ended before it; `wait`: until it has landed. Fails if this or an earlier commit
    /// failed.
    async fn commit_checkpointed(&mut self, wait: bool) -> Result<(), String> {
        // First the previous commit, before anything is taken: a sync stopped while
        // waiting here loses nothing.
        self.commits.settle(&mut self.stats).await?;
        let pending = &mut self.pending;
        let rest = pending.changes.split_off(pending.checkpointed);
        let changes = std::mem::replace(&mut pending.changes, rest);
        let mut snapshots = self.snapshots.take_completed();
        // Only after a failure can snapshots have ended after the checkpoint: dropped.
        snapshots.truncate(pending.ended_checkpointed);
        pending.ended -= pending.ended_checkpointed;
        pending.ended_checkpointed = 0;
        pending.checkpointed = 0;
        let cursor = pending.cursor.take();
        self.commits.hand_over(changes, snapshots, cursor, &self.stats);
        if wait || !self.commits.policy.overlap {
            self.commits.settle(&mut self.stats).await?;
        }
        Ok(())
    }

    /// The end of a successful sync: commits everything pending, with the latest cursor
    /// not committed yet (if any) and every ended snapshot (one still open is dropped), and
    /// waits until it has landed. Always commits, if only the run's counts.
    pub(crate) async fn finish(&mut self) -> Result<(), String> {
        self.pending.checkpointed = self.pending.changes.len();
        self.pending.ended_checkpointed = self.pending.ended;
        self.commit_checkpointed(true).await
    }

    /// The end of a failed sync: waits for a commit in flight, then commits what preceded
    /// the connector's last checkpoint (as if each checkpoint had committed at once) and
    /// drops the rest. Fails if a commit failed; nothing is committed after that.
    pub(crate) async fn abandon(&mut self) -> Result<(), String> {
        self.pending.drop_unchecked();
        let result = if self.pending.cursor.is_some() {
            self.commit_checkpointed(true).await
        } else {
            self.commits.settle(&mut self.stats).await
        };
        self.pending = Pending::default();
        self.snapshots.clear();
        result
    }

    // The host side of the contract's imports, in host types. The per-version adapters in
    // `bindings` convert WIT values into these and the answers back.

    /// `host.config`: a declared key's value (or its default).
    pub(crate) fn config(&self, key: &str) -> Option<String> {
        if !self.manifest.config.iter().any(|c| c.key == key) {
            return None;
        }
        self.config.get(key).cloned()
    }

    /// `host.http-get`: builds the URL from the base URL, checks the headers, sends it.
    pub(crate) async fn http_get(
        &mut self,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
    ) -> Result<HttpAnswer, HttpFailure> {
        self.stats.http_requests += 1;
        let Some(policy) = self.egress.as_ref() else {
            self.stats.http_denied += 1;
            return Err(HttpFailure::Denied);
        };
        let url = match policy.build_url(path, query) {
            Ok(url) => url,
            Err(err) => {
                self.stats.http_denied += 1;
                if self.may_warn() {
                    tracing::warn!(connector = %self.manifest.id, reason = err.code(), detail = %err, "egress denied");
                }
                return Err(HttpFailure::Denied);
            }
        };
        let headers = match check_request_headers(headers) {
            Ok(h) => h,
            Err(err) => {
                self.stats.http_denied += 1;
                if self.may_warn() {
                    tracing::warn!(connector = %self.manifest.id, reason = err.code(), detail = %err, "egress denied");
                }
                return Err(HttpFailure::Denied);
            }
        };
        self.http.get(policy, url, &headers, &self.credentials).await
    }

    /// `host.emit`: validates a batch; accepted changes wait for the next commit.
    pub(crate) fn emit(&mut self, changes: Vec<RawChange>) -> Result<(), ContractViolation> {
        let n = changes.len() as u64;
        if let Some(v) = self.violation {
            return Err(self.refuse(v, n));
        }
        let Some(validator) = self.validator.clone() else {
            // Describing: nothing may be emitted.
            return Err(self.refuse(ContractViolation::UndeclaredMetric { index: 0 }, n));
        };
        let max = validator.limits().max_batch;
        if changes.len() > max {
            return Err(self.refuse(ContractViolation::BatchTooLarge { len: changes.len(), max }, n));
        }
        let mut accepted = match validator.validate_batch(changes, now_ms()) {
            Ok(accepted) => accepted,
            Err(v) => return Err(self.refuse(v, n)),
        };
        for (reason, count) in std::mem::take(&mut accepted.rejected) {
            *self.stats.rejected.entry(reason.code().to_owned()).or_default() += count;
        }
        if let Some(opted_in) = &self.opted_in {
            // A declared metric the integration did not opt into: dropped and counted, like
            // a data problem (the connector may declare more than this tenant consented to).
            let before = accepted.changes.len();
            accepted.changes.retain(|change| match change {
                Change::Upsert(fact) => opted_in.contains(&fact.metric),
                Change::Retract { metric, .. } => opted_in.contains(metric),
            });
            let dropped = (before - accepted.changes.len()) as u64;
            if dropped > 0 {
                *self.stats.rejected.entry(NOT_OPTED_IN.to_owned()).or_default() += dropped;
            }
        }
        // The contract's limit counts what was emitted since the connector's last
        // checkpoint; what the host holds across checkpoints is bounded by its commit
        // policy (see `Pending`).
        let held = self.pending.since_checkpoint() + accepted.changes.len();
        if held > self.max_pending {
            // Too much emitted without a checkpoint: the host will not hold more.
            return Err(self.refuse(ContractViolation::BatchTooLarge { len: held, max: self.max_pending }, n));
        }
        if let Err(v) = self.snapshots.record(&accepted.changes) {
            return Err(self.refuse(v, n));
        }
        for change in &accepted.changes {
            match change {
                Change::Upsert(_) => self.stats.upserts += 1,
                Change::Retract { .. } => self.stats.retractions += 1,
            }
        }
        self.pending.changes.extend(accepted.changes);
        Ok(())
    }

    /// `host.checkpoint`: everything emitted so far precedes this cursor. Commits it, with
    /// what is pending from earlier checkpoints, when the commit policy says so (the host
    /// may commit a later cursor with everything before it). The outer error is a failed
    /// commit (it becomes a trap); the inner one a broken rule.
    pub(crate) async fn checkpoint(&mut self, cursor: RawCursor) -> wasmtime::Result<Result<(), ContractViolation>> {
        if let Some(v) = self.violation {
            return Ok(Err(self.refuse(v, 0)));
        }
        let cursor = match Cursor::validate(cursor, self.manifest.vocabulary()) {
            Ok(c) => c,
            Err(v) => return Ok(Err(self.refuse(v, 0))),
        };
        let pending = &mut self.pending;
        pending.checkpointed = pending.changes.len();
        pending.ended_checkpointed = pending.ended;
        pending.cursor = Some(cursor);
        self.stats.checkpoints += 1;
        if self.commits.due(self.pending.changes.len())
            && let Err(err) = self.commit_checkpointed(false).await
        {
            return Err(wasmtime::Error::new(SinkFailed(err)));
        }
        Ok(Ok(()))
    }

    /// `host.snapshot-begin` (contract 0.2).
    pub(crate) fn snapshot_begin(&mut self, window: RawSnapshotWindow) -> Result<(), ContractViolation> {
        if let Some(v) = self.violation {
            return Err(self.refuse(v, 0));
        }
        let Some(validator) = self.validator.clone() else {
            return Err(self.refuse(ContractViolation::UndeclaredMetric { index: 0 }, 0));
        };
        let begun = validator.validate_window(window).and_then(|w| self.snapshots.begin(w));
        begun.map_err(|v| self.refuse(v, 0))
    }

    /// `host.snapshot-end` (contract 0.2).
    pub(crate) fn snapshot_end(&mut self) -> Result<(), ContractViolation> {
        if let Some(v) = self.violation {
            return Err(self.refuse(v, 0));
        }
        self.snapshots.end().map_err(|v| self.refuse(v, 0))?;
        self.pending.ended += 1;
        Ok(())
    }

    /// `host.log`: declared codes only, declared field names only.
    /// At most [`MAX_LOG_EVENTS`] events per sync reach the log (the rest are counted), each
    /// with at most [`MAX_LOG_FIELDS`] fields (the first declared ones; the rest are dropped
    /// and counted): numbers can carry any text, so their volume is what is bounded.
    pub(crate) fn log(&mut self, level: LogLevel, code: &str, fields: &[(String, i64)]) {
        if !self.manifest.declares_code(code) {
            self.stats.logs_dropped += 1;
            return;
        }
        if self.logged >= MAX_LOG_EVENTS {
            self.stats.logs_capped += 1;
            return;
        }
        self.logged += 1;
        let mut kept: BTreeMap<&str, i64> = BTreeMap::new();
        for (k, v) in fields.iter().filter(|(k, _)| self.manifest.declares_code(k)) {
            if kept.len() < MAX_LOG_FIELDS || kept.contains_key(k.as_str()) {
                kept.insert(k.as_str(), *v);
            } else {
                self.stats.log_fields_dropped += 1;
            }
        }
        let fields = kept;
        let fields = serde_json::to_string(&fields).unwrap_or_default();
        let connector = self.manifest.id.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(connector, code, fields, "connector log"),
            LogLevel::Info => tracing::info!(connector, code, fields, "connector log"),
            LogLevel::Warn => tracing::warn!(connector, code, fields, "connector log"),
            LogLevel::Error => tracing::error!(connector, code, fields, "connector log"),
        }
    }

    /// `host.debug`: free text for the developer tool only.
    pub(crate) fn debug(&mut self, message: &str) {
        match self.debug.as_mut() {
            Some(sink) => sink(message),
            None => self.stats.debug_dropped += 1,
        }
    }
}

/// The severity of a connector's log event (the WIT `log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The host's wall clock, `host.now`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    //! The session's caps over the real types: a `Session` with a real manifest, validator
    //! and committer, and a sink that records what reaches it.

    use std::sync::Mutex;

    use super::*;
    use crate::ingest::model::{RawOccurredAt, RawValue};
    use crate::ingest::pseudonym::TenantKey;
    use crate::ingest::validate::{CursorProblem, Limits};
    use crate::runtime::bindings::latest::oneup::connector::types as wit;
    use crate::runtime::http::HttpLimits;

    /// 2025-06-02T10:00:00Z.
    const AT: i64 = 1_748_858_400_000;

    /// What reached the sink: per commit, the number of changes and the cursor.
    type Commits = Arc<Mutex<Vec<(usize, Option<Cursor>)>>>;

    struct Recorder(Commits);

    impl SyncSink for Recorder {
        fn commit<'a>(
            &'a mut self,
            changes: Vec<Change>,
            _snapshots: Vec<Snapshot>,
            cursor: Option<&'a Cursor>,
            _stats: &'a SyncStats,
        ) -> BoxFuture<'a, anyhow::Result<()>> {
            self.0.lock().unwrap().push((changes.len(), cursor.cloned()));
            Box::pin(async { Ok(()) })
        }
    }

    fn manifest() -> Arc<Manifest> {
        let mut log_codes: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
        log_codes.push("note".into());
        let d = wit::Descriptor {
            id: "capped".into(),
            version: "1.0.0".into(),
            metrics: vec![wit::MetricDecl { slug: "deals_won".into(), kind: wit::MetricKind::Count }],
            config: vec![wit::Setting { key: "base_url".into(), required: true, default_value: None }],
            secrets: vec![],
            base_url_key: "base_url".into(),
            allowed_hosts: vec!["*.example.com".into()],
            auth: wit::AuthScheme::None,
            log_codes,
            cursor_keys: vec!["position".into()],
            default_sync_interval_secs: 3600,
        };
        Arc::new(Manifest::from_descriptor(d, "0.2.0".into()).expect("a valid descriptor"))
    }

    /// A session with the given caps, committing into the returned record (at every
    /// checkpoint, in line).
    fn session(max_batch: usize, max_pending: usize) -> (Session, Commits) {
        let manifest = manifest();
        let limits = Limits { max_batch, ..Limits::default() };
        let validator = Validator::new(manifest.vocabulary().clone(), TenantKey::from_bytes([9; 32]), "capped", limits);
        let commits = Commits::default();
        let policy = CommitPolicy { changes: 0, interval: Duration::ZERO, overlap: false };
        let session = Session {
            manifest,
            config: BTreeMap::new(),
            egress: None,
            credentials: Credentials::None,
            http: HttpClient::new(HttpLimits::default()).expect("an HTTP client"),
            validator: Some(Arc::new(validator)),
            commits: Committer::new(Some(Box::new(Recorder(commits.clone()))), policy),
            pending: Pending::default(),
            max_pending,
            snapshots: SnapshotTracker::default(),
            stats: SyncStats::default(),
            violation: None,
            debug: None,
            opted_in: None,
            logged: 0,
            warned: 0,
        };
        (session, commits)
    }

    /// `n` valid upserts, source ids `{prefix}-0`..
    fn changes(prefix: &str, n: usize) -> Vec<RawChange> {
        (0..n)
            .map(|i| RawChange::Upsert {
                metric: "deals_won".into(),
                owner: "u-1".into(),
                source_id: format!("{prefix}-{i}"),
                occurred_at: RawOccurredAt::Instant(AT),
                value: RawValue::Count(1),
            })
            .collect()
    }

    fn cursor(position: i64) -> RawCursor {
        RawCursor(vec![("position".into(), position)])
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(future)
    }

    #[test]
    fn the_memory_limiter_allows_growth_up_to_the_cap_and_no_further() {
        use wasmtime::ResourceLimiter;
        let mut limiter = Limiter { memory_bytes: 64 << 20 };
        assert!(limiter.memory_growing(0, 64 << 20, None).expect("at the cap"));
        let refused = limiter.memory_growing(64 << 20, (64 << 20) + 1, None).expect_err("one byte over");
        assert!(refused.downcast_ref::<MemoryLimitExceeded>().is_some(), "{refused:?}");
        assert!(limiter.memory_growing(1 << 20, 2 << 20, Some(usize::MAX)).expect("well below"));
        assert!(limiter.table_growing(0, 100_000, None).expect("at the table cap"));
        assert!(!limiter.table_growing(100_000, 100_001, None).expect("refused, not a trap"));
        assert_eq!((limiter.instances(), limiter.tables(), limiter.memories()), (64, 64, 8));
    }

    #[test]
    fn a_batch_over_the_cap_is_refused_whole_and_ends_the_sync() {
        block_on(async {
            let (mut s, commits) = session(5, 1_000);
            assert_eq!(s.emit(changes("a", 5)), Ok(()), "at the cap");
            assert_eq!(s.checkpoint(cursor(1)).await.expect("no commit failed"), Ok(()));
            assert_eq!(s.emit(changes("b", 2)), Ok(()));
            let over = s.emit(changes("c", 6));
            assert_eq!(over, Err(ContractViolation::BatchTooLarge { len: 6, max: 5 }));
            assert_eq!(s.violation, over.err());
            assert_eq!(s.stats.rejected.get("batch_too_large"), Some(&6));
            assert_eq!(s.stats.upserts, 7, "nothing of the refused batch was taken");
            // Once refused, nothing more is taken, even a small batch.
            assert_eq!(s.emit(changes("d", 1)), over);
            assert_eq!(s.stats.upserts, 7);
            // The sync ends: what preceded the checkpoint was committed there, nothing after.
            assert_eq!(s.abandon().await, Ok(()));
            let commits = commits.lock().unwrap();
            assert_eq!(commits.len(), 1, "{commits:?}");
            assert_eq!(commits[0].0, 5);
        });
    }

    #[test]
    fn changes_past_the_pending_cap_are_refused_and_a_checkpoint_resets_the_count() {
        block_on(async {
            let (mut s, commits) = session(10, 25);
            for _ in 0..2 {
                assert_eq!(s.emit(changes("a", 10)), Ok(()));
            }
            assert_eq!(s.emit(changes("a", 5)), Ok(()), "25 held: at the cap");
            assert_eq!(s.checkpoint(cursor(1)).await.expect("no commit failed"), Ok(()));
            assert_eq!(commits.lock().unwrap().len(), 1, "committed at the checkpoint");
            // After the checkpoint the count starts again.
            for _ in 0..2 {
                assert_eq!(s.emit(changes("b", 10)), Ok(()));
            }
            assert_eq!(s.emit(changes("b", 5)), Ok(()));
            let over = s.emit(changes("c", 1));
            assert_eq!(over, Err(ContractViolation::BatchTooLarge { len: 26, max: 25 }));
            assert_eq!(s.stats.rejected.get("batch_too_large"), Some(&1));
            assert_eq!(s.stats.upserts, 50);
            // The checkpoint after the refusal is refused too; nothing since the last one lands.
            assert_eq!(s.checkpoint(cursor(2)).await.expect("no commit failed"), over);
            assert_eq!(s.abandon().await, Ok(()));
            let commits = commits.lock().unwrap();
            assert_eq!(commits.len(), 1, "{commits:?}");
            assert_eq!(commits[0].0, 25);
            assert_eq!(commits[0].1.as_ref().and_then(|c| c.get("position")), Some(1));
        });
    }

    #[test]
    fn the_pending_cap_counts_only_changes_taken() {
        // Dropped changes (an unknown currency here) are not held, so they do not count.
        let (mut s, _) = session(10, 3);
        let mut batch = changes("a", 3);
        batch.push(RawChange::Upsert {
            metric: "deals_won".into(),
            owner: "u-1".into(),
            source_id: "late".into(),
            occurred_at: RawOccurredAt::Instant(0),
            value: RawValue::Count(1),
        });
        assert_eq!(s.emit(batch), Ok(()), "three taken, one out of range dropped");
        assert_eq!(s.stats.rejected.get("out_of_range"), Some(&1));
        assert_eq!(s.emit(changes("b", 1)), Err(ContractViolation::BatchTooLarge { len: 4, max: 3 }));
    }

    #[test]
    fn a_cursor_over_its_cap_is_refused() {
        block_on(async {
            let (mut s, commits) = session(10, 100);
            assert_eq!(s.emit(changes("a", 1)), Ok(()));
            let mut marks = vec![("position".to_owned(), 1)];
            marks.extend((1..33).map(|i| (format!("k{i}"), i)));
            let refused = s.checkpoint(RawCursor(marks)).await.expect("no commit failed");
            assert_eq!(
                refused,
                Err(ContractViolation::BadCursor { problem: CursorProblem::TooManyMarks { len: 33, max: 32 } })
            );
            assert_eq!(s.stats.checkpoints, 0);
            assert_eq!(s.abandon().await, Ok(()));
            assert!(commits.lock().unwrap().is_empty());
        });
    }

    #[test]
    fn logs_past_the_event_and_field_caps_are_counted_not_written() {
        let (mut s, _) = session(10, 100);
        let fields: Vec<(String, i64)> = (0..12).map(|i| (format!("f{i}"), i)).collect();
        s.log(LogLevel::Info, "note", &fields);
        assert_eq!(s.stats.log_fields_dropped, 4, "12 declared fields, 8 kept");
        // MAX_LOG_EVENTS + 6 events in all.
        for _ in 0..MAX_LOG_EVENTS + 5 {
            s.log(LogLevel::Info, "note", &[]);
        }
        assert_eq!(s.logged, MAX_LOG_EVENTS);
        assert_eq!(s.stats.logs_capped, 6);
        s.log(LogLevel::Info, "undeclared", &[]);
        assert_eq!((s.stats.logs_dropped, s.stats.logs_capped), (1, 6), "undeclared codes are dropped first");
    }

    #[test]
    fn warnings_past_their_cap_are_counted_not_written() {
        let (mut s, _) = session(10, 100);
        let allowed = (0..MAX_WARNINGS + 5).filter(|_| s.may_warn()).count() as u64;
        assert_eq!(allowed, MAX_WARNINGS);
        assert_eq!(s.stats.warnings_suppressed, 5);
        // Refusals warn through the same cap.
        for _ in 0..3 {
            let _ = s.emit(changes("a", 11));
        }
        assert_eq!(s.stats.warnings_suppressed, 8);
    }
}
