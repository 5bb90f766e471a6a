//! Knowing when a connection has nothing left to do. Every connection, plain or TLS,
//! HTTP/1.1 or HTTP/2, is watched the same way, by what it does with requests rather
//! than by the bytes it moves (an HTTP/2 client's PINGs must not keep a connection
//! alive):
//!
//! - before its first request, it has a fixed time from connecting;
//! - while a handler runs, no limit here (handlers are bounded by their own timeouts);
//! - while a response body is sent, it must keep moving, also once the handler has
//!   handed all of it over and the socket is still taking it (a slow reader of a large
//!   stored object: see [`WatchedIo`]);
//! - between requests, an HTTP/1.1 connection has the same fixed time to send the
//!   next request's headers (the only thing it can do next), and an HTTP/2 one may
//!   stay idle for longer.
//!
//! This watchdog is also what enforces the time to send a request's headers: hyper's
//! own header timer would arm and cancel a timer on every request, which costs more
//! than noting the time at the start and end of each.
//!
//! And a request body that stops arriving fails its request after the same silence.
//! Neither protocol does this by itself: hyper's HTTP/2 server has no idle limit at
//! all, and a client that completes a TLS handshake and says nothing would otherwise
//! keep its connection slot for as long as it likes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::error::BoxError;
use crate::progress::LastProgress;

/// What one connection's requests are doing.
#[derive(Debug)]
pub(super) struct Activity {
    /// A request starting or ending, or a body frame moving either way.
    progress: LastProgress,
    handlers: AtomicUsize,
    bodies_sending: AtomicUsize,
    requested: AtomicBool,
    /// The connection speaks HTTP/2 (known from its first request).
    http2: AtomicBool,
    /// The socket held back a write that has not gone through since.
    held_back: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            progress: LastProgress::new(),
            handlers: AtomicUsize::new(0),
            bodies_sending: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
        })
    }

    /// Notes how a write (or flush) on the socket went: held back, or through. Only the
    /// end of a hold-back notes progress, so a fast socket costs no clock reads.
    fn wrote<T>(&self, outcome: &Poll<std::io::Result<T>>) {
        match outcome {
            Poll::Pending => self.held_back.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(_)) => {
                if self.held_back.swap(false, Ordering::Relaxed) {
                    self.progress.note();
                }
            }
            Poll::Ready(Err(_)) => {}
        }
    }

    /// Notes the protocol of a request read on this connection.
    pub(super) fn note_version(&self, version: http::Version) {
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
    }

    /// Marks a request's handler as running until the guard drops. No progress is
    /// noted here: while a handler runs there is no deadline, and its end notes it.
    pub(super) fn handler_started(self: &Arc<Self>) -> HandlerRunning {
        self.requested.store(true, Ordering::Relaxed);
        self.handlers.fetch_add(1, Ordering::Relaxed);
        HandlerRunning(self.clone())
    }

    /// Wraps a response body so the connection counts as busy while it is sent.
    pub(super) fn track_response(self: &Arc<Self>, body: Body) -> Body {
        self.bodies_sending.fetch_add(1, Ordering::Relaxed);
        let piece = if self.http2.load(Ordering::Relaxed) {
            PIECE
        } else {
            usize::MAX
        };
        Body::new(ResponseBody {
            inner: body,
            piece,
            rest: Bytes::new(),
            sending: Some(BodySending(self.clone())),
        })
    }

    /// When the connection counts as quiet if nothing happens before then; `None`
    /// while a handler runs. `headers` is the time to send a request's headers,
    /// `idle` the time an HTTP/2 connection may wait between requests.
    pub(super) fn deadline(&self, headers: Duration, idle: Duration) -> Option<Instant> {
        if self.handlers.load(Ordering::Relaxed) > 0 {
            return None;
        }
        // Before the first request nothing notes progress: this is a fixed time from
        // connecting. After a request, progress was noted when it ended.
        let sending = self.bodies_sending.load(Ordering::Relaxed) > 0
            || self.held_back.load(Ordering::Relaxed);
        let http2_between_requests =
            self.requested.load(Ordering::Relaxed) && self.http2.load(Ordering::Relaxed);
        let limit = if sending || http2_between_requests {
            idle
        } else {
            headers
        };
        Some(self.progress.at() + limit)
    }
}

/// A request whose handler is running.
pub(super) struct HandlerRunning(Arc<Activity>);

impl HandlerRunning {
    /// The handler's `response`, its body watched while it is sent (counted before the
    /// handler stops counting, so the connection is never seen idle in between).
    pub(super) fn answered(self, response: http::Response<Body>) -> http::Response<Body> {
        response.map(|body| self.0.track_response(body))
    }
}

impl Drop for HandlerRunning {
    fn drop(&mut self) {
        self.0.progress.note();
        self.0.handlers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body still being sent.
struct BodySending(Arc<Activity>);

impl Drop for BodySending {
    fn drop(&mut self) {
        self.0.progress.note();
        self.0.bodies_sending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that notes each frame it gives the connection.
///
/// Over HTTP/2 a frame larger than [`PIECE`] is handed on in pieces of that size
/// (slices of the same buffer, no copies): the connection asks for each piece when the
/// client's flow-control window lets it send it, so a stored body of several MiB given
/// as one buffer is seen moving piece by piece rather than handed over at once and then
/// sent, unwatched, for as long as the client takes. Over HTTP/1.1 the socket itself
/// shows whether the bytes move ([`WatchedIo`]), and whole frames mean fewer writes.
struct ResponseBody {
    inner: Body,
    /// The largest piece handed on at once.
    piece: usize,
    /// What is left of a frame handed on in pieces.
    rest: Bytes,
    /// Dropped at the end of the body (or with it, if the connection drops it first).
    sending: Option<BodySending>,
}

/// The largest piece of a response body handed to an HTTP/2 connection at once.
const PIECE: usize = 64 * 1024;

impl ResponseBody {
    /// Notes a frame handed on. After the last one (all of a stored body) the body is
    /// done sending, which notes progress once rather than here and again at its end.
    fn handed_on(&mut self) {
        if self.rest.is_empty() && http_body::Body::is_end_stream(&self.inner) {
            self.sending = None;
        } else if let Some(sending) = &self.sending {
            sending.0.progress.note();
        }
    }

    /// The next piece of `data`, keeping the rest for the next poll.
    fn piece_of(&mut self, mut data: Bytes) -> Bytes {
        if data.len() > self.piece {
            self.rest = data.split_off(self.piece);
        }
        data
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if !this.rest.is_empty() {
            let rest = std::mem::take(&mut this.rest);
            let piece = this.piece_of(rest);
            this.handed_on();
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => Frame::data(this.piece_of(data)),
                    Err(frame) => frame,
                };
                this.handed_on();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.sending = None;
                Poll::Ready(other)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// The connection's socket (plain or TLS), watched for writes it holds back: while it
/// does, the connection is still sending, however long ago the handler handed over its
/// body (hyper drops a single-buffer body before writing it out). Each write that goes
/// through after a hold-back counts as progress, so a slow reader keeps its connection
/// as long as the bytes keep moving, and one that stops reading loses it after the
/// idle limit.
pub(super) struct WatchedIo<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> WatchedIo<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>) -> WatchedIo<I> {
        WatchedIo { inner, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&outcome);
        outcome
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&outcome);
        outcome
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.wrote(&outcome);
        outcome
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails if no frame arrives for `silence`, so a client that
/// announces a body and then sends nothing cannot keep a handler (and its
/// connection) waiting forever.
pub(super) struct RequestBody<B> {
    inner: B,
    silence: Duration,
    /// Armed the first time the body is polled: most requests (GETs) have no body and
    /// never need a timer, which costs an allocation and a clock read.
    timer: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
}

impl<B> RequestBody<B> {
    pub(super) fn new(inner: B, silence: Duration, activity: Arc<Activity>) -> RequestBody<B> {
        RequestBody {
            inner,
            silence,
            timer: None,
            activity,
        }
    }
}

impl<B> http_body::Body for RequestBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let silence = this.silence;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(silence)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_some() {
                    this.activity.progress.note();
                    timer.as_mut().reset(Instant::now() + silence);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "no request body received for {:?}",
                    this.silence
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_request_gets_a_fixed_time_and_later_ones_count_from_the_last() {
        for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
            let activity = Activity::new();
            let start = Instant::now();
            let (headers, idle) = (Duration::from_secs(10), Duration::from_secs(60));
            assert_eq!(activity.deadline(headers, idle), Some(start + headers));
            tokio::time::advance(Duration::from_secs(3)).await;
            activity.note_version(version);
            let handler = activity.handler_started();
            assert_eq!(
                activity.deadline(headers, idle),
                None,
                "no limit while a handler runs"
            );
            tokio::time::advance(Duration::from_secs(2)).await;
            let response = handler.answered(http::Response::new(Body::from("hello")));
            assert_eq!(
                activity.deadline(headers, idle),
                Some(start + Duration::from_secs(5) + idle),
                "{version:?}: a response body being sent must keep moving"
            );
            tokio::time::advance(Duration::from_secs(4)).await;
            drop(response);
            let between_requests = if version == http::Version::HTTP_2 {
                idle
            } else {
                headers // the next thing an HTTP/1.1 client can send is a request head
            };
            assert_eq!(
                activity.deadline(headers, idle),
                Some(start + Duration::from_secs(9) + between_requests),
                "{version:?}: the wait for the next request counts from the end of the last"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_socket_holds_back_counts_as_sending_until_it_goes_through() {
        let activity = Activity::new();
        let (headers, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        activity.note_version(http::Version::HTTP_11);
        drop(activity.handler_started());
        let handed_over = Instant::now();
        assert_eq!(
            activity.deadline(headers, idle),
            Some(handed_over + headers)
        );
        activity.wrote(&Poll::<std::io::Result<usize>>::Pending);
        assert_eq!(
            activity.deadline(headers, idle),
            Some(handed_over + idle),
            "held back: still sending, and it must keep moving"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.wrote(&Poll::Ready(Ok(16_384usize)));
        assert_eq!(
            activity.deadline(headers, idle),
            Some(Instant::now() + headers),
            "through: the wait for the next request counts from now"
        );
    }

    #[tokio::test]
    async fn a_large_body_is_handed_to_http2_in_pieces_of_the_same_buffer() {
        use http_body::Body as _;
        use http_body_util::BodyExt;
        let whole = Bytes::from(vec![7u8; 3 * PIECE + 100]);
        let sending = |activity: &Activity| activity.bodies_sending.load(Ordering::Relaxed);
        let http1 = Activity::new();
        let mut body = http1.track_response(Body::from(whole.clone()));
        assert_eq!(sending(&http1), 1);
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(
            frame.into_data().expect("data").len(),
            whole.len(),
            "HTTP/1.1: whole"
        );
        assert_eq!(sending(&http1), 0, "the last frame ends the sending");

        let activity = Activity::new();
        activity.note_version(http::Version::HTTP_2);
        let mut body = activity.track_response(Body::from(whole.clone()));
        assert_eq!(body.size_hint().exact(), Some(whole.len() as u64));
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            pieces.push(data.len());
            let left = whole.len() - pieces.iter().sum::<usize>();
            assert_eq!(body.size_hint().exact(), Some(left as u64));
            assert_eq!(body.is_end_stream(), left == 0);
            assert_eq!(
                sending(&activity),
                usize::from(left > 0),
                "{left} bytes left"
            );
        }
        assert_eq!(pieces, [PIECE, PIECE, PIECE, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_that_stops_arriving_fails() {
        use futures::StreamExt;
        // One chunk, then a client that says nothing more.
        let chunks = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("part")) })
            .chain(futures::stream::pending());
        let activity = Activity::new();
        let mut limited =
            RequestBody::new(Body::from_stream(chunks), Duration::from_secs(5), activity);
        let first =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut limited), cx))
                .await;
        assert!(first.is_some_and(|f| f.is_ok()));
        let second =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut limited), cx))
                .await;
        let error = second
            .expect("a frame")
            .expect_err("silence fails the body");
        assert!(error.to_string().contains("no request body"), "{error}");
    }
}
