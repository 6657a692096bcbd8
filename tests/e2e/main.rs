//! End-to-end tests: the real runtime and binary, real components, fake CRMs on loopback.

/// Runs each named scenario, an `async fn(Backend)` of the calling module, on SQLite
/// (`<module>::sqlite::…`) and on Postgres (`<module>::postgres::…`).
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(oneup_tests::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(oneup_tests::Backend::Postgres).await;
                }
            )*
        }
    };
}

mod approval;
mod auth;
mod awards;
mod bullhorn;
mod check_cli;
mod commits;
mod connect;
mod contract;
mod engine;
mod identity;
mod keys;
mod live;
mod ops;
mod pipedrive;
mod privacy;
mod retention;
mod runs;
mod salesforce;
mod sandbox;
mod service;
mod snapshots;
mod standings;
mod store;
mod targets;
mod tenants;
mod tokens;
