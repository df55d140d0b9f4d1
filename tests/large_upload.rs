//! A large PUT streams through the embedded store to disk: the process's peak memory does not
//! grow with the file. (Its own test binary, so no other test's allocations blur the measurement.)

use std::time::Duration;

use bytes::Bytes;
use ferry::config::Config;
use ferry::startup::Application;
use futures::stream;
use tokio::net::TcpListener;

const CHUNK: usize = 1024 * 1024;
const FILE_MIB: usize = 512;

/// A `/proc/self/status` line in MiB: `VmRSS` (resident now) or `VmHWM` (the peak).
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} line"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

/// Resets the peak (`VmHWM`) to the current resident size (Linux 4.0+: `5` in `clear_refs`).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the resident-memory peak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_streamed_without_growing_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let cfg = Config::from_lookup(|k| match k {
        "FERRY_DATA_DIR" => Some(data.clone()),
        "FERRY_SWEEP_INTERVAL" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build(cfg, api, Some(store)).await.unwrap();
    let addr = app.api_addr();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();

    let size = (FILE_MIB * CHUNK) as u64;
    let presigned: serde_json::Value = http
        .post(format!("http://{addr}/presign-b2-upload"))
        .json(&serde_json::json!({ "fileName": "big.bin", "contentType": "application/octet-stream", "size": size }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = presigned["presignedUrl"].as_str().unwrap();

    // The peak, not the size after: a server that held the whole body and freed it before
    // answering would pass a check made after the PUT.
    reset_peak();
    let before = status_mib("VmRSS:");
    // The body is generated as it is sent: the test holds one chunk, never the file.
    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let body = stream::iter((0..FILE_MIB).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let response = http
        .put(url)
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let peak = status_mib("VmHWM:");

    let confirmed: serde_json::Value = http
        .post(format!("http://{addr}/save-b2-metadata"))
        .json(&serde_json::json!({ "objectKey": presigned["objectKey"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["file"]["size"], size);
    let growth = peak.saturating_sub(before);
    assert!(growth < 64, "a {FILE_MIB} MiB upload raised peak resident memory by {growth} MiB");
}
