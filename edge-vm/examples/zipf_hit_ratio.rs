//! Hit ratio of the edge's memory store under a Zipf-distributed workload whose
//! working set is larger than the cache, against plain LRU with the same byte budget.
//!
//! A real edge (in front of an HTTP origin that counts requests, both on loopback) is
//! asked for objects drawn from a Zipf distribution; the same sequence is replayed
//! through an LRU simulation. Popular objects should stay while one-hit wonders pass
//! through: the store's admission (moka's TinyLFU) is what this measures.
//!
//! Run: `cargo run --release -p meridian-edge --example zipf_hit_ratio`
//! Env: OBJECTS (10000), OBJECT_BYTES (4096), CACHE_PERCENT (10), REQUESTS (200000),
//! ZIPF_S (0.9), CONCURRENCY (32), DISK_PERCENT (0: memory only; else a disk tier of
//! that share of the working set behind the memory one, in a temporary directory).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::Uri;
use meridian_edge::{DISK_ENTRY_OVERHEAD, EdgeState, MEMORY_ENTRY_OVERHEAD as ENTRY_OVERHEAD};
use meridian_shared::config::{EdgeSettings, OutboundSettings};

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Zipf sampler over `0..n` (rank 0 most popular), by inverse CDF.
struct Zipf {
    cumulative: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect();
        Zipf {
            cumulative,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> usize {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let unit =
            (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        let target = unit * self.cumulative.last().copied().unwrap_or(1.0);
        self.cumulative.partition_point(|&c| c < target)
    }
}

/// Misses of a plain LRU cache of `budget` bytes over `trace`.
fn lru_misses(trace: &[usize], object_bytes: u64, budget: u64) -> u64 {
    let mut order: VecDeque<usize> = VecDeque::new();
    let mut present: HashMap<usize, ()> = HashMap::new();
    let per_entry = object_bytes + ENTRY_OVERHEAD;
    let capacity = (budget / per_entry) as usize;
    let mut misses = 0;
    for &object in trace {
        if present.contains_key(&object) {
            // Move to the back (most recent). Linear, but the simulation is small.
            if let Some(at) = order.iter().position(|&o| o == object) {
                order.remove(at);
            }
            order.push_back(object);
            continue;
        }
        misses += 1;
        present.insert(object, ());
        order.push_back(object);
        while order.len() > capacity {
            if let Some(evicted) = order.pop_front() {
                present.remove(&evicted);
            }
        }
    }
    misses
}

async fn origin(
    State((hits, body)): State<(Arc<AtomicU64>, bytes::Bytes)>,
    _uri: Uri,
) -> ([(&'static str, &'static str); 1], bytes::Bytes) {
    hits.fetch_add(1, Ordering::Relaxed);
    ([("cache-control", "max-age=3600")], body)
}

#[tokio::main]
async fn main() {
    let objects = setting("OBJECTS", 10_000.0) as usize;
    let object_bytes = setting("OBJECT_BYTES", 4096.0) as u64;
    let cache_percent = setting("CACHE_PERCENT", 10.0);
    let requests = setting("REQUESTS", 200_000.0) as usize;
    let s = setting("ZIPF_S", 0.9);
    let concurrency = setting("CONCURRENCY", 32.0) as usize;
    let working_set = objects as u64 * (object_bytes + ENTRY_OVERHEAD);
    let budget = (working_set as f64 * cache_percent / 100.0) as u64;
    let disk_percent = setting("DISK_PERCENT", 0.0);
    let disk_bytes = (working_set as f64 * disk_percent / 100.0) as u64;
    let disk_dir = tempfile::tempdir().expect("a temporary directory");

    let mut zipf = Zipf::new(objects, s, 0x5eed);
    let trace: Vec<usize> = (0..requests).map(|_| zipf.next()).collect();
    let distinct = trace.iter().collect::<std::collections::HashSet<_>>().len();

    // The origin: counts what reaches it.
    let origin_requests = Arc::new(AtomicU64::new(0));
    let body = bytes::Bytes::from(vec![b'x'; object_bytes as usize]);
    let app = axum::Router::new()
        .fallback(origin)
        .with_state((origin_requests.clone(), body));
    let origin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin_url = format!("http://{}", origin_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(origin_listener, app).await });

    // The edge, with a memory budget smaller than the working set.
    let settings = EdgeSettings {
        cache_bytes: budget,
        disk_dir: (disk_bytes > 0).then(|| disk_dir.path().to_path_buf()),
        disk_bytes,
        ..EdgeSettings::default()
    };
    let edge = EdgeState::for_http_origin(
        "bench",
        &origin_url,
        &settings,
        &OutboundSettings::default(),
        None,
    )
    .expect("edge");
    let edge_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let edge_url = format!("http://{}", edge_listener.local_addr().expect("addr"));
    tokio::spawn(meridian_edge::run(
        edge_listener,
        None,
        edge,
        std::future::pending(),
    ));

    eprintln!(
        "{requests} requests over {objects} objects of {object_bytes} B (Zipf s={s}; {distinct} distinct asked); \
         cache {cache_percent}% of the working set ({budget} B), disk {disk_percent}% ({disk_bytes} B)"
    );
    let client = reqwest::Client::new();
    let trace = Arc::new(trace);
    let next = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, trace, next, edge_url) = (
                client.clone(),
                trace.clone(),
                next.clone(),
                edge_url.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(object) = trace.get(i) else { break };
                    let response = client
                        .get(format!("{edge_url}/o/{object}"))
                        .send()
                        .await
                        .expect("edge answers");
                    assert!(response.status().is_success());
                    response.bytes().await.expect("body");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let edge_misses = origin_requests.load(Ordering::Relaxed);
    let lru = lru_misses(&trace, object_bytes, budget);
    let ratio = |misses: u64| 100.0 * (1.0 - misses as f64 / requests as f64);
    let store = if disk_bytes > 0 {
        "memory with TinyLFU admission, then disk"
    } else {
        "memory store, TinyLFU admission"
    };
    println!(
        "edge ({store}): hit ratio {:.1} %, origin requests {edge_misses}",
        ratio(edge_misses)
    );
    println!(
        "plain LRU, the memory budget, same sequence: hit ratio {:.1} %, origin requests {lru}",
        ratio(lru)
    );
    if disk_bytes > 0 {
        // The disk counts 4 KiB per file beyond its body (a file system block): an LRU
        // holding as many objects as the disk tier can.
        let disk_objects = disk_bytes / (object_bytes + DISK_ENTRY_OVERHEAD);
        let lru_disk = lru_misses(
            &trace,
            object_bytes,
            disk_objects * (object_bytes + ENTRY_OVERHEAD),
        );
        println!(
            "plain LRU holding as many objects as the disk ({disk_objects}): hit ratio {:.1} %, origin requests {lru_disk}",
            ratio(lru_disk)
        );
    }
    println!(
        "({:.1} s; the edge's figure includes misses of concurrent requests for one object that were coalesced into one)",
        started.elapsed().as_secs_f64()
    );
}
