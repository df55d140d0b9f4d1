//! The upload page: four files embedded in the binary, and the few facts it needs.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::identity::DEV_USER;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
const MD5_WORKER: &str = include_str!("../../web/md5-worker.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/md5-worker.js", get(md5_worker_js))
        .route("/page-config", get(page_config))
}

#[utoipa::path(get, path = "/app.js", tag = "page", responses((status = 200, description = "The page's script", content_type = "text/javascript")))]
async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

#[utoipa::path(get, path = "/style.css", tag = "page", responses((status = 200, description = "The page's styles", content_type = "text/css")))]
async fn style_css() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

#[utoipa::path(get, path = "/md5-worker.js", tag = "page", responses((status = 200, description = "The page's MD5 worker", content_type = "text/javascript")))]
async fn md5_worker_js() -> Response {
    asset(MD5_WORKER, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/", tag = "page", responses((status = 200, description = "The upload page", content_type = "text/html")))]
async fn index(State(state): State<AppState>) -> Response {
    let mut response = asset(INDEX, "text/html; charset=utf-8");
    // The page talks to Ferry and PUTs to the bucket; nothing else.
    let csp = format!(
        "default-src 'self'; connect-src 'self' {}; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        state.page.store_origin
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[utoipa::path(get, path = "/page-config", tag = "page", responses((status = 200, description = "What the page needs before sign-in")))]
/// What the page needs before sign-in: how to sign in, and the upload rules.
async fn page_config(State(state): State<AppState>) -> Json<serde_json::Value> {
    let auth = if state.auth.is_dev() { "dev" } else { "jwt" };
    Json(json!({
        "auth": auth,
        "devUser": DEV_USER,
        "maxFileSize": state.uploads.policy().max_file_size,
        "multipartThreshold": state.page.multipart_threshold,
        "checksumMaxSize": state.page.checksum_max_size,
        "resumeWindowSeconds": state.uploads.confirm_window().as_secs(),
        "allowedTypes": state.uploads.policy().allowed_patterns(),
    }))
}
