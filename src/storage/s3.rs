//! The S3 client: `rusty-s3` signs (microseconds, no `x-amz-checksum-*` parameters that B2
//! rejects), `reqwest` carries the few calls Ferry makes itself.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, ListObjectsV2, ListParts, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use super::{
    ListPage, ListedObject, ObjectInfo, ObjectStore, PartInfo, PartRequest, PutRequest, StoreError, content_disposition,
};
use crate::config::S3Config;

/// How long the URLs Ferry signs for its own calls live.
const SELF_CALL_TTL: Duration = Duration::from_secs(60);

/// A bucket on any S3-compatible service (including Ferry's embedded store).
pub struct S3Store {
    /// Signs URLs for Ferry's own calls (internal endpoint).
    internal: Bucket,
    /// Signs URLs handed to browsers (public endpoint).
    public: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
    checksum_headers: bool,
}

impl S3Store {
    pub fn new(cfg: &S3Config) -> Result<Self, StoreError> {
        let bucket = |endpoint: &Url| {
            Bucket::new(endpoint.clone(), UrlStyle::Path, cfg.bucket.clone(), cfg.region.clone())
                .map_err(|e| StoreError::Refused(format!("invalid bucket settings: {e}")))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            internal: bucket(&cfg.endpoint)?,
            public: bucket(&cfg.public_endpoint)?,
            credentials: Credentials::new(cfg.access_key_id.clone(), cfg.secret_access_key.expose().to_owned()),
            http,
            checksum_headers: cfg.checksum_headers,
        })
    }

    /// A browser POST form for one object (for stores that take them: see `post.rs`).
    pub fn sign_post_form(&self, req: &super::PostRequest<'_>) -> super::PresignedPost {
        let mut url = self.public.base_url().clone();
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        super::post::sign_post(
            url,
            self.public.name(),
            self.public.region(),
            self.credentials.key(),
            self.credentials.secret(),
            req,
            chrono::Utc::now(),
        )
    }

    async fn send(&self, method: Method, url: Url) -> Result<reqwest::Response, StoreError> {
        let response =
            self.http.request(method, url).send().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
        if response.status().is_server_error() {
            return Err(StoreError::Unavailable(format!("store answered {}", response.status())));
        }
        Ok(response)
    }
}

/// A reqwest error without its URL: the URL holds a signature, which must never be logged.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name)?.to_str().ok().map(str::to_owned)
}

#[async_trait]
impl ObjectStore for S3Store {
    fn presign_put(&self, req: &PutRequest<'_>) -> Url {
        let mut action = self.public.put_object(Some(&self.credentials), req.key);
        if let Some(content_type) = req.content_type {
            action.headers_mut().insert("content-type", content_type.to_owned());
        }
        if let Some(length) = req.content_length {
            action.headers_mut().insert("content-length", length.to_string());
        }
        if let Some(md5) = req.content_md5 {
            action.headers_mut().insert("content-md5", md5.to_owned());
        }
        if let Some(sha256) = req.checksum_sha256.filter(|_| self.checksum_headers) {
            action.headers_mut().insert("x-amz-checksum-sha256", sha256.to_owned());
        }
        action.sign(req.ttl)
    }

    fn presign_get(&self, key: &str, download_name: Option<&str>, ttl: Duration) -> Url {
        let mut action = self.public.get_object(Some(&self.credentials), key);
        if let Some(name) = download_name {
            action.query_mut().insert("response-content-disposition", content_disposition(name));
        }
        action.sign(ttl)
    }

    fn public_url(&self, key: &str) -> Url {
        self.public.object_url(key)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let url = self.internal.head_object(Some(&self.credentials), key).sign(SELF_CALL_TTL);
        let response = self.send(Method::HEAD, url).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                let size = header(&response, "content-length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::Refused("HEAD without Content-Length".into()))?;
                Ok(Some(ObjectInfo {
                    size,
                    content_type: header(&response, "content-type"),
                    etag: header(&response, "etag").map(|e| e.trim_matches('"').to_owned()),
                }))
            }
            status => Err(StoreError::Refused(format!("HEAD answered {status}"))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self.internal.delete_object(Some(&self.credentials), key).sign(SELF_CALL_TTL);
        let response = self.send(Method::DELETE, url).await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            status => Err(StoreError::Refused(format!("DELETE answered {status}"))),
        }
    }

    async fn list(&self, continuation: Option<&str>) -> Result<ListPage, StoreError> {
        let mut action = ListObjectsV2::new(&self.internal, Some(&self.credentials));
        if let Some(token) = continuation {
            action.with_continuation_token(token.to_owned());
        }
        let url = action.sign(SELF_CALL_TTL);
        let response = self.send(Method::GET, url).await?;
        let status = response.status();
        let body = response.text().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
        if !status.is_success() {
            return Err(StoreError::Refused(format!("ListObjectsV2 answered {status}")));
        }
        let parsed = ListObjectsV2::parse_response(&body)
            .map_err(|e| StoreError::Refused(format!("unreadable listing: {e}")))?;
        Ok(ListPage {
            objects: parsed
                .contents
                .into_iter()
                .map(|o| ListedObject { key: o.key, size: o.size.unwrap_or(0) })
                .collect(),
            next: parsed.next_continuation_token,
        })
    }

    async fn health(&self) -> Result<(), StoreError> {
        let url = self.internal.head_bucket(Some(&self.credentials)).sign(SELF_CALL_TTL);
        let response = self.send(Method::HEAD, url).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(StoreError::Refused(format!("HEAD bucket answered {}", response.status())))
        }
    }

    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        let mut action = CreateMultipartUpload::new(&self.internal, Some(&self.credentials), key);
        action.headers_mut().insert("content-type", content_type.to_owned());
        let url = action.sign(SELF_CALL_TTL);
        let response = self
            .http
            .post(url)
            .header("content-type", content_type)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
        if !status.is_success() {
            return Err(refused_or_unavailable(status, "CreateMultipartUpload"));
        }
        let parsed = CreateMultipartUpload::parse_response(&body)
            .map_err(|e| StoreError::Refused(format!("unreadable CreateMultipartUpload answer: {e}")))?;
        Ok(parsed.upload_id().to_owned())
    }

    fn presign_part(&self, part: &PartRequest<'_>) -> Url {
        let mut action =
            UploadPart::new(&self.public, Some(&self.credentials), part.key, part.part_number, part.upload_id);
        if let Some(length) = part.content_length {
            action.headers_mut().insert("content-length", length.to_string());
        }
        if let Some(md5) = part.content_md5 {
            action.headers_mut().insert("content-md5", md5.to_owned());
        }
        action.sign(part.ttl)
    }

    fn checksum_headers(&self) -> bool {
        self.checksum_headers
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<PartInfo>>, StoreError> {
        let mut parts = Vec::new();
        let mut marker = None;
        // 10,000 parts at most, 1,000 a page: eleven pages always suffice.
        for _ in 0..11 {
            let mut action = ListParts::new(&self.internal, Some(&self.credentials), key, upload_id);
            if let Some(marker) = marker {
                action.set_part_number_marker(marker);
            }
            let response = self.send(Method::GET, action.sign(SELF_CALL_TTL)).await?;
            let status = response.status();
            let body = response.text().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(refused_or_unavailable(status, "ListParts"));
            }
            let page: ListPartsPage = quick_xml::de::from_str(&body)
                .map_err(|e| StoreError::Refused(format!("unreadable ListParts answer: {e}")))?;
            parts.extend(page.parts.into_iter().map(|p| PartInfo {
                number: p.number,
                etag: p.etag.trim_matches('"').to_owned(),
                size: p.size,
            }));
            match (page.is_truncated, page.next_part_number_marker) {
                (true, Some(next)) if next > 0 => marker = Some(next),
                (true, _) => return Err(StoreError::Refused("a truncated ListParts answer without a marker".into())),
                (false, _) => return Ok(Some(parts)),
            }
        }
        Err(StoreError::Refused("ListParts did not end after 10,000 parts".into()))
    }

    fn presign_create_multipart(&self, key: &str, ttl: Duration) -> Url {
        CreateMultipartUpload::new(&self.public, Some(&self.credentials), key).sign(ttl)
    }

    fn presign_list_parts(&self, key: &str, upload_id: &str, ttl: Duration) -> Url {
        ListParts::new(&self.public, Some(&self.credentials), key, upload_id).sign(ttl)
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), StoreError> {
        let action = CompleteMultipartUpload::new(
            &self.internal,
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SELF_CALL_TTL);
        let response =
            self.http.post(url).body(action.body()).send().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| StoreError::Unavailable(describe(&e)))?;
        if !status.is_success() {
            // 5xx (a full disk on the embedded store, an outage): worth a retry; 4xx: refused.
            return Err(refused_or_unavailable(status, "CompleteMultipartUpload"));
        }
        // S3 may answer 200 and still report an error in the body.
        if body.contains("<Error>") {
            let transient = ["InternalError", "SlowDown", "ServiceUnavailable"]
                .iter()
                .any(|code| body.contains(&format!("<Code>{code}</Code>")));
            let what = format!("CompleteMultipartUpload answered {status} with an error");
            return Err(if transient { StoreError::Unavailable(what) } else { StoreError::Refused(what) });
        }
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let url =
            AbortMultipartUpload::new(&self.internal, Some(&self.credentials), key, upload_id).sign(SELF_CALL_TTL);
        let response = self.send(Method::DELETE, url).await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            status => Err(StoreError::Refused(format!("AbortMultipartUpload answered {status}"))),
        }
    }
}

/// A page of a ListParts answer. Read by field names only: moto names the root element
/// `ListPartsResponse` where S3 says `ListPartsResult`.
#[derive(serde::Deserialize)]
struct ListPartsPage {
    #[serde(rename = "Part", default)]
    parts: Vec<ListedPart>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: bool,
    #[serde(rename = "NextPartNumberMarker")]
    next_part_number_marker: Option<u16>,
}

#[derive(serde::Deserialize)]
struct ListedPart {
    #[serde(rename = "PartNumber")]
    number: u16,
    #[serde(rename = "ETag")]
    etag: String,
    #[serde(rename = "Size")]
    size: u64,
}

fn refused_or_unavailable(status: StatusCode, what: &str) -> StoreError {
    if status.is_server_error() {
        StoreError::Unavailable(format!("{what} answered {status}"))
    } else {
        StoreError::Refused(format!("{what} answered {status}"))
    }
}
