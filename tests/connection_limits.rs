//! Connections that only hold a slot: clients that finish the TLS handshake and then
//! say nothing, or go quiet after a request, over HTTP/1.1 and HTTP/2. They are closed
//! within their limit while other clients are served throughout, and they never make
//! a graceful shutdown wait.

use std::sync::Arc;
use std::time::Duration;

use meridian_shared::server::{self, ServeOptions};
use meridian_shared::tls::DevCa;
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::harness::serve_edge_over;

/// A TLS edge serving one object, on port 0.
struct TlsEdge {
    url: String,
    addr: std::net::SocketAddr,
    ca: DevCa,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TlsEdge {
    async fn start(options: ServeOptions) -> TlsEdge {
        meridian_shared::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = DevCa::load_or_create(dir.path()).expect("ca");
        let tls = meridian_shared::tls::server_config(&ca.issue_localhost().expect("cert"))
            .expect("tls config");
        let (addr, stop, served) =
            serve_edge_over("hello.txt", b"hello".to_vec(), Some(tls), options).await;
        TlsEdge {
            url: format!("https://{addr}/hello.txt"),
            addr,
            ca,
            stop,
            served,
            _dir: dir,
        }
    }

    /// Opens a connection, completes the handshake offering only `alpn`, and sends
    /// nothing.
    async fn silent_connection(&self, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca.cert_pem().as_bytes())
        {
            roots.add(cert.expect("pem")).expect("root");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        tls
    }

    fn client(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).expect("cert");
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }
}

/// Makes one HTTP/1.1 request on `connection` and checks it is answered 200.
async fn request_once(connection: &mut TlsStream<TcpStream>) {
    use tokio::io::AsyncWriteExt;
    connection
        .write_all(b"GET /hello.txt HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut response = [0u8; 512];
    let n = connection.read(&mut response).await.expect("response");
    assert!(response[..n].starts_with(b"HTTP/1.1 200"));
}

/// Waits until the server closes `connection` (end of stream or reset); returns when.
async fn closed_by_server(mut connection: impl tokio::io::AsyncRead + Unpin) -> Instant {
    let mut buffer = [0u8; 1024];
    loop {
        match connection.read(&mut buffer).await {
            Ok(0) | Err(_) => return Instant::now(),
            // HTTP/2 servers speak first (SETTINGS, later GOAWAY): keep reading.
            Ok(_) => continue,
        }
    }
}

fn short_limits(max_connections: usize) -> ServeOptions {
    ServeOptions {
        max_connections,
        header_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(800),
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn silent_tls_connections_are_closed_within_the_limit_while_others_are_served() {
    const SILENT: usize = 300;
    // One slot more than the silent clients take: the steady client's.
    let edge = TlsEdge::start(short_limits(SILENT + 1)).await;
    let steady = edge.client();
    assert_eq!(
        steady.get(&edge.url).send().await.expect("get").status(),
        200
    );

    // A steady client keeps asking on its own (kept-alive) connection throughout.
    let keep_asking = {
        let (steady, url) = (steady.clone(), edge.url.clone());
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(3);
            let mut answered = 0;
            while Instant::now() < until {
                let response = steady.get(&url).send().await.expect("steady client served");
                assert_eq!(response.status(), 200);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answered
        })
    };

    // Silent clients fill every other slot, half of them over HTTP/2.
    let opened = Instant::now();
    let mut silent = Vec::new();
    for i in 0..SILENT {
        let alpn: &[u8] = if i % 2 == 0 { b"h2" } else { b"http/1.1" };
        silent.push(edge.silent_connection(alpn).await);
    }
    let limit = Duration::from_millis(800);
    let closed = futures::future::join_all(silent.into_iter().map(closed_by_server)).await;
    for (i, at) in closed.iter().enumerate() {
        assert!(
            *at - opened < limit + Duration::from_secs(3),
            "silent connection {i} was held {:?}",
            *at - opened
        );
    }
    // The slots came back: a new client gets in.
    let fresh = edge.client();
    assert_eq!(
        fresh.get(&edge.url).send().await.expect("get").status(),
        200
    );
    assert!(keep_asking.await.expect("steady client") > 10);
    edge.stop.cancel();
}

#[tokio::test]
async fn connections_that_go_quiet_after_a_request_are_closed() {
    let edge = TlsEdge::start(short_limits(16)).await;
    for alpn in [b"h2".as_slice(), b"http/1.1".as_slice()] {
        let client = edge.client();
        assert_eq!(
            client.get(&edge.url).send().await.expect("get").status(),
            200
        );
        // A raw connection that made one request and then went quiet.
        let mut connection = edge.silent_connection(alpn).await;
        if alpn == b"http/1.1" {
            request_once(&mut connection).await;
        }
        let quiet_since = Instant::now();
        let closed = closed_by_server(connection).await;
        assert!(
            closed - quiet_since < Duration::from_millis(800) + Duration::from_secs(3),
            "{alpn:?}: held {:?}",
            closed - quiet_since
        );
    }
    edge.stop.cancel();
}

#[tokio::test]
async fn an_http1_client_that_trickles_its_next_request_head_is_closed_after_the_header_limit() {
    // Long idle limit: only the time to send a request's headers can close it in time.
    let edge = TlsEdge::start(ServeOptions {
        header_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    // First after a miss (the service serves the connection), then after a hit (the
    // quick lane serves it).
    for first_request in ["a miss", "a hit"] {
        let mut connection = edge.silent_connection(b"http/1.1").await;
        request_once(&mut connection).await;
        let closed_after = trickle_the_next_request_head(connection).await;
        assert!(
            closed_after < Duration::from_millis(800) + Duration::from_secs(2),
            "after {first_request}: held {closed_after:?} while its next request head trickled in",
        );
    }
}

/// Sends the next request's head one byte every 100 ms (bytes keep coming, the head
/// never ends) until the server closes `connection`; how long that took.
async fn trickle_the_next_request_head(connection: TlsStream<TcpStream>) -> Duration {
    use tokio::io::AsyncWriteExt;
    let started = Instant::now();
    let (reader, mut writer) = tokio::io::split(connection);
    let trickling = tokio::spawn(async move {
        for byte in b"GET /hello.txt HTTP/1.1\r\nx-slow: ".iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
    });
    let closed = closed_by_server(reader).await;
    trickling.abort();
    closed - started
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_or_silent_clients() {
    // Long limits: only shutdown itself can close these connections in time.
    let options = ServeOptions {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(8),
        ..ServeOptions::default()
    };
    let edge = TlsEdge::start(options).await;
    let client = edge.client();
    assert_eq!(
        client.get(&edge.url).send().await.expect("get").status(),
        200
    );
    let _silent_h2 = edge.silent_connection(b"h2").await;
    let _silent_h1 = edge.silent_connection(b"http/1.1").await;

    let asked = Instant::now();
    edge.stop.cancel();
    edge.served.await.expect("join").expect("serve");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "shutdown waited {:?} for connections with nothing in flight",
        asked.elapsed()
    );
}

#[tokio::test]
async fn pings_do_not_keep_an_http2_connection_without_requests_open() {
    use tokio::io::AsyncWriteExt;
    let edge = TlsEdge::start(short_limits(16)).await;
    let mut connection = edge.silent_connection(b"h2").await;
    // The client preface and an empty SETTINGS frame, then a PING every 200 ms: bytes
    // keep moving both ways (the server acknowledges each PING), but no request comes.
    connection
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let opened = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(connection);
    let pinging = tokio::spawn(async move {
        let ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00meridian";
        while writer.write_all(ping).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if opened.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
    });
    let mut buffer = [0u8; 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let held = opened.elapsed();
    assert!(
        held < Duration::from_millis(800) + Duration::from_secs(3),
        "a pinging client without requests was held {held:?}"
    );
    pinging.abort();
    edge.stop.cancel();
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_ends_its_request() {
    use tokio::io::AsyncWriteExt;
    let router = axum::Router::new().route(
        "/",
        axum::routing::put(|body: bytes::Bytes| async move { format!("{} bytes", body.len()) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        router,
        None,
        short_limits(16),
        stop.clone().cancelled_owned(),
    ));
    let mut client = TcpStream::connect(addr).await.expect("connect");
    // Announces 100 bytes, sends 10, then waits without closing anything.
    client
        .write_all(b"PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let asked = Instant::now();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
        .await
        .expect("the server answers instead of waiting forever")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(asked.elapsed() < Duration::from_millis(800) + Duration::from_secs(3));
    stop.cancel();
}

#[tokio::test]
async fn one_client_address_cannot_hold_more_than_its_share_while_another_is_served() {
    let edge = TlsEdge::start(ServeOptions {
        max_connections: 8,
        max_connections_per_address: 3,
        ..ServeOptions::default()
    })
    .await;
    // 127.0.0.1 takes its three connections and keeps them.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(edge.silent_connection(b"http/1.1").await);
    }
    // Its fourth is closed as it arrives, without a handshake.
    let mut fourth = TcpStream::connect(edge.addr).await.expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), fourth.read(&mut buffer))
        .await
        .expect("closed at once, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another address (127.0.0.2: all of 127/8 is this machine) is served.
    let cert = reqwest::Certificate::from_pem(edge.ca.cert_pem().as_bytes()).expect("cert");
    let other = reqwest::Client::builder()
        .tls_certs_only([cert])
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let response = other.get(&edge.url).send().await.expect("served");
    assert_eq!(response.status(), 200);
    // A connection given back makes room for the address again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..40 {
        if edge.client().get(&edge.url).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "127.0.0.1 is served again once one of its connections closed"
    );
    edge.stop.cancel();
}

#[tokio::test]
async fn oversized_targets_get_414_and_oversized_headers_431_over_both_protocols() {
    let edge = TlsEdge::start(ServeOptions::default()).await;
    let cert = reqwest::Certificate::from_pem(edge.ca.cert_pem().as_bytes()).expect("cert");
    let http1 = reqwest::Client::builder()
        .tls_certs_only([cert.clone()])
        .http1_only()
        .build()
        .expect("client");
    let http2 = reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .expect("client");
    let long_target = format!("{}?q={}", edge.url, "a".repeat(server::MAX_URI_BYTES));
    let big_header = "b".repeat(server::MAX_HEADER_BYTES);
    for (client, version) in [
        (&http1, reqwest::Version::HTTP_11),
        (&http2, reqwest::Version::HTTP_2),
    ] {
        let response = client.get(&long_target).send().await.expect("answered");
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 414, "{version:?}");
        let response = client
            .get(&edge.url)
            .header("x-big", &big_header)
            .send()
            .await
            .expect("answered");
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 431, "{version:?}");
        let response = client.get(&edge.url).send().await.expect("answered");
        assert_eq!(
            response.status(),
            200,
            "{version:?}: ordinary requests still work"
        );
    }
    edge.stop.cancel();
}

/// An edge on plain HTTP holding a stored 7 MiB object (`/large.bin`, already fetched
/// once), with `options`; its address, the body and the stop token.
async fn edge_with_a_large_stored_object(
    options: ServeOptions,
) -> (std::net::SocketAddr, Vec<u8>, CancellationToken) {
    let body = crate::harness::pseudo_random_bytes(7 * 1024 * 1024, 9);
    let (addr, stop, _) = serve_edge_over("large.bin", body.clone(), None, options).await;
    let filled = reqwest::get(format!("http://{addr}/large.bin"))
        .await
        .expect("miss");
    assert_eq!(filled.bytes().await.expect("body").len(), body.len());
    (addr, body, stop)
}

/// Asks for `/large.bin` on a connection with a small receive window, so the edge's
/// writes are held back while the client reads slowly.
async fn ask_for_the_large_object(addr: std::net::SocketAddr) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(16 * 1024)
        .expect("small window");
    let mut connection = socket.connect(addr).await.expect("connect");
    connection
        .write_all(b"GET /large.bin HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    connection
}

/// Reads `connection` until `wanted` body bytes came or it closes, pausing `pause`
/// after each read (and once for `stall` after the first `stall_after` bytes); the
/// response head and the body bytes that came.
async fn read_response(
    connection: &mut TcpStream,
    wanted: usize,
    pause: Duration,
    stall: Option<(usize, Duration)>,
) -> (String, Vec<u8>) {
    let mut received = Vec::with_capacity(wanted + 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut stall = stall;
    let body_start = |received: &[u8]| {
        received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|end| end + 4)
    };
    loop {
        match connection.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
        if body_start(&received).is_some_and(|start| received.len() >= start + wanted) {
            break;
        }
        match stall {
            Some((after, length)) if received.len() >= after => {
                tokio::time::sleep(length).await;
                stall = None;
            }
            _ => tokio::time::sleep(pause).await,
        }
    }
    let start = body_start(&received).expect("a response head");
    let head = String::from_utf8_lossy(&received[..start]).into_owned();
    (head, received.split_off(start))
}

/// Checks that a slow read started at `started` took longer than `at_least` (the limit
/// it had to outlast, with a margin) and that all `length` bytes arrived.
fn all_arrived_after(started: Instant, at_least: Duration, received: usize, length: usize) {
    let took = started.elapsed();
    assert!(took > at_least, "the read outlasted the limit ({took:?})");
    assert_eq!(received, length, "the whole body arrived, in {took:?}");
}

#[tokio::test]
async fn a_slow_reader_of_a_large_stored_object_is_not_cut_off_while_the_bytes_keep_moving() {
    // The whole body is one stored buffer, handed over at once: sending it takes far
    // longer than the time to send a request's headers.
    let (addr, body, stop) = edge_with_a_large_stored_object(ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    })
    .await;
    let mut connection = ask_for_the_large_object(addr).await;
    let started = Instant::now();
    let (head, received) =
        read_response(&mut connection, body.len(), Duration::from_millis(20), None).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("x-cache: HIT"), "a stored copy: {head}");
    all_arrived_after(started, Duration::from_secs(1), received.len(), body.len());
    // Sent a piece at a time as the client made room (from sealed memory, over plain
    // HTTP): every byte in its place.
    assert!(received == body, "the body arrived changed");
    stop.cancel();
}

#[tokio::test]
async fn a_reader_that_stops_reading_a_large_object_is_closed_after_the_idle_limit() {
    let (addr, body, stop) = edge_with_a_large_stored_object(ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        ..ServeOptions::default()
    })
    .await;
    let mut connection = ask_for_the_large_object(addr).await;
    // Reads a little, stops for well over the idle limit, then reads what is left.
    let stall = (256 * 1024, Duration::from_secs(3));
    let (head, received) =
        read_response(&mut connection, body.len(), Duration::ZERO, Some(stall)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        received.len() < body.len(),
        "closed while the client did not read: {} of {} bytes came",
        received.len(),
        body.len()
    );
    stop.cancel();
}

#[tokio::test]
async fn a_slow_http2_reader_of_a_large_stored_object_is_not_cut_off_while_it_keeps_reading() {
    // HTTP/2 holds the body back by flow control, not at the socket: the client's small
    // windows pace the edge to its reading.
    let (addr, body, stop) = edge_with_a_large_stored_object(ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    })
    .await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_initial_stream_window_size(64 * 1024)
        .http2_initial_connection_window_size(64 * 1024)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut response = client
        .get(format!("http://{addr}/large.bin"))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.headers()["x-cache"], "HIT");
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) | Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    all_arrived_after(started, Duration::from_secs(2), received, body.len());
    stop.cancel();
}
