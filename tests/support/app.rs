//! The service as its users meet it: the real `oneup serve` binary started on port 0 against
//! a database of its own (an SQLite file in a scratch folder, or a fresh Postgres database),
//! an HTTP client for its API, and a dump of every table of that database.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oneup::store::admin::{create_postgres_database, drop_postgres_database, unique_database_name};
use serde_json::Value as Json;
use sqlx::{Connection, Row};

use crate::{PIPEDRIVE, component_path, oneup_bin, workspace_root};

/// The Postgres server the tests use when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The operator's bearer token of every test service.
pub const OPERATOR_TOKEN: &str = "operator-e2e-3d9f0b7a51c2-6e04a8d95b17f3c2";

/// The master key of every test service (64 hex digits); the same across restarts.
pub const MASTER_KEY_HEX: &str = "5e1f0c9a7b3d2e4f6a8b0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f506";

/// Whether the Postgres half of the suite is skipped (`ONEUP_TEST_NO_POSTGRES=1`).
pub fn postgres_skipped() -> bool {
    std::env::var("ONEUP_TEST_NO_POSTGRES").is_ok_and(|v| v == "1")
}

/// A scratch folder of its own under the system's temporary folder. Removed on drop, unless
/// the test is panicking: then it is kept (with the service's logs) and its path printed.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A fresh, empty folder whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            unique_database_name("s")
        ));
        std::fs::create_dir_all(&path).expect("a scratch folder");
        Self { path }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A Postgres database.
    Postgres,
}

/// A database of its own for one test: an SQLite file in a scratch folder, or a fresh
/// Postgres database created from `DATABASE_URL` (default [`DEFAULT_DATABASE_URL`]) and
/// dropped at the end.
pub struct TestDatabase {
    /// What services connect with (`DATABASE_URL`).
    pub url: String,
    /// The backend.
    pub backend: Backend,
    sqlite_file: Option<PathBuf>,
    postgres: Option<(String, String)>,
    _scratch: Option<Scratch>,
}

impl TestDatabase {
    /// A new SQLite file (created by the first service that opens it).
    pub fn sqlite() -> Self {
        let scratch = Scratch::new("oneup-db");
        let file = scratch.path().join("oneup.sqlite");
        Self {
            url: format!("sqlite://{}?mode=rwc", file.display()),
            backend: Backend::Sqlite,
            sqlite_file: Some(file),
            postgres: None,
            _scratch: Some(scratch),
        }
    }

    /// A fresh Postgres database; `None` only when `ONEUP_TEST_NO_POSTGRES=1`. A Postgres
    /// that does not answer fails the test.
    pub async fn postgres() -> Option<Self> {
        if postgres_skipped() {
            eprintln!("ONEUP_TEST_NO_POSTGRES=1: skipping the Postgres half of this test");
            return None;
        }
        let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let name = unique_database_name("oneup_service_test");
        let url = create_postgres_database(&admin_url, &name).await.unwrap_or_else(|e| {
            panic!(
                "Postgres at DATABASE_URL (default {DEFAULT_DATABASE_URL}) does not answer: {e}; \
                 start it, or set ONEUP_TEST_NO_POSTGRES=1 to skip the Postgres half"
            )
        });
        Some(Self {
            url,
            backend: Backend::Postgres,
            sqlite_file: None,
            postgres: Some((admin_url, name)),
            _scratch: None,
        })
    }

    /// A database of `backend`'s kind (`None`: Postgres skipped).
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// Every row of every table, as text, by table: on Postgres `SELECT t::text` of every
    /// base table (byte strings appear as `\x…` hex); on SQLite `quote()` of every column
    /// (byte strings as `X'…'` hex). Rows sorted, so two dumps compare equal when the
    /// data are the same.
    pub async fn dump(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("the test database answers");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                     WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
                )
                .fetch_all(&mut conn)
                .await
                .expect("tables listed");
                for table in tables {
                    let (schema, name) = table.split_once('.').expect("schema.table");
                    let mut rows: Vec<String> =
                        sqlx::query_scalar(&format!("SELECT t::text FROM \"{schema}\".\"{name}\" t"))
                            .fetch_all(&mut conn)
                            .await
                            .expect("table read");
                    rows.sort();
                    out.insert(name.to_owned(), rows);
                }
                conn.close().await.ok();
            }
            Backend::Sqlite => {
                let url = self.url.replace("mode=rwc", "mode=rw");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("the test database opens");
                let tables: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                        .fetch_all(&mut conn)
                        .await
                        .expect("tables listed");
                for table in tables {
                    let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(&mut conn)
                        .await
                        .expect("columns listed")
                        .iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect();
                    if columns.is_empty() {
                        continue;
                    }
                    let select =
                        columns.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || ',' || ");
                    let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {select} FROM \"{table}\""))
                        .fetch_all(&mut conn)
                        .await
                        .expect("table read");
                    rows.sort();
                    out.insert(table, rows);
                }
                conn.close().await.ok();
            }
        }
        out
    }

    /// The raw bytes of the SQLite database file and its write-ahead log (empty on Postgres).
    pub fn raw_bytes(&self) -> Vec<u8> {
        let Some(file) = &self.sqlite_file else { return Vec::new() };
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-journal"] {
            let mut path = file.clone().into_os_string();
            path.push(suffix);
            if let Ok(b) = std::fs::read(&path) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes
    }

    /// What the database holds on disk, as bytes, for sweeps below the SQL level: on SQLite
    /// the file and its logs ([`TestDatabase::raw_bytes`]); on Postgres, after a
    /// `CHECKPOINT` (so that every committed change is in the files), the main fork of every
    /// relation of this database (tables, TOAST tables, indexes and this database's own
    /// catalogs, `pg_statistic` included) read with
    /// `pg_read_binary_file(pg_relation_filepath(…))`. Left out: the catalogs and the
    /// write-ahead log that all databases of the server share (other tests write there).
    /// Deleted rows stay in these files until their space is reused (see
    /// `host/src/store/erasure.rs`), so this sweeps what was ever stored, not what is live.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        if self.backend == Backend::Sqlite {
            return self.raw_bytes();
        }
        let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("the test database answers");
        sqlx::query("CHECKPOINT").execute(&mut conn).await.expect("CHECKPOINT (the test user is a superuser)");
        let files: Vec<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT pg_read_binary_file(pg_relation_filepath(c.oid), 0, pg_relation_size(c.oid), true) \
             FROM pg_class c WHERE NOT c.relisshared AND pg_relation_filepath(c.oid) IS NOT NULL ORDER BY c.oid",
        )
        .fetch_all(&mut conn)
        .await
        .expect("the relation files are readable (the test user is a superuser)");
        conn.close().await.ok();
        let bytes: Vec<u8> = files.into_iter().flatten().flatten().collect();
        assert!(bytes.len() > 1 << 20, "the relation files were read: {} bytes", bytes.len());
        bytes
    }

    /// Runs SQL statements (`;`-separated) as someone with direct access to the database
    /// would: an attacker editing rows, or time passing faster than it does.
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("the test database answers");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("the statements run");
                conn.close().await.ok();
            }
            Backend::Sqlite => {
                let url = self.url.replace("mode=rwc", "mode=rw");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("the test database opens");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect("the statements run");
                conn.close().await.ok();
            }
        }
    }

    /// Runs one SQL statement returning one text column, every row.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("the test database answers");
                let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.expect("the query runs");
                conn.close().await.ok();
                rows
            }
            Backend::Sqlite => {
                let url = self.url.replace("mode=rwc", "mode=rw");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("the test database opens");
                let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.expect("the query runs");
                conn.close().await.ok();
                rows
            }
        }
    }

    /// Runs one SQL statement returning one integer (counts in assertions).
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("the test database answers");
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("the query runs");
                conn.close().await.ok();
                n
            }
            Backend::Sqlite => {
                let url = self.url.replace("mode=rwc", "mode=rw");
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("the test database opens");
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("the query runs");
                conn.close().await.ok();
                n
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop may run inside the test's runtime (or while panicking): drop the database
            // from a thread with a runtime of its own.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                rt.block_on(drop_postgres_database(&admin_url, &name))
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {}", self.url);
            }
        }
    }
}

/// How to start a service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// `--lease-secs`.
    pub lease_secs: u64,
    /// `--poll-secs`.
    pub poll_secs: u64,
    /// `--node-name` (default: the binary's own).
    pub node_name: Option<String>,
    /// `ONEUP_LOG` (default: the binary's own, `warn,oneup=info`).
    pub log: Option<String>,
    /// `--log-format json`.
    pub json_logs: bool,
    /// `ONEUP_MASTER_KEY` (default: [`MASTER_KEY_HEX`]).
    pub master_key: Option<String>,
    /// `ONEUP_DEV_ALLOW_LOOPBACK=1` (the fakes are on loopback). `ONEUP_ALLOW_LOOPBACK_HTTP=1`
    /// is always set, to show that `serve` ignores it.
    pub dev_allow_loopback: bool,
    /// More arguments for `oneup serve`.
    pub args: Vec<String>,
    /// More components installed beside the three CRM connectors: file name and bytes.
    pub extra_connectors: Vec<(String, Vec<u8>)>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            poll_secs: 1,
            node_name: None,
            log: None,
            json_logs: true,
            master_key: None,
            dev_allow_loopback: true,
            args: Vec::new(),
            extra_connectors: Vec::new(),
        }
    }
}

/// A running `oneup serve` process with the Pipedrive connector installed. Killed (SIGKILL)
/// when dropped. Its stdout and stderr go to files in its scratch folder.
pub struct Service {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    stderr: PathBuf,
    scratch: Scratch,
}

impl Service {
    /// Starts `oneup serve --bind 127.0.0.1:0` on `database_url` and waits until it prints
    /// the address it listens on.
    pub async fn start(database_url: &str, options: &ServiceOptions) -> Self {
        let scratch = Scratch::new("oneup-service");
        let dir = scratch.path().to_path_buf();
        let connectors = dir.join("connectors");
        std::fs::create_dir_all(&connectors).expect("connectors folder");
        std::fs::copy(component_path(PIPEDRIVE), connectors.join("pipedrive.wasm")).expect("the component is copied");
        std::fs::copy(component_path("oneup-connector-bullhorn"), connectors.join("bullhorn.wasm"))
            .expect("the Bullhorn component is copied");
        std::fs::copy(component_path("oneup-connector-salesforce"), connectors.join("salesforce.wasm"))
            .expect("the Salesforce component is copied");
        for (name, bytes) in &options.extra_connectors {
            std::fs::write(connectors.join(name), bytes).expect("an extra component is written");
        }
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");

        let mut cmd = Command::new(oneup_bin());
        cmd.current_dir(&dir)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .arg("--connectors")
            .arg(&connectors)
            .args(["--poll-secs", &options.poll_secs.to_string()])
            .args(["--lease-secs", &options.lease_secs.to_string()])
            .args(["--sync-wait-secs", "120"]);
        if let Some(node) = &options.node_name {
            cmd.args(["--node-name", node]);
        }
        if options.json_logs {
            cmd.args(["--log-format", "json"]);
        }
        cmd.args(&options.args);
        for var in [
            "ONEUP_BIND",
            "ONEUP_CONNECTORS_DIR",
            "ONEUP_NODE_NAME",
            "ONEUP_MAX_SYNCS",
            "ONEUP_LEASE_SECS",
            "ONEUP_POLL_SECS",
            "ONEUP_MASTER_KEY_FILE",
            "ONEUP_LOG",
            "ONEUP_LOG_FORMAT",
            "ONEUP_MAX_SYNCS_PER_TENANT",
            "ONEUP_RATE_WAIT_BUDGET_SECS",
            "ONEUP_TLS_CERT",
            "ONEUP_TLS_KEY",
            "ONEUP_METRICS_ADDR",
            "ONEUP_PUBLIC_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("DATABASE_URL", database_url)
            .env("ONEUP_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("ONEUP_ALLOW_LOOPBACK_HTTP", "1")
            // No drain period after SIGTERM unless a test asks for one (`--drain-secs`).
            .env("ONEUP_DRAIN_SECS", "0")
            .env("ONEUP_DEV_ALLOW_LOOPBACK", if options.dev_allow_loopback { "1" } else { "0" })
            .env("ONEUP_MASTER_KEY", options.master_key.as_deref().unwrap_or(MASTER_KEY_HEX))
            .env("ONEUP_CACHE_DIR", workspace_root().join("target").join("test-compile-cache").join("service"));
        if let Some(log) = &options.log {
            cmd.env("ONEUP_LOG", log);
        }
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        let mut child = cmd.spawn().expect("oneup serve starts");

        let deadline = Instant::now() + Duration::from_secs(120);
        let base_url = loop {
            let out = std::fs::read_to_string(&stdout).unwrap_or_default();
            if let Some(line) = out.lines().find_map(|l| l.strip_prefix("oneup listening on ")) {
                break line.trim().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "oneup serve exited with {status} before listening; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "oneup serve did not print its address within 120 s; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self { child: Some(child), base_url, stderr, scratch }
    }

    /// An API client for this service.
    pub fn api(&self) -> Api {
        Api::new(&self.base_url)
    }

    /// Everything the service logged so far (its stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The service's scratch folder (its working directory).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// `kill -9`: the process gets no chance to clean up. Waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM (what a process manager sends to stop the service gracefully).
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("the service is running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `timeout` for the process to exit and returns its exit status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("the service was started");
            if let Some(status) = child.try_wait().expect("the process can be waited for") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the service did not exit within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: String =
                logs.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            eprintln!("--- last log lines of the service at {} ---\n{tail}", self.base_url);
        }
    }
}

/// An HTTP answer: status, body as JSON (`Null` when empty or not JSON) and as text.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body parsed as JSON, or `Null`.
    pub json: Json,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Json {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        &self.json
    }

    /// Asserts an error answer: the status, and a body `{"error":{"code","message"}}` with
    /// a non-empty code and message. Returns the code.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        let error = self.json.get("error").unwrap_or_else(|| panic!("no `error` object in {}", self.text));
        let code = error.get("code").and_then(Json::as_str).unwrap_or_else(|| panic!("no error code: {}", self.text));
        let message =
            error.get("message").and_then(Json::as_str).unwrap_or_else(|| panic!("no error message: {}", self.text));
        assert!(!code.is_empty() && !message.is_empty(), "empty code or message: {}", self.text);
        assert_eq!(self.json.as_object().map(|o| o.len()), Some(1), "only `error` at the top: {}", self.text);
        code.to_owned()
    }
}

/// A small client for the service's JSON API.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(180)).no_proxy().build().expect("an HTTP client");
        Self { client, base: base.trim_end_matches('/').to_owned() }
    }

    /// Sends `method path` with an optional bearer token and an optional raw JSON body.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Answer {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.send_raw(method, path, &headers, body).await
    }

    /// Sends `method path` with exactly these headers and an optional raw body.
    pub async fn send_raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut req = self.client.request(verb, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.body(body.to_owned());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: the service does not answer: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if let Err(drift) = crate::openapi::check_answer(method, path, status, &text) {
            panic!("the answer does not match host/openapi.json: {drift}\nbody: {text}");
        }
        Answer { status, json, text }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send("GET", path, Some(token), None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Json) -> Answer {
        self.send("POST", path, Some(token), Some(&body.to_string())).await
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str, token: &str) -> Answer {
        self.send("POST", path, Some(token), None).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, token: &str, body: &Json) -> Answer {
        self.send("PUT", path, Some(token), Some(&body.to_string())).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.send("DELETE", path, Some(token), None).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: &Json) -> Answer {
        self.send("PATCH", path, Some(token), Some(&body.to_string())).await
    }
}

/// A JSON string's text; panics (naming the value) on anything else.
#[track_caller]
pub fn str_of(v: &Json) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

/// A tenant set up through the API as its operator and admin would: the tenant with its
/// admin, a manager and a member, each with a token. The suites build their own users and
/// CRM data on top.
pub struct Tenant {
    /// The client.
    pub api: Api,
    /// The tenant's id.
    pub id: String,
    /// The admin's user id.
    pub admin_id: String,
    /// The admin's token.
    pub admin: String,
    /// The manager's user id.
    pub manager_id: String,
    /// The manager's token.
    pub manager: String,
    /// The member's user id.
    pub member_id: String,
    /// The member's token.
    pub member: String,
}

impl Tenant {
    /// The operator creates the tenant (`admin@{domain}`) in `timezone` and `currency`;
    /// its admin adds `manager@{domain}` and `member@{domain}`.
    pub async fn create(api: &Api, name: &str, domain: &str, timezone: &str, currency: &str) -> Self {
        let created = api
            .post(
                "/v1/tenants",
                OPERATOR_TOKEN,
                &serde_json::json!({
                    "name": name,
                    "timezone": timezone,
                    "currency": currency,
                    "admin": {"name": "Tenant Admin", "email": format!("admin@{domain}")},
                }),
            )
            .await;
        let body = created.expect(201);
        let mut tenant = Tenant {
            api: api.clone(),
            id: str_of(&body["id"]),
            admin_id: str_of(&body["admin"]["id"]),
            admin: str_of(&body["admin"]["token"]),
            manager_id: String::new(),
            manager: String::new(),
            member_id: String::new(),
            member: String::new(),
        };
        (tenant.manager_id, tenant.manager) =
            tenant.add_user("Team Manager", &format!("manager@{domain}"), "manager").await;
        (tenant.member_id, tenant.member) = tenant.add_user("Team Member", &format!("member@{domain}"), "member").await;
        tenant
    }

    /// The admin creates a user and a token for them, used once: `(id, token)`.
    pub async fn add_user(&self, name: &str, email: &str, role: &str) -> (String, String) {
        let body = serde_json::json!({"name": name, "email": email, "role": role});
        let created = self.api.post("/v1/users", &self.admin, &body).await;
        let id = str_of(&created.expect(201)["id"]);
        let token = self.api.post_empty(&format!("/v1/users/{id}/tokens"), &self.admin).await;
        let token = str_of(&token.expect(201)["token"]);
        // Used once, so that its first use (recorded: `last_used_at`, a `token.first_used`
        // audit entry) is behind the suites' "nothing is written" checks.
        self.api.get("/v1/me", &token).await.expect(200);
        (id, token)
    }

    /// The admin enables Pipedrive against the fake at `base_url` with `api_token`.
    pub async fn enable_pipedrive(&self, base_url: &str, api_token: &str) -> Answer {
        let body = serde_json::json!({"config": {"base_url": base_url}, "secrets": {"api_token": api_token}});
        self.api.put("/v1/integrations/pipedrive", &self.admin, &body).await
    }

    /// `POST /v1/integrations/pipedrive/sync?wait=true`: the finished run, which must have
    /// succeeded.
    pub async fn sync_pipedrive(&self) -> Json {
        let answer = self.api.post_empty("/v1/integrations/pipedrive/sync?wait=true", &self.admin).await;
        let run = answer.expect(200).clone();
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["error"], Json::Null, "{run}");
        run
    }

    /// The admin creates a team with these members; its id.
    pub async fn team(&self, name: &str, members: &[&str]) -> String {
        let created = self.api.post("/v1/teams", &self.admin, &serde_json::json!({"name": name})).await;
        let team = str_of(&created.expect(201)["id"]);
        for m in members {
            self.api.send("PUT", &format!("/v1/teams/{team}/members/{m}"), Some(&self.admin), None).await.expect(204);
        }
        team
    }
}

/// Polls `check` every 100 ms until it gives a value or `timeout` passes (then panics
/// naming `what`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
