//! The core without sockets: one constructor, [`Core::open`], builds the database, the store,
//! the upload tickets and rules, the services and the background jobs from a [`Config`].
//!
//! `ferry serve` adds HTTP on top (see `startup`); `ferry sweep`, `ferry migrate` and the tests
//! use the core as it is, and open no listening port.

mod data_dir;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::auth::AuthMode;
use crate::config::{Config, S3Config, StoreConfig, defaults};
use crate::db::{DbError, Metadata};
use crate::embedded::{EmbeddedStore, StoreOptions};
use crate::storage::{ObjectStore, S3Store, StoreError};
use crate::sweep::Sweeper;
use crate::telemetry::Metrics;
use crate::upload::{PendingRecorder, TicketSigner, Uploads};
use crate::webhook::B2Events;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot open the database: {0}")]
    Database(#[from] DbError),
    #[error("cannot set up the object store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
}

/// Everything Ferry is, minus HTTP.
pub struct Core {
    pub db: Arc<dyn Metadata>,
    pub store: Arc<dyn ObjectStore>,
    pub uploads: Arc<Uploads>,
    pub sweeper: Arc<Sweeper>,
    /// `None` unless `B2_EVENT_NOTIFICATION_SECRET` is set.
    pub webhook: Option<Arc<B2Events>>,
    pub auth: AuthMode,
    pub metrics: Arc<Metrics>,
    /// The bucket's settings as Ferry uses them (for the embedded store: its generated ones).
    pub bucket: S3Config,
    /// The embedded store, when no bucket is configured: `startup` serves its S3 endpoint.
    pub embedded: Option<EmbeddedStore>,
}

impl Core {
    /// Opens everything the configuration names. For the embedded store, the URLs handed to
    /// browsers point at `FERRY_HOST:FERRY_STORE_PORT` (or `FERRY_STORE_PUBLIC_URL`): the
    /// caller that serves it on another port (port 0 in tests) sets that port first.
    pub async fn open(cfg: &Config) -> Result<Self, CoreError> {
        data_dir::ensure(&cfg.server.data_dir)?;
        let metrics = Arc::new(Metrics::default());
        let (bucket, store, embedded) = open_store(cfg)?;
        let ticket_secret = match &cfg.uploads.ticket_secret {
            Some(s) => s.clone(),
            None => data_dir::derive_secret(&bucket.secret_access_key, b"ferry upload tickets"),
        };
        let db = crate::db::connect(&cfg.database, &cfg.server.data_dir).await?;
        tracing::info!(database = %db.describe(), "metadata database ready");
        let pending = cfg.webhook.b2_event_secret.as_ref().map(|_| PendingRecorder::spawn(db.clone()));
        let uploads = Arc::new(Uploads::new(
            db.clone(),
            store.clone(),
            TicketSigner::new(&ticket_secret),
            &cfg.uploads,
            pending,
            metrics.clone(),
        ));
        let webhook =
            cfg.webhook.b2_event_secret.as_ref().map(|secret| {
                Arc::new(B2Events::new(uploads.clone(), db.clone(), secret.clone(), bucket.bucket.clone()))
            });
        let sweeper = Arc::new(Sweeper::new(db.clone(), store.clone(), &cfg.uploads, cfg.sweep.clone()));
        Ok(Self {
            auth: AuthMode::new(cfg.auth.as_ref()),
            db,
            store,
            uploads,
            sweeper,
            webhook,
            metrics,
            bucket,
            embedded,
        })
    }

    /// Runs migrations only (for `ferry migrate`); returns the database's description.
    pub async fn migrate(cfg: &Config) -> Result<String, CoreError> {
        data_dir::ensure(&cfg.server.data_dir)?;
        let mut db_cfg = cfg.database.clone();
        db_cfg.pool_size = 1;
        Ok(crate::db::connect(&db_cfg, &cfg.server.data_dir).await?.describe())
    }

    /// Starts the background jobs (the periodic sweep); they end when `stop` is cancelled.
    pub fn spawn_background(&self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.sweeper.clone().run_periodically(stop))
    }

    /// The origin of the URLs browsers PUT to (the page's CSP allows it).
    pub fn store_origin(&self) -> String {
        self.bucket.public_endpoint.origin().ascii_serialization()
    }
}

type OpenedStore = (S3Config, Arc<dyn ObjectStore>, Option<EmbeddedStore>);

fn open_store(cfg: &Config) -> Result<OpenedStore, CoreError> {
    match &cfg.store {
        StoreConfig::External(s3) => {
            tracing::info!(endpoint = %s3.endpoint, bucket = %s3.bucket, region = %s3.region, "object store: external S3-compatible bucket");
            Ok((s3.clone(), Arc::new(S3Store::new(s3)?), None))
        }
        StoreConfig::Embedded(e) => {
            let secret = match &e.secret_access_key {
                Some(s) => s.clone(),
                None => data_dir::load_or_create_secret(&cfg.server.data_dir)?,
            };
            let endpoint = Url::parse(&format!("http://{}", crate::config::socket_text(e.host, e.port)))
                .map_err(|e| StoreError::Refused(format!("embedded store address: {e}")))?;
            let root = cfg.server.data_dir.join("objects");
            let s3 = S3Config {
                public_endpoint: e.public_url.clone().unwrap_or_else(|| endpoint.clone()),
                endpoint,
                bucket: e.bucket.clone(),
                region: defaults::REGION.into(),
                access_key_id: e.access_key_id.clone(),
                secret_access_key: secret.clone(),
            };
            let embedded = EmbeddedStore::open(&StoreOptions {
                root: &root,
                bucket: &e.bucket,
                access_key_id: &e.access_key_id,
                secret_access_key: &secret,
                public_read: cfg.uploads.public_bucket,
                body_idle_timeout: cfg.limits.body_idle_timeout,
                max_object_size: cfg.uploads.max_file_size,
                host_names: s3.public_endpoint.host_str().map(str::to_owned).into_iter().collect(),
            })
            .map_err(|source| CoreError::DataDir { path: root.display().to_string(), source })?;
            tracing::info!(endpoint = %s3.public_endpoint, bucket = %e.bucket, dir = %root.display(), "object store: embedded");
            let objects: Arc<dyn ObjectStore> = Arc::new(embedded.objects(S3Store::new(&s3)?));
            Ok((s3, objects, Some(embedded)))
        }
    }
}
