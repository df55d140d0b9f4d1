//! The upload service's one error type. The HTTP edge maps each variant to a status and a
//! stable code in one `From`; the webhook asks [`UploadError::is_transient`] to decide retries.

use crate::db::{DbError, QuotaExceeded};
use crate::storage::StoreError;

use super::{ChecksumError, NameError, PolicyError};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The file name cannot be used, even cleaned.
    #[error(transparent)]
    InvalidFileName(NameError),
    /// The declared type or size breaks the rules.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The key was never issued to this caller.
    #[error("this object key was not issued to you")]
    NotIssued,
    /// The key's confirmation window is over.
    #[error("this upload expired")]
    Expired,
    /// No object has arrived under the key yet.
    #[error("no object has been uploaded under this key yet")]
    NotUploaded,
    /// The object in the bucket is larger than the limit; it was deleted.
    #[error("the uploaded object is larger than the limit of {limit} bytes")]
    ObjectTooLarge { limit: u64 },
    /// The object's type is not allowed; it was deleted.
    #[error("the uploaded object's type {0} is not allowed")]
    ObjectTypeNotAllowed(String),
    /// A multipart request that cannot be right (part numbers, upload id, part list).
    #[error("{0}")]
    InvalidMultipart(String),
    /// The store refused the part list of a multipart completion.
    #[error("{0}")]
    InvalidParts(String),
    /// A declared digest is malformed, or the store cannot check it.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    /// With a byte quota, a presigned PUT must declare its size: only a signed length keeps the
    /// bucket from taking more than was reserved.
    #[error("size is required: a storage quota is set")]
    SizeRequired,
    /// The upload would take the caller past a quota.
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    /// The uploaded object would take the caller past a quota; it was deleted.
    #[error("{0}; the uploaded file was removed")]
    ObjectOverQuota(QuotaExceeded),
    /// The multipart upload is finished, aborted or unknown to the store.
    #[error("this multipart upload is finished, aborted or unknown; start it again")]
    MultipartGone,
    /// A single-request upload this bucket cannot take (a POST form on B2): upload in parts.
    #[error(
        "this bucket takes no browser POST forms (B2 does not): send the file in parts, or use Uppy's signRequest mode"
    )]
    UseMultipart,
    /// No such file for this caller.
    #[error("no such file")]
    FileNotFound,
    /// The key is already recorded for another user.
    #[error("this object key is already recorded")]
    KeyTaken,
    /// The key's file was deleted; it is never recorded again.
    #[error("this upload's file was deleted")]
    Deleted,
    /// The object in the bucket is no longer the one that was confirmed (replaced through a store
    /// that does not keep confirmed objects immutable). Nothing was deleted or changed.
    #[error("the object under this key changed after it was confirmed")]
    ObjectChanged,
    #[error(transparent)]
    Database(DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UploadError {
    /// Whether trying again later may succeed (a dependency was down), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(DbError::Unavailable(_)) | Self::Store(StoreError::Unavailable(_)))
    }
}

impl From<DbError> for UploadError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::KeyTaken => Self::KeyTaken,
            DbError::KeyDeleted => Self::Deleted,
            DbError::Quota(exceeded) => Self::QuotaExceeded(exceeded),
            other => Self::Database(other),
        }
    }
}

impl From<NameError> for UploadError {
    fn from(e: NameError) -> Self {
        Self::InvalidFileName(e)
    }
}
