//! Pub/Sub, through gcloud-pubsub (gRPC): connecting to Google or to the emulator, and
//! creating topics and subscriptions that may already exist. The replicator publishes
//! invalidations and pulls storage notifications; each edge reads invalidations from a
//! subscription of its own.

use std::time::Duration;

use gcloud_gax::conn::Environment;
use gcloud_gax::grpc::Code;
use gcloud_pubsub::client::{Client, ClientConfig};

use gcloud_pubsub::subscriber::SubscriberConfig;
use gcloud_pubsub::subscription::SubscriptionConfig;
use gcloud_pubsub::topic::Topic;

use crate::config::PubSubSettings;
use crate::error::{Error, Result};

pub use gcloud_gax::grpc::Status;
use gcloud_googleapis::pubsub::v1::ExpirationPolicy;
pub use gcloud_googleapis::pubsub::v1::PubsubMessage;
pub use gcloud_pubsub::client::Client as PubSubClient;
pub use gcloud_pubsub::publisher::Publisher;
pub use gcloud_pubsub::subscriber::ReceivedMessage;
pub use gcloud_pubsub::subscription::{SubscribeConfig, Subscription};

/// A client for `settings`: the emulator when one is configured (no credentials),
/// Google's endpoint with Application Default Credentials otherwise.
pub async fn connect(settings: &PubSubSettings) -> Result<Client> {
    let mut config = ClientConfig {
        project_id: settings.project.clone(),
        // Two channels are plenty for one message per change; the default four each
        // hold an HTTP/2 connection.
        pool_size: 2,
        ..ClientConfig::default()
    };
    match &settings.emulator_host {
        Some(host) => {
            config.environment = Environment::Emulator(host.clone());
            // The emulator accepts any project; name one so ids are always qualified.
            config.project_id = config.project_id.or(Some("meridian-local".into()));
        }
        None => {
            config = config
                .with_auth()
                .await
                .map_err(|e| Error::internal("Pub/Sub credentials", e))?;
        }
    }
    Client::new(config)
        .await
        .map_err(|e| Error::upstream("connecting to Pub/Sub", e))
}

/// The topic `id`, created if it does not exist yet.
pub async fn ensure_topic(client: &Client, id: &str) -> Result<Topic> {
    match client.create_topic(id, None, None).await {
        Ok(topic) => Ok(topic),
        Err(status) if status.code() == Code::AlreadyExists => Ok(client.topic(id)),
        Err(status) => Err(status_error(format!("creating topic {id}"), status)),
    }
}

/// The subscription `id` to `topic`, created with `settings` if it does not exist
/// yet (an existing one is kept as it is, with whatever it holds).
pub async fn ensure_subscription(
    client: &Client,
    id: &str,
    topic: &str,
    settings: SubscriptionConfig,
) -> Result<Subscription> {
    Ok(create_or_reuse_subscription(client, id, topic, settings)
        .await?
        .0)
}

/// As [`ensure_subscription`], also saying whether the subscription already existed
/// (and so holds what was published since it was made).
pub async fn create_or_reuse_subscription(
    client: &Client,
    id: &str,
    topic: &str,
    settings: SubscriptionConfig,
) -> Result<(Subscription, bool)> {
    match client.create_subscription(id, topic, settings, None).await {
        Ok(subscription) => Ok((subscription, false)),
        Err(status) if status.code() == Code::AlreadyExists => Ok((client.subscription(id), true)),
        Err(status) => Err(status_error(format!("creating subscription {id}"), status)),
    }
}

/// Settings for a pull subscription whose unacknowledged messages come back after
/// `ack_deadline`, and which Pub/Sub deletes after `expires_after` without readers.
pub fn pull_subscription(
    ack_deadline: Duration,
    expires_after: Option<Duration>,
) -> SubscriptionConfig {
    SubscriptionConfig {
        ack_deadline_seconds: i32::try_from(ack_deadline.as_secs()).unwrap_or(600),
        expiration_policy: expires_after.map(|ttl| ExpirationPolicy {
            ttl: Some(prost_types::Duration {
                seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }),
        ..SubscriptionConfig::default()
    }
}

/// Streaming-pull settings matching [`pull_subscription`]'s `ack_deadline`, holding
/// at most `in_flight` messages unacknowledged at once.
pub fn stream_settings(ack_deadline: Duration, in_flight: i64) -> SubscribeConfig {
    SubscribeConfig::default().with_subscriber_config(SubscriberConfig {
        stream_ack_deadline_seconds: i32::try_from(ack_deadline.as_secs()).unwrap_or(600),
        max_outstanding_messages: in_flight,
        ..SubscriberConfig::default()
    })
}

/// A failed Pub/Sub call as an upstream error (502), saying what was being done.
pub fn status_error(what: impl Into<String>, status: Status) -> Error {
    Error::upstream(what, status)
}
