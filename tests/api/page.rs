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

    // 55 files already there: the page's list shows 50 and pages to the rest.
    for i in 0..55 {
        app.upload_as("page-user", &format!("earlier-{i:02}.txt"), "text/plain", b"x".to_vec()).await;
    }
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
    assert_eq!(
        app.row_count().await,
        55 + 3,
        "the three uploaded files were recorded, the failed and cancelled ones not"
    );
    // Each part reached the store once: four of the 48 MiB video (its dropped attempt never
    // reached it), three of the resumed 48 MiB file (without resuming, the reload would have
    // cost at least one more); the doomed and cancelled parts never reached it, nor the part
    // whose fresh URL came after Cancel.
    assert_eq!(app.parts_stored().await, 7);
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

/// The stock `uppy` bundle (examples/uppy), served from its own origin, uploads a 3 MiB and a
/// 40 MiB file through Ferry in Companion mode (dev mode) and in `signRequest` mode (a JWT):
/// each file is recorded when Uppy finishes, with no further call, and downloads intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppy_uploads_through_ferry_in_both_server_modes() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let chromium = std::env::var("FERRY_TEST_CHROMIUM")
        .expect("the Uppy test needs FERRY_TEST_CHROMIUM (the README's test command installs Chromium and sets it)");
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut node = tokio::process::Command::new("node")
        .arg(format!("{dir}/tests/page/uppy.test.mjs"))
        .current_dir(format!("{dir}/tests/page"))
        .env("FERRY_UPPY_DIR", format!("{dir}/examples/uppy"))
        .env("FERRY_CHROMIUM", chromium)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("the script prints its origin");
    let origin = first.strip_prefix("ORIGIN ").expect("ORIGIN <url>").to_owned();

    let secret = "an HS256 secret of at least thirty-two characters";
    let companion = spawn_app_with(Backend::Sqlite, &[("FERRY_CORS_ORIGINS", origin.as_str())]).await;
    let signing =
        spawn_app_with(Backend::Sqlite, &[("FERRY_CORS_ORIGINS", origin.as_str()), ("FERRY_JWT_SECRET", secret)]).await;
    let now = u64::from(crate::helpers::now_unix());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "uppy-user", "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();

    let files = tempfile::tempdir().unwrap();
    let small = crate::helpers::random_bytes(3 * 1024 * 1024);
    let large = crate::helpers::random_bytes(40 * 1024 * 1024);
    let (small_path, large_path) = (files.path().join("small.bin"), files.path().join("large.bin"));
    std::fs::write(&small_path, &small).unwrap();
    std::fs::write(&large_path, &large).unwrap();
    let paths = [small_path.to_str().unwrap(), large_path.to_str().unwrap()];
    let runs = serde_json::json!({ "runs": [
        { "ferry": companion.url(""), "token": null, "files": paths },
        { "ferry": signing.url(""), "token": token, "files": paths },
    ] });
    let mut stdin = node.stdin.take().unwrap();
    stdin.write_all(format!("{runs}\n").as_bytes()).await.unwrap();
    drop(stdin);

    let mut result = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(json.to_owned());
        }
    }
    let output = node.wait_with_output().await.unwrap();
    assert!(output.status.success(), "the Uppy browser test failed:\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(result.is_some(), "the script reported its uploads");

    // Recorded at once, as the user each mode names, with the bytes chosen.
    for (app, user, auth) in [(&companion, "user_123", None), (&signing, "uppy-user", Some(&token))] {
        let mut request = app.http.get(app.url("/files"));
        request = match auth {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let listed = crate::helpers::reply(request.send().await.unwrap()).await;
        let listed = listed.body["files"].as_array().unwrap().clone();
        assert_eq!(listed.len(), 2, "{user}: {listed:?}");
        for file in &listed {
            let expected = if file["fileName"].as_str().unwrap().ends_with("small.bin") { &small } else { &large };
            assert_eq!(file["size"].as_u64(), Some(expected.len() as u64));
            let id = file["id"].as_i64().unwrap();
            let mut download = app.http.get(app.url(&format!("/files/{id}/download")));
            download = match auth {
                Some(token) => download.bearer_auth(token),
                None => download.header("x-user-id", user),
            };
            let location = download.send().await.unwrap().headers()["location"].to_str().unwrap().to_owned();
            let bytes = app.http.get(location).send().await.unwrap().bytes().await.unwrap();
            assert!(bytes[..] == expected[..], "{user}: {} downloads as uploaded", file["fileName"]);
        }
    }
}
