//! A plain TCP connection's socket that sends sealed bodies (see [`crate::sealed`])
//! with `sendfile(2)`, without copying their bytes: hyper hands its writes over as
//! slices (a response's head, then its body), and a slice that lies in a sealed body
//! goes out as the file's pages.
//!
//! Only plain connections: TLS has to encrypt every byte in user space anyway.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::sealed::{self, Location};

/// A plain TCP connection, sending sealed bodies without copying them.
pub(super) struct PlainSocket {
    stream: TcpStream,
    /// Where to count the bytes sent that way.
    sent_without_copying: Option<Counter>,
}

impl PlainSocket {
    pub(super) fn new(stream: TcpStream, sent_without_copying: Option<Counter>) -> PlainSocket {
        PlainSocket {
            stream,
            sent_without_copying,
        }
    }

    /// Sends `head` (the slices before the sealed one) and then `len` bytes of the
    /// sealed body at `at`, as far as the socket takes them now. The head is sent with
    /// `MSG_MORE`, so it waits for the body's pages and they leave together.
    fn send_head_then_file(
        &self,
        head: &[IoSlice<'_>],
        at: &Location,
        len: usize,
    ) -> std::io::Result<usize> {
        let mut sent = 0;
        if !head.is_empty() {
            let wanted: usize = head.iter().map(|slice| slice.len()).sum();
            sent = rustix::net::sendmsg(
                &self.stream,
                head,
                &mut rustix::net::SendAncillaryBuffer::default(),
                rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL,
            )?;
            if sent < wanted {
                return Ok(sent);
            }
        }
        let mut offset = at.offset;
        match rustix::fs::sendfile(&self.stream, &*at.file, Some(&mut offset), len) {
            Ok(from_file) => {
                if let Some(counter) = &self.sent_without_copying {
                    counter.inc_by(from_file as u64);
                }
                Ok(sent + from_file)
            }
            // The head went: say so. The file's error (a full socket, most often) comes
            // back on the next write.
            Err(_) if sent > 0 => Ok(sent),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsyncRead for PlainSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.as_mut().poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Small slices are never worth a look: sealed bodies are large, and a small
        // piece of one is cheaper to copy.
        let sealed = bufs.iter().enumerate().find_map(|(index, slice)| {
            (slice.len() >= sealed::WORTH_SEALING)
                .then(|| sealed::locate(slice))
                .flatten()
                .map(|at| (index, at))
        });
        let Some((index, at)) = sealed else {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        };
        let (head, body) = (&bufs[..index], bufs[index].len());
        let this = self.get_mut();
        loop {
            ready!(this.stream.poll_write_ready(cx))?;
            // `try_io` clears the socket's readiness when the send would block, so the
            // next poll waits for room.
            match (this.stream).try_io(Interest::WRITABLE, || {
                this.send_head_then_file(head, &at, body)
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                outcome => return Poll::Ready(outcome),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
