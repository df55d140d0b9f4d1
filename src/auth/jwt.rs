//! JWT verification for the tokens identity providers issue (Neon Auth, Stack Auth, Auth0,
//! Clerk, Supabase, Keycloak...).
//!
//! The algorithm is taken from the key, never from the token: an HS* token is checked only
//! against `FERRY_JWT_SECRET`, anything else only against a JWKS key of the same family, and
//! the token's `alg` must match the key's own `alg` when the JWKS names one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

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

struct KeySet {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// Keys without a `kid`, tried in turn.
    anonymous: Vec<(DecodingKey, Option<Algorithm>)>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// Verifies tokens; cheap to share behind an `Arc`.
pub struct JwtVerifier {
    settings: JwtSettings,
    hmac: Option<DecodingKey>,
    jwks: Option<RwLock<KeySet>>,
    http: reqwest::Client,
}

const HMAC_ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Arc<Self> {
        let hmac = settings.secret.as_ref().map(|s| DecodingKey::from_secret(s.expose().as_bytes()));
        let jwks = settings.jwks_url.as_ref().map(|_| {
            RwLock::new(KeySet { keys: HashMap::new(), anonymous: Vec::new(), fetched: None, last_attempt: None })
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client for JWKS");
        Arc::new(Self { settings, hmac, jwks, http })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let alg = header.alg;
        let key = if HMAC_ALGS.contains(&alg) {
            self.hmac.clone().ok_or(TokenError::Algorithm)?
        } else {
            self.jwks_key(header.kid.as_deref(), alg).await?
        };
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
        let data = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| classify(&e))?;
        let sub = match data.claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(TokenError::MissingSubject),
        };
        Ok(Claims { sub, all: data.claims })
    }

    async fn jwks_key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, TokenError> {
        let Some(jwks) = &self.jwks else {
            return Err(TokenError::Algorithm);
        };
        let pick = |set: &KeySet| -> Option<Result<DecodingKey, TokenError>> {
            let candidates: Vec<&(DecodingKey, Option<Algorithm>)> = match kid {
                Some(kid) => set.keys.get(kid).into_iter().collect(),
                None => set.anonymous.iter().chain(set.keys.values()).collect(),
            };
            let (key, key_alg) = candidates.into_iter().next()?;
            Some(match key_alg {
                Some(a) if *a != alg => Err(TokenError::Algorithm),
                _ => Ok(key.clone()),
            })
        };
        {
            let set = jwks.read().await;
            let fresh = set.fetched.is_some_and(|t| t.elapsed() < self.settings.jwks_ttl);
            if let Some(found) = pick(&set)
                && fresh
            {
                return found;
            }
        }
        let mut set = jwks.write().await;
        let may_fetch = set.last_attempt.is_none_or(|t| t.elapsed() >= self.settings.jwks_min_refresh);
        let mut refreshed = false;
        if may_fetch {
            set.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(fetched) => {
                    set.keys = fetched.keys;
                    set.anonymous = fetched.anonymous;
                    set.fetched = Some(Instant::now());
                    refreshed = true;
                }
                // Stale keys keep working while the provider is down.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh the JWKS; using the keys already known")
                }
            }
        }
        // Keys fetched just now are never stale; older ones only until `jwks_max_stale`.
        let too_stale = set.fetched.is_none_or(|t| t.elapsed() > self.settings.jwks_max_stale && !refreshed);
        match pick(&set) {
            _ if too_stale => Err(TokenError::KeysUnavailable),
            Some(found) => found,
            None => Err(TokenError::UnknownKey),
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let url = self.settings.jwks_url.clone().expect("JWKS configured");
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("JWKS answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &set.keys {
            // A symmetric key published in a JWKS could be used by anyone to sign: never trust one.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), (key, alg));
                }
                None => anonymous.push((key, alg)),
            }
        }
        Ok(KeySet { keys, anonymous, fetched: None, last_attempt: None })
    }
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
