//! Any HTTP server as an origin: the edge becomes a reverse proxy cache in front of it.
//! Every method and path is sent on; end-to-end headers pass through both ways,
//! hop-by-hop ones are dropped ([`crate::hop`]), `Via` names the edge, and the
//! client's address goes in `X-Forwarded-For`. Redirects and compressed bodies are
//! passed on as they are, never followed or decoded. Calls are bounded like every
//! outbound call: a connect timeout, and a silence timeout on answers and bodies
//! (`[outbound]`).

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use futures::TryStreamExt;
use meridian_shared::config::OutboundSettings;
use meridian_shared::{Error, Result};

use crate::hop;
use crate::origin::{Origin, OriginRequest, OriginResponse};

/// An HTTP(S) origin at one base URL.
pub struct HttpOrigin {
    /// Scheme, authority and optional base path, without a trailing slash.
    base: String,
    client: reqwest::Client,
    silence: std::time::Duration,
}

impl HttpOrigin {
    /// The origin at `base` (`http://host:port`, optionally with a path prefix).
    pub fn new(base: &str, outbound: &OutboundSettings) -> Result<HttpOrigin> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| Error::Config(format!("edge.origin: {base:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "edge.origin: {base:?} must be an http:// or https:// URL with a host"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "edge.origin: {base:?} must not have a query or fragment"
            )));
        }
        let client = meridian_shared::outbound::client_builder(outbound)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("edge.origin: no HTTP client: {e}")))?;
        Ok(HttpOrigin {
            base: url.as_str().trim_end_matches('/').to_string(),
            client,
            silence: outbound.request_timeout(),
        })
    }
}

#[async_trait]
impl Origin for HttpOrigin {
    async fn fetch(&self, request: OriginRequest) -> Result<OriginResponse> {
        let OriginRequest {
            method,
            target,
            headers,
            body,
        } = request;
        if !target.starts_with('/') {
            return Err(Error::BadRequest(format!(
                "the request target {target:?} must be a path"
            )));
        }
        let mut headers = hop::end_to_end(headers);
        // The origin's own host name, from the URL, not the one the client used.
        headers.remove(header::HOST);
        hop::add_via(&mut headers);
        let builder = self
            .client
            .request(method.clone(), format!("{}{target}", self.base))
            .headers(headers);
        let what = "the origin";
        let response = match body {
            Some(body) => {
                meridian_shared::outbound::send_streaming_upload(builder, body, self.silence, what)
                    .await?
            }
            None => builder
                .send()
                .await
                .map_err(|e| Error::from_http(what, e))?,
        };
        let status = response.status();
        let mut headers = hop::end_to_end(response.headers().clone());
        hop::add_via(&mut headers);
        let size = content_length(&headers);
        let bodiless = method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let body: Option<meridian_shared::storage::ByteStream> = if method == Method::HEAD {
            None
        } else if bodiless {
            Some(Box::pin(futures::stream::empty()))
        } else {
            Some(Box::pin(response.bytes_stream().map_err(|e| {
                std::io::Error::other(format!("the origin's body: {e}"))
            })))
        };
        Ok(OriginResponse {
            status,
            headers,
            size: if bodiless && method != Method::HEAD {
                Some(0)
            } else {
                size
            },
            source_generation: 0,
            body,
        })
    }

    async fn reachable(&self) -> Result<()> {
        self.probe().await
    }
}

impl HttpOrigin {
    /// Any answer to `HEAD /`: the origin is there.
    async fn probe(&self) -> Result<()> {
        self.client
            .head(format!("{}/", self.base))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_http("the origin", e))
    }
}

/// `Content-Length` of `headers`, when there is exactly one valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let value: &HeaderValue = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}
