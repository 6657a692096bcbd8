//! The values that cross the boundary between a connector and the host, in the SDK's own
//! shapes: what a connector declares, the changes it emits, its cursor and its errors.
//!
//! They mirror the records of `connector.wit`; the wasm glue converts them at the boundary
//! without copying strings.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::money::Money;

/// How a metric's values add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Each event counts a whole number of things (deals won, calls made).
    Count,
    /// Each event carries an amount of money in some currency.
    Money,
}

/// A metric the connector emits: a slug of lowercase ASCII letters, digits and `_` (1 to 48
/// characters) and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricDecl {
    /// The metric's slug, part of the connector's closed vocabulary.
    pub slug: String,
    /// How its values add up.
    pub kind: MetricKind,
}

/// A configuration or secret setting the connector needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The setting's key: lowercase ASCII letters, digits and `_`, 1 to 48 characters.
    pub key: String,
    /// Whether the operator must provide it.
    pub required: bool,
    /// The value used when the operator gives none (config only, never for secrets).
    pub default_value: Option<String>,
}

impl Setting {
    /// A setting the operator must provide.
    pub fn required(key: &str) -> Self {
        Setting { key: key.to_owned(), required: true, default_value: None }
    }

    /// A setting the operator may leave out.
    pub fn optional(key: &str) -> Self {
        Setting { key: key.to_owned(), required: false, default_value: None }
    }

    /// A config setting with a default value, used when the operator gives none.
    pub fn with_default(key: &str, value: &str) -> Self {
        Setting { key: key.to_owned(), required: false, default_value: Some(value.to_owned()) }
    }
}

/// How the host authenticates the connector's requests. Credentials live in the host; the
/// connector names the scheme and never sees a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    /// No credentials are sent.
    None,
    /// The secret named `secret_key` is sent in the request header `header` (for example
    /// Pipedrive's `x-api-token`).
    ApiKeyHeader {
        /// The request header that carries the secret.
        header: String,
        /// The secret setting whose value is sent.
        secret_key: String,
    },
    /// OAuth 2.0 refresh-token flow: the host exchanges the `client_id`, `client_secret` and
    /// `refresh_token` secrets at the token URL held in the config key `token_url_key`, and
    /// sends `Authorization: Bearer …`, refreshing on expiry and once on a 401.
    Oauth2Refresh {
        /// The config key holding the token URL.
        token_url_key: String,
    },
    /// Bullhorn: OAuth 2.0 refresh at the URL in config key `auth_url_key`, then a REST login
    /// at the URL in `login_url_key`; requests go to the `restUrl` the login answers with and
    /// carry the `BhRestToken`. The descriptor's base URL key is then the login URL key.
    BullhornSession {
        /// The config key holding the OAuth URL.
        auth_url_key: String,
        /// The config key holding the REST login URL.
        login_url_key: String,
    },
}

impl AuthScheme {
    /// The secret `secret_key` sent in the request header `header`.
    pub fn api_key_header(header: &str, secret_key: &str) -> Self {
        AuthScheme::ApiKeyHeader { header: header.to_owned(), secret_key: secret_key.to_owned() }
    }

    /// OAuth 2.0 refresh at the token URL held in the config key `token_url_key`.
    pub fn oauth2_refresh(token_url_key: &str) -> Self {
        AuthScheme::Oauth2Refresh { token_url_key: token_url_key.to_owned() }
    }

    /// Bullhorn's OAuth 2.0 refresh plus REST login, at the URLs held in the two config keys.
    pub fn bullhorn_session(auth_url_key: &str, login_url_key: &str) -> Self {
        AuthScheme::BullhornSession { auth_url_key: auth_url_key.to_owned(), login_url_key: login_url_key.to_owned() }
    }
}

/// What a connector is and needs, declared up front and reviewed by the operator at install.
///
/// Build one with [`Descriptor::new`] and the `with_*` methods. The closed vocabulary the host
/// accepts from the connector (metric slugs, log and error codes, cursor keys) is exactly what
/// is declared here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The connector id (`pipedrive`): lowercase letters, digits, `-` and `_`.
    pub id: String,
    /// The connector's own semantic version (`1.2.0`).
    pub version: String,
    /// Every metric it may emit.
    pub metrics: Vec<MetricDecl>,
    /// Non-secret settings, read with [`crate::Ctx::config`].
    pub config: Vec<Setting>,
    /// Secret settings; only the host ever reads them.
    pub secrets: Vec<Setting>,
    /// The config key that holds the base URL every request is relative to.
    pub base_url_key: String,
    /// Host names the base URL may have: exact names or one leading wildcard label
    /// (`*.pipedrive.com`). Empty means nothing is allowed.
    pub allowed_hosts: Vec<String>,
    /// How requests are authenticated.
    pub auth: AuthScheme,
    /// The codes the connector may use in logs and in [`ConnectorError`]s.
    pub log_codes: Vec<String>,
    /// The keys the connector may use in its [`Cursor`].
    pub cursor_keys: Vec<String>,
    /// How often a sync should run by default, in seconds.
    pub default_sync_interval_secs: u32,
}

impl Descriptor {
    /// A descriptor with the given id and version, no metrics, settings or hosts, the base URL
    /// under the config key `base_url`, no authentication, a 15-minute sync interval, and
    /// every code of [`crate::STANDARD_CODES`] among its log codes.
    pub fn new(id: &str, version: &str) -> Self {
        Descriptor {
            id: id.to_owned(),
            version: version.to_owned(),
            metrics: Vec::new(),
            config: Vec::new(),
            secrets: Vec::new(),
            base_url_key: "base_url".to_owned(),
            allowed_hosts: Vec::new(),
            auth: AuthScheme::None,
            log_codes: crate::STANDARD_CODES.iter().map(|c| (*c).to_owned()).collect(),
            cursor_keys: Vec::new(),
            default_sync_interval_secs: 900,
        }
    }

    /// Declares a metric.
    pub fn with_metric(mut self, slug: &str, kind: MetricKind) -> Self {
        self.metrics.push(MetricDecl { slug: slug.to_owned(), kind });
        self
    }

    /// Declares a non-secret config setting.
    pub fn with_config(mut self, setting: Setting) -> Self {
        self.config.push(setting);
        self
    }

    /// Declares a secret setting.
    pub fn with_secret(mut self, setting: Setting) -> Self {
        self.secrets.push(setting);
        self
    }

    /// Names the config key that holds the base URL (the default is `base_url`).
    pub fn with_base_url_key(mut self, key: &str) -> Self {
        self.base_url_key = key.to_owned();
        self
    }

    /// Allows a host name for the base URL (`api.example.com` or `*.example.com`).
    pub fn with_allowed_host(mut self, host: &str) -> Self {
        self.allowed_hosts.push(host.to_owned());
        self
    }

    /// Sets how requests are authenticated.
    pub fn with_auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Declares log and error codes; codes already declared are not repeated.
    pub fn with_log_codes(mut self, codes: &[&str]) -> Self {
        for code in codes {
            if !self.log_codes.iter().any(|c| c == code) {
                self.log_codes.push((*code).to_owned());
            }
        }
        self
    }

    /// Declares cursor keys; keys already declared are not repeated.
    pub fn with_cursor_keys(mut self, keys: &[&str]) -> Self {
        for key in keys {
            if !self.cursor_keys.iter().any(|k| k == key) {
                self.cursor_keys.push((*key).to_owned());
            }
        }
        self
    }

    /// Sets the default interval between syncs, in seconds.
    pub fn with_sync_interval_secs(mut self, secs: u32) -> Self {
        self.default_sync_interval_secs = secs;
        self
    }

    /// The kind of a declared metric, or `None` if the slug is not declared.
    pub fn metric_kind(&self, slug: &str) -> Option<MetricKind> {
        self.metrics.iter().find(|m| m.slug == slug).map(|m| m.kind)
    }

    /// Whether `code` is a declared log or error code.
    pub fn declares_code(&self, code: &str) -> bool {
        self.log_codes.iter().any(|c| c == code)
    }

    /// Whether `key` is a declared cursor key.
    pub fn declares_cursor_key(&self, key: &str) -> bool {
        self.cursor_keys.iter().any(|k| k == key)
    }

    /// Checks the shapes the host requires of a descriptor and lists every problem found
    /// (an empty list means the host will accept it).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 48
            && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !id_ok {
            problems.push(format!("connector id {:?} is not a valid id", self.id));
        }
        let mut check = |what: &str, word: &str| {
            if !is_slug(word) {
                problems.push(format!("{what} {word:?} is not 1 to 48 lowercase ASCII letters, digits and `_`"));
            }
        };
        for metric in &self.metrics {
            check("metric slug", &metric.slug);
        }
        for setting in self.config.iter().chain(&self.secrets) {
            check("setting key", &setting.key);
        }
        for code in &self.log_codes {
            check("log code", code);
        }
        for key in &self.cursor_keys {
            check("cursor key", key);
        }
        for setting in &self.secrets {
            if setting.default_value.is_some() {
                problems.push(format!("secret {:?} has a default value", setting.key));
            }
        }
        if !self.config.iter().any(|s| s.key == self.base_url_key) {
            problems.push(format!("base URL key {:?} is not a declared config setting", self.base_url_key));
        }
        problems
    }
}

/// Whether `word` is a slug of the closed vocabulary: 1 to 48 lowercase ASCII letters,
/// digits and `_`.
pub(crate) fn is_slug(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 48
        && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The longest identifier kept inline, without a heap allocation.
const INLINE_ID: usize = 22;

/// A CRM owner id or source record id, as it crosses the boundary (the host hashes it at
/// once).
///
/// Ids of up to 22 bytes, which includes every integer id, are stored inline, so making one
/// from a number allocates nothing. The SDK does not check the shape of an id; the host
/// refuses a batch whose ids are not 1 to 64 ASCII letters, digits and `-_.:`.
#[derive(Clone)]
pub struct Id(IdRepr);

#[derive(Clone)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Box<str>),
}

impl Id {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            IdRepr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            IdRepr::Heap(text) => text,
        }
    }

    /// Whether the id is identifier-shaped as the host requires of owners and source ids:
    /// 1 to 64 ASCII letters, digits and `-_.:`.
    pub fn is_identifier_shaped(&self) -> bool {
        let id = self.as_str();
        !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    }

    fn inline(text: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE_ID];
        bytes[..text.len()].copy_from_slice(text);
        Id(IdRepr::Inline { len: text.len() as u8, bytes })
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Self {
        if text.len() <= INLINE_ID { Id::inline(text.as_bytes()) } else { Id(IdRepr::Heap(text.into())) }
    }
}

impl From<String> for Id {
    fn from(text: String) -> Self {
        if text.len() <= INLINE_ID { Id::inline(text.as_bytes()) } else { Id(IdRepr::Heap(text.into_boxed_str())) }
    }
}

impl From<&String> for Id {
    fn from(text: &String) -> Self {
        Id::from(text.as_str())
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Id::inline(&digits[at..])
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        if n >= 0 {
            return Id::from(n as u64);
        }
        let magnitude = Id::from(n.unsigned_abs());
        let mut text = [0u8; 21];
        text[0] = b'-';
        let digits = magnitude.as_str().as_bytes();
        text[1..=digits.len()].copy_from_slice(digits);
        Id::inline(&text[..=digits.len()])
    }
}

impl From<u32> for Id {
    fn from(n: u32) -> Self {
        Id::from(u64::from(n))
    }
}

impl From<i32> for Id {
    fn from(n: i32) -> Self {
        Id::from(i64::from(n))
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value a KPI event carries; its kind must match the metric's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Amount {
    /// A whole number of things.
    Count(i64),
    /// An amount of money.
    Money(Money),
}

impl From<Money> for Amount {
    fn from(money: Money) -> Self {
        Amount::Money(money)
    }
}

impl Amount {
    /// The kind of metric this value belongs to.
    pub fn kind(&self) -> MetricKind {
        match self {
            Amount::Count(_) => MetricKind::Count,
            Amount::Money(_) => MetricKind::Money,
        }
    }
}

/// A day of the calendar without a time zone, for CRMs that record only a date
/// (Salesforce's `CloseDate`). The host places it at the start of that day in the tenant's
/// time zone, which a connector never learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalendarDate {
    /// The year, e.g. 2025.
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
    /// 1 to the length of the month.
    pub day: u8,
}

impl CalendarDate {
    /// A date, if it exists in the proleptic Gregorian calendar.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        let valid = (1..=12).contains(&month) && day >= 1 && day <= crate::time::days_in_month(year, month);
        valid.then_some(CalendarDate { year, month, day })
    }

    /// Parses `YYYY-MM-DD`; anything else (or an impossible date) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        crate::time::parse_calendar_date(text).ok()
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// When a KPI event happened: an instant, or a whole day (see [`CalendarDate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OccurredAt {
    /// Milliseconds since the Unix epoch, UTC.
    Instant(i64),
    /// A day, placed by the host at its start in the tenant's time zone.
    Date(CalendarDate),
}

impl From<i64> for OccurredAt {
    fn from(ms: i64) -> Self {
        OccurredAt::Instant(ms)
    }
}

impl From<CalendarDate> for OccurredAt {
    fn from(date: CalendarDate) -> Self {
        OccurredAt::Date(date)
    }
}

impl fmt::Display for OccurredAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OccurredAt::Instant(ms) => f.write_str(&crate::time::format_rfc3339(*ms)),
            OccurredAt::Date(d) => d.fmt(f),
        }
    }
}

/// A declaration that the upserts emitted until [`crate::Ctx::snapshot_end`] are every fact
/// of `metrics` whose occurred-at falls in `[from, to)`: the host then retracts the facts of
/// that window it did not see. For CRMs that hard-delete records without a delete feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotWindow {
    /// Declared metric slugs, 1 to 16.
    pub metrics: Vec<Cow<'static, str>>,
    /// Start, inclusive, epoch milliseconds.
    pub from: i64,
    /// End, exclusive, epoch milliseconds; after `from`.
    pub to: i64,
}

impl SnapshotWindow {
    /// A window over `[from, to)` for the given metrics.
    pub fn new(metrics: &[&'static str], from: i64, to: i64) -> Self {
        SnapshotWindow { metrics: metrics.iter().map(|m| Cow::Borrowed(*m)).collect(), from, to }
    }
}

/// A KPI fact, created or replaced. Re-emitting the same source id for the same metric
/// replaces the earlier fact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KpiUpsert {
    /// A declared metric slug.
    pub metric: Cow<'static, str>,
    /// The CRM user credited (the CRM's user id).
    pub owner: Id,
    /// The CRM record behind the fact (for example the deal id).
    pub source_id: Id,
    /// When it happened.
    pub occurred_at: OccurredAt,
    /// The value.
    pub value: Amount,
}

/// A KPI fact withdrawn: the record was deleted, lost or undone in the CRM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KpiRetract {
    /// A declared metric slug.
    pub metric: Cow<'static, str>,
    /// The CRM record behind the fact.
    pub source_id: Id,
}

/// One change to the KPI facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KpiChange {
    /// A fact created or replaced.
    Upsert(KpiUpsert),
    /// A fact withdrawn.
    Retract(KpiRetract),
}

impl KpiChange {
    /// A fact created or replaced.
    pub fn upsert(
        metric: impl Into<Cow<'static, str>>,
        owner: impl Into<Id>,
        source_id: impl Into<Id>,
        occurred_at: impl Into<OccurredAt>,
        value: impl Into<Amount>,
    ) -> Self {
        KpiChange::Upsert(KpiUpsert {
            metric: metric.into(),
            owner: owner.into(),
            source_id: source_id.into(),
            occurred_at: occurred_at.into(),
            value: value.into(),
        })
    }

    /// A count fact created or replaced.
    pub fn count(
        metric: impl Into<Cow<'static, str>>,
        owner: impl Into<Id>,
        source_id: impl Into<Id>,
        occurred_at: impl Into<OccurredAt>,
        count: i64,
    ) -> Self {
        KpiChange::upsert(metric, owner, source_id, occurred_at, Amount::Count(count))
    }

    /// A money fact created or replaced.
    pub fn money(
        metric: impl Into<Cow<'static, str>>,
        owner: impl Into<Id>,
        source_id: impl Into<Id>,
        occurred_at: impl Into<OccurredAt>,
        money: Money,
    ) -> Self {
        KpiChange::upsert(metric, owner, source_id, occurred_at, Amount::Money(money))
    }

    /// A fact withdrawn.
    pub fn retract(metric: impl Into<Cow<'static, str>>, source_id: impl Into<Id>) -> Self {
        KpiChange::Retract(KpiRetract { metric: metric.into(), source_id: source_id.into() })
    }

    /// The metric the change is about.
    pub fn metric(&self) -> &str {
        match self {
            KpiChange::Upsert(u) => &u.metric,
            KpiChange::Retract(r) => &r.metric,
        }
    }

    /// The source record the change is about.
    pub fn source_id(&self) -> &Id {
        match self {
            KpiChange::Upsert(u) => &u.source_id,
            KpiChange::Retract(r) => &r.source_id,
        }
    }
}

/// One line per change, for reading what a connector emits:
/// `upsert revenue source=1001 owner=9101 at=2025-06-02T10:01:55Z 48000 USD` or
/// `retract deals_won source=1006`.
impl fmt::Display for KpiChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KpiChange::Upsert(u) => {
                write!(f, "upsert {} source={} owner={} at={} ", u.metric, u.source_id, u.owner, u.occurred_at)?;
                match &u.value {
                    Amount::Count(n) => write!(f, "{n}"),
                    Amount::Money(m) => write!(f, "{m}"),
                }
            }
            KpiChange::Retract(r) => write!(f, "retract {} source={}", r.metric, r.source_id),
        }
    }
}

/// Where the next sync resumes: a few numbers (typically timestamp watermarks) under
/// declared keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    marks: Vec<(String, i64)>,
}

impl Cursor {
    /// An empty cursor.
    pub fn new() -> Self {
        Cursor::default()
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.marks.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Sets the value under `key`.
    pub fn set(&mut self, key: &str, value: i64) {
        match self.marks.iter_mut().find(|(k, _)| k == key) {
            Some(mark) => mark.1 = value,
            None => self.marks.push((key.to_owned(), value)),
        }
    }

    /// Sets the value under `key` to `value` if that is larger than the value held (or none
    /// is held): the way a watermark advances.
    pub fn advance(&mut self, key: &str, value: i64) {
        match self.marks.iter_mut().find(|(k, _)| k == key) {
            Some(mark) => mark.1 = mark.1.max(value),
            None => self.marks.push((key.to_owned(), value)),
        }
    }

    /// Removes the value under `key` and returns it.
    pub fn remove(&mut self, key: &str) -> Option<i64> {
        let at = self.marks.iter().position(|(k, _)| k == key)?;
        Some(self.marks.remove(at).1)
    }

    /// A cursor with `key` set to `value`, for building one in a chain.
    pub fn with(mut self, key: &str, value: i64) -> Self {
        self.set(key, value);
        self
    }

    /// The marks, in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.marks.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// How many marks it holds.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether it holds no mark.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// Severity of a structured log event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Detail for developers.
    Debug,
    /// Normal progress.
    Info,
    /// Something unusual that did not stop the sync.
    Warn,
    /// Something that failed.
    Error,
}

/// A CRM user, for mapping CRM owners to oneup users by e-mail. The host only compares the
/// e-mail with the tenant's users and never keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// The CRM's user id, as used for owners in [`KpiUpsert::owner`].
    pub crm_user_id: Id,
    /// The user's e-mail address.
    pub email: String,
}

impl RosterEntry {
    /// A roster entry.
    pub fn new(crm_user_id: impl Into<Id>, email: impl Into<String>) -> Self {
        RosterEntry { crm_user_id: crm_user_id.into(), email: email.into() }
    }
}

/// How a sync ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Everything up to now was read.
    Complete,
    /// The CRM's request budget ran out; the next sync resumes from the last checkpoint, not
    /// before `resume_at` (epoch ms) when given, else after the host's back-off.
    BudgetExhausted {
        /// When the budget is expected back, if the CRM says.
        resume_at: Option<i64>,
    },
}

/// Why the host refused a whole batch or a checkpoint: the connector broke a rule of the
/// contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// A metric that is not in the descriptor.
    UndeclaredMetric,
    /// The value's kind does not match the metric's.
    WrongKind,
    /// An owner or source id that is not identifier-shaped.
    BadIdentifier,
    /// Reserved: a currency that is not an ISO 4217 code.
    UnknownCurrency,
    /// Reserved: a time or amount out of range.
    OutOfRange,
    /// Too many changes in one batch.
    BatchTooLarge,
    /// A cursor key that is not declared, or too many keys.
    BadCursor,
    /// A snapshot that breaks the rules of [`crate::Ctx::snapshot_begin`].
    BadSnapshot,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmitError::UndeclaredMetric => "a metric that is not declared",
            EmitError::WrongKind => "a value whose kind does not match its metric",
            EmitError::BadIdentifier => "an owner or source id that is not identifier-shaped",
            EmitError::UnknownCurrency => "a currency that is not ISO 4217",
            EmitError::OutOfRange => "a time or amount out of range",
            EmitError::BatchTooLarge => "too many changes in one batch",
            EmitError::BadCursor => "an undeclared cursor key, or too many keys",
            EmitError::BadSnapshot => "a snapshot that breaks the rules (metrics, window, nesting or size)",
        })
    }
}

/// A failure the connector reports to the host: a declared code, and the CRM's HTTP status
/// where one is the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorError {
    /// One of the connector's declared log codes.
    pub code: Cow<'static, str>,
    /// The CRM's status, where an answer is the cause.
    pub http_status: Option<u16>,
}

impl ConnectorError {
    /// An error with a declared code.
    pub fn new(code: impl Into<Cow<'static, str>>) -> Self {
        ConnectorError { code: code.into(), http_status: None }
    }

    /// An error with a declared code, caused by an answer with the given status.
    pub fn with_status(code: impl Into<Cow<'static, str>>, status: u16) -> Self {
        ConnectorError { code: code.into(), http_status: Some(status) }
    }

    /// Whether the error carries `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.http_status {
            Some(status) => write!(f, "{} (HTTP {status})", self.code),
            None => f.write_str(&self.code),
        }
    }
}

impl std::error::Error for ConnectorError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_numbers_are_their_decimal_text() {
        assert_eq!(Id::from(0u64).as_str(), "0");
        assert_eq!(Id::from(9101i64).as_str(), "9101");
        assert_eq!(Id::from(-42i64).as_str(), "-42");
        assert_eq!(Id::from(i64::MIN).as_str(), i64::MIN.to_string());
        assert_eq!(Id::from(u64::MAX).as_str(), u64::MAX.to_string());
    }

    #[test]
    fn ids_compare_by_text_whatever_their_storage() {
        let long = "a".repeat(40);
        assert_eq!(Id::from(long.as_str()), Id::from(long.clone()));
        assert_eq!(Id::from("1001"), Id::from(1001u32));
        let (short, long_id) = (Id::from("a"), Id::from(long.as_str()));
        assert_eq!(short.cmp(&long_id), std::cmp::Ordering::Less);
        assert_eq!(Id::from(long.as_str()).as_str(), long);
    }

    #[test]
    fn cursor_advance_keeps_the_larger_value() {
        let mut cursor = Cursor::new().with("a_ms", 5);
        cursor.advance("a_ms", 3);
        cursor.advance("b_ms", 7);
        assert_eq!(cursor.get("a_ms"), Some(5));
        assert_eq!(cursor.get("b_ms"), Some(7));
        cursor.advance("a_ms", 9);
        assert_eq!(cursor.get("a_ms"), Some(9));
        assert_eq!(cursor.remove("a_ms"), Some(9));
        assert_eq!(cursor.len(), 1);
    }

    #[test]
    fn a_new_descriptor_declares_the_standard_codes() {
        let d = Descriptor::new("x", "0.1.0")
            .with_config(Setting::required("base_url"))
            .with_log_codes(&["mine", "http_status"]);
        for code in crate::STANDARD_CODES {
            assert!(d.declares_code(code));
        }
        assert_eq!(d.log_codes.iter().filter(|c| *c == "http_status").count(), 1);
        assert!(d.problems().is_empty(), "{:?}", d.problems());
    }

    #[test]
    fn descriptor_problems_name_bad_words() {
        let d = Descriptor::new("X Y", "0.1.0").with_metric("Deals Won", MetricKind::Count);
        let problems = d.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
