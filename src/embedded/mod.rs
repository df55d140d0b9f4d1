//! The embedded S3-compatible store: what Ferry runs when no bucket is configured.
//!
//! `s3s` speaks the S3 protocol and verifies SigV4 (headers, presigned URLs, streaming
//! chunks); [`backend::Backend`] keeps the objects on disk; a CORS layer in front answers
//! browsers' preflights.
//!
//! Facing hostile traffic: every request body gives up after an idle period
//! ([`crate::idle_body`]); every answer carries `X-Content-Type-Options: nosniff` and a sandboxing
//! `Content-Security-Policy`, and active content is served as an attachment (`s3_api.rs`);
//! confirmed objects are sealed against overwrites (`disk.rs`); refused requests are not
//! logged as errors ([`quiet_log`]).

mod backend;
mod conditions;
mod copy;
mod disk;
mod edge;
mod form_body;
mod headers;
mod index;
mod listing;
mod local;
mod meta;
mod multipart;
mod quiet_log;
mod s3_api;
mod vhost;

pub use local::LocalObjects;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{GetObjectInput, HeadObjectInput};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Result, s3_error};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Dispatch;
use tracing::instrument::WithSubscriber;

use crate::config::Secret;
use crate::storage::S3Store;

/// The largest file a POST form may carry (see `EmbeddedStore::open`).
const MAX_POST_FORM_FILE: u64 = 5 * 1024 * 1024;

/// Clears the `response-*` overrides of an anonymous GetObject or HeadObject request.
macro_rules! drop_unsigned_overrides {
    ($req:expr) => {
        if $req.credentials.is_none() {
            let input = &mut $req.input;
            input.response_cache_control = None;
            input.response_content_disposition = None;
            input.response_content_encoding = None;
            input.response_content_language = None;
            input.response_content_type = None;
            input.response_expires = None;
        }
    };
}

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

    /// `response-*` overrides are for signed requests only (as on S3): `s3s` applies them to
    /// the answer itself, so an anonymous reader of a public bucket could otherwise have any
    /// object served as `text/html`, inline.
    async fn get_object(&self, req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        drop_unsigned_overrides!(req);
        Ok(())
    }

    async fn head_object(&self, req: &mut S3Request<HeadObjectInput>) -> S3Result<()> {
        drop_unsigned_overrides!(req);
        Ok(())
    }
}

/// The store's one key pair. An unknown access key is S3's `403 InvalidAccessKeyId` (s3s's
/// `SimpleAuth` answers `NotSignedUp`, which tools do not explain to their users).
struct StoreAuth {
    access_key_id: String,
    secret: s3s::auth::SecretKey,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for StoreAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        if access_key == self.access_key_id {
            Ok(self.secret.clone())
        } else {
            Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
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
    /// How long a request body may send nothing before the request is abandoned
    /// (`FERRY_BODY_IDLE_TIMEOUT`).
    pub body_idle_timeout: Duration,
    /// The largest object the store accepts, however it is uploaded (`FERRY_MAX_FILE_SIZE`).
    pub max_object_size: u64,
    /// The store's host names (that of `FERRY_STORE_PUBLIC_URL`): `<bucket>.<name>` addresses
    /// the bucket virtual-hosted style; `localhost` always works.
    pub host_names: Vec<String>,
}

/// An embedded store opened on its directory: Ferry's in-process view of it
/// ([`EmbeddedStore::objects`]) and its S3 endpoint ([`EmbeddedStore::router`]) share one disk.
pub struct EmbeddedStore {
    disk: Arc<disk::Disk>,
    bucket: String,
    service: S3Service,
    body_idle_timeout: Duration,
    /// Where each answer is counted (`ferry_store_requests`), once Ferry hands its metrics over.
    metrics: Option<Arc<crate::telemetry::Metrics>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store's directory.
    pub fn open(opts: &StoreOptions<'_>) -> std::io::Result<Self> {
        let disk = Arc::new(disk::Disk::open(opts.root, opts.bucket)?);
        let backend = backend::Backend { disk: disk.clone(), max_object_size: opts.max_object_size };
        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_auth(StoreAuth {
            access_key_id: opts.access_key_id.to_owned(),
            secret: opts.secret_access_key.expose().into(),
        });
        builder.set_access(Access { public_read: opts.public_read });
        // s3s holds a POST form's file in memory while it checks the policy: Ferry's forms allow
        // 5 MiB (Uppy's single-request uploads), so nothing larger is ever read (the default
        // would take up to 5 GB from anyone holding a signed policy).
        let mut config = s3s::config::S3Config::default();
        config.post_object_max_file_size = MAX_POST_FORM_FILE;
        builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(config))));
        builder.set_host(vhost::StoreHost::new(&opts.host_names));
        Ok(Self {
            disk,
            bucket: opts.bucket.to_owned(),
            service: builder.build(),
            body_idle_timeout: opts.body_idle_timeout,
            metrics: None,
        })
    }

    /// Counts every answer of the store's endpoint in `metrics`, by S3 operation and status.
    pub fn set_metrics(&mut self, metrics: Arc<crate::telemetry::Metrics>) {
        self.metrics = Some(metrics);
    }

    /// The store as Ferry itself uses it: same disk, no HTTP; `signer` signs browsers' URLs.
    pub fn objects(&self, signer: S3Store) -> LocalObjects {
        LocalObjects { disk: self.disk.clone(), bucket: self.bucket.clone(), signer }
    }

    /// The store's S3 endpoint (serve it with `axum::serve`), with CORS for `cors_origins`.
    /// Logs go to the subscriber in place when this is called (see [`quiet_log`]).
    pub fn router(&self, cors_origins: &[String]) -> Router {
        let service = self.service.clone();
        let idle = self.body_idle_timeout;
        let logs = quiet_log::QuietS3s::around_current();
        let metrics = self.metrics.clone();
        let handler = tower::service_fn(move |req: axum::extract::Request| {
            let service = service.clone();
            let logs = logs.clone();
            let metrics = metrics.clone();
            let operation = operation_of(&req);
            // A POST form's body is cut the way s3s can parse it (see `form_body`).
            let form = operation == crate::telemetry::StoreOperation::PostObject;
            let req = req.map(|body| {
                let body = crate::idle_body::IdleBody::new(body, idle);
                if form { Body::new(form_body::FormBody::new(body)) } else { Body::new(body) }
            });
            async move {
                let response = call(&service, &logs, req).await;
                if let Some(metrics) = &metrics {
                    metrics.store_request(operation, response.status().as_u16());
                }
                Ok::<_, Infallible>(response)
            }
        });
        Router::new().fallback_service(handler).layer(cors(cors_origins))
    }
}

/// The S3 operation a request asks for, from its method, path and query (enough to count it:
/// `s3s` decides what it really is).
fn operation_of(req: &axum::extract::Request) -> crate::telemetry::StoreOperation {
    use crate::telemetry::StoreOperation as Op;
    let query = req.uri().query().unwrap_or_default();
    let has = |name: &str| query.split('&').any(|pair| pair.split('=').next() == Some(name));
    let object = req.uri().path().trim_start_matches('/').contains('/')
        && !req.uri().path().trim_start_matches('/').ends_with('/');
    let copy = req.headers().contains_key("x-amz-copy-source");
    match (req.method().as_str(), object) {
        ("PUT", true) if has("partNumber") && has("uploadId") => Op::UploadPart,
        ("PUT", true) if copy => Op::CopyObject,
        ("PUT", true) => Op::PutObject,
        ("POST", true) if has("uploads") => Op::CreateMultipartUpload,
        ("POST", true) if has("uploadId") => Op::CompleteMultipartUpload,
        ("POST", false) => Op::PostObject,
        ("GET", true) if has("uploadId") => Op::ListParts,
        ("GET", true) => Op::GetObject,
        ("HEAD", true) => Op::HeadObject,
        ("DELETE", true) if has("uploadId") => Op::AbortMultipartUpload,
        ("DELETE", true) => Op::DeleteObject,
        ("GET", false) => Op::ListObjects,
        _ => Op::Other,
    }
}

/// A standalone store's S3 endpoint (tests use it as an "external" bucket).
pub fn router(opts: &StoreOptions<'_>, cors_origins: &[String]) -> std::io::Result<Router> {
    Ok(EmbeddedStore::open(opts)?.router(cors_origins))
}

/// Lets `s3s` answer, logging its refusals at debug and its failures at error, and adds the
/// headers every answer of the store carries.
async fn call(service: &S3Service, logs: &Dispatch, mut req: axum::extract::Request) -> Response {
    let method = req.method().clone();
    let request_id = edge::request_id();
    if let Some(refused) = edge::refuse_before_s3s(&req) {
        log_answer(&method, refused.status(), None, false);
        let mut response = refused.map(Body::new);
        secure_headers(response.headers_mut());
        return edge::with_request_id(response, &method, &request_id).await;
    }
    edge::date_as_amz_date(req.headers_mut());
    let answer = quiet_log::NOTE
        .scope(RefCell::new(None), async {
            quiet_log::REPORTED
                .scope(Cell::new(false), async {
                    let answer = service.call(req.map(s3s::Body::http_body_unsync)).with_subscriber(logs.clone()).await;
                    (answer, quiet_log::NOTE.with(RefCell::take), quiet_log::REPORTED.with(Cell::get))
                })
                .await
        })
        .await;
    let mut response = match answer {
        (Ok(response), note, reported) => {
            log_answer(&method, response.status(), note.as_deref(), reported);
            response.map(Body::new)
        }
        (Err(err), _, _) => {
            // `s3s` answers every S3 error itself; an `Err` means it could not even do that.
            tracing::error!(error = ?err, "embedded store failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    secure_headers(response.headers_mut());
    edge::with_request_id(response, &method, &request_id).await
}

/// How loud an answer is: a client's mistake (4xx: a missing or wrong signature, an expired
/// URL, a refused overwrite) is at most debug; the store's own failure (5xx) is an error.
fn answer_level(status: StatusCode) -> Option<tracing::Level> {
    if status.is_server_error() {
        Some(tracing::Level::ERROR)
    } else if status.is_client_error() {
        Some(tracing::Level::DEBUG)
    } else {
        None
    }
}

/// `reported`: the store already logged the cause itself (a full disk, at WARN), so the
/// answer is only noted at debug.
fn log_answer(method: &Method, status: StatusCode, note: Option<&str>, reported: bool) {
    match answer_level(status) {
        Some(tracing::Level::ERROR) if reported => {
            tracing::debug!(%method, status = status.as_u16(), detail = note, "embedded store failed a request");
        }
        Some(tracing::Level::ERROR) => {
            tracing::error!(%method, status = status.as_u16(), detail = note, "embedded store failed a request");
        }
        Some(_) => {
            tracing::debug!(%method, status = status.as_u16(), detail = note, "embedded store refused a request");
        }
        None => {}
    }
}

/// Headers on every answer: browsers must not guess a type (`nosniff`), and whatever the
/// store serves runs in a sandbox with nothing allowed, should a browser render it anyway.
fn secure_headers(headers: &mut http::HeaderMap) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use rusty_s3::S3Action;
    use tower::ServiceExt;
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Every event logged, as (level, target, text).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<(Level, String, String)>>>);

    struct Text(String);

    impl tracing::field::Visit for Text {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            let mut text = Text(String::new());
            event.record(&mut text);
            let meta = event.metadata();
            self.0.lock().unwrap().push((*meta.level(), meta.target().to_owned(), text.0));
        }
    }

    impl Captured {
        fn at_least(&self, level: Level) -> Vec<(Level, String, String)> {
            self.0.lock().unwrap().iter().filter(|(l, _, _)| *l <= level).cloned().collect()
        }
        fn any(&self, level: Level, needle: &str) -> bool {
            self.0.lock().unwrap().iter().any(|(l, _, text)| *l == level && text.contains(needle))
        }
    }

    const ENDPOINT: &str = "http://store.test";

    fn open(root: &Path) -> EmbeddedStore {
        EmbeddedStore::open(&StoreOptions {
            root,
            bucket: "bkt",
            access_key_id: "key",
            secret_access_key: &Secret::new("secret"),
            public_read: false,
            body_idle_timeout: Duration::from_secs(5),
            max_object_size: u64::MAX,
            host_names: Vec::new(),
        })
        .unwrap()
    }

    fn signed_put(key: &str, secret: &str) -> http::Request<Body> {
        let bucket =
            rusty_s3::Bucket::new(ENDPOINT.parse().unwrap(), rusty_s3::UrlStyle::Path, "bkt", "us-east-1").unwrap();
        let creds = rusty_s3::Credentials::new("key", secret);
        let url = bucket.put_object(Some(&creds), key).sign(Duration::from_secs(60));
        put(&format!("{}?{}", url.path(), url.query().unwrap()))
    }

    fn put(path_and_query: &str) -> http::Request<Body> {
        http::Request::put(path_and_query)
            .header(header::HOST, "store.test")
            .header(header::CONTENT_LENGTH, "5")
            .body(Body::from("hello"))
            .unwrap()
    }

    #[tokio::test]
    async fn refused_requests_are_not_logged_as_errors_but_failures_are() {
        let captured = Captured::default();
        let _logs = tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
        let dir = tempfile::tempdir().unwrap();
        let router = open(dir.path()).router(&[]);

        let unsigned = router.clone().oneshot(put("/bkt/k")).await.unwrap();
        assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);
        assert_eq!(unsigned.headers()["x-content-type-options"], "nosniff");
        assert!(unsigned.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
        let wrong_secret = router.clone().oneshot(signed_put("k", "not the secret")).await.unwrap();
        assert_eq!(wrong_secret.status(), StatusCode::FORBIDDEN);
        let malformed = router.clone().oneshot(put("/bkt/k?uploadId=nope&partNumber=0")).await.unwrap();
        assert!(malformed.status().is_client_error());
        assert_eq!(captured.at_least(Level::WARN), vec![], "no error or warning for clients' mistakes");
        assert!(captured.any(Level::DEBUG, "AccessDenied"), "the refusal is at debug, with its reason");
        assert!(captured.any(Level::DEBUG, "SignatureDoesNotMatch"));

        let stored = router.clone().oneshot(signed_put("k", "secret")).await.unwrap();
        assert_eq!(stored.status(), StatusCode::OK);

        // The store's own failure (its temporary directory vanished) is still an error.
        std::fs::remove_dir_all(dir.path().join(".tmp")).unwrap();
        let failed = router.oneshot(signed_put("k2", "secret")).await.unwrap();
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let errors = captured.at_least(Level::ERROR);
        assert!(errors.iter().any(|(_, target, _)| target.starts_with("ferry")), "{errors:?}");
    }

    #[tokio::test]
    async fn a_full_disk_is_one_warning_and_no_error() {
        let captured = Captured::default();
        let _logs = tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
        let quiet = quiet_log::QuietS3s::around_current();
        // What a request that hits a full disk logs: the store's warning, then s3s's and
        // `call`'s reports of the 507.
        quiet_log::REPORTED
            .scope(Cell::new(false), async {
                let e = backend::disk_full(&std::io::Error::from(std::io::ErrorKind::StorageFull));
                assert_eq!(e.status_code(), Some(StatusCode::INSUFFICIENT_STORAGE));
                tracing::dispatcher::with_default(&quiet, || tracing::error!(target: "s3s::service", "answered 507"));
                log_answer(&Method::PUT, StatusCode::INSUFFICIENT_STORAGE, None, quiet_log::REPORTED.with(Cell::get));
            })
            .await;
        let loud = captured.at_least(Level::WARN);
        assert_eq!(loud.len(), 1, "{loud:?}");
        assert_eq!(loud[0].0, Level::WARN);
        assert!(loud[0].2.contains("disk is full"), "{loud:?}");
        // Any other 5xx is still an error, from both.
        quiet_log::REPORTED
            .scope(Cell::new(false), async {
                tracing::dispatcher::with_default(&quiet, || tracing::error!(target: "s3s::service", "answered 500"));
                log_answer(&Method::PUT, StatusCode::INTERNAL_SERVER_ERROR, None, quiet_log::REPORTED.with(Cell::get));
            })
            .await;
        assert_eq!(captured.at_least(Level::ERROR).len(), 2);
    }

    #[test]
    fn client_errors_log_at_debug_and_server_errors_at_error() {
        assert_eq!(answer_level(StatusCode::FORBIDDEN), Some(Level::DEBUG));
        assert_eq!(answer_level(StatusCode::PRECONDITION_FAILED), Some(Level::DEBUG));
        assert_eq!(answer_level(StatusCode::BAD_REQUEST), Some(Level::DEBUG));
        assert_eq!(answer_level(StatusCode::INTERNAL_SERVER_ERROR), Some(Level::ERROR));
        assert_eq!(answer_level(StatusCode::OK), None);
    }
}
