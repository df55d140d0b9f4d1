//! Large files by multipart: the client PUTs parts straight to the bucket through presigned
//! part URLs, then Ferry joins them and confirms the result exactly as a single upload.
//!
//! `POST /multipart/start` → key, upload id, part size; `POST /multipart/urls` → part URLs;
//! `POST /multipart/complete` → the recorded file; `POST /multipart/abort`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{ApiJson, required};
use super::uploads::{Confirmed, check_ticket, confirm_upload, confirmed, issue_key};
use crate::app::AppState;
use crate::auth::Caller;
use crate::storage::StoreError;

/// Parts are at least this big (S3's minimum is 5 MiB) ...
const MIN_PART: u64 = 16 * 1024 * 1024;
/// ... and there are at most this many (S3's limit).
const MAX_PARTS: u64 = 10_000;
/// Part URLs handed out per call.
const MAX_URLS_PER_CALL: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/multipart/start", post(start))
        .route("/multipart/urls", post(urls))
        .route("/multipart/complete", post(complete))
        .route("/multipart/abort", post(abort))
}

/// The part size for a file: 16 MiB, or more when the file needs more than 10,000 parts.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    needed.max(MIN_PART).next_multiple_of(1024 * 1024)
}

fn upload_id(value: Option<String>) -> Result<String, ApiError> {
    let id = required(value, "uploadId")?;
    if id.len() > 1024 || id.chars().any(char::is_control) {
        return Err(ApiError::InvalidBody("uploadId is not one this API returned".into()));
    }
    Ok(id)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest {
    file_name: Option<String>,
    content_type: Option<String>,
    size: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StartResponse {
    success: bool,
    object_key: String,
    upload_id: String,
    part_size: u64,
    part_count: u64,
    public_file_url: String,
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<Json<StartResponse>, ApiError> {
    let file_name = required(req.file_name, "fileName")?;
    let content_type = required(req.content_type, "contentType")?;
    let size = req.size.filter(|s| *s > 0).ok_or(ApiError::MissingField("size"))?;
    let key = issue_key(&state, &caller, &file_name, &content_type, Some(size))?;
    let upload_id = state.store.create_multipart(&key, &content_type).await?;
    let part_size = part_size(size);
    Ok(Json(StartResponse {
        success: true,
        public_file_url: state.store.public_url(&key).into(),
        object_key: key,
        upload_id,
        part_size,
        part_count: size.div_ceil(part_size),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UrlsRequest {
    object_key: Option<String>,
    upload_id: Option<String>,
    part_numbers: Option<Vec<u16>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartUrl {
    part_number: u16,
    url: String,
}

#[derive(Serialize)]
struct UrlsResponse {
    success: bool,
    urls: Vec<PartUrl>,
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn urls(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UrlsRequest>,
) -> Result<Json<UrlsResponse>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = upload_id(req.upload_id)?;
    check_ticket(&state, &caller, &key)?;
    let numbers = req.part_numbers.filter(|n| !n.is_empty()).ok_or(ApiError::MissingField("partNumbers"))?;
    if numbers.len() > MAX_URLS_PER_CALL || numbers.iter().any(|n| !(1..=MAX_PARTS as u16).contains(n)) {
        return Err(ApiError::InvalidBody(format!(
            "partNumbers must be 1 to {MAX_URLS_PER_CALL} numbers from 1 to {MAX_PARTS}"
        )));
    }
    let ttl = state.settings.upload_url_ttl;
    let urls = numbers
        .into_iter()
        .map(|n| PartUrl { part_number: n, url: state.store.presign_part(&key, &upload_id, n, ttl).into() })
        .collect();
    Ok(Json(UrlsResponse { success: true, urls }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompletedPart {
    part_number: u16,
    etag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteRequest {
    object_key: Option<String>,
    upload_id: Option<String>,
    parts: Option<Vec<CompletedPart>>,
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = upload_id(req.upload_id)?;
    check_ticket(&state, &caller, &key)?;
    let mut parts = req.parts.filter(|p| !p.is_empty()).ok_or(ApiError::MissingField("parts"))?;
    parts.sort_by_key(|p| p.part_number);
    let in_order = parts.iter().enumerate().all(|(i, p)| usize::from(p.part_number) == i + 1);
    if !in_order {
        return Err(ApiError::InvalidParts("parts must be numbered 1, 2, 3... with none missing".into()));
    }
    let etags: Vec<String> = parts.into_iter().map(|p| p.etag.trim_matches('"').to_owned()).collect();
    state.store.complete_multipart(&key, &upload_id, &etags).await.map_err(|e| match e {
        // The store refused the part list (an ETag it did not issue, a part too small...).
        StoreError::Refused(_) => ApiError::InvalidParts("the store refused these parts".into()),
        other => other.into(),
    })?;
    let record = confirm_upload(&state, &caller, key).await?;
    Ok(confirmed(record))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AbortRequest {
    object_key: Option<String>,
    upload_id: Option<String>,
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<AbortRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = upload_id(req.upload_id)?;
    state.tickets.verify(&caller.user_id, &key).map_err(|_| ApiError::UploadNotIssued)?;
    state.store.abort_multipart(&key, &upload_id).await?;
    Ok(Json(serde_json::json!({ "success": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_16_mib_until_the_file_needs_more_than_10000() {
        assert_eq!(part_size(1), MIN_PART);
        assert_eq!(part_size(100 * 1024 * 1024 * 1024), 16 * 1024 * 1024);
        let huge = 5 * 1024 * 1024 * 1024 * 1024; // 5 TiB, S3's largest object
        let size = part_size(huge);
        assert!(huge.div_ceil(size) <= MAX_PARTS);
        assert_eq!(size % (1024 * 1024), 0);
    }
}
