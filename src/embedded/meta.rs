//! What the store keeps about each object: its metadata file's contents. A module of its own
//! so that the disk layout (`disk.rs`) and the listing index (`index.rs`) both use it without
//! depending on each other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the store keeps about one object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// File name of the blob beside this metadata file: the object's bytes, or (when
    /// `parted`) a directory holding them as one file per part.
    pub blob: String,
    /// Set once Ferry confirmed the object: no write may replace it any more.
    /// (Metadata written before sealing existed has no such field: not sealed.)
    #[serde(default)]
    pub sealed: bool,
    /// The headers it is served with besides type and disposition (none in older files).
    #[serde(flatten)]
    pub headers: StoredHeaders,
    /// The multipart upload that made it, so that a retried CompleteMultipartUpload (its
    /// answer lost) is answered as the first one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// A multipart object's part sizes, in order (for `?partNumber=`); empty for any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_sizes: Vec<u64>,
    /// The blob is a directory of the parts, `00000`, `00001`, ... in order, sized as
    /// `part_sizes` says: a multipart completion links the uploaded parts into place rather
    /// than copying them into one file (objects completed by older versions are one file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parted: bool,
}

/// What S3 stores with an object and serves back on GET and HEAD, besides its type and
/// disposition: the standard headers the uploader set and its `x-amz-meta-*` pairs. Every
/// field is optional so that metadata files written before they existed still load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Expires`, as an RFC 3339 date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-<name>: <value>`), names lower-case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// The whole object's checksums the uploader sent and the store verified, by algorithm
    /// (`crc32`, `sha256`, ...), base64 as on the wire: served with `x-amz-checksum-mode`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}
