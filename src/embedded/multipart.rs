//! Multipart uploads in the embedded store: parts are checked as they arrive, and completion
//! accepts only the ETags the store itself computed, in ascending part order.
//!
//! An upload is a directory under `.uploads/`: `upload.json` (the key and the headers the
//! object will have) and, per part, `part-NNNNN` beside its `part-NNNNN.etag`. ListParts and
//! ListMultipartUploads read these directories, which is what lets a client resume an upload.
//! A completed object remembers its upload's id, so a retried completion (the first answer
//! lost) gets the same answer rather than NoSuchUpload. Completion links the parts into the
//! object (a directory of part files: see `disk.rs`), so no byte is written twice.

use bytes::Bytes;
use futures::Stream;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::backend::{
    Backend, Claimed, Conditions, MAX_PUT_SIZE, MIN_PART_SIZE, check_key, checksum_named, checksums_of,
    checksums_to_keep, commit_failed, composite_checksum, hasher_for, internal, io_failed, stored_headers,
    write_failed,
};
use super::disk::{ObjectMeta, StoredHeaders, create_private_dir_all, write_private};
use super::listing;

/// S3's limit on part numbers, hence on parts.
const MAX_PARTS: i32 = 10_000;

#[derive(Serialize, Deserialize)]
struct Upload {
    bucket: String,
    key: String,
    content_type: Option<String>,
    content_disposition: Option<String>,
    #[serde(flatten)]
    headers: StoredHeaders,
    /// When it started (uploads started by older versions have none: their directory's date).
    #[serde(default)]
    initiated: Option<chrono::DateTime<chrono::Utc>>,
    /// The checksum algorithm the object will carry (`CRC32`, ...), and whether its checksum is
    /// of the full object (`FULL_OBJECT`) or of the parts' checksums (`COMPOSITE`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum_type: Option<String>,
}

async fn load(backend: &Backend, bucket: &str, key: &str, upload_id: &str) -> S3Result<(std::path::PathBuf, Upload)> {
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
    Ok((dir, upload))
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
        headers: stored_headers(
            input.cache_control,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
            input.metadata,
        ),
        initiated: Some(chrono::Utc::now()),
        checksum_algorithm: input.checksum_algorithm.as_ref().map(|a| a.as_str().to_ascii_uppercase()),
        checksum_type: input.checksum_type.as_ref().map(|t| t.as_str().to_ascii_uppercase()),
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

/// A part's digests (`Content-MD5`, `x-amz-checksum-*` in headers or trailers) are checked as
/// a PUT's are, before the part counts.
pub async fn upload_part(
    backend: &Backend,
    mut input: UploadPartInput,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let body = input.body.take().ok_or_else(|| s3_error!(IncompleteBody))?;
    let claimed = Claimed::of_part(&input);
    let part =
        PartOf { bucket: &input.bucket, key: &input.key, upload_id: &input.upload_id, number: input.part_number };
    let (etag, computed) = store_part(backend, &part, body, input.content_length, Some((claimed, trailers))).await?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        checksum_crc32: computed.checksum_crc32,
        checksum_crc32c: computed.checksum_crc32c,
        checksum_sha1: computed.checksum_sha1,
        checksum_sha256: computed.checksum_sha256,
        checksum_crc64nvme: computed.checksum_crc64nvme,
        ..Default::default()
    }))
}

/// Which part of which upload.
pub struct PartOf<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub number: i32,
}

/// Streams one part (an upload's body or a copied range) into the upload, refusing it as soon
/// as it passes S3's 5 GiB, or the store's object size, and checking what it `claims`; returns
/// its ETag and the checksums computed (those claimed).
pub async fn store_part<S, E>(
    backend: &Backend,
    part: &PartOf<'_>,
    body: S,
    content_length: Option<i64>,
    claims: Option<(Claimed, Option<s3s::TrailingHeaders>)>,
) -> S3Result<(String, Checksum)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let PartOf { bucket, key, upload_id, number: part_number } = *part;
    if !(1..=MAX_PARTS).contains(&part_number) {
        return Err(s3_error!(InvalidArgument, "part number must be between 1 and 10000"));
    }
    let limit = backend.max_object_size.min(MAX_PUT_SIZE as u64);
    if content_length.is_some_and(|len| len as u64 > limit) {
        return Err(s3_error!(EntityTooLarge));
    }
    let (dir, upload) = load(backend, bucket, key, upload_id).await?;
    let mut hasher = claims.as_ref().map(|(claimed, _)| claimed.hasher()).unwrap_or_default();
    // The upload's own algorithm is computed for every part (a copied one too): completion
    // makes the object's checksum from the parts'.
    let own = hasher_for(upload.checksum_algorithm.as_deref());
    hasher.crc32 = hasher.crc32.or(own.crc32);
    hasher.crc32c = hasher.crc32c.or(own.crc32c);
    hasher.sha1 = hasher.sha1.or(own.sha1);
    hasher.sha256 = hasher.sha256.or(own.sha256);
    hasher.crc64nvme = hasher.crc64nvme.or(own.crc64nvme);
    let written = backend.disk.write_temp(body, limit, |chunk| hasher.update(chunk)).await.map_err(write_failed)?;
    let computed = hasher.finalize();
    if let Some((claimed, trailers)) = claims {
        claimed.check(trailers.as_ref().and_then(s3s::TrailingHeaders::take), &computed, &written.md5)?;
    }
    if content_length.is_some_and(|len| len != written.size as i64) {
        return Err(s3_error!(IncompleteBody));
    }
    let etag = hex::encode(written.md5);
    let name = part_name(part_number);
    // The sidecars are written first: a part file never exists without its digests.
    let sums = serde_json::to_vec(&checksums_to_keep(&computed)).map_err(internal)?;
    for (sidecar, bytes) in
        [(dir.join(format!("{name}.sums")), sums), (dir.join(format!("{name}.etag")), etag.clone().into_bytes())]
    {
        if let Err(e) = write_private(&sidecar, &bytes).await {
            // A short sidecar (the disk filled up) must not pass for a part's digest.
            let _ = tokio::fs::remove_file(&sidecar).await;
            return Err(io_failed(e));
        }
    }
    tokio::fs::rename(written.file.path(), dir.join(&name)).await.map_err(io_failed)?;
    Ok((etag, computed))
}

/// The answer to a completion of an upload that already completed: its object, if the key
/// still holds what that upload made.
async fn already_completed(
    backend: &Backend,
    input: &CompleteMultipartUploadInput,
) -> S3Result<Option<S3Response<CompleteMultipartUploadOutput>>> {
    let current = backend.disk.meta(&input.bucket, &input.key).await.map_err(internal)?;
    Ok(current.filter(|m| m.upload_id.as_deref() == Some(input.upload_id.as_str())).map(|meta| {
        S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(meta.etag)),
            ..Default::default()
        })
    }))
}

pub async fn complete(
    backend: &Backend,
    input: CompleteMultipartUploadInput,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    backend.bucket(&input.bucket)?;
    if let Some(done) = already_completed(backend, &input).await? {
        return Ok(done);
    }
    let (dir, upload) = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    let algorithm = upload.checksum_algorithm.as_deref().map(str::to_ascii_lowercase);
    let conditions = Conditions { if_match: input.if_match.clone(), if_none_match: input.if_none_match.clone() };
    backend.check_writable(&input.bucket, &input.key, &conditions).await?;
    let claimed_object = checksums_of!(input);
    let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(InvalidPart, "at least one part is required"));
    }
    if parts.len() > MAX_PARTS as usize {
        return Err(s3_error!(InvalidPart, "at most 10000 parts"));
    }
    let mut files = Vec::with_capacity(parts.len());
    let mut etags = Vec::with_capacity(parts.len());
    let mut sizes = Vec::with_capacity(parts.len());
    let mut part_checksums = Vec::with_capacity(parts.len());
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
        if let Some(algorithm) = &algorithm {
            // A part uploaded before its upload kept checksums has none: no composite then.
            let sums: std::collections::BTreeMap<String, String> = tokio::fs::read(dir.join(format!("{name}.sums")))
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            let stored = sums.get(algorithm).cloned();
            let claimed = checksum_named(&checksums_of!(part), algorithm).cloned();
            if claimed.is_some() && claimed != stored {
                return Err(s3_error!(InvalidPart, "the checksum of part {number} does not match"));
            }
            part_checksums.push(stored);
        }
        let path = dir.join(&name);
        let size = tokio::fs::metadata(&path).await.map_err(internal)?.len();
        if index + 1 < parts.len() && size < MIN_PART_SIZE {
            return Err(s3_error!(EntityTooSmall));
        }
        digest_of_digests.update(&hex::decode(&stored).map_err(internal)?);
        files.push(path);
        etags.push((number, stored));
        sizes.push(size);
    }
    let total: u64 = sizes.iter().sum();
    if total > backend.max_object_size {
        return Err(s3_error!(EntityTooLarge, "the parts add up to more than this store accepts"));
    }
    let (blob, sizes) = backend.disk.link_parts(files).await.map_err(internal)?;
    // A part sent again while this ran: its new digest is written before its file replaces the
    // old one, so digests unchanged now mean the linked files are the ones checked above.
    for (number, checked) in &etags {
        let now = tokio::fs::read_to_string(dir.join(format!("{}.etag", part_name(*number)))).await;
        if now.ok().as_ref() != Some(checked) {
            return Err(s3_error!(InvalidPart, "part {number} was replaced while the upload completed"));
        }
    }
    if sizes.iter().rev().skip(1).any(|&size| size < MIN_PART_SIZE) {
        return Err(s3_error!(EntityTooSmall));
    }
    let size: u64 = sizes.iter().sum();
    // A part replaced while this completion ran may have grown the object past the limit.
    if size > backend.max_object_size {
        return Err(s3_error!(EntityTooLarge, "the parts add up to more than this store accepts"));
    }
    let full_object = upload.checksum_type.as_deref() == Some(ChecksumType::FULL_OBJECT);
    let mut hasher = hasher_for(upload.checksum_algorithm.as_deref().filter(|_| full_object));
    if full_object && upload.checksum_algorithm.is_some() {
        // A checksum of the whole object: every byte, as linked, passes through the hasher.
        hasher = backend
            .disk
            .read_parts(&blob, sizes.len(), hasher, |hasher, chunk| hasher.update(chunk))
            .await
            .map_err(internal)?;
    }
    let mut headers = upload.headers;
    if let Some(algorithm) = &algorithm {
        let object_checksum = if full_object {
            checksum_named(&hasher.finalize(), algorithm).cloned()
        } else {
            composite_checksum(algorithm, &part_checksums)
        };
        let claimed = checksum_named(&claimed_object, algorithm).cloned();
        if claimed.is_some() && object_checksum.is_some() && claimed != object_checksum {
            return Err(s3_error!(BadDigest, "the object's {algorithm} checksum does not match"));
        }
        if let Some(value) = object_checksum {
            headers.checksums.insert(algorithm.clone(), value);
        }
    }
    let meta = ObjectMeta {
        key: input.key.clone(),
        size,
        etag: format!("{}-{}", hex::encode(digest_of_digests.finalize()), parts.len()),
        content_type: upload.content_type,
        content_disposition: upload.content_disposition,
        last_modified: chrono::Utc::now(),
        blob: String::new(),
        sealed: false,
        headers,
        upload_id: Some(input.upload_id.clone()),
        part_sizes: sizes,
        parted: true,
    };
    let meta = backend
        .disk
        .commit(&input.bucket, meta, blob, |current| conditions.check(current))
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
    let (dir, _) = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    tokio::fs::remove_dir_all(&dir).await.map_err(internal)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// The parts of one upload, in part-number order, after `part-number-marker`.
pub async fn list_parts(backend: &Backend, input: ListPartsInput) -> S3Result<S3Response<ListPartsOutput>> {
    backend.bucket(&input.bucket)?;
    let (dir, _) = load(backend, &input.bucket, &input.key, &input.upload_id).await?;
    let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
    let marker = input.part_number_marker.unwrap_or(0);
    let mut numbers = Vec::new();
    let mut entries = tokio::fs::read_dir(&dir).await.map_err(internal)?;
    while let Some(entry) = entries.next_entry().await.map_err(internal)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(number) = name.strip_prefix("part-").and_then(|n| n.parse::<i32>().ok())
            && number > marker
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    let truncated = numbers.len() > max;
    let mut parts = Vec::new();
    for number in numbers.into_iter().take(max) {
        let name = part_name(number);
        // A part whose sidecar is missing is one being replaced right now: not listed.
        let Ok(etag) = tokio::fs::read_to_string(dir.join(format!("{name}.etag"))).await else { continue };
        let Ok(file) = tokio::fs::metadata(dir.join(&name)).await else { continue };
        parts.push(Part {
            part_number: Some(number),
            e_tag: Some(ETag::Strong(etag)),
            size: Some(file.len() as i64),
            last_modified: file.modified().ok().map(Into::into),
            ..Default::default()
        });
    }
    let next = parts.last().and_then(|p| p.part_number).filter(|_| truncated);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: Some(marker),
        next_part_number_marker: next,
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        parts: Some(parts),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

/// The uploads in progress in a bucket, by key then upload id, after the markers, rolled up
/// into common prefixes by a delimiter.
pub async fn list_uploads(
    backend: &Backend,
    input: ListMultipartUploadsInput,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    backend.bucket(&input.bucket)?;
    let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
    let encoder = listing::Encoder::new(input.encoding_type.as_ref())?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.clone().unwrap_or_default();
    let mut found = Vec::new();
    let mut entries = match tokio::fs::read_dir(backend.disk.uploads_root()).await {
        Ok(entries) => entries,
        Err(e) => return Err(internal(e)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(internal)? {
        let id = entry.file_name().to_string_lossy().into_owned();
        // An upload being created or removed right now may have no readable upload.json.
        let Ok(bytes) = tokio::fs::read(entry.path().join("upload.json")).await else { continue };
        let Ok(upload) = serde_json::from_slice::<Upload>(&bytes) else { continue };
        let after_markers = upload.key > key_marker || (upload.key == key_marker && id > id_marker);
        if upload.bucket == input.bucket && upload.key.starts_with(&prefix) && after_markers {
            let initiated = match upload.initiated {
                Some(t) => std::time::SystemTime::from(t),
                None => entry.metadata().await.and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH),
            };
            found.push((upload.key, id, initiated));
        }
    }
    found.sort();
    // With a delimiter, keys sharing a prefix up to it are one common prefix (as ListObjects).
    let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
    let (mut uploads, mut prefixes, mut truncated) = (Vec::new(), Vec::<String>::new(), false);
    let (mut next_key, mut next_id) = (None, None);
    for (key, id, initiated) in found {
        let group =
            delimiter.and_then(|d| key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_owned()));
        if let Some(common) = &group
            && (prefixes.last() == Some(common) || *common == key_marker)
        {
            continue;
        }
        if uploads.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        match group {
            Some(common) => {
                (next_key, next_id) = (Some(common.clone()), None);
                prefixes.push(common);
            }
            None => {
                (next_key, next_id) = (Some(key.clone()), Some(id.clone()));
                uploads.push(MultipartUpload {
                    key: Some(encoder.text(key)),
                    upload_id: Some(id),
                    initiated: Some(initiated.into()),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..Default::default()
                });
            }
        }
    }
    if !truncated {
        (next_key, next_id) = (None, None);
    }
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(encoder.text(prefix)),
        key_marker: Some(encoder.text(key_marker)),
        upload_id_marker: Some(id_marker),
        next_key_marker: encoder.opt(next_key),
        next_upload_id_marker: next_id,
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        uploads: Some(uploads),
        common_prefixes: Some(encoder.prefixes(prefixes)),
        delimiter: encoder.opt(input.delimiter),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
