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
use super::output::{change_json, micros_to_decimal};
use super::{SandboxArgs, parse_key_value};
use crate::ingest::pseudonym::TenantKey;
use crate::runtime::{IntegrationSetup, LoadError, Runtime};

/// Arguments of `oneup connector check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The connector component (`*.wasm`, built for wasm32-wasip2).
    pub file: PathBuf,
    /// A config value, `key=value`; repeat for each key.
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// A secret value, `key=value`; repeat for each key. Never shown to the connector.
    #[arg(long = "secret", value_parser = parse_key_value)]
    pub secret: Vec<(String, String)>,
    /// The pseudonymisation key as 64 hex digits (default: a fresh random key, so the
    /// printed hashes differ between runs).
    #[arg(long, env = "ONEUP_CHECK_TENANT_KEY")]
    pub tenant_key: Option<String>,
    /// Skip the roster call (owners are then shown by hash only).
    #[arg(long)]
    pub no_roster: bool,
    /// Sandbox settings.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Runs the check.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(args.sandbox.runtime_config(true)).context("failed to start the sandbox runtime")?;
    let connector = match runtime.load_file(&args.file).await {
        Ok(c) => c,
        Err(e @ LoadError::Io(_)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
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
    let setup = |debug: bool| IntegrationSetup {
        config: args.config.iter().cloned().collect(),
        secrets: args.secret.iter().cloned().collect(),
        tenant_key: key.clone(),
        debug: debug.then(|| -> crate::runtime::DebugSink { Box::new(|msg: &str| eprintln!("debug: {msg}")) }),
    };

    // A misconfiguration (undeclared key, missing setting, base URL refused) is reported
    // once, before anything runs, with exit code 2 like any other usage error.
    if let Err(e) = runtime.check_setup(&connector, &setup(false)) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
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
    };
    let report = runtime.sync(&connector, setup(true), None, Box::new(sink)).await;

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
    Ok(if report.result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
