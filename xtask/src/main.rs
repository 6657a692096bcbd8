//! Project automation: `cargo xtask demo | test | dist | bench | lint`.
//!
//! Each command is a short script of cargo invocations. Connectors are built once per
//! command for `wasm32-wasip2` with the `wasm-release` profile and shared by every test.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// The connector crates shipped in `dist/` (crate name, connector id).
const CONNECTORS: &[(&str, &str)] = &[
    ("oneup-connector-pipedrive", "pipedrive"),
    ("oneup-connector-salesforce", "salesforce"),
    ("oneup-connector-bullhorn", "bullhorn"),
];
/// Components used only by tests.
const TEST_COMPONENTS: &[&str] = &[
    "oneup-hostile-connector",
    "oneup-hostile-connector-wider",
    "oneup-wrong-version-connector",
    "oneup-v01-connector",
    "oneup-auth-connector",
    "oneup-auth-connector-bullhorn",
    "oneup-connector-template",
];
const WASM_TARGET: &str = "wasm32-wasip2";
const WASM_PROFILE: &str = "wasm-release";
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, demo, test, package and benchmark oneup.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the connectors and the host, then run `oneup demo` on the embedded store.
    Demo,
    /// Run every test (formatting check included).
    Test {
        /// Run without a Postgres server (the Postgres half of the suite is skipped).
        #[arg(long)]
        no_postgres: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter), after `--`.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Release build: `dist/bin/oneup` and `dist/connectors/<id>.wasm`.
    Dist,
    /// Benchmarks: instantiation, sandbox vs native throughput, ingestion into Postgres vs
    /// COPY, contest standings (leaderboard reads, commit to live push).
    Bench {
        /// Deals parsed in the throughput benchmark.
        #[arg(long, default_value_t = 100_000)]
        deals: usize,
        /// Changes streamed end to end into Postgres (0 skips that section).
        #[arg(long, default_value_t = 1_000_000)]
        e2e_events: u64,
        /// Facts under the contest of the standings section (0 skips that section).
        #[arg(long, default_value_t = 10_000_000)]
        standings_facts: u64,
        /// Runs only this section.
        #[arg(long, value_enum)]
        only: Option<BenchSection>,
    },
    /// `cargo fmt --check` and `cargo clippy -D warnings` on the host and the wasm crates.
    Lint,
    /// Differential fuzzing of the SDK's JSON reader (`json::skim`) against `serde_json`:
    /// generated and mutated CRM pages must decode to the same value or be refused by both.
    /// `cargo xtask test` runs a short fixed range of seeds; this runs for a while.
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// The first seed (each seed is one round of documents; a failure names its seed).
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
    },
    /// Schemathesis over a seeded `oneup serve` on SQLite (`tests/e2e/contract.rs`): every
    /// operation of the OpenAPI document with generated requests, every check on. Installs
    /// Schemathesis (PyPI) into `target/schemathesis` on first use.
    ApiFuzz {
        /// Generated examples per operation and phase.
        #[arg(long, default_value_t = 25)]
        examples: u32,
    },
}

/// A section of `cargo xtask bench` that can run alone.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchSection {
    /// End to end into Postgres, beside raw COPY.
    E2e,
    /// Contest standings: leaderboard reads and commit-to-push over many facts.
    Standings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo => demo(),
        Cmd::Test { no_postgres, cargo_args } => test(no_postgres, &cargo_args),
        Cmd::Dist => dist(),
        Cmd::Bench { deals, e2e_events, standings_facts, only } => bench(deals, e2e_events, standings_facts, only),
        Cmd::Lint => lint(),
        Cmd::Fuzz { secs, first_seed } => fuzz(secs, first_seed),
        Cmd::ApiFuzz { examples } => api_fuzz(examples),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Adds the wasm target when rustup is there and the target is missing.
fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if out.status.success() => {
            if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
                run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
            }
            Ok(())
        }
        _ => {
            eprintln!("xtask: rustup not found; assuming the {WASM_TARGET} target is installed");
            Ok(())
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Builds the given wasm crates and returns the folder holding their `.wasm` files.
fn build_wasm(crates: &[&str]) -> Result<PathBuf> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--target", WASM_TARGET, "--profile", WASM_PROFILE]);
    for c in crates {
        cmd.args(["-p", c]);
    }
    run(&mut cmd)?;
    Ok(target_dir().join(WASM_TARGET).join(WASM_PROFILE))
}

fn wasm_file(dir: &Path, crate_name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// A folder with `<id>.wasm` for every shipped connector.
fn connectors_folder(built: &Path, into: &Path) -> Result<()> {
    std::fs::create_dir_all(into).with_context(|| format!("failed to create {}", into.display()))?;
    for (krate, id) in CONNECTORS {
        let from = wasm_file(built, krate);
        let to = into.join(format!("{id}.wasm"));
        std::fs::copy(&from, &to).with_context(|| format!("failed to copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

fn demo() -> Result<()> {
    let all: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    let built = build_wasm(&all)?;
    let connectors = target_dir().join("demo-connectors");
    connectors_folder(&built, &connectors)?;
    run(cargo().args(["build", "-p", "oneup", "--bin", "oneup"]))?;
    let bin = target_dir().join("debug").join("oneup");
    run(Command::new(bin).current_dir(root()).arg("demo").arg("--connectors").arg(&connectors))
}

fn postgres_answers(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_port = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_port = host_port.split(['/', '?']).next().unwrap_or("127.0.0.1:5432");
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    host_port
        .to_socket_addrs()
        .map(|mut addrs| addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()))
        .unwrap_or(false)
}

fn test(no_postgres: bool, cargo_args: &[String]) -> Result<()> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let inherited_skip = std::env::var_os("ONEUP_TEST_NO_POSTGRES").is_some();
    if in_ci && (no_postgres || inherited_skip) {
        bail!(
            "CI=true: the Postgres half of the suite may not be skipped (--no-postgres or ONEUP_TEST_NO_POSTGRES is set); \
             CI must prove both stores"
        );
    }
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    let database_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    if !no_postgres && !postgres_answers(&database_url) {
        bail!(
            "no Postgres answers at {database_url}: start one (or set DATABASE_URL), or run `cargo xtask test --no-postgres` to skip the Postgres half of the suite"
        );
    }
    let mut wasm: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    wasm.extend(TEST_COMPONENTS);
    let built = build_wasm(&wasm)?;
    run(cargo().args(["build", "-p", "oneup", "--bin", "oneup"]))?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).env("ONEUP_TEST_WASM_DIR", &built);
    if no_postgres {
        cmd.env("ONEUP_TEST_NO_POSTGRES", "1");
    } else {
        if inherited_skip {
            eprintln!(
                "xtask: ignoring the inherited ONEUP_TEST_NO_POSTGRES (use --no-postgres to skip the Postgres half)"
            );
        }
        cmd.env_remove("ONEUP_TEST_NO_POSTGRES").env("DATABASE_URL", &database_url);
    }
    if !cargo_args.is_empty() {
        cmd.arg("--").args(cargo_args);
    }
    let counts = run_counting_backends(&mut cmd)?;
    eprintln!(
        "xtask: tests passed per store: {} on SQLite, {} on Postgres{}",
        counts.sqlite,
        counts.postgres,
        if no_postgres { " (the Postgres half was skipped: --no-postgres)" } else { "" }
    );
    if !no_postgres && cargo_args.is_empty() && counts.postgres == 0 {
        bail!("no test ran on Postgres: the Postgres half of the suite did not run");
    }
    Ok(())
}

/// Tests that passed on each store, counted from `cargo test`'s lines (the suites that run
/// on both stores put each test under a `sqlite` and a `postgres` module).
#[derive(Debug, Default)]
struct BackendCounts {
    sqlite: usize,
    postgres: usize,
}

/// Runs `cmd` with its standard output echoed line by line and counted.
fn run_counting_backends(cmd: &mut Command) -> Result<BackendCounts> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("xtask: running {cmd:?}");
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).spawn().with_context(|| format!("failed to start {cmd:?}"))?;
    let mut counts = BackendCounts::default();
    let stdout = child.stdout.take().context("no stdout")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("failed to read the test output")?;
        writeln!(out, "{line}").ok();
        if let Some(name) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... ok")) {
            if name.contains("::sqlite::") {
                counts.sqlite += 1;
            } else if name.contains("::postgres::") {
                counts.postgres += 1;
            }
        }
    }
    let status = child.wait().context("failed to wait for the tests")?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(counts)
}

fn fuzz(secs: u64, first_seed: u64) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "--release", "-p", "oneup-connector-sdk", "--test", "skim_differential", "--", "--nocapture"])
        .env("ONEUP_FUZZ_SECS", secs.to_string())
        .env("ONEUP_FUZZ_FIRST_SEED", first_seed.to_string());
    run(&mut cmd)
}

/// The Schemathesis release the API fuzzing is known to work with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

fn api_fuzz(examples: u32) -> Result<()> {
    let venv = target_dir().join("schemathesis");
    let st = venv.join("bin").join("st");
    if !st.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", SCHEMATHESIS]))?;
    }
    let mut wasm: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    wasm.extend(TEST_COMPONENTS);
    let built = build_wasm(&wasm)?;
    run(cargo().args(["build", "-p", "oneup", "--bin", "oneup"]))?;
    let mut cmd = cargo();
    cmd.args(["test", "-p", "oneup-tests", "--test", "e2e", "contract::", "--", "--ignored", "--nocapture"])
        .env("ONEUP_TEST_WASM_DIR", &built)
        .env("ONEUP_SCHEMATHESIS", &st)
        .env("ONEUP_ST_MAX_EXAMPLES", examples.to_string());
    run(&mut cmd)
}

fn dist() -> Result<()> {
    let all: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    let built = build_wasm(&all)?;
    run(cargo().args(["build", "--release", "-p", "oneup", "--bin", "oneup"]))?;
    let dist = root().join("dist");
    std::fs::create_dir_all(dist.join("bin"))?;
    std::fs::copy(target_dir().join("release").join("oneup"), dist.join("bin").join("oneup"))
        .context("failed to copy the oneup binary")?;
    connectors_folder(&built, &dist.join("connectors"))?;
    eprintln!("xtask: dist/ is ready: dist/bin/oneup and dist/connectors/*.wasm");
    Ok(())
}

fn bench(deals: usize, e2e_events: u64, standings_facts: u64, only: Option<BenchSection>) -> Result<()> {
    let all: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    let built = build_wasm(&all)?;
    // The standings section runs the real service binary.
    run(cargo().args(["build", "--release", "-p", "oneup", "--bin", "oneup"]))?;
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "oneup-bench", "--"])
        .arg("--wasm")
        .arg(wasm_file(&built, "oneup-connector-pipedrive"))
        .arg("--oneup-bin")
        .arg(target_dir().join("release").join("oneup"))
        .arg("--deals")
        .arg(deals.to_string())
        .arg("--e2e-events")
        .arg(e2e_events.to_string())
        .arg("--standings-facts")
        .arg(standings_facts.to_string());
    match only {
        None => {}
        Some(BenchSection::E2e) => {
            cmd.arg("--e2e-only");
        }
        Some(BenchSection::Standings) => {
            cmd.arg("--standings-only");
        }
    }
    run(&mut cmd)
}

fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let mut wasm: Vec<&str> = CONNECTORS.iter().map(|(k, _)| *k).collect();
    wasm.extend(TEST_COMPONENTS);
    let mut cmd = cargo();
    cmd.args(["clippy", "--target", WASM_TARGET]);
    for c in &wasm {
        cmd.args(["-p", c]);
    }
    cmd.args(["--", "-D", "warnings"]);
    run(&mut cmd)
}
