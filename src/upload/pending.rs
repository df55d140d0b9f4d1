//! Remembers who each upload URL was issued to, for the webhook, without putting a database
//! write on the presign path: presign hands the record to a channel and a background task writes
//! whatever has gathered as one batch. (Ownership itself never depends on this table: the key's
//! ticket proves it. A record lost in a crash only means that upload waits for its client's
//! confirm, and cleanup still finds it if that never comes.)

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::db::{PendingUpload, WebhookLog};
use crate::telemetry::error_chain;

const QUEUE: usize = 65_536;
const MAX_BATCH: usize = 1_000;

#[derive(Clone)]
pub struct PendingRecorder {
    tx: mpsc::Sender<PendingUpload>,
}

impl PendingRecorder {
    /// Starts the writer task; it ends when every recorder is dropped.
    pub fn spawn(db: Arc<dyn WebhookLog>) -> Self {
        let (tx, mut rx) = mpsc::channel::<PendingUpload>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                if let Err(e) = db.record_pending(&batch).await {
                    tracing::warn!(error = %error_chain(&e), lost = batch.len(), "cannot record pending uploads");
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    /// Queues a record; never waits. A full queue drops the record (and says so).
    pub fn note(&self, pending: PendingUpload) {
        if self.tx.try_send(pending).is_err() {
            tracing::warn!("pending-upload queue full: this upload can only be confirmed by its client");
        }
    }
}
