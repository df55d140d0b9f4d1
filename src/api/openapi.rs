//! The OpenAPI 3.1 document of the API, generated from the handlers' own annotations (utoipa),
//! so it cannot drift from the routes: `GET /openapi.json`.
//!
//! Every error is the same JSON body with a stable `code`; [`Errors`] lists the statuses any
//! route may answer with it (which code means what is in the README and in `ApiError`).

use std::collections::BTreeMap;

use axum::Json;
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, OpenApi};

use crate::wire::ErrorBody;

/// The error statuses of the API, each with Ferry's JSON error body.
pub struct Errors;

const ERRORS: &[(&str, &str)] = &[
    ("400", "The request is malformed or breaks a rule (the code says which)"),
    ("401", "No token, or a token that is refused (missing-token, invalid-token, token-expired)"),
    ("403", "Not the caller's upload, not allowed (quota, dev-mode host)"),
    ("404", "No such file, upload or route"),
    ("405", "Method not allowed"),
    ("409", "Not uploaded yet, the key is another user's, or the object changed"),
    ("410", "The upload expired or its file was deleted"),
    ("413", "The body is too large"),
    ("415", "The body is not JSON"),
    ("422", "The uploaded object breaks a rule and was removed"),
    ("429", "Too many requests (Retry-After)"),
    ("500", "Internal error (the cause is logged, not sent)"),
    ("503", "A dependency is unavailable (database, store, identity provider): retry"),
];

fn error_responses(content_type: &str) -> BTreeMap<String, RefOr<Response>> {
    ERRORS
        .iter()
        .map(|(status, description)| {
            let content = utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                .build();
            let mut response = ResponseBuilder::new().description(*description);
            if content_type == "application/json" {
                response = response.content(content_type, content);
            } else {
                response = response.content(content_type, utoipa::openapi::ContentBuilder::new().build());
            }
            ((*status).to_owned(), RefOr::T(response.build()))
        })
        .collect()
}

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses("application/json")
    }
}

/// The same statuses as S3-style XML errors (`/uppy/complete`, `/uppy/abort`, which Uppy reads
/// as S3): `<Error><Code>` carries the same stable code.
pub struct XmlErrors;

impl IntoResponses for XmlErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses("application/xml")
    }
}

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
