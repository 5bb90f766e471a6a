//! How long an edge may serve an object from its cache, from the object's
//! Cache-Control (`s-maxage` beats `max-age`; `no-store`, `no-cache` and `private`
//! forbid shared caching), else the configured default.

use std::time::Duration;

/// The freshness lifetime for `cache_control`; zero means "do not cache".
pub fn lifetime(cache_control: Option<&str>, default: Duration) -> Duration {
    let Some(header) = cache_control else {
        return default;
    };
    let mut max_age = None;
    let mut s_maxage = None;
    for directive in header.split(',') {
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn default_applies_without_directives() {
        assert_eq!(lifetime(None, HOUR), HOUR);
        assert_eq!(lifetime(Some("public"), HOUR), HOUR);
    }

    #[test]
    fn shared_max_age_beats_max_age() {
        assert_eq!(
            lifetime(Some("public, max-age=60"), HOUR),
            Duration::from_secs(60)
        );
        assert_eq!(
            lifetime(Some("max-age=60, s-maxage=10"), HOUR),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn uncacheable_directives_mean_zero() {
        for header in ["no-store", "private, max-age=600", "No-Cache"] {
            assert_eq!(lifetime(Some(header), HOUR), Duration::ZERO, "{header}");
        }
    }
}
