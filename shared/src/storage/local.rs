//! The local filesystem backend, the embedded default.
//!
//! Layout of a bucket folder:
//!
//! ```text
//! <root>/<bucket>/.lock                       serialises commits (an OS file lock)
//! <root>/<bucket>/tmp/<uuid>.part              uploads in progress (locked), never visible
//! <root>/<bucket>/objects/<h2>/<h>/meta.json   the live generation and its metadata
//! <root>/<bucket>/objects/<h2>/<h>/<gen>.data  that generation's bytes
//! ```
//!
//! `<h>` is the SHA-256 of the object name in hex (`<h2>` its first two digits), so
//! no name — whatever it contains — ever becomes part of a path. A write streams into
//! `tmp/`, then commits under the lock: rename the data into place, then atomically
//! replace `meta.json`. `meta.json` is the commit point: until it names a generation,
//! that generation's data is invisible, and a crash leaves at worst an orphan file.
//!
//! Each staging file is locked (an OS file lock) by the upload writing it until its
//! data is committed, so an unlocked one was left by an upload that died with its
//! process; opening a bucket removes those. Reads check the data against `meta.json` (size before the first
//! byte, MD5 by the last), so a file damaged on disk is never served whole.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{
    ByteStream, Checksums, ContentHasher, ObjectMeta, ObjectName, PutOptions, check_generation,
    content_type_or_default, next_generation,
};
use crate::error::{Error, Result};

/// A bucket stored in a local folder.
#[derive(Debug, Clone)]
pub struct LocalBucket {
    name: String,
    dir: PathBuf,
}

impl LocalBucket {
    /// Opens (creating if needed) bucket `name` under `root`, removing what uploads
    /// that died with their process left behind.
    pub async fn open(root: &Path, name: &str) -> Result<LocalBucket> {
        crate::config::validate_bucket_name(name).map_err(Error::Config)?;
        let dir = root.join(name);
        tokio::fs::create_dir_all(dir.join("tmp")).await?;
        tokio::fs::create_dir_all(dir.join("objects")).await?;
        let staging = dir.join("tmp");
        let (files, bytes) =
            tokio::task::spawn_blocking(move || remove_abandoned_uploads(&staging))
                .await
                .map_err(|e| Error::internal("staging cleanup task failed", e))??;
        if files > 0 {
            tracing::info!(
                bucket = name,
                files,
                bytes,
                "removed files of abandoned uploads"
            );
        }
        Ok(LocalBucket {
            name: name.to_string(),
            dir,
        })
    }

    /// The folder that holds this bucket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn object_dir(&self, name: &ObjectName) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, name.as_str().as_bytes());
        let hash = hex::encode(digest.as_ref());
        self.dir.join("objects").join(&hash[..2]).join(hash)
    }

    /// Streams `body` into a private, locked temporary file.
    async fn stage(&self, mut body: ByteStream) -> Result<Staged> {
        let (path, file) = create_locked(&self.dir.join("tmp")).await?;
        let mut file = tokio::fs::File::from_std(file);
        let written = async {
            let (mut size, mut hasher) = (0u64, ContentHasher::default());
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok::<_, std::io::Error>((size, hasher.finish()))
        }
        .await;
        match written {
            Ok((size, checksums)) => Ok(Staged {
                path,
                size,
                checksums,
                lock: file.into_std().await,
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                Err(e.into())
            }
        }
    }
}

/// An upload written to its staging file, not yet committed.
struct Staged {
    path: PathBuf,
    size: u64,
    checksums: Checksums,
    /// The staging file, open and locked: keep it until the data is renamed into
    /// place, or a cleanup in another process could take it for abandoned.
    lock: std::fs::File,
}

/// Staging files of uploads in progress: each is locked by its upload.
const STAGING_EXTENSION: &str = "part";
/// A staging file between its creation and its lock; renamed to `.part` once locked,
/// so a `.part` file is never unlocked while its upload lives.
const CREATING_EXTENSION: &str = "new";
/// A `.new` file older than this was left by a process that died in that instant.
const CREATING_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Creates a staging file in `staging` and locks it; returns its path and the open
/// file, whose lock the upload holds until it drops the file.
async fn create_locked(staging: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let id = uuid::Uuid::new_v4();
    let creating = staging.join(format!("{id}.{CREATING_EXTENSION}"));
    let path = staging.join(format!("{id}.{STAGING_EXTENSION}"));
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&creating)?;
        file.lock()?;
        std::fs::rename(&creating, &path)?;
        Ok((path, file))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Removes staging files that no upload holds (their writer died: a crash, a kill, a
/// Ctrl-C mid-upload). Returns how many files and bytes were removed.
fn remove_abandoned_uploads(staging: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(staging)? {
        let path = entry?.path();
        let Some(extension) = path.extension() else {
            continue;
        };
        let abandoned_while_creating = extension == CREATING_EXTENSION
            && std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > CREATING_GRACE));
        if extension != STAGING_EXTENSION && !abandoned_while_creating {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue; // already gone
        };
        if file.try_lock().is_err() {
            continue; // an upload in progress (in this or another process) holds it
        }
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(&path).is_ok() {
            files += 1;
            bytes += size;
        }
    }
    Ok((files, bytes))
}

/// About how many objects a listing page holds.
const PAGE_OBJECTS: usize = 1000;

/// The fan folders of `objects`, in name order.
fn fans(objects: &Path) -> Result<Vec<PathBuf>> {
    let mut fans = std::fs::read_dir(objects)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    fans.sort();
    Ok(fans)
}

/// The objects of one fan folder whose names start with `prefix`. One damaged object
/// must not hide every other one from a listing (and so from a reconciliation): it is
/// reported and skipped.
fn list_fan(fan: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut found = Vec::new();
    for object_dir in std::fs::read_dir(fan)? {
        match read_meta(&object_dir?.path()) {
            Ok(Some(meta)) if meta.name.starts_with(prefix) => found.push(meta),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(cause = %crate::error::Chain(&e), "listing skips an object whose metadata cannot be read")
            }
        }
    }
    Ok(found)
}

/// Runs a commit step on the blocking pool while holding the bucket's file lock, so
/// that commits from every process sharing the folder are serialised.
async fn locked<T: Send + 'static>(
    bucket_dir: &Path,
    step: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let lock_path = bucket_dir.join(".lock");
    tokio::task::spawn_blocking(move || {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)?;
        lock.lock()?;
        let result = step();
        drop(lock); // closing the file releases the lock
        result
    })
    .await
    .map_err(|e| Error::internal("commit task failed", e))?
}

fn read_meta(object_dir: &Path) -> Result<Option<ObjectMeta>> {
    match std::fs::read(object_dir.join("meta.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::internal(format!("corrupt metadata in {}", object_dir.display()), e)
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces `path` atomically: write a sibling, flush it, rename it over.
fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn write_meta(object_dir: &Path, meta: &ObjectMeta) -> Result<()> {
    let json = serde_json::to_vec(meta).map_err(|e| Error::internal("encoding metadata", e))?;
    replace_file(&object_dir.join("meta.json"), &json)
}

/// Flushes a folder's entries (renames, creations) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The next generation for a write whose live generation is `live`. The bucket keeps
/// a high-water mark (`.generation`) so that generations keep increasing across
/// deletes and recreations too, even if the clock steps back. Call under the lock.
fn take_generation(bucket_dir: &Path, live: Option<i64>) -> Result<i64> {
    let mark = bucket_dir.join(".generation");
    let high_water = match std::fs::read_to_string(&mark) {
        Ok(text) => text.trim().parse::<i64>().ok(),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let generation = next_generation(live.max(high_water));
    replace_file(&mark, generation.to_string().as_bytes())?;
    Ok(generation)
}

fn data_path(object_dir: &Path, generation: i64) -> PathBuf {
    object_dir.join(format!("{generation}.data"))
}

#[async_trait::async_trait]
impl super::Bucket for LocalBucket {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let staged = self.stage(body).await?;
        let staged_path = staged.path.clone();
        let object_dir = self.object_dir(name);
        let name = name.clone();
        let bucket_dir = self.dir.clone();
        let committed = locked(&self.dir, move || {
            let live = read_meta(&object_dir)?;
            check_generation(
                &name,
                options.if_generation_match,
                live.as_ref().map(|m| m.generation),
            )?;
            let meta = ObjectMeta {
                name: name.to_string(),
                size: staged.size,
                content_type: content_type_or_default(options.content_type),
                cache_control: options.cache_control,
                md5_hash: staged.checksums.md5_hash,
                crc32c: staged.checksums.crc32c,
                generation: take_generation(&bucket_dir, live.as_ref().map(|m| m.generation))?,
                updated: chrono::Utc::now(),
                metadata: options.metadata,
            };
            std::fs::create_dir_all(&object_dir)?;
            std::fs::rename(&staged.path, data_path(&object_dir, meta.generation))?;
            drop(staged.lock); // no longer a staging file: nothing to protect
            write_meta(&object_dir, &meta)?;
            // Make the renames (and a new folder) durable before anyone is told.
            sync_dir(&object_dir)?;
            if let Some(fan) = object_dir.parent() {
                sync_dir(fan)?;
            }
            if let Some(old) = live {
                // Readers that already opened the old data keep reading it (Unix
                // semantics); new readers follow meta.json to the new generation.
                let _ = std::fs::remove_file(data_path(&object_dir, old.generation));
            }
            Ok(meta)
        })
        .await;
        if committed.is_err() {
            let _ = tokio::fs::remove_file(&staged_path).await;
        }
        committed
    }

    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)> {
        let object_dir = self.object_dir(name);
        // A concurrent overwrite can remove the data between reading meta.json and
        // opening the file; the second read then finds the newer generation.
        for _ in 0..3 {
            let meta = self.head(name).await?;
            let path = data_path(&object_dir, meta.generation);
            match tokio::fs::File::open(&path).await {
                Ok(file) => {
                    let on_disk = file.metadata().await?.len();
                    if on_disk != meta.size {
                        let why = format!(
                            "{}: {on_disk} bytes on disk, metadata says {}",
                            path.display(),
                            meta.size
                        );
                        tracing::error!(bucket = %self.name, object = %name, %why, "refusing to serve a damaged object");
                        return Err(Error::Corrupt(why));
                    }
                    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
                    let checked = super::verify_checksums(Box::pin(stream), &meta, path);
                    return Ok((meta, checked));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::internal_msg(format!(
            "{name}: data kept changing while being opened"
        )))
    }

    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta> {
        let object_dir = self.object_dir(name);
        let meta = tokio::task::spawn_blocking(move || read_meta(&object_dir))
            .await
            .map_err(|e| Error::internal("metadata read task failed", e))??;
        meta.ok_or_else(|| Error::NotFound(name.to_string()))
    }

    async fn delete(&self, name: &ObjectName, if_generation_match: Option<i64>) -> Result<()> {
        let object_dir = self.object_dir(name);
        let name = name.clone();
        locked(&self.dir, move || {
            let live = read_meta(&object_dir)?.ok_or_else(|| Error::NotFound(name.to_string()))?;
            check_generation(&name, if_generation_match, Some(live.generation))?;
            std::fs::remove_file(object_dir.join("meta.json"))?; // the commit point
            let _ = std::fs::remove_file(data_path(&object_dir, live.generation));
            let _ = std::fs::remove_dir(&object_dir); // fails harmlessly if not empty
            Ok(())
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let objects = self.dir.join("objects");
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for fan in fans(&objects)? {
                found.extend(list_fan(&fan, &prefix)?);
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        })
        .await
        .map_err(|e| Error::internal("listing task failed", e))?
    }

    async fn list_page(&self, prefix: &str, page_token: Option<&str>) -> Result<super::ListPage> {
        let objects = self.dir.join("objects");
        let prefix = prefix.to_string();
        let start = page_token.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            list_page_of(&objects, &prefix, start.as_deref(), PAGE_OBJECTS)
        })
        .await
        .map_err(|e| Error::internal("listing task failed", e))?
    }
}

/// One page of the objects under `objects` whose names start with `prefix`. A page is
/// whole fan folders (objects are spread over 256 by name hash), from the one named
/// `start` on, as many as it takes to reach about `page_objects`; the token names the
/// next fan.
fn list_page_of(
    objects: &Path,
    prefix: &str,
    start: Option<&str>,
    page_objects: usize,
) -> Result<super::ListPage> {
    let mut page = super::ListPage::default();
    for fan in fans(objects)? {
        let fan_name = fan.file_name().map(|n| n.to_string_lossy().into_owned());
        if start.is_some_and(|start| fan_name.as_deref() < Some(start)) {
            continue;
        }
        if page.objects.len() >= page_objects {
            page.next_page_token = fan_name;
            break;
        }
        page.objects.extend(list_fan(&fan, prefix)?);
    }
    page.objects.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Bucket, stream_from_bytes};

    #[tokio::test]
    async fn paging_walks_every_object_once_over_many_pages() {
        let root = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::open(root.path(), "b-test")
            .await
            .expect("open");
        for i in 0..60 {
            let name = ObjectName::new(format!("p/{i:02}")).expect("name");
            bucket
                .put(
                    &name,
                    stream_from_bytes(vec![i as u8]),
                    PutOptions::default(),
                )
                .await
                .expect("put");
        }
        let objects = bucket.dir().join("objects");
        let (mut seen, mut pages, mut token) = (Vec::new(), 0, None::<String>);
        loop {
            let page = list_page_of(&objects, "p/", token.as_deref(), 5).expect("page");
            pages += 1;
            seen.extend(page.objects.into_iter().map(|m| m.name));
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert!(
            pages >= 10,
            "60 objects in pages of about 5 took {pages} pages"
        );
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no object twice");
        let expected: Vec<String> = (0..60).map(|i| format!("p/{i:02}")).collect();
        assert_eq!(sorted, expected, "every object once");
    }

    #[tokio::test]
    async fn a_failed_upload_leaves_nothing_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::open(root.path(), "b-test")
            .await
            .expect("open");
        let name = ObjectName::new("half").expect("name");
        let broken: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"first half")),
            Err(std::io::Error::other("client went away")),
        ]));
        assert!(
            bucket
                .put(&name, broken, PutOptions::default())
                .await
                .is_err()
        );
        assert!(matches!(bucket.head(&name).await, Err(Error::NotFound(_))));
        let leftovers = std::fs::read_dir(bucket.dir().join("tmp"))
            .expect("tmp")
            .count();
        assert_eq!(leftovers, 0, "the partial upload must be removed");
    }

    #[tokio::test]
    async fn opening_a_bucket_removes_abandoned_uploads_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::open(root.path(), "b-test")
            .await
            .expect("open");
        let staging = bucket.dir().join("tmp");
        // Left by an upload whose process died: nobody holds its lock.
        std::fs::write(staging.join("dead.part"), vec![0u8; 4096]).expect("write");
        // An upload in progress elsewhere holds its lock.
        let live_path = staging.join("live.part");
        let live = std::fs::File::create(&live_path).expect("create");
        live.lock().expect("lock");
        LocalBucket::open(root.path(), "b-test")
            .await
            .expect("reopen");
        assert!(
            !staging.join("dead.part").exists(),
            "abandoned upload removed"
        );
        assert!(live_path.exists(), "an upload in progress is left alone");
        drop(live);
    }

    #[tokio::test]
    async fn names_never_become_paths() {
        let root = tempfile::tempdir().expect("tempdir");
        let bucket = LocalBucket::open(&root.path().join("buckets"), "b-test")
            .await
            .expect("open");
        let name = ObjectName::new("..%2F/evil/%2e%2e/x").expect("valid name");
        bucket
            .put(&name, stream_from_bytes("x"), PutOptions::default())
            .await
            .expect("put");
        // Everything written lives under the bucket's own folder.
        for entry in walk(root.path()) {
            assert!(
                entry.starts_with(bucket.dir()),
                "{} escaped",
                entry.display()
            );
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
