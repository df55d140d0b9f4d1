//! Behind a connection pooler in transaction mode (Debian's PgBouncer 1.18, which keeps no
//! prepared statements across transactions), as self-hosted set-ups run Postgres.

use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, reply, spawn_app_with};

/// Ferry on a fresh database, reached through PgBouncer.
async fn spawn_behind_pgbouncer(prepared_statements: &str) -> TestApp {
    let port = std::env::var("FERRY_TEST_PGBOUNCER_PORT")
        .expect("FERRY_TEST_PGBOUNCER_PORT is set by the README's test command (it starts PgBouncer)");
    // A first instance creates and migrates the database directly.
    let direct = spawn_app_with(Backend::Postgres, &[]).await;
    let (base, db) = direct.database_url.rsplit_once('/').unwrap();
    let (credentials, _host) = base.rsplit_once('@').unwrap();
    let pooled = format!("{credentials}@127.0.0.1:{port}/{db}");
    spawn_app_with(
        Backend::Postgres,
        &[("DATABASE_URL", pooled.as_str()), ("FERRY_DB_PREPARED_STATEMENTS", prepared_statements)],
    )
    .await
}

/// Eight users upload two files each, then list, download and delete concurrently.
async fn exercise(app: &TestApp) -> Vec<StatusCode> {
    let users: Vec<String> = (0..8).map(|i| format!("pool-user-{i}")).collect();
    let mut statuses = Vec::new();
    for user in &users {
        for n in 0..2 {
            let presigned = app.presign_as(user, &format!("f{n}.txt"), "text/plain").await;
            statuses.push(presigned.status);
            if presigned.status != StatusCode::OK {
                continue;
            }
            app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"pooled".to_vec(), "text/plain").await;
            statuses.push(app.confirm_as(user, presigned.body["objectKey"].as_str().unwrap()).await.status);
        }
    }
    let lists = users.iter().cycle().take(40).map(|user| async move {
        let answer = reply(app.get_as(user, "/files").await).await;
        (answer.status, answer.code().to_owned(), answer.body["files"].as_array().map_or(0, Vec::len))
    });
    for (status, code, files) in futures::future::join_all(lists).await {
        assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "a bare 500 ({code}) behind the pooler");
        if status == StatusCode::OK && statuses.iter().all(|s| *s == StatusCode::OK) {
            assert_eq!(files, 2, "each user sees exactly their own two files");
        }
        statuses.push(status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_works_behind_pgbouncer_with_prepared_statements_off() {
    let app = spawn_behind_pgbouncer("off").await;
    let statuses = exercise(&app).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let files = reply(app.get_as("pool-user-0", "/files").await).await;
    let id = files.body["files"][0]["id"].as_i64().unwrap();
    assert_eq!(app.delete_as("pool-user-0", &format!("/files/{id}")).await.status, StatusCode::OK);
    let ready = app.get_as("pool-user-0", "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_lost_by_the_pooler_answer_503_never_500() {
    let app = spawn_behind_pgbouncer("on").await;
    for status in exercise(&app).await {
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "behind a pooler that loses prepared statements, answers are 200 or 503: {status}"
        );
    }
}
