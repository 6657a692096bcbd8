//! `oneup probe`: GET a probe URL and exit 0 on a 2xx answer, 1 otherwise. For container
//! health checks in images without a shell or curl (the Dockerfile's runtime image).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// Arguments of `oneup probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET (plain HTTP; with `serve --tls-cert`, probe the `--metrics-addr`
    /// listener, which serves `/readyz` and `/livez` too).
    #[arg(default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// Runs the probe.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(args.timeout_secs)).build()?;
    match client.get(&args.url).send().await {
        Ok(answer) if answer.status().is_success() => {
            println!("{} {}", answer.status().as_u16(), args.url);
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) => {
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            println!("{status} {} {}", args.url, body.chars().take(300).collect::<String>());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("no answer from {}: {e}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}
