//! Presigned POST forms (S3's browser-based upload with a policy), for Uppy's Companion mode
//! on stores that take them (the embedded store; B2 does not). The policy pins the key, the
//! content type and a size range, so the form uploads exactly what Ferry allowed.
//!
//! SigV4 for POST: the signature is an HMAC of the base64 policy under the same derived key as
//! any SigV4 request (`AWS4<secret>` → date → region → `s3` → `aws4_request`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A form the browser POSTs to `url`, with `fields` first and the file last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPost {
    pub url: url::Url,
    pub fields: BTreeMap<String, String>,
}

/// What one form may upload.
#[derive(Debug, Clone)]
pub struct PostRequest<'a> {
    pub key: &'a str,
    pub content_type: &'a str,
    pub max_size: u64,
    pub ttl: Duration,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Signs a POST form for `bucket_url` at `now`.
pub fn sign_post(
    bucket_url: url::Url,
    bucket: &str,
    region: &str,
    access_key_id: &str,
    secret: &str,
    req: &PostRequest<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> PresignedPost {
    let date = now.format("%Y%m%d").to_string();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let credential = format!("{access_key_id}/{date}/{region}/s3/aws4_request");
    let expiration =
        (now + chrono::Duration::from_std(req.ttl).unwrap_or_default()).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let policy = json!({
        "expiration": expiration,
        "conditions": [
            { "bucket": bucket },
            ["eq", "$key", req.key],
            ["eq", "$Content-Type", req.content_type],
            ["content-length-range", 0, req.max_size],
            { "x-amz-algorithm": "AWS4-HMAC-SHA256" },
            { "x-amz-credential": credential },
            { "x-amz-date": amz_date },
        ],
    });
    let policy = STANDARD.encode(policy.to_string());
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region.as_bytes(), b"s3", b"aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, policy.as_bytes()));
    let fields = [
        ("key", req.key.to_owned()),
        ("Content-Type", req.content_type.to_owned()),
        ("policy", policy),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential", credential),
        ("x-amz-date", amz_date),
        ("x-amz-signature", signature),
    ];
    PresignedPost { url: bucket_url, fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's own example (sigv4-post-example): the same policy, key and date give its signature.
    #[test]
    fn the_signature_is_sigv4s_hmac_of_the_base64_policy() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let policy = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), b"20151229");
        for part in [b"us-east-1".as_slice(), b"s3", b"aws4_request"] {
            key = hmac(&key, part);
        }
        assert_eq!(
            hex::encode(hmac(&key, policy.as_bytes())),
            "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
        );
    }

    #[test]
    fn a_form_pins_the_key_the_type_and_the_size() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().to_utc();
        let req = PostRequest { key: "k-a.txt", content_type: "text/plain", max_size: 5, ttl: Duration::from_secs(60) };
        let form =
            sign_post("http://127.0.0.1:9000/ferry/".parse().unwrap(), "ferry", "us-east-1", "id", "s", &req, now);
        let policy: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&form.fields["policy"]).unwrap()).unwrap();
        assert_eq!(policy["expiration"], "2026-11-28T12:01:00.000Z");
        let conditions = policy["conditions"].to_string();
        for pinned in
            [r#"["eq","$key","k-a.txt"]"#, r#"["eq","$Content-Type","text/plain"]"#, r#"["content-length-range",0,5]"#]
        {
            assert!(conditions.contains(pinned), "{conditions}");
        }
        assert_eq!(form.fields["x-amz-credential"], "id/20261128/us-east-1/s3/aws4_request");
    }
}
