//! `POST /_meridian/purge {"name", "older_than"?}`: drops an object from this edge's
//! cache — only a copy from a main-bucket generation older than `older_than` when
//! that is given. Needs a bearer token of scope `purge` (the replicator mints one).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use meridian_shared::auth::TokenScope;
use meridian_shared::{Error, ObjectName, Result};
use serde::Deserialize;

use crate::EdgeState;

#[derive(Deserialize)]
struct PurgeRequest {
    name: String,
    #[serde(default)]
    older_than: Option<i64>,
}

/// Drops one object from the cache; 204 whether or not it was cached.
pub async fn purge(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    state.tokens.authorize(&headers, TokenScope::Purge)?;
    let request: PurgeRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("body must be JSON {{name}}: {e}")))?;
    let name = ObjectName::new(request.name)?;
    let dropped = state
        .cache
        .remove_older(name.as_str(), request.older_than)
        .await;
    tracing::debug!(object = %name, dropped, "purge");
    Ok(StatusCode::NO_CONTENT)
}
