//! delete: removes an object from the main bucket.
//!
//! `DELETE /v1/objects/{name}` with a bearer token of scope `publish` answers 204, or
//! 404 when there is no such object. Regional copies and edge caches follow through
//! the storage event the deletion produces (see the replicate function).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use meridian_shared::auth::{TokenScope, TokenVerifier};
use meridian_shared::{Bucket, ObjectName, Result};

/// Shared state of the delete service.
#[derive(Clone)]
pub struct DeleteState {
    bucket: Arc<dyn Bucket>,
    tokens: TokenVerifier,
}

impl DeleteState {
    /// State deleting from `main_bucket`, authorising with `jwt_secret`.
    pub fn new(main_bucket: Arc<dyn Bucket>, jwt_secret: &[u8]) -> DeleteState {
        DeleteState {
            bucket: main_bucket,
            tokens: TokenVerifier::new(jwt_secret),
        }
    }
}

/// The delete router: `DELETE /v1/objects/{name}`, `GET /healthz`.
pub fn router(state: DeleteState) -> Router {
    Router::new()
        .route("/v1/objects/{*name}", delete(delete_object))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn delete_object(
    State(state): State<DeleteState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let claims = state.tokens.authorize(&headers, TokenScope::Publish)?;
    let name = ObjectName::new(name)?;
    state.bucket.delete(&name, None).await?;
    tracing::info!(subject = %claims.sub, object = %name, "deleted");
    Ok(StatusCode::NO_CONTENT)
}
