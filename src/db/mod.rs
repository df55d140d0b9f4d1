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

use crate::config::DatabaseConfig;

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

/// Whether a confirm created the row or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Created,
    Existing,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or timed out: worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The key is recorded for another user.
    #[error("object key already recorded for another user")]
    KeyTaken,
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => Self::Unavailable(e),
            other => Self::Other(other),
        }
    }
}

#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    /// Records a verified upload for `user`; repeating it returns the same row.
    async fn record(&self, user: &str, file: &NewFile) -> Result<(FileRecord, Recorded), DbError>;
    /// The user's files, newest first, with ids below `before` when given.
    async fn list(
        &self,
        user: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<FileRecord>, DbError>;
    /// The user's row for an object key, if recorded.
    async fn find_by_key(&self, user: &str, key: &str) -> Result<Option<FileRecord>, DbError>;
    /// One of the user's files (not one being deleted).
    async fn get(&self, user: &str, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Marks one of the user's files as being deleted and returns it.
    async fn mark_deleting(&self, user: &str, id: i64) -> Result<Option<FileRecord>, DbError>;
    /// Removes a row whose object is gone.
    async fn remove(&self, id: i64) -> Result<(), DbError>;
    /// Rows marked for deletion before `before`, for cleanup (all users).
    async fn stuck_deletions(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FileRecord>, DbError>;
    /// Which of `keys` have a row (all users).
    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError>;
    /// A cheap round trip.
    async fn health(&self) -> Result<(), DbError>;
    /// Human description for logs (never the password).
    fn describe(&self) -> String;
}

/// Pool and timeout settings shared by the backends.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Connects to the configured database and runs its migrations.
pub async fn connect(
    cfg: &DatabaseConfig,
    data_dir: &Path,
    pool: &PoolOptions,
) -> Result<Arc<dyn Metadata>, DbError> {
    Ok(match cfg {
        DatabaseConfig::Sqlite(url) => {
            Arc::new(SqliteMetadata::connect(url.as_deref(), data_dir, pool).await?)
        }
        DatabaseConfig::Postgres(url) => {
            Arc::new(PostgresMetadata::connect(url.expose(), pool).await?)
        }
    })
}

/// Runs migrations only (for `ferry migrate`).
pub async fn migrate(cfg: &DatabaseConfig, data_dir: &Path) -> Result<String, DbError> {
    let db = connect(
        cfg,
        data_dir,
        &PoolOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await?;
    Ok(db.describe())
}
