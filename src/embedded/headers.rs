//! The headers an object keeps and serves back: the standard ones (`Cache-Control`,
//! `Content-Encoding`, `Content-Language`, `Expires`), user metadata, verified checksums, and
//! the dates in `s3s`'s own type.

use s3s::dto::*;

use super::disk::{ObjectMeta, StoredHeaders};

fn rfc3339(ts: &Timestamp) -> Option<String> {
    let mut text = Vec::new();
    ts.format(TimestampFormat::DateTime, &mut text).ok()?;
    String::from_utf8(text).ok()
}

/// The headers an upload (PutObject, CreateMultipartUpload, a copy with `REPLACE`) sets.
pub(super) fn stored_headers(
    cache_control: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<&Timestamp>,
    metadata: Option<Metadata>,
) -> StoredHeaders {
    StoredHeaders {
        cache_control,
        content_encoding,
        content_language,
        expires: expires.and_then(rfc3339),
        user: metadata.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        checksums: Default::default(),
    }
}

/// The checksums a PUT computed (only those the client asked for, all verified), to keep.
pub(super) fn checksums_to_keep(computed: &Checksum) -> std::collections::BTreeMap<String, String> {
    [
        ("crc32", &computed.checksum_crc32),
        ("crc32c", &computed.checksum_crc32c),
        ("sha1", &computed.checksum_sha1),
        ("sha256", &computed.checksum_sha256),
        ("crc64nvme", &computed.checksum_crc64nvme),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
    .collect()
}

/// The stored checksums, answered when a GET or HEAD of the whole object asks for them
/// (`x-amz-checksum-mode: ENABLED`).
pub(super) fn served_checksums(
    mode: Option<&ChecksumMode>,
    whole_object: bool,
    stored: &std::collections::BTreeMap<String, String>,
) -> Checksum {
    let wanted = whole_object && mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    let get = |name: &str| stored.get(name).filter(|_| wanted).cloned();
    // A multipart object's composite checksum ends in `-<parts>`; any other is of the full object.
    let kind =
        if stored.values().any(|v| v.contains('-')) { ChecksumType::COMPOSITE } else { ChecksumType::FULL_OBJECT };
    let any = wanted && !stored.is_empty();
    Checksum {
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_type: any.then(|| ChecksumType::from_static(kind)),
    }
}

/// The stored headers as GET and HEAD answer them.
pub(super) struct ServedHeaders {
    pub cache_control: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
}

pub(super) fn served_headers(h: StoredHeaders) -> ServedHeaders {
    ServedHeaders {
        cache_control: h.cache_control,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        expires: h.expires.and_then(|e| Timestamp::parse(TimestampFormat::DateTime, &e).ok()),
        metadata: (!h.user.is_empty()).then(|| h.user.into_iter().collect()),
    }
}

pub(super) fn last_modified(meta: &ObjectMeta) -> Timestamp {
    std::time::SystemTime::from(meta.last_modified).into()
}

/// A checksum by its algorithm's lower-case name (`crc32`, `sha256`, ...).
pub(super) fn checksum_named<'a>(c: &'a Checksum, name: &str) -> Option<&'a String> {
    match name {
        "crc32" => c.checksum_crc32.as_ref(),
        "crc32c" => c.checksum_crc32c.as_ref(),
        "sha1" => c.checksum_sha1.as_ref(),
        "sha256" => c.checksum_sha256.as_ref(),
        "crc64nvme" => c.checksum_crc64nvme.as_ref(),
        _ => None,
    }
}

/// A hasher computing the checksum of one algorithm (`CRC32`, `SHA256`, ... in any case), or
/// nothing for `None` or an unknown name.
pub(super) fn hasher_for(algorithm: Option<&str>) -> s3s::checksum::ChecksumHasher {
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    match algorithm.map(str::to_ascii_uppercase).as_deref() {
        Some(ChecksumAlgorithm::CRC32) => hasher.crc32 = Some(Default::default()),
        Some(ChecksumAlgorithm::CRC32C) => hasher.crc32c = Some(Default::default()),
        Some(ChecksumAlgorithm::SHA1) => hasher.sha1 = Some(Default::default()),
        Some(ChecksumAlgorithm::SHA256) => hasher.sha256 = Some(Default::default()),
        Some(ChecksumAlgorithm::CRC64NVME) => hasher.crc64nvme = Some(Default::default()),
        _ => {}
    }
    hasher
}

/// S3's composite checksum of a multipart object: the algorithm's checksum of the parts'
/// binary checksums, one after the other, then `-<parts>`. `None` if a part has none.
pub(super) fn composite_checksum(algorithm: &str, part_checksums: &[Option<String>]) -> Option<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut joined = Vec::new();
    for part in part_checksums {
        joined.extend(b64.decode(part.as_deref()?).ok()?);
    }
    let mut hasher = hasher_for(Some(algorithm));
    hasher.update(&joined);
    let value = checksum_named(&hasher.finalize(), &algorithm.to_ascii_lowercase())?.clone();
    Some(format!("{value}-{}", part_checksums.len()))
}
