//! The edge server: serves objects from its region's bucket over HTTPS with a memory
//! cache, and drops objects when the replicator says they changed.
//!
//! - `GET`/`HEAD /{name}`: the object, with Content-Type, Content-Length, ETag,
//!   Last-Modified, Cache-Control, Age and `X-Cache: HIT | MISS | BYPASS`; 304 for a
//!   current conditional, 206/416 for ranges. Concurrent misses share one origin
//!   request, streamed to every client as it arrives.
//! - `POST /_meridian/purge`: drop one object (bearer token, scope `purge`).
//! - `GET /healthz`.
//!
//! # Layout
//! - `front`: the cache front: store, origin and policy, purge floors, fill budget.
//! - `fill`: coalesced misses whose bodies are read as they arrive.
//! - `conditional`: If-None-Match, If-Modified-Since, Range and If-Range.
//! - `directives`: request Cache-Control, and how long copies may be served stale.
//! - `ranged`: cutting ranges (one, or multipart) out of a streaming body.
//! - `origin`: where misses go (the region's bucket).
//! - `policy`: whether and how long a response may be stored.
//! - `store`: where stored responses live (memory, bounded by bytes).
//! - `cache_status`: `X-Cache`.
//! - `serve`: the object handler.
//! - `purge`: the purge handler, and applying a purge however it arrives.
//! - `invalidations`: purges over Pub/Sub, from a subscription of the edge's own.

mod cache_status;
mod conditional;
mod directives;
mod fill;
mod front;
mod invalidations;
mod origin;
mod policy;
mod purge;
mod ranged;
mod serve;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use meridian_shared::Bucket;
use meridian_shared::auth::{PurgePublicKey, TokenVerifier};
use meridian_shared::config::EdgeSettings;
use meridian_shared::server::{self, ServeOptions};
use meridian_shared::tls::TlsConfig;
use tokio::net::TcpListener;

use crate::front::{CacheFront, StaleDefaults};
use crate::origin::BucketOrigin;
use crate::policy::CachePolicy;
use crate::store::MemoryStore;

pub use cache_status::CacheStatus;
pub use invalidations::{InvalidationListener, subscription_id};

/// Shared state of one edge: one `Arc`, so a request clones a pointer, not strings or
/// verifier sets.
#[derive(Clone)]
pub struct EdgeState(Arc<EdgeInner>);

struct EdgeInner {
    region: String,
    front: CacheFront,
    tokens: TokenVerifier,
}

/// In-flight cache fills may buffer at most this much (or one stream threshold, if
/// larger; never more than the cache itself).
const FILL_BUDGET_BYTES: u64 = 64 * 1024 * 1024;

impl EdgeState {
    /// An edge of `region` serving `bucket`, accepting purges signed by the private
    /// half of `purge_key` (the replicator's).
    pub fn new(
        region: &str,
        bucket: Arc<dyn Bucket>,
        settings: &EdgeSettings,
        purge_key: &PurgePublicKey,
    ) -> EdgeState {
        let default_lifetime = Duration::from_secs(settings.default_max_age_seconds);
        let front = CacheFront::new(
            Box::new(BucketOrigin::new(bucket, region, default_lifetime)),
            Box::new(MemoryStore::new(settings.cache_bytes)),
            CachePolicy {
                default_lifetime: Some(default_lifetime),
            },
            fill_budget_kib(settings),
            settings.stream_threshold_bytes,
            StaleDefaults {
                while_revalidate: Duration::from_secs(settings.stale_while_revalidate_seconds),
                if_error: Duration::from_secs(settings.stale_if_error_seconds),
            },
        );
        EdgeState(Arc::new(EdgeInner {
            region: region.to_string(),
            front,
            tokens: TokenVerifier::for_purges(purge_key),
        }))
    }

    /// The region this edge serves.
    pub fn region(&self) -> &str {
        &self.0.region
    }

    pub(crate) fn front(&self) -> &CacheFront {
        &self.0.front
    }

    pub(crate) fn tokens(&self) -> &TokenVerifier {
        &self.0.tokens
    }
}

fn fill_budget_kib(settings: &EdgeSettings) -> usize {
    let bytes = FILL_BUDGET_BYTES
        .min(settings.cache_bytes)
        .max(settings.stream_threshold_bytes.min(settings.cache_bytes));
    usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(1)
}

/// The edge router.
pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(meridian_shared::api::PURGE_PATH, post(purge::purge))
        .route("/{*name}", get(serve::serve_object))
        .with_state(state)
}

/// Serves an edge on `listener` (HTTPS when `tls` is given) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    server::serve(
        listener,
        router(state),
        tls,
        ServeOptions::default(),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

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
