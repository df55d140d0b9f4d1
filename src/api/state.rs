//! What every handler shares: the domain services of the core, plus the page's few facts.
//! One `Arc`: axum clones the state for every middleware and extractor of every request, and a
//! struct of ten `Arc`s cost ten atomic increments and decrements each time (visible in the
//! presign profile).

use std::sync::Arc;

use crate::auth::AuthMode;
use crate::config::Config;
use crate::core::Core;
use crate::db::Metadata;
use crate::storage::ObjectStore;
use crate::telemetry::Metrics;
use crate::upload::Uploads;
use crate::webhook::B2Events;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub uploads: Arc<Uploads>,
    /// `None` disables `/webhooks/b2`.
    pub webhook: Option<Arc<B2Events>>,
    pub auth: AuthMode,
    pub metrics: Arc<Metrics>,
    /// Readiness checks only.
    pub db: Arc<dyn Metadata>,
    /// Readiness checks only.
    pub store: Arc<dyn ObjectStore>,
    pub page: Arc<PageFacts>,
    /// Per-client request limits on the upload routes; `None` when turned off.
    pub rate_limit: Option<Arc<super::limits::RateLimit>>,
    /// Dev mode only: the `Host` names a request may carry (loopback and configured origins).
    pub dev_hosts: Option<Arc<Vec<String>>>,
    /// Set when shutdown begins: `/readyz` answers 503 so load balancers stop sending traffic.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// What the upload page needs to know.
#[derive(Debug, Clone)]
pub struct PageFacts {
    /// Origin of the bucket's public endpoint (the page PUTs there).
    pub store_origin: String,
    /// The page sends files larger than this in parts.
    pub multipart_threshold: u64,
    /// The page sends the MD5 of files up to this size.
    pub checksum_max_size: u64,
}

impl AppState {
    pub fn new(core: &Core, cfg: &Config) -> Self {
        Self(Arc::new(Shared {
            draining: Arc::default(),
            rate_limit: super::limits::RateLimit::new(
                cfg.limits.rate_per_second,
                cfg.limits.rate_burst,
                cfg.limits.trusted_proxies.clone(),
            )
            .map(Arc::new),
            dev_hosts: (core.auth.is_dev() && !cfg.server.insecure_dev_auth)
                .then(|| Arc::new(super::limits::dev_hosts(&cfg.server.cors_origins))),
            uploads: core.uploads.clone(),
            webhook: core.webhook.clone(),
            auth: core.auth.clone(),
            metrics: core.metrics.clone(),
            db: core.db.clone(),
            store: core.store.clone(),
            page: Arc::new(PageFacts {
                store_origin: core.store_origin(),
                multipart_threshold: cfg.page.multipart_threshold,
                checksum_max_size: cfg.page.checksum_max_size,
            }),
        }))
    }
}
