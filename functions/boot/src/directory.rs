//! The edges boot answers with: the known edges (from the config, or discovered), less
//! those health probes found down. Swapped whole whenever either changes, so a request
//! only clones an `Arc`.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use meridian_shared::regions::Region;

use crate::EdgePicker;

/// Known edges, the ones down, and the picker built from the rest.
#[derive(Debug)]
pub struct EdgeDirectory {
    fallback_regions: usize,
    // A std lock: held only to read or swap, never across an await.
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    known: Vec<Region>,
    down: BTreeSet<String>,
    picker: Arc<EdgePicker>,
}

impl EdgeDirectory {
    /// A directory of `regions`' edges, all taken to be live until probed.
    pub fn new(regions: Vec<Region>, fallback_regions: usize) -> EdgeDirectory {
        EdgeDirectory {
            fallback_regions,
            inner: RwLock::new(Inner {
                picker: Arc::new(EdgePicker::new(regions.clone(), fallback_regions)),
                known: regions,
                down: BTreeSet::new(),
            }),
        }
    }

    /// The picker to answer this request with.
    pub fn current(&self) -> Arc<EdgePicker> {
        self.read().picker.clone()
    }

    /// Every known edge's URL.
    pub fn known_edges(&self) -> Vec<String> {
        self.read()
            .known
            .iter()
            .flat_map(|r| r.edges.iter().cloned())
            .collect()
    }

    /// The regions with their known edges (live or not).
    pub fn known_regions(&self) -> Vec<Region> {
        self.read().known.clone()
    }

    /// Replaces the known edges (a discovery refresh).
    pub fn set_known(&self, regions: Vec<Region>) {
        let mut inner = self.write();
        if inner.known != regions {
            inner.known = regions;
            self.rebuild(&mut inner);
        }
    }

    /// Replaces the set of edges (URLs) that are down.
    pub fn set_down(&self, down: BTreeSet<String>) {
        let mut inner = self.write();
        if inner.down != down {
            inner.down = down;
            self.rebuild(&mut inner);
        }
    }

    fn rebuild(&self, inner: &mut Inner) {
        let live = inner
            .known
            .iter()
            .map(|region| Region {
                edges: region
                    .edges
                    .iter()
                    .filter(|edge| !inner.down.contains(*edge))
                    .cloned()
                    .collect(),
                ..region.clone()
            })
            .collect();
        inner.picker = Arc::new(EdgePicker::new(live, self.fallback_regions));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::regions::Location;

    fn region(name: &str, lon: f64, edges: &[&str]) -> Region {
        Region {
            name: name.into(),
            city: String::new(),
            lat: 0.0,
            lon,
            bucket: format!("b-{name}"),
            edges: edges.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn down_edges_leave_answers_and_a_region_all_down_gives_way_to_the_next() {
        let directory = EdgeDirectory::new(
            vec![
                region("near", 0.0, &["n1", "n2"]),
                region("far", 10.0, &["f1"]),
            ],
            1,
        );
        let here = Location { lat: 0.0, lon: 0.0 };
        let urls = |d: &EdgeDirectory| -> Vec<String> {
            d.current().pick(&here).into_iter().map(|e| e.url).collect()
        };
        assert_eq!(urls(&directory), ["n1", "n2", "f1"]);
        directory.set_down(BTreeSet::from(["n1".to_string()]));
        assert_eq!(urls(&directory), ["n2", "f1"]);
        directory.set_down(BTreeSet::from(["n1".to_string(), "n2".to_string()]));
        assert_eq!(urls(&directory), ["f1"], "the next region serves");
        directory.set_down(BTreeSet::new());
        assert_eq!(urls(&directory), ["n1", "n2", "f1"]);
        assert_eq!(directory.known_edges().len(), 3);
    }
}
