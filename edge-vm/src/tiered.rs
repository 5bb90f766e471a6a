//! Two tiers behind one [`Store`]: memory in front, disk behind. Every stored response
//! is written to both (the disk keeps what memory evicts, and what a restart would
//! lose); a lookup that misses memory and hits disk brings the copy back up to memory.
//! Memory admits by frequency (moka's TinyLFU), so a burst of objects requested once
//! does not push out the ones requested often; the disk, far larger, keeps them all
//! until its own budget evicts the least recently used.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::disk::DiskStore;
use crate::store::{Hit, MemoryStore, MissWriter, Payload, Store, StoredMeta, TierSize};

/// Memory in front of disk.
pub struct TieredStore {
    memory: MemoryStore,
    disk: DiskStore,
}

impl TieredStore {
    /// `memory` in front of `disk`.
    pub fn new(memory: MemoryStore, disk: DiskStore) -> TieredStore {
        TieredStore { memory, disk }
    }
}

/// A miss written to both tiers as it arrives.
struct BothTiers {
    memory: Box<dyn MissWriter>,
    disk: Box<dyn MissWriter>,
}

#[async_trait]
impl MissWriter for BothTiers {
    fn write(&mut self, chunk: &Bytes) {
        self.memory.write(chunk);
        self.disk.write(chunk);
    }

    async fn finish(self: Box<Self>) -> bool {
        let in_memory = self.memory.finish().await;
        let on_disk = self.disk.finish().await;
        in_memory || on_disk
    }
}

#[async_trait]
impl Store for TieredStore {
    async fn lookup(&self, key: &str) -> Option<Hit> {
        if let Some(hit) = self.memory.lookup(key).await {
            return Some(hit);
        }
        let hit = self.disk.lookup(key).await?;
        // An unverified copy stays on disk until a revalidation makes it current.
        if !hit.meta.unverified
            && let Payload::Bytes(body) = &hit.body
            && self.memory.fits(hit.meta.size)
        {
            // A copy of the metadata, not the disk index's: the memory copy's hits keep
            // an answer head in it (`hit_head`), which must go when memory evicts it.
            let meta = Arc::new((*hit.meta).clone());
            (self.memory)
                .insert(key.to_string(), meta, body.clone())
                .await;
        }
        Some(hit)
    }

    async fn peek(&self, key: &str) -> Option<Arc<StoredMeta>> {
        // The disk never holds an older copy than memory: a copy that could not be
        // written there takes the older one away (`DiskStore::store`).
        match self.memory.peek(key).await {
            Some(meta) => Some(meta),
            None => self.disk.peek(key),
        }
    }

    fn fits(&self, size: u64) -> bool {
        self.memory.fits(size) || self.disk.fits(size)
    }

    fn miss(&self, key: &str, meta: StoredMeta) -> Box<dyn MissWriter> {
        Box::new(BothTiers {
            memory: self.memory.miss(key, meta.clone()),
            disk: self.disk.miss(key, meta),
        })
    }

    async fn update(&self, key: &str, meta: StoredMeta) -> bool {
        let in_memory = self.memory.update(key, meta.clone()).await;
        let on_disk = self.disk.update(key, meta).await;
        in_memory || on_disk
    }

    async fn remove(&self, key: &str) {
        self.memory.remove(key).await;
        self.disk.remove(key).await;
    }

    async fn remove_prefix(&self, prefix: &str) -> usize {
        // Memory holds a subset of the disk's keys (less whatever did not fit on disk).
        let from_memory = self.memory.remove_prefix(prefix).await;
        let from_disk = self.disk.remove_prefix(prefix).await;
        from_memory.max(from_disk)
    }

    async fn size(&self) -> Vec<TierSize> {
        let mut sizes = self.memory.size().await;
        sizes.push(self.disk.size());
        sizes
    }
}
