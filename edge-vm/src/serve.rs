//! `GET`/`HEAD /{name}`: the object, through the cache front.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use meridian_shared::{ObjectName, Result};

use crate::EdgeState;

/// Serves one object.
pub async fn serve_object(
    State(state): State<EdgeState>,
    method: Method,
    Path(name): Path<String>,
) -> Result<Response> {
    let name = ObjectName::new(name)?;
    state.front().serve(&method, &name).await
}
