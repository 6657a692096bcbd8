//! The rules of contests, targets and incentives over the store and the pure engine.
//!
//! `api` parses a request, calls a function here and renders its typed answer; the
//! scheduler calls the same functions for the freezing tick and the award pass. Nothing
//! here knows HTTP or JSON documents (`serde_json::Value`): figures stay integers in the
//! metric's unit (counts, money micros, micro-points) until `api` renders them; the only
//! text written is a frozen standing ([`standings`]), through typed (de)serialization.
//!
//! * [`metrics`]: which metric a slug names (a connector's or a composite) and its values.
//! * [`goals`]: a target's periods and the goal owed over one (pro-rated for joiners),
//!   [`goals::GoalBook`] for contests ranked by percent of own target.
//! * [`progress`]: a target's and a team's progress.
//! * [`standings`]: a contest's standing (typed entries, race finishes, flags, winner),
//!   its formats ([`standings::Format`]) and its freezing at the end.
//! * [`awards`]: the points ledger, brought in line when the numbers change.
//! * [`leaderboard_cache`]: the node's cache of rendered leaderboard answers.

pub mod awards;
pub mod goals;
pub mod leaderboard_cache;
pub mod metrics;
pub mod progress;
pub mod standings;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::tz::TimeZone;

use crate::ingest::MetricKind;
use crate::store::{Store, StoreError, Tenant, TenantId};

/// Why a scoring rule refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// The store failed, or something asked for is not in the tenant.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something asked for does not exist (`what`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not see it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Well-formed but against a rule (a stable code and a sentence).
    #[error("{message}")]
    Refused {
        /// A stable code.
        code: &'static str,
        /// Which rule.
        message: String,
    },
    /// Anything else (a malformed stored value, a period out of range).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ScoringError {
    /// A refusal with its code.
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        ScoringError::Refused { code, message: message.into() }
    }
}

impl From<crate::engine::PeriodError> for ScoringError {
    fn from(e: crate::engine::PeriodError) -> Self {
        ScoringError::Internal(e.into())
    }
}

/// What scoring results are.
pub type Result<T, E = ScoringError> = std::result::Result<T, E>;

/// The scoring rules of one service instance: the store, the connector metrics installed,
/// and the node's caches (race finishes, rendered leaderboards). Cheap to clone.
#[derive(Clone)]
pub struct Scoring {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    connector_metrics: BTreeMap<String, MetricKind>,
    races: standings::RaceCache,
    leaderboards: leaderboard_cache::LeaderboardCache,
}

impl Scoring {
    /// The rules over `store`, with the metrics the installed connectors declare (slug and
    /// kind; the first declaration of a slug wins).
    pub fn new(store: Store, connector_metrics: impl IntoIterator<Item = (String, MetricKind)>) -> Self {
        let mut metrics = BTreeMap::new();
        for (slug, kind) in connector_metrics {
            metrics.entry(slug).or_insert(kind);
        }
        Scoring {
            inner: Arc::new(Inner {
                store,
                connector_metrics: metrics,
                races: standings::RaceCache::default(),
                leaderboards: leaderboard_cache::LeaderboardCache::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The kind of an installed connector's metric.
    pub fn connector_metric_kind(&self, slug: &str) -> Option<MetricKind> {
        self.inner.connector_metrics.get(slug).copied()
    }

    /// The node's cache of rendered leaderboard answers.
    pub fn leaderboards(&self) -> &leaderboard_cache::LeaderboardCache {
        &self.inner.leaderboards
    }

    /// A tenant and its time zone.
    pub async fn tenant_zone(&self, tenant: TenantId) -> Result<(Tenant, TimeZone)> {
        let tenant = self.store().tenant(tenant).await?;
        let tz = zone_of(&tenant)?;
        Ok((tenant, tz))
    }
}

/// A tenant's time zone.
pub fn zone_of(tenant: &Tenant) -> Result<TimeZone> {
    TimeZone::get(&tenant.timezone).map_err(|e| ScoringError::Internal(anyhow::anyhow!("tenant zone: {e}")))
}
