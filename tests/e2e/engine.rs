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
use oneup_tests::app::{self, str_of};
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

on_both_stores!(
    contests_and_targets_over_synced_data,
    bad_engine_input_is_refused_and_nothing_is_written,
    openapi_document_and_docs_page_are_served,
    kpis_by_day_and_composite_metrics_over_synced_data,
    contests_and_targets_are_listed_edited_and_deleted_by_role,
    race_head_to_head_and_team_vs_team_over_synced_data,
    incentives_award_points_once_and_revoke_on_retraction,
    percent_of_target_contests_over_synced_data,
);

// ----- helpers ---------------------------------------------------------------------------

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

/// A tenant of these tests: the shared [`app::Tenant`] (admin, manager, a member who takes
/// part in the contests, with no CRM data: always zero), plus a member who takes part in
/// nothing and a user per CRM user, each with a token.
struct Tenant {
    base: app::Tenant,
    /// A member who takes part in nothing.
    outsider: String,
    /// CRM user id → (tenant user id, token).
    crm: BTreeMap<u64, (String, String)>,
}

impl std::ops::Deref for Tenant {
    type Target = app::Tenant;

    fn deref(&self) -> &app::Tenant {
        &self.base
    }
}

impl Tenant {
    async fn create(api: &Api, name: &str, domain: &str) -> Self {
        let base = app::Tenant::create(api, name, domain, TIMEZONE, CURRENCY).await;
        let outsider = base.add_user("Other Member", &format!("outsider@{domain}"), "member").await.1;
        Tenant { base, outsider, crm: BTreeMap::new() }
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
        self.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
        self.sync().await;
    }

    async fn sync(&self) {
        self.sync_pipedrive().await;
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

/// A leaderboard answer without its `flags`.
fn without_flags(body: &Json) -> Json {
    let mut body = body.clone();
    body.as_object_mut().expect("an object").remove("flags");
    body
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
    // ... the finished contest does not: its result was frozen, and the change is flagged
    // beside it rather than changing it.
    let again = t.leaderboard(&ties, &t.manager).await.expect(200).clone();
    assert_eq!(frozen["flags"], json!([]), "nothing changed at the freeze: {frozen}");
    assert_eq!(without_flags(&again), without_flags(&frozen), "a frozen result never changes");
    assert_eq!(
        again["flags"],
        json!([{"user_id": t.user(u5), "frozen_value": 0, "current_value": 1, "reason": "changed_after_freeze"}]),
        "{again}"
    );
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
    // The frozen contest still shows what it showed at its end, and flags both changes.
    let again = t.leaderboard(&ties, &t.manager).await.expect(200).clone();
    assert_eq!(without_flags(&again), without_flags(&frozen));
    let flags: BTreeMap<String, (Json, Json)> = again["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| (str_of(&f["user_id"]), (f["frozen_value"].clone(), f["current_value"].clone())))
        .collect();
    let want: BTreeMap<String, (Json, Json)> =
        [(t.user(u0).to_owned(), (json!(3), json!(2))), (t.user(u5).to_owned(), (json!(0), json!(1)))].into();
    assert_eq!(flags, want, "{again}");
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
    let mut bingo: Json = serde_json::from_str(&contest(s, e, me.clone())).unwrap();
    bingo["format"] = json!("bingo");
    let code = r.refused("unknown format", "POST", "/v1/contests", m, &bingo.to_string(), 422).await;
    assert_eq!(code, "format_not_supported");

    // The formats' own rules.
    let with = |format: &str, goal: Option<Json>, participants: Json| {
        let mut body: Json = serde_json::from_str(&contest(s, e, participants)).unwrap();
        body["format"] = json!(format);
        if let Some(goal) = goal {
            body["goal"] = goal;
        }
        body.to_string()
    };
    let code = r.refused("race without a goal", "POST", "/v1/contests", m, &with("race", None, me.clone()), 422).await;
    assert_eq!(code, "goal_required");
    for goal in [json!(0), json!(-2), json!("-1")] {
        let body = with("race", Some(goal), me.clone());
        assert_eq!(
            r.refused("race goal not above zero", "POST", "/v1/contests", m, &body, 422).await,
            "goal_not_positive"
        );
    }
    for goal in [json!("abc"), json!(true), json!(1.5)] {
        r.refused("race goal not a whole count", "POST", "/v1/contests", m, &with("race", Some(goal), me.clone()), 400)
            .await;
    }
    let body = with("race", Some(json!(3)), json!({"users": []}));
    assert_eq!(r.refused("race without participants", "POST", "/v1/contests", m, &body, 422).await, "no_participants");
    let body = with("race", Some(json!(3)), json!({"users": [a.member_id, b.member_id]}));
    r.refused("race with another tenant's user", "POST", "/v1/contests", m, &body, 404).await;
    let body = with("leaderboard", Some(json!(3)), me.clone());
    assert_eq!(r.refused("goal outside a race", "POST", "/v1/contests", m, &body, 422).await, "goal_not_allowed");
    let (x, y) = (a.admin_id.clone(), a.manager_id.clone());
    for users in [json!([a.member_id]), json!([a.member_id, x, y])] {
        let body = with("head_to_head", None, json!({"users": users}));
        let code = r.refused("head to head of other than two", "POST", "/v1/contests", m, &body, 422).await;
        assert_eq!(code, "wrong_participant_count");
    }
    let body = with("head_to_head", None, json!({"users": [a.member_id, b.member_id]}));
    r.refused("head to head with another tenant's user", "POST", "/v1/contests", m, &body, 404).await;
    let body = with("head_to_head", None, json!({"teams": [a_team, b_team]}));
    r.refused("head to head with another tenant's team", "POST", "/v1/contests", m, &body, 404).await;
    let body = with("team_vs_team", None, json!({"users": [a.member_id, y]}));
    assert_eq!(r.refused("team vs team of users", "POST", "/v1/contests", m, &body, 422).await, "teams_required");
    let body = with("team_vs_team", None, json!({"teams": [a_team]}));
    let code = r.refused("team vs team of one team", "POST", "/v1/contests", m, &body, 422).await;
    assert_eq!(code, "wrong_participant_count");

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

    // Lists: paging parameters out of range.
    r.refresh().await;
    for list in ["/v1/contests", "/v1/targets"] {
        for bad in ["limit=0", "limit=201", "limit=-1", "limit=abc", "cursor=nope", "cursor=12-34", "offset=3"] {
            let code = r.refused(bad, "GET", &format!("{list}?{bad}"), m, "", 400).await;
            assert!(code == "invalid_query" || code == "invalid_cursor", "{list}?{bad}: {code}");
        }
    }
    // Edits of unknown or another tenant's contests and targets, and bad edits.
    let contest_id =
        a.contest("Mine", "deals_won", (Timestamp::now_utc(), Timestamp::now_utc().plus_secs(DAY)), me.clone()).await;
    let target_id = str_of(&a.api.get("/v1/targets?limit=1", m).await.expect(200)["targets"][0]["id"]);
    r.refresh().await;
    let c = |id: &str| format!("/v1/contests/{id}");
    let tp = |id: &str| format!("/v1/targets/{id}");
    r.refused("another tenant's contest", "PATCH", &c(&b_contest), m, r#"{"name":"x"}"#, 404).await;
    r.refused("another tenant's contest", "DELETE", &c(&b_contest), m, "", 404).await;
    r.refused("another tenant's target", "PATCH", &tp(&b_target), m, r#"{"goal":3}"#, 404).await;
    r.refused("another tenant's target", "DELETE", &tp(&b_target), m, "", 404).await;
    r.refused("member edits", "PATCH", &c(&contest_id), &a.member, r#"{"name":"x"}"#, 403).await;
    r.refused("member deletes", "DELETE", &c(&contest_id), &a.member, "", 403).await;
    r.refused("nothing to change", "PATCH", &c(&contest_id), m, "{}", 400).await;
    r.refused("unknown field", "PATCH", &c(&contest_id), m, r#"{"metric":"calls"}"#, 400).await;
    r.refused("not an instant", "PATCH", &c(&contest_id), m, r#"{"ends_at":"soon"}"#, 400).await;
    let code =
        r.refused("end before start", "PATCH", &c(&contest_id), m, r#"{"ends_at":"2000-01-01T00:00:00Z"}"#, 422).await;
    assert_eq!(code, "empty_window");
    r.refused("goal not a number", "PATCH", &tp(&target_id), m, r#"{"goal":"lots"}"#, 400).await;
    let code = r.refused("goal zero", "PATCH", &tp(&target_id), m, r#"{"goal":0}"#, 422).await;
    assert_eq!(code, "goal_not_positive");
    r.refused("member edits a target", "PATCH", &tp(&target_id), &a.member, r#"{"goal":3}"#, 403).await;

    // KPIs.
    let k = "/v1/kpis?metric=deals_won&from=2025-06-01&to=2025-07-01";
    r.refused("user filter without day", "GET", &format!("{k}&user_id={}", a.member_id), m, "", 400).await;
    r.refused(
        "user and team",
        "GET",
        &format!("{k}&group_by=day&user_id={}&team_id={a_team}", a.member_id),
        m,
        "",
        400,
    )
    .await;
    let long = "/v1/kpis?metric=deals_won&from=2000-01-01&to=2010-01-01&group_by=day";
    assert_eq!(r.refused("too many days", "GET", long, m, "", 422).await, "range_too_long");
    r.refused("bad group", "GET", &format!("{k}&group_by=month"), m, "", 400).await;

    // Composite metrics: nothing is written for any of these.
    let metric = |slug: &str, terms: Json| json!({"slug": slug, "terms": terms}).to_string();
    let admin = a.admin.as_str();
    let one = json!([{"metric": "deals_won", "weight": 10}]);
    r.refused("a manager", "POST", "/v1/metrics", m, &metric("points", one.clone()), 403).await;
    r.refused("bad json", "POST", "/v1/metrics", admin, "{", 400).await;
    r.refused("bad slug", "POST", "/v1/metrics", admin, &metric("Points!", one.clone()), 400).await;
    r.refused("unknown field", "POST", "/v1/metrics", admin, r#"{"slug":"p","terms":[],"unit":"x"}"#, 400).await;
    for weight in [json!("ten"), json!(true), json!(null), json!("1e2"), json!("0.0000001")] {
        let terms = json!([{"metric": "deals_won", "weight": weight}]);
        let code = r.refused("weight not a number", "POST", "/v1/metrics", admin, &metric("points", terms), 400).await;
        assert_eq!(code, "invalid_field");
    }
    let zero = json!([{"metric": "deals_won", "weight": 0}]);
    assert_eq!(
        r.refused("zero weight", "POST", "/v1/metrics", admin, &metric("points", zero), 422).await,
        "weight_zero"
    );
    let twice = json!([{"metric": "deals_won", "weight": 1}, {"metric": "deals_won", "weight": 2}]);
    r.refused("a metric twice", "POST", "/v1/metrics", admin, &metric("points", twice), 400).await;
    let unknown = json!([{"metric": "deals_won", "weight": 1}, {"metric": "karma", "weight": 2}]);
    r.refused("unknown metric", "POST", "/v1/metrics", admin, &metric("points", unknown), 404).await;
    let money = json!([{"metric": "revenue", "weight": 1}]);
    assert_eq!(
        r.refused("money term", "POST", "/v1/metrics", admin, &metric("points", money), 422).await,
        "money_term"
    );
    let itself = json!([{"metric": "calls", "weight": 1}, {"metric": "points", "weight": 1}]);
    assert_eq!(r.refused("itself", "POST", "/v1/metrics", admin, &metric("points", itself), 422).await, "metric_cycle");
    assert_eq!(
        r.refused("no terms", "POST", "/v1/metrics", admin, &metric("points", json!([])), 422).await,
        "no_terms"
    );
    let clash = r.refused("a connector's slug", "POST", "/v1/metrics", admin, &metric("calls", one.clone()), 409).await;
    assert_eq!(clash, "metric_exists");
    // One composite, then: its slug is taken, and it cannot be a term of another.
    a.api.post("/v1/metrics", admin, &serde_json::from_str(&metric("points", one.clone())).unwrap()).await.expect(201);
    r.refresh().await;
    assert_eq!(
        r.refused("taken", "POST", "/v1/metrics", admin, &metric("points", one.clone()), 409).await,
        "metric_exists"
    );
    let nested = json!([{"metric": "points", "weight": 2}]);
    assert_eq!(r.refused("nested", "POST", "/v1/metrics", admin, &metric("double", nested), 422).await, "metric_cycle");
    r.refused("delete as a manager", "DELETE", "/v1/metrics/points", m, "", 403).await;
    r.refused("delete a connector metric", "DELETE", "/v1/metrics/calls", admin, "", 404).await;
    r.refused("another tenant's metric", "DELETE", "/v1/metrics/points", &b.admin, "", 404).await;
    r.refused(
        "another tenant's metric in a KPI",
        "GET",
        "/v1/kpis?metric=points&from=2025-06-01&to=2025-07-01",
        &b.manager,
        "",
        404,
    )
    .await;
    let fraction = target(mine.clone(), "points", "month", json!("1.0000001")).replace("2025-06-10", "2024-06-10");
    r.refused("a score goal finer than a millionth", "POST", "/v1/targets", m, &fraction, 400).await;
}

// ----- 3. the OpenAPI document and the docs page ----------------------------------------------

async fn openapi_document_and_docs_page_are_served(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();

    // Anyone may read the document; it is the committed host/openapi.json, byte for byte.
    let doc = api.send("GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    let committed = std::fs::read_to_string(workspace_root().join("host").join("openapi.json")).expect("committed");
    assert!(doc.text == committed, "GET /openapi.json differs from host/openapi.json");
    assert_eq!(doc.json["openapi"], "3.1.0");
    let paths = doc.json["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/v1/tenants", "post"),
        ("/v1/kpis", "get"),
        ("/v1/metrics", "post"),
        ("/v1/contests", "get"),
        ("/v1/contests/{id}", "patch"),
        ("/v1/contests/{id}/leaderboard", "get"),
        ("/v1/targets/{id}", "delete"),
        ("/v1/targets/{id}/progress", "get"),
        ("/v1/integrations/{connector}/sync", "post"),
        ("/openapi.json", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is documented");
    }
    assert_eq!(doc.json["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    // The interactive page and every file it loads come from this server.
    let page = api.send("GET", "/docs/", None, None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.text.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or_default();
            assert!(!url.contains("://") && !url.starts_with("//"), "the docs page loads {url} from another host");
            assets.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in &assets {
        let answer = api.send("GET", &format!("/docs/{asset}"), None, None).await;
        assert_eq!(answer.status, 200, "/docs/{asset}");
        assert!(!answer.text.is_empty(), "/docs/{asset}");
    }
    let init = api.send("GET", "/docs/swagger-initializer.js", None, None).await;
    assert_eq!(init.status, 200);
    assert!(init.text.contains("/openapi.json"), "{}", init.text);
    // The bare path leads to the page.
    assert_eq!(api.send("GET", "/docs", None, None).await.status, 200);
}

// ----- 4. KPIs by day and composite metrics over synced data --------------------------------

/// A KPI answer's rows as key → value (JSON), in answer order.
fn kpi_rows(body: &Json, key: &str) -> Vec<(String, Json)> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("rows: {body}"))
        .iter()
        .map(|r| (str_of(&r[key]), r["value"].clone()))
        .collect()
}

async fn kpis_by_day_and_composite_metrics_over_synced_data(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(612, 4, 200, 60, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Day Sales", "day.example").await;
    t.add_crm_users(&fake).await;
    let b = Tenant::create(&api, "Other Sales", "other-day.example").await;
    let crm_ids: Vec<u64> = t.crm.keys().copied().collect();
    let &[u0, u1, u2, u3] = crm_ids.as_slice() else { panic!("four CRM users") };
    // Deals in a past month the generated data never reaches, on known local days, one a
    // second before the month starts.
    let month = month_start(local_date(Timestamp::now_utc()), -13);
    let t0 = local_midnight(month);
    let built: [(u64, i64); 7] =
        [(u0, HOUR), (u0, DAY), (u1, DAY + HOUR), (u1, 3 * DAY), (u2, 3 * DAY + 5), (u3, 6 * DAY - 1), (u3, -1)];
    fake.with(|crm| {
        for (owner, at) in built {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_and_sync(&fake).await;

    // By day: every local date of the range, oldest first, zeros included, each the fake's
    // won deals of that local day.
    let first = local_date(t0.plus_secs(-DAY));
    let days: Vec<Date> = (0..9).map(|i| local_date(local_midnight(first).plus_secs(i * DAY + HOUR))).collect();
    let end = local_date(local_midnight(days[8]).plus_secs(DAY + HOUR));
    let by_day = |user: Option<u64>| {
        days.iter()
            .map(|d| {
                let (from, to) = (local_midnight(*d), local_midnight(*d).plus_secs(DAY));
                let won = won_between(&fake, from, to);
                let n: i64 = match user {
                    Some(u) => won[&u].0,
                    None => won.values().map(|w| w.0).sum(),
                };
                (d.to_string(), json!(n))
            })
            .collect::<Vec<_>>()
    };
    let path = format!("/v1/kpis?metric=deals_won&from={}&to={end}&group_by=day", days[0]);
    let body = api.get(&path, &t.manager).await.expect(200).clone();
    assert_eq!(kpi_rows(&body, "date"), by_day(None), "{body}");
    assert_eq!(body["rows"][0]["value"], 1, "the deal a second before the month is on the day before: {body}");
    assert_eq!(body["rows"][1]["value"], 1, "{body}");
    assert_eq!(body["rows"][2]["value"], 2, "{body}");
    assert_eq!(body["rows"][3]["value"], 0, "zeros are listed: {body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(9));
    // One user's days, and a team's (the sum of its members).
    let one = api.get(&format!("{path}&user_id={}", t.user(u1)), &t.manager).await.expect(200).clone();
    assert_eq!(kpi_rows(&one, "date"), by_day(Some(u1)));
    let team = t.team("Pair", &[t.user(u0), t.user(u1)]).await;
    let pair = api.get(&format!("{path}&team_id={team}"), &t.manager).await.expect(200).clone();
    let want: Vec<(String, Json)> = by_day(Some(u0))
        .into_iter()
        .zip(by_day(Some(u1)))
        .map(|((d, a), (_, b))| (d, json!(a.as_i64().unwrap() + b.as_i64().unwrap())))
        .collect();
    assert_eq!(kpi_rows(&pair, "date"), want);
    // A member reads only their own figures, at /v1/me/kpis (the contract keeps /v1/kpis
    // for managers).
    assert_eq!(api.get(&path, t.token(u1)).await.expect_error(403), "forbidden");
    let my_path = path.replace("/v1/kpis", "/v1/me/kpis");
    let mine = api.get(&my_path, t.token(u1)).await.expect(200).clone();
    assert_eq!(kpi_rows(&mine, "date"), by_day(Some(u1)));
    let theirs = api.get(&format!("{my_path}&user_id={}", t.user(u0)), t.token(u1)).await;
    assert_eq!(theirs.expect_error(403), "forbidden");
    let own_users = api.get("/v1/me/kpis?metric=deals_won&from=2000-01-01&to=2100-01-01", t.token(u2)).await;
    let own_users = own_users.expect(200).clone();
    let totals = fake.with(|crm| crm.expected_totals());
    assert_eq!(kpi_rows(&own_users, "user_id"), vec![(t.user(u2).to_owned(), json!(totals[&u2].deals_won))]);
    assert_eq!(own_users.get("unattributed"), None, "members see no one else's figures: {own_users}");
    let teams = "/v1/me/kpis?metric=deals_won&from=2000-01-01&to=2100-01-01&group_by=team";
    assert_eq!(api.get(teams, t.token(u2)).await.expect_error(403), "forbidden");
    // Another tenant's user or team is unknown.
    assert_eq!(api.get(&format!("{path}&user_id={}", b.member_id), &t.manager).await.expect_error(404), "not_found");
    let their_team = b.team("Theirs", &[]).await;
    assert_eq!(api.get(&format!("{path}&team_id={their_team}"), &t.manager).await.expect_error(404), "not_found");

    // A composite metric: points = 10 × deals_won + 0.5 × calls, measured like any metric.
    let points = json!({"slug": "points", "name": "Points",
        "terms": [{"metric": "deals_won", "weight": 10}, {"metric": "calls", "weight": "0.5"}]});
    let created = api.post("/v1/metrics", &t.admin, &points).await;
    let created = created.expect(201);
    assert_eq!(created["kind"], "score", "{created}");
    assert_eq!(
        created["terms"],
        json!([{"metric": "deals_won", "weight": "10"}, {"metric": "calls", "weight": "0.5"}])
    );
    let listed = api.get("/v1/metrics", t.token(u0)).await.expect(200).clone();
    let slugs: Vec<String> = listed["metrics"].as_array().unwrap().iter().map(|m| str_of(&m["slug"])).collect();
    assert!(slugs.contains(&"points".to_owned()) && slugs.contains(&"deals_won".to_owned()), "{listed}");
    assert_eq!(api.get("/v1/metrics/points", &t.manager).await.expect(200)["source"], "composite");
    // Another tenant does not have it.
    assert_eq!(api.get("/v1/metrics/points", &b.manager).await.expect_error(404), "not_found");
    let kpis = api.get("/v1/kpis?metric=points&from=2000-01-01&to=2100-01-01", &t.manager).await.expect(200).clone();
    assert_eq!(kpis["kind"], "score");
    let got: BTreeMap<String, f64> =
        kpi_rows(&kpis, "user_id").into_iter().map(|(id, v)| (id, v.as_f64().expect("a number"))).collect();
    for (crm_id, (user, _)) in &t.crm {
        let want = 10.0 * totals[crm_id].deals_won as f64 + 0.5 * totals[crm_id].calls as f64;
        assert_eq!(got[user], want, "points of CRM user {crm_id}: {kpis}");
    }
    assert!(got.values().any(|v| v.fract() != 0.0) || totals.values().all(|t| t.calls % 2 == 0), "{kpis}");
    assert_eq!(got[&t.member_id], 0.0);
    // By day too: 10 points per deal in the built month.
    let day_points = api.get(&path.replace("deals_won", "points"), &t.manager).await.expect(200).clone();
    let want: Vec<(String, Json)> =
        by_day(None).into_iter().map(|(d, n)| (d, json!(n.as_i64().unwrap() * 10))).collect();
    assert_eq!(kpi_rows(&day_points, "date"), want);
    // A target of points: u0 has 20 in the month, goal 15 → achieved at the second deal.
    let target = t
        .target(json!({"assignee": {"user_id": t.user(u0)}, "metric": "points", "period": "month",
            "goal": "15", "starts_on": month.to_string()}))
        .await;
    let progress = t.progress(&target, t.token(u0)).await.expect(200).clone();
    assert_eq!((progress["value"].clone(), progress["goal"].clone()), (json!(20), json!(15)), "{progress}");
    assert_eq!(progress["status"], "achieved");
    assert_eq!(instant(&progress["achieved_at"]), t0.plus_secs(DAY));
    // A contest by points over the built days: u0 and u1 tie on value, u0 earlier.
    let window = (t0, t0.plus_secs(7 * DAY));
    let users: Vec<String> = t.crm.values().map(|(id, _)| id.clone()).collect();
    let contest = t.contest("Points cup", "points", window, json!({"users": users})).await;
    let board = t.leaderboard(&contest, &t.manager).await.expect(200).clone();
    let got = entries(&board, "user_id");
    let want: BTreeMap<String, (u64, i64)> =
        [(t.user(u0), (1, 20)), (t.user(u1), (2, 20)), (t.user(u2), (3, 10)), (t.user(u3), (4, 10))]
            .into_iter()
            .map(|(id, v)| (id.to_owned(), v))
            .collect();
    assert_eq!(got, want, "{board}");
    assert_eq!(board["kind"], "score");
    // In use: it cannot be deleted; unused, it can.
    assert_eq!(api.delete("/v1/metrics/points", &t.admin).await.expect_error(409), "metric_in_use");
    let spare = json!({"slug": "spare", "terms": [{"metric": "meetings", "weight": 1}]});
    api.post("/v1/metrics", &t.admin, &spare).await.expect(201);
    api.delete("/v1/metrics/spare", &t.admin).await.expect(204);
    assert_eq!(api.get("/v1/metrics/spare", &t.admin).await.expect_error(404), "not_found");
}

// ----- 5. listing, editing and deleting contests and targets ---------------------------------

async fn contests_and_targets_are_listed_edited_and_deleted_by_role(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let a = Tenant::create(&api, "Lister A", "lister-a.example").await;
    let b = Tenant::create(&api, "Lister B", "lister-b.example").await;
    let (other_id, other) = a.add_user("Third Member", "third@lister-a.example", "member").await;
    let team = a.team("Members", &[a.member_id.as_str()]).await;
    let now = Timestamp::now_utc();
    let soon = (now.plus_secs(DAY), now.plus_secs(2 * DAY));
    let past = (now.plus_secs(-3 * DAY), now.plus_secs(-2 * DAY));

    // Five contests: the member takes part in three (one through their team).
    let mut ids = Vec::new();
    for (i, participants) in [
        json!({"users": [a.member_id]}),
        json!({"users": [other_id]}),
        json!({"teams": [team]}),
        json!({"users": [other_id, a.member_id]}),
        json!({"users": [other_id]}),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(a.contest(&format!("Contest {i}"), "deals_won", soon, participants).await);
        // "Newest first" is by creation time (ties broken by id): keep the times distinct.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    b.contest("B's", "deals_won", soon, json!({"users": [b.member_id]})).await;
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    // Pages of two, newest first, until `next_cursor` is null.
    let page_ids = |body: &Json, key: &str| -> Vec<String> {
        body[key].as_array().unwrap_or_else(|| panic!("{body}")).iter().map(|c| str_of(&c["id"])).collect()
    };
    let mut seen = Vec::new();
    let mut path = "/v1/contests?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let body = api.get(&path, &a.manager).await.expect(200).clone();
        seen.extend(page_ids(&body, "contests"));
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/contests?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!((seen.clone(), pages), (newest_first.clone(), 3));
    let all = api.get("/v1/contests", &a.manager).await.expect(200).clone();
    assert_eq!(page_ids(&all, "contests"), newest_first);
    assert_eq!(all["next_cursor"], Json::Null);
    let first = &all["contests"][4];
    assert_eq!((first["name"].as_str(), first["participants"].as_str()), (Some("Contest 0"), Some("users")));
    assert_eq!((first["participant_count"].as_i64(), first["status"].as_str()), (Some(1), Some("scheduled")));
    // A member lists the contests they take part in; another tenant lists only its own.
    let mine = api.get("/v1/contests", &a.member).await.expect(200).clone();
    assert_eq!(page_ids(&mine, "contests"), vec![ids[3].clone(), ids[2].clone(), ids[0].clone()]);
    assert_eq!(page_ids(&api.get("/v1/contests", &b.manager).await.expect(200).clone(), "contests").len(), 1);

    // One contest: managers and participants; others 403; another tenant 404.
    let one = api.get(&format!("/v1/contests/{}", ids[2]), &a.member).await.expect(200).clone();
    assert_eq!(one["participants"], json!({"teams": [team]}));
    assert_eq!(instant(&one["starts_at"]), soon.0);
    assert_eq!(api.get(&format!("/v1/contests/{}", ids[1]), &a.member).await.expect_error(403), "forbidden");
    assert_eq!(api.get(&format!("/v1/contests/{}", ids[1]), &b.manager).await.expect_error(404), "not_found");

    // Edit: a new name and end.
    let later = now.plus_secs(3 * DAY);
    let patch = json!({"name": "Renamed", "ends_at": later.to_string()});
    let edited = api.patch(&format!("/v1/contests/{}", ids[0]), &a.manager, &patch).await.expect(200).clone();
    assert_eq!(edited["name"], "Renamed");
    assert_eq!(instant(&edited["ends_at"]), later);
    let board = a.leaderboard(&ids[0], &a.member).await.expect(200).clone();
    assert_eq!((board["contest"]["name"].as_str(), instant(&board["contest"]["ends_at"])), (Some("Renamed"), later));
    // A finished contest is final once read: no more edits.
    let done = a.contest("Done", "deals_won", past, json!({"users": [a.member_id]})).await;
    assert_eq!(a.leaderboard(&done, &a.manager).await.expect(200)["status"], "final");
    let rename = json!({"name": "Too late"});
    let code = api.patch(&format!("/v1/contests/{done}"), &a.manager, &rename).await.expect_error(409);
    assert_eq!(code, "contest_final");
    // Delete: gone, leaderboard included.
    assert_eq!(api.delete(&format!("/v1/contests/{}", ids[4]), &a.member).await.expect_error(403), "forbidden");
    assert_eq!(api.delete(&format!("/v1/contests/{}", ids[4]), &b.manager).await.expect_error(404), "not_found");
    api.delete(&format!("/v1/contests/{}", ids[4]), &a.manager).await.expect(204);
    assert_eq!(api.get(&format!("/v1/contests/{}", ids[4]), &a.manager).await.expect_error(404), "not_found");
    assert_eq!(a.leaderboard(&ids[4], &a.manager).await.expect_error(404), "not_found");

    // Targets: the member's own, their team's, someone else's.
    let own = a
        .target(json!({"assignee": {"user_id": a.member_id}, "metric": "deals_won", "period": "month", "goal": 5}))
        .await;
    let teams = a
        .target(json!({"assignee": {"team_id": team}, "metric": "revenue", "period": "quarter", "goal": "1000.50"}))
        .await;
    let others =
        a.target(json!({"assignee": {"user_id": other_id}, "metric": "calls", "period": "week", "goal": 9})).await;
    let all = api.get("/v1/targets?limit=200", &a.manager).await.expect(200).clone();
    assert_eq!(page_ids(&all, "targets"), vec![others.clone(), teams.clone(), own.clone()]);
    let page = api.get("/v1/targets?limit=1", &a.manager).await.expect(200).clone();
    assert_eq!(page_ids(&page, "targets"), vec![others.clone()]);
    let cursor = str_of(&page["next_cursor"]);
    let page = api.get(&format!("/v1/targets?limit=2&cursor={cursor}"), &a.manager).await.expect(200).clone();
    assert_eq!(page_ids(&page, "targets"), vec![teams.clone(), own.clone()]);
    assert_eq!(page["next_cursor"], Json::Null);
    let mine = api.get("/v1/targets", &a.member).await.expect(200).clone();
    assert_eq!(page_ids(&mine, "targets"), vec![teams.clone(), own.clone()]);
    assert_eq!(page_ids(&api.get("/v1/targets", &other).await.expect(200).clone(), "targets"), vec![others.clone()]);
    assert!(page_ids(&api.get("/v1/targets", &b.manager).await.expect(200).clone(), "targets").is_empty());
    let view = api.get(&format!("/v1/targets/{teams}"), &a.member).await.expect(200).clone();
    assert_eq!((view["goal"].as_str(), view["kind"].as_str()), (Some("1000.50"), Some("money")), "{view}");
    assert_eq!(view["assignee"], json!({"team_id": team}));
    assert_eq!(api.get(&format!("/v1/targets/{others}"), &a.member).await.expect_error(403), "forbidden");
    assert_eq!(api.get(&format!("/v1/targets/{own}"), &b.manager).await.expect_error(404), "not_found");
    // A new goal shows in the progress.
    let edited = api.patch(&format!("/v1/targets/{own}"), &a.manager, &json!({"goal": 8})).await.expect(200).clone();
    assert_eq!(edited["goal"], 8);
    assert_eq!(a.progress(&own, &a.member).await.expect(200)["goal"], 8);
    assert_eq!(
        api.patch(&format!("/v1/targets/{own}"), &a.member, &json!({"goal": 9})).await.expect_error(403),
        "forbidden"
    );
    api.delete(&format!("/v1/targets/{others}"), &a.manager).await.expect(204);
    assert_eq!(a.progress(&others, &a.manager).await.expect_error(404), "not_found");
    assert_eq!(api.delete(&format!("/v1/targets/{others}"), &a.manager).await.expect_error(404), "not_found");
}

// ----- 6. contest formats -------------------------------------------------------------------

/// A race's entries as `(rank, id, value, reached_goal_at)`, best first, after checking each
/// has exactly those four fields.
fn race_rows(body: &Json, key: &str) -> Vec<(u64, String, Json, Option<Timestamp>)> {
    let list = body["entries"].as_array().unwrap_or_else(|| panic!("entries: {body}"));
    list.iter()
        .map(|e| {
            assert_eq!(e.as_object().expect("an entry").len(), 4, "rank, {key}, value, reached_goal_at: {e}");
            let reached = (!e["reached_goal_at"].is_null()).then(|| instant(&e["reached_goal_at"]));
            (e["rank"].as_u64().expect("rank"), str_of(&e[key]), e["value"].clone(), reached)
        })
        .collect()
}

/// `POST /v1/contests` of any format as the manager; the new id.
async fn contest_of(
    t: &Tenant,
    format: &str,
    metric: &str,
    goal: Option<Json>,
    window: (Timestamp, Timestamp),
    participants: Json,
) -> String {
    let mut body = json!({"name": format!("A {format}"), "metric": metric, "format": format,
        "starts_at": window.0.to_string(), "ends_at": window.1.to_string(), "participants": participants});
    if let Some(goal) = goal {
        body["goal"] = goal;
    }
    str_of(&t.api.post("/v1/contests", &t.manager, &body).await.expect(201)["id"])
}

async fn race_head_to_head_and_team_vs_team_over_synced_data(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(733, 4, 60, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Format Sales", "formats.example").await;
    t.add_crm_users(&fake).await;
    let crm_ids: Vec<u64> = t.crm.keys().copied().collect();
    let &[u0, u1, u2, u3] = crm_ids.as_slice() else { panic!("four CRM users") };

    // A window thirteen months back, where the generated data never reaches: u0 wins 3 deals
    // (the 2nd on day 2), u1 2 deals (the 2nd on day 1, 2 a.m.: the first to reach 2), u2 one,
    // u3 none. Every deal is worth 100.00.
    let now = Timestamp::now_utc();
    let t0 = local_midnight(month_start(local_date(now), -13));
    let window = (t0, t0.plus_secs(28 * DAY));
    let built = [(u0, DAY), (u0, 2 * DAY), (u0, 3 * DAY), (u1, DAY + HOUR), (u1, DAY + 2 * HOUR), (u2, 4 * DAY)];
    fake.with(|crm| {
        for (owner, at) in built {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_and_sync(&fake).await;
    let users = json!({"users": [t.user(u0), t.user(u1), t.user(u2), t.user(u3)]});
    let (id0, id1, id2, id3) =
        (t.user(u0).to_owned(), t.user(u1).to_owned(), t.user(u2).to_owned(), t.user(u3).to_owned());

    // A race to 2 deals: u1 got there first though u0 has more; then by value.
    let race = contest_of(&t, "race", "deals_won", Some(json!(2)), window, users.clone()).await;
    let body = t.leaderboard(&race, &t.manager).await.expect(200).clone();
    assert_eq!(body["status"], "final", "{body}");
    assert_eq!(body["contest"]["format"], "race");
    assert_eq!(body["contest"]["goal"], 2);
    assert_eq!(body["winner"], id1.as_str(), "{body}");
    assert_eq!(body["flags"], json!([]));
    let want = vec![
        (1, id1.clone(), json!(2), Some(t0.plus_secs(DAY + 2 * HOUR))),
        (2, id0.clone(), json!(3), Some(t0.plus_secs(2 * DAY))),
        (3, id2.clone(), json!(1), None),
        (4, id3.clone(), json!(0), None),
    ];
    assert_eq!(race_rows(&body, "user_id"), want, "{body}");
    let frozen_race = body;

    // The same race in money: a goal of 150.00 is reached with the second deal.
    let money = contest_of(&t, "race", "revenue", Some(json!("150.00")), window, users.clone()).await;
    let body = t.leaderboard(&money, t.token(u2)).await.expect(200).clone();
    assert_eq!(body["contest"]["goal"], "150.00");
    assert_eq!(body["winner"], id1.as_str(), "{body}");
    let got: Vec<(u64, String, Json)> =
        race_rows(&body, "user_id").into_iter().map(|(r, id, v, _)| (r, id, v)).collect();
    let want: Vec<(u64, String, Json)> = vec![
        (1, id1.clone(), json!("200.00")),
        (2, id0.clone(), json!("300.00")),
        (3, id2.clone(), json!("100.00")),
        (4, id3.clone(), json!("0.00")),
    ];
    assert_eq!(got, want, "{body}");
    let view = api.get(&format!("/v1/contests/{money}"), &t.manager).await.expect(200).clone();
    assert_eq!((view["format"].as_str(), view["goal"].as_str()), (Some("race"), Some("150.00")), "{view}");

    // A running race is won as soon as someone reaches the goal; one nobody reached yet has
    // no winner.
    let open = (t0, now.plus_secs(DAY));
    let running = contest_of(&t, "race", "deals_won", Some(json!(2)), open, users.clone()).await;
    let body = t.leaderboard(&running, &t.manager).await.expect(200).clone();
    assert_eq!((body["status"].as_str(), body["winner"].as_str()), (Some("running"), Some(id1.as_str())), "{body}");
    assert_eq!(race_rows(&body, "user_id")[0].3, Some(t0.plus_secs(DAY + 2 * HOUR)));
    let far = contest_of(&t, "race", "deals_won", Some(json!(1_000_000)), open, users.clone()).await;
    let body = t.leaderboard(&far, &t.manager).await.expect(200).clone();
    assert_eq!(body["winner"], Json::Null, "{body}");
    assert!(race_rows(&body, "user_id").iter().all(|r| r.3.is_none()), "{body}");

    // Head to head of two users: by value; won once final.
    let duel = contest_of(&t, "head_to_head", "deals_won", None, window, json!({"users": [id1, id0]})).await;
    let body = t.leaderboard(&duel, &t.manager).await.expect(200).clone();
    let want: BTreeMap<String, (u64, i64)> = [(id0.clone(), (1, 3)), (id1.clone(), (2, 2))].into();
    assert_eq!(entries(&body, "user_id"), want, "{body}");
    assert_eq!((body["winner"].as_str(), body["contest"]["goal"].clone()), (Some(id0.as_str()), Json::Null));
    let live_duel = contest_of(&t, "head_to_head", "deals_won", None, open, json!({"users": [id1, id0]})).await;
    let body = t.leaderboard(&live_duel, &t.manager).await.expect(200).clone();
    assert_eq!((body["status"].as_str(), &body["winner"]), (Some("running"), &Json::Null), "undecided while running");

    // Teams: A = u0 (3, the third on day 3), B = u1 + u2 (3, the third on day 4): equal, A
    // reached it earlier. An empty team at zero.
    let team_a = t.team("Alpha", &[&id0]).await;
    let team_b = t.team("Beta", &[&id1, &id2]).await;
    let team_c = t.team("Gamma", &[]).await;
    let teams_duel =
        contest_of(&t, "head_to_head", "deals_won", None, window, json!({"teams": [team_b, team_a]})).await;
    let body = t.leaderboard(&teams_duel, t.token(u2)).await.expect(200).clone();
    let want: BTreeMap<String, (u64, i64)> = [(team_a.clone(), (1, 3)), (team_b.clone(), (2, 3))].into();
    assert_eq!(entries(&body, "team_id"), want, "{body}");
    assert_eq!(body["winner"], team_a.as_str());
    assert_eq!(t.leaderboard(&teams_duel, t.token(u3)).await.expect_error(403), "forbidden");
    let cup =
        contest_of(&t, "team_vs_team", "deals_won", None, window, json!({"teams": [team_c, team_b, team_a]})).await;
    let body = t.leaderboard(&cup, &t.manager).await.expect(200).clone();
    let want: BTreeMap<String, (u64, i64)> =
        [(team_a.clone(), (1, 3)), (team_b.clone(), (2, 3)), (team_c.clone(), (3, 0))].into();
    assert_eq!(entries(&body, "team_id"), want, "{body}");
    assert_eq!(
        (body["contest"]["format"].as_str(), body["winner"].as_str()),
        (Some("team_vs_team"), Some(team_a.as_str()))
    );

    // u1 loses a deal after the freeze: the race's result stands, flagged.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let deal = crm
            .deals()
            .iter()
            .find(|d| d.owner_id == u1 && d.won_time == Some(t0.plus_secs(DAY + HOUR)))
            .map(|d| d.id)
            .expect("u1's first deal");
        crm.mark_deal_lost(deal).expect("the deal is lost");
    });
    t.sync().await;
    let body = eventually("the lost deal to be flagged", Duration::from_secs(30), || async {
        let body = t.leaderboard(&race, &t.manager).await.expect(200).clone();
        (body["flags"] != json!([])).then_some(body)
    })
    .await;
    assert_eq!(without_flags(&body), without_flags(&frozen_race), "the frozen race does not change");
    assert_eq!(
        body["flags"],
        json!([{"user_id": id1, "frozen_value": 2, "current_value": 1, "reason": "changed_after_freeze"}]),
        "{body}"
    );
    // The running race follows the facts: u0 is first to 2 now.
    let body = t.leaderboard(&running, &t.manager).await.expect(200).clone();
    assert_eq!(body["winner"], id0.as_str(), "{body}");
    assert_eq!(body["flags"], json!([]));
}

// ----- 7. incentives and points -------------------------------------------------------------

/// A points answer as (balance, [(points, reason, source id)]) after following every page
/// of `limit`; checks every entry is listed once.
async fn points(api: &Api, path: &str, token: &str, limit: u32) -> (i64, Vec<(i64, String, String)>) {
    let mut url = format!("{path}?limit={limit}");
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut balance = None;
    loop {
        let body = api.get(&url, token).await.expect(200).clone();
        let b = body["balance"].as_i64().expect("balance");
        assert_eq!(*balance.get_or_insert(b), b, "one balance across pages");
        let entries = body["entries"].as_array().expect("entries");
        assert!(entries.len() <= limit as usize, "{body}");
        for e in entries {
            assert!(seen.insert(str_of(&e["id"])), "listed once: {body}");
            let source = if e["target_id"].is_null() { str_of(&e["contest_id"]) } else { str_of(&e["target_id"]) };
            out.push((e["points"].as_i64().expect("points"), str_of(&e["reason"]), source));
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => url = format!("{path}?limit={limit}&cursor={cursor}"),
            None => break,
        }
    }
    out.sort();
    (balance.unwrap_or(0), out)
}

async fn incentives_award_points_once_and_revoke_on_retraction(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(919, 4, 60, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Reward Sales", "rewards.example").await;
    t.add_crm_users(&fake).await;
    let b = Tenant::create(&api, "Other Sales", "other-rewards.example").await;
    let crm_ids: Vec<u64> = t.crm.keys().copied().collect();
    let &[u0, u1, u2, u3] = crm_ids.as_slice() else { panic!("four CRM users") };

    // Thirteen months back: u0 3 deals, u1 2, u2 1, u3 none.
    let now = Timestamp::now_utc();
    let month = month_start(local_date(now), -13);
    let t0 = local_midnight(month);
    let window = (t0, t0.plus_secs(28 * DAY));
    let built = [(u0, DAY), (u0, 2 * DAY), (u0, 3 * DAY), (u1, DAY + HOUR), (u1, DAY + 2 * HOUR), (u2, 4 * DAY)];
    fake.with(|crm| {
        for (owner, at) in built {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_and_sync(&fake).await;
    let (id0, id1, id2, id3) =
        (t.user(u0).to_owned(), t.user(u1).to_owned(), t.user(u2).to_owned(), t.user(u3).to_owned());
    let contest = t.contest("Podium", "deals_won", window, json!({"users": [id0, id1, id2, id3]})).await;
    let day = |secs: i64| local_date(t0.plus_secs(secs)).to_string();
    let target = t
        .target(json!({"assignee": {"user_id": id0}, "metric": "deals_won", "period": "month", "goal": 3,
            "starts_on": day(0)}))
        .await;
    let team = t.team("Pair", &[&id1, &id2]).await;
    let team_target = t
        .target(json!({"assignee": {"team_id": team}, "metric": "deals_won", "period": "month", "goal": 3,
            "starts_on": day(0)}))
        .await;
    let incentive = |body: Json| {
        let api = api.clone();
        let token = t.manager.clone();
        async move { str_of(&api.post("/v1/incentives", &token, &body).await.expect(201)["id"]) }
    };
    incentive(json!({"contest_id": contest, "places": 2, "points": 50, "label": "Podium dinner"})).await;
    incentive(json!({"contest_id": contest, "places": 3, "min_value": 2, "points": 5})).await;
    incentive(json!({"target_id": target, "points": 100, "label": "Goal bonus"})).await;
    incentive(json!({"target_id": target, "tier_percent": 150, "points": 30, "label": "Stretch"})).await;
    incentive(json!({"target_id": team_target, "points": 10})).await;
    // Listed newest first, page by page, for managers only.
    let mut listed = Vec::new();
    let mut url = "/v1/incentives?limit=2".to_owned();
    loop {
        let page = api.get(&url, &t.manager).await.expect(200).clone();
        listed.extend(page["incentives"].as_array().expect("incentives").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("/v1/incentives?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // Newest first (instants may be equal within a millisecond: compared as instants).
    let created: Vec<Timestamp> = listed.iter().map(|i| instant(&i["created_at"])).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{listed:?}");
    let by_points: BTreeMap<i64, &Json> = listed.iter().map(|i| (i["points"].as_i64().unwrap(), i)).collect();
    let summary: Vec<(i64, Json, Json, Json, Json)> = by_points
        .iter()
        .map(|(p, i)| (*p, i["label"].clone(), i["places"].clone(), i["min_value"].clone(), i["tier_percent"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (5, Json::Null, json!(3), json!(2), Json::Null),
            (10, Json::Null, Json::Null, Json::Null, json!(100)),
            (30, json!("Stretch"), Json::Null, Json::Null, json!(150)),
            (50, json!("Podium dinner"), json!(2), Json::Null, Json::Null),
            (100, json!("Goal bonus"), Json::Null, Json::Null, json!(100)),
        ],
        "{listed:?}"
    );
    assert_eq!(by_points[&50]["contest_id"], contest.as_str());
    assert_eq!(by_points[&100]["target_id"], target.as_str());
    assert_eq!(api.get("/v1/incentives", t.token(u0)).await.expect_error(403), "forbidden");
    assert_eq!(api.get("/v1/incentives", &b.manager).await.expect(200)["incentives"], json!([]));

    // Nobody has read anything: the target's awards were made when its incentives were
    // created, the contest's when the freezing tick froze it (within about a second of its
    // incentives' creation, its end being long past). u0: 2nd place is within 2 places
    // (50), a value of 3 ≥ 2 (5), the target (100), not the 150 % tier.
    let p0 = eventually("the contest to be frozen and awarded", Duration::from_secs(10), || async {
        let p = points(&api, "/v1/me/points", t.token(u0), 50).await;
        (p.0 == 155).then_some(p)
    })
    .await;
    let mut want = vec![
        (5, "awarded".to_owned(), contest.clone()),
        (50, "awarded".to_owned(), contest.clone()),
        (100, "awarded".to_owned(), target.clone()),
    ];
    want.sort();
    assert_eq!(p0, (155, want.clone()));
    // Read again, and page by page: awarded once.
    assert_eq!(points(&api, &format!("/v1/users/{id0}/points"), &t.manager, 1).await, (155, want));
    assert_eq!(points(&api, "/v1/me/points", t.token(u0), 2).await.0, 155);
    // u1: 2nd (50), 2 ≥ 2 (5), the team's target (10); u2: 3rd with 1 < 2, the team (10).
    let mut want1 = vec![
        (5, "awarded".to_owned(), contest.clone()),
        (10, "awarded".to_owned(), team_target.clone()),
        (50, "awarded".to_owned(), contest.clone()),
    ];
    want1.sort();
    assert_eq!(points(&api, &format!("/v1/users/{id1}/points"), &t.admin, 50).await, (65, want1));
    assert_eq!(
        points(&api, &format!("/v1/users/{id2}/points"), t.token(u2), 50).await,
        (10, vec![(10, "awarded".to_owned(), team_target.clone())])
    );
    assert_eq!(points(&api, "/v1/me/points", t.token(u3), 50).await, (0, vec![]));
    let one = api.get("/v1/me/points?limit=1", t.token(u0)).await.expect(200).clone();
    let entry = &one["entries"][0];
    assert!(entry["at"].is_string() && entry["incentive_id"].is_string(), "{one}");
    // Who may see whose points.
    let their = format!("/v1/users/{id0}/points");
    assert_eq!(api.get(&their, t.token(u3)).await.expect_error(403), "forbidden");
    assert_eq!(api.get(&their, &b.manager).await.expect_error(404), "not_found");
    assert_eq!(api.get("/v1/me/points?limit=0", t.token(u0)).await.expect_error(400), "invalid_query");
    assert_eq!(api.get("/v1/me/points?cursor=zz", t.token(u0)).await.expect_error(400), "invalid_cursor");

    // u0 loses a deal: the target is no longer achieved, its award is revoked; the contest's
    // frozen result stands (flagged), so its awards stay.
    fake.with(|crm| {
        crm.set_clock(Timestamp::now_utc());
        let deal = crm
            .deals()
            .iter()
            .find(|d| d.owner_id == u0 && d.won_time == Some(t0.plus_secs(DAY)))
            .map(|d| d.id)
            .expect("u0's first deal");
        crm.mark_deal_lost(deal).expect("the deal is lost");
    });
    t.sync().await;
    let after = eventually("the award to be revoked", Duration::from_secs(30), || async {
        let p = points(&api, "/v1/me/points", t.token(u0), 50).await;
        (p.0 == 55).then_some(p)
    })
    .await;
    assert!(after.1.contains(&(-100, "revoked".to_owned(), target.clone())), "{after:?}");
    assert_eq!(after.1.len(), 4, "three awards and one revocation: {after:?}");
    assert_eq!(points(&api, "/v1/me/points", t.token(u0), 50).await, after, "revoked once");
    let board = t.leaderboard(&contest, &t.manager).await.expect(200).clone();
    assert_eq!(board["flags"][0]["user_id"], id0.as_str(), "{board}");
    let progress = t.progress(&target, &t.manager).await.expect(200).clone();
    assert_eq!(progress["value"], 2, "{progress}");

    // Bad input: refused, nothing written.
    let mut r = Refusals { db: &db, api: api.clone(), snapshot: BTreeMap::new() };
    r.refresh().await;
    let m = t.manager.as_str();
    let post = |what: &'static str, body: Json, status: u16| {
        let r = &r;
        async move { r.refused(what, "POST", "/v1/incentives", m, &body.to_string(), status).await }
    };
    let c = contest.as_str();
    assert_eq!(
        r.refused(
            "member",
            "POST",
            "/v1/incentives",
            t.token(u0),
            &json!({"contest_id": c, "points": 1}).to_string(),
            403
        )
        .await,
        "forbidden"
    );
    assert_eq!(post("no source", json!({"points": 1}), 422).await, "one_source");
    assert_eq!(
        post("two sources", json!({"points": 1, "contest_id": c, "target_id": target}), 422).await,
        "one_source"
    );
    for points in [json!(0), json!(-5)] {
        assert_eq!(post("points", json!({"contest_id": c, "points": points}), 422).await, "points_not_positive");
    }
    post("points not a number", json!({"contest_id": c, "points": "ten"}), 400).await;
    post("fractional points", json!({"contest_id": c, "points": 1.5}), 400).await;
    post("unknown field", json!({"contest_id": c, "points": 1, "prize": "car"}), 400).await;
    post("blank label", json!({"contest_id": c, "points": 1, "label": " "}), 400).await;
    let body = json!({"contest_id": c, "points": 1, "tier_percent": 120});
    assert_eq!(post("tier with a contest", body, 422).await, "field_not_allowed");
    let body = json!({"target_id": target, "points": 1, "places": 2});
    assert_eq!(post("places with a target", body, 422).await, "field_not_allowed");
    for places in [0, 5] {
        let body = json!({"contest_id": c, "points": 1, "places": places});
        assert_eq!(post("places out of range", body, 422).await, "places_out_of_range");
    }
    let body = json!({"target_id": target, "points": 1, "tier_percent": 0});
    assert_eq!(post("tier zero", body, 422).await, "tier_out_of_range");
    let body = json!({"contest_id": c, "points": 1, "min_value": 0});
    assert_eq!(post("minimum zero", body, 422).await, "goal_not_positive");
    let theirs = b.contest("B's", "deals_won", (now, now.plus_secs(DAY)), json!({"users": [b.member_id]})).await;
    r.refresh().await;
    let r = &r;
    let refused = |what: &'static str, body: Json| async move {
        r.refused(what, "POST", "/v1/incentives", m, &body.to_string(), 404).await
    };
    assert_eq!(refused("another tenant's contest", json!({"contest_id": theirs, "points": 1})).await, "not_found");
    let nobody = "00000000-0000-4000-8000-000000000000";
    assert_eq!(refused("unknown target", json!({"target_id": nobody, "points": 1})).await, "not_found");
    assert_eq!(refused("not an id", json!({"target_id": "bob", "points": 1})).await, "not_found");
}

// ----- 8. contests ranked by percent of own target -------------------------------------------

/// One participant of a `percent_of_target` contest as computed here: value, goal (none
/// without a target) and the instant the value was reached.
type PercentRow = (i64, Option<i64>, Option<Timestamp>);

/// The documented rule for `percent_of_target`, formulated independently: one more than
/// the number strictly ahead, "ahead" being a goal against none, a higher value ÷ goal
/// (compared by cross-multiplication), or (without goals) a higher value, then on equality
/// the value reached earlier. Output: id → (rank, value, goal, percent in hundredths).
fn expected_percent_ranks(
    rows: &BTreeMap<String, PercentRow>,
) -> BTreeMap<String, (u64, i64, Option<i64>, Option<i64>)> {
    let earlier = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x < y,
        _ => false,
    };
    let ahead = |a: &PercentRow, b: &PercentRow| match (a.1, b.1) {
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (Some(ga), Some(gb)) => a.0 * gb > b.0 * ga || (a.0 * gb == b.0 * ga && earlier(a.2, b.2)),
        (None, None) => a.0 > b.0 || (a.0 == b.0 && earlier(a.2, b.2)),
    };
    rows.iter()
        .map(|(id, row)| {
            let rank = 1 + rows.values().filter(|other| ahead(other, row)).count() as u64;
            // Hundredths of a percent, rounded half up (values here are never negative).
            let percent = row.1.map(|g| (row.0 * 10_000 * 2 + g) / (2 * g));
            (id.clone(), (rank, row.0, row.1, percent))
        })
        .collect()
}

/// A `percent_of_target` answer as id → (rank, value, goal, percent in hundredths), after
/// checking its shape: exactly rank, the id key, value, goal and percent; ranks ascend.
fn percent_entries(body: &Json, key: &str) -> BTreeMap<String, (u64, i64, Option<i64>, Option<i64>)> {
    let list = body["entries"].as_array().unwrap_or_else(|| panic!("entries: {body}"));
    let mut out = BTreeMap::new();
    let mut last_rank = 0;
    for e in list {
        assert_eq!(e.as_object().expect("an entry").len(), 5, "rank, {key}, value, goal, percent: {e}");
        let rank = e["rank"].as_u64().expect("rank");
        assert!(rank >= last_rank, "best first: {body}");
        last_rank = rank;
        let percent = e["percent"].as_f64().map(|p| (p * 100.0).round() as i64);
        assert_eq!(e["goal"].is_null(), e["percent"].is_null(), "a percent with a goal only: {e}");
        let row = (rank, e["value"].as_i64().expect("a count"), e["goal"].as_i64(), percent);
        assert!(out.insert(str_of(&e[key]), row).is_none(), "one entry each: {body}");
    }
    out
}

async fn percent_of_target_contests_over_synced_data(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(857, 4, 60, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let mut t = Tenant::create(&api, "Percent Sales", "percent.example").await;
    t.add_crm_users(&fake).await;
    let b = Tenant::create(&api, "Other Sales", "other-percent.example").await;
    let b_team = b.team("Theirs", &[b.member_id.as_str()]).await;
    let crm_ids: Vec<u64> = t.crm.keys().copied().collect();
    let &[u0, u1, u2, u3] = crm_ids.as_slice() else { panic!("four CRM users") };
    let (id0, id1, id2, id3) =
        (t.user(u0).to_owned(), t.user(u1).to_owned(), t.user(u2).to_owned(), t.user(u3).to_owned());

    // A month thirteen months back: u0 3 deals (the 3rd on day 3), u1 2 (the 2nd on day 1,
    // 2 a.m.), u2 one, u3 none.
    let month = month_start(local_date(Timestamp::now_utc()), -13);
    let next = month_start(month, 1);
    let t0 = local_midnight(month);
    let window = (t0, local_midnight(next));
    let built = [(u0, DAY), (u0, 2 * DAY), (u0, 3 * DAY), (u1, DAY + HOUR), (u1, DAY + 2 * HOUR), (u2, 4 * DAY)];
    fake.with(|crm| {
        for (owner, at) in built {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.enable_and_sync(&fake).await;
    let counts = won_between(&fake, window.0, window.1);
    assert_eq!((counts[&u0].0, counts[&u1].0, counts[&u2].0, counts[&u3].0), (3, 2, 1, 0));

    // Monthly targets: u0 6 (50 %), u1 4 (50 %, reached earlier than u0), u2 4 but joined on
    // the month's 21st (a working-day share, rounded up), u3 none. u0 also has a quarterly
    // target of 100: the month's is the one closest to a month's contest.
    let joined = Date::from_days(month.days() + 20);
    api.put(&format!("/v1/users/{id2}/joined-on"), &t.manager, &json!({"joined_on": joined.to_string()}))
        .await
        .expect(200);
    let weekday = |d: Date| (d.days() + 3).rem_euclid(7);
    let working = |from: Date, until: Date| {
        (from.days()..until.days()).filter(|d| weekday(Date::from_days(*d)) < 5).count() as i64
    };
    let (part, whole) = (working(joined, next), working(month, next));
    let share2 = (4 * part + whole - 1) / whole;
    assert!((1..4).contains(&share2), "{share2}");
    let target = |assignee: Json, period: &str, goal: i64| {
        json!({"assignee": assignee, "metric": "deals_won", "period": period, "goal": goal,
            "starts_on": month.to_string()})
    };
    let t1_target = t.target(target(json!({"user_id": id1}), "month", 4)).await;
    t.target(target(json!({"user_id": id0}), "month", 6)).await;
    t.target(target(json!({"user_id": id0}), "quarter", 100)).await;
    t.target(target(json!({"user_id": id2}), "month", 4)).await;
    let users = json!({"users": [id3, id2, id1, id0]});
    let contest = contest_of(&t, "percent_of_target", "deals_won", None, window, users.clone()).await;

    let body = t.leaderboard(&contest, &t.manager).await.expect(200).clone();
    assert_eq!(
        (body["status"].as_str(), body["contest"]["format"].as_str()),
        (Some("final"), Some("percent_of_target"))
    );
    assert_eq!(body["contest"]["goal"], Json::Null, "{body}");
    let reached = |crm: u64| counts[&crm].1;
    let rows: BTreeMap<String, PercentRow> = [
        (id0.clone(), (3, Some(6), reached(u0))),
        (id1.clone(), (2, Some(4), reached(u1))),
        (id2.clone(), (1, Some(share2), reached(u2))),
        (id3.clone(), (0, None, None)),
    ]
    .into();
    let want = expected_percent_ranks(&rows);
    assert_eq!(percent_entries(&body, "user_id"), want, "{body}");
    assert_eq!(want[&id1].0, 1, "50 %, reached before u0's 50 %");
    assert_eq!(want[&id0].0, 2);
    assert_eq!(want[&id3], (4, 0, None, None), "no target: last, without goal or percent");
    assert_eq!(body["winner"], id1.as_str(), "{body}");
    // The same goal as the target's own progress shows for the joiner.
    let t2_progress = t.api.get("/v1/targets?limit=200", &t.manager).await.expect(200).clone();
    let t2 = t2_progress["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|x| x["assignee"]["user_id"] == id2.as_str())
        .map(|x| str_of(&x["id"]))
        .expect("u2's target");
    let p = t.progress(&t2, &t.manager).await.expect(200).clone();
    assert_eq!(p["goal"], share2, "{p}");

    // Placements are awarded once from the frozen result; a target edited after the freeze
    // changes nothing in it.
    api.post("/v1/incentives", &t.manager, &json!({"contest_id": contest, "points": 20})).await.expect(201);
    for _ in 0..2 {
        let p1 = api.get(&format!("/v1/users/{id1}/points"), &t.manager).await.expect(200).clone();
        assert_eq!((p1["balance"].as_i64(), p1["entries"].as_array().map(Vec::len)), (Some(20), Some(1)), "{p1}");
    }
    let p0 = api.get(&format!("/v1/users/{id0}/points"), &t.manager).await.expect(200).clone();
    assert_eq!(p0["balance"], 0, "{p0}");
    api.patch(&format!("/v1/targets/{t1_target}"), &t.manager, &json!({"goal": 1})).await.expect(200);
    let again = t.leaderboard(&contest, &t.manager).await.expect(200).clone();
    assert_eq!(again, body, "the frozen standing, goals included, stays");

    // Teams: Alpha (u0, u1) with its own target of 10; Beta (u2, u3) without one: the sum of
    // its members' goals, as its progress reports; Gamma (empty) without any.
    let alpha = t.team("Alpha", &[&id0, &id1]).await;
    let beta = t.team("Beta", &[&id2, &id3]).await;
    let gamma = t.team("Gamma", &[]).await;
    t.target(target(json!({"team_id": alpha}), "month", 10)).await;
    let teams = json!({"teams": [gamma, beta, alpha]});
    let cup = contest_of(&t, "percent_of_target", "deals_won", None, window, teams).await;
    let body = t.leaderboard(&cup, &t.manager).await.expect(200).clone();
    let beta_progress = api
        .get(&format!("/v1/teams/{beta}/progress?metric=deals_won&period=month&on={month}"), &t.manager)
        .await
        .expect(200)
        .clone();
    assert_eq!(
        (beta_progress["goal_source"].as_str(), beta_progress["goal"].clone()),
        (Some("members"), json!(share2))
    );
    let rows: BTreeMap<String, PercentRow> = [
        (alpha.clone(), (5, Some(10), reached(u0).max(reached(u1)))),
        (beta.clone(), (1, Some(share2), reached(u2))),
        (gamma.clone(), (0, None, None)),
    ]
    .into();
    assert_eq!(percent_entries(&body, "team_id"), expected_percent_ranks(&rows), "{body}");

    // Listed with the others; a race's goal is listed too.
    let race = contest_of(&t, "race", "revenue", Some(json!("150.00")), window, users.clone()).await;
    let list = api.get("/v1/contests?limit=200", &t.manager).await.expect(200).clone();
    let listed: BTreeMap<String, (Json, Json)> = list["contests"]
        .as_array()
        .expect("contests")
        .iter()
        .map(|c| (str_of(&c["id"]), (c["format"].clone(), c["goal"].clone())))
        .collect();
    assert_eq!(listed[&contest], (json!("percent_of_target"), Json::Null), "{list}");
    assert_eq!(listed[&race], (json!("race"), json!("150.00")), "{list}");
    // Read once, so that its freeze is not written while the refusals below look.
    t.leaderboard(&race, &t.manager).await.expect(200);

    // Bad input: refused with the documented error body, nothing written.
    let mut r = Refusals { db: &db, api: api.clone(), snapshot: BTreeMap::new() };
    r.refresh().await;
    let m = t.manager.as_str();
    let body_of = |metric: &str, window: (Timestamp, Timestamp), participants: Json| {
        json!({"name": "P", "metric": metric, "format": "percent_of_target", "starts_at": window.0.to_string(),
            "ends_at": window.1.to_string(), "participants": participants})
    };
    let refused = |what: &'static str, body: Json, status: u16| {
        let r = &r;
        async move { r.refused(what, "POST", "/v1/contests", m, &body.to_string(), status).await }
    };
    let mut with_goal = body_of("deals_won", window, users.clone());
    with_goal["goal"] = json!(5);
    assert_eq!(refused("a goal", with_goal, 422).await, "goal_not_allowed");
    assert_eq!(refused("a metric without targets", body_of("calls", window, users.clone()), 422).await, "no_targets");
    let later = (local_midnight(month_start(month, 6)), local_midnight(month_start(month, 7)));
    assert_eq!(refused("a month without targets", body_of("deals_won", later, users.clone()), 422).await, "no_targets");
    let nobody = json!({"users": [id3, t.member_id]});
    assert_eq!(refused("participants without targets", body_of("deals_won", window, nobody), 422).await, "no_targets");
    assert_eq!(
        refused("an empty team", body_of("deals_won", window, json!({"teams": [gamma]})), 422).await,
        "no_targets"
    );
    let unknown = json!({"users": [id3, "00000000-0000-4000-8000-000000000000"]});
    assert_eq!(refused("an unknown user", body_of("deals_won", window, unknown), 404).await, "not_found");
    let theirs = json!({"teams": [gamma, b_team]});
    assert_eq!(refused("another tenant's team", body_of("deals_won", window, theirs), 404).await, "not_found");
    let theirs = json!({"users": [id0, b.member_id]});
    assert_eq!(refused("another tenant's user", body_of("deals_won", window, theirs), 404).await, "not_found");

    // While a contest runs, its answer is cached between changes; a goal edited, a join
    // date moved or a calendar changed shows at the very next read all the same.
    let running = (t0, Timestamp::now_utc().plus_secs(7 * DAY));
    let live = contest_of(&t, "percent_of_target", "deals_won", None, running, users.clone()).await;
    let goal_of = |body: &Json, id: &str| {
        let entries = body["entries"].as_array().expect("entries");
        entries.iter().find(|e| e["user_id"] == id).map(|e| e["goal"].clone()).expect("an entry")
    };
    let first = t.leaderboard(&live, &t.manager).await.expect(200).clone();
    assert_eq!(first["status"], "running", "{first}");
    assert_eq!(t.leaderboard(&live, &t.manager).await.expect(200), &first, "nothing changed");
    assert_eq!((goal_of(&first, &id1), goal_of(&first, &id2)), (json!(1), json!(share2)), "{first}");
    api.patch(&format!("/v1/targets/{t1_target}"), &t.manager, &json!({"goal": 3})).await.expect(200);
    let edited = t.leaderboard(&live, &t.manager).await.expect(200).clone();
    assert_eq!(goal_of(&edited, &id1), json!(3), "{edited}");
    api.put(&format!("/v1/users/{id2}/joined-on"), &t.manager, &json!({"joined_on": month.to_string()}))
        .await
        .expect(200);
    let rejoined = t.leaderboard(&live, &t.manager).await.expect(200).clone();
    assert_eq!(goal_of(&rejoined, &id2), json!(4), "joined on the first day: the whole goal: {rejoined}");
}
