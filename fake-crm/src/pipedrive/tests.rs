//! Tests of the fake Pipedrive's core: paging, filters, errors, faults and mutations, all
//! through [`Crm::respond`] as a connector would see them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::http::Response;
use crate::time::DAY;

const TOKEN: &str = "test-token-9f8e7d";

fn crm() -> Crm {
    Crm::new(Dataset::generate(42, 4, 300, 600), TOKEN)
}

fn get(crm: &Crm, path_and_query: &str) -> Response {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    crm.respond("GET", path, query, &[("X-Api-Token", TOKEN)])
}

fn ok(crm: &Crm, path_and_query: &str) -> Value {
    let response = get(crm, path_and_query);
    assert_eq!(response.status, 200, "{path_and_query}: {:?}", response.body_json());
    response.body_json()
}

/// Follows `next_cursor` to the end and returns every item.
fn all_pages(crm: &Crm, path: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{path}?{query}");
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let body = ok(crm, &url);
        assert_eq!(body["success"], true);
        items.extend(body["data"].as_array().expect("data is an array").iter().cloned());
        match &body["additional_data"]["next_cursor"] {
            Value::Null => return items,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is {other}"),
        }
    }
    panic!("paging did not terminate");
}

fn ids(items: &[Value]) -> Vec<u64> {
    items.iter().map(|i| i["id"].as_u64().unwrap()).collect()
}

/// Asserts that the first item of `path`'s answer has exactly `expected` as its fields, in that
/// order (checked on the raw bytes, since `serde_json::Value` sorts keys).
fn assert_fields(crm: &Crm, path: &str, pointer: &str, expected: &[&str]) {
    let response = get(crm, path);
    let body = response.body_json();
    let item = body.pointer(pointer).unwrap_or_else(|| panic!("{path}: no {pointer}"));
    let mut got: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = expected.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{path}{pointer}: fields");
    let raw = String::from_utf8(response.body).unwrap();
    let mut at = 0;
    for key in expected {
        let needle = format!("\"{key}\":");
        let found = raw[at..].find(&needle).unwrap_or_else(|| panic!("{key} out of order"));
        at += found + needle.len();
    }
}

#[test]
fn paging_returns_every_deal_exactly_once_in_order() {
    let crm = crm();
    let expected: BTreeSet<u64> = crm.deals().iter().filter(|d| !d.is_deleted()).map(|d| d.id).collect();
    for sort in ["id", "update_time", "add_time"] {
        for direction in ["asc", "desc"] {
            let items = all_pages(&crm, "/api/v2/deals", &format!("sort_by={sort}&sort_direction={direction}&limit=7"));
            let got = ids(&items);
            assert_eq!(got.len(), expected.len(), "{sort} {direction}: duplicates?");
            assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), expected);
            let keys: Vec<(String, u64)> = items
                .iter()
                .map(|i| {
                    let key = if sort == "id" { String::new() } else { i[sort].as_str().unwrap().to_owned() };
                    (key, i["id"].as_u64().unwrap())
                })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            if direction == "desc" {
                sorted.reverse();
            }
            assert_eq!(keys, sorted, "{sort} {direction} order");
        }
    }
    // Default limit is 100, and a page of exactly the rest ends with a null cursor.
    let body = ok(&crm, "/api/v2/deals");
    assert_eq!(body["data"].as_array().unwrap().len(), 100);
    let total = expected.len();
    let body = ok(&crm, &format!("/api/v2/deals?limit={total}"));
    assert_eq!(body["data"].as_array().unwrap().len(), total);
    assert_eq!(body["additional_data"]["next_cursor"], Value::Null);
}

#[test]
fn paging_every_other_list_terminates() {
    let crm = crm();
    for (path, count) in [
        ("/api/v2/activities", crm.activities().len()),
        ("/api/v2/persons", crm.persons().len()),
        ("/api/v2/organizations", crm.organizations().len()),
    ] {
        let items = all_pages(&crm, path, "limit=13&sort_by=update_time");
        let unique: BTreeSet<u64> = ids(&items).into_iter().collect();
        assert_eq!(items.len(), count, "{path}");
        assert_eq!(unique.len(), count, "{path}");
    }
    let by_due = all_pages(&crm, "/api/v2/activities", "limit=50&sort_by=due_date&sort_direction=desc");
    assert_eq!(by_due.len(), crm.activities().len());
}

#[test]
fn deleted_activities_are_listed_with_is_deleted() {
    let crm = crm();
    let items = all_pages(&crm, "/api/v2/activities", "limit=500");
    let deleted = items.iter().filter(|a| a["is_deleted"] == true).count();
    assert!(deleted > 0, "the dataset should hold deleted activities");
    assert_eq!(deleted, crm.activities().iter().filter(|a| a.deleted).count());
}

#[test]
fn updated_since_is_inclusive_and_updated_until_exclusive() {
    let crm = crm();
    let deal = crm.deals().iter().filter(|d| !d.is_deleted()).nth(17).unwrap();
    let t = deal.update_time;
    let query =
        |params: &str| ids(&all_pages(&crm, "/api/v2/deals", &format!("{params}&sort_by=update_time&limit=50")));
    assert!(query(&format!("updated_since={t}")).contains(&deal.id));
    assert!(!query(&format!("updated_since={}", t.plus_secs(1))).contains(&deal.id));
    assert!(!query(&format!("updated_until={t}")).contains(&deal.id));
    assert!(query(&format!("updated_until={}", t.plus_secs(1))).contains(&deal.id));
    // Every deal returned satisfies the filter, and none that does is missing.
    let since = query(&format!("updated_since={t}"));
    let expected: Vec<u64> =
        crm.deals().iter().filter(|d| !d.is_deleted() && d.update_time >= t).map(|d| d.id).collect();
    assert_eq!(since.iter().copied().collect::<BTreeSet<_>>(), expected.into_iter().collect());
    // Offsets and fractions are understood (a fraction rounds the bound up).
    let with_offset = format!("updated_since={}", t.plus_secs(7200).to_string().replace('Z', "%2B02:00"));
    assert!(query(&with_offset).contains(&deal.id));
    let with_fraction = format!("updated_since={}", t.to_string().replace('Z', ".5Z"));
    assert!(!query(&with_fraction).contains(&deal.id));
    // And it also filters when sorting by id.
    let by_id = ids(&all_pages(&crm, "/api/v2/deals", &format!("updated_since={t}&limit=9")));
    assert_eq!(by_id.len(), since.len());
    assert_eq!(get(&crm, "/api/v2/deals?updated_since=yesterday").status, 400);
}

#[test]
fn status_filters_and_deleted_deals() {
    let mut crm = crm();
    let all = |crm: &Crm, query: &str| all_pages(crm, "/api/v2/deals", &format!("limit=500&{query}"));
    let won = all(&crm, "status=won");
    assert!(!won.is_empty());
    assert!(won.iter().all(|d| d["status"] == "won" && d["won_time"].is_string()));
    let won_lost = all(&crm, "status=won,lost");
    assert!(won_lost.iter().all(|d| d["status"] == "won" || d["status"] == "lost"));
    assert!(won_lost.len() > won.len());
    let default = all(&crm, "");
    assert!(default.iter().all(|d| d["is_deleted"] == false));
    let explicit = all(&crm, "status=open,won,lost");
    assert_eq!(ids(&default), ids(&explicit));

    let deleted = all(&crm, "status=deleted");
    assert!(!deleted.is_empty(), "the dataset should hold deleted deals");
    assert!(deleted.iter().all(|d| d["is_deleted"] == true && d["status"] == "deleted"));
    let everything = all(&crm, "status=open,won,lost,deleted");
    assert_eq!(everything.len(), default.len() + deleted.len());

    // Deleting moves a deal from the default list to status=deleted, for 30 days.
    let victim = ids(&won)[0];
    crm.delete_deal(victim).unwrap();
    assert!(!ids(&all(&crm, "")).contains(&victim));
    let now_deleted = all(&crm, "status=deleted");
    let item = now_deleted.iter().find(|d| d["id"] == victim).expect("deleted deal listed");
    assert_eq!(item["won_time"], won[0]["won_time"]);
    assert_eq!(item["update_time"], crm.now().to_string());
    crm.advance_clock(Duration::from_secs(31 * DAY as u64));
    assert!(all(&crm, "status=deleted").is_empty());

    assert_eq!(get(&crm, "/api/v2/deals?status=closed").status, 400);
}

#[test]
fn other_deal_filters() {
    let crm = crm();
    let owner = crm.users()[1].id;
    let mine = all_pages(&crm, "/api/v2/deals", &format!("owner_id={owner}&limit=500"));
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|d| d["owner_id"] == owner));
    let wanted = [1001u64, 1005, 1010];
    let some = ok(&crm, "/api/v2/deals?ids=1001,1005,1010");
    let got: Vec<u64> = ids(some["data"].as_array().unwrap());
    let expected: Vec<u64> = wanted.into_iter().filter(|id| !crm.deal(*id).unwrap().is_deleted()).collect();
    assert_eq!(got, expected);
    assert_eq!(get(&crm, "/api/v2/deals?owner_id=abc").status, 400);
    let done = all_pages(&crm, "/api/v2/activities", "done=true&limit=500");
    assert!(done.iter().all(|a| a["done"] == true));
    assert_eq!(get(&crm, "/api/v2/activities?done=1").status, 400);
}

#[test]
fn limit_above_500_is_an_error() {
    let crm = crm();
    for bad in ["501", "0", "-1", "ten", "100000"] {
        let response = get(&crm, &format!("/api/v2/deals?limit={bad}"));
        assert_eq!(response.status, 400, "limit={bad}");
        let body = response.body_json();
        assert_eq!(body["success"], false);
        assert_eq!(body["errorCode"], 400);
        assert_eq!(body["error_info"], "Please check developers.pipedrive.com");
        assert!(body["error"].is_string());
    }
    assert_eq!(get(&crm, "/api/v2/deals?limit=500").status, 200);
    assert_eq!(get(&crm, "/api/v2/activities?limit=501").status, 400);
}

#[test]
fn bad_or_missing_token_gets_the_fixture_401() {
    let crm = crm();
    let fixture: Value = serde_json::json!({
        "success": false,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": "Please check developers.pipedrive.com"
    });
    for headers in [vec![], vec![("x-api-token", "wrong")], vec![("authorization", TOKEN)]] {
        let response = crm.respond("GET", "/api/v2/deals", "", &headers);
        assert_eq!(response.status, 401);
        assert_eq!(response.body_json(), fixture);
        assert_eq!(response.header("content-type"), Some("application/json"));
    }
    // The token in the query string (a legacy v1 form) is not accepted either.
    let response = crm.respond("GET", "/v1/users", &format!("api_token={TOKEN}"), &[]);
    assert_eq!(response.status, 401);
    let log = crm.request_log();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|r| !r.token_ok && r.status == 401));
    assert_eq!(crm.request_count(), 4);
}

#[test]
fn unknown_paths_and_methods() {
    let crm = crm();
    let response = get(&crm, "/api/v2/leads");
    assert_eq!(response.status, 404);
    assert_eq!(response.body_json()["success"], false);
    assert_eq!(response.body_json()["errorCode"], 404);
    assert_eq!(get(&crm, "/api/v2/deals/999999").status, 404);
    assert_eq!(get(&crm, "/api/v2/deals/1001").body_json()["data"]["id"], 1001);
    let post = crm.respond("POST", "/api/v2/deals", "", &[("x-api-token", TOKEN)]);
    assert_eq!(post.status, 405);
}

#[test]
fn injected_faults_come_in_order_then_stop() {
    let crm = crm();
    crm.fail_next(2, Fault::RateLimited { retry_after_secs: 3 });
    crm.fail_next(1, Fault::DailyBudgetExhausted);
    crm.fail_next(1, Fault::ServerError(503));
    crm.fail_next(1, Fault::ServerError(500));
    crm.fail_next(1, Fault::Delay(Duration::from_millis(250)));
    crm.fail_next(1, Fault::Unauthorized);
    assert_eq!(crm.pending_faults(), 7);

    // A request with a bad token does not use up a fault.
    assert_eq!(crm.respond("GET", "/v1/users", "", &[]).status, 401);
    assert_eq!(crm.pending_faults(), 7);

    for _ in 0..2 {
        let r = get(&crm, "/api/v2/deals?status=won&limit=500");
        assert_eq!(r.status, 429);
        assert_eq!(
            r.body_json(),
            serde_json::json!({
                "success": false,
                "error": "Request over limit",
                "errorCode": 429,
                "error_info": "Please check developers.pipedrive.com"
            })
        );
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(r.header("x-ratelimit-limit"), Some("40"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(r.header("x-ratelimit-reset"), Some("3"));
        assert_eq!(r.header("x-daily-ratelimit-token-limit"), Some("150000"));
        let left: u64 = r.header("x-daily-ratelimit-token-remaining").unwrap().parse().unwrap();
        assert!(left > 0);
        assert!(r.header("x-correlation-id").is_some());
    }
    let r = get(&crm, "/api/v2/deals");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-daily-ratelimit-token-remaining"), Some("0"));
    assert!(r.header("retry-after").is_some());
    let r = get(&crm, "/api/v2/deals");
    assert_eq!(r.status, 503);
    assert_eq!(r.body_json()["success"], false);
    assert_eq!(get(&crm, "/api/v2/deals").status, 500);
    let r = get(&crm, "/api/v2/deals");
    assert_eq!(r.status, 200);
    assert_eq!(r.delay, Some(Duration::from_millis(250)));
    assert_eq!(get(&crm, "/api/v2/deals").status, 401);
    let r = get(&crm, "/api/v2/deals");
    assert_eq!((r.status, r.delay), (200, None));
    assert_ne!(r.header("x-daily-ratelimit-token-remaining"), Some("0"));
    assert_eq!(crm.pending_faults(), 0);

    crm.fail_next(3, Fault::ServerError(502));
    crm.clear_faults();
    assert_eq!(get(&crm, "/v1/users").status, 200);

    let statuses: Vec<u16> = crm.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 429, 429, 429, 503, 500, 200, 401, 200, 200]);
    crm.clear_request_log();
    assert!(crm.request_log().is_empty());
    assert_eq!(crm.request_count(), 10);
}

#[test]
fn garbage_cursors_are_rejected() {
    let crm = crm();
    let first = ok(&crm, "/api/v2/deals?sort_by=update_time&limit=5");
    let cursor = first["additional_data"]["next_cursor"].as_str().unwrap().to_owned();
    let not_json = crate::base64::encode(b"offset=5");
    let wrong_shape = crate::base64::encode(br#"{"field":"update_time","id":"x"}"#);
    for bad in
        ["garbage!", "a", not_json.as_str(), wrong_shape.as_str(), "eyJmaWVsZCI6ImlkIiwiaWQiOjg4MDEyfQ%3D%3D%3D%3Dx"]
    {
        let r = get(&crm, &format!("/api/v2/deals?sort_by=update_time&cursor={bad}"));
        assert_eq!(r.status, 400, "cursor {bad}");
        assert_eq!(r.body_json()["success"], false);
    }
    // A cursor issued for another sort order is refused too.
    assert_eq!(get(&crm, &format!("/api/v2/deals?sort_by=id&cursor={cursor}")).status, 400);
    assert_eq!(get(&crm, &format!("/api/v2/deals?sort_by=update_time&cursor={cursor}")).status, 200);
}

#[test]
fn cursors_look_like_the_fixtures() {
    let crm = crm();
    let body = ok(&crm, "/api/v2/activities?limit=2");
    let cursor = body["additional_data"]["next_cursor"].as_str().unwrap();
    let decoded = crate::base64::decode(cursor).unwrap();
    let last = body["data"][1]["id"].as_u64().unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), format!(r#"{{"field":"id","id":{last}}}"#));
    let body = ok(&crm, "/api/v2/deals?status=won&sort_by=update_time&limit=3");
    let cursor = body["additional_data"]["next_cursor"].as_str().unwrap();
    let decoded: Value = serde_json::from_slice(&crate::base64::decode(cursor).unwrap()).unwrap();
    assert_eq!(decoded["field"], "update_time");
    assert_eq!(decoded["fieldValue"], body["data"][2]["update_time"]);
    assert_eq!(decoded["id"], body["data"][2]["id"]);
}

#[test]
fn items_have_every_fixture_field_in_order() {
    let crm = crm();
    assert_fields(
        &crm,
        "/api/v2/deals?limit=1",
        "/data/0",
        &[
            "id",
            "title",
            "owner_id",
            "person_id",
            "org_id",
            "pipeline_id",
            "stage_id",
            "value",
            "currency",
            "add_time",
            "update_time",
            "stage_change_time",
            "is_deleted",
            "is_archived",
            "status",
            "probability",
            "lost_reason",
            "visible_to",
            "close_time",
            "won_time",
            "lost_time",
            "expected_close_date",
            "label_ids",
            "origin",
            "origin_id",
            "channel",
            "channel_id",
            "arr",
            "mrr",
            "acv",
            "custom_fields",
        ],
    );
    assert_fields(
        &crm,
        "/api/v2/activities?limit=1",
        "/data/0",
        &[
            "id",
            "subject",
            "type",
            "owner_id",
            "creator_user_id",
            "is_deleted",
            "add_time",
            "update_time",
            "deal_id",
            "lead_id",
            "person_id",
            "org_id",
            "project_id",
            "due_date",
            "due_time",
            "duration",
            "busy",
            "done",
            "marked_as_done_time",
            "location",
            "participants",
            "attendees",
            "conference_meeting_client",
            "conference_meeting_url",
            "conference_meeting_id",
            "public_description",
            "priority",
            "note",
        ],
    );
    let meeting = crm.activities().iter().find(|a| a.kind == "meeting" && a.location.is_some()).unwrap().id;
    assert_fields(
        &crm,
        &format!("/api/v2/activities/{meeting}"),
        "/data/attendees/0",
        &["email", "name", "status", "is_organizer", "person_id", "user_id"],
    );
    assert_fields(&crm, &format!("/api/v2/activities/{meeting}"), "/data/participants/0", &["person_id", "primary"]);
    let person_fields = [
        "id",
        "name",
        "first_name",
        "last_name",
        "owner_id",
        "org_id",
        "add_time",
        "update_time",
        "emails",
        "phones",
        "is_deleted",
        "visible_to",
        "label_ids",
        "picture_id",
        "custom_fields",
    ];
    assert_fields(&crm, "/api/v2/persons?limit=1", "/data/0", &person_fields);
    assert_fields(&crm, "/api/v2/persons?limit=1", "/data/0/emails/0", &["value", "primary", "label"]);
    assert_fields(
        &crm,
        "/api/v2/organizations?limit=1",
        "/data/0",
        &[
            "id",
            "name",
            "owner_id",
            "add_time",
            "update_time",
            "is_deleted",
            "visible_to",
            "address",
            "label_ids",
            "custom_fields",
        ],
    );
    assert_fields(
        &crm,
        "/api/v2/organizations?limit=1",
        "/data/0/address",
        &[
            "value",
            "country",
            "admin_area_level_1",
            "admin_area_level_2",
            "locality",
            "sublocality",
            "route",
            "street_number",
            "postal_code",
        ],
    );
    let users = ok(&crm, "/v1/users");
    assert_eq!(users.as_object().unwrap().len(), 2, "v1 users: success and data only");
    assert_fields(
        &crm,
        "/v1/users",
        "/data/0",
        &[
            "id",
            "name",
            "default_currency",
            "locale",
            "lang",
            "email",
            "phone",
            "activated",
            "last_login",
            "created",
            "modified",
            "has_created_company",
            "access",
            "active_flag",
            "timezone_name",
            "timezone_offset",
            "role_id",
            "icon_url",
            "is_you",
            "is_deleted",
        ],
    );
    assert_fields(&crm, "/v1/users", "/data/0/access/0", &["app", "admin", "permission_set_id"]);
    assert_eq!(users["data"].as_array().unwrap().len(), 4);
    assert_eq!(users["data"][0]["is_you"], true);
    assert_eq!(users["data"][1]["is_you"], false);
    let created = users["data"][0]["created"].as_str().unwrap();
    assert_eq!(created.len(), 19);
    assert_eq!(&created[10..11], " ");
    let me = ok(&crm, "/v1/users/me");
    assert_eq!(me["data"]["id"], users["data"][0]["id"]);
    assert_eq!(me["data"]["is_you"], true);
    assert!(me["data"]["company_domain"].is_string());
    assert_eq!(ok(&crm, "/api/v1/users"), users);
}

#[test]
fn values_currencies_and_times_look_like_pipedrive() {
    let crm = crm();
    let deals = all_pages(&crm, "/api/v2/deals", "limit=500&status=open,won,lost,deleted");
    let currencies: BTreeSet<&str> = deals.iter().map(|d| d["currency"].as_str().unwrap()).collect();
    assert_eq!(currencies, ["EUR", "GBP", "SEK", "USD"].into_iter().collect());
    assert!(deals.iter().any(|d| d["value"].is_u64()));
    assert!(deals.iter().any(|d| d["value"].is_f64()));
    assert!(deals.iter().all(|d| !d["value"].to_string().ends_with(".0")));
    for d in &deals {
        let t = d["update_time"].as_str().unwrap();
        assert!(Timestamp::parse_rfc3339(t).is_some() && t.ends_with('Z'), "{t}");
        assert!(Timestamp::parse_rfc3339(t).unwrap() < crm.now());
    }
    let lost: Vec<&Value> = deals.iter().filter(|d| d["status"] == "lost").collect();
    assert!(lost.iter().any(|d| d["lost_reason"].is_string()));
    let activities = all_pages(&crm, "/api/v2/activities", "limit=500");
    assert!(activities.iter().any(|a| a["type"] == "call" && a["note"].is_string()));
    assert!(activities.iter().any(|a| a["type"] == "meeting" && a["attendees"].as_array().unwrap().len() == 2));
    assert!(activities.iter().filter(|a| a["done"] == true).all(|a| a["marked_as_done_time"].is_string()));
}

#[test]
fn mutations_move_expected_totals() {
    let mut crm = crm();
    let before = crm.expected_totals();
    assert_eq!(before.len(), 4);
    let won = crm.deals().iter().find(|d| d.status == DealStatus::Won && !d.is_deleted()).unwrap().clone();
    let owner = won.owner_id;
    let other = crm.users().iter().map(|u| u.id).find(|&u| u != owner).unwrap();
    let revenue =
        |crm: &Crm, user: u64| crm.expected_totals()[&user].revenue_cents.get(&won.currency).copied().unwrap_or(0);
    let base_owner = revenue(&crm, owner);
    let base_other = revenue(&crm, other);

    let clock = crm.now();
    crm.set_deal_value(won.id, 12_750.5).unwrap();
    assert_eq!(revenue(&crm, owner), base_owner - won.value_cents + 1_275_050);
    assert!(crm.deal(won.id).unwrap().update_time > clock);

    crm.reassign_deal(won.id, other).unwrap();
    assert_eq!(revenue(&crm, owner), base_owner - won.value_cents);
    assert_eq!(revenue(&crm, other), base_other + 1_275_050);
    assert_eq!(crm.expected_totals()[&other].deals_won, before[&other].deals_won + 1);

    crm.mark_deal_lost(won.id).unwrap();
    assert_eq!(crm.expected_totals()[&other].deals_won, before[&other].deals_won);
    assert!(crm.deal(won.id).unwrap().lost_reason.is_some());
    crm.reopen_deal(won.id).unwrap();
    assert_eq!(crm.deal(won.id).unwrap().status, DealStatus::Open);
    let at = Timestamp::from_ymd_hms(2025, 5, 20, 12, 0, 0).unwrap();
    crm.mark_deal_won(won.id, at).unwrap();
    assert_eq!(revenue(&crm, other), base_other + 1_275_050);
    let in_may = crm.expected_totals_between(
        Some(Timestamp::from_ymd_hms(2025, 5, 1, 0, 0, 0).unwrap()),
        Some(Timestamp::from_ymd_hms(2025, 6, 1, 0, 0, 0).unwrap()),
    );
    assert!(in_may[&other].deals_won >= 1);
    crm.delete_deal(won.id).unwrap();
    assert_eq!(revenue(&crm, other), base_other);
    assert_eq!(crm.set_deal_value(won.id, 1.0), Err(CrmError::DealDeleted(won.id)));
    crm.restore_deal(won.id).unwrap();
    assert_eq!(revenue(&crm, other), base_other + 1_275_050);

    let new_id = crm.add_deal(NewDeal::won(owner, 1000.25, "SEK", crm.now())).unwrap();
    assert_eq!(new_id, crm.deals().last().unwrap().id);
    assert_eq!(
        crm.expected_totals()[&owner].revenue("SEK"),
        format_cents(before[&owner].revenue_cents.get("SEK").copied().unwrap_or(0) + 100_025)
    );
    let listed = ok(&crm, &format!("/api/v2/deals/{new_id}"));
    assert_eq!(listed["data"]["value"], 1000.25);
    assert!(listed["data"]["title"].as_str().unwrap().contains(" - "));

    // Activities: done / undone / delete / add.
    let call = crm.activities().iter().find(|a| a.kind == "call" && !a.deleted && !a.done).unwrap().clone();
    let calls = |crm: &Crm| crm.expected_totals()[&call.owner_id].calls;
    let base_calls = calls(&crm);
    crm.set_activity_done(call.id, true).unwrap();
    assert_eq!(calls(&crm), base_calls + 1);
    assert_eq!(crm.activity(call.id).unwrap().marked_as_done_time, Some(crm.now()));
    crm.set_activity_done(call.id, false).unwrap();
    assert_eq!(calls(&crm), base_calls);
    crm.set_activity_done(call.id, true).unwrap();
    crm.delete_activity(call.id).unwrap();
    assert_eq!(calls(&crm), base_calls);
    assert_eq!(crm.set_activity_done(call.id, true), Err(CrmError::ActivityDeleted(call.id)));
    let meeting = crm.add_activity(NewActivity::meeting(owner).done_at(crm.now())).unwrap();
    assert_eq!(crm.expected_totals()[&owner].meetings, before[&owner].meetings + 1);
    assert_eq!(crm.activity(meeting).unwrap().kind, "meeting");

    assert_eq!(crm.reassign_deal(1001, 1), Err(CrmError::UnknownUser(1)));
    assert_eq!(crm.mark_deal_lost(9_999_999), Err(CrmError::UnknownDeal(9_999_999)));
    assert!(crm.add_deal(NewDeal::open(owner, f64::NAN, "USD")).is_err());
    assert!(crm.add_deal(NewDeal::open(owner, 1.0, "usd")).is_err());
}

#[test]
fn an_incremental_read_sees_every_mutation() {
    let mut crm = crm();
    let high_water = crm.deals().iter().map(|d| d.update_time).max().unwrap();
    let changed = crm.deals().iter().find(|d| !d.is_deleted()).unwrap().id;
    crm.set_deal_value(changed, 5.0).unwrap();
    let deleted = crm.deals().iter().rev().find(|d| !d.is_deleted()).unwrap().id;
    crm.delete_deal(deleted).unwrap();
    let since = format!("updated_since={high_water}&sort_by=update_time");
    let updated = ids(&all_pages(&crm, "/api/v2/deals", &since));
    assert!(updated.contains(&changed));
    let gone = ids(&all_pages(&crm, "/api/v2/deals", &format!("{since}&status=deleted")));
    assert!(gone.contains(&deleted));
    // The logical clock is monotonic and after every generated time.
    assert!(crm.deal(changed).unwrap().update_time > high_water);
    assert!(crm.deal(deleted).unwrap().update_time > crm.deal(changed).unwrap().update_time);
}

#[test]
fn canaries_cover_what_is_served_and_nothing_else() {
    let crm = crm();
    let canaries = crm.canaries();
    assert!(canaries.len() > 100);
    assert!(canaries.iter().all(|c| c.len() >= 7), "short canaries risk false positives");
    let mut served = String::new();
    for path in ["/api/v2/deals", "/api/v2/activities", "/api/v2/persons", "/api/v2/organizations"] {
        for item in all_pages(&crm, path, "limit=500&status=open,won,lost,deleted") {
            served.push_str(&item.to_string());
        }
    }
    served.push_str(&ok(&crm, "/v1/users").to_string());
    served.push_str(&ok(&crm, "/v1/users/me").to_string());
    for canary in &canaries {
        assert!(served.contains(canary.as_str()), "{canary} is never served");
    }
    // Every served person, user and organisation is covered.
    for p in crm.persons() {
        assert!(canaries.contains(&p.name) && canaries.contains(&p.emails[0].value));
    }
    for u in crm.users() {
        assert!(crm.user_canaries().contains(&u.email));
        assert!(!crm.contact_canaries().contains(&u.email));
    }
    // No canary is a common word or a fragment of the API's own vocabulary.
    let vocabulary = "success data additional_data next_cursor deals activities call meeting \
                      won lost open deleted USD EUR GBP SEK ManuallyCreated accepted";
    assert!(canaries.iter().all(|c| !vocabulary.contains(c.as_str())));
}

#[test]
fn same_seed_same_data() {
    let a = crm();
    let b = crm();
    assert_eq!(a.canaries(), b.canaries());
    assert_eq!(get(&a, "/api/v2/deals?limit=500").body, get(&b, "/api/v2/deals?limit=500").body);
    let c = Crm::new(Dataset::generate(43, 4, 300, 600), TOKEN);
    assert_ne!(a.canaries(), c.canaries());
    // A window ending now keeps everything in the past.
    let now = Timestamp::now_utc();
    let live = Crm::new(Dataset::generate_with(&DatasetSpec::new(1, 3, 50, 50).ending_at(now)), TOKEN);
    assert!(live.deals().iter().all(|d| d.update_time < now));
    assert!(live.now() >= now);
}

#[test]
fn tiny_and_empty_datasets_work() {
    let crm = Crm::new(Dataset::generate(1, 1, 0, 0), TOKEN);
    let body = ok(&crm, "/api/v2/deals");
    assert_eq!(body["data"], serde_json::json!([]));
    assert_eq!(body["additional_data"]["next_cursor"], Value::Null);
    assert_eq!(ok(&crm, "/v1/users")["data"].as_array().unwrap().len(), 1);
    assert!(crm.expected_totals()[&crm.users()[0].id] == OwnerTotals::default());
}
