//! The host's imports as a trait, so the same connector code runs inside the sandbox (where
//! the wasm glue calls the real imports) and natively (against
//! [`crate::testing::FakeHost`], or a host of your own).

use crate::http::{HttpError, HttpRequest, HttpResponse};
use crate::types::{Cursor, EmitError, KpiChange, LogLevel, SnapshotWindow};

/// What the host provides to a connector during a sync: the imports of `connector.wit`.
///
/// Connectors do not call it directly; they use [`crate::Ctx`], which adds status checks,
/// JSON decoding, paging and batching on top.
pub trait Host {
    /// A non-secret config value of this integration, or its declared default.
    fn config(&mut self, key: &str) -> Option<String>;

    /// The host's wall clock, in epoch milliseconds.
    fn now(&mut self) -> i64;

    /// A read-only GET relative to the integration's base URL.
    fn http_get(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError>;

    /// Hands a batch of changes to the host, which validates every change and commits the
    /// batch with the next checkpoint (or at the end of a successful sync).
    fn emit(&mut self, changes: &[KpiChange]) -> Result<(), EmitError>;

    /// Records where the next sync resumes; everything emitted before it commits with it.
    fn checkpoint(&mut self, cursor: &Cursor) -> Result<(), EmitError>;

    /// Opens a snapshot: the upserts emitted until [`Host::snapshot_end`] are every fact of
    /// the window's metrics in the window (see `host.snapshot-begin` in the WIT).
    fn snapshot_begin(&mut self, window: &SnapshotWindow) -> Result<(), EmitError>;

    /// Closes the open snapshot.
    fn snapshot_end(&mut self) -> Result<(), EmitError>;

    /// A structured log event: a declared code and numeric fields under declared codes.
    fn log(&mut self, level: LogLevel, code: &str, fields: &[(&str, i64)]);

    /// Free-text debug output, shown by the local developer tool only.
    fn debug(&mut self, message: &str);
}
