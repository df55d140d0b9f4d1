//! What the store adjusts around `s3s`, where S3 behaves in ways `s3s` 0.14 does not:
//!
//! - a presigned URL may not be valid for more than a week (`X-Amz-Expires` ≤ 604800);
//! - SigV4 allows the `Date` header in place of `X-Amz-Date` (some clients, and curl's
//!   `--aws-sigv4`, send only `Date`), which `s3s` refuses as a missing header;
//! - every answer carries `x-amz-request-id`, and every error body its `<RequestId>`, so that a
//!   user's report can be matched with the store's log.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method};

/// The longest a presigned URL may stay valid on S3 (seven days): `s3s` checks a URL's
/// expiry but not this bound, so a URL signed for a year would otherwise work for a year.
const MAX_PRESIGNED_EXPIRY: u64 = 604_800;

/// Error bodies are a few hundred bytes; anything larger is left as it is.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What the store refuses before `s3s` sees the request, answered as S3 answers it.
pub(super) fn refuse_before_s3s(req: &axum::extract::Request) -> Option<s3s::HttpResponse> {
    let query = req.uri().query()?;
    let expires = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "X-Amz-Expires")?.1;
    if expires.parse::<u64>().is_ok_and(|seconds| seconds <= MAX_PRESIGNED_EXPIRY) {
        return None;
    }
    let err = s3s::S3Error::with_message(
        s3s::S3ErrorCode::AuthorizationQueryParametersError,
        "X-Amz-Expires must be less than a week (in seconds) that is 604800",
    );
    err.to_http_response().ok()
}

/// A SigV4 header-signed request dated only by `Date`: gives it the `X-Amz-Date` that `s3s`
/// reads. The signature is unaffected: only the headers it names are canonicalised, and the
/// string it signs holds the same instant either way.
pub(super) fn date_as_amz_date(headers: &mut HeaderMap) {
    let sigv4 = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !sigv4 || headers.contains_key("x-amz-date") {
        return;
    }
    let Some(date) = headers.get(http::header::DATE).and_then(|v| v.to_str().ok()) else { return };
    let Ok(date) = chrono::DateTime::parse_from_rfc2822(date) else { return };
    let amz = date.with_timezone(&chrono::Utc).format("%Y%m%dT%H%M%SZ").to_string();
    if let Ok(value) = HeaderValue::from_str(&amz) {
        headers.insert("x-amz-date", value);
    }
}

/// A fresh request id, in S3's shape (16 upper-case hex digits).
pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase()
}

/// Adds the request id to the answer's headers and, for an S3 error body, inside it.
pub(super) async fn with_request_id(response: Response, method: &Method, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(id) {
        parts.headers.insert("x-amz-request-id", value);
    }
    let is_xml = parts.headers.get(http::header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().ends_with(b"xml"));
    if !parts.status.is_client_error() && !parts.status.is_server_error() || method == Method::HEAD || !is_xml {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        // Too large or cut off: not one of `s3s`'s error bodies.
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let Some(end) = text.rfind("</Error>").filter(|_| !text.contains("<RequestId>")) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let body = format!("{}<RequestId>{id}</RequestId>{}", &text[..end], &text[end..]);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_header_stands_for_x_amz_date_on_sigv4_requests_only() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::DATE, HeaderValue::from_static("Sat, 28 Nov 2026 15:22:21 GMT"));
        date_as_amz_date(&mut headers);
        assert!(!headers.contains_key("x-amz-date"), "not a SigV4 request");
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=k"));
        date_as_amz_date(&mut headers);
        assert_eq!(headers["x-amz-date"], "20261128T152221Z");
        headers.insert("x-amz-date", HeaderValue::from_static("20250101T000000Z"));
        date_as_amz_date(&mut headers);
        assert_eq!(headers["x-amz-date"], "20250101T000000Z", "an X-Amz-Date present wins");
    }

    #[tokio::test]
    async fn error_bodies_get_the_request_id_and_other_answers_only_the_header() {
        let error = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code></Error>";
        let response = Response::builder()
            .status(404)
            .header("content-type", "application/xml")
            .header("content-length", error.len())
            .body(Body::from(error))
            .unwrap();
        let answered = with_request_id(response, &Method::GET, "ABC").await;
        assert_eq!(answered.headers()["x-amz-request-id"], "ABC");
        assert!(answered.headers().get("content-length").is_none());
        let body = axum::body::to_bytes(answered.into_body(), 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).ends_with("<Code>NoSuchKey</Code><RequestId>ABC</RequestId></Error>"));

        let ok = Response::builder().header("content-type", "application/xml").body(Body::from("<a/>")).unwrap();
        let answered = with_request_id(ok, &Method::GET, "ABC").await;
        assert_eq!(answered.headers()["x-amz-request-id"], "ABC");
        assert_eq!(axum::body::to_bytes(answered.into_body(), 1024).await.unwrap().as_ref(), b"<a/>");
    }
}
