//! Every request's id, span, access log line and duration metric.
//!
//! The id is the caller's `x-request-id` when it is sane (1 to [`MAX_REQUEST_ID_LEN`]
//! characters of `A-Z a-z 0-9 - _ . :`), else a new random one; it is echoed on the answer,
//! is a field of the request's span (so of every log line logged while answering it), and
//! is the correlation code of 5xx bodies ([`current_request_id`]). One access log line per
//! request at INFO (method, route template, status, duration); the probes and `/metrics`
//! log theirs at DEBUG, so that a scraper does not drown the log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header, read and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest caller's request id kept; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being answered on this task, if any.
pub(crate) fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Whether a caller's request id is kept as it is.
pub(crate) fn is_sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new request id: 16 random bytes as hex.
fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: still unique enough within a log (time and a counter).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&crate::store::types::now_ms().to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    hex::encode(bytes)
}

/// Routes whose access lines are DEBUG (polled by machines).
fn is_polled(route: &str) -> bool {
    matches!(route, "/livez" | "/readyz" | "/healthz" | "/metrics")
}

/// The middleware (outermost layer of [`super::router`]).
pub(super) async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map(Arc::from)
        .unwrap_or_else(|| new_request_id().into());
    let method = req.method().clone();
    // The route template, never the path: paths carry ids.
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("http", request_id = %id, method = %method, route = %route);
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    crate::telemetry::metrics().http_request(method.as_str(), &route, status, took);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let duration_ms = (took.as_secs_f64() * 10_000.0).round() / 10.0;
    let _entered = span.enter();
    if is_polled(&route) {
        tracing::debug!(target: "oneup::access", method = %method, route, status, duration_ms, "request");
    } else {
        tracing::info!(target: "oneup::access", method = %method, route, status, duration_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_plain() {
        assert!(is_sane_request_id("0b8f5c3e-2a41-4d0e-9f55-7c1e2d3a4b5c"));
        assert!(is_sane_request_id("req_1.2:3"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id(&"a".repeat(MAX_REQUEST_ID_LEN + 1)));
        assert!(is_sane_request_id(&"a".repeat(MAX_REQUEST_ID_LEN)));
        for bad in ["a b", "a\nb", "a\"b", "ä", "a{b}", "a=b;c"] {
            assert!(!is_sane_request_id(bad), "{bad:?}");
        }
        let new = new_request_id();
        assert_eq!(new.len(), 32);
        assert!(is_sane_request_id(&new));
        assert_ne!(new, new_request_id());
    }
}
