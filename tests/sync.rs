//! `meridian sync`: a dry run says what is out of step and changes nothing; a real run
//! repairs it (missing copies made, orphan copies removed); a second run has nothing
//! left to do.

use std::sync::atomic::{AtomicU64, Ordering};

use meridian_shared::storage::{LocalBucket, PutOptions, SOURCE_GENERATION_KEY, stream_from_bytes};
use meridian_shared::{Bucket, Config, ObjectName};

#[tokio::test]
async fn sync_plans_then_repairs_then_has_nothing_to_do() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config::default();
    let root = data.path().join("buckets");
    let main = LocalBucket::open(&root, &config.main().bucket)
        .await
        .expect("open");
    for name in ["a.txt", "b.txt"] {
        main.put(
            &ObjectName::new(name).expect("name"),
            stream_from_bytes(name.as_bytes().to_vec()),
            PutOptions::default(),
        )
        .await
        .expect("put");
    }
    // A regional copy of an object the main bucket no longer has.
    let tokyo_region = config
        .region("asia-northeast1")
        .expect("region")
        .bucket
        .clone();
    let tokyo = LocalBucket::open(&root, &tokyo_region).await.expect("open");
    let orphan = ObjectName::new("gone.txt").expect("name");
    tokyo
        .put(
            &orphan,
            stream_from_bytes("stale"),
            PutOptions {
                metadata: [(SOURCE_GENERATION_KEY.to_string(), "5".to_string())].into(),
                ..PutOptions::default()
            },
        )
        .await
        .expect("put");

    let checked = AtomicU64::new(0);
    let count = |n: u64| {
        checked.fetch_add(n, Ordering::Relaxed);
    };
    let plan = meridian_cli::sync::sync(data.path(), config.clone(), true, &count)
        .await
        .expect("dry run")
        .reconcile;
    assert_eq!(
        (plan.copied, plan.deleted),
        (18, 1),
        "2 objects × 9 regions, 1 orphan"
    );
    assert_eq!(plan.planned.len(), 19);
    assert!(
        plan.planned
            .iter()
            .any(|p| p.action == "delete" && p.region == "asia-northeast1" && p.name == "gone.txt")
    );
    assert!(
        checked.load(Ordering::Relaxed) >= 2,
        "progress was reported"
    );
    assert!(
        tokyo.head(&orphan).await.is_ok(),
        "a dry run changes nothing"
    );
    assert!(
        tokyo
            .head(&ObjectName::new("a.txt").expect("name"))
            .await
            .is_err()
    );

    let repaired = meridian_cli::sync::sync(data.path(), config.clone(), false, &count)
        .await
        .expect("sync")
        .reconcile;
    assert_eq!((repaired.copied, repaired.deleted), (18, 1));
    assert!(repaired.planned.is_empty());
    assert!(tokyo.head(&orphan).await.is_err(), "the orphan is gone");
    for region in config.replica_regions() {
        let bucket = LocalBucket::open(&root, &region.bucket)
            .await
            .expect("open");
        for name in ["a.txt", "b.txt"] {
            assert!(
                bucket
                    .head(&ObjectName::new(name).expect("name"))
                    .await
                    .is_ok(),
                "{name} in {}",
                region.name
            );
        }
    }

    let again = meridian_cli::sync::sync(data.path(), config, false, &count)
        .await
        .expect("sync")
        .reconcile;
    assert_eq!((again.copied, again.deleted, again.failed.len()), (0, 0, 0));
}

/// Against a stack running on emulators, `meridian sync` (no config given) finds them
/// through `stack.json`, repairs the emulated buckets and publishes its invalidations
/// on the stack's Pub/Sub topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_works_on_the_emulated_stack_it_finds_in_the_data_folder() {
    let stack = crate::harness::stack::TestStack::start_on_emulators().await;
    let config = stack.stack.config().clone();
    let storage = meridian_shared::storage::Storage::connect(&config)
        .await
        .expect("storage");
    let tokyo_region = config.region("asia-northeast1").expect("region");
    let tokyo = storage.bucket(&tokyo_region.bucket).await.expect("bucket");
    // An object replicated everywhere, then Tokyo's copy lost behind the pipeline's
    // back (what a lost event leaves).
    let ticket = stack.ticket("lost.txt", "text/plain").await;
    let uploaded = stack
        .upload(&ticket, "text/plain", b"everywhere".to_vec())
        .await;
    assert_eq!(uploaded.status(), 200);
    let name = ObjectName::new("lost.txt").expect("name");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokyo.head(&name).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never replicated");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokyo
        .delete(&name, None)
        .await
        .expect("delete Tokyo's copy");

    let synced = meridian_cli::sync::sync(&stack.data_dir(), Config::default(), false, &|_| {})
        .await
        .expect("sync runs");
    assert_eq!(synced.reconcile.copied, 1, "{:?}", synced.reconcile);
    assert_eq!(
        synced.invalidated,
        meridian_cli::sync::Invalidated::Topic(config.invalidation.topic.clone())
    );
    assert!(tokyo.head(&name).await.is_ok(), "Tokyo's copy is back");
    stack.stack.stop().await;
}
