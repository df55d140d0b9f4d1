//! The `ferry` command line: serve (the default), migrate, sweep, token, bucket cors; and the
//! client commands upload, ls, get, rm (`remote.rs`); completions.
//! Each command is a thin adapter: it opens what it needs (the core, or HTTP on top of it, or
//! only the API client) and prints the result.

mod error;
mod remote;

use clap::{Parser, Subcommand};

pub use error::CliError;

use crate::config::Config;
use crate::core::Core;
use crate::startup::Application;

#[derive(Debug, Parser)]
#[command(name = "ferry", version, about = "Direct-to-bucket file uploads with verified metadata")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (and the embedded store when no bucket is configured). The default.
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Remove abandoned uploads and finish half-done deletes, then exit.
    Sweep {
        /// Print what would be removed without removing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Upload files through a running Ferry: straight to the bucket, multipart when large,
    /// resumed when a previous run left them unfinished.
    Upload(remote::UploadArgs),
    /// List your files (newest first).
    Ls {
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Download one of your files (a download cut short continues where it stopped).
    Get {
        /// The file's id (from `ferry ls`).
        id: i64,
        /// Where to save it (default: the file's name, in the current directory).
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Delete files.
    Rm {
        /// The files' ids (from `ferry ls`).
        #[arg(required = true)]
        ids: Vec<i64>,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Check the configuration end to end (bucket, CORS, database, identity), one line per check.
    Doctor,
    /// Print a shell completion script: `ferry completions bash > /etc/bash_completion.d/ferry`.
    Completions { shell: clap_complete::Shell },
    /// Configure the bucket.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Mint an HS256 token with FERRY_JWT_SECRET (for the CLI, the page and tests without an
    /// identity provider).
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// How long the token lives: `3600`, `30m`, `1h`, `7d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Let browsers on these origins PUT, GET and HEAD straight to the bucket (PutBucketCors).
    Cors {
        /// An allowed origin, like https://app.example (repeat for several).
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
        /// How long browsers may cache the preflight answer, 0 to 86400 seconds.
        #[arg(long, default_value_t = 3600)]
        max_age: u32,
        /// Print the rules (S3 XML and B2 corsRules JSON) instead of applying them.
        #[arg(long)]
        print: bool,
    },
}

/// `90`, `90s`, `30m`, `1h`, `7d`.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 3600, 30m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// Installs the log subscriber. Signing and HTTP internals are capped at `info`, whatever
/// `RUST_LOG` says, because their debug output includes presigned URLs. Colours only on a
/// terminal: a log read from a pipe or a file (systemd, Docker) gets plain text.
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter =
        tracing_subscriber::EnvFilter::try_new(format!("{base},s3s=warn,hyper=info,hyper_util=info,reqwest=info"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
}

/// Runs the command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve) {
        // Client commands: they need none of the server's configuration.
        Command::Upload(args) => remote::upload(args).await,
        Command::Ls { remote } => remote::ls(remote).await,
        Command::Get { id, output, remote } => remote::get(id, output, remote).await,
        Command::Rm { ids, remote } => remote::rm(ids, remote).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
            Ok(())
        }
        command => run_with_config(command, Config::from_env()?).await,
    }
}

async fn run_with_config(command: Command, cfg: Config) -> Result<(), CliError> {
    match command {
        Command::Serve => {
            // Listening for signals before binding: once the port answers, a SIGTERM always
            // means a clean stop (before, one sent right then killed the process).
            let stop = shutdown_signal()?;
            let app = Application::bind(cfg).await?;
            Ok(app.run_until_stopped(stop).await?)
        }
        Command::Doctor => {
            let checks = crate::doctor::run(&cfg).await;
            for check in &checks {
                println!("{check}");
            }
            let failed = checks.iter().filter(|c| c.status == crate::doctor::Status::Fail).count();
            if failed == 0 { Ok(()) } else { Err(CliError::Doctor { failed }) }
        }
        Command::Migrate => {
            let db = Core::migrate(&cfg).await?;
            println!("migrations applied: {db}");
            Ok(())
        }
        Command::Upload(_)
        | Command::Ls { .. }
        | Command::Get { .. }
        | Command::Rm { .. }
        | Command::Completions { .. } => Err(CliError::Usage("a client command needs no server configuration".into())),
        Command::Bucket { command: BucketCommand::Cors { origins, max_age, print } } => {
            let rules =
                crate::storage::cors::CorsRules::new(origins, max_age).map_err(|e| CliError::Usage(e.to_string()))?;
            if print {
                println!("S3 PutBucketCors XML:\n{}\n", rules.s3_xml());
                let b2 = serde_json::to_string_pretty(&rules.b2_rules()).unwrap_or_default();
                println!("Backblaze B2 corsRules (bucket settings, or b2_update_bucket):\n{b2}");
                return Ok(());
            }
            let crate::config::StoreConfig::External(s3) = &cfg.store else {
                return Err(CliError::Usage(
                    "no bucket is configured: the embedded store takes its origins from FERRY_CORS_ORIGINS".into(),
                ));
            };
            rules.apply(s3).await?;
            println!("CORS rules applied to bucket {}", s3.bucket);
            Ok(())
        }
        Command::Token { user, ttl } => {
            let jwt = cfg.auth.as_ref().and_then(|j| j.secret.as_ref().map(|s| (j, s)));
            let Some((settings, secret)) = jwt else {
                return Err(CliError::Usage("ferry token needs FERRY_JWT_SECRET (at least 32 characters)".into()));
            };
            let token = crate::auth::jwt::mint_hs256(
                secret,
                &user,
                ttl,
                settings.issuer.as_deref(),
                settings.audience.as_deref(),
            );
            println!("{token}");
            Ok(())
        }
        Command::Sweep { dry_run } => {
            let core = Core::open(&cfg).await?;
            let report = core.sweeper.sweep_once(dry_run).await?;
            let verb = if dry_run { "would remove" } else { "removed" };
            for key in &report.orphans {
                println!("{verb} orphan {key}");
            }
            for key in &report.finished_deletes {
                println!("{verb} half-deleted {key}");
            }
            println!(
                "scanned {} objects; {verb} {} orphans; finished {} deletes; removed {} abandoned multipart uploads",
                report.scanned,
                report.orphans.len(),
                report.finished_deletes.len(),
                report.abandoned_multipart
            );
            Ok(())
        }
    }
}

/// Listens for Ctrl-C and SIGTERM from the moment it is called (so call it before binding);
/// the future completes on the first one, and a second one exits at once (status 130), for an
/// operator who will not wait for in-flight requests to drain.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut signals = StopSignals::listen()?;
    Ok(async move {
        signals.next().await;
        tracing::info!(
            "shutting down: no new connections, draining requests in flight (a second signal exits at once)"
        );
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second signal: exiting without waiting for requests in flight");
            std::process::exit(130);
        });
    })
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from creation on: the same listeners serve the first
/// signal and the second, so none arrives while nothing listens.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    #[cfg(not(unix))]
    fn listen() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
