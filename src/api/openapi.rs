//! The OpenAPI 3.1 document of the API, generated from the handlers' own annotations (utoipa),
//! so it cannot drift from the routes: `GET /openapi.json`.
//!
//! Every error is the same JSON body with a stable `code`; `error_docs::Errors` lists the
//! statuses any route may answer with it (which code means what is in the README and in
//! `ApiError`).

use axum::Json;
use utoipa::OpenApi;

use crate::wire::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ferry", description = "Direct-to-bucket file uploads with verified metadata"),
    paths(
        super::uploads::presign,
        super::uploads::confirm,
        super::multipart::start,
        super::multipart::urls,
        super::multipart::complete,
        super::multipart::abort,
        super::multipart::parts,
        super::files::list,
        super::files::usage,
        super::files::download,
        super::files::remove,
        super::uppy::params,
        super::uppy::create,
        super::uppy::list_parts,
        super::uppy::sign_part,
        super::uppy::complete,
        super::uppy::abort,
        super::uppy::sign,
        super::uppy::complete_granted,
        super::uppy::abort_granted,
        super::webhooks::b2_events,
        super::health::healthz,
        super::health::readyz,
        super::metrics::metrics,
        super::page::index,
        super::page::page_config,
        super::page::app_js,
        super::page::style_css,
        super::page::md5_worker_js,
        openapi_json,
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
