//! The store's conformance suite: every behaviour asserted once and run on both backends,
//! SQLite in a temporary file and Postgres in a fresh database of its own (created from
//! `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, and dropped at
//! the end), so the tests run in parallel. `ONEUP_TEST_NO_POSTGRES=1` skips the Postgres
//! half; otherwise a Postgres that does not answer fails the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oneup::ingest::{Change, Currency, Cursor, Fact, KeyedHash, RawCursor, Value, Vocabulary};
use oneup::store::{
    Actor, AuditEntry, CreatedTenant, EnableIntegration, FxRate, KpiTotal, Lease, MasterKey, NewTenant, NewUser, Owner,
    Role, RunId, RunStatus, Secrets, Store, StoreError, StoredFact, TenantId, UserId, UserUpdate,
};

use oneup_tests::{Backend, TestDatabase};

const LEASE: Duration = Duration::from_secs(60);

/// A store on a database of its own (`TestDatabase`), removed when dropped. The store is
/// declared first so that its pool closes before the database goes.
struct TestDb {
    store: Store,
    url: String,
    _db: TestDatabase,
}

fn master_key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

/// A migrated store on a fresh database of `backend`'s kind (`None`: Postgres skipped).
async fn test_db(backend: Backend) -> Option<TestDb> {
    let db = TestDatabase::new(backend).await?;
    let store = Store::connect(&db.url, master_key()).await.expect("the store opens and migrates");
    Some(TestDb { store, url: db.url.clone(), _db: db })
}

/// Runs each named scenario on SQLite (`store::sqlite::…`) and on Postgres
/// (`store::postgres::…`).
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::test_db(oneup_tests::Backend::Sqlite).await.expect("SQLite is always there");
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::test_db(oneup_tests::Backend::Postgres).await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_apply_twice,
    commit_is_idempotent,
    last_change_per_key_wins,
    retraction_deletes,
    upsert_replaces_amount_and_owner,
    failed_commit_moves_neither_facts_nor_cursor,
    fx_conversion_and_waiting_for_rate,
    email_unique_per_tenant_case_insensitively,
    tenant_isolation,
    kpi_totals_sum_per_owner,
    token_lookup_by_hash,
    audit_log_only_grows,
    secrets_sealed_and_destroyed,
    runs_queue_claim_finish,
    expired_lease_is_resumed_and_fences_the_old_node,
    concurrent_claims_take_each_run_once,
    due_integrations_are_queued,
    owner_mapping_attributes_past_facts,
    teams_and_members,
    claims_go_round_robin_across_tenants_and_skip_full_ones,
    partial_runs_keep_their_reasons,
);

// ---------------------------------------------------------------------------------------
// Builders.

const CONNECTOR: &str = "pipedrive";
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;
const DAY: i64 = 86_400_000;

fn h(n: u32) -> KeyedHash {
    let mut bytes = [0xa5; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    KeyedHash::from_bytes(bytes)
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).expect("an ISO 4217 code")
}

fn count(metric: &str, source: u32, owner: u32, at: i64, n: i64) -> Change {
    Change::Upsert(Fact {
        metric: metric.into(),
        owner: h(owner),
        source: h(source),
        occurred_at_ms: at,
        value: Value::Count(n),
    })
}

fn money(metric: &str, source: u32, owner: u32, at: i64, micros: i64, code: &str) -> Change {
    Change::Upsert(Fact {
        metric: metric.into(),
        owner: h(owner),
        source: h(source),
        occurred_at_ms: at,
        value: Value::Money { micros, currency: currency(code) },
    })
}

fn retract(metric: &str, source: u32) -> Change {
    Change::Retract { metric: metric.into(), source: h(source) }
}

fn cursor(since: i64) -> Cursor {
    let vocab = Vocabulary::new([], [], ["since".to_owned()]).expect("a vocabulary");
    Cursor::validate(RawCursor(vec![("since".to_owned(), since)]), &vocab).expect("a valid cursor")
}

fn none() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

async fn tenant(store: &Store, name: &str, code: &str) -> CreatedTenant {
    store
        .create_tenant(&NewTenant {
            name,
            timezone: "Europe/London",
            currency: currency(code),
            admin_name: "Admin",
            admin_email: &format!("admin@{name}.example"),
        })
        .await
        .expect("tenant created")
}

async fn enable(store: &Store, t: &CreatedTenant, connector: &str) {
    let config = BTreeMap::from([("base_url".to_owned(), "https://acme.pipedrive.com".to_owned())]);
    let secrets = Secrets::new(BTreeMap::from([("api_token".to_owned(), "s3cret-token".to_owned())]));
    let metrics = ["deals_won".to_owned(), "revenue".to_owned()];
    store
        .enable_integration(
            t.tenant.id,
            &EnableIntegration {
                connector_id: connector,
                config: &config,
                secrets: &secrets,
                metrics: &metrics,
                sync_interval_secs: 900,
                enabled_by: t.admin.id,
                component_digest: None,
                component_grants: None,
            },
        )
        .await
        .expect("integration enabled");
}

/// Queues a run of the integration and claims it (the only queued run in the database).
async fn lease(store: &Store, tenant: TenantId, connector: &str) -> Lease {
    let run = store.queue_run(tenant, connector).await.expect("run queued");
    let lease = store.claim_run("node-a", LEASE).await.expect("claim works").expect("a run to claim");
    assert_eq!((lease.tenant_id, lease.run_id), (tenant, run));
    lease
}

/// A tenant with the integration enabled and a run claimed.
async fn setup(store: &Store) -> (CreatedTenant, Lease) {
    let t = tenant(store, "acme", "GBP").await;
    enable(store, &t, CONNECTOR).await;
    let l = lease(store, t.tenant.id, CONNECTOR).await;
    (t, l)
}

/// Facts without the time they were last confirmed (which every commit moves).
fn content(facts: Vec<StoredFact>) -> Vec<StoredFact> {
    facts.into_iter().map(|f| StoredFact { confirmed_at_ms: 0, ..f }).collect()
}

fn totals(rows: &[KpiTotal]) -> BTreeMap<Owner, i128> {
    rows.iter().map(|r| (r.owner.clone(), r.value)).collect()
}

fn unmapped(owner: u32) -> Owner {
    Owner::Unmapped { connector_id: CONNECTOR.to_owned(), owner: h(owner) }
}

// ---------------------------------------------------------------------------------------
// Scenarios.

async fn migrations_apply_twice(db: &TestDb) {
    db.store.migrate().await.expect("second run of the migrations");
    db.store.migrate().await.expect("third run of the migrations");
    let again = Store::connect(&db.url, master_key()).await.expect("connect applies migrations again");
    let t = tenant(&again, "acme", "EUR").await;
    assert_eq!(db.store.tenant(t.tenant.id).await.unwrap(), t.tenant);
    again.close().await;
}

async fn commit_is_idempotent(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let batch = vec![
        count("deals_won", 1, 100, T0, 1),
        money("revenue", 1, 100, T0, 1_000_000_000_000, "GBP"),
        count("deals_won", 2, 101, T0 + DAY, 1),
        retract("deals_won", 3),
    ];
    let first = store.commit(&l, &batch, Some(&cursor(10)), &none()).await.unwrap();
    assert_eq!((first.upserts, first.retractions, first.deleted), (3, 1, 0));
    let stored = store.facts(t.tenant.id, CONNECTOR).await.unwrap();
    let facts = content(stored.clone());
    assert_eq!(facts.len(), 3);
    let kpis = store.kpi_totals(t.tenant.id, "revenue", T0, T0 + DAY).await.unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = store.commit(&l, &batch, Some(&cursor(10)), &none()).await.unwrap();
    assert_eq!(second, first);
    // Unchanged facts are not even rewritten: `confirmed_at` stays (it moves on daily).
    assert_eq!(store.facts(t.tenant.id, CONNECTOR).await.unwrap(), stored);
    assert_eq!(store.kpi_totals(t.tenant.id, "revenue", T0, T0 + DAY).await.unwrap(), kpis);
    assert_eq!(store.cursor(t.tenant.id, CONNECTOR).await.unwrap(), Some(cursor(10)));

    // A whole re-sync in a new run changes nothing either.
    store.finish_run(&l, None, &none()).await.unwrap();
    let l2 = lease(store, t.tenant.id, CONNECTOR).await;
    store.commit(&l2, &batch, Some(&cursor(10)), &none()).await.unwrap();
    assert_eq!(content(store.facts(t.tenant.id, CONNECTOR).await.unwrap()), facts);
    let run = store.run(t.tenant.id, l.run_id).await.unwrap();
    assert_eq!((run.upserts, run.retractions, run.checkpoints), (6, 2, 2));
}

async fn last_change_per_key_wins(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let batch = vec![
        count("deals_won", 1, 100, T0, 1),
        retract("deals_won", 1),
        retract("deals_won", 2),
        count("deals_won", 2, 100, T0, 1),
        count("deals_won", 3, 100, T0, 1),
        count("deals_won", 3, 101, T0, 5),
    ];
    store.commit(&l, &batch, None, &none()).await.unwrap();
    let facts = store.facts(t.tenant.id, CONNECTOR).await.unwrap();
    let got: Vec<(KeyedHash, KeyedHash, Value)> = facts.iter().map(|f| (f.source, f.owner, f.value)).collect();
    assert_eq!(got, vec![(h(2), h(100), Value::Count(1)), (h(3), h(101), Value::Count(5))]);
}

async fn retraction_deletes(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let batch: Vec<Change> = (1..=5).map(|i| count("deals_won", i, 100, T0, 1)).collect();
    store.commit(&l, &batch, None, &none()).await.unwrap();
    let counts = store
        .commit(&l, &[retract("deals_won", 2), retract("deals_won", 4), retract("deals_won", 99)], None, &none())
        .await
        .unwrap();
    assert_eq!((counts.retractions, counts.deleted), (3, 2));
    let sources: Vec<KeyedHash> = store.facts(t.tenant.id, CONNECTOR).await.unwrap().iter().map(|f| f.source).collect();
    assert_eq!(sources, vec![h(1), h(3), h(5)]);
    let kpis = store.kpi_totals(t.tenant.id, "deals_won", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(unmapped(100), 3)]));
    // Retracting a metric's fact leaves the other metrics of the same record.
    store.commit(&l, &[money("revenue", 1, 100, T0, 5, "GBP"), retract("deals_won", 1)], None, &none()).await.unwrap();
    let left: Vec<(String, KeyedHash)> =
        store.facts(t.tenant.id, CONNECTOR).await.unwrap().into_iter().map(|f| (f.metric, f.source)).collect();
    assert_eq!(left, vec![("deals_won".into(), h(3)), ("deals_won".into(), h(5)), ("revenue".into(), h(1))]);
}

async fn upsert_replaces_amount_and_owner(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    store.commit(&l, &[money("revenue", 1, 100, T0, 1_000_000, "GBP")], None, &none()).await.unwrap();
    let first_confirmed = store.facts(t.tenant.id, CONNECTOR).await.unwrap()[0].confirmed_at_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.commit(&l, &[money("revenue", 1, 101, T0 + 5, 2_500_000, "GBP")], None, &none()).await.unwrap();
    let facts = store.facts(t.tenant.id, CONNECTOR).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].owner, h(101));
    assert!(facts[0].confirmed_at_ms > first_confirmed);
    assert_eq!(facts[0].occurred_at_ms, T0 + 5);
    assert_eq!(facts[0].value, Value::Money { micros: 2_500_000, currency: currency("GBP") });
    assert_eq!(facts[0].amount_tenant_micros, Some(2_500_000));
    let kpis = store.kpi_totals(t.tenant.id, "revenue", T0, T0 + DAY).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(unmapped(101), 2_500_000)]));
}

async fn failed_commit_moves_neither_facts_nor_cursor(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let rejected = BTreeMap::from([("bad_currency".to_owned(), 2)]);
    store.commit(&l, &[count("deals_won", 1, 100, T0, 1)], Some(&cursor(1)), &rejected).await.unwrap();
    let facts = content(store.facts(t.tenant.id, CONNECTOR).await.unwrap());
    let run = store.run(t.tenant.id, l.run_id).await.unwrap();

    // Valid upserts and a retraction, then a change the schema refuses (a negative count,
    // which the validator never lets through): the whole batch and its cursor roll back.
    let batch = vec![
        count("deals_won", 2, 100, T0, 1),
        retract("deals_won", 1),
        money("revenue", 3, 100, T0, 7, "GBP"),
        count("deals_won", 4, 100, T0, -1),
    ];
    let err = store.commit(&l, &batch, Some(&cursor(2)), &rejected).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(content(store.facts(t.tenant.id, CONNECTOR).await.unwrap()), facts);
    assert_eq!(store.cursor(t.tenant.id, CONNECTOR).await.unwrap(), Some(cursor(1)));
    assert_eq!(store.run(t.tenant.id, l.run_id).await.unwrap(), run);
    assert_eq!(run.rejected, rejected);

    // The store is usable afterwards and the retry lands.
    store.commit(&l, &batch[..3], Some(&cursor(2)), &none()).await.unwrap();
    assert_eq!(store.cursor(t.tenant.id, CONNECTOR).await.unwrap(), Some(cursor(2)));
    assert_eq!(store.facts(t.tenant.id, CONNECTOR).await.unwrap().len(), 2);
}

async fn fx_conversion_and_waiting_for_rate(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let id = t.tenant.id;
    store.set_fx_rates(id, &[(currency("EUR"), FxRate::parse("0.85").unwrap())]).await.unwrap();
    let batch = vec![
        money("revenue", 1, 100, T0, 100_000_000, "GBP"),
        money("revenue", 2, 100, T0, 100_000_000, "EUR"),
        money("revenue", 3, 100, T0, 100_000_000, "USD"),
        money("revenue", 4, 101, T0, 3, "USD"),
        money("revenue", 5, 101, T0, -3, "USD"),
    ];
    let counts = store.commit(&l, &batch, None, &none()).await.unwrap();
    assert_eq!(counts.waiting_rate, 3);
    assert_eq!(store.run(id, l.run_id).await.unwrap().waiting_rate, 3);
    assert_eq!(store.waiting_for_rate(id).await.unwrap(), BTreeMap::from([(currency("USD"), 3)]));
    let converted: Vec<Option<i64>> =
        store.facts(id, CONNECTOR).await.unwrap().iter().map(|f| f.amount_tenant_micros).collect();
    assert_eq!(converted, vec![Some(100_000_000), Some(85_000_000), None, None, None]);
    let kpis = store.kpi_totals(id, "revenue", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(unmapped(100), 185_000_000), (unmapped(101), 0)]));
    assert_eq!(kpis.iter().map(|k| k.waiting_rate).sum::<u64>(), 3);

    // Converting with no new rate changes nothing; with one, the waiting amounts convert,
    // halves rounded away from zero on both backends.
    assert_eq!(store.convert_waiting(id).await.unwrap(), 0);
    store.set_fx_rates(id, &[(currency("USD"), FxRate::parse("0.5").unwrap())]).await.unwrap();
    assert_eq!(store.convert_waiting(id).await.unwrap(), 3);
    let converted: Vec<Option<i64>> =
        store.facts(id, CONNECTOR).await.unwrap().iter().map(|f| f.amount_tenant_micros).collect();
    assert_eq!(converted, vec![Some(100_000_000), Some(85_000_000), Some(50_000_000), Some(2), Some(-2)]);
    assert!(store.waiting_for_rate(id).await.unwrap().is_empty());
    let kpis = store.kpi_totals(id, "revenue", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(unmapped(100), 235_000_000), (unmapped(101), 0)]));
    assert_eq!(store.convert_waiting(id).await.unwrap(), 0);

    // Rates read back canonical; a rate can be replaced.
    store.set_fx_rates(id, &[(currency("EUR"), FxRate::parse("0.860").unwrap())]).await.unwrap();
    let rates = store.fx_rates(id).await.unwrap();
    assert_eq!(rates.get(&currency("EUR")).map(|r| r.to_string()).as_deref(), Some("0.86"));
    assert_eq!(rates.get(&currency("USD")).map(|r| r.to_string()).as_deref(), Some("0.5"));
    // New commits use the new rate.
    store.commit(&l, &[money("revenue", 2, 100, T0, 100_000_000, "EUR")], None, &none()).await.unwrap();
    let eur = store.facts(id, CONNECTOR).await.unwrap().into_iter().find(|f| f.source == h(2)).unwrap();
    assert_eq!(eur.amount_tenant_micros, Some(86_000_000));
}

async fn email_unique_per_tenant_case_insensitively(db: &TestDb) {
    let store = &db.store;
    let a = tenant(store, "a", "GBP").await;
    let b = tenant(store, "b", "GBP").await;
    let ann = store
        .create_user(a.tenant.id, &NewUser { name: "Ann", email: "Ann@Example.com", role: Role::Member })
        .await
        .unwrap();
    assert_eq!(ann.email, "Ann@Example.com");
    let err = store
        .create_user(a.tenant.id, &NewUser { name: "Ann 2", email: "ann@example.COM", role: Role::Manager })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "email" }), "{err:?}");
    assert_eq!(err.code(), "conflict");
    // The admin's address is taken too.
    let err = store
        .create_user(a.tenant.id, &NewUser { name: "X", email: "ADMIN@a.example", role: Role::Member })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // Another tenant may have the same address.
    store
        .create_user(b.tenant.id, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member })
        .await
        .unwrap();
    // Rectification to a taken address conflicts; to a free one works; lookup ignores case.
    let bob = store
        .create_user(a.tenant.id, &NewUser { name: "Bob", email: "bob@example.com", role: Role::Member })
        .await
        .unwrap();
    let err = store
        .update_user(a.tenant.id, bob.id, &UserUpdate { email: Some("ANN@example.com"), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { what: "email" }), "{err:?}");
    let bob = store
        .update_user(
            a.tenant.id,
            bob.id,
            &UserUpdate { email: Some("Robert@Example.com"), name: Some("Robert"), role: None, self_service: false },
        )
        .await
        .unwrap();
    assert_eq!((bob.name.as_str(), bob.email.as_str(), bob.role), ("Robert", "Robert@Example.com", Role::Member));
    assert_eq!(store.user_by_email(a.tenant.id, " robert@example.COM ").await.unwrap().map(|u| u.id), Some(bob.id));
    assert_eq!(store.user_by_email(a.tenant.id, "bob@example.com").await.unwrap(), None);
    let err = store
        .create_user(TenantId::new(), &NewUser { name: "X", email: "x@example.com", role: Role::Member })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "tenant" }), "{err:?}");
}

async fn tenant_isolation(db: &TestDb) {
    let store = &db.store;
    // Tenant A with a bit of everything.
    let (a, l) = setup(store).await;
    let aid = a.tenant.id;
    let ann =
        store.create_user(aid, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member }).await.unwrap();
    let team = store.create_team(aid, "Sales").await.unwrap();
    store.add_team_member(aid, team.id, ann.id).await.unwrap();
    let token = store.create_token(aid, ann.id).await.unwrap();
    store.set_fx_rates(aid, &[(currency("EUR"), FxRate::parse("0.85").unwrap())]).await.unwrap();
    store.map_owners(aid, CONNECTOR, &[(h(100), ann.id)]).await.unwrap();
    store
        .commit(
            &l,
            &[count("deals_won", 1, 100, T0, 1), money("revenue", 1, 101, T0, 5, "USD")],
            Some(&cursor(3)),
            &none(),
        )
        .await
        .unwrap();
    store
        .append_audit(
            aid,
            &AuditEntry { actor: Actor::User(a.admin.id), action: "integration.enabled", subject: CONNECTOR },
        )
        .await
        .unwrap();

    // Tenant B sees none of it, through every read, and cannot touch it.
    let b = tenant(store, "b", "GBP").await;
    let bid = b.tenant.id;
    let not_found = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound { .. }));
    assert!(not_found(store.user(bid, ann.id).await.map(|_| ())));
    assert_eq!(store.users(bid).await.unwrap().iter().map(|u| u.id).collect::<Vec<_>>(), vec![b.admin.id]);
    assert_eq!(store.user_by_email(bid, "ann@example.com").await.unwrap(), None);
    assert!(store.teams(bid).await.unwrap().is_empty());
    assert!(store.team_members(bid, team.id).await.unwrap().is_empty());
    assert!(not_found(store.add_team_member(bid, team.id, b.admin.id).await));
    assert!(not_found(store.add_team_member(bid, team.id, ann.id).await));
    assert!(store.fx_rates(bid).await.unwrap().is_empty());
    assert!(not_found(store.integration(bid, CONNECTOR).await.map(|_| ())));
    assert!(store.integrations(bid).await.unwrap().is_empty());
    assert!(not_found(store.integration_secrets(bid, CONNECTOR).await.map(|_| ())));
    assert!(not_found(store.cursor(bid, CONNECTOR).await.map(|_| ())));
    assert!(store.facts(bid, CONNECTOR).await.unwrap().is_empty());
    assert!(store.kpi_totals(bid, "deals_won", 0, i64::MAX).await.unwrap().is_empty());
    assert!(store.kpi_totals(bid, "revenue", 0, i64::MAX).await.unwrap().is_empty());
    assert!(store.waiting_for_rate(bid).await.unwrap().is_empty());
    assert!(store.unmapped_owners(bid, CONNECTOR).await.unwrap().is_empty());
    assert!(store.owner_mappings(bid, CONNECTOR).await.unwrap().is_empty());
    assert!(not_found(store.map_owners(bid, CONNECTOR, &[(h(100), ann.id)]).await));
    assert!(not_found(store.run(bid, l.run_id).await.map(|_| ())));
    assert!(store.runs(bid, CONNECTOR, 10).await.unwrap().is_empty());
    assert!(not_found(store.queue_run(bid, CONNECTOR).await.map(|_| ())));
    assert!(store.audit_log(bid, 0, 100).await.unwrap().is_empty());
    assert!(not_found(store.create_token(bid, ann.id).await.map(|_| ())));
    assert!(not_found(store.revoke_token(bid, token.id).await));
    assert!(not_found(store.delete_user(bid, ann.id).await));
    assert!(not_found(
        store.update_user(bid, ann.id, &UserUpdate { name: Some("X"), ..Default::default() }).await.map(|_| ())
    ));
    assert!(not_found(store.disable_integration(bid, CONNECTOR, true).await.map(|_| ())));
    assert!(not_found(store.replace_secrets(bid, CONNECTOR, &Secrets::default()).await));
    assert_eq!(store.convert_waiting(bid).await.unwrap(), 0);
    let b_key = store.tenant_key(bid).await.unwrap();
    assert_ne!(b_key.expose_bytes(), store.tenant_key(aid).await.unwrap().expose_bytes());

    // A's data is untouched by all of that.
    assert_eq!(store.user(aid, ann.id).await.unwrap().name, "Ann");
    assert_eq!(store.facts(aid, CONNECTOR).await.unwrap().len(), 2);
    assert_eq!(store.team_members(aid, team.id).await.unwrap(), vec![ann.id]);
    assert_eq!(store.audit_log(aid, 0, 100).await.unwrap().len(), 1);
    assert_eq!(store.authenticate(&token.token).await.unwrap().map(|p| p.tenant_id), Some(aid));
    assert_eq!(store.cursor(aid, CONNECTOR).await.unwrap(), Some(cursor(3)));
    assert_eq!(store.waiting_for_rate(aid).await.unwrap().len(), 1);
    assert_eq!(store.convert_waiting(aid).await.unwrap(), 0);
}

async fn kpi_totals_sum_per_owner(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let id = t.tenant.id;
    let ann =
        store.create_user(id, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member }).await.unwrap();
    let bob =
        store.create_user(id, &NewUser { name: "Bob", email: "bob@example.com", role: Role::Member }).await.unwrap();
    // Two CRM owners are Ann (one per connector), one is Bob, one is nobody yet.
    store.map_owners(id, CONNECTOR, &[(h(100), ann.id), (h(101), bob.id)]).await.unwrap();
    enable(store, &t, "salesforce").await;
    store.map_owners(id, "salesforce", &[(h(200), ann.id)]).await.unwrap();
    let batch = vec![
        count("deals_won", 1, 100, T0 - 1, 1), // before the range
        count("deals_won", 2, 100, T0, 1),     // first instant of the range
        count("deals_won", 3, 100, T0 + DAY - 1, 2),
        count("deals_won", 4, 100, T0 + DAY, 1), // end is exclusive
        count("deals_won", 5, 101, T0 + 10, 1),
        count("deals_won", 6, 102, T0 + 10, 4),
        money("revenue", 2, 100, T0, 1_000_000_000_000, "GBP"),
        money("revenue", 5, 101, T0, 250_000, "GBP"),
        money("revenue", 6, 101, T0, 750_001, "GBP"),
    ];
    store.commit(&l, &batch, None, &none()).await.unwrap();
    store.finish_run(&l, None, &none()).await.unwrap();
    let sf = lease(store, id, "salesforce").await;
    store
        .commit(&sf, &[count("deals_won", 1, 200, T0 + 5, 3), count("deals_won", 2, 201, T0 + 5, 1)], None, &none())
        .await
        .unwrap();

    let deals = store.kpi_totals(id, "deals_won", T0, T0 + DAY).await.unwrap();
    assert_eq!(
        totals(&deals),
        BTreeMap::from([
            (Owner::User(ann.id), 1 + 2 + 3),
            (Owner::User(bob.id), 1),
            (unmapped(102), 4),
            (Owner::Unmapped { connector_id: "salesforce".into(), owner: h(201) }, 1),
        ])
    );
    let ann_row = deals.iter().find(|r| r.owner == Owner::User(ann.id)).unwrap();
    assert_eq!(ann_row.facts, 3);
    let revenue = store.kpi_totals(id, "revenue", T0, T0 + DAY).await.unwrap();
    assert_eq!(
        totals(&revenue),
        BTreeMap::from([(Owner::User(ann.id), 1_000_000_000_000), (Owner::User(bob.id), 1_000_001)])
    );
    assert!(store.kpi_totals(id, "calls", T0, T0 + DAY).await.unwrap().is_empty());
    // Totals beyond an i64 of micros (100 amounts of 10^11 pounds) are exact.
    let big: Vec<Change> = (0..100).map(|i| money("big", i, 102, T0, 100_000_000_000_000_000, "GBP")).collect();
    store.finish_run(&sf, None, &none()).await.unwrap();
    let l = lease(store, id, CONNECTOR).await;
    store.commit(&l, &big, None, &none()).await.unwrap();
    store.commit(&l, &[money("big", 1000, 102, T0, -1_999_999, "GBP")], None, &none()).await.unwrap();
    let big = store.kpi_totals(id, "big", T0, T0 + DAY).await.unwrap();
    assert_eq!(totals(&big), BTreeMap::from([(unmapped(102), 10_000_000_000_000_000_000 - 1_999_999)]));
    assert!(store.kpi_totals(id, "deals_won", T0 + 2 * DAY, T0 + 3 * DAY).await.unwrap().is_empty());
}

async fn token_lookup_by_hash(db: &TestDb) {
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    let admin = store.authenticate(&t.admin_token.token).await.unwrap().expect("the admin token works");
    assert_eq!(
        (admin.tenant_id, admin.user_id, admin.role, admin.token_id),
        (t.tenant.id, t.admin.id, Role::Admin, t.admin_token.id)
    );
    assert!(!format!("{:?}", t.admin_token).contains(&t.admin_token.token));

    let ann = store
        .create_user(t.tenant.id, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member })
        .await
        .unwrap();
    let first = store.create_token(t.tenant.id, ann.id).await.unwrap();
    let second = store.create_token(t.tenant.id, ann.id).await.unwrap();
    assert_ne!(first.token, second.token);
    assert!(first.token.starts_with("oneup_") && first.token.len() == 6 + 64);
    let p = store.authenticate(&first.token).await.unwrap().unwrap();
    assert_eq!((p.user_id, p.role), (ann.id, Role::Member));
    // The role is read at authentication, not frozen in the token.
    store
        .update_user(t.tenant.id, ann.id, &UserUpdate { role: Some(Role::Manager), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(store.authenticate(&first.token).await.unwrap().unwrap().role, Role::Manager);

    for bad in ["", "oneup_", "not-a-token", &first.token[..first.token.len() - 1], &format!("{}0", first.token)] {
        assert_eq!(store.authenticate(bad).await.unwrap(), None, "{bad:?}");
    }
    store.revoke_token(t.tenant.id, first.id).await.unwrap();
    store.revoke_token(t.tenant.id, first.id).await.unwrap();
    assert_eq!(store.authenticate(&first.token).await.unwrap(), None);
    assert!(store.authenticate(&second.token).await.unwrap().is_some());
    // Erasing the user removes their tokens.
    store.delete_user(t.tenant.id, ann.id).await.unwrap();
    assert_eq!(store.authenticate(&second.token).await.unwrap(), None);
    assert!(matches!(store.create_token(t.tenant.id, ann.id).await, Err(StoreError::NotFound { .. })));
}

async fn audit_log_only_grows(db: &TestDb) {
    let store = &db.store;
    let a = tenant(store, "a", "GBP").await;
    let b = tenant(store, "b", "GBP").await;
    let actions = ["tenant.created", "user.created", "integration.enabled", "integration.disabled", "fx.set"];
    for action in &actions[..3] {
        store.append_audit(a.tenant.id, &AuditEntry { actor: Actor::Operator, action, subject: "s" }).await.unwrap();
    }
    let before = store.audit_log(a.tenant.id, 0, 100).await.unwrap();
    assert_eq!(before.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(
        store.append_audit(b.tenant.id, &AuditEntry { actor: Actor::System, action: "x", subject: "" }).await.unwrap(),
        1
    );
    for action in &actions[3..] {
        store
            .append_audit(a.tenant.id, &AuditEntry { actor: Actor::User(a.admin.id), action, subject: CONNECTOR })
            .await
            .unwrap();
    }
    let after = store.audit_log(a.tenant.id, 0, 100).await.unwrap();
    assert_eq!(after.len(), 5);
    assert_eq!(after[..3], before[..], "earlier entries never change");
    assert_eq!(after.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), actions);
    assert_eq!(after[4].actor, Actor::User(a.admin.id));
    assert!(after.windows(2).all(|w| w[0].seq + 1 == w[1].seq && w[0].at_ms <= w[1].at_ms));
    // Paging.
    let page = store.audit_log(a.tenant.id, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 4]);
    // Concurrent appends get distinct, gap-free numbers.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let id = a.tenant.id;
        tasks.push(tokio::spawn(async move {
            store.append_audit(id, &AuditEntry { actor: Actor::System, action: "tick", subject: "" }).await.unwrap()
        }));
    }
    let mut seqs = BTreeSet::new();
    for task in tasks {
        seqs.insert(task.await.unwrap());
    }
    assert_eq!(seqs, (6..=13).collect());
    // Concurrent appends chain one after the other: the whole log verifies.
    let verified = store.verify_audit(a.tenant.id).await.unwrap();
    assert_eq!((verified.entries, verified.first_broken), (13, None));
    assert_eq!(store.verify_audit(b.tenant.id).await.unwrap().first_broken, None);
    assert!(matches!(
        store.append_audit(TenantId::new(), &AuditEntry { actor: Actor::System, action: "x", subject: "" }).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn secrets_sealed_and_destroyed(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let id = t.tenant.id;
    let integration = store.integration(id, CONNECTOR).await.unwrap();
    assert!(integration.enabled && integration.has_secrets);
    assert_eq!(integration.enabled_by, Some(t.admin.id));
    assert!(integration.enabled_at_ms.is_some());
    assert_eq!(integration.metrics, vec!["deals_won".to_owned(), "revenue".to_owned()]);
    assert_eq!(integration.config.get("base_url").map(String::as_str), Some("https://acme.pipedrive.com"));
    let secrets = store.integration_secrets(id, CONNECTOR).await.unwrap();
    assert_eq!(secrets.get("api_token"), Some("s3cret-token"));
    assert!(!format!("{secrets:?}").contains("s3cret"), "Debug never shows a secret");

    // Another master key opens nothing.
    let stranger = Store::open(&db.url, MasterKey::from_bytes([8; 32])).await.unwrap();
    assert!(matches!(stranger.integration_secrets(id, CONNECTOR).await, Err(StoreError::Decrypt)));
    assert!(matches!(stranger.tenant_key(id).await, Err(StoreError::Decrypt)));
    stranger.close().await;
    // The tenant key is stable across reads.
    assert_eq!(store.tenant_key(id).await.unwrap().expose_bytes(), store.tenant_key(id).await.unwrap().expose_bytes());

    // A rotated secret replaces the old one.
    let rotated = Secrets::from(BTreeMap::from([("api_token".to_owned(), "rotated".to_owned())]));
    store.replace_secrets(id, CONNECTOR, &rotated).await.unwrap();
    assert_eq!(store.integration_secrets(id, CONNECTOR).await.unwrap(), rotated);

    store.commit(&l, &[count("deals_won", 1, 100, T0, 1)], Some(&cursor(5)), &none()).await.unwrap();
    // Disabling destroys the secrets, keeps facts and cursor, and stops the running sync.
    assert_eq!(store.disable_integration(id, CONNECTOR, false).await.unwrap(), 0);
    let integration = store.integration(id, CONNECTOR).await.unwrap();
    assert!(!integration.enabled && !integration.has_secrets && integration.disabled_at_ms.is_some());
    assert!(matches!(store.integration_secrets(id, CONNECTOR).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.replace_secrets(id, CONNECTOR, &rotated).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.commit(&l, &[count("deals_won", 2, 100, T0, 1)], None, &none()).await,
        Err(StoreError::IntegrationDisabled)
    ));
    assert!(matches!(store.queue_run(id, CONNECTOR).await, Err(StoreError::IntegrationDisabled)));
    assert_eq!(store.facts(id, CONNECTOR).await.unwrap().len(), 1);
    assert_eq!(store.cursor(id, CONNECTOR).await.unwrap(), Some(cursor(5)));
    store.finish_run(&l, Some("integration_disabled"), &none()).await.unwrap();

    // Re-enabling with the same config resumes from the cursor; purging deletes the facts,
    // the mappings and the cursor.
    enable(store, &t, CONNECTOR).await;
    assert_eq!(store.cursor(id, CONNECTOR).await.unwrap(), Some(cursor(5)));
    store.map_owners(id, CONNECTOR, &[(h(100), t.admin.id)]).await.unwrap();
    assert_eq!(store.disable_integration(id, CONNECTOR, true).await.unwrap(), 1);
    assert!(store.facts(id, CONNECTOR).await.unwrap().is_empty());
    assert!(store.owner_mappings(id, CONNECTOR).await.unwrap().is_empty());
    assert_eq!(store.cursor(id, CONNECTOR).await.unwrap(), None);
    assert!(matches!(store.disable_integration(id, "nope", false).await, Err(StoreError::NotFound { .. })));
}

async fn runs_queue_claim_finish(db: &TestDb) {
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    let id = t.tenant.id;
    assert!(matches!(store.queue_run(id, CONNECTOR).await, Err(StoreError::NotFound { .. })));
    enable(store, &t, CONNECTOR).await;
    assert!(store.claim_run("node-a", LEASE).await.unwrap().is_none());
    let run = store.queue_run(id, CONNECTOR).await.unwrap();
    assert_eq!(store.queue_run(id, CONNECTOR).await.unwrap(), run, "a sync is never queued twice");
    let queued = store.run(id, run).await.unwrap();
    assert_eq!((queued.status, queued.attempts, queued.started_at_ms), (RunStatus::Queued, 0, None));

    let l = store.claim_run("node-a", LEASE).await.unwrap().unwrap();
    assert_eq!((l.run_id, l.attempt, l.connector_id.as_str()), (run, 1, CONNECTOR));
    assert!(l.owner.starts_with("node-a#"));
    assert!(store.claim_run("node-b", LEASE).await.unwrap().is_none(), "a leased run is not claimed again");
    assert_eq!(store.queue_run(id, CONNECTOR).await.unwrap(), run, "a running sync is not queued again");
    assert_eq!(store.run(id, run).await.unwrap().status, RunStatus::Running);

    let mut l = l;
    let before = l.expires_at_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.renew_lease(&mut l, LEASE).await.unwrap();
    assert!(l.expires_at_ms > before);

    let rejected = BTreeMap::from([("bad_time".to_owned(), 1)]);
    store.commit(&l, &[count("deals_won", 1, 100, T0, 1)], Some(&cursor(1)), &rejected).await.unwrap();
    let rejected_more = BTreeMap::from([("bad_time".to_owned(), 2), ("bad_id".to_owned(), 1)]);
    store.finish_run(&l, None, &rejected_more).await.unwrap();
    let done = store.run(id, run).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!((done.upserts, done.checkpoints, done.accepted()), (1, 1, 1));
    assert_eq!(done.rejected, BTreeMap::from([("bad_time".to_owned(), 3), ("bad_id".to_owned(), 1)]));
    assert_eq!(done.rejected_total(), 4);
    assert!(done.duration_ms().is_some_and(|d| d >= 0));
    assert_eq!(done.error_code, None);
    assert!(store.integration(id, CONNECTOR).await.unwrap().next_sync_at_ms.unwrap() > done.finished_at_ms.unwrap());
    // A finished run takes no more commits or finishes.
    assert!(matches!(store.commit(&l, &[], None, &none()).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.finish_run(&l, None, &none()).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.renew_lease(&mut l, LEASE).await, Err(StoreError::LeaseLost)));

    // The next run is new; a failed one records its code; a released one goes back to
    // the queue.
    let second = store.queue_run(id, CONNECTOR).await.unwrap();
    assert_ne!(second, run);
    let l2 = store.claim_run("node-a", LEASE).await.unwrap().unwrap();
    store.release_run(&l2).await.unwrap();
    assert_eq!(store.run(id, second).await.unwrap().status, RunStatus::Queued);
    assert!(matches!(store.commit(&l2, &[], None, &none()).await, Err(StoreError::LeaseLost)));
    let l3 = store.claim_run("node-b", LEASE).await.unwrap().unwrap();
    assert_eq!((l3.run_id, l3.attempt), (second, 2));
    store.finish_run(&l3, Some("http_failed"), &none()).await.unwrap();
    let failed = store.run(id, second).await.unwrap();
    assert_eq!((failed.status, failed.error_code.as_deref()), (RunStatus::Failed, Some("http_failed")));
    let runs = store.runs(id, CONNECTOR, 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(matches!(store.run(id, RunId::new()).await, Err(StoreError::NotFound { .. })));

    // Disabling fails a queued run.
    let third = store.queue_run(id, CONNECTOR).await.unwrap();
    store.disable_integration(id, CONNECTOR, false).await.unwrap();
    let third = store.run(id, third).await.unwrap();
    assert_eq!((third.status, third.error_code.as_deref()), (RunStatus::Failed, Some("integration_disabled")));
    assert!(store.claim_run("node-a", LEASE).await.unwrap().is_none());
}

async fn expired_lease_is_resumed_and_fences_the_old_node(db: &TestDb) {
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    let id = t.tenant.id;
    enable(store, &t, CONNECTOR).await;
    let run = store.queue_run(id, CONNECTOR).await.unwrap();
    let old = store.claim_run("node-a", Duration::from_millis(1)).await.unwrap().unwrap();
    store.commit(&old, &[count("deals_won", 1, 100, T0, 1)], Some(&cursor(1)), &none()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Node A died (as far as anyone can tell): node B resumes the run from the cursor.
    let new = store.claim_run("node-b", LEASE).await.unwrap().expect("the expired run is claimable");
    assert_eq!((new.run_id, new.attempt), (run, 2));
    assert_ne!(new.owner, old.owner);
    assert_eq!(store.cursor(id, CONNECTOR).await.unwrap(), Some(cursor(1)));
    // Node A wakes up: everything it tries is refused and changes nothing.
    assert!(matches!(
        store.commit(&old, &[count("deals_won", 2, 100, T0, 1)], Some(&cursor(99)), &none()).await,
        Err(StoreError::LeaseLost)
    ));
    let mut old = old;
    assert!(matches!(store.renew_lease(&mut old, LEASE).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.finish_run(&old, None, &none()).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.release_run(&old).await, Err(StoreError::LeaseLost)));
    assert_eq!(store.cursor(id, CONNECTOR).await.unwrap(), Some(cursor(1)));
    assert_eq!(store.facts(id, CONNECTOR).await.unwrap().len(), 1);

    store.commit(&new, &[count("deals_won", 2, 100, T0, 1)], Some(&cursor(2)), &none()).await.unwrap();
    store.finish_run(&new, None, &none()).await.unwrap();
    let done = store.run(id, run).await.unwrap();
    assert_eq!((done.status, done.attempts, done.upserts, done.checkpoints), (RunStatus::Succeeded, 2, 2, 2));
}

async fn concurrent_claims_take_each_run_once(db: &TestDb) {
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    let mut queued = BTreeSet::new();
    for i in 0..12 {
        let connector = format!("c{i}");
        enable(store, &t, &connector).await;
        queued.insert(store.queue_run(t.tenant.id, &connector).await.unwrap());
    }
    let mut tasks = Vec::new();
    for node in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(lease) = store.claim_run(&format!("node-{node}"), LEASE).await.unwrap() {
                mine.push(lease.run_id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    assert_eq!(claimed.len(), queued.len(), "each run claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<BTreeSet<_>>(), queued);
}

async fn due_integrations_are_queued(db: &TestDb) {
    let store = &db.store;
    assert!(store.enqueue_due_runs(10).await.unwrap().is_empty());
    let t = tenant(store, "acme", "GBP").await;
    enable(store, &t, CONNECTOR).await;
    let queued = store.enqueue_due_runs(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0, t.tenant.id);
    assert_eq!(store.run(t.tenant.id, queued[0].1).await.unwrap().status, RunStatus::Queued);
    // Not due again for an interval; a manual sync joins the queued run.
    assert!(store.enqueue_due_runs(10).await.unwrap().is_empty());
    assert_eq!(store.queue_run(t.tenant.id, CONNECTOR).await.unwrap(), queued[0].1);
    let next = store.integration(t.tenant.id, CONNECTOR).await.unwrap().next_sync_at_ms.unwrap();
    assert!(next > T0);
    // Disabled integrations are never due.
    store.disable_integration(t.tenant.id, CONNECTOR, false).await.unwrap();
    assert_eq!(store.integration(t.tenant.id, CONNECTOR).await.unwrap().next_sync_at_ms, None);
}

async fn owner_mapping_attributes_past_facts(db: &TestDb) {
    let store = &db.store;
    let (t, l) = setup(store).await;
    let id = t.tenant.id;
    let ann =
        store.create_user(id, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member }).await.unwrap();
    let counts = store
        .commit(
            &l,
            &[count("deals_won", 1, 100, T0, 1), count("deals_won", 2, 100, T0, 1), count("deals_won", 3, 101, T0, 1)],
            None,
            &none(),
        )
        .await
        .unwrap();
    assert_eq!(counts.unmapped, 3);
    let waiting = store.unmapped_owners(id, CONNECTOR).await.unwrap();
    assert_eq!(waiting.iter().map(|w| (w.owner, w.facts)).collect::<Vec<_>>(), vec![(h(100), 2), (h(101), 1)]);

    store.map_owners(id, CONNECTOR, &[(h(100), ann.id)]).await.unwrap();
    let kpis = store.kpi_totals(id, "deals_won", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(Owner::User(ann.id), 2), (unmapped(101), 1)]));
    assert_eq!(store.unmapped_owners(id, CONNECTOR).await.unwrap().len(), 1);
    assert_eq!(store.owner_mappings(id, CONNECTOR).await.unwrap(), vec![(h(100), ann.id)]);
    let counts = store.commit(&l, &[count("deals_won", 4, 100, T0, 1)], None, &none()).await.unwrap();
    assert_eq!(counts.unmapped, 0);
    assert_eq!(store.run(id, l.run_id).await.unwrap().unmapped, 3);

    // Mapping to a user of no tenant fails; unmapping puts the facts back under the hash.
    assert!(matches!(
        store.map_owners(id, CONNECTOR, &[(h(101), UserId::new())]).await,
        Err(StoreError::NotFound { .. })
    ));
    store.unmap_owner(id, CONNECTOR, h(100)).await.unwrap();
    let kpis = store.kpi_totals(id, "deals_won", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(unmapped(100), 3), (unmapped(101), 1)]));
    // Erasing a mapped user moves their facts to an anonymous former member under a random
    // owner hash (tests/e2e/privacy.rs covers erasure through the API).
    store.map_owners(id, CONNECTOR, &[(h(101), ann.id)]).await.unwrap();
    store.delete_user(id, ann.id).await.unwrap();
    let mappings = store.owner_mappings(id, CONNECTOR).await.unwrap();
    let former = store.former_members(id).await.unwrap();
    assert_eq!(mappings.len(), 1);
    let (anonymous, holder) = mappings[0];
    assert!(anonymous != h(101) && holder != ann.id && former.contains(&holder), "{mappings:?}");
    let kpis = store.kpi_totals(id, "deals_won", T0, T0 + 1).await.unwrap();
    assert_eq!(totals(&kpis), BTreeMap::from([(Owner::User(holder), 1), (unmapped(100), 3)]));
    // The erased CRM owner's edits stay with the former member; its new records go to nobody.
    store
        .commit(&l, &[count("deals_won", 3, 101, T0, 1), count("deals_won", 5, 101, T0, 1)], None, &none())
        .await
        .unwrap();
    let kpis = store.kpi_totals(id, "deals_won", T0, T0 + 1).await.unwrap();
    let erased = Owner::Unmapped { connector_id: CONNECTOR.to_owned(), owner: KeyedHash::from_bytes([0; 16]) };
    assert_eq!(totals(&kpis), BTreeMap::from([(Owner::User(holder), 1), (unmapped(100), 3), (erased, 1)]));
    assert_eq!(store.facts(id, CONNECTOR).await.unwrap().len(), 5);
    assert!(store.facts(id, CONNECTOR).await.unwrap().iter().all(|f| f.owner != h(101)));
}

async fn teams_and_members(db: &TestDb) {
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    let id = t.tenant.id;
    let ann =
        store.create_user(id, &NewUser { name: "Ann", email: "ann@example.com", role: Role::Member }).await.unwrap();
    let sales = store.create_team(id, "Sales").await.unwrap();
    let ops = store.create_team(id, "Ops").await.unwrap();
    assert_eq!(store.teams(id).await.unwrap().len(), 2);
    store.add_team_member(id, sales.id, ann.id).await.unwrap();
    store.add_team_member(id, sales.id, ann.id).await.unwrap();
    store.add_team_member(id, sales.id, t.admin.id).await.unwrap();
    let mut expected = vec![ann.id, t.admin.id];
    expected.sort();
    assert_eq!(store.team_members(id, sales.id).await.unwrap(), expected);
    assert!(store.team_members(id, ops.id).await.unwrap().is_empty());
    store.remove_team_member(id, sales.id, ann.id).await.unwrap();
    assert_eq!(store.team_members(id, sales.id).await.unwrap(), vec![t.admin.id]);
    assert!(matches!(store.add_team_member(id, ops.id, UserId::new()).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.create_team(TenantId::new(), "X").await, Err(StoreError::NotFound { .. })));
}

/// A tenant with many due runs does not starve another: once it has a run going, the other
/// tenant's run is claimed before its older ones; a node passes the tenants it runs its
/// share of, and they are skipped.
async fn claims_go_round_robin_across_tenants_and_skip_full_ones(db: &TestDb) {
    let store = &db.store;
    let a = tenant(store, "busy", "GBP").await;
    let b = tenant(store, "quiet", "GBP").await;
    let mut busy = Vec::new();
    for connector in ["crm-1", "crm-2", "crm-3"] {
        enable(store, &a, connector).await;
        busy.push(store.queue_run(a.tenant.id, connector).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    enable(store, &b, "crm-1").await;
    let quiet = store.queue_run(b.tenant.id, "crm-1").await.unwrap();

    let first = store.claim_run_fair("node-a", LEASE, &[]).await.unwrap().unwrap();
    assert_eq!((first.tenant_id, first.run_id), (a.tenant.id, busy[0]), "the oldest run first");
    // The busy tenant has a sync going: the quiet tenant's newer run goes before its others.
    let second = store.claim_run_fair("node-b", LEASE, &[]).await.unwrap().unwrap();
    assert_eq!((second.tenant_id, second.run_id), (b.tenant.id, quiet), "round-robin across tenants");
    // A node at its share for the busy tenant claims none of its runs.
    assert!(store.claim_run_fair("node-a", LEASE, &[a.tenant.id, b.tenant.id]).await.unwrap().is_none());
    let third = store.claim_run_fair("node-a", LEASE, &[b.tenant.id]).await.unwrap().unwrap();
    assert_eq!(third.run_id, busy[1]);
}

/// A partial run keeps its reasons and its retry time; `succeeded` and `failed` keep none.
async fn partial_runs_keep_their_reasons(db: &TestDb) {
    use oneup::store::RunReason;
    let store = &db.store;
    let t = tenant(store, "acme", "GBP").await;
    enable(store, &t, CONNECTOR).await;
    let l = lease(store, t.tenant.id, CONNECTOR).await;
    let reasons = [RunReason::RosterFailed("http_unavailable".into()), RunReason::OwnersUnmapped(3)];
    let retry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 60_000;
    store.finish_run_partial(&l, &reasons, &none(), retry).await.unwrap();
    let run = store.run(t.tenant.id, l.run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Partial);
    assert_eq!(run.reasons, ["roster_failed:http_unavailable", "owners_unmapped:3"]);
    assert_eq!(run.error_code, None);
    assert_eq!(store.integration(t.tenant.id, CONNECTOR).await.unwrap().next_sync_at_ms, Some(retry));
    let l = lease(store, t.tenant.id, CONNECTOR).await;
    store.finish_run(&l, None, &none()).await.unwrap();
    let run = store.run(t.tenant.id, l.run_id).await.unwrap();
    assert_eq!((run.status, run.reasons.len()), (RunStatus::Succeeded, 0));
}
