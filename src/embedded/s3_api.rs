//! Ferry's implementation of the `s3s::S3` trait on top of the disk.
//!
//! `s3s` parses the protocol and verifies SigV4; this file decides what each operation does
//! to the disk. Everything is checked before it becomes visible: digests, checksums, part
//! ETags and sizes.

use std::io;

use futures::TryStreamExt;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::backend::*;
use super::disk::ObjectMeta;

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

    async fn list_buckets(&self, _req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .disk
            .buckets()
            .map_err(internal)?
            .into_iter()
            .map(|name| Bucket { name: Some(name), ..Default::default() })
            .collect();
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(buckets), ..Default::default() }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = &req.input;
        self.bucket(&input.bucket)?;
        check_key(&input.key)?;
        if input.content_length.is_some_and(|len| len > MAX_PUT_SIZE) {
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
        let mut hasher = expected_checksums(&req.input);
        let written = self.disk.write_temp(body, |chunk| hasher.update(chunk)).await.map_err(write_failed)?;
        let trailers = req.trailing_headers.as_ref().and_then(s3s::TrailingHeaders::take);
        check_digests(&req.input, trailers, &hasher.finalize(), &written.md5)?;
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
        let (meta, mut file) = self
            .disk
            .open_object(&input.bucket, &input.key)
            .await
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchKey))?;
        let (start, len, content_range) = match &input.range {
            None => (0, meta.size, None),
            Some(range) => {
                let r = range.check(meta.size)?;
                // No byte range of an empty object can be satisfied (RFC 9110 §14.1.1).
                if r.is_empty() {
                    return Err(s3_error!(InvalidRange));
                }
                let range_text = format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), meta.size);
                (r.start, r.end - r.start, Some(range_text))
            }
        };
        file.seek(io::SeekFrom::Start(start)).await.map_err(internal)?;
        let stream = ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        let output = GetObjectOutput {
            body: Some(StreamingBlob::wrap(stream.map_err(|e| e))),
            content_length: Some(len as i64),
            content_range,
            // `s3s` then applies the (signed) `response-*` overrides over these headers: the
            // type the browser will see decides whether this is active content.
            content_disposition: served_disposition(
                input.response_content_type.as_deref().or(meta.content_type.as_deref()),
                meta.content_disposition,
                input.response_content_disposition.filter(|_| signed),
            ),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            last_modified: Some(std::time::SystemTime::from(meta.last_modified).into()),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let meta = self.meta_or_404(&req.input.bucket, &req.input.key).await?;
        let requested = req.input.response_content_disposition.filter(|_| req.credentials.is_some());
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(meta.size as i64),
            content_disposition: served_disposition(meta.content_type.as_deref(), meta.content_disposition, requested),
            content_type: meta.content_type,
            e_tag: Some(ETag::Strong(meta.etag)),
            last_modified: Some(std::time::SystemTime::from(meta.last_modified).into()),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.bucket(&req.input.bucket)?;
        self.disk.delete(&req.input.bucket, &req.input.key).await.map_err(internal)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        let max_keys = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        // The continuation token is the last key returned: listing resumes after it.
        let after = input.continuation_token.clone().or(input.start_after.clone()).unwrap_or_default();
        let all = self.disk.list(&input.bucket).await.map_err(internal)?;
        let mut matching = all.into_iter().filter(|m| m.key.starts_with(&prefix) && m.key > after);
        let page: Vec<ObjectMeta> = matching.by_ref().take(max_keys).collect();
        let truncated = matching.next().is_some();
        let next = truncated.then(|| page.last().map(|m| m.key.clone())).flatten();
        let contents = page
            .into_iter()
            .map(|m| Object {
                key: Some(m.key),
                size: Some(m.size as i64),
                e_tag: Some(ETag::Strong(m.etag)),
                last_modified: Some(std::time::SystemTime::from(m.last_modified).into()),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            key_count: Some(contents.len() as i32),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            contents: Some(contents),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let keep_disposition = is_signed(&req, "content-disposition");
        super::multipart::create(self, req.input, keep_disposition).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        super::multipart::upload_part(self, req.input).await
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
