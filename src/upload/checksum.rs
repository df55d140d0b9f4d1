//! Digests a client declares for its bytes: checked for shape here, signed into the upload URL
//! by the store port, so the bucket itself refuses any other bytes.
//!
//! `Content-MD5` is the one every S3-compatible provider checks (B2 included); SHA-256 travels
//! as `x-amz-checksum-sha256`, which B2 refuses, so it is signed only for stores that take it.
//! Both are the base64 of the raw digest, as S3 wants them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("{field} must be the base64 of a {bytes}-byte digest")]
    Malformed { field: &'static str, bytes: usize },
    #[error("this bucket does not take SHA-256 checksums (send md5 instead)")]
    Unsupported,
}

fn check(field: &'static str, value: &str, bytes: usize) -> Result<(), ChecksumError> {
    match STANDARD.decode(value) {
        Ok(raw) if raw.len() == bytes => Ok(()),
        _ => Err(ChecksumError::Malformed { field, bytes }),
    }
}

/// An MD5 digest as `Content-MD5` carries it: base64 of 16 bytes.
pub fn check_md5(field: &'static str, value: &str) -> Result<(), ChecksumError> {
    check(field, value, 16)
}

/// A SHA-256 digest as `x-amz-checksum-sha256` carries it: base64 of 32 bytes.
pub fn check_sha256(field: &'static str, value: &str) -> Result<(), ChecksumError> {
    check(field, value, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_md5_is_the_base64_of_sixteen_bytes() {
        assert_eq!(check_md5("md5", "1B2M2Y8AsgTpgAmY7PhCfg=="), Ok(()));
        for bad in ["", "d41d8cd98f00b204e9800998ecf8427e", "1B2M2Y8AsgTpgAmY7PhCfg", "AAAA", "not base64!"] {
            assert_eq!(check_md5("md5", bad), Err(ChecksumError::Malformed { field: "md5", bytes: 16 }), "{bad:?}");
        }
    }

    #[test]
    fn a_sha256_is_the_base64_of_thirty_two_bytes() {
        assert_eq!(check_sha256("sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), Ok(()));
        assert!(check_sha256("sha256", "1B2M2Y8AsgTpgAmY7PhCfg==").is_err());
    }
}
