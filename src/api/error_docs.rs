//! The error answers the OpenAPI document lists for the routes (see `openapi.rs`), in a module
//! of their own so that handlers can name them without importing the document.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::{RefOr, Response, ResponseBuilder};

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
