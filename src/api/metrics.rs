//! `GET /metrics`: Prometheus text format, kept by hand (a few counters and one histogram do
//! not need a metrics framework).
//!
//! Per matched route, method and status: a request count and a latency histogram. Plus the
//! domain counters operators watch: presigns, confirms (new and repeated), and refusals by code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Everything `/metrics` reports. One per process, shared through `AppState`.
#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), Series>>,
    pub presigns: AtomicU64,
    pub confirms_new: AtomicU64,
    pub confirms_repeated: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut http = self.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let series = http.entry((route.to_owned(), method.to_owned(), status)).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                series.buckets[i] += 1;
            }
        }
    }

    /// Counts a refusal by its stable code.
    pub fn refused(&self, code: &'static str) {
        *self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(code).or_default() += 1;
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP ferry_http_requests_total HTTP requests by matched route, method and status.\n");
        out.push_str("# TYPE ferry_http_requests_total counter\n");
        let http = self.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((route, method, status), s) in http.iter() {
            let _ = writeln!(
                out,
                "ferry_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP ferry_http_request_duration_seconds Time to answer, by matched route and method.\n");
        out.push_str("# TYPE ferry_http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for ((route, method, _), s) in http.iter() {
            let merged = by_route.entry((route, method)).or_default();
            merged.count += s.count;
            merged.sum_seconds += s.sum_seconds;
            for (m, b) in merged.buckets.iter_mut().zip(s.buckets) {
                *m += b;
            }
        }
        for ((route, method), s) in &by_route {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "ferry_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "ferry_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "ferry_http_request_duration_seconds_sum{{{labels}}} {}", s.sum_seconds);
            let _ = writeln!(out, "ferry_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        drop(http);
        let counters = [
            ("ferry_presigns_total", "Upload URLs issued.", &self.presigns),
            ("ferry_confirms_new_total", "Uploads verified and recorded.", &self.confirms_new),
            ("ferry_confirms_repeated_total", "Confirms of an upload already recorded.", &self.confirms_repeated),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        out.push_str("# HELP ferry_refusals_total Client requests refused, by stable error code.\n");
        out.push_str("# TYPE ferry_refusals_total counter\n");
        for (code, count) in self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = writeln!(out, "ferry_refusals_total{{code=\"{code}\"}} {count}");
        }
        out
    }
}

/// Middleware: times every request and counts it under its matched route (never the raw path,
/// which would make one series per file id).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    if let Some(super::error::ErrorCode(code)) = response.extensions().get() {
        state.metrics.refused(code);
    }
    state.metrics.observe(&route, &method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
