//! `GET /metrics` in the `OpenMetrics` text format (which Prometheus reads): requests by route and
//! status, their latency, and jobs enqueued, every name prefixed `masstock_`. Reachable only from
//! loopback or a private (Docker) network, and never through the edge: a request nginx forwarded
//! carries `X-Real-IP` / `X-Forwarded-For` and gets a 404.
//!
//! The registry is `prometheus-client`'s, one per [`Metrics`] rather than a global recorder: tests
//! run several APIs in one process, and each must count only its own requests. The exposition is
//! checked by the real `promtool check metrics` in the tests.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::app::AppState;
use crate::error::ApiError;

/// What `/metrics` answers with: the `OpenMetrics` text format that `prometheus-client` writes.
pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The labels of a request's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The histogram of one request series, on [`BUCKETS`].
fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `masstock_http_requests_total`.
    requests: Family<RequestLabels, Counter>,
    /// `masstock_http_request_duration_seconds`.
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// `masstock_jobs_enqueued_total`.
    jobs_enqueued: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("masstock");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let jobs_enqueued = Counter::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer, by route and status",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register("jobs_enqueued", "Executions put on the workflow queue", jobs_enqueued.clone());
        Self { registry, requests, durations, jobs_enqueued }
    }
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.requests.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(latency.as_secs_f64());
    }

    pub fn job_enqueued(&self) {
        self.jobs_enqueued.inc();
    }

    /// The `OpenMetrics` text exposition, `# EOF` included.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts every answered request under its route template (`/api/v1/executions/{id}`), so the
/// label set stays bounded whatever the clients ask for.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Clients may send any method token: only the standard ones become labels.
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => known.to_owned(),
        _ => "other".to_owned(),
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.record(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// Whether a request comes from inside: a loopback or private peer, not forwarded by the edge.
fn is_internal(peer: IpAddr, headers: &HeaderMap) -> bool {
    let forwarded = headers.contains_key("x-forwarded-for") || headers.contains_key("x-real-ip");
    let inside = match peer.to_canonical() {
        IpAddr::V4(address) => address.is_loopback() || address.is_private(),
        IpAddr::V6(address) => address.is_loopback() || (address.segments()[0] & 0xfe00) == 0xfc00,
    };
    inside && !forwarded
}

/// Prometheus metrics; 404 unless called directly from loopback or a private network.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "OpenMetrics text format 1.0.0", content_type = "application/openmetrics-text", body = String),
    (status = 404, description = "Called from outside, or through the edge", body = crate::error::ErrorBody),
))]
pub async fn endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !is_internal(peer.ip(), &headers) {
        return ApiError::NotFound.into_response();
    }
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], state.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few requests of two routes, and a job.
    fn sample() -> Metrics {
        let metrics = Metrics::default();
        metrics.record("GET", "/health", 200, Duration::from_millis(3));
        metrics.record("GET", "/health", 200, Duration::from_millis(30));
        metrics.record("POST", "/api/v1/executions/{id}", 401, Duration::from_millis(1));
        metrics.job_enqueued();
        metrics
    }

    #[test]
    fn the_exposition_counts_and_buckets() {
        let text = sample().render();
        let labels = r#"method="GET",route="/health",status="200""#;
        for line in [
            format!("masstock_http_requests_total{{{labels}}} 2"),
            format!(r#"masstock_http_request_duration_seconds_bucket{{le="0.005",{labels}}} 1"#),
            format!(r#"masstock_http_request_duration_seconds_bucket{{le="+Inf",{labels}}} 2"#),
            format!("masstock_http_request_duration_seconds_count{{{labels}}} 2"),
            "masstock_jobs_enqueued_total 1".to_owned(),
        ] {
            assert!(text.lines().any(|written| written == line), "no line `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Prometheus's own linter reads the exposition and finds nothing to say but one thing.
    ///
    /// `promtool check metrics` (2.42, Debian 12) reads Prometheus's 0.0.4 text format, where a
    /// counter's `HELP` names its samples (`…_total`); `OpenMetrics` names the family without the
    /// suffix (prometheus-client follows it, see `prometheus/client_rust#194`), so promtool reports each
    /// counter's samples as having "no help text". Those lines, one per counter, are expected;
    /// anything else (a parse error, a naming or unit complaint) fails.
    #[test]
    fn promtool_accepts_the_exposition() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let text = sample().render();
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `promtool` ({error}): install it with `apt-get install -y prometheus` (Debian), \
                     or run `script/bootstrap`"
                )
            });
        promtool.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
        let output = promtool.wait_with_output().expect("promtool ran");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let counters = ["masstock_http_requests_total", "masstock_jobs_enqueued_total"];
        let unexpected: Vec<&str> = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|line| !counters.iter().any(|counter| *line == format!("{counter} no help text")))
            .collect();
        // 0: nothing to say; 3: lint complaints only (1 would be a parse error).
        assert!(
            matches!(output.status.code(), Some(0 | 3)) && unexpected.is_empty(),
            "promtool check metrics: {}\nunexpected: {unexpected:#?}\nexposition:\n{text}",
            output.status,
        );
    }

    #[test]
    fn only_direct_internal_callers_see_metrics() {
        let none = HeaderMap::new();
        assert!(is_internal("127.0.0.1".parse().unwrap(), &none));
        assert!(is_internal("172.18.0.5".parse().unwrap(), &none));
        assert!(!is_internal("203.0.113.1".parse().unwrap(), &none));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-real-ip", "203.0.113.1".parse().unwrap());
        assert!(!is_internal("127.0.0.1".parse().unwrap(), &forwarded), "through the edge");
    }
}
