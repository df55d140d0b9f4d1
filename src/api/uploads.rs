//! The guide's two endpoints: `POST /presign-b2-upload` and `POST /save-b2-metadata`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::extract::{ApiJson, required};
use super::{ApiError, AppState, file_view};
use crate::identity::Caller;
use crate::upload::UploadRequest;
use crate::wire::{ConfirmRequest, Confirmed, PresignRequest, PresignResponse};

pub fn router() -> Router<AppState> {
    Router::new().route("/presign-b2-upload", post(presign)).route("/save-b2-metadata", post(confirm))
}

#[utoipa::path(post, path = "/presign-b2-upload", tag = "uploads", request_body = PresignRequest, responses((status = 200, description = "A presigned PUT URL and the key Ferry issued", body = PresignResponse), crate::api::error_docs::Errors))]
async fn presign(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PresignRequest>,
) -> Result<Json<PresignResponse>, ApiError> {
    let file_name = required(req.file_name, "fileName")?;
    let content_type = required(req.content_type, "contentType")?;
    let request = UploadRequest {
        md5: req.md5.as_deref(),
        sha256: req.sha256.as_deref(),
        ..UploadRequest::new(&file_name, &content_type, req.size)
    };
    let presigned = state.uploads.presign(&caller, &request).await?;
    Ok(Json(PresignResponse {
        success: true,
        presigned_url: presigned.url.into(),
        object_key: presigned.object_key,
        public_file_url: presigned.public_url.into(),
        headers: presigned.headers.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
    }))
}

#[utoipa::path(post, path = "/save-b2-metadata", tag = "uploads", request_body = ConfirmRequest, responses((status = 200, description = "The upload, verified and recorded (repeats return the same row)", body = Confirmed), crate::api::error_docs::Errors))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    let record = state.uploads.confirm(&caller, &key).await?;
    Ok(Json(Confirmed { success: true, file: file_view(record) }))
}
