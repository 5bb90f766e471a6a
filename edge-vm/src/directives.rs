//! `Cache-Control` directives the front acts on (RFC 9111 §5.2): what a client's
//! request allows (`no-store`, `no-cache`, `max-age`, `min-fresh`, `max-stale`,
//! `only-if-cached`), and how long a stored response may be served stale
//! (`stale-while-revalidate`, `stale-if-error`, RFC 5861).

use std::time::Duration;

use axum::http::{HeaderMap, header};

/// The directives of every `Cache-Control` field in `headers`, lowercased, with their
/// values unquoted.
pub fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| {
            let directive = directive.trim();
            if directive.is_empty() {
                return None;
            }
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name, Some(value.trim().trim_matches('"').to_string())),
                None => (directive, None),
            };
            Some((name.trim().to_ascii_lowercase(), value))
        })
        .collect()
}

/// A directive's value as a number of seconds.
pub fn seconds(value: &Option<String>) -> Option<Duration> {
    value.as_deref()?.parse().ok().map(Duration::from_secs)
}

/// What a request's `Cache-Control` allows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestDirectives {
    /// Do not store the response.
    pub no_store: bool,
    /// Do not answer from a stored response without going to the origin.
    pub no_cache: bool,
    /// Only a stored response at most this old.
    pub max_age: Option<Duration>,
    /// Only a stored response fresh for at least this much longer.
    pub min_fresh: Option<Duration>,
    /// A stale stored response is acceptable this long past its freshness (`None`
    /// inside: any staleness).
    pub max_stale: Option<Option<Duration>>,
    /// Answer from the cache or not at all (504).
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// The directives of a request with `headers`.
    pub fn of(headers: &HeaderMap) -> RequestDirectives {
        let mut wanted = RequestDirectives::default();
        for (name, value) in directives(headers) {
            match name.as_str() {
                "no-store" => wanted.no_store = true,
                "no-cache" => wanted.no_cache = true,
                "max-age" => wanted.max_age = seconds(&value),
                "min-fresh" => wanted.min_fresh = seconds(&value),
                "max-stale" => wanted.max_stale = Some(seconds(&value)),
                "only-if-cached" => wanted.only_if_cached = true,
                _ => {}
            }
        }
        wanted
    }

    /// Whether a stored response `age` old, fresh for `fresh_for` in all, may answer.
    pub fn accepts(&self, age: Duration, fresh_for: Duration) -> bool {
        if self.no_cache || self.max_age.is_some_and(|max| age > max) {
            return false;
        }
        let left = fresh_for.checked_sub(age);
        match left {
            Some(left) if !left.is_zero() => self.min_fresh.is_none_or(|min| left >= min),
            // Stale: only with max-stale, within its bound.
            _ => match self.max_stale {
                Some(None) => true,
                Some(Some(bound)) => age.saturating_sub(fresh_for) <= bound,
                None => false,
            },
        }
    }
}

/// How long past its freshness a stored response with `headers` may be served: while
/// revalidating in the background, and when the origin fails. Its own directives win
/// over the defaults.
pub fn stale_windows(
    headers: &HeaderMap,
    default_while_revalidate: Duration,
    default_if_error: Duration,
) -> (Duration, Duration) {
    let (mut while_revalidate, mut if_error) = (default_while_revalidate, default_if_error);
    for (name, value) in directives(headers) {
        match name.as_str() {
            "stale-while-revalidate" => {
                while_revalidate = seconds(&value).unwrap_or(while_revalidate)
            }
            "stale-if-error" => if_error = seconds(&value).unwrap_or(if_error),
            // A response that must be revalidated is never served stale.
            "must-revalidate" | "proxy-revalidate" => return (Duration::ZERO, Duration::ZERO),
            _ => {}
        }
    }
    (while_revalidate, if_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: &str) -> RequestDirectives {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, value.parse().expect("value"));
        RequestDirectives::of(&headers)
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn request_directives_bound_what_a_stored_copy_may_answer() {
        let hour = Duration::from_secs(3600);
        let ten_min = Duration::from_secs(600);
        assert!(RequestDirectives::default().accepts(ten_min, hour));
        assert!(!RequestDirectives::default().accepts(hour, hour), "stale");
        assert!(!request("no-cache").accepts(Duration::ZERO, hour));
        assert!(!request("max-age=300").accepts(ten_min, hour));
        assert!(request("max-age=900").accepts(ten_min, hour));
        assert!(!request("min-fresh=3500").accepts(ten_min, hour));
        assert!(request("max-stale=120").accepts(hour + MIN, hour));
        assert!(!request("max-stale=30").accepts(hour + MIN, hour));
        assert!(request("max-stale").accepts(hour * 5, hour));
        let strict = request("no-store, only-if-cached, MAX-AGE=\"5\"");
        assert!(strict.no_store && strict.only_if_cached);
        assert_eq!(strict.max_age, Some(Duration::from_secs(5)));
    }

    #[test]
    fn stale_windows_come_from_the_response_else_the_defaults() {
        let windows = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CACHE_CONTROL, value.parse().expect("value"));
            }
            stale_windows(&headers, MIN, MIN * 2)
        };
        assert_eq!(windows(None), (MIN, MIN * 2));
        assert_eq!(
            windows(Some(
                "max-age=60, stale-while-revalidate=30, stale-if-error=600"
            )),
            (Duration::from_secs(30), Duration::from_secs(600))
        );
        assert_eq!(
            windows(Some("max-age=60, must-revalidate, stale-if-error=600")),
            (Duration::ZERO, Duration::ZERO)
        );
    }
}
