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
//!   edge that dies before purging comes back after the ack deadline.
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
        let subscription = pubsub::ensure_subscription(
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
        tracing::info!(subscription = %subscription_id, topic = %config.invalidation.topic, "reading invalidations");
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
