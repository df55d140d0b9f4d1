//! What Ferry tells its operators: metrics (Prometheus / OpenMetrics text) and error chains for
//! the log.
//!
//! Metrics use `prometheus-client` with one registry per [`Metrics`] value (no global state, so
//! every test and every `Core` has its own). Every label is bounded: the HTTP method is one of a
//! fixed list or `other`, the route is the matched route template or `unmatched`, the status is
//! a number below 600, the refusal code is one of Ferry's stable codes. An attacker sending
//! random methods or paths cannot create series. Recording takes the family's read lock (shared,
//! never held across an await); a scrape takes the same read lock, so it never stalls requests.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// An HTTP method as a bounded label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodLabel {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    OPTIONS,
    PATCH,
    OTHER,
}

impl MethodLabel {
    pub fn from_method(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Self::GET,
            http::Method::HEAD => Self::HEAD,
            http::Method::POST => Self::POST,
            http::Method::PUT => Self::PUT,
            http::Method::DELETE => Self::DELETE,
            http::Method::OPTIONS => Self::OPTIONS,
            http::Method::PATCH => Self::PATCH,
            _ => Self::OTHER,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: MethodLabel,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: MethodLabel,
}

/// What a request to the embedded store asked for, as a bounded label value.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum StoreOperation {
    PutObject,
    PostObject,
    GetObject,
    HeadObject,
    DeleteObject,
    CopyObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListObjects,
    Other,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: StoreOperation,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// Everything `/metrics` reports. One per `Core`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    refusals: Family<CodeLabels, Counter>,
    store_requests: Family<StoreLabels, Counter>,
    presigns: Counter,
    confirms_new: Counter,
    confirms_repeated: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let refusals = Family::<CodeLabels, Counter>::default();
        let (presigns, confirms_new, confirms_repeated) = (Counter::default(), Counter::default(), Counter::default());
        registry.register("http_requests", "HTTP requests by matched route, method and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by matched route and method",
            durations.clone(),
        );
        registry.register("refusals", "Client requests refused, by stable error code", refusals.clone());
        let store_requests = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_requests",
            "Requests the embedded store answered, by S3 operation and status",
            store_requests.clone(),
        );
        registry.register("presigns", "Upload URLs issued", presigns.clone());
        registry.register("confirms_new", "Uploads verified and recorded", confirms_new.clone());
        registry.register("confirms_repeated", "Confirms of an upload already recorded", confirms_repeated.clone());
        Self { registry, requests, durations, refusals, store_requests, presigns, confirms_new, confirms_repeated }
    }
}

impl Metrics {
    /// Counts and times one answered request. `route` must come from a bounded set (the
    /// router's templates, or `unmatched`).
    pub fn observe_request(&self, route: &str, method: MethodLabel, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.durations.get_or_create(&RouteLabels { route: route.clone(), method }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { route, method, status: status.min(599) }).inc();
    }

    /// Counts one answer of the embedded store.
    pub fn store_request(&self, operation: StoreOperation, status: u16) {
        self.store_requests.get_or_create(&StoreLabels { operation, status: status.min(599) }).inc();
    }

    /// Counts a refusal by its stable code.
    pub fn refused(&self, code: &'static str) {
        self.refusals.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn presigned(&self) {
        self.presigns.inc();
    }

    pub fn confirmed(&self, new: bool) {
        if new {
            self.confirms_new.inc()
        } else {
            self.confirms_repeated.inc()
        };
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// An error and all its causes on one line, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_series() {
        let metrics = Metrics::default();
        for m in ["FOO", "BAR", "X-VERY-LONG-METHOD"] {
            let method = http::Method::from_bytes(m.as_bytes()).unwrap();
            metrics.observe_request("unmatched", MethodLabel::from_method(&method), 405, 0.001);
        }
        let text = metrics.render();
        assert!(
            text.contains("ferry_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"405\"} 3"),
            "{text}"
        );
        assert!(!text.contains("FOO"));
    }

    #[test]
    fn error_chains_join_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot save")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(std::io::Error::other("disk full"))), "cannot save: disk full");
    }
}
