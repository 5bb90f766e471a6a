//! Where a miss goes: the [`Origin`] trait, and the origin every edge has today, its
//! region's bucket. An origin answers in HTTP terms (headers, a body stream), so the
//! cache policy and the store above it do not care what is behind it; an HTTP origin
//! can follow as a second implementation.

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, header};
use meridian_shared::storage::ByteStream;
use meridian_shared::{Bucket, ObjectMeta, ObjectName, Result};
use std::sync::Arc;
use std::time::Duration;

/// An origin's answer for one object.
pub struct OriginResponse {
    /// The response headers (`Content-Type`, `Content-Length`, `ETag`,
    /// `Last-Modified`, `Cache-Control`, ...), as the edge will send them.
    pub headers: HeaderMap,
    /// Body length in bytes.
    pub size: u64,
    /// The main-bucket generation this copy comes from: purges compare against it.
    pub source_generation: i64,
    /// The body; `None` for a HEAD.
    pub body: Option<ByteStream>,
}

/// What an edge fetches misses from.
#[async_trait]
pub trait Origin: Send + Sync {
    /// The object's headers, without its body.
    async fn head(&self, name: &ObjectName) -> Result<OriginResponse>;
    /// The object, its body streamed.
    async fn get(&self, name: &ObjectName) -> Result<OriginResponse>;
}

/// A region's bucket as an origin. Objects without their own `Cache-Control` get
/// `public, max-age=<default>`, so clients and the cache policy see one rule.
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

    fn respond(&self, meta: &ObjectMeta, body: Option<ByteStream>) -> OriginResponse {
        OriginResponse {
            headers: self.headers(meta),
            size: meta.size,
            source_generation: meta.source_generation(),
            body,
        }
    }
}

#[async_trait]
impl Origin for BucketOrigin {
    async fn head(&self, name: &ObjectName) -> Result<OriginResponse> {
        let meta = self.bucket.head(name).await?;
        Ok(self.respond(&meta, None))
    }

    async fn get(&self, name: &ObjectName) -> Result<OriginResponse> {
        let (meta, body) = self.bucket.get(name).await?;
        Ok(self.respond(&meta, Some(body)))
    }
}
