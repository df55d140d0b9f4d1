//! Who is calling.
//!
//! With `FERRY_JWT_SECRET` or `FERRY_JWKS_URL` set, every API call needs
//! `Authorization: Bearer <JWT>` and the caller is the token's `sub`. With neither, Ferry runs in
//! dev mode: the caller is the `X-User-Id` header or the guide's placeholder `user_123`.

pub mod jwt;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Map, Value};

pub use jwt::{Claims, JwtSettings, JwtVerifier, TokenError};

use crate::api::ApiError;
use crate::app::AppState;

/// The guide's placeholder user.
pub const DEV_USER: &str = "user_123";
const MAX_USER_ID_LEN: usize = 255;

/// How callers are identified.
#[derive(Clone)]
pub enum AuthMode {
    /// No identity provider: trust `X-User-Id` (loopback only unless explicitly allowed).
    Dev,
    /// Verified JWTs.
    Jwt(Arc<JwtVerifier>),
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    /// The verified claims (in dev mode, just `sub`): what Postgres sees as `request.jwt.claims`.
    pub claims: Map<String, Value>,
}

impl Caller {
    /// A caller known only by id (dev mode, tests): its claims are just `sub`.
    pub fn from_user_id(user_id: impl Into<String>) -> Self {
        let user_id = user_id.into();
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(user_id.clone()));
        Self { user_id, claims }
    }
}

fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID_LEN && !id.chars().any(char::is_control)
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
                let claims = verifier.verify(bearer(parts)?).await.map_err(|e| match e {
                    TokenError::KeysUnavailable => ApiError::AuthUnavailable,
                    other => ApiError::InvalidToken(other),
                })?;
                Self { user_id: claims.sub, claims: claims.all }
            }
        };
        if !valid_user_id(&caller.user_id) {
            return Err(ApiError::InvalidUserId);
        }
        Ok(caller)
    }
}
