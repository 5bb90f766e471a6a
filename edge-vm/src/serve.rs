//! `GET`/`HEAD /{name}`: from the cache when fresh, else from the region's bucket.
//! Objects that fit the cache are read whole and stored; larger ones (or ones whose
//! Cache-Control forbids storing) are streamed through and never held whole.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_shared::storage::collect;
use meridian_shared::{ObjectMeta, ObjectName, Result};
use tokio::time::Instant;

use crate::EdgeState;
use crate::cache::{CacheStatus, CachedObject};
use crate::freshness;

/// Serves one object.
pub async fn serve_object(
    State(state): State<EdgeState>,
    method: Method,
    Path(name): Path<String>,
) -> Result<Response> {
    let name = ObjectName::new(name)?;
    if let Some(entry) = state.cache.fresh(name.as_str(), Instant::now()).await {
        let mut headers = with_status(entry.headers.clone(), CacheStatus::Hit);
        headers.insert(header::AGE, HeaderValue::from(entry.age(Instant::now())));
        return Ok(respond(&method, headers, Body::from(entry.body.clone())));
    }
    if method == Method::HEAD {
        // Says what a GET would do now: MISS for an object a GET would store, BYPASS
        // for one it would stream through.
        let meta = forget_if_missing(&state, &name, state.bucket.head(&name).await).await?;
        let lifetime = freshness::lifetime(meta.cache_control.as_deref(), state.default_lifetime);
        let status = if storable(&state, &meta, lifetime) {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        };
        return Ok(respond(
            &method,
            with_status(object_headers(&meta, &state), status),
            Body::empty(),
        ));
    }
    let (meta, stream) = forget_if_missing(&state, &name, state.bucket.get(&name).await).await?;
    let lifetime = freshness::lifetime(meta.cache_control.as_deref(), state.default_lifetime);
    let fill_permit = if storable(&state, &meta, lifetime) {
        let kib = u32::try_from(meta.size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        state.fill_budget.clone().try_acquire_many_owned(kib).ok()
    } else {
        None
    };
    let Some(_fill_permit) = fill_permit else {
        let headers = with_status(object_headers(&meta, &state), CacheStatus::Bypass);
        return Ok(respond(&method, headers, Body::from_stream(stream)));
    };
    let body = collect(stream).await?;
    let entry = Arc::new(CachedObject {
        headers: object_headers(&meta, &state),
        meta,
        body,
        stored_at: Instant::now(),
        lifetime,
    });
    let status = if state.cache.insert(entry.clone()).await {
        CacheStatus::Miss
    } else {
        CacheStatus::Bypass
    };
    let headers = with_status(entry.headers.clone(), status);
    Ok(respond(&method, headers, Body::from(entry.body.clone())))
}

/// Whether a GET of this object would store it, given its freshness `lifetime`:
/// cacheable, small enough to buffer, and within the cache's budget.
fn storable(state: &EdgeState, meta: &ObjectMeta, lifetime: std::time::Duration) -> bool {
    !lifetime.is_zero() && meta.size <= state.stream_threshold && state.cache.fits(meta.size)
}

/// A missing object must not linger in the cache either.
async fn forget_if_missing<T>(
    state: &EdgeState,
    name: &ObjectName,
    result: Result<T>,
) -> Result<T> {
    if let Err(meridian_shared::Error::NotFound(_)) = &result {
        state.cache.remove(name.as_str()).await;
    }
    result
}

fn respond(method: &Method, headers: HeaderMap, body: Body) -> Response {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        body
    };
    (StatusCode::OK, headers, body).into_response()
}

fn with_status(mut headers: HeaderMap, status: CacheStatus) -> HeaderMap {
    headers.insert("x-cache", HeaderValue::from_static(status.as_str()));
    headers
}

/// The headers describing an object (all but `X-Cache` and `Age`).
fn object_headers(meta: &ObjectMeta, state: &EdgeState) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let text = |value: &str| HeaderValue::from_str(value).ok();
    if let Some(v) = text(&meta.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    if let Some(v) = text(&meta.etag()) {
        headers.insert(header::ETAG, v);
    }
    if let Some(v) = text(&httpdate::fmt_http_date(meta.updated.into())) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    let cache_control = meta
        .cache_control
        .clone()
        .unwrap_or_else(|| format!("public, max-age={}", state.default_lifetime.as_secs()));
    if let Some(v) = text(&cache_control) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    if let Some(v) = text(&state.region) {
        headers.insert("x-meridian-region", v);
    }
    headers
}
