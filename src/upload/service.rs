//! [`Uploads`]: issue a key, authorize it for a caller, confirm what arrived.
//!
//! A confirm believes nothing the client says: the key must be a ticket issued to the caller
//! and still within its window, the object must be in the bucket, and its size and type (as the
//! store reports them) must pass the same rules as the presign. Only then is the row written,
//! once; a repeated confirm returns the same row.
//!
//! Quotas are reserved at presign: with a limit set, each issued upload holds its declared
//! size (0 if undeclared: a byte quota makes a presigned PUT declare it, but Uppy's requests
//! cannot) and one file against the caller's limits until it is confirmed or its confirm window
//! ends, and the confirm checks the real size again. Both checks and their
//! writes are atomic per user in the database ([`FileRepo::reserve`], [`FileRepo::record`]),
//! so concurrent uploads of one user cannot together pass a limit; reserving up front refuses
//! an upload before its bytes travel rather than after.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::checksum::{ChecksumError, check_md5, check_sha256};
use super::{PendingRecorder, Ticket, TicketSigner, UploadError, UploadPolicy, clean_file_name, now_unix};
use crate::config::UploadConfig;
use crate::db::{DbError, FileRecord, FileRepo, NewFile, PendingUpload, Quota, Recorded, Reservation, Usage};
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
    /// The MD5 digest of the bytes (base64), when the client declares it (signed into the URL).
    pub md5: Option<&'a str>,
    /// The SHA-256 digest of the bytes (base64), for stores that take `x-amz-checksum-sha256`.
    pub sha256: Option<&'a str>,
}

impl<'a> UploadRequest<'a> {
    /// A request without digests.
    pub fn new(file_name: &'a str, content_type: &'a str, size: Option<u64>) -> Self {
        Self { file_name, content_type, size, md5: None, sha256: None }
    }
}

/// A presigned single-PUT upload.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub object_key: String,
    pub url: Url,
    pub public_url: Url,
    /// The headers the PUT must carry, as they were signed.
    pub headers: Vec<(&'static str, String)>,
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
    pub(super) quota: Quota,
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
            quota: Quota { bytes: cfg.quota_bytes, files: cfg.quota_files },
            pending,
            metrics,
        }
    }

    /// The upload rules (the page shows them).
    pub fn policy(&self) -> &UploadPolicy {
        &self.policy
    }

    /// How long the upload URLs Ferry signs live.
    pub fn url_ttl(&self) -> Duration {
        self.timings.url_ttl
    }

    /// How long after its start an upload can still be confirmed (and so resumed): its URLs'
    /// lifetime plus the grace after it.
    pub fn confirm_window(&self) -> Duration {
        self.timings.url_ttl + self.timings.confirm_grace
    }

    /// The per-user limits.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The caller's usage (reservations of uploads that may still be confirmed included).
    pub async fn usage(&self, who: &Caller) -> Result<Usage, UploadError> {
        Ok(self.files.usage(who, now_i64()).await?)
    }

    /// Checks a request against the rules and makes its key: a ticket for `who`, reserved
    /// against the caller's quota (and remembering its digests) where that is needed.
    pub async fn issue(&self, who: &Caller, req: &UploadRequest<'_>) -> Result<String, UploadError> {
        self.issue_with(who, req, true).await
    }

    /// [`Self::issue`], with the type checked only when `type_known` (a client that signs its
    /// own requests does not say it: the confirm checks what the store recorded).
    pub(super) async fn issue_with(
        &self,
        who: &Caller,
        req: &UploadRequest<'_>,
        type_known: bool,
    ) -> Result<String, UploadError> {
        let name = clean_file_name(req.file_name)?;
        if type_known {
            self.policy.check_type(req.content_type)?;
        }
        if let Some(size) = req.size {
            self.policy.check_size(size)?;
        }
        if let Some(md5) = req.md5 {
            check_md5("md5", md5)?;
        }
        if let Some(sha256) = req.sha256 {
            check_sha256("sha256", sha256)?;
            if !self.store.checksum_headers() {
                return Err(ChecksumError::Unsupported.into());
            }
        }
        let now = now_unix();
        let expires_at = u32::try_from(now + self.timings.url_ttl.as_secs()).unwrap_or(u32::MAX);
        let reserved = !self.quota.is_unlimited() || req.md5.is_some() || req.sha256.is_some();
        let key = self.tickets.issue_for(&who.user_id, &name, expires_at, reserved);
        if reserved {
            let reservation = Reservation {
                object_key: key.clone(),
                bytes: req.size.unwrap_or(0),
                content_md5: req.md5.map(str::to_owned),
                checksum_sha256: req.sha256.map(str::to_owned),
                expires_at: i64::from(expires_at).saturating_add(self.timings.confirm_grace.as_secs() as i64),
            };
            self.files.reserve(who, &reservation, &self.quota, now as i64).await?;
        }
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
    /// With a byte quota the size is required: the signed `Content-Length` is what keeps the
    /// bucket from taking more than the reservation holds.
    pub async fn presign(&self, who: &Caller, req: &UploadRequest<'_>) -> Result<Presigned, UploadError> {
        if req.size.is_none() && self.quota.bytes.is_some() {
            return Err(UploadError::SizeRequired);
        }
        let key = self.issue(who, req).await?;
        let put = PutRequest {
            key: &key,
            content_type: Some(req.content_type),
            content_length: req.size,
            content_md5: req.md5,
            checksum_sha256: req.sha256,
            ttl: self.timings.url_ttl,
        };
        let url = self.store.presign_put(&put);
        let headers = put.headers();
        Ok(Presigned { public_url: self.store.public_url(&key), url, object_key: key, headers })
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
            // Released first: the object is refused whether or not its delete succeeds now.
            self.files.release(who, key).await?;
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
            reserved: ticket.reserved,
        };
        let (record, recorded) = match self.files.record(who, &new, &self.quota, now_i64()).await {
            Ok(recorded) => recorded,
            Err(DbError::Quota(exceeded)) => {
                // Not recorded, so not kept: the bucket holds nothing the quota does not count.
                tracing::info!(reason = %exceeded, "uploaded object refused");
                self.files.release(who, key).await?;
                // As for the other refusals: a row another confirm made meanwhile keeps its object.
                if self.files.find_by_key(who, key).await?.is_none() {
                    self.store.delete(key).await?;
                }
                return Err(UploadError::ObjectOverQuota(exceeded));
            }
            Err(other) => return Err(other.into()),
        };
        if recorded == Recorded::Existing && !same_object(&record, &new) {
            tracing::warn!(file_id = record.id, "a confirmed object was replaced in the bucket");
            return Err(UploadError::ObjectChanged);
        }
        self.metrics.confirmed(recorded == Recorded::Created);
        tracing::info!(file_id = record.id, size = new.size, "upload confirmed");
        Ok(record)
    }
}

fn now_i64() -> i64 {
    i64::try_from(now_unix()).unwrap_or(i64::MAX)
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
