//! Uppy's two server modes and resuming, at the HTTP level: Companion's `/s3` routes, the
//! `signRequest` signer with its grant URLs, and `POST /multipart/parts`. Each runs against the
//! embedded store and against moto (an S3 this project did not write). The browser side, with
//! the stock `uppy` package, is `page.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, random_bytes, reply, spawn_app};
use crate::s3_compat::spawn_against_moto;

const MIB: usize = 1024 * 1024;

async fn get_as(app: &TestApp, user: &str, path: &str) -> Reply {
    reply(app.get_as(user, path).await).await
}

async fn put_part(app: &TestApp, url: &str, bytes: &[u8]) -> String {
    let response = app.http.put(url).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    response.headers()["etag"].to_str().unwrap().to_owned()
}

fn text_between<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// Companion's routes, in Companion's shapes, keep each user to their own uploads, and a
/// completion is confirmed and recorded at once.
async fn companion_routes(app: &TestApp, takes_forms: bool) {
    let bytes = random_bytes(6 * MIB);
    let created = app
        .post_json_as("alice", "/s3/multipart", &json!({ "filename": "clip.mp4", "type": "video/mp4", "metadata": {} }))
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let upload_id = created.body["uploadId"].as_str().unwrap().to_owned();
    assert!(key.ends_with("-clip.mp4"), "Ferry chose the key: {key}");
    let query = format!("key={}", urlencoding(&key));
    let id = urlencoding(&upload_id);

    let mut parts = Vec::new();
    for (n, chunk) in bytes.chunks(5 * MIB).enumerate() {
        let signed = get_as(app, "alice", &format!("/s3/multipart/{id}/{}?{query}", n + 1)).await;
        assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
        assert!(signed.body["expires"].as_u64().unwrap() > 0);
        let etag = put_part(app, signed.body["url"].as_str().unwrap(), chunk).await;
        parts.push(json!({ "PartNumber": n + 1, "ETag": etag }));
    }
    let listed = get_as(app, "alice", &format!("/s3/multipart/{id}?{query}")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let listed = listed.body.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0]["PartNumber"].as_u64(), listed[0]["Size"].as_u64()), (Some(1), Some(5 * MIB as u64)));

    // Another user can list, sign, complete or abort none of it.
    assert_eq!(get_as(app, "mallory", &format!("/s3/multipart/{id}?{query}")).await.code(), "upload-not-issued");
    assert_eq!(get_as(app, "mallory", &format!("/s3/multipart/{id}/3?{query}")).await.code(), "upload-not-issued");
    let stolen =
        app.post_json_as("mallory", &format!("/s3/multipart/{id}/complete?{query}"), &json!({ "parts": parts })).await;
    assert_eq!((stolen.status, stolen.code()), (StatusCode::FORBIDDEN, "upload-not-issued"));
    let url = app.url(&format!("/s3/multipart/{id}?{query}"));
    let aborted = reply(app.http.delete(&url).header("x-user-id", "mallory").send().await.unwrap()).await;
    assert_eq!((aborted.status, aborted.code()), (StatusCode::FORBIDDEN, "upload-not-issued"));

    let done =
        app.post_json_as("alice", &format!("/s3/multipart/{id}/complete?{query}"), &json!({ "parts": parts })).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["key"], key.as_str());
    assert!(done.body["location"].as_str().unwrap().contains(&key[..36]));
    let file = &done.body["file"];
    assert_eq!((file["size"].as_u64(), file["contentType"].as_str()), (Some(6 * MIB as u64), Some("video/mp4")));
    assert_eq!(app.download_as("alice", file["id"].as_i64().unwrap()).await, bytes);
    assert_eq!(get_as(app, "mallory", "/files").await.body["files"], json!([]));

    // Small files go in one request: a POST form pinning key, type and size, where the store
    // takes forms (the embedded store); elsewhere a plain refusal.
    let params = get_as(app, "alice", "/s3/params?filename=note.txt&type=text/plain").await;
    if !takes_forms {
        assert_eq!((params.status, params.code()), (StatusCode::BAD_REQUEST, "use-multipart"));
        return;
    }
    assert_eq!(params.status, StatusCode::OK, "{}", params.body);
    let post = |fields: &Value, content_type: &str, bytes: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields.as_object().unwrap() {
            let value =
                if name == "Content-Type" { content_type.to_owned() } else { value.as_str().unwrap().to_owned() };
            form = form.text(name.clone(), value);
        }
        form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name("note.txt"));
        app.http.post(params.body["url"].as_str().unwrap()).multipart(form).send()
    };
    let fields = &params.body["fields"];
    let key = fields["key"].as_str().unwrap();
    assert!(key.ends_with("-note.txt"));
    // The policy pins the type and the size.
    let other_type = post(fields, "text/html", b"<b>".to_vec()).await.unwrap().status();
    let too_big = post(fields, "text/plain", vec![b'x'; 5 * MIB + 1]).await.unwrap().status();
    assert!(other_type.is_client_error() && too_big.is_client_error(), "{other_type} {too_big}");
    assert!(!app.object_exists(key).await, "a form the policy refuses stores nothing");
    assert_eq!(post(fields, "text/plain", b"a note".to_vec()).await.unwrap().status(), StatusCode::NO_CONTENT);
    let confirmed = app.confirm_as("alice", key).await;
    assert_eq!((confirmed.status, confirmed.body["file"]["size"].as_u64()), (StatusCode::OK, Some(6)));
}

/// `signRequest`: Ferry signs the bucket requests Uppy sends itself, replaces the proposed key,
/// and brings the completion back to itself through a grant URL.
async fn sign_request_flow(app: &TestApp) {
    let sign = |user: &'static str, body: Value| async move {
        let signed = app.post_json_as(user, "/uppy/sign", &body).await;
        (signed.status, signed.body)
    };
    let (status, created) = sign("alice", json!({ "method": "POST", "key": "uppy-id-holiday.bin" })).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.ends_with("-uppy-id-holiday.bin") && key.len() > 40, "a ticket key: {key}");
    let xml = app
        .http
        .post(created["url"].as_str().unwrap())
        .header("content-type", "application/octet-stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let upload_id = text_between(&xml, "UploadId").expect("an upload id").to_owned();

    let bytes = random_bytes(5 * MIB + 10);
    let mut etags = Vec::new();
    for (n, chunk) in bytes.chunks(5 * MIB).enumerate() {
        let (status, part) =
            sign("alice", json!({ "method": "PUT", "key": key, "uploadId": upload_id, "partNumber": n + 1 })).await;
        assert_eq!(status, StatusCode::OK, "{part}");
        assert_eq!(part["key"], key.as_str());
        etags.push(put_part(app, part["url"].as_str().unwrap(), chunk).await);
    }
    let (_, listed) = sign("alice", json!({ "method": "GET", "key": key, "uploadId": upload_id })).await;
    let xml = app.http.get(listed["url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert_eq!(xml.matches("<PartNumber>").count(), 2, "{xml}");

    // Someone else's key is not signed, whatever the request.
    for request in [
        json!({ "method": "PUT", "key": key, "uploadId": upload_id, "partNumber": 3 }),
        json!({ "method": "GET", "key": key, "uploadId": upload_id }),
        json!({ "method": "POST", "key": key, "uploadId": upload_id }),
        json!({ "method": "DELETE", "key": key, "uploadId": upload_id }),
    ] {
        let (status, body) = sign("mallory", request).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("upload-not-issued")));
    }
    // A small file goes in one PUT to a key Ferry issues, and the page confirms it.
    let (status, single) = sign("alice", json!({ "method": "PUT", "key": "uppy-id-small.txt" })).await;
    assert_eq!(status, StatusCode::OK, "{single}");
    let small_key = single["key"].as_str().unwrap();
    assert!(small_key.ends_with("-uppy-id-small.txt") && small_key.len() > 40);
    let put = app.http.put(single["url"].as_str().unwrap()).header("content-type", "text/plain").body("small");
    assert_eq!(put.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.confirm_as("alice", small_key).await.body["file"]["contentType"], "text/plain");
    // Objects are deleted through Ferry, never by a signed request.
    let (status, _) = sign("alice", json!({ "method": "DELETE", "key": small_key })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, abort) = sign("alice", json!({ "method": "DELETE", "key": key, "uploadId": upload_id })).await;
    let (_, complete) = sign("alice", json!({ "method": "POST", "key": key, "uploadId": upload_id })).await;
    let complete_url = complete["url"].as_str().unwrap();
    assert!(complete_url.starts_with("/uppy/complete?grant="), "{complete_url}");
    // A grant does one thing: the completion's grant cannot abort.
    let swapped = complete_url.replace("/uppy/complete", "/uppy/abort");
    let refused = app.http.delete(app.url(&swapped)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.headers()["x-amz-error-code"], "upload-not-issued");
    assert!(refused.text().await.unwrap().contains("<Code>upload-not-issued</Code>"));
    assert!(abort["url"].as_str().unwrap().starts_with("/uppy/abort?grant="));

    let body: String = etags
        .iter()
        .enumerate()
        .map(|(i, etag)| format!("<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>", i + 1))
        .collect();
    let response = app
        .http
        .post(app.url(complete_url))
        .header("content-type", "application/xml")
        .body(format!("<CompleteMultipartUpload>{body}</CompleteMultipartUpload>"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let xml = response.text().await.unwrap();
    assert_eq!(text_between(&xml, "Key"), Some(key.as_str()), "{xml}");
    let files = get_as(app, "alice", "/files").await;
    let file = files.body["files"].as_array().unwrap().iter().find(|f| f["objectKey"] == key.as_str()).unwrap().clone();
    assert_eq!(file["size"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(app.download_as("alice", file["id"].as_i64().unwrap()).await, bytes);
}

/// `POST /multipart/parts` says which parts arrived, so an interrupted upload sends only the rest.
async fn parts_that_arrived_are_listed_for_resuming(app: &TestApp) {
    let bytes = random_bytes(17 * MIB);
    let body = json!({ "fileName": "resume.bin", "contentType": "application/octet-stream", "size": bytes.len() });
    let start = app.post_json_as("alice", "/multipart/start", &body).await;
    let ids = json!({ "objectKey": start.body["objectKey"], "uploadId": start.body["uploadId"] });
    let part_size = start.body["partSize"].as_u64().unwrap() as usize;
    let urls = app
        .post_json_as(
            "alice",
            "/multipart/urls",
            &json!({ "objectKey": ids["objectKey"], "uploadId": ids["uploadId"], "partNumbers": [1, 2] }),
        )
        .await;
    let first = put_part(app, urls.body["urls"][0]["url"].as_str().unwrap(), &bytes[..part_size]).await;

    let listed = app.post_json_as("alice", "/multipart/parts", &ids).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["parts"], json!([{ "partNumber": 1, "etag": first.trim_matches('"'), "size": part_size }]));
    assert_eq!(app.post_json_as("mallory", "/multipart/parts", &ids).await.code(), "upload-not-issued");

    let second = put_part(app, urls.body["urls"][1]["url"].as_str().unwrap(), &bytes[part_size..]).await;
    let parts = json!([{ "partNumber": 1, "etag": first }, { "partNumber": 2, "etag": second }]);
    let done = app
        .post_json_as(
            "alice",
            "/multipart/complete",
            &json!({ "objectKey": ids["objectKey"], "uploadId": ids["uploadId"], "parts": parts }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    // Finished: nothing left to resume.
    let gone = app.post_json_as("alice", "/multipart/parts", &ids).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "multipart-not-found"));
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn companion_routes_on_the_embedded_store(backend: Backend) {
    companion_routes(&spawn_app(backend).await, true).await;
}

async fn companion_routes_against_moto(backend: Backend) {
    companion_routes(&spawn_against_moto(backend, &[]).await, false).await;
}

async fn sign_request_on_the_embedded_store(backend: Backend) {
    sign_request_flow(&spawn_app(backend).await).await;
}

async fn sign_request_against_moto(backend: Backend) {
    sign_request_flow(&spawn_against_moto(backend, &[]).await).await;
}

async fn resuming_on_the_embedded_store(backend: Backend) {
    parts_that_arrived_are_listed_for_resuming(&spawn_app(backend).await).await;
}

async fn resuming_against_moto(backend: Backend) {
    parts_that_arrived_are_listed_for_resuming(&spawn_against_moto(backend, &[]).await).await;
}

/// A browser may send a form in as many writes as it likes, and each is one good upload: a
/// first write that ends inside the form's opening boundary line, and a write of the file that
/// ends in `\r` (which could start the closing boundary) followed by a long one. s3s alone
/// refused both (400), which Uppy reported as a network error now and then.
async fn a_form_sent_in_awkward_pieces_is_stored(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app(backend).await;
    let params = get_as(&app, "alice", "/s3/params?filename=note.txt&type=text/plain").await;
    assert_eq!(params.status, StatusCode::OK, "{}", params.body);
    let boundary = "----WebKitFormBoundaryFerryTest0001";
    let mut body = Vec::new();
    for (name, value) in params.body["fields"].as_object().unwrap() {
        let value = value.as_str().unwrap();
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"note.txt\"\r\n\r\n").bytes(),
    );
    // The `\r` comes after 400 KiB, once hyper reads in its largest (64 KiB) frames, so the
    // frame after it is a full one.
    let mut file = vec![b'n'; 600 * 1024];
    file[400 * 1024] = b'\r';
    let cut_after_cr = body.len() + 400 * 1024 + 1;
    body.extend(&file);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let url = reqwest::Url::parse(params.body["url"].as_str().unwrap()).unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        url.path(),
        app.store_addr.unwrap(),
        body.len()
    );

    let mut stream = tokio::net::TcpStream::connect(app.store_addr.unwrap()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in [&body[..10], &body[10..cut_after_cr], &body[cut_after_cr..]] {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");

    let key = params.body["fields"]["key"].as_str().unwrap();
    let confirmed = app.confirm_as("alice", key).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body["file"]["size"].as_u64(), Some(file.len() as u64));
}

/// The grant routes are S3 to Uppy: every refusal there is S3 XML with the stable code in
/// `<Code>` and `x-amz-error-code`, including those made before the handler runs (the method
/// router's 405, the body limit's 413, the rate limit's 429 with its `Retry-After`).
async fn the_grant_routes_refuse_in_s3_xml_whoever_refuses(backend: Backend) {
    let app =
        crate::helpers::spawn_app_with(backend, &[("FERRY_RATE_LIMIT", "1"), ("FERRY_RATE_LIMIT_BURST", "3")]).await;
    async fn s3_error(response: reqwest::Response) -> (StatusCode, String, String, reqwest::header::HeaderMap) {
        let (status, headers) = (response.status(), response.headers().clone());
        let header_code = headers.get("x-amz-error-code").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let xml = response.text().await.unwrap();
        assert_eq!(headers["content-type"], "application/xml", "{xml}");
        assert_eq!(text_between(&xml, "Code"), Some(header_code.as_str()), "{xml}");
        assert!(!text_between(&xml, "Message").unwrap_or_default().is_empty(), "{xml}");
        (status, header_code, xml, headers)
    }
    let (status, code, ..) = s3_error(app.http.get(app.url("/uppy/complete?grant=x")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"));
    let too_big = vec![b'x'; 2 * MIB];
    let answer = app.http.post(app.url("/uppy/complete?grant=x")).body(too_big).send().await.unwrap();
    let (status, code, ..) = s3_error(answer).await;
    assert_eq!((status, code.as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"));
    // The rate limit (a burst of 3, already partly spent above) refuses before the grant is read.
    let mut limited = None;
    for _ in 0..10 {
        let answer = app.http.delete(app.url("/uppy/abort?grant=x")).send().await.unwrap();
        let (status, code, _, headers) = s3_error(answer).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((code, headers));
            break;
        }
        assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "upload-not-issued"));
    }
    let (code, headers) = limited.expect("10 requests in a burst of 3 must be limited");
    assert_eq!(code, "rate-limited");
    assert!(headers.contains_key("retry-after"));
    // Elsewhere the API's errors stay JSON.
    let json = app.http.get(app.url("/no-such-route")).send().await.unwrap();
    assert_eq!(json.headers()["content-type"], "application/json");
}

crate::on_one_backend!(a_form_sent_in_awkward_pieces_is_stored, the_grant_routes_refuse_in_s3_xml_whoever_refuses);

crate::on_both_backends!(
    companion_routes_on_the_embedded_store,
    companion_routes_against_moto,
    sign_request_on_the_embedded_store,
    sign_request_against_moto,
    resuming_on_the_embedded_store,
    resuming_against_moto,
);
