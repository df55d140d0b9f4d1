//! Authentication details of the embedded store as S3 has them: SigV4 dated by `Date` instead
//! of `X-Amz-Date`, a request id in every answer and in every error body, and S3's error codes.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, spawn_app};

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// An `Authorization` header for a GET of `path`, signed over `date`, `host` and
/// `x-amz-content-sha256`, dated by the `Date` header alone.
fn sign_with_date(path: &str, host: &str, now: chrono::DateTime<chrono::Utc>, secret: &str) -> (String, String) {
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let (stamp, day) = (now.format("%Y%m%dT%H%M%SZ").to_string(), now.format("%Y%m%d").to_string());
    let canonical = format!(
        "GET\n{path}\n\ndate:{date}\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n\n\
         date;host;x-amz-content-sha256\nUNSIGNED-PAYLOAD"
    );
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), &day);
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &to_sign));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=ferry/{scope}, SignedHeaders=date;host;x-amz-content-sha256, Signature={signature}"
    );
    (date, authorization)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dated_by_the_date_header_is_accepted_when_its_signature_is_right() {
    let app = spawn_app(Backend::Sqlite).await;
    app.put_directly("dated.txt", b"dated".to_vec(), "text/plain").await;
    let secret = std::fs::read_to_string(app.data_dir.path().join(".ferry-secret")).unwrap();
    let host = app.store_addr.unwrap().to_string();
    let url = format!("http://{host}/ferry/dated.txt");
    let get = |secret: String| {
        let (date, authorization) = sign_with_date("/ferry/dated.txt", &host, chrono::Utc::now(), &secret);
        app.http
            .get(&url)
            .header("date", date)
            .header("authorization", authorization)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .send()
    };
    let answered = get(secret.trim().to_owned()).await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(answered.text().await.unwrap(), "dated");
    let forged = get("not the secret".to_owned()).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_names_its_request_and_error_bodies_carry_the_same_id() {
    let app = spawn_app(Backend::Sqlite).await;
    let store = app.store_addr.unwrap();
    let refused = app.http.get(format!("http://{store}/ferry/nothing.txt")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let id = refused.headers()["x-amz-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let body = refused.text().await.unwrap();
    assert!(body.contains(&format!("<RequestId>{id}</RequestId>")), "{body}");

    let (bucket, creds) = app.store_bucket();
    use rusty_s3::S3Action;
    let missing = bucket.get_object(Some(&creds), "nothing.txt").sign(std::time::Duration::from_secs(60));
    let missing = app.http.get(missing).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let other = missing.headers()["x-amz-request-id"].to_str().unwrap().to_owned();
    assert_ne!(other, id, "each request its own id");
    assert!(missing.text().await.unwrap().contains(&format!("<RequestId>{other}</RequestId>")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_error_codes_s3_uses() {
    use rusty_s3::S3Action;
    let app = spawn_app(Backend::Sqlite).await;
    let (bucket, creds) = app.store_bucket();
    let minute = std::time::Duration::from_secs(60);
    let code = |body: String| body.split("<Code>").nth(1).and_then(|c| c.split('<').next()).unwrap_or("").to_owned();

    let stranger = rusty_s3::Credentials::new("someone-else", creds.secret());
    let refused = app.http.get(bucket.get_object(Some(&stranger), "k").sign(minute)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(refused.text().await.unwrap()), "InvalidAccessKeyId");

    let put = |md5: &'static str| {
        let url = bucket.put_object(Some(&creds), "digest.txt").sign(minute);
        app.http.put(url).header("content-md5", md5).body("hello").send()
    };
    let malformed = put("not base64!").await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(malformed.text().await.unwrap()), "InvalidDigest");
    // The MD5 of "goodbye", well formed but not this body's.
    let wrong = put("afqrYmg1ApVVDefVh7wyPQ==").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(wrong.text().await.unwrap()), "BadDigest");
    assert!(!app.object_exists("digest.txt").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_whose_digest_does_not_match_is_refused_and_not_kept() {
    use rusty_s3::S3Action;
    use rusty_s3::actions::CreateMultipartUpload;
    let app = spawn_app(Backend::Sqlite).await;
    let (bucket, creds) = app.store_bucket();
    let minute = std::time::Duration::from_secs(60);
    let create = CreateMultipartUpload::new(&bucket, Some(&creds), "parts.bin").sign(minute);
    let body = app.http.post(create).send().await.unwrap().text().await.unwrap();
    let upload_id = CreateMultipartUpload::parse_response(&body).unwrap().upload_id().to_owned();
    let part = || bucket.upload_part(Some(&creds), "parts.bin", 1, &upload_id).sign(minute);
    for (header, value, code) in [
        ("content-md5", "afqrYmg1ApVVDefVh7wyPQ==", "BadDigest"),
        ("content-md5", "not base64!", "InvalidDigest"),
        ("x-amz-checksum-crc32", "AAAAAA==", "BadDigest"),
    ] {
        let refused = app.http.put(part()).header(header, value).body("hello").send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{header}");
        assert!(refused.text().await.unwrap().contains(&format!("<Code>{code}</Code>")), "{header}");
    }
    let parts = bucket.list_parts(Some(&creds), "parts.bin", &upload_id).sign(minute);
    let listed = app.http.get(parts).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains("<Part>"), "no refused part was kept: {listed}");
    // The MD5 and CRC32 of "hello".
    let accepted = app
        .http
        .put(part())
        .header("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")
        .header("x-amz-checksum-crc32", "NhCmhg==")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(accepted.headers()["x-amz-checksum-crc32"], "NhCmhg==");
}
