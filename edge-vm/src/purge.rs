//! `POST /_meridian/purge` ([`PurgeRequest`]): drops an object from this edge's cache,
//! or only a copy from a main-bucket generation older than `older_than` when that is
//! given. Needs a bearer token of scope `purge` (the replicator mints one), checked
//! before any of the body is read.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use meridian_shared::api::PurgeRequest;
use meridian_shared::auth::TokenScope;
use meridian_shared::{Error, ObjectName, Result};

use crate::EdgeState;

/// Largest purge body taken: a name of at most 1024 bytes and a generation.
const MAX_PURGE_BYTES: usize = 4 * 1024;

/// Drops one object from the cache; 204 whether or not it was cached.
pub async fn purge(
    State(state): State<EdgeState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let tokens = state.tokens().ok_or_else(|| {
        Error::Forbidden("this edge takes no purges (it has no auth.purge_public_key)".into())
    })?;
    tokens.authorize(&headers, TokenScope::Purge)?;
    let body = meridian_shared::body::read_limited(body, MAX_PURGE_BYTES).await?;
    state.apply_purge(&body).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl EdgeState {
    /// Applies a purge, as JSON [`PurgeRequest`] bytes (an HTTP body or a Pub/Sub
    /// message); [`Error::BadRequest`] or [`Error::InvalidName`] for ones that can
    /// never apply. Returns whether a cached copy was dropped.
    pub async fn apply_purge(&self, request: &[u8]) -> Result<bool> {
        let request: PurgeRequest = serde_json::from_slice(request).map_err(|e| {
            Error::BadRequest(format!("a purge must be JSON {{name, older_than?}}: {e}"))
        })?;
        let name = ObjectName::new(request.name)?;
        let dropped = self
            .front()
            .purge(&self.purge_key(&name), request.older_than)
            .await;
        tracing::debug!(object = %name, dropped, "purge");
        Ok(dropped)
    }
}
