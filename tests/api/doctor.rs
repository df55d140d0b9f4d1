//! `ferry doctor` against real set-ups, good and deliberately broken: the real binary, a real
//! bucket (a standalone store, or moto for CORS rules without `ETag`), real Postgres roles, and
//! an identity provider that cannot be reached. Each broken part is named in its own FAIL line.

use std::path::Path;

use crate::helpers::{ExternalStore, fresh_database_on};

const SECRET: &str = "an HS256 secret of at least thirty-two characters";
const ORIGIN: &str = "https://app.example";

/// Runs `ferry doctor` (or another command) with exactly `vars`, in `dir`.
async fn ferry(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FERRY_DATA_DIR", dir.join("data"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

fn lines_with<'a>(report: &'a str, status: &str) -> Vec<&'a str> {
    report.lines().filter(|l| l.starts_with(status)).collect()
}

fn identity() -> Vec<(&'static str, String)> {
    vec![
        ("FERRY_JWT_SECRET", SECRET.into()),
        ("FERRY_JWT_ISSUER", "https://auth.example".into()),
        ("FERRY_JWT_AUDIENCE", "ferry".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_set_up_is_all_ok() {
    let store = ExternalStore::start_with_cors(&[ORIGIN]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars: Vec<(&str, String)> = store.vars();
    vars.extend(identity());
    vars.push(("FERRY_CORS_ORIGINS", ORIGIN.into()));
    let (code, _) = ferry(dir.path(), &["migrate"], &vars).await;
    assert_eq!(code, 0);
    let (code, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert_eq!(code, 0, "{report}");
    assert!(lines_with(&report, "FAIL").is_empty() && lines_with(&report, "warn").is_empty(), "{report}");
    for expected in [
        "credentials accepted",
        "clocks agree",
        "a presigned PUT with Content-Type, Content-Length and Content-MD5 went through",
        "a presigned GET returns the probe's bytes",
        "the probe was deleted",
        "https://app.example: PUT with Content-Type is allowed",
        "https://app.example: ETag is exposed",
        "migrations current",
        "issuer and audience are checked",
    ] {
        assert!(report.contains(expected), "{expected:?} in\n{report}");
    }
    // The probe left nothing behind.
    let objects = walk(store.root.path());
    assert!(objects.iter().all(|p| !p.contains("ferry-doctor")), "{objects:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(text);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_and_a_missing_cors_rule_are_named() {
    let store = ExternalStore::start_with_cors(&[ORIGIN]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut vars: Vec<(&str, String)> =
        store.vars().into_iter().filter(|(k, _)| *k != "S3_SECRET_ACCESS_KEY").collect();
    vars.push(("S3_SECRET_ACCESS_KEY", "not the secret".into()));
    vars.extend(identity());
    let (code, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert_eq!(code, 1, "{report}");
    let failed = lines_with(&report, "FAIL");
    assert!(
        failed.iter().any(|l| l.contains("the bucket refuses the key") && l.contains("B2_APPLICATION_KEY")),
        "{report}"
    );

    // Right keys, but the page's origin is not in the bucket's CORS rules.
    let mut vars: Vec<(&str, String)> = store.vars();
    vars.extend(identity());
    vars.push(("FERRY_CORS_ORIGINS", "https://other.example".into()));
    let (code, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert_eq!(code, 1, "{report}");
    let failed = lines_with(&report, "FAIL");
    assert!(
        failed.iter().any(|l| l.contains("https://other.example: the bucket does not allow PUT from this origin")
            && l.contains("ferry bucket cors --origin https://other.example")),
        "{report}"
    );
}

/// A CORS rule that allows the origin but does not expose `ETag` (moto applies PutBucketCors
/// rules as S3 does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_rules_that_hide_etag_are_named() {
    let endpoint =
        std::env::var("FERRY_TEST_MOTO_URL").expect("FERRY_TEST_MOTO_URL (set by the README's test command)");
    let bucket = format!("doctor-{}", uuid::Uuid::new_v4().simple());
    let cfg = ferry::config::S3Config {
        endpoint: endpoint.parse().unwrap(),
        public_endpoint: endpoint.parse().unwrap(),
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        access_key_id: "moto-key".into(),
        secret_access_key: ferry::config::Secret::new("moto-secret"),
        checksum_headers: false,
    };
    let bucket_handle =
        rusty_s3::Bucket::new(endpoint.parse().unwrap(), rusty_s3::UrlStyle::Path, bucket.clone(), "us-east-1")
            .unwrap();
    let credentials = rusty_s3::Credentials::new("moto-key", "moto-secret");
    let create = bucket_handle.create_bucket(&credentials);
    let url = rusty_s3::S3Action::sign(&create, std::time::Duration::from_secs(60));
    let created = reqwest::Client::new().put(url).header("content-length", "0").send().await.unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    // Allowed origin and methods, no ExposeHeader.
    let rules = format!(
        "<CORSConfiguration><CORSRule><AllowedOrigin>{ORIGIN}</AllowedOrigin><AllowedMethod>PUT</AllowedMethod>\
         <AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule></CORSConfiguration>"
    );
    let put_cors = format!("{endpoint}/{bucket}?cors");
    assert!(reqwest::Client::new().put(put_cors).body(rules).send().await.unwrap().status().is_success());

    let dir = tempfile::tempdir().unwrap();
    let mut vars = vec![
        ("S3_ENDPOINT", endpoint.clone()),
        ("S3_BUCKET", bucket.clone()),
        ("S3_ACCESS_KEY_ID", "moto-key".into()),
        ("S3_SECRET_ACCESS_KEY", "moto-secret".into()),
        ("FERRY_CORS_ORIGINS", ORIGIN.into()),
    ];
    vars.extend(identity());
    let (code, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("https://app.example: PUT with Content-Type is allowed"), "{report}");
    assert!(
        lines_with(&report, "FAIL")
            .iter()
            .any(|l| l.contains("ETag is not exposed, so the page's multipart uploads fail")),
        "{report}"
    );

    // The same rule with ETag exposed (as `ferry bucket cors` writes it) passes.
    ferry::storage::cors::CorsRules::new(vec![ORIGIN.into()], 600).unwrap().apply(&cfg).await.unwrap();
    let (_, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert!(report.contains("https://app.example: ETag is exposed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_role_unrun_migrations_and_an_unreachable_jwks_are_named() {
    let admin =
        std::env::var("FERRY_TEST_POSTGRES_URL").expect("FERRY_TEST_POSTGRES_URL (set by the README's test command)");
    let url = fresh_database_on(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let vars =
        vec![("DATABASE_URL", url.clone()), ("FERRY_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json".into())];
    let (code, report) = ferry(dir.path(), &["doctor"], &vars).await;
    assert_eq!(code, 1, "{report}");
    let failed = lines_with(&report, "FAIL");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    let unrun = format!("0 of {migrations} migrations applied: run `ferry migrate`");
    assert!(failed.iter().any(|l| l.contains(&unrun)), "{report}");
    assert!(failed.iter().any(|l| l.contains("bypasses row-level security")), "{report}");
    assert!(
        failed.iter().any(|l| l.contains("the JWKS at http://127.0.0.1:9/.well-known/jwks.json cannot be reached")),
        "{report}"
    );
    assert!(lines_with(&report, "warn").iter().any(|l| l.contains("FERRY_JWT_ISSUER or FERRY_JWT_AUDIENCE is unset")));

    // Migrated, and served by a role subject to row-level security: those lines turn ok.
    let (code, _) = ferry(dir.path(), &["migrate"], &[("DATABASE_URL", url.clone())]).await;
    assert_eq!(code, 0);
    let role = format!("doctor_{}", uuid::Uuid::new_v4().simple());
    let owner = crate::helpers::pg_client(&url).await;
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'app'; GRANT SELECT, INSERT, UPDATE, DELETE ON b2_files TO {role}; \
             GRANT SELECT ON ferry_migrations TO {role}"
        ))
        .await
        .unwrap();
    let (base, db) = url.rsplit_once('/').unwrap();
    let runtime = format!("postgres://{role}:app@{}/{db}", base.rsplit_once('@').unwrap().1);
    let (_, report) = ferry(dir.path(), &["doctor"], &[("DATABASE_URL", runtime)]).await;
    assert!(report.contains(&format!("migrations current ({migrations})")), "{report}");
    assert!(report.contains("ok    database  the runtime role is subject to row-level security"), "{report}");
}
