//! Variables that change what clients are given: URL lifetimes, the public endpoint, the bucket
//! and region URLs are signed for, and what the page is told. (They never reach the database.)

use reqwest::StatusCode;

use crate::helpers::{Backend, ExternalStore, spawn_app_with, spawn_app_with_store};

crate::on_one_backend!(
    ferry_download_url_ttl_sets_the_lifetime_of_download_urls,
    ferry_store_public_url_is_the_host_urls_are_signed_for,
    ferry_store_bucket_names_the_embedded_stores_bucket,
    s3_public_endpoint_and_s3_region_shape_urls_for_an_external_bucket,
    the_page_is_told_its_multipart_threshold_checksum_limit_and_resume_window,
);

fn query_value(url: &str, name: &str) -> String {
    let url: url::Url = url.parse().unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

async fn ferry_download_url_ttl_sets_the_lifetime_of_download_urls(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_DOWNLOAD_URL_TTL", "42"), ("FERRY_UPLOAD_URL_TTL", "77")]).await;
    let presigned = app.presign("t.txt", "text/plain").await;
    assert_eq!(query_value(presigned.body["presignedUrl"].as_str().unwrap(), "X-Amz-Expires"), "77");
    let file = app.upload_as("user_123", "t.txt", "text/plain", b"ttl".to_vec()).await;
    let redirect = app.get_as("user_123", &format!("/files/{}/download", file["id"])).await;
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(query_value(&location, "X-Amz-Expires"), "42");
}

async fn ferry_store_public_url_is_the_host_urls_are_signed_for(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_STORE_PUBLIC_URL", "http://files.example:8443")]).await;
    let presigned = app.presign("p.txt", "text/plain").await;
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    assert!(url.starts_with("http://files.example:8443/ferry/"), "{url}");
    assert!(presigned.body["publicFileUrl"].as_str().unwrap().starts_with("http://files.example:8443/ferry/"));
    // A proxy at that name forwards to the store: the signature is good for the public host
    // (sent as `Host`) and for no other.
    let real = url.replace("files.example:8443", &app.store_addr.unwrap().to_string());
    let put = |host: &'static str| {
        app.http.put(&real).header("host", host).header("content-type", "text/plain").body("via proxy").send()
    };
    assert_eq!(put("files.example:9999").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(put("files.example:8443").await.unwrap().status(), StatusCode::OK);
}

async fn ferry_store_bucket_names_the_embedded_stores_bucket(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_STORE_BUCKET", "uploads")]).await;
    let file = app.upload_as("user_123", "b.txt", "text/plain", b"in uploads".to_vec()).await;
    let key = file["objectKey"].as_str().unwrap();
    assert_eq!(file["fileUrl"], format!("http://{}/uploads/{key}", app.store_addr.unwrap()));
    assert!(app.data_dir.path().join("objects").join("uploads").is_dir());
    assert_eq!(app.download_as("user_123", file["id"].as_i64().unwrap()).await, b"in uploads");
}

async fn s3_public_endpoint_and_s3_region_shape_urls_for_an_external_bucket(backend: Backend) {
    let store = ExternalStore::start().await;
    let app = spawn_app_with_store(
        backend,
        &store,
        &[("S3_PUBLIC_ENDPOINT", "https://cdn.example"), ("S3_REGION", "eu-central-1")],
    )
    .await;
    let presigned = app.presign("r.txt", "text/plain").await;
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    assert!(url.starts_with("https://cdn.example/ext/"), "{url}");
    assert!(query_value(url, "X-Amz-Credential").contains("/eu-central-1/s3/aws4_request"), "{url}");
}

async fn the_page_is_told_its_multipart_threshold_checksum_limit_and_resume_window(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("FERRY_PAGE_MULTIPART_THRESHOLD", "12345678"),
            ("FERRY_PAGE_CHECKSUM_MAX_SIZE", "2345"),
            ("FERRY_UPLOAD_URL_TTL", "600"),
            ("FERRY_CONFIRM_GRACE", "120"),
        ],
    )
    .await;
    let config: serde_json::Value = app.http.get(app.url("/page-config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (config["multipartThreshold"].as_u64(), config["checksumMaxSize"].as_u64()),
        (Some(12345678), Some(2345))
    );
    // A resume record is worth keeping while its upload can still be confirmed.
    assert_eq!(config["resumeWindowSeconds"].as_u64(), Some(720));
}
