//! Every client mistake gets a clear 4xx JSON error with a stable code, and writes nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, spawn_app};

crate::on_both_backends!(dangerous_file_names_become_safe_keys,);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    missing_and_empty_fields_are_named,
    wrong_json_types_are_refused,
    malformed_json_is_refused,
    a_body_that_is_not_json_is_refused,
    absurd_content_types_are_refused,
    over_long_names_are_refused,
    oversized_bodies_are_refused,
    unknown_routes_and_methods_answer_json,
    a_bad_user_header_is_refused,
);

async fn missing_and_empty_fields_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, field) in [
        (json!({ "contentType": "image/png" }), "fileName"),
        (json!({ "fileName": "", "contentType": "image/png" }), "fileName"),
        (json!({ "fileName": "a.png" }), "contentType"),
        (json!({ "fileName": "a.png", "contentType": "  " }), "contentType"),
    ] {
        let r = app.post_json_as("user_123", "/presign-b2-upload", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.code(), "missing-field");
        assert_eq!(r.body["success"], false);
        assert!(r.body["error"].as_str().unwrap().contains(field));
    }
    let r = app.post_json_as("user_123", "/save-b2-metadata", &json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "missing-field"));
}

async fn wrong_json_types_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({ "fileName": 5, "contentType": "image/png" }),
        json!({ "fileName": "a", "contentType": ["image/png"] }),
        json!({ "fileName": "a", "contentType": "image/png", "size": -1 }),
        json!("fileName"),
    ] {
        let r = app.post_json_as("user_123", "/presign-b2-upload", &body).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-body"), "{body}");
    }
    let r = app.post_json_as("user_123", "/save-b2-metadata", &json!({ "objectKey": 42 })).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-body"));
}

async fn malformed_json_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in ["{", "{\"fileName\": }", "", "{} x"] {
        let r = app.post_raw("/presign-b2-upload", "application/json", body).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "malformed-json"), "{body:?}: {}", r.body);
    }
    // The parser stops at the first error: a first value of the wrong shape is reported as
    // such, before the garbage after it is reached (the README says so under API).
    let r = app.post_raw("/presign-b2-upload", "application/json", "null x").await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-body"), "{}", r.body);
}

async fn a_body_that_is_not_json_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.post_raw("/presign-b2-upload", "text/plain", "fileName=a").await;
    assert_eq!((r.status, r.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"));
}

async fn absurd_content_types_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = format!("image/{}", "x".repeat(300));
    for content_type in ["png", "image/", "a b/c", "image/png\r\nx-evil: 1", long.as_str(), "ïmage/png"] {
        let r = app.presign("a.png", content_type).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-content-type"), "{content_type:?}");
    }
}

async fn over_long_names_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.presign(&"a".repeat(5000), "text/plain").await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-file-name"));
    // A long but acceptable name is shortened, keeping its extension.
    let r = app.presign(&format!("{}.txt", "b".repeat(1000)), "text/plain").await;
    assert_eq!(r.status, StatusCode::OK);
    let key = r.body["objectKey"].as_str().unwrap();
    assert!(key.len() <= 240 && key.ends_with("b.txt"), "{key}");
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = format!("{{\"fileName\": \"{}\", \"contentType\": \"image/png\"}}", "a".repeat(200_000));
    let r = app.post_raw("/presign-b2-upload", "application/json", huge).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"));
}

async fn unknown_routes_and_methods_answer_json(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = crate::helpers::reply(app.get_as("user_123", "/nope").await).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not-found"));
    let r = crate::helpers::reply(app.get_as("user_123", "/presign-b2-upload").await).await;
    assert_eq!((r.status, r.code()), (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"));
    let r = crate::helpers::reply(app.get_as("user_123", "/files/abc/download").await).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "file-not-found"));
    let r = crate::helpers::reply(app.get_as("user_123", "/files?limit=0").await).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-query"));
    let r = crate::helpers::reply(app.get_as("user_123", "/files?cursor=zzz").await).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-query"));
}

async fn dangerous_file_names_become_safe_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    for (name, expected_suffix) in [
        ("../../etc/passwd", "-etc_passwd"),
        ("a/b\\c", "-a_b_c"),
        ("nul\0byte.txt", "-nulbyte.txt"),
        ("evil\u{202E}gnp.exe", "-evilgnp.exe"),
    ] {
        let file = app.upload_as("user_123", name, "application/octet-stream", b"payload".to_vec()).await;
        let key = file["objectKey"].as_str().unwrap();
        assert!(key.ends_with(expected_suffix), "{name:?} became {key:?}");
        assert!(!key.contains('/') && !key.contains("..") && !key.contains('\0'));
    }
    // Nothing was written outside the data directory's object store.
    let outside = app.data_dir.path().parent().unwrap().join("etc_passwd");
    assert!(!outside.exists());
    assert_eq!(app.row_count().await, 4);
}

async fn a_bad_user_header_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_long = "u".repeat(300);
    let r = app.presign_as(&too_long, "a.png", "image/png").await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid-user-id"));
}
