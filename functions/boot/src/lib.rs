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

mod locate;
mod pick;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use meridian_shared::Config;
use meridian_shared::regions::Location;

pub use locate::LocationQuery;
pub use meridian_shared::api::{ClientLocation, EdgeEntry, EdgesResponse, LocationSource};
pub use pick::EdgePicker;

/// Shared state of the boot service.
#[derive(Clone)]
pub struct BootState {
    picker: Arc<EdgePicker>,
    default_location: Location,
    ttl_seconds: u64,
}

impl BootState {
    /// State for the regions and boot settings of `config`.
    pub fn new(config: &Config) -> BootState {
        BootState {
            picker: Arc::new(EdgePicker::new(
                config.regions.clone(),
                config.boot.fallback_regions,
            )),
            default_location: config.boot.default_location,
            ttl_seconds: config.boot.ttl_seconds,
        }
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
    let mut edges = state.picker.pick(&location);
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
