//! The engine through the running service: contests and their leaderboards, targets and
//! their progress, on both stores, over data synced from a fake Pipedrive by the real
//! component.
//!
//! Every expected figure is computed here from the fake's own deals (won, not deleted,
//! `won_time` inside the window, by `owner_id`), and the expected ranks by an independent
//! formulation of the documented rule: a participant's rank is one more than the number of
//! participants strictly ahead (a higher value, or the same value reached earlier, "reached"
//! being the instant of their last counting fact, and no fact at all counting as earliest).
//! Ties are built on purpose with the fake's mutation API in a window a year back, where
//! the generated data never reaches.

use std::collections::BTreeMap;
use std::time::Duration;

use oneup_fake_crm::pipedrive::{DealStatus, FakePipedrive, NewDeal};
use oneup_fake_crm::{Date, Timestamp};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-engine-token-7c41e0";

/// The tenants' zone: a fixed +05:30 all year, so that local midnights are easy to compute
/// here (daylight-saving changes are covered by the engine's unit tests).
const TIMEZONE: &str = "Asia/Kolkata";
const OFFSET_SECS: i64 = 5 * 3600 + 30 * 60;
const CURRENCY: &str = "GBP";

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

on_both_stores!(contests_and_targets_over_synced_data, bad_engine_input_is_refused_and_nothing_is_written);

// ----- helpers ---------------------------------------------------------------------------

fn str_of(v: &Json) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_owned()
}

/// The local date (in [`TIMEZONE`]) of an instant.
fn local_date(at: Timestamp) -> Date {
    at.plus_secs(OFFSET_SECS).date()
}

/// The instant a local date starts.
fn local_midnight(date: Date) -> Timestamp {
    date.start().plus_secs(-OFFSET_SECS)
}

/// `(year, month, day)` of a date.
fn ymd(date: Date) -> (i32, u32, u32) {
    let text = date.to_string();
    let mut parts = text.split('-').map(|p| p.parse::<i64>().expect("a date part"));
    let (y, m, d) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    (y as i32, m as u32, d as u32)
}

/// The first local day of the month `months` after (or before) the month of `date`.
fn month_start(date: Date, months: i32) -> Date {
    let (y, m, _) = ymd(date);
    let index = y * 12 + (m as i32 - 1) + months;
    Date::from_ymd(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1).expect("a month")
}

/// An RFC 3339 instant of the answer as a [`Timestamp`].
fn instant(v: &Json) -> Timestamp {
    let text = str_of(v);
    Timestamp::parse_rfc3339(&text).unwrap_or_else(|| panic!("not an RFC 3339 instant: {text}"))
}

/// A tenant set up through the API: an admin, a manager, two members (neither a CRM user)
/// and a user per CRM user, each with a token.
struct Tenant {
    api: Api,
    admin: String,
    manager: String,
    /// A member who takes part in the contests (with no CRM data: always zero).
    member_id: String,
    member: String,
    /// A member who takes part in nothing.
    outsider: String,
    /// CRM user id → (tenant user id, token).
    crm: BTreeMap<u64, (String, String)>,
}

impl Tenant {
    async fn create(api: &Api, name: &str, domain: &str) -> Self {
        let created = api
            .post(
                "/v1/tenants",
                OPERATOR_TOKEN,
                &json!({
                    "name": name,
                    "timezone": TIMEZONE,
                    "currency": CURRENCY,
                    "admin": {"name": "Tenant Admin", "email": format!("admin@{domain}")},
                }),
            )
            .await;
        let admin = str_of(&created.expect(201)["admin"]["token"]);
        let mut t = Tenant {
            api: api.clone(),
            admin,
            manager: String::new(),
            member_id: String::new(),
            member: String::new(),
            outsider: String::new(),
            crm: BTreeMap::new(),
        };
        t.manager = t.add_user("Team Manager", &format!("manager@{domain}"), "manager").await.1;
        (t.member_id, t.member) = t.add_user("Team Member", &format!("member@{domain}"), "member").await;
        t.outsider = t.add_user("Other Member", &format!("outsider@{domain}"), "member").await.1;
        t
    }

    async fn add_user(&self, name: &str, email: &str, role: &str) -> (String, String) {
        let created =
            self.api.post("/v1/users", &self.admin, &json!({"name": name, "email": email, "role": role})).await;
        let id = str_of(&created.expect(201)["id"]);
        let token = self.api.post_empty(&format!("/v1/users/{id}/tokens"), &self.admin).await;
        (id, str_of(&token.expect(201)["token"]))
    }

    /// A tenant user for every CRM user, matched by e-mail at the first sync.
    async fn add_crm_users(&mut self, fake: &FakePipedrive) {
        let users: Vec<(u64, String, String)> =
            fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
        for (crm_id, name, email) in users {
            let user = self.add_user(&name, &email, "member").await;
            self.crm.insert(crm_id, user);
        }
    }

    fn user(&self, crm_id: u64) -> &str {
        &self.crm[&crm_id].0
    }

    fn token(&self, crm_id: u64) -> &str {
        &self.crm[&crm_id].1
    }

    async fn enable_and_sync(&self, fake: &FakePipedrive) {
        self.api
            .put(
                "/v1/integrations/pipedrive",
                &self.admin,
                &json!({"config": {"base_url": fake.base_url()}, "secrets": {"api_token": TOKEN}}),
            )
            .await
            .expect(200);
        self.sync().await;
    }

    async fn sync(&self) {
        let run = self.api.post_empty("/v1/integrations/pipedrive/sync?wait=true", &self.admin).await;
        let run = run.expect(200);
        assert_eq!(run["status"], "succeeded", "{run}");
    }

    async fn team(&self, name: &str, members: &[&str]) -> String {
        let team = str_of(&self.api.post("/v1/teams", &self.admin, &json!({"name": name})).await.expect(201)["id"]);
        for m in members {
            self.api.send("PUT", &format!("/v1/teams/{team}/members/{m}"), Some(&self.admin), None).await.expect(204);
        }
        team
    }

    /// `POST /v1/contests` as the manager; the new id.
    async fn contest(&self, name: &str, metric: &str, window: (Timestamp, Timestamp), participants: Json) -> String {
        let body = json!({
            "name": name,
            "metric": metric,
            "format": "leaderboard",
            "starts_at": window.0.to_string(),
            "ends_at": window.1.to_string(),
            "participants": participants,
        });
        str_of(&self.api.post("/v1/contests", &self.manager, &body).await.expect(201)["id"])
    }

    /// `GET /v1/contests/{id}/leaderboard` as `token`.
    async fn leaderboard(&self, id: &str, token: &str) -> Answer {
        self.api.get(&format!("/v1/contests/{id}/leaderboard"), token).await
    }

    /// `POST /v1/targets` as the manager; the new id.
    async fn target(&self, body: Json) -> String {
        str_of(&self.api.post("/v1/targets", &self.manager, &body).await.expect(201)["id"])
    }

    async fn progress(&self, id: &str, token: &str) -> Answer {
        self.api.get(&format!("/v1/targets/{id}/progress"), token).await
    }
}

/// Per CRM user: won, not deleted deals with `won_time` in `[from, to)`: how many, and the
/// last `won_time` (the instant the count was reached).
fn won_between(fake: &FakePipedrive, from: Timestamp, to: Timestamp) -> BTreeMap<u64, (i64, Option<Timestamp>)> {
    fake.with(|crm| {
        let mut out: BTreeMap<u64, (i64, Option<Timestamp>)> = crm.users().iter().map(|u| (u.id, (0, None))).collect();
        for d in crm.deals() {
            let Some(won) = d.won_time else { continue };
            if d.status == DealStatus::Won && !d.is_deleted() && from <= won && won < to {
                let entry = out.entry(d.owner_id).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(Some(won));
            }
        }
        out
    })
}

/// The documented ranking, computed independently: one more than the number strictly
/// ahead. Input: id → (value, reached); output: id → (rank, value).
fn expected_ranks(rows: &BTreeMap<String, (i64, Option<Timestamp>)>) -> BTreeMap<String, (u64, i64)> {
    let ahead = |a: &(i64, Option<Timestamp>), b: &(i64, Option<Timestamp>)| {
        a.0 > b.0
            || (a.0 == b.0
                && match (a.1, b.1) {
                    (None, Some(_)) => true,
                    (Some(x), Some(y)) => x < y,
                    _ => false,
                })
    };
    rows.iter()
        .map(|(id, row)| {
            let rank = 1 + rows.values().filter(|other| ahead(other, row)).count() as u64;
            (id.clone(), (rank, row.0))
        })
        .collect()
}

/// A leaderboard answer as id → (rank, value), after checking its shape: every entry has
/// exactly `rank`, the id key and `value`, ranks ascend and values descend.
fn entries(body: &Json, key: &str) -> BTreeMap<String, (u64, i64)> {
    let list = body["entries"].as_array().unwrap_or_else(|| panic!("entries: {body}"));
    let mut out = BTreeMap::new();
    let mut last: Option<(u64, i64)> = None;
    for e in list {
        let keys: Vec<&str> = e.as_object().expect("an entry object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "rank, {key}, value: {e}");
        let (rank, value) = (e["rank"].as_u64().expect("rank"), e["value"].as_i64().expect("a count"));
        if let Some((r, v)) = last {
            assert!(r <= rank && v >= value, "best first: {body}");
        }
        last = Some((rank, value));
        assert!(out.insert(str_of(&e[key]), (rank, value)).is_none(), "one entry each: {body}");
    }
    out
}

/// What a participant list is worth: CRM users by their counts, others at zero.
fn rows_for(
    t: &Tenant,
    counts: &BTreeMap<u64, (i64, Option<Timestamp>)>,
    extra: &[&str],
) -> BTreeMap<String, (i64, Option<Timestamp>)> {
    let mut rows: BTreeMap<String, (i64, Option<Timestamp>)> =
        t.crm.iter().map(|(crm_id, (user, _))| (user.clone(), counts[crm_id])).collect();
    for id in extra {
        rows.insert(id.to_string(), (0, None));
    }
    rows
}

// ----- 1. contests and targets over synced data -------------------------------------------

async fn contests_and_targets_over_synced_data(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(611, 6, 300, 40, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Engine Sales", "engine.example").await;
    t.add_crm_users(&fake).await;
    let b = Tenant::create(&api, "Other Sales", "other.example").await;
    let crm_ids: Vec<u64> = t.crm.keys().copied().collect();
    let &[u0, u1, u2, u3, u4, u5] = crm_ids.as_slice() else { panic!("six CRM users") };

    // A past window, thirteen months back at a local month start, where the generated data
    // (the last 180 days) never reaches. Deals built for ties there: u0 3 deals; u1 and u2 2
    // each, their last at the same instant (a true tie); u3 and u4 1 each, u3 earlier (a
    // tie broken by time); u5 only just outside the window on both sides.
    let now = Timestamp::now_utc();
    let month = month_start(local_date(now), -13);
    let t0 = local_midnight(month);
    let window = (t0, t0.plus_secs(28 * DAY));
    let built: [(u64, i64); 11] = [
        (u0, DAY),
        (u0, 2 * DAY),
        (u0, 3 * DAY),
        (u1, DAY + HOUR),
        (u1, 5 * DAY),
        (u2, 2 * DAY + HOUR),
        (u2, 5 * DAY),
        (u3, 4 * DAY),
        (u4, 6 * DAY),
        (u5, -1),
        (u5, 28 * DAY),
    ];
    fake.with(|crm| {
        for (owner, at) in built {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_and_sync(&fake).await;

    // A live contest over the synced data: every CRM user and a member without data.
    let live_window = (now.plus_secs(-60 * DAY), now.plus_secs(DAY));
    let mut users: Vec<String> = t.crm.values().map(|(id, _)| id.clone()).collect();
    users.push(t.member_id.clone());
    let live = t.contest("Spring push", "deals_won", live_window, json!({"users": users})).await;
    let answer = t.leaderboard(&live, &t.manager).await;
    let body = answer.expect(200);
    assert_eq!(body["status"], "running", "{body}");
    assert_eq!(body["frozen_at"], Json::Null);
    assert_eq!(body["kind"], "count");
    let expected = expected_ranks(&rows_for(&t, &won_between(&fake, live_window.0, live_window.1), &[&t.member_id]));
    assert_eq!(entries(body, "user_id"), expected, "the live leaderboard is the fake's data ranked");
    assert!(expected.values().any(|(_, v)| *v > 0), "the window holds synced deals");
    assert_eq!(entries(body, "user_id")[&t.member_id].1, 0, "zeros are listed");

    // The tie contest: 1, 2, 2, 4, 5, then every zero sharing 6th.
    let ties = t.contest("Tie break", "deals_won", window, json!({"users": users})).await;
    let answer = t.leaderboard(&ties, &t.manager).await;
    let frozen = answer.expect(200).clone();
    let got = entries(&frozen, "user_id");
    let want: BTreeMap<String, (u64, i64)> = [
        (t.user(u0), (1, 3)),
        (t.user(u1), (2, 2)),
        (t.user(u2), (2, 2)),
        (t.user(u3), (4, 1)),
        (t.user(u4), (5, 1)),
        (t.user(u5), (6, 0)),
        (t.member_id.as_str(), (6, 0)),
    ]
    .into_iter()
    .map(|(id, v)| (id.to_owned(), v))
    .collect();
    assert_eq!(got, want, "{frozen}");
    assert_eq!(got, expected_ranks(&rows_for(&t, &won_between(&fake, window.0, window.1), &[&t.member_id])));
    // It ended: the first read froze it.
    assert_eq!(frozen["status"], "final", "{frozen}");
    assert!(frozen["frozen_at"].is_string(), "{frozen}");
    assert_eq!(instant(&frozen["contest"]["starts_at"]), window.0);
    assert_eq!(instant(&frozen["contest"]["ends_at"]), window.1);

    // A team contest over the same window: teams rank by the sum of their members, an
    // empty team at zero.
    let team_a = t.team("Closers", &[t.user(u0), t.user(u1)]).await;
    let team_b = t.team("Openers", &[t.user(u2), t.user(u3)]).await;
    let team_c = t.team("Newcomers", &[]).await;
    let teams = t.contest("Team cup", "deals_won", window, json!({"teams": [team_c, team_b, team_a]})).await;
    let answer = t.leaderboard(&teams, t.token(u2)).await;
    let body = answer.expect(200);
    let want: BTreeMap<String, (u64, i64)> =
        [(team_a.clone(), (1, 5)), (team_b.clone(), (2, 3)), (team_c.clone(), (3, 0))].into_iter().collect();
    assert_eq!(entries(body, "team_id"), want, "{body}");
    assert_eq!(body["contest"]["participants"], "teams");

    // Who may see what: participants and managers; not other members; nothing of another
    // tenant.
    t.leaderboard(&live, &t.member).await.expect(200);
    t.leaderboard(&live, t.token(u4)).await.expect(200);
    t.leaderboard(&live, &t.admin).await.expect(200);
    assert_eq!(t.leaderboard(&live, &t.outsider).await.expect_error(403), "forbidden");
    assert_eq!(t.leaderboard(&teams, t.token(u4)).await.expect_error(403), "forbidden");
    assert_eq!(t.leaderboard(&teams, &t.member).await.expect_error(403), "forbidden");
    assert_eq!(t.leaderboard(&live, &b.manager).await.expect_error(404), "not_found");
    assert_eq!(t.leaderboard(&live, &b.member).await.expect_error(404), "not_found");

    // The CRM changes: u5 wins a deal inside the ended window and one inside the live one.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        crm.add_deal(NewDeal::won(u5, 100.0, CURRENCY, t0.plus_secs(10 * DAY))).expect("a late deal");
        crm.add_deal(NewDeal::won(u5, 100.0, CURRENCY, now.plus_secs(-HOUR))).expect("a live deal");
    });
    t.sync().await;
    // The KPIs see the late deal ...
    let (from, to) = (local_date(window.0), local_date(window.1));
    let kpis = api.get(&format!("/v1/kpis?metric=deals_won&from={from}&to={to}"), &t.manager).await;
    let row = kpis.expect(200)["rows"].as_array().unwrap().iter().find(|r| r["user_id"] == t.user(u5)).cloned();
    assert_eq!(row.expect("u5's row")["value"], 1);
    // ... the finished contest does not: its result was frozen.
    let again = t.leaderboard(&ties, &t.manager).await;
    assert_eq!(again.expect(200), &frozen, "a frozen result never changes");
    // The live one follows the CRM.
    let body = t.leaderboard(&live, &t.manager).await.expect(200).clone();
    let expected = expected_ranks(&rows_for(&t, &won_between(&fake, live_window.0, live_window.1), &[&t.member_id]));
    assert_eq!(entries(&body, "user_id"), expected);

    // ----- targets ------------------------------------------------------------------------
    let month_end = local_midnight(month_start(month, 1));
    let day = |secs: i64| local_date(t0.plus_secs(secs)).to_string();

    // u0's three deals in that month reach a goal of 3 with the third.
    let by_count = t
        .target(json!({"assignee": {"user_id": t.user(u0)}, "metric": "deals_won", "period": "month",
            "goal": 3, "starts_on": day(2 * DAY)}))
        .await;
    let body = t.progress(&by_count, &t.manager).await.expect(200).clone();
    assert_eq!(body["value"], 3, "{body}");
    assert_eq!(body["goal"], 3);
    assert_eq!(body["ratio"], 1.0);
    assert_eq!(body["status"], "achieved");
    assert_eq!(instant(&body["achieved_at"]), t0.plus_secs(3 * DAY));
    assert_eq!(instant(&body["period"]["start"]), t0);
    assert_eq!(instant(&body["period"]["end"]), month_end);
    assert!(str_of(&body["period"]["start"]).ends_with("+05:30"), "in the tenant's offset: {body}");
    assert_eq!(body["period"]["first_day"], month.to_string());
    assert_eq!(body["period"]["kind"], "month");
    assert_eq!(body["pace"]["elapsed"], 1.0);
    assert_eq!(body["pace"]["on_track"], true);

    // Money: 3 × 100.00 GBP against 250.00, reached with the third deal.
    let by_money = t
        .target(json!({"assignee": {"user_id": t.user(u0)}, "metric": "revenue", "period": "month",
            "goal": "250.00", "starts_on": day(0)}))
        .await;
    let body = t.progress(&by_money, t.token(u0)).await.expect(200).clone();
    assert_eq!((body["value"].as_str(), body["goal"].as_str()), (Some("300.00"), Some("250.00")), "{body}");
    assert_eq!(body["status"], "achieved");
    assert_eq!(body["ratio"], 1.2);
    assert_eq!(instant(&body["achieved_at"]), t0.plus_secs(3 * DAY));
    assert_eq!(body["kind"], "money");
    assert_eq!(body["currency"], CURRENCY);

    // A team's quarter: the sum of its members (5 deals), far short of 100 once it ended.
    let team_target = t
        .target(json!({"assignee": {"team_id": team_a}, "metric": "deals_won", "period": "quarter",
            "goal": 100, "starts_on": day(0)}))
        .await;
    let body = t.progress(&team_target, t.token(u1)).await.expect(200).clone();
    assert_eq!(body["value"], 5, "{body}");
    assert_eq!(body["status"], "behind");
    assert_eq!(body["achieved_at"], Json::Null);
    assert_eq!(body["ratio"], 0.05);
    assert_eq!(body["pace"]["on_track"], false);
    assert_eq!(body["pace"]["expected"], 100.0);
    assert_eq!(body["assignee"]["team_id"], team_a);
    let quarter_start = instant(&body["period"]["start"]);
    assert!(quarter_start <= t0 && instant(&body["period"]["end"]) > window.1, "{body}");

    // Recurring from that month on: progress is over the current period (this local year).
    let yearly = t
        .target(json!({"assignee": {"user_id": t.user(u1)}, "metric": "deals_won", "period": "year",
            "goal": 1_000_000, "starts_on": day(0), "recurring": true}))
        .await;
    let body = t.progress(&yearly, &t.manager).await.expect(200).clone();
    let (year, _, _) = ymd(local_date(Timestamp::now_utc()));
    let year_start = local_midnight(Date::from_ymd(year, 1, 1).unwrap());
    let year_end = local_midnight(Date::from_ymd(year + 1, 1, 1).unwrap());
    assert_eq!((instant(&body["period"]["start"]), instant(&body["period"]["end"])), (year_start, year_end));
    assert_eq!(body["value"], won_between(&fake, year_start, year_end)[&u1].0, "{body}");
    assert_eq!(body["recurring"], true);
    assert_ne!(body["status"], "achieved");
    assert_eq!(body["achieved_at"], Json::Null);

    // Without `starts_on`: the period containing today.
    let today = t
        .target(json!({"assignee": {"user_id": t.user(u3)}, "metric": "deals_won", "period": "day", "goal": 50}))
        .await;
    let body = t.progress(&today, &t.manager).await.expect(200).clone();
    let today_local = local_date(Timestamp::now_utc());
    assert_eq!(body["period"]["first_day"], today_local.to_string(), "{body}");
    let (start, end) = (local_midnight(today_local), local_midnight(today_local).plus_secs(DAY));
    assert_eq!(body["value"], won_between(&fake, start, end)[&u3].0);

    // Who may see a target: managers, the assignee, members of the assignee team.
    t.progress(&by_count, t.token(u0)).await.expect(200);
    t.progress(&team_target, t.token(u0)).await.expect(200);
    assert_eq!(t.progress(&by_count, t.token(u1)).await.expect_error(403), "forbidden");
    assert_eq!(t.progress(&team_target, t.token(u4)).await.expect_error(403), "forbidden");
    assert_eq!(t.progress(&by_count, &t.outsider).await.expect_error(403), "forbidden");
    assert_eq!(t.progress(&by_count, &b.manager).await.expect_error(404), "not_found");

    // A retraction after the goal was reached takes the achievement back.
    let lost = fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let deal = crm
            .deals()
            .iter()
            .find(|d| d.owner_id == u0 && d.won_time == Some(t0.plus_secs(DAY)))
            .map(|d| d.id)
            .expect("u0's first built deal");
        crm.mark_deal_lost(deal).expect("the deal is lost");
        deal
    });
    assert!(lost > 0);
    t.sync().await;
    let body = eventually("the lost deal to leave the target", Duration::from_secs(30), || async {
        let body = t.progress(&by_count, &t.manager).await.expect(200).clone();
        (body["value"] == 2).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "behind", "{body}");
    assert_eq!(body["achieved_at"], Json::Null);
    // The frozen contest still shows what it showed at its end.
    assert_eq!(t.leaderboard(&ties, &t.manager).await.expect(200), &frozen);
}

// ----- 2. bad input -------------------------------------------------------------------------

/// Sends requests that must be refused and change nothing in the database.
struct Refusals<'a> {
    db: &'a TestDatabase,
    api: Api,
    snapshot: BTreeMap<String, Vec<String>>,
}

impl Refusals<'_> {
    async fn refresh(&mut self) {
        self.snapshot = self.db.dump().await;
    }

    /// `method path` with `body` as `token` answers `status` with the error body, and the
    /// database is exactly as in the snapshot. Returns the error code.
    async fn refused(&self, what: &str, method: &str, path: &str, token: &str, body: &str, status: u16) -> String {
        let body = if body.is_empty() { None } else { Some(body) };
        let answer = self.api.send(method, path, Some(token), body).await;
        assert_eq!(answer.status, status, "{what}: {method} {path} answered {}", answer.text);
        let code = answer.expect_error(status);
        let now = self.db.dump().await;
        assert_eq!(now, self.snapshot, "{what}: nothing is written");
        code
    }
}

async fn bad_engine_input_is_refused_and_nothing_is_written(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let a = Tenant::create(&api, "Tenant A", "a.example").await;
    let b = Tenant::create(&api, "Tenant B", "b.example").await;
    let a_team = a.team("Closers", &[a.member_id.as_str()]).await;
    let b_team = b.team("Closers", &[b.member_id.as_str()]).await;
    let b_contest = b
        .contest(
            "B's",
            "deals_won",
            (Timestamp::now_utc(), Timestamp::now_utc().plus_secs(DAY)),
            json!({"users": [b.member_id]}),
        )
        .await;
    let b_target =
        b.target(json!({"assignee": {"user_id": b.member_id}, "metric": "calls", "period": "week", "goal": 5})).await;

    let mut r = Refusals { db: &db, api: api.clone(), snapshot: BTreeMap::new() };
    r.refresh().await;
    let m = a.manager.as_str();
    let contest = |starts: &str, ends: &str, participants: Json| {
        json!({"name": "C", "metric": "deals_won", "format": "leaderboard", "starts_at": starts, "ends_at": ends,
            "participants": participants})
        .to_string()
    };
    let (s, e) = ("2025-06-01T00:00:00Z", "2025-07-01T00:00:00+01:00");
    let me = json!({"users": [a.member_id]});

    // Contests.
    let no_token = api.send("POST", "/v1/contests", None, Some(&contest(s, e, me.clone()))).await;
    assert_eq!(no_token.expect_error(401), "unauthorized");
    r.refused("member", "POST", "/v1/contests", &a.member, &contest(s, e, me.clone()), 403).await;
    r.refused("bad json", "POST", "/v1/contests", m, "{\"name\":", 400).await;
    let mut extra: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    extra["prize"] = json!("a car");
    r.refused("unknown field", "POST", "/v1/contests", m, &extra.to_string(), 400).await;
    let mut no_participants: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    no_participants.as_object_mut().unwrap().remove("participants");
    r.refused("participants missing", "POST", "/v1/contests", m, &no_participants.to_string(), 400).await;
    let both = json!({"users": [a.member_id], "teams": [a_team]});
    r.refused("users and teams", "POST", "/v1/contests", m, &contest(s, e, both), 400).await;
    r.refused("not a list", "POST", "/v1/contests", m, &contest(s, e, json!({"users": a.member_id})), 400).await;
    r.refused("not an instant", "POST", "/v1/contests", m, &contest("yesterday", e, me.clone()), 400).await;
    r.refused("no offset", "POST", "/v1/contests", m, &contest("2025-06-01T00:00:00", e, me.clone()), 400).await;
    r.refused("not an id", "POST", "/v1/contests", m, &contest(s, e, json!({"users": ["bob"]})), 400).await;
    let twice = json!({"users": [a.member_id, a.member_id]});
    r.refused("listed twice", "POST", "/v1/contests", m, &contest(s, e, twice), 400).await;
    let mut blank: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    blank["name"] = json!("  ");
    r.refused("blank name", "POST", "/v1/contests", m, &blank.to_string(), 400).await;
    let mut karma: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    karma["metric"] = json!("karma");
    r.refused("unknown metric", "POST", "/v1/contests", m, &karma.to_string(), 404).await;
    let theirs = json!({"users": [a.member_id, b.member_id]});
    r.refused("another tenant's user", "POST", "/v1/contests", m, &contest(s, e, theirs), 404).await;
    r.refused("another tenant's team", "POST", "/v1/contests", m, &contest(s, e, json!({"teams": [b_team]})), 404)
        .await;
    let nobody = json!({"users": ["00000000-0000-4000-8000-000000000000"]});
    r.refused("unknown user", "POST", "/v1/contests", m, &contest(s, e, nobody), 404).await;
    r.refused("end before start", "POST", "/v1/contests", m, &contest(e, s, me.clone()), 422).await;
    r.refused("empty window", "POST", "/v1/contests", m, &contest(s, s, me.clone()), 422).await;
    let code = r.refused("no participants", "POST", "/v1/contests", m, &contest(s, e, json!({"users": []})), 422).await;
    assert_eq!(code, "no_participants");
    let mut race: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    race["format"] = json!("race");
    let code = r.refused("format not built yet", "POST", "/v1/contests", m, &race.to_string(), 422).await;
    assert_eq!(code, "format_not_supported");

    // Leaderboards of unknown contests.
    let lb = |id: &str| format!("/v1/contests/{id}/leaderboard");
    r.refused("another tenant's contest", "GET", &lb(&b_contest), m, "", 404).await;
    r.refused("unknown contest", "GET", &lb("00000000-0000-4000-8000-000000000000"), m, "", 404).await;
    r.refused("not a contest id", "GET", &lb("42"), m, "", 404).await;

    // Targets.
    let target = |assignee: Json, metric: &str, period: &str, goal: Json| {
        json!({"assignee": assignee, "metric": metric, "period": period, "goal": goal, "starts_on": "2025-06-10"})
            .to_string()
    };
    let mine = json!({"user_id": a.member_id});
    let t = |goal: Json| target(mine.clone(), "deals_won", "month", goal);
    r.refused("member", "POST", "/v1/targets", &a.member, &t(json!(5)), 403).await;
    r.refused("bad json", "POST", "/v1/targets", m, "[", 400).await;
    r.refused("goal not a number", "POST", "/v1/targets", m, &t(json!("abc")), 400).await;
    r.refused("goal a boolean", "POST", "/v1/targets", m, &t(json!(true)), 400).await;
    r.refused("fraction of a count", "POST", "/v1/targets", m, &t(json!(2.5)), 400).await;
    let cents = target(mine.clone(), "revenue", "month", json!("10.005"));
    r.refused("below the currency's minor unit", "POST", "/v1/targets", m, &cents, 400).await;
    r.refused("bad period", "POST", "/v1/targets", m, &target(mine.clone(), "deals_won", "decade", json!(5)), 400)
        .await;
    let assignee = json!({"name": "Bob"});
    r.refused("bad assignee", "POST", "/v1/targets", m, &target(assignee, "deals_won", "month", json!(5)), 400).await;
    let bad_date = t(json!(5)).replace("2025-06-10", "2025-13-01");
    r.refused("bad date", "POST", "/v1/targets", m, &bad_date, 400).await;
    let mut extra: Json = serde_json::from_str(&t(json!(5))).unwrap();
    extra["stretch"] = json!(10);
    r.refused("unknown field", "POST", "/v1/targets", m, &extra.to_string(), 400).await;
    r.refused("unknown metric", "POST", "/v1/targets", m, &target(mine.clone(), "karma", "month", json!(5)), 404).await;
    let theirs = json!({"user_id": b.member_id});
    r.refused("another tenant's user", "POST", "/v1/targets", m, &target(theirs, "deals_won", "month", json!(5)), 404)
        .await;
    let their_team = json!({"team_id": b_team});
    let body = target(their_team, "deals_won", "month", json!(5));
    r.refused("another tenant's team", "POST", "/v1/targets", m, &body, 404).await;
    for goal in [json!(0), json!(-5), json!("-3")] {
        let code = r.refused("goal not above zero", "POST", "/v1/targets", m, &t(goal), 422).await;
        assert_eq!(code, "goal_not_positive");
    }
    let negative_money = target(mine.clone(), "revenue", "month", json!("-10.00"));
    r.refused("negative money", "POST", "/v1/targets", m, &negative_money, 422).await;

    // Overlaps: one target per assignee, metric and period kind at any time.
    a.target(serde_json::from_str(&t(json!(5))).unwrap()).await;
    r.refresh().await;
    let same_month = t(json!(7)).replace("2025-06-10", "2025-06-30");
    let code = r.refused("the same month", "POST", "/v1/targets", m, &same_month, 409).await;
    assert_eq!(code, "target_overlaps");
    let mut recurring: Json = serde_json::from_str(&t(json!(5)).replace("2025-06-10", "2025-01-15")).unwrap();
    recurring["recurring"] = json!(true);
    r.refused("recurring over it", "POST", "/v1/targets", m, &recurring.to_string(), 409).await;
    // Other months, other period kinds, other metrics and the team are free.
    a.target(serde_json::from_str(&t(json!(5)).replace("2025-06-10", "2025-07-01")).unwrap()).await;
    a.target(serde_json::from_str(&target(mine.clone(), "deals_won", "week", json!(2))).unwrap()).await;
    a.target(serde_json::from_str(&target(mine.clone(), "calls", "month", json!(20))).unwrap()).await;
    let team_target = target(json!({"team_id": a_team}), "deals_won", "month", json!(9));
    let team_target = a.target(serde_json::from_str(&team_target).unwrap()).await;
    // Recurring from August on is free; then nothing later may be added.
    let mut from_august: Json = serde_json::from_str(&t(json!(5)).replace("2025-06-10", "2025-08-01")).unwrap();
    from_august["recurring"] = json!(true);
    a.target(from_august).await;
    r.refresh().await;
    let later = t(json!(5)).replace("2025-06-10", "2031-02-01");
    r.refused("after a recurring one", "POST", "/v1/targets", m, &later, 409).await;

    // Progress of unknown targets.
    let pr = |id: &str| format!("/v1/targets/{id}/progress");
    r.refused("another tenant's target", "GET", &pr(&b_target), m, "", 404).await;
    r.refused("unknown target", "GET", &pr("00000000-0000-4000-8000-000000000000"), m, "", 404).await;
    r.refused("not a target id", "GET", &pr("x"), m, "", 404).await;
    r.refused("outsider", "GET", &pr(&team_target), &a.outsider, "", 403).await;
    a.progress(&team_target, &a.member).await.expect(200);
}
