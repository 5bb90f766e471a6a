//! Whether a response came from the cache: the `X-Cache` header (kept for existing
//! clients; `Cache-Status` says more) and the logs.

/// Whether a response came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Fetched from the origin to be stored (a body of unknown length that turns
    /// out too large is not).
    Miss,
    /// Fetched from the origin and not stored (too large or not cacheable).
    Bypass,
    /// A stale stored copy, served while it is refreshed or because the origin
    /// failed (within the copy's stale windows).
    Stale,
    /// A stored copy the origin confirmed current (304) before it was served.
    Revalidated,
}

impl CacheStatus {
    /// Spelling in the `X-Cache` header and in logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
        }
    }
}
