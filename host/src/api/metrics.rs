//! Metrics as the API shows them: a connector's metric (count or money), or a composite
//! score defined by an admin as a weighted sum of count metrics (resolved by
//! [`crate::scoring::metrics`]), and the rendering of their figures.
//!
//! # Units
//! Counts are whole numbers, money is micros of the tenant currency (as in the store), and
//! a score is micro-points: a weight is kept as millionths (`1.5` → 1 500 000), and a
//! score is `Σ weight_micros × count`, so sums stay exact integers until rendered.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::format::money_to_decimal;
use crate::ingest::MetricKind;
pub(super) use crate::scoring::metrics::Unit;

/// The schema of [`Unit`] (documentation only).
#[allow(dead_code)]
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Kind)]
pub(super) enum UnitSchema {
    /// Whole numbers of things (integers).
    Count,
    /// Money in the tenant currency (decimal strings).
    Money,
    /// Points of a composite metric (numbers, up to six decimals).
    Score,
}

/// A figure as the API answers it.
pub(super) type Figure = Value;

/// Rendering a value of a unit.
pub(super) trait Figures {
    /// Counts as integers; money as a decimal string in the tenant currency, rounded to its
    /// minor units; scores as numbers (integers when whole).
    fn figure(self, value: i128, currency: &str) -> Figure;
}

impl Figures for Unit {
    fn figure(self, value: i128, currency: &str) -> Figure {
        match self {
            Unit::Count => json!(value),
            Unit::Money => json!(money_to_decimal(value, currency)),
            Unit::Score => score_json(value),
        }
    }
}

/// Micro-points as a JSON number: an integer when whole, else a decimal with at most six
/// places.
pub(super) fn score_json(micros: i128) -> Value {
    if micros % 1_000_000 == 0 {
        return json!(micros / 1_000_000);
    }
    let text = crate::format::micros_to_decimal(micros);
    serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
}

/// A race's goal as a figure of the metric's unit (the raw number if the metric is gone).
pub(super) fn goal_figure(goal: Option<i64>, unit: Option<Unit>, currency: &str) -> Value {
    match (goal, unit) {
        (None, _) => Value::Null,
        (Some(g), Some(unit)) => unit.figure(i128::from(g), currency),
        (Some(g), None) => json!(g),
    }
}

/// The kind of a connector metric, from the installed connectors that declare it.
pub(super) fn connector_metric_kind(state: &AppState, metric: &str) -> Option<MetricKind> {
    state.scoring.connector_metric_kind(metric)
}

// ----- the routes ---------------------------------------------------------------------------

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::extract::{ApiJson, User};
use super::openapi::ErrorBody;
use super::tenants::{audit, check_name};
use crate::store::Actor;
use crate::store::engine::{CompositeMetric, CompositeTerm};
use crate::store::types::now_ms;

/// The most terms a composite metric may have.
const MAX_TERMS: usize = 20;
/// The largest weight's magnitude.
const MAX_WEIGHT_MICROS: i128 = 1_000_000 * 1_000_000;

/// A new composite metric: a weighted sum of connector count metrics.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"slug": "points", "name": "Points", "terms": [{"metric": "deals_won", "weight": 10}, {"metric": "calls", "weight": "0.5"}]}))]
pub(super) struct NewMetricBody {
    /// What KPIs, targets and contests will name it by: 1 to 64 of `a-z`, `0-9`, `_`,
    /// starting with a letter; not a connector metric's slug.
    slug: String,
    /// An optional display name.
    name: Option<String>,
    /// 1 to 20 terms, each metric once.
    terms: Vec<TermBody>,
}

/// One term: a connector count metric and its weight.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TermBody {
    /// A count metric of an installed connector (money metrics cannot be added to counts).
    metric: String,
    /// A non-zero decimal (number or string) with at most six decimals; may be negative.
    #[schema(value_type = super::openapi::AmountSchema)]
    weight: Value,
}

/// A metric the tenant can measure.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MetricView {
    /// Its slug.
    slug: String,
    /// Display name (composites only).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `count`, `money` or `score`.
    #[schema(value_type = UnitSchema)]
    kind: Unit,
    /// `connector` (declared by an installed connector) or `composite` (defined by an admin).
    source: &'static str,
    /// The connectors declaring it (connector metrics only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    connectors: Vec<String>,
    /// Its weighted terms (composites only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    terms: Vec<TermView>,
}

/// A term as shown: the weight as a decimal string.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct TermView {
    /// The connector count metric.
    metric: String,
    /// Its weight, as a decimal string.
    weight: String,
}

/// Every metric of the tenant.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct MetricList {
    /// Connector metrics first, then composites, each by slug.
    metrics: Vec<MetricView>,
}

/// Parses a weight into millionths: 400 unless a plain decimal number or string with at
/// most six decimals, 422 if zero or too large.
fn parse_weight(index: usize, weight: &Value) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_field",
            format!("`terms[{index}].weight` must be a decimal number such as 10 or \"0.5\" (at most six decimals)"),
        )
    };
    let text = match weight {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(bad()),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (units, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if units.is_empty() || units.len() > 12 || !all_digits(units) || !all_digits(frac) {
        return Err(bad());
    }
    if digits.contains('.') && frac.is_empty() {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 6 {
        return Err(bad());
    }
    let units: i128 = units.parse().map_err(|_| bad())?;
    let micros = units * 1_000_000 + format!("{frac:0<6}").parse::<i128>().map_err(|_| bad())?;
    if micros == 0 {
        return Err(ApiError::unprocessable("weight_zero", format!("`terms[{index}].weight` must not be zero")));
    }
    if micros > MAX_WEIGHT_MICROS {
        return Err(ApiError::unprocessable(
            "weight_too_large",
            format!("`terms[{index}].weight` must be at most 1000000 in magnitude"),
        ));
    }
    let micros = if negative { -micros } else { micros };
    i64::try_from(micros).map_err(|_| bad())
}

/// Whether a slug has the allowed shape.
fn is_slug(slug: &str) -> bool {
    let mut bytes = slug.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && slug.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A weight as the shortest exact decimal (`10`, `0.5`, `-1.25`).
fn weight_text(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let magnitude = micros.unsigned_abs();
    let (units, frac) = (magnitude / 1_000_000, magnitude % 1_000_000);
    if frac == 0 {
        return format!("{sign}{units}");
    }
    let frac = format!("{frac:06}");
    format!("{sign}{units}.{}", frac.trim_end_matches('0'))
}

fn composite_view(m: CompositeMetric) -> MetricView {
    MetricView {
        slug: m.slug,
        name: m.name,
        kind: Unit::Score,
        source: "composite",
        connectors: Vec::new(),
        terms: m
            .terms
            .into_iter()
            .map(|t| TermView { metric: t.metric, weight: weight_text(t.weight_micros) })
            .collect(),
    }
}

/// Defines a composite metric (admin).
///
/// A weighted sum of connector count metrics (`points = 10 × deals_won + 0.5 × calls`),
/// usable in KPIs, targets and contests like any metric; its figures are points. Terms are
/// count metrics of installed connectors only: money cannot be added to counts, and a
/// composite cannot contain a composite (so no definition can refer to itself).
#[utoipa::path(post, path = "/v1/metrics", tag = "metrics", operation_id = "create_metric",
    request_body = NewMetricBody,
    responses(
        (status = 201, description = "Defined.", body = MetricView),
        (status = 400, description = "Malformed body, slug or weight (`invalid_field`), or a metric listed twice.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "A term names a metric no installed connector declares.", body = ErrorBody),
        (status = 409, description = "The slug is taken by a connector metric or a composite (`metric_exists`).", body = ErrorBody),
        (status = 422, description = "No terms or too many (`no_terms`, `too_many_terms`), a money term (`money_term`), a composite term or the metric itself (`metric_cycle`), a zero or huge weight.", body = ErrorBody),
    ))]
pub(super) async fn create_metric(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewMetricBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    if !is_slug(&body.slug) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "`slug` must be 1 to 64 of a-z, 0-9 and _, starting with a letter",
        ));
    }
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let mut terms: Vec<CompositeTerm> = Vec::with_capacity(body.terms.len());
    for (index, term) in body.terms.iter().enumerate() {
        let weight_micros = parse_weight(index, &term.weight)?;
        if terms.iter().any(|t| t.metric == term.metric) {
            return Err(ApiError::bad_request(
                "invalid_field",
                format!("`terms[{index}].metric` is listed twice; give each metric once"),
            ));
        }
        terms.push(CompositeTerm { metric: term.metric.clone(), weight_micros });
    }
    if terms.is_empty() {
        return Err(ApiError::unprocessable("no_terms", "a composite metric needs at least one term"));
    }
    if terms.len() > MAX_TERMS {
        return Err(ApiError::unprocessable(
            "too_many_terms",
            format!("a composite metric has at most {MAX_TERMS} terms"),
        ));
    }
    if connector_metric_kind(&state, &body.slug).is_some() {
        return Err(ApiError::conflict("metric_exists", "an installed connector declares a metric with this slug"));
    }
    for (index, term) in terms.iter().enumerate() {
        if term.metric == body.slug {
            return Err(ApiError::unprocessable(
                "metric_cycle",
                format!("`terms[{index}].metric` is the metric being defined; a metric cannot contain itself"),
            ));
        }
        match connector_metric_kind(&state, &term.metric) {
            Some(MetricKind::Count) => {}
            Some(MetricKind::Money) => {
                return Err(ApiError::unprocessable(
                    "money_term",
                    format!("`terms[{index}].metric` is a money metric; composites add count metrics only"),
                ));
            }
            None if state.store.composite_metric(p.tenant_id, &term.metric).await?.is_some() => {
                return Err(ApiError::unprocessable(
                    "metric_cycle",
                    format!(
                        "`terms[{index}].metric` is a composite metric; composites add connector count metrics only, \
                         so that no definition can refer back to itself"
                    ),
                ));
            }
            None => return Err(ApiError::NotFound("metric")),
        }
    }
    let metric =
        CompositeMetric { slug: body.slug.clone(), name, terms, created_by: p.user_id, created_at_ms: now_ms() };
    state.store.create_composite_metric(p.tenant_id, &metric).await.map_err(|e| match e {
        crate::store::StoreError::Conflict { .. } => {
            ApiError::conflict("metric_exists", "a composite metric with this slug exists")
        }
        other => other.into(),
    })?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "metric.created", &metric.slug).await?;
    Ok((StatusCode::CREATED, axum::Json(composite_view(metric))))
}

/// Lists every metric the tenant can measure (any user).
#[utoipa::path(get, path = "/v1/metrics", tag = "metrics", operation_id = "list_metrics",
    responses((status = 200, description = "Connector metrics, then composites.", body = MetricList)))]
pub(super) async fn list_metrics(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let mut connector: BTreeMap<String, MetricView> = BTreeMap::new();
    for c in state.registry.iter() {
        for m in &c.manifest().metrics {
            let view = connector.entry(m.slug.clone()).or_insert_with(|| MetricView {
                slug: m.slug.clone(),
                name: None,
                kind: Unit::of(m.kind),
                source: "connector",
                connectors: Vec::new(),
                terms: Vec::new(),
            });
            view.connectors.push(c.manifest().id.clone());
        }
    }
    let mut metrics: Vec<MetricView> = connector.into_values().collect();
    metrics.extend(state.store.composite_metrics(p.tenant_id).await?.into_iter().map(composite_view));
    Ok(axum::Json(MetricList { metrics }))
}

/// One metric of the tenant (any user).
#[utoipa::path(get, path = "/v1/metrics/{slug}", tag = "metrics", operation_id = "get_metric",
    params(("slug" = String, Path, description = "The metric's slug.")),
    responses(
        (status = 200, description = "The metric.", body = MetricView),
        (status = 404, description = "No such metric.", body = ErrorBody),
    ))]
pub(super) async fn get_metric(
    State(state): State<AppState>,
    user: User,
    Path(slug): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let connectors: Vec<String> = state
        .registry
        .iter()
        .filter(|c| c.manifest().metrics.iter().any(|m| m.slug == slug))
        .map(|c| c.manifest().id.clone())
        .collect();
    if let Some(kind) = connector_metric_kind(&state, &slug) {
        return Ok(axum::Json(MetricView {
            slug,
            name: None,
            kind: Unit::of(kind),
            source: "connector",
            connectors,
            terms: Vec::new(),
        }));
    }
    let metric = state.store.composite_metric(p.tenant_id, &slug).await?.ok_or(ApiError::NotFound("metric"))?;
    Ok(axum::Json(composite_view(metric)))
}

/// Deletes a composite metric (admin).
///
/// Not while a contest or target measures by it.
#[utoipa::path(delete, path = "/v1/metrics/{slug}", tag = "metrics", operation_id = "delete_metric",
    params(("slug" = String, Path, description = "The composite metric's slug.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such composite metric (connector metrics cannot be deleted).", body = ErrorBody),
        (status = 409, description = "A contest or target uses it (`metric_in_use`).", body = ErrorBody),
    ))]
pub(super) async fn delete_metric(
    State(state): State<AppState>,
    user: User,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    state.store.delete_composite_metric(p.tenant_id, &slug).await.map_err(|e| match e {
        crate::store::StoreError::Conflict { .. } => {
            ApiError::conflict("metric_in_use", "a contest or target measures by this metric; delete those first")
        }
        other => other.into(),
    })?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "metric.deleted", &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_exact_millionths() {
        let w = |v: Value| parse_weight(0, &v).map_err(|e| e.status().as_u16());
        assert_eq!(w(json!(10)), Ok(10_000_000));
        assert_eq!(w(json!("0.5")), Ok(500_000));
        assert_eq!(w(json!(1.25)), Ok(1_250_000));
        assert_eq!(w(json!("-2")), Ok(-2_000_000));
        assert_eq!(w(json!("0.000001")), Ok(1));
        for bad in [json!("abc"), json!("1e3"), json!(true), json!(null), json!("0.0000001"), json!(".5"), json!("")] {
            assert_eq!(w(bad.clone()), Err(400), "{bad}");
        }
        assert_eq!(w(json!(0)), Err(422));
        assert_eq!(w(json!("-0.0")), Err(422));
        assert_eq!(w(json!("1000001")), Err(422));
    }

    #[test]
    fn weights_are_shown_as_the_shortest_exact_decimal() {
        assert_eq!(weight_text(10_000_000), "10");
        assert_eq!(weight_text(500_000), "0.5");
        assert_eq!(weight_text(-1_250_000), "-1.25");
        assert_eq!(weight_text(1), "0.000001");
    }

    #[test]
    fn scores_render_as_numbers() {
        assert_eq!(score_json(15_000_000), json!(15));
        assert_eq!(score_json(1_500_000), json!(1.5));
        assert_eq!(score_json(-250_000), json!(-0.25));
        assert_eq!(score_json(0), json!(0));
    }

    #[test]
    fn slugs() {
        for ok in ["points", "p2", "deal_points", &"a".repeat(64)] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", "Points", "2p", "_p", "p-q", "p q", &"a".repeat(65), "péché"] {
            assert!(!is_slug(bad), "{bad}");
        }
    }
}
