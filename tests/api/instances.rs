//! Several instances sharing one database and one bucket behave as one.

use reqwest::StatusCode;

use crate::helpers::{Backend, ExternalStore, TestApp, reply, spawn_app_with_store};

/// Two instances on one Postgres database and one bucket.
async fn two_instances(store: &ExternalStore) -> (TestApp, TestApp) {
    let a = spawn_app_with_store(Backend::Postgres, store, &[]).await;
    let b = spawn_app_with_store(Backend::Postgres, store, &[("DATABASE_URL", a.database_url.as_str())]).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_presigned_by_one_instance_is_confirmed_listed_and_deleted_by_another() {
    let store = ExternalStore::start().await;
    let (a, b) = two_instances(&store).await;
    let presigned = a.presign("shared.txt", "text/plain").await;
    assert_eq!(presigned.status, StatusCode::OK);
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert_eq!(
        a.put(presigned.body["presignedUrl"].as_str().unwrap(), b"shared".to_vec(), "text/plain").await,
        StatusCode::OK
    );
    let confirmed = b.confirm(key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    // A repeat on the first instance finds the same row.
    let again = a.confirm(key).await;
    assert_eq!(again.body["file"]["id"], confirmed.body["file"]["id"]);
    let listed = reply(a.get_as("user_123", "/files").await).await;
    assert_eq!(listed.body["files"].as_array().unwrap().len(), 1);
    let id = confirmed.body["file"]["id"].as_i64().unwrap();
    assert_eq!(a.delete_as("user_123", &format!("/files/{id}")).await.status, StatusCode::OK);
    // The key stays deleted for the other instance too.
    b.put_external(&store, key).await;
    let late = b.confirm(key).await;
    assert_eq!((late.status, late.code()), (StatusCode::GONE, "upload-deleted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_at_a_time_holds_the_sweep_lease() {
    let store = ExternalStore::start().await;
    let (a, b) = two_instances(&store).await;
    let now = i64::from(crate::helpers::now_unix());
    let lease = ferry::sweep::SWEEP_LEASE;
    assert!(a.core.db.try_lease(lease, "instance-a", now, now + 600).await.unwrap());
    assert!(!b.core.db.try_lease(lease, "instance-b", now, now + 600).await.unwrap(), "two holders at once");
    assert!(a.core.db.try_lease(lease, "instance-a", now, now + 600).await.unwrap(), "the holder renews");
    // When the holder stops renewing, the lease expires and another instance takes it over.
    assert!(b.core.db.try_lease(lease, "instance-b", now + 601, now + 1200).await.unwrap());
    assert!(!a.core.db.try_lease(lease, "instance-a", now + 602, now + 1200).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_b2_event_delivered_to_both_instances_records_one_file() {
    let secret = "instances-webhook-secret";
    let store = ExternalStore::start().await;
    let a = spawn_app_with_store(Backend::Postgres, &store, &[("B2_EVENT_NOTIFICATION_SECRET", secret)]).await;
    let b = spawn_app_with_store(
        Backend::Postgres,
        &store,
        &[("B2_EVENT_NOTIFICATION_SECRET", secret), ("DATABASE_URL", a.database_url.as_str())],
    )
    .await;
    let presigned = a.presign("evented.txt", "text/plain").await;
    let key = presigned.body["objectKey"].as_str().unwrap().to_owned();
    a.put(presigned.body["presignedUrl"].as_str().unwrap(), b"by event".to_vec(), "text/plain").await;
    // Bounded wait (10 s) for the presigning instance to record whose key it is.
    for _ in 0..500 {
        if b.core.db.pending_owner(&key).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body = serde_json::json!({ "events": [{
        "eventId": "evt-shared", "eventType": "b2:ObjectCreated:Upload", "bucketName": "ext", "objectName": key
    }]})
    .to_string();
    let signature = ferry::webhook::sign(&ferry::config::Secret::new(secret), body.as_bytes());
    let deliver = |app: &TestApp| {
        app.http
            .post(app.url("/webhooks/b2"))
            .header("content-type", "application/json")
            .header("x-bz-event-notification-signature", signature.clone())
            .body(body.clone())
            .send()
    };
    let (on_a, on_b) = tokio::join!(deliver(&a), deliver(&b));
    for answer in [on_a, on_b] {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(a.row_count().await, 1, "one event, one file, whichever instance handled it");
    let listed = reply(b.get_as("user_123", "/files").await).await;
    assert_eq!(listed.body["files"][0]["objectKey"], key.as_str());
}
