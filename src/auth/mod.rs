//! Verifying who is calling, without HTTP: the API's extractor (`api::extract`) reads the
//! headers and asks this module.
//!
//! With `FERRY_JWT_SECRET` or `FERRY_JWKS_URL` set, every API call needs
//! `Authorization: Bearer <JWT>` and the caller is the token's `sub`. With neither, Ferry runs in
//! dev mode: the caller is the `X-User-Id` header or the guide's placeholder `user_123`.

pub mod jwt;

use std::sync::Arc;

pub use jwt::{Claims, JwtVerifier, TokenError};

use crate::config::JwtSettings;

/// How callers are identified.
#[derive(Clone)]
pub enum AuthMode {
    /// No identity provider: trust `X-User-Id` (loopback only unless explicitly allowed).
    Dev,
    /// Verified JWTs.
    Jwt(Arc<JwtVerifier>),
}

impl AuthMode {
    /// JWT when settings are given, dev mode otherwise.
    pub fn new(settings: Option<&JwtSettings>) -> Self {
        match settings {
            Some(settings) => Self::Jwt(JwtVerifier::new(settings.clone())),
            None => Self::Dev,
        }
    }

    pub fn is_dev(&self) -> bool {
        matches!(self, Self::Dev)
    }
}
