//! Bringing one regional bucket in line with the main bucket for one event.
//!
//! Each regional copy records the main-bucket generation it was copied from
//! ([`SOURCE_GENERATION_KEY`]), since the regional bucket assigns its own generations.
//! Every write is conditional on the regional generation just read, so two deliveries
//! racing each other cannot interleave; the loser re-reads and re-decides.

use meridian_shared::events::StorageEventKind;
use meridian_shared::storage::{PutOptions, SOURCE_GENERATION_KEY};
use meridian_shared::{Bucket, Error, ObjectMeta, Result};

use crate::StorageChange;

/// How many times to re-decide after losing a race with a concurrent delivery.
const MAX_ATTEMPTS: usize = 5;

/// What applying an event did to one regional bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The main bucket's object was copied in.
    Copied,
    /// The regional copy was deleted.
    Deleted,
    /// Nothing to do: the copy is already as new or newer (or already gone).
    Unchanged,
}

impl Outcome {
    /// Spelling in responses and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Copied => "copied",
            Outcome::Deleted => "deleted",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Applies `change` to `replica`.
pub async fn apply(
    change: &StorageChange,
    main: &dyn Bucket,
    replica: &dyn Bucket,
) -> Result<Outcome> {
    for _ in 0..MAX_ATTEMPTS {
        let attempt = match change.kind {
            StorageEventKind::Finalized => copy_if_newer(change, main, replica).await,
            StorageEventKind::Deleted => delete_unless_superseded(change, main, replica).await,
        };
        match attempt {
            Err(Error::PreconditionFailed(_)) => continue, // raced another delivery: re-read
            other => return other,
        }
    }
    Err(Error::upstream_msg(format!(
        "{}: kept racing concurrent updates",
        change.name
    )))
}

/// The main-bucket generation a regional copy holds (0 if it does not say, so a
/// copy of unknown origin is always replaced).
pub(crate) fn source_generation(meta: &ObjectMeta) -> i64 {
    meta.copied_from_generation().unwrap_or(0)
}

async fn head_if_present(
    bucket: &dyn Bucket,
    name: &meridian_shared::ObjectName,
) -> Result<Option<ObjectMeta>> {
    match bucket.head(name).await {
        Ok(meta) => Ok(Some(meta)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn copy_if_newer(
    change: &StorageChange,
    main: &dyn Bucket,
    replica: &dyn Bucket,
) -> Result<Outcome> {
    let current = head_if_present(replica, &change.name).await?;
    if current
        .as_ref()
        .is_some_and(|c| source_generation(c) >= change.data.generation)
    {
        return Ok(Outcome::Unchanged);
    }
    // Copy whatever the main bucket holds now: it is this event's generation or a newer
    // one. If the object is gone, a deletion event is on its way; nothing to copy.
    let source = match main.head(&change.name).await {
        Ok(found) => found,
        Err(Error::NotFound(_)) => return Ok(Outcome::Unchanged),
        Err(e) => return Err(e),
    };
    if source.generation < change.data.generation {
        return Err(Error::upstream_msg(format!(
            "{}: main bucket still at generation {} (event says {})",
            change.name, source.generation, change.data.generation
        )));
    }
    if current
        .as_ref()
        .is_some_and(|c| source_generation(c) >= source.generation)
    {
        return Ok(Outcome::Unchanged);
    }
    let mut metadata = source.metadata.clone();
    metadata.insert(
        SOURCE_GENERATION_KEY.to_string(),
        source.generation.to_string(),
    );
    let options = PutOptions {
        content_type: source.content_type.clone(),
        cache_control: source.cache_control.clone(),
        metadata,
        if_generation_match: Some(current.map_or(0, |c| c.generation)),
    };
    // Exactly the generation just read (a newer one makes this fail and re-decide);
    // on Cloud Storage a server-side rewrite, elsewhere a streamed copy.
    replica
        .copy_from(main, &change.name, source.generation, options)
        .await?;
    Ok(Outcome::Copied)
}

/// A deletion event may be about a generation that a newer one replaced (Cloud Storage
/// reports an overwrite as `deleted` for the old generation, and events arrive in any
/// order): if the main bucket holds a newer generation, bring the copy up to it instead
/// of deleting it.
async fn delete_unless_superseded(
    change: &StorageChange,
    main: &dyn Bucket,
    replica: &dyn Bucket,
) -> Result<Outcome> {
    match head_if_present(main, &change.name).await? {
        None => delete_if_not_newer(change, replica).await,
        Some(live) if live.generation > change.data.generation => {
            let mut newer = change.clone();
            newer.kind = StorageEventKind::Finalized;
            newer.data.generation = live.generation;
            copy_if_newer(&newer, main, replica).await
        }
        Some(live) => Err(Error::upstream_msg(format!(
            "{}: main bucket still holds generation {} that the event says is deleted",
            change.name, live.generation
        ))),
    }
}

async fn delete_if_not_newer(change: &StorageChange, replica: &dyn Bucket) -> Result<Outcome> {
    let Some(current) = head_if_present(replica, &change.name).await? else {
        return Ok(Outcome::Unchanged);
    };
    if source_generation(&current) > change.data.generation {
        return Ok(Outcome::Unchanged); // the copy is of a newer generation: keep it
    }
    match replica.delete(&change.name, Some(current.generation)).await {
        Ok(()) | Err(Error::NotFound(_)) => Ok(Outcome::Deleted),
        Err(e) => Err(e),
    }
}
