//! What a client's request asks of a representation the edge holds (RFC 9110 §13 and
//! §14): `If-None-Match` / `If-Modified-Since` (answered 304 when the client's copy is
//! current), and `Range` with `If-Range` (answered 206 with one range or
//! `multipart/byteranges`, or 416 when no range can be satisfied).

use std::ops::Range;

use axum::http::{HeaderMap, header};

/// At most this many ranges are served in one answer; a request with more is answered
/// whole (RFC 9110 lets a server ignore a Range it finds excessive).
const MAX_RANGES: usize = 16;

/// Whether the client's cached copy is current, so 304 answers it.
pub fn not_modified(request: &HeaderMap, response: &HeaderMap) -> bool {
    if let Some(if_none_match) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let etag = response.get(header::ETAG).and_then(|v| v.to_str().ok());
        // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2); weak compare.
        return if_none_match.trim() == "*"
            || etag.is_some_and(|etag| {
                if_none_match
                    .split(',')
                    .any(|candidate| opaque(candidate) == opaque(etag))
            });
    }
    let date = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    // Last-Modified is parsed only when asked about (most requests are not).
    let Some(since) = date(request, header::IF_MODIFIED_SINCE) else {
        return false;
    };
    date(response, header::LAST_MODIFIED).is_some_and(|modified| modified <= since)
}

/// An entity tag without its weakness marker, for weak comparison.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range (absent, not `bytes`, malformed, too many, or `If-Range` not
    /// matching): send the whole body.
    Whole,
    /// These ranges, in ascending order, overlapping ones merged.
    Ranges(Vec<Range<u64>>),
    /// No range overlaps the body: 416.
    Unsatisfiable,
}

/// Reads `Range` (and `If-Range`) of a GET for a body of `size` bytes whose response
/// headers are `response`.
pub fn ranges(request: &HeaderMap, response: &HeaderMap, size: u64) -> RangeRequest {
    let Some(spec) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    if !if_range_holds(request, response) {
        return RangeRequest::Whole;
    }
    let Some(sets) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    let mut wanted = Vec::new();
    for set in sets.split(',') {
        let Some((first, last)) = set.trim().split_once('-') else {
            return RangeRequest::Whole;
        };
        let range = match (first.trim(), last.trim()) {
            ("", suffix) => match suffix.parse::<u64>() {
                Ok(0) => continue, // an empty suffix selects nothing
                Ok(n) => size.saturating_sub(n)..size,
                Err(_) => return RangeRequest::Whole,
            },
            (first, "") => match first.parse::<u64>() {
                Ok(first) => first..size,
                Err(_) => return RangeRequest::Whole,
            },
            (first, last) => match (first.parse::<u64>(), last.parse::<u64>()) {
                (Ok(first), Ok(last)) if first <= last => first..last.saturating_add(1).min(size),
                _ => return RangeRequest::Whole,
            },
        };
        if range.start < size && range.start < range.end {
            wanted.push(range);
        }
    }
    if wanted.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    if wanted.len() > MAX_RANGES {
        return RangeRequest::Whole;
    }
    wanted.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(wanted.len());
    for range in wanted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    RangeRequest::Ranges(merged)
}

/// `If-Range`: the Range applies only if the client's validator still names this
/// representation (strong comparison; a date must equal `Last-Modified`).
fn if_range_holds(request: &HeaderMap, response: &HeaderMap) -> bool {
    let Some(condition) = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        return response
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|etag| etag.trim() == condition);
    }
    if condition.starts_with("W/") {
        return false; // weak tags never match for If-Range
    }
    let last_modified = response
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok());
    matches!(
        (httpdate::parse_http_date(condition), last_modified.map(httpdate::parse_http_date)),
        (Ok(asked), Some(Ok(modified))) if asked == modified
    )
}

#[cfg(test)]
// A list holding one range is what these functions take and give.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    const DATE: &str = "Thu, 26 Nov 2026 06:07:14 GMT";
    const LATER: &str = "Thu, 26 Nov 2026 07:00:00 GMT";

    fn response() -> HeaderMap {
        headers(&[("etag", "\"abc\""), ("last-modified", DATE)])
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_if_modified_since() {
        let asks = |pairs: &[(&str, &str)]| not_modified(&headers(pairs), &response());
        assert!(asks(&[("if-none-match", "\"abc\"")]));
        assert!(asks(&[("if-none-match", "\"x\", W/\"abc\"")]));
        assert!(asks(&[("if-none-match", "*")]));
        assert!(!asks(&[
            ("if-none-match", "\"x\""),
            ("if-modified-since", LATER)
        ]));
        assert!(asks(&[("if-modified-since", DATE)]));
        assert!(asks(&[("if-modified-since", LATER)]));
        assert!(!asks(&[(
            "if-modified-since",
            "Thu, 26 Nov 2026 06:00:00 GMT"
        )]));
        assert!(!asks(&[]));
    }

    #[test]
    fn ranges_are_read_merged_and_bounded() {
        let ask = |range: &str| ranges(&headers(&[("range", range)]), &response(), 100);
        assert_eq!(ask("bytes=0-9"), RangeRequest::Ranges(vec![0..10]));
        assert_eq!(ask("bytes=90-"), RangeRequest::Ranges(vec![90..100]));
        assert_eq!(ask("bytes=-5"), RangeRequest::Ranges(vec![95..100]));
        assert_eq!(ask("bytes=95-200"), RangeRequest::Ranges(vec![95..100]));
        assert_eq!(
            ask("bytes=50-59, 0-9, 5-14"),
            RangeRequest::Ranges(vec![0..15, 50..60])
        );
        assert_eq!(ask("bytes=100-"), RangeRequest::Unsatisfiable);
        assert_eq!(ask("bytes=-0"), RangeRequest::Unsatisfiable);
        assert_eq!(ask("bytes=9-0"), RangeRequest::Whole, "malformed: ignored");
        assert_eq!(ask("items=0-9"), RangeRequest::Whole);
        let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(
            ask(&format!("bytes={}", many.join(","))),
            RangeRequest::Whole
        );
    }

    #[test]
    fn if_range_needs_the_same_representation() {
        let ask = |if_range: &str| {
            ranges(
                &headers(&[("range", "bytes=0-0"), ("if-range", if_range)]),
                &response(),
                100,
            )
        };
        assert_eq!(ask("\"abc\""), RangeRequest::Ranges(vec![0..1]));
        assert_eq!(ask(DATE), RangeRequest::Ranges(vec![0..1]));
        assert_eq!(ask("\"other\""), RangeRequest::Whole);
        assert_eq!(ask("W/\"abc\""), RangeRequest::Whole);
        assert_eq!(ask(LATER), RangeRequest::Whole);
    }
}
