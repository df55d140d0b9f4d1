//! What only Postgres does: row-level security as a non-owner role, TLS with channel binding,
//! and surviving the database going away.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{Backend, fresh_database_on, pg_client, reply, spawn_app_with};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the README's test command"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hides_other_users_rows_from_the_runtime_role() {
    // The owner (the cluster's superuser) migrates; Ferry serves as an ordinary role.
    let probe = spawn_app_with(Backend::Postgres, &[]).await;
    let owner_url = probe.database_url.clone();
    let admin = pg_client(&owner_url).await;
    let role = format!("ferry_app_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'app';
             GRANT SELECT, INSERT, UPDATE, DELETE ON b2_files TO {role};
             GRANT USAGE ON SEQUENCE b2_files_id_seq TO {role};
             GRANT USAGE ON SCHEMA auth TO {role};
             GRANT SELECT, INSERT ON b2_deleted_keys TO {role};
             GRANT SELECT, INSERT, DELETE ON ferry_reservations TO {role};"
        ))
        .await
        .unwrap();
    let (base, db) = owner_url.rsplit_once('/').unwrap();
    let host = base.rsplit_once('@').unwrap().1;
    let runtime_url = format!("postgres://{role}:app@{host}/{db}");
    let app = spawn_app_with(
        Backend::Postgres,
        &[
            ("DATABASE_URL", runtime_url.as_str()),
            ("DATABASE_MIGRATION_URL", owner_url.as_str()),
            ("FERRY_QUOTA_FILES", "1"),
        ],
    )
    .await;
    let alice = app.upload_as("alice", "alice.txt", "text/plain", b"a".to_vec()).await;
    app.upload_as("bob", "bob.txt", "text/plain", b"b".to_vec()).await;
    let listed = reply(app.get_as("bob", "/files").await).await;
    assert_eq!(listed.body["files"].as_array().unwrap().len(), 1);

    // Quotas are counted from the rows each user can see: one file each, and the limit of one
    // file refuses alice's second (her own row counts) without bob's row counting for her.
    let usage = reply(app.get_as("bob", "/usage").await).await;
    assert_eq!((usage.body["files"].as_u64(), usage.body["bytes"].as_u64()), (Some(1), Some(1)));
    let refused = app.presign_as("alice", "second.txt", "text/plain").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "quota-exceeded"), "{}", refused.body);

    let mut runtime = pg_client(&runtime_url).await;
    let tx = runtime.transaction().await.unwrap();
    tx.execute("SELECT set_config('request.jwt.claims', '{\"sub\": \"bob\"}', true)", &[]).await.unwrap();
    let rows = tx.query("SELECT user_id FROM b2_files", &[]).await.unwrap();
    let users: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(users, ["bob"], "no WHERE clause, and still only bob's rows");
    let forged = tx
        .execute("INSERT INTO b2_files (object_key, file_url, user_id) VALUES ('forged-key', 'x', 'alice')", &[])
        .await;
    let err = forged.expect_err("inserting a row for another user is refused");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("row-level security"), "{message}");
    tx.rollback().await.unwrap();

    // Without claims a session sees nothing at all.
    assert!(runtime.query("SELECT 1 FROM b2_files", &[]).await.unwrap().is_empty());
    // Cleanup, as the owner, still sees every row.
    let id = alice["id"].as_i64().unwrap();
    assert!(app.core.db.known_keys(&[alice["objectKey"].as_str().unwrap().to_owned()]).await.unwrap().len() == 1);
    assert_eq!(app.download_as("alice", id).await, b"a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_connects_over_verified_tls_with_channel_binding() {
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}&channel_binding=require",
        env("FERRY_TEST_TLS_POSTGRES_URL"),
        env("FERRY_TEST_TLS_CA")
    );
    let app = spawn_app_with(Backend::Sqlite, &[("DATABASE_URL", url.as_str())]).await;
    let file = app.upload_as("user_123", "tls.txt", "text/plain", b"over TLS".to_vec()).await;
    assert_eq!(app.download_as("user_123", file["id"].as_i64().unwrap()).await, b"over TLS");
    assert!(app.core.db.describe().contains("channel binding Require"), "{}", app.core.db.describe());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verification_refuses_an_unknown_ca_and_a_wrong_host_name() {
    let base = env("FERRY_TEST_TLS_POSTGRES_URL");
    let ca = env("FERRY_TEST_TLS_CA");
    let unknown_ca = format!("{base}?sslmode=verify-full");
    let wrong_host = format!("{}?sslmode=verify-full&sslrootcert={ca}", base.replace("@localhost:", "@127.0.0.1:"));
    let any_host = format!("{}?sslmode=verify-ca&sslrootcert={ca}", base.replace("@localhost:", "@127.0.0.1:"));
    for (url, ok) in [(unknown_ca, false), (wrong_host, false), (any_host, true)] {
        let result = ferry::db::connect(&postgres_config(&url), std::path::Path::new("/nonexistent")).await;
        assert_eq!(result.is_ok(), ok, "{url}: {:?}", result.err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_required_fails_against_a_server_that_cannot_offer_it() {
    // The plain test cluster has no TLS and trusts loopback: no SCRAM-SHA-256-PLUS possible.
    let url = format!("{}?channel_binding=require", env("FERRY_TEST_POSTGRES_URL"));
    let result = ferry::db::connect(&postgres_config(&url), std::path::Path::new("/nonexistent")).await;
    assert!(result.is_err(), "channel_binding=require must not be ignored");
    let url = format!("{}?channel_binding=prefer", env("FERRY_TEST_POSTGRES_URL"));
    let result = ferry::db::connect(&postgres_config(&url), std::path::Path::new("/nonexistent")).await;
    assert!(result.is_ok(), "prefer falls back: {:?}", result.err());
}

fn run(command: &str) {
    let status = std::process::Command::new("sh").arg("-c").arg(command).status().unwrap();
    assert!(status.success(), "{command}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answer_503_while_postgres_is_down_and_recover_without_a_restart() {
    // A database of its own on the cluster it stops, so a rerun on the same cluster starts empty.
    let url = fresh_database_on(&env("FERRY_TEST_FLAKY_POSTGRES_URL")).await;
    let app = spawn_app_with(Backend::Sqlite, &[("DATABASE_URL", url.as_str()), ("FERRY_DB_TIMEOUT", "2")]).await;
    app.upload_as("user_123", "before.txt", "text/plain", b"before".to_vec()).await;
    let presigned = app.presign("during.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"during".to_vec(), "text/plain").await;

    run(&env("FERRY_TEST_FLAKY_STOP"));
    let listed = reply(app.get_as("user_123", "/files").await).await;
    assert_eq!((listed.status, listed.code()), (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"));
    let confirmed = app.confirm(&key).await;
    assert_eq!((confirmed.status, confirmed.code()), (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"));
    assert_eq!(app.get_as("user_123", "/readyz").await.status(), StatusCode::SERVICE_UNAVAILABLE);

    run(&env("FERRY_TEST_FLAKY_START"));
    // Wait for readiness (bounded), then everything works again with the same process.
    let mut ready = false;
    for _ in 0..300 {
        if app.get_as("user_123", "/readyz").await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "Ferry recovers once Postgres is back");
    assert_eq!(app.confirm(&key).await.status, StatusCode::OK, "the client's retry succeeds");
    assert_eq!(app.confirm(&key).await.status, StatusCode::OK);
    let files = reply(app.get_as("user_123", "/files").await).await;
    let names: Vec<&str> =
        files.body["files"].as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    assert_eq!(names, ["during.txt", "before.txt"], "nothing lost, nothing doubled");
}

fn postgres_config(url: &str) -> ferry::config::DatabaseConfig {
    ferry::config::DatabaseConfig::new(ferry::config::DatabaseBackend::Postgres {
        url: ferry::config::Secret::new(url),
        migration_url: None,
    })
}
