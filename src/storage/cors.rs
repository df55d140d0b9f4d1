//! CORS rules for a real bucket: browsers PUT, GET and HEAD straight to it from your origins.
//!
//! `ferry bucket cors` applies them with S3's PutBucketCors (Backblaze B2 accepts it), or prints
//! them as S3 XML and as B2's native `corsRules` JSON for the B2 web console.

use std::time::Duration;

use base64::Engine as _;
use s3s::crypto::Checksum as _;
use serde_json::json;

use super::StoreError;
use crate::config::S3Config;

/// B2's ceiling for `maxAgeSeconds`.
pub const MAX_AGE_LIMIT: u32 = 86_400;

#[derive(Debug, Clone)]
pub struct CorsRules {
    pub origins: Vec<String>,
    pub max_age: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorsError {
    #[error("give at least one --origin")]
    NoOrigin,
    #[error("{0:?} is not an origin like https://app.example (scheme and host, no path)")]
    BadOrigin(String),
    #[error("--max-age must be between 0 and {MAX_AGE_LIMIT} seconds (B2's limit)")]
    MaxAge,
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl CorsRules {
    pub fn new(origins: Vec<String>, max_age: u32) -> Result<Self, CorsError> {
        if origins.is_empty() {
            return Err(CorsError::NoOrigin);
        }
        for origin in &origins {
            let ok = origin == "*"
                || url::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.path() == "/"
                        && !origin.ends_with('/')
                });
            if !ok {
                return Err(CorsError::BadOrigin(origin.clone()));
            }
        }
        if max_age > MAX_AGE_LIMIT {
            return Err(CorsError::MaxAge);
        }
        Ok(Self { origins, max_age })
    }

    /// The rules as S3's `CORSConfiguration` XML.
    pub fn s3_xml(&self) -> String {
        let origins: String =
            self.origins.iter().map(|o| format!("<AllowedOrigin>{}</AllowedOrigin>", xml_escape(o))).collect();
        format!(
            "<CORSConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><CORSRule>{origins}\
             <AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>\
             <AllowedHeader>content-type</AllowedHeader><ExposeHeader>ETag</ExposeHeader>\
             <MaxAgeSeconds>{}</MaxAgeSeconds></CORSRule></CORSConfiguration>",
            self.max_age
        )
    }

    /// The rules as B2's native `corsRules` (for the B2 web console or `b2_update_bucket`).
    pub fn b2_rules(&self) -> serde_json::Value {
        json!([{
            "corsRuleName": "ferryDirectUploads",
            "allowedOrigins": self.origins,
            "allowedOperations": ["s3_put", "s3_get", "s3_head"],
            "allowedHeaders": ["content-type"],
            "exposeHeaders": ["etag"],
            "maxAgeSeconds": self.max_age,
        }])
    }

    /// Applies the rules to the bucket with PutBucketCors.
    pub async fn apply(&self, cfg: &S3Config) -> Result<(), StoreError> {
        let body = self.s3_xml();
        let md5 = base64::engine::general_purpose::STANDARD.encode(s3s::crypto::Md5::checksum(body.as_bytes()));
        let bucket = rusty_s3::Bucket::new(
            cfg.endpoint.clone(),
            rusty_s3::UrlStyle::Path,
            cfg.bucket.clone(),
            cfg.region.clone(),
        )
        .map_err(|e| StoreError::Refused(format!("invalid bucket settings: {e}")))?;
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Put,
            bucket.base_url().clone(),
            &cfg.access_key_id,
            cfg.secret_access_key.expose(),
            None,
            &cfg.region,
            60,
            std::iter::once(("cors", "")),
            std::iter::once(("content-md5", md5.as_str())),
        );
        let response = reqwest::Client::new()
            .put(url)
            .header("content-md5", &md5)
            .header("content-type", "application/xml")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("PutBucketCors: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(StoreError::Refused(format!("PutBucketCors answered {status}: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_like_b2_does() {
        assert_eq!(CorsRules::new(vec![], 10).unwrap_err(), CorsError::NoOrigin);
        for bad in ["", "app.example", "https://app.example/path", "https://app.example/", "ftp://x"] {
            assert!(matches!(CorsRules::new(vec![bad.into()], 10), Err(CorsError::BadOrigin(_))), "{bad}");
        }
        assert_eq!(CorsRules::new(vec!["https://a.example".into()], 86_401).unwrap_err(), CorsError::MaxAge);
        assert!(CorsRules::new(vec!["http://localhost:3000".into(), "*".into()], 0).is_ok());
    }

    #[test]
    fn both_formats_name_the_same_rules() {
        let rules = CorsRules::new(vec!["https://app.example".into()], 3600).unwrap();
        let xml = rules.s3_xml();
        assert!(xml.contains("<AllowedOrigin>https://app.example</AllowedOrigin>"));
        assert!(
            xml.contains("<AllowedMethod>PUT</AllowedMethod>") && xml.contains("<ExposeHeader>ETag</ExposeHeader>")
        );
        let b2 = rules.b2_rules();
        assert_eq!(b2[0]["allowedOrigins"][0], "https://app.example");
        assert_eq!(b2[0]["allowedOperations"], serde_json::json!(["s3_put", "s3_get", "s3_head"]));
        assert_eq!(b2[0]["maxAgeSeconds"], 3600);
    }
}
