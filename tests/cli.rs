//! The `ferry` binary as a user runs it: each subcommand, and the start-up refusals.

use std::process::Command;

fn ferry(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("FERRY_DATA_DIR", dir.join("data"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("ferry runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn token_prints_a_jwt_signed_with_the_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "a secret that is at least thirty-two chars";
    let out = ferry(dir.path(), &["token", "--user", "alice", "--ttl", "30m"], &[("FERRY_JWT_SECRET", secret)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &jsonwebtoken::Validation::default()).unwrap();
    assert_eq!(claims.claims["sub"], "alice");
    let out = ferry(dir.path(), &["token", "--user", "alice"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("FERRY_JWT_SECRET"));
}

#[test]
fn migrate_and_sweep_work_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("migrations applied: SQLite"));
    let out = ferry(dir.path(), &["sweep", "--dry-run"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("scanned 0 objects; would remove 0 orphans; finished 0 deletes"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bucket_cors_print_shows_s3_xml_and_b2_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(dir.path(), &["bucket", "cors", "--origin", "https://app.example", "--print"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("<AllowedOrigin>https://app.example</AllowedOrigin>"));
    assert!(stdout.contains("\"allowedOperations\""));
    let out = ferry(dir.path(), &["bucket", "cors", "--origin", "app.example", "--print"], &[]);
    assert!(!out.status.success());
}

#[test]
fn start_up_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("DATABASE_URL", "postgress://typo/db")], "postgres://, postgresql:// or sqlite://"),
        (&[("B2_BUCKET_NAME", "b")], "B2_APPLICATION_KEY_ID"),
        (
            &[("FERRY_HOST", "0.0.0.0"), ("PORT", "0"), ("FERRY_STORE_PORT", "0")],
            "refusing to run without authentication",
        ),
    ];
    for (env, expected) in cases {
        let out = ferry(dir.path(), &["serve"], env);
        assert!(!out.status.success(), "{env:?} should not start");
        assert!(text(&out.stderr).contains(expected), "{env:?}: {}", text(&out.stderr));
    }
    assert!(!dir.path().join("typo").exists(), "a typo never creates a database");
}
