//! When the machine fails under Ferry: the embedded store's disk fills up, the bucket goes away.
//! Each answers a clear error, nothing broken becomes visible or is recorded, and the same
//! request works once the fault is gone.
//!
//! The full-disk tests need a small file system to fill: `FERRY_TEST_SMALL_DIR` names a
//! writable directory on one (`scripts/test` mounts an 8 MiB tmpfs there).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;

use crate::helpers::{Backend, ExternalStore, random_bytes, reply, spawn_app_with, spawn_app_with_store};

crate::on_both_backends!(
    a_put_onto_a_full_disk_is_a_507_keeps_nothing_and_succeeds_once_space_is_freed,
    while_the_bucket_is_down_reads_work_writes_answer_503_and_nothing_is_lost
);

const MIB: usize = 1024 * 1024;

/// Both backends' runs share the one small file system: one at a time.
static SMALL_DISK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn small_dir() -> PathBuf {
    let dir = std::env::var_os("FERRY_TEST_SMALL_DIR").expect(
        "the full-disk tests need FERRY_TEST_SMALL_DIR: a writable directory on a small file system \
         (scripts/test mounts an 8 MiB tmpfs and sets it; by hand, as root: \
         mkdir -p /tmp/smallfs && mount -t tmpfs -o size=8m tmpfs /tmp/smallfs && chmod 1777 /tmp/smallfs)",
    );
    PathBuf::from(dir)
}

/// Fills the file system of `dir` with a file `ballast`, then frees `free` bytes of it again:
/// afterwards about that much space is left.
fn fill_leaving(ballast: &Path, free: usize) {
    let mut file = std::fs::File::create(ballast).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
            Err(e) => panic!("filling the small disk: {e}"),
        }
    }
    assert!(written > free as u64, "the small disk had less than {free} bytes free to begin with");
    file.set_len(written - free as u64).unwrap();
    file.sync_all().unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

async fn a_put_onto_a_full_disk_is_a_507_keeps_nothing_and_succeeds_once_space_is_freed(backend: Backend) {
    let _one_at_a_time = SMALL_DISK.lock().await;
    let small = tempfile::tempdir_in(small_dir()).expect("a directory on the small disk");
    let data = small.path().join("data");
    // The store lives on the small disk; the SQLite database stays in the helpers' own tempdir.
    let app = spawn_app_with(backend, &[("FERRY_DATA_DIR", data.to_str().unwrap())]).await;
    let tmp = data.join("objects").join(".tmp");
    assert!(tmp.is_dir(), "the embedded store keeps its objects under FERRY_DATA_DIR/objects");

    let ballast = small.path().join("ballast");
    fill_leaving(&ballast, MIB);
    let bytes = random_bytes(3 * MIB);
    let presigned = app.presign("big.bin", "application/octet-stream").await;
    assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    let url = presigned.body["presignedUrl"].as_str().unwrap().to_owned();

    let put = app
        .http
        .put(&url)
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .expect("the store answers (not a dropped connection)");
    let status = put.status();
    let body = put.text().await.unwrap();
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body.contains("<Code>InsufficientStorage</Code>"), "{body}");
    assert!(body.contains("disk is full"), "{body}");

    assert!(!app.object_exists(&key).await, "no truncated object is visible");
    assert_eq!(entries(&tmp), Vec::<String>::new(), "no temporary file is left in .tmp");
    let early = app.confirm(&key).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "upload-not-found"), "{}", early.body);
    assert_eq!(app.row_count().await, 0);

    // Space is freed: the very same presigned PUT now goes through.
    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(app.put(&url, bytes.clone(), "application/octet-stream").await, StatusCode::OK);
    let confirmed = app.confirm(&key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body["file"]["size"], bytes.len());
    let id = confirmed.body["file"]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("user_123", id).await, bytes, "the download is the exact bytes");
    assert_eq!(entries(&tmp), Vec::<String>::new());
    assert_eq!(app.row_count().await, 1);
}

async fn while_the_bucket_is_down_reads_work_writes_answer_503_and_nothing_is_lost(backend: Backend) {
    let mut store = ExternalStore::start().await;
    let app = spawn_app_with_store(backend, &store, &[]).await;
    let kept = random_bytes(1000);
    let file = app.upload_as("user_123", "kept.bin", "application/octet-stream", kept.clone()).await;
    let kept_id = file["id"].as_i64().unwrap();
    // Uploaded before the outage, confirmed during it.
    let pending = app.presign("pending.txt", "text/plain").await;
    let pending_key = pending.body["objectKey"].as_str().unwrap().to_owned();
    let pending_url = pending.body["presignedUrl"].as_str().unwrap().to_owned();
    assert_eq!(app.put(&pending_url, b"pending".to_vec(), "text/plain").await, StatusCode::OK);

    store.stop().await;
    // Presigning signs locally: no store needed.
    let during = app.presign("during.txt", "text/plain").await;
    assert_eq!(during.status, StatusCode::OK, "{}", during.body);
    // Confirming must HEAD the object: 503, nothing recorded.
    let r = app.confirm(&pending_key).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"), "{}", r.body);
    assert_eq!(app.row_count().await, 1);
    // Listing reads the database only.
    let listed = reply(app.get_as("user_123", "/files").await).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["files"].as_array().unwrap().len(), 1);
    // A download link is signed locally too (the bucket answers it once it is back).
    let download = app.get_as("user_123", &format!("/files/{kept_id}/download")).await;
    assert_eq!(download.status(), StatusCode::FOUND);
    // Starting a multipart upload asks the bucket: 503.
    let start = app
        .post_json_as(
            "user_123",
            "/multipart/start",
            &serde_json::json!({ "fileName": "movie.mp4", "contentType": "video/mp4", "size": 20 * MIB }),
        )
        .await;
    assert_eq!((start.status, start.code()), (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"), "{}", start.body);

    store.restart().await;
    // The same confirm now succeeds; nothing was lost.
    let r = app.confirm(&pending_key).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["file"]["size"], 7);
    let pending_id = r.body["file"]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("user_123", pending_id).await, b"pending");
    assert_eq!(app.download_as("user_123", kept_id).await, kept);
    // The URL presigned during the outage works.
    let during_key = during.body["objectKey"].as_str().unwrap();
    let during_url = during.body["presignedUrl"].as_str().unwrap();
    assert_eq!(app.put(during_url, b"during".to_vec(), "text/plain").await, StatusCode::OK);
    assert_eq!(app.confirm(during_key).await.status, StatusCode::OK);
    assert_eq!(app.row_count().await, 3);
}
