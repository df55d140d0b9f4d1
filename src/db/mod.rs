//! The metadata port: file rows behind small traits, one implementation per database.
//!
//! The URL scheme picks the backend; each backend embeds its own migrations and runs them at
//! start-up, and keeps its driver's types and errors to itself (conversions happen inside each
//! backend). The traits are split by concern:
//!
//! - [`FileRepo`]: one user's files, always on behalf of a [`Caller`] (row-level security on
//!   Postgres), with their quota reservations and usage;
//! - [`Maintenance`]: cleanup, which sees every user's rows;
//! - [`WebhookLog`]: the B2 webhook's bookkeeping (who a pending upload belongs to, events seen).

mod error;
pub mod inspect;
mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::DbError;
pub use postgres::PostgresMetadata;
pub use sqlite::SqliteMetadata;

use crate::config::{DatabaseBackend, DatabaseConfig};
use crate::identity::Caller;

/// A row of `b2_files` as Ferry reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: i64,
    pub object_key: String,
    pub file_url: Option<String>,
    pub user_id: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// `None` for rows written without one (the guide's own server does not record sizes).
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// The MD5 digest (base64) the bucket checked the bytes against, when the client sent one.
    pub content_md5: Option<String>,
    /// The SHA-256 digest (base64) the bucket checked the bytes against, when the client sent one.
    pub checksum_sha256: Option<String>,
    pub upload_timestamp: DateTime<Utc>,
}

/// A verified upload to record: every fact comes from the server or the store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub object_key: String,
    pub file_url: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub size: u64,
    pub etag: Option<String>,
    /// Whether the key may hold a reservation (its ticket says so): if not, and no quota is
    /// set, recording it need not look at the reservations.
    pub reserved: bool,
}

/// An upload URL that was handed out: whose it is and until when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub object_key: String,
    pub user_id: String,
    pub expires_at: i64,
}

/// Per-user limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub files: Option<u64>,
}

impl Quota {
    pub fn is_unlimited(&self) -> bool {
        self.bytes.is_none() && self.files.is_none()
    }

    /// Which limit, if any, `usage` plus one more file of `size` bytes would pass.
    pub fn exceeded_by(&self, usage: &Usage, size: u64) -> Option<QuotaExceeded> {
        let files = usage.files.saturating_add(usage.reserved_files).saturating_add(1);
        let bytes = usage.bytes.saturating_add(usage.reserved_bytes).saturating_add(size);
        match (self.files, self.bytes) {
            (Some(limit), _) if files > limit => Some(QuotaExceeded::Files { limit }),
            (_, Some(limit)) if bytes > limit => Some(QuotaExceeded::Bytes { limit }),
            _ => None,
        }
    }

    /// The limits as the databases compare them (no limit: the largest value).
    fn as_columns(&self) -> (i64, i64) {
        let column = |limit: Option<u64>| limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        (column(self.bytes), column(self.files))
    }
}

/// Which of a user's limits an upload would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("this upload would take you past your storage quota of {limit} bytes")]
    Bytes { limit: u64 },
    #[error("this upload would take you past your quota of {limit} files")]
    Files { limit: u64 },
}

/// What a user stores (files being deleted no longer count) and holds reserved by uploads that
/// may still be confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
    pub reserved_files: u64,
    pub reserved_bytes: u64,
}

/// An upload Ferry presigned that may still be confirmed: it holds its declared size against the
/// user's quota until then, and carries the digests signed into its URL to the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub object_key: String,
    pub bytes: u64,
    pub content_md5: Option<String>,
    pub checksum_sha256: Option<String>,
    /// Unix seconds: the end of the upload's confirm window.
    pub expires_at: i64,
}

/// Whether a confirm created the row or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Created,
    Existing,
}

/// One user's files. Every call acts for `who` and sees only their rows.
#[async_trait]
pub trait FileRepo: Send + Sync + 'static {
    /// Records a verified upload for the caller; repeating it returns the same row.
    /// A key recorded for another user is [`DbError::KeyTaken`]; the key of a deleted file is
    /// [`DbError::KeyDeleted`] (never recorded again). A new row that would take the caller past
    /// `quota` (other reservations valid at `now` included) is [`DbError::Quota`]; the check and
    /// the insert are atomic for the caller. The key's reservation, if any, gives the row its
    /// digests and is released.
    async fn record(
        &self,
        who: &Caller,
        file: &NewFile,
        quota: &Quota,
        now: i64,
    ) -> Result<(FileRecord, Recorded), DbError>;
    /// Reserves an upload against `quota`, atomically for the caller: refused with
    /// [`DbError::Quota`] if the caller's files, other reservations valid at `now` and this one
    /// would pass a limit.
    async fn reserve(&self, who: &Caller, reservation: &Reservation, quota: &Quota, now: i64) -> Result<(), DbError>;
    /// Releases the caller's reservation of `key` (an upload refused or abandoned).
    async fn release(&self, who: &Caller, key: &str) -> Result<(), DbError>;
    /// The bytes the caller's reservation of `key` holds (the size its upload declared), if it
    /// has one.
    async fn reserved_bytes(&self, who: &Caller, key: &str) -> Result<Option<u64>, DbError>;
    /// The caller's usage, counting reservations valid at `now`.
    async fn usage(&self, who: &Caller, now: i64) -> Result<Usage, DbError>;
    /// The caller's files, newest first, with ids below `before` when given.
    async fn list(&self, who: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<FileRecord>, DbError>;
    /// The caller's row for an object key, if recorded (rows being deleted included).
    async fn find_by_key(&self, who: &Caller, key: &str) -> Result<Option<FileRecord>, DbError>;
    /// One of the caller's files (not one being deleted).
    async fn get(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Marks one of the caller's files as being deleted, remembers its key as deleted (so no
    /// later confirm records it again), and returns it.
    async fn mark_deleting(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Removes one of the caller's rows whose object is gone.
    async fn remove(&self, who: &Caller, id: i64) -> Result<(), DbError>;
}

/// Cleanup: these see every user's rows.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Rows marked for deletion before `before`.
    async fn stuck_deletions(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<FileRecord>, DbError>;
    /// Removes a row whose object is gone, whoever owns it.
    async fn purge(&self, id: i64) -> Result<(), DbError>;
    /// Which of `keys` have a row.
    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError>;
    /// Forgets pending uploads and reservations that expired before `before`, and events handled
    /// before it.
    async fn prune(&self, before: i64) -> Result<u64, DbError>;
    /// Forgets the keys of files deleted before `before` (no confirm window is open for them).
    async fn prune_deleted_keys(&self, before: DateTime<Utc>) -> Result<u64, DbError>;
    /// Takes or renews the lease `name` for `holder` until `until` (Unix seconds), unless another
    /// holder's lease is still valid at `now`. Returns whether `holder` has it.
    async fn try_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool, DbError>;
}

/// The B2 webhook's bookkeeping.
#[async_trait]
pub trait WebhookLog: Send + Sync + 'static {
    /// Remembers who pending uploads belong to.
    async fn record_pending(&self, batch: &[PendingUpload]) -> Result<(), DbError>;
    /// The user a pending upload was issued to.
    async fn pending_owner(&self, key: &str) -> Result<Option<String>, DbError>;
    /// Whether a webhook event was already handled.
    async fn event_seen(&self, event_id: &str) -> Result<bool, DbError>;
    /// Remembers a handled webhook event.
    async fn mark_event(&self, event_id: &str, now: i64) -> Result<(), DbError>;
}

/// A whole metadata database: every concern, plus health and a description for logs.
#[async_trait]
pub trait Metadata: FileRepo + Maintenance + WebhookLog {
    /// A cheap round trip.
    async fn health(&self) -> Result<(), DbError>;
    /// Human description for logs (never the password).
    fn describe(&self) -> String;
}

/// Connects to the configured database and runs its migrations.
pub async fn connect(cfg: &DatabaseConfig, data_dir: &Path) -> Result<Arc<dyn Metadata>, DbError> {
    Ok(match &cfg.backend {
        DatabaseBackend::Sqlite(url) => Arc::new(SqliteMetadata::connect(url.as_deref(), data_dir, cfg).await?),
        DatabaseBackend::Postgres { url, migration_url } => {
            Arc::new(PostgresMetadata::connect(url.expose(), migration_url.as_ref().map(|u| u.expose()), cfg).await?)
        }
    })
}
