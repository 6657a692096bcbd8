//! The Bullhorn connector run natively against recorded answers (`tests/fixtures/`), with
//! the SDK's fake host checking every change, checkpoint and snapshot against the contract.

use oneup_connector_bullhorn::{
    Bullhorn, PLACEMENT_FEES, PLACEMENTS, PLACEMENTS_SINCE, RECORDS_SKIPPED, SUBMISSIONS, SUBMISSIONS_SINCE,
};
use oneup_connector_sdk::testing::{DEFAULT_NOW_MS, FakeHost, run_roster, run_sync};
use oneup_connector_sdk::{
    Amount, AuthScheme, Connector, ConnectorError, Cursor, HttpError, HttpResponse, KpiChange, MetricKind, OccurredAt,
    SyncOutcome, codes,
};
use serde_json::{Value, json};

const PLACEMENTS_PAGE1: &str = include_str!("fixtures/search_placement_page1.json");
const PLACEMENTS_PAGE2: &str = include_str!("fixtures/search_placement_page2.json");
const PLACEMENTS_CHANGED: &str = include_str!("fixtures/query_placement_incremental.json");
const PLACEMENT_FEES_CASES: &str = include_str!("fixtures/authored_query_placement_fees.json");
const SUBMISSIONS_PAGE1: &str = include_str!("fixtures/query_jobsubmission_page1.json");
const SUBMISSIONS_CHANGED: &str = include_str!("fixtures/authored_query_jobsubmission_changed.json");
const USERS: &str = include_str!("fixtures/query_corporateuser.json");
const INVALID_REST_TOKEN: &str = include_str!("fixtures/error_401_invalid_rest_token.json");
const RATE_LIMITED: &str = include_str!("fixtures/error_429_rate_limited.json");

const EMPTY: &str = r#"{"total":0,"start":0,"count":0,"data":[]}"#;
const PLACEMENT_FIELDS: &str = "id,dateAdded,dateLastModified,salary,fee,flatFee,owner(id)";
const SUBMISSION_FIELDS: &str = "id,dateAdded,dateLastModified,isDeleted,sendingUser(id)";
const DAY: i64 = 86_400_000;
/// 2025-06-10T00:00:00Z.
const JUNE_10: i64 = 1_749_513_600_000;

/// The personal data planted in the fixtures (from `shared/crm-fixtures/canaries.txt`).
const CANARIES: &[&str] = &[
    "Wilhelmina",
    "Zorbatov",
    "Pemberton",
    "Vantongeren",
    "Fairbairn",
    "Cobblestone",
    "Silverquay",
    "Wrenfield",
    "Fairweather",
    "Pelletier",
    "Leopold",
    "Ashcombe",
    "Okafor",
    "+1 312-555-0142",
    "+44 7700 900862",
    "@",
];

/// The query of one page of an incremental read.
fn changed_query(where_: &str, fields: &'static str, start: &str) -> Vec<(String, String)> {
    [
        ("where", where_),
        ("fields", fields),
        ("orderBy", "dateLastModified"),
        ("start", start),
        ("count", "500"),
        ("showTotalMatched", "true"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn pairs(query: &[(String, String)]) -> Vec<(&str, &str)> {
    query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The snapshot window of a sync at `now` with the default 90 days.
fn window(now: i64) -> (i64, i64) {
    (now - 90 * DAY, now + DAY)
}

/// The query of the snapshot read after placement `after`.
fn snapshot_query(now: i64, after: i64) -> Vec<(String, String)> {
    let (from, to) = window(now);
    let where_ = format!("dateAdded>={from} AND dateAdded<{to} AND id>{after}");
    [
        ("where", where_.as_str()),
        ("fields", PLACEMENT_FIELDS),
        ("orderBy", "id"),
        ("start", "0"),
        ("count", "500"),
        ("showTotalMatched", "true"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// One page holding the records of these pages, sorted by id.
fn merged(pages: &[&str]) -> String {
    let mut data: Vec<Value> = pages
        .iter()
        .flat_map(|p| serde_json::from_str::<Value>(p).unwrap()["data"].as_array().unwrap().clone())
        .collect();
    data.sort_by_key(|r| r["id"].as_i64());
    json!({"total": data.len(), "start": 0, "count": data.len(), "data": data}).to_string()
}

/// Every placement of the fixtures' first read, in one window page.
fn all_placements_window() -> String {
    merged(&[PLACEMENTS_PAGE1, PLACEMENTS_PAGE2])
}

fn host() -> FakeHost {
    FakeHost::new().with_config("currency", "GBP")
}

/// A host serving everything the first sync reads.
fn first_sync_host() -> FakeHost {
    let mut host = host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), PLACEMENTS_PAGE1);
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "3")), PLACEMENTS_PAGE2);
    host.respond_json(
        "/query/JobSubmission",
        &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "0")),
        SUBMISSIONS_PAGE1,
    );
    host.respond_json("/query/Placement", &pairs(&snapshot_query(DEFAULT_NOW_MS, 0)), &all_placements_window());
    host
}

/// A cursor as a sync on 2025-06-10 (plus the overlap) would have left it.
fn cursor_of_june_10() -> Cursor {
    Cursor::new().with(PLACEMENTS_SINCE, JUNE_10 + 300_000).with(SUBMISSIONS_SINCE, JUNE_10 + 300_000)
}

/// Serves a sync from [`cursor_of_june_10`] with these placement and submission pages and
/// this snapshot window page.
fn serve_incremental(host: &mut FakeHost, placements: &str, submissions: &str, window_page: &str) {
    let where_ = format!("dateLastModified>={JUNE_10} AND dateLastModified<{DEFAULT_NOW_MS}");
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), placements);
    host.respond_json("/query/JobSubmission", &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "0")), submissions);
    host.respond_json("/query/Placement", &pairs(&snapshot_query(DEFAULT_NOW_MS, 0)), window_page);
}

fn assert_clean(host: &FakeHost) {
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    assert!(host.unmatched_requests().is_empty(), "{:?}", host.unmatched_requests());
}

fn fact_micros(host: &FakeHost, source: &str) -> Option<i64> {
    host.facts().get(&(PLACEMENT_FEES.to_owned(), source.to_owned())).map(|f| match &f.value {
        Amount::Money(m) => m.micros,
        Amount::Count(_) => panic!("a count fee"),
    })
}

fn lines(changes: &[KpiChange]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

#[test]
fn the_descriptor_is_what_the_contract_says() {
    let d = Bullhorn::describe();
    assert!(d.problems().is_empty(), "{:?}", d.problems());
    assert_eq!(d.id, "bullhorn");
    assert_eq!(d.base_url_key, "login_url");
    let config: Vec<(&str, bool, Option<&str>)> =
        d.config.iter().map(|s| (s.key.as_str(), s.required, s.default_value.as_deref())).collect();
    assert_eq!(
        config,
        [
            ("auth_url", false, Some("https://auth.bullhornstaffing.com/oauth")),
            ("login_url", false, Some("https://rest.bullhornstaffing.com/rest-services")),
            ("currency", true, None),
            ("snapshot_days", false, Some("90")),
        ]
    );
    let secrets: Vec<(&str, bool)> = d.secrets.iter().map(|s| (s.key.as_str(), s.required)).collect();
    assert_eq!(secrets, [("client_id", true), ("client_secret", true), ("refresh_token", true)]);
    assert_eq!(d.auth, AuthScheme::bullhorn_session("auth_url", "login_url"));
    assert_eq!(d.allowed_hosts, ["*.bullhornstaffing.com"]);
    let metrics: Vec<(&str, MetricKind)> = d.metrics.iter().map(|m| (m.slug.as_str(), m.kind)).collect();
    assert_eq!(
        metrics,
        [("placements", MetricKind::Count), ("placement_fees", MetricKind::Money), ("submissions", MetricKind::Count)]
    );
    assert_eq!(d.cursor_keys, ["placements_since_ms", "submissions_since_ms"]);
    for code in oneup_connector_sdk::STANDARD_CODES {
        assert!(d.declares_code(code), "{code}");
    }
}

#[test]
fn the_first_sync_reads_everything_and_the_totals_add_up() {
    let mut host = first_sync_host();
    assert_eq!(run_sync(Bullhorn, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(host.count_total(PLACEMENTS), 5);
    // 98000 × 0.22 + 61000 × 0.2 + 18500 (flat) + 74000 × 0.18 + 112000 × 0.25, all in the
    // configured currency whatever the placements' custom text fields say.
    let fees = host.money_totals(PLACEMENT_FEES);
    assert_eq!(fees.len(), 1);
    assert_eq!(fees["GBP"], 93_580_000_000);
    // 77003 is soft-deleted: not counted, and not retracted since nothing existed yet.
    assert_eq!(host.count_total(SUBMISSIONS), 2);
    assert!(!host.changes().iter().any(|c| c.source_id().as_str() == "77003"));

    let facts = host.facts();
    let placed = &facts[&(PLACEMENTS.to_owned(), "9003".to_owned())];
    assert_eq!(placed.owner.as_str(), "3101");
    assert_eq!(placed.occurred_at, OccurredAt::Instant(1_748_956_800_000));
    assert_eq!(fact_micros(&host, "9003"), Some(18_500_000_000));
    let submitted = &facts[&(SUBMISSIONS.to_owned(), "77002".to_owned())];
    assert_eq!(submitted.owner.as_str(), "3101");
    assert_eq!(submitted.occurred_at, OccurredAt::Instant(1_748_100_000_000));
}

#[test]
fn requests_page_by_count_ask_only_for_needed_fields_and_checkpoint_each_page() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    let reads: Vec<(&str, Option<&str>, Option<&str>)> =
        host.requests().iter().map(|r| (r.path.as_str(), r.query_value("start"), r.query_value("orderBy"))).collect();
    assert_eq!(
        reads,
        [
            ("/query/Placement", Some("0"), Some("dateLastModified")),
            ("/query/Placement", Some("3"), Some("dateLastModified")),
            ("/query/JobSubmission", Some("0"), Some("dateLastModified")),
            ("/query/Placement", Some("0"), Some("id")),
        ]
    );
    for request in host.requests() {
        let fields = request.query_value("fields").unwrap();
        for personal in ["candidate", "clientContact", "clientCorporation", "Name", "email", "customText"] {
            assert!(!fields.contains(personal), "{fields}");
        }
        assert_eq!(request.query_value("count"), Some("500"));
    }
    let marks: Vec<(Option<i64>, Option<i64>)> =
        host.checkpoints().iter().map(|c| (c.get(PLACEMENTS_SINCE), c.get(SUBMISSIONS_SINCE))).collect();
    assert_eq!(
        marks,
        [
            (Some(1_749_121_200_000), None),
            (Some(1_749_294_000_000), None),
            (Some(1_749_294_000_000), Some(1_749_600_000_000)),
            (Some(1_749_294_000_000), Some(1_749_600_000_000)),
        ]
    );
    // Each page's changes reach the host before its checkpoint.
    assert_eq!(host.batch_sizes(), [6, 4, 2, 10]);
}

#[test]
fn the_snapshot_is_declared_around_the_full_window_read() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    let snapshots = host.snapshots();
    assert_eq!(snapshots.len(), 1);
    let snapshot = &snapshots[0];
    assert_eq!(snapshot.window.metrics, [PLACEMENTS, PLACEMENT_FEES]);
    assert_eq!((snapshot.window.from, snapshot.window.to), window(DEFAULT_NOW_MS));
    assert_eq!(snapshot.upserts_seen, 10, "every placement of the window, with its fee");
    assert!(snapshot.committed && snapshot.retracted.is_empty());
    assert!(!host.snapshot_open());

    // A longer window reaches further back.
    let mut host = first_sync_host().with_config("snapshot_days", "365");
    let (from, to) = (DEFAULT_NOW_MS - 365 * DAY, DEFAULT_NOW_MS + DAY);
    let where_ = format!("dateAdded>={from} AND dateAdded<{to} AND id>0");
    let mut query = snapshot_query(DEFAULT_NOW_MS, 0);
    query[0].1 = where_;
    host.respond_json("/query/Placement", &pairs(&query), &all_placements_window());
    run_sync(Bullhorn, &mut host, None).unwrap();
    assert_clean(&host);
    assert_eq!(host.snapshots()[0].window.from, from);
}

#[test]
fn a_placement_deleted_in_bullhorn_is_retracted_by_the_snapshot() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    // The window page as Bullhorn answers once 9005 is gone.
    let mut page: Value = serde_json::from_str(&all_placements_window()).unwrap();
    page["data"].as_array_mut().unwrap().retain(|r| r["id"] != 9005);
    page["total"] = json!(4);
    page["count"] = json!(4);
    serve_incremental(&mut host, EMPTY, EMPTY, &page.to_string());
    let before = host.changes().len();
    assert_eq!(run_sync(Bullhorn, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    let retracts: Vec<String> =
        lines(&host.changes()[before..]).into_iter().filter(|l| l.starts_with("retract")).collect();
    assert_eq!(retracts, ["retract placement_fees source=9005", "retract placements source=9005"]);
    assert_eq!(host.count_total(PLACEMENTS), 4);
    assert_eq!(host.money_totals(PLACEMENT_FEES)["GBP"], 65_580_000_000);
    assert_eq!(host.snapshots()[1].retracted.len(), 2);
}

#[test]
fn an_incremental_sync_reads_from_the_watermark_with_an_overlap() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    let mut page: Value = serde_json::from_str(&all_placements_window()).unwrap();
    let changed: Value = serde_json::from_str(PLACEMENTS_CHANGED).unwrap();
    for record in page["data"].as_array_mut().unwrap() {
        if let Some(newer) = changed["data"].as_array().unwrap().iter().find(|c| c["id"] == record["id"]) {
            *record = newer.clone();
        }
    }
    serve_incremental(&mut host, PLACEMENTS_CHANGED, EMPTY, &page.to_string());
    host.clear_requests();
    let before = host.changes().len();
    assert_eq!(run_sync(Bullhorn, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    let first_where = host.requests()[0].query_value("where").unwrap();
    assert_eq!(first_where, format!("dateLastModified>={JUNE_10} AND dateLastModified<{DEFAULT_NOW_MS}"));
    // 9002's salary went from 61000 to 63500; 9004 was terminated but is still a placement.
    assert_eq!(
        lines(&host.changes()[before..before + 4]),
        [
            "upsert placements source=9002 owner=3102 at=2025-06-02T13:20:00Z 1",
            "upsert placement_fees source=9002 owner=3102 at=2025-06-02T13:20:00Z 12700 GBP",
            "upsert placements source=9004 owner=3102 at=2025-06-04T13:20:00Z 1",
            "upsert placement_fees source=9004 owner=3102 at=2025-06-04T13:20:00Z 13320 GBP",
        ]
    );
    assert_eq!(fact_micros(&host, "9002"), Some(12_700_000_000));
    assert_eq!(host.count_total(PLACEMENTS), 5);
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(PLACEMENTS_SINCE), Some(1_749_801_600_000));
    assert_eq!(last.get(SUBMISSIONS_SINCE), Some(JUNE_10 + 300_000), "nothing newer was read");
}

#[test]
fn fees_follow_flat_fee_then_fee_times_salary_exactly() {
    let mut host = host().with_config("currency", "eur");
    serve_incremental(&mut host, PLACEMENT_FEES_CASES, EMPTY, PLACEMENT_FEES_CASES);
    assert_eq!(run_sync(Bullhorn, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    let fee = |id: &str| fact_micros(&host, id);
    assert_eq!(fee("9101"), Some(18_500_000_000), "a flat fee wins over fee × salary");
    assert_eq!(fee("9102"), Some(13_725_112_500), "61000.50 × 0.225, exactly");
    assert_eq!(fee("9103"), None, "no salary, no fee");
    assert_eq!(fee("9104"), None, "no fee fraction, no fee");
    assert_eq!(fee("9106"), Some(5_000_000_000), "a negative flat fee is not a fee");
    assert_eq!(fee("9107"), Some(33_333_303_333), "100000.01 × 0.333333, to the micro");
    let placed: Vec<String> = host.facts().keys().filter(|(m, _)| m == PLACEMENTS).map(|(_, s)| s.clone()).collect();
    assert_eq!(placed, ["9101", "9102", "9103", "9104", "9106", "9107"], "9105 has no owner");
    // After a first sync, a placement without a fee or an owner retracts what may exist.
    let changes = lines(host.changes());
    for retract in [
        "retract placement_fees source=9103",
        "retract placement_fees source=9104",
        "retract placements source=9105",
        "retract placement_fees source=9105",
    ] {
        assert!(changes.contains(&retract.to_owned()), "{retract}");
    }
    assert!(host.money_totals(PLACEMENT_FEES).keys().all(|c| c == "EUR"), "the configured currency, upper-cased");
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(RECORDS_SKIPPED.to_owned(), 1)), "9105, once though read twice");
    assert!(host.snapshots()[0].retracted.is_empty());
}

#[test]
fn soft_deleted_submissions_are_retracted() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    serve_incremental(&mut host, EMPTY, SUBMISSIONS_CHANGED, &all_placements_window());
    let before = host.changes().len();
    run_sync(Bullhorn, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    let submissions: Vec<String> =
        lines(&host.changes()[before..]).into_iter().filter(|l| l.contains("submissions")).collect();
    assert_eq!(
        submissions,
        [
            "retract submissions source=77002",
            "upsert submissions source=77004 owner=3102 at=2025-06-11T13:53:20Z 1",
            "retract submissions source=77005",
        ]
    );
    assert_eq!(host.count_total(SUBMISSIONS), 2, "77001 and 77004");
    assert_eq!(host.last_checkpoint().unwrap().get(SUBMISSIONS_SINCE), Some(1_749_720_000_000));
}

#[test]
fn settings_are_checked_before_any_request() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], codes::MISSING_CONFIG),
        (&[("currency", " ")], codes::MISSING_CONFIG),
        (&[("currency", "EURO")], codes::BAD_CONFIG),
        (&[("currency", "GBP"), ("snapshot_days", "0")], codes::BAD_CONFIG),
        (&[("currency", "GBP"), ("snapshot_days", "ninety")], codes::BAD_CONFIG),
    ];
    for (config, code) in cases {
        let mut host = FakeHost::new();
        for (key, value) in config {
            host.set_config(key, value);
        }
        assert_eq!(run_sync(Bullhorn, &mut host, None), Err(ConnectorError::new(code)), "{config:?}");
        assert!(host.requests().is_empty() && host.changes().is_empty() && host.checkpoints().is_empty());
    }
}

#[test]
fn rate_limiting_ends_the_sync_at_the_last_checkpoint_and_retracts_nothing() {
    let mut host = first_sync_host();
    host.respond("/query/Placement", &pairs(&snapshot_query(DEFAULT_NOW_MS, 0)), HttpResponse::new(429, RATE_LIMITED));
    let outcome = run_sync(Bullhorn, &mut host, None);
    assert_eq!(outcome, Ok(SyncOutcome::BudgetExhausted { resume_at: Some(DEFAULT_NOW_MS + 300_000) }));
    assert_clean(&host);
    assert_eq!(host.checkpoints().len(), 3, "placements twice, submissions once; no checkpoint after");
    assert!(host.snapshots().is_empty(), "the snapshot was never closed: nothing is inferred");
    assert_eq!(host.count_total(PLACEMENTS), 5);
    assert_eq!(host.logs().first().map(|l| l.code.as_str()), Some("budget_exhausted"));

    let mut host = first_sync_host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    host.fail("/query/JobSubmission", &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "0")), HttpError::RateLimited);
    let outcome = run_sync(Bullhorn, &mut host, None).unwrap();
    assert!(matches!(outcome, SyncOutcome::BudgetExhausted { resume_at: Some(_) }));
    assert_eq!(host.last_checkpoint().unwrap().get(PLACEMENTS_SINCE), Some(1_749_294_000_000));
}

#[test]
fn an_expired_session_the_host_could_not_renew_is_a_clear_error() {
    let mut host = host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    host.respond(
        "/query/Placement",
        &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")),
        HttpResponse::new(401, INVALID_REST_TOKEN),
    );
    let error = run_sync(Bullhorn, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::with_status(codes::HTTP_UNAUTHORIZED, 401));
    assert!(host.checkpoints().is_empty() && host.changes().is_empty());

    let mut host = self::host();
    host.fail("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), HttpError::Unauthorized);
    assert_eq!(run_sync(Bullhorn, &mut host, None).unwrap_err(), ConnectorError::new(codes::HTTP_UNAUTHORIZED));
}

#[test]
fn paging_stops_on_an_empty_page_when_no_total_is_given() {
    let mut host = host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    let full: Vec<Value> = (1..=500)
        .map(|i| {
            json!({"id": i, "dateAdded": JUNE_10, "dateLastModified": JUNE_10 + i, "isDeleted": false,
                        "sendingUser": {"id": 3101}})
        })
        .collect();
    host.respond_json(
        "/query/JobSubmission",
        &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "0")),
        &json!({"start": 0, "count": 500, "data": full}).to_string(),
    );
    host.respond_json(
        "/query/JobSubmission",
        &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "500")),
        r#"{"start":500,"count":0,"data":[]}"#,
    );
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), EMPTY);
    host.respond_json("/query/Placement", &pairs(&snapshot_query(DEFAULT_NOW_MS, 0)), EMPTY);
    assert_eq!(run_sync(Bullhorn, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(host.count_total(SUBMISSIONS), 500);
    assert_eq!(host.requests().len(), 4);
}

#[test]
fn the_snapshot_pages_by_id_so_deletions_cannot_hide_records() {
    let mut host = host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), EMPTY);
    host.respond_json("/query/JobSubmission", &pairs(&changed_query(&where_, SUBMISSION_FIELDS, "0")), EMPTY);
    let record = |id: i64| {
        json!({"id": id, "dateAdded": JUNE_10, "dateLastModified": JUNE_10, "salary": 1000.0,
                                  "fee": 0.1, "flatFee": 0.0, "owner": {"id": 3101}})
    };
    let first: Vec<Value> = (1..=500).map(record).collect();
    host.respond_json(
        "/query/Placement",
        &pairs(&snapshot_query(DEFAULT_NOW_MS, 0)),
        &json!({"total": 501, "start": 0, "count": 500, "data": first}).to_string(),
    );
    host.respond_json(
        "/query/Placement",
        &pairs(&snapshot_query(DEFAULT_NOW_MS, 500)),
        &json!({"total": 1, "start": 0, "count": 1, "data": [record(501)]}).to_string(),
    );
    run_sync(Bullhorn, &mut host, None).unwrap();
    assert_clean(&host);
    assert_eq!(host.count_total(PLACEMENTS), 501);
    assert_eq!(host.money_totals(PLACEMENT_FEES)["GBP"], 501 * 100_000_000);
    assert_eq!(host.snapshots()[0].upserts_seen, 1002);
}

#[test]
fn the_roster_lists_active_users_with_an_email() {
    let roster_query = |start: &'static str| {
        [
            ("where", "isDeleted=false"),
            ("fields", "id,email"),
            ("orderBy", "id"),
            ("start", start),
            ("count", "500"),
            ("showTotalMatched", "true"),
        ]
    };
    let mut host = host();
    host.respond_json("/query/CorporateUser", &roster_query("0"), USERS);
    let roster = run_roster(Bullhorn, &mut host).unwrap();
    assert_clean(&host);
    let entries: Vec<(&str, &str)> = roster.iter().map(|e| (e.crm_user_id.as_str(), e.email.as_str())).collect();
    assert_eq!(
        entries,
        [
            ("3101", "leopold.ashcombe@brindlemoor-staffing.example"),
            ("3102", "rosalind.okafor-lindqvist@brindlemoor-staffing.example"),
        ]
    );

    let mut host = self::host();
    host.respond_json(
        "/query/CorporateUser",
        &roster_query("0"),
        r#"{"total":4,"start":0,"count":3,"data":[{"id":1,"email":null},{"id":2,"email":" "},{"id":3}]}"#,
    );
    host.respond_json(
        "/query/CorporateUser",
        &roster_query("3"),
        r#"{"total":4,"start":3,"count":1,"data":[{"id":4,"email":"x@y.example"}]}"#,
    );
    let roster = run_roster(Bullhorn, &mut host).unwrap();
    assert_clean(&host);
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0].crm_user_id.as_str(), "4");
}

#[test]
fn only_ids_numbers_times_and_the_currency_leave_the_connector() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
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
    assert!(host.debug_output().is_empty());
}

#[test]
fn a_body_that_is_not_json_is_bad_json() {
    let mut host = host();
    let where_ = format!("dateLastModified<{DEFAULT_NOW_MS}");
    host.respond_json("/query/Placement", &pairs(&changed_query(&where_, PLACEMENT_FIELDS, "0")), "<html>down</html>");
    let error = run_sync(Bullhorn, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::with_status(codes::BAD_JSON, 200));
    assert!(host.checkpoints().is_empty());
}

#[test]
fn the_events_of_a_first_sync_and_an_incremental_one() {
    let mut host = first_sync_host();
    run_sync(Bullhorn, &mut host, None).unwrap();
    // Then: 9001 deleted in Bullhorn, the placements of the fee cases added, submissions changed.
    let mut page: Value =
        serde_json::from_str(&merged(&[PLACEMENTS_PAGE1, PLACEMENTS_PAGE2, PLACEMENT_FEES_CASES])).unwrap();
    page["data"].as_array_mut().unwrap().retain(|r| r["id"] != 9001);
    let kept = page["data"].as_array().unwrap().len();
    page["total"] = json!(kept);
    page["count"] = json!(kept);
    serve_incremental(&mut host, PLACEMENT_FEES_CASES, SUBMISSIONS_CHANGED, &page.to_string());
    run_sync(Bullhorn, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    insta::assert_snapshot!(lines(host.changes()).join("\n"));
}
