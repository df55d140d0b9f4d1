//! B2 event notifications confirm uploads even when the client never comes back.

use std::time::Duration;

use ferry::config::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Reply, TestApp, now_unix, reply, spawn_app, spawn_app_with};

crate::on_both_backends!(
    a_signed_created_event_confirms_the_upload_without_the_client,
    a_replayed_event_is_handled_once,
    events_not_ours_are_ignored_and_unknown_keys_reported,
    an_event_for_a_key_not_yet_recorded_asks_b2_to_retry,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(a_tampered_or_unsigned_batch_changes_nothing, the_webhook_is_off_without_a_secret,);

const SECRET: &str = "b2-event-signing-secret";

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("B2_EVENT_NOTIFICATION_SECRET", SECRET)]).await
}

/// Presigns and uploads, without confirming; waits until Ferry has noted whose key it is.
async fn upload_without_confirming(app: &TestApp, user: &str) -> String {
    let presigned = app.presign_as(user, "unconfirmed.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    app.put(presigned.body["presignedUrl"].as_str().unwrap(), b"by webhook".to_vec(), "text/plain").await;
    // Bounded wait (10 s) for the background batch writer.
    for _ in 0..500 {
        if app.core.db.pending_owner(&key).await.unwrap().is_some() {
            return key;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the pending upload was never recorded");
}

fn batch(event_id: &str, key: &str) -> String {
    json!({ "events": [{
        "accountId": "acc", "bucketId": "bkt", "bucketName": "ferry", "eventId": event_id,
        "eventTimestamp": 1_700_000_000_000u64, "eventType": "b2:ObjectCreated:Upload", "eventVersion": 1,
        "matchedRuleName": "ferry", "objectName": key, "objectSize": 10, "objectVersionId": "v1"
    }]})
    .to_string()
}

async fn post(app: &TestApp, body: &str, signature: Option<&str>) -> Reply {
    let mut request =
        app.http.post(app.url("/webhooks/b2")).header("content-type", "application/json").body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("x-bz-event-notification-signature", signature);
    }
    reply(request.send().await.unwrap()).await
}

fn signed(body: &str) -> String {
    ferry::webhook::sign(&Secret::new(SECRET), body.as_bytes())
}

async fn a_signed_created_event_confirms_the_upload_without_the_client(backend: Backend) {
    let app = spawn(backend).await;
    let key = upload_without_confirming(&app, "alice").await;
    let body = batch("event-1", &key);
    let r = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["results"][0]["status"], "confirmed");
    let files = reply(app.get_as("alice", "/files").await).await;
    assert_eq!(files.body["files"][0]["objectKey"], key.as_str());
    assert_eq!(files.body["files"][0]["size"], 10);
    // The client's own confirm, arriving late, finds the same record.
    assert_eq!(app.confirm_as("alice", &key).await.body["file"]["id"], files.body["files"][0]["id"]);
    assert_eq!(app.row_count().await, 1);
}

async fn a_tampered_or_unsigned_batch_changes_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let key = upload_without_confirming(&app, "alice").await;
    let body = batch("event-1", &key);
    let signature = signed(&body);
    let tampered = body.replace("event-1", "event-2");
    let wrong_secret = ferry::webhook::sign(&Secret::new("wrong"), body.as_bytes());
    for (body, signature) in [
        (tampered.as_str(), Some(signature.as_str())),
        (body.as_str(), None),
        (body.as_str(), Some("v1=00")),
        (body.as_str(), Some(wrong_secret.as_str())),
    ] {
        let r = post(&app, body, signature).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid-signature"));
    }
    assert_eq!(app.row_count().await, 0);
}

async fn a_replayed_event_is_handled_once(backend: Backend) {
    let app = spawn(backend).await;
    let key = upload_without_confirming(&app, "alice").await;
    let body = batch("event-7", &key);
    assert_eq!(post(&app, &body, Some(&signed(&body))).await.body["results"][0]["status"], "confirmed");
    let again = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["results"][0]["status"], "duplicate");
    assert_eq!(app.row_count().await, 1);
}

async fn the_webhook_is_off_without_a_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = batch("event-1", "x");
    let r = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not-found"));
}

fn event(event_id: &str, event_type: &str, bucket: &str, key: &str) -> serde_json::Value {
    json!({ "bucketName": bucket, "eventId": event_id, "eventType": event_type, "objectName": key })
}

async fn events_not_ours_are_ignored_and_unknown_keys_reported(backend: Backend) {
    let app = spawn(backend).await;
    // A real upload waiting for its confirm: events that are not its creation in Ferry's bucket
    // must not confirm it.
    let key = upload_without_confirming(&app, "alice").await;
    // A key Ferry issued long ago (its confirm window closed) and never recorded an owner for.
    let stale = app.issue_key("alice", "stale.txt", now_unix() - 7200);
    let body = json!({ "events": [
        event("deleted", "b2:ObjectDeleted:Delete", "ferry", &key),
        event("elsewhere", "b2:ObjectCreated:Upload", "another-bucket", &key),
        event("stale", "b2:ObjectCreated:Upload", "ferry", &stale),
    ]})
    .to_string();
    let r = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results: Vec<(&str, &str)> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["eventId"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("deleted", "ignored"), ("elsewhere", "ignored"), ("stale", "unknown-upload")]);
    assert_eq!(app.row_count().await, 0, "the waiting upload was not confirmed by those events");
}

async fn an_event_for_a_key_not_yet_recorded_asks_b2_to_retry(backend: Backend) {
    let app = spawn(backend).await;
    // Issued just now, its owner not recorded yet (Ferry writes that record just after a
    // presign): B2 is asked to send the batch again, and the events before it in the batch are
    // remembered, so the retry finds them handled.
    let fresh = app.issue_key("alice", "fresh.txt", now_unix() + 300);
    let body = json!({ "events": [
        event("first", "b2:ObjectDeleted:Delete", "ferry", &fresh),
        event("fresh", "b2:ObjectCreated:Upload", "ferry", &fresh),
    ]})
    .to_string();
    let r = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "retry-later"), "{}", r.body);
    let again = post(&app, &body, Some(&signed(&body))).await;
    assert_eq!((again.status, again.code()), (StatusCode::SERVICE_UNAVAILABLE, "retry-later"));
    // Without the deferred event, the batch now reports the first one as handled before.
    let first_only = json!({ "events": [event("first", "b2:ObjectDeleted:Delete", "ferry", &fresh)] }).to_string();
    let r = post(&app, &first_only, Some(&signed(&first_only))).await;
    assert_eq!(r.body["results"][0]["status"], "duplicate", "{}", r.body);
    assert_eq!(app.row_count().await, 0);
}
