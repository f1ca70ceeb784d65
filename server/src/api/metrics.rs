//! Prometheus metrics (`GET /metrics`, text format 0.0.4): request
//! latency histograms and counts per route and status, inference time per
//! pipeline stage, search time per operation, requests in flight, model
//! queue depth, gallery size and the SIMD backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, &le) in BUCKETS.iter().enumerate() {
            if seconds <= le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<String, Histogram>>,
    statuses: Mutex<BTreeMap<(String, u16), u64>>,
    inference: Mutex<BTreeMap<&'static str, Histogram>>,
    search: Mutex<BTreeMap<&'static str, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A route label: the method and the path with ids replaced.
pub fn route_label(method: &str, path: &str) -> String {
    let path = match path {
        p if p.starts_with("/v1/subjects/") => "/v1/subjects/{id}",
        "/health" | "/ready" | "/metrics" | "/openapi.json" | "/v1/subjects" | "/v1/verify"
        | "/v1/identify" | "/v1/compare" | "/v1/templates" | "/v1/stats" => path,
        _ => "other",
    };
    format!("{method} {path}")
}

impl Metrics {
    /// Records one request.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        lock(&self.requests)
            .entry(route.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
        *lock(&self.statuses)
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    /// Records the time of one inference stage (`decode`, `detect`, `align`, `embed`, `liveness`).
    pub fn inference(&self, stage: &'static str, elapsed: Duration) {
        if !elapsed.is_zero() {
            lock(&self.inference)
                .entry(stage)
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Records the time of one gallery search (`verify`, `identify`, `dedup`).
    pub fn search(&self, op: &'static str, elapsed: Duration) {
        lock(&self.search)
            .entry(op)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Renders everything, with the gauges the caller measured at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP biomatch_http_request_duration_seconds Latency of HTTP requests by route.\n",
        );
        out.push_str("# TYPE biomatch_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.requests).iter() {
            h.write(
                &mut out,
                "biomatch_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP biomatch_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE biomatch_http_requests_total counter\n");
        for ((route, status), n) in lock(&self.statuses).iter() {
            let _ = writeln!(
                out,
                "biomatch_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP biomatch_inference_duration_seconds Face pipeline time by stage.\n");
        out.push_str("# TYPE biomatch_inference_duration_seconds histogram\n");
        for (stage, h) in lock(&self.inference).iter() {
            h.write(
                &mut out,
                "biomatch_inference_duration_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        out.push_str("# HELP biomatch_search_duration_seconds Gallery search time by operation.\n");
        out.push_str("# TYPE biomatch_search_duration_seconds histogram\n");
        for (op, h) in lock(&self.search).iter() {
            h.write(
                &mut out,
                "biomatch_search_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        for (name, help, labels, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}"
            );
        }
        out
    }
}

/// Middleware: times every request under its route label.
pub async fn record(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_label(request.method().as_str(), request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let m = Metrics::default();
        m.request("POST /v1/verify", 200, Duration::from_millis(3));
        m.request("POST /v1/verify", 200, Duration::from_millis(30));
        m.request("POST /v1/verify", 422, Duration::from_millis(2));
        let text = m.render(&[(
            "biomatch_gallery_subjects",
            "Enrolled subjects.",
            String::new(),
            5.0,
        )]);
        assert!(text.contains("biomatch_http_request_duration_seconds_bucket{route=\"POST /v1/verify\",le=\"0.005\"} 2"));
        assert!(text.contains(
            "biomatch_http_request_duration_seconds_bucket{route=\"POST /v1/verify\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains(
                "biomatch_http_requests_total{route=\"POST /v1/verify\",status=\"422\"} 1"
            )
        );
        assert!(text.contains("biomatch_gallery_subjects 5"));
        assert_eq!(
            route_label("GET", "/v1/subjects/0012345"),
            "GET /v1/subjects/{id}"
        );
        assert_eq!(route_label("GET", "/etc/passwd"), "GET other");
    }
}
