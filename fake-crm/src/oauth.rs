//! A fake OAuth 2.0 authorisation server: the refresh-token grant (RFC 6749 section 6) the
//! way Salesforce and Bullhorn answer it, for the fake CRMs and the host's credential tests,
//! and the authorization-code grant with PKCE S256 (RFC 7636) for the connect flow: an
//! authorisation endpoint beside the token endpoint (`…/authorize` next to `…/token`) that
//! consents at once and redirects back with a single-use code, which the token endpoint
//! exchanges only with the matching `code_verifier` ([`OAuthStats::pkce_failures`] counts
//! the refusals).
//!
//! Two parts, like every fake here:
//! - [`TokenAuthority`]: the state with no IO — the client, the refresh tokens it issued
//!   (live, spent or revoked), the access tokens with their expiry, counters and injected
//!   faults. It is a cheap handle (`Clone` shares it), so a fake CRM keeps one to check the
//!   bearer tokens it is sent ([`TokenAuthority::bearer_token_valid`]) or to exchange an
//!   access token for a session (Bullhorn's login, [`TokenAuthority::access_token_valid`]),
//!   while the token endpoint refreshes through another.
//! - [`FakeTokenServer`]: serves the token endpoint on loopback. It reads request bodies
//!   (a form-encoded refresh), which [`crate::FakeServer`] does not hand to its responders.
//!   [`FakeRedirect`] answers every request with a `307` to another server, as Bullhorn
//!   does for the wrong data centre.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use oneup_fake_crm::oauth::{FakeTokenServer, OAuthSettings, Rotation, TokenAuthority};
//!
//! let authority = TokenAuthority::new(OAuthSettings::bullhorn("client-id", "client-secret"));
//! let refresh_token = authority.issue_refresh_token(); // what the admin pastes after consent
//! let server = FakeTokenServer::start(authority.clone(), "/oauth/token").await?;
//! let token_url = server.url(); // http://127.0.0.1:PORT/oauth/token
//! // … the host refreshes; the fake CRM checks `authority.access_token_valid(token)` …
//! assert_eq!(authority.stats().spent_token_uses, 0);
//! # Ok(()) }
//! ```
//!
//! Tokens are printable ASCII (`fake-at-0001-…`, `fake-rt-0002-…`) made from a counter and
//! a seed, distinct per authority, and never logged by the server.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::http::{Query, Response};
use crate::rng::Rng;

/// What a refresh does to the refresh token it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The refresh token stays valid and the answer carries none (Salesforce's default).
    Keep,
    /// Every answer carries a new refresh token; the old one stays valid too.
    Rotate,
    /// Every answer carries a new refresh token and the one used is spent: presenting it
    /// again is refused with `invalid_grant` and counted in
    /// [`OAuthStats::spent_token_uses`] (Bullhorn).
    SingleUse,
}

/// Where the token endpoint reads its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamStyle {
    /// An `application/x-www-form-urlencoded` body, as RFC 6749 says (Salesforce).
    FormBody,
    /// The query string of the POST, as Bullhorn documents it.
    QueryString,
}

/// How a [`TokenAuthority`] behaves.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    /// The only client id accepted.
    pub client_id: String,
    /// The only client secret accepted.
    pub client_secret: String,
    /// How long access tokens live. `None`: answers carry no `expires_in` and tokens live
    /// until [`TokenAuthority::expire_access_tokens`] (Salesforce, where expiry follows the
    /// org's session timeout and shows only as a 401).
    pub access_ttl: Option<Duration>,
    /// What a refresh does to the refresh token.
    pub rotation: Rotation,
    /// Where the parameters are read.
    pub params: ParamStyle,
    /// Whether answers carry Salesforce's `issued_at` (epoch milliseconds, as a string).
    pub issued_at: bool,
    /// Extra fields copied into every successful answer (`instance_url`, `scope`, …).
    pub extra_fields: Map<String, Value>,
    /// Mixed into the tokens (each authority of a process also mixes in its own serial
    /// number, so two authorities never issue the same token).
    pub seed: u64,
}

impl OAuthSettings {
    /// Salesforce's token endpoint: form body, no `expires_in`, the refresh token kept,
    /// `issued_at`, `scope`, `signature` and `token_type` in the answer. Add `instance_url`
    /// and `id` with [`OAuthSettings::with_extra_field`].
    pub fn salesforce(client_id: &str, client_secret: &str) -> Self {
        let mut extra = Map::new();
        extra.insert("scope".into(), json!("refresh_token api"));
        extra.insert("signature".into(), json!("ZmFrZS1zaWduYXR1cmUtb2YtdGhlLWZha2UtdG9rZW4tc2VydmVy"));
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            access_ttl: None,
            rotation: Rotation::Keep,
            params: ParamStyle::FormBody,
            issued_at: true,
            extra_fields: extra,
            seed: 1,
        }
    }

    /// Bullhorn's token endpoint: parameters in the query string, access tokens valid for
    /// 600 seconds (`expires_in`), single-use refresh tokens.
    pub fn bullhorn(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            access_ttl: Some(Duration::from_secs(600)),
            rotation: Rotation::SingleUse,
            params: ParamStyle::QueryString,
            issued_at: false,
            extra_fields: Map::new(),
            seed: 2,
        }
    }

    /// With another access-token lifetime (`None`: no `expires_in`).
    pub fn with_access_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// With another rotation policy.
    pub fn with_rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// With another parameter style.
    pub fn with_params(mut self, params: ParamStyle) -> Self {
        self.params = params;
        self
    }

    /// With one more field in every successful answer.
    pub fn with_extra_field(mut self, key: &str, value: Value) -> Self {
        self.extra_fields.insert(key.to_owned(), value);
        self
    }

    /// With another seed for the tokens.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A fault injected into the next calls of the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFault {
    /// Answer with this status and `{"error":"server_error"}` (a 503, say).
    Status(u16),
    /// Refuse with `400 {"error":"invalid_grant"}` whatever the token.
    InvalidGrant,
    /// Wait this long before answering normally ([`FakeTokenServer`] only).
    Delay(Duration),
}

/// What the token endpoint saw, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OAuthStats {
    /// Calls of the token endpoint, whatever their outcome.
    pub refresh_calls: u64,
    /// Refreshes that issued an access token.
    pub granted: u64,
    /// Calls refused with a 4xx (bad client, bad or spent grant, forced refusal).
    pub refused: u64,
    /// Calls that presented a refresh token already spent by an earlier refresh (only
    /// [`Rotation::SingleUse`]); a host that serialises its refreshes keeps this at 0.
    pub spent_token_uses: u64,
    /// Calls answered by an injected [`TokenFault::Status`].
    pub faults: u64,
    /// The most token calls [`FakeTokenServer`] had in flight at once.
    pub max_in_flight: u64,
    /// Authorisation codes issued by the authorisation endpoint.
    pub codes_issued: u64,
    /// Authorisation codes exchanged for tokens.
    pub codes_redeemed: u64,
    /// Code exchanges refused because the PKCE `code_verifier` did not match the challenge.
    pub pkce_failures: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshState {
    Live,
    Spent,
    Revoked,
}

struct Inner {
    settings: OAuthSettings,
    rng: Rng,
    serial: u64,
    refresh: HashMap<String, RefreshState>,
    newest_refresh: Option<String>,
    /// Access token → when it expires (`None`: never by itself).
    access: HashMap<String, Option<Instant>>,
    refuse_all: bool,
    faults: VecDeque<TokenFault>,
    latency: Duration,
    stats: OAuthStats,
    in_flight: u64,
    codes: CodeBook,
}

impl Inner {
    fn token(&mut self, kind: &str) -> String {
        self.serial += 1;
        format!("{kind}-{:04}-{:016x}{:08x}", self.serial, self.rng.next_u64(), self.rng.next_u64() as u32)
    }

    fn new_refresh_token(&mut self) -> String {
        let token = self.token("fake-rt");
        self.refresh.insert(token.clone(), RefreshState::Live);
        self.newest_refresh = Some(token.clone());
        token
    }

    fn new_access_token(&mut self) -> String {
        let token = self.token("fake-at");
        let expires = self.settings.access_ttl.map(|ttl| Instant::now() + ttl);
        self.access.insert(token.clone(), expires);
        token
    }
}

/// The state of a fake authorisation server; see the module docs. `Clone` shares it.
#[derive(Clone)]
pub struct TokenAuthority {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

fn error(status: u16, code: &str, description: &str) -> Response {
    Response::json(status, json!({"error": code, "error_description": description}).to_string().into_bytes())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

impl TokenAuthority {
    /// A new authority with no tokens issued yet.
    pub fn new(settings: OAuthSettings) -> Self {
        static AUTHORITIES: AtomicU64 = AtomicU64::new(0);
        let serial = AUTHORITIES.fetch_add(1, Ordering::Relaxed);
        let rng = Rng::new(settings.seed ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let inner = Inner {
            settings,
            rng,
            serial: 0,
            refresh: HashMap::new(),
            newest_refresh: None,
            access: HashMap::new(),
            refuse_all: false,
            faults: VecDeque::new(),
            latency: Duration::ZERO,
            stats: OAuthStats::default(),
            in_flight: 0,
            codes: CodeBook::default(),
        };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in force.
    pub fn settings(&self) -> OAuthSettings {
        self.lock().settings.clone()
    }

    /// Issues a new live refresh token, as the authorisation-code flow would after the
    /// admin's consent. Earlier tokens stay as they are.
    pub fn issue_refresh_token(&self) -> String {
        self.lock().new_refresh_token()
    }

    /// Issues an access token directly (for tests of a fake CRM without a refresh).
    pub fn issue_access_token(&self) -> String {
        self.lock().new_access_token()
    }

    /// The refresh token issued last (by [`TokenAuthority::issue_refresh_token`] or a
    /// rotation), whatever its state now.
    pub fn newest_refresh_token(&self) -> Option<String> {
        self.lock().newest_refresh.clone()
    }

    /// Whether `token` is a refresh token this authority would accept now.
    pub fn refresh_token_live(&self, token: &str) -> bool {
        self.lock().refresh.get(token) == Some(&RefreshState::Live)
    }

    /// Whether `token` is an access token issued here, not expired.
    pub fn access_token_valid(&self, token: &str) -> bool {
        match self.lock().access.get(token) {
            Some(None) => true,
            Some(Some(expires)) => Instant::now() < *expires,
            None => false,
        }
    }

    /// Whether the headers carry `Authorization: Bearer <a valid access token>` (header
    /// name and scheme matched case-insensitively).
    pub fn bearer_token_valid(&self, headers: &[(&str, &str)]) -> bool {
        headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .filter_map(|(_, value)| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .any(|token| self.access_token_valid(token))
    }

    /// Expires every access token issued so far: the next request with one gets a 401.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for expires in self.lock().access.values_mut() {
            *expires = Some(now);
        }
    }

    /// Revokes every refresh token issued so far: refreshing with one is refused with
    /// `invalid_grant` (the user revoked the app, or the admin reset the connection).
    pub fn revoke_refresh_tokens(&self) {
        for state in self.lock().refresh.values_mut() {
            *state = RefreshState::Revoked;
        }
    }

    /// While set, every refresh is refused with `invalid_grant`.
    pub fn refuse_grants(&self, refuse: bool) {
        self.lock().refuse_all = refuse;
    }

    /// The next `n` calls of the token endpoint meet `fault` (after any queued before).
    pub fn fail_next(&self, n: usize, fault: TokenFault) {
        self.lock().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Every answer of [`FakeTokenServer`] waits this long first, so that two refreshes
    /// racing each other overlap for real.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// The counters so far.
    pub fn stats(&self) -> OAuthStats {
        self.lock().stats
    }

    /// The token endpoint, with no IO: `method` and the raw `query` (no `?`), the request
    /// headers and the body. Answers like the real endpoints: `200` with `access_token`,
    /// `token_type`, `expires_in` (when access tokens expire), a new `refresh_token` (when
    /// rotating) and the extra fields; `400 invalid_grant` for an unknown, spent or revoked
    /// refresh token, `400 invalid_client` for a wrong client, `400
    /// unsupported_grant_type`, `405` for another method. Parameters come from where
    /// [`OAuthSettings::params`] says; a form body needs its content type.
    pub fn respond_token(&self, method: &str, query: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut inner = self.lock();
        inner.stats.refresh_calls += 1;
        let fault = inner.faults.front().copied();
        match fault {
            Some(TokenFault::Status(status)) => {
                inner.faults.pop_front();
                inner.stats.faults += 1;
                return error(status, "server_error", "the fake token server was told to fail");
            }
            Some(TokenFault::InvalidGrant) => {
                inner.faults.pop_front();
                inner.stats.refused += 1;
                return error(400, "invalid_grant", "expired access/refresh token");
            }
            // Delays are taken by the server before it calls here.
            Some(TokenFault::Delay(_)) => {
                inner.faults.pop_front();
            }
            None => {}
        }
        if !method.eq_ignore_ascii_case("POST") {
            inner.stats.refused += 1;
            let mut answer = error(405, "invalid_request", "the token endpoint takes POST");
            answer.headers.push(("allow", "POST".to_owned()));
            return answer;
        }
        let body_text = String::from_utf8_lossy(body);
        let params = match inner.settings.params {
            ParamStyle::QueryString => Query::parse(query),
            ParamStyle::FormBody => {
                let form = headers.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case("content-type")
                        && value.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
                });
                if !form {
                    inner.stats.refused += 1;
                    return error(400, "invalid_request", "the body must be application/x-www-form-urlencoded");
                }
                Query::parse(&body_text)
            }
        };
        let by_code = params.get("grant_type") == Some("authorization_code");
        if params.get("grant_type") != Some("refresh_token") && !by_code {
            inner.stats.refused += 1;
            return error(400, "unsupported_grant_type", "grant type not supported");
        }
        if params.get("client_id") != Some(inner.settings.client_id.as_str())
            || params.get("client_secret") != Some(inner.settings.client_secret.as_str())
        {
            inner.stats.refused += 1;
            return error(400, "invalid_client", "invalid client credentials");
        }
        if by_code {
            return match inner.codes.redeem(&params) {
                Ok(()) => {
                    inner.stats.codes_redeemed += 1;
                    inner.stats.granted += 1;
                    let refresh_token = inner.new_refresh_token();
                    let access_token = inner.new_access_token();
                    let mut answer = Map::new();
                    answer.insert("access_token".into(), json!(access_token));
                    answer.insert("refresh_token".into(), json!(refresh_token));
                    answer.insert("token_type".into(), json!("Bearer"));
                    if let Some(ttl) = inner.settings.access_ttl {
                        answer.insert("expires_in".into(), json!(ttl.as_secs()));
                    }
                    if inner.settings.issued_at {
                        answer.insert("issued_at".into(), json!(now_ms().to_string()));
                    }
                    for (key, value) in &inner.settings.extra_fields {
                        answer.entry(key.clone()).or_insert_with(|| value.clone());
                    }
                    Response::json(200, Value::Object(answer).to_string().into_bytes())
                }
                Err(refusal) => {
                    inner.stats.refused += 1;
                    if refusal == CodeRefusal::Verifier {
                        inner.stats.pkce_failures += 1;
                    }
                    error(400, "invalid_grant", refusal.description())
                }
            };
        }
        let presented = params.get("refresh_token").unwrap_or("").to_owned();
        let state = inner.refresh.get(&presented).copied();
        if state == Some(RefreshState::Spent) {
            inner.stats.spent_token_uses += 1;
        }
        if state != Some(RefreshState::Live) || inner.refuse_all {
            inner.stats.refused += 1;
            return error(400, "invalid_grant", "expired access/refresh token");
        }

        let access_token = inner.new_access_token();
        let mut answer = Map::new();
        answer.insert("access_token".into(), json!(access_token));
        answer.insert("token_type".into(), json!("Bearer"));
        if let Some(ttl) = inner.settings.access_ttl {
            answer.insert("expires_in".into(), json!(ttl.as_secs()));
        }
        match inner.settings.rotation {
            Rotation::Keep => {}
            Rotation::Rotate => {
                answer.insert("refresh_token".into(), json!(inner.new_refresh_token()));
            }
            Rotation::SingleUse => {
                inner.refresh.insert(presented, RefreshState::Spent);
                answer.insert("refresh_token".into(), json!(inner.new_refresh_token()));
            }
        }
        if inner.settings.issued_at {
            answer.insert("issued_at".into(), json!(now_ms().to_string()));
        }
        for (key, value) in &inner.settings.extra_fields {
            answer.entry(key.clone()).or_insert_with(|| value.clone());
        }
        inner.stats.granted += 1;
        Response::json(200, Value::Object(answer).to_string().into_bytes())
    }

    /// The authorisation endpoint (`GET …/authorize`), with no IO: the admin consents at
    /// once and is sent back. See [`CodeBook::authorize`].
    pub fn respond_authorize(&self, method: &str, query: &str) -> Response {
        let mut inner = self.lock();
        if !method.eq_ignore_ascii_case("GET") {
            return error(405, "invalid_request", "the authorisation endpoint takes GET");
        }
        let client_id = inner.settings.client_id.clone();
        let answer = inner.codes.authorize(&client_id, &Query::parse(query));
        if answer.status == 302 {
            inner.stats.codes_issued += 1;
        }
        answer
    }

    /// Counts a call in flight and returns the delay to wait before answering it.
    fn begin_call(&self) -> Duration {
        let mut inner = self.lock();
        inner.in_flight += 1;
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(inner.in_flight);
        let delay = match inner.faults.front() {
            Some(TokenFault::Delay(d)) => *d,
            _ => Duration::ZERO,
        };
        inner.latency + delay
    }

    fn end_call(&self) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
    }
}

/// How long an authorisation code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(600);

/// Why a code exchange was refused (each answers `400 invalid_grant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodeRefusal {
    /// No such code, or one used or expired.
    UnknownCode,
    /// Another `redirect_uri` than the authorisation request's.
    RedirectUri,
    /// The `code_verifier` is missing or does not hash to the `code_challenge`.
    Verifier,
}

impl CodeRefusal {
    pub(crate) fn description(self) -> &'static str {
        match self {
            CodeRefusal::UnknownCode => "invalid authorization code",
            CodeRefusal::RedirectUri => "redirect_uri mismatch",
            CodeRefusal::Verifier => "invalid code verifier",
        }
    }
}

#[derive(Debug)]
struct PendingCode {
    redirect_uri: String,
    challenge: String,
    issued: Instant,
}

/// The authorisation codes of the authorization-code grant with PKCE (RFC 6749 section
/// 4.1, RFC 7636 with S256 only), as the fakes issue and check them. Codes are single-use:
/// the first exchange spends one whatever its outcome.
#[derive(Debug, Default)]
pub(crate) struct CodeBook {
    codes: HashMap<String, PendingCode>,
    serial: u64,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `pairs` appended to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = url.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        out.push(sep);
        out.push_str(&format!("{k}={}", percent_encode(v)));
        sep = '&';
    }
    out
}

fn redirect(location: String) -> Response {
    let mut answer = Response::json(302, Vec::new());
    answer.headers.push(("location", location));
    answer
}

impl CodeBook {
    /// `GET …/authorize?response_type=code&client_id&redirect_uri&state&code_challenge&
    /// code_challenge_method=S256`: the admin consents at once; `302` back to `redirect_uri`
    /// with `code` and `state`. A wrong client or a missing `redirect_uri` is a `400` (the
    /// redirect URI is not to be trusted then); a request without PKCE S256 or of another
    /// response type goes back with `error=invalid_request` / `unsupported_response_type`.
    pub(crate) fn authorize(&mut self, client_id: &str, q: &Query<'_>) -> Response {
        if q.get("client_id") != Some(client_id) {
            return error(400, "invalid_client", "unknown client");
        }
        let Some(redirect_uri) = q.get("redirect_uri").filter(|r| r.starts_with("http")) else {
            return error(400, "invalid_request", "redirect_uri is missing");
        };
        let state = q.get("state").unwrap_or("");
        if q.get("response_type") != Some("code") {
            return redirect(with_query(redirect_uri, &[("error", "unsupported_response_type"), ("state", state)]));
        }
        let challenge = q.get("code_challenge").unwrap_or("");
        if q.get("code_challenge_method") != Some("S256") || challenge.len() != 43 {
            return redirect(with_query(redirect_uri, &[("error", "invalid_request"), ("state", state)]));
        }
        self.serial += 1;
        let code = format!("fake-code-{:04}-{:016x}", self.serial, Rng::new(self.serial ^ 0xC0DE).next_u64());
        self.codes.insert(
            code.clone(),
            PendingCode {
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                issued: Instant::now(),
            },
        );
        redirect(with_query(redirect_uri, &[("code", &code), ("state", state)]))
    }

    /// Checks and spends the `code` of a token request: known, unused, not expired, the same
    /// `redirect_uri`, and `BASE64URL(SHA-256(code_verifier))` equal to the challenge.
    pub(crate) fn redeem(&mut self, params: &Query<'_>) -> Result<(), CodeRefusal> {
        let code = params.get("code").unwrap_or("");
        let pending = self.codes.remove(code).ok_or(CodeRefusal::UnknownCode)?;
        if pending.issued.elapsed() > CODE_TTL {
            return Err(CodeRefusal::UnknownCode);
        }
        if params.get("redirect_uri") != Some(pending.redirect_uri.as_str()) {
            return Err(CodeRefusal::RedirectUri);
        }
        let verifier = params.get("code_verifier").unwrap_or("");
        if verifier.len() < 43 || s256(verifier) != pending.challenge {
            return Err(CodeRefusal::Verifier);
        }
        Ok(())
    }
}

/// PKCE's S256: unpadded URL-safe base64 of the SHA-256 of the verifier.
pub(crate) fn s256(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::base64::encode(&Sha256::digest(verifier.as_bytes()))
}

/// The largest request body the token server reads.
const MAX_BODY: usize = 64 * 1024;

/// A running fake token endpoint on loopback. Dropping it stops the server.
pub struct FakeTokenServer {
    addr: SocketAddr,
    path: String,
    authority: TokenAuthority,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for FakeTokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTokenServer").field("addr", &self.addr).field("path", &self.path).finish()
    }
}

struct TokenRoute {
    path: String,
    authority: TokenAuthority,
}

impl FakeTokenServer {
    /// Serves `authority`'s token endpoint at `path` (`/services/oauth2/token`,
    /// `/oauth/token`) on `127.0.0.1` on a free port; other paths answer 404. Needs a Tokio
    /// runtime.
    pub async fn start(authority: TokenAuthority, path: &str) -> anyhow::Result<Self> {
        let route = Arc::new(TokenRoute { path: path.to_owned(), authority: authority.clone() });
        let router = Router::new().fallback(token_handler).with_state(route);
        let (addr, stop) = serve(router).await?;
        Ok(Self { addr, path: path.to_owned(), authority, _stop: stop })
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint's full URL: the base URL and the path.
    pub fn url(&self) -> String {
        format!("{}{}", self.base_url(), self.path)
    }

    /// The authority behind it (shared).
    pub fn authority(&self) -> &TokenAuthority {
        &self.authority
    }
}

async fn serve(router: Router) -> anyhow::Result<(SocketAddr, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("failed to bind a loopback port")?;
    let addr = listener.local_addr().context("failed to read the port")?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::warn!(%error, "fake token server failed");
        }
    });
    Ok((addr, stop))
}

fn to_axum(answer: Response) -> axum::response::Response {
    let mut response = axum::response::Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn token_handler(State(route): State<Arc<TokenRoute>>, request: Request) -> axum::response::Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    if route.path.strip_suffix("/token").is_some_and(|base| path == format!("{base}/authorize")) {
        return to_axum(route.authority.respond_authorize(&method, &query));
    }
    if path != route.path {
        return to_axum(error(404, "not_found", "no such endpoint"));
    }
    let Ok(body) = to_bytes(request.into_body(), MAX_BODY).await else {
        return to_axum(error(413, "invalid_request", "body too large"));
    };
    let delay = route.authority.begin_call();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let answer = route.authority.respond_token(&method, &query, &borrowed, &body);
    route.authority.end_call();
    tracing::debug!(%method, %path, status = answer.status, "fake token request");
    to_axum(answer)
}

/// A loopback server that answers every request with `307 Temporary Redirect` to the same
/// path and query on another base URL (Bullhorn's answer from the wrong data centre).
pub struct FakeRedirect {
    addr: SocketAddr,
    hits: Arc<Mutex<u64>>,
    _stop: oneshot::Sender<()>,
}

struct RedirectRoute {
    target: String,
    status: u16,
    hits: Arc<Mutex<u64>>,
}

impl FakeRedirect {
    /// Redirects to `target_base_url` (`http://127.0.0.1:PORT`, no trailing slash) with a
    /// 307.
    pub async fn start(target_base_url: &str) -> anyhow::Result<Self> {
        Self::start_with_status(target_base_url, 307).await
    }

    /// Redirects with another status (308, or 302 for a test that must not follow it).
    pub async fn start_with_status(target_base_url: &str, status: u16) -> anyhow::Result<Self> {
        let hits = Arc::new(Mutex::new(0));
        let route = Arc::new(RedirectRoute {
            target: target_base_url.trim_end_matches('/').to_owned(),
            status,
            hits: hits.clone(),
        });
        let router = Router::new().fallback(redirect_handler).with_state(route);
        let (addr, stop) = serve(router).await?;
        Ok(Self { addr, hits, _stop: stop })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests redirected so far.
    pub fn hits(&self) -> u64 {
        *self.hits.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn redirect_handler(State(route): State<Arc<RedirectRoute>>, request: Request) -> axum::response::Response {
    *route.hits.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    let location = match request.uri().query() {
        Some(q) => format!("{}{}?{q}", route.target, request.uri().path()),
        None => format!("{}{}", route.target, request.uri().path()),
    };
    let mut answer = Response::json(route.status, b"{}".to_vec());
    answer.headers.push(("location", location));
    to_axum(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&").into_bytes()
    }

    const FORM: &[(&str, &str)] = &[("content-type", "application/x-www-form-urlencoded")];

    #[test]
    fn salesforce_refresh_keeps_the_token_and_checks_the_client() {
        let authority = TokenAuthority::new(
            OAuthSettings::salesforce("cid", "csecret")
                .with_extra_field("instance_url", json!("https://acme.my.salesforce.com")),
        );
        let rt = authority.issue_refresh_token();
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", "cid"),
            ("client_secret", "csecret"),
        ]);
        let answer = authority.respond_token("POST", "", FORM, &body);
        assert_eq!(answer.status, 200);
        let json = answer.body_json();
        let at = json["access_token"].as_str().unwrap();
        assert!(authority.access_token_valid(at));
        assert!(authority.bearer_token_valid(&[("Authorization", &format!("Bearer {at}"))]));
        assert!(json.get("refresh_token").is_none());
        assert!(json.get("expires_in").is_none());
        assert_eq!(json["instance_url"], "https://acme.my.salesforce.com");
        assert!(json["issued_at"].as_str().unwrap().parse::<u128>().is_ok());

        // The same token works again; a wrong secret, a JSON body or GET do not.
        assert_eq!(authority.respond_token("POST", "", FORM, &body).status, 200);
        let wrong = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", "cid")]);
        assert_eq!(authority.respond_token("POST", "", FORM, &wrong).body_json()["error"], "invalid_client");
        assert_eq!(authority.respond_token("POST", "", &[("content-type", "application/json")], &body).status, 400);
        assert_eq!(authority.respond_token("GET", "", FORM, &body).status, 405);

        authority.expire_access_tokens();
        assert!(!authority.access_token_valid(at));
        let stats = authority.stats();
        assert_eq!((stats.refresh_calls, stats.granted, stats.refused), (5, 2, 3));
    }

    #[test]
    fn bullhorn_refresh_tokens_are_single_use() {
        let authority = TokenAuthority::new(OAuthSettings::bullhorn("cid", "cs"));
        let first = authority.issue_refresh_token();
        let query = |rt: &str| format!("grant_type=refresh_token&refresh_token={rt}&client_id=cid&client_secret=cs");
        let answer = authority.respond_token("POST", &query(&first), &[], b"");
        assert_eq!(answer.status, 200);
        let json = answer.body_json();
        assert_eq!(json["expires_in"], 600);
        let second = json["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        assert_eq!(authority.newest_refresh_token().as_deref(), Some(second.as_str()));
        assert!(!authority.refresh_token_live(&first));

        let reused = authority.respond_token("POST", &query(&first), &[], b"");
        assert_eq!(reused.status, 400);
        assert_eq!(reused.body_json()["error"], "invalid_grant");
        assert_eq!(authority.stats().spent_token_uses, 1);

        authority.fail_next(1, TokenFault::Status(503));
        assert_eq!(authority.respond_token("POST", &query(&second), &[], b"").status, 503);
        assert!(authority.refresh_token_live(&second), "a failed call spends nothing");
        authority.refuse_grants(true);
        assert_eq!(authority.respond_token("POST", &query(&second), &[], b"").body_json()["error"], "invalid_grant");
        authority.refuse_grants(false);
        authority.revoke_refresh_tokens();
        assert_eq!(authority.respond_token("POST", &query(&second), &[], b"").status, 400);
    }
}
