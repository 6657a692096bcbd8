//! Write oneup CRM connectors.
//!
//! A connector is a WebAssembly component that the oneup host runs in a sandbox, once per
//! sync, against the `oneup:connector@0.2.0` contract (`wit/connector@0.2.0/connector.wit`).
//! This crate is the guest side of that contract. The generated WIT bindings stay private;
//! connector authors work with the small set of types here instead:
//!
//! * [`Connector`], the trait a connector implements, and [`export_connector!`], which wires
//!   it to the component's exports;
//! * [`Ctx`], the handle a connector receives during a sync: settings, typed JSON GETs,
//!   cursor- and offset-paged reads, a batching emitter, checkpoints and logs;
//! * the values that cross the boundary: [`Descriptor`], [`KpiChange`], [`Cursor`],
//!   [`Money`], [`Id`], [`OccurredAt`] (an instant, or a [`CalendarDate`] the host places in
//!   the tenant's zone), [`SnapshotWindow`], timestamps in [`time`], and so on;
//! * [`testing`], for native test runs: a [`testing::FakeHost`] that serves canned CRM
//!   answers, records everything the connector does and checks it against the contract,
//!   so a connector can be run and tested with `cargo test`.
//!
//! ```
//! use oneup_connector_sdk::json::CursorPage;
//! use oneup_connector_sdk::{
//!     Connector, ConnectorError, Ctx, Cursor, Descriptor, KpiChange, MetricKind, Setting, SyncOutcome,
//! };
//!
//! /// Counts closed tickets.
//! struct Tickets;
//!
//! #[derive(serde::Deserialize)]
//! struct Ticket {
//!     id: u64,
//!     owner: u64,
//!     closed_at_ms: i64,
//! }
//!
//! impl Connector for Tickets {
//!     fn describe() -> Descriptor {
//!         Descriptor::new("tickets", "0.1.0")
//!             .with_config(Setting::required("base_url"))
//!             .with_allowed_host("*.tickets.example")
//!             .with_metric("tickets_closed", MetricKind::Count)
//!             .with_cursor_keys(&["page"])
//!     }
//!
//!     fn sync(ctx: &mut Ctx<'_>, _since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
//!         let mut pages = 0;
//!         ctx.get_cursor_paged("/tickets", &[("state", "closed")], |ctx, response| {
//!             let page: CursorPage<Ticket> = response.json()?;
//!             for t in &page.data {
//!                 ctx.push(KpiChange::count("tickets_closed", t.owner, t.id, t.closed_at_ms, 1))?;
//!             }
//!             pages += 1;
//!             ctx.checkpoint(&Cursor::new().with("page", pages))?;
//!             Ok(page.next_cursor().map(str::to_owned))
//!         })?;
//!         Ok(SyncOutcome::Complete)
//!     }
//! }
//!
//! oneup_connector_sdk::export_connector!(Tickets);
//! ```
//!
//! Every error the SDK's helpers return carries one of [`STANDARD_CODES`]; a connector's
//! descriptor declares them all from [`Descriptor::new`] on, so the SDK never makes a
//! connector break the rule that every code it uses is declared.

#![warn(missing_docs)]

mod connector;
mod ctx;
mod host;
mod http;
pub mod json;
pub mod money;
pub mod time;
mod types;

pub mod testing;

#[cfg(target_arch = "wasm32")]
mod wasm;

pub use connector::{Connector, drive_roster, drive_sync};
pub use ctx::{Ctx, DEFAULT_BATCH_SIZE};
pub use host::Host;
pub use http::{Body, HttpError, HttpRequest, HttpResponse};
pub use money::{Currency, Decimal, Money, ValueError};
pub use types::{
    Amount, AuthScheme, CalendarDate, ConnectorError, Cursor, Descriptor, EmitError, Id, KpiChange, KpiRetract,
    KpiUpsert, LogLevel, MetricDecl, MetricKind, OccurredAt, RosterEntry, Setting, SnapshotWindow, SyncOutcome,
};

/// The error and log codes the SDK's own helpers use, as constants.
///
/// A connector compares a [`ConnectorError::code`] with these (for example to turn
/// [`codes::HTTP_RATE_LIMITED`] into [`SyncOutcome::BudgetExhausted`]).
pub mod codes {
    /// The CRM answered with a status that is neither success nor one of the specific
    /// statuses below; the error carries the status.
    pub const HTTP_STATUS: &str = "http_status";
    /// The CRM answered 401: the credentials the host holds were refused.
    pub const HTTP_UNAUTHORIZED: &str = "http_unauthorized";
    /// The CRM answered 403: the credentials lack a scope or permission.
    pub const HTTP_FORBIDDEN: &str = "http_forbidden";
    /// The CRM answered 429, or the host gave up after its retries of 429 answers.
    pub const HTTP_RATE_LIMITED: &str = "http_rate_limited";
    /// The host refused to send the request: it broke a rule of the sandbox.
    pub const HTTP_DENIED: &str = "http_denied";
    /// The CRM did not answer in time.
    pub const HTTP_TIMEOUT: &str = "http_timeout";
    /// The CRM could not be reached, or kept failing after the host's retries.
    pub const HTTP_UNAVAILABLE: &str = "http_unavailable";
    /// The answer was larger than the host allows.
    pub const HTTP_TOO_LARGE: &str = "http_too_large";
    /// An answer's body was not the JSON the connector expected.
    pub const BAD_JSON: &str = "bad_json";
    /// A required config setting has no value.
    pub const MISSING_CONFIG: &str = "missing_config";
    /// A config setting has a value the connector cannot use.
    pub const BAD_CONFIG: &str = "bad_config";
    /// The host refused a batch of changes or a checkpoint: the connector broke a rule of
    /// the contract (see [`crate::EmitError`]).
    pub const EMIT_REFUSED: &str = "emit_refused";
}

/// Every code in [`codes`]: the SDK's helpers return no other. [`Descriptor::new`] puts
/// them all in a descriptor's `log_codes`.
pub const STANDARD_CODES: &[&str] = &[
    codes::HTTP_STATUS,
    codes::HTTP_UNAUTHORIZED,
    codes::HTTP_FORBIDDEN,
    codes::HTTP_RATE_LIMITED,
    codes::HTTP_DENIED,
    codes::HTTP_TIMEOUT,
    codes::HTTP_UNAVAILABLE,
    codes::HTTP_TOO_LARGE,
    codes::BAD_JSON,
    codes::MISSING_CONFIG,
    codes::BAD_CONFIG,
    codes::EMIT_REFUSED,
];

/// Exports a [`Connector`] as the component's `describe`, `sync` and `roster` functions.
///
/// Invoke it once, at the top level of the connector's `cdylib` crate. On targets other than
/// `wasm32` it expands to nothing, so the same crate also builds natively for tests.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct OneupExportedConnector;

            impl $crate::__private::Guest for OneupExportedConnector {
                fn describe() -> $crate::__private::bindings::Descriptor {
                    $crate::__private::describe::<$connector>()
                }

                fn sync(
                    since: ::core::option::Option<$crate::__private::bindings::Cursor>,
                ) -> ::core::result::Result<
                    $crate::__private::bindings::SyncOutcome,
                    $crate::__private::bindings::ConnectorError,
                > {
                    $crate::__private::sync::<$connector>(since)
                }

                fn roster() -> ::core::result::Result<
                    $crate::__private::Vec<$crate::__private::bindings::RosterEntry>,
                    $crate::__private::bindings::ConnectorError,
                > {
                    $crate::__private::roster::<$connector>()
                }
            }

            $crate::__private::bindings::__export_world!(
                OneupExportedConnector with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Implementation details of [`export_connector!`]; not part of the SDK's API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::wasm::bindings;
    pub use crate::wasm::bindings::Guest;
    pub use crate::wasm::{describe, roster, sync};
    pub use std::vec::Vec;
}
