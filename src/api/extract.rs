//! Extractors that do the boring checks, so handlers read like the story of the request:
//! JSON with Ferry's own rejections, and the authenticated [`Caller`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::{AuthMode, TokenError};
use crate::identity::{Caller, DEV_USER, valid_user_id};

/// `Json<T>` whose rejections use Ferry's error format and codes.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
                JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
                other => ApiError::MalformedJson(other.body_text()),
            }),
        }
    }
}

/// A required, non-blank string field of a request body.
pub fn required(value: Option<String>, field: &'static str) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::MissingField(field)),
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?
        .to_str()
        .map_err(|_| ApiError::InvalidToken(TokenError::Malformed))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken(TokenError::Malformed))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::InvalidToken(TokenError::Malformed));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = match &state.auth {
            AuthMode::Dev => {
                let user_id = match parts.headers.get("x-user-id") {
                    None => DEV_USER.to_owned(),
                    Some(value) => value.to_str().map_err(|_| ApiError::InvalidUserId)?.trim().to_owned(),
                };
                Self::from_user_id(user_id)
            }
            AuthMode::Jwt(verifier) => {
                // X-User-Id is ignored here: only the token says who the caller is.
                let claims = verifier.verify(bearer(parts)?).await?;
                Self { user_id: claims.sub, claims: claims.all }
            }
        };
        if !valid_user_id(&caller.user_id) {
            return Err(ApiError::InvalidUserId);
        }
        // The request's span (opened for every request in `api::router`, with its method and
        // route) carries the user from here on: every log line of the request names them.
        tracing::Span::current().record("user", caller.user_id.as_str());
        Ok(caller)
    }
}
