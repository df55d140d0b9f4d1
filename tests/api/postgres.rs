//! What only Postgres does: row-level security as a non-owner role, TLS with channel binding,
//! and surviving the database going away.

use std::time::Duration;

use reqwest::StatusCode;
use tokio_postgres::types::Type;

use crate::helpers::{Backend, fresh_database_on, pg_client, reply, spawn_app_with};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the README's test command"))
}

/// A migrated database and an ordinary role with the README's two-role grants on it:
/// (the owner's URL, the runtime role's URL).
async fn runtime_role() -> (String, String) {
    // The owner (the cluster's superuser) migrates; Ferry serves as an ordinary role.
    let probe = spawn_app_with(Backend::Postgres, &[]).await;
    let owner_url = probe.database_url.clone();
    let role = format!("ferry_app_{}", uuid::Uuid::new_v4().simple());
    pg_client(&owner_url)
        .await
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
    (owner_url.clone(), format!("postgres://{role}:app@{host}/{db}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_hides_other_users_rows_from_the_runtime_role() {
    let (owner_url, runtime_url) = runtime_role().await;
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
async fn a_list_page_is_read_from_the_callers_rows_when_another_user_owns_every_newer_one() {
    let (owner_url, runtime_url) = runtime_role().await;
    let app = spawn_app_with(
        Backend::Postgres,
        &[("DATABASE_URL", runtime_url.as_str()), ("DATABASE_MIGRATION_URL", owner_url.as_str())],
    )
    .await;
    // Half the table is one user's older files, the other half another user's newer ones: the
    // shape in which Postgres scanned the primary key backwards through all the newer rows.
    pg_client(&owner_url)
        .await
        .batch_execute(
            "INSERT INTO b2_files (object_key, file_url, user_id) \
                 SELECT 'older-' || g, 'u', 'older' FROM generate_series(1, 20000) g;
             INSERT INTO b2_files (object_key, file_url, user_id) \
                 SELECT 'newer-' || g, 'u', 'newer' FROM generate_series(1, 20000) g;
             ANALYZE b2_files;",
        )
        .await
        .unwrap();
    let sql = ferry::db::PostgresMetadata::list_statement();
    let mut runtime = pg_client(&runtime_url).await;
    for mode in ["force_generic_plan", "force_custom_plan"] {
        let tx = runtime.transaction().await.unwrap();
        tx.execute("SELECT set_config('plan_cache_mode', $1, true)", &[&mode]).await.unwrap();
        tx.batch_execute(&format!("PREPARE page (text, text, int8, int8) AS {sql}")).await.unwrap();
        let plan = tx
            .query_one(
                "EXPLAIN (FORMAT JSON) EXECUTE page('{\"sub\": \"older\"}', 'older', 9223372036854775807, 51)",
                &[],
            )
            .await;
        let plan: serde_json::Value = plan.unwrap().get(0);
        // The page is the inner side of a nested loop whose outer side is the claims' row: it is
        // read only after `set_config` has run.
        let top = &plan[0]["Plan"];
        let outer = top["Plans"].as_array().unwrap().iter().find(|p| p["Parent Relationship"] == "Outer");
        let shape = (top["Node Type"].as_str(), outer.and_then(|p| p["CTE Name"].as_str()));
        assert_eq!(shape, (Some("Nested Loop"), Some("caller")), "{mode}: {plan}");
        let plan = plan.to_string();
        assert!(plan.contains("b2_files_user_newest_id8") && !plan.contains("b2_files_pkey"), "{mode}: {plan}");
        tx.rollback().await.unwrap();
        runtime.batch_execute("DEALLOCATE page").await.unwrap();
    }
    let listed = reply(app.get_as("older", "/files?limit=50").await).await;
    let files = listed.body["files"].as_array().unwrap();
    assert_eq!(files.len(), 50);
    assert!(files.iter().all(|f| f["objectKey"].as_str().unwrap().starts_with("older-")), "{}", listed.body);
}

/// The list page is one statement that publishes its own claims (no transaction around it):
/// row-level security must check its rows against those claims, never against whatever the
/// session held before, and the claims must not outlive the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_statement_reads_under_its_own_claims_and_leaves_none_behind() {
    let (owner_url, runtime_url) = runtime_role().await;
    pg_client(&owner_url)
        .await
        .batch_execute(
            "INSERT INTO b2_files (object_key, file_url, user_id) SELECT 'alice-' || g, 'u', 'alice' FROM generate_series(1, 3) g;
             INSERT INTO b2_files (object_key, file_url, user_id) SELECT 'bob-' || g, 'u', 'bob' FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
    let runtime = pg_client(&runtime_url).await;
    // Another user's claims, set for the whole session: had the policy been checked before the
    // statement published its own, it would have required bob while the page asks for alice.
    runtime.batch_execute("SET request.jwt.claims = '{\"sub\": \"bob\"}'").await.unwrap();
    let statement = runtime
        .prepare_typed(
            &ferry::db::PostgresMetadata::list_statement(),
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
        )
        .await
        .unwrap();
    let page = |claims: &'static str, user: &'static str| {
        let (runtime, statement) = (&runtime, &statement);
        async move {
            let rows = runtime.query(statement, &[&claims, &user, &i64::MAX, &50_i64]).await.unwrap();
            rows.iter().map(|r| r.get::<_, String>("object_key")).collect::<Vec<_>>()
        }
    };
    for mode in ["force_generic_plan", "force_custom_plan"] {
        runtime.batch_execute(&format!("SET plan_cache_mode = {mode}")).await.unwrap();
        assert_eq!(page("{\"sub\": \"alice\"}", "alice").await, ["alice-3", "alice-2", "alice-1"], "{mode}");
        // The claims decide, not the user asked for: bob's claims read none of alice's rows,
        // and no claims read nothing.
        assert!(page("{\"sub\": \"bob\"}", "alice").await.is_empty(), "{mode}");
        assert!(page("", "alice").await.is_empty(), "{mode}");
        // The statement's claims were its own transaction's: the session's are as they were.
        let claims: String =
            runtime.query_one("SELECT current_setting('request.jwt.claims')", &[]).await.unwrap().get(0);
        assert_eq!(claims, "{\"sub\": \"bob\"}", "{mode}");
    }
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
    // The server's view: Ferry's sessions (the pool keeps them open) came in over TLS. With
    // `channel_binding=require` enforced (the next test shows a server that cannot offer it is
    // refused), a TLS session that authenticated with SCRAM is a channel-bound one.
    let server = tls_client(&env("FERRY_TEST_TLS_POSTGRES_URL"), &env("FERRY_TEST_TLS_CA")).await;
    let sessions = server
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.usename = current_user AND a.datname = current_database() AND s.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let tls: Vec<bool> = sessions.iter().map(|r| r.get(0)).collect();
    assert!(!tls.is_empty() && tls.iter().all(|&ssl| ssl), "Ferry's sessions as the server sees them: {tls:?}");
}

/// A connection of the test's own to the TLS cluster, trusting its CA.
async fn tls_client(url: &str, ca: &str) -> tokio_postgres::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let (client, connection) = tokio_postgres::connect(&format!("{url}?sslmode=require"), tls).await.unwrap();
    tokio::spawn(connection);
    client
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_starting_together_on_a_fresh_database_migrate_once() {
    let url = fresh_database_on(&env("FERRY_TEST_POSTGRES_URL")).await;
    let vars = [("DATABASE_URL", url.as_str())];
    let apps = futures::future::join_all((0..4).map(|_| spawn_app_with(Backend::Postgres, &vars))).await;
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    let row = pg_client(&url)
        .await
        .query_one("SELECT count(*), count(DISTINCT version) FROM ferry_migrations", &[])
        .await
        .unwrap();
    let (rows, versions): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((rows, versions), (migrations as i64, migrations as i64), "each migration applied exactly once");
    // They share the schema: a file one uploads, another lists.
    let file = apps[0].upload_as("user_123", "shared.txt", "text/plain", b"shared".to_vec()).await;
    let listed = reply(apps[3].get_as("user_123", "/files").await).await;
    assert_eq!(listed.body["files"][0]["id"], file["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_confirms_see_only_the_claims_they_carry_and_leave_nothing_behind() {
    // Migration 0008's function publishes the claims inside the statement: prove that it keeps
    // row-level security fail-closed for an ordinary role.
    let (owner_url, runtime_url) = runtime_role().await;
    let admin = pg_client(&owner_url).await;
    // No quota and no digests: confirms take the one-statement path.
    let app = spawn_app_with(
        Backend::Postgres,
        &[("DATABASE_URL", runtime_url.as_str()), ("DATABASE_MIGRATION_URL", owner_url.as_str())],
    )
    .await;
    let alice = app.upload_as("alice", "alice.txt", "text/plain", b"a".to_vec()).await;
    app.upload_as("bob", "bob.txt", "text/plain", b"b".to_vec()).await;
    let again = app.confirm_as("alice", alice["objectKey"].as_str().unwrap()).await;
    assert_eq!(again.body["file"]["id"], alice["id"], "a repeated confirm answers with the same row");
    let listed = reply(app.get_as("bob", "/files").await).await;
    let names: Vec<&str> =
        listed.body["files"].as_array().unwrap().iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    assert_eq!(names, ["bob.txt"]);

    let runtime = pg_client(&runtime_url).await;
    let bob = "{\"sub\": \"bob\"}";
    // Bob's claims cannot write a row for alice, nor read hers by asking for them.
    let forged = runtime
        .query("SELECT * FROM ferry_record_file($1, 'forged-key', 'x', 'alice', 'f', 'text/plain', 1, NULL)", &[&bob])
        .await;
    let err = forged.expect_err("a row for another user is refused");
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(message.contains("row-level security"), "{message}");
    // Bob's own claims record his own row, visible to him alone.
    let own = runtime
        .query("SELECT * FROM ferry_record_file($1, 'bobs-key', 'x', 'bob', 'f', 'text/plain', 1, NULL)", &[&bob])
        .await
        .unwrap();
    assert_eq!((own.len(), own[0].get::<_, String>("user_id")), (1, "bob".to_owned()));
    // No claims, no row.
    for none in ["", "{}"] {
        let refused = runtime
            .query(
                "SELECT * FROM ferry_record_file($1, 'nobodys-key', 'x', 'bob', 'f', 'text/plain', 1, NULL)",
                &[&none],
            )
            .await;
        assert!(refused.is_err(), "claims {none:?} write nothing");
    }
    // The claims ended with each statement: the next statement on the same connection sees nothing.
    assert!(runtime.query("SELECT 1 FROM b2_files", &[]).await.unwrap().is_empty());
    let setting: Option<String> =
        runtime.query_one("SELECT current_setting('request.jwt.claims', true)", &[]).await.unwrap().get(0);
    assert!(setting.unwrap_or_default().is_empty(), "no claims outlive their statement");
    for key in ["forged-key", "nobodys-key"] {
        assert!(admin.query("SELECT 1 FROM b2_files WHERE object_key = $1", &[&key]).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_ferry_db_statement_timeout_answers_503_and_a_longer_limit_waits() {
    let quick = spawn_app_with(Backend::Postgres, &[("FERRY_DB_STATEMENT_TIMEOUT", "1")]).await;
    let url = quick.database_url.clone();
    let patient = spawn_app_with(
        Backend::Postgres,
        &[("DATABASE_URL", url.as_str()), ("FERRY_DB_STATEMENT_TIMEOUT", "120"), ("FERRY_DB_TIMEOUT", "120")],
    )
    .await;
    quick.upload_as("user_123", "a.txt", "text/plain", b"a".to_vec()).await;

    // Another session holds a lock every read of b2_files waits for.
    let mut admin = pg_client(&url).await;
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE b2_files IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let waiting = tokio::spawn({
        let (http, list) = (patient.http.clone(), patient.url("/files"));
        async move { reply(http.get(list).header("x-user-id", "user_123").send().await.unwrap()).await }
    });
    let cut = reply(quick.get_as("user_123", "/files").await).await;
    assert_eq!((cut.status, cut.code()), (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"), "{}", cut.body);
    lock.rollback().await.unwrap();
    // The instance allowed 120 s waited for the lock instead, and answers once it is gone.
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.body);
    assert_eq!(waited.body["files"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_warns_when_the_runtime_role_bypasses_row_level_security() {
    let owner_url = fresh_database_on(&env("FERRY_TEST_POSTGRES_URL")).await;
    let migrate = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        let data = tempfile::tempdir().unwrap();
        command.arg("migrate").current_dir(data.path()).env_clear().env("FERRY_DATA_DIR", data.path());
        for (k, v) in vars {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    const WARNING: &str = "the database role bypasses row-level security";
    // The cluster's superuser as the runtime role: warned about.
    let log = migrate(&[("DATABASE_URL", owner_url.as_str())]);
    assert!(log.contains(WARNING) && log.contains("WARN"), "{log}");
    // An ordinary role with the README's grants, the superuser owning the schema: no warning.
    let role = format!("ferry_app_{}", uuid::Uuid::new_v4().simple());
    pg_client(&owner_url)
        .await
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
    let runtime_url = format!("postgres://{role}:app@{}/{db}", base.rsplit_once('@').unwrap().1);
    let log = migrate(&[("DATABASE_URL", runtime_url.as_str()), ("DATABASE_MIGRATION_URL", owner_url.as_str())]);
    assert!(!log.contains(WARNING), "{log}");
    // The same role made BYPASSRLS is warned about again.
    pg_client(&owner_url).await.batch_execute(&format!("ALTER ROLE {role} BYPASSRLS")).await.unwrap();
    let log = migrate(&[("DATABASE_URL", runtime_url.as_str()), ("DATABASE_MIGRATION_URL", owner_url.as_str())]);
    assert!(log.contains(WARNING), "{log}");
}

/// A man in the middle: terminates Postgres TLS with its own certificate (one the client is
/// told to trust) and opens its own TLS session to the real server, piping bytes between them.
/// Without channel binding SCRAM cannot tell; with it the client binds to the proxy's
/// certificate and the server to its own, so authentication fails.
async fn tls_terminating_proxy(server_port: u16, ca: &str, dir: &std::path::Path) -> (u16, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let (cert, key) = (dir.join("proxy.pem"), dir.join("proxy.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = CertificateDer::pem_file_iter(&cert).unwrap().map(Result::unwrap).collect();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, PrivateKeyDer::from_pem_file(&key).unwrap())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];
        while let Ok((mut downstream, _)) = listener.accept().await {
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                downstream.read_exact(&mut request).await?;
                assert_eq!(request, SSL_REQUEST, "the client asks for TLS first");
                downstream.write_all(b"S").await?;
                let mut downstream = acceptor.accept(downstream).await?;
                let mut upstream = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await?;
                upstream.write_all(&SSL_REQUEST).await?;
                let mut answer = [0u8; 1];
                upstream.read_exact(&mut answer).await?;
                assert_eq!(&answer, b"S", "the server speaks TLS");
                let name = ServerName::try_from("localhost").unwrap();
                let mut upstream = connector.connect(name, upstream).await?;
                tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await?;
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (port, cert.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_refuses_a_tls_man_in_the_middle_that_a_plain_scram_login_lets_through() {
    let base = env("FERRY_TEST_TLS_POSTGRES_URL");
    let server_port: u16 = base.rsplit_once(':').unwrap().1.split('/').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, proxy_cert) = tls_terminating_proxy(server_port, &env("FERRY_TEST_TLS_CA"), dir.path()).await;
    let through_proxy = base.replace(&format!("@localhost:{server_port}/"), &format!("@localhost:{port}/"));
    let url = |binding: &str| {
        format!("{through_proxy}?sslmode=verify-full&sslrootcert={proxy_cert}&channel_binding={binding}")
    };
    // Without binding the proxy is invisible: the password login succeeds through it...
    let unbound = ferry::db::connect(&postgres_config(&url("disable")), std::path::Path::new("/nonexistent")).await;
    assert!(unbound.is_ok(), "the proxy passes a plain SCRAM login: {:?}", unbound.err());
    // ... and with `channel_binding=require` (Neon's URLs) the same login is refused.
    let bound = ferry::db::connect(&postgres_config(&url("require")), std::path::Path::new("/nonexistent")).await;
    let refused = format!("{:?}", bound.err().expect("channel binding must detect the man in the middle"));
    // The server's own verdict, not the client giving up.
    assert!(refused.contains("SCRAM channel binding check failed"), "{refused}");
}
