//! Upload tickets: the object key itself proves who it was issued to and until when.
//!
//! A key is `<uuid>-<cleaned name>`. The UUID (version 8, "custom") carries the ticket:
//! a 32-bit expiry (Unix seconds), a 33-bit random nonce, one bit saying whether the key holds
//! a reservation (a quota share or declared digests, see [`crate::upload::Uploads`]), and a
//! 56-bit HMAC-SHA256 tag over the user, the expiry, the nonce, the bit and the name. The bit
//! lets a confirm skip the reservation's table when there is none: the common confirm is then
//! one insert. (Keys issued before the bit existed carry a random bit there: during an upgrade,
//! an upload with declared digests and no quota may be recorded without its digests.)
//! Presigning therefore writes nothing, and a confirm checks ownership and expiry without a
//! database round trip. Cleanup finds orphans by
//! listing the bucket: every Ferry key says when it stops being confirmable.
//!
//! The same key also signs [`Grant`]s: capabilities to complete or abort one multipart upload,
//! carried in a URL Ferry hands to a client that sends its own S3 requests (Uppy's
//! `signRequest` mode), so that the last step of such an upload comes back to Ferry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

const UUID_TEXT_LEN: usize = 36;
const TAG_BYTES: usize = 7;
/// Where the reservation bit is: the lowest bit of the nonce's first byte (byte 4, which the
/// UUID's version and variant bits do not touch).
const RESERVED_BYTE: usize = 4;
const RESERVED_BIT: u8 = 0x01;

/// Now, in the Unix seconds tickets are written in.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs and verifies upload tickets. Cheap to clone.
#[derive(Clone)]
pub struct TicketSigner {
    mac: HmacSha256,
}

/// What a valid key says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Unix seconds after which the upload URL no longer works.
    pub expires_at: u32,
    /// The cleaned file name part of the key.
    pub file_name: String,
    /// Whether the key was issued with a reservation (which its confirm must release).
    pub reserved: bool,
}

/// What a [`Grant`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantAction {
    Complete,
    Abort,
}

/// A capability to complete or abort one multipart upload, for one user, until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub action: GrantAction,
    pub user: String,
    pub key: String,
    pub upload_id: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// Grant tags are truncated to 128 bits.
const GRANT_TAG_BYTES: usize = 16;
/// Tickets feed a big-endian length first, whose first byte is 0 for any user id Ferry accepts:
/// grants start with 0xff, so no ticket input is ever a grant input.
const GRANT_DOMAIN: &[u8] = b"\xffgrant v1\0";

/// Why a key is not a ticket issued to this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the key was not issued by Ferry")]
    Malformed,
    #[error("the key was not issued to this user")]
    NotIssued,
}

impl TicketSigner {
    pub fn new(secret: &Secret) -> Self {
        // Domain separation: the same secret may serve other purposes.
        let mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
        let mut mac_outer = mac;
        mac_outer.update(b"ferry upload ticket v1\0");
        Self { mac: mac_outer }
    }

    /// Issues a key for `user`, valid until `expires_at` (Unix seconds), without a reservation.
    pub fn issue(&self, user: &str, file_name: &str, expires_at: u32) -> String {
        self.issue_for(user, file_name, expires_at, false)
    }

    /// Issues a key for `user`, valid until `expires_at` (Unix seconds), saying whether it holds
    /// a reservation.
    pub fn issue_for(&self, user: &str, file_name: &str, expires_at: u32, reserved: bool) -> String {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes[4..9]);
        bytes[..4].copy_from_slice(&expires_at.to_be_bytes());
        bytes[RESERVED_BYTE] = (bytes[RESERVED_BYTE] & !RESERVED_BIT) | if reserved { RESERVED_BIT } else { 0 };
        // Fix the version and variant bits before signing, so the tag covers what is sent.
        let mut bytes = *uuid::Builder::from_custom_bytes(bytes).as_uuid().as_bytes();
        let tag = self.tag(user, &bytes[..9], file_name);
        bytes[9..].copy_from_slice(&tag);
        format!("{}-{file_name}", Uuid::from_bytes(bytes).hyphenated())
    }

    /// Parses a key without checking whose it is (used by cleanup, which has no user).
    pub fn parse(key: &str) -> Result<(Uuid, Ticket), TicketError> {
        let (head, name) = split_key(key).ok_or(TicketError::Malformed)?;
        let uuid = Uuid::try_parse(head).map_err(|_| TicketError::Malformed)?;
        // Only the spelling Ferry issues: lower-case and hyphenated. Another spelling of the same
        // UUID (upper case, braces, no hyphens) names another object, so it must not verify.
        let mut canonical = Uuid::encode_buffer();
        if uuid.get_version_num() != 8 || uuid.hyphenated().encode_lower(&mut canonical) != head {
            return Err(TicketError::Malformed);
        }
        let b = uuid.as_bytes();
        let expires_at = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let reserved = b[RESERVED_BYTE] & RESERVED_BIT != 0;
        Ok((uuid, Ticket { expires_at, file_name: name.to_owned(), reserved }))
    }

    /// Checks that `key` was issued to `user` by this signer.
    pub fn verify(&self, user: &str, key: &str) -> Result<Ticket, TicketError> {
        let (uuid, ticket) = Self::parse(key)?;
        let b = uuid.as_bytes();
        let mut mac = self.mac.clone();
        feed(&mut mac, user, &b[..9], &ticket.file_name);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&b[9..]).map_err(|_| TicketError::NotIssued)?;
        Ok(ticket)
    }

    /// Signs a grant: `<base64url JSON>.<base64url tag>`, safe in a URL query.
    pub fn sign_grant(&self, grant: &Grant) -> String {
        let payload = serde_json::to_vec(grant).expect("a grant serializes");
        let mut mac = self.mac.clone();
        mac.update(GRANT_DOMAIN);
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&tag[..GRANT_TAG_BYTES]))
    }

    /// The grant in `token`, if this signer made it (whatever its age: the caller checks that).
    pub fn verify_grant(&self, token: &str) -> Result<Grant, TicketError> {
        let (payload, tag) = token.split_once('.').ok_or(TicketError::Malformed)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TicketError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TicketError::Malformed)?;
        if tag.len() != GRANT_TAG_BYTES {
            return Err(TicketError::Malformed);
        }
        let mut mac = self.mac.clone();
        mac.update(GRANT_DOMAIN);
        mac.update(&payload);
        mac.verify_truncated_left(&tag).map_err(|_| TicketError::NotIssued)?;
        serde_json::from_slice(&payload).map_err(|_| TicketError::Malformed)
    }

    fn tag(&self, user: &str, head: &[u8], file_name: &str) -> [u8; TAG_BYTES] {
        let mut mac = self.mac.clone();
        feed(&mut mac, user, head, file_name);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }
}

fn feed(mac: &mut HmacSha256, user: &str, head: &[u8], file_name: &str) {
    // Length prefixes keep (user, name) pairs unambiguous.
    mac.update(&(user.len() as u64).to_be_bytes());
    mac.update(user.as_bytes());
    mac.update(head);
    mac.update(file_name.as_bytes());
}

fn split_key(key: &str) -> Option<(&str, &str)> {
    if key.len() < UUID_TEXT_LEN + 2 || !key.is_char_boundary(UUID_TEXT_LEN) {
        return None;
    }
    let (head, rest) = key.split_at(UUID_TEXT_LEN);
    let name = rest.strip_prefix('-')?;
    Some((head, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TicketSigner {
        TicketSigner::new(&Secret::new("test secret"))
    }

    #[test]
    fn an_issued_key_verifies_for_its_user_only() {
        let key = signer().issue("alice", "cat.png", 1_900_000_000);
        assert!(key.ends_with("-cat.png"));
        let ticket = signer().verify("alice", &key).unwrap();
        assert_eq!(ticket.expires_at, 1_900_000_000);
        assert_eq!(ticket.file_name, "cat.png");
        assert_eq!(signer().verify("bob", &key), Err(TicketError::NotIssued));
    }

    #[test]
    fn forged_and_altered_keys_are_refused() {
        let key = signer().issue("alice", "cat.png", 1_900_000_000);
        let renamed = key.replace("cat.png", "dog.png");
        assert_eq!(signer().verify("alice", &renamed), Err(TicketError::NotIssued));
        let v4 = format!("{}-cat.png", Uuid::new_v4());
        assert_eq!(signer().verify("alice", &v4), Err(TicketError::Malformed));
        assert_eq!(signer().verify("alice", "../../etc/passwd"), Err(TicketError::Malformed));
        let other = TicketSigner::new(&Secret::new("other secret"));
        assert_eq!(other.verify("alice", &key), Err(TicketError::NotIssued));
    }

    #[test]
    fn only_the_issued_spelling_of_a_key_verifies() {
        let key = signer().issue("alice", "cat.png", 1_900_000_000);
        let (head, name) = key.split_at(UUID_TEXT_LEN);
        let upper = format!("{}{name}", head.to_ascii_uppercase());
        assert_eq!(signer().verify("alice", &upper), Err(TicketError::Malformed));
        assert!(signer().verify("alice", &key).is_ok());
    }

    fn grant(action: GrantAction) -> Grant {
        Grant { action, user: "alice".into(), key: "k".into(), upload_id: "u".into(), expires_at: 1_900_000_000 }
    }

    #[test]
    fn a_grant_verifies_as_signed_and_not_once_altered() {
        let token = signer().sign_grant(&grant(GrantAction::Complete));
        assert_eq!(signer().verify_grant(&token), Ok(grant(GrantAction::Complete)));
        // Another action, user or upload under the same tag is refused.
        let (_, tag) = token.split_once('.').unwrap();
        for altered in [grant(GrantAction::Abort), Grant { user: "bob".into(), ..grant(GrantAction::Complete) }] {
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&altered).unwrap());
            assert_eq!(signer().verify_grant(&format!("{payload}.{tag}")), Err(TicketError::NotIssued));
        }
        let other = TicketSigner::new(&Secret::new("other secret"));
        assert_eq!(other.verify_grant(&token), Err(TicketError::NotIssued));
        assert_eq!(signer().verify_grant("no-dot"), Err(TicketError::Malformed));
    }

    #[test]
    fn a_key_says_whether_it_holds_a_reservation_and_the_tag_covers_it() {
        for reserved in [false, true] {
            let key = signer().issue_for("alice", "cat.png", 1_900_000_000, reserved);
            assert_eq!(signer().verify("alice", &key).unwrap().reserved, reserved);
        }
        let key = signer().issue_for("alice", "cat.png", 1_900_000_000, true);
        let (head, name) = key.split_at(UUID_TEXT_LEN);
        let mut bytes = *Uuid::try_parse(head).unwrap().as_bytes();
        bytes[RESERVED_BYTE] ^= RESERVED_BIT;
        let flipped = format!("{}{name}", Uuid::from_bytes(bytes).hyphenated());
        assert_eq!(signer().verify("alice", &flipped), Err(TicketError::NotIssued));
    }

    #[test]
    fn two_keys_for_the_same_name_differ() {
        let a = signer().issue("alice", "x", 1);
        let b = signer().issue("alice", "x", 1);
        assert_ne!(a, b);
    }
}
