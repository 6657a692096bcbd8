//! The Pipedrive connector run natively against recorded answers (`tests/fixtures/`), with
//! the SDK's fake host checking every change against the contract.

use std::collections::BTreeMap;

use oneup_connector_pipedrive::{
    ACTIVITIES_SINCE, ARCHIVED_SINCE, ARCHIVED_UNAVAILABLE, CALLS, DEALS_SINCE, DEALS_WON, DELETED_SINCE, MEETINGS,
    Pipedrive, REVENUE,
};
use oneup_connector_sdk::testing::{DEFAULT_NOW_MS, FakeHost, run_roster, run_sync};
use oneup_connector_sdk::time::{format_rfc3339, parse_rfc3339};
use oneup_connector_sdk::{
    Amount, AuthScheme, Connector, ConnectorError, Cursor, HttpError, HttpResponse, KpiChange, MetricKind, OccurredAt,
    SyncOutcome, codes,
};

const DEALS_PAGE1: &str = include_str!("fixtures/v2_deals_won_page1.json");
const DEALS_PAGE2: &str = include_str!("fixtures/v2_deals_won_page2.json");
const DEALS_CHANGED: &str = include_str!("fixtures/v2_deals_incremental_updated_since.json");
const DEALS_DELETED: &str = include_str!("fixtures/v2_deals_status_deleted.json");
const DEALS_REOPENED: &str = include_str!("fixtures/authored_v2_deals_reopened_reassigned.json");
const ACTIVITIES_PAGE1: &str = include_str!("fixtures/v2_activities_page1.json");
const ACTIVITIES_PAGE2: &str = include_str!("fixtures/v2_activities_page2.json");
const ACTIVITIES_CHANGED: &str = include_str!("fixtures/authored_v2_activities_changed.json");
const USERS: &str = include_str!("fixtures/v1_users.json");
const UNAUTHORIZED: &str = include_str!("fixtures/error_401_unauthorized.json");
const RATE_LIMITED: &str = include_str!("fixtures/error_429_rate_limited.json");

const EMPTY: &str = r#"{"success":true,"data":[],"additional_data":{"next_cursor":null}}"#;
const DEALS_CURSOR: &str =
    "eyJmaWVsZCI6InVwZGF0ZV90aW1lIiwiZmllbGRWYWx1ZSI6IjIwMjUtMDYtMDVUMDk6MTI6MDBaIiwiaWQiOjEwMDN9";
const ACTIVITIES_CURSOR: &str = "eyJmaWVsZCI6ImlkIiwiaWQiOjg4MDEyfQ";

/// The personal data planted in the fixtures (from `shared/crm-fixtures/canaries.txt`).
const CANARIES: &[&str] = &[
    "Zephyrine",
    "Quillfeather",
    "Ignatius",
    "Solveig",
    "Quibblewick",
    "Marrowfen",
    "Obsidian",
    "Pernilla",
    "Dorian",
    "halvorsen",
    "7700",
    "@",
];

fn ms(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

/// The query of a list read: sorted by update time, 500 to a page, plus `extra`.
fn list_query<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![("limit", "500"), ("sort_by", "update_time"), ("sort_direction", "asc")];
    query.extend_from_slice(extra);
    query
}

/// Where the first sync starts looking for deleted deals: an hour before its clock.
fn first_deleted_since() -> String {
    format_rfc3339(DEFAULT_NOW_MS - 3_600_000)
}

fn host() -> FakeHost {
    FakeHost::new().with_config("base_url", "https://halvorsen.pipedrive.com")
}

/// A host serving everything the first sync reads.
fn first_sync_host() -> FakeHost {
    let mut host = host();
    let deleted_since = first_deleted_since();
    host.respond_json("/api/v2/deals", &list_query(&[]), DEALS_PAGE1);
    host.respond_json("/api/v2/deals", &list_query(&[("cursor", DEALS_CURSOR)]), DEALS_PAGE2);
    host.respond_json("/api/v2/deals/archived", &list_query(&[]), EMPTY);
    host.respond_json("/api/v2/deals", &list_query(&[("status", "deleted"), ("updated_since", &deleted_since)]), EMPTY);
    host.respond_json("/api/v2/activities", &list_query(&[]), ACTIVITIES_PAGE1);
    host.respond_json("/api/v2/activities", &list_query(&[("cursor", ACTIVITIES_CURSOR)]), ACTIVITIES_PAGE2);
    host
}

/// A cursor as a sync on 2025-06-10 would have left it.
fn cursor_of_june_10() -> Cursor {
    let june_10 = ms("2025-06-10T00:00:00Z");
    Cursor::new()
        .with(DEALS_SINCE, june_10)
        .with(ARCHIVED_SINCE, june_10)
        .with(DELETED_SINCE, june_10)
        .with(ACTIVITIES_SINCE, june_10)
}

/// Serves an incremental sync from [`cursor_of_june_10`] with these deal, deleted-deal and
/// activity pages (and no archived deal).
fn serve_incremental(host: &mut FakeHost, deals: &str, deleted: &str, activities: &str) {
    let since = [("updated_since", "2025-06-10T00:00:00Z")];
    host.respond_json("/api/v2/deals", &list_query(&since), deals);
    host.respond_json("/api/v2/deals/archived", &list_query(&since), EMPTY);
    host.respond_json("/api/v2/deals", &list_query(&[("status", "deleted"), since[0]]), deleted);
    host.respond_json("/api/v2/activities", &list_query(&since), activities);
}

fn assert_clean(host: &FakeHost) {
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    assert!(host.unmatched_requests().is_empty(), "{:?}", host.unmatched_requests());
}

fn totals(host: &FakeHost) -> (i64, BTreeMap<String, i64>, i64, i64) {
    (host.count_total(DEALS_WON), host.money_totals(REVENUE), host.count_total(CALLS), host.count_total(MEETINGS))
}

fn money(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect()
}

#[test]
fn the_descriptor_is_what_the_contract_says() {
    let d = Pipedrive::describe();
    assert!(d.problems().is_empty(), "{:?}", d.problems());
    assert_eq!(d.id, "pipedrive");
    assert_eq!(d.base_url_key, "base_url");
    assert!(d.config.iter().any(|s| s.key == "base_url" && s.required));
    assert!(d.secrets.iter().any(|s| s.key == "api_token" && s.required));
    assert_eq!(d.auth, AuthScheme::api_key_header("x-api-token", "api_token"));
    assert_eq!(d.allowed_hosts, ["*.pipedrive.com", "api.pipedrive.com"]);
    let metrics: Vec<(&str, MetricKind)> = d.metrics.iter().map(|m| (m.slug.as_str(), m.kind)).collect();
    assert_eq!(
        metrics,
        [
            ("deals_won", MetricKind::Count),
            ("revenue", MetricKind::Money),
            ("calls", MetricKind::Count),
            ("meetings", MetricKind::Count),
        ]
    );
    assert_eq!(d.cursor_keys, ["deals_since_ms", "archived_since_ms", "deleted_since_ms", "activities_since_ms"]);
    for code in oneup_connector_sdk::STANDARD_CODES {
        assert!(d.declares_code(code), "{code}");
    }
}

#[test]
fn the_first_sync_reads_everything_and_the_totals_add_up() {
    let mut host = first_sync_host();
    assert_eq!(run_sync(Pipedrive, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert!(
        host.requests()
            .iter()
            .all(|r| r.query_value("updated_since").is_none() || r.query_value("status") == Some("deleted"))
    );
    let (deals, revenue, calls, meetings) = totals(&host);
    assert_eq!(deals, 5);
    assert_eq!(
        revenue,
        money(&[("EUR", 31_500_000_000), ("GBP", 12_750_500_000), ("SEK", 410_000_000_000), ("USD", 54_200_000_000),])
    );
    assert_eq!((calls, meetings), (2, 1));
    // Nothing existed before the first sync, so it retracts nothing.
    assert!(host.changes().iter().all(|c| matches!(c, KpiChange::Upsert(_))));
    let facts = host.facts();
    let won = &facts[&("deals_won".to_owned(), "1001".to_owned())];
    assert_eq!(won.owner.as_str(), "9101");
    assert_eq!(won.occurred_at, OccurredAt::Instant(ms("2025-06-02T10:01:55Z")));
    let revenue = &facts[&("revenue".to_owned(), "1001".to_owned())];
    assert_eq!(revenue.occurred_at, won.occurred_at);
    let call = &facts[&("calls".to_owned(), "88011".to_owned())];
    assert_eq!(call.occurred_at, OccurredAt::Instant(ms("2025-05-28T09:52:10Z")));
    assert_eq!(call.value, Amount::Count(1));
}

#[test]
fn only_ids_numbers_times_and_currencies_leave_the_connector() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    for change in host.changes() {
        let line = change.to_string();
        for canary in CANARIES {
            assert!(!line.contains(canary), "{line} holds {canary}");
        }
        assert!(change.source_id().as_str().bytes().all(|b| b.is_ascii_digit()));
        if let KpiChange::Upsert(upsert) = change {
            assert!(upsert.owner.as_str().bytes().all(|b| b.is_ascii_digit()));
        }
    }
}

#[test]
fn pages_follow_the_cursor_and_each_page_is_checkpointed() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    let paths: Vec<(&str, Option<&str>)> =
        host.requests().iter().map(|r| (r.path.as_str(), r.query_value("cursor"))).collect();
    assert_eq!(
        paths,
        [
            ("/api/v2/deals", None),
            ("/api/v2/deals", Some(DEALS_CURSOR)),
            ("/api/v2/deals/archived", None),
            ("/api/v2/deals", None),
            ("/api/v2/activities", None),
            ("/api/v2/activities", Some(ACTIVITIES_CURSOR)),
        ]
    );
    let deleted_since = DEFAULT_NOW_MS - 3_600_000;
    let deals_marks: Vec<Option<i64>> = host.checkpoints().iter().map(|c| c.get(DEALS_SINCE)).collect();
    assert_eq!(deals_marks[..2], [Some(ms("2025-06-05T09:12:00Z")), Some(ms("2025-06-09T12:00:04Z"))]);
    assert!(host.checkpoints().iter().all(|c| c.get(DELETED_SINCE) == Some(deleted_since)));
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(DEALS_SINCE), Some(ms("2025-06-09T12:00:04Z")));
    assert_eq!(last.get(ACTIVITIES_SINCE), Some(ms("2025-06-12T10:20:31Z")));
    // Every page's changes are handed over before its checkpoint (the empty pages of archived
    // and deleted deals hand over none).
    assert_eq!(host.batch_sizes(), [6, 4, 2, 1]);
}

#[test]
fn a_second_sync_resumes_from_the_final_cursor() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    let cursor = host.last_checkpoint().unwrap().clone();
    let deleted_since = first_deleted_since();
    host.respond_json("/api/v2/deals", &list_query(&[("updated_since", "2025-06-09T12:00:04Z")]), EMPTY);
    host.respond_json("/api/v2/deals", &list_query(&[("status", "deleted"), ("updated_since", &deleted_since)]), EMPTY);
    host.respond_json("/api/v2/activities", &list_query(&[("updated_since", "2025-06-12T10:20:31Z")]), EMPTY);
    host.clear_requests();
    let before = host.changes().len();
    assert_eq!(run_sync(Pipedrive, &mut host, Some(cursor.clone())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(host.requests().len(), 4);
    assert_eq!(host.changes().len(), before);
    assert_eq!(host.last_checkpoint(), Some(&cursor));
}

#[test]
fn an_edited_amount_is_upserted_and_a_lost_deal_retracted() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    serve_incremental(&mut host, DEALS_CHANGED, EMPTY, EMPTY);
    let before = host.changes().len();
    assert_eq!(run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    let lines: Vec<String> = host.changes()[before..].iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "upsert deals_won source=1002 owner=9102 at=2025-06-03T16:22:41Z 1",
            "upsert revenue source=1002 owner=9102 at=2025-06-03T16:22:41Z 29800 EUR",
            "retract deals_won source=1006",
            "retract revenue source=1006",
        ]
    );
    let (deals, revenue, _, _) = totals(&host);
    assert_eq!(deals, 5);
    assert_eq!(revenue["EUR"], 29_800_000_000);
    assert_eq!(host.last_checkpoint().unwrap().get(DEALS_SINCE), Some(ms("2025-06-13T14:05:51Z")));
}

#[test]
fn a_won_deal_that_was_lost_loses_its_facts() {
    let mut host = host();
    let won = DEALS_CHANGED.replace(r#""status": "lost""#, r#""status": "won""#);
    let won = won.replace(r#""won_time": null"#, r#""won_time": "2025-06-13T14:05:51Z""#);
    serve_incremental(&mut host, &won, EMPTY, EMPTY);
    run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_eq!(host.money_totals(REVENUE)["EUR"], 124_800_000_000);
    serve_incremental(&mut host, DEALS_CHANGED, EMPTY, EMPTY);
    run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    assert_eq!(host.money_totals(REVENUE)["EUR"], 29_800_000_000);
    assert_eq!(host.count_total(DEALS_WON), 1);
}

#[test]
fn reopened_deals_retract_and_reassigned_deals_move() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    serve_incremental(&mut host, DEALS_REOPENED, EMPTY, EMPTY);
    run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    let facts = host.facts();
    assert!(!facts.contains_key(&("deals_won".to_owned(), "1001".to_owned())));
    assert!(!facts.contains_key(&("revenue".to_owned(), "1001".to_owned())));
    let moved = &facts[&("revenue".to_owned(), "1004".to_owned())];
    assert_eq!(moved.owner.as_str(), "9101");
    // A won deal in a currency that is no code counts as won, without revenue.
    assert!(facts.contains_key(&("deals_won".to_owned(), "1007".to_owned())));
    assert!(!facts.contains_key(&("revenue".to_owned(), "1007".to_owned())));
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(oneup_connector_pipedrive::RECORDS_SKIPPED.to_owned(), 1)));
}

#[test]
fn a_deleted_deal_is_retracted() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    serve_incremental(&mut host, EMPTY, DEALS_DELETED, EMPTY);
    let before = host.changes().len();
    run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    let lines: Vec<String> = host.changes()[before..].iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["retract deals_won source=1003", "retract revenue source=1003"]);
    let (deals, revenue, _, _) = totals(&host);
    assert_eq!(deals, 4);
    assert!(!revenue.contains_key("GBP"));
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(DELETED_SINCE), Some(ms("2025-06-14T17:20:02Z")));
    assert_eq!(last.get(DEALS_SINCE), Some(ms("2025-06-10T00:00:00Z")));
}

#[test]
fn activities_undone_deleted_or_retyped_are_retracted() {
    let mut host = first_sync_host();
    run_sync(Pipedrive, &mut host, None).unwrap();
    assert_eq!((host.count_total(CALLS), host.count_total(MEETINGS)), (2, 1));
    serve_incremental(&mut host, EMPTY, EMPTY, ACTIVITIES_CHANGED);
    let before = host.changes().len();
    run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    let lines: Vec<String> = host.changes()[before..].iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "retract calls source=88011",
            "retract meetings source=88011",
            "retract calls source=88012",
            "retract meetings source=88012",
            "retract calls source=88013",
            "retract meetings source=88013",
            "upsert meetings source=88015 owner=9101 at=2025-06-13T12:00:00Z 1",
            "retract calls source=88015",
        ]
    );
    assert_eq!((host.count_total(CALLS), host.count_total(MEETINGS)), (0, 1));
    assert_eq!(host.last_checkpoint().unwrap().get(ACTIVITIES_SINCE), Some(ms("2025-06-13T12:00:00Z")));
}

#[test]
fn the_roster_lists_users_with_an_email() {
    let mut host = host();
    host.respond_json("/v1/users", &[("limit", "500"), ("start", "0")], USERS);
    let roster = run_roster(Pipedrive, &mut host).unwrap();
    assert_clean(&host);
    let entries: Vec<(&str, &str)> = roster.iter().map(|e| (e.crm_user_id.as_str(), e.email.as_str())).collect();
    assert_eq!(
        entries,
        [
            ("9101", "pernilla.vasquez-okonkwo@halvorsen-sales.example"),
            ("9102", "dorian.achterberg@halvorsen-sales.example"),
        ]
    );

    let mut host = self::host();
    host.respond_json(
        "/v1/users",
        &[("limit", "500"), ("start", "0")],
        r#"{"success":true,"data":[{"id":1,"email":null},{"id":2,"email":" "},{"id":3}],
            "additional_data":{"pagination":{"start":0,"limit":500,"more_items_in_collection":true,"next_start":3}}}"#,
    );
    host.respond_json(
        "/v1/users",
        &[("limit", "500"), ("start", "3")],
        r#"{"success":true,"data":[{"id":4,"email":"x@y.example"}]}"#,
    );
    let roster = run_roster(Pipedrive, &mut host).unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0].crm_user_id.as_str(), "4");
}

#[test]
fn a_401_answer_is_a_clear_error() {
    let mut host = host();
    host.respond("/api/v2/deals", &list_query(&[]), HttpResponse::new(401, UNAUTHORIZED));
    let error = run_sync(Pipedrive, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::with_status(codes::HTTP_UNAUTHORIZED, 401));
    assert_eq!(error.to_string(), "http_unauthorized (HTTP 401)");
    assert_clean(&host);
    assert!(host.checkpoints().is_empty());

    let mut host = self::host();
    host.fail("/api/v2/deals", &list_query(&[]), HttpError::Unauthorized);
    let error = run_sync(Pipedrive, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::new(codes::HTTP_UNAUTHORIZED));
}

#[test]
fn a_spent_budget_ends_the_sync_at_the_last_checkpoint() {
    let mut host = first_sync_host();
    host.respond(
        "/api/v2/deals",
        &list_query(&[("cursor", DEALS_CURSOR)]),
        HttpResponse::new(429, RATE_LIMITED)
            .with_header("retry-after", "2")
            .with_header("x-daily-ratelimit-token-remaining", "0"),
    );
    assert_eq!(run_sync(Pipedrive, &mut host, None), Ok(SyncOutcome::BudgetExhausted { resume_at: None }));
    assert_clean(&host);
    assert_eq!(host.checkpoints().len(), 1);
    assert_eq!(host.last_checkpoint().unwrap().get(DEALS_SINCE), Some(ms("2025-06-05T09:12:00Z")));
    assert_eq!(host.count_total(DEALS_WON), 3);
    assert_eq!(host.logs().first().map(|l| l.code.as_str()), Some("budget_exhausted"));
}

#[test]
fn a_body_that_is_not_json_is_bad_json() {
    let mut host = host();
    host.respond_json("/api/v2/deals", &list_query(&[]), "<html>maintenance</html>");
    let error = run_sync(Pipedrive, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::with_status(codes::BAD_JSON, 200));
}

/// Deal 1002 of the incremental fixture, archived while won (archiving keeps the status).
fn archived_won_page() -> String {
    let won = DEALS_CHANGED.replace(r#""status": "lost""#, r#""status": "won""#);
    won.replace(r#""won_time": null"#, r#""won_time": "2025-06-13T14:05:51Z""#)
        .replace(r#""is_archived": false"#, r#""is_archived": true"#)
}

#[test]
fn archived_won_deals_still_count_and_are_read_from_their_own_list() {
    let mut host = host();
    serve_incremental(&mut host, EMPTY, EMPTY, EMPTY);
    let since = [("updated_since", "2025-06-10T00:00:00Z")];
    host.respond_json("/api/v2/deals/archived", &list_query(&since), &archived_won_page());
    assert_eq!(run_sync(Pipedrive, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    let facts = host.facts();
    // Both deals of the page are won: each counts, revenue in its own currency.
    assert_eq!(host.count_total(DEALS_WON), 2);
    assert_eq!(host.money_totals(REVENUE)["EUR"], 124_800_000_000);
    assert!(facts.contains_key(&("deals_won".to_owned(), "1006".to_owned())));
    // The archived list has its own watermark.
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(ARCHIVED_SINCE), Some(ms("2025-06-13T14:05:51Z")));
    assert_eq!(last.get(DEALS_SINCE), Some(ms("2025-06-10T00:00:00Z")));
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(oneup_connector_pipedrive::ARCHIVED_READ.to_owned(), 2)));
}

#[test]
fn a_server_without_the_archived_route_is_read_without_it() {
    // No canned answer for `/api/v2/deals/archived`: the fake host answers 404, as a server
    // predating the route would.
    let mut host = host();
    let deleted_since = first_deleted_since();
    host.respond_json("/api/v2/deals", &list_query(&[]), DEALS_PAGE1);
    host.respond_json("/api/v2/deals", &list_query(&[("cursor", DEALS_CURSOR)]), DEALS_PAGE2);
    host.respond_json("/api/v2/deals", &list_query(&[("status", "deleted"), ("updated_since", &deleted_since)]), EMPTY);
    host.respond_json("/api/v2/activities", &list_query(&[]), ACTIVITIES_PAGE1);
    host.respond_json("/api/v2/activities", &list_query(&[("cursor", ACTIVITIES_CURSOR)]), ACTIVITIES_PAGE2);
    assert_eq!(run_sync(Pipedrive, &mut host, None), Ok(SyncOutcome::Complete));
    let unmatched: Vec<&str> = host.unmatched_requests().iter().map(|r| r.path.as_str()).collect();
    assert_eq!(unmatched, ["/api/v2/deals/archived"]);
    assert_eq!(totals(&host).0, 5);
    assert!(host.logs().iter().any(|l| l.code == ARCHIVED_UNAVAILABLE));
    assert_eq!(host.last_checkpoint().unwrap().get(ARCHIVED_SINCE), None);

    // A 404 after the first page is an error, not a missing route.
    let mut host = first_sync_host();
    host.respond_json("/api/v2/deals/archived", &list_query(&[]), DEALS_PAGE1);
    let error = run_sync(Pipedrive, &mut host, None).unwrap_err();
    assert_eq!(error.http_status, Some(404), "{error:?}");
}
