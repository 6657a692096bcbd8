//! The sandbox runtime: the only part of the host that knows wasmtime.
//!
//! One `Runtime` holds one wasmtime `Engine` (component model, async, epoch interruption,
//! pooling allocator) and a `Linker` with WASI p2 and the connector contract. Loading a
//! component checks that it is a component of a contract version this host serves,
//! compiles it once (cached on disk by content hash), and asks it to `describe` itself.
//! Every sync then runs in a fresh `Store` from the component's `InstancePre`, with a
//! memory cap, a CPU budget (epoch ticks spent in guest code) and a wall-clock deadline.
//!
//! Errors come in two layers, as wasmtime's do: the outer `SyncError` for a trap, a limit
//! or a broken contract, and `SyncError::Connector` for a failure the connector reported.
//!
//! Several contract versions are served at once (`bindings::SERVED_VERSIONS`): the linker
//! holds the imports of each, and a component gets the bindings of the version it imports
//! (`bindings::ConnectorPre`). Everything past the bindings speaks one version: the latest
//! for exports, host types for imports.

pub mod auth;
pub mod bindings;
pub mod egress;
pub mod http;
pub mod manifest;
pub mod registry;
mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable, ResourceTableError};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use self::bindings::ConnectorPre;
use self::bindings::latest::oneup::connector::types as wit;
use self::egress::EgressPolicy;
use self::http::{Credentials, HttpClient, HttpLimits};
use self::manifest::{AuthSpec, Manifest, ManifestError};
use self::session::{CommitPolicy, Committer, Limiter, Pending, Session, SyncState};
pub use self::session::{
    CpuLimitExceeded, DebugSink, MAX_LOG_EVENTS, MAX_LOG_FIELDS, MAX_WARNINGS, MemoryLimitExceeded, NOT_OPTED_IN,
    SinkFailed, SyncSink, SyncStats,
};
use crate::ingest::SnapshotTracker;
use crate::ingest::model::{Cursor, KeyedHash};
use crate::ingest::pseudonym::{Domain, TenantKey};
use crate::ingest::validate::{ContractViolation, IdField, Limits as ValidationLimits, Validator};

/// The time zone type of [`IntegrationSetup::timezone`] (jiff's), re-exported for callers.
pub use jiff::tz::TimeZone;

/// A boxed future, for object-safe async traits (sinks, transports).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How often the epoch ticks; the unit of the CPU budget.
const TICK: Duration = Duration::from_millis(10);

/// Most handles (streams, pollables, ...) one instance may hold in its resource table: the
/// table lives in host memory, outside the guest's memory limit.
pub const MAX_HANDLES: usize = 4_096;

/// The first bytes of a compile cache file (format version 1: magic, MAC, native code).
const CACHE_MAGIC: &[u8; 8] = b"oneupcc1";

/// The key that authenticates compiled artefacts in the compile cache (a MAC over each),
/// so that only native code this host compiled is ever loaded. `Debug` hides it.
#[derive(Clone)]
pub struct CacheKey(pub [u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Bounds on one sandbox instance.
#[derive(Debug, Clone)]
pub struct SandboxLimits {
    /// Linear memory cap per instance.
    pub memory_bytes: usize,
    /// Time the guest may spend running its own code per call (time waiting for the host,
    /// e.g. for HTTP, does not count).
    pub cpu_time: Duration,
    /// Wall-clock deadline for a whole sync.
    pub wall_time: Duration,
    /// Largest batch in one `emit`.
    pub max_batch: usize,
    /// Most changes a connector may emit between two of its checkpoints (more is a
    /// contract violation).
    pub max_pending: usize,
    /// The host commits at a checkpoint once at least this many changes wait (0: at every
    /// checkpoint), carrying the latest cursor with everything before it; a failed sync
    /// still commits up to its last checkpoint. Beside `max_pending` since the last
    /// checkpoint, the host holds fewer than this many checkpointed changes.
    pub commit_changes: usize,
    /// ... or once this long has passed since the previous commit.
    pub commit_interval: Duration,
    /// Runs each commit in a task of its own while the connector goes on reading (the next
    /// commit waits for it); false: the checkpoint waits for its commit.
    pub overlap_commits: bool,
}

impl SandboxLimits {
    fn commit_policy(&self) -> CommitPolicy {
        CommitPolicy { changes: self.commit_changes, interval: self.commit_interval, overlap: self.overlap_commits }
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            cpu_time: Duration::from_secs(120),
            wall_time: Duration::from_secs(30 * 60),
            max_batch: 10_000,
            max_pending: 200_000,
            commit_changes: 10_000,
            commit_interval: Duration::from_secs(2),
            overlap_commits: true,
        }
    }
}

/// Settings of a `Runtime`.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; none disables the cache. The folder is made
    /// owner-only (0700) at start.
    pub cache_dir: Option<PathBuf>,
    /// The key authenticating cached artefacts (the service derives it from its master
    /// key). None: a random key per process, so nothing cached by another process is used.
    pub cache_key: Option<CacheKey>,
    /// Per-instance bounds.
    pub limits: SandboxLimits,
    /// Outbound HTTP bounds.
    pub http: HttpLimits,
    /// Lets integrations use plain-http loopback base URLs (tests and demos only).
    pub allow_loopback_http: bool,
    /// Sends the guest's stderr (panic messages) to the host's stderr: developer tooling only.
    pub inherit_stderr: bool,
}

/// Why a component was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: build connectors for wasm32-wasip2 (cargo build --target wasm32-wasip2)"
    )]
    NotAComponent,
    /// A component of another world.
    #[error("the component does not implement the oneup:connector world ({0})")]
    WrongWorld(&'static str),
    /// A contract version this host does not serve.
    #[error("the component was built against oneup:connector@{found}; this host serves {served}")]
    UnsupportedVersion {
        /// The version found in the component's imports.
        found: String,
        /// The versions this host serves.
        served: String,
    },
    /// wasmtime refused it (invalid, or imports the host does not provide).
    #[error("the component cannot be loaded: {0}")]
    Invalid(String),
    /// Its descriptor breaks a rule.
    #[error("the connector's describe answer is invalid: {0}")]
    Manifest(#[from] ManifestError),
    /// `describe` trapped or ran out of a limit.
    #[error("the connector's describe call failed: {0}")]
    Describe(SyncError),
    /// Reading the file or the cache failed.
    #[error("{0}")]
    Io(String),
}

/// The compile cache folder cannot be made private.
#[derive(Debug, thiserror::Error)]
#[error("the compile cache folder {path} {problem}")]
pub struct CacheDirError {
    /// The folder.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

/// Why a sync (or roster call) did not complete. Carries codes, never connector text.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    /// The guest used up its CPU budget.
    #[error("the connector used up its CPU time")]
    CpuLimit,
    /// The guest tried to grow memory past its cap.
    #[error("the connector exceeded its memory limit")]
    MemoryLimit,
    /// The sync did not finish before its wall-clock deadline.
    #[error("the sync did not finish before its deadline")]
    Deadline,
    /// The guest held more handles (streams, pollables) than an instance may.
    #[error("the connector opened too many handles (at most {MAX_HANDLES})")]
    HandleLimit,
    /// The guest trapped (a panic, an invalid operation).
    #[error("the connector trapped: {0}")]
    Trap(String),
    /// The connector broke a rule of the contract.
    #[error("the connector broke the contract: {}", .0.code())]
    Contract(ContractViolation),
    /// The connector reported a failure.
    #[error("the connector reported {code}{}", http_status.map(|s| format!(" (CRM answered HTTP {s})")).unwrap_or_default())]
    Connector {
        /// A declared code, or `undeclared_code` when the connector used another.
        code: String,
        /// The CRM's status where one is the cause.
        http_status: Option<u16>,
    },
    /// The integration's settings are unusable (missing key, base URL not allowed).
    #[error("the integration is misconfigured: {0}")]
    Setup(String),
    /// The sink (the store) failed to commit.
    #[error("committing failed: {0}")]
    Commit(String),
    /// Anything else inside the host.
    #[error("internal error: {0}")]
    Internal(String),
    /// The CRM's authorisation server refused the integration's grant for good (or had
    /// before): nothing runs until an admin enables it again with new secrets.
    #[error("the integration needs re-authorisation: the CRM refused its credentials")]
    NeedsReauthorization,
}

impl SyncError {
    /// A stable snake_case code for run records.
    pub fn code(&self) -> String {
        match self {
            SyncError::CpuLimit => "cpu_limit".into(),
            SyncError::MemoryLimit => "memory_limit".into(),
            SyncError::Deadline => "deadline".into(),
            SyncError::HandleLimit => "handle_limit".into(),
            SyncError::Trap(_) => "trap".into(),
            SyncError::Contract(v) => v.code().into(),
            SyncError::Connector { code, .. } => code.clone(),
            SyncError::Setup(_) => "setup".into(),
            SyncError::Commit(_) => "commit_failed".into(),
            SyncError::Internal(_) => "internal".into(),
            SyncError::NeedsReauthorization => "needs_reauthorization".into(),
        }
    }
}

/// How a sync ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    /// Everything was read.
    Complete,
    /// The CRM's request budget ran out; resume later from the last checkpoint, not before
    /// the instant given (milliseconds since the Unix epoch) when the connector knows it
    /// (contract 0.2; always none from a 0.1 connector).
    BudgetExhausted(Option<i64>),
}

/// What a run sets around one sync: the rate gate it shares with its roster call (None: a
/// gate of the sync's own) and the metrics the integration opted into (None: every metric
/// the connector declares).
#[derive(Default, Clone, Copy)]
pub struct SyncScope<'a> {
    /// The run's rate gate.
    pub gate: Option<&'a Arc<http::RateGate>>,
    /// The opted-in metrics.
    pub opted_in: Option<&'a [String]>,
}

/// The result of one sync.
pub struct SyncReport {
    /// The outcome or the error.
    pub result: Result<SyncOutcome, SyncError>,
    /// What was counted.
    pub stats: SyncStats,
    /// How long it took.
    pub duration: Duration,
    /// The sink, handed back.
    pub sink: Box<dyn SyncSink>,
    /// Whether a snapshot was still open at the end of a sync that did not fail: it
    /// retracted nothing.
    pub snapshot_skipped: bool,
}

/// A compiled, described connector, ready to instantiate.
#[derive(Clone)]
pub struct LoadedConnector {
    manifest: Arc<Manifest>,
    pre: ConnectorPre,
    digest: [u8; 32],
}

impl LoadedConnector {
    /// The validated descriptor.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the component bytes, hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

/// What a sync needs to know about its integration.
pub struct IntegrationSetup {
    /// Operator-provided config (undeclared keys are refused).
    pub config: BTreeMap<String, String>,
    /// Operator-provided secrets (never reach the guest).
    pub secrets: BTreeMap<String, String>,
    /// The tenant's pseudonymisation key.
    pub tenant_key: TenantKey,
    /// Where free-text debug output goes (developer tooling only).
    pub debug: Option<DebugSink>,
    /// Where a refreshing auth scheme (OAuth 2.0, Bullhorn) keeps the refresh token and
    /// takes its refresh lock: the database for the service. `None`: in memory, for this
    /// one call (tests; the check tool passes an `auth::MemoryVault` it shares).
    pub vault: Option<Arc<dyn auth::TokenVault>>,
    /// The tenant's time zone: calendar-date `occurred-at`s (contract 0.2) become the start
    /// of that day here. Use `TimeZone::UTC` where there is no tenant.
    pub timezone: TimeZone,
}

/// A CRM user from the roster, pseudonymised: the id hashed at once, the e-mail kept only
/// for comparison by the caller, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterUser {
    /// Keyed hash of the CRM user id (same as the owner hash of that user's facts).
    pub owner: KeyedHash,
    /// The work e-mail, lowercased, for matching only.
    pub email: String,
}

struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sandbox host: one engine, many short-lived instances.
pub struct Runtime {
    engine: Engine,
    linker: Linker<SyncState>,
    http: HttpClient,
    config: RuntimeConfig,
    cache_key: CacheKey,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption) and the linker; requests
    /// go to the network.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let http = HttpClient::new(config.http.clone())?;
        Self::with_http(config, http)
    }

    /// Like `new`, with requests sent through `transport` (the benchmark serves a CRM from
    /// memory this way).
    pub fn with_transport(config: RuntimeConfig, transport: Arc<dyn http::Transport>) -> anyhow::Result<Self> {
        let http = HttpClient::with_transport(config.http.clone(), transport);
        Self::with_http(config, http)
    }

    fn with_http(config: RuntimeConfig, http: HttpClient) -> anyhow::Result<Self> {
        if let Some(dir) = &config.cache_dir {
            private_cache_dir(dir)?;
        }
        let cache_key = config.cache_key.clone().unwrap_or_else(|| {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the operating system's random source works");
            CacheKey(key)
        });
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        wasm.wasm_component_model(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(128)
            .total_core_instances(512)
            .total_memories(128)
            .total_tables(256)
            .max_memory_size(config.limits.memory_bytes)
            .max_memories_per_component(4)
            .max_core_instances_per_component(32)
            .max_tables_per_component(16);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from)?;

        let mut linker = Linker::<SyncState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        bindings::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new().name("oneup-epoch".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        }
        Ok(Self { engine, linker, http, config, cache_key, _ticker: EpochTicker { stop } })
    }

    /// The settings in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Loads a component file.
    pub async fn load_file(&self, path: &Path) -> Result<LoadedConnector, LoadError> {
        let bytes =
            tokio::fs::read(path).await.map_err(|e| LoadError::Io(format!("cannot read {}: {e}", path.display())))?;
        self.load(&bytes).await
    }

    /// Checks, compiles (or takes from the cache) and describes a component.
    pub async fn load(&self, bytes: &[u8]) -> Result<LoadedConnector, LoadError> {
        if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
            return Err(LoadError::NotWasm);
        }
        // The 2-byte layer field after the version: 0 for core modules, 1 for components.
        if bytes[6..8] == [0, 0] {
            return Err(LoadError::NotAComponent);
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let component = self.compile(bytes, &digest)?;
        let contract = self.contract_version(&component)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let pre = ConnectorPre::new(&contract, instance_pre)
            .map_err(|_| LoadError::WrongWorld("it lacks the describe, sync or roster export"))?;

        let mut store = self.store_for(None, self.idle_session(Arc::new(placeholder_manifest(&contract))));
        let described = pre.describe(&mut store);
        let descriptor = match tokio::time::timeout(Duration::from_secs(10), described).await {
            Err(_) => return Err(LoadError::Describe(SyncError::Deadline)),
            Ok(Err(e)) => return Err(LoadError::Describe(classify(e))),
            Ok(Ok(d)) => d,
        };
        let manifest = Manifest::from_descriptor(descriptor, contract)?;
        tracing::info!(connector = %manifest.id, version = %manifest.version, contract = %manifest.contract, "connector loaded");
        Ok(LoadedConnector { manifest: Arc::new(manifest), pre, digest })
    }

    fn compile(&self, bytes: &[u8], digest: &[u8; 32]) -> Result<Component, LoadError> {
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")));
        };
        let mut hasher = Sha256::new();
        hasher.update(digest);
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut HashWriter(&mut hasher));
        let key = hex::encode(&hasher.finalize()[..16]);
        let path = dir.join(format!("{key}.cwasm"));
        if let Ok(stored) = std::fs::read(&path) {
            match self.cache_open(&key, &stored) {
                // SAFETY: the MAC proves this host (holding the cache key) wrote these bytes
                // with `precompile_component` for this component and engine configuration
                // (the name, bound into the MAC, hashes both).
                Some(native) => match unsafe { Component::deserialize(&self.engine, native) } {
                    Ok(c) => return Ok(c),
                    Err(e) => tracing::warn!(error = %e, "ignoring an unusable compile cache entry; recompiling"),
                },
                None => tracing::warn!(
                    entry = %key,
                    "refusing a compile cache entry that this host did not write (no valid MAC); recompiling"
                ),
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let write = || -> std::io::Result<()> {
            let mut nonce = [0u8; 8];
            getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
            let tmp = dir.join(format!("{key}.{}.{}.tmp", std::process::id(), hex::encode(nonce)));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            std::io::Write::write_all(&mut file, &self.cache_seal(&key, &compiled))?;
            drop(file);
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, "could not write the compile cache");
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| LoadError::Invalid(format!("{e:#}")))
    }

    /// A cache file: [`CACHE_MAGIC`], an HMAC-SHA-256 under the cache key of the entry's
    /// name and the native code, then the native code.
    fn cache_seal(&self, name: &str, native: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + 32 + native.len());
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(&self.cache_mac(name, native));
        out.extend_from_slice(native);
        out
    }

    /// The native code of a cache file whose MAC verifies, or none.
    fn cache_open<'a>(&self, name: &str, stored: &'a [u8]) -> Option<&'a [u8]> {
        let rest = stored.strip_prefix(CACHE_MAGIC)?;
        if rest.len() < 32 {
            return None;
        }
        let (tag, native) = rest.split_at(32);
        let mut mac = self.cache_hmac(name);
        hmac::Mac::update(&mut mac, native);
        hmac::Mac::verify_slice(mac, tag).ok().map(|()| native)
    }

    fn cache_hmac(&self, name: &str) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.cache_key.0).expect("any key length");
        hmac::Mac::update(&mut mac, name.as_bytes());
        hmac::Mac::update(&mut mac, &[0]);
        mac
    }

    fn cache_mac(&self, name: &str, native: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_hmac(name);
        hmac::Mac::update(&mut mac, native);
        hmac::Mac::finalize(mac).into_bytes().into()
    }

    /// Reads the contract version from the component's imports, before instantiating.
    fn contract_version(&self, component: &Component) -> Result<String, LoadError> {
        let ty = component.component_type();
        let mut found: Option<String> = None;
        for (name, _) in ty.imports(&self.engine) {
            if let Some(rest) = name.strip_prefix(bindings::PACKAGE).and_then(|r| r.strip_prefix('/')) {
                let version = rest.split_once('@').map(|(_, v)| v.to_owned()).unwrap_or_default();
                found = Some(version);
            }
        }
        let Some(found) = found else {
            return Err(LoadError::WrongWorld("it does not import oneup:connector/host"));
        };
        let served =
            bindings::SERVED_VERSIONS.iter().map(|(a, b, c)| format!("{a}.{b}.{c}")).collect::<Vec<_>>().join(", ");
        let parsed: Vec<u64> = found.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect();
        let ok = parsed.len() == 3
            && bindings::SERVED_VERSIONS.iter().any(|(major, minor, _)| {
                parsed[0] == *major && (*major > 0 || parsed[1] == *minor) && parsed[1] <= *minor
            });
        if !ok {
            return Err(LoadError::UnsupportedVersion { found, served });
        }
        Ok(found)
    }

    fn store_for(&self, _c: Option<&LoadedConnector>, session: Session) -> Store<SyncState> {
        let mut wasi = WasiCtxBuilder::new();
        // No network through WASI, whatever the defaults: connectors reach their CRM only
        // through `host.http-get` and its egress guard.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if self.config.inherit_stderr {
            wasi.inherit_stderr();
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        let cpu_ticks = (self.config.limits.cpu_time.as_millis() / TICK.as_millis()).max(1) as u64;
        let state = SyncState {
            wasi: wasi.build(),
            table,
            limiter: Limiter { memory_bytes: self.config.limits.memory_bytes },
            cpu_ticks_left: cpu_ticks,
            session,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.cpu_ticks_left == 0 {
                return Err(wasmtime::Error::new(CpuLimitExceeded));
            }
            state.cpu_ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    fn session_for(
        &self,
        connector: &LoadedConnector,
        setup: IntegrationSetup,
        with_sink: Option<Box<dyn SyncSink>>,
        gate: Option<Arc<http::RateGate>>,
    ) -> Result<Session, SyncError> {
        let manifest = connector.manifest.clone();
        let mut config = BTreeMap::new();
        for (key, value) in setup.config {
            if !manifest.config.iter().any(|s| s.key == key) {
                return Err(SyncError::Setup(format!("`{key}` is not a config key of connector {}", manifest.id)));
            }
            config.insert(key, value);
        }
        for spec in &manifest.config {
            if !config.contains_key(&spec.key) {
                match &spec.default {
                    Some(d) => {
                        config.insert(spec.key.clone(), d.clone());
                    }
                    None if spec.required => {
                        return Err(SyncError::Setup(format!(
                            "config `{}` is required by connector {}",
                            spec.key, manifest.id
                        )));
                    }
                    None => {}
                }
            }
        }
        for key in setup.secrets.keys() {
            if !manifest.secrets.iter().any(|s| &s.key == key) {
                return Err(SyncError::Setup(format!("`{key}` is not a secret key of connector {}", manifest.id)));
            }
        }
        for spec in manifest.secrets.iter().filter(|s| s.required) {
            if !setup.secrets.contains_key(&spec.key) {
                return Err(SyncError::Setup(format!(
                    "secret `{}` is required by connector {}",
                    spec.key, manifest.id
                )));
            }
        }
        let base_url = config
            .get(&manifest.base_url_key)
            .ok_or_else(|| SyncError::Setup(format!("config `{}` (the base URL) is missing", manifest.base_url_key)))?;
        let egress = EgressPolicy::new(manifest.host_patterns(), base_url, self.config.allow_loopback_http)
            .map_err(|e| SyncError::Setup(format!("base URL refused: {e}")))?;
        let credentials = match &manifest.auth {
            AuthSpec::None => Credentials::None,
            AuthSpec::ApiKeyHeader { header, secret_key } => {
                let secret = setup.secrets.get(secret_key).map(String::as_str).unwrap_or_default();
                Credentials::header(header, secret).map_err(|e| SyncError::Setup(e.to_string()))?
            }
            AuthSpec::Oauth2Refresh { token_url_key } => Credentials::Session(Arc::new(
                auth::AuthSession::oauth2(
                    token_url_key,
                    &config,
                    &setup.secrets,
                    manifest.host_patterns(),
                    self.config.allow_loopback_http,
                    setup.vault.clone(),
                )
                .map_err(|e| SyncError::Setup(e.to_string()))?,
            )),
            AuthSpec::BullhornSession { auth_url_key, login_url_key } => Credentials::Session(Arc::new(
                auth::AuthSession::bullhorn(
                    auth_url_key,
                    login_url_key,
                    &config,
                    &setup.secrets,
                    manifest.host_patterns(),
                    self.config.allow_loopback_http,
                    setup.vault.clone(),
                )
                .map_err(|e| SyncError::Setup(e.to_string()))?,
            )),
        };
        let limits = ValidationLimits { max_batch: self.config.limits.max_batch, ..ValidationLimits::default() };
        let validator = Validator::new(manifest.vocabulary().clone(), setup.tenant_key, &manifest.id, limits)
            .with_time_zone(setup.timezone);
        Ok(Session {
            manifest,
            config,
            egress: Some(egress),
            credentials,
            // One run's patience with the CRM's rate limits (a call of its own without one).
            http: self
                .http
                .with_gate(gate.unwrap_or_else(|| {
                    Arc::new(http::RateGate::new(
                        self.config.http.rate_wait_budget,
                        Some(Instant::now() + self.config.limits.wall_time),
                    ))
                }))
                .for_connector(&connector.manifest.id),
            validator: Some(Arc::new(validator)),
            commits: Committer::new(with_sink, self.config.limits.commit_policy()),
            pending: Pending::default(),
            max_pending: self.config.limits.max_pending,
            snapshots: SnapshotTracker::default(),
            stats: SyncStats::default(),
            violation: None,
            debug: setup.debug,
            opted_in: None,
            logged: 0,
            warned: 0,
        })
    }

    /// Checks an integration's settings against the connector without running anything:
    /// declared keys, required values, the base URL against the egress rules, the
    /// credentials' shape.
    pub fn check_setup(&self, connector: &LoadedConnector, setup: &IntegrationSetup) -> Result<(), SyncError> {
        let probe = IntegrationSetup {
            config: setup.config.clone(),
            secrets: setup.secrets.clone(),
            tenant_key: setup.tenant_key.clone(),
            debug: None,
            timezone: setup.timezone.clone(),
            vault: None,
        };
        self.session_for(connector, probe, None, None).map(drop)
    }

    /// The OAuth authorisation-code grant of `connector` with these settings (the config's
    /// defaults applied), for the connect flow; `Ok(None)` when its scheme refreshes no
    /// token (an API key, say). Refused settings are [`SyncError::Setup`].
    pub fn code_grant(
        &self,
        connector: &LoadedConnector,
        config: &BTreeMap<String, String>,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Option<auth::CodeGrant>, SyncError> {
        let manifest = &connector.manifest;
        let mut values = config.clone();
        for spec in &manifest.config {
            if let Some(default) = &spec.default {
                values.entry(spec.key.clone()).or_insert_with(|| default.clone());
            }
        }
        let loopback = self.config.allow_loopback_http;
        let grant = match &manifest.auth {
            AuthSpec::Oauth2Refresh { token_url_key } => auth::CodeGrant::oauth2(
                token_url_key,
                &values,
                client_id,
                client_secret,
                manifest.host_patterns(),
                loopback,
            ),
            AuthSpec::BullhornSession { auth_url_key, .. } => auth::CodeGrant::bullhorn(
                auth_url_key,
                &values,
                client_id,
                client_secret,
                manifest.host_patterns(),
                loopback,
            ),
            AuthSpec::None | AuthSpec::ApiKeyHeader { .. } => return Ok(None),
        };
        grant.map(Some).map_err(|e| SyncError::Setup(e.to_string()))
    }

    /// Exchanges an authorisation code for a refresh token through `grant` (see
    /// [`auth::CodeGrant::exchange`]).
    pub async fn exchange_code(
        &self,
        grant: &auth::CodeGrant,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, auth::ExchangeError> {
        grant.exchange(&self.http, code, verifier, redirect_uri).await
    }

    /// Instantiates the connector in a fresh store and drops it without calling it: a health
    /// check after install, and what the benchmark times per sync.
    pub async fn probe(&self, connector: &LoadedConnector) -> Result<(), SyncError> {
        let mut store = self.store_for(Some(connector), self.idle_session(connector.manifest.clone()));
        connector.pre.instantiate(&mut store).await.map_err(classify)
    }

    fn idle_session(&self, manifest: Arc<Manifest>) -> Session {
        Session {
            manifest,
            config: BTreeMap::new(),
            egress: None,
            credentials: Credentials::None,
            http: self.http.clone(),
            validator: None,
            commits: Committer::new(None, self.config.limits.commit_policy()),
            pending: Pending::default(),
            max_pending: 0,
            snapshots: SnapshotTracker::default(),
            stats: SyncStats::default(),
            violation: None,
            debug: None,
            opted_in: None,
            logged: 0,
            warned: 0,
        }
    }

    /// Runs one sync in a fresh instance, from `since` (the last committed cursor).
    ///
    /// Validated changes reach `sink` in commits that each carry the connector's latest
    /// checkpoint (several checkpoints may share one, see `SandboxLimits::commit_changes`)
    /// and at the end of a successful sync. After a failure, what preceded the last
    /// checkpoint is committed and nothing after it. Every commit has landed when this
    /// returns.
    pub async fn sync(
        &self,
        connector: &LoadedConnector,
        setup: IntegrationSetup,
        since: Option<&Cursor>,
        sink: Box<dyn SyncSink>,
    ) -> SyncReport {
        self.sync_with(connector, setup, since, sink, SyncScope::default()).await
    }

    /// [`Runtime::sync`] within a run's [`SyncScope`]: its [`http::RateGate`] (shared with
    /// its roster call) and the metrics the integration opted into (changes to others are
    /// dropped and counted as rejected, [`NOT_OPTED_IN`]).
    pub async fn sync_with(
        &self,
        connector: &LoadedConnector,
        setup: IntegrationSetup,
        since: Option<&Cursor>,
        sink: Box<dyn SyncSink>,
        scope: SyncScope<'_>,
    ) -> SyncReport {
        let started = Instant::now();
        let mut sink = Some(sink);
        let session = match self.session_for(connector, setup, None, scope.gate.cloned()) {
            Ok(mut s) => {
                s.opted_in = scope.opted_in.map(|m| Arc::new(m.iter().cloned().collect()));
                s
            }
            Err(e) => {
                return SyncReport {
                    result: Err(e),
                    stats: SyncStats::default(),
                    duration: started.elapsed(),
                    sink: sink.take().expect("sink"),
                    snapshot_skipped: false,
                };
            }
        };
        let mut store = self.store_for(Some(connector), session);
        store.data_mut().session.commits.set_sink(sink.take().expect("sink"));
        let since = since.map(|c| wit::Cursor {
            marks: c.iter().map(|(key, value)| wit::CursorMark { key: key.to_owned(), value }).collect(),
        });

        let call = connector.pre.sync(&mut store, since.as_ref());
        let called = tokio::time::timeout(self.config.limits.wall_time, call).await;
        let mut result = match called {
            Err(_) => Err(SyncError::Deadline),
            Ok(Err(e)) => Err(classify(e)),
            Ok(Ok(Err(reported))) => Err(reported_error(&connector.manifest, reported)),
            Ok(Ok(Ok(wit::SyncOutcome::Complete))) => Ok(SyncOutcome::Complete),
            Ok(Ok(Ok(wit::SyncOutcome::BudgetExhausted(resume_at)))) => Ok(SyncOutcome::BudgetExhausted(resume_at)),
        };
        let session = &mut store.data_mut().session;
        if let Some(v) = session.violation {
            // A violation fails the sync even if the connector swallowed the error.
            result = Err(SyncError::Contract(v));
        }
        if session.credentials.needs_reauthorization() {
            // So does a refused grant: requests went unanswered, whatever the connector made of it.
            result = Err(SyncError::NeedsReauthorization);
        }
        let mut snapshot_skipped = false;
        if result.is_ok() {
            // Snapshots ended by now are resolved in this commit; one still open is dropped.
            if session.snapshots.is_open() {
                snapshot_skipped = true;
                tracing::info!(connector = %connector.manifest.id, "a snapshot was still open at the end; it retracts nothing");
            }
            if let Err(e) = session.finish().await {
                result = Err(SyncError::Commit(e));
            }
        } else if let Err(e) = session.abandon().await {
            // The sync's own error stays the run's; nothing after the failed commit landed.
            tracing::warn!(connector = %connector.manifest.id, error = %e, "committing up to the last checkpoint of a failed sync failed");
        }
        let stats = session.stats.clone();
        if stats.logs_capped + stats.log_fields_dropped + stats.warnings_suppressed > 0 {
            // One line for everything the caps held back.
            tracing::warn!(
                connector = %connector.manifest.id,
                logs_capped = stats.logs_capped,
                log_fields_dropped = stats.log_fields_dropped,
                warnings_suppressed = stats.warnings_suppressed,
                "connector output over the per-sync caps was counted, not logged"
            );
        }
        let sink = session.commits.take_sink().expect("the sink is back once every commit has landed");
        let duration = started.elapsed();
        match &result {
            Ok(outcome) => {
                tracing::info!(connector = %connector.manifest.id, ?outcome, accepted = stats.accepted(), rejected = stats.rejected_total(), ms = duration.as_millis() as u64, "sync finished")
            }
            Err(e) => {
                tracing::warn!(connector = %connector.manifest.id, code = %e.code(), accepted = stats.accepted(), rejected = stats.rejected_total(), ms = duration.as_millis() as u64, "sync failed")
            }
        }
        SyncReport { result, stats, duration, sink, snapshot_skipped }
    }

    /// Asks the connector for the CRM's users, pseudonymising ids and checking e-mails.
    pub async fn roster(
        &self,
        connector: &LoadedConnector,
        setup: IntegrationSetup,
    ) -> Result<Vec<RosterUser>, SyncError> {
        self.roster_paced(connector, setup, None).await
    }

    /// [`Runtime::roster`] with the run's [`http::RateGate`] (shared with its sync call).
    pub async fn roster_paced(
        &self,
        connector: &LoadedConnector,
        setup: IntegrationSetup,
        gate: Option<Arc<http::RateGate>>,
    ) -> Result<Vec<RosterUser>, SyncError> {
        let key = setup.tenant_key.clone();
        let session = self.session_for(connector, setup, None, gate)?;
        let mut store = self.store_for(Some(connector), session);
        let call = connector.pre.roster(&mut store);
        let called = tokio::time::timeout(self.config.limits.wall_time, call).await;
        if store.data().session.credentials.needs_reauthorization() {
            return Err(SyncError::NeedsReauthorization);
        }
        let entries = match called {
            Err(_) => return Err(SyncError::Deadline),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(Err(reported))) => return Err(reported_error(&connector.manifest, reported)),
            Ok(Ok(Ok(entries))) => entries,
        };
        let mut users = Vec::with_capacity(entries.len());
        for entry in entries {
            if !crate::ingest::validate::is_identifier(&entry.crm_user_id) {
                return Err(SyncError::Contract(ContractViolation::BadIdentifier {
                    index: users.len(),
                    field: IdField::Owner,
                    len: entry.crm_user_id.len(),
                }));
            }
            // Entries without a usable work e-mail cannot be matched; skip them.
            if !looks_like_email(&entry.email) {
                continue;
            }
            users.push(RosterUser {
                owner: crate::ingest::pseudonym::keyed_hash(
                    &key,
                    Domain::Owner,
                    &connector.manifest.id,
                    &entry.crm_user_id,
                ),
                email: entry.email.to_ascii_lowercase(),
            });
        }
        Ok(users)
    }
}

/// Creates the compile cache folder owner-only (0700), or checks an existing one: one that
/// its group or others may access is made owner-only with a warning; one that cannot be
/// (another user's) is refused, since whoever can write there could plant native code.
fn private_cache_dir(dir: &Path) -> Result<(), CacheDirError> {
    let fail = |problem: String| CacheDirError { path: dir.display().to_string(), problem };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| fail(format!("cannot be created: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(dir).map_err(|e| fail(format!("cannot be read: {e}")))?;
        // Who this process is: the owner of a file it creates there.
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| fail(format!("cannot be checked: {e}")))?;
        let probe = dir.join(format!(".owner-{}-{}", std::process::id(), hex::encode(nonce)));
        std::fs::write(&probe, b"").map_err(|e| fail(format!("is not writable: {e}")))?;
        let me = std::fs::metadata(&probe).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        if me.map_err(|e| fail(format!("cannot be checked: {e}")))? != meta.uid() {
            return Err(fail("belongs to another user: use a folder of the service's own user".to_owned()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the compile cache folder was accessible to others; made owner-only (0700)"
            );
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| fail(format!("cannot be made owner-only: {e}")))?;
        }
    }
    Ok(())
}

fn looks_like_email(s: &str) -> bool {
    s.len() <= 254
        && s.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Turns a call's error into a `SyncError`, from typed causes only: a trap's own text is
/// wasmtime's, but backtraces name guest functions, so they are never included.
fn classify(err: wasmtime::Error) -> SyncError {
    if err.downcast_ref::<CpuLimitExceeded>().is_some() {
        return SyncError::CpuLimit;
    }
    if err.downcast_ref::<MemoryLimitExceeded>().is_some() {
        return SyncError::MemoryLimit;
    }
    if matches!(err.downcast_ref::<wasmtime::component::ResourceTableError>(), Some(ResourceTableError::Full)) {
        return SyncError::HandleLimit;
    }
    if let Some(SinkFailed(msg)) = err.downcast_ref::<SinkFailed>() {
        return SyncError::Commit(msg.clone());
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return SyncError::CpuLimit;
        }
        return SyncError::Trap(trap.to_string());
    }
    SyncError::Internal("the call into the connector failed".into())
}

fn reported_error(manifest: &Manifest, e: wit::ConnectorError) -> SyncError {
    let code = if manifest.declares_code(&e.code) { e.code } else { "undeclared_code".to_owned() };
    SyncError::Connector { code, http_status: e.http_status }
}

/// A manifest used only while `describe` runs (no imports are usable then).
fn placeholder_manifest(contract: &str) -> Manifest {
    let d = wit::Descriptor {
        id: "describing".into(),
        version: "0.0.0".into(),
        metrics: vec![wit::MetricDecl { slug: "none".into(), kind: wit::MetricKind::Count }],
        config: vec![wit::Setting { key: "base_url".into(), required: false, default_value: None }],
        secrets: vec![],
        base_url_key: "base_url".into(),
        allowed_hosts: vec![],
        auth: wit::AuthScheme::None,
        log_codes: vec![],
        cursor_keys: vec![],
        default_sync_interval_secs: 3600,
    };
    Manifest::from_descriptor(d, contract.to_owned()).expect("the placeholder manifest is valid")
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    //! The runtime's limits over its real types: what a fresh store gets, and how a limit
    //! that stopped a call is told apart from any other failure.

    use super::*;

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        let limits = SandboxLimits::default();
        assert_eq!(limits.memory_bytes, 64 << 20);
        assert_eq!(limits.cpu_time, Duration::from_secs(120));
        assert_eq!(limits.wall_time, Duration::from_secs(30 * 60));
        assert_eq!((limits.max_batch, limits.max_pending), (10_000, 200_000));
        let http = HttpLimits::default();
        assert_eq!(http.max_body_bytes, 16 << 20);
        assert_eq!(http.timeout, Duration::from_secs(30));
    }

    #[test]
    fn limit_errors_are_classified_by_their_type_not_their_text() {
        assert_eq!(classify(wasmtime::Error::new(MemoryLimitExceeded)), SyncError::MemoryLimit);
        assert_eq!(classify(wasmtime::Error::new(CpuLimitExceeded)), SyncError::CpuLimit);
        assert_eq!(classify(wasmtime::Error::new(wasmtime::Trap::Interrupt)), SyncError::CpuLimit);
        assert_eq!(classify(wasmtime::Error::new(ResourceTableError::Full)), SyncError::HandleLimit);
        assert_eq!(
            classify(wasmtime::Error::new(SinkFailed("disk full".into()))),
            SyncError::Commit("disk full".into())
        );
        // Found under context a call adds on the way out.
        let wrapped = wasmtime::Error::new(MemoryLimitExceeded).context("while running the guest");
        assert_eq!(classify(wrapped), SyncError::MemoryLimit);
        // A message that only reads like a limit is no limit, and its text is not kept.
        let lookalike = classify(wasmtime::Error::msg("the connector exceeded its memory limit"));
        assert_eq!(lookalike, SyncError::Internal("the call into the connector failed".into()));
        assert_eq!(classify(wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached)).code(), "trap");
    }

    #[test]
    fn a_fresh_store_gets_the_memory_cap_the_cpu_budget_and_the_handle_cap() {
        let limits =
            SandboxLimits { memory_bytes: 8 << 20, cpu_time: Duration::from_millis(250), ..Default::default() };
        let runtime = Runtime::new(RuntimeConfig { limits, ..Default::default() }).expect("a runtime");
        let session = runtime.idle_session(Arc::new(placeholder_manifest("0.2.0")));
        let mut store = runtime.store_for(None, session);
        assert_eq!(store.data().limiter.memory_bytes, 8 << 20);
        assert_eq!(store.data().cpu_ticks_left, 25, "250 ms in ticks of {TICK:?}");
        let table = &mut store.data_mut().table;
        for _ in 0..MAX_HANDLES {
            table.push(()).expect("within the handle cap");
        }
        assert!(matches!(table.push(()), Err(ResourceTableError::Full)), "handle {} is refused", MAX_HANDLES + 1);
        // A budget below one tick still allows one.
        let tiny = SandboxLimits { cpu_time: Duration::from_millis(1), ..Default::default() };
        let runtime = Runtime::new(RuntimeConfig { limits: tiny, ..Default::default() }).expect("a runtime");
        let store = runtime.store_for(None, runtime.idle_session(Arc::new(placeholder_manifest("0.2.0"))));
        assert_eq!(store.data().cpu_ticks_left, 1);
    }
}
