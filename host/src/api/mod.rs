//! The HTTP API: axum routes, auth extractors, DTOs. The only module that knows HTTP and
//! JSON shapes; handlers are thin and call the store, the runtime and the scheduler.
//!
//! Every route is in the OpenAPI document (`host/openapi.json`, served at `/openapi.json` and
//! browsable at `/docs`). Every request body is checked strictly
//! (unknown fields are refused), every error is `{"error":{"code","message"}}`, and ids of
//! another tenant answer 404 exactly like unknown ones.

mod calendar;
mod connect;
mod contests;
mod error;
mod extract;
mod incentives;
mod integrations;
mod kpis;
mod leaderboard;
mod lifecycle;
mod live;
mod metrics;
mod observe;
pub mod openapi;
mod paging;
mod privacy;
mod progress;
pub mod security;
mod shared;
mod system;
mod targets;
mod tenants;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::error::ApiError;
pub use self::live::Live;
use crate::runtime::Runtime;
use crate::runtime::registry::Registry;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::scoring::Scoring;
use crate::store::Store;

/// The largest request body the API reads; a larger one answers 413 with the usual error
/// body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything a handler may use.
pub struct App {
    /// The database.
    pub store: Store,
    /// The sandbox runtime (for checking integration settings).
    pub runtime: Arc<Runtime>,
    /// The installed connectors.
    pub registry: Arc<Registry>,
    /// The sync scheduler of this node (with the freezing tick and the award pass).
    pub scheduler: Scheduler,
    /// The scoring rules of this node (the scheduler's).
    pub scoring: Scoring,
    /// SHA-256 of `ONEUP_OPERATOR_TOKEN`, when one is set.
    pub operator_token_hash: Option<[u8; 32]>,
    /// How long `?wait=true` waits for a run at most.
    pub sync_wait: Duration,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The live leaderboards, fed by the scheduler's change feed (`Live::start`).
    pub live: Live,
    /// The failed-authentication limiter, stream tickets' lifetime, stream caps.
    pub security: security::Security,
    /// The service's URL as browsers reach it (`--public-url`), for the OAuth callback;
    /// `None`: the connect flow is unavailable.
    pub public_url: Option<String>,
}

/// What a service instance is started with besides its store, runtime and connectors.
pub struct AppOptions {
    /// How the scheduler runs.
    pub scheduler: SchedulerConfig,
    /// SHA-256 of `ONEUP_OPERATOR_TOKEN`, when one is set.
    pub operator_token_hash: Option<[u8; 32]>,
    /// How long `?wait=true` waits for a run at most.
    pub sync_wait: Duration,
    /// The failed-authentication limit, stream tickets, stream caps.
    pub security: security::SecurityConfig,
    /// The service's URL as browsers reach it (the OAuth connect flow's callback base).
    pub public_url: Option<String>,
}

impl App {
    /// Starts a service instance on the current tokio runtime: the scheduler (syncs, the
    /// freezing tick, the award pass), the live leaderboards, and the state the API serves
    /// from. `oneup serve`, `oneup demo` (and so every end-to-end test) start here.
    pub fn start(store: Store, runtime: Arc<Runtime>, registry: Arc<Registry>, options: AppOptions) -> AppState {
        let scheduler = Scheduler::start(store.clone(), runtime.clone(), registry.clone(), options.scheduler);
        AppState(Arc::new(App {
            store,
            runtime,
            registry,
            scoring: scheduler.scoring().clone(),
            live: Live::start(&scheduler),
            scheduler,
            operator_token_hash: options.operator_token_hash,
            sync_wait: options.sync_wait,
            metrics: Metrics::default(),
            security: security::Security::new(options.security),
            public_url: options.public_url,
        }))
    }

    /// Hashes the operator token for constant-time comparison.
    pub fn hash_operator_token(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

/// This node's Prometheus metrics (`GET /metrics`): a handle on the process-wide set
/// ([`crate::telemetry::metrics`]), which the runtime and the scheduler record into too.
pub struct Metrics(&'static crate::telemetry::Metrics);

impl Default for Metrics {
    fn default() -> Self {
        Metrics(crate::telemetry::metrics())
    }
}

impl std::ops::Deref for Metrics {
    type Target = crate::telemetry::Metrics;

    fn deref(&self) -> &crate::telemetry::Metrics {
        self.0
    }
}

/// The state handlers receive.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// Every route, each registered with its OpenAPI description (see [`openapi`]).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, lifecycle::list_tenants))
        .routes(routes!(lifecycle::get_tenant, lifecycle::update_tenant, lifecycle::offboard_tenant))
        .routes(routes!(lifecycle::operator_audit))
        .routes(routes!(tenants::create_user, tenants::list_users))
        .routes(routes!(tenants::get_user, tenants::update_user, tenants::delete_user))
        .routes(routes!(tenants::create_token, tenants::list_tokens))
        .routes(routes!(tenants::revoke_token))
        .routes(routes!(tenants::create_team, tenants::list_teams))
        .routes(routes!(tenants::add_member, tenants::remove_member))
        .routes(routes!(tenants::set_fx_rates, tenants::get_fx_rates))
        .routes(routes!(tenants::me, tenants::update_me))
        .routes(routes!(tenants::export_me))
        .routes(routes!(integrations::list_connectors))
        .routes(routes!(integrations::list_integrations))
        .routes(routes!(integrations::enable, integrations::disable, integrations::get_integration))
        .routes(routes!(integrations::sync_now))
        .routes(routes!(integrations::resync))
        .routes(routes!(integrations::approve))
        .routes(routes!(connect::connect))
        .routes(routes!(connect::callback))
        .routes(routes!(integrations::list_runs))
        .routes(routes!(integrations::get_run))
        .routes(routes!(integrations::owners, integrations::map_owner))
        .routes(routes!(integrations::confirm_owner))
        .routes(routes!(integrations::unmap_owner))
        .routes(routes!(kpis::kpis))
        .routes(routes!(kpis::my_kpis))
        .routes(routes!(metrics::create_metric, metrics::list_metrics))
        .routes(routes!(metrics::get_metric, metrics::delete_metric))
        .routes(routes!(contests::create_contest, contests::list_contests))
        .routes(routes!(contests::get_contest, contests::update_contest, contests::delete_contest))
        .routes(routes!(leaderboard::leaderboard))
        .routes(routes!(live::leaderboard_stream))
        .routes(routes!(live::create_stream_ticket))
        .routes(routes!(live::tv_page))
        .routes(routes!(targets::create_target, targets::list_targets))
        .routes(routes!(targets::get_target, targets::update_target, targets::delete_target))
        .routes(routes!(progress::progress))
        .routes(routes!(progress::team_progress))
        .routes(routes!(calendar::get_calendar, calendar::set_calendar))
        .routes(routes!(calendar::set_joined_on))
        .routes(routes!(incentives::create_incentive, incentives::list_incentives))
        .routes(routes!(incentives::user_points))
        .routes(routes!(incentives::my_points))
        .routes(routes!(system::audit))
        .routes(routes!(system::audit_verify))
        .routes(routes!(privacy::register))
        .routes(routes!(privacy::set_settings))
        .routes(routes!(privacy::retention))
        .routes(routes!(privacy::run_retention))
        .routes(routes!(system::healthz))
        .routes(routes!(system::livez))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .merge(openapi::docs_page())
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        // Enforced by the body extractors (`ApiJson`), so that the answer is a JSON error;
        // tower-http's limit layer would answer a bare text body.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Request id, span, access log line and duration metric of every request.
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}

/// The router of `--metrics-addr`: `GET /metrics` without a token (for a listener on a
/// private address), the probes, and 404 for anything else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(system::metrics_open))
        .route("/livez", axum::routing::get(system::livez))
        .route("/readyz", axum::routing::get(system::readyz))
        .fallback(system::not_found)
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}
