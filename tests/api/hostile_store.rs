//! The embedded store facing hostile traffic: confirmed objects are sealed, create-only writes
//! are honoured, unsigned response-shaping headers are dropped, active content is never served
//! inline, stalled bodies are cut off, and the files on disk are the owner's only.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rusty_s3::S3Action;
use rusty_s3::actions::CreateMultipartUpload;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

crate::on_both_backends!(
    a_confirmed_object_cannot_be_replaced_but_can_be_deleted,
    an_unsigned_content_disposition_is_dropped_and_active_content_is_an_attachment,
    unsigned_user_metadata_is_refused_as_on_s3,
    the_stores_files_are_owner_only,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(a_create_only_put_is_refused_on_an_existing_key,);

const MINUTE: Duration = Duration::from_secs(60);

/// A PUT signed by Ferry's credentials (as any holder of a presigned URL could send it), with
/// extra unsigned headers.
async fn signed_put(app: &TestApp, key: &str, bytes: &[u8], extra: &[(&str, &str)]) -> StatusCode {
    let (bucket, creds) = app.store_bucket();
    let mut action = bucket.put_object(Some(&creds), key);
    action.headers_mut().insert("content-type", "text/plain");
    let url = action.sign(MINUTE);
    let mut request = app.http.put(url).header("content-type", "text/plain").body(bytes.to_vec());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

async fn signed_get(app: &TestApp, key: &str) -> reqwest::Response {
    let (bucket, creds) = app.store_bucket();
    app.http.get(bucket.get_object(Some(&creds), key).sign(MINUTE)).send().await.unwrap()
}

async fn a_confirmed_object_cannot_be_replaced_but_can_be_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("report.txt", "text/plain").await;
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert_eq!(app.put(url, b"original".to_vec(), "text/plain").await, StatusCode::OK);
    // Before the confirm, the uploader may still replace their upload.
    assert_eq!(app.put(url, b"corrected".to_vec(), "text/plain").await, StatusCode::OK);
    let confirmed = app.confirm(key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let id = confirmed.body["file"]["id"].as_i64().unwrap();

    // The same presigned URL (still valid), then any signed PUT: refused, object unchanged.
    assert_eq!(app.put(url, b"swapped".to_vec(), "text/plain").await, StatusCode::PRECONDITION_FAILED);
    assert_eq!(signed_put(&app, key, b"swapped again", &[]).await, StatusCode::PRECONDITION_FAILED);
    // Nor can a multipart upload be started onto it.
    let (bucket, creds) = app.store_bucket();
    let create = CreateMultipartUpload::new(&bucket, Some(&creds), key).sign(MINUTE);
    let started = app.http.post(create).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::PRECONDITION_FAILED);
    // Nor can another object be copied over it, nor can it be copied onto itself.
    assert_eq!(signed_put(&app, "other.txt", b"other", &[]).await, StatusCode::OK);
    let copy_other = [("x-amz-copy-source", "ferry/other.txt")];
    assert_eq!(signed_put(&app, key, b"", &copy_other).await, StatusCode::PRECONDITION_FAILED);
    let source = format!("ferry/{key}");
    let copy_self = [("x-amz-copy-source", source.as_str()), ("x-amz-metadata-directive", "REPLACE")];
    assert_eq!(signed_put(&app, key, b"", &copy_self).await, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.download_as("user_123", id).await, b"corrected");
    let again = app.confirm(key).await;
    assert_eq!(again.status, StatusCode::OK, "a repeated confirm still succeeds: {}", again.body);

    // Ferry deletes sealed objects as any other.
    let deleted = app.delete_as("user_123", &format!("/files/{id}")).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(!app.object_exists(key).await);
}

/// Whoever holds a presigned URL may send the bytes it was signed for, not attach metadata of
/// their own that the store would serve back.
async fn unsigned_user_metadata_is_refused_as_on_s3(backend: Backend) {
    let app = spawn_app(backend).await;
    let mallory = [("x-amz-meta-owner", "mallory")];
    assert_eq!(signed_put(&app, "meta.txt", b"bytes", &mallory).await, StatusCode::FORBIDDEN);
    assert!(!app.object_exists("meta.txt").await);
    // Signed, it is kept and served back.
    let (bucket, creds) = app.store_bucket();
    let mut action = bucket.put_object(Some(&creds), "meta.txt");
    action.headers_mut().insert("x-amz-meta-owner", "alice");
    let url = action.sign(MINUTE);
    let put = app.http.put(url).header("x-amz-meta-owner", "alice").body("bytes").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(signed_get(&app, "meta.txt").await.headers()["x-amz-meta-owner"], "alice");
}

async fn a_create_only_put_is_refused_on_an_existing_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let create_only = [("if-none-match", "*")];
    assert_eq!(signed_put(&app, "once.txt", b"first", &create_only).await, StatusCode::OK);
    assert_eq!(signed_put(&app, "once.txt", b"second", &create_only).await, StatusCode::PRECONDITION_FAILED);
    let stored = signed_get(&app, "once.txt").await;
    assert_eq!(stored.bytes().await.unwrap().as_ref(), b"first");
    // Without the condition (and unsealed), an overwrite is an overwrite.
    assert_eq!(signed_put(&app, "once.txt", b"third", &[]).await, StatusCode::OK);
    assert_eq!(signed_get(&app, "once.txt").await.bytes().await.unwrap().as_ref(), b"third");
}

async fn an_unsigned_content_disposition_is_dropped_and_active_content_is_an_attachment(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_PUBLIC_BUCKET", "true")]).await;
    let page = b"<script>alert(document.domain)</script>";
    let presigned = app.presign("page.html", "text/html").await;
    assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    let put = app
        .http
        .put(url)
        .header("content-type", "text/html")
        .header("content-disposition", "inline")
        .body(page.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let confirmed = app.confirm(key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let public_url = confirmed.body["file"]["fileUrl"].as_str().unwrap().to_owned();

    // Anonymous GETs of the public URL, with or without an (unsigned) override.
    for url in [public_url.clone(), format!("{public_url}?response-content-disposition=inline")] {
        let served = app.http.get(&url).send().await.unwrap();
        assert_eq!(served.status(), StatusCode::OK, "{url}");
        let headers = served.headers().clone();
        assert_eq!(headers["content-disposition"], "attachment", "{url}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
        assert_eq!(served.bytes().await.unwrap().as_ref(), page);
    }
    let head = app.http.head(&public_url).send().await.unwrap();
    assert_eq!(head.headers()["content-disposition"], "attachment");
    assert_eq!(head.headers()["x-content-type-options"], "nosniff");

    // A download URL as Ferry signs it for a private bucket names the file: still honoured.
    let location = app.core.store.presign_get(key, Some("page.html"), MINUTE);
    let download = app.http.get(location).send().await.unwrap();
    let disposition = download.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"page.html\""), "{disposition}");

    // A passive type keeps no unsigned disposition either...
    let presigned = app.presign("cat.png", "image/png").await;
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    let put = app
        .http
        .put(url)
        .header("content-type", "image/png")
        .header("content-disposition", "inline; filename=\"cat.html\"")
        .body(b"png".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let served = signed_get(&app, key).await;
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert!(served.headers().get("content-disposition").is_none(), "{:?}", served.headers());
    // Nor can an anonymous reader have it served as something else.
    let public = app.core.store.public_url(key);
    let overridden = format!("{public}?response-content-type=text/html&response-content-disposition=inline");
    let served = app.http.get(overridden).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert!(served.headers().get("content-disposition").is_none(), "{:?}", served.headers());

    // ...but one the signature covers is kept.
    let (bucket, creds) = app.store_bucket();
    let mut action = bucket.put_object(Some(&creds), "signed.png");
    action.headers_mut().insert("content-type", "image/png");
    action.headers_mut().insert("content-disposition", "inline; filename=\"signed.png\"");
    let put = app
        .http
        .put(action.sign(MINUTE))
        .header("content-type", "image/png")
        .header("content-disposition", "inline; filename=\"signed.png\"")
        .body(b"png".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let served = signed_get(&app, "signed.png").await;
    assert_eq!(served.headers()["content-disposition"], "inline; filename=\"signed.png\"");
}

#[cfg(unix)]
fn assert_owner_only(dir: &std::path::Path, files: &mut usize) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            assert_owner_only(&path, files);
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
            *files += 1;
        }
    }
}

async fn the_stores_files_are_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    app.upload_as("user_123", "private.txt", "text/plain", b"mine".to_vec()).await;
    let (bucket, creds) = app.store_bucket();
    let create = CreateMultipartUpload::new(&bucket, Some(&creds), "pending.bin").sign(MINUTE);
    let body = app.http.post(create).send().await.unwrap().text().await.unwrap();
    let upload_id = CreateMultipartUpload::parse_response(&body).unwrap().upload_id().to_owned();
    let part = bucket.upload_part(Some(&creds), "pending.bin", 1, &upload_id).sign(MINUTE);
    assert_eq!(app.http.put(part).body(vec![7u8; 100]).send().await.unwrap().status(), StatusCode::OK);
    #[cfg(unix)]
    {
        let root = app.data_dir.path().join("objects");
        let mut files = 0;
        assert_owner_only(&root, &mut files);
        // One blob and its metadata, the pending upload's description, part, ETag and
        // checksums, the store's directory lock, and the listing index (its database, WAL and
        // shared memory).
        assert_eq!(files, 10);
    }
}

/// A PUT that sends its headers and a few bytes, then nothing, is abandoned after the store's
/// idle period: the connection is answered and closed, and nothing is left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_off_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let options = ferry::embedded::StoreOptions {
        root: root.path(),
        bucket: "idle",
        access_key_id: "idle-key",
        secret_access_key: &ferry::config::Secret::new("idle-secret"),
        public_read: false,
        body_idle_timeout: Duration::from_secs(1),
        max_object_size: u64::MAX,
        host_names: Vec::new(),
    };
    let router = ferry::embedded::router(&options, &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let endpoint = format!("http://{addr}").parse().unwrap();
    let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "idle", "us-east-1").unwrap();
    let creds = rusty_s3::Credentials::new("idle-key", "idle-secret");
    let url = bucket.put_object(Some(&creds), "stalled.bin").sign(MINUTE);

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000\r\n\r\n",
        url.path(),
        url.query().unwrap()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'x'; 1000]).await.unwrap();
    let started = Instant::now();
    // Then nothing: the store must answer and close the connection on its own.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the store closes a stalled connection within the bound")
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "cut off after the idle period, not before: {waited:?}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let head = bucket.head_object(Some(&creds), "stalled.bin").sign(MINUTE);
    assert_eq!(reqwest::Client::new().head(head).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let leftovers: Vec<_> = std::fs::read_dir(root.path().join(".tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.abort();
}
