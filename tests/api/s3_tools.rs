//! The tools people point at S3 work against the embedded store unchanged: the AWS CLI, s3cmd
//! and rclone, each with its default settings for a generic S3 endpoint, run their everyday
//! commands (`tests/clients/s3_tools.sh` says which) and every download is compared byte for
//! byte. The README's test command installs the tools and names them in `FERRY_TEST_AWS_CLI`,
//! `FERRY_TEST_S3CMD` and `FERRY_TEST_RCLONE`; without them these tests fail, saying so.

use crate::helpers::{Backend, spawn_app};

async fn run_tool(tool: &str, variable: &str) {
    let program = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} must name the {tool} command (the README's test command installs it and sets it)")
    });
    let app = spawn_app(Backend::Sqlite).await;
    let secret = std::fs::read_to_string(app.data_dir.path().join(".ferry-secret")).unwrap();
    let script = format!("{}/tests/clients/s3_tools.sh", env!("CARGO_MANIFEST_DIR"));
    let endpoint = format!("http://{}", app.store_addr.unwrap());
    let output = tokio::process::Command::new("bash")
        .args([script.as_str(), tool, endpoint.as_str(), "ferry", "ferry", secret.trim()])
        .env(variable, program)
        .output()
        .await
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{tool} failed against the embedded store:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_runs_its_everyday_commands_against_the_embedded_store() {
    run_tool("aws", "FERRY_TEST_AWS_CLI").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3cmd_runs_its_everyday_commands_against_the_embedded_store() {
    run_tool("s3cmd", "FERRY_TEST_S3CMD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_runs_its_everyday_commands_against_the_embedded_store() {
    run_tool("rclone", "FERRY_TEST_RCLONE").await;
}
