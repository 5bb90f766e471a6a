//! The cache front: answers `GET`/`HEAD` for an object from the [`Store`] when fresh,
//! else from the [`Origin`], storing what the [`CachePolicy`] allows. It owns what
//! spans store and origin: purge floors (a fetch that started before a purge must not
//! put the old copy back) and the fill budget (how many bytes misses may buffer at
//! once, so a cold cache under load cannot run the edge out of memory).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_shared::storage::collect;
use meridian_shared::{ObjectName, Result};
use tokio::time::Instant;

use crate::cache_status::CacheStatus;
use crate::origin::Origin;
use crate::policy::CachePolicy;
use crate::store::{MissWriter, Store, StoredMeta};

/// How long a purge remembers the generation it asked for. A fetch that started
/// before the purge and finishes after it must not put the old object back; fetches
/// take far less than this.
const PURGE_MEMORY: Duration = Duration::from_secs(300);

/// Store, origin and policy, and what spans them.
pub struct CacheFront {
    origin: Box<dyn Origin>,
    store: Box<dyn Store>,
    policy: CachePolicy,
    /// Per name, the oldest main-bucket generation recent purges still allow in.
    floors: moka::future::Cache<String, i64>,
    /// Bytes that fills may buffer at once, in KiB permits; past it, misses stream
    /// through without being stored.
    fill_budget: tokio::sync::Semaphore,
    /// Larger objects are streamed through, never buffered whole.
    stream_threshold: u64,
}

impl CacheFront {
    /// A front over `origin` and `store`; fills may buffer `fill_budget_kib` KiB at
    /// once, and objects over `stream_threshold` bytes are never stored.
    pub fn new(
        origin: Box<dyn Origin>,
        store: Box<dyn Store>,
        policy: CachePolicy,
        fill_budget_kib: usize,
        stream_threshold: u64,
    ) -> CacheFront {
        CacheFront {
            origin,
            store,
            policy,
            floors: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(PURGE_MEMORY)
                .build(),
            fill_budget: tokio::sync::Semaphore::new(fill_budget_kib),
            stream_threshold,
        }
    }

    /// Answers a `GET` or `HEAD` of `name`.
    pub async fn serve(&self, method: &Method, name: &ObjectName) -> Result<Response> {
        let key = name.as_str();
        if let Some(hit) = self.store.lookup(key).await {
            let now = Instant::now();
            if hit.meta.is_fresh(now) {
                let mut headers = with_status(hit.meta.headers.clone(), CacheStatus::Hit);
                headers.insert(header::AGE, HeaderValue::from(hit.meta.age(now)));
                return Ok(respond(method, headers, hit.body.into_body()));
            }
        }
        if method == Method::HEAD {
            // Says what a GET would do now: MISS for an object a GET would store,
            // BYPASS for one it would stream through.
            let response = self
                .forget_if_missing(key, self.origin.head(name).await)
                .await?;
            let fresh_for = self.policy.freshness(&response.headers);
            let status = if self.storable(response.size, fresh_for) {
                CacheStatus::Miss
            } else {
                CacheStatus::Bypass
            };
            return Ok(respond(
                method,
                with_status(response.headers, status),
                Body::empty(),
            ));
        }
        let response = self
            .forget_if_missing(key, self.origin.get(name).await)
            .await?;
        let fresh_for = self.policy.freshness(&response.headers);
        let Some(stream) = response.body else {
            return Err(meridian_shared::Error::internal_msg(
                "the origin sent no body",
            ));
        };
        let fill_permit = if self.storable(response.size, fresh_for) {
            let kib = u32::try_from(response.size.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .max(1);
            self.fill_budget.try_acquire_many(kib).ok()
        } else {
            None
        };
        let Some(_fill_permit) = fill_permit else {
            let headers = with_status(response.headers, CacheStatus::Bypass);
            return Ok(respond(method, headers, Body::from_stream(stream)));
        };
        let body = collect(stream).await?;
        let mut miss = self.store.miss(
            key,
            StoredMeta {
                headers: response.headers.clone(),
                size: response.size,
                source_generation: response.source_generation,
                stored_at: Instant::now(),
                fresh_for,
            },
        );
        miss.write(&body);
        let status = if self.keep(key, response.source_generation, miss).await {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        };
        Ok(respond(
            method,
            with_status(response.headers, status),
            Body::from(body),
        ))
    }

    /// Drops `name` unless its copy comes from main-bucket generation `older_than` or
    /// newer (always when `older_than` is `None`). Returns whether it dropped one.
    /// Fetches in flight are covered too: for a while, an older copy is not stored.
    pub async fn purge(&self, name: &str, older_than: Option<i64>) -> bool {
        if let Some(limit) = older_than {
            // Atomic read-modify-write: concurrent purges can only raise the floor.
            self.floors
                .entry(name.to_string())
                .and_upsert_with(|existing| {
                    std::future::ready(existing.map_or(limit, |e| (*e.value()).max(limit)))
                })
                .await;
        }
        let Some(hit) = self.store.lookup(name).await else {
            return false;
        };
        if older_than.is_some_and(|limit| hit.meta.source_generation >= limit) {
            return false;
        }
        self.store.remove(name).await;
        true
    }

    /// Whether a GET of an object of `size` bytes, fresh for `fresh_for`, would store
    /// it: cacheable, small enough to buffer, and within the store's budget.
    fn storable(&self, size: u64, fresh_for: Duration) -> bool {
        !fresh_for.is_zero() && size <= self.stream_threshold && self.store.fits(size)
    }

    /// Finishes `miss` unless a recent purge asked for a newer generation (the object
    /// was fetched before the purge). Returns whether it was kept.
    async fn keep(&self, key: &str, source_generation: i64, miss: Box<dyn MissWriter>) -> bool {
        if self.below_floor(key, source_generation).await {
            return false;
        }
        if !miss.finish().await {
            return false;
        }
        // A purge may have landed between the check and the finish: check again.
        if self.below_floor(key, source_generation).await {
            self.store.remove(key).await;
            return false;
        }
        true
    }

    async fn below_floor(&self, key: &str, source_generation: i64) -> bool {
        self.floors
            .get(key)
            .await
            .is_some_and(|floor| source_generation < floor)
    }

    /// A missing object must not linger in the store either.
    async fn forget_if_missing<T>(&self, key: &str, result: Result<T>) -> Result<T> {
        if let Err(meridian_shared::Error::NotFound(_)) = &result {
            self.store.remove(key).await;
        }
        result
    }
}

fn respond(method: &Method, headers: HeaderMap, body: Body) -> Response {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        body
    };
    (StatusCode::OK, headers, body).into_response()
}

fn with_status(mut headers: HeaderMap, status: CacheStatus) -> HeaderMap {
    headers.insert("x-cache", HeaderValue::from_static(status.as_str()));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::BucketOrigin;
    use crate::store::MemoryStore;
    use bytes::Bytes;

    fn front() -> (CacheFront, MemoryStore) {
        let store = MemoryStore::new(1 << 20);
        let bucket = std::sync::Arc::new(meridian_shared::storage::MemoryBucket::new("b-test"));
        let front = CacheFront::new(
            Box::new(BucketOrigin::new(bucket, "r", Duration::from_secs(60))),
            Box::new(store.clone()),
            CachePolicy {
                default_lifetime: Some(Duration::from_secs(60)),
            },
            1024,
            1 << 20,
        );
        (front, store)
    }

    fn copy_of_generation(store: &MemoryStore, generation: i64) -> Box<dyn MissWriter> {
        let mut miss = store.miss(
            "a",
            StoredMeta {
                headers: HeaderMap::new(),
                size: 1,
                source_generation: generation,
                stored_at: Instant::now(),
                fresh_for: Duration::from_secs(60),
            },
        );
        miss.write(&Bytes::from_static(b"x"));
        miss
    }

    #[tokio::test]
    async fn purges_keep_copies_at_least_as_new_as_asked() {
        let (front, store) = front();
        assert!(front.keep("a", 7, copy_of_generation(&store, 7)).await);
        assert!(
            !front.purge("a", Some(7)).await,
            "a copy of generation 7 is not older than 7"
        );
        assert!(store.lookup("a").await.is_some());
        assert!(front.purge("a", Some(8)).await);
        assert!(store.lookup("a").await.is_none());
    }

    #[tokio::test]
    async fn a_fetch_that_finishes_after_a_purge_cannot_store_the_old_copy() {
        let (front, store) = front();
        // The purge for generation 8 arrives while generation 7 is still being fetched.
        assert!(!front.purge("a", Some(8)).await);
        assert!(
            !front.keep("a", 7, copy_of_generation(&store, 7)).await,
            "the stale copy is not stored"
        );
        assert!(store.lookup("a").await.is_none());
        assert!(
            front.keep("a", 8, copy_of_generation(&store, 8)).await,
            "the new copy is"
        );
    }
}
