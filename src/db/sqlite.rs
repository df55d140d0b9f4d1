//! SQLite: Ferry's zero-set-up default, one file in the data directory.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use super::{DbError, FileRecord, FileRepo, Maintenance, Metadata, NewFile, PendingUpload, Recorded, WebhookLog};
use crate::config::DatabaseConfig;
use crate::identity::Caller;

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
                Self::unavailable(e)
            }
            other => Self::other(other),
        }
    }
}

/// A row of `b2_files`, read by column name.
fn file_record(row: &SqliteRow) -> Result<FileRecord, sqlx::Error> {
    Ok(FileRecord {
        id: row.try_get("id")?,
        object_key: row.try_get("object_key")?,
        file_url: row.try_get("file_url")?,
        user_id: row.try_get("user_id")?,
        file_name: row.try_get("file_name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get::<Option<i64>, _>("size")?.and_then(|s| u64::try_from(s).ok()),
        etag: row.try_get("etag")?,
        upload_timestamp: row.try_get("upload_timestamp")?,
    })
}

/// Creates the database file owner-only (0600) if it is missing: it holds every user's file
/// list. SQLite gives its `-wal` and `-shm` files the database file's permissions.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn size_column(size: u64) -> Result<i64, DbError> {
    i64::try_from(size).map_err(|_| DbError::Config(format!("a size of {size} bytes does not fit the size column")))
}

const COLUMNS: &str = "id, object_key, file_url, user_id, file_name, content_type, size, etag, \
     COALESCE(upload_timestamp, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) AS upload_timestamp";

pub struct SqliteMetadata {
    pool: SqlitePool,
    description: String,
}

impl SqliteMetadata {
    /// `url` is a `sqlite://` URL; `None` means `<data_dir>/ferry.db`, created if missing.
    pub async fn connect(url: Option<&str>, data_dir: &Path, cfg: &DatabaseConfig) -> Result<Self, DbError> {
        let (options, description) = match url {
            Some(url) => (SqliteConnectOptions::from_str(url)?, format!("SQLite at {url}")),
            None => {
                std::fs::create_dir_all(data_dir).map_err(DbError::other)?;
                let path = data_dir.join("ferry.db");
                create_owner_only(&path).map_err(DbError::other)?;
                let description = format!("SQLite at {}", path.display());
                (SqliteConnectOptions::new().filename(path).create_if_missing(true), description)
            }
        };
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(cfg.timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(cfg.pool_size)
            .acquire_timeout(cfg.timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| DbError::Migrate(Box::new(e)))?;
        Ok(Self { pool, description })
    }
}

#[async_trait]
impl FileRepo for SqliteMetadata {
    async fn record(&self, who: &Caller, file: &NewFile) -> Result<(FileRecord, Recorded), DbError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO b2_files (object_key, file_url, user_id, file_name, content_type, size, etag) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
             WHERE NOT EXISTS (SELECT 1 FROM b2_deleted_keys WHERE object_key = ?1) \
             ON CONFLICT (object_key) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(&file.object_key)
        .bind(&file.file_url)
        .bind(&who.user_id)
        .bind(&file.file_name)
        .bind(&file.content_type)
        .bind(size_column(file.size)?)
        .bind(&file.etag)
        .try_map(|row| file_record(&row))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, Recorded::Created));
        }
        let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM b2_files WHERE object_key = ?"))
            .bind(&file.object_key)
            .try_map(|row| file_record(&row))
            .fetch_optional(&self.pool)
            .await?;
        // Neither inserted nor there: the key's file was deleted.
        let existing = existing.ok_or(DbError::KeyDeleted)?;
        if existing.user_id != who.user_id {
            return Err(DbError::KeyTaken);
        }
        Ok((existing, Recorded::Existing))
    }

    async fn list(&self, who: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<FileRecord>, DbError> {
        Ok(sqlx::query(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE user_id = ? AND deleting_at IS NULL AND id < ? \
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(&who.user_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .try_map(|row| file_record(&row))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn find_by_key(&self, who: &Caller, key: &str) -> Result<Option<FileRecord>, DbError> {
        Ok(sqlx::query(&format!("SELECT {COLUMNS} FROM b2_files WHERE object_key = ? AND user_id = ?"))
            .bind(key)
            .bind(&who.user_id)
            .try_map(|row| file_record(&row))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn get(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError> {
        Ok(sqlx::query(&format!("SELECT {COLUMNS} FROM b2_files WHERE id = ? AND user_id = ? AND deleting_at IS NULL"))
            .bind(id)
            .bind(&who.user_id)
            .try_map(|row| file_record(&row))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn mark_deleting(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError> {
        let mut tx = self.pool.begin().await?;
        let marked = sqlx::query(&format!(
            "UPDATE b2_files SET deleting_at = COALESCE(deleting_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
             WHERE id = ? AND user_id = ? RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&who.user_id)
        .try_map(|row| file_record(&row))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(record) = &marked {
            sqlx::query("INSERT OR IGNORE INTO b2_deleted_keys (object_key, user_id) VALUES (?, ?)")
                .bind(&record.object_key)
                .bind(&record.user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(marked)
    }

    async fn remove(&self, who: &Caller, id: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM b2_files WHERE id = ? AND user_id = ?")
            .bind(id)
            .bind(&who.user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Maintenance for SqliteMetadata {
    async fn purge(&self, id: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM b2_files WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn stuck_deletions(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<FileRecord>, DbError> {
        Ok(sqlx::query(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE deleting_at IS NOT NULL AND deleting_at < ? ORDER BY id LIMIT ?"
        ))
        .bind(before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .bind(i64::from(limit))
        .try_map(|row| file_record(&row))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError> {
        let mut known = HashSet::new();
        // SQLite has no array type: ask in chunks of bound parameters.
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT object_key FROM b2_files WHERE object_key IN ({marks})");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for key in chunk {
                query = query.bind(key);
            }
            known.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(known)
    }

    async fn prune(&self, before: i64) -> Result<u64, DbError> {
        let a =
            sqlx::query("DELETE FROM b2_pending_uploads WHERE expires_at < ?").bind(before).execute(&self.pool).await?;
        let b =
            sqlx::query("DELETE FROM b2_webhook_events WHERE handled_at < ?").bind(before).execute(&self.pool).await?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool, DbError> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO ferry_leases (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE ferry_leases.expires_at < ?4 OR ferry_leases.holder = excluded.holder \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn prune_deleted_keys(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM b2_deleted_keys WHERE deleted_at < ?")
            .bind(before.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl WebhookLog for SqliteMetadata {
    async fn record_pending(&self, batch: &[PendingUpload]) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for p in batch {
            sqlx::query("INSERT OR IGNORE INTO b2_pending_uploads (object_key, user_id, expires_at) VALUES (?, ?, ?)")
                .bind(&p.object_key)
                .bind(&p.user_id)
                .bind(p.expires_at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn pending_owner(&self, key: &str) -> Result<Option<String>, DbError> {
        Ok(sqlx::query_scalar("SELECT user_id FROM b2_pending_uploads WHERE object_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, DbError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM b2_webhook_events WHERE event_id = ?")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn mark_event(&self, event_id: &str, now: i64) -> Result<(), DbError> {
        sqlx::query("INSERT OR IGNORE INTO b2_webhook_events (event_id, handled_at) VALUES (?, ?)")
            .bind(event_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Metadata for SqliteMetadata {
    async fn health(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
