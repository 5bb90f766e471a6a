//! The canonical request of Cloud Storage V4 signing and its encoding rules.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Paths keep their slashes.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The payload hash used when the body is not signed.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// How a bucket appears in a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UrlStyle {
    /// `https://host/bucket/object`
    #[default]
    Path,
    /// `https://bucket.host/object`
    VirtualHosted,
    /// `https://host/object`, the host being the bucket's own domain.
    BucketBound,
}

/// Percent-encodes an object path, keeping `/`.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// Percent-encodes a query key or value.
pub fn encode_query_component(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// The host to put in the URL and the canonical path, for a style.
pub(crate) fn host_and_path(
    style: UrlStyle,
    host: &str,
    bucket: &str,
    object: Option<&str>,
) -> (String, String) {
    let object_path = object
        .map(|o| format!("/{}", encode_path(o)))
        .unwrap_or_default();
    match style {
        UrlStyle::Path => (host.to_string(), format!("/{bucket}{object_path}")),
        UrlStyle::VirtualHosted => (format!("{bucket}.{host}"), or_root(object_path)),
        UrlStyle::BucketBound => (host.to_string(), or_root(object_path)),
    }
}

fn or_root(path: String) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        path
    }
}

/// The credential scope of a signature: `YYYYMMDD/auto/storage/goog4_request`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    timestamp: DateTime<Utc>,
    text: String,
}

impl Scope {
    /// The scope for a signature made at `timestamp`.
    pub fn new(timestamp: DateTime<Utc>) -> Scope {
        let text = format!("{}/auto/storage/goog4_request", timestamp.format("%Y%m%d"));
        Scope { timestamp, text }
    }

    /// The scope string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The date part, `YYYYMMDD`.
    pub fn date(&self) -> String {
        self.timestamp.format("%Y%m%d").to_string()
    }

    /// The timestamp as `X-Goog-Date` spells it: `YYYYMMDDTHHMMSSZ`.
    pub fn timestamp_str(&self) -> String {
        self.timestamp.format("%Y%m%dT%H%M%SZ").to_string()
    }
}

/// A canonical request, built from already-decoded parts.
#[derive(Debug, Clone)]
pub struct CanonicalRequest {
    method: String,
    path: String,
    query: String,
    headers: String,
    signed_headers: String,
    payload: String,
}

impl CanonicalRequest {
    /// `path` is already encoded; `query` pairs and `headers` are raw (headers keyed by
    /// lowercase name). Headers are trimmed and inner whitespace runs collapsed.
    pub fn new(
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &BTreeMap<String, String>,
    ) -> CanonicalRequest {
        let mut encoded: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (encode_query_component(k), encode_query_component(v)))
            .collect();
        encoded.sort();
        let query = encoded
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut canonical_headers = String::new();
        for (name, value) in headers {
            let value = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(canonical_headers, "{name}:{value}");
        }
        let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");
        let payload = headers
            .get("x-goog-content-sha256")
            .cloned()
            .unwrap_or_else(|| UNSIGNED_PAYLOAD.to_string());
        CanonicalRequest {
            method: method.to_string(),
            path: path.to_string(),
            query,
            headers: canonical_headers,
            signed_headers,
            payload,
        }
    }

    /// The canonical query string (sorted, encoded).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The canonical request text.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method, self.path, self.query, self.headers, self.signed_headers, self.payload
        )
    }

    /// The string to sign: algorithm, timestamp, scope and the request's SHA-256.
    pub fn string_to_sign(&self, algorithm: &str, scope: &Scope) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.text().as_bytes());
        format!(
            "{algorithm}\n{}\n{}\n{}",
            scope.timestamp_str(),
            scope.as_str(),
            hex::encode(digest.as_ref())
        )
    }
}
