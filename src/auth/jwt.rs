//! JWT verification for the tokens identity providers issue (Neon Auth, Stack Auth, Auth0,
//! Clerk, Supabase, Keycloak...).
//!
//! The algorithm is taken from the key, never from the token: an HS* token is checked only
//! against `FERRY_JWT_SECRET`, anything else only against a JWKS key of the same family, and
//! the token's `alg` must match the key's own `alg` when the JWKS names one.
//!
//! The JWKS is cached, and the provider is never on the path of a request whose key is known:
//!
//! - the key set is an immutable snapshot behind a `std` lock held only to clone or swap an `Arc`,
//!   never across an `.await`;
//! - fetches go one at a time through `Jwks::gate`, which also records the last attempt, so
//!   there is at most one fetch per `jwks_min_refresh` whatever `kid`s arrive;
//! - a known key in a set past its TTL (but not past `jwks_max_stale`) answers at once and
//!   starts a refresh in the background, unless one is in flight or `jwks_min_refresh` forbids it;
//! - only a request that cannot be answered from the set (unknown `kid`, no key of its family,
//!   no set yet, or a set past `jwks_max_stale`) waits, for at most one fetch, and requests that
//!   waited while another fetch ran reuse its result instead of fetching again.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};
use url::Url;

use crate::config::{JwtSettings, Secret};

/// Why a token is refused. The `Display` text is safe to send: it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token is for another issuer or audience")]
    WrongIssuerOrAudience,
    #[error("the token has no subject (sub)")]
    MissingSubject,
    #[error("the identity provider's keys cannot be fetched")]
    KeysUnavailable,
}

/// Verified claims: the subject and everything else the provider put in.
#[derive(Debug, Clone)]
pub struct Claims {
    pub sub: String,
    pub all: Map<String, Value>,
}

/// Verifies tokens; cheap to share behind an `Arc`.
pub struct JwtVerifier {
    settings: JwtSettings,
    hmac: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
}

const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// A token without `kid` is tried against at most this many keys, so a huge JWKS cannot make one
/// request expensive.
const MAX_KEYS_TRIED: usize = 16;

/// The largest JWKS document read; a provider's is a few kilobytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How long one fetch of the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Arc<Self> {
        let hmac = settings.secret.as_ref().map(|s| DecodingKey::from_secret(s.expose().as_bytes()));
        let jwks = settings.jwks_url.clone().map(|url| Arc::new(Jwks::new(url, &settings)));
        Arc::new(Self { settings, hmac, jwks })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let alg = header.alg;
        let validation = self.validation(alg);
        let data = if HMAC_ALGS.contains(&alg) {
            let key = self.hmac.as_ref().ok_or(TokenError::Algorithm)?;
            decode_with_any(token, [key], &validation)?
        } else {
            let jwks = self.jwks.as_ref().ok_or(TokenError::Algorithm)?;
            let (set, picked) = jwks.keys_for(header.kid.as_deref(), alg).await?;
            decode_with_any(token, picked.iter().map(|&i| &set.keys[i].key), &validation)?
        };
        let sub = match data.claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(TokenError::MissingSubject),
        };
        Ok(Claims { sub, all: data.claims })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation
    }
}

/// Decodes `token` with the first of `keys` whose signature verifies. The signature is checked
/// before the claims, so any other error comes from the key that signed and is final.
fn decode_with_any<'k>(
    token: &str,
    keys: impl IntoIterator<Item = &'k DecodingKey>,
    validation: &Validation,
) -> Result<TokenData<Map<String, Value>>, TokenError> {
    let mut refused = TokenError::UnknownKey;
    for key in keys {
        match decode::<Map<String, Value>>(token, key, validation) {
            Ok(data) => return Ok(data),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                refused = TokenError::BadSignature;
            }
            Err(e) => return Err(classify(&e)),
        }
    }
    Err(refused)
}

/// What kind of public key a JWK holds, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn of(jwk: &Jwk) -> Option<Self> {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Self::Rsa),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Self::P256),
                EllipticCurve::P384 => Some(Self::P384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(p) => (p.curve == EllipticCurve::Ed25519).then_some(Self::Ed25519),
            // A symmetric key published in a JWKS could be used by anyone to sign: never trust one.
            AlgorithmParameters::OctetKey(_) => None,
        }
    }

    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Self::Rsa => matches!(alg, A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512),
            Self::P256 => alg == A::ES256,
            Self::P384 => alg == A::ES384,
            Self::Ed25519 => alg == A::EdDSA,
        }
    }
}

/// One usable key of a JWKS.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    kind: KeyKind,
    /// The key's own `alg`, when the JWKS names one.
    alg: Option<Algorithm>,
}

impl Key {
    /// Makes a verification key of `jwk`, or `None` for a key that must not verify tokens.
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
            return None;
        }
        let kind = KeyKind::of(jwk)?;
        // A named `alg` that is no signature algorithm (RSA-OAEP...) marks a key for something else.
        let alg = match jwk.common.key_algorithm {
            Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
            None => None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { kid: jwk.common.key_id.clone(), key, kind, alg })
    }

    fn verifies(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// One fetched JWKS. Never changed once made: a refresh replaces it whole.
#[derive(Default)]
struct KeySet {
    /// In the JWKS's order.
    keys: Vec<Key>,
    by_kid: HashMap<String, Vec<usize>>,
    /// When it was fetched; `None` for the empty set before the first fetch.
    fetched: Option<Instant>,
}

/// A key set, and the indices of the keys a token may be checked against.
type Picked = (Arc<KeySet>, Vec<usize>);

/// Which keys of a set a token may be checked against.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// These keys, by index, in order.
    Found(Vec<usize>),
    /// The `kid` is known, but for another algorithm.
    WrongAlgorithm,
    /// No key has the `kid`, or (without `kid`) no key verifies the algorithm.
    Unknown,
}

impl KeySet {
    fn new(keys: Vec<Key>, fetched: Option<Instant>) -> Self {
        let mut by_kid: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        Self { keys, by_kid, fetched }
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let verifies = |&i: &usize| self.keys[i].verifies(alg);
        let found: Vec<usize> = match kid {
            Some(kid) => {
                let Some(named) = self.by_kid.get(kid) else {
                    return Lookup::Unknown;
                };
                let found: Vec<usize> = named.iter().copied().filter(verifies).take(MAX_KEYS_TRIED).collect();
                if found.is_empty() {
                    return Lookup::WrongAlgorithm;
                }
                found
            }
            // Keys published without `kid` first: they are the ones meant for such tokens.
            None => {
                let (anonymous, named): (Vec<usize>, Vec<usize>) =
                    (0..self.keys.len()).partition(|&i| self.keys[i].kid.is_none());
                anonymous.into_iter().chain(named).filter(verifies).take(MAX_KEYS_TRIED).collect()
            }
        };
        if found.is_empty() { Lookup::Unknown } else { Lookup::Found(found) }
    }

    fn fetched_within(&self, age: Duration) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() <= age)
    }
}

/// The bookkeeping of fetches, behind `Jwks::gate`.
struct Gate {
    last_attempt: Option<Instant>,
}

impl Gate {
    fn may_fetch(&self, min_refresh: Duration) -> bool {
        self.last_attempt.is_none_or(|t| t.elapsed() >= min_refresh)
    }
}

/// The identity provider's keys, cached.
struct Jwks {
    url: Url,
    http: reqwest::Client,
    ttl: Duration,
    min_refresh: Duration,
    max_stale: Duration,
    /// The current key set. Held only to clone or replace the `Arc`.
    current: RwLock<Arc<KeySet>>,
    /// Single flight: held across the network only by the one fetch in flight (and briefly by a
    /// request re-checking before it fetches). Requests whose key is known never wait on it.
    gate: Arc<Mutex<Gate>>,
}

impl Jwks {
    fn new(url: Url, settings: &JwtSettings) -> Self {
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().expect("HTTP client for JWKS");
        Self {
            url,
            http,
            ttl: settings.jwks_ttl,
            min_refresh: settings.jwks_min_refresh,
            max_stale: settings.jwks_max_stale,
            current: RwLock::new(Arc::new(KeySet::default())),
            gate: Arc::new(Mutex::new(Gate { last_attempt: None })),
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The keys `kid` and `alg` may be checked against, with the set they index.
    async fn keys_for(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> Result<Picked, TokenError> {
        let started = Instant::now();
        let set = self.snapshot();
        if set.fetched_within(self.max_stale) {
            let lookup = set.lookup(kid, alg);
            if lookup != Lookup::Unknown {
                if !set.fetched_within(self.ttl) {
                    self.refresh_in_background();
                }
                return answer(set, lookup);
            }
        }
        // The set cannot answer: wait for a fetch, or for the one in flight.
        self.refresh_now(started).await;
        let set = self.snapshot();
        // Keys fetched during this request are never stale; older ones only until `max_stale`.
        let usable = set.fetched.is_some_and(|t| t >= started) || set.fetched_within(self.max_stale);
        if !usable {
            return Err(TokenError::KeysUnavailable);
        }
        let lookup = set.lookup(kid, alg);
        answer(set, lookup)
    }

    /// Starts a refresh in a task of its own, unless one is in flight or it is too soon.
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(gate) = self.gate.clone().try_lock_owned() else {
            return;
        };
        // Another refresh may have landed since this request looked.
        if !gate.may_fetch(self.min_refresh) || self.snapshot().fetched_within(self.ttl) {
            return;
        }
        tokio::spawn(self.clone().fetch_and_store(gate));
    }

    /// Fetches the set now, unless a fetch started or ended while this request (begun at
    /// `started`) waited, or the last attempt was less than `min_refresh` ago.
    async fn refresh_now(self: &Arc<Self>, started: Instant) {
        let gate = self.gate.clone().lock_owned().await;
        let fetched_since = self.snapshot().fetched.is_some_and(|t| t >= started);
        let tried_since = gate.last_attempt.is_some_and(|t| t >= started);
        if fetched_since || tried_since || !gate.may_fetch(self.min_refresh) {
            return;
        }
        // In a task of its own, so that a caller who hangs up does not cut the fetch short.
        if let Err(e) = tokio::spawn(self.clone().fetch_and_store(gate)).await {
            tracing::warn!(error = %e, "the JWKS refresh did not finish");
        }
    }

    /// Fetches the set and makes it current; on failure the known keys stay, within `max_stale`.
    async fn fetch_and_store(self: Arc<Self>, mut gate: OwnedMutexGuard<Gate>) {
        gate.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                let set = Arc::new(KeySet::new(keys, Some(Instant::now())));
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = set;
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh the JWKS; using the keys already known"),
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self.http.get(self.url.clone()).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("JWKS answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

fn answer(set: Arc<KeySet>, lookup: Lookup) -> Result<Picked, TokenError> {
    match lookup {
        Lookup::Found(picked) => Ok((set, picked)),
        Lookup::WrongAlgorithm => Err(TokenError::Algorithm),
        Lookup::Unknown => Err(TokenError::UnknownKey),
    }
}

/// The usable keys of a JWKS document. Keys that cannot verify tokens (symmetric, for
/// encryption, of an unsupported type or curve, or malformed) are skipped, not fatal.
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(Value::Array(jwks)) = doc.get("keys") else {
        return Err("the JWKS has no \"keys\" array".to_owned());
    };
    let keys: Vec<Key> = jwks
        .iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v.clone()).ok())
        .filter_map(|jwk| Key::from_jwk(&jwk))
        .collect();
    if keys.len() < jwks.len() {
        tracing::debug!(skipped = jwks.len() - keys.len(), "JWKS keys that cannot verify tokens were skipped");
    }
    Ok(keys)
}

fn classify(e: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidSignature => TokenError::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
        K::InvalidIssuer | K::InvalidAudience => TokenError::WrongIssuerOrAudience,
        K::MissingRequiredClaim(claim) if claim == "sub" => TokenError::MissingSubject,
        _ => TokenError::Malformed,
    }
}

/// Mints an HS256 token for `user` (for `ferry token`, the CLI and the page without a provider).
pub fn mint_hs256(secret: &Secret, user: &str, ttl: Duration, issuer: Option<&str>, audience: Option<&str>) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + ttl.as_secs() });
    if let Some(iss) = issuer {
        claims["iss"] = iss.into();
    }
    if let Some(aud) = audience {
        claims["aud"] = aud.into();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key).expect("HS256 signing")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn jwk(name: &str) -> Value {
        serde_json::from_str(&fixture(name)).unwrap()
    }

    /// The fixture's JWK with some members removed or replaced.
    fn jwk_with(name: &str, changes: &[(&str, Option<&str>)]) -> Value {
        let mut v = jwk(name);
        let object = v.as_object_mut().unwrap();
        for (member, value) in changes {
            match value {
                Some(value) => object.insert((*member).to_owned(), json!(value)),
                None => object.remove(*member),
            };
        }
        v
    }

    fn set_of(jwks: Vec<Value>) -> KeySet {
        let body = serde_json::to_vec(&json!({ "keys": jwks })).unwrap();
        KeySet::new(parse_jwks(&body).unwrap(), Some(Instant::now()))
    }

    fn rsa_token(pem: &str, kid: Option<&str>, exp_offset: i64) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_rsa_pem(fixture(pem).as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &json!({ "sub": "rita", "exp": now + exp_offset }), &key).unwrap()
    }

    fn rs256() -> Validation {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation
    }

    #[test]
    fn keys_that_cannot_verify_tokens_are_skipped_not_fatal() {
        let keys = parse_jwks(
            &serde_json::to_vec(&json!({ "keys": [
                jwk("rsa1.jwk.json"),
                { "kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" },
                jwk_with("rsa2.jwk.json", &[("kid", Some("for-encryption")), ("use", Some("enc"))]),
                jwk_with("rsa2.jwk.json", &[("kid", Some("oaep")), ("alg", Some("RSA-OAEP"))]),
                jwk_with("ec1.jwk.json", &[("kid", Some("p521")), ("crv", Some("P-521")), ("alg", None)]),
                { "kty": "XYZ", "kid": "from-the-future" },
                { "kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB" },
                jwk_with("ec1.jwk.json", &[("alg", Some("ES512"))]),
                jwk("ec1.jwk.json"),
            ] }))
            .unwrap(),
        )
        .unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["rsa-1", "ec-1"]);
        assert_eq!((keys[0].kind, keys[0].alg), (KeyKind::Rsa, Some(Algorithm::RS256)));
        assert_eq!((keys[1].kind, keys[1].alg), (KeyKind::P256, Some(Algorithm::ES256)));
        assert!(parse_jwks(b"{\"keys\": 3}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn a_key_verifies_only_its_family_and_its_named_algorithm() {
        let set = set_of(vec![jwk("rsa1.jwk.json"), jwk("ec1.jwk.json"), jwk_with("rsa2.jwk.json", &[("alg", None)])]);
        assert_eq!(set.lookup(Some("rsa-1"), Algorithm::RS256), Lookup::Found(vec![0]));
        assert_eq!(set.lookup(Some("rsa-1"), Algorithm::PS256), Lookup::WrongAlgorithm, "the JWKS names RS256");
        assert_eq!(set.lookup(Some("rsa-1"), Algorithm::ES256), Lookup::WrongAlgorithm);
        assert_eq!(set.lookup(Some("ec-1"), Algorithm::ES256), Lookup::Found(vec![1]));
        assert_eq!(set.lookup(Some("ec-1"), Algorithm::ES384), Lookup::WrongAlgorithm, "P-256 is for ES256");
        assert_eq!(set.lookup(Some("rsa-2"), Algorithm::PS512), Lookup::Found(vec![2]), "no alg: the family decides");
        assert_eq!(set.lookup(Some("rsa-2"), Algorithm::EdDSA), Lookup::WrongAlgorithm);
        assert_eq!(set.lookup(Some("bogus"), Algorithm::RS256), Lookup::Unknown);
        // Without kid: every key of the family, whose named alg (if any) is the token's.
        assert_eq!(set.lookup(None, Algorithm::RS256), Lookup::Found(vec![0, 2]));
        assert_eq!(set.lookup(None, Algorithm::PS256), Lookup::Found(vec![2]));
        assert_eq!(set.lookup(None, Algorithm::ES256), Lookup::Found(vec![1]));
        assert_eq!(set.lookup(None, Algorithm::ES384), Lookup::Unknown);
        assert_eq!(set.lookup(None, Algorithm::EdDSA), Lookup::Unknown);
    }

    #[test]
    fn keys_without_kid_come_first_and_at_most_sixteen_are_tried() {
        let set = set_of(vec![jwk("rsa1.jwk.json"), jwk_with("rsa2.jwk.json", &[("kid", None)])]);
        assert_eq!(set.lookup(None, Algorithm::RS256), Lookup::Found(vec![1, 0]));
        let many = set_of((0..40).map(|_| jwk_with("rsa1.jwk.json", &[("kid", None)])).collect());
        assert_eq!(many.lookup(None, Algorithm::RS256), Lookup::Found((0..MAX_KEYS_TRIED).collect()));
        let same_kid = set_of((0..40).map(|_| jwk("rsa1.jwk.json")).collect());
        assert_eq!(same_kid.lookup(Some("rsa-1"), Algorithm::RS256), Lookup::Found((0..MAX_KEYS_TRIED).collect()));
    }

    #[test]
    fn the_first_key_whose_signature_verifies_decides() {
        let set =
            set_of(vec![jwk_with("rsa1.jwk.json", &[("kid", None)]), jwk_with("rsa2.jwk.json", &[("kid", None)])]);
        let [one, two] = [&set.keys[0].key, &set.keys[1].key];
        let by_two = rsa_token("rsa2.pem", None, 600);
        assert_eq!(decode_with_any(&by_two, [one, two], &rs256()).unwrap().claims["sub"], "rita");
        assert_eq!(decode_with_any(&by_two, [one], &rs256()).unwrap_err(), TokenError::BadSignature);
        assert_eq!(decode_with_any(&by_two, [], &rs256()).unwrap_err(), TokenError::UnknownKey);
        // Once a key's signature verifies, its verdict on the claims is final.
        let expired = rsa_token("rsa2.pem", None, -600);
        assert_eq!(decode_with_any(&expired, [one, two], &rs256()).unwrap_err(), TokenError::Expired);
    }

    /// A JWKS endpoint on loopback answering `status` after `delay`, counting its fetches.
    async fn provider(status: u16, delay: Duration) -> (Url, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let keys = json!({ "keys": [jwk("rsa1.jwk.json")] });
        let router = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (counted, keys) = (counted.clone(), keys.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(keys))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap()).parse().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (url, fetches)
    }

    fn verifier(url: Url, min_refresh: Duration) -> Arc<JwtVerifier> {
        JwtVerifier::new(JwtSettings {
            secret: None,
            jwks_url: Some(url),
            issuer: None,
            audience: None,
            leeway: Duration::ZERO,
            jwks_min_refresh: min_refresh,
            jwks_ttl: Duration::from_secs(300),
            jwks_max_stale: Duration::from_secs(3600),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_wait_for_a_fetch_reuse_its_result() {
        let (url, fetches) = provider(200, Duration::from_millis(300)).await;
        let verifier = verifier(url, Duration::ZERO);
        let token = rsa_token("rsa1.pem", Some("rsa-1"), 600);
        let results = futures::future::join_all((0..8).map(|_| verifier.verify(&token))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_waited_for_a_failed_fetch_do_not_retry_it() {
        // With a `min_refresh` of a minute, nothing but the first fetch may reach the provider:
        // whether a request starts before or after that fetch failed, it must not retry it.
        let (url, fetches) = provider(500, Duration::from_millis(300)).await;
        let verifier = verifier(url, Duration::from_secs(60));
        let token = rsa_token("rsa1.pem", Some("rsa-1"), 600);
        let results = futures::future::join_all((0..8).map(|_| verifier.verify(&token))).await;
        assert!(results.iter().all(|r| r.as_ref().err() == Some(&TokenError::KeysUnavailable)), "{results:?}");
        assert_eq!(verifier.verify(&token).await.unwrap_err(), TokenError::KeysUnavailable);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }
}
