//! The embedded store's disk layout, built so that no key can name a path.
//!
//! An object's files are named after the SHA-256 of its key, never after the key itself:
//! `<root>/<bucket>/<h[0..2]>/<h>.json` holds its metadata and names its blob
//! `<h>.<uuid>`. A write streams into `<root>/.tmp/`, is checked, then renamed into place;
//! renaming the metadata file is the commit point, so a failed or cut-off PUT leaves nothing.
//! Every file the store creates is owner-only (0600) and every directory 0700.
//!
//! An object may be *sealed* (Ferry seals it when an upload is confirmed): a sealed key is
//! never replaced again, only deleted. Commits check the seal, and any condition the client
//! sent (`If-None-Match: *`), under the key's lock, so no HEAD-then-PUT race exists. The seal
//! is an extended attribute (`user.ferry.sealed`) on the object's blob: one system call (a
//! confirm seals every upload; rewriting the metadata file cost a new file, a write and a rename
//! that ext4 flushes to disk, a symbolic link five times the attribute's cost), and it belongs to
//! that version of the object: a new blob starts unsealed. On a file system without user
//! extended attributes the seal is written into the metadata file instead (`"sealed": true`, as
//! versions before the attribute did, which still counts).
//!
//! A multipart object's blob is a directory of its parts (`ObjectMeta::parted`): completing an
//! upload hard-links the parts it names into a new directory and commits that, so the bytes are
//! written to disk once. Joining them into one file wrote every byte a second time, and on a
//! disk-bound machine that halved a large upload's rate (ext4 cannot share extents between
//! files). A reader opens the parts one after another, so a parted blob is not removed while
//! it is read: a single-file blob stays readable through its open file after an overwrite or a
//! delete unlinks it, and [`Readers`] gives a parted one the same guarantee (its removal waits
//! for the last reader in this process).

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use s3s::crypto::{Checksum as _, Md5};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::index::Index;

pub use super::meta::{ObjectMeta, StoredHeaders};

/// Why a commit did not happen.
#[derive(Debug)]
pub enum CommitError<E> {
    Io(io::Error),
    /// The key holds a sealed object.
    Sealed,
    /// The caller's condition refused the current object (or its absence).
    Refused(E),
}

impl<E> From<io::Error> for CommitError<E> {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A file being written in `.tmp`, removed on drop unless committed.
pub struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_blob(&self.path);
        }
    }
}

/// What streaming a body into a temporary file produced.
pub struct Written {
    pub file: TempFile,
    pub size: u64,
    pub md5: [u8; 16],
}

/// An object's bytes, opened.
pub enum ObjectBytes {
    /// Its blob's file.
    File(tokio::fs::File),
    /// A parted blob's directory (kept from removal until the last stream of it is dropped) and
    /// its parts' sizes.
    Parts(Reading, Vec<u64>),
}

/// A stream of an object's bytes.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

impl ObjectBytes {
    /// The `len` bytes from `start` (the caller checked the range against the object's size).
    pub async fn range(self, start: u64, len: u64) -> io::Result<ByteStream> {
        let (reading, sizes) = match self {
            Self::File(mut file) => {
                file.seek(io::SeekFrom::Start(start)).await?;
                return Ok(Box::pin(ReaderStream::with_capacity(file.take(len), READ_CHUNK)));
            }
            Self::Parts(reading, sizes) => (reading, sizes),
        };
        // The stretch of each part the range covers: (part, offset in it, length).
        let end = start + len;
        let mut pieces = Vec::new();
        let mut at = 0;
        for (index, &size) in sizes.iter().enumerate() {
            let (from, to) = (start.max(at), end.min(at + size));
            if from < to {
                pieces.push((index, from - at, to - from));
            }
            at += size;
        }
        let stream = futures::stream::iter(pieces)
            .then(move |(index, offset, len)| {
                // The stream owns `reading`: the directory stays until the stream is dropped.
                let path = reading.dir.join(part_file_name(index));
                async move {
                    let mut file = tokio::fs::File::open(path).await?;
                    file.seek(io::SeekFrom::Start(offset)).await?;
                    Ok::<_, io::Error>(ReaderStream::with_capacity(file.take(len), READ_CHUNK))
                }
            })
            .try_flatten();
        Ok(Box::pin(stream))
    }
}

/// The parted blobs this process is reading, so that removing one waits for its last reader
/// (an open file keeps a removed single-file blob readable; a directory's parts are opened one
/// by one, later). A blob is *doomed* once no metadata names it: new readers then treat it as
/// gone, and whoever drops its count to zero removes it.
#[derive(Clone, Default)]
struct Readers(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, ReadCount>>>);

#[derive(Default)]
struct ReadCount {
    readers: usize,
    doomed: bool,
}

/// One reader of a parted blob; dropping it may remove the blob (see [`Readers`]).
pub struct Reading {
    dir: PathBuf,
    readers: Readers,
}

impl Readers {
    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<PathBuf, ReadCount>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts reading `dir`; `None` if it is doomed (a newer object replaced it meanwhile).
    fn start(&self, dir: PathBuf) -> Option<Reading> {
        let mut counts = self.counts();
        let count = counts.entry(dir.clone()).or_default();
        if count.doomed {
            return None;
        }
        count.readers += 1;
        Some(Reading { dir, readers: self.clone() })
    }

    /// Dooms `dir`: whether the caller removes it now (nobody reads it) or the last reader will.
    fn doom(&self, dir: &Path) -> bool {
        let mut counts = self.counts();
        let count = counts.entry(dir.to_owned()).or_default();
        count.doomed = true;
        count.readers == 0
    }

    /// A doomed blob is gone: forget it.
    fn removed(&self, dir: &Path) {
        self.counts().remove(dir);
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        let remove = {
            let mut counts = self.readers.counts();
            let Some(count) = counts.get_mut(&self.dir) else { return };
            count.readers -= 1;
            if count.readers > 0 {
                return;
            }
            let doomed = count.doomed;
            if !doomed {
                counts.remove(&self.dir);
            }
            doomed
        };
        if remove {
            let (dir, readers) = (self.dir.clone(), self.readers.clone());
            let work = move || {
                let _ = remove_blob(&dir);
                readers.removed(&dir);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(work)),
                Err(_) => work(),
            }
        }
    }
}

pub struct Disk {
    root: PathBuf,
    /// Parted blobs being read (see [`Readers`]).
    readers: Readers,
    /// The listing index, opened (and settled, and built for stores made before it existed)
    /// on first use: see `index.rs`.
    index: tokio::sync::OnceCell<Index>,
    /// Serialises commits and deletes of the same key (striped by hash).
    locks: Vec<Mutex<()>>,
    /// `<root>/.lock`, locked exclusively while this store owns the directory (kept open for
    /// the store's life; the lock ends with the process, even on SIGKILL).
    _owner: Option<std::fs::File>,
}

const LOCK_STRIPES: usize = 64;
/// Bytes read from a blob at a time.
pub const READ_CHUNK: usize = 64 * 1024;
/// Bytes gathered before each write to disk (see [`ChunkedWriter`]): an upload holds two. 128 KiB
/// (was 256) writes as fast and holds ten concurrent parts (`aws s3 cp`) 2.5 MiB lower.
const WRITE_CHUNK: usize = 128 * 1024;

impl Disk {
    /// Opens (creating if needed) the store under `root`, with one bucket.
    pub fn open(root: &Path, bucket: &str) -> io::Result<Self> {
        let tmp = root.join(".tmp");
        let uploads = root.join(".uploads");
        for dir in [root.to_owned(), root.join(bucket), tmp.clone(), uploads.clone()] {
            create_private_dir_all_sync(&dir)?;
            // Directories made by an earlier version kept the umask's mode: close them too.
            restrict_dir(&dir)?;
        }
        // Sole owner of the directory (no other store has it open, in this process or another):
        // nothing can be in flight, so every temporary file and every blob that no metadata
        // names is what a crash left behind (a PUT cut off, a commit killed between the blob's
        // rename and its metadata's). Otherwise only week-old leftovers are removed.
        let owner = lock_exclusively(&root.join(".lock"));
        if owner.is_some() {
            remove_temp_files(&tmp, std::time::Duration::ZERO);
            for bucket in list_dirs(root) {
                remove_unnamed_blobs(&root.join(bucket));
            }
        } else {
            tracing::warn!(dir = %root.display(), "another store has this directory open: keeping its temporary files");
            remove_temp_files(&tmp, STALE_TEMP);
        }
        Ok(Self {
            root: root.to_owned(),
            index: tokio::sync::OnceCell::new(),
            readers: Readers::default(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            _owner: owner,
        })
    }

    pub fn bucket_exists(&self, bucket: &str) -> bool {
        is_plain_name(bucket) && self.root.join(bucket).is_dir()
    }

    /// When the bucket's directory was made (its last change where the file system keeps no
    /// birth time).
    pub fn bucket_created(&self, bucket: &str) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(self.root.join(bucket)).ok()?;
        meta.created().or_else(|_| meta.modified()).ok()
    }

    /// The directory holding one directory per multipart upload in progress.
    pub fn uploads_root(&self) -> PathBuf {
        self.root.join(".uploads")
    }

    pub fn buckets(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type()?.is_dir() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    fn object_dir(&self, bucket: &str, hash: &str) -> PathBuf {
        self.root.join(bucket).join(&hash[..2])
    }

    pub(super) fn meta_path(&self, bucket: &str, key: &str) -> (PathBuf, String) {
        let hash = Self::hash(key);
        (self.object_dir(bucket, &hash).join(format!("{hash}.json")), hash)
    }

    fn lock_for(&self, hash: &str) -> &Mutex<()> {
        let stripe = usize::from_str_radix(&hash[..2], 16).unwrap_or(0) % LOCK_STRIPES;
        &self.locks[stripe]
    }

    /// A fresh name in `.tmp` for a write or a completion in progress.
    fn temp_path(&self) -> PathBuf {
        self.root.join(".tmp").join(Uuid::new_v4().to_string())
    }

    /// A new owner-only (0600) file in `.tmp`, made and owned on the blocking pool: if the
    /// caller is dropped meanwhile, the file is dropped with the result, and removed.
    async fn create_temp_file(&self) -> io::Result<(TempFile, std::fs::File)> {
        let path = self.temp_path();
        blocking(move || {
            let file = private_options().create_new(true).open(&path)?;
            Ok((TempFile { path, committed: false }, file))
        })
        .await
    }

    /// Streams `body` into a new temporary file, hashing as it goes; gives up (removing the
    /// file) as soon as more than `limit` bytes arrived, whatever the body's framing.
    pub async fn write_temp<S, E>(
        &self,
        mut body: S,
        limit: u64,
        mut inspect: impl FnMut(&[u8]),
    ) -> Result<Written, WriteError<E>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
    {
        let (file, created) = self.create_temp_file().await.map_err(WriteError::Io)?;
        // Written in large buffers: each write is a trip to the blocking pool.
        let mut out = ChunkedWriter::new(created);
        let mut md5 = Md5::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(WriteError::Body)?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(WriteError::TooLarge);
            }
            md5.update(&chunk);
            inspect(&chunk);
            out.write(&chunk).await.map_err(WriteError::Io)?;
        }
        out.finish().await.map_err(WriteError::Io)?;
        Ok(Written { file, size, md5: md5.finalize() })
    }

    /// Gathers `parts`, in order, into a new temporary directory that can be committed as a
    /// parted blob (see the module's note): each is hard-linked, so no byte is copied (copied
    /// only where the file system has no hard links). Returns the directory and the size of
    /// each part as linked (a part replaced meanwhile is linked whole, old or new).
    pub async fn link_parts(&self, parts: Vec<PathBuf>) -> io::Result<(TempFile, Vec<u64>)> {
        let path = self.temp_path();
        // Made and owned on the blocking pool: if the completion is dropped meanwhile, the
        // result is dropped with the directory in it, and the directory goes.
        blocking(move || {
            create_private_dir_all_sync(&path)?;
            let dir = TempFile { path: path.clone(), committed: false };
            let mut sizes = Vec::with_capacity(parts.len());
            for (index, part) in parts.iter().enumerate() {
                let linked = path.join(part_file_name(index));
                if std::fs::hard_link(part, &linked).is_err() {
                    let mut out = private_options().create_new(true).open(&linked)?;
                    io::copy(&mut std::fs::File::open(part)?, &mut out)?;
                    out.sync_data()?;
                }
                sizes.push(std::fs::metadata(&linked)?.len());
            }
            // The new names are on disk before anything names the directory.
            std::fs::File::open(&path)?.sync_all()?;
            Ok((dir, sizes))
        })
        .await
    }

    /// Reads a parted blob still in `.tmp` from first byte to last, for a checksum of the
    /// whole object, on the blocking pool.
    pub async fn read_parts<T: Send + 'static>(
        &self,
        dir: &TempFile,
        count: usize,
        mut state: T,
        inspect: impl Fn(&mut T, &[u8]) + Send + 'static,
    ) -> io::Result<T> {
        let path = dir.path.clone();
        blocking(move || {
            let mut buffer = vec![0; READ_CHUNK];
            for index in 0..count {
                let mut file = std::fs::File::open(path.join(part_file_name(index)))?;
                loop {
                    let read = io::Read::read(&mut file, &mut buffer)?;
                    if read == 0 {
                        break;
                    }
                    inspect(&mut state, &buffer[..read]);
                }
            }
            Ok(state)
        })
        .await
    }

    /// Makes a checked temporary file the object `key`, replacing any previous version unless
    /// that one is sealed or `check` refuses it. Both checks happen under the key's lock, with
    /// the rename: nothing can slip in between them.
    pub async fn commit<E>(
        &self,
        bucket: &str,
        mut meta: ObjectMeta,
        mut file: TempFile,
        check: impl FnOnce(Option<&ObjectMeta>) -> Result<(), E>,
    ) -> Result<ObjectMeta, CommitError<E>> {
        let (meta_path, hash) = self.meta_path(bucket, &meta.key);
        let dir = self.object_dir(bucket, &hash);
        let _guard = self.lock_for(&hash).lock().await;
        let previous = read_current(meta_path.clone(), dir.clone()).await?;
        if previous.as_ref().is_some_and(|p| p.sealed) {
            return Err(CommitError::Sealed);
        }
        check(previous.as_ref()).map_err(CommitError::Refused)?;
        let index = self.index().await?;
        index.mark_pending(bucket, &meta.key).await?;
        create_private_dir_all(&dir).await?;
        meta.sealed = false;
        meta.blob = format!("{hash}.{}", Uuid::new_v4().simple());
        tokio::fs::rename(&file.path, dir.join(&meta.blob)).await?;
        file.committed = true;
        if let Err(e) = self.write_meta(&meta_path, &meta).await {
            self.remove_blob_later(dir.join(&meta.blob)).await;
            settle(index, bucket, &meta.key, previous.as_ref()).await;
            return Err(e.into());
        }
        settle(index, bucket, &meta.key, Some(&meta)).await;
        if let Some(previous) = previous {
            self.remove_blob_later(dir.join(previous.blob)).await;
        }
        Ok(meta)
    }

    /// Removes a blob no metadata names any more, on the blocking pool (a parted one is a file
    /// per part), or leaves a parted one being read to its last reader; a failure leaves it to
    /// the next start-up's sweep of unnamed blobs.
    async fn remove_blob_later(&self, path: PathBuf) {
        let readers = self.readers.clone();
        let removed = blocking(move || {
            if !std::fs::symlink_metadata(&path)?.is_dir() {
                return std::fs::remove_file(&path);
            }
            if readers.doom(&path) {
                let removed = std::fs::remove_dir_all(&path);
                readers.removed(&path);
                removed?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = removed {
            tracing::debug!(error = %e, "embedded store: a replaced blob was not removed");
        }
    }

    /// Seals the object `key` (see the module's note) and returns its metadata, or `None` if
    /// there is no such object. Sealing a sealed object changes nothing.
    pub async fn seal(&self, bucket: &str, key: &str) -> io::Result<Option<ObjectMeta>> {
        let (meta_path, hash) = self.meta_path(bucket, key);
        let _guard = self.lock_for(&hash).lock().await;
        let dir = self.object_dir(bucket, &hash);
        let path = meta_path.clone();
        // One trip to the blocking pool for the read and the seal.
        let meta = blocking(move || {
            let Some(mut meta) = read_meta_blocking(&path)? else {
                return Ok(None);
            };
            if meta.sealed {
                return Ok(Some((meta, false)));
            }
            match xattr::set(dir.join(&meta.blob), SEAL_ATTRIBUTE, b"1") {
                Ok(()) => {
                    meta.sealed = true;
                    Ok(Some((meta, false)))
                }
                // No user extended attributes here (or no room for one): the metadata file
                // says it instead.
                Err(e) => {
                    tracing::debug!(error = %e, "cannot seal with an extended attribute; sealing in the metadata file");
                    Ok(Some((meta, true)))
                }
            }
        })
        .await?;
        let Some((mut meta, in_metadata)) = meta else {
            return Ok(None);
        };
        if in_metadata {
            meta.sealed = true;
            self.write_meta(&meta_path, &meta).await?;
        }
        Ok(Some(meta))
    }

    /// The object's metadata with its seal, for a writer deciding whether it may replace it.
    pub async fn current(&self, bucket: &str, key: &str) -> io::Result<Option<ObjectMeta>> {
        let (meta_path, hash) = self.meta_path(bucket, key);
        read_current(meta_path, self.object_dir(bucket, &hash)).await
    }

    /// Replaces a metadata file atomically: written in `.tmp`, then renamed over it.
    /// The caller holds the key's lock.
    async fn write_meta(&self, meta_path: &Path, meta: &ObjectMeta) -> io::Result<()> {
        let meta_tmp = self.root.join(".tmp").join(format!("{}.json", Uuid::new_v4()));
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        let written = match write_private(&meta_tmp, &json).await {
            Ok(()) => tokio::fs::rename(&meta_tmp, meta_path).await,
            Err(e) => Err(e),
        };
        if written.is_err() {
            let _ = tokio::fs::remove_file(&meta_tmp).await;
        }
        written
    }

    async fn read_meta_at(&self, path: &Path) -> io::Result<Option<ObjectMeta>> {
        let path = path.to_owned();
        blocking(move || read_meta_blocking(&path)).await
    }

    pub async fn meta(&self, bucket: &str, key: &str) -> io::Result<Option<ObjectMeta>> {
        self.read_meta_at(&self.meta_path(bucket, key).0).await
    }

    /// Opens an object's blob together with the metadata that names it.
    pub async fn open_object(&self, bucket: &str, key: &str) -> io::Result<Option<(ObjectMeta, ObjectBytes)>> {
        let (meta_path, hash) = self.meta_path(bucket, key);
        // A concurrent overwrite may delete the blob between the two reads: look again once.
        for _ in 0..2 {
            let Some(meta) = self.read_meta_at(&meta_path).await? else {
                return Ok(None);
            };
            let blob = self.object_dir(bucket, &hash).join(&meta.blob);
            if meta.parted {
                // Kept from removal from here on, unless it was replaced since the read.
                let Some(reading) = self.readers.start(blob) else { continue };
                match tokio::fs::metadata(&reading.dir).await {
                    Ok(_) => {
                        let parts = ObjectBytes::Parts(reading, meta.part_sizes.clone());
                        return Ok(Some((meta, parts)));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
            match tokio::fs::File::open(&blob).await {
                Ok(file) => return Ok(Some((meta, ObjectBytes::File(file)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Deletes an object; returns whether it existed.
    pub async fn delete(&self, bucket: &str, key: &str) -> io::Result<bool> {
        let (meta_path, hash) = self.meta_path(bucket, key);
        let _guard = self.lock_for(&hash).lock().await;
        let Some(meta) = self.read_meta_at(&meta_path).await? else {
            return Ok(false);
        };
        let index = self.index().await?;
        index.mark_pending(bucket, key).await?;
        if let Err(e) = tokio::fs::remove_file(&meta_path).await {
            settle(index, bucket, key, Some(&meta)).await;
            return Err(e);
        }
        settle(index, bucket, key, None).await;
        self.remove_blob_later(self.object_dir(bucket, &hash).join(meta.blob)).await;
        Ok(true)
    }

    /// The listing index, opened on first use: rows a crash left pending are settled from the
    /// metadata files, and a bucket made before the index existed is indexed once.
    pub async fn index(&self) -> io::Result<&Index> {
        self.index
            .get_or_try_init(|| async {
                let index = Index::open(&self.root.join(".index.sqlite")).await?;
                for bucket in list_dirs(&self.root) {
                    if !index.is_built(&bucket).await? {
                        tracing::info!(%bucket, "building the embedded store's listing index");
                        index.build(&bucket, self.scan(&bucket).await?).await?;
                    }
                }
                for (bucket, key) in index.pending().await? {
                    index.settle(&bucket, &key, self.meta(&bucket, &key).await?.as_ref()).await?;
                }
                Ok(index)
            })
            .await
    }

    /// Every object's metadata in a bucket, read from every metadata file (to build the index).
    async fn scan(&self, bucket: &str) -> io::Result<Vec<ObjectMeta>> {
        let mut metas = Vec::new();
        let mut shards = tokio::fs::read_dir(self.root.join(bucket)).await?;
        while let Some(shard) = shards.next_entry().await? {
            if !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(shard.path()).await?;
            while let Some(file) = files.next_entry().await? {
                if file.file_name().to_string_lossy().ends_with(".json")
                    && let Some(meta) = self.read_meta_at(&file.path()).await?
                {
                    metas.push(meta);
                }
            }
        }
        Ok(metas)
    }

    #[cfg(test)]
    pub fn blob_path(&self, bucket: &str, meta: &ObjectMeta) -> PathBuf {
        let hash = Self::hash(&meta.key);
        self.object_dir(bucket, &hash).join(&meta.blob)
    }

    /// Directory of a multipart upload; `None` unless `upload_id` is a UUID we could have made.
    pub fn upload_dir(&self, upload_id: &str) -> Option<PathBuf> {
        let id = Uuid::try_parse(upload_id).ok()?;
        Some(self.root.join(".uploads").join(id.simple().to_string()))
    }
}

/// Creates `dir` and its missing parents, owner-only (0700).
pub async fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

fn create_private_dir_all_sync(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes an existing directory of the store owner-only.
fn restrict_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How the store opens every file it writes (temporary uploads, joined parts, metadata): for
/// writing, readable by its owner only. A std `OpenOptions`, for the blocking pool as it is and
/// for async code through `tokio::fs::OpenOptions::from`.
fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// A file written from async code through the blocking pool: one buffer is written while the
/// next fills, so an upload holds at most two buffers of [`WRITE_CHUNK`] (a tokio `BufWriter`
/// over a tokio `File` held its own buffer plus the file's copy of it, 2 MiB per upload), and
/// a 1 GiB upload takes a few thousand trips to the pool rather than one per network frame.
struct ChunkedWriter {
    /// `None` while a write holds it.
    file: Option<std::fs::File>,
    filling: Vec<u8>,
    in_flight: Option<ChunkWrite>,
}

/// A buffer being written: the file and the buffer come back when it is done.
type ChunkWrite = tokio::task::JoinHandle<io::Result<(std::fs::File, Vec<u8>)>>;

impl ChunkedWriter {
    fn new(file: std::fs::File) -> Self {
        Self { file: Some(file), filling: Vec::new(), in_flight: None }
    }

    async fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = WRITE_CHUNK - self.filling.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.filling.extend_from_slice(now);
            bytes = later;
            if self.filling.len() == WRITE_CHUNK {
                let spare = self.settle().await?;
                let full = std::mem::replace(&mut self.filling, spare);
                let mut file = self.take_file()?;
                self.in_flight = Some(tokio::task::spawn_blocking(move || {
                    file.write_all(&full)?;
                    Ok((file, full))
                }));
            }
        }
        Ok(())
    }

    /// Waits for the write in flight; its buffer comes back empty, for the next one to fill.
    async fn settle(&mut self) -> io::Result<Vec<u8>> {
        let Some(write) = self.in_flight.take() else { return Ok(Vec::new()) };
        let (file, mut buffer) = write.await.map_err(io::Error::other)??;
        self.file = Some(file);
        buffer.clear();
        Ok(buffer)
    }

    fn take_file(&mut self) -> io::Result<std::fs::File> {
        self.file.take().ok_or_else(|| io::Error::other("the file was lost in an earlier failed write"))
    }

    /// Writes what is left and syncs the file's data to disk.
    async fn finish(mut self) -> io::Result<()> {
        self.settle().await?;
        let mut file = self.take_file()?;
        let rest = std::mem::take(&mut self.filling);
        blocking(move || {
            file.write_all(&rest)?;
            file.sync_data()
        })
        .await
    }
}

/// The extended attribute that seals a blob.
const SEAL_ATTRIBUTE: &str = "user.ferry.sealed";

fn read_meta_blocking(meta_path: &Path) -> io::Result<Option<ObjectMeta>> {
    match std::fs::read(meta_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// An object's metadata, `sealed` if its blob carries the seal.
fn read_current_blocking(meta_path: &Path, dir: &Path) -> io::Result<Option<ObjectMeta>> {
    let Some(mut meta) = read_meta_blocking(meta_path)? else {
        return Ok(None);
    };
    if !meta.sealed {
        meta.sealed = xattr::get(dir.join(&meta.blob), SEAL_ATTRIBUTE).ok().flatten().is_some();
    }
    Ok(Some(meta))
}

async fn read_current(meta_path: PathBuf, dir: PathBuf) -> io::Result<Option<ObjectMeta>> {
    blocking(move || read_current_blocking(&meta_path, &dir)).await
}

/// Runs file-system work on the blocking pool, in one trip.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

/// Removes a blob or a temporary file: one file, or a parted blob's directory with its parts.
fn remove_blob(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
}

/// The file name of a parted blob's part at `index` (0-based, in the object's order).
fn part_file_name(index: usize) -> String {
    format!("{index:05}")
}

/// Writes `bytes` to `path`, creating it owner-only (0600) or truncating it.
pub async fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = tokio::fs::OpenOptions::from(private_options()).create(true).truncate(true).open(path).await?;
    file.write_all(bytes).await?;
    file.flush().await
}

/// Leftovers of a crash mid-upload are never visible; drop those old enough that no live
/// upload (of this or another process on the same directory) can still be writing them.
/// How old a temporary file must be before a store that shares its directory removes it.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The directory's lock file, locked exclusively, or `None` if another holder has it.
fn lock_exclusively(path: &Path) -> Option<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// Temporary files older than `age` (all of them for zero).
fn remove_temp_files(tmp: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let old = age.is_zero()
            || entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age));
        if old {
            let _ = remove_blob(&entry.path());
        }
    }
}

/// Names of the directories in `dir` that are buckets (not `.tmp`, `.uploads`).
fn list_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// Blobs (`<h>.<uuid>`) that their metadata file (`<h>.json`) does not name: a commit killed
/// between the two renames, or a delete killed between the two removals.
fn remove_unnamed_blobs(bucket_dir: &Path) {
    let Ok(shards) = std::fs::read_dir(bucket_dir) else { return };
    for shard in shards.flatten().filter(|s| s.file_type().is_ok_and(|t| t.is_dir())) {
        let Ok(files) = std::fs::read_dir(shard.path()) else { continue };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let Some((hash, suffix)) = name.split_once('.') else { continue };
            if suffix == "json" {
                continue;
            }
            let named = std::fs::read(shard.path().join(format!("{hash}.json")))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<ObjectMeta>(&bytes).ok())
                .is_some_and(|meta| meta.blob == name);
            if !named {
                tracing::info!(blob = %name, "removing a blob no object names (left by a crash)");
                let _ = remove_blob(&file.path());
            }
        }
    }
}

/// Multipart uploads nobody completed or aborted, removed with their parts by the sweep after
/// `FERRY_SWEEP_MULTIPART_AGE` (what S3 users set with an AbortIncompleteMultipartUpload
/// lifecycle rule): those whose directory did not change for `age` (each part's arrival
/// renames a file into it). Returns how many.
pub fn remove_abandoned_multipart_uploads(uploads: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(uploads) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > age));
        if old && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Brings a key's row up to date after its metadata file changed (or failed to). A failure
/// leaves the row pending, which listings resolve by reading the file: still correct.
async fn settle(index: &Index, bucket: &str, key: &str, meta: Option<&ObjectMeta>) {
    if let Err(e) = index.settle(bucket, key, meta).await {
        tracing::warn!(error = %e, "embedded store: listing index not updated (the key stays pending)");
    }
}

/// Bucket names come from the URL path: refuse anything that is not one plain component.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\'])
}

#[derive(Debug)]
pub enum WriteError<E> {
    Io(io::Error),
    Body(E),
    /// The body went past the write's limit.
    TooLarge,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    pub fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size,
            etag: String::new(),
            content_type: None,
            content_disposition: None,
            last_modified: chrono::Utc::now(),
            blob: String::new(),
            sealed: false,
            headers: StoredHeaders::default(),
            upload_id: None,
            part_sizes: Vec::new(),
            parted: false,
        }
    }

    fn any(_: Option<&ObjectMeta>) -> Result<(), ()> {
        Ok(())
    }

    async fn put(disk: &Disk, key: &str, body: &'static [u8]) -> Result<ObjectMeta, CommitError<()>> {
        let written = disk.write_temp(chunks(&[body]), u64::MAX, |_| {}).await.ok().unwrap();
        disk.commit("b", meta(key, written.size), written.file, any).await
    }

    async fn read(disk: &Disk, key: &str) -> Vec<u8> {
        let (meta, bytes) = disk.open_object("b", key).await.unwrap().unwrap();
        read_range(bytes, 0, meta.size).await
    }

    async fn read_range(bytes: ObjectBytes, start: u64, len: u64) -> Vec<u8> {
        let chunks: Vec<Bytes> = bytes.range(start, len).await.unwrap().try_collect().await.unwrap();
        chunks.concat()
    }

    /// Part files as an upload leaves them, in `dir`.
    fn part_files(dir: &Path, parts: &[&[u8]]) -> Vec<PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        let paths: Vec<PathBuf> = (0..parts.len()).map(|i| dir.join(format!("part-{i}"))).collect();
        for (path, bytes) in paths.iter().zip(parts) {
            std::fs::write(path, bytes).unwrap();
        }
        paths
    }

    /// Commits `parts` as the parted object `key`, as a multipart completion does.
    async fn put_parted(disk: &Disk, root: &Path, key: &str, parts: &[&[u8]]) -> Result<ObjectMeta, CommitError<()>> {
        let files = part_files(&root.join(format!("upload-{}", Uuid::new_v4())), parts);
        let (blob, sizes) = disk.link_parts(files).await.unwrap();
        let mut parted = meta(key, sizes.iter().sum());
        parted.part_sizes = sizes;
        parted.parted = true;
        disk.commit("b", parted, blob, any).await
    }

    #[tokio::test]
    async fn traversal_keys_stay_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let written = disk.write_temp(chunks(&[b"x"]), u64::MAX, |_| {}).await.ok().unwrap();
        let key = "../../../escape";
        let stored = disk.commit("b", meta(key, 1), written.file, any).await.unwrap();
        assert!(disk.blob_path("b", &stored).starts_with(dir.path().join("store/b")));
        assert!(!dir.path().join("escape").exists());
        assert_eq!(disk.meta("b", key).await.unwrap().unwrap().size, 1);
    }

    #[tokio::test]
    async fn a_failed_body_leaves_no_object_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        let body = futures::stream::iter(vec![Ok(Bytes::from_static(b"half")), Err(io::Error::other("cut"))]);
        assert!(disk.write_temp(body, u64::MAX, |_| {}).await.is_err());
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        assert!(super::super::listing::page(&disk, "b", "", None, "", 10).await.unwrap().objects.is_empty());
    }

    #[tokio::test]
    async fn frames_across_write_chunks_are_stored_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        let body: Vec<u8> = (0..3 * WRITE_CHUNK + 17).map(|i| (i * 7 % 251) as u8).collect();
        let body: &'static [u8] = Box::leak(body.into_boxed_slice());
        let cuts = [1, WRITE_CHUNK - 1, WRITE_CHUNK + 5, 2 * WRITE_CHUNK, 3 * WRITE_CHUNK + 17];
        let frames: Vec<&'static [u8]> = [0].iter().chain(&cuts).zip(&cuts).map(|(&a, &b)| &body[a..b]).collect();
        let written = disk.write_temp(chunks(&frames), u64::MAX, |_| {}).await.ok().unwrap();
        assert_eq!(written.size, body.len() as u64);
        let mut md5 = Md5::new();
        md5.update(body);
        assert_eq!(written.md5, md5.finalize());
        assert_eq!(std::fs::read(written.file.path()).unwrap(), body);
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        let refused = disk.write_temp(chunks(&[b"12345", b"6"]), 5, |_| {}).await;
        assert!(matches!(refused, Err(WriteError::TooLarge)));
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        let exact = disk.write_temp(chunks(&[b"123", b"45"]), 5, |_| {}).await.ok().unwrap();
        assert_eq!(exact.size, 5);
    }

    #[tokio::test]
    async fn overwriting_replaces_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        for body in [&b"one"[..], &b"second"[..]] {
            let static_body: &'static [u8] = if body.len() == 3 { b"one" } else { b"second" };
            let written = disk.write_temp(chunks(&[static_body]), u64::MAX, |_| {}).await.ok().unwrap();
            disk.commit("b", meta("k", written.size), written.file, any).await.unwrap();
        }
        let (m, _) = disk.open_object("b", "k").await.unwrap().unwrap();
        assert_eq!(m.size, 6);
        let shard = disk.blob_path("b", &m).parent().unwrap().to_owned();
        assert_eq!(std::fs::read_dir(shard).unwrap().count(), 2, "one blob and one metadata file");
    }

    #[tokio::test]
    async fn a_sealed_object_is_never_replaced_but_can_be_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        assert!(disk.seal("b", "k").await.unwrap().is_none(), "nothing to seal");
        put(&disk, "k", b"first").await.unwrap();
        let sealed = disk.seal("b", "k").await.unwrap().unwrap();
        assert!(sealed.sealed && sealed.size == 5);
        assert!(disk.seal("b", "k").await.unwrap().unwrap().sealed, "sealing twice is harmless");
        assert!(matches!(put(&disk, "k", b"second").await, Err(CommitError::Sealed)));
        assert_eq!(read(&disk, "k").await, b"first");
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0, "the refused body is gone");
        let shard = disk.blob_path("b", &sealed).parent().unwrap().to_owned();
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 2, "one blob and one metadata file");
        assert!(disk.delete("b", "k").await.unwrap());
        put(&disk, "k", b"again").await.unwrap();
        assert!(!disk.current("b", "k").await.unwrap().unwrap().sealed, "a new object starts unsealed");
    }

    #[tokio::test]
    async fn a_parted_object_serves_every_range_across_its_parts() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let parts: [&[u8]; 4] = [b"hello", b"", b", p", b"arted!!"];
        let whole = parts.concat();
        let stored = put_parted(&disk, dir.path(), "k", &parts).await.unwrap();
        assert_eq!(stored.part_sizes, [5, 0, 3, 7]);
        assert!(disk.blob_path("b", &stored).is_dir(), "the blob is a directory of parts");
        let size = whole.len() as u64;
        for start in 0..=size {
            for len in 0..=size - start {
                let (_, bytes) = disk.open_object("b", "k").await.unwrap().unwrap();
                let range = (start as usize)..((start + len) as usize);
                assert_eq!(read_range(bytes, start, len).await, &whole[range], "bytes {start}+{len}");
            }
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn linking_parts_copies_no_byte_and_the_object_outlives_its_upload() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let upload = dir.path().join("upload");
        let files = part_files(&upload, &[b"first part ", b"second"]);
        let inodes: Vec<u64> = files.iter().map(|f| std::fs::metadata(f).unwrap().ino()).collect();
        let (blob, sizes) = disk.link_parts(files).await.unwrap();
        let linked: Vec<u64> =
            (0..2).map(|i| std::fs::metadata(blob.path().join(part_file_name(i))).unwrap().ino()).collect();
        assert_eq!(linked, inodes, "the same files, not copies");
        let mut parted = meta("k", 17);
        (parted.part_sizes, parted.parted) = (sizes, true);
        disk.commit("b", parted, blob, any).await.unwrap();
        std::fs::remove_dir_all(&upload).unwrap();
        assert_eq!(read(&disk, "k").await, b"first part second");
    }

    #[tokio::test]
    async fn a_parted_object_replaced_deleted_or_sealed_behaves_as_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let first = put_parted(&disk, dir.path(), "k", &[b"a", b"b"]).await.unwrap();
        let shard = disk.blob_path("b", &first).parent().unwrap().to_owned();
        put(&disk, "k", b"plain").await.unwrap();
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 2, "the parted blob went with its parts");
        assert_eq!(read(&disk, "k").await, b"plain");
        put_parted(&disk, dir.path(), "k", &[b"c", b"d"]).await.unwrap();
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 2, "the plain blob went");
        assert!(disk.seal("b", "k").await.unwrap().unwrap().sealed);
        assert!(disk.current("b", "k").await.unwrap().unwrap().sealed, "the seal holds on the directory");
        assert!(matches!(put_parted(&disk, dir.path(), "k", &[b"e"]).await, Err(CommitError::Sealed)));
        assert!(matches!(put(&disk, "k", b"other").await, Err(CommitError::Sealed)));
        assert_eq!(read(&disk, "k").await, b"cd");
        assert_eq!(std::fs::read_dir(dir.path().join("store/.tmp")).unwrap().count(), 0, "refused parts are gone");
        assert!(disk.delete("b", "k").await.unwrap());
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 0, "delete takes the directory");
    }

    /// Waits (up to 5 s) until `dir` holds `count` entries; returns how many it holds.
    async fn settles_at(dir: &Path, count: usize) -> usize {
        for _ in 0..500 {
            if std::fs::read_dir(dir).unwrap().count() == count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        std::fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn a_parted_object_being_read_outlives_its_delete_and_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let first = put_parted(&disk, dir.path(), "k", &[b"old ", b"bytes"]).await.unwrap();
        let shard = disk.blob_path("b", &first).parent().unwrap().to_owned();
        let (_, before_delete) = disk.open_object("b", "k").await.unwrap().unwrap();
        assert!(disk.delete("b", "k").await.unwrap());
        assert!(disk.open_object("b", "k").await.unwrap().is_none(), "deleted for new readers");
        assert_eq!(read_range(before_delete, 0, 9).await, b"old bytes", "an earlier reader reads it whole");
        assert_eq!(settles_at(&shard, 0).await, 0, "removed once its last reader is done");

        put_parted(&disk, dir.path(), "k", &[b"first"]).await.unwrap();
        let (_, reader) = disk.open_object("b", "k").await.unwrap().unwrap();
        let stream = reader.range(0, 5).await.unwrap();
        put(&disk, "k", b"second").await.unwrap();
        assert_eq!(read(&disk, "k").await, b"second");
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 3, "the replaced parts wait for their reader");
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), b"first");
        assert_eq!(settles_at(&shard, 2).await, 2, "then go");
    }

    #[tokio::test]
    async fn a_write_or_a_completion_dropped_midway_leaves_nothing_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(&dir.path().join("store"), "b").unwrap();
        let tmp = dir.path().join("store/.tmp");
        let parts: Vec<&[u8]> = vec![b"part"; 200];
        let files = part_files(&dir.path().join("upload"), &parts);
        let short = std::time::Duration::from_nanos(1);
        let _ = tokio::time::timeout(short, disk.link_parts(files)).await;
        let _ = tokio::time::timeout(short, disk.write_temp(chunks(&[b"body"]), u64::MAX, |_| {})).await;
        assert_eq!(settles_at(&tmp, 0).await, 0);
    }

    #[tokio::test]
    async fn parted_leftovers_of_a_crash_are_removed_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let disk = Disk::open(&root, "b").unwrap();
        let kept = put_parted(&disk, dir.path(), "k", &[b"kept"]).await.unwrap();
        // Killed between linking and committing: the directory stays in .tmp.
        let files = part_files(&dir.path().join("cut"), &[b"x"]);
        std::mem::forget(disk.link_parts(files).await.unwrap().0);
        // Killed between renaming a parted blob into place and writing its metadata.
        let shard = disk.blob_path("b", &kept).parent().unwrap().to_owned();
        let hash = kept.blob.split_once('.').unwrap().0;
        let unnamed = shard.join(format!("{hash}.{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&unnamed).unwrap();
        std::fs::write(unnamed.join(part_file_name(0)), b"orphan").unwrap();
        assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 3);
        drop(disk);
        let disk = Disk::open(&root, "b").unwrap();
        assert_eq!(std::fs::read_dir(root.join(".tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 2, "the named blob and its metadata");
        assert_eq!(read(&disk, "k").await, b"kept");
    }

    #[tokio::test]
    async fn metadata_written_before_sealing_existed_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        let stored = put(&disk, "k", b"x").await.unwrap();
        let (meta_path, _) = disk.meta_path("b", "k");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("sealed");
        std::fs::write(&meta_path, serde_json::to_vec(&json).unwrap()).unwrap();
        let loaded = disk.meta("b", "k").await.unwrap().unwrap();
        assert!(!loaded.sealed);
        assert_eq!(loaded.blob, stored.blob);
    }

    #[test]
    fn metadata_files_of_older_versions_load_and_new_fields_round_trip() {
        // As the previous version wrote it: no headers, no upload id, no part sizes.
        let old = r#"{"key":"k","size":1,"etag":"ab","content_type":"text/plain","content_disposition":null,
            "last_modified":"2025-01-01T00:00:00Z","blob":"h.u","sealed":true}"#;
        let loaded: ObjectMeta = serde_json::from_str(old).unwrap();
        assert!(loaded.sealed && loaded.headers == StoredHeaders::default());
        assert!(loaded.upload_id.is_none() && loaded.part_sizes.is_empty() && !loaded.parted);

        let mut full = meta("k", 1);
        full.headers.cache_control = Some("no-cache".into());
        full.headers.user.insert("colour".into(), "blue".into());
        full.upload_id = Some("u".into());
        full.part_sizes = vec![5, 1];
        full.parted = true;
        let again: ObjectMeta = serde_json::from_slice(&serde_json::to_vec(&full).unwrap()).unwrap();
        assert_eq!(again.headers, full.headers);
        assert_eq!((again.upload_id, again.part_sizes, again.parted), (full.upload_id, full.part_sizes, true));
    }

    #[tokio::test]
    async fn a_refused_condition_keeps_the_previous_object() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), "b").unwrap();
        put(&disk, "k", b"first").await.unwrap();
        let written = disk.write_temp(chunks(&[b"second"]), u64::MAX, |_| {}).await.ok().unwrap();
        let absent = |m: Option<&ObjectMeta>| if m.is_some() { Err("exists") } else { Ok(()) };
        let refused = disk.commit("b", meta("k", 6), written.file, absent).await;
        assert!(matches!(refused, Err(CommitError::Refused("exists"))));
        assert_eq!(read(&disk, "k").await, b"first");
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        let written = disk.write_temp(chunks(&[b"new"]), u64::MAX, |_| {}).await.ok().unwrap();
        disk.commit("b", meta("other", 3), written.file, absent).await.unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let disk = Disk::open(&root, "b").unwrap();
        for d in [root.clone(), root.join("b"), root.join(".tmp"), root.join(".uploads")] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        let written = disk.write_temp(chunks(&[b"x"]), u64::MAX, |_| {}).await.ok().unwrap();
        assert_eq!(mode(written.file.path()), 0o600, "temporary file");
        let stored = disk.commit("b", meta("k", 1), written.file, any).await.unwrap();
        let blob = disk.blob_path("b", &stored);
        assert_eq!(mode(&blob), 0o600, "blob");
        assert_eq!(mode(&disk.meta_path("b", "k").0), 0o600, "metadata");
        assert_eq!(mode(blob.parent().unwrap()), 0o700, "shard directory");
        disk.seal("b", "k").await.unwrap();
        assert_eq!(mode(&disk.meta_path("b", "k").0), 0o600, "sealed metadata");
    }
}
