//! The embedded store's limits hold whatever the request's framing: a body without a length
//! is counted as it streams, and refused (with nothing kept) once it passes the limit. Presigned
//! URLs live at most a week, as on S3, and multipart uploads nobody finishes do not stay.

use std::time::Duration;

use reqwest::StatusCode;
use rusty_s3::S3Action;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};

use crate::helpers::{Backend, TestApp, random_bytes, spawn_app, spawn_app_with};

const MINUTE: Duration = Duration::from_secs(60);

/// The files the store is writing: empty once every refused body has been dropped.
fn temp_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.path().join("objects/.tmp")).unwrap().count()
}

/// Checks the answer to a body sent past the limit: 400 `EntityTooLarge`. The store stops
/// reading there and closes the connection; a client still sending may see that (a broken
/// pipe or a reset) before it reads the answer, as it would from S3.
fn refused_as_too_large(sent: Result<reqwest::Response, reqwest::Error>) -> Option<reqwest::Response> {
    match sent {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            Some(response)
        }
        Err(e) => {
            let causes = std::iter::successors(std::error::Error::source(&e), |cause| cause.source());
            let cut = causes
                .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
                .any(|io| matches!(io.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset));
            assert!(e.is_request() && cut, "not a connection closed while sending: {e:?}");
            None
        }
    }
}

fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(10_000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_put_over_the_size_limit_is_refused_and_nothing_is_kept() {
    let app = spawn_app_with(Backend::Sqlite, &[("FERRY_MAX_FILE_SIZE", "100000")]).await;
    let (bucket, creds) = app.store_bucket();
    let url = bucket.put_object(Some(&creds), "big.bin").sign(MINUTE);
    let sent = app.http.put(url.clone()).body(chunked(random_bytes(300_000))).send().await;
    if let Some(response) = refused_as_too_large(sent) {
        assert!(response.text().await.unwrap().contains("<Code>EntityTooLarge</Code>"));
    }
    assert!(!app.object_exists("big.bin").await, "nothing was stored");
    assert_eq!(temp_files(&app), 0, "the refused bytes were removed");

    // A declared length over the limit is refused before any byte is read; up to it is fine.
    let declared = app.http.put(url.clone()).body(random_bytes(100_001)).send().await.unwrap();
    assert_eq!(declared.status(), StatusCode::BAD_REQUEST);
    let at_limit = app.http.put(url).body(chunked(random_bytes(100_000))).send().await.unwrap();
    assert_eq!(at_limit.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_adding_up_to_more_than_the_limit_do_not_complete() {
    let app = spawn_app_with(Backend::Sqlite, &[("FERRY_MAX_FILE_SIZE", "6000000")]).await;
    let (bucket, creds) = app.store_bucket();
    let key = "parts.bin";
    let create = CreateMultipartUpload::new(&bucket, Some(&creds), key).sign(MINUTE);
    let body = app.http.post(create).send().await.unwrap().text().await.unwrap();
    let upload_id = CreateMultipartUpload::parse_response(&body).unwrap().upload_id().to_owned();
    let part_url = |n: u16| bucket.upload_part(Some(&creds), key, n, &upload_id).sign(MINUTE);
    // One part past the limit is refused as it streams.
    refused_as_too_large(app.http.put(part_url(1)).body(chunked(random_bytes(6_000_001))).send().await);
    let mut etags = Vec::new();
    for (n, size) in [(1, 5 * 1024 * 1024), (2, 1_000_000)] {
        let response = app.http.put(part_url(n)).body(random_bytes(size)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        etags.push(response.headers()["etag"].to_str().unwrap().to_owned());
    }
    let complete =
        CompleteMultipartUpload::new(&bucket, Some(&creds), key, &upload_id, etags.iter().map(|e| e.as_str()));
    let response = app.http.post(complete.sign(MINUTE)).body(complete.body()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("EntityTooLarge"));
    assert!(!app.object_exists(key).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_url_valid_for_more_than_a_week_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    app.put_directly("week.txt", b"seven days".to_vec(), "text/plain").await;
    let (bucket, creds) = app.store_bucket();
    let week = Duration::from_secs(604_800);
    let ok = app.http.get(bucket.get_object(Some(&creds), "week.txt").sign(week)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let longer = bucket.get_object(Some(&creds), "week.txt").sign(week + Duration::from_secs(1));
    let refused = app.http.get(longer).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("AuthorizationQueryParametersError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_multipart_uploads_that_saw_no_part_for_a_day_and_keeps_the_others() {
    let app = spawn_app(Backend::Sqlite).await;
    let (bucket, creds) = app.store_bucket();
    let mut ids = Vec::new();
    for key in ["abandoned.bin", "live.bin"] {
        let create = CreateMultipartUpload::new(&bucket, Some(&creds), key).sign(MINUTE);
        let body = app.http.post(create).send().await.unwrap().text().await.unwrap();
        let id = CreateMultipartUpload::parse_response(&body).unwrap().upload_id().to_owned();
        let part = bucket.upload_part(Some(&creds), key, 1, &id).sign(MINUTE);
        assert_eq!(app.http.put(part).body(random_bytes(1000)).send().await.unwrap().status(), StatusCode::OK);
        ids.push(id);
    }
    // The first one's last part arrived 25 hours ago (the default age is 24 hours).
    let dir = app.data_dir.path().join("objects/.uploads").join(&ids[0]);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(25 * 3600);
    std::fs::File::open(&dir).unwrap().set_modified(long_ago).unwrap();

    let report = app.core.sweeper.sweep_once(false).await.unwrap();
    assert_eq!(report.abandoned_multipart, 1);
    assert!(!dir.exists(), "the abandoned upload and its parts are gone");
    let gone = bucket.upload_part(Some(&creds), "abandoned.bin", 2, &ids[0]).sign(MINUTE);
    let response = app.http.put(gone).body(random_bytes(10)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.text().await.unwrap().contains("NoSuchUpload"));
    let live = bucket.upload_part(Some(&creds), "live.bin", 2, &ids[1]).sign(MINUTE);
    assert_eq!(app.http.put(live).body(random_bytes(10)).send().await.unwrap().status(), StatusCode::OK);
}
