//! Who is calling. Until an identity provider is configured, Ferry runs in dev mode: the user
//! is the `X-User-Id` header or the guide's placeholder `user_123`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::api::ApiError;
use crate::app::AppState;

/// The guide's placeholder user.
pub const DEV_USER: &str = "user_123";
const MAX_USER_ID_LEN: usize = 255;

/// How callers are identified.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// No identity provider: trust `X-User-Id` (loopback only unless explicitly allowed).
    Dev,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
}

fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID_LEN && !id.chars().any(char::is_control)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match state.auth {
            AuthMode::Dev => {
                let user_id = match parts.headers.get("x-user-id") {
                    None => DEV_USER.to_owned(),
                    Some(value) => value
                        .to_str()
                        .map_err(|_| ApiError::InvalidUserId)?
                        .trim()
                        .to_owned(),
                };
                if !valid_user_id(&user_id) {
                    return Err(ApiError::InvalidUserId);
                }
                tracing::Span::current().record("user", user_id.as_str());
                Ok(Self { user_id })
            }
        }
    }
}
