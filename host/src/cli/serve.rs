//! `oneup serve` (the HTTP API and the sync scheduler) and `oneup migrate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::SandboxArgs;
use crate::api::security::SecurityConfig;
use crate::api::{App, AppOptions};
use crate::runtime::Runtime;
use crate::runtime::registry::Registry;
use crate::scheduler::{SchedulerConfig, default_node_name};
use crate::store::{MasterKey, Store, StoreError};

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The database: `postgres://user@host/db`, or `sqlite://FILE` (created owner-only when
    /// missing; the default: `oneup.sqlite` in the working directory).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://oneup.sqlite")]
    pub database_url: String,
    /// The master key sealing secrets at rest, as 64 hex digits. Without it, the key is read
    /// from `--master-key-file`, which is created (owner-only) on first start.
    #[arg(long, env = "ONEUP_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// The master key file used when `ONEUP_MASTER_KEY` is not set.
    #[arg(long, env = "ONEUP_MASTER_KEY_FILE", default_value = "oneup.key")]
    pub master_key_file: PathBuf,
}

impl StoreArgs {
    /// Opens the store, checks that the master key is the database's (before anything is
    /// written, the key file included), applies pending migrations and records the key's
    /// fingerprint on first start.
    pub async fn connect(&self) -> anyhow::Result<Store> {
        let (key, new_file) = match &self.master_key {
            Some(hex) => (MasterKey::from_hex(hex).context("ONEUP_MASTER_KEY must be 64 hex digits")?, false),
            None => match MasterKey::load(&self.master_key_file)
                .with_context(|| format!("failed to read {}", self.master_key_file.display()))?
            {
                Some(key) => (key, false),
                None => (MasterKey::random(), true),
            },
        };
        let shown = redact_url(&self.database_url);
        let store = Store::open(&self.database_url, key.clone())
            .await
            .with_context(|| format!("failed to open the database {shown}"))?;
        store.check_master_key().await.map_err(|e| key_refused(e, new_file))?;
        if new_file {
            key.write_new(&self.master_key_file)
                .with_context(|| format!("failed to create {}", self.master_key_file.display()))?;
            tracing::warn!(
                file = %self.master_key_file.display(),
                "created a new master key file: back it up (every secret is sealed under it) and give every node the same key"
            );
        }
        store.migrate().await.with_context(|| format!("failed to migrate the database {shown}"))?;
        store.record_master_key().await.map_err(|e| key_refused(e, false))?;
        Ok(store)
    }
}

/// The error of a node whose master key is not the database's, naming the fix.
fn key_refused(e: StoreError, new_file: bool) -> anyhow::Error {
    match e {
        StoreError::MasterKeyMismatch { .. } => {
            let why = if new_file {
                "no ONEUP_MASTER_KEY was given and there is no key file here, so this node would have made a new key"
            } else {
                "this node was given another key"
            };
            anyhow::anyhow!(
                "refusing to start: {e}; {why}. The secrets in this database are sealed under another master key, \
                 and this node would seal new ones that the other nodes cannot read. Fix: give this node the same key \
                 as the others (ONEUP_MASTER_KEY, or --master-key-file / ONEUP_MASTER_KEY_FILE pointing at a copy of \
                 their key file); after `oneup keys rotate`, the new key. Nothing was written."
            )
        }
        other => anyhow::Error::new(other).context("failed to check the master key against the database"),
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The shortest operator token `serve` accepts, in bytes.
pub const MIN_OPERATOR_TOKEN_BYTES: usize = 32;

/// Arguments of `oneup serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ONEUP_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The service's URL as browsers reach it (behind a proxy: the proxy's,
    /// `https://oneup.example.com`); the OAuth connect flow sends the CRM back to
    /// `<public url>/oauth/callback`. Default: `http://` and the address listened on.
    #[arg(long, env = "ONEUP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Folder of connector components: every `*.wasm` there is installed at start.
    #[arg(long, env = "ONEUP_CONNECTORS_DIR")]
    pub connectors: Option<PathBuf>,
    /// The operator's bearer token (creates tenants), at least 32 bytes (`openssl rand
    /// -hex 32`). Without it, no operator route works.
    #[arg(long, env = "ONEUP_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Failed authentications allowed per client address and minute (also the burst);
    /// over it they answer 429 with `Retry-After`. Valid tokens are never throttled. The
    /// address is the socket peer: behind a reverse proxy, the proxy's.
    #[arg(long, env = "ONEUP_AUTH_FAILURES_PER_MINUTE", default_value_t = 60,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_minute: u32,
    /// Seconds a stream ticket stays valid, 1 to 60.
    #[arg(long, env = "ONEUP_STREAM_TICKET_SECS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=60))]
    pub stream_ticket_secs: u64,
    /// Open leaderboard streams per token on this node; more answer 429.
    #[arg(long, env = "ONEUP_MAX_STREAMS_PER_TOKEN", default_value_t = 10)]
    pub max_streams_per_token: usize,
    /// Open leaderboard streams per tenant on this node; more answer 429.
    #[arg(long, env = "ONEUP_MAX_STREAMS_PER_TENANT", default_value_t = 200)]
    pub max_streams_per_tenant: usize,
    /// This node's name on the runs it claims (default: hostname-pid).
    #[arg(long, env = "ONEUP_NODE_NAME")]
    pub node_name: Option<String>,
    /// Syncs this node runs at once.
    #[arg(long, env = "ONEUP_MAX_SYNCS", default_value_t = 4)]
    pub max_syncs: usize,
    /// Syncs of one tenant this node runs at once (due runs are taken round-robin across
    /// tenants, so one tenant's many integrations never starve another's).
    #[arg(long, env = "ONEUP_MAX_SYNCS_PER_TENANT", default_value_t = 1)]
    pub max_syncs_per_tenant: usize,
    /// Seconds one run may wait in all for a CRM's rate limits (`Retry-After`, pacing from
    /// its rate headers), never past the run's deadline; then its requests end rate-limited
    /// and the run is retried promptly.
    #[arg(long, env = "ONEUP_RATE_WAIT_BUDGET_SECS", default_value_t = 600)]
    pub rate_wait_budget_secs: u64,
    /// Development only: let integrations point at plain-http loopback addresses (the fake
    /// CRMs). Any tenant admin could then aim the tenant's CRM secrets at services on this
    /// machine; never set it in production. Logged at start and shown on `/healthz`.
    #[arg(long, env = "ONEUP_DEV_ALLOW_LOOPBACK", value_parser = super::parse_flag, default_value = "0")]
    pub dev_allow_loopback: bool,
    /// Seconds a claim on a sync lasts without renewal; a node that dies loses its runs
    /// to other nodes after this long.
    #[arg(long, env = "ONEUP_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,
    /// Seconds between looks for due syncs.
    #[arg(long, env = "ONEUP_POLL_SECS", default_value_t = 2)]
    pub poll_secs: u64,
    /// Seconds `POST …/sync?wait=true` waits for a run at most.
    #[arg(long, default_value_t = 120)]
    pub sync_wait_secs: u64,
    /// Seconds between SIGTERM and closing the listener, during which `/readyz` answers 503
    /// `draining` (so that a load balancer stops sending requests) while requests are still
    /// served. Then requests in flight finish and running syncs get their grace period.
    #[arg(long, env = "ONEUP_DRAIN_SECS", default_value_t = 5)]
    pub drain_secs: u64,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`. Without
    /// it, plain HTTP (behind a TLS-terminating reverse proxy).
    #[arg(long, env = "ONEUP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "ONEUP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve `GET /metrics` (without a token) and the probes on this address: for a
    /// Prometheus on a private network. On the main address `/metrics` takes the operator's token.
    #[arg(long, env = "ONEUP_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Where the data lives.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Sandbox settings.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Runs the service until SIGINT or SIGTERM, then stops claiming syncs, lets running ones
/// finish within the grace period, and exits.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let operator_token = args.operator_token.as_deref().filter(|t| !t.is_empty());
    if let Some(token) = operator_token
        && token.len() < MIN_OPERATOR_TOKEN_BYTES
    {
        anyhow::bail!(
            "ONEUP_OPERATOR_TOKEN is {} bytes long; it must be at least {MIN_OPERATOR_TOKEN_BYTES} \
             (generate one with `openssl rand -hex 32`)",
            token.len()
        );
    }
    // Refuse a bad certificate before anything is written.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::api::tls::load_config(cert, key).context("failed to load the TLS certificate")?)
        }
        _ => None,
    };
    let store = args.store.connect().await?;
    let mut sandbox = args.sandbox.runtime_config(false);
    // `ONEUP_ALLOW_LOOPBACK_HTTP` is for `connector check` and the demo; the service takes
    // only its own, loudly named flag.
    if args.sandbox.allow_loopback_http && !args.dev_allow_loopback {
        tracing::warn!(
            "ONEUP_ALLOW_LOOPBACK_HTTP is ignored by serve; loopback CRM addresses need --dev-allow-loopback \
             (ONEUP_DEV_ALLOW_LOOPBACK=1), for development only"
        );
    }
    sandbox.allow_loopback_http = args.dev_allow_loopback;
    if args.dev_allow_loopback {
        tracing::warn!(
            "--dev-allow-loopback: integrations may point at plain-http loopback addresses; development only, \
             never in production"
        );
    }
    sandbox.http.rate_wait_budget = Duration::from_secs(args.rate_wait_budget_secs);
    if sandbox.cache_dir.is_none() {
        sandbox.cache_dir = Some(PathBuf::from(".oneup/cache"));
    }
    // Cached native code carries a MAC under a key derived from the master key.
    sandbox.cache_key = Some(crate::runtime::CacheKey(store.derived_key("compile cache")));
    let runtime = Arc::new(Runtime::new(sandbox).context("failed to start the sandbox runtime")?);
    let registry = match &args.connectors {
        Some(dir) => Registry::install_dir(&runtime, dir).await.context("failed to install connectors")?,
        None => {
            tracing::warn!("no --connectors folder: no connector is installed");
            Registry::default()
        }
    };
    for c in registry.iter() {
        let m = c.manifest();
        tracing::info!(connector = %m.id, version = %m.version, contract = %m.contract, "connector installed");
    }
    let registry = Arc::new(registry);
    let listener =
        tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("failed to listen on {}", args.bind))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = args.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    let state = App::start(
        store.clone(),
        runtime,
        registry,
        AppOptions {
            scheduler: SchedulerConfig {
                node: args.node_name.clone().unwrap_or_else(default_node_name),
                lease: Duration::from_secs(args.lease_secs.max(3)),
                poll: Duration::from_secs(args.poll_secs.max(1)),
                max_concurrent: args.max_syncs.max(1),
                max_per_tenant: args.max_syncs_per_tenant.max(1),
                ..SchedulerConfig::default()
            },
            operator_token_hash: operator_token.map(App::hash_operator_token),
            sync_wait: Duration::from_secs(args.sync_wait_secs),
            security: SecurityConfig {
                auth_failures_per_minute: args.auth_failures_per_minute,
                stream_ticket_ttl: Duration::from_secs(args.stream_ticket_secs),
                max_streams_per_token: args.max_streams_per_token.max(1),
                max_streams_per_tenant: args.max_streams_per_tenant.max(1),
            },
            public_url: Some(public_url.trim_end_matches('/').to_owned()),
        },
    );
    let scheduler = state.scheduler.clone();
    tracing::info!(addr = %local, scheme, "listening");
    if let Some(addr) = args.metrics_addr {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("failed to listen on {addr} (--metrics-addr)"))?;
        tracing::info!(addr = %metrics.local_addr()?, "serving /metrics without a token");
        let router = crate::api::metrics_router(state.clone());
        // Scraped until the process ends (through the drain and the syncs' grace period).
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    // One line on stdout, for scripts and tests that bind port 0.
    println!("oneup listening on {scheme}://{local}");
    // On SIGINT/SIGTERM: stop claiming syncs and answer `/readyz` 503 (draining) for the
    // drain period while still serving, then close the listener and let requests in flight
    // finish, then give running syncs their grace period (and hand back those that do not
    // finish).
    let claiming = scheduler.clone();
    let drain = Duration::from_secs(args.drain_secs);
    let signal = async move {
        shutdown_signal().await;
        tracing::info!(
            drain_secs = drain.as_secs(),
            "stopping: no new syncs are claimed; /readyz answers 503 while draining"
        );
        claiming.stop_claiming();
        tokio::time::sleep(drain).await;
        tracing::info!("closing the listener; finishing requests in flight");
    };
    crate::api::tls::serve(listener, crate::api::router(state), tls, signal).await?;
    tracing::info!("waiting for running syncs");
    scheduler.shutdown().await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Arguments of `oneup migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the data lives.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Applies pending migrations and exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.connect().await?;
    store.close().await;
    println!("migrations applied to {}", redact_url(&args.store.database_url));
    Ok(ExitCode::SUCCESS)
}
