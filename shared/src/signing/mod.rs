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
//! - `iam`: [`IamSigner`], signing through the IAM Credentials API (no key at hand).
//! - `verify`: checking a request that arrived on a signed URL.

mod canonical;
mod iam;
mod key;
mod verify;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

pub use canonical::{CanonicalRequest, Scope, UrlStyle, encode_path, encode_query_component};
pub use iam::IamSigner;
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
    let prepared = prepare_url(key.algorithm(), key.credential_id(), request)?;
    let signature = key.sign(&prepared.scope, prepared.string_to_sign.as_bytes())?;
    Ok(prepared.finish(&signature))
}

/// A V4 signed URL waiting for its signature: what a signer that works elsewhere (IAM
/// signBlob) is given to sign, and what it is finished with.
#[derive(Debug, Clone)]
pub struct PreparedUrl {
    /// The string to sign.
    pub string_to_sign: String,
    /// The credential scope (an HMAC key derives its signing key from it).
    pub scope: Scope,
    canonical_request: String,
    unsigned_url: String,
}

impl PreparedUrl {
    /// The URL, signed with `signature`.
    pub fn finish(self, signature: &[u8]) -> SignedUrl {
        SignedUrl {
            url: format!(
                "{}&X-Goog-Signature={}",
                self.unsigned_url,
                hex::encode(signature)
            ),
            canonical_request: self.canonical_request,
            string_to_sign: self.string_to_sign,
        }
    }
}

/// Builds everything of a signed URL but the signature, for a key of `algorithm`
/// whose credential id is `credential_id`.
pub fn prepare_url(
    algorithm: &str,
    credential_id: &str,
    request: &SignRequest,
) -> Result<PreparedUrl> {
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
    query.push(("X-Goog-Algorithm".into(), algorithm.into()));
    query.push((
        "X-Goog-Credential".into(),
        format!("{credential_id}/{}", scope.as_str()),
    ));
    query.push(("X-Goog-Date".into(), scope.timestamp_str()));
    query.push(("X-Goog-Expires".into(), request.expires_in.to_string()));
    query.push(("X-Goog-SignedHeaders".into(), signed_headers));

    let canonical = CanonicalRequest::new(&request.method, &path, &query, &headers);
    let string_to_sign = canonical.string_to_sign(algorithm, &scope);
    Ok(PreparedUrl {
        unsigned_url: format!(
            "{}://{}{}{}?{}",
            request.scheme,
            url_host,
            port,
            path,
            canonical.query()
        ),
        canonical_request: canonical.text(),
        string_to_sign,
        scope,
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
