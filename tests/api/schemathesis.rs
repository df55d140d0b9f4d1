//! Schemathesis (PyPI `schemathesis`, a tool this project did not write) drives every
//! operation of `GET /openapi.json` with generated and malformed inputs against a running
//! Ferry, on SQLite and on Postgres, in dev mode and with JWT. It must find no 5xx, no answer
//! that breaks the schema, no status code the document does not list, no wrong content type.
//! Bounded: 25 examples per operation and phase.

use crate::helpers::{Backend, TestApp, spawn_app_with};

const SECRET: &str = "an HS256 secret of at least thirty-two characters";

async fn schemathesis(app: &TestApp, header: &str) {
    let st = std::env::var("FERRY_TEST_SCHEMATHESIS")
        .expect("the OpenAPI test needs FERRY_TEST_SCHEMATHESIS (the README's test command installs schemathesis)");
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(st)
        .current_dir(dir.path())
        .args(["run", &app.url("/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--generation-deterministic", "--request-timeout", "20"])
        .args(["-H", header])
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("29/29"), "every operation was tested:\n{stdout}");
}

async fn the_api_keeps_its_openapi_contract_in_dev_mode(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    schemathesis(&app, "X-User-Id: schemathesis").await;
}

async fn the_api_keeps_its_openapi_contract_with_jwt(backend: Backend) {
    let app = spawn_app_with(backend, &[("FERRY_JWT_SECRET", SECRET)]).await;
    let now = u64::from(crate::helpers::now_unix());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "schemathesis", "iat": now, "exp": now + 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    schemathesis(&app, &format!("Authorization: Bearer {token}")).await;
}

crate::on_both_backends!(the_api_keeps_its_openapi_contract_in_dev_mode, the_api_keeps_its_openapi_contract_with_jwt);

/// The document is OpenAPI 3.1, served by Ferry, and names the guide's endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    let doc: serde_json::Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/presign-b2-upload", "/save-b2-metadata", "/files", "/usage", "/uppy/sign", "/s3/multipart"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}
