//! Who is calling: a plain type, with no HTTP in it.
//!
//! The HTTP edge turns a request into a [`Caller`] (see `api::extract`); everything below it
//! (the upload service, the database's row-level security) only ever sees this type.

use serde_json::{Map, Value};

/// The guide's placeholder user, used in dev mode when no `X-User-Id` is sent.
pub const DEV_USER: &str = "user_123";
/// Longest accepted user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub user_id: String,
    /// The verified claims (in dev mode, just `sub`): what Postgres sees as `request.jwt.claims`.
    pub claims: Map<String, Value>,
}

impl Caller {
    /// A caller known only by id (dev mode, webhooks, tests): its claims are just `sub`.
    pub fn from_user_id(user_id: impl Into<String>) -> Self {
        let user_id = user_id.into();
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(user_id.clone()));
        Self { user_id, claims }
    }
}

/// A user id Ferry accepts: 1 to 255 bytes, no control characters.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID_LEN && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_made_from_an_id_publishes_only_its_subject() {
        let caller = Caller::from_user_id("alice");
        assert_eq!(caller.claims.len(), 1);
        assert_eq!(caller.claims["sub"], "alice");
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(valid_user_id("user_123"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a\nb"));
        assert!(!valid_user_id(&"x".repeat(MAX_USER_ID_LEN + 1)));
    }
}
