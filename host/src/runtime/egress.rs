//! The egress guard: the only way a connector's request becomes a URL the host will fetch.
//!
//! A connector never names a host. It declares, at install, the host names its base URL may
//! have (`allowed-hosts`), the operator configures the base URL, and every request the
//! connector makes is a *path relative to that base URL* plus query pairs and a handful of
//! harmless headers. This module turns those pieces into a [`url::Url`] or refuses them.
//!
//! The guard denies by default: an empty allowlist allows nothing, there is no allow-all
//! switch, and every rule is a positive list of what may pass (path bytes, header names)
//! rather than a list of known-bad inputs. The host builds the URL itself, so tricks such as
//! a connector-chosen `Host` header, an `@` that turns a path into userinfo, or `..` and
//! percent-encoded separators that climb out of the base path cannot change where a request
//! goes. After building, the origin is compared with the base again as defence in depth.
//!
//! Every denial emits one structured `tracing` event (target `oneup::egress`) carrying a
//! stable reason code and only numbers (offsets, lengths, indexes): a refused path may be a
//! connector smuggling customer data, so it is never logged verbatim. The caller is expected
//! to run inside a span that names the connector and integration.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use url::{Host, Url};

/// The longest request path the guard accepts, in bytes.
pub const MAX_PATH_LEN: usize = 2048;
/// The most query pairs one request may carry.
pub const MAX_QUERY_PAIRS: usize = 64;
/// The longest query key, in bytes.
pub const MAX_QUERY_KEY_LEN: usize = 128;
/// The longest query value, in bytes (long enough for a SOQL query).
pub const MAX_QUERY_VALUE_LEN: usize = 4096;
/// The longest request header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 256;
/// The request headers a connector may set, in lowercase. The host sets every other header.
pub const ALLOWED_REQUEST_HEADERS: [&str; 4] = ["accept", "if-none-match", "if-modified-since", "sforce-query-options"];

/// The longest DNS name, in bytes.
const MAX_HOST_LEN: usize = 253;
/// The longest DNS label, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// Why a request, a base URL or an allowlist entry was refused.
///
/// No variant carries a string the connector or the CRM produced: only reason codes,
/// offsets, lengths and indexes, so an error can be logged and stored safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// An `allowed-hosts` entry is not a valid pattern.
    #[error("allowed-hosts entry {index} is invalid: {problem}")]
    InvalidPattern {
        /// The position of the entry in the declared list.
        index: usize,
        /// What is wrong with it.
        problem: PatternProblem,
    },
    /// The base URL does not parse as an absolute URL.
    #[error("the base URL is not a valid absolute URL")]
    BaseUrlUnparsable,
    /// The base URL's scheme is not `https` (nor `http` on loopback when that is allowed).
    #[error("the base URL must use https (http only on loopback, when allowed)")]
    BaseUrlScheme,
    /// A plain-http loopback base URL on a host that does not allow them.
    #[error(
        "the base URL is plain http on loopback: use https, or allow loopback URLs with ONEUP_ALLOW_LOOPBACK_HTTP=1 (tests and demos only)"
    )]
    LoopbackHttpNotAllowed,
    /// The base URL carries a user name or password.
    #[error("the base URL must not carry userinfo")]
    BaseUrlUserinfo,
    /// The base URL carries a query or a fragment.
    #[error("the base URL must not carry a query or a fragment")]
    BaseUrlQueryOrFragment,
    /// The base URL names a port other than 443 on an https host.
    #[error("the base URL must not name a port other than 443")]
    BaseUrlPort,
    /// The base URL's host matches none of the declared patterns (or is an IP address).
    #[error("the base URL's host is not in the connector's allowed hosts")]
    BaseUrlHostNotAllowed,
    /// The base URL's path is not made of plain segments.
    #[error("the base URL's path is not made of plain segments")]
    BaseUrlPath,
    /// The request path is longer than [`MAX_PATH_LEN`].
    #[error("the path is {len} bytes long, more than the {max} allowed")]
    PathTooLong {
        /// The length of the refused path, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request path does not start with `/` (absolute URLs and `\` land here too).
    #[error("the path must start with '/'")]
    PathNotRelative,
    /// The request path has an empty segment (`//`).
    #[error("the path has an empty segment at byte {offset}")]
    PathEmptySegment {
        /// The byte offset of the segment in the path.
        offset: usize,
    },
    /// The request path has a `.` or `..` segment.
    #[error("the path has a dot segment at byte {offset}")]
    PathDotSegment {
        /// The byte offset of the segment in the path.
        offset: usize,
    },
    /// The request path has a byte that may not appear in a segment.
    #[error("the path has a forbidden character ({class}) at byte {offset}")]
    PathForbiddenChar {
        /// The byte offset of the character in the path.
        offset: usize,
        /// What kind of character it is.
        class: CharClass,
    },
    /// The request path has a `%` not followed by two hexadecimal digits.
    #[error("the path has a malformed percent escape at byte {offset}")]
    PathMalformedEscape {
        /// The byte offset of the `%` in the path.
        offset: usize,
    },
    /// The request path escapes a separator, a dot, a `%` or a control character.
    #[error("the path has a forbidden percent escape at byte {offset}")]
    PathForbiddenEscape {
        /// The byte offset of the `%` in the path.
        offset: usize,
    },
    /// The request has more than [`MAX_QUERY_PAIRS`] query pairs.
    #[error("the request has {count} query pairs, more than the {max} allowed")]
    TooManyQueryPairs {
        /// How many pairs the request has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A query key is empty or longer than [`MAX_QUERY_KEY_LEN`].
    #[error("query key {index} is empty or too long ({len} bytes)")]
    QueryKeyInvalid {
        /// The position of the pair.
        index: usize,
        /// The length of the key, in bytes.
        len: usize,
    },
    /// A query value is longer than [`MAX_QUERY_VALUE_LEN`].
    #[error("query value {index} is too long ({len} bytes)")]
    QueryValueTooLong {
        /// The position of the pair.
        index: usize,
        /// The length of the value, in bytes.
        len: usize,
    },
    /// The URL the host built does not have the base URL's origin or path prefix. This is a
    /// bug in the guard if it ever happens: the check exists as defence in depth.
    #[error("the built URL left the base URL's origin or path")]
    OriginMismatch,
    /// A redirect points to another origin.
    #[error("the redirect points to another origin")]
    RedirectCrossOrigin,
    /// A request header is not one a connector may set.
    #[error("request header {index} is not one a connector may set")]
    HeaderNotAllowed {
        /// The position of the header in the request.
        index: usize,
    },
    /// A request header is set twice.
    #[error("request header {index} repeats an earlier header")]
    HeaderDuplicate {
        /// The position of the repeated header in the request.
        index: usize,
    },
    /// A request header value has a byte outside printable ASCII or is too long.
    #[error("request header {index} has an invalid value ({len} bytes)")]
    HeaderValueInvalid {
        /// The position of the header in the request.
        index: usize,
        /// The length of the value, in bytes.
        len: usize,
    },
}

impl EgressError {
    /// A stable snake_case reason code, for logs, metrics and the sync run's counters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidPattern { .. } => "invalid_host_pattern",
            Self::BaseUrlUnparsable => "base_url_unparsable",
            Self::BaseUrlScheme => "base_url_scheme",
            Self::LoopbackHttpNotAllowed => "loopback_http_not_allowed",
            Self::BaseUrlUserinfo => "base_url_userinfo",
            Self::BaseUrlQueryOrFragment => "base_url_query_or_fragment",
            Self::BaseUrlPort => "base_url_port",
            Self::BaseUrlHostNotAllowed => "base_url_host_not_allowed",
            Self::BaseUrlPath => "base_url_path",
            Self::PathTooLong { .. } => "path_too_long",
            Self::PathNotRelative => "path_not_relative",
            Self::PathEmptySegment { .. } => "path_empty_segment",
            Self::PathDotSegment { .. } => "path_dot_segment",
            Self::PathForbiddenChar { .. } => "path_forbidden_char",
            Self::PathMalformedEscape { .. } => "path_malformed_escape",
            Self::PathForbiddenEscape { .. } => "path_forbidden_escape",
            Self::TooManyQueryPairs { .. } => "too_many_query_pairs",
            Self::QueryKeyInvalid { .. } => "query_key_invalid",
            Self::QueryValueTooLong { .. } => "query_value_too_long",
            Self::OriginMismatch => "origin_mismatch",
            Self::RedirectCrossOrigin => "redirect_cross_origin",
            Self::HeaderNotAllowed { .. } => "header_not_allowed",
            Self::HeaderDuplicate { .. } => "header_duplicate",
            Self::HeaderValueInvalid { .. } => "header_value_invalid",
        }
    }
}

/// What is wrong with an `allowed-hosts` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternProblem {
    /// The entry is empty.
    #[error("empty")]
    Empty,
    /// The entry is longer than a DNS name may be.
    #[error("too long")]
    TooLong,
    /// The entry is `*` alone, which would allow every host.
    #[error("a bare wildcard allows every host")]
    BareWildcard,
    /// A wildcard is followed by fewer than two labels (`*.com`).
    #[error("a wildcard must be followed by at least two labels")]
    WildcardTooBroad,
    /// A `*` appears other than as the whole first label.
    #[error("a wildcard may only be the whole first label")]
    WildcardPosition,
    /// An exact name has a single label (`localhost`, `intranet`).
    #[error("a host name must have at least two labels")]
    SingleLabel,
    /// The entry is, or ends like, an IP address.
    #[error("IP addresses are not allowed")]
    IpAddress,
    /// The entry names a port.
    #[error("ports are not allowed")]
    Port,
    /// A label is empty, too long, starts or ends with `-`, or has a character outside
    /// ASCII letters, digits and `-` (this includes a trailing dot).
    #[error("a label is not a valid DNS label")]
    BadLabel,
}

/// What kind of character made a path invalid, so a denial can say why without quoting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `@`, which would start userinfo in an authority.
    At,
    /// `:`, which would separate a scheme or a port.
    Colon,
    /// `\`, which WHATWG URL parsers treat as `/`.
    Backslash,
    /// `?`, which would start a query (the host encodes queries itself).
    QuestionMark,
    /// `#`, which would start a fragment.
    Hash,
    /// A space, tab or line break.
    Whitespace,
    /// Another ASCII control character.
    Control,
    /// A byte outside ASCII.
    NonAscii,
    /// Any other ASCII punctuation that is not unreserved.
    Other,
}

impl CharClass {
    /// Classifies a byte that is not allowed in a path segment.
    fn of(byte: u8) -> Self {
        match byte {
            b'@' => Self::At,
            b':' => Self::Colon,
            b'\\' => Self::Backslash,
            b'?' => Self::QuestionMark,
            b'#' => Self::Hash,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => Self::Whitespace,
            0x00..=0x1f | 0x7f => Self::Control,
            0x80..=0xff => Self::NonAscii,
            _ => Self::Other,
        }
    }

    /// A stable snake_case name for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::At => "at",
            Self::Colon => "colon",
            Self::Backslash => "backslash",
            Self::QuestionMark => "question_mark",
            Self::Hash => "hash",
            Self::Whitespace => "whitespace",
            Self::Control => "control",
            Self::NonAscii => "non_ascii",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for CharClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Emits the structured event for a denial and hands the error back.
fn denied(err: EgressError) -> EgressError {
    // The error's Display holds only codes and numbers, so it is safe to log.
    tracing::warn!(target: "oneup::egress", reason = err.code(), detail = %err, "egress denied");
    err
}

/// One entry of a connector's `allowed-hosts`: an exact host name or a one-label wildcard.
///
/// Names are stored in lowercase. `*.pipedrive.com` matches `acme.pipedrive.com` but neither
/// `pipedrive.com` nor `a.b.pipedrive.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// The name without the wildcard label, in lowercase.
    name: String,
    /// Whether the pattern is `*.` followed by `name`.
    wildcard: bool,
}

impl HostPattern {
    /// Parses one declared entry, normalising it to lowercase.
    pub fn parse(pattern: &str) -> Result<Self, PatternProblem> {
        if pattern.is_empty() {
            return Err(PatternProblem::Empty);
        }
        if pattern == "*" {
            return Err(PatternProblem::BareWildcard);
        }
        let (wildcard, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if name.len() > MAX_HOST_LEN {
            return Err(PatternProblem::TooLong);
        }
        if name.contains('*') {
            return Err(PatternProblem::WildcardPosition);
        }
        if name.starts_with('[') || name.matches(':').count() > 1 {
            return Err(PatternProblem::IpAddress);
        }
        if name.contains(':') {
            return Err(PatternProblem::Port);
        }
        let name = name.to_ascii_lowercase();
        let mut labels = 0usize;
        let mut last = "";
        for label in name.split('.') {
            if !is_dns_label(label) {
                return Err(PatternProblem::BadLabel);
            }
            labels += 1;
            last = label;
        }
        // A name whose last label starts with a digit is an IPv4 address in some notation
        // (WHATWG URL parsing treats it so); no top-level domain starts with a digit.
        if last.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Err(PatternProblem::IpAddress);
        }
        if labels < 2 {
            return Err(if wildcard { PatternProblem::WildcardTooBroad } else { PatternProblem::SingleLabel });
        }
        Ok(Self { name, wildcard })
    }

    /// Whether `host` (a lowercase DNS name, as [`url::Url`] gives it) matches the pattern.
    pub fn matches(&self, host: &str) -> bool {
        if !self.wildcard {
            return host == self.name;
        }
        match host.strip_suffix(self.name.as_str()).and_then(|rest| rest.strip_suffix('.')) {
            Some(label) => !label.is_empty() && !label.contains('.'),
            None => false,
        }
    }

    /// Whether the pattern is a wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl FromStr for HostPattern {
    type Err = PatternProblem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)
    }
}

/// Whether `label` is a DNS label: 1 to 63 ASCII letters, digits and inner hyphens.
fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Parses a connector's declared `allowed-hosts` list. An empty list is valid and allows
/// nothing.
pub fn parse_patterns<S: AsRef<str>>(declared: &[S]) -> Result<Vec<HostPattern>, EgressError> {
    declared
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            HostPattern::parse(entry.as_ref()).map_err(|problem| denied(EgressError::InvalidPattern { index, problem }))
        })
        .collect()
}

/// Where one integration's requests may go: its base URL, checked against the connector's
/// declared hosts.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// The declared patterns the base URL was checked against.
    patterns: Vec<HostPattern>,
    /// The base URL, without query or fragment.
    base: Url,
    /// The base URL's path without its trailing `/` (empty for a root base URL).
    prefix: String,
}

impl EgressPolicy {
    /// Checks a base URL against the declared patterns.
    ///
    /// The base URL must be `https` on a host that matches a pattern, on the default port,
    /// without userinfo, query or fragment. Only when `allow_loopback_http` is set (local
    /// development and tests against a fake CRM), `http` on a loopback host (`127.0.0.0/8`,
    /// `[::1]`, `localhost`) is accepted on any port without matching a pattern. The base
    /// URL may have a path prefix (Bullhorn's `/rest-services/7xq9zc/`); request paths are
    /// appended to it.
    pub fn new(patterns: &[HostPattern], base_url: &str, allow_loopback_http: bool) -> Result<Self, EgressError> {
        let base = Url::parse(base_url).map_err(|_| denied(EgressError::BaseUrlUnparsable))?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(denied(EgressError::BaseUrlUserinfo));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(denied(EgressError::BaseUrlQueryOrFragment));
        }
        match base.scheme() {
            "https" => {
                if base.port().is_some() {
                    // The url crate drops an explicit default port, so any port left is
                    // another one.
                    return Err(denied(EgressError::BaseUrlPort));
                }
                let allowed = match base.host() {
                    Some(Host::Domain(host)) => patterns.iter().any(|p| p.matches(host)),
                    _ => false,
                };
                if !allowed {
                    return Err(denied(EgressError::BaseUrlHostNotAllowed));
                }
            }
            "http" if allow_loopback_http => {
                if !base.host().as_ref().is_some_and(is_loopback) {
                    return Err(denied(EgressError::BaseUrlScheme));
                }
            }
            "http" if base.host().as_ref().is_some_and(is_loopback) => {
                return Err(denied(EgressError::LoopbackHttpNotAllowed));
            }
            _ => return Err(denied(EgressError::BaseUrlScheme)),
        }
        let prefix = base.path().trim_end_matches('/').to_owned();
        if !prefix.is_empty() && check_path(&prefix).is_err() {
            return Err(denied(EgressError::BaseUrlPath));
        }
        Ok(Self { patterns: patterns.to_vec(), base, prefix })
    }

    /// Parses the declared `allowed-hosts` and checks the base URL against them, in one step.
    pub fn from_declared<S: AsRef<str>>(
        allowed_hosts: &[S],
        base_url: &str,
        allow_loopback_http: bool,
    ) -> Result<Self, EgressError> {
        Self::new(&parse_patterns(allowed_hosts)?, base_url, allow_loopback_http)
    }

    /// The base URL every request is relative to.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The declared host patterns.
    pub fn patterns(&self) -> &[HostPattern] {
        &self.patterns
    }

    /// Builds the URL for a connector's request, or refuses it.
    ///
    /// `path` is relative to the base URL's path and must start with `/`. Each segment may
    /// hold ASCII letters, digits, `-._~` and `%XX` escapes, except escapes of `/`, `\`, `.`,
    /// `%` and control characters; `.`, `..` and empty segments are refused (a single trailing
    /// `/` is allowed). Query pairs are percent-encoded by the host.
    pub fn build_url(&self, path: &str, query: &[(String, String)]) -> Result<Url, EgressError> {
        // Per-request denials are logged by the session, a bounded number per sync.
        check_path(path)?;
        check_query(query)?;

        let mut full = String::with_capacity(self.prefix.len() + path.len());
        full.push_str(&self.prefix);
        full.push_str(path);

        let mut url = self.base.clone();
        url.set_path(&full);
        if query.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }

        // Defence in depth: the checks above admit nothing the URL parser would reinterpret,
        // so the path must come out exactly as built and the origin must be the base's.
        if url.path() != full || !self.is_same_origin(&url) || url.fragment().is_some() {
            return Err(EgressError::OriginMismatch);
        }
        Ok(url)
    }

    /// Whether `url` has the base URL's scheme, host and port (for following redirects).
    pub fn is_same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host() == self.base.host()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Refuses a redirect to another origin or one that carries userinfo, with a denial
    /// event.
    pub fn check_redirect(&self, url: &Url) -> Result<(), EgressError> {
        if self.is_same_origin(url) && url.username().is_empty() && url.password().is_none() {
            Ok(())
        } else {
            Err(denied(EgressError::RedirectCrossOrigin))
        }
    }
}

/// Whether a host is a loopback address or `localhost`.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => *name == "localhost",
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => *ip == Ipv6Addr::LOCALHOST,
    }
}

/// Checks a request path against the segment rules (see [`EgressPolicy::build_url`]).
fn check_path(path: &str) -> Result<(), EgressError> {
    let bytes = path.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(EgressError::PathTooLong { len: bytes.len(), max: MAX_PATH_LEN });
    }
    if bytes.first() != Some(&b'/') {
        return Err(EgressError::PathNotRelative);
    }
    let mut start = 1;
    loop {
        let end = bytes[start..].iter().position(|&b| b == b'/').map_or(bytes.len(), |i| start + i);
        check_segment(bytes, start, end)?;
        if end == bytes.len() {
            return Ok(());
        }
        start = end + 1;
    }
}

/// Checks the segment `bytes[start..end]` of a path.
fn check_segment(bytes: &[u8], start: usize, end: usize) -> Result<(), EgressError> {
    let segment = &bytes[start..end];
    if segment.is_empty() {
        // Only the very end may be empty: that is a trailing `/` (or the root path `/`).
        return if end == bytes.len() { Ok(()) } else { Err(EgressError::PathEmptySegment { offset: start }) };
    }
    if segment == b"." || segment == b".." {
        return Err(EgressError::PathDotSegment { offset: start });
    }
    let mut i = start;
    while i < end {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            i += 1;
            continue;
        }
        if b != b'%' {
            return Err(EgressError::PathForbiddenChar { offset: i, class: CharClass::of(b) });
        }
        let decoded = match (hex_value(bytes, i + 1, end), hex_value(bytes, i + 2, end)) {
            (Some(hi), Some(lo)) => (hi << 4) | lo,
            _ => return Err(EgressError::PathMalformedEscape { offset: i }),
        };
        if decoded < 0x20 || matches!(decoded, b'/' | b'\\' | b'.' | b'%' | 0x7f) {
            return Err(EgressError::PathForbiddenEscape { offset: i });
        }
        i += 3;
    }
    Ok(())
}

/// The value of the hexadecimal digit at `bytes[i]`, if `i` is before `end` and it is one.
fn hex_value(bytes: &[u8], i: usize, end: usize) -> Option<u8> {
    if i >= end {
        return None;
    }
    match bytes[i] {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks the size of a request's query pairs; their content is encoded by the host.
fn check_query(query: &[(String, String)]) -> Result<(), EgressError> {
    if query.len() > MAX_QUERY_PAIRS {
        return Err(EgressError::TooManyQueryPairs { count: query.len(), max: MAX_QUERY_PAIRS });
    }
    for (index, (key, value)) in query.iter().enumerate() {
        if key.is_empty() || key.len() > MAX_QUERY_KEY_LEN {
            return Err(EgressError::QueryKeyInvalid { index, len: key.len() });
        }
        if value.len() > MAX_QUERY_VALUE_LEN {
            return Err(EgressError::QueryValueTooLong { index, len: value.len() });
        }
    }
    Ok(())
}

/// Checks the headers a connector asked for and returns them with canonical lowercase names.
///
/// Only the names in [`ALLOWED_REQUEST_HEADERS`] pass (compared case-insensitively), each at
/// most once, with a value of printable ASCII (no CR or LF) of at most
/// [`MAX_HEADER_VALUE_LEN`] bytes. Everything else, notably `host`, `authorization`, `cookie`
/// and credential headers such as `x-api-token` or `bhresttoken`, is refused: the host sets
/// those itself.
pub fn check_request_headers(headers: &[(String, String)]) -> Result<Vec<(String, String)>, EgressError> {
    let mut seen = [false; ALLOWED_REQUEST_HEADERS.len()];
    let mut out = Vec::with_capacity(headers.len());
    for (index, (name, value)) in headers.iter().enumerate() {
        let Some(slot) = ALLOWED_REQUEST_HEADERS.iter().position(|allowed| allowed.eq_ignore_ascii_case(name)) else {
            return Err(EgressError::HeaderNotAllowed { index });
        };
        if seen[slot] {
            return Err(EgressError::HeaderDuplicate { index });
        }
        seen[slot] = true;
        let printable = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if !printable || value.len() > MAX_HEADER_VALUE_LEN {
            return Err(EgressError::HeaderValueInvalid { index, len: value.len() });
        }
        out.push((ALLOWED_REQUEST_HEADERS[slot].to_owned(), value.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipedrive() -> EgressPolicy {
        EgressPolicy::from_declared(&["*.pipedrive.com"], "https://acme.pipedrive.com", false).expect("valid policy")
    }

    fn bullhorn() -> EgressPolicy {
        EgressPolicy::from_declared(
            &["*.bullhornstaffing.com"],
            "https://rest91.bullhornstaffing.com/rest-services/7xq9zc/",
            false,
        )
        .expect("valid policy")
    }

    fn refused(path: &str) -> EgressError {
        pipedrive().build_url(path, &[]).expect_err("the path must be refused")
    }

    // Forbidden paths, one test per case.

    #[test]
    fn refuses_protocol_relative_path() {
        assert_eq!(refused("//evil.example/"), EgressError::PathEmptySegment { offset: 1 });
    }

    #[test]
    fn refuses_userinfo_trick() {
        assert_eq!(refused("/@evil.example"), EgressError::PathForbiddenChar { offset: 1, class: CharClass::At });
    }

    #[test]
    fn refuses_parent_segment() {
        assert_eq!(refused("/../x"), EgressError::PathDotSegment { offset: 1 });
    }

    #[test]
    fn refuses_current_segment() {
        assert_eq!(refused("/a/./b"), EgressError::PathDotSegment { offset: 3 });
    }

    #[test]
    fn refuses_absolute_http_url() {
        assert_eq!(refused("http://evil.example/"), EgressError::PathNotRelative);
    }

    #[test]
    fn refuses_absolute_https_url() {
        assert_eq!(refused("https://evil.example/x"), EgressError::PathNotRelative);
    }

    #[test]
    fn refuses_encoded_parent_segment_lowercase() {
        assert_eq!(refused("/%2e%2e/x"), EgressError::PathForbiddenEscape { offset: 1 });
    }

    #[test]
    fn refuses_encoded_parent_segment_uppercase() {
        assert_eq!(refused("/%2E%2E/x"), EgressError::PathForbiddenEscape { offset: 1 });
    }

    #[test]
    fn refuses_encoded_slashes() {
        assert_eq!(refused("/a/%2F%2Fevil"), EgressError::PathForbiddenEscape { offset: 3 });
        assert_eq!(refused("/a/%2f"), EgressError::PathForbiddenEscape { offset: 3 });
    }

    #[test]
    fn refuses_encoded_backslash() {
        assert_eq!(refused("/a%5c.."), EgressError::PathForbiddenEscape { offset: 2 });
        assert_eq!(refused("/a%5C"), EgressError::PathForbiddenEscape { offset: 2 });
    }

    #[test]
    fn refuses_encoded_percent() {
        assert_eq!(refused("/a%252e"), EgressError::PathForbiddenEscape { offset: 2 });
    }

    #[test]
    fn refuses_encoded_control_characters() {
        assert_eq!(refused("/a%00"), EgressError::PathForbiddenEscape { offset: 2 });
        assert_eq!(refused("/a%0d%0a"), EgressError::PathForbiddenEscape { offset: 2 });
        assert_eq!(refused("/a%1F"), EgressError::PathForbiddenEscape { offset: 2 });
    }

    #[test]
    fn refuses_malformed_escape() {
        assert_eq!(refused("/a%2"), EgressError::PathMalformedEscape { offset: 2 });
        assert_eq!(refused("/a%zz"), EgressError::PathMalformedEscape { offset: 2 });
        // An escape cannot borrow the separator that follows it.
        assert_eq!(refused("/a%2/f"), EgressError::PathMalformedEscape { offset: 2 });
    }

    #[test]
    fn refuses_space() {
        assert_eq!(refused("/a b"), EgressError::PathForbiddenChar { offset: 2, class: CharClass::Whitespace });
    }

    #[test]
    fn refuses_line_break() {
        assert_eq!(
            refused("/a\r\nHost: evil.example"),
            EgressError::PathForbiddenChar { offset: 2, class: CharClass::Whitespace }
        );
    }

    #[test]
    fn refuses_non_ascii() {
        assert_eq!(refused("/é"), EgressError::PathForbiddenChar { offset: 1, class: CharClass::NonAscii });
    }

    #[test]
    fn refuses_query_in_path() {
        assert_eq!(refused("/a?x=1"), EgressError::PathForbiddenChar { offset: 2, class: CharClass::QuestionMark });
    }

    #[test]
    fn refuses_fragment_in_path() {
        assert_eq!(refused("/a#f"), EgressError::PathForbiddenChar { offset: 2, class: CharClass::Hash });
    }

    #[test]
    fn refuses_leading_backslashes() {
        assert_eq!(refused("\\\\evil"), EgressError::PathNotRelative);
    }

    #[test]
    fn refuses_backslash_inside() {
        assert_eq!(refused("/a\\b"), EgressError::PathForbiddenChar { offset: 2, class: CharClass::Backslash });
    }

    #[test]
    fn refuses_colon() {
        assert_eq!(refused("/a:b"), EgressError::PathForbiddenChar { offset: 2, class: CharClass::Colon });
    }

    #[test]
    fn refuses_path_without_leading_slash() {
        assert_eq!(refused("evil.example/x"), EgressError::PathNotRelative);
    }

    #[test]
    fn refuses_empty_path() {
        assert_eq!(refused(""), EgressError::PathNotRelative);
    }

    #[test]
    fn refuses_empty_segment_inside() {
        assert_eq!(refused("/a//b"), EgressError::PathEmptySegment { offset: 3 });
    }

    #[test]
    fn refuses_long_path() {
        let path = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(refused(&path), EgressError::PathTooLong { len: MAX_PATH_LEN + 1, max: MAX_PATH_LEN });
    }

    #[test]
    fn denial_display_does_not_quote_the_path() {
        let secret = "/John%20Smith@SuperBigCorp";
        let err = pipedrive().build_url(secret, &[]).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("John"), "{shown}");
        assert!(!shown.contains("SuperBigCorp"), "{shown}");
    }

    // Allowed paths.

    #[test]
    fn allows_plain_api_path() {
        let url = pipedrive().build_url("/api/v2/deals", &[]).unwrap();
        assert_eq!(url.as_str(), "https://acme.pipedrive.com/api/v2/deals");
    }

    #[test]
    fn allows_salesforce_query_locator() {
        let policy =
            EgressPolicy::from_declared(&["*.my.salesforce.com"], "https://acme.my.salesforce.com", false).unwrap();
        let url = policy.build_url("/services/data/v62.0/query/0r8Hs00000FixtAAA-3", &[]).unwrap();
        assert_eq!(url.as_str(), "https://acme.my.salesforce.com/services/data/v62.0/query/0r8Hs00000FixtAAA-3");
    }

    #[test]
    fn salesforce_sandbox_my_domains_need_their_own_wildcard() {
        let sandbox = "https://acme--uat.sandbox.my.salesforce.com";
        // One wildcard label only: `*.my.salesforce.com` does not reach a sandbox's name.
        assert!(EgressPolicy::from_declared(&["*.my.salesforce.com"], sandbox, false).is_err());
        let policy =
            EgressPolicy::from_declared(&["*.my.salesforce.com", "*.sandbox.my.salesforce.com"], sandbox, false)
                .unwrap();
        let url = policy.build_url("/services/data/v62.0/query", &[]).unwrap();
        assert_eq!(url.as_str(), "https://acme--uat.sandbox.my.salesforce.com/services/data/v62.0/query");
    }

    #[test]
    fn allows_path_under_base_prefix() {
        let url = bullhorn().build_url("/search/Placement", &[]).unwrap();
        assert_eq!(url.as_str(), "https://rest91.bullhornstaffing.com/rest-services/7xq9zc/search/Placement");
    }

    #[test]
    fn base_prefix_without_trailing_slash_is_the_same() {
        let policy = EgressPolicy::from_declared(
            &["*.bullhornstaffing.com"],
            "https://rest91.bullhornstaffing.com/rest-services/7xq9zc",
            false,
        )
        .unwrap();
        let url = policy.build_url("/search/Placement", &[]).unwrap();
        assert_eq!(url.path(), "/rest-services/7xq9zc/search/Placement");
    }

    #[test]
    fn allows_harmless_escapes_and_trailing_slash() {
        let url = pipedrive().build_url("/entity/Candidate/1%2C2%2c3/", &[]).unwrap();
        assert_eq!(url.path(), "/entity/Candidate/1%2C2%2c3/");
        let root = pipedrive().build_url("/", &[]).unwrap();
        assert_eq!(root.as_str(), "https://acme.pipedrive.com/");
    }

    #[test]
    fn allows_dots_inside_segments() {
        let url = pipedrive().build_url("/v1/a.b/...", &[]).unwrap();
        assert_eq!(url.path(), "/v1/a.b/...");
    }

    #[test]
    fn encodes_query_pairs() {
        let query = vec![
            ("q".to_owned(), "SELECT Id FROM Opportunity WHERE IsWon = true".to_owned()),
            ("cursor".to_owned(), "a&b=c#d/../e".to_owned()),
        ];
        let url = pipedrive().build_url("/api/v2/deals", &query).unwrap();
        assert_eq!(url.host_str(), Some("acme.pipedrive.com"));
        assert_eq!(url.fragment(), None);
        assert_eq!(url.path(), "/api/v2/deals");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs, query);
    }

    #[test]
    fn query_cannot_change_origin() {
        let query = vec![("x".to_owned(), "@evil.example/#".to_owned())];
        let url = pipedrive().build_url("/a", &query).unwrap();
        assert!(pipedrive().is_same_origin(&url));
        assert_eq!(url.fragment(), None);
    }

    #[test]
    fn refuses_too_many_query_pairs() {
        let query = vec![("k".to_owned(), "v".to_owned()); MAX_QUERY_PAIRS + 1];
        assert_eq!(
            pipedrive().build_url("/a", &query).unwrap_err(),
            EgressError::TooManyQueryPairs { count: MAX_QUERY_PAIRS + 1, max: MAX_QUERY_PAIRS }
        );
    }

    #[test]
    fn refuses_bad_query_keys_and_values() {
        let empty_key = vec![(String::new(), "v".to_owned())];
        assert_eq!(
            pipedrive().build_url("/a", &empty_key).unwrap_err(),
            EgressError::QueryKeyInvalid { index: 0, len: 0 }
        );
        let long_key = vec![("k".to_owned(), "v".to_owned()), ("k".repeat(MAX_QUERY_KEY_LEN + 1), "v".to_owned())];
        assert_eq!(
            pipedrive().build_url("/a", &long_key).unwrap_err(),
            EgressError::QueryKeyInvalid { index: 1, len: MAX_QUERY_KEY_LEN + 1 }
        );
        let long_value = vec![("k".to_owned(), "v".repeat(MAX_QUERY_VALUE_LEN + 1))];
        assert_eq!(
            pipedrive().build_url("/a", &long_value).unwrap_err(),
            EgressError::QueryValueTooLong { index: 0, len: MAX_QUERY_VALUE_LEN + 1 }
        );
    }

    // Host patterns.

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let p = HostPattern::parse("*.pipedrive.com").unwrap();
        assert!(p.matches("acme.pipedrive.com"));
        assert!(!p.matches("pipedrive.com"));
        assert!(!p.matches("a.b.pipedrive.com"));
        assert!(!p.matches("evilpipedrive.com"));
        assert!(!p.matches(".pipedrive.com"));
        assert!(!p.matches("acme.pipedrive.com.evil.example"));
    }

    #[test]
    fn exact_pattern_matches_only_itself() {
        let p = HostPattern::parse("api.example.com").unwrap();
        assert!(p.matches("api.example.com"));
        assert!(!p.matches("x.api.example.com"));
        assert!(!p.matches("example.com"));
    }

    #[test]
    fn patterns_are_lowercased() {
        let p = HostPattern::parse("*.PipeDrive.COM").unwrap();
        assert_eq!(p.to_string(), "*.pipedrive.com");
        assert!(p.matches("acme.pipedrive.com"));
        assert!(p.is_wildcard());
    }

    #[test]
    fn invalid_patterns_are_refused() {
        let cases = [
            ("", PatternProblem::Empty),
            ("*", PatternProblem::BareWildcard),
            ("*.com", PatternProblem::WildcardTooBroad),
            ("*.*.example.com", PatternProblem::WildcardPosition),
            ("api.*.example.com", PatternProblem::WildcardPosition),
            ("*api.example.com", PatternProblem::WildcardPosition),
            ("api*.example.com", PatternProblem::WildcardPosition),
            ("example.*", PatternProblem::WildcardPosition),
            ("127.0.0.1", PatternProblem::IpAddress),
            ("*.0.0.1", PatternProblem::IpAddress),
            ("0x7f.1", PatternProblem::IpAddress),
            ("[::1]", PatternProblem::IpAddress),
            ("::1", PatternProblem::IpAddress),
            ("api.example.com:443", PatternProblem::Port),
            ("localhost", PatternProblem::SingleLabel),
            ("api.example.com.", PatternProblem::BadLabel),
            ("api..example.com", PatternProblem::BadLabel),
            ("-api.example.com", PatternProblem::BadLabel),
            ("api_x.example.com", PatternProblem::BadLabel),
            ("api example.com", PatternProblem::BadLabel),
            ("https://api.example.com", PatternProblem::Port),
            ("api.example.com/x", PatternProblem::BadLabel),
            ("user@api.example.com", PatternProblem::BadLabel),
        ];
        for (pattern, problem) in cases {
            assert_eq!(HostPattern::parse(pattern), Err(problem), "{pattern:?}");
        }
        let long = format!("{}.com", "a.".repeat(130));
        assert_eq!(HostPattern::parse(&long), Err(PatternProblem::TooLong));
    }

    #[test]
    fn parse_patterns_reports_the_index() {
        assert_eq!(
            parse_patterns(&["api.example.com", "*"]).unwrap_err(),
            EgressError::InvalidPattern { index: 1, problem: PatternProblem::BareWildcard }
        );
    }

    // Base URLs.

    #[test]
    fn empty_allowlist_allows_nothing() {
        let none: [&str; 0] = [];
        assert_eq!(
            EgressPolicy::from_declared(&none, "https://acme.pipedrive.com", false).unwrap_err(),
            EgressError::BaseUrlHostNotAllowed
        );
    }

    #[test]
    fn https_on_undeclared_host_is_refused() {
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://evil.example/", false).unwrap_err(),
            EgressError::BaseUrlHostNotAllowed
        );
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://pipedrive.com/", false).unwrap_err(),
            EgressError::BaseUrlHostNotAllowed
        );
    }

    #[test]
    fn https_on_ip_is_refused() {
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://127.0.0.1/", true).unwrap_err(),
            EgressError::BaseUrlHostNotAllowed
        );
    }

    #[test]
    fn base_host_is_compared_in_lowercase() {
        let policy = EgressPolicy::from_declared(&["*.pipedrive.com"], "https://ACME.Pipedrive.com", false).unwrap();
        assert_eq!(policy.base_url().host_str(), Some("acme.pipedrive.com"));
    }

    #[test]
    fn http_on_public_host_is_refused_even_with_the_flag() {
        for flag in [false, true] {
            assert_eq!(
                EgressPolicy::from_declared(&["*.pipedrive.com"], "http://acme.pipedrive.com", flag).unwrap_err(),
                EgressError::BaseUrlScheme
            );
        }
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "http://10.0.0.1:8080", true).unwrap_err(),
            EgressError::BaseUrlScheme
        );
    }

    #[test]
    fn http_on_loopback_needs_the_flag() {
        for base in ["http://127.0.0.1:8080/", "http://127.8.9.10:1/", "http://[::1]:3000", "http://localhost:9999/api"]
        {
            let none: [&str; 0] = [];
            assert_eq!(
                EgressPolicy::from_declared(&none, base, false).unwrap_err(),
                EgressError::LoopbackHttpNotAllowed,
                "{base}"
            );
            let policy = EgressPolicy::from_declared(&none, base, true).expect(base);
            let url = policy.build_url("/v1/deals", &[]).unwrap();
            assert!(url.path().ends_with("/v1/deals"), "{url}");
            assert!(policy.is_same_origin(&url));
        }
    }

    #[test]
    fn other_schemes_are_refused() {
        for base in ["ftp://acme.pipedrive.com", "file:///etc/passwd", "data:,x"] {
            assert_eq!(
                EgressPolicy::from_declared(&["*.pipedrive.com"], base, true).unwrap_err(),
                EgressError::BaseUrlScheme,
                "{base}"
            );
        }
    }

    #[test]
    fn base_userinfo_is_refused() {
        for base in
            ["https://user@acme.pipedrive.com", "https://user:pw@acme.pipedrive.com", "https://:pw@acme.pipedrive.com"]
        {
            assert_eq!(
                EgressPolicy::from_declared(&["*.pipedrive.com"], base, false).unwrap_err(),
                EgressError::BaseUrlUserinfo,
                "{base}"
            );
        }
    }

    #[test]
    fn base_query_fragment_and_port_are_refused() {
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://a.pipedrive.com/?x=1", false).unwrap_err(),
            EgressError::BaseUrlQueryOrFragment
        );
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://a.pipedrive.com/#f", false).unwrap_err(),
            EgressError::BaseUrlQueryOrFragment
        );
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://a.pipedrive.com:8443", false).unwrap_err(),
            EgressError::BaseUrlPort
        );
        // The default port is the same origin, so naming it is harmless.
        assert!(EgressPolicy::from_declared(&["*.pipedrive.com"], "https://a.pipedrive.com:443", false).is_ok());
    }

    #[test]
    fn unparsable_base_is_refused() {
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "acme.pipedrive.com", false).unwrap_err(),
            EgressError::BaseUrlUnparsable
        );
    }

    #[test]
    fn base_path_must_be_plain() {
        assert_eq!(
            EgressPolicy::from_declared(&["*.pipedrive.com"], "https://a.pipedrive.com/x%2Fy/", false).unwrap_err(),
            EgressError::BaseUrlPath
        );
    }

    // Redirects.

    #[test]
    fn redirects_must_stay_on_the_origin() {
        let policy = pipedrive();
        let same = Url::parse("https://acme.pipedrive.com/other?x=1").unwrap();
        assert!(policy.is_same_origin(&same));
        assert!(policy.check_redirect(&same).is_ok());
        for other in [
            "https://evil.example/",
            "http://acme.pipedrive.com/",
            "https://acme.pipedrive.com:8443/",
            "https://other.pipedrive.com/",
        ] {
            let url = Url::parse(other).unwrap();
            assert!(!policy.is_same_origin(&url), "{other}");
            assert_eq!(policy.check_redirect(&url).unwrap_err(), EgressError::RedirectCrossOrigin);
        }
        let userinfo = Url::parse("https://u:p@acme.pipedrive.com/").unwrap();
        assert_eq!(policy.check_redirect(&userinfo).unwrap_err(), EgressError::RedirectCrossOrigin);
    }

    // Headers.

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn allowed_headers_pass_with_canonical_names() {
        let out = check_request_headers(&headers(&[
            ("Accept", "application/json"),
            ("If-None-Match", "\"abc\""),
            ("IF-MODIFIED-SINCE", "Tue, 15 Nov 1994 12:45:26 GMT"),
            ("Sforce-Query-Options", "batchSize=2000"),
        ]))
        .unwrap();
        assert_eq!(
            out,
            vec![
                ("accept".to_owned(), "application/json".to_owned()),
                ("if-none-match".to_owned(), "\"abc\"".to_owned()),
                ("if-modified-since".to_owned(), "Tue, 15 Nov 1994 12:45:26 GMT".to_owned()),
                ("sforce-query-options".to_owned(), "batchSize=2000".to_owned()),
            ]
        );
        assert_eq!(check_request_headers(&[]).unwrap(), vec![]);
    }

    #[test]
    fn other_headers_are_refused() {
        for name in
            ["host", "Host", "authorization", "cookie", "x-api-token", "BhRestToken", "x-forwarded-host", "accept ", ""]
        {
            assert_eq!(
                check_request_headers(&headers(&[("accept", "*/*"), (name, "x")])).unwrap_err(),
                EgressError::HeaderNotAllowed { index: 1 },
                "{name:?}"
            );
        }
    }

    #[test]
    fn duplicate_headers_are_refused() {
        assert_eq!(
            check_request_headers(&headers(&[("accept", "a"), ("Accept", "b")])).unwrap_err(),
            EgressError::HeaderDuplicate { index: 1 }
        );
    }

    #[test]
    fn header_values_must_be_short_printable_ascii() {
        for value in ["a\r\nHost: evil.example", "a\nb", "tab\there", "é"] {
            assert!(
                matches!(
                    check_request_headers(&headers(&[("accept", value)])).unwrap_err(),
                    EgressError::HeaderValueInvalid { index: 0, .. }
                ),
                "{value:?}"
            );
        }
        let long = "a".repeat(MAX_HEADER_VALUE_LEN + 1);
        assert_eq!(
            check_request_headers(&headers(&[("accept", &long)])).unwrap_err(),
            EgressError::HeaderValueInvalid { index: 0, len: MAX_HEADER_VALUE_LEN + 1 }
        );
        let max = "a".repeat(MAX_HEADER_VALUE_LEN);
        assert!(check_request_headers(&headers(&[("accept", &max)])).is_ok());
    }

    #[test]
    fn codes_are_snake_case() {
        let errors = [
            EgressError::PathNotRelative,
            EgressError::BaseUrlHostNotAllowed,
            EgressError::HeaderNotAllowed { index: 0 },
            EgressError::InvalidPattern { index: 0, problem: PatternProblem::Empty },
        ];
        for err in errors {
            let code = err.code();
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
    }
}
