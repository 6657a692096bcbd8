//! The Pipedrive connector end to end: the real component in the real runtime, reading the
//! fake Pipedrive over loopback HTTP. Every total is compared with what the fake says a
//! correct connector credits (`expected_totals()`), owners mapped from keyed hashes to CRM
//! users through the roster (hash → e-mail) and the fake's users (e-mail → id).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneup::cli::FactTable;
use oneup::cli::output::change_json;
use oneup::ingest::{Change, Fact, KeyedHash, Value};
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, RuntimeConfig, SyncError, SyncOutcome, SyncReport};
use oneup_fake_crm::Timestamp;
use oneup_fake_crm::pipedrive::{
    Activity, DealStatus, FakePipedrive, Fault, NewActivity, NewDeal, OwnerTotals, RequestRecord,
};
use oneup_tests::*;

const TOKEN: &str = "pd-e2e-token-7c41";

/// Pipedrive's largest page, which the connector asks for.
const PAGE: usize = 500;

/// One integration: the fake, a runtime, the loaded connector and the facts committed so far.
struct Pipedrive {
    fake: FakePipedrive,
    runtime: Runtime,
    connector: LoadedConnector,
    table: Arc<Mutex<FactTable>>,
    /// Owner hash (from the roster) → the fake's user id (through the e-mail).
    owners: BTreeMap<KeyedHash, u64>,
}

impl Pipedrive {
    /// Starts a fake company and reads the roster; the fake's request log starts empty.
    async fn start(seed: u64, users: usize, deals: usize, activities: usize) -> Self {
        let fake = fake_pipedrive(seed, users, deals, activities, TOKEN).await;
        let runtime = runtime();
        let connector = runtime.load(&component(PIPEDRIVE)).await.expect("the Pipedrive connector loads");
        let mut this = Self { fake, runtime, connector, table: table(), owners: BTreeMap::new() };
        this.owners = this.roster().await;
        this.fake.with(|crm| crm.clear_request_log());
        this
    }

    fn setup(&self) -> IntegrationSetup {
        setup(&[("base_url", &self.fake.base_url())], &[("api_token", TOKEN)])
    }

    /// Maps every roster entry to a CRM user by e-mail; every user must be in the roster.
    async fn roster(&self) -> BTreeMap<KeyedHash, u64> {
        let roster = self.runtime.roster(&self.connector, self.setup()).await.expect("the roster is read");
        let by_email: BTreeMap<String, u64> =
            self.fake.with(|crm| crm.users().iter().map(|u| (u.email.to_ascii_lowercase(), u.id)).collect());
        let owners: BTreeMap<KeyedHash, u64> = roster
            .iter()
            .map(|r| {
                let id = by_email.get(&r.email).unwrap_or_else(|| panic!("roster e-mail of no CRM user"));
                (r.owner, *id)
            })
            .collect();
        assert_eq!(owners.len(), by_email.len(), "every CRM user is in the roster, once");
        owners
    }

    async fn sync(&self) -> SyncReport {
        sync_into(&self.runtime, &self.connector, self.setup(), &self.table).await
    }

    fn expected(&self) -> BTreeMap<u64, OwnerTotals> {
        self.fake.with(|crm| crm.expected_totals())
    }

    /// The committed facts as the fake's totals per CRM user.
    fn totals(&self) -> BTreeMap<u64, OwnerTotals> {
        let table = self.table.lock().unwrap();
        owner_totals(table.facts(), &self.owners, |_| true)
    }

    /// The committed facts of events in `[from, to)`.
    fn totals_between(&self, from: Timestamp, to: Timestamp) -> BTreeMap<u64, OwnerTotals> {
        let (from, to) = (from.unix() * 1000, to.unix() * 1000);
        let table = self.table.lock().unwrap();
        owner_totals(table.facts(), &self.owners, |f| f.occurred_at_ms >= from && f.occurred_at_ms < to)
    }

    /// Every committed fact by (metric, source).
    fn snapshot(&self) -> BTreeMap<(String, KeyedHash), Fact> {
        let table = self.table.lock().unwrap();
        table.facts().map(|f| ((f.metric.clone(), f.source), f.clone())).collect()
    }

    fn facts(&self) -> usize {
        self.table.lock().unwrap().len()
    }

    /// Makes the `nth` (1-based) next authenticated request fail with `fault`; the ones
    /// before it are answered normally.
    fn fault_at(&self, nth: usize, fault: Fault) {
        self.fake.with(|crm| {
            crm.fail_next(nth - 1, Fault::Delay(Duration::ZERO));
            crm.fail_next(1, fault);
        });
    }

    fn requests(&self) -> Vec<RequestRecord> {
        self.fake.with(|crm| crm.request_log())
    }
}

/// Sums facts into the fake's shape: every CRM user present, counts of 1 per fact, money
/// converted from micro-units to cents (and required to be whole cents).
fn owner_totals<'a>(
    facts: impl Iterator<Item = &'a Fact>,
    owners: &BTreeMap<KeyedHash, u64>,
    keep: impl Fn(&Fact) -> bool,
) -> BTreeMap<u64, OwnerTotals> {
    let mut out: BTreeMap<u64, OwnerTotals> = owners.values().map(|id| (*id, OwnerTotals::default())).collect();
    for fact in facts.filter(|f| keep(f)) {
        let id = owners.get(&fact.owner).unwrap_or_else(|| panic!("a fact credited to an owner outside the roster"));
        let t = out.get_mut(id).expect("every owner has a row");
        match (fact.metric.as_str(), &fact.value) {
            ("deals_won", Value::Count(1)) => t.deals_won += 1,
            ("calls", Value::Count(1)) => t.calls += 1,
            ("meetings", Value::Count(1)) => t.meetings += 1,
            ("revenue", Value::Money { micros, currency }) => {
                assert_eq!(micros % 10_000, 0, "Pipedrive amounts are whole cents, got {micros} micros");
                *t.revenue_cents.entry(currency.as_str().to_owned()).or_default() += micros / 10_000;
            }
            (metric, value) => panic!("unexpected fact {metric} {value:?}"),
        }
    }
    out
}

/// Facts a correct table holds for these totals: two per won deal, one per call or meeting.
fn fact_count(totals: &BTreeMap<u64, OwnerTotals>) -> usize {
    totals.values().map(|t| (2 * t.deals_won + t.calls + t.meetings) as usize).sum()
}

/// The decoded value of `key` in a raw query string.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The list requests (`/api/v2/deals`, `/api/v2/activities`) of a request log.
fn list_requests(log: &[RequestRecord]) -> Vec<&RequestRecord> {
    log.iter().filter(|r| r.path == "/api/v2/deals" || r.path == "/api/v2/activities").collect()
}

fn is_deleted_list(r: &RequestRecord) -> bool {
    query_value(&r.query, "status").as_deref() == Some("deleted")
}

#[tokio::test]
async fn a_first_sync_credits_every_owner_exactly_what_pipedrive_holds() {
    let pd = Pipedrive::start(101, 4, 240, 300).await;
    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);

    let expected = pd.expected();
    // The data exercise every metric, several owners and several currencies.
    assert!(expected.values().filter(|t| t.deals_won > 0).count() >= 3);
    let currencies: BTreeSet<&String> = expected.values().flat_map(|t| t.revenue_cents.keys()).collect();
    assert!(currencies.len() >= 3, "currencies: {currencies:?}");
    assert!(expected.values().map(|t| t.calls).sum::<u64>() > 20);
    assert!(expected.values().map(|t| t.meetings).sum::<u64>() > 10);

    assert_eq!(pd.totals(), expected);
    assert_eq!(pd.facts(), fact_count(&expected));
    assert_eq!(report.stats.upserts as usize, fact_count(&expected), "one upsert per fact, nothing twice");
    assert_eq!(report.stats.retractions, 0);
    assert_eq!(report.stats.committed as usize, pd.facts());

    // Each event is dated where it happened (won_time, marked_as_done_time): the totals of
    // any period match, which is what contests and targets rely on.
    let now = pd.fake.with(|crm| crm.now());
    let day = 86_400;
    for (from, to) in [
        (now.plus_secs(-30 * day), now),
        (now.plus_secs(-90 * day), now.plus_secs(-45 * day)),
        (now.plus_secs(-400 * day), now.plus_secs(-120 * day)),
    ] {
        assert_eq!(pd.totals_between(from, to), pd.fake.with(|crm| crm.expected_totals_between(Some(from), Some(to))));
    }
}

#[tokio::test]
async fn a_sync_from_the_committed_cursor_changes_nothing_and_reads_only_what_changed() {
    let pd = Pipedrive::start(102, 3, 200, 260).await;
    let first = pd.sync().await;
    assert_eq!(first.result, Ok(SyncOutcome::Complete));
    let before = pd.snapshot();
    let cursor = pd.table.lock().unwrap().cursor.clone().expect("the first sync commits a cursor");
    assert!(!cursor.is_empty());
    let first_log = pd.requests();
    // The first sync reads everything: no watermark on the deals and activities lists.
    for r in list_requests(&first_log).into_iter().filter(|r| !is_deleted_list(r)) {
        assert_eq!(query_value(&r.query, "updated_since"), None, "first sync: {}?{}", r.path, r.query);
    }
    pd.fake.with(|crm| crm.clear_request_log());

    let again = pd.sync().await;
    assert_eq!(again.result, Ok(SyncOutcome::Complete));
    assert!(again.stats.rejected.is_empty());
    assert_eq!(pd.snapshot(), before, "the same facts, unchanged");
    assert_eq!(pd.totals(), pd.expected());

    // Every list the second sync reads starts at a watermark: inclusive, so nothing changed
    // at the last second is missed, and never later than the fake's clock.
    let log = pd.requests();
    let lists = list_requests(&log);
    assert_eq!(lists.len(), 3, "deals, deleted deals, activities: {lists:?}");
    let (earliest, now) = pd.fake.with(|crm| {
        let first_update = crm.deals().iter().map(|d| d.update_time).min().unwrap();
        (first_update, crm.now())
    });
    for r in lists {
        let since = query_value(&r.query, "updated_since")
            .unwrap_or_else(|| panic!("second sync read {}?{} without updated_since", r.path, r.query));
        let since = Timestamp::parse_rfc3339(&since).expect("updated_since is RFC 3339");
        assert!(since > earliest && since <= now, "{}?{}", r.path, r.query);
    }
    assert!(
        again.stats.upserts * 10 < first.stats.upserts,
        "an incremental sync re-reads only the overlap: {} upserts after {}",
        again.stats.upserts,
        first.stats.upserts
    );
}

#[tokio::test]
async fn crm_edits_reach_the_totals_on_the_next_incremental_sync() {
    let pd = Pipedrive::start(103, 4, 260, 300).await;
    assert_eq!(pd.sync().await.result, Ok(SyncOutcome::Complete));
    let expected_before = pd.expected();
    assert_eq!(pd.totals(), expected_before);

    let (won, open, done_calls, done_meetings, users) = pd.fake.with(|crm| {
        let live = |s: DealStatus| -> Vec<(u64, u64)> {
            crm.deals().iter().filter(|d| d.status == s && !d.is_deleted()).map(|d| (d.id, d.owner_id)).collect()
        };
        let done = |kind: &str| -> Vec<u64> {
            crm.activities()
                .iter()
                .filter(|a: &&Activity| a.kind == kind && a.done && !a.deleted)
                .map(|a| a.id)
                .collect()
        };
        let users: Vec<u64> = crm.users().iter().map(|u| u.id).collect();
        (live(DealStatus::Won), live(DealStatus::Open), done("call"), done("meeting"), users)
    });
    assert!(won.len() >= 6 && !open.is_empty() && done_calls.len() >= 2 && done_meetings.len() >= 2);
    let other_owner = |owner: u64| *users.iter().find(|u| **u != owner).unwrap();

    pd.fake.with(|crm| {
        let now = crm.now();
        crm.set_deal_value(won[0].0, 98_765.43).unwrap(); // amount edited
        crm.reassign_deal(won[1].0, other_owner(won[1].1)).unwrap(); // another owner
        crm.mark_deal_lost(won[2].0).unwrap(); // won → lost
        crm.reopen_deal(won[3].0).unwrap(); // won → open
        crm.delete_deal(won[4].0).unwrap(); // deleted
        crm.set_deal_currency(won[5].0, "CHF").unwrap(); // revenue moves to another currency
        crm.mark_deal_won(open[0].0, now.plus_secs(-3600)).unwrap(); // an open deal won
        crm.add_deal(NewDeal::won(users[0], 4_200.5, "EUR", now)).unwrap(); // a new won deal
        crm.set_activity_done(done_calls[0], false).unwrap(); // call undone
        crm.delete_activity(done_meetings[0]).unwrap(); // meeting deleted
        crm.reassign_activity(done_calls[1], other_owner(users[0])).unwrap();
        let now = crm.now();
        crm.add_activity(NewActivity::call(users[0]).done_at(now)).unwrap(); // a new done call
        crm.add_activity(NewActivity::meeting(users[1]).done_at(now)).unwrap(); // a new done meeting
        crm.add_activity(NewActivity::call(users[1])).unwrap(); // a call not done yet: nothing
    });
    let expected = pd.expected();
    assert_ne!(expected, expected_before, "the edits change what counts");

    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);
    assert!(report.stats.retractions > 0);
    assert_eq!(pd.totals(), expected);
    assert_eq!(pd.facts(), fact_count(&expected));

    // And once more with nothing changed: still the same.
    assert_eq!(pd.sync().await.result, Ok(SyncOutcome::Complete));
    assert_eq!(pd.totals(), expected);
    assert_eq!(pd.facts(), fact_count(&expected));

    // Second thoughts: the deleted deal restored, the lost one won again, the call done again.
    pd.fake.with(|crm| {
        let now = crm.now();
        crm.restore_deal(won[4].0).unwrap();
        crm.mark_deal_won(won[2].0, now).unwrap();
        crm.set_activity_done(done_calls[0], true).unwrap();
    });
    let expected = pd.expected();
    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(pd.totals(), expected);
    assert_eq!(pd.facts(), fact_count(&expected));
}

#[tokio::test]
async fn archived_deals_are_read_from_their_own_list_and_still_count_when_won() {
    let pd = Pipedrive::start(104, 3, 220, 120).await;
    let (won, lost) = pd.fake.with(|crm| {
        let live = |s: DealStatus| -> Vec<u64> {
            crm.deals().iter().filter(|d| d.status == s && !d.is_deleted()).map(|d| d.id).collect()
        };
        (live(DealStatus::Won), live(DealStatus::Lost))
    });
    assert!(won.len() >= 4 && !lost.is_empty());
    // Archived before the first sync: gone from `/api/v2/deals`, listed under `/archived`.
    pd.fake.with(|crm| {
        crm.archive_deal(won[0]).unwrap();
        crm.archive_deal(won[1]).unwrap();
        crm.archive_deal(lost[0]).unwrap();
    });
    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    let expected = pd.expected();
    assert_eq!(pd.totals(), expected, "archived won deals count like any won deal");
    assert_eq!(pd.facts(), fact_count(&expected));
    let log = pd.requests();
    assert!(log.iter().any(|r| r.path == "/api/v2/deals/archived"), "the archived list is read");

    // Later: another won deal archived (its facts stay), an archived one brought back and
    // lost (its facts go), a deal won and archived at once.
    pd.fake.with(|crm| {
        let now = crm.now();
        crm.archive_deal(won[2]).unwrap();
        crm.unarchive_deal(won[0]).unwrap();
        crm.mark_deal_lost(won[0]).unwrap();
        crm.mark_deal_won(lost[0], now).unwrap();
    });
    let expected_after = pd.expected();
    assert_ne!(expected_after, expected);
    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert!(report.stats.rejected.is_empty(), "rejected: {:?}", report.stats.rejected);
    assert_eq!(pd.totals(), expected_after);
    assert_eq!(pd.facts(), fact_count(&expected_after));
}

#[tokio::test]
async fn rate_limits_and_server_errors_in_the_middle_are_absorbed_by_the_host() {
    let pd = Pipedrive::start(104, 3, 200, 260).await;
    // Deals answer; the deleted deals get a 429 (Retry-After: 1) and then answer; the
    // activities get a 500 and a 503 and then answer.
    pd.fake.with(|crm| {
        crm.fail_next(1, Fault::Delay(Duration::ZERO));
        crm.fail_next(1, Fault::RateLimited { retry_after_secs: 1 });
        crm.fail_next(1, Fault::Delay(Duration::ZERO));
        crm.fail_next(1, Fault::ServerError(500));
        crm.fail_next(1, Fault::ServerError(503));
    });
    let report = pd.sync().await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete), "the connector never saw the faults");
    assert!(report.stats.rejected.is_empty());
    assert_eq!(pd.fake.with(|crm| crm.pending_faults()), 0, "every fault was served");
    assert_eq!(pd.totals(), pd.expected());
    assert_eq!(pd.facts(), fact_count(&pd.expected()));

    let log = pd.requests();
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    assert!(statuses.contains(&500) && statuses.contains(&503), "{statuses:?}");
    // The connector made one call per page; the three retries were the host's alone.
    assert_eq!(report.stats.http_requests as usize, log.len() - 3, "{statuses:?}");
    assert!(report.duration >= Duration::from_secs(1), "Retry-After was honoured");
}

#[tokio::test]
async fn an_exhausted_daily_budget_keeps_what_was_checkpointed_and_a_later_sync_completes() {
    // Two pages of activities, so the budget runs out between checkpoints.
    let pd = Pipedrive::start(105, 3, 150, 700).await;
    // 1 deals, 2 archived deals, 3 deleted deals, 4 activities page 1, 5 activities page 2:
    // budget spent.
    pd.fault_at(5, Fault::DailyBudgetExhausted);
    let report = pd.sync().await;
    assert!(matches!(report.result, Ok(SyncOutcome::BudgetExhausted(_))), "{:?}", report.result);
    let log = pd.requests();
    assert_eq!(log.len(), 5, "a spent daily budget is not retried: {log:?}");
    assert_eq!(log[3].path, "/api/v2/activities");
    assert_eq!(log[4].status, 429);

    // What the fake served before the budget ran out is committed: every deal, and the
    // activities of the first page (sorted by update_time, then id).
    let (expected, page_one) = pd.fake.with(|crm| {
        let mut activities: Vec<Activity> = crm.activities().to_vec();
        activities.sort_by_key(|a| (a.update_time, a.id));
        activities.truncate(PAGE);
        (crm.expected_totals(), activities)
    });
    let mut partial = expected.clone();
    for t in partial.values_mut() {
        t.calls = 0;
        t.meetings = 0;
    }
    for a in page_one.iter().filter(|a| a.done && !a.deleted) {
        let t = partial.get_mut(&a.owner_id).unwrap();
        match a.kind.as_str() {
            "call" => t.calls += 1,
            "meeting" => t.meetings += 1,
            _ => {}
        }
    }
    assert_ne!(partial, expected, "the second page holds calls or meetings");
    assert_eq!(pd.totals(), partial);
    assert!(pd.table.lock().unwrap().cursor.is_some());

    // The next day: the sync resumes from the checkpoint and completes the data.
    pd.fake.with(|crm| crm.clear_request_log());
    let resumed = pd.sync().await;
    assert_eq!(resumed.result, Ok(SyncOutcome::Complete));
    assert_eq!(pd.totals(), expected);
    assert_eq!(pd.facts(), fact_count(&expected));
    let log = pd.requests();
    for r in list_requests(&log) {
        assert!(
            query_value(&r.query, "updated_since").is_some(),
            "resumed without a watermark: {}?{}",
            r.path,
            r.query
        );
    }
}

#[tokio::test]
async fn a_token_revoked_mid_sync_fails_the_run_and_keeps_what_was_checkpointed() {
    let pd = Pipedrive::start(109, 3, 150, 200).await;
    // 1 deals, 2 deleted deals, 3 activities: 401.
    pd.fault_at(3, Fault::Unauthorized);
    let report = pd.sync().await;
    assert_eq!(report.result, Err(SyncError::Connector { code: "http_unauthorized".into(), http_status: Some(401) }));
    let expected = pd.expected();
    let deals_only: BTreeMap<u64, OwnerTotals> =
        expected.iter().map(|(id, t)| (*id, OwnerTotals { calls: 0, meetings: 0, ..t.clone() })).collect();
    assert_eq!(pd.totals(), deals_only, "the deals were checkpointed before the 401");

    let again = pd.sync().await;
    assert_eq!(again.result, Ok(SyncOutcome::Complete));
    assert_eq!(pd.totals(), expected);
}

#[tokio::test]
async fn a_crm_that_keeps_failing_fails_the_run_after_the_hosts_retries() {
    let pd = Pipedrive::start(110, 2, 80, 80).await;
    pd.fake.with(|crm| crm.fail_next(50, Fault::ServerError(503)));
    let report = pd.sync().await;
    assert_eq!(report.result, Err(SyncError::Connector { code: "http_unavailable".into(), http_status: None }));
    let attempts = pd.requests().len();
    assert!((2..=10).contains(&attempts), "bounded retries, then the connector is told: {attempts} attempts");
    assert_eq!(report.stats.http_requests, 1, "the connector asked once");
    assert!(pd.table.lock().unwrap().is_empty());
    assert!(pd.table.lock().unwrap().cursor.is_none());
}

#[tokio::test]
async fn a_wrong_api_token_fails_the_sync_with_401_and_commits_nothing() {
    let pd = Pipedrive::start(106, 2, 60, 60).await;
    let wrong = setup(&[("base_url", &pd.fake.base_url())], &[("api_token", "not-the-token")]);
    let report = sync_into(&pd.runtime, &pd.connector, wrong, &pd.table).await;
    assert_eq!(report.result, Err(SyncError::Connector { code: "http_unauthorized".into(), http_status: Some(401) }));
    assert_eq!(report.stats.committed, 0);
    assert!(pd.table.lock().unwrap().is_empty());
    assert!(pd.table.lock().unwrap().cursor.is_none(), "no cursor is committed");
    let log = pd.requests();
    assert!(!log.is_empty() && log.iter().all(|r| !r.token_ok && r.status == 401), "{log:?}");

    let wrong = setup(&[("base_url", &pd.fake.base_url())], &[("api_token", "not-the-token")]);
    assert_eq!(
        pd.runtime.roster(&pd.connector, wrong).await,
        Err(SyncError::Connector { code: "http_unauthorized".into(), http_status: Some(401) })
    );
}

#[tokio::test]
async fn a_plain_http_base_url_is_refused_at_setup_unless_loopback_is_allowed() {
    let fake = fake_pipedrive(107, 2, 40, 40, TOKEN).await;
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime starts");
    let connector = runtime.load(&component(PIPEDRIVE)).await.unwrap();
    let settings = || setup(&[("base_url", &fake.base_url())], &[("api_token", TOKEN)]);
    let facts = table();
    let report = sync_into(&runtime, &connector, settings(), &facts).await;
    match &report.result {
        Err(SyncError::Setup(message)) => assert!(message.contains("https"), "{message}"),
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert!(matches!(runtime.roster(&connector, settings()).await, Err(SyncError::Setup(_))));
    assert_eq!(fake.with(|crm| crm.request_count()), 0, "nothing was sent");
    assert!(facts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_personal_data_reaches_the_facts_the_cursor_or_the_logs() {
    let logs = capture_logs();
    let pd = Pipedrive::start(108, 4, 220, 300).await;
    pd.fault_at(2, Fault::ServerError(502));
    let first = pd.sync().await;
    assert_eq!(first.result, Ok(SyncOutcome::Complete));
    pd.fake.with(|crm| {
        let won: Vec<u64> = crm.deals().iter().filter(|d| d.status == DealStatus::Won).map(|d| d.id).collect();
        crm.mark_deal_lost(won[0]).unwrap(); // the lost reason names the contact
        let owner = crm.users()[0].id;
        let now = crm.now();
        crm.add_activity(NewActivity::meeting(owner).done_at(now)).unwrap(); // attendees, e-mails
    });
    let second = pd.sync().await;
    assert_eq!(second.result, Ok(SyncOutcome::Complete));
    assert_eq!(pd.totals(), pd.expected());

    let mut dump = String::new();
    {
        let table = pd.table.lock().unwrap();
        for fact in table.facts() {
            dump.push_str(&change_json(&Change::Upsert(fact.clone())).to_string());
            dump.push('\n');
        }
        dump.push_str(&format!("{:?}\n", table.cursor));
    }
    for report in [&first, &second] {
        dump.push_str(&format!("{:?} {:?}\n", report.result, report.stats));
    }
    let log_text = logs.text();
    assert!(log_text.contains("sync finished"), "the logs were captured");
    dump.push_str(&log_text);

    let canaries = pd.fake.with(|crm| crm.canaries());
    assert!(canaries.len() > 100, "the fake serves plenty of personal data");
    let lower = dump.to_lowercase();
    for canary in &canaries {
        assert!(!dump.contains(canary.as_str()), "`{canary}` was kept or logged");
        if canary.contains('@') {
            assert!(!lower.contains(&canary.to_lowercase()), "`{canary}` was kept or logged");
        }
    }
}
