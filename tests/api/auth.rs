//! Real authentication: JWTs signed with keys the test makes, JWKS served on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::IntoResponse;
use ferry::auth::jwt::mint_hs256;
use ferry::config::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::helpers::{Backend, TestApp, now_unix, reply, spawn_app_with};

crate::on_both_backends!(
    an_hs256_token_names_the_caller_and_x_user_id_is_ignored,
    bad_tokens_are_refused_and_change_nothing,
    rs256_and_es256_tokens_verify_through_the_jwks,
    one_users_token_cannot_touch_another_users_files,
);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_call_without_a_token_is_refused_with_a_challenge,
    a_rotated_key_is_picked_up_and_the_old_one_dropped,
    bogus_kids_cannot_hammer_the_identity_provider,
    known_keys_outlive_a_provider_outage_for_a_bounded_time,
    every_documented_algorithm_verifies_and_symmetric_jwks_keys_are_ignored,
);

const SECRET: &str = "an HS256 secret of at least thirty-two characters";
pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUDIENCE: &str = "ferry-tests";

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub(crate) fn claims(sub: &str) -> Value {
    let now = u64::from(now_unix());
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600 })
}

pub(crate) fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, None, &EncodingKey::from_secret(SECRET.as_bytes()), claims)
}

fn rs(kid: &str, pem: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, Some(kid), &EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap(), claims)
}

fn es(claims: &Value) -> String {
    sign(Algorithm::ES256, Some("ec-1"), &EncodingKey::from_ec_pem(fixture("ec1.pem").as_bytes()).unwrap(), claims)
}

/// A JWKS endpoint on loopback whose keys the test can change, counting its fetches.
struct Jwks {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the endpoint answers 500, as a provider in trouble would.
    down: Arc<std::sync::atomic::AtomicBool>,
}

async fn serve_jwks(files: &[&str]) -> Jwks {
    let keys = Arc::new(RwLock::new(files.iter().map(|f| serde_json::from_str(&fixture(f)).unwrap()).collect()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (k, n, d) = (keys.clone(), fetches.clone(), down.clone());
    let router = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (k, n, d) = (k.clone(), n.clone(), d.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                axum::Json(json!({ "keys": *k.read().await })).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Jwks { url, keys, fetches, down }
}

async fn spawn_with_auth(backend: Backend, jwks: Option<&Jwks>, min_refresh: &str) -> TestApp {
    spawn_with_auth_and(backend, jwks, min_refresh, &[]).await
}

async fn spawn_with_auth_and(
    backend: Backend,
    jwks: Option<&Jwks>,
    min_refresh: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut vars = vec![
        ("FERRY_JWT_SECRET", SECRET),
        ("FERRY_JWT_ISSUER", ISSUER),
        ("FERRY_JWT_AUDIENCE", AUDIENCE),
        ("FERRY_JWT_LEEWAY", "5"),
        ("FERRY_JWKS_MIN_REFRESH", min_refresh),
    ];
    if let Some(jwks) = jwks {
        vars.push(("FERRY_JWKS_URL", jwks.url.as_str()));
    }
    vars.extend_from_slice(extra);
    spawn_app_with(backend, &vars).await
}

async fn presign_with(app: &TestApp, token: &str) -> crate::helpers::Reply {
    let response = app
        .http
        .post(app.url("/presign-b2-upload"))
        .bearer_auth(token)
        .json(&json!({ "fileName": "a.txt", "contentType": "text/plain" }))
        .send()
        .await
        .unwrap();
    reply(response).await
}

/// Uploads a file as the token's user; returns its JSON.
async fn upload_with(app: &TestApp, token: &str, name: &str) -> Value {
    let presigned = presign_with(app, token).await;
    assert_eq!(presigned.status, StatusCode::OK, "{}", presigned.body);
    let url = presigned.body["presignedUrl"].as_str().unwrap();
    assert_eq!(app.put(url, name.as_bytes().to_vec(), "text/plain").await, StatusCode::OK);
    let response = app
        .http
        .post(app.url("/save-b2-metadata"))
        .bearer_auth(token)
        .json(&json!({ "objectKey": presigned.body["objectKey"] }))
        .send()
        .await
        .unwrap();
    let saved = reply(response).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    saved.body["file"].clone()
}

async fn list_with(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.http.get(app.url("/files")).bearer_auth(token).send().await.unwrap();
    reply(response).await.body["files"].as_array().unwrap().clone()
}

/// Refused with 401 `invalid-token`: every bad token but an expired one answers this code.
fn assert_refused(r: &crate::helpers::Reply, what: &str) {
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid-token"), "{what}: {}", r.body);
}

async fn an_hs256_token_names_the_caller_and_x_user_id_is_ignored(backend: Backend) {
    let app = spawn_with_auth(backend, None, "10").await;
    let token = hs(&claims("alice"));
    let presigned = app
        .http
        .post(app.url("/presign-b2-upload"))
        .bearer_auth(&token)
        .header("x-user-id", "mallory")
        .json(&json!({ "fileName": "a.txt", "contentType": "text/plain" }))
        .send()
        .await
        .unwrap();
    let presigned = reply(presigned).await;
    let key = presigned.body["objectKey"].as_str().unwrap();
    assert!(
        app.core.uploads.ticket(&ferry::identity::Caller::from_user_id("alice"), key).is_ok(),
        "the key is alice's"
    );
    assert!(app.core.uploads.ticket(&ferry::identity::Caller::from_user_id("mallory"), key).is_err());
    // `ferry token` mints tokens the server accepts.
    let minted =
        mint_hs256(&Secret::new(SECRET), "carol", std::time::Duration::from_secs(60), Some(ISSUER), Some(AUDIENCE));
    upload_with(&app, &minted, "carol's").await;
    assert_eq!(list_with(&app, &minted).await.len(), 1);
}

async fn a_call_without_a_token_is_refused_with_a_challenge(backend: Backend) {
    let app = spawn_with_auth(backend, None, "10").await;
    let response = app.get_as("user_123", "/files").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"ferry\"");
    let r = reply(response).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "missing-token"));
    // Health stays open.
    assert_eq!(app.get_as("user_123", "/healthz").await.status(), StatusCode::OK);
}

async fn bad_tokens_are_refused_and_change_nothing(backend: Backend) {
    let jwks = serve_jwks(&["rsa1.jwk.json"]).await;
    let app = spawn_with_auth(backend, Some(&jwks), "10").await;
    let now = u64::from(now_unix());
    let mut expired = claims("alice");
    expired["exp"] = json!(now - 120);
    let mut early = claims("alice");
    early["nbf"] = json!(now + 600);
    let mut wrong_iss = claims("alice");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    let other_secret = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"another secret of thirty-two characters!"),
        &claims("alice"),
    );
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT" })), b64(&claims("alice")));
    // Algorithm confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let public_pem = fixture("rsa1.pub.pem");
    let confused =
        sign(Algorithm::HS256, Some("rsa-1"), &EncodingKey::from_secret(public_pem.as_bytes()), &claims("alice"));
    let tampered = {
        let good = rs("rsa-1", "rsa1.pem", &claims("alice"));
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64(&claims("mallory"));
        parts.join(".")
    };
    let expired_reply = presign_with(&app, &hs(&expired)).await;
    assert_eq!((expired_reply.status, expired_reply.code()), (StatusCode::UNAUTHORIZED, "token-expired"));
    let cases = [
        ("not yet valid", hs(&early)),
        ("wrong issuer", hs(&wrong_iss)),
        ("wrong audience", hs(&wrong_aud)),
        ("missing sub", hs(&no_sub)),
        ("wrong secret", other_secret),
        ("alg none", alg_none),
        ("algorithm confusion", confused),
        ("tampered payload", tampered),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    // Alice's stored file and her uploaded-but-unconfirmed object: what a bad token claiming to
    // be alice would change if it were let through.
    let good = hs(&claims("alice"));
    let kept = upload_with(&app, &good, "kept").await;
    let pending = presign_with(&app, &good).await;
    let pending_key = pending.body["objectKey"].as_str().unwrap().to_owned();
    let put = app.put(pending.body["presignedUrl"].as_str().unwrap(), b"pending".to_vec(), "text/plain").await;
    assert_eq!(put, StatusCode::OK);
    let delete_path = format!("/files/{}", kept["id"]);
    for (what, token) in cases {
        assert_refused(&presign_with(&app, &token).await, what);
        let deleted = app.http.delete(app.url(&delete_path)).bearer_auth(&token).send().await.unwrap();
        assert_refused(&reply(deleted).await, what);
        let confirm = json!({ "objectKey": pending_key });
        let confirmed =
            app.http.post(app.url("/save-b2-metadata")).bearer_auth(&token).json(&confirm).send().await.unwrap();
        assert_refused(&reply(confirmed).await, what);
    }
    for header in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer    "] {
        let response = app.http.get(app.url("/files")).header("authorization", header).send().await.unwrap();
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{header}: {challenge}");
        assert_refused(&reply(response).await, header);
    }
    // Alice's file is still there and the pending upload was not confirmed.
    let listed: Vec<Value> = list_with(&app, &good).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], kept["id"]);
    assert_eq!(app.row_count().await, 1);
}

async fn rs256_and_es256_tokens_verify_through_the_jwks(backend: Backend) {
    let jwks = serve_jwks(&["rsa1.jwk.json", "ec1.jwk.json"]).await;
    let app = spawn_with_auth(backend, Some(&jwks), "10").await;
    upload_with(&app, &rs("rsa-1", "rsa1.pem", &claims("rita")), "by RS256").await;
    upload_with(&app, &es(&claims("eve")), "by ES256").await;
    assert_eq!(list_with(&app, &rs("rsa-1", "rsa1.pem", &claims("rita"))).await.len(), 1);
    assert_eq!(list_with(&app, &es(&claims("eve"))).await.len(), 1);
    // An RS256 token claiming the EC key's kid is refused: the key decides the algorithm.
    let mismatched = rs("ec-1", "rsa1.pem", &claims("rita"));
    assert_refused(&presign_with(&app, &mismatched).await, "RS256 with an EC kid");
}

async fn a_rotated_key_is_picked_up_and_the_old_one_dropped(backend: Backend) {
    let jwks = serve_jwks(&["rsa1.jwk.json"]).await;
    let app = spawn_with_auth(backend, Some(&jwks), "0").await;
    let old = rs("rsa-1", "rsa1.pem", &claims("rita"));
    let new = rs("rsa-2", "rsa2.pem", &claims("rita"));
    assert_eq!(presign_with(&app, &old).await.status, StatusCode::OK);
    *jwks.keys.write().await = vec![serde_json::from_str(&fixture("rsa2.jwk.json")).unwrap()];
    assert_eq!(presign_with(&app, &new).await.status, StatusCode::OK, "the new kid triggers a refresh");
    assert_refused(&presign_with(&app, &old).await, "the retired key");
}

async fn bogus_kids_cannot_hammer_the_identity_provider(backend: Backend) {
    let jwks = serve_jwks(&["rsa1.jwk.json"]).await;
    let app = spawn_with_auth(backend, Some(&jwks), "3600").await;
    assert_eq!(presign_with(&app, &rs("rsa-1", "rsa1.pem", &claims("rita"))).await.status, StatusCode::OK);
    for i in 0..20 {
        let token = rs(&format!("bogus-{i}"), "rsa1.pem", &claims("rita"));
        assert_refused(&presign_with(&app, &token).await, "bogus kid");
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "one fetch, however many unknown kids");
}

async fn one_users_token_cannot_touch_another_users_files(backend: Backend) {
    let app = spawn_with_auth(backend, None, "10").await;
    let (alice, bob) = (hs(&claims("alice")), hs(&claims("bob")));
    let file = upload_with(&app, &alice, "alice's").await;
    let id = file["id"].as_i64().unwrap();
    let key = file["objectKey"].as_str().unwrap();

    assert!(list_with(&app, &bob).await.is_empty());
    let download = app.http.get(app.url(&format!("/files/{id}/download"))).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::NOT_FOUND);
    let delete = app.http.delete(app.url(&format!("/files/{id}"))).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    let confirm = app
        .http
        .post(app.url("/save-b2-metadata"))
        .bearer_auth(&bob)
        .json(&json!({ "objectKey": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply(confirm).await.code(), "upload-not-issued");
    assert!(app.object_exists(key).await);
    assert_eq!(list_with(&app, &alice).await.len(), 1);
}

async fn known_keys_outlive_a_provider_outage_for_a_bounded_time(backend: Backend) {
    let token = rs("rsa-1", "rsa1.pem", &claims("rita"));
    // Keys count as fresh for 0 s, so every request tries the provider.
    let jwks = serve_jwks(&["rsa1.jwk.json"]).await;
    let tolerant =
        spawn_with_auth_and(backend, Some(&jwks), "0", &[("FERRY_JWKS_TTL", "0"), ("FERRY_JWKS_MAX_STALE", "3600")])
            .await;
    assert_eq!(presign_with(&tolerant, &token).await.status, StatusCode::OK);
    jwks.down.store(true, Ordering::SeqCst);
    assert_eq!(presign_with(&tolerant, &token).await.status, StatusCode::OK, "stale keys serve during an outage");

    let jwks = serve_jwks(&["rsa1.jwk.json"]).await;
    let strict =
        spawn_with_auth_and(backend, Some(&jwks), "0", &[("FERRY_JWKS_TTL", "0"), ("FERRY_JWKS_MAX_STALE", "0")]).await;
    assert_eq!(presign_with(&strict, &token).await.status, StatusCode::OK);
    jwks.down.store(true, Ordering::SeqCst);
    let refused = presign_with(&strict, &token).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::SERVICE_UNAVAILABLE, "auth-unavailable"));
}

async fn every_documented_algorithm_verifies_and_symmetric_jwks_keys_are_ignored(backend: Backend) {
    let jwks = serve_jwks(&["rsa1.jwk.json", "ec384.jwk.json", "ed1.jwk.json"]).await;
    // rsa1's key again without a named `alg` (so PS256 may use it), and a symmetric key whose
    // secret the test knows: a JWKS is public, so a key in it must never verify an HS* token.
    let mut any_rsa: Value = serde_json::from_str(&fixture("rsa1.jwk.json")).unwrap();
    any_rsa["kid"] = json!("rsa-any");
    any_rsa.as_object_mut().unwrap().remove("alg");
    let shared = b"a symmetric key published in the JWKS, 32+ bytes";
    let oct = {
        use base64::Engine as _;
        json!({ "kty": "oct", "kid": "shared", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(shared) })
    };
    jwks.keys.write().await.extend([any_rsa, oct]);
    let app = spawn_with_auth(backend, Some(&jwks), "10").await;

    let pem = |name: &str| fixture(name);
    let rsa = EncodingKey::from_rsa_pem(pem("rsa1.pem").as_bytes()).unwrap();
    let ec384 = EncodingKey::from_ec_pem(pem("ec384.pem").as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(pem("ed1.pem").as_bytes()).unwrap();
    let hmac = EncodingKey::from_secret(SECRET.as_bytes());
    let cases = [
        ("PS256", "pat", sign(Algorithm::PS256, Some("rsa-any"), &rsa, &claims("pat"))),
        ("ES384", "ed", sign(Algorithm::ES384, Some("ec-384"), &ec384, &claims("ed"))),
        ("EdDSA", "eddie", sign(Algorithm::EdDSA, Some("ed-1"), &ed, &claims("eddie"))),
        ("HS384", "hugo", sign(Algorithm::HS384, None, &hmac, &claims("hugo"))),
        ("HS512", "hana", sign(Algorithm::HS512, None, &hmac, &claims("hana"))),
    ];
    for (alg, sub, token) in cases {
        let r = presign_with(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{alg}: {}", r.body);
        let caller = ferry::identity::Caller::from_user_id(sub);
        assert!(app.core.uploads.ticket(&caller, r.body["objectKey"].as_str().unwrap()).is_ok(), "{alg}: {sub}'s key");
    }
    // A key that names its algorithm verifies only that one.
    assert_refused(
        &presign_with(&app, &sign(Algorithm::PS256, Some("rsa-1"), &rsa, &claims("pat"))).await,
        "PS256, RS256 key",
    );
    // The symmetric JWKS key verifies nothing, with its kid or without.
    let oct_key = EncodingKey::from_secret(shared);
    for kid in [Some("shared"), None] {
        let token = sign(Algorithm::HS256, kid, &oct_key, &claims("mallory"));
        assert_refused(&presign_with(&app, &token).await, "HS256 with the JWKS's symmetric key");
    }
}
