//! Calls to other services are bounded by the configured timeouts: a storage backend
//! that accepts connections and then says nothing makes an edge answer 504 within the
//! configured time, not hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_edge::EdgeState;
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::{EdgeSettings, OutboundSettings};
use meridian_shared::storage::GcsClient;
use tokio_util::sync::CancellationToken;

use crate::harness::serve_edge_plain;

/// A server that accepts connections, reads whatever arrives, and never answers.
async fn silent_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut socket, &mut tokio::io::sink()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_silent_storage_backend_gives_504_within_the_configured_timeout() {
    let storage = silent_server().await;
    let limits = OutboundSettings {
        connect_timeout_ms: 1_000,
        request_timeout_ms: 500,
    };
    let bucket = GcsClient::anonymous(&format!("http://{storage}"), &limits)
        .await
        .expect("client")
        .bucket("silent-bucket");
    let state = EdgeState::new(
        "test-region",
        Arc::new(bucket),
        &EdgeSettings::default(),
        PurgeSigningKey::generate().expect("key").public_key(),
    )
    .expect("edge opens");
    let stop = CancellationToken::new();
    let edge = serve_edge_plain(state, &stop).await;

    let http = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let asked = Instant::now();
        let response = http
            .request(method.clone(), format!("{edge}/object.txt"))
            .send()
            .await
            .expect("edge answers");
        let waited = asked.elapsed();
        assert_eq!(response.status(), 504, "{method}");
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
            "{method}: answered after {waited:?}"
        );
        if method == reqwest::Method::GET {
            assert_eq!(
                response.text().await.expect("body"),
                r#"{"error":"Gateway Timeout"}"#
            );
        }
    }
    stop.cancel();
}
