//! Conditional requests, as S3 answers them: a write's `If-Match` / `If-None-Match` (412, or
//! 404 when there is nothing to match), and a read's four preconditions (412 or 304).

use s3s::dto::*;
use s3s::{S3Error, S3Result, s3_error};

use super::disk::ObjectMeta;

/// The conditions a write carries (`If-Match`, `If-None-Match`), checked against the object
/// the key holds: once early (to refuse before the body is read) and again under the key's
/// lock when committing (the check that counts).
#[derive(Debug, Clone, Default)]
pub(super) struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

impl Conditions {
    pub fn check(&self, current: Option<&ObjectMeta>) -> S3Result<()> {
        let matches = |condition: &ETagCondition, meta: &ObjectMeta| match condition {
            ETagCondition::Any => true,
            ETagCondition::ETag(etag) => etag.value().trim_matches('"') == meta.etag,
        };
        if let Some(condition) = &self.if_match {
            let Some(meta) = current else {
                return Err(s3_error!(NoSuchKey, "If-Match: there is no object to match"));
            };
            if !matches(condition, meta) {
                return Err(s3_error!(PreconditionFailed, "If-Match: the object's ETag differs"));
            }
        }
        if let (Some(condition), Some(meta)) = (&self.if_none_match, current)
            && matches(condition, meta)
        {
            return Err(s3_error!(PreconditionFailed, "If-None-Match: the object exists"));
        }
        Ok(())
    }
}

/// The preconditions of a GET or HEAD, checked as S3 (and RFC 9110 §13.2.2) orders them:
/// `If-Match` then (without it) `If-Unmodified-Since` fail with 412; `If-None-Match` then
/// (without it) `If-Modified-Since` answer 304. Dates compare at whole seconds, the precision
/// of `Last-Modified`.
#[derive(Debug, Default)]
pub(super) struct ReadConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

impl ReadConditions {
    pub fn check(&self, meta: &ObjectMeta) -> S3Result<()> {
        let modified = meta.last_modified.timestamp();
        let matches = |condition: &ETagCondition| match condition {
            ETagCondition::Any => true,
            ETagCondition::ETag(etag) => etag.value().trim_matches('"') == meta.etag,
        };
        if let Some(condition) = &self.if_match {
            if !matches(condition) {
                return Err(s3_error!(PreconditionFailed, "If-Match: the object's ETag differs"));
            }
        } else if let Some(since) = self.if_unmodified_since.as_ref().and_then(epoch_seconds)
            && modified > since
        {
            return Err(s3_error!(PreconditionFailed, "If-Unmodified-Since: the object changed since"));
        }
        if let Some(condition) = &self.if_none_match {
            if matches(condition) {
                return Err(not_modified(meta));
            }
        } else if let Some(since) = self.if_modified_since.as_ref().and_then(epoch_seconds)
            && modified <= since
        {
            return Err(not_modified(meta));
        }
        Ok(())
    }
}

/// A 304, which carries the object's ETag and Last-Modified as S3's does.
fn not_modified(meta: &ObjectMeta) -> S3Error {
    let mut err = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        headers.insert(http::header::ETAG, v);
    }
    let date = meta.last_modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = http::HeaderValue::from_str(&date) {
        headers.insert(http::header::LAST_MODIFIED, v);
    }
    err.set_headers(headers);
    err
}

/// A timestamp as whole seconds since the epoch (`s3s` keeps its own date type).
pub(super) fn epoch_seconds(ts: &Timestamp) -> Option<i64> {
    let mut text = Vec::new();
    ts.format(TimestampFormat::EpochSeconds, &mut text).ok()?;
    let text = String::from_utf8(text).ok()?;
    text.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size: 1,
            etag: etag.into(),
            content_type: None,
            content_disposition: None,
            last_modified: chrono::Utc::now(),
            blob: String::new(),
            sealed: false,
            headers: Default::default(),
            upload_id: None,
            part_sizes: Vec::new(),
            parted: false,
        }
    }

    #[test]
    fn write_conditions_follow_s3() {
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_owned());
        let existing = object("abc");
        let create_only = Conditions { if_none_match: Some(ETagCondition::Any), ..Default::default() };
        assert_eq!(code(create_only.check(Some(&existing))).as_deref(), Some("PreconditionFailed"));
        assert_eq!(code(create_only.check(None)), None);
        let if_match =
            |e: &str| Conditions { if_match: Some(ETagCondition::ETag(ETag::Strong(e.into()))), ..Default::default() };
        assert_eq!(code(if_match("abc").check(Some(&existing))), None);
        assert_eq!(code(if_match("other").check(Some(&existing))).as_deref(), Some("PreconditionFailed"));
        assert_eq!(code(if_match("abc").check(None)).as_deref(), Some("NoSuchKey"));
        assert_eq!(code(Conditions::default().check(Some(&existing))), None);
    }

    #[test]
    fn read_conditions_follow_rfc_9110s_order() {
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_owned());
        let meta = object("abc");
        let at = |offset: i64| {
            let t = meta.last_modified + chrono::Duration::seconds(offset);
            Some(Timestamp::from(std::time::SystemTime::from(t)))
        };
        let etag = |e: &str| Some(ETagCondition::ETag(ETag::Strong(e.into())));
        let read = |if_match, if_none_match, if_modified_since, if_unmodified_since| ReadConditions {
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
        };
        assert_eq!(code(read(etag("abc"), None, None, None).check(&meta)), None);
        assert_eq!(code(read(etag("x"), None, None, None).check(&meta)).as_deref(), Some("PreconditionFailed"));
        assert_eq!(code(read(None, None, None, at(-60)).check(&meta)).as_deref(), Some("PreconditionFailed"));
        assert_eq!(code(read(etag("abc"), None, None, at(-60)).check(&meta)), None, "If-Match wins");
        assert_eq!(code(read(None, etag("abc"), None, None).check(&meta)).as_deref(), Some("NotModified"));
        assert_eq!(code(read(None, Some(ETagCondition::Any), None, None).check(&meta)).as_deref(), Some("NotModified"));
        assert_eq!(code(read(None, None, at(60), None).check(&meta)).as_deref(), Some("NotModified"));
        assert_eq!(code(read(None, None, at(-60), None).check(&meta)), None);
        assert_eq!(code(read(None, etag("x"), at(60), None).check(&meta)), None, "If-None-Match wins");
        let not_modified = read(None, etag("abc"), None, None).check(&meta).unwrap_err();
        assert_eq!(not_modified.headers().unwrap()[http::header::ETAG], "\"abc\"");
    }
}
