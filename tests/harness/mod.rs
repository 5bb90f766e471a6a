//! Helpers shared by the integration tests.

pub mod fake_gcs;
pub mod stack;

use std::path::PathBuf;

/// `tests/data/<relative>`: Google's V4 conformance cases and event samples, with
/// their licence notices.
pub fn testdata(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(relative)
}

/// Deterministic pseudo-random bytes (xorshift), so payloads are not trivially
/// compressible or repetitive, and failures reproduce.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
