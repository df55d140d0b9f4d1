//! `ferry doctor`: checks a configuration end to end and says, in plain words, what is wrong
//! and how to fix it. One line per check: ok, warn or fail.
//!
//! It answers the first question of everyone following the guide, "why does my upload fail?":
//! keys the bucket refuses, a clock the bucket disagrees with, a provider that refuses a header
//! Ferry signs, a CORS rule that misses the page's origin or hides `ETag`, a database role that
//! bypasses row-level security, migrations not run, an identity provider that cannot be reached.
//! It changes nothing but one probe object, which it deletes.

use std::time::Duration;

use reqwest::StatusCode;

use crate::config::{Config, JwtSettings, S3Config, StoreConfig};
use crate::db::inspect::{self, DbFacts};
use crate::storage::{ObjectStore, PutRequest, S3Store};

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub area: &'static str,
    pub message: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{status}  {:<8}  {}", self.area, self.message)
    }
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, status: Status, area: &'static str, message: impl Into<String>) {
        self.0.push(Check { status, area, message: message.into() });
    }
    fn ok(&mut self, area: &'static str, message: impl Into<String>) {
        self.add(Status::Ok, area, message);
    }
    fn warn(&mut self, area: &'static str, message: impl Into<String>) {
        self.add(Status::Warn, area, message);
    }
    fn fail(&mut self, area: &'static str, message: impl Into<String>) {
        self.add(Status::Fail, area, message);
    }
}

/// Skew the bucket tolerates before refusing signatures is 15 minutes; Ferry's URLs live 5.
const SKEW_FAIL: i64 = 300;
const SKEW_WARN: i64 = 30;

/// Runs every check of `cfg`.
pub async fn run(cfg: &Config) -> Vec<Check> {
    let mut report = Report::default();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    match &cfg.store {
        StoreConfig::External(s3) => bucket(&mut report, &http, s3, &cfg.server.cors_origins).await,
        StoreConfig::Embedded(_) => report.ok(
            "bucket",
            "the embedded store (no bucket configured): it serves itself, with CORS for FERRY_CORS_ORIGINS",
        ),
    }
    database(&mut report, cfg).await;
    identity(&mut report, &http, cfg.auth.as_ref()).await;
    report.0
}

async fn bucket(report: &mut Report, http: &reqwest::Client, s3: &S3Config, origins: &[String]) {
    let credentials = rusty_s3::Credentials::new(s3.access_key_id.clone(), s3.secret_access_key.expose().to_owned());
    let Ok(bucket) =
        rusty_s3::Bucket::new(s3.endpoint.clone(), rusty_s3::UrlStyle::Path, s3.bucket.clone(), s3.region.clone())
    else {
        return report.fail("bucket", format!("{:?} is not a usable bucket name", s3.bucket));
    };
    // Credentials and the clock, with one signed HEAD of the bucket.
    let head = rusty_s3::S3Action::sign(&bucket.head_bucket(Some(&credentials)), Duration::from_secs(60));
    let answer = match http.head(head).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return report.fail(
                "bucket",
                format!("cannot reach {} ({}): check B2_ENDPOINT_URL / S3_ENDPOINT", s3.endpoint, describe(&e)),
            );
        }
    };
    match answer.status() {
        status if status.is_success() => report.ok("bucket", format!("credentials accepted for bucket {}", s3.bucket)),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
            return report.fail(
                "bucket",
                format!(
                    "the bucket refuses the key ({}): check B2_APPLICATION_KEY_ID and B2_APPLICATION_KEY (or S3_*), \
                     and that the key may use bucket {}",
                    answer.status(),
                    s3.bucket
                ),
            );
        }
        StatusCode::NOT_FOUND => {
            return report
                .fail("bucket", format!("no bucket named {} at {}: check B2_BUCKET_NAME", s3.bucket, s3.endpoint));
        }
        status => return report.fail("bucket", format!("HEAD bucket answered {status}")),
    }
    if let Some(skew) = answer
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|d| (chrono::Utc::now() - d.to_utc()).num_seconds())
    {
        let text = format!(
            "this machine's clock is {} s {} the bucket's",
            skew.abs(),
            if skew > 0 { "ahead of" } else { "behind" }
        );
        match skew.abs() {
            s if s > SKEW_FAIL => {
                report.fail("bucket", format!("{text}: signatures will be refused; fix the clock (NTP)"))
            }
            s if s > SKEW_WARN => {
                report.warn("bucket", format!("{text}: short-lived URLs may fail; fix the clock (NTP)"))
            }
            _ => report.ok("bucket", format!("clocks agree ({text})")),
        }
    }

    // A probe object: presigned PUT with the headers Ferry signs, HEAD, GET, DELETE.
    let Ok(store) = S3Store::new(s3) else { return report.fail("bucket", "cannot build the S3 client") };
    let key = format!("ferry-doctor-{}.txt", uuid::Uuid::new_v4().simple());
    let body = b"ferry doctor probe";
    let md5 = {
        use base64::Engine as _;
        use md5::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
    };
    let sha256 = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body))
    };
    let put = PutRequest {
        key: &key,
        content_type: Some("text/plain"),
        content_length: Some(body.len() as u64),
        content_md5: Some(&md5),
        checksum_sha256: s3.checksum_headers.then_some(sha256.as_str()),
        ttl: Duration::from_secs(120),
    };
    let url = store.presign_put(&put);
    let mut request = http.put(url.clone()).body(body.to_vec());
    for (name, value) in put.headers() {
        request = request.header(name, value);
    }
    if let Some(origin) = origins.first() {
        request = request.header("origin", origin);
    }
    let put_answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return report.fail("bucket", format!("a presigned PUT did not get through: {}", describe(&e))),
    };
    let put_exposes_etag = exposes_etag(put_answer.headers());
    if !put_answer.status().is_success() {
        let status = put_answer.status();
        let text = put_answer.text().await.unwrap_or_default();
        let hint = if s3.checksum_headers && text.contains("checksum") {
            ": the provider refuses x-amz-checksum-* (B2 does): unset FERRY_S3_CHECKSUM_HEADERS"
        } else {
            ": the provider refuses a header Ferry signs (Content-Type, Content-Length, Content-MD5)"
        };
        return report.fail("bucket", format!("a presigned PUT was refused ({status}){hint}"));
    }
    report.ok("bucket", "a presigned PUT with Content-Type, Content-Length and Content-MD5 went through");
    match store.head(&key).await {
        Ok(Some(info)) if info.size == body.len() as u64 => report.ok("bucket", "HEAD reports the probe's size"),
        Ok(other) => report.fail("bucket", format!("HEAD of the probe answered {other:?}")),
        Err(e) => report.fail("bucket", format!("HEAD of the probe failed: {e}")),
    }
    let get = store.presign_get(&key, None, Duration::from_secs(60));
    match http.get(get).send().await {
        Ok(a) if a.status().is_success() => match a.bytes().await {
            Ok(bytes) if bytes[..] == body[..] => report.ok("bucket", "a presigned GET returns the probe's bytes"),
            _ => report.fail("bucket", "a presigned GET of the probe returned other bytes"),
        },
        Ok(a) => report.fail("bucket", format!("a presigned GET of the probe answered {}", a.status())),
        Err(e) => report.fail("bucket", format!("a presigned GET of the probe failed: {}", describe(&e))),
    }
    match store.delete(&key).await {
        Ok(()) => report.ok("bucket", "the probe was deleted"),
        Err(e) => report.fail("bucket", format!("the probe {key} could not be deleted: {e}")),
    }

    // CORS: what a browser on each configured origin would be told.
    if origins.is_empty() {
        report.warn(
            "cors",
            "FERRY_CORS_ORIGINS is empty: list the origins of your pages (and of Ferry's own page) and apply them with \
             `ferry bucket cors --origin ...`",
        );
    }
    for origin in origins {
        let preflight = http
            .request(reqwest::Method::OPTIONS, url.clone())
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
            .await;
        let fix = format!("apply the rules with `ferry bucket cors --origin {origin}`");
        let preflight = match preflight {
            Ok(a) => a,
            Err(e) => {
                report.fail("cors", format!("{origin}: the preflight did not get through ({})", describe(&e)));
                continue;
            }
        };
        let allowed = preflight
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == origin || v == "*");
        if !preflight.status().is_success() || !allowed {
            report.fail("cors", format!("{origin}: the bucket does not allow PUT from this origin: {fix}"));
            continue;
        }
        report.ok("cors", format!("{origin}: PUT with Content-Type is allowed"));
        if exposes_etag(preflight.headers()) || (origins.first() == Some(origin) && put_exposes_etag) {
            report.ok("cors", format!("{origin}: ETag is exposed (multipart uploads can read it)"));
        } else {
            report.fail("cors", format!("{origin}: ETag is not exposed, so the page's multipart uploads fail: {fix}"));
        }
    }

    // The public endpoint browsers are sent to.
    if s3.public_endpoint != s3.endpoint {
        match http.get(s3.public_endpoint.clone()).send().await {
            Ok(_) => report.ok("urls", format!("the public endpoint {} answers", s3.public_endpoint)),
            Err(e) => report.fail(
                "urls",
                format!(
                    "the public endpoint {} cannot be reached ({}): check S3_PUBLIC_ENDPOINT",
                    s3.public_endpoint,
                    describe(&e)
                ),
            ),
        }
    }
}

fn exposes_etag(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all("access-control-expose-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|h| h.trim().eq_ignore_ascii_case("etag") || h.trim() == "*")
}

async fn database(report: &mut Report, cfg: &Config) {
    let facts: DbFacts = match inspect::inspect(&cfg.database, &cfg.server.data_dir).await {
        Ok(facts) => facts,
        Err(e) => {
            return report.fail(
                "database",
                format!(
                    "cannot connect ({}): check DATABASE_URL (host, password, sslmode)",
                    crate::telemetry::error_chain(&e)
                ),
            );
        }
    };
    report.ok("database", format!("reachable: {}", facts.describe));
    if let Some(version) = &facts.tls {
        let binding = if facts.channel_binding_required { ", channel binding required and done" } else { "" };
        report.ok("database", format!("the session is encrypted ({version}){binding}"));
    } else if facts.describe.starts_with("Postgres") {
        report.warn("database", "the session is not encrypted: add sslmode=require (Neon needs it)");
    }
    match facts.applied_migrations.cmp(&facts.known_migrations) {
        std::cmp::Ordering::Equal => report.ok("database", format!("migrations current ({})", facts.known_migrations)),
        std::cmp::Ordering::Less => report.fail(
            "database",
            format!(
                "{} of {} migrations applied: run `ferry migrate` (or start `ferry serve` once)",
                facts.applied_migrations, facts.known_migrations
            ),
        ),
        std::cmp::Ordering::Greater => {
            report.warn("database", "the database was migrated by a newer Ferry than this one")
        }
    }
    if facts.bypasses_rls {
        report.fail(
            "database",
            "the runtime role bypasses row-level security (superuser or BYPASSRLS): every user could see every row; \
             use a separate runtime role (see the README's two-role set-up)",
        );
    } else if facts.owns_tables {
        report.warn(
            "database",
            "the runtime role owns b2_files: prefer a separate runtime role and DATABASE_MIGRATION_URL",
        );
    } else if facts.describe.starts_with("Postgres") {
        report.ok("database", "the runtime role is subject to row-level security");
    }
}

async fn identity(report: &mut Report, http: &reqwest::Client, auth: Option<&JwtSettings>) {
    let Some(auth) = auth else {
        return report.warn(
            "identity",
            "dev mode: any caller can claim any user; set FERRY_JWT_SECRET or FERRY_JWKS_URL before exposing Ferry",
        );
    };
    if auth.secret.is_some() {
        report.ok("identity", "HS256/384/512 tokens with FERRY_JWT_SECRET (32 characters or more)");
    }
    if let Some(url) = &auth.jwks_url {
        match http.get(url.clone()).send().await {
            Ok(a) if a.status().is_success() => {
                let usable = a.json::<serde_json::Value>().await.ok().map_or(0, |jwks| {
                    jwks["keys"].as_array().map_or(0, |keys| {
                        keys.iter().filter(|k| matches!(k["kty"].as_str(), Some("RSA" | "EC" | "OKP"))).count()
                    })
                });
                if usable > 0 {
                    report.ok("identity", format!("the JWKS at {url} has {usable} usable keys"));
                } else {
                    report
                        .fail("identity", format!("the JWKS at {url} has no RSA, EC or OKP key: check FERRY_JWKS_URL"));
                }
            }
            Ok(a) => {
                report.fail("identity", format!("the JWKS at {url} answered {}: check FERRY_JWKS_URL", a.status()))
            }
            Err(e) => report.fail("identity", format!("the JWKS at {url} cannot be reached ({})", describe(&e))),
        }
    }
    if auth.issuer.is_none() || auth.audience.is_none() {
        report.warn(
            "identity",
            "FERRY_JWT_ISSUER or FERRY_JWT_AUDIENCE is unset: tokens your provider issued for other apps are accepted",
        );
    } else {
        report.ok("identity", "issuer and audience are checked");
    }
}

/// A reqwest error without its URL (which may carry a signature).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
