//! Backblaze B2 event notifications: uploads are confirmed even when the client never comes
//! back to call `/save-b2-metadata`.
//!
//! B2 signs each request body with HMAC-SHA256 under the rule's signing secret and sends
//! `x-bz-event-notification-signature: v1=<hex>`. Ferry checks it in constant time, then
//! confirms each `b2:ObjectCreated:*` event exactly as a client confirm would (HEAD included),
//! for the user the key was issued to.

pub mod pending;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::Secret;

pub use pending::PendingRecorder;

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

/// Whether `header` carries a valid `v1=` signature of `body` (several may be listed, comma
/// separated, while a secret is being rotated).
pub fn signature_is_valid(secret: &Secret, header: &str, body: &[u8]) -> bool {
    header.split(',').filter_map(|part| part.trim().strip_prefix("v1=")).any(|hex_sig| {
        let Ok(claimed) = hex::decode(hex_sig) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
        mac.update(body);
        // Constant-time comparison.
        mac.verify_slice(&claimed).is_ok()
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
}
