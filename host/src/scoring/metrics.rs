//! Metrics as scoring measures them: a connector's metric (count or money), or a composite
//! score defined by an admin as a weighted sum of count metrics.
//!
//! Everything that measures (KPIs, targets, contests) goes through [`Scoring::resolve`]
//! and the [`Resolved`] metric's [`Resolved::totals`] and [`Resolved::dated`], so a
//! composite metric is usable wherever a connector metric is.
//!
//! # Units
//! Counts are whole numbers, money is micros of the tenant currency (as in the store), and
//! a score is micro-points: a weight is kept as millionths (`1.5` → 1 500 000), and a
//! score is `Σ weight_micros × count`, so sums stay exact integers until rendered.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Result, Scoring, ScoringError};
use crate::ingest::MetricKind;
use crate::store::{DatedFact, KpiTotal, Owner, Store, TenantId, UserId};

/// What a metric's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Whole numbers of things.
    Count,
    /// Micros of the tenant currency.
    Money,
    /// Micro-points of a composite metric.
    Score,
}

impl Unit {
    /// From a connector metric's kind.
    pub fn of(kind: MetricKind) -> Self {
        match kind {
            MetricKind::Count => Unit::Count,
            MetricKind::Money => Unit::Money,
        }
    }

    /// `value` as it is shown: money rounded (half away from zero) to the currency's minor
    /// units, anything else as it is. Two values that show the same compare equal here.
    pub fn shown(self, value: i128, currency: &str) -> i128 {
        match self {
            Unit::Money => {
                let step = 10i128.pow(6 - crate::format::minor_units(currency));
                let half = step / 2;
                let rounded = if value >= 0 { (value + half) / step } else { (value - half) / step };
                rounded * step
            }
            Unit::Count | Unit::Score => value,
        }
    }
}

/// One term of a metric: a connector metric and its weight in millionths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The connector metric's slug.
    pub metric: String,
    /// Its weight, in millionths (1 000 000 = ×1).
    pub weight_micros: i128,
}

/// A metric ready to measure.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its slug.
    pub slug: String,
    /// What its values are.
    pub unit: Unit,
    /// For a connector metric, itself with weight 1 (and the values are the raw ones); for
    /// a composite, its weighted count metrics.
    pub terms: Vec<Term>,
}

impl Scoring {
    /// A metric of the tenant by slug: an installed connector's, or one of the tenant's
    /// composite metrics; `None` if neither.
    pub async fn resolve(&self, tenant: TenantId, slug: &str) -> Result<Option<Resolved>> {
        if let Some(kind) = self.connector_metric_kind(slug) {
            return Ok(Some(Resolved {
                slug: slug.to_owned(),
                unit: Unit::of(kind),
                terms: vec![Term { metric: slug.to_owned(), weight_micros: 1 }],
            }));
        }
        let Some(composite) = self.store().composite_metric(tenant, slug).await? else { return Ok(None) };
        Ok(Some(Resolved {
            slug: composite.slug,
            unit: Unit::Score,
            terms: composite
                .terms
                .into_iter()
                .map(|t| Term { metric: t.metric, weight_micros: i128::from(t.weight_micros) })
                .collect(),
        }))
    }

    /// [`Scoring::resolve`] for a stored contest or target: refused
    /// (`metric_unavailable`) if the metric has gone (its connector uninstalled, or the
    /// composite deleted).
    pub async fn resolve_stored(&self, tenant: TenantId, slug: &str) -> Result<Resolved> {
        self.resolve(tenant, slug).await?.ok_or_else(|| {
            ScoringError::refused(
                "metric_unavailable",
                "this metric is not available any more (connector or definition gone)",
            )
        })
    }

    /// The unit of a metric, `None` if it is gone.
    pub async fn unit_of(&self, tenant: TenantId, slug: &str) -> Result<Option<Unit>> {
        Ok(self.resolve(tenant, slug).await?.map(|m| m.unit))
    }
}

impl Resolved {
    /// Whether a commit touching these connector metrics can change this metric's values.
    pub fn touches(&self, metrics: &[String]) -> bool {
        self.terms.iter().any(|t| metrics.contains(&t.metric))
    }

    /// Totals per owner over `[from_ms, to_ms)`, as [`Store::kpi_totals`] answers them,
    /// weighted and merged for a composite.
    pub async fn totals(&self, store: &Store, tenant: TenantId, from_ms: i64, to_ms: i64) -> Result<Vec<KpiTotal>> {
        if self.unit != Unit::Score {
            return Ok(store.kpi_totals(tenant, &self.slug, from_ms, to_ms).await?);
        }
        let mut merged: BTreeMap<Owner, KpiTotal> = BTreeMap::new();
        for term in &self.terms {
            for t in store.kpi_totals(tenant, &term.metric, from_ms, to_ms).await? {
                let entry = merged.entry(t.owner.clone()).or_insert_with(|| KpiTotal {
                    owner: t.owner.clone(),
                    value: 0,
                    facts: 0,
                    waiting_rate: 0,
                });
                entry.value += t.value * term.weight_micros;
                entry.facts += t.facts;
                entry.waiting_rate += t.waiting_rate;
            }
        }
        Ok(merged.into_values().collect())
    }

    /// Dated facts of mapped owners over `[from_ms, to_ms)` (per user and instant), as
    /// [`Store::dated_facts`] answers them, weighted and merged for a composite.
    pub async fn dated(&self, store: &Store, tenant: TenantId, from_ms: i64, to_ms: i64) -> Result<Vec<DatedFact>> {
        if self.unit != Unit::Score {
            return Ok(store.dated_facts(tenant, &self.slug, from_ms, to_ms).await?);
        }
        let mut merged: BTreeMap<(UserId, i64), i128> = BTreeMap::new();
        for term in &self.terms {
            for f in store.dated_facts(tenant, &term.metric, from_ms, to_ms).await? {
                *merged.entry((f.user_id, f.at_ms)).or_default() += f.value * term.weight_micros;
            }
        }
        Ok(merged.into_iter().map(|((user_id, at_ms), value)| DatedFact { user_id, at_ms, value }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_compared_as_shown() {
        assert_eq!(Unit::Money.shown(12_750_504_999, "GBP"), 12_750_500_000);
        assert_eq!(Unit::Money.shown(12_750_505_000, "GBP"), 12_750_510_000);
        assert_eq!(Unit::Money.shown(-5_000, "GBP"), -10_000);
        assert_eq!(Unit::Money.shown(12_750_500_000, "JPY"), 12_751_000_000);
        assert_eq!(Unit::Count.shown(7, "GBP"), 7);
    }
}
