//! The whole CDN in-process: an object put through sign + signed PUT reaches every
//! region's edge over HTTPS, and a delete reaches every bucket and every cache.

use std::time::{Duration, Instant};

use crate::harness::pseudo_random_bytes;
use crate::harness::stack::TestStack;

/// How long replication and invalidation may take (the acceptance bound).
const PROPAGATION: Duration = Duration::from_secs(5);

/// Polls `check` until it holds or `PROPAGATION` passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PROPAGATION;
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what} not true within {PROPAGATION:?}: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mib_object_reaches_every_edge_and_its_deletion_reaches_every_cache() {
    let stack = TestStack::start().await;
    let name = "media/video segment 1.bin";
    let body = pseudo_random_bytes(5 * 1024 * 1024, 42);

    let url = stack.ticket(name, "application/octet-stream").await;
    let uploaded = stack
        .upload(&url, "application/octet-stream", body.clone())
        .await;
    assert_eq!(
        uploaded.status(),
        200,
        "{}",
        uploaded.text().await.unwrap_or_default()
    );

    let edges = stack.stack.info().edges.clone();
    assert_eq!(edges.len(), 10);
    let object_url = |edge: &str| format!("{edge}/media/video%20segment%201.bin");
    for edge in &edges {
        eventually(&format!("{} serves the object", edge.region), || {
            let request = stack.http.get(object_url(&edge.url));
            let body = &body;
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                if response.status() != 200 {
                    return Err(format!("status {}", response.status()));
                }
                let received = response.bytes().await.map_err(|e| e.to_string())?;
                if received.as_ref() != body.as_slice() {
                    return Err(format!("{} bytes differ from the upload", received.len()));
                }
                Ok(())
            }
        })
        .await;
    }

    for edge in &edges {
        let response = stack
            .http
            .get(object_url(&edge.url))
            .send()
            .await
            .expect("edge answers");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(
            headers["x-cache"], "HIT",
            "{}: a repeated GET is a cache hit",
            edge.region
        );
        assert_eq!(headers["content-type"], "application/octet-stream");
        assert_eq!(headers["content-length"], body.len().to_string().as_str());
        assert_eq!(headers["cache-control"], "public, max-age=3600");
        assert!(headers.contains_key("etag") && headers.contains_key("last-modified"));
        assert!(response.bytes().await.expect("body").as_ref() == body.as_slice());
    }
    assert_eq!(
        stack.buckets_holding(name).await.len(),
        10,
        "main bucket and all 9 regional buckets"
    );

    let deleted = stack.delete("media/video%20segment%201.bin").await;
    assert_eq!(deleted, 204);

    for edge in &edges {
        eventually(&format!("{} answers 404", edge.region), || {
            let request = stack.http.get(object_url(&edge.url));
            async move {
                let status = request.send().await.map_err(|e| e.to_string())?.status();
                if status == 404 {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
        })
        .await;
    }
    eventually("no bucket holds the object", || async {
        let holding = stack.buckets_holding(name).await;
        if holding.is_empty() {
            Ok(())
        } else {
            Err(format!("still in {holding:?}"))
        }
    })
    .await;

    let again = stack.delete("media/video%20segment%201.bin").await;
    assert_eq!(again, 404, "deleting a missing object is 404");
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_answers_head_and_404_and_refuses_bad_names() {
    let stack = TestStack::start().await;
    let url = stack.ticket("note.txt", "text/plain; charset=utf-8").await;
    assert_eq!(
        stack
            .upload(&url, "text/plain; charset=utf-8", b"hi".to_vec())
            .await
            .status(),
        200
    );
    let madrid = stack.stack.info().edges[0].url.clone();

    let head = stack
        .http
        .head(format!("{madrid}/note.txt"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "2");
    assert_eq!(head.headers()["content-type"], "text/plain; charset=utf-8");

    assert_eq!(
        stack.status_of(&format!("{madrid}/nothing-here")).await,
        404
    );
    assert_eq!(stack.status_of(&format!("{madrid}/nul%00byte")).await, 400);
    assert_eq!(stack.status_of(&format!("{madrid}/healthz")).await, 200);
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_lists_the_nearest_region_first_with_fallbacks() {
    let stack = TestStack::start().await;
    let boot = &stack.stack.info().boot;
    let tokyo = stack
        .get_json(&format!("{boot}/v1/edges?lat=35.6&lon=139.7"))
        .await;
    let regions: Vec<&str> = tokyo["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["region"].as_str())
        .collect();
    assert_eq!(
        regions,
        ["asia-northeast1", "asia-south1", "australia-southeast1"]
    );
    assert_eq!(tokyo["client"]["source"], "query");

    let default = stack.get_json(&format!("{boot}/v1/edges")).await;
    assert_eq!(default["client"]["source"], "default");
    assert_eq!(default["edges"][0]["region"], "europe-southwest1");
    assert_eq!(default["ttl_seconds"], 60);

    let bad = stack
        .http
        .get(format!("{boot}/v1/edges?lat=100&lon=0"))
        .send()
        .await
        .expect("boot");
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.expect("body");
    assert!(text.contains("lat"), "{text}");
    stack.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_counts_its_requests_at_metrics() {
    let stack = TestStack::start().await;
    let info = stack.stack.info();
    let boot = &info.boot;
    for _ in 0..3 {
        stack
            .get_json(&format!("{boot}/v1/edges?lat=35.6&lon=139.7"))
            .await;
    }
    let unauthorized = stack
        .http
        .delete(format!("{}/v1/objects/nothing-here.txt", info.delete))
        .send()
        .await
        .expect("delete answers");
    assert_eq!(unauthorized.status(), 401, "no token");
    let boot_metrics = crate::harness::scrape(&format!("{boot}/metrics")).await;
    assert_eq!(
        boot_metrics
            .get(r#"meridian_requests_total{service="boot",route="/v1/edges",status="200"}"#)
            .copied(),
        Some(3.0)
    );
    assert_eq!(
        boot_metrics
            .get(r#"meridian_request_duration_seconds_count{service="boot",route="/v1/edges"}"#)
            .copied(),
        Some(3.0)
    );
    let delete_metrics = crate::harness::scrape(&format!("{}/metrics", info.delete)).await;
    assert_eq!(
        delete_metrics
            .get(r#"meridian_requests_total{service="delete",route="/v1/objects/{*name}",status="401"}"#)
            .copied(),
        Some(1.0)
    );
    for service in [&info.sign, &info.replicate] {
        crate::harness::scrape(&format!("{service}/metrics")).await;
    }
    stack.stack.stop().await;
}
