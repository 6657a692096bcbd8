//! `oneup connector check`, as a developer runs it: the real binary, the real Pipedrive
//! component, the fake Pipedrive on loopback. Its JSON lines and its summary must agree with
//! what the fake says a correct connector credits, and bad input must be refused clearly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use oneup_fake_crm::pipedrive::{FakePipedrive, OwnerTotals};
use oneup_tests::*;
use serde_json::Value as Json;

const TOKEN: &str = "pd-check-token-93ab";

/// A scratch folder under `target/` for this test binary.
fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-cli");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// `oneup connector check FILE ARGS…` with a compile cache under `target/`, loopback http
/// allowed when `loopback` is set, and nothing else inherited that changes its behaviour.
/// Runs on a blocking thread so that the fake keeps serving on this test's runtime.
async fn check(file: &Path, args: &[String], loopback: bool) -> Output {
    let mut cmd = Command::new(oneup_bin());
    cmd.args(["connector", "check"]).arg(file).args(args);
    cmd.env("ONEUP_CACHE_DIR", scratch().join("compile-cache"));
    for var in ["ONEUP_ALLOW_LOOPBACK_HTTP", "ONEUP_CHECK_TENANT_KEY", "ONEUP_LOG", "ONEUP_LOG_FORMAT"] {
        cmd.env_remove(var);
    }
    if loopback {
        cmd.env("ONEUP_ALLOW_LOOPBACK_HTTP", "1");
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("oneup runs")).await.expect("join")
}

fn settings(fake: &FakePipedrive) -> Vec<String> {
    vec!["--config".into(), format!("base_url={}", fake.base_url()), "--secret".into(), format!("api_token={TOKEN}")]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

/// `"12750.50"` → 1275050.
fn cents(decimal: &str) -> i64 {
    let (units, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    assert!(frac.len() <= 2 || frac[2..].bytes().all(|b| b == b'0'), "{decimal} is not whole cents");
    let frac = format!("{:0<2}", &frac[..frac.len().min(2)]);
    units.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

#[tokio::test]
async fn check_prints_json_lines_and_a_summary_that_match_the_crm() {
    let fake = fake_pipedrive(201, 3, 150, 200, TOKEN).await;
    let out = check(&component_path(PIPEDRIVE), &settings(&fake), true).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");

    let (expected, users, contact_canaries, user_names) = fake.with(|crm| {
        let users: BTreeMap<String, u64> = crm.users().iter().map(|u| (u.email.to_ascii_lowercase(), u.id)).collect();
        let names: Vec<String> = crm.users().iter().map(|u| u.name.clone()).collect();
        (crm.expected_totals(), users, crm.contact_canaries(), names)
    });

    // stdout: JSON lines only, upserts and retractions, no personal data; the owner's e-mail
    // (the check tool's only personal datum) only in `owner_email`.
    let mut sources: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut revenue: BTreeMap<String, BTreeMap<String, BTreeMap<String, i64>>> = BTreeMap::new();
    let mut lines = 0;
    for line in stdout.lines() {
        lines += 1;
        let json: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for canary in contact_canaries.iter().chain(&user_names) {
            assert!(!line.contains(canary.as_str()), "`{canary}` printed: {line}");
        }
        let op = json["op"].as_str().expect("an op");
        let metric = json["metric"].as_str().expect("a metric").to_owned();
        let source = json["source"].as_str().expect("a source").to_owned();
        match op {
            "upsert" => {
                let email = json["owner_email"].as_str().expect("every owner is in the roster").to_owned();
                assert!(users.contains_key(&email), "owner_email {email} is no CRM user");
                let mut rest = json.clone();
                rest.as_object_mut().unwrap().remove("owner_email");
                for email in users.keys() {
                    assert!(!rest.to_string().contains(email.as_str()), "an e-mail outside owner_email: {line}");
                }
                if metric == "revenue" {
                    let currency = json["currency"].as_str().expect("a currency").to_owned();
                    let amount = cents(json["amount"].as_str().expect("an amount"));
                    // A re-emitted upsert replaces: keep the last amount per source.
                    revenue
                        .entry(email.clone())
                        .or_default()
                        .entry(currency)
                        .or_default()
                        .insert(source.clone(), amount);
                } else {
                    assert_eq!(json["count"], 1, "{line}");
                }
                sources.entry((email, metric)).or_default().insert(source);
            }
            "retract" => {}
            other => panic!("unknown op {other}: {line}"),
        }
    }
    assert!(lines > 100, "{lines} lines");

    let mut seen: BTreeMap<u64, OwnerTotals> = users.values().map(|id| (*id, OwnerTotals::default())).collect();
    for ((email, metric), set) in &sources {
        let t = seen.get_mut(&users[email]).unwrap();
        let n = set.len() as u64;
        match metric.as_str() {
            "deals_won" => t.deals_won = n,
            "calls" => t.calls = n,
            "meetings" => t.meetings = n,
            "revenue" => {}
            other => panic!("undeclared metric {other}"),
        }
    }
    for (email, by_currency) in &revenue {
        let t = seen.get_mut(&users[email]).unwrap();
        for (currency, amounts) in by_currency {
            t.revenue_cents.insert(currency.clone(), amounts.values().sum());
        }
    }
    assert_eq!(seen, expected, "the printed upserts add up to what the CRM holds");

    // stderr: the run completed, and the totals per owner name each owner by e-mail.
    assert!(stderr.contains("Complete"), "stderr:\n{stderr}");
    for canary in &contact_canaries {
        assert!(!stderr.contains(canary.as_str()), "`{canary}` in stderr");
    }
    for (email, id) in &users {
        let t = &expected[id];
        let prefix = format!("{email}: ");
        let line = stderr.lines().map(str::trim).find(|l| l.starts_with(&prefix));
        if *t == OwnerTotals::default() {
            assert!(line.is_none(), "a line for an owner with nothing: {line:?}");
            continue;
        }
        let line = line.unwrap_or_else(|| panic!("no totals for {email} in stderr:\n{stderr}"));
        let shown: BTreeMap<&str, &str> =
            line[prefix.len()..].split(", ").filter_map(|item| item.split_once('=')).collect();
        let mut want: BTreeMap<&str, String> = BTreeMap::new();
        for (metric, n) in [("deals_won", t.deals_won), ("calls", t.calls), ("meetings", t.meetings)] {
            if n > 0 {
                want.insert(metric, n.to_string());
            }
        }
        if !t.revenue_cents.is_empty() {
            let parts: Vec<String> = t.revenue_cents.keys().map(|c| format!("{} {c}", t.revenue(c))).collect();
            want.insert("revenue", parts.join(" + "));
        }
        let shown: BTreeMap<&str, String> = shown.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        assert_eq!(shown, want, "summary line: {line}");
    }
}

#[tokio::test]
async fn check_refuses_a_missing_file_clearly() {
    let missing = scratch().join("no-such-connector.wasm");
    let out = check(&missing, &[], true).await;
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("no-such-connector.wasm"), "names the file: {stderr}");
    assert!(
        stderr.to_lowercase().contains("no such file") || stderr.to_lowercase().contains("not found"),
        "says it does not exist: {stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn check_refuses_a_file_that_is_not_webassembly() {
    let file = scratch().join("not-a-connector.wasm");
    std::fs::write(&file, "this is a README, not a component\n").unwrap();
    let out = check(&file, &[], true).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("not a WebAssembly file"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn check_names_an_undeclared_config_key_and_sends_nothing() {
    let fake = fake_pipedrive(202, 2, 30, 30, TOKEN).await;
    let mut args = settings(&fake);
    args.extend(["--config".to_owned(), "colour_scheme=dark".to_owned()]);
    let out = check(&component_path(PIPEDRIVE), &args, true).await;
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("colour_scheme"), "names the key: {stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(fake.with(|crm| crm.request_count()), 0);
}

#[tokio::test]
async fn check_says_the_base_url_is_required() {
    let out = check(&component_path(PIPEDRIVE), &["--secret".to_owned(), format!("api_token={TOKEN}")], true).await;
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("base_url") && stderr.contains("required"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn check_refuses_a_loopback_http_base_url_unless_allowed_and_says_how() {
    let fake = fake_pipedrive(203, 2, 30, 30, TOKEN).await;
    // With and without the roster call: the refusal reads the same either way.
    for extra in [None, Some("--no-roster")] {
        let mut args = settings(&fake);
        args.extend(extra.map(str::to_owned));
        let out = check(&component_path(PIPEDRIVE), &args, false).await;
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{extra:?}, stderr: {stderr}");
        assert!(stderr.contains("https"), "{extra:?}: says https is required: {stderr}");
        assert!(
            stderr.contains("ONEUP_ALLOW_LOOPBACK_HTTP") || stderr.contains("--allow-loopback-http"),
            "{extra:?}: says how to allow plain http on loopback: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(fake.with(|crm| crm.request_count()), 0, "nothing was sent");
}
