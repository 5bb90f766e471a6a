//! The cache policy (RFC 9111 §3 and §4.2): whether a shared cache may store a response,
//! how long it stays fresh, and how old it already was when it arrived.
//!
//! - **Storing**: a final status other than 206 and 304 (partial and not-modified
//!   answers are never stored whole); not `no-store` (unless `must-understand` and the
//!   status is one this cache understands), not `private`, not `Vary: *`; for a request
//!   with `Authorization`, only with `public`, `s-maxage` or `must-revalidate`.
//! - **Freshness**: `s-maxage`, else `max-age`, else `Expires` minus `Date`, else the
//!   policy's default lifetime (the bucket origin's hour), else, when configured, a
//!   percentage of the time since `Last-Modified` (heuristic freshness, only for
//!   statuses cacheable by default). `no-cache` means zero.
//! - A response with no freshness left is still stored when it has a validator (ETag or
//!   Last-Modified): every use revalidates it with the origin, which can answer 304
//!   instead of the body. Without a validator it is not stored.
//! - **Age** on arrival: the larger of its `Age` and how far its `Date` lies in the
//!   past.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};

use crate::directives::{directives, seconds};

/// Status codes a cache may store without explicit freshness, and the ones it
/// understands for `must-understand` (RFC 9110 §15.1).
const CACHEABLE_BY_DEFAULT: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Freshness rules for one origin.
#[derive(Debug, Clone, Copy, Default)]
pub struct CachePolicy {
    /// The lifetime of storable responses that state none (the bucket origin: an
    /// hour). `None`: only what the response states.
    pub default_lifetime: Option<Duration>,
    /// Heuristic freshness: this percentage of the time since `Last-Modified` for
    /// responses without explicit freshness (RFC 9111 §4.2.2 suggests 10). 0: off.
    pub heuristic_percent: u32,
}

/// How a storable response may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// How long it stays fresh from when it was generated (zero: revalidate on every
    /// use).
    pub lifetime: Duration,
    /// How old it already was when it arrived.
    pub initial_age: Duration,
}

/// The `Cache-Control` directives of a response that storing depends on.
#[derive(Debug, Default)]
struct ResponseDirectives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    must_understand: bool,
    max_age: Option<Duration>,
    s_maxage: Option<Duration>,
}

impl ResponseDirectives {
    fn of(headers: &HeaderMap) -> ResponseDirectives {
        let mut found = ResponseDirectives::default();
        for (name, value) in directives(headers) {
            match name.as_str() {
                "no-store" => found.no_store = true,
                // `no-cache="field"` only forbids sending that field unvalidated; the
                // edge treats any no-cache as revalidate-always, which is stricter.
                "no-cache" => found.no_cache = true,
                "private" => found.private = true,
                "public" => found.public = true,
                "must-revalidate" | "proxy-revalidate" => found.must_revalidate = true,
                "must-understand" => found.must_understand = true,
                // An invalid value means the response is stale (RFC 9111 §4.2.1).
                "max-age" => found.max_age = Some(seconds(&value).unwrap_or(Duration::ZERO)),
                "s-maxage" => found.s_maxage = Some(seconds(&value).unwrap_or(Duration::ZERO)),
                _ => {}
            }
        }
        found
    }
}

/// Whether `response` carries a validator the origin can be asked about.
pub fn has_validator(response: &HeaderMap) -> bool {
    response.contains_key(header::ETAG) || response.contains_key(header::LAST_MODIFIED)
}

fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

impl CachePolicy {
    /// Whether a response of `status` with `response` headers, to a GET with
    /// `request` headers, may be stored, and if so how fresh it is; `now` is the
    /// wall clock (for `Date`, `Expires` and `Last-Modified`).
    pub fn assess(
        &self,
        request: &HeaderMap,
        status: StatusCode,
        response: &HeaderMap,
        now: SystemTime,
    ) -> Option<Freshness> {
        let code = status.as_u16();
        if !(200..600).contains(&code) || code == 206 || code == 304 {
            return None;
        }
        let understood = CACHEABLE_BY_DEFAULT.contains(&code);
        let cc = ResponseDirectives::of(response);
        if cc.must_understand {
            if !understood {
                return None;
            }
        } else if cc.no_store {
            return None;
        }
        if cc.private || vary_forbids_storing(response) {
            return None;
        }
        if request.contains_key(header::AUTHORIZATION)
            && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
        {
            return None;
        }
        let generated = date(response, header::DATE).filter(|&d| d <= now);
        let expires = response.get(header::EXPIRES).map(|value| {
            let expires = value
                .to_str()
                .ok()
                .and_then(|v| httpdate::parse_http_date(v).ok());
            // An Expires that does not parse ("0", say) means already expired.
            expires.map_or(Duration::ZERO, |expires| {
                expires
                    .duration_since(generated.unwrap_or(now))
                    .unwrap_or_default()
            })
        });
        let explicit = cc.s_maxage.or(cc.max_age).or(expires);
        let lifetime = if cc.no_cache {
            Some(Duration::ZERO)
        } else {
            explicit.or(if cc.public || understood {
                self.default_lifetime
                    .or_else(|| self.heuristic(response, generated.unwrap_or(now)))
            } else {
                None
            })
        };
        let lifetime = match lifetime {
            Some(lifetime) if !lifetime.is_zero() => lifetime,
            // Nothing fresh about it: worth keeping only to revalidate.
            _ if has_validator(response) && understood => Duration::ZERO,
            _ => return None,
        };
        Some(Freshness {
            lifetime,
            initial_age: initial_age(response, now),
        })
    }

    /// A fraction of the time since `Last-Modified`, if configured.
    fn heuristic(&self, response: &HeaderMap, generated: SystemTime) -> Option<Duration> {
        if self.heuristic_percent == 0 {
            return None;
        }
        let modified = date(response, header::LAST_MODIFIED)?;
        let since = generated.duration_since(modified).ok()?;
        Some(since * self.heuristic_percent / 100)
    }
}

/// `Vary: *`: no request can match it, so storing it is pointless.
fn vary_forbids_storing(response: &HeaderMap) -> bool {
    response
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|field| field.trim() == "*")
}

/// How old a response was on arrival (RFC 9111 §4.2.3, without the response delay).
fn initial_age(response: &HeaderMap, now: SystemTime) -> Duration {
    let stated = response
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent = date(response, header::DATE)
        .and_then(|date| now.duration_since(date).ok())
        .unwrap_or_default();
    stated.max(apparent)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const BUCKET: CachePolicy = CachePolicy {
        default_lifetime: Some(HOUR),
        heuristic_percent: 0,
    };
    const STRICT: CachePolicy = CachePolicy {
        default_lifetime: None,
        heuristic_percent: 0,
    };

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    fn now() -> SystemTime {
        httpdate::parse_http_date("Thu, 26 Nov 2026 12:00:00 GMT").expect("date")
    }

    fn http_date(offset_seconds: i64) -> String {
        let at = if offset_seconds >= 0 {
            now() + Duration::from_secs(offset_seconds.unsigned_abs())
        } else {
            now() - Duration::from_secs(offset_seconds.unsigned_abs())
        };
        httpdate::fmt_http_date(at)
    }

    fn lifetime(policy: CachePolicy, status: u16, response: &[(&str, String)]) -> Option<u64> {
        policy
            .assess(
                &HeaderMap::new(),
                StatusCode::from_u16(status).expect("status"),
                &headers(response),
                now(),
            )
            .map(|f| f.lifetime.as_secs())
    }

    fn cc(value: &str) -> (&'static str, String) {
        ("cache-control", value.to_string())
    }

    #[test]
    fn shared_max_age_beats_max_age_beats_expires() {
        let expires = ("expires", http_date(300));
        let date = ("date", http_date(0));
        assert_eq!(
            lifetime(STRICT, 200, &[date.clone(), expires.clone()]),
            Some(300)
        );
        assert_eq!(
            lifetime(STRICT, 200, &[cc("max-age=60"), expires.clone()]),
            Some(60)
        );
        assert_eq!(
            lifetime(STRICT, 200, &[cc("max-age=60, s-maxage=10"), expires]),
            Some(10)
        );
        assert_eq!(
            lifetime(STRICT, 200, &[("expires", "0".into())]),
            None,
            "an invalid Expires is already stale, and there is no validator"
        );
    }

    #[test]
    fn the_default_lifetime_applies_only_where_the_response_states_none() {
        assert_eq!(lifetime(BUCKET, 200, &[]), Some(3600));
        assert_eq!(lifetime(BUCKET, 200, &[cc("public")]), Some(3600));
        assert_eq!(lifetime(STRICT, 200, &[cc("public")]), None, "no default");
        assert_eq!(lifetime(STRICT, 302, &[]), None, "not cacheable by default");
        assert_eq!(lifetime(STRICT, 302, &[cc("max-age=5")]), Some(5));
    }

    #[test]
    fn heuristic_freshness_is_a_share_of_the_time_since_modification_when_configured() {
        let modified = ("last-modified", http_date(-1000));
        let heuristic = CachePolicy {
            default_lifetime: None,
            heuristic_percent: 10,
        };
        assert_eq!(
            lifetime(heuristic, 200, std::slice::from_ref(&modified)),
            Some(100)
        );
        assert_eq!(
            lifetime(STRICT, 200, &[modified]),
            Some(0),
            "unconfigured: stored only to revalidate"
        );
    }

    #[test]
    fn forbidden_storing() {
        for value in ["no-store", "private, max-age=600"] {
            assert_eq!(lifetime(BUCKET, 200, &[cc(value)]), None, "{value}");
        }
        assert_eq!(lifetime(BUCKET, 206, &[cc("max-age=60")]), None);
        assert_eq!(
            lifetime(BUCKET, 200, &[cc("max-age=60"), ("vary", "*".into())]),
            None
        );
        // must-understand overrides no-store for statuses the cache understands.
        assert_eq!(
            lifetime(STRICT, 200, &[cc("must-understand, no-store, max-age=60")]),
            Some(60)
        );
        assert_eq!(
            lifetime(STRICT, 299, &[cc("must-understand, no-store, max-age=60")]),
            None
        );
    }

    #[test]
    fn revalidate_always_when_stale_on_arrival_but_validatable() {
        let etag = ("etag", "\"v1\"".to_string());
        assert_eq!(
            lifetime(STRICT, 200, &[cc("no-cache"), etag.clone()]),
            Some(0)
        );
        assert_eq!(
            lifetime(STRICT, 200, &[cc("max-age=0"), etag.clone()]),
            Some(0)
        );
        assert_eq!(lifetime(STRICT, 200, &[cc("no-cache")]), None);
        assert_eq!(lifetime(STRICT, 200, &[etag]), Some(0));
    }

    #[test]
    fn authorization_needs_the_response_to_allow_sharing() {
        let request = headers(&[("authorization", "Bearer x".into())]);
        let assess = |value: &str| {
            STRICT
                .assess(&request, StatusCode::OK, &headers(&[cc(value)]), now())
                .is_some()
        };
        assert!(!assess("max-age=60"));
        assert!(assess("public, max-age=60"));
        assert!(assess("s-maxage=60"));
        assert!(assess("max-age=60, must-revalidate"));
    }

    #[test]
    fn age_on_arrival_is_the_larger_of_age_and_date() {
        let freshness = |pairs: &[(&str, String)]| {
            STRICT
                .assess(&HeaderMap::new(), StatusCode::OK, &headers(pairs), now())
                .expect("storable")
                .initial_age
                .as_secs()
        };
        assert_eq!(freshness(&[cc("max-age=600"), ("age", "30".into())]), 30);
        assert_eq!(
            freshness(&[
                cc("max-age=600"),
                ("age", "30".into()),
                ("date", http_date(-90))
            ]),
            90
        );
        assert_eq!(
            freshness(&[cc("max-age=600"), ("date", http_date(50))]),
            0,
            "a Date in the future is no age"
        );
    }
}
