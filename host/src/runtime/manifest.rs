//! A connector's manifest: its `describe` answer, validated and turned into host types.
//!
//! Everything in here is the connector's closed vocabulary (metric slugs, codes, cursor
//! keys, setting keys) and is reviewed by the operator at install. It is checked by shape
//! so that even this vocabulary cannot smuggle free text into logs or storage.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::bindings::latest::oneup::connector::types as wit;
use super::egress::HostPattern;
use crate::ingest::model::{MetricKind, Vocabulary};

/// A validated connector descriptor.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The connector id (`pipedrive`).
    pub id: String,
    /// The connector's own version.
    pub version: String,
    /// The contract version it was built against, e.g. `0.1.0`.
    pub contract: String,
    /// Metrics it emits, in declaration order.
    pub metrics: Vec<MetricSpec>,
    /// Non-secret settings.
    pub config: Vec<SettingSpec>,
    /// Secret settings.
    pub secrets: Vec<SettingSpec>,
    /// The config key holding the base URL.
    pub base_url_key: String,
    /// Host patterns the base URL may match.
    pub allowed_hosts: Vec<String>,
    /// How the host authenticates requests.
    pub auth: AuthSpec,
    /// Declared log and error codes.
    pub log_codes: Vec<String>,
    /// Declared cursor keys.
    pub cursor_keys: Vec<String>,
    /// Default interval between scheduled syncs.
    #[serde(serialize_with = "as_secs")]
    pub default_sync_interval: Duration,
    #[serde(skip)]
    pub(crate) host_patterns: Vec<HostPattern>,
    #[serde(skip)]
    pub(crate) vocabulary: Vocabulary,
}

/// A metric and how its values add up.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSpec {
    /// The slug.
    pub slug: String,
    /// `count` or `money`.
    pub kind: MetricKind,
}

/// A setting the operator provides.
#[derive(Debug, Clone, Serialize)]
pub struct SettingSpec {
    /// The key.
    pub key: String,
    /// Whether it must be given.
    pub required: bool,
    /// The default value (config only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// An authentication scheme, as data.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum AuthSpec {
    /// No credentials.
    None,
    /// A secret in a request header.
    ApiKeyHeader {
        /// The header name.
        header: String,
        /// The secret key holding the value.
        secret_key: String,
    },
    /// OAuth 2.0 refresh-token flow.
    Oauth2Refresh {
        /// The config key holding the token URL.
        token_url_key: String,
    },
    /// Bullhorn's OAuth 2.0 + REST login session.
    BullhornSession {
        /// The config key holding the OAuth URL.
        auth_url_key: String,
        /// The config key holding the login URL.
        login_url_key: String,
    },
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Why a descriptor was refused. Messages name the rule and, for vocabulary entries that
/// failed the shape check, only their position: the text itself is not repeated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The id is not lowercase letters, digits, `-` and `_` (1 to 48).
    #[error("connector id is not a lowercase identifier of at most 48 characters")]
    BadId,
    /// The version is not a semantic version.
    #[error("connector version is not a semantic version (MAJOR.MINOR.PATCH)")]
    BadVersion,
    /// A vocabulary entry does not have the slug shape.
    #[error("{what} #{index} is not a lowercase slug (a-z, 0-9, _; at most 48 characters, starting with a letter)")]
    BadSlug {
        /// Which list.
        what: &'static str,
        /// Its position (0-based).
        index: usize,
    },
    /// The same entry is declared twice.
    #[error("{what} #{index} is declared twice")]
    Duplicate {
        /// Which list.
        what: &'static str,
        /// Its position (0-based).
        index: usize,
    },
    /// The connector declares no metric.
    #[error("the connector declares no metric")]
    NoMetrics,
    /// The base URL key is not a declared config key.
    #[error("base-url-key is not one of the declared config keys")]
    BaseUrlKeyUndeclared,
    /// An auth scheme names an undeclared key.
    #[error("the auth scheme names a key that is not declared")]
    AuthKeyUndeclared,
    /// An allowed-hosts entry is not a valid pattern.
    #[error("allowed-hosts #{index} is not a valid host pattern")]
    BadHostPattern {
        /// Its position (0-based).
        index: usize,
    },
    /// A default value was declared for a secret.
    #[error("secret #{index} declares a default value; secrets have none")]
    SecretDefault {
        /// Its position (0-based).
        index: usize,
    },
    /// A list is longer than the host accepts.
    #[error("{what} has more than {max} entries")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// A header name that is not a plain token or a default value that is too long.
    #[error("{what} is malformed")]
    Malformed {
        /// What.
        what: &'static str,
    },
}

/// Checks the slug shape: `^[a-z][a-z0-9_]{0,47}$`.
pub fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn is_connector_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    s.len() <= 64
        && parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|c| c.is_ascii_digit()))
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || b".-+".contains(&c))
}

const MAX_LIST: usize = 256;

fn slugs<'a>(what: &'static str, items: impl Iterator<Item = &'a str>) -> Result<Vec<String>, ManifestError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (index, item) in items.enumerate() {
        if index >= MAX_LIST {
            return Err(ManifestError::TooMany { what, max: MAX_LIST });
        }
        if !is_slug(item) {
            return Err(ManifestError::BadSlug { what, index });
        }
        if !seen.insert(item) {
            return Err(ManifestError::Duplicate { what, index });
        }
        out.push(item.to_owned());
    }
    Ok(out)
}

impl Manifest {
    /// Validates a `describe` answer of a connector built against `contract`.
    pub fn from_descriptor(d: wit::Descriptor, contract: String) -> Result<Self, ManifestError> {
        if !is_connector_id(&d.id) {
            return Err(ManifestError::BadId);
        }
        if !is_semver(&d.version) {
            return Err(ManifestError::BadVersion);
        }
        if d.metrics.is_empty() {
            return Err(ManifestError::NoMetrics);
        }
        let metric_slugs = slugs("metric", d.metrics.iter().map(|m| m.slug.as_str()))?;
        let metrics: Vec<MetricSpec> = metric_slugs
            .into_iter()
            .zip(&d.metrics)
            .map(|(slug, m)| MetricSpec {
                slug,
                kind: match m.kind {
                    wit::MetricKind::Count => MetricKind::Count,
                    wit::MetricKind::Money => MetricKind::Money,
                },
            })
            .collect();
        let config_keys = slugs("config key", d.config.iter().map(|s| s.key.as_str()))?;
        let secret_keys = slugs("secret key", d.secrets.iter().map(|s| s.key.as_str()))?;
        let config = config_keys
            .into_iter()
            .zip(&d.config)
            .map(|(key, s)| {
                if s.default_value.as_ref().is_some_and(|v| v.len() > 2048 || v.chars().any(char::is_control)) {
                    return Err(ManifestError::Malformed { what: "a config default value" });
                }
                Ok(SettingSpec { key, required: s.required, default: s.default_value.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secrets = secret_keys
            .into_iter()
            .zip(&d.secrets)
            .enumerate()
            .map(|(index, (key, s))| {
                if s.default_value.is_some() {
                    return Err(ManifestError::SecretDefault { index });
                }
                Ok(SettingSpec { key, required: s.required, default: None })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !config.iter().any(|s| s.key == d.base_url_key) {
            return Err(ManifestError::BaseUrlKeyUndeclared);
        }
        let has_config = |k: &str| config.iter().any(|s| s.key == k);
        let has_secret = |k: &str| secrets.iter().any(|s| s.key == k);
        let auth = match d.auth {
            wit::AuthScheme::None => AuthSpec::None,
            wit::AuthScheme::ApiKeyHeader(a) => {
                if !has_secret(&a.secret_key) {
                    return Err(ManifestError::AuthKeyUndeclared);
                }
                let h = a.header.as_bytes();
                if h.is_empty() || h.len() > 64 || !h.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
                    return Err(ManifestError::Malformed { what: "the auth header name" });
                }
                AuthSpec::ApiKeyHeader { header: a.header.to_ascii_lowercase(), secret_key: a.secret_key }
            }
            wit::AuthScheme::Oauth2Refresh(o) => {
                if !has_config(&o.token_url_key) {
                    return Err(ManifestError::AuthKeyUndeclared);
                }
                AuthSpec::Oauth2Refresh { token_url_key: o.token_url_key }
            }
            wit::AuthScheme::BullhornSession(b) => {
                if !has_config(&b.auth_url_key) || !has_config(&b.login_url_key) {
                    return Err(ManifestError::AuthKeyUndeclared);
                }
                AuthSpec::BullhornSession { auth_url_key: b.auth_url_key, login_url_key: b.login_url_key }
            }
        };
        if d.allowed_hosts.len() > MAX_LIST {
            return Err(ManifestError::TooMany { what: "allowed-hosts", max: MAX_LIST });
        }
        let host_patterns = d
            .allowed_hosts
            .iter()
            .enumerate()
            .map(|(index, p)| HostPattern::parse(p).map_err(|_| ManifestError::BadHostPattern { index }))
            .collect::<Result<Vec<_>, _>>()?;
        let log_codes = slugs("log code", d.log_codes.iter().map(String::as_str))?;
        let cursor_keys = slugs("cursor key", d.cursor_keys.iter().map(String::as_str))?;
        let vocabulary = Vocabulary::new(
            metrics.iter().map(|m| (m.slug.clone(), m.kind)),
            log_codes.iter().cloned(),
            cursor_keys.iter().cloned(),
        )
        .map_err(|_| ManifestError::Malformed { what: "the vocabulary" })?;
        Ok(Manifest {
            id: d.id,
            version: d.version,
            contract,
            metrics,
            config,
            secrets,
            base_url_key: d.base_url_key,
            allowed_hosts: host_patterns.iter().map(|p| p.to_string()).collect(),
            auth,
            log_codes,
            cursor_keys,
            default_sync_interval: Duration::from_secs(u64::from(d.default_sync_interval_secs.clamp(60, 7 * 86_400))),
            host_patterns,
            vocabulary,
        })
    }

    /// Whether `code` is in the connector's declared log vocabulary.
    pub fn declares_code(&self, code: &str) -> bool {
        self.log_codes.iter().any(|c| c == code)
    }

    /// The validation vocabulary.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The parsed host patterns.
    pub fn host_patterns(&self) -> &[HostPattern] {
        &self.host_patterns
    }
}

/// What a connector may do, as an operator reviews it before installing it and an admin
/// consents to when enabling it (like a browser extension's permissions): the hosts it may
/// reach, the metrics it may write, the keys it is given, how it authenticates, what it may
/// log and keep as a cursor, and the contract version. Stored with an integration's consent
/// (as JSON) and compared when the installed component changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Grants {
    /// The contract version the component was built against.
    pub contract: String,
    /// Host patterns a base URL may match.
    pub allowed_hosts: BTreeSet<String>,
    /// Metrics and their kinds (`count`, `money`).
    pub metrics: std::collections::BTreeMap<String, MetricKind>,
    /// Non-secret setting keys.
    pub config_keys: BTreeSet<String>,
    /// Secret setting keys.
    pub secret_keys: BTreeSet<String>,
    /// The authentication scheme with its keys, e.g. `api_key_header(x-api-token, api_token)`.
    pub auth: String,
    /// Declared log and error codes.
    pub log_codes: BTreeSet<String>,
    /// Declared cursor keys.
    pub cursor_keys: BTreeSet<String>,
}

/// How a component's grants differ from the ones consented to. Only additions matter: a
/// component that may do less than it was allowed needs no new consent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GrantChanges {
    /// New host patterns.
    pub added_hosts: Vec<String>,
    /// New metrics, or metrics whose kind changed.
    pub added_metrics: Vec<String>,
    /// New secret keys.
    pub added_secret_keys: Vec<String>,
    /// The new authentication scheme, when it changed.
    pub auth: Option<String>,
    /// New config keys, log codes or cursor keys, and a changed contract version: shown
    /// and audited, but they widen nothing the consent covers.
    pub other: Vec<String>,
}

impl GrantChanges {
    /// Whether the component may do more than was consented to (a new host pattern, metric,
    /// secret key or scheme): the integration then waits for an admin's approval.
    pub fn is_wider(&self) -> bool {
        !self.added_hosts.is_empty()
            || !self.added_metrics.is_empty()
            || !self.added_secret_keys.is_empty()
            || self.auth.is_some()
    }

    /// A one-line summary of counts, for audit records: `hosts+1 metrics+1`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, n) in [
            ("hosts", self.added_hosts.len()),
            ("metrics", self.added_metrics.len()),
            ("secret_keys", self.added_secret_keys.len()),
            ("other", self.other.len()),
        ] {
            if n > 0 {
                parts.push(format!("{what}+{n}"));
            }
        }
        if self.auth.is_some() {
            parts.push("auth_changed".to_owned());
        }
        if parts.is_empty() { "none".to_owned() } else { parts.join(" ") }
    }
}

impl Grants {
    /// What `self` (the installed component) adds to `approved`.
    pub fn changes_from(&self, approved: &Grants) -> GrantChanges {
        let added = |new: &BTreeSet<String>, old: &BTreeSet<String>| new.difference(old).cloned().collect::<Vec<_>>();
        let mut other = Vec::new();
        if self.contract != approved.contract {
            other.push(format!("contract {}", self.contract));
        }
        other.extend(added(&self.config_keys, &approved.config_keys).into_iter().map(|k| format!("config key {k}")));
        other.extend(added(&self.log_codes, &approved.log_codes).into_iter().map(|k| format!("log code {k}")));
        other.extend(added(&self.cursor_keys, &approved.cursor_keys).into_iter().map(|k| format!("cursor key {k}")));
        GrantChanges {
            added_hosts: added(&self.allowed_hosts, &approved.allowed_hosts),
            added_metrics: self
                .metrics
                .iter()
                .filter(|(slug, kind)| approved.metrics.get(*slug) != Some(kind))
                .map(|(slug, _)| slug.clone())
                .collect(),
            added_secret_keys: added(&self.secret_keys, &approved.secret_keys),
            auth: (self.auth != approved.auth).then(|| self.auth.clone()),
            other,
        }
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("grants serialise")
    }

    /// Reads the stored form.
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }
}

impl AuthSpec {
    /// The scheme with its keys, in one line.
    pub fn describe(&self) -> String {
        match self {
            AuthSpec::None => "none".to_owned(),
            AuthSpec::ApiKeyHeader { header, secret_key } => format!("api_key_header({header}, {secret_key})"),
            AuthSpec::Oauth2Refresh { token_url_key } => format!("oauth2_refresh({token_url_key})"),
            AuthSpec::BullhornSession { auth_url_key, login_url_key } => {
                format!("bullhorn_session({auth_url_key}, {login_url_key})")
            }
        }
    }
}

impl Manifest {
    /// The component's grants.
    pub fn grants(&self) -> Grants {
        Grants {
            contract: self.contract.clone(),
            allowed_hosts: self.allowed_hosts.iter().cloned().collect(),
            metrics: self.metrics.iter().map(|m| (m.slug.clone(), m.kind)).collect(),
            config_keys: self.config.iter().map(|s| s.key.clone()).collect(),
            secret_keys: self.secrets.iter().map(|s| s.key.clone()).collect(),
            auth: self.auth.describe(),
            log_codes: self.log_codes.iter().cloned().collect(),
            cursor_keys: self.cursor_keys.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_and_version_shapes() {
        assert!(is_slug("deals_won"));
        assert!(!is_slug("Deals"));
        assert!(!is_slug("deals won"));
        assert!(!is_slug("_x"));
        assert!(!is_slug(&"a".repeat(49)));
        assert!(is_semver("1.2.3"));
        assert!(is_semver("0.1.0-beta.1"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("one"));
        assert!(is_connector_id("pipedrive"));
        assert!(!is_connector_id("Pipe Drive"));
    }

    fn grants() -> Grants {
        Grants {
            contract: "0.2.0".into(),
            allowed_hosts: ["*.example.com".to_owned()].into(),
            metrics: [("deals_won".to_owned(), MetricKind::Count)].into(),
            config_keys: ["base_url".to_owned()].into(),
            secret_keys: BTreeSet::new(),
            auth: "none".into(),
            log_codes: BTreeSet::new(),
            cursor_keys: BTreeSet::new(),
        }
    }

    #[test]
    fn only_new_hosts_metrics_secret_keys_or_schemes_widen_the_grants() {
        let old = grants();
        assert!(!old.changes_from(&old).is_wider());
        let mut narrower = old.clone();
        narrower.allowed_hosts.clear();
        assert!(!narrower.changes_from(&old).is_wider());
        let mut other = old.clone();
        other.log_codes.insert("new_code".into());
        other.config_keys.insert("mode".into());
        let changes = other.changes_from(&old);
        assert!(!changes.is_wider());
        assert_eq!(changes.other.len(), 2);
        let mut host = old.clone();
        host.allowed_hosts.insert("*.evil.example".into());
        assert_eq!(host.changes_from(&old).added_hosts, ["*.evil.example"]);
        let mut kind = old.clone();
        kind.metrics.insert("deals_won".into(), MetricKind::Money);
        assert_eq!(kind.changes_from(&old).added_metrics, ["deals_won"]);
        let mut secret = old.clone();
        secret.secret_keys.insert("token".into());
        assert!(secret.changes_from(&old).is_wider());
        let mut auth = old.clone();
        auth.auth = "oauth2_refresh(token_url)".into();
        assert_eq!(auth.changes_from(&old).summary(), "auth_changed");
        assert_eq!(Grants::from_json(&old.to_json()), Some(old));
    }
}
