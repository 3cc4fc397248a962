//! Prometheus metrics through the `prometheus-client` crate: request counters, latency
//! histograms, pool gauges and issuance counters.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlx::postgres::PgPool;

/// Labels of a finished request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template (bounded cardinality), or `unmatched`.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// HTTP method.
    pub method: String,
    /// Matched route template.
    pub route: String,
}

/// All server metrics.
pub struct Metrics {
    registry: Registry,
    /// certctl_http_requests_total
    pub requests: Family<RequestLabels, Counter>,
    /// certctl_http_request_duration_seconds
    pub latency: Family<LatencyLabels, Histogram>,
    pool_open: Gauge<i64, AtomicI64>,
    pool_idle: Gauge<i64, AtomicI64>,
    /// certctl_certificates_issued_total
    pub certificates_issued: Counter,
    /// certctl_agents_registered_total
    pub agents_registered: Counter,
    /// certctl_renewal_jobs_queued_total
    pub renewal_jobs_queued: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric; `max_connections` is the configured pool ceiling.
    pub fn new(max_connections: u32) -> Self {
        let mut registry = Registry::with_prefix("certctl");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms .. ~8 s
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        registry.register("http_request_duration_seconds", "HTTP request latency in seconds", latency.clone());
        let pool_open = Gauge::default();
        registry.register("db_pool_open_connections", "Open database connections (in use + idle)", pool_open.clone());
        let pool_idle = Gauge::default();
        registry.register("db_pool_idle_connections", "Idle database connections", pool_idle.clone());
        let pool_max: Gauge<i64, AtomicI64> = Gauge::default();
        pool_max.set(i64::from(max_connections));
        registry.register("db_pool_max_connections", "Configured ceiling of database connections", pool_max);
        let certificates_issued = Counter::default();
        registry.register("certificates_issued", "Certificates issued by the local CA", certificates_issued.clone());
        let agents_registered = Counter::default();
        registry.register("agents_registered", "Agents registered for the first time", agents_registered.clone());
        let renewal_jobs_queued = Counter::default();
        registry.register("renewal_jobs_queued", "CSR jobs queued by the renewal scheduler", renewal_jobs_queued.clone());
        Self { registry, requests, latency, pool_open, pool_idle, certificates_issued, agents_registered, renewal_jobs_queued }
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { method: method.to_owned(), route: route.to_owned(), status }).inc();
        self.latency.get_or_create(&LatencyLabels { method: method.to_owned(), route: route.to_owned() }).observe(seconds);
    }

    /// Samples the pool and renders everything in the Prometheus text format.
    pub fn render(&self, pool: &PgPool) -> String {
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_open.set(i64::from(pool.size()));
        self.pool_idle.set(idle);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
