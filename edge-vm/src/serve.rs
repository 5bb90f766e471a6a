//! The edge's HTTP service and its handlers: `GET`/`HEAD` of any path in front of the
//! bucket, and every method and path in front of an HTTP origin. Both go through the
//! cache front, which also answers the client's conditionals and ranges.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use futures::{FutureExt, TryStreamExt};
use meridian_shared::{Error, ObjectName, Result};
use tokio::time::Instant;

use crate::{EdgeState, OriginKind};

/// The edge as one service. The edge's own paths (health, purge, metrics) go through
/// an axum router; every other request is an object's, and goes straight to its
/// handler: routing it would cost more than serving a hit does otherwise (a cloned
/// method router, a boxed service, and extensions inserted per request).
#[derive(Clone)]
pub struct EdgeService {
    state: EdgeState,
    own: Router,
    own_paths: [&'static str; 3],
}

/// An answer on its way.
type AnswerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

type Answering = futures::future::Map<AnswerFuture, fn(Response) -> Result<Response, Infallible>>;

impl EdgeService {
    /// The service for `state`, with `own` answering `own_paths`.
    pub(crate) fn new(state: EdgeState, own: Router, own_paths: [&'static str; 3]) -> Self {
        EdgeService {
            state,
            own,
            own_paths,
        }
    }
}

impl tower::Service<Request> for EdgeService {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<<Router as tower::Service<Request>>::Future, Answering>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if self.own_paths.contains(&request.uri().path()) {
            return Either::Left(self.own.call(request));
        }
        let state = self.state.clone();
        // Boxed as they are, not inside another future: one copy of a large future
        // fewer per request.
        let answering: AnswerFuture = match state.0.origin {
            OriginKind::Bucket => serve_object(state, request),
            OriginKind::Http => Box::pin(proxy(state, request)),
        };
        Either::Right(answering.map(Ok as fn(Response) -> Result<Response, Infallible>))
    }
}

/// Serves one object of the bucket, named by the request's path. Reads the headers in
/// place (an extractor would clone them all).
///
/// A function returning the boxed future rather than an `async fn`: an `async fn`'s
/// future keeps its arguments twice over (rust-lang/rust#62958), which made this one,
/// allocated and moved on every request, over 1 KiB.
fn serve_object(state: EdgeState, request: Request) -> AnswerFuture {
    let started = Instant::now();
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let refusal = (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET,HEAD")],
        );
        let response = observed(
            &state,
            request.method(),
            request.uri(),
            Ok(refusal.into_response()),
            started,
        );
        return Box::pin(std::future::ready(response));
    }
    let (parts, _) = request.into_parts();
    Box::pin(async move {
        let answer = match ObjectName::read_path(parts.uri.path()) {
            Ok(name) => {
                state
                    .front()
                    .serve(&parts.method, &name, &parts.headers)
                    .await
            }
            Err(e) => Err(e),
        };
        observed(&state, &parts.method, &parts.uri, answer, started)
    })
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
    // The body's own length when it knows it (a stored one, or none for a HEAD), which
    // spares parsing the header; a streamed body's as its header declares.
    let content_length = response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    state.metrics().answered(
        method,
        uri.path(),
        response.status(),
        response.headers().get(crate::answer::X_CACHE),
        content_length,
        started,
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
async fn proxy(state: EdgeState, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let answer = send_on(&state, parts, body).await;
    observed(&state, &method, &uri, answer, started)
}

async fn send_on(
    state: &EdgeState,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let Some(target) = parts.uri.path_and_query().map(|t| t.as_str().to_string()) else {
        return Err(Error::BadRequest("the request has no path".into()));
    };
    let mut headers = parts.headers;
    if let Some(peer) = peer
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
