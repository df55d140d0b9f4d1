//! Per-user quotas: reserved at presign, checked again at confirm, atomic per user, freed by
//! deletes and by the end of a confirm window.

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::S3Action;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, random_bytes, reply, spawn_app_with};

async fn usage(app: &TestApp, user: &str) -> Value {
    let usage = reply(app.get_as(user, "/usage").await).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.body);
    usage.body
}

async fn presign_sized(app: &TestApp, user: &str, name: &str, size: u64) -> crate::helpers::Reply {
    let body = json!({ "fileName": name, "contentType": "text/plain", "size": size });
    app.post_json_as(user, "/presign-b2-upload", &body).await
}

/// Presigns `bytes` with their size declared, PUTs them and confirms them.
async fn upload_sized(app: &TestApp, user: &str, name: &str, bytes: Vec<u8>) {
    let presigned = presign_sized(app, user, name, bytes.len() as u64).await;
    assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
    assert_eq!(app.put(presigned.body["presignedUrl"].as_str().unwrap(), bytes, "text/plain").await, StatusCode::OK);
    let confirmed = app.confirm_as(user, presigned.body["objectKey"].as_str().unwrap()).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
}

/// Starts a multipart upload declaring 1 byte and sends `bytes` as its one part, through a part
/// URL that signs no length (Ferry's own sign the declared length under a byte quota: this is
/// a client writing to the bucket by other means, or through Uppy's routes, whose starts
/// declare no size); returns the completion's body.
async fn understated(app: &TestApp, user: &str, name: &str, bytes: Vec<u8>) -> Value {
    let body = json!({ "fileName": name, "contentType": "text/plain", "size": 1 });
    let start = app.post_json_as(user, "/multipart/start", &body).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let ids = json!({ "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"] });
    let (bucket, creds) = app.store_bucket();
    let (key, upload_id) = (start.body["objectKey"].as_str().unwrap(), start.body["uploadId"].as_str().unwrap());
    let url = bucket.upload_part(Some(&creds), key, 1, upload_id).sign(Duration::from_secs(60));
    let response = app.http.put(url).body(bytes).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut done = ids;
    done["parts"] = json!([{ "partNumber": 1, "etag": response.headers()["etag"].to_str().unwrap() }]);
    let completed = app.post_json_as(user, "/multipart/complete", &done).await;
    json!({ "status": completed.status.as_u16(), "body": completed.body, "key": start.body["objectKey"] })
}

async fn usage_reports_files_bytes_reservations_and_limits(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "1000"), ("FERRY_QUOTA_FILES", "5")]).await;
    upload_sized(&app, "user_123", "a.txt", vec![b'a'; 300]).await;
    let pending = presign_sized(&app, "user_123", "b.txt", 200).await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.body);

    let body = usage(&app, "user_123").await;
    assert_eq!(body["success"], true);
    assert_eq!((body["files"].as_u64(), body["bytes"].as_u64()), (Some(1), Some(300)));
    assert_eq!(body["reserved"], json!({ "files": 1, "bytes": 200 }));
    assert_eq!(body["limits"], json!({ "files": 5, "bytes": 1000 }));
    // Another user's usage is their own.
    assert_eq!(usage(&app, "someone_else").await["files"], 0);

    // Without limits, usage is still reported, limits are null and nothing is reserved.
    let open = spawn_app_with(backend, &[]).await;
    open.upload_as("user_123", "a.txt", "text/plain", vec![b'a'; 7]).await;
    let body = usage(&open, "user_123").await;
    assert_eq!((body["files"].as_u64(), body["bytes"].as_u64()), (Some(1), Some(7)));
    assert_eq!(body["limits"], json!({ "files": null, "bytes": null }));
    assert_eq!(body["reserved"], json!({ "files": 0, "bytes": 0 }));
}

async fn the_file_limit_refuses_a_presign_and_a_delete_frees_a_place_at_once(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_FILES", "2")]).await;
    app.upload_as("user_123", "1.txt", "text/plain", b"1".to_vec()).await;
    let second = app.upload_as("user_123", "2.txt", "text/plain", b"2".to_vec()).await;

    let refused = app.presign("3.txt", "text/plain").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "quota-exceeded"));
    assert_eq!(refused.body["error"], "this upload would take you past your quota of 2 files");
    // Another user is not affected.
    assert_eq!(app.presign_as("someone_else", "3.txt", "text/plain").await.status, StatusCode::OK);

    let deleted = app.delete_as("user_123", &format!("/files/{}", second["id"])).await;
    assert_eq!(deleted.status, StatusCode::OK);
    app.upload_as("user_123", "3.txt", "text/plain", b"3".to_vec()).await;
}

async fn a_declared_size_is_reserved_until_its_confirm_window_ends(backend: Backend) {
    // Upload URLs live 1 s and there is no grace: a reservation lasts about a second.
    let app = spawn_app_with(
        backend,
        &[("FERRY_QUOTA_BYTES", "100"), ("FERRY_UPLOAD_URL_TTL", "1"), ("FERRY_CONFIRM_GRACE", "0")],
    )
    .await;
    assert_eq!(presign_sized(&app, "user_123", "a.txt", 60).await.status, StatusCode::OK);
    let refused = presign_sized(&app, "user_123", "b.txt", 60).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "quota-exceeded"));
    assert_eq!(refused.body["error"], "this upload would take you past your storage quota of 100 bytes");

    // The first upload was abandoned: once its window is over, its bytes are free again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(usage(&app, "user_123").await["reserved"], json!({ "files": 0, "bytes": 0 }));
    assert_eq!(presign_sized(&app, "user_123", "b.txt", 60).await.status, StatusCode::OK);
}

async fn a_confirm_checks_the_real_size_and_removes_what_does_not_fit(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "100")]).await;
    // Both declare 1 byte and send 60: the confirm (here, the completion's) is where the real
    // bytes count.
    let first = understated(&app, "user_123", "a.txt", vec![b'x'; 60]).await;
    assert_eq!(first["status"], 200, "{first}");
    let refused = understated(&app, "user_123", "b.txt", vec![b'x'; 60]).await;
    assert_eq!((refused["status"].as_u64(), refused["body"]["code"].as_str()), (Some(403), Some("quota-exceeded")));
    assert!(refused["body"]["error"].as_str().unwrap().ends_with("the uploaded file was removed"), "{refused}");
    let (first_key, second_key) = (first["key"].as_str().unwrap(), refused["key"].as_str().unwrap());
    assert!(!app.object_exists(second_key).await, "an object the quota refused does not stay in the bucket");
    assert!(app.object_exists(first_key).await);
    let body = usage(&app, "user_123").await;
    assert_eq!((body["files"].as_u64(), body["bytes"].as_u64()), (Some(1), Some(60)));
    // A repeated confirm of the recorded upload is still answered with its row.
    assert_eq!(app.confirm(first_key).await.status, StatusCode::OK);
}

/// With a byte quota, a presigned PUT must say how big it is: its signed length is what keeps
/// the bucket from taking more than the reservation holds. A file-count quota alone does not
/// need it.
async fn with_a_byte_quota_a_presign_must_declare_its_size(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "100")]).await;
    let undeclared = app.presign("a.txt", "text/plain").await;
    assert_eq!(
        (undeclared.status, undeclared.code()),
        (StatusCode::BAD_REQUEST, "missing-field"),
        "{}",
        undeclared.body
    );
    assert_eq!(undeclared.body["error"], "size is required");
    assert_eq!(usage(&app, "user_123").await["reserved"], json!({ "files": 0, "bytes": 0 }));
    let sized = presign_sized(&app, "user_123", "a.txt", 10).await;
    assert_eq!(sized.status, StatusCode::OK, "{}", sized.body);
    let url = sized.body["presignedUrl"].as_str().unwrap();
    assert!(
        app.put(url, vec![b'x'; 90], "text/plain").await.is_client_error(),
        "the bucket takes only the signed length"
    );

    let counted = spawn_app_with(backend, &[("FERRY_QUOTA_FILES", "5")]).await;
    assert_eq!(counted.presign("a.txt", "text/plain").await.status, StatusCode::OK);
}

/// 32 uploads of one user at once against a limit of ten: presigns (declared sizes) and confirms
/// (understated sizes) race, and the limit holds either way.
async fn concurrent_uploads_of_one_user_never_pass_the_limit(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "1000")]).await;
    let declared = futures::future::join_all((0..32).map(|i| {
        let app = &app;
        async move {
            let presigned = presign_sized(app, "user_123", &format!("d{i}.txt"), 100).await;
            if presigned.status != StatusCode::OK {
                assert_eq!(presigned.code(), "quota-exceeded", "{}", presigned.body);
                return false;
            }
            let url = presigned.body["presignedUrl"].as_str().unwrap();
            assert_eq!(app.put(url, vec![b'd'; 100], "text/plain").await, StatusCode::OK);
            let confirmed = app.confirm(presigned.body["objectKey"].as_str().unwrap()).await;
            assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
            true
        }
    }))
    .await;
    assert_eq!(declared.iter().filter(|ok| **ok).count(), 10, "exactly the ten that fit were presigned");
    let body = usage(&app, "user_123").await;
    assert_eq!((body["files"].as_u64(), body["bytes"].as_u64()), (Some(10), Some(1000)));

    // Understated sizes (1 byte declared, 100 sent in parts): the completions' confirms race.
    // Each upload still pending holds its 1 declared byte, hence 31 bytes of room above 1000.
    let other = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "1031")]).await;
    let confirms = futures::future::join_all((0..32).map(|i| {
        let other = &other;
        async move { understated(other, "user_123", &format!("u{i}.txt"), vec![b'u'; 100]).await }
    }))
    .await;
    let recorded = confirms.iter().filter(|c| c["status"] == 200).count();
    for refused in confirms.iter().filter(|c| c["status"] != 200) {
        assert_eq!(
            (refused["status"].as_u64(), refused["body"]["code"].as_str()),
            (Some(403), Some("quota-exceeded")),
            "{refused}"
        );
    }
    assert_eq!(recorded, 10, "every confirm that fits is recorded, and no other");
    let body = usage(&other, "user_123").await;
    assert_eq!((body["files"].as_u64(), body["bytes"].as_u64()), (Some(10), Some(1000)));
    assert_eq!(other.row_count().await, 10);
}

async fn a_multipart_start_reserves_the_files_size_and_an_abort_releases_it(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "30000000")]).await;
    let start = |name: &'static str| {
        let body = json!({ "fileName": name, "contentType": "application/octet-stream", "size": 20_000_000 });
        let app = &app;
        async move { app.post_json_as("user_123", "/multipart/start", &body).await }
    };
    let first = start("a.bin").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let refused = start("b.bin").await;
    assert_eq!((refused.status, refused.code()), (StatusCode::FORBIDDEN, "quota-exceeded"));

    let abort = json!({ "objectKey": first.body["objectKey"], "uploadId": first.body["uploadId"] });
    assert_eq!(app.post_json_as("user_123", "/multipart/abort", &abort).await.status, StatusCode::OK);
    assert_eq!(start("b.bin").await.status, StatusCode::OK);
}

async fn under_a_byte_quota_each_part_url_signs_its_length_and_none_goes_past_the_last(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_BYTES", "40000000")]).await;
    let bytes = random_bytes(17 * 1024 * 1024);
    let body = json!({ "fileName": "big.bin", "contentType": "application/octet-stream", "size": bytes.len() });
    let start = app.post_json_as("user_123", "/multipart/start", &body).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let part_size = start.body["partSize"].as_u64().unwrap() as usize;
    assert_eq!((part_size, start.body["partCount"].as_u64()), (16 * 1024 * 1024, Some(2)));
    let (key, upload_id) = (&start.body["objectKey"], &start.body["uploadId"]);
    let urls = |numbers: Vec<u16>| json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": numbers });

    let past = app.post_json_as("user_123", "/multipart/urls", &urls(vec![2, 3])).await;
    assert_eq!((past.status, past.code()), (StatusCode::BAD_REQUEST, "invalid-body"), "{}", past.body);
    let signed = app.post_json_as("user_123", "/multipart/urls", &urls(vec![1, 2])).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let url = |i: usize| signed.body["urls"][i]["url"].as_str().unwrap().to_owned();
    // The last part is 1 MiB: a longer (or shorter) body does not match the URL's signature.
    for wrong in [2 * 1024 * 1024, 1024] {
        let refused = app.http.put(url(1)).body(random_bytes(wrong)).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a part of {wrong} bytes");
    }
    let mut parts = Vec::new();
    for (i, chunk) in [&bytes[..part_size], &bytes[part_size..]].into_iter().enumerate() {
        let response = app.http.put(url(i)).body(chunk.to_vec()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        parts.push(json!({ "partNumber": i + 1, "etag": response.headers()["etag"].to_str().unwrap() }));
    }
    let complete = json!({ "objectKey": key, "uploadId": upload_id, "parts": parts });
    let done = app.post_json_as("user_123", "/multipart/complete", &complete).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["file"]["size"].as_u64(), Some(bytes.len() as u64));
}

crate::on_both_backends!(
    under_a_byte_quota_each_part_url_signs_its_length_and_none_goes_past_the_last,
    usage_reports_files_bytes_reservations_and_limits,
    the_file_limit_refuses_a_presign_and_a_delete_frees_a_place_at_once,
    a_declared_size_is_reserved_until_its_confirm_window_ends,
    a_confirm_checks_the_real_size_and_removes_what_does_not_fit,
    with_a_byte_quota_a_presign_must_declare_its_size,
    concurrent_uploads_of_one_user_never_pass_the_limit,
    a_multipart_start_reserves_the_files_size_and_an_abort_releases_it,
);

/// The per-user quota lock is waited for in the statement that sets `statement_timeout`, so the
/// server's timeout does not bound that wait: Ferry does, and cancels it on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_the_quota_lock_is_bounded_by_the_statement_timeout() {
    let app =
        spawn_app_with(Backend::Postgres, &[("FERRY_QUOTA_FILES", "5"), ("FERRY_DB_STATEMENT_TIMEOUT", "1")]).await;
    // Another session holds user_123's quota lock (as a stuck transaction of another instance would).
    let holder = crate::helpers::pg_client(&app.database_url).await;
    holder.execute("SELECT pg_advisory_lock(hashtextextended('ferry.quota/' || 'user_123', 0))", &[]).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), app.presign_as("user_123", "a.txt", "text/plain"))
        .await
        .expect("the presign answers instead of waiting for the lock");
    assert_eq!(
        (waited.status, waited.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database-unavailable"),
        "{}",
        waited.body
    );
    // Another user is not held up, and once the lock is gone the user is served again.
    assert_eq!(app.presign_as("someone-else", "b.txt", "text/plain").await.status, StatusCode::OK);
    holder.execute("SELECT pg_advisory_unlock_all()", &[]).await.unwrap();
    assert_eq!(app.presign_as("user_123", "c.txt", "text/plain").await.status, StatusCode::OK);
}
