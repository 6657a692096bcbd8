//! The `oneup` binary: parse the command line, set up logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use oneup::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = || EnvFilter::try_from_env("ONEUP_LOG").unwrap_or_else(|_| EnvFilter::new("warn,oneup=info"));
    // The demo prints its own story on stdout; its full log goes to its file.
    let stderr_filter = || match &cli.command {
        Command::Demo(_) => EnvFilter::try_from_env("ONEUP_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        _ => filter(),
    };
    // The demo also writes its log to a file, so that it can sweep its own logs.
    let log_file = match &cli.command {
        Command::Demo(args) => match args.prepare_log_file() {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let file_layer = log_file
        .map(|f| tracing_subscriber::fmt::layer().json().with_writer(std::sync::Mutex::new(f)).with_filter(filter()));
    let registry = tracing_subscriber::registry().with(file_layer);
    match cli.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr)
                    .with_filter(stderr_filter()),
            )
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(stderr_filter()))
            .init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oneup::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

use tracing_subscriber::Layer as _;
