//! `GET`/`HEAD /{name}`: the object, through the cache front (conditionals and ranges
//! included).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use meridian_shared::{ObjectName, Result};

use crate::EdgeState;

/// Serves one object.
pub async fn serve_object(
    State(state): State<EdgeState>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let name = ObjectName::new(name)?;
    state.front().serve(&method, &name, &headers).await
}
