//! `GET /metrics` and the middleware that feeds it (see [`crate::telemetry`] for the series).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ErrorCode;
use crate::telemetry::MethodLabel;

/// Middleware: times every request and counts it under its matched route (never the raw path,
/// which would make one series per file id, nor the raw method, which a client chooses freely).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = MethodLabel::from_method(req.method());
    let response = next.run(req).await;
    if let Some(ErrorCode(code)) = response.extensions().get() {
        state.metrics.refused(code);
    }
    state.metrics.observe_request(&route, method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
