//! Buckets: one [`Bucket`] abstraction over three backends.
//!
//! - [`LocalBucket`]: a folder on the local filesystem, the embedded default.
//! - [`MemoryBucket`]: process memory, for tests and throwaway stacks.
//! - [`GcsBucket`]: Google Cloud Storage's JSON API (or fake-gcs-server).
//!
//! Every backend gives the same guarantees, checked by one behaviour suite: a reader
//! never sees a partial object, each new write of a name gets a strictly greater
//! generation, and generation preconditions are honoured.

mod gcs;
mod local;
mod memory;
mod name;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::config::{Backend, Config};
use crate::error::Result;

pub use gcs::{GcsBucket, GcsClient};
pub use local::LocalBucket;
pub use memory::MemoryBucket;
pub use name::{EDGE_ADMIN_PREFIX, ObjectName};

/// A stream of object bytes. Errors are I/O errors so that it plugs straight into
/// HTTP bodies and file writers.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Wraps bytes already in memory as a [`ByteStream`].
pub fn stream_from_bytes(bytes: impl Into<Bytes>) -> ByteStream {
    Box::pin(futures::stream::once(futures::future::ready(Ok(
        bytes.into()
    ))))
}

/// Reads a whole stream into memory. Only for objects known to be small.
pub async fn collect(mut stream: ByteStream) -> std::io::Result<Bytes> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk?);
    }
    Ok(buffer.freeze())
}

/// What a bucket knows about one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type given at upload.
    pub content_type: String,
    /// Cache-Control given at upload, if any.
    pub cache_control: Option<String>,
    /// MD5 of the content, base64 (Cloud Storage's `md5Hash` format).
    pub md5_hash: String,
    /// CRC32C of the content, base64 of its big-endian bytes (Cloud Storage's `crc32c`
    /// format); empty when unknown (objects stored before Meridian recorded it).
    #[serde(default)]
    pub crc32c: String,
    /// Generation: strictly greater for each new write of the same name.
    pub generation: i64,
    /// When this generation was written.
    pub updated: DateTime<Utc>,
    /// Custom metadata (`x-goog-meta-*` on Cloud Storage).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Custom metadata key on a regional copy: the main-bucket generation it was copied
/// from (a regional bucket assigns generations of its own).
pub const SOURCE_GENERATION_KEY: &str = "meridian-source-generation";

impl ObjectMeta {
    /// For a regional copy, the main-bucket generation it was copied from.
    pub fn copied_from_generation(&self) -> Option<i64> {
        self.metadata
            .get(SOURCE_GENERATION_KEY)
            .and_then(|g| g.parse().ok())
    }

    /// The main-bucket generation this object's content comes from: a regional copy's
    /// recorded source, or for an object of the main bucket its own generation.
    pub fn source_generation(&self) -> i64 {
        self.copied_from_generation().unwrap_or(self.generation)
    }

    /// A strong ETag derived from the content, so every region's copy of the same
    /// bytes has the same tag.
    pub fn etag(&self) -> String {
        use base64::Engine;
        let md5 = base64::engine::general_purpose::STANDARD
            .decode(&self.md5_hash)
            .map(hex::encode)
            .unwrap_or_else(|_| format!("g{}", self.generation));
        format!("\"{md5}\"")
    }
}

/// How to write an object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutOptions {
    /// MIME type; `application/octet-stream` when empty.
    pub content_type: String,
    /// Cache-Control to store with the object.
    pub cache_control: Option<String>,
    /// Custom metadata to store with the object.
    pub metadata: BTreeMap<String, String>,
    /// Write only if the live generation is this one; `Some(0)` means "only if absent".
    pub if_generation_match: Option<i64>,
}

/// A bucket of objects.
#[async_trait::async_trait]
pub trait Bucket: Send + Sync + std::fmt::Debug {
    /// The bucket's name.
    fn name(&self) -> &str;

    /// Writes an object from a stream. The object becomes visible whole, or not at all.
    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta>;

    /// Reads an object's metadata and a stream of its bytes.
    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)>;

    /// Reads an object's metadata.
    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta>;

    /// Deletes an object, optionally only if its live generation is `if_generation_match`.
    async fn delete(&self, name: &ObjectName, if_generation_match: Option<i64>) -> Result<()>;

    /// Lists objects whose names start with `prefix`, in name order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// One page of the objects whose names start with `prefix`: start with `None`, go on
    /// with each page's `next_page_token` until it is `None`. Pages are bounded, so a
    /// walk over a large bucket never holds it whole; the order across pages is the
    /// backend's own. By default one page holds everything.
    async fn list_page(&self, prefix: &str, page_token: Option<&str>) -> Result<ListPage> {
        if page_token.is_some() {
            return Err(crate::Error::BadRequest("unknown page token".into()));
        }
        Ok(ListPage {
            objects: self.list(prefix).await?,
            next_page_token: None,
        })
    }

    /// Copies generation `source_generation` of `name` from `source` into this bucket
    /// as `options` say. [`Error::PreconditionFailed`] when the source holds another
    /// generation by now or `options.if_generation_match` does not hold here. The bytes
    /// stream through this process, unless both buckets are on Cloud Storage, where the
    /// copy is a server-side rewrite.
    async fn copy_from(
        &self,
        source: &dyn Bucket,
        name: &ObjectName,
        source_generation: i64,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        copy_by_streaming(self, source, name, source_generation, options).await
    }

    /// This bucket as a Cloud Storage bucket, when it is one (so that copies between two
    /// such buckets stay on Google's side).
    fn as_gcs(&self) -> Option<&GcsBucket> {
        None
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListPage {
    /// The objects of this page.
    pub objects: Vec<ObjectMeta>,
    /// Where the next page starts; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Copies through this process: reads the source, writes the destination.
pub(crate) async fn copy_by_streaming<B: Bucket + ?Sized>(
    destination: &B,
    source: &dyn Bucket,
    name: &ObjectName,
    source_generation: i64,
    options: PutOptions,
) -> Result<ObjectMeta> {
    let (meta, body) = source.get(name).await?;
    if meta.generation != source_generation {
        return Err(crate::Error::PreconditionFailed(format!(
            "{name}: the source holds generation {}, not {source_generation}",
            meta.generation
        )));
    }
    destination.put(name, body, options).await
}

/// Opens the bucket called `name` on the configured backend.
pub async fn open(config: &Config, name: &str) -> Result<Arc<dyn Bucket>> {
    Storage::connect(config).await?.bucket(name).await
}

/// The configured backend, connected once: every bucket opened through it shares one
/// client and, on Cloud Storage, one set of credentials (so a service that opens ten
/// buckets fetches one token, not ten).
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
    root: std::path::PathBuf,
    gcs: Option<GcsClient>,
}

impl Storage {
    /// Connects to the backend `config` names.
    pub async fn connect(config: &Config) -> Result<Storage> {
        let gcs = match config.storage.backend {
            Backend::Gcs => Some(GcsClient::from_config(&config.storage, &config.outbound).await?),
            Backend::Local | Backend::Memory => None,
        };
        Ok(Storage {
            backend: config.storage.backend,
            root: config.storage.root.clone(),
            gcs,
        })
    }

    /// Opens the bucket called `name`.
    pub async fn bucket(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        Ok(match (&self.gcs, self.backend) {
            (Some(gcs), _) => Arc::new(gcs.bucket(name)),
            (None, Backend::Memory) => Arc::new(memory_bucket(name)),
            (None, _) => Arc::new(LocalBucket::open(&self.root, name).await?),
        })
    }
}

/// The in-process memory bucket called `name`: every `open` of the same name in a
/// process shares one bucket, as every client of a storage service sees the same
/// bucket (otherwise a local stack's edges would never see what was replicated).
fn memory_bucket(name: &str) -> MemoryBucket {
    static BUCKETS: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, MemoryBucket>>> =
        std::sync::OnceLock::new();
    let mut buckets = BUCKETS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    buckets
        .entry(name.to_string())
        .or_insert_with(|| MemoryBucket::new(name))
        .clone()
}

/// The next generation after `previous`: the current time in microseconds (as Cloud
/// Storage does) but never less than one more than the previous generation, so a clock
/// step backwards cannot reorder writes.
pub(crate) fn next_generation(previous: Option<i64>) -> i64 {
    let now = Utc::now().timestamp_micros();
    previous.map_or(now, |p| now.max(p + 1))
}

/// The content type to store: the given one, or `application/octet-stream` as Cloud
/// Storage defaults to.
pub(crate) fn content_type_or_default(content_type: String) -> String {
    if content_type.is_empty() {
        "application/octet-stream".to_string()
    } else {
        content_type
    }
}

/// Checks an `ifGenerationMatch` precondition against the live generation.
pub(crate) fn check_generation(
    name: &ObjectName,
    expected: Option<i64>,
    live: Option<i64>,
) -> Result<()> {
    match (expected, live) {
        (None, _) | (Some(0), None) => Ok(()),
        (Some(e), Some(l)) if e == l => Ok(()),
        (Some(e), live) => Err(crate::Error::PreconditionFailed(format!(
            "{name}: expected generation {e}, live generation is {}",
            live.map_or("none".to_string(), |l| l.to_string())
        ))),
    }
}

/// Passes `stream` through while checking it against `meta`: more bytes than
/// `meta.size`, or checksums other than the recorded ones at the end (MD5, and CRC32C
/// when recorded), end the stream with an error instead. The last chunk is held back until the check passes, so a reader
/// (an edge filling its cache, a client of a streamed response) never receives the
/// whole of a damaged copy and takes it for good. `source` names the data in the log.
pub(crate) fn verify_checksums(
    stream: ByteStream,
    meta: &ObjectMeta,
    source: PathBuf,
) -> ByteStream {
    struct Check {
        stream: ByteStream,
        hasher: Option<ContentHasher>,
        held_back: Option<Bytes>,
        seen: u64,
        size: u64,
        expected: Checksums,
        source: PathBuf,
    }
    impl Check {
        fn damaged(&mut self, why: String) -> std::io::Error {
            self.hasher = None; // ends the stream after this error
            self.held_back = None;
            tracing::error!(source = %self.source.display(), %why, "object data does not match its metadata");
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                crate::Error::Corrupt(format!("{}: {why}", self.source.display())),
            )
        }
    }
    let state = Check {
        stream,
        hasher: Some(ContentHasher::default()),
        held_back: None,
        seen: 0,
        size: meta.size,
        expected: Checksums {
            md5_hash: meta.md5_hash.clone(),
            crc32c: meta.crc32c.clone(),
        },
        source,
    };
    Box::pin(futures::stream::unfold(state, |mut check| async move {
        loop {
            // After the end (or an error) only a held-back last chunk may remain.
            let Some(hasher) = check.hasher.as_mut() else {
                return check.held_back.take().map(|last| (Ok(last), check));
            };
            match check.stream.next().await {
                Some(Ok(chunk)) => {
                    check.seen += chunk.len() as u64;
                    if check.seen > check.size {
                        let why = format!("more than the {} bytes recorded", check.size);
                        return Some((Err(check.damaged(why)), check));
                    }
                    hasher.update(&chunk);
                    if let Some(previous) = check.held_back.replace(chunk) {
                        return Some((Ok(previous), check));
                    }
                }
                Some(Err(e)) => {
                    check.hasher = None;
                    check.held_back = None;
                    return Some((Err(e), check));
                }
                None => {
                    let actual = check.hasher.take().map(ContentHasher::finish)?;
                    if check.seen != check.size {
                        let why = format!("{} bytes, {} recorded", check.seen, check.size);
                        return Some((Err(check.damaged(why)), check));
                    }
                    let expected = &check.expected;
                    let crc_differs =
                        !expected.crc32c.is_empty() && actual.crc32c != expected.crc32c;
                    if actual.md5_hash != expected.md5_hash || crc_differs {
                        let why = format!("checksums {actual:?}, recorded {expected:?}");
                        return Some((Err(check.damaged(why)), check));
                    }
                    // Verified: the held-back chunk goes out on the next poll.
                }
            }
        }
    }))
}

/// The checksums Cloud Storage keeps for an object, computed as its bytes stream by.
#[derive(Default)]
pub(crate) struct ContentHasher {
    md5: md5::Md5,
    crc32c: u32,
}

/// An object's checksums in Cloud Storage's base64 formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checksums {
    pub(crate) md5_hash: String,
    pub(crate) crc32c: String,
}

impl ContentHasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        md5::Digest::update(&mut self.md5, data);
        self.crc32c = crc32c::crc32c_append(self.crc32c, data);
    }

    pub(crate) fn finish(self) -> Checksums {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        Checksums {
            md5_hash: b64.encode(md5::Digest::finalize(self.md5)),
            crc32c: b64.encode(self.crc32c.to_be_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_a_memory_bucket_twice_shares_its_contents() {
        let mut config = Config::default();
        config.storage.backend = Backend::Memory;
        let writer = open(&config, "shared-memory-test").await.expect("open");
        let reader = open(&config, "shared-memory-test").await.expect("open");
        let name = ObjectName::new("x").expect("name");
        writer
            .put(&name, stream_from_bytes("x"), PutOptions::default())
            .await
            .expect("put");
        assert!(reader.head(&name).await.is_ok());
    }

    #[test]
    fn generations_strictly_increase_even_if_the_clock_lags() {
        let far_future = Utc::now().timestamp_micros() + 10_000_000;
        assert_eq!(next_generation(Some(far_future)), far_future + 1);
        assert!(next_generation(Some(1)) > 1);
    }

    #[test]
    fn checksums_are_in_cloud_storages_formats() {
        let mut hasher = ContentHasher::default();
        hasher.update(b"hel");
        hasher.update(b"lo");
        let checksums = hasher.finish();
        // `gsutil hash` of "hello": the same values Cloud Storage stores.
        assert_eq!(checksums.md5_hash, "XUFAKrxLKna5cZ2REBfFkg==");
        assert_eq!(checksums.crc32c, "mnG7TA==");
    }

    #[test]
    fn etag_is_hex_md5() {
        let mut hasher = ContentHasher::default();
        hasher.update(b"hello");
        let meta = ObjectMeta {
            name: "x".into(),
            size: 5,
            content_type: "text/plain".into(),
            cache_control: None,
            md5_hash: hasher.finish().md5_hash,
            crc32c: String::new(),
            generation: 1,
            updated: Utc::now(),
            metadata: BTreeMap::new(),
        };
        assert_eq!(meta.etag(), "\"5d41402abc4b2a76b9719d911017c592\"");
    }
}
