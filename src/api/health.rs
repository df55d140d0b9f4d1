//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::telemetry::error_chain;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is up")))]
/// The process is up and serving.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "The database and the store answer"), (status = 503, description = "not-ready, or draining", body = crate::wire::ErrorBody)))]
/// The database and the store both answer.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        let body = json!({
            "success": false, "status": "shutting-down", "code": "shutting-down",
            "error": "this instance is shutting down",
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    let (db, store) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.db.health()),
        tokio::time::timeout(CHECK_TIMEOUT, state.store.health()),
    );
    let verdict = |name: &str, result: Result<Result<(), String>, _>| match result {
        Ok(Ok(())) => "ok",
        Ok(Err(cause)) => {
            tracing::warn!(dependency = name, %cause, "not ready");
            "unavailable"
        }
        Err(_) => {
            tracing::warn!(dependency = name, "not ready: timed out");
            "unavailable"
        }
    };
    let database = verdict("database", db.map(|r| r.map_err(|e| error_chain(&e))));
    let store = verdict("store", store.map(|r| r.map_err(|e| error_chain(&e))));
    if database == "ok" && store == "ok" {
        (StatusCode::OK, Json(json!({ "status": "ready", "database": database, "store": store })))
    } else {
        let body = json!({
            "success": false, "status": "not-ready", "code": "not-ready",
            "error": "a dependency is unavailable", "database": database, "store": store,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    }
}
