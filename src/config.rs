//! Typed configuration: defaults, then `.env`, then the environment.
//!
//! Everything is read through [`Config::from_lookup`], which takes a lookup function instead of
//! touching the process environment, so every test builds its own configuration.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The only way to read the value: call sites are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Why the configuration cannot be used. Start-up errors name the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("incomplete bucket configuration: set {missing} (or unset {present} to use the embedded store)")]
    PartialBucket { missing: String, present: String },
    #[error("{var} is not valid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("DATABASE_URL has an unsupported scheme {scheme:?}: use postgres://, postgresql:// or sqlite://")]
    DatabaseScheme { scheme: String },
}

/// Where objects live.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Ferry's own S3-compatible store on local disk.
    Embedded(EmbeddedStoreConfig),
    /// Any S3-compatible service: Backblaze B2, AWS S3, R2, MinIO, Garage...
    External(S3Config),
}

/// Settings of a bucket reached over the S3 API.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint Ferry itself calls (HEAD, DELETE, list).
    pub endpoint: Url,
    /// Endpoint put into the URLs handed to browsers (often the same).
    pub public_endpoint: Url,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone)]
pub struct EmbeddedStoreConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Public base URL of the embedded store, when browsers reach it by another name.
    pub public_url: Option<Url>,
    pub bucket: String,
    pub access_key_id: String,
    /// `None`: generated on first start and kept in the data directory.
    pub secret_access_key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// SQLite file; `None` means `$FERRY_DATA_DIR/ferry.db`.
    Sqlite(Option<String>),
    Postgres {
        url: Secret,
        /// The owning role's URL for migrations and cleanup (`DATABASE_MIGRATION_URL`).
        migration_url: Option<Secret>,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub database: DatabaseConfig,
    /// How long a presigned upload URL is valid.
    pub upload_url_ttl: Duration,
    /// How long a confirm is accepted after the upload URL expired (slow uploads finish late).
    pub confirm_grace: Duration,
    /// How long a presigned download URL is valid.
    pub download_url_ttl: Duration,
    /// Public bucket: downloads redirect to the public URL instead of a signed one.
    pub public_bucket: bool,
    /// Key for upload tickets; `None`: derived from the bucket secret.
    pub upload_secret: Option<Secret>,
    /// Largest accepted object, in bytes.
    pub max_file_size: u64,
    /// Allowed content types (`image/png`, `image/*`); empty means any well-formed type.
    pub allowed_types: Vec<String>,
    /// Browser origins allowed to call the API and the embedded store.
    pub cors_origins: Vec<String>,
    /// How often the background sweeper runs; zero disables it.
    pub sweep_interval: Duration,
    /// Cleanup takes over a delete left half-done for this long.
    pub sweep_delete_age: Duration,
    /// Cleanup waits this long past an upload's confirm deadline before removing it.
    pub sweep_margin: Duration,
    /// Signing secret of B2 event notifications; `None` disables the webhook.
    pub b2_event_secret: Option<Secret>,
    /// JWT verification; `None` means dev mode.
    pub jwt: Option<crate::auth::JwtSettings>,
    /// The upload page sends files larger than this in parts (multipart).
    pub page_multipart_threshold: u64,
    /// Allow dev-mode identity (X-User-Id) on a non-loopback address.
    pub insecure_dev_auth: bool,
    /// Most database connections held at once.
    pub db_pool_size: u32,
    /// Longest wait for a database connection before answering 503.
    pub db_timeout: Duration,
    /// Longest a database statement may run.
    pub db_statement_timeout: Duration,
}

/// The single-PUT limit of S3 and B2: 5 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024;

impl Config {
    /// Reads the configuration from the process environment (after `.env`, if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a present one fills only unset variables.
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let host = parse_or(&get, "FERRY_HOST", "127.0.0.1".parse().expect("literal"))?;
        let port = parse_or(&get, "PORT", 3000u16)?;
        let data_dir = PathBuf::from(get("FERRY_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let store = store_config(&get, host)?;
        let database = match get("DATABASE_URL") {
            None => DatabaseConfig::Sqlite(None),
            Some(url) => database_config(&url, get("DATABASE_MIGRATION_URL"))?,
        };
        Ok(Self {
            host,
            port,
            data_dir,
            store,
            database,
            upload_url_ttl: Duration::from_secs(parse_or(&get, "FERRY_UPLOAD_URL_TTL", 300u64)?),
            confirm_grace: Duration::from_secs(parse_or(&get, "FERRY_CONFIRM_GRACE", 3600u64)?),
            download_url_ttl: Duration::from_secs(parse_or(&get, "FERRY_DOWNLOAD_URL_TTL", 300u64)?),
            public_bucket: parse_bool(&get, "FERRY_PUBLIC_BUCKET")?,
            upload_secret: get("FERRY_UPLOAD_SECRET").map(Secret::new),
            max_file_size: parse_or(&get, "FERRY_MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE)?,
            allowed_types: list(get("FERRY_ALLOWED_TYPES")),
            cors_origins: list(get("FERRY_CORS_ORIGINS")),
            sweep_interval: Duration::from_secs(parse_or(&get, "FERRY_SWEEP_INTERVAL", 300u64)?),
            sweep_delete_age: Duration::from_secs(parse_or(&get, "FERRY_SWEEP_DELETE_AGE", 60u64)?),
            sweep_margin: Duration::from_secs(parse_or(&get, "FERRY_SWEEP_MARGIN", 300u64)?),
            jwt: jwt_settings(&get)?,
            b2_event_secret: get("B2_EVENT_NOTIFICATION_SECRET").map(Secret::new),
            page_multipart_threshold: parse_or(&get, "FERRY_PAGE_MULTIPART_THRESHOLD", 64 * 1024 * 1024u64)?,
            insecure_dev_auth: parse_bool(&get, "FERRY_INSECURE_DEV_AUTH")?,
            db_pool_size: parse_or(&get, "FERRY_DB_POOL_SIZE", 16u32)?,
            db_timeout: Duration::from_secs(parse_or(&get, "FERRY_DB_TIMEOUT", 3u64)?),
            db_statement_timeout: Duration::from_secs(parse_or(&get, "FERRY_DB_STATEMENT_TIMEOUT", 5u64)?),
        })
    }
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn socket_text(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value.map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid { var, reason: e.to_string() }),
    }
}

fn parse_bool(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { var, reason: format!("expected true or false, got {other:?}") }),
    }
}

fn jwt_settings(get: &impl Fn(&str) -> Option<String>) -> Result<Option<crate::auth::JwtSettings>, ConfigError> {
    let secret = get("FERRY_JWT_SECRET").map(Secret::new);
    let jwks_url = get("FERRY_JWKS_URL").map(|u| parse_url("FERRY_JWKS_URL", &u)).transpose()?;
    if secret.is_none() && jwks_url.is_none() {
        return Ok(None);
    }
    if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        return Err(ConfigError::Invalid {
            var: "FERRY_JWT_SECRET",
            reason: "use at least 32 characters (256 bits) for an HMAC secret".into(),
        });
    }
    Ok(Some(crate::auth::JwtSettings {
        secret,
        jwks_url,
        issuer: get("FERRY_JWT_ISSUER"),
        audience: get("FERRY_JWT_AUDIENCE"),
        leeway: Duration::from_secs(parse_or(get, "FERRY_JWT_LEEWAY", 60u64)?),
        jwks_min_refresh: Duration::from_secs(parse_or(get, "FERRY_JWKS_MIN_REFRESH", 10u64)?),
        jwks_ttl: Duration::from_secs(parse_or(get, "FERRY_JWKS_TTL", 300u64)?),
        jwks_max_stale: Duration::from_secs(parse_or(get, "FERRY_JWKS_MAX_STALE", 86_400u64)?),
    }))
}

fn database_config(url: &str, migration_url: Option<String>) -> Result<DatabaseConfig, ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => {
            Ok(DatabaseConfig::Postgres { url: Secret::new(url), migration_url: migration_url.map(Secret::new) })
        }
        "sqlite" => Ok(DatabaseConfig::Sqlite(Some(url.to_owned()))),
        other => Err(ConfigError::DatabaseScheme { scheme: other.to_owned() }),
    }
}

/// The guide's B2 names first, then the generic S3 aliases.
const BUCKET_VARS: [(&str, &str); 4] = [
    ("B2_APPLICATION_KEY_ID", "S3_ACCESS_KEY_ID"),
    ("B2_APPLICATION_KEY", "S3_SECRET_ACCESS_KEY"),
    ("B2_BUCKET_NAME", "S3_BUCKET"),
    ("B2_ENDPOINT_URL", "S3_ENDPOINT"),
];

fn store_config(get: &impl Fn(&str) -> Option<String>, host: IpAddr) -> Result<StoreConfig, ConfigError> {
    let values: Vec<Option<String>> = BUCKET_VARS.iter().map(|(b2, s3)| get(b2).or_else(|| get(s3))).collect();
    if values.iter().all(Option::is_none) {
        return Ok(StoreConfig::Embedded(EmbeddedStoreConfig {
            host,
            port: parse_or(get, "FERRY_STORE_PORT", 9000u16)?,
            public_url: get("FERRY_STORE_PUBLIC_URL").map(|u| parse_url("FERRY_STORE_PUBLIC_URL", &u)).transpose()?,
            bucket: get("FERRY_STORE_BUCKET").unwrap_or_else(|| "ferry".into()),
            access_key_id: get("FERRY_STORE_ACCESS_KEY_ID").unwrap_or_else(|| "ferry".into()),
            secret_access_key: get("FERRY_STORE_SECRET_ACCESS_KEY").map(Secret::new),
        }));
    }
    let names = |pick: &dyn Fn(&Option<String>) -> bool| {
        BUCKET_VARS
            .iter()
            .zip(&values)
            .filter(|(_, v)| pick(v))
            .map(|((b2, s3), _)| format!("{b2} (or {s3})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if values.iter().any(Option::is_none) {
        return Err(ConfigError::PartialBucket { missing: names(&|v| v.is_none()), present: names(&|v| v.is_some()) });
    }
    let [key_id, secret, bucket, endpoint] =
        <[Option<String>; 4]>::try_from(values).expect("four bucket variables").map(Option::unwrap_or_default);
    let endpoint = parse_url("B2_ENDPOINT_URL", &endpoint)?;
    let public_endpoint = match get("S3_PUBLIC_ENDPOINT") {
        Some(u) => parse_url("S3_PUBLIC_ENDPOINT", &u)?,
        None => endpoint.clone(),
    };
    let region = region_for(&endpoint, get("S3_REGION"));
    Ok(StoreConfig::External(S3Config {
        endpoint,
        public_endpoint,
        bucket,
        region,
        access_key_id: key_id,
        secret_access_key: Secret::new(secret),
    }))
}

fn parse_url(var: &'static str, value: &str) -> Result<Url, ConfigError> {
    // The guide's own example leaves the scheme off (`s3.us-west-000.backblazeb2.com`).
    let with_scheme = if value.contains("://") { value.to_owned() } else { format!("https://{value}") };
    let url = Url::parse(&with_scheme).map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::Invalid { var, reason: "expected an http:// or https:// URL with a host".into() });
    }
    Ok(url)
}

/// The region of a B2 endpoint is in its host (`s3.<region>.backblazeb2.com`).
pub fn region_for(endpoint: &Url, explicit: Option<String>) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    if let ["s3", region, "backblazeb2", "com"] = labels.as_slice() {
        return (*region).to_owned();
    }
    explicit.unwrap_or_else(|| "us-east-1".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_variables_means_embedded_store_and_sqlite() {
        let cfg = config(&[]).unwrap();
        assert!(matches!(cfg.store, StoreConfig::Embedded(_)));
        assert_eq!(cfg.database, DatabaseConfig::Sqlite(None));
        assert_eq!(cfg.port, 3000);
    }

    #[test]
    fn the_guides_five_variables_select_b2_with_region_from_host() {
        let cfg = config(&[
            ("B2_APPLICATION_KEY_ID", "kid"),
            ("B2_APPLICATION_KEY", "shh"),
            ("B2_BUCKET_NAME", "my-bucket"),
            ("B2_ENDPOINT_URL", "https://s3.us-west-004.backblazeb2.com"),
            ("DATABASE_URL", "postgresql://u:p@ep-x-pooler.neon.tech/db?sslmode=require"),
        ])
        .unwrap();
        let StoreConfig::External(s3) = cfg.store else { panic!("expected external store") };
        assert_eq!(s3.region, "us-west-004");
        assert_eq!(s3.bucket, "my-bucket");
        assert!(matches!(cfg.database, DatabaseConfig::Postgres { .. }));
    }

    #[test]
    fn a_partial_bucket_configuration_names_what_is_missing() {
        let err = config(&[("B2_BUCKET_NAME", "b"), ("S3_ENDPOINT", "http://127.0.0.1:1")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("B2_APPLICATION_KEY_ID"), "{text}");
        assert!(text.contains("B2_APPLICATION_KEY (or S3_SECRET_ACCESS_KEY)"), "{text}");
        assert!(!text.contains("missing B2_BUCKET_NAME"), "{text}");
    }

    #[test]
    fn an_unknown_database_scheme_is_refused_with_the_accepted_ones() {
        let err = config(&[("DATABASE_URL", "postgress://x")]).unwrap_err();
        assert!(err.to_string().contains("postgres://, postgresql:// or sqlite://"));
    }

    #[test]
    fn non_b2_endpoints_take_s3_region_or_us_east_1() {
        let url = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(region_for(&url, None), "us-east-1");
        assert_eq!(region_for(&url, Some("eu-west-1".into())), "eu-west-1");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let cfg = config(&[
            ("S3_ACCESS_KEY_ID", "kid"),
            ("S3_SECRET_ACCESS_KEY", "very-secret-value"),
            ("S3_BUCKET", "b"),
            ("S3_ENDPOINT", "http://127.0.0.1:1"),
            ("DATABASE_URL", "postgres://u:hunter2@localhost/db"),
        ])
        .unwrap();
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("very-secret-value"));
        assert!(!debug.contains("hunter2"));
    }
}
