//! The region catalog: where each region is, which bucket it serves from, and which
//! edges it has; plus great-circle ordering of regions from a client's location.

use serde::{Deserialize, Serialize};

/// One region of the CDN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region name, e.g. `europe-west2`.
    pub name: String,
    /// Human-readable city, e.g. `London`. Default: empty.
    #[serde(default)]
    pub city: String,
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
    /// The bucket this region's edges serve from. For the main region this is the
    /// main bucket. Default: `meridian-<name>`.
    #[serde(default)]
    pub bucket: String,
    /// Base URLs of this region's edges, e.g. `https://127.0.0.1:7080`. Default: none.
    #[serde(default)]
    pub edges: Vec<String>,
}

/// A point on Earth in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

impl Location {
    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(&self, other: &Location) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }

    /// Whether both coordinates are finite and inside their ranges.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}

impl Region {
    /// This region's location.
    pub fn location(&self) -> Location {
        Location {
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// The ten regions Meridian ships with (DESIGN.md), without edges.
pub fn default_catalog() -> Vec<Region> {
    const CATALOG: [(&str, &str, f64, f64); 10] = [
        ("europe-southwest1", "Madrid", 40.4165, -3.7026),
        ("europe-west2", "London", 51.5085, -0.1257),
        ("europe-west3", "Frankfurt", 50.1155, 8.6842),
        ("us-central1", "Iowa", 41.2619, -95.8608),
        ("us-east1", "South Carolina", 32.9336, -80.1026),
        ("us-west1", "Oregon", 45.5946, -121.1787),
        ("southamerica-east1", "São Paulo", -23.5475, -46.6361),
        ("australia-southeast1", "Sydney", -33.8678, 151.2073),
        ("asia-south1", "Mumbai", 19.0728, 72.8826),
        ("asia-northeast1", "Tokyo", 35.6940, 139.7536),
    ];
    CATALOG
        .iter()
        .map(|&(name, city, lat, lon)| Region {
            name: name.to_string(),
            city: city.to_string(),
            lat,
            lon,
            bucket: default_bucket_name(name),
            edges: Vec::new(),
        })
        .collect()
}

/// The bucket name a region gets when the configuration names none.
pub fn default_bucket_name(region: &str) -> String {
    format!("meridian-{region}")
}

/// Regions ordered nearest first from `from`; ties keep catalog order.
pub fn by_distance<'a>(regions: &'a [Region], from: &Location) -> Vec<&'a Region> {
    let mut ordered: Vec<(f64, &Region)> = regions
        .iter()
        .map(|r| (from.distance_km(&r.location()), r))
        .collect();
    ordered.sort_by(|a, b| a.0.total_cmp(&b.0));
    ordered.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_ten_regions_with_madrid_first() {
        let catalog = default_catalog();
        assert_eq!(catalog.len(), 10);
        assert_eq!(catalog[0].name, "europe-southwest1");
        assert_eq!(catalog[0].bucket, "meridian-europe-southwest1");
    }

    #[test]
    fn london_to_frankfurt_is_about_640_km() {
        let london = Location {
            lat: 51.5085,
            lon: -0.1257,
        };
        let frankfurt = Location {
            lat: 50.1155,
            lon: 8.6842,
        };
        let d = london.distance_km(&frankfurt);
        assert!((630.0..650.0).contains(&d), "{d}");
    }

    #[test]
    fn paris_orders_london_then_frankfurt_then_madrid() {
        let catalog = default_catalog();
        let paris = Location {
            lat: 48.8566,
            lon: 2.3522,
        };
        let names: Vec<_> = by_distance(&catalog, &paris)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            &names[..3],
            ["europe-west2", "europe-west3", "europe-southwest1"]
        );
    }

    #[test]
    fn invalid_locations_are_rejected() {
        assert!(
            !Location {
                lat: 91.0,
                lon: 0.0
            }
            .is_valid()
        );
        assert!(
            !Location {
                lat: 0.0,
                lon: f64::NAN
            }
            .is_valid()
        );
        assert!(
            Location {
                lat: -90.0,
                lon: 180.0
            }
            .is_valid()
        );
    }
}
