//! Trust nothing the client says, lose nothing.

use ferry::db::NewFile;
use reqwest::StatusCode;

use crate::helpers::{Backend, ExternalStore, now_unix, random_bytes, spawn_app, spawn_app_with, spawn_app_with_store};

crate::on_both_backends!(
    another_users_key_is_refused,
    a_confirm_before_the_upload_can_be_retried,
    an_oversized_upload_is_refused_and_removed,
    a_disallowed_type_is_refused_at_presign_and_at_confirm,
    repeated_and_concurrent_confirms_make_one_row,
    a_key_recorded_for_another_user_is_key_taken,
    a_delete_interrupted_by_the_store_is_finished_by_cleanup,
    cleanup_removes_unconfirmed_uploads_and_keeps_the_rest,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_forged_key_is_refused_and_writes_nothing,
    an_expired_upload_cannot_be_confirmed,
    a_presign_over_the_limit_is_refused,
);

async fn a_forged_key_is_refused_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for key in [
        "not-a-ferry-key.png".to_owned(),
        format!("{}-a.png", uuid::Uuid::new_v4()),
        "00000000-0000-8000-8000-000000000000-a.png".to_owned(),
        "../../etc/passwd".to_owned(),
    ] {
        // An object really is there under the forged key (where a key can name one), so only
        // the key check stands between it and a row.
        if !key.contains("..") {
            app.put_directly(&key, b"forged".to_vec(), "image/png").await;
            assert!(app.object_exists(&key).await);
        }
        let r = app.confirm(&key).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "upload-not-issued"), "{key}");
    }
    assert_eq!(app.row_count().await, 0);
}

async fn another_users_key_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign_as("alice", "a.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"alice".to_vec(), "text/plain").await;
    let r = app.confirm_as("mallory", key).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "upload-not-issued"));
    assert_eq!(app.row_count().await, 0);
    assert_eq!(app.confirm_as("alice", key).await.status, StatusCode::OK);
}

async fn a_confirm_before_the_upload_can_be_retried(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("late.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    let early = app.confirm(key).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "upload-not-found"));
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"now".to_vec(), "text/plain").await;
    assert_eq!(app.confirm(key).await.status, StatusCode::OK);
}

async fn an_expired_upload_cannot_be_confirmed(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_CONFIRM_GRACE", "60")]).await;
    let key = app.issue_key("user_123", "old.txt", now_unix() - 120);
    app.put_directly(&key, b"old".to_vec(), "text/plain").await;
    let r = app.confirm(&key).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "upload-expired"));
    assert_eq!(app.row_count().await, 0);
}

/// A bucket that does not know Ferry's limit takes the bytes; confirm refuses and removes them.
/// (The embedded store refuses them itself: see `embedded_store.rs`.)
async fn an_oversized_upload_is_refused_and_removed(backend: Backend) {
    let store = ExternalStore::start().await;
    let app = spawn_app_with_store(backend, &store, &[("FERRY_MAX_FILE_SIZE", "1000")]).await;
    let presigned = app.presign("big.bin", "application/octet-stream").await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    assert_eq!(app.put(url, random_bytes(2000), "application/octet-stream").await, StatusCode::OK);
    let r = app.confirm(key).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "object-too-large"));
    assert!(!app.object_exists(key).await, "the oversized object is deleted");
    assert_eq!(app.row_count().await, 0);
}

async fn a_presign_over_the_limit_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_MAX_FILE_SIZE", "1000")]).await;
    let body = serde_json::json!({ "fileName": "big.bin", "contentType": "application/octet-stream", "size": 1001 });
    let r = app.post_json_as("user_123", "/presign-b2-upload", &body).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "file-too-large"));
}

async fn a_disallowed_type_is_refused_at_presign_and_at_confirm(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_ALLOWED_TYPES", "image/*, application/pdf")]).await;
    let r = app.presign("page.html", "text/html").await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "content-type-not-allowed"));
    assert_eq!(app.presign("doc.pdf", "application/pdf").await.status, StatusCode::OK);

    // A client that got a key for an image but stored HTML (through a store that does not
    // enforce signed headers) is caught at confirm, and the object is removed.
    let presigned = app.presign("cat.png", "image/png").await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    app.put_directly(key, b"<script>".to_vec(), "text/html").await;
    let r = app.confirm(key).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "object-type-not-allowed"));
    assert!(!app.object_exists(key).await);
    assert_eq!(app.row_count().await, 0);
}

async fn repeated_and_concurrent_confirms_make_one_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("once.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"once".to_vec(), "text/plain").await;
    let confirms = (0..8).map(|_| app.confirm(&key));
    let replies = futures::future::join_all(confirms).await;
    let ids: std::collections::HashSet<i64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body["file"]["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every confirm returns the same record");
    assert_eq!(app.confirm(&key).await.body["file"]["id"].as_i64(), ids.into_iter().next());
    assert_eq!(app.row_count().await, 1);
}

async fn a_delete_interrupted_by_the_store_is_finished_by_cleanup(backend: Backend) {
    let mut store = ExternalStore::start().await;
    let app = spawn_app_with_store(backend, &store, &[("FERRY_SWEEP_DELETE_AGE", "0")]).await;
    let file = app.upload_as("user_123", "doomed.txt", "text/plain", b"doomed".to_vec()).await;
    let id = file["id"].as_i64().unwrap();
    let key = file["objectKey"].as_str().unwrap();

    store.stop().await;
    let r = app.delete_as("user_123", &format!("/files/{id}")).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"));
    // The file is hidden from its owner at once, though its row waits for the store.
    let listed = crate::helpers::reply(app.get_as("user_123", "/files").await).await;
    assert!(listed.body["files"].as_array().unwrap().is_empty());
    assert_eq!(app.row_count().await, 1);

    store.restart().await;
    assert!(app.object_exists(key).await);
    let report = app.core.sweeper.sweep_once(false).await.unwrap();
    assert_eq!(report.finished_deletes, vec![key.to_owned()]);
    assert!(!app.object_exists(key).await);
    assert_eq!(app.row_count().await, 0);
}

async fn cleanup_removes_unconfirmed_uploads_and_keeps_the_rest(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_CONFIRM_GRACE", "60"), ("FERRY_SWEEP_MARGIN", "0")]).await;
    let long_ago = now_unix() - 3600;
    // Never confirmed, past its deadline: an orphan.
    let orphan = app.issue_key("user_123", "orphan.txt", long_ago);
    app.put_directly(&orphan, b"orphan".to_vec(), "text/plain").await;
    // Confirmed back then: it has a row.
    let kept = app.issue_key("user_123", "kept.txt", long_ago);
    app.put_directly(&kept, b"kept".to_vec(), "text/plain").await;
    let new = NewFile {
        object_key: kept.clone(),
        file_url: "u".into(),
        file_name: "kept.txt".into(),
        content_type: Some("text/plain".into()),
        size: 4,
        etag: None,
        reserved: false,
    };
    let caller = ferry::identity::Caller::from_user_id("user_123");
    app.core.db.record(&caller, &new, &ferry::db::Quota::default(), 0).await.unwrap();
    // Still within its window: may yet be confirmed.
    let pending = app.presign("pending.txt", "text/plain").await;
    let pending_key = pending.body["objectKey"].as_str().unwrap();
    app.put(pending.body["presignedUrl"].as_str().unwrap(), b"p".to_vec(), "text/plain").await;
    // Not a Ferry key at all: never touched.
    app.put_directly("backups/keep-me.txt", b"mine".to_vec(), "text/plain").await;

    let dry = app.core.sweeper.sweep_once(true).await.unwrap();
    assert_eq!(dry.orphans, vec![orphan.clone()]);
    assert!(app.object_exists(&orphan).await, "a dry run changes nothing");

    let report = app.core.sweeper.sweep_once(false).await.unwrap();
    assert_eq!(report.orphans, vec![orphan.clone()]);
    assert_eq!(report.scanned, 4);
    assert!(!app.object_exists(&orphan).await);
    for key in [kept.as_str(), pending_key, "backups/keep-me.txt"] {
        assert!(app.object_exists(key).await, "{key} is kept");
    }
    // A second sweeper finds nothing left to do.
    assert!(app.core.sweeper.sweep_once(false).await.unwrap().orphans.is_empty());
}

async fn a_key_recorded_for_another_user_is_key_taken(backend: Backend) {
    let app = spawn_app(backend).await;
    // A key issued to bob whose row, somehow, is alice's (another instance's bug, a restored
    // backup): bob's confirm must not take the row over, nor record a second one.
    let key = app.issue_key("bob", "shared.txt", now_unix() + 300);
    app.put_directly(&key, b"bytes".to_vec(), "text/plain").await;
    let new = NewFile {
        object_key: key.clone(),
        file_url: "u".into(),
        file_name: "shared.txt".into(),
        content_type: Some("text/plain".into()),
        size: 5,
        etag: None,
        reserved: false,
    };
    let alice = ferry::identity::Caller::from_user_id("alice");
    app.core.db.record(&alice, &new, &ferry::db::Quota::default(), 0).await.unwrap();
    let r = app.confirm_as("bob", &key).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "key-taken"), "{}", r.body);
    assert_eq!(app.row_count().await, 1);
    assert!(app.object_exists(&key).await, "the refusal deleted nothing a row points at");
}
