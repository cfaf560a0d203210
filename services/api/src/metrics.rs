//! `GET /metrics` in Prometheus' text format: requests by route and status, their latency, and
//! jobs enqueued. Reachable only from loopback or a private (Docker) network, and never through
//! the edge: a request nginx forwarded carries `X-Real-IP` / `X-Forwarded-For` and gets a 404.
//!
//! A small registry of our own rather than a global recorder: tests run several APIs in one
//! process, and each must count only its own requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_seconds: f64,
    /// Cumulative counts per bucket of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
    jobs_enqueued: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let Ok(mut requests) = self.requests.lock() else { return };
        let series = requests.entry((method.to_owned(), route.to_owned(), status)).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    pub fn job_enqueued(&self) {
        self.jobs_enqueued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The text exposition format, version 0.0.4.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP http_requests_total HTTP requests answered, by route and status.\n# TYPE http_requests_total counter\n");
        let requests = self.requests.lock().map(|requests| requests.clone()).unwrap_or_default();
        for ((method, route, status), series) in &requests {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                series.count
            );
        }
        out.push_str("# HELP http_request_duration_seconds Time to answer, by route and status.\n# TYPE http_request_duration_seconds histogram\n");
        for ((method, route, status), series) in &requests {
            let labels = format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", escape(route));
            for (bound, count) in BUCKETS.iter().zip(series.buckets) {
                let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", series.count);
            let _ = writeln!(out, "http_request_duration_seconds_sum{{{labels}}} {}", series.sum_seconds);
            let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {}", series.count);
        }
        out.push_str(
            "# HELP jobs_enqueued_total Executions put on the workflow queue.\n# TYPE jobs_enqueued_total counter\n",
        );
        let _ = writeln!(out, "jobs_enqueued_total {}", self.jobs_enqueued.load(std::sync::atomic::Ordering::Relaxed));
        out
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
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
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
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
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_and_buckets() {
        let metrics = Metrics::default();
        metrics.record("GET", "/health", 200, Duration::from_millis(3));
        metrics.record("GET", "/health", 200, Duration::from_millis(30));
        metrics.job_enqueued();
        let text = metrics.render();
        assert!(text.contains("http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"), "{text}");
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",status=\"200\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",status=\"200\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("jobs_enqueued_total 1"), "{text}");
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
