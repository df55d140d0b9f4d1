//! Handling one B2 event batch: check the signature, then confirm each `b2:ObjectCreated:*`
//! event through the upload service, for the user the key was issued to, once per `eventId`.

use std::sync::Arc;

use super::{Batch, signature_is_valid};
use crate::config::Secret;
use crate::db::{DbError, WebhookLog};
use crate::identity::Caller;
use crate::upload::{TicketSigner, UploadError, Uploads, now_unix};

/// Why a whole batch is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the event notification signature does not verify")]
    InvalidSignature,
    #[error("not a B2 event batch: {0}")]
    InvalidBody(String),
    /// Some events cannot be handled yet; B2 retries the batch, and the events already handled
    /// are then recognised as duplicates.
    #[error("some events cannot be handled yet")]
    RetryLater,
    #[error(transparent)]
    Database(#[from] DbError),
}

/// What happened to one event.
#[derive(Debug)]
pub enum EventStatus {
    Confirmed,
    /// Handled before (B2 delivers at least once).
    Duplicate,
    /// Not an object creation in this bucket.
    Ignored,
    /// No record of whom the key was issued to, and too old to wait for one.
    UnknownUpload,
    /// The upload service refused the confirm (expired, too large...).
    Refused(UploadError),
}

#[derive(Debug)]
pub struct EventOutcome {
    pub event_id: String,
    pub status: EventStatus,
}

/// The B2 event-notification handler.
pub struct B2Events {
    uploads: Arc<Uploads>,
    log: Arc<dyn WebhookLog>,
    secret: Secret,
    bucket: String,
}

impl B2Events {
    pub fn new(uploads: Arc<Uploads>, log: Arc<dyn WebhookLog>, secret: Secret, bucket: String) -> Self {
        Self { uploads, log, secret, bucket }
    }

    /// Handles one signed batch.
    pub async fn handle(&self, signature: &str, body: &[u8]) -> Result<Vec<EventOutcome>, WebhookError> {
        if !signature_is_valid(&self.secret, signature, body) {
            return Err(WebhookError::InvalidSignature);
        }
        let batch: Batch = serde_json::from_slice(body).map_err(|e| WebhookError::InvalidBody(e.to_string()))?;
        let mut outcomes = Vec::with_capacity(batch.events.len());
        let mut retry_later = false;
        for event in batch.events {
            if self.log.event_seen(&event.event_id).await? {
                outcomes.push(EventOutcome { event_id: event.event_id, status: EventStatus::Duplicate });
                continue;
            }
            let ours = event.bucket_name.as_deref().is_none_or(|b| b == self.bucket);
            let created = event.event_type.starts_with("b2:ObjectCreated:");
            let status = match (&event.object_name, created && ours) {
                (Some(key), true) => match self.log.pending_owner(key).await? {
                    Some(user) => match self.uploads.confirm(&Caller::from_user_id(user), key).await {
                        Ok(_) => EventStatus::Confirmed,
                        Err(e) if e.is_transient() => {
                            tracing::warn!(error = %e, "webhook event deferred");
                            retry_later = true;
                            continue;
                        }
                        Err(e) => EventStatus::Refused(e),
                    },
                    // The owner record is written just after presign: a fresh key may not be there yet.
                    None if self.still_confirmable(key) => {
                        retry_later = true;
                        continue;
                    }
                    None => EventStatus::UnknownUpload,
                },
                _ => EventStatus::Ignored,
            };
            self.log.mark_event(&event.event_id, now_unix() as i64).await?;
            outcomes.push(EventOutcome { event_id: event.event_id, status });
        }
        if retry_later {
            return Err(WebhookError::RetryLater);
        }
        Ok(outcomes)
    }

    fn still_confirmable(&self, key: &str) -> bool {
        TicketSigner::parse(key).is_ok_and(|(_, ticket)| self.uploads.confirmable(&ticket))
    }
}
