//! A purge an edge does not take is never counted as done: while the edge is cut off
//! (a stand-in network between replicator and edge, dropping every connection), the
//! replicator reports it as retrying and keeps trying; once the edge is reachable again
//! the purge lands and the edge stops serving the deleted object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meridian_edge::EdgeState;
use meridian_replicate::{EdgePurger, PurgeReport};
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::EdgeSettings;
use meridian_shared::storage::{MemoryBucket, PutOptions, stream_from_bytes};
use meridian_shared::{Bucket, ObjectName};
use tokio_util::sync::CancellationToken;

use crate::harness::serve_edge_plain;

/// A TCP relay to `target` that, while `up` is false, drops every connection at once.
async fn relay(target: String, up: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !up.load(Ordering::SeqCst) {
                drop(client); // the edge cannot be reached
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut edge) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut edge).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_edge_cut_off_during_a_delete_is_purged_once_it_is_back() {
    let stop = CancellationToken::new();
    let bucket = Arc::new(MemoryBucket::new("purge-retry-test"));
    let name = ObjectName::new("a.txt").expect("name");
    let stored = bucket
        .put(&name, stream_from_bytes("old bytes"), PutOptions::default())
        .await
        .expect("put");
    let key = Arc::new(PurgeSigningKey::generate().expect("key"));
    let state = EdgeState::new(
        "test-region",
        bucket.clone(),
        &EdgeSettings::default(),
        key.public_key(),
    )
    .expect("edge opens");
    let edge = serve_edge_plain(state, &stop).await;
    let up = Arc::new(AtomicBool::new(true));
    let reachable = relay(edge.trim_start_matches("http://").to_string(), up.clone()).await;

    let http = reqwest::Client::new();
    let cache_of = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.expect("edge answers");
            let cache = response
                .headers()
                .get("x-cache")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            (response.status().as_u16(), cache)
        }
    };
    let object = format!("{edge}/a.txt");
    assert_eq!(cache_of(object.clone()).await.0, 200);
    assert_eq!(cache_of(object.clone()).await.1.as_deref(), Some("HIT"));

    // The edge is cut off while the object is deleted.
    up.store(false, Ordering::SeqCst);
    bucket.delete(&name, None).await.expect("delete");
    let purger = EdgePurger::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        vec![reachable],
        key,
    );
    let report = purger
        .purge(&name, stored.generation + 1)
        .await
        .expect("purge");
    assert_eq!(
        report,
        PurgeReport {
            reached: 0,
            retrying: 1
        },
        "not counted as done"
    );
    assert_eq!(
        cache_of(object.clone()).await.1.as_deref(),
        Some("HIT"),
        "the cut-off edge still holds its copy"
    );

    // Back: the retried purge lands and the edge answers 404.
    up.store(true, Ordering::SeqCst);
    let started = Instant::now();
    loop {
        if cache_of(object.clone()).await.0 == 404 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the purge never reached the edge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
}
