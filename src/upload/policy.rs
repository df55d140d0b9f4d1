//! What may be uploaded: size limit and allowed content types.

/// Longest accepted `contentType`, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("contentType must look like type/subtype, for example image/png")]
    MalformedType,
    #[error("files of type {0} are not allowed here")]
    TypeNotAllowed(String),
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The upload rules of one Ferry instance.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    pub max_file_size: u64,
    /// Lower-case `type/subtype` or `type/*`; empty allows every well-formed type.
    allowed: Vec<String>,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// The lower-case `type/subtype` of a content type, if it is well formed.
pub fn essence(content_type: &str) -> Option<String> {
    if content_type.len() > MAX_CONTENT_TYPE_LEN || content_type.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    let (ty, sub) = mime.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    for param in parts {
        let (k, v) = param.trim().split_once('=')?;
        if !is_token(k) || v.is_empty() {
            return None;
        }
    }
    Some(mime.to_ascii_lowercase())
}

impl UploadPolicy {
    pub fn new(max_file_size: u64, allowed: &[String]) -> Self {
        Self { max_file_size, allowed: allowed.iter().map(|a| a.trim().to_ascii_lowercase()).collect() }
    }

    /// Checks a content type against the allowed list; returns its essence.
    pub fn check_type(&self, content_type: &str) -> Result<String, PolicyError> {
        let mime = essence(content_type).ok_or(PolicyError::MalformedType)?;
        let allowed = self.allowed.is_empty()
            || self.allowed.iter().any(|pattern| match pattern.strip_suffix("/*") {
                Some(prefix) => mime.split_once('/').is_some_and(|(ty, _)| ty == prefix),
                None => pattern == "*/*" || *pattern == mime,
            });
        if allowed { Ok(mime) } else { Err(PolicyError::TypeNotAllowed(mime)) }
    }

    /// The allowed patterns, as configured (empty: any type).
    pub fn allowed_patterns(&self) -> &[String] {
        &self.allowed
    }

    pub fn check_size(&self, size: u64) -> Result<(), PolicyError> {
        if size > self.max_file_size {
            return Err(PolicyError::TooLarge { limit: self.max_file_size });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_types_pass_and_absurd_ones_do_not() {
        let any = UploadPolicy::new(10, &[]);
        assert_eq!(any.check_type("image/png").unwrap(), "image/png");
        assert_eq!(any.check_type("Text/Plain; charset=utf-8").unwrap(), "text/plain");
        for bad in ["png", "image/", "/png", "image/png\r\nX-Evil: 1", "a b/c", &"a/".repeat(200)] {
            assert_eq!(any.check_type(bad), Err(PolicyError::MalformedType), "{bad:?}");
        }
    }

    #[test]
    fn patterns_allow_families_and_exact_types() {
        let policy = UploadPolicy::new(10, &["image/*".into(), "application/pdf".into()]);
        assert!(policy.check_type("image/webp").is_ok());
        assert!(policy.check_type("application/pdf").is_ok());
        assert!(matches!(policy.check_type("text/html"), Err(PolicyError::TypeNotAllowed(_))));
    }

    #[test]
    fn size_limit_is_inclusive() {
        let policy = UploadPolicy::new(10, &[]);
        assert!(policy.check_size(10).is_ok());
        assert!(policy.check_size(11).is_err());
    }
}
