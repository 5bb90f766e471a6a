//! Turning a representation (stored, streaming from a fill, or passed through) into the
//! answer to one request: 304 when the client's copy is current, 206 or 416 for ranges
//! of a GET, else the representation's own status; with `X-Cache`, `Cache-Status`
//! (RFC 9211), `Age` and `Accept-Ranges`. Conditionals and ranges apply to 200s only:
//! any other status is sent as the origin gave it.

use std::fmt::Write;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use meridian_shared::server::QuickAnswer;

use crate::cache_status::CacheStatus;
use crate::conditional::{self, RangeRequest};
use crate::hit_head::Head;
use crate::ranged::{self, Multipart};
use crate::request_fields::RequestFields;
use crate::store::{Hit, Payload};

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

/// Adds what every answer says to a representation's `headers`: `X-Cache` and
/// `Cache-Status` (`cache`, `detail`), `Age`, and for a 200 `Accept-Ranges`.
fn add_answer_fields(
    headers: &mut HeaderMap,
    status: StatusCode,
    cache: CacheStatus,
    detail: String,
    age: u64,
) {
    headers.insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(detail)) {
        headers.insert(CACHE_STATUS, value);
    }
    headers.insert(header::AGE, HeaderValue::from(age));
    if status == StatusCode::OK {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
}

/// Whether a stored copy the request accepts as it is (fresh, or stale within the
/// request's `max-stale`) is answered by [`plain_hit`]: a 200 held in memory, asked for
/// whole and unconditionally (`fields`).
pub fn is_plain_hit(hit: &Hit, fields: RequestFields) -> bool {
    hit.meta.status == StatusCode::OK && !hit.from_disk && !fields.conditional && !fields.range
}

/// The answer to a `method` request from `hit`, `age` seconds old with `ttl` seconds
/// of freshness left, when [`is_plain_hit`]: what [`answer`] would give, with the head
/// kept for the second (see `hit_head`).
pub fn plain_hit(method: &Method, hit: Hit, age: u64, ttl: i64) -> Response {
    let headers = kept_head(&hit, age, ttl, |head| head.headers.clone());
    respond(StatusCode::OK, headers, into_body(sent(method, hit.body)))
}

/// [`plain_hit`]'s answer to a `GET`, for the server's quick lane: the kept head
/// encoded, and the body, when it is whole in memory.
pub fn quick_plain_hit(hit: Hit, age: u64, ttl: i64) -> Option<QuickAnswer> {
    let Payload::Bytes(body) = &hit.body else {
        return None;
    };
    let head = kept_head(&hit, age, ttl, |head| head.encoded.clone());
    Some(QuickAnswer {
        head,
        body: body.clone(),
    })
}

/// What `read` takes from `hit`'s kept head for `age` (see `hit_head`).
fn kept_head<R>(hit: &Hit, age: u64, ttl: i64, read: impl FnOnce(&Head) -> R) -> R {
    let build = || {
        let mut headers = hit.meta.headers.clone();
        let detail = hit_status(ttl, false);
        add_answer_fields(&mut headers, StatusCode::OK, CacheStatus::Hit, detail, age);
        headers
    };
    hit.meta.kept_head.for_age(age, build, read)
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
    add_answer_fields(&mut headers, status, cache, detail, age);
    let body = sent(method, body);
    if status != StatusCode::OK {
        return respond(status, headers, into_body(body));
    }
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

/// What of `body` an answer to `method` sends: none of it for a HEAD.
fn sent(method: &Method, body: Payload) -> Payload {
    match body {
        _ if method == Method::HEAD => Payload::Bytes(bytes::Bytes::new()),
        body => body,
    }
}

fn into_body(body: Payload) -> Body {
    match body {
        Payload::Bytes(bytes) => Body::from(bytes),
        Payload::Stream(stream) => Body::from_stream(stream),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::StoredMeta;

    fn hit(meta: &Arc<StoredMeta>) -> Hit {
        Hit {
            meta: meta.clone(),
            body: Payload::Bytes(bytes::Bytes::from_static(b"hello")),
            from_disk: false,
        }
    }

    fn fields(response: &Response) -> Vec<(String, String)> {
        let headers = response.headers().iter();
        let text = |v: &HeaderValue| v.to_str().expect("text").to_string();
        headers.map(|(k, v)| (k.to_string(), text(v))).collect()
    }

    #[tokio::test]
    async fn a_plain_hit_answers_as_answer_does_at_every_age() {
        let mut stored = HeaderMap::new();
        stored.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        stored.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        stored.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        let meta = Arc::new(StoredMeta::new(
            StatusCode::OK,
            stored,
            5,
            1,
            tokio::time::Instant::now(),
            Duration::from_secs(60),
        ));
        assert!(is_plain_hit(&hit(&meta), RequestFields::default()));
        for (method, age) in [
            (Method::GET, 7),
            (Method::GET, 7),
            (Method::HEAD, 7),
            (Method::GET, 8),
        ] {
            let kept = plain_hit(&method, hit(&meta), age, 60 - age as i64);
            let representation = Representation {
                status: StatusCode::OK,
                headers: meta.headers.clone(),
                size: Some(5),
                body: hit(&meta).body,
                cache: CacheStatus::Hit,
                age,
                detail: hit_status(60 - age as i64, false),
            };
            let whole = answer(&method, &HeaderMap::new(), representation);
            assert_eq!(kept.status(), whole.status());
            assert_eq!(fields(&kept), fields(&whole), "{method} at age {age}");
            let kept_body = axum::body::to_bytes(kept.into_body(), 64)
                .await
                .expect("body");
            let whole_body = axum::body::to_bytes(whole.into_body(), 64)
                .await
                .expect("body");
            assert_eq!(kept_body, whole_body, "{method} at age {age}");
        }
    }

    #[test]
    fn conditionals_ranges_disk_reads_and_other_statuses_take_the_whole_way() {
        let meta = |status| {
            Arc::new(StoredMeta::new(
                status,
                HeaderMap::new(),
                5,
                1,
                tokio::time::Instant::now(),
                Duration::from_secs(60),
            ))
        };
        let ok = meta(StatusCode::OK);
        let conditional = RequestFields {
            conditional: true,
            ..RequestFields::default()
        };
        let range = RequestFields {
            range: true,
            ..RequestFields::default()
        };
        assert!(!is_plain_hit(&hit(&ok), conditional));
        assert!(!is_plain_hit(&hit(&ok), range));
        let from_disk = Hit {
            from_disk: true,
            ..hit(&ok)
        };
        assert!(!is_plain_hit(&from_disk, RequestFields::default()));
        assert!(!is_plain_hit(
            &hit(&meta(StatusCode::NOT_FOUND)),
            RequestFields::default()
        ));
    }
}
