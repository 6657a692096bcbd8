//! `oneup connector check --replay DIR`: the connector runs offline, every request answered
//! from a recording made with `--record`.
//!
//! A request is matched by method, scope (relative to the base URL or not), path and query
//! (pairs compared decoded and in any order, credential-named values ignored: they were
//! redacted when recorded). Requests with the same key are answered in the order they were
//! recorded; past the last, the last answer repeats.
//!
//! Connectors that ask relative to the clock (Bullhorn's `dateLastModified<now`) send other
//! times on every run. So when no recorded request matches exactly, one that differs only in
//! its times is taken: the key with every epoch-milliseconds number (13 digits) and every
//! RFC 3339 date-time in the path and query replaced by a placeholder ([`time_blind`]).
//!
//! A request the recording lacks even then gets a `404` whose body says so, the check
//! prints the request, and the summary counts it. Nothing here opens a socket.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::record::{Exchange, FORMAT, INDEX_FILE, Index, Redactor};
use crate::runtime::BoxFuture;
use crate::runtime::http::{Fetched, HttpFailure, Transport};

/// A recording read from its folder.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Its index.
    pub index: Index,
    /// Its exchanges, in order.
    pub exchanges: Vec<Exchange>,
}

impl Recording {
    /// Reads `dir`: the index, then every exchange it lists.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&index_path).with_context(|| {
            format!(
                "cannot read {}: is {} a folder written by `oneup connector check --record` whose run finished?",
                index_path.display(),
                dir.display()
            )
        })?;
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a recording index", index_path.display()))?;
        anyhow::ensure!(
            index.format == FORMAT,
            "{} is a recording of format {}; this oneup reads format {FORMAT}",
            dir.display(),
            index.format
        );
        let mut exchanges = Vec::with_capacity(index.exchanges.len());
        for name in &index.exchanges {
            anyhow::ensure!(
                !name.contains(['/', '\\']) && !name.starts_with('.'),
                "{} lists `{name}`, which is not a file of the recording",
                index_path.display()
            );
            let path = dir.join(name);
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let exchange: Exchange = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a recorded exchange", path.display()))?;
            exchanges.push(exchange);
        }
        Ok(Self { index, exchanges })
    }
}

/// Answers requests from a recording.
pub struct ReplayTransport {
    exchanges: Vec<Exchange>,
    redactor: Arc<Redactor>,
    /// Per key: the exchanges with that key, and how many of them were served.
    by_key: Mutex<HashMap<String, (Vec<usize>, usize)>>,
    /// The same, by [`time_blind`] key.
    by_time_blind_key: Mutex<HashMap<String, (Vec<usize>, usize)>>,
    served: AtomicU64,
    time_blind: AtomicU64,
    unmatched: AtomicU64,
}

impl ReplayTransport {
    /// A transport over `recording`, computing request keys with `redactor` (which knows the
    /// base URL and any secret given on the command line).
    pub fn new(recording: &Recording, redactor: Arc<Redactor>) -> Self {
        let mut by_key: HashMap<String, (Vec<usize>, usize)> = HashMap::new();
        let mut by_time_blind_key: HashMap<String, (Vec<usize>, usize)> = HashMap::new();
        for (i, exchange) in recording.exchanges.iter().enumerate() {
            let key = exchange.key();
            by_time_blind_key.entry(time_blind(&key)).or_default().0.push(i);
            by_key.entry(key).or_default().0.push(i);
        }
        Self {
            exchanges: recording.exchanges.clone(),
            redactor,
            by_key: Mutex::new(by_key),
            by_time_blind_key: Mutex::new(by_time_blind_key),
            served: AtomicU64::new(0),
            time_blind: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
        }
    }

    /// Requests answered from the recording so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Requests answered by a recorded request that differs only in its times.
    pub fn time_blind(&self) -> u64 {
        self.time_blind.load(Ordering::SeqCst)
    }

    /// Requests the recording had no answer for so far.
    pub fn unmatched(&self) -> u64 {
        self.unmatched.load(Ordering::SeqCst)
    }

    fn answer(&self, method: &str, url: &Url) -> Fetched {
        let key = self.redactor.key_of(method, url);
        let take = |map: &Mutex<HashMap<String, (Vec<usize>, usize)>>, key: &str| {
            let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
            map.get_mut(key).map(|(indexes, next)| {
                let i = indexes[(*next).min(indexes.len() - 1)];
                *next += 1;
                i
            })
        };
        let found = take(&self.by_key, &key).or_else(|| {
            let found = take(&self.by_time_blind_key, &time_blind(&key));
            if found.is_some() {
                self.time_blind.fetch_add(1, Ordering::SeqCst);
            }
            found
        });
        let Some(i) = found else {
            self.unmatched.fetch_add(1, Ordering::SeqCst);
            let shown = key.split_once(' ').map(|(_, rest)| rest).unwrap_or(&key);
            eprintln!("replay: no recorded answer for {method} {shown}; answered 404");
            let body = serde_json::json!({
                "error": "not in the recording",
                "detail": "oneup connector check --replay has no recorded exchange for this request; record again with --record",
            });
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return Fetched { status: 404, headers, body: serde_json::to_vec(&body).unwrap_or_default() };
        };
        self.served.fetch_add(1, Ordering::SeqCst);
        let exchange = &self.exchanges[i];
        let mut headers = HeaderMap::new();
        for (name, value) in &exchange.response_headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                headers.append(name, value);
            }
        }
        Fetched { status: exchange.status, headers, body: exchange.body_bytes() }
    }
}

/// `key` with every time in it replaced by `<t>`: runs of exactly 13 digits (epoch
/// milliseconds, 2001 to 2286) and RFC 3339 date-times (`2025-06-01T10:00:00Z`, fractions and
/// offsets included), also percent-encoded (`%3A` for `:`, `%2B` for `+`).
pub fn time_blind(key: &str) -> String {
    let decoded = key.replace("%3A", ":").replace("%3a", ":").replace("%2B", "+").replace("%2b", "+");
    let b = decoded.as_bytes();
    let digits = |from: usize, n: usize| from + n <= b.len() && b[from..from + n].iter().all(u8::is_ascii_digit);
    let mut out = String::with_capacity(decoded.len());
    let mut i = 0;
    while i < b.len() {
        let starts_number = !(i > 0 && b[i - 1].is_ascii_digit());
        // yyyy-mm-ddThh:mm:ss[.fff][Z|±hh:mm]
        if starts_number
            && digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
            && matches!(b.get(i + 10), Some(b'T' | b't' | b' '))
            && digits(i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(i + 17, 2)
        {
            let mut j = i + 19;
            if b.get(j) == Some(&b'.') {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if matches!(b.get(j), Some(b'Z' | b'z')) {
                j += 1;
            } else if matches!(b.get(j), Some(b'+' | b'-'))
                && digits(j + 1, 2)
                && b.get(j + 3) == Some(&b':')
                && digits(j + 4, 2)
            {
                j += 6;
            }
            out.push_str("<t>");
            i = j;
            continue;
        }
        if starts_number && digits(i, 13) && !digits(i + 13, 1) {
            out.push_str("<t>");
            i += 13;
            continue;
        }
        let ch = decoded[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

impl Transport for ReplayTransport {
    fn send<'a>(
        &'a self,
        url: &'a Url,
        _headers: &'a HeaderMap,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        let fetched = self.answer("GET", url);
        Box::pin(async move { if fetched.body.len() > max_body { Err(HttpFailure::TooLarge) } else { Ok(fetched) } })
    }

    fn send_with_body<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
        _headers: &'a HeaderMap,
        _body: Vec<u8>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        let fetched = self.answer(method.as_str(), url);
        Box::pin(async move { if fetched.body.len() > max_body { Err(HttpFailure::TooLarge) } else { Ok(fetched) } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::toolkit::record::{Caller, MARKER, Scope};

    fn exchange(seq: u64, method: &str, scope: Scope, target: &str, body: &str) -> Exchange {
        Exchange {
            seq,
            caller: Caller::Connector,
            method: method.into(),
            scope,
            target: target.into(),
            request_headers: Default::default(),
            request_body: None,
            status: 200,
            response_headers: vec![("content-type".into(), "application/json".into())],
            json: None,
            body: Some(body.into()),
            body_hex: None,
        }
    }

    fn recording(exchanges: Vec<Exchange>) -> Recording {
        Recording {
            index: Index {
                format: FORMAT,
                marker: MARKER.into(),
                connector: "t".into(),
                version: "1".into(),
                contract: "0.2.0".into(),
                base_url_key: "base_url".into(),
                config: Default::default(),
                secret_keys: vec![],
                exchanges: vec![],
            },
            exchanges,
        }
    }

    #[tokio::test]
    async fn answers_in_recorded_order_then_repeats_and_404s_the_rest() {
        let redactor = Arc::new(Redactor::new(["live-secret-1"]));
        redactor.set_base(Some(Url::parse("https://replay.example.com/api").unwrap()));
        let replay = ReplayTransport::new(
            &recording(vec![
                exchange(1, "GET", Scope::Base, "/deals?page=1&since=0", "first"),
                exchange(2, "GET", Scope::Base, "/deals?page=1&since=0", "second"),
                exchange(3, "POST", Scope::Origin, &format!("/oauth/token?refresh_token={MARKER}"), "token"),
            ]),
            redactor,
        );
        let url = Url::parse("https://replay.example.com/api/deals?since=0&page=1").unwrap();
        let bodies: Vec<Vec<u8>> = {
            let mut out = Vec::new();
            for _ in 0..3 {
                out.push(replay.send(&url, &HeaderMap::new(), 1 << 20).await.unwrap().body);
            }
            out
        };
        assert_eq!(bodies, [b"first".to_vec(), b"second".to_vec(), b"second".to_vec()]);
        // Another host and a live refresh token: matched by path and scope, the credential ignored.
        let token = Url::parse("http://127.0.0.1:9/oauth/token?refresh_token=live-secret-1").unwrap();
        let answer =
            replay.send_with_body(reqwest::Method::POST, &token, &HeaderMap::new(), Vec::new(), 1 << 20).await.unwrap();
        assert_eq!(answer.body, b"token");
        let missing = Url::parse("https://replay.example.com/api/deals?since=5&page=1").unwrap();
        let answer = replay.send(&missing, &HeaderMap::new(), 1 << 20).await.unwrap();
        assert_eq!(answer.status, 404);
        assert!(String::from_utf8_lossy(&answer.body).contains("not in the recording"));
        assert_eq!((replay.served(), replay.unmatched()), (4, 1));
    }

    #[test]
    fn time_blind_keys_hide_times_only() {
        assert_eq!(
            time_blind("GET base /q?where=dateLastModified%3C1795921878069&start=0"),
            "GET base /q?where=dateLastModified%3C<t>&start=0"
        );
        assert_eq!(
            time_blind("GET base /q?q=SystemModstamp+%3E+2025-06-01T10%3A00%3A00.000%2B02%3A00+LIMIT"),
            "GET base /q?q=SystemModstamp+%3E+<t>+LIMIT"
        );
        assert_eq!(time_blind("GET base /d?since=2025-06-01T10:00:00Z&id=5001"), "GET base /d?since=<t>&id=5001");
        // Ids and numbers of other lengths stay.
        assert_eq!(time_blind("GET base /d?id=12345678901234&n=0"), "GET base /d?id=12345678901234&n=0");
        assert_eq!(time_blind("GET base /d/äb?x=1"), "GET base /d/äb?x=1");
    }

    #[tokio::test]
    async fn a_request_differing_only_in_its_times_is_answered() {
        let redactor = Arc::new(Redactor::new(std::iter::empty::<&str>()));
        let replay = ReplayTransport::new(
            &recording(vec![
                exchange(1, "GET", Scope::Origin, "/q?where=modified%3C1748736000000", "then"),
                exchange(2, "GET", Scope::Origin, "/q?where=modified%3E%3D5", "exact"),
            ]),
            redactor,
        );
        let now = Url::parse("https://x.example.com/q?where=modified%3C1795921878069").unwrap();
        assert_eq!(replay.send(&now, &HeaderMap::new(), 1 << 20).await.unwrap().body, b"then");
        let other = Url::parse("https://x.example.com/q?where=modified%3E%3D6").unwrap();
        assert_eq!(replay.send(&other, &HeaderMap::new(), 1 << 20).await.unwrap().status, 404, "only times are blind");
        assert_eq!((replay.time_blind(), replay.unmatched()), (1, 1));
    }
}
