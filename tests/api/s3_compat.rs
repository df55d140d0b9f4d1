//! The same S3 client code against an S3 server this project did not write: moto, started by
//! the README's test command (`FERRY_TEST_MOTO_URL`).

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::S3Action;

use crate::helpers::{Backend, TestApp, random_bytes, spawn_app_with};

crate::on_both_backends!(the_guides_walkthrough_works_against_moto, deletes_and_cleanup_work_against_moto);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_cors_rules_are_applied_with_put_bucket_cors() {
    let endpoint = std::env::var("FERRY_TEST_MOTO_URL").expect("FERRY_TEST_MOTO_URL");
    let app = spawn_against_moto(Backend::Sqlite, &[]).await;
    let bucket_name = app.core.bucket.bucket.clone();
    let cfg = ferry::config::S3Config {
        endpoint: endpoint.parse().unwrap(),
        public_endpoint: endpoint.parse().unwrap(),
        bucket: bucket_name.clone(),
        region: "us-east-1".into(),
        access_key_id: "moto-key".into(),
        secret_access_key: ferry::config::Secret::new("moto-secret"),
        checksum_headers: false,
    };
    let rules = ferry::storage::cors::CorsRules::new(vec!["https://app.example".into()], 600).unwrap();
    rules.apply(&cfg).await.unwrap();

    let bucket =
        rusty_s3::Bucket::new(endpoint.parse().unwrap(), rusty_s3::UrlStyle::Path, bucket_name, "us-east-1").unwrap();
    let signed = rusty_s3::signing::sign(
        &jiff::Timestamp::now(),
        rusty_s3::Method::Get,
        bucket.base_url().clone(),
        "moto-key",
        "moto-secret",
        None,
        "us-east-1",
        60,
        std::iter::once(("cors", "")),
        std::iter::empty(),
    );
    let stored = app.http.get(signed).send().await.unwrap().text().await.unwrap();
    assert!(stored.contains("https://app.example") && stored.contains("PUT"), "{stored}");
}

pub async fn spawn_against_moto(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let endpoint = std::env::var("FERRY_TEST_MOTO_URL")
        .expect("S3 compatibility tests need FERRY_TEST_MOTO_URL (the README's test command starts moto and sets it)");
    let bucket_name = format!("ferry-{}", uuid::Uuid::new_v4().simple());
    let creds = rusty_s3::Credentials::new("moto-key", "moto-secret");
    let bucket =
        rusty_s3::Bucket::new(endpoint.parse().unwrap(), rusty_s3::UrlStyle::Path, bucket_name.clone(), "us-east-1")
            .unwrap();
    let create = bucket.create_bucket(&creds).sign(Duration::from_secs(60));
    let created = reqwest::Client::new().put(create).header("content-length", "0").send().await.unwrap();
    assert!(created.status().is_success(), "moto created the bucket: {}", created.status());
    let mut vars = vec![
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_BUCKET", bucket_name.as_str()),
        ("S3_ACCESS_KEY_ID", "moto-key"),
        ("S3_SECRET_ACCESS_KEY", "moto-secret"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(backend, &vars).await
}

async fn the_guides_walkthrough_works_against_moto(backend: Backend) {
    let app = spawn_against_moto(backend, &[]).await;
    assert!(app.store_addr.is_none(), "no embedded store when a bucket is configured");
    let bytes = random_bytes(1_500_000);
    let file = app.upload_as("user_123", "photo.jpg", "image/jpeg", bytes.clone()).await;
    assert_eq!(file["size"], 1_500_000);
    assert_eq!(file["contentType"], "image/jpeg");
    assert_eq!(app.guide_select().await.len(), 1);
    assert_eq!(app.download_as("user_123", file["id"].as_i64().unwrap()).await, bytes);
    let ready = app.get_as("user_123", "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
}

async fn deletes_and_cleanup_work_against_moto(backend: Backend) {
    let app = spawn_against_moto(backend, &[("FERRY_CONFIRM_GRACE", "0"), ("FERRY_SWEEP_MARGIN", "0")]).await;
    let file = app.upload_as("user_123", "gone.txt", "text/plain", b"gone".to_vec()).await;
    let key = file["objectKey"].as_str().unwrap();
    let deleted = app.delete_as("user_123", &format!("/files/{}", file["id"])).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert!(!app.object_exists(key).await);

    let orphan = app.issue_key("user_123", "orphan.txt", crate::helpers::now_unix() - 10);
    let url = app.core.store.presign_put(&ferry::storage::PutRequest {
        key: &orphan,
        content_type: Some("text/plain"),
        content_length: None,
        content_md5: None,
        checksum_sha256: None,
        ttl: Duration::from_secs(60),
    });
    assert_eq!(app.put(url.as_str(), b"o".to_vec(), "text/plain").await, StatusCode::OK);
    let report = app.core.sweeper.sweep_once(false).await.unwrap();
    assert_eq!(report.orphans, vec![orphan.clone()]);
    assert!(!app.object_exists(&orphan).await);
}
