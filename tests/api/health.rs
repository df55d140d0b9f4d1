//! Health, readiness and metrics: what an operator's probes and scrapers see.

use reqwest::StatusCode;

use crate::helpers::{Backend, ExternalStore, reply, spawn_app, spawn_app_with_store};

crate::on_both_backends!(
    health_and_readiness_answer_when_all_is_well,
    metrics_count_requests_by_route_and_refusals_by_code
);
crate::on_one_backend!(readiness_answers_not_ready_while_the_store_is_down);

async fn health_and_readiness_answer_when_all_is_well(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = reply(app.get_as("user_123", "/healthz").await).await;
    assert_eq!((health.status, health.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let ready = reply(app.get_as("user_123", "/readyz").await).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!((ready.body["database"].as_str(), ready.body["store"].as_str()), (Some("ok"), Some("ok")));
}

async fn metrics_count_requests_by_route_and_refusals_by_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("user_123", "m.txt", "text/plain", b"m".to_vec()).await;
    app.confirm(file["objectKey"].as_str().unwrap()).await;
    app.get_as("user_123", &format!("/files/{}/download", file["id"])).await;
    app.presign("x", "not a type").await;
    let text = app.get_as("user_123", "/metrics").await.text().await.unwrap();
    for line in [
        "ferry_http_requests_total{route=\"/presign-b2-upload\",method=\"POST\",status=\"200\"} 1",
        "ferry_http_requests_total{route=\"/presign-b2-upload\",method=\"POST\",status=\"400\"} 1",
        "ferry_http_requests_total{route=\"/files/{id}/download\",method=\"GET\",status=\"302\"} 1",
        "ferry_http_request_duration_seconds_count{route=\"/save-b2-metadata\",method=\"POST\"} 2",
        "ferry_presigns_total 1",
        "ferry_confirms_new_total 1",
        "ferry_confirms_repeated_total 1",
        "ferry_refusals_total{code=\"invalid-content-type\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
}

async fn readiness_answers_not_ready_while_the_store_is_down(backend: Backend) {
    let mut store = ExternalStore::start().await;
    let app = spawn_app_with_store(backend, &store, &[]).await;
    assert_eq!(app.get_as("user_123", "/readyz").await.status(), StatusCode::OK);
    store.stop().await;
    let ready = reply(app.get_as("user_123", "/readyz").await).await;
    assert_eq!((ready.status, ready.code()), (StatusCode::SERVICE_UNAVAILABLE, "not-ready"), "{}", ready.body);
    assert_eq!(ready.body["database"], "ok");
    assert_ne!(ready.body["store"], "ok", "{}", ready.body);
    // The process itself is still up.
    assert_eq!(app.get_as("user_123", "/healthz").await.status(), StatusCode::OK);
    store.restart().await;
    assert_eq!(app.get_as("user_123", "/readyz").await.status(), StatusCode::OK, "ready again once it is back");
}
