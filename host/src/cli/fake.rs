//! `oneup fake-crm pipedrive` and `oneup fake-crm salesforce`: serve a built-in fake CRM on
//! loopback, for trying `oneup connector check` and connector development by hand.

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

/// Arguments of `oneup fake-crm salesforce`.
#[derive(Debug, Args)]
pub struct FakeSalesforceArgs {
    /// The connected app's client id the token endpoint accepts.
    #[arg(long, default_value = "dev-client")]
    pub client_id: String,
    /// The connected app's client secret.
    #[arg(long, default_value = "dev-secret")]
    pub client_secret: String,
    /// Users.
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    /// Opportunities.
    #[arg(long, default_value_t = 500)]
    pub opportunities: usize,
    /// Tasks.
    #[arg(long, default_value_t = 800)]
    pub tasks: usize,
    /// Events.
    #[arg(long, default_value_t = 300)]
    pub events: usize,
    /// A single-currency org with this corporate currency (default: multi-currency).
    #[arg(long)]
    pub single_currency: Option<String>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Serves a fake Salesforce until Ctrl-C.
pub async fn run_salesforce(args: FakeSalesforceArgs) -> anyhow::Result<ExitCode> {
    use oneup_fake_crm::salesforce as sf;
    let mut spec = sf::DatasetSpec::new(args.seed, args.users.max(1), args.opportunities, args.tasks, args.events)
        .ending_at(Timestamp::now_utc());
    if let Some(code) = &args.single_currency {
        spec = spec.single_currency(code);
    }
    let fake = sf::FakeSalesforce::start(sf::Dataset::generate_with(&spec), &args.client_id, &args.client_secret)
        .await
        .context("failed to start the fake Salesforce")?;
    println!("fake Salesforce instance on {}, token endpoint {}", fake.base_url(), fake.token_url());
    println!("try: ONEUP_ALLOW_LOOPBACK_HTTP=1 oneup connector check salesforce.wasm \\");
    println!("       --config instance_url={} --config token_url={} \\", fake.base_url(), fake.token_url());
    println!(
        "       --secret client_id={} --secret client_secret={} --secret refresh_token={}",
        fake.client_id(),
        fake.client_secret(),
        fake.refresh_token()
    );
    println!("(Ctrl-C to stop; the data is invented but shaped like personal data)");
    tokio::signal::ctrl_c().await.context("failed to wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `oneup fake-crm bullhorn`.
#[derive(Debug, Args)]
pub struct FakeBullhornArgs {
    /// The OAuth client id the fake accepts.
    #[arg(long, default_value = "dev-client")]
    pub client_id: String,
    /// The OAuth client secret the fake accepts.
    #[arg(long, default_value = "dev-secret")]
    pub client_secret: String,
    /// The first refresh token (single-use: each refresh answers a new one).
    #[arg(long, default_value = "dev-refresh-token")]
    pub refresh_token: String,
    /// The currency of the placements (Bullhorn records none on them).
    #[arg(long, default_value = "GBP")]
    pub currency: String,
    /// Recruiters.
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    /// Placements.
    #[arg(long, default_value_t = 300)]
    pub placements: usize,
    /// Job submissions.
    #[arg(long, default_value_t = 900)]
    pub submissions: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Serves a fake Bullhorn until Ctrl-C.
pub async fn run_bullhorn(args: FakeBullhornArgs) -> anyhow::Result<ExitCode> {
    use oneup_fake_crm::bullhorn::{Credentials, Dataset as BhDataset, DatasetSpec as BhSpec, FakeBullhorn};
    let spec = BhSpec::new(args.seed, args.users.max(1), args.placements, args.submissions)
        .in_currency(&args.currency)
        .ending_at(Timestamp::now_utc());
    let credentials = Credentials::new(&args.client_id, &args.client_secret, &args.refresh_token);
    let fake = FakeBullhorn::start(BhDataset::generate_with(&spec), credentials)
        .await
        .context("failed to start the fake Bullhorn")?;
    println!("fake Bullhorn listening on {}", fake.base_url());
    println!("try: ONEUP_ALLOW_LOOPBACK_HTTP=1 oneup connector check bullhorn.wasm \\");
    println!(
        "       --config auth_url={} --config login_url={} --config currency={} \\",
        fake.auth_url(),
        fake.login_url(),
        args.currency
    );
    println!(
        "       --secret client_id={} --secret client_secret={} --secret refresh_token={}",
        args.client_id, args.client_secret, args.refresh_token
    );
    println!("(refresh tokens are single-use, as in Bullhorn: restart the fake to use that one again)");
    println!("(Ctrl-C to stop; the data is invented but shaped like personal data)");
    tokio::signal::ctrl_c().await.context("failed to wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `oneup fake-crm example`.
#[derive(Debug, Args)]
pub struct FakeExampleArgs {
    /// The API key the fake accepts in `x-api-key`.
    #[arg(long, default_value = "dev-key")]
    pub api_key: String,
}

/// Serves the fake Example CRM (the API `connectors/template` reads) until Ctrl-C.
pub async fn run_example(args: FakeExampleArgs) -> anyhow::Result<ExitCode> {
    let crm = oneup_fake_crm::example::ExampleCrm::new(args.api_key.clone());
    let fake = oneup_fake_crm::FakeServer::serve(crm).await.context("failed to start the fake Example CRM")?;
    println!("fake Example CRM listening on {}", fake.base_url());
    println!("try: ONEUP_ALLOW_LOOPBACK_HTTP=1 oneup connector check oneup_connector_template.wasm \\");
    println!("       --config base_url={} --secret api_key={} --validate", fake.base_url(), args.api_key);
    println!("(Ctrl-C to stop; the data is invented but shaped like personal data)");
    tokio::signal::ctrl_c().await.context("failed to wait for Ctrl-C")?;
    fake.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
