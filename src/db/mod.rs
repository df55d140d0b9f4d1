//! File metadata behind a small trait, with one implementation per database.
//!
//! The URL scheme picks the backend; each backend embeds its own migrations and runs them at
//! start-up. Queries are runtime-checked `query_as(..).bind(..)`, kept inside the backends.

mod postgres;
mod sqlite;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use postgres::PostgresMetadata;
pub use sqlite::SqliteMetadata;

use crate::auth::Caller;
use crate::config::{DatabaseConfig, Secret};

/// A row of `b2_files` as Ferry reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FileRecord {
    pub id: i64,
    pub object_key: String,
    pub file_url: Option<String>,
    pub user_id: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub etag: Option<String>,
    pub upload_timestamp: DateTime<Utc>,
}

/// A verified upload to record: every fact comes from the server or the store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub object_key: String,
    pub file_url: String,
    pub file_name: String,
    pub content_type: Option<String>,
    pub size: i64,
    pub etag: Option<String>,
}

/// An upload URL that was handed out: whose it is and until when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub object_key: String,
    pub user_id: String,
    pub expires_at: i64,
}

/// Whether a confirm created the row or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Created,
    Existing,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached, is restarting, or timed out: worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The key is recorded for another user.
    #[error("object key already recorded for another user")]
    KeyTaken,
    /// The connection settings cannot work (bad URL, unreadable root certificate...).
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Other(#[source] BoxError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                Self::Unavailable(Box::new(e))
            }
            other => Self::Other(Box::new(other)),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE classes 08 (connection), 53 (resources) and 57 (shutting down, or cancelled by
        // statement_timeout) are the server's way of saying "not now"; no code means no answer.
        let transient = match e.code() {
            Some(code) => ["08", "53", "57"].iter().any(|class| code.code().starts_with(class)),
            None => e.is_closed() || caused_by_io(&e),
        };
        if transient { Self::Unavailable(Box::new(e)) } else { Self::Other(Box::new(e)) }
    }
}

fn caused_by_io(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = e.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() || cause.is::<rustls::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    /// Records a verified upload for the caller; repeating it returns the same row.
    async fn record(&self, who: &Caller, file: &NewFile) -> Result<(FileRecord, Recorded), DbError>;
    /// The caller's files, newest first, with ids below `before` when given.
    async fn list(&self, who: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<FileRecord>, DbError>;
    /// The caller's row for an object key, if recorded.
    async fn find_by_key(&self, who: &Caller, key: &str) -> Result<Option<FileRecord>, DbError>;
    /// One of the caller's files (not one being deleted).
    async fn get(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Marks one of the caller's files as being deleted and returns it.
    async fn mark_deleting(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Removes one of the caller's rows whose object is gone.
    async fn remove(&self, who: &Caller, id: i64) -> Result<(), DbError>;

    // Maintenance: these see every user's rows (cleanup only).

    /// Rows marked for deletion before `before`.
    async fn stuck_deletions(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<FileRecord>, DbError>;
    /// Removes a row whose object is gone, whoever owns it.
    async fn purge(&self, id: i64) -> Result<(), DbError>;
    /// Which of `keys` have a row.
    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError>;
    /// Remembers who pending uploads belong to (for the B2 webhook).
    async fn record_pending(&self, batch: &[PendingUpload]) -> Result<(), DbError>;
    /// The user a pending upload was issued to.
    async fn pending_owner(&self, key: &str) -> Result<Option<String>, DbError>;
    /// Whether a webhook event was already handled.
    async fn event_seen(&self, event_id: &str) -> Result<bool, DbError>;
    /// Remembers a handled webhook event.
    async fn mark_event(&self, event_id: &str, now: i64) -> Result<(), DbError>;
    /// Forgets pending uploads that expired before `before` and events handled before it.
    async fn prune(&self, before: i64) -> Result<u64, DbError>;
    /// A cheap round trip.
    async fn health(&self) -> Result<(), DbError>;
    /// Human description for logs (never the password).
    fn describe(&self) -> String;
}

/// Pool and timeout settings shared by the backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// Longest wait for a connection (and to open one) before answering 503.
    pub acquire_timeout: Duration,
    /// Longest a statement may run (Postgres).
    pub statement_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: postgres::DEFAULT_STATEMENT_TIMEOUT,
        }
    }
}

/// Connects to the configured database and runs its migrations.
pub async fn connect(cfg: &DatabaseConfig, data_dir: &Path, pool: &PoolOptions) -> Result<Arc<dyn Metadata>, DbError> {
    Ok(match cfg {
        DatabaseConfig::Sqlite(url) => Arc::new(SqliteMetadata::connect(url.as_deref(), data_dir, pool).await?),
        DatabaseConfig::Postgres { url, migration_url } => {
            Arc::new(PostgresMetadata::connect(url.expose(), migration_url.as_ref().map(Secret::expose), pool).await?)
        }
    })
}

/// Runs migrations only (for `ferry migrate`).
pub async fn migrate(cfg: &DatabaseConfig, data_dir: &Path) -> Result<String, DbError> {
    let db = connect(cfg, data_dir, &PoolOptions { max_connections: 1, ..Default::default() }).await?;
    Ok(db.describe())
}
