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

use crate::apply::{Outcome, apply};
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

/// Brings every replica in line with `main`.
pub async fn reconcile(main: &dyn Bucket, replicas: &[Replica]) -> Result<ReconcileReport> {
    let in_main: BTreeMap<String, ObjectMeta> = main
        .list("")
        .await?
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    let mut report = ReconcileReport::default();
    for replica in replicas {
        let mut changes: Vec<StorageChange> = in_main
            .values()
            .filter_map(|meta| {
                change(
                    StorageEventKind::Finalized,
                    main.name(),
                    meta,
                    meta.generation,
                )
            })
            .collect();
        for copy in replica.bucket.list("").await? {
            if !in_main.contains_key(&copy.name) {
                let generation = copy.copied_from_generation().unwrap_or(0);
                changes.extend(change(
                    StorageEventKind::Deleted,
                    main.name(),
                    &copy,
                    generation,
                ));
            }
        }
        for change in changes {
            match apply(&change, main, replica.bucket.as_ref()).await {
                Ok(Outcome::Copied) => report.copied += 1,
                Ok(Outcome::Deleted) => report.deleted += 1,
                Ok(Outcome::Unchanged) => continue,
                Err(e) => {
                    let reason = meridian_shared::error::Chain(&e).to_string();
                    tracing::error!(region = %replica.region, object = %change.name, %reason, "reconcile skips an object");
                    report.failed.push(ReconcileFailure {
                        region: replica.region.clone(),
                        name: change.name.to_string(),
                        reason,
                    });
                    continue;
                }
            }
            // A copied object's edges may keep that generation; a deleted one's nothing.
            let keep_from = match change.kind {
                StorageEventKind::Finalized => change.data.generation,
                StorageEventKind::Deleted => i64::MAX,
            };
            report.changed.insert(change.name.to_string(), keep_from);
        }
    }
    Ok(report)
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
