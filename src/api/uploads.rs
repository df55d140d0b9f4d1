//! The guide's two endpoints: `POST /presign-b2-upload` and `POST /save-b2-metadata`.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::extract::{ApiJson, required};
use super::files::FileView;
use crate::app::AppState;
use crate::auth::Caller;
use crate::db::{FileRecord, NewFile, PendingUpload, Recorded};
use crate::storage::PutRequest;
use crate::upload::{NameError, PolicyError, TicketError, clean_file_name, now_unix};

pub fn router() -> Router<AppState> {
    Router::new().route("/presign-b2-upload", post(presign)).route("/save-b2-metadata", post(confirm))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresignRequest {
    file_name: Option<String>,
    content_type: Option<String>,
    /// Optional exact size: signed into the URL so the store refuses any other length.
    size: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PresignResponse {
    success: bool,
    presigned_url: String,
    object_key: String,
    public_file_url: String,
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::MalformedType => Self::InvalidContentType,
            PolicyError::TypeNotAllowed(t) => Self::ContentTypeNotAllowed(t),
            PolicyError::TooLarge { limit } => Self::FileTooLarge { limit },
        }
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn presign(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<PresignRequest>,
) -> Result<Json<PresignResponse>, ApiError> {
    let file_name = required(req.file_name, "fileName")?;
    let content_type = required(req.content_type, "contentType")?;
    let ttl = state.settings.upload_url_ttl;
    let key = issue_key(&state, &caller, &file_name, &content_type, req.size)?;
    let url =
        state.store.presign_put(&PutRequest { key: &key, content_type: &content_type, content_length: req.size, ttl });
    Ok(Json(PresignResponse {
        success: true,
        presigned_url: url.into(),
        public_file_url: state.store.public_url(&key).into(),
        object_key: key,
    }))
}

/// Checks an upload request against the rules and makes its key (a ticket for `caller`).
/// Shared by the single-PUT presign and the multipart start.
pub(crate) fn issue_key(
    state: &AppState,
    caller: &Caller,
    file_name: &str,
    content_type: &str,
    size: Option<u64>,
) -> Result<String, ApiError> {
    let name = clean_file_name(file_name).map_err(|e: NameError| ApiError::InvalidFileName(e.to_string()))?;
    state.policy.check_type(content_type)?;
    if let Some(size) = size {
        state.policy.check_size(size)?;
    }
    let expires_at = u32::try_from(now_unix() + state.settings.upload_url_ttl.as_secs()).unwrap_or(u32::MAX);
    let key = state.tickets.issue(&caller.user_id, &name, expires_at);
    state.metrics.presigns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Some(pending) = &state.pending {
        pending.note(PendingUpload {
            object_key: key.clone(),
            user_id: caller.user_id.clone(),
            expires_at: i64::from(expires_at),
        });
    }
    Ok(key)
}

/// Checks that `key` is a ticket issued to `caller` and still within its confirm window.
pub(crate) fn check_ticket(state: &AppState, caller: &Caller, key: &str) -> Result<crate::upload::Ticket, ApiError> {
    let ticket = state.tickets.verify(&caller.user_id, key).map_err(|e: TicketError| {
        tracing::info!(reason = %e, "key refused");
        ApiError::UploadNotIssued
    })?;
    if now_unix() > u64::from(ticket.expires_at) + state.settings.confirm_grace.as_secs() {
        return Err(ApiError::UploadExpired);
    }
    Ok(ticket)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmRequest {
    object_key: Option<String>,
    /// Accepted for the guide's clients and ignored: Ferry computes the URL itself.
    #[serde(rename = "publicFileUrl")]
    _public_file_url: Option<serde_json::Value>,
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let key = required(req.object_key, "objectKey")?;
    Ok(confirmed(confirm_upload(&state, &caller, key).await?))
}

/// Confirms an upload for `caller`: the key must be a ticket issued to them and still within
/// its window; the object must exist and pass the rules; the row is written once.
/// The client's confirm and the B2 webhook both come through here.
pub(crate) async fn confirm_upload(state: &AppState, caller: &Caller, key: String) -> Result<FileRecord, ApiError> {
    let ticket = state.tickets.verify(&caller.user_id, &key).map_err(|e: TicketError| {
        tracing::info!(reason = %e, "confirm refused");
        ApiError::UploadNotIssued
    })?;
    let deadline = u64::from(ticket.expires_at) + state.settings.confirm_grace.as_secs();
    if now_unix() > deadline {
        // A repeat of a confirm that succeeded in time still answers with its record.
        return state.db.find_by_key(caller, &key).await?.ok_or(ApiError::UploadExpired);
    }
    let object = state.store.head(&key).await?.ok_or(ApiError::UploadNotFound)?;
    let limit = state.policy.max_file_size;
    if object.size > limit {
        state.store.delete(&key).await?;
        return Err(ApiError::ObjectTooLarge { limit });
    }
    let content_type = object.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
    if let Err(e) = state.policy.check_type(&content_type) {
        state.store.delete(&key).await?;
        tracing::info!(reason = %e, "uploaded object refused");
        return Err(ApiError::ObjectTypeNotAllowed(content_type));
    }
    let new = NewFile {
        file_url: state.store.public_url(&key).into(),
        file_name: ticket.file_name,
        content_type: Some(content_type),
        size: i64::try_from(object.size).unwrap_or(i64::MAX),
        etag: object.etag,
        object_key: key,
    };
    let (record, recorded) = state.db.record(caller, &new).await?;
    let counter = match recorded {
        Recorded::Created => &state.metrics.confirms_new,
        Recorded::Existing => &state.metrics.confirms_repeated,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(file_id = record.id, size = new.size, "upload confirmed");
    Ok(record)
}

/// The guide's `{"success": true}`, plus the record Ferry made.
#[derive(Serialize)]
pub(crate) struct Confirmed {
    success: bool,
    file: FileView,
}

pub(crate) fn confirmed(record: FileRecord) -> Json<Confirmed> {
    Json(Confirmed { success: true, file: FileView::from(record) })
}
