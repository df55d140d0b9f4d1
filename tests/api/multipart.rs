//! Large files by multipart, and `ferry upload` using it, with real bytes.

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, random_bytes, reply, spawn_app, spawn_app_with};

crate::on_both_backends!(
    a_multipart_upload_is_joined_verified_and_recorded,
    a_multipart_completion_with_a_bogus_etag_records_nothing,
    an_aborted_multipart_upload_is_gone_and_frees_its_reservation,
    ferry_upload_sends_small_files_whole_and_large_ones_in_parts,
    ferry_upload_aborts_a_multipart_upload_that_failed,
    a_killed_ferry_upload_resumes_without_resending_the_parts_that_arrived,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(another_user_cannot_get_part_urls_for_my_upload,);

const MIB: usize = 1024 * 1024;

async fn a_multipart_upload_is_joined_verified_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = random_bytes(17 * MIB + 5);
    let (key, upload_id, parts) = app.upload_parts("alice", "movie.mp4", "video/mp4", &bytes).await;
    assert_eq!(parts.len(), 2);
    let done = app
        .post_json_as(
            "alice",
            "/multipart/complete",
            &json!({ "objectKey": key, "uploadId": upload_id, "parts": parts }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["file"]["size"], bytes.len());
    assert_eq!(done.body["file"]["contentType"], "video/mp4");
    let id = done.body["file"]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("alice", id).await, bytes);
}

async fn a_multipart_completion_with_a_bogus_etag_records_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = app
        .post_json_as(
            "alice",
            "/multipart/start",
            &json!({ "fileName": "a.bin", "contentType": "application/octet-stream", "size": 10 }),
        )
        .await;
    let (key, upload_id) = (start.body["objectKey"].clone(), start.body["uploadId"].clone());
    let urls = app
        .post_json_as(
            "alice",
            "/multipart/urls",
            &json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": [1] }),
        )
        .await;
    // The part really is there, so the refusal below is the bogus ETag's, not a missing part's.
    let part = app.http.put(urls.body["urls"][0]["url"].as_str().unwrap()).body(vec![1u8; 10]).send().await.unwrap();
    assert_eq!(part.status(), StatusCode::OK);
    let etag = part.headers()["etag"].to_str().unwrap().to_owned();
    let bogus = json!([{ "partNumber": 1, "etag": "0123456789abcdef0123456789abcdef" }]);
    let done = app
        .post_json_as(
            "alice",
            "/multipart/complete",
            &json!({ "objectKey": key, "uploadId": upload_id, "parts": bogus }),
        )
        .await;
    assert_eq!((done.status, done.code()), (StatusCode::BAD_REQUEST, "invalid-parts"));
    let gap = json!([{ "partNumber": 2, "etag": "x" }]);
    let done = app
        .post_json_as("alice", "/multipart/complete", &json!({ "objectKey": key, "uploadId": upload_id, "parts": gap }))
        .await;
    assert_eq!((done.status, done.code()), (StatusCode::BAD_REQUEST, "invalid-parts"));
    assert_eq!(app.row_count().await, 0);
    assert!(!app.object_exists(key.as_str().unwrap()).await);
    // The same upload with the part's real ETag completes: only the ETag was wrong.
    let real = json!([{ "partNumber": 1, "etag": etag }]);
    let done = app
        .post_json_as(
            "alice",
            "/multipart/complete",
            &json!({ "objectKey": key, "uploadId": upload_id, "parts": real }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(app.row_count().await, 1);
}

async fn another_user_cannot_get_part_urls_for_my_upload(backend: Backend) {
    let app = spawn_app(backend).await;
    let start = app
        .post_json_as(
            "alice",
            "/multipart/start",
            &json!({ "fileName": "a.bin", "contentType": "application/octet-stream", "size": 10 }),
        )
        .await;
    let body = json!({ "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"], "partNumbers": [1] });
    let r = app.post_json_as("mallory", "/multipart/urls", &body).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "upload-not-issued"));
    let r = app
        .post_json_as(
            "alice",
            "/multipart/start",
            &json!({ "fileName": "a.bin", "contentType": "application/octet-stream" }),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "missing-field"));
}

async fn ferry_upload_sends_small_files_whole_and_large_ones_in_parts(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("notes.txt");
    let large = dir.path().join("big.bin");
    std::fs::write(&small, b"a small file").unwrap();
    let large_bytes = random_bytes(17 * MIB);
    std::fs::write(&large, &large_bytes).unwrap();
    let state = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env("XDG_STATE_HOME", state.path())
        .args(["upload", "--api", &app.url(""), "--user", "carol", "--multipart-threshold", &(MIB as u64).to_string()])
        .arg(&small)
        .arg(&large)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("big.bin: part 2/2"), "{stderr}");
    let files = reply(app.get_as("carol", "/files").await).await;
    let listed: Vec<(&str, &str)> = files.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["fileName"].as_str().unwrap(), f["contentType"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("big.bin", "application/octet-stream"), ("notes.txt", "text/plain")]);
    let big_id = files.body["files"][0]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("carol", big_id).await, large_bytes);
    // The small file went with its MD5 (checked by the store, recorded); the parts each went with
    // theirs, and a multipart file records no whole-file digest.
    use base64::Engine as _;
    use md5::Digest as _;
    let small_md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(b"a small file"));
    assert_eq!(files.body["files"][1]["md5"], small_md5);
    assert_eq!(files.body["files"][0]["md5"], serde_json::Value::Null);

    // --no-checksum sends none.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["upload", "--api", &app.url(""), "--user", "dave", "--no-checksum"])
        .arg(&small)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let files = reply(app.get_as("dave", "/files").await).await;
    assert_eq!(files.body["files"][0]["md5"], serde_json::Value::Null);
}

/// `ferry upload` remembers an unfinished multipart upload: killed with SIGKILL after its first
/// part, a rerun of the same command sends only the parts the bucket does not have (counted at
/// the store), and the file arrives whole. `--no-resume` starts over.
async fn a_killed_ferry_upload_resumes_without_resending_the_parts_that_arrived(backend: Backend) {
    use tokio::io::AsyncBufReadExt;

    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let bytes = random_bytes(80 * MIB); // five 16 MiB parts
    std::fs::write(&path, &bytes).unwrap();
    let upload = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .env("XDG_STATE_HOME", state.path())
            .args(["upload", "--api", &app.url(""), "--user", "erin", "--part-jobs", "1"])
            .args(extra)
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    };

    // First run: killed as soon as its first part has landed.
    let mut first = upload(&[]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(first.stderr.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("big.bin: part ") {
            break;
        }
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let saved: Vec<_> = std::fs::read_dir(state.path().join("ferry/uploads")).unwrap().collect();
    assert_eq!(saved.len(), 1, "one unfinished upload is remembered");
    let remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved[0].as_ref().unwrap().path()).unwrap()).unwrap();
    let ids = json!({ "objectKey": remembered["object_key"], "uploadId": remembered["upload_id"] });
    let arrived = app.post_json_as("erin", "/multipart/parts", &ids).await.body["parts"].as_array().unwrap().len();
    assert!((1..5).contains(&arrived), "the kill left {arrived} of 5 parts");
    assert_eq!(app.parts_stored().await, arrived as u64);

    // The rerun sends only the rest.
    let rerun = upload(&[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming: {arrived} of 5 parts are already in the bucket")), "{stderr}");
    assert_eq!(stderr.matches("big.bin: part ").count(), 5 - arrived, "{stderr}");
    assert_eq!(app.parts_stored().await, 5, "each part reached the store once");
    let files = reply(app.get_as("erin", "/files").await).await;
    assert_eq!(files.body["files"].as_array().unwrap().len(), 1);
    assert_eq!(app.download_as("erin", files.body["files"][0]["id"].as_i64().unwrap()).await, bytes);
    assert_eq!(std::fs::read_dir(state.path().join("ferry/uploads")).unwrap().count(), 0, "nothing left to resume");

    // --no-resume sends everything again (a new upload of the same file).
    let again = upload(&["--no-resume"]).output().await.unwrap();
    assert!(again.status.success());
    assert_eq!(app.parts_stored().await, 10);
}

async fn an_aborted_multipart_upload_is_gone_and_frees_its_reservation(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_QUOTA_FILES", "1")]).await;
    let body = json!({ "fileName": "a.bin", "contentType": "application/octet-stream", "size": 10 });
    let start = app.post_json_as("alice", "/multipart/start", &body).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let ids = json!({ "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"] });
    let mut urls_body = ids.clone();
    urls_body["partNumbers"] = json!([1]);
    let urls = app.post_json_as("alice", "/multipart/urls", &urls_body).await;
    let part_url = urls.body["urls"][0]["url"].as_str().unwrap().to_owned();
    let part = app.http.put(&part_url).body(vec![1u8; 10]).send().await.unwrap();
    assert_eq!(part.status(), StatusCode::OK);
    let etag = part.headers()["etag"].to_str().unwrap().to_owned();
    // The upload holds alice's one file of quota while it is open.
    let second = app.presign_as("alice", "second.txt", "text/plain").await;
    assert_eq!((second.status, second.code()), (StatusCode::FORBIDDEN, "quota-exceeded"));

    // Someone else cannot abort it: it stays open.
    let foreign = app.post_json_as("mallory", "/multipart/abort", &ids).await;
    assert_eq!((foreign.status, foreign.code()), (StatusCode::FORBIDDEN, "upload-not-issued"), "{}", foreign.body);
    assert_eq!(app.http.put(&part_url).body(vec![1u8; 10]).send().await.unwrap().status(), StatusCode::OK);

    let aborted = app.post_json_as("alice", "/multipart/abort", &ids).await;
    assert_eq!((aborted.status, aborted.body.clone()), (StatusCode::OK, json!({ "success": true })));
    // The bucket no longer has the upload: its part URL and its completion are refused.
    let late = app.http.put(&part_url).body(vec![1u8; 10]).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::NOT_FOUND);
    assert!(late.text().await.unwrap().contains("NoSuchUpload"));
    let mut complete = ids.clone();
    complete["parts"] = json!([{ "partNumber": 1, "etag": etag }]);
    let done = app.post_json_as("alice", "/multipart/complete", &complete).await;
    assert_eq!((done.status, done.code()), (StatusCode::BAD_REQUEST, "invalid-parts"), "{}", done.body);
    assert_eq!(app.row_count().await, 0);
    // Its reservation ended with it.
    let usage = reply(app.get_as("alice", "/usage").await).await;
    assert_eq!(usage.body["reserved"]["files"], 0, "{}", usage.body);
    assert_eq!(app.presign_as("alice", "second.txt", "text/plain").await.status, StatusCode::OK);
}

/// A proxy in front of Ferry that forwards every call but answers `/multipart/complete` with a
/// 503, as a load balancer losing its backend would, and remembers the bodies of the
/// `/multipart/abort` calls it forwarded with Ferry's status.
async fn failing_completion_proxy(target: String) -> (String, Arc<Mutex<Vec<(Value, u16)>>>) {
    let aborts = Arc::new(Mutex::new(Vec::new()));
    let seen = aborts.clone();
    let client = reqwest::Client::new();
    let handler = move |request: axum::extract::Request| {
        let (client, target, seen) = (client.clone(), target.clone(), seen.clone());
        async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            if path == "/multipart/complete" {
                let body = json!({ "success": false, "error": "backend lost", "code": "retry-later" });
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            }
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut forward = client.request(parts.method, format!("{target}{}", parts.uri)).body(bytes.clone());
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let answer = forward.send().await.unwrap();
            let status = answer.status();
            if path == "/multipart/abort" {
                seen.lock().unwrap().push((serde_json::from_slice(&bytes).unwrap(), status.as_u16()));
            }
            let content_type = answer.headers().get("content-type").cloned();
            let mut response = (status, answer.bytes().await.unwrap()).into_response();
            if let Some(content_type) = content_type {
                response.headers_mut().insert("content-type", content_type);
            }
            response
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, aborts)
}

async fn ferry_upload_aborts_a_multipart_upload_that_failed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (proxy, aborts) = failing_completion_proxy(app.url("")).await;
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("big.bin");
    std::fs::write(&large, random_bytes(2 * MIB)).unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        // Without resuming, a failed upload is aborted (with it, it is kept for the next run).
        .args(["upload", "--no-resume", "--api", &proxy, "--user", "carol", "--multipart-threshold", &MIB.to_string()])
        .arg(&large)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "the work failed: {stderr}");
    assert!(stderr.contains("big.bin: part 1/1"), "its part was sent before the completion failed: {stderr}");

    let aborts = aborts.lock().unwrap().clone();
    assert_eq!(aborts.len(), 1, "one abort for the one failed upload: {aborts:?}");
    let (ids, status) = &aborts[0];
    assert_eq!(*status, 200, "Ferry aborted it");
    // The bucket no longer has the upload: a new part URL for it is refused by the store.
    let mut urls_body = ids.clone();
    urls_body["partNumbers"] = json!([1]);
    let urls = app.post_json_as("carol", "/multipart/urls", &urls_body).await;
    let part_url = urls.body["urls"][0]["url"].as_str().unwrap();
    let late = app.http.put(part_url).body(vec![0u8; 10]).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.row_count().await, 0);
}
