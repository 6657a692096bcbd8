use serde_json::Value;

use super::*;
use crate::Response;

const HOST: &str = "127.0.0.1:4242";

fn credentials() -> Credentials {
    Credentials::new("client-7", "s3cret", "42:first-refresh")
}

fn crm() -> Crm {
    Crm::new(Dataset::generate(11, 4, 120, 200), credentials())
}

fn call(crm: &Crm, method: &str, path: &str, query: &str, token: Option<&str>) -> Response {
    let mut headers = vec![("host", HOST)];
    if let Some(token) = token {
        headers.push(("BhRestToken", token));
    }
    crm.respond(method, path, query, &headers)
}

/// Refresh with the current refresh token, log in, and return (BhRestToken, REST path prefix).
fn session(crm: &Crm) -> (String, String) {
    let refresh = crm.current_refresh_token();
    let token = call(
        crm,
        "POST",
        "/oauth/token",
        &format!("grant_type=refresh_token&refresh_token={refresh}&client_id=client-7&client_secret=s3cret"),
        None,
    );
    assert_eq!(token.status, 200, "{:?}", token.body_json());
    let access = token.body_json()["access_token"].as_str().unwrap().to_owned();
    let login = call(crm, "POST", "/rest-services/login", &format!("version=*&access_token={access}"), None);
    assert_eq!(login.status, 200);
    let body = login.body_json();
    let rest_url = body["restUrl"].as_str().unwrap();
    let prefix = rest_url.strip_prefix(&format!("http://{HOST}")).unwrap().to_owned();
    (body["BhRestToken"].as_str().unwrap().to_owned(), prefix)
}

fn get(crm: &Crm, session: &(String, String), operation: &str, query: &str) -> Response {
    call(crm, "GET", &format!("{}{operation}", session.1), query, Some(&session.0))
}

fn ids(body: &Value) -> Vec<u64> {
    body["data"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[test]
fn the_dataset_is_deterministic_and_covers_every_fee_rule() {
    let a = Dataset::generate(5, 3, 200, 150);
    let b = Dataset::generate(5, 3, 200, 150);
    let fees = |d: &Dataset| d.placements.iter().map(|p| (p.id, p.fee_micros())).collect::<Vec<_>>();
    assert_eq!(fees(&a), fees(&b));
    assert_ne!(fees(&a), fees(&Dataset::generate(6, 3, 200, 150)));
    assert_eq!(a.users.len(), 4, "3 active and 1 soft-deleted");
    assert!(a.users[3].is_deleted && !a.users[3].enabled);
    assert!(a.placements.iter().all(|p| p.owner_id != a.users[3].id));
    let flat_over_percentage = a.placements.iter().filter(|p| p.flat_fee_cents > 0 && p.fee_e4 > 0).count();
    let percentage = a.placements.iter().filter(|p| p.flat_fee_cents == 0 && p.fee_e4 > 0).count();
    let none = a.placements.iter().filter(|p| p.fee_micros().is_none()).count();
    assert!(flat_over_percentage > 0 && percentage > 50 && none > 0, "{flat_over_percentage} {percentage} {none}");
    assert!(a.submissions.iter().any(|s| s.is_deleted));
    assert!(a.submissions.iter().any(|s| s.status == "New Lead"));
    assert!(a.placements.iter().all(|p| p.date_added < a.now_ms && p.date_last_modified < a.now_ms));
    // Fees are exact: a salary of 61000.50 at 22.5 % is 13725.1125.
    let p = Placement { salary_cents: 6_100_050, fee_e4: 2250, flat_fee_cents: 0, ..a.placements[0].clone() };
    assert_eq!(p.fee_micros(), Some(13_725_112_500));
    assert_eq!(format_micros(13_725_112_500), "13725.1125");
    assert_eq!(format_micros(18_500_000_000), "18500");
}

#[test]
fn refresh_tokens_are_single_use_and_clients_are_checked() {
    let crm = crm();
    let refresh = |token: &str, secret: &str| {
        call(
            &crm,
            "POST",
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={token}&client_id=client-7&client_secret={secret}"),
            None,
        )
    };
    let first = refresh("42:first-refresh", "s3cret");
    assert_eq!(first.status, 200);
    let body = first.body_json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, "42:first-refresh");
    assert_eq!(crm.current_refresh_token(), next);

    let spent = refresh("42:first-refresh", "s3cret");
    assert_eq!(spent.status, 400);
    assert_eq!(spent.body_json()["error"], "invalid_grant");
    assert_eq!(refresh(&next, "wrong").status, 401);
    assert_eq!(refresh(&next, "wrong").body_json()["error"], "invalid_client");
    assert_eq!(call(&crm, "GET", "/oauth/token", "", None).status, 405);
    assert_eq!(refresh(&next, "s3cret").status, 200);
    assert_eq!(crm.refresh_count(), 2);

    crm.revoke_refresh_token();
    let current = crm.current_refresh_token();
    assert_eq!(refresh(&current, "s3cret").status, 400);
}

#[test]
fn login_opens_a_session_at_the_corporations_rest_url() {
    let crm = crm();
    let info = call(&crm, "GET", "/rest-services/loginInfo", "username=api.user", None).body_json();
    assert_eq!(info["oauthUrl"], format!("http://{HOST}/oauth"));
    assert_eq!(info["restUrl"], format!("http://{HOST}/rest-services"));

    let bad = call(&crm, "POST", "/rest-services/login", "version=*&access_token=nope", None);
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body_json()["errorMessage"], "Invalid or expired OAuth access token.");

    let s = session(&crm);
    assert_eq!(s.1, format!("/rest-services/{}/", crm.corp_token()));
    assert_eq!(crm.login_count(), 1);
    let ping = get(&crm, &s, "ping", "");
    assert_eq!(ping.status, 200);
    assert!(ping.body_json()["sessionExpires"].as_i64().unwrap() > crm.now_ms());

    let missing = call(&crm, "GET", &format!("{}ping", s.1), "", None);
    assert_eq!(missing.status, 412);
    let wrong = call(&crm, "GET", &format!("{}ping", s.1), "", Some("made-up"));
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body_json()["errorMessageKey"], "errors.authentication.invalidRestToken");
    // The token may also come as a query parameter.
    let by_query = call(&crm, "GET", &format!("{}ping", s.1), &format!("BhRestToken={}", s.0), None);
    assert_eq!(by_query.status, 200);

    crm.expire_sessions();
    assert_eq!(get(&crm, &s, "ping", "").status, 401);
    crm.expire_access_tokens();
    let log = crm.request_log();
    assert!(log.iter().any(|r| r.session_ok) && log.iter().any(|r| !r.session_ok));
}

#[test]
fn query_pages_with_start_and_count_and_totals_only_when_asked() {
    let crm = crm();
    let s = session(&crm);
    let base = "where=dateLastModified>0&fields=id,dateAdded,dateLastModified,salary,fee,flatFee,owner(id)&orderBy=dateLastModified";
    let mut seen = Vec::new();
    let mut start = 0;
    loop {
        let page = get(&crm, &s, "query/Placement", &format!("{base}&start={start}&count=50&showTotalMatched=true"));
        assert_eq!(page.status, 200, "{:?}", page.body_json());
        let body = page.body_json();
        assert_eq!(body["total"], 120);
        assert_eq!(body["start"], start);
        let count = body["count"].as_u64().unwrap() as usize;
        assert_eq!(count, body["data"].as_array().unwrap().len());
        for record in body["data"].as_array().unwrap() {
            let keys: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 7, "only the fields asked for: {keys:?}");
            assert_eq!(record["owner"].as_object().unwrap().len(), 1);
            seen.push((record["dateLastModified"].as_i64().unwrap(), record["id"].as_u64().unwrap()));
        }
        start += count;
        if count == 0 || start >= 120 {
            break;
        }
    }
    assert_eq!(seen.len(), 120);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "sorted by dateLastModified, then id");

    let without_total = get(&crm, &s, "query/Placement", &format!("{base}&count=5")).body_json();
    assert!(without_total.get("total").is_none());
    assert_eq!(without_total["count"], 5);
    let capped = get(&crm, &s, "query/Placement", &format!("{base}&count=5000&showTotalMatched=true")).body_json();
    assert_eq!(capped["count"], 120);
    let default = get(&crm, &s, "query/Placement", base).body_json();
    assert_eq!(default["count"], 20);

    let cutoff = seen[100].0;
    let recent = get(
        &crm,
        &s,
        "query/Placement",
        &format!("where=dateLastModified>={cutoff}&fields=id&showTotalMatched=true&count=500"),
    )
    .body_json();
    let expected = seen.iter().filter(|(t, _)| *t >= cutoff).count();
    assert_eq!(recent["total"], expected);
}

#[test]
fn bad_requests_are_400s_with_the_error_envelope() {
    let crm = crm();
    let s = session(&crm);
    for query in ["where=dateLastModified>0&fields=id,nope", "where=dateLastModified>0&fields=owner(password)"] {
        let answer = get(&crm, &s, "query/Placement", query);
        assert_eq!(answer.status, 404, "a field that does not exist: {query}");
        assert_eq!(answer.body_json()["errorCode"], 404);
    }
    for query in [
        "where=nope>0&fields=id",
        "where=dateLastModified>0",
        "fields=id",
        "where=dateLastModified>0 OR id=1&fields=id",
        "where=dateLastModified>0&fields=id&orderBy=nope",
        "where=dateLastModified>0&fields=id&start=-1",
    ] {
        let answer = get(&crm, &s, "query/Placement", query);
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(answer.body_json()["errorCode"], 400);
        assert!(answer.body_json()["errorMessage"].is_string());
    }
    assert_eq!(get(&crm, &s, "search/JobSubmission", "query=id:1&fields=id").status, 400);
    assert_eq!(get(&crm, &s, "query/Nothing", "where=id>0&fields=id").status, 400);
    assert_eq!(get(&crm, &s, "entity/Placement/9001", "fields=id").status, 404);
}

#[test]
fn search_reads_lucene_date_ranges_and_always_totals() {
    let crm = crm();
    let s = session(&crm);
    let all =
        get(&crm, &s, "search/Placement", "query=id:[0 TO *]&fields=id,dateAdded&sort=dateAdded&count=500").body_json();
    assert_eq!(all["total"], 120);
    assert_eq!(all["data"][0]["_score"], 1.0);
    let added: Vec<i64> = all["data"].as_array().unwrap().iter().map(|r| r["dateAdded"].as_i64().unwrap()).collect();
    // From 2025-05-01T00:00:00Z on.
    let from = 1_746_057_600_000i64;
    let expected = added.iter().filter(|t| **t >= from).count();
    let recent =
        get(&crm, &s, "search/Placement", "query=dateAdded:[20250501000000 TO *]&fields=id&count=1").body_json();
    assert_eq!(recent["total"], expected);
    assert_eq!(recent["count"], 1);
    let ids_only = get(&crm, &s, "search/Placement", "query=dateAdded:[20250501000000 TO *]&count=3").body_json();
    assert!(ids_only["data"].as_array().unwrap().iter().all(Value::is_u64));
    let desc = get(&crm, &s, "search/Placement", "query=id:[0 TO *]&fields=id&sort=-id&count=2").body_json();
    assert!(desc["data"][0]["id"].as_u64() > desc["data"][1]["id"].as_u64());
    assert_eq!(
        get(&crm, &s, "search/Placement", "query=isDeleted:0&fields=id").status,
        400,
        "placements have no isDeleted"
    );
}

#[test]
fn submissions_and_users_carry_soft_deletes() {
    let crm = crm();
    let s = session(&crm);
    let all = get(
        &crm,
        &s,
        "query/JobSubmission",
        "where=dateLastModified>0&fields=id,dateAdded,dateLastModified,isDeleted,sendingUser(id)&count=500&showTotalMatched=true",
    )
    .body_json();
    assert_eq!(all["total"], 200);
    let deleted = all["data"].as_array().unwrap().iter().filter(|r| r["isDeleted"] == true).count();
    assert!(deleted > 0);
    let live = get(&crm, &s, "query/JobSubmission", "where=isDeleted=false&fields=id&count=500&showTotalMatched=true")
        .body_json();
    assert_eq!(live["total"], 200 - deleted);

    let users =
        get(&crm, &s, "query/CorporateUser", "where=isDeleted=false&fields=id,email&showTotalMatched=true").body_json();
    assert_eq!(users["total"], 4);
    assert_eq!(ids(&users), [3101, 3102, 3103, 3104]);
    assert!(users["data"][0]["email"].as_str().unwrap().ends_with("-staffing.example"));
}

#[test]
fn faults_rate_limits_and_expired_sessions() {
    let crm = crm();
    let s = session(&crm);
    crm.fail_next(1, Fault::RateLimited);
    let limited = get(&crm, &s, "ping", "");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body_json()["errorCode"], 429);
    assert!(limited.headers.iter().all(|(n, _)| *n == "content-type"), "no rate-limit headers");
    assert_eq!(get(&crm, &s, "ping", "").status, 200);

    crm.rate_limit_every(Some(3));
    let statuses: Vec<u16> = (0..6).map(|_| get(&crm, &s, "ping", "").status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    crm.clear_faults();

    crm.fail_next(1, Fault::SessionExpired);
    assert_eq!(get(&crm, &s, "ping", "").status, 401);
    assert_eq!(get(&crm, &s, "ping", "").status, 401, "the session stays dead");
    let again = session(&crm);
    assert_eq!(get(&crm, &again, "ping", "").status, 200);
    crm.fail_next(1, Fault::ServerError(503));
    assert_eq!(get(&crm, &again, "ping", "").status, 503);
}

#[test]
fn mutations_change_answers_and_expected_totals() {
    let mut crm = crm();
    let before = crm.expected_totals();
    assert_eq!(before.len(), 4, "active users only");
    let total = |t: &BTreeMap<u64, OwnerTotals>| -> (u64, i64, u64) {
        t.values().fold((0, 0, 0), |a, t| (a.0 + t.placements, a.1 + t.placement_fee_micros, a.2 + t.submissions))
    };
    let (placements, fees, submissions) = total(&before);
    assert_eq!(placements, 120);
    assert!(fees > 0);

    let id = crm
        .add_placement(NewPlacement { owner_id: 3102, date_added: None, fee: Fee::percentage(6_100_050, 2250) })
        .unwrap();
    assert_eq!(crm.expected_totals()[&3102].placements, before[&3102].placements + 1);
    assert_eq!(total(&crm.expected_totals()).1, fees + 13_725_112_500);
    crm.set_placement_fee(id, Fee { salary_cents: 6_100_050, fee_e4: 2250, flat_fee_cents: 1_850_000 }).unwrap();
    assert_eq!(total(&crm.expected_totals()).1, fees + 18_500_000_000, "a flat fee wins");
    crm.set_placement_fee(id, Fee::none()).unwrap();
    assert_eq!(total(&crm.expected_totals()).1, fees);

    let stamp = crm.placement(id).unwrap().date_last_modified;
    let s = session(&crm);
    let changed =
        get(&crm, &s, "query/Placement", &format!("where=dateLastModified>={stamp}&fields=id,fee,flatFee,salary"))
            .body_json();
    assert_eq!(ids(&changed), [id]);
    assert_eq!(changed["data"][0]["fee"], 0.0);

    crm.delete_placement(id).unwrap();
    let after = get(&crm, &s, "query/Placement", &format!("where=id={id}&fields=id&showTotalMatched=true")).body_json();
    assert_eq!(after["total"], 0, "hard-deleted placements vanish");
    assert_eq!(crm.delete_placement(id).unwrap_err(), CrmError::UnknownPlacement(id));

    let sub = crm.submissions().find(|s| !s.is_deleted).unwrap().clone();
    crm.delete_submission(sub.id).unwrap();
    assert_eq!(total(&crm.expected_totals()).2, submissions - 1);
    let seen = get(&crm, &s, "query/JobSubmission", &format!("where=id={}&fields=isDeleted,dateLastModified", sub.id))
        .body_json();
    assert_eq!(seen["data"][0]["isDeleted"], true);
    assert!(seen["data"][0]["dateLastModified"].as_i64().unwrap() > sub.date_last_modified);

    assert_eq!(crm.add_submission(3105, None), Err(CrmError::UnknownUser(3105)), "the deleted user");
    let by_email = crm.expected_totals_by_email();
    assert_eq!(by_email.len(), 4);
    assert!(by_email.keys().all(|e| e.contains('@')));
}

#[test]
fn personal_data_is_served_and_listed_as_canaries() {
    let crm = crm();
    let s = session(&crm);
    let canaries = crm.canaries();
    assert!(canaries.len() > 100);
    assert!(canaries.iter().all(|c| c.len() >= 7));
    let full = String::from_utf8(get(&crm, &s, "query/Placement", "where=id>0&fields=*&count=500").body).unwrap();
    let found = canaries.iter().filter(|c| full.contains(c.as_str())).count();
    assert!(found > 50, "{found}");
    let terminated = crm.placements().any(|p| p.termination_reason.is_some());
    assert!(terminated);
    // What a careful connector asks for carries none of it.
    let narrow = String::from_utf8(
        get(
            &crm,
            &s,
            "query/Placement",
            "where=id>0&fields=id,dateAdded,dateLastModified,salary,fee,flatFee,owner(id)&count=500",
        )
        .body,
    )
    .unwrap();
    assert!(canaries.iter().all(|c| !narrow.contains(c.as_str())));
    let contacts = crm.contact_canaries();
    assert!(crm.user_canaries().iter().all(|u| !contacts.contains(u)));
}
