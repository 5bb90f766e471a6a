//! `meridian get` when an edge dies mid-download: the next edge resumes from the byte
//! already received (a Range request), and the result is checked against the object's
//! MD5 before it is kept. The dying edge is a stand-in (named as such) that sends the
//! object's headers and its first 100 KiB, then cuts the connection; boot is pointed at
//! it first and at the stack's real Madrid edge second.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use meridian_shared::Config;
use meridian_shared::config::OutboundSettings;
use tokio_util::sync::CancellationToken;

use crate::harness::stack::TestStack;
use crate::harness::{pseudo_random_bytes, serve_plain};

/// Bytes the stand-in sends before it dies.
const SENT_BEFORE_DYING: usize = 100 * 1024;

/// A stand-in edge that answers every GET with `headers` and the first
/// [`SENT_BEFORE_DYING`] bytes of `body`, then breaks the connection.
fn dying_edge(headers: HeaderMap, body: Arc<Vec<u8>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/{*name}",
            get(move || {
                let (headers, body) = (headers.clone(), body.clone());
                async move {
                    let first = Bytes::copy_from_slice(&body[..SENT_BEFORE_DYING]);
                    let stream = async_stream::stream! {
                        yield Ok(first);
                        // Long enough for the headers and the first bytes to go out.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        yield Err(std::io::Error::other("the edge died"));
                    };
                    (headers, axum::body::Body::from_stream(stream)).into_response()
                }
            }),
        )
}

/// Points the stack's `stack.json` at a boot whose Madrid answer is `dying` first and
/// the stack's real Madrid edge second.
async fn boot_preferring(stack: &TestStack, dying: &str, stop: &CancellationToken) {
    let real_madrid = stack.stack.info().edges[0].url.clone();
    let mut config = Config::default();
    config.regions[0].edges = vec![dying.to_string(), real_madrid];
    config.boot.health.probe = false;
    config.validate().expect("valid");
    let boot = meridian_boot::BootState::from_config(&config, reqwest::Client::new())
        .await
        .expect("boot");
    let mut info = stack.stack.info().clone();
    info.boot = serve_plain(meridian_boot::router(boot), stop).await;
    info.write().expect("stack.json");
}

/// Uploads `body` as `name`; returns the Madrid edge's headers for it.
async fn upload(stack: &TestStack, name: &str, body: &[u8]) -> HeaderMap {
    let ticket = stack.ticket(name, "application/octet-stream").await;
    let uploaded = stack
        .upload(&ticket, "application/octet-stream", body.to_vec())
        .await;
    assert_eq!(uploaded.status(), 200);
    let url = format!("{}/{name}", stack.stack.info().edges[0].url);
    let response = stack.http.get(&url).send().await.expect("edge answers");
    assert_eq!(response.status(), 200);
    let mut headers = HeaderMap::new();
    for field in [header::ETAG, header::CONTENT_LENGTH, header::CONTENT_TYPE] {
        headers.insert(field.clone(), response.headers()[&field].clone());
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_cut_by_a_dying_edge_is_resumed_at_the_next_edge_and_verified() {
    let stack = TestStack::start().await;
    let stop = CancellationToken::new();
    let body = pseudo_random_bytes(300 * 1024, 21);
    let headers = upload(&stack, "resume.bin", &body).await;
    let dying = serve_plain(dying_edge(headers, Arc::new(body.clone())), &stop).await;
    boot_preferring(&stack, &dying, &stop).await;

    let client =
        meridian_cli::client::Client::connect(&stack.data_dir(), OutboundSettings::default())
            .await
            .expect("client");
    let out = stack.parent.path().join("resume.bin");
    let report = meridian_cli::client::get(&client, "resume.bin", Some(&out), None)
        .await
        .expect("the download completes");
    assert_eq!(report.resumed_at, Some(SENT_BEFORE_DYING as u64));
    assert_eq!(report.edge, stack.stack.info().edges[0].url);
    assert!(
        std::fs::read(&out).expect("file") == body,
        "the right bytes"
    );
    stop.cancel();
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_download_whose_bytes_do_not_match_the_md5_is_not_kept() {
    let stack = TestStack::start().await;
    let stop = CancellationToken::new();
    let body = pseudo_random_bytes(300 * 1024, 22);
    let headers = upload(&stack, "damaged.bin", &body).await;
    // The dying edge also flips a bit in what it sends.
    let mut damaged = body.clone();
    damaged[10] ^= 0x01;
    let dying = serve_plain(dying_edge(headers, Arc::new(damaged)), &stop).await;
    boot_preferring(&stack, &dying, &stop).await;

    let client =
        meridian_cli::client::Client::connect(&stack.data_dir(), OutboundSettings::default())
            .await
            .expect("client");
    let out = stack.parent.path().join("damaged.bin");
    let refused = meridian_cli::client::get(&client, "damaged.bin", Some(&out), None)
        .await
        .expect_err("the MD5 does not match");
    assert!(refused.to_string().contains("damaged"), "{refused}");
    assert!(!out.exists(), "nothing kept");
    assert!(
        !stack.parent.path().join(".damaged.bin.part").exists(),
        "no partial file left"
    );
    stop.cancel();
    stack.stack.stop().await;
}
