//! The host side of a connector's HTTP: the only way out of the sandbox.
//!
//! The egress guard (`super::egress`) decides *where* a request may go; this module sends
//! it. It injects credentials, refuses to follow redirects off the base origin, retries
//! 5xx answers and broken connections with bounded backoff, caps the size and time of every
//! answer, and turns every failure into the closed set of outcomes the connector can see
//! (`HttpFailure`).
//!
//! Rate limits are met with patience, not with a count of attempts: a [`RateGate`] per run
//! (roster and sync share it) honours every `Retry-After` of a 429 and paces requests from
//! the CRM's own rate headers before a 429 comes (`x-ratelimit-remaining: 0` with
//! `x-ratelimit-reset`, Pipedrive's burst window; `Sforce-Limit-Info` near the org's
//! allocation, Salesforce), as long as the run's wait budget
//! ([`HttpLimits::rate_wait_budget`]) and its deadline allow; then the request ends
//! `RateLimited` and the gate remembers it ([`RateGate::gave_up`]). The instant the CRM
//! asked for goes to a [`PaceLedger`] (the database, for whichever node syncs next). Credentials that need a token endpoint (OAuth 2.0
//! refresh, Bullhorn sessions) live in `super::auth`, which sends through this client.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::BoxFuture;
use super::auth::AuthSession;
use super::egress::EgressPolicy;

/// Bounds on every outbound request.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time allowed for one attempt, from connect to the last byte of the body.
    pub timeout: Duration,
    /// The largest body the host reads; a larger answer is refused.
    pub max_body_bytes: usize,
    /// Attempts per request, retries included.
    pub max_attempts: u32,
    /// The first backoff after a 5xx or a broken connection; doubled after each retry.
    pub base_backoff: Duration,
    /// The longest `Retry-After` of a 5xx the host honours (a 429's is bounded by the
    /// run's wait budget instead).
    pub max_retry_after: Duration,
    /// How long one run may wait in all for a CRM's rate limits (`Retry-After`, pacing)
    /// before its requests end `RateLimited`.
    pub rate_wait_budget: Duration,
    /// Same-origin redirects followed per request.
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(60),
            rate_wait_budget: Duration::from_secs(600),
            max_redirects: 3,
        }
    }
}

/// Credentials the host adds to a connector's requests. The connector never sees them.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Nothing is added.
    #[default]
    None,
    /// A secret sent in a fixed header (Pipedrive's `x-api-token`).
    Header {
        /// The header name, checked when the credentials were built.
        name: HeaderName,
        /// The secret, marked sensitive so it is never printed by the HTTP stack.
        value: HeaderValue,
    },
    /// A grant obtained from a token endpoint and renewed as needed (OAuth 2.0 refresh,
    /// Bullhorn session); see `super::auth`.
    Session(Arc<AuthSession>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("Credentials::None"),
            Credentials::Header { name, .. } => write!(f, "Credentials::Header({name}: <redacted>)"),
            Credentials::Session(session) => write!(f, "Credentials::Session({session:?})"),
        }
    }
}

impl Credentials {
    /// A secret in a header. Refuses header names the host itself controls.
    pub fn header(name: &str, secret: &str) -> Result<Self, CredentialError> {
        let lower = name.to_ascii_lowercase();
        const RESERVED: &[&str] = &[
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
            "proxy-authorization",
        ];
        if RESERVED.contains(&lower.as_str()) {
            return Err(CredentialError::ReservedHeader);
        }
        let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| CredentialError::BadHeaderName)?;
        let mut value = HeaderValue::from_str(secret).map_err(|_| CredentialError::BadSecret)?;
        value.set_sensitive(true);
        Ok(Credentials::Header { name, value })
    }

    /// Whether the CRM's authorisation server refused the grant for good while these
    /// credentials were in use: the integration needs re-authorisation.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, Credentials::Session(session) if session.needs_reauthorization())
    }

    fn apply(&self, headers: &mut HeaderMap) {
        if let Credentials::Header { name, value } = self {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Why credentials could not be built from an integration's secrets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The connector named a header the host controls.
    #[error("the auth header is one the host controls")]
    ReservedHeader,
    /// The connector named a header that is not a valid header name.
    #[error("the auth header name is not a valid HTTP header name")]
    BadHeaderName,
    /// The secret cannot be sent in a header (control characters).
    #[error("the secret contains characters that cannot be sent in an HTTP header")]
    BadSecret,
}

/// An answer handed back to the connector.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The final status after retries.
    pub status: u16,
    /// Response headers, names in lowercase (`set-cookie` left out).
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body_bytes`.
    pub body: Vec<u8>,
}

/// Why a request produced no answer; mirrors the WIT `http-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpFailure {
    /// The request broke a rule of the sandbox and was not sent.
    #[error("request denied by the egress guard")]
    Denied,
    /// No complete answer in time.
    #[error("the CRM did not answer in time")]
    Timeout,
    /// The answer was larger than allowed.
    #[error("the CRM's answer was larger than allowed")]
    TooLarge,
    /// Unreachable, or failing after every retry.
    #[error("the CRM could not be reached or kept failing")]
    Unavailable,
    /// No valid credentials could be obtained.
    #[error("no valid credentials for the CRM")]
    Unauthorized,
    /// Still rate-limited after every retry.
    #[error("the CRM kept rate-limiting")]
    RateLimited,
}

impl HttpFailure {
    /// A stable snake_case code for run records and logs.
    pub fn code(self) -> &'static str {
        match self {
            HttpFailure::Denied => "http_denied",
            HttpFailure::Timeout => "http_timeout",
            HttpFailure::TooLarge => "http_too_large",
            HttpFailure::Unavailable => "http_unavailable",
            HttpFailure::Unauthorized => "http_unauthorized",
            HttpFailure::RateLimited => "http_rate_limited",
        }
    }
}

/// One attempt's answer from a `Transport`.
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most the cap the transport was given.
    pub body: Vec<u8>,
}

/// Sends one GET and reads the answer, without retries: the network (`ReqwestTransport`)
/// in production, an in-memory CRM in the benchmark.
pub trait Transport: Send + Sync + 'static {
    /// Sends one GET; fails with `TooLarge` past `max_body` bytes.
    fn send<'a>(
        &'a self,
        url: &'a Url,
        headers: &'a HeaderMap,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>>;

    /// Sends one request of any method with a body: the host's own calls to a token or
    /// login endpoint, never a connector's. Transports that serve only a CRM's GETs (the
    /// benchmark's) keep the default, which sends GETs without a body and refuses the rest.
    fn send_with_body<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
        headers: &'a HeaderMap,
        body: Vec<u8>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        if method == reqwest::Method::GET && body.is_empty() {
            return self.send(url, headers, max_body);
        }
        Box::pin(async { Err(HttpFailure::Unavailable) })
    }
}

/// The production transport: reqwest with rustls, no redirects followed by itself.
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// A transport with the given per-attempt timeout.
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("oneup/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

impl Transport for ReqwestTransport {
    fn send<'a>(
        &'a self,
        url: &'a Url,
        headers: &'a HeaderMap,
        max: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(read_answer(self.client.get(url.clone()).headers(headers.clone()), max))
    }

    fn send_with_body<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
        headers: &'a HeaderMap,
        body: Vec<u8>,
        max: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(read_answer(self.client.request(method, url.clone()).headers(headers.clone()).body(body), max))
    }
}

/// Sends a request and reads its answer, at most `max` bytes of body.
async fn read_answer(request: reqwest::RequestBuilder, max: usize) -> Result<Fetched, HttpFailure> {
    let mut response = request
        .send()
        .await
        .map_err(|err| if err.is_timeout() { HttpFailure::Timeout } else { HttpFailure::Unavailable })?;
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(HttpFailure::TooLarge);
    }
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(max as u64) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(HttpFailure::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(err) if err.is_timeout() => return Err(HttpFailure::Timeout),
            Err(_) => return Err(HttpFailure::Unavailable),
        }
    }
    Ok(Fetched { status, headers, body })
}

/// Where a run's [`RateGate`] records the instant a CRM asked not to be called before
/// (milliseconds since the Unix epoch), so that the next run, on any node, waits for it.
pub trait PaceLedger: Send + Sync {
    /// Records `not_before_ms`; failures are the ledger's to log.
    fn record(&self, not_before_ms: i64) -> BoxFuture<'_, ()>;
}

/// One run's patience with its CRM's rate limits, shared by its roster and sync calls.
pub struct RateGate {
    budget: Duration,
    deadline: Option<std::time::Instant>,
    ledger: Option<Arc<dyn PaceLedger>>,
    state: std::sync::Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Time waited so far for rate limits.
    waited: Duration,
    /// No request before this.
    not_before: Option<std::time::Instant>,
    /// At least this long between requests (a CRM allocation nearly spent).
    spacing: Option<Duration>,
    /// When the last request was sent.
    last_sent: Option<std::time::Instant>,
    /// Whether a request ended `RateLimited` because waiting longer was not allowed.
    gave_up: bool,
}

/// Salesforce's allocation is a rolling 24 hours: near its end, requests are spaced by the
/// rate at which it comes back.
const SFORCE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The share of a Salesforce allocation (in percent) past which requests are paced, leaving
/// the rest to the org's other integrations.
const SFORCE_PACE_FROM_PERCENT: u64 = 90;

impl RateGate {
    /// A gate allowing `budget` of waiting in all, never past `deadline`.
    pub fn new(budget: Duration, deadline: Option<std::time::Instant>) -> Self {
        Self { budget, deadline, ledger: None, state: std::sync::Mutex::new(GateState::default()) }
    }

    /// Records every instant the CRM asks for in `ledger`.
    pub fn with_ledger(mut self, ledger: Arc<dyn PaceLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Starts with the CRM's "not before" instant as an earlier run recorded it.
    pub fn not_before_ms(self, at_ms: Option<i64>) -> Self {
        if let Some(at) = at_ms {
            let ahead = at.saturating_sub(now_ms());
            if ahead > 0 {
                let until = std::time::Instant::now() + Duration::from_millis(ahead as u64);
                self.lock().not_before = Some(until);
            }
        }
        self
    }

    /// Whether a request ended `RateLimited` because the wait budget or the deadline did
    /// not allow waiting for the CRM.
    pub fn gave_up(&self) -> bool {
        self.lock().gave_up
    }

    /// Time waited for rate limits so far.
    pub fn waited(&self) -> Duration {
        self.lock().waited
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for this request's turn, or refuses it when that wait does not fit the budget
    /// or the deadline.
    async fn turn(&self) -> Result<(), HttpFailure> {
        let wait = {
            let mut state = self.lock();
            let now = std::time::Instant::now();
            let spaced = state.spacing.zip(state.last_sent).map(|(gap, last)| last + gap);
            let target = state.not_before.into_iter().chain(spaced).max();
            let wait = target.map(|t| t.saturating_duration_since(now)).unwrap_or_default();
            if !wait.is_zero() {
                let over_budget = state.waited + wait > self.budget;
                let past_deadline = self.deadline.is_some_and(|d| now + wait > d);
                if over_budget || past_deadline {
                    state.gave_up = true;
                    tracing::info!(
                        code = "rate_limit_wait_exhausted",
                        wait_ms = wait.as_millis() as u64,
                        waited_ms = state.waited.as_millis() as u64,
                        "the CRM asks for a longer wait than this run may spend"
                    );
                    return Err(HttpFailure::RateLimited);
                }
                state.waited += wait;
            }
            state.last_sent = Some(now + wait);
            wait
        };
        if !wait.is_zero() {
            tracing::debug!(code = "rate_paced", wait_ms = wait.as_millis() as u64, "waiting for the CRM's rate limit");
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Moves "not before" to `wait` from now (never earlier than it is) and records it.
    async fn pause(&self, wait: Duration) {
        let until = std::time::Instant::now() + wait;
        let moved = {
            let mut state = self.lock();
            if state.not_before.is_none_or(|t| t < until) {
                state.not_before = Some(until);
                true
            } else {
                false
            }
        };
        if moved && let Some(ledger) = &self.ledger {
            ledger.record(now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))).await;
        }
    }

    /// Reads the CRM's rate headers on an answer: a spent burst window pauses until it
    /// resets; a nearly spent Salesforce allocation spaces requests out.
    async fn observe(&self, headers: &HeaderMap) {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        if number("x-ratelimit-remaining") == Some(0)
            && let Some(reset) = number("x-ratelimit-reset")
        {
            self.pause(Duration::from_secs(reset.min(3600))).await;
        }
        if let Some((used, max)) = sforce_usage(headers) {
            let spacing = (max > 0 && used.saturating_mul(100) >= max.saturating_mul(SFORCE_PACE_FROM_PERCENT))
                .then(|| SFORCE_WINDOW / u32::try_from(max).unwrap_or(u32::MAX));
            self.lock().spacing = spacing;
        }
    }
}

/// `Sforce-Limit-Info: api-usage=<used>/<max>`.
fn sforce_usage(headers: &HeaderMap) -> Option<(u64, u64)> {
    let value = headers.get("sforce-limit-info")?.to_str().ok()?;
    let usage = value.split(',').find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The outbound HTTP client shared by every sync of a host: retries, redirects and
/// credentials over a `Transport`; a copy per run carries the run's [`RateGate`].
#[derive(Clone)]
pub struct HttpClient {
    transport: Arc<dyn Transport>,
    limits: HttpLimits,
    gate: Option<Arc<RateGate>>,
    /// The connector whose requests these are, for `oneup_crm_requests_total`.
    connector: Option<Arc<str>>,
}

impl HttpClient {
    /// A client over the network with the given bounds.
    pub fn new(limits: HttpLimits) -> anyhow::Result<Self> {
        let transport = Arc::new(ReqwestTransport::new(limits.timeout)?);
        Ok(Self::with_transport(limits, transport))
    }

    /// A client over any transport.
    pub fn with_transport(limits: HttpLimits, transport: Arc<dyn Transport>) -> Self {
        Self { transport, limits, gate: None, connector: None }
    }

    /// This client counting its requests under `connector` in the node's metrics.
    pub fn for_connector(mut self, connector: &str) -> Self {
        self.connector = Some(Arc::from(connector));
        self
    }

    /// Counts one request's answer (an HTTP status or a failure's code).
    fn count(&self, status: &str) {
        if let Some(connector) = &self.connector {
            crate::telemetry::metrics().crm_request(connector, status);
        }
    }

    /// This client with `gate` for every request (one run's).
    pub fn with_gate(&self, gate: Arc<RateGate>) -> Self {
        Self { gate: Some(gate), ..self.clone() }
    }

    /// The bounds in force.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// The transport underneath (the auth calls use it directly).
    pub(crate) fn transport(&self) -> &dyn Transport {
        self.transport.as_ref()
    }

    /// GETs `url` (already built by `policy`) with `headers` (already checked) and the
    /// credentials, retrying as documented on this module.
    pub async fn get(
        &self,
        policy: &EgressPolicy,
        url: Url,
        headers: &[(String, String)],
        credentials: &Credentials,
    ) -> Result<HttpAnswer, HttpFailure> {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpFailure::Denied)?;
            let value = HeaderValue::from_str(value).map_err(|_| HttpFailure::Denied)?;
            header_map.insert(name, value);
        }
        if let Credentials::Session(session) = credentials {
            return session.send(self, policy, url, header_map).await;
        }
        credentials.apply(&mut header_map);
        self.fetch(policy, url, &header_map).await
    }

    /// GETs `url` with exactly `header_map`, with the retries, redirects and caps of this
    /// module; a 401 is an answer like any other here.
    pub(crate) async fn fetch(
        &self,
        policy: &EgressPolicy,
        mut url: Url,
        header_map: &HeaderMap,
    ) -> Result<HttpAnswer, HttpFailure> {
        let max = self.limits.max_body_bytes;
        // A request outside any run (none of the host's own paths) gets a gate of its own.
        let own_gate;
        let gate = match &self.gate {
            Some(gate) => gate.as_ref(),
            None => {
                own_gate = RateGate::new(self.limits.rate_wait_budget, None);
                &own_gate
            }
        };
        let mut attempt = 0u32;
        let mut redirects = 0u32;
        let mut backoff = self.limits.base_backoff;
        let mut rate_backoff = self.limits.base_backoff;
        loop {
            attempt += 1;
            let last = attempt >= self.limits.max_attempts;
            gate.turn().await?;
            let sent = self.transport.send(&url, header_map, max).await;
            match &sent {
                Ok(response) => self.count(&response.status.to_string()),
                Err(failure) => self.count(failure.code()),
            }
            let response = match sent {
                Ok(response) => response,
                Err(HttpFailure::TooLarge) => return Err(HttpFailure::TooLarge),
                Err(failure) => {
                    tracing::debug!(code = failure.code(), attempt, "outbound request failed");
                    if last {
                        return Err(failure);
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    continue;
                }
            };
            let status = response.status;
            gate.observe(&response.headers).await;

            if (300..400).contains(&status) && status != 304 {
                let location = response
                    .headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok());
                match location {
                    Some(next) if policy.is_same_origin(&next) && redirects < self.limits.max_redirects => {
                        redirects += 1;
                        attempt -= 1;
                        url = next;
                        continue;
                    }
                    Some(_) => tracing::warn!(code = "redirect_off_origin", status, "redirect not followed"),
                    None => {}
                }
            }

            if status == 429 {
                if daily_budget_exhausted(&response.headers) {
                    return Ok(answer(response));
                }
                // A 429 is not a failed attempt: the CRM says when to come back, and the
                // gate waits for that while the run's budget allows (never less than the
                // backoff, so that `Retry-After: 0` cannot make a tight loop).
                attempt -= 1;
                let wait = retry_after(&response.headers).unwrap_or(rate_backoff).max(self.limits.base_backoff);
                tracing::debug!(code = "rate_limited", wait_ms = wait.as_millis() as u64, "429: waiting as asked");
                gate.pause(wait).await;
                rate_backoff = rate_backoff.saturating_mul(2).min(Duration::from_secs(60));
                continue;
            }

            if matches!(status, 500 | 502 | 503 | 504) {
                if last {
                    tracing::info!(code = "server_error", status, attempt, "giving up after 5xx");
                    return Err(HttpFailure::Unavailable);
                }
                let wait = retry_after(&response.headers)
                    .filter(|w| *w <= self.limits.max_retry_after)
                    .unwrap_or_else(|| jitter(backoff));
                tracing::debug!(code = "server_error", status, attempt, "retrying after 5xx");
                tokio::time::sleep(wait).await;
                backoff = backoff.saturating_mul(2);
                continue;
            }

            return Ok(answer(response));
        }
    }
}

/// What the connector sees of an answer: lowercase header names, `set-cookie` left out.
fn answer(fetched: Fetched) -> HttpAnswer {
    let headers = fetched
        .headers
        .iter()
        .filter(|(name, _)| *name != reqwest::header::SET_COOKIE)
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
        .collect();
    HttpAnswer { status: fetched.status, headers, body: fetched.body }
}

/// Pipedrive says a 429 with `x-daily-ratelimit-token-remaining: 0` will not clear before
/// tomorrow: retrying only burns time, so the answer goes to the connector as it is.
fn daily_budget_exhausted(headers: &HeaderMap) -> bool {
    headers.get("x-daily-ratelimit-token-remaining").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "0")
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Spreads retries of many syncs apart: up to a quarter more than `base`.
pub(crate) fn jitter(base: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_cannot_carry_credentials() {
        assert_eq!(Credentials::header("Host", "x").unwrap_err(), CredentialError::ReservedHeader);
        assert_eq!(Credentials::header("bad header", "x").unwrap_err(), CredentialError::BadHeaderName);
        assert_eq!(Credentials::header("x-api-token", "a\nb").unwrap_err(), CredentialError::BadSecret);
        let creds = Credentials::header("X-Api-Token", "s3cret").unwrap();
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn salesforce_usage_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert("sforce-limit-info", HeaderValue::from_static("api-usage=95/100"));
        assert_eq!(sforce_usage(&headers), Some((95, 100)));
        headers.insert("sforce-limit-info", HeaderValue::from_static("per-app-api-usage=1/2, api-usage=3/4"));
        assert_eq!(sforce_usage(&headers), Some((3, 4)));
        headers.insert("sforce-limit-info", HeaderValue::from_static("api-usage=x/4"));
        assert_eq!(sforce_usage(&headers), None);
    }

    #[tokio::test]
    async fn a_wait_past_the_budget_or_the_deadline_is_refused_and_remembered() {
        let gate = RateGate::new(Duration::from_secs(1), None);
        gate.turn().await.unwrap();
        gate.pause(Duration::from_secs(5)).await;
        assert_eq!(gate.turn().await, Err(HttpFailure::RateLimited));
        assert!(gate.gave_up());
        assert_eq!(gate.waited(), Duration::ZERO, "nothing was waited for a refused turn");

        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        let gate = RateGate::new(Duration::from_secs(600), Some(deadline));
        gate.pause(Duration::from_secs(1)).await;
        assert_eq!(gate.turn().await, Err(HttpFailure::RateLimited), "never past the deadline");
    }

    #[tokio::test]
    async fn a_spent_burst_window_paces_the_next_request() {
        let gate = RateGate::new(Duration::from_secs(10), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("3"));
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1"));
        gate.observe(&headers).await;
        let started = std::time::Instant::now();
        gate.turn().await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(200), "requests left: no wait");
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        gate.observe(&headers).await;
        gate.turn().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(900), "waited for the window to reset");
        assert!(gate.waited() >= Duration::from_millis(900));
        assert!(!gate.gave_up());
    }

    #[test]
    fn a_nearly_spent_salesforce_allocation_spaces_requests() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let gate = RateGate::new(Duration::from_secs(600), None);
            let mut headers = HeaderMap::new();
            headers.insert("sforce-limit-info", HeaderValue::from_static("api-usage=10/86400"));
            gate.observe(&headers).await;
            assert_eq!(gate.lock().spacing, None);
            headers.insert("sforce-limit-info", HeaderValue::from_static("api-usage=80000/86400"));
            gate.observe(&headers).await;
            assert_eq!(gate.lock().spacing, Some(Duration::from_secs(1)), "the rate the allocation comes back at");
        });
    }

    #[test]
    fn retry_after_and_daily_budget_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        assert!(!daily_budget_exhausted(&headers));
        headers.insert("x-daily-ratelimit-token-remaining", HeaderValue::from_static("0"));
        assert!(daily_budget_exhausted(&headers));
    }
}
