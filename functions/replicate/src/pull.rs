//! The replicator as a worker: pulls Cloud Storage notifications from a Pub/Sub
//! subscription (`replicate.pull_subscription`) and applies each through the same core
//! as the HTTP doors. A message is acknowledged once its change is in every regional
//! bucket and its invalidation cannot be lost; a change that failed is handed back
//! (nack) for redelivery; one that can never apply is acknowledged with an error log,
//! or it would come back forever (on Google Cloud, a dead-letter topic keeps those).

use std::time::Duration;

use futures::StreamExt;
use meridian_shared::pubsub::{self, ReceivedMessage};
use meridian_shared::{Config, Result};
use tokio_util::sync::CancellationToken;

use crate::{Notification, ReplicateState};

/// Changes applied at once.
const IN_FLIGHT: usize = 32;
/// Wait before subscribing again after the stream broke off.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);

/// A subscription to storage notifications, checked to exist.
pub struct PullWorker {
    subscription: pubsub::Subscription,
    ack_deadline: Duration,
}

impl PullWorker {
    /// The worker for `config.replicate.pull_subscription`, which must exist (infra/ or
    /// the emulated stack creates it); `None` when none is configured.
    pub async fn connect(config: &Config) -> Result<Option<PullWorker>> {
        let Some(id) = &config.replicate.pull_subscription else {
            return Ok(None);
        };
        let client = pubsub::connect(&config.pubsub).await?;
        let subscription = client.subscription(id);
        let exists = subscription.exists(None).await.map_err(|status| {
            pubsub::status_error(format!("looking up subscription {id}"), status)
        })?;
        if !exists {
            return Err(meridian_shared::Error::Config(format!(
                "replicate.pull_subscription: subscription {id:?} does not exist in Pub/Sub"
            )));
        }
        Ok(Some(PullWorker {
            subscription,
            ack_deadline: Duration::from_secs(config.replicate.pull_ack_deadline_seconds),
        }))
    }

    /// Applies what arrives until `stop`, subscribing again whenever the stream breaks
    /// off. Returns once what it holds has been handed back.
    pub async fn run(self, state: ReplicateState, stop: CancellationToken) {
        let id = self.subscription.id();
        tracing::info!(subscription = %id, "pulling storage notifications");
        while !stop.is_cancelled() {
            match self
                .subscription
                .subscribe(Some(pubsub::stream_settings(
                    self.ack_deadline,
                    IN_FLIGHT as i64,
                )))
                .await
            {
                Ok(mut messages) => {
                    let state = &state;
                    (&mut messages)
                        .take_until(stop.cancelled())
                        .for_each_concurrent(IN_FLIGHT, |message| handle(state, message))
                        .await;
                    // Hands back what was received and not applied, for redelivery.
                    messages.dispose().await;
                }
                Err(status) => {
                    tracing::warn!(subscription = %id, %status, "cannot pull storage notifications; trying again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(meridian_shared::outbound::with_jitter(RESUBSCRIBE_AFTER)) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    /// Spawns [`PullWorker::run`]; cancel `stop` and await the handle for a clean stop.
    pub fn spawn(
        self,
        state: ReplicateState,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(state, stop))
    }
}

async fn handle(state: &ReplicateState, message: ReceivedMessage) {
    let id = message.message.message_id.clone();
    let applied =
        match Notification::from_message(&message.message.attributes, &message.message.data, &id) {
            Ok(Notification::Change(change)) => state.apply(&change).await.map(|_| ()),
            Ok(Notification::Ignored(_)) => Ok(()),
            Err(e) => Err(e),
        };
    let acknowledged = match applied {
        Ok(()) => message.ack().await,
        Err(e) if e.http_status().is_client_error() => {
            tracing::error!(message = %id, cause = %meridian_shared::error::Chain(&e), "notification dropped: it can never apply");
            message.ack().await
        }
        Err(e) => {
            tracing::warn!(message = %id, cause = %meridian_shared::error::Chain(&e), "change not applied; handed back for redelivery");
            message.nack().await
        }
    };
    if let Err(status) = acknowledged {
        // Unacknowledged, it comes back after the deadline; applying twice is harmless.
        tracing::warn!(message = %id, %status, "acknowledging a notification failed");
    }
}
