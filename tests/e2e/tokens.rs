//! Tokens through the running service: issued with a scope, a label and an expiry, listed
//! without secrets, revoked at once on every node, refused once expired; `display` tokens
//! read leaderboards only; no full token in a stream or TV URL, one-time stream tickets
//! instead; failed authentications limited per address; stream caps; the operator token's
//! minimum length. Each attack is performed and its refusal asserted.

use std::process::Stdio;
use std::time::Duration;

use oneup_fake_crm::Timestamp;
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

use crate::live::Events;

const PD_TOKEN: &str = "pd-tokens-7c1e09";
const DAY: i64 = 86_400;

on_both_stores!(tokens_issue_list_revoke_and_expire, display_tokens_tickets_and_stream_caps);

/// A tenant with Pipedrive enabled (so contests on `deals_won` can be made).
async fn tenant(service: &Service) -> app::Tenant {
    let fake = fake_pipedrive(4_301, 2, 5, 5, PD_TOKEN).await;
    let t = app::Tenant::create(&service.api(), "Token Sales", "tokens.example", "Europe/Paris", "EUR").await;
    t.enable_pipedrive(&fake.base_url(), PD_TOKEN).await.expect(200);
    // The fake only needs to answer while enabling; it may go now.
    drop(fake);
    t
}

fn rfc3339_secs(v: &Json) -> i64 {
    Timestamp::parse_rfc3339(&str_of(v)).expect("an RFC 3339 instant").unix()
}

fn now_secs() -> i64 {
    Timestamp::now_utc().unix()
}

async fn audit_actions(t: &app::Tenant) -> Vec<(String, String)> {
    let log = t.api.get("/v1/audit?limit=500", &t.admin).await.expect(200).clone();
    let entries = log["entries"].as_array().unwrap_or_else(|| panic!("no entries: {log}"));
    entries.iter().map(|e| (str_of(&e["action"]), str_of(&e["subject"]))).collect()
}

// ----- 1. issue, list, revoke, expire ---------------------------------------------------------

async fn tokens_issue_list_revoke_and_expire(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let a = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = a.api();
    let t = tenant(&a).await;
    let tokens_of = |user: &str| format!("/v1/users/{user}/tokens");
    let member_tokens = tokens_of(&t.member_id);

    // Defaults: full, 90 days, no label; the old `token` field is still there.
    let issued = api.post_empty(&member_tokens, &t.member).await;
    let issued = issued.expect(201).clone();
    assert_eq!(issued["scope"], "full");
    assert_eq!(issued["label"], Json::Null);
    assert!(str_of(&issued["token"]).starts_with("oneup_"));
    let expires = rfc3339_secs(&issued["expires_at"]);
    assert!((expires - (now_secs() + 90 * DAY)).abs() < 120, "90 days: {issued}");
    // A label, a scope, 30 days; `null` = never expires.
    let body = json!({"label": "office TV", "expires_in_days": 30, "scope": "display"});
    let tv = api.post(&member_tokens, &t.member, &body).await.expect(201).clone();
    assert_eq!((tv["label"].clone(), tv["scope"].clone()), (json!("office TV"), json!("display")));
    assert!((rfc3339_secs(&tv["expires_at"]) - (now_secs() + 30 * DAY)).abs() < 120, "{tv}");
    let forever = api.post(&member_tokens, &t.admin, &json!({"expires_in_days": null})).await.expect(201).clone();
    assert_eq!(forever["expires_at"], Json::Null);

    // Bad input: the exact error, nothing issued.
    let listed = |token: String| {
        let (api, path) = (api.clone(), member_tokens.clone());
        async move { api.get(&path, &token).await.expect(200)["tokens"].as_array().expect("tokens").len() }
    };
    let before = listed(t.member.clone()).await;
    for (bad, code) in [
        (json!({"expires_in_days": 0}), "invalid_field"),
        (json!({"expires_in_days": 3651}), "invalid_field"),
        (json!({"expires_in_days": -5}), "invalid_field"),
        (json!({"expires_in_days": "90"}), "invalid_body"),
        (json!({"label": ""}), "invalid_field"),
        (json!({"label": "x".repeat(101)}), "invalid_field"),
        (json!({"scope": "root"}), "invalid_body"),
        (json!({"admin": true}), "invalid_body"),
    ] {
        assert_eq!(api.post(&member_tokens, &t.member, &bad).await.expect_error(400), code, "{bad}");
    }
    assert_eq!(listed(t.member.clone()).await, before, "nothing was issued");

    // The list: metadata only, never a secret; the token used shows its last use.
    let member_token_id = {
        let list = api.get(&member_tokens, &t.member).await;
        assert!(!list.text.contains("oneup_"), "no token in the list: {}", list.text);
        let list = list.expect(200)["tokens"].as_array().expect("tokens").clone();
        assert_eq!(list.len(), 4, "the first token and the three issued: {list:?}");
        for info in &list {
            let mut keys: Vec<&str> = info.as_object().expect("an object").keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["created_at", "expires_at", "id", "label", "last_used_at", "revoked_at", "scope"]);
        }
        assert!(list[0]["last_used_at"].is_string(), "the member's token was used: {:?}", list[0]);
        assert_eq!(list[2]["last_used_at"], Json::Null, "the TV token was not: {:?}", list[2]);
        str_of(&list[0]["id"])
    };

    // Someone else's tokens: a member may not list, issue or revoke them (403, as for every
    // other "admin or that user" route); another tenant's ids are 404.
    let admin_tokens = tokens_of(&t.admin_id);
    assert_eq!(api.get(&admin_tokens, &t.member).await.expect_error(403), "forbidden");
    assert_eq!(api.post_empty(&admin_tokens, &t.member).await.expect_error(403), "forbidden");
    let admin_token_id = str_of(&api.get(&admin_tokens, &t.admin).await.expect(200)["tokens"][0]["id"]);
    let revoke_admin = format!("{admin_tokens}/{admin_token_id}");
    assert_eq!(api.delete(&revoke_admin, &t.member).await.expect_error(403), "forbidden");
    // The member's own path with the admin's token id: not one of theirs.
    let wrong = format!("{member_tokens}/{admin_token_id}");
    assert_eq!(api.delete(&wrong, &t.member).await.expect_error(404), "not_found");
    let other = app::Tenant::create(&api, "Elsewhere", "elsewhere.example", "Europe/Paris", "EUR").await;
    assert_eq!(api.get(&member_tokens, &other.admin).await.expect_error(404), "not_found");
    let theirs = format!("{member_tokens}/{member_token_id}");
    assert_eq!(api.delete(&theirs, &other.admin).await.expect_error(404), "not_found");
    let unknown = format!("{member_tokens}/00000000-0000-4000-8000-000000000000");
    assert_eq!(api.delete(&unknown, &t.admin).await.expect_error(404), "not_found");
    api.get("/v1/me", &t.admin).await.expect(200);
    api.get("/v1/me", &t.member).await.expect(200);

    // Revocation holds at once on every node: a second `serve` on the same database.
    let b = Service::start(&db.url, &ServiceOptions::default()).await;
    let api_b = b.api();
    api_b.get("/v1/me", &t.member).await.expect(200);
    api.delete(&theirs, &t.member).await.expect(204);
    assert_eq!(api_b.get("/v1/me", &t.member).await.expect_error(401), "unauthorized");
    assert_eq!(api.get("/v1/me", &t.member).await.expect_error(401), "unauthorized");
    let list = api.get(&member_tokens, &t.admin).await.expect(200)["tokens"].clone();
    assert!(list[0]["revoked_at"].is_string(), "{list}");
    // Revoking again is harmless.
    api.delete(&theirs, &t.admin).await.expect(204);

    // An expired token: 401, and its expiry is audited once. (The expiry instant is moved
    // into the past in the database: a day cannot be waited for.)
    let soon = api.post(&member_tokens, &t.admin, &json!({"label": "expiring", "expires_in_days": 1})).await;
    let soon = str_of(&soon.expect(201)["token"]);
    api_b.get("/v1/me", &soon).await.expect(200);
    let moved = db
        .scalar_i64("UPDATE api_tokens SET expires_at = 1000 WHERE label = 'expiring' RETURNING CAST(1 AS BIGINT)")
        .await;
    assert_eq!(moved, 1);
    assert_eq!(api_b.get("/v1/me", &soon).await.expect_error(401), "unauthorized");
    assert_eq!(api.get("/v1/me", &soon).await.expect_error(401), "unauthorized");

    // The audit log: issue, first use, revoke, expiry (once).
    let actions = audit_actions(&t).await;
    let count = |action: &str| actions.iter().filter(|(a, _)| a == action).count();
    assert_eq!(count("token.created"), 4 + 2, "{actions:?}"); // two users, then four here
    assert_eq!(count("token.revoked"), 2, "{actions:?}");
    assert_eq!(count("token.expired"), 1, "{actions:?}");
    assert!(count("token.first_used") >= 3, "{actions:?}");
    let revoked = actions.iter().find(|(a, _)| a == "token.revoked").expect("a revocation");
    assert!(revoked.1.contains(&member_token_id), "{revoked:?}");
    assert!(!format!("{actions:?}").contains("oneup_"), "no token in the audit log");
}

// ----- 2. display tokens, stream tickets, stream caps -----------------------------------------

async fn display_tokens_tickets_and_stream_caps(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let options = ServiceOptions {
        args: ["--stream-ticket-secs", "2", "--max-streams-per-token", "1", "--max-streams-per-tenant", "2"]
            .map(String::from)
            .to_vec(),
        ..ServiceOptions::default()
    };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let base = service.base_url.clone();
    let t = tenant(&service).await;
    let now = Timestamp::now_utc();
    let body = json!({
        "name": "TV contest", "metric": "deals_won",
        "starts_at": now.plus_secs(-DAY).to_string(), "ends_at": now.plus_secs(DAY).to_string(),
        "participants": {"users": [t.member_id, t.manager_id]},
    });
    let contest = str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"]);
    let board = format!("/v1/contests/{contest}/leaderboard");
    let stream = format!("{board}/stream");
    let display = |user: String, token: String| {
        let api = api.clone();
        async move {
            let body = json!({"scope": "display", "label": "screen"});
            str_of(&api.post(&format!("/v1/users/{user}/tokens"), &token, &body).await.expect(201)["token"])
        }
    };
    let screen = display(t.member_id.clone(), t.member.clone()).await;

    // A display token reads the leaderboard, and nothing else.
    assert_eq!(api.get(&board, &screen).await.expect(200), api.get(&board, &t.member).await.expect(200));
    let refused = [
        ("GET", "/v1/me".to_owned(), None),
        ("GET", "/v1/users".to_owned(), None),
        ("GET", format!("/v1/users/{}", t.member_id), None),
        ("GET", format!("/v1/users/{}/tokens", t.member_id), None),
        ("POST", format!("/v1/users/{}/tokens", t.member_id), Some(json!({"scope": "display"}))),
        ("GET", "/v1/contests".to_owned(), None),
        ("GET", format!("/v1/contests/{contest}"), None),
        ("POST", format!("/v1/contests/{contest}/stream-tickets"), None),
        ("GET", "/v1/me/export".to_owned(), None),
        ("GET", "/v1/me/kpis?metric=deals_won&from=2025-01-01&to=2025-02-01".to_owned(), None),
    ];
    let tokens_before = api.get(&format!("/v1/users/{}/tokens", t.member_id), &t.member).await.expect(200).clone();
    for (method, path, body) in &refused {
        let body = body.as_ref().map(Json::to_string);
        let answer = api.send(method, path, Some(&screen), body.as_deref()).await;
        assert_eq!(answer.expect_error(403), "forbidden", "{method} {path}");
        assert!(answer.text.contains("display token"), "{}", answer.text);
    }
    let tokens_after = api.get(&format!("/v1/users/{}/tokens", t.member_id), &t.member).await.expect(200).clone();
    assert_eq!(tokens_before["tokens"].as_array().map(Vec::len), tokens_after["tokens"].as_array().map(Vec::len));

    // The stream with a display token in the URL: the standing, then names only. (Streams
    // here send a keep-alive every second, so that a closed one is noticed at once.)
    let stream_with = |query: &str| format!("{stream}?keep_alive_secs=1&{query}");
    let mut watching = Events::open(&base, &stream_with(&format!("access_token={screen}")), None).await;
    watching.next_event(Duration::from_secs(10)).await.expect("a standing").json("standing");
    let names = watching.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    let expected = json!({t.member_id.clone(): "Team Member", t.manager_id.clone(): "Team Manager"});
    assert_eq!(names, expected, "participant names, nothing else");
    assert!(!names.to_string().contains('@'), "no e-mail address");

    // A full token in a URL: 401 saying what to use instead (stream and TV page alike).
    let full = api.send("GET", &stream_with(&format!("access_token={}", t.manager)), None, None).await;
    assert_eq!(full.expect_error(401), "token_in_url");
    let message = str_of(&full.json["error"]["message"]);
    assert!(message.contains("display token") && message.contains("stream ticket"), "{message}");
    let (status, _, tv) = get_checked(&base, &format!("/tv/contests/{contest}?token={}", t.admin)).await;
    assert_eq!(status, 401);
    let body: Json = serde_json::from_str(&tv).expect("JSON");
    assert_eq!(body["error"]["code"], "token_in_url");
    assert_eq!(get_checked(&base, &format!("/tv/contests/{contest}?token={screen}")).await.0, 200);

    // Stream tickets: for whoever may see the contest, with a full token; one connection.
    let tickets = format!("/v1/contests/{contest}/stream-tickets");
    let outsider = t.add_user("Not Playing", "outsider@tokens.example", "member").await.1;
    assert_eq!(api.post_empty(&tickets, &outsider).await.expect_error(403), "forbidden");
    let missing = "/v1/contests/00000000-0000-4000-8000-000000000000/stream-tickets";
    assert_eq!(api.post_empty(missing, &t.manager).await.expect_error(404), "not_found");
    let issued = api.post_empty(&tickets, &t.manager).await.expect(201).clone();
    let left = rfc3339_secs(&issued["expires_at"]) - now_secs();
    assert!((0..=2).contains(&left), "valid for the configured 2 s: {issued}");
    let ticket = str_of(&issued["ticket"]);
    let with_ticket = stream_with(&format!("ticket={ticket}"));
    let mut by_ticket = Events::open(&base, &with_ticket, None).await;
    by_ticket.next_event(Duration::from_secs(10)).await.expect("a standing").json("standing");

    // Caps (one stream per token, two per tenant here): the display token has its stream,
    // the tenant its two.
    let second = api.send("GET", &stream_with(&format!("access_token={screen}")), None, None).await;
    assert_eq!(second.expect_error(429), "too_many_streams");
    assert_eq!(api.get(&stream_with(""), &t.admin).await.expect_error(429), "too_many_streams");

    // The ticket used again, while its connection is open and after: 401.
    assert_eq!(api.send("GET", &with_ticket, None, None).await.expect_error(401), "unauthorized");
    drop(by_ticket);
    assert_eq!(api.send("GET", &with_ticket, None, None).await.expect_error(401), "unauthorized");
    // Closing a stream frees its place: the header (full token) still works for API clients.
    let header_stream = eventually("a freed stream slot", Duration::from_secs(10), || async {
        let resp = reqwest::Client::new()
            .get(format!("{base}{}", stream_with("")))
            .bearer_auth(&t.admin)
            .send()
            .await
            .expect("answered");
        (resp.status() == 200).then_some(resp)
    })
    .await;
    drop(header_stream);
    drop(watching);

    // A ticket for another contest does not open this one.
    let body = json!({
        "name": "Other", "metric": "deals_won",
        "starts_at": now.plus_secs(-DAY).to_string(), "ends_at": now.plus_secs(DAY).to_string(),
        "participants": {"users": [t.member_id]},
    });
    let other_contest = str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"]);
    let other_tickets = format!("/v1/contests/{other_contest}/stream-tickets");
    let other_ticket = str_of(&api.post_empty(&other_tickets, &t.manager).await.expect(201)["ticket"]);
    let misused = stream_with(&format!("ticket={other_ticket}"));
    assert_eq!(api.send("GET", &misused, None, None).await.expect_error(401), "unauthorized");
    // An expired ticket (the configured lifetime is 2 s here; 60 s by default).
    let late = str_of(&api.post_empty(&tickets, &t.admin).await.expect(201)["ticket"]);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let late = stream_with(&format!("ticket={late}"));
    assert_eq!(api.send("GET", &late, None, None).await.expect_error(401), "unauthorized");
    // A revoked display token's stream is refused too.
    let screen_id = {
        let list = api.get(&format!("/v1/users/{}/tokens", t.member_id), &t.member).await.expect(200).clone();
        let screen_info = list["tokens"].as_array().expect("tokens").iter().find(|i| i["scope"] == "display").cloned();
        str_of(&screen_info.expect("the display token")["id"])
    };
    api.delete(&format!("/v1/users/{}/tokens/{screen_id}", t.member_id), &t.member).await.expect(204);
    let revoked = api.send("GET", &stream_with(&format!("access_token={screen}")), None, None).await;
    assert_eq!(revoked.expect_error(401), "unauthorized");
    assert_eq!(api.get(&board, &screen).await.expect_error(401), "unauthorized");
}

// ----- 3. failed authentications, the operator token --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_storm_is_limited_per_address_but_never_a_valid_token() {
    let db = TestDatabase::sqlite();
    let options = ServiceOptions {
        args: vec!["--auth-failures-per-minute".to_owned(), "5".to_owned()],
        ..ServiceOptions::default()
    };
    let service = Service::start(&db.url, &options).await;
    let api = service.api();
    let t = app::Tenant::create(&api, "Storm", "storm.example", "Europe/Paris", "EUR").await;
    // Five failures (bad tokens, a missing one) are 401s ...
    for bad in ["nope", "oneup_0123456789abcdef", "oneup_ffff", "Basic"] {
        assert_eq!(api.get("/v1/me", bad).await.expect_error(401), "unauthorized");
    }
    assert_eq!(api.send("GET", "/v1/me", None, None).await.expect_error(401), "unauthorized");
    // ... then the address is over its budget: 429 with Retry-After, for any failure.
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let resp = client.get(format!("{}/v1/me", service.base_url)).bearer_auth("oneup_guess").send().await.unwrap();
        assert_eq!(resp.status(), 429);
        let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Json = serde_json::from_str(&resp.text().await.unwrap()).expect("JSON");
        assert_eq!(body["error"]["code"], "too_many_failed_authentications");
    }
    assert_eq!(api.get("/v1/me", "nope").await.expect_error(429), "too_many_failed_authentications");
    // A valid token from the same address is never throttled.
    for _ in 0..10 {
        api.get("/v1/me", &t.admin).await.expect(200);
        api.get("/v1/me", &t.member).await.expect(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_short_operator_token() {
    let scratch = Scratch::new("oneup-short-operator");
    let output = std::process::Command::new(oneup_bin())
        .current_dir(scratch.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_remove("ONEUP_CONNECTORS_DIR")
        .env("DATABASE_URL", "sqlite://short.sqlite?mode=rwc")
        .env("ONEUP_MASTER_KEY", MASTER_KEY_HEX)
        .env("ONEUP_OPERATOR_TOKEN", "only-twenty-five-bytes-xx")
        .stdin(Stdio::null())
        .output()
        .expect("oneup runs");
    assert!(!output.status.success(), "serve must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ONEUP_OPERATOR_TOKEN") && stderr.contains("at least 32"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"), "it never listened");
    assert!(!stderr.contains("only-twenty-five-bytes-xx"), "the token is not echoed");
    assert!(!scratch.path().join("short.sqlite").exists(), "refused before touching the database");
}
