use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn no_variables_means_embedded_store_and_sqlite() {
    let cfg = config(&[]).unwrap();
    assert!(matches!(cfg.store, StoreConfig::Embedded(_)));
    assert_eq!(cfg.database.backend, DatabaseBackend::Sqlite(None));
    assert_eq!(cfg.server.port, 3000);
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
    assert!(matches!(cfg.database.backend, DatabaseBackend::Postgres { .. }));
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

#[test]
fn trusted_proxies_are_addresses_or_networks_and_anything_else_is_a_start_up_error() {
    let cfg = config(&[("FERRY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,fd00::/8")]).unwrap();
    let proxies: Vec<String> = cfg.limits.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
    assert!(config(&[]).unwrap().limits.trusted_proxies.is_empty());
    let err = config(&[("FERRY_TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")]).unwrap_err().to_string();
    assert!(err.contains("FERRY_TRUSTED_PROXIES") && err.contains("proxy.internal"), "{err}");
}

#[test]
fn a_wildcard_or_malformed_cors_origin_is_a_start_up_error_naming_the_variable() {
    for bad in ["*", "null", "app.example", "https://app.example/path", "ftp://x.example"] {
        let err = config(&[("FERRY_CORS_ORIGINS", bad)]).unwrap_err();
        assert!(err.to_string().starts_with("FERRY_CORS_ORIGINS is not valid"), "{bad}: {err}");
    }
    let cfg = config(&[("FERRY_CORS_ORIGINS", "https://app.example, http://localhost:5173")]).unwrap();
    assert_eq!(cfg.server.cors_origins, ["https://app.example", "http://localhost:5173"]);
}

/// Every variable `from_lookup` asks for, over configurations that take every branch.
fn parsed_variables() -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    let branches: [&[(&str, &str)]; 2] = [
        &[],
        &[
            ("S3_ACCESS_KEY_ID", "k"),
            ("S3_SECRET_ACCESS_KEY", "s"),
            ("S3_BUCKET", "b"),
            ("S3_ENDPOINT", "http://127.0.0.1:1"),
            ("DATABASE_URL", "postgres://localhost/db"),
            ("FERRY_JWKS_URL", "https://auth.example/jwks.json"),
        ],
    ];
    for vars in branches {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_owned());
            map.get(k).map(|v| (*v).to_owned())
        })
        .unwrap();
    }
    let mut asked = asked.into_inner();
    asked.insert(ENV_FILE_VAR.to_owned());
    asked
}

/// Variables documented but read outside `Config` (by the log set-up and the CLI).
const READ_ELSEWHERE: [&str; 2] = ["RUST_LOG", "FERRY_TOKEN"];

fn is_variable_name(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn documented(names: impl Iterator<Item = String>) -> BTreeSet<String> {
    names.filter(|n| is_variable_name(n) && !READ_ELSEWHERE.contains(&n.as_str())).collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_parsed_variables() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Configuration").nth(1).expect("a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    // The backticked names in the first column of the table's rows.
    let names = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or_default().split('`').skip(1).step_by(2).map(str::to_owned))
        .map(|n| n.to_owned());
    assert_eq!(documented(names.collect::<Vec<_>>().into_iter()), parsed_variables());
}

#[test]
fn the_env_example_lists_exactly_the_parsed_variables() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    let assigned =
        example.lines().filter_map(|l| l.trim_start_matches(['#', ' ']).split_once('=')).map(|(n, _)| n.to_owned());
    assert_eq!(documented(assigned), parsed_variables());
}
