//! The oneup host: runs CRM connectors as sandboxed WebAssembly components and keeps only
//! the numbers they emit.
//!
//! Start reading at `runtime` (the sandbox and the WIT imports), then `ingest` (what is
//! done to every value a connector emits), then `cli` (the commands).

pub mod api;
pub mod cli;
pub mod engine;
pub mod format;
pub mod ingest;
pub mod runtime;
pub mod scheduler;
pub mod scoring;
pub mod store;
pub mod telemetry;
