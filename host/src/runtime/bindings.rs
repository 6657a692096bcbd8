//! Host-side bindings of the connector contract, one module per WIT version, and the thin
//! adapters between each version and the host.
//!
//! The newest version is re-exported as `latest`; the rest of the runtime speaks `latest`
//! for what a connector exports (`describe`, `sync`, `roster`) and host types for its
//! imports. Each version module holds its `bindgen!` output, the `Host` traits implemented
//! for `SyncState` by converting WIT values into host types and calling the one
//! implementation in `session.rs`, and (for older versions) conversions of its exports'
//! values into `latest` ones. [`ConnectorPre`] picks the version's bindings for a component
//! by the contract version it imports, so connectors built against `0.1` keep running.
//!
//! What `0.1` cannot say is simply absent for it: its times are instants, it has no
//! snapshots, and its `budget-exhausted` carries no resume time.

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::session::SyncState;

/// Bindings of `oneup:connector@0.2.0` (the latest).
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/connector@0.2.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    use self::oneup::connector::{host, types as wit};
    use crate::ingest::model::{RawChange, RawCursor, RawOccurredAt, RawSnapshotWindow, RawValue};
    use crate::ingest::validate::ContractViolation;
    use crate::runtime::http::HttpFailure;
    use crate::runtime::session::{LogLevel, SyncState, now_ms};

    /// The WIT error for a broken rule.
    pub(crate) fn emit_error(v: ContractViolation) -> wit::EmitError {
        match v {
            ContractViolation::UndeclaredMetric { .. } => wit::EmitError::UndeclaredMetric,
            ContractViolation::WrongKind { .. } => wit::EmitError::WrongKind,
            ContractViolation::BadIdentifier { .. } => wit::EmitError::BadIdentifier,
            ContractViolation::BatchTooLarge { .. } => wit::EmitError::BatchTooLarge,
            ContractViolation::BadCursor { .. } => wit::EmitError::BadCursor,
            ContractViolation::BadSnapshot { .. } => wit::EmitError::BadSnapshot,
        }
    }

    fn http_error(f: HttpFailure) -> wit::HttpError {
        match f {
            HttpFailure::Denied => wit::HttpError::Denied,
            HttpFailure::Timeout => wit::HttpError::Timeout,
            HttpFailure::TooLarge => wit::HttpError::TooLarge,
            HttpFailure::Unavailable => wit::HttpError::Unavailable,
            HttpFailure::Unauthorized => wit::HttpError::Unauthorized,
            HttpFailure::RateLimited => wit::HttpError::RateLimited,
        }
    }

    fn raw_change(c: wit::KpiChange) -> RawChange {
        match c {
            wit::KpiChange::Upsert(u) => RawChange::Upsert {
                metric: u.metric,
                owner: u.owner,
                source_id: u.source_id,
                occurred_at: match u.occurred_at {
                    wit::OccurredAt::Instant(ms) => RawOccurredAt::Instant(ms),
                    wit::OccurredAt::Date(d) => RawOccurredAt::Date { year: d.year, month: d.month, day: d.day },
                },
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
            Ok(self.session.config(&key))
        }

        async fn now(&mut self) -> wasmtime::Result<i64> {
            Ok(now_ms())
        }

        async fn http_get(
            &mut self,
            request: wit::HttpRequest,
        ) -> wasmtime::Result<Result<wit::HttpResponse, wit::HttpError>> {
            let answer = self.session.http_get(&request.path, &request.query, &request.headers).await;
            Ok(answer
                .map(|a| wit::HttpResponse { status: a.status, headers: a.headers, body: a.body })
                .map_err(http_error))
        }

        async fn emit(&mut self, changes: Vec<wit::KpiChange>) -> wasmtime::Result<Result<(), wit::EmitError>> {
            Ok(self.session.emit(changes.into_iter().map(raw_change).collect()).map_err(emit_error))
        }

        async fn checkpoint(&mut self, cursor: wit::Cursor) -> wasmtime::Result<Result<(), wit::EmitError>> {
            let raw = RawCursor(cursor.marks.into_iter().map(|m| (m.key, m.value)).collect());
            Ok(self.session.checkpoint(raw).await?.map_err(emit_error))
        }

        async fn snapshot_begin(
            &mut self,
            window: wit::SnapshotWindow,
        ) -> wasmtime::Result<Result<(), wit::EmitError>> {
            let raw = RawSnapshotWindow { metrics: window.metrics, from_ms: window.starts_at, to_ms: window.ends_at };
            Ok(self.session.snapshot_begin(raw).map_err(emit_error))
        }

        async fn snapshot_end(&mut self) -> wasmtime::Result<Result<(), wit::EmitError>> {
            Ok(self.session.snapshot_end().map_err(emit_error))
        }

        async fn log(
            &mut self,
            level: wit::LogLevel,
            code: String,
            fields: Vec<(String, i64)>,
        ) -> wasmtime::Result<()> {
            let level = match level {
                wit::LogLevel::Debug => LogLevel::Debug,
                wit::LogLevel::Info => LogLevel::Info,
                wit::LogLevel::Warn => LogLevel::Warn,
                wit::LogLevel::Error => LogLevel::Error,
            };
            self.session.log(level, &code, &fields);
            Ok(())
        }

        async fn debug(&mut self, message: String) -> wasmtime::Result<()> {
            self.session.debug(&message);
            Ok(())
        }
    }
}

/// Bindings of `oneup:connector@0.1.0`, with its conversions into `latest` and host types.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/connector@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    use self::oneup::connector::{host, types as wit};
    use super::latest::oneup::connector::types as new;
    use crate::ingest::model::{RawChange, RawCursor, RawOccurredAt, RawValue};
    use crate::ingest::validate::ContractViolation;
    use crate::runtime::http::HttpFailure;
    use crate::runtime::session::{LogLevel, SyncState, now_ms};

    fn emit_error(v: ContractViolation) -> wit::EmitError {
        match v {
            ContractViolation::UndeclaredMetric { .. } => wit::EmitError::UndeclaredMetric,
            ContractViolation::WrongKind { .. } => wit::EmitError::WrongKind,
            ContractViolation::BadIdentifier { .. } => wit::EmitError::BadIdentifier,
            ContractViolation::BatchTooLarge { .. } => wit::EmitError::BatchTooLarge,
            ContractViolation::BadCursor { .. } => wit::EmitError::BadCursor,
            // A 0.1 connector has no snapshot imports, so it cannot break their rules; the
            // arm exists only because the host's type is shared by every version.
            ContractViolation::BadSnapshot { .. } => wit::EmitError::BatchTooLarge,
        }
    }

    fn http_error(f: HttpFailure) -> wit::HttpError {
        match f {
            HttpFailure::Denied => wit::HttpError::Denied,
            HttpFailure::Timeout => wit::HttpError::Timeout,
            HttpFailure::TooLarge => wit::HttpError::TooLarge,
            HttpFailure::Unavailable => wit::HttpError::Unavailable,
            HttpFailure::Unauthorized => wit::HttpError::Unauthorized,
            HttpFailure::RateLimited => wit::HttpError::RateLimited,
        }
    }

    fn raw_change(c: wit::KpiChange) -> RawChange {
        match c {
            wit::KpiChange::Upsert(u) => RawChange::Upsert {
                metric: u.metric,
                owner: u.owner,
                source_id: u.source_id,
                occurred_at: RawOccurredAt::Instant(u.occurred_at),
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
            Ok(self.session.config(&key))
        }

        async fn now(&mut self) -> wasmtime::Result<i64> {
            Ok(now_ms())
        }

        async fn http_get(
            &mut self,
            request: wit::HttpRequest,
        ) -> wasmtime::Result<Result<wit::HttpResponse, wit::HttpError>> {
            let answer = self.session.http_get(&request.path, &request.query, &request.headers).await;
            Ok(answer
                .map(|a| wit::HttpResponse { status: a.status, headers: a.headers, body: a.body })
                .map_err(http_error))
        }

        async fn emit(&mut self, changes: Vec<wit::KpiChange>) -> wasmtime::Result<Result<(), wit::EmitError>> {
            Ok(self.session.emit(changes.into_iter().map(raw_change).collect()).map_err(emit_error))
        }

        async fn checkpoint(&mut self, cursor: wit::Cursor) -> wasmtime::Result<Result<(), wit::EmitError>> {
            let raw = RawCursor(cursor.marks.into_iter().map(|m| (m.key, m.value)).collect());
            Ok(self.session.checkpoint(raw).await?.map_err(emit_error))
        }

        async fn log(
            &mut self,
            level: wit::LogLevel,
            code: String,
            fields: Vec<(String, i64)>,
        ) -> wasmtime::Result<()> {
            let level = match level {
                wit::LogLevel::Debug => LogLevel::Debug,
                wit::LogLevel::Info => LogLevel::Info,
                wit::LogLevel::Warn => LogLevel::Warn,
                wit::LogLevel::Error => LogLevel::Error,
            };
            self.session.log(level, &code, &fields);
            Ok(())
        }

        async fn debug(&mut self, message: String) -> wasmtime::Result<()> {
            self.session.debug(&message);
            Ok(())
        }
    }

    /// A 0.1 descriptor as a latest one (the shapes are the same).
    pub(crate) fn descriptor(d: wit::Descriptor) -> new::Descriptor {
        let setting =
            |s: wit::Setting| new::Setting { key: s.key, required: s.required, default_value: s.default_value };
        new::Descriptor {
            id: d.id,
            version: d.version,
            metrics: d
                .metrics
                .into_iter()
                .map(|m| new::MetricDecl {
                    slug: m.slug,
                    kind: match m.kind {
                        wit::MetricKind::Count => new::MetricKind::Count,
                        wit::MetricKind::Money => new::MetricKind::Money,
                    },
                })
                .collect(),
            config: d.config.into_iter().map(setting).collect(),
            secrets: d.secrets.into_iter().map(setting).collect(),
            base_url_key: d.base_url_key,
            allowed_hosts: d.allowed_hosts,
            auth: match d.auth {
                wit::AuthScheme::None => new::AuthScheme::None,
                wit::AuthScheme::ApiKeyHeader(a) => {
                    new::AuthScheme::ApiKeyHeader(new::ApiKeyHeader { header: a.header, secret_key: a.secret_key })
                }
                wit::AuthScheme::Oauth2Refresh(o) => {
                    new::AuthScheme::Oauth2Refresh(new::Oauth2Refresh { token_url_key: o.token_url_key })
                }
                wit::AuthScheme::BullhornSession(b) => new::AuthScheme::BullhornSession(new::BullhornSession {
                    auth_url_key: b.auth_url_key,
                    login_url_key: b.login_url_key,
                }),
            },
            log_codes: d.log_codes,
            cursor_keys: d.cursor_keys,
            default_sync_interval_secs: d.default_sync_interval_secs,
        }
    }

    /// A latest cursor as a 0.1 one.
    pub(crate) fn cursor(c: &new::Cursor) -> wit::Cursor {
        wit::Cursor { marks: c.marks.iter().map(|m| wit::CursorMark { key: m.key.clone(), value: m.value }).collect() }
    }

    /// A 0.1 sync result as a latest one: `budget-exhausted` knows no resume time.
    pub(crate) fn sync_result(
        r: Result<wit::SyncOutcome, wit::ConnectorError>,
    ) -> Result<new::SyncOutcome, new::ConnectorError> {
        match r {
            Ok(wit::SyncOutcome::Complete) => Ok(new::SyncOutcome::Complete),
            Ok(wit::SyncOutcome::BudgetExhausted) => Ok(new::SyncOutcome::BudgetExhausted(None)),
            Err(e) => Err(connector_error(e)),
        }
    }

    /// A 0.1 roster result as a latest one.
    pub(crate) fn roster_result(
        r: Result<Vec<wit::RosterEntry>, wit::ConnectorError>,
    ) -> Result<Vec<new::RosterEntry>, new::ConnectorError> {
        r.map(|entries| {
            entries.into_iter().map(|e| new::RosterEntry { crm_user_id: e.crm_user_id, email: e.email }).collect()
        })
        .map_err(connector_error)
    }

    fn connector_error(e: wit::ConnectorError) -> new::ConnectorError {
        new::ConnectorError { code: e.code, http_status: e.http_status }
    }
}

pub use v0_2 as latest;

use latest::oneup::connector::types as wit;

/// The contract versions this host serves, as (major, minor, patch) of the WIT package.
pub const SERVED_VERSIONS: &[(u64, u64, u64)] = &[(0, 1, 0), (0, 2, 0)];

/// The WIT package name of the contract, without version.
pub const PACKAGE: &str = "oneup:connector";

/// Adds every served version's imports to the linker (their names carry the version, so
/// they live side by side).
pub(crate) fn add_to_linker(linker: &mut Linker<SyncState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v0_1::Connector::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_2::Connector::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A component ready to instantiate, with the bindings of the contract version it imports.
#[derive(Clone)]
pub(crate) enum ConnectorPre {
    /// Built against `0.1.x`.
    V0_1(v0_1::ConnectorPre<SyncState>),
    /// Built against `0.2.x`.
    V0_2(v0_2::ConnectorPre<SyncState>),
}

impl ConnectorPre {
    /// Picks the bindings of `contract` (a served version, e.g. `0.1.0`).
    pub(crate) fn new(contract: &str, pre: InstancePre<SyncState>) -> wasmtime::Result<Self> {
        if contract.starts_with("0.1.") {
            Ok(Self::V0_1(v0_1::ConnectorPre::new(pre)?))
        } else {
            Ok(Self::V0_2(v0_2::ConnectorPre::new(pre)?))
        }
    }

    /// Instantiates without calling anything.
    pub(crate) async fn instantiate(&self, store: &mut Store<SyncState>) -> wasmtime::Result<()> {
        match self {
            Self::V0_1(pre) => pre.instantiate_async(store).await.map(drop),
            Self::V0_2(pre) => pre.instantiate_async(store).await.map(drop),
        }
    }

    /// Instantiates and calls `describe`.
    pub(crate) async fn describe(&self, store: &mut Store<SyncState>) -> wasmtime::Result<wit::Descriptor> {
        match self {
            Self::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                Ok(v0_1::descriptor(instance.call_describe(store).await?))
            }
            Self::V0_2(pre) => pre.instantiate_async(&mut *store).await?.call_describe(store).await,
        }
    }

    /// Instantiates and calls `sync`.
    pub(crate) async fn sync(
        &self,
        store: &mut Store<SyncState>,
        since: Option<&wit::Cursor>,
    ) -> wasmtime::Result<Result<wit::SyncOutcome, wit::ConnectorError>> {
        match self {
            Self::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                let since = since.map(v0_1::cursor);
                Ok(v0_1::sync_result(instance.call_sync(store, since.as_ref()).await?))
            }
            Self::V0_2(pre) => pre.instantiate_async(&mut *store).await?.call_sync(store, since).await,
        }
    }

    /// Instantiates and calls `roster`.
    pub(crate) async fn roster(
        &self,
        store: &mut Store<SyncState>,
    ) -> wasmtime::Result<Result<Vec<wit::RosterEntry>, wit::ConnectorError>> {
        match self {
            Self::V0_1(pre) => {
                let instance = pre.instantiate_async(&mut *store).await?;
                Ok(v0_1::roster_result(instance.call_roster(store).await?))
            }
            Self::V0_2(pre) => pre.instantiate_async(&mut *store).await?.call_roster(store).await,
        }
    }
}
