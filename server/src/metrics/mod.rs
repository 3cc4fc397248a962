//! Prometheus metrics through the `prometheus-client` crate: request counters, latency
//! histograms, pool gauges and issuance counters.
//!
//! Every label takes values from a fixed set (methods, route templates, status codes the
//! server itself produces), so no client can grow the exposition.

mod prometheus_text;

use std::sync::atomic::AtomicI64;

use axum::http::Method;
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
    /// HTTP method, one of [`method_label`]'s values.
    pub method: String,
    /// Matched route template (bounded cardinality), or `unmatched`.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// HTTP method, one of [`method_label`]'s values.
    pub method: String,
    /// Matched route template.
    pub route: String,
}

/// Labels of an agent's Secret target report.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetReportLabels {
    /// `written` or `failed`.
    pub status: &'static str,
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
    /// certctl_secret_target_reports_total
    pub secret_target_reports: Family<TargetReportLabels, Counter>,
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
        let secret_target_reports = Family::<TargetReportLabels, Counter>::default();
        registry.register(
            "secret_target_reports",
            "Agents' reports on writing certificates into Kubernetes Secrets, by outcome",
            secret_target_reports.clone(),
        );
        for status in ["written", "failed"] {
            // Both series exist from the start, so a rate() over failures is never absent.
            let _ = secret_target_reports.get_or_create(&TargetReportLabels { status });
        }
        Self {
            registry,
            requests,
            latency,
            pool_open,
            pool_idle,
            certificates_issued,
            agents_registered,
            renewal_jobs_queued,
            secret_target_reports,
        }
    }

    /// Records one finished request. `route` must be a route template or `unmatched`.
    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method).to_owned();
        self.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.to_owned(), status }).inc();
        self.latency.get_or_create(&LatencyLabels { method, route: route.to_owned() }).observe(seconds);
    }

    /// Samples the pool and renders everything in `format`.
    pub fn render(&self, pool: &PgPool, format: Format) -> String {
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_open.set(i64::from(pool.size()));
        self.pool_idle.set(idle);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::PrometheusText => prometheus_text::from_openmetrics(&out),
        }
    }
}

/// The method label: standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what `promtool check metrics` and older scrapers read).
    PrometheusText,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it (with a non-zero q), else
    /// Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let q_zero = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
                media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    /// The response's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        for m in ["PROPFIND", "XYZZY", "get"] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), "other", "{m}");
        }
        assert_eq!(method_label(&Method::POST), "POST");
    }

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text; version=1.0.0")), Format::OpenMetrics);
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")), Format::PrometheusText);
    }
}
