//! The edge as an HTTP cache, in front of an origin the test controls: a bucket that
//! counts reads and holds back all but the first chunk of a body until told (a
//! stand-in for a slow origin, over the real local bucket). Concurrent misses make one
//! origin read and reach clients before the body is complete; conditionals answer
//! 304; ranges answer 206 (one or multipart), 416, or whole when If-Range says the
//! client's copy is another.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use meridian_edge::EdgeState;
use meridian_shared::auth::PurgeSigningKey;
use meridian_shared::config::EdgeSettings;
use meridian_shared::storage::{ByteStream, ListPage, PutOptions, stream_from_bytes};
use meridian_shared::{Bucket, ObjectMeta, ObjectName, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::harness::{pseudo_random_bytes, serve_edge_plain};

/// A bucket whose reads are counted and whose bodies stop after their first chunk
/// until the gate opens.
#[derive(Debug)]
struct GatedBucket {
    inner: meridian_shared::storage::MemoryBucket,
    reads: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl GatedBucket {
    fn new(name: &str) -> GatedBucket {
        GatedBucket {
            inner: meridian_shared::storage::MemoryBucket::new(name),
            reads: AtomicUsize::new(0),
            gate: watch::channel(false).0,
        }
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

#[async_trait::async_trait]
impl Bucket for GatedBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn put(
        &self,
        name: &ObjectName,
        body: ByteStream,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        self.inner.put(name, body, options).await
    }

    async fn get(&self, name: &ObjectName) -> Result<(ObjectMeta, ByteStream)> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let (meta, body) = self.inner.get(name).await?;
        let whole = meridian_shared::storage::collect(body).await?;
        let mut gate = self.gate.subscribe();
        let first = whole.slice(..whole.len().min(1024));
        let rest = whole.slice(first.len()..);
        let held: ByteStream = Box::pin(async_stream::try_stream! {
            yield first;
            let _ = gate.wait_for(|open| *open).await;
            for piece in rest.chunks(16 * 1024) {
                yield Bytes::copy_from_slice(piece);
            }
        });
        Ok((meta, held))
    }

    async fn head(&self, name: &ObjectName) -> Result<ObjectMeta> {
        self.inner.head(name).await
    }

    async fn delete(&self, name: &ObjectName, generation: Option<i64>) -> Result<()> {
        self.inner.delete(name, generation).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<ListPage> {
        self.inner.list_page(prefix, token).await
    }
}

/// An edge over a gated bucket holding `body` as `name`; the bucket and the edge URL.
async fn edge_over(
    name: &str,
    body: &[u8],
    stop: &CancellationToken,
) -> (Arc<GatedBucket>, String) {
    let bucket = Arc::new(GatedBucket::new(&format!("b-edge-cache-{}", uuid())));
    bucket
        .put(
            &ObjectName::new(name).expect("name"),
            stream_from_bytes(body.to_vec()),
            PutOptions {
                content_type: "application/octet-stream".into(),
                ..PutOptions::default()
            },
        )
        .await
        .expect("put");
    let state = EdgeState::new(
        "test-region",
        bucket.clone(),
        &EdgeSettings::default(),
        PurgeSigningKey::generate().expect("key").public_key(),
    )
    .expect("edge opens");
    (bucket, serve_edge_plain(state, stop).await)
}

/// A name no other test's memory bucket has (memory buckets are per process).
fn uuid() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_origin_read_and_stream_before_it_ends() {
    let stop = CancellationToken::new();
    let body = pseudo_random_bytes(256 * 1024, 9);
    let (bucket, edge) = edge_over("big.bin", &body, &stop).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(200)
        .build()
        .expect("client");
    let url = format!("{edge}/big.bin");
    // All hundred ask while the origin has sent only its first kilobyte.
    let responses = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::join_all((0..100).map(|_| http.get(&url).send())),
    )
    .await
    .expect("every miss is answered while the origin still holds most of the body");
    let mut streams = Vec::new();
    for response in responses {
        let response = response.expect("edge answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-cache"], "MISS");
        streams.push(response.bytes_stream());
    }
    // The first bytes arrive although the origin has not finished sending.
    let first = streams[0].next().await.expect("a chunk").expect("bytes");
    assert_eq!(first.as_ref(), &body[..first.len()]);
    assert_eq!(
        bucket.reads.load(Ordering::SeqCst),
        1,
        "one origin read for 100 misses"
    );
    bucket.open_gate();
    for (i, stream) in streams.into_iter().enumerate() {
        let mut received = if i == 0 { first.to_vec() } else { Vec::new() };
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.expect("chunk"));
        }
        assert!(
            received == body,
            "client {i} got {} bytes, not the object",
            received.len()
        );
    }
    let again = http.get(&url).send().await.expect("edge answers");
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(again.bytes().await.expect("body").as_ref(), body.as_slice());
    assert_eq!(
        bucket.reads.load(Ordering::SeqCst),
        1,
        "the fill was stored"
    );
    stop.cancel();
}

#[tokio::test]
async fn conditionals_answer_304_and_ranges_answer_206_416_or_whole() {
    let stop = CancellationToken::new();
    let body = pseudo_random_bytes(10_000, 3);
    let (bucket, edge) = edge_over("r.bin", &body, &stop).await;
    bucket.open_gate();
    let http = reqwest::Client::new();
    let url = format!("{edge}/r.bin");
    let get = |headers: &[(&str, &str)]| {
        let mut request = http.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let first = get(&[]).await.expect("edge answers");
    assert_eq!(first.headers()["accept-ranges"], "bytes");
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let modified = first.headers()["last-modified"]
        .to_str()
        .expect("date")
        .to_string();
    first.bytes().await.expect("body");

    let current = get(&[("if-none-match", &etag)]).await.expect("answer");
    assert_eq!(current.status(), 304);
    assert_eq!(current.headers()["etag"], etag.as_str());
    assert!(current.bytes().await.expect("body").is_empty());
    let unchanged = get(&[("if-modified-since", &modified)])
        .await
        .expect("answer");
    assert_eq!(unchanged.status(), 304);
    let changed = get(&[("if-none-match", "\"something-else\"")])
        .await
        .expect("answer");
    assert_eq!(changed.status(), 200);

    let one = get(&[("range", "bytes=100-199")]).await.expect("answer");
    assert_eq!(one.status(), 206);
    assert_eq!(one.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(one.headers()["x-cache"], "HIT");
    assert_eq!(one.bytes().await.expect("body").as_ref(), &body[100..200]);

    let two = get(&[("range", "bytes=0-9,-10")]).await.expect("answer");
    assert_eq!(two.status(), 206);
    let content_type = two.headers()["content-type"]
        .to_str()
        .expect("type")
        .to_string();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart")
        .to_string();
    let multipart = two.bytes().await.expect("body");
    let mut expected = Vec::new();
    for (range, bytes) in [("0-9", &body[..10]), ("9990-9999", &body[9990..])] {
        expected.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {range}/10000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(bytes);
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    assert!(multipart.as_ref() == expected.as_slice(), "multipart body");

    let beyond = get(&[("range", "bytes=20000-")]).await.expect("answer");
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */10000");

    let other_copy = get(&[("range", "bytes=0-9"), ("if-range", "\"another\"")])
        .await
        .expect("answer");
    assert_eq!(
        other_copy.status(),
        200,
        "If-Range for another copy: the whole body"
    );
    assert_eq!(other_copy.bytes().await.expect("body").len(), 10_000);
    let same_copy = get(&[("range", "bytes=0-9"), ("if-range", &etag)])
        .await
        .expect("answer");
    assert_eq!(same_copy.status(), 206);
    stop.cancel();
}

#[tokio::test]
async fn a_range_on_a_miss_is_answered_before_the_origin_has_sent_everything() {
    let stop = CancellationToken::new();
    let body = pseudo_random_bytes(128 * 1024, 5);
    let (bucket, edge) = edge_over("cold.bin", &body, &stop).await;
    let http = reqwest::Client::new();
    // The origin holds back everything after its first kilobyte; the range is inside.
    let response = http
        .get(format!("{edge}/cold.bin"))
        .header("range", "bytes=10-99")
        .send()
        .await
        .expect("edge answers");
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["x-cache"], "MISS");
    let part = tokio::time::timeout(std::time::Duration::from_secs(5), response.bytes())
        .await
        .expect("answered while the origin still holds the rest")
        .expect("body");
    assert_eq!(part.as_ref(), &body[10..100]);
    bucket.open_gate();
    stop.cancel();
}

#[tokio::test]
async fn every_path_but_the_edges_own_names_an_object_and_only_get_and_head_read_it() {
    let stop = CancellationToken::new();
    let (bucket, edge) = edge_over("docs/a b.txt", b"spaced", &stop).await;
    bucket.open_gate();
    let http = reqwest::Client::new();
    let ask = |method: reqwest::Method, path: &str| {
        let request = http.request(method, format!("{edge}{path}"));
        async move { request.send().await.expect("edge answers") }
    };

    let encoded = ask(reqwest::Method::GET, "/docs/a%20b.txt").await;
    assert_eq!(encoded.status(), 200);
    assert_eq!(encoded.bytes().await.expect("body").as_ref(), b"spaced");
    let head = ask(reqwest::Method::HEAD, "/docs/a%20b.txt").await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "6");
    let post = ask(reqwest::Method::POST, "/docs/a%20b.txt").await;
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET,HEAD");

    for (path, why) in [
        ("/", "name must not be empty"),
        ("/docs/..%2F..%2Fsecret", "'..' segment"),
        ("/bad%FF", "not UTF-8"),
    ] {
        let refused = ask(reqwest::Method::GET, path).await;
        assert_eq!(refused.status(), 400, "{path}");
        let text = refused.text().await.expect("body");
        assert!(text.contains(why), "{path}: {text}");
    }
    assert_eq!(
        ask(reqwest::Method::GET, "/missing.txt").await.status(),
        404
    );
    // The edge's own paths are still its own.
    assert_eq!(ask(reqwest::Method::GET, "/healthz").await.status(), 200);
    assert_eq!(
        ask(reqwest::Method::GET, "/_meridian/purge").await.status(),
        405
    );
    assert_eq!(
        bucket.reads.load(Ordering::SeqCst),
        2,
        "one read for the object (then hits), one for the missing name"
    );
    stop.cancel();
}
