//! The master key cannot silently split (issue 11, section 5), through the real binary on
//! both stores: a second node with another key (or none, which would make a new key file)
//! refuses to start and writes nothing; `oneup keys rotate` re-seals everything under a new
//! key, is safe to run twice, and afterwards only the new key serves (a sync still works).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::Value as Json;

const TOKEN: &str = "pd-keys-token-4f7a20";
const NEW_KEY_HEX: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

on_both_stores!(a_node_with_another_key_refuses_and_rotation_reseals_everything);

/// Runs `oneup ARGS` in `dir` with `DATABASE_URL` and exactly the key variables given;
/// waits (up to 120 s) and returns (success, exit code, stdout, stderr).
fn oneup(dir: &Path, database_url: &str, args: &[&str], keys: &[(&str, &str)]) -> (bool, Option<i32>, String, String) {
    let mut cmd = Command::new(oneup_bin());
    cmd.current_dir(dir).args(args).env("DATABASE_URL", database_url).env("ONEUP_OPERATOR_TOKEN", OPERATOR_TOKEN);
    for var in ["ONEUP_MASTER_KEY", "ONEUP_MASTER_KEY_FILE", "ONEUP_NEW_MASTER_KEY", "ONEUP_NEW_MASTER_KEY_FILE"] {
        cmd.env_remove(var);
    }
    for (k, v) in keys {
        cmd.env(k, v);
    }
    let stdout = dir.join("out.log");
    let stderr = dir.join("err.log");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"));
    let mut child = cmd.spawn().expect("oneup starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oneup {args:?} did not exit; stdout:\n{}", std::fs::read_to_string(&stdout).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        status.code(),
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    )
}

/// `deals_won` over all time per user id.
async fn deals(t: &app::Tenant) -> Json {
    let answer = t.api.get("/v1/kpis?metric=deals_won&from=2000-01-01&to=2100-01-01", &t.manager).await;
    answer.expect(200)["rows"].clone()
}

async fn a_node_with_another_key_refuses_and_rotation_reseals_everything(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = oneup_tests::fake_pipedrive(1303, 3, 40, 10, TOKEN).await;
    let mut first = Service::start(&db.url, &ServiceOptions::default()).await;
    let t = app::Tenant::create(&first.api(), "Keys Inc", "keys.example", "UTC", "GBP").await;
    let emails: Vec<String> = fake.with(|crm| crm.users().iter().map(|u| u.email.clone()).collect());
    for (i, email) in emails.iter().enumerate() {
        t.add_user(&format!("Seller {i}"), email, "member").await;
    }
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;
    let totals = deals(&t).await;
    first.kill();
    let before = db.dump().await;
    assert_eq!(before["master_key"].len(), 1, "the fingerprint is recorded at first start");
    assert!(!before["master_key"][0].contains(&MASTER_KEY_HEX[..16]), "a fingerprint, not the key");

    // A second node without ONEUP_MASTER_KEY (it would make a key file of its own), and one
    // with another key: both refuse to start, naming the fix, and write nothing.
    let scratch = Scratch::new("oneup-keys");
    let dir = scratch.path();
    let serve = ["serve", "--bind", "127.0.0.1:0"];
    let (ok, code, _, err) = oneup(dir, &db.url, &serve, &[]);
    assert!(!ok && code == Some(1), "refused with exit code 1: {code:?}\n{err}");
    assert!(err.contains("refusing to start") && err.contains("ONEUP_MASTER_KEY"), "{err}");
    assert!(err.contains("no ONEUP_MASTER_KEY was given"), "{err}");
    assert!(!dir.join("oneup.key").exists(), "no key file is made");
    let (ok, code, _, err) = oneup(dir, &db.url, &serve, &[("ONEUP_MASTER_KEY", NEW_KEY_HEX)]);
    assert!(!ok && code == Some(1), "{code:?}\n{err}");
    assert!(err.contains("refusing to start") && err.contains("master key does not match"), "{err}");
    assert!(!err.contains(NEW_KEY_HEX) && !err.contains(MASTER_KEY_HEX), "no key in the message: {err}");
    assert_eq!(db.dump().await, before, "nothing written");

    // Rotation: the old key from the environment, the new one from a file it creates.
    let rotate = ["keys", "rotate", "--new-master-key-file", "new.key"];
    let old = [("ONEUP_MASTER_KEY", MASTER_KEY_HEX)];
    let (ok, _, out, err) = oneup(dir, &db.url, &rotate, &old);
    assert!(ok, "rotate succeeds: {out}\n{err}");
    assert!(out.contains("re-sealed 1 tenant keys and 1 integration secrets"), "{out}");
    let new_key = std::fs::read_to_string(dir.join("new.key")).expect("the new key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("new.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }
    let rotated = db.dump().await;
    assert_ne!(rotated["master_key"], before["master_key"], "the fingerprint follows the key");
    assert_ne!(rotated["integrations"], before["integrations"], "the secrets are re-sealed");
    assert_ne!(rotated["tenants"], before["tenants"], "the tenant key is re-sealed");
    // Twice is safe: nothing to do, nothing changed.
    let (ok, _, out, err) = oneup(dir, &db.url, &rotate, &old);
    assert!(ok && out.contains("already"), "{out}\n{err}");
    assert_eq!(db.dump().await["integrations"], rotated["integrations"]);
    // A rotation from a key that is neither is refused and changes nothing.
    let (ok, _, _, err) = oneup(
        dir,
        &db.url,
        &["keys", "rotate"],
        &[("ONEUP_MASTER_KEY", &"1".repeat(64)), ("ONEUP_NEW_MASTER_KEY", &"2".repeat(64))],
    );
    assert!(!ok && err.contains("does not match"), "{err}");
    assert_eq!(db.dump().await, rotated);

    // The old key no longer serves; the new one does, and reads every secret: a sync works.
    let (ok, code, _, err) = oneup(dir, &db.url, &serve, &old);
    assert!(!ok && code == Some(1) && err.contains("refusing to start"), "{err}");
    let options = ServiceOptions { master_key: Some(new_key.trim().to_owned()), ..ServiceOptions::default() };
    let second = Service::start(&db.url, &options).await;
    let t = app::Tenant { api: second.api(), ..t };
    t.sync_pipedrive().await;
    assert_eq!(deals(&t).await, totals);
    let audit = t.api.get("/v1/audit?limit=1000", &t.admin).await;
    let entries = audit.expect(200)["entries"].as_array().expect("entries").clone();
    let entry = entries.iter().find(|e| e["action"] == "master_key.rotated").expect("the rotation is audited");
    assert_eq!(entry["actor"], "operator");
    assert!(!str_of(&entry["subject"]).contains(new_key.trim()));
}
