//! Stopping: requests in flight finish, new connections are refused, the server stops within
//! its grace period.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, now_unix, random_bytes, spawn_app_until, spawn_app_with};

crate::on_both_backends!(
    the_periodic_cleanup_removes_an_abandoned_upload_by_itself,
    a_multipart_completion_in_flight_at_shutdown_is_answered,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(a_shutdown_lets_an_upload_in_flight_finish_and_refuses_new_connections,);

async fn a_shutdown_lets_an_upload_in_flight_finish_and_refuses_new_connections(backend: Backend) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = spawn_app_until(backend, &[("FERRY_SHUTDOWN_GRACE", "20")], async {
        let _ = stopped.await;
    })
    .await;
    let presigned = app.presign("slow.bin", "application/octet-stream").await;
    let url: url::Url = presigned.body["presignedUrl"].as_str().unwrap().parse().unwrap();
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    // Half of a PUT into the embedded store...
    let body = vec![7u8; 200_000];
    let mut put = TcpStream::connect(app.store_addr.unwrap()).await.unwrap();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        url.path(),
        url.query().unwrap(),
        app.store_addr.unwrap(),
        body.len()
    );
    put.write_all(head.as_bytes()).await.unwrap();
    put.write_all(&body[..100_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ... when the shutdown begins.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(TcpStream::connect(app.addr).await.is_err(), "the API still accepts new connections");
    // The store closes once the API has drained (nothing was in flight there).
    assert!(TcpStream::connect(app.store_addr.unwrap()).await.is_err(), "the store still accepts new connections");
    // The upload in flight finishes and is answered.
    put.write_all(&body[100_000..]).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), put.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // And the server stops well within its grace period.
    tokio::time::timeout(Duration::from_secs(15), app.server).await.expect("the server stopped").unwrap();
    assert_eq!(app.core.store.head(&key).await.unwrap().map(|o| o.size), Some(200_000));
}

async fn the_periodic_cleanup_removes_an_abandoned_upload_by_itself(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("FERRY_SWEEP_INTERVAL", "1"), ("FERRY_CONFIRM_GRACE", "0"), ("FERRY_SWEEP_MARGIN", "0")],
    )
    .await;
    // Uploaded under a key whose window closed an hour ago, never confirmed.
    let key = app.issue_key("user_123", "abandoned.bin", now_unix() - 3600);
    app.put_directly(&key, b"abandoned".to_vec(), "application/octet-stream").await;
    let kept = app.upload_as("user_123", "kept.txt", "text/plain", b"kept".to_vec()).await;
    // Bounded wait (20 s) for the background pass.
    for _ in 0..100 {
        if !app.object_exists(&key).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!app.object_exists(&key).await, "the periodic cleanup did not remove the abandoned upload");
    assert!(app.object_exists(kept["objectKey"].as_str().unwrap()).await, "a confirmed upload was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_as_soon_as_shutdown_begins() {
    use tower::ServiceExt as _;
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let cfg = ferry::config::Config::from_lookup(|_| None).unwrap();
    let state = ferry::api::AppState::new(&app.core, &cfg);
    let router = ferry::api::router(state.clone(), &[], true);
    let ready = |router: axum::Router| async move {
        let request =
            http::Request::get("/readyz").header("host", "127.0.0.1").body(axum::body::Body::empty()).unwrap();
        router.oneshot(request).await.unwrap().status()
    };
    assert_eq!(ready(router.clone()).await, http::StatusCode::OK);
    state.draining.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(ready(router).await, http::StatusCode::SERVICE_UNAVAILABLE);
}

async fn a_multipart_completion_in_flight_at_shutdown_is_answered(backend: Backend) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = spawn_app_until(backend, &[("FERRY_SHUTDOWN_GRACE", "20")], async {
        let _ = stopped.await;
    })
    .await;
    let bytes = random_bytes(17 * 1024 * 1024 + 5);
    let (key, upload_id, parts) = app.upload_parts("user_123", "big.bin", "application/octet-stream", &bytes).await;
    // The completion's request is half sent when the shutdown begins, so it is in flight (its head
    // read, its body awaited) whatever the machine's load; the rest follows once the shutdown has
    // begun, and the completion (joining 17 MiB in the store, which must still answer the API's
    // calls until the API has drained) runs then.
    let complete = serde_json::json!({ "objectKey": key, "uploadId": upload_id, "parts": parts });
    let body = serde_json::to_vec(&complete).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut request = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /multipart/complete HTTP/1.1\r\nHost: {}\r\nX-User-Id: user_123\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        body.len()
    );
    request.write_all(head.as_bytes()).await.unwrap();
    request.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    request.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), request.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "a completion in flight was cut off by the shutdown: {answer}");
    tokio::time::timeout(Duration::from_secs(20), app.server).await.expect("the server stopped").unwrap();
    assert_eq!(app.core.store.head(key.as_str().unwrap()).await.unwrap().map(|o| o.size), Some(bytes.len() as u64));
}
