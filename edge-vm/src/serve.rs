//! The request handlers: `GET`/`HEAD /{name}` in front of the bucket, and every method
//! and path in front of an HTTP origin. Both go through the cache front, which also
//! answers the client's conditionals and ranges.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use meridian_shared::{Error, ObjectName, Result};
use tokio::time::Instant;

use crate::EdgeState;

/// Serves one object of the bucket. Takes the whole request rather than a `HeaderMap`
/// extractor, which would clone every header of every request.
pub async fn serve_object(
    State(state): State<EdgeState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, _) = request.into_parts();
    let answer = match ObjectName::new(name) {
        Ok(name) => {
            state
                .front()
                .serve(&parts.method, name.as_str(), &parts.headers)
                .await
        }
        Err(e) => Err(e),
    };
    observed(&state, &parts.method, &parts.uri, answer, started)
}

/// Counts and logs an answer; the response.
fn observed(
    state: &EdgeState,
    method: &Method,
    uri: &Uri,
    answer: Result<Response>,
    started: Instant,
) -> Response {
    let response = answer.into_response();
    let content_length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    state.metrics().answered(
        method,
        uri.path(),
        response.status(),
        response.headers().get(crate::answer::X_CACHE),
        content_length,
        started.elapsed(),
    );
    response
}

/// `GET /healthz`: 200 `ok` while the origin can be reached, 503 with the reason when
/// it cannot (so probers take the edge out of rotation: it could serve only what it
/// holds).
pub async fn health(State(state): State<EdgeState>) -> Response {
    match state.front().origin_reachable().await {
        Ok(()) => "ok".into_response(),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("the origin cannot be reached: {why}\n"),
        )
            .into_response(),
    }
}

/// `GET /_meridian/metrics`: the edge's metrics in the Prometheus text format.
pub async fn metrics(State(state): State<EdgeState>) -> Response {
    let sizes = state.front().store_size().await;
    let text = state.metrics().render(&sizes);
    (
        [(header::CONTENT_TYPE, meridian_shared::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// Sends any request on to the HTTP origin: `GET` and `HEAD` through the cache, keyed
/// by path and query; other methods straight through with their bodies. The client's
/// address is added to `X-Forwarded-For`.
pub async fn proxy(
    State(state): State<EdgeState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let answer = send_on(&state, peer, parts, body).await;
    observed(&state, &method, &uri, answer, started)
}

async fn send_on(
    state: &EdgeState,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response> {
    let Some(target) = parts.uri.path_and_query().map(|t| t.as_str().to_string()) else {
        return Err(Error::BadRequest("the request has no path".into()));
    };
    let mut headers = parts.headers;
    if let Some(axum::Extension(ConnectInfo(peer))) = peer
        && let Ok(address) = HeaderValue::from_str(&peer.ip().to_string())
    {
        headers.append("x-forwarded-for", address);
    }
    let front = state.front();
    match parts.method {
        Method::GET | Method::HEAD => front.serve(&parts.method, &target, &headers).await,
        method => {
            let body = has_body(&headers).then(|| stream(body));
            front.forward(method, &target, headers, body).await
        }
    }
}

/// Whether a request says it carries a body (RFC 9112 §6.3).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn stream(body: Body) -> meridian_shared::storage::ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}
