//! Telling edges to drop an object: a [`PurgeRequest`] to every edge at once, with a
//! short-lived purge token signed by the replicator's own key (edges verify it with the
//! public half). Edges drop their copy only if it comes from a main-bucket generation older
//! than `older_than`, so an edge that already fetched the new object keeps it.
//!
//! An edge that refuses the connection holds no cache (it is not running), so that
//! counts as done; any other failure fails the event so it is redelivered.

use std::sync::Arc;

use futures::future::join_all;
use meridian_shared::api::{PURGE_PATH, PurgeRequest};
use meridian_shared::auth::{self, PurgeSigningKey};
use meridian_shared::{Config, Error, ObjectName, Result};

/// Sends purges to a fixed set of edges.
#[derive(Clone)]
pub struct EdgePurger {
    http: reqwest::Client,
    edges: Vec<String>,
    key: Arc<PurgeSigningKey>,
}

impl EdgePurger {
    /// Purges `edges` (base URLs) with tokens signed by `key`; `http` must trust the
    /// edges' certificates.
    pub fn new(http: reqwest::Client, edges: Vec<String>, key: Arc<PurgeSigningKey>) -> EdgePurger {
        EdgePurger { http, edges, key }
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

    /// Tells every edge to drop copies of `name` older than generation `older_than`;
    /// returns how many edges were reached.
    pub async fn purge(&self, name: &ObjectName, older_than: i64) -> Result<usize> {
        let token = self.key.mint("replicate", auth::unix_now())?;
        let body = PurgeRequest {
            name: name.to_string(),
            older_than: Some(older_than),
        };
        let sends = self.edges.iter().map(|edge| {
            let request = self
                .http
                .post(format!("{}{PURGE_PATH}", edge.trim_end_matches('/')))
                .bearer_auth(&token)
                .json(&body);
            async move { (edge, request.send().await) }
        });
        let mut reached = 0;
        for (edge, result) in join_all(sends).await {
            match result {
                Ok(response) if response.status().is_success() => reached += 1,
                Ok(response) => {
                    return Err(Error::upstream_msg(format!(
                        "edge {edge} refused purge: {}",
                        response.status()
                    )));
                }
                Err(e) if e.is_connect() => {
                    tracing::debug!(%edge, "edge not reachable; nothing cached there to purge");
                }
                Err(e) => return Err(Error::from_http(format!("purge at edge {edge}"), e)),
            }
        }
        Ok(reached)
    }
}
