//! Uploads whose S3 requests the client sends itself: Uppy's two server modes.
//!
//! In **Companion** mode the client asks Ferry (`/s3/...`) for each step and Ferry makes the
//! calls that need credentials; in **`signRequest`** mode the client asks Ferry to sign each S3
//! request it is about to send. Either way Ferry signs only what it would do itself: keys are
//! tickets Ferry issues (the client's proposed key only lends its file name), every later step
//! must name one of the caller's own keys still within its window, and the last step (complete,
//! or abort) comes back to Ferry, which confirms the object with every check of
//! `/save-b2-metadata`. In `signRequest` mode that last step is a URL to Ferry carrying a
//! [`Grant`]: the client POSTs its S3 XML there instead of to the bucket.
//!
//! Uppy sends files of 5 MiB or less in one request whatever `shouldUseMultipart` says: a
//! presigned POST form in Companion mode (only where the store takes them: the embedded store;
//! B2 does not, and gets `use-multipart`), a PUT in `signRequest` mode. Those end in the bucket,
//! so the page confirms them (`/save-b2-metadata` on Uppy's `upload-success`, as
//! `examples/uppy` does); the policy or signature pins the key (and for forms the type and
//! size), and the confirm checks everything again.

use url::Url;

use super::ticket::{Grant, GrantAction};
use super::{UploadError, UploadRequest, Uploads, now_unix};
use crate::db::FileRecord;
use crate::identity::Caller;
use crate::storage::{PartInfo, PostRequest, PresignedPost, PutRequest};

/// Uppy sends files up to this size in one request (S3's smallest part): the largest object a
/// POST form allows. The embedded store holds a form's file in memory while it checks it.
pub const SINGLE_REQUEST_MAX: u64 = 5 * 1024 * 1024;

/// An S3 request a client wants signed (the fields of Uppy's `PresignableRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest<'a> {
    pub method: &'a str,
    pub key: &'a str,
    pub upload_id: Option<&'a str>,
    pub part_number: Option<u16>,
}

/// Where the client sends its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Straight to the bucket; `key` is the key Ferry issued (it may differ from the proposed one).
    Store { url: Url, key: String },
    /// Back to Ferry, with this grant (complete or abort).
    Ferry { action: GrantAction, grant: String },
}

impl Uploads {
    /// Starts a multipart upload whose size the client does not declare (Uppy sizes its own
    /// parts): a ticket for `who`, reserved as one file of unknown size; the confirm checks the
    /// real size.
    pub async fn start_client_multipart(
        &self,
        who: &Caller,
        file_name: &str,
        content_type: &str,
    ) -> Result<(String, String), UploadError> {
        let key = self.issue(who, &UploadRequest::new(file_name, content_type, None)).await?;
        match self.store.create_multipart(&key, content_type).await {
            Ok(upload_id) => Ok((key, upload_id)),
            Err(e) => {
                self.files.release(who, &key).await?;
                Err(e.into())
            }
        }
    }

    /// A POST form for one small file (Companion's `/s3/params`), pinning the key Ferry issues,
    /// the declared type and the size; `use-multipart` where the store takes no forms.
    pub async fn presign_client_post(
        &self,
        who: &Caller,
        file_name: &str,
        content_type: &str,
    ) -> Result<(String, PresignedPost), UploadError> {
        if !self.store.takes_post_forms() {
            return Err(UploadError::UseMultipart);
        }
        let key = self.issue(who, &UploadRequest::new(file_name, content_type, None)).await?;
        let max_size = self.policy.max_file_size.min(SINGLE_REQUEST_MAX);
        let form =
            self.store.presign_post(&PostRequest { key: &key, content_type, max_size, ttl: self.timings.url_ttl });
        Ok((key.clone(), form.ok_or(UploadError::UseMultipart)?))
    }

    /// The parts of one of the caller's multipart uploads that arrived (to resume it).
    pub async fn list_parts(&self, who: &Caller, key: &str, upload_id: &str) -> Result<Vec<PartInfo>, UploadError> {
        super::multipart::check_upload_id(upload_id)?;
        self.authorize(who, key)?;
        self.store.list_parts(key, upload_id).await?.ok_or(UploadError::MultipartGone)
    }

    /// Signs one S3 request of a client that sends its own (Uppy's `signRequest`).
    pub async fn sign_client_request(&self, who: &Caller, req: &ClientRequest<'_>) -> Result<Signed, UploadError> {
        let ttl = self.timings.url_ttl;
        match (req.method, req.upload_id, req.part_number) {
            // CreateMultipartUpload: Ferry chooses the key; the proposed one lends its name.
            ("POST", None, None) => {
                // The content type is not known yet: the confirm checks what the store recorded.
                let key = self.issue_with(who, &UploadRequest::new(req.key, "", None), false).await?;
                Ok(Signed::Store { url: self.store.presign_create_multipart(&key, ttl), key })
            }
            // PutObject (a small file): Ferry chooses the key; the page confirms it afterwards.
            ("PUT", None, None) => {
                let key = self.issue_with(who, &UploadRequest::new(req.key, "", None), false).await?;
                let put = PutRequest {
                    key: &key,
                    content_type: None,
                    content_length: None,
                    content_md5: None,
                    checksum_sha256: None,
                    ttl,
                };
                Ok(Signed::Store { url: self.store.presign_put(&put), key })
            }
            ("PUT", Some(upload_id), Some(part)) => {
                let url = self.part_urls(who, req.key, upload_id, &[part], None).await?.remove(0).1;
                Ok(Signed::Store { url, key: req.key.to_owned() })
            }
            ("GET", Some(upload_id), None) => {
                super::multipart::check_upload_id(upload_id)?;
                self.authorize(who, req.key)?;
                Ok(Signed::Store {
                    url: self.store.presign_list_parts(req.key, upload_id, ttl),
                    key: req.key.to_owned(),
                })
            }
            ("POST", Some(upload_id), None) => self.grant(who, req.key, upload_id, GrantAction::Complete),
            ("DELETE", Some(upload_id), None) => self.grant(who, req.key, upload_id, GrantAction::Abort),
            // DeleteObject: files are deleted through Ferry (`DELETE /files/{id}`).
            ("DELETE", None, None) => Err(UploadError::InvalidMultipart(
                "files are deleted through Ferry (DELETE /files/{id}), not by a signed request".into(),
            )),
            _ => Err(UploadError::InvalidMultipart(
                "not an S3 request Ferry signs: method, uploadId and partNumber do not fit together".into(),
            )),
        }
    }

    fn grant(&self, who: &Caller, key: &str, upload_id: &str, action: GrantAction) -> Result<Signed, UploadError> {
        super::multipart::check_upload_id(upload_id)?;
        match action {
            GrantAction::Complete => self.authorize(who, key)?,
            GrantAction::Abort => self.ticket(who, key)?,
        };
        let grant = Grant {
            action,
            user: who.user_id.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            expires_at: now_unix() + self.timings.url_ttl.as_secs(),
        };
        Ok(Signed::Ferry { action, grant: self.tickets.sign_grant(&grant) })
    }

    /// The caller and upload a grant names, if Ferry signed it for `action` and it is still valid.
    pub fn redeem(&self, token: &str, action: GrantAction) -> Result<(Caller, Grant), UploadError> {
        let grant = self.tickets.verify_grant(token).map_err(|e| {
            tracing::info!(reason = %e, "grant refused");
            UploadError::NotIssued
        })?;
        if grant.action != action {
            return Err(UploadError::NotIssued);
        }
        if now_unix() > grant.expires_at {
            return Err(UploadError::Expired);
        }
        Ok((Caller::from_user_id(grant.user.clone()), grant))
    }

    /// Completes the upload a grant names and confirms it.
    pub async fn complete_granted(
        &self,
        token: &str,
        parts: Vec<(u16, String)>,
    ) -> Result<(Grant, FileRecord), UploadError> {
        let (who, grant) = self.redeem(token, GrantAction::Complete)?;
        let record = self.complete_multipart(&who, &grant.key, &grant.upload_id, parts).await?;
        Ok((grant, record))
    }

    /// Aborts the upload a grant names.
    pub async fn abort_granted(&self, token: &str) -> Result<(), UploadError> {
        let (who, grant) = self.redeem(token, GrantAction::Abort)?;
        self.abort_multipart(&who, &grant.key, &grant.upload_id).await
    }
}
