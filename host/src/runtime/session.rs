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

use serde::Serialize;
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
/// committed to the store by ingestion. Called at every checkpoint with everything emitted
/// since the previous one, and once more at the end of a successful sync (`cursor` none).
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
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Changes committed to the sink.
    pub committed: u64,
    /// Completed snapshots committed to the sink (contract 0.2).
    pub snapshots: u64,
    /// Log events dropped for an undeclared code.
    pub logs_dropped: u64,
    /// Debug messages dropped (production has no debug sink).
    pub debug_dropped: u64,
}

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

/// Everything that is not WASI plumbing: what this sync may do and what it did.
pub(crate) struct Session {
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) config: BTreeMap<String, String>,
    /// None while describing: no requests at all.
    pub(crate) egress: Option<EgressPolicy>,
    pub(crate) credentials: Credentials,
    pub(crate) http: HttpClient,
    pub(crate) validator: Option<Arc<Validator>>,
    pub(crate) sink: Option<Box<dyn SyncSink>>,
    pub(crate) pending: Vec<Change>,
    pub(crate) max_pending: usize,
    /// Snapshot windows open or ended since the last commit.
    pub(crate) snapshots: SnapshotTracker,
    pub(crate) stats: SyncStats,
    /// The first contract violation; once set, nothing more is accepted or committed.
    pub(crate) violation: Option<ContractViolation>,
    pub(crate) debug: Option<DebugSink>,
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
    fn refuse(&mut self, violation: ContractViolation, changes: u64) -> ContractViolation {
        *self.stats.rejected.entry(violation.code().to_owned()).or_default() += changes.max(1);
        tracing::warn!(connector = %self.manifest.id, code = violation.code(), changes, "connector broke the contract");
        if self.violation.is_none() {
            self.violation = Some(violation);
        }
        // Nothing emitted since the last checkpoint may be committed now, and no snapshot
        // may retract anything.
        self.pending.clear();
        self.snapshots.clear();
        violation
    }

    /// Hands pending changes, the snapshots completed since the last commit and the cursor
    /// to the sink.
    pub(crate) async fn flush(&mut self, cursor: Option<&Cursor>) -> anyhow::Result<()> {
        let changes = std::mem::take(&mut self.pending);
        let snapshots = self.snapshots.take_completed();
        let n = changes.len() as u64;
        let completed = snapshots.len() as u64;
        if let Some(sink) = self.sink.as_mut() {
            sink.commit(changes, snapshots, cursor, &self.stats).await?;
        }
        self.stats.committed += n;
        self.stats.snapshots += completed;
        Ok(())
    }

    /// Drops what a failed sync emitted since its last commit, snapshots included.
    pub(crate) fn discard(&mut self) {
        self.pending.clear();
        self.snapshots.clear();
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
                tracing::debug!(connector = %self.manifest.id, code = err.code(), "egress denied");
                return Err(HttpFailure::Denied);
            }
        };
        let headers = match check_request_headers(headers) {
            Ok(h) => h,
            Err(err) => {
                self.stats.http_denied += 1;
                tracing::debug!(connector = %self.manifest.id, code = err.code(), "egress denied");
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
        let accepted = match validator.validate_batch(changes, now_ms()) {
            Ok(accepted) => accepted,
            Err(v) => return Err(self.refuse(v, n)),
        };
        for (reason, count) in accepted.rejected {
            *self.stats.rejected.entry(reason.code().to_owned()).or_default() += count;
        }
        let held = self.pending.len() + accepted.changes.len();
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
        self.pending.extend(accepted.changes);
        Ok(())
    }

    /// `host.checkpoint`: commits everything since the last commit with the cursor. The
    /// outer error is a failed sink (it becomes a trap); the inner one a broken rule.
    pub(crate) async fn checkpoint(&mut self, cursor: RawCursor) -> wasmtime::Result<Result<(), ContractViolation>> {
        if let Some(v) = self.violation {
            return Ok(Err(self.refuse(v, 0)));
        }
        let cursor = match Cursor::validate(cursor, self.manifest.vocabulary()) {
            Ok(c) => c,
            Err(v) => return Ok(Err(self.refuse(v, 0))),
        };
        if let Err(err) = self.flush(Some(&cursor)).await {
            return Err(wasmtime::Error::new(SinkFailed(format!("{err:#}"))));
        }
        self.stats.checkpoints += 1;
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
        self.snapshots.end().map_err(|v| self.refuse(v, 0))
    }

    /// `host.log`: declared codes only, declared field names only.
    pub(crate) fn log(&mut self, level: LogLevel, code: &str, fields: &[(String, i64)]) {
        if !self.manifest.declares_code(code) {
            self.stats.logs_dropped += 1;
            return;
        }
        let fields: BTreeMap<&str, i64> =
            fields.iter().filter(|(k, _)| self.manifest.declares_code(k)).map(|(k, v)| (k.as_str(), *v)).collect();
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
