//! `oneup demo`: the whole promise in one command.
//!
//! Starts a fake Pipedrive on loopback full of invented personal data, loads the sandboxed
//! Pipedrive connector, creates a demo tenant whose users are matched to CRM owners by
//! e-mail, syncs, prints per-user totals (checked against what the CRM holds), makes a few
//! edits in the CRM and syncs again to show the corrections, then sweeps everything it kept
//! and everything it logged for every personal-data string the fake served.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Args;
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{Crm, DatasetSpec, DealStatus, FakePipedrive, format_cents};

use super::facts::{FactTable, TableSink};
use super::output::{change_json, micros_to_decimal};
use crate::ingest::model::KeyedHash;
use crate::ingest::pseudonym::TenantKey;
use crate::runtime::{IntegrationSetup, LoadedConnector, Runtime, RuntimeConfig, SyncOutcome};

/// Arguments of `oneup demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder with the connector components (`pipedrive.wasm`, …).
    #[arg(long, env = "ONEUP_CONNECTORS_DIR", default_value = "dist/connectors")]
    pub connectors: PathBuf,
    /// Folder for the demo's store, log and compile cache (emptied first).
    #[arg(long, default_value = ".oneup/demo")]
    pub work_dir: PathBuf,
    /// Deals in the fake Pipedrive.
    #[arg(long, default_value_t = 600)]
    pub deals: usize,
    /// Seed of the fake data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl DemoArgs {
    /// Empties the work folder and opens the demo's log file (swept at the end).
    pub fn prepare_log_file(&self) -> anyhow::Result<std::fs::File> {
        if self.work_dir.exists() {
            std::fs::remove_dir_all(&self.work_dir)
                .with_context(|| format!("failed to empty {}", self.work_dir.display()))?;
        }
        std::fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("failed to create {}", self.work_dir.display()))?;
        std::fs::File::create(self.log_path()).context("failed to create the demo log")
    }

    fn log_path(&self) -> PathBuf {
        self.work_dir.join("oneup.log")
    }

    fn store_path(&self) -> PathBuf {
        self.work_dir.join("facts.jsonl")
    }
}

/// A user of the demo tenant.
struct DemoUser {
    name: String,
    email: String,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let wasm = args.connectors.join("pipedrive.wasm");
    if !wasm.is_file() {
        bail!("{} not found: build the connectors first (`cargo xtask demo` does)", wasm.display());
    }

    println!("== oneup demo ==");
    let token = hex::encode(TenantKey::random().expose_bytes())[..32].to_owned();
    let spec = DatasetSpec::new(args.seed, 5, args.deals, args.deals * 2).ending_at(Timestamp::now_utc());
    let fake = FakePipedrive::start(oneup_fake_crm::pipedrive::Dataset::generate_with(&spec), token.clone())
        .await
        .context("failed to start the fake Pipedrive")?;
    let crm_users: Vec<(u64, String, String)> =
        fake.with(|crm: &mut Crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    println!(
        "fake Pipedrive on {} with {} users, {} deals, {} activities, full of personal data",
        fake.base_url(),
        crm_users.len(),
        args.deals,
        args.deals * 2
    );

    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(args.work_dir.join("cache")),
        allow_loopback_http: true,
        ..Default::default()
    })
    .context("failed to start the sandbox runtime")?;
    let connector = runtime.load_file(&wasm).await.with_context(|| format!("failed to load {}", wasm.display()))?;
    let m = connector.manifest();
    println!("installed connector {} {} (contract {})", m.id, m.version, m.contract);

    // The demo tenant: the CRM's salespeople have accounts (an admin typed in their work
    // e-mails), plus a manager who is not in the CRM.
    let mut users: Vec<DemoUser> =
        crm_users.iter().map(|(_, name, email)| DemoUser { name: name.clone(), email: email.clone() }).collect();
    users.push(DemoUser { name: "Morgan Demo-Manager".into(), email: "manager@oneup-demo.example".into() });
    println!("demo tenant with {} users; Pipedrive enabled by the admin (opt-in)", users.len());

    let tenant_key = TenantKey::random();
    let setup = || IntegrationSetup {
        config: BTreeMap::from([("base_url".to_owned(), fake.base_url())]),
        secrets: BTreeMap::from([("api_token".to_owned(), token.clone())]),
        tenant_key: tenant_key.clone(),
        debug: None,
    };

    // Owner mapping: roster e-mails are compared with the tenant's users, then dropped.
    let roster = runtime.roster(&connector, setup()).await.context("the roster call failed")?;
    let mut owner_to_user: HashMap<KeyedHash, usize> = HashMap::new();
    for entry in &roster {
        if let Some(i) = users.iter().position(|u| u.email.eq_ignore_ascii_case(&entry.email)) {
            owner_to_user.insert(entry.owner, i);
        }
    }
    drop(roster);
    println!("mapped {} CRM owners to users by e-mail (e-mails compared, not kept)", owner_to_user.len());

    let table = Arc::new(Mutex::new(FactTable::default()));
    sync(&runtime, &connector, setup(), &table, "first sync").await?;
    print_totals(&table, &users, &owner_to_user)?;
    verify(&fake, &table, &crm_users, &owner_to_user, &users)?;

    // Edits in the CRM: an amount changed, a won deal lost, a deal deleted, a call undone.
    let edits = fake.with(|crm: &mut Crm| -> anyhow::Result<Vec<String>> {
        crm.set_clock(Timestamp::now_utc());
        let won: Vec<u64> = crm
            .deals()
            .iter()
            .filter(|d| d.status == DealStatus::Won && !d.is_deleted())
            .map(|d| d.id)
            .take(3)
            .collect();
        let done_call = crm.activities().iter().find(|a| a.done && !a.deleted && a.kind == "call").map(|a| a.id);
        let mut out = Vec::new();
        if let [a, b, c] = won[..] {
            crm.set_deal_value(a, 1_000_000.0)?;
            out.push(format!("deal {a}: amount set to 1,000,000"));
            crm.mark_deal_lost(b)?;
            out.push(format!("deal {b}: won -> lost"));
            crm.delete_deal(c)?;
            out.push(format!("deal {c}: deleted"));
        }
        if let Some(id) = done_call {
            crm.set_activity_done(id, false)?;
            out.push(format!("call {id}: marked not done"));
        }
        Ok(out)
    })?;
    println!("\nedits in Pipedrive: {}", edits.join("; "));
    sync(&runtime, &connector, setup(), &table, "incremental sync").await?;
    print_totals(&table, &users, &owner_to_user)?;
    verify(&fake, &table, &crm_users, &owner_to_user, &users)?;

    // What the host keeps: the facts, written out as the store would hold them.
    {
        let table = table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?;
        let mut out = String::new();
        for fact in table.facts() {
            out.push_str(&change_json(&crate::ingest::model::Change::Upsert(fact.clone())).to_string());
            out.push('\n');
        }
        std::fs::write(args.store_path(), out).context("failed to write the fact store")?;
    }

    // The sweep: every personal-data string the fake served, in everything kept and logged.
    let canaries = fake.with(|crm: &mut Crm| crm.canaries());
    fake.shutdown().await;
    let kept = std::fs::read_to_string(args.store_path()).context("failed to read back the fact store")?;
    let logged = std::fs::read_to_string(args.log_path()).context("failed to read back the demo log")?;
    let mut found = 0usize;
    for canary in &canaries {
        for (what, text) in [("store", &kept), ("log", &logged)] {
            if text.contains(canary.as_str()) {
                found += 1;
                println!("  FOUND personal data in the {what}: {canary}");
            }
        }
    }
    println!(
        "\nprivacy sweep: {} personal-data strings served by the fake CRM, searched in the store ({} bytes) and the log ({} bytes): {found} found",
        canaries.len(),
        kept.len(),
        logged.len()
    );
    Ok(if found == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn sync(
    runtime: &Runtime,
    connector: &LoadedConnector,
    setup: IntegrationSetup,
    table: &Arc<Mutex<FactTable>>,
    label: &str,
) -> anyhow::Result<()> {
    let since = table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?.cursor.clone();
    let sink = TableSink { table: table.clone(), on_change: None };
    let report = runtime.sync(connector, setup, since.as_ref(), Box::new(sink)).await;
    let s = &report.stats;
    match &report.result {
        Ok(SyncOutcome::Complete) => println!(
            "\n{label}: {} requests, {} upserts, {} retractions, {} rejected, {} ms",
            s.http_requests,
            s.upserts,
            s.retractions,
            s.rejected_total(),
            report.duration.as_millis()
        ),
        Ok(other) => println!("\n{label}: ended early ({other:?})"),
        Err(e) => bail!("{label} failed: {e}"),
    }
    Ok(())
}

fn print_totals(
    table: &Arc<Mutex<FactTable>>,
    users: &[DemoUser],
    owners: &HashMap<KeyedHash, usize>,
) -> anyhow::Result<()> {
    let table = table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?;
    let mut per_user: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    let mut unmapped = 0u64;
    for ((owner, metric), total) in table.totals() {
        let Some(&user) = owners.get(&owner) else {
            unmapped += total.facts;
            continue;
        };
        let value = if total.money.is_empty() {
            total.count.to_string()
        } else {
            total.money.iter().map(|(c, m)| format!("{} {c}", micros_to_decimal(*m))).collect::<Vec<_>>().join(" + ")
        };
        per_user.entry(user).or_default().insert(metric, value);
    }
    println!("{:<32} {:>9} {:>6} {:>8}  revenue", "user", "deals_won", "calls", "meetings");
    for (i, user) in users.iter().enumerate() {
        let row = per_user.get(&i).cloned().unwrap_or_default();
        let get = |k: &str| row.get(k).cloned().unwrap_or_else(|| "0".into());
        println!(
            "{:<32} {:>9} {:>6} {:>8}  {}",
            user.name,
            get("deals_won"),
            get("calls"),
            get("meetings"),
            get("revenue")
        );
    }
    if unmapped > 0 {
        println!("({unmapped} facts wait for an owner mapping)");
    }
    Ok(())
}

/// Checks the synced totals against what the fake CRM holds, per user.
fn verify(
    fake: &FakePipedrive,
    table: &Arc<Mutex<FactTable>>,
    crm_users: &[(u64, String, String)],
    owners: &HashMap<KeyedHash, usize>,
    users: &[DemoUser],
) -> anyhow::Result<()> {
    let expected = fake.with(|crm: &mut Crm| crm.expected_totals());
    let table = table.lock().map_err(|_| anyhow::anyhow!("fact table lock poisoned"))?;
    let totals = table.totals();
    let mut mismatches = Vec::new();
    for (crm_id, _, email) in crm_users {
        let Some(user) = users.iter().position(|u| &u.email == email) else { continue };
        let Some(owner) = owners.iter().find(|(_, i)| **i == user).map(|(h, _)| *h) else { continue };
        let want = expected.get(crm_id).cloned().unwrap_or_default();
        let got = |metric: &str| totals.get(&(owner, metric.to_owned())).cloned().unwrap_or_default();
        if got("deals_won").count as u64 != want.deals_won
            || got("calls").count as u64 != want.calls
            || got("meetings").count as u64 != want.meetings
        {
            mismatches.push(users[user].name.clone());
            continue;
        }
        let revenue = got("revenue");
        for (currency, cents) in &want.revenue_cents {
            let micros = revenue.money.get(currency).copied().unwrap_or(0);
            if micros != i128::from(*cents) * 10_000 {
                mismatches.push(format!("{} ({currency} {} expected)", users[user].name, format_cents(*cents)));
            }
        }
    }
    if mismatches.is_empty() {
        println!("check: every user's totals match what Pipedrive holds");
        Ok(())
    } else {
        bail!("totals differ from the CRM for: {}", mismatches.join(", "))
    }
}
