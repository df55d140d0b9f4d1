//! The read side: the caller's files, downloads and deletes.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiError;
use crate::app::AppState;
use crate::auth::Caller;
use crate::db::FileRecord;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files", get(list))
        .route("/files/{id}", delete(remove))
        .route("/files/{id}/download", get(download))
}

/// A file as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub id: i64,
    pub object_key: String,
    pub file_url: Option<String>,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub etag: Option<String>,
    pub upload_timestamp: DateTime<Utc>,
}

impl From<FileRecord> for FileView {
    fn from(r: FileRecord) -> Self {
        Self {
            id: r.id,
            object_key: r.object_key,
            file_url: r.file_url,
            file_name: r.file_name,
            content_type: r.content_type,
            size: r.size,
            etag: r.etag,
            upload_timestamp: r.upload_timestamp,
        }
    }
}

/// `GET /files`: serialized straight from typed rows (no intermediate JSON tree).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    success: bool,
    files: Vec<FileView>,
    next_cursor: Option<String>,
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

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let (limit, before) = parse_list_query(query)?;
    let rows = state.db.list(&caller, limit, before).await?;
    let next_cursor = (rows.len() == limit as usize).then(|| rows.last().map(|r| r.id.to_string())).flatten();
    let files: Vec<FileView> = rows.into_iter().map(FileView::from).collect();
    Ok(Json(FileList { success: true, files, next_cursor }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn download(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let record = state.db.get(&caller, id).await?.ok_or(ApiError::FileNotFound)?;
    let location = if state.settings.public_bucket {
        state.store.public_url(&record.object_key)
    } else {
        let name = record.file_name.as_deref();
        state.store.presign_get(&record.object_key, name, state.settings.download_url_ttl)
    };
    // The signed URL goes to the client only, never to a log line. Scripts (and the page, which
    // cannot read a cross-origin redirect) ask for it as JSON instead of a redirect.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        let body = Json(json!({ "success": true, "url": location.as_str() }));
        return Ok(([(header::CACHE_CONTROL, "no-store")], body).into_response());
    }
    Ok((
        axum::http::StatusCode::FOUND,
        [(header::LOCATION, location.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())],
    )
        .into_response())
}

/// Marks the row, deletes the object, then the row. If the store fails in between, the row
/// stays marked (hidden from the user) and the sweeper finishes the job.
#[tracing::instrument(skip_all, fields(user = %caller.user_id))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let record = state.db.mark_deleting(&caller, id).await?.ok_or(ApiError::FileNotFound)?;
    state.store.delete(&record.object_key).await?;
    state.db.remove(&caller, record.id).await?;
    tracing::info!(file_id = record.id, "file deleted");
    Ok(Json(json!({ "success": true })))
}
