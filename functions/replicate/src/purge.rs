//! Telling edges to drop an object over HTTP (the local stack, any fixed fleet): a
//! [`PurgeRequest`] to every edge at once, with a short-lived purge token signed by the
//! replicator's own key (edges verify it with the public half). Edges drop their copy
//! only if it comes from a main-bucket generation older than `older_than`, so an edge
//! that already fetched the new object keeps it.
//!
//! A failure is never counted as done: an edge that does not take the purge (refused
//! connection, timeout, an error answer) is tried again in the background, with backoff
//! and jitter, until it takes it. An edge unreachable for longer than
//! [`GIVE_UP_AFTER`] is given up on, loudly: by then any copy it held has expired. The
//! event itself succeeds once the buckets hold the change; purges still being retried
//! are reported, not hidden.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use meridian_shared::api::{PURGE_PATH, PurgeRequest};
use meridian_shared::auth::{self, PurgeSigningKey};
use meridian_shared::{Config, Error, ObjectName, Result};
use serde::Serialize;
use tokio::time::Instant;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long an unreachable edge is retried: a day, longer than edges keep copies
/// without an explicit Cache-Control (1 hour by default).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Sends purges to a fixed set of edges.
#[derive(Clone)]
pub struct EdgePurger {
    http: reqwest::Client,
    edges: Arc<Vec<String>>,
    key: Arc<PurgeSigningKey>,
}

/// What a purge did at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Edges that took it.
    pub reached: usize,
    /// Edges that did not (yet): retried in the background until they do.
    pub retrying: usize,
}

impl EdgePurger {
    /// Purges `edges` (base URLs) with tokens signed by `key`; `http` must trust the
    /// edges' certificates.
    pub fn new(http: reqwest::Client, edges: Vec<String>, key: Arc<PurgeSigningKey>) -> EdgePurger {
        EdgePurger {
            http,
            edges: Arc::new(edges),
            key,
        }
    }

    /// Every edge of every region in `config`, with an HTTP client bounded by the
    /// config's outbound timeouts.
    pub fn from_config(config: &Config) -> Result<EdgePurger> {
        let http = meridian_shared::outbound::client_builder(&config.outbound)
            .build()
            .map_err(|e| Error::internal("building the purge HTTP client", e))?;
        let edges = config
            .regions
            .iter()
            .flat_map(|r| r.edges.iter().cloned())
            .collect();
        Ok(EdgePurger::new(
            http,
            edges,
            Arc::new(config.auth.purge_signing_key()?),
        ))
    }

    /// Tells every edge to drop copies of `name` older than generation `older_than`.
    /// Edges that do not take it now are retried in the background (see the module).
    pub async fn purge(&self, name: &ObjectName, older_than: i64) -> Result<PurgeReport> {
        let request = PurgeRequest {
            name: name.to_string(),
            older_than: Some(older_than),
        };
        let request = &request;
        let sends = self
            .edges
            .iter()
            .map(|edge| async move { (edge, self.send(edge, request).await) });
        let mut report = PurgeReport::default();
        for (edge, sent) in join_all(sends).await {
            match sent {
                Ok(()) => report.reached += 1,
                Err(e) => {
                    tracing::warn!(%edge, object = %name, cause = %meridian_shared::error::Chain(&e), "purge not taken; retrying in the background");
                    report.retrying += 1;
                    let purger = self.clone();
                    let (edge, request) = (edge.clone(), request.clone());
                    tokio::spawn(async move { purger.retry(&edge, &request).await });
                }
            }
        }
        Ok(report)
    }

    /// One attempt at one edge, with a fresh token.
    async fn send(&self, edge: &str, request: &PurgeRequest) -> Result<()> {
        let token = self.key.mint("replicate", auth::unix_now())?;
        let response = self
            .http
            .post(format!("{}{PURGE_PATH}", edge.trim_end_matches('/')))
            .bearer_auth(token)
            .json(request)
            .send()
            .await
            .map_err(|e| Error::from_http(format!("purge at edge {edge}"), e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Error::upstream_msg(format!(
                "edge {edge} refused the purge: {}",
                response.status()
            )))
        }
    }

    /// Tries `edge` again, with backoff and jitter, until it takes the purge or
    /// [`GIVE_UP_AFTER`] has passed.
    async fn retry(&self, edge: &str, request: &PurgeRequest) {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 2u32.. {
            tokio::time::sleep(meridian_shared::outbound::with_jitter(backoff)).await;
            match self.send(edge, request).await {
                Ok(()) => {
                    tracing::info!(%edge, object = %request.name, attempt, "purge taken after retrying");
                    return;
                }
                Err(e) if started.elapsed() >= GIVE_UP_AFTER => {
                    tracing::error!(%edge, object = %request.name, attempt, cause = %meridian_shared::error::Chain(&e), "giving up a purge: the edge has been unreachable for a day");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%edge, object = %request.name, attempt, cause = %meridian_shared::error::Chain(&e), "purge still not taken");
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
