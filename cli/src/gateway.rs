//! The local storage gateway: stands in for Cloud Storage's XML endpoint, so uploads
//! on the local stack use the real signed-URL protocol.
//!
//! `PUT /<bucket>/<object>?X-Goog-...` is accepted only after the signature, expiry,
//! method, object and signed headers check out; the body then streams into the main
//! bucket (a [`crate::notify::NotifyingBucket`], which emits the `finalized` event).
//! A refused request gets 403 saying why, and nothing is written.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use meridian_shared::signing::{SigningKey, check_declared_payload, verify_request};
use meridian_shared::storage::PutOptions;
use meridian_shared::{Bucket, Clock, Error, ObjectName, Result};

/// Shared state of the gateway.
#[derive(Clone)]
pub struct GatewayState {
    key: Arc<SigningKey>,
    bucket: Arc<dyn Bucket>,
    clock: Clock,
}

impl GatewayState {
    /// A gateway verifying with `key`, writing into `bucket`, judging expiry by `clock`.
    pub fn new(key: Arc<SigningKey>, bucket: Arc<dyn Bucket>, clock: Clock) -> GatewayState {
        GatewayState { key, bucket, clock }
    }
}

/// The gateway router.
pub fn router(state: GatewayState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(state): State<GatewayState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let now = (state.clock)();
    // HTTP/2 carries the host in the URI (:authority), not in a Host header.
    let mut headers = headers;
    if !headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority().and_then(|a| a.as_str().parse().ok())
    {
        headers.insert(header::HOST, authority);
    }
    let verified = verify_request(
        &state.key,
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        &headers,
        now,
    )?;
    if verified.bucket != state.bucket.name() {
        return Err(Error::NotFound(format!("bucket {}", verified.bucket)));
    }
    if method != Method::PUT {
        let message = serde_json::json!({"error": "the local gateway accepts only PUT uploads"});
        return Ok((StatusCode::METHOD_NOT_ALLOWED, axum::Json(message)).into_response());
    }
    let name = ObjectName::new(verified.object)?;
    name.check_servable()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let stream = check_declared_payload(Box::pin(stream), &headers)?;
    let options = PutOptions {
        content_type,
        ..PutOptions::default()
    };
    let meta = state
        .bucket
        .put(&name, stream, options)
        .await
        .map_err(|e| match e {
            Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                Error::BadRequest(io.to_string())
            }
            other => other,
        })?;
    tracing::info!(object = %name, size = meta.size, generation = meta.generation, "upload stored");
    Ok((
        StatusCode::OK,
        [(header::ETAG, meta.etag())],
        axum::Json(meta),
    )
        .into_response())
}
