//! The API's request and response bodies: one set of types for the server and for `client.rs`.
//!
//! Request fields the server requires are still `Option`s, so that a missing one is answered
//! with `missing-field` and its name instead of a generic shape error.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /presign-b2-upload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresignRequest {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// The exact size: signed into the URL so the store refuses any other length. Optional,
    /// except on a server with a byte quota (`FERRY_QUOTA_BYTES`), which answers
    /// `400 missing-field` without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Optional MD5 of the bytes (base64): signed in as `Content-MD5`, so the bucket refuses any
    /// other bytes; recorded with the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Optional SHA-256 of the bytes (base64), for buckets that take `x-amz-checksum-sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresignResponse {
    pub success: bool,
    pub presigned_url: String,
    pub object_key: String,
    pub public_file_url: String,
    /// The headers the PUT must carry, exactly (they are signed into the URL).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `POST /save-b2-metadata`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmRequest {
    pub object_key: Option<String>,
    /// Accepted for the guide's clients and ignored: Ferry computes the URL itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_file_url: Option<serde_json::Value>,
}

/// The guide's `{"success": true}`, plus the record Ferry made.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Confirmed {
    pub success: bool,
    pub file: FileView,
}

/// A file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub id: i64,
    pub object_key: String,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// The MD5 (base64) the bucket checked the bytes against, when the upload declared one.
    #[serde(default)]
    pub md5: Option<String>,
    /// The SHA-256 (base64) the bucket checked the bytes against, when the upload declared one.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub upload_timestamp: DateTime<Utc>,
}

/// The text chrono's own `Serialize` writes (RFC 3339, `Z`, as many fraction digits as needed),
/// made in one piece: chrono's `Serialize` hands it to serde_json a character at a time, which
/// was half the cost of writing a page of files.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// `GET /files`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub success: bool,
    pub files: Vec<FileView>,
    pub next_cursor: Option<String>,
}

/// `GET /files/{id}/download` with `Accept: application/json`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DownloadUrl {
    pub success: bool,
    pub url: String,
}

/// `POST /multipart/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartStartRequest {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
}

/// Where part `number` (1-based) of a file of `size` bytes, cut into parts of `part_size` bytes
/// ([`MultipartStarted::part_size`]), lies: its offset and length, or `None` when the file has no
/// such part. One cut for both sides: the server signs these lengths under a byte quota, and the
/// CLI sends them and checks the parts already in the bucket against them.
pub fn part_span(size: u64, part_size: u64, number: u16) -> Option<(u64, u64)> {
    let offset = u64::from(number.checked_sub(1)?).checked_mul(part_size)?;
    (offset < size).then(|| (offset, part_size.min(size - offset)))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartStarted {
    pub success: bool,
    pub object_key: String,
    pub upload_id: String,
    pub part_size: u64,
    pub part_count: u64,
    pub public_file_url: String,
}

/// `POST /multipart/urls`. Under a byte quota, each URL signs its part's exact length (from the
/// size the start declared), and a part number past the file's last part is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartUrlsRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub part_numbers: Option<Vec<u16>>,
    /// Optional MD5 (base64) of each part, in the order of `partNumbers`: signed in as
    /// `Content-MD5`, so the bucket refuses any other bytes for that part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5s: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartUrl {
    pub part_number: u16,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartUrls {
    pub success: bool,
    pub urls: Vec<PartUrl>,
}

/// `POST /multipart/parts`: which parts of an unfinished upload arrived (to resume it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartPartsRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArrivedPart {
    pub part_number: u16,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MultipartParts {
    pub success: bool,
    pub parts: Vec<ArrivedPart>,
}

/// `POST /multipart/complete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartCompleteRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub parts: Option<Vec<CompletedPart>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part_number: u16,
    pub etag: String,
}

/// `POST /multipart/abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartAbortRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
}

/// `GET /usage`: what the caller stores, what their unfinished uploads hold, and the limits.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageView {
    pub success: bool,
    pub files: u64,
    pub bytes: u64,
    pub reserved: Amounts,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Amounts {
    pub files: u64,
    pub bytes: u64,
}

/// `null` is no limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    pub files: Option<u64>,
    pub bytes: Option<u64>,
}

/// `{"success": true}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Done {
    pub success: bool,
}

/// Every error body: plain words and a stable code.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub success: bool,
    pub error: String,
    pub code: String,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn written_by_ferry(at: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        rfc3339(&at, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_timestamp_shows_only_the_fraction_it_has() {
        let second = Utc.with_ymd_and_hms(2026, 11, 29, 9, 16, 22).unwrap();
        let cases = [(0, ""), (123_000_000, ".123"), (123_456_000, ".123456"), (123_456_789, ".123456789")];
        for (nanos, fraction) in cases {
            let at = second + chrono::Duration::nanoseconds(nanos);
            assert_eq!(written_by_ferry(at), format!("\"2026-11-29T09:16:22{fraction}Z\""));
        }
    }

    #[test]
    fn a_file_has_no_part_zero_and_none_past_its_last() {
        assert_eq!(part_span(10, 4, 0), None);
        assert_eq!(part_span(10, 4, 3), Some((8, 2)));
        assert_eq!(part_span(10, 4, 4), None);
        assert_eq!(part_span(8, 4, 3), None);
        assert_eq!(part_span(0, 4, 1), None);
    }

    proptest! {
        #[test]
        fn the_parts_of_a_file_cover_it_end_to_end(
            part_size in 1u64..1 << 30, whole in 0u64..10_000, last in 1u64..1 << 30,
        ) {
            let size = whole * part_size + last.min(part_size);
            let count = u16::try_from(size.div_ceil(part_size)).unwrap();
            let mut next = 0;
            for number in 1..=count {
                let (offset, length) = part_span(size, part_size, number).unwrap();
                prop_assert_eq!(offset, next);
                prop_assert!(length > 0 && length <= part_size);
                next = offset + length;
            }
            prop_assert_eq!(next, size);
            prop_assert_eq!(part_span(size, part_size, count + 1), None);
        }

        #[test]
        fn a_timestamp_is_written_as_chronos_own_serialize_writes_it(
            seconds in -62_135_596_800i64..253_402_300_799,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|ms| ms * 1_000_000), 0u32..1_000_000_000],
        ) {
            let at = Utc.timestamp_opt(seconds, nanos).unwrap();
            prop_assert_eq!(written_by_ferry(at), serde_json::to_string(&at).unwrap());
        }
    }
}
