//! `POST /webhooks/b2`: Backblaze B2 event notifications, handled by [`crate::webhook`].

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::webhook::{EventStatus, SIGNATURE_HEADER, WebhookError};

/// B2 sends batches of events; allow more than the API's small JSON bodies.
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/b2", post(b2_events).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)))
}

#[utoipa::path(post, path = "/webhooks/b2", tag = "webhooks", request_body(content = String, content_type = "application/json", description = "A B2 event notification batch, signed in x-bz-event-notification-signature"), responses((status = 200, description = "What happened to each event"), crate::api::error_docs::Errors))]
#[tracing::instrument(skip_all)]
async fn b2_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let Some(webhook) = &state.webhook else { return Err(ApiError::RouteNotFound) };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let outcomes = webhook.handle(signature, &body).await.inspect_err(|e| {
        if matches!(e, WebhookError::InvalidSignature) {
            tracing::info!("webhook refused: bad or missing signature");
        }
    })?;
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| {
            let status = match o.status {
                EventStatus::Confirmed => "confirmed",
                EventStatus::Duplicate => "duplicate",
                EventStatus::Ignored => "ignored",
                EventStatus::UnknownUpload => "unknown-upload",
                EventStatus::Refused(e) => ApiError::from(e).code(),
            };
            json!({ "eventId": o.event_id, "status": status })
        })
        .collect();
    Ok(Json(json!({ "success": true, "results": results })))
}
