//! Where the client is: explicit `lat`/`lon` query parameters, or the configured
//! default location. (Trusted load-balancer headers and GeoIP come with a later issue;
//! a header the client can forge is never used.)

use meridian_shared::Error;
use meridian_shared::api::LocationSource;
use meridian_shared::regions::Location;
use serde::Deserialize;

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
    /// The client's location, or `default` when none was given.
    pub fn resolve(&self, default: Location) -> Result<(Location, LocationSource), Error> {
        match (&self.lat, &self.lon) {
            (None, None) => Ok((default, LocationSource::Default)),
            (Some(lat), Some(lon)) => {
                let lat = parse_degrees("lat", lat, 90.0)?;
                let lon = parse_degrees("lon", lon, 180.0)?;
                Ok((Location { lat, lon }, LocationSource::Query))
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

    #[test]
    fn no_location_means_the_default() {
        let (location, source) = query(None, None).resolve(MADRID).expect("ok");
        assert_eq!((location, source), (MADRID, LocationSource::Default));
    }

    #[test]
    fn bad_coordinates_name_the_field() {
        let err = |q: LocationQuery| q.resolve(MADRID).expect_err("refused").to_string();
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
