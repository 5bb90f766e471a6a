//! Event semantics of the replicate function, over real HTTP with events shaped
//! exactly like Google's samples (`tests/data/eventarc/`): at-least-once and
//! out-of-order delivery never leave a regional bucket behind the newest generation.

use std::sync::Arc;

use meridian_replicate::{EdgePurger, Replica, ReplicateState, SOURCE_GENERATION_KEY};
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::server::{self, ServeOptions};
use meridian_shared::storage::{self, MemoryBucket, PutOptions};
use meridian_shared::{Bucket, ObjectMeta, ObjectName};
use tokio_util::sync::CancellationToken;

use crate::harness::testdata;

/// The bucket and object Google's samples talk about.
const SAMPLE_BUCKET: &str = "some-bucket";
const SAMPLE_OBJECT: &str = "folder/Test.cs";

struct Replicator {
    url: String,
    state: ReplicateState,
    main: Arc<MemoryBucket>,
    replicas: Vec<Arc<MemoryBucket>>,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Replicator {
    async fn start() -> Replicator {
        Replicator::start_with(None).await
    }

    /// Nine memory replicas, plus `extra` as a tenth region when given.
    async fn start_with(extra: Option<Arc<dyn Bucket>>) -> Replicator {
        let main = Arc::new(MemoryBucket::new(SAMPLE_BUCKET));
        let replicas: Vec<Arc<MemoryBucket>> = (0..9)
            .map(|i| Arc::new(MemoryBucket::new(&format!("regional-{i}"))))
            .collect();
        let mut regions: Vec<Replica> = replicas
            .iter()
            .enumerate()
            .map(|(i, b)| Replica {
                region: format!("region-{i}"),
                bucket: b.clone() as Arc<dyn Bucket>,
            })
            .collect();
        if let Some(bucket) = extra {
            regions.push(Replica {
                region: "unreachable".into(),
                bucket,
            });
        }
        let state = ReplicateState::new(
            main.clone(),
            regions,
            Arc::new(EdgePurger::new(
                reqwest::Client::new(),
                Vec::new(),
                Arc::new(PurgeSigningKey::generate().expect("key")),
            )),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let router = meridian_replicate::router(state.clone());
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        tokio::spawn(server::serve(
            listener,
            router,
            None,
            ServeOptions::default(),
            shutdown,
        ));
        Replicator {
            url,
            state,
            main,
            replicas,
            http: reqwest::Client::new(),
            stop,
        }
    }

    async fn write_main(&self, body: &str) -> ObjectMeta {
        let name = ObjectName::new(SAMPLE_OBJECT).expect("name");
        let options = PutOptions {
            content_type: "text/plain".into(),
            ..PutOptions::default()
        };
        self.main
            .put(&name, storage::stream_from_bytes(body.to_string()), options)
            .await
            .expect("put")
    }

    /// Posts a binary-mode event built from Google's sample, with `generation`.
    async fn deliver_binary(&self, sample: &str, generation: i64) -> reqwest::StatusCode {
        let headers = std::fs::read_to_string(testdata(&format!("eventarc/{sample}.headers")))
            .expect("headers");
        let mut body: serde_json::Value = serde_json::from_slice(
            &std::fs::read(testdata(&format!("eventarc/{sample}.json"))).expect("body"),
        )
        .expect("json");
        body["generation"] = serde_json::Value::String(generation.to_string());
        let mut request = self.http.post(&self.url).body(body.to_string());
        for line in headers.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        request.send().await.expect("replicator answers").status()
    }

    /// Posts a binary-mode event and expects it to be applied.
    async fn deliver_ok(&self, sample: &str, generation: i64) {
        let status = self.deliver_binary(sample, generation).await;
        assert_eq!(status, 200, "{sample} for generation {generation}");
    }

    /// Posts a structured-mode event.
    async fn deliver_structured(&self, ty: &str, generation: i64) -> reqwest::StatusCode {
        let event = serde_json::json!({
            "specversion": "1.0",
            "id": "structured-1",
            "type": ty,
            "source": format!("//storage.googleapis.com/projects/_/buckets/{SAMPLE_BUCKET}"),
            "subject": format!("objects/{SAMPLE_OBJECT}"),
            "datacontenttype": "application/json",
            "data": {"bucket": SAMPLE_BUCKET, "name": SAMPLE_OBJECT, "generation": generation}
        });
        self.http
            .post(&self.url)
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("replicator answers")
            .status()
    }

    /// `(body, source generation)` of every replica, `None` where absent.
    async fn replica_states(&self) -> Vec<Option<(String, i64)>> {
        let name = ObjectName::new(SAMPLE_OBJECT).expect("name");
        let mut states = Vec::new();
        for replica in &self.replicas {
            states.push(match replica.get(&name).await {
                Ok((meta, stream)) => {
                    let body = storage::collect(stream).await.expect("read");
                    let source = meta.metadata[SOURCE_GENERATION_KEY]
                        .parse()
                        .expect("source generation");
                    Some((String::from_utf8_lossy(&body).into_owned(), source))
                }
                Err(_) => None,
            });
        }
        states
    }
}

impl Replicator {
    /// Asserts every replica is in `expected` state.
    async fn assert_replicas(&self, expected: Option<(&str, i64)>) {
        let expected = expected.map(|(body, generation)| (body.to_string(), generation));
        let states = self.replica_states().await;
        assert!(
            states.iter().all(|s| *s == expected),
            "replicas {states:?}, expected {expected:?}"
        );
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test]
async fn duplicate_and_stale_finalized_events_leave_every_replica_at_the_newest_generation() {
    let replicator = Replicator::start().await;
    let first = replicator.write_main("version one").await;
    let second = replicator.write_main("version two").await;

    replicator
        .deliver_ok("storage-object-finalized", second.generation)
        .await;
    replicator
        .deliver_ok("storage-object-finalized", second.generation)
        .await;
    let newest = Some(("version two", second.generation));
    replicator.assert_replicas(newest).await;

    let regional_generations = |r: &Replicator| {
        let name = ObjectName::new(SAMPLE_OBJECT).expect("name");
        let replicas = r.replicas.clone();
        async move {
            let mut generations = Vec::new();
            for replica in replicas {
                generations.push(replica.head(&name).await.expect("head").generation);
            }
            generations
        }
    };
    let before = regional_generations(&replicator).await;
    // The older generation's event, arriving late, changes nothing.
    replicator
        .deliver_ok("storage-object-finalized", first.generation)
        .await;
    replicator.assert_replicas(newest).await;
    assert_eq!(
        regional_generations(&replicator).await,
        before,
        "no regional copy was rewritten"
    );
}

#[tokio::test]
async fn deletion_events_remove_copies_but_never_a_newer_one() {
    let replicator = Replicator::start().await;
    let first = replicator.write_main("version one").await;
    let second = replicator.write_main("version two").await;
    assert_eq!(
        replicator
            .deliver_structured(
                "google.cloud.storage.object.v1.finalized",
                second.generation
            )
            .await,
        200
    );

    // Overwriting produced a `deleted` event for the first generation: the newer copy stays.
    replicator
        .deliver_ok("storage-object-deleted", first.generation)
        .await;
    let newest = Some(("version two", second.generation));
    replicator.assert_replicas(newest).await;

    let name = ObjectName::new(SAMPLE_OBJECT).expect("name");
    replicator
        .main
        .delete(&name, None)
        .await
        .expect("delete from main");
    replicator
        .deliver_ok("storage-object-deleted", second.generation)
        .await;
    replicator.assert_replicas(None).await;
    // Redelivery of the delete, and a late finalized event for a deleted object, are no-ops.
    replicator
        .deliver_ok("storage-object-deleted", second.generation)
        .await;
    replicator
        .deliver_ok("storage-object-finalized", second.generation)
        .await;
    replicator.assert_replicas(None).await;
}

#[tokio::test]
async fn events_that_can_never_apply_are_refused_with_400() {
    let replicator = Replicator::start().await;
    let post = |body: &str, headers: &[(&str, &str)]| {
        let mut request = replicator.http.post(&replicator.url).body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send()
    };
    let binary = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "x"),
        (
            "ce-source",
            "//storage.googleapis.com/projects/_/buckets/some-bucket",
        ),
        ("ce-type", "google.cloud.storage.object.v1.finalized"),
    ];
    let not_an_event = post("{}", &[("content-type", "application/json")])
        .await
        .expect("answer");
    assert_eq!(not_an_event.status(), 400);
    let bad_data = post("{\"bucket\": 5}", &binary).await.expect("answer");
    assert_eq!(bad_data.status(), 400);
    let other_bucket = post(
        r#"{"bucket":"elsewhere","name":"x","generation":"1"}"#,
        &binary,
    )
    .await
    .expect("answer");
    assert_eq!(other_bucket.status(), 400);
    let bad_name = post(
        r#"{"bucket":"some-bucket","name":"../x","generation":"1"}"#,
        &binary,
    )
    .await
    .expect("answer");
    assert_eq!(bad_name.status(), 400);
    let mut archived = binary;
    archived[4] = ("ce-type", "google.cloud.storage.object.v1.archived");
    let unsupported = post(
        r#"{"bucket":"some-bucket","name":"x","generation":"1"}"#,
        &archived,
    )
    .await
    .expect("answer");
    assert_eq!(unsupported.status(), 400);
}

#[tokio::test]
async fn a_region_that_fails_makes_the_event_fail_so_it_is_redelivered() {
    // A real Cloud Storage client pointed at a port nothing listens on: every call fails.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let unreachable = storage::GcsClient::anonymous(&endpoint, &Default::default())
        .await
        .expect("client")
        .bucket("regional-x");
    let replicator = Replicator::start_with(Some(Arc::new(unreachable))).await;
    let written = replicator.write_main("version one").await;

    let status = replicator
        .deliver_binary("storage-object-finalized", written.generation)
        .await;
    assert_eq!(status, 502, "a failed region must fail the event");
    // The healthy regions were still brought up to date; redelivery will be a no-op there.
    let newest = Some(("version one", written.generation));
    replicator.assert_replicas(newest).await;
}

#[tokio::test]
async fn reconciliation_repairs_what_missed_events_left_behind() {
    let replicator = Replicator::start().await;
    // An upload whose event never arrived, and a copy whose deletion event was lost.
    let written = replicator.write_main("never announced").await;
    let orphan = ObjectName::new("deleted-while-down").expect("name");
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert(SOURCE_GENERATION_KEY.to_string(), "5".to_string());
    let options = PutOptions {
        metadata,
        ..PutOptions::default()
    };
    replicator.replicas[3]
        .put(&orphan, storage::stream_from_bytes("stale"), options)
        .await
        .expect("put");

    let report = replicator.state.reconcile().await.expect("reconcile");
    assert_eq!((report.copied, report.deleted), (9, 1));
    replicator
        .assert_replicas(Some(("never announced", written.generation)))
        .await;
    assert!(
        replicator.replicas[3].head(&orphan).await.is_err(),
        "the orphan copy is gone"
    );

    let again = replicator.state.reconcile().await.expect("reconcile");
    assert_eq!(
        (again.copied, again.deleted),
        (0, 0),
        "reconciling twice changes nothing"
    );
}

#[tokio::test]
async fn a_deletion_of_an_overwritten_generation_never_removes_the_object() {
    let replicator = Replicator::start().await;
    let first = replicator.write_main("version one").await;
    let status = replicator
        .deliver_binary("storage-object-finalized", first.generation)
        .await;
    assert_eq!(status, 200);
    // The overwrite's `deleted` event for the first generation overtakes the
    // `finalized` event of the second: the copies move to the second generation.
    let second = replicator.write_main("version two").await;
    let status = replicator
        .deliver_binary("storage-object-deleted", first.generation)
        .await;
    assert_eq!(status, 200);
    replicator
        .assert_replicas(Some(("version two", second.generation)))
        .await;
}

#[tokio::test]
async fn periodic_reconciliation_repairs_without_being_asked() {
    let replicator = Replicator::start().await;
    let periodic = replicator
        .state
        .spawn_periodic_reconcile(std::time::Duration::from_millis(100));
    // An upload whose event never arrives: a later round copies it everywhere.
    let written = replicator.write_main("announced to nobody").await;
    let started = std::time::Instant::now();
    let name = ObjectName::new(SAMPLE_OBJECT).expect("name");
    loop {
        let mut copied = 0;
        for replica in &replicator.replicas {
            if replica.head(&name).await.is_ok() {
                copied += 1;
            }
        }
        if copied == replicator.replicas.len() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "only {copied} regions caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    replicator
        .assert_replicas(Some(("announced to nobody", written.generation)))
        .await;
    periodic.abort();
}

/// A Pub/Sub push envelope of the sample notification `index` (a pull answer from
/// fake-gcs-server and the Pub/Sub emulator), about the replicator's bucket at
/// `generation`.
fn push_envelope(index: usize, generation: i64) -> serde_json::Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pulled: serde_json::Value = serde_json::from_slice(
        &std::fs::read(testdata("pubsub/gcs-notifications-pull.json")).expect("sample"),
    )
    .expect("json");
    let mut message = pulled["receivedMessages"][index]["message"].clone();
    let mut object: serde_json::Value = serde_json::from_slice(
        &b64.decode(message["data"].as_str().expect("data"))
            .expect("b64"),
    )
    .expect("object");
    object["bucket"] = SAMPLE_BUCKET.into();
    object["name"] = SAMPLE_OBJECT.into();
    object["generation"] = generation.to_string().into();
    message["data"] = b64.encode(object.to_string()).into();
    message["attributes"]["bucketId"] = SAMPLE_BUCKET.into();
    message["attributes"]["objectId"] = SAMPLE_OBJECT.into();
    message["attributes"]["objectGeneration"] = generation.to_string().into();
    serde_json::json!({"message": message, "subscription": "projects/test-project/subscriptions/replicator"})
}

#[tokio::test]
async fn pubsub_pushes_apply_like_eventarc_events() {
    let replicator = Replicator::start().await;
    let push = |envelope: serde_json::Value| {
        let request = replicator
            .http
            .post(format!("{}pubsub", replicator.url))
            .json(&envelope);
        async move { request.send().await.expect("replicator answers").status() }
    };
    let written = replicator.write_main("pushed").await;
    // OBJECT_FINALIZE, twice (at-least-once): one copy per region, the second a no-op.
    for _ in 0..2 {
        assert_eq!(push(push_envelope(0, written.generation)).await, 200);
    }
    replicator
        .assert_replicas(Some(("pushed", written.generation)))
        .await;
    // OBJECT_METADATA_UPDATE: acknowledged, nothing changes.
    let mut metadata = push_envelope(0, written.generation);
    metadata["message"]["attributes"]["eventType"] = "OBJECT_METADATA_UPDATE".into();
    assert_eq!(push(metadata).await, 204);
    // Not an envelope: 400, so Pub/Sub does not push it forever.
    let refused = replicator
        .http
        .post(format!("{}pubsub", replicator.url))
        .body("{\"not\": \"an envelope\"}")
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 400);
    // OBJECT_DELETE of that generation: every copy goes.
    replicator
        .main
        .delete(&ObjectName::new(SAMPLE_OBJECT).expect("name"), None)
        .await
        .expect("delete");
    assert_eq!(push(push_envelope(1, written.generation)).await, 200);
    replicator.assert_replicas(None).await;
}
