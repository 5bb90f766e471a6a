//! The quick lane: plain HTTP/1.1 `GET`s answered from bytes kept ready, before hyper
//! sees the connection.
//!
//! Most of what a cache serves is a whole object asked for with no conditions, and
//! the answer to such a request changes once a second at most. hyper turns every
//! answer into a header map and encodes it field by field; for a small hit that was
//! more work than the rest of serving it (copying the map and encoding it cost a fifth
//! of the CPU of a 1 KiB hit, most of it in data-cache misses on memory touched only
//! for that). The quick lane reads requests itself (with `httparse`, the parser hyper
//! uses), asks a [`QuickLane`] for a kept answer, and writes the kept head and the
//! body in one vectored write, adding only the framing, `Date`, and `Connection:
//! close` when the server is draining.
//!
//! Anything it does not take whole (another method or version, a body, an upgrade, a
//! field about the connection, a malformed or oversized request, or a request the
//! lane has no answer for) goes to hyper, with every byte read so far: from that
//! request on, hyper serves the connection as it would have from the start, with all
//! its checks, limits and error answers. So the lane never answers an error itself.
//!
//! It keeps the server's limits: the time to send a request's head
//! (`header_read_timeout`, which also bounds the wait for the next request), the time
//! a response may stand still (`idle_timeout`), and graceful shutdown (a connection
//! waiting for a request closes at once; one in the middle of one finishes it first).

use std::future::Future;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, StatusCode, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::limits::{MAX_HEADER_BYTES, MAX_URI_BYTES};
use super::{ServeOptions, Shutdown};

/// Answers requests the quick lane may take whole, from answers it keeps ready.
pub trait QuickLane: Clone + Send + Sync + 'static {
    /// The answer to `request`, or `None` to leave it (and the rest of its connection)
    /// to the service. Meant for answers at hand: nothing bounds how long it takes.
    fn answer<'a>(
        &'a self,
        request: &'a QuickRequest<'a>,
    ) -> impl Future<Output = Option<QuickAnswer>> + Send + 'a;
}

/// The lane of a server without one: every request goes to its service.
#[derive(Clone)]
pub enum NoQuickLane {}

impl QuickLane for NoQuickLane {
    async fn answer<'a>(&'a self, _: &'a QuickRequest<'a>) -> Option<QuickAnswer> {
        match *self {}
    }
}

/// A `GET` the quick lane may answer: HTTP/1.1, no body, nothing about the connection.
pub struct QuickRequest<'a> {
    target: &'a str,
    fields: &'a [httparse::Header<'a>],
}

impl QuickRequest<'_> {
    /// The request target as sent: the path, and the query if any.
    pub fn target(&self) -> &str {
        self.target
    }

    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The names of the request's header fields, as sent (any case).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|field| field.name)
    }
}

/// A kept answer: a head made by [`encode_head`], and the body.
pub struct QuickAnswer {
    /// The status line and header fields.
    pub head: EncodedHead,
    /// The whole body.
    pub body: Bytes,
}

/// A response's status line and header fields as the quick lane sends them (see
/// [`encode_head`]).
#[derive(Debug, Clone)]
pub struct EncodedHead {
    bytes: Bytes,
    /// Whether the fields include `Date` (else the lane adds the current one).
    dated: bool,
}

impl EncodedHead {
    /// The encoded status line and fields.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Fields the lane writes itself, from the body it sends: never taken from a head.
const FRAMING: [header::HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// A response's status line and header fields as the quick lane sends them: HTTP/1.1,
/// each field on its line, without the framing fields (`Content-Length`,
/// `Transfer-Encoding`, `Connection`), which the lane writes from the body it sends,
/// and without the blank line that ends a head. A response without `Date` gets the
/// current one when it is sent, as hyper gives it.
pub fn encode_head(status: StatusCode, headers: &HeaderMap) -> EncodedHead {
    let mut head = Vec::with_capacity(64 + headers.len() * 48);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if FRAMING.contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    EncodedHead {
        bytes: Bytes::from(head),
        dated: headers.contains_key(header::DATE),
    }
}

/// Most header fields a request the lane takes may have (hyper takes up to 100; the
/// lane leaves the rarer, larger requests to it).
const MAX_FIELDS: usize = 64;

/// Most bytes read of a request the lane has not parsed whole before leaving it to
/// hyper, which answers oversized requests.
const MAX_REQUEST_BYTES: usize = MAX_URI_BYTES + MAX_HEADER_BYTES + 1024;

/// Room made for each read from the connection.
const READ_ROOM: usize = 8 * 1024;

/// How the quick lane ended a connection.
pub(super) enum Ended<I> {
    /// The connection is done: closed by the client, quiet too long, or shut down.
    Closed,
    /// A request the lane does not take: hyper serves the connection from it on,
    /// starting with the bytes read already.
    HandedOn(I, BytesMut),
}

/// Why waiting on the connection stopped short.
enum Stop {
    /// Nothing came, or nothing could be sent, within the limit.
    Quiet,
    /// Shutdown ends the connection.
    Close,
    Io(std::io::Error),
}

/// Serves `io` through `lane` until a request the lane does not take, the end of the
/// connection, or shutdown (`shutdown`'s steps).
pub(super) async fn serve<I, Q>(
    mut io: I,
    lane: &Q,
    limits: &ServeOptions,
    shutdown: FuturesUnordered<BoxFuture<'static, Shutdown>>,
) -> std::io::Result<Ended<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
    Q: QuickLane,
{
    let mut guard = Guard::new(limits, shutdown);
    let mut read = BytesMut::with_capacity(READ_ROOM);
    let mut head = Vec::with_capacity(1024);
    let mut waiting_since = Instant::now();
    loop {
        let taken = match take(&read, lane).await {
            Taken::Answered { answer, length } => {
                read.advance(length);
                answer
            }
            Taken::NotYet if read.len() < MAX_REQUEST_BYTES => {
                let between_requests = read.is_empty();
                read.reserve(READ_ROOM);
                let deadline = waiting_since + limits.header_read_timeout;
                match guard
                    .within(deadline, between_requests, io.read_buf(&mut read))
                    .await
                {
                    Ok(0) => return Ok(Ended::Closed),
                    Ok(_) => continue,
                    Err(stop) => return stop.ended(),
                }
            }
            Taken::NotYet | Taken::Left => return Ok(Ended::HandedOn(io, read)),
        };
        head.clear();
        head.extend_from_slice(taken.head.as_bytes());
        frame(
            &mut head,
            taken.body.len(),
            !taken.head.dated,
            guard.draining,
        );
        if let Err(stop) = send(&mut io, &head, &taken.body, &mut guard, limits).await {
            return stop.ended();
        }
        if guard.draining {
            return Ok(Ended::Closed);
        }
        waiting_since = Instant::now();
    }
}

/// What the lane makes of the bytes read so far.
enum Taken {
    /// A request the lane answers, `length` bytes long.
    Answered { answer: QuickAnswer, length: usize },
    /// Not a whole request yet.
    NotYet,
    /// A request (or bytes) for hyper.
    Left,
}

async fn take<Q: QuickLane>(read: &[u8], lane: &Q) -> Taken {
    if read.is_empty() {
        return Taken::NotYet;
    }
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        read,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Taken::NotYet,
        Err(_) => return Taken::Left, // hyper answers it (400, 431, ...)
    };
    let Some(quick) = quick_request(&request) else {
        return Taken::Left;
    };
    match lane.answer(&quick).await {
        Some(answer) => Taken::Answered { answer, length },
        None => Taken::Left,
    }
}

/// Request fields about the message's body or the connection: a request with any of
/// them (but `Connection: keep-alive`) is hyper's.
const ABOUT_THE_CONNECTION: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "expect",
    "te",
];

/// `request` as the lane takes it, if it does: a `GET` over HTTP/1.1 of an
/// origin-form target within the server's limits, with no body and no field about the
/// connection (beyond `Connection: keep-alive`, which HTTP/1.1 says anyway).
fn quick_request<'a>(request: &'a httparse::Request<'_, 'a>) -> Option<QuickRequest<'a>> {
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let target = request.path?;
    if !target.starts_with('/') || target.len() > MAX_URI_BYTES || !plain_target(target) {
        return None;
    }
    let mut field_bytes = 0;
    for field in request.headers.iter() {
        field_bytes += field.name.len() + field.value.len();
        let keep_alive = field.name.eq_ignore_ascii_case("connection")
            && field.value.eq_ignore_ascii_case(b"keep-alive");
        let about_the_connection = ABOUT_THE_CONNECTION
            .iter()
            .any(|name| field.name.eq_ignore_ascii_case(name));
        if about_the_connection && !keep_alive {
            return None;
        }
    }
    (field_bytes <= MAX_HEADER_BYTES).then_some(QuickRequest {
        target,
        fields: request.headers,
    })
}

/// Whether `target` is made only of what an origin-form target may hold (RFC 3986's
/// path and query characters). hyper reads such a target as it is; one with anything
/// else (a `#`, which it would cut off, or bytes it would refuse) is left to it, so
/// that the lane and the service never read one target two ways.
fn plain_target(target: &str) -> bool {
    target
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
}

/// Ends `head` with the fields the lane writes itself: the body's length, `Date` when
/// `undated`, `Connection: close` when the connection ends after this answer, and the
/// blank line.
fn frame(head: &mut Vec<u8>, length: usize, undated: bool, closing: bool) {
    head.extend_from_slice(b"content-length: ");
    head.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
    head.extend_from_slice(b"\r\n");
    if undated {
        head.extend_from_slice(b"date: ");
        DATE.with(|date| head.extend_from_slice(&date.now()));
        head.extend_from_slice(b"\r\n");
    }
    if closing {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Writes `head` then `body` (one vectored write when the socket takes it all), then
/// flushes (TLS holds what it has not sent yet).
async fn send<I: AsyncWrite + Unpin>(
    io: &mut I,
    head: &[u8],
    body: &[u8],
    guard: &mut Guard,
    limits: &ServeOptions,
) -> Result<(), Stop> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let deadline = Instant::now() + limits.idle_timeout;
        let parts = [IoSlice::new(head), IoSlice::new(body)];
        let sent = guard
            .within(deadline, false, io.write_vectored(&parts))
            .await?;
        if sent == 0 {
            return Err(Stop::Io(std::io::ErrorKind::WriteZero.into()));
        }
        let from_head = sent.min(head.len());
        head = &head[from_head..];
        body = &body[sent - from_head..];
    }
    let deadline = Instant::now() + limits.idle_timeout;
    guard.within(deadline, false, io.flush()).await
}

impl Stop {
    fn ended<I>(self) -> std::io::Result<Ended<I>> {
        match self {
            Stop::Quiet => {
                tracing::debug!("closing a connection with nothing left to do");
                Ok(Ended::Closed)
            }
            Stop::Close => Ok(Ended::Closed),
            Stop::Io(e) => Err(e),
        }
    }
}

/// The connection's limits while the lane waits on it: one timer for the connection,
/// and shutdown's steps, each looked at only when it fires.
struct Guard {
    shutdown: FuturesUnordered<BoxFuture<'static, Shutdown>>,
    /// Never later than the current wait's deadline: set to at most the shortest limit
    /// from when it last fired, so a wait's deadline (at least that far from when the
    /// wait began) is never earlier. Most waits end long before it fires, so they cost
    /// no timer of their own.
    timer: Pin<Box<Sleep>>,
    shortest: Duration,
    /// Shutdown started: the current request is the connection's last.
    draining: bool,
}

impl Guard {
    fn new(
        limits: &ServeOptions,
        shutdown: FuturesUnordered<BoxFuture<'static, Shutdown>>,
    ) -> Guard {
        let shortest = limits.header_read_timeout.min(limits.idle_timeout);
        Guard {
            shutdown,
            timer: Box::pin(tokio::time::sleep(shortest)),
            shortest,
            draining: false,
        }
    }

    /// `work`'s outcome, unless `deadline` passes first or shutdown ends the
    /// connection: at once when it starts and `between_requests`, else when its drain
    /// time is up.
    async fn within<T>(
        &mut self,
        deadline: Instant,
        between_requests: bool,
        work: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T, Stop> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased; // the connection first: it is what ends almost every wait
                done = work.as_mut() => return done.map_err(Stop::Io),
                Some(step) = self.shutdown.next() => match step {
                    Shutdown::Drain => {
                        self.draining = true;
                        if between_requests {
                            return Err(Stop::Close);
                        }
                    }
                    Shutdown::Close => return Err(Stop::Close),
                },
                () = self.timer.as_mut() => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Stop::Quiet);
                    }
                    self.timer.as_mut().reset(deadline.min(now + self.shortest));
                }
            }
        }
    }
}

thread_local! {
    /// This thread's `Date` value, written once a second.
    static DATE: CachedDate = const { CachedDate::new() };
}

/// An HTTP date (RFC 9110 §5.6.7), rendered when the second turns.
struct CachedDate {
    rendered: std::cell::Cell<(u64, [u8; 29])>,
}

impl CachedDate {
    const fn new() -> CachedDate {
        CachedDate {
            rendered: std::cell::Cell::new((0, [b' '; 29])),
        }
    }

    /// The current second's date.
    fn now(&self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let (rendered_for, mut text) = self.rendered.get();
        if rendered_for != second {
            // Always 29 bytes ("Sun, 06 Nov 1994 08:49:37 GMT") for years 1970-9999.
            let date = httpdate::fmt_http_date(now);
            if date.len() == text.len() {
                text.copy_from_slice(date.as_bytes());
                self.rendered.set((second, text));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the lane takes `request` (a whole request head).
    fn takes(request: &str) -> bool {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut fields);
        assert!(
            parsed
                .parse(request.as_bytes())
                .expect("parses")
                .is_complete()
        );
        quick_request(&parsed).is_some()
    }

    #[test]
    fn takes_plain_gets_and_leaves_everything_about_bodies_or_the_connection() {
        assert!(takes(
            "GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
        ));
        assert!(takes(
            "GET /a%20b/c-d_e.f~g:h@i!$&'()*+,;= HTTP/1.1\r\n\r\n"
        ));
        assert!(takes("GET /a HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n"));
        for left in [
            "HEAD /a HTTP/1.1\r\n\r\n",
            "POST /a HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://x/a HTTP/1.1\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "GET /a#b HTTP/1.1\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\n\r\n",
            "GET /a{b} HTTP/1.1\r\n\r\n",
            "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nTE: trailers\r\n\r\n",
        ] {
            assert!(!takes(left), "{left:?}");
        }
        let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert!(!takes(&long_target));
        let large_fields = format!(
            "GET /a HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES)
        );
        assert!(!takes(&large_fields));
    }

    #[test]
    fn a_head_leaves_framing_to_the_lane_and_keeps_a_stored_date() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("value"));
        headers.insert(header::CONTENT_LENGTH, "999".parse().expect("value"));
        headers.insert(header::CONNECTION, "close".parse().expect("value"));
        let undated = encode_head(StatusCode::OK, &headers);
        assert_eq!(
            undated.as_bytes(),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
        );
        assert!(!undated.dated);

        let mut framed = undated.as_bytes().to_vec();
        frame(&mut framed, 5, !undated.dated, true);
        let framed = String::from_utf8(framed).expect("text");
        let date = framed
            .split("\r\ndate: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .expect("a date");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert!(framed.contains("\r\ncontent-length: 5\r\n"), "{framed}");
        assert!(
            framed.ends_with("\r\nconnection: close\r\n\r\n"),
            "{framed}"
        );

        headers.insert(
            header::DATE,
            "Thu, 26 Nov 2026 06:07:14 GMT".parse().expect("value"),
        );
        let dated = encode_head(StatusCode::NOT_FOUND, &headers);
        assert!(dated.dated);
        let mut framed = dated.as_bytes().to_vec();
        frame(&mut framed, 0, !dated.dated, false);
        assert_eq!(
            String::from_utf8(framed).expect("text"),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\
             date: Thu, 26 Nov 2026 06:07:14 GMT\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
