//! `oneup keys rotate`: re-seals every secret and tenant key under a new master key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::store::keys::Rotation;
use crate::store::{MasterKey, Store};

/// Arguments of `oneup keys rotate`. Keys come from the environment or from files, never
/// from the command line alone (where `ps` and shell history would show them).
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The database: `postgres://user@host/db`, or `sqlite://FILE?mode=rwc`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://oneup.sqlite?mode=rwc")]
    pub database_url: String,
    /// The current key's file, used when `ONEUP_MASTER_KEY` (the current key as 64 hex
    /// digits) is not set. It must exist.
    #[arg(long, env = "ONEUP_MASTER_KEY_FILE", default_value = "oneup.key")]
    pub master_key_file: PathBuf,
    /// The new key's file: read if it exists, else created (owner-only) with a fresh key.
    /// Used when `ONEUP_NEW_MASTER_KEY` (the new key as 64 hex digits) is not set.
    #[arg(long, env = "ONEUP_NEW_MASTER_KEY_FILE")]
    pub new_master_key_file: Option<PathBuf>,
}

fn env_key(var: &str) -> anyhow::Result<Option<MasterKey>> {
    match std::env::var(var) {
        Ok(hex) if !hex.trim().is_empty() => {
            Ok(Some(MasterKey::from_hex(&hex).with_context(|| format!("{var} must be 64 hex digits"))?))
        }
        _ => Ok(None),
    }
}

/// Rotates: safe to run again after a crash (nothing changed) or after success (nothing
/// to do). Every node must be stopped first and started with the new key afterwards.
pub async fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let old = match env_key("ONEUP_MASTER_KEY")? {
        Some(key) => key,
        None => MasterKey::load(&args.master_key_file)
            .with_context(|| format!("failed to read {}", args.master_key_file.display()))?
            .with_context(|| {
                format!(
                    "no current key: set ONEUP_MASTER_KEY or point --master-key-file at it ({} does not exist)",
                    args.master_key_file.display()
                )
            })?,
    };
    let new = match (env_key("ONEUP_NEW_MASTER_KEY")?, &args.new_master_key_file) {
        (Some(key), _) => key,
        (None, Some(path)) => {
            MasterKey::load_or_create(path).with_context(|| format!("failed to read or create {}", path.display()))?
        }
        (None, None) => anyhow::bail!("no new key: set ONEUP_NEW_MASTER_KEY or give --new-master-key-file"),
    };
    if old.fingerprint() == new.fingerprint() {
        anyhow::bail!("the new key is the current key");
    }
    let store = Store::open(&args.database_url, old).await.context("failed to open the database")?;
    store.migrate().await.context("failed to migrate the database")?;
    let rotation = store.rotate_master_key(&new).await;
    store.close().await;
    match rotation.context("rotation failed; nothing was changed")? {
        Rotation::Rotated { tenant_keys, secrets } => println!(
            "re-sealed {tenant_keys} tenant keys and {secrets} integration secrets under the new key; \
             start every node with the new key and keep a backup of it"
        ),
        Rotation::AlreadyRotated => {
            println!("the database is sealed under the new key already; nothing to do")
        }
    }
    Ok(ExitCode::SUCCESS)
}
