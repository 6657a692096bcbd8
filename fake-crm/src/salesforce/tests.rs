//! The fake Salesforce's core, request by request.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::Response;
use crate::oauth::{OAuthSettings, TokenAuthority};

const SECRET: &str = "s3cret";

fn creds() -> TokenAuthority {
    TokenAuthority::new(OAuthSettings::salesforce("client-1", SECRET))
}

fn crm(seed: u64) -> Crm {
    Crm::new(Dataset::generate(seed, 3, 120, 150, 60), creds())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET with a session.
fn get(crm: &Crm, token: &str, path: &str, query: &str) -> Response {
    let auth = format!("Bearer {token}");
    crm.respond_with_body("GET", path, query, &[("authorization", &auth)], &[])
}

fn soql(crm: &Crm, token: &str, endpoint: &str, text: &str) -> Response {
    get(crm, token, &format!("/services/data/v62.0/{endpoint}"), &format!("q={}", encode(text)))
}

/// Every record of a query, following `nextRecordsUrl`.
fn all_records(crm: &Crm, token: &str, endpoint: &str, text: &str) -> Vec<Value> {
    let mut page = soql(crm, token, endpoint, text);
    let mut records = Vec::new();
    loop {
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let body = page.body_json();
        records.extend(body["records"].as_array().unwrap().iter().cloned());
        match body["nextRecordsUrl"].as_str() {
            Some(next) => page = get(crm, token, next, ""),
            None => {
                assert_eq!(body["done"], true);
                return records;
            }
        }
    }
}

fn error_code(response: &Response) -> String {
    response.body_json()[0]["errorCode"].as_str().unwrap_or_default().to_owned()
}

fn token_request(crm: &Crm, body: &str) -> Response {
    crm.respond_with_body(
        "POST",
        TOKEN_PATH,
        "",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

#[test]
fn the_token_endpoint_grants_sessions_for_the_right_credentials_only() {
    let crm = crm(1);
    let refresh = crm.authority().issue_refresh_token();
    let ok = token_request(
        &crm,
        &format!("grant_type=refresh_token&client_id=client-1&client_secret=s3cret&refresh_token={refresh}"),
    );
    assert_eq!(ok.status, 200);
    let body = ok.body_json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("expires_in").is_none(), "Salesforce sends no expiry");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(get(&crm, token, "/services/data/v62.0/limits", "").status, 200);

    for (form, error) in [
        (
            format!("grant_type=refresh_token&client_id=client-1&client_secret=wrong&refresh_token={refresh}"),
            "invalid_client",
        ),
        (
            "grant_type=refresh_token&client_id=client-1&client_secret=s3cret&refresh_token=old".to_owned(),
            "invalid_grant",
        ),
        ("grant_type=password&client_id=client-1".to_owned(), "unsupported_grant_type"),
    ] {
        let refused = token_request(&crm, &form);
        assert_eq!(refused.status, 400, "{form}");
        assert_eq!(refused.body_json()["error"], error, "{form}");
    }
    assert_eq!(crm.authority().stats().granted, 1);
    // The log never keeps the token endpoint's parameters.
    assert!(crm.request_log().iter().filter(|r| r.path == TOKEN_PATH).all(|r| r.query.is_empty()));
}

#[test]
fn requests_without_a_valid_session_get_invalid_session_id() {
    let crm = crm(2);
    let none = crm.respond_with_body("GET", "/services/data/v62.0/limits", "", &[], &[]);
    assert_eq!(none.status, 401);
    assert_eq!(error_code(&none), "INVALID_SESSION_ID");
    let token = crm.issue_access_token();
    let ok = get(&crm, &token, "/services/data/v62.0/limits", "");
    assert_eq!(ok.header("sforce-limit-info"), Some("api-usage=1/100000"));
    crm.expire_sessions();
    assert_eq!(get(&crm, &token, "/services/data/v62.0/limits", "").status, 401);
    assert_eq!(crm.api_usage(), 1, "refused sessions do not count");
}

#[test]
fn sessions_can_be_made_to_expire_after_some_requests_or_by_a_fault() {
    let mut crm = crm(3);
    crm.set_session_budget(Some(2));
    let token = crm.issue_access_token();
    let statuses: Vec<u16> = (0..3).map(|_| get(&crm, &token, "/services/data/v62.0/limits", "").status).collect();
    assert_eq!(statuses, [200, 200, 401]);
    let token = crm.issue_access_token();
    let statuses: Vec<u16> = (0..3).map(|_| get(&crm, &token, "/services/data/v62.0/limits", "").status).collect();
    assert_eq!(statuses, [200, 200, 401], "each new session gets the budget again");
    crm.set_session_budget(None);
    let token = crm.issue_access_token();
    crm.fail_next(1, Fault::SessionExpired);
    assert_eq!(get(&crm, &token, "/services/data/v62.0/limits", "").status, 401);
    assert_eq!(get(&crm, &token, "/services/data/v62.0/limits", "").status, 401);
}

#[test]
fn the_allocation_runs_out_with_a_403_not_a_429() {
    let mut crm = crm(4);
    crm.set_api_limit(2);
    let token = crm.issue_access_token();
    let answers: Vec<Response> = (0..3).map(|_| get(&crm, &token, "/services/data/v62.0/limits", "")).collect();
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200, 403]);
    assert_eq!(error_code(&answers[2]), "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(answers[2].body_json()[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(answers[2].header("sforce-limit-info"), Some("api-usage=3/2"));
    assert!(answers[2].header("retry-after").is_none());
    crm.reset_api_usage();
    assert_eq!(get(&crm, &token, "/services/data/v62.0/limits", "").status, 200);
}

#[test]
fn queries_answer_the_fixture_shapes() {
    let crm = crm(5);
    let token = crm.issue_access_token();
    let text = "SELECT Id, Amount, CurrencyIsoCode, CloseDate, IsWon, OwnerId, Owner.Name, Owner.Email, \
                SystemModstamp, IsDeleted FROM Opportunity WHERE IsWon = true ORDER BY SystemModstamp ASC";
    let body = soql(&crm, &token, "query", text).body_json();
    let records = body["records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert_eq!(body["done"], true);
    assert_eq!(body["totalSize"].as_u64().unwrap() as usize, records.len());
    let first = &records[0];
    assert_eq!(first["attributes"]["type"], "Opportunity");
    assert!(first["attributes"]["url"].as_str().unwrap().ends_with(first["Id"].as_str().unwrap()));
    assert_eq!(first["Owner"]["attributes"]["type"], "User");
    assert!(first["Owner"]["Email"].as_str().unwrap().contains('@'));
    assert!(first.get("Name").is_none(), "only the selected fields");
    let stamp = first["SystemModstamp"].as_str().unwrap();
    assert!(stamp.ends_with(".000+0000") && stamp.len() == 28, "{stamp}");
    assert_eq!(first["CloseDate"].as_str().unwrap().len(), 10);
    let stamps: Vec<&str> = records.iter().map(|r| r["SystemModstamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "ordered by SystemModstamp");
    assert!(records.iter().all(|r| r["IsWon"] == true && r["IsDeleted"] == false));
    let won = crm.opportunities().iter().filter(|o| o.is_won).count();
    assert_eq!(records.len(), won);
}

#[test]
fn filters_compare_datetimes_dates_strings_and_nulls() {
    let crm = crm(6);
    let token = crm.issue_access_token();
    let cut = crm.opportunities()[10].system_modstamp;
    let after = all_records(
        &crm,
        &token,
        "query",
        &format!("SELECT Id FROM Opportunity WHERE SystemModstamp > {cut} ORDER BY SystemModstamp"),
    );
    let expected = crm.opportunities().iter().filter(|o| o.system_modstamp > cut).count();
    assert_eq!(after.len(), expected);
    let offset = cut.plus_secs(3600).to_string().replace('Z', "+01:00");
    let same =
        all_records(&crm, &token, "query", &format!("SELECT Id FROM Opportunity WHERE SystemModstamp > {offset}"));
    assert_eq!(same.len(), expected, "an offset literal names the same instant");

    let calls = all_records(
        &crm,
        &token,
        "query",
        "SELECT Id FROM Task WHERE TaskSubtype = 'Call' AND IsClosed = true AND CompletedDateTime != null",
    );
    let expected = crm.tasks().iter().filter(|t| t.is_closed_call() && t.completed.is_some()).count();
    assert_eq!(calls.len(), expected);
    let day = crm.opportunities()[0].close_date;
    let on_or_after =
        all_records(&crm, &token, "query", &format!("SELECT Id FROM Opportunity WHERE CloseDate >= {day}"));
    assert_eq!(on_or_after.len(), crm.opportunities().iter().filter(|o| o.close_date >= day).count());
}

#[test]
fn bad_queries_get_salesforce_errors() {
    let crm = crm(7);
    let token = crm.issue_access_token();
    for (text, code) in [
        ("SELECT Id, Amont FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE SystemModstamp > '2025-06-01T00:00:00Z'", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE IsWon = 'true'", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity WHERE CloseDate > 2025-06-01T00:00:00Z", "INVALID_FIELD"),
        ("SELECT Id, Owner.Phone FROM Opportunity", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunityy", "INVALID_TYPE"),
        ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
        ("SELECT Id, Id FROM Opportunity", "MALFORMED_QUERY"),
    ] {
        let answer = soql(&crm, &token, "query", text);
        assert_eq!(answer.status, 400, "{text}");
        assert_eq!(error_code(&answer), code, "{text}");
    }
    assert_eq!(get(&crm, &token, "/services/data/v62.0/query", "").status, 400);
    assert_eq!(get(&crm, &token, "/services/data/v20.0/limits", "").status, 404);
    assert_eq!(get(&crm, &token, "/services/data/v62.0/sobjects/Nope/describe", "").status, 404);
}

#[test]
fn pages_follow_next_records_url_and_locators_expire() {
    let mut crm = crm(8);
    crm.set_page_cap(25);
    let token = crm.issue_access_token();
    let text = "SELECT Id FROM Opportunity ORDER BY SystemModstamp ASC";
    let records = all_records(&crm, &token, "query", text);
    assert_eq!(records.len(), 120);
    let mut ids: Vec<&str> = records.iter().map(|r| r["Id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 120, "every record once");
    let first = soql(&crm, &token, "query", text).body_json();
    assert_eq!(first["records"].as_array().unwrap().len(), 25);
    assert_eq!(first["done"], false);
    let next = first["nextRecordsUrl"].as_str().unwrap();
    assert!(next.starts_with("/services/data/v62.0/query/01g") && next.ends_with("-25"), "{next}");
    crm.expire_query_locators();
    let expired = get(&crm, &token, next, "");
    assert_eq!((expired.status, error_code(&expired).as_str()), (400, "INVALID_QUERY_LOCATOR"));

    // batchSize is honoured between 200 and 2000.
    let crm = Crm::new(Dataset::generate(8, 2, 700, 0, 0), creds());
    let token = crm.issue_access_token();
    let auth = format!("Bearer {token}");
    let page = |options: &str| {
        let headers = [("authorization", auth.as_str()), ("sforce-query-options", options)];
        let q = format!("q={}", encode("SELECT Id FROM Opportunity"));
        let body = crm.respond_with_body("GET", "/services/data/v62.0/query", &q, &headers, &[]).body_json();
        body["records"].as_array().unwrap().len()
    };
    assert_eq!(page("batchSize=300"), 300);
    assert_eq!(page("batchSize=50"), 200);
    assert_eq!(page("batchSize=5000"), 700);
}

#[test]
fn deleted_records_leave_query_and_stay_in_query_all_for_fifteen_days() {
    let mut crm = crm(9);
    let token = crm.issue_access_token();
    let id = crm.opportunities().iter().find(|o| o.is_won).unwrap().id.clone();
    let before = crm.now();
    crm.delete_opportunity(&id).unwrap();
    let text = format!("SELECT Id, IsDeleted, SystemModstamp FROM Opportunity WHERE SystemModstamp > {before}");
    assert!(all_records(&crm, &token, "query", &text).is_empty());
    let all = all_records(&crm, &token, "queryAll", &text);
    assert_eq!(all.len(), 1);
    assert_eq!((all[0]["Id"].as_str(), &all[0]["IsDeleted"]), (Some(id.as_str()), &Value::Bool(true)));
    // The feed covers whole minutes up to its clock.
    crm.advance_clock(Duration::from_secs(120));
    let feed = get(
        &crm,
        &token,
        "/services/data/v62.0/sobjects/Opportunity/deleted/",
        &format!("start={}&end={}", encode(&before.to_string()), encode(&crm.now().plus_secs(120).to_string())),
    )
    .body_json();
    assert_eq!(feed["deletedRecords"][0]["id"], id.as_str());
    assert!(feed["earliestDateAvailable"].as_str().unwrap() < feed["latestDateCovered"].as_str().unwrap());
    assert_eq!(
        crm.expected_facts().iter().filter(|f| f.metric == "deals_won").count(),
        crm.opportunities().iter().filter(|o| o.is_won).count() - 1
    );

    crm.advance_clock(Duration::from_secs(16 * 86_400));
    assert!(all_records(&crm, &token, "queryAll", &text).is_empty(), "purged from the recycle bin");
}

#[test]
fn single_currency_orgs_have_no_currency_iso_code() {
    let crm = Crm::new(Dataset::generate_with(&DatasetSpec::new(10, 2, 40, 10, 5).single_currency("EUR")), creds());
    let token = crm.issue_access_token();
    let describe = get(&crm, &token, "/services/data/v62.0/sobjects/Opportunity/describe", "").body_json();
    let names: Vec<&str> = describe["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Amount") && !names.contains(&"CurrencyIsoCode"));
    let refused = soql(&crm, &token, "query", "SELECT Id, CurrencyIsoCode FROM Opportunity");
    assert_eq!(error_code(&refused), "INVALID_FIELD");
    let org = all_records(&crm, &token, "query", "SELECT DefaultCurrencyIsoCode FROM Organization");
    assert_eq!(org[0]["DefaultCurrencyIsoCode"], "EUR");
    assert!(crm.expected_totals().values().all(|t| t.revenue_cents.keys().all(|c| c == "EUR")));

    let multi = self::crm(10);
    let describe = get(&multi, &multi.issue_access_token(), "/services/data/v62.0/sobjects/Opportunity/describe", "");
    assert!(describe.body_json()["fields"].as_array().unwrap().iter().any(|f| f["name"] == "CurrencyIsoCode"));
}

#[test]
fn the_expected_totals_are_what_the_api_serves() {
    let mut crm = Crm::new(Dataset::generate(11, 4, 300, 400, 120), creds());
    crm.set_page_cap(200);
    let token = crm.issue_access_token();
    let mut totals: BTreeMap<String, OwnerTotals> =
        crm.users().iter().map(|u| (u.id.clone(), OwnerTotals::default())).collect();
    for o in all_records(
        &crm,
        &token,
        "query",
        "SELECT OwnerId, Amount, CurrencyIsoCode FROM Opportunity WHERE IsWon = true",
    ) {
        let t = totals.get_mut(o["OwnerId"].as_str().unwrap()).unwrap();
        t.deals_won += 1;
        if let Some(amount) = o["Amount"].as_f64() {
            *t.revenue_cents.entry(o["CurrencyIsoCode"].as_str().unwrap().to_owned()).or_default() +=
                (amount * 100.0).round() as i64;
        }
    }
    for t in
        all_records(&crm, &token, "query", "SELECT OwnerId FROM Task WHERE TaskSubtype = 'Call' AND IsClosed = true")
    {
        totals.get_mut(t["OwnerId"].as_str().unwrap()).unwrap().calls += 1;
    }
    for e in all_records(&crm, &token, "query", "SELECT OwnerId FROM Event") {
        totals.get_mut(e["OwnerId"].as_str().unwrap()).unwrap().meetings += 1;
    }
    assert_eq!(totals, crm.expected_totals());
    let expected = crm.expected_totals();
    assert!(expected.values().filter(|t| t.deals_won > 0).count() >= 3);
    let currencies: std::collections::BTreeSet<&String> =
        expected.values().flat_map(|t| t.revenue_cents.keys()).collect();
    assert_eq!(currencies.len(), 4, "{currencies:?}");
    // Some won opportunities have no amount and some closed calls no completion time.
    assert!(crm.opportunities().iter().any(|o| o.is_won && o.amount_cents.is_none()));
    assert!(crm.tasks().iter().any(|t| t.is_closed_call() && t.completed.is_none()));
}

#[test]
fn mutations_move_the_modstamp_and_the_totals() {
    let mut crm = crm(12);
    let won = crm.opportunities().iter().find(|o| o.is_won && o.amount_cents.is_some()).unwrap().clone();
    let before = crm.expected_totals()[&won.owner_id].clone();
    crm.mark_lost(&won.id).unwrap();
    let after = crm.expected_totals()[&won.owner_id].clone();
    assert_eq!(after.deals_won, before.deals_won - 1);
    assert!(crm.opportunity(&won.id).unwrap().system_modstamp > won.system_modstamp);
    crm.mark_won(&won.id, won.close_date).unwrap();
    crm.set_amount(&won.id, Some(1234.5)).unwrap();
    let t = &crm.expected_totals()[&won.owner_id];
    assert_eq!(t.deals_won, before.deals_won);
    let delta = 123_450 - won.amount_cents.unwrap();
    assert_eq!(t.revenue_cents[&won.currency], before.revenue_cents[&won.currency] + delta);
    assert_eq!(crm.set_currency(&won.id, "SEK"), Err(CrmError::InvalidCurrency("SEK".to_owned())));

    let owner = crm.users()[1].id.clone();
    let calls = crm.expected_totals()[&owner].calls;
    let task = crm.add_task(NewTask::call_completed(&owner, crm.now())).unwrap();
    assert_eq!(crm.expected_totals()[&owner].calls, calls + 1);
    crm.set_task_subtype(&task, "Email").unwrap();
    assert_eq!(crm.expected_totals()[&owner].calls, calls);
    let meetings = crm.expected_totals()[&owner].meetings;
    let event = crm.add_event(&owner, crm.now()).unwrap();
    assert_eq!(crm.expected_totals()[&owner].meetings, meetings + 1);
    crm.delete_event(&event).unwrap();
    assert_eq!(crm.expected_totals()[&owner].meetings, meetings);
    assert_eq!(crm.delete_event(&event), Err(CrmError::Deleted(event.clone())));
    let id = crm.add_opportunity(NewOpportunity::won(&owner, None, "JPY", crm.now().date())).unwrap();
    assert!(crm.opportunity(&id).is_some_and(|o| o.is_won && o.amount_cents.is_none()));
}

#[test]
fn the_data_is_deterministic_and_full_of_canaries() {
    let (a, b) = (crm(13), crm(13));
    assert_eq!(a.canaries(), b.canaries());
    assert_eq!(format!("{:?}", a.opportunities()), format!("{:?}", b.opportunities()));
    assert_ne!(a.canaries(), crm(14).canaries());
    let token = a.issue_access_token();
    let mut served = String::new();
    for text in [
        "SELECT Name, Description, Account.Name FROM Opportunity",
        "SELECT Subject, Description, Who.Name FROM Task",
        "SELECT Subject, Location FROM Event",
        "SELECT Name, Email, Phone FROM Contact",
    ] {
        for record in all_records(&a, &token, "query", text) {
            served.push_str(&record.to_string());
        }
    }
    let found = a.contact_canaries().iter().filter(|c| served.contains(c.as_str())).count();
    assert!(found * 2 > a.contact_canaries().len(), "most canaries are served: {found}");
    assert!(a.canaries().iter().all(|c| c.len() >= 6), "{:?}", a.canaries());
}
