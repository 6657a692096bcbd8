//! The OAuth connect flow end to end on both stores: an admin enables Salesforce or
//! Bullhorn with the connected app's client id and secret only, is sent to the fake CRM's
//! authorisation page (state + PKCE S256), comes back with a code, and the host exchanges
//! it and stores the refresh token sealed where a pasted one goes; the next sync works.
//! Forged, replayed and expired states, a refused consent and a code bound to another PKCE
//! challenge are refused with clear errors and store nothing.

use std::time::Duration;

use oneup_fake_crm::Timestamp;
use oneup_fake_crm::bullhorn::{Credentials, Dataset as BhDataset, DatasetSpec as BhSpec, FakeBullhorn};
use oneup_fake_crm::salesforce::{Dataset, DatasetSpec, FakeSalesforce};
use oneup_tests::app::{self, str_of};
use oneup_tests::*;
use serde_json::{Value as Json, json};

on_both_stores!(
    salesforce_connects_through_oauth_then_syncs,
    bullhorn_connects_through_oauth_then_syncs,
    forged_replayed_expired_and_tampered_authorisations_store_nothing,
);

const LONG: Duration = Duration::from_secs(120);
const SF_CLIENT_ID: &str = "sf-connect-client-61b2";
const SF_CLIENT_SECRET: &str = "sf-connect-secret-0e77c3";
const BH_CLIENT_ID: &str = "bh-connect-client-2c90";
const BH_CLIENT_SECRET: &str = "bh-connect-secret-a41f5e";

/// A browser that does not follow redirects: each step of the flow is looked at.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// A GET: status, `Location`, body as JSON (`Null` if none), checked against the OpenAPI
/// document when it is the service's own route.
async fn get(url: &str, token: Option<&str>, service: &Service) -> (u16, Option<String>, Json) {
    let mut req = browser().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: no answer: {e}"));
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = resp.text().await.expect("a body");
    if let Some(path) = url.strip_prefix(&service.base_url)
        && let Err(drift) = oneup_tests::openapi::check_answer("GET", path, status, &text)
    {
        panic!("the answer does not match host/openapi.json: {drift}\nbody: {text}");
    }
    (status, location, serde_json::from_str(&text).unwrap_or(Json::Null))
}

/// A query parameter of a URL.
fn param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).expect("a URL");
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `url` with parameter `name` set to `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("a URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// The S256 challenge of a verifier, computed here independently of the host.
fn s256(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digest = Sha256::digest(verifier.as_bytes());
    let mut out = String::new();
    for chunk in digest.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The service, a tenant, and (for the comparisons) the service's callback URL.
struct Setup {
    db: TestDatabase,
    service: Service,
    t: app::Tenant,
}

impl Setup {
    async fn new(backend: Backend) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let service = Service::start(&db.url, &ServiceOptions::default()).await;
        let t = app::Tenant::create(&service.api(), "Connect Co", "connect.example", "UTC", "USD").await;
        Some(Setup { db, service, t })
    }

    fn connect_url(&self, connector: &str) -> String {
        format!("{}/v1/integrations/{connector}/connect", self.service.base_url)
    }

    /// `GET …/connect` as the admin: the authorisation URL it redirects to, checked.
    async fn start(&self, connector: &str, authorize_url: &str) -> String {
        let (status, location, body) = get(&self.connect_url(connector), Some(&self.t.admin), &self.service).await;
        assert_eq!(status, 302, "{body}");
        let location = location.expect("a Location");
        assert_eq!(str_of(&body["authorize_url"]), location);
        assert!(location.starts_with(&format!("{authorize_url}?")), "{location}");
        assert_eq!(param(&location, "response_type").as_deref(), Some("code"));
        assert_eq!(
            param(&location, "redirect_uri"),
            Some(format!("{}/oauth/callback", self.service.base_url)),
            "the callback under the service's own URL"
        );
        let state = param(&location, "state").expect("a state");
        assert!(state.len() >= 43, "a long random state: {state}");
        assert_eq!(param(&location, "code_challenge_method").as_deref(), Some("S256"));
        assert_eq!(param(&location, "code_challenge").map(|c| c.len()), Some(43));
        location
    }

    /// The fake's consent: where it sends the browser back (the callback with code and
    /// state).
    async fn consent(&self, authorize: &str) -> String {
        let (status, location, body) = get(authorize, None, &self.service).await;
        assert_eq!(status, 302, "the fake consents: {body}");
        let back = location.expect("back to the callback");
        assert!(back.starts_with(&format!("{}/oauth/callback?", self.service.base_url)), "{back}");
        back
    }

    /// The callback: status and body.
    async fn callback(&self, url: &str) -> (u16, Json) {
        let (status, _, body) = get(url, None, &self.service).await;
        (status, body)
    }

    async fn integration(&self, connector: &str) -> Json {
        self.t.api.get(&format!("/v1/integrations/{connector}"), &self.t.admin).await.expect(200).clone()
    }

    async fn runs(&self, connector: &str) -> Vec<Json> {
        let runs = self.t.api.get(&format!("/v1/integrations/{connector}/runs"), &self.t.admin).await;
        runs.expect(200)["runs"].as_array().unwrap().clone()
    }

    /// Waits for a first run that succeeds.
    async fn first_run_succeeds(&self, connector: &str) -> Json {
        eventually("a run after the authorisation", LONG, || async {
            let runs = self.runs(connector).await;
            let run = runs.first()?.clone();
            assert_ne!(run["status"], "failed", "{run}");
            (run["status"] == "succeeded").then_some(run)
        })
        .await
    }

    async fn audit_actions(&self) -> Vec<String> {
        let audit = self.t.api.get("/v1/audit?limit=1000", &self.t.admin).await.expect(200).clone();
        audit["entries"].as_array().unwrap().iter().map(|e| str_of(&e["action"])).collect()
    }
}

async fn salesforce_org() -> FakeSalesforce {
    FakeSalesforce::start(
        Dataset::generate_with(&DatasetSpec::new(1901, 3, 120, 60, 20)),
        SF_CLIENT_ID,
        SF_CLIENT_SECRET,
    )
    .await
    .expect("the fake Salesforce starts")
}

/// Enables Salesforce without a refresh token: it waits for authorisation.
async fn enable_salesforce(s: &Setup, fake: &FakeSalesforce) {
    let body = json!({
        "config": {"instance_url": fake.base_url(), "token_url": fake.token_url()},
        "secrets": {"client_id": SF_CLIENT_ID, "client_secret": SF_CLIENT_SECRET},
    });
    let enabled = s.t.api.put("/v1/integrations/salesforce", &s.t.admin, &body).await.expect(200).clone();
    assert_eq!(enabled["auth_status"], "needs_reauthorization", "waits for the connect flow: {enabled}");
}

async fn salesforce_connects_through_oauth_then_syncs(backend: Backend) {
    let Some(s) = Setup::new(backend).await else { return };
    let fake = salesforce_org().await;
    let emails: Vec<String> =
        fake.with(|crm| crm.users().iter().filter(|u| u.is_active).map(|u| u.email.clone()).collect());
    for (i, email) in emails.iter().enumerate() {
        s.t.add_user(&format!("Rep {i}"), email, "member").await;
    }
    // Without OAuth secrets first: a missing client secret is still refused.
    let partial = json!({"config": {"instance_url": fake.base_url(), "token_url": fake.token_url()},
        "secrets": {"client_id": SF_CLIENT_ID}});
    let refused = s.t.api.put("/v1/integrations/salesforce", &s.t.admin, &partial).await;
    assert_eq!(refused.expect_error(400), "missing_secret");
    enable_salesforce(&s, &fake).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(s.runs("salesforce").await.is_empty(), "no run before the authorisation");

    // Only an admin starts it.
    let (status, _, body) = get(&s.connect_url("salesforce"), Some(&s.t.member), &s.service).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")));
    let (status, _, _) = get(&s.connect_url("salesforce"), None, &s.service).await;
    assert_eq!(status, 401);
    let (status, _, body) = get(&s.connect_url("bullhorn"), Some(&s.t.admin), &s.service).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "not enabled");

    let authorize = s.start("salesforce", &fake.authorize_url()).await;
    assert_eq!(param(&authorize, "client_id").as_deref(), Some(SF_CLIENT_ID));
    let back = s.consent(&authorize).await;
    let (status, body) = s.callback(&back).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"connector": "salesforce", "status": "connected"}));
    assert_eq!(fake.authority().stats().codes_redeemed, 1);

    // Stored sealed, where a pasted token goes: the integration is authorised, syncs, and
    // the token is nowhere in clear.
    let run = s.first_run_succeeds("salesforce").await;
    assert!(run["upserts"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(s.integration("salesforce").await["auth_status"], "ok");
    let won =
        s.t.api.get("/v1/kpis?metric=deals_won&from=2000-01-01&to=2100-01-01", &s.t.manager).await.expect(200).clone();
    let total: i64 = won["rows"].as_array().unwrap().iter().map(|r| r["value"].as_i64().unwrap()).sum();
    let expected: u64 = fake.with(|crm| crm.expected_totals()).values().map(|t| t.deals_won).sum();
    assert_eq!(total as u64, expected, "every won deal, credited");
    let token = fake.authority().newest_refresh_token().expect("a refresh token was issued");
    let dump = format!("{:?}", s.db.dump().await);
    let raw = String::from_utf8_lossy(&s.db.raw_bytes()).into_owned();
    assert!(!dump.contains(&token) && !raw.contains(&token), "the refresh token is stored sealed");
    assert!(!dump.contains(param(&authorize, "state").unwrap().as_str()), "the state is stored hashed");
    let actions = s.audit_actions().await;
    assert!(actions.iter().any(|a| a == "integration.connect_started"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "integration.authorized"), "{actions:?}");

    // The same callback again: the state was used.
    let before = s.db.dump().await;
    let (status, body) = s.callback(&back).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_state")), "{body}");
    assert_eq!(s.db.dump().await, before, "a replay writes nothing");
}

async fn bullhorn_connects_through_oauth_then_syncs(backend: Backend) {
    let Some(s) = Setup::new(backend).await else { return };
    let spec = BhSpec::new(1902, 3, 80, 80).in_currency("USD").ending_at(Timestamp::now_utc());
    // The first refresh token exists at the fake only: the admin never sees it.
    let credentials = Credentials::new(BH_CLIENT_ID, BH_CLIENT_SECRET, "42:never-pasted");
    let fake = FakeBullhorn::start(BhDataset::generate_with(&spec), credentials).await.expect("the fake starts");
    let recruiters: Vec<String> = fake.with(|crm| crm.active_users().map(|u| u.email.clone()).collect());
    for (i, email) in recruiters.iter().enumerate() {
        s.t.add_user(&format!("Recruiter {i}"), email, "member").await;
    }
    let body = json!({
        "config": {"auth_url": fake.auth_url(), "login_url": fake.login_url(), "currency": "USD"},
        "secrets": {"client_id": BH_CLIENT_ID, "client_secret": BH_CLIENT_SECRET},
    });
    let enabled = s.t.api.put("/v1/integrations/bullhorn", &s.t.admin, &body).await.expect(200).clone();
    assert_eq!(enabled["auth_status"], "needs_reauthorization", "{enabled}");

    let authorize = s.start("bullhorn", &fake.authorize_url()).await;
    let back = s.consent(&authorize).await;
    let (status, body) = s.callback(&back).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("connected")), "{body}");
    let run = s.first_run_succeeds("bullhorn").await;
    assert!(run["upserts"].as_u64().unwrap() > 0, "{run}");
    let placements =
        s.t.api.get("/v1/kpis?metric=placements&from=2000-01-01&to=2100-01-01", &s.t.manager).await.expect(200).clone();
    let total: i64 = placements["rows"].as_array().unwrap().iter().map(|r| r["value"].as_i64().unwrap()).sum();
    let expected: u64 = fake.with(|crm| crm.expected_totals()).values().map(|t| t.placements).sum();
    assert_eq!(total as u64, expected);
    // A second sync refreshes with the token the exchange stored (single-use, rotated).
    let again = s.t.api.post_empty("/v1/integrations/bullhorn/sync?wait=true", &s.t.admin).await;
    assert_eq!(again.expect(200)["status"], "succeeded");
    let dump = format!("{:?}", s.db.dump().await);
    let live = fake.with(|crm| crm.current_refresh_token());
    assert!(!dump.contains(&live), "sealed");
}

async fn forged_replayed_expired_and_tampered_authorisations_store_nothing(backend: Backend) {
    let Some(s) = Setup::new(backend).await else { return };
    let fake = salesforce_org().await;
    enable_salesforce(&s, &fake).await;
    let callback = format!("{}/oauth/callback", s.service.base_url);
    let before = s.db.dump().await;
    let unchanged = |what: &'static str| {
        let before = before.clone();
        let s = &s;
        async move {
            let mut now = s.db.dump().await;
            let mut then = before;
            // Only the audit of attempts (with the tenant's audit counter) and the states
            // themselves may differ.
            for table in ["audit_log", "tenants", "oauth_states", "api_tokens"] {
                now.remove(table);
                then.remove(table);
            }
            assert_eq!(now, then, "{what}: nothing stored");
            assert_eq!(s.integration("salesforce").await["auth_status"], "needs_reauthorization", "{what}");
        }
    };

    // Forged and missing states.
    let forged = format!("{callback}?code=fake-code-0001-0000000000000000&state={}", "ab".repeat(32));
    let (status, body) = s.callback(&forged).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_state")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`state`"));
    let (status, body) = s.callback(&format!("{callback}?code=x")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_state")), "{body}");
    unchanged("forged").await;

    // A code bound to another PKCE challenge (the authorisation request was tampered
    // with): the fake refuses the host's verifier, the host says so, nothing is stored.
    let authorize = s.start("salesforce", &fake.authorize_url()).await;
    let tampered = with_param(&authorize, "code_challenge", &s256(&"z".repeat(64)));
    let back = s.consent(&tampered).await;
    let (status, body) = s.callback(&back).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("code_refused")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("verifier"), "{body}");
    assert_eq!(fake.authority().stats().pkce_failures, 1);
    unchanged("tampered").await;
    // ... and its state is spent.
    let (status, body) = s.callback(&back).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_state")), "{body}");

    // The consent refused at the CRM.
    let authorize = s.start("salesforce", &fake.authorize_url()).await;
    let state = param(&authorize, "state").unwrap();
    let (status, body) = s.callback(&format!("{callback}?error=access_denied&state={state}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("authorization_refused")), "{body}");
    unchanged("refused").await;

    // Expired: the admin took longer than the state lives.
    let authorize = s.start("salesforce", &fake.authorize_url()).await;
    let back = s.consent(&authorize).await;
    assert_eq!(s.db.scalar_i64("SELECT COUNT(*) FROM oauth_states").await, 1);
    s.db.scalar_i64("UPDATE oauth_states SET expires_at = 1 RETURNING expires_at").await;
    let (status, body) = s.callback(&back).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("state_expired")), "{body}");
    unchanged("expired").await;
    assert_eq!(s.db.scalar_i64("SELECT COUNT(*) FROM oauth_states").await, 0, "used states are gone");
    assert!(s.runs("salesforce").await.is_empty(), "no run without an authorisation");

    // After all that, the real flow works.
    let authorize = s.start("salesforce", &fake.authorize_url()).await;
    let back = s.consent(&authorize).await;
    let (status, body) = s.callback(&back).await;
    assert_eq!(status, 200, "{body}");
    s.first_run_succeeds("salesforce").await;
}
