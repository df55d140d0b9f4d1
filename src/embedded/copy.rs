//! Server-side copies: CopyObject (`aws s3 cp` and `mv` between keys, s3cmd's `cp`, rclone's
//! server-side copy) and UploadPartCopy (the AWS CLI copies objects over 8 MB part by part).
//!
//! A copy streams the source's blob into a new temporary file and commits it like any write,
//! so a sealed destination is refused exactly as a PUT to it is, and a copy cut short leaves
//! nothing behind.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Response, S3Result, s3_error};

use super::backend::*;
use super::disk::{ObjectBytes, ObjectMeta, WriteError};

/// The source object, opened, once its `x-amz-copy-source-if-*` conditions hold.
async fn open_source(
    backend: &Backend,
    source: &CopySource,
    conditions: ReadConditions,
) -> S3Result<(ObjectMeta, ObjectBytes)> {
    let CopySource::Bucket { bucket, key, version_id } = source else {
        return Err(s3_error!(NotImplemented, "copying from an access point is not supported"));
    };
    if version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(s3_error!(NotImplemented, "this store keeps no versions"));
    }
    backend.bucket(bucket)?;
    let (meta, file) =
        backend.disk.open_object(bucket, key).await.map_err(internal)?.ok_or_else(|| s3_error!(NoSuchKey))?;
    // A copy answers every failed source condition with 412, never 304 (as S3).
    conditions.check(&meta).map_err(|e| {
        if *e.code() == S3ErrorCode::NotModified {
            s3_error!(PreconditionFailed, "x-amz-copy-source-if-none-match or -if-modified-since failed")
        } else {
            e
        }
    })?;
    Ok((meta, file))
}

pub async fn copy_object(
    backend: &Backend,
    input: CopyObjectInput,
    keep_disposition: bool,
) -> S3Result<S3Response<CopyObjectOutput>> {
    backend.bucket(&input.bucket)?;
    check_key(&input.key)?;
    let conditions = ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let (source, bytes) = open_source(backend, &input.copy_source, conditions).await?;
    let replace = match input.metadata_directive.as_ref().map(MetadataDirective::as_str) {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(_) => return Err(s3_error!(InvalidArgument, "Unknown metadata directive")),
    };
    if let CopySource::Bucket { bucket, key, .. } = &input.copy_source
        && !replace
        && **bucket == *input.bucket
        && **key == *input.key
    {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let limit = backend.max_object_size.min(MAX_PUT_SIZE as u64);
    if source.size > limit {
        return Err(s3_error!(InvalidRequest, "The source is larger than CopyObject accepts: use UploadPartCopy"));
    }
    backend.check_writable(&input.bucket, &input.key, &Conditions::default()).await?;
    let stream = bytes.range(0, source.size).await.map_err(internal)?;
    let written = backend.disk.write_temp(stream, limit, |_| {}).await.map_err(|e| match e {
        // The body is the source's bytes, read from this store's disk: not the client's fault.
        WriteError::Body(e) => internal(e),
        other => write_failed(other),
    })?;
    let (content_type, content_disposition, headers) = if replace {
        let mut headers = stored_headers(
            input.cache_control,
            input.content_encoding,
            input.content_language,
            input.expires.as_ref(),
            input.metadata,
        );
        headers.checksums = source.headers.checksums; // the same bytes
        (input.content_type, input.content_disposition.filter(|_| keep_disposition), headers)
    } else {
        (source.content_type, source.content_disposition, source.headers)
    };
    let meta = ObjectMeta {
        key: input.key,
        size: written.size,
        etag: hex::encode(written.md5),
        content_type,
        content_disposition,
        last_modified: chrono::Utc::now(),
        blob: String::new(),
        sealed: false,
        headers,
        upload_id: None,
        part_sizes: Vec::new(),
        parted: false,
    };
    let meta = backend.disk.commit(&input.bucket, meta, written.file, |_| Ok(())).await.map_err(commit_failed)?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(meta.etag.clone())),
            last_modified: Some(last_modified(&meta)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn upload_part_copy(
    backend: &Backend,
    input: UploadPartCopyInput,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let conditions = ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let (source, bytes) = open_source(backend, &input.copy_source, conditions).await?;
    let range = match &input.copy_source_range {
        None => 0..source.size,
        Some(text) => {
            let range =
                Range::parse(text).map_err(|_| s3_error!(InvalidArgument, "invalid x-amz-copy-source-range"))?;
            range.check(source.size).map_err(|_| s3_error!(InvalidRange))?
        }
    };
    let stream = bytes.range(range.start, range.end - range.start).await.map_err(internal)?;
    let part = super::multipart::PartOf {
        bucket: &input.bucket,
        key: &input.key,
        upload_id: &input.upload_id,
        number: input.part_number,
    };
    let (etag, _) = super::multipart::store_part(backend, &part, stream, None, None).await.map_err(|e| {
        // The body is the source's bytes, read from this store's disk: not the client's fault.
        if *e.code() == S3ErrorCode::IncompleteBody { internal(e) } else { e }
    })?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(std::time::SystemTime::now().into()),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
