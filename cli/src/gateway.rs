//! The local storage gateway: stands in for Cloud Storage's XML endpoint, so uploads
//! on the local stack use the real signed-URL protocol and get Cloud Storage's answers.
//!
//! `PUT /<bucket>/<object>?X-Goog-...` is accepted only after the signature, expiry,
//! method, object and signed headers check out; the body then streams into the main
//! bucket (a [`crate::notify::NotifyingBucket`], which emits the `finalized` event).
//! Success is `200` with an empty body and Cloud Storage's headers (`ETag`,
//! `x-goog-generation`, `x-goog-hash`, `x-goog-stored-content-length`). Every refusal
//! is Cloud Storage's XML error document: its `Code` (`SignatureDoesNotMatch`,
//! `ExpiredToken`, `AccessDenied`, ...), a `Message`, and the reason in `Details`.
//! Statuses come from the one mapping in [`meridian_shared::Error::http_status`].

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use meridian_shared::error::{BodyFailure, SignedUrlRefusal};
use meridian_shared::signing::{SigningKey, check_declared_payload, verify_request};
use meridian_shared::storage::PutOptions;
use meridian_shared::{Bucket, Clock, Error, ObjectName};

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
) -> Response {
    match upload(&state, &method, &uri, headers, body).await {
        Ok(response) => response,
        Err(e) => xml_error(e),
    }
}

async fn upload(
    state: &GatewayState,
    method: &Method,
    uri: &Uri,
    mut headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let now = (state.clock)();
    check_host(&headers, uri)?;
    // HTTP/2 carries the host in the URI (:authority), not in a Host header.
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
        return Err(Error::BucketNotFound(verified.bucket));
    }
    if method != Method::PUT {
        return Err(Error::MethodNotAllowed(
            "the local gateway takes only PUT uploads".into(),
        ));
    }
    let name = ObjectName::new(verified.object)?;
    name.check_servable()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // A body that fails is the client's doing (it stopped sending): say so, so the
    // storage write reports it as such rather than as a failure of ours.
    let stream = body
        .into_data_stream()
        .map_err(|e| BodyFailure::Incomplete(e.into()).into_io());
    let stream = check_declared_payload(Box::pin(stream), &headers)?;
    let options = PutOptions {
        content_type,
        ..PutOptions::default()
    };
    let meta = state.bucket.put(&name, stream, options).await?;
    tracing::info!(object = %name, size = meta.size, generation = meta.generation, "upload stored");
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.append(name, value);
        }
    };
    set("etag", meta.etag());
    set("x-goog-generation", meta.generation.to_string());
    set("x-goog-metageneration", "1".to_string());
    if !meta.crc32c.is_empty() {
        set("x-goog-hash", format!("crc32c={}", meta.crc32c));
    }
    set("x-goog-hash", format!("md5={}", meta.md5_hash));
    set("x-goog-stored-content-length", meta.size.to_string());
    set("x-goog-stored-content-encoding", "identity".to_string());
    Ok(response)
}

/// One host, named once: a request naming two (two Host headers, one listing two,
/// or a Host that differs from the authority in the request line or HTTP/2's
/// `:authority`) is ambiguous about what was signed.
fn check_host(headers: &HeaderMap, uri: &Uri) -> Result<(), Error> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => {
            return Err(Error::BadRequest("more than one Host header".into()));
        }
        (Some(host), None) if host.as_bytes().contains(&b',') => {
            return Err(Error::BadRequest(
                "the Host header must name one host".into(),
            ));
        }
        (host, _) => host,
    };
    if let (Some(host), Some(authority)) = (host, uri.authority())
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err(Error::BadRequest(
            "the Host header differs from the request's authority".into(),
        ));
    }
    Ok(())
}

/// Cloud Storage's XML error code for an error.
fn error_code(error: &Error) -> &'static str {
    match error {
        Error::SignedUrl { refusal, .. } => refusal.as_str(),
        Error::Unauthorized(_) | Error::Forbidden(_) => SignedUrlRefusal::AccessDenied.as_str(),
        Error::BadRequest(_) | Error::InvalidName(_) => "InvalidArgument",
        Error::Body(BodyFailure::Incomplete(_)) => "IncompleteBody",
        Error::Body(BodyFailure::DigestMismatch { .. }) => "BadDigest",
        Error::BodyTooLarge { .. } => "EntityTooLarge",
        Error::MethodNotAllowed(_) => "MethodNotAllowed",
        Error::BucketNotFound(_) => "NoSuchBucket",
        Error::NotFound(_) => "NoSuchKey",
        Error::PreconditionFailed(_) => "PreconditionFailed",
        Error::Unavailable(_) => "ServiceUnavailable",
        // Cloud Storage's RequestTimeout (400) and ServiceUnavailable (503) mean other
        // things to its clients' retry logic: ours are failures beneath us (502, 504).
        Error::Timeout { .. }
        | Error::Upstream { .. }
        | Error::Config(_)
        | Error::Corrupt(_)
        | Error::Io(_)
        | Error::Internal { .. } => "InternalError",
    }
}

/// Cloud Storage's short message for a code.
fn error_message(code: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" | "AccessDenied" => "Access denied.",
        "ExpiredToken" => "The provided token has expired.",
        "MalformedSecurityHeader" => "Your request has a malformed header.",
        "NoSuchBucket" => "The specified bucket does not exist.",
        "NoSuchKey" => "The specified key does not exist.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "BadDigest" => "The digest you specified did not match what we received.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InvalidArgument" => "Invalid argument.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "ServiceUnavailable" => "Service Unavailable",
        _ => "We encountered an internal error. Please try again.",
    }
}

/// The XML error document for `error`, with the status from the one mapping. Server
/// errors are logged with their causes and say nothing of them to the client.
fn xml_error(error: Error) -> Response {
    error.log_if_server_error();
    let status = error.http_status();
    let code = error_code(&error);
    let details = if status.is_server_error() {
        String::new()
    } else {
        format!(
            "<Details>{}</Details>",
            meridian_shared::markup::escape(&error.to_string())
        )
    };
    let document = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message>{details}</Error>",
        error_message(code)
    );
    (
        status,
        [(header::CONTENT_TYPE, "application/xml; charset=UTF-8")],
        document,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hosts_are_refused() {
        let path: Uri = "/b/o".parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.append(header::HOST, HeaderValue::from_static("a"));
        assert!(check_host(&headers, &path).is_ok());
        headers.append(header::HOST, HeaderValue::from_static("b"));
        assert!(check_host(&headers, &path).is_err());
        let mut joined = HeaderMap::new();
        joined.insert(header::HOST, HeaderValue::from_static("a, b"));
        assert!(check_host(&joined, &path).is_err());
        let mut one = HeaderMap::new();
        one.insert(header::HOST, HeaderValue::from_static("a:80"));
        let same: Uri = "http://A:80/b/o".parse().expect("uri");
        assert!(check_host(&one, &same).is_ok());
        let other: Uri = "http://c/b/o".parse().expect("uri");
        assert!(check_host(&one, &other).is_err());
        assert!(
            check_host(&HeaderMap::new(), &other).is_ok(),
            "HTTP/2 without Host"
        );
    }
}
