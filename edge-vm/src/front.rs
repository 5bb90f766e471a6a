//! The cache front: answers a `GET`/`HEAD` from the [`Store`] when the stored response
//! is fresh enough for the request, else from the [`Origin`], storing what the
//! [`CachePolicy`] allows; sends other methods on and invalidates what they changed. It
//! owns what spans store and origin: purge floors (a fetch that started before a purge
//! must not put the old copy back), secondary keys (`Vary`), coalesced fills
//! (concurrent misses share one origin request and read its body as it arrives; a
//! stale copy with a validator is revalidated, and a 304 refreshes it), and the fill
//! budget (how many bytes fills may hold at once, so a cold cache under load cannot run
//! the edge out of memory).
//!
//! Requests with `Authorization` are never answered from the store nor joined to
//! another request's fill: their answer may depend on who asks. Their responses are
//! stored only when the origin marks them shareable (RFC 9111 §3.5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use meridian_shared::server::QuickAnswer;
use meridian_shared::storage::ByteStream;
use meridian_shared::{Error, Result};
use tokio::time::Instant;

use crate::answer::{
    Representation, answer, cache_status, hit_status, is_plain_hit, plain_hit, quick_plain_hit,
};
use crate::cache_status::CacheStatus;
use crate::directives::{self, RequestDirectives};
use crate::fill::{self, Failure, Fill, FillState, Fills};
use crate::metrics::EdgeMetrics;
use crate::origin::{Origin, OriginRequest, OriginResponse};
use crate::policy::{self, CachePolicy};
use crate::request_fields::RequestFields;
use crate::store::{Hit, MissWriter, Payload, Store, StoredMeta};
use crate::vary::{self, VaryIndex};

/// How long a purge remembers what it asked for. A fetch that started before the
/// purge and finishes after it must not put the old copy back; fetches take far less
/// than this.
const PURGE_MEMORY: Duration = Duration::from_secs(300);

/// How long a look at the origin's reachability is trusted.
const HEALTH_MEMORY: Duration = Duration::from_secs(2);

/// When the origin was last looked at, and whether it could be reached.
type OriginHealth = (Instant, std::result::Result<(), String>);

/// Origin statuses that let a stale copy answer instead (RFC 5861 §4).
const ERRORS_STALE_MAY_HIDE: [u16; 4] = [500, 502, 503, 504];

/// Store, origin and policy, and what spans them.
pub struct CacheFront {
    shared: Arc<Shared>,
    /// The last look at whether the origin can be reached, and when.
    origin_health: std::sync::Mutex<Option<OriginHealth>>,
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
    metrics: Arc<EdgeMetrics>,
    store: Box<dyn Store>,
    policy: CachePolicy,
    floors: Floors,
    vary: VaryIndex,
    fills: Fills,
    /// Bytes that fills may hold at once, in KiB permits; past it, misses stream
    /// through without being stored.
    fill_budget: Arc<tokio::sync::Semaphore>,
    /// Larger responses are streamed through, never stored.
    stream_threshold: u64,
}

/// What recent purges of one key still let in: copies from at least this main-bucket
/// generation, fetched by fills that started after purge number `epoch`.
#[derive(Debug, Clone, Copy, Default)]
struct Floor {
    generation: i64,
    epoch: u64,
}

/// Per key, the floor recent purges set.
struct Floors {
    map: moka::future::Cache<String, Floor>,
    /// Recent purges by prefix: the prefix, its epoch, and when it came (forgotten
    /// after [`PURGE_MEMORY`]).
    prefixes: std::sync::Mutex<Vec<(String, u64, Instant)>>,
    /// Purges without a generation so far; a fill notes it when it starts.
    epoch: AtomicU64,
}

impl Floors {
    fn new() -> Floors {
        Floors {
            map: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(PURGE_MEMORY)
                .build(),
            prefixes: std::sync::Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Keeps out every copy of a key under `prefix` that a fill already started may
    /// bring.
    fn raise_prefix(&self, prefix: &str) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        let mut prefixes = self.lock_prefixes();
        prefixes.retain(|(_, _, at)| now.saturating_duration_since(*at) < PURGE_MEMORY);
        prefixes.push((prefix.to_string(), epoch, now));
    }

    fn lock_prefixes(&self) -> std::sync::MutexGuard<'_, Vec<(String, u64, Instant)>> {
        self.prefixes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch a fill starting now notes.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps out copies of `key` older than `generation`, or, without one, every
    /// copy a fill that already started may bring.
    async fn raise(&self, key: &str, generation: Option<i64>) {
        let epoch = match generation {
            Some(_) => 0,
            None => self.epoch.fetch_add(1, Ordering::SeqCst) + 1,
        };
        let generation = generation.unwrap_or(i64::MIN);
        // Atomic read-modify-write: concurrent purges can only raise the floor.
        self.map
            .entry(key.to_string())
            .and_upsert_with(|existing| {
                let old = existing.map(|e| *e.value()).unwrap_or_default();
                std::future::ready(Floor {
                    generation: old.generation.max(generation),
                    epoch: old.epoch.max(epoch),
                })
            })
            .await;
    }

    /// Whether a copy of `key` from `generation`, by a fill that started at `epoch`,
    /// is kept out.
    async fn below(&self, key: &str, generation: i64, epoch: u64) -> bool {
        let by_prefix = self
            .lock_prefixes()
            .iter()
            .any(|(prefix, floor, _)| epoch < *floor && key.starts_with(prefix.as_str()));
        by_prefix
            || self
                .map
                .get(key)
                .await
                .is_some_and(|floor| generation < floor.generation || epoch < floor.epoch)
    }
}

/// What a lookup leaves to the origin: why it is asked, and what the request and the
/// store said.
struct LookupOutcome {
    /// The request's `Cache-Control`.
    wanted: RequestDirectives,
    /// The request carries `Authorization`: nothing is shared with it.
    authorized: bool,
    /// The variant's key in the store, when the URI's responses vary.
    variant: Option<String>,
    /// Why the origin is asked (`fwd` in `Cache-Status`).
    forward: &'static str,
    /// The stored copy: stale, unverified, or not one the request accepts.
    found: Option<Hit>,
    /// That copy may answer if the origin fails.
    stale_if_error: bool,
}

/// One fill's instructions.
struct FillJob {
    /// The URI key: the origin's target, what floors and the vary index are kept by.
    key: String,
    /// The store key the fill was looked up and registered under.
    lookup_key: String,
    /// Request headers to send (the client's conditionals and Range left out: the
    /// fill fetches whole bodies for everyone).
    request: HeaderMap,
    /// A stored copy to revalidate (it has a validator).
    stored: Option<Arc<StoredMeta>>,
    /// The purge epoch when the fill started.
    epoch: u64,
}

impl FillJob {
    /// The origin request: the job's headers plus, when revalidating, the stored
    /// copy's validators.
    fn origin_request(&self) -> OriginRequest {
        let mut headers = self.request.clone();
        if let Some(stored) = &self.stored {
            for (from, to) in [
                (header::ETAG, header::IF_NONE_MATCH),
                (header::LAST_MODIFIED, header::IF_MODIFIED_SINCE),
            ] {
                if let Some(value) = stored.headers.get(from) {
                    headers.insert(to, value.clone());
                }
            }
        }
        OriginRequest::new(Method::GET, &self.key, headers)
    }
}

/// The headers a fill or a pass-through GET sends: the client's, without conditionals
/// and Range (the edge answers those from the whole response). Hop-by-hop fields are
/// the origin's to drop, at the one place a request leaves the edge.
fn fetch_headers(request: &HeaderMap) -> HeaderMap {
    let mut headers = request.clone();
    for field in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        headers.remove(field);
    }
    headers
}

/// The age and the seconds of freshness left (negative when stale) of a stored copy
/// that a request wanting `wanted` takes as it is `now`; `None` when the origin must
/// be asked first. A copy found on disk after a restart may have been purged while the
/// edge was down, so it is never taken without asking.
fn accepted(hit: &Hit, now: Instant, wanted: &RequestDirectives) -> Option<(u64, i64)> {
    let age = now.saturating_duration_since(hit.meta.stored_at);
    if hit.meta.unverified || !wanted.accepts(age, hit.meta.fresh_for) {
        return None;
    }
    let ttl = hit.meta.fresh_for.as_secs() as i64 - age.as_secs() as i64;
    Some((age.as_secs(), ttl))
}

/// A stored copy, `now`, answering as `cache` with `detail`.
fn stored(hit: Hit, now: Instant, cache: CacheStatus, detail: String) -> Representation {
    Representation {
        status: hit.meta.status,
        headers: hit.meta.headers.clone(),
        size: Some(hit.meta.size),
        age: hit.meta.age(now),
        body: hit.body,
        cache,
        detail,
    }
}

/// A response streamed through without being stored.
fn bypass(response: OriginResponse, cache: CacheStatus, detail: String) -> Representation {
    Representation {
        status: response.status,
        headers: response.headers,
        size: response.size,
        body: match response.body {
            Some(body) => Payload::Stream(body),
            None => Payload::Bytes(bytes::Bytes::new()),
        },
        cache,
        age: 0,
        detail,
    }
}

/// The stored headers refreshed by a 304's (RFC 9111 §3.2): its fields replace the
/// stored ones, except those describing the stored body's framing.
fn merge_not_modified(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if [
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::CONTENT_RANGE,
            header::TRANSFER_ENCODING,
        ]
        .contains(name)
        {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

/// The generation instant of a response that arrived `initial_age` old, now.
fn generated_at(initial_age: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(initial_age).unwrap_or(now)
}

impl CacheFront {
    /// A front over `origin` and `store` with `policy`; fills may hold
    /// `fill_budget_kib` KiB at once, and responses over `stream_threshold` bytes are
    /// never stored.
    pub fn new(
        origin: Box<dyn Origin>,
        store: Box<dyn Store>,
        policy: CachePolicy,
        fill_budget_kib: usize,
        stream_threshold: u64,
        stale: StaleDefaults,
        metrics: Arc<EdgeMetrics>,
    ) -> CacheFront {
        CacheFront {
            shared: Arc::new(Shared {
                origin,
                metrics,
                store,
                policy,
                floors: Floors::new(),
                vary: VaryIndex::new(),
                fills: Fills::default(),
                fill_budget: Arc::new(tokio::sync::Semaphore::new(fill_budget_kib)),
                stream_threshold,
            }),
            origin_health: std::sync::Mutex::new(None),
            stale_while_revalidate: stale.while_revalidate,
            stale_if_error: stale.if_error,
        }
    }

    /// Answers a `GET` or `HEAD` of `key` with `request`'s headers: from the store
    /// when the stored response is fresh enough for the request's `Cache-Control`,
    /// else through a fill (revalidating the stored one when it has a validator), or,
    /// within its stale windows, the stale one.
    pub async fn serve(&self, method: &Method, key: &str, request: &HeaderMap) -> Result<Response> {
        let shared = &self.shared;
        let fields = RequestFields::of(request);
        let wanted = if fields.cache_control {
            RequestDirectives::of(request)
        } else {
            RequestDirectives::default()
        };
        let authorized = fields.authorization;
        let variant = shared.vary.store_key(key, request);
        let lookup_key = variant.as_deref().unwrap_or(key);
        // Why the origin is asked, for Cache-Status: nothing stored (for this URI, or
        // for this variant), the stored copy is stale, or the request would not take it.
        let mut forward = if variant.is_some() {
            "vary-miss"
        } else {
            "uri-miss"
        };
        let mut found = None;
        let mut stale_if_error = false;
        if authorized {
            forward = "request";
        } else if let Some(hit) = shared.store.lookup(lookup_key).await {
            let now = Instant::now();
            if let Some((age, ttl)) = accepted(&hit, now, &wanted) {
                if is_plain_hit(&hit, fields) {
                    return Ok(plain_hit(method, hit, age, ttl));
                }
                let detail = hit_status(ttl, hit.from_disk);
                let hit = stored(hit, now, CacheStatus::Hit, detail);
                return Ok(answer(method, request, hit));
            }
            let age = now.saturating_duration_since(hit.meta.stored_at);
            if hit.meta.unverified {
                // Found on disk after a restart, and possibly purged meanwhile: the
                // origin is asked (conditionally) before it is served.
                forward = "stale";
            } else if hit.meta.is_fresh(now) {
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
                    let (fill, leader) = shared.fills.join_or_start(lookup_key);
                    if leader {
                        let job = self.job(key, lookup_key, request, Some(&hit));
                        let (give_back, _) = tokio::sync::oneshot::channel();
                        tokio::spawn(run_fill(shared.clone(), job, fill, give_back));
                    }
                    let detail =
                        cache_status(format_args!("hit; stale; detail=stale-while-revalidate"));
                    let hit = stored(hit, now, CacheStatus::Stale, detail);
                    return Ok(answer(method, request, hit));
                }
                stale_if_error = staleness <= if_error;
            }
            found = Some(hit);
        }
        // Asking the origin is boxed, so that a hit's future (the common case) stays
        // small: it is allocated and moved on every request.
        let looked_up = LookupOutcome {
            wanted,
            authorized,
            variant,
            forward,
            found,
            stale_if_error,
        };
        Box::pin(self.ask_origin(method, key, request, looked_up)).await
    }

    /// The answer to a `GET` of `key` that carries none of the fields the cache acts
    /// on, for the server's quick lane: when the stored response is a plain hit (see
    /// [`is_plain_hit`]) held whole in memory. `None` leaves the request to
    /// [`CacheFront::serve`].
    pub async fn quick_hit(&self, key: &str) -> Option<QuickAnswer> {
        let shared = &self.shared;
        if shared.vary.varies(key) {
            return None; // the store key depends on the request's fields
        }
        let hit = shared.store.lookup(key).await?;
        let (age, ttl) = accepted(&hit, Instant::now(), &RequestDirectives::default())?;
        if !is_plain_hit(&hit, RequestFields::default()) {
            return None;
        }
        quick_plain_hit(hit, age, ttl)
    }

    /// Answers a request its lookup could not answer alone (`looked_up` says why) through
    /// the origin: a fill, a revalidation, or a pass-through; or a stale copy when the
    /// origin fails within its `stale-if-error` window.
    async fn ask_origin(
        &self,
        method: &Method,
        key: &str,
        request: &HeaderMap,
        looked_up: LookupOutcome,
    ) -> Result<Response> {
        let shared = &self.shared;
        let LookupOutcome {
            wanted,
            authorized,
            variant,
            forward,
            found,
            stale_if_error,
        } = looked_up;
        let lookup_key = variant.as_deref().unwrap_or(key);
        if wanted.only_if_cached {
            return Err(Error::timeout(
                "only-if-cached",
                std::io::Error::other("no stored copy the request accepts"),
            ));
        }
        if method == Method::HEAD {
            // Says what a GET would do now: MISS for a response a GET would store,
            // BYPASS for one it would stream through.
            let response = self
                .fetch(Method::HEAD, key, fetch_headers(request))
                .await?;
            let storable = !wanted.no_store
                && response.size.is_some_and(|size| shared.storable(size))
                && (shared.policy)
                    .assess(
                        request,
                        response.status,
                        &response.headers,
                        SystemTime::now(),
                    )
                    .is_some();
            let cache = if storable {
                CacheStatus::Miss
            } else {
                CacheStatus::Bypass
            };
            let detail = cache_status(format_args!(
                "fwd={forward}; fwd-status={}",
                response.status.as_u16()
            ));
            return Ok(answer(method, request, bypass(response, cache, detail)));
        }
        if wanted.no_store {
            // Nothing of this exchange may be stored: a copy of its own, no fill.
            let response = self.fetch(Method::GET, key, fetch_headers(request)).await?;
            let detail = cache_status(format_args!(
                "fwd=request; fwd-status={}; detail=no-store",
                response.status.as_u16()
            ));
            let pass = bypass(response, CacheStatus::Bypass, detail);
            return Ok(answer(method, request, pass));
        }
        let (fill, leader) = if authorized {
            (Fills::solo(), true)
        } else {
            shared.fills.join_or_start(lookup_key)
        };
        // The leader gets the origin's response back if it is not one to share, so
        // it does not ask the origin twice.
        let mut declined = None;
        if leader {
            let job = self.job(key, lookup_key, request, found.as_ref());
            let (give_back, taken) = tokio::sync::oneshot::channel();
            tokio::spawn(run_fill(shared.clone(), job, fill.clone(), give_back));
            declined = Some(taken);
        }
        if !leader {
            shared.metrics.coalesced();
        }
        let collapsed = if leader { "" } else { "; collapsed" };
        let representation = match fill.answered().await {
            FillState::Streaming {
                status,
                headers,
                variant,
                generated,
                size,
                ..
            } => {
                if !leader && !self.selects(key, request, &headers, variant.as_deref()) {
                    // The fill is another variant's: this request fetches its own.
                    let response = self.fetch(Method::GET, key, fetch_headers(request)).await?;
                    let detail = cache_status(format_args!(
                        "fwd=vary-miss; fwd-status={}; detail=not-stored",
                        response.status.as_u16()
                    ));
                    return Ok(answer(
                        method,
                        request,
                        bypass(response, CacheStatus::Bypass, detail),
                    ));
                }
                Representation {
                    status,
                    headers,
                    size: Some(size),
                    body: Payload::Stream(fill.reader()),
                    cache: CacheStatus::Miss,
                    age: Instant::now()
                        .saturating_duration_since(generated)
                        .as_secs(),
                    detail: cache_status(format_args!(
                        "fwd={forward}; fwd-status={}{collapsed}",
                        status.as_u16()
                    )),
                }
            }
            FillState::Revalidated(meta) => {
                let body = match found {
                    Some(hit) => Some(hit.body),
                    None => shared.store.lookup(lookup_key).await.map(|hit| hit.body),
                };
                match body {
                    Some(body) => Representation {
                        status: meta.status,
                        headers: meta.headers.clone(),
                        size: Some(meta.size),
                        age: meta.age(Instant::now()),
                        body,
                        cache: CacheStatus::Revalidated,
                        detail: cache_status(format_args!(
                            "fwd={forward}; fwd-status=304{collapsed}"
                        )),
                    },
                    // Purged while the origin was asked: fetch it whole.
                    None => {
                        let response = self.fetch(Method::GET, key, fetch_headers(request)).await?;
                        let detail = cache_status(format_args!(
                            "fwd={forward}; fwd-status={}; detail=not-stored",
                            response.status.as_u16()
                        ));
                        bypass(response, CacheStatus::Bypass, detail)
                    }
                }
            }
            FillState::Failed(failure) => {
                if failure.status == StatusCode::NOT_FOUND {
                    self.drop_copies(key).await;
                    return Err(failure.into_error());
                }
                // The origin failed: a stale copy within its stale-if-error window
                // answers instead.
                let Some(hit) = found.filter(|_| stale_if_error) else {
                    return Err(failure.into_error());
                };
                let detail = cache_status(format_args!(
                    "hit; stale; fwd=stale; fwd-status={}; detail=stale-if-error",
                    failure.status.as_u16()
                ));
                stored(hit, Instant::now(), CacheStatus::Stale, detail)
            }
            // Not one to share: this request streams its own copy through.
            FillState::Declined | FillState::Waiting => {
                let (response, storing) = match declined {
                    Some(taken) => match taken.await {
                        Ok(given) => given,
                        Err(_) => return Err(Error::internal_msg("the fill gave nothing back")),
                    },
                    None => (
                        self.fetch(Method::GET, key, fetch_headers(request)).await?,
                        false,
                    ),
                };
                let code = response.status.as_u16();
                match found.filter(|_| stale_if_error) {
                    Some(hit) if ERRORS_STALE_MAY_HIDE.contains(&code) => {
                        let detail = cache_status(format_args!(
                            "hit; stale; fwd=stale; fwd-status={code}; detail=stale-if-error"
                        ));
                        stored(hit, Instant::now(), CacheStatus::Stale, detail)
                    }
                    // Of unknown length, stored as it passes.
                    _ if storing => {
                        let detail = cache_status(format_args!("fwd={forward}; fwd-status={code}"));
                        bypass(response, CacheStatus::Miss, detail)
                    }
                    _ => {
                        let detail = cache_status(format_args!(
                            "fwd={forward}; fwd-status={code}; detail=not-stored"
                        ));
                        bypass(response, CacheStatus::Bypass, detail)
                    }
                }
            }
        };
        Ok(answer(method, request, representation))
    }

    /// Sends a request of another method (`POST`, `PUT`, `DELETE`, ...) on to the
    /// origin, streaming its body, and answers with the origin's response. A
    /// successful one invalidates what it may have changed (RFC 9111 §4.4): the
    /// stored responses for its target, and for the same-origin paths in its
    /// `Location` and `Content-Location`.
    pub async fn forward(
        &self,
        method: Method,
        key: &str,
        request: HeaderMap,
        body: Option<ByteStream>,
    ) -> Result<Response> {
        let response = self
            .shared
            .ask(OriginRequest {
                method: method.clone(),
                target: key.to_string(),
                headers: request,
                body,
            })
            .await?;
        if response.status.is_success() || response.status.is_redirection() {
            self.purge(key, None).await;
            for field in [header::LOCATION, header::CONTENT_LOCATION] {
                let path = response.headers.get(field).and_then(|v| v.to_str().ok());
                // Only paths on this origin (`/...`, not `//host/...`).
                if let Some(path) = path.filter(|p| p.starts_with('/') && !p.starts_with("//")) {
                    self.purge(path, None).await;
                }
            }
        }
        let detail = cache_status(format_args!(
            "fwd=method; fwd-status={}",
            response.status.as_u16()
        ));
        Ok(answer(
            &method,
            &HeaderMap::new(),
            bypass(response, CacheStatus::Bypass, detail),
        ))
    }

    /// The fill job for a request of `key` (looked up as `lookup_key`), revalidating
    /// `found` when it has a validator.
    fn job(
        &self,
        key: &str,
        lookup_key: &str,
        request: &HeaderMap,
        found: Option<&Hit>,
    ) -> FillJob {
        FillJob {
            key: key.to_string(),
            lookup_key: lookup_key.to_string(),
            request: fetch_headers(request),
            stored: found
                .map(|hit| hit.meta.clone())
                .filter(|meta| policy::has_validator(&meta.headers)),
            epoch: self.shared.floors.epoch(),
        }
    }

    /// Whether `request` selects the variant a fill is bringing: always without
    /// `Vary`, else when the named fields match those of the request that started it.
    fn selects(
        &self,
        key: &str,
        request: &HeaderMap,
        response: &HeaderMap,
        leaders: Option<&str>,
    ) -> bool {
        let (Some(fields), Some(leaders)) = (vary::fields(response), leaders) else {
            return true;
        };
        vary::variant_key(key, &fields, request) == leaders
    }

    /// A request to the origin on behalf of one client, never stored; a missing
    /// object's stored copies go too.
    async fn fetch(&self, method: Method, key: &str, headers: HeaderMap) -> Result<OriginResponse> {
        let result = self
            .shared
            .ask(OriginRequest::new(method, key, headers))
            .await;
        if let Err(Error::NotFound(_)) = &result {
            self.drop_copies(key).await;
        }
        result
    }

    /// Drops every stored copy of `key` (all its variants).
    async fn drop_copies(&self, key: &str) {
        let shared = &self.shared;
        for variant in shared.vary.forget(key) {
            shared.store.remove(&variant).await;
        }
        shared.store.remove(key).await;
    }

    /// Drops `key` (every variant) unless its copy comes from main-bucket generation
    /// `older_than` or newer (always when `older_than` is `None`). Returns whether it
    /// dropped one. Fetches in flight are covered too: for a while, what they bring is
    /// not stored if it could be older than the purge asked for.
    pub async fn purge(&self, key: &str, older_than: Option<i64>) -> bool {
        let shared = &self.shared;
        shared.floors.raise(key, older_than).await;
        // A fill that began before the purge may carry the old copy: later misses
        // start their own (the old fill is not stored: the floor keeps it out).
        shared.fills.forget(key);
        let mut dropped = false;
        let variants = shared.vary.forget(key);
        for stored_key in variants.iter().map(String::as_str).chain([key]) {
            shared.fills.forget(stored_key);
            let Some(meta) = shared.store.peek(stored_key).await else {
                continue;
            };
            if older_than.is_some_and(|limit| meta.source_generation >= limit) {
                continue;
            }
            shared.store.remove(stored_key).await;
            dropped = true;
        }
        dropped
    }

    /// Drops every stored response whose key starts with `prefix` (`""`: all), with
    /// their variants, and keeps fills already under way from storing what they bring.
    /// Returns how many stored responses were dropped.
    pub async fn purge_prefix(&self, prefix: &str) -> usize {
        let shared = &self.shared;
        shared.floors.raise_prefix(prefix);
        shared.fills.forget_prefix(prefix);
        shared.vary.forget_prefix(prefix);
        shared.store.remove_prefix(prefix).await
    }

    /// Whether the origin can be reached: asked at most every [`HEALTH_MEMORY`], the
    /// answer kept in between (health probes come often, from every prober).
    pub async fn origin_reachable(&self) -> std::result::Result<(), String> {
        let now = Instant::now();
        if let Some((at, known)) = self.lock_health().as_ref()
            && now.saturating_duration_since(*at) < HEALTH_MEMORY
        {
            return known.clone();
        }
        let result = self
            .shared
            .origin
            .reachable()
            .await
            .map_err(|e| meridian_shared::error::Chain(&e).to_string());
        *self.lock_health() = Some((Instant::now(), result.clone()));
        result
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Option<OriginHealth>> {
        self.origin_health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Learns again, from a stored variant's key and headers, that its URI's responses
    /// vary (after a restart, for the copies the disk kept).
    pub fn remember_variant(&self, variant_key: &str, headers: &HeaderMap) {
        if let (Some((uri, _)), Some(fields)) =
            (variant_key.split_once('\0'), vary::fields(headers))
        {
            self.shared.vary.record(uri, &fields, variant_key);
        }
    }

    /// The store's bytes and entries, now, per tier.
    pub async fn store_size(&self) -> Vec<crate::store::TierSize> {
        self.shared.store.size().await
    }
}

/// The fill task: one origin request, its body kept as it arrives for every reader,
/// then offered to the store; or, revalidating, a 304 that refreshes the stored copy.
/// Runs apart from any request, so a client that goes away does not leave the other
/// readers waiting.
async fn run_fill(
    shared: Arc<Shared>,
    job: FillJob,
    fill: Arc<Fill>,
    give_back: tokio::sync::oneshot::Sender<(OriginResponse, bool)>,
) {
    let key = job.key.as_str();
    let lookup_key = job.lookup_key.as_str();
    let response = match shared.ask(job.origin_request()).await {
        Ok(response) => response,
        Err(e) => {
            shared.fills.remove(lookup_key, &fill);
            return fill.end(FillState::Failed(Failure::of(&e)));
        }
    };
    if response.status == StatusCode::NOT_MODIFIED
        && let Some(stored) = &job.stored
    {
        let meta = shared
            .revalidated(&job, stored, &response.headers, response.source_generation)
            .await;
        shared.fills.remove(lookup_key, &fill);
        return fill.end(FillState::Revalidated(meta));
    }
    let freshness = shared.policy.assess(
        &job.request,
        response.status,
        &response.headers,
        SystemTime::now(),
    );
    let storable_size = match (freshness, response.size, &response.body) {
        (Some(_), Some(size), Some(_)) if shared.storable(size) => Some(size),
        _ => None,
    };
    let permit = storable_size.and_then(|size| {
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        shared.fill_budget.clone().try_acquire_many_owned(kib).ok()
    });
    let (Some(freshness), Some(size), Some(_permit)) = (freshness, storable_size, permit) else {
        // Not storable, too large, of unknown length, or no room in the budget right
        // now: the leader streams this response through; other waiters fetch their
        // own. One of unknown length that may be stored is kept as it passes, if it
        // turns out small enough.
        shared.fills.remove(lookup_key, &fill);
        let given = match freshness {
            Some(freshness) if response.size.is_none() && response.body.is_some() => (
                shared.clone().store_as_it_passes(&job, freshness, response),
                true,
            ),
            _ => (response, false),
        };
        let _ = give_back.send(given);
        return fill.end(FillState::Declined);
    };
    let OriginResponse {
        status,
        headers,
        source_generation,
        body,
        ..
    } = response;
    let Some(body) = body else {
        shared.fills.remove(lookup_key, &fill);
        return fill.end(FillState::Failed(Failure::broken("no body".into())));
    };
    // Where it is stored: its variant's key when it varies.
    let (store_key, variant) = shared.store_key(key, &job.request, &headers).await;
    let generated = generated_at(freshness.initial_age);
    let mut miss = shared.store.miss(
        &store_key,
        StoredMeta::new(
            status,
            headers.clone(),
            size,
            source_generation,
            generated,
            freshness.lifetime,
        ),
    );
    fill.start(status, headers, variant, generated, size);
    match fill::copy_body(&fill, body, size, |chunk| miss.write(chunk)).await {
        Ok(()) => {
            shared
                .keep(key, &store_key, source_generation, job.epoch, miss)
                .await;
            shared.fills.remove(lookup_key, &fill);
            fill.complete();
        }
        Err(why) => {
            tracing::warn!(key, cause = %why, "fill failed; nothing stored");
            shared.fills.remove(lookup_key, &fill);
            fill.end(FillState::Failed(Failure::broken(why)));
        }
    }
}

impl Shared {
    /// The store key of a response with `headers` to a request for `key` with
    /// `request` headers (its variant's, when it varies, recorded in the vary index),
    /// and the variant key if any.
    async fn store_key(
        &self,
        key: &str,
        request: &HeaderMap,
        headers: &HeaderMap,
    ) -> (String, Option<String>) {
        let fields = vary::fields(headers);
        let variant = fields
            .as_ref()
            .map(|fields| vary::variant_key(key, fields, request));
        let obsolete = match (&fields, &variant) {
            (Some(fields), Some(variant)) => self.vary.record(key, fields, variant),
            _ => self.vary.forget(key),
        };
        for obsolete in obsolete {
            self.store.remove(&obsolete).await;
        }
        (variant.clone().unwrap_or_else(|| key.to_string()), variant)
    }

    /// `response` (of unknown length, storable with `freshness`) with a body that is
    /// also kept as it passes and stored once it has all passed, unless it grows past
    /// the stream threshold or the fill budget first (then it only passes).
    fn store_as_it_passes(
        self: Arc<Self>,
        job: &FillJob,
        freshness: crate::policy::Freshness,
        mut response: OriginResponse,
    ) -> OriginResponse {
        let Some(mut body) = response.body.take() else {
            return response;
        };
        let (key, request, epoch) = (job.key.clone(), job.request.clone(), job.epoch);
        let (status, headers) = (response.status, response.headers.clone());
        let generation = response.source_generation;
        let generated = generated_at(freshness.initial_age);
        let shared = self;
        response.body = Some(Box::pin(async_stream::try_stream! {
            let mut kept = Some(Vec::new());
            let mut permits = Vec::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if let Some(parts) = kept.as_mut() {
                    let kib = u32::try_from((chunk.len() as u64).div_ceil(1024))
                        .unwrap_or(u32::MAX);
                    let room = shared
                        .storable(size)
                        .then(|| shared.fill_budget.clone().try_acquire_many_owned(kib).ok())
                        .flatten();
                    match room {
                        Some(permit) => {
                            permits.push(permit);
                            parts.push(chunk.clone());
                        }
                        // Too large after all, or no room: it only passes.
                        None => {
                            kept = None;
                            permits.clear();
                        }
                    }
                }
                yield chunk;
            }
            if let Some(parts) = kept {
                let (store_key, _) = shared.store_key(&key, &request, &headers).await;
                let meta = StoredMeta::new(
                    status,
                    headers,
                    size,
                    generation,
                    generated,
                    freshness.lifetime,
                );
                let mut miss = shared.store.miss(&store_key, meta);
                for part in &parts {
                    miss.write(part);
                }
                shared.keep(&key, &store_key, generation, epoch, miss).await;
            }
        }));
        response
    }

    /// Sends `request` to the origin, timing how long its answer takes to start.
    async fn ask(&self, request: OriginRequest) -> Result<OriginResponse> {
        let started = Instant::now();
        let result = self.origin.fetch(request).await;
        self.metrics.origin_answered(started.elapsed());
        result
    }

    /// Whether a response of `size` bytes is small enough to store.
    fn storable(&self, size: u64) -> bool {
        size <= self.stream_threshold && self.store.fits(size)
    }

    /// The stored copy `stored` refreshed by the origin's 304 (`not_modified`): its headers
    /// merged, its freshness computed again, and the store updated (or the copy
    /// dropped, if a purge came meanwhile or it may no longer be stored).
    async fn revalidated(
        &self,
        job: &FillJob,
        stored: &StoredMeta,
        not_modified: &HeaderMap,
        source_generation: i64,
    ) -> Arc<StoredMeta> {
        let headers = merge_not_modified(&stored.headers, not_modified);
        let freshness =
            self.policy
                .assess(&job.request, stored.status, &headers, SystemTime::now());
        let meta = StoredMeta::new(
            stored.status,
            headers,
            stored.size,
            stored.source_generation.max(source_generation),
            generated_at(freshness.map(|f| f.initial_age).unwrap_or_default()),
            freshness.map(|f| f.lifetime).unwrap_or_default(),
        );
        let purged = self
            .floors
            .below(&job.key, meta.source_generation, job.epoch)
            .await;
        if freshness.is_none() || purged {
            self.store.remove(&job.lookup_key).await;
        } else {
            self.store.update(&job.lookup_key, meta.clone()).await;
        }
        Arc::new(meta)
    }

    /// Finishes `miss` (stored under `store_key`) unless a purge of `key` since the
    /// fill started keeps its copy out. Returns whether it was kept.
    async fn keep(
        &self,
        key: &str,
        store_key: &str,
        source_generation: i64,
        epoch: u64,
        miss: Box<dyn MissWriter>,
    ) -> bool {
        if self.floors.below(key, source_generation, epoch).await {
            return false;
        }
        if !miss.finish().await {
            return false;
        }
        // A purge may have landed between the check and the finish: check again.
        if self.floors.below(key, source_generation, epoch).await {
            self.store.remove(store_key).await;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::BucketOrigin;
    use crate::store::MemoryStore;
    use axum::http::HeaderValue;
    use bytes::Bytes;

    fn front() -> (CacheFront, MemoryStore) {
        let store = MemoryStore::new(1 << 20);
        let bucket = std::sync::Arc::new(meridian_shared::storage::MemoryBucket::new("b-test"));
        let front = CacheFront::new(
            Box::new(BucketOrigin::new(bucket, "r", Duration::from_secs(60))),
            Box::new(store.clone()),
            CachePolicy {
                default_lifetime: Some(Duration::from_secs(60)),
                heuristic_percent: 0,
            },
            1024,
            1 << 20,
            StaleDefaults::default(),
            Arc::default(),
        );
        (front, store)
    }

    fn copy_of_generation(store: &MemoryStore, generation: i64) -> Box<dyn MissWriter> {
        let mut miss = store.miss(
            "a",
            StoredMeta {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                size: 1,
                source_generation: generation,
                stored_at: Instant::now(),
                fresh_for: Duration::from_secs(60),
                unverified: false,
                kept_head: crate::hit_head::KeptHead::default(),
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
                .keep("a", "a", 7, 0, copy_of_generation(&store, 7))
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
                .keep("a", "a", 7, 0, copy_of_generation(&store, 7))
                .await,
            "the stale copy is not stored"
        );
        assert!(store.lookup("a").await.is_none());
        assert!(
            front
                .shared
                .keep("a", "a", 8, 0, copy_of_generation(&store, 8))
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
        async fn reachable(&self) -> Result<()> {
            Ok(())
        }

        async fn fetch(&self, _request: OriginRequest) -> Result<OriginResponse> {
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
                status: StatusCode::OK,
                headers,
                size: Some(body.len() as u64),
                source_generation: 1,
                body: Some(Box::pin(futures::stream::iter([Ok(body)]))),
            })
        }
    }

    fn steered_front(origin: &Arc<SteeredOrigin>) -> CacheFront {
        CacheFront::new(
            Box::new(origin.clone()),
            Box::new(MemoryStore::new(1 << 20)),
            CachePolicy::default(),
            1024,
            1 << 20,
            StaleDefaults::default(),
            Arc::default(),
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
        match front.serve(&Method::GET, "o", &headers).await {
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
            (
                "BYPASS",
                "meridian; fwd=request; fwd-status=200; detail=no-store"
            )
        );
        assert_eq!(origin.gets(), gets + 1);
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "min-fresh=700")]).await;
        assert_eq!(x_cache, "MISS", "not fresh for long enough");
        let (_, x_cache, _, _) = get(&front, &[("cache-control", "only-if-cached")]).await;
        assert_eq!(x_cache, "HIT");
    }
}
