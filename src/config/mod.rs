//! Typed configuration in sections: defaults, then `./.env`, then the environment.
//!
//! Everything is read through [`Config::from_lookup`], which takes a lookup function instead of
//! touching the process environment, so every test builds its own configuration. Each default
//! is one constant in [`defaults`]; the CLI and the client use the same constants.

pub mod defaults;
mod secret;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub use secret::Secret;

/// Why the configuration cannot be used. Start-up errors name the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("incomplete bucket configuration: set {missing} (or unset {present} to use the embedded store)")]
    PartialBucket { missing: String, present: String },
    #[error("{var} is not valid: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("DATABASE_URL has an unsupported scheme {scheme:?}: use postgres://, postgresql:// or sqlite://")]
    DatabaseScheme { scheme: String },
    #[error("cannot read the environment file {path}: {reason}")]
    EnvFile { path: String, reason: String },
}

/// The whole configuration, one section per concern.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub database: DatabaseConfig,
    pub uploads: UploadConfig,
    /// JWT verification; `None` means dev mode.
    pub auth: Option<JwtSettings>,
    pub sweep: SweepConfig,
    pub page: PageConfig,
    pub webhook: WebhookConfig,
}

/// Where the API listens, and where Ferry keeps its local files.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// SQLite file, embedded store, generated secrets.
    pub data_dir: PathBuf,
    /// Browser origins allowed to call the API and the embedded store.
    pub cors_origins: Vec<String>,
    /// Allow dev-mode identity (X-User-Id) on a non-loopback address.
    pub insecure_dev_auth: bool,
}

/// What one client, or all of them together, may hold or ask of Ferry.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// A client must send a request's headers within this long; an idle keep-alive connection
    /// is closed after it too (hyper starts the clock when it waits for a request head).
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle_timeout: Duration,
    /// Open connections per listener (API, embedded store); more are closed at once.
    pub max_connections: usize,
    /// Sustained requests per second per client address on the upload routes; 0 turns the
    /// limit off.
    pub rate_per_second: u32,
    /// Requests a client may make in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` names the client for the rate
    /// limit; empty: the header is ignored and the connection's peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve `/metrics` on this address only (not on the API), when set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// On shutdown, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
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
    /// Whether the provider takes `x-amz-checksum-*` headers (B2 refuses them): only then is a
    /// client's SHA-256 signed into its URL.
    pub checksum_headers: bool,
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

/// Which database, and how Ferry uses its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub backend: DatabaseBackend,
    /// Most connections held at once.
    pub pool_size: u32,
    /// Longest wait for (or to open) a connection before answering 503.
    pub timeout: Duration,
    /// Longest a statement may run (Postgres).
    pub statement_timeout: Duration,
    /// Postgres: named statements prepared once per connection; off for poolers in transaction
    /// mode that do not keep them (PgBouncer before 1.21).
    pub prepared_statements: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// SQLite file; `None` means `$FERRY_DATA_DIR/ferry.db`.
    Sqlite(Option<String>),
    Postgres {
        url: Secret,
        /// The owning role's URL for migrations and cleanup (`DATABASE_MIGRATION_URL`).
        migration_url: Option<Secret>,
    },
}

impl DatabaseConfig {
    /// A backend with the default pool and timeouts.
    pub fn new(backend: DatabaseBackend) -> Self {
        Self {
            backend,
            pool_size: defaults::DB_POOL_SIZE,
            timeout: defaults::DB_TIMEOUT,
            statement_timeout: defaults::DB_STATEMENT_TIMEOUT,
            prepared_statements: true,
        }
    }
}

/// The rules and timings of uploads.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// How long a presigned upload URL is valid.
    pub url_ttl: Duration,
    /// How long a confirm is accepted after the upload URL expired (slow uploads finish late).
    pub confirm_grace: Duration,
    /// How long a presigned download URL is valid.
    pub download_url_ttl: Duration,
    /// Largest accepted object, in bytes.
    pub max_file_size: u64,
    /// Allowed content types (`image/png`, `image/*`); empty means any well-formed type.
    pub allowed_types: Vec<String>,
    /// Key for upload tickets; `None`: derived from the bucket secret.
    pub ticket_secret: Option<Secret>,
    /// Public bucket: downloads redirect to the public URL instead of a signed one.
    pub public_bucket: bool,
    /// Per-user limit on stored bytes; `None`: no limit.
    pub quota_bytes: Option<u64>,
    /// Per-user limit on stored files; `None`: no limit.
    pub quota_files: Option<u64>,
}

/// JWT verification settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub secret: Option<Secret>,
    pub jwks_url: Option<Url>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
    /// At most one JWKS fetch per this interval, whatever `kid`s arrive, so a stream of bogus
    /// `kid`s cannot hammer the provider.
    pub jwks_min_refresh: Duration,
    /// How long a fetched key set counts as fresh.
    pub jwks_ttl: Duration,
    /// How long keys keep working after the last successful fetch, while the provider is down;
    /// past that, tokens are refused with 503 (a key the provider has revoked must not live on).
    pub jwks_max_stale: Duration,
}

/// Cleanup of abandoned uploads and half-done deletes.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// How often `ferry serve` sweeps; zero disables it.
    pub interval: Duration,
    /// Cleanup takes over a delete left half-done for this long.
    pub delete_age: Duration,
    /// Cleanup waits this long past an upload's confirm deadline before removing it.
    pub margin: Duration,
    /// The embedded store's multipart uploads that saw no part for this long are removed.
    pub multipart_age: Duration,
}

/// The upload page.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// The page sends files larger than this in parts (multipart).
    pub multipart_threshold: u64,
    /// The page computes an MD5 digest (signed into the URL) for files up to this size.
    pub checksum_max_size: u64,
}

/// Backblaze B2 event notifications.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Signing secret of B2 event notifications; `None` disables the webhook.
    pub b2_event_secret: Option<Secret>,
}

/// The variable naming another environment file than `./.env`.
pub const ENV_FILE_VAR: &str = "FERRY_ENV_FILE";

impl Config {
    /// Reads the configuration from the process environment, after `./.env` (or the file
    /// `FERRY_ENV_FILE` names). Only the working directory is searched: a `.env` in a parent
    /// directory (say `/tmp`) is never read.
    pub fn from_env() -> Result<Self, ConfigError> {
        let named = std::env::var_os(ENV_FILE_VAR).map(PathBuf::from);
        let path = named.clone().unwrap_or_else(|| PathBuf::from(".env"));
        match dotenvy::from_path(&path) {
            Ok(()) => {}
            // A missing ./.env is normal; a missing named file is a mistake.
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => {}
            Err(e) => return Err(ConfigError::EnvFile { path: path.display().to_string(), reason: e.to_string() }),
        }
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let host = parse_or(&get, "FERRY_HOST", defaults::HOST)?;
        Ok(Self {
            server: ServerConfig {
                host,
                port: parse_or(&get, "PORT", defaults::PORT)?,
                data_dir: PathBuf::from(get("FERRY_DATA_DIR").unwrap_or_else(|| defaults::DATA_DIR.into())),
                cors_origins: cors_origins(get("FERRY_CORS_ORIGINS"))?,
                insecure_dev_auth: parse_bool(&get, "FERRY_INSECURE_DEV_AUTH")?,
            },
            limits: LimitsConfig {
                header_timeout: seconds_or(&get, "FERRY_HEADER_TIMEOUT", defaults::HEADER_TIMEOUT)?,
                body_idle_timeout: seconds_or(&get, "FERRY_BODY_IDLE_TIMEOUT", defaults::BODY_IDLE_TIMEOUT)?,
                max_connections: parse_or(&get, "FERRY_MAX_CONNECTIONS", defaults::MAX_CONNECTIONS)?,
                rate_per_second: parse_or(&get, "FERRY_RATE_LIMIT", defaults::RATE_PER_SECOND)?,
                rate_burst: parse_or(&get, "FERRY_RATE_LIMIT_BURST", defaults::RATE_BURST)?,
                trusted_proxies: trusted_proxies(get("FERRY_TRUSTED_PROXIES"))?,
                shutdown_grace: seconds_or(&get, "FERRY_SHUTDOWN_GRACE", defaults::SHUTDOWN_GRACE)?,
                metrics_addr: get("FERRY_METRICS_ADDR")
                    .map(|a| {
                        a.parse().map_err(|e| ConfigError::Invalid {
                            var: "FERRY_METRICS_ADDR",
                            reason: format!("{a:?}: {e} (write host:port, like 127.0.0.1:9100)"),
                        })
                    })
                    .transpose()?,
            },
            store: store_config(&get, host)?,
            database: DatabaseConfig {
                backend: match get("DATABASE_URL") {
                    None => DatabaseBackend::Sqlite(None),
                    Some(url) => database_backend(&url, get("DATABASE_MIGRATION_URL"))?,
                },
                pool_size: parse_or(&get, "FERRY_DB_POOL_SIZE", defaults::DB_POOL_SIZE)?,
                timeout: seconds_or(&get, "FERRY_DB_TIMEOUT", defaults::DB_TIMEOUT)?,
                statement_timeout: seconds_or(&get, "FERRY_DB_STATEMENT_TIMEOUT", defaults::DB_STATEMENT_TIMEOUT)?,
                prepared_statements: get("FERRY_DB_PREPARED_STATEMENTS").is_none()
                    || parse_bool(&get, "FERRY_DB_PREPARED_STATEMENTS")?,
            },
            uploads: UploadConfig {
                url_ttl: seconds_or(&get, "FERRY_UPLOAD_URL_TTL", defaults::UPLOAD_URL_TTL)?,
                confirm_grace: seconds_or(&get, "FERRY_CONFIRM_GRACE", defaults::CONFIRM_GRACE)?,
                download_url_ttl: seconds_or(&get, "FERRY_DOWNLOAD_URL_TTL", defaults::DOWNLOAD_URL_TTL)?,
                max_file_size: parse_or(&get, "FERRY_MAX_FILE_SIZE", defaults::MAX_FILE_SIZE)?,
                allowed_types: list(get("FERRY_ALLOWED_TYPES")),
                ticket_secret: get("FERRY_UPLOAD_SECRET").map(Secret::new),
                public_bucket: parse_bool(&get, "FERRY_PUBLIC_BUCKET")?,
                quota_bytes: get("FERRY_QUOTA_BYTES").map(|_| parse_or(&get, "FERRY_QUOTA_BYTES", 0)).transpose()?,
                quota_files: get("FERRY_QUOTA_FILES").map(|_| parse_or(&get, "FERRY_QUOTA_FILES", 0)).transpose()?,
            },
            auth: jwt_settings(&get)?,
            sweep: SweepConfig {
                interval: seconds_or(&get, "FERRY_SWEEP_INTERVAL", defaults::SWEEP_INTERVAL)?,
                delete_age: seconds_or(&get, "FERRY_SWEEP_DELETE_AGE", defaults::SWEEP_DELETE_AGE)?,
                margin: seconds_or(&get, "FERRY_SWEEP_MARGIN", defaults::SWEEP_MARGIN)?,
                multipart_age: seconds_or(&get, "FERRY_SWEEP_MULTIPART_AGE", defaults::SWEEP_MULTIPART_AGE)?,
            },
            page: PageConfig {
                multipart_threshold: parse_or(&get, "FERRY_PAGE_MULTIPART_THRESHOLD", defaults::MULTIPART_THRESHOLD)?,
                checksum_max_size: parse_or(&get, "FERRY_PAGE_CHECKSUM_MAX_SIZE", defaults::PAGE_CHECKSUM_MAX_SIZE)?,
            },
            webhook: WebhookConfig { b2_event_secret: get("B2_EVENT_NOTIFICATION_SECRET").map(Secret::new) },
        })
    }
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn socket_text(host: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(host, port).to_string()
}

fn list(value: Option<String>) -> Vec<String> {
    value.map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

/// Browser origins: `scheme://host[:port]`, each checked at start-up (a bad one would otherwise
/// surface as a panic deep inside the CORS layer). `*` is refused: the API takes bearer tokens
/// and dev-mode identities, and a wildcard would let any web page call it.
fn cors_origins(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let var = "FERRY_CORS_ORIGINS";
    let mut origins = Vec::new();
    for origin in list(value) {
        if origin == "*" || origin == "null" {
            return Err(ConfigError::Invalid {
                var,
                reason: format!(
                    "{origin:?} would let any web page call Ferry: list each origin, like https://app.example"
                ),
            });
        }
        let url = Url::parse(&origin).map_err(|e| ConfigError::Invalid { var, reason: format!("{origin:?}: {e}") })?;
        let serialized = url.origin().ascii_serialization();
        if !matches!(url.scheme(), "http" | "https") || serialized.trim_end_matches('/') != origin.trim_end_matches('/')
        {
            return Err(ConfigError::Invalid {
                var,
                reason: format!("{origin:?} is not an origin: write scheme://host[:port], like https://app.example"),
            });
        }
        origins.push(serialized);
    }
    Ok(origins)
}

/// `FERRY_TRUSTED_PROXIES`: comma-separated addresses (`10.0.0.7`, `::1`) or networks
/// (`10.0.0.0/8`, `fd00::/8`).
fn trusted_proxies(value: Option<String>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    var: "FERRY_TRUSTED_PROXIES",
                    reason: format!("{entry:?} is neither an address nor a network (like 10.0.0.7 or 10.0.0.0/8)"),
                })
        })
        .collect()
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

fn seconds_or(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(parse_or(get, var, default.as_secs())?))
}

fn parse_bool(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { var, reason: format!("expected true or false, got {other:?}") }),
    }
}

fn jwt_settings(get: &impl Fn(&str) -> Option<String>) -> Result<Option<JwtSettings>, ConfigError> {
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
    Ok(Some(JwtSettings {
        secret,
        jwks_url,
        issuer: get("FERRY_JWT_ISSUER"),
        audience: get("FERRY_JWT_AUDIENCE"),
        leeway: seconds_or(get, "FERRY_JWT_LEEWAY", defaults::JWT_LEEWAY)?,
        jwks_min_refresh: seconds_or(get, "FERRY_JWKS_MIN_REFRESH", defaults::JWKS_MIN_REFRESH)?,
        jwks_ttl: seconds_or(get, "FERRY_JWKS_TTL", defaults::JWKS_TTL)?,
        jwks_max_stale: seconds_or(get, "FERRY_JWKS_MAX_STALE", defaults::JWKS_MAX_STALE)?,
    }))
}

fn database_backend(url: &str, migration_url: Option<String>) -> Result<DatabaseBackend, ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => {
            Ok(DatabaseBackend::Postgres { url: Secret::new(url), migration_url: migration_url.map(Secret::new) })
        }
        "sqlite" => Ok(DatabaseBackend::Sqlite(Some(url.to_owned()))),
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
            port: parse_or(get, "FERRY_STORE_PORT", defaults::STORE_PORT)?,
            public_url: get("FERRY_STORE_PUBLIC_URL").map(|u| parse_url("FERRY_STORE_PUBLIC_URL", &u)).transpose()?,
            bucket: get("FERRY_STORE_BUCKET").unwrap_or_else(|| defaults::STORE_BUCKET.into()),
            access_key_id: get("FERRY_STORE_ACCESS_KEY_ID").unwrap_or_else(|| defaults::STORE_ACCESS_KEY_ID.into()),
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
        checksum_headers: parse_bool(get, "FERRY_S3_CHECKSUM_HEADERS")?,
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
    explicit.unwrap_or_else(|| defaults::REGION.into())
}

#[cfg(test)]
mod tests;
