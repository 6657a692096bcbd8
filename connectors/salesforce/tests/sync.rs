//! The Salesforce connector run natively against recorded answers (`tests/fixtures/`), with
//! the SDK's fake host checking every change against the contract.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use oneup_connector_salesforce::{
    CALLS, DEALS_WON, EVENTS_BIN_READ_AT, EVENTS_DELETED_SINCE, EVENTS_SINCE, FULL_RESYNCS, INVALID_FIELD,
    MALFORMED_QUERY, MEETINGS, OPPORTUNITIES_BIN_READ_AT, OPPORTUNITIES_DELETED_SINCE, OPPORTUNITIES_SINCE,
    RECORDS_SKIPPED, REVENUE, Salesforce, TASKS_BIN_READ_AT, TASKS_DELETED_SINCE, TASKS_SINCE, TRUSTED_BIN_MS,
};
use oneup_connector_sdk::testing::{FakeHost, run_roster, run_sync};
use oneup_connector_sdk::time::parse_rfc3339;
use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Cursor, HttpError, HttpResponse, KpiChange, MetricKind, OccurredAt,
    SyncOutcome, codes,
};

const OPPS_PAGE1: &str = include_str!("fixtures/query_opportunity_closed_page1.json");
const OPPS_PAGE2: &str = include_str!("fixtures/query_opportunity_closed_page2.json");
const OPPS_CHANGED: &str = include_str!("fixtures/query_opportunity_incremental_systemmodstamp.json");
const OPPS_ALL: &str = include_str!("fixtures/queryall_opportunity_with_deleted.json");
const TASKS: &str = include_str!("fixtures/query_task_calls.json");
const TASKS_CHANGED: &str = include_str!("fixtures/authored_query_task_changed.json");
const EVENTS: &str = include_str!("fixtures/query_event_meetings.json");
const EVENTS_DELETED: &str = include_str!("fixtures/authored_queryall_event_deleted.json");
const USERS: &str = include_str!("fixtures/query_user.json");
const DESCRIBE_MULTI: &str = include_str!("fixtures/authored_describe_opportunity_multi.json");
const DESCRIBE_SINGLE: &str = include_str!("fixtures/authored_describe_opportunity_single.json");
const ORGANIZATION: &str = include_str!("fixtures/authored_query_organization.json");
const MALFORMED: &str = include_str!("fixtures/error_400_malformed_query.json");
const INVALID_SESSION: &str = include_str!("fixtures/error_401_invalid_session.json");
const LIMIT_EXCEEDED: &str = include_str!("fixtures/error_403_request_limit_exceeded.json");

const EMPTY: &str = r#"{"totalSize":0,"done":true,"records":[]}"#;
const API: &str = "/services/data/v62.0";
const PAGE2_URL: &str = "/services/data/v62.0/query/0r8Hs00000FixtAAA-3";

const OPP_FIELDS: &str = "Id, OwnerId, IsWon, Amount, CurrencyIsoCode, CloseDate, SystemModstamp";
const OPP_FIELDS_SINGLE: &str = "Id, OwnerId, IsWon, Amount, CloseDate, SystemModstamp";
const TASK_FIELDS: &str = "Id, OwnerId, TaskSubtype, IsClosed, CompletedDateTime, ActivityDate, SystemModstamp";
const EVENT_FIELDS: &str = "Id, OwnerId, StartDateTime, ActivityDate, SystemModstamp";
const JUNE_10: &str = "2025-06-10T00:00:00Z";

/// The personal data planted in the fixtures (from `shared/crm-fixtures/canaries.txt`).
const CANARIES: &[&str] = &[
    "Bartholomew",
    "Xandervelt",
    "Ottoline",
    "Marchbanks",
    "Kazuhiro",
    "Wendelborn",
    "Fennimore",
    "Gravelpeak",
    "Tamarisk",
    "Cassius",
    "Delacroix",
    "Henrietta",
    "Ploughwright",
    "lumenwharf",
    "555-01",
    "@",
];

fn ms(rfc3339: &str) -> i64 {
    parse_rfc3339(rfc3339).unwrap()
}

fn first_opps() -> String {
    format!("SELECT {OPP_FIELDS} FROM Opportunity WHERE IsWon = true ORDER BY SystemModstamp ASC")
}

fn first_tasks() -> String {
    format!("SELECT {TASK_FIELDS} FROM Task WHERE TaskSubtype = 'Call' AND IsClosed = true ORDER BY SystemModstamp ASC")
}

fn first_events() -> String {
    format!("SELECT {EVENT_FIELDS} FROM Event ORDER BY SystemModstamp ASC")
}

fn changed(fields: &str, object: &str, since: &str) -> String {
    format!("SELECT {fields} FROM {object} WHERE SystemModstamp > {since} ORDER BY SystemModstamp ASC")
}

fn deleted(object: &str, since: &str) -> String {
    format!(
        "SELECT Id, IsDeleted, SystemModstamp FROM {object} WHERE IsDeleted = true AND SystemModstamp > {since} \
         ORDER BY SystemModstamp ASC"
    )
}

fn soql(host: &mut FakeHost, endpoint: &str, text: &str, body: &str) {
    host.respond_json(&format!("{API}/{endpoint}"), &[("q", text)], body);
}

fn host() -> FakeHost {
    FakeHost::new().with_config("instance_url", "https://lumenwharf-corp.my.salesforce.com")
}

/// A host of a multi-currency org serving everything the first sync reads.
fn first_sync_host() -> FakeHost {
    let mut host = first_sync_host_but_page2();
    host.respond_json(PAGE2_URL, &[], OPPS_PAGE2);
    host
}

/// The same without the second page of opportunities.
fn first_sync_host_but_page2() -> FakeHost {
    let mut host = host();
    host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_MULTI);
    soql(&mut host, "query", &first_opps(), OPPS_PAGE1);
    soql(&mut host, "query", &first_tasks(), TASKS);
    soql(&mut host, "query", &first_events(), EVENTS);
    host
}

/// A cursor as a sync on 2025-06-10 would have left it.
fn cursor_of_june_10() -> Cursor {
    let june_10 = ms(JUNE_10);
    [
        OPPORTUNITIES_SINCE,
        OPPORTUNITIES_DELETED_SINCE,
        TASKS_SINCE,
        TASKS_DELETED_SINCE,
        EVENTS_SINCE,
        EVENTS_DELETED_SINCE,
        OPPORTUNITIES_BIN_READ_AT,
        TASKS_BIN_READ_AT,
        EVENTS_BIN_READ_AT,
    ]
    .into_iter()
    .fold(Cursor::new(), |cursor, key| cursor.with(key, june_10))
}

/// Serves an incremental sync from [`cursor_of_june_10`]: these pages of changed and deleted
/// opportunities, tasks and events.
fn serve_incremental(host: &mut FakeHost, pages: [&str; 6]) {
    host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_MULTI);
    let [opps, opps_deleted, tasks, tasks_deleted, events, events_deleted] = pages;
    soql(host, "query", &changed(OPP_FIELDS, "Opportunity", JUNE_10), opps);
    soql(host, "queryAll", &deleted("Opportunity", JUNE_10), opps_deleted);
    soql(host, "query", &changed(TASK_FIELDS, "Task", JUNE_10), tasks);
    soql(host, "queryAll", &deleted("Task", JUNE_10), tasks_deleted);
    soql(host, "query", &changed(EVENT_FIELDS, "Event", JUNE_10), events);
    soql(host, "queryAll", &deleted("Event", JUNE_10), events_deleted);
}

fn assert_clean(host: &FakeHost) {
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    assert!(host.unmatched_requests().is_empty(), "{:?}", host.unmatched_requests());
}

fn lines(changes: &[KpiChange]) -> String {
    changes.iter().map(|c| format!("{c}\n")).collect()
}

fn money(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect()
}

#[test]
fn the_descriptor_is_what_the_contract_says() {
    let d = Salesforce::describe();
    assert!(d.problems().is_empty(), "{:?}", d.problems());
    assert_eq!(d.id, "salesforce");
    assert_eq!(d.base_url_key, "instance_url");
    assert!(d.config.iter().any(|s| s.key == "instance_url" && s.required));
    let token_url = d.config.iter().find(|s| s.key == "token_url").unwrap();
    assert_eq!(token_url.default_value.as_deref(), Some("https://login.salesforce.com/services/oauth2/token"));
    let secrets: Vec<&str> = d.secrets.iter().filter(|s| s.required).map(|s| s.key.as_str()).collect();
    assert_eq!(secrets, ["client_id", "client_secret", "refresh_token"]);
    assert_eq!(d.auth, AuthScheme::oauth2_refresh("token_url"));
    assert_eq!(
        d.allowed_hosts,
        [
            "*.salesforce.com",
            "*.my.salesforce.com",
            "*.sandbox.my.salesforce.com",
            "*.develop.my.salesforce.com",
            "*.scratch.my.salesforce.com",
            "login.salesforce.com",
            "test.salesforce.com"
        ]
    );
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
    for code in oneup_connector_sdk::STANDARD_CODES.iter().chain(&[INVALID_FIELD, MALFORMED_QUERY]) {
        assert!(d.declares_code(code), "{code}");
    }
}

#[test]
fn the_first_sync_counts_what_is_won_closed_or_met_and_retracts_nothing() {
    let mut host = first_sync_host();
    assert_eq!(run_sync(Salesforce, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    insta::assert_snapshot!(lines(host.changes()), @r"
    upsert deals_won source=006Hs00000Op001IAB owner=005Hs00000A1bC2IAJ at=2025-06-02 1
    upsert revenue source=006Hs00000Op001IAB owner=005Hs00000A1bC2IAJ at=2025-06-02 185000 USD
    upsert deals_won source=006Hs00000Op002IAB owner=005Hs00000A1bC3IAJ at=2025-06-03 1
    upsert revenue source=006Hs00000Op002IAB owner=005Hs00000A1bC3IAJ at=2025-06-03 72400 GBP
    upsert deals_won source=006Hs00000Op003IAB owner=005Hs00000A1bC2IAJ at=2025-06-04 1
    upsert revenue source=006Hs00000Op003IAB owner=005Hs00000A1bC2IAJ at=2025-06-04 9800000 JPY
    upsert deals_won source=006Hs00000Op005IAB owner=005Hs00000A1bC2IAJ at=2025-06-09 1
    upsert revenue source=006Hs00000Op005IAB owner=005Hs00000A1bC2IAJ at=2025-06-09 24000 USD
    upsert calls source=00THs00004TsK01UAF owner=005Hs00000A1bC2IAJ at=2025-05-29T16:21:00Z 1
    upsert meetings source=00UHs00001EvT01UAB owner=005Hs00000A1bC2IAJ at=2025-06-03T01:00:00Z 1
    ");
    assert_eq!(host.count_total(DEALS_WON), 4);
    assert_eq!(
        host.money_totals(REVENUE),
        money(&[("GBP", 72_400_000_000), ("JPY", 9_800_000_000_000), ("USD", 209_000_000_000)])
    );
    assert_eq!((host.count_total(CALLS), host.count_total(MEETINGS)), (1, 1));
    // CloseDate is a date: the host places it in the tenant's zone.
    let won = &host.facts()[&(DEALS_WON.to_owned(), "006Hs00000Op001IAB".to_owned())];
    assert!(matches!(won.occurred_at, OccurredAt::Date(d) if d.to_string() == "2025-06-02"));
}

#[test]
fn the_first_sync_asks_only_for_the_fields_it_needs_and_pages_by_next_records_url() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let requests: Vec<(&str, Option<&str>)> =
        host.requests().iter().map(|r| (r.path.as_str(), r.query_value("q"))).collect();
    let (opps, tasks, events) = (first_opps(), first_tasks(), first_events());
    assert_eq!(
        requests,
        [
            ("/services/data/v62.0/sobjects/Opportunity/describe", None),
            ("/services/data/v62.0/query", Some(opps.as_str())),
            (PAGE2_URL, None),
            ("/services/data/v62.0/query", Some(tasks.as_str())),
            ("/services/data/v62.0/query", Some(events.as_str())),
        ]
    );
    for request in host.requests() {
        let soql = request.query_value("q").unwrap_or_default();
        for field in ["Name", "Subject", "Description", "Email", "Location", "Who", "Account"] {
            assert!(!soql.split([' ', ',']).any(|w| w == field || w.starts_with(&format!("{field}."))), "{soql}");
        }
        if request.path != format!("{API}/sobjects/Opportunity/describe") {
            assert_eq!(request.headers, [("sforce-query-options".to_owned(), "batchSize=2000".to_owned())]);
        }
    }
    // A checkpoint after every page; mid-query only up to the last stamp seen in full.
    let marks: Vec<(Option<i64>, Option<i64>)> =
        host.checkpoints().iter().map(|c| (c.get(OPPORTUNITIES_SINCE), c.get(OPPORTUNITIES_DELETED_SINCE))).collect();
    assert_eq!(
        marks[..3],
        [
            (Some(ms("2025-06-03T15:40:55Z")), None),
            (Some(ms("2025-06-09T17:25:31Z")), None),
            (Some(ms("2025-06-09T17:25:31Z")), Some(ms("2025-06-09T17:25:31Z"))),
        ]
    );
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(TASKS_SINCE), Some(ms("2025-06-01T09:03:00Z")));
    assert_eq!(last.get(TASKS_DELETED_SINCE), Some(ms("2025-06-01T09:03:00Z")));
    assert_eq!(last.get(EVENTS_SINCE), Some(ms("2025-06-03T03:00:00Z")));
    assert_eq!(last.get(EVENTS_DELETED_SINCE), Some(ms("2025-06-03T03:00:00Z")));
}

#[test]
fn only_ids_numbers_dates_and_currencies_leave_the_connector() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let logged: Vec<String> = host.logs().iter().map(|l| format!("{l:?}")).collect();
    for line in host.changes().iter().map(ToString::to_string).chain(logged).chain(host.debug_output().iter().cloned())
    {
        for canary in CANARIES {
            assert!(!line.contains(canary), "{line} holds {canary}");
        }
    }
}

#[test]
fn a_second_sync_reads_from_the_final_cursor_with_strictly_greater_stamps() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let cursor = host.last_checkpoint().unwrap().clone();
    host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_MULTI);
    let (opps, tasks, events) = ("2025-06-09T17:25:31Z", "2025-06-01T09:03:00Z", "2025-06-03T03:00:00Z");
    soql(&mut host, "query", &changed(OPP_FIELDS, "Opportunity", opps), EMPTY);
    soql(&mut host, "queryAll", &deleted("Opportunity", opps), EMPTY);
    soql(&mut host, "query", &changed(TASK_FIELDS, "Task", tasks), EMPTY);
    soql(&mut host, "queryAll", &deleted("Task", tasks), EMPTY);
    soql(&mut host, "query", &changed(EVENT_FIELDS, "Event", events), EMPTY);
    soql(&mut host, "queryAll", &deleted("Event", events), EMPTY);
    host.clear_requests();
    let before = host.changes().len();
    assert_eq!(run_sync(Salesforce, &mut host, Some(cursor.clone())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(host.requests().len(), 7);
    assert_eq!(host.changes().len(), before);
    assert_eq!(host.last_checkpoint(), Some(&cursor));
}

#[test]
fn an_edited_amount_is_upserted_and_a_deleted_opportunity_retracted() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    serve_incremental(&mut host, [OPPS_CHANGED, OPPS_ALL, EMPTY, EMPTY, EMPTY, EMPTY]);
    let before = host.changes().len();
    assert_eq!(run_sync(Salesforce, &mut host, Some(cursor_of_june_10())), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    // queryAll may answer live records too: only those in the recycle bin are retracted.
    insta::assert_snapshot!(lines(&host.changes()[before..]), @r"
    upsert deals_won source=006Hs00000Op002IAB owner=005Hs00000A1bC3IAJ at=2025-06-03 1
    upsert revenue source=006Hs00000Op002IAB owner=005Hs00000A1bC3IAJ at=2025-06-03 69900 GBP
    retract deals_won source=006Hs00000Op005IAB
    retract revenue source=006Hs00000Op005IAB
    ");
    assert_eq!(host.count_total(DEALS_WON), 3);
    assert_eq!(
        host.money_totals(REVENUE),
        money(&[("GBP", 69_900_000_000), ("JPY", 9_800_000_000_000), ("USD", 185_000_000_000)])
    );
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(OPPORTUNITIES_SINCE), Some(ms("2025-06-12T10:11:45Z")));
    assert_eq!(last.get(OPPORTUNITIES_DELETED_SINCE), Some(ms("2025-06-13T08:02:17Z")));
}

#[test]
fn a_won_opportunity_that_was_lost_or_reopened_loses_its_facts() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let lost = OPPS_CHANGED.replace(r#""IsWon": true"#, r#""IsWon": false"#).replace("Closed Won", "Closed Lost");
    serve_incremental(&mut host, [&lost, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY]);
    let before = host.changes().len();
    run_sync(Salesforce, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    insta::assert_snapshot!(lines(&host.changes()[before..]), @r"
    retract deals_won source=006Hs00000Op002IAB
    retract revenue source=006Hs00000Op002IAB
    ");
    assert!(!host.money_totals(REVENUE).contains_key("GBP"));
    assert_eq!(host.count_total(DEALS_WON), 3);
}

#[test]
fn a_won_opportunity_without_an_amount_counts_without_revenue() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let no_amount = OPPS_CHANGED.replace(r#""Amount": 69900.0"#, r#""Amount": null"#);
    serve_incremental(&mut host, [&no_amount, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY]);
    let before = host.changes().len();
    run_sync(Salesforce, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    insta::assert_snapshot!(lines(&host.changes()[before..]), @r"
    upsert deals_won source=006Hs00000Op002IAB owner=005Hs00000A1bC3IAJ at=2025-06-03 1
    retract revenue source=006Hs00000Op002IAB
    ");
    assert_eq!(host.count_total(DEALS_WON), 4);
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(RECORDS_SKIPPED.to_owned(), 0)), "no amount is not a skip");
}

#[test]
fn a_single_currency_org_counts_in_its_default_currency() {
    let mut host = host();
    host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_SINGLE);
    soql(&mut host, "query", "SELECT DefaultCurrencyIsoCode FROM Organization", ORGANIZATION);
    let strip = |page: &str| page.lines().filter(|l| !l.contains("CurrencyIsoCode")).collect::<Vec<_>>().join("\n");
    let text = format!("SELECT {OPP_FIELDS_SINGLE} FROM Opportunity WHERE IsWon = true ORDER BY SystemModstamp ASC");
    soql(&mut host, "query", &text, &strip(OPPS_PAGE1));
    host.respond_json(PAGE2_URL, &[], &strip(OPPS_PAGE2));
    soql(&mut host, "query", &first_tasks(), EMPTY);
    soql(&mut host, "query", &first_events(), EMPTY);
    assert_eq!(run_sync(Salesforce, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(host.money_totals(REVENUE), money(&[("EUR", 10_081_400_000_000)]));

    // A record's own CurrencyIsoCode cannot exist there, and is never asked for.
    assert!(host.requests().iter().filter_map(|r| r.query_value("q")).all(|q| !q.contains(" CurrencyIsoCode")));
}

#[test]
fn calls_changed_and_meetings_deleted_are_corrected() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    serve_incremental(&mut host, [EMPTY, EMPTY, TASKS_CHANGED, EMPTY, EMPTY, EVENTS_DELETED]);
    let before = host.changes().len();
    run_sync(Salesforce, &mut host, Some(cursor_of_june_10())).unwrap();
    assert_clean(&host);
    // A call without CompletedDateTime counts on its ActivityDate.
    insta::assert_snapshot!(lines(&host.changes()[before..]), @r"
    retract calls source=00THs00004TsK01UAF
    upsert calls source=00THs00004TsK03UAF owner=005Hs00000A1bC3IAJ at=2025-06-11 1
    upsert calls source=00THs00004TsK04UAF owner=005Hs00000A1bC3IAJ at=2025-06-12T14:05:00Z 1
    retract meetings source=00UHs00001EvT01UAB
    ");
    assert_eq!((host.count_total(CALLS), host.count_total(MEETINGS)), (2, 0));
    let last = host.last_checkpoint().unwrap();
    assert_eq!(last.get(TASKS_SINCE), Some(ms("2025-06-12T14:05:00Z")));
    assert_eq!(last.get(EVENTS_DELETED_SINCE), Some(ms("2025-06-12T07:45:00Z")));
}

#[test]
fn the_request_limit_ends_the_sync_at_the_last_checkpoint_without_retrying() {
    let mut host = first_sync_host();
    host.respond(
        PAGE2_URL,
        &[],
        HttpResponse::new(403, LIMIT_EXCEEDED).with_header("sforce-limit-info", "api-usage=115021/115000"),
    );
    assert_eq!(run_sync(Salesforce, &mut host, None), Ok(SyncOutcome::BudgetExhausted { resume_at: None }));
    assert_clean(&host);
    assert_eq!(host.requests().len(), 3, "no request after the 403");
    assert_eq!(host.checkpoints().len(), 1);
    assert_eq!(host.last_checkpoint().unwrap().get(OPPORTUNITIES_SINCE), Some(ms("2025-06-03T15:40:55Z")));
    assert_eq!(host.logs().first().map(|l| l.code.as_str()), Some("budget_exhausted"));

    // The next sync resumes there: the rest of the opportunities, then the other objects.
    let cursor = host.last_checkpoint().unwrap().clone();
    let mut next = first_sync_host_but_page2();
    let resumed = format!(
        "SELECT {OPP_FIELDS} FROM Opportunity WHERE SystemModstamp > 2025-06-03T15:40:55Z ORDER BY SystemModstamp ASC"
    );
    soql(&mut next, "query", &resumed, OPPS_PAGE2);
    // Deletions were never read for this object: the whole recycle bin is looked at.
    let bin =
        "SELECT Id, IsDeleted, SystemModstamp FROM Opportunity WHERE IsDeleted = true ORDER BY SystemModstamp ASC";
    soql(&mut next, "queryAll", bin, EMPTY);
    assert_eq!(run_sync(Salesforce, &mut next, Some(cursor)), Ok(SyncOutcome::Complete));
    assert_clean(&next);
    insta::assert_snapshot!(lines(&next.changes()[..4]), @r"
    retract deals_won source=006Hs00000Op004IAB
    retract revenue source=006Hs00000Op004IAB
    upsert deals_won source=006Hs00000Op005IAB owner=005Hs00000A1bC2IAJ at=2025-06-09 1
    upsert revenue source=006Hs00000Op005IAB owner=005Hs00000A1bC2IAJ at=2025-06-09 24000 USD
    ");
    assert_eq!((next.count_total(DEALS_WON), next.count_total(CALLS)), (1, 1));
}

#[test]
fn an_expired_query_locator_restarts_the_query_from_the_watermark() {
    let mut host = first_sync_host_but_page2();
    let served = Rc::new(Cell::new(0));
    let count = served.clone();
    host.respond_with(move |request| {
        (request.path == PAGE2_URL).then(|| {
            count.set(count.get() + 1);
            Ok(HttpResponse::new(400, r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#))
        })
    });
    let restarted = format!(
        "SELECT {OPP_FIELDS} FROM Opportunity WHERE IsWon = true AND SystemModstamp > 2025-06-03T15:40:55Z \
         ORDER BY SystemModstamp ASC"
    );
    soql(&mut host, "query", &restarted, OPPS_PAGE2);
    assert_eq!(run_sync(Salesforce, &mut host, None), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert_eq!(served.get(), 1);
    assert_eq!(host.count_total(DEALS_WON), 4);
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&("queries_restarted".to_owned(), 1)));
}

#[test]
fn a_bad_query_is_a_typed_error_and_nothing_is_written() {
    for (body, code) in [
        (MALFORMED.to_owned(), INVALID_FIELD),
        (MALFORMED.replace("INVALID_FIELD", "MALFORMED_QUERY"), MALFORMED_QUERY),
    ] {
        let mut host = host();
        host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_MULTI);
        host.respond(&format!("{API}/query"), &[("q", &first_opps())], HttpResponse::new(400, body));
        let error = run_sync(Salesforce, &mut host, None).unwrap_err();
        assert_eq!(error, ConnectorError::with_status(code, 400));
        assert_clean(&host);
        assert!(host.changes().is_empty() && host.checkpoints().is_empty());
        // The message quotes the query: it reaches no log.
        assert!(host.logs().iter().all(|l| l.fields.iter().all(|(n, _)| !n.contains("Amont"))));
    }
}

#[test]
fn an_unauthorized_answer_is_a_clear_error() {
    let mut host = host();
    host.respond(&format!("{API}/sobjects/Opportunity/describe"), &[], HttpResponse::new(401, INVALID_SESSION));
    let error = run_sync(Salesforce, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::with_status(codes::HTTP_UNAUTHORIZED, 401));
    assert!(host.checkpoints().is_empty());

    let mut host = self::host();
    host.fail(&format!("{API}/sobjects/Opportunity/describe"), &[], HttpError::Unauthorized);
    let error = run_sync(Salesforce, &mut host, None).unwrap_err();
    assert_eq!(error, ConnectorError::new(codes::HTTP_UNAUTHORIZED));
}

#[test]
fn the_roster_lists_active_users_with_an_email() {
    let mut host = host();
    soql(&mut host, "query", "SELECT Id, Email FROM User WHERE IsActive = true ORDER BY Id ASC", USERS);
    let roster = run_roster(Salesforce, &mut host).unwrap();
    assert_clean(&host);
    let entries: Vec<(&str, &str)> = roster.iter().map(|e| (e.crm_user_id.as_str(), e.email.as_str())).collect();
    assert_eq!(
        entries,
        [
            ("005Hs00000A1bC2IAJ", "cassius.delacroix-nakamura@lumenwharf-corp.example"),
            ("005Hs00000A1bC3IAJ", "henrietta.ploughwright@lumenwharf-corp.example"),
        ]
    );
}

#[test]
fn deletions_unread_for_longer_than_the_recycle_bin_keeps_them_trigger_a_full_resync() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let after_first = host.last_checkpoint().unwrap().clone();
    let first_read_at = after_first.get(OPPORTUNITIES_BIN_READ_AT).unwrap();
    assert_eq!(first_read_at, oneup_connector_sdk::testing::DEFAULT_NOW_MS);
    assert_eq!((host.count_total(DEALS_WON), host.count_total(CALLS), host.count_total(MEETINGS)), (4, 1, 1));

    // Fifteen days later the opportunities are all gone (deleted, and purged from the bin):
    // a full read inside a snapshot retracts them; tasks and events are read in full too,
    // and what is still there stays.
    host.set_now(first_read_at + TRUSTED_BIN_MS + 1);
    host.respond_json(&format!("{API}/sobjects/Opportunity/describe"), &[], DESCRIBE_MULTI);
    soql(&mut host, "query", &first_opps(), EMPTY);
    host.clear_requests();
    let before = host.changes().len();
    assert_eq!(run_sync(Salesforce, &mut host, Some(after_first)), Ok(SyncOutcome::Complete));
    assert_clean(&host);
    assert!(host.requests().iter().all(|r| r.path.ends_with("/query") || r.path.ends_with("/describe")));
    // The calls and meetings still there are upserted again; every opportunity fact is
    // retracted by the snapshot (the fake host lists those retractions as changes too).
    insta::assert_snapshot!(lines(&host.changes()[before..]), @r"
    retract deals_won source=006Hs00000Op001IAB
    retract deals_won source=006Hs00000Op002IAB
    retract deals_won source=006Hs00000Op003IAB
    retract deals_won source=006Hs00000Op005IAB
    retract revenue source=006Hs00000Op001IAB
    retract revenue source=006Hs00000Op002IAB
    retract revenue source=006Hs00000Op003IAB
    retract revenue source=006Hs00000Op005IAB
    upsert calls source=00THs00004TsK01UAF owner=005Hs00000A1bC2IAJ at=2025-05-29T16:21:00Z 1
    upsert meetings source=00UHs00001EvT01UAB owner=005Hs00000A1bC2IAJ at=2025-06-03T01:00:00Z 1
    ");
    let snapshots = host.snapshots();
    assert_eq!(snapshots.len(), 3);
    assert!(snapshots.iter().all(|s| s.committed));
    let mut retracted = snapshots[0].retracted.clone();
    retracted.sort();
    assert_eq!(retracted.len(), 8, "both facts of the four won opportunities: {retracted:?}");
    assert!(snapshots[1].retracted.is_empty() && snapshots[2].retracted.is_empty());
    assert_eq!((host.count_total(DEALS_WON), host.count_total(CALLS), host.count_total(MEETINGS)), (0, 1, 1));
    assert!(host.money_totals(REVENUE).is_empty());
    let last = host.last_checkpoint().unwrap();
    // Nothing counts for opportunities now: their next read is a first read.
    assert_eq!((last.get(OPPORTUNITIES_SINCE), last.get(OPPORTUNITIES_DELETED_SINCE)), (None, None));
    assert_eq!(last.get(TASKS_DELETED_SINCE), last.get(TASKS_SINCE));
    for key in [OPPORTUNITIES_BIN_READ_AT, TASKS_BIN_READ_AT, EVENTS_BIN_READ_AT] {
        assert_eq!(last.get(key), Some(first_read_at + TRUSTED_BIN_MS + 1));
    }
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(FULL_RESYNCS.to_owned(), 3)), "{:?}", summary.fields);
}

#[test]
fn within_the_recycle_bin_s_keeping_time_deletions_are_read_incrementally() {
    let mut host = first_sync_host();
    run_sync(Salesforce, &mut host, None).unwrap();
    let mut cursor = cursor_of_june_10();
    for key in [OPPORTUNITIES_BIN_READ_AT, TASKS_BIN_READ_AT, EVENTS_BIN_READ_AT] {
        cursor.set(key, ms(JUNE_10));
    }
    host.set_now(ms(JUNE_10) + TRUSTED_BIN_MS);
    serve_incremental(&mut host, [EMPTY, OPPS_ALL, EMPTY, EMPTY, EMPTY, EMPTY]);
    run_sync(Salesforce, &mut host, Some(cursor)).unwrap();
    assert_clean(&host);
    assert_eq!(host.count_total(DEALS_WON), 3, "the deleted opportunity is retracted, the rest stays");
    let summary = host.logs().last().unwrap();
    assert!(summary.fields.contains(&(FULL_RESYNCS.to_owned(), 0)), "{:?}", summary.fields);
}
