//! What `ferry doctor` asks of a database, without changing it: can Ferry reach it, over what,
//! are the migrations current, and is the runtime role subject to row-level security.

use std::path::Path;

use super::DbError;
use crate::config::{DatabaseBackend, DatabaseConfig};

/// Facts about the configured database.
#[derive(Debug, Clone, Default)]
pub struct DbFacts {
    /// Human description (never the password).
    pub describe: String,
    /// Postgres only: the session is encrypted, with this protocol.
    pub tls: Option<String>,
    /// Postgres only: the URL requires channel binding (a connection that succeeded did bind).
    pub channel_binding_required: bool,
    pub applied_migrations: usize,
    pub known_migrations: usize,
    /// Postgres only: the role can bypass row-level security (superuser or BYPASSRLS).
    pub bypasses_rls: bool,
    /// Postgres only: the role owns `b2_files` (RLS is forced, but an owner can turn it off).
    pub owns_tables: bool,
}

/// Connects as the runtime role (`DATABASE_URL`) and reads the facts; runs no migration.
pub async fn inspect(cfg: &DatabaseConfig, data_dir: &Path) -> Result<DbFacts, DbError> {
    match &cfg.backend {
        DatabaseBackend::Postgres { url, .. } => postgres(url.expose(), cfg).await,
        DatabaseBackend::Sqlite(url) => sqlite(url.as_deref(), data_dir).await,
    }
}

async fn postgres(url: &str, cfg: &DatabaseConfig) -> Result<DbFacts, DbError> {
    let mut target = super::postgres::tls::parse(url).map_err(|e| DbError::Config(e.to_string()))?;
    target.config.connect_timeout(cfg.timeout);
    let channel_binding_required =
        matches!(target.config.get_channel_binding(), tokio_postgres::config::ChannelBinding::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
        super::postgres::tls::client_config(&target).map_err(|e| DbError::Config(e.to_string()))?,
    );
    let (client, connection) = target.config.connect(tls).await?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                    (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                    r.rolsuper OR r.rolbypassrls, \
                    COALESCE((SELECT pg_get_userbyid(relowner) = current_user FROM pg_class \
                              WHERE oid = to_regclass('b2_files')), false), \
                    (SELECT count(*) FROM pg_class WHERE oid = to_regclass('ferry_migrations')) > 0 \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (ssl, version, bypasses_rls, owns_tables, has_table): (Option<bool>, Option<String>, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let applied = if has_table {
        client.query_one("SELECT count(*) FROM ferry_migrations", &[]).await?.get::<_, i64>(0) as usize
    } else {
        0
    };
    task.abort();
    let host = target.config.get_hosts().first().map(|h| format!("{h:?}")).unwrap_or_default();
    Ok(DbFacts {
        describe: format!("Postgres at {host}"),
        tls: ssl.unwrap_or(false).then(|| version.unwrap_or_default()),
        channel_binding_required,
        applied_migrations: applied,
        known_migrations: super::postgres::migrate::known(),
        bypasses_rls,
        owns_tables,
    })
}

async fn sqlite(url: Option<&str>, data_dir: &Path) -> Result<DbFacts, DbError> {
    use std::str::FromStr as _;
    let (options, describe) = match url {
        Some(url) => (sqlx::sqlite::SqliteConnectOptions::from_str(url)?, format!("SQLite at {url}")),
        None => {
            let path = data_dir.join("ferry.db");
            let describe = format!("SQLite at {}", path.display());
            (sqlx::sqlite::SqliteConnectOptions::new().filename(path), describe)
        }
    };
    // Read-only, never created: a missing file is reported, not made.
    let options = options.read_only(true).create_if_missing(false);
    let mut conn = sqlx::ConnectOptions::connect(&options).await?;
    let applied: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations') \
         THEN (SELECT count(*) FROM _sqlx_migrations WHERE success) ELSE 0 END",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(DbFacts {
        describe,
        applied_migrations: applied as usize,
        known_migrations: sqlx::migrate!("migrations/sqlite").migrations.len(),
        ..DbFacts::default()
    })
}
