//! The OpenAPI 3.1 document of the API, generated from the handlers themselves.
//!
//! Every route is registered through utoipa-axum's `routes!` ([`super::routes`]), which
//! takes the path, method, parameters, bodies and answers from the handler's
//! `#[utoipa::path]` annotation and mounts the handler under that same path: a route
//! cannot be served without being documented, nor documented under another path.
//! [`document`] then adds what holds for every route: the bearer-token security of
//! everything under `/v1/`, its 401 answer, and the 500 answer, all with the one error
//! body [`ErrorBody`].
//!
//! Served at `GET /openapi.json` (anyone) with Swagger UI at `GET /docs`; the page's files
//! come from the `utoipa-swagger-ui-vendored` crate, embedded in the binary (no CDN).
//! `host/openapi.json` is the committed copy: a unit test fails with a diff whenever the
//! generated document differs from it, and `ONEUP_UPDATE_OPENAPI=1 cargo test -p oneup
//! openapi` rewrites it after an intended change.

use serde::Serialize;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder, Schema};
use utoipa::{OpenApi, ToSchema};

/// The name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// Every error answer: `{"error":{"code","message"}}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_field", "message": "`goal` must be above zero"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_field`, `not_found`, `target_overlaps`, …).
    pub code: String,
    /// What is wrong, for a person. Never carries a secret or internal detail.
    pub message: String,
    /// On 5xx answers only: the request's id (also the `x-request-id` header), under which
    /// the server log keeps the details. Quote it to the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `{"id"}` of something just created.
#[derive(Serialize, ToSchema)]
pub struct Created {
    /// Its id.
    pub id: uuid::Uuid,
}

/// A user's role in their tenant.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Role)]
pub enum RoleSchema {
    /// Manages users, integrations, rates, metrics and everything a manager may.
    Admin,
    /// Reads KPIs, runs contests and sets targets.
    Manager,
    /// Sees their own figures, targets and the contests they take part in.
    Member,
}

/// How a metric's values add up.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MetricKind)]
pub enum MetricKindSchema {
    /// Whole numbers of things.
    Count,
    /// Amounts of money, in the tenant currency.
    Money,
}

/// The length of a target's period, in the tenant's time zone.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Period)]
pub enum PeriodSchema {
    /// One local day.
    Day,
    /// One week, from the tenant calendar's week start (Monday, ISO, by default).
    Week,
    /// One calendar month.
    Month,
    /// January–March, April–June, July–September or October–December.
    Quarter,
    /// One calendar year.
    Year,
    /// The local days `starts_on` to `ends_on`, inclusive; never recurring.
    Custom,
}

/// A figure: a JSON number for a count (always an integer) or points, a decimal string in the
/// tenant currency (rounded to its minor units) for money. Exactly one alternative matches any
/// value (an integer is a number in JSON Schema, so counts are not a separate alternative).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Figure)]
pub enum FigureSchema {
    /// A count (an integer), points of a composite metric (up to six decimals), or a count
    /// expected by now (two decimals).
    Number(f64),
    /// Money, such as `"2500.00"`.
    Money(String),
}

/// One event of a leaderboard stream (`GET /v1/contests/{id}/leaderboard/stream`), as a
/// client's event-stream parser sees it: its `event` type, its `data` (JSON text) and, on the
/// first event, a `retry` hint in milliseconds. Each alternative names the schema its `data`
/// follows (`contentSchema`):
/// - `standing`: the body of `GET …/leaderboard` (`Leaderboard`);
/// - `names`: participant id → display name;
/// - `final`: the frozen result (`Leaderboard`), last event of the stream;
/// - `error`: the error body (`ErrorBody`), last event of the stream.
pub struct StreamEventSchema;

impl StreamEventSchema {
    /// One alternative: `event` is `name`, `data` JSON text following `data`.
    fn alternative(name: &str, description: &str, data: RefOr<Schema>) -> RefOr<Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut data_text =
            ObjectBuilder::new().schema_type(Type::String).content_media_type("application/json").build();
        let schema = serde_json::to_value(&data).expect("a schema is JSON");
        data_text.extensions.get_or_insert_with(Default::default).insert("contentSchema".into(), schema);
        ObjectBuilder::new()
            .description(Some(description))
            .property("event", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name])))
            .required("event")
            .property("data", data_text)
            .required("data")
            .property("retry", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .into()
    }
}

impl utoipa::PartialSchema for StreamEventSchema {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Ref, Type};
        let names = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(
                ObjectBuilder::new().schema_type(Type::String).into(),
            )))
            .into();
        OneOfBuilder::new()
            .item(Self::alternative(
                "standing",
                "The standing now: the body of `GET …/leaderboard`.",
                Ref::from_schema_name("Leaderboard").into(),
            ))
            .item(Self::alternative("names", "Participant id → display name, once after the first standing.", names))
            .item(Self::alternative(
                "final",
                "The frozen result once the contest has ended; the stream ends after it.",
                Ref::from_schema_name("Leaderboard").into(),
            ))
            .item(Self::alternative(
                "error",
                "The standing can no longer be read; the stream ends after it.",
                Ref::from_schema_name("ErrorBody").into(),
            ))
            .into()
    }
}

impl ToSchema for StreamEventSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "StreamEvent".into()
    }
}

/// An amount given by a client: a number, or a decimal string such as `"2500.00"` (exact).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Amount)]
pub enum AmountSchema {
    /// A JSON number.
    Number(f64),
    /// A decimal string.
    Text(String),
}

/// The schemas of the integration routes' bodies (`integrations.rs` builds them as JSON;
/// these describe them field by field).
pub mod integration_schemas {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    /// `PUT /v1/integrations/{connector}`'s body: the connector's settings.
    #[derive(Serialize, ToSchema)]
    pub struct EnableIntegrationBody {
        /// Config keys the connector declares (`GET /v1/connectors`); required ones without
        /// a default must be given.
        pub config: BTreeMap<String, String>,
        /// Secret keys the connector declares; sealed at rest, never returned or logged.
        pub secrets: BTreeMap<String, String>,
        /// Seconds between scheduled syncs, 60 to 604800 (default: the connector's).
        pub sync_interval_secs: Option<u64>,
        /// The metrics opted into, among the connector's (default: all of them). Changes
        /// to other metrics are dropped at ingest and counted on the run
        /// (`metric_not_opted_in`).
        pub metrics: Option<Vec<String>>,
    }

    /// An installed connector as `GET /v1/connectors` lists it.
    #[derive(Serialize, ToSchema)]
    pub struct ConnectorView {
        /// Its id (`pipedrive`, …).
        pub id: String,
        /// Its version.
        pub version: String,
        /// The WIT contract it was built against (`oneup:connector@0.1.0`, …).
        pub contract: String,
        /// The metrics it emits: `{"slug","kind"}`.
        pub metrics: Vec<Value>,
        /// Its config keys: `{"key","required","default"}`.
        pub config: Vec<Value>,
        /// Its secret keys: `{"key","required"}`.
        pub secrets: Vec<Value>,
        /// The config key holding the base URL.
        pub base_url_key: String,
        /// Host patterns the base URL may point at.
        pub allowed_hosts: Vec<String>,
        /// How the host authenticates its requests.
        pub auth: Value,
        /// Default seconds between syncs.
        pub default_sync_interval_secs: u64,
    }

    /// `GET /v1/connectors`' answer.
    #[derive(Serialize, ToSchema)]
    pub struct ConnectorList {
        /// Every installed connector.
        pub connectors: Vec<ConnectorView>,
    }

    /// An integration (a connector enabled for the tenant).
    #[derive(Serialize, ToSchema)]
    pub struct IntegrationView {
        /// The connector's id.
        pub connector: String,
        /// Whether it is enabled.
        pub enabled: bool,
        /// Its config (never secrets).
        pub config: BTreeMap<String, String>,
        /// The metrics consented to at enabling.
        pub metrics: Vec<String>,
        /// Seconds between scheduled syncs.
        pub sync_interval_secs: u64,
        /// Who enabled it.
        pub enabled_by: Option<uuid::Uuid>,
        /// When, in milliseconds since the Unix epoch.
        pub enabled_at_ms: Option<i64>,
        /// When it was disabled.
        pub disabled_at_ms: Option<i64>,
        /// When the next scheduled sync is due.
        pub next_sync_at_ms: Option<i64>,
        /// Whether secrets are held for it.
        pub has_secrets: bool,
        /// Whether its CRM credentials work, as last seen.
        pub auth_status: String,
        /// When that was last seen.
        pub auth_status_at_ms: Option<i64>,
        /// SHA-256 (hex) of the connector component the consent covers.
        pub component_digest: Option<String>,
        /// SHA-256 (hex) of the component installed now (none: not installed).
        pub installed_digest: Option<String>,
        /// `approved`, or `needs_approval` while the installed component asks for more than
        /// was approved (a new host pattern, metric, secret key or scheme): nothing syncs
        /// until an admin approves it (`POST …/approve`).
        pub approval_status: String,
        /// What the installed component adds to the approved grants (none when it is the
        /// approved one).
        pub grant_changes: Option<GrantChangesView>,
    }

    /// What an installed component adds to the grants an integration's consent covers.
    #[derive(Serialize, ToSchema)]
    pub struct GrantChangesView {
        /// New host patterns.
        pub added_hosts: Vec<String>,
        /// New metrics, or metrics whose kind changed.
        pub added_metrics: Vec<String>,
        /// New secret keys.
        pub added_secret_keys: Vec<String>,
        /// The new authentication scheme, when it changed.
        pub auth: Option<String>,
        /// Other additions (config keys, log codes, cursor keys, contract version): shown
        /// and audited, never a reason to pause.
        pub other: Vec<String>,
    }

    /// `POST /v1/integrations/{connector}/approve`'s body.
    #[derive(Serialize, ToSchema)]
    pub struct ApproveBody {
        /// The SHA-256 (hex) of the installed component being approved, as shown in
        /// `installed_digest`: a different component installed meanwhile is not approved.
        pub digest: String,
    }

    /// `GET /v1/integrations`' answer.
    #[derive(Serialize, ToSchema)]
    pub struct IntegrationList {
        /// Every integration of the tenant.
        pub integrations: Vec<IntegrationView>,
    }

    /// `POST …/sync`'s answer without waiting.
    #[derive(Serialize, ToSchema)]
    pub struct QueuedRun {
        /// The run queued (or already queued or running).
        pub run_id: uuid::Uuid,
    }

    /// Where a sync run is. `queued`: waiting for a node; `running`: held by a node;
    /// `succeeded`: it did everything it set out to do (owners mapped from the CRM's roster,
    /// every change since the last cursor read and committed, its snapshots resolved);
    /// `partial`: it ended without an error but did not do all of that, its `reasons` say
    /// what, and a prompt retry is scheduled; `failed`: an error ended it (`error`), what it
    /// committed before stays.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum RunStatusView {
        /// Waiting for a node.
        Queued,
        /// Held by a node.
        Running,
        /// Did everything it set out to do.
        Succeeded,
        /// Did not do everything; see `reasons`.
        Partial,
        /// An error ended it; see `error`.
        Failed,
    }

    /// Why a run is `partial`: `roster_failed:<code>` (the CRM's user list could not be
    /// read: new owners wait for a mapping), `owners_unmapped:<n>` (with a failed roster:
    /// the integration's CRM owners still waiting for a mapping), `budget_exhausted` (the
    /// CRM's request budget ran out; the rest is read when it is back),
    /// `rate_limit_wait_exhausted` (the CRM's rate limits outlasted the run's wait budget),
    /// `snapshot_skipped` (a complete read was cut short: deletions it would have found are
    /// found by a later run).
    #[derive(Serialize, ToSchema)]
    #[schema(
        value_type = String,
        pattern = "^(roster_failed:[a-z0-9_]+|owners_unmapped:[0-9]+|budget_exhausted|rate_limit_wait_exhausted|snapshot_skipped)$"
    )]
    pub struct RunReasonCode(pub String);

    /// `POST …/resync`'s answer.
    #[derive(Serialize, ToSchema)]
    pub struct ResyncAnswer {
        /// `now`: the cursor is reset and `run_id` (queued) reads everything;
        /// `after_running_run`: `run_id` is in flight, the cursor is reset when it ends and a
        /// run that reads everything is due at once then.
        pub cursor_reset: ResyncWhen,
        /// The run concerned.
        pub run_id: uuid::Uuid,
    }

    /// When a resync's cursor reset applies.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ResyncWhen {
        /// At once.
        Now,
        /// When the run in flight ends.
        AfterRunningRun,
    }

    /// A sync run.
    #[derive(Serialize, ToSchema)]
    pub struct RunView {
        /// Its id.
        pub id: uuid::Uuid,
        /// The connector.
        pub connector: String,
        /// Where it is.
        pub status: RunStatusView,
        /// Why it is `partial` (empty otherwise).
        pub reasons: Vec<RunReasonCode>,
        /// Changes committed.
        pub events_accepted: u64,
        /// Changes refused, all reasons.
        pub events_rejected: u64,
        /// A stable error code when it failed.
        pub error: Option<String>,
        /// Upserts committed.
        pub upserts: u64,
        /// Retractions committed.
        pub retractions: u64,
        /// Refused changes by reason code.
        pub rejected: BTreeMap<String, u64>,
        /// Facts of CRM owners mapped to nobody yet.
        pub unmapped: u64,
        /// Money facts waiting for an exchange rate.
        pub waiting_for_rate: u64,
        /// Changes ignored because they concern settled facts (dated before the tenant's
        /// settle window; see `GET /v1/privacy/retention`).
        pub settled: u64,
        /// Checkpoints committed.
        pub checkpoints: u64,
        /// Attempts (a run resumes on another node after a lost lease).
        pub attempts: u64,
        /// When it was queued, in milliseconds since the Unix epoch.
        pub created_at_ms: i64,
        /// When it started.
        pub started_at_ms: Option<i64>,
        /// When it finished.
        pub finished_at_ms: Option<i64>,
        /// How long it ran.
        pub duration_ms: Option<i64>,
    }

    /// `GET …/runs`' answer.
    #[derive(Serialize, ToSchema)]
    pub struct RunList {
        /// The latest runs, newest first.
        pub runs: Vec<RunView>,
    }

    /// `GET …/owners`' answer.
    #[derive(Serialize, ToSchema)]
    pub struct OwnersView {
        /// How many CRM owners wait for a mapping.
        pub unmapped_owners: u64,
        /// How many facts they hold.
        pub unmapped_facts: u64,
        /// Each as `{"owner": keyed hash, "facts"}`.
        pub unmapped: Vec<Value>,
        /// The mappings: `{"owner": keyed hash, "user_id", "source"}`, `source` how it was
        /// made: `auto` (the roster, through an address an admin set), `manual` (an admin
        /// entered the CRM id) or `confirmed` (an admin confirmed a pending mapping).
        pub mapped: Vec<Value>,
        /// Mappings the roster proposes but does not make alone, waiting for an admin:
        /// `{"owner": keyed hash, "user_id", "reason", "detected_at_ms"}`. `reason`:
        /// `self_service_email` (the user set the matching address themselves) or
        /// `mapped_to_other` (the owner is already mapped to another user, who keeps it).
        /// Confirm one with `POST …/owners/{owner}/confirm`, or map the owner by its CRM id.
        pub pending: Vec<Value>,
    }

    /// `POST …/owners/{owner}/confirm`'s body.
    #[derive(Serialize, ToSchema)]
    pub struct ConfirmOwnerBody {
        /// The user the pending mapping names (as listed), so that what is confirmed is
        /// what the admin saw.
        pub user_id: uuid::Uuid,
    }

    /// `PUT …/owners`' body.
    #[derive(Serialize, ToSchema)]
    pub struct MapOwnerBody {
        /// The CRM's user id (hashed at once, never kept).
        pub crm_user_id: String,
        /// The tenant user it is.
        pub user_id: uuid::Uuid,
    }
}

/// The document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "oneup",
        description = "The oneup host: CRM connectors in a sandbox, only the numbers kept; KPIs, targets \
            and contests over them.\n\nEvery route under `/v1/` takes `Authorization: Bearer <token>`: the \
            operator's token (`ONEUP_OPERATOR_TOKEN`) for creating tenants, a tenant user's API token \
            for everything else. Roles: `admin`, `manager`, `member`; each route says who may call it. \
            Errors are always `{\"error\":{\"code\",\"message\"}}`: 400 bad input, 401 no or bad token, \
            403 wrong role, 404 unknown (another tenant's ids included), 409 conflict, 422 a rule of the \
            domain broken. Money is a decimal string in the tenant currency, counts are integers. \
            Interactive page: `GET /docs`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "tenants", description = "Tenants, users, tokens, teams, exchange rates and the user's own record."),
        (name = "integrations", description = "Installed connectors, the opt-in per tenant, sync runs, CRM owner mapping."),
        (name = "metrics", description = "The metrics a tenant can measure: connector metrics and composite scores."),
        (name = "kpis", description = "Totals of a metric by user, team or day over a date range."),
        (name = "contests", description = "Contests and their leaderboards."),
        (name = "targets", description = "Targets and their progress; the tenant calendar and join dates they use."),
        (name = "incentives", description = "Rewards for targets and contest placements, and each user's points ledger."),
        (name = "privacy", description = "The tenant's processing register, its privacy settings and the retention purge."),
        (name = "system", description = "Liveness and readiness probes, Prometheus metrics, the audit log and its verification, this document."),
    ),
    components(schemas(ErrorBody, ErrorDetail)),
)]
pub(super) struct ApiDoc;

/// A response with the error body.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                .build(),
        )
        .build()
        .into()
}

/// Adds what holds for every route: bearer security (and its 401, 403 for a display token
/// and 429 for an address over its failed-authentication budget) under `/v1/`, and the
/// 500 answer everywhere.
fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The operator's token (`ONEUP_OPERATOR_TOKEN`) or a tenant user's API token \
                     (`POST /v1/users/{id}/tokens`).",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let secured = path.starts_with("/v1/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            if secured {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                op.responses
                    .responses
                    .entry("401".to_owned())
                    .or_insert_with(|| error_response("No token, or a token that is not valid (`unauthorized`)."));
                op.responses.responses.entry("403".to_owned()).or_insert_with(|| {
                    error_response(
                        "A `display` token: it only reads contest leaderboards and their streams (`forbidden`).",
                    )
                });
                op.responses.responses.entry("429".to_owned()).or_insert_with(|| {
                    error_response(
                        "Too many failed authentications from this address (`too_many_failed_authentications`); \
                         `Retry-After` says when to try again. A valid token is never refused this way.",
                    )
                });
            }
            // Every query and body is parsed by the same extractors, whose refusal is a 400.
            let has_query = op
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
            if has_query || op.request_body.is_some() {
                op.responses
                    .responses
                    .entry("400".to_owned())
                    .or_insert_with(|| error_response("A malformed query (`invalid_query`) or body (`invalid_body`)."));
            }
            if op.request_body.is_some() {
                op.responses
                    .responses
                    .entry("413".to_owned())
                    .or_insert_with(|| error_response("The body is larger than the API reads (`body_too_large`)."));
            }
            op.responses.responses.entry("500".to_owned()).or_insert_with(|| {
                error_response(
                    "An internal error (`internal`); the details are in the server log only, under the \
                     `request_id` of the body.",
                )
            });
        }
    }
}

/// The whole OpenAPI document of the API.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = super::routes().into_openapi();
    finish(&mut doc);
    doc
}

/// [`document`] as pretty JSON with sorted keys and a final newline: what `GET
/// /openapi.json` serves and `host/openapi.json` holds.
pub fn document_json() -> String {
    // Through `Value`, whose maps are sorted, so the text does not depend on the order
    // in which routes were registered.
    let value = serde_json::to_value(document()).expect("the OpenAPI document serialises");
    let mut text = serde_json::to_string_pretty(&value).expect("JSON serialises");
    text.push('\n');
    text
}

/// The interactive page at `/docs`, reading `/openapi.json`.
pub(super) fn docs_page<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::new(["/openapi.json"])).into()
}

/// A line diff of `old` → `new` (`-`/`+` lines with three lines of context), for a test
/// failure a person can read.
pub fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Common prefix and suffix first: an API change touches a few places of a long text.
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    // Longest common subsequence of the middle parts.
    let mut lcs = vec![vec![0u32; mb.len() + 1]; ma.len() + 1];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            lcs[i][j] = if ma[i] == mb[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            ops.push((' ', ma[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < ma.len() && (j == mb.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', ma[i]));
            i += 1;
        } else {
            ops.push(('+', mb[j]));
            j += 1;
        }
    }
    let mut out = String::new();
    let context_before = &a[prefix.saturating_sub(3)..prefix];
    out.push_str(&format!("@@ line {} @@\n", prefix.saturating_sub(3) + 1));
    for line in context_before {
        out.push_str(&format!("  {line}\n"));
    }
    for (op, line) in ops {
        out.push_str(&format!("{op} {line}\n"));
    }
    for line in a[a.len() - suffix..].iter().take(3) {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_shows_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nD\ne\nf\nx\ng\n";
        let diff = line_diff(old, new);
        assert!(diff.contains("- d\n+ D\n"), "{diff}");
        assert!(diff.contains("+ x\n"), "{diff}");
        assert!(diff.contains("  c\n"), "{diff}");
        assert_eq!(line_diff(old, old).lines().filter(|l| l.starts_with(['+', '-'])).count(), 0);
    }

    /// The generated document is the committed `host/openapi.json`. After an intended API
    /// change, run `ONEUP_UPDATE_OPENAPI=1 cargo test -p oneup openapi` and commit the file.
    #[test]
    fn openapi_document_matches_the_committed_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = document_json();
        if std::env::var("ONEUP_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("host/openapi.json is written");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "the API's OpenAPI document changed (- committed host/openapi.json, + generated):\n{}\n\
             If the change is intended, run `ONEUP_UPDATE_OPENAPI=1 cargo test -p oneup openapi` and commit \
             host/openapi.json.",
            line_diff(&committed, &generated)
        );
    }

    #[test]
    fn every_v1_operation_is_secured_and_every_operation_has_an_id_a_tag_and_its_errors() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 25, "{}", paths.len());
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{method} {path}");
                assert!(op["operationId"].is_string(), "{what}: operationId");
                assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{what}: tags");
                assert!(op["summary"].is_string(), "{what}: summary");
                assert!(op["responses"]["500"].is_object(), "{what}: 500");
                if path.starts_with("/v1/") || path == "/metrics" {
                    assert_eq!(op["security"], serde_json::json!([{"bearer": []}]), "{what}: security");
                    assert_eq!(
                        op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{what}: 401"
                    );
                } else {
                    assert!(op.get("security").is_none(), "{what}: open");
                }
                // Every documented error answer has the error body.
                for (status, response) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                            "{what}: {status} has the error body"
                        );
                    }
                }
            }
        }
    }
}
