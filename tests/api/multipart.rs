//! Large files by multipart, and `ferry upload` using it, with real bytes.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, random_bytes, reply, spawn_app};

crate::on_both_backends!(
    a_multipart_upload_is_joined_verified_and_recorded,
    a_multipart_completion_with_a_bogus_etag_records_nothing,
    another_user_cannot_get_part_urls_for_my_upload,
    ferry_upload_sends_small_files_whole_and_large_ones_in_parts,
    a_killed_ferry_upload_resumes_without_resending_the_parts_that_arrived
);

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
    app.http.put(urls.body["urls"][0]["url"].as_str().unwrap()).body(vec![1u8; 10]).send().await.unwrap();
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

/// The successful answers of the embedded store to UploadPart so far, from `/metrics`.
async fn parts_stored(app: &crate::helpers::TestApp) -> u64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("ferry_store_requests_total{") && l.contains("operation=\"UploadPart\""))
        .filter(|l| l.contains("status=\"200\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
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
    assert_eq!(parts_stored(&app).await, arrived as u64);

    // The rerun sends only the rest.
    let rerun = upload(&[]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming: {arrived} of 5 parts are already in the bucket")), "{stderr}");
    assert_eq!(stderr.matches("big.bin: part ").count(), 5 - arrived, "{stderr}");
    assert_eq!(parts_stored(&app).await, 5, "each part reached the store once");
    let files = reply(app.get_as("erin", "/files").await).await;
    assert_eq!(files.body["files"].as_array().unwrap().len(), 1);
    assert_eq!(app.download_as("erin", files.body["files"][0]["id"].as_i64().unwrap()).await, bytes);
    assert_eq!(std::fs::read_dir(state.path().join("ferry/uploads")).unwrap().count(), 0, "nothing left to resume");

    // --no-resume sends everything again (a new upload of the same file).
    let again = upload(&["--no-resume"]).output().await.unwrap();
    assert!(again.status.success());
    assert_eq!(parts_stored(&app).await, 10);
}
