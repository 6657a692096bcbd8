//! `oneup demo` (placeholder until the fake CRM crate lands).
use std::process::ExitCode;
use clap::Args;
/// Arguments of `oneup demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {}
impl DemoArgs {
    /// Opens the demo's log file.
    pub fn prepare_log_file(&self) -> anyhow::Result<std::fs::File> { anyhow::bail!("todo") }
}
/// Runs the demo.
pub async fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("todo") }
