//! Serving a router (or any service like one) on a listener that the caller bound:
//! plain HTTP or HTTPS (rustls), HTTP/1.1 and HTTP/2, a cap on concurrent connections,
//! handshake, first-request, header, body and idle limits, and graceful shutdown that
//! lets in-flight requests finish without waiting for clients that are only holding a
//! connection open.
//!
//! # Layout
//! - `watchdog`: noticing that a connection has nothing left to do.
//! - `limits`: oversized requests (414, 431) and connections per client address.
//! - `zero_copy`: plain connections sending sealed bodies with `sendfile`.
//! - `quick`: the quick lane, plain HTTP/1.1 `GET`s answered before hyper sees them.
//! - `rewind`: a connection handed to hyper with the bytes the quick lane read.
//! - this file: the accept loop and serving one connection.

mod limits;
mod quick;
mod rewind;
mod watchdog;
mod zero_copy;

pub use limits::{MAX_HEADER_BYTES, MAX_URI_BYTES};
pub use quick::{EncodedHead, NoQuickLane, QuickAnswer, QuickLane, QuickRequest, encode_head};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use watchdog::{Activity, RequestBody, WatchedIo};
use zero_copy::PlainSocket;

/// What [`serve`] serves: an axum `Router`, or any service that answers requests the
/// way one does (for a hot path that skips routing).
pub trait HttpService:
    tower::Service<
        http::Request<Body>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            http::Request<Body>,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Limits and timeouts for one server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once; further clients wait in the accept queue.
    /// Default: 4096.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more from it are closed as
    /// they arrive, so one address cannot take the whole cap while others wait.
    /// Default: 1024, a quarter of the default cap.
    pub max_connections_per_address: usize,
    /// Time a client gets to make its first request (from connecting, or from the end
    /// of the TLS handshake), whatever else it sends, and to send each request's
    /// headers (so an HTTP/1.1 connection also closes after this long without a next
    /// request). Default: 10 s.
    pub header_read_timeout: Duration,
    /// Time an HTTP/2 connection may stay without a request once it has made one; and
    /// the longest a request body or a response body being sent may stand still.
    /// Default: 60 s.
    pub idle_timeout: Duration,
    /// Time a client gets to finish the TLS handshake. Default: 10 s.
    pub tls_handshake_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts (Cloud Run allows
    /// about 10 s). Default: 8 s.
    pub drain_timeout: Duration,
    /// Where to count open connections (for metrics). Default: not counted.
    pub open_connections: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Whether handlers are given the client's address (`ConnectInfo<SocketAddr>` in
    /// the request's extensions, as axum's `Extension` extractor reads it). Default:
    /// yes. A service that never reads it turns it off: it costs two allocations per
    /// request.
    pub client_address: bool,
    /// Where to count the body bytes plain connections send straight from sealed
    /// bodies (see [`crate::sealed`]), without copying them. Default: not counted.
    pub sent_without_copying: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 4096,
            max_connections_per_address: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(8),
            open_connections: None,
            client_address: true,
            sent_without_copying: None,
        }
    }
}

/// Serves `service` on `listener` (TLS when `tls` is given) until `shutdown` resolves,
/// then stops accepting and waits up to `drain_timeout` for open connections.
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    tls: Option<crate::tls::TlsConfig>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with_quick_lane(
        listener,
        service,
        None::<NoQuickLane>,
        tls,
        options,
        shutdown,
    )
    .await
}

/// [`serve`], with `quick` (when given) answering the HTTP/1.1 requests it takes
/// before `service` sees them (see [`QuickLane`]).
pub async fn serve_with_quick_lane(
    listener: TcpListener,
    service: impl HttpService,
    quick: Option<impl QuickLane>,
    tls: Option<crate::tls::TlsConfig>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let draining = CancellationToken::new();
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let per_address = limits::PerAddress::new(options.max_connections_per_address.max(1));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog enforces it, for every request at less cost (see `watchdog`).
        .header_read_timeout(None);
    builder
        .http2()
        .max_header_list_size(limits::HTTP2_MAX_HEADER_LIST)
        .max_concurrent_streams(limits::HTTP2_MAX_STREAMS);
    let limits = Arc::new(options.clone());
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
        let Some(address_slot) = per_address.take(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: its address holds its share");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            service: service.clone(),
            quick: quick.clone(),
            draining: draining.clone(),
            closing: closing.clone(),
            limits: limits.clone(),
            peer,
        };
        let acceptor = acceptor.clone();
        let open = options.open_connections.clone().map(OpenConnection::new);
        let sent_without_copying = options.sent_without_copying.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _address_slot = address_slot;
            let _open = open;
            let served = match acceptor {
                None => {
                    let socket = PlainSocket::new(stream, sent_without_copying);
                    connection.serve_http1_quickly(socket).await
                }
                Some(acceptor) => connection.serve_tls(stream, acceptor).await,
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
        closing.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// How much encrypted data rustls may hold for a TLS connection before the socket
/// takes it (rustls's default is 64 KiB). At 64 KiB a 64 KiB response and its head
/// went out in two writes, each waking the client; at 128 KiB they go in one, and a
/// 1 MiB response in half as many. Measured with the hit benchmark: less CPU per
/// response on both sides and a lower p99. The kernel's own send buffer per socket is
/// larger still, so this adds little to what a client that stops reading can hold.
const TLS_SEND_BUFFER: usize = 128 * 1024;

type ConnectionResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One open connection, counted while it lives.
struct OpenConnection(Arc<std::sync::atomic::AtomicUsize>);

impl OpenConnection {
    fn new(count: Arc<std::sync::atomic::AtomicUsize>) -> OpenConnection {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection(count)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A step of shutdown, as a connection sees it.
enum Shutdown {
    /// Finish what is in flight, take nothing new.
    Drain,
    /// The drain time is up: close now.
    Close,
}

/// Shutdown's two steps for one connection, as a stream that polls each only when it
/// fires: a waiting token takes a lock each time it is polled, and a connection polls
/// what it waits on at every wake, several times a request.
fn shutdown_steps(
    draining: &CancellationToken,
    closing: &CancellationToken,
) -> FuturesUnordered<BoxFuture<'static, Shutdown>> {
    let steps: FuturesUnordered<BoxFuture<'static, Shutdown>> = FuturesUnordered::new();
    steps.push(
        draining
            .clone()
            .cancelled_owned()
            .map(|()| Shutdown::Drain)
            .boxed(),
    );
    steps.push(
        closing
            .clone()
            .cancelled_owned()
            .map(|()| Shutdown::Close)
            .boxed(),
    );
    steps
}

/// Everything needed to serve one accepted connection.
struct Connection<S, Q> {
    builder: Builder<TokioExecutor>,
    service: S,
    /// Answers the plainest HTTP/1.1 requests first, if any.
    quick: Option<Q>,
    /// Shutdown started: finish what is in flight, take nothing new.
    draining: CancellationToken,
    /// The drain time is up: close now.
    closing: CancellationToken,
    limits: Arc<ServeOptions>,
    /// The client's address, given to handlers as `ConnectInfo`.
    peer: SocketAddr,
}

impl<S: HttpService, Q: QuickLane> Connection<S, Q> {
    /// Completes the TLS handshake (within its limit), then serves the protocol that
    /// ALPN chose, so no sniffing is needed.
    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) -> ConnectionResult {
        let handshake = tokio::select! {
            done = tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(stream)) => done,
            () = self.draining.cancelled() => return Ok(()), // nothing in flight yet
        };
        let mut tls = match handshake {
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
        tls.get_mut().1.set_buffer_limit(Some(TLS_SEND_BUFFER));
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        if h2 {
            let builder = self.builder.clone().http2_only();
            Connection { builder, ..self }.serve(tls).await
        } else {
            let builder = self.builder.clone().http1_only();
            Connection { builder, ..self }
                .serve_http1_quickly(tls)
                .await
        }
    }

    /// Serves `io` through the quick lane while it takes the requests, then (from the
    /// first it does not take) through hyper; through hyper alone without a lane.
    async fn serve_http1_quickly<I>(self, io: I) -> ConnectionResult
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(quick) = &self.quick else {
            return self.serve(io).await;
        };
        let steps = shutdown_steps(&self.draining, &self.closing);
        match quick::serve(io, quick, &self.limits, steps).await? {
            quick::Ended::Closed => Ok(()),
            quick::Ended::HandedOn(io, read) => self.serve(rewind::Rewind::new(io, read)).await,
        }
    }

    /// Serves HTTP on `io` until the client closes, the connection has nothing left to
    /// do for longer than its limit (see `watchdog`), or shutdown ends it: connections
    /// with nothing in flight close at once, busy ones after their requests.
    async fn serve<I>(self, io: I) -> ConnectionResult
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let limits = self.limits.clone();
        let bodies = activity.clone();
        let handlers = activity.clone();
        let peer = limits
            .client_address
            .then_some(axum::extract::ConnectInfo(self.peer));
        let watched_requests = ServiceExt::<http::Request<axum::body::Body>>::map_request(
            self.service,
            move |mut request: http::Request<hyper::body::Incoming>| {
                bodies.note_version(request.version());
                if let Some(peer) = peer {
                    request.extensions_mut().insert(peer);
                }
                request.map(|body| {
                    axum::body::Body::new(RequestBody::new(
                        body,
                        limits.idle_timeout,
                        bodies.clone(),
                    ))
                })
            },
        );
        let watched = ServiceExt::<http::Request<hyper::body::Incoming>>::map_future(
            watched_requests,
            // `map` rather than an `async` block, which would hold the handler's
            // future twice (once captured, once awaited), and it is moved per request.
            move |response| {
                let running = handlers.handler_started();
                response.map(
                    move |answered: Result<Response, std::convert::Infallible>| {
                        answered.map(|response| running.answered(response))
                    },
                )
            },
        );
        let service = TowerToHyperService::new(limits::SizeLimits { inner: watched });
        // Nothing here upgrades, but this variant's graceful shutdown closes a connection
        // that has not sent its first request at once; the plain one waits for it (see
        // the test `shutdown_does_not_wait_for_idle_or_silent_clients`).
        let connection = self.builder.serve_connection_with_upgrades(
            TokioIo::new(WatchedIo::new(io, activity.clone())),
            service,
        );
        tokio::pin!(connection);
        let limits = &self.limits;
        let mut shutdown = shutdown_steps(&self.draining, &self.closing);
        loop {
            let deadline = activity.deadline(limits.header_read_timeout, limits.idle_timeout);
            // While a handler runs there is no deadline; look again a little later.
            let wake = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
            tokio::select! {
                biased; // the connection first: it is what wakes this task almost every time
                result = connection.as_mut() => return result,
                Some(step) = shutdown.next() => match step {
                    Shutdown::Drain => connection.as_mut().graceful_shutdown(),
                    Shutdown::Close => return Ok(()),
                },
                () = tokio::time::sleep_until(wake) => {
                    let quiet = activity
                        .deadline(limits.header_read_timeout, limits.idle_timeout)
                        .is_some_and(|deadline| deadline <= Instant::now());
                    if quiet {
                        tracing::debug!("closing a connection with nothing left to do");
                        return Ok(()); // dropping the connection closes it
                    }
                }
            }
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
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
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
