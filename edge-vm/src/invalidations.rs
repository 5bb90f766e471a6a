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
//! An edge with a disk tier that finds its subscription still there has missed no
//! purge once the backlog is applied: from then on, the copies found on its disk are
//! served as they are (until then, each is revalidated with the origin first). A new
//! subscription means purges may have been missed, and every copy found on disk is
//! revalidated before it is served.
//!
//! Messages carry no token: on Google Cloud, only the replicator's service account may
//! publish on the topic (IAM does what the purge token does over HTTP).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// The backlog found at start counts as applied once the listener has read for at
/// least this long: a message handed to the previous run's last pull (cut short when
/// it stopped) is delivered again one ack deadline after it was handed out (the
/// Pub/Sub emulator has been seen to take 10 s), and a loaded machine may take longer...
const CATCH_UP_FOR: Duration = Duration::from_secs(3 * ACK_DEADLINE.as_secs());
/// ...and nothing has arrived for this long.
const BACKLOG_QUIET: Duration = Duration::from_secs(2);
/// Wait after a failed pull; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// This edge's subscription and the task applying what arrives on it.
pub struct InvalidationListener {
    client: PubSubClient,
    subscription_id: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Becomes true once the backlog found at start is applied.
    backlog_applied: tokio::sync::watch::Receiver<bool>,
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
        let stop = CancellationToken::new();
        let activity = Arc::new(Activity::default());
        let task = tokio::spawn(listen(
            subscription,
            state.clone(),
            activity.clone(),
            stop.clone(),
        ));
        let (applied, backlog_applied) = tokio::sync::watch::channel(false);
        if reused && state.has_disk_tier() {
            tokio::spawn(trust_once_caught_up(state, activity, applied, stop.clone()));
        } else {
            // Nothing to catch up on: a new subscription cannot hold what was missed.
            applied.send_replace(true);
        }
        Ok(InvalidationListener {
            client,
            subscription_id,
            stop,
            task,
            backlog_applied,
        })
    }

    /// Waits until the invalidations published while the edge was down are applied
    /// (at once when there was no backlog to wait for).
    pub async fn backlog_applied(&self) {
        let mut applied = self.backlog_applied.clone();
        let _ = applied.wait_for(|applied| *applied).await;
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
/// library keeps pinging on it), and the emulator goes on handing messages to it for
/// good; a cancelled unary pull may still be handed the messages of that moment, but
/// they come back after their ack deadline.
async fn listen(
    subscription: pubsub::Subscription,
    state: EdgeState,
    activity: Arc<Activity>,
    stop: CancellationToken,
) {
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
                let took = !messages.is_empty();
                if took {
                    activity.applying();
                }
                for message in messages {
                    apply(&state, message).await;
                }
                activity.pulled(took);
            }
            Err(status) => {
                activity.failed();
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

/// When the listener last applied messages, whether it is applying some now, and
/// whether its last pull failed.
#[derive(Default)]
struct Activity {
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
    applying: AtomicBool,
    failing: AtomicBool,
}

impl Activity {
    fn applying(&self) {
        self.applying.store(true, Ordering::SeqCst);
    }

    /// A pull came back (`took`: with messages, now applied). An empty one is not
    /// activity: a pull may return empty handed whenever the server likes.
    fn pulled(&self, took: bool) {
        if took {
            *self.lock() = Some(tokio::time::Instant::now());
            self.applying.store(false, Ordering::SeqCst);
        }
        self.failing.store(false, Ordering::SeqCst);
    }

    fn failed(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Whether nothing was applied for [`BACKLOG_QUIET`], nothing is being applied, and
    /// the subscription can be read.
    fn quiet(&self) -> bool {
        !self.applying.load(Ordering::SeqCst)
            && !self.failing.load(Ordering::SeqCst)
            && self
                .lock()
                .is_none_or(|last| last.elapsed() >= BACKLOG_QUIET)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Once the listener has read for [`CATCH_UP_FOR`] and gone quiet, the backlog
/// published while the edge was down is applied: the copies found on its disk are
/// trusted from then on.
async fn trust_once_caught_up(
    state: EdgeState,
    activity: Arc<Activity>,
    applied: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
) {
    tracing::info!(
        seconds = CATCH_UP_FOR.as_secs(),
        "applying what was published while down; until then, copies found on disk are revalidated"
    );
    let mut wait = CATCH_UP_FOR;
    while !stop.is_cancelled() {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        if activity.quiet() {
            state.purges_caught_up();
            applied.send_replace(true);
            return;
        }
        wait = BACKLOG_QUIET;
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
