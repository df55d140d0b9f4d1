//! The embedded S3-compatible store: what Ferry runs when no bucket is configured.
//!
//! `s3s` speaks the S3 protocol and verifies SigV4 (headers, presigned URLs, streaming
//! chunks); [`backend::Backend`] keeps the objects on disk; a CORS layer in front answers
//! browsers' preflights.

mod backend;
mod disk;
mod local;
mod multipart;

pub use local::LocalObjects;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Result, s3_error};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Secret;

/// Who may do what: signed requests may do anything, anonymous ones only read a public bucket.
struct Access {
    public_read: bool,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let read = matches!(cx.s3_op().name(), "GetObject" | "HeadObject");
        if cx.credentials().is_some() || (self.public_read && read) {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "Signature is required"))
        }
    }
}

/// Settings of one embedded store.
pub struct StoreOptions<'a> {
    pub root: &'a Path,
    pub bucket: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a Secret,
    pub public_read: bool,
    /// Browser origins allowed to PUT, GET and HEAD.
    pub cors_origins: Vec<String>,
}

/// Builds the store's HTTP app (serve it with `axum::serve`).
pub fn router(opts: &StoreOptions<'_>) -> std::io::Result<Router> {
    Ok(open(opts, None)?.0)
}

/// Builds the store's HTTP app and, given the signer for browser URLs, the in-process view
/// Ferry itself uses (same disk, no HTTP).
pub fn open(
    opts: &StoreOptions<'_>,
    signer: Option<crate::storage::S3Store>,
) -> std::io::Result<(Router, Option<LocalObjects>)> {
    let disk = Arc::new(disk::Disk::open(opts.root, opts.bucket)?);
    let local = signer.map(|signer| LocalObjects { disk: disk.clone(), bucket: opts.bucket.to_owned(), signer });
    let mut builder = S3ServiceBuilder::new(backend::Backend { disk });
    builder.set_auth(SimpleAuth::from_single(opts.access_key_id, opts.secret_access_key.expose()));
    builder.set_access(Access { public_read: opts.public_read });
    let service = builder.build();
    let handler = tower::service_fn(move |req: axum::extract::Request| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(call(&service, req).await) }
    });
    Ok((Router::new().fallback_service(handler).layer(cors(&opts.cors_origins)), local))
}

async fn call(service: &S3Service, req: axum::extract::Request) -> Response {
    match service.call(req.map(s3s::Body::http_body_unsync)).await {
        Ok(resp) => resp.map(Body::new),
        Err(err) => {
            tracing::error!(error = ?err, "embedded store failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::PUT, Method::HEAD])
        .allow_headers([header::CONTENT_TYPE, header::RANGE, HeaderName::from_static("content-md5")])
        .expose_headers([header::ETAG, header::CONTENT_LENGTH])
        .max_age(std::time::Duration::from_secs(3600))
}
