//! `meridian edges [--lat --lon]`: what boot answers for a location, and how healthy
//! boot finds each edge.

use meridian_shared::api::{EdgesResponse, StatusResponse};

use super::{Client, check};
use crate::error::Result;

/// Asks boot which edges serve `location` (boot's default location when `None`).
pub async fn edges(client: &Client, location: Option<(f64, f64)>) -> Result<EdgesResponse> {
    let mut request = client.http.get(format!("{}/v1/edges", client.info.boot));
    if let Some((lat, lon)) = location {
        request = request.query(&[("lat", lat), ("lon", lon)]);
    }
    Ok(check("boot", request.send().await?).await?.json().await?)
}

/// Boot's view of every edge's health (`GET /v1/status`).
pub async fn status(client: &Client) -> Result<StatusResponse> {
    let request = client.http.get(format!("{}/v1/status", client.info.boot));
    Ok(check("boot", request.send().await?).await?.json().await?)
}
