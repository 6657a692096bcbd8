//! `oneup connector describe`: a component's grants and its SHA-256, what an operator
//! reviews before installing it (like a browser extension's permissions).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::runtime::manifest::Manifest;
use crate::runtime::{MAX_HANDLES, MAX_LOG_EVENTS, MAX_LOG_FIELDS, Runtime, RuntimeConfig, SandboxLimits};

/// Arguments of `oneup connector describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The connector component (`*.wasm`).
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Loads the component (nothing else runs: its `describe` answer only) and prints its
/// grants. Exit code 2 when the file is not a connector this host can load.
pub async fn run(args: DescribeArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let connector = match runtime.load_file(&args.file).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let m = connector.manifest();
    let limits = SandboxLimits::default();
    let described = json!({
        "file": args.file.display().to_string(),
        "sha256": connector.digest_hex(),
        "id": m.id,
        "version": m.version,
        "contract": m.contract,
        "allowed_hosts": m.allowed_hosts,
        "metrics": m.metrics,
        "config": m.config,
        "secrets": m.secrets.iter().map(|s| json!({"key": s.key, "required": s.required})).collect::<Vec<_>>(),
        "base_url_key": m.base_url_key,
        "auth": m.auth,
        "log_codes": m.log_codes,
        "cursor_keys": m.cursor_keys,
        "default_sync_interval_secs": m.default_sync_interval.as_secs(),
        "limits": {
            "memory_bytes": limits.memory_bytes,
            "cpu_secs": limits.cpu_time.as_secs(),
            "wall_secs": limits.wall_time.as_secs(),
            "max_batch": limits.max_batch,
            "max_pending": limits.max_pending,
            "max_handles": MAX_HANDLES,
            "log_events_per_sync": MAX_LOG_EVENTS,
            "log_fields_per_event": MAX_LOG_FIELDS,
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&described)?);
    } else {
        print_text(m, &connector.digest_hex(), &described["limits"]);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(m: &Manifest, sha256: &str, limits: &serde_json::Value) {
    let list = |items: &[String]| if items.is_empty() { "(none)".to_owned() } else { items.join(", ") };
    println!("connector {} {} (contract oneup:connector@{})", m.id, m.version, m.contract);
    println!("sha256       {sha256}");
    println!();
    println!("It may reach (base URL host patterns):");
    for host in &m.allowed_hosts {
        println!("  {host}");
    }
    if m.allowed_hosts.is_empty() {
        println!("  (none)");
    }
    println!("It may write these metrics:");
    for metric in &m.metrics {
        println!(
            "  {} ({})",
            metric.slug,
            serde_json::to_value(metric.kind).unwrap_or_default().as_str().unwrap_or("")
        );
    }
    println!("It is given:");
    let keys = |specs: &[crate::runtime::manifest::SettingSpec]| {
        specs
            .iter()
            .map(|s| if s.required { format!("{} (required)", s.key) } else { s.key.clone() })
            .collect::<Vec<_>>()
    };
    println!("  config keys: {} (base URL: {})", list(&keys(&m.config)), m.base_url_key);
    println!("  secret keys: {}", list(&keys(&m.secrets)));
    println!("  auth scheme: {}", m.auth.describe());
    println!("It may log these codes: {}", list(&m.log_codes));
    println!("It may keep these cursor keys: {}", list(&m.cursor_keys));
    println!("Default sync interval: {} s", m.default_sync_interval.as_secs());
    println!(
        "Host limits: memory {} MiB, CPU {} s and wall clock {} s per sync, {} changes per batch, {} handles, \
         {} log events per sync with {} fields each",
        limits["memory_bytes"].as_u64().unwrap_or(0) / (1024 * 1024),
        limits["cpu_secs"],
        limits["wall_secs"],
        limits["max_batch"],
        limits["max_handles"],
        limits["log_events_per_sync"],
        limits["log_fields_per_event"],
    );
}
