//! Large hits over plain HTTP leave from sealed memory (`sendfile`, no copy), byte for
//! byte: whole, as ranges, pipelined behind one another and over HTTP/2. TLS and small
//! bodies take the ordinary path and get the same bytes. (Slow readers of a sealed
//! body: `connection_limits`.)

use std::time::Duration;

use meridian_shared::server::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{pseudo_random_bytes, scrape, serve_edge_over};

const SENT_WITHOUT_COPYING: &str = "meridian_edge_response_body_bytes_sent_without_copying_total";

/// Bytes the edge at `addr` has sent without copying so far.
async fn sent_without_copying(addr: std::net::SocketAddr) -> f64 {
    let metrics = scrape(&format!("http://{addr}/_meridian/metrics")).await;
    metrics[SENT_WITHOUT_COPYING]
}

/// Asks `client` for `url` (with `range`, if any); the status, `X-Cache` and body.
async fn fetch(client: &reqwest::Client, url: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = client.get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let cache = response.headers()["x-cache"]
        .to_str()
        .expect("x-cache")
        .to_string();
    (
        status,
        cache,
        response.bytes().await.expect("body").to_vec(),
    )
}

#[tokio::test]
async fn large_hits_over_plain_http_are_sent_without_copying_and_arrive_byte_for_byte() {
    // An odd length: nothing lines up with pages or buffers by luck.
    let body = pseudo_random_bytes(1024 * 1024 + 123, 21);
    let (addr, stop, _) =
        serve_edge_over("large.bin", body.clone(), None, ServeOptions::default()).await;
    let url = format!("http://{addr}/large.bin");
    let client = reqwest::Client::new();

    // The miss streams from the origin as it arrives: the ordinary path.
    let (status, cache, got) = fetch(&client, &url, None).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    assert!(got == body, "the miss arrived changed");
    assert_eq!(sent_without_copying(addr).await, 0.0);

    // Two hits on one connection, then a large range and a small one.
    for _ in 0..2 {
        let (status, cache, got) = fetch(&client, &url, None).await;
        assert_eq!((status, cache.as_str()), (200, "HIT"));
        assert!(got == body, "a hit arrived changed");
    }
    let (status, _, got) = fetch(&client, &url, Some("bytes=100000-299999")).await;
    assert_eq!(status, 206);
    assert!(
        got == body[100_000..300_000],
        "the large range arrived changed"
    );
    let (status, _, got) = fetch(&client, &url, Some("bytes=5-104")).await;
    assert_eq!(status, 206);
    assert!(got == body[5..105], "the small range arrived changed");
    let head = client.head(&url).send().await.expect("HEAD answer");
    assert_eq!(
        head.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert!(head.bytes().await.expect("no body").is_empty());

    // Exactly the two whole hits and the large range went without a copy; the small
    // range (below what is worth it) and the HEAD sent none.
    let expected = 2 * body.len() + 200_000;
    assert_eq!(sent_without_copying(addr).await, expected as f64);

    // HTTP/2 on the same edge gets the same bytes.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let (status, cache, got) = fetch(&h2, &url, None).await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
    assert!(got == body, "the HTTP/2 hit arrived changed");
    stop.cancel();
}

#[tokio::test]
async fn pipelined_requests_get_each_head_and_body_in_order() {
    let body = pseudo_random_bytes(300_000, 22);
    let (addr, stop, _) =
        serve_edge_over("large.bin", body.clone(), None, ServeOptions::default()).await;
    let filled = reqwest::get(format!("http://{addr}/large.bin"))
        .await
        .expect("miss");
    assert_eq!(filled.bytes().await.expect("body").len(), body.len());

    // Three requests at once: each response's head has to follow the previous body's
    // pages, not overtake them.
    let mut connection = tokio::net::TcpStream::connect(addr).await.expect("connect");
    connection
        .write_all(
            b"GET /large.bin HTTP/1.1\r\nhost: x\r\n\r\n\
              GET /large.bin HTTP/1.1\r\nhost: x\r\nrange: bytes=40000-\r\n\r\n\
              GET /large.bin HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let mut received = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        connection.read_to_end(&mut received),
    )
    .await
    .expect("answered in time")
    .expect("read");

    let mut rest = received.as_slice();
    for (status, expected) in [
        ("200", &body[..]),
        ("206", &body[40_000..]),
        ("200", &body[..]),
    ] {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        let head = String::from_utf8_lossy(&rest[..end]).to_lowercase();
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", expected.len())),
            "{head}"
        );
        let got = &rest[end..end + expected.len()];
        assert!(got == expected, "a pipelined body arrived changed");
        rest = &rest[end + expected.len()..];
    }
    assert!(rest.is_empty(), "{} bytes too many", rest.len());
    stop.cancel();
}

#[tokio::test]
async fn small_bodies_take_the_ordinary_path() {
    let body = pseudo_random_bytes(4096, 23);
    let (addr, stop, _) =
        serve_edge_over("small.bin", body.clone(), None, ServeOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/small.bin");
    for cache in ["MISS", "HIT"] {
        let (status, got_cache, got) = fetch(&client, &url, None).await;
        assert_eq!((status, got_cache.as_str()), (200, cache));
        assert!(got == body);
    }
    assert_eq!(sent_without_copying(addr).await, 0.0);
    stop.cancel();
}

#[tokio::test]
async fn large_hits_over_tls_are_encrypted_from_the_same_memory_byte_for_byte() {
    meridian_shared::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = meridian_shared::tls::DevCa::load_or_create(dir.path()).expect("ca");
    let tls = meridian_shared::tls::server_config(&ca.issue_localhost().expect("cert"))
        .expect("tls config");
    let body = pseudo_random_bytes(700_000, 24);
    let (addr, stop, _) = serve_edge_over(
        "large.bin",
        body.clone(),
        Some(tls),
        ServeOptions::default(),
    )
    .await;
    let cert = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("cert");
    let client = reqwest::Client::builder()
        .tls_certs_only([cert])
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/large.bin", addr.port());
    for cache in ["MISS", "HIT"] {
        let (status, got_cache, got) = fetch(&client, &url, None).await;
        assert_eq!((status, got_cache.as_str()), (200, cache));
        assert!(got == body, "the {cache} arrived changed");
    }
    let (status, _, got) = fetch(&client, &url, Some("bytes=123456-654320")).await;
    assert_eq!(status, 206);
    assert!(got == body[123_456..654_321], "the range arrived changed");
    stop.cancel();
}
