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
use crate::directives::{self, RequestDirectives};
use crate::fill::{self, Failure, Fill, FillState, Fills};
use crate::origin::{Origin, OriginResponse};
use crate::policy::CachePolicy;
use crate::ranged::{self, Multipart};
use crate::store::{Hit, MissWriter, Payload, Store, StoredMeta};

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
    /// Default stale windows, for responses that do not state their own.
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
}

/// How long past their freshness stored copies may be served, unless they say.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaleDefaults {
    /// While one background fetch refreshes the copy.
    pub while_revalidate: Duration,
    /// When the origin fails.
    pub if_error: Duration,
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
    /// Larger objects are streamed through, never stored.
    stream_threshold: u64,
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

/// A representation about to be answered: its headers, length and body, and what the
/// cache did (`X-Cache`, and the `Cache-Status` parameters after the cache's name).
struct Representation {
    headers: HeaderMap,
    size: u64,
    body: Payload,
    status: CacheStatus,
    age: u64,
    detail: String,
}

impl Representation {
    /// A stored copy, `now`, answering as `status` with `detail`.
    fn stored(hit: Hit, now: Instant, status: CacheStatus, detail: String) -> Representation {
        Representation {
            headers: hit.meta.headers.clone(),
            size: hit.meta.size,
            age: hit.meta.age(now),
            body: hit.body.into_payload(),
            status,
            detail,
        }
    }
}

/// A response streamed through without being stored.
fn bypass(response: OriginResponse, detail: String) -> Result<Representation> {
    let body = response
        .body
        .ok_or_else(|| Error::internal_msg("the origin answered a GET without a body"))?;
    Ok(Representation {
        headers: response.headers,
        size: response.size,
        body: Payload::Stream(body),
        status: CacheStatus::Bypass,
        age: 0,
        detail,
    })
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
        stale: StaleDefaults,
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
                stream_threshold,
            }),
            policy,
            stale_while_revalidate: stale.while_revalidate,
            stale_if_error: stale.if_error,
        }
    }

    /// Answers a `GET` or `HEAD` of `name` with `request`'s headers: from the store
    /// when the stored copy is fresh enough for the request's `Cache-Control`, else
    /// through a fill (or, within the stale windows, the stale copy).
    pub async fn serve(
        &self,
        method: &Method,
        name: &ObjectName,
        request: &HeaderMap,
    ) -> Result<Response> {
        let key = name.as_str();
        let shared = &self.shared;
        let wanted = RequestDirectives::of(request);
        // Why the origin is asked, for Cache-Status: nothing stored, or the stored copy
        // is stale, or the request would not take it.
        let mut forward = "uri-miss";
        let mut stale = None;
        if let Some(hit) = shared.store.lookup(key).await {
            let now = Instant::now();
            let age = now.saturating_duration_since(hit.meta.stored_at);
            if wanted.accepts(age, hit.meta.fresh_for) {
                let ttl = hit.meta.fresh_for.as_secs() as i64 - age.as_secs() as i64;
                let representation =
                    Representation::stored(hit, now, CacheStatus::Hit, format!("hit; ttl={ttl}"));
                return Ok(answer(method, request, representation));
            }
            if hit.meta.is_fresh(now) {
                forward = "request";
            } else {
                forward = "stale";
                let staleness = age.saturating_sub(hit.meta.fresh_for);
                let (while_revalidate, if_error) = directives::stale_windows(
                    &hit.meta.headers,
                    self.stale_while_revalidate,
                    self.stale_if_error,
                );
                if method == Method::GET && !wanted.no_cache && staleness <= while_revalidate {
                    // Served stale now; one background fill refreshes it.
                    let (fill, leader) = shared.fills.join_or_start(key);
                    if leader {
                        let (give_back, _) = tokio::sync::oneshot::channel();
                        tokio::spawn(self.run_fill(name.clone(), fill, give_back));
                    }
                    let representation = Representation::stored(
                        hit,
                        now,
                        CacheStatus::Stale,
                        "hit; stale; detail=stale-while-revalidate".into(),
                    );
                    return Ok(answer(method, request, representation));
                }
                if staleness <= if_error {
                    stale = Some(hit);
                }
            }
        }
        if wanted.only_if_cached {
            return Err(Error::timeout(
                "only-if-cached",
                std::io::Error::other("no stored copy the request accepts"),
            ));
        }
        if method == Method::HEAD {
            // Says what a GET would do now: MISS for an object a GET would store,
            // BYPASS for one it would stream through.
            let response = shared
                .forget_if_missing(key, shared.origin.head(name).await)
                .await?;
            let fresh_for = self.policy.freshness(&response.headers);
            let status = if shared.storable(response.size, fresh_for) && !wanted.no_store {
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
                detail: format!("fwd={forward}"),
            };
            return Ok(answer(method, request, representation));
        }
        if wanted.no_store {
            // Nothing of this exchange may be stored: a copy of its own, no fill.
            let response = shared
                .forget_if_missing(key, shared.origin.get(name).await)
                .await?;
            return Ok(answer(
                method,
                request,
                bypass(response, "fwd=request; detail=no-store".to_string())?,
            ));
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
                detail: if leader {
                    format!("fwd={forward}; fwd-status=200")
                } else {
                    format!("fwd={forward}; fwd-status=200; collapsed")
                },
            },
            FillState::Failed(failure) => {
                if failure.status == StatusCode::NOT_FOUND {
                    shared.store.remove(key).await;
                    return Err(failure.into_error());
                }
                // The origin failed: a stale copy within its stale-if-error window
                // answers instead.
                let Some(hit) = stale else {
                    return Err(failure.into_error());
                };
                Representation::stored(
                    hit,
                    Instant::now(),
                    CacheStatus::Stale,
                    format!(
                        "hit; stale; fwd=stale; fwd-status={}; detail=stale-if-error",
                        failure.status.as_u16()
                    ),
                )
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
                bypass(
                    response,
                    format!("fwd={forward}; fwd-status=200; detail=not-stored"),
                )?
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
            let storable = shared.storable(response.size, fresh_for);
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
        // A fill that began before the purge may carry the old copy: later misses
        // start their own (the old fill is not stored: the floor keeps it out).
        shared.fills.forget(name);
        let Some(hit) = shared.store.lookup(name).await else {
            return false;
        };
        if older_than.is_some_and(|limit| hit.meta.source_generation >= limit) {
            return false;
        }
        shared.store.remove(name).await;
        true
    }
}

impl Shared {
    /// Whether a GET of an object of `size` bytes, fresh for `fresh_for`, would store
    /// it: cacheable, small enough to hold, and within the store's budget.
    fn storable(&self, size: u64, fresh_for: Duration) -> bool {
        !fresh_for.is_zero() && size <= self.stream_threshold && self.store.fits(size)
    }

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
/// current, 206 or 416 for ranges of a GET, else 200; `X-Cache`, `Cache-Status`
/// (RFC 9211), `Age` and `Accept-Ranges` always.
fn answer(method: &Method, request: &HeaderMap, representation: Representation) -> Response {
    let Representation {
        mut headers,
        size,
        body,
        status: cache_status,
        age,
        detail,
    } = representation;
    headers.insert("x-cache", HeaderValue::from_static(cache_status.as_str()));
    if let Ok(value) = HeaderValue::from_str(&format!("meridian; {detail}")) {
        headers.insert("cache-status", value);
    }
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
            for field in ["x-cache", "cache-status", "x-meridian-region"] {
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
            StaleDefaults::default(),
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

    /// An origin the tests steer: its object's bytes and Cache-Control, whether it
    /// fails, and how many GETs it answered.
    struct SteeredOrigin {
        state: std::sync::Mutex<(Bytes, &'static str, bool)>,
        gets: std::sync::atomic::AtomicUsize,
    }

    impl SteeredOrigin {
        fn new(body: &'static [u8], cache_control: &'static str) -> Arc<SteeredOrigin> {
            Arc::new(SteeredOrigin {
                state: std::sync::Mutex::new((Bytes::from_static(body), cache_control, false)),
                gets: Default::default(),
            })
        }

        fn set(&self, body: &'static [u8], failing: bool) {
            let mut state = self.state.lock().expect("lock");
            state.0 = Bytes::from_static(body);
            state.2 = failing;
        }

        fn gets(&self) -> usize {
            self.gets.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Origin for Arc<SteeredOrigin> {
        async fn head(&self, _name: &ObjectName) -> Result<OriginResponse> {
            Err(Error::internal_msg("not used"))
        }

        async fn get(&self, _name: &ObjectName) -> Result<OriginResponse> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (body, cache_control, failing) = self.state.lock().expect("lock").clone();
            if failing {
                return Err(Error::upstream_msg("the origin is down"));
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(cache_control),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            Ok(OriginResponse {
                headers,
                size: body.len() as u64,
                source_generation: 1,
                body: Some(Box::pin(futures::stream::iter([Ok(body)]))),
            })
        }
    }

    fn steered_front(origin: &Arc<SteeredOrigin>) -> CacheFront {
        CacheFront::new(
            Box::new(origin.clone()),
            Box::new(MemoryStore::new(1 << 20)),
            CachePolicy {
                default_lifetime: None,
            },
            1024,
            1 << 20,
            StaleDefaults::default(),
        )
    }

    /// GETs `o` with `request` headers: status, `X-Cache`, `Cache-Status`, body.
    async fn get(
        front: &CacheFront,
        request: &[(&'static str, &'static str)],
    ) -> (u16, String, String, Bytes) {
        let mut headers = HeaderMap::new();
        for (name, value) in request {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        let name = ObjectName::new("o").expect("name");
        match front.serve(&Method::GET, &name, &headers).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = |field: &str| {
                    response
                        .headers()
                        .get(field)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let (x_cache, cache_status) = (text("x-cache"), text("cache-status"));
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .expect("body");
                (status, x_cache, cache_status, body)
            }
            Err(e) => (
                e.http_status().as_u16(),
                String::new(),
                String::new(),
                Bytes::new(),
            ),
        }
    }

    /// Lets the background fill of a stale-while-revalidate run to its end.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_if_error_serves_the_stale_copy_while_the_origin_fails_within_its_window() {
        let origin = SteeredOrigin::new(b"v1", "max-age=60, stale-if-error=600");
        let front = steered_front(&origin);
        let (status, x_cache, cache_status, _) = get(&front, &[]).await;
        assert_eq!((status, x_cache.as_str()), (200, "MISS"));
        assert_eq!(cache_status, "meridian; fwd=uri-miss; fwd-status=200");
        settle().await;
        let (_, x_cache, cache_status, _) = get(&front, &[]).await;
        assert_eq!(
            (x_cache.as_str(), cache_status.as_str()),
            ("HIT", "meridian; hit; ttl=60")
        );

        origin.set(b"v2", true);
        tokio::time::advance(Duration::from_secs(120)).await;
        let (status, x_cache, cache_status, body) = get(&front, &[]).await;
        assert_eq!(
            (status, x_cache.as_str(), body.as_ref()),
            (200, "STALE", b"v1".as_ref())
        );
        assert_eq!(
            cache_status,
            "meridian; hit; stale; fwd=stale; fwd-status=502; detail=stale-if-error"
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(
            get(&front, &[]).await.0,
            502,
            "past the window, the failure shows"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stale_while_revalidate_serves_stale_once_and_refreshes_in_the_background() {
        let origin = SteeredOrigin::new(b"v1", "max-age=60, stale-while-revalidate=600");
        let front = steered_front(&origin);
        get(&front, &[]).await;
        settle().await;
        origin.set(b"v2", false);
        tokio::time::advance(Duration::from_secs(120)).await;
        let (_, x_cache, cache_status, body) = get(&front, &[]).await;
        assert_eq!((x_cache.as_str(), body.as_ref()), ("STALE", b"v1".as_ref()));
        assert_eq!(
            cache_status,
            "meridian; hit; stale; detail=stale-while-revalidate"
        );
        settle().await;
        let (_, x_cache, _, body) = get(&front, &[]).await;
        assert_eq!((x_cache.as_str(), body.as_ref()), ("HIT", b"v2".as_ref()));
        assert_eq!(origin.gets(), 2, "one refresh");
        // Without a window of its own, a stale copy is fetched again, not served.
        let plain = SteeredOrigin::new(b"v1", "max-age=60");
        let front = steered_front(&plain);
        get(&front, &[]).await;
        settle().await;
        tokio::time::advance(Duration::from_secs(120)).await;
        let (_, x_cache, cache_status, _) = get(&front, &[]).await;
        assert_eq!(x_cache, "MISS");
        assert_eq!(cache_status, "meridian; fwd=stale; fwd-status=200");
    }

    #[tokio::test(start_paused = true)]
    async fn request_directives_decide_what_a_stored_copy_may_answer() {
        let origin = SteeredOrigin::new(b"v1", "max-age=600");
        let front = steered_front(&origin);
        assert_eq!(
            get(&front, &[("cache-control", "only-if-cached")]).await.0,
            504
        );
        assert_eq!(origin.gets(), 0, "only-if-cached never asks the origin");
        get(&front, &[]).await;
        settle().await;
        tokio::time::advance(Duration::from_secs(100)).await;
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "max-age=200")]).await;
        assert_eq!(x_cache, "HIT");
        let (_, x_cache, cache_status, _) = get(&front, &[("cache-control", "max-age=50")]).await;
        assert_eq!(
            (x_cache.as_str(), cache_status.as_str()),
            ("MISS", "meridian; fwd=request; fwd-status=200")
        );
        settle().await;
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "no-cache")]).await;
        assert_eq!(x_cache, "MISS");
        settle().await;
        let gets = origin.gets();
        let (_, x_cache, cache_status, _) =
            get(&front, &[("cache-control", "no-store, no-cache")]).await;
        assert_eq!(
            (x_cache.as_str(), cache_status.as_str()),
            ("BYPASS", "meridian; fwd=request; detail=no-store")
        );
        assert_eq!(origin.gets(), gets + 1);
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "min-fresh=700")]).await;
        assert_eq!(x_cache, "MISS", "not fresh for long enough");
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "only-if-cached")]).await;
        assert_eq!(x_cache, "HIT");
    }
}
