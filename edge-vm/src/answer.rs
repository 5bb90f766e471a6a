//! Turning a representation (stored, streaming from a fill, or passed through) into the
//! answer to one request: 304 when the client's copy is current, 206 or 416 for ranges
//! of a GET, else the representation's own status; with `X-Cache`, `Cache-Status`
//! (RFC 9211), `Age` and `Accept-Ranges`. Conditionals and ranges apply to 200s only:
//! any other status is sent as the origin gave it.

use std::fmt::Write;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::cache_status::CacheStatus;
use crate::conditional::{self, RangeRequest};
use crate::ranged::{self, Multipart};
use crate::request_fields::RequestFields;
use crate::store::Payload;

/// The boundary between the parts of a `multipart/byteranges` answer.
const BOUNDARY: &str = "meridian-byteranges-7d41c6";

pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const REGION: HeaderName = HeaderName::from_static("x-meridian-region");

/// How many fields [`answer`] adds to a stored response's headers on a hit (`X-Cache`,
/// `Cache-Status`, `Age`, `Accept-Ranges`).
pub const ANSWER_FIELDS: usize = 4;

/// A `Cache-Status` value (RFC 9211) naming this cache, then `parameters`: written
/// into one buffer, which becomes the header value without another copy (this runs on
/// every request).
pub fn cache_status(parameters: std::fmt::Arguments<'_>) -> String {
    let mut value = String::with_capacity(64);
    value.push_str("meridian; ");
    let _ = value.write_fmt(parameters);
    value
}

/// The `Cache-Status` value of a fresh hit: `hit; ttl=N`, with `detail=disk` when it
/// was read from the disk tier. Written without the formatting machinery, which cost
/// more than the rest of building the answer's headers (most requests are hits).
pub fn hit_status(ttl: i64, from_disk: bool) -> String {
    let mut value = String::with_capacity(48);
    value.push_str("meridian; hit; ttl=");
    value.push_str(itoa::Buffer::new().format(ttl));
    if from_disk {
        value.push_str("; detail=disk");
    }
    value
}

/// A response from its parts, without axum's `IntoResponse` merging `headers` into a
/// fresh map field by field.
fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

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
    /// The `Cache-Status` value (see [`cache_status`]).
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
    headers.insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(detail)) {
        headers.insert(CACHE_STATUS, value);
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    let body = match body {
        _ if method == Method::HEAD => Payload::Bytes(bytes::Bytes::new()),
        body => body,
    };
    if status != StatusCode::OK {
        return respond(status, headers, into_body(body));
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let asked = RequestFields::of(request);
    if asked.conditional && conditional::not_modified(request, &headers) {
        // A 304 carries the validators and caching headers, not the body's.
        for field in [header::CONTENT_LENGTH, header::CONTENT_TYPE] {
            headers.remove(field);
        }
        return respond(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    let (Some(size), true) = (size, method == Method::GET) else {
        return respond(StatusCode::OK, headers, into_body(body));
    };
    let wanted = if asked.range {
        conditional::ranges(request, &headers, size)
    } else {
        RangeRequest::Whole
    };
    match wanted {
        RangeRequest::Whole => respond(StatusCode::OK, headers, into_body(body)),
        RangeRequest::Unsatisfiable => {
            let mut refusal = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refusal.insert(header::CONTENT_RANGE, value);
            }
            for field in [X_CACHE, CACHE_STATUS, REGION] {
                if let Some(value) = headers.get(&field) {
                    refusal.insert(field, value.clone());
                }
            }
            respond(StatusCode::RANGE_NOT_SATISFIABLE, refusal, Body::empty())
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
            respond(StatusCode::PARTIAL_CONTENT, headers, body)
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
            respond(StatusCode::PARTIAL_CONTENT, headers, body)
        }
    }
}

fn into_body(body: Payload) -> Body {
    match body {
        Payload::Bytes(bytes) => Body::from(bytes),
        Payload::Stream(stream) => Body::from_stream(stream),
    }
}
