//! End-to-end checksums: a digest declared at presign is signed into the URL, so the bucket
//! itself refuses any other bytes, and the digest the bucket checked is recorded and listed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::Digest as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, reply, spawn_app};
use crate::s3_compat::spawn_against_moto;

fn md5_of(bytes: &[u8]) -> String {
    STANDARD.encode(md5::Md5::digest(bytes))
}

fn sha256_of(bytes: &[u8]) -> String {
    STANDARD.encode(sha2::Sha256::digest(bytes))
}

async fn presign_with(app: &TestApp, name: &str, digests: Value) -> Reply {
    let mut body = json!({ "fileName": name, "contentType": "text/plain" });
    body.as_object_mut().unwrap().extend(digests.as_object().unwrap().clone());
    app.post_json_as("user_123", "/presign-b2-upload", &body).await
}

/// PUTs `bytes` with exactly the headers the presign answer lists.
async fn put_as_told(app: &TestApp, presigned: &Reply, bytes: &[u8]) -> StatusCode {
    assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
    let mut request = app.http.put(presigned.body["presignedUrl"].as_str().unwrap()).body(bytes.to_vec());
    for (name, value) in presigned.body["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.send().await.unwrap().status()
}

async fn listed_file(app: &TestApp) -> Value {
    let listed = reply(app.get_as("user_123", "/files").await).await;
    listed.body["files"][0].clone()
}

async fn a_declared_md5_is_signed_in_checked_by_the_store_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = b"the bytes the user chose".to_vec();
    let presigned = presign_with(&app, "a.txt", json!({ "md5": md5_of(&bytes) })).await;
    assert_eq!(presigned.body["headers"], json!({ "Content-Type": "text/plain", "Content-MD5": md5_of(&bytes) }));
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    assert!(url.contains("content-md5"), "Content-MD5 is one of the signed headers");

    // The same length, other bytes: the store refuses them.
    let mut changed = bytes.clone();
    changed[0] ^= 1;
    assert_eq!(put_as_told(&app, &presigned, &changed).await, StatusCode::BAD_REQUEST);
    // Leaving the digest out breaks the signature.
    assert_eq!(app.put(url, bytes.clone(), "text/plain").await, StatusCode::FORBIDDEN);
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert_eq!(app.confirm(key).await.code(), "upload-not-found", "nothing arrived, nothing is recorded");
    assert_eq!(app.row_count().await, 0);

    assert_eq!(put_as_told(&app, &presigned, &bytes).await, StatusCode::OK);
    let confirmed = app.confirm(key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body["file"]["md5"], md5_of(&bytes));
    assert_eq!(confirmed.body["file"]["sha256"], Value::Null);
    assert_eq!(listed_file(&app).await["md5"], md5_of(&bytes));
    // A file uploaded without a digest lists none.
    app.upload_as("user_123", "plain.txt", "text/plain", b"plain".to_vec()).await;
    assert_eq!(listed_file(&app).await["md5"], Value::Null);
}

async fn a_declared_sha256_is_checked_by_the_embedded_store_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = b"sha-256 protected".to_vec();
    let presigned = presign_with(&app, "s.txt", json!({ "sha256": sha256_of(&bytes) })).await;
    assert_eq!(presigned.body["headers"]["x-amz-checksum-sha256"], sha256_of(&bytes));
    assert_eq!(put_as_told(&app, &presigned, b"sha-256 protectee").await, StatusCode::BAD_REQUEST);
    assert_eq!(put_as_told(&app, &presigned, &bytes).await, StatusCode::OK);
    let confirmed = app.confirm(presigned.body["objectKey"].as_str().unwrap()).await;
    assert_eq!(confirmed.body["file"]["sha256"], sha256_of(&bytes), "{}", confirmed.body);
}

async fn malformed_digests_are_refused_with_invalid_checksum(backend: Backend) {
    let app = spawn_app(backend).await;
    for digests in [
        json!({ "md5": "d41d8cd98f00b204e9800998ecf8427e" }),
        json!({ "md5": "not base64" }),
        json!({ "sha256": md5_of(b"x") }),
    ] {
        let refused = presign_with(&app, "a.txt", digests.clone()).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "invalid-checksum"), "{digests}");
    }
}

async fn part_digests_are_signed_into_part_urls_and_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = crate::helpers::random_bytes(17 * 1024 * 1024);
    let body = json!({ "fileName": "big.bin", "contentType": "application/octet-stream", "size": bytes.len() });
    let start = app.post_json_as("user_123", "/multipart/start", &body).await;
    let part_size = start.body["partSize"].as_u64().unwrap() as usize;
    let parts: Vec<&[u8]> = bytes.chunks(part_size).collect();
    assert_eq!(parts.len(), 2);
    let md5s: Vec<String> = parts.iter().map(|p| md5_of(p)).collect();
    let request = json!({
        "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"],
        "partNumbers": [1, 2], "md5s": md5s,
    });
    let urls = app.post_json_as("user_123", "/multipart/urls", &request).await;
    assert_eq!(urls.status, StatusCode::OK, "{}", urls.body);

    let mut completed = Vec::new();
    for (i, entry) in urls.body["urls"].as_array().unwrap().iter().enumerate() {
        let url = entry["url"].as_str().unwrap();
        let put = |bytes: Vec<u8>| app.http.put(url).header("content-md5", &md5s[i]).body(bytes).send();
        let mut wrong = parts[i].to_vec();
        wrong[7] ^= 0xff;
        assert_eq!(put(wrong).await.unwrap().status(), StatusCode::BAD_REQUEST, "part {} with other bytes", i + 1);
        let response = put(parts[i].to_vec()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        completed.push(json!({ "partNumber": i + 1, "etag": response.headers()["etag"].to_str().unwrap() }));
    }
    let complete =
        json!({ "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"], "parts": completed });
    let done = app.post_json_as("user_123", "/multipart/complete", &complete).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(app.download_as("user_123", done.body["file"]["id"].as_i64().unwrap()).await, bytes);

    // One digest per part number, each well formed.
    let mismatched = json!({
        "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"], "partNumbers": [1, 2], "md5s": ["x"],
    });
    assert_eq!(app.post_json_as("user_123", "/multipart/urls", &mismatched).await.code(), "invalid-body");
}

/// moto (5.2) checks neither signatures nor `Content-MD5`: against it this shows only that the
/// signed digest header is accepted by a generic S3 and recorded. The refusal of other bytes is
/// proven on the embedded store above (and AWS S3, B2, R2 and MinIO check `Content-MD5`).
async fn a_declared_md5_travels_through_moto_and_is_recorded(backend: Backend) {
    let app = spawn_against_moto(backend, &[]).await;
    let bytes = b"sent through moto".to_vec();
    let presigned = presign_with(&app, "m.txt", json!({ "md5": md5_of(&bytes) })).await;
    assert_eq!(put_as_told(&app, &presigned, &bytes).await, StatusCode::OK);
    let confirmed = app.confirm(presigned.body["objectKey"].as_str().unwrap()).await;
    assert_eq!(confirmed.body["file"]["md5"], md5_of(&bytes), "{}", confirmed.body);
    assert_eq!(listed_file(&app).await["md5"], md5_of(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_is_refused_for_a_bucket_that_does_not_take_checksum_headers() {
    // B2 refuses x-amz-checksum-*: unless FERRY_S3_CHECKSUM_HEADERS says the provider takes
    // them, a SHA-256 is refused plainly instead of being dropped or breaking the upload.
    let app = spawn_against_moto(Backend::Sqlite, &[]).await;
    let refused = presign_with(&app, "s.txt", json!({ "sha256": sha256_of(b"s") })).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::BAD_REQUEST, "checksum-unsupported"));

    let app = spawn_against_moto(Backend::Sqlite, &[("FERRY_S3_CHECKSUM_HEADERS", "true")]).await;
    let presigned = presign_with(&app, "s.txt", json!({ "sha256": sha256_of(b"s") })).await;
    assert_eq!(put_as_told(&app, &presigned, b"s").await, StatusCode::OK);
    let confirmed = app.confirm(presigned.body["objectKey"].as_str().unwrap()).await;
    assert_eq!(confirmed.body["file"]["sha256"], sha256_of(b"s"));
}

crate::on_both_backends!(
    a_declared_md5_is_signed_in_checked_by_the_store_and_recorded,
    a_declared_sha256_is_checked_by_the_embedded_store_and_recorded,
    part_digests_are_signed_into_part_urls_and_checked,
    a_declared_md5_travels_through_moto_and_is_recorded,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(malformed_digests_are_refused_with_invalid_checksum,);
