//! `spawn_app`: a fresh data directory, a fresh database and Ferry on port 0, per test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ferry::config::{Config, Secret};
use ferry::startup::Application;
use ferry::upload::TicketSigner;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::net::TcpListener;

/// Runs a test body once per metadata backend, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Postgres).await }
            )*
        }
    };
}

/// Runs a test body once, on SQLite: for tests that never reach the metadata database in a
/// way the backends could differ (token checks, the store, input validation before any query).
#[macro_export]
macro_rules! on_one_backend {
    ($($name:ident),* $(,)?) => {
        mod once {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The guide's own query, word for word.
pub const GUIDE_SELECT: &str =
    "SELECT id, object_key, file_url, user_id, upload_timestamp FROM b2_files WHERE user_id = 'user_123'";
pub const UPLOAD_SECRET: &str = "test upload secret";

pub struct TestApp {
    pub addr: SocketAddr,
    pub store_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub http: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    pub backend: Backend,
    pub database_url: String,
    pub core: std::sync::Arc<ferry::core::Core>,
    /// The server task: it ends when the server has stopped.
    pub server: tokio::task::JoinHandle<()>,
}

/// A plain connection to the test cluster (no TLS: it listens on loopback only).
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to test cluster");
    tokio::spawn(connection);
    client
}

/// A fresh Postgres database on the test cluster.
async fn fresh_postgres_database() -> String {
    let admin = std::env::var("FERRY_TEST_POSTGRES_URL").expect(
        "Postgres tests need FERRY_TEST_POSTGRES_URL (the README's test command starts a throwaway cluster and sets it)",
    );
    fresh_database_on(&admin).await
}

/// A fresh database on the cluster `admin` (a superuser's URL) reaches; returns its URL.
pub async fn fresh_database_on(admin: &str) -> String {
    let name = format!("ferry_test_{}", uuid::Uuid::new_v4().simple());
    let client = pg_client(admin).await;
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let (base, _) = admin.rsplit_once('/').expect("admin URL ends in /database");
    format!("{base}/{name}")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Spawns Ferry with extra configuration variables on top of the test defaults.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    spawn_app_until(backend, extra, std::future::pending()).await
}

/// Spawns Ferry that shuts down when `shutdown` completes.
pub async fn spawn_app_until(
    backend: Backend,
    extra: &[(&str, &str)],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", data_dir.path().join("ferry.db").display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    let mut vars: HashMap<String, String> = HashMap::from([
        ("FERRY_DATA_DIR".into(), data_dir.path().display().to_string()),
        ("DATABASE_URL".into(), database_url.clone()),
        ("FERRY_SWEEP_INTERVAL".into(), "0".into()),
        ("FERRY_UPLOAD_SECRET".into(), UPLOAD_SECRET.into()),
        // Tests send many requests from one address; the rate-limit tests turn it back on.
        ("FERRY_RATE_LIMIT".into(), "0".into()),
        // Tests run in parallel against one cluster, some with several instances each: small
        // pools keep them inside its max_connections (scripts/test sizes that per core).
        ("FERRY_DB_POOL_SIZE".into(), "4".into()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    let cfg = Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration");
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build(cfg, api, Some(store)).await.expect("Ferry starts");
    let addr = app.api_addr();
    let store_addr = app.store_addr();
    let metrics_addr = app.metrics_addr();
    let core = app.core().clone();
    let server = tokio::spawn(async move {
        app.run_until_stopped(shutdown).await.expect("server runs");
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    TestApp { addr, store_addr, metrics_addr, http, data_dir, backend, database_url, core, server }
}

/// A JSON reply: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Reply { status, body }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let response =
            self.http.post(self.url(path)).header("content-type", content_type).body(body).send().await.unwrap();
        reply(response).await
    }

    pub async fn post_json_as(&self, user: &str, path: &str, body: &Value) -> Reply {
        let response = self.http.post(self.url(path)).header("x-user-id", user).json(body).send().await.unwrap();
        reply(response).await
    }

    pub async fn presign_as(&self, user: &str, file_name: &str, content_type: &str) -> Reply {
        self.post_json_as(user, "/presign-b2-upload", &json!({ "fileName": file_name, "contentType": content_type }))
            .await
    }

    pub async fn presign(&self, file_name: &str, content_type: &str) -> Reply {
        self.presign_as("user_123", file_name, content_type).await
    }

    pub async fn confirm_as(&self, user: &str, key: &str) -> Reply {
        self.post_json_as(user, "/save-b2-metadata", &json!({ "objectKey": key })).await
    }

    pub async fn confirm(&self, key: &str) -> Reply {
        self.confirm_as("user_123", key).await
    }

    /// The guide's step 2: `curl -X PUT --upload-file F -H "Content-Type: T" URL`.
    pub async fn put(&self, presigned_url: &str, bytes: Vec<u8>, content_type: &str) -> StatusCode {
        self.http.put(presigned_url).header("content-type", content_type).body(bytes).send().await.unwrap().status()
    }

    /// Presign, PUT and confirm; returns the confirmed file's JSON.
    pub async fn upload_as(&self, user: &str, file_name: &str, content_type: &str, bytes: Vec<u8>) -> Value {
        let presigned = self.presign_as(user, file_name, content_type).await;
        assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
        let url = presigned.body["presignedUrl"].as_str().unwrap();
        assert_eq!(self.put(url, bytes, content_type).await, StatusCode::OK);
        let key = presigned.body["objectKey"].as_str().unwrap();
        let confirmed = self.confirm_as(user, key).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
        confirmed.body["file"].clone()
    }

    /// Starts a multipart upload of `bytes` and PUTs every part through its presigned URL;
    /// returns the key, the upload id and the parts (`partNumber` and ETag) to complete it with.
    pub async fn upload_parts(
        &self,
        user: &str,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> (Value, Value, Vec<Value>) {
        let body = json!({ "fileName": file_name, "contentType": content_type, "size": bytes.len() });
        let start = self.post_json_as(user, "/multipart/start", &body).await;
        assert_eq!(start.status, StatusCode::OK, "{}", start.body);
        let part_size = start.body["partSize"].as_u64().unwrap() as usize;
        let count = start.body["partCount"].as_u64().unwrap();
        let (key, upload_id) = (start.body["objectKey"].clone(), start.body["uploadId"].clone());
        let numbers: Vec<u64> = (1..=count).collect();
        let body = json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": numbers });
        let urls = self.post_json_as(user, "/multipart/urls", &body).await;
        let mut parts = Vec::new();
        for (i, entry) in urls.body["urls"].as_array().unwrap().iter().enumerate() {
            let chunk = bytes[i * part_size..((i + 1) * part_size).min(bytes.len())].to_vec();
            let response = self.http.put(entry["url"].as_str().unwrap()).body(chunk).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            parts.push(json!({ "partNumber": entry["partNumber"], "etag": etag }));
        }
        (key, upload_id, parts)
    }

    pub async fn get_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).header("x-user-id", user).send().await.unwrap()
    }

    pub async fn delete_as(&self, user: &str, path: &str) -> Reply {
        reply(self.http.delete(self.url(path)).header("x-user-id", user).send().await.unwrap()).await
    }

    /// Follows a download redirect and returns the bytes.
    pub async fn download_as(&self, user: &str, id: i64) -> Vec<u8> {
        let response = self.get_as(user, &format!("/files/{id}/download")).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let object = self.http.get(location).send().await.unwrap();
        assert_eq!(object.status(), StatusCode::OK);
        object.bytes().await.unwrap().to_vec()
    }

    /// Runs the guide's SELECT on Ferry's database; returns (object_key, user_id) pairs.
    pub async fn guide_select(&self) -> Vec<(String, String)> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
                let rows = sqlx::query(GUIDE_SELECT).fetch_all(&pool).await.unwrap();
                rows.iter().map(|r| (r.get::<String, _>("object_key"), r.get::<String, _>("user_id"))).collect()
            }
            Backend::Postgres => {
                let client = pg_client(&self.database_url).await;
                let rows = client.query(GUIDE_SELECT, &[]).await.unwrap();
                rows.iter().map(|r| (r.get::<_, String>("object_key"), r.get::<_, String>("user_id"))).collect()
            }
        }
    }

    /// Counts rows of `b2_files` for any user.
    /// The embedded store's successful answers to UploadPart so far, from `/metrics`.
    pub async fn parts_stored(&self) -> u64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with("ferry_store_requests_total{") && l.contains("operation=\"UploadPart\""))
            .filter(|l| l.contains("status=\"200\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    pub async fn row_count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM b2_files";
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
            Backend::Postgres => pg_client(&self.database_url).await.query_one(sql, &[]).await.unwrap().get(0),
        }
    }

    /// The embedded store's credentials, as a standard S3 client would use them.
    pub fn store_bucket(&self) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
        let secret = std::fs::read_to_string(self.data_dir.path().join(".ferry-secret")).unwrap();
        let endpoint = format!("http://{}", self.store_addr.unwrap()).parse().unwrap();
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "ferry", "us-east-1").unwrap();
        (bucket, rusty_s3::Credentials::new("ferry", secret.trim()))
    }

    /// Writes an object straight into the store, bypassing Ferry (as a misbehaving client could
    /// with a store that does not enforce signed headers).
    pub async fn put_directly(&self, key: &str, bytes: Vec<u8>, content_type: &str) {
        use rusty_s3::S3Action;
        let (bucket, creds) = self.store_bucket();
        let mut action = bucket.put_object(Some(&creds), key);
        action.headers_mut().insert("content-type", content_type.to_owned());
        let url = action.sign(Duration::from_secs(60));
        assert_eq!(self.put(url.as_str(), bytes, content_type).await, StatusCode::OK);
    }

    /// Writes an object straight into an external store, bypassing Ferry.
    pub async fn put_external(&self, store: &ExternalStore, key: &str) {
        use rusty_s3::S3Action;
        let endpoint = format!("http://{}", store.addr).parse().unwrap();
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, "ext", "us-east-1").unwrap();
        let creds = rusty_s3::Credentials::new(EXTERNAL_KEY_ID, EXTERNAL_SECRET);
        let mut action = bucket.put_object(Some(&creds), key);
        action.headers_mut().insert("content-type", "text/plain".to_owned());
        let url = action.sign(Duration::from_secs(60));
        assert_eq!(self.put(url.as_str(), b"again".to_vec(), "text/plain").await, StatusCode::OK);
    }

    pub async fn object_exists(&self, key: &str) -> bool {
        self.core.store.head(key).await.unwrap().is_some()
    }

    /// Issues a key the way Ferry does, for any expiry (past ones included).
    pub fn issue_key(&self, user: &str, name: &str, expires_at: u32) -> String {
        TicketSigner::new(&Secret::new(UPLOAD_SECRET)).issue(user, name, expires_at)
    }
}

pub fn now_unix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// A standalone embedded store that a test can stop and start again on the same port,
/// to see what Ferry does when its bucket goes away.
pub struct ExternalStore {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<()>>,
    cors_origins: Vec<String>,
}

pub const EXTERNAL_KEY_ID: &str = "test-key-id";
pub const EXTERNAL_SECRET: &str = "test-secret-access-key";

impl ExternalStore {
    pub async fn start() -> Self {
        Self::start_with_cors(&[]).await
    }

    /// A store whose CORS rules allow `origins` (PUT, GET, HEAD; `ETag` exposed).
    pub async fn start_with_cors(origins: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cors_origins = origins.iter().map(|o| (*o).to_owned()).collect();
        let mut store = Self { addr, root: tempfile::tempdir().unwrap(), task: None, cors_origins };
        store.serve(listener);
        store
    }

    fn serve(&mut self, listener: TcpListener) {
        let options = ferry::embedded::StoreOptions {
            root: self.root.path(),
            bucket: "ext",
            access_key_id: EXTERNAL_KEY_ID,
            secret_access_key: &Secret::new(EXTERNAL_SECRET),
            public_read: false,
            body_idle_timeout: std::time::Duration::from_secs(30),
            max_object_size: u64::MAX,
            host_names: Vec::new(),
        };
        let router = ferry::embedded::router(&options, &self.cors_origins).unwrap();
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }));
    }

    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.expect("rebind the store's port");
        self.serve(listener);
    }

    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("S3_ENDPOINT", format!("http://{}", self.addr)),
            ("S3_BUCKET", "ext".into()),
            ("S3_ACCESS_KEY_ID", EXTERNAL_KEY_ID.into()),
            ("S3_SECRET_ACCESS_KEY", EXTERNAL_SECRET.into()),
        ]
    }
}

/// Ferry configured with an external bucket (a standalone store the test controls).
pub async fn spawn_app_with_store(backend: Backend, store: &ExternalStore, extra: &[(&str, &str)]) -> TestApp {
    let vars = store.vars();
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    spawn_app_with(backend, &all).await
}
