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
    // A single PUT's checksums are of the full object (multipart objects keep none).
    let any = wanted && !stored.is_empty();
    Checksum {
        checksum_crc32: get("crc32"),
        checksum_crc32c: get("crc32c"),
        checksum_sha1: get("sha1"),
        checksum_sha256: get("sha256"),
        checksum_crc64nvme: get("crc64nvme"),
        checksum_type: any.then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
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
