//! The embedded store refuses every PUT its signature does not cover.

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::S3Action;

use crate::helpers::{Backend, spawn_app};

// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_put_with_another_content_type_is_refused,
    a_tampered_url_is_refused,
    an_unsigned_put_is_refused,
    an_expired_url_is_refused,
    a_put_of_another_length_than_signed_is_refused,
);

async fn presigned_url(app: &crate::helpers::TestApp) -> String {
    app.presign("a.png", "image/png").await.body["presignedUrl"].as_str().unwrap().to_owned()
}

async fn a_put_with_another_content_type_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = presigned_url(&app).await;
    assert_eq!(app.put(&url, b"x".to_vec(), "text/html").await, StatusCode::FORBIDDEN);
}

async fn a_tampered_url_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = presigned_url(&app).await;
    let other_key = url.replacen("-a.png", "-b.png", 1);
    assert_eq!(app.put(&other_key, b"x".to_vec(), "image/png").await, StatusCode::FORBIDDEN);
    let longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=86400");
    assert_eq!(app.put(&longer, b"x".to_vec(), "image/png").await, StatusCode::FORBIDDEN);
}

async fn an_unsigned_put_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = presigned_url(&app).await;
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(app.put(unsigned, b"x".to_vec(), "image/png").await, StatusCode::FORBIDDEN);
}

async fn an_expired_url_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (bucket, creds) = app.store_bucket();
    let mut action = bucket.put_object(Some(&creds), "expired.png");
    action.headers_mut().insert("content-type", "image/png");
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let url = action.sign_with_time(Duration::from_secs(300), &an_hour_ago);
    assert_eq!(app.put(url.as_str(), b"x".to_vec(), "image/png").await, StatusCode::FORBIDDEN);
    assert!(!app.object_exists("expired.png").await);
}

async fn a_put_of_another_length_than_signed_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = serde_json::json!({ "fileName": "a.bin", "contentType": "application/octet-stream", "size": 10 });
    let presigned = app.post_json_as("user_123", "/presign-b2-upload", &body).await;
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert_eq!(app.put(url, vec![0; 11], "application/octet-stream").await, StatusCode::FORBIDDEN);
    assert!(!app.object_exists(key).await);
    assert_eq!(app.put(url, vec![0; 10], "application/octet-stream").await, StatusCode::OK);
}
