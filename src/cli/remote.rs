//! The client commands: `upload`, `ls`, `get`, `rm`. They talk to a running Ferry through its
//! API (`crate::client`), never to the database or the bucket's credentials.
//!
//! Output: progress bars (bytes, speed, ETA, for each file and the total) on a terminal; plain
//! lines otherwise; `--json` for scripts (one JSON value per line for `upload` and `rm`, an
//! array for `ls`, an object for `get`).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::CliError;
use crate::client::{Client, Identity, Progress, StderrNotes};
use crate::config::defaults;
use crate::identity::DEV_USER;

/// Where Ferry runs and who the caller is.
#[derive(Debug, Args)]
pub struct Remote {
    /// Ferry's URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub api: String,
    /// A bearer token (or set FERRY_TOKEN); without one, the dev-mode user is sent.
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The dev-mode user (X-User-Id), when no token is given.
    #[arg(long, default_value = DEV_USER)]
    pub user: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl Remote {
    fn client(&self) -> Result<Client, CliError> {
        let identity = match &self.token {
            Some(token) => Identity::Token(token.clone()),
            None => Identity::DevUser(self.user.clone()),
        };
        Ok(Client::new(&self.api, identity)?)
    }

    /// Bars only for a person watching, never in JSON mode.
    fn bars(&self) -> Option<MultiProgress> {
        (!self.json && std::io::stderr().is_terminal()).then(MultiProgress::new)
    }
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files (and, with -r, directories) to upload.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Upload the files inside directories, recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Files sent at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    /// Content type for every file (default: from each file's extension).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Files larger than this many bytes go by multipart.
    #[arg(long, default_value_t = defaults::MULTIPART_THRESHOLD)]
    pub multipart_threshold: u64,
    /// Send no MD5 digests (by default each file, or each part, is hashed first and the bucket
    /// refuses bytes that do not match).
    #[arg(long)]
    pub no_checksum: bool,
    /// Start over instead of continuing an upload a previous run left unfinished (by default
    /// unfinished multipart uploads are remembered in $XDG_STATE_HOME/ferry/uploads, and a rerun
    /// of the same command sends only the missing parts); a failed upload is aborted.
    #[arg(long)]
    pub no_resume: bool,
    /// Parts of one file sent at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub part_jobs: u16,
    #[command(flatten)]
    pub remote: Remote,
}

/// A bar per file under a total bar, or notes on stderr.
struct Bar {
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
}

impl Progress for Bar {
    fn started(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    fn sent(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        if let Some(total) = &self.total {
            total.inc(bytes);
        }
    }

    fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_owned()),
            None => eprintln!("  {message}"),
        }
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg:30!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}")
        .expect("a valid template")
}

/// The files named, with directories expanded when `recursive` (at most 64 levels deep; links
/// are not followed).
fn expand(paths: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>, CliError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        if depth > 64 {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), depth + 1, out)?;
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            if !recursive {
                return Err(CliError::Usage(format!(
                    "{} is a directory: add -r to upload what is in it",
                    path.display()
                )));
            }
            walk(path, 0, &mut files).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub async fn upload(args: UploadArgs) -> Result<(), CliError> {
    let mut client = args.remote.client()?;
    client.multipart_threshold = args.multipart_threshold;
    client.checksums = !args.no_checksum;
    client.concurrency = usize::from(args.part_jobs);
    client.state_dir = if args.no_resume { None } else { crate::client::default_state_dir() };
    let files = expand(&args.paths, args.recursive)?;
    let bars = args.remote.bars();
    let total = bars.as_ref().map(|bars| {
        let size = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        let bar = bars.add(ProgressBar::new(size).with_style(bar_style()));
        bar.set_message(format!("{} files", files.len()));
        bar
    });
    let (client, content_type, json) = (&client, args.content_type.as_deref(), args.remote.json);
    let uploads = files.iter().map(|path| {
        let bar = bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(0).with_style(bar_style()));
            bar.set_message(path.display().to_string());
            bar
        });
        let progress: Arc<dyn Progress> = match bar {
            Some(bar) => Arc::new(Bar { bar: Some(bar), total: total.clone() }),
            None => Arc::new(StderrNotes),
        };
        async move { (path, client.upload(path, content_type, &progress).await, progress) }
    });
    let mut running = futures::stream::iter(uploads).buffer_unordered(usize::from(args.jobs));
    let mut failed = 0;
    while let Some((path, result, _progress)) = running.next().await {
        match result {
            Ok(file) if json => {
                println!("{}", serde_json::json!({ "file": path.display().to_string(), "uploaded": file }))
            }
            Ok(file) => println!("uploaded {} as file {} ({} bytes)", path.display(), file.id, file.size.unwrap_or(0)),
            Err(e) if json => {
                failed += 1;
                println!("{}", serde_json::json!({ "file": path.display().to_string(), "error": e.to_string() }));
            }
            Err(e) => {
                failed += 1;
                eprintln!("ferry: {}: {e}", path.display());
            }
        }
    }
    if let Some(total) = &total {
        total.finish();
    }
    if failed == 0 { Ok(()) } else { Err(CliError::Uploads { failed, total: files.len() }) }
}

pub async fn ls(remote: Remote) -> Result<(), CliError> {
    let files = remote.client()?.list_all().await?;
    if remote.json {
        println!("{}", serde_json::to_string(&files).expect("serializes"));
        return Ok(());
    }
    for f in &files {
        println!(
            "{:>8}  {:>12}  {:<24}  {}  {}",
            f.id,
            f.size.map_or_else(|| "-".into(), |s| s.to_string()),
            f.content_type.as_deref().unwrap_or("-"),
            f.upload_timestamp.format("%Y-%m-%d %H:%M:%S"),
            f.file_name.as_deref().unwrap_or(&f.object_key),
        );
    }
    Ok(())
}

/// The name a download is saved under without `-o`: the key's file name, which Ferry cleaned
/// at presign (no path separators), without the ticket in front.
fn name_from_url(url: &str, id: i64) -> PathBuf {
    let fallback = PathBuf::from(format!("ferry-file-{id}"));
    let Ok(url) = url::Url::parse(url) else { return fallback };
    let Some(last) = url.path_segments().and_then(|mut s| s.next_back().map(str::to_owned)) else { return fallback };
    let decoded = percent_encoding::percent_decode_str(&last).decode_utf8_lossy().into_owned();
    let name = match decoded.get(37..) {
        Some(rest) if decoded.as_bytes().get(36) == Some(&b'-') => rest.to_owned(),
        _ => decoded,
    };
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return fallback;
    }
    PathBuf::from(name)
}

pub async fn get(id: i64, out: Option<PathBuf>, remote: Remote) -> Result<(), CliError> {
    let client = remote.client()?;
    let url = client.download_url(id).await?;
    let out = out.unwrap_or_else(|| name_from_url(&url, id));
    let bars = remote.bars();
    let progress: Arc<dyn Progress> = match &bars {
        Some(bars) => {
            let bar = bars.add(ProgressBar::new(0).with_style(bar_style()));
            bar.set_message(out.display().to_string());
            Arc::new(Bar { bar: Some(bar), total: None })
        }
        None => Arc::new(StderrNotes),
    };
    let size = client.fetch_to(&url, &out, &progress).await?;
    if remote.json {
        println!("{}", serde_json::json!({ "id": id, "path": out.display().to_string(), "size": size }));
    } else {
        println!("saved file {id} to {} ({size} bytes)", out.display());
    }
    Ok(())
}

pub async fn rm(ids: Vec<i64>, remote: Remote) -> Result<(), CliError> {
    let client = remote.client()?;
    let mut failed = 0;
    for &id in &ids {
        let result = client.delete(id).await;
        match (&result, remote.json) {
            (Ok(()), true) => println!("{}", serde_json::json!({ "id": id, "deleted": true })),
            (Ok(()), false) => println!("deleted file {id}"),
            (Err(e), true) => println!("{}", serde_json::json!({ "id": id, "deleted": false, "error": e.to_string() })),
            (Err(e), false) => eprintln!("ferry: file {id}: {e}"),
        }
        failed += usize::from(result.is_err());
    }
    if failed == 0 { Ok(()) } else { Err(CliError::Deletes { failed, total: ids.len() }) }
}
