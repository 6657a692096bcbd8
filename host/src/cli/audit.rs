//! `oneup audit verify`: recomputes every tenant's audit chain and names the first entry
//! that does not verify.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::serve::StoreArgs;
use crate::store::TenantId;

/// Arguments of `oneup audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this tenant (its id); default: every tenant.
    #[arg(long)]
    pub tenant: Option<uuid::Uuid>,
    /// Where the data lives (the master key unseals the tenant keys the chains are made with).
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Verifies, prints one line per tenant and exits 1 if any chain is broken.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.connect().await?;
    let tenants = match args.tenant {
        Some(id) => vec![TenantId::from_uuid(id)],
        None => store.audit_tenants().await.context("failed to list the tenants")?,
    };
    let mut broken = 0;
    for tenant in tenants {
        let v = store.verify_audit(tenant).await.with_context(|| format!("failed to verify tenant {tenant}"))?;
        match v.first_broken {
            None => println!("tenant {tenant}: {} entries verify; head {}", v.entries, v.head),
            Some(b) => {
                broken += 1;
                println!(
                    "tenant {tenant}: BROKEN at entry {} ({}); {} entries read",
                    b.seq,
                    b.reason.code(),
                    v.entries
                );
            }
        }
    }
    store.close().await;
    Ok(if broken == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
