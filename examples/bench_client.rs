//! Benchmark helper: prepares uploaded-but-unconfirmed objects for the confirm benchmark, and
//! measures the whole presign → PUT → confirm flow as files per second.
//!
//! bench_client prepare API COUNT OUT_FILE [CONCURRENCY]
//! bench_client flow API SECONDS CONCURRENCY [BODY_BYTES]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

async fn presign_and_put(http: &reqwest::Client, api: &str, body: &bytes::Bytes) -> Result<String, String> {
    let presigned: Value = http
        .post(format!("{api}/presign-b2-upload"))
        .json(&json!({ "fileName": "bench.bin", "contentType": "application/octet-stream", "size": body.len() }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let url = presigned["presignedUrl"].as_str().ok_or("no presignedUrl")?;
    let put = http
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !put.status().is_success() {
        return Err(format!("PUT answered {}", put.status()));
    }
    Ok(presigned["objectKey"].as_str().ok_or("no objectKey")?.to_owned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let api = args.get(2).expect("API URL").trim_end_matches('/').to_owned();
    match args.get(1).map(String::as_str) {
        Some("prepare") => {
            let count: usize = args[3].parse().unwrap();
            let out = args[4].clone();
            let concurrency: usize = args.get(5).map_or(64, |c| c.parse().unwrap());
            let body = bytes::Bytes::from(vec![7u8; 4096]);
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (http, api, body, next) = (http.clone(), api.clone(), body.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut keys = Vec::new();
                    while (next.fetch_add(1, Ordering::Relaxed) as usize) < count {
                        keys.push(presign_and_put(&http, &api, &body).await.expect("prepare an upload"));
                    }
                    keys
                }));
            }
            let mut all = Vec::with_capacity(count);
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            std::fs::write(&out, all.join("\n") + "\n").unwrap();
        }
        Some("flow") => {
            let seconds: u64 = args[3].parse().unwrap();
            let concurrency: usize = args[4].parse().unwrap();
            let size: usize = args.get(5).map_or(4096, |s| s.parse().unwrap());
            let body = bytes::Bytes::from(vec![7u8; size]);
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (http, api, body, done, failed) =
                    (http.clone(), api.clone(), body.clone(), done.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let ok = match presign_and_put(&http, &api, &body).await {
                            Ok(key) => http
                                .post(format!("{api}/save-b2-metadata"))
                                .json(&json!({ "objectKey": key }))
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success()),
                            Err(_) => false,
                        };
                        if ok {
                            done.fetch_add(1, Ordering::Relaxed)
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed)
                        };
                    }
                }));
            }
            let started = Instant::now();
            for task in tasks {
                task.await.unwrap();
            }
            let elapsed = started.elapsed().as_secs_f64();
            let files = done.load(Ordering::Relaxed);
            println!(
                "files_per_sec={:.1} files={files} failed={} seconds={elapsed:.1}",
                files as f64 / elapsed,
                failed.load(Ordering::Relaxed)
            );
        }
        _ => panic!("usage: bench_client prepare|flow ..."),
    }
}
