//! Multipart uploads in the embedded store: parts are checked as they arrive, and completion
//! accepts only the ETags the store itself computed, in ascending part order.

use futures::{StreamExt, TryStreamExt};
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::backend::{
    Backend, Conditions, MAX_PUT_SIZE, MIN_PART_SIZE, READ_CHUNK, check_key, commit_failed, internal, io_failed,
    write_failed,
};
use super::disk::{ObjectMeta, create_private_dir_all, write_private};

#[derive(Serialize, Deserialize)]
struct Upload {
    bucket: String,
    key: String,
    content_type: Option<String>,
    content_disposition: Option<String>,
}

async fn load(backend: &Backend, bucket: &str, key: &str, upload_id: &str) -> S3Result<std::path::PathBuf> {
    let dir = backend.disk.upload_dir(upload_id).ok_or_else(|| s3_error!(NoSuchUpload))?;
    let bytes = match tokio::fs::read(dir.join("upload.json")).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(s3_error!(NoSuchUpload)),
        Err(e) => return Err(internal(e)),
    };
    let upload: Upload = serde_json::from_slice(&bytes).map_err(internal)?;
    if upload.bucket != bucket || upload.key != key {
        return Err(s3_error!(NoSuchUpload));
    }
    Ok(dir)
}

fn part_name(number: i32) -> String {
    format!("part-{number:05}")
}

/// Starts an upload; `keep_disposition`: whether the request's signature covers its
/// `Content-Disposition` (an unsigned one is dropped, as on PutObject).
pub async fn create(
    backend: &Backend,
    input: CreateMultipartUploadInput,
    keep_disposition: bool,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    backend.bucket(&input.bucket)?;
    check_key(&input.key)?;
    // No upload can ever complete onto a sealed key: refuse it from the start.
    backend.check_writable(&input.bucket, &input.key, &Conditions::default()).await?;
    let upload_id = Uuid::new_v4().simple().to_string();
    let dir = backend.disk.upload_dir(&upload_id).expect("a fresh UUID is a valid upload id");
    create_private_dir_all(&dir).await.map_err(io_failed)?;
    let upload = Upload {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        content_type: input.content_type,
        content_disposition: input.content_disposition.filter(|_| keep_disposition),
    };
    let json = serde_json::to_vec(&upload).map_err(internal)?;
    if let Err(e) = write_private(&dir.join("upload.json"), &json).await {
        // Nothing half-made is left behind (a full disk may have cut the file short).
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(io_failed(e));
    }
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        ..Default::default()
    }))
}

pub async fn upload_part(backend: &Backend, input: UploadPartInput) -> S3Result<S3Response<UploadPartOutput>> {
    if !(1..=10_000).contains(&input.part_number) {
        return Err(s3_error!(InvalidArgument, "part number must be between 1 and 10000"));
    }
    if input.content_length.is_some_and(|len| len > MAX_PUT_SIZE) {
        return Err(s3_error!(EntityTooLarge));
    }
    let dir = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    let body = input.body.ok_or_else(|| s3_error!(IncompleteBody))?;
    let written = backend.disk.write_temp(body, |_| {}).await.map_err(write_failed)?;
    if input.content_length.is_some_and(|len| len != written.size as i64) {
        return Err(s3_error!(IncompleteBody));
    }
    if let Some(content_md5) = &input.content_md5 {
        use base64::Engine as _;
        let claimed =
            base64::engine::general_purpose::STANDARD.decode(content_md5).map_err(|_| s3_error!(InvalidDigest))?;
        if claimed != written.md5 {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
        }
    }
    let etag = hex::encode(written.md5);
    let name = part_name(input.part_number);
    // The ETag sidecar is written first: a part file never exists without its digest.
    let sidecar = dir.join(format!("{name}.etag"));
    if let Err(e) = write_private(&sidecar, etag.as_bytes()).await {
        // A short sidecar (the disk filled up) must not pass for a part's digest.
        let _ = tokio::fs::remove_file(&sidecar).await;
        return Err(io_failed(e));
    }
    tokio::fs::rename(written.file.path(), dir.join(&name)).await.map_err(io_failed)?;
    Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() }))
}

pub async fn complete(
    backend: &Backend,
    input: CompleteMultipartUploadInput,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let dir = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    let conditions = Conditions { if_match: input.if_match.clone(), if_none_match: input.if_none_match.clone() };
    backend.check_writable(&input.bucket, &input.key, &conditions).await?;
    let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(InvalidPart, "at least one part is required"));
    }
    let mut files = Vec::with_capacity(parts.len());
    let mut digest_of_digests = Md5::new();
    let mut previous = 0;
    for (index, part) in parts.iter().enumerate() {
        let number = part.part_number.ok_or_else(|| s3_error!(InvalidPart, "missing part number"))?;
        if number <= previous {
            return Err(s3_error!(InvalidPartOrder));
        }
        previous = number;
        let name = part_name(number);
        let stored = tokio::fs::read_to_string(dir.join(format!("{name}.etag")))
            .await
            .map_err(|_| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
        let claimed = part.e_tag.as_ref().map(|e| e.value().trim_matches('"').to_owned());
        if claimed.as_deref() != Some(stored.as_str()) {
            return Err(s3_error!(InvalidPart, "ETag of part {number} does not match"));
        }
        let path = dir.join(&name);
        let size = tokio::fs::metadata(&path).await.map_err(internal)?.len();
        if index + 1 < parts.len() && size < MIN_PART_SIZE {
            return Err(s3_error!(EntityTooSmall));
        }
        digest_of_digests.update(&hex::decode(&stored).map_err(internal)?);
        files.push(path);
    }
    let stream = futures::stream::iter(files)
        .then(
            |path| async move { tokio::fs::File::open(path).await.map(|f| ReaderStream::with_capacity(f, READ_CHUNK)) },
        )
        .try_flatten();
    let written = backend.disk.write_temp(Box::pin(stream), |_| {}).await.map_err(write_failed)?;
    let upload: Upload =
        serde_json::from_slice(&tokio::fs::read(dir.join("upload.json")).await.map_err(internal)?).map_err(internal)?;
    let meta = ObjectMeta {
        key: input.key.clone(),
        size: written.size,
        etag: format!("{}-{}", hex::encode(digest_of_digests.finalize()), parts.len()),
        content_type: upload.content_type,
        content_disposition: upload.content_disposition,
        last_modified: chrono::Utc::now(),
        blob: String::new(),
        sealed: false,
    };
    let meta = backend
        .disk
        .commit(&input.bucket, meta, written.file, |current| conditions.check(current))
        .await
        .map_err(commit_failed)?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(ETag::Strong(meta.etag)),
        ..Default::default()
    }))
}

pub async fn abort(
    backend: &Backend,
    input: AbortMultipartUploadInput,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let dir = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    tokio::fs::remove_dir_all(&dir).await.map_err(internal)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}
