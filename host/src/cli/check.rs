//! `oneup connector check`: one sync of a component against a live (usually fake) CRM,
//! every committed change printed as a JSON line, then a summary.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;

use super::facts::{FactTable, TableSink};
use super::output::change_json;
use super::toolkit::Toolkit;
use super::{SandboxArgs, parse_key_value};
use crate::format::{micros_to_decimal, rfc3339_ms};
use crate::ingest::pseudonym::TenantKey;
use crate::runtime::auth::{MemoryVault, TokenVault};
use crate::runtime::{IntegrationSetup, LoadError};

/// Arguments of `oneup connector check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The connector component (`*.wasm`, built for wasm32-wasip2).
    pub file: PathBuf,
    /// A config value, `key=value`; repeat for each key.
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// A secret value, `key=value`; repeat for each key. Never shown to the connector.
    /// Prefer `--secret-file` or `ONEUP_SECRET_<KEY>`: a command line is visible to other
    /// users of the machine and kept in shell history.
    #[arg(long = "secret", value_parser = parse_key_value)]
    pub secret: Vec<(String, String)>,
    /// A secret read from a file, `key=PATH` (the file's content, without a final newline);
    /// repeat for each key.
    #[arg(long = "secret-file", value_parser = parse_key_value, value_name = "KEY=PATH")]
    pub secret_file: Vec<(String, String)>,
    /// The pseudonymisation key as 64 hex digits (default: a fresh random key, so the
    /// printed hashes differ between runs).
    #[arg(long, env = "ONEUP_CHECK_TENANT_KEY")]
    pub tenant_key: Option<String>,
    /// Skip the roster call (owners are then shown by hash only).
    #[arg(long)]
    pub no_roster: bool,
    /// The tenant's IANA time zone, where calendar dates the connector emits start their
    /// day (`Europe/Berlin`).
    #[arg(long, default_value = "UTC", value_parser = parse_time_zone)]
    pub timezone: crate::runtime::TimeZone,
    /// Save every HTTP exchange of the run (the connector's GETs and the host's token and
    /// login calls) as JSON files in this folder, secrets redacted.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Run offline against a recording made with `--record`: no network, secrets optional,
    /// config taken from the recording unless given.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Run the conformance suite: one PASS/FAIL line per check on stdout, exit code 1 if
    /// any fails.
    #[arg(long)]
    pub validate: bool,
    /// With `--validate`: the most requests one sync may make.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_requests: u64,
    /// Sandbox settings.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Adds the secrets of `--secret-file KEY=PATH` and of `ONEUP_SECRET_<KEY>` variables (the
/// key in upper case: `ONEUP_SECRET_API_TOKEN` is `api_token`) to `--secret`'s. A key given
/// twice is refused.
fn gather_secrets(args: &mut CheckArgs, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    let mut add = |key: String, value: String, from: &str| -> anyhow::Result<()> {
        anyhow::ensure!(!args.secret.iter().any(|(k, _)| *k == key), "secret `{key}` is given twice (again {from})");
        args.secret.push((key, value));
        Ok(())
    };
    for (key, path) in std::mem::take(&mut args.secret_file) {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read the secret file for `{key}`"))?;
        let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned();
        add(key, value, "in --secret-file")?;
    }
    for (name, value) in env {
        if let Some(key) = name.strip_prefix("ONEUP_SECRET_").filter(|k| !k.is_empty()) {
            add(key.to_ascii_lowercase(), value, &format!("in {name}"))?;
        }
    }
    Ok(())
}

fn parse_time_zone(name: &str) -> Result<crate::runtime::TimeZone, String> {
    crate::runtime::TimeZone::get(name).map_err(|_| format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin)"))
}

/// Runs the check.
pub async fn run(mut args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = gather_secrets(&mut args, std::env::vars()) {
        eprintln!("error: {e:#}");
        return Ok(ExitCode::from(2));
    }
    // --record, --replay, --validate: see `super::toolkit`.
    let toolkit = match Toolkit::prepare(&mut args) {
        Ok(toolkit) => toolkit,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = toolkit.runtime(args.sandbox.runtime_config(true)).context("failed to start the sandbox runtime")?;
    let connector = match runtime.load_file(&args.file).await {
        Ok(c) => c,
        Err(e @ LoadError::Io(_)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(toolkit.load_failed(&e));
        }
    };
    toolkit.loaded(connector.manifest(), &args.config, &args.secret);
    let m = connector.manifest();
    eprintln!(
        "connector {} {} (contract {}), metrics: {}",
        m.id,
        m.version,
        m.contract,
        m.metrics.iter().map(|x| x.slug.as_str()).collect::<Vec<_>>().join(", ")
    );

    let key = match &args.tenant_key {
        Some(hex) => TenantKey::from_hex(hex).context("--tenant-key must be 64 hex digits")?,
        None => TenantKey::random(),
    };
    // OAuth-style credentials: the roster and sync calls share one refresh token in memory
    // (a rotated one replaces it there; there is no database to keep it in).
    let given_refresh_token =
        args.secret.iter().find(|(k, _)| k == crate::runtime::auth::REFRESH_TOKEN).map(|(_, v)| v.as_str());
    let vault = Arc::new(MemoryVault::new(given_refresh_token.unwrap_or_default()));
    let setup = |debug: bool| IntegrationSetup {
        config: args.config.iter().cloned().collect(),
        secrets: args.secret.iter().cloned().collect(),
        tenant_key: key.clone(),
        debug: debug.then(|| -> crate::runtime::DebugSink { Box::new(|msg: &str| eprintln!("debug: {msg}")) }),
        timezone: args.timezone.clone(),
        vault: Some(vault.clone() as Arc<dyn TokenVault>),
    };

    // A misconfiguration (undeclared key, missing setting, base URL refused) is reported
    // once, before anything runs, with exit code 2 like any other usage error.
    if let Err(e) = runtime.check_setup(&connector, &setup(false)) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    if toolkit.validating() {
        return super::toolkit::validate::run(&toolkit, &runtime, &connector, &setup).await;
    }

    let mut emails: HashMap<String, String> = HashMap::new();
    if !args.no_roster {
        match runtime.roster(&connector, setup(true)).await {
            Ok(users) => {
                eprintln!("roster: {} CRM users with an e-mail", users.len());
                emails = users.into_iter().map(|u| (u.owner.to_string(), u.email)).collect();
            }
            Err(e) => eprintln!("roster failed: {e}"),
        }
    }

    let table = Arc::new(Mutex::new(FactTable::default()));
    let printed_emails = emails.clone();
    let sink = TableSink {
        table: table.clone(),
        on_change: Some(Box::new(move |change| {
            let mut line = change_json(change);
            if let Some(email) = line.get("owner").and_then(|o| o.as_str()).and_then(|o| printed_emails.get(o)) {
                line["owner_email"] = serde_json::json!(email);
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        })),
        on_snapshot: Some(Box::new(|snapshot, removed| {
            let line = serde_json::json!({
                "op": "snapshot",
                "metrics": snapshot.window.metrics(),
                "from": rfc3339_ms(snapshot.window.from_ms()),
                "to": rfc3339_ms(snapshot.window.to_ms()),
                "upserts_seen": snapshot.upserts(),
                "retracted": removed,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        })),
    };
    let report = runtime.sync(&connector, setup(true), None, Box::new(sink)).await;
    if vault.rotations() > 0 {
        eprintln!(
            "warning: the CRM rotated the refresh token ({} time(s)); the one given with --secret refresh_token \
             may now be spent and the new one is not shown: authorise again to get a refresh token for the next run",
            vault.rotations()
        );
    }
    if vault.refused().await {
        eprintln!("warning: the CRM's token endpoint refused the refresh token: authorise again");
    }

    let stats = &report.stats;
    eprintln!();
    eprintln!("summary");
    match &report.result {
        Ok(outcome) => eprintln!("  result:      {outcome:?}"),
        Err(e) => eprintln!("  result:      FAILED ({}) {e}", e.code()),
    }
    eprintln!("  duration:    {} ms", report.duration.as_millis());
    eprintln!("  requests:    {} ({} denied)", stats.http_requests, stats.http_denied);
    eprintln!("  accepted:    {} upserts, {} retractions", stats.upserts, stats.retractions);
    eprintln!("  committed:   {} changes in {} checkpoints", stats.committed, stats.checkpoints);
    if stats.snapshots > 0 {
        eprintln!("  snapshots:   {} completed", stats.snapshots);
    }
    if stats.accepted() > stats.committed {
        eprintln!(
            "  discarded:   {} changes after the last checkpoint (the sync failed)",
            stats.accepted() - stats.committed
        );
    }
    if !stats.rejected.is_empty() {
        eprintln!(
            "  rejected:    {}",
            stats.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        );
    }
    if stats.logs_dropped > 0 {
        eprintln!("  logs dropped (undeclared code): {}", stats.logs_dropped);
    }
    if stats.logs_capped + stats.log_fields_dropped + stats.warnings_suppressed > 0 {
        eprintln!(
            "  over the caps: {} log events, {} log fields, {} warnings (counted, not logged)",
            stats.logs_capped, stats.log_fields_dropped, stats.warnings_suppressed
        );
    }
    let table = table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?;
    eprintln!("  facts held:  {}", table.len());
    if let Some(cursor) = &table.cursor {
        let marks: Vec<String> = cursor.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("  cursor:      {}", marks.join(", "));
    }
    eprintln!("  totals per owner:");
    let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((owner, metric), total) in table.totals() {
        let who = emails.get(&owner.to_string()).cloned().unwrap_or_else(|| format!("owner {owner}"));
        let value = if total.money.is_empty() {
            format!("{metric}={}", total.count)
        } else {
            let parts: Vec<String> =
                total.money.iter().map(|(c, m)| format!("{} {c}", micros_to_decimal(*m))).collect();
            format!("{metric}={}", parts.join(" + "))
        };
        by_owner.entry(who).or_default().push(value);
    }
    for (who, values) in by_owner {
        eprintln!("    {who}: {}", values.join(", "));
    }
    toolkit.finish()?;
    Ok(if report.result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
