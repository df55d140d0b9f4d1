//! Hostile traffic: each test reproduces an attack that once got through (bounded in count and
//! time, loopback only) and checks the outcome: Ferry keeps answering, memory and output stay
//! bounded, nothing stored changes, the error is the documented one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Backend, ExternalStore, TestApp, random_bytes, reply, spawn_app, spawn_app_with, spawn_app_with_store,
};

crate::on_both_backends!(
    a_confirmed_object_cannot_be_replaced_through_its_upload_url,
    a_replaced_object_on_another_store_is_reported_and_never_deleted,
    a_deleted_key_stays_deleted_when_a_late_confirm_arrives,
    an_upper_case_spelling_of_a_key_is_not_the_key,
    dev_mode_answers_only_loopback_host_names,
    a_multipart_completion_of_10000_parts_is_read,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_webhook_signature_flood_does_not_stall_the_server,
    random_methods_do_not_grow_the_metrics,
    metrics_can_live_on_their_own_address,
    connections_that_never_finish_their_headers_are_closed_and_capped,
    a_body_that_stalls_is_cut_off,
    clients_over_the_rate_limit_get_429_with_retry_after,
    behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit,
    ferry_insecure_dev_auth_allows_dev_mode_off_loopback_and_any_host,
    a_request_head_over_64_kib_is_refused_on_both_listeners,
);

/// Asserts that `/healthz` answers within a generous bound while an attack runs.
async fn still_answers(app: &TestApp) {
    let started = Instant::now();
    let health = app.http.get(app.url("/healthz")).timeout(Duration::from_secs(10)).send().await;
    assert!(health.is_ok_and(|r| r.status() == StatusCode::OK), "/healthz did not answer");
    assert!(started.elapsed() < Duration::from_secs(3), "/healthz took {:?}", started.elapsed());
}

async fn a_webhook_signature_flood_does_not_stall_the_server(backend: Backend) {
    let secret = "flood-test-signing-secret";
    let app = spawn_app_with(backend, &[("B2_EVENT_NOTIFICATION_SECRET", secret)]).await;
    // ~1 MiB body and a header of 300 candidate signatures: once, each candidate re-hashed the body.
    let body = format!("{{\"events\":[],\"pad\":\"{}\"}}", "x".repeat(1_000_000));
    let header = vec![format!("v1={}", "ab".repeat(32)); 300].join(",");
    let floods = (0..16).map(|_| {
        app.http
            .post(app.url("/webhooks/b2"))
            .header("x-bz-event-notification-signature", &header)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    });
    let (answers, ()) = tokio::join!(futures::future::join_all(floods), still_answers(&app));
    for answer in answers {
        let answer = reply(answer.unwrap()).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::UNAUTHORIZED, "invalid-signature"));
    }
    // A correctly signed batch still verifies.
    let good = ferry::webhook::sign(&ferry::config::Secret::new(secret), b"{\"events\":[]}");
    let ok = app
        .http
        .post(app.url("/webhooks/b2"))
        .header("x-bz-event-notification-signature", format!("v1=00,{good}"))
        .header("content-type", "application/json")
        .body("{\"events\":[]}")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

async fn random_methods_do_not_grow_the_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..300 {
        let method = format!("M{i}{}", "X".repeat(2000));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer = app.http.request(method, app.url(&format!("/no/such/{i}"))).send().await.unwrap();
        assert!(answer.status().is_client_error());
    }
    let text = app.get_as("user_123", "/metrics").await.text().await.unwrap();
    assert!(text.len() < 32 * 1024, "/metrics grew to {} bytes", text.len());
    assert!(!text.contains("XXXX"), "a raw method became a label");
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(!text.contains("/no/such"), "a raw path became a label");
    still_answers(&app).await;
}

async fn metrics_can_live_on_their_own_address(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_METRICS_ADDR", "127.0.0.1:0")]).await;
    let on_api = app.get_as("user_123", "/metrics").await;
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
    let addr = app.metrics_addr.expect("a metrics listener");
    let text = app.http.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("ferry_http_requests_total"), "{text}");
}

/// A connection's read buffer holds at most 64 KiB, so a longer request head is refused (431)
/// by the API and by the embedded store alike, and a head just under it is served.
async fn a_request_head_over_64_kib_is_refused_on_both_listeners(backend: Backend) {
    let app = spawn_app(backend).await;
    for base in [app.url("/healthz"), format!("http://{}/ferry/some-key", app.store_addr.unwrap())] {
        let send = |len: usize| app.http.get(&base).header("x-padding", "a".repeat(len)).send();
        let long = send(70 * 1024).await.unwrap();
        assert_eq!(long.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{base}");
        let fits = send(60 * 1024).await.unwrap();
        assert_ne!(fits.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{base}");
    }
    still_answers(&app).await;
}

/// Opens a connection and sends half a request head, then nothing.
async fn half_open(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.ok()?;
    Some(stream)
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        // Hyper may answer 408 before closing: read on until the close.
        Ok(Ok(_)) => tokio::time::timeout(within, stream.read(&mut buf)).await.is_ok_and(|r| r.is_ok_and(|n| n == 0)),
        Err(_) => false,
    }
}

async fn connections_that_never_finish_their_headers_are_closed_and_capped(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_HEADER_TIMEOUT", "2"), ("FERRY_MAX_CONNECTIONS", "40")]).await;
    for addr in [app.addr, app.store_addr.unwrap()] {
        let mut slow = Vec::new();
        for _ in 0..100 {
            if let Some(stream) = half_open(addr).await {
                slow.push(stream);
            }
        }
        // Past the cap, connections are closed at once; the others after the header timeout.
        for stream in &mut slow {
            assert!(
                closed_within(stream, Duration::from_secs(8)).await,
                "a half-open connection to {addr} stayed open"
            );
        }
        // Everything is free again: the listener answers (the store with an S3 refusal, as it
        // answers any unsigned request).
        let answer = app.http.get(format!("http://{addr}/healthz")).send().await;
        assert!(answer.is_ok_and(|a| a.status().as_u16() < 500), "{addr} does not answer after the attack");
    }
    still_answers(&app).await;
}

async fn a_body_that_stalls_is_cut_off(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_BODY_IDLE_TIMEOUT", "1")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /presign-b2-upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"fileName\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a stalled body held the connection for 10 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    still_answers(&app).await;
}

async fn clients_over_the_rate_limit_get_429_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_RATE_LIMIT", "1"), ("FERRY_RATE_LIMIT_BURST", "3")]).await;
    let mut limited = None;
    for _ in 0..10 {
        let answer = app
            .http
            .post(app.url("/presign-b2-upload"))
            .json(&json!({ "fileName": "a.txt", "contentType": "text/plain" }))
            .send()
            .await
            .unwrap();
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let limited = limited.expect("10 presigns in a burst of 3 must be limited");
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    let body = reply(limited).await;
    assert_eq!((body.code(), body.body["success"].as_bool()), ("rate-limited", Some(false)));
    // Reading is not limited, nor are the health checks.
    assert_eq!(app.get_as("user_123", "/files").await.status(), StatusCode::OK);
    still_answers(&app).await;
}

/// Behind a trusted proxy (here: loopback, where the test's requests come from) each client the
/// proxy names in `X-Forwarded-For` has its own limit; an address a client put in the header
/// itself, left of the proxy's, changes nothing. Without the setting the header is ignored.
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(backend: Backend) {
    let limits = [("FERRY_RATE_LIMIT", "1"), ("FERRY_RATE_LIMIT_BURST", "3")];
    let presign = |app: &crate::helpers::TestApp, forwarded: &'static str| {
        app.http
            .post(app.url("/presign-b2-upload"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "fileName": "a.txt", "contentType": "text/plain" }))
            .send()
    };
    let app = spawn_app_with(backend, &[limits[0], limits[1], ("FERRY_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let mut limited = false;
    for _ in 0..10 {
        let status = presign(&app, "203.0.113.7").await.unwrap().status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    assert!(limited, "10 presigns from one forwarded client in a burst of 3 must be limited");
    assert_eq!(presign(&app, "198.51.100.9").await.unwrap().status(), StatusCode::OK, "another client is not");
    let spoofed = presign(&app, "198.51.100.10, 203.0.113.7").await.unwrap().status();
    assert_eq!(spoofed, StatusCode::TOO_MANY_REQUESTS, "a client's own entry is not believed");

    let untrusting = spawn_app_with(backend, &limits).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let forwarded: &'static str = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"][i % 5];
        statuses.push(presign(&untrusting, forwarded).await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "without trusted proxies the header is ignored");
}

async fn a_confirmed_object_cannot_be_replaced_through_its_upload_url(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_MAX_FILE_SIZE", "1000")]).await;
    let presigned = app.presign("small.bin", "application/octet-stream").await;
    let (url, key) = (presigned.body["presignedUrl"].as_str().unwrap(), presigned.body["objectKey"].as_str().unwrap());
    let original = random_bytes(10);
    assert_eq!(app.put(url, original.clone(), "application/octet-stream").await, StatusCode::OK);
    let confirmed = app.confirm(key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    // The same URL, still within its lifetime, with 5 MB.
    let replaced =
        app.http.put(url).header("content-type", "application/octet-stream").body(random_bytes(5_000_000)).send().await;
    // Refused with a 4xx, or the connection closed on the body the store would not read.
    if let Ok(answer) = replaced {
        assert!(answer.status().is_client_error(), "a confirmed object was replaced: {}", answer.status());
    }
    let again = app.confirm(key).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["file"]["size"], 10);
    let id = confirmed.body["file"]["id"].as_i64().unwrap();
    assert_eq!(app.download_as("user_123", id).await, original);
}

async fn a_replaced_object_on_another_store_is_reported_and_never_deleted(backend: Backend) {
    // A bucket that cannot keep confirmed objects immutable (any S3 without conditional writes).
    let store = ExternalStore::start().await;
    let app = spawn_app_with_store(backend, &store, &[("FERRY_MAX_FILE_SIZE", "1000")]).await;
    let presigned = app.presign("small.bin", "application/octet-stream").await;
    let (url, key) = (presigned.body["presignedUrl"].as_str().unwrap(), presigned.body["objectKey"].as_str().unwrap());
    assert_eq!(app.put(url, random_bytes(10), "application/octet-stream").await, StatusCode::OK);
    assert_eq!(app.confirm(key).await.status, StatusCode::OK);
    let replaced = random_bytes(5_000);
    assert_eq!(app.put(url, replaced.clone(), "application/octet-stream").await, StatusCode::OK);
    let again = app.confirm(key).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "object-changed"), "{}", again.body);
    // Nothing was deleted: the row is listed and its key still has an object.
    let list = reply(app.get_as("user_123", "/files").await).await;
    assert_eq!(list.body["files"].as_array().unwrap().len(), 1);
    assert!(app.object_exists(key).await, "a refusal left a row pointing at nothing");
}

async fn a_deleted_key_stays_deleted_when_a_late_confirm_arrives(backend: Backend) {
    let app = spawn_app(backend).await;
    let presigned = app.presign("gone.txt", "text/plain").await;
    let (url, key) = (presigned.body["presignedUrl"].as_str().unwrap(), presigned.body["objectKey"].as_str().unwrap());
    assert_eq!(app.put(url, b"bytes".to_vec(), "text/plain").await, StatusCode::OK);
    let file = app.confirm(key).await.body["file"].clone();
    let deleted = app.delete_as("user_123", &format!("/files/{}", file["id"])).await;
    assert_eq!(deleted.status, StatusCode::OK);
    // What a confirm in flight saw: the object still there when it HEADed (a retry of the same
    // upload, or a B2 webhook retry). Its late insert must not bring the row back.
    app.put_directly(key, b"bytes".to_vec(), "text/plain").await;
    let late = app.confirm(key).await;
    assert_eq!((late.status, late.code()), (StatusCode::GONE, "upload-deleted"), "{}", late.body);
    assert_eq!(app.row_count().await, 0);
    let list = reply(app.get_as("user_123", "/files").await).await;
    assert!(list.body["files"].as_array().unwrap().is_empty());
}

async fn an_upper_case_spelling_of_a_key_is_not_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = app.upload_as("user_123", "k.txt", "text/plain", b"k".to_vec()).await;
    let key = file["objectKey"].as_str().unwrap();
    let (uuid, name) = key.split_at(36);
    let upper = format!("{}{name}", uuid.to_ascii_uppercase());
    let answer = app.confirm(&upper).await;
    assert_eq!((answer.status, answer.code()), (StatusCode::FORBIDDEN, "upload-not-issued"));
    assert_eq!(app.row_count().await, 1);
}

async fn dev_mode_answers_only_loopback_host_names(backend: Backend) {
    let app = spawn_app(backend).await;
    for host in ["evil.example", "evil.example:3000", "127.0.0.1.nip.io"] {
        let answer = app.http.get(app.url("/files")).header("host", host).send().await.unwrap();
        let answer = reply(answer).await;
        assert_eq!((answer.status, answer.code()), (StatusCode::FORBIDDEN, "host-not-allowed"), "{host}");
    }
    for host in ["localhost:3000", "127.0.0.1", "[::1]:3000"] {
        let answer = app.http.get(app.url("/files")).header("host", host).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{host}");
    }
}

async fn a_multipart_completion_of_10000_parts_is_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let started = app
        .post_json_as(
            "user_123",
            "/multipart/start",
            &json!({ "fileName": "huge.bin", "contentType": "application/octet-stream", "size": 20_000_000 }),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let parts: Vec<_> = (1..=10_000).map(|n| json!({ "partNumber": n, "etag": format!("{:032x}", n) })).collect();
    let body = json!({ "objectKey": started.body["objectKey"], "uploadId": started.body["uploadId"], "parts": parts });
    assert!(body.to_string().len() > 64 * 1024);
    let answer = app.post_json_as("user_123", "/multipart/complete", &body).await;
    // Read whole and judged: the store refuses parts it never received (not 413 body-too-large).
    assert_eq!((answer.status, answer.code()), (StatusCode::BAD_REQUEST, "invalid-parts"), "{}", answer.body);
}

async fn ferry_insecure_dev_auth_allows_dev_mode_off_loopback_and_any_host(_backend: Backend) {
    use ferry::startup::{Application, StartupError};
    let build = |insecure: bool| async move {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().display().to_string();
        let cfg = ferry::config::Config::from_lookup(|k| match k {
            "FERRY_DATA_DIR" => Some(path.clone()),
            "FERRY_SWEEP_INTERVAL" => Some("0".into()),
            "FERRY_INSECURE_DEV_AUTH" if insecure => Some("1".into()),
            _ => None,
        })
        .unwrap();
        // Every address, not loopback only: what dev mode refuses unless told otherwise.
        let api = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let store = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        (Application::build(cfg, api, Some(store)).await, data)
    };
    let (refused, _data) = build(false).await;
    assert!(matches!(refused, Err(StartupError::InsecureDevMode(_))), "dev mode off loopback must be refused");

    let (app, _data) = build(true).await;
    let app = app.expect("FERRY_INSECURE_DEV_AUTH=1 lets dev mode listen on every address");
    let port = app.api_addr().port();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    // And the loopback-only Host check is off with it: any host name is answered.
    let http = reqwest::Client::new();
    let answer =
        http.get(format!("http://127.0.0.1:{port}/files")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    server.abort();
}
