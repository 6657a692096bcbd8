//! Targets through the running service, on both stores, over deals synced from a fake
//! Pipedrive by the real component: the tenant calendar, custom ranges, pace by working
//! days, pro-rated goals for joiners, team goals as the sum of members' targets, stretch
//! tiers, and every bad input refused with nothing written.
//!
//! Expected figures are computed here independently: values from the fake's own deals,
//! working days by walking the calendar day by day (the service counts whole weeks at
//! once), pro-rated goals and statuses by the documented formulas.

use std::collections::BTreeMap;

use oneup_fake_crm::pipedrive::{DealStatus, FakePipedrive, NewDeal};
use oneup_fake_crm::{Date, Timestamp};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

const TOKEN: &str = "pd-targets-token-51d2aa";
/// A fixed +05:30 all year, so local midnights are easy to compute here.
const TIMEZONE: &str = "Asia/Kolkata";
const OFFSET_SECS: i64 = 5 * 3600 + 30 * 60;
const CURRENCY: &str = "GBP";
const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

on_both_stores!(
    calendar_defaults_settings_and_week_start,
    custom_ranges_and_pace_by_working_days,
    joiners_team_sums_and_tiers,
    bad_target_input_is_refused_and_nothing_is_written,
    incentives_award_on_the_effective_goal,
);

// ----- helpers ---------------------------------------------------------------------------

fn local_date(at: Timestamp) -> Date {
    at.plus_secs(OFFSET_SECS).date()
}

fn local_midnight(date: Date) -> Timestamp {
    date.start().plus_secs(-OFFSET_SECS)
}

fn plus_days(date: Date, days: i32) -> Date {
    Date::from_days(date.days() + days)
}

/// Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
fn weekday(date: Date) -> i32 {
    (date.days() + 3).rem_euclid(7)
}

/// The first day of the month `months` after (or before) the month of `date`.
fn month_start(date: Date, months: i32) -> Date {
    let text = date.to_string();
    let mut parts = text.split('-').map(|p| p.parse::<i32>().expect("a date part"));
    let (y, m) = (parts.next().unwrap(), parts.next().unwrap());
    let index = y * 12 + (m - 1) + months;
    Date::from_ymd(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1).expect("a month")
}

/// The working days in `[from, until)`, one day at a time: `works[weekday]` and not a
/// holiday.
fn working_days(from: Date, until: Date, works: [bool; 7], holidays: &[Date]) -> i64 {
    (from.days()..until.days())
        .map(Date::from_days)
        .filter(|d| works[weekday(*d) as usize] && !holidays.contains(d))
        .count() as i64
}

/// The won, not deleted deals of `owner` with `won_time` in `[from, to)`, oldest first.
fn won(fake: &FakePipedrive, owner: u64, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let mut out: Vec<Timestamp> = fake.with(|crm| {
        crm.deals()
            .iter()
            .filter(|d| d.owner_id == owner && d.status == DealStatus::Won && !d.is_deleted())
            .filter_map(|d| d.won_time)
            .filter(|at| from <= *at && *at < to)
            .collect()
    });
    out.sort();
    out
}

fn instant(v: &Json) -> Timestamp {
    let text = str_of(v);
    Timestamp::parse_rfc3339(&text).unwrap_or_else(|| panic!("not an RFC 3339 instant: {text}"))
}

/// The documented status rule, computed independently: value vs goal × elapsed.
fn status(value: i64, goal: i64, elapsed: i64, duration: i64) -> &'static str {
    let (actual, expected) = (i128::from(value) * i128::from(duration) * 100, i128::from(goal) * i128::from(elapsed));
    if value >= goal {
        "achieved"
    } else if elapsed >= duration {
        "behind"
    } else if actual > expected * 110 {
        "ahead"
    } else if actual >= expected * 90 {
        "on_track"
    } else {
        "behind"
    }
}

/// A tenant with a user per CRM user of the fake, synced.
struct Tenant {
    base: app::Tenant,
    /// CRM user id → tenant user id.
    crm: BTreeMap<u64, String>,
}

impl std::ops::Deref for Tenant {
    type Target = app::Tenant;

    fn deref(&self) -> &app::Tenant {
        &self.base
    }
}

impl Tenant {
    async fn create(api: &Api, name: &str, domain: &str, fake: Option<&FakePipedrive>) -> Self {
        let base = app::Tenant::create(api, name, domain, TIMEZONE, CURRENCY).await;
        let mut crm = BTreeMap::new();
        if let Some(fake) = fake {
            let users: Vec<(u64, String, String)> =
                fake.with(|crm| crm.users().iter().map(|u| (u.id, u.name.clone(), u.email.clone())).collect());
            for (crm_id, name, email) in users {
                crm.insert(crm_id, base.add_user(&name, &email, "member").await.0);
            }
        }
        Tenant { base, crm }
    }

    async fn sync(&self, fake: &FakePipedrive) {
        self.enable_pipedrive(&fake.base_url(), TOKEN).await.expect(200);
        self.sync_pipedrive().await;
    }

    async fn target(&self, body: Json) -> String {
        let answer = self.api.post("/v1/targets", &self.manager, &body).await;
        str_of(&answer.expect(201)["id"])
    }

    async fn progress(&self, id: &str) -> Json {
        self.api.get(&format!("/v1/targets/{id}/progress"), &self.manager).await.expect(200).clone()
    }
}

// ----- 1. the calendar ---------------------------------------------------------------------

async fn calendar_defaults_settings_and_week_start(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = Tenant::create(&api, "Calendar Sales", "calendar.example", None).await;
    let b = Tenant::create(&api, "Other Sales", "other-calendar.example", None).await;

    // The defaults, for anyone of the tenant.
    let defaults = json!({"week_start": "monday",
        "working_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
        "holidays": [], "updated_at": null});
    assert_eq!(api.get("/v1/calendar", &t.member).await.expect(200), &defaults);

    // A weekly target before any setting: ISO weeks.
    let week = |on: &str| {
        json!({"assignee": {"user_id": t.member_id}, "metric": "deals_won", "period": "week",
        "goal": 3, "starts_on": on})
    };
    let iso = t.target(week("2025-06-11")).await;
    let view = api.get(&format!("/v1/targets/{iso}"), &t.manager).await.expect(200).clone();
    assert_eq!((view["week_start"].as_str(), view["ends_on"].clone()), (Some("monday"), Json::Null), "{view}");
    let progress = t.progress(&iso).await;
    assert_eq!(
        (progress["period"]["first_day"].as_str(), progress["period"]["last_day"].as_str()),
        (Some("2025-06-09"), Some("2025-06-15")),
        "{progress}"
    );

    // The admin sets Sunday weeks, Sunday to Thursday worked and two holidays (given out of
    // order); the answer and every later read agree, and the change is audited.
    let body = json!({"week_start": "sunday", "working_days": ["thursday", "sunday", "monday", "tuesday", "wednesday"],
        "holidays": ["2025-12-25", "2025-06-12"]});
    let set = api.put("/v1/calendar", &t.admin, &body).await.expect(200).clone();
    assert_eq!(set["week_start"], "sunday");
    assert_eq!(set["working_days"], json!(["monday", "tuesday", "wednesday", "thursday", "sunday"]));
    assert_eq!(set["holidays"], json!(["2025-06-12", "2025-12-25"]));
    assert!(set["updated_at"].is_string(), "{set}");
    assert_eq!(api.get("/v1/calendar", &t.member).await.expect(200), &set);
    assert_eq!(api.get("/v1/calendar", &b.admin).await.expect(200), &defaults, "another tenant keeps its own");
    let audit = api.get("/v1/audit?limit=200", &t.admin).await.expect(200).clone();
    let actions: Vec<String> =
        audit["entries"].as_array().expect("entries").iter().map(|e| str_of(&e["action"])).collect();
    assert!(actions.contains(&"calendar.updated".to_owned()), "{audit}");
    // A body that is not a JSON object (serde would read the struct from an array) is
    // refused and changes nothing; so is an `after` the document's int64 cannot hold.
    for body in [json!([null, null]), json!(["friday", ["friday"]]), json!(null), json!("monday")] {
        assert_eq!(api.put("/v1/calendar", &t.admin, &body).await.expect_error(400), "invalid_body", "{body}");
    }
    assert_eq!(api.get("/v1/calendar", &t.member).await.expect(200), &set);
    let too_far = api.get("/v1/audit?after=9223372036854775808", &t.admin).await;
    assert_eq!(too_far.expect_error(400), "invalid_query");
    let last = api.get("/v1/audit?after=9223372036854775807", &t.admin).await;
    assert_eq!(last.expect(200)["entries"], json!([]));

    // A weekly target created now runs Sunday to Saturday; the earlier one keeps its
    // Monday weeks (its stored first period stays).
    let sunday = t
        .target(json!({"assignee": {"user_id": t.manager_id}, "metric": "deals_won", "period": "week",
        "goal": 3, "starts_on": "2025-06-11"}))
        .await;
    let view = api.get(&format!("/v1/targets/{sunday}"), &t.manager).await.expect(200).clone();
    assert_eq!(view["week_start"], "sunday");
    let progress = t.progress(&sunday).await;
    assert_eq!(
        (progress["period"]["first_day"].as_str(), progress["period"]["last_day"].as_str()),
        (Some("2025-06-08"), Some("2025-06-14")),
        "{progress}"
    );
    assert_eq!(instant(&progress["period"]["start"]), local_midnight(Date::from_ymd(2025, 6, 8).unwrap()));
    let progress = t.progress(&iso).await;
    assert_eq!(progress["period"]["first_day"], "2025-06-09", "the old target keeps its weeks");
    // An overlapping Sunday week for the member is still an overlap of instants.
    let answer = api.post("/v1/targets", &t.manager, &week("2025-06-14")).await;
    assert_eq!(answer.expect_error(409), "target_overlaps");
    // The ended weeks are measured by working days of the calendar as it is now.
    assert_eq!(progress["pace"]["basis"], "working_days");
    assert_eq!((progress["pace"]["elapsed"].as_f64(), progress["status"].as_str()), (Some(1.0), Some("behind")));

    // Setting it again with nothing given restores the defaults (and stamps the time).
    let reset = api.put("/v1/calendar", &t.admin, &json!({})).await.expect(200).clone();
    assert_eq!((reset["week_start"].clone(), reset["holidays"].clone()), (json!("monday"), json!([])));
    assert!(reset["updated_at"].is_string());
}

// ----- 2. custom ranges and pace -----------------------------------------------------------

async fn custom_ranges_and_pace_by_working_days(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(4242, 3, 200, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = Tenant::create(&api, "Range Sales", "range.example", Some(&fake)).await;
    let owners: Vec<u64> = t.crm.keys().copied().collect();
    let (u0, u1) = (owners[0], owners[1]);

    // A past custom range, thirteen months back: 10 to 19 inclusive of that month, with
    // deals of u0 just inside both ends and just outside.
    let month = month_start(local_date(Timestamp::now_utc()), -13);
    let first = plus_days(month, 9);
    let last = plus_days(month, 18);
    let (from, to) = (local_midnight(first), local_midnight(plus_days(last, 1)));
    fake.with(|crm| {
        for at in [from.plus_secs(-1), from, from.plus_secs(3 * DAY + HOUR), to.plus_secs(-1), to] {
            crm.add_deal(NewDeal::won(u0, 100.0, CURRENCY, at)).expect("a deal is added");
        }
    });
    t.sync(&fake).await;
    let range = t
        .target(json!({"assignee": {"user_id": t.crm[&u0]}, "metric": "deals_won", "period": "custom", "goal": 3,
            "starts_on": first.to_string(), "ends_on": last.to_string()}))
        .await;
    let view = api.get(&format!("/v1/targets/{range}"), &t.manager).await.expect(200).clone();
    assert_eq!((view["period"].as_str(), view["ends_on"].as_str()), (Some("custom"), Some(last.to_string().as_str())));
    assert_eq!(view["recurring"], false);
    let p = t.progress(&range).await;
    let deals = won(&fake, u0, from, to);
    assert_eq!(deals.len(), 3, "both ends are inside, the neighbours outside");
    assert_eq!(p["period"]["kind"], "custom");
    assert_eq!(
        (p["period"]["first_day"].as_str(), p["period"]["last_day"].as_str()),
        (Some(first.to_string().as_str()), Some(last.to_string().as_str()))
    );
    assert_eq!((instant(&p["period"]["start"]), instant(&p["period"]["end"])), (from, to));
    assert_eq!((p["value"].clone(), p["goal"].clone(), p["status"].clone()), (json!(3), json!(3), json!("achieved")));
    assert_eq!(instant(&p["achieved_at"]), deals[2], "reached with the third deal, the last second of the range");
    assert_eq!((p["original_goal"].clone(), p["joined_on"].clone()), (json!(3), Json::Null));

    // A team's progress over the same custom range, asked for as a target is set: the
    // members' custom targets of exactly that range add up, then the team's own overrides.
    let range1 = t
        .target(json!({"assignee": {"user_id": t.crm[&u1]}, "metric": "deals_won", "period": "custom", "goal": 2,
            "starts_on": first.to_string(), "ends_on": last.to_string()}))
        .await;
    let pair = t.team("Pair", &[t.crm[&u0].as_str(), t.crm[&u1].as_str()]).await;
    let team_path = |first: Date, last: Date| {
        format!("/v1/teams/{pair}/progress?metric=deals_won&period=custom&starts_on={first}&ends_on={last}")
    };
    let p = api.get(&team_path(first, last), &t.manager).await.expect(200).clone();
    let v1 = won(&fake, u1, from, to).len() as i64;
    assert_eq!((p["goal_source"].as_str(), p["goal"].clone()), (Some("members"), json!(5)), "{p}");
    assert_eq!(p["value"], 3 + v1, "{p}");
    assert_eq!(
        (p["period"]["kind"].as_str(), instant(&p["period"]["start"]), instant(&p["period"]["end"])),
        (Some("custom"), from, to)
    );
    assert_eq!(
        (p["period"]["first_day"].as_str(), p["period"]["last_day"].as_str()),
        (Some(first.to_string().as_str()), Some(last.to_string().as_str()))
    );
    let member_targets: BTreeMap<String, Json> = p["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (str_of(&m["user_id"]), m["target_id"].clone()))
        .collect();
    assert_eq!(member_targets, [(t.crm[&u0].clone(), json!(range)), (t.crm[&u1].clone(), json!(range1))].into());
    // Another range: nobody has a target of exactly that one.
    let shorter = api.get(&team_path(first, plus_days(last, -1)), &t.manager).await;
    assert_eq!(shorter.expect_error(404), "not_found");
    let own = t
        .target(json!({"assignee": {"team_id": pair}, "metric": "deals_won", "period": "custom", "goal": 4,
            "starts_on": first.to_string(), "ends_on": last.to_string()}))
        .await;
    let p = api.get(&team_path(first, last), &t.manager).await.expect(200).clone();
    assert_eq!((p["goal_source"].as_str(), p["target_id"].as_str()), (Some("target"), Some(own.as_str())), "{p}");
    let team_status = if 3 + v1 >= 4 { "achieved" } else { "behind" };
    assert_eq!((p["goal"].clone(), p["status"].as_str()), (json!(4), Some(team_status)), "{p}");

    // Pace by working days: every weekday worked, holidays today and three days ago. A
    // custom range of twenty days, ten of them before today: 18 working days, 9 gone by
    // now, all day today (a holiday does not move the pace).
    let today = local_date(Timestamp::now_utc());
    let holidays = [plus_days(today, -3), today];
    let all = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let body = json!({"working_days": all, "holidays": holidays.iter().map(|d| d.to_string()).collect::<Vec<_>>()});
    api.put("/v1/calendar", &t.admin, &body).await.expect(200);
    let (first, last) = (plus_days(today, -10), plus_days(today, 9));
    let total = working_days(first, plus_days(last, 1), [true; 7], &holidays);
    let gone = working_days(first, today, [true; 7], &holidays);
    assert_eq!((total, gone), (18, 9));
    let value = won(&fake, u1, local_midnight(first), local_midnight(plus_days(last, 1))).len() as i64;
    let goal = 18 * (value + 2);
    let now_range = t
        .target(json!({"assignee": {"user_id": t.crm[&u1]}, "metric": "deals_won", "period": "custom",
            "goal": goal, "starts_on": first.to_string(), "ends_on": last.to_string()}))
        .await;
    let p = t.progress(&now_range).await;
    assert_eq!(p["value"], value, "{p}");
    assert_eq!(p["pace"]["basis"], "working_days");
    assert_eq!(p["pace"]["elapsed"], 0.5, "9 of 18 working days, whatever the hour");
    assert_eq!(p["pace"]["expected"].as_f64(), Some((goal * gone) as f64 / total as f64));
    assert_eq!(p["status"], status(value, goal, gone, total), "{p}");
    assert_eq!(p["status"], "behind", "short of 90 % of half the goal");

    // With the same range but no holidays the pace is by the clock of working days again:
    // more than half is gone.
    api.put("/v1/calendar", &t.admin, &json!({"working_days": all})).await.expect(200);
    let p = t.progress(&now_range).await;
    assert!(p["pace"]["elapsed"].as_f64().unwrap() > 0.5, "{p}");
}

// ----- 3. joiners, team sums, tiers --------------------------------------------------------

async fn joiners_team_sums_and_tiers(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(777, 3, 120, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = Tenant::create(&api, "Team Sales", "team.example", Some(&fake)).await;
    let owners: Vec<u64> = t.crm.keys().copied().collect();
    let (u0, u1, u2) = (owners[0], owners[1], owners[2]);
    let (id0, id1, id2) = (t.crm[&u0].clone(), t.crm[&u1].clone(), t.crm[&u2].clone());

    // Thirteen months back: u0 4 deals, u1 2, u2 7 (its sixth and seventh at one instant).
    let month = month_start(local_date(Timestamp::now_utc()), -13);
    let next = month_start(month, 1);
    let t0 = local_midnight(month);
    let mut built: Vec<(u64, i64)> = vec![(u0, DAY), (u0, 3 * DAY), (u0, 20 * DAY), (u0, 21 * DAY)];
    built.extend([(u1, 2 * DAY), (u1, 4 * DAY)]);
    built.extend([(u2, DAY), (u2, 2 * DAY), (u2, 5 * DAY), (u2, 6 * DAY + HOUR), (u2, 9 * DAY), (u2, 12 * DAY)]);
    built.push((u2, 12 * DAY));
    fake.with(|crm| {
        for (owner, at) in &built {
            crm.add_deal(NewDeal::won(*owner, 100.0, CURRENCY, t0.plus_secs(*at))).expect("a deal is added");
        }
    });
    t.sync(&fake).await;
    // The default working week and a holiday on the month's 15th.
    let holiday = plus_days(month, 14);
    api.put("/v1/calendar", &t.admin, &json!({"holidays": [holiday.to_string()]})).await.expect(200);
    let works = [true, true, true, true, true, false, false];

    // u0 joined on the month's 10th: goal 20 × working days from then ÷ the month's,
    // rounded up.
    let joined = plus_days(month, 9);
    let answer =
        api.put(&format!("/v1/users/{id0}/joined-on"), &t.manager, &json!({"joined_on": joined.to_string()})).await;
    assert_eq!(answer.expect(200), &json!({"joined_on": joined.to_string()}));
    let part = working_days(joined, next, works, &[holiday]);
    let whole = working_days(month, next, works, &[holiday]);
    let share = |goal: i64| (goal * part + whole - 1) / whole;
    let monthly = |id: &str, goal: i64| {
        json!({"assignee": {"user_id": id}, "metric": "deals_won", "period": "month",
        "goal": goal, "starts_on": month.to_string()})
    };
    let t0_target = t.target(monthly(&id0, 20)).await;
    let p = t.progress(&t0_target).await;
    let v0 = won(&fake, u0, t0, local_midnight(next)).len() as i64;
    assert_eq!(v0, 4);
    assert_eq!((p["goal"].clone(), p["original_goal"].clone()), (json!(share(20)), json!(20)), "{p}");
    assert_eq!(p["joined_on"], joined.to_string());
    assert!(share(20) < 20 && share(20) > 0);
    assert_eq!(p["status"], status(v0, share(20), 1, 1));
    // A joiner from before the period owes it all.
    let before = plus_days(month, -1).to_string();
    api.put(&format!("/v1/users/{id1}/joined-on"), &t.manager, &json!({"joined_on": before})).await.expect(200);
    let t1_target = t.target(monthly(&id1, 5)).await;
    let p = t.progress(&t1_target).await;
    assert_eq!((p["goal"].clone(), p["joined_on"].clone()), (json!(5), Json::Null), "{p}");

    // The team of u0, u1 and u2 (no target of its own): the sum of the members' effective
    // goals, u2 without a target adding nothing to the goal but its deals to the value.
    let team = t.team("Trio", &[&id0, &id1, &id2]).await;
    let path = format!("/v1/teams/{team}/progress?metric=deals_won&period=month&on={}", plus_days(month, 3));
    let p = api.get(&path, &t.manager).await.expect(200).clone();
    let v1 = won(&fake, u1, t0, local_midnight(next)).len() as i64;
    let v2 = won(&fake, u2, t0, local_midnight(next)).len() as i64;
    assert_eq!((v1, v2), (2, 7));
    assert_eq!(p["goal_source"], "members", "{p}");
    assert_eq!(p["target_id"], Json::Null);
    assert_eq!(p["goal"], share(20) + 5);
    assert_eq!(p["value"], v0 + v1 + v2);
    assert_eq!(p["status"], status(v0 + v1 + v2, share(20) + 5, 1, 1));
    assert_eq!(p["period"]["first_day"], month.to_string());
    let parts: BTreeMap<String, (Json, Json, Json, Json)> = p["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                str_of(&m["user_id"]),
                (m["target_id"].clone(), m["goal"].clone(), m["original_goal"].clone(), m["value"].clone()),
            )
        })
        .collect();
    let want: BTreeMap<String, (Json, Json, Json, Json)> = [
        (id0.clone(), (json!(t0_target), json!(share(20)), json!(20), json!(v0))),
        (id1.clone(), (json!(t1_target), json!(5), json!(5), json!(v1))),
        (id2.clone(), (Json::Null, Json::Null, Json::Null, json!(v2))),
    ]
    .into();
    assert_eq!(parts, want);
    // A member outside the team may not look; another month has no targets at all.
    api.get(&path, &t.member).await.expect_error(403);
    let other = format!("/v1/teams/{team}/progress?metric=deals_won&period=month&on={}", plus_days(next, 3));
    assert_eq!(api.get(&other, &t.manager).await.expect_error(404), "not_found");

    // An explicit team target overrides the sum, with stretch tiers reached by the running
    // total of all three: 13 deals over the month.
    let tiers = json!([{"goal": 10, "label": "Silver"}, {"goal": 13, "label": "Gold"}, {"goal": 14}]);
    let team_target = t
        .target(json!({"assignee": {"team_id": team}, "metric": "deals_won", "period": "month", "goal": 6,
            "starts_on": month.to_string(), "tiers": tiers}))
        .await;
    let p = api.get(&path, &t.manager).await.expect(200).clone();
    assert_eq!((p["goal_source"].as_str(), p["target_id"].as_str()), (Some("target"), Some(team_target.as_str())));
    assert_eq!((p["goal"].clone(), p["value"].clone(), p["status"].clone()), (json!(6), json!(13), json!("achieved")));
    let mut all: Vec<Timestamp> = [u0, u1, u2].iter().flat_map(|u| won(&fake, *u, t0, local_midnight(next))).collect();
    all.sort();
    let reached = |n: usize| all[n - 1].to_string();
    let tier_rows = |p: &Json| -> Vec<(Json, Json, bool, Option<String>)> {
        p["tiers"]
            .as_array()
            .expect("tiers")
            .iter()
            .map(|t| {
                (
                    t["goal"].clone(),
                    t["label"].clone(),
                    t["reached"] == true,
                    t["achieved_at"].as_str().map(|s| instant(&json!(s)).to_string()),
                )
            })
            .collect()
    };
    let want = vec![
        // The 10th and 11th deals share an instant: Silver is reached with both at once.
        (json!(10), json!("Silver"), true, Some(reached(10))),
        (json!(13), json!("Gold"), true, Some(reached(13))),
        (json!(14), Json::Null, false, None),
    ];
    assert_eq!(tier_rows(&p), want, "{p}");
    let target_view = t.progress(&team_target).await;
    assert_eq!(tier_rows(&target_view), want, "the target's own progress agrees");
    assert_eq!(instant(&target_view["achieved_at"]).to_string(), reached(6));
    // Tiers are edited with the goal; tiers left out must stay above a new goal.
    let edited = api
        .patch(&format!("/v1/targets/{team_target}"), &t.manager, &json!({"tiers": [{"goal": 20, "label": "Stretch"}]}))
        .await
        .expect(200)
        .clone();
    assert_eq!(edited["tiers"], json!([{"goal": 20, "label": "Stretch"}]));
    assert_eq!(t.progress(&team_target).await["tiers"][0]["reached"], false);
    // A joiner's tiers are pro-rated like the goal.
    let tiered = t
        .target(json!({"assignee": {"user_id": id0}, "metric": "deals_won", "period": "quarter", "goal": 30,
            "starts_on": month.to_string(), "tiers": [{"goal": 60}]}))
        .await;
    let p = t.progress(&tiered).await;
    assert_eq!(p["original_goal"], 30);
    let (g, tier) = (p["goal"].as_i64().unwrap(), p["tiers"][0]["goal"].as_i64().unwrap());
    assert!(g <= 30 && tier <= 60 && tier >= 2 * g - 1, "{p}");
}

// ----- 4. bad input --------------------------------------------------------------------------

/// Requests that must be refused with the documented error body and change nothing.
struct Refusals<'a> {
    db: &'a TestDatabase,
    api: Api,
    snapshot: BTreeMap<String, Vec<String>>,
}

impl Refusals<'_> {
    async fn refused(&self, what: &str, method: &str, path: &str, token: &str, body: &str, status: u16) -> String {
        let body = if body.is_empty() { None } else { Some(body) };
        let answer = self.api.send(method, path, Some(token), body).await;
        assert_eq!(answer.status, status, "{what}: {method} {path} answered {}", answer.text);
        let code = answer.expect_error(status);
        assert_eq!(self.db.dump().await, self.snapshot, "{what}: nothing is written");
        code
    }
}

async fn bad_target_input_is_refused_and_nothing_is_written(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let a = Tenant::create(&api, "Tenant A", "a.example", None).await;
    let b = Tenant::create(&api, "Tenant B", "b.example", None).await;
    let team = a.team("Closers", &[a.member_id.as_str()]).await;
    let b_team = b.team("Closers", &[b.member_id.as_str()]).await;
    let existing = a
        .target(json!({"assignee": {"user_id": a.member_id}, "metric": "deals_won", "period": "custom", "goal": 5,
            "starts_on": "2025-06-10", "ends_on": "2025-06-20", "tiers": [{"goal": 8}]}))
        .await;
    a.target(json!({"assignee": {"user_id": a.member_id}, "metric": "calls", "period": "month", "goal": 5,
        "starts_on": "2025-06-01", "recurring": true}))
        .await;
    let r = Refusals { db: &db, api: api.clone(), snapshot: db.dump().await };
    let m = a.manager.as_str();
    let post = |body: Json| body.to_string();
    let custom = |starts: &str, ends: &str| {
        json!({"assignee": {"user_id": a.manager_id}, "metric": "deals_won", "period": "custom", "goal": 5,
            "starts_on": starts, "ends_on": ends})
    };
    let with = |mut body: Json, key: &str, value: Json| {
        body[key] = value;
        body.to_string()
    };

    // Custom ranges.
    let code = |what: &'static str, body: String, status: u16| {
        let r = &r;
        async move { r.refused(what, "POST", "/v1/targets", m, &body, status).await }
    };
    assert_eq!(
        code("ends before it starts", post(custom("2025-06-10", "2025-06-09")), 422).await,
        "range_ends_before_start"
    );
    let mut no_end = custom("2025-06-10", "2025-06-12");
    no_end.as_object_mut().unwrap().remove("ends_on");
    assert_eq!(code("no end", post(no_end.clone()), 422).await, "range_required");
    no_end.as_object_mut().unwrap().remove("starts_on");
    assert_eq!(code("no start or end", post(no_end), 422).await, "range_required");
    let recurring = with(custom("2025-06-10", "2025-06-12"), "recurring", json!(true));
    assert_eq!(code("custom recurring", recurring, 422).await, "custom_not_recurring");
    assert_eq!(code("longer than 3660 days", post(custom("2025-01-01", "2035-01-09")), 422).await, "range_too_long");
    let month_with_end = with(custom("2025-06-10", "2025-06-12"), "period", json!("month"));
    assert_eq!(code("an end on a month", month_with_end, 422).await, "field_not_allowed");
    assert_eq!(code("a bad end date", post(custom("2025-06-10", "2025-06-31")), 400).await, "invalid_field");
    assert_eq!(
        code("a bad period", with(custom("2025-06-10", "2025-06-12"), "period", json!("sprint")), 400).await,
        "invalid_body"
    );
    assert_eq!(
        code("unknown metric", with(custom("2025-06-10", "2025-06-12"), "metric", json!("karma")), 404).await,
        "not_found"
    );
    for goal in [json!(0), json!(-3)] {
        assert_eq!(
            code("goal not above zero", with(custom("2025-06-10", "2025-06-12"), "goal", goal), 422).await,
            "goal_not_positive"
        );
    }
    assert_eq!(
        code("goal not a number", with(custom("2025-06-10", "2025-06-12"), "goal", json!("ten")), 400).await,
        "invalid_field"
    );
    // Overlaps: another custom range of the same assignee and metric, and a recurring
    // target over a recurring one.
    let overlap = json!({"assignee": {"user_id": a.member_id}, "metric": "deals_won", "period": "custom", "goal": 5,
        "starts_on": "2025-06-20", "ends_on": "2025-06-30"});
    assert_eq!(code("overlapping range", post(overlap), 409).await, "target_overlaps");
    let again = json!({"assignee": {"user_id": a.member_id}, "metric": "calls", "period": "month", "goal": 7,
        "starts_on": "2026-01-15", "recurring": true});
    assert_eq!(code("overlapping recurring", post(again), 409).await, "target_overlaps");

    // Tiers.
    let tiered = |tiers: Json| with(custom("2025-06-10", "2025-06-12"), "tiers", tiers);
    let six: Vec<Json> = (6..12).map(|g| json!({"goal": g})).collect();
    assert_eq!(code("six tiers", tiered(json!(six)), 422).await, "too_many_tiers");
    assert_eq!(code("tier at the goal", tiered(json!([{"goal": 5}])), 422).await, "tier_not_above_goal");
    assert_eq!(code("tiers descending", tiered(json!([{"goal": 9}, {"goal": 7}])), 422).await, "tiers_not_ascending");
    assert_eq!(code("tiers repeated", tiered(json!([{"goal": 9}, {"goal": 9}])), 422).await, "tiers_not_ascending");
    assert_eq!(code("tier not a number", tiered(json!([{"goal": "x"}])), 400).await, "invalid_field");
    assert_eq!(code("empty label", tiered(json!([{"goal": 9, "label": ""}])), 400).await, "invalid_field");
    let long = "x".repeat(101);
    assert_eq!(code("long label", tiered(json!([{"goal": 9, "label": long}])), 400).await, "invalid_field");
    assert_eq!(code("unknown tier field", tiered(json!([{"goal": 9, "prize": 1}])), 400).await, "invalid_body");
    let path = format!("/v1/targets/{existing}");
    let patch = |what: &'static str, body: Json, status: u16| {
        let (r, path) = (&r, &path);
        async move { r.refused(what, "PATCH", path, m, &body.to_string(), status).await }
    };
    assert_eq!(patch("goal above its tier", json!({"goal": 8}), 422).await, "tier_not_above_goal");
    assert_eq!(patch("tier below the goal", json!({"tiers": [{"goal": 4}]}), 422).await, "tier_not_above_goal");
    assert_eq!(patch("empty patch", json!({}), 400).await, "invalid_field");

    // The calendar.
    let put = |what, token: &str, body: Json, status| {
        let body = body.to_string();
        let token = token.to_owned();
        let r = &r;
        async move { r.refused(what, "PUT", "/v1/calendar", &token, &body, status).await }
    };
    assert_eq!(put("a member", &a.member, json!({}), 403).await, "forbidden");
    assert_eq!(put("a manager", m, json!({}), 403).await, "forbidden");
    assert_eq!(put("weekday capitalised", &a.admin, json!({"week_start": "Sunday"}), 400).await, "invalid_field");
    assert_eq!(put("no working day", &a.admin, json!({"working_days": []}), 422).await, "no_working_days");
    let twice = json!({"working_days": ["monday", "monday"]});
    assert_eq!(put("a working day twice", &a.admin, twice, 422).await, "duplicate_day");
    assert_eq!(put("not a weekday", &a.admin, json!({"working_days": ["caturday"]}), 400).await, "invalid_field");
    assert_eq!(put("not a date", &a.admin, json!({"holidays": ["2025-02-29"]}), 400).await, "invalid_field");
    let twice = json!({"holidays": ["2025-12-25", "2025-12-25"]});
    assert_eq!(put("a holiday twice", &a.admin, twice, 422).await, "duplicate_day");
    let many: Vec<String> = (0..1001).map(|i| format!("{}-01-01", 3000 + i)).collect();
    assert_eq!(put("too many holidays", &a.admin, json!({"holidays": many}), 422).await, "too_many_holidays");
    assert_eq!(put("unknown field", &a.admin, json!({"weekend": ["saturday"]}), 400).await, "invalid_body");

    // Join dates.
    let joined = |id: &str| format!("/v1/users/{id}/joined-on");
    let jb = json!({"joined_on": "2025-06-16"}).to_string();
    assert_eq!(r.refused("a member", "PUT", &joined(&a.member_id), &a.member, &jb, 403).await, "forbidden");
    assert_eq!(r.refused("another tenant's user", "PUT", &joined(&b.member_id), m, &jb, 404).await, "not_found");
    assert_eq!(r.refused("not an id", "PUT", &joined("bob"), m, &jb, 404).await, "not_found");
    let bad = json!({"joined_on": "16/06/2025"}).to_string();
    assert_eq!(r.refused("not a date", "PUT", &joined(&a.member_id), m, &bad, 400).await, "invalid_field");

    // Team progress.
    let tp = |team: &str, query: &str| format!("/v1/teams/{team}/progress?{query}");
    let get = |what, path: String, token: &str, status| {
        let token = token.to_owned();
        let r = &r;
        async move { r.refused(what, "GET", &path, &token, "", status).await }
    };
    assert_eq!(get("another tenant's team", tp(&b_team, "metric=deals_won&period=month"), m, 404).await, "not_found");
    // Custom ranges are checked as a target's are.
    let custom = |range: &str| tp(&team, &format!("metric=deals_won&period=custom{range}"));
    assert_eq!(get("custom without a range", custom(""), m, 422).await, "range_required");
    assert_eq!(get("custom without an end", custom("&starts_on=2025-06-10"), m, 422).await, "range_required");
    let backwards = custom("&starts_on=2025-06-10&ends_on=2025-06-09");
    assert_eq!(get("custom ending before it starts", backwards, m, 422).await, "range_ends_before_start");
    let long = custom("&starts_on=2025-01-01&ends_on=2035-01-09");
    assert_eq!(get("custom longer than 3660 days", long, m, 422).await, "range_too_long");
    let on = custom("&starts_on=2025-06-10&ends_on=2025-06-20&on=2025-06-12");
    assert_eq!(get("custom with a day", on, m, 422).await, "field_not_allowed");
    let bad_end = custom("&starts_on=2025-06-10&ends_on=2025-06-31");
    assert_eq!(get("custom with a bad date", bad_end, m, 400).await, "invalid_field");
    let month_range = tp(&team, "metric=deals_won&period=month&starts_on=2025-06-01");
    assert_eq!(get("a range on a month", month_range, m, 422).await, "field_not_allowed");
    assert_eq!(get("a bad period", tp(&team, "metric=deals_won&period=sprint"), m, 400).await, "invalid_field");
    let none = custom("&starts_on=2025-06-10&ends_on=2025-06-19");
    assert_eq!(get("no target of that range", none, m, 404).await, "not_found");
    assert_eq!(get("no metric", tp(&team, "period=month"), m, 400).await, "invalid_query");
    assert_eq!(get("unknown parameter", tp(&team, "metric=deals_won&period=month&x=1"), m, 400).await, "invalid_query");
    assert_eq!(get("unknown metric", tp(&team, "metric=karma&period=month"), m, 404).await, "not_found");
    assert_eq!(get("bad date", tp(&team, "metric=deals_won&period=month&on=june"), m, 400).await, "invalid_field");
    assert_eq!(get("no targets", tp(&team, "metric=deals_won&period=month&on=2030-01-01"), m, 404).await, "not_found");
    let outsider = a.add_user("Outsider", "outsider@a.example", "member").await.1;
    let r = Refusals { db: &db, api: api.clone(), snapshot: db.dump().await };
    let path = tp(&team, "metric=deals_won&period=month");
    assert_eq!(r.refused("not in the team", "GET", &path, &outsider, "", 403).await, "forbidden");
    // Pagination of the target list.
    for query in ["limit=0", "limit=201", "limit=x", "cursor=nonsense"] {
        let code = r.refused("paging", "GET", &format!("/v1/targets?{query}"), m, "", 400).await;
        assert!(["invalid_query", "invalid_field", "invalid_cursor"].contains(&code.as_str()), "{query}: {code}");
    }
}

// ----- 5. incentives on the effective goal ---------------------------------------------------

/// A user's points: (balance, [(points, reason, target id)]) sorted.
async fn points_of(t: &Tenant, user: &str) -> (i64, Vec<(i64, String, String)>) {
    let body = t.api.get(&format!("/v1/users/{user}/points?limit=200"), &t.manager).await.expect(200).clone();
    let mut entries: Vec<(i64, String, String)> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["points"].as_i64().expect("points"), str_of(&e["reason"]), str_of(&e["target_id"])))
        .collect();
    entries.sort();
    (body["balance"].as_i64().expect("balance"), entries)
}

async fn incentives_award_on_the_effective_goal(backend: Backend) {
    let Some(db) = TestDatabase::new(backend).await else { return };
    let fake = fake_pipedrive(5150, 3, 60, 10, TOKEN).await;
    let service = Service::start(&db.url, &ServiceOptions::default()).await;
    let api = service.api();
    let t = Tenant::create(&api, "Award Sales", "award.example", Some(&fake)).await;
    let owners: Vec<u64> = t.crm.keys().copied().collect();
    let (u0, u1) = (owners[0], owners[1]);
    let (id0, id1) = (t.crm[&u0].clone(), t.crm[&u1].clone());

    // Thirteen months back: u0 and u1 win three deals each.
    let month = month_start(local_date(Timestamp::now_utc()), -13);
    let next = month_start(month, 1);
    let t0 = local_midnight(month);
    fake.with(|crm| {
        for (owner, at) in [(u0, DAY), (u0, 2 * DAY), (u0, 3 * DAY), (u1, DAY), (u1, 2 * DAY + HOUR), (u1, 3 * DAY)] {
            crm.add_deal(NewDeal::won(owner, 100.0, CURRENCY, t0.plus_secs(at))).expect("a deal is added");
        }
    });
    t.sync(&fake).await;
    assert_eq!(won(&fake, u0, t0, local_midnight(next)).len(), 3);
    assert_eq!(won(&fake, u1, t0, local_midnight(next)).len(), 3);

    // u0 joined on the month's 21st: owes goal × working days from then ÷ the month's,
    // rounded up (the default Monday-to-Friday week, no holidays). The goal is the largest
    // whose share is still at most 3: u0's 3 deals reach the effective goal, not the goal
    // as set. u1 (no join date) has the same goal and owes all of it.
    let joined = plus_days(month, 20);
    api.put(&format!("/v1/users/{id0}/joined-on"), &t.manager, &json!({"joined_on": joined.to_string()}))
        .await
        .expect(200);
    let works = [true, true, true, true, true, false, false];
    let (part, whole) = (working_days(joined, next, works, &[]), working_days(month, next, works, &[]));
    let share = |goal: i64| (goal * part + whole - 1) / whole;
    let goal = (4..=500).filter(|g| share(*g) <= 3).max().expect("a goal");
    assert!(goal > 3 && (1..=3).contains(&share(goal)), "goal {goal}, share {}", share(goal));
    let monthly = |id: &str| {
        json!({"assignee": {"user_id": id}, "metric": "deals_won", "period": "month", "goal": goal,
            "starts_on": month.to_string()})
    };
    let target0 = t.target(monthly(&id0)).await;
    let target1 = t.target(monthly(&id1)).await;
    let incentive = |body: Json| {
        let api = api.clone();
        let token = t.manager.clone();
        async move { str_of(&api.post("/v1/incentives", &token, &body).await.expect(201)["id"]) }
    };
    incentive(json!({"target_id": target0, "points": 40, "label": "Goal"})).await;
    incentive(json!({"target_id": target0, "tier_percent": 150, "points": 30, "label": "Stretch"})).await;
    incentive(json!({"target_id": target1, "points": 7})).await;

    // Progress shows the effective goal; the awards follow it.
    let p = t.progress(&target0).await;
    assert_eq!((p["goal"].clone(), p["original_goal"].clone()), (json!(share(goal)), json!(goal)), "{p}");
    assert_eq!((p["value"].clone(), p["status"].as_str()), (json!(3), Some("achieved")), "{p}");
    let p = t.progress(&target1).await;
    assert_eq!((p["goal"].clone(), p["status"].as_str()), (json!(goal), Some("behind")), "{p}");
    // 150 % of the effective goal is reached only if 3 × 100 ≥ share × 150.
    let stretch = 3 * 100 >= share(goal) * 150;
    let mut want = vec![(40, "awarded".to_owned(), target0.clone())];
    if stretch {
        want.push((30, "awarded".to_owned(), target0.clone()));
    }
    want.sort();
    let balance: i64 = want.iter().map(|w| w.0).sum();
    assert_eq!(points_of(&t, &id0).await, (balance, want.clone()));
    // Read again, through the progress and the points: awarded exactly once.
    t.progress(&target0).await;
    assert_eq!(points_of(&t, &id0).await, (balance, want));
    assert_eq!(points_of(&t, &id1).await, (0, vec![]), "u1 owes the whole goal and has 3");
}
