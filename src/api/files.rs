//! The read side: the caller's files, their usage against the quota, downloads and deletes.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::db::FileRecord;
use crate::identity::Caller;
use crate::wire::{Amounts, Done, DownloadUrl, FileList, FileView, Limits, UsageView};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files", get(list))
        .route("/files/{id}", delete(remove))
        .route("/files/{id}/download", get(download))
        .route("/usage", get(usage))
}

/// A file as the API shows it.
pub fn file_view(r: FileRecord) -> FileView {
    FileView {
        id: r.id,
        object_key: r.object_key,
        file_url: r.file_url,
        file_name: r.file_name,
        content_type: r.content_type,
        size: r.size,
        etag: r.etag,
        md5: r.content_md5,
        sha256: r.checksum_sha256,
        upload_timestamp: r.upload_timestamp,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

fn parse_list_query(q: ListQuery) -> Result<(u32, Option<i64>), ApiError> {
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::InvalidQuery(format!("limit must be a whole number from 1 to {MAX_PAGE}")));
            }
        },
    };
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(ApiError::InvalidQuery("cursor is not one this API returned".into()));
            }
        },
    };
    Ok((limit, cursor))
}

/// Ids in paths are numbers; anything else names no file.
fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|id| *id > 0).ok_or(ApiError::FileNotFound)
}

#[utoipa::path(get, path = "/files", tag = "files", params(("limit" = Option<String>, Query, description = "1 to 1000 (default 50)"), ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")), responses((status = 200, description = "The caller's files, newest first", body = FileList), crate::api::error_docs::Errors))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let (limit, before) = parse_list_query(query)?;
    let rows = state.uploads.list(&caller, limit, before).await?;
    let next_cursor = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.id.to_string())).flatten();
    let files: Vec<FileView> = rows.into_iter().map(file_view).collect();
    // A page of 50 files is 10-20 KB of JSON: written into a buffer of about that size at once,
    // rather than one grown (and copied) by doubling from `Json`'s 128 bytes.
    let mut body = Vec::with_capacity(64 + files.len() * BYTES_PER_FILE);
    serde_json::to_writer(&mut body, &FileList { success: true, files, next_cursor })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// About what one file takes in a list's JSON (a generated key, a URL, a name, a type).
const BYTES_PER_FILE: usize = 320;

#[utoipa::path(get, path = "/usage", tag = "files", responses((status = 200, description = "Usage and limits", body = UsageView), crate::api::error_docs::Errors))]
/// What the caller stores and holds reserved, against the limits.
async fn usage(State(state): State<AppState>, caller: Caller) -> Result<Json<UsageView>, ApiError> {
    let usage = state.uploads.usage(&caller).await?;
    let quota = state.uploads.quota();
    Ok(Json(UsageView {
        success: true,
        files: usage.files,
        bytes: usage.bytes,
        reserved: Amounts { files: usage.reserved_files, bytes: usage.reserved_bytes },
        limits: Limits { files: quota.files, bytes: quota.bytes },
    }))
}

#[utoipa::path(get, path = "/files/{id}/download", tag = "files", params(("id" = String, Path, description = "The file's id")), responses((status = 302, description = "Redirect to a short-lived signed GET (or the public URL)"), (status = 200, description = "With Accept: application/json", body = DownloadUrl), crate::api::error_docs::Errors))]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let location = state.uploads.download_url(&caller, parse_id(&id)?).await?;
    // The signed URL goes to the client only, never to a log line. Scripts (and the page, which
    // cannot read a cross-origin redirect) ask for it as JSON instead of a redirect.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        let body = Json(DownloadUrl { success: true, url: location.into() });
        return Ok(([(header::CACHE_CONTROL, "no-store")], body).into_response());
    }
    Ok((
        axum::http::StatusCode::FOUND,
        [(header::LOCATION, location.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())],
    )
        .into_response())
}

#[utoipa::path(delete, path = "/files/{id}", tag = "files", params(("id" = String, Path, description = "The file's id")), responses((status = 200, description = "Deleted", body = Done), crate::api::error_docs::Errors))]
/// Deletes one of the caller's files (row marked, object deleted, row deleted).
async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Done>, ApiError> {
    state.uploads.delete(&caller, parse_id(&id)?).await?;
    Ok(Json(Done { success: true }))
}
