//! The edge server: a shared HTTP cache (RFC 9111) in front of its region's bucket, or
//! in front of any HTTP origin; drops objects when the replicator says they changed.
//!
//! - `GET`/`HEAD /{name}` (bucket): the object, with Content-Type, Content-Length,
//!   ETag, Last-Modified, Cache-Control, Age, `Cache-Status` and `X-Cache`; 304 for a
//!   current conditional, 206/416 for ranges. Concurrent misses share one origin
//!   request, streamed to every client as it arrives.
//! - Any method and path (HTTP origin): sent on to the origin; `GET`/`HEAD` through
//!   the cache, other methods straight through (invalidating what they change).
//! - `POST /_meridian/purge`: drop one object, or every object under a prefix (bearer
//!   token, scope `purge`).
//! - `GET /_meridian/metrics`: the edge's metrics, Prometheus text format.
//! - `GET /healthz`: 200 while the origin can be reached, else 503.
//!
//! # Layout
//! - `front`: the cache front: store, origin and policy, purge floors, secondary keys,
//!   fills (with revalidation), the fill budget.
//! - `fill`: coalesced misses whose bodies are read as they arrive.
//! - `answer`: a representation as the answer to one request.
//! - `conditional`: If-None-Match, If-Modified-Since, Range and If-Range.
//! - `directives`: request Cache-Control, and how long copies may be served stale.
//! - `ranged`: cutting ranges (one, or multipart) out of a streaming body.
//! - `origin`: where misses go (the trait; the region's bucket).
//! - `http_origin`: any HTTP server as the origin.
//! - `hop`: hop-by-hop header fields, `Via`.
//! - `policy`: whether and how long a response may be stored.
//! - `vary`: secondary keys.
//! - `store`: where stored responses live (memory, bounded by bytes).
//! - `disk`: the disk tier: files with checksums, found again after a restart.
//! - `tiered`: memory in front of disk, as one store.
//! - `cache_status`: `X-Cache`.
//! - `serve`: the request handlers.
//! - `quick_lane`: fresh plain hits answered before hyper sees the request.
//! - `purge`: the purge handler, and applying a purge however it arrives.
//! - `metrics`: what the edge counts, and the access log.
//! - `invalidations`: purges over Pub/Sub, from a subscription of the edge's own.

mod answer;
mod cache_status;
mod conditional;
mod directives;
mod disk;
mod fill;
mod front;
mod hit_head;
mod hop;
mod http_origin;
mod invalidations;
mod metrics;
mod origin;
mod policy;
mod purge;
mod quick_lane;
mod ranged;
mod request_fields;
mod serve;
mod store;
mod tiered;
mod vary;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use meridian_shared::auth::{PurgePublicKey, TokenVerifier};
use meridian_shared::config::{EdgeSettings, OutboundSettings};
use meridian_shared::server::{self, ServeOptions};
use meridian_shared::tls::TlsConfig;
use meridian_shared::{Bucket, ObjectName};
use tokio::net::TcpListener;

use crate::disk::DiskStore;
use crate::front::{CacheFront, StaleDefaults};
use crate::http_origin::HttpOrigin;
use crate::metrics::EdgeMetrics;
use crate::origin::{BucketOrigin, Origin};
use crate::policy::CachePolicy;
use crate::quick_lane::EdgeQuickLane;
use crate::store::{MemoryStore, Store};
use crate::tiered::TieredStore;

pub use cache_status::CacheStatus;
/// Bytes each tier counts per entry beyond its body (for tools that size budgets).
pub use disk::ENTRY_OVERHEAD as DISK_ENTRY_OVERHEAD;
pub use invalidations::{InvalidationListener, subscription_id};
pub use serve::EdgeService;
pub use store::ENTRY_OVERHEAD as MEMORY_ENTRY_OVERHEAD;

/// Shared state of one edge: one `Arc`, so a request clones a pointer, not strings or
/// verifier sets.
#[derive(Clone)]
pub struct EdgeState(Arc<EdgeInner>);

struct EdgeInner {
    region: String,
    front: CacheFront,
    metrics: Arc<EdgeMetrics>,
    /// Checks purge tokens; `None`: this edge takes no purges (an HTTP-origin edge run
    /// without a purge key).
    tokens: Option<TokenVerifier>,
    origin: OriginKind,
    /// The disk tier, when there is one.
    disk: Option<DiskStore>,
    /// Connections at once, in all and per client address.
    max_connections: (usize, usize),
}

/// What the edge is in front of: what its paths mean and how purges name things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginKind {
    /// The region's bucket: paths are object names.
    Bucket,
    /// An HTTP origin: paths (and queries) are the origin's.
    Http,
}

/// Where the edge's metrics are served (beside the purge path, so no object or origin
/// path is shadowed).
pub const METRICS_PATH: &str = "/_meridian/metrics";

/// In-flight cache fills may buffer at most this much (or one stream threshold, if
/// larger; never more than the cache itself).
const FILL_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

impl EdgeState {
    /// An edge of `region` serving `bucket`, accepting purges signed by the private
    /// half of `purge_key` (the replicator's). With `settings.disk_dir`, its disk tier
    /// is opened (and what it holds recovered) first; that is where this can fail.
    pub fn new(
        region: &str,
        bucket: Arc<dyn Bucket>,
        settings: &EdgeSettings,
        purge_key: &PurgePublicKey,
    ) -> meridian_shared::Result<EdgeState> {
        let default_lifetime = Duration::from_secs(settings.default_max_age_seconds);
        let origin = Box::new(BucketOrigin::new(bucket, region, default_lifetime));
        let policy = CachePolicy {
            default_lifetime: Some(default_lifetime),
            heuristic_percent: 0,
        };
        EdgeState::build(
            region,
            origin,
            OriginKind::Bucket,
            policy,
            settings,
            Some(purge_key),
        )
    }

    /// An edge (labelled `region`) in front of the HTTP origin at `origin`; its
    /// responses are stored only as their headers allow. Without `purge_key` it takes
    /// no purges.
    pub fn for_http_origin(
        region: &str,
        origin: &str,
        settings: &EdgeSettings,
        outbound: &OutboundSettings,
        purge_key: Option<&PurgePublicKey>,
    ) -> meridian_shared::Result<EdgeState> {
        let origin = Box::new(HttpOrigin::new(origin, outbound)?);
        let policy = CachePolicy {
            default_lifetime: None,
            heuristic_percent: settings.origin_heuristic_percent,
        };
        EdgeState::build(
            region,
            origin,
            OriginKind::Http,
            policy,
            settings,
            purge_key,
        )
    }

    fn build(
        region: &str,
        origin: Box<dyn Origin>,
        kind: OriginKind,
        policy: CachePolicy,
        settings: &EdgeSettings,
        purge_key: Option<&PurgePublicKey>,
    ) -> meridian_shared::Result<EdgeState> {
        let metrics = Arc::new(EdgeMetrics::new());
        let memory =
            MemoryStore::counting_evictions(settings.cache_bytes, metrics.evictions("memory"));
        let disk = match &settings.disk_dir {
            Some(dir) => {
                let (evictions, damaged) = (metrics.evictions("disk"), metrics.disk_damaged());
                Some(DiskStore::open(dir, settings.disk_bytes, evictions, damaged)?.0)
            }
            None => None,
        };
        let store: Box<dyn Store> = match &disk {
            Some(disk) => Box::new(TieredStore::new(memory, disk.clone())),
            None => Box::new(memory),
        };
        let front = CacheFront::new(
            origin,
            store,
            policy,
            fill_budget_kib(settings),
            settings.stream_threshold_bytes,
            StaleDefaults {
                while_revalidate: Duration::from_secs(settings.stale_while_revalidate_seconds),
                if_error: Duration::from_secs(settings.stale_if_error_seconds),
            },
            metrics.clone(),
        );
        for (key, meta) in disk.iter().flat_map(DiskStore::variants) {
            front.remember_variant(&key, &meta.headers);
        }
        Ok(EdgeState(Arc::new(EdgeInner {
            region: region.to_string(),
            front,
            metrics,
            tokens: purge_key.map(TokenVerifier::for_purges),
            origin: kind,
            disk,
            max_connections: (
                settings.max_connections,
                settings.max_connections_per_address,
            ),
        })))
    }

    /// Whether this edge has a disk tier.
    pub fn has_disk_tier(&self) -> bool {
        self.0.disk.is_some()
    }

    /// Says the edge has missed no purge since its last run (its purge feed kept
    /// what came meanwhile, and all of it is applied): the copies its disk tier found
    /// at start are served without asking the origin first.
    pub fn purges_caught_up(&self) {
        if let Some(disk) = &self.0.disk {
            disk.trust_recovered();
            tracing::info!("no purge missed while down: copies found on disk are trusted");
        }
    }

    /// The region this edge serves.
    pub fn region(&self) -> &str {
        &self.0.region
    }

    pub(crate) fn front(&self) -> &CacheFront {
        &self.0.front
    }

    pub(crate) fn metrics(&self) -> &EdgeMetrics {
        &self.0.metrics
    }

    /// Server options with this edge's connection limits, counting its open
    /// connections in its metrics.
    pub fn serve_options(&self) -> ServeOptions {
        let (max_connections, max_connections_per_address) = self.0.max_connections;
        ServeOptions {
            max_connections,
            max_connections_per_address,
            open_connections: Some(self.0.metrics.connection_count()),
            sent_without_copying: Some(self.0.metrics.sent_without_copying()),
            // Only the proxy reads it (for `X-Forwarded-For`).
            client_address: self.0.origin == OriginKind::Http,
            ..ServeOptions::default()
        }
    }

    pub(crate) fn tokens(&self) -> Option<&TokenVerifier> {
        self.0.tokens.as_ref()
    }

    /// The cache key a purge of object `name` drops: the name itself in front of the
    /// bucket, the path `/name` in front of an HTTP origin.
    pub(crate) fn purge_key(&self, name: &ObjectName) -> String {
        self.purge_prefix(name.as_str())
    }

    /// The start of the cache keys of objects whose names start with `prefix`.
    pub(crate) fn purge_prefix(&self, prefix: &str) -> String {
        match self.0.origin {
            OriginKind::Bucket => prefix.to_string(),
            OriginKind::Http => format!("/{prefix}"),
        }
    }
}

fn fill_budget_kib(settings: &EdgeSettings) -> usize {
    let bytes = FILL_BUDGET_BYTES
        .min(settings.cache_bytes)
        .max(settings.stream_threshold_bytes.min(settings.cache_bytes));
    usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(1)
}

/// The edge's HTTP service: its own paths, then objects (bucket) or everything else
/// (HTTP origin).
pub fn service(state: EdgeState) -> EdgeService {
    let own = Router::new()
        .route(HEALTH_PATH, get(serve::health))
        .route(meridian_shared::api::PURGE_PATH, post(purge::purge))
        .route(METRICS_PATH, get(serve::metrics))
        .with_state(state.clone());
    EdgeService::new(state, own, OWN_PATHS)
}

const HEALTH_PATH: &str = "/healthz";

/// The paths of the edge's own endpoints, answered by its router.
const OWN_PATHS: [&str; 3] = [HEALTH_PATH, meridian_shared::api::PURGE_PATH, METRICS_PATH];

/// Serves an edge on `listener` (HTTPS when `tls` is given) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let options = state.serve_options();
    run_with_options(listener, tls, state, options, shutdown).await
}

/// [`run`] with `options` instead of the edge's own: its service, with its quick lane
/// in front.
pub async fn run_with_options(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    state: EdgeState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let quick = EdgeQuickLane::new(state.clone());
    server::serve_with_quick_lane(
        listener,
        service(state),
        Some(quick),
        tls,
        options,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_takes_the_connection_limits_from_the_settings() {
        let settings = EdgeSettings {
            max_connections: 100,
            max_connections_per_address: 7,
            ..EdgeSettings::default()
        };
        let key = meridian_shared::auth::PurgeSigningKey::generate().expect("key");
        let bucket = Arc::new(meridian_shared::storage::MemoryBucket::new("b-test"));
        let edge = EdgeState::new("r", bucket, &settings, key.public_key()).expect("edge");
        let options = edge.serve_options();
        assert_eq!(
            (options.max_connections, options.max_connections_per_address),
            (100, 7)
        );
        assert!(options.open_connections.is_some());
    }

    #[test]
    fn fill_budget_is_bounded_by_the_cache_and_covers_one_object() {
        let mut settings = EdgeSettings::default();
        assert_eq!(fill_budget_kib(&settings), 64 * 1024);
        settings.cache_bytes = 1024 * 1024;
        assert_eq!(
            fill_budget_kib(&settings),
            1024,
            "never more than the cache"
        );
        settings.cache_bytes = 1 << 30;
        settings.stream_threshold_bytes = 100 * 1024 * 1024;
        assert_eq!(
            fill_budget_kib(&settings),
            100 * 1024,
            "room for one largest fill"
        );
    }
}
