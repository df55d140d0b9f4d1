//! The application state every handler shares: small, cheap to clone, built from a config.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::AuthMode;
use crate::db::Metadata;
use crate::storage::ObjectStore;
use crate::upload::{TicketSigner, UploadPolicy};

/// Timings and switches the handlers need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub upload_url_ttl: Duration,
    pub confirm_grace: Duration,
    pub download_url_ttl: Duration,
    pub public_bucket: bool,
    pub sweep_delete_age: Duration,
    pub sweep_margin: Duration,
    /// Origin of the bucket's public endpoint (the page PUTs there).
    pub store_origin: String,
    /// The page sends files larger than this in parts.
    pub page_multipart_threshold: u64,
}

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<dyn Metadata>,
    pub store: Arc<dyn ObjectStore>,
    pub tickets: TicketSigner,
    pub policy: Arc<UploadPolicy>,
    pub settings: Arc<Settings>,
    pub auth: AuthMode,
    /// The B2 event-notification signing secret; `None` disables `/webhooks/b2`.
    pub webhook_secret: Option<crate::config::Secret>,
    /// Records who pending uploads belong to, when the webhook is enabled.
    pub pending: Option<crate::webhook::PendingRecorder>,
    /// The bucket's name (webhook events for other buckets are ignored).
    pub bucket: String,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::api::metrics::Metrics>,
}
