//! Every default of the configuration, once. The CLI and the API client use these too.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const PORT: u16 = 3000;
pub const DATA_DIR: &str = "./data";

pub const STORE_PORT: u16 = 9000;
pub const STORE_BUCKET: &str = "ferry";
pub const STORE_ACCESS_KEY_ID: &str = "ferry";
/// The signing region of stores that do not name one (the embedded store, MinIO, moto...).
pub const REGION: &str = "us-east-1";

pub const DB_POOL_SIZE: u32 = 16;
pub const DB_TIMEOUT: Duration = Duration::from_secs(3);
pub const DB_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(300);
pub const CONFIRM_GRACE: Duration = Duration::from_secs(3600);
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(300);
/// The single-PUT limit of S3 and B2: 5 GiB.
pub const MAX_FILE_SIZE: u64 = 5 * 1024 * 1024 * 1024;

pub const JWT_LEEWAY: Duration = Duration::from_secs(60);
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);
pub const JWKS_TTL: Duration = Duration::from_secs(300);
pub const JWKS_MAX_STALE: Duration = Duration::from_secs(86_400);

pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);
pub const SWEEP_DELETE_AGE: Duration = Duration::from_secs(60);
pub const SWEEP_MARGIN: Duration = Duration::from_secs(300);
pub const SWEEP_MULTIPART_AGE: Duration = Duration::from_secs(24 * 3600);

/// Files larger than this go by multipart, from the page and from `ferry upload`: 64 MiB.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// The page computes an MD5 digest for files up to this size: 64 MiB (hashing is about
/// 200 MB/s in a browser; past the multipart threshold the page sends parts without digests).
pub const PAGE_CHECKSUM_MAX_SIZE: u64 = 64 * 1024 * 1024;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Per listener. With the open-file limit raised to its hard limit at start-up this leaves
/// room for the database pool and the store's files.
pub const MAX_CONNECTIONS: usize = 4096;
/// Requests per second per client address on the upload routes (presign, confirm, multipart).
pub const RATE_PER_SECOND: u32 = 50;
pub const RATE_BURST: u32 = 200;
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
