//! The client commands end to end: the real `ferry` binary against a running Ferry, on the
//! embedded store and on moto: `upload -r --jobs`, `ls`, `get` (resumed with a range), `rm`,
//! `--json` output, and shell completions.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{Backend, TestApp, random_bytes, spawn_app};
use crate::s3_compat::spawn_against_moto;

/// Runs `ferry <args> --api <app> --user <user>` (stdout and stderr are not terminals: no bars).
async fn ferry(app: &TestApp, dir: &Path, user: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join(".state"))
        .args(args)
        .args(["--api", &app.url(""), "--user", user])
        .output()
        .await
        .unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn the_client_commands_work_end_to_end(app: &TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("photos");
    std::fs::create_dir_all(tree.join("2026/summer")).unwrap();
    let files =
        [("a.txt", random_bytes(10)), ("2026/b.bin", random_bytes(70_000)), ("2026/summer/c.png", random_bytes(3))];
    for (name, bytes) in &files {
        std::fs::write(tree.join(name), bytes).unwrap();
    }

    // A directory without -r is a usage error (exit 2).
    let refused = ferry(app, dir.path(), "fay", &["upload", "photos"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));

    // -r uploads the whole tree, several files at a time; --json prints one line per file.
    let uploaded = stdout(&ferry(app, dir.path(), "fay", &["upload", "-r", "--jobs", "3", "--json", "photos"]).await);
    let lines: Vec<Value> = uploaded.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{uploaded}");
    assert!(lines.iter().all(|l| l["uploaded"]["id"].as_i64().is_some()), "{uploaded}");

    // ls: the caller's files, as JSON or as plain lines.
    let listed: Vec<Value> =
        serde_json::from_str(&stdout(&ferry(app, dir.path(), "fay", &["ls", "--json"]).await)).unwrap();
    let mut names: Vec<&str> = listed.iter().map(|f| f["fileName"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["a.txt", "b.bin", "c.png"]);
    let plain = stdout(&ferry(app, dir.path(), "fay", &["ls"]).await);
    assert_eq!(plain.lines().count(), 3);
    assert!(plain.contains("b.bin") && plain.contains("70000"), "{plain}");
    assert_eq!(stdout(&ferry(app, dir.path(), "someone-else", &["ls"]).await), "", "another user sees none of them");

    // get: by id, to the file's own name or -o; a partial download continues with a range.
    let b = listed.iter().find(|f| f["fileName"] == "b.bin").unwrap();
    let b_id = b["id"].as_i64().unwrap().to_string();
    let got = stdout(&ferry(app, dir.path(), "fay", &["get", &b_id]).await);
    assert!(got.contains("saved file"), "{got}");
    assert_eq!(std::fs::read(dir.path().join("b.bin")).unwrap(), files[1].1);
    std::fs::write(dir.path().join("copy.bin.part"), &files[1].1[..30_000]).unwrap();
    let resumed = ferry(app, dir.path(), "fay", &["get", &b_id, "-o", "copy.bin", "--json"]).await;
    let report: Value = serde_json::from_str(&stdout(&resumed)).unwrap();
    assert_eq!(report["size"], 70_000);
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resuming the download at 30000 bytes"));
    assert_eq!(std::fs::read(dir.path().join("copy.bin")).unwrap(), files[1].1);
    assert!(!dir.path().join("copy.bin.part").exists());
    // Someone else's file is not theirs to get (exit 1, Ferry's code in the message).
    let foreign = ferry(app, dir.path(), "someone-else", &["get", &b_id]).await;
    assert_eq!(foreign.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("file-not-found"));

    // rm: several ids; a missing one fails the command (exit 1) without stopping the others.
    let ids: Vec<String> = listed.iter().map(|f| f["id"].as_i64().unwrap().to_string()).collect();
    let mut args = vec!["rm", "--json", "999999"];
    args.extend(ids.iter().map(String::as_str));
    let removed = ferry(app, dir.path(), "fay", &args).await;
    assert_eq!(removed.status.code(), Some(1));
    let results: Vec<Value> =
        String::from_utf8_lossy(&removed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r["deleted"] == true).count(), 3);
    assert_eq!(stdout(&ferry(app, dir.path(), "fay", &["ls"]).await), "");
}

async fn on_the_embedded_store(backend: Backend) {
    the_client_commands_work_end_to_end(&spawn_app(backend).await).await;
}

async fn against_moto(backend: Backend) {
    the_client_commands_work_end_to_end(&spawn_against_moto(backend, &[]).await).await;
}

crate::on_one_backend!(on_the_embedded_store, against_moto);

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [("bash", "_ferry()"), ("zsh", "#compdef ferry"), ("fish", "complete -c ferry")] {
        let output =
            std::process::Command::new(env!("CARGO_BIN_EXE_ferry")).args(["completions", shell]).output().unwrap();
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {}", &script[..script.len().min(200)]);
        assert!(script.contains("upload") && script.contains("no-resume"), "{shell} completes the commands and flags");
    }
}
