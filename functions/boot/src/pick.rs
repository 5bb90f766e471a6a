//! Choosing edges: regions by distance, edges of the nearest region rotated
//! round-robin, one fallback edge from each of the next regions.

use std::sync::atomic::{AtomicUsize, Ordering};

use meridian_shared::regions::{self, Location, Region};

use crate::EdgeEntry;

/// Picks edges for a location. One rotation cursor per region, advanced on every
/// pick that region leads, so successive clients start on different edges.
#[derive(Debug)]
pub struct EdgePicker {
    regions: Vec<Region>,
    cursors: Vec<AtomicUsize>,
    fallback_regions: usize,
}

impl EdgePicker {
    /// A picker over `regions` (regions without edges are skipped).
    pub fn new(regions: Vec<Region>, fallback_regions: usize) -> EdgePicker {
        let regions: Vec<Region> = regions
            .into_iter()
            .filter(|r| !r.edges.is_empty())
            .collect();
        let cursors = regions.iter().map(|_| AtomicUsize::new(0)).collect();
        EdgePicker {
            regions,
            cursors,
            fallback_regions,
        }
    }

    /// The edges to try from `location`, in order.
    pub fn pick(&self, location: &Location) -> Vec<EdgeEntry> {
        let ordered = regions::by_distance(&self.regions, location);
        let mut picked = Vec::new();
        for (rank, region) in ordered
            .into_iter()
            .take(1 + self.fallback_regions)
            .enumerate()
        {
            let index = self
                .regions
                .iter()
                .position(|r| r.name == region.name)
                .unwrap_or(0);
            let start = self.cursors[index].fetch_add(1, Ordering::Relaxed) % region.edges.len();
            let rotated = region
                .edges
                .iter()
                .cycle()
                .skip(start)
                .take(region.edges.len());
            let take = if rank == 0 { region.edges.len() } else { 1 };
            picked.extend(rotated.take(take).map(|url| EdgeEntry {
                region: region.name.clone(),
                url: url.clone(),
            }));
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, lat: f64, lon: f64, edges: &[&str]) -> Region {
        Region {
            name: name.into(),
            city: String::new(),
            lat,
            lon,
            bucket: format!("b-{name}"),
            edges: edges.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn picker() -> EdgePicker {
        EdgePicker::new(
            vec![
                region("near", 0.0, 0.0, &["n1", "n2", "n3"]),
                region("mid", 0.0, 10.0, &["m1", "m2"]),
                region("empty", 0.0, 15.0, &[]),
                region("far", 0.0, 20.0, &["f1"]),
                region("farthest", 0.0, 30.0, &["x1"]),
            ],
            2,
        )
    }

    fn urls(edges: &[EdgeEntry]) -> Vec<&str> {
        edges.iter().map(|e| e.url.as_str()).collect()
    }

    #[test]
    fn nearest_region_first_then_one_fallback_per_next_region() {
        let edges = picker().pick(&Location { lat: 0.0, lon: 0.0 });
        assert_eq!(urls(&edges), ["n1", "n2", "n3", "m1", "f1"]);
    }

    #[test]
    fn nearest_region_rotates_across_calls() {
        let picker = picker();
        let here = Location {
            lat: 0.0,
            lon: -1.0,
        };
        let firsts: Vec<String> = (0..4).map(|_| picker.pick(&here)[0].url.clone()).collect();
        assert_eq!(firsts, ["n1", "n2", "n3", "n1"]);
    }
}
