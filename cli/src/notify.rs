//! Storage notifications for the local stack, standing in for Cloud Storage's own:
//! a [`NotifyingBucket`] wraps the main bucket and, after every successful write or
//! delete, POSTs a binary-mode CloudEvent to the replicator, as Eventarc would.
//!
//! Delivery is at-least-once while the stack runs: each event is retried with capped
//! backoff until the replicator answers 2xx (or 4xx, which can never succeed), in the
//! background, so a slow replicator never holds up an upload. Events still pending
//! when the stack stops are covered by the reconciliation at the next start.

use std::sync::Arc;
use std::time::Duration;

use meridian_shared::events::{self, StorageEventKind, StorageObjectData};
use meridian_shared::storage::{ByteStream, PutOptions};
use meridian_shared::{Bucket, Error, ObjectMeta, ObjectName, Result};

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Sends storage events to one replicator URL.
#[derive(Clone, Debug)]
pub struct EventNotifier {
    http: reqwest::Client,
    target: String,
}

impl EventNotifier {
    /// A notifier posting to `target` (the replicator's base URL).
    pub fn new(http: reqwest::Client, target: String) -> EventNotifier {
        EventNotifier { http, target }
    }

    /// Queues delivery of one event; returns at once.
    pub fn notify(&self, kind: StorageEventKind, data: StorageObjectData) {
        let notifier = self.clone();
        tokio::spawn(async move { notifier.deliver(kind, data).await });
    }

    async fn deliver(&self, kind: StorageEventKind, data: StorageObjectData) {
        let body = match serde_json::to_vec(&data) {
            Ok(body) => body,
            Err(e) => return tracing::error!(cause = %e, "cannot encode storage event"),
        };
        // One event, one id: redeliveries carry the same headers, as Eventarc's do.
        let headers = events::binary_mode_headers(kind, &data);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1u64.. {
            let mut request = self.http.post(&self.target).body(body.clone());
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return,
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return tracing::error!(%status, body = %text, object = %data.name, "replicator refused event");
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), attempt, object = %data.name, "replicator failed; retrying")
                }
                Err(e) => {
                    tracing::warn!(cause = %e, attempt, object = %data.name, "replicator unreachable; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A bucket that reports its changes like Cloud Storage does.
#[derive(Debug, Clone)]
pub struct NotifyingBucket {
    inner: Arc<dyn Bucket>,
    notifier: EventNotifier,
}

impl NotifyingBucket {
    /// Wraps `inner`, reporting to `notifier`.
    pub fn new(inner: Arc<dyn Bucket>, notifier: EventNotifier) -> NotifyingBucket {
        NotifyingBucket { inner, notifier }
    }
}

#[async_trait::async_trait]
impl Bucket for NotifyingBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let meta = self.inner.put(name, body, options).await?;
        self.notifier.notify(
            StorageEventKind::Finalized,
            StorageObjectData::from_meta(self.name(), &meta),
        );
        Ok(meta)
    }

    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)> {
        self.inner.get(name).await
    }

    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta> {
        self.inner.head(name).await
    }

    async fn delete(&self, name: &ObjectName, if_generation_match: Option<i64>) -> Result<()> {
        // The event must name the generation that was deleted, so pin it: read it,
        // then delete only that generation (re-reading if a write slips in between).
        for _ in 0..3 {
            let live = self.inner.head(name).await?;
            let generation = if_generation_match.unwrap_or(live.generation);
            match self.inner.delete(name, Some(generation)).await {
                Ok(()) => {
                    self.notifier.notify(
                        StorageEventKind::Deleted,
                        StorageObjectData::from_meta(self.name(), &live),
                    );
                    return Ok(());
                }
                Err(Error::PreconditionFailed(_)) if if_generation_match.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::upstream_msg(format!(
            "{name}: kept changing while being deleted"
        )))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<&str>,
    ) -> Result<meridian_shared::storage::ListPage> {
        self.inner.list_page(prefix, page_token).await
    }
}
