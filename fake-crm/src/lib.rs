//! Fake CRM servers for the demo, the end-to-end tests and the benchmark.
//!
//! Each fake follows its CRM's documented API exactly (the shapes of `shared/crm-fixtures/`),
//! serves data that is deterministic for a seed and full of invented personal data, and lists
//! that personal data as *canaries* so that the product can be swept for them.
//!
//! A fake has two layers:
//! - a pure core with no IO that answers `(method, path, query, headers)` with a
//!   [`Response`] (e.g. [`pipedrive::Crm::respond`]), which the benchmark calls directly;
//! - [`server::FakeServer`], a thin axum wrapper that serves any such core on `127.0.0.1:0`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use oneup_fake_crm::pipedrive::{Dataset, FakePipedrive};
//!
//! let fake = FakePipedrive::start(Dataset::generate(7, 4, 200, 400), "secret-token").await?;
//! let base_url = fake.base_url(); // http://127.0.0.1:PORT
//! let expected = fake.lock().expected_totals();
//! fake.with(|crm| crm.mark_deal_lost(1001))?;
//! # Ok(()) }
//! ```

pub mod bullhorn;
pub mod example;
pub mod http;
pub mod oauth;
pub mod pipedrive;
pub mod salesforce;
pub mod server;
pub mod time;

mod base64;
mod names;
mod rng;

pub use http::{Responder, Response};
pub use server::FakeServer;
pub use time::{Date, Timestamp};
