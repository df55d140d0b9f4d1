//! The HTTP edge: each route parses the request, calls the upload service (or the webhook
//! handler), and answers. No upload rule lives here.

mod error;
mod error_docs;
mod extract;
mod files;
mod health;
mod limits;
mod metrics;
mod multipart;
pub mod openapi;
mod page;
mod state;
mod uploads;
mod uppy;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use files::file_view;
pub use state::{AppState, PageFacts};

/// JSON request bodies are small; anything larger is refused before it is read whole. Routes
/// whose largest valid request is bigger set their own limit (multipart completion, webhook).
const MAX_JSON_BODY: usize = 64 * 1024;

/// The whole API, with CORS for `origins`; `/metrics` too unless it has its own address.
pub fn router(state: AppState, origins: &[String], with_metrics: bool) -> Router {
    let limited = Router::new()
        .merge(uploads::router())
        .merge(multipart::router())
        .merge(uppy::router())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::rate_limited));
    let mut router = Router::new()
        .merge(limited)
        .merge(files::router())
        .merge(health::router())
        .merge(page::router())
        .merge(webhooks::router())
        .route("/openapi.json", axum::routing::get(openapi::openapi_json));
    if with_metrics {
        router = router.route("/metrics", axum::routing::get(metrics::metrics));
    }
    router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(uppy::grant_errors_as_s3))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::dev_host_check))
        .layer(cors(origins))
        .layer(
            // Spans carry the matched route, never the raw URI: nothing secret ends up in a log.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                let method = crate::telemetry::MethodLabel::from_method(req.method());
                tracing::info_span!("request", method = ?method, route, user = tracing::field::Empty)
            }),
        )
        .with_state(state)
}

/// `/metrics` alone, for its own address (`FERRY_METRICS_ADDR`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::metrics))
        .fallback(|| async { ApiError::RouteNotFound })
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static("x-user-id")])
        // Uppy reads S3-style error codes from the grant routes (`/uppy/complete`, `/uppy/abort`).
        .expose_headers([HeaderName::from_static("x-amz-error-code")])
        .max_age(Duration::from_secs(3600))
}
