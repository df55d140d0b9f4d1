//! Crash safety: the real `ferry` binary is killed with SIGKILL at the dangerous moments (a PUT
//! into the embedded store, confirms, deletes, a multipart completion), restarted on the same data
//! directory and database, and the invariants are checked from the outside.
//!
//! Every scenario runs on SQLite and on Postgres; the Postgres variants need
//! `FERRY_TEST_POSTGRES_URL` (they fail, never skip, without it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rusty_s3::S3Action;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const UPLOAD_SECRET: &str = "crash-test upload secret of at least 32 characters";
const WAIT: Duration = Duration::from_secs(20);
const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to test cluster");
    tokio::spawn(connection);
    client
}

/// A fresh Postgres database on the test cluster (as tests/api/helpers.rs makes one).
async fn fresh_postgres_database() -> String {
    let admin = std::env::var("FERRY_TEST_POSTGRES_URL").expect(
        "Postgres tests need FERRY_TEST_POSTGRES_URL (the README's test command starts a throwaway cluster and sets it)",
    );
    let name = format!("ferry_test_{}", uuid::Uuid::new_v4().simple());
    let client = pg_client(&admin).await;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("admin URL ends in /database");
    format!("{base}/{name}")
}

/// A port free right now, below the kernel's ephemeral range: the site is killed and restarted
/// on it, and nothing binding port 0 (other tests' servers, outgoing connections) can take it
/// in between, as it could take an ephemeral one.
fn free_port() -> u16 {
    use rand::Rng;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    for _ in 0..200 {
        let port = rand::thread_rng().gen_range(10000..low.max(10001));
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range after 200 tries")
}

/// One installation: a data directory, a database and two fixed ports, kept across restarts.
struct Site {
    data: tempfile::TempDir,
    backend: Backend,
    database_url: Option<String>,
    api_port: u16,
    store_port: u16,
    http: reqwest::Client,
}

/// A running `ferry serve`.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL ferry");
        self.child.wait().expect("ferry exits");
    }
}

impl Site {
    async fn new(backend: Backend) -> Self {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await),
        };
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(WAIT).build().unwrap();
        Self {
            data: tempfile::tempdir().unwrap(),
            backend,
            database_url,
            api_port: free_port(),
            store_port: free_port(),
            http,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(args)
            .current_dir(self.data.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FERRY_DATA_DIR", self.data_dir())
            .env("PORT", self.api_port.to_string())
            .env("FERRY_STORE_PORT", self.store_port.to_string())
            .env("FERRY_SWEEP_INTERVAL", "0")
            .env("FERRY_RATE_LIMIT", "0")
            .env("FERRY_UPLOAD_SECRET", UPLOAD_SECRET)
            .env("FERRY_DB_POOL_SIZE", "4")
            .env("RUST_LOG", "info");
        if let Some(url) = &self.database_url {
            command.env("DATABASE_URL", url);
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        command
    }

    /// Starts `ferry serve` and waits (bounded) until both listeners are announced.
    fn start(&self, extra: &[(&str, &str)]) -> Server {
        let mut child = self
            .command(&["serve"], extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ferry starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        // Keeps draining stdout for the process's whole life, so logging never blocks it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(strip_ansi(&line));
            }
        });
        let server = Server { child };
        let deadline = Instant::now() + WAIT;
        let (mut store_seen, mut api_seen) = (false, false);
        let mut seen = Vec::new();
        while !(store_seen && api_seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains("object store: embedded") {
                        assert!(
                            line.contains(&format!("endpoint=http://127.0.0.1:{}/", self.store_port)),
                            "store endpoint: {line}"
                        );
                        store_seen = true;
                    }
                    if line.contains("Ferry API listening") {
                        assert!(line.contains(&format!("addr=127.0.0.1:{}", self.api_port)), "api addr: {line}");
                        api_seen = true;
                    }
                    seen.push(line);
                }
                Err(e) => {
                    panic!("ferry did not announce its listeners within {WAIT:?} ({e}); stdout:\n{}", seen.join("\n"))
                }
            }
        }
        server
    }

    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    fn store_bucket(&self) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
        let secret = std::fs::read_to_string(self.data_dir().join(".ferry-secret")).unwrap();
        let endpoint = format!("http://127.0.0.1:{}", self.store_port).parse().unwrap();
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "ferry", "us-east-1").unwrap();
        (bucket, rusty_s3::Credentials::new("ferry", secret.trim()))
    }

    /// The object's bytes as the store serves them (S3-signed GET), or `None` for 404.
    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let (bucket, creds) = self.store_bucket();
        let url = bucket.get_object(Some(&creds), key).sign(Duration::from_secs(60));
        let response = self.http.get(url).send().await.unwrap();
        match response.status() {
            StatusCode::OK => Some(response.bytes().await.unwrap().to_vec()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {key} from the store: {other}"),
        }
    }

    /// Whether the store has the object (S3-signed HEAD).
    async fn object_exists(&self, key: &str) -> bool {
        let (bucket, creds) = self.store_bucket();
        let url = bucket.head_object(Some(&creds), key).sign(Duration::from_secs(60));
        let response = self.http.head(url).send().await.unwrap();
        match response.status() {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => false,
            other => panic!("HEAD {key} in the store: {other}"),
        }
    }

    async fn post(&self, user: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.http.post(self.api(path)).header("x-user-id", user).json(body).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn presign(&self, user: &str, name: &str, content_type: &str, size: usize) -> (String, String) {
        let (status, body) = self
            .post(user, "/presign-b2-upload", &json!({ "fileName": name, "contentType": content_type, "size": size }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["presignedUrl"].as_str().unwrap().to_owned(), body["objectKey"].as_str().unwrap().to_owned())
    }

    async fn put(&self, url: &str, bytes: Vec<u8>, content_type: &str) -> StatusCode {
        self.http.put(url).header("content-type", content_type).body(bytes).send().await.unwrap().status()
    }

    async fn confirm(&self, user: &str, key: &str) -> (StatusCode, Value) {
        self.post(user, "/save-b2-metadata", &json!({ "objectKey": key })).await
    }

    async fn list(&self, user: &str) -> Vec<Value> {
        let response = self.http.get(self.api("/files?limit=1000")).header("x-user-id", user).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert!(body["nextCursor"].is_null(), "one page holds every file");
        body["files"].as_array().unwrap().clone()
    }

    async fn download(&self, user: &str, id: i64) -> Vec<u8> {
        let response =
            self.http.get(self.api(&format!("/files/{id}/download"))).header("x-user-id", user).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND, "download of listed file {id}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let object = self.http.get(location).send().await.unwrap();
        assert_eq!(object.status(), StatusCode::OK, "the object of listed file {id}");
        object.bytes().await.unwrap().to_vec()
    }

    /// Rows of `b2_files` marked for deletion, read from the database itself.
    async fn marked_rows(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM b2_files WHERE deleting_at IS NOT NULL";
        match self.backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", self.data_dir().join("ferry.db").display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            Backend::Postgres => {
                pg_client(self.database_url.as_ref().unwrap()).await.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    fn tmp_entries(&self) -> Vec<PathBuf> {
        dir_entries(&self.data_dir().join("objects").join(".tmp"))
    }

    /// Uploads and confirms `count` small files for `user`; returns (key, bytes, id).
    async fn upload_many(&self, user: &str, count: usize) -> Vec<(String, Vec<u8>, i64)> {
        let mut out = Vec::new();
        for i in 0..count {
            let bytes = random_bytes(1000 + i);
            let (url, key) = self.presign(user, &format!("f{i}.bin"), "application/octet-stream", bytes.len()).await;
            assert_eq!(self.put(&url, bytes.clone(), "application/octet-stream").await, StatusCode::OK);
            let (status, body) = self.confirm(user, &key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            out.push((key, bytes, body["file"]["id"].as_i64().unwrap()));
        }
        out
    }
}

/// The log line without its colour escapes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::Backend::Postgres).await }
            )*
        }
    };
}

on_both_backends!(
    a_put_killed_halfway_leaves_no_object_and_the_key_stays_usable,
    confirms_killed_in_flight_are_all_or_nothing_and_retry_once,
    deletes_killed_in_flight_are_finished_by_sweep,
    a_multipart_complete_killed_in_flight_is_whole_or_absent,
);

/// Kill delays (ms) tried in turn, so that some rounds die before, some during and some after
/// the requests reach the database.
const DELAYS_MS: [u64; 5] = [1, 3, 6, 12, 25];

/// Starts a presigned PUT of `bytes` on a raw connection and sends half the body; returns once the
/// store is writing it to a temporary file.
async fn half_a_put(site: &Site, url: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    let parsed = url::Url::parse(url).unwrap();
    assert_eq!(parsed.port(), Some(site.store_port));
    let target = format!("{}?{}", parsed.path(), parsed.query().unwrap_or(""));
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", site.store_port)).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        site.store_port,
        bytes.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    stream.flush().await.unwrap();
    wait_until("the PUT's temporary file exists", || !site.tmp_entries().is_empty()).await;
    stream
}

/// Scenario 1: a PUT into the embedded store cut off by SIGKILL halfway through its body: nothing
/// is visible under the key, and the key (still within its window) can be uploaded and confirmed.
async fn a_put_killed_halfway_leaves_no_object_and_the_key_stays_usable(backend: Backend) {
    let site = Site::new(backend).await;
    let server = site.start(&[]);
    let bytes = random_bytes(4 * MIB);
    let (url, key) = site.presign("alice", "half.bin", "application/octet-stream", bytes.len()).await;
    let stream = half_a_put(&site, &url, &bytes).await;
    server.kill();
    drop(stream);

    let server = site.start(&[]);
    assert!(!site.object_exists(&key).await, "a half PUT is never visible");
    assert_eq!(site.object(&key).await, None);
    let (status, body) = site.confirm("alice", &key).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "upload-not-found", "{body}");
    assert!(site.list("alice").await.is_empty());

    // The key is still valid: the whole PUT (same URL: same port) and the confirm succeed.
    assert_eq!(site.put(&url, bytes.clone(), "application/octet-stream").await, StatusCode::OK);
    let (status, body) = site.confirm("alice", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = site.list("alice").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["objectKey"], key.as_str());
    assert_eq!(site.download("alice", listed[0]["id"].as_i64().unwrap()).await, bytes);
    server.kill();

    // A leftover old enough that no live upload can own it is removed at start-up.
    let leftover = site.data_dir().join("objects").join(".tmp").join("left-by-a-crash");
    std::fs::write(&leftover, b"partial").unwrap();
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(25 * 3600);
    std::fs::File::options().write(true).open(&leftover).unwrap().set_modified(day_ago).unwrap();
    let server = site.start(&[]);
    assert!(!leftover.exists(), "a day-old temporary file is removed at start-up");
    server.kill();
}

/// Scenario 1b: the temporary file of a PUT cut off by SIGKILL is gone once Ferry has started
/// again.
///
/// Fails: `embedded/disk.rs::remove_stale_temp_files` removes at start-up only temporary files
/// older than 24 hours, and nothing else ever removes them, so a crash mid-PUT leaves the partial
/// body on disk until a restart at least a day later (and forever if none comes).
async fn a_put_killed_halfway_leaves_no_temp_file_after_restart(backend: Backend) {
    let site = Site::new(backend).await;
    let server = site.start(&[]);
    let bytes = random_bytes(4 * MIB);
    let (url, _key) = site.presign("alice", "half.bin", "application/octet-stream", bytes.len()).await;
    let stream = half_a_put(&site, &url, &bytes).await;
    server.kill();
    drop(stream);
    assert!(!site.tmp_entries().is_empty(), "SIGKILL leaves the temporary file behind");
    let server = site.start(&[]);
    assert_eq!(site.tmp_entries(), Vec::<PathBuf>::new(), "start-up removes the crash's temporary files");
    server.kill();
}

mod tmp_files {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_put_killed_halfway_leaves_no_temp_file_after_restart() {
        super::a_put_killed_halfway_leaves_no_temp_file_after_restart(super::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_a_put_killed_halfway_leaves_no_temp_file_after_restart() {
        super::a_put_killed_halfway_leaves_no_temp_file_after_restart(super::Backend::Postgres).await
    }
}

/// Scenario 2: twenty confirms in flight when the process dies (one round per kill delay).
async fn confirms_killed_in_flight_are_all_or_nothing_and_retry_once(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start(&[]);
    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    for (round, delay) in DELAYS_MS.into_iter().enumerate() {
        let mut uploads = Vec::new();
        for i in 0..20 {
            let bytes = random_bytes(2000 + i);
            let name = format!("r{round}-c{i}.bin");
            let (url, key) = site.presign("alice", &name, "application/octet-stream", bytes.len()).await;
            assert_eq!(site.put(&url, bytes.clone(), "application/octet-stream").await, StatusCode::OK);
            uploads.push((key, bytes));
        }
        let mut in_flight = Vec::new();
        for (key, _) in &uploads {
            let http = site.http.clone();
            let url = site.api("/save-b2-metadata");
            let body = json!({ "objectKey": key });
            in_flight.push(tokio::spawn(async move {
                http.post(url).header("x-user-id", "alice").json(&body).send().await.map(|r| r.status())
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        let mut answered = Vec::new();
        for (task, (key, _)) in in_flight.into_iter().zip(&uploads) {
            if let Ok(status) = task.await.unwrap() {
                assert_eq!(status, StatusCode::OK, "confirm of {key}");
                answered.push(key.clone());
            }
        }
        all.extend(uploads);

        server = site.start(&[]);
        let listed = site.list("alice").await;
        check_whole_rows(&listed, &all);
        for key in &answered {
            assert!(listed.iter().any(|r| r["objectKey"] == key.as_str()), "answered confirm of {key} was lost");
        }
        let round_keys = &all[all.len() - 20..];
        let recorded = round_keys.iter().filter(|(k, _)| listed.iter().any(|r| r["objectKey"] == k.as_str())).count();
        eprintln!(
            "{backend:?} confirm round {round} (kill after {delay} ms): {} answered, {recorded} recorded of 20",
            answered.len()
        );
        for (key, _) in round_keys {
            let (status, body) = site.confirm("alice", key).await;
            assert_eq!(status, StatusCode::OK, "confirming {key} again: {body}");
        }
        let listed = site.list("alice").await;
        check_whole_rows(&listed, &all);
        assert_eq!(listed.len(), all.len(), "each key listed exactly once");
    }
    for row in site.list("alice").await {
        let key = row["objectKey"].as_str().unwrap();
        let (_, bytes) = all.iter().find(|(k, _)| k == key).unwrap();
        assert_eq!(&site.download("alice", row["id"].as_i64().unwrap()).await, bytes);
    }
    server.kill();
}

/// Every listed row is one of `uploads`, whole (size, type, ETag), and listed once.
fn check_whole_rows(listed: &[Value], uploads: &[(String, Vec<u8>)]) {
    for row in listed {
        let key = row["objectKey"].as_str().unwrap();
        let (_, bytes) = uploads.iter().find(|(k, _)| k == key).expect("a listed key is one of ours");
        assert_eq!(row["size"].as_u64(), Some(bytes.len() as u64), "a whole row: {row}");
        assert!(row["etag"].as_str().is_some_and(|e| !e.is_empty()), "a whole row: {row}");
        assert_eq!(row["contentType"], "application/octet-stream", "a whole row: {row}");
        let times = listed.iter().filter(|r| r["objectKey"] == key).count();
        assert_eq!(times, 1, "{key} listed {times} times");
    }
}

/// Scenario 3: twenty deletes in flight when the process dies; `ferry sweep` finishes the job (one
/// round per kill delay).
async fn deletes_killed_in_flight_are_finished_by_sweep(backend: Backend) {
    let site = Site::new(backend).await;
    let extra = [("FERRY_SWEEP_DELETE_AGE", "0")];
    let mut server = site.start(&[]);
    for (round, delay) in DELAYS_MS.into_iter().enumerate() {
        let files = site.upload_many("alice", 20).await;
        let mut in_flight = Vec::new();
        for (_, _, id) in &files {
            let request = site.http.delete(site.api(&format!("/files/{id}"))).header("x-user-id", "alice");
            in_flight.push(tokio::spawn(async move { request.send().await.map(|r| r.status()) }));
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        let mut deleted = Vec::new();
        for (task, (_, _, id)) in in_flight.into_iter().zip(&files) {
            if let Ok(status) = task.await.unwrap() {
                assert!(status.is_success(), "delete {id}: {status}");
                deleted.push(*id);
            }
        }
        let marked_at_crash = site.marked_rows().await;

        server = site.start(&extra);
        let out = site.command(&["sweep"], &extra).output().expect("ferry sweep runs");
        let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
        assert!(out.status.success(), "ferry sweep: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let summary = stdout.lines().find(|l| l.starts_with("scanned")).unwrap_or("").to_owned();

        assert_eq!(site.marked_rows().await, 0, "no row stays marked after the sweep: {stdout}");
        let listed = site.list("alice").await;
        eprintln!(
            "{backend:?} delete round {round} (kill after {delay} ms): {} answered, {marked_at_crash} marked at the \
             crash, {} of 20 still listed; sweep: {summary}",
            deleted.len(),
            listed.len()
        );
        for row in &listed {
            let id = row["id"].as_i64().unwrap();
            assert!(!deleted.contains(&id), "file {id} was deleted (answered) but is listed");
            let (_, bytes, _) = files.iter().find(|(_, _, i)| *i == id).expect("only this round's files are left");
            assert_eq!(&site.download("alice", id).await, bytes, "listed file {id} has its bytes");
        }
        for (key, _, id) in &files {
            if !listed.iter().any(|r| r["id"].as_i64() == Some(*id)) {
                assert!(!site.object_exists(key).await, "file {id} is gone from the list but its object stayed");
            }
        }
        // What is left can still be deleted.
        for row in &listed {
            let id = row["id"].as_i64().unwrap();
            let response =
                site.http.delete(site.api(&format!("/files/{id}"))).header("x-user-id", "alice").send().await.unwrap();
            assert!(response.status().is_success(), "delete {id} after restart: {}", response.status());
        }
        assert!(site.list("alice").await.is_empty());
        assert_eq!(site.marked_rows().await, 0);
    }
    server.kill();
}

/// Where in a multipart completion the process is killed.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// While the store writes the joined object to its temporary file.
    Joining,
    /// Just after the joined object is renamed into place (before the row, if the timing allows).
    Joined,
}

/// Scenario 4: a multipart completion (two parts, 17 MiB) killed while the store joins the parts,
/// and again just after it has joined them.
async fn a_multipart_complete_killed_in_flight_is_whole_or_absent(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start(&[]);
    for (round, kill_at) in [KillAt::Joining, KillAt::Joined].into_iter().enumerate() {
        server = multipart_round(&site, server, &format!("alice{round}"), kill_at).await;
    }
    server.kill();
}

async fn multipart_round(site: &Site, server: Server, user: &str, kill_at: KillAt) -> Server {
    let backend = site.backend;
    let bytes = random_bytes(17 * MIB + 5);
    let (status, start) = site
        .post(
            user,
            "/multipart/start",
            &json!({ "fileName": "movie.mp4", "contentType": "video/mp4", "size": bytes.len() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    assert_eq!(start["partCount"], 2);
    let part_size = start["partSize"].as_u64().unwrap() as usize;
    let key = start["objectKey"].as_str().unwrap().to_owned();
    let upload_id = start["uploadId"].clone();
    let (status, urls) = site
        .post(user, "/multipart/urls", &json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": [1, 2] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{urls}");
    let mut parts = Vec::new();
    for (i, entry) in urls["urls"].as_array().unwrap().iter().enumerate() {
        let chunk = bytes[i * part_size..((i + 1) * part_size).min(bytes.len())].to_vec();
        let response = site.http.put(entry["url"].as_str().unwrap()).body(chunk).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({ "partNumber": entry["partNumber"], "etag": etag }));
    }
    // Temporary files already there (another store may share the directory) are not this round's.
    let before = site.tmp_entries();
    let complete = json!({ "objectKey": key, "uploadId": upload_id, "parts": parts });
    let request = site.http.post(site.api("/multipart/complete")).header("x-user-id", user).json(&complete);
    let in_flight = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
    // Kill the moment the store starts writing the joined object, or the moment it has renamed it
    // into place (bounded: 5 s at most).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut joining_seen = false;
    while !in_flight.is_finished() && Instant::now() < deadline {
        let writing = site.tmp_entries().iter().any(|p| !before.contains(p));
        joining_seen |= writing;
        match kill_at {
            KillAt::Joining if writing => break,
            KillAt::Joined if joining_seen && !writing => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    server.kill();
    let answered = in_flight.await.unwrap().ok();

    let server = site.start(&[]);
    let object = site.object(&key).await;
    eprintln!(
        "{backend:?} multipart {kill_at:?}: join seen: {joining_seen}; answered: {answered:?}; object after restart: {}",
        object.is_some()
    );
    if let Some(object) = &object {
        assert!(object == &bytes, "the object is whole or absent: {} bytes of {}", object.len(), bytes.len());
    }
    let listed = site.list(user).await;
    assert!(listed.len() <= 1);
    if answered == Some(StatusCode::OK) {
        assert_eq!(listed.len(), 1, "an answered complete is recorded");
    }
    for row in &listed {
        assert_eq!(row["objectKey"], key.as_str());
        assert_eq!(site.download(user, row["id"].as_i64().unwrap()).await, bytes);
    }

    let (status, body) = site.post(user, "/multipart/complete", &complete).await;
    eprintln!("{backend:?} multipart {kill_at:?}: retried complete: {status} {}", body["code"]);
    if status == StatusCode::OK {
        assert_eq!(body["file"]["size"], bytes.len());
        assert_eq!(site.object(&key).await.as_ref(), Some(&bytes));
    } else {
        assert!(status.is_client_error(), "a retried complete succeeds or answers a clear 4xx: {status} {body}");
        assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()), "{body}");
        if object.is_some() {
            // The bytes are whole: a confirm of the key records them.
            let (status, body) = site.confirm(user, &key).await;
            assert_eq!(status, StatusCode::OK, "the whole object can be confirmed: {body}");
        }
    }
    let listed = site.list(user).await;
    if let Some(object) = site.object(&key).await {
        assert_eq!(object, bytes);
        assert_eq!(listed.len(), 1, "whole and recorded: listed once");
        assert_eq!(site.download(user, listed[0]["id"].as_i64().unwrap()).await, bytes);
    } else {
        assert!(listed.is_empty(), "no row without its object");
    }
    server
}

/// Scenario 4b: the state a SIGKILL leaves between the store's join and the row (the object whole,
/// the multipart upload gone, no row), made deterministically: the join is done on the store
/// directly, then the client retries `/multipart/complete` with the same parts.
///
/// Fails: `Uploads::complete_multipart` maps the store's refusal (the upload id no longer exists)
/// to `400 invalid-parts` ("the store refused these parts") instead of confirming the whole
/// object, so a client retrying its cut-off completion is told its parts are invalid
/// (`POST /save-b2-metadata` for the key does record it).
async fn a_retried_complete_after_the_join_records_the_file(backend: Backend) {
    let site = Site::new(backend).await;
    let server = site.start(&[]);
    let bytes = random_bytes(10);
    let (status, start) = site
        .post(
            "alice",
            "/multipart/start",
            &json!({ "fileName": "a.bin", "contentType": "application/octet-stream", "size": bytes.len() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    let key = start["objectKey"].as_str().unwrap().to_owned();
    let upload_id = start["uploadId"].as_str().unwrap().to_owned();
    let (status, urls) = site
        .post("alice", "/multipart/urls", &json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": [1] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{urls}");
    let response = site.http.put(urls["urls"][0]["url"].as_str().unwrap()).body(bytes.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();

    // The store joins the parts; Ferry dies before recording the row.
    let (bucket, creds) = site.store_bucket();
    let action = bucket.complete_multipart_upload(Some(&creds), &key, &upload_id, std::iter::once(etag.as_str()));
    let url = action.sign(Duration::from_secs(60));
    let joined = site.http.post(url).body(action.body()).send().await.unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    assert_eq!(site.object(&key).await, Some(bytes.clone()));

    let complete = json!({ "objectKey": key, "uploadId": upload_id, "parts": [{ "partNumber": 1, "etag": etag }] });
    let (status, body) = site.post("alice", "/multipart/complete", &complete).await;
    assert_eq!(status, StatusCode::OK, "the retried completion records the joined object: {body}");
    let listed = site.list("alice").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(site.download("alice", listed[0]["id"].as_i64().unwrap()).await, bytes);
    server.kill();
}

mod multipart_retry {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_retried_complete_after_the_join_records_the_file() {
        super::a_retried_complete_after_the_join_records_the_file(super::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_a_retried_complete_after_the_join_records_the_file() {
        super::a_retried_complete_after_the_join_records_the_file(super::Backend::Postgres).await
    }
}

/// Blob files in the embedded store that no metadata file names (invisible, never removed).
fn orphan_blobs(site: &Site) -> Vec<PathBuf> {
    let mut orphans = Vec::new();
    for dir in dir_entries(&site.data_dir().join("objects").join("ferry")) {
        let files = dir_entries(&dir);
        let named: Vec<String> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).ok()?).ok())
            .filter_map(|meta| meta["blob"].as_str().map(str::to_owned))
            .collect();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".json") && !named.contains(&name) {
                orphans.push(file);
            }
        }
    }
    orphans
}

/// Scenario 5: SIGKILL just after a PUT's body is renamed into place, before its metadata file
/// is written (`Disk::commit`), repeated until that window is hit (at most 100 times).
///
/// Fails: the blob renamed into the bucket directory is named by no metadata file, so the object
/// is invisible (correct) but the blob stays on disk for ever: nothing removes it (a later PUT of
/// the same key finds no previous metadata and leaves it too).
async fn a_put_killed_between_blob_and_metadata_leaves_no_orphan_blob(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start(&[]);
    for attempt in 0..100 {
        let bytes = random_bytes(2 * MIB);
        let name = format!("w{attempt}.bin");
        let (url, key) = site.presign("alice", &name, "application/octet-stream", bytes.len()).await;
        let before = site.tmp_entries();
        let request = site.http.put(url.clone()).header("content-type", "application/octet-stream").body(bytes);
        let in_flight = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
        let deadline = Instant::now() + WAIT;
        let mut writing_seen = false;
        while !in_flight.is_finished() && Instant::now() < deadline {
            let writing = site.tmp_entries().iter().any(|p| !before.contains(p));
            writing_seen |= writing;
            if writing_seen && !writing {
                break;
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        server.kill();
        let _ = in_flight.await.unwrap();
        server = site.start(&[]);
        let visible = site.object_exists(&key).await;
        let orphans = orphan_blobs(&site);
        assert!(
            orphans.is_empty(),
            "blobs no metadata names, after {} kills (object visible: {visible}): {orphans:?}",
            attempt + 1
        );
    }
    server.kill();
}

mod orphan_blobs {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_put_killed_between_blob_and_metadata_leaves_no_orphan_blob() {
        super::a_put_killed_between_blob_and_metadata_leaves_no_orphan_blob(super::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_a_put_killed_between_blob_and_metadata_leaves_no_orphan_blob() {
        super::a_put_killed_between_blob_and_metadata_leaves_no_orphan_blob(super::Backend::Postgres).await
    }
}

/// The listing index (`embedded/index.rs`) against SIGKILL: PUTs are killed around their commit
/// (the moment the metadata file and the index change), and after each restart the store's own
/// listing names exactly the objects a GET can read.
async fn a_put_killed_around_its_commit_is_listed_if_and_only_if_it_can_be_read(backend: Backend) {
    let site = Site::new(backend).await;
    let mut server = site.start(&[]);
    let mut keys = Vec::new();
    for attempt in 0..40 {
        let bytes = random_bytes(2 * MIB);
        let (url, key) =
            site.presign("alice", &format!("l{attempt}.bin"), "application/octet-stream", bytes.len()).await;
        let before = site.tmp_entries();
        let request = site.http.put(url).header("content-type", "application/octet-stream").body(bytes);
        let in_flight = tokio::spawn(async move { request.send().await.map(|r| r.status()) });
        // Kill just as the body has been written (its temporary file is renamed into place).
        let deadline = Instant::now() + WAIT;
        let mut writing_seen = false;
        while !in_flight.is_finished() && Instant::now() < deadline {
            let writing = site.tmp_entries().iter().any(|p| !before.contains(p));
            writing_seen |= writing;
            if writing_seen && !writing {
                break;
            }
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        server.kill();
        let _ = in_flight.await.unwrap();
        server = site.start(&[]);
        keys.push(key);

        let (bucket, creds) = site.store_bucket();
        let list = bucket.list_objects_v2(Some(&creds)).sign(Duration::from_secs(60));
        let listing = site.http.get(list).send().await.unwrap().text().await.unwrap();
        for key in &keys {
            let listed = listing.contains(&format!("<Key>{key}</Key>"));
            let readable = site.object(key).await.is_some();
            assert_eq!(listed, readable, "{key} after {} kills: listed {listed}, readable {readable}", attempt + 1);
        }
    }
    server.kill();
}

mod listing_index {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_a_put_killed_around_its_commit_is_listed_if_and_only_if_it_can_be_read() {
        super::a_put_killed_around_its_commit_is_listed_if_and_only_if_it_can_be_read(super::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_a_put_killed_around_its_commit_is_listed_if_and_only_if_it_can_be_read() {
        super::a_put_killed_around_its_commit_is_listed_if_and_only_if_it_can_be_read(super::Backend::Postgres).await
    }
}
