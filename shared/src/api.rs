//! The JSON bodies Meridian's services exchange with each other and with clients, in
//! one place, so a service and its callers cannot drift apart: boot's answer (read by
//! the CLI), sign's upload ticket (read by the CLI) and the purge request (sent by the
//! replicator, read by edges).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The edge path that takes purges.
pub const PURGE_PATH: &str = "/_meridian/purge";

/// `POST /_meridian/purge`: drop an edge's cached copy of `name`. Unknown fields are
/// ignored, so a newer replicator can add some while older edges still run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    /// The object.
    pub name: String,
    /// Keep a copy from this main-bucket generation or newer; drop older ones. `None`
    /// drops any copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<i64>,
}

/// `POST /_meridian/purge` for many objects: every one whose name starts with
/// `prefix` (`""`: everything). Told apart from [`PurgeRequest`] by its `prefix` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixPurgeRequest {
    /// The start of the names to drop.
    pub prefix: String,
}

/// The answer to `GET /v1/edges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgesResponse {
    /// Where the client was taken to be.
    pub client: ClientLocation,
    /// Edges to try, in order.
    pub edges: Vec<EdgeEntry>,
    /// How long the client may reuse this answer.
    pub ttl_seconds: u64,
}

/// The client's location and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientLocation {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// How boot learned it.
    pub source: LocationSource,
}

/// Where a client location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationSource {
    /// A trusted load balancer's header.
    Header,
    /// A GeoIP lookup of the client's address.
    Geoip,
    /// The client gave `lat` and `lon`.
    Query,
    /// The client gave none; the configured default was used.
    Default,
}

impl LocationSource {
    /// Spelling in responses and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            LocationSource::Header => "header",
            LocationSource::Geoip => "geoip",
            LocationSource::Query => "query",
            LocationSource::Default => "default",
        }
    }
}

/// The answer to boot's `GET /v1/status`: every region, its edges and their health,
/// and what boot has answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Whether boot probes edges (when not, every known edge counts as live).
    pub probing: bool,
    /// Every region, in configuration order.
    pub regions: Vec<RegionStatus>,
    /// Routing counters since boot started.
    pub routing: RoutingCounters,
}

/// One region on the status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// Region name.
    pub name: String,
    /// City.
    pub city: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Its known edges.
    pub edges: Vec<EdgeStatus>,
}

/// One edge's health as boot's probes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeStatus {
    /// Base URL.
    pub url: String,
    /// In answers.
    pub live: bool,
    /// When it was last probed (Unix milliseconds); `None` before the first probe.
    pub last_probe_unix_ms: Option<u64>,
    /// How long the last probe took, when it passed.
    pub latency_ms: Option<f64>,
    /// Why the last probe failed, when it did.
    pub last_error: Option<String>,
}

/// What boot has answered since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingCounters {
    /// `GET /v1/edges` answers.
    pub edge_lists: u64,
    /// `GET /r/{object}` redirects.
    pub redirects: u64,
    /// Requests refused (bad location, bad name) or with no live edge.
    pub refused: u64,
}

/// One edge to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeEntry {
    /// Region name.
    pub region: String,
    /// Base URL of the edge.
    pub url: String,
}

/// The answer to `POST /v1/uploads`: where and how to upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadTicket {
    /// The signed URL.
    pub url: String,
    /// The method to use (`PUT`).
    pub method: String,
    /// Headers the upload must carry exactly.
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working (RFC 3339).
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_requests_read_what_the_replicator_writes() {
        let request = PurgeRequest {
            name: "a/b.txt".into(),
            older_than: Some(7),
        };
        let json = serde_json::to_string(&request).expect("json");
        assert_eq!(json, r#"{"name":"a/b.txt","older_than":7}"#);
        assert_eq!(
            serde_json::from_str::<PurgeRequest>(&json).expect("parse"),
            request
        );
        let any: PurgeRequest = serde_json::from_str(r#"{"name":"x"}"#).expect("parse");
        assert_eq!(any.older_than, None);
        let newer: PurgeRequest =
            serde_json::from_str(r#"{"name":"x","older_than":3,"reason":"sync"}"#).expect("parse");
        assert_eq!(
            newer.older_than,
            Some(3),
            "a field from a newer sender is ignored"
        );
        assert!(serde_json::from_str::<PurgeRequest>(r#"{"older_than":1}"#).is_err());
    }

    #[test]
    fn location_sources_are_spelt_as_in_responses() {
        for source in [LocationSource::Query, LocationSource::Default] {
            let json = serde_json::to_string(&source).expect("json");
            assert_eq!(json, format!("\"{}\"", source.as_str()));
        }
    }
}
