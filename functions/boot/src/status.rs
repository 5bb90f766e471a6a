//! `GET /v1/status` (JSON) and `GET /status` (a page): every region on a world map,
//! each edge's health, last probe and latency, and boot's routing counters. The page is
//! rendered here, whole, with an inline SVG map and no external assets, so it works
//! wherever boot can be reached; it reloads itself every 5 s.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use meridian_shared::api::{EdgeStatus, RegionStatus, RoutingCounters, StatusResponse};

use crate::BootState;

/// Counters of what boot answered.
#[derive(Debug, Default)]
pub struct Routing {
    pub(crate) edge_lists: AtomicU64,
    pub(crate) redirects: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Routing {
    fn snapshot(&self) -> RoutingCounters {
        RoutingCounters {
            edge_lists: self.edge_lists.load(Ordering::Relaxed),
            redirects: self.redirects.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// Counts one answer of `counter`'s kind.
pub(crate) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl BootState {
    /// What the status page shows.
    pub fn status(&self) -> StatusResponse {
        let regions = self
            .directory
            .known_regions()
            .into_iter()
            .map(|region| RegionStatus {
                edges: region
                    .edges
                    .iter()
                    .map(|url| {
                        let health = self.health.of(url);
                        EdgeStatus {
                            url: url.clone(),
                            live: health.live,
                            last_probe_unix_ms: health.last_probe_unix_ms,
                            latency_ms: health.latency_ms,
                            last_error: health.last_error,
                        }
                    })
                    .collect(),
                name: region.name,
                city: region.city,
                lat: region.lat,
                lon: region.lon,
            })
            .collect();
        StatusResponse {
            probing: self.probing,
            regions,
            routing: self.routing.snapshot(),
        }
    }
}

/// `GET /v1/status`.
pub async fn status_json(State(state): State<BootState>) -> Json<StatusResponse> {
    Json(state.status())
}

/// `GET /status`.
pub async fn status_page(State(state): State<BootState>) -> Html<String> {
    Html(render(&state.status()))
}

/// Map size in SVG units: 2 per degree, equirectangular.
const MAP_WIDTH: f64 = 720.0;
const MAP_HEIGHT: f64 = 360.0;

/// Very coarse continent outlines, (lon, lat) in degrees: enough to place regions.
const CONTINENTS: &[&[(f64, f64)]] = &[
    // North America
    &[
        (-168.0, 66.0),
        (-140.0, 70.0),
        (-95.0, 72.0),
        (-80.0, 63.0),
        (-60.0, 55.0),
        (-52.0, 47.0),
        (-66.0, 44.0),
        (-75.0, 35.0),
        (-81.0, 25.0),
        (-97.0, 26.0),
        (-95.0, 16.0),
        (-83.0, 9.0),
        (-78.0, 8.0),
        (-87.0, 14.0),
        (-105.0, 22.0),
        (-112.0, 30.0),
        (-118.0, 33.0),
        (-124.0, 40.0),
        (-124.0, 48.0),
        (-133.0, 56.0),
        (-150.0, 60.0),
        (-165.0, 60.0),
    ],
    // South America
    &[
        (-78.0, 8.0),
        (-60.0, 10.0),
        (-50.0, 0.0),
        (-35.0, -6.0),
        (-39.0, -15.0),
        (-48.0, -26.0),
        (-58.0, -35.0),
        (-65.0, -42.0),
        (-70.0, -54.0),
        (-75.0, -48.0),
        (-72.0, -30.0),
        (-70.0, -18.0),
        (-81.0, -6.0),
        (-80.0, 0.0),
    ],
    // Europe
    &[
        (-10.0, 36.0),
        (-9.0, 43.0),
        (-2.0, 44.0),
        (-5.0, 48.0),
        (2.0, 51.0),
        (8.0, 54.0),
        (10.0, 58.0),
        (5.0, 62.0),
        (15.0, 69.0),
        (28.0, 71.0),
        (40.0, 67.0),
        (40.0, 50.0),
        (30.0, 46.0),
        (28.0, 41.0),
        (22.0, 37.0),
        (15.0, 38.0),
        (12.0, 44.0),
        (5.0, 43.0),
        (-5.0, 36.0),
    ],
    // Africa
    &[
        (-17.0, 15.0),
        (-17.0, 21.0),
        (-6.0, 36.0),
        (10.0, 37.0),
        (20.0, 32.0),
        (32.0, 31.0),
        (34.0, 28.0),
        (43.0, 12.0),
        (51.0, 11.0),
        (40.0, -2.0),
        (40.0, -15.0),
        (33.0, -26.0),
        (20.0, -35.0),
        (15.0, -28.0),
        (12.0, -17.0),
        (9.0, -1.0),
        (8.0, 4.0),
        (-8.0, 4.0),
        (-13.0, 8.0),
    ],
    // Asia
    &[
        (28.0, 41.0),
        (36.0, 36.0),
        (35.0, 30.0),
        (43.0, 13.0),
        (52.0, 17.0),
        (58.0, 23.0),
        (67.0, 25.0),
        (73.0, 18.0),
        (77.0, 8.0),
        (80.0, 15.0),
        (88.0, 22.0),
        (92.0, 21.0),
        (98.0, 16.0),
        (100.0, 3.0),
        (104.0, 10.0),
        (109.0, 20.0),
        (120.0, 30.0),
        (122.0, 40.0),
        (128.0, 35.0),
        (130.0, 43.0),
        (140.0, 48.0),
        (142.0, 55.0),
        (160.0, 60.0),
        (180.0, 67.0),
        (180.0, 72.0),
        (140.0, 74.0),
        (110.0, 77.0),
        (80.0, 73.0),
        (60.0, 70.0),
        (40.0, 67.0),
        (40.0, 50.0),
        (30.0, 46.0),
    ],
    // Australia
    &[
        (114.0, -22.0),
        (122.0, -18.0),
        (131.0, -12.0),
        (137.0, -12.0),
        (142.0, -11.0),
        (146.0, -19.0),
        (153.0, -26.0),
        (150.0, -37.0),
        (141.0, -38.0),
        (135.0, -35.0),
        (129.0, -32.0),
        (115.0, -34.0),
    ],
    // Japan
    &[
        (130.0, 31.0),
        (133.0, 34.0),
        (140.0, 36.0),
        (142.0, 40.0),
        (141.0, 45.0),
        (145.0, 44.0),
        (140.0, 42.0),
        (138.0, 37.0),
        (131.0, 33.0),
    ],
];

fn project(lon: f64, lat: f64) -> (f64, f64) {
    (
        (lon + 180.0) / 360.0 * MAP_WIDTH,
        (90.0 - lat) / 180.0 * MAP_HEIGHT,
    )
}

use meridian_shared::markup::escape;

/// A region's state on the map: some edge live, all down, or none known.
fn region_state(region: &RegionStatus) -> &'static str {
    if region.edges.is_empty() {
        "empty"
    } else if region.edges.iter().any(|e| e.live) {
        "live"
    } else {
        "down"
    }
}

/// The whole page.
fn render(status: &StatusResponse) -> String {
    let mut page = String::new();
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Meridian status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
svg {{ width: 100%; max-width: 960px; background: #eef4fb; border-radius: 6px; }}
.land {{ fill: #d5dde6; stroke: #b8c4d0; }}
.region.live {{ fill: #2e9d4f; }} .region.down {{ fill: #d33; }} .region.empty {{ fill: #999; }}
.label {{ font-size: 9px; fill: #333; }}
table {{ border-collapse: collapse; margin-top: 1.5em; }}
td, th {{ padding: 0.25em 0.8em; text-align: left; border-bottom: 1px solid #ddd; }}
.live {{ color: #2e9d4f; }} .down {{ color: #d33; }}
</style></head><body>
<h1>Meridian status</h1>
<svg id="map" viewBox="0 0 {MAP_WIDTH} {MAP_HEIGHT}" role="img" aria-label="Regions on a world map">
"#
    );
    for outline in CONTINENTS {
        let points: Vec<String> = outline
            .iter()
            .map(|&(lon, lat)| {
                let (x, y) = project(lon, lat);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            page,
            r#"<polygon class="land" points="{}"/>"#,
            points.join(" ")
        );
    }
    for region in &status.regions {
        let (x, y) = project(region.lon, region.lat);
        let state = region_state(region);
        let live = region.edges.iter().filter(|e| e.live).count();
        let _ = writeln!(
            page,
            r#"<circle class="region {state}" data-region="{name}" data-live-edges="{live}" data-edges="{total}" cx="{x:.1}" cy="{y:.1}" r="6"><title>{name} ({city}): {live} of {total} edges live</title></circle><text class="label" x="{lx:.1}" y="{y:.1}">{city}</text>"#,
            name = escape(&region.name),
            city = escape(&region.city),
            total = region.edges.len(),
            lx = x + 8.0,
        );
    }
    page.push_str("</svg>\n");
    let probing = if status.probing {
        "Edges are probed for health; only live ones are in answers."
    } else {
        "Health probes are off: every known edge counts as live."
    };
    let _ = writeln!(page, "<p>{probing}</p>");
    page.push_str(
        "<table id=\"edges\"><tr><th>region</th><th>edge</th><th>health</th><th>last probe</th><th>latency</th><th>last error</th></tr>\n",
    );
    for region in &status.regions {
        for edge in &region.edges {
            let (class, health) = if edge.live {
                ("live", "live")
            } else {
                ("down", "down")
            };
            let last_probe = edge
                .last_probe_unix_ms
                .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
                .map_or("never".to_string(), |t| {
                    t.format("%H:%M:%S%.3f UTC").to_string()
                });
            let latency = edge
                .latency_ms
                .map_or(String::new(), |ms| format!("{ms:.1} ms"));
            let _ = writeln!(
                page,
                r#"<tr class="edge" data-url="{url}" data-live="{live}"><td>{region}</td><td>{url}</td><td class="{class}">{health}</td><td>{last_probe}</td><td>{latency}</td><td>{error}</td></tr>"#,
                url = escape(&edge.url),
                live = edge.live,
                region = escape(&region.name),
                error = escape(edge.last_error.as_deref().unwrap_or("")),
            );
        }
    }
    page.push_str("</table>\n");
    let routing = &status.routing;
    let _ = writeln!(
        page,
        r#"<p id="routing">Since boot started: {} edge lists, {} redirects, {} refused.</p>
<p><a href="/v1/status">The same as JSON</a></p></body></html>"#,
        routing.edge_lists, routing.redirects, routing.refused
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_is_equirectangular() {
        assert_eq!(project(-180.0, 90.0), (0.0, 0.0));
        assert_eq!(project(0.0, 0.0), (MAP_WIDTH / 2.0, MAP_HEIGHT / 2.0));
        assert_eq!(project(180.0, -90.0), (MAP_WIDTH, MAP_HEIGHT));
    }
}
