//! Ingestion: what a connector emits, made safe to keep.
//!
//! This is the host side of the boundary rule. Everything a connector hands over through
//! `host.emit` and `host.checkpoint` passes through here before the engine or the store sees
//! it: metric slugs and cursor keys are checked against the connector's declared vocabulary,
//! currencies against ISO 4217, times and amounts against sane ranges, and CRM owner and
//! record ids are replaced by keyed hashes under the tenant's key. The module does no IO and
//! knows nothing of wasmtime or SQL; it is tested with plain values.
//!
//! * [`model`]: the raw (connector-side) and validated (host-side) types.
//! * [`validate`]: the [`Validator`] and its errors and reason codes; calendar dates become
//!   instants in the tenant's time zone there.
//! * [`snapshot`]: snapshot windows (contract 0.2): what a sync declared complete, recorded
//!   for the commit that retracts the facts it did not see.
//! * [`pseudonym`]: keyed hashes of CRM ids.
//! * [`currency`]: the ISO 4217 list.

pub mod currency;
pub mod model;
pub mod pseudonym;
pub mod snapshot;
pub mod validate;

pub use model::{
    Change, Currency, Cursor, Fact, KeyedHash, MetricKind, RawChange, RawCursor, RawOccurredAt, RawSnapshotWindow,
    RawValue, Snapshot, SnapshotWindow, Value, Vocabulary, VocabularyError,
};
pub use pseudonym::{Domain, KeyError, Pseudonymizer, TenantKey, keyed_hash};
pub use snapshot::SnapshotTracker;
pub use validate::{
    Accepted, ContractViolation, CursorProblem, IdField, Limits, RejectReason, SnapshotProblem, Validator,
    is_identifier,
};
