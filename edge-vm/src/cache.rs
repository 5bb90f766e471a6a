//! The edge's memory cache: whole objects, bounded by a byte budget (moka evicts by
//! weight), each entry fresh for its own lifetime. Freshness is judged with tokio's
//! clock so tests can move time without sleeping.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use meridian_shared::ObjectMeta;
use tokio::time::Instant;

/// Bytes counted per entry beyond the body (metadata, map overhead), so a flood of
/// empty objects still respects the budget.
const ENTRY_OVERHEAD: u64 = 512;

/// One cached object.
#[derive(Debug)]
pub struct CachedObject {
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Its bytes.
    pub body: Bytes,
    /// Its response headers, built once when stored so a hit only adds `X-Cache` and
    /// `Age`.
    pub headers: HeaderMap,
    /// When it was fetched from the bucket.
    pub stored_at: Instant,
    /// How long it stays fresh.
    pub lifetime: Duration,
}

impl CachedObject {
    /// Whether it may still be served at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.stored_at) < self.lifetime
    }

    /// Seconds since it was fetched (the `Age` header).
    pub fn age(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.stored_at).as_secs()
    }
}

/// Whether a response came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Fetched from the bucket and stored.
    Miss,
    /// Fetched from the bucket and not stored (too large or not cacheable).
    Bypass,
}

impl CacheStatus {
    /// Spelling in the `X-Cache` header and in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// How long a purge remembers the generation it asked for. A fetch that started
/// before the purge and finishes after it must not put the old object back; fetches
/// take far less than this.
const PURGE_MEMORY: Duration = Duration::from_secs(300);

/// The object cache.
#[derive(Clone)]
pub struct ObjectCache {
    entries: moka::future::Cache<String, Arc<CachedObject>>,
    /// Per name, the oldest main-bucket generation recent purges still allow in.
    floors: moka::future::Cache<String, i64>,
    budget: u64,
}

impl ObjectCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> ObjectCache {
        let entries = moka::future::Cache::builder()
            .max_capacity(budget)
            .weigher(|_name: &String, object: &Arc<CachedObject>| {
                u32::try_from(object.body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .build();
        let floors = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(PURGE_MEMORY)
            .build();
        ObjectCache {
            entries,
            floors,
            budget,
        }
    }

    /// Whether an object of `size` bytes fits the budget at all.
    pub fn fits(&self, size: u64) -> bool {
        size + ENTRY_OVERHEAD <= self.budget
    }

    /// The entry for `name` if it is still fresh at `now`.
    pub async fn fresh(&self, name: &str, now: Instant) -> Option<Arc<CachedObject>> {
        self.entries
            .get(name)
            .await
            .filter(|entry| entry.is_fresh(now))
    }

    /// Stores an entry, unless a recent purge asked for a newer generation (the
    /// object was fetched before the purge). Returns whether it was stored.
    pub async fn insert(&self, object: Arc<CachedObject>) -> bool {
        let name = object.meta.name.clone();
        let source = object.meta.source_generation();
        if self.below_floor(&name, source).await {
            return false;
        }
        self.entries.insert(name.clone(), object).await;
        // A purge may have landed between the check and the insert: check again.
        if self.below_floor(&name, source).await {
            self.entries.invalidate(&name).await;
            return false;
        }
        true
    }

    async fn below_floor(&self, name: &str, source: i64) -> bool {
        self.floors
            .get(name)
            .await
            .is_some_and(|floor| source < floor)
    }

    /// Drops `name`.
    pub async fn remove(&self, name: &str) {
        self.entries.invalidate(name).await;
    }

    /// Drops `name` unless its copy comes from main-bucket generation `older_than` or
    /// newer (always when `older_than` is `None`). Returns whether it dropped one.
    /// Fetches in flight are covered too: for a while, an older copy is not stored.
    pub async fn remove_older(&self, name: &str, older_than: Option<i64>) -> bool {
        if let Some(limit) = older_than {
            // Atomic read-modify-write: concurrent purges can only raise the floor.
            self.floors
                .entry(name.to_string())
                .and_upsert_with(|existing| {
                    std::future::ready(existing.map_or(limit, |e| (*e.value()).max(limit)))
                })
                .await;
        }
        let Some(entry) = self.entries.get(name).await else {
            return false;
        };
        if older_than.is_some_and(|limit| entry.meta.source_generation() >= limit) {
            return false;
        }
        self.entries.invalidate(name).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, size: usize, lifetime: Duration) -> CachedObject {
        CachedObject {
            meta: ObjectMeta {
                name: name.into(),
                size: size as u64,
                content_type: "application/octet-stream".into(),
                cache_control: None,
                md5_hash: String::new(),
                crc32c: String::new(),
                generation: 1,
                updated: chrono::Utc::now(),
                metadata: Default::default(),
            },
            body: Bytes::from(vec![0; size]),
            headers: HeaderMap::new(),
            stored_at: Instant::now(),
            lifetime,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_go_stale_after_their_lifetime() {
        let cache = ObjectCache::new(1 << 20);
        cache
            .insert(Arc::new(object("a", 10, Duration::from_secs(3600))))
            .await;
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(cache.fresh("a", Instant::now()).await.is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.fresh("a", Instant::now()).await.is_none());
    }

    #[tokio::test]
    async fn purges_keep_copies_at_least_as_new_as_asked() {
        let cache = ObjectCache::new(1 << 20);
        let mut copy = object("a", 10, Duration::from_secs(60));
        copy.meta.metadata.insert(
            meridian_shared::storage::SOURCE_GENERATION_KEY.into(),
            "7".into(),
        );
        cache.insert(Arc::new(copy)).await;
        assert!(
            !cache.remove_older("a", Some(7)).await,
            "a copy of generation 7 is not older than 7"
        );
        assert!(cache.fresh("a", Instant::now()).await.is_some());
        assert!(cache.remove_older("a", Some(8)).await);
        assert!(cache.fresh("a", Instant::now()).await.is_none());
    }

    #[tokio::test]
    async fn the_byte_budget_is_respected() {
        let cache = ObjectCache::new(10_000);
        assert!(!cache.fits(10_000));
        for i in 0..20 {
            cache
                .insert(Arc::new(object(
                    &format!("o{i}"),
                    1000,
                    Duration::from_secs(60),
                )))
                .await;
        }
        cache.entries.run_pending_tasks().await;
        assert!(
            cache.entries.weighted_size() <= 10_000,
            "{}",
            cache.entries.weighted_size()
        );
    }
}

#[cfg(test)]
mod purge_race_tests {
    use super::*;

    fn copy_of_generation(generation: i64) -> Arc<CachedObject> {
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert(
            meridian_shared::storage::SOURCE_GENERATION_KEY.to_string(),
            generation.to_string(),
        );
        Arc::new(CachedObject {
            meta: ObjectMeta {
                name: "a".into(),
                size: 1,
                content_type: "text/plain".into(),
                cache_control: None,
                md5_hash: String::new(),
                crc32c: String::new(),
                generation: 1_000 + generation,
                updated: chrono::Utc::now(),
                metadata,
            },
            body: Bytes::from_static(b"x"),
            headers: HeaderMap::new(),
            stored_at: Instant::now(),
            lifetime: Duration::from_secs(60),
        })
    }

    #[tokio::test]
    async fn a_fetch_that_finishes_after_a_purge_cannot_store_the_old_copy() {
        let cache = ObjectCache::new(1 << 20);
        // The purge for generation 8 arrives while generation 7 is still being fetched.
        assert!(!cache.remove_older("a", Some(8)).await);
        assert!(
            !cache.insert(copy_of_generation(7)).await,
            "the stale copy is not stored"
        );
        assert!(cache.fresh("a", Instant::now()).await.is_none());
        assert!(cache.insert(copy_of_generation(8)).await, "the new copy is");
    }
}
