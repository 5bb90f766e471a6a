//! The disk tier: stored responses as files in a directory, bounded by bytes, found
//! again after a restart.
//!
//! Each response is one file, `objects/<xx>/<id>` (a fresh id per write; the layout is
//! `file`'s), written whole under `tmp/` and renamed into place, so no half-written file
//! is ever found under its key. Writes are not synced (a sync per fill would cost more
//! than the miss it saves): after a power loss a file may hold anything, which is why
//! every file carries checksums. At open, each file's footer and metadata are checked
//! and the index (key → file) rebuilt in memory; a body is read whole and checked
//! against its CRC32C before any byte of it is served. A file that fails either check
//! is deleted and counts as never stored.
//!
//! Purges and restarts: a purge applied while the edge runs deletes the file before it
//! returns, so the next run cannot find it. A purge sent while the edge was down is
//! another matter: a copy found at open may have been purged meanwhile. So each file
//! records when its copy was last known current (`verified_ms`: written, or
//! revalidated), the directory records since when nothing may be trusted without a
//! check (`trust.json`), and each open moves that point to the open itself. A copy
//! from before it comes out of [`Store::lookup`] marked `unverified`, and the front asks
//! the origin before serving it (a 304 makes it current again). Only when the edge
//! shows it has missed no purge (its Pub/Sub subscription outlived the downtime and
//! its backlog is applied) does [`DiskStore::trust_recovered`] put the point back.

mod file;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use moka::ops::compute::Op;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::file::{
    FileMeta, clear_dir, delete, files_under, read_checked, rewrite_meta, write_file,
};
use crate::store::{Hit, KeepsWhole, MissWriter, Payload, StoredMeta, TierSize, WholeMiss};

/// Bytes counted per entry beyond its file (the file system's block, the index entry).
pub const ENTRY_OVERHEAD: u64 = 4096;
/// Responses kept in files under one directory, at most a byte budget of them.
#[derive(Clone)]
pub struct DiskStore(Arc<DiskInner>);

struct DiskInner {
    dir: PathBuf,
    /// Key → file. Evicting an entry deletes its file (removals delete their own).
    index: moka::sync::Cache<String, Arc<DiskEntry>>,
    budget: u64,
    clock: Anchor,
    /// Copies last known current at or before this (wall-clock ms) are unverified.
    untrusted_before_ms: AtomicI64,
    /// What `trust.json` said at open: the point [`DiskStore::trust_recovered`] puts back.
    trusted_until_open_ms: i64,
    /// Revalidations rewrite a file's metadata in place, one at a time.
    rewriting: tokio::sync::Mutex<()>,
    /// Copies dropped for failing a check.
    damaged: Counter,
    /// Held locked while open: two edges sharing a directory would delete each
    /// other's files.
    _lock: fs::File,
}

/// One stored response: its file and what the index keeps of it.
struct DiskEntry {
    file: PathBuf,
    body_len: u64,
    body_crc: u32,
    current: Mutex<Current>,
}

/// What a revalidation changes.
struct Current {
    meta: Arc<StoredMeta>,
    verified_ms: i64,
}

/// What recovery found at open.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Responses indexed again.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files deleted: a failed check, an older copy of a key, or left half-written.
    pub dropped: u64,
}

impl DiskStore {
    /// Opens (creating it if needed) the disk tier in `dir`, holding at most `budget`
    /// bytes, adding one to `evictions` per response evicted to stay within it and to
    /// `damaged` per copy dropped for failing a check.
    /// Recovers what an earlier run stored there; every copy recovered is unverified
    /// until [`DiskStore::trust_recovered`]. Blocks while it reads the directory.
    pub fn open(
        dir: &Path,
        budget: u64,
        evictions: Counter,
        damaged: Counter,
    ) -> meridian_shared::Result<(DiskStore, Recovered)> {
        let io = |what: &str, e: std::io::Error| {
            meridian_shared::Error::internal(format!("disk tier {}: {what}", dir.display()), e)
        };
        for sub in ["objects", "tmp"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| io("creating it", e))?;
        }
        let lock = fs::File::create(dir.join("lock")).map_err(|e| io("creating its lock", e))?;
        if let Err(e) = lock.try_lock() {
            return Err(meridian_shared::Error::internal(
                format!(
                    "disk tier {}: in use by another edge (one directory per edge)",
                    dir.display()
                ),
                e,
            ));
        }
        let half_written = clear_dir(&dir.join("tmp"));
        let clock = Anchor::now();
        // Never later than the open: copies written from now on are current.
        let trusted_until_open_ms = read_trust(dir).min(clock.wall_ms);
        // From here on, a crash leaves everything recovered so far unverified.
        write_trust(dir, clock.wall_ms).map_err(|e| io("recording its trust point", e))?;
        let index = moka::sync::Cache::builder()
            .max_capacity(budget)
            .weigher(|_key: &String, entry: &Arc<DiskEntry>| entry.weight())
            .eviction_listener(move |_key, entry: Arc<DiskEntry>, cause| {
                // Removals delete their file themselves, before they return.
                if cause != moka::notification::RemovalCause::Explicit {
                    if cause == moka::notification::RemovalCause::Size {
                        evictions.inc();
                    }
                    delete(&entry.file);
                }
            })
            .build();
        let store = DiskStore(Arc::new(DiskInner {
            dir: dir.to_path_buf(),
            index,
            budget,
            clock,
            untrusted_before_ms: AtomicI64::new(clock.wall_ms),
            trusted_until_open_ms,
            rewriting: tokio::sync::Mutex::new(()),
            damaged,
            _lock: lock,
        }));
        let mut recovered = store.recover();
        recovered.dropped += half_written;
        store.0.index.run_pending_tasks();
        tracing::info!(
            dir = %dir.display(),
            entries = recovered.entries,
            bytes = recovered.bytes,
            dropped = recovered.dropped,
            "disk tier opened"
        );
        Ok((store, recovered))
    }

    /// Trusts the copies recovered at open as the run before left them: the edge has
    /// shown it missed no purge while it was down.
    pub fn trust_recovered(&self) {
        let inner = &self.0;
        inner
            .untrusted_before_ms
            .store(inner.trusted_until_open_ms, Ordering::SeqCst);
        if let Err(e) = write_trust(&inner.dir, inner.trusted_until_open_ms) {
            // Only costs revalidations after the next restart.
            tracing::warn!(dir = %inner.dir.display(), cause = %e, "cannot record that recovered copies are trusted");
        }
    }

    /// The key and metadata of every stored response whose key is a variant's
    /// (contains a NUL), so the vary index can learn them again after a restart.
    pub fn variants(&self) -> Vec<(String, Arc<StoredMeta>)> {
        self.0
            .index
            .iter()
            .filter(|(key, _)| key.contains('\0'))
            .map(|(key, entry)| (key.to_string(), entry.current().meta))
            .collect()
    }

    /// The metadata of `key`'s stored response, from the index (unverified or not:
    /// what a purge looks at).
    pub fn peek(&self, key: &str) -> Option<Arc<StoredMeta>> {
        Some(self.0.index.get(key)?.current().meta)
    }

    /// Whether a body of `size` bytes can be stored at all.
    pub fn fits(&self, size: u64) -> bool {
        size + ENTRY_OVERHEAD <= self.0.budget
    }

    /// The stored response for `key`, its body read whole and checked; a file that is
    /// gone, short or fails its checksum is dropped and gives `None`.
    pub async fn lookup(&self, key: &str) -> Option<Hit> {
        let entry = self.0.index.get(key)?;
        let (file, len, crc) = (entry.file.clone(), entry.body_len, entry.body_crc);
        // Read and checked in one go, off the async threads.
        let body = match blocking(move || read_checked(&file, len, crc)).await {
            Ok(body) => body,
            Err(e) => {
                // Gone (purged or evicted meanwhile) is not damage.
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.0.damaged.inc();
                    tracing::warn!(key, file = %entry.file.display(), cause = %e, "disk copy cannot be served; dropped");
                }
                self.drop_entry(key, &entry).await;
                return None;
            }
        };
        let current = entry.current();
        // At or before: within one millisecond, the order is unknown; asking is safe.
        let meta = if current.verified_ms <= self.0.untrusted_before_ms.load(Ordering::SeqCst) {
            Arc::new(StoredMeta {
                unverified: true,
                ..(*current.meta).clone()
            })
        } else {
            current.meta
        };
        Some(Hit {
            meta,
            body: Payload::Bytes(body),
            from_disk: true,
        })
    }

    /// A writer storing `meta` and the body written to it under `key` (nothing is
    /// visible until it finishes).
    pub fn miss(&self, key: &str, meta: StoredMeta) -> Box<dyn MissWriter> {
        WholeMiss::boxed(self.clone(), key, meta)
    }

    /// Replaces the metadata of `key`'s stored response, in memory and in its file,
    /// and counts it current from now. Returns whether it was there to update.
    pub async fn update(&self, key: &str, meta: StoredMeta) -> bool {
        let Some(entry) = self.0.index.get(key) else {
            return false;
        };
        let meta = StoredMeta {
            unverified: false,
            ..meta
        };
        let verified_ms = self.now_ms();
        let record = self.file_meta(key, &meta, verified_ms);
        let _one_at_a_time = self.0.rewriting.lock().await;
        let (file, body_len, body_crc) = (entry.file.clone(), entry.body_len, entry.body_crc);
        let rewritten = blocking(move || rewrite_meta(&file, body_len, body_crc, &record)).await;
        match rewritten {
            Ok(()) => {
                *entry.lock() = Current {
                    meta: Arc::new(meta),
                    verified_ms,
                };
                true
            }
            Err(e) => {
                // A file half rewritten fails its checks: drop it now.
                tracing::warn!(key, cause = %e, "cannot rewrite a disk copy's metadata; dropped");
                self.drop_entry(key, &entry).await;
                false
            }
        }
    }

    /// Drops `key`, deleting its file before returning.
    pub async fn remove(&self, key: &str) {
        if let Some(entry) = self.0.index.remove(key) {
            delete_off_thread(entry.file.clone()).await;
        }
    }

    /// Drops `entry` (a copy found damaged) and its file; `key` stays with whatever
    /// newer copy a fill may have written meanwhile.
    async fn drop_entry(&self, key: &str, entry: &Arc<DiskEntry>) {
        self.0
            .index
            .entry_by_ref(key)
            .and_compute_with(|current| match current {
                Some(current) if Arc::ptr_eq(current.value(), entry) => Op::Remove,
                _ => Op::Nop,
            });
        delete_off_thread(entry.file.clone()).await;
    }

    /// Drops every key starting with `prefix`. Returns how many.
    pub async fn remove_prefix(&self, prefix: &str) -> usize {
        let keys = crate::store::keys_starting_with(self.0.index.iter(), prefix);
        for key in &keys {
            self.remove(key).await;
        }
        keys.len()
    }

    /// Bytes held (files plus per-entry overhead) and entries, now.
    pub fn size(&self) -> TierSize {
        self.0.index.run_pending_tasks();
        TierSize {
            tier: "disk",
            bytes: self.0.index.weighted_size(),
            entries: self.0.index.entry_count(),
        }
    }

    /// The wall-clock time a copy written or revalidated now is current at: after the
    /// open, whatever the clock says (a copy of this run is never one to distrust).
    fn now_ms(&self) -> i64 {
        wall_ms(SystemTime::now()).max(self.0.clock.wall_ms + 1)
    }

    fn file_meta(&self, key: &str, meta: &StoredMeta, verified_ms: i64) -> FileMeta {
        FileMeta {
            key: key.to_string(),
            status: meta.status.as_u16(),
            headers: meta
                .headers
                .iter()
                .map(|(name, value)| {
                    let latin1 = value.as_bytes().iter().map(|&b| char::from(b)).collect();
                    (name.as_str().to_string(), latin1)
                })
                .collect(),
            source_generation: meta.source_generation,
            generated_ms: self.0.clock.wall_ms_of(meta.stored_at),
            fresh_for_ms: u64::try_from(meta.fresh_for.as_millis()).unwrap_or(u64::MAX),
            verified_ms,
        }
    }

    /// Reads every file under `objects/` into the index, deleting what fails its
    /// checks and all but the newest copy of a key.
    fn recover(&self) -> Recovered {
        let mut found: std::collections::HashMap<String, (FileMeta, DiskEntry)> =
            std::collections::HashMap::new();
        let mut recovered = Recovered::default();
        for file in files_under(&self.0.dir.join("objects")) {
            let Some((record, entry)) = self.read_entry(&file) else {
                delete(&file);
                recovered.dropped += 1;
                self.0.damaged.inc();
                continue;
            };
            match found.get(&record.key) {
                Some((kept, _)) if kept.generated_ms >= record.generated_ms => {
                    delete(&file);
                    recovered.dropped += 1;
                }
                _ => {
                    if let Some((_, older)) = found.insert(record.key.clone(), (record, entry)) {
                        delete(&older.file);
                        recovered.dropped += 1;
                    }
                }
            }
        }
        for (key, (_, entry)) in found {
            recovered.entries += 1;
            recovered.bytes += entry.body_len;
            self.0.index.insert(key, Arc::new(entry));
        }
        recovered
    }

    /// The entry `file` holds, if its footer and metadata check out.
    fn read_entry(&self, file: &Path) -> Option<(FileMeta, DiskEntry)> {
        let (footer, record) = file::read_record(file)?;
        let meta = self.stored_meta(&record, footer.body_len)?;
        let entry = DiskEntry {
            file: file.to_path_buf(),
            body_len: footer.body_len,
            body_crc: footer.body_crc,
            current: Mutex::new(Current {
                meta: Arc::new(meta),
                verified_ms: record.verified_ms,
            }),
        };
        Some((record, entry))
    }

    fn stored_meta(&self, record: &FileMeta, size: u64) -> Option<StoredMeta> {
        let mut headers = HeaderMap::with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            let bytes: Vec<u8> = value
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<_>>()?;
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_bytes(&bytes).ok()?,
            );
        }
        Some(StoredMeta::new(
            StatusCode::from_u16(record.status).ok()?,
            headers,
            size,
            record.source_generation,
            self.0.clock.instant_of(record.generated_ms)?,
            Duration::from_millis(record.fresh_for_ms),
        ))
    }

    /// Writes a new file for `key` and indexes it (replacing, and deleting, any older
    /// one). If it cannot, the older one goes too: memory may hold the new copy, and
    /// the disk must not bring the old one back once memory lets it go.
    async fn store(&self, key: String, meta: StoredMeta, body: Vec<Bytes>, size: u64) -> bool {
        let verified_ms = self.now_ms();
        let record = self.file_meta(&key, &meta, verified_ms);
        let dir = self.0.dir.clone();
        let (file, body_crc) = match blocking(move || write_file(&dir, &body, &record)).await {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!(key, cause = %e, "cannot write a disk copy");
                self.remove(&key).await;
                return false;
            }
        };
        let entry = DiskEntry {
            file,
            body_len: size,
            body_crc,
            current: Mutex::new(Current {
                meta: Arc::new(meta),
                verified_ms,
            }),
        };
        self.0.index.insert(key, Arc::new(entry));
        true
    }
}

impl DiskEntry {
    fn weight(&self) -> u32 {
        u32::try_from(self.body_len + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> Current {
        let current = self.lock();
        Current {
            meta: current.meta.clone(),
            verified_ms: current.verified_ms,
        }
    }
}

#[async_trait]
impl KeepsWhole for DiskStore {
    async fn keep_whole(&self, key: String, meta: StoredMeta, body: Vec<Bytes>, size: u64) -> bool {
        if !self.fits(size) {
            // An older copy must not outlive the one that replaced it elsewhere.
            self.remove(&key).await;
            return false;
        }
        self.store(key, meta, body, size).await
    }
}

/// Wall-clock and tokio instants at one moment, to turn one into the other: ages are
/// kept with tokio's clock (which tests can move), files record wall-clock time.
#[derive(Clone, Copy)]
struct Anchor {
    instant: Instant,
    wall_ms: i64,
}

impl Anchor {
    fn now() -> Anchor {
        Anchor {
            instant: Instant::now(),
            wall_ms: wall_ms(SystemTime::now()),
        }
    }

    fn wall_ms_of(&self, at: Instant) -> i64 {
        if at >= self.instant {
            self.wall_ms + millis(at - self.instant)
        } else {
            self.wall_ms - millis(self.instant - at)
        }
    }

    /// `None` for a time too far off to be an instant (a corrupt record).
    fn instant_of(&self, wall_ms: i64) -> Option<Instant> {
        let offset = Duration::from_millis(wall_ms.abs_diff(self.wall_ms));
        if wall_ms >= self.wall_ms {
            self.instant.checked_add(offset)
        } else {
            self.instant.checked_sub(offset)
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn wall_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => millis(since),
        Err(before) => -millis(before.duration()),
    }
}

/// Deletes `file` off the async threads.
async fn delete_off_thread(file: PathBuf) {
    let _ = blocking(move || {
        delete(&file);
        Ok(())
    })
    .await;
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

#[derive(Serialize, Deserialize)]
struct Trust {
    /// Copies last known current before this (wall clock, ms) are unverified.
    untrusted_before_ms: i64,
}

fn read_trust(dir: &Path) -> i64 {
    fs::read(dir.join("trust.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice::<Trust>(&raw).ok())
        .map(|trust| trust.untrusted_before_ms)
        // Nothing recorded: trust nothing found there.
        .unwrap_or(i64::MAX)
}

fn write_trust(dir: &Path, untrusted_before_ms: i64) -> std::io::Result<()> {
    let temporary = dir.join("tmp").join("trust.json");
    let raw = serde_json::to_vec(&Trust {
        untrusted_before_ms,
    })?;
    let mut out = fs::File::create(&temporary)?;
    out.write_all(&raw)?;
    // The one file whose loss would trust what must not be: synced before it counts.
    out.sync_all()?;
    fs::rename(&temporary, dir.join("trust.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, budget: u64) -> DiskStore {
        DiskStore::open(dir, budget, Counter::default(), Counter::default())
            .expect("opens")
            .0
    }

    fn meta(size: u64) -> StoredMeta {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        // A byte beyond ASCII must come back as it was.
        headers.insert(
            "x-latin",
            HeaderValue::from_bytes(b"caf\xe9").expect("obs-text"),
        );
        StoredMeta {
            status: StatusCode::OK,
            headers,
            size,
            source_generation: 7,
            stored_at: Instant::now(),
            fresh_for: Duration::from_secs(3600),
            unverified: false,
            kept_head: crate::hit_head::KeptHead::default(),
        }
    }

    async fn put(store: &DiskStore, key: &str, body: &[u8]) -> bool {
        let mut miss = store.miss(key, meta(body.len() as u64));
        // Two chunks: the file is one body all the same.
        let (first, second) = body.split_at(body.len() / 2);
        miss.write(&Bytes::copy_from_slice(first));
        miss.write(&Bytes::copy_from_slice(second));
        miss.finish().await
    }

    async fn body_of(store: &DiskStore, key: &str) -> Option<(Bytes, Arc<StoredMeta>)> {
        let hit = store.lookup(key).await?;
        match hit.body {
            Payload::Bytes(body) => Some((body, hit.meta)),
            Payload::Stream(_) => panic!("the disk hands out whole bodies"),
        }
    }

    fn file_of(dir: &Path) -> PathBuf {
        let files = files_under(&dir.join("objects"));
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[tokio::test]
    async fn a_copy_comes_back_after_reopening_with_its_headers() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "a/b.txt", b"hello disk").await);
        let (body, meta) = body_of(&store, "a/b.txt").await.expect("stored");
        assert_eq!(body.as_ref(), b"hello disk");
        assert!(!meta.unverified, "written in this run");
        drop(store);
        // Restarts are never within the millisecond of a write (at most, a copy would
        // be asked about once).
        std::thread::sleep(Duration::from_millis(2));

        let (store, recovered) =
            DiskStore::open(dir.path(), 1 << 20, Counter::default(), Counter::default())
                .expect("reopens");
        assert_eq!(
            recovered,
            Recovered {
                entries: 1,
                bytes: 10,
                dropped: 0
            }
        );
        let (body, meta) = body_of(&store, "a/b.txt").await.expect("recovered");
        assert_eq!(body.as_ref(), b"hello disk");
        assert_eq!(meta.headers["etag"], "\"v1\"");
        assert_eq!(meta.headers["x-latin"].as_bytes(), b"caf\xe9");
        assert_eq!(
            (meta.status, meta.size, meta.source_generation),
            (StatusCode::OK, 10, 7)
        );
        assert_eq!(meta.fresh_for, Duration::from_secs(3600));
        assert!(meta.age(Instant::now()) < 5, "its age carries over");
    }

    #[tokio::test]
    async fn copies_found_at_open_are_unverified_until_trusted_and_distrust_persists() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "k", b"v").await);
        drop(store);
        std::thread::sleep(Duration::from_millis(2));

        // A run that could not show it missed no purge: unverified.
        let store = open(dir.path(), 1 << 20);
        let (_, meta) = body_of(&store, "k").await.expect("recovered");
        assert!(meta.unverified);
        drop(store);
        std::thread::sleep(Duration::from_millis(5));

        // Even a run that missed nothing since cannot vouch for a copy the run before
        // did not check.
        let store = open(dir.path(), 1 << 20);
        store.trust_recovered();
        let (_, meta) = body_of(&store, "k").await.expect("recovered");
        assert!(meta.unverified, "the distrust outlives the run that set it");

        // A revalidation makes it current, and that outlives the run too.
        assert!(store.update("k", StoredMeta::clone(&meta)).await);
        let (_, meta) = body_of(&store, "k").await.expect("updated");
        assert!(!meta.unverified);
        drop(store);
        std::thread::sleep(Duration::from_millis(2));
        let store = open(dir.path(), 1 << 20);
        store.trust_recovered();
        let (body, meta) = body_of(&store, "k").await.expect("recovered");
        assert_eq!(body.as_ref(), b"v");
        assert!(
            !meta.unverified,
            "revalidated before the stop, nothing missed since"
        );
    }

    #[tokio::test]
    async fn a_flipped_bit_or_a_cut_file_is_dropped_never_served() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "flipped", &[7u8; 4000]).await);
        let file = file_of(dir.path());
        let mut raw = fs::read(&file).expect("file");
        raw[1234] ^= 0x10;
        fs::write(&file, raw).expect("flipped");
        assert!(store.lookup("flipped").await.is_none());
        assert!(!file.exists(), "the bad file is deleted");

        assert!(put(&store, "cut", &[7u8; 4000]).await);
        let file = file_of(dir.path());
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_len(100))
            .expect("cut");
        assert!(store.lookup("cut").await.is_none());
        assert!(!file.exists());
        assert_eq!(store.size().entries, 0);
    }

    #[tokio::test]
    async fn files_that_do_not_check_out_are_dropped_at_open() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "good", b"good").await);
        assert!(put(&store, "meta-flipped", b"body").await);
        let flipped = files_under(&dir.path().join("objects"))
            .into_iter()
            .find(|f| fs::read(f).is_ok_and(|raw| raw.starts_with(b"body")))
            .expect("its file");
        let mut raw = fs::read(&flipped).expect("file");
        let at = raw.len() - file::FOOTER_LEN - 3;
        raw[at] ^= 1;
        fs::write(&flipped, raw).expect("flipped");
        drop(store);
        fs::create_dir_all(dir.path().join("objects/zz")).expect("shard");
        fs::write(dir.path().join("objects/zz/garbage"), b"not an entry").expect("garbage");
        fs::write(dir.path().join("tmp/half-written"), b"half").expect("half");

        let (store, recovered) =
            DiskStore::open(dir.path(), 1 << 20, Counter::default(), Counter::default())
                .expect("reopens");
        assert_eq!((recovered.entries, recovered.dropped), (1, 3));
        assert!(body_of(&store, "good").await.is_some());
        assert!(store.lookup("meta-flipped").await.is_none());
        assert_eq!(files_under(&dir.path().join("objects")).len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).expect("tmp").count(),
            0
        );
    }

    #[tokio::test]
    async fn removals_and_evictions_delete_their_files() {
        let dir = tempfile::tempdir().expect("dir");
        let evictions = Counter::default();
        let (store, _) =
            DiskStore::open(dir.path(), 64 * 1024, evictions.clone(), Counter::default())
                .expect("opens");
        for name in ["docs/a", "docs/b", "docsx", "other"] {
            assert!(put(&store, name, b"x").await);
        }
        assert_eq!(store.remove_prefix("docs/").await, 2);
        store.remove("other").await;
        assert_eq!(files_under(&dir.path().join("objects")).len(), 1);
        assert!(store.lookup("docsx").await.is_some());

        // 40 entries of 4 KiB + overhead against 64 KiB: most are evicted, files too.
        for i in 0..40 {
            put(&store, &format!("big/{i}"), &[1u8; 4096]).await;
        }
        let size = store.size();
        assert!(size.bytes <= 64 * 1024, "{size:?}");
        assert_eq!(
            files_under(&dir.path().join("objects")).len() as u64,
            size.entries
        );
        assert!(evictions.get() > 0);
    }

    #[tokio::test]
    async fn a_newer_copy_replaces_the_older_file() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "k", b"old").await);
        assert!(put(&store, "k", b"new").await);
        store.0.index.run_pending_tasks();
        assert_eq!(files_under(&dir.path().join("objects")).len(), 1);
        assert_eq!(
            body_of(&store, "k").await.expect("stored").0.as_ref(),
            b"new"
        );
    }

    #[tokio::test]
    async fn a_copy_that_cannot_be_written_takes_the_older_one_away() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path(), 1 << 20);
        assert!(put(&store, "k", b"old").await);
        // Writes go through tmp/: with a file in its place, none can succeed.
        fs::remove_dir_all(dir.path().join("tmp")).expect("rm tmp");
        fs::write(dir.path().join("tmp"), b"in the way").expect("file");
        assert!(!put(&store, "k", b"new").await);
        assert!(
            store.peek("k").is_none(),
            "memory may hold the new copy: the old one must not come back from disk"
        );
        assert!(files_under(&dir.path().join("objects")).is_empty());
    }

    #[test]
    fn one_directory_serves_one_edge_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let first = open(dir.path(), 1 << 20);
        let Err(second) =
            DiskStore::open(dir.path(), 1 << 20, Counter::default(), Counter::default())
        else {
            panic!("a second store opened the same directory");
        };
        assert!(
            second.to_string().contains("in use by another edge"),
            "{second}"
        );
        drop(first);
        open(dir.path(), 1 << 20);
    }
}
