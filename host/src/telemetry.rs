//! This node's Prometheus metrics (`prometheus-client`), served at `GET /metrics`.
//!
//! One process-wide set ([`metrics`]): the runtime, the scheduler and the API record into
//! it where things happen, without handles threaded through their constructors. No IO here:
//! the figures read from the database (integrations waiting for an admin, the queue) and
//! the node's own gauges (pool, streams) are set by the API just before each scrape
//! ([`Metrics::set_scraped`]).
//!
//! Label values are bounded vocabularies only: connector ids (installed by the operator),
//! HTTP status codes, run statuses and reason codes, route templates (never a raw path).
//! Never a tenant id, a user id or anything personal: tenants appear as a count.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A connector and a status (CRM requests, sync runs).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorStatus {
    /// The connector id.
    pub connector: String,
    /// The HTTP status (`200`, `429`, …), a transport failure's code, or a run status.
    pub status: String,
}

/// A connector and a reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorReason {
    /// The connector id.
    pub connector: String,
    /// A reason code without its parameter (`roster_failed`, `owners_unmapped`, …).
    pub reason: String,
}

/// A connector.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabel {
    /// The connector id.
    pub connector: String,
}

/// One HTTP answer's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The method.
    pub method: String,
    /// The route template (`/v1/users/{id}`), or `unmatched`.
    pub route: String,
    /// The status code.
    pub status: String,
}

/// A state (pool connections: `in_use`, `idle`; integrations: `needs_reauthorization`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state.
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn sync_buckets() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
}

fn http_buckets() -> Histogram {
    Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
}

/// Every metric of this node.
pub struct Metrics {
    registry: Registry,
    /// `oneup_crm_requests_total{connector,status}`: requests sent to CRMs (each attempt,
    /// 429s and 5xx included) by the answer's status or the transport failure's code.
    pub crm_requests: Family<ConnectorStatus, Counter>,
    /// `oneup_sync_runs_total{connector,status}`: runs this node ended, by how
    /// (`succeeded`, `partial`, `failed`, `handed_back` at shutdown, `lease_lost`).
    pub sync_runs: Family<ConnectorStatus, Counter>,
    /// `oneup_sync_run_reasons_total{connector,reason}`: why runs were partial.
    pub sync_run_reasons: Family<ConnectorReason, Counter>,
    /// `oneup_sync_run_duration_seconds{connector,status}`.
    pub sync_run_duration: HistogramFamily<ConnectorStatus>,
    /// `oneup_events_accepted_total{connector}`: changes that passed validation.
    pub events_accepted: Family<ConnectorLabel, Counter>,
    /// `oneup_events_rejected_total{connector,reason}`: changes refused at the boundary.
    pub events_rejected: Family<ConnectorReason, Counter>,
    /// `oneup_lease_losses_total`: runs whose lease another node took before they ended.
    pub lease_losses: Counter,
    /// `oneup_http_request_duration_seconds{method,route,status}`.
    pub http_duration: HistogramFamily<HttpLabels>,
    /// `oneup_syncs_running`: syncs running on this node.
    pub syncs_running: Gauge,
    /// `oneup_sse_viewers`: open leaderboard streams on this node.
    pub sse_viewers: Gauge,
    /// `oneup_db_pool_connections{state}`: this node's database connections, `in_use` and `idle`.
    pub db_pool: Family<StateLabel, Gauge>,
    /// `oneup_integrations_waiting{state}`: integrations paused until an admin acts
    /// (`needs_reauthorization`, `needs_approval`), all tenants.
    pub integrations_waiting: Family<StateLabel, Gauge>,
    /// `oneup_sync_queue_depth`: runs queued, not yet claimed by any node.
    pub queue_depth: Gauge,
    /// `oneup_sync_queue_oldest_due_seconds`: how long the oldest due sync has waited (0: none).
    pub queue_oldest_due: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `oneup_tenants`: tenants in the database.
    pub tenants: Gauge,
    /// `oneup_connectors_installed`: connector components installed on this node.
    pub connectors_installed: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            crm_requests: Family::default(),
            sync_runs: Family::default(),
            sync_run_reasons: Family::default(),
            sync_run_duration: Family::new_with_constructor(sync_buckets),
            events_accepted: Family::default(),
            events_rejected: Family::default(),
            lease_losses: Counter::default(),
            http_duration: Family::new_with_constructor(http_buckets),
            syncs_running: Gauge::default(),
            sse_viewers: Gauge::default(),
            db_pool: Family::default(),
            integrations_waiting: Family::default(),
            queue_depth: Gauge::default(),
            queue_oldest_due: Gauge::default(),
            tenants: Gauge::default(),
            connectors_installed: Gauge::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "oneup_crm_requests",
            "Requests sent to CRMs (every attempt), by connector and answer status or transport failure",
            m.crm_requests.clone(),
        );
        registry.register("oneup_sync_runs", "Sync runs this node ended, by connector and status", m.sync_runs.clone());
        registry.register(
            "oneup_sync_run_reasons",
            "Reasons of partial runs, by connector and reason code",
            m.sync_run_reasons.clone(),
        );
        registry.register(
            "oneup_sync_run_duration_seconds",
            "Duration of the sync runs this node ended, by connector and status",
            m.sync_run_duration.clone(),
        );
        registry.register(
            "oneup_events_accepted",
            "Changes connectors emitted that passed validation, by connector",
            m.events_accepted.clone(),
        );
        registry.register(
            "oneup_events_rejected",
            "Changes connectors emitted that were refused at the boundary, by connector and reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "oneup_lease_losses",
            "Runs of this node whose lease expired and was taken over before they ended",
            m.lease_losses.clone(),
        );
        registry.register(
            "oneup_http_request_duration_seconds",
            "HTTP requests answered, by method, route template and status",
            m.http_duration.clone(),
        );
        registry.register("oneup_syncs_running", "Syncs running on this node", m.syncs_running.clone());
        registry.register("oneup_sse_viewers", "Open leaderboard streams on this node", m.sse_viewers.clone());
        registry.register(
            "oneup_db_pool_connections",
            "This node's database connections, in use and idle",
            m.db_pool.clone(),
        );
        registry.register(
            "oneup_integrations_waiting",
            "Integrations paused until an admin acts (all tenants), by state",
            m.integrations_waiting.clone(),
        );
        registry.register("oneup_sync_queue_depth", "Sync runs queued, not yet claimed", m.queue_depth.clone());
        registry.register(
            "oneup_sync_queue_oldest_due_seconds",
            "How long the oldest due sync has waited for a node, in seconds (0 when none waits)",
            m.queue_oldest_due.clone(),
        );
        registry.register("oneup_tenants", "Tenants in the database", m.tenants.clone());
        registry.register(
            "oneup_connectors_installed",
            "Connector components installed on this node",
            m.connectors_installed.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one CRM request's answer (`status`: the HTTP status, or a failure's code).
    pub fn crm_request(&self, connector: &str, status: &str) {
        self.crm_requests.get_or_create(&ConnectorStatus { connector: connector.into(), status: status.into() }).inc();
    }

    /// Records a run this node ended: its status, duration and reasons (`code:param` is
    /// counted as `code`).
    pub fn sync_run(&self, connector: &str, status: &str, took: Duration, reasons: &[String]) {
        let labels = ConnectorStatus { connector: connector.into(), status: status.into() };
        self.sync_runs.get_or_create(&labels).inc();
        self.sync_run_duration.get_or_create(&labels).observe(took.as_secs_f64());
        for reason in reasons {
            let code = reason.split(':').next().unwrap_or_default();
            self.sync_run_reasons
                .get_or_create(&ConnectorReason { connector: connector.into(), reason: code.into() })
                .inc();
        }
    }

    /// Counts a sync's accepted changes and its rejections by reason code.
    pub fn events(&self, connector: &str, accepted: u64, rejected: &std::collections::BTreeMap<String, u64>) {
        self.events_accepted.get_or_create(&ConnectorLabel { connector: connector.into() }).inc_by(accepted);
        for (reason, n) in rejected {
            self.events_rejected
                .get_or_create(&ConnectorReason { connector: connector.into(), reason: reason.clone() })
                .inc_by(*n);
        }
    }

    /// Records one HTTP answer.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = HttpLabels { method: method.into(), route: route.into(), status: status.to_string() };
        self.http_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Sets the gauges read at scrape time.
    pub fn set_scraped(&self, scraped: &Scraped) {
        self.db_pool.get_or_create(&StateLabel { state: "in_use".into() }).set(scraped.pool_in_use);
        self.db_pool.get_or_create(&StateLabel { state: "idle".into() }).set(scraped.pool_idle);
        self.sse_viewers.set(scraped.sse_viewers);
        self.connectors_installed.set(scraped.connectors_installed);
        if let Some(db) = &scraped.database {
            let waiting = |state: &str| StateLabel { state: state.into() };
            self.integrations_waiting.get_or_create(&waiting("needs_reauthorization")).set(db.needs_reauthorization);
            self.integrations_waiting.get_or_create(&waiting("needs_approval")).set(db.needs_approval);
            self.queue_depth.set(db.queued_runs);
            self.queue_oldest_due.set(db.oldest_due_secs);
            self.tenants.set(db.tenants);
        }
    }

    /// The exposition in Prometheus' text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Figures read at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Scraped {
    /// Database connections in use.
    pub pool_in_use: i64,
    /// Idle database connections.
    pub pool_idle: i64,
    /// Open leaderboard streams.
    pub sse_viewers: i64,
    /// Connector components installed.
    pub connectors_installed: i64,
    /// The database's figures (`None`: the database did not answer; the last values stay).
    pub database: Option<crate::store::OpsCounts>,
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_counters_with_total_and_labels_in_order() {
        let m = Metrics::new();
        m.crm_request("pipedrive", "429");
        m.crm_request("pipedrive", "200");
        m.crm_request("pipedrive", "200");
        m.sync_run("pipedrive", "partial", Duration::from_millis(1500), &["owners_unmapped:3".into()]);
        let text = m.render();
        assert!(text.contains("oneup_crm_requests_total{connector=\"pipedrive\",status=\"429\"} 1\n"), "{text}");
        assert!(text.contains("oneup_crm_requests_total{connector=\"pipedrive\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("oneup_sync_runs_total{connector=\"pipedrive\",status=\"partial\"} 1\n"), "{text}");
        assert!(
            text.contains("oneup_sync_run_reasons_total{connector=\"pipedrive\",reason=\"owners_unmapped\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "oneup_sync_run_duration_seconds_bucket{le=\"2.5\",connector=\"pipedrive\",status=\"partial\"} 1\n"
            ) || text.contains(
                "oneup_sync_run_duration_seconds_bucket{connector=\"pipedrive\",status=\"partial\",le=\"2.5\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE oneup_lease_losses_total counter\n"), "{text}");
    }
}
