//! A fake Pipedrive recorded once and served from memory, identically, to both sides.
//!
//! [`Recording::record`] runs the native connector once against the fake CRM core
//! ([`Crm::respond`], no IO) and keeps every answer, keyed by path and sorted, decoded query
//! pairs. After that both sides read the same pre-rendered bodies:
//!
//! * the native connector through a [`FakeHost`] handler ([`Recording::fake_host`]), which
//!   hands out shared `Arc<[u8]>` bodies without copying;
//! * the sandboxed connector through a host [`Transport`] ([`MemoryTransport`]), keyed the
//!   same way from the URL the host built, which copies each body into the `Vec` the host's
//!   HTTP client expects (as a network transport would).
//!
//! A request that was not recorded is rendered live by the CRM and counted as a miss. One
//! such request is expected per sandboxed sync: the deleted-deals list asks for
//! `updated_since = now - 1h`, and the sandbox's clock is the wall clock while the native
//! run's is the fixed clock of [`FakeHost`]. Its answer is an empty page either way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use oneup::runtime::BoxFuture;
use oneup::runtime::http::{Fetched, HttpFailure, Transport};
use oneup_connector_pipedrive::Pipedrive;
use oneup_connector_sdk::testing::{FakeHost, run_sync};
use oneup_connector_sdk::{Body, HttpResponse, SyncOutcome};
use oneup_fake_crm::pipedrive::Crm;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

/// The integration's base URL: it matches the connector's declared `*.pipedrive.com`, so
/// the host needs no loopback exception.
pub const BASE_URL: &str = "https://bench.pipedrive.com";

/// The API token the fake CRM accepts (the host injects it as `x-api-token`).
pub const TOKEN: &str = "bench-token-0123456789";

/// A recorded answer's key: the path and the sorted, decoded query pairs.
type Key = (String, Vec<(String, String)>);

/// One answer of the CRM, rendered once.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The headers as the native side's `HttpResponse` carries them.
    pub headers: Vec<(String, String)>,
    /// The same headers as the host's transport returns them.
    pub header_map: HeaderMap,
    /// The body, shared.
    pub body: Arc<[u8]>,
}

impl Answer {
    fn render(crm: &Crm, path: &str, query: &[(String, String)], token: &str) -> Answer {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        let response = crm.respond("GET", path, &encoded, &[("x-api-token", token)]);
        let headers: Vec<(String, String)> =
            response.headers.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        let mut header_map = HeaderMap::new();
        for (name, value) in &headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                header_map.append(name, value);
            }
        }
        Answer { status: response.status, headers, header_map, body: response.body.into() }
    }

    /// The answer as the SDK's `HttpResponse`, sharing the body.
    fn to_response(&self) -> HttpResponse {
        HttpResponse { status: self.status, headers: self.headers.clone(), body: Body::from(self.body.clone()) }
    }
}

fn key(path: &str, query: &[(String, String)]) -> Key {
    let mut query = query.to_vec();
    query.sort();
    (path.to_owned(), query)
}

/// Every answer of one full sync, and the CRM for anything not recorded.
pub struct Recording {
    crm: Arc<Crm>,
    answers: HashMap<Key, Arc<Answer>>,
    misses: AtomicU64,
}

/// What the recording run saw.
pub struct RecordingSummary {
    /// Requests answered (and recorded).
    pub requests: usize,
    /// Total body bytes recorded.
    pub body_bytes: usize,
    /// Bytes of the largest body.
    pub largest_body: usize,
}

impl Recording {
    /// Runs the native connector once over `crm`, recording every answer.
    pub fn record(crm: Crm) -> anyhow::Result<(Arc<Recording>, RecordingSummary)> {
        let crm = Arc::new(crm);
        let answers: Rc<RefCell<HashMap<Key, Arc<Answer>>>> = Rc::default();
        let mut host = FakeHost::new().with_config("base_url", BASE_URL);
        host.record_changes(false);
        {
            let crm = crm.clone();
            let answers = answers.clone();
            host.respond_with(move |request| {
                let answer = Arc::new(Answer::render(&crm, &request.path, &request.query, TOKEN));
                let response = answer.to_response();
                answers.borrow_mut().insert(key(&request.path, &request.query), answer);
                Some(Ok(response))
            });
        }
        let outcome = run_sync(Pipedrive, &mut host, None);
        anyhow::ensure!(outcome == Ok(SyncOutcome::Complete), "the recording sync failed: {outcome:?}");
        anyhow::ensure!(host.violations().is_empty(), "the recording sync broke the contract: {:?}", host.violations());
        drop(host);
        let answers = Rc::try_unwrap(answers).map_err(|_| anyhow::anyhow!("the recording is still shared"))?;
        let answers = answers.into_inner();
        let summary = RecordingSummary {
            requests: answers.len(),
            body_bytes: answers.values().map(|a| a.body.len()).sum(),
            largest_body: answers.values().map(|a| a.body.len()).max().unwrap_or(0),
        };
        if let Some((key, answer)) = answers.iter().find(|(_, a)| a.status != 200) {
            anyhow::bail!("the fake CRM answered {} to {} {:?}", answer.status, key.0, key.1);
        }
        Ok((Arc::new(Recording { crm, answers, misses: AtomicU64::new(0) }), summary))
    }

    /// The answer to a GET, recorded or (counted as a miss) rendered now.
    fn answer(&self, path: &str, query: &[(String, String)], token: &str) -> Arc<Answer> {
        if token == TOKEN
            && let Some(answer) = self.answers.get(&key(path, query))
        {
            return answer.clone();
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        Arc::new(Answer::render(&self.crm, path, query, token))
    }

    /// Requests not found in the recording since the last call, then resets the count.
    pub fn take_misses(&self) -> u64 {
        self.misses.swap(0, Ordering::Relaxed)
    }

    /// A [`FakeHost`] for the native side: it serves the recording, counts changes
    /// without keeping them (unless `keep_changes`), and runs at the recording's clock.
    pub fn fake_host(self: &Arc<Self>, keep_changes: bool) -> FakeHost {
        let mut host = FakeHost::new().with_config("base_url", BASE_URL);
        host.record_changes(keep_changes);
        let recording = self.clone();
        host.respond_with(move |request| {
            Some(Ok(recording.answer(&request.path, &request.query, TOKEN).to_response()))
        });
        host
    }
}

/// Time and bytes the transport spent serving, since the last [`MemoryTransport::take`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Served {
    /// Requests served.
    pub requests: u64,
    /// Body bytes copied out.
    pub bytes: u64,
    /// Nanoseconds spent in `send` (lookup and body copy).
    pub nanos: u64,
}

/// The host-side [`Transport`] of the sandbox run: answers from the recording.
pub struct MemoryTransport {
    recording: Arc<Recording>,
    requests: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl MemoryTransport {
    /// A transport over `recording`.
    pub fn new(recording: Arc<Recording>) -> Self {
        MemoryTransport { recording, requests: AtomicU64::new(0), bytes: AtomicU64::new(0), nanos: AtomicU64::new(0) }
    }

    /// What was served since the last call; resets the counters.
    pub fn take(&self) -> Served {
        Served {
            requests: self.requests.swap(0, Ordering::Relaxed),
            bytes: self.bytes.swap(0, Ordering::Relaxed),
            nanos: self.nanos.swap(0, Ordering::Relaxed),
        }
    }
}

impl Transport for MemoryTransport {
    fn send<'a>(
        &'a self,
        url: &'a Url,
        headers: &'a HeaderMap,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(async move {
            let started = Instant::now();
            let token = headers.get("x-api-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let answer = self.recording.answer(url.path(), &query, token);
            if answer.body.len() > max_body {
                return Err(HttpFailure::TooLarge);
            }
            let fetched =
                Fetched { status: answer.status, headers: answer.header_map.clone(), body: answer.body.to_vec() };
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(fetched.body.len() as u64, Ordering::Relaxed);
            self.nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            Ok(fetched)
        })
    }
}
