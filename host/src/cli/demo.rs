//! `oneup demo`: the whole promise in one command, on the embedded store.
//!
//! Starts fake Pipedrive, Salesforce and Bullhorn servers on loopback, full of invented
//! personal data, then the real service in-process (SQLite store, sandbox runtime,
//! scheduler, HTTP API on loopback), and drives it through its own HTTP API exactly as an
//! operator and an admin would: a tenant, its users, the three opt-ins (API token, OAuth 2.0
//! refresh, Bullhorn session: the host does the auth), exchange rates, a sync of each. It
//! prints the KPI totals read back from the store (checked against what each CRM holds),
//! makes edits in the CRMs (amounts, won -> lost, deletions, a hard-deleted placement) and
//! syncs again to show the corrections, runs a contest leaderboard and a target's progress,
//! then sweeps its whole database and its log for every personal-data string the fakes
//! served.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::bullhorn::{self, FakeBullhorn};
use oneup_fake_crm::pipedrive::{Crm, Dataset, DatasetSpec, DealStatus, FakePipedrive};
use oneup_fake_crm::salesforce::{self, FakeSalesforce};
use serde_json::{Value, json};

use super::sweep::{Control, Place, sweep};
use crate::api::{App, AppOptions};
use crate::runtime::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::scheduler::SchedulerConfig;
use crate::store::{MasterKey, Store};

/// Arguments of `oneup demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder with the connector components (`pipedrive.wasm`, …).
    #[arg(long, env = "ONEUP_CONNECTORS_DIR", default_value = "dist/connectors")]
    pub connectors: PathBuf,
    /// Folder for the demo's database, log and compile cache (emptied first).
    #[arg(long, default_value = ".oneup/demo")]
    pub work_dir: PathBuf,
    /// Deals in the fake Pipedrive (and opportunities in the fake Salesforce).
    #[arg(long, default_value_t = 600)]
    pub deals: usize,
    /// Placements in the fake Bullhorn.
    #[arg(long, default_value_t = 150)]
    pub placements: usize,
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

    fn db_path(&self) -> PathBuf {
        self.work_dir.join("oneup.sqlite")
    }
}

/// A tiny client of the service's own API.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(serde_json::to_vec(&body)?);
        }
        let resp = req.send().await.with_context(|| format!("{method} {path} failed"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let value: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes)? };
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {value}");
        }
        Ok(value)
    }
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    for id in CONNECTORS {
        let wasm = args.connectors.join(format!("{id}.wasm"));
        if !wasm.is_file() {
            bail!("{} not found: build the connectors first (`cargo xtask demo` does)", wasm.display());
        }
    }
    println!("== oneup demo ==");

    // A fake CRM full of personal data.
    let crm_token = hex::encode(crate::ingest::TenantKey::random().expose_bytes())[..32].to_owned();
    let spec = DatasetSpec::new(args.seed, 5, args.deals, args.deals * 2).ending_at(Timestamp::now_utc());
    let fake = FakePipedrive::start(Dataset::generate_with(&spec), crm_token.clone())
        .await
        .context("failed to start the fake Pipedrive")?;
    let crm_users: Vec<(u64, String, String)> =
        fake.with(|crm: &mut Crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    println!(
        "fake Pipedrive on {}: {} salespeople, {} deals, {} activities, full of (invented) personal data",
        fake.base_url(),
        crm_users.len(),
        args.deals,
        args.deals * 2
    );
    let sf_spec = salesforce::DatasetSpec::new(args.seed, 4, args.deals / 2, args.deals, args.deals / 2)
        .ending_at(Timestamp::now_utc());
    let sf_secret = hex::encode(crate::ingest::TenantKey::random().expose_bytes())[..32].to_owned();
    let sf = FakeSalesforce::start(salesforce::Dataset::generate_with(&sf_spec), "oneup-demo-client", &sf_secret)
        .await
        .context("failed to start the fake Salesforce")?;
    let sf_users: Vec<(String, String, String)> = sf.with(|crm| {
        crm.users().iter().filter(|u| u.is_active).map(|u| (u.id.clone(), u.name(), u.email.clone())).collect()
    });
    println!(
        "fake Salesforce on {} (OAuth token endpoint {}): {} active users, {} opportunities in 4 currencies, {} tasks, {} events",
        sf.base_url(),
        sf.token_url(),
        sf_users.len(),
        args.deals / 2,
        args.deals,
        args.deals / 2
    );
    let bh_secret = hex::encode(crate::ingest::TenantKey::random().expose_bytes())[..32].to_owned();
    let bh_refresh = hex::encode(crate::ingest::TenantKey::random().expose_bytes())[..32].to_owned();
    let bh_spec = bullhorn::DatasetSpec::new(args.seed, 4, args.placements, args.placements * 3)
        .in_currency("EUR")
        .ending_at(Timestamp::now_utc());
    let bh = FakeBullhorn::start(
        bullhorn::Dataset::generate_with(&bh_spec),
        bullhorn::Credentials::new("oneup-demo-bh", &bh_secret, &bh_refresh),
    )
    .await
    .context("failed to start the fake Bullhorn")?;
    let bh_users: Vec<(u64, String, String)> =
        bh.with(|crm: &mut bullhorn::Crm| crm.active_users().map(|u| (u.id, u.name(), u.email.clone())).collect());
    println!(
        "fake Bullhorn on {} (single-use refresh tokens, REST login): {} recruiters, {} placements, {} submissions",
        bh.login_url(),
        bh_users.len(),
        args.placements,
        args.placements * 3
    );

    // The real service, in-process, on the embedded store.
    let db_url = format!("sqlite://{}?mode=rwc", args.db_path().display());
    let store = Store::connect(&db_url, MasterKey::random()).await.context("failed to open the demo database")?;
    println!("store: SQLite at {} (production uses Postgres through DATABASE_URL)", args.db_path().display());
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(args.work_dir.join("cache")),
            allow_loopback_http: true,
            ..Default::default()
        })
        .context("failed to start the sandbox runtime")?,
    );
    let registry =
        Arc::new(Registry::install_dir(&runtime, &args.connectors).await.context("failed to install connectors")?);
    for c in registry.iter() {
        let m = c.manifest();
        println!("installed connector {} {} (contract {}), sandboxed", m.id, m.version, m.contract);
    }
    let operator_token = hex::encode(crate::ingest::TenantKey::random().expose_bytes());
    let state = App::start(
        store.clone(),
        runtime,
        registry,
        AppOptions {
            scheduler: SchedulerConfig { poll: Duration::from_millis(200), ..SchedulerConfig::default() },
            operator_token_hash: Some(App::hash_operator_token(&operator_token)),
            sync_wait: Duration::from_secs(300),
            security: crate::api::security::SecurityConfig::default(),
            public_url: None,
        },
    );
    let scheduler = state.scheduler.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let service = crate::api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    println!("service listening on {base} (HTTP API + scheduler)\n");
    let api = Api { http: reqwest::Client::new(), base };
    use reqwest::Method;

    // The operator creates the tenant; its admin adds the salespeople (by their work
    // e-mail) and a manager, opts in to Pipedrive and sets exchange rates.
    let tenant = api
        .call(
            Method::POST,
            "/v1/tenants",
            &operator_token,
            Some(json!({
                "name": "Halvorsen Sales (demo)",
                "timezone": "Europe/London",
                "currency": "GBP",
                "admin": {"name": "Avery Demo-Admin", "email": "admin@oneup-demo.example"},
            })),
        )
        .await?;
    let admin = tenant["admin"]["token"].as_str().context("no admin token")?.to_owned();
    println!("POST /v1/tenants            -> tenant {} (GBP, Europe/London)", tenant["id"].as_str().unwrap_or("?"));
    // The people of all three CRMs, once each (the same address in two CRMs is one person).
    let mut user_ids: BTreeMap<String, String> = BTreeMap::new();
    let people = crm_users
        .iter()
        .map(|(_, n, e)| (n, e))
        .chain(sf_users.iter().map(|(_, n, e)| (n, e)))
        .chain(bh_users.iter().map(|(_, n, e)| (n, e)));
    for (name, email) in people {
        if user_ids.contains_key(&email.to_lowercase()) {
            continue;
        }
        let created = api
            .call(Method::POST, "/v1/users", &admin, Some(json!({"name": name, "email": email, "role": "member"})))
            .await?;
        user_ids.insert(email.to_lowercase(), created["id"].as_str().unwrap_or_default().to_owned());
    }
    let manager = api
        .call(
            Method::POST,
            "/v1/users",
            &admin,
            Some(json!({"name": "Morgan Demo-Manager", "email": "manager@oneup-demo.example", "role": "manager"})),
        )
        .await?;
    let manager_id = manager["id"].as_str().unwrap_or_default().to_owned();
    let manager_token = api.call(Method::POST, &format!("/v1/users/{manager_id}/tokens"), &admin, None).await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "POST /v1/users              -> {} salespeople and recruiters (by work e-mail) and a manager",
        user_ids.len()
    );
    // The sweep's positive control: an invented string planted where the sweep looks (a
    // team name, so in a table and the database file, and a log line). The sweep must find
    // it in each place before its "0 found" means anything.
    api.call(Method::POST, "/v1/teams", &admin, Some(json!({"name": SWEEP_CONTROL}))).await?;
    tracing::info!(control = SWEEP_CONTROL, "privacy sweep control planted");
    api.call(
        Method::PUT,
        "/v1/integrations/pipedrive",
        &admin,
        Some(json!({"config": {"base_url": fake.base_url()}, "secrets": {"api_token": crm_token}})),
    )
    .await?;
    println!("PUT /v1/integrations/pipedrive   -> enabled (the opt-in: who, when, which metrics, in the audit log)");
    api.call(
        Method::PUT,
        "/v1/integrations/salesforce",
        &admin,
        Some(json!({
            "config": {"instance_url": sf.base_url(), "token_url": sf.token_url()},
            "secrets": {"client_id": sf.client_id(), "client_secret": sf.client_secret(), "refresh_token": sf.refresh_token()},
        })),
    )
    .await?;
    println!(
        "PUT /v1/integrations/salesforce  -> enabled (OAuth 2.0 refresh done by the host; the connector never sees a token)"
    );
    let bh_currency = bh.with(|crm: &mut bullhorn::Crm| crm.currency().to_owned());
    api.call(
        Method::PUT,
        "/v1/integrations/bullhorn",
        &admin,
        Some(json!({
            "config": {"auth_url": bh.auth_url(), "login_url": bh.login_url(), "currency": bh_currency},
            "secrets": {"client_id": "oneup-demo-bh", "client_secret": bh_secret, "refresh_token": bh_refresh},
        })),
    )
    .await?;
    println!("PUT /v1/integrations/bullhorn    -> enabled (single-use refresh tokens rotated and sealed by the host)");
    api.call(
        Method::PUT,
        "/v1/fx-rates",
        &admin,
        Some(json!({"rates": {"EUR": "0.85", "USD": "0.79", "SEK": "0.074", "JPY": "0.0052"}})),
    )
    .await?;
    println!("PUT /v1/fx-rates            -> EUR 0.85, USD 0.79, SEK 0.074, JPY 0.0052 (in GBP)");

    // Enabling queued a first sync of each; these wait for a sync of each to have finished.
    for id in CONNECTORS {
        sync(&api, &admin, id, "sync").await?;
    }
    let users = api.call(Method::GET, "/v1/users", &admin, None).await?;
    let names: BTreeMap<String, String> = users["users"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| (u["id"].as_str().unwrap_or("").to_owned(), u["name"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let totals = kpis(&api, &manager_token).await?;
    print_totals(&totals, &names);
    verify(&expected_counts(&fake, &sf, &bh, &crm_users), &totals, &user_ids)?;

    // Edits in the CRMs: an amount changed, a won deal lost, a deal deleted, a call undone.
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
    let edits = sf.with(|crm: &mut salesforce::Crm| -> anyhow::Result<Vec<String>> {
        crm.set_clock(Timestamp::now_utc());
        let won: Vec<String> = crm
            .opportunities()
            .iter()
            .filter(|o| o.is_won && o.deleted_at.is_none())
            .map(|o| o.id.clone())
            .take(2)
            .collect();
        let mut out = Vec::new();
        if let [a, b] = &won[..] {
            crm.mark_lost(a)?;
            out.push(format!("opportunity {a}: won -> lost"));
            crm.delete_opportunity(b)?;
            out.push(format!("opportunity {b}: deleted"));
        }
        Ok(out)
    })?;
    println!("edits in Salesforce: {}", edits.join("; "));
    let edits = bh.with(|crm: &mut bullhorn::Crm| -> anyhow::Result<Vec<String>> {
        crm.set_clock(Timestamp::now_utc());
        let recent = crm.now_ms() - 30 * 86_400_000;
        let placement = crm.placements().filter(|p| p.date_added >= recent).map(|p| p.id).next();
        let submission = crm.submissions().filter(|s| !s.is_deleted).map(|s| s.id).next();
        let mut out = Vec::new();
        if let Some(id) = placement {
            crm.delete_placement(id)?;
            out.push(format!("placement {id}: hard-deleted (no delete feed: the snapshot window catches it)"));
        }
        if let Some(id) = submission {
            crm.delete_submission(id)?;
            out.push(format!("submission {id}: soft-deleted"));
        }
        Ok(out)
    })?;
    println!("edits in Bullhorn: {}", edits.join("; "));
    // Let the fakes' clocks move past the edits before reading "modified since".
    tokio::time::sleep(Duration::from_millis(20)).await;
    for id in CONNECTORS {
        sync(&api, &admin, id, "after the edits").await?;
    }
    let totals = kpis(&api, &manager_token).await?;
    print_totals(&totals, &names);
    verify(&expected_counts(&fake, &sf, &bh, &crm_users), &totals, &user_ids)?;

    // A contest over the last 90 days and a monthly target, from the synced data.
    let salespeople: Vec<&String> = user_ids.values().collect();
    let now = jiff::Timestamp::now();
    let starts_at = now.checked_sub(jiff::SignedDuration::from_hours(90 * 24))?;
    let ends_at = now.checked_add(jiff::SignedDuration::from_hours(24))?;
    let contest = api
        .call(
            Method::POST,
            "/v1/contests",
            &manager_token,
            Some(json!({
                "name": "Quarter sprint: deals won",
                "metric": "deals_won",
                "format": "leaderboard",
                "starts_at": starts_at.to_string(),
                "ends_at": ends_at.to_string(),
                "participants": {"users": salespeople},
            })),
        )
        .await?;
    let contest_id = contest["id"].as_str().unwrap_or_default().to_owned();
    let board = api.call(Method::GET, &format!("/v1/contests/{contest_id}/leaderboard"), &manager_token, None).await?;
    println!(
        "
POST /v1/contests + GET /v1/contests/{{id}}/leaderboard (deals won, last 90 days):"
    );
    for entry in board["entries"].as_array().cloned().unwrap_or_default() {
        let id = entry["user_id"].as_str().unwrap_or_default();
        println!(
            "  {:>2}. {:<32} {}",
            entry["rank"],
            names.get(id).map(String::as_str).unwrap_or("?"),
            entry["value"].to_string().replace('"', "")
        );
    }
    if let Some((name, id)) =
        names.iter().find(|(id, _)| salespeople.contains(id)).map(|(id, n)| (n.clone(), id.clone()))
    {
        let target = api
            .call(
                Method::POST,
                "/v1/targets",
                &manager_token,
                Some(json!({
                    "assignee": {"user_id": id},
                    "metric": "revenue",
                    "period": "month",
                    "goal": "250000",
                    "recurring": true,
                })),
            )
            .await?;
        let target_id = target["id"].as_str().unwrap_or_default().to_owned();
        let progress =
            api.call(Method::GET, &format!("/v1/targets/{target_id}/progress"), &manager_token, None).await?;
        println!(
            "
POST /v1/targets + GET /v1/targets/{{id}}/progress (revenue this month, goal GBP 250000.00):"
        );
        println!(
            "  {name}: {} of {} GBP ({:.0}%), expected by now {}, status {}{}",
            progress["value"].to_string().replace('"', ""),
            progress["goal"].to_string().replace('"', ""),
            progress["ratio"].as_f64().unwrap_or(0.0) * 100.0,
            progress["pace"]["expected"].to_string().replace('"', ""),
            progress["status"].as_str().unwrap_or("?"),
            progress["achieved_at"].as_str().map(|t| format!(", achieved at {t}")).unwrap_or_default()
        );
    }

    let audit = api.call(Method::GET, "/v1/audit", &admin, None).await?;
    let consent = audit["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["action"] == "integration.enabled"))
        .map(|x| format!("{} by {}: {}", x["action"], x["actor"], x["subject"]))
        .unwrap_or_default();
    println!("\naudit: {consent}");

    // Stop the service, then sweep everything it kept and logged.
    scheduler.shutdown().await;
    server.abort();
    let tables = store.dump_tables().await.context("failed to dump the database")?;
    store.close().await;
    let mut contact = fake.with(|crm: &mut Crm| crm.contact_canaries());
    let mut people = fake.with(|crm: &mut Crm| crm.user_canaries());
    contact.extend(sf.with(|crm: &mut salesforce::Crm| crm.contact_canaries()));
    people.extend(sf.with(|crm: &mut salesforce::Crm| crm.user_canaries()));
    contact.extend(bh.with(|crm: &mut bullhorn::Crm| crm.contact_canaries()));
    people.extend(bh.with(|crm: &mut bullhorn::Crm| crm.user_canaries()));
    contact.sort();
    contact.dedup();
    people.sort();
    people.dedup();
    fake.shutdown().await;
    sf.shutdown().await;
    bh.shutdown().await;
    let logged = std::fs::read_to_string(args.log_path()).context("failed to read back the demo log")?;
    let mut raw = std::fs::read(args.db_path()).context("failed to read the database file")?;
    if let Ok(wal) = std::fs::read(args.db_path().with_extension("sqlite-wal")) {
        raw.extend_from_slice(&wal);
    }
    let raw = String::from_utf8_lossy(&raw);
    const LOG: &str = "the log";
    const FILE: &str = "the database file";
    let mut places = vec![Place::new(LOG, &logged), Place::new(FILE, &raw)];
    places.extend(tables.iter().map(|t| Place::new(format!("table {}", t.table), &t.rows.join("\n"))));
    let control =
        Control { planted: SWEEP_CONTROL.to_owned(), places: vec![LOG.into(), FILE.into(), "table teams".into()] };
    if contact.is_empty() || people.is_empty() {
        bail!("the fake CRMs served no personal data to look for: the sweep would prove nothing");
    }
    let needles: Vec<String> = contact.iter().chain(&people).cloned().collect();
    let findings = sweep(&places, &needles, &control, |place, needle| {
        // The tenant's own users are account data the admin typed in, not CRM data; the
        // raw file holds those rows too, so it is searched for customer data only.
        (place == "table users" || place == FILE) && people.contains(&needle.to_owned())
    })
    .context("the privacy sweep cannot be trusted")?;
    for f in &findings {
        println!("  FOUND personal data in {}: {}", f.place, f.needle);
    }
    let found = findings.len();
    let rows: usize = tables.iter().map(|t| t.rows.len()).sum();
    println!(
        "\nprivacy sweep: {} personal-data strings the fake CRMs served ({} about customers, candidates and contacts, {} about the CRMs' users),\n\
         searched ignoring case in {} rows of {} tables, the raw database file and the log ({} bytes): {found} found\n\
         (control: the planted string \"{SWEEP_CONTROL}\" was found in the log, the teams table and the database file)",
        contact.len() + people.len(),
        contact.len(),
        people.len(),
        rows,
        tables.len(),
        logged.len()
    );
    println!("(the salespeople's names and e-mails are in the users table as account data the admin entered)");
    Ok(if found == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The sweep's planted positive control: invented, in no fake CRM.
const SWEEP_CONTROL: &str = "Zebediah Quillfeather-Control";

/// The connectors the demo enables, in the order it syncs them.
const CONNECTORS: [&str; 3] = ["pipedrive", "salesforce", "bullhorn"];

async fn sync(api: &Api, admin: &str, connector: &str, label: &str) -> anyhow::Result<()> {
    let path = format!("/v1/integrations/{connector}/sync?wait=true");
    let run = api.call(reqwest::Method::POST, &path, admin, None).await?;
    // `partial` (with its reasons) and `failed` are both a run that did not do everything.
    if run["status"] != "succeeded" {
        bail!(
            "{connector} {label} ended {} (reasons {}, error {}): {run}",
            run["status"],
            run["reasons"],
            run["error"]
        );
    }
    println!(
        "POST /v1/integrations/{connector}/sync?wait=true ({label}) -> {}: {} upserts, {} retractions, {} rejected, {} waiting for an owner mapping, {} ms",
        run["status"].as_str().unwrap_or("?"),
        run["upserts"],
        run["retractions"],
        run["events_rejected"],
        run["unmapped"],
        run["duration_ms"]
    );
    Ok(())
}

/// KPI rows per metric: user id -> value, read from the store through the API.
type Totals = BTreeMap<&'static str, BTreeMap<String, Value>>;

async fn kpis(api: &Api, manager: &str) -> anyhow::Result<Totals> {
    let today = jiff::ZonedDateTime::now().date();
    let from = jiff::civil::date(2000, 1, 1);
    let to = today.checked_add(jiff::Span::new().days(2))?;
    let mut out = Totals::new();
    for metric in METRICS {
        let path = format!("/v1/kpis?metric={metric}&from={from}&to={to}&group_by=user");
        let body = api.call(reqwest::Method::GET, &path, manager, None).await?;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        out.insert(
            metric,
            rows.into_iter().map(|r| (r["user_id"].as_str().unwrap_or("").to_owned(), r["value"].clone())).collect(),
        );
    }
    Ok(out)
}

/// The metrics the demo reads back: Pipedrive and Salesforce share the first four.
const METRICS: [&str; 7] = ["deals_won", "calls", "meetings", "placements", "submissions", "revenue", "placement_fees"];

fn print_totals(totals: &Totals, names: &BTreeMap<String, String>) {
    println!("\nGET /v1/kpis (read back from the store, all time):");
    println!(
        "  {:<28} {:>9} {:>6} {:>8} {:>10} {:>11} {:>15} {:>15}",
        "user", "deals_won", "calls", "meetings", "placements", "submissions", "revenue (GBP)", "fees (GBP)"
    );
    let mut by_name: Vec<(&String, &String)> = names.iter().map(|(id, name)| (name, id)).collect();
    by_name.sort();
    for (name, id) in by_name {
        let get =
            |m: &str| totals.get(m).and_then(|r| r.get(id)).map(|v| v.to_string().replace('"', "")).unwrap_or_default();
        println!(
            "  {:<28} {:>9} {:>6} {:>8} {:>10} {:>11} {:>15} {:>15}",
            name,
            get("deals_won"),
            get("calls"),
            get("meetings"),
            get("placements"),
            get("submissions"),
            get("revenue"),
            get("placement_fees")
        );
    }
}

/// Expected counts per lower-cased e-mail and metric, summed over the three fake CRMs.
type Expected = BTreeMap<String, BTreeMap<&'static str, u64>>;

fn expected_counts(
    pipedrive: &FakePipedrive,
    sf: &FakeSalesforce,
    bh: &FakeBullhorn,
    crm_users: &[(u64, String, String)],
) -> Expected {
    let mut out = Expected::new();
    let mut add = |email: &str, metric: &'static str, n: u64| {
        *out.entry(email.to_lowercase()).or_default().entry(metric).or_default() += n;
    };
    let pd = pipedrive.with(|crm: &mut Crm| crm.expected_totals());
    for (id, _, email) in crm_users {
        let t = pd.get(id).cloned().unwrap_or_default();
        add(email, "deals_won", t.deals_won);
        add(email, "calls", t.calls);
        add(email, "meetings", t.meetings);
    }
    for (email, t) in sf.with(|crm: &mut salesforce::Crm| crm.expected_totals_by_email()) {
        add(&email, "deals_won", t.deals_won);
        add(&email, "calls", t.calls);
        add(&email, "meetings", t.meetings);
    }
    for (email, t) in bh.with(|crm: &mut bullhorn::Crm| crm.expected_totals_by_email()) {
        add(&email, "placements", t.placements);
        add(&email, "submissions", t.submissions);
    }
    out
}

/// Checks the counts read back from the store against what the fake CRMs hold, per user.
fn verify(expected: &Expected, totals: &Totals, user_ids: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let mut mismatches = Vec::new();
    for (email, user) in user_ids {
        let want = expected.get(email).cloned().unwrap_or_default();
        for metric in ["deals_won", "calls", "meetings", "placements", "submissions"] {
            let got = totals.get(metric).and_then(|r| r.get(user)).and_then(Value::as_u64).unwrap_or(0);
            let want = want.get(metric).copied().unwrap_or(0);
            if got != want {
                mismatches.push(format!("{metric} of user {user}: {got}, the CRMs hold {want}"));
            }
        }
    }
    if mismatches.is_empty() {
        println!("check: every user's counts match what the three CRMs hold");
        Ok(())
    } else {
        bail!("totals differ from the CRMs: {}", mismatches.join("; "))
    }
}
