//! The crate's error type and the single place that maps errors to HTTP statuses.
//!
//! Client errors carry a message that tells the caller what was wrong; server errors
//! answer with a generic body and log their cause, so internal details never leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Credentials are missing, malformed, wrongly signed or expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A signed URL was refused (expired, bad signature, wrong method or object).
    #[error("forbidden: {0}")]
    Forbidden(String),

    // --- The state of storage does not allow it. ---
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// A generation precondition did not hold.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),

    // --- Configuration. ---
    /// The configuration is invalid; the message names the offending field.
    #[error("invalid configuration: {0}")]
    Config(String),

    // --- Something beneath us failed. ---
    /// An upstream service (Cloud Storage, an edge, the replicator) failed.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// An upstream service did not answer in time.
    #[error("upstream timeout: {0}")]
    Timeout(String),
    /// Local I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else that is our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error answers with. One exhaustive mapping, so a new
    /// variant cannot be added without deciding what clients see.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::InvalidName(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Config(_) | Error::Io(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let message = if status.is_server_error() {
            tracing::error!(cause = %self, status = status.as_u16(), "request failed");
            status
                .canonical_reason()
                .unwrap_or("server error")
                .to_string()
        } else {
            self.to_string()
        };
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
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

    #[test]
    fn server_errors_hide_their_cause() {
        let response = Error::Internal("secret path /etc/x".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
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
