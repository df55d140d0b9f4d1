//! The embedded store is a real S3 endpoint: ranges, multipart, CORS, and no way out of its
//! directory.

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::S3Action;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};

use crate::helpers::{Backend, random_bytes, spawn_app, spawn_app_with};

crate::on_both_backends!(a_ranged_get_returns_just_the_range,);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_signed_traversal_key_stays_inside_the_store,
    multipart_uploads_accept_only_the_stores_own_etags,
    the_store_answers_cors_preflights_for_allowed_origins_only,
);

const HOUR: Duration = Duration::from_secs(3600);

async fn a_ranged_get_returns_just_the_range(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = random_bytes(10_000);
    let file = app.upload_as("user_123", "r.bin", "application/octet-stream", bytes.clone()).await;
    let (bucket, creds) = app.store_bucket();
    let url = bucket.get_object(Some(&creds), file["objectKey"].as_str().unwrap()).sign(HOUR);
    let response = app.http.get(url).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[100..200]);
}

/// A presigned URL (SigV4, `host` signed) whose path is sent as `sent_path` but signed as
/// `signed_path`: what the store checks is the decoded key, so a traversal key has to be signed
/// in its decoded form, which no URL library will write (they fold `../` away).
fn presign_raw(app: &crate::helpers::TestApp, method: &str, sent_path: &str, signed_path: &str) -> String {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let hmac = |key: &[u8], data: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let secret = std::fs::read_to_string(app.data_dir.path().join(".ferry-secret")).unwrap();
    let host = app.store_addr.unwrap().to_string();
    let now = jiff::Timestamp::now();
    let (amz_date, date) = (now.strftime("%Y%m%dT%H%M%SZ").to_string(), now.strftime("%Y%m%d").to_string());
    let scope = format!("{date}/us-east-1/s3/aws4_request");
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ferry%2F{}&X-Amz-Date={amz_date}&X-Amz-Expires=300&X-Amz-SignedHeaders=host",
        scope.replace('/', "%2F")
    );
    let canonical = format!("{method}\n{signed_path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", secret.trim()).as_bytes(), &date);
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    format!("http://{host}{sent_path}?{query}&X-Amz-Signature={}", hex::encode(hmac(&key, &to_sign)))
}

async fn a_signed_traversal_key_stays_inside_the_store(backend: Backend) {
    let app = spawn_app(backend).await;
    // The separators are sent encoded; the store decodes the key to `../../../../escaped.txt`,
    // and the signature covers exactly that, so it is accepted: the defence under test is the
    // disk layout (files named by the key's hash, see `embedded::disk`), not the signature.
    let sent = "/ferry/..%2F..%2F..%2F..%2Fescaped.txt";
    let signed = "/ferry/../../../../escaped.txt";
    let put = app.http.put(presign_raw(&app, "PUT", sent, signed)).body(b"trapped".to_vec()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK, "{}", put.text().await.unwrap());
    // Stored, under that very key, and inside the store: nothing named escaped.txt anywhere the
    // `..`s could have reached (the bucket directory and every directory above it).
    let got = app.http.get(presign_raw(&app, "GET", sent, signed)).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"trapped");
    let bucket_dir = app.data_dir.path().join("objects").join("ferry");
    for dir in bucket_dir.ancestors().take(7) {
        assert!(!dir.join("escaped.txt").exists(), "{} holds the escaped file", dir.display());
    }
    // A signature over another spelling of the path is still refused.
    let mismatched = presign_raw(&app, "PUT", sent, "/ferry/..%2F..%2F..%2F..%2Fescaped.txt");
    assert_eq!(app.put(&mismatched, b"again".to_vec(), "text/plain").await, StatusCode::FORBIDDEN);
}

async fn multipart_uploads_accept_only_the_stores_own_etags(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bucket, creds) = app.store_bucket();
    let key = "big/multi.bin";
    let create = CreateMultipartUpload::new(&bucket, Some(&creds), key).sign(HOUR);
    let body = app.http.post(create).send().await.unwrap().text().await.unwrap();
    let upload_id = CreateMultipartUpload::parse_response(&body).unwrap().upload_id().to_owned();

    let parts = [random_bytes(5 * 1024 * 1024), random_bytes(1234)];
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let url = bucket.upload_part(Some(&creds), key, (i + 1) as u16, &upload_id).sign(HOUR);
        let response = app.http.put(url).body(part.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        etags.push(response.headers()["etag"].to_str().unwrap().trim_matches('"').to_owned());
    }

    let bogus = ["0123456789abcdef0123456789abcdef", etags[1].as_str()];
    let complete = CompleteMultipartUpload::new(&bucket, Some(&creds), key, &upload_id, bogus.iter().copied());
    let url = complete.sign(HOUR);
    let response = app.http.post(url).body(complete.body()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a bogus part ETag is refused");
    assert!(!app.object_exists(key).await);

    let complete =
        CompleteMultipartUpload::new(&bucket, Some(&creds), key, &upload_id, etags.iter().map(String::as_str));
    let url = complete.sign(HOUR);
    let response = app.http.post(url).body(complete.body()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let info = app.core.store.head(key).await.unwrap().unwrap();
    assert_eq!(info.size, (5 * 1024 * 1024 + 1234) as u64);
    assert!(info.etag.unwrap().ends_with("-2"));

    let url = bucket.get_object(Some(&creds), key).sign(HOUR);
    let stored = app.http.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(stored.len(), parts[0].len() + parts[1].len());
    assert_eq!(&stored[..parts[0].len()], parts[0].as_slice());
    assert_eq!(&stored[parts[0].len()..], parts[1].as_slice());
}

async fn the_store_answers_cors_preflights_for_allowed_origins_only(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_CORS_ORIGINS", "https://app.example")]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("http://{}/ferry/some-key", app.store_addr.unwrap()))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
    assert!(methods.contains("PUT"), "{methods}");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

/// boto3 (installed with moto by the README's test command) uses the embedded store as it would
/// AWS: PUT with checksum trailers, GET, HEAD, multipart through the transfer manager, list,
/// delete, and a wrong secret refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_uses_the_embedded_store_like_any_s3() {
    run_boto3("boto3_roundtrip.py").await;
}

/// The operations tools rely on, each checked through boto3 (`tests/clients/boto3_s3_api.py`
/// names them): buckets, metadata, conditional reads and writes, copies, listings, batch
/// deletes, ListParts, ListMultipartUploads, a repeated completion, stored checksums, and 501
/// for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_finds_the_s3_operations_tools_rely_on() {
    run_boto3("boto3_s3_api.py").await;
}

async fn run_boto3(script: &str) {
    let app = spawn_app(Backend::Sqlite).await;
    let secret = std::fs::read_to_string(app.data_dir.path().join(".ferry-secret")).unwrap();
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let endpoint = format!("http://{}", app.store_addr.unwrap());
    let output = tokio::process::Command::new("python3")
        .args([script.as_str(), endpoint.as_str(), "ferry", "ferry", secret.trim()])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "boto3 failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// SDKs address buckets as `<bucket>.<host>` by default where the name allows: a subdomain of
/// the store's host name (or of `localhost`) names the bucket; the plain name stays path style.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style_requests_reach_the_bucket_named_in_the_host() {
    let app = spawn_app(Backend::Sqlite).await;
    let store = app.store_addr.unwrap();
    let (path_bucket, creds) = app.store_bucket();
    let endpoint = format!("http://localhost:{}", store.port()).parse().unwrap();
    let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::VirtualHost, "ferry", "us-east-1").unwrap();
    let http = reqwest::Client::builder().resolve("ferry.localhost", store).build().unwrap();

    let put = bucket.put_object(Some(&creds), "vhost/a.txt").sign(HOUR);
    assert_eq!(put.host_str(), Some("ferry.localhost"));
    assert_eq!(http.put(put).body("virtual").send().await.unwrap().status(), StatusCode::OK);
    let get = path_bucket.get_object(Some(&creds), "vhost/a.txt").sign(HOUR);
    assert_eq!(app.http.get(get).send().await.unwrap().text().await.unwrap(), "virtual", "the same bucket");
    let get = bucket.get_object(Some(&creds), "vhost/a.txt").sign(HOUR);
    assert_eq!(http.get(get).send().await.unwrap().text().await.unwrap(), "virtual");
    let list = bucket.list_objects_v2(Some(&creds)).sign(HOUR);
    assert!(http.get(list).send().await.unwrap().text().await.unwrap().contains("<Key>vhost/a.txt</Key>"));

    // `localhost` itself is path style.
    let endpoint = format!("http://localhost:{}", store.port()).parse().unwrap();
    let by_path = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "ferry", "us-east-1").unwrap();
    let get = by_path.get_object(Some(&creds), "vhost/a.txt").sign(HOUR);
    assert_eq!(http.get(get).send().await.unwrap().text().await.unwrap(), "virtual");
}
