//! Building Ferry from a configuration and serving it on listeners the caller passes in.
//!
//! The server binary, the CLI and the tests all go through [`Application::build`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::app::{AppState, Settings};
use crate::auth::{AuthMode, JwtVerifier};
use crate::config::{Config, ConfigError, S3Config, Secret, StoreConfig, socket_text};
use crate::db::{DbError, PoolOptions};
use crate::storage::{ObjectStore, S3Store, StoreError};
use crate::upload::{TicketSigner, UploadPolicy};
use crate::{api, embedded, sweep};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot open the database: {0}")]
    Database(#[from] DbError),
    #[error("cannot set up the object store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(
        "refusing to run without authentication on {0}: dev mode trusts X-User-Id, so it only listens on loopback \
         (set FERRY_HOST=127.0.0.1, or FERRY_INSECURE_DEV_AUTH=1 if you really mean it)"
    )]
    InsecureDevMode(String),
}

/// A built, not yet running Ferry.
pub struct Application {
    api_listener: TcpListener,
    api: axum::Router,
    store: Option<(TcpListener, axum::Router)>,
    state: AppState,
    sweep_interval: std::time::Duration,
}

/// Binds the configured address, with a clear error.
pub async fn bind(addr: String) -> Result<TcpListener, StartupError> {
    TcpListener::bind(&addr).await.map_err(|source| StartupError::Bind { addr, source })
}

impl Application {
    /// Binds the configured ports and builds the application.
    pub async fn bind(cfg: Config) -> Result<Self, StartupError> {
        let api = bind(socket_text(cfg.host, cfg.port)).await?;
        let store = match &cfg.store {
            StoreConfig::Embedded(e) => Some(bind(socket_text(e.host, e.port)).await?),
            StoreConfig::External(_) => None,
        };
        Self::build(cfg, api, store).await
    }

    /// Builds the application on listeners the caller bound (port 0 in tests).
    /// `store_listener` is used only when the configuration asks for the embedded store.
    pub async fn build(
        cfg: Config,
        api_listener: TcpListener,
        store_listener: Option<TcpListener>,
    ) -> Result<Self, StartupError> {
        let api_addr = local_addr(&api_listener)?;
        let auth = match &cfg.jwt {
            Some(settings) => {
                tracing::info!(
                    hmac = settings.secret.is_some(),
                    jwks = settings.jwks_url.as_ref().map(Url::as_str),
                    "authentication: JWT"
                );
                AuthMode::Jwt(JwtVerifier::new(settings.clone()))
            }
            None => {
                if !api_addr.ip().is_loopback() && !cfg.insecure_dev_auth {
                    return Err(StartupError::InsecureDevMode(api_addr.to_string()));
                }
                tracing::warn!(
                    "DEV MODE: no identity provider configured; the caller is the X-User-Id header or {}. \
                     Set FERRY_JWT_SECRET or FERRY_JWKS_URL for real authentication.",
                    crate::auth::DEV_USER
                );
                AuthMode::Dev
            }
        };
        ensure_dir(&cfg.data_dir)?;
        let own_origin = format!("http://{api_addr}");
        let mut origins = cfg.cors_origins.clone();
        origins.push(own_origin);

        let (s3, store, object_store) = match &cfg.store {
            StoreConfig::External(s3) => {
                tracing::info!(endpoint = %s3.endpoint, bucket = %s3.bucket, region = %s3.region, "object store: external S3-compatible bucket");
                let remote: Arc<dyn ObjectStore> = Arc::new(S3Store::new(s3)?);
                (s3.clone(), None, remote)
            }
            StoreConfig::Embedded(e) => {
                let listener = store_listener.ok_or_else(|| StartupError::Bind {
                    addr: socket_text(e.host, e.port),
                    source: std::io::Error::other("no listener for the embedded store"),
                })?;
                let store_addr = local_addr(&listener)?;
                let secret = match &e.secret_access_key {
                    Some(s) => s.clone(),
                    None => load_or_create_secret(&cfg.data_dir)?,
                };
                let endpoint = Url::parse(&format!("http://{store_addr}")).expect("socket address URL");
                let root = cfg.data_dir.join("objects");
                tracing::info!(endpoint = %endpoint, bucket = %e.bucket, dir = %root.display(), "object store: embedded");
                let s3 = S3Config {
                    public_endpoint: e.public_url.clone().unwrap_or_else(|| endpoint.clone()),
                    endpoint,
                    bucket: e.bucket.clone(),
                    region: "us-east-1".into(),
                    access_key_id: e.access_key_id.clone(),
                    secret_access_key: secret.clone(),
                };
                let (router, local) = embedded::open(
                    &embedded::StoreOptions {
                        root: &root,
                        bucket: &e.bucket,
                        access_key_id: &e.access_key_id,
                        secret_access_key: &secret,
                        public_read: cfg.public_bucket,
                        cors_origins: origins.clone(),
                    },
                    Some(S3Store::new(&s3)?),
                )
                .map_err(|source| StartupError::DataDir { path: root.display().to_string(), source })?;
                let local: Arc<dyn ObjectStore> = Arc::new(local.expect("a signer was given"));
                (s3, Some((listener, router)), local)
            }
        };
        let ticket_secret = match &cfg.upload_secret {
            Some(s) => s.clone(),
            None => derive_secret(&s3.secret_access_key, b"ferry upload tickets"),
        };
        let pool = PoolOptions {
            max_connections: cfg.db_pool_size,
            acquire_timeout: cfg.db_timeout,
            statement_timeout: cfg.db_statement_timeout,
        };
        let db = crate::db::connect(&cfg.database, &cfg.data_dir, &pool).await?;
        tracing::info!(database = %db.describe(), "metadata database ready");

        let state = AppState {
            db: db.clone(),
            store: object_store,
            tickets: TicketSigner::new(&ticket_secret),
            policy: Arc::new(UploadPolicy::new(cfg.max_file_size, &cfg.allowed_types)),
            settings: Arc::new(Settings {
                upload_url_ttl: cfg.upload_url_ttl,
                confirm_grace: cfg.confirm_grace,
                download_url_ttl: cfg.download_url_ttl,
                public_bucket: cfg.public_bucket,
                sweep_delete_age: cfg.sweep_delete_age,
                sweep_margin: cfg.sweep_margin,
                store_origin: s3.public_endpoint.origin().ascii_serialization(),
                page_multipart_threshold: cfg.page_multipart_threshold,
            }),
            auth,
            pending: cfg.b2_event_secret.as_ref().map(|_| crate::webhook::PendingRecorder::spawn(db.clone())),
            webhook_secret: cfg.b2_event_secret.clone(),
            bucket: s3.bucket.clone(),
            metrics: Arc::default(),
        };
        Ok(Self {
            api: api::router(state.clone(), &origins),
            api_listener,
            store,
            state,
            sweep_interval: cfg.sweep_interval,
        })
    }

    /// Builds the application for a one-off task (`ferry sweep`): nothing is served. The task's
    /// calls to an embedded store go straight to its disk, so its listener is only a placeholder.
    pub async fn for_tasks(mut cfg: Config) -> Result<Self, StartupError> {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        cfg.host = loopback;
        let api = bind("127.0.0.1:0".into()).await?;
        let store = match &mut cfg.store {
            StoreConfig::Embedded(e) => {
                e.host = loopback;
                e.public_url = None;
                Some(bind("127.0.0.1:0".into()).await?)
            }
            StoreConfig::External(_) => None,
        };
        let mut app = Self::build(cfg, api, store).await?;
        app.store = None;
        Ok(app)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener.local_addr().expect("bound listener")
    }

    pub fn store_addr(&self) -> Option<SocketAddr> {
        self.store.as_ref().map(|(l, _)| l.local_addr().expect("bound listener"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let store_task = self.store.map(|(listener, router)| {
            let stop = stop.clone();
            tokio::spawn(
                async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await },
            )
        });
        let sweeper = (!self.sweep_interval.is_zero())
            .then(|| tokio::spawn(sweep::run_periodically(self.state.clone(), self.sweep_interval, stop.clone())));
        tracing::info!(addr = %self.api_listener.local_addr()?, "Ferry API listening");
        let api_stop = stop.clone();
        let result = axum::serve(self.api_listener, self.api)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {},
                    () = api_stop.cancelled() => {},
                }
            })
            .await;
        stop.cancel();
        if let Some(task) = store_task {
            let _ = task.await;
        }
        if let Some(task) = sweeper {
            let _ = task.await;
        }
        result
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartupError> {
    listener.local_addr().map_err(|source| StartupError::Bind { addr: "listener".into(), source })
}

fn ensure_dir(path: &Path) -> Result<(), StartupError> {
    std::fs::create_dir_all(path).map_err(|source| StartupError::DataDir { path: path.display().to_string(), source })
}

/// The embedded store's secret, made once and kept (owner-only) in the data directory.
fn load_or_create_secret(data_dir: &Path) -> Result<Secret, StartupError> {
    let path = data_dir.join(".ferry-secret");
    let err = |source| StartupError::DataDir { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(err)?,
        // Another instance on the same directory won the race: use its secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_or_create_secret(data_dir);
        }
        Err(e) => return Err(err(e)),
    }
    Ok(Secret::new(secret))
}

/// A purpose-bound key derived from another secret, so one secret can serve several uses.
fn derive_secret(base: &Secret, purpose: &[u8]) -> Secret {
    let mut mac = Hmac::<Sha256>::new_from_slice(base.expose().as_bytes()).expect("any key length");
    mac.update(purpose);
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}
