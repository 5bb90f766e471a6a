//! Knowing when a connection has gone quiet. Every connection, plain or TLS, HTTP/1.1
//! or HTTP/2, is watched the same way: its bytes in either direction and its requests
//! in flight are counted, and a connection that has moved no byte for longer than its
//! limit while no request is in flight is closed.
//!
//! This sits under the protocol rather than in it because neither protocol closes a
//! silent connection by itself: hyper's HTTP/2 server has no idle limit at all, and a
//! client that completes a TLS handshake and then says nothing would otherwise keep
//! its connection slot for as long as it likes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What one connection has been doing.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the connection started; `last_active_ms` counts from here.
    started: Instant,
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether any request has arrived yet: until one has, the (shorter) first-byte
    /// limit applies.
    requested: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Marks a request as started; it counts as in flight until the guard drops.
    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.requested.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// When the connection will count as idle if nothing happens before then, or
    /// `None` while a request is in flight (its handler may legitimately be waiting on
    /// an origin, and its own timeouts bound that).
    pub(super) fn idle_deadline(&self, first_byte: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let limit = if self.requested.load(Ordering::Relaxed) {
            idle
        } else {
            first_byte
        };
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        Some(self.started + last + limit)
    }
}

/// A request in flight on a watched connection.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's byte stream, noting every byte that moves.
pub(super) struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub(super) fn new(inner: I, activity: Arc<Activity>) -> Watched<I> {
        Watched { inner, activity }
    }

    fn note(&self, moved: usize) {
        if moved > 0 {
            self.activity.touch();
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(buf.filled().len() - before);
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(written)) = polled {
            self.note(written);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            self.note(written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_limit_applies_until_a_request_arrives() {
        let activity = Activity::new();
        let start = Instant::now();
        let (first, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(activity.idle_deadline(first, idle), Some(start + first));
        let request = activity.request_started();
        assert_eq!(
            activity.idle_deadline(first, idle),
            None,
            "never idle while a request is in flight"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(request);
        assert_eq!(
            activity.idle_deadline(first, idle),
            Some(start + Duration::from_secs(5) + idle),
            "the idle limit counts from the end of the last request"
        );
    }
}
