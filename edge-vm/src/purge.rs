//! `POST /_meridian/purge`: drops an object from this edge's cache ([`PurgeRequest`]),
//! or only a copy from a main-bucket generation older than `older_than` when that is
//! given; or every object under a prefix, or everything ([`PrefixPurgeRequest`]).
//! Needs a bearer token of scope `purge` (the replicator mints one), checked before any
//! of the body is read.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use meridian_shared::api::{PrefixPurgeRequest, PurgeRequest};
use meridian_shared::auth::TokenScope;
use meridian_shared::{Error, ObjectName, Result};

use crate::EdgeState;

/// Largest purge body taken: a name of at most 1024 bytes and a generation.
const MAX_PURGE_BYTES: usize = 4 * 1024;

/// Longest prefix: an object name's limit.
const MAX_PREFIX_BYTES: usize = 1024;

/// Drops objects from the cache; 204 whether or not any was cached.
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
    /// Applies a purge, as JSON [`PurgeRequest`] or [`PrefixPurgeRequest`] bytes (an
    /// HTTP body or a Pub/Sub message); [`Error::BadRequest`] or
    /// [`Error::InvalidName`] for ones that can never apply. Returns how many stored
    /// copies were dropped.
    pub async fn apply_purge(&self, request: &[u8]) -> Result<usize> {
        let bad = |e: serde_json::Error| {
            Error::BadRequest(format!(
                "a purge must be JSON {{name, older_than?}} or {{prefix}}: {e}"
            ))
        };
        let value: serde_json::Value = serde_json::from_slice(request).map_err(bad)?;
        if value.get("prefix").is_some() {
            let request: PrefixPurgeRequest = serde_json::from_value(value).map_err(bad)?;
            if request.prefix.len() > MAX_PREFIX_BYTES {
                return Err(Error::BadRequest(format!(
                    "prefix: at most {MAX_PREFIX_BYTES} bytes"
                )));
            }
            let dropped = self
                .front()
                .purge_prefix(&self.purge_prefix(&request.prefix))
                .await;
            self.metrics().purged("prefix");
            tracing::info!(prefix = %request.prefix, dropped, "purge by prefix");
            return Ok(dropped);
        }
        let request: PurgeRequest = serde_json::from_value(value).map_err(bad)?;
        let name = ObjectName::new(request.name)?;
        let dropped = self
            .front()
            .purge(&self.purge_key(&name), request.older_than)
            .await;
        self.metrics().purged("name");
        tracing::debug!(object = %name, dropped, "purge");
        Ok(usize::from(dropped))
    }
}
