//! Turning a representation (stored, streaming from a fill, or passed through) into the
//! answer to one request: 304 when the client's copy is current, 206 or 416 for ranges
//! of a GET, else the representation's own status; with `X-Cache`, `Cache-Status`
//! (RFC 9211), `Age` and `Accept-Ranges`. Conditionals and ranges apply to 200s only:
//! any other status is sent as the origin gave it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::cache_status::CacheStatus;
use crate::conditional::{self, RangeRequest};
use crate::ranged::{self, Multipart};
use crate::store::Payload;

/// The boundary between the parts of a `multipart/byteranges` answer.
const BOUNDARY: &str = "meridian-byteranges-7d41c6";

/// A representation about to be answered: its status, headers, length and body, and
/// what the cache did (`X-Cache`, and the `Cache-Status` parameters after the cache's
/// name).
pub struct Representation {
    /// The origin's status for it.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body's length, when known.
    pub size: Option<u64>,
    /// Its body.
    pub body: Payload,
    /// What the cache did.
    pub cache: CacheStatus,
    /// Seconds since the origin generated it.
    pub age: u64,
    /// `Cache-Status` parameters.
    pub detail: String,
}

/// The answer to a `method` request with `request` headers from `representation`.
pub fn answer(method: &Method, request: &HeaderMap, representation: Representation) -> Response {
    let Representation {
        status,
        mut headers,
        size,
        body,
        cache,
        age,
        detail,
    } = representation;
    headers.insert("x-cache", HeaderValue::from_static(cache.as_str()));
    if let Ok(value) = HeaderValue::from_str(&format!("meridian; {detail}")) {
        headers.insert("cache-status", value);
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    let body = match body {
        _ if method == Method::HEAD => Payload::Bytes(bytes::Bytes::new()),
        body => body,
    };
    if status != StatusCode::OK {
        return (status, headers, into_body(body)).into_response();
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if conditional::not_modified(request, &headers) {
        // A 304 carries the validators and caching headers, not the body's.
        for field in [header::CONTENT_LENGTH, header::CONTENT_TYPE] {
            headers.remove(field);
        }
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let (Some(size), true) = (size, method == Method::GET) else {
        return (StatusCode::OK, headers, into_body(body)).into_response();
    };
    match conditional::ranges(request, &headers, size) {
        RangeRequest::Whole => (StatusCode::OK, headers, into_body(body)).into_response(),
        RangeRequest::Unsatisfiable => {
            let mut refusal = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refusal.insert(header::CONTENT_RANGE, value);
            }
            for field in ["x-cache", "cache-status", "x-meridian-region"] {
                if let Some(value) = headers.get(field) {
                    refusal.insert(field, value.clone());
                }
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, refusal).into_response()
        }
        RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
            let range = &ranges[0];
            if let Ok(value) =
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
            {
                headers.insert(header::CONTENT_RANGE, value);
            }
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let body = Body::from_stream(ranged::cut(body.into_stream(), ranges, None));
            (StatusCode::PARTIAL_CONTENT, headers, body).into_response()
        }
        RangeRequest::Ranges(ranges) => {
            let parts = Multipart {
                boundary: BOUNDARY.to_string(),
                content_type: headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_string(),
                size,
            };
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(parts.length(&ranges)),
            );
            if let Ok(value) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={BOUNDARY}"))
            {
                headers.insert(header::CONTENT_TYPE, value);
            }
            let body = Body::from_stream(ranged::cut(body.into_stream(), ranges, Some(parts)));
            (StatusCode::PARTIAL_CONTENT, headers, body).into_response()
        }
    }
}

fn into_body(body: Payload) -> Body {
    match body {
        Payload::Bytes(bytes) => Body::from(bytes),
        Payload::Stream(stream) => Body::from_stream(stream),
    }
}
