//! Shared helpers of the end-to-end tests: the wasm components (built once per test run),
//! a runtime configured for loopback, sinks that collect what a sync commits, a tiny
//! request-counting HTTP server, a log capture for privacy sweeps, and (in `app`) the real
//! `oneup serve` process with an API client and a database of its own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oneup::cli::{FactTable, TableSink};
use oneup::ingest::TenantKey;
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, RuntimeConfig, SandboxLimits, SyncReport};

pub mod app;
pub mod openapi;
pub use app::{
    Answer, Api, Backend, DEFAULT_DATABASE_URL, MASTER_KEY_HEX, OPERATOR_TOKEN, Scratch, Service, ServiceOptions,
    TestDatabase, eventually, postgres_skipped,
};

/// The folder holding the components: `$ONEUP_TEST_WASM_DIR` (set by `cargo xtask test`),
/// else built here once with cargo into a separate target folder.
pub fn wasm_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("ONEUP_TEST_WASM_DIR") {
            return PathBuf::from(dir);
        }
        let root = workspace_root();
        let target = root.join("target").join("test-wasm");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm-release"])
            .args([
                "-p",
                "oneup-connector-pipedrive",
                "-p",
                "oneup-connector-salesforce",
                "-p",
                "oneup-connector-bullhorn",
                "-p",
                "oneup-hostile-connector",
                "-p",
                "oneup-hostile-connector-wider",
                "-p",
                "oneup-wrong-version-connector",
                "-p",
                "oneup-v01-connector",
                "-p",
                "oneup-auth-connector",
                "-p",
                "oneup-auth-connector-bullhorn",
                "-p",
                "oneup-connector-template",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test components failed");
        target.join("wasm32-wasip2").join("wasm-release")
    })
    .clone()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The bytes of a component by crate name (`oneup-hostile-connector`).
pub fn component(crate_name: &str) -> Vec<u8> {
    let path = wasm_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The `oneup` binary built next to the test binaries.
pub fn oneup_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..");
    let bin = dir.join("oneup");
    assert!(bin.is_file(), "{} is missing: run `cargo build -p oneup` (cargo xtask test does)", bin.display());
    bin
}

/// A runtime for tests: loopback HTTP allowed, a compile cache shared by the test run,
/// short limits so hostile components are stopped quickly.
pub fn runtime() -> Runtime {
    runtime_with(SandboxLimits {
        cpu_time: Duration::from_secs(2),
        wall_time: Duration::from_secs(60),
        ..Default::default()
    })
}

/// A runtime with the given limits.
pub fn runtime_with(limits: SandboxLimits) -> Runtime {
    let http = oneup::runtime::http::HttpLimits { base_backoff: Duration::from_millis(20), ..Default::default() };
    Runtime::new(RuntimeConfig {
        cache_dir: Some(workspace_root().join("target").join("test-compile-cache")),
        cache_key: Some(oneup::runtime::CacheKey([3u8; 32])),
        limits,
        http,
        allow_loopback_http: true,
        inherit_stderr: false,
    })
    .expect("runtime starts")
}

/// A fixed tenant key, so hashes are reproducible within a test.
pub fn tenant_key() -> TenantKey {
    TenantKey::from_bytes([7u8; 32])
}

/// Settings for a sync.
pub fn setup(config: &[(&str, &str)], secrets: &[(&str, &str)]) -> IntegrationSetup {
    IntegrationSetup {
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        secrets: secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        tenant_key: tenant_key(),
        debug: None,
        vault: None,
        timezone: oneup::runtime::TimeZone::UTC,
    }
}

/// Runs one sync into `table` from the table's cursor; returns the report.
pub async fn sync_into(
    runtime: &Runtime,
    connector: &LoadedConnector,
    setup: IntegrationSetup,
    table: &Arc<Mutex<FactTable>>,
) -> SyncReport {
    let since = table.lock().unwrap().cursor.clone();
    let sink = TableSink { table: table.clone(), on_change: None, on_snapshot: None };
    runtime.sync(connector, setup, since.as_ref(), Box::new(sink)).await
}

/// A fresh, empty fact table.
pub fn table() -> Arc<Mutex<FactTable>> {
    Arc::new(Mutex::new(FactTable::default()))
}

/// A loopback HTTP server answering every request `200 {}` and counting them.
pub struct CountingServer {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    hits: Arc<AtomicUsize>,
}

impl CountingServer {
    /// Starts it on port 0.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 8192];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                        .await;
                });
            }
        });
        Self { base_url, hits }
    }

    /// Connections received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Captures every tracing event of the test process (as JSON lines) for privacy sweeps.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let buf = LogCapture(Arc::new(Mutex::new(Vec::new())));
            let writer = buf.clone();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
            buf
        })
        .clone()
}

/// The captured log.
#[derive(Clone)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts of rejected changes by reason, for assertions.
pub fn rejected(report: &SyncReport) -> BTreeMap<String, u64> {
    report.stats.rejected.clone()
}

/// The path of a component by crate name (`oneup-connector-pipedrive`), for the `oneup`
/// binary's command line.
pub fn component_path(crate_name: &str) -> PathBuf {
    let path = wasm_dir().join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The Pipedrive connector's crate name.
pub const PIPEDRIVE: &str = "oneup-connector-pipedrive";

/// A fake Pipedrive on loopback serving a generated company (`users` salespeople, `deals`
/// deals, `activities` activities), accepting `token`.
///
/// The data ends at the wall clock, as a real account's does: the connector looks for deals
/// deleted since shortly before its first sync by the host's clock, so a company frozen in
/// the past would hide every later deletion from it.
pub async fn fake_pipedrive(
    seed: u64,
    users: usize,
    deals: usize,
    activities: usize,
    token: &str,
) -> oneup_fake_crm::pipedrive::FakePipedrive {
    use oneup_fake_crm::pipedrive::{Dataset, DatasetSpec, FakePipedrive};
    let spec = DatasetSpec::new(seed, users, deals, activities).ending_at(oneup_fake_crm::Timestamp::now_utc());
    FakePipedrive::start(Dataset::generate_with(&spec), token).await.expect("the fake Pipedrive starts")
}

/// `GET url` outside the JSON API client (a page, or an answer whose headers a test reads),
/// with its status and body still checked against the OpenAPI document. Returns the status,
/// the headers and the body.
pub async fn get_checked(base: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap_or_else(|e| panic!("{path}: no answer: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    if let Err(drift) = openapi::check_answer("GET", path, status, &text) {
        panic!("the answer does not match host/openapi.json: {drift}\nbody: {text}");
    }
    (status, headers, text)
}
