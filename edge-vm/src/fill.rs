//! Coalesced, streamed misses. The first miss for a key starts one fill: a task of its
//! own (a client that goes away does not stop it) that asks the origin once and keeps
//! every chunk as it arrives. That client and every concurrent miss for the key read
//! the same fill as it grows, so the first byte reaches them before the object is
//! complete and the origin sees one request. When the body is whole the fill is
//! stored (unless a purge asked for a newer generation meanwhile) and leaves the map;
//! later requests are hits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use meridian_shared::storage::ByteStream;
use tokio::sync::watch;

use crate::store::StoredMeta;

/// What a waiter learns about a fill.
#[derive(Debug, Clone)]
pub enum FillState {
    /// The origin has not answered yet.
    Waiting,
    /// The body is arriving (or has arrived): read it from the fill.
    Streaming {
        /// The response status.
        status: StatusCode,
        /// The response headers.
        headers: HeaderMap,
        /// With `Vary`: the variant key of the request that started the fill. A waiter
        /// whose own request selects another variant fetches its own.
        variant: Option<String>,
        /// When the origin generated it (its age on arrival taken off).
        generated: tokio::time::Instant,
        /// The body's length.
        size: u64,
        /// Chunks received so far.
        chunks: usize,
        /// The whole body arrived (and was offered to the store).
        complete: bool,
    },
    /// The response is not one to store and share: fetch it yourself.
    Declined,
    /// The origin said the stored copy is still current (304): it answers, with these
    /// refreshed headers and freshness.
    Revalidated(Arc<StoredMeta>),
    /// The origin refused or failed, or the body broke off.
    Failed(Failure),
}

/// Why a fill failed, in a form every waiter can turn into its own error.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The status the failure answers with (404 for a missing object, 504 for an
    /// origin that timed out...).
    pub status: StatusCode,
    /// What happened (logged; clients see only the status's reason for 5xx).
    pub message: String,
}

impl Failure {
    /// The failure of `error`.
    pub fn of(error: &meridian_shared::Error) -> Failure {
        let message = match error {
            // What is missing: `into_error` says "object not found" again.
            meridian_shared::Error::NotFound(what) => what.clone(),
            other => other.to_string(),
        };
        Failure {
            status: error.http_status(),
            message,
        }
    }

    /// A broken body: the origin failed mid-way.
    pub fn broken(message: String) -> Failure {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            message,
        }
    }

    /// This failure as an error of the same status, for one waiter.
    pub fn into_error(self) -> meridian_shared::Error {
        use meridian_shared::Error;
        match self.status {
            StatusCode::NOT_FOUND => Error::NotFound(self.message),
            StatusCode::GATEWAY_TIMEOUT => {
                Error::timeout("the origin", std::io::Error::other(self.message))
            }
            StatusCode::BAD_GATEWAY => Error::upstream_msg(self.message),
            _ => Error::internal_msg(self.message),
        }
    }
}

/// One fill in progress.
pub struct Fill {
    state: watch::Sender<FillState>,
    /// Every chunk received, shared with readers (no copies: `Bytes` are shared).
    chunks: Mutex<Vec<Bytes>>,
}

impl Fill {
    fn new() -> Fill {
        Fill {
            state: watch::channel(FillState::Waiting).0,
            chunks: Mutex::new(Vec::new()),
        }
    }

    /// Waits until the origin has answered; what it said.
    pub async fn answered(&self) -> FillState {
        let mut state = self.state.subscribe();
        match state.wait_for(|s| !matches!(s, FillState::Waiting)).await {
            Ok(state) => state.clone(),
            Err(_) => {
                FillState::Failed(Failure::broken("the fill stopped without an answer".into()))
            }
        }
    }

    /// The origin answered with a body to share.
    pub fn start(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        variant: Option<String>,
        generated: tokio::time::Instant,
        size: u64,
    ) {
        self.state.send_replace(FillState::Streaming {
            status,
            headers,
            variant,
            generated,
            size,
            chunks: 0,
            complete: false,
        });
    }

    /// Appends a chunk and wakes readers.
    pub fn push(&self, chunk: Bytes) {
        let count = {
            let mut chunks = self.lock();
            chunks.push(chunk);
            chunks.len()
        };
        self.state.send_modify(|state| {
            if let FillState::Streaming { chunks, .. } = state {
                *chunks = count;
            }
        });
    }

    /// The body is whole.
    pub fn complete(&self) {
        self.state.send_modify(|state| {
            if let FillState::Streaming { complete, .. } = state {
                *complete = true;
            }
        });
    }

    /// Ends the fill in `state` (declined, missing or failed).
    pub fn end(&self, state: FillState) {
        self.state.send_replace(state);
    }

    /// The body, from its first byte, as it arrives.
    pub fn reader(self: &Arc<Self>) -> ByteStream {
        let fill = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut state = fill.state.subscribe();
            let mut next = 0usize;
            loop {
                // Read the state and let go of it before yielding anything.
                let seen = match &*state.borrow_and_update() {
                    FillState::Streaming { chunks, complete, .. } => Ok((*chunks, *complete)),
                    FillState::Failed(failure) => Err(failure.message.clone()),
                    _ => Err("the fill was abandoned".to_string()),
                };
                let (available, complete) = seen.map_err(std::io::Error::other)?;
                if next < available {
                    let chunks: Vec<Bytes> = fill.lock()[next..available].to_vec();
                    next = available;
                    for chunk in chunks {
                        yield chunk;
                    }
                    continue;
                }
                if complete {
                    break;
                }
                if state.changed().await.is_err() {
                    Err(std::io::Error::other("the fill stopped"))?;
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Bytes>> {
        self.chunks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fills in progress, by key.
#[derive(Clone, Default)]
pub struct Fills {
    map: Arc<Mutex<HashMap<String, Arc<Fill>>>>,
}

impl Fills {
    /// The fill for `key`, and whether this call started it (the caller then runs it).
    pub fn join_or_start(&self, key: &str) -> (Arc<Fill>, bool) {
        let mut map = self.lock();
        if let Some(fill) = map.get(key) {
            return (fill.clone(), false);
        }
        let fill = Arc::new(Fill::new());
        map.insert(key.to_string(), fill.clone());
        (fill, true)
    }

    /// A fill of its own, that no other request joins.
    pub fn solo() -> Arc<Fill> {
        Arc::new(Fill::new())
    }

    /// Forgets whatever fill `key` has, so the next miss starts a new one: after a
    /// purge, no request may join a fill that began before it. Its readers go on.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets the fills of every key starting with `prefix`.
    pub fn forget_prefix(&self, prefix: &str) {
        self.lock().retain(|key, _| !key.starts_with(prefix));
    }

    /// Forgets `fill` (only that one: a newer fill for the key may have started).
    pub fn remove(&self, key: &str, fill: &Arc<Fill>) {
        let mut map = self.lock();
        if map
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, fill))
        {
            map.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Fill>>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads `body` into `fill` (and into `write`, the store's writer), checking it comes
/// to `size` bytes. `Ok` once it is whole.
pub async fn copy_body(
    fill: &Fill,
    mut body: ByteStream,
    size: u64,
    mut write: impl FnMut(&Bytes),
) -> Result<(), String> {
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the origin's body broke off: {e}"))?;
        received += chunk.len() as u64;
        write(&chunk);
        fill.push(chunk);
    }
    if received != size {
        return Err(format!("the origin sent {received} of {size} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_gives_each_waiter_the_error_it_came_from() {
        use meridian_shared::Error;
        let missing = Failure::of(&Error::NotFound("a.txt".into())).into_error();
        assert_eq!(missing.to_string(), "object not found: a.txt");
        assert_eq!(missing.http_status(), StatusCode::NOT_FOUND);
        let failed = Failure::of(&Error::upstream_msg("origin closed")).into_error();
        assert_eq!(failed.http_status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn readers_see_chunks_as_they_arrive_and_the_end() {
        let fills = Fills::default();
        let (fill, started) = fills.join_or_start("k");
        assert!(started);
        let (same, started_again) = fills.join_or_start("k");
        assert!(!started_again && Arc::ptr_eq(&fill, &same));
        fill.start(
            StatusCode::OK,
            HeaderMap::new(),
            None,
            tokio::time::Instant::now(),
            6,
        );
        let mut early = fill.reader();
        fill.push(Bytes::from_static(b"abc"));
        assert_eq!(
            early.next().await.expect("chunk").expect("bytes").as_ref(),
            b"abc"
        );
        fill.push(Bytes::from_static(b"def"));
        fill.complete();
        assert_eq!(
            early.next().await.expect("chunk").expect("bytes").as_ref(),
            b"def"
        );
        assert!(early.next().await.is_none());
        let late = meridian_shared::storage::collect(fill.reader())
            .await
            .expect("body");
        assert_eq!(late.as_ref(), b"abcdef", "a late reader gets it all");
        fills.remove("k", &fill);
        let (fresh, started) = fills.join_or_start("k");
        assert!(started, "gone from the map");
        fills.forget("k");
        let (newer, started) = fills.join_or_start("k");
        assert!(
            started && !Arc::ptr_eq(&fresh, &newer),
            "a purge starts a new fill"
        );
        fills.remove("k", &fresh);
        assert!(
            !fills.join_or_start("k").1,
            "the old fill's end leaves the new one"
        );
    }

    #[tokio::test]
    async fn a_broken_fill_breaks_its_readers() {
        let fill = Arc::new(Fill::new());
        fill.start(
            StatusCode::OK,
            HeaderMap::new(),
            None,
            tokio::time::Instant::now(),
            6,
        );
        let mut reader = fill.reader();
        fill.push(Bytes::from_static(b"abc"));
        fill.end(FillState::Failed(Failure::broken("cut".into())));
        assert!(reader.next().await.expect("item").is_err());
    }
}
