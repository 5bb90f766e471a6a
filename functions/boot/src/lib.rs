//! boot: tells a client which edges to try, nearest first.
//!
//! Regions are ordered by great-circle distance from the client. The nearest region
//! that has edges contributes all of them, rotated round-robin across calls so load
//! spreads; the next `fallback_regions` regions contribute one edge each.
//!
//! # Layout
//! - `locate`: where the client is (explicit lat/lon, or the configured default).
//! - `pick`: ordering regions and rotating edges.
//! - this file: the router and the response shape.

mod discovery;
mod locate;
mod pick;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use meridian_shared::Config;
use meridian_shared::config::DiscoverySource;
use meridian_shared::regions::Location;

pub use discovery::{ComputeDiscovery, EdgeDirectory};
pub use locate::LocationQuery;
pub use meridian_shared::api::{ClientLocation, EdgeEntry, EdgesResponse, LocationSource};
pub use pick::EdgePicker;

/// Shared state of the boot service.
#[derive(Clone)]
pub struct BootState {
    directory: Arc<EdgeDirectory>,
    default_location: Location,
    ttl_seconds: u64,
    /// The discovery refresh, stopped when the last clone of the state goes.
    _refresh: Option<Arc<RefreshTask>>,
}

struct RefreshTask(tokio::task::JoinHandle<()>);

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BootState {
    /// State answering with the edges listed in `config`'s regions.
    pub fn new(config: &Config) -> BootState {
        BootState {
            directory: Arc::new(EdgeDirectory::new(EdgePicker::new(
                config.regions.clone(),
                config.boot.fallback_regions,
            ))),
            default_location: config.boot.default_location,
            ttl_seconds: config.boot.ttl_seconds,
            _refresh: None,
        }
    }

    /// State for `config`: with Compute Engine discovery, its edges are the running
    /// edge instances, refreshed in the background (must run inside a Tokio runtime);
    /// otherwise the edges listed in the config.
    pub async fn from_config(config: &Config) -> meridian_shared::Result<BootState> {
        let mut state = BootState::new(config);
        if config.boot.discovery.source == DiscoverySource::Compute {
            let discovery = ComputeDiscovery::new(&config.boot.discovery, &config.outbound).await?;
            let task = discovery.spawn_refresh(
                config.regions.clone(),
                config.boot.fallback_regions,
                state.directory.clone(),
            );
            state._refresh = Some(Arc::new(RefreshTask(task)));
        }
        Ok(state)
    }
}

/// The boot router: `GET /v1/edges`, `GET /healthz`.
pub fn router(state: BootState) -> Router {
    Router::new()
        .route("/v1/edges", get(edges))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn edges(
    State(state): State<BootState>,
    Query(query): Query<LocationQuery>,
) -> meridian_shared::Result<Json<EdgesResponse>> {
    let (location, source) = query.resolve(state.default_location)?;
    let count = query.count()?;
    let mut edges = state.directory.current().pick(&location);
    if let Some(count) = count {
        edges.truncate(count);
    }
    Ok(Json(EdgesResponse {
        client: ClientLocation {
            lat: location.lat,
            lon: location.lon,
            source,
        },
        edges,
        ttl_seconds: state.ttl_seconds,
    }))
}
