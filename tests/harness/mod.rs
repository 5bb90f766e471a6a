//! Helpers shared by the integration tests.

pub mod fake_gcs;
pub mod stack;

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

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

/// Serves `router` over plain HTTP on a port-0 listener until `stop`; returns its base
/// URL (`http://127.0.0.1:PORT`).
pub async fn serve_plain(router: axum::Router, stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(meridian_shared::server::serve(
        listener,
        router,
        None,
        meridian_shared::server::ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));
    url
}
