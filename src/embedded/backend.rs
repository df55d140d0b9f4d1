//! The embedded store's backend and the checks its S3 operations share (see `s3_api.rs` for
//! the operations, `multipart.rs` for multipart uploads).

use std::io;
use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

pub(super) use super::conditions::{Conditions, ReadConditions};
use super::disk::{CommitError, Disk, ObjectMeta, WriteError};
pub(super) use super::headers::*;

/// S3's single-PUT and single-part limit.
pub(super) const MAX_PUT_SIZE: i64 = 5 * 1024 * 1024 * 1024;
/// S3's smallest part (except the last).
pub(super) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub(super) const MAX_KEY_BYTES: usize = 1024;

pub struct Backend {
    pub(super) disk: Arc<Disk>,
    /// The largest object a PUT, a copy or a completed multipart upload may make
    /// (`FERRY_MAX_FILE_SIZE`, itself at most S3's 5 TiB; a single PUT also stops at 5 GiB).
    pub(super) max_object_size: u64,
}

pub(super) fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "embedded store I/O failed");
    s3_error!(InternalError)
}

/// The S3 error code a write answers when the store's disk (or its owner's quota) is full.
/// Not one of S3's own codes (S3 never runs out of space): named after HTTP's 507, as MinIO
/// answers 507 for a full drive. SDKs do not retry a 507 on their own.
pub(super) const DISK_FULL_CODE: &str = "InsufficientStorage";

/// Whether a failed write ran out of space: `ENOSPC` (the file system is full) or `EDQUOT`
/// (the user's quota is).
pub(super) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || (cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(28 | 122)))
}

/// A write that ran out of space: 507 `InsufficientStorage`, logged once at WARN (it is the
/// operator's to fix, and the store is otherwise fine). Whatever was written went to `.tmp`
/// and has been removed: no object changed.
pub(super) fn disk_full(e: &io::Error) -> S3Error {
    tracing::warn!(
        error = %e,
        "embedded store's disk is full: a write was refused (507 InsufficientStorage) and nothing was kept; \
         free space on the disk of FERRY_DATA_DIR"
    );
    super::quiet_log::reported();
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom(DISK_FULL_CODE.into()),
        "the store's disk is full: nothing was stored; retry once space is freed",
    );
    err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
    err
}

/// An I/O error of the store: a full disk is told apart (see [`disk_full`]); anything else
/// is a 500 `InternalError`.
pub(super) fn io_failed(e: io::Error) -> S3Error {
    if is_disk_full(&e) { disk_full(&e) } else { internal(e) }
}

pub(super) fn write_failed<E: std::fmt::Display>(e: WriteError<E>) -> S3Error {
    match e {
        WriteError::Io(e) => io_failed(e),
        // The client went away or sent a malformed body: nothing was kept.
        WriteError::Body(e) => s3_error!(IncompleteBody, "request body failed: {e}"),
        WriteError::TooLarge => s3_error!(EntityTooLarge, "the body is larger than this store accepts"),
    }
}

/// Why a write to a sealed key is refused. 412 rather than 403: the request is authentic and
/// authorised, what fails is a precondition of the write (the key must not hold a final
/// object), exactly as S3 answers a create-only write (`If-None-Match: *`) to an existing
/// key; a 403 would send whoever debugs it looking for a bad signature or an expired URL.
/// SDKs do not retry either.
pub(super) fn sealed() -> S3Error {
    tracing::info!("embedded store refused to replace a sealed (confirmed) object");
    s3_error!(PreconditionFailed, "the object was confirmed and is sealed: it can no longer be replaced")
}

pub(super) fn commit_failed(e: CommitError<S3Error>) -> S3Error {
    match e {
        CommitError::Io(e) => io_failed(e),
        CommitError::Sealed => sealed(),
        CommitError::Refused(e) => e,
    }
}

/// The (lower-case) names of the headers a request's SigV4 signature covers: a presigned URL's
/// `X-Amz-SignedHeaders`, or the `SignedHeaders=` of an `AWS4-HMAC-SHA256` `Authorization`
/// header, picked the way `s3s` picks the signature it verifies. Empty for anything else
/// (anonymous, SigV2 or POST-policy requests): then no header counts as signed. Meaningful
/// only for a request whose signature `s3s` verified (its credentials are set).
pub(super) fn signed_headers(headers: &http::HeaderMap, uri: &http::Uri) -> Vec<String> {
    let split = |list: &str| list.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if param("Signature").is_some() {
        return Vec::new(); // SigV2 presigned: covers no such header
    }
    if param("X-Amz-Signature").is_some() {
        return param("X-Amz-SignedHeaders").map(split).unwrap_or_default();
    }
    let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Vec::new();
    };
    fields.split(',').find_map(|field| field.trim().strip_prefix("SignedHeaders=")).map(split).unwrap_or_default()
}

/// Refuses user metadata (`x-amz-meta-*`) that a SigV4 signature does not cover, as S3 does
/// ("There were headers present in the request which were not signed"): whoever holds a
/// presigned URL may send the bytes it was signed for, not attach data of their own.
pub(super) fn check_metadata_signed<T>(req: &s3s::S3Request<T>) -> S3Result<()> {
    let signed = signed_headers(&req.headers, &req.uri);
    if req.credentials.is_none() || signed.is_empty() {
        return Ok(()); // anonymous (refused elsewhere) or not SigV4 (SigV2 signs every x-amz-*)
    }
    let unsigned = req
        .headers
        .keys()
        .map(http::HeaderName::as_str)
        .find(|name| name.starts_with("x-amz-meta-") && !signed.iter().any(|s| s == name));
    match unsigned {
        Some(name) => {
            Err(s3_error!(AccessDenied, "There were headers present in the request which were not signed: {name}"))
        }
        None => Ok(()),
    }
}

/// Whether the request's signature covers `name` (lower-case).
pub(super) fn is_signed<T>(req: &s3s::S3Request<T>, name: &str) -> bool {
    req.credentials.is_some() && signed_headers(&req.headers, &req.uri).iter().any(|h| h == name)
}

/// Types a browser would run, or render as a document that can run scripts, if served inline
/// from the store's origin. Besides these, every `+xml` type and any missing or unreadable type
/// (which a browser may sniff) is served as an attachment.
const ACTIVE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/xsl",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "text/ecmascript",
    "application/ecmascript",
    "application/x-shockwave-flash",
];

/// Whether an object of this type must not be rendered inline.
pub(super) fn is_active(content_type: Option<&str>) -> bool {
    let Some(essence) = content_type.and_then(|t| t.split(';').next()).map(|t| t.trim().to_ascii_lowercase()) else {
        return true;
    };
    let Some((_, subtype)) = essence.split_once('/') else {
        return true;
    };
    subtype.is_empty() || subtype.ends_with("+xml") || ACTIVE_TYPES.contains(&essence.as_str())
}

/// The `Content-Disposition` a GET or HEAD answers with: a signed `response-content-disposition`
/// (`requested`, ignored on anonymous requests) wins; otherwise active content is always an
/// attachment, and anything else gets what was stored (a disposition the upload signed).
pub(super) fn served_disposition(
    content_type: Option<&str>,
    stored: Option<String>,
    requested: Option<String>,
) -> Option<String> {
    if requested.is_some() {
        return requested;
    }
    if !is_active(content_type) {
        return stored;
    }
    match stored {
        Some(d) if d.trim_start().to_ascii_lowercase().starts_with("attachment") => Some(d),
        _ => Some("attachment".to_owned()),
    }
}

impl Backend {
    pub(super) fn bucket(&self, bucket: &str) -> S3Result<()> {
        if self.disk.bucket_exists(bucket) { Ok(()) } else { Err(s3_error!(NoSuchBucket)) }
    }

    /// Refuses early a write that could not commit (the key is sealed, or the conditions fail
    /// on what it holds now), before its body is read. The commit checks again under the lock.
    pub(super) async fn check_writable(&self, bucket: &str, key: &str, conditions: &Conditions) -> S3Result<()> {
        let current = self.disk.current(bucket, key).await.map_err(internal)?;
        if current.as_ref().is_some_and(|m| m.sealed) {
            return Err(sealed());
        }
        conditions.check(current.as_ref())
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

/// The `x-amz-checksum-*` values of an s3s input (each operation has its own input type, with
/// the same five fields): PutObject, UploadPart, CompleteMultipartUpload and its parts.
macro_rules! checksums_of {
    ($input:expr) => {
        Checksum {
            checksum_crc32: $input.checksum_crc32.clone(),
            checksum_crc32c: $input.checksum_crc32c.clone(),
            checksum_sha1: $input.checksum_sha1.clone(),
            checksum_sha256: $input.checksum_sha256.clone(),
            checksum_crc64nvme: $input.checksum_crc64nvme.clone(),
            checksum_type: None,
        }
    };
}
pub(super) use checksums_of;

/// The digests a body claims: `Content-MD5`, `x-amz-checksum-*` headers, or an algorithm
/// whose checksum follows in a trailer. All must match what arrived, for a PUT and for a part.
#[derive(Default)]
pub(super) struct Claimed {
    pub content_md5: Option<String>,
    pub algorithm: Option<ChecksumAlgorithm>,
    pub checksums: Checksum,
}

impl Claimed {
    pub fn of_put(input: &PutObjectInput) -> Self {
        Self {
            content_md5: input.content_md5.clone(),
            algorithm: input.checksum_algorithm.clone(),
            checksums: checksums_of!(input),
        }
    }

    pub fn of_part(input: &UploadPartInput) -> Self {
        Self {
            content_md5: input.content_md5.clone(),
            algorithm: input.checksum_algorithm.clone(),
            checksums: checksums_of!(input),
        }
    }

    /// A hasher for every checksum claimed (in a header, or announced for a trailer).
    pub fn hasher(&self) -> s3s::checksum::ChecksumHasher {
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let alg = self.algorithm.as_ref().map(ChecksumAlgorithm::as_str);
        let c = &self.checksums;
        if c.checksum_crc32.is_some() || alg == Some(ChecksumAlgorithm::CRC32) {
            hasher.crc32 = Some(Default::default());
        }
        if c.checksum_crc32c.is_some() || alg == Some(ChecksumAlgorithm::CRC32C) {
            hasher.crc32c = Some(Default::default());
        }
        if c.checksum_sha1.is_some() || alg == Some(ChecksumAlgorithm::SHA1) {
            hasher.sha1 = Some(Default::default());
        }
        if c.checksum_sha256.is_some() || alg == Some(ChecksumAlgorithm::SHA256) {
            hasher.sha256 = Some(Default::default());
        }
        if c.checksum_crc64nvme.is_some() || alg == Some(ChecksumAlgorithm::CRC64NVME) {
            hasher.crc64nvme = Some(Default::default());
        }
        hasher
    }

    /// Checks the claims against what arrived: a malformed `Content-MD5` is `InvalidDigest`,
    /// any mismatch `BadDigest`.
    pub fn check(&self, trailers: Option<http::HeaderMap>, computed: &Checksum, md5: &[u8; 16]) -> S3Result<()> {
        if let Some(content_md5) = &self.content_md5 {
            use base64::Engine as _;
            let claimed =
                base64::engine::general_purpose::STANDARD.decode(content_md5).map_err(|_| s3_error!(InvalidDigest))?;
            if claimed != md5 {
                return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
            }
        }
        let trailer = |name: &str| trailers.as_ref()?.get(name)?.to_str().ok().map(str::to_owned);
        let c = &self.checksums;
        let pairs = [
            (&c.checksum_crc32, "x-amz-checksum-crc32", &computed.checksum_crc32),
            (&c.checksum_crc32c, "x-amz-checksum-crc32c", &computed.checksum_crc32c),
            (&c.checksum_sha1, "x-amz-checksum-sha1", &computed.checksum_sha1),
            (&c.checksum_sha256, "x-amz-checksum-sha256", &computed.checksum_sha256),
            (&c.checksum_crc64nvme, "x-amz-checksum-crc64nvme", &computed.checksum_crc64nvme),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(uri: &str, authorization: Option<&str>) -> Vec<String> {
        let mut headers = http::HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        signed_headers(&headers, &uri.parse().unwrap())
    }

    #[test]
    fn signed_headers_come_from_the_signature_s3s_checks() {
        let presigned =
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=ab";
        assert_eq!(signed(presigned, None), ["content-type", "host"]);
        let header = "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/s3/aws4_request, \
                      SignedHeaders=Content-Disposition;host;x-amz-date, Signature=ab";
        assert_eq!(signed("/b/k", Some(header)), ["content-disposition", "host", "x-amz-date"]);
        // The presigned signature wins over a header, as in s3s.
        assert_eq!(signed(presigned, Some(header)), ["content-type", "host"]);
        // SigV2 signs no Content-Disposition; a SigV2 URL with v4-looking parameters is still v2.
        assert!(signed("/b/k?Signature=x&X-Amz-Signature=y&X-Amz-SignedHeaders=content-disposition", None).is_empty());
        assert!(signed("/b/k", Some("AWS key:signature")).is_empty());
        assert!(signed("/b/k", None).is_empty());
        assert!(signed("/b/k?X-Amz-SignedHeaders=content-disposition", None).is_empty(), "no signature, no list");
    }

    #[test]
    fn active_content_is_recognised_by_its_essence() {
        for active in [
            "text/html",
            "TEXT/HTML; charset=utf-8",
            " text/html ;x=y",
            "application/xhtml+xml",
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "text/javascript",
            "application/javascript",
            "application/x-shockwave-flash",
            "application/rss+xml",
            "application/vnd.custom+XML",
            "nonsense",
            "",
        ] {
            assert!(is_active(Some(active)), "{active}");
        }
        assert!(is_active(None), "an untyped object may be sniffed");
        for passive in ["image/png", "text/plain", "application/pdf", "application/json", "video/mp4"] {
            assert!(!is_active(Some(passive)), "{passive}");
        }
    }

    #[test]
    fn active_content_is_an_attachment_unless_a_signed_request_asks_otherwise() {
        let html = Some("text/html");
        assert_eq!(served_disposition(html, None, None).as_deref(), Some("attachment"));
        assert_eq!(served_disposition(html, Some("inline".into()), None).as_deref(), Some("attachment"));
        let named = "attachment; filename=\"a.html\"";
        assert_eq!(served_disposition(html, Some(named.into()), None).as_deref(), Some(named));
        assert_eq!(served_disposition(html, None, Some("inline".into())).as_deref(), Some("inline"));
        let png = Some("image/png");
        assert_eq!(served_disposition(png, None, None), None);
        assert_eq!(served_disposition(png, Some("inline".into()), None).as_deref(), Some("inline"));
    }

    #[test]
    fn a_full_disk_is_a_507_and_other_io_errors_a_500() {
        for full in [
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from(io::ErrorKind::QuotaExceeded),
            io::Error::from_raw_os_error(28),
            io::Error::from_raw_os_error(122),
        ] {
            assert!(is_disk_full(&full), "{full}");
            let e = io_failed(full);
            assert_eq!(e.code().as_str(), DISK_FULL_CODE);
            assert_eq!(e.status_code(), Some(http::StatusCode::INSUFFICIENT_STORAGE));
            assert!(e.message().unwrap().contains("disk is full"));
        }
        for other in [io::Error::from(io::ErrorKind::PermissionDenied), io::Error::from_raw_os_error(5)] {
            assert!(!is_disk_full(&other), "{other}");
            assert_eq!(io_failed(other).code(), &S3ErrorCode::InternalError);
        }
        let body_cut: WriteError<&str> = WriteError::Body("cut");
        assert_eq!(write_failed(body_cut).code(), &S3ErrorCode::IncompleteBody);
        let full: WriteError<&str> = WriteError::Io(io::Error::from_raw_os_error(28));
        assert_eq!(write_failed(full).code().as_str(), DISK_FULL_CODE);
        let full: CommitError<S3Error> = CommitError::Io(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(commit_failed(full).status_code(), Some(http::StatusCode::INSUFFICIENT_STORAGE));
    }
}
