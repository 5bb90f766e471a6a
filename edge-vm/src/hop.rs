//! What a proxy passes on and what it keeps (RFC 9110 §7.6): hop-by-hop header fields
//! describe one connection and are dropped, both the fixed list and any field the
//! `Connection` header names; everything else is end-to-end and passes through. A
//! proxy also says it was there (`Via`).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Fields that only ever describe one connection.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// This edge in `Via` (RFC 9110 §7.6.3): the protocol version it received and its
/// pseudonym.
pub const VIA: HeaderValue = HeaderValue::from_static("1.1 meridian");

/// The field names listed in every `list` field of `headers` (`Connection`, `Vary`),
/// lowercased, in order; entries that are not field names (`*`) are skipped.
pub fn field_names(headers: &HeaderMap, list: &HeaderName) -> Vec<HeaderName> {
    headers
        .get_all(list)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// `headers` without hop-by-hop fields (nor `Upgrade`: the edge does not tunnel
/// protocols). Fields named in `Connection` go too.
pub fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    let named = field_names(&headers, &header::CONNECTION);
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    headers
}

/// Appends this edge to the `Via` of `headers`.
pub fn add_via(headers: &mut HeaderMap) {
    headers.append(header::VIA, VIA);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_fields_and_the_fields_it_names_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-session-hint"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-session-hint", "abc"),
            ("upgrade", "websocket"),
            ("cache-control", "max-age=60"),
            ("x-custom", "kept"),
        ] {
            headers.append(name, value.parse().expect("value"));
        }
        let kept = end_to_end(headers);
        let mut names: Vec<&str> = kept.keys().map(|name| name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "x-custom"]);
    }
}
