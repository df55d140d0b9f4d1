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

use super::{
    DbError, FileRecord, FileRepo, Maintenance, Metadata, NewFile, PendingUpload, Quota, Recorded, Reservation, Usage,
    WebhookLog,
};
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
        content_md5: row.try_get("content_md5")?,
        checksum_sha256: row.try_get("checksum_sha256")?,
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

const COLUMNS: &str = "id, object_key, file_url, user_id, file_name, content_type, size, etag, content_md5, \
     checksum_sha256, COALESCE(upload_timestamp, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) AS upload_timestamp";

/// A user's (`?3`) files but the one being recorded (`?1`), and their reservations valid at `?8`.
const USED_FILES: &str = "((SELECT count(*) FROM b2_files WHERE user_id = ?3 AND deleting_at IS NULL AND object_key <> ?1) \
     + (SELECT count(*) FROM ferry_reservations WHERE user_id = ?3 AND object_key <> ?1 AND expires_at >= ?8))";
/// The bytes of the same.
const USED_BYTES: &str = "((SELECT COALESCE(sum(size), 0) FROM b2_files \
         WHERE user_id = ?3 AND deleting_at IS NULL AND object_key <> ?1) \
     + (SELECT COALESCE(sum(bytes), 0) FROM ferry_reservations \
         WHERE user_id = ?3 AND object_key <> ?1 AND expires_at >= ?8))";

/// A user's usage at `now`, leaving out `except` (the key being recorded or reserved).
async fn usage_of(conn: &mut sqlx::SqliteConnection, user_id: &str, now: i64, except: &str) -> Result<Usage, DbError> {
    let row = sqlx::query(
        "SELECT \
             (SELECT count(*) FROM b2_files WHERE user_id = ?1 AND deleting_at IS NULL AND object_key <> ?3), \
             (SELECT COALESCE(sum(size), 0) FROM b2_files WHERE user_id = ?1 AND deleting_at IS NULL \
                 AND object_key <> ?3), \
             (SELECT count(*) FROM ferry_reservations WHERE user_id = ?1 AND expires_at >= ?2 AND object_key <> ?3), \
             (SELECT COALESCE(sum(bytes), 0) FROM ferry_reservations WHERE user_id = ?1 AND expires_at >= ?2 \
                 AND object_key <> ?3)",
    )
    .bind(user_id)
    .bind(now)
    .bind(except)
    .fetch_one(&mut *conn)
    .await?;
    let count = |i: usize| row.try_get::<i64, _>(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(Usage { files: count(0)?, bytes: count(1)?, reserved_files: count(2)?, reserved_bytes: count(3)? })
}

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
    async fn record(
        &self,
        who: &Caller,
        file: &NewFile,
        quota: &Quota,
        now: i64,
    ) -> Result<(FileRecord, Recorded), DbError> {
        // An immediate transaction holds SQLite's one write lock from its first statement: the
        // quota check, the insert and the reservation's release see and change one state.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (max_bytes, max_files) = quota.as_columns();
        let within_quota = if quota.is_unlimited() {
            String::new()
        } else {
            format!("AND {USED_FILES} + 1 <= ?10 AND {USED_BYTES} + ?6 <= ?9")
        };
        let sql = format!(
            "INSERT INTO b2_files (object_key, file_url, user_id, file_name, content_type, size, etag, \
                 content_md5, checksum_sha256) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                 (SELECT content_md5 FROM ferry_reservations WHERE object_key = ?1 AND user_id = ?3), \
                 (SELECT checksum_sha256 FROM ferry_reservations WHERE object_key = ?1 AND user_id = ?3) \
             WHERE NOT EXISTS (SELECT 1 FROM b2_deleted_keys WHERE object_key = ?1) {within_quota} \
             ON CONFLICT (object_key) DO NOTHING RETURNING {COLUMNS}"
        );
        let mut insert = sqlx::query(&sql)
            .bind(&file.object_key)
            .bind(&file.file_url)
            .bind(&who.user_id)
            .bind(&file.file_name)
            .bind(&file.content_type)
            .bind(size_column(file.size)?)
            .bind(&file.etag);
        if !quota.is_unlimited() {
            insert = insert.bind(now).bind(max_bytes).bind(max_files);
        }
        let inserted = insert.try_map(|row| file_record(&row)).fetch_optional(&mut *tx).await?;
        if let Some(row) = inserted {
            sqlx::query("DELETE FROM ferry_reservations WHERE object_key = ?")
                .bind(&file.object_key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok((row, Recorded::Created));
        }
        let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM b2_files WHERE object_key = ?"))
            .bind(&file.object_key)
            .try_map(|row| file_record(&row))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(existing) = existing {
            if existing.user_id != who.user_id {
                return Err(DbError::KeyTaken);
            }
            return Ok((existing, Recorded::Existing));
        }
        let deleted: Option<i64> = sqlx::query_scalar("SELECT 1 FROM b2_deleted_keys WHERE object_key = ?")
            .bind(&file.object_key)
            .fetch_optional(&mut *tx)
            .await?;
        if deleted.is_some() {
            return Err(DbError::KeyDeleted);
        }
        // Neither recorded nor deleted: the quota refused it.
        let usage = usage_of(&mut tx, &who.user_id, now, &file.object_key).await?;
        Err(match quota.exceeded_by(&usage, file.size) {
            Some(exceeded) => exceeded.into(),
            None => DbError::other(std::io::Error::other("a row was neither recorded, found nor refused")),
        })
    }

    async fn reserve(&self, who: &Caller, r: &Reservation, quota: &Quota, now: i64) -> Result<(), DbError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let usage = usage_of(&mut tx, &who.user_id, now, &r.object_key).await?;
        if let Some(exceeded) = quota.exceeded_by(&usage, r.bytes) {
            return Err(exceeded.into());
        }
        sqlx::query(
            "INSERT INTO ferry_reservations (object_key, user_id, bytes, content_md5, checksum_sha256, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (object_key) DO NOTHING",
        )
        .bind(&r.object_key)
        .bind(&who.user_id)
        .bind(size_column(r.bytes)?)
        .bind(&r.content_md5)
        .bind(&r.checksum_sha256)
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, who: &Caller, key: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM ferry_reservations WHERE object_key = ? AND user_id = ?")
            .bind(key)
            .bind(&who.user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn reserved_bytes(&self, who: &Caller, key: &str) -> Result<Option<u64>, DbError> {
        let bytes: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM ferry_reservations WHERE object_key = ? AND user_id = ?")
                .bind(key)
                .bind(&who.user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(bytes.map(|b| u64::try_from(b).unwrap_or(0)))
    }

    async fn usage(&self, who: &Caller, now: i64) -> Result<Usage, DbError> {
        let mut conn = self.pool.acquire().await?;
        usage_of(&mut conn, &who.user_id, now, "").await
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
        let c =
            sqlx::query("DELETE FROM ferry_reservations WHERE expires_at < ?").bind(before).execute(&self.pool).await?;
        Ok(a.rows_affected() + b.rows_affected() + c.rows_affected())
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
