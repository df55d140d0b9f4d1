//! The guide's curl walk-through, step by step, with real bytes.

use reqwest::StatusCode;

use crate::helpers::{Backend, random_bytes, spawn_app};

crate::on_both_backends!(
    the_guides_walkthrough_stores_the_bytes_and_the_row,
    a_confirm_ignores_the_clients_public_file_url,
    the_guides_response_shapes_are_kept
);

async fn the_guides_walkthrough_stores_the_bytes_and_the_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let bytes = random_bytes(300_000);

    // 1. Get a presigned URL.
    let presigned = app.presign("test-b2.png", "image/png").await;
    assert_eq!(presigned.status, StatusCode::OK);
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert!(key.ends_with("-test-b2.png"), "{key}");
    assert!(!url.contains("x-amz-checksum") && !url.contains("x-amz-sdk-checksum"), "{url}");

    // 2. Upload straight to the bucket.
    assert_eq!(app.put(url, bytes.clone(), "image/png").await, StatusCode::OK);

    // 3. Save the metadata.
    let public_url = presigned.body["publicFileUrl"].as_str().unwrap();
    let saved = app
        .post_json_as(
            "user_123",
            "/save-b2-metadata",
            &serde_json::json!({ "objectKey": key, "publicFileUrl": public_url }),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["success"], true);
    assert_eq!(saved.body["file"]["size"], 300_000);
    assert_eq!(saved.body["file"]["contentType"], "image/png");

    // The guide's own SELECT finds the row.
    assert_eq!(app.guide_select().await, vec![(key.to_owned(), "user_123".to_owned())]);

    // And the file downloads as the same bytes.
    let id = saved.body["file"]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("user_123", id).await, bytes);
}

async fn a_confirm_ignores_the_clients_public_file_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("a.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"hi".to_vec(), "text/plain").await;
    let saved = app
        .post_json_as(
            "user_123",
            "/save-b2-metadata",
            &serde_json::json!({ "objectKey": key, "publicFileUrl": "https://attacker.example/x" }),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK);
    assert_eq!(saved.body["file"]["fileUrl"], presigned.body["publicFileUrl"]);
}

async fn the_guides_response_shapes_are_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("x.png", "image/png").await;
    for field in ["presignedUrl", "objectKey", "publicFileUrl"] {
        assert!(presigned.body[field].is_string(), "{field} missing: {}", presigned.body);
    }
    assert_eq!(presigned.body["success"], true);
    let public = presigned.body["publicFileUrl"].as_str().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert!(public.ends_with(&format!("/ferry/{key}")), "publicFileUrl is endpoint/bucket/key: {public}");
}
