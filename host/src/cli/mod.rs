//! The `oneup` command line: thin wrappers that parse arguments, build the runtime and
//! call into the library.

mod audit;
mod check;
mod demo;
mod describe;
mod facts;
mod fake;
mod keys;
pub mod output;
mod probe;
mod serve;
mod sweep;
mod toolkit;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use check::CheckArgs;
pub use demo::DemoArgs;
pub use facts::{ChangeHook, FactTable, SnapshotHook, TableSink, Total};

/// oneup: a privacy-first KPI host for CRM connectors.
#[derive(Debug, Parser)]
#[command(name = "oneup", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr: `text` or `json`.
    #[arg(long, global = true, env = "ONEUP_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The log format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
// Parsed once per process: the size of `serve`'s arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with connector components.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Run the service: the HTTP API and the sync scheduler.
    Serve(Box<serve::ServeArgs>),
    /// Apply pending database migrations and exit (`serve` also applies them at start).
    Migrate(serve::MigrateArgs),
    /// Run the demo: fake CRMs full of personal data, a sync, the totals, and a sweep
    /// showing that none of the personal data was kept.
    Demo(DemoArgs),
    /// Serve a built-in fake CRM on loopback (for `connector check` and development).
    #[command(subcommand)]
    FakeCrm(FakeCrmCommand),
    /// Manage the master key that seals secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// GET a probe URL (default `http://127.0.0.1:8080/readyz`) and exit 0 on a 2xx answer:
    /// a container health check without curl.
    Probe(probe::ProbeArgs),
    /// Check the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Audit log commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute each tenant's audit chain and name the first entry that does not verify
    /// (edited, removed or inserted underneath the service); exits 1 if one does not.
    Verify(audit::VerifyArgs),
}

/// Master key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every integration secret and tenant key under a new master key, in one
    /// transaction (stop every node first). The current key from `ONEUP_MASTER_KEY` or
    /// `--master-key-file`; the new one from `ONEUP_NEW_MASTER_KEY` or
    /// `--new-master-key-file` (created if missing). Safe to run again.
    Rotate(keys::RotateArgs),
}

/// Fake CRM servers.
#[derive(Debug, Subcommand)]
pub enum FakeCrmCommand {
    /// A fake Pipedrive (API v2 deals and activities, v1 users) full of invented personal data.
    Pipedrive(fake::FakePipedriveArgs),
    /// A fake Salesforce org (REST API v62.0 with SOQL, and its OAuth token endpoint) full of
    /// invented personal data.
    Salesforce(fake::FakeSalesforceArgs),
    /// A fake Bullhorn (OAuth, REST login, search and query of placements and job
    /// submissions) full of invented personal data.
    Bullhorn(fake::FakeBullhornArgs),
    /// The fake "Example CRM" that `connectors/template` reads (deals and users, `x-api-key`).
    Example(fake::FakeExampleArgs),
}

/// Connector commands.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Run one sync of a component against a live (usually fake) CRM and print every event
    /// it would emit as JSON lines on stdout, then a summary on stderr. The connector's
    /// free-text debug output and panic messages are shown here and nowhere in production.
    Check(Box<CheckArgs>),
    /// Print a component's grants (hosts it may reach, metrics, config and secret keys,
    /// auth scheme, log codes, cursor keys, contract version, host limits) and its sha256:
    /// what to review before installing it. Nothing runs but its `describe` answer.
    Describe(describe::DescribeArgs),
}

/// Settings shared by commands that run connectors.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Allow plain-http base URLs on loopback (tests, demos).
    #[arg(long, env = "ONEUP_ALLOW_LOOPBACK_HTTP", value_parser = parse_flag, default_value = "0")]
    pub allow_loopback_http: bool,
    /// Where compiled components are cached.
    #[arg(long, env = "ONEUP_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Memory cap per connector instance, in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// CPU time a connector may spend per sync, in seconds.
    #[arg(long, default_value_t = 120)]
    pub cpu_secs: u64,
    /// Wall-clock deadline per sync, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub deadline_secs: u64,
}

impl SandboxArgs {
    /// The runtime configuration these arguments describe.
    pub fn runtime_config(&self, inherit_stderr: bool) -> crate::runtime::RuntimeConfig {
        crate::runtime::RuntimeConfig {
            cache_dir: self.cache_dir.clone(),
            limits: crate::runtime::SandboxLimits {
                memory_bytes: self.memory_mib * 1024 * 1024,
                cpu_time: std::time::Duration::from_secs(self.cpu_secs),
                wall_time: std::time::Duration::from_secs(self.deadline_secs),
                ..Default::default()
            },
            allow_loopback_http: self.allow_loopback_http,
            inherit_stderr,
            ..Default::default()
        }
    }
}

/// `1`, `true`, `yes` and `on` are true; `0`, `false`, `no`, `off` and empty are false.
pub(crate) fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected 1 or 0, got `{other}`")),
    }
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected key=value, got `{s}`"))?;
    if k.is_empty() {
        return Err(format!("empty key in `{s}`"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Connector(ConnectorCommand::Check(args)) => check::run(*args).await,
        Command::Connector(ConnectorCommand::Describe(args)) => describe::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Keys(KeysCommand::Rotate(args)) => keys::rotate(args).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(args).await,
        Command::FakeCrm(FakeCrmCommand::Pipedrive(args)) => fake::run(args).await,
        Command::FakeCrm(FakeCrmCommand::Salesforce(args)) => fake::run_salesforce(args).await,
        Command::FakeCrm(FakeCrmCommand::Bullhorn(args)) => fake::run_bullhorn(args).await,
        Command::FakeCrm(FakeCrmCommand::Example(args)) => fake::run_example(args).await,
    }
}
