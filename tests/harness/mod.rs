//! Helpers shared by the integration tests.

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

/// Where cargo put the workspace's binaries: beside the test executable's `deps`
/// folder. `scripts/test` builds them before the suite runs.
pub fn binary(name: &str) -> PathBuf {
    let path = std::env::current_exe()
        .expect("test executable")
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target folder")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with scripts/test, which builds the binaries first",
        path.display()
    );
    path
}

/// A loopback port free right now, for processes that must be told theirs.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
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
