//! What the edge counts, served in the Prometheus text format (OpenMetrics flavour) at
//! `GET /_meridian/metrics`, and one access-log line per request.
//!
//! Each edge has a registry of its own (not a process-wide recorder): the local stack
//! and the tests run many edges in one process, and each must report only itself.
//! Counters are atomics behind `Arc`s; a request touches a few of them and one label
//! lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::TierSize;

/// Labels of a request: its status and what the cache did (`X-Cache`, or `NONE` for
/// answers that never reached the cache: errors before it, purges, health).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The HTTP status.
    pub status: u16,
    /// `HIT`, `MISS`, `BYPASS`, `STALE`, `REVALIDATED` or `NONE`.
    pub cache: &'static str,
}

/// Labels of a purge: by `name` or by `prefix`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurgeLabels {
    /// `name` or `prefix`.
    pub kind: &'static str,
}

/// Labels of a store tier's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    /// `memory` or `disk`.
    pub tier: &'static str,
}

/// The edge's metrics.
pub struct EdgeMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests` for 200 hits, the answer most requests get: looked up once, not per
    /// request.
    ok_hits: Counter,
    body_bytes: Counter,
    sent_without_copying: Counter,
    quick_answers: Counter,
    origin_latency: Histogram,
    coalesced: Counter,
    purges: Family<PurgeLabels, Counter>,
    store_bytes: Family<TierLabels, Gauge>,
    store_entries: Family<TierLabels, Gauge>,
    evictions: Family<TierLabels, Counter>,
    disk_damaged: Counter,
    open_connections: Gauge,
    connections: Arc<AtomicUsize>,
}

impl EdgeMetrics {
    /// A registry with every metric at zero.
    pub fn new() -> EdgeMetrics {
        let mut registry = Registry::with_prefix("meridian_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by status and cache status",
            requests.clone(),
        );
        let body_bytes = Counter::default();
        registry.register(
            "response_body_bytes",
            "Bytes of response bodies answered (as declared by Content-Length)",
            body_bytes.clone(),
        );
        let sent_without_copying = Counter::default();
        registry.register(
            "response_body_bytes_sent_without_copying",
            "Bytes of response bodies that plain connections sent straight from sealed memory (sendfile)",
            sent_without_copying.clone(),
        );
        let quick_answers = Counter::default();
        registry.register(
            "quick_answers",
            "Requests (counted in requests too) answered by the quick lane: fresh plain hits on HTTP/1.1, written from kept heads",
            quick_answers.clone(),
        );
        // 1 ms to about 16 s.
        let origin_latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "origin_request_duration_seconds",
            "Time from sending a request to the origin to its response headers",
            origin_latency.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "coalesced_requests",
            "Misses that joined another request's fill instead of asking the origin",
            coalesced.clone(),
        );
        let purges = Family::<PurgeLabels, Counter>::default();
        registry.register("purges", "Purges applied, by kind", purges.clone());
        let store_bytes = Family::<TierLabels, Gauge>::default();
        registry.register(
            "store_bytes",
            "Bytes held by each store tier (bodies plus per-entry overhead)",
            store_bytes.clone(),
        );
        let store_entries = Family::<TierLabels, Gauge>::default();
        registry.register(
            "store_entries",
            "Responses held by each store tier",
            store_entries.clone(),
        );
        let evictions = Family::<TierLabels, Counter>::default();
        registry.register(
            "evictions",
            "Stored responses evicted to stay within a tier's budget",
            evictions.clone(),
        );
        let disk_damaged = Counter::default();
        registry.register(
            "disk_damaged",
            "Disk copies dropped because they failed a check (at start, or when read)",
            disk_damaged.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let ok_hits = requests
            .get_or_create(&RequestLabels {
                status: 200,
                cache: "HIT",
            })
            .clone();
        EdgeMetrics {
            registry,
            requests,
            ok_hits,
            body_bytes,
            sent_without_copying,
            quick_answers,
            origin_latency,
            coalesced,
            purges,
            store_bytes,
            store_entries,
            evictions,
            disk_damaged,
            open_connections,
            connections: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts an answer of `status` (with `X-Cache` value `cache`, if any) and a body
    /// of `content_length` bytes, and writes its access-log line with the time since
    /// `started` (the clock is read only when the line is written).
    pub fn answered(
        &self,
        method: &Method,
        target: &str,
        status: StatusCode,
        cache: Option<&HeaderValue>,
        content_length: Option<u64>,
        started: tokio::time::Instant,
    ) {
        let cache = cache_label(cache);
        if status == StatusCode::OK && cache == "HIT" {
            self.ok_hits.inc();
        } else {
            self.requests
                .get_or_create(&RequestLabels {
                    status: status.as_u16(),
                    cache,
                })
                .inc();
        }
        if let Some(bytes) = content_length {
            self.body_bytes.inc_by(bytes);
        }
        tracing::info!(
            target: "meridian_edge::access",
            method = %method,
            target_uri = target,
            status = status.as_u16(),
            cache,
            bytes = content_length,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }

    /// Counts an answer of the quick lane (counted by [`EdgeMetrics::answered`] too).
    pub fn answered_quickly(&self) {
        self.quick_answers.inc();
    }

    /// Records how long the origin took to answer.
    pub fn origin_answered(&self, took: Duration) {
        self.origin_latency.observe(took.as_secs_f64());
    }

    /// Counts a miss that joined another request's fill.
    pub fn coalesced(&self) {
        self.coalesced.inc();
    }

    /// Counts a purge of `kind` (`name` or `prefix`).
    pub fn purged(&self, kind: &'static str) {
        self.purges.get_or_create(&PurgeLabels { kind }).inc();
    }

    /// Where tier `tier` (`memory` or `disk`) counts its evictions.
    pub fn evictions(&self, tier: &'static str) -> Counter {
        self.evictions.get_or_create(&TierLabels { tier }).clone()
    }

    /// Where the disk tier counts the copies it drops as damaged.
    pub fn disk_damaged(&self) -> Counter {
        self.disk_damaged.clone()
    }

    /// Where the server counts open connections.
    pub fn connection_count(&self) -> Arc<AtomicUsize> {
        self.connections.clone()
    }

    /// Where the server counts body bytes sent without copying.
    pub fn sent_without_copying(&self) -> Counter {
        self.sent_without_copying.clone()
    }

    /// The metrics in the text format, the store's tiers holding `sizes` now.
    pub fn render(&self, sizes: &[TierSize]) -> String {
        for size in sizes {
            let labels = TierLabels { tier: size.tier };
            (self.store_bytes.get_or_create(&labels))
                .set(i64::try_from(size.bytes).unwrap_or(i64::MAX));
            (self.store_entries.get_or_create(&labels))
                .set(i64::try_from(size.entries).unwrap_or(i64::MAX));
        }
        self.open_connections
            .set(i64::try_from(self.connections.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        EdgeMetrics::new()
    }
}

/// The `cache` label for an `X-Cache` value.
fn cache_label(value: Option<&HeaderValue>) -> &'static str {
    match value.map(HeaderValue::as_bytes) {
        Some(b"HIT") => "HIT",
        Some(b"MISS") => "MISS",
        Some(b"BYPASS") => "BYPASS",
        Some(b"STALE") => "STALE",
        Some(b"REVALIDATED") => "REVALIDATED",
        _ => "NONE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_render_as_prometheus_text() {
        let metrics = EdgeMetrics::new();
        let hit = HeaderValue::from_static("HIT");
        for _ in 0..3 {
            metrics.answered(
                &Method::GET,
                "/a",
                StatusCode::OK,
                Some(&hit),
                Some(10),
                tokio::time::Instant::now(),
            );
        }
        let miss = HeaderValue::from_static("MISS");
        metrics.answered(
            &Method::GET,
            "/b",
            StatusCode::OK,
            Some(&miss),
            Some(5),
            tokio::time::Instant::now(),
        );
        metrics.origin_answered(Duration::from_millis(3));
        metrics.evictions("memory").inc_by(2);
        let memory = TierSize {
            tier: "memory",
            bytes: 4096,
            entries: 3,
        };
        let text = metrics.render(&[memory]);
        for line in [
            "meridian_edge_requests_total{status=\"200\",cache=\"HIT\"} 3",
            "meridian_edge_requests_total{status=\"200\",cache=\"MISS\"} 1",
            "meridian_edge_response_body_bytes_total 35",
            "meridian_edge_origin_request_duration_seconds_count 1",
            "meridian_edge_store_bytes{tier=\"memory\"} 4096",
            "meridian_edge_evictions_total{tier=\"memory\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        // Evictions are reported once, not again on the next scrape.
        assert!(
            metrics
                .render(&[memory])
                .lines()
                .any(|l| l == "meridian_edge_evictions_total{tier=\"memory\"} 2")
        );
    }
}
