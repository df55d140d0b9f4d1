//! ListObjects (v1) and ListObjectsV2: one page walk for both, as S3 defines it.
//!
//! Tools depend on the details: `aws s3 ls` and rclone's directory mode need the delimiter's
//! `CommonPrefixes` (the `PRE dir/` lines), s3cmd and rclone list with v1 and its markers, and
//! botocore asks for `encoding-type=url` and decodes every key it gets back. A common prefix
//! counts against `max-keys` like a key, and a page that ends on one resumes after all of it.

use std::io;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Result, s3_error};

use super::disk::Disk;
use super::index::Listed;

/// S3's largest page, and its default.
const MAX_PAGE: i32 = 1000;

/// One page of a listing.
#[derive(Debug, Default)]
pub(super) struct Page {
    pub objects: Vec<Listed>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix of a truncated page: the next page starts after it.
    pub next: Option<String>,
}

/// Rows read from the index at a time: at most, and at first after a common prefix.
const BATCH: usize = 256;
const MIN_BATCH: usize = 8;

/// The first byte string after every key that starts with `prefix` (no UTF-8 text holds
/// the byte 0xFF); `None` for the empty prefix, after which nothing comes.
fn after_all(prefix: &str) -> Option<Vec<u8>> {
    (!prefix.is_empty()).then(|| [prefix.as_bytes(), &[0xFF]].concat())
}

/// The page of `bucket` after `after`: keys under `prefix`, those with `delimiter` past the
/// prefix rolled up into common prefixes, at most `max` entries. Reads the index from `after`
/// on, and jumps over each common prefix's keys: the cost is that of the page, not of the
/// bucket (see `index.rs`).
pub(super) async fn page(
    disk: &Disk,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max: usize,
) -> io::Result<Page> {
    let mut page = Page::default();
    if max == 0 {
        return Ok(page); // S3 answers an empty, complete page
    }
    let index = disk.index().await?;
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let end = after_all(prefix);
    // Where the next read starts: at the prefix, or just after `after` if that is further on.
    let (mut from, mut include_from) =
        if after >= prefix { (after.as_bytes().to_vec(), false) } else { (prefix.as_bytes().to_vec(), true) };
    let mut count = 0;
    // With a delimiter, a read often ends at its first row (a common prefix, then a jump past
    // it): reads start small and grow while rows are used.
    let mut batch = if delimiter.is_some() { MIN_BATCH } else { BATCH };
    // Each pass moves `from` forward past at least one row of the (finite) index, or ends.
    loop {
        let rows = index.rows(bucket, &from, include_from, end.as_deref(), batch).await?;
        let exhausted = rows.len() < batch;
        let mut jumped = false;
        for row in rows {
            (from, include_from) = (row.listed.key.as_bytes().to_vec(), false);
            // A pending row's key is being written (or was, when a crash came): its file says
            // whether it exists, and what it is.
            let listed = if row.pending {
                match disk.meta(bucket, &row.listed.key).await? {
                    Some(meta) => Listed::from(meta),
                    None => continue,
                }
            } else {
                row.listed
            };
            let group = delimiter.and_then(|d| {
                let rest = &listed.key[prefix.len()..];
                rest.find(d).map(|i| listed.key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(common) = &group
                && common == after
            {
                // The previous page ended on this common prefix: skip all of it.
                (from, include_from) = (after_all(common).unwrap_or_default(), true);
                jumped = true;
                break;
            }
            if count == max {
                page.truncated = true;
                return Ok(page);
            }
            count += 1;
            match group {
                Some(common) => {
                    (from, include_from) = (after_all(&common).unwrap_or_default(), true);
                    page.next = Some(common.clone());
                    page.prefixes.push(common);
                    jumped = true;
                    break;
                }
                None => {
                    page.next = Some(listed.key.clone());
                    page.objects.push(listed);
                }
            }
        }
        if exhausted && !jumped {
            break;
        }
        batch = if jumped { MIN_BATCH.min(batch) } else { (batch * 2).min(BATCH) };
    }
    page.next = None;
    Ok(page)
}

/// `max-keys` as S3 reads it: at most 1,000, never negative.
pub(super) fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_PAGE as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(n.min(MAX_PAGE) as usize),
    }
}

/// What `encoding-type=url` leaves as it is: RFC 3986's unreserved characters and `/`.
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// Encodes keys and prefixes in an answer when the client asked for `encoding-type=url`
/// (keys may hold characters XML 1.0 cannot carry).
pub(super) struct Encoder {
    url: bool,
}

impl Encoder {
    pub fn new(encoding_type: Option<&EncodingType>) -> S3Result<Self> {
        match encoding_type.map(EncodingType::as_str) {
            None => Ok(Self { url: false }),
            Some(t) if t.eq_ignore_ascii_case(EncodingType::URL) => Ok(Self { url: true }),
            Some(_) => Err(s3_error!(InvalidArgument, "Invalid Encoding Method specified in Request")),
        }
    }

    pub fn text(&self, s: String) -> String {
        if self.url { utf8_percent_encode(&s, URL_KEEP).to_string() } else { s }
    }

    pub fn opt(&self, s: Option<String>) -> Option<String> {
        s.map(|s| self.text(s))
    }

    pub fn objects(&self, objects: Vec<Listed>) -> Vec<Object> {
        objects
            .into_iter()
            .map(|m| Object {
                last_modified: Some(std::time::SystemTime::from(m.last_modified).into()),
                key: Some(self.text(m.key)),
                size: Some(m.size as i64),
                e_tag: Some(ETag::Strong(m.etag)),
                storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
                ..Default::default()
            })
            .collect()
    }

    pub fn prefixes(&self, prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(self.text(p)) }).collect()
    }
}

/// ListObjectsV2's continuation token: the key or prefix the page ended on, opaque to clients.
pub(super) fn token(next: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next)
}

pub(super) fn untoken(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn disk_with(dir: &std::path::Path, keys: &[&str]) -> Disk {
        let disk = Disk::open(dir, "b").unwrap();
        for key in keys {
            let body = futures::stream::iter([Ok::<_, io::Error>(bytes::Bytes::from_static(b"x"))]);
            let written = disk.write_temp(body, u64::MAX, |_| {}).await.ok().unwrap();
            let meta = crate::embedded::disk::tests::meta(key, 1);
            disk.commit("b", meta, written.file, |_| Ok::<_, ()>(())).await.unwrap();
        }
        disk
    }

    fn keys(page: &Page) -> Vec<&str> {
        page.objects.iter().map(|m| m.key.as_str()).collect()
    }

    const TREE: &[&str] = &["a.txt", "dir/one", "dir/sub/two", "dir/three", "other/x", "z"];

    #[tokio::test]
    async fn a_delimiter_rolls_keys_up_into_common_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk_with(dir.path(), TREE).await;
        let p = page(&disk, "b", "", Some("/"), "", 1000).await.unwrap();
        assert_eq!(keys(&p), ["a.txt", "z"]);
        assert_eq!(p.prefixes, ["dir/", "other/"]);
        assert!(!p.truncated && p.next.is_none());
        let p = page(&disk, "b", "dir/", Some("/"), "", 1000).await.unwrap();
        assert_eq!(keys(&p), ["dir/one", "dir/three"]);
        assert_eq!(p.prefixes, ["dir/sub/"]);
    }

    #[tokio::test]
    async fn pages_count_prefixes_and_resume_after_the_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk_with(dir.path(), TREE).await;
        let mut seen = Vec::new();
        let mut after = String::new();
        for _ in 0..10 {
            let p = page(&disk, "b", "", Some("/"), &after, 1).await.unwrap();
            seen.extend(keys(&p).iter().map(|k| k.to_string()));
            seen.extend(p.prefixes.clone());
            match p.next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, ["a.txt", "dir/", "other/", "z"]);
    }

    #[tokio::test]
    async fn max_keys_zero_is_an_empty_complete_page_and_no_delimiter_lists_flat() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk_with(dir.path(), TREE).await;
        let p = page(&disk, "b", "", None, "", 0).await.unwrap();
        assert!(p.objects.is_empty() && p.prefixes.is_empty() && !p.truncated);
        let p = page(&disk, "b", "", None, "dir/one", 2).await.unwrap();
        assert_eq!(keys(&p), ["dir/sub/two", "dir/three"]);
        assert!(p.truncated);
        assert_eq!(p.next.as_deref(), Some("dir/three"));
        assert!(max_keys(Some(-1)).is_err());
        assert_eq!(max_keys(Some(5000)).unwrap(), 1000);
    }

    #[tokio::test]
    async fn a_page_reads_past_more_keys_than_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<String> = (0..600).map(|i| format!("k/{i:04}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let disk = disk_with(dir.path(), &refs).await;
        let p = page(&disk, "b", "k/", None, "k/0100", 1000).await.unwrap();
        assert_eq!(p.objects.len(), 499);
        assert!(!p.truncated);
        let p = page(&disk, "b", "", Some("/"), "", 1000).await.unwrap();
        assert_eq!((p.objects.len(), p.prefixes.as_slice()), (0, &["k/".to_owned()][..]));
    }

    fn listed(page: &Page) -> Vec<(&str, u64)> {
        page.objects.iter().map(|m| (m.key.as_str(), m.size)).collect()
    }

    /// The states a crash can leave between a metadata file and the index, each as the next
    /// start finds it: an object is listed if and only if it can be read.
    #[tokio::test]
    async fn after_a_crash_an_object_is_listed_if_and_only_if_it_can_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk_with(dir.path(), &["kept", "replaced", "deleted"]).await;
        let index = disk.index().await.unwrap();
        // A PUT of a new key killed after marking its row, before its metadata file was renamed.
        index.mark_pending("b", "never-written").await.unwrap();
        // An overwrite killed after its metadata file was renamed, before its row was settled.
        index.mark_pending("b", "replaced").await.unwrap();
        let mut newer = crate::embedded::disk::tests::meta("replaced", 7);
        newer.blob = disk.meta("b", "replaced").await.unwrap().unwrap().blob;
        std::fs::write(disk.meta_path("b", "replaced").0, serde_json::to_vec(&newer).unwrap()).unwrap();
        // A delete killed after its metadata file was removed, before its row was.
        index.mark_pending("b", "deleted").await.unwrap();
        std::fs::remove_file(disk.meta_path("b", "deleted").0).unwrap();

        let expected = [("kept", 1), ("replaced", 7)];
        let p = page(&disk, "b", "", None, "", 1000).await.unwrap();
        assert_eq!(listed(&p), expected, "before the restart, pending rows are read from their files");
        drop(disk);
        let reopened = Disk::open(dir.path(), "b").unwrap();
        let p = page(&reopened, "b", "", None, "", 1000).await.unwrap();
        assert_eq!(listed(&p), expected, "after it");
        assert!(reopened.index().await.unwrap().pending().await.unwrap().is_empty(), "the restart settled every row");
    }

    #[tokio::test]
    async fn a_store_made_before_the_index_is_indexed_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk_with(dir.path(), TREE).await;
        drop(disk);
        for name in [".index.sqlite", ".index.sqlite-wal", ".index.sqlite-shm"] {
            let _ = std::fs::remove_file(dir.path().join(name));
        }
        let reopened = Disk::open(dir.path(), "b").unwrap();
        let p = page(&reopened, "b", "", None, "", 1000).await.unwrap();
        assert_eq!(
            keys(&p),
            TREE.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
        );
    }

    /// What a signed ListObjectsV2 costs through the store's S3 endpoint (in process, no TCP) as
    /// the bucket grows: a page of 1,000 keys from the middle of the bucket, and the page of
    /// 100 common prefixes at its root. Run it in release, by hand:
    /// `cargo test --release --lib -- --ignored listing_page_cost --nocapture`. A benchmark,
    /// not a test: nothing is asserted on time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a benchmark: run it in release, by hand"]
    async fn listing_page_cost() {
        use rusty_s3::S3Action;
        use tower::ServiceExt;
        const ROUNDS: u32 = 50;
        for objects in [1_000usize, 1_000_000] {
            let dir = tempfile::tempdir().unwrap();
            let store = crate::embedded::EmbeddedStore::open(&crate::embedded::StoreOptions {
                root: dir.path(),
                bucket: "bkt",
                access_key_id: "key",
                secret_access_key: &crate::config::Secret::new("secret"),
                public_read: false,
                body_idle_timeout: std::time::Duration::from_secs(5),
                max_object_size: u64::MAX,
                host_names: Vec::new(),
            })
            .unwrap();
            // Index rows only (no files): settled rows are listed without reading any file.
            let metas: Vec<_> = (0..objects)
                .map(|i| crate::embedded::disk::tests::meta(&format!("dir{:03}/obj{i:08}", i % 100), 1))
                .collect();
            let filled = std::time::Instant::now();
            store.disk.index().await.unwrap().build("bkt", metas).await.unwrap();
            let filled = filled.elapsed();
            let router = store.router(&[]);
            let bucket = rusty_s3::Bucket::new(
                "http://store.test".parse().unwrap(),
                rusty_s3::UrlStyle::Path,
                "bkt",
                "us-east-1",
            )
            .unwrap();
            let creds = rusty_s3::Credentials::new("key", "secret");
            let time = |delimiter: bool| {
                let (router, bucket, creds) = (router.clone(), bucket.clone(), creds.clone());
                async move {
                    let start = std::time::Instant::now();
                    for _ in 0..ROUNDS {
                        let mut action = bucket.list_objects_v2(Some(&creds));
                        if delimiter {
                            action.with_delimiter("/");
                        } else {
                            // From the middle of the bucket when it has more than a page.
                            if objects > 1000 {
                                action.with_start_after("dir050/");
                            }
                        }
                        let url = action.sign(std::time::Duration::from_secs(60));
                        let request = http::Request::get(format!("{}?{}", url.path(), url.query().unwrap()))
                            .header(http::header::HOST, "store.test")
                            .body(axum::body::Body::empty())
                            .unwrap();
                        let response = router.clone().oneshot(request).await.unwrap();
                        let status = response.status();
                        let body = axum::body::to_bytes(response.into_body(), 1 << 24).await.unwrap();
                        assert_eq!(status, http::StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                        let entries = String::from_utf8_lossy(&body)
                            .matches(if delimiter { "<Prefix>dir" } else { "<Key>" })
                            .count();
                        assert_eq!(entries, if delimiter { 100 } else { 1000 });
                    }
                    start.elapsed() / ROUNDS
                }
            };
            let (page, prefixes) = (time(false).await, time(true).await);
            // One line per size, read by bench/run.
            println!(
                "listing_page_cost objects={objects} page_us={} prefixes_us={} indexed_ms={}",
                page.as_micros(),
                prefixes.as_micros(),
                filled.as_millis()
            );
        }
    }

    #[test]
    fn url_encoding_keeps_slashes_and_encodes_the_rest() {
        let url = Encoder::new(Some(&EncodingType::from_static(EncodingType::URL))).unwrap();
        assert_eq!(url.text("a b/c+d%é".into()), "a%20b/c%2Bd%25%C3%A9");
        let plain = Encoder::new(None).unwrap();
        assert_eq!(plain.text("a b".into()), "a b");
        assert!(Encoder::new(Some(&EncodingType::from("base64".to_owned()))).is_err());
        assert_eq!(untoken(&token("dir/é")).unwrap(), "dir/é");
        assert!(untoken("not base64!").is_err());
    }
}
