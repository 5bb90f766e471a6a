//! Cloud Storage V4 signed URLs: building them ([`sign_url`]) and checking them
//! ([`verify_request`]) with the same canonical-request code, so the local gateway
//! verifies exactly what the sign function produces.
//!
//! Correctness is defined by Google's conformance cases (`signingV4Tests`), which the
//! tests in `tests/signing_conformance.rs` replay.
//!
//! # Layout
//! - `canonical`: canonical request, string to sign, encoding rules.
//! - `key`: [`SigningKey`], RSA (service account) and HMAC keys.
//! - `verify`: checking a request that arrived on a signed URL.

mod canonical;
mod key;
mod verify;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub use canonical::{CanonicalRequest, Scope, UrlStyle, encode_path, encode_query_component};
pub use key::SigningKey;
pub use verify::{VerifiedRequest, check_declared_payload, verify_request};

use crate::error::{Error, Result};

/// The longest lifetime Cloud Storage accepts for a V4 signed URL (7 days).
pub const MAX_EXPIRES_SECONDS: u64 = 604_800;

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Bucket name.
    pub bucket: String,
    /// Object name; `None` signs a bucket-level URL (e.g. listing).
    pub object: Option<String>,
    /// Lifetime in seconds (1..=604800).
    pub expires_in: u64,
    /// When the signature starts to be valid.
    pub timestamp: DateTime<Utc>,
    /// Headers the caller must send exactly (besides `host`), any case.
    pub headers: BTreeMap<String, String>,
    /// Extra query parameters to sign.
    pub query: Vec<(String, String)>,
    /// URL scheme, `https` or `http`.
    pub scheme: String,
    /// Endpoint authority: host, with a port when one is given (kept as given, even
    /// a default one, because the URL must carry it unchanged).
    pub authority: String,
    /// How the bucket appears in the URL.
    pub style: UrlStyle,
}

/// A signed URL and the intermediate strings, which the conformance tests compare.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedUrl {
    /// The URL to hand to the client.
    pub url: String,
    /// The canonical request that was signed.
    pub canonical_request: String,
    /// The string to sign derived from it.
    pub string_to_sign: String,
}

/// Signs `request` with `key`.
pub fn sign_url(key: &SigningKey, request: &SignRequest) -> Result<SignedUrl> {
    if !(1..=MAX_EXPIRES_SECONDS).contains(&request.expires_in) {
        return Err(Error::BadRequest(format!(
            "expiration must be between 1 and {MAX_EXPIRES_SECONDS} seconds"
        )));
    }
    let (host, port) = split_authority(&request.authority);
    let (url_host, path) = canonical::host_and_path(
        request.style,
        host,
        &request.bucket,
        request.object.as_deref(),
    );
    let scope = Scope::new(request.timestamp);
    let signed_host = url_host.clone();
    let mut headers: BTreeMap<String, String> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.insert("host".to_string(), signed_host);
    let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");

    let mut query = request.query.clone();
    query.push(("X-Goog-Algorithm".into(), key.algorithm().into()));
    query.push((
        "X-Goog-Credential".into(),
        format!("{}/{}", key.credential_id(), scope.as_str()),
    ));
    query.push(("X-Goog-Date".into(), scope.timestamp_str()));
    query.push(("X-Goog-Expires".into(), request.expires_in.to_string()));
    query.push(("X-Goog-SignedHeaders".into(), signed_headers));

    let canonical = CanonicalRequest::new(&request.method, &path, &query, &headers);
    let string_to_sign = canonical.string_to_sign(key.algorithm(), &scope);
    let signature = key.sign(&scope, string_to_sign.as_bytes())?;

    let url = format!(
        "{}://{}{}{}?{}&X-Goog-Signature={}",
        request.scheme,
        url_host,
        port,
        path,
        canonical.query(),
        hex::encode(signature)
    );
    Ok(SignedUrl {
        url,
        canonical_request: canonical.text(),
        string_to_sign,
    })
}

/// Splits `host[:port]` into the host (signed) and `:port` (kept in the URL only).
pub(crate) fn split_authority(authority: &str) -> (&str, &str) {
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |i| i + 1)
    } else {
        authority.rfind(':').unwrap_or(authority.len())
    };
    authority.split_at(host_end)
}

/// Scheme and authority of an endpoint URL such as `http://127.0.0.1:7074`.
pub fn endpoint_parts(endpoint: &str) -> Result<(String, String)> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| Error::Config(format!("signing.endpoint: {endpoint:?}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("signing.endpoint: {endpoint:?} has no host")))?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok((url.scheme().to_string(), authority))
}
