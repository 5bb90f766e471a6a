//! The edge's certificate follows its files: a pair replaced on disk is served to the
//! next handshake while a connection opened before keeps working on the old one, and a
//! pair that does not belong together is refused (the current one stays). Over real
//! TLS, on the same server code the edge runs.

use std::path::Path;
use std::time::Duration;

use meridian_shared::tls::{DevCa, PemPair};
use tokio_util::sync::CancellationToken;

/// The DER of the first certificate in a PEM chain.
fn leaf_der(pair: &PemPair) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

fn write(dir: &Path, cert_pem: &str, key_pem: &str) {
    std::fs::write(dir.join("cert.pem"), cert_pem).expect("write cert");
    std::fs::write(dir.join("key.pem"), key_pem).expect("write key");
}

/// A client that accepts any certificate (the test compares them itself) and reports
/// the one it saw.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .expect("client")
}

/// The certificate the server showed for a GET of `url` by `client`.
async fn served_cert(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.expect("server answers");
    assert_eq!(response.status(), 200);
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a peer certificate")
        .to_vec()
}

/// The certificate new handshakes get, once it is `expected` (the watcher looks every
/// 100 ms) or after 5 s, whichever comes first.
async fn served_soon(url: &str, expected: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = served_cert(&client(), url).await;
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_to_the_next_handshake_only() {
    meridian_shared::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("dir");
    let ca = DevCa::load_or_create(&dir.path().join("ca")).expect("ca");
    let (first, second, stranger) = (
        ca.issue_localhost().expect("issue"),
        ca.issue_localhost().expect("issue"),
        ca.issue_localhost().expect("issue"),
    );
    write(dir.path(), &first.cert_pem, &first.key_pem);
    let config = meridian_shared::cert_reload::reloading_server_config(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
        Duration::from_millis(100),
    )
    .expect("the first pair loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}/healthz", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    tokio::spawn(meridian_shared::server::serve(
        listener,
        router,
        Some(config),
        meridian_shared::server::ServeOptions::default(),
        stop.clone().cancelled_owned(),
    ));

    let early = client();
    assert_eq!(served_cert(&early, &url).await, leaf_der(&first));

    write(dir.path(), &second.cert_pem, &second.key_pem);
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = served_cert(&client(), &url).await;
        if seen == leaf_der(&second) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        leaf_der(&second),
        "new handshakes get the new certificate"
    );
    assert_eq!(
        served_cert(&early, &url).await,
        leaf_der(&first),
        "the connection opened before still works, on the certificate it agreed on"
    );

    // A key that is not the certificate's: refused, the second pair stays.
    write(dir.path(), &second.cert_pem, &stranger.key_pem);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served_cert(&client(), &url).await, leaf_der(&second));
    // Fixed on disk: taken.
    write(dir.path(), &stranger.cert_pem, &stranger.key_pem);
    assert_eq!(
        served_soon(&url, &leaf_der(&stranger)).await,
        leaf_der(&stranger)
    );
    stop.cancel();
}
