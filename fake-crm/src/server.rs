//! A loopback HTTP server around any [`Responder`].
//!
//! It binds `127.0.0.1:0`, hands every request (whatever its method or path) to the responder
//! under a lock, waits out any injected delay without holding the lock, and writes the answer
//! back. Nothing here knows a CRM's API; that lives in the pure core of each fake.
//!
//! The server logs method, path and status at debug level, never query values, headers or
//! bodies: the bodies are full of invented personal data that the demo sweeps the logs for.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::http::Responder;

/// A running fake CRM server on loopback. Dropping it stops the server (without waiting);
/// [`FakeServer::shutdown`] stops it and waits.
pub struct FakeServer<T: Responder> {
    addr: SocketAddr,
    state: Arc<Mutex<T>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<T: Responder> FakeServer<T> {
    /// Starts serving `responder` on `127.0.0.1` on a free port. Needs a Tokio runtime.
    pub async fn serve(responder: T) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("failed to bind a loopback port for the fake CRM")?;
        let addr = listener.local_addr().context("failed to read the fake CRM's port")?;
        let state = Arc::new(Mutex::new(responder));
        let router = Router::new().fallback(handle::<T>).with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                // Either an explicit stop or the handle being dropped ends the server.
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(%error, "fake CRM server failed");
            }
        });
        tracing::debug!(%addr, "fake CRM listening");
        Ok(Self { addr, state, stop: Some(stop), task: Some(task) })
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shared access to the fake's state, e.g. to mutate data between syncs.
    pub fn state(&self) -> Arc<Mutex<T>> {
        Arc::clone(&self.state)
    }

    /// Locks the fake's state. Do not hold the guard across an `.await` that waits for the
    /// server, or the server will wait for you.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with the fake's state locked and returns its result.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<T: Responder> Drop for FakeServer<T> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl<T: Responder> std::fmt::Debug for FakeServer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The one handler: every method and path goes to the responder.
async fn handle<T: Responder>(State(state): State<Arc<Mutex<T>>>, request: Request) -> axum::response::Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let owned: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let answer = {
        let fake = state.lock().unwrap_or_else(PoisonError::into_inner);
        fake.respond(&method, &path, &query, &headers)
    };
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(%method, %path, status = answer.status, "fake CRM request");
    let mut response = axum::response::Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::pipedrive::{Dataset, FakePipedrive, Fault};

    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: serde_json::Value,
    }

    /// A bare HTTP/1.1 GET, so the test needs no HTTP client dependency.
    async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> Answer {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        if let Some(token) = token {
            request.push_str(&format!("x-api-token: {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let raw = String::from_utf8(raw).expect("utf-8");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines.filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_lowercase(), v.to_owned())).collect();
        Answer { status, headers, body: serde_json::from_str(body).expect("a JSON body") }
    }

    fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
        answer.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn serves_the_core_over_loopback() {
        let fake = FakePipedrive::start(Dataset::generate(3, 2, 40, 40), "tok").await.unwrap();
        assert!(fake.base_url().starts_with("http://127.0.0.1:"));
        let addr = fake.addr();

        let users = http_get(addr, "/v1/users", Some("tok")).await;
        assert_eq!(users.status, 200);
        assert_eq!(header(&users, "content-type"), Some("application/json"));
        assert_eq!(users.body["data"].as_array().unwrap().len(), 2);

        let denied = http_get(addr, "/api/v2/deals", None).await;
        assert_eq!(denied.status, 401);
        assert_eq!(denied.body["error"], "unauthorized access");

        fake.lock().fail_next(1, Fault::RateLimited { retry_after_secs: 2 });
        let limited = http_get(addr, "/api/v2/deals", Some("tok")).await;
        assert_eq!(limited.status, 429);
        assert_eq!(header(&limited, "retry-after"), Some("2"));

        fake.lock().fail_next(1, Fault::Delay(Duration::from_millis(200)));
        let started = Instant::now();
        let slow = http_get(addr, "/api/v2/deals?limit=1", Some("tok")).await;
        assert_eq!(slow.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(200));

        let first = fake.lock().deals()[0].id;
        fake.with(|crm| crm.delete_deal(first)).unwrap();
        let deleted = http_get(addr, "/api/v2/deals?status=deleted", Some("tok")).await;
        let ids: Vec<u64> =
            deleted.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_u64().unwrap()).collect();
        assert!(ids.contains(&first));

        let log = fake.lock().request_log();
        assert_eq!(log.len(), 5);
        assert_eq!(log[1].path, "/api/v2/deals");
        assert!(!log[1].token_ok);
        assert_eq!(log[3].query, "limit=1");

        fake.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
