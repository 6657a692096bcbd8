//! Host-side credentials that refresh: OAuth 2.0 (`oauth2-refresh`) and Bullhorn sessions
//! (`bullhorn-session`), through the real runtime and real probe components
//! (`tests/auth-connector/`), against the fake token server of `oneup_fake_crm::oauth` and a
//! small CRM of this file, over loopback HTTP; the refresh tokens and locks in real SQLite
//! and Postgres stores.
//!
//! What a user relies on: the connector never sees a token; a token is refreshed before it
//! expires and once after a 401, the request retried once; a rotated refresh token is stored
//! sealed and used the next time; two nodes never refresh one integration at once and never
//! present a spent token; a refused grant marks the integration `needs_reauthorization` and
//! stops its runs until an admin brings new secrets; Bullhorn's login decides where requests
//! go and is redone after a 401; 307s of the token and login calls are followed, but only to
//! allowed hosts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneup::ingest::Currency;
use oneup::runtime::auth::TokenVault;
use oneup::runtime::{IntegrationSetup, LoadedConnector, Runtime, SyncError, SyncOutcome, SyncReport};
use oneup::store::integrations::AuthStatus;
use oneup::store::{CreatedTenant, EnableIntegration, MasterKey, NewTenant, Secrets, Store};
use oneup_fake_crm::oauth::{FakeRedirect, FakeTokenServer, OAuthSettings, Rotation, TokenAuthority};
use oneup_fake_crm::{FakeServer, Responder, Response};
use oneup_tests::*;

const OAUTH_PROBE: &str = "oneup-auth-connector";
const BULLHORN_PROBE: &str = "oneup-auth-connector-bullhorn";
const CONNECTOR_ID: &str = "auth-probe";
const CLIENT_ID: &str = "probe-client-7d1e";
const CLIENT_SECRET: &str = "probe-client-secret-5c2a9f";
const SALESFORCE_TOKEN_PATH: &str = "/services/oauth2/token";
const SESSION_EXPIRED: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
const BAD_REST_TOKEN: &str = r#"{"errorMessage":"Bad 'BhRestToken' or timed-out.","errorMessageKey":"errors.authentication.invalidRestToken","errorCode":401}"#;
/// Bullhorn's corporation path of the REST URL the fake's login answers.
const CORP_PREFIX: &str = "/rest-services/corp42";

/// One request the test CRM saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    status: u16,
    /// The bearer token or `BhRestToken` it carried.
    credential: Option<String>,
}

/// A small CRM: data paths answer `200` to a valid credential and `401` otherwise. In
/// bearer mode it checks `Authorization: Bearer` against the authority; in Bullhorn mode it
/// serves `GET /rest-services/login?version=*&access_token=…` and checks `BhRestToken` on
/// everything under the REST URL it answers.
///
/// Paths (after the REST prefix in Bullhorn mode): `/slow` answers after 2 s; `/expire`
/// answers and then expires every access token (bearer) or session (Bullhorn);
/// `/always401` always answers 401; anything else is data.
struct TestCrm {
    authority: TokenAuthority,
    bullhorn: bool,
    base: Mutex<String>,
    rest_url_override: Mutex<Option<String>>,
    sessions: Mutex<BTreeMap<String, bool>>,
    seen: Mutex<Vec<Seen>>,
    logins: AtomicU64,
}

fn header<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// A query parameter's value, undecoded: the fake's tokens and `*` need no decoding.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
}

impl TestCrm {
    fn new(authority: &TokenAuthority, bullhorn: bool) -> Self {
        Self {
            authority: authority.clone(),
            bullhorn,
            base: Mutex::new(String::new()),
            rest_url_override: Mutex::new(None),
            sessions: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(Vec::new()),
            logins: AtomicU64::new(0),
        }
    }

    fn login(&self, method: &str, query: &str) -> Response {
        let token = query_value(query, "access_token").unwrap_or_default();
        if method != "GET" || query_value(query, "version").as_deref() != Some("*") {
            return Response::json(400, br#"{"errorMessage":"bad login request"}"#.to_vec());
        }
        if !self.authority.access_token_valid(&token) {
            return Response::json(401, br#"{"errorMessage":"Invalid or expired OAuth access token."}"#.to_vec());
        }
        let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let session = format!("bh-session-{n:03}-9f2c7e41");
        self.sessions.lock().unwrap().insert(session.clone(), true);
        let rest_url = self
            .rest_url_override
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| format!("{}{CORP_PREFIX}/", self.base.lock().unwrap()));
        let body = serde_json::json!({"BhRestToken": session, "restUrl": rest_url});
        Response::json(200, body.to_string().into_bytes())
    }
}

impl Responder for TestCrm {
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        if self.bullhorn && path == "/rest-services/login" {
            return self.login(method, query);
        }
        let (credential, valid, page) = if self.bullhorn {
            let token = header(headers, "bhresttoken").map(str::to_owned);
            let valid = token.as_ref().is_some_and(|t| self.sessions.lock().unwrap().get(t) == Some(&true));
            (token, valid, path.strip_prefix(CORP_PREFIX).unwrap_or("/outside-the-rest-url"))
        } else {
            let token = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned);
            (token, self.authority.bearer_token_valid(headers), path)
        };
        let mut answer = if !valid || page == "/always401" || page == "/outside-the-rest-url" {
            Response::json(401, if self.bullhorn { BAD_REST_TOKEN } else { SESSION_EXPIRED }.as_bytes().to_vec())
        } else {
            Response::json(200, format!(r#"{{"ok":true,"page":"{page}"}}"#).into_bytes())
        };
        if answer.status == 200 && page == "/slow" {
            answer.delay = Some(Duration::from_secs(2));
        }
        if answer.status == 200 && page == "/expire" {
            if self.bullhorn {
                self.sessions.lock().unwrap().values_mut().for_each(|v| *v = false);
            } else {
                self.authority.expire_access_tokens();
            }
        }
        self.seen.lock().unwrap().push(Seen { path: path.to_owned(), status: answer.status, credential });
        answer
    }
}

/// A test CRM on loopback.
async fn crm(authority: &TokenAuthority, bullhorn: bool) -> FakeServer<TestCrm> {
    let server = FakeServer::serve(TestCrm::new(authority, bullhorn)).await.expect("the test CRM starts");
    *server.lock().base.lock().unwrap() = server.base_url();
    server
}

fn seen(crm: &FakeServer<TestCrm>) -> Vec<Seen> {
    crm.lock().seen.lock().unwrap().clone()
}

/// A Salesforce-like authority (form body, no `expires_in` unless `ttl`) and its server.
async fn salesforce_tokens(ttl: Option<Duration>, rotation: Rotation) -> (TokenAuthority, FakeTokenServer) {
    let authority = TokenAuthority::new(
        OAuthSettings::salesforce(CLIENT_ID, CLIENT_SECRET).with_access_ttl(ttl).with_rotation(rotation),
    );
    let server = FakeTokenServer::start(authority.clone(), SALESFORCE_TOKEN_PATH).await.expect("token server");
    (authority, server)
}

/// A Bullhorn authority (query string, 600 s, single-use refresh tokens) and its server.
async fn bullhorn_tokens() -> (TokenAuthority, FakeTokenServer) {
    let authority = TokenAuthority::new(OAuthSettings::bullhorn(CLIENT_ID, CLIENT_SECRET));
    let server = FakeTokenServer::start(authority.clone(), "/oauth/token").await.expect("token server");
    (authority, server)
}

async fn load(runtime: &Runtime, crate_name: &str) -> LoadedConnector {
    runtime.load(&component(crate_name)).await.expect("the probe loads")
}

fn secrets(refresh_token: &str) -> Vec<(String, String)> {
    vec![
        ("client_id".into(), CLIENT_ID.into()),
        ("client_secret".into(), CLIENT_SECRET.into()),
        ("refresh_token".into(), refresh_token.into()),
    ]
}

fn oauth_config(crm: &FakeServer<TestCrm>, token_url: &str, paths: &str) -> Vec<(String, String)> {
    vec![("base_url".into(), crm.base_url()), ("token_url".into(), token_url.into()), ("paths".into(), paths.into())]
}

fn bullhorn_config(auth_base: &str, login_base: &str, paths: &str) -> Vec<(String, String)> {
    vec![
        ("auth_url".into(), format!("{auth_base}/oauth")),
        ("login_url".into(), format!("{login_base}/rest-services")),
        ("paths".into(), paths.into()),
    ]
}

/// What the connector wrote to `debug`: everything it could see.
type Debugged = Arc<Mutex<Vec<String>>>;

fn setup_with(
    config: &[(String, String)],
    secrets: &[(String, String)],
    vault: Option<Arc<dyn TokenVault>>,
) -> (IntegrationSetup, Debugged) {
    let debugged: Debugged = Arc::default();
    let sink = debugged.clone();
    let setup = IntegrationSetup {
        config: config.iter().cloned().collect(),
        secrets: secrets.iter().cloned().collect(),
        tenant_key: tenant_key(),
        debug: Some(Box::new(move |m: &str| sink.lock().unwrap().push(m.to_owned()))),
        timezone: oneup::runtime::TimeZone::UTC,
        vault,
    };
    (setup, debugged)
}

async fn sync(runtime: &Runtime, connector: &LoadedConnector, setup: IntegrationSetup) -> SyncReport {
    sync_into(runtime, connector, setup, &table()).await
}

fn connector_code(report: &SyncReport) -> Option<String> {
    match &report.result {
        Err(SyncError::Connector { code, .. }) => Some(code.clone()),
        _ => None,
    }
}

/// Every credential value the CRM saw, plus the refresh tokens the authority issued.
fn credentials_in_play(crm: &FakeServer<TestCrm>, authority: &TokenAuthority, more: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = seen(crm).into_iter().filter_map(|s| s.credential).collect();
    all.extend(authority.newest_refresh_token());
    all.extend(more.iter().map(|s| s.to_string()));
    all.push(CLIENT_SECRET.to_owned());
    all.sort();
    all.dedup();
    all
}

fn assert_never_shown(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a credential appears in {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_is_injected_and_the_connector_never_sees_a_token() {
    let logs = capture_logs();
    let (authority, tokens) = salesforce_tokens(None, Rotation::Keep).await;
    let refresh_token = authority.issue_refresh_token();
    let crm = crm(&authority, false).await;
    let runtime = runtime();
    let probe = load(&runtime, OAUTH_PROBE).await;

    let config = oauth_config(&crm, &tokens.url(), "/data/a,/data/b,/data/c");
    let (setup, debugged) = setup_with(&config, &secrets(&refresh_token), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(report.stats.upserts, 3);

    // One refresh served all three requests, each with a valid bearer token.
    assert_eq!(authority.stats().granted, 1);
    let seen = seen(&crm);
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.status == 200 && s.credential.is_some()), "{seen:?}");

    // The connector saw the answers and its config, and no credential anywhere.
    let debugged = debugged.lock().unwrap().join("\n");
    assert!(debugged.contains("answer /data/b 200"), "{debugged}");
    assert!(debugged.contains(&format!("config token_url={}", tokens.url())), "{debugged}");
    let in_play = credentials_in_play(&crm, &authority, &[&refresh_token]);
    assert!(in_play.len() >= 3);
    assert_never_shown("the connector's view", &debugged, &in_play);
    assert_never_shown("the host's log", &logs.text(), &in_play);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_renewed_before_it_expires_and_once_after_a_401() {
    // Access tokens live 2 s: the host renews after 1.8 s, before the CRM would refuse one.
    let (authority, tokens) = salesforce_tokens(Some(Duration::from_secs(2)), Rotation::Keep).await;
    let refresh_token = authority.issue_refresh_token();
    let crm = crm(&authority, false).await;
    let runtime = runtime();
    let probe = load(&runtime, OAUTH_PROBE).await;

    let paths = "/data/a,/slow,/data/b,/expire,/data/c";
    let (setup, _) = setup_with(&oauth_config(&crm, &tokens.url(), paths), &secrets(&refresh_token), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(report.stats.upserts, 5);
    // First grant; renewed before `/data/b` (expiry); renewed after `/data/c`'s 401.
    assert_eq!(authority.stats().granted, 3);
    let seen = seen(&crm);
    let statuses: Vec<(&str, u16)> = seen.iter().map(|s| (s.path.as_str(), s.status)).collect();
    assert_eq!(
        statuses,
        [("/data/a", 200), ("/slow", 200), ("/data/b", 200), ("/expire", 200), ("/data/c", 401), ("/data/c", 200)]
    );
    assert_eq!(seen[0].credential, seen[1].credential);
    assert_ne!(seen[1].credential, seen[2].credential, "renewed before it expired");
    assert_ne!(seen[4].credential, seen[5].credential, "renewed after the 401");

    // A CRM that refuses even a fresh token: one renewal, one retry, then `unauthorized`.
    let before = authority.stats().granted;
    let (setup, _) =
        setup_with(&oauth_config(&crm, &tokens.url(), "/data/a,/always401"), &secrets(&refresh_token), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(connector_code(&report).as_deref(), Some("http_unauthorized"), "{:?}", report.result);
    assert_eq!(authority.stats().granted, before + 2);
    assert_eq!(seen_count(&crm, "/always401"), 2, "retried exactly once");
    assert_eq!(report.stats.upserts, 1);
}

fn seen_count(crm: &FakeServer<TestCrm>, path: &str) -> usize {
    seen(crm).iter().filter(|s| s.path == path).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bullhorn_logs_in_uses_the_rest_url_and_logs_in_again_on_401() {
    let logs = capture_logs();
    let (authority, tokens) = bullhorn_tokens().await;
    let first = authority.issue_refresh_token();
    let crm = crm(&authority, true).await;
    let runtime = runtime();
    let probe = load(&runtime, BULLHORN_PROBE).await;

    let config = bullhorn_config(&tokens.base_url(), &crm.base_url(), "/search/Placement,/expire,/query/JobSubmission");
    let (setup, debugged) = setup_with(&config, &secrets(&first), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(report.stats.upserts, 3);

    // Every data request went to the login's restUrl with a BhRestToken; the session that
    // expired was replaced by a second refresh (single-use token rotated, never reused) and
    // a second login, and the request retried.
    let seen = seen(&crm);
    let data: Vec<(&str, u16)> =
        seen.iter().filter(|s| s.path != "/rest-services/login").map(|s| (s.path.as_str(), s.status)).collect();
    assert_eq!(
        data,
        [
            ("/rest-services/corp42/search/Placement", 200),
            ("/rest-services/corp42/expire", 200),
            ("/rest-services/corp42/query/JobSubmission", 401),
            ("/rest-services/corp42/query/JobSubmission", 200),
        ]
    );
    assert_eq!(crm.lock().logins.load(Ordering::SeqCst), 2);
    let stats = authority.stats();
    assert_eq!((stats.granted, stats.spent_token_uses), (2, 0));
    assert!(!authority.refresh_token_live(&first), "the first refresh token was spent");

    let debugged = debugged.lock().unwrap().join("\n");
    assert!(debugged.contains("answer /query/JobSubmission 200"), "{debugged}");
    let in_play = credentials_in_play(&crm, &authority, &[&first]);
    assert_never_shown("the connector's view", &debugged, &in_play);
    assert_never_shown("the host's log", &logs.text(), &in_play);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_307_of_token_and_login_calls_are_followed_to_allowed_hosts_only() {
    let (authority, tokens) = bullhorn_tokens().await;
    let crm = crm(&authority, true).await;
    let runtime = runtime();
    let probe = load(&runtime, BULLHORN_PROBE).await;

    // The wrong data centre: both the token and the login call answer 307 to another port.
    let token_redirect = FakeRedirect::start(&tokens.base_url()).await.expect("redirect");
    let login_redirect = FakeRedirect::start(&crm.base_url()).await.expect("redirect");
    let config = bullhorn_config(&token_redirect.base_url(), &login_redirect.base_url(), "/search/Placement");
    let (setup, _) = setup_with(&config, &secrets(&authority.issue_refresh_token()), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!((token_redirect.hits(), login_redirect.hits()), (1, 1));
    assert_eq!(authority.stats().granted, 1);

    // A redirect to a host the connector does not allow is not followed: nothing is sent
    // there, the sync fails, and the integration is not blamed (no refusal recorded).
    let elsewhere = FakeRedirect::start("http://crm.example.com").await.expect("redirect");
    let config = bullhorn_config(&elsewhere.base_url(), &crm.base_url(), "/search/Placement");
    let (setup, _) = setup_with(&config, &secrets(&authority.issue_refresh_token()), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(connector_code(&report).as_deref(), Some("http_denied"), "{:?}", report.result);
    assert_eq!(elsewhere.hits(), 1);
    assert_eq!(authority.stats().refresh_calls, 1, "the token endpoint was not reached");

    // A login answering a restUrl on a host that is not allowed: no data request is sent.
    *crm.lock().rest_url_override.lock().unwrap() = Some("https://rest9.evil.example.com/rest-services/x/".into());
    let before = seen(&crm).len();
    let config = bullhorn_config(&tokens.base_url(), &crm.base_url(), "/search/Placement");
    let (setup, _) = setup_with(&config, &secrets(&authority.issue_refresh_token()), None);
    let report = sync(&runtime, &probe, setup).await;
    assert_eq!(connector_code(&report).as_deref(), Some("http_denied"), "{:?}", report.result);
    let after: Vec<Seen> = seen(&crm).into_iter().skip(before).collect();
    assert!(after.iter().all(|s| s.path == "/rest-services/login"), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_urls_must_pass_the_egress_rules() {
    let (authority, tokens) = salesforce_tokens(None, Rotation::Keep).await;
    let crm = crm(&authority, false).await;
    let probe_runtime = runtime();
    let probe = load(&probe_runtime, OAUTH_PROBE).await;
    let rt = authority.issue_refresh_token();

    // A token URL on a host the connector does not declare, or plain http off loopback.
    for bad in ["https://login.evil.example.com/services/oauth2/token", "http://login.salesforce.com/token"] {
        let (setup, _) = setup_with(&oauth_config(&crm, bad, "/data/a"), &secrets(&rt), None);
        let err = probe_runtime.check_setup(&probe, &setup).expect_err("refused");
        assert!(err.to_string().contains("token_url"), "{err}");
        assert!(!err.to_string().contains("evil"), "{err}");
    }
    // Salesforce's default token host is among the connector's declared hosts.
    let config: Vec<(String, String)> =
        vec![("base_url".into(), "https://na139.salesforce.com".into()), ("paths".into(), "/x".into())];
    let (setup, _) = setup_with(&config, &secrets(&rt), None);
    probe_runtime.check_setup(&probe, &setup).expect("the default token URL passes");
    // A missing secret is named, its value never.
    let mut partial = secrets(&rt);
    partial.retain(|(k, _)| k != "client_secret");
    let (setup, _) = setup_with(&oauth_config(&crm, &tokens.url(), "/data/a"), &partial, None);
    let err = probe_runtime.check_setup(&probe, &setup).expect_err("refused");
    assert!(err.to_string().contains("client_secret"), "{err}");
    assert_eq!(authority.stats().refresh_calls, 0);
}

// ----- with a store: rotation, serialised refreshes, re-authorisation -----

fn master_key() -> MasterKey {
    MasterKey::from_bytes([9; 32])
}

/// A store on a database of its own, a tenant, and the OAuth probe enabled for it with
/// `refresh_token`; `None` when Postgres is skipped.
struct Installed {
    store: Store,
    tenant: CreatedTenant,
    db: TestDatabase,
}

async fn install(backend: Backend, config: &[(String, String)], refresh_token: &str) -> Option<Installed> {
    let db = TestDatabase::new(backend).await?;
    let store = Store::connect(&db.url, master_key()).await.expect("the store opens");
    let tenant = store
        .create_tenant(&NewTenant {
            name: "acme",
            timezone: "Europe/London",
            currency: Currency::parse("GBP").expect("GBP"),
            admin_name: "Admin",
            admin_email: "admin@acme.example",
        })
        .await
        .expect("tenant");
    enable(&store, &tenant, config, refresh_token).await;
    Some(Installed { store, tenant, db })
}

async fn enable(store: &Store, tenant: &CreatedTenant, config: &[(String, String)], refresh_token: &str) {
    let config: BTreeMap<String, String> = config.iter().cloned().collect();
    let secrets = Secrets::new(secrets(refresh_token).into_iter().collect());
    store
        .enable_integration(
            tenant.tenant.id,
            &EnableIntegration {
                connector_id: CONNECTOR_ID,
                config: &config,
                secrets: &secrets,
                metrics: &["answers".to_owned()],
                sync_interval_secs: 900,
                enabled_by: tenant.admin.id,
                component_digest: None,
                component_grants: None,
            },
        )
        .await
        .expect("enabled");
}

impl Installed {
    /// What the scheduler hands the runtime: the stored settings and the store's vault.
    async fn setup(&self, store: &Store) -> IntegrationSetup {
        let integration = store.integration(self.tenant.tenant.id, CONNECTOR_ID).await.expect("integration");
        let secrets = store.integration_secrets(self.tenant.tenant.id, CONNECTOR_ID).await.expect("secrets");
        let vault: Arc<dyn TokenVault> =
            Arc::new(oneup::scheduler::IntegrationVault::new(store.clone(), self.tenant.tenant.id, CONNECTOR_ID));
        let config: Vec<(String, String)> = integration.config.into_iter().collect();
        let secrets: Vec<(String, String)> = secrets.into_inner().into_iter().collect();
        setup_with(&config, &secrets, Some(vault)).0
    }

    async fn stored_refresh_token(&self) -> String {
        let secrets = self.store.integration_secrets(self.tenant.tenant.id, CONNECTOR_ID).await.expect("secrets");
        secrets.get("refresh_token").expect("a refresh token").to_owned()
    }

    async fn leases_held(&self) -> i64 {
        self.db.scalar_i64("SELECT COUNT(*) FROM integrations WHERE refresh_lease_holder IS NOT NULL").await
    }
}

async fn a_rotated_refresh_token_is_stored_sealed_and_used_next_time(backend: Backend) {
    let (authority, tokens) = salesforce_tokens(None, Rotation::SingleUse).await;
    let first = authority.issue_refresh_token();
    let crm = crm(&authority, false).await;
    let config = oauth_config(&crm, &tokens.url(), "/data/a");
    let Some(installed) = install(backend, &config, &first).await else { return };
    let runtime = runtime();
    let probe = load(&runtime, OAUTH_PROBE).await;

    let stale = installed.setup(&installed.store).await;
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    let second = installed.stored_refresh_token().await;
    assert_ne!(second, first);
    assert_eq!(authority.newest_refresh_token().as_deref(), Some(second.as_str()));

    // Sealed: no token appears in any table (or, on SQLite, anywhere in the file).
    let dump = format!("{:?}", installed.db.dump().await);
    let raw = String::from_utf8_lossy(&installed.db.raw_bytes()).into_owned();
    for token in credentials_in_play(&crm, &authority, &[&first, &second]) {
        assert!(!dump.contains(&token) && !raw.contains(&token), "a credential is stored in clear");
    }

    // The next sync uses the rotated token, even one set up with the secrets read before
    // the rotation (as a node that raced the refresh would be): the vault re-reads it.
    let report = sync(&runtime, &probe, stale).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    let stats = authority.stats();
    assert_eq!((stats.granted, stats.refused, stats.spent_token_uses), (3, 0, 0));
    assert_eq!(installed.stored_refresh_token().await, authority.newest_refresh_token().unwrap());
    assert_eq!(installed.leases_held().await, 0);
}

async fn two_nodes_refreshing_one_integration_take_turns(backend: Backend) {
    let (authority, tokens) = salesforce_tokens(None, Rotation::SingleUse).await;
    // Each refresh takes 300 ms, so unserialised refreshes would overlap for sure.
    authority.set_latency(Duration::from_millis(300));
    let crm = crm(&authority, false).await;
    let config = oauth_config(&crm, &tokens.url(), "/data/a,/data/b");
    let Some(installed) = install(backend, &config, &authority.issue_refresh_token()).await else { return };
    // Two nodes: two stores on the one database, two runtimes.
    let other = Store::connect(&installed.db.url, master_key()).await.expect("second node's store");
    let (runtime_a, runtime_b) = (runtime(), runtime());
    let (probe_a, probe_b) = (load(&runtime_a, OAUTH_PROBE).await, load(&runtime_b, OAUTH_PROBE).await);

    for round in 1..=3u64 {
        let (setup_a, setup_b) = (installed.setup(&installed.store).await, installed.setup(&other).await);
        let (a, b) = tokio::join!(sync(&runtime_a, &probe_a, setup_a), sync(&runtime_b, &probe_b, setup_b));
        assert_eq!(a.result, Ok(SyncOutcome::Complete), "round {round}");
        assert_eq!(b.result, Ok(SyncOutcome::Complete), "round {round}");
        let stats = authority.stats();
        assert_eq!(stats.granted, 2 * round, "one refresh per sync, each with the newest token");
        assert_eq!((stats.refused, stats.spent_token_uses), (0, 0));
        assert_eq!(stats.max_in_flight, 1, "never two refreshes at once");
    }
    assert_eq!(installed.stored_refresh_token().await, authority.newest_refresh_token().unwrap());
    assert_eq!(installed.leases_held().await, 0);
}

async fn a_refused_grant_needs_reauthorisation_and_stops_the_runs(backend: Backend) {
    let (authority, tokens) = salesforce_tokens(None, Rotation::Keep).await;
    let crm = crm(&authority, false).await;
    let config = oauth_config(&crm, &tokens.url(), "/data/a");
    let revoked = authority.issue_refresh_token();
    let Some(installed) = install(backend, &config, &revoked).await else { return };
    let tenant = installed.tenant.tenant.id;
    let runtime = runtime();
    let probe = load(&runtime, OAUTH_PROBE).await;

    // The user revoked the app: `invalid_grant`.
    authority.revoke_refresh_tokens();
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Err(SyncError::NeedsReauthorization));
    assert_eq!(report.result.as_ref().unwrap_err().code(), "needs_reauthorization");
    assert!(!report.result.as_ref().unwrap_err().to_string().contains(&revoked));
    assert!(seen(&crm).is_empty(), "nothing reached the CRM");
    let integration = installed.store.integration(tenant, CONNECTOR_ID).await.unwrap();
    assert_eq!(integration.auth_status, AuthStatus::NeedsReauthorization);
    assert!(integration.auth_status_at_ms.is_some());

    // Due, but not queued; a run started anyway fails at once without a token call.
    assert!(installed.store.enqueue_due_runs(64).await.unwrap().is_empty());
    let calls = authority.stats().refresh_calls;
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Err(SyncError::NeedsReauthorization));
    assert_eq!(authority.stats().refresh_calls, calls);

    // The admin enables it again with a new refresh token: cleared, queued, syncing.
    enable(&installed.store, &installed.tenant, &config, &authority.issue_refresh_token()).await;
    let integration = installed.store.integration(tenant, CONNECTOR_ID).await.unwrap();
    assert_eq!((integration.auth_status, integration.auth_status_at_ms), (AuthStatus::Ok, None));
    assert_eq!(installed.store.enqueue_due_runs(64).await.unwrap().len(), 1);
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(installed.leases_held().await, 0);
}

async fn a_token_endpoint_that_fails_for_a_while_is_retried_without_blame(backend: Backend) {
    let (authority, tokens) = salesforce_tokens(None, Rotation::Keep).await;
    let crm = crm(&authority, false).await;
    let config = oauth_config(&crm, &tokens.url(), "/data/a");
    let Some(installed) = install(backend, &config, &authority.issue_refresh_token()).await else { return };
    let runtime = runtime();
    let probe = load(&runtime, OAUTH_PROBE).await;

    // Two 503s are retried with backoff; the third call refreshes.
    authority.fail_next(2, oneup_fake_crm::oauth::TokenFault::Status(503));
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(report.result, Ok(SyncOutcome::Complete));
    assert_eq!(authority.stats().refresh_calls, 3);

    // Failing for good: the connector gets `unavailable`, the integration stays `ok`.
    authority.fail_next(100, oneup_fake_crm::oauth::TokenFault::Status(503));
    let report = sync(&runtime, &probe, installed.setup(&installed.store).await).await;
    assert_eq!(connector_code(&report).as_deref(), Some("http_unavailable"), "{:?}", report.result);
    let integration = installed.store.integration(installed.tenant.tenant.id, CONNECTOR_ID).await.unwrap();
    assert_eq!(integration.auth_status, AuthStatus::Ok);
    assert_eq!(installed.leases_held().await, 0);
}

on_both_stores!(
    a_rotated_refresh_token_is_stored_sealed_and_used_next_time,
    two_nodes_refreshing_one_integration_take_turns,
    a_refused_grant_needs_reauthorisation_and_stops_the_runs,
    a_token_endpoint_that_fails_for_a_while_is_retried_without_blame,
);

// ----- the check tool -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tool_refreshes_and_says_a_rotated_token_is_spent_without_showing_it() {
    let (authority, tokens) = bullhorn_tokens().await;
    let crm = crm(&authority, true).await;
    let given = authority.issue_refresh_token();
    let mut args = vec!["--no-roster".to_owned()];
    for (k, v) in bullhorn_config(&tokens.base_url(), &crm.base_url(), "/search/Placement,/expire,/search/Placement") {
        args.extend(["--config".to_owned(), format!("{k}={v}")]);
    }
    for (k, v) in secrets(&given) {
        args.extend(["--secret".to_owned(), format!("{k}={v}")]);
    }
    let mut cmd = std::process::Command::new(oneup_bin());
    cmd.args(["connector", "check"]).arg(component_path(BULLHORN_PROBE)).args(&args);
    cmd.env("ONEUP_ALLOW_LOOPBACK_HTTP", "1").env_remove("ONEUP_LOG").env_remove("ONEUP_LOG_FORMAT");
    cmd.env("ONEUP_CACHE_DIR", workspace_root().join("target").join("test-compile-cache"));
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("oneup runs")).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    // Two refreshes (the second after the 401), each rotating the single-use token.
    assert_eq!(authority.stats().granted, 2);
    assert_eq!(authority.stats().spent_token_uses, 0);
    assert!(stderr.contains("rotated the refresh token (2 time(s))"), "{stderr}");
    let in_play = credentials_in_play(&crm, &authority, &[&given]);
    assert_never_shown("the check tool's output", &format!("{stdout}\n{stderr}"), &in_play);
}
