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

#[test]
fn a_dotenv_in_a_parent_directory_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    std::fs::create_dir_all(&nested).unwrap();
    // Planted two levels up, as anyone could in /tmp.
    std::fs::write(dir.path().join(".env"), "FERRY_JWT_SECRET=\"a planted secret of at least 32 characters\"\n")
        .unwrap();
    let out = ferry(&nested, &["token", "--user", "mallory"], &[]);
    assert!(!out.status.success(), "a parent directory's .env was read");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // The working directory's own .env is read.
    std::fs::write(nested.join(".env"), "FERRY_JWT_SECRET=\"the operators own secret of 32+ characters\"\n").unwrap();
    let out = ferry(&nested, &["token", "--user", "alice"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // So is a file named by FERRY_ENV_FILE, and a named file that is missing is an error.
    let out = ferry(&nested, &["token", "--user", "alice"], &[("FERRY_ENV_FILE", "/nonexistent/ferry.env")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nonexistent/ferry.env"));
}

#[test]
fn a_wildcard_cors_origin_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(dir.path(), &["serve"], &[("FERRY_CORS_ORIGINS", "*"), ("PORT", "0"), ("FERRY_STORE_PORT", "0")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("FERRY_CORS_ORIGINS"), "{}", text(&out.stderr));
}

#[test]
fn a_new_data_directory_and_database_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = ferry(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(mode(&dir.path().join("data").join("ferry.db")), 0o600);
}

/// What `ferry serve` prints to its standard output (a pipe, as under systemd or Docker) until it
/// says it is listening (at most 30 s), with `env` added to a bare environment.
fn start_up_lines(env: &[(&str, &str)]) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FERRY_DATA_DIR", dir.path().join("data"))
        .env("PORT", "0")
        .env("FERRY_STORE_PORT", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let listening = line.contains("Ferry API listening");
                lines.push(line);
                if listening {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn a_jwks_without_audience_or_issuer_is_warned_about_at_start_up() {
    let lines = start_up_lines(&[("FERRY_JWKS_URL", "http://127.0.0.1:9/jwks.json")]);
    assert!(
        lines.iter().any(|l| l.contains("WARN") && l.contains("FERRY_JWT_AUDIENCE")),
        "no start-up warning about a JWKS without audience or issuer: {lines:#?}"
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_terminal_colour_codes() {
    let lines = start_up_lines(&[]);
    assert!(lines.iter().any(|l| l.contains("Ferry API listening")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "colour codes in a log that is not a terminal: {lines:#?}");
}

/// Starts `ferry serve` on ports picked here; returns the child and the API address.
fn serve_on_free_ports(dir: &std::path::Path) -> (std::process::Child, String) {
    let port = |()| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (api, store) = (port(()), port(()));
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FERRY_DATA_DIR", dir.join("data"))
        .env("PORT", api.to_string())
        .env("FERRY_STORE_PORT", store.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ferry starts");
    let addr = format!("127.0.0.1:{api}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "ferry did not start listening");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, addr)
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn wait_for_exit(child: &mut std::process::Child, within: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry did not exit within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sigterm_stops_the_server_cleanly_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _) = serve_on_free_ports(dir.path());
    signal(&child, "TERM");
    let status = wait_for_exit(&mut child, std::time::Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_second_signal_exits_at_once_without_waiting_for_requests_in_flight() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_on_free_ports(dir.path());
    // A request in flight that would hold the drain for its whole grace period (30 s).
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /presign-b2-upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&child, "TERM");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the first signal waits for the request in flight");
    signal(&child, "TERM");
    let status = wait_for_exit(&mut child, std::time::Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
}
