//! Where a miss goes: the [`Origin`] trait, and the origin every edge had first, its
//! region's bucket. An origin answers in HTTP terms (status, headers, a body stream),
//! so the cache policy and the store above it do not care what is behind it; the
//! other origin is any HTTP server ([`crate::http_origin`]).

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use meridian_shared::storage::ByteStream;
use meridian_shared::{Bucket, Error, ObjectMeta, ObjectName, Result};
use std::sync::Arc;
use std::time::Duration;

use crate::conditional;

/// A request for an origin.
pub struct OriginRequest {
    /// Its method.
    pub method: Method,
    /// What it asks for: the cache key (an object name for the bucket, the path and
    /// query for an HTTP origin).
    pub target: String,
    /// End-to-end request headers to send on (hop-by-hop ones already dropped).
    pub headers: HeaderMap,
    /// A body to send on (unsafe methods).
    pub body: Option<ByteStream>,
}

impl OriginRequest {
    /// A bodiless request for `target`.
    pub fn new(method: Method, target: &str, headers: HeaderMap) -> OriginRequest {
        OriginRequest {
            method,
            target: target.to_string(),
            headers,
            body: None,
        }
    }
}

/// An origin's answer.
pub struct OriginResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its end-to-end headers (`Content-Type`, `Content-Length`, `ETag`,
    /// `Cache-Control`, ...), as the edge will send them.
    pub headers: HeaderMap,
    /// The body's length when known in advance (`Content-Length`).
    pub size: Option<u64>,
    /// The main-bucket generation this copy comes from (purges compare against it);
    /// 0 from origins without generations.
    pub source_generation: i64,
    /// The body; `None` for a HEAD.
    pub body: Option<ByteStream>,
}

/// What an edge fetches misses from.
#[async_trait]
pub trait Origin: Send + Sync {
    /// Sends `request`. A failure to get any answer is an error; an answer of any
    /// status is a response (the bucket origin answers a missing object with
    /// [`Error::NotFound`], its JSON error body being the edge's own).
    async fn fetch(&self, request: OriginRequest) -> Result<OriginResponse>;
    /// Whether the origin can be reached at all (any answer counts; a refused
    /// connection, a timeout or a failing backend does not).
    async fn reachable(&self) -> Result<()>;
}

/// A region's bucket as an origin: `GET` and `HEAD` of object names, answering
/// `If-None-Match`/`If-Modified-Since` with 304 (so stored copies revalidate without
/// a download). Objects without their own `Cache-Control` get `public,
/// max-age=<default>`, so clients and the cache policy see one rule.
pub struct BucketOrigin {
    bucket: Arc<dyn Bucket>,
    region: HeaderValue,
    default_cache_control: String,
}

impl BucketOrigin {
    /// `bucket` of `region`, objects fresh for `default_lifetime` unless they say.
    pub fn new(bucket: Arc<dyn Bucket>, region: &str, default_lifetime: Duration) -> BucketOrigin {
        BucketOrigin {
            bucket,
            region: HeaderValue::from_str(region).unwrap_or(HeaderValue::from_static("unknown")),
            default_cache_control: format!("public, max-age={}", default_lifetime.as_secs()),
        }
    }

    /// The headers describing an object.
    fn headers(&self, meta: &ObjectMeta) -> HeaderMap {
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
            .as_deref()
            .unwrap_or(&self.default_cache_control);
        if let Some(v) = text(cache_control) {
            headers.insert(header::CACHE_CONTROL, v);
        }
        headers.insert("x-meridian-region", self.region.clone());
        headers
    }

    fn respond(
        &self,
        status: StatusCode,
        meta: &ObjectMeta,
        body: Option<ByteStream>,
    ) -> OriginResponse {
        OriginResponse {
            status,
            headers: self.headers(meta),
            size: Some(meta.size),
            source_generation: meta.source_generation(),
            body,
        }
    }
}

#[async_trait]
impl Origin for BucketOrigin {
    async fn fetch(&self, request: OriginRequest) -> Result<OriginResponse> {
        let name = ObjectName::new(request.target)?;
        let conditional = request.headers.contains_key(header::IF_NONE_MATCH)
            || request.headers.contains_key(header::IF_MODIFIED_SINCE);
        match request.method {
            Method::GET if !conditional => {
                let (meta, body) = self.bucket.get(&name).await?;
                Ok(self.respond(StatusCode::OK, &meta, Some(body)))
            }
            Method::GET | Method::HEAD => {
                let meta = self.bucket.head(&name).await?;
                let current = self.respond(StatusCode::OK, &meta, None);
                if conditional::not_modified(&request.headers, &current.headers) {
                    return Ok(OriginResponse {
                        status: StatusCode::NOT_MODIFIED,
                        ..current
                    });
                }
                if request.method == Method::HEAD {
                    return Ok(current);
                }
                // Changed since the copy the caller holds: the new one, whole.
                let (meta, body) = self.bucket.get(&name).await?;
                Ok(self.respond(StatusCode::OK, &meta, Some(body)))
            }
            other => Err(Error::MethodNotAllowed(format!(
                "{other} (a bucket edge serves GET and HEAD)"
            ))),
        }
    }

    async fn reachable(&self) -> Result<()> {
        // A name no one writes: "not found" is an answer, so the bucket is there.
        let probe = ObjectName::new(".meridian-health-probe")?;
        match self.bucket.head(&probe).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
