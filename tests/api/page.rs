//! The upload page in real headless Chromium: the page on one origin, the store on another.

use crate::helpers::{Backend, ExternalStore, spawn_app, spawn_app_with, spawn_app_with_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_page_uploads_lists_and_downloads_in_a_real_browser() {
    let chromium = std::env::var("FERRY_TEST_CHROMIUM")
        .expect("the page test needs FERRY_TEST_CHROMIUM (the README's test command installs Chromium and sets it)");
    // Files over 8 MiB go in parts (of 16 MiB at least), so the browser test exercises multipart.
    let app = spawn_app_with(Backend::Sqlite, &[("FERRY_PAGE_MULTIPART_THRESHOLD", "8388608")]).await;
    // A bucket whose CORS rules allow no origin at all.
    let store = ExternalStore::start().await;
    let blocked = spawn_app_with_store(Backend::Sqlite, &store, &[]).await;

    let dir = env!("CARGO_MANIFEST_DIR");
    // A fresh directory: a screenshot an earlier run left cannot stand in for this run's.
    let shots = tempfile::tempdir().unwrap();
    let screenshot = shots.path().join("page-screenshot.png");
    let output = tokio::process::Command::new("node")
        .arg(format!("{dir}/tests/page/upload.test.mjs"))
        .current_dir(format!("{dir}/tests/page"))
        .env("FERRY_PAGE_URL", app.url("/"))
        .env("FERRY_PAGE_URL_BLOCKED", blocked.url("/"))
        .env("FERRY_CHROMIUM", chromium)
        .env("FERRY_SCREENSHOT", &screenshot)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(app.row_count().await, 2, "both uploaded files were recorded, the aborted one not");
    // The small file went in one PUT with the MD5 the page computed (in a worker), which the
    // store checked and Ferry recorded; the large one went in parts, without a whole-file digest.
    let listed = crate::helpers::reply(app.get_as("page-user", "/files").await).await;
    let files = listed.body["files"].as_array().unwrap();
    let small = files.iter().find(|f| f["fileName"] == "holiday photo.bin").expect("the small file is listed");
    assert_eq!(small["md5"].as_str().map(str::len), Some(24), "{small}");
    let large = files.iter().find(|f| f["fileName"] == "big video.mp4").expect("the large file is listed");
    assert_eq!(large["md5"], serde_json::Value::Null);
    // The store's ETag for a multipart object ends in its part count: the page really used parts.
    assert!(large["etag"].as_str().unwrap().trim_matches('"').ends_with("-4"), "{large}");
    assert_eq!(large["size"], 48 * 1024 * 1024 + 3);
    assert_eq!(blocked.row_count().await, 0, "the blocked upload wrote nothing");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 0, "the page was drawn");
}

/// The page and its assets are served from the binary with safe headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("connect-src 'self' http://{}", app.store_addr.unwrap())), "{csp}");
    assert!(page.text().await.unwrap().contains("<label for=\"dev-user\">User id</label>"));
    let js = app.http.get(app.url("/app.js")).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
    let config: serde_json::Value = app.http.get(app.url("/page-config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["auth"], "dev");
}
