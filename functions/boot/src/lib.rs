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
use serde::Serialize;

pub use locate::{LocationQuery, LocationSource};
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

/// The answer to `GET /v1/edges`.
#[derive(Debug, Serialize)]
pub struct EdgesResponse {
    /// Where the client was taken to be.
    pub client: ClientLocation,
    /// Edges to try, in order.
    pub edges: Vec<EdgeEntry>,
    /// How long the client may reuse this answer.
    pub ttl_seconds: u64,
}

/// The client's location and where it came from.
#[derive(Debug, Serialize)]
pub struct ClientLocation {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// `query` or `default`.
    pub source: &'static str,
}

/// One edge to try.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeEntry {
    /// Region name.
    pub region: String,
    /// Base URL of the edge.
    pub url: String,
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
            source: source.as_str(),
        },
        edges,
        ttl_seconds: state.ttl_seconds,
    }))
}
