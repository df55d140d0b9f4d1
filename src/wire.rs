//! The API's request and response bodies: one set of types for the server and for `client.rs`.
//!
//! Request fields the server requires are still `Option`s, so that a missing one is answered
//! with `missing-field` and its name instead of a generic shape error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /presign-b2-upload`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignRequest {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    /// Optional exact size: signed into the URL so the store refuses any other length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignResponse {
    pub success: bool,
    pub presigned_url: String,
    pub object_key: String,
    pub public_file_url: String,
}

/// `POST /save-b2-metadata`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmRequest {
    pub object_key: Option<String>,
    /// Accepted for the guide's clients and ignored: Ferry computes the URL itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_file_url: Option<serde_json::Value>,
}

/// The guide's `{"success": true}`, plus the record Ferry made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmed {
    pub success: bool,
    pub file: FileView,
}

/// A file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub id: i64,
    pub object_key: String,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub upload_timestamp: DateTime<Utc>,
}

/// `GET /files`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub success: bool,
    pub files: Vec<FileView>,
    pub next_cursor: Option<String>,
}

/// `GET /files/{id}/download` with `Accept: application/json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadUrl {
    pub success: bool,
    pub url: String,
}

/// `POST /multipart/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartStartRequest {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartStarted {
    pub success: bool,
    pub object_key: String,
    pub upload_id: String,
    pub part_size: u64,
    pub part_count: u64,
    pub public_file_url: String,
}

/// `POST /multipart/urls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartUrlsRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub part_numbers: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartUrl {
    pub part_number: u16,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartUrls {
    pub success: bool,
    pub urls: Vec<PartUrl>,
}

/// `POST /multipart/complete`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartCompleteRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
    pub parts: Option<Vec<CompletedPart>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPart {
    pub part_number: u16,
    pub etag: String,
}

/// `POST /multipart/abort`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipartAbortRequest {
    pub object_key: Option<String>,
    pub upload_id: Option<String>,
}

/// `{"success": true}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub success: bool,
}

/// Every error body: plain words and a stable code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub success: bool,
    pub error: String,
    pub code: String,
}
