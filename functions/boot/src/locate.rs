//! Where the client is, in this order (`boot.location`):
//!
//! 1. a header a trusted load balancer sets (`lat,long`), believed only when the peer is
//!    one of `trusted_proxies`;
//! 2. a GeoIP lookup of the client's address: the peer, or, when the peer is a trusted
//!    proxy, the last `X-Forwarded-For` entry that is not one of theirs (earlier
//!    entries are whatever the client wrote, never used);
//! 3. explicit `lat`/`lon` query parameters;
//! 4. the configured default.
//!
//! Everything is answered from memory: the databases are read at start, and nothing on
//! the request path calls out of the process.

use std::net::IpAddr;
use std::path::PathBuf;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use meridian_shared::Error;
use meridian_shared::api::LocationSource;
use meridian_shared::config::LocationSettings;
use meridian_shared::regions::Location;
use serde::Deserialize;

/// Locates clients.
pub struct Locator {
    header: Option<HeaderName>,
    trusted: Vec<IpNet>,
    databases: Vec<(PathBuf, maxminddb::Reader<Vec<u8>>)>,
    default: Location,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("header", &self.header)
            .field("trusted", &self.trusted)
            .field(
                "databases",
                &self.databases.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A database record's coordinates: GeoIP2 City (`location.latitude`, doubles) or
/// DB-IP's flat layout from ip-location-db (`latitude`, single-precision floats).
#[derive(Debug, Deserialize)]
struct CityRecord {
    location: Option<Coordinates>,
    #[serde(default, deserialize_with = "degrees")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "degrees")]
    longitude: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Coordinates {
    #[serde(default, deserialize_with = "degrees")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "degrees")]
    longitude: Option<f64>,
}

/// A float of either width: the MMDB decoder gives each only to its own type.
fn degrees<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct Degrees;
    impl serde::de::Visitor<'_> for Degrees {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("degrees as a float or a double")
        }
        fn visit_f32<E>(self, v: f32) -> Result<Self::Value, E> {
            Ok(Some(f64::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
    }
    deserializer.deserialize_any(Degrees)
}

impl CityRecord {
    fn location(&self) -> Option<Location> {
        let (lat, lon) = match &self.location {
            Some(c) => (c.latitude?, c.longitude?),
            None => (self.latitude?, self.longitude?),
        };
        let location = Location { lat, lon };
        location.is_valid().then_some(location)
    }
}

impl Locator {
    /// A locator for `settings` (validated by the config), reading its databases now.
    /// Without a database it says so once and places clients by the other means.
    pub fn new(settings: &LocationSettings, default: Location) -> Result<Locator, Error> {
        let mut databases = Vec::new();
        for path in &settings.geoip_databases {
            let reader = maxminddb::Reader::open_readfile(path).map_err(|e| {
                Error::Config(format!(
                    "boot.location.geoip_databases: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            tracing::info!(database = %path.display(), kind = %reader.metadata().database_type, "GeoIP database loaded");
            databases.push((path.clone(), reader));
        }
        if databases.is_empty() {
            tracing::info!(
                "no GeoIP database (boot.location.geoip_databases): clients are placed by the trusted header, lat/lon, or the default location"
            );
        }
        Ok(Locator {
            header: settings
                .header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            trusted: settings
                .trusted_proxies
                .iter()
                .filter_map(|n| meridian_shared::config::parse_network(n).ok())
                .collect(),
            databases,
            default,
        })
    }

    /// Where the client of a request is, and how that was learnt. Bad `lat`/`lon` is an
    /// error whatever else is known.
    pub fn locate(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        query: &LocationQuery,
    ) -> Result<(Location, LocationSource), Error> {
        let explicit = query.explicit()?;
        let from_proxy = self.is_trusted(peer);
        if from_proxy && let Some(location) = self.header_location(headers) {
            return Ok((location, LocationSource::Header));
        }
        if let Some(location) = self
            .client_address(peer, from_proxy, headers)
            .and_then(|client| self.database_location(client))
        {
            return Ok((location, LocationSource::Geoip));
        }
        Ok(match explicit {
            Some(location) => (location, LocationSource::Query),
            None => (self.default, LocationSource::Default),
        })
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.trusted
            .iter()
            .any(|network| network.contains(&address))
    }

    fn header_location(&self, headers: &HeaderMap) -> Option<Location> {
        let value = headers.get(self.header.as_ref()?)?.to_str().ok()?;
        let (lat, lon) = value.split_once(',')?;
        let location = Location {
            lat: lat.trim().parse().ok()?,
            lon: lon.trim().parse().ok()?,
        };
        location.is_valid().then_some(location)
    }

    /// The client's address: the peer, unless the peer is a trusted proxy; then the
    /// nearest `X-Forwarded-For` entry that is not a trusted proxy.
    fn client_address(
        &self,
        peer: IpAddr,
        from_proxy: bool,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        if !from_proxy {
            return Some(canonical(peer));
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .map(canonical)
            .find(|address| !self.is_trusted(*address))
    }

    fn database_location(&self, client: IpAddr) -> Option<Location> {
        self.databases.iter().find_map(|(path, reader)| {
            match reader.lookup(client).and_then(|found| found.decode::<CityRecord>()) {
                Ok(record) => record.and_then(|r| r.location()),
                Err(e) => {
                    tracing::debug!(database = %path.display(), %client, cause = %e, "GeoIP lookup failed");
                    None
                }
            }
        })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from dual-stack sockets) as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The query parameters of `GET /v1/edges`, kept as text so errors can name the field.
#[derive(Debug, Default, Deserialize)]
pub struct LocationQuery {
    /// Latitude in degrees.
    pub lat: Option<String>,
    /// Longitude in degrees.
    pub lon: Option<String>,
    /// At most this many edges (1–100).
    pub count: Option<String>,
}

impl LocationQuery {
    /// The location the client gave, if any.
    pub fn explicit(&self) -> Result<Option<Location>, Error> {
        match (&self.lat, &self.lon) {
            (None, None) => Ok(None),
            (Some(lat), Some(lon)) => {
                let lat = parse_degrees("lat", lat, 90.0)?;
                let lon = parse_degrees("lon", lon, 180.0)?;
                Ok(Some(Location { lat, lon }))
            }
            _ => Err(Error::BadRequest(
                "lat and lon must be given together".into(),
            )),
        }
    }

    /// The requested number of edges, if any.
    pub fn count(&self) -> Result<Option<usize>, Error> {
        self.count
            .as_deref()
            .map(|text| {
                text.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!("count: {text:?} is not a number from 1 to 100"))
                    })
            })
            .transpose()
    }
}

fn parse_degrees(field: &str, text: &str, limit: f64) -> Result<f64, Error> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (-limit..=limit).contains(v))
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "{field}: {text:?} is not a number from -{limit} to {limit}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADRID: Location = Location {
        lat: 40.4165,
        lon: -3.7026,
    };

    fn query(lat: Option<&str>, lon: Option<&str>) -> LocationQuery {
        LocationQuery {
            lat: lat.map(Into::into),
            lon: lon.map(Into::into),
            count: None,
        }
    }

    fn locator(settings: LocationSettings) -> Locator {
        Locator::new(&settings, MADRID).expect("locator")
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));

    #[test]
    fn no_location_means_the_default() {
        let located = locator(LocationSettings::default())
            .locate(CLIENT, &HeaderMap::new(), &query(None, None))
            .expect("ok");
        assert_eq!(located, (MADRID, LocationSource::Default));
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let locator = locator(LocationSettings {
            header: Some("x-client-geo".into()),
            trusted_proxies: vec!["10.0.0.0/8".into()],
            ..LocationSettings::default()
        });
        let mut headers = HeaderMap::new();
        headers.insert("x-client-geo", "35.68,139.69".parse().expect("value"));
        let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
        let tokyo = Location {
            lat: 35.68,
            lon: 139.69,
        };
        assert_eq!(
            locator
                .locate(proxy, &headers, &query(Some("1"), Some("2")))
                .expect("ok"),
            (tokyo, LocationSource::Header),
            "before lat/lon"
        );
        assert_eq!(
            locator
                .locate(CLIENT, &headers, &query(None, None))
                .expect("ok"),
            (MADRID, LocationSource::Default),
            "forged by the client"
        );
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(
            locator
                .locate(mapped, &headers, &query(None, None))
                .expect("ok")
                .1,
            LocationSource::Header,
            "an IPv4 proxy seen on a dual-stack socket"
        );
        headers.insert("x-client-geo", "north,pole".parse().expect("value"));
        assert_eq!(
            locator
                .locate(proxy, &headers, &query(None, None))
                .expect("ok")
                .1,
            LocationSource::Default,
            "an unreadable header is passed over"
        );
    }

    #[test]
    fn the_client_address_comes_through_trusted_proxies_only() {
        let locator = locator(LocationSettings {
            trusted_proxies: vec!["10.0.0.0/8".into(), "192.168.1.1".into()],
            ..LocationSettings::default()
        });
        let forwarded = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().expect("value"));
            headers
        };
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let client =
            |peer, value| locator.client_address(peer, locator.is_trusted(peer), &forwarded(value));
        assert_eq!(
            client(proxy, "1.2.3.4, 198.51.100.7, 192.168.1.1"),
            Some("198.51.100.7".parse().expect("ip")),
            "the nearest untrusted entry, not the client-written first one"
        );
        assert_eq!(
            client(CLIENT, "198.51.100.7"),
            Some(CLIENT),
            "an untrusted peer's X-Forwarded-For is ignored"
        );
        assert_eq!(client(proxy, "10.0.0.2"), None, "only proxies");
    }

    #[test]
    fn bad_coordinates_name_the_field() {
        let locator = locator(LocationSettings::default());
        let err = |q: LocationQuery| {
            locator
                .locate(CLIENT, &HeaderMap::new(), &q)
                .expect_err("refused")
                .to_string()
        };
        assert!(err(query(Some("91"), Some("0"))).starts_with("lat"));
        assert!(err(query(Some("0"), Some("east"))).starts_with("lon"));
        assert!(err(query(Some("NaN"), Some("0"))).starts_with("lat"));
        assert!(err(query(Some("0"), None)).contains("together"));
    }

    #[test]
    fn count_is_bounded() {
        let with = |c: &str| {
            LocationQuery {
                count: Some(c.into()),
                ..Default::default()
            }
            .count()
        };
        assert_eq!(with("3").expect("ok"), Some(3));
        assert!(with("0").is_err());
        assert!(with("101").is_err());
    }
}
