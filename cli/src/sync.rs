//! `meridian sync [--dry-run]`: anti-entropy for a local deployment's buckets. Compares
//! the main bucket with every regional bucket, page by page, and repairs what lost
//! events left behind (copies missing or older objects, deletes copies of objects gone
//! from the main bucket); then tells edges what it changed: over HTTP, the edges of the
//! stack running on the data folder, if one is; over Pub/Sub, the invalidation topic. `--dry-run` prints the plan and changes nothing.
//! Running it twice changes nothing the second time. Against a stack running on
//! emulators (`meridian up --gcp-emulators`), it works on their buckets and publishes
//! invalidations there.

use std::path::Path;
use std::sync::Arc;

use meridian_replicate::{EdgePurger, ReconcileMode, ReconcileReport, ReplicateState};
use meridian_shared::Config;
use meridian_shared::config::Backend;
use meridian_shared::tls::DevCa;

use crate::error::Result;
use crate::local::{LocalSecrets, trusting_client};
use crate::stackfile::StackInfo;

/// What a sync did.
#[derive(Debug)]
pub struct SyncReport {
    /// What was (or, in a dry run, would be) repaired.
    pub reconcile: ReconcileReport,
    /// Where invalidations of what changed went.
    pub invalidated: Invalidated,
}

/// Where a sync's invalidations went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidated {
    /// To this many edges: those of the stack running on the data folder.
    Edges(usize),
    /// Published on this Pub/Sub topic.
    Topic(String),
}

/// Reconciles the buckets of `config` (kept under `data_dir` for the local backend,
/// as `meridian up` keeps them); `checked` is told every object looked at.
pub async fn sync(
    data_dir: &Path,
    mut config: Config,
    dry_run: bool,
    checked: &(dyn Fn(u64) + Sync),
) -> Result<SyncReport> {
    if config.storage.backend == Backend::Local {
        config.storage.root = data_dir.join("buckets");
    }
    // A stack running on emulators here: its buckets and topics are theirs.
    if let Ok(StackInfo {
        emulators: Some(at),
        ..
    }) = StackInfo::read(data_dir)
    {
        crate::emulators::configure(&mut config, &at);
    }
    let mut invalidated = Invalidated::Topic(config.invalidation.topic.clone());
    let invalidator = meridian_replicate::invalidator_for(&config, || -> Result<_> {
        let (purger, edges) = purger_of_running_stack(data_dir, &config)?;
        invalidated = Invalidated::Edges(edges);
        Ok(purger)
    })
    .await?;
    let state = ReplicateState::open(&config, invalidator).await?;
    let mode = if dry_run {
        ReconcileMode::Plan
    } else {
        ReconcileMode::Repair
    };
    Ok(SyncReport {
        reconcile: state.reconcile_with(mode, checked).await?,
        invalidated,
    })
}

/// Purges go to the edges of the stack running on `data_dir`; with none running, no
/// edge holds a copy to purge.
fn purger_of_running_stack(data_dir: &Path, config: &Config) -> Result<(EdgePurger, usize)> {
    let key = meridian_shared::auth::PurgeSigningKey::from_base64(
        &LocalSecrets::load_or_create(data_dir)?.purge_key,
    )?;
    let edges: Vec<String> = match StackInfo::read(data_dir) {
        Ok(info) => info.edges.into_iter().map(|edge| edge.url).collect(),
        Err(_) => Vec::new(),
    };
    let count = edges.len();
    let http = trusting_client(&DevCa::load_or_create(data_dir)?, &config.outbound)?;
    Ok((EdgePurger::new(http, edges, Arc::new(key)), count))
}
