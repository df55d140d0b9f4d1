//! A small client for Ferry's API, used by `ferry upload`: single presigned PUTs for ordinary
//! files, multipart for large ones. Files are streamed from disk, never read whole.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum Identity {
    Token(String),
    DevUser(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("cannot reach {0}")]
    Network(String),
    #[error("Ferry refused: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("the bucket refused part {part}: HTTP {status}")]
    Store { part: u16, status: u16 },
}

pub struct Client {
    api: String,
    identity: Identity,
    http: reqwest::Client,
    /// Files larger than this go by multipart.
    pub multipart_threshold: u64,
    /// Parts sent at once.
    pub concurrency: usize,
}

/// A content type from the file name's extension (what browsers would send).
pub fn guess_content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

impl Client {
    pub fn new(api: &str, identity: Identity) -> Self {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("HTTP client");
        Self {
            api: api.trim_end_matches('/').to_owned(),
            identity,
            http,
            multipart_threshold: 64 * 1024 * 1024,
            concurrency: 4,
        }
    }

    async fn call(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let mut request = self.http.post(format!("{}{path}", self.api)).json(body);
        request = match &self.identity {
            Identity::Token(token) => request.bearer_auth(token),
            Identity::DevUser(user) => request.header("x-user-id", user),
        };
        let response = request.send().await.map_err(|_| ClientError::Network(self.api.clone()))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ClientError::Refused {
                code: value["code"].as_str().unwrap_or("http-error").to_owned(),
                message: value["error"].as_str().map_or_else(|| format!("HTTP {status}"), str::to_owned),
            });
        }
        Ok(value)
    }

    /// Streams `len` bytes of `path` from `offset` to a presigned URL; returns the ETag.
    async fn put_range(
        &self,
        url: &str,
        path: &Path,
        offset: u64,
        len: u64,
        content_type: Option<&str>,
        part: u16,
    ) -> Result<String, ClientError> {
        let file_error = |source| ClientError::File { path: path.display().to_string(), source };
        let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(file_error)?;
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file.take(len), 256 * 1024));
        let mut request = self.http.put(url).header("content-length", len).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.map_err(|_| ClientError::Network("the bucket".into()))?;
        if !response.status().is_success() {
            return Err(ClientError::Store { part, status: response.status().as_u16() });
        }
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(etag.trim_matches('"').to_owned())
    }

    /// Uploads one file and returns the file record Ferry made.
    pub async fn upload(&self, path: &Path, content_type: Option<&str>) -> Result<Value, ClientError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| ClientError::File { path: path.display().to_string(), source })?
            .len();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
        let content_type = content_type.unwrap_or_else(|| guess_content_type(path));
        if size <= self.multipart_threshold {
            let presigned = self
                .call("/presign-b2-upload", &json!({ "fileName": name, "contentType": content_type, "size": size }))
                .await?;
            let url = presigned["presignedUrl"].as_str().unwrap_or_default();
            self.put_range(url, path, 0, size, Some(content_type), 1).await?;
            let saved = self.call("/save-b2-metadata", &json!({ "objectKey": presigned["objectKey"] })).await?;
            return Ok(saved["file"].clone());
        }
        self.upload_multipart(path, &name, content_type, size).await
    }

    async fn upload_multipart(
        &self,
        path: &Path,
        name: &str,
        content_type: &str,
        size: u64,
    ) -> Result<Value, ClientError> {
        let started = self
            .call("/multipart/start", &json!({ "fileName": name, "contentType": content_type, "size": size }))
            .await?;
        let key = started["objectKey"].clone();
        let upload_id = started["uploadId"].clone();
        let part_size = started["partSize"].as_u64().unwrap_or(16 * 1024 * 1024);
        let count = size.div_ceil(part_size) as u16;
        let result = async {
            let mut parts = Vec::with_capacity(usize::from(count));
            for chunk in (1..=count).collect::<Vec<u16>>().chunks(self.concurrency.max(1) * 8) {
                let urls = self
                    .call("/multipart/urls", &json!({ "objectKey": key, "uploadId": upload_id, "partNumbers": chunk }))
                    .await?;
                let urls: Vec<(u16, String)> = urls["urls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        (u["partNumber"].as_u64().unwrap_or(0) as u16, u["url"].as_str().unwrap_or_default().to_owned())
                    })
                    .collect();
                for group in urls.chunks(self.concurrency.max(1)) {
                    let puts = group.iter().map(|(n, url)| {
                        let offset = u64::from(n - 1) * part_size;
                        let len = part_size.min(size - offset);
                        async move { self.put_range(url, path, offset, len, None, *n).await.map(|etag| (*n, etag)) }
                    });
                    for done in futures::future::join_all(puts).await {
                        let (n, etag) = done?;
                        eprintln!("  {name}: part {n}/{count}");
                        parts.push(json!({ "partNumber": n, "etag": etag }));
                    }
                }
            }
            let done = self
                .call("/multipart/complete", &json!({ "objectKey": key, "uploadId": upload_id, "parts": parts }))
                .await?;
            Ok(done["file"].clone())
        }
        .await;
        if result.is_err() {
            // Leave nothing half-uploaded behind.
            let _ = self.call("/multipart/abort", &json!({ "objectKey": key, "uploadId": upload_id })).await;
        }
        result
    }
}
