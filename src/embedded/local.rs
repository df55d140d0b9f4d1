//! The embedded store seen from inside Ferry: presigned URLs are signed exactly as for any S3
//! bucket (browsers reach the store over HTTP), but Ferry's own calls (HEAD on confirm, DELETE,
//! listing for cleanup) go straight to the disk, with no HTTP round trip or signature check.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::disk::{Disk, ObjectMeta};
use crate::storage::{
    ListPage, ListedObject, ObjectInfo, ObjectStore, PartInfo, PartRequest, PostRequest, PresignedPost, PutRequest,
    S3Store, StoreError,
};

/// Keys per listing page, as S3's default.
const PAGE: usize = 1000;

pub struct LocalObjects {
    pub(super) disk: Arc<Disk>,
    pub(super) bucket: String,
    /// Signs the URLs handed to browsers.
    pub(super) signer: S3Store,
}

fn info(m: ObjectMeta) -> ObjectInfo {
    ObjectInfo { size: m.size, content_type: m.content_type, etag: Some(m.etag) }
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

#[async_trait]
impl ObjectStore for LocalObjects {
    fn presign_put(&self, req: &PutRequest<'_>) -> Url {
        self.signer.presign_put(req)
    }

    fn presign_get(&self, key: &str, download_name: Option<&str>, ttl: Duration) -> Url {
        self.signer.presign_get(key, download_name, ttl)
    }

    fn public_url(&self, key: &str) -> Url {
        self.signer.public_url(key)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let meta = self.disk.meta(&self.bucket, key).await.map_err(io_error)?;
        Ok(meta.map(info))
    }

    /// Marks the object sealed (atomically, under the key's lock): from now on the store's S3
    /// endpoint refuses any PutObject or CompleteMultipartUpload to this key; deleting it
    /// still works.
    async fn seal(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let meta = self.disk.seal(&self.bucket, key).await.map_err(io_error)?;
        Ok(meta.map(info))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.disk.delete(&self.bucket, key).await.map_err(io_error)?;
        Ok(())
    }

    async fn list(&self, continuation: Option<&str>) -> Result<ListPage, StoreError> {
        let after = continuation.unwrap_or_default();
        let page = super::listing::page(&self.disk, &self.bucket, "", None, after, PAGE).await.map_err(io_error)?;
        let objects = page.objects.into_iter().map(|m| ListedObject { key: m.key, size: m.size }).collect();
        Ok(ListPage { objects, next: page.next })
    }

    async fn health(&self) -> Result<(), StoreError> {
        if self.disk.bucket_exists(&self.bucket) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("embedded store: bucket {} is missing", self.bucket)))
        }
    }

    // Multipart uploads go through the store's own S3 endpoint, where parts are checked.

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        self.signer.create_multipart(key, content_type).await
    }

    fn presign_part(&self, part: &PartRequest<'_>) -> Url {
        self.signer.presign_part(part)
    }

    fn checksum_headers(&self) -> bool {
        self.signer.checksum_headers()
    }

    /// The embedded store takes POST forms (s3s checks the policy and its signature).
    fn presign_post(&self, req: &PostRequest<'_>) -> Option<PresignedPost> {
        Some(self.signer.sign_post_form(req))
    }

    fn takes_post_forms(&self) -> bool {
        true
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), StoreError> {
        self.signer.complete_multipart(key, upload_id, etags).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.signer.abort_multipart(key, upload_id).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<PartInfo>>, StoreError> {
        self.signer.list_parts(key, upload_id).await
    }

    fn presign_create_multipart(&self, key: &str, ttl: Duration) -> Url {
        self.signer.presign_create_multipart(key, ttl)
    }

    fn presign_list_parts(&self, key: &str, upload_id: &str, ttl: Duration) -> Url {
        self.signer.presign_list_parts(key, upload_id, ttl)
    }

    async fn remove_abandoned_multipart(&self, age: Duration) -> Result<u64, StoreError> {
        let uploads = self.disk.uploads_root();
        let removed =
            tokio::task::spawn_blocking(move || super::disk::remove_abandoned_multipart_uploads(&uploads, age))
                .await
                .map_err(|e| StoreError::Unavailable(format!("embedded store: {e}")))?;
        if removed > 0 {
            tracing::info!(removed, "removed abandoned multipart uploads from the embedded store");
        }
        Ok(removed as u64)
    }
}
