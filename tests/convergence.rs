//! Property: whatever happens to storage events on the way (duplicated, reordered,
//! dropped), applying what arrives and then one anti-entropy pass (`meridian sync`'s
//! core) leaves every regional bucket equal to the main bucket. 10,000 random
//! sequences, seeded so a failure reproduces.

use std::sync::Arc;

use meridian_replicate::{EdgePurger, Replica, ReplicateState, StorageChange};
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::events::{StorageEventKind, StorageObjectData};
use meridian_shared::storage::{MemoryBucket, PutOptions, stream_from_bytes};
use meridian_shared::{Bucket, ObjectName};

const SEQUENCES: u64 = 10_000;
const REGIONS: usize = 3;

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn event(
    id: String,
    kind: StorageEventKind,
    bucket: &str,
    meta: &meridian_shared::ObjectMeta,
) -> StorageChange {
    StorageChange {
        event_id: id,
        kind,
        name: ObjectName::new(meta.name.clone()).expect("name"),
        data: StorageObjectData::from_meta(bucket, meta),
    }
}

#[tokio::test]
async fn any_mangled_event_stream_then_sync_converges() {
    let key = Arc::new(PurgeSigningKey::generate().expect("key"));
    let http = reqwest::Client::new();
    let names: Vec<ObjectName> = ["a", "b/c", "d e"]
        .iter()
        .map(|n| ObjectName::new(*n).expect("name"))
        .collect();
    for sequence in 0..SEQUENCES {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (sequence + 1));
        let main = Arc::new(MemoryBucket::new("main"));
        let replicas: Vec<Replica> = (0..REGIONS)
            .map(|i| Replica {
                region: format!("region-{i}"),
                bucket: Arc::new(MemoryBucket::new(&format!("copy-{i}"))),
            })
            .collect();
        let state = ReplicateState::new(
            main.clone(),
            replicas.clone(),
            Arc::new(EdgePurger::new(http.clone(), Vec::new(), key.clone())),
        );

        // What happens to the main bucket, and the events it produces.
        let mut events = Vec::new();
        for step in 0..1 + rng.below(6) {
            let name = &names[rng.below(names.len() as u64) as usize];
            let id = format!("{sequence}-{step}");
            match main.head(name).await {
                Ok(live) if rng.below(3) == 0 => {
                    main.delete(name, None).await.expect("delete");
                    events.push(event(id, StorageEventKind::Deleted, "main", &live));
                }
                _ => {
                    let body = format!("{sequence}/{step}");
                    let written = main
                        .put(name, stream_from_bytes(body), PutOptions::default())
                        .await
                        .expect("put");
                    events.push(event(id, StorageEventKind::Finalized, "main", &written));
                }
            }
        }
        // On the way: each event dropped (20%), delivered once (60%) or twice (20%),
        // all in a random order.
        let mut deliveries = Vec::new();
        for change in events {
            let copies = match rng.below(10) {
                0 | 1 => 0,
                2..=7 => 1,
                _ => 2,
            };
            deliveries.extend(std::iter::repeat_n(change, copies));
        }
        for i in (1..deliveries.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            deliveries.swap(i, j);
        }
        for change in &deliveries {
            // A refusal here is what a redelivery would retry; sync makes up for it.
            let _ = state.apply(change).await;
        }
        state.reconcile().await.expect("sync");

        let expected = main.list("").await.expect("list");
        for replica in &replicas {
            let copies = replica.bucket.list("").await.expect("list");
            let summary = |metas: &[meridian_shared::ObjectMeta], from_copy: bool| {
                metas
                    .iter()
                    .map(|m| {
                        let generation = if from_copy {
                            m.copied_from_generation().unwrap_or(-1)
                        } else {
                            m.generation
                        };
                        (m.name.clone(), generation, m.md5_hash.clone())
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                summary(&copies, true),
                summary(&expected, false),
                "sequence {sequence}: {} differs from the main bucket after {} deliveries",
                replica.region,
                deliveries.len()
            );
        }
    }
}
