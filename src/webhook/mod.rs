//! Backblaze B2 event notifications: uploads are confirmed even when the client never comes
//! back to call `/save-b2-metadata`.
//!
//! B2 signs each request body with HMAC-SHA256 under the rule's signing secret and sends
//! `x-bz-event-notification-signature: v1=<hex>`. Ferry checks it in constant time, then
//! confirms each `b2:ObjectCreated:*` event exactly as a client confirm would (HEAD included),
//! for the user the key was issued to.

mod events;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

pub use events::{B2Events, EventOutcome, EventStatus, WebhookError};

/// The header B2 signs with.
pub const SIGNATURE_HEADER: &str = "x-bz-event-notification-signature";

/// One notification batch, as B2 sends it.
#[derive(Debug, Deserialize)]
pub struct Batch {
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    #[serde(default)]
    pub bucket_name: Option<String>,
    #[serde(default)]
    pub object_name: Option<String>,
}

/// Longest signature header accepted: room for a few signatures during a secret rotation.
pub const MAX_SIGNATURE_HEADER: usize = 1024;
/// Most `v1=` values compared: B2 sends one, two while a secret is rotated.
pub const MAX_SIGNATURES: usize = 4;

/// Whether `header` carries a valid `v1=` signature of `body` (several may be listed, comma
/// separated, while a secret is being rotated). The body is hashed once, whatever the header
/// holds; at most [`MAX_SIGNATURES`] candidates are compared, each in constant time, and a
/// header longer than [`MAX_SIGNATURE_HEADER`] is refused unread.
pub fn signature_is_valid(secret: &Secret, header: &str, body: &[u8]) -> bool {
    if header.len() > MAX_SIGNATURE_HEADER {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(body);
    header.split(',').filter_map(|part| part.trim().strip_prefix("v1=")).take(MAX_SIGNATURES).any(|hex_sig| {
        let Ok(claimed) = hex::decode(hex_sig) else { return false };
        // Finishing a clone of the hashed state costs two blocks, not the body again.
        mac.clone().verify_slice(&claimed).is_ok()
    })
}

/// Signs a body the way B2 does (for tests and for people checking their set-up).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_signature_of_the_exact_body_verifies() {
        let secret = Secret::new("s3cr3t");
        let header = sign(&secret, b"{\"events\":[]}");
        assert!(signature_is_valid(&secret, &header, b"{\"events\":[]}"));
        assert!(!signature_is_valid(&secret, &header, b"{\"events\":[ ]}"));
        assert!(!signature_is_valid(&Secret::new("other"), &header, b"{\"events\":[]}"));
        assert!(signature_is_valid(&secret, &format!("v1=00, {header}"), b"{\"events\":[]}"));
        assert!(!signature_is_valid(&secret, "v1=zz", b""));
        assert!(!signature_is_valid(&secret, "", b""));
    }

    #[test]
    fn only_the_first_few_candidates_are_compared_and_long_headers_are_refused() {
        let secret = Secret::new("s3cr3t");
        let good = sign(&secret, b"body");
        let decoys = ["v1=00"; MAX_SIGNATURES].join(",");
        assert!(!signature_is_valid(&secret, &format!("{decoys},{good}"), b"body"));
        let padded = format!("{good},{}", "x".repeat(MAX_SIGNATURE_HEADER));
        assert!(!signature_is_valid(&secret, &padded, b"body"));
    }
}
