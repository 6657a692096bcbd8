//! `oneup connector check --record DIR`: every HTTP exchange of a run, secrets redacted, one
//! JSON file per exchange.
//!
//! What is redacted, always to the fixed marker [`MARKER`]:
//! - every request header outside the connector's allowlist (`accept`, `if-none-match`,
//!   `if-modified-since`, `sforce-query-options`) and `content-type`: the api-key header,
//!   `Authorization`, `BhRestToken`, cookies — their names are kept, their values are not;
//! - `set-cookie` response headers are dropped; credential-named response headers redacted;
//! - query parameters and form fields named like credentials ([`CREDENTIAL_PARAMS`]:
//!   `access_token`, `refresh_token`, `client_secret`, …), wherever they appear;
//! - in the answers of the host's own token and login calls, the values of the JSON fields
//!   `access_token`, `refresh_token`, `id_token` and `BhRestToken`; those values are also
//!   learnt as secrets for everything recorded after them;
//! - every value given with `--secret` (and every learnt token), wherever it appears: path,
//!   query, headers, request and response bodies, as it is and percent- or JSON-encoded.
//!   Values shorter than [`MIN_SUBSTRING_SECRET`] characters are replaced only where a whole
//!   value equals them (a substring that short would shred the rest of the recording).
//!
//! Files are written atomically (a hidden temporary file renamed into place), so an
//! interrupted run leaves whole exchanges only; `recording.json`, the index that `--replay`
//! needs, is written last, when the run ends.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use anyhow::Context as _;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::runtime::egress::ALLOWED_REQUEST_HEADERS;

/// What every redacted value becomes: URL-, header- and JSON-safe as it is.
pub const MARKER: &str = "oneup-redacted";

/// Query parameters and form fields whose values are credentials, whatever they hold
/// (compared case-insensitively).
pub const CREDENTIAL_PARAMS: [&str; 10] = [
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_id",
    "api_token",
    "api_key",
    "apikey",
    "bhresttoken",
    "password",
];

/// JSON fields of token and login answers whose values are credentials.
const CREDENTIAL_FIELDS: [&str; 4] = ["access_token", "refresh_token", "id_token", "bhresttoken"];

/// Response headers whose values are credentials.
const CREDENTIAL_RESPONSE_HEADERS: [&str; 4] = ["authorization", "bhresttoken", "x-api-token", "x-api-key"];

/// Response headers not worth keeping: they change with every run or describe the
/// connection, not the answer.
const VOLATILE_RESPONSE_HEADERS: [&str; 6] =
    ["date", "content-length", "transfer-encoding", "connection", "keep-alive", "set-cookie"];

/// Secrets shorter than this are redacted only where a whole value equals them.
pub const MIN_SUBSTRING_SECRET: usize = 4;

/// The name of a recording's index file.
pub const INDEX_FILE: &str = "recording.json";

/// The recording format written here.
pub const FORMAT: u32 = 1;

/// Who made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    /// The connector's GET, through the egress guard.
    Connector,
    /// The host's own token or login call (OAuth 2.0 refresh, Bullhorn login).
    Host,
}

/// Where a recorded path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Relative to the integration's base URL (its path prefix removed).
    Base,
    /// An absolute path on another origin or outside the base path (token and login URLs,
    /// Bullhorn's `restUrl`).
    Origin,
}

/// One exchange as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// Position in the run, from 1.
    pub seq: u64,
    /// Who sent it.
    pub caller: Caller,
    /// `GET`, `POST`.
    pub method: String,
    /// What `path` is relative to.
    pub scope: Scope,
    /// The path, then `?` and the query as sent (redacted).
    pub target: String,
    /// Request headers (credential values redacted).
    pub request_headers: BTreeMap<String, String>,
    /// The request body of a host call, redacted (form fields like the query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Response headers, lowercase names, in order (`set-cookie` dropped).
    pub response_headers: Vec<(String, String)>,
    /// The body, when it is JSON that reads back to the very same bytes (shown as JSON, so
    /// that a recording can be read and edited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// The body, when it is other UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hex: Option<String>,
}

impl Exchange {
    /// The key `--replay` matches requests by.
    pub fn key(&self) -> String {
        let (path, query) = self.target.split_once('?').unwrap_or((&self.target, ""));
        match_key(&self.method, self.scope, path, query)
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        match (&self.json, &self.body, &self.body_hex) {
            (Some(json), _, _) => serde_json::to_vec(json).unwrap_or_default(),
            (None, Some(text), _) => text.as_bytes().to_vec(),
            (None, None, Some(hex)) => hex::decode(hex).unwrap_or_default(),
            (None, None, None) => Vec::new(),
        }
    }
}

/// The index of a recording: what was recorded and with which settings (secret values never).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    /// [`FORMAT`].
    pub format: u32,
    /// The redaction marker used.
    pub marker: String,
    /// The connector's id.
    pub connector: String,
    /// The connector's version.
    pub version: String,
    /// The contract version it was built against.
    pub contract: String,
    /// The config key holding the base URL.
    pub base_url_key: String,
    /// The non-secret config of the run (secret values redacted if they appeared).
    pub config: BTreeMap<String, String>,
    /// The names of the secrets that were given (values never).
    pub secret_keys: Vec<String>,
    /// The exchange files, in order.
    pub exchanges: Vec<String>,
}

/// `METHOD scope path?sorted-query`: the identity of a request for replay. Query pairs are
/// decoded, credential-named ones set to the marker, and sorted.
pub fn match_key(method: &str, scope: Scope, path: &str, query: &str) -> String {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if is_credential_param(&k) { MARKER.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    pairs.sort();
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let scope = match scope {
        Scope::Base => "base",
        Scope::Origin => "origin",
    };
    format!("{} {scope} {path}?{query}", method.to_ascii_uppercase())
}

fn is_credential_param(name: &str) -> bool {
    CREDENTIAL_PARAMS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Replaces secrets by the marker; knows the base URL to make paths relative.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Secret values and every encoded form of them, longest first.
    secrets: RwLock<Vec<String>>,
    base: RwLock<Option<Url>>,
}

impl Redactor {
    /// A redactor for the values given with `--secret`.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let redactor = Self::default();
        for secret in secrets {
            redactor.learn(secret);
        }
        redactor
    }

    /// Sets the base URL requests are made relative to.
    pub fn set_base(&self, base: Option<Url>) {
        *self.base.write().unwrap_or_else(PoisonError::into_inner) = base;
    }

    /// Adds a value to redact from now on (and its encoded forms).
    pub fn learn(&self, secret: &str) {
        if secret.is_empty() || secret == MARKER {
            return;
        }
        let mut forms = vec![secret.to_owned()];
        forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        forms.push(percent_encode(secret));
        if let Ok(json) = serde_json::to_string(secret) {
            forms.push(json[1..json.len() - 1].to_owned());
        }
        let mut secrets = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        for form in forms {
            if !secrets.contains(&form) {
                secrets.push(form);
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `s` with every secret replaced by the marker.
    pub fn scrub(&self, s: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        if secrets.iter().any(|secret| secret == s) {
            return MARKER.to_owned();
        }
        let mut out = s.to_owned();
        for secret in secrets.iter().filter(|x| x.chars().count() >= MIN_SUBSTRING_SECRET) {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MARKER);
            }
        }
        out
    }

    fn scrub_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = bytes.to_vec();
        for secret in secrets.iter().filter(|x| x.chars().count() >= MIN_SUBSTRING_SECRET) {
            out = replace_bytes(&out, secret.as_bytes(), MARKER.as_bytes());
        }
        out
    }

    /// The scope and the redacted path of `url`.
    pub fn scope_and_path(&self, url: &Url) -> (Scope, String) {
        let base = self.base.read().unwrap_or_else(PoisonError::into_inner);
        let path = url.path();
        if let Some(base) = base.as_ref()
            && base.origin() == url.origin()
        {
            let prefix = base.path().trim_end_matches('/');
            if let Some(rest) = path.strip_prefix(prefix)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                let rest = if rest.is_empty() { "/" } else { rest };
                return (Scope::Base, self.scrub(rest));
            }
        }
        (Scope::Origin, self.scrub(path))
    }

    /// Redacted form pairs (a query string or a form body): credential-named fields and
    /// secrets replaced by the marker, order kept.
    pub fn form(&self, raw: &str) -> String {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| {
                let v = if is_credential_param(&k) { MARKER.to_owned() } else { self.scrub(&v) };
                (self.scrub(&k), v)
            })
            .collect();
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
    }

    /// The request's identity for replay, computed the way recorded ones are.
    pub fn key_of(&self, method: &str, url: &Url) -> String {
        let (scope, path) = self.scope_and_path(url);
        match_key(method, scope, &path, &self.form(url.query().unwrap_or("")))
    }

    /// An exchange, redacted, ready to store.
    #[allow(clippy::too_many_arguments)]
    pub fn exchange(
        &self,
        seq: u64,
        caller: Caller,
        method: &str,
        url: &Url,
        request_headers: &HeaderMap,
        request_body: &[u8],
        status: u16,
        response_headers: &HeaderMap,
        body: &[u8],
    ) -> Exchange {
        // Tokens in a host call's answer are credentials: learnt first, then redacted.
        let body = if caller == Caller::Host { self.redact_credential_fields(body) } else { body.to_vec() };
        let form_body = is_form(request_headers_content_type(request_headers));
        let (scope, path) = self.scope_and_path(url);
        let target = match url.query() {
            Some(query) => format!("{path}?{}", self.form(query)),
            None => path,
        };
        let request_headers = request_headers
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().to_ascii_lowercase();
                let keep = ALLOWED_REQUEST_HEADERS.contains(&name.as_str()) || name == "content-type";
                let value = match value.to_str() {
                    Ok(text) if keep => self.scrub(text),
                    _ => MARKER.to_owned(),
                };
                (name, value)
            })
            .collect();
        let request_body = (!request_body.is_empty()).then(|| match std::str::from_utf8(request_body) {
            Ok(text) if form_body => self.form(text),
            Ok(text) => self.scrub(text),
            Err(_) => MARKER.to_owned(),
        });
        let response_headers = response_headers
            .iter()
            .filter(|(name, _)| !VOLATILE_RESPONSE_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| {
                let name = name.as_str().to_ascii_lowercase();
                let value = match value.to_str() {
                    Ok(_) if CREDENTIAL_RESPONSE_HEADERS.contains(&name.as_str()) => MARKER.to_owned(),
                    Ok(text) => self.scrub(text),
                    Err(_) => MARKER.to_owned(),
                };
                (name, value)
            })
            .collect();
        let (json, body, body_hex) = match String::from_utf8(body) {
            Ok(text) => {
                let text = self.scrub(&text);
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(json) if serde_json::to_string(&json).is_ok_and(|again| again == text) => {
                        (Some(json), None, None)
                    }
                    _ => (None, Some(text), None),
                }
            }
            Err(e) => (None, None, Some(hex::encode(self.scrub_bytes(e.as_bytes())))),
        };
        Exchange {
            seq,
            caller,
            method: method.to_ascii_uppercase(),
            scope,
            target,
            request_headers,
            request_body,
            status,
            response_headers,
            json,
            body,
            body_hex,
        }
    }

    /// A JSON answer with the values of [`CREDENTIAL_FIELDS`] learnt and replaced; other
    /// bodies as they are.
    fn redact_credential_fields(&self, body: &[u8]) -> Vec<u8> {
        let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else {
            return body.to_vec();
        };
        let mut found = Vec::new();
        redact_fields(&mut json, &mut found);
        if found.is_empty() {
            return body.to_vec();
        }
        for token in &found {
            self.learn(token);
        }
        serde_json::to_vec(&json).unwrap_or_default()
    }
}

fn request_headers_content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

fn redact_fields(value: &mut serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if CREDENTIAL_FIELDS.iter().any(|c| c.eq_ignore_ascii_case(key)) {
                    if let serde_json::Value::String(token) = field {
                        found.push(std::mem::replace(token, MARKER.to_owned()));
                    } else if !field.is_null() {
                        *field = serde_json::Value::String(MARKER.to_owned());
                    }
                } else {
                    redact_fields(field, found);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| redact_fields(item, found)),
        _ => {}
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`%20` for a space).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Writes the exchanges of a run into a folder.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    redactor: Arc<Redactor>,
    state: Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    seq: u64,
    files: Vec<String>,
    /// Keys and answers already written: an identical exchange is stored once.
    seen: HashSet<(String, u16, Vec<u8>)>,
    /// The first write error, reported at the end.
    failed: Option<String>,
}

impl Recorder {
    /// Prepares `dir`: created owner-only (0700) if missing, made owner-only if it was not;
    /// an earlier recording in it is replaced; a folder holding anything else is refused.
    /// Prints a notice: a recording holds the CRM's answers, personal data included.
    pub fn create(dir: &Path, redactor: Arc<Redactor>) -> anyhow::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} owner-only", dir.display()))?;
        }
        eprintln!(
            "notice: {} will hold the CRM's answers, with the personal data in them (names, e-mails, deals); \
             secrets are redacted. It is readable by you only (0700): keep it so, and delete it when done.",
            dir.display()
        );
        let mut ours = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_exchange_file(&name) || name == INDEX_FILE || (name.starts_with('.') && name.ends_with(".tmp")) {
                ours.push(entry.path());
            } else {
                anyhow::bail!(
                    "{} holds `{name}`, which is not part of a recording: give --record an empty or new folder",
                    dir.display()
                );
            }
        }
        for path in ours {
            std::fs::remove_file(&path).with_context(|| format!("cannot replace {}", path.display()))?;
        }
        Ok(Self { dir: dir.to_path_buf(), redactor, state: Mutex::new(RecorderState::default()) })
    }

    /// Stores one exchange (once, if an identical one was stored before).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        caller: Caller,
        method: &str,
        url: &Url,
        request_headers: &HeaderMap,
        request_body: &[u8],
        status: u16,
        response_headers: &HeaderMap,
        body: &[u8],
    ) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let exchange = self.redactor.exchange(
            state.seq + 1,
            caller,
            method,
            url,
            request_headers,
            request_body,
            status,
            response_headers,
            body,
        );
        if !state.seen.insert((exchange.key(), exchange.status, exchange.body_bytes())) {
            return;
        }
        state.seq += 1;
        let name = format!("{:04}.json", state.seq);
        match serde_json::to_vec_pretty(&exchange)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| write_atomically(&self.dir, &name, &bytes))
        {
            Ok(()) => state.files.push(name),
            Err(e) => {
                state.failed.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    /// Writes the index, last. Returns how many exchanges were stored.
    pub fn finish(&self, mut index: Index) -> anyhow::Result<usize> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = &state.failed {
            anyhow::bail!("the recording in {} is incomplete: {e}", self.dir.display());
        }
        index.config = index.config.into_iter().map(|(k, v)| (k, self.redactor.scrub(&v))).collect();
        index.exchanges = state.files.clone();
        let bytes = serde_json::to_vec_pretty(&index)?;
        write_atomically(&self.dir, INDEX_FILE, &bytes)?;
        Ok(state.files.len())
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `0001.json` and the like.
fn is_exchange_file(name: &str) -> bool {
    name.strip_suffix(".json").is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes `name` in `dir` through a temporary file and a rename.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let target = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn text(exchange: &Exchange) -> String {
        serde_json::to_string(exchange).unwrap()
    }

    #[test]
    fn api_key_headers_and_secret_values_never_reach_the_file() {
        let redactor = Redactor::new(["key-4711-secret"]);
        redactor.set_base(Some(Url::parse("https://acme.example-crm.com/crm").unwrap()));
        let url = Url::parse("https://acme.example-crm.com/crm/api/v1/deals?page=2&echo=key-4711-secret").unwrap();
        let exchange = redactor.exchange(
            1,
            Caller::Connector,
            "GET",
            &url,
            &headers(&[("x-api-key", "key-4711-secret"), ("accept", "application/json"), ("cookie", "sid=abc")]),
            &[],
            200,
            &headers(&[("set-cookie", "sid=xyz"), ("content-type", "application/json")]),
            br#"{"items":[],"note":"your key is key-4711-secret"}"#,
        );
        let stored = text(&exchange);
        assert!(!stored.contains("key-4711-secret"), "{stored}");
        assert!(!stored.contains("sid="), "cookies: {stored}");
        assert_eq!(exchange.scope, Scope::Base);
        assert_eq!(exchange.target, format!("/api/v1/deals?page=2&echo={MARKER}"));
        assert_eq!(exchange.request_headers["x-api-key"], MARKER);
        assert_eq!(exchange.request_headers["accept"], "application/json");
        assert_eq!(exchange.response_headers, [("content-type".to_owned(), "application/json".to_owned())]);
        assert_eq!(exchange.body_bytes(), br#"{"items":[],"note":"your key is oneup-redacted"}"#);
        assert!(exchange.json.is_some(), "compact JSON is kept as JSON");
        // JSON that would not read back to the same bytes is kept as text.
        let spaced = redactor.exchange(
            1,
            Caller::Connector,
            "GET",
            &url,
            &HeaderMap::new(),
            &[],
            200,
            &HeaderMap::new(),
            b"{ \"a\": 1.50 }",
        );
        assert_eq!((spaced.json.is_none(), spaced.body_bytes()), (true, b"{ \"a\": 1.50 }".to_vec()));
    }

    #[test]
    fn oauth_form_bodies_and_token_answers_are_redacted_and_tokens_learnt() {
        let redactor = Redactor::new(["client-77", "s3cr3t/with+chars", "rt-first-one"]);
        let url = Url::parse("https://login.example.com/services/oauth2/token").unwrap();
        let form = "grant_type=refresh_token&refresh_token=rt-first-one&client_id=client-77&client_secret=s3cr3t%2Fwith%2Bchars";
        let answer = br#"{"access_token":"at-fresh-9f2","refresh_token":"rt-second-two","instance_url":"https://x.example.com","expires_in":3600}"#;
        let exchange = redactor.exchange(
            1,
            Caller::Host,
            "POST",
            &url,
            &headers(&[("content-type", "application/x-www-form-urlencoded")]),
            form.as_bytes(),
            200,
            &HeaderMap::new(),
            answer,
        );
        let stored = text(&exchange);
        for secret in ["rt-first-one", "client-77", "s3cr3t", "at-fresh-9f2", "rt-second-two"] {
            assert!(!stored.contains(secret), "{secret}: {stored}");
        }
        assert!(stored.contains("instance_url"), "the rest of the answer is kept: {stored}");
        assert_eq!(exchange.scope, Scope::Origin);

        // The learnt access token is redacted from later exchanges: Bullhorn's login query
        // and a bearer header.
        let login =
            Url::parse("https://rest.example.com/rest-services/login?version=*&access_token=at-fresh-9f2").unwrap();
        let exchange = redactor.exchange(
            2,
            Caller::Host,
            "GET",
            &login,
            &headers(&[("authorization", "Bearer at-fresh-9f2")]),
            &[],
            200,
            &HeaderMap::new(),
            br#"{"BhRestToken":"bh-55aa","restUrl":"https://rest9.example.com/rest-services/corp/"}"#,
        );
        let stored = text(&exchange);
        assert!(!stored.contains("at-fresh-9f2") && !stored.contains("bh-55aa"), "{stored}");
        assert!(stored.contains("rest9.example.com"), "{stored}");
        // A later connector answer echoing the session token loses it too.
        assert_eq!(redactor.scrub("token=bh-55aa;"), format!("token={MARKER};"));
    }

    #[test]
    fn encoded_and_short_secrets() {
        let redactor = Redactor::new(["a b&c=d/é", "xy"]);
        assert_eq!(redactor.scrub("q=a+b%26c%3Dd%2F%C3%A9"), format!("q={MARKER}"));
        assert_eq!(redactor.scrub("q=a%20b%26c%3Dd%2F%C3%A9"), format!("q={MARKER}"));
        // Two characters: only a whole value.
        assert_eq!(redactor.scrub("xy"), MARKER);
        assert_eq!(redactor.scrub("proxy"), "proxy");
    }

    #[test]
    fn match_keys_ignore_credential_values_and_pair_order() {
        let a = match_key("get", Scope::Origin, "/login", "version=*&access_token=at-1");
        let b = match_key("GET", Scope::Origin, "/login", &format!("access_token={MARKER}&version=%2A"));
        assert_eq!(a, b);
        assert_ne!(a, match_key("GET", Scope::Origin, "/login", "version=2&access_token=at-1"));
    }

    #[test]
    fn recordings_refuse_foreign_folders_and_write_whole_files() {
        let dir = std::env::temp_dir().join(format!("oneup-record-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let redactor = Arc::new(Redactor::new(["k-123456"]));
        let refused = Recorder::create(&dir, redactor.clone()).unwrap_err();
        assert!(refused.to_string().contains("notes.txt"), "{refused}");
        std::fs::remove_file(dir.join("notes.txt")).unwrap();

        let recorder = Recorder::create(&dir, redactor).unwrap();
        let url = Url::parse("https://x.example.com/a?p=1").unwrap();
        for _ in 0..2 {
            recorder.record(Caller::Connector, "GET", &url, &HeaderMap::new(), &[], 200, &HeaderMap::new(), b"{}");
        }
        let index = Index {
            format: FORMAT,
            marker: MARKER.into(),
            connector: "t".into(),
            version: "1".into(),
            contract: "0.2.0".into(),
            base_url_key: "base_url".into(),
            config: BTreeMap::from([("base_url".into(), "https://x.example.com".into())]),
            secret_keys: vec!["api_key".into()],
            exchanges: vec![],
        };
        assert_eq!(recorder.finish(index).unwrap(), 1, "an identical exchange is stored once");
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["0001.json", INDEX_FILE]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
