//! Uppy's two server modes (see `upload::signing` for what Ferry allows and why).
//!
//! - Companion's routes under `/s3`, in Companion's own request and answer shapes, for
//!   `AwsS3({ companionEndpoint })`. Companion's requests carry no custom headers, so the caller
//!   is whoever dev mode (or a same-origin proxy adding `Authorization`) says.
//! - `POST /uppy/sign` for `AwsS3({ signRequest })`: the page's function sends Uppy's request
//!   with its token and gets a URL back. Completing and aborting come back to Ferry
//!   (`/uppy/complete`, `/uppy/abort`, authorized by the grant in their URL), in S3's XML.
//!
//! Errors are the API's JSON everywhere Uppy reads them as such; the two grant routes, which
//! Uppy treats as S3, answer S3 XML errors carrying the same stable code.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{ApiJson, required};
use super::{ApiError, AppState, file_view};
use crate::identity::Caller;
use crate::upload::{ClientRequest, GrantAction, Signed};

/// A completion of 10,000 parts, as S3 XML or Companion JSON, is well under 1 MiB.
const MAX_COMPLETE_BODY: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/s3/params", get(params))
        .route("/s3/multipart", post(create))
        .route("/s3/multipart/{upload_id}", get(list_parts).delete(abort))
        .route("/s3/multipart/{upload_id}/{part_number}", get(sign_part))
        .route("/s3/multipart/{upload_id}/complete", post(complete).layer(DefaultBodyLimit::max(MAX_COMPLETE_BODY)))
        .route("/uppy/sign", post(sign))
        .route("/uppy/complete", post(complete_granted).layer(DefaultBodyLimit::max(MAX_COMPLETE_BODY)))
        .route("/uppy/abort", delete(abort_granted))
}

// ---------------------------------------------------------------- Companion

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

fn key_of(query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>) -> Result<String, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    query.key.filter(|k| !k.is_empty()).ok_or(ApiError::MissingField("key"))
}

#[derive(Deserialize)]
struct ParamsQuery {
    filename: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

#[utoipa::path(get, path = "/s3/params", tag = "uppy", params(("filename" = Option<String>, Query), ("type" = Option<String>, Query)), responses((status = 200, description = "A POST form: {method, url, fields}"), crate::api::error_docs::Errors))]
/// Companion's single-request path (files up to 5 MiB): a presigned POST form pinning the key
/// Ferry issues, the type and the size, where the store takes forms (the embedded store).
async fn params(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ParamsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    let file_name = required(query.filename, "filename")?;
    let content_type =
        query.content_type.filter(|t| !t.is_empty()).unwrap_or_else(|| "application/octet-stream".into());
    let (_, form) = state.uploads.presign_client_post(&caller, &file_name, &content_type).await?;
    Ok(Json(json!({ "method": "POST", "url": form.url.as_str(), "fields": form.fields, "headers": {} })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateRequest {
    filename: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    key: String,
    upload_id: String,
}

#[utoipa::path(post, path = "/s3/multipart", tag = "uppy", request_body = CreateRequest, responses((status = 200, description = "{key, uploadId}"), crate::api::error_docs::Errors))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Json<Created>, ApiError> {
    let file_name = required(req.filename, "filename")?;
    let content_type = req.content_type.filter(|t| !t.is_empty()).unwrap_or_else(|| "application/octet-stream".into());
    let (key, upload_id) = state.uploads.start_client_multipart(&caller, &file_name, &content_type).await?;
    Ok(Json(Created { key, upload_id }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CompanionPart {
    part_number: u16,
    size: u64,
    #[serde(rename = "ETag")]
    etag: String,
}

#[utoipa::path(get, path = "/s3/multipart/{upload_id}", tag = "uppy", params(("upload_id" = String, Path), ("key" = Option<String>, Query)), responses((status = 200, description = "[{PartNumber, Size, ETag}]"), crate::api::error_docs::Errors))]
async fn list_parts(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CompanionPart>>, ApiError> {
    let key = key_of(query)?;
    let parts = state.uploads.list_parts(&caller, &key, &upload_id).await?;
    Ok(Json(parts.into_iter().map(|p| CompanionPart { part_number: p.number, size: p.size, etag: p.etag }).collect()))
}

#[utoipa::path(get, path = "/s3/multipart/{upload_id}/{part_number}", tag = "uppy", params(("upload_id" = String, Path), ("part_number" = String, Path), ("key" = Option<String>, Query)), responses((status = 200, description = "{url, expires}"), crate::api::error_docs::Errors))]
async fn sign_part(
    State(state): State<AppState>,
    caller: Caller,
    Path((upload_id, part_number)): Path<(String, String)>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(query)?;
    let part: u16 =
        part_number.parse().map_err(|_| ApiError::InvalidQuery("the part number must be from 1 to 10000".into()))?;
    let (_, url) = state.uploads.part_urls(&caller, &key, &upload_id, &[part], None).await?.remove(0);
    Ok(Json(json!({ "url": url.as_str(), "expires": state.uploads.url_ttl().as_secs() })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CompanionComplete {
    parts: Option<Vec<CompanionCompletedPart>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct CompanionCompletedPart {
    part_number: u16,
    #[serde(rename = "ETag")]
    etag: String,
}

#[utoipa::path(post, path = "/s3/multipart/{upload_id}/complete", tag = "uppy", params(("upload_id" = String, Path), ("key" = Option<String>, Query)), request_body = CompanionComplete, responses((status = 200, description = "{location, key, file}"), crate::api::error_docs::Errors))]
async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
    ApiJson(req): ApiJson<CompanionComplete>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(query)?;
    let parts = req.parts.filter(|p| !p.is_empty()).ok_or(ApiError::MissingField("parts"))?;
    let parts = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    let record = state.uploads.complete_multipart(&caller, &key, &upload_id, parts).await?;
    let location = record.file_url.clone().unwrap_or_default();
    Ok(Json(json!({ "location": location, "key": key, "file": file_view(record) })))
}

#[utoipa::path(delete, path = "/s3/multipart/{upload_id}", tag = "uppy", params(("upload_id" = String, Path), ("key" = Option<String>, Query)), responses((status = 200, description = "{}"), crate::api::error_docs::Errors))]
async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(upload_id): Path<String>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(query)?;
    state.uploads.abort_multipart(&caller, &key, &upload_id).await?;
    Ok(Json(json!({})))
}

// ---------------------------------------------------------------- signRequest

/// Uppy's `PresignableRequest`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignRequest {
    method: Option<String>,
    key: Option<String>,
    upload_id: Option<String>,
    part_number: Option<u16>,
}

#[utoipa::path(post, path = "/uppy/sign", tag = "uppy", request_body = SignRequest, responses((status = 200, description = "{success, url, key}"), crate::api::error_docs::Errors))]
async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SignRequest>,
) -> Result<Json<Value>, ApiError> {
    let method = required(req.method, "method")?.to_ascii_uppercase();
    let key = required(req.key, "key")?;
    let request =
        ClientRequest { method: &method, key: &key, upload_id: req.upload_id.as_deref(), part_number: req.part_number };
    // Ferry's own URLs are relative: the page resolves them against Ferry's address.
    let (url, key) = match state.uploads.sign_client_request(&caller, &request).await? {
        Signed::Store { url, key } => (url.to_string(), key),
        Signed::Ferry { action: GrantAction::Complete, grant } => (format!("/uppy/complete?grant={grant}"), key),
        Signed::Ferry { action: GrantAction::Abort, grant } => (format!("/uppy/abort?grant={grant}"), key),
    };
    Ok(Json(json!({ "success": true, "url": url, "key": key })))
}

#[derive(Deserialize)]
struct GrantQuery {
    grant: Option<String>,
}

fn grant_of(query: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>) -> Result<String, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery(e.body_text()))?;
    query.grant.filter(|g| !g.is_empty()).ok_or(ApiError::MissingField("grant"))
}

/// S3's `CompleteMultipartUpload` body.
#[derive(Deserialize)]
struct CompleteXml {
    #[serde(rename = "Part", default)]
    parts: Vec<PartXml>,
}

#[derive(Deserialize)]
struct PartXml {
    #[serde(rename = "PartNumber")]
    number: u16,
    #[serde(rename = "ETag")]
    etag: String,
}

#[utoipa::path(post, path = "/uppy/complete", tag = "uppy", params(("grant" = Option<String>, Query)), request_body(content = String, content_type = "application/xml", description = "S3's CompleteMultipartUpload XML"), responses((status = 200, description = "S3's CompleteMultipartUploadResult XML", content_type = "application/xml"), crate::api::error_docs::XmlErrors))]
/// The last step of a `signRequest` multipart upload: complete in the bucket, then confirm.
/// (Errors go out as S3 XML: [`grant_errors_as_s3`].)
async fn complete_granted(
    State(state): State<AppState>,
    query: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        _ => ApiError::InvalidBody("the body is not UTF-8 text".into()),
    })?;
    let grant = grant_of(query)?;
    let parsed: CompleteXml = quick_xml::de::from_str(&body)
        .map_err(|_| ApiError::InvalidBody("not a CompleteMultipartUpload XML body".into()))?;
    if parsed.parts.is_empty() {
        return Err(ApiError::MissingField("Part"));
    }
    let parts = parsed.parts.into_iter().map(|p| (p.number, p.etag)).collect();
    let (grant, record) = state.uploads.complete_granted(&grant, parts).await?;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Location>{}</Location><Key>{}</Key><ETag>&quot;{}&quot;</ETag></CompleteMultipartUploadResult>",
        xml_escape(record.file_url.as_deref().unwrap_or_default()),
        xml_escape(&grant.key),
        xml_escape(record.etag.as_deref().unwrap_or_default()),
    );
    Ok(([(header::CONTENT_TYPE, "application/xml")], body).into_response())
}

#[utoipa::path(delete, path = "/uppy/abort", tag = "uppy", params(("grant" = Option<String>, Query)), responses((status = 204, description = "Aborted"), crate::api::error_docs::XmlErrors))]
/// (Errors go out as S3 XML: [`grant_errors_as_s3`].)
async fn abort_granted(
    State(state): State<AppState>,
    query: Result<Query<GrantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let grant = grant_of(query)?;
    state.uploads.abort_granted(&grant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Uppy treats the two grant routes as S3, so their errors go out as S3's XML (`<Error>` with
/// the API's stable code and words, the code also in `x-amz-error-code`, the same status and
/// headers such as `Retry-After`), wherever they were made: in the handler, or around it by the
/// rate limit, the method router or the body limit. Every API error is made (and logged, and
/// counted) as JSON first; this rewrites only the body of those answered on the two routes.
pub async fn grant_errors_as_s3(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let grant_route = matches!(req.uri().path(), "/uppy/complete" | "/uppy/abort");
    let response = next.run(req).await;
    let code = match response.extensions().get::<super::error::ErrorCode>() {
        Some(super::error::ErrorCode(code)) if grant_route => *code,
        _ => return response,
    };
    let (mut parts, body) = response.into_parts();
    // The API's own error body: a few hundred bytes.
    let message = axum::body::to_bytes(body, 64 * 1024)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|json| json["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(&message)
    );
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/xml"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert("x-amz-error-code", header::HeaderValue::from_static(code));
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}
