//! Invalidations over Pub/Sub (Google Cloud, where the autoscaler adds and removes
//! edges and nobody knows their addresses). The replicator publishes one
//! [`PurgeRequest`](meridian_shared::api::PurgeRequest) per change on the invalidation
//! topic; every edge reads the topic through a subscription of its own:
//!
//! - created at start, before the edge serves, so no change after that is missed; an
//!   existing one (an edge restarted under the same id) is reused with its backlog;
//! - deleted at a clean stop;
//! - expiring after `invalidation.subscription_ttl_seconds` without a reader, so an
//!   edge that vanished leaves nothing behind for long;
//! - each message acknowledged only after its purge is applied: a message taken by an
//!   edge that dies before purging comes back after the ack deadline;
//! - kept at a clean stop when the edge has a disk tier: the edge will likely come
//!   back with its disk, and what was published meanwhile must reach it.
//!
//! An edge with a disk tier that finds its subscription still there applies the
//! backlog before it serves: then it has missed no purge, and the copies on its disk
//! are served as they are. A new subscription means purges may have been missed, and
//! every copy found on disk is revalidated with the origin before it is served.
//!
//! Messages carry no token: on Google Cloud, only the replicator's service account may
//! publish on the topic (IAM does what the purge token does over HTTP).

use std::time::Duration;

use meridian_shared::pubsub::{self, PubSubClient, ReceivedMessage};
use meridian_shared::{Config, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::EdgeState;

/// A message not acknowledged within this long is delivered again (to this edge).
const ACK_DEADLINE: Duration = Duration::from_secs(10);
/// Invalidations taken per pull.
const PULL_BATCH: i32 = 100;
/// Catching up at start ends when a pull brings nothing for this long.
const CAUGHT_UP_AFTER_QUIET: Duration = Duration::from_secs(2);
/// Wait after a failed pull; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// This edge's subscription and the task applying what arrives on it.
pub struct InvalidationListener {
    client: PubSubClient,
    subscription_id: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The subscription id of edge `edge_id` of `region`: stable, so an edge restarted
/// under the same id finds the invalidations published while it was down.
pub fn subscription_id(region: &str, edge_id: &str) -> String {
    let safe: String = format!("meridian-edge-{region}-{edge_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    safe.chars().take(255).collect()
}

impl InvalidationListener {
    /// Creates (or reuses) the subscription of edge `edge_id` to the invalidation
    /// topic and starts applying invalidations to `state`. Fails if Pub/Sub cannot be
    /// reached: an edge that would miss invalidations must not start serving.
    pub async fn start(
        config: &Config,
        edge_id: &str,
        state: EdgeState,
    ) -> Result<InvalidationListener> {
        let client = pubsub::connect(&config.pubsub).await?;
        let subscription_id = subscription_id(state.region(), edge_id);
        let (subscription, reused) = pubsub::create_or_reuse_subscription(
            &client,
            &subscription_id,
            &config.invalidation.topic,
            pubsub::pull_subscription(
                ACK_DEADLINE,
                Some(Duration::from_secs(
                    config.invalidation.subscription_ttl_seconds,
                )),
            ),
        )
        .await?;
        tracing::info!(subscription = %subscription_id, topic = %config.invalidation.topic, reused, "reading invalidations");
        if reused && state.has_disk_tier() {
            match catch_up(&subscription, &state).await {
                Ok(applied) => {
                    tracing::info!(applied, "invalidations published while down applied");
                    state.purges_caught_up();
                }
                Err(status) => {
                    tracing::warn!(%status, "cannot read the invalidations published while down: copies found on disk will be revalidated");
                }
            }
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(listen(subscription, state, stop.clone()));
        Ok(InvalidationListener {
            client,
            subscription_id,
            stop,
            task,
        })
    }

    /// The subscription's id.
    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    /// A clean stop: stops reading (after applying what it holds) and deletes the
    /// subscription.
    pub async fn stop(self) -> Result<()> {
        let InvalidationListener {
            client,
            subscription_id,
            ..
        } = self.halt().await;
        client
            .subscription(&subscription_id)
            .delete(None)
            .await
            .map_err(|status| {
                pubsub::status_error(format!("deleting subscription {subscription_id}"), status)
            })?;
        tracing::info!(subscription = %subscription_id, "invalidation subscription deleted");
        Ok(())
    }

    /// Stops reading but keeps the subscription, as an edge that dies does: what is
    /// published meanwhile waits there for an edge started under the same id.
    pub async fn abandon(self) {
        self.halt().await;
    }

    async fn halt(mut self) -> InvalidationListener {
        self.stop.cancel();
        let _ = (&mut self.task).await;
        self
    }
}

/// Pulls and applies invalidations until `stop`. Long-polling unary pulls rather than a
/// streaming pull: a cancelled streaming pull leaves its request half open (the client
/// library keeps pinging on it), and the emulator goes on handing messages to it; a
/// cancelled unary pull is simply gone, so an edge stopped in-process leaves nothing
/// behind that could swallow its invalidations.
async fn listen(subscription: pubsub::Subscription, state: EdgeState, stop: CancellationToken) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let pulled = tokio::select! {
            pulled = subscription.pull(PULL_BATCH, None) => pulled,
            () = stop.cancelled() => return,
        };
        match pulled {
            Ok(messages) => {
                backoff = FIRST_BACKOFF;
                // Applied in order, each acknowledged after its purge; a stop waits for
                // the batch in hand, so nothing taken is left unapplied.
                for message in messages {
                    apply(&state, message).await;
                }
            }
            Err(status) => {
                tracing::warn!(subscription = %subscription.id(), %status, "cannot read invalidations; trying again");
                tokio::select! {
                    () = tokio::time::sleep(meridian_shared::outbound::with_jitter(backoff)) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Applies what the subscription holds, until a pull brings nothing. Returns how many
/// invalidations were applied. A message handed to the last pull as it is cut short
/// comes back after the ack deadline, and is applied then.
async fn catch_up(
    subscription: &pubsub::Subscription,
    state: &EdgeState,
) -> std::result::Result<usize, pubsub::Status> {
    let mut applied = 0;
    loop {
        let pulled =
            tokio::time::timeout(CAUGHT_UP_AFTER_QUIET, subscription.pull(PULL_BATCH, None)).await;
        match pulled {
            Ok(Ok(messages)) if !messages.is_empty() => {
                applied += messages.len();
                for message in messages {
                    apply(state, message).await;
                }
            }
            Ok(Ok(_)) | Err(_) => return Ok(applied),
            Ok(Err(status)) => return Err(status),
        }
    }
}

/// Applies one invalidation, then acknowledges it. A message that can never apply is
/// acknowledged too (with an error log), or it would come back forever.
async fn apply(state: &EdgeState, message: ReceivedMessage) {
    if let Err(e) = state.apply_purge(&message.message.data).await {
        tracing::error!(message = %message.message.message_id, cause = %meridian_shared::error::Chain(&e), "invalidation message dropped: it can never apply");
    }
    if let Err(status) = message.ack().await {
        // It comes back after the deadline; purging twice does no harm.
        tracing::warn!(message = %message.message.message_id, %status, "acknowledging an invalidation failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_stable_and_valid_for_pubsub() {
        let id = subscription_id("europe-west2", "Edge_7.internal");
        assert_eq!(id, "meridian-edge-europe-west2-edge-7-internal");
        assert_eq!(id, subscription_id("europe-west2", "Edge_7.internal"));
        meridian_shared::config::validate_pubsub_id(&id).expect("a valid Pub/Sub id");
        let long = subscription_id("r", &"x".repeat(400));
        assert_eq!(long.len(), 255);
        meridian_shared::config::validate_pubsub_id(&long).expect("a valid Pub/Sub id");
    }
}
