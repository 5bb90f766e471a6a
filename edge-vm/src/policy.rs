//! The cache policy: whether a response may be stored by a shared cache and for how
//! long it stays fresh, from its `Cache-Control` (`s-maxage` beats `max-age`;
//! `no-store`, `no-cache` and `private` forbid storing here). A response that states
//! no lifetime gets the policy's default, if it has one: the bucket origin's 1 hour;
//! none for origins that must state their own.

use std::time::Duration;

use axum::http::{HeaderMap, header};

/// Freshness rules for one origin.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// The lifetime of responses that state none; `None`: such responses are not
    /// stored.
    pub default_lifetime: Option<Duration>,
}

impl CachePolicy {
    /// How long a response with `headers` stays fresh in a shared cache; zero means
    /// it must not be stored.
    pub fn freshness(&self, headers: &HeaderMap) -> Duration {
        let default = self.default_lifetime.unwrap_or(Duration::ZERO);
        let Some(cache_control) = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
        else {
            return default;
        };
        let mut max_age = None;
        let mut s_maxage = None;
        for directive in cache_control.split(',') {
            let directive = directive.trim();
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            let seconds = || value.trim().trim_matches('"').parse::<u64>().ok();
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" | "private" => return Duration::ZERO,
                "max-age" => max_age = seconds(),
                "s-maxage" => s_maxage = seconds(),
                _ => {}
            }
        }
        s_maxage.or(max_age).map_or(default, Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn with(policy: CachePolicy, cache_control: Option<&str>) -> Duration {
        let mut headers = HeaderMap::new();
        if let Some(value) = cache_control {
            headers.insert(header::CACHE_CONTROL, value.parse().expect("value"));
        }
        policy.freshness(&headers)
    }

    const BUCKET: CachePolicy = CachePolicy {
        default_lifetime: Some(HOUR),
    };

    #[test]
    fn the_default_applies_when_no_lifetime_is_stated() {
        assert_eq!(with(BUCKET, None), HOUR);
        assert_eq!(with(BUCKET, Some("public")), HOUR);
        let strict = CachePolicy {
            default_lifetime: None,
        };
        assert_eq!(
            with(strict, Some("public")),
            Duration::ZERO,
            "no default, no storing"
        );
    }

    #[test]
    fn shared_max_age_beats_max_age() {
        assert_eq!(
            with(BUCKET, Some("public, max-age=60")),
            Duration::from_secs(60)
        );
        assert_eq!(
            with(BUCKET, Some("max-age=60, s-maxage=10")),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn uncacheable_directives_mean_zero() {
        for value in ["no-store", "private, max-age=600", "No-Cache"] {
            assert_eq!(with(BUCKET, Some(value)), Duration::ZERO, "{value}");
        }
    }
}
