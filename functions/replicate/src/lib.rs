//! replicate: turns storage events on the main bucket into copies in every regional
//! bucket, then tells edges to drop their cached copy.
//!
//! `POST /` takes an Eventarc CloudEvent (binary or structured mode) of type
//! `google.cloud.storage.object.v1.finalized` or `.deleted`; `POST /pubsub` a Pub/Sub
//! push of a Cloud Storage notification. Both become one [`StorageChange`] applied by
//! [`ReplicateState::apply`]. Delivery is
//! at-least-once and unordered, so applying an event is idempotent and never lets an
//! older generation replace a newer one. The answer is 2xx only once every regional
//! bucket holds the result; 5xx when any failed (the platform redelivers); 400 for
//! events that can never succeed.
//!
//! # Layout
//! - `event`: reading a CloudEvent into a storage change.
//! - `pubsub`: reading a Pub/Sub push of a Cloud Storage notification.
//! - `apply`: bringing one regional bucket in line with the main bucket.
//! - `pull`: the same notifications pulled from a subscription, as a worker.
//! - `invalidate`: telling edges an object changed, over HTTP or Pub/Sub.
//! - `purge`: the HTTP transport: a purge to every edge, retried until taken.
//! - `reconcile`: catching up after missed events.
//! - this file: state, the one `apply` core, router and handlers.

mod apply;
mod event;
mod invalidate;
mod pubsub;
pub mod pull;
mod purge;
mod reconcile;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::join_all;
use meridian_shared::events::StorageEventKind;
use meridian_shared::{Bucket, Error, Result};
use serde::Serialize;

pub use apply::Outcome;
pub use event::StorageChange;
pub use invalidate::{Invalidation, Invalidator, PubSubInvalidator, for_config as invalidator_for};
pub use meridian_shared::storage::SOURCE_GENERATION_KEY;
pub use pubsub::Notification;
pub use purge::{EdgePurger, PurgeReport};
pub use reconcile::{PlannedChange, ReconcileFailure, ReconcileMode, ReconcileReport};

/// Largest event body accepted; storage events are a few kilobytes.
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// A regional bucket and the region it belongs to.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Region name.
    pub region: String,
    /// The region's bucket.
    pub bucket: Arc<dyn Bucket>,
}

/// Shared state of the replicate service.
#[derive(Clone)]
pub struct ReplicateState {
    main: Arc<dyn Bucket>,
    replicas: Arc<Vec<Replica>>,
    invalidator: Arc<dyn Invalidator>,
}

impl ReplicateState {
    /// State copying from `main` into `replicas`, telling edges through `invalidator`.
    pub fn new(
        main: Arc<dyn Bucket>,
        replicas: Vec<Replica>,
        invalidator: Arc<dyn Invalidator>,
    ) -> ReplicateState {
        ReplicateState {
            main,
            replicas: Arc::new(replicas),
            invalidator,
        }
    }

    /// State for a config: its main bucket, its regional buckets and the invalidation
    /// transport it names.
    pub async fn from_config(config: &meridian_shared::Config) -> Result<ReplicateState> {
        ReplicateState::open(config, invalidate::from_config(config).await?).await
    }

    /// State for a config's buckets, telling edges through `invalidator`.
    pub async fn open(
        config: &meridian_shared::Config,
        invalidator: Arc<dyn Invalidator>,
    ) -> Result<ReplicateState> {
        let storage = meridian_shared::storage::Storage::connect(config).await?;
        let main = storage.bucket(&config.main().bucket).await?;
        let mut replicas = Vec::new();
        for region in config.replica_regions() {
            let bucket = storage.bucket(&region.bucket).await?;
            replicas.push(Replica {
                region: region.name.clone(),
                bucket,
            });
        }
        Ok(ReplicateState::new(main, replicas, invalidator))
    }
}

impl ReplicateState {
    /// Reconciles every `every` in the background, for as long as the returned task
    /// lives (abort it to stop). A failed round is logged; the next one runs anyway.
    pub fn spawn_periodic_reconcile(
        &self,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate; start one period in
            loop {
                ticks.tick().await;
                match state.reconcile().await {
                    Ok(report) => tracing::info!(
                        copied = report.copied,
                        deleted = report.deleted,
                        skipped = report.failed.len(),
                        "periodic reconciliation"
                    ),
                    Err(e) => {
                        tracing::warn!(cause = %meridian_shared::error::Chain(&e), "periodic reconciliation failed")
                    }
                }
            }
        })
    }

    /// Compares the main bucket with every regional bucket and repairs what missed
    /// events left behind, then purges the changed objects at every edge.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        self.reconcile_with(ReconcileMode::Repair, &|_| {}).await
    }

    /// [`ReplicateState::reconcile`], or with [`ReconcileMode::Plan`] only what it
    /// would do; `checked` is told every object looked at.
    pub async fn reconcile_with(
        &self,
        mode: ReconcileMode,
        checked: &(dyn Fn(u64) + Sync),
    ) -> Result<ReconcileReport> {
        let report =
            reconcile::reconcile(self.main.as_ref(), &self.replicas, mode, checked).await?;
        for (name, keep_from) in &report.changed {
            if let Ok(name) = meridian_shared::ObjectName::new(name.clone()) {
                self.invalidator.invalidate(&name, *keep_from).await?;
            }
        }
        Ok(report)
    }
}

/// What happened to one region.
#[derive(Debug, Serialize)]
pub struct RegionReport {
    /// Region name.
    pub region: String,
    /// What applying the event did there.
    pub outcome: Outcome,
}

/// The answer to a successfully applied event.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The CloudEvent id.
    pub event_id: String,
    /// Object name.
    pub name: String,
    /// Generation the event was about.
    pub generation: i64,
    /// Per-region outcome.
    pub regions: Vec<RegionReport>,
    /// How edges were told to drop older copies.
    pub invalidation: Invalidation,
}

/// The replicate router: `POST /` (CloudEvent), `GET /healthz`.
pub fn router(state: ReplicateState) -> Router {
    Router::new()
        .route("/", post(handle_event))
        .route("/pubsub", post(handle_push))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_EVENT_BYTES))
        .with_state(state)
}

async fn handle_event(
    State(state): State<ReplicateState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Report>)> {
    // The body is read by axum (413 past the limit) rather than by cloudevents-sdk's
    // extractor, which reads without a limit and answers oversized bodies with 500.
    let event = cloudevents::binding::http::to_event(&headers, body.to_vec())
        .map_err(|e| Error::BadRequest(format!("not a CloudEvent: {e}")))?;
    let change = StorageChange::from_event(&event)?;
    Ok((StatusCode::OK, Json(state.apply(&change).await?)))
}

/// `POST /pubsub`: a Cloud Storage notification pushed by Pub/Sub. 2xx acknowledges it
/// (200 with the report, 204 for events with nothing to do); 5xx makes Pub/Sub push it
/// again; 400 for envelopes that can never apply.
async fn handle_push(
    State(state): State<ReplicateState>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    match Notification::from_push(&body)? {
        Notification::Change(change) => Ok(Json(state.apply(&change).await?).into_response()),
        Notification::Ignored(event_type) => {
            tracing::debug!(%event_type, "notification with nothing to replicate");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

impl ReplicateState {
    /// Applies one change to every regional bucket, then tells edges to drop older
    /// copies: the one core every way a change arrives goes through. `Ok` once every
    /// regional bucket holds the result; [`Error::Upstream`] (502, redelivered) when any
    /// failed; [`Error::BadRequest`] for a change about another bucket.
    pub async fn apply(&self, change: &StorageChange) -> Result<Report> {
        if change.data.bucket != self.main.name() {
            return Err(Error::BadRequest(format!(
                "event is for bucket {:?}; this replicator serves {:?}",
                change.data.bucket,
                self.main.name()
            )));
        }
        let outcomes = join_all(
            self.replicas
                .iter()
                .map(|replica| apply::apply(change, self.main.as_ref(), replica.bucket.as_ref())),
        )
        .await;
        let mut regions = Vec::new();
        let mut failures = Vec::new();
        for (replica, outcome) in self.replicas.iter().zip(outcomes) {
            match outcome {
                Ok(outcome) => regions.push(RegionReport {
                    region: replica.region.clone(),
                    outcome,
                }),
                Err(e) => failures.push(format!(
                    "{}: {}",
                    replica.region,
                    meridian_shared::error::Chain(&e)
                )),
            }
        }
        if !failures.is_empty() {
            // 502 makes Eventarc redeliver; the regions that succeeded will be no-ops then.
            tracing::error!(event = %change.event_id, object = %change.name, failures = ?failures, "replication incomplete");
            return Err(Error::upstream_msg(format!(
                "replication incomplete in {} regions",
                failures.len()
            )));
        }
        // Edges keep copies at least as new as the event's generation (they fetched the
        // new object already); for a deletion, the deleted generation goes too.
        let older_than = match change.kind {
            StorageEventKind::Finalized => change.data.generation,
            StorageEventKind::Deleted => change.data.generation.saturating_add(1),
        };
        let invalidation = self
            .invalidator
            .invalidate(&change.name, older_than)
            .await?;
        tracing::info!(
            event = %change.event_id, kind = change.kind.as_str(), object = %change.name,
            generation = change.data.generation, ?invalidation, "event applied"
        );
        Ok(Report {
            event_id: change.event_id.clone(),
            name: change.name.to_string(),
            generation: change.data.generation,
            regions,
            invalidation,
        })
    }
}
