//! The template connector against recorded Example CRM answers, natively, with the SDK's
//! `FakeHost`: it serves the canned answers, records every change, checkpoint and log, and
//! checks each against the contract (declared metrics, identifier-shaped ids, declared codes
//! and cursor keys) exactly as the real host would.
//!
//! Copy these tests with the connector and replace the fixtures with recorded answers of
//! your CRM (`oneup connector check --record DIR` saves them, secrets redacted).

use oneup_connector_sdk::testing::{FakeHost, run_roster, run_sync};
use oneup_connector_sdk::{Amount, Connector, Cursor, HttpResponse, KpiChange, SyncOutcome};
use oneup_connector_template::{DEALS_WON, MODIFIED_SINCE, REVENUE, Template};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The query of one deals page.
fn deals(since: &str, page: &str) -> Vec<(&'static str, String)> {
    vec![("modified_since", since.to_owned()), ("page", page.to_owned()), ("per_page", "200".to_owned())]
}

fn respond(host: &mut FakeHost, since: &str, page: &str, body: &str) {
    let query = deals(since, page);
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.respond_json("/api/v1/deals", &query, body);
}

/// A host serving a first sync: two pages of deals.
fn first_sync_host() -> FakeHost {
    let mut host = FakeHost::new().with_config("base_url", "https://acme.example-crm.com");
    respond(&mut host, "0", "1", &fixture("deals_page1.json"));
    respond(&mut host, "0", "2", &fixture("deals_page2.json"));
    host
}

#[test]
fn the_descriptor_is_well_formed() {
    assert_eq!(Template::describe().problems(), Vec::<String>::new());
}

#[test]
fn a_first_sync_counts_won_deals_and_checkpoints_every_page() {
    let mut host = first_sync_host();
    assert_eq!(run_sync(Template, &mut host, None), Ok(SyncOutcome::Complete));
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    // Deals 101 and 103 are won with an owner; 102 is open; 104 has no owner.
    assert_eq!(host.count_total(DEALS_WON), 2);
    let revenue = host.money_totals(REVENUE);
    assert_eq!(revenue.get("EUR"), Some(&12_500_500_000));
    assert_eq!(revenue.get("GBP"), Some(&4_000_000_000));
    // A first sync retracts nothing.
    assert!(host.changes().iter().all(|c| matches!(c, KpiChange::Upsert(_))));
    // One checkpoint per page, the last at the largest `modified_at`.
    assert_eq!(host.checkpoints().len(), 2);
    assert_eq!(host.last_checkpoint().unwrap().get(MODIFIED_SINCE), Some(1_749_027_600_000));
    // Nothing but ids, numbers, times and currency codes crossed: no title, name or e-mail.
    let emitted: String = host.changes().iter().map(|c| format!("{c:?}")).collect();
    for personal in ["Marit", "Olsen", "Nowak", "Ellis", "@", "+48"] {
        assert!(!emitted.contains(personal), "{personal} left the connector");
    }
}

#[test]
fn a_second_sync_reads_from_the_watermark_and_retracts_a_lost_deal() {
    let mut host = first_sync_host();
    run_sync(Template, &mut host, None).unwrap();
    let cursor = host.last_checkpoint().cloned();
    respond(&mut host, "1749027600000", "1", &fixture("deals_incremental.json"));
    assert_eq!(run_sync(Template, &mut host, cursor), Ok(SyncOutcome::Complete));
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    // 101 was lost: both its facts are gone; 103's amount changed.
    assert_eq!(host.count_total(DEALS_WON), 1);
    let revenue = host.money_totals(REVENUE);
    assert_eq!(revenue.get("EUR"), None);
    assert_eq!(revenue.get("GBP"), Some(&4_250_250_000));
    let facts = host.facts();
    assert_eq!(facts[&(REVENUE.to_owned(), "103".to_owned())].value, Amount::Money(revenue_of("4250.25", "GBP")));
}

fn revenue_of(amount: &str, currency: &str) -> oneup_connector_sdk::Money {
    oneup_connector_sdk::Money::parse(amount, currency).unwrap()
}

#[test]
fn a_spent_rate_limit_ends_the_sync_at_the_last_checkpoint() {
    let mut host = first_sync_host();
    let query = deals("0", "2");
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.respond("/api/v1/deals", &query, HttpResponse::new(429, r#"{"error":"slow down"}"#));
    assert_eq!(run_sync(Template, &mut host, None), Ok(SyncOutcome::BudgetExhausted { resume_at: None }));
    assert_eq!(host.checkpoints().len(), 1);
    assert_eq!(host.count_total(DEALS_WON), 1);
    assert_eq!(host.logs().first().map(|l| l.code.as_str()), Some("budget_exhausted"));
}

#[test]
fn a_resumed_sync_starts_from_its_cursor() {
    let mut host = FakeHost::new().with_config("base_url", "https://acme.example-crm.com");
    respond(&mut host, "42", "1", r#"{"items":[],"next_page":null}"#);
    let since = Cursor::new().with(MODIFIED_SINCE, 42);
    assert_eq!(run_sync(Template, &mut host, Some(since)), Ok(SyncOutcome::Complete));
    assert!(host.unmatched_requests().is_empty(), "{:?}", host.unmatched_requests());
    assert_eq!(host.change_count(), 0);
}

#[test]
fn the_roster_lists_users_with_an_email() {
    let mut host = FakeHost::new().with_config("base_url", "https://acme.example-crm.com");
    host.respond_json("/api/v1/users", &[("page", "1")], &fixture("users.json"));
    let roster = run_roster(Template, &mut host).unwrap();
    let ids: Vec<&str> = roster.iter().map(|r| r.crm_user_id.as_str()).collect();
    assert_eq!(ids, ["7", "8"]);
}
