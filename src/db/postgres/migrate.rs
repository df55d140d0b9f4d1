//! Embedded Postgres migrations: applied in order, once, under an advisory lock, so several
//! Ferry instances starting at once migrate exactly once.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

/// (version, name, SQL), in order. Never edit an applied migration: add a new one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "b2_files", include_str!("../../../migrations/postgres/0001_b2_files.sql")),
    (2, "file_facts", include_str!("../../../migrations/postgres/0002_file_facts.sql")),
    (3, "row_level_security", include_str!("../../../migrations/postgres/0003_row_level_security.sql")),
    (4, "webhooks", include_str!("../../../migrations/postgres/0004_webhooks.sql")),
    (5, "deleted_keys", include_str!("../../../migrations/postgres/0005_deleted_keys.sql")),
    (6, "leases", include_str!("../../../migrations/postgres/0006_leases.sql")),
    (7, "quotas_and_checksums", include_str!("../../../migrations/postgres/0007_quotas_and_checksums.sql")),
    (8, "one_statement", include_str!("../../../migrations/postgres/0008_one_statement.sql")),
    (9, "list_index", include_str!("../../../migrations/postgres/0009_list_index.sql")),
];

/// How many migrations this build knows.
pub fn known() -> usize {
    MIGRATIONS.len()
}

/// An arbitrary constant naming Ferry's migration lock.
const LOCK_ID: i64 = 0x6665_7272_795f_6d67; // "ferry_mg"

/// Applies the migrations not applied yet; returns how many ran.
pub async fn run(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Unnamed statements throughout: they work behind any connection pooler.
    tx.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&LOCK_ID, Type::INT8)]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ferry_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> =
        tx.query_typed("SELECT version FROM ferry_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.query_typed(
            "INSERT INTO ferry_migrations (version, name) VALUES ($1, $2)",
            &[(version, Type::INT4), (name, Type::TEXT)],
        )
        .await?;
        tracing::info!(version, name, "migration applied");
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}
