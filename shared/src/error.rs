//! The crate's error type and the single place that maps errors to HTTP statuses.
//!
//! Client errors carry a message that tells the caller what was wrong; server errors
//! answer with a generic body and log their cause, so internal details never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error, kept as the cause of one of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in Meridian's shared code, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- The caller sent something wrong. ---
    /// A request field is invalid; the message names the field and the rule.
    #[error("{0}")]
    BadRequest(String),
    /// An object name breaks Cloud Storage's naming rules.
    #[error("invalid object name: {0}")]
    InvalidName(String),
    /// The request body is larger than this endpoint takes.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body did not arrive whole, or does not match what it declared.
    #[error(transparent)]
    Body(#[from] BodyFailure),
    /// Credentials are missing, malformed, wrongly signed or expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Valid credentials that do not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A signed URL was refused; `details` says why.
    #[error("{details}")]
    SignedUrl {
        /// Cloud Storage's name for the refusal.
        refusal: SignedUrlRefusal,
        /// What exactly was wrong.
        details: String,
    },
    /// The method is not served at this path.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),

    // --- The state of storage does not allow it. ---
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The bucket does not exist (or is not one this service writes to).
    #[error("bucket not found: {0}")]
    BucketNotFound(String),
    /// A generation precondition did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),

    /// Nothing can serve the request right now (no edge is live); worth retrying.
    #[error("unavailable: {0}")]
    Unavailable(String),

    // --- Configuration. ---
    /// The configuration is invalid; the message names the offending field.
    #[error("invalid configuration: {0}")]
    Config(String),

    // --- Something beneath us failed. ---
    /// An upstream service (Cloud Storage, an edge, the replicator) failed.
    #[error("upstream failure: {what}")]
    Upstream {
        /// What we were doing.
        what: String,
        /// The failure underneath, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// An upstream service did not answer within its configured time.
    #[error("upstream timeout: {what}")]
    Timeout {
        /// What we were waiting for.
        what: String,
        /// The failure underneath, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Stored data does not match its own metadata (truncated or altered on disk).
    #[error("corrupt object: {0}")]
    Corrupt(String),
    /// Local I/O failed.
    #[error("i/o error: {0}")]
    Io(#[source] std::io::Error),
    /// Anything else that is our fault.
    #[error("internal error: {what}")]
    Internal {
        /// What we were doing.
        what: String,
        /// The failure underneath, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// An upstream failure caused by `source`.
    pub fn upstream(what: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Upstream {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An upstream failure with nothing underneath (the service answered, but wrongly).
    pub fn upstream_msg(what: impl Into<String>) -> Error {
        Error::Upstream {
            what: what.into(),
            source: None,
        }
    }

    /// A timeout waiting for `what`.
    pub fn timeout(what: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Timeout {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An internal failure caused by `source`.
    pub fn internal(what: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Internal {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An internal failure with nothing underneath.
    pub fn internal_msg(what: impl Into<String>) -> Error {
        Error::Internal {
            what: what.into(),
            source: None,
        }
    }

    /// A failed HTTP call to another service: a timeout when the client's connect or
    /// read timeout fired, else an upstream failure; but a failure of the request
    /// body we were sending (the client feeding it stopped, stored data was damaged)
    /// stays what it is.
    pub fn from_http(what: impl Into<String>, e: reqwest::Error) -> Error {
        if let Some(ours) = our_failure_inside(&e) {
            return ours;
        }
        if e.is_timeout() {
            Error::timeout(what, e)
        } else {
            Error::upstream(what, e)
        }
    }

    /// The HTTP status this error answers with. One exhaustive mapping, so a new
    /// variant cannot be added without deciding what clients see.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::InvalidName(_) | Error::Body(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::SignedUrl { refusal, .. } => refusal.http_status(),
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::NotFound(_) | Error::BucketNotFound(_) => StatusCode::NOT_FOUND,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) | Error::Corrupt(_) | Error::Io(_) | Error::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// What clients are told: the reason for client errors; only the status's name for
    /// server errors, whose cause is logged instead (it may name paths or hosts).
    pub fn public_message(&self) -> String {
        let status = self.http_status();
        // Unavailable says only what the client may act on (wait and retry).
        if status.is_server_error() && !matches!(self, Error::Unavailable(_)) {
            status
                .canonical_reason()
                .unwrap_or("server error")
                .to_string()
        } else {
            self.to_string()
        }
    }

    /// Logs a server error with its whole chain of causes (client errors are the
    /// client's business and are not logged).
    pub fn log_if_server_error(&self) {
        let status = self.http_status();
        if status.is_server_error() {
            tracing::error!(cause = %Chain(self), status = status.as_u16(), "request failed");
        }
    }
}

/// Looks through `e`'s causes for one of our own failures carried inside an I/O error
/// of a body stream, and rebuilds it.
fn our_failure_inside(e: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut cause = e.source();
    while let Some(current) = cause {
        // An I/O error's `source()` skips its own payload, so look at the payload.
        let payload: Option<&(dyn std::error::Error + 'static)> = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in payload.into_iter().chain([current]) {
            if let Some(failure) = candidate.downcast_ref::<BodyFailure>() {
                return Some(Error::Body(match failure {
                    BodyFailure::Incomplete(inner) => {
                        BodyFailure::Incomplete(inner.to_string().into())
                    }
                    BodyFailure::DigestMismatch { header } => {
                        BodyFailure::DigestMismatch { header }
                    }
                }));
            }
            if let Some(Error::Corrupt(why)) = candidate.downcast_ref::<Error>() {
                return Some(Error::Corrupt(why.clone()));
            }
        }
        cause = current.source();
    }
    None
}

/// Displays an error followed by each of its causes: `a: b: c`. A cause whose text
/// the line already ends with (errors that print their cause and also return it as
/// their source) is not repeated.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&line)
    }
}

/// I/O errors that carry a [`BodyFailure`] (a request body stream failed because of
/// the client) become [`Error::Body`], and those that carry one of our errors (damaged
/// stored data found mid-stream) become that error; all others stay I/O errors. This is how a
/// failure that surfaces deep in a storage write is still reported as the client's.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let ours = e
            .get_ref()
            .is_some_and(|inner| inner.is::<BodyFailure>() || inner.is::<Error>());
        if !ours {
            return Error::Io(e);
        }
        let kind = e.kind();
        let Some(inner) = e.into_inner() else {
            return Error::Io(kind.into());
        };
        match inner.downcast::<BodyFailure>() {
            Ok(failure) => Error::Body(*failure),
            Err(inner) => match inner.downcast::<Error>() {
                Ok(error) => *error,
                Err(other) => Error::Io(std::io::Error::new(kind, other)),
            },
        }
    }
}

/// Why a request body could not be taken, as carried inside the I/O errors of a body
/// stream (see `From<std::io::Error> for Error`).
#[derive(Debug, thiserror::Error)]
pub enum BodyFailure {
    /// The client stopped sending before the body was complete.
    #[error("the request body ended early: {0}")]
    Incomplete(#[source] BoxError),
    /// The body does not hash to the digest the request declared.
    #[error("the request body does not match {header}")]
    DigestMismatch {
        /// The header that declared the digest.
        header: &'static str,
    },
}

impl BodyFailure {
    /// This failure as the I/O error a body stream yields.
    pub fn into_io(self) -> std::io::Error {
        let kind = match self {
            BodyFailure::Incomplete(_) => std::io::ErrorKind::UnexpectedEof,
            BodyFailure::DigestMismatch { .. } => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }
}

/// Why a signed URL was refused. The variants are Cloud Storage's XML error codes, so
/// a client written against Cloud Storage understands the local gateway too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedUrlRefusal {
    /// Not a signed URL at all, or one that does not grant this request.
    AccessDenied,
    /// The signature is not the one for this request (key, method, object or signed
    /// headers differ).
    SignatureDoesNotMatch,
    /// The URL's validity window has passed.
    ExpiredToken,
    /// A signing parameter is malformed.
    MalformedSecurityHeader,
}

impl SignedUrlRefusal {
    /// Cloud Storage's spelling of the code.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignedUrlRefusal::AccessDenied => "AccessDenied",
            SignedUrlRefusal::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SignedUrlRefusal::ExpiredToken => "ExpiredToken",
            SignedUrlRefusal::MalformedSecurityHeader => "MalformedSecurityHeader",
        }
    }

    /// The status Cloud Storage answers with.
    fn http_status(&self) -> StatusCode {
        match self {
            SignedUrlRefusal::AccessDenied | SignedUrlRefusal::SignatureDoesNotMatch => {
                StatusCode::FORBIDDEN
            }
            SignedUrlRefusal::ExpiredToken | SignedUrlRefusal::MalformedSecurityHeader => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log_if_server_error();
        let status = self.http_status();
        let body = Json(serde_json::json!({ "error": self.public_message() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn server_errors_hide_their_cause() {
        let error = Error::internal("reading /etc/secret-path", std::io::Error::other("denied"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(body, r#"{"error":"Internal Server Error"}"#);
        assert!(!body.contains("secret"), "{body}");
    }

    #[test]
    fn the_log_line_keeps_every_cause() {
        let error = Error::upstream("cloud storage: a.txt", std::io::Error::other("reset"));
        assert_eq!(
            Chain(&error).to_string(),
            "upstream failure: cloud storage: a.txt: reset"
        );
    }

    #[test]
    fn a_body_failure_inside_an_io_error_is_the_clients_fault() {
        let io = BodyFailure::Incomplete("connection closed".into()).into_io();
        let error = Error::from(io);
        assert!(
            matches!(error, Error::Body(BodyFailure::Incomplete(_))),
            "{error:?}"
        );
        assert_eq!(error.http_status(), StatusCode::BAD_REQUEST);
        let disk = Error::from(std::io::Error::other("disk full"));
        assert_eq!(disk.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        let damaged = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::Corrupt("a.data: 3 bytes, 5 recorded".into()),
        );
        assert!(matches!(Error::from(damaged), Error::Corrupt(_)));
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = Error::Io(std::io::Error::other("disk full"));
        assert_eq!(Chain(&io).to_string(), "i/o error: disk full");
    }

    #[test]
    fn client_errors_map_to_4xx() {
        assert_eq!(
            Error::InvalidName("x".into()).http_status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Error::Forbidden("x".into()).http_status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            Error::NotFound("x".into()).http_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Error::PreconditionFailed("x".into()).http_status(),
            StatusCode::PRECONDITION_FAILED
        );
    }
}
