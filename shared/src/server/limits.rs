//! Limits on what one request and one client address may take, the same over HTTP/1.1
//! and HTTP/2: a request target longer than [`MAX_URI_BYTES`] is answered 414 and
//! header fields over [`MAX_HEADER_BYTES`] in all 431, before any handler runs (hyper
//! would otherwise answer HTTP/1.1 itself with other limits, and reset HTTP/2 streams);
//! and one client address holds at most a share of the connection cap.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::{Either, Ready, ready};
use http::StatusCode;

/// Longest request target (path and query) served.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most bytes of header fields (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The HTTP/2 header list limit given to hyper: above ours, so our 431 answers first.
pub const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// Requests one HTTP/2 connection may have in flight at once (announced in SETTINGS;
/// hyper refuses streams beyond it, and resets of streams by the client count against
/// hyper's own rapid-reset limit).
pub const HTTP2_MAX_STREAMS: u32 = 100;

/// A service that refuses oversized requests before `inner` sees them.
#[derive(Clone)]
pub(super) struct SizeLimits<S> {
    pub(super) inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for SizeLimits<S>
where
    S: tower::Service<http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match refusal(&request) {
            Some(response) => Either::Left(ready(Ok(response))),
            None => Either::Right(self.inner.call(request)),
        }
    }
}

/// The answer to a request too large to take, if it is one.
fn refusal<B>(request: &http::Request<B>) -> Option<Response> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(refuse(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI_BYTES} bytes\n"),
        ));
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Some(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request's header fields are larger than {MAX_HEADER_BYTES} bytes\n"),
        ));
    }
    None
}

fn refuse(status: StatusCode, why: String) -> Response {
    let mut response = (status, Body::from(why)).into_response();
    // The client may not have sent all of its request: do not wait for the rest.
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// Connections open per client address, each address holding at most `limit`.
#[derive(Debug)]
pub(super) struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address, given back when dropped.
pub(super) struct AddressSlot {
    addresses: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    pub(super) fn new(limit: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `address`, unless it holds its share.
    pub(super) fn take(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let mut open = self.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            addresses: self.clone(),
            address,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.addresses.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_its_slots_back() {
        let addresses = PerAddress::new(2);
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let first = addresses.take(one).expect("first");
        let _second = addresses.take(one).expect("second");
        assert!(addresses.take(one).is_none(), "its share is used");
        assert!(addresses.take(two).is_some(), "another address is served");
        drop(first);
        assert!(
            addresses.take(one).is_some(),
            "a closed connection gives its slot back"
        );
    }

    #[test]
    fn oversized_targets_and_headers_are_refused() {
        let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
        let request = http::Request::get(long.as_str()).body(()).expect("request");
        assert_eq!(
            refusal(&request).map(|r| r.status()),
            Some(StatusCode::URI_TOO_LONG)
        );
        let request = http::Request::get("/a")
            .header("x-big", "b".repeat(MAX_HEADER_BYTES))
            .body(())
            .expect("request");
        assert_eq!(
            refusal(&request).map(|r| r.status()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let request = http::Request::get("/a").body(()).expect("request");
        assert!(refusal(&request).is_none());
    }
}
