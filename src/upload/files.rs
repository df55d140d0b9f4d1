//! The read side of the upload service: a caller's files, downloads and deletes.

use url::Url;

use super::{UploadError, Uploads};
use crate::db::FileRecord;
use crate::identity::Caller;

impl Uploads {
    /// The caller's files, newest first, with ids below `before` when given.
    pub async fn list(&self, who: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<FileRecord>, UploadError> {
        Ok(self.files.list(who, limit, before).await?)
    }

    /// Where the caller can download one of their files: a short-lived signed GET carrying the
    /// original name, or the public URL for a public bucket.
    pub async fn download_url(&self, who: &Caller, id: i64) -> Result<Url, UploadError> {
        let record = self.files.get(who, id).await?.ok_or(UploadError::FileNotFound)?;
        Ok(if self.timings.public_bucket {
            self.store.public_url(&record.object_key)
        } else {
            self.store.presign_get(&record.object_key, record.file_name.as_deref(), self.timings.download_url_ttl)
        })
    }

    /// Marks the row, deletes the object, then the row. If the store fails in between, the row
    /// stays marked (hidden from the user) and cleanup finishes the job: never a row pointing
    /// at nothing, never an object nobody knows about.
    pub async fn delete(&self, who: &Caller, id: i64) -> Result<(), UploadError> {
        let record = self.files.mark_deleting(who, id).await?.ok_or(UploadError::FileNotFound)?;
        self.store.delete(&record.object_key).await?;
        self.files.remove(who, record.id).await?;
        tracing::info!(file_id = record.id, "file deleted");
        Ok(())
    }
}
