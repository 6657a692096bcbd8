//! The per-sync state of one sandbox instance and the host side of the WIT imports.
//!
//! A `SyncState` lives in a fresh wasmtime `Store` for exactly one call into a connector.
//! It owns the WASI context (no files, no sockets, no environment), the memory limiter, the
//! CPU budget, and the `Session`: what this one sync may do and what it has done so far.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::BoxFuture;
use super::bindings::latest::oneup::connector::{host, types as wit};
use super::egress::{EgressPolicy, check_request_headers};
use super::http::{Credentials, HttpClient, HttpFailure};
use super::manifest::Manifest;
use crate::ingest::model::{Change, Cursor, RawChange, RawCursor, RawValue};
use crate::ingest::validate::{ContractViolation, Validator};

/// Where validated changes go: printed by `oneup connector check`, summed by the demo,
/// committed to the store by ingestion. Called at every checkpoint with everything emitted
/// since the previous one, and once more at the end of a successful sync (`cursor` none).
pub trait SyncSink: Send {
    /// Takes the changes since the last commit, the cursor that follows them, and the sync's
    /// counts so far (rejections included, for sinks that record them with the batch).
    fn commit<'a>(
        &'a mut self,
        changes: Vec<Change>,
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
    fn refuse(&mut self, violation: ContractViolation, changes: u64) -> wit::EmitError {
        *self.stats.rejected.entry(violation.code().to_owned()).or_default() += changes.max(1);
        tracing::warn!(connector = %self.manifest.id, code = violation.code(), changes, "connector broke the contract");
        if self.violation.is_none() {
            self.violation = Some(violation);
        }
        // Nothing emitted since the last checkpoint may be committed now.
        self.pending.clear();
        violation_to_wit(violation)
    }

    /// Hands pending changes and the cursor to the sink.
    pub(crate) async fn flush(&mut self, cursor: Option<&Cursor>) -> anyhow::Result<()> {
        let changes = std::mem::take(&mut self.pending);
        let n = changes.len() as u64;
        if let Some(sink) = self.sink.as_mut() {
            sink.commit(changes, cursor, &self.stats).await?;
        }
        self.stats.committed += n;
        Ok(())
    }
}

fn violation_to_wit(v: ContractViolation) -> wit::EmitError {
    match v {
        ContractViolation::UndeclaredMetric { .. } => wit::EmitError::UndeclaredMetric,
        ContractViolation::WrongKind { .. } => wit::EmitError::WrongKind,
        ContractViolation::BadIdentifier { .. } => wit::EmitError::BadIdentifier,
        ContractViolation::BatchTooLarge { .. } => wit::EmitError::BatchTooLarge,
        ContractViolation::BadCursor { .. } => wit::EmitError::BadCursor,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn raw_change(c: wit::KpiChange) -> RawChange {
    match c {
        wit::KpiChange::Upsert(u) => RawChange::Upsert {
            metric: u.metric,
            owner: u.owner,
            source_id: u.source_id,
            occurred_at_ms: u.occurred_at,
            value: match u.value {
                wit::Amount::Count(n) => RawValue::Count(n),
                wit::Amount::Money(m) => RawValue::Money { micros: m.micros, currency: m.currency },
            },
        },
        wit::KpiChange::Retract(r) => RawChange::Retract { metric: r.metric, source_id: r.source_id },
    }
}

impl wit::Host for SyncState {}

impl host::Host for SyncState {
    async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let s = &self.session;
        if !s.manifest.config.iter().any(|c| c.key == key) {
            return Ok(None);
        }
        Ok(s.config.get(&key).cloned())
    }

    async fn now(&mut self) -> wasmtime::Result<i64> {
        Ok(now_ms())
    }

    async fn http_get(
        &mut self,
        request: wit::HttpRequest,
    ) -> wasmtime::Result<Result<wit::HttpResponse, wit::HttpError>> {
        let s = &mut self.session;
        s.stats.http_requests += 1;
        let Some(policy) = s.egress.as_ref() else {
            s.stats.http_denied += 1;
            return Ok(Err(wit::HttpError::Denied));
        };
        let url = match policy.build_url(&request.path, &request.query) {
            Ok(url) => url,
            Err(err) => {
                s.stats.http_denied += 1;
                tracing::debug!(connector = %s.manifest.id, code = err.code(), "egress denied");
                return Ok(Err(wit::HttpError::Denied));
            }
        };
        let headers = match check_request_headers(&request.headers) {
            Ok(h) => h,
            Err(err) => {
                s.stats.http_denied += 1;
                tracing::debug!(connector = %s.manifest.id, code = err.code(), "egress denied");
                return Ok(Err(wit::HttpError::Denied));
            }
        };
        match s.http.get(policy, url, &headers, &s.credentials).await {
            Ok(answer) => {
                Ok(Ok(wit::HttpResponse { status: answer.status, headers: answer.headers, body: answer.body }))
            }
            Err(failure) => Ok(Err(match failure {
                HttpFailure::Denied => wit::HttpError::Denied,
                HttpFailure::Timeout => wit::HttpError::Timeout,
                HttpFailure::TooLarge => wit::HttpError::TooLarge,
                HttpFailure::Unavailable => wit::HttpError::Unavailable,
                HttpFailure::Unauthorized => wit::HttpError::Unauthorized,
                HttpFailure::RateLimited => wit::HttpError::RateLimited,
            })),
        }
    }

    async fn emit(&mut self, changes: Vec<wit::KpiChange>) -> wasmtime::Result<Result<(), wit::EmitError>> {
        let s = &mut self.session;
        let n = changes.len() as u64;
        if let Some(v) = s.violation {
            return Ok(Err(s.refuse(v, n)));
        }
        let Some(validator) = s.validator.clone() else {
            // Describing: nothing may be emitted.
            return Ok(Err(s.refuse(ContractViolation::UndeclaredMetric { index: 0 }, n)));
        };
        let max = validator.limits().max_batch;
        if changes.len() > max {
            return Ok(Err(s.refuse(ContractViolation::BatchTooLarge { len: changes.len(), max }, n)));
        }
        let raw: Vec<RawChange> = changes.into_iter().map(raw_change).collect();
        match validator.validate_batch(raw, now_ms()) {
            Ok(accepted) => {
                for (reason, count) in accepted.rejected {
                    *s.stats.rejected.entry(reason.code().to_owned()).or_default() += count;
                }
                let held = s.pending.len() + accepted.changes.len();
                if held > s.max_pending {
                    // Too much emitted without a checkpoint: the host will not hold more.
                    return Ok(Err(s.refuse(ContractViolation::BatchTooLarge { len: held, max: s.max_pending }, n)));
                }
                for change in &accepted.changes {
                    match change {
                        Change::Upsert(_) => s.stats.upserts += 1,
                        Change::Retract { .. } => s.stats.retractions += 1,
                    }
                }
                s.pending.extend(accepted.changes);
                Ok(Ok(()))
            }
            Err(v) => Ok(Err(s.refuse(v, n))),
        }
    }

    async fn checkpoint(&mut self, cursor: wit::Cursor) -> wasmtime::Result<Result<(), wit::EmitError>> {
        let s = &mut self.session;
        if let Some(v) = s.violation {
            return Ok(Err(s.refuse(v, 0)));
        }
        let raw = RawCursor(cursor.marks.into_iter().map(|m| (m.key, m.value)).collect());
        let cursor = match Cursor::validate(raw, s.manifest.vocabulary()) {
            Ok(c) => c,
            Err(v) => return Ok(Err(s.refuse(v, 0))),
        };
        if let Err(err) = s.flush(Some(&cursor)).await {
            return Err(wasmtime::Error::new(SinkFailed(format!("{err:#}"))));
        }
        s.stats.checkpoints += 1;
        Ok(Ok(()))
    }

    async fn log(&mut self, level: wit::LogLevel, code: String, fields: Vec<(String, i64)>) -> wasmtime::Result<()> {
        let s = &mut self.session;
        if !s.manifest.declares_code(&code) {
            s.stats.logs_dropped += 1;
            return Ok(());
        }
        let fields: BTreeMap<&str, i64> =
            fields.iter().filter(|(k, _)| s.manifest.declares_code(k)).map(|(k, v)| (k.as_str(), *v)).collect();
        let fields = serde_json::to_string(&fields).unwrap_or_default();
        let connector = s.manifest.id.as_str();
        match level {
            wit::LogLevel::Debug => tracing::debug!(connector, code, fields, "connector log"),
            wit::LogLevel::Info => tracing::info!(connector, code, fields, "connector log"),
            wit::LogLevel::Warn => tracing::warn!(connector, code, fields, "connector log"),
            wit::LogLevel::Error => tracing::error!(connector, code, fields, "connector log"),
        }
        Ok(())
    }

    async fn debug(&mut self, message: String) -> wasmtime::Result<()> {
        let s = &mut self.session;
        match s.debug.as_mut() {
            Some(sink) => sink(&message),
            None => s.stats.debug_dropped += 1,
        }
        Ok(())
    }
}
