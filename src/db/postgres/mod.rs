//! Postgres (Neon or any other): production metadata, with row-level security.
//!
//! Every per-user statement runs in a transaction that first publishes the caller with
//! `set_config('request.jwt.claims', ..., true)`: transaction-local, so it works behind Neon's
//! `-pooler` (PgBouncer in transaction mode) and never leaks to the next user of a connection.
//! The two statements made most, the common confirm's insert and the list page, are instead one
//! statement each that takes the claims as its first parameter and publishes them itself before
//! its query runs (migration 0008's function; [`PostgresMetadata::list_statement`]): the same
//! guarantee without the `BEGIN`/`set_config`/`COMMIT` around it
//! ([`PostgresMetadata::as_user_in_one`]).
//! Cleanup, which must see every row, runs as the owning role with `ferry.maintenance` set.

pub(super) mod migrate;
pub mod tls;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    DbError, FileRecord, FileRepo, Maintenance, Metadata, NewFile, PendingUpload, Quota, Recorded, Reservation, Usage,
    WebhookLog,
};
use crate::config::DatabaseConfig;
use crate::identity::Caller;

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE classes 08 (connection), 53 (resources) and 57 (shutting down, or cancelled by
        // statement_timeout) are the server's way of saying "not now"; no code means no answer.
        let transient = match e.code() {
            // "prepared statement does not exist" / "already exists": the statement was made on
            // another server connection, which is what a pooler in transaction mode does.
            Some(code) if *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT => {
                tracing::error!(
                    code = code.code(),
                    "a prepared statement was lost between server connections: Ferry is behind a connection pooler \
                     in transaction mode that does not keep prepared statements (PgBouncer before 1.21, or without \
                     max_prepared_statements). Set FERRY_DB_PREPARED_STATEMENTS=off"
                );
                true
            }
            Some(code) => ["08", "53", "57"].iter().any(|class| code.code().starts_with(class)),
            None => e.is_closed() || caused_by_io(&e),
        };
        if transient { Self::unavailable(e) } else { Self::other(e) }
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
            deadpool_postgres::PoolError::Backend(e)
            | deadpool_postgres::PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)) => e.into(),
            other => Self::unavailable(other),
        }
    }
}

/// A statement parameter with its Postgres type. Statements are sent with their types, so that
/// with `FERRY_DB_PREPARED_STATEMENTS=off` they can go as unnamed statements in one round trip
/// (what a pooler in transaction mode without prepared-statement support needs).
type Param<'a> = (&'a (dyn ToSql + Sync), Type);

fn values<'a>(params: &[Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

/// The runtime role's sessions use their prepared statements' generic plans (with prepared
/// statements on). Ferry's per-user statements are index lookups by user, key or id whose best
/// plan does not depend on the values; left to choose, Postgres kept planning the list page
/// again on every call (its generic plan, costed for an unknown `LIMIT`, looked dearer than a
/// custom one): a third of Postgres's time under the list benchmark (README, Benchmarks). The
/// per-user transactions also set it for themselves ([`SET_CALLER`]), which is what holds behind
/// a pooler in transaction mode, where this session setting stays on whichever server connection
/// ran it; one-statement queries ([`PostgresMetadata::as_user_in_one`]) have no transaction to
/// set it in and rely on it (or on `ALTER ROLE ... SET plan_cache_mode`, README). Without a
/// separate owner (`DATABASE_MIGRATION_URL`) the owner's statements share these sessions:
/// maintenance sets `auto` back for its transactions ([`SET_MAINTENANCE`]); the bookkeeping
/// statements outside a transaction (leases, the webhook log, its periodic prune) keep generic
/// plans, key lookups but for the prune's range, which may then scan its table.
const GENERIC_PLANS: &str = "SET plan_cache_mode = force_generic_plan";

/// How a pool is sized and how long it waits.
struct PoolOptions {
    max_connections: u32,
    timeout: Duration,
    /// Start each connection with [`GENERIC_PLANS`].
    generic_plans: bool,
}

/// `id` is the guide's SERIAL (int4): widened so both backends read the same record.
const COLUMNS: &str = "id::int8 AS id, object_key, file_url, user_id, file_name, content_type, size, etag, \
     content_md5, checksum_sha256, COALESCE(upload_timestamp, now()) AS upload_timestamp";

pub struct PostgresMetadata {
    /// The runtime role: subject to row-level security.
    pool: Pool,
    /// The owning role (`DATABASE_MIGRATION_URL`, else the same as `pool`): migrations, cleanup.
    owner: Pool,
    statement_timeout_ms: String,
    /// `FERRY_DB_STATEMENT_TIMEOUT` (zero: none), also bounding a statement's preparation.
    statement_timeout: Duration,
    /// How `pool` and `owner` connect, for cancelling a statement on the server.
    tls: MakeRustlsConnect,
    owner_tls: MakeRustlsConnect,
    /// Named statements prepared once per connection (`FERRY_DB_PREPARED_STATEMENTS`, on by
    /// default); off: unnamed statements, for poolers in transaction mode without support for them.
    prepared_statements: bool,
    description: String,
}

/// A row whose first columns are [`COLUMNS`] (every file query selects them first, in that
/// order; migration 0008's function returns them the same way). Read by position: by name,
/// each read searched the row's columns again (a measurable part of a 50-file list).
fn from_row(row: &Row) -> FileRecord {
    debug_assert!(
        row.columns().iter().map(|c| c.name()).take(11).eq([
            "id",
            "object_key",
            "file_url",
            "user_id",
            "file_name",
            "content_type",
            "size",
            "etag",
            "content_md5",
            "checksum_sha256",
            "upload_timestamp"
        ]),
        "a file query must select COLUMNS first"
    );
    FileRecord {
        id: row.get(0),
        object_key: row.get(1),
        file_url: row.get(2),
        user_id: row.get(3),
        file_name: row.get(4),
        content_type: row.get(5),
        size: row.get::<_, Option<i64>>(6).and_then(|s| u64::try_from(s).ok()),
        etag: row.get(7),
        content_md5: row.get(8),
        checksum_sha256: row.get(9),
        upload_timestamp: row.get(10),
    }
}

fn build_pool(url: &str, opts: &PoolOptions) -> Result<(Pool, String, MakeRustlsConnect), DbError> {
    let mut target = tls::parse(url).map_err(|e| DbError::Config(e.to_string()))?;
    target.config.connect_timeout(opts.timeout);
    let tls = MakeRustlsConnect::new(tls::client_config(&target).map_err(|e| DbError::Config(e.to_string()))?);
    let host = target
        .config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let description = format!(
        "Postgres at {host}:{}/{} (sslmode {:?}, channel binding {:?})",
        target.config.get_ports().first().copied().unwrap_or(5432),
        target.config.get_dbname().unwrap_or("(default)"),
        target.config.get_ssl_mode(),
        target.config.get_channel_binding(),
    );
    let manager =
        Manager::from_config(target.config, tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let mut builder = Pool::builder(manager);
    if opts.generic_plans {
        let timeout = opts.timeout;
        builder = builder.post_create(Hook::async_fn(move |client: &mut ClientWrapper, _| {
            Box::pin(async move {
                // Deadpool bounds the connection, not this hook: bound it here.
                match tokio::time::timeout(timeout, client.batch_execute(GENERIC_PLANS)).await {
                    Ok(done) => done.map_err(HookError::Backend),
                    Err(_) => Err(HookError::Message("setting plan_cache_mode timed out".into())),
                }
            })
        }));
    }
    let pool = builder
        .max_size(opts.max_connections as usize)
        .wait_timeout(Some(opts.timeout))
        .create_timeout(Some(opts.timeout))
        .recycle_timeout(Some(opts.timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))?;
    Ok((pool, description, tls))
}

impl PostgresMetadata {
    pub async fn connect(url: &str, migration_url: Option<&str>, cfg: &DatabaseConfig) -> Result<Self, DbError> {
        // Unnamed statements (prepared statements off) are planned at every call whatever the
        // setting, and a session `SET` would only pin or stick to a pooler's server connection.
        let runtime = PoolOptions {
            max_connections: cfg.pool_size,
            timeout: cfg.timeout,
            generic_plans: cfg.prepared_statements,
        };
        let (pool, description, tls) = build_pool(url, &runtime)?;
        let (owner, owner_tls) = match migration_url {
            Some(owner_url) => {
                let (owner, _, owner_tls) = build_pool(
                    owner_url,
                    &PoolOptions { max_connections: 2, timeout: cfg.timeout, generic_plans: false },
                )?;
                (owner, owner_tls)
            }
            None => (pool.clone(), tls.clone()),
        };
        let mut client = owner.get().await?;
        migrate::run(&mut client).await.map_err(|e| match DbError::from(e) {
            unavailable @ DbError::Unavailable(_) => unavailable,
            DbError::Other(e) => DbError::Migrate(e),
            other => other,
        })?;
        drop(client);
        let db = Self {
            pool,
            owner,
            statement_timeout_ms: cfg.statement_timeout.as_millis().to_string(),
            statement_timeout: cfg.statement_timeout,
            tls,
            owner_tls,
            prepared_statements: cfg.prepared_statements,
            description,
        };
        db.warn_if_rls_is_bypassed().await?;
        Ok(db)
    }

    /// Row-level security protects nothing for a superuser, a BYPASSRLS role, or (without
    /// FORCE) the table's owner: say so loudly.
    async fn warn_if_rls_is_bypassed(&self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        let row = client
            .query_typed_one(
                "SELECT r.rolsuper, r.rolbypassrls, \
                        COALESCE((SELECT tableowner = current_user FROM pg_tables \
                                  WHERE tablename = 'b2_files' AND schemaname = current_schema()), false) \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        let (superuser, bypass, owner): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
        // What the runtime role needs, as the README's two-role set-up grants it.
        let missing: Vec<String> = client
            .query_typed(
                "SELECT t || ' (' || p || ')' FROM (VALUES \
                     ('b2_files', 'SELECT'), ('b2_files', 'INSERT'), ('b2_files', 'UPDATE'), ('b2_files', 'DELETE'), \
                     ('b2_deleted_keys', 'SELECT'), ('b2_deleted_keys', 'INSERT'), \
                     ('ferry_reservations', 'SELECT'), ('ferry_reservations', 'INSERT'), \
                     ('ferry_reservations', 'DELETE')) AS needed(t, p) \
                 WHERE NOT has_table_privilege(current_user, t, p)",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !missing.is_empty() {
            tracing::error!(
                missing = %missing.join(", "),
                "the database role lacks privileges Ferry needs: grant them as the README's two-role set-up shows \
                 (GRANT SELECT, INSERT, UPDATE, DELETE ON b2_files ...; GRANT SELECT, INSERT ON b2_deleted_keys ...; \
                 GRANT SELECT, INSERT, DELETE ON ferry_reservations ...)"
            );
        }
        if superuser || bypass {
            tracing::warn!(
                superuser,
                bypassrls = bypass,
                "the database role bypasses row-level security: use a less privileged runtime role \
                 (see the README's two-role set-up)"
            );
        } else if owner {
            tracing::warn!(
                "the runtime role owns b2_files: row-level security is forced, but an owner can turn it off; \
                 prefer a separate runtime role and DATABASE_MIGRATION_URL for the owner"
            );
        }
        Ok(())
    }

    /// The caller's usage at `now`, leaving out `except` (a key being recorded or reserved).
    async fn usage_except(&self, who: &Caller, now: i64, except: &str) -> Result<Usage, DbError> {
        let sql = "SELECT \
                 (SELECT count(*) FROM b2_files WHERE user_id = $1 AND deleting_at IS NULL AND object_key <> $3), \
                 (SELECT COALESCE(sum(size), 0)::int8 FROM b2_files \
                     WHERE user_id = $1 AND deleting_at IS NULL AND object_key <> $3), \
                 (SELECT count(*) FROM ferry_reservations WHERE user_id = $1 AND expires_at >= $2 AND object_key <> $3), \
                 (SELECT COALESCE(sum(bytes), 0)::int8 FROM ferry_reservations \
                     WHERE user_id = $1 AND expires_at >= $2 AND object_key <> $3)";
        let rows =
            self.as_user(who, sql, &[(&who.user_id, Type::TEXT), (&now, Type::INT8), (&except, Type::TEXT)]).await?;
        let row = rows.first().ok_or_else(|| DbError::other(std::io::Error::other("no usage row")))?;
        let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
        Ok(Usage { files: count(0), bytes: count(1), reserved_files: count(2), reserved_bytes: count(3) })
    }

    /// Runs one statement as `who`, in its own transaction, pipelined: `BEGIN`, the caller's
    /// claims, the statement and `COMMIT` leave together and cost one round trip. If the
    /// statement fails, the `COMMIT` of the aborted transaction rolls it back.
    async fn as_user(&self, who: &Caller, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let claims = serde_json::Value::Object(who.claims.clone()).to_string();
        let client = self.pool.get().await?;
        let setup: [Param<'_>; 2] = [(&claims, Type::TEXT), (&self.statement_timeout_ms, Type::TEXT)];
        self.pipelined(&client, &self.tls, SET_CALLER, &setup, sql, params).await
    }

    /// Runs a one-statement query as `who` (migration 0008's function, the list page): the
    /// caller's claims travel as `$1` and are published inside the statement, before its query
    /// runs, so no `BEGIN`, `set_config` or `COMMIT` is needed. With no transaction-local
    /// `statement_timeout` before it, the statement is bounded from here: past
    /// `FERRY_DB_STATEMENT_TIMEOUT` it is cancelled on the server.
    async fn as_user_in_one(&self, who: &Caller, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let claims = serde_json::Value::Object(who.claims.clone()).to_string();
        let mut all: Vec<Param<'_>> = Vec::with_capacity(params.len() + 1);
        all.push((&claims, Type::TEXT));
        all.extend(params.iter().cloned());
        let client = self.pool.get().await?;
        self.bounded(&client, &self.tls, self.run(&client, sql, &all)).await
    }

    /// `work` on `client`, cancelled on the server if it runs past `FERRY_DB_STATEMENT_TIMEOUT`.
    async fn bounded<T>(
        &self,
        client: &deadpool_postgres::Object,
        tls: &MakeRustlsConnect,
        work: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        if self.statement_timeout.is_zero() {
            return work.await;
        }
        match tokio::time::timeout(self.statement_timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                let _ = client.cancel_token().cancel_query(tls.clone()).await;
                Err(DbError::unavailable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "a statement took longer than FERRY_DB_STATEMENT_TIMEOUT",
                )))
            }
        }
    }

    /// [`Self::as_user`], holding the caller's quota lock for the transaction: statements that
    /// check the caller's usage and then write run one at a time for each user. The statement
    /// starts after the lock is granted, so (read committed) it sees every write of the holder
    /// before it.
    async fn as_user_serialized(&self, who: &Caller, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let claims = serde_json::Value::Object(who.claims.clone()).to_string();
        let client = self.pool.get().await?;
        let setup: [Param<'_>; 3] =
            [(&claims, Type::TEXT), (&self.statement_timeout_ms, Type::TEXT), (&who.user_id, Type::TEXT)];
        // The wait for the lock happens in the statement that sets `statement_timeout`, which
        // therefore does not bound it: bounded (and cancelled on the server) from here.
        self.bounded(&client, &self.tls, self.pipelined(&client, &self.tls, SET_CALLER_LOCKED, &setup, sql, params))
            .await
    }

    /// Runs one statement as the owning role, able to see every row (cleanup only).
    async fn as_maintenance(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let client = self.owner.get().await?;
        let setup = [(&self.statement_timeout_ms as &(dyn ToSql + Sync), Type::TEXT)];
        self.pipelined(&client, &self.owner_tls, SET_MAINTENANCE, &setup, sql, params).await
    }

    async fn pipelined(
        &self,
        client: &deadpool_postgres::Object,
        tls: &MakeRustlsConnect,
        setup_sql: &str,
        setup_params: &[Param<'_>],
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, DbError> {
        // Each future sends its messages when first polled, in the order `join!` polls them:
        // `BEGIN`, the claims, the statement, `COMMIT`. So every statement must be ready to send
        // before the transaction starts (prepared first), or the statements would run outside it,
        // without the claims (row-level security would then refuse them: fail closed).
        let (begin, set, rows, commit) = if self.prepared_statements {
            // Preparing (the first time on a connection) runs before the transaction whose
            // `statement_timeout` bounds the statement, and parsing waits on the same table
            // locks: bound it here too, and cancel the wait on the server so the connection is
            // usable again.
            let (setup, statement) = self
                .bounded(client, tls, async {
                    let (setup, statement) =
                        tokio::join!(self.prepare(client, setup_sql, setup_params), self.prepare(client, sql, params));
                    Ok((setup?, statement?))
                })
                .await?;
            let (setup_values, statement_values) = (values(setup_params), values(params));
            tokio::join!(
                client.batch_execute(BEGIN),
                client.query(&setup, &setup_values),
                client.query(&statement, &statement_values),
                client.batch_execute("COMMIT"),
            )
        } else {
            tokio::join!(
                client.batch_execute(BEGIN),
                client.query_typed(setup_sql, setup_params),
                client.query_typed(sql, params),
                client.batch_execute("COMMIT"),
            )
        };
        begin?;
        set?;
        let rows = rows?;
        commit?;
        Ok(rows)
    }

    async fn prepare(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<tokio_postgres::Statement, DbError> {
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        Ok(client.prepare_typed_cached(sql, &types).await?)
    }

    /// Runs one statement on its own: prepared once per connection and cached, or, with
    /// prepared statements off, as an unnamed statement (parse, bind and execute in one batch).
    async fn run(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, DbError> {
        if !self.prepared_statements {
            return Ok(client.query_typed(sql, params).await?);
        }
        let statement = self.prepare(client, sql, params).await?;
        Ok(client.query(&statement, &values(params)).await?)
    }

    /// Runs one statement as the owning role, outside any transaction (bookkeeping tables).
    async fn as_owner(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        let client = self.owner.get().await?;
        self.run(&client, sql, params).await
    }
}

/// Read committed whatever the server's default: each statement's snapshot is taken when it
/// starts, so a statement after the quota lock sees every write of the lock's previous holder.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
/// The settings every per-user transaction starts with (one text for both statements below, so
/// a setting added here is in force for every caller), then `$extra`.
macro_rules! set_caller {
    ($($extra:literal)?) => {
        concat!(
            "SELECT set_config('request.jwt.claims', $1, true), set_config('statement_timeout', $2, true), \
             set_config('plan_cache_mode', 'force_generic_plan', true)"
            $(, $extra)?
        )
    };
}
/// Publishes the caller for row-level security, for this transaction only, and has the statement
/// after it use its prepared statement's generic plan ([`GENERIC_PLANS`] says why; set here too
/// for a pooler in transaction mode, where the session setting may be on another server
/// connection).
const SET_CALLER: &str = set_caller!();
/// [`SET_CALLER`], then waits for the caller's quota lock (released at commit or rollback).
const SET_CALLER_LOCKED: &str = set_caller!(", pg_advisory_xact_lock(hashtextextended('ferry.quota/' || $3, 0))");
/// A user's (`$3`) files but `$1` (the key being recorded or reserved), and their reservations
/// valid at `$8`: count and bytes.
const USED: &str = "SELECT \
         (SELECT count(*) FROM b2_files WHERE user_id = $3 AND deleting_at IS NULL AND object_key <> $1) \
       + (SELECT count(*) FROM ferry_reservations WHERE user_id = $3 AND object_key <> $1 AND expires_at >= $8) \
         AS files, \
         (SELECT COALESCE(sum(size), 0) FROM b2_files WHERE user_id = $3 AND deleting_at IS NULL AND object_key <> $1) \
       + (SELECT COALESCE(sum(bytes), 0) FROM ferry_reservations \
             WHERE user_id = $3 AND object_key <> $1 AND expires_at >= $8) AS bytes";
/// Lets the owning role's maintenance policy apply, for this transaction only.
const SET_MAINTENANCE: &str = "SELECT set_config('ferry.maintenance', 'on', true), \
     set_config('statement_timeout', $1, true), set_config('plan_cache_mode', 'auto', true)";

impl PostgresMetadata {
    /// A list page as one statement: publishes the claims `$1`, then reads the caller's (`$2`)
    /// files before the id `$3`, newest first, at most `$4`.
    ///
    /// The page is a `LATERAL` subquery that depends on the row of the materialized `caller`
    /// CTE, so Postgres can only read it after that row exists, that is after `set_config` has
    /// run: row-level security then checks the rows against these claims, set for this
    /// statement's own transaction only. Were the claims somehow not in force, the page would
    /// still be filtered by `user_id = $2` as well as by the policy: the caller's rows or
    /// nothing, never another user's (fail closed; the Postgres tests check both the order and
    /// the refusal). One statement instead of the pipelined `BEGIN`/`set_config`/`SELECT`/`COMMIT`
    /// (four answers from Postgres): 13-34% more pages a second side by side (README, Benchmarks).
    ///
    /// Ordered by `id::int8`, which only the (user_id, id::int8) index provides (migration 0009
    /// says why the primary key must never serve it). Public for the tests that check its plan
    /// and its claims.
    #[doc(hidden)]
    pub fn list_statement() -> String {
        format!(
            "WITH caller AS MATERIALIZED (SELECT set_config('request.jwt.claims', $1, true) AS claims) \
             SELECT page.* FROM caller CROSS JOIN LATERAL (\
                 SELECT {COLUMNS} FROM b2_files WHERE user_id = $2 AND deleting_at IS NULL \
                 AND b2_files.id::int8 < $3::int8 AND caller.claims IS NOT NULL \
                 ORDER BY b2_files.id::int8 DESC LIMIT $4) page"
        )
    }
}

#[async_trait]
impl FileRepo for PostgresMetadata {
    async fn record(
        &self,
        who: &Caller,
        file: &NewFile,
        quota: &Quota,
        now: i64,
    ) -> Result<(FileRecord, Recorded), DbError> {
        // The common case in one statement: insert (with the digests of the key's reservation,
        // which it releases), or find the row a repeated confirm made. With a quota, the insert
        // happens only if it fits, under the caller's lock. A key without a reservation and no
        // quota: only the insert (a repeated confirm finds its row below).
        let lean = quota.is_unlimited() && !file.reserved;
        let (used, within_quota) = if quota.is_unlimited() {
            (String::new(), "")
        } else {
            (
                format!("used AS ({USED}), "),
                "AND (SELECT files FROM used) + 1 <= $10 AND (SELECT bytes FROM used) + $6 <= $9",
            )
        };
        let sql = if lean {
            // Migration 0008: the insert alone, in one statement carrying the claims.
            "SELECT * FROM ferry_record_file($1, $2, $3, $4, $5, $6, $7, $8)".to_owned()
        } else {
            format!(
                "WITH {used}inserted AS ( \
                 INSERT INTO b2_files (object_key, file_url, user_id, file_name, content_type, size, etag, \
                     content_md5, checksum_sha256) \
                 SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::int8, $7::text, \
                     (SELECT content_md5 FROM ferry_reservations WHERE object_key = $1), \
                     (SELECT checksum_sha256 FROM ferry_reservations WHERE object_key = $1) \
                 WHERE NOT EXISTS (SELECT 1 FROM b2_deleted_keys WHERE object_key = $1) {within_quota} \
                 ON CONFLICT (object_key) DO NOTHING RETURNING {COLUMNS}), \
             released AS (DELETE FROM ferry_reservations WHERE object_key = $1 AND EXISTS (SELECT 1 FROM inserted)) \
             SELECT *, true AS created FROM inserted \
             UNION ALL \
             SELECT {COLUMNS}, false FROM b2_files WHERE object_key = $1 AND NOT EXISTS (SELECT 1 FROM inserted)"
            )
        };
        let size = i64::try_from(file.size)
            .map_err(|_| DbError::Config(format!("a size of {} bytes does not fit the size column", file.size)))?;
        let (max_bytes, max_files) = quota.as_columns();
        let params: [Param<'_>; 10] = [
            (&file.object_key, Type::TEXT),
            (&file.file_url, Type::TEXT),
            (&who.user_id, Type::TEXT),
            (&file.file_name, Type::TEXT),
            (&file.content_type, Type::TEXT),
            (&size, Type::INT8),
            (&file.etag, Type::TEXT),
            (&now, Type::INT8),
            (&max_bytes, Type::INT8),
            (&max_files, Type::INT8),
        ];
        let mut rows = if lean {
            self.as_user_in_one(who, &sql, &params[..7]).await?
        } else if quota.is_unlimited() {
            self.as_user(who, &sql, &params[..7]).await?
        } else {
            self.as_user_serialized(who, &sql, &params).await?
        };
        if rows.is_empty() {
            // A repeated confirm (the lean insert does not read the existing row), or a
            // concurrent confirm committed the row after this statement's snapshot was taken:
            // look again with a fresh one.
            rows = self
                .as_user(
                    who,
                    &format!("SELECT {COLUMNS}, false AS created FROM b2_files WHERE object_key = $1"),
                    &[(&file.object_key, Type::TEXT)],
                )
                .await?;
        }
        let Some(row) = rows.first() else {
            // Neither inserted nor visible: the caller deleted this key's file, the quota refused
            // it, or (row-level security hides another user's row) the key is someone else's.
            let deleted = self
                .as_user(who, "SELECT 1 FROM b2_deleted_keys WHERE object_key = $1", &[(&file.object_key, Type::TEXT)])
                .await?;
            if !deleted.is_empty() {
                return Err(DbError::KeyDeleted);
            }
            if !quota.is_unlimited() {
                let usage = self.usage_except(who, now, &file.object_key).await?;
                if let Some(exceeded) = quota.exceeded_by(&usage, file.size) {
                    return Err(exceeded.into());
                }
            }
            return Err(DbError::KeyTaken);
        };
        let record = from_row(row);
        if record.user_id != who.user_id {
            return Err(DbError::KeyTaken);
        }
        let created: bool = row.get("created");
        Ok((record, if created { Recorded::Created } else { Recorded::Existing }))
    }

    async fn reserve(&self, who: &Caller, r: &Reservation, quota: &Quota, now: i64) -> Result<(), DbError> {
        let bytes = i64::try_from(r.bytes).unwrap_or(i64::MAX);
        let (max_bytes, max_files) = quota.as_columns();
        // One statement after the caller's lock: the usage it reads is the usage it adds to.
        let sql = format!(
            "WITH used AS ({USED}), \
             reserved AS ( \
                 INSERT INTO ferry_reservations (object_key, user_id, bytes, content_md5, checksum_sha256, expires_at) \
                 SELECT $1::text, $3::text, $2::int8, $4::text, $5::text, $6::int8 FROM used \
                 WHERE used.files + 1 <= $7 AND used.bytes + $2 <= $9 \
                 ON CONFLICT (object_key) DO NOTHING RETURNING 1) \
             SELECT files, bytes::int8 AS bytes, EXISTS (SELECT 1 FROM reserved) AS reserved FROM used"
        );
        let params: [Param<'_>; 9] = [
            (&r.object_key, Type::TEXT),
            (&bytes, Type::INT8),
            (&who.user_id, Type::TEXT),
            (&r.content_md5, Type::TEXT),
            (&r.checksum_sha256, Type::TEXT),
            (&r.expires_at, Type::INT8),
            (&max_files, Type::INT8),
            (&now, Type::INT8),
            (&max_bytes, Type::INT8),
        ];
        let rows = if quota.is_unlimited() {
            self.as_user(who, &sql, &params).await?
        } else {
            self.as_user_serialized(who, &sql, &params).await?
        };
        let row = rows.first().ok_or_else(|| DbError::other(std::io::Error::other("no usage row")))?;
        if row.get::<_, bool>("reserved") {
            return Ok(());
        }
        let usage = Usage {
            files: u64::try_from(row.get::<_, i64>("files")).unwrap_or(0),
            bytes: u64::try_from(row.get::<_, i64>("bytes")).unwrap_or(0),
            ..Usage::default()
        };
        // Not inserted and within the limits: the key was reserved already (a repeated call).
        quota.exceeded_by(&usage, r.bytes).map_or(Ok(()), |exceeded| Err(exceeded.into()))
    }

    async fn release(&self, who: &Caller, key: &str) -> Result<(), DbError> {
        let sql = "DELETE FROM ferry_reservations WHERE object_key = $1 AND user_id = $2";
        self.as_user(who, sql, &[(&key, Type::TEXT), (&who.user_id, Type::TEXT)]).await?;
        Ok(())
    }

    async fn reserved_bytes(&self, who: &Caller, key: &str) -> Result<Option<u64>, DbError> {
        let sql = "SELECT bytes FROM ferry_reservations WHERE object_key = $1 AND user_id = $2";
        let rows = self.as_user(who, sql, &[(&key, Type::TEXT), (&who.user_id, Type::TEXT)]).await?;
        Ok(rows.first().map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }

    async fn usage(&self, who: &Caller, now: i64) -> Result<Usage, DbError> {
        self.usage_except(who, now, "").await
    }

    async fn list(&self, who: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<FileRecord>, DbError> {
        let sql = Self::list_statement();
        let (before, limit) = (before.unwrap_or(i64::MAX), i64::from(limit));
        let params: [Param<'_>; 3] = [(&who.user_id, Type::TEXT), (&before, Type::INT8), (&limit, Type::INT8)];
        let rows = self.as_user_in_one(who, &sql, &params).await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn find_by_key(&self, who: &Caller, key: &str) -> Result<Option<FileRecord>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM b2_files WHERE object_key = $1 AND user_id = $2");
        Ok(self.as_user(who, &sql, &[(&key, Type::TEXT), (&who.user_id, Type::TEXT)]).await?.first().map(from_row))
    }

    async fn get(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM b2_files WHERE b2_files.id = $1::int8 AND user_id = $2 AND deleting_at IS NULL"
        );
        Ok(self.as_user(who, &sql, &[(&id, Type::INT8), (&who.user_id, Type::TEXT)]).await?.first().map(from_row))
    }

    async fn mark_deleting(&self, who: &Caller, id: i64) -> Result<Option<FileRecord>, DbError> {
        // One statement: the mark and the key's tombstone commit together.
        let sql = format!(
            "WITH marked AS ( \
                 UPDATE b2_files SET deleting_at = COALESCE(deleting_at, now()) \
                 WHERE b2_files.id = $1::int8 AND user_id = $2 RETURNING {COLUMNS}), \
             remembered AS ( \
                 INSERT INTO b2_deleted_keys (object_key, user_id) SELECT object_key, user_id FROM marked \
                 ON CONFLICT (object_key) DO NOTHING) \
             SELECT * FROM marked"
        );
        Ok(self.as_user(who, &sql, &[(&id, Type::INT8), (&who.user_id, Type::TEXT)]).await?.first().map(from_row))
    }

    async fn remove(&self, who: &Caller, id: i64) -> Result<(), DbError> {
        let sql = "DELETE FROM b2_files WHERE id = $1::int8 AND user_id = $2";
        self.as_user(who, sql, &[(&id, Type::INT8), (&who.user_id, Type::TEXT)]).await?;
        Ok(())
    }
}

#[async_trait]
impl Maintenance for PostgresMetadata {
    async fn stuck_deletions(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<FileRecord>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM b2_files WHERE deleting_at IS NOT NULL AND deleting_at < $1 \
             ORDER BY b2_files.id LIMIT $2"
        );
        let limit = i64::from(limit);
        let rows = self.as_maintenance(&sql, &[(&before, Type::TIMESTAMPTZ), (&limit, Type::INT8)]).await?;
        Ok(rows.iter().map(from_row).collect())
    }

    async fn purge(&self, id: i64) -> Result<(), DbError> {
        self.as_maintenance("DELETE FROM b2_files WHERE id = $1::int8", &[(&id, Type::INT8)]).await?;
        Ok(())
    }

    async fn known_keys(&self, keys: &[String]) -> Result<HashSet<String>, DbError> {
        let sql = "SELECT object_key FROM b2_files WHERE object_key = ANY($1)";
        let rows = self.as_maintenance(sql, &[(&keys, Type::TEXT_ARRAY)]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn prune(&self, before: i64) -> Result<u64, DbError> {
        let count = |table: &str, column: &str| {
            format!("WITH gone AS (DELETE FROM {table} WHERE {column} < $1 RETURNING 1) SELECT count(*) FROM gone")
        };
        let mut removed = 0;
        for sql in [count("b2_pending_uploads", "expires_at"), count("b2_webhook_events", "handled_at")] {
            let rows = self.as_owner(&sql, &[(&before, Type::INT8)]).await?;
            removed += rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64;
        }
        // Reservations are under row-level security: the maintenance policy sees every user's.
        let rows = self.as_maintenance(&count("ferry_reservations", "expires_at"), &[(&before, Type::INT8)]).await?;
        removed += rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64;
        Ok(removed)
    }

    async fn prune_deleted_keys(&self, before: DateTime<Utc>) -> Result<u64, DbError> {
        let rows = self
            .as_maintenance(
                "WITH gone AS (DELETE FROM b2_deleted_keys WHERE deleted_at < $1 RETURNING 1) SELECT count(*) FROM gone",
                &[(&before, Type::TIMESTAMPTZ)],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool, DbError> {
        let sql = "INSERT INTO ferry_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE ferry_leases.expires_at < $4 OR ferry_leases.holder = excluded.holder \
             RETURNING holder";
        let params: [Param<'_>; 4] =
            [(&name, Type::TEXT), (&holder, Type::TEXT), (&until, Type::INT8), (&now, Type::INT8)];
        Ok(!self.as_owner(sql, &params).await?.is_empty())
    }
}

#[async_trait]
impl WebhookLog for PostgresMetadata {
    async fn record_pending(&self, batch: &[PendingUpload]) -> Result<(), DbError> {
        let keys: Vec<&str> = batch.iter().map(|p| p.object_key.as_str()).collect();
        let users: Vec<&str> = batch.iter().map(|p| p.user_id.as_str()).collect();
        let expiries: Vec<i64> = batch.iter().map(|p| p.expires_at).collect();
        // One statement for the whole batch.
        self.as_owner(
            "INSERT INTO b2_pending_uploads (object_key, user_id, expires_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT DO NOTHING",
            &[(&keys, Type::TEXT_ARRAY), (&users, Type::TEXT_ARRAY), (&expiries, Type::INT8_ARRAY)],
        )
        .await?;
        Ok(())
    }

    async fn pending_owner(&self, key: &str) -> Result<Option<String>, DbError> {
        let sql = "SELECT user_id FROM b2_pending_uploads WHERE object_key = $1";
        Ok(self.as_owner(sql, &[(&key, Type::TEXT)]).await?.first().map(|r| r.get(0)))
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, DbError> {
        let sql = "SELECT 1 FROM b2_webhook_events WHERE event_id = $1";
        Ok(!self.as_owner(sql, &[(&event_id, Type::TEXT)]).await?.is_empty())
    }

    async fn mark_event(&self, event_id: &str, now: i64) -> Result<(), DbError> {
        let sql = "INSERT INTO b2_webhook_events (event_id, handled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
        self.as_owner(sql, &[(&event_id, Type::TEXT), (&now, Type::INT8)]).await?;
        Ok(())
    }
}

#[async_trait]
impl Metadata for PostgresMetadata {
    async fn health(&self) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        self.run(&client, "SELECT 1", &[]).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
