//! The listing index: every object's key, size, ETag and date in key order, so that a page of
//! a listing reads that page (a B-tree range scan) instead of every metadata file of the bucket.
//!
//! It lives in `<root>/.index.sqlite`, an SQLite database through `sqlx`, which Ferry already
//! links for its own metadata: an ordered key-value store (a `WITHOUT ROWID` table keyed by
//! bucket and key, compared as bytes, the order S3 lists in) with crash-safe transactions and no
//! new dependency. See the README for the measurements behind the choice.
//!
//! The metadata files stay the truth; the index follows them so that an object is listed if
//! and only if it can be read, whatever moment a crash picks. Before a commit or a delete
//! touches a key's metadata file, the key's row is marked *pending*; once the file is in its
//! new state, the row is settled (updated or removed). A listing trusts settled rows and reads
//! the metadata file of a pending one (only keys being written right now, or a crash's
//! leftovers), and opening the index settles every pending row left by a crash.

use std::io;
use std::path::Path;

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::meta::ObjectMeta;

/// What a listing shows of an object.
#[derive(Debug, Clone)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl From<ObjectMeta> for Listed {
    fn from(m: ObjectMeta) -> Self {
        Self { key: m.key, size: m.size, etag: m.etag, last_modified: m.last_modified }
    }
}

/// One row: an object as last settled, or a key being written (`pending`).
pub struct IndexRow {
    pub listed: Listed,
    pub pending: bool,
}

pub struct Index {
    pool: SqlitePool,
}

fn db_error(e: sqlx::Error) -> io::Error {
    io::Error::other(format!("listing index: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_pending ON objects (pending) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS built (bucket TEXT PRIMARY KEY NOT NULL);
";

impl Index {
    /// Opens (creating, owner-only) the index at `path`.
    pub async fn open(path: &Path) -> io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(path)?;
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // A process crash loses nothing committed in WAL mode at NORMAL; the metadata files
            // themselves are not synced per write either.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(connect).await.map_err(db_error)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(db_error)?;
        Ok(Self { pool })
    }

    /// Whether the bucket's rows were built (from its metadata files) once.
    pub async fn is_built(&self, bucket: &str) -> io::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM built WHERE bucket = ?")
            .bind(bucket)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    /// Fills the bucket's rows from its metadata files, in one transaction, and records it.
    pub async fn build(&self, bucket: &str, metas: Vec<ObjectMeta>) -> io::Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for meta in &metas {
            upsert(bucket, meta).execute(&mut *tx).await.map_err(db_error)?;
        }
        sqlx::query("INSERT OR IGNORE INTO built (bucket) VALUES (?)")
            .bind(bucket)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// Marks `key` as about to change: until settled, listings read its metadata file.
    pub async fn mark_pending(&self, bucket: &str, key: &str) -> io::Result<()> {
        sqlx::query(
            "INSERT INTO objects (bucket, key, size, etag, last_modified, pending) VALUES (?, ?, 0, '', 0, 1) \
             ON CONFLICT (bucket, key) DO UPDATE SET pending = 1",
        )
        .bind(bucket)
        .bind(key.as_bytes())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Records what the key's metadata file now says: the object, or nothing.
    pub async fn settle(&self, bucket: &str, key: &str, meta: Option<&ObjectMeta>) -> io::Result<()> {
        match meta {
            Some(meta) => upsert(bucket, meta).execute(&self.pool).await.map(drop),
            None => sqlx::query("DELETE FROM objects WHERE bucket = ? AND key = ?")
                .bind(bucket)
                .bind(key.as_bytes())
                .execute(&self.pool)
                .await
                .map(drop),
        }
        .map_err(db_error)
    }

    /// Every pending row: (bucket, key).
    pub async fn pending(&self) -> io::Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT bucket, key FROM objects WHERE pending = 1")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|r| Ok((r.try_get::<String, _>(0).map_err(db_error)?, key_text(r.try_get(1).map_err(db_error)?)?)))
            .collect()
    }

    /// Up to `limit` rows of `bucket` in key order, from `from` (included or not) to `to`
    /// (excluded; `None`: the end).
    pub async fn rows(
        &self,
        bucket: &str,
        from: &[u8],
        include_from: bool,
        to: Option<&[u8]>,
        limit: usize,
    ) -> io::Result<Vec<IndexRow>> {
        let lower = if include_from { "key >= ?" } else { "key > ?" };
        let upper = if to.is_some() { "AND key < ?" } else { "" };
        let sql = format!(
            "SELECT key, size, etag, last_modified, pending FROM objects \
             WHERE bucket = ? AND {lower} {upper} ORDER BY key LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(bucket).bind(from);
        if let Some(to) = to {
            query = query.bind(to);
        }
        let rows = query.bind(limit as i64).fetch_all(&self.pool).await.map_err(db_error)?;
        rows.into_iter()
            .map(|r| {
                let micros: i64 = r.try_get(3).map_err(db_error)?;
                Ok(IndexRow {
                    listed: Listed {
                        key: key_text(r.try_get(0).map_err(db_error)?)?,
                        size: r.try_get::<i64, _>(1).map_err(db_error)? as u64,
                        etag: r.try_get(2).map_err(db_error)?,
                        last_modified: chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default(),
                    },
                    pending: r.try_get::<i64, _>(4).map_err(db_error)? != 0,
                })
            })
            .collect()
    }
}

fn upsert<'q>(
    bucket: &'q str,
    meta: &'q ObjectMeta,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(
        "INSERT INTO objects (bucket, key, size, etag, last_modified, pending) VALUES (?, ?, ?, ?, ?, 0) \
         ON CONFLICT (bucket, key) DO UPDATE SET size = excluded.size, etag = excluded.etag, \
         last_modified = excluded.last_modified, pending = 0",
    )
    .bind(bucket)
    .bind(meta.key.as_bytes())
    .bind(meta.size as i64)
    .bind(meta.etag.as_str())
    .bind(meta.last_modified.timestamp_micros())
}

fn key_text(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| io::Error::other("listing index: a key is not UTF-8"))
}
