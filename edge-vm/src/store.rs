//! Where stored responses live: the [`Store`] trait, handing out a hit's body whole or
//! as a stream, and taking a miss's body through a writer as it arrives (so a disk tier can follow as a second
//! implementation), and [`MemoryStore`], bounded by bytes (moka evicts by weight).
//! Freshness is judged with tokio's clock so tests can move time without sleeping.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use bytes::Bytes;
use meridian_shared::sealed;
use meridian_shared::storage::ByteStream;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::hit_head::KeptHead;

/// What is known of a stored response besides its body.
#[derive(Debug, Clone)]
pub struct StoredMeta {
    /// Its status (200 for almost all; an HTTP origin's 404 or 301 may be stored too).
    pub status: axum::http::StatusCode,
    /// Its headers as sent to clients (all but `X-Cache` and `Age`).
    pub headers: HeaderMap,
    /// Body length in bytes.
    pub size: u64,
    /// The main-bucket generation it comes from.
    pub source_generation: i64,
    /// When it was generated: when it was fetched, less the age it arrived with.
    pub stored_at: Instant,
    /// How long it stays fresh.
    pub fresh_for: Duration,
    /// Found on disk after a restart, possibly purged while the edge was down: never
    /// served without asking the origin.
    pub unverified: bool,
    /// The head of its plainest answer, for the second it holds (see `hit_head`).
    pub kept_head: KeptHead,
}

impl StoredMeta {
    /// A response to store, current now (not `unverified`). Its headers are kept with
    /// room for the fields every answer adds, so the copy each hit takes never has to
    /// grow its table (which rehashes every field) to add them.
    pub fn new(
        status: axum::http::StatusCode,
        mut headers: HeaderMap,
        size: u64,
        source_generation: i64,
        stored_at: Instant,
        fresh_for: Duration,
    ) -> StoredMeta {
        headers.reserve(crate::answer::ANSWER_FIELDS);
        StoredMeta {
            status,
            headers,
            size,
            source_generation,
            stored_at,
            fresh_for,
            unverified: false,
            kept_head: KeptHead::default(),
        }
    }

    /// Whether it may still be served at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored_at) < self.fresh_for
    }

    /// Seconds since it was generated (the `Age` header).
    pub fn age(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.stored_at).as_secs()
    }
}

/// A stored response found by a lookup.
pub struct Hit {
    /// Its metadata.
    pub meta: Arc<StoredMeta>,
    /// Its body: whole in memory, or (a tier that reads as it sends) a stream.
    pub body: Payload,
    /// Whether it was read from disk (said in `Cache-Status`).
    pub from_disk: bool,
}

/// A body as a store hands it out.
pub enum Payload {
    /// Whole, in memory: sent as one buffer.
    Bytes(Bytes),
    /// Read as it comes.
    Stream(ByteStream),
}

impl Payload {
    /// The body as a stream, from its first byte.
    pub fn into_stream(self) -> ByteStream {
        match self {
            Payload::Bytes(bytes) => Box::pin(futures::stream::iter([Ok(bytes)])),
            Payload::Stream(stream) => stream,
        }
    }
}

/// Writing a miss's body as it arrives from the origin; nothing is visible until
/// [`MissWriter::finish`].
#[async_trait]
pub trait MissWriter: Send {
    /// Appends the next part of the body.
    fn write(&mut self, chunk: &Bytes);
    /// Makes the response visible under its key. Returns whether it was kept.
    async fn finish(self: Box<Self>) -> bool;
}

/// A store of responses by key.
#[async_trait]
pub trait Store: Send + Sync {
    /// The stored response for `key`, fresh or not.
    async fn lookup(&self, key: &str) -> Option<Hit>;
    /// The metadata of `key`'s stored response, without reading its body (what a purge
    /// looks at).
    async fn peek(&self, key: &str) -> Option<Arc<StoredMeta>>;
    /// Whether a body of `size` bytes can be stored at all.
    fn fits(&self, size: u64) -> bool;
    /// A writer storing `meta` and the body written to it under `key`.
    fn miss(&self, key: &str, meta: StoredMeta) -> Box<dyn MissWriter>;
    /// Replaces the metadata of `key`'s stored response, keeping its body (after a
    /// revalidation). Returns whether it was there to update.
    async fn update(&self, key: &str, meta: StoredMeta) -> bool;
    /// Drops `key`.
    async fn remove(&self, key: &str);
    /// Drops every key starting with `prefix` (`""`: all). Returns how many.
    async fn remove_prefix(&self, prefix: &str) -> usize;
    /// Bytes held (bodies plus per-entry overhead) and entries, now, per tier.
    async fn size(&self) -> Vec<TierSize>;
}

/// What one tier of a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSize {
    /// `memory` or `disk`.
    pub tier: &'static str,
    /// Bytes held, bodies plus per-entry overhead.
    pub bytes: u64,
    /// Responses held.
    pub entries: u64,
}

/// The keys among `entries` (a moka cache's) that start with `prefix`.
pub fn keys_starting_with<V>(
    entries: impl Iterator<Item = (Arc<String>, V)>,
    prefix: &str,
) -> Vec<Arc<String>> {
    entries
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, _)| key)
        .collect()
}

/// Bytes counted per entry beyond the body, so a flood of empty objects still respects
/// the budget: the metadata and the map's own (about 512), and the head a hit keeps
/// (a copy of the stored fields and four more, about 1 KiB with a dozen fields).
pub const ENTRY_OVERHEAD: u64 = 1536;

/// One entry of the memory store: the body in one buffer, so a hit is sent as one.
struct MemoryEntry {
    meta: Arc<StoredMeta>,
    body: Bytes,
}

/// Responses held in memory, at most a byte budget of them.
#[derive(Clone)]
pub struct MemoryStore {
    entries: moka::future::Cache<String, Arc<MemoryEntry>>,
    budget: u64,
}

impl MemoryStore {
    /// A store holding at most `budget` bytes, its evictions counted nowhere.
    #[cfg(test)]
    pub fn new(budget: u64) -> MemoryStore {
        MemoryStore::counting_evictions(budget, Counter::default())
    }

    /// A store holding at most `budget` bytes, adding one to `evictions` for each
    /// response it evicts to stay within it.
    pub fn counting_evictions(budget: u64, evictions: Counter) -> MemoryStore {
        let entries = moka::future::Cache::builder()
            .max_capacity(budget)
            .weigher(|_key: &String, entry: &Arc<MemoryEntry>| {
                u32::try_from(entry.body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_key, _entry, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        MemoryStore { entries, budget }
    }

    /// Stores `body` with `meta` under `key` (a copy brought up from disk).
    pub async fn insert(&self, key: String, meta: Arc<StoredMeta>, body: Bytes) {
        let body = resident(std::slice::from_ref(&body), body.len());
        self.entries
            .insert(key, Arc::new(MemoryEntry { meta, body }))
            .await;
    }
}

/// A store that takes a miss's body whole, once it has all arrived.
#[async_trait]
pub trait KeepsWhole: Send + Sync + 'static {
    /// Stores `meta` and `body` (`size` bytes in all) under `key`; whether it was kept.
    async fn keep_whole(&self, key: String, meta: StoredMeta, body: Vec<Bytes>, size: u64) -> bool;
}

/// A miss whose body is kept as it arrives (shared buffers, no copy) and handed to
/// its store whole at the end.
pub struct WholeMiss<S> {
    store: S,
    key: String,
    meta: StoredMeta,
    body: Vec<Bytes>,
    size: u64,
}

impl<S: KeepsWhole> WholeMiss<S> {
    /// A miss for `key` with `meta`, to be kept by `store`.
    pub fn boxed(store: S, key: &str, meta: StoredMeta) -> Box<dyn MissWriter> {
        Box::new(WholeMiss {
            store,
            key: key.to_string(),
            meta,
            body: Vec::new(),
            size: 0,
        })
    }
}

#[async_trait]
impl<S: KeepsWhole> MissWriter for WholeMiss<S> {
    fn write(&mut self, chunk: &Bytes) {
        self.size += chunk.len() as u64;
        self.body.push(chunk.clone());
    }

    async fn finish(self: Box<Self>) -> bool {
        let WholeMiss {
            store,
            key,
            meta,
            body,
            size,
        } = *self;
        store.keep_whole(key, meta, body, size).await
    }
}

/// The body made of `chunks` (`size` bytes in all) as the memory tier keeps it: one
/// buffer, so that every hit is a single write. A large one goes into a sealed body,
/// which plain HTTP sends without copying (see `meridian_shared::sealed`); a small one
/// (or a large one when no more can be sealed) stays on the heap. Either way it is
/// one copy per fill, of chunks the fill shared while it ran.
fn resident(chunks: &[Bytes], size: usize) -> Bytes {
    if size >= sealed::WORTH_SEALING {
        match sealed::copy_of(chunks, size) {
            Ok(body) => return body,
            Err(e) => {
                // Said once: the cause (no memfd here, or the file limit reached)
                // applies to the bodies after it too.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(cause = %e, "large bodies kept on the heap, sent by copying");
                });
            }
        }
    }
    match chunks {
        [one] => one.clone(),
        chunks => {
            let mut whole = bytes::BytesMut::with_capacity(size);
            for chunk in chunks {
                whole.extend_from_slice(chunk);
            }
            whole.freeze()
        }
    }
}

#[async_trait]
impl KeepsWhole for MemoryStore {
    async fn keep_whole(&self, key: String, meta: StoredMeta, body: Vec<Bytes>, size: u64) -> bool {
        if !self.fits(size) {
            return false;
        }
        let body = resident(&body, usize::try_from(size).unwrap_or(usize::MAX));
        self.entries
            .insert(
                key,
                Arc::new(MemoryEntry {
                    meta: Arc::new(meta),
                    body,
                }),
            )
            .await;
        true
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn lookup(&self, key: &str) -> Option<Hit> {
        let entry = self.entries.get(key).await?;
        Some(Hit {
            meta: entry.meta.clone(),
            body: Payload::Bytes(entry.body.clone()),
            from_disk: false,
        })
    }

    async fn peek(&self, key: &str) -> Option<Arc<StoredMeta>> {
        Some(self.entries.get(key).await?.meta.clone())
    }

    fn fits(&self, size: u64) -> bool {
        size + ENTRY_OVERHEAD <= self.budget
    }

    fn miss(&self, key: &str, meta: StoredMeta) -> Box<dyn MissWriter> {
        WholeMiss::boxed(self.clone(), key, meta)
    }

    async fn update(&self, key: &str, meta: StoredMeta) -> bool {
        let Some(entry) = self.entries.get(key).await else {
            return false;
        };
        let entry = Arc::new(MemoryEntry {
            meta: Arc::new(meta),
            body: entry.body.clone(),
        });
        self.entries.insert(key.to_string(), entry).await;
        true
    }

    async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    async fn remove_prefix(&self, prefix: &str) -> usize {
        // One pass over the keys (purges by prefix are rare); variant keys start with
        // their URI's key, so they go too.
        let keys = keys_starting_with(self.entries.iter(), prefix);
        for key in &keys {
            self.entries.invalidate(key.as_str()).await;
        }
        keys.len()
    }

    async fn size(&self) -> Vec<TierSize> {
        // moka's counts lag behind until its pending work runs (scrapes are rare).
        self.entries.run_pending_tasks().await;
        vec![TierSize {
            tier: "memory",
            bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64, fresh_for: Duration) -> StoredMeta {
        StoredMeta {
            status: axum::http::StatusCode::OK,
            headers: HeaderMap::new(),
            size,
            source_generation: 1,
            stored_at: Instant::now(),
            fresh_for,
            unverified: false,
            kept_head: KeptHead::default(),
        }
    }

    async fn store(store: &MemoryStore, key: &str, size: usize, fresh_for: Duration) -> bool {
        let mut miss = store.miss(key, meta(size as u64, fresh_for));
        miss.write(&Bytes::from(vec![0; size]));
        miss.finish().await
    }

    #[tokio::test(start_paused = true)]
    async fn entries_go_stale_after_their_lifetime() {
        let memory = MemoryStore::new(1 << 20);
        assert!(store(&memory, "a", 10, Duration::from_secs(3600)).await);
        tokio::time::advance(Duration::from_secs(3599)).await;
        let hit = memory.lookup("a").await.expect("stored");
        assert!(hit.meta.is_fresh(Instant::now()));
        assert_eq!(hit.meta.age(Instant::now()), 3599);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!hit.meta.is_fresh(Instant::now()));
    }

    #[tokio::test]
    async fn nothing_is_visible_before_the_miss_is_finished() {
        let memory = MemoryStore::new(1 << 20);
        let mut miss = memory.miss("a", meta(6, Duration::from_secs(60)));
        miss.write(&Bytes::from_static(b"abc"));
        assert!(memory.lookup("a").await.is_none());
        miss.write(&Bytes::from_static(b"def"));
        assert!(miss.finish().await);
        let hit = memory.lookup("a").await.expect("stored");
        let body = meridian_shared::storage::collect(hit.body.into_stream())
            .await
            .expect("body");
        assert_eq!(body.as_ref(), b"abcdef");
    }

    #[tokio::test]
    async fn the_byte_budget_is_respected() {
        let memory = MemoryStore::new(10_000);
        assert!(!memory.fits(10_000));
        for i in 0..20 {
            store(&memory, &format!("o{i}"), 1000, Duration::from_secs(60)).await;
        }
        memory.entries.run_pending_tasks().await;
        assert!(
            memory.entries.weighted_size() <= 10_000,
            "{}",
            memory.entries.weighted_size()
        );
    }
}
