//! The one kind of request a connector can make: a read-only GET relative to the
//! integration's base URL, which the host holds. The host builds the URL, injects the
//! credentials, retries 429 and 5xx answers and caps the size and time of every answer.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::Deserialize;

use crate::codes;
use crate::types::ConnectorError;

/// A GET the connector asks the host to make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// A path relative to the base URL's path, starting with `/` (`/api/v2/deals`).
    /// Segments may hold ASCII letters, digits and `-._~`, and `%XX` escapes of anything
    /// but `/`, `\`, `.` and `%`; the host refuses anything else.
    pub path: String,
    /// Query parameters, unencoded; the host encodes them.
    pub query: Vec<(String, String)>,
    /// Extra request headers. The host allows only `accept`, `if-none-match`,
    /// `if-modified-since` and `sforce-query-options`.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// A GET of `path` with no query and no extra headers.
    pub fn get(path: &str) -> Self {
        HttpRequest { path: path.to_owned(), query: Vec::new(), headers: Vec::new() }
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds query parameters.
    pub fn queries(mut self, pairs: &[(&str, &str)]) -> Self {
        self.query.extend(pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The value of the first query parameter called `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The bytes of an answer's body.
///
/// It holds either a vector (what the host hands over) or a shared slice (what
/// [`crate::testing::FakeHost`] hands out without copying), and reads as `&[u8]` either way.
#[derive(Clone)]
pub struct Body(BodyRepr);

#[derive(Clone)]
enum BodyRepr {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Body {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            BodyRepr::Owned(bytes) => bytes,
            BodyRepr::Shared(bytes) => bytes,
        }
    }
}

impl Body {
    /// The same bytes, held so that clones share them instead of copying.
    pub fn into_shared(self) -> Body {
        match self.0 {
            BodyRepr::Owned(bytes) => Body(BodyRepr::Shared(bytes.into())),
            shared @ BodyRepr::Shared(_) => Body(shared),
        }
    }
}

impl Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(BodyRepr::Owned(bytes))
    }
}

impl From<Arc<[u8]>> for Body {
    fn from(bytes: Arc<[u8]>) -> Self {
        Body(BodyRepr::Shared(bytes))
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body(BodyRepr::Owned(text.as_bytes().to_vec()))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body(BodyRepr::Owned(text.into_bytes()))
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Body {}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.as_bytes().len())
    }
}

/// The answer to a request, after the host's retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// Response headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl HttpResponse {
    /// An answer with a status and a body, and no headers.
    pub fn new(status: u16, body: impl Into<Body>) -> Self {
        HttpResponse { status, headers: Vec::new(), body: body.into() }
    }

    /// Adds a header (its name is stored in lowercase).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The value of the first header called `name` (compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error a connector reports for this answer when it is not a success:
    /// [`codes::HTTP_UNAUTHORIZED`] for 401, [`codes::HTTP_FORBIDDEN`] for 403,
    /// [`codes::HTTP_RATE_LIMITED`] for 429 and [`codes::HTTP_STATUS`] otherwise, each with
    /// the status. `None` for a success.
    pub fn status_error(&self) -> Option<ConnectorError> {
        let code = match self.status {
            200..=299 => return None,
            401 => codes::HTTP_UNAUTHORIZED,
            403 => codes::HTTP_FORBIDDEN,
            429 => codes::HTTP_RATE_LIMITED,
            _ => codes::HTTP_STATUS,
        };
        Some(ConnectorError::with_status(code, self.status))
    }

    /// Decodes the body as JSON into `T`, which may borrow strings from the body.
    /// A body that does not decode is [`codes::BAD_JSON`] with the answer's status.
    ///
    /// The body is checked as UTF-8 once, as a whole, and then parsed as text: cheaper than
    /// checking each of the many short strings of a large page on its own.
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ConnectorError> {
        let bad = || ConnectorError::with_status(codes::BAD_JSON, self.status);
        let text = std::str::from_utf8(self.body.as_bytes()).map_err(|_| bad())?;
        serde_json::from_str(text).map_err(|_| bad())
    }

    /// Like [`HttpResponse::json`], through [`crate::json::skim`]: the same types, the same
    /// answers and the same errors, but the fields `T` ignores are only checked for syntax,
    /// never read (the Pipedrive connector's benchmark sync takes about a fifth less time
    /// with it). Prefer it for list pages of which a connector reads a few fields per
    /// record; not for types with `#[serde(deny_unknown_fields)]`, which it cannot honour.
    pub fn skim_json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ConnectorError> {
        let bad = || ConnectorError::with_status(codes::BAD_JSON, self.status);
        let text = std::str::from_utf8(self.body.as_bytes()).map_err(|_| bad())?;
        crate::json::skim::from_str(text).map_err(|_| bad())
    }
}

/// Why a request produced no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request broke a rule of the sandbox (path, header, host) and was not sent.
    Denied,
    /// The CRM did not answer in time.
    Timeout,
    /// The answer was larger than the host allows.
    TooLarge,
    /// The CRM could not be reached, or kept failing after the host's retries.
    Unavailable,
    /// The host could not obtain valid credentials for the CRM.
    Unauthorized,
    /// The CRM kept rate-limiting after the host's retries.
    RateLimited,
}

impl HttpError {
    /// The standard code a connector reports for this failure.
    pub fn code(self) -> &'static str {
        match self {
            HttpError::Denied => codes::HTTP_DENIED,
            HttpError::Timeout => codes::HTTP_TIMEOUT,
            HttpError::TooLarge => codes::HTTP_TOO_LARGE,
            HttpError::Unavailable => codes::HTTP_UNAVAILABLE,
            HttpError::Unauthorized => codes::HTTP_UNAUTHORIZED,
            HttpError::RateLimited => codes::HTTP_RATE_LIMITED,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for ConnectorError {
    fn from(error: HttpError) -> Self {
        ConnectorError::new(error.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_standard_codes() {
        let code = |status| HttpResponse::new(status, "").status_error().map(|e| e.code.into_owned());
        assert_eq!(code(200), None);
        assert_eq!(code(204), None);
        assert_eq!(code(401).as_deref(), Some(codes::HTTP_UNAUTHORIZED));
        assert_eq!(code(403).as_deref(), Some(codes::HTTP_FORBIDDEN));
        assert_eq!(code(429).as_deref(), Some(codes::HTTP_RATE_LIMITED));
        assert_eq!(code(500).as_deref(), Some(codes::HTTP_STATUS));
    }

    #[test]
    fn json_borrows_from_the_body_and_reports_bad_json() {
        let response = HttpResponse::new(200, r#"{"a":"x"}"#).with_header("X-Thing", "1");
        #[derive(Debug, Deserialize)]
        struct A<'a> {
            a: &'a str,
        }
        assert_eq!(response.json::<A<'_>>().unwrap().a, "x");
        assert_eq!(response.header("x-thing"), Some("1"));
        let bad = HttpResponse::new(200, "<html>");
        assert_eq!(bad.json::<A<'_>>().unwrap_err(), ConnectorError::with_status(codes::BAD_JSON, 200));
    }
}
