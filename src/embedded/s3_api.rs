//! Ferry's implementation of the `s3s::S3` trait on top of the disk.
//!
//! `s3s` parses the protocol and verifies SigV4; this file decides what each operation does
//! to the disk. Everything is checked before it becomes visible: digests, checksums, part
//! ETags and sizes. Operations not implemented here (versioning, ACLs, policies, tagging,
//! object lock, encryption, bucket creation and deletion, ...) keep `s3s`'s default answer:
//! `501 NotImplemented` naming the operation, never a silent success.

use futures::TryStreamExt;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use super::backend::*;
use super::disk::{ObjectMeta, StoredHeaders};
use super::listing;

#[async_trait::async_trait]
impl S3 for Backend {
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    /// The store has its one bucket: creating it again is what S3 answers to its owner (rclone
    /// and others create the bucket before their first upload); any other is not supported.
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        if self.disk.bucket_exists(&req.input.bucket) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        Err(s3_error!(NotImplemented, "CreateBucket: this store serves a single bucket, set at start-up"))
    }

    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .disk
            .buckets()
            .map_err(internal)?
            .into_iter()
            .map(|name| Bucket {
                creation_date: Some(self.disk.bucket_created(&name).unwrap_or(std::time::UNIX_EPOCH).into()),
                name: Some(name),
                ..Default::default()
            })
            .collect();
        let owner = Owner { id: Some("ferry".into()), display_name: Some("ferry".into()) };
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), owner: Some(owner), ..Default::default() }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        check_metadata_signed(&req)?;
        let input = &req.input;
        self.bucket(&input.bucket)?;
        check_key(&input.key)?;
        let limit = self.max_object_size.min(MAX_PUT_SIZE as u64);
        if input.content_length.is_some_and(|len| len as u64 > limit) {
            return Err(s3_error!(EntityTooLarge));
        }
        let conditions = Conditions { if_match: input.if_match.clone(), if_none_match: input.if_none_match.clone() };
        self.check_writable(&input.bucket, &input.key, &conditions).await?;
        // A response-shaping header is kept only if the signature covers it: a presigned URL
        // signs the content type, and an unsigned `Content-Disposition: inline` added by whoever
        // holds the URL must not be served back later.
        let keep_disposition = is_signed(&req, "content-disposition");
        let mut req = req;
        let Some(body) = req.input.body.take() else {
            return Err(s3_error!(IncompleteBody));
        };
        let claimed = Claimed::of_put(&req.input);
        let mut hasher = claimed.hasher();
        let written = self.disk.write_temp(body, limit, |chunk| hasher.update(chunk)).await.map_err(write_failed)?;
        let trailers = req.trailing_headers.as_ref().and_then(s3s::TrailingHeaders::take);
        let computed = hasher.finalize();
        claimed.check(trailers, &computed, &written.md5)?;
        if req.input.content_length.is_some_and(|len| len != written.size as i64) {
            return Err(s3_error!(IncompleteBody));
        }
        let input = req.input;
        let meta = ObjectMeta {
            key: input.key,
            size: written.size,
            etag: hex::encode(written.md5),
            content_type: input.content_type,
            content_disposition: input.content_disposition.filter(|_| keep_disposition),
            last_modified: chrono::Utc::now(),
            blob: String::new(),
            sealed: false,
            headers: StoredHeaders {
                checksums: checksums_to_keep(&computed),
                ..stored_headers(
                    input.cache_control,
                    input.content_encoding,
                    input.content_language,
                    input.expires.as_ref(),
                    input.metadata,
                )
            },
            upload_id: None,
            part_sizes: Vec::new(),
            parted: false,
        };
        let meta = self
            .disk
            .commit(&input.bucket, meta, written.file, |current| conditions.check(current))
            .await
            .map_err(commit_failed)?;
        Ok(S3Response::new(PutObjectOutput { e_tag: Some(ETag::Strong(meta.etag)), ..Default::default() }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        // `response-*` overrides count only on signed requests, as on S3.
        let signed = req.credentials.is_some();
        let input = req.input;
        self.bucket(&input.bucket)?;
        let (meta, bytes) = self
            .disk
            .open_object(&input.bucket, &input.key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        }
        .check(&meta)?;
        let (start, len, content_range) = match (&input.range, input.part_number) {
            (Some(_), Some(_)) => return Err(s3_error!(InvalidRequest, "Cannot specify both Range and partNumber")),
            (None, None) => (0, meta.size, None),
            (Some(range), None) => {
                let r = range.check(meta.size)?;
                // No byte range of an empty object can be satisfied (RFC 9110 §14.1.1).
                if r.is_empty() {
                    return Err(s3_error!(InvalidRange));
                }
                (r.start, r.end - r.start, Some(content_range(r.start, r.end, meta.size)))
            }
            (None, Some(number)) => {
                let r = part_range(&meta, number)?;
                (r.start, r.end - r.start, Some(content_range(r.start, r.end, meta.size)))
            }
        };
        let stream = bytes.range(start, len).await.map_err(internal)?;
        let parts_count = input.part_number.map(|_| parts_count(&meta));
        let whole = input.range.is_none() && input.part_number.is_none();
        let checksums = served_checksums(input.checksum_mode.as_ref(), whole, &meta.headers.checksums);
        let served = served_headers(meta.headers.clone());
        let output = GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream.map_err(|e| e))),
            content_length: Some(len as i64),
            content_range,
            // `s3s` then applies the (signed) `response-*` overrides over these headers: the
            // type the browser will see decides whether this is active content.
            content_disposition: served_disposition(
                input.response_content_type.as_deref().or(meta.content_type.as_deref()),
                meta.content_disposition.clone(),
                input.response_content_disposition.filter(|_| signed),
            ),
            last_modified: Some(last_modified(&meta)),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            accept_ranges: Some("bytes".into()),
            cache_control: served.cache_control,
            content_encoding: served.content_encoding,
            content_language: served.content_language,
            expires: served.expires,
            metadata: served.metadata,
            parts_count,
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            checksum_type: checksums.checksum_type,
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let meta = self.meta_or_404(&req.input.bucket, &req.input.key).await?;
        let input = req.input;
        ReadConditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        }
        .check(&meta)?;
        let (len, content_range) = match input.part_number {
            None => (meta.size, None),
            Some(number) => {
                let r = part_range(&meta, number)?;
                (r.end - r.start, Some(content_range(r.start, r.end, meta.size)))
            }
        };
        let requested = input.response_content_disposition.filter(|_| req.credentials.is_some());
        let checksums =
            served_checksums(input.checksum_mode.as_ref(), input.part_number.is_none(), &meta.headers.checksums);
        let served = served_headers(meta.headers.clone());
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            parts_count: input.part_number.map(|_| parts_count(&meta)),
            content_disposition: served_disposition(
                meta.content_type.as_deref(),
                meta.content_disposition.clone(),
                requested,
            ),
            last_modified: Some(last_modified(&meta)),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            accept_ranges: Some("bytes".into()),
            cache_control: served.cache_control,
            content_encoding: served.content_encoding,
            content_language: served.content_language,
            expires: served.expires,
            metadata: served.metadata,
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            checksum_type: checksums.checksum_type,
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        check_metadata_signed(&req)?;
        let keep_disposition = is_signed(&req, "content-disposition");
        super::copy::copy_object(self, req.input, keep_disposition).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.bucket(&req.input.bucket)?;
        self.disk.delete(&req.input.bucket, &req.input.key).await.map_err(internal)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per DeleteObjects request"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match self.disk.delete(&input.bucket, &object.key).await {
                // Deleting a key that holds nothing succeeds, as on S3.
                Ok(_) if quiet => {}
                Ok(_) => deleted.push(DeletedObject { key: Some(object.key), ..Default::default() }),
                Err(e) => {
                    tracing::error!(error = %e, "embedded store could not delete an object");
                    errors.push(Error {
                        code: Some("InternalError".into()),
                        message: Some("the store could not delete this object".into()),
                        key: Some(object.key),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let max_keys = listing::max_keys(input.max_keys)?;
        let encoder = listing::Encoder::new(input.encoding_type.as_ref())?;
        let page = listing::page(
            &self.disk,
            &input.bucket,
            input.prefix.as_deref().unwrap_or_default(),
            input.delimiter.as_deref(),
            input.marker.as_deref().unwrap_or_default(),
            max_keys,
        )
        .await
        .map_err(internal)?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encoder.text(input.prefix.unwrap_or_default())),
            marker: Some(encoder.text(input.marker.unwrap_or_default())),
            delimiter: encoder.opt(input.delimiter),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.truncated),
            next_marker: encoder.opt(page.next),
            contents: Some(encoder.objects(page.objects)),
            common_prefixes: Some(encoder.prefixes(page.prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let max_keys = listing::max_keys(input.max_keys)?;
        let encoder = listing::Encoder::new(input.encoding_type.as_ref())?;
        // The token names where the last page ended; without one, StartAfter does.
        let after = match &input.continuation_token {
            Some(token) => listing::untoken(token)?,
            None => input.start_after.clone().unwrap_or_default(),
        };
        let page = listing::page(
            &self.disk,
            &input.bucket,
            input.prefix.as_deref().unwrap_or_default(),
            input.delimiter.as_deref(),
            &after,
            max_keys,
        )
        .await
        .map_err(internal)?;
        let key_count = page.objects.len() + page.prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encoder.text(input.prefix.unwrap_or_default())),
            delimiter: encoder.opt(input.delimiter),
            start_after: encoder.opt(input.start_after),
            key_count: Some(key_count as i32),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_deref().map(listing::token),
            contents: Some(encoder.objects(page.objects)),
            common_prefixes: Some(encoder.prefixes(page.prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_metadata_signed(&req)?;
        let keep_disposition = is_signed(&req, "content-disposition");
        super::multipart::create(self, req.input, keep_disposition).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        super::multipart::upload_part(self, req.input, req.trailing_headers).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        super::copy::upload_part_copy(self, req.input).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        super::multipart::list_parts(self, req.input).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        super::multipart::list_uploads(self, req.input).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        super::multipart::complete(self, req.input).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        super::multipart::abort(self, req.input).await
    }
}

fn content_range(start: u64, end: u64, size: u64) -> String {
    format!("bytes {}-{}/{}", start, end.saturating_sub(1), size)
}

/// How many parts made the object: 1 for an object not made by a multipart upload.
fn parts_count(meta: &ObjectMeta) -> i32 {
    meta.part_sizes.len().max(1) as i32
}

/// The bytes of part `number` (`?partNumber=`): a multipart object's part as uploaded, or the
/// whole of any other object as its part 1, as on S3.
fn part_range(meta: &ObjectMeta, number: i32) -> S3Result<std::ops::Range<u64>> {
    let invalid = || {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    let index = usize::try_from(number).ok().and_then(|n| n.checked_sub(1)).ok_or_else(invalid)?;
    if meta.part_sizes.is_empty() {
        return if index == 0 { Ok(0..meta.size) } else { Err(invalid()) };
    }
    let size = *meta.part_sizes.get(index).ok_or_else(invalid)?;
    let start: u64 = meta.part_sizes[..index].iter().sum();
    Ok(start..start + size)
}
