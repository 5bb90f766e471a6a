//! Checking a request that arrived on a V4 signed URL, as Cloud Storage does: the
//! algorithm and credential, the validity window, the signed headers and finally the
//! signature over the canonical request rebuilt from what actually arrived.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use http::HeaderMap;
use percent_encoding::percent_decode_str;

use super::{CanonicalRequest, MAX_EXPIRES_SECONDS, Scope, SigningKey, encode_path};
use crate::error::{BodyFailure, Error, Result, SignedUrlRefusal};

/// How far in the future an `X-Goog-Date` may be (client clock skew).
const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRequest {
    /// Bucket named by the path.
    pub bucket: String,
    /// Object named by the path (decoded).
    pub object: String,
}

fn refuse(refusal: SignedUrlRefusal, details: impl Into<String>) -> Error {
    Error::SignedUrl {
        refusal,
        details: details.into(),
    }
}

fn malformed(details: impl Into<String>) -> Error {
    refuse(SignedUrlRefusal::MalformedSecurityHeader, details)
}

fn mismatch(details: impl Into<String>) -> Error {
    refuse(SignedUrlRefusal::SignatureDoesNotMatch, details)
}

/// Verifies a path-style request (`/bucket/object?X-Goog-...`).
///
/// `raw_path` and `raw_query` are exactly as received (still percent-encoded). Every
/// refusal is [`Error::SignedUrl`], with Cloud Storage's code and details that say why.
pub fn verify_request(
    key: &SigningKey,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<VerifiedRequest> {
    let query = parse_query(raw_query)?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                refuse(
                    SignedUrlRefusal::AccessDenied,
                    format!("missing {name}: this is not a signed URL"),
                )
            })
    };

    let algorithm = param("X-Goog-Algorithm")?;
    if algorithm != key.algorithm() {
        return Err(malformed(format!(
            "unsupported X-Goog-Algorithm {algorithm:?}"
        )));
    }
    let credential = param("X-Goog-Credential")?;
    let (credential_id, credential_scope) = credential
        .split_once('/')
        .ok_or_else(|| malformed("malformed X-Goog-Credential"))?;
    if credential_id != key.credential_id() {
        return Err(mismatch(format!("unknown credential {credential_id:?}")));
    }
    let date = NaiveDateTime::parse_from_str(param("X-Goog-Date")?, "%Y%m%dT%H%M%SZ")
        .map_err(|_| malformed("malformed X-Goog-Date (want YYYYMMDDTHHMMSSZ)"))?
        .and_utc();
    let scope = Scope::new(date);
    if credential_scope != scope.as_str() {
        return Err(malformed(
            "X-Goog-Credential scope does not match X-Goog-Date",
        ));
    }
    let expires: u64 = param("X-Goog-Expires")?
        .parse()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES_SECONDS).contains(e))
        .ok_or_else(|| malformed(format!("X-Goog-Expires must be 1 to {MAX_EXPIRES_SECONDS}")))?;
    let expires_at = date + TimeDelta::seconds(expires as i64);
    if now >= expires_at {
        return Err(refuse(
            SignedUrlRefusal::ExpiredToken,
            format!("signed URL expired at {}", expires_at.to_rfc3339()),
        ));
    }
    if date > now + MAX_CLOCK_SKEW {
        return Err(refuse(
            SignedUrlRefusal::AccessDenied,
            format!("signed URL is not valid before {}", date.to_rfc3339()),
        ));
    }
    let signature = hex::decode(param("X-Goog-Signature")?)
        .map_err(|_| malformed("X-Goog-Signature is not hex"))?;

    let (bucket, object) = split_path(raw_path)?;
    let path = format!("/{bucket}/{}", encode_path(&object));
    let signed_headers = signed_header_values(param("X-Goog-SignedHeaders")?, headers)?;
    let unsigned_query: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "X-Goog-Signature")
        .cloned()
        .collect();

    let matches = |method: &str| {
        let canonical = CanonicalRequest::new(method, &path, &unsigned_query, &signed_headers);
        key.verify(
            &scope,
            canonical.string_to_sign(key.algorithm(), &scope).as_bytes(),
            &signature,
        )
    };
    if matches(method) {
        return Ok(VerifiedRequest { bucket, object });
    }
    // Say why when we can: a valid signature for another method means a wrong method.
    for other in ["GET", "HEAD", "PUT", "POST", "DELETE"] {
        if other != method && matches(other) {
            return Err(mismatch(format!(
                "this URL was signed for {other}, not {method}"
            )));
        }
    }
    Err(mismatch(
        "signature does not match the request (object, signed headers or key differ)",
    ))
}

fn parse_query(raw: &str) -> Result<Vec<(String, String)>> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| malformed("query is not valid percent-encoded UTF-8"))
}

fn split_path(raw_path: &str) -> Result<(String, String)> {
    let path = percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| Error::BadRequest("path is not valid percent-encoded UTF-8".into()))?;
    let rest = path.strip_prefix('/').unwrap_or(&path);
    match rest.split_once('/') {
        Some((bucket, object)) if !bucket.is_empty() && !object.is_empty() => {
            Ok((bucket.to_string(), object.to_string()))
        }
        _ => Err(Error::BadRequest("path must be /<bucket>/<object>".into())),
    }
}

/// The values the request carries for each signed header. The `host` header is
/// compared without its port, as Cloud Storage's client libraries sign it.
fn signed_header_values(list: &str, headers: &HeaderMap) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for name in list.split(';') {
        let name = name.to_ascii_lowercase();
        let present: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if present.is_empty() {
            return Err(mismatch(format!(
                "signed header {name:?} is missing from the request"
            )));
        }
        let mut value = present.join(",");
        if name == "host" {
            value = super::split_authority(&value).0.to_string();
        }
        values.insert(name, value);
    }
    if !values.contains_key("host") {
        return Err(malformed("X-Goog-SignedHeaders must include host"));
    }
    Ok(values)
}

/// Holds an upload to the payload hash the request declared in
/// `x-goog-content-sha256` (as Cloud Storage does): the returned stream fails at its
/// end when the bytes hash to something else, so the store discards the upload.
/// Without the header (or with `UNSIGNED-PAYLOAD`) the body passes unchanged.
pub fn check_declared_payload(
    body: crate::storage::ByteStream,
    headers: &HeaderMap,
) -> Result<crate::storage::ByteStream> {
    let Some(declared) = headers.get("x-goog-content-sha256") else {
        return Ok(body);
    };
    let declared = declared.to_str().unwrap_or_default().to_ascii_lowercase();
    if declared == "unsigned-payload" {
        return Ok(body);
    }
    let expected = hex::decode(&declared)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| Error::BadRequest("x-goog-content-sha256 must be 64 hex digits".into()))?;
    let state = (
        body,
        Some(ring::digest::Context::new(&ring::digest::SHA256)),
    );
    let checked = futures::stream::unfold(state, move |(mut body, mut hasher)| {
        let expected = expected.clone();
        async move {
            let context = hasher.as_mut()?;
            match futures::StreamExt::next(&mut body).await {
                Some(Ok(chunk)) => {
                    context.update(&chunk);
                    Some((Ok(chunk), (body, hasher)))
                }
                Some(Err(e)) => Some((Err(e), (body, None))),
                None => {
                    let actual = hasher.take()?.finish();
                    if actual.as_ref() == expected.as_slice() {
                        None
                    } else {
                        let mismatch = BodyFailure::DigestMismatch {
                            header: "x-goog-content-sha256",
                        };
                        Some((Err(mismatch.into_io()), (body, None)))
                    }
                }
            }
        }
    });
    Ok(Box::pin(checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{collect, stream_from_bytes};

    fn declaring(hash: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-goog-content-sha256", hash.parse().expect("header"));
        headers
    }

    // SHA-256 of "hello".
    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[tokio::test]
    async fn a_body_matching_its_declared_hash_passes() {
        let body =
            check_declared_payload(stream_from_bytes("hello"), &declaring(HELLO)).expect("ok");
        assert_eq!(collect(body).await.expect("matches").as_ref(), b"hello");
    }

    #[tokio::test]
    async fn a_body_not_matching_its_declared_hash_fails_at_the_end() {
        let body =
            check_declared_payload(stream_from_bytes("hellO"), &declaring(HELLO)).expect("ok");
        let err = collect(body).await.expect_err("mismatch");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(check_declared_payload(stream_from_bytes("x"), &declaring("zz")).is_err());
        let unsigned =
            check_declared_payload(stream_from_bytes("x"), &declaring("UNSIGNED-PAYLOAD"));
        assert_eq!(
            collect(unsigned.expect("ok"))
                .await
                .expect("passes")
                .as_ref(),
            b"x"
        );
    }
}
