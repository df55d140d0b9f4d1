//! Object storage behind a small trait: presigning for browsers, and the few calls Ferry makes
//! itself (HEAD to verify an upload, DELETE, listing for cleanup, a health check).

pub mod cors;
pub mod post;
mod s3;

use std::time::Duration;

use async_trait::async_trait;
use url::Url;

pub use post::{PostRequest, PresignedPost};
pub use s3::S3Store;

/// What the store says about an object (never what the client said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: Option<String>,
}

/// One object in a bucket listing.
#[derive(Debug, Clone)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
}

/// A part of an unfinished multipart upload, as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub number: u16,
    pub etag: String,
    pub size: u64,
}

/// One page of a bucket listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

/// A presigned upload: what the browser must send with its PUT.
#[derive(Debug, Clone)]
pub struct PutRequest<'a> {
    pub key: &'a str,
    /// Signed in as `Content-Type` when known (a client that signs its own requests, Uppy's
    /// `signRequest`, does not say it; the confirm then checks what the store recorded).
    pub content_type: Option<&'a str>,
    /// When set, signed into the URL: the store refuses a body of any other length.
    pub content_length: Option<u64>,
    /// When set (base64), signed in as `Content-MD5`: the store refuses any other bytes.
    pub content_md5: Option<&'a str>,
    /// When set (base64), signed in as `x-amz-checksum-sha256` (only for stores that take it).
    pub checksum_sha256: Option<&'a str>,
    pub ttl: Duration,
}

/// A presigned part of a multipart upload.
#[derive(Debug, Clone)]
pub struct PartRequest<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    /// 1-based.
    pub part_number: u16,
    /// When set, signed into the URL: the store refuses a part of any other length.
    pub content_length: Option<u64>,
    /// When set (base64), signed in as `Content-MD5`: the store refuses any other bytes.
    pub content_md5: Option<&'a str>,
    pub ttl: Duration,
}

impl PutRequest<'_> {
    /// The headers a client must send with its PUT, as they were signed.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers: Vec<(&'static str, String)> =
            self.content_type.map(|t| ("Content-Type", t.to_owned())).into_iter().collect();
        if let Some(md5) = self.content_md5 {
            headers.push(("Content-MD5", md5.to_owned()));
        }
        if let Some(sha256) = self.checksum_sha256 {
            headers.push(("x-amz-checksum-sha256", sha256.to_owned()));
        }
        headers
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or failed on its side (5xx, timeout, refused).
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something Ferry did not expect (4xx other than not-found).
    #[error("object store refused the request: {0}")]
    Refused(String),
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// A URL the browser can PUT the object to, with its content type signed in.
    fn presign_put(&self, req: &PutRequest<'_>) -> Url;
    /// A short-lived GET URL; `download_name` becomes the `Content-Disposition` file name.
    fn presign_get(&self, key: &str, download_name: Option<&str>, ttl: Duration) -> Url;
    /// The unsigned URL of an object, as the guide's `publicFileUrl`.
    fn public_url(&self, key: &str) -> Url;
    /// The object's facts, or `None` if there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// Makes the object immutable where the store can (the embedded store then refuses any
    /// further PUT to its key), and returns its facts, or `None` if there is no such object.
    /// Confirm calls this before checking the object, so what it checks is what stays. Other
    /// stores cannot seal an object: the default is a plain HEAD.
    async fn seal(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.head(key).await
    }
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// One page of the bucket's objects.
    async fn list(&self, continuation: Option<&str>) -> Result<ListPage, StoreError>;
    /// Whether the bucket can be reached with Ferry's credentials.
    async fn health(&self) -> Result<(), StoreError>;
    /// Starts a multipart upload (for files past the single-PUT limit); returns its upload id.
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError>;
    /// A URL the client can PUT one part to, with what `part` says signed in.
    fn presign_part(&self, part: &PartRequest<'_>) -> Url;
    /// Whether the store takes `x-amz-checksum-*` headers (B2 refuses them).
    fn checksum_headers(&self) -> bool;
    /// A browser POST form for one object, where the store takes them (the embedded store; B2
    /// does not): `None` otherwise.
    fn presign_post(&self, _req: &PostRequest<'_>) -> Option<PresignedPost> {
        None
    }
    /// Whether [`Self::presign_post`] makes forms.
    fn takes_post_forms(&self) -> bool {
        false
    }
    /// Joins the parts, whose ETags are given in part order (1, 2, ...).
    async fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), StoreError>;
    /// Abandons a multipart upload and its parts.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
    /// The parts of an unfinished multipart upload that arrived, in part order; `None` if the
    /// store knows no such upload (completed, aborted or never started).
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<PartInfo>>, StoreError>;
    /// A URL the client can POST to start a multipart upload of `key` itself (Uppy's
    /// `signRequest` mode); the content type is not signed in, so the confirm checks it.
    fn presign_create_multipart(&self, key: &str, ttl: Duration) -> Url;
    /// A URL the client can GET the parts of one of its multipart uploads from.
    fn presign_list_parts(&self, key: &str, upload_id: &str, ttl: Duration) -> Url;
    /// Removes the multipart uploads (and their parts) that received nothing for `age`;
    /// returns how many. Only the embedded store does anything here: a bucket elsewhere has
    /// its own lifecycle rules (AbortIncompleteMultipartUpload) for this.
    async fn remove_abandoned_multipart(&self, age: std::time::Duration) -> Result<u64, StoreError> {
        let _ = age;
        Ok(0)
    }
}

/// Everything but RFC 5987's `attr-char` is percent-encoded in `filename*`.
const RFC5987_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="..."; filename*=UTF-8''...` (RFC 6266), safe for any name.
pub fn content_disposition(name: &str) -> String {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(name, RFC5987_ESCAPED);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
