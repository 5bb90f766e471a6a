//! The cache front: answers `GET`/`HEAD` for an object from the [`Store`] when fresh,
//! else from the [`Origin`], storing what the [`CachePolicy`] allows. It owns what
//! spans store and origin: purge floors (a fetch that started before a purge must not
//! put the old copy back), coalesced fills (concurrent misses share one origin request
//! and read its body as it arrives), and the fill budget (how many bytes fills may hold
//! at once, so a cold cache under load cannot run the edge out of memory). Whatever
//! the source, the answer honours the client's conditionals and ranges.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_shared::{Error, ObjectName, Result};
use tokio::time::Instant;

use crate::cache_status::CacheStatus;
use crate::conditional::{self, RangeRequest};
use crate::fill::{self, Failure, Fill, FillState, Fills};
use crate::origin::{Origin, OriginResponse};
use crate::policy::CachePolicy;
use crate::ranged::{self, Multipart};
use crate::store::{MissWriter, Payload, Store, StoredMeta};

/// How long a purge remembers the generation it asked for. A fetch that started
/// before the purge and finishes after it must not put the old object back; fetches
/// take far less than this.
const PURGE_MEMORY: Duration = Duration::from_secs(300);

/// The boundary between the parts of a `multipart/byteranges` answer.
const BOUNDARY: &str = "meridian-byteranges-7d41c6";

/// Store, origin and policy, and what spans them.
pub struct CacheFront {
    shared: Arc<Shared>,
    policy: CachePolicy,
    /// Larger objects are streamed through, never stored.
    stream_threshold: u64,
}

/// What fill tasks need beyond a request's life.
struct Shared {
    origin: Box<dyn Origin>,
    store: Box<dyn Store>,
    floors: Floors,
    fills: Fills,
    /// Bytes that fills may hold at once, in KiB permits; past it, misses stream
    /// through without being stored.
    fill_budget: Arc<tokio::sync::Semaphore>,
}

/// Per name, the oldest main-bucket generation recent purges still allow in.
#[derive(Clone)]
struct Floors(moka::future::Cache<String, i64>);

impl Floors {
    async fn raise(&self, key: &str, limit: i64) {
        // Atomic read-modify-write: concurrent purges can only raise the floor.
        self.0
            .entry(key.to_string())
            .and_upsert_with(|existing| {
                std::future::ready(existing.map_or(limit, |e| (*e.value()).max(limit)))
            })
            .await;
    }

    async fn below(&self, key: &str, source_generation: i64) -> bool {
        self.0
            .get(key)
            .await
            .is_some_and(|floor| source_generation < floor)
    }
}

/// A representation about to be answered: its headers, length and body.
struct Representation {
    headers: HeaderMap,
    size: u64,
    body: Payload,
    status: CacheStatus,
    age: u64,
}

impl CacheFront {
    /// A front over `origin` and `store`; fills may hold `fill_budget_kib` KiB at once,
    /// and objects over `stream_threshold` bytes are never stored.
    pub fn new(
        origin: Box<dyn Origin>,
        store: Box<dyn Store>,
        policy: CachePolicy,
        fill_budget_kib: usize,
        stream_threshold: u64,
    ) -> CacheFront {
        CacheFront {
            shared: Arc::new(Shared {
                origin,
                store,
                floors: Floors(
                    moka::future::Cache::builder()
                        .max_capacity(100_000)
                        .time_to_live(PURGE_MEMORY)
                        .build(),
                ),
                fills: Fills::default(),
                fill_budget: Arc::new(tokio::sync::Semaphore::new(fill_budget_kib)),
            }),
            policy,
            stream_threshold,
        }
    }

    /// Answers a `GET` or `HEAD` of `name` with `request`'s headers.
    pub async fn serve(
        &self,
        method: &Method,
        name: &ObjectName,
        request: &HeaderMap,
    ) -> Result<Response> {
        let key = name.as_str();
        let shared = &self.shared;
        if let Some(hit) = shared.store.lookup(key).await {
            let now = Instant::now();
            if hit.meta.is_fresh(now) {
                let representation = Representation {
                    headers: hit.meta.headers.clone(),
                    size: hit.meta.size,
                    age: hit.meta.age(now),
                    body: hit.body.into_payload(),
                    status: CacheStatus::Hit,
                };
                return Ok(answer(method, request, representation));
            }
        }
        if method == Method::HEAD {
            // Says what a GET would do now: MISS for an object a GET would store,
            // BYPASS for one it would stream through.
            let response = shared
                .forget_if_missing(key, shared.origin.head(name).await)
                .await?;
            let fresh_for = self.policy.freshness(&response.headers);
            let status = if self.storable(response.size, fresh_for) {
                CacheStatus::Miss
            } else {
                CacheStatus::Bypass
            };
            let representation = Representation {
                headers: response.headers,
                size: response.size,
                body: Payload::Bytes(bytes::Bytes::new()),
                status,
                age: 0,
            };
            return Ok(answer(method, request, representation));
        }
        let (fill, leader) = shared.fills.join_or_start(key);
        // The leader gets the origin's response back if it is not one to share, so
        // it does not ask the origin twice.
        let mut declined = None;
        if leader {
            let (give_back, taken) = tokio::sync::oneshot::channel();
            tokio::spawn(self.run_fill(name.clone(), fill.clone(), give_back));
            declined = Some(taken);
        }
        let representation = match fill.answered().await {
            FillState::Streaming { headers, size, .. } => Representation {
                headers,
                size,
                body: Payload::Stream(fill.reader()),
                status: CacheStatus::Miss,
                age: 0,
            },
            FillState::Failed(failure) => {
                if failure.status == StatusCode::NOT_FOUND {
                    shared.store.remove(key).await;
                }
                return Err(failure.into_error());
            }
            // Not one to share: this request streams its own copy through.
            FillState::Declined | FillState::Waiting => {
                let response = match declined {
                    Some(taken) => match taken.await {
                        Ok(response) => response,
                        Err(_) => return Err(Error::internal_msg("the fill gave nothing back")),
                    },
                    None => {
                        shared
                            .forget_if_missing(key, shared.origin.get(name).await)
                            .await?
                    }
                };
                let body = response.body.ok_or_else(|| {
                    Error::internal_msg("the origin answered a GET without a body")
                })?;
                Representation {
                    headers: response.headers,
                    size: response.size,
                    body: Payload::Stream(body),
                    status: CacheStatus::Bypass,
                    age: 0,
                }
            }
        };
        Ok(answer(method, request, representation))
    }

    /// The fill task for `name`: one origin request, its body kept as it arrives for
    /// every reader, then offered to the store. Runs apart from any request, so a
    /// client that goes away does not leave the other readers waiting.
    fn run_fill(
        &self,
        name: ObjectName,
        fill: Arc<Fill>,
        give_back: tokio::sync::oneshot::Sender<OriginResponse>,
    ) -> impl Future<Output = ()> + use<> {
        let shared = self.shared.clone();
        let policy = self.policy;
        let stream_threshold = self.stream_threshold;
        async move {
            let key = name.as_str();
            let response = match shared.origin.get(&name).await {
                Ok(response) => response,
                Err(e) => {
                    shared.fills.remove(key, &fill);
                    return fill.end(FillState::Failed(Failure::of(&e)));
                }
            };
            let fresh_for = policy.freshness(&response.headers);
            let storable = !fresh_for.is_zero()
                && response.size <= stream_threshold
                && shared.store.fits(response.size);
            let kib = u32::try_from(response.size.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .max(1);
            let permit = storable
                .then(|| shared.fill_budget.clone().try_acquire_many_owned(kib).ok())
                .flatten();
            let Some(_permit) = permit else {
                // Too large, not cacheable, or no room in the budget right now: the
                // leader streams this response through; other waiters fetch their own.
                shared.fills.remove(key, &fill);
                let _ = give_back.send(response);
                return fill.end(FillState::Declined);
            };
            let Some(body) = response.body else {
                shared.fills.remove(key, &fill);
                return fill.end(FillState::Failed(Failure::broken(
                    "the origin answered a GET without a body".into(),
                )));
            };
            let mut miss = shared.store.miss(
                key,
                StoredMeta {
                    headers: response.headers.clone(),
                    size: response.size,
                    source_generation: response.source_generation,
                    stored_at: Instant::now(),
                    fresh_for,
                },
            );
            fill.start(response.headers, response.size);
            match fill::copy_body(&fill, body, response.size, |chunk| miss.write(chunk)).await {
                Ok(()) => {
                    shared.keep(key, response.source_generation, miss).await;
                    shared.fills.remove(key, &fill);
                    fill.complete();
                }
                Err(why) => {
                    tracing::warn!(object = key, cause = %why, "fill failed; nothing stored");
                    shared.fills.remove(key, &fill);
                    fill.end(FillState::Failed(Failure::broken(why)));
                }
            }
        }
    }

    /// Drops `name` unless its copy comes from main-bucket generation `older_than` or
    /// newer (always when `older_than` is `None`). Returns whether it dropped one.
    /// Fetches in flight are covered too: for a while, an older copy is not stored.
    pub async fn purge(&self, name: &str, older_than: Option<i64>) -> bool {
        let shared = &self.shared;
        if let Some(limit) = older_than {
            shared.floors.raise(name, limit).await;
        }
        let Some(hit) = shared.store.lookup(name).await else {
            return false;
        };
        if older_than.is_some_and(|limit| hit.meta.source_generation >= limit) {
            return false;
        }
        shared.store.remove(name).await;
        true
    }

    /// Whether a GET of an object of `size` bytes, fresh for `fresh_for`, would store
    /// it: cacheable, small enough to hold, and within the store's budget.
    fn storable(&self, size: u64, fresh_for: Duration) -> bool {
        !fresh_for.is_zero() && size <= self.stream_threshold && self.shared.store.fits(size)
    }
}

impl Shared {
    /// Finishes `miss` unless a recent purge asked for a newer generation (the object
    /// was fetched before the purge). Returns whether it was kept.
    async fn keep(&self, key: &str, source_generation: i64, miss: Box<dyn MissWriter>) -> bool {
        if self.floors.below(key, source_generation).await {
            return false;
        }
        if !miss.finish().await {
            return false;
        }
        // A purge may have landed between the check and the finish: check again.
        if self.floors.below(key, source_generation).await {
            self.store.remove(key).await;
            return false;
        }
        true
    }

    /// A missing object must not linger in the store either.
    async fn forget_if_missing<T>(&self, key: &str, result: Result<T>) -> Result<T> {
        if let Err(Error::NotFound(_)) = &result {
            self.store.remove(key).await;
        }
        result
    }
}

/// The answer to `request` from `representation`: 304 when the client's copy is
/// current, 206 or 416 for ranges of a GET, else 200; `X-Cache`, `Age` and
/// `Accept-Ranges` always.
fn answer(method: &Method, request: &HeaderMap, representation: Representation) -> Response {
    let Representation {
        mut headers,
        size,
        body,
        status: cache_status,
        age,
    } = representation;
    headers.insert("x-cache", HeaderValue::from_static(cache_status.as_str()));
    headers.insert(header::AGE, HeaderValue::from(age));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if conditional::not_modified(request, &headers) {
        // A 304 carries the validators and caching headers, not the body's.
        for field in [header::CONTENT_LENGTH, header::CONTENT_TYPE] {
            headers.remove(field);
        }
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let whole = |headers: HeaderMap, body: Payload| {
        let body = match body {
            _ if method == Method::HEAD => Body::empty(),
            Payload::Bytes(bytes) => Body::from(bytes),
            Payload::Stream(stream) => Body::from_stream(stream),
        };
        (StatusCode::OK, headers, body).into_response()
    };
    if method != Method::GET {
        return whole(headers, body);
    }
    match conditional::ranges(request, &headers, size) {
        RangeRequest::Whole => whole(headers, body),
        RangeRequest::Unsatisfiable => {
            let mut refusal = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refusal.insert(header::CONTENT_RANGE, value);
            }
            for field in ["x-cache", "x-meridian-region"] {
                if let Some(value) = headers.get(field) {
                    refusal.insert(field, value.clone());
                }
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, refusal).into_response()
        }
        RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
            let range = &ranges[0];
            if let Ok(value) =
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
            {
                headers.insert(header::CONTENT_RANGE, value);
            }
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let body = Body::from_stream(ranged::cut(body.into_stream(), ranges, None));
            (StatusCode::PARTIAL_CONTENT, headers, body).into_response()
        }
        RangeRequest::Ranges(ranges) => {
            let parts = Multipart {
                boundary: BOUNDARY.to_string(),
                content_type: headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                size,
            };
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(parts.length(&ranges)),
            );
            if let Ok(value) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={BOUNDARY}"))
            {
                headers.insert(header::CONTENT_TYPE, value);
            }
            let body = Body::from_stream(ranged::cut(body.into_stream(), ranges, Some(parts)));
            (StatusCode::PARTIAL_CONTENT, headers, body).into_response()
        }
    }
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
        assert!(
            front
                .shared
                .keep("a", 7, copy_of_generation(&store, 7))
                .await
        );
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
            !front
                .shared
                .keep("a", 7, copy_of_generation(&store, 7))
                .await,
            "the stale copy is not stored"
        );
        assert!(store.lookup("a").await.is_none());
        assert!(
            front
                .shared
                .keep("a", 8, copy_of_generation(&store, 8))
                .await,
            "the new copy is"
        );
    }
}
