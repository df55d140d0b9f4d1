//! ListObjects (v1) and ListObjectsV2: one page walk for both, as S3 defines it.
//!
//! Tools depend on the details: `aws s3 ls` and rclone's directory mode need the delimiter's
//! `CommonPrefixes` (the `PRE dir/` lines), s3cmd and rclone list with v1 and its markers, and
//! botocore asks for `encoding-type=url` and decodes every key it gets back. A common prefix
//! counts against `max-keys` like a key, and a page that ends on one resumes after all of it.

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Result, s3_error};

use super::backend::last_modified;
use super::disk::ObjectMeta;

/// S3's largest page, and its default.
const MAX_PAGE: i32 = 1000;

/// One page of a listing.
#[derive(Debug, Default)]
pub(super) struct Page {
    pub objects: Vec<ObjectMeta>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix of a truncated page: the next page starts after it.
    pub next: Option<String>,
}

/// The page of `sorted` (objects in key order) after `after`: keys under `prefix`, those with
/// `delimiter` past the prefix rolled up into common prefixes, at most `max` entries.
pub(super) fn page(
    sorted: impl IntoIterator<Item = ObjectMeta>,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max: usize,
) -> Page {
    let mut page = Page::default();
    if max == 0 {
        return page; // S3 answers an empty, complete page
    }
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut count = 0;
    for meta in sorted {
        if !meta.key.starts_with(prefix) || meta.key.as_str() <= after {
            continue;
        }
        let group = delimiter.and_then(|d| {
            let rest = &meta.key[prefix.len()..];
            rest.find(d).map(|i| meta.key[..prefix.len() + i + d.len()].to_owned())
        });
        if let Some(common) = &group
            && (page.prefixes.last() == Some(common) || common == after)
        {
            continue; // rolled up already, on this page or the one before
        }
        if count == max {
            page.truncated = true;
            return page;
        }
        count += 1;
        match group {
            Some(common) => {
                page.next = Some(common.clone());
                page.prefixes.push(common);
            }
            None => {
                page.next = Some(meta.key.clone());
                page.objects.push(meta);
            }
        }
    }
    page.next = None;
    page
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

    pub fn objects(&self, objects: Vec<ObjectMeta>) -> Vec<Object> {
        objects
            .into_iter()
            .map(|m| Object {
                last_modified: Some(last_modified(&m)),
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

    fn objects(keys: &[&str]) -> Vec<ObjectMeta> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.iter()
            .map(|k| ObjectMeta {
                key: (*k).into(),
                size: 1,
                etag: String::new(),
                content_type: None,
                content_disposition: None,
                last_modified: chrono::Utc::now(),
                blob: String::new(),
                sealed: false,
                headers: Default::default(),
                upload_id: None,
                part_sizes: Vec::new(),
            })
            .collect()
    }

    fn keys(page: &Page) -> Vec<&str> {
        page.objects.iter().map(|m| m.key.as_str()).collect()
    }

    const TREE: &[&str] = &["a.txt", "dir/one", "dir/sub/two", "dir/three", "other/x", "z"];

    #[test]
    fn a_delimiter_rolls_keys_up_into_common_prefixes() {
        let p = page(objects(TREE), "", Some("/"), "", 1000);
        assert_eq!(keys(&p), ["a.txt", "z"]);
        assert_eq!(p.prefixes, ["dir/", "other/"]);
        assert!(!p.truncated && p.next.is_none());
        let p = page(objects(TREE), "dir/", Some("/"), "", 1000);
        assert_eq!(keys(&p), ["dir/one", "dir/three"]);
        assert_eq!(p.prefixes, ["dir/sub/"]);
    }

    #[test]
    fn pages_count_prefixes_and_resume_after_the_last_entry() {
        let mut seen = Vec::new();
        let mut after = String::new();
        for _ in 0..10 {
            let p = page(objects(TREE), "", Some("/"), &after, 1);
            seen.extend(keys(&p).iter().map(|k| k.to_string()));
            seen.extend(p.prefixes.clone());
            match p.next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, ["a.txt", "dir/", "other/", "z"]);
    }

    #[test]
    fn max_keys_zero_is_an_empty_complete_page_and_no_delimiter_lists_flat() {
        let p = page(objects(TREE), "", None, "", 0);
        assert!(p.objects.is_empty() && p.prefixes.is_empty() && !p.truncated);
        let p = page(objects(TREE), "", None, "dir/one", 2);
        assert_eq!(keys(&p), ["dir/sub/two", "dir/three"]);
        assert!(p.truncated);
        assert_eq!(p.next.as_deref(), Some("dir/three"));
        assert!(max_keys(Some(-1)).is_err());
        assert_eq!(max_keys(Some(5000)).unwrap(), 1000);
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
