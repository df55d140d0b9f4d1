//! A small client for Ferry's API, used by `ferry upload`: single presigned PUTs for ordinary
//! files, multipart for large ones. Files are streamed from disk, never read whole.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::config::defaults;
use crate::wire::{
    CompletedPart, ConfirmRequest, Confirmed, ErrorBody, FileView, MultipartAbortRequest, MultipartCompleteRequest,
    MultipartStartRequest, MultipartStarted, PartUrls, PartUrlsRequest, PresignRequest, PresignResponse,
};

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
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("{0} answered something that is not Ferry's API")]
    Unexpected(String),
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
    /// Send each file's (or part's) MD5, so the bucket refuses bytes that changed on the way.
    pub checksums: bool,
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
    pub fn new(api: &str, identity: Identity) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            api: api.trim_end_matches('/').to_owned(),
            identity,
            http,
            multipart_threshold: defaults::MULTIPART_THRESHOLD,
            concurrency: 4,
            checksums: true,
        })
    }

    /// POSTs `body` to `path` and reads the typed answer, or Ferry's error body.
    async fn call<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, ClientError> {
        let mut request = self.http.post(format!("{}{path}", self.api)).json(body);
        request = match &self.identity {
            Identity::Token(token) => request.bearer_auth(token),
            Identity::DevUser(user) => request.header("x-user-id", user),
        };
        let response = request.send().await.map_err(|_| ClientError::Network(self.api.clone()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|_| ClientError::Network(self.api.clone()))?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Refused { code: body.code, message: body.error },
                Err(_) => ClientError::Refused { code: "http-error".into(), message: format!("HTTP {status}") },
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| ClientError::Unexpected(self.api.clone()))
    }

    /// The MD5 (base64, as `Content-MD5` carries it) of `len` bytes of `path` from `offset`,
    /// when checksums are on. Hashing reads the bytes once more; it runs off the async threads.
    async fn md5(&self, path: &Path, offset: u64, len: u64) -> Result<Option<String>, ClientError> {
        if !self.checksums {
            return Ok(None);
        }
        let owned = path.to_owned();
        let digest = tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 16]> {
            use md5::Digest as _;
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&owned)?;
            file.seek(std::io::SeekFrom::Start(offset))?;
            let mut hasher = md5::Md5::new();
            let mut reader = file.take(len);
            let mut buffer = vec![0; 1024 * 1024];
            loop {
                let n = reader.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            Ok(hasher.finalize().into())
        })
        .await
        .map_err(|e| ClientError::File { path: path.display().to_string(), source: std::io::Error::other(e) })?
        .map_err(|source| ClientError::File { path: path.display().to_string(), source })?;
        use base64::Engine as _;
        Ok(Some(base64::engine::general_purpose::STANDARD.encode(digest)))
    }

    /// Streams `len` bytes of `path` from `offset` to a presigned URL; returns the ETag.
    #[allow(clippy::too_many_arguments)]
    async fn put_range(
        &self,
        url: &str,
        path: &Path,
        offset: u64,
        len: u64,
        content_type: Option<&str>,
        content_md5: Option<&str>,
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
        if let Some(md5) = content_md5 {
            request = request.header("content-md5", md5);
        }
        let response = request.send().await.map_err(|_| ClientError::Network("the bucket".into()))?;
        if !response.status().is_success() {
            return Err(ClientError::Store { part, status: response.status().as_u16() });
        }
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(etag.trim_matches('"').to_owned())
    }

    /// Uploads one file and returns the file record Ferry made.
    pub async fn upload(&self, path: &Path, content_type: Option<&str>) -> Result<FileView, ClientError> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| ClientError::File { path: path.display().to_string(), source })?
            .len();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
        let content_type = content_type.unwrap_or_else(|| guess_content_type(path));
        if size <= self.multipart_threshold {
            let md5 = self.md5(path, 0, size).await?;
            let request = PresignRequest {
                file_name: Some(name),
                content_type: Some(content_type.to_owned()),
                size: Some(size),
                md5: md5.clone(),
                sha256: None,
            };
            let presigned: PresignResponse = self.call("/presign-b2-upload", &request).await?;
            self.put_range(&presigned.presigned_url, path, 0, size, Some(content_type), md5.as_deref(), 1).await?;
            let confirm = ConfirmRequest { object_key: Some(presigned.object_key), public_file_url: None };
            let saved: Confirmed = self.call("/save-b2-metadata", &confirm).await?;
            return Ok(saved.file);
        }
        self.upload_multipart(path, &name, content_type, size).await
    }

    async fn upload_multipart(
        &self,
        path: &Path,
        name: &str,
        content_type: &str,
        size: u64,
    ) -> Result<FileView, ClientError> {
        let request = MultipartStartRequest {
            file_name: Some(name.to_owned()),
            content_type: Some(content_type.to_owned()),
            size: Some(size),
        };
        let started: MultipartStarted = self.call("/multipart/start", &request).await?;
        let (key, upload_id, part_size) = (&started.object_key, &started.upload_id, started.part_size);
        let count = u16::try_from(size.div_ceil(part_size)).map_err(|_| ClientError::Unexpected(self.api.clone()))?;
        let result = async {
            let mut parts = Vec::with_capacity(usize::from(count));
            let range = |n: u16| {
                let offset = u64::from(n - 1) * part_size;
                (offset, part_size.min(size - offset))
            };
            // With checksums, each group's parts are hashed first and their URLs signed with
            // their digests; without, URLs come eight groups at a time.
            let batch = if self.checksums { self.concurrency.max(1) } else { self.concurrency.max(1) * 8 };
            for chunk in (1..=count).collect::<Vec<u16>>().chunks(batch) {
                let md5s = if self.checksums {
                    let hashes = chunk.iter().map(|&n| {
                        let (offset, len) = range(n);
                        self.md5(path, offset, len)
                    });
                    let hashes = futures::future::try_join_all(hashes).await?;
                    Some(hashes.into_iter().map(Option::unwrap_or_default).collect::<Vec<_>>())
                } else {
                    None
                };
                let request = PartUrlsRequest {
                    object_key: Some(key.clone()),
                    upload_id: Some(upload_id.clone()),
                    part_numbers: Some(chunk.to_vec()),
                    md5s: md5s.clone(),
                };
                let urls: PartUrls = self.call("/multipart/urls", &request).await?;
                let digest = |n: u16| {
                    let i = chunk.iter().position(|&c| c == n)?;
                    md5s.as_ref().map(|m| m[i].clone())
                };
                for group in urls.urls.chunks(self.concurrency.max(1)) {
                    let puts = group.iter().map(|part| {
                        let (offset, len) = range(part.part_number);
                        let md5 = digest(part.part_number);
                        async move {
                            let etag = self
                                .put_range(&part.url, path, offset, len, None, md5.as_deref(), part.part_number)
                                .await?;
                            Ok::<_, ClientError>(CompletedPart { part_number: part.part_number, etag })
                        }
                    });
                    for done in futures::future::join_all(puts).await {
                        let part = done?;
                        eprintln!("  {name}: part {}/{count}", part.part_number);
                        parts.push(part);
                    }
                }
            }
            let request = MultipartCompleteRequest {
                object_key: Some(key.clone()),
                upload_id: Some(upload_id.clone()),
                parts: Some(parts),
            };
            let done: Confirmed = self.call("/multipart/complete", &request).await?;
            Ok(done.file)
        }
        .await;
        if result.is_err() {
            // Leave nothing half-uploaded behind.
            let abort = MultipartAbortRequest { object_key: Some(key.clone()), upload_id: Some(upload_id.clone()) };
            let _ = self.call::<_, crate::wire::Done>("/multipart/abort", &abort).await;
        }
        result
    }
}
