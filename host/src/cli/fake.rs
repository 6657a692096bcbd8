//! `oneup fake-crm pipedrive`: serve the built-in fake Pipedrive on loopback, for trying
//! `oneup connector check` and connector development by hand.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{Dataset, DatasetSpec, FakePipedrive};

/// Arguments of `oneup fake-crm pipedrive`.
#[derive(Debug, Args)]
pub struct FakePipedriveArgs {
    /// The API token the fake accepts in `x-api-token`.
    #[arg(long, default_value = "dev-token")]
    pub token: String,
    /// CRM users.
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    /// Deals.
    #[arg(long, default_value_t = 500)]
    pub deals: usize,
    /// Activities.
    #[arg(long, default_value_t = 1000)]
    pub activities: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Serves until Ctrl-C.
pub async fn run(args: FakePipedriveArgs) -> anyhow::Result<ExitCode> {
    let spec =
        DatasetSpec::new(args.seed, args.users.max(1), args.deals, args.activities).ending_at(Timestamp::now_utc());
    let fake = FakePipedrive::start(Dataset::generate_with(&spec), args.token.clone())
        .await
        .context("failed to start the fake Pipedrive")?;
    println!("fake Pipedrive listening on {}", fake.base_url());
    println!("try: ONEUP_ALLOW_LOOPBACK_HTTP=1 oneup connector check pipedrive.wasm \\");
    println!("       --config base_url={} --secret api_token={}", fake.base_url(), args.token);
    println!("(Ctrl-C to stop; the data is invented but shaped like personal data)");
    tokio::signal::ctrl_c().await.context("failed to wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
