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
    check_with_env(file, args, loopback, &[]).await
}

/// [`check`] with more environment variables.
async fn check_with_env(file: &Path, args: &[String], loopback: bool, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(oneup_bin());
    cmd.envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
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

/// Secrets need not be on the command line (where `ps` and shell history see them): from a
/// file or from `ONEUP_SECRET_<KEY>`; a key given twice is refused.
#[tokio::test]
async fn check_reads_secrets_from_a_file_or_the_environment() {
    let fake = fake_pipedrive(205, 2, 20, 10, TOKEN).await;
    let base = vec!["--config".to_owned(), format!("base_url={}", fake.base_url())];
    let file = scratch().join("api-token.secret");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let mut args = base.clone();
    args.extend(["--secret-file".to_owned(), format!("api_token={}", file.display())]);
    let out = check(&component_path(PIPEDRIVE), &args, true).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stdout).is_empty());

    let out = check_with_env(&component_path(PIPEDRIVE), &base, true, &[("ONEUP_SECRET_API_TOKEN", TOKEN)]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stdout).is_empty());

    let before = fake.with(|crm| crm.request_count());
    let out = check_with_env(&component_path(PIPEDRIVE), &args, true, &[("ONEUP_SECRET_API_TOKEN", TOKEN)]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("secret `api_token` is given twice"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    let mut missing = base.clone();
    missing.extend(["--secret-file".to_owned(), format!("api_token={}", scratch().join("nope").display())]);
    let out = check(&component_path(PIPEDRIVE), &missing, true).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read the secret file for `api_token`"), "{}", text(&out.stderr));
    assert_eq!(fake.with(|crm| crm.request_count()), before, "nothing was sent");
}

/// A recording holds the CRM's personal data: its folder is owner-only and the tool says so.
#[cfg(unix)]
#[tokio::test]
async fn a_recording_folder_is_owner_only_with_a_notice() {
    use std::os::unix::fs::PermissionsExt;
    let fake = fake_pipedrive(206, 2, 10, 5, TOKEN).await;
    let dir = fresh_dir("private-recording");
    let mut args = settings(&fake);
    args.extend(["--record".to_owned(), dir.display().to_string()]);
    let out = check(&component_path(PIPEDRIVE), &args, true).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("personal data"), "{stderr}");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let recorded = files(&dir);
    assert!(!recorded.is_empty());
    for (path, _) in recorded {
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o077, 0, "{}", path.display());
    }
    // An existing folder others may read is made owner-only too.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = check(&component_path(PIPEDRIVE), &args, true).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
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

// The connector author's toolkit: `--record`, `--replay`, `--validate`, with the template
// connector and the fake Example CRM it was written for. The last test here replays the
// recording kept in `connectors/template/tests/recorded/` with `--validate`: that is the
// template's CI step.

const TEMPLATE: &str = "oneup-connector-template";
const HOSTILE: &str = "oneup-hostile-connector";
const EXAMPLE_KEY: &str = "ex-live-key-7c41d9f0";
const MARKER: &str = "oneup-redacted";
const CHECKS: [&str; 8] = [
    "describe",
    "completes",
    "contract",
    "personal-data",
    "paging-terminates",
    "rerun-from-cursor",
    "survives-429",
    "survives-401",
];

/// The suite's lines by check name: `PASS`, `FAIL` or `SKIP`, with the detail.
fn verdicts(stdout: &str) -> BTreeMap<String, (String, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (status, rest) = line.split_once(' ')?;
            let (name, detail) = rest.split_once(": ")?;
            matches!(status, "PASS" | "FAIL" | "SKIP")
                .then(|| (name.to_owned(), (status.to_owned(), detail.to_owned())))
        })
        .collect()
}

fn assert_all_pass(out: &Output, what: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let found = verdicts(&stdout);
    let names: Vec<&str> = found.keys().map(String::as_str).collect();
    let mut want = CHECKS.to_vec();
    want.sort();
    assert_eq!(names, want, "{what}: one line per check\n{stdout}\n{stderr}");
    for (name, (status, detail)) in &found {
        assert_eq!(status, "PASS", "{what}: {name}: {detail}\nstderr:\n{stderr}");
    }
    assert!(stdout.contains("validate: 8 passed, 0 failed, 0 skipped"), "{what}: {stdout}");
    assert_eq!(out.status.code(), Some(0), "{what}: stderr:\n{stderr}");
}

/// Every file of a folder, as text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let body = std::fs::read_to_string(&path).unwrap();
            (path, body)
        })
        .collect();
    out.sort();
    out
}

/// Only the JSON lines of a plain check: upserts of `deals_won`.
fn won_upserts(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Json>(line).ok())
        .filter(|json| json["op"] == "upsert" && json["metric"] == "deals_won")
        .count()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn record_against_the_fake_then_replay_offline_and_validate() {
    use oneup_fake_crm::FakeServer;
    use oneup_fake_crm::example::ExampleCrm;

    let fake = FakeServer::serve(ExampleCrm::new(EXAMPLE_KEY)).await.expect("the fake Example CRM starts");
    let (expected_won, canaries) =
        fake.with(|crm| (crm.expected_totals().values().map(|t| t.deals_won as usize).sum::<usize>(), crm.canaries()));
    let dir = fresh_dir("template-recording");
    let template = component_path(TEMPLATE);

    // (a) Record a validating run against the fake: every check passes live.
    let args: Vec<String> = vec![
        "--config".into(),
        format!("base_url={}", fake.base_url()),
        "--secret".into(),
        format!("api_key={EXAMPLE_KEY}"),
        "--record".into(),
        dir.display().to_string(),
        "--validate".into(),
    ];
    let out = check(&template, &args, true).await;
    assert_all_pass(&out, "live");
    let sent = fake.with(|crm| crm.request_count());
    assert!(sent >= 6, "roster pages, deal pages, the re-run, the faults: {sent}");

    // (d) The secret appears nowhere in the recording, in any form; the key header is
    // kept by name only; the index lists the secret's name, not its value.
    let recorded = files(&dir);
    assert!(recorded.len() >= 7, "{recorded:?}");
    for (path, body) in &recorded {
        assert!(!body.contains(EXAMPLE_KEY), "the secret is in {}", path.display());
        assert!(!body.contains("7c41d9f0"), "part of the secret is in {}", path.display());
        assert!(!path.file_name().unwrap().to_string_lossy().ends_with(".tmp"), "a temporary file is left");
        let json: Json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(key) = json.get("request_headers").and_then(|h| h.get("x-api-key")) {
            assert_eq!(key, MARKER, "{}", path.display());
        }
    }
    let index: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("recording.json")).unwrap()).unwrap();
    assert_eq!(index["secret_keys"], serde_json::json!(["api_key"]));
    assert_eq!(index["connector"], "template");

    // (b) Replay offline with the suite: no secret, no loopback permission, and not one
    // request reaches the fake, which is still listening.
    let out = check(&template, &["--replay".into(), dir.display().to_string(), "--validate".into()], false).await;
    assert_all_pass(&out, "replay");
    assert!(text(&out.stderr).contains(", 0 unmatched"), "{}", text(&out.stderr));
    assert_eq!(fake.with(|crm| crm.request_count()), sent, "the replay sent nothing");

    // A plain replay prints what the live CRM credits: every owned won deal, once.
    let out = check(&template, &["--replay".into(), dir.display().to_string()], false).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(won_upserts(&stdout), expected_won, "{stdout}");
    for canary in &canaries {
        assert!(!stdout.contains(canary.as_str()) && !stderr.contains(canary.as_str()), "`{canary}` printed");
    }
    assert_eq!(fake.with(|crm| crm.request_count()), sent, "the replay sent nothing");
    fake.shutdown().await;
}

#[tokio::test]
async fn validate_fails_the_checks_a_broken_connector_breaks() {
    let hostile = component_path(HOSTILE);
    // The base URL is never contacted: these modes make no request.
    let run = |mode: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "--config".into(),
            "base_url=https://crm.example.com".into(),
            "--config".into(),
            format!("mode={mode}"),
            "--validate".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let hostile = hostile.clone();
        async move { check(&hostile, &args, false).await }
    };
    // (mode, extra args, the checks that must fail; every other check must not)
    let cases: [(&str, &[&str], &[&str]); 5] = [
        ("email-owner", &[], &["completes", "personal-data"]),
        ("sentence-source-id", &[], &["completes", "personal-data"]),
        ("undeclared-metric", &[], &["completes", "contract"]),
        ("undeclared-log-code", &[], &["contract"]),
        ("loop", &["--cpu-secs", "1"], &["completes", "paging-terminates"]),
    ];
    for (mode, extra, failing) in cases {
        let out = run(mode, extra).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{mode}: stdout:\n{stdout}\nstderr:\n{stderr}");
        let found = verdicts(&stdout);
        assert_eq!(found.len(), CHECKS.len(), "{mode}: {stdout}");
        for (name, (status, detail)) in &found {
            let should_fail = failing.contains(&name.as_str());
            assert_eq!(status == "FAIL", should_fail, "{mode}: {name}: {status} {detail}");
        }
        assert_eq!(found["describe"].0, "PASS", "{mode}");
        // The offending id is described by its length, never shown.
        for leaked in ["jane.doe", "Tom at SuperBigCorp", "secret_metric", "sneaky_free_text_code"] {
            assert!(!stdout.contains(leaked), "{mode}: `{leaked}` printed: {stdout}");
        }
    }
    let out = run("email-owner", &[]).await;
    assert!(verdicts(&text(&out.stdout))["personal-data"].1.contains("owner (21 bytes)"), "{}", text(&out.stdout));

    // A connector that keeps the rules but makes no request: the HTTP checks do not apply.
    let out = run("ok", &[]).await;
    let found = verdicts(&text(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(found["survives-429"].0, "SKIP");
    assert_eq!(found["rerun-from-cursor"].0, "PASS");
}

#[tokio::test]
async fn validate_bounds_requests_and_replay_reports_what_the_recording_lacks() {
    let template = component_path(TEMPLATE);
    let committed = workspace_root().join("connectors/template/tests/recorded");

    // At most 3 requests per sync: the template's four pages of deals are one too many.
    let args =
        ["--replay".into(), committed.display().to_string(), "--validate".into(), "--max-requests".into(), "3".into()];
    let out = check(&template, &args, false).await;
    let found = verdicts(&text(&out.stdout));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(found["paging-terminates"].0, "FAIL");
    assert!(found["paging-terminates"].1.contains("more than 3 requests"), "{:?}", found["paging-terminates"]);

    // A recording without its last page of deals: that request is answered 404 and named,
    // the summary counts it, and the sync fails.
    let partial = fresh_dir("partial-recording");
    std::fs::create_dir_all(&partial).unwrap();
    let mut dropped = None;
    let mut kept = Vec::new();
    for (path, body) in files(&committed) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let json: Json = serde_json::from_str(&body).unwrap();
        let last_page = json["target"].as_str().is_some_and(|t| t.contains("modified_since=0&page=4"));
        if last_page {
            dropped = Some(name);
            continue;
        }
        if name != "recording.json" {
            kept.push(name.clone());
        }
        std::fs::write(partial.join(&name), body).unwrap();
    }
    let dropped = dropped.expect("the recording has a fourth page of deals");
    let mut index: Json =
        serde_json::from_str(&std::fs::read_to_string(partial.join("recording.json")).unwrap()).unwrap();
    index["exchanges"] = serde_json::json!(kept);
    std::fs::write(partial.join("recording.json"), index.to_string()).unwrap();
    let out = check(&template, &["--replay".into(), partial.display().to_string()], false).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{dropped} missing: {stderr}");
    assert!(stderr.contains("no recorded answer for GET base /api/v1/deals?modified_since=0&page=4"), "{stderr}");
    assert!(stderr.contains(", 1 unmatched"), "{stderr}");

    // Bad combinations and folders are refused before anything runs.
    let both = ["--replay".into(), committed.display().to_string(), "--record".into(), partial.display().to_string()];
    let out = check(&template, &both, false).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be combined"), "{}", text(&out.stderr));
    let out =
        check(&template, &["--replay".into(), scratch().join("no-recording-here").display().to_string()], false).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("recording.json"), "{}", text(&out.stderr));
    let foreign = fresh_dir("not-a-recording");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.md"), "mine").unwrap();
    let args = [
        "--config".into(),
        "base_url=http://127.0.0.1:9".into(),
        "--secret".into(),
        "api_key=k-123456".into(),
        "--record".into(),
        foreign.display().to_string(),
    ];
    let out = check(&template, &args, true).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("notes.md"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(foreign.join("notes.md")).unwrap(), "mine", "nothing of the user's touched");
}

/// The template's CI step: its recorded exchanges replayed with the conformance suite.
#[tokio::test]
async fn the_template_recording_replays_with_every_check_passing() {
    let committed = workspace_root().join("connectors/template/tests/recorded");
    let out = check(
        &component_path(TEMPLATE),
        &["--replay".into(), committed.display().to_string(), "--validate".into()],
        false,
    )
    .await;
    assert_all_pass(&out, "connectors/template/tests/recorded");
    for (path, body) in files(&committed) {
        let json: Json = serde_json::from_str(&body).unwrap();
        if let Some(key) = json.get("request_headers").and_then(|h| h.get("x-api-key")) {
            assert_eq!(key, MARKER, "{}", path.display());
        }
    }
}

/// A refreshing scheme end to end: Bullhorn's OAuth refresh (single-use refresh tokens in the
/// query string) and REST login (`access_token` in the query, `BhRestToken` in the answer
/// and on every request). Recorded with the suite, no secret and no token the fake issued
/// is in the recording; replayed offline, the refresh and the re-login after the injected
/// 401 are answered from it, and every check passes again.
#[tokio::test]
async fn a_bullhorn_session_is_recorded_without_any_token_and_replays() {
    use oneup_fake_crm::Timestamp;
    use oneup_fake_crm::bullhorn::{Credentials, Dataset, DatasetSpec, FakeBullhorn};

    const CLIENT_ID: &str = "bh-rec-client-6a0e";
    const CLIENT_SECRET: &str = "bh-rec-secret-91fd4c";
    const REFRESH_TOKEN: &str = "42:bh-rec-refresh-0001";
    let spec = DatasetSpec::new(404, 3, 120, 160).in_currency("EUR").ending_at(Timestamp::now_utc());
    let fake =
        FakeBullhorn::start(Dataset::generate_with(&spec), Credentials::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN))
            .await
            .expect("the fake starts");
    let dir = fresh_dir("bullhorn-recording");
    let bullhorn = component_path("oneup-connector-bullhorn");
    let args: Vec<String> = vec![
        "--config".into(),
        format!("auth_url={}", fake.auth_url()),
        "--config".into(),
        format!("login_url={}", fake.login_url()),
        "--config".into(),
        "currency=EUR".into(),
        "--secret".into(),
        format!("client_id={CLIENT_ID}"),
        "--secret".into(),
        format!("client_secret={CLIENT_SECRET}"),
        "--secret".into(),
        format!("refresh_token={REFRESH_TOKEN}"),
        "--record".into(),
        dir.display().to_string(),
        "--validate".into(),
    ];
    let out = check(&bullhorn, &args, true).await;
    assert_all_pass(&out, "bullhorn live");
    let survived = &verdicts(&text(&out.stdout))["survives-401"].1;
    assert!(survived.contains("renewed the grant"), "{survived}");

    let recorded = files(&dir);
    let mut token_calls = 0;
    for (path, body) in &recorded {
        for secret in [CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, "42:refresh-", "42:access-", "42:rest-"] {
            assert!(!body.contains(secret), "`{secret}` is in {}", path.display());
            let encoded: String = url_encoded(secret);
            assert!(!body.contains(&encoded), "`{encoded}` is in {}", path.display());
        }
        token_calls += usize::from(body.contains("\"target\": \"/oauth/token?"));
    }
    assert!(token_calls >= 1, "the token call is recorded");

    let sent = fake.with(|crm| crm.request_count());
    let out = check(&bullhorn, &["--replay".into(), dir.display().to_string(), "--validate".into()], false).await;
    assert_all_pass(&out, "bullhorn replay");
    assert!(text(&out.stderr).contains(", 0 unmatched"), "{}", text(&out.stderr));
    assert_eq!(fake.with(|crm| crm.request_count()), sent, "the replay sent nothing");
    fake.shutdown().await;
}

/// `a:b` → `a%3Ab`, as a query string carries it.
fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
