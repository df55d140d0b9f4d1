//! Large files by multipart: the client PUTs parts straight to the bucket through presigned
//! part URLs, then the service joins them and confirms the result exactly as a single upload.

use url::Url;

use super::checksum::check_md5;
use super::{UploadError, UploadRequest, Uploads};
use crate::identity::Caller;
use crate::storage::{PartRequest, StoreError};
use crate::wire::part_span;

/// Parts are at least this big (S3's minimum is 5 MiB) ...
const MIN_PART: u64 = 16 * 1024 * 1024;
/// ... and there are at most this many (S3's limit).
pub const MAX_PARTS: u16 = 10_000;
/// Part URLs handed out per call.
pub const MAX_URLS_PER_CALL: usize = 1_000;
/// Longest upload id accepted back from a client.
const MAX_UPLOAD_ID_LEN: usize = 1024;

/// The part size for a file: 16 MiB, or more when the file needs more than 10,000 parts.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(u64::from(MAX_PARTS));
    needed.max(MIN_PART).next_multiple_of(1024 * 1024)
}

/// The length of part `number` of a file of `size` bytes cut by [`part_size`]; refused past
/// the file's last part.
fn part_length(size: u64, number: u16) -> Result<u64, UploadError> {
    let part = part_size(size);
    part_span(size, part, number).map(|(_, length)| length).ok_or_else(|| {
        let count = size.div_ceil(part);
        UploadError::InvalidMultipart(format!("this file has {count} parts: there is no part {number}"))
    })
}

/// A started multipart upload.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    pub object_key: String,
    pub upload_id: String,
    pub part_size: u64,
    pub part_count: u64,
    pub public_url: Url,
}

pub(super) fn check_upload_id(id: &str) -> Result<(), UploadError> {
    if id.len() > MAX_UPLOAD_ID_LEN || id.chars().any(char::is_control) {
        return Err(UploadError::InvalidMultipart("uploadId is not one this API returned".into()));
    }
    Ok(())
}

impl Uploads {
    /// Issues a key for a file of `req.size` bytes and starts a multipart upload in the bucket.
    pub async fn start_multipart(&self, who: &Caller, req: &UploadRequest<'_>) -> Result<MultipartUpload, UploadError> {
        let size = req
            .size
            .filter(|s| *s > 0)
            .ok_or_else(|| UploadError::InvalidMultipart("size must be the file's size in bytes, above 0".into()))?;
        let key = self.issue(who, &UploadRequest { md5: None, sha256: None, ..*req }).await?;
        let upload_id = match self.store.create_multipart(&key, req.content_type).await {
            Ok(id) => id,
            Err(e) => {
                // Nothing was started: the key's reservation must not hold the quota.
                self.files.release(who, &key).await?;
                return Err(e.into());
            }
        };
        let part_size = part_size(size);
        Ok(MultipartUpload {
            public_url: self.store.public_url(&key),
            object_key: key,
            upload_id,
            part_size,
            part_count: size.div_ceil(part_size),
        })
    }

    /// Presigned PUT URLs for parts of one of the caller's uploads still within its window;
    /// `md5s`, when given, holds each part's MD5 (base64, in the order of `numbers`), signed in
    /// so the bucket refuses any other bytes for that part. Under a byte quota, an upload that
    /// declared its size (Ferry's own start; Uppy's do not) gets each part's exact length signed
    /// in, and no part past its last: the bucket cannot take more than the reservation holds.
    pub async fn part_urls(
        &self,
        who: &Caller,
        key: &str,
        upload_id: &str,
        numbers: &[u16],
        md5s: Option<&[String]>,
    ) -> Result<Vec<(u16, Url)>, UploadError> {
        check_upload_id(upload_id)?;
        self.authorize(who, key)?;
        if numbers.is_empty()
            || numbers.len() > MAX_URLS_PER_CALL
            || numbers.iter().any(|n| !(1..=MAX_PARTS).contains(n))
        {
            return Err(UploadError::InvalidMultipart(format!(
                "partNumbers must be 1 to {MAX_URLS_PER_CALL} numbers from 1 to {MAX_PARTS}"
            )));
        }
        if let Some(md5s) = md5s {
            if md5s.len() != numbers.len() {
                return Err(UploadError::InvalidMultipart("md5s must hold one digest for each part number".into()));
            }
            for md5 in md5s {
                check_md5("md5s", md5)?;
            }
        }
        let declared = match self.quota.bytes {
            Some(_) => self.files.reserved_bytes(who, key).await?.filter(|bytes| *bytes > 0),
            None => None,
        };
        let mut urls = Vec::with_capacity(numbers.len());
        for (i, &part_number) in numbers.iter().enumerate() {
            let content_length = declared.map(|size| part_length(size, part_number)).transpose()?;
            let part = PartRequest {
                key,
                upload_id,
                part_number,
                content_length,
                content_md5: md5s.map(|m| m[i].as_str()),
                ttl: self.timings.url_ttl,
            };
            urls.push((part_number, self.store.presign_part(&part)));
        }
        Ok(urls)
    }

    /// Joins the parts (numbered 1, 2, 3... with none missing) and confirms the result.
    pub async fn complete_multipart(
        &self,
        who: &Caller,
        key: &str,
        upload_id: &str,
        mut parts: Vec<(u16, String)>,
    ) -> Result<crate::db::FileRecord, UploadError> {
        check_upload_id(upload_id)?;
        self.authorize(who, key)?;
        parts.sort_by_key(|(n, _)| *n);
        let in_order = !parts.is_empty() && parts.iter().enumerate().all(|(i, (n, _))| usize::from(*n) == i + 1);
        if !in_order {
            return Err(UploadError::InvalidParts("parts must be numbered 1, 2, 3... with none missing".into()));
        }
        let etags: Vec<String> = parts.into_iter().map(|(_, etag)| etag.trim_matches('"').to_owned()).collect();
        match self.store.complete_multipart(key, upload_id, &etags).await {
            Ok(()) => {}
            // A retry whose first attempt the store finished (the answer was lost: a crash, a
            // dropped connection): the upload is gone and the object is there. Confirm it.
            Err(StoreError::Refused(_)) if self.store.head(key).await?.is_some() => {
                tracing::info!("multipart upload already completed; confirming the object");
            }
            // The store refused the part list (an ETag it did not issue, a part too small...).
            Err(StoreError::Refused(_)) => {
                return Err(UploadError::InvalidParts("the store refused these parts".into()));
            }
            Err(other) => return Err(other.into()),
        }
        self.confirm(who, key).await
    }

    /// Abandons one of the caller's multipart uploads and its parts.
    pub async fn abort_multipart(&self, who: &Caller, key: &str, upload_id: &str) -> Result<(), UploadError> {
        check_upload_id(upload_id)?;
        self.ticket(who, key)?;
        // The reservation is released only if this upload really existed: aborting a made-up
        // upload id must not free the quota a key still holds.
        let existed = self.store.list_parts(key, upload_id).await?.is_some();
        self.store.abort_multipart(key, upload_id).await?;
        if existed {
            self.files.release(who, key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_16_mib_until_the_file_needs_more_than_10000() {
        assert_eq!(part_size(1), MIN_PART);
        assert_eq!(part_size(100 * 1024 * 1024 * 1024), 16 * 1024 * 1024);
        let huge = 5 * 1024 * 1024 * 1024 * 1024; // 5 TiB, S3's largest object
        let size = part_size(huge);
        assert!(huge.div_ceil(size) <= u64::from(MAX_PARTS));
        assert_eq!(size % (1024 * 1024), 0);
    }
}
