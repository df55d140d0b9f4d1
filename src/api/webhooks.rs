//! `POST /webhooks/b2`: Backblaze B2 event notifications.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::ApiError;
use super::uploads::confirm_upload;
use crate::app::AppState;
use crate::auth::Caller;
use crate::upload::{TicketSigner, now_unix};
use crate::webhook::{Batch, SIGNATURE_HEADER, signature_is_valid};

/// B2 sends batches of events; allow more than the API's small JSON bodies.
const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/b2", post(b2_events).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)))
}

#[tracing::instrument(skip_all)]
async fn b2_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(secret) = &state.webhook_secret else { return Err(ApiError::RouteNotFound) };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !signature_is_valid(secret, signature, &body) {
        tracing::warn!("webhook refused: bad or missing signature");
        return Err(ApiError::InvalidSignature);
    }
    let batch: Batch =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(format!("not a B2 event batch: {e}")))?;
    let mut results = Vec::with_capacity(batch.events.len());
    let mut retry_later = false;
    for event in batch.events {
        if state.db.event_seen(&event.event_id).await? {
            results.push(json!({ "eventId": event.event_id, "status": "duplicate" }));
            continue;
        }
        let ours = event.bucket_name.as_deref().is_none_or(|b| b == state.bucket);
        let status = match (&event.object_name, event.event_type.starts_with("b2:ObjectCreated:") && ours) {
            (Some(key), true) => match state.db.pending_owner(key).await? {
                Some(user) => match confirm_upload(&state, &Caller::from_user_id(user), key.clone()).await {
                    Ok(_) => "confirmed".to_owned(),
                    Err(e @ (ApiError::DatabaseUnavailable(_) | ApiError::StoreUnavailable(_))) => {
                        tracing::warn!(error = %e, "webhook event deferred");
                        retry_later = true;
                        continue;
                    }
                    Err(e) => e.code().to_owned(),
                },
                // The owner record is written just after presign: a fresh key may not be there yet.
                None if still_confirmable(&state, key) => {
                    retry_later = true;
                    continue;
                }
                None => "unknown-upload".to_owned(),
            },
            _ => "ignored".to_owned(),
        };
        state.db.mark_event(&event.event_id, now_unix() as i64).await?;
        results.push(json!({ "eventId": event.event_id, "status": status }));
    }
    if retry_later {
        // B2 retries the batch; the events already handled are recognised as duplicates.
        return Err(ApiError::RetryLater);
    }
    Ok(Json(json!({ "success": true, "results": results })).into_response())
}

fn still_confirmable(state: &AppState, key: &str) -> bool {
    TicketSigner::parse(key)
        .is_ok_and(|(_, t)| u64::from(t.expires_at) + state.settings.confirm_grace.as_secs() > now_unix())
}
