//! What both probe connectors do; only their auth scheme differs.
//!
//! A sync GETs each path of the config key `paths` (comma-separated) in order, with the query
//! `q=probe`. Every 2xx answer emits one `answers` count of 1 under the source id `p<index>`;
//! any other answer fails the sync with the SDK's code for its status
//! (`http_unauthorized` for a 401), and a request without an answer with the code of its
//! `HttpError` (`http_unauthorized` when the host could get no credentials). Before and
//! after, it writes everything it can see — every config value it can read, under any key,
//! and each answer's status, headers and body — to `debug`, so that a test can check that
//! no credential ever reached it. The roster is empty and makes no request.

use oneup_connector_sdk::{
    ConnectorError, Ctx, Descriptor, HttpRequest, KpiChange, MetricKind, RosterEntry, Setting, SyncOutcome,
};

/// The metric: one per 2xx answer.
pub const ANSWERS: &str = "answers";

/// When every upsert happened: 2025-06-02T10:00:00Z.
const OCCURRED_AT_MS: i64 = 1_748_858_400_000;

/// Every key the probe tries to read, declared or not (the host answers only declared ones).
const KEYS: &[&str] = &[
    "base_url",
    "token_url",
    "auth_url",
    "login_url",
    "paths",
    "client_id",
    "client_secret",
    "refresh_token",
    "access_token",
    "BhRestToken",
];

/// The descriptor both share, without the auth scheme and the URL settings.
pub fn descriptor(id: &str) -> Descriptor {
    Descriptor::new(id, env!("CARGO_PKG_VERSION"))
        .with_config(Setting::required("paths"))
        .with_secret(Setting::required("client_id"))
        .with_secret(Setting::required("client_secret"))
        .with_secret(Setting::required("refresh_token"))
        .with_metric(ANSWERS, MetricKind::Count)
}

/// The sync.
pub fn sync(ctx: &mut Ctx<'_>) -> Result<SyncOutcome, ConnectorError> {
    for key in KEYS {
        if let Some(value) = ctx.config(key) {
            ctx.debug(&format!("config {key}={value}"));
        }
    }
    let paths = ctx.require_config("paths")?;
    for (index, path) in paths.split(',').filter(|p| !p.is_empty()).enumerate() {
        let answer = ctx.http_get(&HttpRequest::get(path).query("q", "probe"))?;
        ctx.debug(&format!(
            "answer {path} {} {:?} {}",
            answer.status,
            answer.headers,
            String::from_utf8_lossy(answer.body.as_bytes())
        ));
        if let Some(error) = answer.status_error() {
            return Err(error);
        }
        ctx.emit(&[KpiChange::count(ANSWERS, "probe-owner", format!("p{index}"), OCCURRED_AT_MS, 1)])?;
    }
    Ok(SyncOutcome::Complete)
}

/// The roster: nobody.
pub fn roster(_ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
    Ok(Vec::new())
}
