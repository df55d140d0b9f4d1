//! The embedded store's backend and the checks its S3 operations share (see `s3_api.rs` for
//! the operations, `multipart.rs` for multipart uploads).

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Error, S3Result, s3_error};

use super::disk::{Disk, ObjectMeta, WriteError};

/// S3's single-PUT and single-part limit.
pub(super) const MAX_PUT_SIZE: i64 = 5 * 1024 * 1024 * 1024;
/// S3's smallest part (except the last).
pub(super) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub(super) const MAX_KEY_BYTES: usize = 1024;
pub(super) const READ_CHUNK: usize = 64 * 1024;

pub struct Backend {
    pub(super) disk: Arc<Disk>,
}

pub(super) fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "embedded store I/O failed");
    s3_error!(InternalError)
}

pub(super) fn write_failed<E: std::fmt::Display>(e: WriteError<E>) -> S3Error {
    match e {
        WriteError::Io(e) => internal(e),
        // The client went away or sent a malformed body: nothing was kept.
        WriteError::Body(e) => s3_error!(IncompleteBody, "request body failed: {e}"),
    }
}

impl Backend {
    pub(super) fn bucket(&self, bucket: &str) -> S3Result<()> {
        if self.disk.bucket_exists(bucket) { Ok(()) } else { Err(s3_error!(NoSuchBucket)) }
    }

    pub(super) async fn meta_or_404(&self, bucket: &str, key: &str) -> S3Result<ObjectMeta> {
        self.bucket(bucket)?;
        self.disk.meta(bucket, key).await.map_err(internal)?.ok_or_else(|| s3_error!(NoSuchKey))
    }
}

pub(super) fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(KeyTooLongError));
    }
    Ok(())
}

/// Checksums the client announced (headers or trailers) must match what arrived.
pub(super) fn expected_checksums(input: &PutObjectInput) -> s3s::checksum::ChecksumHasher {
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    let alg = input.checksum_algorithm.as_ref().map(ChecksumAlgorithm::as_str);
    if input.checksum_crc32.is_some() || alg == Some(ChecksumAlgorithm::CRC32) {
        hasher.crc32 = Some(Default::default());
    }
    if input.checksum_crc32c.is_some() || alg == Some(ChecksumAlgorithm::CRC32C) {
        hasher.crc32c = Some(Default::default());
    }
    if input.checksum_sha1.is_some() || alg == Some(ChecksumAlgorithm::SHA1) {
        hasher.sha1 = Some(Default::default());
    }
    if input.checksum_sha256.is_some() || alg == Some(ChecksumAlgorithm::SHA256) {
        hasher.sha256 = Some(Default::default());
    }
    if input.checksum_crc64nvme.is_some() || alg == Some(ChecksumAlgorithm::CRC64NVME) {
        hasher.crc64nvme = Some(Default::default());
    }
    hasher
}

pub(super) fn check_digests(
    input: &PutObjectInput,
    trailers: Option<http::HeaderMap>,
    computed: &Checksum,
    md5: &[u8; 16],
) -> S3Result<()> {
    if let Some(content_md5) = &input.content_md5 {
        use base64::Engine as _;
        let claimed =
            base64::engine::general_purpose::STANDARD.decode(content_md5).map_err(|_| s3_error!(InvalidDigest))?;
        if claimed != md5 {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
        }
    }
    let trailer = |name: &str| trailers.as_ref()?.get(name)?.to_str().ok().map(str::to_owned);
    let pairs = [
        (&input.checksum_crc32, "x-amz-checksum-crc32", &computed.checksum_crc32),
        (&input.checksum_crc32c, "x-amz-checksum-crc32c", &computed.checksum_crc32c),
        (&input.checksum_sha1, "x-amz-checksum-sha1", &computed.checksum_sha1),
        (&input.checksum_sha256, "x-amz-checksum-sha256", &computed.checksum_sha256),
        (&input.checksum_crc64nvme, "x-amz-checksum-crc64nvme", &computed.checksum_crc64nvme),
    ];
    for (header, name, actual) in pairs {
        if let Some(claimed) = header.clone().or_else(|| trailer(name))
            && Some(&claimed) != actual.as_ref()
        {
            return Err(s3_error!(BadDigest, "{name} does not match the body"));
        }
    }
    Ok(())
}
