//! Large files by multipart: `POST /multipart/start` → key, upload id, part size;
//! `POST /multipart/urls` → part URLs; `POST /multipart/complete` → the recorded file;
//! `POST /multipart/parts` → the parts that arrived (to resume); `POST /multipart/abort`. The
//! upload service does the work.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};

use super::extract::{ApiJson, required};
use super::{ApiError, AppState, file_view};
use crate::identity::Caller;
use crate::upload::{MAX_PARTS, UploadRequest};
use crate::wire::{
    ArrivedPart, Confirmed, Done, MultipartAbortRequest, MultipartCompleteRequest, MultipartParts,
    MultipartPartsRequest, MultipartStartRequest, MultipartStarted, PartUrl, PartUrls, PartUrlsRequest,
};

/// The largest valid completion lists 10,000 parts, each `{"partNumber":10000,"etag":"…"}` with
/// an ETag of up to 64 characters (a multipart ETag with a part count is 36): about 100 bytes a
/// part, so 1 MiB holds the largest valid request with room to spare.
const MAX_COMPLETE_BODY: usize = 1024 * 1024;
const _: () = assert!(MAX_COMPLETE_BODY >= MAX_PARTS as usize * 100);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/multipart/start", post(start))
        .route("/multipart/urls", post(urls))
        .route("/multipart/complete", post(complete).layer(DefaultBodyLimit::max(MAX_COMPLETE_BODY)))
        .route("/multipart/abort", post(abort))
        .route("/multipart/parts", post(parts))
}

#[utoipa::path(post, path = "/multipart/start", tag = "multipart", request_body = crate::wire::MultipartStartRequest, responses((status = 200, description = "The key, the upload id and the part size", body = crate::wire::MultipartStarted), crate::api::error_docs::Errors))]
async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MultipartStartRequest>,
) -> Result<Json<MultipartStarted>, ApiError> {
    let file_name = required(req.file_name, "fileName")?;
    let content_type = required(req.content_type, "contentType")?;
    let size = req.size.filter(|s| *s > 0).ok_or(ApiError::MissingField("size"))?;
    let upload =
        state.uploads.start_multipart(&caller, &UploadRequest::new(&file_name, &content_type, Some(size))).await?;
    Ok(Json(MultipartStarted {
        success: true,
        object_key: upload.object_key,
        upload_id: upload.upload_id,
        part_size: upload.part_size,
        part_count: upload.part_count,
        public_file_url: upload.public_url.into(),
    }))
}

#[utoipa::path(post, path = "/multipart/urls", tag = "multipart", request_body = crate::wire::PartUrlsRequest, responses((status = 200, description = "Presigned part URLs", body = crate::wire::PartUrls), crate::api::error_docs::Errors))]
async fn urls(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PartUrlsRequest>,
) -> Result<Json<PartUrls>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = required(req.upload_id, "uploadId")?;
    let numbers = req.part_numbers.filter(|n| !n.is_empty()).ok_or(ApiError::MissingField("partNumbers"))?;
    let urls = state.uploads.part_urls(&caller, &key, &upload_id, &numbers, req.md5s.as_deref()).await?;
    let urls = urls.into_iter().map(|(part_number, url)| PartUrl { part_number, url: url.into() }).collect();
    Ok(Json(PartUrls { success: true, urls }))
}

#[utoipa::path(post, path = "/multipart/complete", tag = "multipart", request_body = crate::wire::MultipartCompleteRequest, responses((status = 200, description = "The joined object, verified and recorded", body = crate::wire::Confirmed), crate::api::error_docs::Errors))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MultipartCompleteRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = required(req.upload_id, "uploadId")?;
    let parts = req.parts.filter(|p| !p.is_empty()).ok_or(ApiError::MissingField("parts"))?;
    let parts = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    let record = state.uploads.complete_multipart(&caller, &key, &upload_id, parts).await?;
    Ok(Json(Confirmed { success: true, file: file_view(record) }))
}

#[utoipa::path(post, path = "/multipart/parts", tag = "multipart", request_body = crate::wire::MultipartPartsRequest, responses((status = 200, description = "The parts the bucket has", body = crate::wire::MultipartParts), crate::api::error_docs::Errors))]
async fn parts(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MultipartPartsRequest>,
) -> Result<Json<MultipartParts>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = required(req.upload_id, "uploadId")?;
    let parts = state.uploads.list_parts(&caller, &key, &upload_id).await?;
    let parts = parts.into_iter().map(|p| ArrivedPart { part_number: p.number, etag: p.etag, size: p.size }).collect();
    Ok(Json(MultipartParts { success: true, parts }))
}

#[utoipa::path(post, path = "/multipart/abort", tag = "multipart", request_body = crate::wire::MultipartAbortRequest, responses((status = 200, description = "The upload and its parts are gone", body = crate::wire::Done), crate::api::error_docs::Errors))]
async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<MultipartAbortRequest>,
) -> Result<Json<Done>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let upload_id = required(req.upload_id, "uploadId")?;
    state.uploads.abort_multipart(&caller, &key, &upload_id).await?;
    Ok(Json(Done { success: true }))
}
