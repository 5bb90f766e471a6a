//! One behaviour suite for every storage backend: local filesystem, memory and Google
//! Cloud Storage (against fake-gcs-server).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use meridian_shared::storage::{
    self, ByteStream, GcsClient, LocalBucket, MemoryBucket, PutOptions,
};
use meridian_shared::{Bucket, Error, ObjectName};

use crate::harness::pseudo_random_bytes;
use meridian_cli::emulators::FakeGcs;

fn name(text: &str) -> ObjectName {
    ObjectName::new(text).expect("valid name")
}

fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

async fn read(bucket: &dyn Bucket, object: &ObjectName) -> Vec<u8> {
    let (_, stream) = bucket.get(object).await.expect("get");
    storage::collect(stream).await.expect("read").to_vec()
}

/// The behaviour every backend must show.
async fn behaves_like_a_bucket(bucket: Arc<dyn Bucket>) {
    let bucket = bucket.as_ref();

    // Round trip with metadata.
    let hello = name("dir/hello.txt");
    let metadata = BTreeMap::from([("origin".to_string(), "suite".to_string())]);
    let options = PutOptions {
        content_type: "text/plain".into(),
        cache_control: Some("public, max-age=60".into()),
        metadata: metadata.clone(),
        if_generation_match: None,
    };
    let written = bucket
        .put(&hello, storage::stream_from_bytes("hello"), options)
        .await
        .expect("put");
    assert_eq!(written.size, 5);
    assert_eq!(written.md5_hash, "XUFAKrxLKna5cZ2REBfFkg==");
    assert_eq!(written.crc32c, "mnG7TA==", "CRC32C, Cloud Storage's format");
    let head = bucket.head(&hello).await.expect("head");
    assert_eq!(head.content_type, "text/plain");
    assert_eq!(head.cache_control.as_deref(), Some("public, max-age=60"));
    assert_eq!(
        head.metadata.get("origin").map(String::as_str),
        Some("suite")
    );
    assert_eq!(head.generation, written.generation);
    assert_eq!(
        (&head.md5_hash, &head.crc32c),
        (&written.md5_hash, &written.crc32c)
    );
    assert_eq!(read(bucket, &hello).await, b"hello");

    // Missing objects.
    let missing = name("missing");
    assert!(matches!(
        bucket.head(&missing).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        bucket.get(&missing).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        bucket.delete(&missing, None).await,
        Err(Error::NotFound(_))
    ));

    // Every new write gets a strictly greater generation.
    let again = bucket
        .put(
            &hello,
            storage::stream_from_bytes("hello again"),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(
        again.generation > written.generation,
        "{} <= {}",
        again.generation,
        written.generation
    );
    assert_eq!(read(bucket, &hello).await, b"hello again");
    assert_eq!(
        bucket.head(&hello).await.expect("head").content_type,
        "application/octet-stream"
    );

    // Preconditions.
    let only_if_absent = PutOptions {
        if_generation_match: Some(0),
        ..PutOptions::default()
    };
    let refused = bucket
        .put(
            &hello,
            storage::stream_from_bytes("x"),
            only_if_absent.clone(),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::PreconditionFailed(_))),
        "{refused:?}"
    );
    let stale = PutOptions {
        if_generation_match: Some(written.generation),
        ..PutOptions::default()
    };
    let refused = bucket
        .put(&hello, storage::stream_from_bytes("x"), stale)
        .await;
    assert!(
        matches!(refused, Err(Error::PreconditionFailed(_))),
        "{refused:?}"
    );
    assert_eq!(
        read(bucket, &hello).await,
        b"hello again",
        "a refused write changes nothing"
    );
    let current = PutOptions {
        if_generation_match: Some(again.generation),
        ..PutOptions::default()
    };
    let third = bucket
        .put(&hello, storage::stream_from_bytes("third"), current)
        .await
        .expect("matching generation");
    let fresh = bucket
        .put(
            &name("fresh"),
            storage::stream_from_bytes("new"),
            only_if_absent,
        )
        .await;
    assert!(fresh.is_ok(), "{fresh:?}");

    // Conditional delete.
    let refused = bucket.delete(&hello, Some(again.generation)).await;
    assert!(
        matches!(refused, Err(Error::PreconditionFailed(_))),
        "{refused:?}"
    );
    bucket
        .delete(&hello, Some(third.generation))
        .await
        .expect("delete");
    assert!(matches!(bucket.head(&hello).await, Err(Error::NotFound(_))));
    let recreated = bucket
        .put(
            &hello,
            storage::stream_from_bytes("back"),
            PutOptions::default(),
        )
        .await
        .expect("recreate");
    assert!(
        recreated.generation > third.generation,
        "generations keep increasing across a delete"
    );

    // Large objects stream in and out intact.
    let big = pseudo_random_bytes(3 * 1024 * 1024 + 17, 7);
    let big_name = name("big/blob.bin");
    let meta = bucket
        .put(&big_name, chunked(&big, 100_000), PutOptions::default())
        .await
        .expect("put big");
    assert_eq!(meta.size, big.len() as u64);
    assert!(
        read(bucket, &big_name).await == big,
        "large object differs after round trip"
    );

    // Unusual but valid names.
    for odd in [
        "ünïcødé/名前.txt",
        "with space+plus",
        "a//double",
        "..%2Fencoded",
    ] {
        let object = name(odd);
        bucket
            .put(
                &object,
                storage::stream_from_bytes(odd.to_string()),
                PutOptions::default(),
            )
            .await
            .expect(odd);
        assert_eq!(read(bucket, &object).await, odd.as_bytes(), "{odd}");
    }

    // Listing by prefix, in name order.
    for n in ["list/b", "list/a", "list/c/d", "listing"] {
        bucket
            .put(
                &name(n),
                storage::stream_from_bytes("x"),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
    let listed: Vec<String> = bucket
        .list("list/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(listed, ["list/a", "list/b", "list/c/d"]);

    // Walking the pages finds the same objects.
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = bucket
            .list_page("list/", token.as_deref())
            .await
            .expect("page");
        paged.extend(page.objects.into_iter().map(|m| m.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    paged.sort();
    assert_eq!(paged, listed);
}

/// Copies from `source` into `destination`: bytes, content type, cache control and
/// metadata arrive; a precondition on the destination and a pinned source generation
/// are honoured.
async fn copies_between_buckets(source: Arc<dyn Bucket>, destination: Arc<dyn Bucket>) {
    let object = name("copy/a b.bin");
    let body = crate::harness::pseudo_random_bytes(300_000, 7);
    let written = source
        .put(
            &object,
            storage::stream_from_bytes(body.clone()),
            PutOptions {
                content_type: "application/x-test".into(),
                ..PutOptions::default()
            },
        )
        .await
        .expect("put");
    let metadata = BTreeMap::from([(
        "meridian-source-generation".to_string(),
        written.generation.to_string(),
    )]);
    let options = PutOptions {
        content_type: "application/x-test".into(),
        cache_control: Some("public, max-age=30".into()),
        metadata: metadata.clone(),
        if_generation_match: Some(0),
    };
    let copy = destination
        .copy_from(
            source.as_ref(),
            &object,
            written.generation,
            options.clone(),
        )
        .await
        .expect("copy");
    assert_eq!(copy.size, body.len() as u64);
    assert_eq!(copy.md5_hash, written.md5_hash);
    assert_eq!(read(destination.as_ref(), &object).await, body);
    let head = destination.head(&object).await.expect("head");
    assert_eq!(head.content_type, "application/x-test");
    assert_eq!(head.cache_control.as_deref(), Some("public, max-age=30"));
    assert_eq!(head.metadata, metadata);

    // "Only if absent" no longer holds.
    assert!(matches!(
        destination
            .copy_from(
                source.as_ref(),
                &object,
                written.generation,
                options.clone()
            )
            .await,
        Err(Error::PreconditionFailed(_))
    ));
    // The source moved on: a copy pinned to the old generation is refused.
    source
        .put(
            &object,
            storage::stream_from_bytes("newer"),
            PutOptions::default(),
        )
        .await
        .expect("overwrite");
    let pinned = PutOptions {
        if_generation_match: Some(copy.generation),
        ..options
    };
    assert!(matches!(
        destination
            .copy_from(source.as_ref(), &object, written.generation, pinned)
            .await,
        Err(Error::PreconditionFailed(_))
    ));
    assert_eq!(
        read(destination.as_ref(), &object).await,
        body,
        "the copy is untouched"
    );
}

#[tokio::test]
async fn local_backend_behaves_like_a_bucket() {
    let root = tempfile::tempdir().expect("tempdir");
    behaves_like_a_bucket(Arc::new(
        LocalBucket::open(root.path(), "suite-bucket")
            .await
            .expect("open"),
    ))
    .await;
    let other = LocalBucket::open(root.path(), "suite-bucket")
        .await
        .expect("open");
    let destination = LocalBucket::open(root.path(), "suite-copies")
        .await
        .expect("open");
    copies_between_buckets(Arc::new(other), Arc::new(destination)).await;
}

#[tokio::test]
async fn memory_backend_behaves_like_a_bucket() {
    behaves_like_a_bucket(Arc::new(MemoryBucket::new("suite-bucket"))).await;
    copies_between_buckets(
        Arc::new(MemoryBucket::new("suite-bucket")),
        Arc::new(MemoryBucket::new("suite-copies")),
    )
    .await;
}

#[tokio::test]
async fn gcs_backend_behaves_like_a_bucket_on_fake_gcs_server() {
    let server = FakeGcs::start().await.expect("fake-gcs-server starts");
    let client = GcsClient::anonymous(&server.endpoint, &Default::default())
        .await
        .expect("client");
    client
        .create_bucket("test-project", "suite-bucket")
        .await
        .expect("create bucket");
    client
        .create_bucket("test-project", "suite-bucket")
        .await
        .expect("creating again is fine");
    behaves_like_a_bucket(Arc::new(client.bucket("suite-bucket"))).await;
    client
        .create_bucket("test-project", "suite-copies")
        .await
        .expect("create bucket");
    // Both on Cloud Storage: the copy is a server-side rewrite.
    copies_between_buckets(
        Arc::new(client.bucket("suite-bucket")),
        Arc::new(client.bucket("suite-copies")),
    )
    .await;
}

#[tokio::test]
async fn local_backend_keeps_content_across_reopen() {
    let root = tempfile::tempdir().expect("tempdir");
    let object = name("kept");
    {
        let bucket = LocalBucket::open(root.path(), "suite-bucket")
            .await
            .expect("open");
        bucket
            .put(
                &object,
                storage::stream_from_bytes("still here"),
                PutOptions::default(),
            )
            .await
            .expect("put");
    }
    let reopened = LocalBucket::open(root.path(), "suite-bucket")
        .await
        .expect("reopen");
    assert_eq!(read(&reopened, &object).await, b"still here");
}
