//! `meridian edges [--lat --lon]`: what boot answers for a location.

use serde::Deserialize;

use super::{Client, check};
use crate::error::Result;

/// Boot's answer.
#[derive(Debug, Deserialize)]
pub struct EdgeList {
    /// Where boot took the client to be.
    pub client: ClientLocation,
    /// Edges in the order to try them.
    pub edges: Vec<Edge>,
}

/// The client location boot used.
#[derive(Debug, Deserialize)]
pub struct ClientLocation {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// `query` or `default`.
    pub source: String,
}

/// One edge.
#[derive(Debug, Deserialize)]
pub struct Edge {
    /// Region name.
    pub region: String,
    /// Base URL.
    pub url: String,
}

impl EdgeList {
    /// Asks boot.
    pub async fn fetch(client: &Client, location: Option<(f64, f64)>) -> Result<EdgeList> {
        let mut request = client.http.get(format!("{}/v1/edges", client.info.boot));
        if let Some((lat, lon)) = location {
            request = request.query(&[("lat", lat), ("lon", lon)]);
        }
        Ok(check("boot", request.send().await?).await?.json().await?)
    }
}

/// Asks boot which edges serve `location`.
pub async fn edges(client: &Client, location: Option<(f64, f64)>) -> Result<EdgeList> {
    EdgeList::fetch(client, location).await
}
