//! Live leaderboards through the running service, on both stores: the server-sent event
//! stream of a contest follows the syncs of a fake Pipedrive (a new standing when the data
//! it ranks changes, nothing when other data changes), keeps the connection alive, ends
//! with the frozen result, keeps the leaderboard's access rules, and the office TV page is
//! self-contained.

use std::time::{Duration, Instant};

use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{NewActivity, NewDeal};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-live-token-51f0a2";
const DAY: i64 = 86_400;

/// How soon after a sync ends its push must arrive: the goal is under 1 s from the commit
/// (which precedes the end of the run), well inside the streams' 3 s poll of the store, so
/// only the change feed can meet it reliably.
const PUSH_WITHIN: Duration = Duration::from_millis(1_000);

on_both_stores!(live_leaderboard_follows_syncs, live_leaderboard_access_final_result_and_tv_page);

// ----- a small server-sent events client ---------------------------------------------------

/// One item of an event stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A comment line (`: text`), as keep-alives are.
    Comment(String),
    /// An event: its name, its data, its `retry:` hint in milliseconds.
    Event { name: String, data: String, retry: Option<u64> },
    /// The server ended the stream.
    End,
}

impl Item {
    /// The event's data as JSON, after checking its name.
    #[track_caller]
    pub(crate) fn json(&self, expected: &str) -> Json {
        match self {
            Item::Event { name, data, .. } if name == expected => {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("`{name}` data is not JSON ({e}): {data}"))
            }
            other => panic!("expected a `{expected}` event, got {other:?}"),
        }
    }
}

/// A stream read with `reqwest`'s chunks, split into items at blank lines.
pub(crate) struct Events {
    response: reqwest::Response,
    /// The stream's path: every event is checked against what the document says of it.
    path: String,
    buffer: String,
    ended: bool,
}

impl Events {
    /// Opens `path` with `token` as a bearer header (or none) and checks that the answer is
    /// an event stream.
    pub(crate) async fn open(base: &str, path: &str, token: Option<&str>) -> Events {
        let mut request = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the stream request is answered");
        assert_eq!(response.status(), 200, "the stream opens");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "content type {content_type}");
        Events { response, path: path.to_owned(), buffer: String::new(), ended: false }
    }

    /// The next item, or `None` if none arrives within `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let item = parse_block(block.trim_end_matches('\n'));
                if let Item::Event { name, data, .. } = &item
                    && let Err(drift) = oneup_tests::openapi::check_stream_event(&self.path, name, data)
                {
                    panic!("{drift}");
                }
                return Some(item);
            }
            if self.ended {
                return Some(Item::End);
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).expect("UTF-8 events")),
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(e)) => panic!("the stream broke: {e}"),
            }
        }
    }

    /// The next item that is not a keep-alive comment, or `None` within `timeout`.
    pub(crate) async fn next_event(&mut self, timeout: Duration) -> Option<Item> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Item::Comment(_) => continue,
                other => return Some(other),
            }
        }
    }
}

fn parse_block(block: &str) -> Item {
    let (mut name, mut data, mut retry, mut comment) = (String::from("message"), Vec::new(), None, None);
    for line in block.lines() {
        if let Some(text) = line.strip_prefix(':') {
            comment = Some(text.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_owned(),
            "data" => data.push(value.to_owned()),
            "retry" => retry = Some(value.parse().expect("a numeric retry")),
            other => panic!("unexpected field `{other}` in {block:?}"),
        }
    }
    match comment {
        Some(text) if data.is_empty() => Item::Comment(text),
        _ => Item::Event { name, data: data.join("\n"), retry },
    }
}

// ----- helpers -------------------------------------------------------------------------------

struct Setup {
    _db: TestDatabase,
    fake: oneup_fake_crm::pipedrive::FakePipedrive,
    service: Service,
    t: app::Tenant,
    /// Per CRM user, in CRM id order: (CRM id, tenant user id, name, token).
    crm: Vec<(u64, String, String, String)>,
}

async fn setup(backend: Backend, seed: u64) -> Option<Setup> {
    let db = TestDatabase::new(backend).await?;
    let fake = fake_pipedrive(seed, 3, 60, 20, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let t = app::Tenant::create(&service.api(), "Live Sales", "live.example", "Europe/Paris", "EUR").await;
    let users: Vec<(u64, String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    let mut crm = Vec::new();
    for (crm_id, name, email) in users {
        let (id, token) = t.add_user(&name, &email, "member").await;
        crm.push((crm_id, id, name, token));
    }
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;
    Some(Setup { _db: db, fake, service, t, crm })
}

impl Setup {
    async fn contest(&self, metric: &str, starts: Timestamp, ends: Timestamp, users: &[&str]) -> String {
        let body = json!({
            "name": format!("Live {metric}"), "metric": metric,
            "starts_at": starts.to_string(), "ends_at": ends.to_string(), "participants": {"users": users},
        });
        str_of(&self.t.api.post("/v1/contests", &self.t.manager, &body).await.expect(201)["id"])
    }

    async fn leaderboard(&self, id: &str) -> Json {
        self.t.api.get(&format!("/v1/contests/{id}/leaderboard"), &self.t.manager).await.expect(200).clone()
    }

    async fn stream(&self, id: &str, token: &str, keep_alive_secs: u64) -> Events {
        let path = format!("/v1/contests/{id}/leaderboard/stream?keep_alive_secs={keep_alive_secs}");
        Events::open(&self.service.base_url, &path, Some(token)).await
    }
}

/// `user_id → (rank, value)` of a standing.
fn ranks(standing: &Json) -> Vec<(String, u64, Json)> {
    let entries = standing["entries"].as_array().unwrap_or_else(|| panic!("no entries in {standing}"));
    entries.iter().map(|e| (str_of(&e["user_id"]), e["rank"].as_u64().expect("a rank"), e["value"].clone())).collect()
}

// ----- 1. the stream follows the syncs ---------------------------------------------------------

async fn live_leaderboard_follows_syncs(backend: Backend) {
    let Some(s) = setup(backend, 4_201).await else { return };
    let now = Timestamp::now_utc();
    let users: Vec<&str> = s.crm.iter().map(|(_, id, _, _)| id.as_str()).collect();
    let window = (now.plus_secs(-60 * DAY), now.plus_secs(DAY));
    let deals = s.contest("deals_won", window.0, window.1, &users).await;
    // A composite over deals and calls: calls concern it, unlike the deals contest.
    let points =
        json!({"slug": "points", "terms": [{"metric": "deals_won", "weight": 10}, {"metric": "calls", "weight": 1}]});
    s.t.api.post("/v1/metrics", &s.t.admin, &points).await.expect(201);
    let scored = s.contest("points", window.0, window.1, &users).await;

    // The first event is the leaderboard as GET answers it, with a retry hint; then names.
    let mut stream = s.stream(&deals, &s.t.manager, 1).await;
    let first = stream.next_event(Duration::from_secs(10)).await.expect("a first event");
    let Item::Event { retry, .. } = &first else { panic!("{first:?}") };
    assert!(retry.is_some_and(|ms| ms > 0), "the first event carries a retry hint: {first:?}");
    let before = first.json("standing");
    assert_eq!(before, s.leaderboard(&deals).await, "the first event is the current leaderboard");
    let names = stream.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    let expected: serde_json::Map<String, Json> =
        s.crm.iter().map(|(_, id, name, _)| (id.clone(), Json::String(name.clone()))).collect();
    assert_eq!(names, Json::Object(expected), "participant names");
    // The composite contest, watched by a participant (a member).
    let mut scored_stream = s.stream(&scored, &s.crm[1].3, 1).await;
    let scored_before = scored_stream.next_event(Duration::from_secs(10)).await.expect("first").json("standing");
    assert_eq!(scored_before, s.leaderboard(&scored).await);
    scored_stream.next_event(Duration::from_secs(5)).await.expect("names").json("names");

    // Keep-alive comments flow while nothing changes (asked for every second here).
    match stream.next(Duration::from_secs(4)).await {
        Some(Item::Comment(text)) => assert_eq!(text, "keep-alive"),
        other => panic!("expected a keep-alive comment, got {other:?}"),
    }

    // A sync that changes only calls: the deals contest pushes nothing, the composite does.
    let (first_crm, first_user, _, _) = s.crm[0].clone();
    s.fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        crm.add_activity(NewActivity::call(first_crm).done_at(Timestamp::now_utc().plus_secs(-60))).expect("a call");
    });
    s.t.sync_pipedrive().await;
    let synced = Instant::now();
    let pushed = scored_stream.next_event(Duration::from_secs(5)).await.expect("the composite contest pushes");
    let scored_after = pushed.json("standing");
    let latency = synced.elapsed();
    assert!(latency < PUSH_WITHIN, "the composite standing was pushed {latency:?} after the sync");
    assert_eq!(scored_after, s.leaderboard(&scored).await, "the pushed standing is the leaderboard now");
    let value_of = |standing: &Json, user: &str| {
        ranks(standing).into_iter().find(|(u, _, _)| u == user).map(|(_, _, v)| v.as_f64().expect("a score"))
    };
    assert_eq!(value_of(&scored_after, &first_user), value_of(&scored_before, &first_user).map(|v| v + 1.0));
    // The deals stream: keep-alives only, through more than a poll period.
    let quiet_until = Instant::now() + Duration::from_secs(5);
    while let Some(item) = stream.next(quiet_until.saturating_duration_since(Instant::now())).await {
        assert!(matches!(item, Item::Comment(_)), "a change to calls pushes nothing to a deals contest: {item:?}");
    }
    assert_eq!(s.leaderboard(&deals).await, before, "the deals leaderboard did not change");

    // A sync that changes the ranking: the last one wins thirty deals and leads.
    let last = ranks(&before).last().cloned().expect("a last entry");
    let (last_crm, ..) = s.crm.iter().find(|(_, id, _, _)| *id == last.0).cloned().expect("a CRM user");
    s.fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        for _ in 0..30 {
            crm.add_deal(NewDeal::won(last_crm, 100.0, "EUR", Timestamp::now_utc().plus_secs(-120))).expect("a deal");
        }
    });
    s.t.sync_pipedrive().await;
    let synced = Instant::now();
    let item = stream.next_event(Duration::from_secs(5)).await.expect("a new standing within seconds");
    let latency = synced.elapsed();
    let after = item.json("standing");
    assert!(latency < PUSH_WITHIN, "the standing was pushed {latency:?} after the sync");
    assert_eq!(after, s.leaderboard(&deals).await, "the pushed standing is the leaderboard now");
    let leader = &ranks(&after)[0];
    assert_eq!((leader.0.as_str(), leader.1), (last.0.as_str(), 1), "the former last leads: {after}");
    assert_eq!(leader.2.as_u64(), last.2.as_u64().map(|v| v + 30));
    // One push per change: nothing more follows.
    let quiet_until = Instant::now() + Duration::from_secs(4);
    while let Some(item) = stream.next(quiet_until.saturating_duration_since(Instant::now())).await {
        assert!(matches!(item, Item::Comment(_)), "an identical standing is not pushed again: {item:?}");
    }
}

// ----- 2. access, the final result, the TV page ----------------------------------------------

async fn live_leaderboard_access_final_result_and_tv_page(backend: Backend) {
    let Some(s) = setup(backend, 4_202).await else { return };
    let api = s.service.api();
    let now = Timestamp::now_utc();
    let users: Vec<&str> = s.crm.iter().map(|(_, id, _, _)| id.as_str()).chain([s.t.member_id.as_str()]).collect();
    let contest = s.contest("deals_won", now.plus_secs(-30 * DAY), now.plus_secs(DAY), &users).await;
    let path = format!("/v1/contests/{contest}/leaderboard/stream");

    // A participating member, with a display token as `access_token` (EventSource's way).
    let display = |user: String, token: String| {
        let api = api.clone();
        async move {
            let body = json!({"scope": "display", "label": "screen"});
            str_of(&api.post(&format!("/v1/users/{user}/tokens"), &token, &body).await.expect(201)["token"])
        }
    };
    let member_display = display(s.t.member_id.clone(), s.t.member.clone()).await;
    let query = format!("{path}?access_token={member_display}");
    let mut as_member = Events::open(&s.service.base_url, &query, None).await;
    let first = as_member.next_event(Duration::from_secs(10)).await.expect("a first event").json("standing");
    assert_eq!(first, s.leaderboard(&contest).await);

    // Refusals, each the documented error body.
    let (outsider_id, outsider) = s.t.add_user("Not Playing", "outsider@live.example", "member").await;
    assert_eq!(api.send("GET", &path, Some(&outsider), None).await.expect_error(403), "forbidden");
    let outsider_display = display(outsider_id, outsider.clone()).await;
    let query = format!("{path}?access_token={outsider_display}");
    assert_eq!(api.send("GET", &query, None, None).await.expect_error(403), "forbidden");
    let other = app::Tenant::create(&api, "Elsewhere", "elsewhere.example", "Europe/Paris", "EUR").await;
    assert_eq!(api.send("GET", &path, Some(&other.manager), None).await.expect_error(404), "not_found");
    assert_eq!(api.send("GET", &path, Some(&other.admin), None).await.expect_error(404), "not_found");
    assert_eq!(api.send("GET", &path, None, None).await.expect_error(401), "unauthorized");
    assert_eq!(
        api.send("GET", &format!("{path}?access_token=nope"), None, None).await.expect_error(401),
        "unauthorized"
    );
    let twice = format!("{path}?access_token={}", s.t.member);
    assert_eq!(api.send("GET", &twice, Some(&s.t.member), None).await.expect_error(400), "invalid_query");
    let bad = format!("{path}?keep_alive_secs=0");
    assert_eq!(api.send("GET", &bad, Some(&s.t.manager), None).await.expect_error(400), "invalid_query");
    let unknown = format!("{path}?token=x");
    assert_eq!(api.send("GET", &unknown, Some(&s.t.manager), None).await.expect_error(400), "invalid_query");
    let missing = "/v1/contests/00000000-0000-4000-8000-000000000000/leaderboard/stream";
    assert_eq!(api.send("GET", missing, Some(&s.t.manager), None).await.expect_error(404), "not_found");
    // `access_token` is taken by the stream route only.
    let elsewhere = format!("/v1/contests/{contest}/leaderboard?access_token={}", s.t.manager);
    assert_eq!(api.send("GET", &elsewhere, None, None).await.expect_error(401), "unauthorized");

    // A contest ending in a few seconds: the stream ends with its frozen result.
    let ending = s.contest("deals_won", now.plus_secs(-DAY), Timestamp::now_utc().plus_secs(3), &users).await;
    let mut stream = s.stream(&ending, &s.t.manager, 15).await;
    let running = stream.next_event(Duration::from_secs(10)).await.expect("a first event").json("standing");
    assert_eq!(running["status"], "running");
    stream.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    // The status changes, so a new standing comes first, then `final`, then the end.
    let changed = stream.next_event(Duration::from_secs(10)).await.expect("the final standing").json("standing");
    assert_eq!(changed["status"], "final", "{changed}");
    let last = stream.next_event(Duration::from_secs(5)).await.expect("a final event").json("final");
    assert_eq!(last, changed);
    assert_eq!(stream.next(Duration::from_secs(5)).await, Some(Item::End), "the stream ends");
    assert_eq!(last, s.leaderboard(&ending).await, "the final event is the frozen leaderboard");
    assert_eq!(running["entries"], last["entries"], "nothing changed meanwhile");
    // A frozen contest's stream: standing, names, final, end.
    let mut frozen = s.stream(&ending, &s.t.manager, 15).await;
    assert_eq!(frozen.next_event(Duration::from_secs(10)).await.expect("first").json("standing"), last);
    frozen.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    assert_eq!(frozen.next_event(Duration::from_secs(5)).await.expect("final").json("final"), last);
    assert_eq!(frozen.next(Duration::from_secs(5)).await, Some(Item::End));

    // A viewer whose access ends (the user is erased, their tokens with them) is cut off at
    // the next poll with an `error` event.
    let (leaver_id, leaver) = s.t.add_user("Leaving Soon", "leaver@live.example", "member").await;
    let with_leaver = s.contest("deals_won", now.plus_secs(-DAY), now.plus_secs(DAY), &[&leaver_id]).await;
    let mut watching = s.stream(&with_leaver, &leaver, 15).await;
    watching.next_event(Duration::from_secs(10)).await.expect("first").json("standing");
    watching.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    api.delete(&format!("/v1/users/{leaver_id}"), &s.t.admin).await.expect(204);
    let error = watching.next_event(Duration::from_secs(8)).await.expect("an error event").json("error");
    assert_eq!(error["error"]["code"], "unauthorized", "{error}");
    assert_eq!(watching.next(Duration::from_secs(5)).await, Some(Item::End), "the stream ends");

    // The TV page: self-contained, the token nowhere in it. A full token in its URL is
    // refused; a display token is the one to use.
    let base = s.service.base_url.clone();
    let (status, _, refused) = get_checked(&base, &format!("/tv/contests/{contest}?token={}", s.t.manager)).await;
    assert_eq!(status, 401);
    let body: Json = serde_json::from_str(&refused).expect("JSON");
    assert_eq!(body["error"]["code"], "token_in_url", "{body}");
    let secret = display(s.t.manager_id.clone(), s.t.manager.clone()).await;
    let (status, headers, html) = get_checked(&base, &format!("/tv/contests/{contest}?token={secret}")).await;
    assert_eq!(status, 200);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(header("content-type").starts_with("text/html"), "{}", header("content-type"));
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    assert!(!html.contains(&secret), "the token is not written into the page");
    for external in ["http://", "https://", "//cdn", "src=\"/", "href=\"/", "@import", "url("] {
        assert!(!html.contains(external), "the page refers to another resource ({external})");
    }
    assert!(!html.contains("<link") && !html.contains(" src="), "no external assets");
    assert!(html.contains("new EventSource(") && html.contains("leaderboard/stream?"));
    assert!(html.contains("\"access_token=\"") && html.contains("\"ticket=\""));
    assert!(html.contains("history.replaceState"), "the token leaves the address bar");
    let nonce = csp.split("'nonce-").nth(1).and_then(|n| n.split('\'').next()).expect("a nonce");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")), "the inline script runs under the policy");
    // Not a contest id: 404, as for any other unknown id.
    assert_eq!(get_checked(&base, "/tv/contests/not-an-id").await.0, 404);

    // Shutting down ends the open streams, so that the process can drain and exit.
    let mut s = s;
    as_member.next_event(Duration::from_secs(5)).await.expect("names").json("names");
    s.service.terminate();
    assert_eq!(as_member.next_event(Duration::from_secs(10)).await, Some(Item::End), "the stream ends");
    let status = s.service.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "the service exits cleanly: {status}");
}

// ----- 3. another node's commits ---------------------------------------------------------------

/// Two processes on one Postgres: a stream on node B sees the syncs node A runs. A's
/// commits never reach B's change feed, so B's poll of the store (every 3 s) must find
/// them: within two poll periods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_leaderboard_sees_other_nodes_commits() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let fake = fake_pipedrive(4_203, 3, 60, 20, TOKEN).await;
    let options = |node: &str| ServiceOptions { node_name: Some(node.to_owned()), ..ServiceOptions::default() };
    let a = Service::start(&db.url, &options("live-node-a")).await;
    let b = Service::start(&db.url, &options("live-node-b")).await;
    let t = app::Tenant::create(&a.api(), "Two Nodes", "nodes.example", "Europe/Paris", "EUR").await;
    let crm_users: Vec<(u64, String, String)> =
        fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
    let mut users = Vec::new();
    for (_, name, email) in &crm_users {
        users.push(t.add_user(name, email, "member").await.0);
    }
    t.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
    t.sync_pipedrive().await;
    let now = Timestamp::now_utc();
    let body = json!({
        "name": "Across nodes", "metric": "deals_won", "participants": {"users": users},
        "starts_at": now.plus_secs(-60 * DAY).to_string(), "ends_at": now.plus_secs(DAY).to_string(),
    });
    let contest = str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"]);
    let path = format!("/v1/contests/{contest}/leaderboard/stream");
    let mut stream = Events::open(&b.base_url, &path, Some(&t.manager)).await;
    stream.next_event(Duration::from_secs(10)).await.expect("first").json("standing");
    stream.next_event(Duration::from_secs(5)).await.expect("names").json("names");

    // Syncs asked of node A usually run there (it is woken at once; B looks every second).
    // Until one did, each sync adds a won deal and must reach B's stream.
    let mut seen_from_a = false;
    for attempt in 0..5 {
        fake.with(|crm| {
            crm.set_clock(Timestamp::now_utc());
            let owner = crm_users[attempt % crm_users.len()].0;
            crm.add_deal(NewDeal::won(owner, 10.0, "EUR", Timestamp::now_utc().plus_secs(-30))).expect("a deal");
        });
        let run = t.sync_pipedrive().await;
        let item = stream.next_event(Duration::from_secs(8)).await.expect("a new standing within two polls");
        let pushed = item.json("standing");
        let current = b.api().get(&format!("/v1/contests/{contest}/leaderboard"), &t.manager).await;
        assert_eq!(&pushed, current.expect(200), "B pushes the standing now");
        let run_id = str_of(&run["id"]);
        if a.logs().lines().any(|l| l.contains(&run_id) && l.contains("run succeeded")) {
            seen_from_a = true;
            break;
        }
    }
    assert!(seen_from_a, "no sync ran on node A in five tries");
}
