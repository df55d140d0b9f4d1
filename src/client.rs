//! A small client for Ferry's API, used by `ferry upload`: single presigned PUTs for ordinary
//! files, multipart for large ones. Files are streamed from disk, never read whole.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::config::defaults;
use crate::wire::{
    CompletedPart, ConfirmRequest, Confirmed, DownloadUrl, ErrorBody, FileList, FileView, MultipartAbortRequest,
    MultipartCompleteRequest, MultipartParts, MultipartPartsRequest, MultipartStartRequest, MultipartStarted, PartUrls,
    PartUrlsRequest, PresignRequest, PresignResponse, part_span,
};

/// What an upload reports as it goes: the CLI draws progress bars from it, or prints the notes.
pub trait Progress: Send + Sync {
    /// The upload will send `total` bytes (fewer when resuming: what is left).
    fn started(&self, _total: u64) {}
    /// `bytes` more left for the bucket.
    fn sent(&self, _bytes: u64) {}
    /// A line worth telling the user (a part landed, resuming, interrupted).
    fn note(&self, message: &str);
}

/// Notes on stderr, no bars.
pub struct StderrNotes;

impl Progress for StderrNotes {
    fn note(&self, message: &str) {
        eprintln!("  {message}");
    }
}

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

/// Where a body goes, and the headers its URL was signed with.
#[derive(Clone, Copy)]
struct Target<'a> {
    url: &'a str,
    content_type: Option<&'a str>,
    md5: Option<&'a str>,
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
    /// Where unfinished multipart uploads are remembered, so a rerun continues them; `None`
    /// starts every upload afresh and aborts it on failure.
    pub state_dir: Option<std::path::PathBuf>,
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
            state_dir: None,
        })
    }

    /// POSTs `body` to `path` and reads the typed answer, or Ferry's error body.
    async fn call<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.api)).json(body)).await
    }

    /// Sends an API request as the caller and reads the typed answer, or Ferry's error body.
    async fn send<R: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<R, ClientError> {
        let request = match &self.identity {
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

    /// Every one of the caller's files, newest first (page by page, through `nextCursor`).
    pub async fn list_all(&self) -> Result<Vec<FileView>, ClientError> {
        let mut files = Vec::new();
        let mut cursor: Option<String> = None;
        // 1,000 a page; a million files at most, so the loop is bounded.
        for _ in 0..1_000 {
            let mut url = format!("{}/files?limit=1000", self.api);
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page: FileList = self.send(self.http.get(url)).await?;
            files.extend(page.files);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(files)
    }

    /// Deletes one of the caller's files.
    pub async fn delete(&self, id: i64) -> Result<(), ClientError> {
        let _: crate::wire::Done = self.send(self.http.delete(format!("{}/files/{id}", self.api))).await?;
        Ok(())
    }

    /// A short-lived URL of one of the caller's files.
    pub async fn download_url(&self, id: i64) -> Result<String, ClientError> {
        let link: DownloadUrl = self
            .send(self.http.get(format!("{}/files/{id}/download", self.api)).header("accept", "application/json"))
            .await?;
        Ok(link.url)
    }

    /// Downloads `url` to `out`, through `<out>.part`: a download cut short is continued from
    /// where it stopped (a `Range` request) by the next call. Returns the size.
    pub async fn fetch_to(&self, url: &str, out: &Path, progress: &Arc<dyn Progress>) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt as _;
        let partial =
            out.with_file_name(format!("{}.part", out.file_name().and_then(|n| n.to_str()).unwrap_or("download")));
        let file_error = |source| ClientError::File { path: partial.display().to_string(), source };
        let have = tokio::fs::metadata(&partial).await.map(|m| m.len()).unwrap_or(0);
        let mut request = self.http.get(url);
        if have > 0 {
            request = request.header("range", format!("bytes={have}-"));
        }
        let response = request.send().await.map_err(|_| ClientError::Network("the bucket".into()))?;
        let status = response.status();
        let (mut file, total) = match status.as_u16() {
            206 => {
                progress.note(&format!("resuming the download at {have} bytes"));
                let file = tokio::fs::OpenOptions::new().append(true).open(&partial).await.map_err(file_error)?;
                (file, have + response.content_length().unwrap_or(0))
            }
            // Complete already (the range starts at the end), or the store sent it all.
            416 if have > 0 => {
                tokio::fs::rename(&partial, out).await.map_err(file_error)?;
                return Ok(have);
            }
            200 => {
                let file = tokio::fs::File::create(&partial).await.map_err(file_error)?;
                (file, response.content_length().unwrap_or(0))
            }
            other => return Err(ClientError::Store { part: 0, status: other }),
        };
        progress.started(total.saturating_sub(if status.as_u16() == 206 { have } else { 0 }));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|_| ClientError::Network("the bucket".into()))?;
            file.write_all(&chunk).await.map_err(file_error)?;
            progress.sent(chunk.len() as u64);
        }
        file.flush().await.map_err(file_error)?;
        file.sync_all().await.map_err(file_error)?;
        drop(file);
        let size = tokio::fs::metadata(&partial).await.map_err(file_error)?.len();
        tokio::fs::rename(&partial, out).await.map_err(file_error)?;
        Ok(size)
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
    async fn put_range(
        &self,
        target: &Target<'_>,
        path: &Path,
        offset: u64,
        len: u64,
        part: u16,
        progress: &Arc<dyn Progress>,
    ) -> Result<String, ClientError> {
        let Target { url, content_type, md5: content_md5 } = *target;
        let file_error = |source| ClientError::File { path: path.display().to_string(), source };
        let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(file_error)?;
        let counter = progress.clone();
        let stream = ReaderStream::with_capacity(file.take(len), 256 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                counter.sent(chunk.len() as u64);
            }
        });
        let body = reqwest::Body::wrap_stream(stream);
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
    pub async fn upload(
        &self,
        path: &Path,
        content_type: Option<&str>,
        progress: &Arc<dyn Progress>,
    ) -> Result<FileView, ClientError> {
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
            progress.started(size);
            let target =
                Target { url: &presigned.presigned_url, content_type: Some(content_type), md5: md5.as_deref() };
            self.put_range(&target, path, 0, size, 1, progress).await?;
            let confirm = ConfirmRequest { object_key: Some(presigned.object_key), public_file_url: None };
            let saved: Confirmed = self.call("/save-b2-metadata", &confirm).await?;
            return Ok(saved.file);
        }
        self.upload_multipart(path, &name, content_type, size, progress).await
    }

    async fn upload_multipart(
        &self,
        path: &Path,
        name: &str,
        content_type: &str,
        size: u64,
        progress: &Arc<dyn Progress>,
    ) -> Result<FileView, ClientError> {
        let state_file = self.state_dir.as_ref().map(|dir| resume::state_path(dir, &self.api, path, size));
        let (upload, arrived) = match self.resumable(state_file.as_deref(), path, size, progress).await? {
            Some(resumed) => resumed,
            None => {
                let request = MultipartStartRequest {
                    file_name: Some(name.to_owned()),
                    content_type: Some(content_type.to_owned()),
                    size: Some(size),
                };
                let started: MultipartStarted = self.call("/multipart/start", &request).await?;
                let upload = resume::Upload {
                    path: path.display().to_string(),
                    size,
                    modified: resume::modified(path),
                    object_key: started.object_key,
                    upload_id: started.upload_id,
                    part_size: started.part_size,
                };
                // Written before any part is sent: a run killed from here on can be resumed.
                if let Some(file) = &state_file {
                    resume::save(file, &upload)
                        .map_err(|source| ClientError::File { path: file.display().to_string(), source })?;
                }
                (upload, Vec::new())
            }
        };
        let result = self.send_parts(path, name, size, &upload, arrived, progress).await;
        match (&result, &state_file) {
            (Ok(_), Some(file)) => resume::forget(file),
            // Kept for the next run, which sends only the missing parts.
            (Err(_), Some(file)) => progress
                .note(&format!("{name}: interrupted; run the same command again to resume ({})", file.display())),
            (Err(_), None) => {
                // Leave nothing half-uploaded behind.
                let abort = MultipartAbortRequest {
                    object_key: Some(upload.object_key.clone()),
                    upload_id: Some(upload.upload_id.clone()),
                };
                let _ = self.call::<_, crate::wire::Done>("/multipart/abort", &abort).await;
            }
            (Ok(_), None) => {}
        }
        result
    }

    /// The unfinished upload of this file a previous run left, and its parts that arrived; `None`
    /// when there is none, or it cannot be continued (finished, expired, changed file).
    async fn resumable(
        &self,
        state_file: Option<&Path>,
        path: &Path,
        size: u64,
        progress: &Arc<dyn Progress>,
    ) -> Result<Option<(resume::Upload, Vec<CompletedPart>)>, ClientError> {
        let Some(state_file) = state_file else { return Ok(None) };
        let Some(upload) = resume::load(state_file) else { return Ok(None) };
        if upload.size != size || upload.modified != resume::modified(path) {
            resume::forget(state_file);
            return Ok(None);
        }
        let request = MultipartPartsRequest {
            object_key: Some(upload.object_key.clone()),
            upload_id: Some(upload.upload_id.clone()),
        };
        match self.call::<_, MultipartParts>("/multipart/parts", &request).await {
            Ok(listed) => {
                let count = size.div_ceil(upload.part_size);
                // A part counts only if it has the size this file's part has.
                let arrived: Vec<CompletedPart> = listed
                    .parts
                    .into_iter()
                    .filter(|p| part_span(size, upload.part_size, p.part_number).is_some_and(|(_, len)| p.size == len))
                    .map(|p| CompletedPart { part_number: p.part_number, etag: p.etag })
                    .collect();
                progress.note(&format!("resuming: {} of {count} parts are already in the bucket", arrived.len()));
                Ok(Some((upload, arrived)))
            }
            // The upload cannot continue (finished, aborted, expired, someone else's): start over.
            Err(ClientError::Refused { code, .. })
                if matches!(code.as_str(), "multipart-not-found" | "upload-expired" | "upload-not-issued") =>
            {
                resume::forget(state_file);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// Runs `sends`, [`Self::concurrency`] at a time, reporting and keeping each part as it
    /// lands; the first failure stops the rest.
    async fn land<F>(
        &self,
        sends: impl IntoIterator<Item = F>,
        name: &str,
        count: u16,
        progress: &Arc<dyn Progress>,
        parts: &mut Vec<CompletedPart>,
    ) -> Result<(), ClientError>
    where
        F: std::future::Future<Output = Result<CompletedPart, ClientError>>,
    {
        let mut sent = futures::stream::iter(sends).buffer_unordered(self.concurrency.max(1));
        while let Some(done) = sent.next().await {
            let part = done?;
            progress.note(&format!("{name}: part {}/{count}", part.part_number));
            parts.push(part);
        }
        Ok(())
    }

    /// Sends the parts not in `arrived`, then completes the upload with all of them.
    async fn send_parts(
        &self,
        path: &Path,
        name: &str,
        size: u64,
        upload: &resume::Upload,
        arrived: Vec<CompletedPart>,
        progress: &Arc<dyn Progress>,
    ) -> Result<FileView, ClientError> {
        let part_size = upload.part_size;
        let count = u16::try_from(size.div_ceil(part_size)).map_err(|_| ClientError::Unexpected(self.api.clone()))?;
        // A part number the file does not have (only the server could name one) is an answer
        // Ferry would not give.
        let range = |n: u16| part_span(size, part_size, n).ok_or_else(|| ClientError::Unexpected(self.api.clone()));
        let done: std::collections::HashSet<u16> = arrived.iter().map(|p| p.part_number).collect();
        let missing: Vec<u16> = (1..=count).filter(|n| !done.contains(n)).collect();
        progress.started(missing.iter().map(|&n| range(n).map(|(_, len)| len)).sum::<Result<u64, _>>()?);
        let mut parts = arrived;
        if self.checksums {
            // Each part is hashed, signed with its digest and sent on its own, `concurrency` at a
            // time: one part's hashing overlaps the others' sending (hashing a group first and
            // then sending it left the network idle while the disk and CPU worked, and the
            // other way round).
            let sends = missing.iter().map(|&n| async move {
                let (offset, len) = range(n)?;
                let md5 = self.md5(path, offset, len).await?;
                let request = PartUrlsRequest {
                    object_key: Some(upload.object_key.clone()),
                    upload_id: Some(upload.upload_id.clone()),
                    part_numbers: Some(vec![n]),
                    md5s: md5.clone().map(|m| vec![m]),
                };
                let urls: PartUrls = self.call("/multipart/urls", &request).await?;
                let url = urls
                    .urls
                    .into_iter()
                    .find(|u| u.part_number == n)
                    .ok_or_else(|| ClientError::Unexpected(self.api.clone()))?;
                let target = Target { url: &url.url, content_type: None, md5: md5.as_deref() };
                let etag = self.put_range(&target, path, offset, len, n, progress).await?;
                Ok::<_, ClientError>(CompletedPart { part_number: n, etag })
            });
            self.land(sends, name, count, progress, &mut parts).await?;
        } else {
            // Without digests, URLs come eight groups at a time.
            for chunk in missing.chunks(self.concurrency.max(1) * 8) {
                let request = PartUrlsRequest {
                    object_key: Some(upload.object_key.clone()),
                    upload_id: Some(upload.upload_id.clone()),
                    part_numbers: Some(chunk.to_vec()),
                    md5s: None,
                };
                let urls: PartUrls = self.call("/multipart/urls", &request).await?;
                let puts = urls.urls.iter().map(|part| {
                    let range = range(part.part_number);
                    async move {
                        let (offset, len) = range?;
                        let target = Target { url: &part.url, content_type: None, md5: None };
                        let etag = self.put_range(&target, path, offset, len, part.part_number, progress).await?;
                        Ok::<_, ClientError>(CompletedPart { part_number: part.part_number, etag })
                    }
                });
                self.land(puts, name, count, progress, &mut parts).await?;
            }
        }
        parts.sort_by_key(|p| p.part_number);
        let request = MultipartCompleteRequest {
            object_key: Some(upload.object_key.clone()),
            upload_id: Some(upload.upload_id.clone()),
            parts: Some(parts),
        };
        let done: Confirmed = self.call("/multipart/complete", &request).await?;
        Ok(done.file)
    }
}

/// What `ferry upload` remembers of an unfinished multipart upload, one small JSON file per
/// upload, named after the API, the file's absolute path and its size. The file's size and
/// modification time must still match for a rerun to continue it.
mod resume {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};
    use sha2::Digest as _;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Upload {
        pub path: String,
        pub size: u64,
        /// Nanoseconds since the epoch, or 0 where the platform cannot say.
        pub modified: u128,
        pub object_key: String,
        pub upload_id: String,
        pub part_size: u64,
    }

    pub fn state_path(dir: &Path, api: &str, path: &Path, size: u64) -> PathBuf {
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut hasher = sha2::Sha256::new();
        hasher.update(api.as_bytes());
        hasher.update([0]);
        hasher.update(absolute.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(size.to_be_bytes());
        dir.join(format!("{}.json", hex::encode(&hasher.finalize()[..16])))
    }

    pub fn modified(path: &Path) -> u128 {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    }

    /// The state in `file`, if it is one this version could have written (a part size of zero,
    /// say from a damaged file, is no state: the upload starts over).
    pub fn load(file: &Path) -> Option<Upload> {
        let upload: Upload = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        (upload.part_size > 0).then_some(upload)
    }

    /// Written owner-only (the upload id lets its holder, with the user's credentials, finish
    /// the upload) and atomically (a kill or a crash mid-write leaves the old state or none):
    /// into a fresh temporary file of this process's own, synced, then renamed over.
    pub fn save(file: &Path, upload: &Upload) -> std::io::Result<()> {
        let dir = file.parent().expect("state files live in a directory");
        std::fs::create_dir_all(dir)?;
        let temp = file.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&temp).and_then(|mut out| {
            std::io::Write::write_all(&mut out, &serde_json::to_vec(upload).expect("serializes"))?;
            out.sync_all()
        });
        match written.and_then(|()| std::fs::rename(&temp, file)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    pub fn forget(file: &Path) {
        let _ = std::fs::remove_file(file);
    }

    /// `$XDG_STATE_HOME/ferry/uploads`, else `~/.local/state/ferry/uploads`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
        Some(base.join("ferry/uploads"))
    }
}

pub use resume::default_dir as default_state_dir;
