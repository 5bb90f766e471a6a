//! The in-memory backend: a map under a lock. Used by tests and throwaway stacks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{
    ByteStream, ContentHasher, ObjectMeta, ObjectName, PutOptions, check_generation, collect,
    content_type_or_default, next_generation, stream_from_bytes,
};
use crate::error::{Error, Result};

/// A bucket held in memory. Clones share contents.
#[derive(Debug, Clone)]
pub struct MemoryBucket {
    name: String,
    // A std Mutex is enough: every critical section is a map operation, never an await.
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, (ObjectMeta, Bytes)>,
    /// The greatest generation ever given, so generations keep increasing across
    /// deletes and recreations.
    high_water: Option<i64>,
}

impl MemoryBucket {
    /// An empty bucket called `name`.
    pub fn new(name: &str) -> MemoryBucket {
        MemoryBucket {
            name: name.to_string(),
            inner: Arc::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated (each
        // section is one insert or remove), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl super::Bucket for MemoryBucket {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let data = collect(body).await?;
        let mut hasher = ContentHasher::default();
        hasher.update(&data);
        let checksums = hasher.finish();
        let mut inner = self.inner();
        let live = inner.objects.get(name.as_str()).map(|(m, _)| m.generation);
        check_generation(name, options.if_generation_match, live)?;
        let generation = next_generation(live.max(inner.high_water));
        inner.high_water = Some(generation);
        let meta = ObjectMeta {
            name: name.to_string(),
            size: data.len() as u64,
            content_type: content_type_or_default(options.content_type),
            cache_control: options.cache_control,
            md5_hash: checksums.md5_hash,
            crc32c: checksums.crc32c,
            generation,
            updated: chrono::Utc::now(),
            metadata: options.metadata,
        };
        inner.objects.insert(name.to_string(), (meta.clone(), data));
        Ok(meta)
    }

    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)> {
        let (meta, data) = self
            .inner()
            .objects
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        Ok((meta, stream_from_bytes(data)))
    }

    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta> {
        self.inner()
            .objects
            .get(name.as_str())
            .map(|(meta, _)| meta.clone())
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    async fn delete(&self, name: &ObjectName, if_generation_match: Option<i64>) -> Result<()> {
        let mut inner = self.inner();
        let live = inner.objects.get(name.as_str()).map(|(m, _)| m.generation);
        if live.is_none() {
            return Err(Error::NotFound(name.to_string()));
        }
        check_generation(name, if_generation_match, live)?;
        inner.objects.remove(name.as_str());
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .inner()
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, (meta, _))| meta.clone())
            .collect())
    }
}
