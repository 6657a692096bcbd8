//! Credentials that take a conversation with the CRM's authorisation server: the OAuth 2.0
//! refresh-token flow (Salesforce) and Bullhorn's refresh plus REST login.
//!
//! The connector names the scheme in its descriptor and never sees a token. For each sync
//! (and roster call) the runtime builds an [`AuthSession`] from the integration's secrets
//! (`client_id`, `client_secret`, `refresh_token`) and config (the token URL; Bullhorn's
//! OAuth and login URLs), every URL checked by the same egress rules as the base URL. On
//! the first request it refreshes:
//!
//! * **OAuth 2.0** (RFC 6749 section 6): `POST <token url>` with the form
//!   `grant_type=refresh_token&refresh_token&client_id&client_secret`; requests carry
//!   `Authorization: Bearer <access_token>`.
//! * **Bullhorn**: `POST <auth url>/token?grant_type=refresh_token&…` (parameters in the
//!   query string, as Bullhorn documents), then `GET <login url>/login?version=*&
//!   access_token=…`; requests go to the answer's `restUrl` (which must pass the egress
//!   rules) with the header `BhRestToken`.
//!
//! A refresh runs under the integration's refresh lock held by a [`TokenVault`] (in the
//! database for the service, so two nodes never refresh one integration at once). The
//! refresh token is read *inside* the lock, so a refresh that waited for another uses the
//! token that one stored. A new refresh token in the answer is stored (sealed) before it is
//! used for anything else. 5xx answers, 429s and timeouts are retried with bounded backoff;
//! a 400 or 401 from the token endpoint (`invalid_grant`, `invalid_client`) is definitive:
//! the vault marks the integration as needing re-authorisation and the sync fails with
//! `needs_reauthorization`. Redirects of the token and login calls are followed only with
//! 307/308 and only to URLs that pass the egress rules (Bullhorn answers 307 from the wrong
//! data centre).
//!
//! The access grant is kept for one run (a sync and its roster call share it through the
//! vault's [`GrantCache`]) and renewed before `expires_in` says it ends, or once after a
//! 401: the request is retried once, and a second 401 reaches the connector as
//! `unauthorized`. Tokens are never logged, never returned, never put in an error: values
//! are held in sensitive header values and `Debug` prints none of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::BoxFuture;
use super::egress::{EgressPolicy, HostPattern};
use super::http::{Fetched, HttpAnswer, HttpClient, HttpFailure, jitter};

/// The secret keys the refreshing schemes read.
pub const CLIENT_ID: &str = "client_id";
/// See [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "client_secret";
/// See [`CLIENT_ID`].
pub const REFRESH_TOKEN: &str = "refresh_token";

/// Time allowed for one token or login attempt.
const AUTH_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per token or login call, retries included.
const AUTH_ATTEMPTS: u32 = 4;
/// Redirects followed per token or login call.
const AUTH_REDIRECTS: u32 = 3;
/// The largest token or login answer read.
const AUTH_MAX_BODY: usize = 64 * 1024;
/// A grant is renewed this long before it expires, at most (a tenth of its life at least).
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why a vault could not do what was asked. Carries no token and no connector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The integration is marked as needing re-authorisation; nothing is refreshed until
    /// an admin gives it new secrets.
    #[error("the integration needs re-authorisation")]
    NeedsReauthorization,
    /// The integration is disabled or gone (its secrets destroyed).
    #[error("the integration is disabled or gone")]
    Gone,
    /// Another refresh held the lock for longer than the host waits.
    #[error("another refresh of the integration held the lock too long")]
    Busy,
    /// The lock was lost (it expired and another refresh took it, or the secrets were
    /// replaced meanwhile): nothing was written.
    #[error("the refresh lock was lost")]
    LockLost,
    /// The store failed; the code is the store's.
    #[error("the credential store failed ({0})")]
    Store(String),
}

/// Where an integration's refresh token lives between syncs, and the lock that keeps two
/// refreshes of one integration apart (across nodes, for the service's database vault).
pub trait TokenVault: Send + Sync {
    /// Takes the integration's refresh lock, waiting (boundedly) while another refresh
    /// holds it, and returns it with the refresh token stored now.
    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn RefreshLock>, VaultError>>;

    /// Where the access grant is kept for the calls of one run (roster, then sync), if the
    /// vault keeps one; else each call refreshes on its own.
    fn grant_cache(&self) -> Option<&GrantCache> {
        None
    }
}

/// A held refresh lock. Dropping it without [`RefreshLock::release`] leaves the lock to
/// expire (vaults may release it in the background).
pub trait RefreshLock: Send {
    /// The refresh token as stored when the lock was taken.
    fn refresh_token(&self) -> &str;

    /// Stores a rotated refresh token (sealed) at once, keeping the lock.
    fn store_rotated<'a>(&'a mut self, token: &'a str) -> BoxFuture<'a, Result<(), VaultError>>;

    /// Records that the authorisation server refused the grant for good (the integration
    /// needs re-authorisation) and releases the lock.
    fn refuse(self: Box<Self>) -> BoxFuture<'static, Result<(), VaultError>>;

    /// Releases the lock.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What a refresh (and login) produced: the header requests carry and, for Bullhorn, where
/// they go. Opaque outside the runtime; `Debug` shows no value.
pub struct Grant {
    serial: u64,
    header: HeaderName,
    value: HeaderValue,
    renew_at: Option<Instant>,
    rest: Option<EgressPolicy>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("serial", &self.serial).field("header", &self.header).finish_non_exhaustive()
    }
}

impl Grant {
    fn fresh(&self) -> bool {
        self.renew_at.is_none_or(|at| Instant::now() < at)
    }
}

/// Keeps the access grant between the calls of one run.
#[derive(Debug, Default)]
pub struct GrantCache(std::sync::Mutex<Option<Arc<Grant>>>);

impl GrantCache {
    fn get(&self) -> Option<Arc<Grant>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn put(&self, grant: Option<Arc<Grant>>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = grant;
    }
}

/// A vault in memory: for `oneup connector check` and tests, where no database holds the
/// integration. It serialises the refreshes of the calls that share it, keeps the grant
/// between them and counts rotations (the caller tells the user that the refresh token
/// they passed is spent; the new value is never shown).
#[derive(Debug)]
pub struct MemoryVault {
    state: Arc<tokio::sync::Mutex<MemoryState>>,
    cache: GrantCache,
    rotations: Arc<AtomicU64>,
}

#[derive(Debug)]
struct MemoryState {
    refresh_token: String,
    refused: bool,
}

impl MemoryVault {
    /// A vault holding `refresh_token`.
    pub fn new(refresh_token: &str) -> Self {
        Self {
            state: Arc::new(tokio::sync::Mutex::new(MemoryState {
                refresh_token: refresh_token.to_owned(),
                refused: false,
            })),
            cache: GrantCache::default(),
            rotations: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How often the refresh token was rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::SeqCst)
    }

    /// Whether the authorisation server refused the grant for good.
    pub async fn refused(&self) -> bool {
        self.state.lock().await.refused
    }
}

struct MemoryLock {
    guard: tokio::sync::OwnedMutexGuard<MemoryState>,
    rotations: Arc<AtomicU64>,
}

impl TokenVault for MemoryVault {
    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn RefreshLock>, VaultError>> {
        Box::pin(async move {
            let guard = self.state.clone().lock_owned().await;
            if guard.refused {
                return Err(VaultError::NeedsReauthorization);
            }
            Ok(Box::new(MemoryLock { guard, rotations: self.rotations.clone() }) as Box<dyn RefreshLock>)
        })
    }

    fn grant_cache(&self) -> Option<&GrantCache> {
        Some(&self.cache)
    }
}

impl RefreshLock for MemoryLock {
    fn refresh_token(&self) -> &str {
        &self.guard.refresh_token
    }

    fn store_rotated<'a>(&'a mut self, token: &'a str) -> BoxFuture<'a, Result<(), VaultError>> {
        Box::pin(async move {
            self.guard.refresh_token = token.to_owned();
            self.rotations.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn refuse(mut self: Box<Self>) -> BoxFuture<'static, Result<(), VaultError>> {
        self.guard.refused = true;
        Box::pin(async { Ok(()) })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Why an [`AuthSession`] cannot be built from an integration's settings. Messages name
/// keys and rules, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthSetupError {
    /// A secret the scheme needs is missing or empty.
    #[error("secret `{0}` is required by the connector's auth scheme")]
    MissingSecret(&'static str),
    /// A config value the scheme needs is missing.
    #[error("config `{0}` (an auth URL) is missing")]
    MissingConfig(String),
    /// An auth URL breaks the egress rules.
    #[error("config `{key}` (an auth URL) refused: {reason}")]
    UrlRefused {
        /// The config key.
        key: String,
        /// The egress rule's message.
        reason: String,
    },
}

#[derive(Debug)]
enum Scheme {
    OAuth2 { token_url: Url },
    Bullhorn { token_url: Url, login_url: Url },
}

/// The refreshing credentials of one sync or roster call; see the module docs.
pub struct AuthSession {
    scheme: Scheme,
    client_id: String,
    client_secret: String,
    patterns: Vec<HostPattern>,
    allow_loopback_http: bool,
    vault: Arc<dyn TokenVault>,
    own_cache: GrantCache,
    refused: AtomicBool,
}

impl std::fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::OAuth2 { .. } => "oauth2-refresh",
            Scheme::Bullhorn { .. } => "bullhorn-session",
        };
        f.debug_struct("AuthSession").field("scheme", &scheme).finish_non_exhaustive()
    }
}

/// Serial numbers of grants, so a 401 renews only the grant it was answered with.
static GRANT_SERIAL: AtomicU64 = AtomicU64::new(1);

fn checked_url(
    key: &str,
    url: &str,
    patterns: &[HostPattern],
    allow_loopback_http: bool,
) -> Result<Url, AuthSetupError> {
    EgressPolicy::new(patterns, url, allow_loopback_http)
        .map(|policy| policy.base_url().clone())
        .map_err(|e| AuthSetupError::UrlRefused { key: key.to_owned(), reason: e.to_string() })
}

fn secret(secrets: &BTreeMap<String, String>, key: &'static str) -> Result<String, AuthSetupError> {
    secrets.get(key).filter(|v| !v.is_empty()).cloned().ok_or(AuthSetupError::MissingSecret(key))
}

fn config<'a>(config: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, AuthSetupError> {
    config.get(key).map(String::as_str).ok_or_else(|| AuthSetupError::MissingConfig(key.to_owned()))
}

/// `base` with `/segment` appended to its path.
fn with_segment(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{segment}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// How a token or login call ended, when it did not answer 2xx.
enum CallError {
    /// The authorisation server refused for good (400/401).
    Refused,
    /// Anything else: unreachable, 5xx after retries, a malformed answer.
    Failed(HttpFailure),
}

/// The fields of a token answer the host uses.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The fields of Bullhorn's login answer.
#[derive(serde::Deserialize)]
struct LoginAnswer {
    #[serde(rename = "BhRestToken")]
    rest_token: String,
    #[serde(rename = "restUrl")]
    rest_url: String,
}

impl AuthSession {
    /// OAuth 2.0 refresh at the URL in config `token_url_key`.
    pub fn oauth2(
        token_url_key: &str,
        config_values: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
        vault: Option<Arc<dyn TokenVault>>,
    ) -> Result<Self, AuthSetupError> {
        let token_url =
            checked_url(token_url_key, config(config_values, token_url_key)?, patterns, allow_loopback_http)?;
        Self::build(Scheme::OAuth2 { token_url }, secrets, patterns, allow_loopback_http, vault)
    }

    /// Bullhorn: refresh at `<auth url>/token`, login at `<login url>/login`.
    pub fn bullhorn(
        auth_url_key: &str,
        login_url_key: &str,
        config_values: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
        vault: Option<Arc<dyn TokenVault>>,
    ) -> Result<Self, AuthSetupError> {
        let auth = checked_url(auth_url_key, config(config_values, auth_url_key)?, patterns, allow_loopback_http)?;
        let login = checked_url(login_url_key, config(config_values, login_url_key)?, patterns, allow_loopback_http)?;
        let scheme =
            Scheme::Bullhorn { token_url: with_segment(&auth, "token"), login_url: with_segment(&login, "login") };
        Self::build(scheme, secrets, patterns, allow_loopback_http, vault)
    }

    fn build(
        scheme: Scheme,
        secrets: &BTreeMap<String, String>,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
        vault: Option<Arc<dyn TokenVault>>,
    ) -> Result<Self, AuthSetupError> {
        let client_id = secret(secrets, CLIENT_ID)?;
        let client_secret = secret(secrets, CLIENT_SECRET)?;
        let refresh_token = secret(secrets, REFRESH_TOKEN)?;
        let vault = vault.unwrap_or_else(|| Arc::new(MemoryVault::new(&refresh_token)));
        Ok(Self {
            scheme,
            client_id,
            client_secret,
            patterns: patterns.to_vec(),
            allow_loopback_http,
            vault,
            own_cache: GrantCache::default(),
            refused: AtomicBool::new(false),
        })
    }

    /// Whether the authorisation server refused the grant for good during this session
    /// (or the integration was already marked so): the sync fails with
    /// `needs_reauthorization`.
    pub fn needs_reauthorization(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    fn cache(&self) -> &GrantCache {
        self.vault.grant_cache().unwrap_or(&self.own_cache)
    }

    /// Sends a connector's GET (`url` built by `policy` from the integration's base URL)
    /// with the grant, renewing it once on a 401.
    pub(crate) async fn send(
        &self,
        http: &HttpClient,
        policy: &EgressPolicy,
        url: Url,
        headers: HeaderMap,
    ) -> Result<HttpAnswer, HttpFailure> {
        let mut stale = None;
        for attempt in 0..2 {
            let grant = self.grant(http, stale).await?;
            let (target_policy, target) = match &grant.rest {
                Some(rest) => (rest, rebase(policy, rest, &url)?),
                None => (policy, url.clone()),
            };
            let mut with_grant = headers.clone();
            with_grant.insert(grant.header.clone(), grant.value.clone());
            let answer = http.fetch(target_policy, target, &with_grant).await?;
            if answer.status != 401 {
                return Ok(answer);
            }
            if attempt == 0 {
                tracing::info!(code = "crm_unauthorized", "the CRM refused the grant; renewing it once");
            }
            stale = Some(grant.serial);
        }
        tracing::warn!(code = "unauthorized_after_renewal", "the CRM refused a freshly renewed grant");
        Err(HttpFailure::Unauthorized)
    }

    /// The grant to use: the cached one unless it is `stale` or expiring, else a new one.
    async fn grant(&self, http: &HttpClient, stale: Option<u64>) -> Result<Arc<Grant>, HttpFailure> {
        if let Some(grant) = self.cache().get()
            && Some(grant.serial) != stale
            && grant.fresh()
        {
            return Ok(grant);
        }
        if self.needs_reauthorization() {
            return Err(HttpFailure::Unauthorized);
        }
        let grant = Arc::new(self.obtain(http).await?);
        self.cache().put(Some(grant.clone()));
        Ok(grant)
    }

    /// Refreshes under the vault's lock (and logs in, for Bullhorn).
    async fn obtain(&self, http: &HttpClient) -> Result<Grant, HttpFailure> {
        let mut lock = match self.vault.acquire().await {
            Ok(lock) => lock,
            Err(VaultError::NeedsReauthorization) => {
                self.refused.store(true, Ordering::SeqCst);
                tracing::warn!(code = "needs_reauthorization", "the integration needs re-authorisation");
                return Err(HttpFailure::Unauthorized);
            }
            Err(VaultError::Gone) => return Err(HttpFailure::Unauthorized),
            Err(e) => {
                tracing::warn!(code = "refresh_lock_failed", error = %e, "could not take the refresh lock");
                return Err(HttpFailure::Unavailable);
            }
        };
        let refresh_token = lock.refresh_token().to_owned();
        let answer = match self.refresh(http, &refresh_token).await {
            Ok(answer) => answer,
            Err(CallError::Refused) => {
                self.refused.store(true, Ordering::SeqCst);
                tracing::warn!(code = "needs_reauthorization", "the token endpoint refused the grant for good");
                if let Err(e) = lock.refuse().await {
                    tracing::warn!(code = "auth_status_not_stored", error = %e, "could not record the refusal");
                }
                return Err(HttpFailure::Unauthorized);
            }
            Err(CallError::Failed(failure)) => {
                lock.release().await;
                return Err(failure);
            }
        };
        if let Some(rotated) = answer.refresh_token.as_deref().filter(|t| !t.is_empty() && *t != refresh_token) {
            // Stored before anything else uses it: a single-use token is spent the moment
            // the answer was sent, so losing the new one would lose the integration.
            if let Err(e) = lock.store_rotated(rotated).await {
                tracing::error!(code = "rotated_refresh_token_not_stored", error = %e, "could not store the rotated refresh token");
                lock.release().await;
                return Err(HttpFailure::Unavailable);
            }
            tracing::info!(code = "refresh_token_rotated", "stored the rotated refresh token");
        }
        lock.release().await;
        let renew_at = expires_in(answer.expires_in.as_ref()).map(|life| {
            let margin = EXPIRY_MARGIN.min(life / 10);
            Instant::now() + life.saturating_sub(margin)
        });
        let serial = GRANT_SERIAL.fetch_add(1, Ordering::Relaxed);
        match &self.scheme {
            Scheme::OAuth2 { .. } => Ok(Grant {
                serial,
                header: reqwest::header::AUTHORIZATION,
                value: sensitive(&format!("Bearer {}", answer.access_token))?,
                renew_at,
                rest: None,
            }),
            Scheme::Bullhorn { login_url, .. } => {
                let login = match self.login(http, login_url, &answer.access_token).await {
                    Ok(login) => login,
                    Err(CallError::Refused) => return Err(HttpFailure::Unauthorized),
                    Err(CallError::Failed(f)) => return Err(f),
                };
                let rest =
                    EgressPolicy::new(&self.patterns, &login.rest_url, self.allow_loopback_http).map_err(|e| {
                        tracing::warn!(
                            code = "rest_url_refused",
                            reason = e.code(),
                            "the login's restUrl breaks the egress rules"
                        );
                        HttpFailure::Denied
                    })?;
                Ok(Grant {
                    serial,
                    header: HeaderName::from_static("bhresttoken"),
                    value: sensitive(&login.rest_token)?,
                    renew_at,
                    rest: Some(rest),
                })
            }
        }
    }

    /// The token call.
    async fn refresh(&self, http: &HttpClient, refresh_token: &str) -> Result<TokenAnswer, CallError> {
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        let (url, body) = match &self.scheme {
            Scheme::OAuth2 { token_url } => {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
                (token_url.clone(), body.into_bytes())
            }
            Scheme::Bullhorn { token_url, .. } => {
                let mut url = token_url.clone();
                url.query_pairs_mut().extend_pairs(params);
                (url, Vec::new())
            }
        };
        let fetched = self.call(http, reqwest::Method::POST, url, &headers, body, "token").await?;
        serde_json::from_slice::<TokenAnswer>(&fetched.body).map_err(|_| {
            tracing::warn!(code = "token_answer_malformed", "the token endpoint's answer has no access token");
            CallError::Failed(HttpFailure::Unavailable)
        })
    }

    /// Bullhorn's REST login.
    async fn login(&self, http: &HttpClient, login_url: &Url, access_token: &str) -> Result<LoginAnswer, CallError> {
        let mut url = login_url.clone();
        url.query_pairs_mut().append_pair("version", "*").append_pair("access_token", access_token);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        let fetched = self.call(http, reqwest::Method::GET, url, &headers, Vec::new(), "login").await?;
        serde_json::from_slice::<LoginAnswer>(&fetched.body).map_err(|_| {
            tracing::warn!(code = "login_answer_malformed", "the login answer has no session");
            CallError::Failed(HttpFailure::Unavailable)
        })
    }

    /// One token or login call: retries 5xx, 429 and broken connections with backoff,
    /// follows 307/308 to URLs that pass the egress rules, refuses for good on 400/401.
    async fn call(
        &self,
        http: &HttpClient,
        method: reqwest::Method,
        mut url: Url,
        headers: &HeaderMap,
        body: Vec<u8>,
        what: &'static str,
    ) -> Result<Fetched, CallError> {
        let mut backoff = http.limits().base_backoff;
        let mut attempt = 0;
        let mut redirects = 0;
        loop {
            attempt += 1;
            let last = attempt >= AUTH_ATTEMPTS;
            let sent = http.transport().send_with_body(method.clone(), &url, headers, body.clone(), AUTH_MAX_BODY);
            let fetched = match tokio::time::timeout(AUTH_ATTEMPT_TIMEOUT, sent).await {
                Ok(Ok(fetched)) => fetched,
                Ok(Err(HttpFailure::TooLarge)) => return Err(CallError::Failed(HttpFailure::TooLarge)),
                Ok(Err(failure)) => {
                    tracing::debug!(code = failure.code(), call = what, attempt, "auth call failed");
                    if last {
                        return Err(CallError::Failed(failure));
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    continue;
                }
                Err(_) => {
                    tracing::debug!(code = "http_timeout", call = what, attempt, "auth call timed out");
                    if last {
                        return Err(CallError::Failed(HttpFailure::Timeout));
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    continue;
                }
            };
            let status = fetched.status;
            match status {
                200..=299 => return Ok(fetched),
                307 | 308 => {
                    let next = fetched
                        .headers
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|loc| url.join(loc).ok());
                    match next {
                        Some(next) if redirects < AUTH_REDIRECTS && self.may_follow(&next) => {
                            redirects += 1;
                            attempt -= 1;
                            url = next;
                            continue;
                        }
                        _ => {
                            tracing::warn!(
                                code = "auth_redirect_refused",
                                call = what,
                                status,
                                "redirect not followed"
                            );
                            return Err(CallError::Failed(HttpFailure::Denied));
                        }
                    }
                }
                400 | 401 => {
                    let error = serde_json::from_slice::<serde_json::Value>(&fetched.body)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(oauth_error_code));
                    tracing::warn!(
                        code = "auth_refused",
                        call = what,
                        status,
                        oauth_error = error.unwrap_or("other"),
                        "the authorisation server refused"
                    );
                    return Err(CallError::Refused);
                }
                429 | 500 | 502 | 503 | 504 => {
                    tracing::debug!(code = "auth_retry", call = what, status, attempt, "retrying an auth call");
                    if last {
                        return Err(CallError::Failed(if status == 429 {
                            HttpFailure::RateLimited
                        } else {
                            HttpFailure::Unavailable
                        }));
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                }
                _ => {
                    tracing::warn!(code = "auth_failed", call = what, status, "unexpected answer to an auth call");
                    return Err(CallError::Failed(HttpFailure::Unavailable));
                }
            }
        }
    }

    /// A redirect target of a token or login call passes the same egress rules as a base
    /// URL (its query aside) and carries no userinfo.
    fn may_follow(&self, url: &Url) -> bool {
        let mut origin = url.clone();
        origin.set_query(None);
        origin.set_fragment(None);
        EgressPolicy::new(&self.patterns, origin.as_str(), self.allow_loopback_http).is_ok()
    }
}

/// OAuth's error codes are a closed vocabulary (RFC 6749 section 5.2); anything else is
/// logged as `other`, since the text comes from outside.
fn oauth_error_code(code: &str) -> &'static str {
    const KNOWN: [&str; 6] = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ];
    KNOWN.iter().find(|k| **k == code).copied().unwrap_or("other")
}

/// `expires_in` as a duration: a number of seconds, or a string of one.
fn expires_in(value: Option<&serde_json::Value>) -> Option<Duration> {
    let secs = match value? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn sensitive(value: &str) -> Result<HeaderValue, HttpFailure> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        tracing::warn!(code = "token_not_sendable", "a token cannot be sent in an HTTP header");
        HttpFailure::Unavailable
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Moves a URL built on the login base URL onto Bullhorn's `restUrl`: the same request
/// path and query, checked again by the REST policy.
fn rebase(from: &EgressPolicy, onto: &EgressPolicy, url: &Url) -> Result<Url, HttpFailure> {
    let prefix = from.base_url().path().trim_end_matches('/');
    let path = url.path().strip_prefix(prefix).filter(|p| p.starts_with('/')).ok_or(HttpFailure::Denied)?;
    let query: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    onto.build_url(path, &query).map_err(|_| HttpFailure::Denied)
}

/// Why exchanging an authorisation code failed. Carries no token, code or verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The token endpoint refused (400/401: an unknown, used or expired code, another
    /// redirect URI, a PKCE verifier that does not match, wrong client credentials).
    #[error("the CRM's token endpoint refused the authorisation code")]
    Refused,
    /// The answer carried no refresh token (the connected app lacks the offline scope).
    #[error("the CRM's token endpoint answered without a refresh token")]
    NoRefreshToken,
    /// The token endpoint did not answer usefully (unreachable, 5xx after retries, a
    /// malformed answer); the code is the HTTP failure's.
    #[error("the CRM's token endpoint did not answer ({0})")]
    Unavailable(&'static str),
}

/// The OAuth 2.0 authorisation-code grant with PKCE (RFC 6749 section 4.1, RFC 7636) for a
/// connector whose scheme refreshes tokens: where an admin is sent to consent, and the
/// exchange of the code the CRM sends back for the refresh token the scheme then uses.
///
/// The authorisation endpoint is the token endpoint's sibling: `…/authorize` beside
/// `…/token` (Salesforce's `/services/oauth2/authorize`, Bullhorn's `{oauthUrl}/authorize`),
/// both checked by the integration's egress rules. The exchange is a POST like the refresh
/// (form body for OAuth 2.0, query string for Bullhorn) with `grant_type=authorization_code`,
/// the `code`, the `redirect_uri` and the `code_verifier`.
pub struct CodeGrant {
    session: AuthSession,
    authorize: Url,
}

impl std::fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGrant").field("authorize", &self.authorize.as_str()).finish_non_exhaustive()
    }
}

impl CodeGrant {
    /// The grant of an OAuth 2.0 connector: the token URL in config `token_url_key`, which
    /// must end in `/token`.
    pub fn oauth2(
        token_url_key: &str,
        config_values: &BTreeMap<String, String>,
        client_id: &str,
        client_secret: &str,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
    ) -> Result<Self, AuthSetupError> {
        let token_url =
            checked_url(token_url_key, config(config_values, token_url_key)?, patterns, allow_loopback_http)?;
        let Some(base) = token_url.path().strip_suffix("/token") else {
            return Err(AuthSetupError::UrlRefused {
                key: token_url_key.to_owned(),
                reason: "it does not end in /token, so the authorisation endpoint beside it is unknown".to_owned(),
            });
        };
        let mut authorize = token_url.clone();
        authorize.set_path(&format!("{base}/authorize"));
        authorize.set_query(None);
        let scheme = Scheme::OAuth2 { token_url };
        Ok(Self::build(scheme, authorize, client_id, client_secret, patterns, allow_loopback_http))
    }

    /// Bullhorn's grant: `<auth url>/authorize` and `<auth url>/token`.
    pub fn bullhorn(
        auth_url_key: &str,
        config_values: &BTreeMap<String, String>,
        client_id: &str,
        client_secret: &str,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
    ) -> Result<Self, AuthSetupError> {
        let auth = checked_url(auth_url_key, config(config_values, auth_url_key)?, patterns, allow_loopback_http)?;
        let scheme = Scheme::Bullhorn { token_url: with_segment(&auth, "token"), login_url: auth.clone() };
        Ok(Self::build(
            scheme,
            with_segment(&auth, "authorize"),
            client_id,
            client_secret,
            patterns,
            allow_loopback_http,
        ))
    }

    fn build(
        scheme: Scheme,
        authorize: Url,
        client_id: &str,
        client_secret: &str,
        patterns: &[HostPattern],
        allow_loopback_http: bool,
    ) -> Self {
        let session = AuthSession {
            scheme,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            patterns: patterns.to_vec(),
            allow_loopback_http,
            vault: Arc::new(MemoryVault::new("")),
            own_cache: GrantCache::default(),
            refused: AtomicBool::new(false),
        };
        Self { session, authorize }
    }

    /// Where to send the admin: the authorisation endpoint with `response_type=code`, the
    /// client id, `redirect_uri`, `state` and the S256 `code_challenge`.
    pub fn authorize_url(&self, redirect_uri: &str, state: &str, code_challenge: &str) -> Url {
        let mut url = self.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.session.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges `code` (with the PKCE `verifier` and the same `redirect_uri`) for the
    /// refresh token.
    pub async fn exchange(
        &self,
        http: &HttpClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, ExchangeError> {
        let s = &self.session;
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", s.client_id.as_str()),
            ("client_secret", s.client_secret.as_str()),
        ];
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));
        let (url, body) = match &s.scheme {
            Scheme::OAuth2 { token_url } => {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
                (token_url.clone(), body.into_bytes())
            }
            Scheme::Bullhorn { token_url, .. } => {
                let mut url = token_url.clone();
                url.query_pairs_mut().extend_pairs(params);
                (url, Vec::new())
            }
        };
        let fetched = match s.call(http, reqwest::Method::POST, url, &headers, body, "code exchange").await {
            Ok(fetched) => fetched,
            Err(CallError::Refused) => return Err(ExchangeError::Refused),
            Err(CallError::Failed(failure)) => return Err(ExchangeError::Unavailable(failure.code())),
        };
        let answer = serde_json::from_slice::<TokenAnswer>(&fetched.body).map_err(|_| {
            tracing::warn!(code = "token_answer_malformed", "the token endpoint's answer has no access token");
            ExchangeError::Unavailable("token_answer_malformed")
        })?;
        answer.refresh_token.filter(|t| !t.is_empty()).ok_or(ExchangeError::NoRefreshToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_reads_numbers_and_strings() {
        assert_eq!(expires_in(Some(&serde_json::json!(600))), Some(Duration::from_secs(600)));
        assert_eq!(expires_in(Some(&serde_json::json!("3600"))), Some(Duration::from_secs(3600)));
        assert_eq!(expires_in(Some(&serde_json::json!(0))), None);
        assert_eq!(expires_in(Some(&serde_json::json!(-5))), None);
        assert_eq!(expires_in(None), None);
    }

    #[test]
    fn urls_move_onto_the_rest_url() {
        let patterns = [HostPattern::parse("*.bullhornstaffing.com").unwrap()];
        let login = EgressPolicy::new(&patterns, "https://rest.bullhornstaffing.com/rest-services", false).unwrap();
        let rest =
            EgressPolicy::new(&patterns, "https://rest42.bullhornstaffing.com/rest-services/7xq9zc/", false).unwrap();
        let url = login.build_url("/search/Placement", &[("query".into(), "id:[1 TO 5]".into())]).unwrap();
        let moved = rebase(&login, &rest, &url).unwrap();
        assert_eq!(moved.host_str(), Some("rest42.bullhornstaffing.com"));
        assert_eq!(moved.path(), "/rest-services/7xq9zc/search/Placement");
        assert_eq!(moved.query_pairs().next().unwrap().1, "id:[1 TO 5]");
    }

    #[test]
    fn auth_urls_pass_the_egress_rules() {
        let patterns =
            [HostPattern::parse("*.salesforce.com").unwrap(), HostPattern::parse("login.salesforce.com").unwrap()];
        let mut config = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for key in [CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN] {
            secrets.insert(key.to_owned(), format!("{key}-value"));
        }
        config.insert("token_url".to_owned(), "https://login.salesforce.com/services/oauth2/token".to_owned());
        let session = AuthSession::oauth2("token_url", &config, &secrets, &patterns, false, None).unwrap();
        assert!(!format!("{session:?}").contains("value"));

        config.insert("token_url".to_owned(), "https://evil.example.com/token".to_owned());
        let refused = AuthSession::oauth2("token_url", &config, &secrets, &patterns, false, None).unwrap_err();
        assert!(matches!(refused, AuthSetupError::UrlRefused { .. }));
        assert!(!refused.to_string().contains("evil"));
        config.insert("token_url".to_owned(), "http://127.0.0.1:9/token".to_owned());
        assert!(AuthSession::oauth2("token_url", &config, &secrets, &patterns, false, None).is_err());
        assert!(AuthSession::oauth2("token_url", &config, &secrets, &patterns, true, None).is_ok());

        secrets.remove(REFRESH_TOKEN);
        assert_eq!(
            AuthSession::oauth2("token_url", &config, &secrets, &patterns, true, None).unwrap_err(),
            AuthSetupError::MissingSecret(REFRESH_TOKEN)
        );
    }
}
