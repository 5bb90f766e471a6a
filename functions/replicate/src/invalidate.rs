//! Telling edges that an object changed, behind one trait with two transports:
//! [`EdgePurger`](crate::EdgePurger) posts to every configured edge over HTTP (the
//! local stack, any fixed fleet); [`PubSubInvalidator`] publishes one message on the
//! invalidation topic, which every edge reads from a subscription of its own (Google
//! Cloud, where the autoscaler adds and removes edges).
//!
//! Either way a failure is never counted as done: HTTP purges an edge did not take are
//! retried until it takes them; a message Pub/Sub did not accept fails the change,
//! which is then delivered again.

use std::sync::Arc;

use async_trait::async_trait;
use meridian_shared::api::PurgeRequest;
use meridian_shared::pubsub::{self, PubsubMessage};
use meridian_shared::{Config, Error, ObjectName, Result};
use serde::Serialize;

use crate::purge::{EdgePurger, PurgeReport};

/// Tells edges to drop copies of an object older than a generation.
#[async_trait]
pub trait Invalidator: Send + Sync {
    /// Edges are to drop copies of `name` from main-bucket generations older than
    /// `older_than`. `Ok` once the invalidation cannot be lost any more.
    async fn invalidate(&self, name: &ObjectName, older_than: i64) -> Result<Invalidation>;
}

/// What an invalidation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum Invalidation {
    /// Posted to every edge.
    Http(PurgeReport),
    /// Published on the invalidation topic.
    Pubsub {
        /// The message id Pub/Sub gave it.
        message_id: String,
    },
}

#[async_trait]
impl Invalidator for EdgePurger {
    async fn invalidate(&self, name: &ObjectName, older_than: i64) -> Result<Invalidation> {
        Ok(Invalidation::Http(self.purge(name, older_than).await?))
    }
}

/// Publishes invalidations on a Pub/Sub topic.
pub struct PubSubInvalidator {
    publisher: pubsub::Publisher,
    topic: String,
}

impl PubSubInvalidator {
    /// Publishes on `config.invalidation.topic`, which must exist (infra/ or the
    /// emulated stack creates it; the replicator may only publish). Until it does,
    /// every change fails with Pub/Sub's answer and is delivered again.
    pub async fn connect(config: &Config) -> Result<PubSubInvalidator> {
        let client = pubsub::connect(&config.pubsub).await?;
        let topic = client.topic(&config.invalidation.topic);
        Ok(PubSubInvalidator {
            publisher: topic.new_publisher(None),
            topic: config.invalidation.topic.clone(),
        })
    }
}

#[async_trait]
impl Invalidator for PubSubInvalidator {
    async fn invalidate(&self, name: &ObjectName, older_than: i64) -> Result<Invalidation> {
        let request = PurgeRequest {
            name: name.to_string(),
            older_than: Some(older_than),
        };
        let message = PubsubMessage {
            data: serde_json::to_vec(&request)
                .map_err(|e| Error::internal("encoding an invalidation", e))?,
            ..PubsubMessage::default()
        };
        // Published at once rather than batched: each change waits for its own.
        let ids = self
            .publisher
            .publish_immediately(vec![message], None)
            .await
            .map_err(|status| {
                pubsub::status_error(format!("publishing on topic {}", self.topic), status)
            })?;
        let message_id = ids.into_iter().next().ok_or_else(|| {
            Error::upstream_msg(format!("topic {} returned no message id", self.topic))
        })?;
        Ok(Invalidation::Pubsub { message_id })
    }
}

/// The invalidator `config.invalidation.via` names: every edge of the config over
/// HTTP, or the invalidation topic.
pub async fn from_config(config: &Config) -> Result<Arc<dyn Invalidator>> {
    for_config(config, || EdgePurger::from_config(config)).await
}

/// The invalidator `config.invalidation.via` names, with `over_http` making the HTTP
/// purger (callers that know their edges and client better than the config does).
pub async fn for_config<E: From<Error>>(
    config: &Config,
    over_http: impl FnOnce() -> std::result::Result<EdgePurger, E>,
) -> std::result::Result<Arc<dyn Invalidator>, E> {
    Ok(match config.invalidation.via {
        meridian_shared::config::InvalidationTransport::Http => Arc::new(over_http()?),
        meridian_shared::config::InvalidationTransport::Pubsub => {
            Arc::new(PubSubInvalidator::connect(config).await?)
        }
    })
}
