//! Catching up after missed events. Events can be lost where nothing redelivers them
//! (the local stack stopped while a delivery was still being retried, say), so a
//! reconciliation compares the main bucket with every regional bucket and applies the
//! very same rules as event handling: copy what is missing or older, delete copies
//! whose object is gone from the main bucket, never replace a newer copy.
//!
//! One object that cannot be repaired (its metadata is damaged, say) is reported and
//! skipped; it never stops the repair of the others.

use std::collections::BTreeMap;

use meridian_shared::events::{StorageEventKind, StorageObjectData};
use meridian_shared::{Bucket, ObjectMeta, ObjectName, Result};

use crate::apply::{Outcome, apply, source_generation};
use crate::{Replica, StorageChange};

/// What a reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Regional copies written.
    pub copied: usize,
    /// Regional copies deleted.
    pub deleted: usize,
    /// Objects that changed in at least one region, with the main-bucket generation
    /// edges may keep (copies older than it must be purged).
    pub changed: BTreeMap<String, i64>,
    /// Objects that could not be repaired, and why.
    pub failed: Vec<ReconcileFailure>,
    /// In [`ReconcileMode::Plan`], what would be done (in repair mode, empty).
    pub planned: Vec<PlannedChange>,
}

/// One object a reconciliation had to skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileFailure {
    /// The region whose copy could not be repaired.
    pub region: String,
    /// The object.
    pub name: String,
    /// Why, with every cause.
    pub reason: String,
}

/// Whether a reconciliation repairs or only says what it would repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileMode {
    /// Copy and delete as needed.
    Repair,
    /// Change nothing; list the plan in [`ReconcileReport::planned`].
    Plan,
}

/// What a reconciliation would do to one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// `copy` (missing or older in the region) or `delete` (gone from the main bucket).
    pub action: &'static str,
    /// The region.
    pub region: String,
    /// The object.
    pub name: String,
}

/// Brings every replica in line with `main`, walking the buckets page by page (never
/// a whole listing in memory): each object of the main bucket against each region,
/// then each regional object that the main bucket no longer holds. `checked` is told
/// every object looked at (for a progress bar).
pub async fn reconcile(
    main: &dyn Bucket,
    replicas: &[Replica],
    mode: ReconcileMode,
    checked: &(dyn Fn(u64) + Sync),
) -> Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let mut token: Option<String> = None;
    loop {
        let page = main.list_page("", token.as_deref()).await?;
        for meta in &page.objects {
            checked(1);
            let Some(change) = change(
                StorageEventKind::Finalized,
                main.name(),
                meta,
                meta.generation,
            ) else {
                continue;
            };
            for replica in replicas {
                settle(&change, main, replica, mode, &mut report).await;
            }
        }
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    for replica in replicas {
        let mut token: Option<String> = None;
        loop {
            let page = replica.bucket.list_page("", token.as_deref()).await?;
            for copy in &page.objects {
                checked(1);
                let Ok(name) = ObjectName::new(copy.name.clone()) else {
                    continue;
                };
                // Only copies whose object is gone from the main bucket: the first pass
                // settled the others. Unreadable main-bucket metadata is not "gone".
                match main.head(&name).await {
                    Err(meridian_shared::Error::NotFound(_)) => {}
                    Ok(_) => continue,
                    Err(e) => {
                        skipped(&mut report, replica, &name, &e);
                        continue;
                    }
                }
                let generation = source_generation(copy);
                if let Some(change) =
                    change(StorageEventKind::Deleted, main.name(), copy, generation)
                {
                    settle(&change, main, replica, mode, &mut report).await;
                }
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
    }
    Ok(report)
}

/// Applies (or plans) one change to one region, recording what happened.
async fn settle(
    change: &StorageChange,
    main: &dyn Bucket,
    replica: &Replica,
    mode: ReconcileMode,
    report: &mut ReconcileReport,
) {
    let outcome = match mode {
        ReconcileMode::Repair => apply(change, main, replica.bucket.as_ref()).await,
        ReconcileMode::Plan => plan(change, replica.bucket.as_ref()).await,
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return skipped(report, replica, &change.name, &e),
    };
    match outcome {
        Outcome::Unchanged => return,
        Outcome::Copied => report.copied += 1,
        Outcome::Deleted => report.deleted += 1,
    }
    if mode == ReconcileMode::Plan {
        report.planned.push(PlannedChange {
            action: if outcome == Outcome::Copied {
                "copy"
            } else {
                "delete"
            },
            region: replica.region.clone(),
            name: change.name.to_string(),
        });
        return;
    }
    // A copied object's edges may keep that generation; a deleted one's nothing.
    let keep_from = match change.kind {
        StorageEventKind::Finalized => change.data.generation,
        StorageEventKind::Deleted => i64::MAX,
    };
    report.changed.insert(change.name.to_string(), keep_from);
}

/// What applying `change` would do to `replica`, without doing it.
async fn plan(change: &StorageChange, replica: &dyn Bucket) -> Result<Outcome> {
    let current = match replica.head(&change.name).await {
        Ok(meta) => Some(meta),
        Err(meridian_shared::Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let held = current.as_ref().map(source_generation);
    Ok(match (change.kind, held) {
        (StorageEventKind::Finalized, Some(held)) if held >= change.data.generation => {
            Outcome::Unchanged
        }
        (StorageEventKind::Finalized, _) => Outcome::Copied,
        (StorageEventKind::Deleted, Some(_)) => Outcome::Deleted,
        (StorageEventKind::Deleted, None) => Outcome::Unchanged,
    })
}

fn skipped(
    report: &mut ReconcileReport,
    replica: &Replica,
    name: &ObjectName,
    e: &meridian_shared::Error,
) {
    let reason = meridian_shared::error::Chain(e).to_string();
    tracing::error!(region = %replica.region, object = %name, %reason, "reconcile skips an object");
    report.failed.push(ReconcileFailure {
        region: replica.region.clone(),
        name: name.to_string(),
        reason,
    });
}

/// The change an event about `meta` at `generation` would describe. Objects whose
/// names are invalid (written by something other than Meridian) are skipped.
fn change(
    kind: StorageEventKind,
    bucket: &str,
    meta: &ObjectMeta,
    generation: i64,
) -> Option<StorageChange> {
    let name = ObjectName::new(meta.name.clone()).ok()?;
    let mut data = StorageObjectData::from_meta(bucket, meta);
    data.generation = generation;
    Some(StorageChange {
        event_id: "reconcile".to_string(),
        kind,
        name,
        data,
    })
}
