//! The glue between the SDK and the component model, compiled for `wasm32` only: the
//! private wit-bindgen bindings, a [`Host`] that calls the real imports, and the functions
//! [`crate::export_connector!`] exports.
//!
//! Conversions borrow the SDK's values (the bindings use borrowed import types), so emitting
//! a batch copies no strings on the guest side.

use crate::connector::{Connector, drive_roster, drive_sync};
use crate::host::Host;
use crate::http::{HttpError, HttpRequest, HttpResponse};
use crate::types::{
    Amount, AuthScheme, ConnectorError, Cursor, EmitError, KpiChange, LogLevel, MetricKind, OccurredAt, RosterEntry,
    Setting, SnapshotWindow, SyncOutcome,
};

/// The generated bindings of `oneup:connector@0.2.0`.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/connector@0.2.0",
        world: "connector",
        ownership: Borrowing { duplicate_if_necessary: false },
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "::oneup_connector_sdk::__private::bindings",
    });
}

use bindings::oneup::connector::host as imports;
use bindings::oneup::connector::types as wit;

/// The [`Host`] of a running component: every call is an import of the host.
struct WasmHost;

impl Host for WasmHost {
    fn config(&mut self, key: &str) -> Option<String> {
        imports::config(key)
    }

    fn now(&mut self) -> i64 {
        imports::now()
    }

    fn http_get(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let query: Vec<(&str, &str)> = request.query.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let headers: Vec<(&str, &str)> = request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let answer = imports::http_get(wit::HttpRequest { path: &request.path, query: &query, headers: &headers });
        match answer {
            Ok(response) => {
                Ok(HttpResponse { status: response.status, headers: response.headers, body: response.body.into() })
            }
            Err(error) => Err(match error {
                wit::HttpError::Denied => HttpError::Denied,
                wit::HttpError::Timeout => HttpError::Timeout,
                wit::HttpError::TooLarge => HttpError::TooLarge,
                wit::HttpError::Unavailable => HttpError::Unavailable,
                wit::HttpError::Unauthorized => HttpError::Unauthorized,
                wit::HttpError::RateLimited => HttpError::RateLimited,
            }),
        }
    }

    fn emit(&mut self, changes: &[KpiChange]) -> Result<(), EmitError> {
        let lowered: Vec<wit::KpiChange<'_>> = changes
            .iter()
            .map(|change| match change {
                KpiChange::Upsert(u) => wit::KpiChange::Upsert(wit::KpiUpsert {
                    metric: &u.metric,
                    owner: u.owner.as_str(),
                    source_id: u.source_id.as_str(),
                    occurred_at: match u.occurred_at {
                        OccurredAt::Instant(ms) => wit::OccurredAt::Instant(ms),
                        OccurredAt::Date(d) => {
                            wit::OccurredAt::Date(wit::CalendarDate { year: d.year, month: d.month, day: d.day })
                        }
                    },
                    value: match &u.value {
                        Amount::Count(n) => wit::Amount::Count(*n),
                        Amount::Money(m) => {
                            wit::Amount::Money(wit::Money { micros: m.micros, currency: m.currency.as_str() })
                        }
                    },
                }),
                KpiChange::Retract(r) => {
                    wit::KpiChange::Retract(wit::KpiRetract { metric: &r.metric, source_id: r.source_id.as_str() })
                }
            })
            .collect();
        imports::emit(&lowered).map_err(lift_emit_error)
    }

    fn checkpoint(&mut self, cursor: &Cursor) -> Result<(), EmitError> {
        let cursor = lower_cursor(cursor);
        imports::checkpoint(&cursor).map_err(lift_emit_error)
    }

    fn snapshot_begin(&mut self, window: &SnapshotWindow) -> Result<(), EmitError> {
        let metrics: Vec<&str> = window.metrics.iter().map(|m| m.as_ref()).collect();
        imports::snapshot_begin(wit::SnapshotWindow { metrics: &metrics, starts_at: window.from, ends_at: window.to })
            .map_err(lift_emit_error)
    }

    fn snapshot_end(&mut self) -> Result<(), EmitError> {
        imports::snapshot_end().map_err(lift_emit_error)
    }

    fn log(&mut self, level: LogLevel, code: &str, fields: &[(&str, i64)]) {
        let level = match level {
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        imports::log(level, code, fields);
    }

    fn debug(&mut self, message: &str) {
        imports::debug(message);
    }
}

fn lift_emit_error(error: wit::EmitError) -> EmitError {
    match error {
        wit::EmitError::UndeclaredMetric => EmitError::UndeclaredMetric,
        wit::EmitError::WrongKind => EmitError::WrongKind,
        wit::EmitError::BadIdentifier => EmitError::BadIdentifier,
        wit::EmitError::UnknownCurrency => EmitError::UnknownCurrency,
        wit::EmitError::OutOfRange => EmitError::OutOfRange,
        wit::EmitError::BatchTooLarge => EmitError::BatchTooLarge,
        wit::EmitError::BadCursor => EmitError::BadCursor,
        wit::EmitError::BadSnapshot => EmitError::BadSnapshot,
    }
}

fn lower_cursor(cursor: &Cursor) -> wit::Cursor {
    wit::Cursor { marks: cursor.iter().map(|(key, value)| wit::CursorMark { key: key.to_owned(), value }).collect() }
}

fn lift_cursor(cursor: wit::Cursor) -> Cursor {
    let mut lifted = Cursor::new();
    for mark in cursor.marks {
        lifted.set(&mark.key, mark.value);
    }
    lifted
}

fn lower_error(error: ConnectorError) -> wit::ConnectorError {
    wit::ConnectorError { code: error.code.into_owned(), http_status: error.http_status }
}

fn lower_setting(setting: Setting) -> wit::Setting {
    wit::Setting { key: setting.key, required: setting.required, default_value: setting.default_value }
}

/// The `describe` export of a connector.
pub fn describe<C: Connector>() -> wit::Descriptor {
    let d = C::describe();
    wit::Descriptor {
        id: d.id,
        version: d.version,
        metrics: d
            .metrics
            .into_iter()
            .map(|m| wit::MetricDecl {
                slug: m.slug,
                kind: match m.kind {
                    MetricKind::Count => wit::MetricKind::Count,
                    MetricKind::Money => wit::MetricKind::Money,
                },
            })
            .collect(),
        config: d.config.into_iter().map(lower_setting).collect(),
        secrets: d.secrets.into_iter().map(lower_setting).collect(),
        base_url_key: d.base_url_key,
        allowed_hosts: d.allowed_hosts,
        auth: match d.auth {
            AuthScheme::None => wit::AuthScheme::None,
            AuthScheme::ApiKeyHeader { header, secret_key } => {
                wit::AuthScheme::ApiKeyHeader(wit::ApiKeyHeader { header, secret_key })
            }
            AuthScheme::Oauth2Refresh { token_url_key } => {
                wit::AuthScheme::Oauth2Refresh(wit::Oauth2Refresh { token_url_key })
            }
            AuthScheme::BullhornSession { auth_url_key, login_url_key } => {
                wit::AuthScheme::BullhornSession(wit::BullhornSession { auth_url_key, login_url_key })
            }
        },
        log_codes: d.log_codes,
        cursor_keys: d.cursor_keys,
        default_sync_interval_secs: d.default_sync_interval_secs,
    }
}

/// The `sync` export of a connector.
pub fn sync<C: Connector>(since: Option<wit::Cursor>) -> Result<wit::SyncOutcome, wit::ConnectorError> {
    match drive_sync::<C>(&mut WasmHost, since.map(lift_cursor)) {
        Ok(SyncOutcome::Complete) => Ok(wit::SyncOutcome::Complete),
        Ok(SyncOutcome::BudgetExhausted { resume_at }) => Ok(wit::SyncOutcome::BudgetExhausted(resume_at)),
        Err(error) => Err(lower_error(error)),
    }
}

/// The `roster` export of a connector.
pub fn roster<C: Connector>() -> Result<Vec<wit::RosterEntry>, wit::ConnectorError> {
    drive_roster::<C>(&mut WasmHost)
        .map(|entries| {
            entries
                .into_iter()
                .map(|RosterEntry { crm_user_id, email }| wit::RosterEntry {
                    crm_user_id: crm_user_id.as_str().to_owned(),
                    email,
                })
                .collect()
        })
        .map_err(lower_error)
}
