//! Serving a router on a listener that the caller bound: plain HTTP or HTTPS (rustls),
//! HTTP/1.1 and HTTP/2, a cap on concurrent connections, header and handshake
//! timeouts, and graceful shutdown that lets in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits and timeouts for one server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once; further clients wait in the accept queue.
    /// Default: 4096.
    pub max_connections: usize,
    /// Time a client gets to send its request headers. Default: 10 s.
    pub header_read_timeout: Duration,
    /// Time a client gets to finish the TLS handshake. Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts (Cloud Run allows
    /// about 10 s). Default: 8 s.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(8),
        }
    }
}

/// Serves `router` on `listener` (TLS when `tls` is given) until `shutdown` resolves,
/// then stops accepting and waits up to `drain_timeout` for open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<crate::tls::TlsConfig>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    tokio::pin!(shutdown);

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed; treat as shutdown
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        let draining = draining.clone();
        let handshake_timeout = options.tls_handshake_timeout;
        let first_byte_timeout = options.header_read_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let served = match acceptor {
                None => serve_plain(stream, builder, service, &draining, first_byte_timeout).await,
                Some(acceptor) => {
                    serve_tls(
                        stream,
                        acceptor,
                        builder,
                        service,
                        &draining,
                        handshake_timeout,
                    )
                    .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, cause = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    draining.cancel();
    connections.close();
    if tokio::time::timeout(options.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "drain timeout passed; closing remaining connections"
        );
    }
    Ok(())
}

type ConnectionResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Serves a plain-TCP connection. The HTTP/1-or-2 sniff reads the first bytes with no
/// timeout of its own, so wait for them here: a client that connects and stays silent
/// must not hold a slot.
async fn serve_plain(
    stream: TcpStream,
    builder: Builder<TokioExecutor>,
    service: TowerToHyperService<Router>,
    draining: &CancellationToken,
    first_byte_timeout: Duration,
) -> ConnectionResult {
    let mut first = [0u8; 1];
    let first_bytes = tokio::select! {
        read = tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)) => read,
        () = draining.cancelled() => return Ok(()), // nothing in flight yet
    };
    match first_bytes {
        Ok(Ok(n)) if n > 0 => drive(builder, TokioIo::new(stream), service, draining).await,
        _ => Ok(()),
    }
}

/// Serves a TLS connection; ALPN has already chosen the protocol, so no sniffing.
async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    builder: Builder<TokioExecutor>,
    service: TowerToHyperService<Router>,
    draining: &CancellationToken,
    handshake_timeout: Duration,
) -> ConnectionResult {
    let handshake = tokio::select! {
        done = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => done,
        () = draining.cancelled() => return Ok(()), // nothing in flight yet
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(cause = %e, "TLS handshake failed");
            return Ok(());
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return Ok(());
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    drive(builder, TokioIo::new(tls), service, draining).await
}

/// Serves one connection, switching it to graceful shutdown when draining starts.
async fn drive<I>(
    builder: Builder<TokioExecutor>,
    io: TokioIo<I>,
    service: TowerToHyperService<Router>,
    draining: &CancellationToken,
) -> ConnectionResult
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = draining.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_client_gives_its_slot_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let options = ServeOptions {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        };
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            router,
            None,
            options,
            stop.clone().cancelled_owned(),
        ));

        // Takes the only slot and never says a word.
        let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut response = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut response));
        read.await
            .expect("served once the silent client timed out")
            .expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        stop.cancel();
    }
}
