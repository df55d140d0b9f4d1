//! The embedded S3-compatible store: what Ferry runs when no bucket is configured.
//!
//! `s3s` speaks the S3 protocol and verifies SigV4 (headers, presigned URLs, streaming
//! chunks); [`backend::Backend`] keeps the objects on disk; a CORS layer in front answers
//! browsers' preflights.

mod backend;
mod disk;
mod local;
mod multipart;
mod s3_api;

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
use crate::storage::S3Store;

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
}

/// An embedded store opened on its directory: Ferry's in-process view of it
/// ([`EmbeddedStore::objects`]) and its S3 endpoint ([`EmbeddedStore::router`]) share one disk.
pub struct EmbeddedStore {
    disk: Arc<disk::Disk>,
    bucket: String,
    service: S3Service,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store's directory.
    pub fn open(opts: &StoreOptions<'_>) -> std::io::Result<Self> {
        let disk = Arc::new(disk::Disk::open(opts.root, opts.bucket)?);
        let mut builder = S3ServiceBuilder::new(backend::Backend { disk: disk.clone() });
        builder.set_auth(SimpleAuth::from_single(opts.access_key_id, opts.secret_access_key.expose()));
        builder.set_access(Access { public_read: opts.public_read });
        Ok(Self { disk, bucket: opts.bucket.to_owned(), service: builder.build() })
    }

    /// The store as Ferry itself uses it: same disk, no HTTP; `signer` signs browsers' URLs.
    pub fn objects(&self, signer: S3Store) -> LocalObjects {
        LocalObjects { disk: self.disk.clone(), bucket: self.bucket.clone(), signer }
    }

    /// The store's S3 endpoint (serve it with `axum::serve`), with CORS for `cors_origins`.
    pub fn router(&self, cors_origins: &[String]) -> Router {
        let service = self.service.clone();
        let handler = tower::service_fn(move |req: axum::extract::Request| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(call(&service, req).await) }
        });
        Router::new().fallback_service(handler).layer(cors(cors_origins))
    }
}

/// A standalone store's S3 endpoint (tests use it as an "external" bucket).
pub fn router(opts: &StoreOptions<'_>, cors_origins: &[String]) -> std::io::Result<Router> {
    Ok(EmbeddedStore::open(opts)?.router(cors_origins))
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
