//! Whether a response came from the cache: the `X-Cache` header and the logs.

/// Whether a response came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Fetched from the origin and stored.
    Miss,
    /// Fetched from the origin and not stored (too large or not cacheable).
    Bypass,
}

impl CacheStatus {
    /// Spelling in the `X-Cache` header and in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}
