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

/// Serves `service` (a router, say) over plain HTTP on a port-0 listener until `stop`;
/// returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve_plain(
    service: impl meridian_shared::server::HttpService,
    stop: &CancellationToken,
) -> String {
    let addr = serve_on(([127, 0, 0, 1], 0).into(), service, stop).await;
    format!("http://{addr}")
}

/// Serves an edge as its binary does (its service, and its quick lane for plain hits)
/// over plain HTTP on port 0 until `stop`; returns its base URL (`http://127.0.0.1:PORT`).
pub async fn serve_edge_plain(state: meridian_edge::EdgeState, stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(meridian_edge::run_with_options(
        listener,
        None,
        state,
        meridian_shared::server::ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));
    format!("http://{addr}")
}

/// Serves `service` over plain HTTP on `addr` (port 0 for any) until `stop`; returns the
/// address bound, to serve again on the same port later.
pub async fn serve_on(
    addr: std::net::SocketAddr,
    service: impl meridian_shared::server::HttpService,
    stop: &CancellationToken,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let bound = listener.local_addr().expect("addr");
    tokio::spawn(meridian_shared::server::serve(
        listener,
        service,
        None,
        meridian_shared::server::ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));
    bound
}

/// Serves an edge over a memory bucket holding `body` as `name`, on port 0 (TLS when
/// `tls` is given), with `options` (counting in the edge's own metrics); its address,
/// what stops it, and its task.
pub async fn serve_edge_over(
    name: &str,
    body: Vec<u8>,
    tls: Option<meridian_shared::tls::TlsConfig>,
    options: meridian_shared::server::ServeOptions,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    use meridian_shared::Bucket;
    let bucket = meridian_shared::storage::MemoryBucket::new(&format!("edge-over-{name}"));
    let name = meridian_shared::ObjectName::new(name).expect("name");
    bucket
        .put(
            &name,
            meridian_shared::storage::stream_from_bytes(body),
            meridian_shared::storage::PutOptions::default(),
        )
        .await
        .expect("put");
    let state = meridian_edge::EdgeState::new(
        "test-region",
        std::sync::Arc::new(bucket),
        &meridian_shared::config::EdgeSettings::default(),
        meridian_shared::auth::PurgeSigningKey::generate()
            .expect("key")
            .public_key(),
    )
    .expect("edge opens");
    let counted = state.serve_options();
    let options = meridian_shared::server::ServeOptions {
        open_connections: counted.open_connections,
        sent_without_copying: counted.sent_without_copying,
        ..options
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let served = tokio::spawn(meridian_edge::run_with_options(
        listener,
        tls,
        state,
        options,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop, served)
}

/// Boot's answer to `GET /v1/edges{query}` sent with `headers`.
pub async fn boot_answer(boot: &str, query: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let mut request = reqwest::Client::new().get(format!("{boot}/v1/edges{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("boot answers")
        .json()
        .await
        .expect("JSON answer")
}

/// The edge URLs of one of boot's answers, in order.
pub fn edge_urls(answer: &serde_json::Value) -> Vec<String> {
    answer["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["url"].as_str().expect("url").to_string())
        .collect()
}

/// The metrics at `url` as `(name and labels, value)` pairs, checking on the way that
/// the text is well-formed Prometheus (OpenMetrics) exposition: comment lines, samples
/// of `name{labels} value` with a numeric value, and the closing `# EOF`.
pub async fn scrape(url: &str) -> std::collections::HashMap<String, f64> {
    let response = reqwest::get(url).await.expect("metrics answer");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.expect("body");
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_string(), value);
    }
    samples
}
