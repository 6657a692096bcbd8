//! The IO-free request/response model shared by every fake CRM.
//!
//! A fake is a [`Responder`]: a pure function from (method, path, query, headers) to a
//! [`Response`]. The loopback server in [`crate::server`] is a thin wrapper around it, and the
//! benchmark calls it directly from memory.

use std::borrow::Cow;
use std::time::Duration;

/// One HTTP response, fully rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, lowercase names, in the order they are sent.
    pub headers: Vec<(&'static str, String)>,
    /// The body (JSON for every fake so far).
    pub body: Vec<u8>,
    /// How long the server should wait before answering (set by an injected delay fault). Code
    /// that calls a responder directly may honour or ignore it.
    pub delay: Option<Duration>,
}

impl Response {
    /// A JSON response with the given status and body.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self { status, headers: vec![("content-type", "application/json".to_owned())], body, delay: None }
    }

    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (for tests; panics if it is not JSON).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("fake CRM bodies are JSON")
    }
}

/// A fake CRM API: answers one request at a time from its in-memory state.
pub trait Responder: Send + 'static {
    /// Answers one request. `path` has no query; `query` is the raw query string without `?`
    /// (empty if none); header names are matched case-insensitively.
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response;
}

/// A parsed query string: percent-decoded pairs in their original order.
#[derive(Debug, Default)]
pub(crate) struct Query<'q> {
    pairs: Vec<(Cow<'q, str>, Cow<'q, str>)>,
}

impl<'q> Query<'q> {
    /// Splits and decodes `a=1&b=x%2Cy` (`+` is a space, as in HTML forms).
    pub(crate) fn parse(raw: &'q str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Self { pairs }
    }

    /// The first value given for `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn decodes_query_strings() {
        let q = Query::parse("status=won%2Clost&updated_since=2025-06-01T00%3A00%3A00Z&a+b=c+d&x");
        assert_eq!(q.get("status"), Some("won,lost"));
        assert_eq!(q.get("updated_since"), Some("2025-06-01T00:00:00Z"));
        assert_eq!(q.get("a b"), Some("c d"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("y"), None);
        assert_eq!(Query::parse("p=%zz%4").get("p"), Some("%zz%4"));
    }
}
