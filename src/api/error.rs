//! The HTTP edge's error type: every failure a client can see, with its status and stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::TokenError;
use crate::db::DbError;
use crate::storage::StoreError;
use crate::telemetry::error_chain;
use crate::upload::{ChecksumError, PolicyError, UploadError};
use crate::webhook::WebhookError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `malformed-json`: the body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 400 `invalid-body`: JSON of the wrong shape (a number where a string belongs...).
    #[error("the request body does not have the expected shape: {0}")]
    InvalidBody(String),
    /// 415 `unsupported-media-type`: the body is not sent as `application/json`.
    #[error("send the body as JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 413 `body-too-large`.
    #[error("the request body is too large")]
    BodyTooLarge,
    /// 400 `missing-field`.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// 400 `invalid-file-name`.
    #[error("{0}")]
    InvalidFileName(String),
    /// 400 `invalid-content-type`.
    #[error("contentType must look like type/subtype, for example image/png")]
    InvalidContentType,
    /// 400 `content-type-not-allowed`.
    #[error("files of type {0} are not allowed")]
    ContentTypeNotAllowed(String),
    /// 400 `file-too-large`.
    #[error("the file is larger than the limit of {limit} bytes")]
    FileTooLarge { limit: u64 },
    /// 400 `invalid-checksum`: a declared digest is not the base64 of one.
    #[error("{0}")]
    InvalidChecksum(String),
    /// 400 `checksum-unsupported`: the bucket cannot check this kind of digest.
    #[error("{0}")]
    ChecksumUnsupported(String),
    /// 403 `quota-exceeded`: the upload would take the caller past a limit (an uploaded file
    /// that would was removed).
    #[error("{0}")]
    QuotaExceeded(String),
    /// 404 `multipart-not-found`: the multipart upload is finished, aborted or unknown.
    #[error("{0}")]
    MultipartNotFound(String),
    /// 400 `use-multipart`: a single-request upload Ferry would never see finish.
    #[error("{0}")]
    UseMultipart(String),
    /// 400 `invalid-user-id`.
    #[error("the user id must be 1 to 255 printable characters")]
    InvalidUserId,
    /// 400 `invalid-query`.
    #[error("{0}")]
    InvalidQuery(String),
    /// 401 `missing-token`: no `Authorization: Bearer` header.
    #[error("this endpoint needs Authorization: Bearer <token>")]
    MissingToken,
    /// 401 `invalid-token` (or `token-expired`): the token was refused; never echoed or logged.
    #[error("{0}")]
    InvalidToken(TokenError),
    /// 503 `auth-unavailable`: the identity provider's keys cannot be fetched.
    #[error("the identity provider cannot be reached, try again shortly")]
    AuthUnavailable,
    /// 401 `invalid-signature`: a B2 event notification whose signature does not verify.
    #[error("the event notification signature does not verify")]
    InvalidSignature,
    /// 503 `retry-later`: some webhook events cannot be handled yet (B2 retries the batch).
    #[error("some events cannot be handled yet")]
    RetryLater,
    /// 403 `upload-not-issued`: the key was never issued to this user.
    #[error("this object key was not issued to you")]
    UploadNotIssued,
    /// 410 `upload-expired`: the key's confirmation window is over.
    #[error("this upload expired; ask for a new upload URL")]
    UploadExpired,
    /// 409 `upload-not-found`: confirmed before the object arrived (retry after the PUT).
    #[error("no object has been uploaded under this key yet")]
    UploadNotFound,
    /// 422 `object-too-large`: the uploaded object exceeds the limit; it was deleted.
    #[error("the uploaded file is larger than the limit of {limit} bytes and was removed")]
    ObjectTooLarge { limit: u64 },
    /// 422 `object-type-not-allowed`: the uploaded object's type is not allowed; it was deleted.
    #[error("the uploaded file's type {0} is not allowed and the file was removed")]
    ObjectTypeNotAllowed(String),
    /// 400 `invalid-parts`: a multipart completion the store cannot accept.
    #[error("{0}")]
    InvalidParts(String),
    /// 409 `key-taken`: the object key is already recorded for another user.
    #[error("this object key is already recorded")]
    KeyTaken,
    /// 410 `upload-deleted`: the upload's file was deleted; its key is never recorded again.
    #[error("this upload's file was deleted; ask for a new upload URL")]
    UploadDeleted,
    /// 409 `object-changed`: the object in the bucket is no longer the one confirmed.
    #[error("the object under this key changed after it was confirmed; nothing was changed")]
    ObjectChanged,
    /// 429 `rate-limited`: too many requests from this client; `Retry-After` says when to retry.
    #[error("too many requests: try again in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    /// 403 `host-not-allowed`: dev mode answers only loopback host names (DNS rebinding).
    #[error("dev mode answers only requests addressed to localhost or a loopback address")]
    HostNotAllowed,
    /// 404 `file-not-found`.
    #[error("no such file")]
    FileNotFound,
    /// 404 `not-found`.
    #[error("no such endpoint")]
    RouteNotFound,
    /// 405 `method-not-allowed`.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// 503 `database-unavailable`: cause logged, not sent.
    #[error("the database is unavailable, try again shortly")]
    DatabaseUnavailable(#[source] DbError),
    /// 503 `store-unavailable`: cause logged, not sent.
    #[error("the object store is unavailable, try again shortly")]
    StoreUnavailable(#[source] StoreError),
    /// 500 `internal-error`: cause logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_)
            | InvalidBody(_)
            | MissingField(_)
            | InvalidFileName(_)
            | InvalidContentType
            | ContentTypeNotAllowed(_)
            | FileTooLarge { .. }
            | InvalidUserId
            | InvalidQuery(_)
            | InvalidChecksum(_)
            | UseMultipart(_)
            | ChecksumUnsupported(_)
            | InvalidParts(_) => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            MissingToken | InvalidToken(_) | InvalidSignature => StatusCode::UNAUTHORIZED,
            UploadNotIssued | HostNotAllowed | QuotaExceeded(_) => StatusCode::FORBIDDEN,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UploadExpired | UploadDeleted => StatusCode::GONE,
            UploadNotFound | KeyTaken | ObjectChanged => StatusCode::CONFLICT,
            ObjectTooLarge { .. } | ObjectTypeNotAllowed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FileNotFound | RouteNotFound | MultipartNotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            DatabaseUnavailable(_) | StoreUnavailable(_) | AuthUnavailable | RetryLater => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) => "malformed-json",
            InvalidBody(_) => "invalid-body",
            UnsupportedMediaType => "unsupported-media-type",
            BodyTooLarge => "body-too-large",
            MissingField(_) => "missing-field",
            InvalidFileName(_) => "invalid-file-name",
            InvalidContentType => "invalid-content-type",
            ContentTypeNotAllowed(_) => "content-type-not-allowed",
            FileTooLarge { .. } => "file-too-large",
            InvalidUserId => "invalid-user-id",
            InvalidChecksum(_) => "invalid-checksum",
            MultipartNotFound(_) => "multipart-not-found",
            UseMultipart(_) => "use-multipart",
            ChecksumUnsupported(_) => "checksum-unsupported",
            QuotaExceeded(_) => "quota-exceeded",
            InvalidQuery(_) => "invalid-query",
            MissingToken => "missing-token",
            InvalidToken(TokenError::Expired) => "token-expired",
            InvalidToken(_) => "invalid-token",
            AuthUnavailable => "auth-unavailable",
            InvalidSignature => "invalid-signature",
            RetryLater => "retry-later",
            UploadNotIssued => "upload-not-issued",
            UploadExpired => "upload-expired",
            UploadNotFound => "upload-not-found",
            ObjectTooLarge { .. } => "object-too-large",
            ObjectTypeNotAllowed(_) => "object-type-not-allowed",
            InvalidParts(_) => "invalid-parts",
            KeyTaken => "key-taken",
            UploadDeleted => "upload-deleted",
            ObjectChanged => "object-changed",
            RateLimited { .. } => "rate-limited",
            HostNotAllowed => "host-not-allowed",
            FileNotFound => "file-not-found",
            RouteNotFound => "not-found",
            MethodNotAllowed => "method-not-allowed",
            DatabaseUnavailable(_) => "database-unavailable",
            StoreUnavailable(_) => "store-unavailable",
            Internal(_) => "internal-error",
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => Self::DatabaseUnavailable(e),
            other => Self::Internal(error_chain(&other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e),
            StoreError::Refused(_) => Self::Internal(error_chain(&e)),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::MalformedType => Self::InvalidContentType,
            PolicyError::TypeNotAllowed(t) => Self::ContentTypeNotAllowed(t),
            PolicyError::TooLarge { limit } => Self::FileTooLarge { limit },
        }
    }
}

/// The one place where the upload service's refusals become statuses and codes.
impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        use UploadError as U;
        match e {
            U::InvalidFileName(e) => Self::InvalidFileName(e.to_string()),
            U::Policy(e) => e.into(),
            U::NotIssued => Self::UploadNotIssued,
            U::Expired => Self::UploadExpired,
            U::NotUploaded => Self::UploadNotFound,
            U::ObjectTooLarge { limit } => Self::ObjectTooLarge { limit },
            U::ObjectTypeNotAllowed(t) => Self::ObjectTypeNotAllowed(t),
            U::InvalidMultipart(message) => Self::InvalidBody(message),
            U::InvalidParts(message) => Self::InvalidParts(message),
            U::Checksum(e @ ChecksumError::Malformed { .. }) => Self::InvalidChecksum(e.to_string()),
            U::Checksum(e @ ChecksumError::Unsupported) => Self::ChecksumUnsupported(e.to_string()),
            U::SizeRequired => Self::MissingField("size"),
            e @ (U::QuotaExceeded(_) | U::ObjectOverQuota(_)) => Self::QuotaExceeded(e.to_string()),
            e @ U::MultipartGone => Self::MultipartNotFound(e.to_string()),
            e @ U::UseMultipart => Self::UseMultipart(e.to_string()),
            U::FileNotFound => Self::FileNotFound,
            U::KeyTaken => Self::KeyTaken,
            U::Deleted => Self::UploadDeleted,
            U::ObjectChanged => Self::ObjectChanged,
            U::Database(e) => e.into(),
            U::Store(e) => e.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::InvalidSignature => Self::InvalidSignature,
            WebhookError::InvalidBody(reason) => Self::InvalidBody(format!("not a B2 event batch: {reason}")),
            WebhookError::RetryLater => Self::RetryLater,
            WebhookError::Database(e) => e.into(),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::KeysUnavailable => Self::AuthUnavailable,
            other => Self::InvalidToken(other),
        }
    }
}

/// The stable code of an error response, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::DatabaseUnavailable(cause) => {
                tracing::warn!(code = self.code(), cause = %cause, "dependency unavailable")
            }
            Self::StoreUnavailable(cause) => {
                tracing::warn!(code = self.code(), cause = %cause, "dependency unavailable")
            }
            Self::Internal(cause) => {
                tracing::error!(code = self.code(), cause = %cause, "request failed")
            }
            _ => tracing::debug!(code = self.code(), "client error"),
        }
        let body = json!({ "success": false, "error": self.to_string(), "code": self.code() });
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        // RFC 6750: say how to authenticate, and why a token was refused.
        let challenge = match &self {
            Self::MissingToken => Some("Bearer realm=\"ferry\"".to_owned()),
            Self::InvalidToken(e) => {
                Some(format!("Bearer realm=\"ferry\", error=\"invalid_token\", error_description=\"{e}\""))
            }
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| c.parse().ok()) {
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, value);
        }
        if let Self::RateLimited { retry_after } = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, (*retry_after).into());
        }
        response
    }
}
