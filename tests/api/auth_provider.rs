//! A hostile or struggling identity provider: a JWKS endpoint that stalls, and tokens that name no
//! key. Keys are the test fixtures; the JWKS is served on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::auth::{AUDIENCE, ISSUER, claims, fixture, sign};
use crate::helpers::{Backend, TestApp, reply, spawn_app_with};

crate::on_both_backends!(a_fetch_for_a_new_key_is_shared_and_does_not_hold_up_known_keys,);
// These never reach the metadata database: once is enough.
crate::on_one_backend!(
    a_slow_identity_provider_does_not_delay_requests_whose_key_is_known,
    a_token_without_kid_is_tried_against_each_key_of_its_family,
);

fn jwk(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// The fixture's JWK with its `kid` removed, as some providers publish them.
fn jwk_without_kid(name: &str) -> Value {
    let mut key = jwk(name);
    key.as_object_mut().unwrap().remove("kid");
    key
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap()
}

fn ec(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(fixture(pem).as_bytes()).unwrap()
}

/// A JWKS endpoint on loopback whose keys and answer delay the test can change, counting its
/// fetches (a fetch counts when it arrives, before the delay).
struct Jwks {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
}

impl Jwks {
    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

async fn serve_jwks(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(RwLock::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let (k, n, d) = (keys.clone(), fetches.clone(), delay_ms.clone());
    let router = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (k, n, d) = (k.clone(), n.clone(), d.clone());
            async move {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                axum::Json(json!({ "keys": *k.read().await }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Jwks { url, keys, fetches, delay_ms }
}

async fn spawn_with_jwks(backend: Backend, jwks: &Jwks, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("FERRY_JWKS_URL", jwks.url.as_str()),
        ("FERRY_JWT_ISSUER", ISSUER),
        ("FERRY_JWT_AUDIENCE", AUDIENCE),
        ("FERRY_JWT_LEEWAY", "5"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(backend, &vars).await
}

async fn list_with(app: &TestApp, token: &str) -> crate::helpers::Reply {
    let response = app.http.get(app.url("/files")).bearer_auth(token).send().await.unwrap();
    reply(response).await
}

/// `list_with`, failing the test if the answer takes longer than `bound`.
async fn list_within(app: &TestApp, token: &str, bound: Duration) -> crate::helpers::Reply {
    let started = Instant::now();
    tokio::time::timeout(bound, list_with(app, token))
        .await
        .unwrap_or_else(|_| panic!("no answer within {bound:?} (waited {:?})", started.elapsed()))
}

fn assert_invalid_token(r: &crate::helpers::Reply, what: &str) {
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid-token"), "{what}: {}", r.body);
}

async fn a_slow_identity_provider_does_not_delay_requests_whose_key_is_known(backend: Backend) {
    let jwks = serve_jwks(vec![jwk("rsa1.jwk.json")]).await;
    let app = spawn_with_jwks(backend, &jwks, &[("FERRY_JWKS_TTL", "1"), ("FERRY_JWKS_MIN_REFRESH", "0")]).await;
    let token = sign(Algorithm::RS256, Some("rsa-1"), &rsa("rsa1.pem"), &claims("rita"));
    assert_eq!(list_with(&app, &token).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1);

    // The key set is now past its TTL, and the provider starts taking 4 s to answer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    jwks.set_delay(Duration::from_secs(4));
    let requests = (0..6).map(|_| list_within(&app, &token, Duration::from_millis(1500)));
    for r in futures::future::join_all(requests).await {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // The refresh happens behind their backs, once however many requests saw the stale set.
    let deadline = Instant::now() + Duration::from_secs(2);
    while jwks.fetches() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jwks.fetches(), 2, "one background refresh");
    // While that refresh is still hanging, known keys keep answering at once.
    assert_eq!(list_within(&app, &token, Duration::from_millis(1500)).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 2, "no second fetch while one is in flight");
}

async fn a_fetch_for_a_new_key_is_shared_and_does_not_hold_up_known_keys(backend: Backend) {
    let jwks = serve_jwks(vec![jwk("rsa1.jwk.json")]).await;
    let app = spawn_with_jwks(backend, &jwks, &[("FERRY_JWKS_MIN_REFRESH", "0")]).await;
    let old = sign(Algorithm::RS256, Some("rsa-1"), &rsa("rsa1.pem"), &claims("rita"));
    assert_eq!(list_with(&app, &old).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1);

    // The provider rotates in a new key and takes 2 s to serve it.
    *jwks.keys.write().await = vec![jwk("rsa1.jwk.json"), jwk("rsa2.jwk.json")];
    jwks.set_delay(Duration::from_secs(2));
    let new = sign(Algorithm::RS256, Some("rsa-2"), &rsa("rsa2.pem"), &claims("rita"));
    let waiting: Vec<_> = (0..6)
        .map(|_| {
            let (http, url, new) = (app.http.clone(), app.url("/files"), new.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(new).send().await.unwrap().status() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    while jwks.fetches() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jwks.fetches(), 2, "the new kid makes Ferry fetch the JWKS");
    // While that fetch hangs, the known key answers at once.
    assert_eq!(list_within(&app, &old, Duration::from_secs(1)).await.status, StatusCode::OK);
    for request in waiting {
        let status = tokio::time::timeout(Duration::from_secs(5), request).await.expect("bounded").unwrap();
        assert_eq!(status, StatusCode::OK, "the new key, once fetched");
    }
    assert_eq!(jwks.fetches(), 2, "the requests waiting for the new key share one fetch");
}

async fn a_token_without_kid_is_tried_against_each_key_of_its_family(backend: Backend) {
    let jwks = serve_jwks(vec![
        jwk_without_kid("rsa1.jwk.json"),
        jwk_without_kid("ec1.jwk.json"),
        jwk_without_kid("rsa2.jwk.json"),
    ])
    .await;
    let app = spawn_with_jwks(backend, &jwks, &[]).await;
    let by_second_rsa = sign(Algorithm::RS256, None, &rsa("rsa2.pem"), &claims("rita"));
    assert_eq!(list_with(&app, &by_second_rsa).await.status, StatusCode::OK, "the second RSA key");
    let by_first_rsa = sign(Algorithm::RS256, None, &rsa("rsa1.pem"), &claims("rita"));
    assert_eq!(list_with(&app, &by_first_rsa).await.status, StatusCode::OK, "the first RSA key");
    let by_ec = sign(Algorithm::ES256, None, &ec("ec1.pem"), &claims("eve"));
    assert_eq!(list_with(&app, &by_ec).await.status, StatusCode::OK, "the EC key");
    // The JWKS names RS256 for both RSA keys: PS256, although of the RSA family, is refused.
    let ps = sign(Algorithm::PS256, None, &rsa("rsa2.pem"), &claims("rita"));
    assert_invalid_token(&list_with(&app, &ps).await, "PS256 against RS256 keys");
    // Tampered: signed by none of the keys.
    let tampered = {
        let mut parts: Vec<String> = by_second_rsa.split('.').map(str::to_owned).collect();
        let other = sign(Algorithm::RS256, None, &rsa("rsa2.pem"), &claims("mallory"));
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        parts.join(".")
    };
    assert_invalid_token(&list_with(&app, &tampered).await, "tampered payload");
    assert_eq!(jwks.fetches(), 1);

    // Against a JWKS without the signing key, the token is refused.
    let jwks = serve_jwks(vec![jwk_without_kid("rsa1.jwk.json"), jwk_without_kid("ec1.jwk.json")]).await;
    let app = spawn_with_jwks(backend, &jwks, &[]).await;
    assert_eq!(list_with(&app, &by_first_rsa).await.status, StatusCode::OK);
    assert_invalid_token(&list_with(&app, &by_second_rsa).await, "a key the JWKS lacks");
    assert_eq!(list_with(&app, &by_ec).await.status, StatusCode::OK);
}
