//! Calls to other services, always bounded in time (see
//! [`OutboundSettings`](crate::config::OutboundSettings)). Limits are on silence, not
//! on totals: a connection must open within the connect timeout, an answer must start
//! within the request timeout, and a body must keep moving, so a large transfer over a
//! slow link succeeds while a peer that goes quiet fails fast.
//!
//! reqwest's read timeout covers answers and downloads but starts when a request is
//! sent and is not reset while its body uploads, so uploads use
//! [`send_streaming_upload`], which watches the body itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::config::OutboundSettings;
use crate::error::{Error, Result};
use crate::progress::LastProgress;
use crate::storage::ByteStream;

/// `base` plus up to half of it again, at random: retries from many callers spread out
/// instead of arriving together.
pub fn with_jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    base + base.mul_f64(f64::from(byte[0]) / 510.0)
}

/// A client builder with these settings' connect and read timeouts, for requests whose
/// bodies are small (purges, events, metadata) and for downloads.
pub fn client_builder(settings: &OutboundSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout())
        .read_timeout(settings.request_timeout())
}

/// A client builder with only the connect timeout, for [`send_streaming_upload`].
pub fn upload_client_builder(settings: &OutboundSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder().connect_timeout(settings.connect_timeout())
}

/// Sends `request` with `body` as its streamed body, failing with [`Error::Timeout`] if
/// the body stops moving, or the answer does not start, for longer than `silence`.
/// `what` names the call in errors.
pub async fn send_streaming_upload(
    request: reqwest::RequestBuilder,
    body: ByteStream,
    silence: Duration,
    what: &str,
) -> Result<reqwest::Response> {
    let progress = Arc::new(LastProgress::new());
    let finished = Arc::new(AtomicBool::new(false));
    let noted = progress.clone();
    let body = body.map(move |chunk| {
        noted.note();
        chunk
    });
    // Yields nothing: only notes that the body has ended, and when.
    let (done, ended) = (progress.clone(), finished.clone());
    let body = body.chain(futures::stream::poll_fn(move |_| {
        ended.store(true, Ordering::Relaxed);
        done.note();
        std::task::Poll::<Option<std::io::Result<bytes::Bytes>>>::Ready(None)
    }));
    let send = request.body(reqwest::Body::wrap_stream(body)).send();
    tokio::pin!(send);
    loop {
        tokio::select! {
            sent = &mut send => return sent.map_err(|e| Error::from_http(what.to_string(), e)),
            () = tokio::time::sleep_until(progress.at() + silence) => {
                if Instant::now() >= progress.at() + silence {
                    let stage = if finished.load(Ordering::Relaxed) {
                        "no answer"
                    } else {
                        "the upload stalled"
                    };
                    return Err(Error::Timeout {
                        what: format!("{what}: {stage} for {silence:?}"),
                        source: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts connections and reads them forever without answering.
    async fn silent_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut socket, &mut sink).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_upload_to_a_silent_server_times_out_after_its_body() {
        let addr = silent_server().await;
        let settings = OutboundSettings {
            connect_timeout_ms: 1_000,
            request_timeout_ms: 300,
        };
        let client = upload_client_builder(&settings).build().expect("client");
        let body = crate::storage::stream_from_bytes(vec![0u8; 100_000]);
        let started = std::time::Instant::now();
        let result = send_streaming_upload(
            client.put(format!("http://{addr}/x")),
            body,
            settings.request_timeout(),
            "upload to the silent server",
        )
        .await;
        let error = result.expect_err("times out");
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
        assert!(error.to_string().contains("no answer"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_slow_but_moving_upload_is_not_cut() {
        let addr = silent_server().await;
        let client = reqwest::Client::new();
        // Ten chunks 100 ms apart: a second in all, never 300 ms of silence.
        let chunks = futures::stream::iter(0..10).then(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(bytes::Bytes::from_static(b"chunk"))
        });
        let started = std::time::Instant::now();
        let error = send_streaming_upload(
            client.put(format!("http://{addr}/x")),
            Box::pin(chunks),
            Duration::from_millis(300),
            "slow upload",
        )
        .await
        .expect_err("the silent server never answers");
        assert!(error.to_string().contains("no answer"), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(1_000));
    }
}
