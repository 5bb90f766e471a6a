//! boot: tells a client which edges to try, nearest first.
//!
//! Regions are ordered by great-circle distance from the client. The nearest region
//! that has edges contributes all of them, rotated round-robin across calls so load
//! spreads; the next `fallback_regions` regions contribute one edge each.
//!
//! Only live edges are in answers: boot probes every edge's `/healthz` in the
//! background (`boot.health`), and a region whose edges are all down gives way to the
//! next. `GET /r/{object}` answers with a redirect to the chosen edge's copy, so
//! browsers and curl use the CDN without Meridian's client.
//!
//! # Layout
//! - `locate`: where the client is (explicit lat/lon, or the configured default).
//! - `pick`: ordering regions and rotating edges.
//! - `directory`: the known edges less the dead ones, swapped whole on a change.
//! - `discovery`: the known edges from the Compute Engine API.
//! - `health`: probing edges.
//! - `status`: the status page and its JSON.
//! - this file: the router and the response shape.

mod directory;
mod discovery;
mod health;
mod locate;
mod pick;
mod status;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use meridian_shared::Config;
use meridian_shared::config::DiscoverySource;

pub use directory::EdgeDirectory;
pub use discovery::ComputeDiscovery;
pub use health::{EdgeHealth, HealthBoard};
pub use locate::{LocationQuery, Locator};
pub use meridian_shared::api::{ClientLocation, EdgeEntry, EdgesResponse, LocationSource};
pub use pick::EdgePicker;

/// Shared state of the boot service.
#[derive(Clone)]
pub struct BootState {
    directory: Arc<EdgeDirectory>,
    health: Arc<HealthBoard>,
    /// Whether `health` is being filled by probes.
    probing: bool,
    routing: Arc<status::Routing>,
    locator: Arc<Locator>,
    ttl_seconds: u64,
    /// Discovery refresh and health probes, stopped when the last clone of the state
    /// goes.
    _tasks: Vec<Arc<BackgroundTask>>,
}

struct BackgroundTask(tokio::task::JoinHandle<()>);

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl BootState {
    /// State answering with the edges listed in `config`'s regions, unprobed, placing
    /// clients as `boot.location` says (its GeoIP databases are read now).
    pub fn new(config: &Config) -> meridian_shared::Result<BootState> {
        Ok(BootState {
            directory: Arc::new(EdgeDirectory::new(
                config.regions.clone(),
                config.boot.fallback_regions,
            )),
            health: Arc::new(HealthBoard::default()),
            probing: false,
            routing: Arc::default(),
            locator: Arc::new(Locator::new(
                &config.boot.location,
                config.boot.default_location,
            )?),
            ttl_seconds: config.boot.ttl_seconds,
            _tasks: Vec::new(),
        })
    }

    /// State for `config`: with Compute Engine discovery, its edges are the running
    /// edge instances, refreshed in the background; otherwise the edges listed in the
    /// config. With `boot.health.probe`, edges are probed through `http` (which must
    /// trust their certificates). Must run inside a Tokio runtime.
    pub async fn from_config(
        config: &Config,
        http: reqwest::Client,
    ) -> meridian_shared::Result<BootState> {
        let mut state = BootState::new(config)?;
        if config.boot.discovery.source == DiscoverySource::Compute {
            let discovery = ComputeDiscovery::new(&config.boot.discovery, &config.outbound).await?;
            let task = discovery.spawn_refresh(config.regions.clone(), state.directory.clone());
            state._tasks.push(Arc::new(BackgroundTask(task)));
        }
        if config.boot.health.probe {
            let task = health::spawn_probes(
                http,
                config.boot.health.clone(),
                state.directory.clone(),
                state.health.clone(),
            );
            state._tasks.push(Arc::new(BackgroundTask(task)));
            state.probing = true;
        }
        Ok(state)
    }
}

/// The boot router: `GET /v1/edges`, `GET /r/{object}`, `GET /status`,
/// `GET /v1/status`, `GET /healthz`.
pub fn router(state: BootState) -> Router {
    Router::new()
        .route("/v1/edges", get(edges))
        .route("/r/{*object}", get(redirect))
        .route("/status", get(status::status_page))
        .route("/v1/status", get(status::status_json))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The peer's address, when the server recorded it (it always does; a router driven
/// some other way places every client by lat/lon or the default).
type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

fn peer_address(peer: Peer) -> IpAddr {
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.0.ip())
}

async fn edges(
    State(state): State<BootState>,
    Query(query): Query<LocationQuery>,
    peer: Peer,
    headers: HeaderMap,
) -> meridian_shared::Result<Json<EdgesResponse>> {
    let answer = edge_list(&state, &query, peer_address(peer), &headers);
    status::count(match answer {
        Ok(_) => &state.routing.edge_lists,
        Err(_) => &state.routing.refused,
    });
    answer.map(Json)
}

fn edge_list(
    state: &BootState,
    query: &LocationQuery,
    peer: IpAddr,
    headers: &HeaderMap,
) -> meridian_shared::Result<EdgesResponse> {
    let (location, source) = state.locator.locate(peer, headers, query)?;
    let count = query.count()?;
    let mut edges = state.directory.current().pick(&location);
    if let Some(count) = count {
        edges.truncate(count);
    }
    Ok(EdgesResponse {
        client: ClientLocation {
            lat: location.lat,
            lon: location.lon,
            source,
        },
        edges,
        ttl_seconds: state.ttl_seconds,
    })
}

/// `GET /r/{object}`: 302 to the object on the first edge boot would answer with.
/// `Cache-Control: private`, since the answer depends on who asks and on edge health.
async fn redirect(
    State(state): State<BootState>,
    Query(query): Query<LocationQuery>,
    peer: Peer,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> meridian_shared::Result<axum::response::Response> {
    let answer = redirect_to_edge(&state, &query, peer_address(peer), &headers, &uri);
    status::count(match answer {
        Ok(_) => &state.routing.redirects,
        Err(_) => &state.routing.refused,
    });
    answer
}

fn redirect_to_edge(
    state: &BootState,
    query: &LocationQuery,
    peer: IpAddr,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> meridian_shared::Result<axum::response::Response> {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    // The path as sent (still percent-encoded), checked as an object name once decoded.
    let encoded = uri.path().strip_prefix("/r/").unwrap_or_default();
    meridian_shared::ObjectName::read_path(encoded)?;
    let (location, _) = state.locator.locate(peer, headers, query)?;
    let Some(edge) = state.directory.current().pick(&location).into_iter().next() else {
        return Err(meridian_shared::Error::Unavailable(
            "no edge is live right now".into(),
        ));
    };
    let target = format!("{}/{encoded}", edge.url.trim_end_matches('/'));
    let location = HeaderValue::from_str(&target)
        .map_err(|e| meridian_shared::Error::internal("redirect target", e))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("private")),
        ],
    )
        .into_response())
}
