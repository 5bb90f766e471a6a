//! Damaged storage is never passed off as whole: an edge never serves or caches a
//! bucket file that was truncated or altered on disk, and a reconciliation skips (and
//! reports) an object whose metadata is damaged while it repairs all the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meridian_edge::EdgeState;
use meridian_replicate::{EdgePurger, Replica, ReplicateState};
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::EdgeSettings;
use meridian_shared::storage::{LocalBucket, PutOptions, stream_from_bytes};
use meridian_shared::{Bucket, ObjectName};
use tokio_util::sync::CancellationToken;

use crate::harness::stack::all_files;
use crate::harness::{pseudo_random_bytes, serve_edge_plain};

/// A plain-HTTP edge serving `bucket` on port 0; returns its base URL.
async fn edge_over(
    bucket: LocalBucket,
    settings: EdgeSettings,
    stop: &CancellationToken,
) -> String {
    let purge_key = PurgeSigningKey::generate().expect("key");
    let state = EdgeState::new(
        "test-region",
        Arc::new(bucket),
        &settings,
        purge_key.public_key(),
    )
    .expect("edge opens");
    serve_edge_plain(state, stop).await
}

/// The one data file of the one object in `bucket_dir`.
fn data_file(bucket_dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = all_files(bucket_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

async fn bucket_with(root: &Path, name: &str, body: &[u8]) -> LocalBucket {
    let bucket = LocalBucket::open(root, "damaged-bucket")
        .await
        .expect("open");
    bucket
        .put(
            &ObjectName::new(name).expect("name"),
            stream_from_bytes(body.to_vec()),
            PutOptions::default(),
        )
        .await
        .expect("put");
    bucket
}

/// GETs `url` twice; neither answer may be the whole original, nor a cache hit.
async fn assert_never_served_whole(url: &str, original: &[u8]) {
    let http = reqwest::Client::new();
    for attempt in 0..2 {
        let response = http.get(url).send().await.expect("edge answers");
        let status = response.status();
        let cache = response
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        assert_ne!(cache.as_deref(), Some("HIT"), "attempt {attempt}: cached");
        match response.bytes().await {
            // A body that arrived complete must be an error page, never object bytes.
            Ok(body) => {
                assert!(status.is_server_error(), "attempt {attempt}: {status}");
                assert_ne!(body.as_ref(), original);
                assert!(body.len() < 100, "an error page, not object bytes");
            }
            // Headers went out before the damage showed: the transfer is cut.
            Err(_) => assert_eq!(status, 200, "attempt {attempt}"),
        }
    }
}

#[tokio::test]
async fn a_truncated_bucket_file_is_never_served_or_cached() {
    let root = tempfile::tempdir().expect("tempdir");
    let original = pseudo_random_bytes(64 * 1024, 1);
    let bucket = bucket_with(root.path(), "cut.bin", &original).await;
    let data = data_file(bucket.dir());
    std::fs::write(&data, &original[..1000]).expect("truncate");
    let stop = CancellationToken::new();
    let edge = edge_over(bucket, EdgeSettings::default(), &stop).await;
    assert_never_served_whole(&format!("{edge}/cut.bin"), &original).await;
    let response = reqwest::get(format!("{edge}/cut.bin")).await.expect("get");
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"error":"Internal Server Error"}"#
    );
    stop.cancel();
}

#[tokio::test]
async fn a_bit_flipped_bucket_file_is_never_served_whole_or_cached() {
    let root = tempfile::tempdir().expect("tempdir");
    let original = pseudo_random_bytes(64 * 1024, 2);
    let bucket = bucket_with(root.path(), "flipped.bin", &original).await;
    let data = data_file(bucket.dir());
    let mut altered = original.clone();
    altered[40_000] ^= 0x01;
    std::fs::write(&data, &altered).expect("flip");

    // Small enough to cache: read whole first, so the damage is found before a byte
    // goes out.
    let stop = CancellationToken::new();
    let edge = edge_over(bucket.clone(), EdgeSettings::default(), &stop).await;
    assert_never_served_whole(&format!("{edge}/flipped.bin"), &original).await;

    // Streamed (larger than the stream threshold): the transfer is cut at the end.
    let streaming = EdgeSettings {
        stream_threshold_bytes: 1024,
        ..EdgeSettings::default()
    };
    let edge = edge_over(bucket, streaming, &stop).await;
    // The last chunk is held back until the checksum passes, so the transfer is cut:
    // before the headers go out (they travel with the first chunk) or after.
    if let Ok(response) = reqwest::get(format!("{edge}/flipped.bin")).await {
        assert_eq!(response.headers()["x-cache"], "BYPASS");
        assert!(
            response.bytes().await.is_err(),
            "a damaged streamed body must not arrive complete"
        );
    }
    stop.cancel();
}

#[tokio::test]
async fn head_and_get_agree_on_the_cache_status_of_a_large_object() {
    let root = tempfile::tempdir().expect("tempdir");
    let original = pseudo_random_bytes(64 * 1024, 3);
    let bucket = bucket_with(root.path(), "large.bin", &original).await;
    let settings = EdgeSettings {
        stream_threshold_bytes: 1024,
        ..EdgeSettings::default()
    };
    let stop = CancellationToken::new();
    let edge = edge_over(bucket, settings, &stop).await;
    let http = reqwest::Client::new();
    let url = format!("{edge}/large.bin");
    let head = http.head(&url).send().await.expect("head");
    let get = http.get(&url).send().await.expect("get");
    assert_eq!(head.headers()["x-cache"], "BYPASS");
    assert_eq!(get.headers()["x-cache"], "BYPASS");
    assert_eq!(get.bytes().await.expect("body").as_ref(), original);
    stop.cancel();
}

#[tokio::test]
async fn damaged_metadata_is_skipped_and_reported_while_everything_else_is_repaired() {
    let root = tempfile::tempdir().expect("tempdir");
    let open = |name: &'static str| {
        let root = root.path().to_path_buf();
        async move { LocalBucket::open(&root, name).await.expect("open") }
    };
    let (main, west, east) = (
        open("main-b").await,
        open("west-b").await,
        open("east-b").await,
    );
    let put = |bucket: LocalBucket, name: &'static str| async move {
        bucket
            .put(
                &ObjectName::new(name).expect("name"),
                stream_from_bytes(name.as_bytes().to_vec()),
                PutOptions::default(),
            )
            .await
            .expect("put")
    };
    for name in ["a", "b", "c"] {
        put(main.clone(), name).await;
    }
    // West already holds "b", but its metadata got damaged; both regions hold a copy of
    // "d", whose metadata in the main bucket got damaged.
    put(west.clone(), "b").await;
    put(main.clone(), "d").await;
    put(west.clone(), "d").await;
    put(east.clone(), "d").await;
    let meta_of = |bucket: &LocalBucket, name: &str| {
        all_files(bucket.dir())
            .into_iter()
            .find(|p| {
                p.file_name().is_some_and(|f| f == "meta.json")
                    && std::fs::read_to_string(p)
                        .is_ok_and(|t| t.contains(&format!("\"name\":\"{name}\"")))
            })
            .expect("meta.json")
    };
    std::fs::write(meta_of(&west, "b"), b"{ not json").expect("damage");
    std::fs::write(meta_of(&main, "d"), b"\x00\x00").expect("damage");

    let replicas = vec![
        Replica {
            region: "west".into(),
            bucket: Arc::new(west.clone()),
        },
        Replica {
            region: "east".into(),
            bucket: Arc::new(east.clone()),
        },
    ];
    let purger = EdgePurger::new(
        reqwest::Client::new(),
        Vec::new(),
        Arc::new(PurgeSigningKey::generate().expect("key")),
    );
    let state = ReplicateState::new(Arc::new(main), replicas, Arc::new(purger));
    let report = state.reconcile().await.expect("reconcile runs to the end");

    let skipped: Vec<(&str, &str)> = report
        .failed
        .iter()
        .map(|f| (f.region.as_str(), f.name.as_str()))
        .collect();
    assert!(skipped.contains(&("west", "b")), "{:?}", report.failed);
    assert!(skipped.contains(&("west", "d")), "{:?}", report.failed);
    assert!(skipped.contains(&("east", "d")), "{:?}", report.failed);
    assert_eq!(report.failed.len(), 3, "{:?}", report.failed);
    // Everything else was repaired: a and c in both regions, b in east.
    assert_eq!(report.copied, 5, "{report:?}");
    for (bucket, name) in [
        (&west, "a"),
        (&west, "c"),
        (&east, "a"),
        (&east, "b"),
        (&east, "c"),
    ] {
        assert!(
            bucket
                .head(&ObjectName::new(name).expect("name"))
                .await
                .is_ok(),
            "{name} missing in {}",
            bucket.name()
        );
    }
    // Unreadable metadata in the main bucket never reads as "deleted": copies stay.
    for bucket in [&west, &east] {
        assert!(
            bucket
                .head(&ObjectName::new("d").expect("name"))
                .await
                .is_ok()
        );
    }
}
