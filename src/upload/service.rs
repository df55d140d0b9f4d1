//! [`Uploads`]: issue a key, authorize it for a caller, confirm what arrived.
//!
//! A confirm believes nothing the client says: the key must be a ticket issued to the caller
//! and still within its window, the object must be in the bucket, and its size and type (as the
//! store reports them) must pass the same rules as the presign. Only then is the row written,
//! once; a repeated confirm returns the same row.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{PendingRecorder, Ticket, TicketSigner, UploadError, UploadPolicy, clean_file_name, now_unix};
use crate::config::UploadConfig;
use crate::db::{FileRecord, FileRepo, NewFile, PendingUpload, Recorded};
use crate::identity::Caller;
use crate::storage::{ObjectStore, PutRequest};
use crate::telemetry::Metrics;

/// The content type recorded for objects the store reports none for.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// What a caller asks to upload.
#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    pub file_name: &'a str,
    pub content_type: &'a str,
    /// The exact size, when the client declares it (signed into the URL).
    pub size: Option<u64>,
}

/// A presigned single-PUT upload.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub object_key: String,
    pub url: Url,
    pub public_url: Url,
}

/// Timings of an upload's life.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timings {
    pub url_ttl: Duration,
    pub confirm_grace: Duration,
    pub download_url_ttl: Duration,
    pub public_bucket: bool,
}

/// The upload service. Cheap to share behind an `Arc`.
pub struct Uploads {
    pub(super) files: Arc<dyn FileRepo>,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) tickets: TicketSigner,
    pub(super) policy: UploadPolicy,
    pub(super) timings: Timings,
    pending: Option<PendingRecorder>,
    metrics: Arc<Metrics>,
}

impl Uploads {
    pub fn new(
        files: Arc<dyn FileRepo>,
        store: Arc<dyn ObjectStore>,
        tickets: TicketSigner,
        cfg: &UploadConfig,
        pending: Option<PendingRecorder>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            files,
            store,
            tickets,
            policy: UploadPolicy::new(cfg.max_file_size, &cfg.allowed_types),
            timings: Timings {
                url_ttl: cfg.url_ttl,
                confirm_grace: cfg.confirm_grace,
                download_url_ttl: cfg.download_url_ttl,
                public_bucket: cfg.public_bucket,
            },
            pending,
            metrics,
        }
    }

    /// The upload rules (the page shows them).
    pub fn policy(&self) -> &UploadPolicy {
        &self.policy
    }

    /// Checks a request against the rules and makes its key: a ticket for `who`.
    pub fn issue(&self, who: &Caller, req: &UploadRequest<'_>) -> Result<String, UploadError> {
        let name = clean_file_name(req.file_name)?;
        self.policy.check_type(req.content_type)?;
        if let Some(size) = req.size {
            self.policy.check_size(size)?;
        }
        let expires_at = u32::try_from(now_unix() + self.timings.url_ttl.as_secs()).unwrap_or(u32::MAX);
        let key = self.tickets.issue(&who.user_id, &name, expires_at);
        self.metrics.presigned();
        if let Some(pending) = &self.pending {
            pending.note(PendingUpload {
                object_key: key.clone(),
                user_id: who.user_id.clone(),
                expires_at: i64::from(expires_at),
            });
        }
        Ok(key)
    }

    /// Issues a key and signs a PUT URL for it, with the content type (and size) signed in.
    pub fn presign(&self, who: &Caller, req: &UploadRequest<'_>) -> Result<Presigned, UploadError> {
        let key = self.issue(who, req)?;
        let url = self.store.presign_put(&PutRequest {
            key: &key,
            content_type: req.content_type,
            content_length: req.size,
            ttl: self.timings.url_ttl,
        });
        Ok(Presigned { public_url: self.store.public_url(&key), url, object_key: key })
    }

    /// The ticket in `key`, if it was issued to `who` (whatever its age).
    pub fn ticket(&self, who: &Caller, key: &str) -> Result<Ticket, UploadError> {
        self.tickets.verify(&who.user_id, key).map_err(|e| {
            tracing::info!(reason = %e, "key refused");
            UploadError::NotIssued
        })
    }

    /// The ticket in `key`, if it was issued to `who` and is still within its confirm window.
    pub fn authorize(&self, who: &Caller, key: &str) -> Result<Ticket, UploadError> {
        let ticket = self.ticket(who, key)?;
        if !self.confirmable(&ticket) {
            return Err(UploadError::Expired);
        }
        Ok(ticket)
    }

    /// Whether a ticket's upload may still be confirmed: its URL's expiry plus the grace.
    pub fn confirmable(&self, ticket: &Ticket) -> bool {
        now_unix() <= u64::from(ticket.expires_at) + self.timings.confirm_grace.as_secs()
    }

    /// Confirms an upload for `who`: the key must be a ticket issued to them and still within
    /// its window; the object must exist and pass the rules; the row is written once.
    pub async fn confirm(&self, who: &Caller, key: &str) -> Result<FileRecord, UploadError> {
        let ticket = self.ticket(who, key)?;
        if !self.confirmable(&ticket) {
            // A repeat of a confirm that succeeded in time still answers with its record.
            return self.files.find_by_key(who, key).await?.ok_or(UploadError::Expired);
        }
        // Sealed first (where the store can), so what is checked is what stays.
        let object = self.store.seal(key).await?.ok_or(UploadError::NotUploaded)?;
        let content_type = object.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
        let refusal = match (self.policy.check_size(object.size), self.policy.check_type(&content_type)) {
            (Err(_), _) => Some(UploadError::ObjectTooLarge { limit: self.policy.max_file_size }),
            (Ok(()), Err(e)) => {
                tracing::info!(reason = %e, "uploaded object refused");
                Some(UploadError::ObjectTypeNotAllowed(content_type.clone()))
            }
            (Ok(()), Ok(_)) => None,
        };
        if let Some(refusal) = refusal {
            // A refusal never leaves a row without its object: if this key was already recorded
            // (a repeat confirm after the object was replaced), the object stays.
            if self.files.find_by_key(who, key).await?.is_some() {
                tracing::warn!("a confirmed object was replaced in the bucket; leaving it and its row as they are");
                return Err(UploadError::ObjectChanged);
            }
            self.store.delete(key).await?;
            return Err(refusal);
        }
        let new = NewFile {
            file_url: self.store.public_url(key).into(),
            file_name: ticket.file_name,
            content_type: Some(content_type),
            size: object.size,
            etag: object.etag,
            object_key: key.to_owned(),
        };
        let (record, recorded) = self.files.record(who, &new).await?;
        if recorded == Recorded::Existing && !same_object(&record, &new) {
            tracing::warn!(file_id = record.id, "a confirmed object was replaced in the bucket");
            return Err(UploadError::ObjectChanged);
        }
        self.metrics.confirmed(recorded == Recorded::Created);
        tracing::info!(file_id = record.id, size = new.size, "upload confirmed");
        Ok(record)
    }
}

/// Whether a recorded row still describes the object the store reports (rows without a size or
/// ETag cannot say otherwise).
fn same_object(record: &FileRecord, object: &NewFile) -> bool {
    record.size.is_none_or(|size| size == object.size)
        && match (&record.etag, &object.etag) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}
