//! Postgres (Neon or any other): production metadata.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{DbError, FileRecord, Metadata, NewFile, PoolOptions, Recorded};

/// `id` is the guide's SERIAL (int4): widened so both backends read the same record.
const COLUMNS: &str = "id::int8 AS id, object_key, file_url, user_id, file_name, content_type, size, etag, \
     COALESCE(upload_timestamp, now()) AS upload_timestamp";

pub struct PostgresMetadata {
    pool: PgPool,
    description: String,
}

impl PostgresMetadata {
    pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Self, DbError> {
        let options: PgConnectOptions = url.parse()?;
        let description = format!(
            "Postgres at {}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default)")
        );
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_with(options)
            .await?;
        // sqlx takes an advisory lock: two instances starting at once migrate once.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool, description })
    }
}

#[async_trait]
impl Metadata for PostgresMetadata {
    async fn record(&self, user: &str, file: &NewFile) -> Result<(FileRecord, Recorded), DbError> {
        let inserted: Option<FileRecord> = sqlx::query_as(&format!(
            "INSERT INTO b2_files (object_key, file_url, user_id, file_name, content_type, size, etag) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (object_key) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(&file.object_key)
        .bind(&file.file_url)
        .bind(user)
        .bind(&file.file_name)
        .bind(&file.content_type)
        .bind(file.size)
        .bind(&file.etag)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row, Recorded::Created));
        }
        let existing: FileRecord = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE object_key = $1"
        ))
        .bind(&file.object_key)
        .fetch_one(&self.pool)
        .await?;
        if existing.user_id != user {
            return Err(DbError::KeyTaken);
        }
        Ok((existing, Recorded::Existing))
    }

    async fn list(
        &self,
        user: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<FileRecord>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE user_id = $1 AND deleting_at IS NULL AND id < $2 \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn find_by_key(&self, user: &str, key: &str) -> Result<Option<FileRecord>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE object_key = $1 AND user_id = $2"
        ))
        .bind(key)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn get(&self, user: &str, id: i64) -> Result<Option<FileRecord>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE id = $1 AND user_id = $2 AND deleting_at IS NULL"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn mark_deleting(&self, user: &str, id: i64) -> Result<Option<FileRecord>, DbError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE b2_files SET deleting_at = COALESCE(deleting_at, now()) \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn remove(&self, id: i64) -> Result<(), DbError> {
        sqlx::query("DELETE FROM b2_files WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stuck_deletions(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FileRecord>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM b2_files WHERE deleting_at IS NOT NULL AND deleting_at < $1 ORDER BY id LIMIT $2"
        ))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT object_key FROM b2_files WHERE object_key = ANY($1)")
                .bind(keys)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn health(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
